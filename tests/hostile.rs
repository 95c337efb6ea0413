//! Hostile clients against the real binary: frames of every bad length, frames split and
//! stalled, bodies that end early, unknown messages and extensions, pipelined garbage, invalid
//! keys of every type, unknown and malformed constraints, clients that never read, idle and
//! slowloris connections, slow requests, file descriptor exhaustion and the identity cap. The
//! cases are tables: one row per case, each saying whether it holds for OpenSSH too.
//!
//! After every hostile case the agent must still be running, answer `ssh-add -l`, and hold
//! exactly the keys it held before ([`LoadedAgent`]: three real keys loaded with `ssh-add`).
//!
//! The cases that pass against OpenSSH's agent too run there
//! (`AGENT_UNDER_TEST=/usr/bin/ssh-agent cargo test --test hostile`); those of deliberate
//! differences (OpenSSH 9.2 accepts mismatched keys, exits on a bad LOCK, has no identity cap,
//! spins on a client that never reads) are sshkeep-only, in whole tests or in rows.
//!
//! The last tests run in-process: the fuzzers' seed corpus and every crashing input they ever
//! found go through `Request::decode` and `Agent::handle`, and a short deterministic mutation
//! loop over the seeds runs on every `cargo test` (the coverage-guided fuzzers live in `fuzz/`).

mod common;
#[path = "common/replay.rs"]
mod replay;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use ssh_key::private::{Ed25519Keypair, KeypairData};

/// The identity cap (src/agent.rs MAX_IDENTITIES, OpenSSH clients' MAX_AGENT_IDENTITIES).
const MAX_IDENTITIES: usize = 2048;

// ---------------------------------------------------------------------------------------------
// Frames: lengths, splits, bodies that end early, unknown types, pipelines

/// Which agents a case holds for: both (it runs against `AGENT_UNDER_TEST` too), or only
/// sshkeep (a deliberate difference from OpenSSH 9.2, said beside the case).
#[derive(Clone, Copy, PartialEq)]
enum Holds {
    Both,
    Sshkeep,
}

impl Holds {
    /// Whether the case runs against the agent under test.
    fn here(self) -> bool {
        self == Holds::Both || is_sshkeep()
    }
}

use Holds::{Both, Sshkeep};

/// What the agent does with a frame.
enum Answer {
    /// Closes the connection without a reply.
    Closed,
    /// FAILURE; the connection lives on.
    Failure,
    /// The identity list; the connection lives on.
    Listing,
}

/// A frame's length prefix decides: length 0 and lengths over 256 KiB close the connection
/// (nothing after them is answered), and a frame of exactly 256 KiB is read whole.
#[test]
fn frame_lengths() {
    let mut l = LoadedAgent::start();
    let over = u32(MAX_MESSAGE_LEN as u32 + 1);
    let list = frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
    // Exactly the maximum: a listing with trailing bytes (ignored), and an unknown type.
    let mut max_list = vec![SSH_AGENTC_REQUEST_IDENTITIES];
    max_list.resize(MAX_MESSAGE_LEN, 0xaa);
    let garbage: Vec<u8> = (0..MAX_MESSAGE_LEN - 1)
        .map(|i| (i * 7 + 3) as u8)
        .collect();
    let max_unknown = frame(200, &garbage);
    assert_eq!(max_unknown.len(), 4 + MAX_MESSAGE_LEN);
    let cases: Vec<(Holds, &str, Vec<u8>, Answer)> = vec![
        // OpenSSH 9.2 leaves a connection open after a lone length-0 frame.
        (Sshkeep, "length 0", u32(0), Answer::Closed),
        (
            Both,
            "length 0 then a request",
            cat(&[&u32(0), &list]),
            Answer::Closed,
        ),
        (Both, "length MAX+1", cat(&[&over, &[11]]), Answer::Closed),
        (
            Both,
            "length MAX+1 and a body",
            cat(&[&over, &[11; 64]]),
            Answer::Closed,
        ),
        (
            Both,
            "length 2^31",
            cat(&[&u32(1 << 31), &[11]]),
            Answer::Closed,
        ),
        (
            Both,
            "length 2^32-1",
            cat(&[&u32(u32::MAX), &[11]]),
            Answer::Closed,
        ),
        (
            Both,
            "length 2^32-1 and a body",
            cat(&[&u32(u32::MAX), &[11, 1, 2, 3]]),
            Answer::Closed,
        ),
        (
            Both,
            "a listing of exactly MAX",
            cat(&[&u32(MAX_MESSAGE_LEN as u32), &max_list]),
            Answer::Listing,
        ),
        (
            Both,
            "an unknown type of exactly MAX",
            max_unknown,
            Answer::Failure,
        ),
    ];
    for (holds, case, bytes, answer) in &cases {
        if !holds.here() {
            continue;
        }
        match answer {
            Answer::Closed => l.expect_closed(case, bytes),
            Answer::Failure => l.expect_failure(case, bytes),
            Answer::Listing => {
                let mut c = l.client();
                c.send_raw(bytes);
                let reply = c.recv_frame().unwrap_or_else(|| panic!("{case}: no reply"));
                assert_eq!(parse_identities(&reply).len(), LOADED.len(), "{case}");
                l.assert_usable(&mut c);
                l.check(case);
            }
        }
    }
    l.finish();
}

/// A client that sends an oversized frame is disconnected at once; a client with a request
/// in flight and an idle one are not affected.
#[test]
fn oversized_frame_disconnects_only_that_client() {
    let mut l = LoadedAgent::start();
    let list = frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
    let mut busy = l.client();
    busy.send_raw(&list[..2]);
    let mut idle = l.client();
    let first = idle.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]);

    let mut big = l.client();
    let over = (MAX_MESSAGE_LEN as u32 + 1).to_be_bytes();
    let _ = big.try_send_raw(&over);
    // Keep sending the body: the agent must close rather than buffer it.
    let chunk = vec![0x41u8; 64 * 1024];
    for _ in 0..8 {
        if big.try_send_raw(&chunk).is_err() {
            break;
        }
    }
    assert!(big.is_closed(), "the oversized frame's connection is open");

    busy.send_raw(&list[2..]);
    let reply = busy.recv_frame().expect("the busy client lost its request");
    assert_eq!(parse_identities(&reply).len(), LOADED.len());
    assert_eq!(idle.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]), first);
    l.check("an oversized frame");
}

/// A client that closes in the middle of a frame (header or body) is dropped quietly.
#[test]
fn truncated_frames() {
    let mut l = LoadedAgent::start();
    for (case, bytes) in [
        ("two header bytes", &[0u8, 0][..]),
        ("header only", &[0, 0, 0, 100][..]),
        (
            "half a body",
            &[0, 0, 0, 100, 17, 0, 0, 0, 11, b's', b's', b'h'][..],
        ),
        ("one byte short", &[0, 0, 0, 2, 11][..]),
    ] {
        // Shut down the write side only: the agent sees end of stream with a partial frame.
        let mut c = l.client();
        c.send_raw(bytes);
        c.stream().shutdown(std::net::Shutdown::Write).unwrap();
        assert!(c.is_closed(), "{case}: connection left open");
        assert_eq!(c.recv_frame(), None, "{case}: unexpected reply");
        l.check(case);
        // And with the whole socket closed at once.
        let mut s = UnixStream::connect(l.sock()).unwrap();
        s.write_all(bytes).unwrap();
        drop(s);
        l.check(case);
    }
}

/// A frame may arrive in pieces, down to a byte at a time: a partial frame makes the agent
/// wait for the rest (it neither answers nor closes), other clients are served meanwhile, and
/// the answer comes once the frame is complete.
#[test]
fn split_and_stalled_frames() {
    let mut l = LoadedAgent::start();
    let list = frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
    // Where the frame stalls (the rest follows after the checks), and in how many pieces the
    // part before arrives.
    for (case, stall_at, pieces) in [
        ("a byte at a time", list.len(), list.len()),
        ("stalled after three header bytes", 3, 1),
        ("stalled after the length", 4, 1),
    ] {
        let mut c = l.client();
        let (head, rest) = list.split_at(stall_at);
        for piece in head.chunks(head.len().div_ceil(pieces)) {
            c.send_raw(piece);
        }
        if !rest.is_empty() {
            c.set_timeout(Duration::from_millis(300));
            assert!(
                !c.is_closed(),
                "{case}: a partial frame closed the connection"
            );
            let mut other = l.client();
            l.assert_usable(&mut other);
            l.check(case);
            c.set_timeout(Duration::from_secs(5));
            c.send_raw(rest);
        }
        let reply = c
            .recv_frame()
            .unwrap_or_else(|| panic!("{case}: no reply once the frame was complete"));
        assert_eq!(parse_identities(&reply).len(), LOADED.len(), "{case}");
        l.check(case);
    }
}

/// Bodies that end early, and strings whose length runs past the end of the frame, in every
/// message that has fields: FAILURE, and the connection stays usable.
#[test]
fn bodies_that_end_early() {
    let mut l = LoadedAgent::start();
    let huge = u32(u32::MAX);
    let past = u32(1000);
    let blob = l.blob("ed25519");
    let full_sign = cat(&[&string(&blob), &string(b"data to sign"), &u32(0)]);
    let sign = |body: &[u8]| frame(SSH_AGENTC_SIGN_REQUEST, body);
    let add = |body: &[u8]| frame(SSH_AGENTC_ADD_IDENTITY, body);
    let remove = |body: &[u8]| frame(SSH_AGENTC_REMOVE_IDENTITY, body);
    let ext = |body: &[u8]| frame(SSH_AGENTC_EXTENSION, body);
    let ed = string(b"ssh-ed25519");
    let mut cases: Vec<(Holds, String, Vec<u8>)> = vec![
        (Both, "sign: empty".into(), sign(&[])),
        (Both, "sign: two bytes".into(), sign(&[0, 0])),
        (
            Both,
            "sign: key length past the frame".into(),
            sign(&cat(&[&u32(100), &[1, 2, 3]])),
        ),
        (
            Both,
            "sign: key length 2^32-1".into(),
            sign(&cat(&[&huge, b"abc"])),
        ),
        (
            Both,
            "sign: data length past the frame".into(),
            sign(&cat(&[&string(b"key"), &past, b"data"])),
        ),
        (
            Both,
            "sign: flags missing".into(),
            sign(&cat(&[&string(b"key"), &string(b"data")])),
        ),
        (Both, "add: empty".into(), add(&[])),
        (Both, "add: type name only".into(), add(&ed)),
        (
            Both,
            "add: type name length past the frame".into(),
            add(&cat(&[&past, b"ssh-ed25519"])),
        ),
        (
            Both,
            "add: key field cut".into(),
            add(&cat(&[&ed, &u32(32), &[1, 2, 3]])),
        ),
        (
            Both,
            "add: key field length 2^32-1".into(),
            add(&cat(&[&ed, &huge, &[1; 32]])),
        ),
        (
            Both,
            "add constrained: type name only".into(),
            frame(SSH_AGENTC_ADD_ID_CONSTRAINED, &ed),
        ),
        (
            Both,
            "add constrained: type name length 2^32-1".into(),
            frame(SSH_AGENTC_ADD_ID_CONSTRAINED, &huge),
        ),
        (Both, "remove: no blob".into(), remove(&[])),
        (
            Both,
            "remove: blob length past the frame".into(),
            remove(&cat(&[&u32(50), b"abc"])),
        ),
        (
            Both,
            "remove: blob length far past the frame".into(),
            remove(&cat(&[&past, b"blob"])),
        ),
        // OpenSSH 9.2 exits (fatal) on an unparseable LOCK/UNLOCK.
        (
            Sshkeep,
            "lock: passphrase length 2^32-1".into(),
            frame(SSH_AGENTC_LOCK, &cat(&[&huge, b"pw"])),
        ),
        (
            Sshkeep,
            "lock: no passphrase".into(),
            frame(SSH_AGENTC_LOCK, &[0, 0]),
        ),
        (
            Sshkeep,
            "unlock: passphrase length past the frame".into(),
            frame(SSH_AGENTC_UNLOCK, &cat(&[&past, b"pw"])),
        ),
        (Both, "extension: empty".into(), ext(&[])),
        (
            Both,
            "extension: name length past the frame".into(),
            ext(&cat(&[&u32(100), b"query"])),
        ),
        (Both, "extension: name length 2^32-1".into(), ext(&huge)),
        (
            Both,
            "extension: session-bind fields past the frame".into(),
            ext(&cat(&[
                &string(b"session-bind@openssh.com"),
                &string(b"k"),
                &huge,
            ])),
        ),
        (
            Both,
            "extension: name not UTF-8".into(),
            ext(&string(&[0xff, 0xfe, 0xfd])),
        ),
    ];
    // A sign request cut anywhere inside (its flags missing, its data cut short, ...).
    for cut in [full_sign.len() - 4, full_sign.len() - 6, blob.len() + 4, 10] {
        cases.push((Both, format!("sign: cut at {cut}"), sign(&full_sign[..cut])));
    }
    for (holds, case, bytes) in &cases {
        if holds.here() {
            l.expect_failure(case, bytes);
        }
    }
    if is_sshkeep() {
        // An unparseable lock did not lock the agent: ssh-add -l above listed the keys, and
        // an unlock now is refused as "not locked".
        let mut c = l.client();
        assert_eq!(
            c.request(SSH_AGENTC_UNLOCK, &string(b"pw")),
            [SSH_AGENT_FAILURE]
        );
        l.check("unlock of an unlocked agent");
    }
    l.finish();
}

/// Message numbers the agent does not implement get FAILURE, with or without a body, and so do
/// extensions it does not know (RFC 9987).
#[test]
fn unknown_message_types_and_extensions() {
    let mut l = LoadedAgent::start();
    // Everything but the implemented requests (9 and 19 would remove every key).
    let implemented = [9, 11, 13, 17, 18, 19, 22, 23, 25, 27];
    for t in (0..=255u8).filter(|t| !implemented.contains(t)) {
        let case = format!("message type {t}");
        let mut c = l.client();
        let bodies = [&b""[..], b"some body", &string(b"some body bytes")];
        for body in bodies {
            c.send_raw(&frame(t, body));
        }
        for body in bodies {
            let reply = c.recv_frame();
            assert_eq!(
                reply.as_deref(),
                Some(&[SSH_AGENT_FAILURE][..]),
                "{case} {body:?}"
            );
        }
        l.assert_usable(&mut c);
        // Checking all 246 with ssh-add would take seconds: check a sample, the connection always.
        if t % 16 == 0 || [20, 21, 24, 26, 28, 29].contains(&t) {
            l.check(&case);
        }
    }
    // Names with a payload after them, and one without.
    for (name, payload) in [
        (&b"hostile@example.com"[..], None),
        (b"unknown@example.com", Some(b"payload")),
        (b"", Some(b"payload")),
        (b"QUERY", Some(b"payload")),
        (b"query@openssh.com", Some(b"payload")),
    ] {
        let mut body = string(name);
        if let Some(payload) = payload {
            body.extend(string(payload));
        }
        l.expect_failure(
            &format!("extension {:?}", String::from_utf8_lossy(name)),
            &frame(SSH_AGENTC_EXTENSION, &body),
        );
    }
    l.finish();
}

/// Valid and invalid requests pipelined in one write are answered in order, one reply each;
/// so are the same bytes written in awkward pieces.
#[test]
fn pipelined_valid_and_invalid_requests() {
    let mut l = LoadedAgent::start();
    let m = Material::make(l.agent.dir());
    let n = LOADED.len();
    let list = frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
    let sign = |blob: &[u8]| {
        frame(
            SSH_AGENTC_SIGN_REQUEST,
            &cat(&[&string(blob), &string(b"data"), &u32(0)]),
        )
    };
    let remove = frame(SSH_AGENTC_REMOVE_IDENTITY, &string(&m.ed.blob()));
    let sequence: Vec<(Holds, Vec<u8>, u8, Option<usize>)> = vec![
        (Both, list.clone(), SSH_AGENT_IDENTITIES_ANSWER, Some(n)),
        (Both, list.clone(), SSH_AGENT_IDENTITIES_ANSWER, Some(n)),
        (Both, list.clone(), SSH_AGENT_IDENTITIES_ANSWER, Some(n)),
        (Both, frame(200, &[]), SSH_AGENT_FAILURE, None),
        // OpenSSH 9.2 accepts a key whose private half does not match.
        (
            Sshkeep,
            add_frame(&Ed::key(&m.ed.pk, &m.ed2.seed, &m.ed.pk)),
            SSH_AGENT_FAILURE,
            None,
        ),
        (Both, list.clone(), SSH_AGENT_IDENTITIES_ANSWER, Some(n)),
        (
            Both,
            frame(
                SSH_AGENTC_ADD_IDENTITY,
                &add_body(&m.ed.valid(), "piped", &[]),
            ),
            SSH_AGENT_SUCCESS,
            None,
        ),
        (Both, frame(200, &[1, 2, 3]), SSH_AGENT_FAILURE, None),
        (Both, list.clone(), SSH_AGENT_IDENTITIES_ANSWER, Some(n + 1)),
        (Both, sign(&m.ed2.blob()), SSH_AGENT_FAILURE, None),
        (Both, sign(&m.ed.blob()), SSH_AGENT_SIGN_RESPONSE, None),
        (
            Both,
            frame(SSH_AGENTC_REMOVE_IDENTITY, &u32(77)),
            SSH_AGENT_FAILURE,
            None,
        ),
        (
            Both,
            frame(
                SSH_AGENTC_ADD_ID_CONSTRAINED,
                &add_body(&m.ed2.valid(), "x", &[9]),
            ),
            SSH_AGENT_FAILURE,
            None,
        ),
        // OpenSSH 9.2 does not know `query`.
        (
            Sshkeep,
            frame(SSH_AGENTC_EXTENSION, &string(b"query")),
            SSH_AGENT_EXTENSION_RESPONSE,
            None,
        ),
        (Both, remove.clone(), SSH_AGENT_SUCCESS, None),
        (Both, remove, SSH_AGENT_FAILURE, None),
        (Both, list.clone(), SSH_AGENT_IDENTITIES_ANSWER, Some(n)),
    ];
    let sequence: Vec<_> = sequence.into_iter().filter(|(h, ..)| h.here()).collect();
    let all: Vec<u8> = sequence.iter().flat_map(|(_, f, ..)| f.clone()).collect();
    // Several rounds in one write, then the same bytes split at awkward places.
    let rounds = 5;
    let mut c = l.client();
    c.send_raw(&all.repeat(rounds));
    for round in 0..rounds {
        expect_replies(&mut c, &sequence, &format!("round {round}"));
    }
    for chunk in all.chunks(7) {
        c.send_raw(chunk);
    }
    expect_replies(&mut c, &sequence, "7-byte writes");
    l.assert_usable(&mut c);
    l.check("pipelined requests");

    // A request followed by an invalid frame in the same write: the connection closes (the
    // listing may or may not have gone out first, as with OpenSSH), the agent carries on.
    let mut c = l.client();
    c.send_raw(&cat(&[&list, &[0, 0, 0, 0], &list]));
    assert!(c.is_closed(), "connection left open after a length-0 frame");
    if let Some(reply) = c.recv_frame() {
        assert_eq!(parse_identities(&reply).len(), n);
    }
    assert_eq!(
        c.recv_frame(),
        None,
        "a request after the bad frame was answered"
    );
    l.check("request then a length-0 frame");
    l.finish();
}

/// Reads a reply for each request of `sequence` and checks its type and listing size.
fn expect_replies(c: &mut RawClient, sequence: &[(Holds, Vec<u8>, u8, Option<usize>)], what: &str) {
    for (i, (_, _, kind, count)) in sequence.iter().enumerate() {
        let reply = c
            .recv_frame()
            .unwrap_or_else(|| panic!("{what}: no reply {i}"));
        assert_eq!(reply[0], *kind, "{what}: reply {i}: {reply:?}");
        if let Some(n) = count {
            assert_eq!(parse_identities(&reply).len(), *n, "{what}: reply {i}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Key material and ADD bodies built by hand

/// An SSH mpint of the magnitude `m` (big-endian, leading zeros allowed).
fn mpint(m: &[u8]) -> Vec<u8> {
    let start = m.iter().position(|&b| b != 0).unwrap_or(m.len());
    let m = &m[start..];
    if m.first().is_some_and(|&b| b & 0x80 != 0) {
        let mut v = vec![0];
        v.extend_from_slice(m);
        string(&v)
    } else {
        string(m)
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// An ADD body: the key part, then the comment, then raw constraint bytes.
fn add_body(key: &[u8], comment: &str, constraints: &[u8]) -> Vec<u8> {
    cat(&[key, &string(comment.as_bytes()), constraints])
}

fn add_frame(key: &[u8]) -> Vec<u8> {
    frame(SSH_AGENTC_ADD_IDENTITY, &add_body(key, "hostile", &[]))
}

fn read_key(path: &Path) -> KeypairData {
    ssh_key::PrivateKey::read_openssh_file(path)
        .unwrap()
        .key_data()
        .clone()
}

struct Ed {
    pk: Vec<u8>,
    seed: Vec<u8>,
}

impl Ed {
    fn load(path: &Path) -> Ed {
        let kd = read_key(path);
        let kp = kd.ed25519().unwrap();
        Ed {
            pk: kp.public.as_ref().to_vec(),
            seed: kp.private.to_bytes().to_vec(),
        }
    }

    /// The private fields: `string pk, string seed‖pk2`.
    fn private(pk: &[u8], seed: &[u8], pk2: &[u8]) -> Vec<u8> {
        cat(&[&string(pk), &string(&cat(&[seed, pk2]))])
    }

    fn key(pk: &[u8], seed: &[u8], pk2: &[u8]) -> Vec<u8> {
        cat(&[&string(b"ssh-ed25519"), &Ed::private(pk, seed, pk2)])
    }

    fn valid(&self) -> Vec<u8> {
        Ed::key(&self.pk, &self.seed, &self.pk)
    }

    fn blob(&self) -> Vec<u8> {
        cat(&[&string(b"ssh-ed25519"), &string(&self.pk)])
    }
}

struct Ec {
    alg: &'static str,
    curve: &'static str,
    q: Vec<u8>,
    d: Vec<u8>,
}

impl Ec {
    fn load(path: &Path) -> Ec {
        let kd = read_key(path);
        let kp = kd.ecdsa().unwrap();
        let (alg, curve) = match kp.public_key_bytes().len() {
            65 => ("ecdsa-sha2-nistp256", "nistp256"),
            97 => ("ecdsa-sha2-nistp384", "nistp384"),
            133 => ("ecdsa-sha2-nistp521", "nistp521"),
            n => panic!("unexpected point length {n}"),
        };
        Ec {
            alg,
            curve,
            q: kp.public_key_bytes().to_vec(),
            d: kp.private_key_bytes().to_vec(),
        }
    }

    /// `string alg, string curve, string Q, <d as given>`.
    fn key_raw(&self, curve: &str, q: &[u8], d_field: &[u8]) -> Vec<u8> {
        cat(&[
            &string(self.alg.as_bytes()),
            &string(curve.as_bytes()),
            &string(q),
            d_field,
        ])
    }

    fn key(&self, q: &[u8], d: &[u8]) -> Vec<u8> {
        self.key_raw(self.curve, q, &mpint(d))
    }

    fn valid(&self) -> Vec<u8> {
        self.key(&self.q, &self.d)
    }

    fn blob(&self) -> Vec<u8> {
        cat(&[
            &string(self.alg.as_bytes()),
            &string(self.curve.as_bytes()),
            &string(&self.q),
        ])
    }
}

#[derive(Clone)]
struct Rsa {
    n: Vec<u8>,
    e: Vec<u8>,
    d: Vec<u8>,
    iqmp: Vec<u8>,
    p: Vec<u8>,
    q: Vec<u8>,
}

impl Rsa {
    fn load(path: &Path) -> Rsa {
        let kd = read_key(path);
        let kp = kd.rsa().unwrap();
        let b = |m: &ssh_key::Mpint| m.as_positive_bytes().unwrap().to_vec();
        Rsa {
            n: b(kp.public().n()),
            e: b(kp.public().e()),
            d: b(kp.private().d()),
            iqmp: b(kp.private().iqmp()),
            p: b(kp.private().p()),
            q: b(kp.private().q()),
        }
    }

    /// A 512-bit key (made with `openssl genrsa 512`): mathematically valid, too small.
    fn small() -> Rsa {
        let h = |s: &str| {
            let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        };
        Rsa {
            n: h(
                "b87fb97090f68399e32e2139ff5e24e5610611f4908ea9c4cdebb34235faaf10\
                  b0348322a312058068ff6a2d7a1b8656e9a87742d78724d3a291a4a85b63a69d",
            ),
            e: h("010001"),
            d: h(
                "6e41be135c3e45852873bfdd8613bfdee86d953b5f4c327e6f45051a7361bd4e\
                  2a8edb921105c87c2d03b92a6ef9076050cccb2e48b8ba02f116ee1c924aee21",
            ),
            iqmp: h("9fbf54bfbac4b41b3ce591ee40df9ed72b24076ab4ef75f49481845efeb177ab"),
            p: h("e72c288949696ae706db10c1f11e6e6fb8118d65613c594419cb6e31494e80c9"),
            q: h("cc50536dd54d949e5ab5f0e35dee1706641a3b1cd565bd7a0fb6aaf2a8be9535"),
        }
    }

    /// The private fields after the type name: `n, e, d, iqmp, p, q`.
    fn key(&self) -> Vec<u8> {
        cat(&[
            &string(b"ssh-rsa"),
            &mpint(&self.n),
            &mpint(&self.e),
            &mpint(&self.d),
            &mpint(&self.iqmp),
            &mpint(&self.p),
            &mpint(&self.q),
        ])
    }

    fn blob(&self) -> Vec<u8> {
        cat(&[&string(b"ssh-rsa"), &mpint(&self.e), &mpint(&self.n)])
    }
}

/// Schoolbook product of two big-endian magnitudes.
fn mul(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut acc = vec![0u64; a.len() + b.len()];
    for (i, &x) in a.iter().rev().enumerate() {
        for (j, &y) in b.iter().rev().enumerate() {
            acc[i + j] += u64::from(x) * u64::from(y);
        }
    }
    let mut out = Vec::with_capacity(acc.len());
    let mut carry = 0u64;
    for v in acc {
        let t = v + carry;
        out.push((t & 0xff) as u8);
        carry = t >> 8;
    }
    while carry > 0 {
        out.push((carry & 0xff) as u8);
        carry >>= 8;
    }
    out.reverse();
    out
}

/// `m - k` for a small `k` (no borrow past the top).
fn sub_small(m: &[u8], k: u8) -> Vec<u8> {
    let mut out = m.to_vec();
    let mut borrow = k;
    for b in out.iter_mut().rev() {
        let (v, o) = b.overflowing_sub(borrow);
        *b = v;
        borrow = u8::from(o);
        if borrow == 0 {
            break;
        }
    }
    out
}

fn flip_last(v: &[u8]) -> Vec<u8> {
    let mut v = v.to_vec();
    *v.last_mut().unwrap() ^= 0x01;
    v
}

/// Keys of every type (not loaded in the agent) to build ADD bodies from, plus a second key
/// of each type to mix with, and a CA with certificates for the first set.
struct Material {
    ed: Ed,
    ed2: Ed,
    ec: Vec<Ec>,
    ec2: Vec<Ec>,
    rsa: Rsa,
    rsa2: Rsa,
    /// (name of the certificate key type, certificate blob) for ed, ec[0], rsa.
    cert_ed: Vec<u8>,
    cert_ec: Vec<u8>,
    cert_rsa: Vec<u8>,
}

impl Material {
    fn make(dir: &Path) -> Material {
        let gen_ = |kind: &str, name: &str| keygen_named(dir, kind, name, name);
        let ed_path = gen_("ed25519", "m_ed");
        let ec_paths: Vec<PathBuf> = ["ecdsa-256", "ecdsa-384", "ecdsa-521"]
            .iter()
            .map(|k| gen_(k, &format!("m_{k}")))
            .collect();
        let rsa_path = gen_("rsa-2048", "m_rsa");
        let ca = gen_("ed25519", "m_ca");
        let cert = |key: &Path| pub_blob(&certify(&ca, &pub_path(key), "root"));
        Material {
            ed: Ed::load(&ed_path),
            ed2: Ed::load(&gen_("ed25519", "m_ed2")),
            ec: ec_paths.iter().map(|p| Ec::load(p)).collect(),
            ec2: ["ecdsa-256", "ecdsa-384", "ecdsa-521"]
                .iter()
                .map(|k| Ec::load(&gen_(k, &format!("m2_{k}"))))
                .collect(),
            rsa: Rsa::load(&rsa_path),
            rsa2: Rsa::load(&gen_("rsa-2048", "m_rsa2")),
            cert_ed: cert(&ed_path),
            cert_ec: cert(&ec_paths[0]),
            cert_rsa: cert(&rsa_path),
        }
    }
}

/// For a test of sshkeep's key checks: a [`LoadedAgent`] and [`Material`] in its directory;
/// `None` when another agent is under test.
fn agent_and_material() -> Option<(LoadedAgent, Material)> {
    if !sshkeep_only() {
        return None;
    }
    let l = LoadedAgent::start();
    let m = Material::make(l.agent.dir());
    Some((l, m))
}

fn cert_key(name: &str, cert: &[u8], private: &[u8]) -> Vec<u8> {
    cat(&[&string(name.as_bytes()), &string(cert), private])
}

const ED_CERT: &str = "ssh-ed25519-cert-v01@openssh.com";
const EC_CERT: &str = "ecdsa-sha2-nistp256-cert-v01@openssh.com";
const RSA_CERT: &str = "ssh-rsa-cert-v01@openssh.com";

fn rsa_private(r: &Rsa) -> Vec<u8> {
    cat(&[&mpint(&r.d), &mpint(&r.iqmp), &mpint(&r.p), &mpint(&r.q)])
}

// ---------------------------------------------------------------------------------------------
// Invalid keys in ADD

#[test]
fn invalid_ed25519_keys_are_refused() {
    // OpenSSH 9.2 accepts mismatched key halves.
    let Some((mut l, m)) = agent_and_material() else {
        return;
    };
    let (ed, ed2) = (&m.ed, &m.ed2);
    l.add_and_remove(
        "valid ed25519 (control)",
        &add_body(&ed.valid(), "ok", &[]),
        &ed.blob(),
    );

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "private seed of another key",
            Ed::key(&ed.pk, &ed2.seed, &ed.pk),
        ),
        (
            "public key of another key",
            Ed::key(&ed2.pk, &ed.seed, &ed2.pk),
        ),
        (
            "seed‖pk half names another public key",
            Ed::key(&ed.pk, &ed.seed, &ed2.pk),
        ),
        (
            "public key not a curve point",
            Ed::key(&[0xff; 32], &ed.seed, &[0xff; 32]),
        ),
        (
            "public key 31 bytes",
            Ed::key(&ed.pk[..31], &ed.seed, &ed.pk),
        ),
        (
            "private part 63 bytes",
            Ed::key(&ed.pk, &ed.seed, &ed.pk[..31]),
        ),
        (
            "private part 65 bytes",
            Ed::key(&ed.pk, &ed.seed, &cat(&[&ed.pk, &[0]])),
        ),
        ("all zero", Ed::key(&[0; 32], &[0; 32], &[0; 32])),
        (
            "private part missing",
            cat(&[&string(b"ssh-ed25519"), &string(&ed.pk)]),
        ),
    ];
    for (case, key) in &cases {
        l.expect_failure(case, &add_frame(key));
    }
    truncations(&mut l, "ed25519", &ed.valid());
    l.finish();
}

#[test]
fn invalid_ecdsa_keys_are_refused() {
    // OpenSSH 9.2 accepts mismatched key halves.
    let Some((mut l, m)) = agent_and_material() else {
        return;
    };
    for (ec, ec2) in m.ec.iter().zip(&m.ec2) {
        let name = ec.alg;
        l.add_and_remove(
            &format!("valid {name} (control)"),
            &add_body(&ec.valid(), "ok", &[]),
            &ec.blob(),
        );
        let order_len = ec.d.len();
        let cases: Vec<(String, Vec<u8>)> = vec![
            ("scalar of another key".into(), ec.key(&ec.q, &ec2.d)),
            ("point of another key".into(), ec.key(&ec2.q, &ec.d)),
            (
                "point not on the curve".into(),
                ec.key(&flip_last(&ec.q), &ec.d),
            ),
            ("point at infinity".into(), ec.key(&[0], &ec.d)),
            (
                "compressed point".into(),
                ec.key(
                    &cat(&[&[2 + (ec.q.last().unwrap() & 1)], &ec.q[1..order_len + 1]]),
                    &ec.d,
                ),
            ),
            (
                "point truncated".into(),
                ec.key(&ec.q[..ec.q.len() - 1], &ec.d),
            ),
            ("scalar 0".into(), ec.key(&ec.q, &[])),
            ("scalar 1".into(), ec.key(&ec.q, &[1])),
            (
                "scalar all ones".into(),
                ec.key(&ec.q, &vec![0xff; order_len]),
            ),
            (
                "scalar longer than the order".into(),
                ec.key(&ec.q, &cat(&[&[1], &ec.d])),
            ),
            ("scalar 100 bytes".into(), ec.key(&ec.q, &[0x11; 100])),
            (
                "negative scalar".into(),
                ec.key_raw(ec.curve, &ec.q, &string(&cat(&[&[0x80], &ec.d]))),
            ),
            (
                "curve name of another curve".into(),
                ec.key_raw(
                    if ec.curve == "nistp256" {
                        "nistp384"
                    } else {
                        "nistp256"
                    },
                    &ec.q,
                    &mpint(&ec.d),
                ),
            ),
            (
                "unknown curve".into(),
                ec.key_raw("nistp192", &ec.q, &mpint(&ec.d)),
            ),
            ("scalar missing".into(), ec.key_raw(ec.curve, &ec.q, &[])),
        ];
        for (case, key) in &cases {
            l.expect_failure(&format!("{name}: {case}"), &add_frame(key));
        }
        truncations(&mut l, name, &ec.valid());
    }
    // The order n of P-256 and n + 1 (n from FIPS 186-4): out of range, not reduced.
    let n256 = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    let n: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&n256[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut n1 = n.clone();
    *n1.last_mut().unwrap() += 1;
    let ec = &m.ec[0];
    l.expect_failure("P-256 scalar = n", &add_frame(&ec.key(&ec.q, &n)));
    l.expect_failure("P-256 scalar = n + 1", &add_frame(&ec.key(&ec.q, &n1)));
    l.finish();
}

#[test]
fn invalid_rsa_keys_are_refused() {
    // OpenSSH 9.2 accepts inconsistent RSA keys.
    let Some((mut l, m)) = agent_and_material() else {
        return;
    };
    let (r, r2) = (&m.rsa, &m.rsa2);
    l.add_and_remove(
        "valid rsa (control)",
        &add_body(&r.key(), "ok", &[]),
        &r.blob(),
    );
    // iqmp is recomputed from p and q, so a wrong one does not matter (not a hostile case).

    let with = |f: &dyn Fn(&mut Rsa)| {
        let mut k = r.clone();
        f(&mut k);
        k.key()
    };
    let n_times_2 = mul(&r.n, &[2]);
    let p_squared = mul(&r.p, &r.p);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("p·q ≠ n (p of another key)", with(&|k| k.p = r2.p.clone())),
        ("p·q ≠ n (n of another key)", with(&|k| k.n = r2.n.clone())),
        ("d of another key", with(&|k| k.d = r2.d.clone())),
        ("d = 0", with(&|k| k.d = vec![])),
        ("d = 1", with(&|k| k.d = vec![1])),
        (
            "p = 1, q = n",
            with(&|k| {
                k.p = vec![1];
                k.q = k.n.clone();
            }),
        ),
        (
            "p = n, q = 1",
            with(&|k| {
                k.p = k.n.clone();
                k.q = vec![1];
            }),
        ),
        ("p = 0", with(&|k| k.p = vec![])),
        (
            "p = q = 0, n = 0",
            with(&|k| {
                k.p = vec![];
                k.q = vec![];
                k.n = vec![];
            }),
        ),
        (
            "n even: p = 2, q = n",
            with(&|k| {
                k.p = vec![2];
                k.q = k.n.clone();
                k.n = n_times_2.clone();
            }),
        ),
        (
            "p = q (n = p²)",
            with(&|k| {
                k.q = k.p.clone();
                k.n = p_squared.clone();
            }),
        ),
        (
            "e = 1, d = 1",
            with(&|k| {
                k.e = vec![1];
                k.d = vec![1];
            }),
        ),
        ("e = 2", with(&|k| k.e = vec![2])),
        ("e = 65536", with(&|k| k.e = vec![1, 0, 0])),
        ("e = 0", with(&|k| k.e = vec![])),
        ("e = 2^64 + 1", with(&|k| k.e = cat(&[&[1], &[0; 7], &[1]]))),
        ("e = n - 2", with(&|k| k.e = sub_small(&k.n, 2))),
        ("e = n", with(&|k| k.e = k.n.clone())),
        ("e longer than n", with(&|k| k.e = cat(&[&[1], &k.n]))),
        ("d longer than n", with(&|k| k.d = cat(&[&[1], &k.n]))),
        (
            "n of 8200 bits",
            with(&|k| k.n = cat(&[&[1], &[0xff; 1025]])),
        ),
        ("n of 16384 bits", with(&|k| k.n = vec![0xff; 2048])),
        ("n of 1016 bits", with(&|k| k.n = k.n[..127].to_vec())),
    ];
    for (case, key) in &cases {
        l.expect_failure(case, &add_frame(key));
    }
    l.expect_failure("512-bit RSA", &add_frame(&Rsa::small().key()));
    // Negative mpints (top bit set without a zero byte) in every position.
    for pos in 0..6 {
        let fields = [&r.n, &r.e, &r.d, &r.iqmp, &r.p, &r.q];
        let mut key = string(b"ssh-rsa");
        for (i, f) in fields.iter().enumerate() {
            if i == pos {
                key.extend(string(&cat(&[&[0x80], f])));
            } else {
                key.extend(mpint(f));
            }
        }
        l.expect_failure(&format!("negative mpint in field {pos}"), &add_frame(&key));
    }
    truncations(&mut l, "rsa", &r.key());
    l.finish();
}

#[test]
fn invalid_certificates_are_refused() {
    // OpenSSH 9.2 accepts a certificate with another key's private half.
    let Some((mut l, m)) = agent_and_material() else {
        return;
    };
    let ed_priv = Ed::private(&m.ed.pk, &m.ed.seed, &m.ed.pk);
    let ec_priv = mpint(&m.ec[0].d);
    let rsa_priv = rsa_private(&m.rsa);
    let certs = [
        (ED_CERT, &m.cert_ed, ed_priv.clone()),
        (EC_CERT, &m.cert_ec, ec_priv.clone()),
        (RSA_CERT, &m.cert_rsa, rsa_priv.clone()),
    ];
    for (name, cert, private) in &certs {
        l.add_and_remove(
            &format!("valid {name} (control)"),
            &add_body(&cert_key(name, cert, private), "ok", &[]),
            cert,
        );
    }
    let mut garbage = vec![0u8; 300];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in garbage.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    for (name, cert, private) in &certs {
        let sig_byte = cert.len() - 10;
        let mut bad_sig = cert.to_vec();
        bad_sig[sig_byte] ^= 0x40;
        let mut bad_body = cert.to_vec();
        bad_body[60] ^= 0x01; // inside the nonce or key: the CA signature no longer covers it
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage certificate", cert_key(name, &garbage, private)),
            ("empty certificate", cert_key(name, &[], private)),
            (
                "certificate of its type name only",
                cert_key(name, &string(name.as_bytes()), private),
            ),
            (
                "truncated certificate",
                cert_key(name, &cert[..cert.len() / 2], private),
            ),
            (
                "trailing bytes in the certificate",
                cert_key(name, &cat(&[cert, &[0, 0, 0, 0]]), private),
            ),
            ("CA signature damaged", cert_key(name, &bad_sig, private)),
            (
                "certified fields changed",
                cert_key(name, &bad_body, private),
            ),
        ];
        for (case, key) in &cases {
            l.expect_failure(&format!("{name}: {case}"), &add_frame(key));
        }
    }
    // A certificate whose key does not match the private half given with it.
    let ed2_priv = Ed::private(&m.ed2.pk, &m.ed2.seed, &m.ed2.pk);
    let mismatched: Vec<(&str, Vec<u8>)> = vec![
        (
            "ed25519 cert, private of another key",
            cert_key(ED_CERT, &m.cert_ed, &ed2_priv),
        ),
        (
            "ed25519 cert, right public, seed of another key",
            cert_key(
                ED_CERT,
                &m.cert_ed,
                &Ed::private(&m.ed.pk, &m.ed2.seed, &m.ed.pk),
            ),
        ),
        (
            "ecdsa cert, scalar of another key",
            cert_key(EC_CERT, &m.cert_ec, &mpint(&m.ec2[0].d)),
        ),
        (
            "rsa cert, private of another key",
            cert_key(RSA_CERT, &m.cert_rsa, &rsa_private(&m.rsa2)),
        ),
        (
            "ed25519 cert under the ecdsa cert name",
            cert_key(EC_CERT, &m.cert_ed, &ec_priv),
        ),
        (
            "ecdsa cert under the rsa cert name",
            cert_key(RSA_CERT, &m.cert_ec, &rsa_priv),
        ),
        (
            "rsa cert under the ed25519 cert name",
            cert_key(ED_CERT, &m.cert_rsa, &ed_priv),
        ),
        (
            "plain public blob as a certificate",
            cert_key(ED_CERT, &m.ed.blob(), &ed_priv),
        ),
    ];
    for (case, key) in &mismatched {
        l.expect_failure(case, &add_frame(key));
    }
    truncations(
        &mut l,
        "ed25519 certificate",
        &cert_key(ED_CERT, &m.cert_ed, &ed_priv),
    );
    l.finish();
}

/// The ADD body of `key` cut short at a spread of offsets: FAILURE every time.
fn truncations(l: &mut LoadedAgent, what: &str, key: &[u8]) {
    let body = add_body(key, "cut", &[]);
    // The comment is the last field: cutting inside it must fail too.
    let cuts: Vec<usize> = (1..12)
        .map(|i| i * body.len() / 12)
        .chain([body.len() - 1, body.len() - 4, 1, 4, 5])
        .collect();
    for cut in cuts {
        l.expect_failure(
            &format!("{what}: body cut at {cut} of {}", body.len()),
            &frame(SSH_AGENTC_ADD_IDENTITY, &body[..cut]),
        );
    }
}

/// Constraints the agent does not know (or malformed ones) refuse the whole add.
#[test]
fn unknown_constraints_refuse_the_key() {
    // OpenSSH 9.2 accepts an empty destination list and long user patterns.
    let Some((mut l, m)) = agent_and_material() else {
        return;
    };
    let key = m.ed.valid();
    let ext = |name: &str, data: &[u8]| cat(&[&[255], &string(name.as_bytes()), data]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("constraint 0", vec![0]),
        ("constraint 3", vec![3]),
        ("constraint 254", vec![254, 0, 0, 0, 0]),
        ("lifetime truncated", vec![1, 0, 0]),
        ("lifetime twice", vec![1, 0, 0, 0, 10, 1, 0, 0, 0, 10]),
        ("confirm twice", vec![2, 2]),
        ("confirm then garbage", vec![2, 0xee]),
        (
            "restrict-destination with no hop",
            ext("restrict-destination-v00@openssh.com", &string(b"")),
        ),
        (
            "sk-provider extension",
            ext("sk-provider@openssh.com", &string(b"/tmp/x.so")),
        ),
        (
            "associated-certs extension",
            ext("associated-certs-v00@openssh.com", &[0]),
        ),
        ("unknown extension", ext("hostile@example.com", b"")),
        ("extension name truncated", vec![255, 0, 0, 0, 50, b'x']),
        (
            "extension name not UTF-8",
            cat(&[&[255], &string(&[0xff, 0xfe])]),
        ),
    ];
    for (case, c) in &cases {
        for t in [SSH_AGENTC_ADD_ID_CONSTRAINED, SSH_AGENTC_ADD_IDENTITY] {
            l.expect_failure(
                &format!("{case} (type {t})"),
                &frame(t, &add_body(&key, "constrained", c)),
            );
        }
    }
    // Control: the same key with known constraints is accepted (then removed).
    let ok = add_body(&key, "ok", &[1, 0, 0, 0, 60]);
    l.add_and_remove("lifetime constraint (control)", &ok, &m.ed.blob());

    // Destination constraints (restrict-destination-v00@openssh.com): a hop is
    // `string user, string hostname, string reserved, (string key, bool is_ca)*`; a constraint
    // is `string(string from, string to, string reserved)`; the extension holds a list of them.
    let hop = |user: &str, host: &str, reserved: &[u8], keys: &[(&[u8], u8)]| {
        let mut h = cat(&[
            &string(user.as_bytes()),
            &string(host.as_bytes()),
            &string(reserved),
        ]);
        for (k, ca) in keys {
            h.extend(string(k));
            h.push(*ca);
        }
        h
    };
    let constraint = |from: &[u8], to: &[u8], reserved: &[u8]| {
        string(&cat(&[&string(from), &string(to), &string(reserved)]))
    };
    let dest = |list: &[u8]| ext("restrict-destination-v00@openssh.com", &string(list));
    let host_key = m.ed2.blob();
    let any = hop("", "", b"", &[]);
    let to_host = hop("", "host.example", b"", &[(&host_key, 0)]);
    let valid = constraint(&any, &to_host, b"");
    let mut bad_cert = m.cert_ed.clone();
    let last = bad_cert.len() - 5;
    bad_cert[last] ^= 1;
    let dest_cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "destination list truncated",
            dest(&valid[..valid.len() - 3]),
        ),
        (
            "destination hop key is garbage",
            dest(&constraint(
                &any,
                &hop("", "host", b"", &[(b"garbage", 0)]),
                b"",
            )),
        ),
        (
            "destination hop key is a certificate with a bad signature",
            dest(&constraint(
                &any,
                &hop("", "host", b"", &[(&bad_cert, 0)]),
                b"",
            )),
        ),
        (
            "destination hop key without its CA flag",
            dest(&constraint(
                &any,
                &cat(&[&hop("", "host", b"", &[]), &string(&host_key)]),
                b"",
            )),
        ),
        (
            "destination \"to\" without keys",
            dest(&constraint(&any, &hop("", "host", b"", &[]), b"")),
        ),
        (
            "destination \"to\" without a hostname",
            dest(&constraint(&any, &hop("", "", b"", &[(&host_key, 0)]), b"")),
        ),
        (
            "destination \"from\" with a user",
            dest(&constraint(
                &hop("root", "a", b"", &[(&host_key, 0)]),
                &to_host,
                b"",
            )),
        ),
        (
            "destination hop reserved field used",
            dest(&constraint(
                &any,
                &hop("", "host", b"x", &[(&host_key, 0)]),
                b"",
            )),
        ),
        (
            "destination constraint reserved field used",
            dest(&constraint(&any, &to_host, b"x")),
        ),
        (
            "destination hostname with a NUL",
            dest(&constraint(
                &any,
                &hop("", "ho\0st", b"", &[(&host_key, 0)]),
                b"",
            )),
        ),
        (
            "destination user pattern of 257 bytes",
            dest(&constraint(
                &any,
                &hop(&"u".repeat(257), "host", b"", &[(&host_key, 0)]),
                b"",
            )),
        ),
        (
            "destination constraint given twice",
            cat(&[&dest(&valid), &dest(&valid)]),
        ),
        ("1025 destination constraints", dest(&valid.repeat(1025))),
    ];
    for (case, c) in &dest_cases {
        l.expect_failure(
            case,
            &frame(
                SSH_AGENTC_ADD_ID_CONSTRAINED,
                &add_body(&key, "constrained", c),
            ),
        );
    }
    // Control: one valid destination constraint is accepted (and the key is listed to this
    // unbound, local connection, as OpenSSH lists it).
    let ok = add_body(&key, "ok", &dest(&valid));
    l.add_and_remove("destination constraint (control)", &ok, &m.ed.blob());
    l.finish();
}

// ---------------------------------------------------------------------------------------------
// Resource exhaustion

/// Raise this process's soft RLIMIT_NOFILE to at least `want` (agents started afterwards
/// inherit it); returns the new soft limit.
fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft >= want {
        return soft;
    }
    let new = want.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, new, hard).unwrap();
    new
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// CPU time used so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); `rest` starts at field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The share of one core process `pid` used over about `window`.
fn cpu_share(pid: u32, window: Duration) -> f64 {
    let hz = clock_ticks_per_second() as f64;
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(window);
    let (t1, c1) = (Instant::now(), cpu_ticks(pid));
    (c1 - c0) as f64 / hz / (t1 - t0).as_secs_f64()
}

/// A list and a sign request on a fresh connection, each answered within `limit`.
#[track_caller]
fn served_quickly(l: &mut LoadedAgent, key_blob: &[u8], limit: Duration, what: &str) {
    let t = Instant::now();
    let mut c = RawClient::connect(l.sock());
    let ids = c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
    assert_eq!(parse_identities(&ids).len(), LOADED.len());
    let sign = cat(&[&string(key_blob), &string(b"to be signed"), &u32(0)]);
    let sig = c.request(SSH_AGENTC_SIGN_REQUEST, &sign);
    assert_eq!(sig[0], SSH_AGENT_SIGN_RESPONSE, "{what}");
    let took = t.elapsed();
    assert!(took < limit, "{what}: list + sign took {took:?}");
    let t = Instant::now();
    l.check(what);
    let took_ssh_add = t.elapsed();
    println!("{what}: connect + list + sign {took:?}, ssh-add -l {took_ssh_add:?}");
    assert!(
        took_ssh_add < limit,
        "{what}: ssh-add -l took {took_ssh_add:?}"
    );
}

/// Sets the flag when dropped (also while unwinding from a failed assertion).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Clients that pipeline thousands of listings and do not read the replies (about 1 KB each):
/// other clients are served while the flood goes on, and when the flooder reads again its
/// replies come in order. sshkeep also serves them at once (within a second), stops reading
/// from the flooder instead of buffering every reply (its memory stays bounded) and stays idle
/// meanwhile. (OpenSSH 9.2 copes with a few thousand; with 10000 other clients wait seconds,
/// its output buffer growing by reallocation, and it spins, about half a core, on a client that
/// never reads.)
#[test]
fn clients_that_never_read() {
    let mut l = LoadedAgent::start();
    let blob = l.blob("ed25519");
    let pid = l.agent.pid();
    for (holds, requests) in [(Both, 2000), (Sshkeep, 100_000), (Sshkeep, 200_000)] {
        if !holds.here() {
            continue;
        }
        let what = format!("a client that does not read {requests} replies");
        let before = vm_rss_kib(pid);
        let mut flooder = l.client();
        flooder
            .stream()
            .set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let flood = frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]).repeat(requests);
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
                let mut other = l.client();
                other.set_timeout(Duration::from_secs(2));
                l.assert_usable(&mut other);
            }
            l.check(&what);
            if holds == Sshkeep {
                served_quickly(&mut l, &blob, Duration::from_secs(1), &what);
                // Unbounded, 100,000 listings would be over 50 MB of replies.
                let after = vm_rss_kib(pid);
                let growth = after.saturating_sub(before);
                assert!(
                    growth < 16 * 1024 && after < 40 * 1024,
                    "{what}: VmRSS {before} -> {after} KiB"
                );
                let share = cpu_share(pid, Duration::from_secs(1));
                println!(
                    "{what}: {} of {} bytes taken; VmRSS {before} -> {after} KiB; CPU {:.1}% of \
                     a core",
                    written.load(Ordering::Relaxed),
                    flood.len(),
                    share * 100.0
                );
                assert!(
                    share < 0.2,
                    "{what}: the agent used {:.0}% of a core",
                    share * 100.0
                );
            }
        });
        // When the client reads again, the agent carries on where it stopped.
        for i in 0..requests.min(1000) {
            let reply = flooder
                .recv_frame()
                .unwrap_or_else(|| panic!("{what}: no reply {i}"));
            assert_eq!(parse_identities(&reply).len(), LOADED.len(), "{what}");
        }
        drop(flooder);
        l.check(&format!("{what}, after it left"));
    }
}

/// Idle connections, silent ones and ones that send 3 bytes of a frame header and stall
/// (slowloris), do not slow a fresh client: its list and sign requests, and `ssh-add -l`, are
/// answered within a second. They all stay open, and one that finishes its frame gets its
/// answer.
#[test]
fn idle_connections_do_not_slow_others() {
    let rows = [(200, 0), (2000, 3)];
    let limit = raise_nofile(2000 + 512);
    let mut l = LoadedAgent::start();
    let blob = l.blob("ed25519");
    let pid = l.agent.pid();
    let list = frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
    for (count, sent) in rows {
        if limit < count as u64 + 200 {
            skip(&format!(
                "RLIMIT_NOFILE hard limit {limit} is too low for {count} connections: raise it \
                 (ulimit -Hn) or run as root"
            ));
            continue;
        }
        let what = format!("{count} idle connections with {sent} bytes sent");
        let mut idle = Vec::with_capacity(count);
        for _ in 0..count {
            let mut s = UnixStream::connect(l.sock()).unwrap();
            s.write_all(&list[..sent]).unwrap();
            idle.push(s);
        }
        assert!(
            wait_until(Duration::from_secs(20), || open_fds(pid) >= count),
            "the agent accepted only {} connections",
            open_fds(pid)
        );
        served_quickly(&mut l, &blob, Duration::from_secs(1), &what);
        let mut s = idle.pop().unwrap();
        s.write_all(&list[sent..]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = [0u8; 5];
        s.read_exact(&mut head).unwrap();
        assert_eq!(head[4], SSH_AGENT_IDENTITIES_ANSWER, "{what}");
        drop(idle);
        l.check(&format!("after {what} closed"));
    }
}

/// A client that pipelines 300 RSA signatures (each milliseconds of work) does not make
/// others wait behind them: a quick request waits for at most one slow one.
#[test]
fn slow_requests_do_not_starve_others() {
    // OpenSSH's agent answers every request a connection has buffered in one pass, so a quick
    // request there can wait behind many slow ones: this is one of the places sshkeep does better.
    if !sshkeep_only() {
        return;
    }
    const SLOW: usize = 300;
    let mut l = LoadedAgent::start();
    let ed = l.blob("ed25519");
    let rsa = l.blob("rsa-2048");
    let sign = |blob: &[u8], flags: u32| {
        frame(
            SSH_AGENTC_SIGN_REQUEST,
            &cat(&[&string(blob), &string(b"slow"), &u32(flags)]),
        )
    };
    // How long one RSA signature takes here (a debug build is slow).
    let mut c = RawClient::connect(l.sock());
    let t = Instant::now();
    c.send_raw(&sign(&rsa, SSH_AGENT_RSA_SHA2_256));
    assert_eq!(c.recv_frame().unwrap()[0], SSH_AGENT_SIGN_RESPONSE);
    let one = t.elapsed();

    let flood: Vec<Vec<u8>> = (0..SLOW)
        .map(|i| {
            sign(
                &rsa,
                [0, SSH_AGENT_RSA_SHA2_256, SSH_AGENT_RSA_SHA2_512][i % 3],
            )
        })
        .collect();
    let sock = l.sock().to_path_buf();
    let flooder = std::thread::spawn(move || pipeline(&sock, flood));
    let mut worst = Duration::ZERO;
    let mut during = 0;
    while !flooder.is_finished() || during < 20 {
        if !flooder.is_finished() {
            during += 1;
        } else if during < 5 {
            panic!("the flood ended before {during} quick requests: it proves nothing");
        } else {
            break;
        }
        let t = Instant::now();
        let ids = c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
        assert_eq!(parse_identities(&ids).len(), LOADED.len());
        c.send_raw(&sign(&ed, 0));
        assert_eq!(c.recv_frame().unwrap()[0], SSH_AGENT_SIGN_RESPONSE);
        worst = worst.max(t.elapsed());
    }
    println!("{during} quick round trips during the flood, worst {worst:?}; one RSA sign {one:?}");
    let replies = flooder.join().unwrap();
    assert!(replies.iter().all(|&k| k == SSH_AGENT_SIGN_RESPONSE));
    // One slow signature ahead, plus generous slack for a loaded machine.
    let limit = one * 4 + Duration::from_millis(200);
    assert!(
        worst < limit,
        "a quick request waited {worst:?} behind RSA signatures of {one:?} each"
    );
    l.check("a flood of RSA signatures");
}

/// With RLIMIT_NOFILE 32, connections beyond what the agent can accept wait in the backlog:
/// the agent stays near idle instead of spinning on a listener it cannot accept from, and
/// serves new clients again once some connections close.
#[test]
fn file_descriptor_exhaustion() {
    // OpenSSH 9.2 logs and paces descriptor exhaustion differently.
    if !sshkeep_only() {
        return;
    }
    let agent = Agent::launch(Launch {
        wrapper: &["sh", "-c", "ulimit -n 32 && exec \"$0\" \"$@\""],
        args: &["-d"],
        ..Launch::default()
    });
    let sock = agent.sock().to_path_buf();
    let pid = agent.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 32 ")),
        "{limits}"
    );

    // More connections than the agent has descriptors for; each sends a listing request.
    let mut conns = Vec::new();
    for _ in 0..40 {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(&frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]))
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conns.push(s);
    }
    assert!(
        wait_until(Duration::from_secs(10), || open_fds(pid) >= 32
            && agent.stderr_text().contains("Too many open files")),
        "fds {}; stderr: {}",
        open_fds(pid),
        agent.stderr_text()
    );
    let share = cpu_share(pid, Duration::from_secs(1));
    println!("out of descriptors: CPU {:.1}% of a core", share * 100.0);
    assert!(
        share < 0.2,
        "out of descriptors, the agent used {:.0}% of a core",
        share * 100.0
    );
    // The accepted ones were answered.
    let mut head = [0u8; 9];
    conns[0].read_exact(&mut head).unwrap();
    assert_eq!(head[4], SSH_AGENT_IDENTITIES_ANSWER);

    // Close the first 20 (the accepted ones): the backlog drains and a new client is served.
    conns.drain(..20);
    let mut c = UnixStream::connect(&sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]))
        .unwrap();
    let mut reply = [0u8; 9];
    c.read_exact(&mut reply)
        .unwrap_or_else(|e| panic!("new client not served: {e}\n{}", agent.stderr_text()));
    assert_eq!(reply, [0, 0, 0, 5, SSH_AGENT_IDENTITIES_ANSWER, 0, 0, 0, 0]);
    // So were the ones that waited in the backlog.
    for (i, s) in conns.iter_mut().enumerate() {
        let mut r = [0u8; 9];
        s.read_exact(&mut r)
            .unwrap_or_else(|e| panic!("backlogged client {i} not served: {e}"));
        assert_eq!(r[4], SSH_AGENT_IDENTITIES_ANSWER);
    }
}

// ---------------------------------------------------------------------------------------------
// The identity cap

fn rng() -> getrandom::rand_core::UnwrapErr<getrandom::SysRng> {
    getrandom::rand_core::UnwrapErr(getrandom::SysRng)
}

/// The ADD body of a fresh Ed25519 key and its public blob.
fn fresh_ed25519(comment: &str) -> (Vec<u8>, Vec<u8>) {
    let kp = Ed25519Keypair::random(&mut rng());
    let pk = kp.public.as_ref().to_vec();
    let seed = kp.private.to_bytes();
    let body = add_body(&Ed::key(&pk, &seed, &pk), comment, &[]);
    (body, cat(&[&string(b"ssh-ed25519"), &string(&pk)]))
}

/// Sends every frame in `frames` on one connection (written by a thread while this one
/// reads) and returns the reply type of each.
fn pipeline(sock: &Path, frames: Vec<Vec<u8>>) -> Vec<u8> {
    let n = frames.len();
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for f in frames {
            w.write_all(&f).unwrap();
        }
    });
    let mut r = io::BufReader::new(&s);
    let mut kinds = Vec::with_capacity(n);
    for _ in 0..n {
        let mut head = [0u8; 4];
        r.read_exact(&mut head).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
        r.read_exact(&mut body).unwrap();
        kinds.push(body[0]);
    }
    writer.join().unwrap();
    kinds
}

/// 2048 identities are accepted, the 2049th is refused, the list stays under 256 KiB and
/// `ssh-add -l` lists them all; replacing a held key still works at the cap.
#[test]
fn identity_cap() {
    // OpenSSH 9.2 has no identity cap.
    if !sshkeep_only() {
        return;
    }
    let agent = Agent::start(&[]);
    let keys: Vec<(Vec<u8>, Vec<u8>)> = (0..MAX_IDENTITIES + 1)
        .map(|i| fresh_ed25519(&format!("cap-{i}")))
        .collect();
    let frames: Vec<Vec<u8>> = keys[..MAX_IDENTITIES]
        .iter()
        .map(|(body, _)| frame(SSH_AGENTC_ADD_IDENTITY, body))
        .collect();
    let replies = pipeline(agent.sock(), frames);
    assert!(
        replies.iter().all(|&k| k == SSH_AGENT_SUCCESS),
        "{replies:?}"
    );

    let mut c = RawClient::connect(agent.sock());
    let extra = c.request(SSH_AGENTC_ADD_IDENTITY, &keys[MAX_IDENTITIES].0);
    assert_eq!(
        extra,
        [SSH_AGENT_FAILURE],
        "the 2049th identity was accepted"
    );
    // Replacing a key already held is not a new identity.
    let (body, _) = &keys[7];
    let renamed = cat(&[&body[..body.len() - 4 - "cap-7".len()], &string(b"renamed")]);
    assert_eq!(
        c.request(SSH_AGENTC_ADD_IDENTITY, &renamed),
        [SSH_AGENT_SUCCESS]
    );

    let reply = c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
    assert!(
        reply.len() <= MAX_MESSAGE_LEN,
        "list of {} bytes",
        reply.len()
    );
    let ids = parse_identities(&reply);
    assert_eq!(ids.len(), MAX_IDENTITIES);
    assert_eq!(ids[7].1, "renamed");
    assert!(!ids.iter().any(|(b, _)| *b == keys[MAX_IDENTITIES].1));

    let out = ssh_add(&agent, &["-l"]);
    expect_ok(&out);
    assert_eq!(stdout(&out).lines().count(), MAX_IDENTITIES);
    // Removing one makes room for one.
    assert_eq!(
        c.request(SSH_AGENTC_REMOVE_IDENTITY, &string(&keys[0].1)),
        [SSH_AGENT_SUCCESS]
    );
    assert_eq!(
        c.request(SSH_AGENTC_ADD_IDENTITY, &keys[MAX_IDENTITIES].0),
        [SSH_AGENT_SUCCESS]
    );
}

/// Long comments: an add that would take the identity list over 256 KiB is refused, so the
/// list always fits in a reply OpenSSH's clients accept.
#[test]
fn identity_list_size_cap() {
    // OpenSSH 9.2 lets the list outgrow what its clients accept.
    if !sshkeep_only() {
        return;
    }
    let agent = Agent::start(&[]);
    let comment = "c".repeat(60 * 1024);
    let mut c = RawClient::connect(agent.sock());
    let mut accepted = 0;
    for i in 0..6 {
        let (body, _) = fresh_ed25519(&format!("{i}{comment}"));
        match c.request(SSH_AGENTC_ADD_IDENTITY, &body)[..] {
            [SSH_AGENT_SUCCESS] => accepted += 1,
            [SSH_AGENT_FAILURE] => {}
            ref other => panic!("{other:?}"),
        }
    }
    // Four 60 KiB comments fit (about 240 KiB), a fifth would not.
    assert_eq!(accepted, 4);
    let reply = c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
    assert!(
        reply.len() <= MAX_MESSAGE_LEN,
        "list of {} bytes",
        reply.len()
    );
    assert_eq!(parse_identities(&reply).len(), 4);
    let out = ssh_add(&agent, &["-l"]);
    expect_ok(&out);
    assert_eq!(stdout(&out).lines().count(), 4);
}

// ---------------------------------------------------------------------------------------------
// In-process: the fuzzers' corpus, their crashes, and a short mutation loop

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Every seed and every input the fuzzers ever crashed on (kept in fuzz/regressions/) goes
/// through the decoder and the agent without a panic.
#[test]
fn fuzz_corpus_and_regressions_do_not_panic() {
    use sshkeep::protocol::{Frame, Request, frame as framing};
    for (name, data) in corpus("decode") {
        let decoded = Request::decode(&data);
        // The captured ADD requests of real keys must decode: they are what ssh-add sends.
        if name.starts_with("add-") {
            assert!(decoded.is_ok(), "{name}: {:?}", decoded.err());
        }
        if let Frame::Complete(len) = framing(&data) {
            let _ = Request::decode(&data[4..4 + len]);
        }
    }
    for (_, data) in corpus("agent") {
        replay::agent_input(&data);
    }
    let regressions = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    if let Ok(dir) = std::fs::read_dir(&regressions) {
        for e in dir {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let data = std::fs::read(e.path()).unwrap();
            if name.starts_with("agent-") {
                replay::agent_input(&data);
            } else {
                let _ = Request::decode(&data);
            }
        }
    }
}

/// xorshift64*: a tiny deterministic PRNG, so the mutation loop is the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Interesting values for length fields and integers.
const SPECIAL: [u32; 10] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

fn mutate(rng: &mut XorShift, seed: &[u8], others: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            2 if len >= 4 => {
                let i = rng.below(len - 3);
                let s = SPECIAL[rng.below(SPECIAL.len())].to_be_bytes();
                v[i..i + 4].copy_from_slice(&s);
            }
            3 if len > 0 => {
                let cut = rng.below(len);
                v.truncate(cut);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(len - i);
                v.drain(i..i + n.min(len - i));
            }
            5 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
            6 => {
                // Splice in a piece of another seed.
                let (_, other) = &others[rng.below(others.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + rng.below(other.len() - a) + 1;
                    let i = rng.below(len + 1);
                    v.splice(i..i, other[a..b].iter().copied());
                }
            }
            _ if len > 1 => {
                // Duplicate a range (repeated fields, repeated constraints).
                let a = rng.below(len);
                let b = a + 1 + rng.below((len - a).min(64));
                let piece = v[a..b.min(len)].to_vec();
                let i = rng.below(len + 1);
                v.splice(i..i, piece);
            }
            _ => {}
        }
    }
    v
}

/// A bounded, deterministic mutation loop over the seed corpus against `Request::decode`
/// and `Agent::handle`, so every `cargo test` fuzzes a little (the real fuzzers are in fuzz/).
#[test]
fn mutation_loop_over_the_seed_corpus() {
    use sshkeep::protocol::Request;
    let seeds = corpus("decode");
    let sequences = corpus("agent");
    let mut rng = XorShift(0x5eed_cafe_f00d_0001);
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut runs = 0;
    while runs < 20_000 && Instant::now() < deadline {
        let (_, seed) = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed, &seeds);
        let _ = Request::decode(&input);
        runs += 1;
        if runs % 8 == 0 {
            // A sequence: a real one with a mutated request spliced in, or mutated as a whole.
            let (_, s) = &sequences[rng.below(sequences.len())];
            let mut seq = mutate(&mut rng, s, &sequences);
            seq.push(rng.next() as u8);
            seq.extend(u32(input.len() as u32));
            seq.extend(&input);
            replay::agent_input(&seq);
        }
    }
    assert!(runs >= 1000, "only {runs} mutations ran");
}
