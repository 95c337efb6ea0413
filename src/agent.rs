//! The agent's state and one handler per message: the identity table (insertion order,
//! O(1) lookup by key blob, expiry by deadline), the lock, and the defaults from the
//! command line. No fds, no libc and no clock of its own: the server feeds it decoded
//! requests and the time (`CLOCK_BOOTTIME`, for lifetimes), and it reads the wall clock (for
//! host certificates) through the function it is given (`set_wall_clock`).

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

pub use crate::dest::Session;
use crate::dest::{self, Destinations, session_bind};
use crate::keys;
use crate::keys::{FingerprintHash, HeldKey, NewKey, PrivateKey};
use crate::lock::{self, Lock};
use crate::log;
use crate::protocol::{self, Constraints, EXT_SESSION_BIND, Extension, Handled, Request, Response};
use crate::sys::{self, Instant};
use crate::wire::Refused;
use zeroize::Zeroizing;

/// Most identities held at once. OpenSSH clients refuse a list of more than 2048 keys
/// (authfd.c MAX_AGENT_IDENTITIES), so a larger table would break `ssh-add -l` and `ssh`.
pub const MAX_IDENTITIES: usize = 2048;

/// Extensions `query` reports (OpenSSH lists session-bind only).
const SUPPORTED_EXTENSIONS: &[&str] = &[EXT_SESSION_BIND];
/// Most bytes of a requested user name shown in a confirmation prompt.
const MAX_PROMPT_USER: usize = 64;

/// One key the agent holds.
struct Identity {
    /// Sealed while the agent is locked.
    key: HeldKey,
    comment: Vec<u8>,
    /// When the key expires (lifetime constraint or `-t`).
    death: Option<Instant>,
    /// Every signature needs the user's confirmation (`ssh-add -c`).
    confirm: bool,
    /// Where the key may be used (`ssh-add -h`); `None`: anywhere.
    destinations: Option<Destinations>,
    /// The fingerprint, computed on first need (`--log-use` logs it for every signature).
    fingerprint: OnceCell<String>,
}

impl Identity {
    /// Bytes this identity takes in an IDENTITIES_ANSWER.
    fn list_len(&self) -> usize {
        8 + self.key.public_blob().len() + self.comment.len()
    }

    /// Sign with the key. A key an unlock opened that does not rebuild is a fault, not a
    /// client's mistake: logged as an error, whatever the level.
    fn sign(&self, data: &[u8], flags: u32, hash: FingerprintHash) -> Result<Vec<u8>, Refusal> {
        self.key.sign(data, flags).map_err(|why| {
            if why == keys::REBUILD_FAILED {
                error!(
                    "unlocked key {} cannot be rebuilt: it does not sign",
                    self.key.fingerprint(hash)
                );
            }
            Refusal::SignFailed(why)
        })
    }

    /// What its destination constraints count against `dest::MAX_TOTAL`.
    fn dest_cost(&self) -> dest::Cost {
        self.destinations
            .as_ref()
            .map_or_else(dest::Cost::default, Destinations::cost)
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

/// What the server should do with a request's answer.
pub enum Reply<'a> {
    /// Send this now.
    Now(Response<'a>),
    /// Send this after the delay (a failed unlock, answered when the back-off it started
    /// ends). Only this client waits.
    Delayed(Duration, Response<'static>),
    /// An UNLOCK that came during the back-off, not checked: hold it (the passphrase wipes
    /// itself when dropped) and hand it back to `handle`, in arrival order, once `now`
    /// reaches `unlock_backoff()`. Only this client waits.
    Held(Zeroizing<Vec<u8>>),
    /// Ask the user first; then call `Agent::confirmed` with the answer.
    Confirm(PendingSign),
}

impl<'a> Reply<'a> {
    /// The response to send now, or else the answer that is not one yet (which borrows
    /// nothing of the agent's).
    pub fn handled(self) -> Handled<'a, Reply<'static>> {
        match self {
            Reply::Now(r) => Handled::Now(r),
            Reply::Delayed(wait, r) => Handled::Later(Reply::Delayed(wait, r)),
            Reply::Held(passphrase) => Handled::Later(Reply::Held(passphrase)),
            Reply::Confirm(pending) => Handled::Later(Reply::Confirm(pending)),
        }
    }
}

impl fmt::Debug for Reply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Now(r) => f.debug_tuple("Now").field(r).finish(),
            Reply::Delayed(d, r) => f.debug_tuple("Delayed").field(d).field(r).finish(),
            Reply::Held(_) => f.write_str("Held([redacted])"),
            Reply::Confirm(p) => f.debug_tuple("Confirm").field(p).finish(),
        }
    }
}

/// A signature waiting for the user's confirmation.
pub struct PendingSign {
    /// The text for `$SSH_ASKPASS`, OpenSSH's wording.
    pub prompt: String,
    /// What the agent knows about the request, for the layer above to add to the prompt.
    pub facts: SignFacts,
    key: Vec<u8>,
    data: Vec<u8>,
    flags: u32,
}

impl fmt::Debug for PendingSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingSign")
    }
}

/// What the agent knows about a signature request, for the confirmation prompt and the use
/// log (`--log-use`). The layer above adds the requester and names the hosts: no I/O here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignFacts {
    /// The key's fingerprint (`-E` hash; of the plain key for a certificate).
    pub fingerprint: String,
    /// The key's comment; `None` when the agent does not hold the key.
    pub comment: Option<Vec<u8>>,
    /// The hosts this connection is bound to (`session-bind@openssh.com`), first hop first.
    pub hops: Vec<BoundHost>,
}

/// One session binding of a connection, as the prompt and the use log show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundHost {
    /// The host key's plain key blob (a certificate's key), as `known_hosts` lists it.
    pub key: Vec<u8>,
    /// The host key is a certificate.
    pub certificate: bool,
    /// The host key's fingerprint (`-E` hash).
    pub fingerprint: String,
    /// Bound for agent forwarding (true) or for authentication at that host (false).
    pub forwarded: bool,
}

impl SignFacts {
    /// Whether the request came through a forwarded agent.
    pub fn is_forwarded(&self) -> bool {
        self.hops.iter().any(|h| h.forwarded)
    }
}

/// Why a signature request was refused, as the use log reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownKey,
    Locked,
    /// A destination constraint does not allow this use (the check that failed).
    NotPermitted(Refused),
    NotConfirmed,
    SignFailed(Refused),
}

impl Refusal {
    /// The refusal `handle` logs and answers with FAILURE.
    fn refused(self) -> Refused {
        match self {
            Refusal::UnknownKey => Refused("key not found"),
            Refusal::Locked => Refused("agent is locked"),
            Refusal::NotPermitted(why) | Refusal::SignFailed(why) => why,
            Refusal::NotConfirmed => Refused("user did not confirm"),
        }
    }
}

/// One signature request and its outcome, for the use log (`--log-use`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignUse {
    pub facts: SignFacts,
    pub outcome: Result<(), Refusal>,
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
    /// What the destination constraints of all identities hold, under `dest::MAX_TOTAL`.
    dest_cost: dest::Cost,
    /// Some while locked: every identity's key is sealed under it.
    lock: Option<Lock>,
    /// bcrypt-pbkdf rounds of the lock's wrapping key.
    kdf_rounds: u32,
    /// Failed unlocks since the last success, one counter for the agent (as OpenSSH).
    unlock_failures: u32,
    /// The next UNLOCK may be checked at this time, not before: one time for the agent,
    /// so guesses on fresh connections wait their turn. None: at once.
    unlock_backoff: Option<Instant>,
    default_lifetime: Option<u32>,
    fingerprint_hash: FingerprintHash,
    /// `--confirm-forwarded`: every signature over a forwarded connection is confirmed.
    confirm_forwarded: bool,
    /// `--log-use`: every signature request is recorded for the layer above to log.
    log_use: bool,
    /// The last signature request, until the layer above takes it (`take_use`).
    last_use: Option<SignUse>,
    /// The wall clock, for the validity of bound host certificates (`sys::wall_clock`
    /// unless set): read only where a destination-constrained key is checked.
    wall_clock: fn() -> u64,
}

impl Agent {
    pub fn new(default_lifetime: Option<u32>, fingerprint_hash: FingerprintHash) -> Agent {
        Agent {
            slots: Vec::new(),
            index: HashMap::new(),
            expiries: BTreeSet::new(),
            list_bytes: 0,
            dest_cost: dest::Cost::default(),
            lock: None,
            kdf_rounds: lock::default_rounds(),
            unlock_failures: 0,
            unlock_backoff: None,
            default_lifetime,
            fingerprint_hash,
            confirm_forwarded: false,
            log_use: false,
            last_use: None,
            wall_clock: sys::wall_clock,
        }
    }

    /// Record every signature request and its outcome, for `take_use`.
    pub fn set_log_use(&mut self, on: bool) {
        self.log_use = on;
    }

    /// The signature request `handle` or `confirmed` last settled, once (`--log-use` only).
    pub fn take_use(&mut self) -> Option<SignUse> {
        self.last_use.take()
    }

    /// Ask for confirmation of every signature requested through a forwarded agent.
    pub fn set_confirm_forwarded(&mut self, on: bool) {
        self.confirm_forwarded = on;
    }

    /// The wall clock that bound host certificates are checked against (seconds since the
    /// epoch; `sys::wall_clock` by default). Tests give one of their own.
    pub fn set_wall_clock(&mut self, clock: fn() -> u64) {
        self.wall_clock = clock;
    }

    /// The bcrypt-pbkdf rounds of later locks (`lock::KDF_ROUNDS` by default). Only for
    /// programs that drive the agent in-process, as the fuzzers do: a lock that costs a
    /// tenth of a second would leave them little time for anything else.
    pub fn set_kdf_rounds(&mut self, rounds: u32) {
        self.kdf_rounds = rounds;
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

    /// When the next UNLOCK may be checked: an UNLOCK handled before then is `Reply::Held`.
    pub fn unlock_backoff(&self) -> Option<Instant> {
        self.unlock_backoff
    }

    /// Answer one request. Expired keys are removed first, so none is ever served.
    pub fn handle(&mut self, session: &mut Session, req: Request, now: Instant) -> Reply<'_> {
        self.reap(now);
        let locked = self.lock.is_some();
        let result = match (locked, req) {
            // OpenSSH: a locked agent lists no keys rather than failing.
            (true, Request::RequestIdentities) => Ok(Reply::Now(Response::Identities(Vec::new()))),
            (true, Request::Unlock(pw)) => Ok(self.unlock(pw, now)),
            // OpenSSH 10.5: binds go on while locked, so new connections stay bound.
            (true, Request::Extension(Extension::SessionBind(b))) => {
                Ok(Reply::Now(session_bind(session, b)))
            }
            (true, Request::Sign { key, .. }) => self.sign_locked(session, &key),
            (true, _) => Err(Refused("agent is locked")),
            (false, Request::RequestIdentities) => Ok(Reply::Now(self.request_identities(session))),
            (false, Request::Sign { key, data, flags }) => self.sign(session, key, data, flags),
            (
                false,
                Request::AddIdentity {
                    key,
                    comment,
                    constraints,
                },
            ) => self
                .add(session, key, comment, constraints, now)
                .map(Reply::Now),
            (false, Request::RemoveIdentity { key }) => self.remove(session, &key).map(Reply::Now),
            (false, Request::RemoveAllIdentities) => Ok(Reply::Now(self.remove_visible(session))),
            (false, Request::Lock(pw)) => self.lock(&pw).map(Reply::Now),
            (false, Request::Unlock(_)) => Err(Refused("agent is not locked")),
            (false, Request::Extension(ext)) => self.extension(session, ext).map(Reply::Now),
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

    /// Keys hidden from this connection by their destination constraints are not listed.
    fn request_identities(&self, session: &Session) -> Response<'_> {
        let now = (self.wall_clock)();
        Response::Identities(
            self.slots
                .iter()
                .flatten()
                .filter(|id| dest::visible(id.destinations.as_ref(), session, now).is_ok())
                .map(|id| (id.key.public_blob(), id.comment.as_slice()))
                .collect(),
        )
    }

    /// SIGN_REQUEST; under `--log-use` the request and its outcome are recorded (a request
    /// that needs confirmation is recorded by `confirmed`).
    fn sign(
        &mut self,
        session: &Session,
        key: Vec<u8>,
        data: Vec<u8>,
        flags: u32,
    ) -> Result<Reply<'static>, Refused> {
        let facts = self.log_use.then(|| self.sign_facts(session, &key));
        let result = self.try_sign(session, key, data, flags);
        if let Some(facts) = facts {
            match &result {
                Ok(Reply::Confirm(_)) => {}
                Ok(_) => {
                    self.last_use = Some(SignUse {
                        facts,
                        outcome: Ok(()),
                    })
                }
                Err(why) => {
                    self.last_use = Some(SignUse {
                        facts,
                        outcome: Err(*why),
                    })
                }
            }
        }
        result.map_err(Refusal::refused)
    }

    /// A locked agent refuses every signature; recorded under `--log-use`.
    fn sign_locked(&mut self, session: &Session, key: &[u8]) -> Result<Reply<'static>, Refused> {
        if self.log_use {
            self.last_use = Some(SignUse {
                facts: self.sign_facts(session, key),
                outcome: Err(Refusal::Locked),
            });
        }
        Err(Refusal::Locked.refused())
    }

    /// What the prompt and the use log say about a request for `key` on this connection.
    fn sign_facts(&self, session: &Session, key: &[u8]) -> SignFacts {
        let hash = self.fingerprint_hash;
        let (fingerprint, comment) = match self.lookup(key) {
            Some(id) => {
                let fp = id.fingerprint.get_or_init(|| id.key.fingerprint(hash));
                (fp.clone(), Some(id.comment.clone()))
            }
            None => (keys::public_fingerprint(key, hash), None),
        };
        let hops = session
            .hops()
            .map(|(host_key, forwarded)| BoundHost {
                key: keys::plain_public_key(host_key),
                certificate: keys::is_certificate(host_key),
                fingerprint: keys::public_fingerprint(host_key, hash),
                forwarded,
            })
            .collect();
        SignFacts {
            fingerprint,
            comment,
            hops,
        }
    }

    fn try_sign(
        &mut self,
        session: &Session,
        key: Vec<u8>,
        data: Vec<u8>,
        flags: u32,
    ) -> Result<Reply<'static>, Refusal> {
        let id = self.lookup(&key).ok_or(Refusal::UnknownKey)?;
        let mut extra = None;
        if let Some(destinations) = &id.destinations {
            let now = (self.wall_clock)();
            let user = dest::check_sign(destinations, session, &key, &data, now)
                .map_err(Refusal::NotPermitted)?;
            // OpenSSH's line, with the user (request data, chosen by the requester) quoted so
            // that it cannot add lines to the prompt.
            extra = Some(format!(
                "public key authentication request for user {} to listed host",
                log::Quoted(user.as_bytes(), MAX_PROMPT_USER)
            ));
        }
        let forwarded = session.is_forwarded();
        if id.confirm || (self.confirm_forwarded && forwarded) {
            let mut prompt = format!(
                "Allow use of key {}?\nKey fingerprint {}.",
                String::from_utf8_lossy(&id.comment),
                id.key.fingerprint(self.fingerprint_hash)
            );
            let forward_line =
                forwarded.then_some("requested through a forwarded agent connection");
            for line in extra.iter().map(String::as_str).chain(forward_line) {
                prompt.push('\n');
                prompt.push_str(line);
            }
            return Ok(Reply::Confirm(PendingSign {
                prompt,
                facts: self.sign_facts(session, &key),
                key,
                data,
                flags,
            }));
        }
        // Keys are sealed only while the agent is locked, and a locked agent signs nothing
        // (`sign_locked`): a key this far is ready, or opened by an unlock and rebuilt now.
        let sig = id.sign(&data, flags, self.fingerprint_hash)?;
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
        let result = if !allowed {
            Err(Refusal::NotConfirmed)
        } else if self.lock.is_some() {
            Err(Refusal::Locked)
        } else {
            match self
                .lookup(&pending.key)
                .map(|id| id.sign(&pending.data, pending.flags, self.fingerprint_hash))
            {
                Some(result) => result,
                None => Err(Refusal::UnknownKey),
            }
        };
        if self.log_use {
            self.last_use = Some(SignUse {
                facts: pending.facts,
                outcome: result.as_ref().map(drop).map_err(|why| *why),
            });
        }
        match result {
            Ok(sig) => Response::Signature(sig),
            Err(why) => {
                debug!("refused: {}", why.refused());
                Response::Failure
            }
        }
    }

    /// ADD_IDENTITY: the key is built (checked and made ready to sign) and its destination
    /// constraints decoded before anything changes.
    fn add(
        &mut self,
        session: &Session,
        key: NewKey,
        comment: Vec<u8>,
        constraints: Constraints,
        now: Instant,
    ) -> Result<Response<'static>, Refused> {
        let key = key.build()?;
        let destinations = constraints.destinations.as_deref();
        let destinations = destinations.map(Destinations::decode).transpose()?;
        self.add_decoded(session, key, comment, &constraints, destinations, now)
    }

    /// `add`, with the destination constraints decoded (`constraints.destinations` is not read).
    fn add_decoded(
        &mut self,
        session: &Session,
        key: PrivateKey,
        comment: Vec<u8>,
        constraints: &Constraints,
        destinations: Option<Destinations>,
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
            key: key.into(),
            comment,
            death,
            confirm: constraints.confirm,
            destinations,
            fingerprint: OnceCell::new(),
        };
        let blob = new.key.public_blob();
        let slot = self.index.get(blob).copied();
        let old = slot.and_then(|s| self.slots.get(s)?.as_ref());
        if let Some(old) = old {
            // A key hidden from this connection cannot be replaced through it.
            dest::visible(old.destinations.as_ref(), session, (self.wall_clock)())?;
        }
        let old_cost = old.map_or_else(dest::Cost::default, Identity::dest_cost);
        let dest_cost = self.dest_cost.minus(old_cost).plus(new.dest_cost());
        if !dest_cost.within(dest::MAX_TOTAL) {
            return Err(Refused(
                "destination constraints of all keys would exceed their limit",
            ));
        }
        match slot {
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
                self.dest_cost = dest_cost;
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
                self.dest_cost = dest_cost;
                self.slots.push(Some(new));
            }
        }
        Ok(Response::Success)
    }

    fn remove(&mut self, session: &Session, key: &[u8]) -> Result<Response<'static>, Refused> {
        let slot = self
            .index
            .get(key)
            .copied()
            .ok_or(Refused("key not found"))?;
        if let Some(id) = self.slots.get(slot).and_then(Option::as_ref) {
            // A hidden key cannot be removed either (OpenSSH).
            dest::visible(id.destinations.as_ref(), session, (self.wall_clock)())?;
        }
        self.remove_slot(slot);
        Ok(Response::Success)
    }

    /// REMOVE_ALL_IDENTITIES: every key this connection may see. OpenSSH removes hidden
    /// keys too, so anyone on a host the agent is forwarded to can wipe keys it was never
    /// allowed to use; here they stay.
    fn remove_visible(&mut self, session: &Session) -> Response<'static> {
        let now = (self.wall_clock)();
        let visible: Vec<Vec<u8>> = self
            .slots
            .iter()
            .flatten()
            .filter(|id| dest::visible(id.destinations.as_ref(), session, now).is_ok())
            .map(|id| id.key.public_blob().to_vec())
            .collect();
        if visible.len() == self.index.len() {
            return self.remove_all();
        }
        for blob in visible {
            if let Some(slot) = self.index.get(&blob).copied() {
                self.remove_slot(slot);
            }
        }
        Response::Success
    }

    /// Remove (and wipe) every identity. Also what SIGUSR1 does.
    pub fn remove_all(&mut self) -> Response<'static> {
        // Dropping each Identity wipes its key material.
        self.slots.clear();
        self.index.clear();
        self.expiries.clear();
        self.list_bytes = 0;
        self.dest_cost = dest::Cost::default();
        Response::Success
    }

    /// Seal every key (lock.rs); identities keep their place, public half, comment,
    /// lifetime and constraints.
    fn lock(&mut self, passphrase: &[u8]) -> Result<Response<'static>, Refused> {
        let rounds = self.kdf_rounds;
        let mut keys = self.held_keys();
        let lock = Lock::seal(passphrase, rounds, &mut keys)?;
        self.lock = Some(lock);
        Ok(Response::Success)
    }

    /// Every identity's key, in table order.
    fn held_keys(&mut self) -> Vec<&mut HeldKey> {
        self.slots
            .iter_mut()
            .flatten()
            .map(|id| &mut id.key)
            .collect()
    }

    /// OpenSSH checks a guess, then sleeps in its only thread, so guesses are checked one
    /// at a time however many connections send them. Here a guess that comes during the
    /// back-off is held, unchecked, and only the unlocking clients wait.
    fn unlock(&mut self, passphrase: Zeroizing<Vec<u8>>, now: Instant) -> Reply<'static> {
        if self.unlock_backoff.is_some_and(|t| now < t) {
            debug!("unlock held until the back-off after a wrong passphrase ends");
            return Reply::Held(passphrase);
        }
        // A wrong passphrase is the AEAD's failure, and leaves every key sealed.
        let opened = match self.lock.take() {
            Some(l) => {
                let opened = l.unseal(&passphrase, &mut self.held_keys()).is_ok();
                if !opened {
                    self.lock = Some(l);
                }
                opened
            }
            None => false,
        };
        drop(passphrase);
        if opened {
            self.lock = None;
            self.unlock_failures = 0;
            self.unlock_backoff = None;
            return Reply::Now(Response::Success);
        }
        self.unlock_failures = lock::next_failures(self.unlock_failures);
        debug!(
            "refused: incorrect passphrase ({} failures)",
            self.unlock_failures
        );
        let delay = lock::unlock_delay(self.unlock_failures);
        self.unlock_backoff = Some(now + delay);
        Reply::Delayed(delay, Response::Failure)
    }

    fn extension(
        &mut self,
        session: &mut Session,
        ext: Extension,
    ) -> Result<Response<'static>, Refused> {
        match ext {
            Extension::Query => Ok(Response::Query(SUPPORTED_EXTENSIONS)),
            Extension::SessionBind(b) => Ok(session_bind(session, b)),
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
        self.dest_cost = self.dest_cost.minus(id.dest_cost());
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
    use crate::dest::{DestConstraint, Hop, HopKey};
    use crate::keys::testkeys;
    use crate::protocol::SessionBind;
    use crate::wire::{self, Reader};

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
            key: NewKey::read(&mut Reader::new(body)).unwrap(),
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

    /// A suspend is a jump of the injected clock (CLOCK_BOOTTIME counts it): a key added
    /// with a one-hour lifetime before an eight-hour suspend is gone at the first request
    /// after resume, before anything is served.
    #[test]
    fn lifetimes_count_suspend() {
        let t = Instant::from_boot(Duration::from_secs(1000));
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (k, b) = body("ed25519");
        req(&mut a, add(&k, "hour", lifetime(3600)), t);
        let resumed = t + Duration::from_secs(8 * 3600);
        assert_eq!(req(&mut a, sign(&b), resumed), FAILURE);
        assert!(a.is_empty());
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
        // Wrong passphrases, each sent when the back-off of the one before ends: delayed
        // failures, growing by 0.1 s.
        let mut at = t;
        for n in 1..=3u32 {
            match a.handle(&mut Session::default(), Request::Unlock(pw("wrong")), at) {
                Reply::Delayed(d, Response::Failure) => {
                    assert_eq!(d, Duration::from_millis(100) * n);
                    at += d;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(req(&mut a, Request::Unlock(pw("secret")), at), SUCCESS);
        assert_eq!(blobs(&mut a, at), vec![b.clone()]);
        // The counter was reset by the success.
        req(&mut a, Request::Lock(pw("again")), at);
        match a.handle(&mut Session::default(), Request::Unlock(pw("nope")), at) {
            Reply::Delayed(d, _) => assert_eq!(d, Duration::from_millis(100)),
            other => panic!("{other:?}"),
        }
    }

    /// The back-off is one time for the whole agent, on the injected clock: an UNLOCK before
    /// it ends is held unchecked (whatever its passphrase, whichever connection sent it),
    /// one at or after it is checked and, when wrong, moves it on.
    #[test]
    fn unlock_backoff_holds_guesses_until_their_turn() {
        let t = Instant::from_boot(Duration::from_secs(1000));
        let ms = Duration::from_millis;
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (k, b) = body("ed25519");
        req(&mut a, add(&k, "k", Constraints::default()), t);
        let pw = |p: &str| Zeroizing::new(p.as_bytes().to_vec());
        fn unlock<'a>(a: &'a mut Agent, p: &str, at: Instant) -> Reply<'a> {
            let p = Zeroizing::new(p.as_bytes().to_vec());
            a.handle(&mut Session::default(), Request::Unlock(p), at)
        }
        req(&mut a, Request::Lock(pw("secret")), t);
        assert_eq!(a.unlock_backoff(), None);

        // The first guess is checked at once; the back-off starts.
        assert!(matches!(
            unlock(&mut a, "0000", t),
            Reply::Delayed(d, Response::Failure) if d == ms(100)
        ));
        assert_eq!(a.unlock_backoff(), Some(t + ms(100)));
        // Before it ends, even the right passphrase is held, not checked, and handed back
        // as it came; the lock and the back-off stay as they were.
        match unlock(&mut a, "secret", t + ms(50)) {
            Reply::Held(p) => assert_eq!(p.as_slice(), b"secret"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(unlock(&mut a, "0001", t + ms(99)), Reply::Held(_)));
        assert!(a.is_locked());
        assert_eq!(a.unlock_backoff(), Some(t + ms(100)));
        // Other requests are served meanwhile.
        assert!(listed(&mut a, t + ms(50)).is_empty());
        assert_eq!(req(&mut a, sign(&b), t + ms(50)), FAILURE);

        // At its end the next guess is checked: a second failure, 0.2 s more.
        assert!(matches!(
            unlock(&mut a, "0001", t + ms(100)),
            Reply::Delayed(d, Response::Failure) if d == ms(200)
        ));
        assert_eq!(a.unlock_backoff(), Some(t + ms(300)));
        assert!(matches!(
            unlock(&mut a, "secret", t + ms(299)),
            Reply::Held(_)
        ));
        // The right passphrase at its turn unlocks and ends the back-off.
        assert!(matches!(
            unlock(&mut a, "secret", t + ms(300)),
            Reply::Now(Response::Success)
        ));
        assert!(!a.is_locked());
        assert_eq!(a.unlock_backoff(), None);
        assert_eq!(blobs(&mut a, t + ms(300)), vec![b.clone()]);
        // A held guess handed back after that is refused at once: nothing is locked.
        assert!(matches!(
            unlock(&mut a, "0002", t + ms(300)),
            Reply::Now(Response::Failure)
        ));

        // The success reset the count: the next failure waits 0.1 s again. Failures in a
        // row, each at its turn, grow to the 10 s cap.
        let mut at = t + ms(300);
        req(&mut a, Request::Lock(pw("secret")), at);
        for n in 1..=120u32 {
            match unlock(&mut a, "wrong", at) {
                Reply::Delayed(d, Response::Failure) => {
                    assert_eq!(d, (ms(100) * n).min(Duration::from_secs(10)), "failure {n}");
                    at += d;
                    assert_eq!(a.unlock_backoff(), Some(at));
                }
                other => panic!("failure {n}: {other:?}"),
            }
        }
        assert!(matches!(
            unlock(&mut a, "secret", at),
            Reply::Now(Response::Success)
        ));
    }

    #[test]
    fn held_passphrases_are_redacted() {
        let r: Reply<'_> = Reply::Held(Zeroizing::new(b"hunter2".to_vec()));
        assert_eq!(format!("{r:?}"), "Held([redacted])");
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

    /// LOCK seals every key and keeps the table as it was: order, comments, lifetimes (which
    /// run on), confirm flags, destination constraints. A wrong passphrase leaves it sealed;
    /// the right one gives every key back, ready to sign.
    #[test]
    fn lock_seals_the_table_and_unlock_restores_it() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let pw = |p: &str| Zeroizing::new(p.as_bytes().to_vec());
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let a_host = host();
        let kinds = ["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa2048"];
        let keys: Vec<_> = kinds.iter().map(|k| body(k)).collect();
        let confirm = Constraints {
            confirm: true,
            ..Constraints::default()
        };
        let to_a = restricted(vec![DestConstraint {
            from: Hop::default(),
            to: hop("a", &a_host.1),
        }]);
        let constraints = [
            lifetime(10),
            confirm,
            to_a,
            lifetime(100),
            Constraints::default(),
        ];
        for ((k, _), (c, kind)) in keys.iter().zip(constraints.into_iter().zip(kinds)) {
            assert_eq!(req(&mut a, add(k, kind, c), t), SUCCESS);
        }
        let before = listed(&mut a, t);
        // What a signature request gets: a signature (deterministic for every type), a
        // prompt (the confirm key) or a refusal (the destination-constrained key, unbound).
        let outcomes = |a: &mut Agent, now: Instant| -> Vec<Option<Vec<u8>>> {
            keys.iter()
                .map(
                    |(_, b)| match a.handle(&mut Session::default(), sign(b), now) {
                        Reply::Confirm(_) => None,
                        r => Some(encoded(r)),
                    },
                )
                .collect()
        };
        let sigs = outcomes(&mut a, t);
        assert!(sigs[1].is_none());
        assert_eq!(sigs[2].as_deref(), Some(&FAILURE[..]));

        assert_eq!(req(&mut a, Request::Lock(pw("secret")), t), SUCCESS);
        assert!(a.slots.iter().flatten().all(|id| id.key.is_sealed()));
        assert_eq!(a.len(), 5);
        // A wrong passphrase: refused, and every key stays sealed.
        assert!(matches!(
            a.handle(&mut Session::default(), Request::Unlock(pw("wrong")), t),
            Reply::Delayed(_, Response::Failure)
        ));
        assert!(a.slots.iter().flatten().all(|id| id.key.is_sealed()));
        assert!(a.is_locked());

        let at = t + s(5);
        assert_eq!(req(&mut a, Request::Unlock(pw("secret")), at), SUCCESS);
        assert!(!a.slots.iter().flatten().any(|id| id.key.is_sealed()));
        assert_eq!(listed(&mut a, at), before);
        assert_eq!(outcomes(&mut a, at), sigs);
        // The lifetimes ran on while locked: the first key goes at t + 10 s, the fourth at
        // t + 100 s.
        assert_eq!(a.reap(at), Some(t + s(10)));
        assert_eq!(a.reap(t + s(10)), Some(t + s(100)));
        assert_eq!(a.len(), 4);
    }

    /// SIGUSR1 while locked removes the sealed keys; the lock stays, and the passphrase
    /// still opens it, to an empty table.
    #[test]
    fn remove_all_while_locked() {
        let t = Instant::now();
        let pw = |p: &str| Zeroizing::new(p.as_bytes().to_vec());
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (k, _) = body("ed25519");
        req(&mut a, add(&k, "k", Constraints::default()), t);
        req(&mut a, Request::Lock(pw("pw")), t);
        a.remove_all();
        assert!(a.is_empty() && a.is_locked());
        assert!(matches!(
            a.handle(&mut Session::default(), Request::Unlock(pw("wrong")), t),
            Reply::Delayed(_, Response::Failure)
        ));
        let later = t + Duration::from_secs(1);
        assert_eq!(req(&mut a, Request::Unlock(pw("pw")), later), SUCCESS);
        assert!(!a.is_locked() && listed(&mut a, later).is_empty());
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
            Reply::Now(Response::Query(&["session-bind@openssh.com"]))
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

    // --- session binding and destination constraints

    use crate::dest::tests::{bind, host};

    fn hop(name: &str, key: &[u8]) -> Hop {
        Hop {
            user: None,
            hostname: Some(name.into()),
            keys: vec![HopKey {
                blob: key.to_vec(),
                is_ca: false,
            }],
        }
    }

    fn restricted(dests: Vec<DestConstraint>) -> Constraints {
        Constraints {
            destinations: Some(dest::encode(&dests)),
            ..Constraints::default()
        }
    }

    /// A publickey userauth request as ssh builds it for `key`.
    fn userauth(sid: &[u8], user: &str, key: &[u8], hostkey: Option<&[u8]>) -> Vec<u8> {
        let mut d = Vec::new();
        wire::put_string(&mut d, sid);
        d.push(50);
        wire::put_string(&mut d, user.as_bytes());
        wire::put_string(&mut d, b"ssh-connection");
        let method: &[u8] = if hostkey.is_some() {
            b"publickey-hostbound-v00@openssh.com"
        } else {
            b"publickey"
        };
        wire::put_string(&mut d, method);
        d.push(1);
        wire::put_string(&mut d, b"ssh-ed25519");
        wire::put_string(&mut d, key);
        if let Some(h) = hostkey {
            wire::put_string(&mut d, h);
        }
        d
    }

    fn sign_data(a: &mut Agent, s: &mut Session, key: &[u8], data: Vec<u8>) -> Vec<u8> {
        encoded(a.handle(
            s,
            Request::Sign {
                key: key.to_vec(),
                data,
                flags: 0,
            },
            Instant::now(),
        ))
    }

    #[test]
    fn destination_constraints_hide_and_restrict() {
        let t = Instant::now();
        let a_host = host();
        let b_host = host();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (free_k, free_b) = body("ed25519");
        let (only_a, only_a_b) = body("ed25519");
        let (via_a_to_b, via_b) = body("ed25519");
        req(&mut a, add(&free_k, "free", Constraints::default()), t);
        let to_a = DestConstraint {
            from: Hop::default(),
            to: hop("a", &a_host.1),
        };
        req(
            &mut a,
            add(&only_a, "only a", restricted(vec![to_a.clone()])),
            t,
        );
        let a_to_b = DestConstraint {
            from: hop("a", &a_host.1),
            to: hop("b", &b_host.1),
        };
        req(
            &mut a,
            add(&via_a_to_b, "a>b", restricted(vec![to_a.clone(), a_to_b])),
            t,
        );

        // Local use (no binding): everything is visible.
        assert_eq!(blobs(&mut a, t).len(), 3);

        // Authenticating to A: free and only-a sign; the A>B key may sign at A too.
        let mut s = Session::default();
        assert_eq!(bind(&mut s, &a_host, b"sidA", false), Response::Success);
        let l = a.request_identities(&s);
        assert!(matches!(l, Response::Identities(ref v) if v.len() == 3));
        let sig = sign_data(
            &mut a,
            &mut s,
            &only_a_b,
            userauth(b"sidA", "root", &only_a_b, None),
        );
        assert_eq!(sig.get(4), Some(&14));
        // Not a userauth request, wrong session id: refused.
        assert_eq!(
            sign_data(&mut a, &mut s, &only_a_b, b"data".to_vec()),
            FAILURE
        );
        assert_eq!(
            sign_data(
                &mut a,
                &mut s,
                &only_a_b,
                userauth(b"other", "root", &only_a_b, None)
            ),
            FAILURE
        );

        // Authenticating to B directly: only the unconstrained key is visible and usable.
        let mut s = Session::default();
        assert_eq!(bind(&mut s, &b_host, b"sidB", false), Response::Success);
        match a.request_identities(&s) {
            Response::Identities(v) => assert_eq!(v.len(), 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            sign_data(
                &mut a,
                &mut s,
                &only_a_b,
                userauth(b"sidB", "root", &only_a_b, None)
            ),
            FAILURE
        );
        // Hidden keys cannot be removed, and remove-all leaves them.
        assert_eq!(
            encoded(a.handle(
                &mut s,
                Request::RemoveIdentity {
                    key: only_a_b.clone()
                },
                t
            )),
            FAILURE
        );

        // Forwarded to A, then on to B: the A>B key signs (hostbound), only-a does not.
        let mut s = Session::default();
        assert_eq!(bind(&mut s, &a_host, b"sidA", true), Response::Success);
        match a.request_identities(&s) {
            // After a forwarding hop only keys usable beyond A are listed.
            Response::Identities(v) => assert_eq!(v.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(bind(&mut s, &b_host, b"sidAB", false), Response::Success);
        let ok = userauth(b"sidAB", "root", &via_b, Some(&b_host.1));
        assert_eq!(sign_data(&mut a, &mut s, &via_b, ok).get(4), Some(&14));
        let no_hostkey = userauth(b"sidAB", "root", &via_b, None);
        assert_eq!(sign_data(&mut a, &mut s, &via_b, no_hostkey), FAILURE);
        let wrong_hostkey = userauth(b"sidAB", "root", &via_b, Some(&a_host.1));
        assert_eq!(sign_data(&mut a, &mut s, &via_b, wrong_hostkey), FAILURE);
        let only = userauth(b"sidAB", "root", &only_a_b, Some(&b_host.1));
        assert_eq!(sign_data(&mut a, &mut s, &only_a_b, only), FAILURE);
        // Remove-all from here removes only what this connection sees.
        assert_eq!(
            encoded(a.handle(&mut s, Request::RemoveAllIdentities, t)),
            SUCCESS
        );
        assert_eq!(blobs(&mut a, t), vec![only_a_b.clone()]);
        let _ = free_b;

        // A failed bind makes the connection remote: constrained keys are hidden.
        let mut s = Session::default();
        let bad = SessionBind {
            host_key: a_host.1.clone(),
            session_id: b"x".to_vec(),
            signature: b"junk".to_vec(),
            forwarding: false,
        };
        session_bind(&mut s, bad);
        match a.request_identities(&s) {
            Response::Identities(v) => assert!(v.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn user_patterns_are_checked_at_the_last_hop() {
        let a_host = host();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (k, blob) = body("ed25519");
        let mut to = hop("a", &a_host.1);
        to.user = Some("dep?oy*".into());
        let c = restricted(vec![DestConstraint {
            from: Hop::default(),
            to,
        }]);
        req(&mut a, add(&k, "k", c), Instant::now());
        let mut s = Session::default();
        bind(&mut s, &a_host, b"sid", false);
        let good = userauth(b"sid", "deploy-bot", &blob, None);
        assert_eq!(sign_data(&mut a, &mut s, &blob, good).get(4), Some(&14));
        let bad = userauth(b"sid", "root", &blob, None);
        assert_eq!(sign_data(&mut a, &mut s, &blob, bad), FAILURE);
    }

    #[test]
    fn confirm_forwarded_asks_only_for_forwarded_use() {
        let t = Instant::now();
        let a_host = host();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        a.set_confirm_forwarded(true);
        let (k, b) = body("ed25519");
        req(&mut a, add(&k, "k", Constraints::default()), t);
        // Local: signs at once.
        assert_eq!(req(&mut a, sign(&b), t).get(4), Some(&14));
        // Through a forwarded connection (even after a later authentication bind): asks.
        let mut s = Session::default();
        bind(&mut s, &a_host, b"sid", true);
        bind(&mut s, &host(), b"sid2", false);
        match a.handle(&mut s, sign(&b), t) {
            Reply::Confirm(p) => assert!(
                p.prompt
                    .ends_with("\nrequested through a forwarded agent connection")
            ),
            other => panic!("{other:?}"),
        }
    }

    /// A constraint to host "h" listing `plain` host keys and `ca` CA keys (made-up blobs
    /// of `len` bytes: the agent does not look inside them).
    fn listing(plain: usize, ca: usize, len: usize) -> Vec<DestConstraint> {
        let mut n = 0u32;
        let mut key = |is_ca| {
            n += 1;
            let mut blob = vec![0u8; len.max(4)];
            blob[..4].copy_from_slice(&n.to_be_bytes());
            HopKey { blob, is_ca }
        };
        let mut keys: Vec<_> = (0..plain).map(|_| key(false)).collect();
        keys.extend((0..ca).map(|_| key(true)));
        vec![DestConstraint {
            from: Hop::default(),
            to: Hop {
                user: None,
                hostname: Some("h".into()),
                keys,
            },
        }]
    }

    /// An ADD of `body` restricted to `dests` (and with `lifetime`), past the wire codec:
    /// `listing`'s host keys are not keys, and it holds more than one request may carry.
    fn add_listed(
        a: &mut Agent,
        body: &[u8],
        lifetime: Option<u32>,
        dests: Vec<DestConstraint>,
        now: Instant,
    ) -> Vec<u8> {
        a.reap(now);
        let key = PrivateKey::decode(&mut Reader::new(body)).unwrap();
        let c = Constraints {
            lifetime,
            ..Constraints::default()
        };
        let dests = Some(Destinations::new(dests));
        let reply = a.add_decoded(&Session::default(), key, b"k".to_vec(), &c, dests, now);
        encoded(Reply::Now(reply.unwrap_or(Response::Failure)))
    }

    #[test]
    fn log_use_records_every_signature_request_and_its_outcome() {
        let t = Instant::now();
        let a_host = host();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (k, b) = body("ed25519");
        let (ck, cb) = body("ed25519");
        let confirm = Constraints {
            confirm: true,
            ..Constraints::default()
        };
        req(&mut a, add(&k, "plain", Constraints::default()), t);
        req(&mut a, add(&ck, "asks", confirm), t);
        let dest = DestConstraint {
            from: Hop::default(),
            to: hop("a", &a_host.1),
        };
        let (rk, rb) = body("ed25519");
        req(&mut a, add(&rk, "restricted", restricted(vec![dest])), t);
        // Without --log-use nothing is recorded.
        assert_eq!(req(&mut a, sign(&b), t).get(4), Some(&14));
        assert_eq!(a.take_use(), None);

        a.set_log_use(true);
        let fp = |blob: &[u8]| keys::public_fingerprint(blob, FingerprintHash::Sha256);
        assert_eq!(req(&mut a, sign(&b), t).get(4), Some(&14));
        let u = a.take_use().unwrap();
        assert_eq!(u.outcome, Ok(()));
        assert_eq!(u.facts.fingerprint, fp(&b));
        assert_eq!(u.facts.comment.as_deref(), Some(&b"plain"[..]));
        assert!(u.facts.hops.is_empty());
        assert_eq!(a.take_use(), None, "taken once");

        // Unknown key, destination not permitted (unbound), and on a bound connection.
        let (_, unknown) = body("ed25519");
        assert_eq!(req(&mut a, sign(&unknown), t), FAILURE);
        let u = a.take_use().unwrap();
        assert_eq!(u.outcome, Err(Refusal::UnknownKey));
        assert_eq!((u.facts.fingerprint, u.facts.comment), (fp(&unknown), None));
        assert_eq!(req(&mut a, sign(&rb), t), FAILURE);
        assert!(matches!(
            a.take_use().unwrap().outcome,
            Err(Refusal::NotPermitted(_))
        ));
        let mut s = Session::default();
        bind(&mut s, &a_host, b"sid", true);
        assert_eq!(
            sign_data(&mut a, &mut s, &b, b"x".to_vec()).get(4),
            Some(&14)
        );
        let u = a.take_use().unwrap();
        assert_eq!(
            u.facts.hops,
            vec![BoundHost {
                key: a_host.1.clone(),
                certificate: false,
                fingerprint: fp(&a_host.1),
                forwarded: true,
            }]
        );

        // A confirmation is recorded when it is answered, not when it is asked.
        let ask = |a: &mut Agent| match a.handle(&mut Session::default(), sign(&cb), t) {
            Reply::Confirm(p) => p,
            other => panic!("{other:?}"),
        };
        let p = ask(&mut a);
        assert_eq!(a.take_use(), None);
        assert_eq!(p.facts.comment.as_deref(), Some(&b"asks"[..]));
        assert_eq!(a.confirmed(p, false, t), Response::Failure);
        assert_eq!(a.take_use().unwrap().outcome, Err(Refusal::NotConfirmed));
        let p = ask(&mut a);
        assert!(matches!(a.confirmed(p, true, t), Response::Signature(_)));
        assert_eq!(a.take_use().unwrap().outcome, Ok(()));
        let p = ask(&mut a);
        req(&mut a, Request::RemoveIdentity { key: cb.clone() }, t);
        assert_eq!(a.confirmed(p, true, t), Response::Failure);
        assert_eq!(a.take_use().unwrap().outcome, Err(Refusal::UnknownKey));

        // Locked.
        req(&mut a, Request::Lock(Zeroizing::new(b"pw".to_vec())), t);
        assert_eq!(req(&mut a, sign(&b), t), FAILURE);
        assert_eq!(a.take_use().unwrap().outcome, Err(Refusal::Locked));
        // Other requests record nothing.
        req(&mut a, Request::RequestIdentities, t);
        assert_eq!(a.take_use(), None);
    }

    #[test]
    fn forwarded_line_for_every_confirmation_over_a_forwarded_connection() {
        let t = Instant::now();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (k, b) = body("ed25519");
        let confirm = Constraints {
            confirm: true,
            ..Constraints::default()
        };
        req(&mut a, add(&k, "k", confirm), t);
        let mut s = Session::default();
        bind(&mut s, &host(), b"sid", true);
        match a.handle(&mut s, sign(&b), t) {
            Reply::Confirm(p) => {
                assert!(
                    p.prompt
                        .ends_with("\nrequested through a forwarded agent connection")
                );
                assert!(p.facts.is_forwarded());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_requested_user_name_cannot_add_prompt_lines() {
        let a_host = host();
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (k, blob) = body("ed25519");
        let c = Constraints {
            confirm: true,
            ..restricted(vec![DestConstraint {
                from: Hop::default(),
                to: hop("a", &a_host.1),
            }])
        };
        req(&mut a, add(&k, "k", c), Instant::now());
        let mut s = Session::default();
        bind(&mut s, &a_host, b"sid", false);
        let data = userauth(b"sid", "root\"\nDestination host key SHA256:x", &blob, None);
        let sign = Request::Sign {
            key: blob.clone(),
            data,
            flags: 0,
        };
        match a.handle(&mut s, sign, Instant::now()) {
            Reply::Confirm(p) => {
                let lines: Vec<&str> = p.prompt.lines().collect();
                assert_eq!(lines.len(), 3, "{lines:?}");
                assert_eq!(
                    lines[2],
                    "public key authentication request for user \
                     \"root\\x22\\x0aDestination host key SHA256:x\" to listed host"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn destination_constraints_are_capped_in_total() {
        let t = Instant::now();
        let max = dest::MAX_TOTAL;
        let mut a = Agent::new(None, FingerprintHash::Sha256);
        let (k1, b1) = body("ed25519");
        let (k2, b2) = body("ed25519");
        // Host keys: up to the limit across keys, then refused; a replacement counts the
        // difference, a removal frees its share.
        assert_eq!(
            add_listed(&mut a, &k1, None, listing(max.host_keys - 1, 0, 51), t),
            SUCCESS
        );
        assert_eq!(add_listed(&mut a, &k2, None, listing(2, 0, 51), t), FAILURE);
        assert_eq!(add_listed(&mut a, &k2, None, listing(1, 0, 51), t), SUCCESS);
        assert_eq!(
            add_listed(&mut a, &k1, None, listing(max.host_keys, 0, 51), t),
            FAILURE
        );
        assert_eq!(blobs(&mut a, t), vec![b1.clone(), b2.clone()]);
        assert_eq!(
            add_listed(&mut a, &k1, None, listing(max.host_keys - 1, 0, 51), t),
            SUCCESS
        );
        assert_eq!(req(&mut a, Request::RemoveIdentity { key: b2 }, t), SUCCESS);
        assert_eq!(
            add_listed(&mut a, &k1, None, listing(max.host_keys, 0, 51), t),
            SUCCESS
        );
        req(&mut a, Request::RemoveAllIdentities, t);
        assert_eq!(a.dest_cost, dest::Cost::default());

        // CA keys.
        assert_eq!(
            add_listed(&mut a, &k1, None, listing(0, max.ca_keys, 51), t),
            SUCCESS
        );
        assert_eq!(add_listed(&mut a, &k2, None, listing(0, 1, 51), t), FAILURE);
        assert_eq!(add_listed(&mut a, &k2, None, listing(1, 0, 51), t), SUCCESS);
        req(&mut a, Request::RemoveAllIdentities, t);

        // Bytes held: a key that takes all of them exactly, then nothing more.
        let overhead = Destinations::new(listing(1, 0, 4)).cost().bytes - 4;
        let all = listing(1, 0, max.bytes - overhead);
        assert_eq!(Destinations::new(all.clone()).cost().bytes, max.bytes);
        assert_eq!(add_listed(&mut a, &k1, None, all.clone(), t), SUCCESS);
        assert_eq!(add_listed(&mut a, &k2, None, listing(1, 0, 4), t), FAILURE);
        let over = listing(1, 0, max.bytes - overhead + 1);
        assert_eq!(add_listed(&mut a, &k1, None, over, t), FAILURE);
        // Expiry frees them too.
        assert_eq!(add_listed(&mut a, &k1, Some(1), all, t), SUCCESS);
        assert_eq!(
            add_listed(
                &mut a,
                &k2,
                None,
                listing(1, 0, 4),
                t + Duration::from_secs(1)
            ),
            SUCCESS
        );
    }
}
