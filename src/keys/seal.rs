//! Sealing one key under the lock (DESIGN §4): its secret encrypted with AES-256-GCM under
//! a wrapping key derived from the lock passphrase with bcrypt-pbkdf, and back.
//!
//! A key is sealed as its identity blob followed by the key part of an ADD request (the
//! `sshkey_private_serialize` layout that `PrivateKey::decode` reads), written into a wiped
//! buffer and encrypted in place. While sealed, only the ciphertext and the public half
//! (identity blob, fingerprint blob, type name) are kept: the backend with its ready-to-sign
//! caches is dropped, which wipes it (`Drop`, and the allocator wipes every freed block).
//!
//! Unsealing decrypts and authenticates into a wiped buffer and checks the blob in front of
//! it against the public half, and that is all an unlock does per key (`OpenedKey`): a few
//! microseconds, where rebuilding it costs from 15 µs (Ed25519) to 150 µs (P-384, P-521: the
//! public point is computed from the scalar), 0.4 ms for RSA-4096 and 1-3 ms for RSA-8192 (CRT
//! values, Montgomery parameters, graviola's key), measured. The key is rebuilt at its first
//! signature instead, by decoding the buffer as an add does, through the same constructors
//! and checks, into the same ready-to-sign backend; the buffer is dropped (wiped) then. A
//! key locked again before its first signature is sealed from that buffer as it is.
//!
//! Why the rebuild is not made cheaper by skipping the checks an add makes: the AEAD has
//! authenticated what was sealed, which was a validated key, so they are redundant here;
//! but the crates offer no constructor that skips them (an ECDSA signing key always computes
//! its public point), and one path that builds every key keeps the rebuilt key exactly the
//! one an add builds.

use std::cell::{Cell, OnceCell};
use std::fmt;

use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use ssh_key::Cipher;
use zeroize::{Zeroize, Zeroizing};

use super::{Backend, FingerprintHash, PrivateKey, fingerprint};
use crate::wire::{Reader, Refused, put_mpint, put_string};

/// The AEAD, from `ssh-key`'s tree (OpenSSH's `aes256-gcm@openssh.com` key-file cipher).
const CIPHER: Cipher = Cipher::Aes256Gcm;
/// AES-256 key bytes.
const WRAPPING_KEY_LEN: usize = 32;
/// AES-GCM nonce bytes.
const NONCE_LEN: usize = 12;
/// AES-GCM tag bytes.
const TAG_LEN: usize = 16;

const SEAL_FAILED: Refused = Refused("cannot seal the key");
const OPEN_FAILED: Refused = Refused("sealed data does not authenticate");
/// An opened record that does not rebuild into its key: authenticated, so only a fault (or
/// a bug) gets here; the agent logs it as an error.
pub const REBUILD_FAILED: Refused = Refused("an unlocked key cannot be rebuilt");
const SEALED: Refused = Refused("key is sealed");

/// The key every record of one lock is sealed under. Wiped on drop.
pub struct WrappingKey(Zeroizing<[u8; WRAPPING_KEY_LEN]>);

impl fmt::Debug for WrappingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WrappingKey([redacted])")
    }
}

impl WrappingKey {
    /// `bcrypt_pbkdf(passphrase, salt, 32 bytes, rounds)`, as OpenSSH derives the key of a
    /// passphrase-protected key file.
    pub fn derive(passphrase: &[u8], salt: &[u8], rounds: u32) -> Result<WrappingKey, Refused> {
        let kdf = ssh_key::Kdf::Bcrypt {
            salt: salt.to_vec(),
            rounds,
        };
        let mut key = Zeroizing::new([0u8; WRAPPING_KEY_LEN]);
        kdf.derive(passphrase, key.as_mut_slice())
            .map_err(|_| Refused("bcrypt-pbkdf failed"))?;
        Ok(WrappingKey(key))
    }
}

/// One AEAD record: ciphertext, nonce and tag. The caller gives every record sealed under
/// one wrapping key its own nonce (a counter: the key is fresh for every lock).
pub struct Sealed {
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
    tag: [u8; TAG_LEN],
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealed([redacted])")
    }
}

impl Sealed {
    /// Encrypt `plaintext` in place under `key` with nonce number `counter`; the buffer
    /// becomes the ciphertext, so no plaintext copy is left.
    pub fn seal(
        key: &WrappingKey,
        counter: u64,
        mut plaintext: Zeroizing<Vec<u8>>,
    ) -> Result<Sealed, Refused> {
        let nonce = nonce(counter);
        let tag = CIPHER
            .encrypt(key.0.as_slice(), &nonce, plaintext.as_mut_slice())
            .ok()
            .flatten()
            .ok_or(SEAL_FAILED)?;
        let tag: [u8; TAG_LEN] = tag.into();
        Ok(Sealed {
            nonce,
            ciphertext: std::mem::take(&mut *plaintext),
            tag,
        })
    }

    /// Decrypt and authenticate into a wiped buffer. A wrong key (a wrong passphrase) or a
    /// changed byte is an error, and nothing is decrypted.
    pub fn open(&self, key: &WrappingKey) -> Result<Zeroizing<Vec<u8>>, Refused> {
        let mut buf = Zeroizing::new(self.ciphertext.clone());
        CIPHER
            .decrypt(
                key.0.as_slice(),
                &self.nonce,
                buf.as_mut_slice(),
                Some(self.tag.into()),
            )
            .map_err(|_| OPEN_FAILED)?;
        Ok(buf)
    }
}

/// Nonce number `counter`: 4 zero bytes, then the counter big-endian.
fn nonce(counter: u64) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    if let Some(tail) = n.get_mut(NONCE_LEN - 8..) {
        tail.copy_from_slice(&counter.to_be_bytes());
    }
    n
}

/// The public half of a sealed or opened key, in clear: what listing, lookups and
/// fingerprints need.
#[derive(Clone)]
struct PublicHalf {
    name: &'static str,
    blob: Vec<u8>,
    plain: Option<Vec<u8>>,
}

impl PublicHalf {
    fn of(key: &PrivateKey) -> PublicHalf {
        PublicHalf {
            name: key.name,
            blob: key.blob.clone(),
            plain: key.plain.clone(),
        }
    }

    fn fingerprint(&self, hash: FingerprintHash) -> String {
        fingerprint(self.plain.as_deref().unwrap_or(&self.blob), hash)
    }

    /// Whether an opened record is this key's: its plaintext starts with the identity blob
    /// (what `export` writes first), so the public half kept in clear is checked at unlock,
    /// without rebuilding the key.
    fn opens(&self, plaintext: &[u8]) -> bool {
        Reader::new(plaintext)
            .string()
            .is_ok_and(|blob| blob == self.blob)
    }

    /// Rebuild the key from an opened record (`export`'s layout) as `PrivateKey::decode`
    /// builds it for an add, validated the same way; its public half must be this one.
    fn rebuild(&self, plaintext: &[u8]) -> Result<PrivateKey, Refused> {
        let mut r = Reader::new(plaintext);
        if r.string()? != self.blob {
            return Err(OPEN_FAILED);
        }
        let key = PrivateKey::decode(&mut r)?;
        if !r.is_empty() || key.blob != self.blob || key.plain != self.plain {
            return Err(OPEN_FAILED);
        }
        Ok(key)
    }
}

/// A sealed key: the public half in clear, the private key sealed.
pub struct SealedKey {
    public: PublicHalf,
    record: Sealed,
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedKey([redacted])")
    }
}

impl SealedKey {
    /// Seal `key` under `wrapping` with nonce number `counter`. `key` is left as it was:
    /// the caller drops it (which wipes it) once every key is sealed.
    pub fn seal(
        key: &PrivateKey,
        wrapping: &WrappingKey,
        counter: u64,
    ) -> Result<SealedKey, Refused> {
        let record = Sealed::seal(wrapping, counter, key.export()?)?;
        Ok(SealedKey {
            public: PublicHalf::of(key),
            record,
        })
    }

    /// Open the record: decrypt and authenticate it, and check that it holds the key the
    /// public half names. The key is not rebuilt here but at its first signature
    /// (`OpenedKey`): unlocking costs the AEAD, not the validation and precomputation of
    /// every key. The sealed key is left as it was, whatever the outcome.
    pub fn unseal(&self, wrapping: &WrappingKey) -> Result<Box<OpenedKey>, Refused> {
        let plaintext = self.record.open(wrapping)?;
        if !self.public.opens(&plaintext) {
            return Err(OPEN_FAILED);
        }
        Ok(Box::new(OpenedKey {
            public: self.public.clone(),
            plaintext: Cell::new(Some(plaintext)),
            key: OnceCell::new(),
        }))
    }
}

/// A key an unlock opened: its decrypted record, in a wiped buffer, until its first
/// signature rebuilds the ready-to-sign key from it (then the record is dropped, which
/// wipes it). The record was made from a key that was validated when it was added, and the
/// AEAD has authenticated it, so the rebuild cannot fail but through a fault; if it does,
/// the signature fails and the record is kept (to be sealed again by the next lock). Once
/// rebuilt it signs as a ready key does, behind one check that it is built.
pub struct OpenedKey {
    public: PublicHalf,
    /// The opened record; `None` once the key is rebuilt.
    plaintext: Cell<Option<Zeroizing<Vec<u8>>>>,
    key: OnceCell<PrivateKey>,
}

impl fmt::Debug for OpenedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpenedKey([redacted])")
    }
}

impl OpenedKey {
    /// As `PrivateKey::sign`, rebuilding the key first if this is its first signature. The
    /// rebuild runs where the signature does, in `PrivateKey::decode` (never inlined), below
    /// the request handler: the server's stack wipe after a signature covers it. Never
    /// inlined either, and cold: in `HeldKey::sign`, a key that was never locked signs as
    /// it did before keys were opened (cachegrind: 6 more instructions of about 580,000 per
    /// portable signature; 24 with this inlined).
    #[cold]
    #[inline(never)]
    fn sign(&self, data: &[u8], flags: u32) -> Result<Vec<u8>, Refused> {
        match self.key.get() {
            Some(key) => key.sign(data, flags),
            None => self.rebuild()?.sign(data, flags),
        }
    }

    fn rebuild(&self) -> Result<&PrivateKey, Refused> {
        let plaintext = self.plaintext.take().ok_or(REBUILD_FAILED)?;
        match self.public.rebuild(&plaintext) {
            // The record is dropped (wiped) here, once the key is built from it.
            Ok(key) => Ok(self.key.get_or_init(|| key)),
            Err(_) => {
                // The agent logs this one (`REBUILD_FAILED`) as an error.
                self.plaintext.set(Some(plaintext));
                Err(REBUILD_FAILED)
            }
        }
    }

    /// Seal it again: the rebuilt key as any ready key, else the record as it was opened.
    fn seal(&self, wrapping: &WrappingKey, counter: u64) -> Result<SealedKey, Refused> {
        if let Some(key) = self.key.get() {
            return SealedKey::seal(key, wrapping, counter);
        }
        let plaintext = self.plaintext.take().ok_or(SEAL_FAILED)?;
        let copy = Zeroizing::new(plaintext.to_vec());
        self.plaintext.set(Some(plaintext));
        Ok(SealedKey {
            public: self.public.clone(),
            record: Sealed::seal(wrapping, counter, copy)?,
        })
    }
}

/// A key as the agent holds it: ready to sign (as added); sealed while the agent is locked;
/// or opened by an unlock (rebuilt at its first signature, and held so until it is locked
/// again or removed). All have the public half: the identity table (order, index, list
/// size) stays as it is.
pub enum HeldKey {
    Ready(PrivateKey),
    /// Boxed: a `HeldKey` stays the size it was before keys were opened, so the identity
    /// table of an agent that never locks is as it was.
    Opened(Box<OpenedKey>),
    Sealed(SealedKey),
}

impl fmt::Debug for HeldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeldKey::Ready(k) => k.fmt(f),
            HeldKey::Opened(k) => k.fmt(f),
            HeldKey::Sealed(k) => k.fmt(f),
        }
    }
}

impl From<PrivateKey> for HeldKey {
    fn from(key: PrivateKey) -> HeldKey {
        HeldKey::Ready(key)
    }
}

impl HeldKey {
    /// As `PrivateKey::public_blob`.
    pub fn public_blob(&self) -> &[u8] {
        match self {
            HeldKey::Ready(k) => k.public_blob(),
            HeldKey::Opened(k) => &k.public.blob,
            HeldKey::Sealed(k) => &k.public.blob,
        }
    }

    /// As `PrivateKey::key_type_name`.
    pub fn key_type_name(&self) -> &str {
        match self {
            HeldKey::Ready(k) => k.key_type_name(),
            HeldKey::Opened(k) => k.public.name,
            HeldKey::Sealed(k) => k.public.name,
        }
    }

    /// As `PrivateKey::fingerprint`.
    pub fn fingerprint(&self, hash: FingerprintHash) -> String {
        match self {
            HeldKey::Ready(k) => k.fingerprint(hash),
            HeldKey::Opened(k) => k.public.fingerprint(hash),
            HeldKey::Sealed(k) => k.public.fingerprint(hash),
        }
    }

    /// As `PrivateKey::sign`; an opened key is rebuilt at its first signature, a sealed
    /// key does not sign.
    pub fn sign(&self, data: &[u8], flags: u32) -> Result<Vec<u8>, Refused> {
        match self {
            HeldKey::Ready(k) => k.sign(data, flags),
            HeldKey::Opened(k) => k.sign(data, flags),
            HeldKey::Sealed(_) => Err(SEALED),
        }
    }

    /// Seal the key under `wrapping` with nonce number `counter` (`SealedKey::seal`); the
    /// key is left as it was. A sealed key is not sealed again.
    pub fn seal(&self, wrapping: &WrappingKey, counter: u64) -> Result<SealedKey, Refused> {
        match self {
            HeldKey::Ready(k) => SealedKey::seal(k, wrapping, counter),
            HeldKey::Opened(k) => k.seal(wrapping, counter),
            HeldKey::Sealed(_) => Err(SEAL_FAILED),
        }
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self, HeldKey::Sealed(_))
    }
}

impl PrivateKey {
    /// What a key is sealed as, in a wiped buffer: the identity blob (a string), then the
    /// key part of an ADD request for this key, what `decode` reads
    /// (`sshkey_private_serialize`). A plain key is its type name and public fields (the
    /// public blob's, but RSA's `n, e` in that order), then the private fields; a
    /// certificate is its type name, the certificate, then the private fields (Ed25519
    /// repeats the public key). The private fields: Ed25519 `pk, seed ‖ pk`; ECDSA `d`;
    /// RSA `d, iqmp, p, q`.
    fn export(&self) -> Result<Zeroizing<Vec<u8>>, Refused> {
        let is_cert = self.plain.is_some();
        // Room for everything up front: a buffer that grows leaves copies behind (wiped by
        // the allocator when freed, but not counting on that is cheaper still).
        let rsa_len = match &*self.backend {
            Backend::Rsa(k, _) => k.key.size(),
            _ => 0,
        };
        let capacity = self
            .blob
            .len()
            .saturating_mul(3)
            .saturating_add(256)
            .saturating_add(rsa_len.saturating_mul(6));
        let mut out = Zeroizing::new(Vec::with_capacity(capacity));
        put_string(&mut out, &self.blob);
        if is_cert {
            put_string(&mut out, self.name.as_bytes());
            put_string(&mut out, &self.blob);
        }
        match &*self.backend {
            Backend::Ed25519(k) => {
                let pk = k.verifying_key().to_bytes();
                self.put_ed25519(&mut out, k.as_bytes(), &pk);
            }
            Backend::Ed25519Verified(k) => {
                let (seed, pk) = k.seed_and_public();
                self.put_ed25519(&mut out, seed.as_slice(), &pk);
            }
            Backend::P256(k) => {
                if !is_cert {
                    out.extend_from_slice(&self.blob);
                }
                let mut d = k.to_bytes();
                put_mpint(&mut out, &d);
                d.as_mut_slice().zeroize();
            }
            Backend::P384(k) => {
                if !is_cert {
                    out.extend_from_slice(&self.blob);
                }
                let mut d = k.to_bytes();
                put_mpint(&mut out, &d);
                d.as_mut_slice().zeroize();
            }
            Backend::P521(k) => {
                if !is_cert {
                    out.extend_from_slice(&self.blob);
                }
                let mut d = k.to_bytes();
                put_mpint(&mut out, &d);
                d.as_mut_slice().zeroize();
            }
            Backend::Rsa(k, _) => {
                let key = &k.key;
                let ([p, q], Some(qinv)) = (key.primes(), key.qinv()) else {
                    return Err(SEAL_FAILED);
                };
                if !is_cert {
                    put_string(&mut out, self.name.as_bytes());
                    put_mpint(&mut out, &key.n().to_be_bytes());
                    put_mpint(&mut out, &key.e().to_be_bytes());
                }
                let iqmp = Zeroizing::new(qinv.retrieve());
                for x in [key.d(), &*iqmp, p, q] {
                    let bytes = Zeroizing::new(x.to_be_bytes());
                    put_mpint(&mut out, &bytes);
                }
            }
        }
        Ok(out)
    }

    /// An Ed25519 key's part of `export`: the public key (a certificate repeats it; a plain
    /// key's blob is its type name and public key), then `seed ‖ pk` in a wiped buffer.
    fn put_ed25519(&self, out: &mut Vec<u8>, seed: &[u8], pk: &[u8]) {
        if self.plain.is_some() {
            put_string(out, pk);
        } else {
            out.extend_from_slice(&self.blob);
        }
        let mut sk = Zeroizing::new([0u8; ed25519_dalek::KEYPAIR_LENGTH]);
        let (sk_seed, sk_pk) = sk.split_at_mut(ed25519_dalek::SECRET_KEY_LENGTH);
        sk_seed.copy_from_slice(seed);
        sk_pk.copy_from_slice(pk);
        put_string(out, sk.as_slice());
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkeys;
    use super::*;

    const KINDS: [&str; 5] = ["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa2048"];

    fn wrapping(passphrase: &[u8]) -> WrappingKey {
        WrappingKey::derive(passphrase, &[7u8; 16], 1).unwrap()
    }

    fn decode(body: &[u8]) -> PrivateKey {
        PrivateKey::decode(&mut Reader::new(body)).unwrap()
    }

    /// What `export` writes after the identity blob: the key part of an ADD request.
    fn add_part(exported: &[u8]) -> &[u8] {
        let mut r = Reader::new(exported);
        r.string().unwrap();
        r.rest()
    }

    /// Whether an opened key has been rebuilt (and its record dropped).
    fn is_rebuilt(k: &OpenedKey) -> bool {
        let plaintext = k.plaintext.take();
        let rebuilt = k.key.get().is_some();
        assert_eq!(
            plaintext.is_none(),
            rebuilt,
            "exactly one of record and key"
        );
        k.plaintext.set(plaintext);
        rebuilt
    }

    /// What `export` writes is the identity blob, then what the add carried: the same key,
    /// in the ADD layout. Byte for byte for Ed25519 and RSA (whose iqmp `decode` recomputes
    /// from the primes and must come out equal). ECDSA's scalar is written as a minimal
    /// mpint, as OpenSSH writes it; the test keys' encoder keeps a leading zero byte of a
    /// fixed-width scalar (P-521's top byte is zero about half the time), so there the
    /// exported key must decode to the same key, sign the same, and export again to the same
    /// bytes.
    #[test]
    fn export_is_the_blob_and_the_add_layout() {
        for kind in KINDS {
            for _ in 0..8 {
                let body = testkeys::add_body(kind);
                let key = decode(&body);
                let exported = key.export().unwrap();
                assert_eq!(
                    Reader::new(&exported).string().unwrap(),
                    key.public_blob(),
                    "{kind}"
                );
                if !kind.starts_with("ecdsa") {
                    assert_eq!(add_part(&exported), body.as_slice(), "{kind}");
                    continue;
                }
                let again = decode(add_part(&exported));
                assert_eq!(again.public_blob(), key.public_blob(), "{kind}");
                assert_eq!(again.sign(b"x", 0).unwrap(), key.sign(b"x", 0).unwrap());
                assert_eq!(again.export().unwrap().as_slice(), exported.as_slice());
            }
        }
    }

    /// Sealed and unsealed, every type signs as before (signatures are deterministic), and
    /// keeps its blob, type name and fingerprint while sealed and opened. The key is rebuilt
    /// at its first signature, not at the unlock.
    #[test]
    fn round_trip_every_type() {
        let wk = wrapping(b"passphrase");
        for (n, kind) in KINDS.into_iter().enumerate() {
            let key = decode(&testkeys::add_body(kind));
            let sealed = HeldKey::Sealed(SealedKey::seal(&key, &wk, n as u64).unwrap());
            let HeldKey::Sealed(s) = &sealed else {
                unreachable!()
            };
            let opened = HeldKey::Opened(s.unseal(&wk).unwrap());
            for held in [&sealed, &opened] {
                assert_eq!(held.public_blob(), key.public_blob());
                assert_eq!(held.key_type_name(), key.key_type_name());
                assert_eq!(
                    held.fingerprint(FingerprintHash::Sha256),
                    key.fingerprint(FingerprintHash::Sha256)
                );
            }
            assert_eq!(sealed.sign(b"data", 0), Err(SEALED));
            assert!(sealed.is_sealed() && !opened.is_sealed());
            let HeldKey::Opened(o) = &opened else {
                unreachable!()
            };
            assert!(!is_rebuilt(o), "{kind}: rebuilt before its first signature");
            for flags in [0, 2, 4] {
                assert_eq!(
                    opened.sign(b"data", flags).unwrap(),
                    key.sign(b"data", flags).unwrap(),
                    "{kind} {flags}"
                );
                assert!(is_rebuilt(o));
            }
        }
    }

    /// An opened key is sealed again as it is: its record if it has not signed since the
    /// unlock, else its rebuilt key; both open and sign as before.
    #[test]
    fn opened_keys_seal_again_before_and_after_their_rebuild() {
        let wk = wrapping(b"pw");
        for kind in KINDS {
            let key = decode(&testkeys::add_body(kind));
            let want = key.sign(b"data", 4).unwrap();
            let opened = SealedKey::seal(&key, &wk, 1).unwrap().unseal(&wk).unwrap();
            let again = opened.seal(&wk, 2).unwrap();
            assert!(!is_rebuilt(&opened));
            assert_eq!(opened.sign(b"data", 4).unwrap(), want, "{kind}");
            let reopened = again.unseal(&wk).unwrap();
            assert_eq!(reopened.sign(b"data", 4).unwrap(), want, "{kind}");
            let third = opened.seal(&wk, 3).unwrap().unseal(&wk).unwrap();
            assert_eq!(third.sign(b"data", 4).unwrap(), want, "{kind}");
            // The record sealed from the rebuilt key is the one the key was sealed as.
            assert_eq!(
                SealedKey::seal(opened.key.get().unwrap(), &wk, 9)
                    .unwrap()
                    .record
                    .ciphertext,
                SealedKey::seal(&key, &wk, 9).unwrap().record.ciphertext
            );
        }
    }

    /// A record that cannot be rebuilt (it cannot happen: only validated keys are sealed,
    /// and the AEAD authenticates what was sealed) fails the signature, every time, without
    /// a panic, and is kept to be sealed again. Every truncation of a real one, too.
    #[test]
    fn a_record_that_does_not_rebuild_fails_to_sign() {
        let wk = wrapping(b"pw");
        for kind in KINDS {
            let key = decode(&testkeys::add_body(kind));
            let exported = key.export().unwrap();
            for len in 0..exported.len() {
                let opened = OpenedKey {
                    public: PublicHalf::of(&key),
                    plaintext: Cell::new(Some(Zeroizing::new(exported[..len].to_vec()))),
                    key: OnceCell::new(),
                };
                for _ in 0..2 {
                    assert_eq!(
                        opened.sign(b"data", 0).err(),
                        Some(REBUILD_FAILED),
                        "{kind} {len}"
                    );
                    assert!(!is_rebuilt(&opened));
                }
                let sealed = opened.seal(&wk, 1).unwrap();
                assert_eq!(
                    sealed.record.open(&wk).unwrap().as_slice(),
                    &exported[..len]
                );
            }
        }
    }

    #[test]
    fn certificates_round_trip() {
        // An Ed25519 user certificate signed by an Ed25519 CA, built with ssh-key.
        use getrandom::SysRng;
        use getrandom::rand_core::UnwrapErr;
        use ssh_key::certificate::{Builder, CertType};
        use ssh_key::private::Ed25519Keypair;
        let mut rng = UnwrapErr(SysRng);
        let ca = ssh_key::PrivateKey::from(Ed25519Keypair::random(&mut rng));
        let user = Ed25519Keypair::random(&mut rng);
        let public = ssh_key::public::KeyData::from(user.public);
        let mut b = Builder::new_with_random_nonce(&mut rng, public, 0, u64::MAX - 1).unwrap();
        b.cert_type(CertType::User).unwrap();
        b.valid_principal("root").unwrap();
        let cert = b.sign(&ca).unwrap().to_bytes().unwrap();
        let mut body = Vec::new();
        put_string(&mut body, b"ssh-ed25519-cert-v01@openssh.com");
        put_string(&mut body, &cert);
        put_string(&mut body, user.public.as_ref());
        let mut sk = user.private.to_bytes().to_vec();
        sk.extend_from_slice(user.public.as_ref());
        put_string(&mut body, &sk);

        let key = decode(&body);
        assert_eq!(add_part(&key.export().unwrap()), body.as_slice());
        let wk = wrapping(b"pw");
        let sealed = SealedKey::seal(&key, &wk, 1).unwrap();
        let back = HeldKey::Opened(sealed.unseal(&wk).unwrap());
        assert_eq!(back.public_blob(), cert.as_slice());
        assert_eq!(back.key_type_name(), "ssh-ed25519-cert-v01@openssh.com");
        assert_eq!(
            back.fingerprint(FingerprintHash::Sha256),
            key.fingerprint(FingerprintHash::Sha256)
        );
        assert_eq!(back.sign(b"x", 0).unwrap(), key.sign(b"x", 0).unwrap());
    }

    #[test]
    fn wrong_key_or_changed_bytes_do_not_open() {
        let key = decode(&testkeys::add_body("ed25519"));
        let wk = wrapping(b"right");
        let sealed = SealedKey::seal(&key, &wk, 3).unwrap();
        assert_eq!(sealed.unseal(&wrapping(b"wrong")).err(), Some(OPEN_FAILED));
        // The same passphrase under another salt is another key.
        let other_salt = WrappingKey::derive(b"right", &[8u8; 16], 1).unwrap();
        assert_eq!(sealed.unseal(&other_salt).err(), Some(OPEN_FAILED));
        for i in 0..sealed.record.ciphertext.len() {
            let mut bad = Sealed {
                nonce: sealed.record.nonce,
                ciphertext: sealed.record.ciphertext.clone(),
                tag: sealed.record.tag,
            };
            bad.ciphertext[i] ^= 1;
            assert!(bad.open(&wk).is_err(), "byte {i}");
        }
        let mut bad_tag = Sealed {
            nonce: sealed.record.nonce,
            ciphertext: sealed.record.ciphertext.clone(),
            tag: sealed.record.tag,
        };
        bad_tag.tag[0] ^= 1;
        assert!(bad_tag.open(&wk).is_err());
        let other_nonce = Sealed {
            nonce: nonce(4),
            ciphertext: sealed.record.ciphertext.clone(),
            tag: sealed.record.tag,
        };
        assert!(other_nonce.open(&wk).is_err());
        // Still opens with the right key.
        assert!(sealed.unseal(&wk).is_ok());
    }

    /// A record that authenticates but holds another key than the clear public half says is
    /// refused at the unlock, and at the rebuild.
    #[test]
    fn public_half_must_match() {
        let wk = wrapping(b"pw");
        let a = decode(&testkeys::add_body("ed25519"));
        let b = decode(&testkeys::add_body("ed25519"));
        let mut sealed = SealedKey::seal(&a, &wk, 1).unwrap();
        sealed.public.blob = b.public_blob().to_vec();
        assert_eq!(sealed.unseal(&wk).err(), Some(OPEN_FAILED));
        let exported = a.export().unwrap();
        assert_eq!(
            PublicHalf::of(&b).rebuild(&exported).err(),
            Some(OPEN_FAILED)
        );
        // The blob in front matches, the key behind it does not.
        let mut mixed = Vec::new();
        put_string(&mut mixed, b.public_blob());
        mixed.extend_from_slice(add_part(&exported));
        assert_eq!(PublicHalf::of(&b).rebuild(&mixed).err(), Some(OPEN_FAILED));
        assert!(PublicHalf::of(&a).rebuild(&exported).is_ok());
    }

    #[test]
    fn the_ciphertext_holds_no_secret() {
        let key = decode(&testkeys::add_body("ed25519"));
        let seed = match &*key.backend {
            Backend::Ed25519(k) => *k.as_bytes(),
            Backend::Ed25519Verified(k) => *k.seed_and_public().0,
            _ => unreachable!(),
        };
        let sealed = SealedKey::seal(&key, &wrapping(b"pw"), 1).unwrap();
        let ct = &sealed.record.ciphertext;
        assert!(!ct.windows(seed.len()).any(|w| w == seed));
    }

    #[test]
    fn nonces_are_counters() {
        assert_eq!(nonce(0), [0; 12]);
        assert_eq!(nonce(1), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            nonce(u64::MAX),
            [0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255]
        );
    }

    #[test]
    fn debug_is_redacted() {
        let key = decode(&testkeys::add_body("ed25519"));
        let wk = wrapping(b"pw");
        let sealed = SealedKey::seal(&key, &wk, 1).unwrap();
        let opened = sealed.unseal(&wk).unwrap();
        assert_eq!(format!("{wk:?}"), "WrappingKey([redacted])");
        assert_eq!(format!("{:?}", sealed.record), "Sealed([redacted])");
        assert_eq!(
            format!("{:?}", HeldKey::Sealed(sealed)),
            "SealedKey([redacted])"
        );
        assert_eq!(
            format!("{:?}", HeldKey::Opened(opened)),
            "OpenedKey([redacted])"
        );
        assert_eq!(
            format!("{:?}", HeldKey::Ready(key)),
            "PrivateKey([redacted])"
        );
    }
}
