//! OpenSSH certificates (PROTOCOL.certkeys): the walk of a certificate in an ADD request, whose
//! CA signature must verify, and the host certificates of session binds, parsed and checked
//! once, when they are bound. `ssh-key` parses them; every parse goes through
//! `parse_certificate`, which unit tests count.

use ssh_key::encoding::Encode;

use super::{BAD_CERT, Kind, Public, verify_by};
use crate::wire::{Reader, Refused};

/// Whether `blob` is an OpenSSH certificate.
pub fn is_certificate(blob: &[u8]) -> bool {
    Reader::new(blob)
        .string()
        .is_ok_and(|name| name.ends_with(b"-cert-v01@openssh.com"))
}

/// The plain key of a public key blob: a certificate's key, else the blob itself (what
/// fingerprints hash and `known_hosts` lists). A certificate that does not parse is kept whole.
pub fn plain_public_key(blob: &[u8]) -> Vec<u8> {
    if is_certificate(blob)
        && let Ok(key) = ssh_key::Certificate::from_bytes(blob)
            .map_err(drop)
            .and_then(|c| c.public_key().encode_vec().map_err(drop))
    {
        return key;
    }
    blob.to_vec()
}

/// What a session binding keeps of a host certificate, checked once when it is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCert {
    /// The CA key blob that signed it.
    pub ca: Vec<u8>,
    /// Its principals, each a wildcard pattern for host names (OpenSSH 10.3).
    pub principals: Vec<String>,
    /// Valid from `valid_after` (inclusive) to `valid_before` (exclusive), seconds since
    /// the epoch.
    pub valid_after: u64,
    pub valid_before: u64,
}

/// OpenSSH's checks of a host certificate that do not depend on the time or the host name
/// (`sshkey_cert_check_host` with `SSH_ALLOWED_CA_SIGALGS`): it parses, its CA signature
/// verifies, it is a host certificate, it has no critical options and is not signed with
/// SHA-1 `ssh-rsa`. Returns what the validity and name checks need later, so a binding
/// parses and verifies its certificate once; `None` if it can never match a destination.
pub fn host_cert(cert: &[u8]) -> Option<HostCert> {
    let c = parse_certificate(cert).ok()?;
    if c.verify_signature().is_err() || !c.cert_type().is_host() {
        return None;
    }
    if !c.critical_options().is_empty()
        || c.signature().algorithm() == (ssh_key::Algorithm::Rsa { hash: None })
    {
        return None;
    }
    Some(HostCert {
        ca: c.signature_key().encode_vec().ok()?,
        principals: c.valid_principals().to_vec(),
        valid_after: c.valid_after(),
        valid_before: c.valid_before(),
    })
}

/// Every certificate parse goes through here (each is followed by a signature check).
pub(super) fn parse_certificate(blob: &[u8]) -> Result<ssh_key::Certificate, ssh_key::Error> {
    #[cfg(test)]
    test_counters::CERT_PARSES.with(|c| c.set(c.get() + 1));
    ssh_key::Certificate::from_bytes(blob)
}

/// Walk a certificate blob as OpenSSH's `cert_parse` does: its type must be `kind`'s, it
/// must parse completely, and its CA signature must verify. Returns the certified key.
pub(super) fn check_cert(kind: Kind, blob: &[u8]) -> Result<Public<'_>, Refused> {
    let mut c = Reader::new(blob);
    if c.string()? != kind.cert_name().as_bytes() {
        return Err(BAD_CERT);
    }
    let _nonce = c.string()?;
    let public = Public::read_blob(kind, &mut c)?;
    let _serial = c.bytes(8)?;
    let _type = c.u32()?;
    let _key_id = c.string()?;
    let _principals = c.string()?;
    let _valid_after = c.bytes(8)?;
    let _valid_before = c.bytes(8)?;
    let _critical_options = c.string()?;
    let _extensions = c.string()?;
    let _reserved = c.string()?;
    let ca = c.string()?;
    let signed_len = blob.len().saturating_sub(c.rest().len());
    let signature = c.string()?;
    if !c.is_empty() {
        return Err(BAD_CERT);
    }
    // The fields skipped above must be well formed too (cert type, principals, options).
    parse_certificate(blob).map_err(|_| BAD_CERT)?;
    // OpenSSH refuses a certificate whose CA signature does not verify, and a CA key that
    // is itself a certificate.
    let signed = blob.get(..signed_len).ok_or(BAD_CERT)?;
    verify_by(ca, false, signed, signature)
        .map_err(|_| Refused("invalid certificate signature"))?;
    Ok(public)
}

/// How often this thread parsed a certificate: unit tests prove that matching a bound host
/// certificate does not.
#[cfg(test)]
pub(crate) mod test_counters {
    use std::cell::Cell;

    thread_local!(pub(in crate::keys) static CERT_PARSES: Cell<usize> = const { Cell::new(0) });

    pub(crate) fn cert_parses() -> usize {
        CERT_PARSES.with(Cell::get)
    }
}
