//! Process life: socket, fork, snippet, command mode, `-k`, cleanup.
use std::process::ExitCode;

pub fn main() -> ExitCode {
    todo!()
}
