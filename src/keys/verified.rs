//! Signing on `graviola`: formally verified, constant-time assembly (s2n-bignum) for RSA
//! PKCS#1 v1.5 with SHA-256 and SHA-512 (2048 to 8192 bits) and for Ed25519, where the CPU
//! has what that assembly needs. Everything else signs with RustCrypto, in `mod.rs` and `rsa.rs`.
//!
//! graviola asserts its CPU features at every entry point: an x86_64 CPU without adx, aes,
//! avx, avx2, bmi1 and pclmulqdq (before about 2013, and under valgrind), or an aarch64 one
//! without aes, sha2, pmull and neon, would panic, and a panic loses every key. So the choice
//! is made once per process with graviola's own check (`is_cpu_supported`, the very predicate
//! of that assertion), and no graviola type is built, nor any of its functions called, unless
//! it said yes. It does not build for other architectures: there these types are empty.
//!
//! Not through graviola: SHA-1 (`ssh-rsa`, flags 0), which it does not sign; RSA keys under
//! 2048 bits, which it does not take; and keys whose primes have different numbers of 64-bit
//! words (the `rsa` crate's 2049-bit keys: 1024 and 1025 bits; `ssh-keygen` makes none), which
//! its CRT code's debug assertions do not allow.
//!
//! Keys in memory: graviola's key types wipe their secret fields on drop (`SecretPosInt`, and
//! the Ed25519 seed, scalar and prefix); each is kept in a `Box`, built once when the key is
//! added and never moved after, so the heap block (wiped on free by the allocator as well) is
//! the only long-lived copy. graviola returns keys by value, so building one passes it through
//! stack frames: it is built in a function of its own and the stack that function used is
//! wiped as soon as it returns. RSA signing keeps CRT temporaries in graviola's frames (12 KiB
//! deep at 8192 bits), below the request handler, in the stack the server wipes after every
//! request that touches a secret.
// Where graviola does not build, the DER code has no caller.
#![cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]

use std::sync::OnceLock;

use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use ssh_key::encoding::bigint::BoxedUint;
use ssh_key::encoding::bigint::modular::BoxedMontyForm;
use zeroize::Zeroizing;

use super::{INVALID, MISMATCH, UNSUPPORTED};
use crate::wire::Refused;

/// Set to a non-empty value, the agent signs with the portable RustCrypto code even where
/// the CPU could run graviola (the man page's ENVIRONMENT).
const PORTABLE_ENV: &str = "SSHKEEP_PORTABLE_CRYPTO";

/// Which code signs, decided on first use (the server asks at start-up).
struct Choice {
    verified: bool,
    why: &'static str,
}

static CHOICE: OnceLock<Choice> = OnceLock::new();

fn choice() -> &'static Choice {
    CHOICE.get_or_init(|| {
        let forced = std::env::var_os(PORTABLE_ENV).is_some_and(|v| !v.is_empty());
        if forced {
            Choice {
                verified: false,
                why: "portable Rust code (SSHKEEP_PORTABLE_CRYPTO is set)",
            }
        } else if cpu_supported() {
            Choice {
                verified: true,
                why: "graviola's verified assembly for RSA SHA-2 and Ed25519",
            }
        } else if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            Choice {
                verified: false,
                why: "portable Rust code (the CPU lacks features graviola needs)",
            }
        } else {
            Choice {
                verified: false,
                why: "portable Rust code (no graviola on this architecture)",
            }
        }
    })
}

/// Whether new keys get graviola's signing where it can take them.
pub(super) fn enabled() -> bool {
    choice().verified
}

/// What signs, for the start-up log.
pub(super) fn describe() -> &'static str {
    choice().why
}

/// graviola's check of the CPU, made once.
pub(super) fn cpu_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(imp::cpu_supported)
}

/// The SHA-2 hash of an `rsa-sha2-*` signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sha2 {
    Sha256,
    Sha512,
}

pub(super) use imp::{Ed25519, Rsa};

/// The components of `key` in the order graviola's CRT expects them (the larger prime first,
/// its exponent first, the coefficient the inverse of the smaller prime mod the larger), or
/// `None` for a key outside what graviola is used for (module comment).
fn rsa_components(key: &rsa::RsaPrivateKey) -> Option<[Zeroizing<BoxedUint>; 8]> {
    const MIN_BITS: u32 = 2048; // graviola: MIN_PRIVATE_MODULUS_BITS, two primes
    let bits = key.n().as_ref().bits_vartime(); // public
    if !(MIN_BITS..=super::RSA_MAX_BITS as u32).contains(&bits) {
        return None;
    }
    let ([a, b], Some(da), Some(db), Some(qinv), Some(b_params)) =
        (key.primes(), key.dp(), key.dq(), key.qinv(), key.q_params())
    else {
        return None;
    };
    if a.bits().div_ceil(64) != b.bits().div_ceil(64) {
        return None;
    }
    let copy = |x: &BoxedUint| Zeroizing::new(x.clone());
    let (p, q, dp, dq, iqmp) = if a > b {
        // rsa's coefficient is b^-1 mod a: the one graviola needs.
        (
            copy(a),
            copy(b),
            copy(da),
            copy(db),
            Zeroizing::new(qinv.retrieve()),
        )
    } else {
        // b^-1 mod a does not serve: a^-1 mod b, computed as rsa computes its own.
        let a_mod_b = a.rem(b_params.modulus().as_nz_ref());
        let inv = BoxedMontyForm::new(a_mod_b, b_params)
            .invert()
            .into_option()?;
        (
            copy(b),
            copy(a),
            copy(db),
            copy(da),
            Zeroizing::new(inv.retrieve()),
        )
    };
    Some([
        copy(key.n().as_ref()),
        copy(key.e()),
        copy(key.d()),
        p,
        q,
        dp,
        dq,
        iqmp,
    ])
}

/// The DER encoding of a PKCS#1 `RSAPrivateKey` (RFC 8017 A.1.2, two primes) with the
/// integers `ints` (`n, e, d, p, q, dp, dq, qinv`), in one wiped buffer of the exact size.
fn pkcs1_der(ints: &[Zeroizing<BoxedUint>; 8]) -> Option<Zeroizing<Vec<u8>>> {
    let bytes: Vec<Zeroizing<Box<[u8]>>> = ints
        .iter()
        .map(|x| Zeroizing::new(x.to_be_bytes()))
        .collect();
    let version: &[u8] = &[];
    let fields = std::iter::once(version).chain(bytes.iter().map(|b| &***b));
    let content = fields
        .clone()
        .try_fold(0usize, |n, f| n.checked_add(der_uint_len(f)?))?;
    let total = content.checked_add(1)?.checked_add(der_len_len(content)?)?;
    let mut out = Zeroizing::new(Vec::with_capacity(total));
    out.push(0x30); // SEQUENCE
    put_der_len(&mut out, content)?;
    for f in fields {
        put_der_uint(&mut out, f)?;
    }
    (out.len() == total).then_some(out)
}

/// The magnitude without leading zeros, and whether DER needs a 0x00 before it (an empty
/// magnitude is zero, encoded as one 0x00).
fn der_magnitude(m: &[u8]) -> (&[u8], bool) {
    let start = m.iter().position(|&x| x != 0).unwrap_or(m.len());
    let m = m.get(start..).unwrap_or_default();
    (m, m.first().is_none_or(|&x| x & 0x80 != 0))
}

fn der_len_len(len: usize) -> Option<usize> {
    match len {
        0..=0x7f => Some(1),
        0x80..=0xff => Some(2),
        0x100..=0xffff => Some(3),
        _ => None,
    }
}

fn der_uint_len(m: &[u8]) -> Option<usize> {
    let (m, pad) = der_magnitude(m);
    let body = m.len().checked_add(usize::from(pad))?;
    body.checked_add(1)?.checked_add(der_len_len(body)?)
}

fn put_der_len(out: &mut Vec<u8>, len: usize) -> Option<()> {
    let [.., hi, lo] = u16::try_from(len).ok()?.to_be_bytes();
    match der_len_len(len)? {
        1 => out.push(lo),
        2 => out.extend_from_slice(&[0x81, lo]),
        _ => out.extend_from_slice(&[0x82, hi, lo]),
    }
    Some(())
}

fn put_der_uint(out: &mut Vec<u8>, m: &[u8]) -> Option<()> {
    let (m, pad) = der_magnitude(m);
    out.push(0x02); // INTEGER
    put_der_len(out, m.len().checked_add(usize::from(pad))?)?;
    if pad {
        out.push(0);
    }
    out.extend_from_slice(m);
    Some(())
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod imp {
    use graviola::signing::eddsa::Ed25519SigningKey;
    use graviola::signing::rsa::SigningKey;

    use super::*;
    use crate::secret::wipe_stack;

    pub(super) fn cpu_supported() -> bool {
        graviola::util::is_cpu_supported()
    }

    /// How much stack below the caller building a key may touch: graviola itself measured 17
    /// KiB for RSA-8192 and about 1 KiB for Ed25519 (a painted stack, release build), and the
    /// builder's frame holds the key as it is moved into its box (8 KiB for RSA, unoptimised
    /// builds several copies).
    const RSA_BUILD_STACK: usize = 64 * 1024;
    const ED25519_BUILD_STACK: usize = 8 * 1024;

    /// graviola returns its keys by value: the key (primes, exponents, seed) passes through
    /// this frame and graviola's below it, which `wipe_stack` overwrites once it returns (more
    /// than the server's wipe after each request, which may be too shallow for a build in an
    /// unoptimised binary).
    /// The caller keeps only the box.
    #[inline(never)]
    fn build_rsa(der: &[u8]) -> Option<Box<SigningKey>> {
        SigningKey::from_pkcs1_der(der).ok().map(Box::new)
    }

    #[inline(never)]
    fn build_ed25519(seed: &[u8]) -> Option<Box<Ed25519SigningKey>> {
        Ed25519SigningKey::from_bytes(seed).ok().map(Box::new)
    }

    /// graviola's RSA key, for the SHA-2 signatures of a key `rsa` validated.
    pub(in crate::keys) struct Rsa(Box<SigningKey>);

    impl Rsa {
        /// Build graviola's key from `rsa`'s (already validated), or `None` where graviola
        /// is not used: the CPU, or a key it does not take (module comment).
        pub(in crate::keys) fn new(key: &rsa::RsaPrivateKey) -> Option<Rsa> {
            if !super::cpu_supported() {
                return None;
            }
            let der = pkcs1_der(&rsa_components(key)?)?;
            let key = build_rsa(&der);
            wipe_stack::<RSA_BUILD_STACK>();
            Some(Rsa(key?))
        }

        /// RSASSA-PKCS1-v1_5 of `data` (hashed here), as long as the modulus; `None` if
        /// graviola's check of the result against the public key fails.
        pub(in crate::keys) fn sign(&self, hash: Sha2, data: &[u8]) -> Option<Vec<u8>> {
            // Room for any modulus: `modulus_len_bytes` would copy the public key each time.
            let mut sig = vec![0u8; super::super::RSA_MAX_BITS / 8];
            let len = match hash {
                Sha2::Sha256 => self.0.sign_pkcs1_sha256(&mut sig, data),
                Sha2::Sha512 => self.0.sign_pkcs1_sha512(&mut sig, data),
            }
            .ok()?
            .len();
            sig.truncate(len);
            Some(sig)
        }
    }

    /// graviola's Ed25519 key.
    pub(in crate::keys) struct Ed25519(Box<Ed25519SigningKey>);

    impl Ed25519 {
        /// Build the key from `sk` (seed ‖ pk, 64 bytes) and check that it derives the public
        /// key `pk`, as `keys::ed25519_key` does for ed25519-dalek.
        pub(in crate::keys) fn new(pk: &[u8], sk: &[u8]) -> Result<Ed25519, Refused> {
            if !super::cpu_supported() {
                return Err(UNSUPPORTED);
            }
            if pk.len() != 32 || sk.len() != 64 {
                return Err(INVALID);
            }
            let (seed, sk_pk) = sk.split_at(32);
            let key = build_ed25519(seed);
            wipe_stack::<ED25519_BUILD_STACK>();
            let key = key.ok_or(INVALID)?;
            if key.public_key().as_bytes().as_slice() != pk || sk_pk != pk {
                return Err(MISMATCH);
            }
            Ok(Ed25519(key))
        }

        pub(in crate::keys) fn sign(&self, data: &[u8]) -> [u8; 64] {
            self.0.sign(data)
        }

        /// The 32-byte seed and the public key, for sealing (`seal.rs`).
        pub(in crate::keys) fn seed_and_public(&self) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
            (
                Zeroizing::new(self.0.as_seed()),
                self.0.public_key().as_bytes(),
            )
        }
    }
}

/// Elsewhere graviola does not build: these types have no values.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod imp {
    use super::*;

    pub(super) fn cpu_supported() -> bool {
        false
    }

    pub(in crate::keys) enum Rsa {}

    impl Rsa {
        pub(in crate::keys) fn new(_: &rsa::RsaPrivateKey) -> Option<Rsa> {
            None
        }

        pub(in crate::keys) fn sign(&self, _: Sha2, _: &[u8]) -> Option<Vec<u8>> {
            match *self {}
        }
    }

    pub(in crate::keys) enum Ed25519 {}

    impl Ed25519 {
        pub(in crate::keys) fn new(_: &[u8], _: &[u8]) -> Result<Ed25519, Refused> {
            Err(UNSUPPORTED)
        }

        pub(in crate::keys) fn sign(&self, _: &[u8]) -> [u8; 64] {
            match *self {}
        }

        pub(in crate::keys) fn seed_and_public(&self) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
            match *self {}
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    use ssh_key::encoding::Encode;

    use super::super::testkeys::{self, fields, join};
    use super::super::{Backend, PrivateKey, verify};
    use super::*;
    use crate::wire::{Reader, put_mpint, put_string};

    /// A throwaway RSA-8192 key (`ssh-keygen -b 8192` takes many seconds), made for these tests.
    const RSA_8192: &str = include_str!("testdata/rsa-8192");

    fn decode(body: &[u8], verified: bool) -> PrivateKey {
        PrivateKey::decode_with(&mut Reader::new(body), verified).unwrap()
    }

    /// Whether graviola signs for `key`'s SHA-2 signatures.
    fn is_verified(key: &PrivateKey) -> bool {
        match &*key.backend {
            Backend::Rsa(_, fast) => fast.is_some(),
            Backend::Ed25519Verified(_) => true,
            _ => false,
        }
    }

    /// The ADD body (key part) of an RSA key made by `ssh-keygen -b bits`, or `None` (said
    /// why) without ssh-keygen outside CI.
    fn ssh_keygen_rsa(bits: u32) -> Option<Vec<u8>> {
        let dir =
            std::env::temp_dir().join(format!("sshkeep-verified-{}-{bits}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path: PathBuf = dir.join("key");
        let status = Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-t", "rsa", "-b", &bits.to_string(), "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .status();
        let body = match status {
            Ok(s) if s.success() => {
                let key = ssh_key::PrivateKey::read_openssh_file(&path).unwrap();
                Some(key.key_data().encode_vec().unwrap())
            }
            _ if std::env::var_os("CI").is_some() => panic!("ssh-keygen failed under CI"),
            _ => {
                eprintln!("ssh-keygen not usable: skipping RSA-{bits}");
                None
            }
        };
        let _ = std::fs::remove_dir_all(&dir);
        body
    }

    /// A 2049-bit key from `rsa`, whose primes have 1024 and 1025 bits (16 and 17 words);
    /// OpenSSH's `ssh-keygen -b 2049` makes a 2048-bit key with OpenSSL 3.
    pub(in crate::keys) fn unequal_primes() -> Vec<u8> {
        use getrandom::rand_core::UnwrapErr;
        let key = rsa::RsaPrivateKey::new(&mut UnwrapErr(getrandom::SysRng), 2049).unwrap();
        let [p, q] = key.primes() else {
            panic!("two primes")
        };
        assert_ne!(p.bits().div_ceil(64), q.bits().div_ceil(64));
        let mut body = Vec::new();
        put_string(&mut body, b"ssh-rsa");
        let iqmp = key.qinv().unwrap().retrieve(); // not read: decode recomputes it
        for x in [key.n().as_ref(), key.e(), key.d(), &iqmp, p, q] {
            put_mpint(&mut body, &x.to_be_bytes());
        }
        body
    }

    /// RSA: graviola's signatures are the portable path's, byte for byte (PKCS#1 v1.5 is
    /// deterministic), for every size it takes, with the primes in either order; it takes
    /// no key under 2048 bits nor one whose primes differ by a word, and SHA-1 stays on `rsa`.
    #[test]
    fn rsa_signatures_equal_the_portable_path() {
        let big = ssh_key::PrivateKey::from_openssh(RSA_8192).unwrap();
        let mut keys = vec![(8192, big.key_data().encode_vec().unwrap())];
        for bits in [1024, 2048, 3072, 4096] {
            keys.extend(ssh_keygen_rsa(bits).map(|b| (bits, b)));
        }
        keys.push((2049, unequal_primes()));
        for (bits, body) in keys {
            let mut swapped = fields(&body); // [name, n, e, d, iqmp, p, q]
            swapped.swap(5, 6);
            for body in [body.clone(), join(&swapped)] {
                let fast = decode(&body, cpu_supported());
                let portable = decode(&body, false);
                assert!(!is_verified(&portable));
                let taken = cpu_supported() && bits >= 2048 && bits != 2049;
                assert_eq!(is_verified(&fast), taken, "RSA-{bits}");
                for data in [&b""[..], b"data", &[0xa5; 1000]] {
                    for flags in [0, 2, 4, 6] {
                        let sig = fast.sign(data, flags).unwrap();
                        assert_eq!(
                            sig,
                            portable.sign(data, flags).unwrap(),
                            "RSA-{bits} {flags}"
                        );
                        assert!(verify(fast.public_blob(), data, &sig), "RSA-{bits} {flags}");
                    }
                }
            }
        }
    }

    /// Ed25519: graviola's signatures are ed25519-dalek's, byte for byte, and a private half
    /// that does not match is refused in the same words.
    #[test]
    fn ed25519_signatures_equal_dalek() {
        if !cpu_supported() {
            eprintln!("this CPU cannot run graviola: nothing to compare");
            return;
        }
        for _ in 0..20 {
            let body = testkeys::add_body("ed25519");
            let fast = decode(&body, true);
            let dalek = decode(&body, false);
            assert!(is_verified(&fast) && !is_verified(&dalek));
            assert_eq!(fast.public_blob(), dalek.public_blob());
            let mut long = vec![0u8; 5000];
            getrandom::fill(&mut long).unwrap();
            for data in [&b""[..], b"x", &long] {
                let sig = fast.sign(data, 0).unwrap();
                assert_eq!(sig, dalek.sign(data, 0).unwrap());
                assert!(verify(fast.public_blob(), data, &sig));
            }
        }
        // [name, pk, seed ‖ pk]: each part altered, or of the wrong length.
        let body = fields(&testkeys::add_body("ed25519"));
        for (field, at) in [(1, 0), (2, 0), (2, 40)] {
            let mut f = body.clone();
            f[field][at] ^= 1;
            let err = |v| PrivateKey::decode_with(&mut Reader::new(&join(&f)), v).unwrap_err();
            assert_eq!(err(true), err(false), "field {field} byte {at}");
            assert_eq!(err(true), MISMATCH);
        }
        for field in [1, 2] {
            let mut f = body.clone();
            f[field].pop();
            let err = |v| PrivateKey::decode_with(&mut Reader::new(&join(&f)), v).unwrap_err();
            assert_eq!(err(true), err(false), "field {field} short");
        }
    }

    /// The PKCS#1 DER built here is canonical: graviola encodes the key it parsed from it
    /// to the same bytes.
    #[test]
    fn pkcs1_der_round_trips() {
        if !cpu_supported() {
            eprintln!("this CPU cannot run graviola: nothing to compare");
            return;
        }
        let big = ssh_key::PrivateKey::from_openssh(RSA_8192).unwrap();
        let bodies = [
            testkeys::add_body("rsa2048"),
            big.key_data().encode_vec().unwrap(),
        ];
        for body in bodies {
            let key = decode(&body, false);
            let Backend::Rsa(k, _) = &*key.backend else {
                panic!("not RSA");
            };
            let der = pkcs1_der(&rsa_components(&k.key).unwrap()).unwrap();
            let parsed = graviola::signing::rsa::SigningKey::from_pkcs1_der(&der).unwrap();
            let mut out = vec![0u8; der.len() + 64];
            assert_eq!(parsed.to_pkcs1_der(&mut out).unwrap(), der.as_slice());
        }
        // Lengths across the short and long forms, and integers needing a 0x00.
        let mut out = Vec::new();
        put_der_uint(&mut out, &[0, 0, 0x80]).unwrap();
        put_der_uint(&mut out, &[]).unwrap();
        put_der_uint(&mut out, &[0x7f]).unwrap();
        assert_eq!(out, [2, 2, 0, 0x80, 2, 1, 0, 2, 1, 0x7f]);
        for (len, head) in [
            (0x7f, &[0x7f][..]),
            (0x80, &[0x81, 0x80]),
            (0x100, &[0x82, 1, 0]),
        ] {
            let mut out = Vec::new();
            put_der_len(&mut out, len).unwrap();
            assert_eq!(out, head);
        }
        assert!(put_der_len(&mut Vec::new(), 0x10000).is_none());
    }
}
