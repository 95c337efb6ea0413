//! Confirmation prompts (`ssh-add -c`): who is asking and for where, the lines a prompt adds
//! to OpenSSH's text and the use log line (`--log-use`) of each signature request; and the
//! askpass children themselves, one on screen at a time, the others in line, each with its
//! timeout (`Prompts`, which the server loop polls).
//!
//! - The requester: the connection's peer pid (`SO_PEERCRED`, kept by the server when it admits
//!   the connection) and its parents, named from `/proc/PID/stat`. /proc is read only when a
//!   prompt or a log line needs it, once per connection, never at accept time.
//! - The destination: the host keys the connection is bound to (`Agent`'s `SignFacts`), named
//!   from plain entries of the user's `~/.ssh/known_hosts`, read when a line needs a name.
//!
//! Every name shown here was chosen by someone else (a process names itself; known_hosts and key
//! comments are text files): each is quoted, with anything but printable ASCII escaped, and
//! capped, so it can neither add a line to a prompt nor pass for sshkeep's own words.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::agent::{PendingSign, Refusal, SignFacts, SignUse};
use crate::keys;
use crate::log::Quoted;
use crate::sys::Instant;

/// Parents named after the peer itself (the issue asks for at least two levels).
const MAX_PARENTS: usize = 3;
/// Longest process name shown (the kernel keeps 15 bytes; the cap guards the rest).
const MAX_NAME: usize = 32;
/// Longest known_hosts name or key comment shown.
const MAX_TEXT: usize = 64;
/// Most of `/proc/PID/stat` read: its comm field and ppid come first.
const MAX_STAT: u64 = 4096;
/// Most of known_hosts read per look-up; entries beyond it are not found.
const MAX_KNOWN_HOSTS: u64 = 1 << 20;
/// A confirmation prompt that takes longer than this is refused and its askpass killed.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);
/// Most output an askpass may print; its first line is all that matters.
const ASKPASS_OUTPUT_LIMIT: usize = 1024;
/// How soon the loop looks again at an askpass that closed its output but has not been seen
/// to exit (SIGCHLD normally wakes it first).
const EXIT_RECHECK: Duration = Duration::from_millis(50);

/// A connection's peer process: its pid from `SO_PEERCRED`, described on first need.
#[derive(Debug, Default)]
pub struct Peer {
    /// `None`: the kernel gave no pid (0: the peer is in a pid namespace we cannot see).
    pid: Option<u32>,
    described: Option<String>,
}

impl Peer {
    pub fn new(pid: libc::pid_t) -> Peer {
        Peer {
            pid: u32::try_from(pid).ok().filter(|&p| p != 0),
            described: None,
        }
    }

    /// `"ssh" (pid 4242), from "bash" (pid 4100), from "sshd" (pid 900)`, read from /proc at
    /// the connection's first request that needs it and kept for the connection's life.
    pub fn describe(&mut self) -> &str {
        let pid = self.pid;
        self.described.get_or_insert_with(|| describe_process(pid))
    }
}

/// What `/proc/PID/stat` says about a process.
enum Stat {
    /// Its name (the comm field), its parent, and whether it has exited (a zombie).
    Running {
        name: String,
        ppid: u32,
        exited: bool,
    },
    /// No such process.
    Gone,
    /// /proc cannot tell (hidden, unreadable, malformed).
    Unknown,
}

fn read_stat(pid: u32) -> Stat {
    let mut text = Vec::new();
    let read = File::open(format!("/proc/{pid}/stat"))
        .and_then(|f| f.take(MAX_STAT).read_to_end(&mut text));
    match read {
        Ok(_) => parse_stat(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stat::Gone,
        Err(_) => Stat::Unknown,
    }
}

/// `pid (comm) state ppid ...`: comm is whatever the process chose (parentheses, spaces and
/// newlines included), so it runs from the first '(' to the last ')'.
fn parse_stat(text: &[u8]) -> Stat {
    let open = text.iter().position(|&b| b == b'(');
    let close = text.iter().rposition(|&b| b == b')');
    let (Some(open), Some(close)) = (open, close) else {
        return Stat::Unknown;
    };
    let (Some(comm), Some(rest)) = (
        text.get(open.saturating_add(1)..close),
        text.get(close.saturating_add(1)..),
    ) else {
        return Stat::Unknown;
    };
    let rest = String::from_utf8_lossy(rest);
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next().unwrap_or_default();
    let Some(ppid) = fields.next().and_then(|p| p.parse().ok()) else {
        return Stat::Unknown;
    };
    Stat::Running {
        name: quote(comm, MAX_NAME),
        ppid,
        exited: state.starts_with(['Z', 'X']),
    }
}

/// The peer and up to `MAX_PARENTS` parents, stopping at pid 1 or where /proc cannot tell.
fn describe_process(pid: Option<u32>) -> String {
    let Some(pid) = pid else {
        return "an unknown process (no pid)".to_owned();
    };
    let (mut out, mut next) = match read_stat(pid) {
        Stat::Running {
            name,
            ppid,
            exited: false,
        } => (format!("{name} (pid {pid})"), ppid),
        Stat::Running { name, .. } => return format!("{name} (pid {pid}, exited)"),
        Stat::Gone => return format!("a process that has exited (pid {pid})"),
        Stat::Unknown => return format!("a process /proc does not name (pid {pid})"),
    };
    for _ in 0..MAX_PARENTS {
        if pid == 1 || next == 0 {
            break;
        }
        let Stat::Running { name, ppid, .. } = read_stat(next) else {
            break;
        };
        // Writing to a String cannot fail.
        let _ = write!(out, ", from {name} (pid {next})");
        if next == 1 {
            break;
        }
        next = ppid;
    }
    out
}

/// `"text"` with printable ASCII kept and every other byte (control characters, newlines,
/// quotes, backslashes, non-ASCII) written `\xNN`; at most `max` bytes of `text`, then `...`.
pub fn quote(text: &[u8], max: usize) -> String {
    Quoted(text, max).to_string()
}

/// The user's `~/.ssh/known_hosts`, to name bound host keys.
#[derive(Debug, Default)]
pub struct KnownHosts {
    path: Option<PathBuf>,
}

impl KnownHosts {
    /// `$HOME/.ssh/known_hosts` ($HOME as at start), else the passwd entry's home.
    pub fn from_env() -> KnownHosts {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|u| u.dir)
            });
        KnownHosts {
            path: home.map(|h| h.join(".ssh").join("known_hosts")),
        }
    }

    #[cfg(test)]
    fn at(path: PathBuf) -> KnownHosts {
        KnownHosts { path: Some(path) }
    }

    /// The host names known_hosts gives each of `keys` (plain key blobs), quoted: the
    /// comma-separated host field of the first plain entry for that key. Hashed entries
    /// (`|1|`) cannot be named; `@cert-authority` and `@revoked` lines are skipped.
    pub fn names(&self, keys: &[&[u8]]) -> Vec<Option<String>> {
        let mut names = vec![None; keys.len()];
        if keys.is_empty() {
            return names;
        }
        let Some(text) = self.path.as_ref().and_then(|p| read_bounded(p)) else {
            return names;
        };
        for line in text.split(|&b| b == b'\n') {
            if names.iter().all(Option::is_some) {
                break;
            }
            let Some((hosts, blob)) = parse_known_hosts_line(line) else {
                continue;
            };
            for (name, key) in names.iter_mut().zip(keys) {
                if name.is_none() && blob.as_slice() == *key {
                    *name = Some(quote(hosts, MAX_TEXT));
                }
            }
        }
        names
    }
}

/// At most `MAX_KNOWN_HOSTS` bytes of a regular file, opened without blocking (a FIFO put in
/// its place must not stall the agent) and without becoming a controlling terminal.
fn read_bounded(path: &std::path::Path) -> Option<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = Vec::new();
    file.take(MAX_KNOWN_HOSTS).read_to_end(&mut text).ok()?;
    Some(text)
}

/// A plain known_hosts entry: `host[,host2] keytype base64 [comment]` → (hosts, key blob).
fn parse_known_hosts_line(line: &[u8]) -> Option<(&[u8], Vec<u8>)> {
    let mut fields = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let hosts = fields.next()?;
    // Comments, markers (@cert-authority, @revoked) and hashed names.
    if hosts.starts_with(b"#") || hosts.starts_with(b"@") || hosts.starts_with(b"|") {
        return None;
    }
    let _keytype = fields.next()?;
    let blob = keys::decode_base64(std::str::from_utf8(fields.next()?).ok()?)?;
    Some((hosts, blob))
}

/// The lines a confirmation prompt adds after OpenSSH's text (`base`): who asks, and where
/// the connection is bound to.
pub fn prompt(base: &str, facts: &SignFacts, requester: &str, known: &KnownHosts) -> String {
    let names = host_names(facts, known);
    let mut out = String::from(base);
    let by = if facts.is_forwarded() {
        "Forwarded by"
    } else {
        "Requested by"
    };
    let _ = write!(out, "\n{by} {requester}");
    for (i, (hop, name)) in facts.hops.iter().zip(&names).enumerate() {
        let last = i.saturating_add(1) == facts.hops.len();
        let role = if hop.forwarded {
            "Forwarded to"
        } else {
            "Destination"
        };
        let kind = if hop.certificate {
            "host certificate"
        } else {
            "host key"
        };
        let _ = write!(out, "\n{role} {kind} {}", hop.fingerprint);
        match name {
            Some(n) => {
                let _ = write!(out, ", known as {n}");
            }
            None => out.push_str(" (no name in known_hosts)"),
        }
        if last && hop.forwarded {
            out.push_str("\nDestination unknown: requested on the last host above");
        }
    }
    out
}

fn host_names(facts: &SignFacts, known: &KnownHosts) -> Vec<Option<String>> {
    let keys: Vec<&[u8]> = facts.hops.iter().map(|h| h.key.as_slice()).collect();
    known.names(&keys)
}

/// One use log line, formatted straight into the log's buffer:
/// `use of key SHA256:.. "comment"; requested by "ssh" (pid 4242), from ...; destination host
/// key SHA256:.. "host"; local; allowed`.
pub struct UseLine<'a> {
    sign: &'a SignUse,
    requester: &'a str,
    names: Vec<Option<String>>,
}

impl<'a> UseLine<'a> {
    /// Reads known_hosts only when the connection is bound.
    pub fn new(sign: &'a SignUse, requester: &'a str, known: &KnownHosts) -> UseLine<'a> {
        let names = host_names(&sign.facts, known);
        UseLine {
            sign,
            requester,
            names,
        }
    }
}

impl fmt::Display for UseLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let facts = &self.sign.facts;
        write!(f, "use of key {} ", facts.fingerprint)?;
        match &facts.comment {
            Some(c) => Quoted(c, MAX_TEXT).fmt(f)?,
            None => f.write_str("(not held)")?,
        }
        let forwarded = facts.is_forwarded();
        let by = if forwarded { "forwarded" } else { "requested" };
        write!(f, "; {by} by {}; ", self.requester)?;
        let host = |f: &mut fmt::Formatter<'_>, i: usize| -> fmt::Result {
            let (Some(hop), Some(name)) = (facts.hops.get(i), self.names.get(i)) else {
                return Ok(());
            };
            let kind = if hop.certificate {
                "host certificate"
            } else {
                "host key"
            };
            write!(f, "{kind} {} ", hop.fingerprint)?;
            f.write_str(name.as_deref().unwrap_or("(no name in known_hosts)"))
        };
        match facts.hops.last() {
            None => f.write_str("not bound")?,
            Some(last) if last.forwarded => f.write_str("destination unknown")?,
            Some(_) => {
                f.write_str("destination ")?;
                host(f, facts.hops.len().saturating_sub(1))?;
            }
        }
        if forwarded {
            f.write_str("; forwarded through ")?;
            for (i, hop) in facts.hops.iter().enumerate() {
                if !hop.forwarded {
                    break;
                }
                if i > 0 {
                    f.write_str(", ")?;
                }
                host(f, i)?;
            }
        } else {
            f.write_str("; local")?;
        }
        match self.sign.outcome {
            Ok(()) => f.write_str("; allowed"),
            Err(why) => {
                f.write_str("; refused: ")?;
                match why {
                    Refusal::UnknownKey => f.write_str("unknown key"),
                    Refusal::Locked => f.write_str("locked"),
                    Refusal::NotPermitted(d) => write!(f, "destination not permitted ({d})"),
                    Refusal::NotConfirmed => f.write_str("confirmation refused"),
                    Refusal::SignFailed(d) => write!(f, "signing failed ({d})"),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The askpass children

/// How confirmations are asked, read once from the environment at start.
pub struct Askpass {
    /// `$SSH_ASKPASS`, or the system default.
    pub program: std::ffi::OsString,
    /// Whether the rules allow running it at all (a display, or SSH_ASKPASS_REQUIRE=force).
    pub allowed: bool,
}

impl Askpass {
    /// OpenSSH readpass.c: askpass runs only with DISPLAY or WAYLAND_DISPLAY set, or with
    /// SSH_ASKPASS_REQUIRE=force; SSH_ASKPASS_REQUIRE=never refuses.
    pub fn from_env() -> Askpass {
        let set = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
        let require = std::env::var_os("SSH_ASKPASS_REQUIRE");
        let allowed = match require.as_ref().and_then(|s| s.to_str()) {
            Some("force") => true,
            Some("never") => false,
            _ => set("DISPLAY") || set("WAYLAND_DISPLAY"),
        };
        let program = std::env::var_os("SSH_ASKPASS")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/usr/bin/ssh-askpass".into());
        Askpass { program, allowed }
    }
}

/// The askpass on screen and the signature that waits for it, asked for by `C` (the
/// server's name for a connection).
struct Shown<C> {
    /// None once its client has closed (the child is killed, then reaped).
    conn: Option<C>,
    child: Child,
    stdout: Option<ChildStdout>,
    output: Vec<u8>,
    /// CONFIRM_TIMEOUT from when it was shown.
    deadline: Instant,
    pending: PendingSign,
    /// The child's exit status once reaped.
    status: Option<ExitStatus>,
}

/// The confirmation prompts: at most one on screen at a time (OpenSSH too), the others in
/// line in arrival order. The server loop polls its output (`poll`), reports SIGCHLD
/// (`child_exited`), and takes the answers (`settle`) to finish the signatures.
pub struct Prompts<C> {
    askpass: Askpass,
    shown: Option<Shown<C>>,
    queue: VecDeque<(C, PendingSign)>,
}

impl<C: Copy + PartialEq> Prompts<C> {
    pub fn new(askpass: Askpass) -> Prompts<C> {
        Prompts {
            askpass,
            shown: None,
            queue: VecDeque::new(),
        }
    }

    /// Ask the user about `pending` on behalf of `conn`: on screen now if no other prompt
    /// is, else in line; its timeout runs from when it shows. Hands `pending` back when the
    /// askpass may not or cannot run: refused.
    pub fn ask(
        &mut self,
        conn: C,
        pending: PendingSign,
        now: Instant,
    ) -> Result<(), Box<PendingSign>> {
        if self.shown.is_some() || !self.queue.is_empty() {
            self.queue.push_back((conn, pending));
            return Ok(());
        }
        self.shown = Some(show(&self.askpass, conn, pending, now)?);
        Ok(())
    }

    /// What the loop polls for the prompt on screen: its output pipe, and when the loop must
    /// look at it even if nothing happens (its timeout, or soon when its output closed but
    /// its exit was not seen).
    pub fn poll(&self, now: Instant) -> (Option<RawFd>, Option<Instant>) {
        let Some(p) = &self.shown else {
            return (None, None);
        };
        match &p.stdout {
            Some(out) => (Some(out.as_raw_fd()), Some(p.deadline)),
            None if p.status.is_none() => (None, Some(p.deadline.min(now + EXIT_RECHECK))),
            None => (None, Some(p.deadline)),
        }
    }

    /// The prompt's output is readable: read what it printed (up to ASKPASS_OUTPUT_LIMIT).
    pub fn read(&mut self) {
        let Some(p) = self.shown.as_mut() else {
            return;
        };
        let Some(out) = p.stdout.as_mut() else {
            return;
        };
        let mut buf = [0u8; 256];
        loop {
            match out.read(&mut buf) {
                Ok(0) => {
                    p.stdout = None;
                    p.status = p.child.try_wait().ok().flatten();
                    return;
                }
                Ok(n) => {
                    let room = ASKPASS_OUTPUT_LIMIT.saturating_sub(p.output.len());
                    p.output
                        .extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    p.stdout = None;
                    return;
                }
            }
        }
    }

    /// SIGCHLD: reap the askpass on screen if it has exited.
    pub fn child_exited(&mut self) {
        if let Some(p) = &mut self.shown
            && p.status.is_none()
        {
            p.status = p.child.try_wait().ok().flatten();
        }
    }

    /// `conn` closed: an askpass still asking on its behalf is killed (and reaped later),
    /// since its answer has nowhere to go, and a question of its in line never shows.
    pub fn forget(&mut self, conn: C) {
        if let Some(p) = &mut self.shown
            && p.conn == Some(conn)
        {
            p.conn = None;
            let _ = p.child.kill();
        }
        self.queue.retain(|(c, _)| *c != conn);
    }

    /// The answers to give, in order: the prompt on screen once its askpass has exited or
    /// timed out (allowed when it exited 0 and its first line is empty or "yes", as in
    /// OpenSSH), then, while the next in line is shown, any whose askpass cannot start
    /// (refused). A prompt whose client has gone gives no answer: it signs nothing.
    pub fn settle(&mut self, now: Instant) -> Vec<(C, PendingSign, bool)> {
        let mut answers = Vec::new();
        let Some(p) = self.shown.as_mut() else {
            return answers;
        };
        if p.status.is_none() && p.stdout.is_none() {
            p.status = p.child.try_wait().ok().flatten();
        }
        let timed_out = now >= p.deadline;
        if p.status.is_none() && !timed_out {
            return answers;
        }
        if timed_out && p.status.is_none() {
            debug!("confirmation timed out");
            let _ = p.child.kill();
            // Killed with SIGKILL: it exits at once; reaping here keeps no zombie.
            let _ = p.child.wait();
        }
        let Some(p) = self.shown.take() else {
            return answers;
        };
        let allowed =
            !timed_out && p.status.is_some_and(|s| s.success()) && confirm_answer(&p.output);
        if let Some(me) = p.conn {
            answers.push((me, p.pending, allowed));
        }
        // The next in line, skipping (and refusing) any whose askpass cannot start.
        while self.shown.is_none() {
            let Some((conn, pending)) = self.queue.pop_front() else {
                break;
            };
            match show(&self.askpass, conn, pending, now) {
                Ok(p) => self.shown = Some(p),
                Err(pending) => answers.push((conn, *pending, false)),
            }
        }
        answers
    }
}

/// OpenSSH: an askpass's answer allows when its first line is empty or "yes".
fn confirm_answer(output: &[u8]) -> bool {
    let first = output
        .split(|&b| b == b'\n' || b == b'\r')
        .next()
        .unwrap_or_default();
    first.is_empty() || first.eq_ignore_ascii_case(b"yes")
}

/// Show the prompt for `pending` on behalf of `conn`; its timeout runs from `now`. Hands
/// `pending` back when the askpass may not or cannot run: refused.
fn show<C>(
    askpass: &Askpass,
    conn: C,
    pending: PendingSign,
    now: Instant,
) -> Result<Shown<C>, Box<PendingSign>> {
    let Some((child, stdout)) = spawn_askpass(askpass, &pending.prompt) else {
        return Err(Box::new(pending));
    };
    Ok(Shown {
        conn: Some(conn),
        child,
        stdout: Some(stdout),
        output: Vec::new(),
        deadline: now + CONFIRM_TIMEOUT,
        pending,
        status: None,
    })
}

/// Start `$SSH_ASKPASS "<prompt>"` with SSH_ASKPASS_PROMPT=confirm, its stdout a
/// non-blocking pipe. `None` when the rules forbid it or it cannot start: refused.
fn spawn_askpass(askpass: &Askpass, prompt: &str) -> Option<(Child, ChildStdout)> {
    if !askpass.allowed {
        debug!("no display and SSH_ASKPASS_REQUIRE is not force: confirmation refused");
        return None;
    }
    let mut child = match Command::new(&askpass.program)
        .arg(prompt)
        .env("SSH_ASKPASS_PROMPT", "confirm")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            error!("cannot run askpass {:?}: {e}", askpass.program);
            return None;
        }
    };
    let stdout = child.stdout.take()?;
    let nonblocking = nix::fcntl::fcntl(
        &stdout,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    if nonblocking.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    Some((child, stdout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::BoundHost;
    use crate::wire::Refused;

    #[test]
    fn confirm_answers() {
        assert!(confirm_answer(b""));
        assert!(confirm_answer(b"\n"));
        assert!(confirm_answer(b"yes\n"));
        assert!(confirm_answer(b"YES"));
        assert!(!confirm_answer(b"no\n"));
        assert!(!confirm_answer(b"yes please"));
        assert!(confirm_answer(b"\nno"));
    }

    #[test]
    fn quoting_keeps_names_on_one_line() {
        assert_eq!(quote(b"ssh-keygen", 32), "\"ssh-keygen\"");
        assert_eq!(quote(b"a\nb", 32), "\"a\\x0ab\"");
        assert_eq!(quote(b"x\" (pid 1)", 32), "\"x\\x22 (pid 1)\"");
        assert_eq!(
            quote(b"\\\x1b[2J\xc3\xa9", 32),
            "\"\\x5c\\x1b[2J\\xc3\\xa9\""
        );
        assert_eq!(quote(b"abcdef", 3), "\"abc\"...");
        assert_eq!(quote(b"", 3), "\"\"");
    }

    #[test]
    fn stat_lines() {
        let Stat::Running { name, ppid, exited } =
            parse_stat(b"4242 (ssh) S 4100 4242 4100 0 -1 4194560")
        else {
            panic!()
        };
        assert_eq!((name.as_str(), ppid, exited), ("\"ssh\"", 4100, false));
        // A name with parentheses, spaces and a newline in it.
        let Stat::Running { name, ppid, .. } = parse_stat(b"7 (a) Z 1 (\nb) R 99 7") else {
            panic!()
        };
        assert_eq!((name.as_str(), ppid), ("\"a) Z 1 (\\x0ab\"", 99));
        let Stat::Running { exited, .. } = parse_stat(b"7 (x) Z 1 7") else {
            panic!()
        };
        assert!(exited);
        for bad in [
            &b""[..],
            b"7 x) S 1",
            b"7 (x S 1",
            b"7 (x)",
            b"7 (x) S",
            b"7 (x) S -1",
        ] {
            assert!(matches!(parse_stat(bad), Stat::Unknown), "{bad:?}");
        }
    }

    #[test]
    fn this_process_and_its_parent() {
        let me = std::process::id();
        let text = describe_process(Some(me));
        assert!(text.contains(&format!(" (pid {me}), from ")), "{text}");
        assert_eq!(describe_process(None), "an unknown process (no pid)");
        assert_eq!(Peer::new(0).describe(), "an unknown process (no pid)");
        assert_eq!(Peer::new(-5).describe(), "an unknown process (no pid)");
        // A pid above the kernel's limit (4194304) never exists.
        assert_eq!(
            describe_process(Some(99_999_999)),
            "a process that has exited (pid 99999999)"
        );
    }

    fn hop(key: &[u8], fp: &str, forwarded: bool) -> BoundHost {
        BoundHost {
            key: key.to_vec(),
            certificate: false,
            fingerprint: fp.into(),
            forwarded,
        }
    }

    fn temp_file(name: &str, text: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("sshkeep-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn known_hosts_names_plain_entries_only() {
        let b64 = |b: &[u8]| {
            use ssh_key::encoding::base64::{Base64, Encoding};
            Base64::encode_string(b)
        };
        let (a, b, c, d) = (&b"key-a"[..], &b"key-b"[..], &b"key-c"[..], &b"key-d"[..]);
        let text = format!(
            "# comment\n\n  hosta,10.0.0.1 ssh-ed25519 {} comment\n\
             |1|abc=|def= ssh-ed25519 {}\n@cert-authority *.x ssh-ed25519 {}\n\
             @revoked hostz ssh-ed25519 {}\nbroken line\nhostq ssh-ed25519 !!!\n\
             host\nb\x1b ssh-ed25519 {}\nhostd ssh-ed25519 {}\n",
            b64(a),
            b64(b),
            b64(c),
            b64(d),
            b64(b"x"),
            b64(d),
        );
        let path = temp_file("known_hosts", text.as_bytes());
        let k = KnownHosts::at(path.clone());
        assert_eq!(
            k.names(&[a, b, c, d, b"nope"]),
            vec![
                Some("\"hosta,10.0.0.1\"".into()),
                None,
                None,
                Some("\"hostd\"".into()),
                None
            ]
        );
        std::fs::remove_file(&path).unwrap();
        // Missing, a directory, binary junk: no names, no panic.
        assert_eq!(k.names(&[a]), vec![None]);
        assert_eq!(KnownHosts::at(std::env::temp_dir()).names(&[a]), vec![None]);
        let junk: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let path = temp_file("junk", &junk);
        assert_eq!(KnownHosts::at(path.clone()).names(&[a]), vec![None]);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(KnownHosts::default().names(&[a]), vec![None]);
    }

    #[test]
    fn a_fifo_in_place_of_known_hosts_does_not_block() {
        let path = std::env::temp_dir().join(format!("sshkeep-{}-fifo", std::process::id()));
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(KnownHosts::at(path.clone()).names(&[b"k"]), vec![None]);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn prompt_and_use_lines() {
        let known = KnownHosts::default();
        let local = SignFacts {
            fingerprint: "SHA256:k".into(),
            comment: Some(b"me@x".to_vec()),
            hops: Vec::new(),
        };
        let base = "Allow use of key me@x?\nKey fingerprint SHA256:k.";
        assert_eq!(
            prompt(base, &local, "\"ssh-keygen\" (pid 5)", &known),
            format!("{base}\nRequested by \"ssh-keygen\" (pid 5)")
        );
        let bound = SignFacts {
            hops: vec![hop(b"a", "SHA256:a", false)],
            ..local.clone()
        };
        assert_eq!(
            prompt(base, &bound, "\"ssh\" (pid 5)", &known),
            format!(
                "{base}\nRequested by \"ssh\" (pid 5)\n\
                 Destination host key SHA256:a (no name in known_hosts)"
            )
        );
        let forwarded = SignFacts {
            hops: vec![hop(b"a", "SHA256:a", true), hop(b"b", "SHA256:b", false)],
            ..local.clone()
        };
        assert_eq!(
            prompt(base, &forwarded, "\"ssh\" (pid 5)", &known),
            format!(
                "{base}\nForwarded by \"ssh\" (pid 5)\n\
                 Forwarded to host key SHA256:a (no name in known_hosts)\n\
                 Destination host key SHA256:b (no name in known_hosts)"
            )
        );
        let on_hop = SignFacts {
            hops: vec![hop(b"a", "SHA256:a", true)],
            ..local.clone()
        };
        assert!(
            prompt(base, &on_hop, "p", &known)
                .ends_with("\nDestination unknown: requested on the last host above")
        );

        let line = |facts: &SignFacts, outcome| {
            let u = SignUse {
                facts: facts.clone(),
                outcome,
            };
            UseLine::new(&u, "\"ssh\" (pid 5)", &known).to_string()
        };
        assert_eq!(
            line(&local, Ok(())),
            "use of key SHA256:k \"me@x\"; requested by \"ssh\" (pid 5); not bound; local; allowed"
        );
        assert_eq!(
            line(&bound, Err(Refusal::NotConfirmed)),
            "use of key SHA256:k \"me@x\"; requested by \"ssh\" (pid 5); destination host key \
             SHA256:a (no name in known_hosts); local; refused: confirmation refused"
        );
        assert_eq!(
            line(&forwarded, Err(Refusal::NotPermitted(Refused("why")))),
            "use of key SHA256:k \"me@x\"; forwarded by \"ssh\" (pid 5); destination host key \
             SHA256:b (no name in known_hosts); forwarded through host key SHA256:a \
             (no name in known_hosts); refused: destination not permitted (why)"
        );
        let unknown = SignFacts {
            comment: None,
            hops: vec![hop(b"a", "SHA256:a", true)],
            ..local.clone()
        };
        assert_eq!(
            line(&unknown, Err(Refusal::UnknownKey)),
            "use of key SHA256:k (not held); forwarded by \"ssh\" (pid 5); destination unknown; \
             forwarded through host key SHA256:a (no name in known_hosts); refused: unknown key"
        );
        assert!(line(&local, Err(Refusal::Locked)).ends_with("; refused: locked"));
        assert!(
            line(&local, Err(Refusal::SignFailed(Refused("x")))).ends_with("signing failed (x)")
        );
        // A comment cannot break the line either.
        let odd = SignFacts {
            comment: Some(b"a\nb".to_vec()),
            ..local
        };
        assert!(!line(&odd, Ok(())).contains('\n'));
    }
}
