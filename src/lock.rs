//! The agent lock (RFC 9987 §3.6, OpenSSH `process_lock_agent`), which seals the key
//! table, and the back-off schedule of failed unlocks.
//!
//! LOCK derives a wrapping key from the passphrase with bcrypt-pbkdf under a fresh random
//! salt, seals every key under it (AES-256-GCM, `keys::SealedKey`) and drops the
//! ready-to-sign keys, which wipes them; the passphrase and the wrapping key are wiped when
//! the request is done. Nothing kept can check a passphrase but the AEAD: UNLOCK derives
//! again, and a wrong passphrase is a record that does not authenticate. The right one
//! opens every record, and each key is rebuilt into its ready-to-sign form at its first
//! signature (`keys::OpenedKey`): an unlock costs the KDF and the AEAD, not the validation
//! and precomputation of every key (1000 P-384 keys took 130 ms that way). An empty record
//! sealed with the keys (`check`) makes that so for a table with no keys too (one locked
//! empty, or emptied by expiry or SIGUSR1 while locked). OpenSSH keeps a bcrypt-pbkdf hash
//! of one round beside keys ready to sign ("XXX: encrypt the keys").
//!
//! The back-off is agent-wide (the agent keeps the time the next unlock may be checked at):
//! an UNLOCK that arrives before then is held unchecked, so guesses sent on fresh
//! connections are checked no faster than OpenSSH checks them in its single thread. It also
//! bounds how often anyone can make the agent run the KDF, which runs inside its loop.

use std::fmt;
use std::time::Duration;

use crate::keys::{HeldKey, Sealed, WrappingKey};
use crate::wire::Refused;

const LOCK_SALT_SIZE: usize = 16; // OpenSSH: LOCK_SALT_SIZE
/// bcrypt-pbkdf rounds of the wrapping key: OpenSSH's default for key files (`ssh-keygen
/// -a`), so a locked agent costs a guesser what a passphrase-protected key file does. About
/// 75–95 ms on a 2-core x86_64 VM (5 ms per round). OpenSSH's lock hash uses 1.
pub const KDF_ROUNDS: u32 = 16;
/// OpenSSH caps the failure counter at 100 and sleeps 0.1 s per failure up to 10 s.
const MAX_FAILURES: u32 = 100;
const DELAY_STEP: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(10);

/// Nonce number of the `check` record; key `i` of the table is sealed with `i + 1`.
const CHECK_NONCE: u64 = 0;

/// The rounds an agent's locks use unless told otherwise (`Agent::set_kdf_rounds`). Unit
/// tests lock and unlock hundreds of times: one round there.
pub fn default_rounds() -> u32 {
    if cfg!(test) { 1 } else { KDF_ROUNDS }
}

/// Why a lock or unlock was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockError {
    EmptyPassphrase,
    Rng,
    Kdf,
    /// A key could not be sealed (nothing was changed).
    Seal,
    /// The passphrase is wrong, or a sealed key did not open (nothing was changed).
    Open,
}

/// The agent answers a refused lock or unlock with FAILURE, as any refusal.
impl From<LockError> for Refused {
    fn from(e: LockError) -> Refused {
        match e {
            LockError::EmptyPassphrase => Refused("empty password not supported"),
            LockError::Rng | LockError::Kdf | LockError::Seal => Refused("cannot seal the keys"),
            LockError::Open => Refused("incorrect passphrase"),
        }
    }
}

/// A locked agent's secret: the salt and rounds the wrapping key is derived with, and the
/// check record. Never the passphrase, the wrapping key or a hash of either.
pub struct Lock {
    salt: [u8; LOCK_SALT_SIZE],
    rounds: u32,
    check: Sealed,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Lock([redacted])")
    }
}

impl Lock {
    /// Lock with `passphrase`, deriving the wrapping key with `rounds` of bcrypt-pbkdf:
    /// seal every key in `keys`, in place: ready ones, and opened ones (never rebuilt since
    /// the last unlock: their record is sealed again as it is). Empty passphrases are
    /// refused (OpenSSH too). Every key is sealed before any is dropped, so on an error
    /// nothing has changed.
    pub fn seal(
        passphrase: &[u8],
        rounds: u32,
        keys: &mut [&mut HeldKey],
    ) -> Result<Lock, LockError> {
        if passphrase.is_empty() {
            return Err(LockError::EmptyPassphrase);
        }
        let mut salt = [0u8; LOCK_SALT_SIZE];
        getrandom::fill(&mut salt).map_err(|_| LockError::Rng)?;
        let wrapping =
            WrappingKey::derive(passphrase, &salt, rounds).map_err(|_| LockError::Kdf)?;
        let check = Sealed::seal(&wrapping, CHECK_NONCE, Default::default())
            .map_err(|_| LockError::Seal)?;
        let mut sealed = Vec::with_capacity(keys.len());
        for (n, key) in (1u64..).zip(keys.iter()) {
            sealed.push(key.seal(&wrapping, n).map_err(|_| LockError::Seal)?);
        }
        // Replacing each ready or opened key drops it: its backend or record wipes itself.
        for (key, sealed) in keys.iter_mut().zip(sealed) {
            **key = HeldKey::Sealed(sealed);
        }
        Ok(Lock {
            salt,
            rounds,
            check,
        })
    }

    /// Unlock with `passphrase`: open every key in `keys` (the table `seal` sealed, less
    /// the keys removed since), in place; each is rebuilt at its first signature. A wrong
    /// passphrase fails at the check record, and
    /// every key is opened before any sealed one is replaced: on an error nothing has
    /// changed (the keys opened so far are dropped, which wipes them).
    pub fn unseal(&self, passphrase: &[u8], keys: &mut [&mut HeldKey]) -> Result<(), LockError> {
        // No lock has an empty passphrase (and bcrypt-pbkdf takes none).
        if passphrase.is_empty() {
            return Err(LockError::Open);
        }
        let wrapping =
            WrappingKey::derive(passphrase, &self.salt, self.rounds).map_err(|_| LockError::Kdf)?;
        self.check.open(&wrapping).map_err(|_| LockError::Open)?;
        let mut opened = Vec::with_capacity(keys.len());
        for key in keys.iter() {
            let HeldKey::Sealed(sealed) = &**key else {
                return Err(LockError::Open);
            };
            opened.push(sealed.unseal(&wrapping).map_err(|_| LockError::Open)?);
        }
        for (key, opened) in keys.iter_mut().zip(opened) {
            **key = HeldKey::Opened(opened);
        }
        Ok(())
    }
}

/// The failure counter after one more failed unlock (OpenSSH caps it at 100).
pub fn next_failures(failures: u32) -> u32 {
    failures.saturating_add(1).min(MAX_FAILURES)
}

/// How long after a failed check the next unlock may be checked, and when the failure is
/// answered: 0.1 s × failures so far, at most 10 s (OpenSSH sleeps that long after it).
pub fn unlock_delay(failures: u32) -> Duration {
    DELAY_STEP.saturating_mul(failures).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{PrivateKey, testkeys};
    use crate::wire::Reader;

    fn keys(kinds: &[&str]) -> Vec<HeldKey> {
        kinds
            .iter()
            .map(|k| {
                let body = testkeys::add_body(k);
                HeldKey::Ready(PrivateKey::decode(&mut Reader::new(&body)).unwrap())
            })
            .collect()
    }

    fn refs(keys: &mut [HeldKey]) -> Vec<&mut HeldKey> {
        keys.iter_mut().collect()
    }

    fn signatures(keys: &[HeldKey]) -> Vec<Vec<u8>> {
        keys.iter().map(|k| k.sign(b"data", 0).unwrap()).collect()
    }

    #[test]
    fn empty_passphrase_is_refused_and_nothing_sealed() {
        let mut k = keys(&["ed25519"]);
        assert_eq!(
            Lock::seal(b"", 1, &mut refs(&mut k)).err(),
            Some(LockError::EmptyPassphrase)
        );
        assert!(!k[0].is_sealed());
    }

    #[test]
    fn seals_every_key_and_opens_only_with_the_passphrase() {
        let kinds = ["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa2048"];
        let mut k = keys(&kinds);
        let blobs: Vec<Vec<u8>> = k.iter().map(|k| k.public_blob().to_vec()).collect();
        let sigs = signatures(&k);
        let lock = Lock::seal(b"secret", 1, &mut refs(&mut k)).unwrap();
        assert!(k.iter().all(HeldKey::is_sealed));
        for candidate in [&b"secreT"[..], b"", b"secret\0", b"secre"] {
            assert_eq!(
                lock.unseal(candidate, &mut refs(&mut k)),
                Err(LockError::Open)
            );
            assert!(k.iter().all(HeldKey::is_sealed));
        }
        lock.unseal(b"secret", &mut refs(&mut k)).unwrap();
        assert!(!k.iter().any(HeldKey::is_sealed));
        let now: Vec<Vec<u8>> = k.iter().map(|k| k.public_blob().to_vec()).collect();
        assert_eq!(now, blobs);
        assert_eq!(signatures(&k), sigs);
    }

    /// An unlock opens the keys, and each is rebuilt at its first signature; locked again
    /// before it or after it, every key opens and signs as before.
    #[test]
    fn opened_keys_lock_again_before_and_after_signing() {
        let kinds = ["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa2048"];
        let mut k = keys(&kinds);
        let sigs = signatures(&k);
        for passphrase in [&b"one"[..], b"two", b"three"] {
            let lock = Lock::seal(passphrase, 1, &mut refs(&mut k)).unwrap();
            assert!(k.iter().all(HeldKey::is_sealed));
            lock.unseal(passphrase, &mut refs(&mut k)).unwrap();
            assert!(k.iter().all(|k| matches!(k, HeldKey::Opened(_))));
            if passphrase == b"two" {
                assert_eq!(signatures(&k), sigs);
            }
        }
        assert_eq!(signatures(&k), sigs);
    }

    /// Keys removed while locked are simply not handed back; the others open.
    #[test]
    fn a_table_emptied_while_locked_still_checks_the_passphrase() {
        let mut k = keys(&["ed25519", "ecdsa256", "ed25519"]);
        let lock = Lock::seal(b"pw", 1, &mut refs(&mut k)).unwrap();
        k.remove(1);
        assert_eq!(
            lock.unseal(b"wrong", &mut refs(&mut k)),
            Err(LockError::Open)
        );
        lock.unseal(b"pw", &mut refs(&mut k)).unwrap();
        assert_eq!(signatures(&k).len(), 2);

        let mut none: Vec<HeldKey> = Vec::new();
        let lock = Lock::seal(b"pw", 1, &mut refs(&mut none)).unwrap();
        assert_eq!(lock.unseal(b"wrong", &mut []), Err(LockError::Open));
        assert_eq!(lock.unseal(b"pw", &mut []), Ok(()));
    }

    /// A key that does not open (here: one sealed under another lock) fails the unlock and
    /// leaves every key sealed, also those that opened before it.
    #[test]
    fn one_bad_record_leaves_everything_sealed() {
        let mut k = keys(&["ed25519", "ed25519"]);
        let mut other = keys(&["ed25519"]);
        let lock = Lock::seal(b"pw", 1, &mut refs(&mut k)).unwrap();
        Lock::seal(b"pw", 1, &mut refs(&mut other)).unwrap();
        k.push(other.pop().unwrap());
        assert_eq!(lock.unseal(b"pw", &mut refs(&mut k)), Err(LockError::Open));
        assert!(k.iter().all(HeldKey::is_sealed));
    }

    #[test]
    fn salts_differ_between_locks() {
        let a = Lock::seal(b"pw", 1, &mut []).unwrap();
        let b = Lock::seal(b"pw", 1, &mut []).unwrap();
        assert_ne!(a.salt, b.salt);
        // Each lock's record opens only under its own salt.
        let mut k = keys(&["ed25519"]);
        let la = Lock::seal(b"pw", 1, &mut refs(&mut k)).unwrap();
        let lb = Lock {
            salt: b.salt,
            rounds: la.rounds,
            check: b.check,
        };
        assert_eq!(lb.unseal(b"pw", &mut refs(&mut k)), Err(LockError::Open));
        assert_eq!(la.unseal(b"pw", &mut refs(&mut k)), Ok(()));
    }

    #[test]
    fn rounds() {
        assert_eq!(KDF_ROUNDS, 16);
        assert_eq!(default_rounds(), 1);
    }

    #[test]
    fn debug_is_redacted() {
        let l = Lock::seal(b"pw", 1, &mut []).unwrap();
        assert_eq!(format!("{l:?}"), "Lock([redacted])");
    }

    #[test]
    fn delay_schedule() {
        assert_eq!(unlock_delay(0), Duration::ZERO);
        assert_eq!(unlock_delay(1), Duration::from_millis(100));
        assert_eq!(unlock_delay(2), Duration::from_millis(200));
        assert_eq!(unlock_delay(100), Duration::from_secs(10));
        assert_eq!(unlock_delay(u32::MAX), Duration::from_secs(10));
        assert_eq!(next_failures(0), 1);
        assert_eq!(next_failures(100), 100);
        assert_eq!(next_failures(u32::MAX), 100);
        // Eight failures in a row take 0.1 s × (1 + … + 8) before the next check.
        let mut failures = 0;
        let mut total = Duration::ZERO;
        for _ in 0..8 {
            failures = next_failures(failures);
            total += unlock_delay(failures);
        }
        assert_eq!(total, Duration::from_millis(3600));
    }
}
