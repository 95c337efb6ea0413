//! The poll loop: the listener, connections with input and output buffers, the signal
//! self-pipe, timers (key expiry, delayed unlock failures, the parent watch) and the queue of
//! unlocks held during the back-off; it polls the askpass prompts (`askpass::Prompts`). Each
//! request goes through `protocol::serve` (frame, decode, answer, encode). It knows the agent
//! only through `Agent::handle`, `Agent::confirmed`, `Agent::reap`, `Agent::unlock_backoff`,
//! `Agent::take_use` and `Agent::remove_all`.
//!
//! One thread, no blocking call anywhere but `poll`: a confirmation prompt or the unlock
//! back-off delays only the clients that asked (OpenSSH stalls every client). Every request
//! a client writes is answered, in order, however many it writes before reading.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use zeroize::{Zeroize, Zeroizing};

use crate::agent::{Agent, Reply, Session};
use crate::askpass::{self, Askpass, KnownHosts, Peer, Prompts};
use crate::protocol::{self, Frame, Handled, Request, Response, Served};
use crate::secret::{SLOW_STACK_WIPE, STACK_WIPE, SecretBuf, wipe_stack};
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

/// Which process's death ends the agent.
pub enum Watch {
    /// A pidfd: readable when the process exits.
    Pidfd(OwnedFd),
    /// No pidfd support: the agent's parent is checked every second (command mode).
    Parent(libc::pid_t),
    /// No pidfd support: the process is probed every second (`--exit-with`).
    Pid(libc::pid_t),
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM, SIGHUP or (in the foreground) SIGINT.
    Signal(i32),
    /// The watched process is gone.
    ParentGone,
}

enum ConnState {
    /// Reading and answering requests.
    Ready,
    /// A failed unlock: this reply goes out at `until`; nothing else is read meanwhile.
    Delayed { until: Instant, reply: Vec<u8> },
    /// Its UNLOCK waits, unchecked, in `Server::unlocks` for the back-off to end.
    Unlocking,
    /// Its signature waits for the user's answer: on screen or in line for it
    /// (`Server::prompts`).
    Confirming,
}

impl ConnState {
    /// Answer `reply` at `until`, and read nothing from the client meanwhile.
    fn delayed(until: Instant, reply: &Response<'_>) -> ConnState {
        let mut bytes = Vec::new();
        reply.encode(&mut bytes);
        ConnState::Delayed {
            until,
            reply: bytes,
        }
    }
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
    /// A slow request (`Request::is_slow`), decoded, waits for its turn (`run_one_slow`);
    /// the requests behind it wait in the input.
    slow: Option<Request>,
}

impl Conn {
    /// Requests it already holds can be answered now: nothing waits on it, its output has
    /// room and a whole frame (or a bad length, which closes it) is at the head of its
    /// input. No new byte may arrive to wake the loop for these, so the loop looks itself.
    fn has_work(&self) -> bool {
        matches!(self.state, ConnState::Ready)
            && self.slow.is_none()
            && self.output.len() < OUTPUT_HIGH_WATER
            && protocol::frame(self.input.as_slice()) != Frame::Incomplete
    }
}

/// A connection, by slot and by id (a slot is reused once its connection closes).
type ConnRef = (usize, u64);

/// An UNLOCK held during the back-off. The passphrase wipes itself when dropped: when it
/// is checked, or when its connection closes and it leaves the queue.
struct HeldUnlock {
    conn: ConnRef,
    passphrase: Zeroizing<Vec<u8>>,
}

/// What a pollfd entry stands for.
#[derive(Clone, Copy)]
enum Tag {
    Signals,
    Listener,
    Watch,
    Prompt,
    Conn(usize),
}

pub struct Server<'a> {
    agent: &'a mut Agent,
    listener: UnixListener,
    signals: OwnedFd,
    watches: Vec<Watch>,
    /// Names bound host keys in prompts and use log lines.
    known_hosts: KnownHosts,
    uid: u32,
    conns: Vec<Option<Conn>>,
    next_id: u64,
    /// The confirmation prompts: one on screen, the others in line.
    prompts: Prompts<ConnRef>,
    /// UNLOCKs held during the back-off, checked one at a time in arrival order.
    unlocks: VecDeque<HeldUnlock>,
    accept_paused_until: Option<Instant>,
    next_parent_check: Instant,
    /// Where the search for the next connection with a slow request starts (round robin).
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
            known_hosts: KnownHosts::from_env(),
            uid: nix::unistd::getuid().as_raw(),
            conns: Vec::new(),
            next_id: 0,
            prompts: Prompts::new(askpass),
            unlocks: VecDeque::new(),
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
            let (prompt, wake) = self.prompts.poll(now);
            deadline = earliest(deadline, wake);
            if let Some(fd) = prompt {
                fds.push(pollfd(fd, libc::POLLIN));
                tags.push(Tag::Prompt);
            }
            if !self.unlocks.is_empty() {
                let turn = self.agent.unlock_backoff().unwrap_or(now);
                deadline = earliest(deadline, Some(turn));
            }
            for (i, c) in self.conns.iter().enumerate() {
                let Some(c) = c else { continue };
                if c.slow.is_some() || c.has_work() {
                    // Work is waiting: look at the sockets, but do not sleep.
                    deadline = Some(now);
                }
                let mut events: libc::c_short = 0;
                match &c.state {
                    ConnState::Ready => {
                        if !c.eof
                            && c.output.len() < OUTPUT_HIGH_WATER
                            && c.input.len() < INPUT_LIMIT
                        {
                            events |= libc::POLLIN;
                        }
                    }
                    ConnState::Delayed { until, .. } => deadline = earliest(deadline, Some(*until)),
                    ConnState::Unlocking | ConnState::Confirming => {}
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
                    Tag::Prompt => self.prompts.read(),
                    Tag::Conn(i) => self.service(i, pfd.revents, now),
                }
            }
            self.finish_prompts(now);
            self.check_held_unlocks(now);
            self.fire_timers(now);
            self.resume(now);
            self.run_one_slow(now);
        }
    }

    /// Answer the requests connections already hold whose output has drained since: no
    /// poll event announces those.
    fn resume(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let work = self
                .conns
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(Conn::has_work);
            if work {
                self.process(i, now);
            }
        }
    }

    /// Answer the slow request (an RSA signature, a lock) of one connection that has one,
    /// taking turns, then the quick ones behind it. Quick requests never wait behind more
    /// than one slow one: each pass answers every quick request first, then at most one slow
    /// request.
    fn run_one_slow(&mut self, now: Instant) {
        let n = self.conns.len();
        for k in 0..n {
            let i = (self.next_slow + k) % n;
            let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let Some(request) = conn.slow.take() else {
                continue;
            };
            self.next_slow = i + 1;
            let (agent, hold) = (&mut *self.agent, !self.unlocks.is_empty());
            let session = &mut conn.session;
            let answer = protocol::answer(request, &mut conn.output, |request| {
                handle(agent, session, request, hold, now)
            });
            if answer.secret {
                wipe_stack::<SLOW_STACK_WIPE>();
            }
            self.after(i, answer.later, now);
            self.process(i, now);
            return;
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
            self.prompts.child_exited();
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
            slow: None,
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
    /// later), since its answer has nowhere to go. A confirmation or an unlock it had in
    /// line leaves the line: that prompt never shows, that passphrase is never checked
    /// (and is wiped as it drops).
    fn close(&mut self, i: usize) {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::take) else {
            return;
        };
        let me = (i, conn.id);
        self.prompts.forget(me);
        self.unlocks.retain(|h| h.conn != me);
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
        self.process(i, now);
    }

    /// Answer the whole frames in a connection's input, each through `protocol::serve`, then
    /// try to write. A slow request stops it: decoded, it waits in `Conn::slow` for
    /// `run_one_slow`, and the frames behind it wait in the input.
    fn process(&mut self, i: usize, now: Instant) {
        loop {
            let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            if !matches!(conn.state, ConnState::Ready)
                || conn.slow.is_some()
                || conn.output.len() >= OUTPUT_HIGH_WATER
            {
                break;
            }
            let (agent, hold) = (&mut *self.agent, !self.unlocks.is_empty());
            let session = &mut conn.session;
            let served = protocol::serve(conn.input.as_slice(), &mut conn.output, |request| {
                handle(agent, session, request, hold, now)
            });
            let (len, secret, later) = match served {
                Served::Incomplete => break,
                Served::Invalid => {
                    debug!("bad frame length, closing connection");
                    self.close(i);
                    return;
                }
                Served::Slow {
                    len,
                    request,
                    secret,
                } => {
                    conn.slow = Some(request);
                    (len, secret, None)
                }
                Served::Done { len, answer } => (len, answer.secret, answer.later),
            };
            conn.input.consume(len);
            if secret {
                // Before the next request: what this one left on the stack must not be
                // copied into the next key's allocations (a move copies padding too).
                wipe_stack::<STACK_WIPE>();
            }
            self.after(i, later, now);
        }
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if let Err(e) = write_out(conn) {
            debug!("write: {e}");
            self.close(i);
            return;
        }
        // A client that closed its end (or only its writing half, as `nc -N` does) gets
        // every reply to what it sent before the connection is closed.
        if conn.eof
            && conn.slow.is_none()
            && matches!(conn.state, ConnState::Ready)
            && conn.output.is_empty()
            && !matches!(protocol::frame(conn.input.as_slice()), Frame::Complete(_))
        {
            if !conn.input.is_empty() {
                debug!("client closed with a partial frame");
            }
            self.close(i);
        }
    }

    /// What follows a request the agent answered: an answer that is not a response yet (a
    /// failed unlock answered after its delay, an unlock held for its turn, a signature for
    /// the user to confirm), then the use log line of a signature request.
    fn after(&mut self, i: usize, later: Option<Reply<'static>>, now: Instant) {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let me = (i, conn.id);
        match later {
            None => {}
            Some(Reply::Now(r)) => r.encode(&mut conn.output),
            Some(Reply::Delayed(wait, r)) => conn.state = ConnState::delayed(now + wait, &r),
            Some(Reply::Held(passphrase)) => {
                conn.state = ConnState::Unlocking;
                self.unlocks.push_back(HeldUnlock {
                    conn: me,
                    passphrase,
                });
            }
            Some(Reply::Confirm(mut pending)) => {
                // The prompt says who asks and for where, read when the request is made.
                let requester = conn.peer.describe();
                let facts = &pending.facts;
                pending.prompt =
                    askpass::prompt(&pending.prompt, facts, requester, &self.known_hosts);
                match self.prompts.ask(me, pending, now) {
                    Ok(()) => conn.state = ConnState::Confirming,
                    Err(pending) => self
                        .agent
                        .confirmed(*pending, false, now)
                        .encode(&mut conn.output),
                }
            }
        }
        self.log_use(me);
    }

    /// Finish the signatures whose prompts have been answered (or refused), in order.
    fn finish_prompts(&mut self, now: Instant) {
        let mut resume = Vec::new();
        for (me, pending, allowed) in self.prompts.settle(now) {
            let reply = self.agent.confirmed(pending, allowed, now);
            if allowed {
                // It signed (`PrivateKey::sign` runs below this frame).
                wipe_stack::<SLOW_STACK_WIPE>();
            }
            self.log_use(me);
            self.answer(me, &reply, &mut resume);
        }
        for slot in resume {
            self.process(slot, now);
        }
    }

    /// `--log-use`: the line for the signature request the agent just settled for `me`.
    fn log_use(&mut self, (slot, id): ConnRef) {
        let Some(sign) = self.agent.take_use() else {
            return;
        };
        if let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut)
            && conn.id == id
        {
            let requester = conn.peer.describe();
            info!(
                "{}",
                askpass::UseLine::new(&sign, requester, &self.known_hosts)
            );
        }
    }

    /// Queue the answer a waiting connection was waiting for and make it ready again; its
    /// slot goes on `resume`, to be processed by the caller.
    fn answer(&mut self, (slot, id): ConnRef, reply: &Response<'_>, resume: &mut Vec<usize>) {
        if let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut)
            && conn.id == id
        {
            reply.encode(&mut conn.output);
            conn.state = ConnState::Ready;
            resume.push(slot);
        }
    }

    /// Check the held UNLOCKs whose turn has come, one at a time in arrival order: each
    /// failure moves the agent's back-off on, and the rest wait for it.
    fn check_held_unlocks(&mut self, now: Instant) {
        let mut resume = Vec::new();
        let mut checked = false;
        while self.agent.unlock_backoff().is_none_or(|t| t <= now) {
            let Some(held) = self.unlocks.pop_front() else {
                break;
            };
            let (slot, id) = held.conn;
            let Some(conn) = self
                .conns
                .get_mut(slot)
                .and_then(Option::as_mut)
                .filter(|c| c.id == id)
            else {
                continue; // cannot happen: a closing connection leaves the queue
            };
            checked = true;
            let reply = self
                .agent
                .handle(&mut conn.session, Request::Unlock(held.passphrase), now);
            match reply {
                Reply::Now(r) => {
                    r.encode(&mut conn.output);
                    conn.state = ConnState::Ready;
                    resume.push(slot);
                }
                Reply::Delayed(wait, r) => conn.state = ConnState::delayed(now + wait, &r),
                Reply::Held(passphrase) => {
                    // Not its turn after all: back to the head of the line.
                    self.unlocks.push_front(HeldUnlock {
                        conn: (slot, id),
                        passphrase,
                    });
                    break;
                }
                Reply::Confirm(pending) => {
                    // An UNLOCK never asks the user; refuse rather than leave it waiting.
                    self.agent
                        .confirmed(pending, false, now)
                        .encode(&mut conn.output);
                    conn.state = ConnState::Ready;
                    resume.push(slot);
                }
            }
        }
        if checked {
            wipe_stack::<SLOW_STACK_WIPE>();
        }
        for slot in resume {
            self.process(slot, now);
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
                self.process(i, now);
            }
        }
    }
}

/// The agent's answer to a decoded request, as `protocol::serve` takes it: a response to
/// send now, or an answer for later. Behind UNLOCKs already held, another waits its turn,
/// unchecked.
fn handle<'s>(
    agent: &'s mut Agent,
    session: &mut Session,
    request: Request,
    hold_unlock: bool,
    now: Instant,
) -> Handled<'s, Reply<'static>> {
    match request {
        Request::Unlock(passphrase) if hold_unlock => {
            debug!("unlock held behind another");
            Handled::Later(Reply::Held(passphrase))
        }
        request => agent.handle(session, request, now).handled(),
    }
}

/// Read what the socket has (bounded), wiping the stack buffer after.
fn read_into(conn: &mut Conn) -> io::Result<()> {
    let mut buf = [0u8; READ_CHUNK];
    // How much of `buf` a read has written: only that is wiped after (a whole 4 KiB wipe per
    // read was 5% of the agent's time under one signing client).
    let mut used = 0;
    let result = loop {
        if conn.input.len() >= INPUT_LIMIT {
            break Ok(());
        }
        match conn.stream.read(&mut buf) {
            Ok(0) => {
                conn.eof = true;
                break Ok(());
            }
            Ok(n) => {
                used = used.max(n);
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
    if let Some(written) = buf.get_mut(..used) {
        written.zeroize();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
