//! Well-formed agent protocol requests (RFC 9987) on raw frames against a running agent: the
//! identity list, signatures and their flags, removal, `query`. After each case the agent must
//! still list exactly the keys it had ([`LoadedAgent`]). What a hostile client sends (bad
//! lengths, split frames, bodies that end early, unknown types, floods, idle connections) is in
//! tests/hostile.rs.
//!
//! Every test here passes against OpenSSH's agent too
//! (`AGENT_UNDER_TEST=/usr/bin/ssh-agent cargo test --test protocol`), except those that call
//! `sshkeep_only()`.

mod common;

use common::*;

fn sign_body(blob: &[u8], data: &[u8], flags: u32) -> Vec<u8> {
    let mut body = string(blob);
    body.extend(string(data));
    body.extend(u32(flags));
    body
}

#[test]
fn identities_match_ssh_add() {
    let l = LoadedAgent::start();
    let mut c = l.client();
    let ids = parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
    let expected: Vec<(Vec<u8>, String)> = l
        .keys
        .iter()
        .map(|k| {
            let line = pub_line(&pub_path(k));
            (
                pub_blob(&pub_path(k)),
                line.split(' ').nth(2).unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(ids, expected);
}

/// A sign request for a key the agent does not hold gets FAILURE.
#[test]
fn sign_unknown_key_fails() {
    let mut l = LoadedAgent::start();
    let other = keygen(l.agent.dir(), "ed25519");
    let mut c = l.client();
    let reply = c.request(
        SSH_AGENTC_SIGN_REQUEST,
        &sign_body(&pub_blob(&pub_path(&other)), b"data", 0),
    );
    assert_eq!(reply, [SSH_AGENT_FAILURE]);
    // A blob that is no key at all.
    let reply = c.request(SSH_AGENTC_SIGN_REQUEST, &sign_body(b"garbage", b"data", 0));
    assert_eq!(reply, [SSH_AGENT_FAILURE]);
    l.assert_usable(&mut c);
    l.check("sign requests for unknown keys");
}

/// REMOVE_IDENTITY of a key the agent does not hold fails; of one it holds, succeeds.
#[test]
fn remove_identity() {
    let mut l = LoadedAgent::start();
    let other = keygen(l.agent.dir(), "ed25519");
    let mut c = l.client();
    assert_eq!(
        c.request(
            SSH_AGENTC_REMOVE_IDENTITY,
            &string(&pub_blob(&pub_path(&other)))
        ),
        [SSH_AGENT_FAILURE]
    );
    l.check("removing a key the agent does not hold");
    assert_eq!(
        c.request(SSH_AGENTC_REMOVE_IDENTITY, &string(&l.blob("ed25519"))),
        [SSH_AGENT_SUCCESS]
    );
    let ids = parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
    let left: Vec<Vec<u8>> = ids.into_iter().map(|(b, _)| b).collect();
    assert_eq!(left, l.blobs()[1..]);
}

/// REMOVE_ALL_IDENTITIES (19) and the legacy SSH-1 number 9 both remove every key.
#[test]
fn remove_all_and_legacy_remove_all() {
    for kind in [
        SSH_AGENTC_REMOVE_ALL_IDENTITIES,
        SSH_AGENTC_REMOVE_ALL_RSA_IDENTITIES,
    ] {
        let l = LoadedAgent::start();
        let mut c = l.client();
        assert_eq!(c.request(kind, &[]), [SSH_AGENT_SUCCESS], "type {kind}");
        let ids = parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
        assert!(ids.is_empty(), "type {kind} left keys");
        // On an empty agent too.
        assert_eq!(c.request(kind, &[]), [SSH_AGENT_SUCCESS], "type {kind}");
    }
}

/// The signature algorithm and the signature bytes of a SIGN_RESPONSE.
fn parse_signature(reply: &[u8]) -> (String, Vec<u8>) {
    let mut r = Reader(reply);
    assert_eq!(
        r.u8(),
        SSH_AGENT_SIGN_RESPONSE,
        "not a signature: {reply:?}"
    );
    let blob = r.string();
    assert!(r.is_empty());
    let mut s = Reader(blob);
    let alg = String::from_utf8(s.string().to_vec()).unwrap();
    let sig = s.string().to_vec();
    assert!(s.is_empty());
    (alg, sig)
}

/// RSA sign flags choose the hash: none → `ssh-rsa` (SHA-1), 2 → `rsa-sha2-256`, 4 → `rsa-sha2-512`.
#[test]
fn rsa_sign_flags_choose_algorithm() {
    let mut l = LoadedAgent::start();
    let blob = l.blob("rsa-2048");
    let mut c = l.client();
    for (flags, alg) in [
        (0, "ssh-rsa"),
        (SSH_AGENT_RSA_SHA2_256, "rsa-sha2-256"),
        (SSH_AGENT_RSA_SHA2_512, "rsa-sha2-512"),
    ] {
        let reply = c.request(SSH_AGENTC_SIGN_REQUEST, &sign_body(&blob, b"data", flags));
        let (got, sig) = parse_signature(&reply);
        assert_eq!(got, alg, "flags {flags}");
        assert_eq!(sig.len(), 256, "flags {flags}");
    }
    l.check("RSA signatures");
}

/// Ed25519 signs with `ssh-ed25519`, whatever the RSA flags say; signatures are deterministic.
#[test]
fn ed25519_sign() {
    let l = LoadedAgent::start();
    let blob = l.blob("ed25519");
    let mut c = l.client();
    let mut sigs = Vec::new();
    for flags in [0, SSH_AGENT_RSA_SHA2_256, SSH_AGENT_RSA_SHA2_512] {
        let reply = c.request(SSH_AGENTC_SIGN_REQUEST, &sign_body(&blob, b"data", flags));
        let (alg, sig) = parse_signature(&reply);
        assert_eq!(alg, "ssh-ed25519");
        assert_eq!(sig.len(), 64);
        sigs.push(sig);
    }
    assert!(sigs.windows(2).all(|w| w[0] == w[1]));
    // Empty data and large data (just under the frame limit) are signed too.
    for len in [0, 200 * 1024] {
        let data = vec![0x5a; len];
        let reply = c.request(SSH_AGENTC_SIGN_REQUEST, &sign_body(&blob, &data, 0));
        assert_eq!(parse_signature(&reply).0, "ssh-ed25519");
    }
}

/// The `query` extension lists the supported extensions (OpenSSH 10.3+; 9.2 answers FAILURE).
#[test]
fn query_extension() {
    if !sshkeep_only() {
        return;
    }
    let mut l = LoadedAgent::start();
    let mut c = l.client();
    let reply = c.request(SSH_AGENTC_EXTENSION, &string(b"query"));
    let mut r = Reader(&reply);
    assert_eq!(r.u8(), SSH_AGENT_EXTENSION_RESPONSE, "{reply:?}");
    assert_eq!(r.string(), b"query");
    let mut names = Vec::new();
    while !r.is_empty() {
        names.push(String::from_utf8(r.string().to_vec()).unwrap());
    }
    assert!(
        names.iter().any(|n| n == "session-bind@openssh.com"),
        "{names:?}"
    );
    l.check("query");
}
