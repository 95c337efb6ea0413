//! sshkeep: a small, synchronous drop-in replacement for OpenSSH's `ssh-agent`.
//!
//! The modules form a DAG, each using only those before it here: `sys` (every `unsafe`,
//! the clocks) and `log`, which use nothing of the crate; `secret` (where key material lives
//! and how it is wiped); `wire` (the SSH encoding, the one refusal type); `keys` (key types,
//! decoding, signing, sealing); `protocol` (messages, framing, and `serve`, one request from
//! the input to its reply); `dest` (destination constraints); `lock`; `agent` (the identity
//! table, one handler per message); `askpass` (confirmation prompts); `cli`; `server` (the
//! poll loop); `reuse`; `daemon` (process life; an error that stops it goes back to `main`).
#![deny(unsafe_code)]

#[macro_use]
pub mod log;

pub mod agent;
pub mod askpass;
pub mod cli;
pub mod daemon;
pub mod dest;
pub mod keys;
pub mod lock;
pub mod protocol;
pub mod reuse;
pub mod secret;
pub mod server;
pub mod sys;
pub mod wire;
