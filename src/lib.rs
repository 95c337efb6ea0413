//! sshkeep: a small, synchronous drop-in replacement for OpenSSH's `ssh-agent`.
//!
//! Read from the protocol down to the OS, as OpenSSH's `ssh-agent.c` is:
//! `protocol` (bytes ↔ requests) → `dest` (destination constraints, session bindings)
//! → `agent` (the identity table, one handler per message)
//! → `server` (the poll loop) → `daemon` (socket, fork, process life) → `sys` (every `unsafe`).
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
