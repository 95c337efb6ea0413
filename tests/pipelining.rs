//! Clients that write many requests before reading any reply (Go's x/crypto agent client
//! pipelines up to 32): every request is answered, in order, however large the replies and
//! however many requests are buffered, and a client that half-closes its end after its batch
//! (`shutdown(SHUT_WR)`, as `nc -N` does) still gets every reply.
//!
//! One thread writes while the test reads, and every read has a deadline: a failing agent
//! fails the test instead of hanging it.
//!
//! Prove against OpenSSH with `AGENT_UNDER_TEST=/usr/bin/ssh-agent cargo test --test pipelining`
//! (OpenSSH drops the replies of a half-closed client: those tests are sshkeep-only).

mod common;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use ed25519_dalek::{Signer, SigningKey};

/// How long a whole exchange may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// An Ed25519 key made here, with what the tests need to check the agent's answers.
struct Key {
    signing: SigningKey,
    blob: Vec<u8>,
    comment: String,
}

impl Key {
    /// Key number `i`, from a seed derived from `i` (any 32 bytes are an Ed25519 seed).
    fn new(i: usize) -> Key {
        let mut seed = [0x5au8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let signing = SigningKey::from_bytes(&seed);
        let pk = signing.verifying_key().to_bytes();
        let mut blob = string(b"ssh-ed25519");
        blob.extend(string(&pk));
        Key {
            signing,
            blob,
            comment: format!("pipelined-{i:04}"),
        }
    }

    /// The ADD_IDENTITY frame that loads it.
    fn add_frame(&self) -> Vec<u8> {
        let pk = self.signing.verifying_key().to_bytes();
        let mut private = self.signing.to_bytes().to_vec();
        private.extend_from_slice(&pk);
        let mut body = string(b"ssh-ed25519");
        body.extend(string(&pk));
        body.extend(string(&private));
        body.extend(string(self.comment.as_bytes()));
        frame(SSH_AGENTC_ADD_IDENTITY, &body)
    }

    /// A SIGN_REQUEST frame over `data`.
    fn sign_frame(&self, data: &[u8]) -> Vec<u8> {
        let mut body = string(&self.blob);
        body.extend(string(data));
        body.extend(u32(0));
        frame(SSH_AGENTC_SIGN_REQUEST, &body)
    }

    /// The SIGN_RESPONSE the agent must give for `data` (Ed25519 is deterministic).
    fn signature_reply(&self, data: &[u8]) -> Vec<u8> {
        let sig = self.signing.sign(data).to_bytes();
        let mut blob = string(b"ssh-ed25519");
        blob.extend(string(&sig));
        let mut reply = vec![SSH_AGENT_SIGN_RESPONSE];
        reply.extend(string(&blob));
        reply
    }
}

/// An agent holding `n` keys, added with raw ADD frames on one connection.
fn agent_with_keys(n: usize) -> (Agent, Vec<Key>) {
    let agent = Agent::start(&[]);
    let keys: Vec<Key> = (0..n).map(Key::new).collect();
    let batch: Vec<u8> = keys.iter().flat_map(Key::add_frame).collect();
    let replies = exchange(agent.sock(), batch, n, false);
    assert!(
        replies.iter().all(|r| r == &[SSH_AGENT_SUCCESS]),
        "adds refused"
    );
    (agent, keys)
}

/// The IDENTITIES_ANSWER the agent must give when it holds `keys`.
fn identities_reply(keys: &[Key]) -> Vec<u8> {
    let mut reply = vec![SSH_AGENT_IDENTITIES_ANSWER];
    reply.extend(u32(keys.len() as u32));
    for k in keys {
        reply.extend(string(&k.blob));
        reply.extend(string(k.comment.as_bytes()));
    }
    reply
}

/// Writes `batch` on a new connection from a thread (in one write call; then, with
/// `half_close`, shuts down the writing half) while this thread reads `replies` reply frames.
/// Every read and the whole exchange have deadlines. With `half_close`, the agent must close
/// the connection after the last reply.
fn exchange(sock: &Path, batch: Vec<u8>, replies: usize, half_close: bool) -> Vec<Vec<u8>> {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || -> io::Result<()> {
        w.write_all(&batch)?;
        if half_close {
            w.shutdown(Shutdown::Write)?;
        }
        Ok(())
    });
    let start = Instant::now();
    let mut r = io::BufReader::with_capacity(1 << 16, &s);
    let mut got = Vec::with_capacity(replies);
    while got.len() < replies {
        assert!(
            start.elapsed() < DEADLINE,
            "{} of {replies} replies within {DEADLINE:?}",
            got.len()
        );
        let mut head = [0u8; 4];
        if let Err(e) = r.read_exact(&mut head) {
            panic!("{} of {replies} replies, then: {e}", got.len());
        }
        let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
        r.read_exact(&mut body)
            .unwrap_or_else(|e| panic!("reply {} cut short: {e}", got.len()));
        got.push(body);
    }
    writer
        .join()
        .unwrap()
        .expect("the agent stopped reading the batch");
    if half_close {
        let mut rest = Vec::new();
        r.read_to_end(&mut rest)
            .expect("the agent did not close the connection after the last reply");
        assert!(rest.is_empty(), "{} bytes after the last reply", rest.len());
    }
    got
}

/// 32 REQUEST_IDENTITIES with 1000 keys (about 2.5 MB of replies) in one write: every list
/// arrives, whole.
fn lists_with_1000_keys(half_close: bool) {
    let (agent, keys) = agent_with_keys(1000);
    let want = identities_reply(&keys);
    let batch = frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]).repeat(32);
    let got = exchange(agent.sock(), batch, 32, half_close);
    for (i, reply) in got.iter().enumerate() {
        assert!(reply == &want, "list {i} differs ({} bytes)", reply.len());
    }
}

#[test]
fn pipelined_lists_with_1000_keys_are_all_answered() {
    lists_with_1000_keys(false);
}

#[test]
fn pipelined_lists_with_1000_keys_are_all_answered_after_half_close() {
    // OpenSSH closes the connection when its client half-closes, dropping the replies.
    if !sshkeep_only() {
        return;
    }
    lists_with_1000_keys(true);
}

/// `pairs` list and sign pairs to an agent holding `n_keys` keys, each signature over its own
/// data, so that the order of the replies is checked byte for byte. With `half_close` only
/// against sshkeep: OpenSSH drops the replies of a half-closed client.
fn list_sign_pairs(n_keys: usize, pairs: usize, half_close: bool) {
    if half_close && !sshkeep_only() {
        return;
    }
    let (agent, keys) = agent_with_keys(n_keys);
    let list = frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
    let data = |i: usize| format!("request {i}").into_bytes();
    let mut batch = Vec::new();
    for i in 0..pairs {
        batch.extend_from_slice(&list);
        batch.extend(keys[i % keys.len()].sign_frame(&data(i)));
    }
    let want_list = identities_reply(&keys);
    let got = exchange(agent.sock(), batch, 2 * pairs, half_close);
    for (i, pair) in got.chunks(2).enumerate() {
        assert!(pair[0] == want_list, "reply {} is not the list", 2 * i);
        let want_sig = keys[i % keys.len()].signature_reply(&data(i));
        assert!(
            pair[1] == want_sig,
            "reply {} is not the signature of request {i}",
            2 * i + 1
        );
    }
}

#[test]
fn pipelined_list_sign_pairs_with_1000_keys_are_answered_in_order() {
    list_sign_pairs(1000, 32, false);
}

#[test]
fn pipelined_list_sign_pairs_with_1000_keys_after_half_close() {
    list_sign_pairs(1000, 32, true);
}

/// 5000 list and sign pairs with 3 keys (10000 replies, more requests than the agent reads
/// at once), written by one thread while another reads.
#[test]
fn thousands_of_pipelined_requests_are_answered_in_order() {
    list_sign_pairs(3, 5000, false);
}

#[test]
fn thousands_of_pipelined_requests_after_half_close() {
    list_sign_pairs(3, 5000, true);
}
