//! Untrusted bytes into the framing layer and the request decoder: no input may panic.
//!
//! The input is one frame body (type byte first), as the seed corpus holds them; it is
//! also read as a length-prefixed frame, so both readings of the same bytes are covered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sshkeep::protocol::{Frame, Request, frame};

fuzz_target!(|data: &[u8]| {
    let _ = Request::decode(data);
    if let Frame::Complete(len) = frame(data)
        && let Some(body) = data.get(4..4 + len)
    {
        let _ = Request::decode(body);
    }
});
