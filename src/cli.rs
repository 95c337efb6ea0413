//! The command line: a hand-written getopt for OpenSSH's `ssh-agent` flags plus sshkeep's
//! long options, the usage text, and `convtime`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::keys::FingerprintHash;

/// Which shell syntax to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    Bourne,
    Csh,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run an agent.
    Run(Options),
    /// `-k`: kill the agent named by `SSH_AGENT_PID`.
    Kill(Shell),
    /// `-V`.
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub shell: Shell,
    /// `-D` or `-d`: stay in the foreground.
    pub foreground: bool,
    /// `-d`: debug log to stderr.
    pub debug: bool,
    pub bind_address: Option<PathBuf>,
    pub fingerprint_hash: FingerprintHash,
    /// `-t`, seconds; `None` (also for `-t 0`) means forever.
    pub default_lifetime: Option<u32>,
    /// `--exit-with PID`.
    pub exit_with: Option<i32>,
    /// `--confirm-forwarded`.
    pub confirm_forwarded: bool,
    /// Command mode: the command and its arguments (empty otherwise).
    pub command: Vec<OsString>,
    /// Notices to print at start (flags accepted but without effect).
    pub notices: Vec<String>,
}

/// A command-line error: the one line to print before the usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub message: Option<String>,
    pub exit_code: u8,
    pub show_usage: bool,
}

pub const USAGE: &str = "";

pub fn parse(args: Vec<OsString>, shell_env: Option<OsString>) -> Result<Action, CliError> {
    let _ = (args, shell_env);
    todo!()
}

/// OpenSSH's `convtime`: `N[sSmMhHdDwW]...`, at most INT_MAX seconds.
pub fn convtime(s: &str) -> Option<u64> {
    let _ = s;
    todo!()
}
