//! Scanning a process's memory for the secret forms of private keys (as root, through
//! `/proc/PID/mem`): the key files' secrets in every byte form an agent may keep them in.
//!
//! API: [`secrets_of`]`(key_file)` gives the [`Secret`]s of one private key file, each integer
//! big- and little-endian: the Ed25519 seed and its SHA-512 expansion (both halves, the
//! clamped scalar and its reduction mod ℓ); the ECDSA scalar, plain and in Montgomery form;
//! RSA d, p, q, dp, dq, qinv (plain and in Montgomery form) and the primes' Montgomery
//! constants R and R² mod p and q. [`scan`]`(pid, &secrets)` reads every readable mapping and
//! returns the [`Hit`]s, sorted; [`describe`] prints them; [`assert_none_on_stack`] checks that
//! none is in the main thread's stack, where requests run. [`release_agent`] is the release
//! binary when a scan of it can run here ([`can_scan`]: root), after a [`skip`](super::skip)
//! otherwise.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use std::path::PathBuf;

use rsa::BoxedUint;
use rsa::traits::PrivateKeyParts;
use ssh_key::private::KeypairData;
use ssh_key::sha2::{Digest, Sha512};

/// One secret of a key and the byte forms it may be stored in.
#[derive(Debug)]
pub struct Secret {
    /// The key file's name.
    pub key: String,
    pub what: &'static str,
    pub forms: Vec<(&'static str, Vec<u8>)>,
}

/// Where a secret was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hit {
    /// The key file's name.
    pub key: String,
    pub what: &'static str,
    pub form: &'static str,
    pub region: String,
    /// Offsets into the region of every copy.
    pub offsets: Vec<usize>,
}

/// Whether memory scans can run here: reading a non-dumpable process's memory needs root.
/// When not, a [`skip`](super::skip) (a failure under CI=true).
pub fn can_scan() -> bool {
    if !nix::unistd::geteuid().is_root() {
        super::skip(
            "reading the memory of a non-dumpable process needs root: run the tests as root",
        );
        return false;
    }
    true
}

/// The release binary to scan ([`super::release_bin`]), when the scan can run here: root
/// ([`can_scan`]), sshkeep under test ([`super::sshkeep_only`]).
pub fn release_agent() -> Option<PathBuf> {
    if !can_scan() || !super::sshkeep_only() {
        return None;
    }
    super::release_bin()
}

fn reversed(b: &[u8]) -> Vec<u8> {
    b.iter().rev().copied().collect()
}

/// An integer (big-endian magnitude) as written and reversed (little-endian limbs), without
/// leading zeros.
fn integer(key: &str, what: &'static str, be: &[u8]) -> Secret {
    let be = strip(be);
    Secret {
        key: key.to_string(),
        what,
        forms: vec![("big-endian", be.to_vec()), ("little-endian", reversed(be))],
    }
}

fn as_is(key: &str, what: &'static str, bytes: &[u8]) -> Secret {
    Secret {
        key: key.to_string(),
        what,
        forms: vec![("as is", bytes.to_vec())],
    }
}

fn strip(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

// Big-endian byte arithmetic, enough for the few forms below (tests only, no speed needed).

fn ge(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (strip(a), strip(b));
    a.len() > b.len() || (a.len() == b.len() && a >= b)
}

/// a - b for a >= b, at a's length.
fn sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = a.to_vec();
    let mut borrow = 0i16;
    for i in 0..out.len() {
        let ai = out.len() - 1 - i;
        let bv = if i < b.len() {
            b[b.len() - 1 - i] as i16
        } else {
            0
        };
        let mut d = out[ai] as i16 - bv - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[ai] = d as u8;
    }
    out
}

/// x mod n by repeated subtraction: only for x < 16·n.
fn reduce_small(x: &[u8], n: &[u8]) -> Vec<u8> {
    let mut v = x.to_vec();
    while ge(&v, n) {
        v = sub(&v, n);
    }
    v
}

/// x·2^k mod n (the Montgomery form of x for R = 2^k), big-endian, at n's length.
pub fn montgomery(x: &[u8], n: &[u8], k: usize) -> Vec<u8> {
    let mut v = vec![0u8; n.len() + 1];
    let off = v.len() - x.len();
    v[off..].copy_from_slice(x);
    v = reduce_small(&v, n);
    for _ in 0..k {
        let mut carry = 0u8;
        for b in v.iter_mut().rev() {
            let top = *b >> 7;
            *b = (*b << 1) | carry;
            carry = top;
        }
        v = reduce_small(&v, n);
    }
    let s = strip(&v);
    let mut out = vec![0u8; n.len() - s.len()];
    out.extend_from_slice(s);
    out
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The order of the Ed25519 group, ℓ = 2^252 + 27742317777372353535851937790883648493.
const ED25519_L: &str = "1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed";
/// The orders of P-256, P-384 and P-521.
const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
const P384_N: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973";
const P521_N: &str = "01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409";

/// Every secret form of the private key in `path` (an unencrypted OpenSSH key file), each
/// secret under the file's name.
pub fn secrets_of(path: &Path) -> Vec<Secret> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let name = name.as_str();
    let key = ssh_key::PrivateKey::read_openssh_file(path).unwrap();
    match key.key_data() {
        KeypairData::Ed25519(kp) => {
            let seed = kp.private.to_bytes();
            let h = Sha512::digest(seed);
            let (lower, prefix) = h.split_at(32);
            let mut clamped = lower.to_vec();
            clamped[0] &= 248;
            clamped[31] &= 127;
            clamped[31] |= 64;
            // curve25519-dalek keeps scalars as little-endian bytes reduced mod ℓ.
            let clamped = reversed(&clamped);
            let reduced = reduce_small(&clamped, &hex(ED25519_L));
            vec![
                as_is(name, "Ed25519 seed", &seed),
                integer(name, "Ed25519 SHA-512 low half", &reversed(lower)),
                integer(name, "Ed25519 clamped scalar", &clamped),
                integer(name, "Ed25519 scalar mod ℓ", &reduced),
                as_is(name, "Ed25519 nonce prefix (SHA-512 high half)", prefix),
            ]
        }
        KeypairData::Ecdsa(kp) => {
            let d = kp.private_key_bytes();
            let mut secrets = vec![integer(name, "ECDSA scalar", d)];
            // p256, p384 and p521 keep scalars in Montgomery form, R = 2^(64·limbs).
            let order = match d.len() {
                32 => Some((hex(P256_N), 256)),
                48 => Some((hex(P384_N), 384)),
                66 => Some((hex(P521_N), 576)),
                _ => None,
            };
            if let Some((n, k)) = order {
                let m = montgomery(d, &n, k);
                secrets.push(integer(name, "ECDSA scalar (Montgomery form)", &m));
            }
            secrets
        }
        KeypairData::Rsa(kp) => {
            let mut key = rsa::RsaPrivateKey::try_from(kp).unwrap();
            key.precompute().unwrap();
            let be = |x: &BoxedUint| x.to_be_bytes().to_vec();
            let [p, q] = key.primes() else {
                panic!("{name}: not a two-prime key")
            };
            let qinv = key.qinv().unwrap();
            let mut secrets = vec![
                integer(name, "RSA d", &be(key.d())),
                integer(name, "RSA p", &be(p)),
                integer(name, "RSA q", &be(q)),
                integer(name, "RSA dp", &be(key.dp().unwrap())),
                integer(name, "RSA dq", &be(key.dq().unwrap())),
                integer(name, "RSA qinv", &be(&qinv.retrieve())),
                integer(
                    name,
                    "RSA qinv (Montgomery form)",
                    &be(qinv.as_montgomery()),
                ),
            ];
            // The primes' Montgomery constants R mod p and R² mod p give p away (gcd with n);
            // R = 2^(64·limbs), the prime's precision.
            for (r_what, r2_what, prime) in [
                ("RSA R mod p", "RSA R² mod p", p),
                ("RSA R mod q", "RSA R² mod q", q),
            ] {
                let k = prime.bits_precision() as usize;
                let prime = be(prime);
                let r = montgomery(&[1], strip(&prime), k);
                secrets.push(integer(name, r2_what, &montgomery(&r, strip(&prime), k)));
                secrets.push(integer(name, r_what, &r));
            }
            secrets
        }
        other => panic!("{name}: no secret forms for {:?}", other.algorithm()),
    }
}

/// Every readable mapping of `pid`, named by path (or `anonymous`), range and permissions
/// (those the kernel will not read, such as `[vvar]`, give nothing and are skipped by `scan`).
fn readable_regions(pid: u32) -> Vec<(u64, u64, String)> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let path = f.nth(3).unwrap_or("").to_string();
            let (a, b) = range.split_once('-')?;
            let (a, b) = (
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            );
            let name = if path.is_empty() {
                format!("anonymous {a:x}-{b:x} {perms}")
            } else {
                format!("{path} {a:x}-{b:x} {perms}")
            };
            perms.starts_with('r').then_some((a, b, name))
        })
        .collect()
}

/// Every secret form, indexed by its first two bytes, so one pass over a region finds them
/// all (the test crate is not optimised: a pass per form would take seconds).
struct Index<'a> {
    by_prefix: Vec<Vec<(&'a Secret, &'static str, &'a [u8])>>,
}

impl<'a> Index<'a> {
    fn new(secrets: &'a [Secret]) -> Index<'a> {
        let mut by_prefix = vec![Vec::new(); 1 << 16];
        for s in secrets {
            for (form, bytes) in &s.forms {
                assert!(
                    bytes.len() >= 16,
                    "{}: {} ({form}) is too short to look for",
                    s.key,
                    s.what
                );
                let p = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
                by_prefix[p].push((s, *form, bytes.as_slice()));
            }
        }
        Index { by_prefix }
    }

    /// (secret, form, offset) of every copy in `hay`.
    fn find(&self, hay: &[u8], mut found: impl FnMut(&'a Secret, &'static str, usize)) {
        for (i, pair) in hay.windows(2).enumerate() {
            let p = usize::from(u16::from_be_bytes([pair[0], pair[1]]));
            for &(s, form, bytes) in &self.by_prefix[p] {
                if hay[i..].starts_with(bytes) {
                    found(s, form, i);
                }
            }
        }
    }
}

/// None of `hits` is in the main thread's stack (`[stack]`), where the agent's requests run:
/// the stack wipe after each request reached below the frames that held the keys' secrets,
/// though the keys are still loaded.
#[track_caller]
pub fn assert_none_on_stack(hits: &[Hit], when: &str) {
    let stack: Vec<Hit> = hits
        .iter()
        .filter(|h| h.region.starts_with("[stack] "))
        .cloned()
        .collect();
    assert!(
        stack.is_empty(),
        "key material left on the stack {when}:\n{}",
        describe(&stack)
    );
}

/// Reads every readable mapping of `pid` through /proc/PID/mem and reports where each
/// secret form is.
pub fn scan(pid: u32, secrets: &[Secret]) -> Vec<Hit> {
    let index = Index::new(secrets);
    let mem = fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut hits: Vec<Hit> = Vec::new();
    let mut scanned = 0u64;
    for (start, end, name) in readable_regions(pid) {
        let mut buf = vec![0u8; (end - start) as usize];
        // A region can vanish or shrink between reading maps and reading it, and some
        // (`[vvar]`) cannot be read: keep what was read.
        let mut got = 0;
        while got < buf.len() {
            match mem.read_at(&mut buf[got..], start + got as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        buf.truncate(got);
        scanned += got as u64;
        index.find(&buf, |s, form, at| {
            match hits
                .iter_mut()
                .find(|h| h.key == s.key && h.what == s.what && h.form == form && h.region == name)
            {
                Some(h) => h.offsets.push(at),
                None => hits.push(Hit {
                    key: s.key.clone(),
                    what: s.what,
                    form,
                    region: name.clone(),
                    offsets: vec![at],
                }),
            }
        });
    }
    assert!(scanned > 0, "nothing of process {pid} could be read");
    hits.sort();
    hits
}

pub fn describe(hits: &[Hit]) -> String {
    hits.iter()
        .map(|h| {
            format!(
                "  {}: {} ({}) in {}: {} cop{} at {:x?}",
                h.key,
                h.what,
                h.form,
                h.region,
                h.offsets.len(),
                if h.offsets.len() == 1 { "y" } else { "ies" },
                h.offsets
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
