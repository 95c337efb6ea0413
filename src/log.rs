//! Logging: stderr under `-d` (and `-D`), syslog (facility AUTH) once daemonised.
//! Every line is prefixed `sshkeep:`. Nothing secret is ever passed to these macros.
//!
//! stdout is reserved for the shell snippet; nothing here writes to it. This module uses no
//! other module of the crate (every other one may log): the syslog call it needs is handed
//! to it at start-up (`to_syslog(sys::syslog)`).

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 0,
    Info = 1,
    Debug = 2,
}

const TO_STDERR: u8 = 0;
const TO_SYSLOG: u8 = 1;

static DEST: AtomicU8 = AtomicU8::new(TO_STDERR);
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
/// Writes one line to syslog at a syslog priority (`LOG_ERR`...): `sys::syslog`.
static SYSLOG: OnceLock<fn(libc::c_int, &str)> = OnceLock::new();

/// Log to stderr, up to `max` (Debug under `-d`).
pub fn to_stderr(max: Level) {
    DEST.store(TO_STDERR, Ordering::Relaxed);
    MAX_LEVEL.store(max as u8, Ordering::Relaxed);
}

/// Log to syslog, at INFO and above (OpenSSH's daemon default), through `syslog`, which
/// writes one line at a syslog priority (the caller has opened the log, facility AUTH).
pub fn to_syslog(syslog: fn(libc::c_int, &str)) {
    let _ = SYSLOG.set(syslog);
    DEST.store(TO_SYSLOG, Ordering::Relaxed);
    MAX_LEVEL.store(Level::Info as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    if DEST.load(Ordering::Relaxed) == TO_SYSLOG {
        let priority = match level {
            Level::Error => libc::LOG_ERR,
            Level::Info => libc::LOG_INFO,
            Level::Debug => libc::LOG_DEBUG,
        };
        if let Some(syslog) = SYSLOG.get() {
            syslog(priority, &args.to_string());
        }
    } else {
        // One write per line: stderr is unbuffered, and a line written in pieces costs a
        // system call each (and may interleave). A failed write has nowhere to be reported.
        let line = format!("sshkeep: {args}\n");
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// Text from elsewhere (a process name, a known_hosts entry, a user name from a request),
/// shown so that it cannot add a line or pass for sshkeep's own words: in double quotes,
/// printable ASCII kept and every other byte (control characters, newlines, quotes,
/// backslashes, non-ASCII) written `\xNN`; at most `.1` bytes of it, then `...`.
pub struct Quoted<'a>(pub &'a [u8], pub usize);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        let Quoted(text, max) = *self;
        f.write_char('"')?;
        for &b in text.iter().take(max) {
            match b {
                b'"' | b'\\' => write!(f, "\\x{b:02x}")?,
                0x20..=0x7e => f.write_char(char::from(b))?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        f.write_char('"')?;
        if text.len() > max {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// A line for the user on stderr, exactly as given (no prefix added), whatever the log's
/// destination: the command line's notices, `-V`, and the fatal error `main` prints.
pub fn to_user(args: std::fmt::Arguments<'_>) {
    let line = format!("{args}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($t)*)) };
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($t)*)) };
}

#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Debug) {
            $crate::log::write($crate::log::Level::Debug, format_args!($($t)*))
        }
    };
}
