//! Raw agent protocol frames (RFC 9987) against a running agent: framing limits, pipelining,
//! malformed bodies, unknown messages, signature flags. After every hostile case the agent must
//! still list exactly the keys it had.
//!
//! Every test here passes against OpenSSH's agent too
//! (`AGENT_UNDER_TEST=/usr/bin/ssh-agent cargo test --test protocol`), except those that call
//! `sshkeep_only()`.

mod common;

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

/// An agent holding an Ed25519 and an RSA-2048 key (added with `ssh-add`).
struct Fixture {
    agent: Agent,
    ed25519: PathBuf,
    rsa: PathBuf,
    /// `ssh-add -l` output with both keys.
    listing: String,
}

fn fixture() -> Fixture {
    let agent = Agent::start(&[]);
    let ed25519 = keygen(agent.dir(), "ed25519");
    let rsa = keygen(agent.dir(), "rsa-2048");
    expect_ok(&ssh_add(
        &agent,
        &[ed25519.to_str().unwrap(), rsa.to_str().unwrap()],
    ));
    let listing = stdout(expect_ok(&ssh_add(&agent, &["-l"])));
    assert_eq!(listing.lines().count(), 2);
    Fixture {
        agent,
        ed25519,
        rsa,
        listing,
    }
}

impl Fixture {
    fn client(&self) -> RawClient {
        RawClient::connect(self.agent.sock())
    }

    /// The agent still runs and lists exactly the keys it had.
    #[track_caller]
    fn assert_intact(&self) {
        let out = ssh_add(&self.agent, &["-l"]);
        assert_eq!(stdout(&out), self.listing, "stderr: {}", stderr(&out));
    }

    fn blob(&self, key: &std::path::Path) -> Vec<u8> {
        pub_blob(&pub_path(key))
    }
}

/// A connection that got a reply to a bad request still works: REQUEST_IDENTITIES lists both keys.
#[track_caller]
fn assert_usable(c: &mut RawClient) {
    let reply = c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
    assert_eq!(parse_identities(&reply).len(), 2);
}

/// The agent closed the connection without replying.
#[track_caller]
fn assert_closed_silently(c: &mut RawClient) {
    assert!(c.is_closed(), "connection still open");
    assert_eq!(c.recv_frame(), None, "got a reply before the close");
}

fn sign_body(blob: &[u8], data: &[u8], flags: u32) -> Vec<u8> {
    let mut body = string(blob);
    body.extend(string(data));
    body.extend(u32(flags));
    body
}

#[test]
fn identities_match_ssh_add() {
    let f = fixture();
    let mut c = f.client();
    let ids = parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
    let expected: Vec<(Vec<u8>, String)> = [&f.ed25519, &f.rsa]
        .iter()
        .map(|k| {
            let line = pub_line(&pub_path(k));
            (f.blob(k), line.split(' ').nth(2).unwrap().to_string())
        })
        .collect();
    assert_eq!(ids, expected);
}

/// Several requests in one write are all answered, in order.
#[test]
fn pipelined_requests_answered_in_order() {
    let f = fixture();
    let mut c = f.client();
    let mut batch = Vec::new();
    for _ in 0..3 {
        batch.extend(frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
    }
    batch.extend(frame(200, &[]));
    c.send_raw(&batch);
    for _ in 0..3 {
        let reply = c.recv_frame().expect("missing reply");
        assert_eq!(parse_identities(&reply).len(), 2);
    }
    assert_eq!(c.recv_frame().expect("missing reply"), [SSH_AGENT_FAILURE]);
    assert_usable(&mut c);
    f.assert_intact();
}

/// A frame may arrive a byte at a time; the header alone makes the agent wait, not fail.
#[test]
fn split_frames_are_reassembled() {
    let f = fixture();
    let mut c = f.client();
    for b in frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]) {
        c.send_raw(&[b]);
    }
    let reply = c.recv_frame().expect("no reply");
    assert_eq!(parse_identities(&reply).len(), 2);

    // Only the length: the agent keeps waiting, and serves others meanwhile.
    c.send_raw(&u32(1));
    let mut other = f.client();
    assert_usable(&mut other);
    c.set_timeout(Duration::from_millis(300));
    assert!(!c.is_closed());
    c.set_timeout(Duration::from_secs(5));
    c.send_raw(&[SSH_AGENTC_REQUEST_IDENTITIES]);
    let reply = c.recv_frame().expect("no reply");
    assert_eq!(parse_identities(&reply).len(), 2);
    f.assert_intact();
}

/// A frame of length 0 closes the connection (nothing after it is answered).
#[test]
fn zero_length_frame_closes() {
    let f = fixture();
    let mut c = f.client();
    let mut bytes = u32(0);
    bytes.extend(frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
    c.send_raw(&bytes);
    assert_closed_silently(&mut c);
    f.assert_intact();
}

/// Frames longer than 256 KiB close the connection.
#[test]
fn oversized_frames_close() {
    let f = fixture();
    for len in [MAX_MESSAGE_LEN as u32 + 1, 1 << 31, u32::MAX] {
        let mut c = f.client();
        let mut bytes = u32(len);
        bytes.push(SSH_AGENTC_REQUEST_IDENTITIES);
        c.send_raw(&bytes);
        assert_closed_silently(&mut c);
        f.assert_intact();
    }
}

/// A frame of exactly 256 KiB is read whole; an unknown type gets FAILURE and the connection lives.
#[test]
fn largest_frame_is_accepted() {
    let f = fixture();
    let mut c = f.client();
    let garbage: Vec<u8> = (0..MAX_MESSAGE_LEN - 1)
        .map(|i| (i * 7 + 3) as u8)
        .collect();
    let bytes = frame(200, &garbage);
    assert_eq!(bytes.len(), 4 + MAX_MESSAGE_LEN);
    c.send_raw(&bytes);
    assert_eq!(c.recv_frame().expect("no reply"), [SSH_AGENT_FAILURE]);
    assert_usable(&mut c);
    f.assert_intact();
}

/// Unknown and reserved (SSH-1) message types get FAILURE; the connection stays usable.
#[test]
fn unknown_types_fail() {
    let f = fixture();
    let mut c = f.client();
    for kind in [
        0, 1, 2, 3, 4, 7, 8, 10, 15, 16, 24, 28, 29, 100, 200, 240, 255,
    ] {
        assert_eq!(c.request(kind, &[]), [SSH_AGENT_FAILURE], "type {kind}");
        assert_eq!(
            c.request(kind, b"some body"),
            [SSH_AGENT_FAILURE],
            "type {kind}"
        );
    }
    assert_usable(&mut c);
    f.assert_intact();
}

/// A sign request for a key the agent does not hold gets FAILURE.
#[test]
fn sign_unknown_key_fails() {
    let f = fixture();
    let other = keygen(f.agent.dir(), "ed25519");
    let mut c = f.client();
    let reply = c.request(
        SSH_AGENTC_SIGN_REQUEST,
        &sign_body(&f.blob(&other), b"data", 0),
    );
    assert_eq!(reply, [SSH_AGENT_FAILURE]);
    // A blob that is no key at all.
    let reply = c.request(SSH_AGENTC_SIGN_REQUEST, &sign_body(b"garbage", b"data", 0));
    assert_eq!(reply, [SSH_AGENT_FAILURE]);
    assert_usable(&mut c);
    f.assert_intact();
}

/// Bodies that end early get FAILURE and the connection stays usable.
#[test]
fn truncated_bodies_fail() {
    let f = fixture();
    let blob = f.blob(&f.ed25519);
    let full_sign = sign_body(&blob, b"data to sign", 0);
    let mut cases: Vec<(u8, Vec<u8>)> = vec![
        (SSH_AGENTC_SIGN_REQUEST, vec![]),
        (SSH_AGENTC_SIGN_REQUEST, vec![0, 0]),
        // A string length past the end of the frame.
        (SSH_AGENTC_SIGN_REQUEST, [u32(100), vec![1, 2, 3]].concat()),
        (SSH_AGENTC_ADD_IDENTITY, vec![]),
        (SSH_AGENTC_ADD_IDENTITY, string(b"ssh-ed25519")),
        (
            SSH_AGENTC_ADD_IDENTITY,
            [string(b"ssh-ed25519"), u32(32), vec![1, 2, 3]].concat(),
        ),
        (SSH_AGENTC_ADD_ID_CONSTRAINED, string(b"ssh-ed25519")),
        (SSH_AGENTC_REMOVE_IDENTITY, vec![]),
        (
            SSH_AGENTC_REMOVE_IDENTITY,
            [u32(50), b"abc".to_vec()].concat(),
        ),
        (SSH_AGENTC_EXTENSION, vec![]),
        (SSH_AGENTC_EXTENSION, [u32(100), b"query".to_vec()].concat()),
    ];
    // A sign request cut anywhere inside (its flags missing, its data cut short, ...).
    for cut in [full_sign.len() - 4, full_sign.len() - 6, blob.len() + 4, 10] {
        cases.push((SSH_AGENTC_SIGN_REQUEST, full_sign[..cut].to_vec()));
    }
    let mut c = f.client();
    for (kind, body) in &cases {
        assert_eq!(
            c.request(*kind, body),
            [SSH_AGENT_FAILURE],
            "type {kind} body {body:?}"
        );
        assert_usable(&mut c);
    }
    f.assert_intact();
}

/// REMOVE_IDENTITY of a key the agent does not hold fails; of one it holds, succeeds.
#[test]
fn remove_identity() {
    let f = fixture();
    let other = keygen(f.agent.dir(), "ed25519");
    let mut c = f.client();
    assert_eq!(
        c.request(SSH_AGENTC_REMOVE_IDENTITY, &string(&f.blob(&other))),
        [SSH_AGENT_FAILURE]
    );
    f.assert_intact();
    assert_eq!(
        c.request(SSH_AGENTC_REMOVE_IDENTITY, &string(&f.blob(&f.ed25519))),
        [SSH_AGENT_SUCCESS]
    );
    let ids = parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].0, f.blob(&f.rsa));
}

/// REMOVE_ALL_IDENTITIES (19) and the legacy SSH-1 number 9 both remove every key.
#[test]
fn remove_all_and_legacy_remove_all() {
    for kind in [
        SSH_AGENTC_REMOVE_ALL_IDENTITIES,
        SSH_AGENTC_REMOVE_ALL_RSA_IDENTITIES,
    ] {
        let f = fixture();
        let mut c = f.client();
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
    let f = fixture();
    let blob = f.blob(&f.rsa);
    let mut c = f.client();
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
    f.assert_intact();
}

/// Ed25519 signs with `ssh-ed25519`, whatever the RSA flags say; signatures are deterministic.
#[test]
fn ed25519_sign() {
    let f = fixture();
    let blob = f.blob(&f.ed25519);
    let mut c = f.client();
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
    let f = fixture();
    let mut c = f.client();
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
    f.assert_intact();
}

/// Extensions the agent does not know get an empty FAILURE.
#[test]
fn unknown_extension_fails() {
    let f = fixture();
    let mut c = f.client();
    for name in [
        &b"unknown@example.com"[..],
        b"",
        b"QUERY",
        b"query@openssh.com",
    ] {
        let mut body = string(name);
        body.extend(string(b"payload"));
        assert_eq!(
            c.request(SSH_AGENTC_EXTENSION, &body),
            [SSH_AGENT_FAILURE],
            "{name:?}"
        );
    }
    assert_usable(&mut c);
    f.assert_intact();
}

/// A client that pipelines thousands of requests and never reads the replies does not stop the
/// agent from serving others. (OpenSSH 9.2 copes with a few thousand; with 10000 other clients wait
/// seconds, its output buffer growing by reallocation; see the sshkeep-only test below.)
#[test]
fn flooding_client_does_not_block_others() {
    let f = fixture();
    let mut flooder = f.client();
    flooder.send_raw(&frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]).repeat(2000));
    for _ in 0..5 {
        let mut other = f.client();
        assert_usable(&mut other);
    }
    f.assert_intact();
    drop(flooder);
    f.assert_intact();
}

/// Sets the flag when dropped (also while unwinding from a failed assertion).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The agent's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A client pipelining 200000 requests (80 MB of replies) without reading: other clients are
/// served at once, and the agent stops reading from the flooder instead of buffering every reply.
#[test]
fn flooding_client_is_bounded() {
    if !sshkeep_only() {
        return;
    }
    let f = fixture();
    let flooder = f.client();
    flooder
        .stream()
        .set_write_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let flood: Vec<u8> = frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]).repeat(200_000);
    let stop = AtomicBool::new(false);
    let written = AtomicUsize::new(0);
    let blocked = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut off = 0;
            while off < flood.len() && !stop.load(Ordering::Relaxed) {
                // Small writes, so that each one ends within the write timeout.
                let end = flood.len().min(off + 4096);
                match flooder.stream().write(&flood[off..end]) {
                    Ok(n) => {
                        off += n;
                        written.store(off, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        blocked.store(true, Ordering::Relaxed);
                    }
                    Err(e) => panic!("flooding write failed: {e}"),
                }
            }
        });
        // Stops the flooder however this closure ends, so the scope can join it.
        let _stop = SetOnDrop(&stop);
        // Let the flood get going: the agent stops reading it, or it is all written.
        wait_until(Duration::from_secs(10), || {
            blocked.load(Ordering::Relaxed) || written.load(Ordering::Relaxed) == flood.len()
        });
        for _ in 0..5 {
            let mut other = f.client();
            other.set_timeout(Duration::from_secs(2));
            assert_usable(&mut other);
        }
        let rss = rss_kib(f.agent.pid());
        assert!(rss < 40 * 1024, "agent RSS {rss} KiB while flooded");
    });
    drop(flooder);
    f.assert_intact();
}

/// Many idle connections do not keep the agent from serving a new one.
#[test]
fn idle_connections_do_not_block() {
    let f = fixture();
    let idle: Vec<RawClient> = (0..200).map(|_| f.client()).collect();
    let mut c = f.client();
    assert_usable(&mut c);
    drop(idle);
    f.assert_intact();
}
