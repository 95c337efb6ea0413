//! The agent's state and one handler per message: the identity table (insertion order,
//! O(1) lookup by key blob, expiry by deadline), the lock, and the defaults from the
//! command line. No fds and no libc: the server feeds it decoded requests and the time.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use crate::keys::{FingerprintHash, PrivateKey};
use crate::lock::{self, LockHash};
use crate::log;
use crate::protocol::{self, Constraints, EXT_QUERY, Extension, Request, Response};
#[cfg(test)]
use zeroize::Zeroizing;

/// Most identities held at once. OpenSSH clients refuse a list of more than 2048 keys
/// (authfd.c MAX_AGENT_IDENTITIES), so a larger table would break `ssh-add -l` and `ssh`.
pub const MAX_IDENTITIES: usize = 2048;

/// Extensions `query` reports.
const SUPPORTED_EXTENSIONS: &[&str] = &[EXT_QUERY];

/// Why a request was refused; logged under `-d`, answered with FAILURE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// One key the agent holds.
struct Identity {
    key: PrivateKey,
    comment: Vec<u8>,
    /// When the key expires (lifetime constraint or `-t`).
    death: Option<Instant>,
    /// Every signature needs the user's confirmation (`ssh-add -c`).
    confirm: bool,
}

impl Identity {
    /// Bytes this identity takes in an IDENTITIES_ANSWER.
    fn list_len(&self) -> usize {
        8 + self.key.public_blob().len() + self.comment.len()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("key", &self.key)
            .field("death", &self.death)
            .field("confirm", &self.confirm)
            .finish_non_exhaustive()
    }
}

/// Per-connection protocol state (session bindings live here). The server keeps one per
/// connection and passes it to `handle`.
#[derive(Debug, Default)]
pub struct Session {}

/// What the server should do with a request's answer.
#[derive(Debug)]
pub enum Reply<'a> {
    /// Send this now.
    Now(Response<'a>),
    /// Send this after the delay (a failed unlock). Only this client waits.
    Delayed(Duration, Response<'static>),
    /// Ask the user first; then call `Agent::confirmed` with the answer.
    Confirm(PendingSign),
}

/// A signature waiting for the user's confirmation.
pub struct PendingSign {
    /// The text for `$SSH_ASKPASS`, OpenSSH's wording.
    pub prompt: String,
    key: Vec<u8>,
    data: Vec<u8>,
    flags: u32,
}

impl fmt::Debug for PendingSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingSign")
    }
}

/// The agent: identities, lock, defaults.
pub struct Agent {
    /// Identities in insertion order; removed ones leave a hole until `compact`.
    slots: Vec<Option<Identity>>,
    /// Public key blob → slot.
    index: HashMap<Vec<u8>, usize>,
    /// (death, slot) for every identity that expires.
    expiries: BTreeSet<(Instant, usize)>,
    /// Size of the IDENTITIES_ANSWER body, kept under the clients' 256 KiB limit.
    list_bytes: usize,
    lock: Option<LockHash>,
    /// Failed unlocks since the last success, one counter for the agent (as OpenSSH).
    unlock_failures: u32,
    default_lifetime: Option<u32>,
    fingerprint_hash: FingerprintHash,
}

impl Agent {
    pub fn new(default_lifetime: Option<u32>, fingerprint_hash: FingerprintHash) -> Agent {
        Agent {
            slots: Vec::new(),
            index: HashMap::new(),
            expiries: BTreeSet::new(),
            list_bytes: 0,
            lock: None,
            unlock_failures: 0,
            default_lifetime,
            fingerprint_hash,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }

    /// Answer one request. Expired keys are removed first, so none is ever served.
    pub fn handle(&mut self, session: &mut Session, req: Request, now: Instant) -> Reply<'_> {
        self.reap(now);
        let _ = session;
        let locked = self.lock.is_some();
        let result = match (locked, req) {
            // OpenSSH: a locked agent lists no keys rather than failing.
            (true, Request::RequestIdentities) => Ok(Reply::Now(Response::Identities(Vec::new()))),
            (true, Request::Unlock(pw)) => Ok(self.unlock(&pw)),
            (true, _) => Err(Refused("agent is locked")),
            (false, Request::RequestIdentities) => Ok(Reply::Now(self.request_identities())),
            (false, Request::Sign { key, data, flags }) => self.sign(key, data, flags),
            (
                false,
                Request::AddIdentity {
                    key,
                    comment,
                    constraints,
                },
            ) => self.add(key, comment, constraints, now).map(Reply::Now),
            (false, Request::RemoveIdentity { key }) => self.remove(&key).map(Reply::Now),
            (false, Request::RemoveAllIdentities) => Ok(Reply::Now(self.remove_all())),
            (false, Request::Lock(pw)) => self.lock(&pw).map(Reply::Now),
            (false, Request::Unlock(_)) => Err(Refused("agent is not locked")),
            (false, Request::Extension(ext)) => self.extension(ext).map(Reply::Now),
            (false, Request::Unknown(kind)) => {
                debug!("unknown message {kind}");
                Err(Refused("unsupported message"))
            }
        };
        result.unwrap_or_else(|Refused(why)| {
            debug!("refused: {why}");
            Reply::Now(Response::Failure)
        })
    }

    fn request_identities(&self) -> Response<'_> {
        Response::Identities(
            self.slots
                .iter()
                .flatten()
                .map(|id| (id.key.public_blob(), id.comment.as_slice()))
                .collect(),
        )
    }

    fn sign(&mut self, key: Vec<u8>, data: Vec<u8>, flags: u32) -> Result<Reply<'_>, Refused> {
        let id = self.lookup(&key).ok_or(Refused("key not found"))?;
        if id.confirm {
            let prompt = format!(
                "Allow use of key {}?\nKey fingerprint {}.",
                String::from_utf8_lossy(&id.comment),
                id.key.fingerprint(self.fingerprint_hash)
            );
            return Ok(Reply::Confirm(PendingSign {
                prompt,
                key,
                data,
                flags,
            }));
        }
        let sig = id.key.sign(&data, flags).map_err(|e| Refused(e.reason()))?;
        Ok(Reply::Now(Response::Signature(sig)))
    }

    /// Finish a signature the user was asked about. The key is looked up again: it may
    /// have been removed, or the agent locked, while the question was open.
    pub fn confirmed(
        &mut self,
        pending: PendingSign,
        allowed: bool,
        now: Instant,
    ) -> Response<'static> {
        self.reap(now);
        if !allowed {
            debug!("refused: user did not confirm");
            return Response::Failure;
        }
        if self.lock.is_some() {
            return Response::Failure;
        }
        match self
            .lookup(&pending.key)
            .map(|id| id.key.sign(&pending.data, pending.flags))
        {
            Some(Ok(sig)) => Response::Signature(sig),
            _ => Response::Failure,
        }
    }

    fn add(
        &mut self,
        key: PrivateKey,
        comment: Vec<u8>,
        constraints: Constraints,
        now: Instant,
    ) -> Result<Response<'static>, Refused> {
        // `-t` applies only to keys added without a lifetime (OpenSSH: `if (lifetime && !death)`).
        let lifetime = constraints.lifetime.or(self.default_lifetime);
        let death = lifetime.map(|secs| {
            now.checked_add(Duration::from_secs(u64::from(secs)))
                .unwrap_or(now)
        });
        if log::enabled(log::Level::Debug) {
            debug!(
                "add {} lifetime {:?} confirm {}",
                key.fingerprint(self.fingerprint_hash),
                lifetime,
                constraints.confirm
            );
        }
        let new = Identity {
            key,
            comment,
            death,
            confirm: constraints.confirm,
        };
        let blob = new.key.public_blob();
        match self.index.get(blob).copied() {
            Some(slot) => {
                // OpenSSH replaces an existing key in place: same position, new comment
                // and constraints. The old key is wiped as it drops.
                let old_len = self
                    .slots
                    .get(slot)
                    .and_then(Option::as_ref)
                    .map_or(0, Identity::list_len);
                let new_bytes = self.list_bytes - old_len + new.list_len();
                if new_bytes > protocol::MAX_MESSAGE_LEN - 5 {
                    return Err(Refused("identity list would exceed the message size limit"));
                }
                let old = self.slots.get_mut(slot).and_then(Option::take);
                if let Some(old_death) = old.as_ref().and_then(|o| o.death) {
                    self.expiries.remove(&(old_death, slot));
                }
                if let Some(d) = new.death {
                    self.expiries.insert((d, slot));
                }
                self.list_bytes = new_bytes;
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = Some(new);
                }
                drop(old);
            }
            None => {
                if self.index.len() >= MAX_IDENTITIES {
                    return Err(Refused("too many identities"));
                }
                if self.list_bytes + new.list_len() > protocol::MAX_MESSAGE_LEN - 5 {
                    return Err(Refused("identity list would exceed the message size limit"));
                }
                let slot = self.slots.len();
                self.index.insert(blob.to_vec(), slot);
                if let Some(d) = new.death {
                    self.expiries.insert((d, slot));
                }
                self.list_bytes += new.list_len();
                self.slots.push(Some(new));
            }
        }
        Ok(Response::Success)
    }

    fn remove(&mut self, key: &[u8]) -> Result<Response<'static>, Refused> {
        let slot = self
            .index
            .get(key)
            .copied()
            .ok_or(Refused("key not found"))?;
        self.remove_slot(slot);
        Ok(Response::Success)
    }

    /// Remove (and wipe) every identity. Also what SIGUSR1 does.
    pub fn remove_all(&mut self) -> Response<'static> {
        // Dropping each Identity wipes its key material.
        self.slots.clear();
        self.index.clear();
        self.expiries.clear();
        self.list_bytes = 0;
        Response::Success
    }

    fn lock(&mut self, passphrase: &[u8]) -> Result<Response<'static>, Refused> {
        let hash = LockHash::new(passphrase).map_err(|e| match e {
            lock::LockError::EmptyPassphrase => Refused("empty password not supported"),
            _ => Refused("cannot hash the passphrase"),
        })?;
        self.lock = Some(hash);
        Ok(Response::Success)
    }

    fn unlock(&mut self, passphrase: &[u8]) -> Reply<'static> {
        let matches = self.lock.as_ref().is_some_and(|l| l.matches(passphrase));
        if matches {
            self.lock = None;
            self.unlock_failures = 0;
            return Reply::Now(Response::Success);
        }
        self.unlock_failures = lock::next_failures(self.unlock_failures);
        debug!(
            "refused: incorrect passphrase ({} failures)",
            self.unlock_failures
        );
        Reply::Delayed(lock::unlock_delay(self.unlock_failures), Response::Failure)
    }

    fn extension(&mut self, ext: Extension) -> Result<Response<'static>, Refused> {
        match ext {
            Extension::Query => Ok(Response::Query(SUPPORTED_EXTENSIONS)),
            // TODO(#6): session binding and destination constraints. Until then a bind is
            // refused, which OpenSSH clients accept (they log it and carry on).
            Extension::SessionBind(_) => Ok(Response::ExtensionFailure),
            // RFC 9987: an unsupported extension gets an empty SSH_AGENT_FAILURE.
            Extension::Other(name) => {
                debug!("unsupported extension {name:?}");
                Err(Refused("unsupported extension"))
            }
        }
    }

    /// Remove every expired identity; return when the next one expires.
    pub fn reap(&mut self, now: Instant) -> Option<Instant> {
        while let Some(&(death, slot)) = self.expiries.first() {
            if death > now {
                return Some(death);
            }
            debug!("expiring key in slot {slot}");
            self.remove_slot(slot);
        }
        None
    }

    fn lookup(&self, blob: &[u8]) -> Option<&Identity> {
        let slot = *self.index.get(blob)?;
        self.slots.get(slot)?.as_ref()
    }

    fn remove_slot(&mut self, slot: usize) {
        let Some(id) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.index.remove(id.key.public_blob());
        if let Some(d) = id.death {
            self.expiries.remove(&(d, slot));
        }
        self.list_bytes = self.list_bytes.saturating_sub(id.list_len());
        drop(id); // wipes the key
        self.compact();
    }

    /// Drop the holes left by removals once they outnumber the live identities, so the
    /// table stays proportional to what it holds (amortised O(1) per removal).
    fn compact(&mut self) {
        if self.slots.len() < 16 + 2 * self.index.len() {
            return;
        }
        self.slots.retain(Option::is_some);
        self.index.clear();
        self.expiries.clear();
        for (slot, id) in self.slots.iter().enumerate() {
            if let Some(id) = id {
                self.index.insert(id.key.public_blob().to_vec(), slot);
                if let Some(d) = id.death {
                    self.expiries.insert((d, slot));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testkeys;
    use crate::protocol::Reader;

    const SUCCESS: [u8; 5] = [0, 0, 0, 1, 6];
    const FAILURE: [u8; 5] = [0, 0, 0, 1, 5];

    /// A fresh key's ADD body and public blob.
    fn body(kind: &str) -> (Vec<u8>, Vec<u8>) {
        let body = testkeys::add_body(kind);
        let blob = testkeys::public_blob(&body);
        (body, blob)
    }

    fn add(body: &[u8], comment: &str, constraints: Constraints) -> Request {
        Request::AddIdentity {
            key: PrivateKey::decode(&mut Reader::new(body)).unwrap(),
            comment: comment.as_bytes().to_vec(),
            constraints,
        }
    }

    fn encoded(r: Reply<'_>) -> Vec<u8> {
        match r {
            Reply::Now(resp) => {
                let mut v = Vec::new();
                resp.encode(&mut v);
                v
            }
            other => panic!("expected an immediate reply, got {other:?}"),
        }
    }

    fn req(a: &mut Agent, r: Request, now: Instant) -> Vec<u8> {
        encoded(a.handle(&mut Session::default(), r, now))
    }

    fn listed(a: &mut Agent, now: Instant) -> Vec<(Vec<u8>, Vec<u8>)> {
        match a.handle(&mut Session::default(), Request::RequestIdentities, now) {
            Reply::Now(Response::Identities(ids)) => {
                ids.iter().map(|(b, c)| (b.to_vec(), c.to_vec())).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    fn blobs(a: &mut Agent, now: Instant) -> Vec<Vec<u8>> {
        listed(a, now).into_iter().map(|(b, _)| b).collect()
    }

    fn sign(blob: &[u8]) -> Request {
        Request::Sign {
            key: blob.to_vec(),
            data: b"data".to_vec(),
            flags: 0,
        }
    }

    fn lifetime(secs: u32) -> Constraints {
        Constraints {
            lifetime: Some(secs),
            ..Constraints::default()
        }
    }

    #[test]
    fn insertion_order_replace_in_place_and_remove() {
        let t = Instant::now();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (k1, b1) = body("ed25519");
        let (k2, b2) = body("ecdsa256");
        let (k3, b3) = body("ecdsa384");
        assert_eq!(
            req(&mut a, add(&k1, "one", Constraints::default()), t),
            SUCCESS
        );
        assert_eq!(
            req(&mut a, add(&k2, "two", Constraints::default()), t),
            SUCCESS
        );
        assert_eq!(
            req(&mut a, add(&k3, "three", Constraints::default()), t),
            SUCCESS
        );
        assert_eq!(blobs(&mut a, t), [b1.clone(), b2.clone(), b3.clone()]);
        // Re-adding the second key keeps its place and takes the new comment and constraints.
        assert_eq!(req(&mut a, add(&k2, "deux", lifetime(5)), t), SUCCESS);
        let l = listed(&mut a, t);
        assert_eq!(l.len(), 3);
        assert_eq!(l[1], (b2.clone(), b"deux".to_vec()));
        a.reap(t + Duration::from_secs(5));
        assert_eq!(
            blobs(&mut a, t + Duration::from_secs(5)),
            [b1.clone(), b3.clone()]
        );
        assert_eq!(
            req(&mut a, Request::RemoveIdentity { key: b1.clone() }, t),
            SUCCESS
        );
        assert_eq!(req(&mut a, Request::RemoveIdentity { key: b1 }, t), FAILURE);
        assert_eq!(blobs(&mut a, t), [b3]);
        assert_eq!(req(&mut a, Request::RemoveAllIdentities, t), SUCCESS);
        assert!(a.is_empty());
    }

    #[test]
    fn sign_with_held_keys_only() {
        let t = Instant::now();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (k, b) = body("ed25519");
        assert_eq!(req(&mut a, sign(&b), t), FAILURE);
        req(&mut a, add(&k, "k", Constraints::default()), t);
        let sig = req(&mut a, sign(&b), t);
        assert_eq!(sig.get(4), Some(&14));
        assert_eq!(req(&mut a, sign(b"not a key"), t), FAILURE);
    }

    #[test]
    fn lifetimes_expire_on_the_injected_clock() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let mut a = Agent::new(Some(100), FingerprintHash::Sha256);
        let (k1, b1) = body("ed25519");
        let (k2, b2) = body("ed25519");
        let (k3, b3) = body("ed25519");
        req(&mut a, add(&k1, "short", lifetime(10)), t);
        req(&mut a, add(&k2, "default", Constraints::default()), t);
        req(&mut a, add(&k3, "zero", lifetime(0)), t);
        // A zero lifetime is gone before the next request is served.
        assert_eq!(blobs(&mut a, t), [b1.clone(), b2.clone()]);
        assert_eq!(a.reap(t + s(9)), Some(t + s(10)));
        assert_eq!(req(&mut a, sign(&b1), t + s(10)), FAILURE);
        assert_eq!(blobs(&mut a, t + s(10)), vec![b2.clone()]);
        // `-t` applied to the key added without a lifetime.
        assert_eq!(a.reap(t + s(99)), Some(t + s(100)));
        assert_eq!(a.reap(t + s(100)), None);
        assert!(a.is_empty());
        let _ = b3;
    }

    #[test]
    fn lock_matrix() {
        let t = Instant::now();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (k, b) = body("ed25519");
        req(&mut a, add(&k, "k", Constraints::default()), t);
        let pw = |p: &str| Zeroizing::new(p.as_bytes().to_vec());
        // Empty passphrases and unlocking an unlocked agent are refused.
        assert_eq!(req(&mut a, Request::Lock(pw("")), t), FAILURE);
        assert_eq!(req(&mut a, Request::Unlock(pw("x")), t), FAILURE);
        assert_eq!(req(&mut a, Request::Lock(pw("secret")), t), SUCCESS);
        assert!(a.is_locked());
        // Locked: empty list, everything else refused, keys still held.
        assert!(listed(&mut a, t).is_empty());
        assert_eq!(req(&mut a, sign(&b), t), FAILURE);
        assert_eq!(req(&mut a, Request::Lock(pw("secret")), t), FAILURE);
        assert_eq!(req(&mut a, Request::RemoveAllIdentities, t), FAILURE);
        assert_eq!(
            req(&mut a, Request::Extension(Extension::Query), t),
            FAILURE
        );
        assert_eq!(a.len(), 1);
        // Wrong passphrases: delayed failures, growing by 0.1 s.
        for n in 1..=3u32 {
            match a.handle(&mut Session::default(), Request::Unlock(pw("wrong")), t) {
                Reply::Delayed(d, Response::Failure) => {
                    assert_eq!(d, Duration::from_millis(100) * n)
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(req(&mut a, Request::Unlock(pw("secret")), t), SUCCESS);
        assert_eq!(blobs(&mut a, t), vec![b.clone()]);
        // The counter was reset by the success.
        req(&mut a, Request::Lock(pw("again")), t);
        match a.handle(&mut Session::default(), Request::Unlock(pw("nope")), t) {
            Reply::Delayed(d, _) => assert_eq!(d, Duration::from_millis(100)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_expire_while_locked() {
        let t = Instant::now();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (k, _) = body("ed25519");
        req(&mut a, add(&k, "k", lifetime(1)), t);
        req(&mut a, Request::Lock(Zeroizing::new(b"pw".to_vec())), t);
        assert_eq!(a.reap(t + Duration::from_secs(1)), None);
        assert!(a.is_empty());
    }

    #[test]
    fn confirm_asks_and_rechecks() {
        let t = Instant::now();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (k, b) = body("ed25519");
        let confirm = Constraints {
            confirm: true,
            ..Constraints::default()
        };
        req(&mut a, add(&k, "work key", confirm), t);
        let ask = |a: &mut Agent| match a.handle(&mut Session::default(), sign(&b), t) {
            Reply::Confirm(p) => p,
            other => panic!("{other:?}"),
        };
        let p = ask(&mut a);
        assert!(
            p.prompt
                .starts_with("Allow use of key work key?\nKey fingerprint SHA256:")
        );
        assert!(p.prompt.ends_with('.'));
        assert_eq!(a.confirmed(p, false, t), Response::Failure);
        let p = ask(&mut a);
        assert!(matches!(a.confirmed(p, true, t), Response::Signature(_)));
        // Removed while the question was open: refused.
        let p = ask(&mut a);
        req(&mut a, Request::RemoveAllIdentities, t);
        assert_eq!(a.confirmed(p, true, t), Response::Failure);
    }

    #[test]
    fn extensions_and_unknown_messages() {
        let t = Instant::now();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        assert!(matches!(
            a.handle(
                &mut Session::default(),
                Request::Extension(Extension::Query),
                t
            ),
            Reply::Now(Response::Query(&["query"]))
        ));
        let other = Request::Extension(Extension::Other("x@example.com".into()));
        assert_eq!(req(&mut a, other, t), FAILURE);
        assert_eq!(req(&mut a, Request::Unknown(200), t), FAILURE);
    }

    #[test]
    fn holes_are_compacted_and_order_kept() {
        let t = Instant::now();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let keys: Vec<_> = (0..100).map(|_| body("ed25519")).collect();
        for (k, _) in &keys {
            req(&mut a, add(k, "k", Constraints::default()), t);
        }
        for (i, (_, b)) in keys.iter().enumerate() {
            if i % 10 != 0 {
                assert_eq!(
                    req(&mut a, Request::RemoveIdentity { key: b.clone() }, t),
                    SUCCESS
                );
            }
        }
        let want: Vec<_> = keys.iter().step_by(10).map(|(_, b)| b.clone()).collect();
        assert_eq!(blobs(&mut a, t), want);
        assert!(a.slots.len() < 40);
        for b in &want {
            assert_eq!(req(&mut a, sign(b), t).get(4), Some(&14));
        }
    }

    #[test]
    fn identity_count_is_capped() {
        let t = Instant::now();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        for _ in 0..MAX_IDENTITIES {
            let (k, _) = body("ed25519");
            assert_eq!(
                req(&mut a, add(&k, "k", Constraints::default()), t),
                SUCCESS
            );
        }
        let (k, _) = body("ed25519");
        assert_eq!(
            req(&mut a, add(&k, "k", Constraints::default()), t),
            FAILURE
        );
        assert_eq!(a.len(), MAX_IDENTITIES);
    }

    #[test]
    fn identity_list_stays_under_the_message_limit() {
        let t = Instant::now();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let big = "c".repeat(100 * 1024);
        for i in 0..3 {
            let (k, _) = body("ed25519");
            let want = if i < 2 { SUCCESS } else { FAILURE };
            assert_eq!(req(&mut a, add(&k, &big, Constraints::default()), t), want);
        }
    }
}
