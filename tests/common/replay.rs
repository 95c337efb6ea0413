//! The fuzzers' agent target, as a function: `fuzz/fuzz_targets/agent.rs` runs it under
//! libFuzzer, and `tests/hostile.rs` replays the seed corpus, the regressions and its own
//! mutations through it. Self-contained (only the sshkeep library): the fuzz crate includes this
//! file alone, through `#[path]`.
//!
//! [`agent_input`]`(data)`: a hostile client's request sequence against one agent, with an
//! injected clock. No sequence may panic, and the identity table must stay consistent with what
//! it lists. Input format, repeated: one byte of clock advance in seconds, a u32 big-endian body
//! length, the body (a request, type byte first). A short record ends the input.

use std::time::Duration;

use sshkeep::agent::{Agent, Reply, Session};
use sshkeep::askpass::KnownHosts;
use sshkeep::keys::FingerprintHash;
use sshkeep::protocol::{Request, Response};

/// Runs one agent-target input; panics when the agent misbehaves.
pub fn agent_input(data: &[u8]) {
    let mut agent = Agent::new(None, FingerprintHash::Sha256);
    // The use log and prompt lines are built from what hostile requests leave behind too.
    agent.set_log_use(true);
    let known = KnownHosts::default();
    // One round: the agent's ~0.1 s lock would leave no time for the rest.
    agent.set_kdf_rounds(1);
    let mut session = Session::default();
    let mut now = sshkeep::sys::Instant::now();
    let mut rest = data;
    while let [dt, l0, l1, l2, l3, tail @ ..] = rest {
        let len = u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize;
        let Some(body) = tail.get(..len) else { break };
        rest = &tail[len..];
        now += Duration::from_secs(u64::from(*dt));
        let Ok(req) = Request::decode(body) else {
            continue;
        };
        // A confirmation is answered from the clock byte: odd allows, even refuses.
        let pending = match agent.handle(&mut session, req, now) {
            Reply::Confirm(p) => {
                let _ = sshkeep::askpass::prompt(&p.prompt, &p.facts, "\"x\" (pid 1)", &known);
                Some(p)
            }
            Reply::Now(r) => {
                check_reply(&r);
                None
            }
            Reply::Delayed(_, r) => {
                check_reply(&r);
                None
            }
            // Held during the unlock back-off: dropped unchecked, as when its client leaves.
            Reply::Held(_) => None,
        };
        log_use_line(&mut agent, &known);
        if let Some(p) = pending {
            let r = agent.confirmed(p, dt & 1 == 1, now);
            check_reply(&r);
        }
        log_use_line(&mut agent, &known);
        // Whatever happened, listing must work and match the table's size.
        let mut session2 = Session::default();
        let listed = match agent.handle(&mut session2, Request::RequestIdentities, now) {
            Reply::Now(Response::Identities(ids)) => ids.len(),
            other => panic!("list answered {other:?}"),
        };
        if !agent.is_locked() {
            assert_eq!(listed, agent.len());
        }
    }
}

/// The use log line of the last signature request, if any: one line, whatever the request.
fn log_use_line(agent: &mut Agent, known: &KnownHosts) {
    if let Some(u) = agent.take_use() {
        let line = sshkeep::askpass::UseLine::new(&u, "\"x\" (pid 1)", known).to_string();
        assert!(!line.contains('\n'), "{line:?}");
    }
}

/// A reply encodes to one whole frame no longer than an agent may send.
fn check_reply(r: &Response<'_>) {
    let mut out = Vec::new();
    r.encode(&mut out);
    assert!(out.len() >= 5);
    assert!(out.len() - 4 <= sshkeep::protocol::MAX_MESSAGE_LEN);
}
