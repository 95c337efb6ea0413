//! One agent per user, found by every shell: where `--reuse` looks, how it tells a live agent
//! from a stale socket, how concurrent starters agree, what the agent writes beside its socket,
//! and `--status`. `daemon.rs` binds, forks and serves; this module never starts anything.
//!
//! # The socket and the files beside it
//!
//! The socket `P` is `-a PATH`, else `$XDG_RUNTIME_DIR/sshkeep/agent.sock` (the path of
//! `contrib/systemd/sshkeep.socket`, so a socket-activated agent is found too), else
//! `~/.ssh/agent/sshkeep.<host name>.sock`. Its directory must be a real directory (not a
//! symbolic link) of the user's that nobody else can write to, and every directory above it
//! must belong to root or the user and be writable by nobody else unless it is sticky (`/tmp`):
//! otherwise another user could swap the socket for one of their own and collect the keys
//! `ssh-add` sends. Beside `P`:
//!
//! - `P.lock` serialises starters. A `--reuse` that finds no agent answering takes an exclusive
//!   `flock` on it, looks again, and only then starts an agent, which releases the lock once it
//!   is ready to answer: of several shells starting at once, one starts the agent and the others
//!   find it answering. The lock file may be removed by an exiting agent, so a starter checks,
//!   once it holds the lock, that the path still names the file it locked, and starts over if not.
//! - `P.pid` is written by the agent itself (see below) and read by every later `--reuse` and
//!   by `--status`.
//!
//! The agent removes both and its socket when it exits, but only what is still its own: the
//! socket if the file at `P` is the one it bound, the pid file if it still names it, the lock
//! file if it can take the lock at once (else a starter holds it and the file stays). It
//! removes them while its listening socket is still open, so that no starter can see its
//! socket refuse connections, call it stale and replace it in the meantime. The directory is
//! left: it is a fixed per-user place (systemd's, under socket activation), and removing it
//! would race with a starter that has just checked it.
//!
//! # Knowing the agent's pid for certain
//!
//! `SSH_AGENT_PID` is what `sshkeep -k` signals, so it must be the agent's own pid or nothing.
//!
//! - `SO_PEERCRED` on a connection names the process that called `listen()`: under socket
//!   activation that is the service manager, and for a forked agent the starter, which has
//!   exited and whose pid may since belong to anything. It is never used for this.
//! - `/proc/PID/fd` and `/proc/PID/exe` would show which process holds the listening socket, but
//!   the agent is non-dumpable (`PR_SET_DUMPABLE` 0), so the kernel lets only root read them: a
//!   check built on them passes a test run as root and fails for every user.
//! - What any user can read is `/proc/PID/stat` (with the process's start time),
//!   `/proc/PID/status` (its uids) and `/proc/net/unix` (every listening socket with the path it
//!   was bound to and its socket inode).
//!
//! So the agent records in `P.pid` its pid, its start time (field 22 of `/proc/self/stat`), the
//! device and inode of the socket file at `P`, and the inode of its listening socket. It writes
//! the file under a temporary name and renames it, mode 0600, in a directory only the user can
//! write. A reader believes the pid only when all of these hold ([`agent_pid`]):
//!
//! 1. `P.pid` is a regular file (not a link), the user's, writable by nobody else, in a
//!    directory that passes the rules above, and it parses, with a pid above 1;
//! 2. the file at `P` has the recorded device and inode: it is the socket the writer bound (or,
//!    under socket activation, was given);
//! 3. `/proc/PID/stat` shows a live process with the recorded start time: a pid and a start time
//!    name one process, so the pid has not been recycled since; and the agent never execs, so
//!    that process is still the agent that wrote the file;
//! 4. `/proc/PID/status` shows the user's real and effective uid;
//! 5. `/proc/net/unix` lists exactly one listening socket bound to `P`, with the recorded inode:
//!    the writer still listens there, and no other listener claims the path (which also covers a
//!    socket file replaced by another that got a recycled inode number).
//!
//! The process name is not checked: a process chooses its own, and 3 already names the process.
//! When any check fails, or `/proc` is missing (a scratch container) or hides the process
//! (`hidepid`), the pid is unknown: `--reuse` prints no pid lines, unsets `SSH_AGENT_PID` (so
//! that `-k` cannot signal a process inherited from elsewhere) and says why on stderr. No read
//! of `/proc` or of a file may panic: everything is parsed with checked operations.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::sys;

/// How long an agent has to answer a probe: connect, then a reply to REQUEST_IDENTITIES.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a starter waits for the agent it forked to be ready to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a starter waits for the start lock: longer than a holder keeps it (a probe, then a
/// start). flock has no timeout, and a lock held forever (a stopped process) must not hang
/// every new shell, so the lock is polled.
const LOCK_TIMEOUT: Duration = Duration::from_secs(20);
const LOCK_RETRY: Duration = Duration::from_millis(10);
/// Longest path a Unix socket can be bound to (Linux sun_path, with its NUL).
pub const SUN_PATH_MAX: usize = 107;
/// The largest pid file read; a real one is under 80 bytes.
const PID_FILE_MAX: u64 = 256;
/// The most of a /proc/PID file read (status is about 1.5 KiB).
const PROC_FILE_MAX: u64 = 16 * 1024;
/// The most of /proc/net/unix read (about 150 bytes a socket).
const PROC_NET_UNIX_MAX: u64 = 64 << 20;
/// AGENT_MAX_LEN: the largest reply frame an agent sends.
const MAX_REPLY_LEN: u32 = 256 * 1024;
/// Agent protocol message numbers.
const SSH_AGENT_FAILURE: u8 = 5;
const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
/// `/proc/net/unix` flag of a listening socket (__SO_ACCEPTCON) and type of a stream socket.
const SO_ACCEPTCON: u32 = 0x10000;
const PROC_SOCK_STREAM: &[u8] = b"0001";

/// The C library's text for an error (what perror prints), without Rust's "(os error N)".
pub fn strerror(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_owned(),
        None => e.to_string(),
    }
}

fn uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// `path` with `suffix` appended to its last component (`agent.sock` → `agent.sock.pid`).
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

// ---------------------------------------------------------------------------------------
// Where the shared socket is

/// The shared socket and the files beside it.
pub struct Place {
    /// The socket, as an absolute path (every shell must find the same one, whatever its
    /// working directory).
    pub sock: PathBuf,
    lock: PathBuf,
    pid: PathBuf,
}

impl Place {
    /// `-a PATH` (made absolute), or the per-user default, whose directories are created
    /// (mode 0700) when missing. Checks the length and the directory rules; touches nothing
    /// beside the socket.
    pub fn resolve(bind: Option<&Path>) -> Result<Place, String> {
        let (sock, create) = match bind {
            Some(p) if p.as_os_str().is_empty() => return Err("-a: empty path".to_owned()),
            Some(p) if p.is_absolute() => (p.to_path_buf(), Vec::new()),
            Some(p) => {
                let cwd = std::env::current_dir()
                    .map_err(|e| format!("current directory: {}", strerror(&e)))?;
                (cwd.join(p), Vec::new())
            }
            None => default_socket()?,
        };
        if sock.as_os_str().len() > SUN_PATH_MAX {
            return Err(format!(
                "unix_listener: path \"{}\" too long for Unix domain socket",
                sock.display()
            ));
        }
        for dir in &create {
            make_private_dir(dir).map_err(|e| format!("{}: {e}", sock.display()))?;
        }
        let dir = sock
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .ok_or_else(|| format!("{}: not a socket path", sock.display()))?;
        check_dir(dir).map_err(|why| format!("{}: {why}", sock.display()))?;
        Ok(Place {
            lock: beside(&sock, ".lock"),
            pid: beside(&sock, ".pid"),
            sock,
        })
    }

    /// What is at the socket path now. `Err` (with the line to print) for what must be left
    /// alone: not a socket, or someone else's.
    pub fn inspect(&self) -> Result<Found, String> {
        let shown = self.sock.display();
        let meta = match fs::symlink_metadata(&self.sock) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Absent),
            Err(e) => return Err(format!("{shown}: {}", strerror(&e))),
        };
        if !meta.file_type().is_socket() {
            return Err(format!("{shown} exists and is not a socket"));
        }
        if meta.uid() != uid() {
            return Err(format!("{shown} belongs to uid {}, not to you", meta.uid()));
        }
        Ok(match probe(&self.sock) {
            Probe::Answers(_) => Found::Running(agent_pid(&self.sock)),
            Probe::Refused => Found::Stale,
            Probe::Missing => Found::Absent,
            // An agent that exits removes its socket before it stops listening.
            Probe::Silent(_) if fs::symlink_metadata(&self.sock).is_err() => Found::Absent,
            Probe::Silent(why) => Found::Silent(format!(
                "{shown}: something listens there but does not answer as an agent ({why})"
            )),
            Probe::Failed(e) => return Err(format!("{shown}: {}", strerror(&e))),
        })
    }

    /// Take the start lock, waiting for another starter to finish (at most [`LOCK_TIMEOUT`]).
    pub fn lock(&self) -> Result<StartLock, String> {
        let shown = self.lock.display();
        let deadline = sys::Instant::now() + LOCK_TIMEOUT;
        loop {
            let mut file = open_lock_file(&self.lock, true)
                .map_err(|e| format!("{shown}: {}", strerror(&e)))?;
            loop {
                match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                    Ok(locked) => {
                        if same_file(&locked, &self.lock) {
                            return Ok(StartLock(locked));
                        }
                        // An exiting agent removed the file we opened: lock the new one.
                        break;
                    }
                    Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) => {
                        if sys::Instant::now() >= deadline {
                            return Err(format!(
                                "{shown}: still locked by another sshkeep after {} s",
                                LOCK_TIMEOUT.as_secs()
                            ));
                        }
                        std::thread::sleep(LOCK_RETRY);
                        file = f;
                    }
                    Err((_, e)) => return Err(format!("{shown}: flock: {}", e.desc())),
                }
            }
        }
    }

    /// Remove a socket nobody listens on (a crashed agent's), and its pid file. Called under
    /// the start lock, after [`Place::inspect`] said [`Found::Stale`].
    pub fn remove_stale(&self) -> Result<(), String> {
        fs::remove_file(&self.sock).map_err(|e| {
            format!(
                "cannot remove stale socket {}: {}",
                self.sock.display(),
                strerror(&e)
            )
        })?;
        if read_record(&self.pid).is_ok() {
            let _ = fs::remove_file(&self.pid);
        }
        Ok(())
    }
}

/// What [`Place::inspect`] found at the socket path.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// An agent answers: its pid, or why that is not known for certain.
    Running(Result<i32, String>),
    /// A socket of the user's that nobody listens on.
    Stale,
    /// Nothing.
    Absent,
    /// Something accepts connections but gives no agent reply (the line to print).
    Silent(String),
}

/// The per-user default socket, and the directories to create for it (in order).
fn default_socket() -> Result<(PathBuf, Vec<PathBuf>), String> {
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && runtime_dir_usable(&runtime)
    {
        let dir = runtime.join("sshkeep");
        return Ok((dir.join("agent.sock"), vec![dir]));
    }
    let home = match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h),
        None => nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.dir)
            .ok_or_else(|| "cannot find the home directory: HOME is not set".to_owned())?,
    };
    if !home.is_absolute() {
        return Err(format!(
            "HOME is not an absolute path: {}",
            home.to_string_lossy()
        ));
    }
    let host = sys::hostname().unwrap_or_default();
    let ssh = home.join(".ssh");
    let agent = ssh.join("agent");
    let sock = agent.join(format!("sshkeep.{}.sock", host_label(&host)));
    Ok((sock, vec![ssh, agent]))
}

/// `$XDG_RUNTIME_DIR` is used only when it is an existing directory of the user's that nobody
/// else can write to (the XDG rule); otherwise (e.g. after `su`, which keeps the previous
/// user's) the default under `~/.ssh/agent` is used.
fn runtime_dir_usable(dir: &Path) -> bool {
    dir.is_absolute()
        && fs::metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid() && m.mode() & 0o022 == 0)
}

/// The host name as a file name part: letters, digits, `.`, `-` and `_` kept, anything else
/// `_`; `localhost` when empty.
fn host_label(raw: &[u8]) -> String {
    let label: String = raw
        .iter()
        .take(64)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
                char::from(b)
            } else {
                '_'
            }
        })
        .collect();
    if label.is_empty() {
        "localhost".to_owned()
    } else {
        label
    }
}

/// `mkdir dir 0700`, or nothing if it exists (it is checked by the caller).
fn make_private_dir(dir: &Path) -> Result<(), String> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        // The umask may have taken bits away; none may be added.
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {}: {}", dir.display(), strerror(&e))),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("mkdir {}: {}", dir.display(), strerror(&e))),
    }
}

/// The directory rules (module doc): `dir` a real directory of the user's, writable by nobody
/// else; every directory above it (symbolic links resolved) root's or the user's and writable
/// by nobody else unless sticky. Returns why not.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let me = uid();
    let shown = dir.display();
    let meta = fs::symlink_metadata(dir).map_err(|e| format!("{shown}: {}", strerror(&e)))?;
    if meta.file_type().is_symlink() {
        return Err(format!("{shown} is a symbolic link, not a directory"));
    }
    if !meta.is_dir() {
        return Err(format!("{shown} is not a directory"));
    }
    if meta.uid() != me {
        return Err(format!(
            "directory {shown} belongs to uid {}, not to you",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("directory {shown} is writable by group or others"));
    }
    let real = fs::canonicalize(dir).map_err(|e| format!("{shown}: {}", strerror(&e)))?;
    let mut above = real.parent();
    while let Some(a) = above {
        let m =
            fs::symlink_metadata(a).map_err(|e| format!("{}: {}", a.display(), strerror(&e)))?;
        if m.uid() != 0 && m.uid() != me {
            return Err(format!(
                "directory {} above it belongs to uid {}",
                a.display(),
                m.uid()
            ));
        }
        if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
            return Err(format!(
                "directory {} above it is writable by group or others",
                a.display()
            ));
        }
        above = a.parent();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The start lock

/// The exclusive start lock on `P.lock`, released when dropped (or by [`Ready::signal`]).
pub struct StartLock(Flock<File>);

/// Open (or create, mode 0600) the lock file, refusing links and other users' files.
fn open_lock_file(path: &Path, create: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != uid() {
        return Err(io::Error::other("not a regular file of yours"));
    }
    Ok(file)
}

/// Whether `path` still names the file `file` has open.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// What the agent a starter forked uses to say it is ready: the start lock (inherited across
/// the fork) and the write end of a pipe whose read end the starter waits on.
pub struct Ready {
    lock: StartLock,
    pipe: OwnedFd,
}

impl Ready {
    pub fn new(lock: StartLock, pipe: OwnedFd) -> Ready {
        Ready { lock, pipe }
    }

    /// Called by the agent just before it serves: release the start lock (the next shells find
    /// it answering) and let the starter print the snippet. If the agent dies before, the
    /// starter reads end-of-file instead.
    pub fn signal(self) {
        match self.lock.0.unlock() {
            Ok(file) => drop(file),
            // Dropping it would try the unlock again and panic: keep it open until we exit.
            Err((locked, _)) => std::mem::forget(locked),
        }
        let _ = nix::unistd::write(&self.pipe, &[1]);
    }
}

// ---------------------------------------------------------------------------------------
// The pid file

/// The contents of `P.pid`: what the agent records so that readers can be sure of its pid.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PidRecord {
    pid: i32,
    /// Field 22 of /proc/PID/stat: clock ticks after boot.
    start: u64,
    /// Device and inode of the socket file.
    socket: (u64, u64),
    /// Inode of the listening socket (as /proc/net/unix shows it).
    listener: u64,
}

impl PidRecord {
    /// This process, serving `listener` bound at `sock`.
    fn of_self(sock: &Path, listener: &UnixListener) -> Result<PidRecord, String> {
        let pid = i32::try_from(std::process::id()).map_err(|_| "pid out of range".to_owned())?;
        let stat = read_small(Path::new("/proc/self/stat"))
            .map_err(|e| format!("/proc/self/stat: {}", strerror(&e)))?;
        let (_, start) = parse_stat(&stat).ok_or("/proc/self/stat: cannot parse")?;
        let file = fs::symlink_metadata(sock)
            .map_err(|e| format!("{}: {}", sock.display(), strerror(&e)))?;
        if !file.file_type().is_socket() {
            return Err(format!("{} is not a socket", sock.display()));
        }
        let st = nix::sys::stat::fstat(listener).map_err(|e| format!("fstat: {}", e.desc()))?;
        Ok(PidRecord {
            pid,
            start,
            socket: (file.dev(), file.ino()),
            listener: st.st_ino,
        })
    }

    fn format(&self) -> String {
        format!(
            "pid {}\nstart {}\nsocket {} {}\nlistener {}\n",
            self.pid, self.start, self.socket.0, self.socket.1, self.listener
        )
    }

    /// Exactly the four lines of `format`, with a pid above 1 (never 0, 1 or negative, which
    /// `kill` would take as a process group, init or every process).
    fn parse(text: &str) -> Option<PidRecord> {
        let mut lines = text.strip_suffix('\n')?.split('\n');
        let mut field = |name: &str| -> Option<Vec<u64>> {
            let rest = lines.next()?.strip_prefix(name)?.strip_prefix(' ')?;
            rest.split(' ').map(parse_decimal).collect()
        };
        let pid = match field("pid")?.as_slice() {
            [p] => i32::try_from(*p).ok().filter(|&p| p > 1)?,
            _ => return None,
        };
        let start = match field("start")?.as_slice() {
            [s] => *s,
            _ => return None,
        };
        let socket = match field("socket")?.as_slice() {
            [d, i] => (*d, *i),
            _ => return None,
        };
        let listener = match field("listener")?.as_slice() {
            [l] => *l,
            _ => return None,
        };
        if lines.next().is_some() {
            return None;
        }
        Some(PidRecord {
            pid,
            start,
            socket,
            listener,
        })
    }
}

/// Digits only (no sign, no space), within u64.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Read a small text file (at most [`PROC_FILE_MAX`] bytes) without following a link or
/// blocking on a FIFO.
fn read_small(path: &Path) -> io::Result<String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    let mut text = String::new();
    file.take(PROC_FILE_MAX).read_to_string(&mut text)?;
    Ok(text)
}

/// Read and check `P.pid` (rule 1 of the module doc, but for the directory).
fn read_record(path: &Path) -> Result<PidRecord, String> {
    let shown = path.display();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!("no pid file {shown}"),
            _ => format!("{shown}: {}", strerror(&e)),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{shown}: {}", strerror(&e)))?;
    if !meta.is_file() || meta.uid() != uid() || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{shown} is not a regular file of yours, writable by you alone"
        ));
    }
    if meta.len() > PID_FILE_MAX {
        return Err(format!("{shown} is too large"));
    }
    let mut text = String::new();
    file.take(PID_FILE_MAX)
        .read_to_string(&mut text)
        .map_err(|_| format!("{shown} cannot be read as text"))?;
    PidRecord::parse(&text).ok_or_else(|| format!("{shown} is malformed"))
}

/// Write `P.pid` atomically: a temporary file beside it, then a rename.
fn write_record(path: &Path, record: &PidRecord) -> io::Result<()> {
    let tmp = beside(path, &format!(".{}.tmp", record.pid));
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(record.format().as_bytes()))
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The pid of the agent serving `sock`, if it is known for certain (module doc), else why not.
pub fn agent_pid(sock: &Path) -> Result<i32, String> {
    let dir = sock
        .parent()
        .ok_or_else(|| format!("{} has no directory", sock.display()))?;
    check_dir(dir)?;
    let record = read_record(&beside(sock, ".pid"))?;
    let pid = record.pid;
    let file =
        fs::symlink_metadata(sock).map_err(|e| format!("{}: {}", sock.display(), strerror(&e)))?;
    if (file.dev(), file.ino()) != record.socket {
        return Err(format!(
            "its pid file was written for another socket at {}",
            sock.display()
        ));
    }
    let stat = read_small(Path::new(&format!("/proc/{pid}/stat")))
        .map_err(|_| format!("process {pid} of its pid file is gone"))?;
    match parse_stat(&stat) {
        Some(('Z' | 'X', _)) => {
            return Err(format!("process {pid} of its pid file is gone"));
        }
        Some((_, start)) if start == record.start => {}
        _ => {
            return Err(format!(
                "process {pid} is not the agent that wrote its pid file"
            ));
        }
    }
    let status = read_small(Path::new(&format!("/proc/{pid}/status")))
        .map_err(|e| format!("/proc/{pid}/status: {}", strerror(&e)))?;
    if parse_status_uids(&status) != Some((uid(), uid())) {
        return Err(format!("process {pid} does not run as you"));
    }
    let mut unix = Vec::new();
    File::open("/proc/net/unix")
        .and_then(|f| f.take(PROC_NET_UNIX_MAX).read_to_end(&mut unix))
        .map_err(|e| format!("/proc/net/unix: {}", strerror(&e)))?;
    let listeners = listening_inodes(&unix, sock.as_os_str().as_bytes());
    if listeners != [record.listener] {
        return Err(format!(
            "process {pid} is not the only listener at {} that /proc/net/unix shows",
            sock.display()
        ));
    }
    Ok(pid)
}

/// The state and the start time (fields 3 and 22) of a /proc/PID/stat line. The name (field
/// 2) is in parentheses and may hold anything, spaces and parentheses included, so fields are
/// counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = parse_decimal(fields.nth(18)?)?;
    Some((state, start))
}

/// The real and effective uid from /proc/PID/status (`Uid:\treal\teffective\tsaved\tfs`).
fn parse_status_uids(status: &str) -> Option<(u32, u32)> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let mut ids = line.split_ascii_whitespace().map(|s| s.parse::<u32>().ok());
    Some((ids.next()??, ids.next()??))
}

/// The inodes of the listening stream sockets bound to `path`, from /proc/net/unix. Each line
/// is `%pK: %08X %08X %08X %04X %02X %5lu` (slot, refs, protocol, flags, type, state, inode),
/// then a space and the path for a bound socket. The path is the rest of the line, spaces
/// included.
fn listening_inodes(unix: &[u8], path: &[u8]) -> Vec<u64> {
    let mut found = Vec::new();
    for line in unix.split(|&b| b == b'\n').skip(1) {
        let mut rest = line;
        let mut fields: [&[u8]; 7] = [&[]; 7];
        for field in &mut fields {
            while let Some((b' ', tail)) = rest.split_first() {
                rest = tail;
            }
            let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            let Some((word, tail)) = rest.split_at_checked(end) else {
                break;
            };
            *field = word;
            rest = tail;
        }
        let [_, _, _, flags, kind, _, inode] = fields;
        let Some(bound) = rest.strip_prefix(b" ") else {
            continue;
        };
        let listening = std::str::from_utf8(flags)
            .ok()
            .and_then(|f| u32::from_str_radix(f, 16).ok())
            .is_some_and(|f| f & SO_ACCEPTCON != 0);
        if !listening || kind != PROC_SOCK_STREAM || bound != path {
            continue;
        }
        if let Some(inode) = std::str::from_utf8(inode).ok().and_then(parse_decimal) {
            found.push(inode);
        }
    }
    found
}

// ---------------------------------------------------------------------------------------
// What the agent removes at exit

/// The files an agent wrote or owns beside a shared socket, removed when it exits (only what
/// is still its own, module doc).
pub struct AgentFiles {
    pid_file: PathBuf,
    /// What it wrote in the pid file; `None` when it could not write one.
    record: Option<PidRecord>,
    /// The socket it bound and its device and inode (not under socket activation).
    socket: Option<(PathBuf, (u64, u64))>,
    /// The lock file (not under socket activation).
    lock: Option<PathBuf>,
    /// A duplicate of the listening socket, so that it listens until the files are removed.
    _listener: Option<UnixListener>,
}

impl AgentFiles {
    /// In an agent started by `--reuse`, just after the fork: record what it owns and write
    /// the pid file. Failures are logged; the agent serves without a pid file then.
    pub fn shared(place: &Place, listener: &UnixListener) -> AgentFiles {
        let socket = fs::symlink_metadata(&place.sock)
            .ok()
            .map(|m| (place.sock.clone(), (m.dev(), m.ino())));
        let record = match PidRecord::of_self(&place.sock, listener) {
            Ok(r) => match write_record(&place.pid, &r) {
                Ok(()) => Some(r),
                Err(e) => {
                    error!("{}: {}", place.pid.display(), strerror(&e));
                    None
                }
            },
            Err(why) => {
                error!("no pid file: {why}");
                None
            }
        };
        AgentFiles {
            pid_file: place.pid.clone(),
            record,
            socket,
            lock: Some(place.lock.clone()),
            _listener: listener.try_clone().ok(),
        }
    }

    /// Under socket activation: write the pid file beside the inherited socket when that has a
    /// path in a directory that passes the rules. The socket and its directory are the service
    /// manager's and are left alone.
    pub fn activated(listener: &UnixListener) -> Result<AgentFiles, String> {
        let addr = listener.local_addr().map_err(|e| strerror(&e))?;
        let sock = addr
            .as_pathname()
            .filter(|p| p.is_absolute())
            .ok_or("the socket has no absolute path")?
            .to_path_buf();
        let dir = sock.parent().ok_or("the socket has no directory")?;
        check_dir(dir)?;
        let record = PidRecord::of_self(&sock, listener)?;
        let pid_file = beside(&sock, ".pid");
        write_record(&pid_file, &record)
            .map_err(|e| format!("{}: {}", pid_file.display(), strerror(&e)))?;
        Ok(AgentFiles {
            pid_file,
            record: Some(record),
            socket: None,
            lock: None,
            _listener: None,
        })
    }

    /// Remove what is still ours: pid file first, socket next (no starter can replace it
    /// before it is gone, as it still listens), the lock file if it can be locked at once.
    pub fn remove(&self) {
        let lock = self.lock.as_deref().and_then(|path| {
            let file = open_lock_file(path, false).ok()?;
            let locked = Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()?;
            same_file(&locked, path).then_some((path, locked))
        });
        if let Some(record) = &self.record
            && read_record(&self.pid_file).as_ref() == Ok(record)
        {
            let _ = fs::remove_file(&self.pid_file);
        }
        if let Some((path, id)) = &self.socket
            && fs::symlink_metadata(path)
                .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == *id)
        {
            let _ = fs::remove_file(path);
        }
        if let Some((path, _locked)) = lock {
            let _ = fs::remove_file(path);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Probing a socket

/// What a socket does when asked for its identities.
#[derive(Debug)]
pub enum Probe {
    /// An agent answered: with the number of keys it lists (`None`: it refused to list).
    Answers(Option<u32>),
    /// Nobody listens (ECONNREFUSED).
    Refused,
    /// No such path.
    Missing,
    /// It accepted (or queued) the connection but gave no agent reply in time: why.
    Silent(String),
    /// Could not connect (permission, not a socket, ...).
    Failed(io::Error),
}

/// Connect to `path` and ask for the identities, all within [`PROBE_TIMEOUT`].
pub fn probe(path: &Path) -> Probe {
    let deadline = sys::Instant::now() + PROBE_TIMEOUT;
    let stream = match connect(path) {
        Ok(s) => s,
        Err(e) => {
            return match e.raw_os_error() {
                Some(libc::ECONNREFUSED) => Probe::Refused,
                Some(libc::ENOENT) => Probe::Missing,
                // The listen queue stayed full for the whole send timeout.
                Some(libc::EAGAIN) => Probe::Silent("its connection queue is full".to_owned()),
                _ => Probe::Failed(e),
            };
        }
    };
    let silent = |e: io::Error| {
        Probe::Silent(match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!("no reply within {} s", PROBE_TIMEOUT.as_secs())
            }
            io::ErrorKind::UnexpectedEof => "it closed the connection without a reply".to_owned(),
            _ => strerror(&e),
        })
    };
    let request = [0, 0, 0, 1, SSH_AGENTC_REQUEST_IDENTITIES];
    if let Err(e) = (&stream).write_all(&request) {
        return silent(e);
    }
    let read = |buf: &mut [u8]| -> io::Result<()> {
        let left = deadline.saturating_duration_since(sys::Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        (&stream).read_exact(buf)
    };
    let mut head = [0u8; 5];
    if let Err(e) = read(&mut head) {
        return silent(e);
    }
    let [l0, l1, l2, l3, kind] = head;
    let len = u32::from_be_bytes([l0, l1, l2, l3]);
    if len == 0 || len > MAX_REPLY_LEN {
        return Probe::Silent("its reply is not an agent's".to_owned());
    }
    match kind {
        SSH_AGENT_IDENTITIES_ANSWER if len >= 5 => {
            let mut count = [0u8; 4];
            match read(&mut count) {
                Ok(()) => Probe::Answers(Some(u32::from_be_bytes(count))),
                Err(e) => silent(e),
            }
        }
        SSH_AGENT_FAILURE => Probe::Answers(None),
        _ => Probe::Silent(format!("it replied with message type {kind}")),
    }
}

/// A connection to `path` that waits at most [`PROBE_TIMEOUT`] in connect (a Unix socket's
/// connect blocks while the listener's queue is full, up to the send timeout).
fn connect(path: &Path) -> io::Result<UnixStream> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr, sockopt};
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let secs = i64::try_from(PROBE_TIMEOUT.as_secs()).unwrap_or(2);
    socket::setsockopt(
        &fd,
        sockopt::SendTimeout,
        &nix::sys::time::TimeVal::new(secs, 0),
    )?;
    let addr = UnixAddr::new(path)?;
    socket::connect(fd.as_raw_fd(), &addr)?;
    let stream = UnixStream::from(fd);
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    Ok(stream)
}

// ---------------------------------------------------------------------------------------
// --status

/// `--status`: the line to print on stdout, and whether an agent answers. Probes `bind`, or
/// else `$SSH_AUTH_SOCK`; any agent, OpenSSH's and forwarded ones included.
pub fn status(bind: Option<PathBuf>) -> (String, bool) {
    let env = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty());
    let Some(path) = bind.or_else(|| env.map(PathBuf::from)) else {
        return ("SSH_AUTH_SOCK is not set".to_owned(), false);
    };
    let shown = escape(&path);
    match fs::symlink_metadata(&path) {
        Err(e) => return (format!("no agent at {shown}: {}", strerror(&e)), false),
        Ok(m) if !m.file_type().is_socket() => {
            return (format!("no agent at {shown}: not a socket"), false);
        }
        Ok(_) => {}
    }
    match probe(&path) {
        Probe::Answers(keys) => {
            let mut line = format!("agent running at {shown}: ");
            line.push_str(&match keys {
                Some(1) => "1 key".to_owned(),
                Some(n) => format!("{n} keys"),
                None => "it does not list its keys".to_owned(),
            });
            if let Ok(pid) = agent_pid(&path) {
                line.push_str(&format!(", pid {pid}"));
            }
            (line, true)
        }
        Probe::Refused => (format!("stale socket at {shown}: no agent listens"), false),
        Probe::Missing => (
            format!(
                "no agent at {shown}: {}",
                strerror(&io::Error::from_raw_os_error(libc::ENOENT))
            ),
            false,
        ),
        Probe::Silent(why) => (format!("no agent answers at {shown}: {why}"), false),
        Probe::Failed(e) => (format!("no agent at {shown}: {}", strerror(&e)), false),
    }
}

/// A path for a one-line report: control characters and backslashes as `\ooo` octal escapes
/// of their bytes, bytes that are not UTF-8 as U+FFFD.
fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if c.is_control() || c == '\\' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:03o}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PidRecord {
        PidRecord {
            pid: 1234,
            start: 88754,
            socket: (2049, 123456),
            listener: 18364,
        }
    }

    #[test]
    fn pid_record_round_trips() {
        let r = record();
        assert_eq!(
            r.format(),
            "pid 1234\nstart 88754\nsocket 2049 123456\nlistener 18364\n"
        );
        assert_eq!(PidRecord::parse(&r.format()), Some(r));
    }

    #[test]
    fn pid_record_refuses_anything_else() {
        let good = record().format();
        let cases: Vec<String> = vec![
            String::new(),
            "pid 1234\n".into(),
            good.replace("pid 1234", "pid 1"),
            good.replace("pid 1234", "pid 0"),
            good.replace("pid 1234", "pid -5"),
            good.replace("pid 1234", "pid +5"),
            good.replace("pid 1234", "pid 2147483648"),
            good.replace("pid 1234", "pid  1234"),
            good.replace("pid 1234", "pid 1234 5"),
            good.replace("pid 1234", "pid 0x10"),
            good.replace("start 88754", "start 99999999999999999999"),
            good.replace("socket 2049 123456", "socket 2049"),
            good.replace("socket 2049 123456", "socket 2049 123456 7"),
            good.replace("listener", "listen"),
            format!("{good}extra\n"),
            good.replace('\n', "\r\n"),
            "start 1\npid 1234\nsocket 1 2\nlistener 3\n".into(),
            "pid é\nstart 1\nsocket 1 2\nlistener 3\n".into(),
        ];
        for text in cases {
            assert_eq!(PidRecord::parse(&text), None, "{text:?}");
        }
    }

    #[test]
    fn stat_fields() {
        let line = "19250 (sshkeep) S 19244 19242 8275 0 -1 4194560 268 0 1 0 0 0 0 0 20 0 1 0 \
                    88754 5554176 914 18446744073709551615 1 1 0 0 0 0 0 4096 83523 0 0 0 17 0";
        assert_eq!(parse_stat(line), Some(('S', 88754)));
        // A name with spaces and parentheses.
        let odd = line.replace("(sshkeep)", "(a) b (c) Z 1)");
        assert_eq!(parse_stat(&odd), Some(('S', 88754)));
        assert_eq!(parse_stat("1 (x) S 2 3"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat(")"), None);
        let bad = line.replace("88754", "-1");
        assert_eq!(parse_stat(&bad), None);
        // Our own, as the agent reads it.
        let me = fs::read_to_string("/proc/self/stat").unwrap();
        assert!(matches!(parse_stat(&me), Some((_, s)) if s > 0));
    }

    #[test]
    fn status_uids() {
        let text = "Name:\tsshkeep\nUmask:\t0022\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t5\t5\t5\n";
        assert_eq!(parse_status_uids(text), Some((1000, 1001)));
        assert_eq!(parse_status_uids("Uid:\t1000\n"), None);
        assert_eq!(parse_status_uids("Uid:\tx\t1\n"), None);
        assert_eq!(parse_status_uids("Gid:\t1\t1\n"), None);
        assert_eq!(parse_status_uids(""), None);
    }

    #[test]
    fn proc_net_unix_listeners() {
        let table = b"Num       RefCount Protocol Flags    Type St Inode Path\n\
            000000003e09f3c4: 00000002 00000000 00010000 0001 01 18364 /tmp/n/s\n\
            0000000000000000: 00000003 00000000 00000000 0001 03    77 /tmp/n/s\n\
            0000000000000000: 00000002 00000000 00010000 0005 01    78 /tmp/n/s\n\
            0000000000000000: 00000002 00000000 00010000 0001 01    79 /tmp/n/s2\n\
            0000000000000000: 00000002 00000000 00010000 0001 01    80 /tmp/a b\n\
            0000000000000000: 00000002 00000000 00010000 0001 01    81\n\
            0000000000000000: 00000002 00000000 00010000 0001 01    82 @abstract\n\
            garbage\n\
            \n\
            0000000000000000: 00000002 00000000 0001zzzz 0001 01    83 /tmp/n/s\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 1x /tmp/n/s\n";
        assert_eq!(listening_inodes(table, b"/tmp/n/s"), vec![18364]);
        assert_eq!(listening_inodes(table, b"/tmp/a b"), vec![80]);
        assert_eq!(listening_inodes(table, b"/tmp/n"), Vec::<u64>::new());
        assert_eq!(listening_inodes(b"", b"/x"), Vec::<u64>::new());
        assert_eq!(listening_inodes(b"\n\n  \n", b"/x"), Vec::<u64>::new());
        let twice = [&table[..], b"0: 2 0 00010000 0001 01 99 /tmp/n/s\n"].concat();
        assert_eq!(listening_inodes(&twice, b"/tmp/n/s"), vec![18364, 99]);
    }

    #[test]
    fn host_labels() {
        assert_eq!(host_label(b"build-1.example.org"), "build-1.example.org");
        assert_eq!(host_label(b"a/b c\xff"), "a_b_c_");
        assert_eq!(host_label(b"../x"), ".._x");
        assert_eq!(host_label(b""), "localhost");
        assert_eq!(host_label(&[b'x'; 300]).len(), 64);
    }

    #[test]
    fn escaped_paths() {
        assert_eq!(
            escape(Path::new("/run/user/1000/a b")),
            "/run/user/1000/a b"
        );
        assert_eq!(escape(Path::new("/tmp/é")), "/tmp/é");
        assert_eq!(escape(Path::new("/tmp/a\nb\\c")), "/tmp/a\\012b\\134c");
    }
}
