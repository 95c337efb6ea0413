//! Every `unsafe` in this crate is here: one safe function per libc call that needs it,
//! each block under a `// SAFETY:` comment saying why it is sound. Calls that nix wraps
//! safely are made through nix elsewhere.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Turn a libc return value into `io::Result` (sudo-rs's `cerr`).
fn cerr(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

// ---------------------------------------------------------------------------------------
// Process set-up

/// Make sure fds 0, 1 and 2 are open (on /dev/null when closed), so that no socket or
/// key file the agent opens later can land on them (OpenSSH: sanitise_stdfd).
pub fn sanitise_stdfd() -> io::Result<()> {
    let null = CString::new("/dev/null").map_err(io::Error::other)?;
    for fd in 0..=2 {
        // SAFETY: F_GETFD only queries the descriptor table; any fd number is acceptable.
        let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
        if open {
            continue;
        }
        // SAFETY: `null` is a valid NUL-terminated path; open returns a new fd or -1.
        let nfd = cerr(unsafe { libc::open(null.as_ptr(), libc::O_RDWR) })?;
        if nfd != fd {
            // SAFETY: both are valid fd numbers; dup2 onto a closed fd cannot disturb an
            // open file of ours, and we close our temporary copy right after.
            cerr(unsafe { libc::dup2(nfd, fd) })?;
            // SAFETY: `nfd` was opened above and is owned by nobody else.
            unsafe { libc::close(nfd) };
        }
    }
    Ok(())
}

/// Point fds 0–2 at /dev/null (the daemon's stdio; OpenSSH: stdfd_devnull).
pub fn stdio_to_devnull() -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto 0–2 replaces our own stdio, which nothing else owns as an
        // `OwnedFd`; `null` stays open for the duration of the call.
        cerr(unsafe { libc::dup2(null.as_raw_fd(), fd) })?;
    }
    Ok(())
}

/// Close every inherited fd from `first` up (OpenSSH 10: closefrom).
pub fn close_fds_from(first: RawFd) {
    let Ok(first) = libc::c_uint::try_from(first) else {
        return;
    };
    // SAFETY: called at start-up, before this process has opened anything of its own
    // above `first` (the caller guarantees it), so no live `OwnedFd` is closed under us.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) };
    if ret == 0 {
        return;
    }
    // Old kernels: walk /proc/self/fd. Collect first: closing while iterating would
    // close the directory's own fd.
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        if fd >= first as RawFd {
            // SAFETY: as above; EBADF for the already closed directory fd is harmless.
            unsafe { libc::close(fd) };
        }
    }
}

/// Fork. Returns the child's pid in the parent, `None` in the child.
pub fn fork() -> io::Result<Option<libc::pid_t>> {
    // SAFETY: the agent has no threads when it forks (it is a single-threaded program
    // and forks before serving), so the child inherits no lock held by another thread.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// Open a pidfd for `pid` (Linux 5.3+): readable once the process exits, with no pid-reuse
/// race. `Ok(None)` when the kernel lacks it.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is passed.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) => Ok(None),
            _ => Err(e),
        };
    }
    let fd = RawFd::try_from(ret).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Take fd 3 as the listening socket systemd passed us (LISTEN_FDS=1).
pub fn inherited_listener() -> io::Result<UnixListener> {
    const SD_LISTEN_FDS_START: RawFd = 3;
    // SAFETY: F_GETFD only queries; it tells whether fd 3 is open at all.
    cerr(unsafe { libc::fcntl(SD_LISTEN_FDS_START, libc::F_GETFD) })?;
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `ty` and `len` are valid for writes of the sizes given.
    cerr(unsafe {
        libc::getsockopt(
            SD_LISTEN_FDS_START,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    if ty != libc::SOCK_STREAM {
        return Err(io::Error::other("fd 3 is not a stream socket"));
    }
    // The launcher had to pass it without FD_CLOEXEC; set it, so that no askpass child
    // inherits the agent's listening socket (and could accept its clients).
    // SAFETY: F_SETFD only changes fd 3's descriptor flags; fd 3 is open (checked above).
    cerr(unsafe { libc::fcntl(SD_LISTEN_FDS_START, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    // SAFETY: fd 3 is open, is a stream socket, was handed to us by our launcher for
    // exactly this purpose, and no other object in this process owns it.
    Ok(unsafe { UnixListener::from_raw_fd(SD_LISTEN_FDS_START) })
}

// ---------------------------------------------------------------------------------------
// Signals

/// Set by the handlers; the loop reads and clears them.
pub static SIG_TERM: AtomicBool = AtomicBool::new(false);
pub static SIG_USR1: AtomicBool = AtomicBool::new(false);
pub static SIG_CHLD: AtomicBool = AtomicBool::new(false);
/// The write end of the self-pipe, -1 until installed.
static SIG_PIPE_FD: AtomicI32 = AtomicI32::new(-1);
/// The number of the signal that asked us to exit.
pub static SIG_TERM_NUMBER: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    match sig {
        libc::SIGUSR1 => SIG_USR1.store(true, Ordering::SeqCst),
        libc::SIGCHLD => SIG_CHLD.store(true, Ordering::SeqCst),
        _ => {
            SIG_TERM_NUMBER.store(sig, Ordering::SeqCst);
            SIG_TERM.store(true, Ordering::SeqCst);
        }
    }
    let fd = SIG_PIPE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let saved = io::Error::last_os_error().raw_os_error();
        let byte = [0u8; 1];
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking, so a full
        // pipe only drops the wake-up byte (the flag above is already set).
        unsafe { libc::write(fd, byte.as_ptr().cast(), 1) };
        if let Some(e) = saved {
            // SAFETY: restoring errno for the interrupted code, as handlers should.
            unsafe { *libc::__errno_location() = e };
        }
    }
}

fn set_handler(sig: libc::c_int, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: `sa.sa_mask` is a valid sigset_t owned by us.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    // SAFETY: `sa` is fully initialised; the handler only touches atomics and write(2),
    // which are async-signal-safe.
    cerr(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) })?;
    Ok(())
}

/// Install the agent's signal handling and return the self-pipe's read end.
/// SIGPIPE is ignored; SIGTERM, SIGHUP (and SIGINT when `catch_int`) ask the loop to exit;
/// SIGINT is ignored otherwise; SIGUSR1 and SIGCHLD wake the loop.
pub fn install_signals(catch_int: bool) -> io::Result<OwnedFd> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
        .map_err(io::Error::from)?;
    // The write end lives for the rest of the process: the handler may run at any time.
    SIG_PIPE_FD.store(std::os::fd::IntoRawFd::into_raw_fd(wr), Ordering::SeqCst);
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    set_handler(libc::SIGPIPE, libc::SIG_IGN)?;
    set_handler(libc::SIGTERM, handler)?;
    set_handler(libc::SIGHUP, handler)?;
    set_handler(
        libc::SIGINT,
        if catch_int { handler } else { libc::SIG_IGN },
    )?;
    set_handler(libc::SIGUSR1, handler)?;
    set_handler(libc::SIGCHLD, handler)?;
    Ok(rd)
}

// ---------------------------------------------------------------------------------------
// The clock

/// A point in time on `CLOCK_BOOTTIME`: the time since boot, suspend included. Key lifetimes
/// and every other deadline that means wall time to the user run on it, so a key added with
/// `ssh-add -t 1h` before an overnight suspend is gone after resume (OpenSSH: monotime uses
/// CLOCK_BOOTTIME). `std::time::Instant` is CLOCK_MONOTONIC, which stops during suspend.
///
/// The agent never reads it itself: the server reads it once per loop pass and passes it
/// down, so tests inject any time they like (`Instant::from_boot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(std::time::Duration);

impl Instant {
    /// Now, on CLOCK_BOOTTIME.
    pub fn now() -> Instant {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, exclusively borrowed timespec; CLOCK_BOOTTIME exists on
        // every Linux since 2.6.39, and clock_gettime writes nothing else.
        let ret = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        if ret != 0 {
            // Cannot happen with a valid clock id and pointer; stay monotonic rather than panic.
            return Instant(std::time::Duration::ZERO);
        }
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
        Instant(std::time::Duration::new(secs, nanos.min(999_999_999)))
    }

    /// The instant `since_boot` after boot (tests inject time with it).
    pub const fn from_boot(since_boot: std::time::Duration) -> Instant {
        Instant(since_boot)
    }

    /// `self + d`, or `None` on overflow.
    pub fn checked_add(self, d: std::time::Duration) -> Option<Instant> {
        self.0.checked_add(d).map(Instant)
    }

    /// How long after `earlier` this is; zero when it is not later.
    pub fn saturating_duration_since(self, earlier: Instant) -> std::time::Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::AddAssign<std::time::Duration> for Instant {
    fn add_assign(&mut self, d: std::time::Duration) {
        *self = *self + d;
    }
}

impl std::ops::Add<std::time::Duration> for Instant {
    type Output = Instant;
    /// Saturating: a deadline too far away to represent is as good as never.
    fn add(self, d: std::time::Duration) -> Instant {
        Instant(self.0.saturating_add(d))
    }
}

/// The wall clock, seconds since the epoch: certificates are valid between two such times.
/// The agent is given it (`Agent::set_wall_clock`) and reads it where a certificate's
/// validity is checked; a clock before the epoch reads as 0.
pub fn wall_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------
// The loop

/// poll(2) over `fds`; `timeout_ms` -1 waits forever. EINTR counts as zero events.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<usize> {
    let n = libc::nfds_t::try_from(fds.len()).map_err(io::Error::other)?;
    // SAFETY: `fds` is a valid, exclusively borrowed slice of `n` pollfd structs.
    let ret = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) };
    if ret < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    usize::try_from(ret).map_err(io::Error::other)
}

// ---------------------------------------------------------------------------------------
// Memory holding secrets

/// Lock the whole process in memory, now and for every future allocation, so that no
/// key reaches swap. Only done when nothing can make it fail later: with CAP_IPC_LOCK in
/// the effective set (then RLIMIT_MEMLOCK does not apply) or an unlimited RLIMIT_MEMLOCK.
/// Under a finite limit without the capability, MCL_FUTURE would turn the limit into
/// allocation failures, and an allocation failure aborts the agent with every key. Being
/// root is not enough: a container or systemd unit may run root without CAP_IPC_LOCK.
/// Returns why it was not done.
pub fn lock_all_memory() -> Result<(), String> {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
    let (soft, _) = getrlimit(Resource::RLIMIT_MEMLOCK).map_err(|e| e.to_string())?;
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let capable = has_ipc_lock(&status);
    if !capable && soft != RLIM_INFINITY {
        return Err(format!(
            "no CAP_IPC_LOCK and RLIMIT_MEMLOCK is {soft} bytes, not unlimited"
        ));
    }
    // SAFETY: mlockall takes only flags and changes no memory contents. MCL_ONFAULT locks
    // pages as they are touched instead of faulting in every reserved mapping at once.
    let ret = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) };
    cerr(ret).map(|_| ()).map_err(|e| e.to_string())
}

/// Bit of CAP_IPC_LOCK in the capability sets (linux/capability.h).
const CAP_IPC_LOCK: u32 = 14;

/// Whether the `CapEff:` line of a /proc/PID/status text has CAP_IPC_LOCK. A missing or
/// malformed line counts as not having it (then the limit decides).
fn has_ipc_lock(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

// ---------------------------------------------------------------------------------------
// syslog

/// Open syslog as "sshkeep", facility AUTH, with the pid (OpenSSH's daemon logging).
pub fn openlog() {
    static IDENT: &[u8] = b"sshkeep\0";
    // SAFETY: IDENT is a static NUL-terminated string that outlives every syslog call.
    unsafe { libc::openlog(IDENT.as_ptr().cast(), libc::LOG_PID, libc::LOG_AUTH) };
}

/// Write `msg` to syslog at `priority` (`LOG_ERR`, `LOG_INFO`, ...). What `log` writes with
/// once the agent is a daemon: the daemon hands it over (`log::to_syslog(sys::syslog)`), so
/// neither module needs the other.
pub fn syslog(priority: libc::c_int, msg: &str) {
    let Ok(msg) = CString::new(msg.replace('\0', "?")) else {
        return;
    };
    // SAFETY: the format is a static "%s" and `msg` a valid C string, so syslog reads
    // exactly one string argument.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), msg.as_ptr()) };
}

// ---------------------------------------------------------------------------------------
// The host name

/// This machine's host name (gethostname), for the per-host socket name of `--reuse` (a home
/// directory may be shared by several machines). nix has it only behind a feature we leave off.
pub fn hostname() -> io::Result<Vec<u8>> {
    // HOST_NAME_MAX is 64 on Linux; a larger buffer leaves room for a NUL in every case.
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes, and gethostname writes at most
    // that many (it truncates a longer name).
    cerr(unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) })?;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(buf.get(..len).unwrap_or_default().to_vec())
}

// ---------------------------------------------------------------------------------------
// The allocator

/// The system allocator, except that every block is wiped before it is freed. Key material
/// lives in crates' own allocations (big-number limbs, precomputed tables, CRT parameters
/// behind `Arc`s) that do not all wipe themselves; wiping on free is the one place that
/// catches them all. `realloc` keeps the default (allocate, copy, free), so a moved block is
/// wiped too. Installed as the global allocator in `secret.rs`, with the rest of the
/// strategy.
pub struct WipingAlloc;

// SAFETY: every method forwards to `System` with the caller's own layout; `dealloc` only
// writes zeros to the block the caller owns and is about to give back, within its size.
unsafe impl std::alloc::GlobalAlloc for WipingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds GlobalAlloc::alloc's contract.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` points to a live block of `layout.size()` bytes that the caller
        // owns (GlobalAlloc::dealloc's contract). Passing the pointer through `black_box`
        // after the wipe makes the zeros observable, so the compiler cannot drop them as
        // dead stores before `free`.
        unsafe {
            std::ptr::write_bytes(ptr, 0, layout.size());
            std::hint::black_box(ptr);
            std::alloc::System.dealloc(ptr, layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// CLOCK_BOOTTIME counts suspend, so it is never behind CLOCK_MONOTONIC (which starts at
    /// boot too on Linux and stops while suspended). The assertion is a property of the two
    /// clocks, not a timing.
    #[test]
    fn boottime_is_not_behind_monotonic() {
        let mut mono = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let boot = Instant::now();
        // SAFETY: as in `Instant::now`.
        let ret = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut mono) };
        assert_eq!(ret, 0);
        let mono = Duration::new(mono.tv_sec as u64, mono.tv_nsec as u32);
        // Read in this order, boot time can trail the monotonic reading only by the call gap.
        assert!(
            boot.0 + Duration::from_secs(1) >= mono,
            "{boot:?} vs {mono:?}"
        );
        assert!(Instant::now() >= boot);
    }

    #[test]
    fn ipc_lock_is_read_from_the_effective_set() {
        let status = |eff: &str| {
            format!(
                "Name:\tsshkeep\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t{eff}\nCapBnd:\t000001ffffffffff\n"
            )
        };
        assert!(has_ipc_lock(&status("000001ffffffffff")));
        assert!(has_ipc_lock(&status("0000000000004000")));
        // Root with everything but CAP_IPC_LOCK (setpriv --bounding-set=-ipc_lock).
        assert!(!has_ipc_lock(&status("000001fffeffbfff")));
        assert!(!has_ipc_lock(&status("0000000000000000")));
        // Permitted but not effective does not count.
        assert!(!has_ipc_lock(
            "CapPrm:\t0000000000004000\nCapEff:\t0000000000000000\n"
        ));
        for bad in [
            "",
            "CapEff:\n",
            "CapEff:\tzz\n",
            "CapEff:\t1fffffffffffffffff\n",
            "capeff: 4000\n",
        ] {
            assert!(!has_ipc_lock(bad), "{bad:?}");
        }
        // This process's own status parses (whatever its capabilities).
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(own.lines().any(|l| l.starts_with("CapEff:")));
        let _ = has_ipc_lock(&own);
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_boot(Duration::from_secs(5));
        assert_eq!(t + Duration::MAX, Instant::from_boot(Duration::MAX));
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert_eq!(
            t.saturating_duration_since(t + Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(
            (t + Duration::from_secs(2)).saturating_duration_since(t),
            Duration::from_secs(2)
        );
    }
}
