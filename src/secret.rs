//! Where key material lives in this process and how each copy is wiped: the whole strategy,
//! and the mechanisms that are not a type's own `Drop`. Everything here is safe code; the
//! allocator's `unsafe` is in `sys.rs`.
//!
//! **What holds secrets.** A key arrives in an ADD request: in the 4 KiB stack buffer a socket
//! read goes through, then in the connection's input buffer (`SecretBuf`), then, decoded, in
//! the request (`keys::NewKey`: the key's fields copied into a `Zeroizing` buffer) until the
//! agent builds the key from it. The built key (`keys::PrivateKey`) holds its signing
//! backend: ed25519-dalek's, p256/p384/p521's, `rsa`'s key with the blinding pair beside it,
//! graviola's keys in boxes. Those crates keep further copies in allocations of their own
//! (big-number limbs, the RSA CRT parameters behind an `Arc`, precomputed tables). Decoding
//! and signing leave copies on the stack: moves of those values, the expanded Ed25519 key,
//! the ECDSA nonce, the RSA CRT halves. Passphrases are in the LOCK and UNLOCK requests
//! (`Zeroizing`), in an unlock held during the back-off, and become the lock's wrapping key
//! (`Zeroizing`); a locked agent holds its keys only as AES-GCM records (`keys/seal.rs`).
//!
//! **How each is wiped.**
//! - Types wipe themselves when dropped: the crates' signing keys (`zeroize` on `Drop`,
//!   features chosen in Cargo.toml), `keys::rsa::Blinding`, graviola's keys, and every
//!   `Zeroizing` temporary. A key is dropped on remove, expiry, replacement, SIGUSR1, lock
//!   (sealed first) and exit (`Agent::remove_all`, called explicitly: `panic = "abort"` and
//!   `exit` run no destructors).
//! - The allocator (`sys::WipingAlloc`, installed below) zeroes every heap block as it is
//!   freed. This is the one place that catches what the crates do not wipe: `rsa` 0.10 leaves
//!   its CRT Montgomery parameters (which hold p and q), qinv and its big-integer temporaries
//!   unwiped, and a `Vec` that grows frees its old block with the bytes in it. `realloc`
//!   keeps the default (allocate, copy, free), so a moved block is wiped too.
//! - `SecretBuf` wipes what consuming a frame leaves behind inside its allocation (the
//!   allocator only sees the block when it is freed); the server wipes the part of its read
//!   buffer a read wrote.
//! - The stack: `wipe_stack` overwrites the stack below its caller with zeros. The server
//!   calls it from the loop's own level after each request whose decoded form touches a
//!   secret (`protocol::Request::touches_secrets`: adds, signatures, lock, unlock), after a
//!   confirmed signature and after checking held unlocks, deeper than such a request goes
//!   (`STACK_WIPE`, `SLOW_STACK_WIPE`; tests/security.rs reads the stack to check both);
//!   `keys/verified.rs` calls it after building a graviola key, which graviola returns by
//!   value. For the wipe to reach them, the frames that held secrets must lie below the
//!   caller's: `protocol::serve` and `protocol::answer`, through which the server hands every
//!   request to the agent, and `PrivateKey::decode` and `PrivateKey::sign` are
//!   `#[inline(never)]`, so no secret lives in the loop's own frame, which no wipe below it
//!   could reach.
//!
//! **The proof.** tests/security.rs reads every mapping of the release agent (`make`: LTO and
//! `panic = "abort"`, whose frames differ from a debug build's) through /proc/PID/mem after
//! keys of every type were added, used and removed (one key, all keys, expiry, SIGUSR1,
//! replacement), and looks for every form each secret may take (the Ed25519 seed and its
//! expansion, ECDSA scalars plain and in Montgomery form, RSA d, p, q, dp, dq, qinv and the
//! primes' Montgomery constants, in both byte orders), after proving that the same scan finds
//! each key while it is loaded. tests/sealed.rs scans a locked release agent the same way and
//! finds no key. The scans see what the wipes remove: with the allocator's wipe taken out,
//! or the server's stack wipe and `verified.rs`'s both (either alone is enough), they find
//! secrets. Keys are also kept out of core dumps and, where that cannot fail, swap
//! (`daemon.rs`, `sys::lock_all_memory`).

use zeroize::Zeroize;

use crate::sys;

/// Every freed heap block is wiped (see above; the implementation is in `sys.rs`).
#[global_allocator]
static ALLOCATOR: sys::WipingAlloc = sys::WipingAlloc;

/// How much of the stack below its caller the server's `wipe_stack` clears after a quick
/// request: about twice the deepest measured in the release build (painted stack, below the
/// loop's `poll`: adding a P-256 key 34 KiB; Ed25519 11 KiB). The first P-384 or P-521 key
/// of a process goes deeper once (67 and 127 KiB) while the curve builds its base-point
/// tables, which are public; the memory scans of tests/security.rs load a P-521 key first to
/// cover that.
pub const STACK_WIPE: usize = 64 * 1024;

/// The same after a slow request (an RSA signature or add, a lock, an unlock) and a confirmed
/// signature, which may be RSA's: an RSA add goes 58 KiB deep for every size (`rsa`'s
/// validation, then graviola's build), and the wipe `keys/verified.rs` runs after that build
/// writes its zeros down to 70 KiB, leaving its own last words there; an RSA key's first
/// signature after an unlock (its rebuild) goes 60 KiB deep. 128 KiB costs about 3 µs,
/// against 550 µs for the cheapest RSA signature.
pub const SLOW_STACK_WIPE: usize = 128 * 1024;

/// Overwrite `N` bytes of the stack below the caller with zeros: what the calls it made before
/// left in frames that have returned. Call it from the function that made the secret-touching
/// call, so that the zeros start where that call's frames started.
#[inline(never)]
pub fn wipe_stack<const N: usize>() {
    let zeros = [0u8; N];
    // The zeros must really be written: black_box makes the array observable.
    std::hint::black_box(&zeros);
}

/// Constant-time equality for equal-length secrets (OpenSSH: timingsafe_bcmp).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A buffer for bytes that may be secret (ADD requests carry private keys): a connection's
/// input. Freed and moved blocks are wiped by the allocator; what `consume` leaves behind
/// inside the allocation is wiped here.
#[derive(Default)]
pub struct SecretBuf(Vec<u8>);

impl SecretBuf {
    /// A buffer emptied of a frame larger than this gives its memory back.
    const KEEP: usize = 16 * 1024;

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn append(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
    }

    /// Remove the first `n` bytes and wipe what they leave behind.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.0.len());
        let rest = self.0.len() - n;
        self.0.copy_within(n.., 0);
        if let Some(tail) = self.0.get_mut(rest..) {
            tail.zeroize();
        }
        self.0.truncate(rest);
        if self.0.is_empty() && self.0.capacity() > Self::KEEP {
            // Give back the memory of a large frame.
            self.0 = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_buf_consumes_in_order() {
        let mut b = SecretBuf::default();
        b.append(b"hello world");
        b.consume(6);
        assert_eq!(b.0, b"world");
        b.append(&[7u8; 10_000]);
        assert_eq!(b.0.len(), 10_005);
        b.consume(100_000);
        assert!(b.0.is_empty());
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
