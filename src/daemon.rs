//! Process life: start-up hygiene, the socket directory and bind, fork, the shell snippet,
//! command mode, `-k`, the parent watch, and cleanup — OpenSSH's `main()` in order; then
//! `--reuse` and `--status`, whose rules live in `reuse.rs`.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use nix::sys::stat::{Mode, umask};

use crate::agent::Agent;
use crate::askpass::Askpass;
use crate::cli::{self, Action, Options, Shell};
use crate::reuse::{self, Found, Place, SUN_PATH_MAX};
use crate::server::{Exit, Server, Watch};
use crate::{log, sys};

/// Exit status after a signal or the parent's death (OpenSSH: cleanup_exit(2)).
const EXIT_SIGNAL: u8 = 2;
/// Exit status of `fatal()` in OpenSSH.
const EXIT_FATAL: u8 = 255;
/// Random characters in the socket directory name (OpenSSH: ssh-XXXXXXXXXXXX).
const TEMPLATE_RANDOM: usize = 12;

/// Why sshkeep stops without serving: the text for stderr and the exit status. `main` prints
/// it, the one place an error is printed; once the agent serves, errors are logged instead.
#[derive(Debug)]
pub struct Fatal {
    /// Whole lines, as printed (without the last newline); may be empty.
    text: String,
    code: u8,
}

impl Fatal {
    /// sshkeep's own words: printed `sshkeep: {message}`.
    fn new(code: u8, message: impl fmt::Display) -> Fatal {
        Fatal {
            text: format!("sshkeep: {message}"),
            code,
        }
    }

    /// Words printed as they are: OpenSSH's, which name no program.
    fn verbatim(code: u8, text: String) -> Fatal {
        Fatal { text, code }
    }

    /// The exit status.
    pub fn code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }

    /// Whether there is anything to print.
    pub fn is_silent(&self) -> bool {
        self.text.is_empty()
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A command-line error: its message, then the usage.
impl From<cli::CliError> for Fatal {
    fn from(e: cli::CliError) -> Fatal {
        let usage = e.show_usage.then_some(cli::USAGE);
        let lines: Vec<&str> = e.message.as_deref().into_iter().chain(usage).collect();
        Fatal::verbatim(e.exit_code, lines.join("\n"))
    }
}

/// The C library's text for an error (what perror prints), without Rust's "(os error N)".
fn strerror(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
        None => e.to_string(),
    }
}

/// Where the agent listens, and what must be removed when it exits.
struct Socket {
    listener: UnixListener,
    /// As the user gave it (printed in the snippet); `None` under socket activation.
    shown: Option<PathBuf>,
    cleanup: Cleanup,
}

/// What the agent process removes when it exits.
struct Cleanup {
    /// Absolute path to unlink on exit; `None` when the socket is not ours to remove.
    unlink: Option<PathBuf>,
    /// The directory we created for it, removed after the socket.
    dir: Option<PathBuf>,
    /// Beside a shared socket (`--reuse`, socket activation): the pid file, and the socket and
    /// lock file of a `--reuse` agent, each removed only if still ours.
    shared: Option<reuse::AgentFiles>,
}

impl Cleanup {
    /// Remove the socket and the directory made for it. Called only by the agent process.
    fn cleanup(&self) {
        if let Some(files) = &self.shared {
            files.remove();
        }
        if let Some(path) = &self.unlink {
            let _ = std::fs::remove_file(path);
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The whole program. `Ok`: the exit status, with everything to say already said (the
/// snippet, notices, log lines); `Err`: what `main` prints before it exits.
pub fn main() -> Result<ExitCode, Fatal> {
    // Before anything can open a file: fds 0-2 must be open, so that no socket lands there.
    let _ = sys::sanitise_stdfd();
    // Drop a setgid bit (OpenSSH does the same; the uid is left alone).
    let gid = nix::unistd::getgid();
    let _ = nix::unistd::setegid(gid);
    let _ = nix::unistd::setgid(gid);
    // Forbid ptrace and /proc/PID/mem access by other processes of the same user: this
    // process holds private keys. Also stops core dumps.
    let _ = nix::sys::prctl::set_dumpable(false);
    // Deny core dumps, since memory contains unencrypted private keys.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);

    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match cli::parse(args, std::env::var_os("SHELL"))? {
        Action::Version => {
            log::to_user(format_args!("sshkeep {}", env!("CARGO_PKG_VERSION")));
            Ok(ExitCode::SUCCESS)
        }
        Action::Kill(shell) => kill_agent(shell),
        Action::Run(opts) => run(opts),
        Action::Reuse(opts) => run_reuse(opts),
        Action::Status(bind) => Ok(status(bind)),
    }
}

/// `-k`: send SIGTERM to `$SSH_AGENT_PID` and print the lines that unset the variables.
fn kill_agent(shell: Shell) -> Result<ExitCode, Fatal> {
    let Some(pidstr) = std::env::var_os("SSH_AGENT_PID") else {
        return Err(Fatal::verbatim(
            1,
            "SSH_AGENT_PID not set, cannot kill agent".into(),
        ));
    };
    let pid = strtonum_pid(pidstr.as_bytes()).map_err(|why| {
        let shown = pidstr.to_string_lossy();
        Fatal::verbatim(
            1,
            format!("SSH_AGENT_PID=\"{shown}\", which is not a good PID: {why}"),
        )
    })?;
    let target = nix::unistd::Pid::from_raw(pid);
    if let Err(e) = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM) {
        return Err(Fatal::verbatim(1, format!("kill: {}", e.desc())));
    }
    let out = match shell {
        Shell::Csh => format!(
            "unsetenv SSH_AUTH_SOCK;\nunsetenv SSH_AGENT_PID;\necho Agent pid {pid} killed;\n"
        ),
        Shell::Bourne => {
            format!("unset SSH_AUTH_SOCK;\nunset SSH_AGENT_PID;\necho Agent pid {pid} killed;\n")
        }
    };
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    Ok(ExitCode::SUCCESS)
}

/// OpenSSH's `strtonum(s, 2, INT_MAX)` with its error words.
fn strtonum_pid(s: &[u8]) -> Result<i32, &'static str> {
    let text = std::str::from_utf8(s).map_err(|_| "invalid")?;
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..).unwrap_or_default()),
        Some(b'+') => (false, t.get(1..).unwrap_or_default()),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid");
    }
    // strtoll saturates; "too large"/"too small" follow from the sign either way.
    let value: i128 = digits.parse::<i128>().unwrap_or(i128::MAX);
    let value = if neg { -value } else { value };
    if value < 2 {
        return Err("too small");
    }
    i32::try_from(value).map_err(|_| "too large")
}

/// Quote a socket path for the shell snippet as OpenSSH 10.3 does (`argv_assemble`): a
/// path with white space is wrapped in double quotes, and `\`, `'` and `"` are
/// backslash-escaped. OpenSSH stops there, which breaks on other shell characters; here
/// every character the shell would interpret is escaped too, and inside double quotes only
/// the characters that are special there (`\ " $` and backquote), so that `eval` always
/// gives the path back. Paths OpenSSH handles correctly print byte for byte the same.
pub fn shell_quote(path: &Path) -> String {
    let s = path.to_string_lossy();
    let mut out = String::with_capacity(s.len() + 2);
    if s.is_empty() || s.contains([' ', '\t', '\n']) {
        out.push('"');
        for c in s.chars() {
            if matches!(c, '\\' | '"' | '$' | '`') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        return out;
    }
    for c in s.chars() {
        if "\\'\"$`;&|<>()*?[]#~{}!^".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The lines `eval` reads. In the foreground there is no SSH_AGENT_PID line (OpenSSH).
fn snippet(shell: Shell, path: &Path, pid: i32, with_pid_var: bool) -> String {
    let path = shell_quote(path);
    let mut out = String::new();
    match shell {
        Shell::Csh => {
            out.push_str(&format!("setenv SSH_AUTH_SOCK {path};\n"));
            if with_pid_var {
                out.push_str(&format!("setenv SSH_AGENT_PID {pid};\n"));
            }
        }
        Shell::Bourne => {
            out.push_str(&format!("SSH_AUTH_SOCK={path}; export SSH_AUTH_SOCK;\n"));
            if with_pid_var {
                out.push_str(&format!("SSH_AGENT_PID={pid}; export SSH_AGENT_PID;\n"));
            }
        }
    }
    out.push_str(&format!("echo Agent pid {pid};\n"));
    out
}

/// Create `$TMPDIR/ssh-XXXXXXXXXXXX` (or under /tmp) with mode 0700, as mkdtemp does, with
/// all twelve characters random (glibc's mkdtemp would randomise only six).
fn make_socket_dir() -> io::Result<PathBuf> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let base = std::env::var_os("TMPDIR")
        .filter(|t| !t.is_empty())
        .map(PathBuf::from)
        .filter(|t| {
            // OpenSSH's mktemp_proto falls back to /tmp when the result would not fit.
            t.as_os_str().len() + "/ssh-XXXXXXXXXXXX/agent.4294967295".len() <= SUN_PATH_MAX
        })
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    for _ in 0..100 {
        let mut raw = [0u8; TEMPLATE_RANDOM];
        getrandom::fill(&mut raw).map_err(|_| io::Error::other("no randomness"))?;
        let name: String = raw
            .iter()
            .map(|b| {
                let i = usize::from(*b) % ALPHABET.len();
                char::from(ALPHABET.get(i).copied().unwrap_or(b'X'))
            })
            .collect();
        let dir = base.join(format!("ssh-{name}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from(io::ErrorKind::AlreadyExists))
}

/// Bind under umask 0177 so the socket is created mode 0600. An existing path is an
/// error and is left untouched (OpenSSH: unix_listener with unlink_first = 0).
fn bind(path: &Path) -> Result<UnixListener, String> {
    if path.as_os_str().len() > SUN_PATH_MAX {
        return Err(format!(
            "unix_listener: path \"{}\" too long for Unix domain socket",
            path.display()
        ));
    }
    let old = umask(Mode::from_bits_truncate(0o177));
    let result = UnixListener::bind(path);
    umask(old);
    result.map_err(|e| {
        format!(
            "unix_listener: cannot bind to path {}: {}",
            path.display(),
            strerror(&e)
        )
    })
}

/// systemd socket activation (OpenSSH 10): only with -D/-d, no -a and no command.
fn activated(opts: &Options) -> Result<bool, String> {
    let (Some(fds), Some(pid)) = (
        std::env::var_os("LISTEN_FDS"),
        std::env::var_os("LISTEN_PID"),
    ) else {
        return Ok(false);
    };
    if !opts.foreground || opts.bind_address.is_some() || !opts.command.is_empty() {
        return Ok(false);
    }
    if pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        return Err("LISTEN_PID does not match this process".into());
    }
    if fds.to_str() != Some("1") {
        return Err("LISTEN_FDS must be 1".into());
    }
    Ok(true)
}

fn open_socket(opts: &Options, launcher_pid: i32, activated: bool) -> Result<Socket, (String, u8)> {
    if activated {
        let listener = sys::inherited_listener().map_err(|e| {
            (
                format!("socket activation: fd 3: {}", strerror(&e)),
                EXIT_FATAL,
            )
        })?;
        return Ok(Socket {
            listener,
            shown: None,
            cleanup: Cleanup {
                unlink: None,
                dir: None,
                shared: None,
            },
        });
    }
    let (path, dir) = match &opts.bind_address {
        Some(p) => (p.clone(), None),
        None => {
            let dir = make_socket_dir()
                .map_err(|e| (format!("mkdtemp: private socket dir: {}", strerror(&e)), 1))?;
            (dir.join(format!("agent.{launcher_pid}")), Some(dir))
        }
    };
    let listener = match bind(&path) {
        Ok(l) => l,
        Err(m) => {
            if let Some(d) = &dir {
                let _ = std::fs::remove_dir(d);
            }
            return Err((m, 1));
        }
    };
    // Remember an absolute path: the daemon changes to / and must still find it.
    let unlink = if path.is_absolute() {
        path.clone()
    } else {
        std::env::current_dir()
            .map(|d| d.join(&path))
            .unwrap_or_else(|_| path.clone())
    };
    Ok(Socket {
        listener,
        shown: Some(path),
        cleanup: Cleanup {
            unlink: Some(unlink),
            dir,
            shared: None,
        },
    })
}

/// Watch `pid`: a pidfd where the kernel has one, else a probe once a second.
/// `Err` when the process does not exist.
fn watch_pid(pid: i32, parent: bool) -> io::Result<Watch> {
    match sys::pidfd_open(pid) {
        Ok(Some(fd)) => Ok(Watch::Pidfd(fd)),
        Ok(None) => {
            if let Err(nix::errno::Errno::ESRCH) =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(if parent {
                Watch::Parent(pid)
            } else {
                Watch::Pid(pid)
            })
        }
        Err(e) => Err(e),
    }
}

fn run(opts: Options) -> Result<ExitCode, Fatal> {
    for notice in &opts.notices {
        log::to_user(format_args!("{notice}"));
    }
    let socket_activated = activated(&opts).map_err(|m| Fatal::new(EXIT_FATAL, m))?;
    // Close every fd we inherited (OpenSSH 10: closefrom), keeping systemd's fd 3.
    sys::close_fds_from(if socket_activated { 4 } else { 3 });

    let mut watches = Vec::new();
    if let Some(pid) = opts.exit_with {
        let watch = watch_pid(pid, false).map_err(|e| {
            let why = strerror(&e);
            Fatal::new(1, format!("--exit-with: no process with pid {pid}: {why}"))
        })?;
        watches.push(watch);
    }

    // The socket is named after the process that prints the snippet (OpenSSH: parent_pid).
    let launcher_pid = nix::unistd::getpid().as_raw();
    let mut socket = open_socket(&opts, launcher_pid, socket_activated)
        .map_err(|(m, code)| Fatal::new(code, m))?;

    if opts.foreground {
        log::to_stderr(if opts.debug {
            log::Level::Debug
        } else {
            log::Level::Info
        });
        if let Some(shown) = &socket.shown {
            let mut out = io::stdout().lock();
            let _ = out.write_all(snippet(opts.shell, shown, launcher_pid, false).as_bytes());
            let _ = out.flush();
        }
        if socket_activated {
            // So that `--reuse` and `--status` can name this agent, never the service manager.
            match reuse::AgentFiles::activated(&socket.listener) {
                Ok(files) => socket.cleanup.shared = Some(files),
                Err(why) => debug!("no pid file beside the activated socket: {why}"),
            }
        }
        return Ok(serve(&opts, socket, watches, socket_activated, true, None));
    }

    match sys::fork() {
        Err(e) => {
            socket.cleanup.cleanup();
            Err(Fatal::new(1, format!("fork: {}", strerror(&e))))
        }
        Ok(Some(child)) => {
            // The parent: hand the agent over and go. It never removes the socket.
            drop(socket.listener);
            let shown = socket.shown.unwrap_or_default();
            if let Some((cmd, args)) = opts.command.split_first() {
                let err = Command::new(cmd)
                    .args(args)
                    .env("SSH_AUTH_SOCK", &shown)
                    .env("SSH_AGENT_PID", child.to_string())
                    .exec();
                let cmd = cmd.to_string_lossy();
                return Err(Fatal::verbatim(1, format!("{cmd}: {}", strerror(&err))));
            }
            let mut out = io::stdout().lock();
            let _ = out.write_all(snippet(opts.shell, &shown, child, true).as_bytes());
            let _ = out.flush();
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            // The agent.
            sys::openlog();
            log::to_syslog(sys::syslog);
            if detach(&socket.cleanup).is_err() {
                return Ok(ExitCode::from(1));
            }
            if !opts.command.is_empty() {
                // Command mode: the agent's parent is the command; its exit ends the agent.
                match watch_pid(launcher_pid, true) {
                    Ok(w) => watches.push(w),
                    Err(_) => {
                        socket.cleanup.cleanup();
                        return Ok(ExitCode::from(EXIT_SIGNAL));
                    }
                }
            }
            Ok(serve(&opts, socket, watches, false, false, None))
        }
    }
}

/// Run the loop until a signal or the parent's death, then clean up. `ready` (`--reuse`) is
/// signalled just before the loop starts.
/// The forked agent leaves its starter's session and working directory, and points its stdio
/// at /dev/null (OpenSSH: setsid, chdir, stdfd_devnull). A failed setsid is fatal: the socket
/// is cleaned up and the caller exits.
fn detach(cleanup: &Cleanup) -> Result<(), ()> {
    if let Err(e) = nix::unistd::setsid() {
        error!("setsid: {e}");
        cleanup.cleanup();
        return Err(());
    }
    let _ = nix::unistd::chdir("/");
    if let Err(e) = sys::stdio_to_devnull() {
        error!("stdio: {e}");
    }
    Ok(())
}

fn serve(
    opts: &Options,
    socket: Socket,
    watches: Vec<Watch>,
    activated: bool,
    foreground: bool,
    ready: Option<reuse::Ready>,
) -> ExitCode {
    let signals = match sys::install_signals(foreground) {
        Ok(fd) => fd,
        Err(e) => {
            error!("signals: {e}");
            socket.cleanup.cleanup();
            return ExitCode::from(EXIT_FATAL);
        }
    };
    // Keep key memory out of swap where that cannot fail later.
    if let Err(why) = sys::lock_all_memory() {
        debug!("memory not locked against swap: {why}");
    }
    // Decided once, before any key arrives (keys::signing_backend says why).
    debug!("signing with {}", crate::keys::signing_backend());
    let mut agent = Agent::new(opts.default_lifetime, opts.fingerprint_hash);
    agent.set_confirm_forwarded(opts.confirm_forwarded);
    agent.set_log_use(opts.log_use);
    let Socket {
        listener, cleanup, ..
    } = socket;
    let result = Server::new(&mut agent, listener, signals, watches, Askpass::from_env()).and_then(
        |mut s| {
            if let Some(ready) = ready {
                ready.signal();
            }
            s.run()
        },
    );
    // Explicit, not left to Drop: wipe every key before the process goes.
    agent.remove_all();
    cleanup.cleanup();
    let code = match result {
        // Under socket activation systemd stops us with SIGTERM: that is a normal exit.
        Ok(Exit::Signal(sig)) if activated && sig == libc::SIGTERM => 0,
        Ok(_) => EXIT_SIGNAL,
        Err(e) => {
            error!("poll: {e}");
            EXIT_FATAL
        }
    };
    ExitCode::from(code)
}

// ---------------------------------------------------------------------------------------
// Sharing one agent: --reuse and --status

/// `--reuse`: print the agent that answers at the shared socket, or start one there as
/// `-s -a PATH` would. The rules (paths, lock, pid file) are in `reuse.rs`.
fn run_reuse(opts: Options) -> Result<ExitCode, Fatal> {
    for notice in &opts.notices {
        log::to_user(format_args!("{notice}"));
    }
    // As in `run`: no inherited fd may reach an agent started here.
    sys::close_fds_from(3);
    let fail = |m: String| Fatal::new(1, m);
    let place = Place::resolve(opts.bind_address.as_deref()).map_err(fail)?;
    // Most shells find the agent answering, and need no lock for that.
    match place.inspect().map_err(fail)? {
        Found::Running(pid) => return Ok(print_shared(opts.shell, &place.sock, pid)),
        Found::Stale | Found::Absent | Found::Silent(_) => {}
    }
    let lock = place.lock().map_err(fail)?;
    // Under the lock, look again: another shell may have started it meanwhile.
    match place.inspect().map_err(fail)? {
        Found::Running(pid) => return Ok(print_shared(opts.shell, &place.sock, pid)),
        Found::Stale => place.remove_stale().map_err(fail)?,
        Found::Absent => {}
        Found::Silent(m) => return Err(fail(m)),
    }
    let listener = bind(&place.sock).map_err(fail)?;
    let (ready_rd, ready_wr) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&place.sock);
            return Err(fail(format!("pipe: {}", e.desc())));
        }
    };
    match sys::fork() {
        Err(e) => {
            let _ = std::fs::remove_file(&place.sock);
            Err(fail(format!("fork: {}", strerror(&e))))
        }
        Ok(Some(child)) => {
            // The starter: print once the agent is ready, then release the lock (by exiting).
            drop(listener);
            drop(ready_wr);
            if let Err(why) = wait_ready(&ready_rd) {
                // Our own child, so certainly the agent: stop it rather than leave it half-started.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child),
                    nix::sys::signal::Signal::SIGTERM,
                );
                return Err(fail(format!("the agent (pid {child}) {why}")));
            }
            let mut out = io::stdout().lock();
            let _ = out.write_all(snippet(opts.shell, &place.sock, child, true).as_bytes());
            let _ = out.flush();
            drop(lock);
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            // The agent. It writes its pid file before it says it is ready.
            drop(ready_rd);
            sys::openlog();
            log::to_syslog(sys::syslog);
            let files = reuse::AgentFiles::shared(&place, &listener);
            let socket = Socket {
                listener,
                shown: Some(place.sock.clone()),
                cleanup: Cleanup {
                    unlink: None,
                    dir: None,
                    shared: Some(files),
                },
            };
            if detach(&socket.cleanup).is_err() {
                return Ok(ExitCode::from(1));
            }
            let ready = reuse::Ready::new(lock, ready_wr);
            Ok(serve(&opts, socket, Vec::new(), false, false, Some(ready)))
        }
    }
}

/// Wait for the agent to say it is ready on `pipe` (one byte), at most `START_TIMEOUT`.
/// End-of-file means it exited first.
fn wait_ready(pipe: &std::os::fd::OwnedFd) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let deadline = sys::Instant::now() + reuse::START_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(sys::Instant::now());
        if left.is_zero() {
            return Err(format!(
                "was not ready within {} s",
                reuse::START_TIMEOUT.as_secs()
            ));
        }
        let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        let mut fds = [libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        match sys::poll(&mut fds, ms) {
            // A timeout or a signal: the deadline decides.
            Ok(0) => continue,
            Ok(_) => break,
            Err(e) => return Err(format!("cannot be waited for: poll: {}", strerror(&e))),
        }
    }
    let mut byte = [0u8; 1];
    match nix::unistd::read(pipe.as_fd(), &mut byte) {
        Ok(1) => Ok(()),
        Ok(_) => Err("exited before it was ready (see the system log)".to_owned()),
        Err(e) => Err(format!("cannot be waited for: read: {}", e.desc())),
    }
}

/// Print the snippet for an agent `--reuse` found. Without a pid known for certain, the pid
/// lines are left out and `SSH_AGENT_PID` is unset, so that `-k` cannot signal a process that
/// is not this agent (one named by a variable the shell inherited, say).
fn print_shared(shell: Shell, sock: &Path, pid: Result<i32, String>) -> ExitCode {
    let text = match pid {
        Ok(pid) => snippet(shell, sock, pid, true),
        Err(why) => {
            // A warning, not an error: the agent is there. Logged to stderr.
            info!(
                "SSH_AGENT_PID not set: the pid of the agent at {} is not known for certain: {why}",
                sock.display()
            );
            snippet_without_pid(shell, sock)
        }
    };
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    ExitCode::SUCCESS
}

/// The lines for an agent whose pid is not known: the socket, and `SSH_AGENT_PID` unset.
fn snippet_without_pid(shell: Shell, path: &Path) -> String {
    let path = shell_quote(path);
    match shell {
        Shell::Csh => format!("setenv SSH_AUTH_SOCK {path};\nunsetenv SSH_AGENT_PID;\n"),
        Shell::Bourne => {
            format!("SSH_AUTH_SOCK={path}; export SSH_AUTH_SOCK;\nunset SSH_AGENT_PID;\n")
        }
    }
}

/// `--status`: one line on stdout; exit 0 when an agent answers, 1 otherwise.
fn status(bind: Option<PathBuf>) -> ExitCode {
    let (line, running) = reuse::status(bind);
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    ExitCode::from(if running { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtonum_matches_openssh() {
        assert_eq!(strtonum_pid(b"1234"), Ok(1234));
        assert_eq!(strtonum_pid(b" 42"), Ok(42));
        assert_eq!(strtonum_pid(b"1x"), Err("invalid"));
        assert_eq!(strtonum_pid(b""), Err("invalid"));
        assert_eq!(strtonum_pid(b"0"), Err("too small"));
        assert_eq!(strtonum_pid(b"1"), Err("too small"));
        assert_eq!(strtonum_pid(b"-5"), Err("too small"));
        assert_eq!(strtonum_pid(b"2147483648"), Err("too large"));
        assert_eq!(strtonum_pid(b"99999999999999999999999"), Err("too large"));
        assert_eq!(strtonum_pid(b"2147483647"), Ok(i32::MAX));
    }

    #[test]
    fn snippets_are_openssh_bytes() {
        let p = Path::new("/tmp/ssh-abc/agent.12");
        assert_eq!(
            snippet(Shell::Bourne, p, 13, true),
            "SSH_AUTH_SOCK=/tmp/ssh-abc/agent.12; export SSH_AUTH_SOCK;\nSSH_AGENT_PID=13; export SSH_AGENT_PID;\necho Agent pid 13;\n"
        );
        assert_eq!(
            snippet(Shell::Csh, p, 13, true),
            "setenv SSH_AUTH_SOCK /tmp/ssh-abc/agent.12;\nsetenv SSH_AGENT_PID 13;\necho Agent pid 13;\n"
        );
        assert_eq!(
            snippet(Shell::Bourne, p, 12, false),
            "SSH_AUTH_SOCK=/tmp/ssh-abc/agent.12; export SSH_AUTH_SOCK;\necho Agent pid 12;\n"
        );
    }

    #[test]
    fn quoting() {
        let q = |p: &str| shell_quote(Path::new(p));
        assert_eq!(q("/tmp/a.sock"), "/tmp/a.sock");
        // OpenSSH 10.3's own output for these.
        assert_eq!(q("/tmp/a b"), r#""/tmp/a b""#);
        assert_eq!(q("/t/it's"), r"/t/it\'s");
        assert_eq!(q(r#"/t/a"b\c"#), r#"/t/a\"b\\c"#);
        // Where OpenSSH's output would not survive `eval`.
        assert_eq!(q("/t/$x`y"), r"/t/\$x\`y");
        assert_eq!(q("/t/a;b&c"), r"/t/a\;b\&c");
        assert_eq!(q("/t/it's a"), r#""/t/it's a""#);
        assert_eq!(q("/t/a b$c"), r#""/t/a b\$c""#);
        assert_eq!(q(""), r#""""#);
    }
}
