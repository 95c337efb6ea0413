//! A hostile client's request sequence against one agent, with an injected clock: no
//! sequence may panic, and the identity table must stay consistent with what it lists.
//! The input format and the checks are in tests/common/replay.rs, which the tests share.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/replay.rs"]
mod replay;

fuzz_target!(|data: &[u8]| replay::agent_input(data));
