//! Keys: the only module that names `ssh-key` and crypto types. Decodes and validates
//! private keys from ADD requests, converts each once into a ready-to-sign form, signs
//! with the requested flags, computes fingerprints and verifies signatures.

use std::fmt;

use crate::protocol::Reader;

/// Why a key was refused. Never carries key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyError(&'static str);

impl KeyError {
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

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
    /// OpenSSH's `ssh_digest_alg_by_name`: case-insensitive names.
    pub fn from_name(name: &str) -> Option<FingerprintHash> {
        let _ = name;
        todo!()
    }
}

/// A private key, validated and converted once into a ready-to-sign form.
/// Wiped on drop; its `Debug` prints no secret.
pub struct PrivateKey {}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

impl PrivateKey {
    /// Decode the key part of an ADD request body: the key type name and the private
    /// fields (`sshkey_private_serialize` layout, certificates included), leaving the
    /// reader just after them (at the comment).
    pub fn decode(r: &mut Reader<'_>) -> Result<PrivateKey, KeyError> {
        let _ = r;
        todo!()
    }

    /// The public key blob as listed by REQUEST_IDENTITIES (the certificate blob for certificates).
    pub fn public_blob(&self) -> &[u8] {
        todo!()
    }

    /// Sign `data`. `flags` selects the RSA hash (2: rsa-sha2-256, 4: rsa-sha2-512, else SHA-1);
    /// other bits are ignored, as OpenSSH ignores them. Returns the signature blob
    /// (`string algorithm, string signature`).
    pub fn sign(&self, data: &[u8], flags: u32) -> Result<Vec<u8>, KeyError> {
        let _ = (data, flags);
        todo!()
    }

    /// The fingerprint as `ssh-add -l` / `ssh-keygen -l` print it (of the plain key for a certificate).
    pub fn fingerprint(&self, hash: FingerprintHash) -> String {
        let _ = hash;
        todo!()
    }
}

/// OpenSSH's lock hash: `bcrypt_pbkdf(passphrase, salt, 32 bytes, 1 round)`.
pub fn bcrypt_pbkdf(passphrase: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), KeyError> {
    let kdf = ssh_key::Kdf::Bcrypt {
        salt: salt.to_vec(),
        rounds: 1, // OpenSSH: LOCK_ROUNDS
    };
    kdf.derive(passphrase, out)
        .map_err(|_| KeyError("bcrypt-pbkdf failed"))
}
