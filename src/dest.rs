//! Destination constraints (`ssh-add -h`, OpenSSH PROTOCOL.agent): their types and codec
//! (the `restrict-destination-v00@openssh.com` body that `protocol` hands over undecoded),
//! the constraints of a key compiled for matching, the session bindings a connection
//! records, the userauth request a constrained key may sign, OpenSSH's
//! `identity_permitted`, and the wildcard matcher. No clock of its own: every check is
//! given the wall clock (seconds since the epoch) by its caller.
//!
//! Every request's work here is bounded, whatever a client sends (it may add keys and bind
//! hosts of its own making). A host certificate is parsed and verified once, when it is
//! bound, and what matching needs is recorded: its CA, its principals, its validity window
//! (checked at each use against the wall clock, as OpenSSH checks it: a connection may
//! outlive a certificate). Later checks compare tagged blobs and match names. Names are
//! capped in length (hosts 255 bytes, users 255), and so are wildcard principals, so one
//! match is at most a few hundred word operations. The agent caps the constraints it holds
//! in total (`MAX_TOTAL`), so one visibility check over every key, on a connection with
//! every binding allowed, takes about two milliseconds (tests/destinations.rs measures it).

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

use crate::keys;
use crate::protocol::{Response, SessionBind};
use crate::wire::{Reader, Refused, put_string};

/// Most session bindings on one connection (OpenSSH: AGENT_MAX_SESSION_IDS).
const MAX_SESSION_IDS: usize = 16;
/// Longest session id accepted in a bind (OpenSSH: AGENT_MAX_SID_LEN).
const MAX_SID_LEN: usize = 128;
/// Most principals in a bound host certificate (OpenSSH: SSHKEY_CERT_MAX_PRINCIPALS; it
/// refuses to parse a certificate with more).
const MAX_CERT_PRINCIPALS: usize = 256;
/// Longest principal in a bound host certificate. OpenSSH has no limit; principals are
/// matched against host names, which are at most this long.
const MAX_PRINCIPAL_LEN: usize = MAX_HOSTNAME_LEN;
/// Most bytes of wildcard principals (those with `*` or `?`) in a bound host certificate,
/// together. OpenSSH has no limit. Each is matched against every host name listed with the
/// certificate's CA; plain principals are a lookup.
const MAX_WILDCARD_PRINCIPAL_BYTES: usize = 64;
/// Longest user name a destination-constrained key signs for. OpenSSH has no limit; Linux
/// allows 32 bytes (`useradd`), POSIX systems LOGIN_NAME_MAX (256 with the final NUL).
const MAX_USER_LEN: usize = 255;

/// Most destination constraints on one key (OpenSSH: AGENT_MAX_DEST_CONSTRAINTS).
pub const MAX_DEST_CONSTRAINTS: usize = 1024;
/// Longest user pattern in a hop (OpenSSH 10.4: AGENT_USER_CONSTRAINT_MAX_LEN).
pub const MAX_USER_PATTERN_LEN: usize = 256;
/// Longest host name in a hop. OpenSSH has no limit; a DNS name has at most 253 bytes, and
/// the name is matched against host certificates' principals, whose cost grows with it.
pub const MAX_HOSTNAME_LEN: usize = 255;

/// What the destination constraints of all keys may hold together; an add beyond it is
/// refused. OpenSSH has no such limit (only 1024 constraints per key). Every visibility
/// check may look at all of it once per binding, so it bounds the work of one request:
/// each host key is a tag comparison, each CA key a principal match (at most 64 bytes of
/// wildcards over a 255-byte name). The bytes bound the memory (2048 keys of 256 KiB
/// constraints would be 512 MiB).
pub const MAX_TOTAL: Cost = Cost {
    host_keys: 16384,
    ca_keys: 256,
    bytes: 8 << 20,
};

/// A keyed hash of a blob or name, computed once when a key is added or a host bound: most
/// comparisons are then of two integers. A collision only costs a byte comparison (the
/// blob is always compared when tags are equal); the key keeps clients from forcing them.
fn tag(bytes: &[u8]) -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new).hash_one(bytes)
}

// ---------------------------------------------------------------------------------------------
// The constraints as an ADD request carries them

/// A host key in a hop, or a CA key whose host certificates it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopKey {
    pub blob: Vec<u8>,
    pub is_ca: bool,
}

/// One end of a destination constraint: a user pattern (only on `to`), a host name (for
/// certificates and messages) and the keys that identify the host. An empty `from` is the
/// origin, the machine the agent runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hop {
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub keys: Vec<HopKey>,
}

/// "From this host, to that host (as that user)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestConstraint {
    pub from: Hop,
    pub to: Hop,
}

/// OpenSSH's `parse_dest_constraint_hop`.
fn decode_hop(body: &[u8]) -> Result<Hop, Refused> {
    let mut r = Reader::new(body);
    let user = r.cstring()?;
    let hostname = r.cstring()?;
    if !r.string()?.is_empty() {
        return Err(Refused("unsupported hop extensions"));
    }
    if user.len() > MAX_USER_PATTERN_LEN {
        return Err(Refused("user match pattern too long"));
    }
    if hostname.len() > MAX_HOSTNAME_LEN {
        return Err(Refused("host name too long"));
    }
    let mut keys = Vec::new();
    while !r.is_empty() {
        let blob = r.string()?;
        if !keys::is_public_key(blob) {
            return Err(Refused("invalid host key in destination constraint"));
        }
        let is_ca = r.bool()?;
        keys.push(HopKey {
            blob: blob.to_vec(),
            is_ca,
        });
    }
    Ok(Hop {
        user: (!user.is_empty()).then_some(user),
        hostname: (!hostname.is_empty()).then_some(hostname),
        keys,
    })
}

/// OpenSSH's `parse_dest_constraint`, with its consistency checks.
fn decode_dest_constraint(r: &mut Reader<'_>) -> Result<DestConstraint, Refused> {
    let mut c = Reader::new(r.string()?);
    let from = decode_hop(c.string()?)?;
    let to = decode_hop(c.string()?)?;
    if !c.string()?.is_empty() {
        return Err(Refused("unsupported constraint extensions"));
    }
    if from.hostname.is_none() != from.keys.is_empty() || from.user.is_some() {
        return Err(Refused("inconsistent \"from\" specification"));
    }
    if to.hostname.is_none() || to.keys.is_empty() {
        return Err(Refused("incomplete \"to\" specification"));
    }
    Ok(DestConstraint { from, to })
}

fn encode_hop(out: &mut Vec<u8>, hop: &Hop) {
    let mut h = Vec::new();
    put_string(&mut h, hop.user.as_deref().unwrap_or_default().as_bytes());
    put_string(
        &mut h,
        hop.hostname.as_deref().unwrap_or_default().as_bytes(),
    );
    put_string(&mut h, b"");
    for k in &hop.keys {
        put_string(&mut h, &k.blob);
        h.push(u8::from(k.is_ca));
    }
    put_string(out, &h);
}

/// The body of a `restrict-destination-v00@openssh.com` constraint: a list of OpenSSH's
/// `parse_dest_constraint`, which must not be empty.
fn decode_constraints(body: &[u8]) -> Result<Vec<DestConstraint>, Refused> {
    let mut list = Reader::new(body);
    let mut constraints = Vec::new();
    while !list.is_empty() {
        if constraints.len() >= MAX_DEST_CONSTRAINTS {
            return Err(Refused("too many destination constraints"));
        }
        constraints.push(decode_dest_constraint(&mut list)?);
    }
    if constraints.is_empty() {
        // OpenSSH would store "no constraints", i.e. unrestricted: a client that sent the
        // extension meant a restriction.
        return Err(Refused("empty destination constraint"));
    }
    Ok(constraints)
}

/// Encode destination constraints as the body of a `restrict-destination-v00@openssh.com`
/// constraint (what `ssh-add -h` sends and `Destinations::decode` reads).
pub fn encode(constraints: &[DestConstraint]) -> Vec<u8> {
    let mut list = Vec::new();
    for d in constraints {
        let mut c = Vec::new();
        encode_hop(&mut c, &d.from);
        encode_hop(&mut c, &d.to);
        put_string(&mut c, b"");
        put_string(&mut list, &c);
    }
    list
}

// ---------------------------------------------------------------------------------------------
// The constraints of one key, compiled

/// What a key's destination constraints cost the agent, counted against `MAX_TOTAL`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Host keys listed in hops, CA keys included.
    pub host_keys: usize,
    /// Of those, the CA keys (each costs a principal match per binding).
    pub ca_keys: usize,
    /// Key blobs, names and patterns held, in bytes (with a little for each entry).
    pub bytes: usize,
}

impl Cost {
    pub fn plus(self, o: Cost) -> Cost {
        Cost {
            host_keys: self.host_keys.saturating_add(o.host_keys),
            ca_keys: self.ca_keys.saturating_add(o.ca_keys),
            bytes: self.bytes.saturating_add(o.bytes),
        }
    }

    pub fn minus(self, o: Cost) -> Cost {
        Cost {
            host_keys: self.host_keys.saturating_sub(o.host_keys),
            ca_keys: self.ca_keys.saturating_sub(o.ca_keys),
            bytes: self.bytes.saturating_sub(o.bytes),
        }
    }

    pub fn within(self, limit: Cost) -> bool {
        self.host_keys <= limit.host_keys
            && self.ca_keys <= limit.ca_keys
            && self.bytes <= limit.bytes
    }
}

/// Bytes counted for each rule and each hop key beside their contents.
const ENTRY_OVERHEAD: usize = 32;

/// A host key in a hop, or a CA key whose host certificates it accepts.
struct RuleKey {
    tag: u64,
    blob: Box<[u8]>,
    is_ca: bool,
}

/// A host name with its tag (for the lookup among a certificate's plain principals) and,
/// in a hop that lists a CA key, prepared for matching wildcard principals.
struct Name {
    tag: u64,
    text: Box<[u8]>,
    matcher: Option<Box<Text>>,
}

/// One end of a rule. No keys (and no name): the origin, this machine.
struct RuleEnd {
    name: Option<Name>,
    keys: Vec<RuleKey>,
}

/// "From this host, to that host (as a user matching this pattern)".
struct Rule {
    from: RuleEnd,
    to: RuleEnd,
    user: Option<Box<[u8]>>,
}

/// A key's destination constraints, ready for matching. Empty: the key is unconstrained.
#[derive(Default)]
pub struct Destinations {
    rules: Vec<Rule>,
    cost: Cost,
}

impl fmt::Debug for Destinations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Destinations({} rules, {:?})",
            self.rules.len(),
            self.cost
        )
    }
}

impl Destinations {
    /// Decode and compile the body of a `restrict-destination-v00@openssh.com` constraint.
    pub fn decode(body: &[u8]) -> Result<Destinations, Refused> {
        decode_constraints(body).map(Destinations::new)
    }

    /// Compile decoded constraints (their per-key limits were checked by the decoder).
    pub fn new(constraints: Vec<DestConstraint>) -> Destinations {
        let mut cost = Cost::default();
        let mut hop = |h: Hop| {
            cost.bytes = cost
                .bytes
                .saturating_add(h.hostname.as_ref().map_or(0, String::len));
            let any_ca = h.keys.iter().any(|k| k.is_ca);
            let keys: Vec<RuleKey> = h
                .keys
                .into_iter()
                .map(|k| {
                    cost.host_keys = cost.host_keys.saturating_add(1);
                    cost.ca_keys = cost.ca_keys.saturating_add(usize::from(k.is_ca));
                    cost.bytes = cost
                        .bytes
                        .saturating_add(k.blob.len().saturating_add(ENTRY_OVERHEAD));
                    RuleKey {
                        tag: tag(&k.blob),
                        blob: k.blob.into_boxed_slice(),
                        is_ca: k.is_ca,
                    }
                })
                .collect();
            // Only certificates signed by a listed CA are matched by name. (The matcher,
            // under 9 KiB, exists for at most MAX_TOTAL.ca_keys hops.)
            let name = h.hostname.map(|n| Name {
                tag: tag(n.as_bytes()),
                matcher: any_ca
                    .then(|| Text::new(n.as_bytes()).map(Box::new))
                    .flatten(),
                text: n.into_bytes().into_boxed_slice(),
            });
            RuleEnd { name, keys }
        };
        let mut rules = Vec::with_capacity(constraints.len());
        for c in constraints {
            let user = c.to.user.clone().map(|u| u.into_bytes().into_boxed_slice());
            let from = hop(c.from);
            let to = hop(c.to);
            rules.push(Rule { from, to, user });
        }
        for r in &rules {
            cost.bytes = cost.bytes.saturating_add(
                ENTRY_OVERHEAD.saturating_add(r.user.as_ref().map_or(0, |u| u.len())),
            );
        }
        Destinations { rules, cost }
    }

    pub fn cost(&self) -> Cost {
        self.cost
    }
}

// ---------------------------------------------------------------------------------------------
// Session bindings

/// Per-connection protocol state: the session bindings `ssh` recorded on this connection
/// (OpenSSH PROTOCOL.agent). The server keeps one per connection and passes it to `handle`.
#[derive(Debug, Default)]
pub struct Session {
    bindings: Vec<Binding>,
    /// A bind was tried on this connection, even one that failed: the connection is
    /// remote, and a failed bind must not leave it looking local (OpenSSH 9.6).
    bind_attempted: bool,
}

impl Session {
    /// Whether the request came through a forwarded agent.
    pub fn is_forwarded(&self) -> bool {
        self.bindings.iter().any(|b| b.forwarded)
    }

    /// The hops recorded on this connection, first first: each host key blob as bound, and
    /// whether it was bound for forwarding (for prompts and the use log).
    pub fn hops(&self) -> impl Iterator<Item = (&[u8], bool)> {
        self.bindings
            .iter()
            .map(|b| (b.host_key.as_slice(), b.forwarded))
    }
}

/// One hop of the path a request came along: the host it reached and its session.
#[derive(Debug)]
struct Binding {
    host_key: Vec<u8>,
    /// What matching needs of the host key, worked out when it was bound.
    host: Host,
    session_id: Vec<u8>,
    /// Bound for agent forwarding (true) or for authentication at that host (false).
    forwarded: bool,
}

#[derive(Debug)]
enum Host {
    /// A plain host key: hops must list this blob (tagged).
    Plain { tag: u64 },
    /// A host certificate; `None` when it can never match (not a host certificate, a
    /// critical option, a SHA-1 signature).
    Cert(Option<Box<HostCert>>),
}

/// A bound host certificate as matching needs it: parsed and its CA signature verified
/// once, at bind time. Its validity is checked at each use against the wall clock, as
/// OpenSSH checks it (a connection may outlive a certificate), from the recorded window.
#[derive(Debug)]
struct HostCert {
    ca: Vec<u8>,
    ca_tag: u64,
    /// Principals without wildcards, sorted by tag: a host name matches one only by
    /// being equal to it.
    plain: Vec<(u64, Box<[u8]>)>,
    /// Principals with `*` or `?`.
    wildcards: Vec<Box<[u8]>>,
    valid_after: u64,
    valid_before: u64,
}

impl HostCert {
    fn new(c: keys::HostCert) -> Result<HostCert, Refused> {
        if c.principals.len() > MAX_CERT_PRINCIPALS {
            return Err(Refused("host certificate has too many principals"));
        }
        let mut plain = Vec::new();
        let mut wildcards = Vec::new();
        let mut wildcard_bytes = 0usize;
        for p in c.principals {
            if p.len() > MAX_PRINCIPAL_LEN {
                return Err(Refused("host certificate principal too long"));
            }
            if p.bytes().any(|b| b == b'*' || b == b'?') {
                wildcard_bytes = wildcard_bytes.saturating_add(p.len());
                wildcards.push(p.into_bytes().into_boxed_slice());
            } else {
                plain.push((tag(p.as_bytes()), p.into_bytes().into_boxed_slice()));
            }
        }
        if wildcard_bytes > MAX_WILDCARD_PRINCIPAL_BYTES {
            return Err(Refused("host certificate has too many wildcard principals"));
        }
        plain.sort_unstable_by_key(|(t, _)| *t);
        Ok(HostCert {
            ca_tag: tag(&c.ca),
            ca: c.ca,
            plain,
            wildcards,
            valid_after: c.valid_after,
            valid_before: c.valid_before,
        })
    }

    fn valid_at(&self, now: u64) -> bool {
        self.valid_after <= now && now < self.valid_before
    }

    /// OpenSSH 10.3 `sshkey_cert_check_authority`: some principal, a wildcard pattern,
    /// matches the host name. A certificate without principals matches no host.
    fn names(&self, host: &Name) -> bool {
        let first = self.plain.partition_point(|(t, _)| *t < host.tag);
        let plain = self
            .plain
            .get(first..)
            .unwrap_or_default()
            .iter()
            .take_while(|(t, _)| *t == host.tag)
            .any(|(_, p)| **p == *host.text);
        plain
            || host
                .matcher
                .as_ref()
                .is_some_and(|t| self.wildcards.iter().any(|p| t.matches(p)))
    }
}

/// `session-bind@openssh.com` (OpenSSH process_ext_session_bind): record which host, in
/// which session, this connection speaks for. Failures answer SSH_AGENT_EXTENSION_FAILURE.
pub fn session_bind(session: &mut Session, b: SessionBind) -> Response<'static> {
    match try_session_bind(session, b) {
        Ok(()) => Response::Success,
        Err(why) => {
            debug!("session-bind refused: {why}");
            Response::ExtensionFailure
        }
    }
}

fn try_session_bind(session: &mut Session, b: SessionBind) -> Result<(), Refused> {
    session.bind_attempted = true;
    if b.session_id.len() > MAX_SID_LEN {
        return Err(Refused("session id too long"));
    }
    if !keys::is_public_key(&b.host_key) {
        return Err(Refused("invalid host key"));
    }
    if !keys::verify(&b.host_key, &b.session_id, &b.signature) {
        return Err(Refused(
            "host key signature over the session id does not verify",
        ));
    }
    for old in &session.bindings {
        if !old.forwarded {
            return Err(Refused("connection already bound for authentication"));
        }
        let sid_match = crate::secret::ct_eq(&old.session_id, &b.session_id);
        if sid_match && old.host_key == b.host_key {
            return Ok(()); // already recorded
        }
        if sid_match {
            return Err(Refused("session id recorded against a different host key"));
        }
    }
    if session.bindings.len() >= MAX_SESSION_IDS {
        return Err(Refused("too many session ids"));
    }
    let host = if keys::is_certificate(&b.host_key) {
        match keys::host_cert(&b.host_key) {
            Some(c) => Host::Cert(Some(Box::new(HostCert::new(c)?))),
            None => Host::Cert(None),
        }
    } else {
        Host::Plain {
            tag: tag(&b.host_key),
        }
    };
    session.bindings.push(Binding {
        host_key: b.host_key,
        host,
        session_id: b.session_id,
        forwarded: b.forwarding,
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The userauth request a constrained key signs

/// SSH2_MSG_USERAUTH_REQUEST (RFC 4252).
const SSH2_MSG_USERAUTH_REQUEST: u8 = 50;

/// What a publickey userauth request that an agent is asked to sign says.
#[derive(Debug, PartialEq, Eq)]
pub struct UserauthRequest<'a> {
    pub session_id: &'a [u8],
    pub user: String,
    /// The server's host key, present in `publickey-hostbound-v00@openssh.com` requests.
    pub host_key: Option<&'a [u8]>,
}

/// OpenSSH's `parse_userauth_request`: `data` must be exactly a publickey userauth request
/// for `key` (the blob being signed with), with a non-empty session id.
pub fn parse_userauth_request<'a>(data: &'a [u8], key: &[u8]) -> Option<UserauthRequest<'a>> {
    let mut r = Reader::new(data);
    let session_id = r.string().ok()?;
    if session_id.is_empty() || r.u8().ok()? != SSH2_MSG_USERAUTH_REQUEST {
        return None;
    }
    let user = r.cstring().ok()?;
    let service = r.string().ok()?;
    let method = r.string().ok()?;
    let sig_follows = r.u8().ok()?;
    let pkalg = r.string().ok()?;
    let embedded = r.string().ok()?;
    let key_type = Reader::new(key).string().ok()?;
    if sig_follows != 1
        || service != b"ssh-connection"
        || embedded != key
        || !keys::same_type(pkalg, key_type)
    {
        return None;
    }
    let host_key = match method {
        b"publickey-hostbound-v00@openssh.com" => Some(r.string().ok()?),
        b"publickey" => None,
        _ => return None,
    };
    if !r.is_empty() {
        return None;
    }
    Some(UserauthRequest {
        session_id,
        user,
        host_key,
    })
}

// ---------------------------------------------------------------------------------------------
// Permission

/// OpenSSH's `identity_permitted` for listing, removing and replacing: may this connection
/// see a key with these constraints (`None`: unconstrained)? `now` is the wall clock
/// (`sys::wall_clock`).
pub fn visible(d: Option<&Destinations>, session: &Session, now: u64) -> Result<(), Refused> {
    match d {
        None => Ok(()),
        Some(d) => permitted(d, session, None, now),
    }
}

/// OpenSSH process_sign_request2's checks for a destination-constrained key (`key` is its
/// blob): `data` must be a publickey userauth request for the session most recently bound
/// on this connection, for a user and along hops the constraints allow. Returns the user.
pub fn check_sign(
    d: &Destinations,
    session: &Session,
    key: &[u8],
    data: &[u8],
    now: u64,
) -> Result<String, Refused> {
    let last = session.bindings.last().ok_or(Refused(
        "destination-constrained key on an unbound connection",
    ))?;
    let req = parse_userauth_request(data, key).ok_or(Refused(
        "destination-constrained key asked to sign a non-userauth request",
    ))?;
    if req.user.len() > MAX_USER_LEN {
        return Err(Refused("user name too long"));
    }
    let user = Text::new(req.user.as_bytes()).ok_or(Refused("user name too long"))?;
    permitted(d, session, Some(&user), now)?;
    if !crate::secret::ct_eq(req.session_id, &last.session_id) {
        return Err(Refused("session id is not the one last bound"));
    }
    if session.bindings.len() > 1 && req.host_key.is_none() {
        return Err(Refused("no host key in a forwarded signature request"));
    }
    if req
        .host_key
        .is_some_and(|hk| hk != last.host_key.as_slice())
    {
        return Err(Refused("host key differs from the one last bound"));
    }
    Ok(req.user)
}

/// OpenSSH's `identity_permitted`: may this connection see (`user` = None) or sign with
/// (`user` = the target user) a key with these constraints? Every recorded hop must be
/// allowed by some destination constraint, starting from this machine.
fn permitted(
    d: &Destinations,
    session: &Session,
    user: Option<&Text>,
    now: u64,
) -> Result<(), Refused> {
    if d.rules.is_empty() {
        return Ok(()); // unconstrained
    }
    if session.bind_attempted && session.bindings.is_empty() {
        return Err(Refused("previous session bind failed on this connection"));
    }
    let Some(last) = session.bindings.len().checked_sub(1) else {
        return Ok(()); // local use
    };
    let mut from: Option<&Binding> = None;
    for (i, b) in session.bindings.iter().enumerate() {
        let test_user = if i == last {
            // The user is given only for signatures: never sign on a forwarding hop.
            if b.forwarded && user.is_some() {
                return Err(Refused("tried to sign on a forwarding hop"));
            }
            user
        } else if !b.forwarded {
            return Err(Refused("tried to forward through a signing bind"));
        } else {
            None
        };
        if !permitted_by(d, from, Some(b), test_user, now) {
            return Err(Refused("not permitted for this destination"));
        }
        from = Some(b);
    }
    // After a forwarding hop, show only keys that may be used beyond it.
    if let Some(b) = session.bindings.last()
        && b.forwarded
        && user.is_none()
        && !permitted_by(d, Some(b), None, None, now)
    {
        return Err(Refused("key permitted at this host but not beyond"));
    }
    Ok(())
}

/// OpenSSH's `permitted_by_dest_constraints`.
fn permitted_by(
    d: &Destinations,
    from: Option<&Binding>,
    to: Option<&Binding>,
    user: Option<&Text>,
    now: u64,
) -> bool {
    d.rules.iter().any(|r| {
        let from_ok = match from {
            None => r.from.name.is_none() && r.from.keys.is_empty(),
            Some(b) => match_key_hop(b, &r.from, now),
        };
        from_ok
            && to.is_none_or(|b| match_key_hop(b, &r.to, now))
            && match (&r.user, user) {
                (Some(pattern), Some(u)) => u.matches(pattern),
                _ => true,
            }
    })
}

/// OpenSSH's `match_key_hop`: a plain host key must be listed as itself; a host
/// certificate must be signed by a listed CA, valid now, and name the hop's host among its
/// principals (each a wildcard pattern, OpenSSH 10.3).
fn match_key_hop(b: &Binding, hop: &RuleEnd, now: u64) -> bool {
    // Explicit loops: every binding scans every listed key of a visible key.
    match &b.host {
        Host::Plain { tag } => {
            for k in &hop.keys {
                if !k.is_ca && k.tag == *tag && *k.blob == *b.host_key {
                    return true;
                }
            }
            false
        }
        Host::Cert(None) => false,
        Host::Cert(Some(c)) => {
            let Some(name) = &hop.name else {
                return false;
            };
            let mut signed_by_listed_ca = false;
            for k in &hop.keys {
                if k.is_ca && k.tag == c.ca_tag && *k.blob == *c.ca {
                    signed_by_listed_ca = true;
                    break;
                }
            }
            signed_by_listed_ca && c.valid_at(now) && c.names(name)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wildcard patterns

/// Longest text a `Text` holds: a host name or a user name.
const TEXT_MAX: usize = MAX_USER_LEN;
const _: () = assert!(MAX_HOSTNAME_LEN <= TEXT_MAX);
/// Words of a state set: one bit for each text prefix, of length 0 to TEXT_MAX.
const WORDS: usize = TEXT_MAX / 64 + 1;
const _: () = assert!(TEXT_MAX < WORDS * 64);
type States = [u64; WORDS];

/// A text prepared for matching many patterns against it: for each byte, the positions it
/// holds, as bit sets. Matching a pattern then costs a few word operations per pattern
/// byte, whatever the pattern: no pattern can make it slow (OpenSSH's `match_pattern` runs
/// a state per pattern byte over the text; this runs a state per text position over the
/// pattern, and gives the same answers).
pub struct Text {
    len: usize,
    /// The states that exist: text prefixes of length 0 to `len`.
    valid: States,
    /// Byte → 1 + its index in `at`; 0 when the text does not hold it.
    index: [u16; 256],
    at: Vec<States>,
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Text({} bytes)", self.len)
    }
}

impl Text {
    /// `None` when `s` is longer than TEXT_MAX bytes.
    pub fn new(s: &[u8]) -> Option<Text> {
        if s.len() > TEXT_MAX {
            return None;
        }
        let mut t = Text {
            len: s.len(),
            valid: [0; WORDS],
            index: [0; 256],
            at: Vec::new(),
        };
        for i in 0..=s.len() {
            set(&mut t.valid, i);
        }
        for (i, &c) in s.iter().enumerate() {
            // A byte indexes 256 entries.
            let e = &mut t.index[usize::from(c)];
            if *e == 0 {
                t.at.push([0; WORDS]);
                // At most TEXT_MAX distinct bytes: fits.
                *e = u16::try_from(t.at.len()).unwrap_or(u16::MAX);
            }
            if let Some(at) = t.at.get_mut(usize::from(*e).saturating_sub(1)) {
                set(at, i);
            }
        }
        Some(t)
    }

    /// OpenSSH's `match_pattern`: `*` matches any run of bytes, `?` any one byte, and
    /// every other byte itself; the whole text must match.
    // Index loops on purpose (see below).
    #[allow(clippy::needless_range_loop)]
    pub fn matches(&self, pattern: &[u8]) -> bool {
        const NONE: States = [0; WORDS];
        // d: the text prefixes (by length) that the pattern read so far matches.
        let mut d: States = NONE;
        d[0] = 1;
        // Plain index loops over the fixed-size state arrays (always in bounds): this is
        // the agent's innermost loop, and iterator adapters cost much in unoptimised builds.
        for &p in pattern {
            if p == b'*' {
                // Any run: every length from the shortest reached on.
                let mut seen = false;
                for i in 0..WORDS {
                    if seen {
                        d[i] = u64::MAX;
                    } else if d[i] != 0 {
                        d[i] |= !((d[i] & d[i].wrapping_neg()) - 1);
                        seen = true;
                    }
                }
            } else {
                // One byte: the lengths whose next text byte is `p` (any, for `?`), plus one.
                let at = if p == b'?' {
                    &self.valid
                } else {
                    // A byte indexes 256 entries.
                    match self.index[usize::from(p)] {
                        0 => return false,
                        n => self
                            .at
                            .get(usize::from(n).saturating_sub(1))
                            .unwrap_or(&NONE),
                    }
                };
                let mut carry = 0;
                for i in 0..WORDS {
                    let t = d[i] & at[i];
                    d[i] = (t << 1) | carry;
                    carry = t >> 63;
                }
            }
            let mut live = 0;
            for i in 0..WORDS {
                d[i] &= self.valid[i];
                live |= d[i];
            }
            if live == 0 {
                return false;
            }
        }
        d.get(self.len / 64)
            .is_some_and(|w| w >> (self.len % 64) & 1 == 1)
    }
}

/// Set bit `i` (below WORDS * 64, as every caller's is).
fn set(s: &mut States, i: usize) {
    if let Some(w) = s.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

/// OpenSSH's `match_pattern` on a text of at most 256 bytes (longer texts match nothing).
#[cfg(test)]
pub fn match_pattern(s: &[u8], pattern: &[u8]) -> bool {
    Text::new(s).is_some_and(|t| t.matches(pattern))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keys::test_counters::cert_parses;
    use crate::keys::{PrivateKey, testkeys};
    use crate::protocol::{Constraints, EXT_RESTRICT_DESTINATION};
    use crate::sys::wall_clock;
    use crate::wire::{Reader, put_string};
    use ssh_key::certificate::{Builder, CertType};
    use ssh_key::encoding::{Decode, Encode};

    /// A host: its key (to sign binds with) and public blob.
    pub(crate) fn host() -> (PrivateKey, Vec<u8>) {
        let body = testkeys::add_body("ed25519");
        let blob = testkeys::public_blob(&body);
        (PrivateKey::decode(&mut Reader::new(&body)).unwrap(), blob)
    }

    /// Bind `s` to `host` in session `sid`, for forwarding when `fwd`.
    pub(crate) fn bind(
        s: &mut Session,
        host: &(PrivateKey, Vec<u8>),
        sid: &[u8],
        fwd: bool,
    ) -> Response<'static> {
        let b = SessionBind {
            host_key: host.1.clone(),
            session_id: sid.to_vec(),
            signature: host.0.sign(sid, 0).unwrap(),
            forwarding: fwd,
        };
        session_bind(s, b)
    }

    #[test]
    fn session_bind_rules() {
        let a_host = host();
        let b_host = host();
        let mut s = Session::default();
        // A forged signature is refused, and the connection counts as remote after it.
        let forged = SessionBind {
            host_key: a_host.1.clone(),
            session_id: b"sid".to_vec(),
            signature: b_host.0.sign(b"sid", 0).unwrap(),
            forwarding: true,
        };
        assert_eq!(session_bind(&mut s, forged), Response::ExtensionFailure);
        assert!(s.bind_attempted && s.bindings.is_empty());
        let mut s = Session::default();
        assert_eq!(bind(&mut s, &a_host, b"sid1", true), Response::Success);
        // The same id with the same key is a no-op; with another key it is refused.
        assert_eq!(bind(&mut s, &a_host, b"sid1", true), Response::Success);
        assert_eq!(
            bind(&mut s, &b_host, b"sid1", true),
            Response::ExtensionFailure
        );
        assert_eq!(s.bindings.len(), 1);
        // An authentication binding cannot be followed by another.
        assert_eq!(bind(&mut s, &b_host, b"sid2", false), Response::Success);
        assert_eq!(
            bind(&mut s, &a_host, b"sid3", true),
            Response::ExtensionFailure
        );
        // Long session ids and too many bindings are refused.
        let mut s = Session::default();
        assert_eq!(
            bind(&mut s, &a_host, &[7u8; 129], true),
            Response::ExtensionFailure
        );
        for i in 0..16u8 {
            assert_eq!(bind(&mut s, &a_host, &[i; 32], true), Response::Success);
        }
        assert_eq!(
            bind(&mut s, &a_host, &[99; 32], true),
            Response::ExtensionFailure
        );
    }

    /// A CA: its private key (for ssh-key's certificate builder) and public blob.
    fn make_ca() -> (ssh_key::PrivateKey, Vec<u8>) {
        let body = testkeys::add_body("ed25519");
        let kp = ssh_key::private::KeypairData::decode(&mut &body[..]).unwrap();
        let key = ssh_key::PrivateKey::new(kp, "ca").unwrap();
        let blob = key.public_key().key_data().encode_vec().unwrap();
        (key, blob)
    }

    /// What a test certificate differs in.
    struct CertSpec<'a> {
        principals: &'a [&'a str],
        host: bool,
        valid: (u64, u64),
        critical: bool,
    }

    fn spec<'a>(principals: &'a [&'a str]) -> CertSpec<'a> {
        let now = wall_clock();
        CertSpec {
            principals,
            host: true,
            valid: (now - 60, now + 3600),
            critical: false,
        }
    }

    /// A certificate of `host`'s key signed by `ca`.
    fn certify(host: &(PrivateKey, Vec<u8>), ca: &ssh_key::PrivateKey, s: &CertSpec) -> Vec<u8> {
        let key = ssh_key::public::KeyData::decode(&mut &host.1[..]).unwrap();
        let mut b = Builder::new([7u8; 16], key, s.valid.0, s.valid.1).unwrap();
        b.cert_type(if s.host {
            CertType::Host
        } else {
            CertType::User
        })
        .unwrap();
        if s.principals.is_empty() {
            b.all_principals_valid().unwrap();
        }
        for p in s.principals {
            b.valid_principal(*p).unwrap();
        }
        if s.critical {
            b.critical_option("x@example.com", "y").unwrap();
        }
        b.sign(ca).unwrap().encode_vec().unwrap()
    }

    /// Binds `blob` (a certificate of `host`'s key) on `s` for authentication.
    fn bind_cert(s: &mut Session, host: &(PrivateKey, Vec<u8>), blob: &[u8]) -> Response<'static> {
        let b = SessionBind {
            host_key: blob.to_vec(),
            session_id: b"sid".to_vec(),
            signature: host.0.sign(b"sid", 0).unwrap(),
            forwarding: false,
        };
        session_bind(s, b)
    }

    /// Constraints allowing `host` (by name) when it shows a certificate from `ca`.
    fn to_ca(host: &str, ca: &[u8]) -> Destinations {
        Destinations::new(vec![DestConstraint {
            from: Hop::default(),
            to: Hop {
                user: None,
                hostname: Some(host.into()),
                keys: vec![HopKey {
                    blob: ca.to_vec(),
                    is_ca: true,
                }],
            },
        }])
    }

    #[test]
    fn host_certificates_are_verified_once_at_bind() {
        let (ca, ca_blob) = make_ca();
        let host = host();
        let now = wall_clock();
        let cert = certify(&host, &ca, &spec(&["hostx", "hostc"]));
        let dests = to_ca("hostc", &ca_blob);
        let mut s = Session::default();
        assert_eq!(bind_cert(&mut s, &host, &cert), Response::Success);
        let parses = cert_parses();
        for _ in 0..100 {
            assert_eq!(visible(Some(&dests), &s, now), Ok(()));
        }
        assert_eq!(
            cert_parses(),
            parses,
            "matching parsed the certificate again"
        );
        // Its validity is checked at each use, from the window recorded at bind time.
        assert!(visible(Some(&dests), &s, now + 3599).is_ok());
        assert!(visible(Some(&dests), &s, now + 3600).is_err());
        assert!(visible(Some(&dests), &s, now - 60).is_ok());
        assert!(visible(Some(&dests), &s, now - 61).is_err());
        assert_eq!(cert_parses(), parses);
        // A wildcard principal matches too.
        let mut s = Session::default();
        let cert = certify(&host, &ca, &spec(&["x", "host?"]));
        assert_eq!(bind_cert(&mut s, &host, &cert), Response::Success);
        assert!(visible(Some(&dests), &s, now).is_ok());
    }

    #[test]
    fn invalid_host_certificates_never_match() {
        let (ca, ca_blob) = make_ca();
        let (other_ca, _) = make_ca();
        let host = host();
        let now = wall_clock();
        let dests = to_ca("hostc", &ca_blob);
        let hostc = &["hostc"][..];
        let cases = [
            (
                "a user certificate",
                certify(
                    &host,
                    &ca,
                    &CertSpec {
                        host: false,
                        ..spec(hostc)
                    },
                ),
            ),
            (
                "a critical option",
                certify(
                    &host,
                    &ca,
                    &CertSpec {
                        critical: true,
                        ..spec(hostc)
                    },
                ),
            ),
            ("another CA", certify(&host, &other_ca, &spec(hostc))),
            (
                "another name",
                certify(&host, &ca, &spec(&["hostd", "hostc.example"])),
            ),
            ("no principals", certify(&host, &ca, &spec(&[]))),
            (
                "expired",
                certify(
                    &host,
                    &ca,
                    &CertSpec {
                        valid: (1, now - 1),
                        ..spec(hostc)
                    },
                ),
            ),
            (
                "not yet valid",
                certify(
                    &host,
                    &ca,
                    &CertSpec {
                        valid: (now + 60, u64::MAX),
                        ..spec(hostc)
                    },
                ),
            ),
        ];
        for (what, cert) in &cases {
            let mut s = Session::default();
            assert_eq!(bind_cert(&mut s, &host, cert), Response::Success, "{what}");
            assert!(visible(Some(&dests), &s, now).is_err(), "{what} matches");
        }
        // A certificate whose CA signature does not verify is not even bound, and the
        // connection stays remote: constrained keys are hidden.
        let mut bad = certify(&host, &ca, &spec(hostc));
        let n = bad.len() - 3;
        bad[n] ^= 1;
        let mut s = Session::default();
        assert_eq!(bind_cert(&mut s, &host, &bad), Response::ExtensionFailure);
        assert!(visible(Some(&dests), &s, now).is_err());
    }

    #[test]
    fn bound_certificate_limits() {
        let (ca, ca_blob) = make_ca();
        let host = host();
        let dests = to_ca("hostc", &ca_blob);
        let bound = |principals: &[String]| {
            let p: Vec<&str> = principals.iter().map(String::as_str).collect();
            let mut s = Session::default();
            let r = bind_cert(&mut s, &host, &certify(&host, &ca, &spec(&p)));
            (r, visible(Some(&dests), &s, wall_clock()).is_ok())
        };
        let named = |n: usize, len: usize| -> Vec<String> {
            let mut v: Vec<String> = (0..n - 1).map(|i| format!("{i:0>len$}")).collect();
            v.push("hostc".into());
            v
        };
        // 256 principals of 255 bytes: bound, and the name among them found.
        assert_eq!(bound(&named(256, 255)), (Response::Success, true));
        assert_eq!(bound(&named(257, 8)).0, Response::ExtensionFailure);
        assert_eq!(bound(&named(2, 256)).0, Response::ExtensionFailure);
        // Wildcard principals: 64 bytes together.
        let wild = |lens: &[usize]| -> Vec<String> {
            let mut v: Vec<String> = lens
                .iter()
                .map(|&l| format!("*{}", "x".repeat(l - 1)))
                .collect();
            v.push("hostc".into());
            v
        };
        assert_eq!(bound(&wild(&[64])), (Response::Success, true));
        assert_eq!(bound(&wild(&[32, 32])), (Response::Success, true));
        assert_eq!(bound(&wild(&[65])).0, Response::ExtensionFailure);
        assert_eq!(bound(&wild(&[32, 33])).0, Response::ExtensionFailure);
    }

    /// A publickey-hostbound userauth request as ssh builds it for `key`.
    fn userauth(sid: &[u8], user: &str, key: &[u8], hostkey: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        put_string(&mut d, sid);
        d.push(50);
        put_string(&mut d, user.as_bytes());
        put_string(&mut d, b"ssh-connection");
        put_string(&mut d, b"publickey-hostbound-v00@openssh.com");
        d.push(1);
        put_string(&mut d, b"ssh-ed25519");
        put_string(&mut d, key);
        put_string(&mut d, hostkey);
        d
    }

    #[test]
    fn user_names_are_capped_for_constrained_keys() {
        let a = host();
        let key = testkeys::public_blob(&testkeys::add_body("ed25519"));
        let mut to = Hop {
            user: Some("*".into()),
            hostname: Some("a".into()),
            keys: vec![HopKey {
                blob: a.1.clone(),
                is_ca: false,
            }],
        };
        let dests = Destinations::new(vec![DestConstraint {
            from: Hop::default(),
            to: to.clone(),
        }]);
        let mut s = Session::default();
        let b = SessionBind {
            host_key: a.1.clone(),
            session_id: b"sid".to_vec(),
            signature: a.0.sign(b"sid", 0).unwrap(),
            forwarding: false,
        };
        assert_eq!(session_bind(&mut s, b), Response::Success);
        let now = wall_clock();
        let user = "u".repeat(MAX_USER_LEN);
        let ok = userauth(b"sid", &user, &key, &a.1);
        assert_eq!(check_sign(&dests, &s, &key, &ok, now), Ok(user.clone()));
        let long = userauth(b"sid", &format!("{user}u"), &key, &a.1);
        assert!(check_sign(&dests, &s, &key, &long, now).is_err());
        // The longest user pattern against the longest user name.
        to.user = Some(format!("*{}", "u".repeat(MAX_USER_PATTERN_LEN - 1)));
        let dests = Destinations::new(vec![DestConstraint {
            from: Hop::default(),
            to,
        }]);
        assert_eq!(check_sign(&dests, &s, &key, &ok, now), Ok(user));
        let other = userauth(b"sid", &"v".repeat(MAX_USER_LEN), &key, &a.1);
        assert!(check_sign(&dests, &s, &key, &other, now).is_err());
    }

    /// The reference: OpenSSH's NFA over pattern positions, as sshkeep had it before.
    fn nfa_match(s: &[u8], pattern: &[u8]) -> bool {
        let star_closure = |states: &mut [bool]| {
            for (i, &p) in pattern.iter().enumerate() {
                if p == b'*' && states[i] {
                    states[i + 1] = true;
                }
            }
        };
        let mut states = vec![false; pattern.len() + 1];
        states[0] = true;
        star_closure(&mut states);
        for &c in s {
            let mut next = vec![false; pattern.len() + 1];
            for (i, &p) in pattern.iter().enumerate() {
                if !states[i] {
                    continue;
                }
                match p {
                    b'*' => next[i] = true,
                    b'?' => next[i + 1] = true,
                    _ if p == c => next[i + 1] = true,
                    _ => {}
                }
            }
            star_closure(&mut next);
            states = next;
        }
        states[pattern.len()]
    }

    #[test]
    fn pattern_matching() {
        let m = |s: &str, p: &str| match_pattern(s.as_bytes(), p.as_bytes());
        assert!(m("", ""));
        assert!(!m("a", ""));
        assert!(!m("", "a"));
        assert!(!m("", "?"));
        assert!(m("root", "root"));
        assert!(m("root", "r*"));
        assert!(m("root", "*"));
        assert!(m("", "*"));
        assert!(m("", "**"));
        assert!(m("root", "r??t"));
        assert!(!m("root", "r?t"));
        assert!(!m("root", "r???t"));
        assert!(m("a-b-c", "a*b*c"));
        assert!(!m("a-b-c", "a*b*d"));
        assert!(m("aaa", "*a*a*a*"));
        assert!(!m("aa", "*a*a*a*"));
        assert!(m("x.example.com", "*.example.com"));
        assert!(!m("example.com", "*.example.com"));
        assert!(!m(&"a".repeat(200), &format!("{}b", "*a".repeat(100))));
        // Every length up to the limit, across word boundaries.
        for n in [1, 63, 64, 65, 127, 128, 129, 254, 255] {
            let s = "a".repeat(n);
            assert!(m(&s, &s), "{n}");
            assert!(m(&s, &format!("*{}", "a".repeat(n - 1))), "{n}");
            assert!(m(&s, &format!("{}?", "a".repeat(n - 1))), "{n}");
            assert!(!m(&s, &format!("{}?", "a".repeat(n))), "{n}");
            assert!(!m(&s, &format!("{}b", "a".repeat(n - 1))), "{n}");
            assert!(m(&s, &format!("a*{}", "a".repeat(n / 2))), "{n}");
        }
        assert!(!m(&"a".repeat(256), "*"), "longer texts match nothing");
    }

    /// The bit-set matcher gives OpenSSH's answers on many small cases.
    #[test]
    fn pattern_matching_agrees_with_openssh_nfa() {
        let alphabet = [b'a', b'b', b'*', b'?'];
        let mut patterns = vec![Vec::new()];
        for _ in 0..5 {
            let next: Vec<Vec<u8>> = patterns
                .iter()
                .flat_map(|p| {
                    alphabet.iter().map(move |&c| {
                        let mut q = p.clone();
                        q.push(c);
                        q
                    })
                })
                .collect();
            patterns.extend(next);
        }
        patterns.sort();
        patterns.dedup();
        let mut texts = vec![Vec::new()];
        for _ in 0..5 {
            let next: Vec<Vec<u8>> = texts
                .iter()
                .flat_map(|t| {
                    [b'a', b'b'].into_iter().map(move |c| {
                        let mut u = t.clone();
                        u.push(c);
                        u
                    })
                })
                .collect();
            texts.extend(next);
        }
        texts.sort();
        texts.dedup();
        for t in &texts {
            let text = Text::new(t).unwrap();
            for p in &patterns {
                assert_eq!(text.matches(p), nfa_match(t, p), "{t:?} {p:?}");
            }
        }
    }

    fn hop_bytes(user: &str, host: &str, keys: &[(&[u8], bool)]) -> Vec<u8> {
        let mut h = Vec::new();
        put_string(&mut h, user.as_bytes());
        put_string(&mut h, host.as_bytes());
        put_string(&mut h, b"");
        for (k, ca) in keys {
            put_string(&mut h, k);
            h.push(u8::from(*ca));
        }
        h
    }

    fn dest_ext(constraints: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut list = Vec::new();
        for (from, to) in constraints {
            let mut c = Vec::new();
            put_string(&mut c, from);
            put_string(&mut c, to);
            put_string(&mut c, b"");
            put_string(&mut list, &c);
        }
        let mut ext = vec![255];
        put_string(&mut ext, EXT_RESTRICT_DESTINATION.as_bytes());
        put_string(&mut ext, &list);
        ext
    }

    #[test]
    fn destination_constraints_parse_with_openssh_checks() {
        let body = crate::keys::testkeys::add_body("ed25519");
        let key = crate::keys::testkeys::public_blob(&body);
        // The protocol reads the constraint, and its body is decoded here.
        let parse = |b: &[u8]| {
            let c = Constraints::decode(&mut Reader::new(b))?;
            decode_constraints(c.destinations.as_deref().unwrap_or_default())
        };
        let origin = hop_bytes("", "", &[]);
        let to = hop_bytes("deploy*", "host", &[(&key, false)]);
        let c = parse(&dest_ext(&[(origin.clone(), to.clone())])).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].to.user.as_deref(), Some("deploy*"));
        assert_eq!(c[0].to.hostname.as_deref(), Some("host"));
        assert!(c[0].from.keys.is_empty());
        // It round-trips through the encoder.
        let mut enc = Vec::new();
        let constraints = Constraints {
            destinations: Some(encode(&c)),
            ..Constraints::default()
        };
        constraints.encode(&mut enc);
        assert_eq!(parse(&enc), Ok(c));
        // "to" needs a host name and keys; "from" has no user, and a name iff keys.
        assert!(parse(&dest_ext(&[(origin.clone(), hop_bytes("", "host", &[]))])).is_err());
        assert!(
            parse(&dest_ext(&[(
                origin.clone(),
                hop_bytes("", "", &[(&key, false)])
            )]))
            .is_err()
        );
        assert!(parse(&dest_ext(&[(hop_bytes("u", "", &[]), to.clone())])).is_err());
        assert!(parse(&dest_ext(&[(hop_bytes("", "a", &[]), to.clone())])).is_err());
        // Garbage host keys, long user patterns, hop extensions, an empty list: refused.
        assert!(
            parse(&dest_ext(&[(
                origin.clone(),
                hop_bytes("", "h", &[(b"junk", false)])
            )]))
            .is_err()
        );
        // User patterns up to 256 bytes (OpenSSH), host names up to 255.
        let one = |user: &str, host: &str| {
            parse(&dest_ext(&[(
                origin.clone(),
                hop_bytes(user, host, &[(&key, false)]),
            )]))
        };
        let longest = "u".repeat(MAX_USER_PATTERN_LEN);
        assert!(one(&longest, "h").is_ok());
        assert!(one(&format!("{longest}u"), "h").is_err());
        let longest = "h".repeat(MAX_HOSTNAME_LEN);
        assert!(one("", &longest).is_ok());
        assert!(one("", &format!("{longest}h")).is_err());
        let from = hop_bytes("", &format!("{longest}h"), &[(&key, false)]);
        assert!(parse(&dest_ext(&[(from, to.clone())])).is_err());
        let mut ext_hop = Vec::new();
        put_string(&mut ext_hop, b"");
        put_string(&mut ext_hop, b"h");
        put_string(&mut ext_hop, b"x");
        assert!(parse(&dest_ext(&[(origin.clone(), ext_hop)])).is_err());
        assert!(parse(&dest_ext(&[])).is_err());
        // Given twice: refused.
        let mut twice = dest_ext(&[(origin.clone(), to.clone())]);
        twice.extend(dest_ext(&[(origin, to)]));
        assert!(parse(&twice).is_err());
    }

    #[test]
    fn userauth_requests() {
        let body = crate::keys::testkeys::add_body("ed25519");
        let key = crate::keys::testkeys::public_blob(&body);
        let build = |sid: &[u8], method: &[u8], alg: &[u8], k: &[u8], tail: &[u8]| {
            let mut d = Vec::new();
            put_string(&mut d, sid);
            d.push(50);
            put_string(&mut d, b"root");
            put_string(&mut d, b"ssh-connection");
            put_string(&mut d, method);
            d.push(1);
            put_string(&mut d, alg);
            put_string(&mut d, k);
            d.extend_from_slice(tail);
            d
        };
        let ok = build(b"sid", b"publickey", b"ssh-ed25519", &key, b"");
        let r = parse_userauth_request(&ok, &key).unwrap();
        assert_eq!(
            (r.session_id, r.user.as_str(), r.host_key),
            (&b"sid"[..], "root", None)
        );
        let mut hk = Vec::new();
        put_string(&mut hk, b"hostkey");
        let hb = build(
            b"sid",
            b"publickey-hostbound-v00@openssh.com",
            b"ssh-ed25519",
            &key,
            &hk,
        );
        assert_eq!(
            parse_userauth_request(&hb, &key).unwrap().host_key,
            Some(&b"hostkey"[..])
        );
        assert!(
            parse_userauth_request(&build(b"", b"publickey", b"ssh-ed25519", &key, b""), &key)
                .is_none()
        );
        assert!(
            parse_userauth_request(&build(b"s", b"password", b"ssh-ed25519", &key, b""), &key)
                .is_none()
        );
        assert!(
            parse_userauth_request(&build(b"s", b"publickey", b"ssh-rsa", &key, b""), &key)
                .is_none()
        );
        assert!(
            parse_userauth_request(
                &build(b"s", b"publickey", b"ssh-ed25519", b"other", b""),
                &key
            )
            .is_none()
        );
        assert!(
            parse_userauth_request(&build(b"s", b"publickey", b"ssh-ed25519", &key, b"x"), &key)
                .is_none()
        );
        for cut in 0..ok.len() {
            assert!(parse_userauth_request(&ok[..cut], &key).is_none());
        }
    }
}
