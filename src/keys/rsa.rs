//! RSA on the portable path: the private key built from an ADD request's components and
//! validated, and blinded PKCS#1 v1.5 signing with a blinding pair kept between signatures.
//! graviola signs RSA SHA-2 where the CPU has it (`verified.rs`); this signs the rest.

use std::cell::Cell;

use rsa::BoxedUint;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use ssh_key::encoding::bigint::modular::BoxedMontyForm;
use ssh_key::encoding::bigint::{ConcatenatingMul, RandomMod, Resize};
use zeroize::{Zeroize, Zeroizing};

use super::{INVALID, MISMATCH, RSA_MAX_BITS, RSA_MIN_BITS, bit_len};
use crate::wire::Refused;

/// How many signatures one RSA blinding pair serves, squared after each, before a fresh
/// one is drawn (OpenSSL: BN_BLINDING_COUNTER).
pub(super) const RSA_BLINDING_USES: u32 = 32;

/// An RSA key ready to sign: `rsa`'s validated key and CRT values, and the blinding pair
/// for the next signature.
///
/// Signing is `rsa`'s blinded RSASSA-PKCS1-v1_5 (`sign_with_rng`: CRT, then a check of the
/// result against the public key, since a fault in one CRT half would leak a prime), with
/// one change taken from OpenSSL's `BN_BLINDING`: `rsa` draws a fresh blinding factor `r`
/// for every signature and inverts it mod n, a sixth of an RSA-2048 signature's time (a
/// tenth at 4096); here a pair serves `RSA_BLINDING_USES` signatures and is squared after
/// each (`r` → `r²`), so no two signatures share a factor. The signatures are the same:
/// PKCS#1 v1.5 is deterministic. Temporaries are wiped by the allocator (`sys::WipingAlloc`).
///
/// This serves what graviola does not (`verified.rs`): every RSA signature on a CPU without
/// its features, SHA-1, and keys under 2048 bits. It stays, rather than `rsa`'s own
/// `sign_with_rng`, because that costs more: 24.0 M against 19.1 M instructions per RSA-2048
/// signature (+25%), 149 M against 133 M at 4096 (+12%), counted with callgrind.
pub(super) struct RsaKey {
    pub(super) key: rsa::RsaPrivateKey,
    /// Taken for a signature and put back after it; empty after a failure (a fresh pair
    /// is drawn next time). The agent is single-threaded: a `Cell` is enough.
    pub(super) blinding: Cell<Option<Blinding>>,
}

/// A blinding pair mod n, in Montgomery form: `a = r^e` and `ai = r^-1` for a secret
/// random `r`. Wiped on drop.
pub(super) struct Blinding {
    a: BoxedMontyForm,
    pub(super) ai: BoxedMontyForm,
    pub(super) uses: u32,
}

impl Drop for Blinding {
    fn drop(&mut self) {
        self.a.zeroize();
        self.ai.zeroize();
    }
}

impl Blinding {
    /// Draw a fresh pair: `r` uniform in [0, n) and invertible (as `rsa`'s `blind`).
    pub(super) fn new(key: &rsa::RsaPrivateKey) -> Option<Blinding> {
        let n = key.n_params();
        // Only 0 and multiples of p or q have no inverse: never drawn by chance, but
        // bounding the draws keeps a broken RNG from looping forever.
        for _ in 0..8 {
            let r = BoxedUint::try_random_mod_vartime(&mut getrandom::SysRng, key.n()).ok()?;
            let r = BoxedMontyForm::new(r, n);
            let Some(ai) = r.invert().into_option() else {
                continue;
            };
            let e = key.e();
            let a = r.pow_bounded_exp(e, e.bits());
            return Some(Blinding { a, ai, uses: 0 });
        }
        None
    }
}

impl RsaKey {
    /// `key` must have its CRT values (`rsa` computes them for every valid two-prime key).
    pub(super) fn new(key: rsa::RsaPrivateKey) -> Result<RsaKey, Refused> {
        if key.primes().len() != 2 || key.dp().is_none() {
            return Err(INVALID);
        }
        Ok(RsaKey {
            key,
            blinding: Cell::new(None),
        })
    }

    /// Sign `digest` (already hashed with `scheme`'s hash): EMSA-PKCS1-v1_5 (RFC 8017
    /// §9.2) as `rsa` pads it, then the blinded private operation. Returns the signature,
    /// as long as the modulus; `None` if the RNG fails or the result does not verify.
    pub(super) fn sign(&self, scheme: rsa::Pkcs1v15Sign, digest: &[u8]) -> Option<Vec<u8>> {
        let k = self.key.size();
        let n = self.key.n_params();
        // EM = 0x00 0x01 PS 0x00 T, T = DigestInfo prefix || digest, PS at least 8 0xff.
        let t_len = scheme.prefix.len().checked_add(digest.len())?;
        let ps_len = k.checked_sub(t_len.checked_add(3)?)?;
        if ps_len < 8 || scheme.hash_len.is_some_and(|l| l != digest.len()) {
            return None;
        }
        let mut em = Vec::with_capacity(k);
        em.extend_from_slice(&[0x00, 0x01]);
        em.resize(ps_len + 2, 0xff);
        em.push(0x00);
        em.extend_from_slice(&scheme.prefix);
        em.extend_from_slice(digest);
        let m = BoxedUint::from_be_slice(&em, n.bits_precision()).ok()?;

        let mut blinding = match self.blinding.take() {
            Some(b) if b.uses < RSA_BLINDING_USES => b,
            _ => Blinding::new(&self.key)?,
        };
        // s = ((m·r^e)^d)·r^-1 = m^d mod n
        let blinded = (BoxedMontyForm::new(m.clone(), n) * &blinding.a).retrieve();
        let s = BoxedMontyForm::new(self.private_op(&blinded)?, n) * &blinding.ai;
        let s = s.retrieve();

        // s^e must give m back (rsa: rsa_decrypt_and_check). After a fault the pair is
        // dropped (wiped), not kept: it may be what went wrong, and a fresh one is drawn.
        let e = self.key.e();
        let check = BoxedMontyForm::new(s.clone(), n).pow_bounded_exp(e, e.bits());
        if check.retrieve() != m {
            return None;
        }
        blinding.a = blinding.a.square();
        blinding.ai = blinding.ai.square();
        blinding.uses += 1;
        self.blinding.set(Some(blinding));
        let bytes = s.to_be_bytes();
        Some(bytes.get(bytes.len().checked_sub(k)?..)?.to_vec())
    }

    /// c^d mod n by the CRT (c < n, at n's precision), as `rsa`'s `rsa_decrypt`.
    fn private_op(&self, c: &BoxedUint) -> Option<BoxedUint> {
        let key = &self.key;
        let (Some(dp), Some(dq), Some(qinv), Some(p_params), Some(q_params), [_, q]) = (
            key.dp(),
            key.dq(),
            key.qinv(),
            key.p_params(),
            key.q_params(),
            key.primes(),
        ) else {
            return None;
        };
        let p_mod = p_params.modulus().as_nz_ref();
        let q_mod = q_params.modulus().as_nz_ref();
        // m1 = c^dp mod p, m2 = c^dq mod q
        let mut m1 = BoxedMontyForm::new(c.rem(p_mod), p_params).pow(dp);
        let m2 = BoxedMontyForm::new(c.rem(q_mod), q_params)
            .pow(dq)
            .retrieve();
        // h = qinv·(m1 - m2) mod p; m = m2 + h·q
        m1 -= &BoxedMontyForm::new(m2.rem(p_mod), p_params);
        let h = (qinv * &m1).retrieve();
        let bits = key.n_bits_precision();
        let hq = h.concatenating_mul(q).try_resize(bits)?;
        Some(m2.try_resize(bits)?.wrapping_add(&hq))
    }
}

/// Build the RSA key from its components (magnitudes) and validate it: the size is
/// checked first, then `p·q = n`, then `rsa`'s own checks (`d·e ≡ 1 mod p-1, q-1`).
pub(super) fn rsa_key(
    n: &[u8],
    e: &[u8],
    d: &[u8],
    p: &[u8],
    q: &[u8],
) -> Result<rsa::RsaPrivateKey, Refused> {
    let bits = bit_len(n);
    if bits < RSA_MIN_BITS {
        return Err(Refused("rsa key too small"));
    }
    if bits > RSA_MAX_BITS {
        return Err(Refused("rsa key too large"));
    }
    // Every other component is smaller than n; bounding them bounds the work below.
    if [e, d, p, q].iter().any(|x| x.len() > n.len()) {
        return Err(INVALID);
    }
    let precision = n
        .len()
        .checked_mul(8)
        .and_then(|b| u32::try_from(b).ok())
        .ok_or(INVALID)?;
    let n = BoxedUint::from_be_slice_vartime(n);
    let e = BoxedUint::from_be_slice_vartime(e);
    // d gets n's precision, as the private operation resizes the input to d's.
    let d = Zeroizing::new(BoxedUint::from_be_slice(d, precision).map_err(|_| INVALID)?);
    let p = Zeroizing::new(BoxedUint::from_be_slice_vartime(p));
    let q = Zeroizing::new(BoxedUint::from_be_slice_vartime(q));
    // Checked here because `rsa` drops the components unwiped when its constructor fails
    // this check; after it, a failed validation drops a whole `RsaPrivateKey`, which wipes.
    let product = Zeroizing::new(p.concatenating_mul(&*q));
    if *product != n {
        return Err(MISMATCH);
    }
    // n = p² passes the product check, and `rsa` accepts it: a square modulus is not an RSA
    // key (anyone can take its square root).
    if *p == *q {
        return Err(Refused("rsa primes are equal"));
    }
    rsa::RsaPrivateKey::from_components(n, e, (*d).clone(), vec![(*p).clone(), (*q).clone()])
        .map_err(|_| MISMATCH)
}
