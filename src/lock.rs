//! The agent lock (RFC 9987 §3.6, OpenSSH `process_lock_agent`): only a salted
//! bcrypt-pbkdf hash of the passphrase is kept, compared in constant time, and failed
//! unlocks are slowed down by a schedule that is a pure function of the failure count.
//!
//! The back-off is agent-wide (the agent keeps the time the next unlock may be checked at):
//! an UNLOCK that arrives before then is held unchecked, so guesses sent on fresh
//! connections are checked no faster than OpenSSH checks them in its single thread.

use std::fmt;
use std::time::Duration;

use zeroize::{Zeroize, Zeroizing};

use crate::keys;

const LOCK_SALT_SIZE: usize = 16; // OpenSSH: LOCK_SALT_SIZE
const LOCK_SIZE: usize = 32; // OpenSSH: LOCK_SIZE
/// OpenSSH caps the failure counter at 100 and sleeps 0.1 s per failure up to 10 s.
const MAX_FAILURES: u32 = 100;
const DELAY_STEP: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(10);

/// Why a lock or unlock was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockError {
    EmptyPassphrase,
    Rng,
    Kdf,
}

/// A locked agent's secret: the salt and the hash, never the passphrase.
pub struct LockHash {
    salt: [u8; LOCK_SALT_SIZE],
    hash: Zeroizing<[u8; LOCK_SIZE]>,
}

impl fmt::Debug for LockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockHash([redacted])")
    }
}

impl Drop for LockHash {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

fn hash(passphrase: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; LOCK_SIZE]>, LockError> {
    let mut out = Zeroizing::new([0u8; LOCK_SIZE]);
    keys::bcrypt_pbkdf(passphrase, salt, out.as_mut_slice()).map_err(|_| LockError::Kdf)?;
    Ok(out)
}

impl LockHash {
    /// Hash `passphrase` under a fresh random salt. Empty passphrases are refused (OpenSSH too).
    pub fn new(passphrase: &[u8]) -> Result<LockHash, LockError> {
        if passphrase.is_empty() {
            return Err(LockError::EmptyPassphrase);
        }
        let mut salt = [0u8; LOCK_SALT_SIZE];
        getrandom::fill(&mut salt).map_err(|_| LockError::Rng)?;
        let hash = hash(passphrase, &salt)?;
        Ok(LockHash { salt, hash })
    }

    /// Does `candidate` hash to the stored value? Compared in constant time.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        match hash(candidate, &self.salt) {
            Ok(h) => ct_eq(h.as_slice(), self.hash.as_slice()),
            Err(_) => false,
        }
    }
}

/// Constant-time equality for equal-length secrets (OpenSSH: timingsafe_bcmp).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
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

    #[test]
    fn empty_passphrase_is_refused() {
        assert_eq!(LockHash::new(b"").err(), Some(LockError::EmptyPassphrase));
    }

    #[test]
    fn matches_only_the_passphrase() {
        let l = LockHash::new(b"secret").unwrap();
        assert!(l.matches(b"secret"));
        assert!(!l.matches(b"secreT"));
        assert!(!l.matches(b""));
        assert!(!l.matches(b"secret\0"));
    }

    #[test]
    fn salts_differ_between_locks() {
        let a = LockHash::new(b"pw").unwrap();
        let b = LockHash::new(b"pw").unwrap();
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.hash.as_slice(), b.hash.as_slice());
    }

    #[test]
    fn debug_is_redacted() {
        let l = LockHash::new(b"pw").unwrap();
        assert_eq!(format!("{l:?}"), "LockHash([redacted])");
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

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
