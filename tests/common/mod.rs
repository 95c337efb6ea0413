//! Shared fixtures for the integration tests: they start the real agent binary and drive it with
//! OpenSSH's real clients (`ssh-add`, `ssh-keygen`, `ssh`) and with raw protocol frames.
//!
//! Every test can be proved against OpenSSH's own agent:
//! `AGENT_UNDER_TEST=/usr/bin/ssh-agent cargo test --test clients`. Without that variable the agent
//! under test is this crate's `sshkeep` binary. Tests of deliberate sshkeep differences start with
//! `if !common::sshkeep_only() { return; }`.
//!
//! API (include with `mod common;` and `use common::*;`):
//!
//! - [`TempDir`]: `TempDir::new()`, `.path()`, `.join(name)`; a fresh directory (mode 0700) under
//!   `std::env::temp_dir()` with a short name (Unix socket paths are limited to 108 bytes), removed
//!   with its contents on drop.
//! - [`agent_bin`] (`AGENT_UNDER_TEST` or the `sshkeep` binary), [`is_sshkeep`], [`sshkeep_only`]
//!   (false and prints "skipped: sshkeep-only" when another agent is under test), [`release_bin`]
//!   (the `make` build, for tests where memory layout matters; `None` after a skip when missing,
//!   a failure when stale).
//! - Skips are never silent: a test that cannot run here (needs root, sshd, a tool) calls
//!   `if skip("reason and what to install") { return; }`. Under `CI=true` that panics; elsewhere
//!   the line goes to [`skip_file`], which `make test` prints at the end.
//! - [`Agent`], the one launcher of agents: `Agent::start(&["-t", "10"])` runs
//!   `<bin> -D -a <tmp>/agent.sock <args>` (no `-D` when the arguments have `-d`) with stdout and
//!   stderr captured to files, and returns once the agent answers a request on its socket (then
//!   it is in its main loop, signal handlers set). `start_env` adds environment variables (the
//!   agent gets none of `SSH_ASKPASS`, `SSH_ASKPASS_REQUIRE`, `DISPLAY`, `WAYLAND_DISPLAY`,
//!   `SSH_AUTH_SOCK`, `SSH_AGENT_PID` unless given), `start_bin(bin, args)` runs another binary
//!   (OpenSSH's agent, the release build), `start_wrapped(&["prlimit", ".."], bin, args, env)` runs
//!   it under a wrapper that execs it. [`Agent::launch`]`(Launch { .., ..Launch::default() })`
//!   takes all of those and more: variables to remove, the socket path, a user and working
//!   directory, and socket activation (`listener`: fd 3, `LISTEN_FDS`, `LISTEN_PID`, as systemd
//!   starts it). `.sock()`, `.sock_str()`, `.pid()`, `.dir()` (its temp dir, free for keys),
//!   `.stdout_text()`, `.stderr_text()`, `.is_running()`, `.exit_status()`, `.stop()` (SIGTERM,
//!   returns the exit status). Drop sends SIGTERM, then SIGKILL after a deadline, and waits.
//!   [`answers`]`(sock)`: whether an agent answers a request on `sock` (a raw probe with a
//!   timeout).
//! - [`run`]`(cmd, args, env)`: runs a program with stdin on `/dev/null` and returns its `Output`;
//!   the variables listed above are removed from its environment unless `env` gives them, and a
//!   command still running after [`RUN_DEADLINE`] is killed and fails the test. [`scrub_env`]
//!   cleans any `Command` the same way. [`ssh_add`]`(agent, args)` and [`ssh_add_env`] run
//!   `ssh-add` against an agent. [`stdout`]/[`stderr`] give an `Output`'s text; [`expect_ok`]
//!   panics (with both) unless it succeeded.
//! - Keys: [`keygen`]`(dir, kind)` with kind `ed25519`, `ecdsa-256`, `ecdsa-384`, `ecdsa-521`,
//!   `rsa-1024`, `rsa-2048`, `rsa-3072`, `rsa-4096` or `dsa`, returns the private key's path (the
//!   public key is beside it with `.pub`; file `id_<kind>[_n]`, comment
//!   `<file name>@sshkeep-test`). RSA-4096 comes from a per-process cache and `rsa-8192` is
//!   [`RSA_8192`]: every call gives the same key material under a new comment. ECDSA keys are
//!   ones ssh-key reads ([`ssh_key_reads`]); [`ssh_keygen`] runs `ssh-keygen` once.
//!   [`keygen_named`] chooses file name and comment. [`fingerprint`]`(path)` is the line
//!   `ssh-keygen -lf` prints (as `ssh-add -l` prints it), [`pub_line`] the `.pub` contents without
//!   the newline, [`key_fields`] its type and base64 fields, [`pub_blob`] the decoded key blob,
//!   [`certify`]`(ca, key_pub, principals)` signs a user certificate and returns the `-cert.pub`
//!   path, [`sign_certificate`] any certificate (`-h`, `-V`, ...).
//! - [`copy_executable`]`(src, dst)` and [`write_executable`]`(path, text)` make files to execute
//!   without the ETXTBSY race (a file written by this process can be held open by a child another
//!   test thread forks meanwhile, and then cannot be executed).
//! - [`wait_until`]`(deadline, || cond)` polls until the condition holds or the deadline passes;
//!   [`wait_child`]`(child, deadline)` waits so for a child's exit status; [`cpu_time`]`(pid)`.
//!   [`pid_alive`]`(pid)` (false for zombies), [`KillOnDrop`]`(pid)` SIGTERMs a background agent
//!   (e.g. one started with `-s`) when a test ends, however it ends; [`Reaped`]`(child)` stops and
//!   reaps a child that is not an agent.
//! - Raw protocol: [`RawClient`] (`connect`, `from_stream`, `send_frame`, `send_raw`,
//!   `try_send_raw`, `recv_frame`, `request`, `is_closed`, `set_timeout`, `stream`), encoders
//!   [`string`], [`u32`] and [`frame`], [`Reader`] to parse replies, [`parse_identities`],
//!   [`base64_encode`]/[`base64_decode`], message numbers (`SSH_AGENT_FAILURE`, ...).
//! - [`LoadedAgent`]: an agent holding one key of each of [`LOADED`] (`ssh-add`), for cases that
//!   send something and then `.check(case)` that it still runs and lists exactly those keys;
//!   `.expect_failure(case, bytes)` (one FAILURE, the connection still usable),
//!   `.expect_closed(case, bytes)`, `.add_and_remove(..)`, `.assert_usable(client)`, `.key(kind)`,
//!   `.blob(kind)`; `.finish()` reports every case that got something other than FAILURE.
//! - [`Sshd`]: `Sshd::start(&[key_pub], trusted_user_ca, &["extra config line"])` runs
//!   `/usr/sbin/sshd -D -e` on a free port of 127.0.0.1 with its own config, host key and
//!   `AuthorizedKeysFile` (or `none` when no key is given), agent forwarding allowed;
//!   [`Sshd::builder`] adds `.alias("hosta")` (the name clients know it by), `.host_cert(ca,
//!   principal)` and the rest, then `.start()`; start several for forwarding hops.
//!   `.ssh(agent, &["-o", ".."], "cmd")` logs in as root with only the agent's keys (host key
//!   unchecked), `.ssh_known(agent, known_hosts, ..)` checks the host key strictly under its
//!   alias, `.ssh_args`/`.ssh_known_args` give those arguments for a `Command` of your own,
//!   `.ssh_command_line(known_hosts, cmd)` the line for a remote shell; `.host_key_pub()`,
//!   `.known_hosts_line()`, `.accepted()`, `.log_text()`. [`can_run_sshd`] is false (after a
//!   [`skip`]) when not root or without sshd. [`free_port`], [`sh_quote`].
//! - [`memscan`]: the secret forms of a key file, a root scan of a process's memory for them, and
//!   the release binary to scan.
//! - `replay.rs`: the fuzzers' agent target as a function, for replaying their inputs. Not a
//!   submodule: it links the sshkeep library, and with it the agent's wiping allocator, into what
//!   includes it, so `tests/hostile.rs` and the fuzz target include it with `#[path]` and
//!   the other tests and the benchmark keep the system allocator.
//! - For measurements (`benches/agents.rs` includes this module too), with errors as values and
//!   no [`skip`]: `Agent::try_launch(Launch { poll: Some(..), .. })` polls the socket every
//!   `poll` (zero: no sleep) and `.started_in()` says how long the agent took to answer;
//!   [`poll_until`]`(deadline, every, || cond)`; `RawClient::try_connect(sock, timeout)` and
//!   `.call(payload)` (one request, its reply; no allocation once its buffers have grown);
//!   `Reader::try_u32`/`.try_string()` (`None` on short data); [`status_kib`]`(pid, "VmRSS")`.
#![allow(dead_code)]

pub mod memscan;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a fixture waits for a process to come up or go away before giving up.
pub const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long `Drop` waits after SIGTERM before SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// Variables that change how OpenSSH's tools and the agent behave; removed unless a test gives them.
const SCRUBBED_ENV: &[&str] = &[
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "SSH_ASKPASS",
    "SSH_ASKPASS_REQUIRE",
    "DISPLAY",
    "WAYLAND_DISPLAY",
];

// Agent protocol message numbers (RFC 9987).
pub const SSH_AGENT_FAILURE: u8 = 5;
pub const SSH_AGENT_SUCCESS: u8 = 6;
pub const SSH_AGENTC_REMOVE_ALL_RSA_IDENTITIES: u8 = 9;
pub const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
pub const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
pub const SSH_AGENTC_SIGN_REQUEST: u8 = 13;
pub const SSH_AGENT_SIGN_RESPONSE: u8 = 14;
pub const SSH_AGENTC_ADD_IDENTITY: u8 = 17;
pub const SSH_AGENTC_REMOVE_IDENTITY: u8 = 18;
pub const SSH_AGENTC_REMOVE_ALL_IDENTITIES: u8 = 19;
pub const SSH_AGENTC_LOCK: u8 = 22;
pub const SSH_AGENTC_UNLOCK: u8 = 23;
pub const SSH_AGENTC_ADD_ID_CONSTRAINED: u8 = 25;
pub const SSH_AGENTC_EXTENSION: u8 = 27;
pub const SSH_AGENT_EXTENSION_FAILURE: u8 = 28;
pub const SSH_AGENT_EXTENSION_RESPONSE: u8 = 29;
pub const SSH_AGENT_RSA_SHA2_256: u32 = 2;
pub const SSH_AGENT_RSA_SHA2_512: u32 = 4;
/// AGENT_MAX_LEN: the largest frame body an agent accepts.
pub const MAX_MESSAGE_LEN: usize = 256 * 1024;

// ---------------------------------------------------------------------------------------------
// Temporary directories

/// A fresh private directory, removed with its contents on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = base.join(format!("skt{}-{n}-{:x}", std::process::id(), nanos & 0xfff));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
                    return TempDir(path);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create a directory in {}: {e}", base.display()),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// The agent under test

/// The agent binary: `$AGENT_UNDER_TEST`, or this crate's `sshkeep`.
pub fn agent_bin() -> PathBuf {
    match std::env::var_os("AGENT_UNDER_TEST") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_sshkeep")),
    }
}

/// True when the agent under test is sshkeep (no `AGENT_UNDER_TEST`).
pub fn is_sshkeep() -> bool {
    std::env::var_os("AGENT_UNDER_TEST").is_none_or(|p| p.is_empty())
}

/// For tests of deliberate sshkeep differences: false (with a note) when another agent is under test.
/// Not a [`skip`]: against another agent these tests do not apply, even in CI.
pub fn sshkeep_only() -> bool {
    let yes = is_sshkeep();
    if !yes {
        println!("skipped: sshkeep-only");
    }
    yes
}

/// Where [`skip`] records skipped tests: `$SSHKEEP_SKIPPED` (`make test` sets it), else
/// `skipped-tests.txt` in the target directory. `make test` empties it first and prints it last.
pub fn skip_file() -> PathBuf {
    if let Some(p) = std::env::var_os("SSHKEEP_SKIPPED").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    target_dir().join("skipped-tests.txt")
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target/` beside Cargo.toml.
pub fn target_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("CARGO_TARGET_DIR").filter(|p| !p.is_empty()) {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// Whether this is a CI run (`CI=true`), where every test that needs root or sshd must run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A test that cannot run here calls `if skip("why, and what to install or run") { return; }`.
/// Under `CI=true` that is a failure: it panics with the reason. Elsewhere it appends
/// "<test file>::<test>: <reason>" to [`skip_file`], which `make test` prints at the end (a
/// `println!` is captured and never seen), and returns true.
#[track_caller]
pub fn skip(reason: &str) -> bool {
    // libtest names each test's thread after the test (unless it runs them on "main").
    let test = match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => std::panic::Location::caller().to_string(),
    };
    let line = format!("{}::{test}: {reason}", env!("CARGO_CRATE_NAME"));
    if in_ci() {
        panic!("{line} (CI=true: a test that cannot run is a failure)");
    }
    println!("skipped: {reason}");
    let path = skip_file();
    if let Some(dir) = path.parent() {
        let _ = fs::create_dir_all(dir);
    }
    // One write per line with O_APPEND: lines of parallel tests do not interleave.
    let written = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "skipped: {line} (cannot record it in {}: {e})",
            path.display()
        );
    }
    true
}

/// The release binary (`make`: LTO, panic=abort, stripped), the one users run: memory layout
/// tests must scan it, not the debug build. `$SSHKEEP_RELEASE_BIN`, else `release/sshkeep` in
/// the target directory. `None` (after [`skip`], which fails under CI) when it is missing; a
/// failure when it is older than a file in `src/` or `Cargo.toml`/`Cargo.lock` (it would test
/// other code than this). Run `make` first; `make test` does.
pub fn release_bin() -> Option<PathBuf> {
    let bin = match std::env::var_os("SSHKEEP_RELEASE_BIN").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => target_dir().join("release").join("sshkeep"),
    };
    let built = match fs::metadata(&bin).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(_) => {
            skip(&format!(
                "needs the release binary {}: run `make` (or `make test`)",
                bin.display()
            ));
            return None;
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![root.join("Cargo.toml"), root.join("Cargo.lock")];
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                sources.push(path);
            }
        }
    }
    let newer = sources.iter().find(|p| {
        fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > built)
    });
    if let Some(newer) = newer {
        panic!(
            "the release binary {} is older than {}: run `make` (or `make test`)",
            bin.display(),
            newer.display()
        );
    }
    Some(bin)
}

/// Copies `src` to `dst` (mode 0755) for a program to execute. The copy is written by a `cp`
/// child, never through a descriptor of this process: a file this process writes is open for
/// writing while other test threads fork, a child forked then holds that descriptor until it
/// execs, and executing the file meanwhile fails with ETXTBSY ("Text file busy"; a shell
/// reports exit status 126). With `cp`, no process of ours ever holds it open.
pub fn copy_executable(src: &Path, dst: &Path) {
    let out = Command::new("cp")
        .arg(src)
        .arg(dst)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cp: {e}"));
    expect_ok(&out);
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Writes an executable file (a script) at `path` without the ETXTBSY race of writing it
/// here (see [`copy_executable`]): the contents go to `<path>.src`, which is never executed,
/// and `cp` makes the executable.
pub fn write_executable(path: &Path, contents: &str) {
    let mut src = path.as_os_str().to_owned();
    src.push(".src");
    let src = PathBuf::from(src);
    fs::write(&src, contents).unwrap();
    copy_executable(&src, path);
}

/// Writes the shell script `#!/bin/sh\n<body>` as `dir/name` (through [`write_executable`]) and
/// returns its path.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    write_executable(&path, &format!("#!/bin/sh\n{body}\n"));
    path
}

/// How often [`wait_until`] and [`Agent::launch`] poll.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `cond` every [`POLL`] until it holds (true) or `deadline` has passed (false).
pub fn wait_until(deadline: Duration, cond: impl FnMut() -> bool) -> bool {
    poll_until(deadline, POLL, cond)
}

/// As [`wait_until`], polling every `every`; zero yields the CPU between polls instead of
/// sleeping (for timings, where a sleep would be measured too).
pub fn poll_until(deadline: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        if every.is_zero() {
            std::thread::yield_now();
        } else {
            std::thread::sleep(every);
        }
    }
}

/// Waits for `child` to exit, up to `deadline`: its status, or `None` while it still runs.
pub fn wait_child(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(deadline, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status
}

/// Whether process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// The CPU time process `pid` (its main thread: the agent has one) has used so far, from
/// /proc/PID/schedstat.
pub fn cpu_time(pid: u32) -> Duration {
    let s = fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
}

/// A field of `/proc/<pid>/status` counted in kB (`"VmRSS"`, `"VmHWM"`, ...), in KiB; `None` when
/// the process or the field is not there.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    value.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// SIGTERMs process `pid` on drop unless it is gone already (0 = nothing to do).
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 != 0 && pid_alive(self.0) {
            let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGTERM);
        }
    }
}

/// A child process that is not an agent ([`Agent`] is for those), stopped on drop: SIGTERM,
/// SIGKILL after a deadline, reaped.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

/// Sends SIGTERM, waits up to [`STOP_DEADLINE`], then SIGKILLs; returns the exit status.
fn terminate(child: &mut Child) -> ExitStatus {
    if let Ok(Some(status)) = child.try_wait() {
        return status;
    }
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let mut status = None;
    wait_until(STOP_DEADLINE, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            child.wait().unwrap()
        }
    }
}

/// How [`Agent::launch`] starts an agent; every field has a default (`Launch::default()`): the
/// agent under test as `<bin> -D -a <its temp dir>/agent.sock`, in the scrubbed environment.
#[derive(Default)]
pub struct Launch<'a> {
    /// The binary; [`agent_bin`] when `None`.
    pub bin: Option<&'a Path>,
    /// A command run with the binary and its arguments after it (`prlimit ...`, `sh -c '...;
    /// exec "$0" "$@"'`); it must exec the agent, so that the child's pid is the agent's.
    pub wrapper: &'a [&'a str],
    /// Arguments after `-D -a <sock>` (`-D` is left out when they have `-d`).
    pub args: &'a [&'a str],
    /// Variables set after [`SCRUBBED_ENV`] is removed.
    pub env: &'a [(&'a str, &'a str)],
    /// Variables removed besides [`SCRUBBED_ENV`].
    pub env_remove: &'a [&'a str],
    /// The socket path instead of `agent.sock` in the agent's temp dir.
    pub sock: Option<&'a Path>,
    /// Socket activation: the agent gets this listener as fd 3, `LISTEN_FDS=1` and `LISTEN_PID`
    /// its own pid, as systemd starts it, and no `-a`; its socket is the listener's path. The
    /// test may close its own copy once `launch` returns.
    pub listener: Option<&'a UnixListener>,
    /// Runs the agent as this (uid, gid) (as root, without supplementary groups).
    pub user: Option<(u32, u32)>,
    /// The working directory; the test's when `None`.
    pub cwd: Option<&'a Path>,
    /// How often the socket is polled until the agent answers; [`POLL`] when `None`, zero
    /// without sleeping (for a caller that times the start-up: [`Agent::started_in`]).
    pub poll: Option<Duration>,
}

/// A running agent (`<bin> -D -a <dir>/agent.sock <args>`), stopped on drop.
pub struct Agent {
    child: Child,
    sock: PathBuf,
    status: Option<ExitStatus>,
    started_in: Duration,
    // Last field: dropped after the process is gone.
    dir: TempDir,
}

impl Agent {
    pub fn start(args: &[&str]) -> Agent {
        Agent::start_env(args, &[])
    }

    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Agent {
        Agent::launch(Launch {
            args,
            env,
            ..Launch::default()
        })
    }

    /// As [`Agent::start`], with another binary (e.g. [`release_bin`]).
    pub fn start_bin(bin: &Path, args: &[&str]) -> Agent {
        Agent::launch(Launch {
            bin: Some(bin),
            args,
            ..Launch::default()
        })
    }

    /// `wrapper... <bin> -D -a <sock> <args>`: the wrapper (e.g. `prlimit ...` or `setpriv ...`)
    /// must exec the agent, so that the child's pid is the agent's.
    pub fn start_wrapped(
        wrapper: &[&str],
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        Agent::launch(Launch {
            bin: Some(bin),
            wrapper,
            args,
            env,
            ..Launch::default()
        })
    }

    /// Starts an agent as `how` says, its stdout and stderr captured to files in its temp dir,
    /// and returns once it answers a request on its socket (then it is in its main loop, signal
    /// handlers set; the socket accepts connections before that). Panics with its output when
    /// it does not come up.
    pub fn launch(how: Launch) -> Agent {
        Agent::try_launch(how).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Agent::launch`], with an error instead of a panic.
    pub fn try_launch(how: Launch) -> Result<Agent, String> {
        let dir = TempDir::new();
        let default_bin = agent_bin();
        let bin = how.bin.unwrap_or(&default_bin);
        let activation = ["sh", "-c", ACTIVATE];
        let wrapper = match how.listener {
            Some(_) => &activation[..],
            None => how.wrapper,
        };
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        // -d (debug, in the foreground) replaces -D: the two exclude each other.
        if !how.args.contains(&"-d") {
            cmd.arg("-D");
        }
        let sock = match (how.listener, how.sock) {
            (Some(l), _) => l.local_addr().unwrap().as_pathname().unwrap().to_path_buf(),
            (None, Some(sock)) => sock.to_path_buf(),
            (None, None) => dir.join("agent.sock"),
        };
        if how.listener.is_none() {
            cmd.arg("-a").arg(&sock);
        }
        cmd.args(how.args);
        for var in how.env_remove {
            cmd.env_remove(var);
        }
        scrub_env(&mut cmd, how.env);
        if let Some((uid, gid)) = how.user {
            cmd.uid(uid).gid(gid);
        }
        if let Some(cwd) = how.cwd {
            cmd.current_dir(cwd);
        }
        if let Some(listener) = how.listener {
            cmd.env_remove("LISTEN_FDNAMES");
            pass_as_fd_3(&mut cmd, listener);
        }
        let output = |name: &str| {
            let path = dir.join(name);
            fs::File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))
        };
        cmd.stdin(Stdio::null())
            .stdout(output("agent.stdout")?)
            .stderr(output("agent.stderr")?);
        let t0 = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        // The command holds a copy of the listener until it is dropped.
        drop(cmd);
        let mut agent = Agent {
            child,
            sock,
            status: None,
            started_in: Duration::ZERO,
            dir,
        };
        let up = poll_until(START_DEADLINE, how.poll.unwrap_or(POLL), || {
            answers(&agent.sock) || !agent.is_running()
        });
        agent.started_in = t0.elapsed();
        if !up || !agent.is_running() {
            return Err(format!(
                "agent {} {:?} did not come up (status {:?})\nstdout: {}\nstderr: {}",
                bin.display(),
                how.args,
                agent.status,
                agent.stdout_text(),
                agent.stderr_text()
            ));
        }
        Ok(agent)
    }

    /// How long the agent took from its start to its first answer.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    pub fn sock(&self) -> &Path {
        &self.sock
    }

    pub fn sock_str(&self) -> &str {
        self.sock.to_str().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The agent's private temp dir (holds the socket and the captured output; free for keys).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn stdout_text(&self) -> String {
        fs::read_to_string(self.dir.join("agent.stdout")).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(self.dir.join("agent.stderr")).unwrap_or_default()
    }

    /// Whether the process is still running (reaps it when it has exited).
    pub fn is_running(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status.is_none()
    }

    /// The exit status once the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.is_running();
        self.status
    }

    /// SIGTERM (then SIGKILL after a deadline); returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(s) = self.exit_status() {
            return s;
        }
        let s = terminate(&mut self.child);
        self.status = Some(s);
        s
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The wrapper of a socket-activated agent: `exec` keeps the shell's pid, so `$$` is the
/// agent's pid.
const ACTIVATE: &str =
    r#"LISTEN_PID=$$ LISTEN_FDS=1; export LISTEN_PID LISTEN_FDS; exec "$0" "$@""#;

/// Makes a copy of `listener` the child's fd 3, as systemd passes it; `cmd` holds the copy
/// until it is dropped.
fn pass_as_fd_3(cmd: &mut Command, listener: &UnixListener) {
    let listener = listener.try_clone().unwrap();
    // SAFETY: between fork and exec the closure calls only dup2 and fcntl, which are
    // async-signal-safe, and touches no memory the parent's other threads could hold locked.
    unsafe {
        cmd.pre_exec(move || {
            let fd = listener.as_raw_fd();
            // dup2 onto itself would keep FD_CLOEXEC, so clear it by hand in that case.
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Whether an agent listens on `sock` and answers REQUEST_IDENTITIES (a raw client with a
/// timeout: connecting to a listener nobody accepts from succeeds, and `ssh-add` would then
/// wait for its answer forever).
pub fn answers(sock: &Path) -> bool {
    let Ok(stream) = UnixStream::connect(sock) else {
        return false;
    };
    let mut c = RawClient::from_stream(stream);
    c.set_timeout(Duration::from_secs(1));
    c.try_send_raw(&frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]))
        .is_ok()
        && c.recv_frame().is_some()
}

// ---------------------------------------------------------------------------------------------
// Running OpenSSH's tools

/// Removes [`SCRUBBED_ENV`] from `cmd`'s environment, then sets `env`.
pub fn scrub_env(cmd: &mut Command, env: &[(&str, &str)]) {
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
}

/// How long [`run`] lets a command take before it kills it and fails the test.
pub const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `cmd args` with stdin on /dev/null; [`SCRUBBED_ENV`] is removed unless `env` gives it.
/// Output goes through files (a background process keeping them open cannot stall the test); a
/// command still running after [`RUN_DEADLINE`] is killed and the test fails.
pub fn run(cmd: impl AsRef<std::ffi::OsStr>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let cmd = cmd.as_ref();
    let out = TempDir::new();
    let mut c = Command::new(cmd);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(out.join("stdout")).unwrap())
        .stderr(fs::File::create(out.join("stderr")).unwrap());
    scrub_env(&mut c, env);
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let Some(status) = wait_child(&mut child, RUN_DEADLINE) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} {args:?} still running after {RUN_DEADLINE:?}");
    };
    Output {
        status,
        stdout: fs::read(out.join("stdout")).unwrap(),
        stderr: fs::read(out.join("stderr")).unwrap(),
    }
}

/// `ssh-add args` against `agent`.
pub fn ssh_add(agent: &Agent, args: &[&str]) -> Output {
    ssh_add_env(agent, args, &[])
}

/// `ssh-add args` against `agent`, with more environment variables.
pub fn ssh_add_env(agent: &Agent, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all = vec![("SSH_AUTH_SOCK", agent.sock_str())];
    all.extend_from_slice(env);
    run("ssh-add", args, &all)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Panics with the output unless the command succeeded; returns it for chaining.
#[track_caller]
pub fn expect_ok(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "command failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Keys

/// `ssh-keygen` arguments for a key kind.
fn kind_args(kind: &str) -> &'static [&'static str] {
    match kind {
        "ed25519" => &["-t", "ed25519"],
        "ecdsa-256" | "ecdsa" => &["-t", "ecdsa", "-b", "256"],
        "ecdsa-384" => &["-t", "ecdsa", "-b", "384"],
        "ecdsa-521" => &["-t", "ecdsa", "-b", "521"],
        "rsa-1024" => &["-t", "rsa", "-b", "1024"],
        "rsa-2048" => &["-t", "rsa", "-b", "2048"],
        "rsa-3072" | "rsa" => &["-t", "rsa", "-b", "3072"],
        "rsa-4096" => &["-t", "rsa", "-b", "4096"],
        "dsa" => &["-t", "dsa"],
        _ => panic!("unknown key kind {kind}"),
    }
}

/// Generates a key of `kind` in `dir` under a free name `id_<kind>[_n]`; returns the private key path.
pub fn keygen(dir: &Path, kind: &str) -> PathBuf {
    let mut name = format!("id_{kind}");
    let mut n = 1;
    while dir.join(&name).exists() {
        n += 1;
        name = format!("id_{kind}_{n}");
    }
    let comment = format!("{name}@sshkeep-test");
    keygen_named(dir, kind, &name, &comment)
}

/// A throwaway RSA-8192 key, the unit tests' own (`ssh-keygen -b 8192` takes many seconds).
pub const RSA_8192: &str = include_str!("../../src/keys/testdata/rsa-8192");

/// Generates a key of `kind` as `dir/name` (and `name.pub`) with `comment`. RSA-4096 is
/// generated once per process and copied; RSA-8192 is [`RSA_8192`], copied.
pub fn keygen_named(dir: &Path, kind: &str, name: &str, comment: &str) -> PathBuf {
    let path = dir.join(name);
    let private: &[u8] = match kind {
        "rsa-4096" => {
            // Generating RSA-4096 takes about a second.
            static CACHE: OnceLock<Vec<u8>> = OnceLock::new();
            CACHE.get_or_init(|| {
                let tmp = TempDir::new();
                let p = generate(tmp.path(), kind, "rsa4096", "cached");
                fs::read(p).unwrap()
            })
        }
        "rsa-8192" => RSA_8192.as_bytes(),
        _ => return generate(dir, kind, name, comment),
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .unwrap();
    f.write_all(private).unwrap();
    drop(f);
    // -c rewrites the comment of the private key file and writes the .pub beside it.
    let p = path.to_str().unwrap();
    expect_ok(&run(
        "ssh-keygen",
        &["-q", "-c", "-C", comment, "-f", p],
        &[],
    ));
    path
}

/// `ssh-keygen` once: a key of `kind` as `dir/name`, replacing one there.
pub fn ssh_keygen(dir: &Path, kind: &str, name: &str, comment: &str) -> PathBuf {
    let path = dir.join(name);
    let _ = fs::remove_file(&path);
    let _ = fs::remove_file(pub_path(&path));
    let mut args = vec!["-q", "-N", "", "-C", comment, "-f", path.to_str().unwrap()];
    args.extend_from_slice(kind_args(kind));
    expect_ok(&run("ssh-keygen", &args, &[]));
    path
}

/// Whether ssh-key, with which the tests read key files (the memory scans take a key's
/// secrets from its file), reads this one. It refuses an ECDSA key whose scalar ssh-keygen
/// wrote shorter than the field, a zero top byte: about one P-256 key in 256. The agent
/// takes those keys (tests/clients.rs).
pub fn ssh_key_reads(path: &Path) -> bool {
    ssh_key::PrivateKey::read_openssh_file(path).is_ok()
}

/// `ssh_keygen`, again for the ECDSA key ssh-key cannot read (`ssh_key_reads`): so that a
/// test reading its key never fails one run in a few hundred.
fn generate(dir: &Path, kind: &str, name: &str, comment: &str) -> PathBuf {
    for _ in 0..64 {
        let path = ssh_keygen(dir, kind, name, comment);
        if !kind.starts_with("ecdsa") || ssh_key_reads(&path) {
            return path;
        }
    }
    panic!("ssh-key read none of 64 {kind} keys ssh-keygen made");
}

/// `path` with `.pub` appended (the public key beside a private key).
pub fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// `path` with `-cert.pub` appended (the certificate `ssh-add` looks for beside a private key).
pub fn cert_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push("-cert.pub");
    PathBuf::from(s)
}

/// The line `ssh-keygen -lf path` prints, as `ssh-add -l` prints it: `256 SHA256:... comment (ED25519)`.
pub fn fingerprint(path: &Path) -> String {
    let out = run("ssh-keygen", &["-lf", path.to_str().unwrap()], &[]);
    stdout(expect_ok(&out)).trim_end().to_string()
}

/// A public key file's single line (type, base64, comment), without the newline.
pub fn pub_line(pub_file: &Path) -> String {
    fs::read_to_string(pub_file).unwrap().trim_end().to_string()
}

/// The key blob of a public key (or certificate) file.
pub fn pub_blob(pub_file: &Path) -> Vec<u8> {
    let line = pub_line(pub_file);
    let b64 = line.split_whitespace().nth(1).unwrap();
    base64_decode(b64).unwrap()
}

/// Signs `key_pub` as a user certificate for `principals` (comma-separated) with the private key
/// `ca`; returns the certificate's path (`<key>-cert.pub`).
pub fn certify(ca: &Path, key_pub: &Path, principals: &str) -> PathBuf {
    sign_certificate(ca, key_pub, "sshkeep-test-cert", &["-n", principals])
}

/// `ssh-keygen -s ca -I identity <args> key_pub` (e.g. `-h` for a host certificate, `-n
/// principals`, `-V interval`); returns the certificate's path (`<key>-cert.pub`).
pub fn sign_certificate(ca: &Path, key_pub: &Path, identity: &str, args: &[&str]) -> PathBuf {
    let (ca, key) = (ca.to_str().unwrap(), key_pub.to_str().unwrap());
    let mut all = vec!["-q", "-s", ca, "-I", identity];
    all.extend_from_slice(args);
    all.push(key);
    expect_ok(&run("ssh-keygen", &all, &[]));
    PathBuf::from(format!(
        "{}-cert.pub",
        key.strip_suffix(".pub").unwrap_or(key)
    ))
}

/// The first two fields of a public key file (type and base64 blob), without the comment: what
/// a known_hosts or allowed_signers line holds.
pub fn key_fields(pub_file: &Path) -> String {
    let line = pub_line(pub_file);
    let mut f = line.split_whitespace();
    format!("{} {}", f.next().unwrap(), f.next().unwrap())
}

// ---------------------------------------------------------------------------------------------
// Wire encoding

/// An SSH `string`: u32 big-endian length, then the bytes.
pub fn string(b: &[u8]) -> Vec<u8> {
    let mut v = u32(b.len() as u32);
    v.extend_from_slice(b);
    v
}

/// A u32, big-endian.
pub fn u32(n: u32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// A whole frame: length, type, body.
pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = u32(body.len() as u32 + 1);
    v.push(kind);
    v.extend_from_slice(body);
    v
}

/// Parses SSH wire data; panics on short input (tests only).
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().expect("short data");
        self.0 = rest;
        *b
    }

    pub fn u32(&mut self) -> u32 {
        self.try_u32().expect("short data")
    }

    pub fn string(&mut self) -> &'a [u8] {
        self.try_string().expect("short data")
    }

    /// As [`Reader::u32`], `None` on short data (for a caller that reports a bad reply).
    pub fn try_u32(&mut self) -> Option<u32> {
        let (b, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*b))
    }

    /// As [`Reader::string`], `None` on short data.
    pub fn try_string(&mut self) -> Option<&'a [u8]> {
        let (n, rest) = self.0.split_first_chunk::<4>()?;
        let (b, rest) = rest.split_at_checked(u32::from_be_bytes(*n) as usize)?;
        self.0 = rest;
        Some(b)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The (key blob, comment) pairs of an IDENTITIES_ANSWER frame (type byte first).
pub fn parse_identities(reply: &[u8]) -> Vec<(Vec<u8>, String)> {
    let mut r = Reader(reply);
    assert_eq!(
        r.u8(),
        SSH_AGENT_IDENTITIES_ANSWER,
        "not an identities answer: {reply:?}"
    );
    let n = r.u32();
    let ids = (0..n)
        .map(|_| {
            let blob = r.string().to_vec();
            let comment = String::from_utf8(r.string().to_vec()).unwrap();
            (blob, comment)
        })
        .collect();
    assert!(r.is_empty(), "trailing bytes in identities answer");
    ids
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Raw protocol client

/// A raw connection to an agent socket. Reads time out (5 s by default) instead of hanging.
pub struct RawClient {
    stream: UnixStream,
    pending: Vec<u8>,
    /// The last request and reply of [`RawClient::call`], kept for their capacity.
    out: Vec<u8>,
    reply: Vec<u8>,
}

impl RawClient {
    pub fn connect(sock: &Path) -> RawClient {
        RawClient::from_stream(UnixStream::connect(sock).unwrap())
    }

    /// Either end of a connection: e.g. one a test's own listener accepted from a client.
    pub fn from_stream(stream: UnixStream) -> RawClient {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        RawClient::with_stream(stream)
    }

    /// Connects with reads and writes timing out after `timeout`; an error instead of a panic.
    pub fn try_connect(sock: &Path, timeout: Duration) -> Result<RawClient, String> {
        let stream = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| format!("socket timeout: {e}"))?;
        Ok(RawClient::with_stream(stream))
    }

    fn with_stream(stream: UnixStream) -> RawClient {
        RawClient {
            stream,
            pending: Vec::new(),
            out: Vec::new(),
            reply: Vec::new(),
        }
    }

    pub fn set_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Sends `payload` (type byte first) with its length prefix.
    pub fn send_frame(&mut self, payload: &[u8]) {
        let mut v = u32(payload.len() as u32);
        v.extend_from_slice(payload);
        self.send_raw(&v);
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes).unwrap();
    }

    /// Sends bytes as they are; the agent may have closed the connection already.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        (&self.stream).write_all(bytes)
    }

    /// Reads into `pending`; Ok(false) at end of stream.
    fn fill(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; 65536];
        let n = (&self.stream).read(&mut buf)?;
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n > 0)
    }

    /// The next reply frame (type byte first), or None on end of stream, error or timeout.
    pub fn recv_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.pending.len() >= 4 {
                let n = u32::from_be_bytes(self.pending[..4].try_into().unwrap()) as usize;
                if self.pending.len() >= 4 + n {
                    let f = self.pending[4..4 + n].to_vec();
                    self.pending.drain(..4 + n);
                    return Some(f);
                }
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) | Err(_) => return None,
            }
        }
    }

    /// Sends one request (`payload`, type byte first) and returns its reply (type byte first),
    /// for measurements: an error is a value, not a panic, and a request costs one send and two
    /// reads and, once the buffers have grown, no allocation. Not for a connection with bytes
    /// received for [`RawClient::recv_frame`] and not yet taken.
    pub fn call(&mut self, payload: &[u8]) -> Result<&[u8], String> {
        if !self.pending.is_empty() {
            return Err("call: unread bytes of an earlier reply".into());
        }
        let len = u32::try_from(payload.len()).map_err(|_| "call: request too long")?;
        self.out.clear();
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(payload);
        (&self.stream)
            .write_all(&self.out)
            .map_err(|e| self.io_error("send", &e))?;
        let mut len = [0u8; 4];
        (&self.stream)
            .read_exact(&mut len)
            .map_err(|e| self.io_error("receive", &e))?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_MESSAGE_LEN {
            return Err(format!("reply of {len} bytes"));
        }
        self.reply.resize(len, 0);
        (&self.stream)
            .read_exact(&mut self.reply)
            .map_err(|e| self.io_error("receive", &e))?;
        Ok(&self.reply)
    }

    /// What `e` means for a [`RawClient::call`] that failed to `what` (send or receive).
    fn io_error(&self, what: &str, e: &io::Error) -> String {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => format!("{what}: agent closed the connection"),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                let t = self.stream.read_timeout().ok().flatten();
                format!(
                    "{what}: no reply within {} s",
                    t.unwrap_or_default().as_secs()
                )
            }
            _ => format!("{what}: {e}"),
        }
    }

    /// Sends a request and returns the reply frame; panics when there is none.
    #[track_caller]
    pub fn request(&mut self, kind: u8, body: &[u8]) -> Vec<u8> {
        self.send_raw(&frame(kind, body));
        self.recv_frame()
            .unwrap_or_else(|| panic!("no reply to request type {kind}"))
    }

    /// True when the agent has closed the connection (waits up to the read timeout for it).
    /// Bytes that arrive meanwhile are kept for `recv_frame`.
    pub fn is_closed(&mut self) -> bool {
        loop {
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return true,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// An agent holding keys, checked after every case

/// The kinds of the keys a [`LoadedAgent`] holds, in the order they are added.
pub const LOADED: [&str; 3] = ["ed25519", "ecdsa-256", "rsa-2048"];

/// An agent holding one key of each of [`LOADED`] (added with `ssh-add`), for tests that send
/// it something and then check that it still runs and holds exactly those keys. Cases it got
/// wrong without dying are recorded by [`LoadedAgent::expect_failure`] and reported together
/// by [`LoadedAgent::finish`].
pub struct LoadedAgent {
    pub agent: Agent,
    /// The key files, in [`LOADED`] order.
    pub keys: Vec<PathBuf>,
    /// `ssh-add -l` right after loading.
    listing: String,
    /// The key blobs listed right after loading.
    blobs: Vec<Vec<u8>>,
    problems: Vec<String>,
}

impl LoadedAgent {
    pub fn start() -> LoadedAgent {
        let agent = Agent::start(&[]);
        let keys: Vec<PathBuf> = LOADED.iter().map(|k| keygen(agent.dir(), k)).collect();
        for key in &keys {
            expect_ok(&ssh_add(&agent, &["-q", key.to_str().unwrap()]));
        }
        let listing = stdout(expect_ok(&ssh_add(&agent, &["-l"])));
        assert_eq!(listing.lines().count(), LOADED.len(), "{listing}");
        let mut c = RawClient::connect(agent.sock());
        let ids = parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
        let blobs = ids.into_iter().map(|(b, _)| b).collect();
        LoadedAgent {
            agent,
            keys,
            listing,
            blobs,
            problems: Vec::new(),
        }
    }

    pub fn sock(&self) -> &Path {
        self.agent.sock()
    }

    pub fn client(&self) -> RawClient {
        RawClient::connect(self.sock())
    }

    /// The key file of the loaded key of `kind` (one of [`LOADED`]).
    pub fn key(&self, kind: &str) -> &Path {
        let i = LOADED.iter().position(|k| *k == kind).unwrap();
        &self.keys[i]
    }

    /// The public blob of the loaded key of `kind`.
    pub fn blob(&self, kind: &str) -> Vec<u8> {
        pub_blob(&pub_path(self.key(kind)))
    }

    /// The blobs the agent listed right after loading.
    pub fn blobs(&self) -> &[Vec<u8>] {
        &self.blobs
    }

    /// `c` still works: a listing on it names exactly the loaded keys.
    #[track_caller]
    pub fn assert_usable(&self, c: &mut RawClient) {
        let ids = parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
        let blobs: Vec<Vec<u8>> = ids.into_iter().map(|(b, _)| b).collect();
        assert_eq!(blobs, self.blobs, "the connection lists other keys");
    }

    /// The agent runs, `ssh-add -l` succeeds and lists exactly the keys loaded at the start.
    #[track_caller]
    pub fn check(&mut self, case: &str) {
        assert!(
            self.agent.is_running(),
            "agent died after {case}: {:?}\nstderr: {}",
            self.agent.exit_status(),
            self.agent.stderr_text()
        );
        let out = ssh_add(&self.agent, &["-l"]);
        assert!(
            out.status.success(),
            "ssh-add -l failed after {case}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert_eq!(stdout(&out), self.listing, "keys changed after {case}");
    }

    /// Sends `bytes` on a new connection and expects exactly one FAILURE; the same connection
    /// must then still list the loaded keys. Then [`check`](Self::check). A key accepted
    /// instead is recorded as a problem (reported by `finish`) and removed, so the remaining
    /// cases still run.
    #[track_caller]
    pub fn expect_failure(&mut self, case: &str, bytes: &[u8]) {
        let mut c = self.client();
        c.send_raw(bytes);
        let reply = c.recv_frame();
        assert!(reply.is_some(), "{case}: no reply");
        if reply.as_deref() == Some(&[SSH_AGENT_FAILURE][..]) {
            self.assert_usable(&mut c);
        } else {
            c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
            let removed = self.remove_extras();
            self.problems
                .push(format!("{case}: answered {reply:?}, added {removed:?}"));
        }
        self.check(case);
    }

    /// Sends `bytes` on a new connection and expects the agent to close it without a reply.
    #[track_caller]
    pub fn expect_closed(&mut self, case: &str, bytes: &[u8]) {
        let mut c = self.client();
        // The agent may close before everything is written.
        let _ = c.try_send_raw(bytes);
        assert!(c.is_closed(), "{case}: connection left open");
        assert_eq!(c.recv_frame(), None, "{case}: unexpected reply");
        self.check(case);
    }

    /// Adds a valid key (by raw ADD), checks it is listed, removes it again: proves that a
    /// hand-built body is right, so that its corrupted variants fail for the corruption.
    #[track_caller]
    pub fn add_and_remove(&mut self, case: &str, add: &[u8], blob: &[u8]) {
        let mut c = self.client();
        let reply = c.request(SSH_AGENTC_ADD_IDENTITY, add);
        assert_eq!(reply, [SSH_AGENT_SUCCESS], "{case}: valid key refused");
        let ids = parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
        assert_eq!(ids.len(), LOADED.len() + 1, "{case}");
        assert_eq!(ids.last().unwrap().0, blob, "{case}: wrong blob listed");
        let reply = c.request(SSH_AGENTC_REMOVE_IDENTITY, &string(blob));
        assert_eq!(reply, [SSH_AGENT_SUCCESS], "{case}: remove failed");
        self.check(case);
    }

    /// Fails the test with every problem recorded by `expect_failure`.
    #[track_caller]
    pub fn finish(self) {
        assert!(
            self.problems.is_empty(),
            "{} hostile case(s) accepted:\n  {}",
            self.problems.len(),
            self.problems.join("\n  ")
        );
    }

    /// Removes any identity that was not loaded at the start (a wrongly accepted key).
    fn remove_extras(&mut self) -> Vec<String> {
        let mut c = self.client();
        let ids = parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
        let mut removed = Vec::new();
        for (blob, comment) in ids {
            if !self.blobs.contains(&blob) {
                let r = c.request(SSH_AGENTC_REMOVE_IDENTITY, &string(&blob));
                assert_eq!(r, [SSH_AGENT_SUCCESS], "cannot remove {comment}");
                removed.push(comment);
            }
        }
        removed
    }
}

// ---------------------------------------------------------------------------------------------
// Throwaway sshds on 127.0.0.1

const SSHD: &str = "/usr/sbin/sshd";

/// Whether sshd tests can run here (as root, with sshd installed); says why not when they cannot.
pub fn can_run_sshd() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return !skip("sshd tests log in as root: run them as root");
    }
    if !Path::new(SSHD).exists() {
        return !skip(&format!("{SSHD} is missing: install openssh-server"));
    }
    true
}

/// What an [`Sshd`] is started with; [`Sshd::builder`] makes one, [`SshdBuilder::start`]
/// starts it.
pub struct SshdBuilder<'a> {
    alias: String,
    authorized: Vec<&'a Path>,
    trusted_user_ca: Option<&'a Path>,
    host_cert: Option<(&'a Path, &'a str)>,
    config: Vec<&'a str>,
}

impl<'a> SshdBuilder<'a> {
    /// The name clients know the host by (`HostKeyAlias` in [`Sshd::ssh_known`], the first field
    /// of [`Sshd::known_hosts_line`]) and the comment of its host key; `host` by default.
    pub fn alias(mut self, alias: &str) -> Self {
        self.alias = alias.to_string();
        self
    }

    /// Public key files whose keys may log in as root (none: `AuthorizedKeysFile none`).
    pub fn authorize(mut self, keys: &[&'a Path]) -> Self {
        self.authorized.extend_from_slice(keys);
        self
    }

    /// A CA public key file trusted for user certificates (`TrustedUserCAKeys`).
    pub fn trusted_user_ca(mut self, ca: &'a Path) -> Self {
        self.trusted_user_ca = Some(ca);
        self
    }

    /// Presents a host certificate for `principal` signed by `ca` (a private key file).
    pub fn host_cert(mut self, ca: &'a Path, principal: &'a str) -> Self {
        self.host_cert = Some((ca, principal));
        self
    }

    /// Config lines placed first in sshd_config (sshd keeps the first value of an option).
    pub fn config(mut self, lines: &[&'a str]) -> Self {
        self.config.extend_from_slice(lines);
        self
    }

    /// Starts `sshd -D -e` on a free port of 127.0.0.1 with its own config and Ed25519 host key,
    /// agent forwarding allowed; returns once it listens.
    pub fn start(self) -> Sshd {
        // Privilege separation directory: sshd refuses to start without it.
        let _ = fs::create_dir_all("/run/sshd");
        let mut dir = TempDir::new();
        let host_key = generate(dir.path(), "ed25519", "host_key", &self.alias);
        let mut fixed = format!("HostKey {}\n", host_key.display());
        if let Some((ca, principal)) = self.host_cert {
            let identity = format!("{}-host-cert", self.alias);
            let cert = sign_certificate(
                ca,
                &pub_path(&host_key),
                &identity,
                &["-h", "-n", principal],
            );
            fixed.push_str(&format!("HostCertificate {}\n", cert.display()));
        }
        fixed.push_str(
            "PidFile none\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             AllowAgentForwarding yes\nStrictModes no\nUsePAM no\nUseDNS no\nPrintMotd no\n\
             PrintLastLog no\nLogLevel DEBUG1\n",
        );
        if self.authorized.is_empty() {
            fixed.push_str("AuthorizedKeysFile none\n");
        } else {
            let text: String = self.authorized.iter().map(|k| pub_line(k) + "\n").collect();
            let akf = dir.join("authorized_keys");
            fs::write(&akf, text).unwrap();
            fixed.push_str(&format!("AuthorizedKeysFile {}\n", akf.display()));
        }
        if let Some(ca) = self.trusted_user_ca {
            fixed.push_str(&format!("TrustedUserCAKeys {}\n", ca.display()));
        }
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let mut cfg: String = self.config.iter().map(|l| format!("{l}\n")).collect();
            cfg.push_str(&format!("Port {port}\nListenAddress 127.0.0.1\n{fixed}"));
            let cfg_path = dir.join("sshd_config");
            fs::write(&cfg_path, cfg).unwrap();
            let child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&cfg_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(dir.join("sshd.log")).unwrap())
                .spawn()
                .unwrap();
            let mut sshd = Sshd {
                child,
                port,
                alias: self.alias.clone(),
                dir,
            };
            let listening = format!("Server listening on 127.0.0.1 port {port}.");
            let mut exited = false;
            wait_until(START_DEADLINE, || {
                exited = sshd.child.try_wait().ok().flatten().is_some();
                exited || sshd.log_text().contains(&listening)
            });
            if !exited && sshd.log_text().contains(&listening) {
                return sshd;
            }
            last_log = sshd.log_text();
            terminate(&mut sshd.child);
            dir = std::mem::take(&mut sshd.dir);
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("sshd did not start:\n{last_log}");
    }
}

/// A running `sshd -D -e` on 127.0.0.1 with its own config, stopped on drop. Start several for
/// forwarding hops: `ssh -A hosta ssh hostb` runs the inner `ssh` on this machine too.
pub struct Sshd {
    child: Child,
    port: u16,
    alias: String,
    dir: TempDir,
}

impl Sshd {
    /// A builder for an sshd with nothing authorized, known as `host`.
    pub fn builder<'a>() -> SshdBuilder<'a> {
        SshdBuilder {
            alias: "host".to_string(),
            authorized: Vec::new(),
            trusted_user_ca: None,
            host_cert: None,
            config: Vec::new(),
        }
    }

    /// Starts sshd accepting `authorized_keys` (public key files; none → `AuthorizedKeysFile none`),
    /// trusting `trusted_user_ca` (a CA public key file) for user certificates, with `extra_config`
    /// lines placed first in the config (sshd keeps the first value of an option).
    pub fn start(
        authorized_keys: &[&Path],
        trusted_user_ca: Option<&Path>,
        extra_config: &[&str],
    ) -> Sshd {
        let mut b = Sshd::builder()
            .authorize(authorized_keys)
            .config(extra_config);
        b.trusted_user_ca = trusted_user_ca;
        b.start()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// The public half of this sshd's host key.
    pub fn host_key_pub(&self) -> PathBuf {
        self.dir.join("host_key.pub")
    }

    /// This host's known_hosts line: `alias ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        format!("{} {}", self.alias, key_fields(&self.host_key_pub()))
    }

    /// sshd's log (DEBUG1), for diagnosis.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// Whether sshd accepted a public key login as root.
    pub fn accepted(&self) -> bool {
        self.log_text().contains("Accepted publickey for root")
    }

    /// `ssh <opts> -p PORT root@127.0.0.1 <cmd>` authenticating only with `agent`'s keys, the
    /// host key unchecked.
    pub fn ssh(&self, agent: &Agent, opts: &[&str], cmd: &str) -> Output {
        run_ssh(agent, &self.ssh_args(opts, cmd))
    }

    /// The arguments [`Sshd::ssh`] runs `ssh` with.
    pub fn ssh_args(&self, opts: &[&str], cmd: &str) -> Vec<String> {
        self.client_args(
            &["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"],
            opts,
            cmd,
        )
    }

    /// As [`Sshd::ssh`], checking the host key strictly against `known_hosts` under this
    /// host's alias.
    pub fn ssh_known(&self, agent: &Agent, known_hosts: &Path, opts: &[&str], cmd: &str) -> Output {
        run_ssh(agent, &self.ssh_known_args(known_hosts, opts, cmd))
    }

    /// The arguments [`Sshd::ssh_known`] runs `ssh` with.
    pub fn ssh_known_args(&self, known_hosts: &Path, opts: &[&str], cmd: &str) -> Vec<String> {
        let file = format!("UserKnownHostsFile={}", known_hosts.display());
        let alias = format!("HostKeyAlias={}", self.alias);
        self.client_args(&["StrictHostKeyChecking=yes", &file, &alias], opts, cmd)
    }

    /// The shell command line that runs `ssh ... cmd` to this host with
    /// [`Sshd::ssh_known_args`] (for a remote session, where it uses the forwarded agent).
    pub fn ssh_command_line(&self, known_hosts: &Path, cmd: &str) -> String {
        let words: Vec<String> = self
            .ssh_known_args(known_hosts, &[], cmd)
            .iter()
            .map(|a| sh_quote(a))
            .collect();
        format!("ssh {}", words.join(" "))
    }

    /// `ssh -F none <opts> -o <host key checking> -o <every other option> -p PORT
    /// root@127.0.0.1 cmd`: every option is given, so no configuration file of the machine or
    /// user plays a part, and `opts` come first, so they win.
    fn client_args(&self, host_keys: &[&str], opts: &[&str], cmd: &str) -> Vec<String> {
        let mut args: Vec<String> = vec!["-F".into(), "none".into()];
        args.extend(opts.iter().map(|o| o.to_string()));
        let fixed = [
            "IdentityFile=none",
            "IdentitiesOnly=no",
            "BatchMode=yes",
            "GlobalKnownHostsFile=/dev/null",
            "UpdateHostKeys=no",
            "PreferredAuthentications=publickey",
            "ControlMaster=no",
            "ControlPath=none",
            "ConnectTimeout=10",
            "LogLevel=ERROR",
        ];
        for opt in host_keys.iter().chain(&fixed) {
            args.push("-o".into());
            args.push(opt.to_string());
        }
        let port = self.port.to_string();
        args.extend(["-p", &port, "root@127.0.0.1", cmd].map(str::to_string));
        args
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// `ssh args` with `agent` as `SSH_AUTH_SOCK`.
fn run_ssh(agent: &Agent, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("ssh", &args, &[("SSH_AUTH_SOCK", agent.sock_str())])
}

/// Single-quotes `s` for a shell command line.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A port of 127.0.0.1 free a moment ago (bind :0, read it, release it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}
