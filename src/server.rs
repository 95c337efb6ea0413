//! The poll loop: the listener, connections with input and output buffers, the signal
//! self-pipe, timers (key expiry, delayed unlock failures, the parent watch) and askpass
//! children. It knows the agent only through `Agent::handle`, `Agent::confirmed`,
//! `Agent::reap` and `Agent::remove_all`.
//!
//! One thread, no blocking call anywhere but `poll`: a confirmation prompt or a failed
//! unlock delays only the client that asked (OpenSSH stalls every client).

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use zeroize::Zeroize;

use crate::agent::{Agent, PendingSign, Reply, Session};
use crate::askpass::{self, KnownHosts, Peer};
use crate::protocol::{self, Frame, Request, Response};
use crate::sys::{self, Instant};

/// Bytes read from a socket at a time (OpenSSH: AGENT_RBUF_LEN).
const READ_CHUNK: usize = 4096;
/// Stop reading from a client whose unread replies reach this (OpenSSH: 256 KiB check).
const OUTPUT_HIGH_WATER: usize = 256 * 1024;
/// An input buffer never holds more than one whole frame plus a read.
const INPUT_LIMIT: usize = 4 + protocol::MAX_MESSAGE_LEN + READ_CHUNK;
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(250);
/// How often to look for a parent when no pidfd is available (OpenSSH: 10 s, command mode only).
const PARENT_CHECK: Duration = Duration::from_secs(1);
/// A confirmation prompt that takes longer than this is refused and its askpass killed.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);
/// Most output an askpass may print; its first line is all that matters.
const ASKPASS_OUTPUT_LIMIT: usize = 1024;

/// Which process's death ends the agent.
pub enum Watch {
    /// A pidfd: readable when the process exits.
    Pidfd(OwnedFd),
    /// No pidfd support: the agent's parent is checked every second (command mode).
    Parent(libc::pid_t),
    /// No pidfd support: the process is probed every second (`--exit-with`).
    Pid(libc::pid_t),
}

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

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM, SIGHUP or (in the foreground) SIGINT.
    Signal(i32),
    /// The watched process is gone.
    ParentGone,
}

/// A buffer for bytes that may be secret (ADD requests carry private keys). Freed and
/// moved blocks are wiped by the allocator (`sys::WipingAlloc`); what `consume` leaves
/// behind inside the allocation is wiped here.
#[derive(Default)]
struct SecretBuf(Vec<u8>);

impl SecretBuf {
    fn append(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
    }

    /// Remove the first `n` bytes and wipe what they leave behind.
    fn consume(&mut self, n: usize) {
        let n = n.min(self.0.len());
        let rest = self.0.len() - n;
        self.0.copy_within(n.., 0);
        if let Some(tail) = self.0.get_mut(rest..) {
            tail.zeroize();
        }
        self.0.truncate(rest);
        if self.0.is_empty() && self.0.capacity() > 4 * READ_CHUNK {
            // Give back the memory of a large frame.
            self.0 = Vec::new();
        }
    }
}

enum ConnState {
    /// Reading and answering requests.
    Ready,
    /// A failed unlock: this reply goes out at `until`; nothing else is read meanwhile.
    Delayed { until: Instant, reply: Vec<u8> },
    /// Waiting for the user's answer through askpass.
    Confirming,
}

struct Conn {
    id: u64,
    stream: UnixStream,
    input: SecretBuf,
    output: Vec<u8>,
    session: Session,
    /// The peer process (`SO_PEERCRED`), for prompts and the use log.
    peer: Peer,
    state: ConnState,
    /// The client closed its end; answer what is buffered, then close.
    eof: bool,
    /// A slow request waits at the head of the input for its turn.
    backlog: bool,
}

/// A running askpass and the signature that waits for it.
struct Prompt {
    conn: Option<(usize, u64)>,
    child: Child,
    stdout: Option<ChildStdout>,
    output: Vec<u8>,
    deadline: Instant,
    pending: Option<PendingSign>,
    /// The child's exit status once reaped.
    status: Option<std::process::ExitStatus>,
}

/// What a pollfd entry stands for.
#[derive(Clone, Copy)]
enum Tag {
    Signals,
    Listener,
    Watch,
    Prompt(usize),
    Conn(usize),
}

pub struct Server<'a> {
    agent: &'a mut Agent,
    listener: UnixListener,
    signals: OwnedFd,
    watches: Vec<Watch>,
    askpass: Askpass,
    /// Names bound host keys in prompts and use log lines.
    known_hosts: KnownHosts,
    uid: u32,
    conns: Vec<Option<Conn>>,
    next_id: u64,
    prompts: Vec<Prompt>,
    accept_paused_until: Option<Instant>,
    next_parent_check: Instant,
    /// Where the search for the next backlogged connection starts (round robin).
    next_slow: usize,
}

fn timeout_ms(now: Instant, deadline: Option<Instant>) -> libc::c_int {
    match deadline {
        None => -1,
        Some(d) => {
            let wait = d.saturating_duration_since(now);
            // Round up: waking a little early would only spin.
            let ms = wait.as_micros().div_ceil(1000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

impl<'a> Server<'a> {
    pub fn new(
        agent: &'a mut Agent,
        listener: UnixListener,
        signals: OwnedFd,
        watches: Vec<Watch>,
        askpass: Askpass,
    ) -> io::Result<Server<'a>> {
        listener.set_nonblocking(true)?;
        Ok(Server {
            agent,
            listener,
            signals,
            watches,
            askpass,
            known_hosts: KnownHosts::from_env(),
            uid: nix::unistd::getuid().as_raw(),
            conns: Vec::new(),
            next_id: 0,
            prompts: Vec::new(),
            accept_paused_until: None,
            next_parent_check: Instant::now() + PARENT_CHECK,
            next_slow: 0,
        })
    }

    /// Serve until a signal or the watched process ends it.
    pub fn run(&mut self) -> io::Result<Exit> {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut tags: Vec<Tag> = Vec::new();
        loop {
            let now = Instant::now();
            // Expired keys go before anything is served.
            let mut deadline = self.agent.reap(now);
            if let Some(exit) = self.check_watch_by_probe(now) {
                return Ok(exit);
            }
            fds.clear();
            tags.clear();
            fds.push(pollfd(self.signals.as_raw_fd(), libc::POLLIN));
            tags.push(Tag::Signals);
            match self.accept_paused_until {
                Some(t) if t > now => deadline = earliest(deadline, Some(t)),
                _ => {
                    self.accept_paused_until = None;
                    fds.push(pollfd(self.listener.as_raw_fd(), libc::POLLIN));
                    tags.push(Tag::Listener);
                }
            }
            for w in &self.watches {
                match w {
                    Watch::Pidfd(fd) => {
                        fds.push(pollfd(fd.as_raw_fd(), libc::POLLIN));
                        tags.push(Tag::Watch);
                    }
                    Watch::Parent(_) | Watch::Pid(_) => {
                        deadline = earliest(deadline, Some(self.next_parent_check));
                    }
                }
            }
            for (i, p) in self.prompts.iter().enumerate() {
                deadline = earliest(deadline, Some(p.deadline));
                if let Some(out) = &p.stdout {
                    fds.push(pollfd(out.as_raw_fd(), libc::POLLIN));
                    tags.push(Tag::Prompt(i));
                } else if p.status.is_none() {
                    // Output closed but not yet exited: SIGCHLD wakes us; look again soon anyway.
                    deadline = earliest(deadline, Some(now + Duration::from_millis(50)));
                }
            }
            for (i, c) in self.conns.iter().enumerate() {
                let Some(c) = c else { continue };
                if c.backlog {
                    // Slow work is waiting: look at the sockets, but do not sleep.
                    deadline = Some(now);
                }
                let mut events: libc::c_short = 0;
                match &c.state {
                    ConnState::Ready => {
                        if !c.eof && c.output.len() < OUTPUT_HIGH_WATER {
                            events |= libc::POLLIN;
                        }
                    }
                    ConnState::Delayed { until, .. } => deadline = earliest(deadline, Some(*until)),
                    ConnState::Confirming => {}
                }
                if !c.output.is_empty() {
                    events |= libc::POLLOUT;
                }
                fds.push(pollfd(c.stream.as_raw_fd(), events));
                tags.push(Tag::Conn(i));
            }

            sys::poll(&mut fds, timeout_ms(now, deadline))?;

            let now = Instant::now();
            self.agent.reap(now);
            for (pfd, tag) in fds.iter().zip(tags.iter()) {
                if pfd.revents == 0 {
                    continue;
                }
                match *tag {
                    Tag::Signals => {
                        if let Some(exit) = self.handle_signals() {
                            return Ok(exit);
                        }
                    }
                    Tag::Listener => self.accept(now),
                    Tag::Watch => {
                        info!("watched process exited, exiting");
                        return Ok(Exit::ParentGone);
                    }
                    Tag::Prompt(i) => self.read_prompt(i),
                    Tag::Conn(i) => self.service(i, pfd.revents, now),
                }
            }
            self.finish_prompts(now);
            self.fire_timers(now);
            self.run_one_slow(now);
        }
    }

    /// Run the slow request (an RSA signature, a lock) of one backlogged connection, taking
    /// turns. Quick requests never wait behind more than one slow one: each pass answers
    /// every quick request first, then at most one slow request.
    fn run_one_slow(&mut self, now: Instant) {
        let n = self.conns.len();
        for k in 0..n {
            let i = (self.next_slow + k) % n;
            if self
                .conns
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.backlog)
            {
                self.next_slow = i + 1;
                self.process(i, now, true);
                return;
            }
        }
    }

    fn handle_signals(&mut self) -> Option<Exit> {
        // Drain the self-pipe; the flags say what happened.
        let mut buf = [0u8; 64];
        while let Ok(n) = nix::unistd::read(&self.signals, &mut buf) {
            if n == 0 {
                break;
            }
        }
        if sys::SIG_TERM.swap(false, Ordering::SeqCst) {
            let sig = sys::SIG_TERM_NUMBER.load(Ordering::SeqCst);
            info!("received signal {sig}, exiting");
            return Some(Exit::Signal(sig));
        }
        if sys::SIG_USR1.swap(false, Ordering::SeqCst) {
            info!("received SIGUSR1, removing all keys");
            self.agent.remove_all();
        }
        if sys::SIG_CHLD.swap(false, Ordering::SeqCst) {
            for p in &mut self.prompts {
                if p.status.is_none() {
                    p.status = p.child.try_wait().ok().flatten();
                }
            }
        }
        None
    }

    /// Without a pidfd, look at the watched process once a second.
    fn check_watch_by_probe(&mut self, now: Instant) -> Option<Exit> {
        if now < self.next_parent_check {
            return None;
        }
        self.next_parent_check = now + PARENT_CHECK;
        let gone = self.watches.iter().any(|w| match *w {
            Watch::Parent(pid) => nix::unistd::getppid().as_raw() != pid,
            Watch::Pid(pid) => matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                Err(nix::errno::Errno::ESRCH)
            ),
            Watch::Pidfd(_) => false,
        });
        if gone {
            info!("watched process exited, exiting");
            return Some(Exit::ParentGone);
        }
        None
    }

    fn accept(&mut self, now: Instant) {
        // Take what is waiting, a bounded number per pass so clients cannot starve the rest.
        for _ in 0..64 {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
                        // Out of fds: the connection stays in the kernel's backlog. Pause
                        // instead of spinning on a listener that stays readable.
                        debug!("accept: {e}; pausing");
                        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    } else {
                        error!("accept: {e}");
                    }
                    return;
                }
            }
        }
    }

    fn admit(&mut self, stream: UnixStream) {
        // OpenSSH: only the agent's own uid, and root, may talk to it.
        let cred =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials);
        // The pid is kept for prompts and the use log; /proc is read only when they need it.
        let pid = match cred {
            Ok(c) if c.uid() == self.uid || c.uid() == 0 => c.pid(),
            Ok(c) => {
                error!("uid mismatch: peer euid {} != uid {}", c.uid(), self.uid);
                return;
            }
            Err(e) => {
                error!("getpeereid failed: {e}");
                return;
            }
        };
        if let Err(e) = stream.set_nonblocking(true) {
            error!("set_nonblocking: {e}");
            return;
        }
        self.next_id += 1;
        let conn = Conn {
            id: self.next_id,
            stream,
            input: SecretBuf::default(),
            output: Vec::new(),
            session: Session::default(),
            peer: Peer::new(pid),
            state: ConnState::Ready,
            eof: false,
            backlog: false,
        };
        match self.conns.iter().position(Option::is_none) {
            Some(i) => {
                if let Some(slot) = self.conns.get_mut(i) {
                    *slot = Some(conn);
                }
            }
            None => self.conns.push(Some(conn)),
        }
    }

    /// Close a connection; an askpass still asking on its behalf is killed (and reaped
    /// later), since its answer has nowhere to go.
    fn close(&mut self, i: usize) {
        for p in &mut self.prompts {
            if p.conn.is_some_and(|(slot, _)| slot == i) {
                p.conn = None;
                let _ = p.child.kill();
            }
        }
        if let Some(slot) = self.conns.get_mut(i) {
            *slot = None;
        }
    }

    /// One connection's poll events: read, answer, write.
    fn service(&mut self, i: usize, revents: libc::c_short, now: Instant) {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if revents & libc::POLLIN != 0 || revents & libc::POLLHUP != 0 {
            if matches!(conn.state, ConnState::Ready) && !conn.eof {
                if let Err(e) = read_into(conn) {
                    debug!("read: {e}");
                    self.close(i);
                    return;
                }
            } else if revents & libc::POLLHUP != 0 && revents & libc::POLLIN == 0 {
                // Hung up while we wait to answer: the answer has nowhere to go.
                if conn.output.is_empty() && !matches!(conn.state, ConnState::Ready) {
                    self.close(i);
                    return;
                }
            }
        }
        if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            self.close(i);
            return;
        }
        self.process(i, now, false);
    }

    /// Answer the whole frames in a connection's input, then try to write. A slow request
    /// (`protocol::is_slow`) runs only when `slow_ok`, and then only one; otherwise it waits
    /// at the head of the input for `run_one_slow`.
    fn process(&mut self, i: usize, now: Instant, mut slow_ok: bool) {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        conn.backlog = false;
        let mut touched_secrets = false;
        while matches!(conn.state, ConnState::Ready) && conn.output.len() < OUTPUT_HIGH_WATER {
            let len = match protocol::frame(&conn.input.0) {
                Frame::Incomplete => break,
                Frame::Invalid => {
                    debug!("bad frame length, closing connection");
                    self.close(i);
                    return;
                }
                Frame::Complete(len) => len,
            };
            let end = 4usize.saturating_add(len);
            if protocol::is_slow(conn.input.0.get(4..end).unwrap_or_default()) {
                if !slow_ok {
                    conn.backlog = true;
                    break;
                }
                slow_ok = false;
            }
            touched_secrets |=
                protocol::touches_secrets(conn.input.0.get(4..end).unwrap_or_default());
            let req = conn.input.0.get(4..end).map(Request::decode);
            conn.input.consume(end);
            let reply = match req {
                Some(Ok(req)) => {
                    debug!("request {req:?}");
                    self.agent.handle(&mut conn.session, req, now)
                }
                Some(Err(e)) => {
                    debug!("cannot decode request: {e}");
                    Reply::Now(Response::Failure)
                }
                None => Reply::Now(Response::Failure),
            };
            // The prompt says who asks and for where, read when the request is made.
            let reply = match reply {
                Reply::Confirm(mut pending) => {
                    let requester = conn.peer.describe();
                    let facts = &pending.facts;
                    pending.prompt =
                        askpass::prompt(&pending.prompt, facts, requester, &self.known_hosts);
                    Reply::Confirm(pending)
                }
                other => other,
            };
            match reply {
                Reply::Now(r) => r.encode(&mut conn.output),
                Reply::Delayed(wait, r) => {
                    let mut reply = Vec::new();
                    r.encode(&mut reply);
                    conn.state = ConnState::Delayed {
                        until: now + wait,
                        reply,
                    };
                }
                Reply::Confirm(pending) => match spawn_askpass(&self.askpass, &pending.prompt) {
                    Some((child, stdout)) => {
                        conn.state = ConnState::Confirming;
                        self.prompts.push(Prompt {
                            conn: Some((i, conn.id)),
                            child,
                            stdout: Some(stdout),
                            output: Vec::new(),
                            deadline: now + CONFIRM_TIMEOUT,
                            pending: Some(pending),
                            status: None,
                        });
                    }
                    None => self
                        .agent
                        .confirmed(pending, false, now)
                        .encode(&mut conn.output),
                },
            }
            if let Some(sign) = self.agent.take_use() {
                info!(
                    "{}",
                    askpass::UseLine::new(&sign, conn.peer.describe(), &self.known_hosts)
                );
            }
        }
        if touched_secrets {
            wipe_stack();
        }
        if let Err(e) = write_out(conn) {
            debug!("write: {e}");
            self.close(i);
            return;
        }
        let incomplete = !conn.input.0.is_empty();
        if conn.eof
            && !conn.backlog
            && matches!(conn.state, ConnState::Ready)
            && conn.output.is_empty()
        {
            if incomplete {
                debug!("client closed with a partial frame");
            }
            self.close(i);
        }
    }

    fn read_prompt(&mut self, i: usize) {
        let Some(p) = self.prompts.get_mut(i) else {
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

    /// Settle every prompt whose askpass has exited or timed out.
    fn finish_prompts(&mut self, now: Instant) {
        let mut k = 0;
        while k < self.prompts.len() {
            let Some(p) = self.prompts.get_mut(k) else {
                break;
            };
            if p.status.is_none() && p.stdout.is_none() {
                p.status = p.child.try_wait().ok().flatten();
            }
            let timed_out = now >= p.deadline;
            if p.status.is_none() && !timed_out {
                k += 1;
                continue;
            }
            if timed_out && p.status.is_none() {
                debug!("confirmation timed out");
                let _ = p.child.kill();
                // Killed with SIGKILL: it exits at once; reaping here keeps no zombie.
                let _ = p.child.wait();
            }
            let p = self.prompts.swap_remove(k);
            // OpenSSH: allowed when askpass exits 0 and its first line is empty or "yes".
            let allowed =
                !timed_out && p.status.is_some_and(|s| s.success()) && confirm_answer(&p.output);
            let (Some((slot, id)), Some(pending)) = (p.conn, p.pending) else {
                continue;
            };
            let reply = self.agent.confirmed(pending, allowed, now);
            let sign = self.agent.take_use();
            if let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut)
                && conn.id == id
            {
                if let Some(sign) = sign {
                    let requester = conn.peer.describe();
                    info!(
                        "{}",
                        askpass::UseLine::new(&sign, requester, &self.known_hosts)
                    );
                }
                reply.encode(&mut conn.output);
                conn.state = ConnState::Ready;
                self.process(slot, now, false);
            }
        }
    }

    /// Send delayed replies whose time has come.
    fn fire_timers(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let due = matches!(&conn.state, ConnState::Delayed { until, .. } if *until <= now);
            if due {
                if let ConnState::Delayed { reply, .. } =
                    std::mem::replace(&mut conn.state, ConnState::Ready)
                {
                    conn.output.extend_from_slice(&reply);
                }
                self.process(i, now, false);
            }
        }
    }
}

fn confirm_answer(output: &[u8]) -> bool {
    let first = output
        .split(|&b| b == b'\n' || b == b'\r')
        .next()
        .unwrap_or_default();
    first.is_empty() || first.eq_ignore_ascii_case(b"yes")
}

/// How much of the stack below the loop `wipe_stack` clears.
const STACK_WIPE: usize = 64 * 1024;

/// Overwrite the stack below the caller with zeros. Decoding and signing leave copies of
/// key material in stack frames that have returned (temporaries inside the crypto crates,
/// which no `Zeroize` reaches); the next deep call would overwrite them only by chance.
#[inline(never)]
fn wipe_stack() {
    let zeros = [0u8; STACK_WIPE];
    // The zeros must really be written: black_box makes the array observable.
    std::hint::black_box(&zeros);
}

/// Read what the socket has (bounded), wiping the stack buffer after.
fn read_into(conn: &mut Conn) -> io::Result<()> {
    let mut buf = [0u8; READ_CHUNK];
    let result = loop {
        if conn.input.0.len() >= INPUT_LIMIT {
            break Ok(());
        }
        match conn.stream.read(&mut buf) {
            Ok(0) => {
                conn.eof = true;
                break Ok(());
            }
            Ok(n) => {
                conn.input.append(buf.get(..n).unwrap_or_default());
                if n < buf.len() {
                    break Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        }
    };
    buf.zeroize();
    result
}

fn write_out(conn: &mut Conn) -> io::Result<()> {
    while !conn.output.is_empty() {
        match conn.stream.write(&conn.output) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.output.drain(..n.min(conn.output.len()));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if conn.output.is_empty() && conn.output.capacity() > OUTPUT_HIGH_WATER {
        conn.output = Vec::new();
    }
    Ok(())
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

    #[test]
    fn secret_buf_consumes_in_order() {
        let mut b = SecretBuf::default();
        b.append(b"hello world");
        b.consume(6);
        assert_eq!(b.0, b"world");
        b.append(&[7u8; 10_000]);
        assert_eq!(b.0.len(), 10_005);
        b.consume(100_000);
        assert!(b.0.is_empty());
    }

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
    fn timeouts_round_up() {
        let now = Instant::now();
        assert_eq!(timeout_ms(now, None), -1);
        assert_eq!(timeout_ms(now, Some(now)), 0);
        assert_eq!(timeout_ms(now, Some(now + Duration::from_micros(1))), 1);
        assert_eq!(
            timeout_ms(now, Some(now + Duration::from_millis(1500))),
            1500
        );
    }
}
