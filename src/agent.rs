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
