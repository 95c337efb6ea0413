//! The agent protocol (RFC 9987) as OpenSSH speaks it: message numbers, framing,
//! `Request::decode` and `Response::encode`, and `serve`, which takes one request from a
//! connection's input to its encoded reply. No I/O and no state: bytes in, values out.
//!
//! Every read goes through `wire::Reader`, a cursor that returns `Err` instead of
//! panicking, because everything here comes from a socket.

use std::fmt;

use zeroize::Zeroizing;

use crate::keys::{self, NewKey};
use crate::wire::{Reader, Refused, put_string};

/// Largest frame body accepted (OpenSSH: AGENT_MAX_LEN). Exactly this size is accepted.
pub const MAX_MESSAGE_LEN: usize = 256 * 1024;

/// Message numbers (RFC 9987 §6.1, OpenSSH authfd.h).
pub mod msg {
    pub const SSH_AGENTC_REMOVE_ALL_RSA_IDENTITIES: u8 = 9; // legacy SSH-1; OpenSSH removes all keys
    pub const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
    pub const SSH_AGENTC_SIGN_REQUEST: u8 = 13;
    pub const SSH_AGENTC_ADD_IDENTITY: u8 = 17;
    pub const SSH_AGENTC_REMOVE_IDENTITY: u8 = 18;
    pub const SSH_AGENTC_REMOVE_ALL_IDENTITIES: u8 = 19;
    pub const SSH_AGENTC_LOCK: u8 = 22;
    pub const SSH_AGENTC_UNLOCK: u8 = 23;
    pub const SSH_AGENTC_ADD_ID_CONSTRAINED: u8 = 25;
    pub const SSH_AGENTC_EXTENSION: u8 = 27;

    pub const SSH_AGENT_FAILURE: u8 = 5;
    pub const SSH_AGENT_SUCCESS: u8 = 6;
    pub const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
    pub const SSH_AGENT_SIGN_RESPONSE: u8 = 14;
    pub const SSH_AGENT_EXTENSION_FAILURE: u8 = 28;
    pub const SSH_AGENT_EXTENSION_RESPONSE: u8 = 29;

    pub const SSH_AGENT_CONSTRAIN_LIFETIME: u8 = 1;
    pub const SSH_AGENT_CONSTRAIN_CONFIRM: u8 = 2;
    pub const SSH_AGENT_CONSTRAIN_EXTENSION: u8 = 255;

    pub const SSH_AGENT_RSA_SHA2_256: u32 = 0x02;
    pub const SSH_AGENT_RSA_SHA2_512: u32 = 0x04;
}

/// Extension names this agent implements, as `query` reports them.
pub const EXT_QUERY: &str = "query";
pub const EXT_SESSION_BIND: &str = "session-bind@openssh.com";

/// The constraint extension that restricts where a key may be used (OpenSSH PROTOCOL.agent).
pub const EXT_RESTRICT_DESTINATION: &str = "restrict-destination-v00@openssh.com";
/// Key constraints of an ADD request (RFC 9987 §3.2.7).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Constraints {
    /// Seconds the key may live.
    pub lifetime: Option<u32>,
    /// Every signature needs the user's confirmation.
    pub confirm: bool,
    /// Where the key may be used (`ssh-add -h`): the body of its
    /// `restrict-destination-v00@openssh.com` constraint, which `dest::Destinations::decode`
    /// reads when the key is added. `None`: anywhere.
    pub destinations: Option<Vec<u8>>,
}

impl Constraints {
    /// Parse the constraints that trail an ADD body. Every constraint must be understood:
    /// an unknown one refuses the whole add, so the agent never accepts a key with a
    /// restriction it would not enforce (RFC 9987: "MUST ... refuse").
    pub fn decode(r: &mut Reader<'_>) -> Result<Constraints, Refused> {
        let mut c = Constraints::default();
        while !r.is_empty() {
            match r.u8()? {
                msg::SSH_AGENT_CONSTRAIN_LIFETIME => {
                    if c.lifetime.is_some() {
                        return Err(Refused("lifetime constraint given twice"));
                    }
                    c.lifetime = Some(r.u32()?);
                }
                msg::SSH_AGENT_CONSTRAIN_CONFIRM => {
                    if c.confirm {
                        return Err(Refused("confirm constraint given twice"));
                    }
                    c.confirm = true;
                }
                msg::SSH_AGENT_CONSTRAIN_EXTENSION => match r.str()? {
                    EXT_RESTRICT_DESTINATION => {
                        if c.destinations.is_some() {
                            return Err(Refused("destination constraint given twice"));
                        }
                        c.destinations = Some(r.string()?.to_vec());
                    }
                    // sk-provider@openssh.com (FIDO) and associated-certs-v00@openssh.com
                    // (PKCS#11) are not implemented: refusing is the only safe answer to a
                    // restriction we would not enforce.
                    _ => return Err(Refused("unsupported constraint extension")),
                },
                _ => return Err(Refused("unknown constraint")),
            }
        }
        Ok(c)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Some(secs) = self.lifetime {
            out.push(msg::SSH_AGENT_CONSTRAIN_LIFETIME);
            out.extend_from_slice(&secs.to_be_bytes());
        }
        if self.confirm {
            out.push(msg::SSH_AGENT_CONSTRAIN_CONFIRM);
        }
        if let Some(list) = &self.destinations {
            out.push(msg::SSH_AGENT_CONSTRAIN_EXTENSION);
            put_string(out, EXT_RESTRICT_DESTINATION.as_bytes());
            put_string(out, list);
        }
    }
}

/// `session-bind@openssh.com` body (OpenSSH PROTOCOL.agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBind {
    pub host_key: Vec<u8>,
    pub session_id: Vec<u8>,
    pub signature: Vec<u8>,
    pub forwarding: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    Query,
    SessionBind(SessionBind),
    /// Any other name: answered with FAILURE, as RFC 9987 requires.
    Other(String),
}

/// One decoded request. Decoding is complete before the agent acts on it.
pub enum Request {
    RequestIdentities,
    Sign {
        key: Vec<u8>,
        data: Vec<u8>,
        flags: u32,
    },
    AddIdentity {
        /// Read, not yet built: the agent builds it (`NewKey::build`) when it adds it.
        key: NewKey,
        comment: Vec<u8>,
        constraints: Constraints,
    },
    RemoveIdentity {
        key: Vec<u8>,
    },
    RemoveAllIdentities,
    Lock(Zeroizing<Vec<u8>>),
    Unlock(Zeroizing<Vec<u8>>),
    Extension(Extension),
    /// Anything else, including the SSH-1 and smartcard messages: FAILURE.
    Unknown(u8),
}

impl fmt::Debug for Request {
    // Hand-written: the derived form would print passphrases and keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::RequestIdentities => f.write_str("RequestIdentities"),
            Request::Sign { data, flags, .. } => {
                write!(
                    f,
                    "Sign {{ data: {} bytes, flags: {flags:#x} }}",
                    data.len()
                )
            }
            Request::AddIdentity { constraints, .. } => {
                write!(f, "AddIdentity {{ key: [redacted], {constraints:?} }}")
            }
            Request::RemoveIdentity { .. } => f.write_str("RemoveIdentity"),
            Request::RemoveAllIdentities => f.write_str("RemoveAllIdentities"),
            Request::Lock(_) => f.write_str("Lock([redacted])"),
            Request::Unlock(_) => f.write_str("Unlock([redacted])"),
            Request::Extension(e) => write!(f, "Extension({e:?})"),
            Request::Unknown(t) => write!(f, "Unknown({t})"),
        }
    }
}

impl Request {
    /// Decode one frame body (type byte first, without the length prefix).
    ///
    /// Trailing bytes are ignored as OpenSSH ignores them, except after an ADD, where
    /// they are constraints and must all parse.
    pub fn decode(frame: &[u8]) -> Result<Request, Refused> {
        let mut r = Reader::new(frame);
        let kind = r.u8()?;
        Ok(match kind {
            msg::SSH_AGENTC_REQUEST_IDENTITIES => Request::RequestIdentities,
            msg::SSH_AGENTC_SIGN_REQUEST => {
                let key = r.string()?.to_vec();
                let data = r.string()?.to_vec();
                let flags = r.u32()?;
                Request::Sign { key, data, flags }
            }
            msg::SSH_AGENTC_ADD_IDENTITY | msg::SSH_AGENTC_ADD_ID_CONSTRAINED => {
                // OpenSSH parses trailing constraints for type 17 as well.
                let key = NewKey::read(&mut r)?;
                let comment = r.string()?.to_vec();
                let constraints = Constraints::decode(&mut r)?;
                Request::AddIdentity {
                    key,
                    comment,
                    constraints,
                }
            }
            msg::SSH_AGENTC_REMOVE_IDENTITY => Request::RemoveIdentity {
                key: r.string()?.to_vec(),
            },
            msg::SSH_AGENTC_REMOVE_ALL_IDENTITIES | msg::SSH_AGENTC_REMOVE_ALL_RSA_IDENTITIES => {
                Request::RemoveAllIdentities
            }
            // OpenSSH aborts the whole agent when a LOCK/UNLOCK passphrase does not parse
            // (fatal_fr), on the theory that a confused client must not leave it unlocked.
            // Exiting loses every key and hands any local client a way to kill the agent;
            // FAILURE leaves the lock state exactly as it was, which is just as safe.
            msg::SSH_AGENTC_LOCK => Request::Lock(Zeroizing::new(r.string()?.to_vec())),
            msg::SSH_AGENTC_UNLOCK => Request::Unlock(Zeroizing::new(r.string()?.to_vec())),
            msg::SSH_AGENTC_EXTENSION => Request::Extension(decode_extension(&mut r)?),
            other => Request::Unknown(other),
        })
    }
}

impl Request {
    /// Whether handling it puts private key material or a passphrase in memory: adds,
    /// signatures, lock and unlock. The server wipes its stack after these (`secret.rs`).
    pub fn touches_secrets(&self) -> bool {
        matches!(
            self,
            Request::AddIdentity { .. }
                | Request::Sign { .. }
                | Request::Lock(_)
                | Request::Unlock(_)
        )
    }

    /// Whether it is one of the few requests that take milliseconds rather than
    /// microseconds: an RSA signature or RSA key add, or a lock or unlock (bcrypt-pbkdf).
    /// The server runs at most one of these per pass, after all quick ones.
    pub fn is_slow(&self) -> bool {
        match self {
            Request::Sign { key, .. } => keys::is_rsa(key),
            Request::AddIdentity { key, .. } => key.is_rsa(),
            Request::Lock(_) | Request::Unlock(_) => true,
            _ => false,
        }
    }
}

fn decode_extension(r: &mut Reader<'_>) -> Result<Extension, Refused> {
    let name = r.str()?;
    Ok(match name {
        EXT_QUERY => Extension::Query,
        EXT_SESSION_BIND => Extension::SessionBind(SessionBind {
            host_key: r.string()?.to_vec(),
            session_id: r.string()?.to_vec(),
            signature: r.string()?.to_vec(),
            forwarding: r.bool()?,
        }),
        other => Extension::Other(other.to_owned()),
    })
}

/// One reply. `Identities` borrows the agent's table so listing copies each blob once,
/// straight into the connection's output buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Response<'a> {
    Success,
    Failure,
    ExtensionFailure,
    Identities(Vec<(&'a [u8], &'a [u8])>),
    Signature(Vec<u8>),
    Query(&'static [&'static str]),
}

impl Response<'_> {
    /// Append the whole frame (length prefix included) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Response::Success => out.push(msg::SSH_AGENT_SUCCESS),
            Response::Failure => out.push(msg::SSH_AGENT_FAILURE),
            Response::ExtensionFailure => out.push(msg::SSH_AGENT_EXTENSION_FAILURE),
            Response::Identities(ids) => {
                out.push(msg::SSH_AGENT_IDENTITIES_ANSWER);
                let n = u32::try_from(ids.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&n.to_be_bytes());
                for (blob, comment) in ids {
                    put_string(out, blob);
                    put_string(out, comment);
                }
            }
            Response::Signature(sig) => {
                out.push(msg::SSH_AGENT_SIGN_RESPONSE);
                put_string(out, sig);
            }
            Response::Query(names) => {
                // OpenSSH: the names are concatenated strings after the extension name, no count.
                out.push(msg::SSH_AGENT_EXTENSION_RESPONSE);
                put_string(out, EXT_QUERY.as_bytes());
                for name in names.iter() {
                    put_string(out, name.as_bytes());
                }
            }
        }
        let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
        if let Some(prefix) = out.get_mut(start..start + 4) {
            prefix.copy_from_slice(&len.to_be_bytes());
        }
    }
}

/// What the framing layer found at the front of a connection's input buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet.
    Incomplete,
    /// A whole frame: its body is `input[4..4 + len]`.
    Complete(usize),
    /// Length 0 or over MAX_MESSAGE_LEN: close the connection (OpenSSH does the same).
    Invalid,
}

/// Look at the length prefix of `input`.
pub fn frame(input: &[u8]) -> Frame {
    let Some(prefix) = input.get(..4) else {
        return Frame::Incomplete;
    };
    let mut a = [0u8; 4];
    a.copy_from_slice(prefix);
    let len = u32::from_be_bytes(a) as usize;
    if len == 0 || len > MAX_MESSAGE_LEN {
        return Frame::Invalid;
    }
    if input.len() - 4 < len {
        return Frame::Incomplete;
    }
    Frame::Complete(len)
}

/// What `serve` did with the front of a connection's input.
pub enum Served<T> {
    /// Not a whole frame yet: nothing was read.
    Incomplete,
    /// A frame length of 0 or over `MAX_MESSAGE_LEN`: close the connection.
    Invalid,
    /// A slow request (`Request::is_slow`), decoded and not answered; the frame's `len`
    /// bytes (prefix included) are done with. `answer` it when its turn comes.
    Slow {
        len: usize,
        request: Request,
        /// As `Answer::secret`: decoding it copied a key or a passphrase.
        secret: bool,
    },
    /// Answered: the frame's `len` bytes are done with.
    Done { len: usize, answer: Answer<T> },
}

/// What the handler `serve` is given answers: a response to send now, or something else for
/// the caller (an answer that is not a response yet).
pub enum Handled<'a, T> {
    Now(Response<'a>),
    Later(T),
}

/// What `answer` did: the response `handle` gave is in the output, or `later` holds what it
/// gave instead (an answer that is not a response yet).
pub struct Answer<T> {
    /// Answering put private key material or a passphrase in memory
    /// (`Request::touches_secrets`): the caller wipes its stack (`secret::wipe_stack`).
    pub secret: bool,
    pub later: Option<T>,
}

/// One request, from the front of a connection's input to its encoded reply: frame it,
/// decode it, let `handle` answer it (the server passes the agent's `handle`), and append
/// the response to `out`. A slow request is handed back decoded instead (`Served::Slow`);
/// a body that does not decode gets FAILURE, and the connection lives on.
///
/// Never inlined, nor is `answer`: decoding an ADD and signing leave copies of key material
/// in their stack frames (moves of the crypto crates' values, which no `Zeroize` reaches),
/// and those frames must lie below the caller's, where `secret::wipe_stack` called from the
/// caller's own level clears them. Inlined, they would be part of the caller's (the loop's)
/// live frame, which no wipe below it reaches. A body that does not decode built no key
/// (`NewKey::read` checks the layout only): nothing to wipe.
#[inline(never)]
pub fn serve<'a, T>(
    input: &[u8],
    out: &mut Vec<u8>,
    handle: impl FnOnce(Request) -> Handled<'a, T>,
) -> Served<T> {
    let len = match frame(input) {
        Frame::Incomplete => return Served::Incomplete,
        Frame::Invalid => return Served::Invalid,
        Frame::Complete(len) => 4usize.saturating_add(len),
    };
    let request = match input.get(4..len).map(Request::decode) {
        Some(Ok(request)) => request,
        failed => {
            if let Some(Err(e)) = failed {
                debug!("cannot decode request: {e}");
            }
            Response::Failure.encode(out);
            let answer = Answer {
                secret: false,
                later: None,
            };
            return Served::Done { len, answer };
        }
    };
    if request.is_slow() {
        let secret = request.touches_secrets();
        return Served::Slow {
            len,
            request,
            secret,
        };
    }
    Served::Done {
        len,
        answer: answer(request, out, handle),
    }
}

/// Let `handle` answer a decoded request and append its response to `out` (see `serve`).
#[inline(never)]
pub fn answer<'a, T>(
    request: Request,
    out: &mut Vec<u8>,
    handle: impl FnOnce(Request) -> Handled<'a, T>,
) -> Answer<T> {
    let secret = request.touches_secrets();
    debug!("request {request:?}");
    let later = match handle(request) {
        Handled::Now(response) => {
            response.encode(out);
            None
        }
        Handled::Later(later) => Some(later),
    };
    Answer { secret, later }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![kind];
        for p in parts {
            put_string(&mut v, p);
        }
        v
    }

    #[test]
    fn framing_rejects_zero_and_oversized_lengths() {
        assert_eq!(frame(&[0, 0, 0, 0, 11]), Frame::Invalid);
        assert_eq!(frame(&[0xff, 0xff, 0xff, 0xff]), Frame::Invalid);
        let over = (MAX_MESSAGE_LEN as u32 + 1).to_be_bytes();
        assert_eq!(frame(&over), Frame::Invalid);
        // Exactly the maximum is accepted (OpenSSH does too); it waits for the body.
        let max = (MAX_MESSAGE_LEN as u32).to_be_bytes();
        assert_eq!(frame(&max), Frame::Incomplete);
    }

    #[test]
    fn framing_waits_for_whole_frames() {
        assert_eq!(frame(&[]), Frame::Incomplete);
        assert_eq!(frame(&[0, 0, 0]), Frame::Incomplete);
        assert_eq!(frame(&[0, 0, 0, 1]), Frame::Incomplete);
        assert_eq!(frame(&[0, 0, 0, 1, 11]), Frame::Complete(1));
        assert_eq!(frame(&[0, 0, 0, 1, 11, 0, 0]), Frame::Complete(1));
    }

    #[test]
    fn empty_body_is_an_error() {
        assert!(Request::decode(&[]).is_err());
    }

    #[test]
    fn simple_requests() {
        assert!(matches!(
            Request::decode(&[11]),
            Ok(Request::RequestIdentities)
        ));
        // Trailing bytes are ignored, as OpenSSH does.
        assert!(matches!(
            Request::decode(&[11, 1, 2]),
            Ok(Request::RequestIdentities)
        ));
        assert!(matches!(
            Request::decode(&[19]),
            Ok(Request::RemoveAllIdentities)
        ));
        assert!(matches!(
            Request::decode(&[9]),
            Ok(Request::RemoveAllIdentities)
        ));
        assert!(matches!(Request::decode(&[200]), Ok(Request::Unknown(200))));
        assert!(matches!(Request::decode(&[1]), Ok(Request::Unknown(1))));
    }

    #[test]
    fn sign_request_decodes_and_truncations_fail() {
        let mut b = body(13, &[b"blob", b"data"]);
        b.extend_from_slice(&4u32.to_be_bytes());
        match Request::decode(&b) {
            Ok(Request::Sign { key, data, flags }) => {
                assert_eq!(key, b"blob");
                assert_eq!(data, b"data");
                assert_eq!(flags, 4);
            }
            other => panic!("{other:?}"),
        }
        for cut in 1..b.len() {
            assert!(Request::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn inner_length_beyond_frame_fails() {
        let mut b = vec![13];
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        b.extend_from_slice(b"abc");
        assert!(Request::decode(&b).is_err());
        let mut b = vec![18];
        b.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
        assert!(Request::decode(&b).is_err());
    }

    #[test]
    fn lock_and_unlock() {
        assert!(
            matches!(Request::decode(&body(22, &[b"pw"])), Ok(Request::Lock(p)) if p.as_slice() == b"pw")
        );
        assert!(
            matches!(Request::decode(&body(23, &[b""])), Ok(Request::Unlock(p)) if p.is_empty())
        );
        assert!(Request::decode(&[22]).is_err());
        assert!(Request::decode(&[23, 0, 0, 0, 9, 1]).is_err());
    }

    #[test]
    fn extensions() {
        assert!(matches!(
            Request::decode(&body(27, &[b"query"])),
            Ok(Request::Extension(Extension::Query))
        ));
        assert!(matches!(
            Request::decode(&body(27, &[b"foo@example.com"])),
            Ok(Request::Extension(Extension::Other(n))) if n == "foo@example.com"
        ));
        // A session-bind with a missing field does not decode.
        assert!(Request::decode(&body(27, &[b"session-bind@openssh.com", b"k", b"s"])).is_err());
        let mut b = body(27, &[b"session-bind@openssh.com", b"k", b"s", b"g"]);
        b.push(1);
        assert!(matches!(
            Request::decode(&b),
            Ok(Request::Extension(Extension::SessionBind(SessionBind {
                forwarding: true,
                ..
            })))
        ));
        assert!(Request::decode(&[27, 0, 0, 0, 2, 0xff, 0xfe]).is_err());
    }

    #[test]
    fn constraints_parse_and_refuse_unknown() {
        let parse = |b: &[u8]| Constraints::decode(&mut Reader::new(b));
        assert_eq!(parse(&[]), Ok(Constraints::default()));
        assert_eq!(
            parse(&[1, 0, 0, 2, 0x58, 2]),
            Ok(Constraints {
                lifetime: Some(600),
                confirm: true,
                ..Constraints::default()
            })
        );
        assert!(parse(&[1, 0, 0, 2, 0x58, 1, 0, 0, 0, 1]).is_err());
        assert!(parse(&[2, 2]).is_err());
        assert!(parse(&[3, 0, 0, 0, 1]).is_err());
        assert!(parse(&[1, 0, 0]).is_err());
        let mut ext = vec![255];
        put_string(&mut ext, b"restrict-destination-v00@openssh.com");
        assert!(parse(&ext).is_err());
        let c = Constraints {
            lifetime: Some(7),
            confirm: true,
            ..Constraints::default()
        };
        let mut enc = Vec::new();
        c.encode(&mut enc);
        assert_eq!(parse(&enc), Ok(c));
    }

    #[test]
    fn responses_encode_as_openssh() {
        let enc = |r: Response<'_>| {
            let mut v = Vec::new();
            r.encode(&mut v);
            v
        };
        assert_eq!(enc(Response::Success), [0, 0, 0, 1, 6]);
        assert_eq!(enc(Response::Failure), [0, 0, 0, 1, 5]);
        assert_eq!(enc(Response::ExtensionFailure), [0, 0, 0, 1, 28]);
        assert_eq!(
            enc(Response::Identities(vec![])),
            [0, 0, 0, 5, 12, 0, 0, 0, 0]
        );
        let v = enc(Response::Identities(vec![(b"k", b"c")]));
        assert_eq!(
            v,
            [
                0, 0, 0, 15, 12, 0, 0, 0, 1, 0, 0, 0, 1, b'k', 0, 0, 0, 1, b'c'
            ]
        );
        let v = enc(Response::Signature(vec![1, 2]));
        assert_eq!(v, [0, 0, 0, 7, 14, 0, 0, 0, 2, 1, 2]);
        let v = enc(Response::Query(&["a"]));
        assert_eq!(
            v,
            [
                0, 0, 0, 15, 29, 0, 0, 0, 5, b'q', b'u', b'e', b'r', b'y', 0, 0, 0, 1, b'a'
            ]
        );
    }

    #[test]
    fn slow_requests_are_recognised() {
        // Read from the decoded request: every body here decodes, but the last two.
        let is_slow = |body: &[u8]| Request::decode(body).is_ok_and(|r| r.is_slow());
        let sign = |blob: &[u8]| {
            let mut b = vec![13];
            put_string(&mut b, blob);
            put_string(&mut b, b"data");
            b.extend_from_slice(&0u32.to_be_bytes());
            b
        };
        let blob = |kind: &[u8]| {
            let mut v = Vec::new();
            put_string(&mut v, kind);
            v
        };
        let add = |kind: u8, key: &str| {
            let mut b = vec![kind];
            b.extend(crate::keys::testkeys::add_body(key));
            put_string(&mut b, b"comment");
            b
        };
        assert!(is_slow(&sign(&blob(b"ssh-rsa"))));
        assert!(is_slow(&sign(&blob(b"ssh-rsa-cert-v01@openssh.com"))));
        assert!(!is_slow(&sign(&blob(b"ssh-ed25519"))));
        assert!(!is_slow(&sign(b"")));
        assert!(is_slow(&add(17, "rsa2048")));
        assert!(!is_slow(&add(25, "ecdsa256")));
        assert!(is_slow(&body(22, &[b"pw"])));
        assert!(is_slow(&body(23, &[b"pw"])));
        assert!(!is_slow(&[11]));
        assert!(!is_slow(&[]));
        assert!(!is_slow(&body(17, &[b"ssh-rsa"])));
    }

    #[test]
    fn requests_touching_secrets() {
        let touches = |body: &[u8]| Request::decode(body).unwrap().touches_secrets();
        let mut add = vec![17];
        add.extend(crate::keys::testkeys::add_body("ed25519"));
        put_string(&mut add, b"");
        let mut sign = body(13, &[b"k", b"d"]);
        sign.extend_from_slice(&0u32.to_be_bytes());
        for b in [add, sign, body(22, &[b"pw"]), body(23, &[b"pw"])] {
            assert!(touches(&b), "{:?}", b[0]);
        }
        for b in [vec![11], vec![19], body(18, &[b"k"]), body(27, &[b"query"])] {
            assert!(!touches(&b), "{:?}", b[0]);
        }
    }

    /// `serve`: one frame from the input to the output, or handed back when slow.
    #[test]
    fn serving_one_frame() {
        let framed = |body: &[u8]| {
            let mut f = (body.len() as u32).to_be_bytes().to_vec();
            f.extend_from_slice(body);
            f
        };
        let mut out = Vec::new();
        let list = |r: Request| match r {
            Request::RequestIdentities => Handled::Now(Response::Identities(vec![])),
            _ => Handled::Later("later"),
        };
        assert!(matches!(serve(&[0, 0], &mut out, list), Served::Incomplete));
        assert!(matches!(serve(&[0; 5], &mut out, list), Served::Invalid));
        assert!(out.is_empty());
        // Answered, the frame and whatever follows it left for the next call.
        let mut input = framed(&[11]);
        input.extend(framed(&[11]));
        let Served::Done { len, answer } = serve(&input, &mut out, list) else {
            panic!("not answered")
        };
        assert_eq!((len, answer.secret, answer.later), (5, false, None));
        assert_eq!(out, [0, 0, 0, 5, 12, 0, 0, 0, 0]);
        // A body that does not decode: FAILURE, and nothing for the handler.
        out.clear();
        let Served::Done { answer, .. } = serve(&framed(&[13, 0]), &mut out, list) else {
            panic!("not answered")
        };
        assert_eq!(answer.later, None);
        assert_eq!(out, [0, 0, 0, 1, 5]);
        // An answer for later goes back to the caller; a slow request is not handled.
        out.clear();
        let Served::Done { answer, .. } = serve(&framed(&[19]), &mut out, list) else {
            panic!("not answered")
        };
        assert_eq!(answer.later, Some("later"));
        let lock = framed(&body(22, &[b"pw"]));
        let Served::Slow { len, secret, .. } = serve(&lock, &mut out, list) else {
            panic!("not slow")
        };
        assert_eq!((len, secret), (lock.len(), true));
        assert!(out.is_empty());
    }
}
