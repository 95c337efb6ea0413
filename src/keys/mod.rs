//! Keys: the only module that names `ssh-key` and crypto types. Decodes and validates
//! private keys from ADD requests, converts each once into a ready-to-sign form, signs
//! with the requested flags, computes fingerprints, verifies signatures and seals keys (`seal`).
//!
//! The private fields of an ADD request are read straight from the request buffer with
//! `wire::Reader` (borrowed slices, no copies), so the only copies of secret bytes
//! made here are the backend signing keys and a few `Zeroizing` temporaries. `ssh-key`
//! parses certificates and public keys and verifies signatures; the signing backends are
//! `ed25519-dalek`, `p256`/`p384`/`p521` and `rsa`, each built once when the key is added,
//! and for RSA SHA-2 and Ed25519 `graviola` where the CPU runs it (`keys/verified.rs`).
//!
//! The files: this one has the key-type table (the only one in the crate), decoding, signing,
//! verifying and fingerprints; `rsa.rs` the portable RSA key and its blinded signing;
//! `cert.rs` OpenSSH certificates; `verified.rs` graviola's signing; `seal.rs` a key sealed
//! under the lock.

use std::fmt;

use ::rsa::Pkcs1v15Sign;
use signature::{Signer, Verifier};
use ssh_key::encoding::Decode;
use ssh_key::encoding::base64::{Base64Unpadded, Encoding};
use ssh_key::sha2::{Digest, Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

use crate::wire::{Reader, Refused, put_mpint, put_string};

mod cert;
mod rsa;
mod seal;
mod verified;

#[cfg(test)]
pub(crate) use cert::test_counters;
pub use cert::{HostCert, host_cert, is_certificate, plain_public_key};
use cert::{check_cert, parse_certificate};
use rsa::{RsaKey, rsa_key};
pub use seal::{HeldKey, REBUILD_FAILED, Sealed, SealedKey, WrappingKey};

/// What signs in this process, for the start-up log: graviola's assembly where the CPU has
/// what it needs (checked once), else the portable RustCrypto code.
pub fn signing_backend() -> &'static str {
    verified::describe()
}
/// Smallest RSA modulus accepted, in bits (OpenSSH: SSH_RSA_MINIMUM_MODULUS_SIZE).
const RSA_MIN_BITS: usize = 1024;
/// Largest RSA modulus accepted, in bits: the `rsa` crate's `RsaPublicKey::MAX_SIZE`
/// (OpenSSH allows 16384, but nobody uses keys that signing would take seconds with).
const RSA_MAX_BITS: usize = 8192;

/// SSH_AGENT_RSA_SHA2_256 and SSH_AGENT_RSA_SHA2_512 (RFC 9987 §3.6.1).
const FLAG_RSA_SHA2_256: u32 = 0x02;
const FLAG_RSA_SHA2_512: u32 = 0x04;

const UNSUPPORTED: Refused = Refused("unsupported key type");
const INVALID: Refused = Refused("invalid key encoding");
const MISMATCH: Refused = Refused("private key does not match public key");
const BAD_CERT: Refused = Refused("invalid certificate");

/// Hash for fingerprints in logs and confirm prompts (`-E`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FingerprintHash {
    Md5,
    Sha1,
    #[default]
    Sha256,
    Sha384,
    Sha512,
}

impl FingerprintHash {
    const ALL: [FingerprintHash; 5] = [
        FingerprintHash::Md5,
        FingerprintHash::Sha1,
        FingerprintHash::Sha256,
        FingerprintHash::Sha384,
        FingerprintHash::Sha512,
    ];

    /// OpenSSH's `ssh_digest_alg_by_name`: case-insensitive names.
    pub fn from_name(name: &str) -> Option<FingerprintHash> {
        Self::ALL
            .into_iter()
            .find(|h| h.name().eq_ignore_ascii_case(name))
    }

    /// The name as OpenSSH prints it in front of a fingerprint (`ssh_digest_alg_name`).
    pub fn name(self) -> &'static str {
        match self {
            FingerprintHash::Md5 => "MD5",
            FingerprintHash::Sha1 => "SHA1",
            FingerprintHash::Sha256 => "SHA256",
            FingerprintHash::Sha384 => "SHA384",
            FingerprintHash::Sha512 => "SHA512",
        }
    }
}

/// The supported key types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ed25519,
    P256,
    P384,
    P521,
    Rsa,
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::Ed25519, Kind::P256, Kind::P384, Kind::P521, Kind::Rsa];

    fn name(self) -> &'static str {
        match self {
            Kind::Ed25519 => "ssh-ed25519",
            Kind::P256 => "ecdsa-sha2-nistp256",
            Kind::P384 => "ecdsa-sha2-nistp384",
            Kind::P521 => "ecdsa-sha2-nistp521",
            Kind::Rsa => "ssh-rsa",
        }
    }

    fn cert_name(self) -> &'static str {
        match self {
            Kind::Ed25519 => "ssh-ed25519-cert-v01@openssh.com",
            Kind::P256 => "ecdsa-sha2-nistp256-cert-v01@openssh.com",
            Kind::P384 => "ecdsa-sha2-nistp384-cert-v01@openssh.com",
            Kind::P521 => "ecdsa-sha2-nistp521-cert-v01@openssh.com",
            Kind::Rsa => "ssh-rsa-cert-v01@openssh.com",
        }
    }

    /// The key type for a wire name, and whether it names a certificate. Only the
    /// canonical names: DSA, FIDO (`sk-`) and everything else are refused.
    fn from_name(name: &[u8]) -> Option<(Kind, bool)> {
        Self::ALL.into_iter().find_map(|k| {
            if name == k.name().as_bytes() {
                Some((k, false))
            } else if name == k.cert_name().as_bytes() {
                Some((k, true))
            } else {
                None
            }
        })
    }

    /// The key type a public key algorithm name stands for, as OpenSSH's
    /// `sshkey_type_from_name` reads it: a key type name, or one of RSA's SHA-2 signature
    /// algorithms (RFC 8332), which name RSA keys.
    fn from_algorithm(name: &[u8]) -> Option<(Kind, bool)> {
        match name {
            b"rsa-sha2-256" | b"rsa-sha2-512" => Some((Kind::Rsa, false)),
            b"rsa-sha2-256-cert-v01@openssh.com" | b"rsa-sha2-512-cert-v01@openssh.com" => {
                Some((Kind::Rsa, true))
            }
            _ => Kind::from_name(name),
        }
    }

    /// The ECDSA curve identifier and the size of the curve's order in bits.
    fn curve(self) -> Option<(&'static str, usize)> {
        match self {
            Kind::P256 => Some(("nistp256", 256)),
            Kind::P384 => Some(("nistp384", 384)),
            Kind::P521 => Some(("nistp521", 521)),
            Kind::Ed25519 | Kind::Rsa => None,
        }
    }
}

/// Whether the public key algorithm `alg` (of a userauth request) names the type of key that
/// `key_type` names, as OpenSSH compares them (`sshkey_type_from_name`): "rsa-sha2-256" is an
/// RSA key, every ECDSA curve one type, a certificate only a certificate. Names this agent
/// does not know match only themselves.
pub fn same_type(alg: &[u8], key_type: &[u8]) -> bool {
    let family = |name: &[u8]| {
        Kind::from_algorithm(name)
            .map(|(kind, cert)| (kind.curve().is_none().then_some(kind), cert))
    };
    match (family(alg), family(key_type)) {
        (None, None) => alg == key_type,
        (a, b) => a == b,
    }
}

/// Whether a public key blob is an RSA key or certificate (whose signatures take
/// milliseconds where the others take microseconds).
pub fn is_rsa(blob: &[u8]) -> bool {
    Reader::new(blob)
        .string()
        .is_ok_and(|name| matches!(Kind::from_name(name), Some((Kind::Rsa, _))))
}

/// The public half of a key, borrowed from the request (or from the certificate in it).
/// Integers are unsigned big-endian magnitudes without leading zeros.
enum Public<'a> {
    Ed25519 { pk: &'a [u8] },
    Ecdsa { q: &'a [u8] },
    Rsa { e: &'a [u8], n: &'a [u8] },
}

impl Public<'_> {
    /// Read the public fields as `sshkey_private_serialize` writes them for a plain key
    /// (RSA: `n, e`; ECDSA: `curve, Q`; Ed25519: `pk`).
    fn read_add<'a>(kind: Kind, r: &mut Reader<'a>) -> Result<Public<'a>, Refused> {
        Ok(match kind {
            Kind::Ed25519 => Public::Ed25519 { pk: r.string()? },
            Kind::P256 | Kind::P384 | Kind::P521 => Public::read_ecdsa(kind, r)?,
            Kind::Rsa => {
                let n = r.mpint()?;
                let e = r.mpint()?;
                Public::Rsa { e, n }
            }
        })
    }

    /// Read the public fields as a public key blob or certificate holds them
    /// (RSA: `e, n`; the others as in an ADD request).
    fn read_blob<'a>(kind: Kind, r: &mut Reader<'a>) -> Result<Public<'a>, Refused> {
        Ok(match kind {
            Kind::Rsa => {
                let e = r.mpint()?;
                let n = r.mpint()?;
                Public::Rsa { e, n }
            }
            _ => Public::read_add(kind, r)?,
        })
    }

    fn read_ecdsa<'a>(kind: Kind, r: &mut Reader<'a>) -> Result<Public<'a>, Refused> {
        let (curve, _) = kind.curve().ok_or(UNSUPPORTED)?;
        // OpenSSH: the curve name must match the key type (SSH_ERR_EC_CURVE_MISMATCH).
        if r.string()? != curve.as_bytes() {
            return Err(INVALID);
        }
        Ok(Public::Ecdsa { q: r.string()? })
    }

    /// The public key blob (`sshkey_to_blob` of the plain key).
    fn blob(&self, kind: Kind) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, kind.name().as_bytes());
        match self {
            Public::Ed25519 { pk } => put_string(&mut out, pk),
            Public::Ecdsa { q } => {
                let (curve, _) = kind.curve().unwrap_or(("", 0));
                put_string(&mut out, curve.as_bytes());
                put_string(&mut out, q);
            }
            Public::Rsa { e, n } => {
                put_mpint(&mut out, e);
                put_mpint(&mut out, n);
            }
        }
        out
    }
}

/// The signing backend, built once when the key is added. Each wipes itself on drop:
/// `ed25519_dalek::SigningKey` (feature "zeroize"), `ecdsa::SigningKey` and
/// `rsa::RsaPrivateKey` implement `Drop` with `zeroize`.
// XXX: `rsa` 0.10.0-rc.19 wipes d, the primes, dp and dq, but not its CRT Montgomery
// parameters (which hold p and q, behind an `Arc`) nor qinv ("TODO: once these have
// landed in crypto-bigint"), nor the big-integer temporaries of validation and signing.
enum Backend {
    Ed25519(ed25519_dalek::SigningKey),
    /// graviola's Ed25519 (`verified.rs`), where the CPU has it; wiped on drop too.
    Ed25519Verified(verified::Ed25519),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
    /// The `rsa` key signs SHA-1, and everything where graviola's key is `None`.
    Rsa(RsaKey, Option<verified::Rsa>),
}

/// Build the signing key of curve `$krate` (field bytes `$len`, order bits `$bits`) from the
/// private scalar `$d` (a magnitude); its public point must be `$q`.
macro_rules! ecdsa_key {
    ($krate:ident, $len:literal, $bits:literal, $q:expr, $d:expr) => {{
        let d: &[u8] = $d;
        // OpenSSH sshkey_ec_validate_private: a scalar of half the order's size or less
        // is refused as too small.
        if bit_len(d) <= $bits / 2 {
            return Err(INVALID);
        }
        let pad = ($len as usize).checked_sub(d.len()).ok_or(INVALID)?;
        let mut scalar = Zeroizing::new([0u8; $len]);
        scalar.get_mut(pad..).ok_or(INVALID)?.copy_from_slice(d);
        let key = $krate::ecdsa::SigningKey::from_slice(scalar.as_slice()).map_err(|_| INVALID)?;
        if key.verifying_key().to_sec1_point(false).as_bytes() != *$q {
            return Err(MISMATCH);
        }
        key
    }};
}

/// A private key, validated and converted once into a ready-to-sign form.
/// Wiped on drop; its `Debug` prints no secret.
pub struct PrivateKey {
    /// Boxed: the P-521 key is large, and requests carrying a key move around.
    backend: Box<Backend>,
    /// The wire key type name (a certificate's for a certificate).
    name: &'static str,
    /// The identity blob: the certificate exactly as received, or the public key blob.
    blob: Vec<u8>,
    /// For a certificate, the blob of its plain public key (fingerprints hash this).
    plain: Option<Vec<u8>>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

/// The key part of an ADD request, read in place (`sshkey_private_serialize`'s layout,
/// certificates included): its type, the public half or the certificate, and the private
/// fields, as borrowed slices. Only the layout is checked.
struct Fields<'a> {
    kind: Kind,
    half: Half<'a>,
    private: Private<'a>,
}

/// What comes after the type name: a plain key's public fields, or a certificate.
enum Half<'a> {
    Plain(Public<'a>),
    Cert(&'a [u8]),
}

/// The private fields. Integers are magnitudes without leading zeros.
enum Private<'a> {
    /// A certificate's private part repeats the public key (`pk`) before the secret.
    Ed25519 {
        pk: Option<&'a [u8]>,
        sk: &'a [u8],
    },
    Ecdsa {
        d: &'a [u8],
    },
    /// `iqmp` is read and not used: `rsa` recomputes it from p and q.
    Rsa {
        d: &'a [u8],
        p: &'a [u8],
        q: &'a [u8],
    },
}

impl<'a> Fields<'a> {
    /// Read the fields, leaving the reader just after them (at the comment).
    fn read(r: &mut Reader<'a>) -> Result<Fields<'a>, Refused> {
        let (kind, is_cert) = Kind::from_name(r.string()?).ok_or(UNSUPPORTED)?;
        let half = if is_cert {
            Half::Cert(r.string()?)
        } else {
            Half::Plain(Public::read_add(kind, r)?)
        };
        let private = match kind {
            Kind::Ed25519 => Private::Ed25519 {
                pk: if is_cert { Some(r.string()?) } else { None },
                sk: r.string()?,
            },
            Kind::P256 | Kind::P384 | Kind::P521 => Private::Ecdsa { d: r.mpint()? },
            Kind::Rsa => {
                let d = r.mpint()?;
                let _iqmp = r.mpint()?;
                let p = r.mpint()?;
                let q = r.mpint()?;
                Private::Rsa { d, p, q }
            }
        };
        Ok(Fields {
            kind,
            half,
            private,
        })
    }
}

/// The key of an ADD request, read but not built: its type, and its fields as the request
/// has them, copied into a wiped buffer. Reading checks only the layout, in microseconds;
/// `build` checks the key and converts it, which takes milliseconds for RSA, so the server
/// can tell from the decoded request when to run it (`protocol::Request::is_slow`).
pub struct NewKey {
    kind: Kind,
    fields: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewKey([redacted])")
    }
}

impl NewKey {
    /// Read the key part of an ADD request body, leaving the reader at the comment.
    pub fn read(r: &mut Reader<'_>) -> Result<NewKey, Refused> {
        let start = r.rest();
        let kind = Fields::read(r)?.kind;
        let len = start.len().saturating_sub(r.rest().len());
        let fields = Zeroizing::new(start.get(..len).ok_or(INVALID)?.to_vec());
        Ok(NewKey { kind, fields })
    }

    /// An RSA key or certificate: building it takes milliseconds.
    pub fn is_rsa(&self) -> bool {
        self.kind == Kind::Rsa
    }

    /// Check the key and convert it into its ready-to-sign form (`PrivateKey::decode`).
    pub fn build(self) -> Result<PrivateKey, Refused> {
        PrivateKey::decode(&mut Reader::new(&self.fields))
    }
}

impl PrivateKey {
    /// Decode the key part of an ADD request body: the key type name and the private
    /// fields (`sshkey_private_serialize` layout, certificates included), leaving the
    /// reader just after them (at the comment).
    ///
    /// The private half must match the public half (and a certificate's key), as
    /// OpenSSH's `sshkey_private_deserialize` and `cert_parse` require; the certificate's
    /// CA signature must verify. The private fields are read in place (from a `NewKey`, or
    /// the record `seal.rs` opened, both wiped); the only copies are the backend key and
    /// wiped temporaries.
    ///
    /// Never inlined, as `sign`: the temporaries that moves leave on the stack are then in
    /// frames below the caller's, which the server's stack wipe clears.
    #[inline(never)]
    pub fn decode(r: &mut Reader<'_>) -> Result<PrivateKey, Refused> {
        Self::decode_with(r, verified::enabled())
    }

    /// `decode`, with graviola's signing where `verified` and the key allows it.
    fn decode_with(r: &mut Reader<'_>, verified: bool) -> Result<PrivateKey, Refused> {
        let Fields {
            kind,
            half,
            private,
        } = Fields::read(r)?;
        let (public, cert) = match half {
            Half::Cert(cert) => (check_cert(kind, cert)?, Some(cert)),
            Half::Plain(public) => (public, None),
        };
        let backend = match (&public, kind, private) {
            (Public::Ed25519 { pk }, Kind::Ed25519, Private::Ed25519 { pk: again, sk }) => {
                if again.is_some_and(|again| again != *pk) {
                    return Err(MISMATCH);
                }
                if verified {
                    Backend::Ed25519Verified(verified::Ed25519::new(pk, sk)?)
                } else {
                    Backend::Ed25519(ed25519_key(pk, sk)?)
                }
            }
            (Public::Ecdsa { q }, Kind::P256, Private::Ecdsa { d }) => {
                Backend::P256(ecdsa_key!(p256, 32, 256, q, d))
            }
            (Public::Ecdsa { q }, Kind::P384, Private::Ecdsa { d }) => {
                Backend::P384(ecdsa_key!(p384, 48, 384, q, d))
            }
            (Public::Ecdsa { q }, Kind::P521, Private::Ecdsa { d }) => {
                Backend::P521(ecdsa_key!(p521, 66, 521, q, d))
            }
            (Public::Rsa { e, n }, Kind::Rsa, Private::Rsa { d, p, q }) => {
                let key = RsaKey::new(rsa_key(n, e, d, p, q)?)?;
                let fast = verified.then(|| verified::Rsa::new(&key.key)).flatten();
                Backend::Rsa(key, fast)
            }
            _ => return Err(UNSUPPORTED),
        };
        let backend = Box::new(backend);
        let plain = public.blob(kind);
        Ok(match cert {
            Some(cert) => PrivateKey {
                backend,
                name: kind.cert_name(),
                blob: cert.to_vec(),
                plain: Some(plain),
            },
            None => PrivateKey {
                backend,
                name: kind.name(),
                blob: plain,
                plain: None,
            },
        })
    }

    /// The public key blob as listed by REQUEST_IDENTITIES (the certificate blob for certificates).
    pub fn public_blob(&self) -> &[u8] {
        &self.blob
    }

    /// The wire key type name, e.g. "ssh-ed25519" or "ssh-ed25519-cert-v01@openssh.com".
    pub fn key_type_name(&self) -> &str {
        self.name
    }

    /// Sign `data`. `flags` selects the RSA hash (2: rsa-sha2-256, 4: rsa-sha2-512, else SHA-1);
    /// other bits are ignored, as OpenSSH ignores them. Returns the signature blob
    /// (`string algorithm, string signature`).
    ///
    /// A certificate signs with its key under the plain key's algorithm name, as OpenSSH's
    /// agent does. ECDSA is deterministic (RFC 6979); RSA is blinded. Never inlined (see
    /// `decode`): the expanded Ed25519 key, the ECDSA nonce and the RSA CRT halves stay in
    /// frames below the caller's.
    #[inline(never)]
    pub fn sign(&self, data: &[u8], flags: u32) -> Result<Vec<u8>, Refused> {
        const FAILED: Refused = Refused("signing failed");
        let mut out = Vec::new();
        match &*self.backend {
            Backend::Ed25519(k) => {
                put_string(&mut out, Kind::Ed25519.name().as_bytes());
                put_string(&mut out, &k.sign(data).to_bytes());
            }
            Backend::Ed25519Verified(k) => {
                put_string(&mut out, Kind::Ed25519.name().as_bytes());
                put_string(&mut out, &k.sign(data));
            }
            Backend::P256(k) => {
                let sig: p256::ecdsa::Signature = k.try_sign(data).map_err(|_| FAILED)?;
                let (r, s) = sig.split_bytes();
                put_ecdsa_signature(&mut out, Kind::P256, &r, &s);
            }
            Backend::P384(k) => {
                let sig: p384::ecdsa::Signature = k.try_sign(data).map_err(|_| FAILED)?;
                let (r, s) = sig.split_bytes();
                put_ecdsa_signature(&mut out, Kind::P384, &r, &s);
            }
            Backend::P521(k) => {
                let sig: p521::ecdsa::Signature = k.try_sign(data).map_err(|_| FAILED)?;
                let (r, s) = sig.split_bytes();
                put_ecdsa_signature(&mut out, Kind::P521, &r, &s);
            }
            Backend::Rsa(k, fast) => {
                // OpenSSH agent_decode_alg: 0x02 is checked first, then 0x04, else SHA-1.
                let (alg, sig) = if flags & FLAG_RSA_SHA2_256 != 0 {
                    let sig = match fast {
                        Some(f) => f.sign(verified::Sha2::Sha256, data),
                        None => k.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(data)),
                    };
                    ("rsa-sha2-256", sig)
                } else if flags & FLAG_RSA_SHA2_512 != 0 {
                    let sig = match fast {
                        Some(f) => f.sign(verified::Sha2::Sha512, data),
                        None => k.sign(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(data)),
                    };
                    ("rsa-sha2-512", sig)
                } else {
                    let digest = sha1::Sha1::digest(data);
                    (
                        "ssh-rsa",
                        k.sign(Pkcs1v15Sign::new::<sha1::Sha1>(), &digest),
                    )
                };
                let sig = sig.ok_or(FAILED)?;
                put_string(&mut out, alg.as_bytes());
                put_string(&mut out, &sig);
            }
        }
        Ok(out)
    }

    /// The fingerprint as `ssh-add -l` / `ssh-keygen -l` print it (of the plain key for a certificate).
    pub fn fingerprint(&self, hash: FingerprintHash) -> String {
        fingerprint(self.plain.as_deref().unwrap_or(&self.blob), hash)
    }
}

/// Verify an SSH signature blob (`string algorithm, string signature`) over `data` by the
/// public key blob `public_blob` (for a certificate, by the certificate's key), as
/// OpenSSH's `sshkey_verify` does: any RSA signature algorithm (ssh-rsa, rsa-sha2-256,
/// rsa-sha2-512) for an RSA key, RSA keys under 1024 bits refused, no trailing bytes.
/// Never panics; anything malformed is `false`.
pub fn verify(public_blob: &[u8], data: &[u8], signature_blob: &[u8]) -> bool {
    verify_by(public_blob, true, data, signature_blob).is_ok()
}

fn verify_by(key: &[u8], allow_cert: bool, data: &[u8], sig: &[u8]) -> Result<(), Refused> {
    let name = Reader::new(key).string()?;
    let key = if name.ends_with(b"-cert-v01@openssh.com") {
        if !allow_cert {
            return Err(BAD_CERT);
        }
        let cert = parse_certificate(key).map_err(|_| INVALID)?;
        cert.public_key().clone()
    } else {
        let mut rest = key;
        let key = ssh_key::public::KeyData::decode(&mut rest).map_err(|_| INVALID)?;
        if !rest.is_empty() {
            return Err(INVALID);
        }
        key
    };
    if let ssh_key::public::KeyData::Rsa(rsa) = &key {
        let n = rsa.n().as_positive_bytes().ok_or(INVALID)?;
        if bit_len(n) < RSA_MIN_BITS {
            return Err(Refused("rsa key too small"));
        }
    }
    let mut rest = sig;
    let sig = ssh_key::Signature::decode(&mut rest).map_err(|_| INVALID)?;
    if !rest.is_empty() {
        return Err(INVALID);
    }
    key.verify(data, &sig)
        .map_err(|_| Refused("signature does not verify"))
}

/// Whether `blob` is a well-formed public key or certificate of a supported type (OpenSSH
/// parses host keys in destination constraints and session binds with `sshkey_froms`).
pub fn is_public_key(blob: &[u8]) -> bool {
    let Ok(name) = Reader::new(blob).string() else {
        return false;
    };
    if name.ends_with(b"-cert-v01@openssh.com") {
        return parse_certificate(blob).is_ok_and(|c| c.verify_signature().is_ok());
    }
    let mut rest = blob;
    ssh_key::public::KeyData::decode(&mut rest).is_ok() && rest.is_empty()
}

/// The fingerprint of a public key blob as `ssh-keygen -l` prints it (of its key for a certificate).
pub fn public_fingerprint(blob: &[u8], hash: FingerprintHash) -> String {
    fingerprint(&plain_public_key(blob), hash)
}

/// Decode the base64 key field of a `known_hosts` or `.pub` line; `None` when malformed.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    ssh_key::encoding::base64::Base64::decode_vec(text).ok()
}

/// Build the Ed25519 signing key from `sk` (seed ‖ pk, 64 bytes) and check that it
/// derives the public key `pk`.
fn ed25519_key(pk: &[u8], sk: &[u8]) -> Result<ed25519_dalek::SigningKey, Refused> {
    if pk.len() != ed25519_dalek::PUBLIC_KEY_LENGTH || sk.len() != ed25519_dalek::KEYPAIR_LENGTH {
        return Err(INVALID);
    }
    let (seed, sk_pk) = sk.split_at(ed25519_dalek::SECRET_KEY_LENGTH);
    let mut secret = Zeroizing::new([0u8; ed25519_dalek::SECRET_KEY_LENGTH]);
    secret.copy_from_slice(seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&secret);
    if key.verifying_key().as_bytes().as_slice() != pk || sk_pk != pk {
        return Err(MISMATCH);
    }
    Ok(key)
}

/// Append an ECDSA signature blob: the algorithm, then `string(mpint r, mpint s)` (RFC 5656).
fn put_ecdsa_signature(out: &mut Vec<u8>, kind: Kind, r: &[u8], s: &[u8]) {
    let mut inner = Vec::new();
    put_mpint(&mut inner, r);
    put_mpint(&mut inner, s);
    put_string(out, kind.name().as_bytes());
    put_string(out, &inner);
}

/// The number of significant bits of a magnitude without leading zeros.
fn bit_len(m: &[u8]) -> usize {
    match m.first() {
        None => 0,
        Some(&top) => m
            .len()
            .saturating_sub(1)
            .saturating_mul(8)
            .saturating_add(8 - top.leading_zeros() as usize),
    }
}

/// OpenSSH's `sshkey_fingerprint(key, alg, SSH_FP_DEFAULT)` of a public key blob:
/// hex with colons for MD5, unpadded base64 for the others.
fn fingerprint(blob: &[u8], hash: FingerprintHash) -> String {
    let digest: Vec<u8> = match hash {
        FingerprintHash::Md5 => md5(blob).to_vec(),
        FingerprintHash::Sha1 => sha1::Sha1::digest(blob).to_vec(),
        FingerprintHash::Sha256 => Sha256::digest(blob).to_vec(),
        FingerprintHash::Sha384 => Sha384::digest(blob).to_vec(),
        FingerprintHash::Sha512 => Sha512::digest(blob).to_vec(),
    };
    let body = match hash {
        FingerprintHash::Md5 => digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        _ => Base64Unpadded::encode_string(&digest),
    };
    format!("{}:{body}", hash.name())
}

/// MD5 (RFC 1321), only for `-E md5` fingerprints of public keys: no crate in the tree has it.
fn md5(data: &[u8]) -> [u8; 16] {
    const SHIFTS: [u32; 16] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
    // floor(abs(sin(i + 1)) * 2^32)
    const K: [u32; 64] = [
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());

    let mut state: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
    for block in msg.chunks_exact(64) {
        let mut m = [0u32; 16];
        for (w, b) in m.iter_mut().zip(block.chunks_exact(4)) {
            *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        let [mut a, mut b, mut c, mut d] = state;
        for (i, &k) in K.iter().enumerate() {
            // i < 64, so every index below is in bounds.
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let shift = SHIFTS[(i / 16) * 4 + i % 4];
            let f = f.wrapping_add(a).wrapping_add(k).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(shift));
        }
        for (s, v) in state.iter_mut().zip([a, b, c, d]) {
            *s = s.wrapping_add(v);
        }
    }
    let mut out = [0u8; 16];
    for (o, s) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&s.to_le_bytes());
    }
    out
}

/// Test keys for other modules' unit tests.
#[cfg(test)]
pub(crate) mod testkeys {
    use std::sync::OnceLock;

    use getrandom::SysRng;
    use getrandom::rand_core::UnwrapErr;
    use ssh_key::EcdsaCurve;
    use ssh_key::encoding::{Decode, Encode};
    use ssh_key::private::{EcdsaKeypair, Ed25519Keypair, KeypairData, RsaKeypair};
    use ssh_key::public::KeyData;

    use crate::wire::{Reader, put_string};

    /// The key part of an ADD body (what `PrivateKey::decode` consumes) for a freshly
    /// generated key of `kind`: "ed25519", "ecdsa256", "ecdsa384", "ecdsa521" or "rsa2048"
    /// (RSA is generated once per test binary: it is slow).
    pub fn add_body(kind: &str) -> Vec<u8> {
        let mut rng = UnwrapErr(SysRng);
        let kp: KeypairData = match kind {
            "ed25519" => Ed25519Keypair::random(&mut rng).into(),
            "ecdsa256" => EcdsaKeypair::random(&mut rng, EcdsaCurve::NistP256)
                .unwrap()
                .into(),
            "ecdsa384" => EcdsaKeypair::random(&mut rng, EcdsaCurve::NistP384)
                .unwrap()
                .into(),
            "ecdsa521" => EcdsaKeypair::random(&mut rng, EcdsaCurve::NistP521)
                .unwrap()
                .into(),
            "rsa2048" => {
                static RSA: OnceLock<Vec<u8>> = OnceLock::new();
                return RSA
                    .get_or_init(|| {
                        let kp: KeypairData = RsaKeypair::random(&mut UnwrapErr(SysRng), 2048)
                            .unwrap()
                            .into();
                        kp.encode_vec().unwrap()
                    })
                    .clone();
            }
            other => panic!("unknown test key kind {other:?}"),
        };
        kp.encode_vec().unwrap()
    }

    /// Split a body made only of SSH strings (an ADD body, say) into its strings.
    pub fn fields(body: &[u8]) -> Vec<Vec<u8>> {
        let mut r = Reader::new(body);
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push(r.string().unwrap().to_vec());
        }
        out
    }

    /// The strings of `fields`, put together again.
    pub fn join(fields: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in fields {
            put_string(&mut out, f);
        }
        out
    }

    /// The public key blob of the key in `add_body` (decoded independently of `keys`).
    pub fn public_blob(add_body: &[u8]) -> Vec<u8> {
        let kp = KeypairData::decode(&mut &add_body[..]).unwrap();
        KeyData::try_from(&kp).unwrap().encode_vec().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::rsa::{Blinding, RSA_BLINDING_USES};
    use super::testkeys::{fields, join};
    use super::*;

    const KINDS: [&str; 5] = ["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa2048"];

    fn decode(body: &[u8]) -> Result<PrivateKey, Refused> {
        PrivateKey::decode(&mut Reader::new(body))
    }

    fn sig_alg(sig: &[u8]) -> String {
        String::from_utf8(Reader::new(sig).string().unwrap().to_vec()).unwrap()
    }

    /// Verify with ssh-key's verifier, independently of `verify`.
    fn ssh_key_verifies(blob: &[u8], data: &[u8], sig: &[u8]) -> bool {
        let key = if sig_alg(blob).contains("-cert-") {
            ssh_key::Certificate::from_bytes(blob)
                .unwrap()
                .public_key()
                .clone()
        } else {
            ssh_key::public::KeyData::decode(&mut &blob[..]).unwrap()
        };
        let sig = ssh_key::Signature::try_from(sig).unwrap();
        key.verify(data, &sig).is_ok()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn random_bytes(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        getrandom::fill(&mut v).unwrap();
        v
    }

    #[test]
    fn every_type_decodes_signs_and_verifies() {
        for kind in KINDS {
            let body = testkeys::add_body(kind);
            let key = decode(&body).unwrap();
            assert_eq!(key.public_blob(), testkeys::public_blob(&body), "{kind}");
            assert_eq!(sig_alg(key.public_blob()), key.key_type_name());
            let data = b"data to be signed";
            let sig = key.sign(data, 0).unwrap();
            let want = if kind == "rsa2048" {
                "ssh-rsa"
            } else {
                key.key_type_name()
            };
            assert_eq!(sig_alg(&sig), want);
            assert!(verify(key.public_blob(), data, &sig), "{kind}");
            assert!(ssh_key_verifies(key.public_blob(), data, &sig), "{kind}");
            assert!(!verify(key.public_blob(), b"other data", &sig), "{kind}");
            // Another key of the same type does not verify it.
            let other = testkeys::public_blob(&testkeys::add_body(kind));
            if other != key.public_blob() {
                assert!(!verify(&other, data, &sig), "{kind}");
            }
        }
    }

    #[test]
    fn reader_is_left_at_the_comment() {
        for kind in KINDS {
            let mut body = testkeys::add_body(kind);
            put_string(&mut body, b"a comment");
            body.extend_from_slice(&[1, 0, 0, 2, 0x58]);
            let mut r = Reader::new(&body);
            PrivateKey::decode(&mut r).unwrap();
            assert_eq!(r.string().unwrap(), b"a comment");
            assert_eq!(r.rest(), &[1, 0, 0, 2, 0x58]);
        }
    }

    #[test]
    fn rsa_flags_select_the_algorithm() {
        let key = decode(&testkeys::add_body("rsa2048")).unwrap();
        let data = b"flags";
        for (flags, alg) in [
            (0, "ssh-rsa"),
            (1, "ssh-rsa"),
            (2, "rsa-sha2-256"),
            (4, "rsa-sha2-512"),
            (6, "rsa-sha2-256"),
            (8, "ssh-rsa"),
            (0xffff_fff9, "ssh-rsa"),
        ] {
            let sig = key.sign(data, flags).unwrap();
            assert_eq!(sig_alg(&sig), alg, "flags {flags}");
            assert!(verify(key.public_blob(), data, &sig), "flags {flags}");
            assert!(ssh_key_verifies(key.public_blob(), data, &sig));
            // The signature is as long as the modulus (OpenSSH pads it).
            assert_eq!(fields(&sig)[1].len(), 256);
        }
        // Flags do not matter for the other types.
        let ed = decode(&testkeys::add_body("ed25519")).unwrap();
        assert_eq!(
            ed.sign(data, 0xffff_ffff).unwrap(),
            ed.sign(data, 0).unwrap()
        );
    }

    #[test]
    fn signatures_are_deterministic() {
        for kind in KINDS {
            let key = decode(&testkeys::add_body(kind)).unwrap();
            for flags in [0, 2, 4] {
                let a = key.sign(b"same data", flags).unwrap();
                let b = key.sign(b"same data", flags).unwrap();
                assert_eq!(a, b, "{kind} {flags}");
                assert_ne!(a, key.sign(b"other data", flags).unwrap());
            }
        }
    }

    /// RSA signatures are blinded, yet byte-identical to `rsa`'s unblinded PKCS#1 v1.5
    /// ones: across blinding refreshes, with p and q in either order, and for primes of
    /// different sizes (a 2049-bit key: 1025 and 1024 bits; `ssh-keygen -b 2049` makes a
    /// 2048-bit key with OpenSSL 3).
    #[test]
    fn rsa_signatures_equal_unblinded_pkcs1() {
        use ssh_key::private::KeypairData;
        let mut bodies = vec![testkeys::add_body("rsa2048")];
        let mut swapped = fields(&bodies[0]); // [name, n, e, d, iqmp, p, q]
        swapped.swap(5, 6);
        bodies.push(join(&swapped));
        bodies.push(verified::tests::unequal_primes());
        for body in &bodies {
            // The portable path: graviola (verified.rs) does not blind.
            let key = PrivateKey::decode_with(&mut Reader::new(body), false).unwrap();
            let kp = KeypairData::decode(&mut &body[..]).unwrap();
            let reference = ::rsa::RsaPrivateKey::try_from(kp.rsa().unwrap()).unwrap();
            let Backend::Rsa(rsa_key, _) = &*key.backend else {
                panic!("not an RSA backend");
            };
            for i in 0..2 * RSA_BLINDING_USES + 2 {
                let data = i.to_be_bytes();
                let want = [
                    (
                        0,
                        reference
                            .sign(Pkcs1v15Sign::new::<sha1::Sha1>(), &sha1::Sha1::digest(data)),
                    ),
                    (
                        2,
                        reference.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(data)),
                    ),
                    (
                        4,
                        reference.sign(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(data)),
                    ),
                ];
                for (flags, want) in want {
                    let sig = key.sign(&data, flags).unwrap();
                    assert_eq!(
                        fields(&sig)[1],
                        want.unwrap(),
                        "signature {i}, flags {flags}"
                    );
                    // One pair per RSA_BLINDING_USES signatures, then a fresh one.
                    let blinding = rsa_key.blinding.take().unwrap();
                    assert_eq!(blinding.uses, (3 * i + flags / 2) % RSA_BLINDING_USES + 1);
                    rsa_key.blinding.set(Some(blinding));
                }
            }
        }
    }

    /// A signature that fails its check (here: a corrupted blinding pair, as a fault would
    /// leave it) is refused, and the pair is not kept: the next signature draws a fresh one
    /// and is right.
    #[test]
    fn rsa_fault_drops_the_blinding_pair() {
        // The portable path: graviola's keys have no blinding pair.
        let body = testkeys::add_body("rsa2048");
        let key = PrivateKey::decode_with(&mut Reader::new(&body), false).unwrap();
        let Backend::Rsa(rsa_key, None) = &*key.backend else {
            panic!("not an RSA backend");
        };
        let data = b"signed after a fault";
        let good = key.sign(data, 4).unwrap();
        assert!(verify(key.public_blob(), data, &good));
        let mut bad = Blinding::new(&rsa_key.key).unwrap();
        bad.ai = bad.ai.square(); // no longer the inverse of the factor in `a`
        rsa_key.blinding.set(Some(bad));
        assert_eq!(key.sign(data, 4), Err(Refused("signing failed")));
        assert!(rsa_key.blinding.take().is_none(), "a faulty pair was kept");
        assert_eq!(key.sign(data, 4).unwrap(), good);
        let fresh = rsa_key.blinding.take().unwrap();
        assert_eq!(fresh.uses, 1);
    }

    #[test]
    fn mismatched_private_halves_are_refused() {
        let flip_last = |body: &[u8], field: usize| {
            let mut f = fields(body);
            let last = f[field].last_mut().unwrap();
            *last ^= 1;
            join(&f)
        };
        // Ed25519: [name, pk, seed ‖ pk]
        let ed = testkeys::add_body("ed25519");
        assert_eq!(decode(&flip_last(&ed, 1)).unwrap_err(), MISMATCH);
        assert_eq!(decode(&flip_last(&ed, 2)).unwrap_err(), MISMATCH);
        let mut f = fields(&ed);
        f[2][0] ^= 1; // the seed
        assert_eq!(decode(&join(&f)).unwrap_err(), MISMATCH);
        // ECDSA: [name, curve, Q, d]
        for kind in ["ecdsa256", "ecdsa384", "ecdsa521"] {
            let body = testkeys::add_body(kind);
            assert_eq!(
                decode(&flip_last(&body, 3)).unwrap_err(),
                MISMATCH,
                "{kind}"
            );
            // A public point that is not on the curve or not the key's.
            assert!(decode(&flip_last(&body, 2)).is_err(), "{kind}");
            let mut f = fields(&body);
            f[1] = b"nistp999".to_vec();
            assert!(decode(&join(&f)).is_err(), "{kind}");
        }
        // RSA: [name, n, e, d, iqmp, p, q]
        let rsa = testkeys::add_body("rsa2048");
        for field in [1, 2, 3, 5, 6] {
            assert!(decode(&flip_last(&rsa, field)).is_err(), "field {field}");
        }
        assert_eq!(decode(&flip_last(&rsa, 5)).unwrap_err(), MISMATCH);
        assert_eq!(decode(&flip_last(&rsa, 3)).unwrap_err(), MISMATCH);
        // p and q swapped is the same key; iqmp is not used.
        let mut f = fields(&rsa);
        f.swap(5, 6);
        assert!(decode(&join(&f)).is_ok());
        // Keys of one type under another's name.
        let mut f = fields(&testkeys::add_body("ecdsa256"));
        f[0] = b"ecdsa-sha2-nistp384".to_vec();
        assert!(decode(&join(&f)).is_err());
    }

    #[test]
    fn rsa_size_limits() {
        // A valid 512-bit key, made with `openssl genrsa 512`.
        let n = hex(
            "00925bda6651e578cb05eeb974211826bcc52d6f34d6f83548929d2a7368981a309fccc92b291b5a09bae1f8b10177459c6a37a4466ee588c40d6135cedab42b9d",
        );
        let d = hex(
            "4941a6805e6f90557663b5f9b572e438ca2ce2a3bd11c181d0b8cffdb215a7cd7af8db4c19f818ccfcaf4e6545b7a332c75434cdcb9287a738345d465de98795",
        );
        let p = hex("00c1d14abf657f6d742001490f151d6231124a2345668689070acc7398a6d9db07");
        let q = hex("00c150a89850e4e5177c646f725124822f1958a57110fbfe5be36c1c5e1692873b");
        let iqmp = hex("00b865c9d0c7b649f6409b71dd1c50ae224d1f35f3f6a25198ecfb2cb8de2e1305");
        let e = vec![1, 0, 1];
        let body = join(&[b"ssh-rsa".to_vec(), n, e.clone(), d, iqmp, p, q]);
        assert_eq!(decode(&body).unwrap_err().reason(), "rsa key too small");
        // Over 8192 bits: refused before any arithmetic.
        let mut big = vec![0x7f; 1026];
        big[1025] |= 1;
        let body = join(&[
            b"ssh-rsa".to_vec(),
            big.clone(),
            e,
            big.clone(),
            big.clone(),
            big.clone(),
            big,
        ]);
        assert_eq!(decode(&body).unwrap_err().reason(), "rsa key too large");
    }

    #[test]
    fn truncated_bodies_are_refused() {
        for kind in KINDS {
            let body = testkeys::add_body(kind);
            assert_truncations_fail(&body);
        }
    }

    fn assert_truncations_fail(body: &[u8]) {
        for i in 0..body.len() {
            assert!(decode(&body[..i]).is_err(), "truncated at {i}");
        }
        // A string length that runs past the end anywhere.
        let mut f = body.to_vec();
        f.truncate(4);
        f[0] = 0xff;
        assert!(decode(&f).is_err());
    }

    #[test]
    fn unsupported_types_are_refused() {
        let ed = fields(&testkeys::add_body("ed25519"));
        for name in [
            "ssh-dss",
            "ssh-dss-cert-v01@openssh.com",
            "sk-ssh-ed25519@openssh.com",
            "sk-ecdsa-sha2-nistp256@openssh.com",
            "sk-ssh-ed25519-cert-v01@openssh.com",
            "rsa-sha2-256",
            "rsa-sha2-256-cert-v01@openssh.com",
            "ED25519",
            "ssh-ed448",
            "",
            "x",
        ] {
            let mut f = ed.clone();
            f[0] = name.as_bytes().to_vec();
            assert_eq!(decode(&join(&f)).unwrap_err(), UNSUPPORTED, "{name}");
        }
        // A DSA key's real layout: p q g y x.
        let dsa = join(&[
            b"ssh-dss".to_vec(),
            vec![1; 128],
            vec![1; 20],
            vec![1; 128],
            vec![1; 128],
            vec![1; 20],
        ]);
        assert_eq!(decode(&dsa).unwrap_err(), UNSUPPORTED);
    }

    #[test]
    fn negative_and_malformed_integers_are_refused() {
        let rsa = fields(&testkeys::add_body("rsa2048"));
        let mut f = rsa.clone();
        f[2] = vec![0x81, 0, 1]; // negative e
        assert!(decode(&join(&f)).is_err());
        // Leading zeros are tolerated, as OpenSSH does, and the blob is canonical.
        let mut f = rsa.clone();
        f[2] = vec![0, 0, 1, 0, 1];
        f[5].insert(0, 0);
        let key = decode(&join(&f)).unwrap();
        assert_eq!(
            key.public_blob(),
            decode(&join(&rsa)).unwrap().public_blob()
        );
        // An ECDSA scalar longer than the field.
        let mut f = fields(&testkeys::add_body("ecdsa256"));
        f[3] = vec![1; 33];
        assert!(decode(&join(&f)).is_err());
        // Zero and tiny scalars (OpenSSH: "private key too small").
        f[3] = vec![];
        assert!(decode(&join(&f)).is_err());
        f[3] = vec![1; 16];
        assert!(decode(&join(&f)).is_err());
        // Wrong Ed25519 lengths.
        let mut f = fields(&testkeys::add_body("ed25519"));
        f[2].pop();
        assert!(decode(&join(&f)).is_err());
    }

    #[test]
    fn fingerprint_hash_names() {
        for (name, h) in [
            ("md5", FingerprintHash::Md5),
            ("MD5", FingerprintHash::Md5),
            ("sha1", FingerprintHash::Sha1),
            ("Sha256", FingerprintHash::Sha256),
            ("SHA384", FingerprintHash::Sha384),
            ("sha512", FingerprintHash::Sha512),
        ] {
            assert_eq!(FingerprintHash::from_name(name), Some(h));
        }
        for bad in ["", "sha", "sha-256", "sha224", "md4", " sha256"] {
            assert_eq!(FingerprintHash::from_name(bad), None, "{bad}");
        }
        assert_eq!(FingerprintHash::default(), FingerprintHash::Sha256);
    }

    #[test]
    fn key_types_compare_as_openssh_does() {
        for (alg, key) in [
            ("ssh-rsa", "ssh-rsa"),
            ("rsa-sha2-256", "ssh-rsa"),
            (
                "rsa-sha2-512-cert-v01@openssh.com",
                "ssh-rsa-cert-v01@openssh.com",
            ),
            ("ecdsa-sha2-nistp384", "ecdsa-sha2-nistp256"),
            ("ssh-ed25519", "ssh-ed25519"),
            ("ssh-dss", "ssh-dss"),
        ] {
            assert!(same_type(alg.as_bytes(), key.as_bytes()), "{alg} {key}");
        }
        for (alg, key) in [
            ("rsa-sha2-256", "ssh-rsa-cert-v01@openssh.com"),
            ("ssh-ed25519", "ssh-rsa"),
            (
                "ecdsa-sha2-nistp256-cert-v01@openssh.com",
                "ecdsa-sha2-nistp256",
            ),
            ("ssh-dss", "ssh-rsa"),
            ("ecdsa", "ecdsa-sha2-nistp256"),
        ] {
            assert!(!same_type(alg.as_bytes(), key.as_bytes()), "{alg} {key}");
        }
        let blob = |name: &str| {
            let mut b = Vec::new();
            put_string(&mut b, name.as_bytes());
            b
        };
        assert!(is_rsa(&blob("ssh-rsa")) && is_rsa(&blob("ssh-rsa-cert-v01@openssh.com")));
        assert!(!is_rsa(&blob("rsa-sha2-256")) && !is_rsa(&blob("ssh-ed25519")) && !is_rsa(b""));
    }

    #[test]
    fn md5_rfc1321_test_suite() {
        for (input, want) in [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ] {
            assert_eq!(md5(input.as_bytes()).to_vec(), hex(want), "{input:?}");
        }
        // Lengths around the padding boundary.
        let fifty_five = md5(&[b'a'; 55]);
        let fifty_six = md5(&[b'a'; 56]);
        assert_eq!(fifty_five.to_vec(), hex("ef1772b6dff9a122358552954ad0df65"));
        assert_eq!(fifty_six.to_vec(), hex("3b0c8ac703f828b04c6c197006d17218"));
    }

    #[test]
    fn debug_is_redacted() {
        for kind in KINDS {
            let key = decode(&testkeys::add_body(kind)).unwrap();
            assert_eq!(format!("{key:?}"), "PrivateKey([redacted])");
        }
    }

    #[test]
    fn verify_never_panics_on_garbage() {
        let body = testkeys::add_body("ecdsa256");
        let key = decode(&body).unwrap();
        let blob = key.public_blob().to_vec();
        let sig = key.sign(b"x", 0).unwrap();
        assert!(verify(&blob, b"x", &sig));
        for i in 0..blob.len() {
            assert!(!verify(&blob[..i], b"x", &sig));
            let mut b = blob.clone();
            b[i] ^= 0x40;
            let _ = verify(&b, b"x", &sig);
        }
        for i in 0..sig.len() {
            assert!(!verify(&blob, b"x", &sig[..i]));
            let mut s = sig.clone();
            s[i] ^= 0x40;
            assert!(!verify(&blob, b"x", &s));
        }
        let mut trailing = sig.clone();
        trailing.push(0);
        assert!(!verify(&blob, b"x", &trailing));
        let mut trailing = blob.clone();
        trailing.push(0);
        assert!(!verify(&trailing, b"x", &sig));
        for n in [0, 1, 4, 11, 64, 300, 2000] {
            let g = random_bytes(n);
            assert!(!verify(&g, b"x", &sig));
            assert!(!verify(&blob, b"x", &g));
            assert!(!verify(&g, b"x", &g));
        }
        // Well-formed names with garbage after them.
        for name in [
            "ssh-ed25519",
            "ssh-rsa",
            "ecdsa-sha2-nistp521",
            "ssh-rsa-cert-v01@openssh.com",
            "sk-ssh-ed25519@openssh.com",
            "ssh-dss",
        ] {
            let mut g = Vec::new();
            put_string(&mut g, name.as_bytes());
            g.extend_from_slice(&random_bytes(100));
            assert!(!verify(&g, b"x", &sig));
            let mut s = Vec::new();
            put_string(&mut s, name.as_bytes());
            put_string(&mut s, &random_bytes(64));
            assert!(!verify(&blob, b"x", &s));
        }
        // A key/signature type mismatch.
        let ed = decode(&testkeys::add_body("ed25519")).unwrap();
        assert!(!verify(&blob, b"x", &ed.sign(b"x", 0).unwrap()));
        assert!(!verify(ed.public_blob(), b"x", &sig));
    }
}
