//! The command line: a hand-written getopt for OpenSSH's `ssh-agent` flags plus sshkeep's
//! long options, the usage text, and `convtime`.
//!
//! `parse` follows OpenSSH 9.2's `main()` (optstring `"cDdksE:a:O:P:t:"`, plus 10.4's `-V`) and the
//! getopt from openbsd-compat that OpenSSH uses on Linux. That getopt does not permute: the first
//! argument that is not an option starts the command, and every argument after it belongs to the
//! command (`sshkeep sh -c 'ssh-add -l'` runs `sh -c 'ssh-add -l'`). Errors are reported in
//! argument order, as OpenSSH reports them from inside its getopt loop, with its wording and exit
//! codes.
//!
//! Parsing is pure: no printing, no exiting, no environment reads. The caller prints what
//! `CliError` and `Options::notices` carry.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::keys::FingerprintHash;

/// The usage text, OpenSSH 9.2's adapted to sshkeep. Like `CliError::message`, it has no final
/// newline: print it with one added.
pub const USAGE: &str = "\
usage: sshkeep [-c | -s] [-Dd] [-a bind_address] [-E fingerprint_hash]
               [-O option] [-t life] [--exit-with pid] [--confirm-forwarded]
               [--log-use]
       sshkeep [-a bind_address] [-E fingerprint_hash] [-O option] [-t life]
               [--exit-with pid] [--confirm-forwarded] [--log-use]
               command [arg ...]
       sshkeep [-c | -s] --reuse [-a bind_address] [-E fingerprint_hash]
               [-t life] [--confirm-forwarded] [--log-use]
       sshkeep --status [-a bind_address]
       sshkeep [-c | -s] -k
       sshkeep -V";

/// OpenSSH: `usage()` exits 1, and so do the errors printed just before it.
const EXIT_USAGE: u8 = 1;
/// OpenSSH: `fatal()` exits 255.
const EXIT_FATAL: u8 = 255;
/// Largest `-t` lifetime and `--exit-with` pid (OpenSSH: INT_MAX).
const INT_MAX: u64 = 0x7fff_ffff;
/// The start of the notice for options that only concern PKCS#11 and FIDO.
const NO_HARDWARE_TOKENS: &str = "sshkeep: hardware tokens (PKCS#11, FIDO) are not supported;";

/// Which shell syntax to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// `-s`: `NAME=value; export NAME;`.
    Bourne,
    /// `-c`, or `$SHELL` ending in `csh`: `setenv NAME value;`.
    Csh,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run an agent.
    Run(Options),
    /// `-k`: kill the agent named by `SSH_AGENT_PID`, printing the `unset` lines in this syntax.
    Kill(Shell),
    /// `-V`: print the version (OpenSSH 10.4: to stderr, exit 0).
    Version,
    /// `--reuse`: print the agent serving the per-user socket (or `-a`), starting it if none
    /// answers there. Never foreground, never a command, never `--exit-with`.
    Reuse(Options),
    /// `--status`: probe `-a PATH`, or else `$SSH_AUTH_SOCK`.
    Status(Option<PathBuf>),
}

/// How to run the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Syntax of the snippet printed on stdout (meaningless in command mode).
    pub shell: Shell,
    /// `-D` or `-d`: stay in the foreground.
    pub foreground: bool,
    /// `-d`: debug log to stderr.
    pub debug: bool,
    /// `-a`: the socket path, as given (not checked here).
    pub bind_address: Option<PathBuf>,
    /// `-E`: hash for fingerprints in logs and confirm prompts (default SHA256).
    pub fingerprint_hash: FingerprintHash,
    /// `-t`, seconds; `None` (also for `-t 0`) means forever.
    pub default_lifetime: Option<u32>,
    /// `--exit-with PID`: a positive pid; whether the process exists is for the caller to check.
    pub exit_with: Option<i32>,
    /// `--confirm-forwarded`.
    pub confirm_forwarded: bool,
    /// `--log-use`: a log line for every signature request.
    pub log_use: bool,
    /// Command mode: the command and its arguments (empty otherwise).
    pub command: Vec<OsString>,
    /// Lines to print to stderr before starting, verbatim plus a newline (they carry their own
    /// `sshkeep:` prefix): options accepted for compatibility that have no effect (`-P`, the
    /// PKCS#11/FIDO `-O` options). Each distinct line once, in argument order.
    pub notices: Vec<String>,
}

/// A command-line error. The caller prints `message` (if any) to stderr verbatim with a newline
/// added, then `USAGE` (also with a newline added) if `show_usage`, then exits with `exit_code`.
///
/// `message` carries the `sshkeep:` prefix where sshkeep's own wording is used, and none where
/// OpenSSH prints its line without a program name (`unknown option -- h`, `Invalid lifetime`).
/// Argument bytes in it are escaped as OpenSSH's log does (`strnvis` with `VIS_SAFE | VIS_OCTAL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// The line to print before the usage, without its newline.
    pub message: Option<String>,
    /// The process exit status: 1 for usage errors, 255 where OpenSSH calls `fatal()`.
    pub exit_code: u8,
    /// Print `USAGE` after the message.
    pub show_usage: bool,
}

/// Parse the arguments (without argv[0]). `shell_env` is the value of `$SHELL`, used only when
/// neither `-c` nor `-s` is given and there is no command.
pub fn parse(args: Vec<OsString>, shell_env: Option<OsString>) -> Result<Action, CliError> {
    let mut flags = Flags::default();
    let mut args = args.into_iter();
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        let step = match arg.as_bytes() {
            b"--" => Step::EndOfOptions,
            [b'-', b'-', long @ ..] => flags.long_option(long, &mut args)?,
            [b'-', cluster @ ..] if !cluster.is_empty() => flags.cluster(cluster, &mut args)?,
            // Neither an option nor "--" (a lone "-" included): the command.
            _ => Step::Command,
        };
        match step {
            Step::Next => {}
            Step::EndOfOptions => break,
            Step::Command => {
                command.push(arg);
                break;
            }
            Step::Version => return Ok(Action::Version),
        }
    }
    command.extend(args);

    // OpenSSH: `if (ac > 0 && (c_flag || k_flag || s_flag || d_flag || D_flag)) usage();`
    if !command.is_empty()
        && (flags.c_flag || flags.k_flag || flags.s_flag || flags.d_flag || flags.big_d_flag)
    {
        return Err(usage());
    }
    if flags.status {
        return match (&flags.first_other, flags.reuse, command.is_empty()) {
            (_, true, _) => Err(cannot_combine("--status", "--reuse")),
            (Some(other), ..) => Err(cannot_combine("--status", other)),
            (None, false, false) => Err(cannot_combine("--status", "a command")),
            (None, false, true) => Ok(Action::Status(flags.bind_address)),
        };
    }
    if flags.reuse {
        // A shared agent is not tied to one process, and it must fork to print its snippet.
        let conflict = [
            (flags.d_flag, "-d"),
            (flags.big_d_flag, "-D"),
            (flags.k_flag, "-k"),
            (flags.exit_with.is_some(), "--exit-with"),
            (!command.is_empty(), "a command"),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name));
        if let Some(name) = conflict {
            return Err(cannot_combine("--reuse", name));
        }
    }
    let shell = if flags.c_flag {
        Shell::Csh
    } else if flags.s_flag || !command.is_empty() {
        Shell::Bourne
    } else {
        shell_from_env(shell_env.as_deref())
    };
    if flags.k_flag {
        return Ok(Action::Kill(shell));
    }
    let reuse = flags.reuse;
    let options = Options {
        shell,
        foreground: flags.d_flag || flags.big_d_flag,
        debug: flags.d_flag,
        bind_address: flags.bind_address,
        fingerprint_hash: flags.fingerprint_hash,
        default_lifetime: flags.default_lifetime,
        exit_with: flags.exit_with,
        confirm_forwarded: flags.confirm_forwarded,
        log_use: flags.log_use,
        command,
        notices: flags.notices,
    };
    Ok(if reuse {
        Action::Reuse(options)
    } else {
        Action::Run(options)
    })
}

/// OpenSSH's `convtime` (misc.c): `N[sSmMhHdDwW]`, concatenated (`1h30m`), a plain number being
/// seconds; at most INT_MAX seconds. `None` for an empty string, garbage, a negative number or
/// overflow. Each number is read as `strtol` reads it, so leading white space and a sign are
/// accepted (`"1h 30m"`, `"+5"`, `"-0"`), as they are by OpenSSH.
pub fn convtime(s: &str) -> Option<u64> {
    let mut rest = s.as_bytes();
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (negative, secs, after) = strtol(rest)?;
        if negative && secs != 0 {
            return None;
        }
        let (multiplier, after) = match after.split_first() {
            None => (1, after),
            Some((unit, tail)) => {
                let multiplier = match unit {
                    b's' | b'S' => 1,
                    b'm' | b'M' => 60,
                    b'h' | b'H' => 60 * 60,
                    b'd' | b'D' => 24 * 60 * 60,
                    b'w' | b'W' => 7 * 24 * 60 * 60,
                    _ => return None,
                };
                (multiplier, tail)
            }
        };
        let secs = secs.checked_mul(multiplier).filter(|&v| v <= INT_MAX)?;
        total = total.checked_add(secs).filter(|&v| v <= INT_MAX)?;
        rest = after;
    }
    Some(total)
}

/// What the argument loop does after one argument.
enum Step {
    /// Go on with the next argument.
    Next,
    /// `--`: the remaining arguments are the command.
    EndOfOptions,
    /// This argument is the first of the command.
    Command,
    /// `-V`: OpenSSH prints the version and exits at once, whatever follows.
    Version,
}

/// The state of OpenSSH's getopt loop: its `*_flag` variables and the option values.
#[derive(Default)]
struct Flags {
    c_flag: bool,
    s_flag: bool,
    d_flag: bool,
    big_d_flag: bool,
    k_flag: bool,
    bind_address: Option<PathBuf>,
    fingerprint_hash: FingerprintHash,
    default_lifetime: Option<u32>,
    exit_with: Option<i32>,
    confirm_forwarded: bool,
    log_use: bool,
    /// `-P` was given (OpenSSH: a second one is fatal).
    allowed_providers: bool,
    /// `-O websafe-allow=` was given (OpenSSH 10: a second one is fatal).
    websafe_allow: bool,
    notices: Vec<String>,
    /// `--reuse`.
    reuse: bool,
    /// `--status`.
    status: bool,
    /// The first option other than `-a`, `--reuse` and `--status`, as written in the usage
    /// (`-t`, `--exit-with`): `--status` takes none of them.
    first_other: Option<String>,
}

impl Flags {
    /// One argument of short options after its `-`, e.g. `sD`, `t5`, `sa/tmp/x`. An option that
    /// takes an argument takes the rest of the cluster or, if none, the next argument.
    fn cluster(
        &mut self,
        cluster: &[u8],
        rest: &mut impl Iterator<Item = OsString>,
    ) -> Result<Step, CliError> {
        let mut chars = cluster;
        while let Some((&c, tail)) = chars.split_first() {
            chars = tail;
            if c != b'a' && self.first_other.is_none() {
                self.first_other = Some(format!("-{}", vis(&[c])));
            }
            match c {
                b'c' => {
                    if self.s_flag {
                        return Err(usage());
                    }
                    self.c_flag = true;
                }
                b's' => {
                    if self.c_flag {
                        return Err(usage());
                    }
                    self.s_flag = true;
                }
                // OpenSSH: `if (d_flag || D_flag) usage();` for both, so `-dd` is refused too.
                b'd' | b'D' => {
                    if self.d_flag || self.big_d_flag {
                        return Err(usage());
                    }
                    if c == b'd' {
                        self.d_flag = true;
                    } else {
                        self.big_d_flag = true;
                    }
                }
                b'k' => self.k_flag = true,
                b'V' => return Ok(Step::Version),
                b'a' | b'E' | b'O' | b'P' | b't' => {
                    let optarg = if tail.is_empty() {
                        rest.next().ok_or_else(|| {
                            usage_after(format!("option requires an argument -- {}", vis(&[c])))
                        })?
                    } else {
                        OsStr::from_bytes(tail).to_os_string()
                    };
                    self.option_argument(c, optarg)?;
                    return Ok(Step::Next);
                }
                // getopt: a '-' ending a cluster ("-s-") stops option parsing without consuming
                // the argument, which becomes the command (refused then, since a flag was set).
                b'-' if tail.is_empty() => return Ok(Step::Command),
                _ => return Err(usage_after(format!("unknown option -- {}", vis(&[c])))),
            }
        }
        Ok(Step::Next)
    }

    /// An option that takes an argument.
    fn option_argument(&mut self, c: u8, optarg: OsString) -> Result<(), CliError> {
        match c {
            b'a' => self.bind_address = Some(PathBuf::from(optarg)),
            b'E' => {
                self.fingerprint_hash = std::str::from_utf8(optarg.as_bytes())
                    .ok()
                    .and_then(FingerprintHash::from_name)
                    .ok_or_else(|| {
                        fatal(format!(
                            "Invalid hash algorithm \"{}\"",
                            vis(optarg.as_bytes())
                        ))
                    })?;
            }
            b'O' => self.hardware_option(optarg.as_bytes())?,
            b'P' => {
                if self.allowed_providers {
                    return Err(fatal("-P option already specified".to_owned()));
                }
                self.allowed_providers = true;
                self.notice(format!("{NO_HARDWARE_TOKENS} -P has no effect"));
            }
            b't' => {
                let secs = optarg
                    .to_str()
                    .and_then(convtime)
                    .and_then(|secs| u32::try_from(secs).ok())
                    .ok_or_else(|| usage_after("Invalid lifetime".to_owned()))?;
                // OpenSSH: a lifetime of 0 means no lifetime.
                self.default_lifetime = (secs != 0).then_some(secs);
            }
            // `cluster` passes only the letters above.
            _ => return Err(usage()),
        }
        Ok(())
    }

    /// `-O`: every option OpenSSH knows concerns PKCS#11 or FIDO, which sshkeep does not support;
    /// they are accepted with a notice, with OpenSSH's errors for the rest.
    fn hardware_option(&mut self, option: &[u8]) -> Result<(), CliError> {
        let name = match option {
            b"no-restrict-websafe" => "no-restrict-websafe",
            b"allow-remote-pkcs11" => "allow-remote-pkcs11",
            // OpenSSH 10.0.
            _ if option.starts_with(b"websafe-allow=") => {
                if self.websafe_allow {
                    return Err(fatal("websafe-allow already set".to_owned()));
                }
                self.websafe_allow = true;
                "websafe-allow"
            }
            _ => return Err(fatal("Unknown -O option".to_owned())),
        };
        self.notice(format!("{NO_HARDWARE_TOKENS} -O {name} has no effect"));
        Ok(())
    }

    /// sshkeep's own options: `--exit-with PID`, `--exit-with=PID`, `--confirm-forwarded`,
    /// `--log-use`, `--reuse`, `--status`.
    /// Names are matched exactly (no abbreviations). `long` is the argument after its `--`.
    fn long_option(
        &mut self,
        long: &[u8],
        rest: &mut impl Iterator<Item = OsString>,
    ) -> Result<Step, CliError> {
        let mut parts = long.splitn(2, |&b| b == b'=');
        let name = parts.next().unwrap_or_default();
        let value = parts.next();
        if !matches!(name, b"reuse" | b"status") && self.first_other.is_none() {
            self.first_other = Some(format!("--{}", vis(name)));
        }
        match name {
            b"reuse" | b"status" => {
                if value.is_some() {
                    return Err(usage_after(format!(
                        "sshkeep: option --{} takes no argument",
                        vis(name)
                    )));
                }
                if name == b"reuse" {
                    self.reuse = true;
                } else {
                    self.status = true;
                }
            }
            b"exit-with" => {
                let value = match value {
                    Some(v) => OsStr::from_bytes(v).to_os_string(),
                    None => rest.next().ok_or_else(|| {
                        usage_after("sshkeep: option --exit-with requires an argument".to_owned())
                    })?,
                };
                let pid = parse_pid(&value).ok_or_else(|| {
                    usage_after(format!(
                        "sshkeep: --exit-with: invalid pid \"{}\"",
                        vis(value.as_bytes())
                    ))
                })?;
                self.exit_with = Some(pid);
            }
            b"confirm-forwarded" => {
                if value.is_some() {
                    return Err(usage_after(
                        "sshkeep: option --confirm-forwarded takes no argument".to_owned(),
                    ));
                }
                self.confirm_forwarded = true;
            }
            b"log-use" => {
                if value.is_some() {
                    return Err(usage_after(
                        "sshkeep: option --log-use takes no argument".to_owned(),
                    ));
                }
                self.log_use = true;
            }
            _ => {
                return Err(usage_after(format!(
                    "sshkeep: unknown option --{}",
                    vis(name)
                )));
            }
        }
        Ok(Step::Next)
    }

    fn notice(&mut self, line: String) {
        if !self.notices.contains(&line) {
            self.notices.push(line);
        }
    }
}

/// OpenSSH: csh syntax when `$SHELL` is longer than 2 characters and ends in "csh".
fn shell_from_env(shell: Option<&OsStr>) -> Shell {
    match shell {
        Some(s) if s.as_bytes().ends_with(b"csh") => Shell::Csh,
        _ => Shell::Bourne,
    }
}

/// A pid for `--exit-with`: decimal digits only, 1 to INT_MAX.
fn parse_pid(value: &OsStr) -> Option<i32> {
    let digits = value.to_str()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i32>().ok().filter(|&pid| pid > 0)
}

/// One number as C's `strtol(s, &end, 10)` reads it: white space, an optional sign, at least one
/// digit. Returns (negative, magnitude saturated at `u64::MAX`, the bytes after the digits).
fn strtol(s: &[u8]) -> Option<(bool, u64, &[u8])> {
    let mut rest = s;
    // C's isspace in the C locale.
    while let Some((b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r', tail)) = rest.split_first() {
        rest = tail;
    }
    let negative = match rest.split_first() {
        Some((b'-', tail)) => {
            rest = tail;
            true
        }
        Some((b'+', tail)) => {
            rest = tail;
            false
        }
        _ => false,
    };
    let mut value: u64 = 0;
    let mut digits = 0usize;
    while let Some((&b, tail)) = rest.split_first() {
        let Some(digit) = char::from(b).to_digit(10) else {
            break;
        };
        value = value.saturating_mul(10).saturating_add(u64::from(digit));
        digits = digits.saturating_add(1);
        rest = tail;
    }
    (digits > 0).then_some((negative, value, rest))
}

/// Escape bytes as OpenSSH's log does on stderr (`strnvis` with `VIS_SAFE | VIS_OCTAL`): printable
/// ASCII, space, tab, newline, CR, BS and BEL as they are, a backslash doubled, any other byte
/// as `\ooo`. The result is always valid UTF-8, whatever the argument's bytes.
fn vis(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x21..=0x7e | b' ' | b'\t' | b'\n' | b'\r' | 0x07 | 0x08 => out.push(char::from(b)),
            // Writing to a String cannot fail.
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out
}

/// OpenSSH's `usage()`: the usage text alone, exit 1.
fn usage() -> CliError {
    CliError {
        message: None,
        exit_code: EXIT_USAGE,
        show_usage: true,
    }
}

/// A line, then the usage text, exit 1.
fn usage_after(message: String) -> CliError {
    CliError {
        message: Some(message),
        exit_code: EXIT_USAGE,
        show_usage: true,
    }
}

/// `--reuse` or `--status` with an option it does not take: a line, then the usage, exit 1.
fn cannot_combine(option: &str, other: &str) -> CliError {
    usage_after(format!("sshkeep: {option} cannot be combined with {other}"))
}

/// OpenSSH's `fatal()`: the line alone, exit 255.
fn fatal(message: String) -> CliError {
    CliError {
        message: Some(message),
        exit_code: EXIT_FATAL,
        show_usage: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn bytes(b: &[u8]) -> OsString {
        OsString::from_vec(b.to_vec())
    }

    /// The options with no flags.
    fn o() -> Options {
        Options {
            shell: Shell::Bourne,
            foreground: false,
            debug: false,
            bind_address: None,
            fingerprint_hash: FingerprintHash::Sha256,
            default_lifetime: None,
            exit_with: None,
            confirm_forwarded: false,
            log_use: false,
            command: Vec::new(),
            notices: Vec::new(),
        }
    }

    // Builders for the expected options, to keep the tables one case a line.
    impl Options {
        fn csh(mut self) -> Self {
            self.shell = Shell::Csh;
            self
        }
        fn fg(mut self) -> Self {
            self.foreground = true;
            self
        }
        fn dbg(mut self) -> Self {
            self.foreground = true;
            self.debug = true;
            self
        }
        fn bind(mut self, path: &str) -> Self {
            self.bind_address = Some(path.into());
            self
        }
        fn hash(mut self, hash: FingerprintHash) -> Self {
            self.fingerprint_hash = hash;
            self
        }
        fn life(mut self, secs: u32) -> Self {
            self.default_lifetime = Some(secs);
            self
        }
        fn pid(mut self, pid: i32) -> Self {
            self.exit_with = Some(pid);
            self
        }
        fn confirm(mut self) -> Self {
            self.confirm_forwarded = true;
            self
        }
        fn log_use(mut self) -> Self {
            self.log_use = true;
            self
        }
        fn cmd(mut self, args: &[&str]) -> Self {
            self.command = os(args);
            self
        }
        fn note(mut self, what: &str) -> Self {
            self.notices.push(notice(what));
            self
        }
    }

    fn notice(what: &str) -> String {
        format!("sshkeep: hardware tokens (PKCS#11, FIDO) are not supported; {what} has no effect")
    }

    fn usage_only() -> CliError {
        CliError {
            message: None,
            exit_code: 1,
            show_usage: true,
        }
    }

    /// A line, then the usage, exit 1.
    fn u(message: &str) -> CliError {
        CliError {
            message: Some(message.to_owned()),
            exit_code: 1,
            show_usage: true,
        }
    }

    /// A fatal line, exit 255.
    fn f(message: &str) -> CliError {
        CliError {
            message: Some(message.to_owned()),
            exit_code: 255,
            show_usage: false,
        }
    }

    #[test]
    fn runs() {
        use FingerprintHash::*;
        let cases: Vec<(&[&str], Options)> = vec![
            (&[], o()),
            (&["-s"], o()),
            (&["-c"], o().csh()),
            (&["-c", "-c"], o().csh()),
            (&["-s", "-s"], o()),
            (&["-D"], o().fg()),
            (&["-d"], o().dbg()),
            (&["-sD"], o().fg()),
            (&["-Ds"], o().fg()),
            (&["-s", "-D"], o().fg()),
            (&["-cd"], o().csh().dbg()),
            // Option arguments: separate, attached, at the end of a cluster.
            (&["-a", "/tmp/x"], o().bind("/tmp/x")),
            (&["-a/tmp/x"], o().bind("/tmp/x")),
            (&["-sDa/tmp/x"], o().fg().bind("/tmp/x")),
            (&["-sDa", "/tmp/x"], o().fg().bind("/tmp/x")),
            (&["-a", "rel/sock"], o().bind("rel/sock")),
            (&["-a", "x", "-a", "y"], o().bind("y")),
            // The next argument is the option's, whatever it looks like.
            (&["-a", "-s"], o().bind("-s")),
            (&["-a", "--"], o().bind("--")),
            (&["-a", "-"], o().bind("-")),
            (&["-a", "--exit-with"], o().bind("--exit-with")),
            (&["-a", ""], o().bind("")),
            // -E
            (&["-E", "md5"], o().hash(Md5)),
            (&["-Emd5"], o().hash(Md5)),
            (&["-E", "MD5"], o().hash(Md5)),
            (&["-E", "sha1"], o().hash(Sha1)),
            (&["-E", "Sha256"], o().hash(Sha256)),
            (&["-E", "SHA384"], o().hash(Sha384)),
            (&["-E", "sHa512"], o().hash(Sha512)),
            (&["-sE", "sha1"], o().hash(Sha1)),
            (&["-E", "md5", "-E", "sha512"], o().hash(Sha512)),
            // -t
            (&["-t5"], o().life(5)),
            (&["-t", "90"], o().life(90)),
            (&["-t", "10m"], o().life(600)),
            (&["-t", "1h30m"], o().life(5400)),
            (&["-st", "1w"], o().life(604_800)),
            (&["-t", "2147483647"], o().life(2_147_483_647)),
            (&["-t", "0"], o()),
            (&["-t0"], o()),
            (&["-t", "5", "-t", "0"], o()),
            (&["-t", "0", "-t", "5"], o().life(5)),
            // -O and -P: accepted, with a notice (each distinct one once).
            (
                &["-O", "allow-remote-pkcs11"],
                o().note("-O allow-remote-pkcs11"),
            ),
            (
                &["-Ono-restrict-websafe"],
                o().note("-O no-restrict-websafe"),
            ),
            (&["-O", "websafe-allow=ssh:*"], o().note("-O websafe-allow")),
            (&["-O", "websafe-allow="], o().note("-O websafe-allow")),
            (
                &[
                    "-O",
                    "allow-remote-pkcs11",
                    "-O",
                    "no-restrict-websafe",
                    "-O",
                    "allow-remote-pkcs11",
                ],
                o().note("-O allow-remote-pkcs11")
                    .note("-O no-restrict-websafe"),
            ),
            (&["-P", "/usr/lib/*"], o().note("-P")),
            (&["-P", ""], o().note("-P")),
            (
                &["-P/usr/lib/*", "-O", "allow-remote-pkcs11"],
                o().note("-P").note("-O allow-remote-pkcs11"),
            ),
            // Long options, anywhere before the command.
            (&["--exit-with", "42"], o().pid(42)),
            (&["--exit-with=42"], o().pid(42)),
            (&["--exit-with=007"], o().pid(7)),
            (&["--exit-with", "2147483647"], o().pid(i32::MAX)),
            (&["--exit-with=1", "--exit-with=2"], o().pid(2)),
            (&["--confirm-forwarded"], o().confirm()),
            (
                &["--confirm-forwarded", "--confirm-forwarded"],
                o().confirm(),
            ),
            (
                &[
                    "-s",
                    "--exit-with",
                    "1",
                    "-D",
                    "--confirm-forwarded",
                    "-t",
                    "1m",
                ],
                o().fg().pid(1).confirm().life(60),
            ),
            (&["--log-use"], o().log_use()),
            (
                &["--log-use", "-D", "--confirm-forwarded"],
                o().log_use().fg().confirm(),
            ),
            // "--" ends the options.
            (&["-s", "--"], o()),
            (&["--"], o()),
            (&["-t", "5", "--"], o().life(5)),
        ];
        for (args, want) in cases {
            assert_eq!(parse(os(args), None), Ok(Action::Run(want)), "{args:?}");
        }
    }

    #[test]
    fn command_mode() {
        let cases: Vec<(&[&str], Options)> = vec![
            (&["ssh-add", "-l"], o().cmd(&["ssh-add", "-l"])),
            (
                &["sh", "-c", "ssh-add -l"],
                o().cmd(&["sh", "-c", "ssh-add -l"]),
            ),
            // No permutation: options after the command are the command's.
            (
                &["-a", "p", "sh", "-s", "-c", "-k", "-d", "-V", "--", "-x"],
                o().bind("p")
                    .cmd(&["sh", "-s", "-c", "-k", "-d", "-V", "--", "-x"]),
            ),
            (
                &["ls", "--exit-with", "5", "--bogus"],
                o().cmd(&["ls", "--exit-with", "5", "--bogus"]),
            ),
            (&["--", "-s"], o().cmd(&["-s"])),
            (&["--", "--"], o().cmd(&["--"])),
            (
                &["-t", "5", "--", "ls", "--", "-x"],
                o().life(5).cmd(&["ls", "--", "-x"]),
            ),
            // A lone "-" is not an option (getopt): it is the command.
            (&["-", "x"], o().cmd(&["-", "x"])),
            (&[""], o().cmd(&[""])),
            (
                &["--exit-with", "5", "--confirm-forwarded", "-Emd5", "bash"],
                o().pid(5)
                    .confirm()
                    .hash(FingerprintHash::Md5)
                    .cmd(&["bash"]),
            ),
            (
                &["--log-use", "bash", "--log-use"],
                o().log_use().cmd(&["bash", "--log-use"]),
            ),
            (
                &["-O", "allow-remote-pkcs11", "bash"],
                o().note("-O allow-remote-pkcs11").cmd(&["bash"]),
            ),
        ];
        for (args, want) in cases {
            assert_eq!(parse(os(args), None), Ok(Action::Run(want)), "{args:?}");
        }
        // In command mode $SHELL is not looked at.
        assert_eq!(
            parse(os(&["ls"]), Some("/bin/csh".into())),
            Ok(Action::Run(o().cmd(&["ls"])))
        );
    }

    #[test]
    fn shell_detection() {
        let cases: Vec<(&[&str], Option<OsString>, Shell)> = vec![
            (&[], None, Shell::Bourne),
            (&[], Some("/bin/tcsh".into()), Shell::Csh),
            (&[], Some("/bin/csh".into()), Shell::Csh),
            (&[], Some("csh".into()), Shell::Csh),
            (&[], Some("xcsh".into()), Shell::Csh),
            (&[], Some("/bin/bash".into()), Shell::Bourne),
            (&[], Some("/bin/zsh".into()), Shell::Bourne),
            (&[], Some("sh".into()), Shell::Bourne),
            (&[], Some("cs".into()), Shell::Bourne),
            (&[], Some("".into()), Shell::Bourne),
            (&[], Some("/bin/csh/".into()), Shell::Bourne),
            (&[], Some("/bin/CSH".into()), Shell::Bourne),
            (&[], Some(bytes(b"/bin/\xfftcsh")), Shell::Csh),
            (&[], Some(bytes(b"/bin/\xff")), Shell::Bourne),
            (&["-s"], Some("/bin/tcsh".into()), Shell::Bourne),
            (&["-c"], Some("/bin/bash".into()), Shell::Csh),
            (&["-c"], None, Shell::Csh),
            (&["-D"], Some("/bin/tcsh".into()), Shell::Csh),
            (&["-d", "-s"], Some("/bin/tcsh".into()), Shell::Bourne),
        ];
        for (args, shell_env, want) in cases {
            let got = match parse(os(args), shell_env.clone()) {
                Ok(Action::Run(options)) => options.shell,
                other => panic!("{args:?} {shell_env:?}: {other:?}"),
            };
            assert_eq!(got, want, "{args:?} {shell_env:?}");
        }
    }

    #[test]
    fn kill_and_version() {
        let cases: Vec<(&[&str], Option<&str>, Action)> = vec![
            (&["-k"], None, Action::Kill(Shell::Bourne)),
            (&["-k"], Some("/bin/bash"), Action::Kill(Shell::Bourne)),
            (&["-k"], Some("/bin/tcsh"), Action::Kill(Shell::Csh)),
            (&["-kc"], None, Action::Kill(Shell::Csh)),
            (&["-c", "-k"], None, Action::Kill(Shell::Csh)),
            (&["-s", "-k"], Some("/bin/csh"), Action::Kill(Shell::Bourne)),
            (&["-k", "-k"], None, Action::Kill(Shell::Bourne)),
            (&["-k", "--"], None, Action::Kill(Shell::Bourne)),
            // Other options are parsed (and checked) but do not matter.
            (
                &["-k", "-d", "-a", "x", "-t", "5", "-Emd5", "--exit-with=3"],
                None,
                Action::Kill(Shell::Bourne),
            ),
            (&["-V"], None, Action::Version),
            (&["-V", "ls"], None, Action::Version),
            (&["-V", "-x"], None, Action::Version),
            (&["-Vx"], None, Action::Version),
            (&["-V", "-c", "-s"], None, Action::Version),
            (&["-sV"], None, Action::Version),
            (&["-k", "-V"], None, Action::Version),
            (&["-t", "5", "-V", "-t", "5x"], None, Action::Version),
        ];
        for (args, shell_env, want) in cases {
            assert_eq!(
                parse(os(args), shell_env.map(OsString::from)),
                Ok(want),
                "{args:?}"
            );
        }
    }

    #[test]
    fn errors() {
        let cases: Vec<(&[&str], CliError)> = vec![
            // Conflicts.
            (&["-c", "-s"], usage_only()),
            (&["-s", "-c"], usage_only()),
            (&["-cs"], usage_only()),
            (&["-sc"], usage_only()),
            (&["-d", "-D"], usage_only()),
            (&["-D", "-d"], usage_only()),
            (&["-dD"], usage_only()),
            (&["-dd"], usage_only()),
            (&["-DD"], usage_only()),
            // A command with -c, -s, -k, -d or -D.
            (&["-s", "ls"], usage_only()),
            (&["-c", "ls"], usage_only()),
            (&["-k", "ls"], usage_only()),
            (&["-d", "ls"], usage_only()),
            (&["-D", "ls"], usage_only()),
            (&["-s", "--", "ls"], usage_only()),
            (&["-k", "-"], usage_only()),
            (&["-s-"], usage_only()),
            (&["-Dk-"], usage_only()),
            // getopt's own errors.
            (&["-h"], u("unknown option -- h")),
            (&["-x"], u("unknown option -- x")),
            (&["-sx"], u("unknown option -- x")),
            (&["-:"], u("unknown option -- :")),
            (&["-s-x"], u("unknown option -- -")),
            (&["-T"], u("unknown option -- T")),
            (&["-u"], u("unknown option -- u")),
            (&["-t"], u("option requires an argument -- t")),
            (&["-a"], u("option requires an argument -- a")),
            (&["-E"], u("option requires an argument -- E")),
            (&["-O"], u("option requires an argument -- O")),
            (&["-P"], u("option requires an argument -- P")),
            (&["-st"], u("option requires an argument -- t")),
            (&["-Emd5", "-t"], u("option requires an argument -- t")),
            // -E
            (&["-E", "foo"], f("Invalid hash algorithm \"foo\"")),
            (&["-E", ""], f("Invalid hash algorithm \"\"")),
            (&["-E", "sha224"], f("Invalid hash algorithm \"sha224\"")),
            (&["-E", "sha-256"], f("Invalid hash algorithm \"sha-256\"")),
            (
                &["-E", "a\\b\x01\tc\x7fé"],
                f("Invalid hash algorithm \"a\\\\b\\001\tc\\177\\303\\251\""),
            ),
            // -O, -P
            (&["-O", "foo"], f("Unknown -O option")),
            (&["-O", ""], f("Unknown -O option")),
            (&["-O", "ALLOW-REMOTE-PKCS11"], f("Unknown -O option")),
            (&["-O", "websafe-allow"], f("Unknown -O option")),
            (
                &["-O", "websafe-allow=a", "-O", "websafe-allow=b"],
                f("websafe-allow already set"),
            ),
            (&["-P", "a", "-P", "b"], f("-P option already specified")),
            // -t
            (&["-t", "5x"], u("Invalid lifetime")),
            (&["-t5x"], u("Invalid lifetime")),
            (&["-t", ""], u("Invalid lifetime")),
            (&["-t", "-1"], u("Invalid lifetime")),
            (&["-t", "2147483648"], u("Invalid lifetime")),
            (&["-t", "3551w"], u("Invalid lifetime")),
            // Errors come in argument order, as from OpenSSH's getopt loop.
            (&["-x", "-E", "foo"], u("unknown option -- x")),
            (&["-E", "foo", "-x"], f("Invalid hash algorithm \"foo\"")),
            (&["-t", "5x", "-E", "foo"], u("Invalid lifetime")),
            (&["-c", "-s", "-t", "5x"], usage_only()),
            (&["-k", "-t", "5x"], u("Invalid lifetime")),
            (&["-O", "foo", "-E", "foo"], f("Unknown -O option")),
            (&["-E", "sha1", "-O", "foo"], f("Unknown -O option")),
            (&["-x", "-V"], u("unknown option -- x")),
            (&["-xV"], u("unknown option -- x")),
            (&["-c", "-s", "-V"], usage_only()),
            (&["-s", "--foo", "-x"], u("sshkeep: unknown option --foo")),
            // sshkeep's long options.
            (&["--foo"], u("sshkeep: unknown option --foo")),
            (&["--foo=bar"], u("sshkeep: unknown option --foo")),
            (&["--exit"], u("sshkeep: unknown option --exit")),
            (&["--EXIT-WITH=1"], u("sshkeep: unknown option --EXIT-WITH")),
            (&["--=1"], u("sshkeep: unknown option --")),
            (&["--help"], u("sshkeep: unknown option --help")),
            (&["--version"], u("sshkeep: unknown option --version")),
            (
                &["--exit-with"],
                u("sshkeep: option --exit-with requires an argument"),
            ),
            (
                &["--exit-with="],
                u("sshkeep: --exit-with: invalid pid \"\""),
            ),
            (
                &["--exit-with", ""],
                u("sshkeep: --exit-with: invalid pid \"\""),
            ),
            (
                &["--exit-with", "x"],
                u("sshkeep: --exit-with: invalid pid \"x\""),
            ),
            (
                &["--exit-with", "0"],
                u("sshkeep: --exit-with: invalid pid \"0\""),
            ),
            (
                &["--exit-with", "-1"],
                u("sshkeep: --exit-with: invalid pid \"-1\""),
            ),
            (
                &["--exit-with", "+5"],
                u("sshkeep: --exit-with: invalid pid \"+5\""),
            ),
            (
                &["--exit-with", " 5"],
                u("sshkeep: --exit-with: invalid pid \" 5\""),
            ),
            (
                &["--exit-with", "5 "],
                u("sshkeep: --exit-with: invalid pid \"5 \""),
            ),
            (
                &["--exit-with", "0x10"],
                u("sshkeep: --exit-with: invalid pid \"0x10\""),
            ),
            (
                &["--exit-with", "2147483648"],
                u("sshkeep: --exit-with: invalid pid \"2147483648\""),
            ),
            (
                &["--exit-with=99999999999999999999"],
                u("sshkeep: --exit-with: invalid pid \"99999999999999999999\""),
            ),
            (
                &["--exit-with=5=6"],
                u("sshkeep: --exit-with: invalid pid \"5=6\""),
            ),
            (
                &["--exit-with", "--confirm-forwarded"],
                u("sshkeep: --exit-with: invalid pid \"--confirm-forwarded\""),
            ),
            (
                &["--confirm-forwarded=yes"],
                u("sshkeep: option --confirm-forwarded takes no argument"),
            ),
            (
                &["--confirm-forwarded="],
                u("sshkeep: option --confirm-forwarded takes no argument"),
            ),
            (
                &["--log-use=yes"],
                u("sshkeep: option --log-use takes no argument"),
            ),
            (&["--log-us"], u("sshkeep: unknown option --log-us")),
        ];
        for (args, want) in cases {
            assert_eq!(parse(os(args), None), Err(want), "{args:?}");
        }
    }

    #[test]
    fn reuse_and_status() {
        let reuse: Vec<(&[&str], Option<&str>, Options)> = vec![
            (&["--reuse"], None, o()),
            (&["-s", "--reuse"], Some("/bin/tcsh"), o()),
            (&["--reuse", "-c"], None, o().csh()),
            (&["--reuse"], Some("/bin/tcsh"), o().csh()),
            (&["--reuse", "--reuse"], None, o()),
            (
                &["-s", "--reuse", "-t", "8h", "-a", "/x", "-E", "md5"],
                None,
                o().life(8 * 3600).bind("/x").hash(FingerprintHash::Md5),
            ),
            (
                &["--reuse", "--confirm-forwarded", "--"],
                None,
                o().confirm(),
            ),
            (&["--reuse", "-P", "x"], None, o().note("-P")),
        ];
        for (args, shell_env, want) in reuse {
            assert_eq!(
                parse(os(args), shell_env.map(OsString::from)),
                Ok(Action::Reuse(want)),
                "{args:?}"
            );
        }
        let status: Vec<(&[&str], Option<&str>)> = vec![
            (&["--status"], None),
            (&["--status", "--"], None),
            (&["--status", "-a", "/x"], Some("/x")),
            (&["-a/y", "--status", "--status"], Some("/y")),
        ];
        for (args, want) in status {
            assert_eq!(
                parse(os(args), Some("/bin/tcsh".into())),
                Ok(Action::Status(want.map(PathBuf::from))),
                "{args:?}"
            );
        }
        let errors: Vec<(&[&str], CliError)> = vec![
            (
                &["--reuse", "-D"],
                u("sshkeep: --reuse cannot be combined with -D"),
            ),
            (
                &["-d", "--reuse"],
                u("sshkeep: --reuse cannot be combined with -d"),
            ),
            (
                &["--reuse", "-k"],
                u("sshkeep: --reuse cannot be combined with -k"),
            ),
            (
                &["--reuse", "--exit-with", "1"],
                u("sshkeep: --reuse cannot be combined with --exit-with"),
            ),
            (
                &["--reuse", "ls"],
                u("sshkeep: --reuse cannot be combined with a command"),
            ),
            // OpenSSH's own check comes first.
            (&["-s", "--reuse", "ls"], usage_only()),
            (
                &["--status", "-s"],
                u("sshkeep: --status cannot be combined with -s"),
            ),
            (
                &["-t", "5", "--status"],
                u("sshkeep: --status cannot be combined with -t"),
            ),
            (
                &["--status", "-k"],
                u("sshkeep: --status cannot be combined with -k"),
            ),
            (
                &["--status", "--exit-with=5"],
                u("sshkeep: --status cannot be combined with --exit-with"),
            ),
            (
                &["--status", "--reuse"],
                u("sshkeep: --status cannot be combined with --reuse"),
            ),
            (
                &["--reuse", "-s", "--status"],
                u("sshkeep: --status cannot be combined with --reuse"),
            ),
            (
                &["--status", "ls"],
                u("sshkeep: --status cannot be combined with a command"),
            ),
            (
                &["--reuse=yes"],
                u("sshkeep: option --reuse takes no argument"),
            ),
            (
                &["--status="],
                u("sshkeep: option --status takes no argument"),
            ),
            (&["--REUSE"], u("sshkeep: unknown option --REUSE")),
            (&["--stat"], u("sshkeep: unknown option --stat")),
        ];
        for (args, want) in errors {
            assert_eq!(parse(os(args), None), Err(want), "{args:?}");
        }
    }

    #[test]
    fn non_utf8_arguments() {
        let cases: Vec<(Vec<OsString>, Result<Action, CliError>)> = vec![
            // An unknown option byte is escaped, one byte as getopt sees it.
            (vec![bytes(b"-\xff")], Err(u("unknown option -- \\377"))),
            (os(&["-é"]), Err(u("unknown option -- \\303"))),
            // Where a number is expected, non-UTF-8 is invalid.
            (
                vec!["-t".into(), bytes(b"5\xff")],
                Err(u("Invalid lifetime")),
            ),
            (vec![bytes(b"-t\xff")], Err(u("Invalid lifetime"))),
            (
                vec!["--exit-with".into(), bytes(b"5\xff")],
                Err(u("sshkeep: --exit-with: invalid pid \"5\\377\"")),
            ),
            (
                vec![bytes(b"--exit-with=\xfe")],
                Err(u("sshkeep: --exit-with: invalid pid \"\\376\"")),
            ),
            (
                vec![bytes(b"--\xff")],
                Err(u("sshkeep: unknown option --\\377")),
            ),
            (
                vec![bytes(b"--\xff=1")],
                Err(u("sshkeep: unknown option --\\377")),
            ),
            (
                vec!["-E".into(), bytes(b"md5\xff")],
                Err(f("Invalid hash algorithm \"md5\\377\"")),
            ),
            (
                vec!["-O".into(), bytes(b"allow-remote-pkcs11\xff")],
                Err(f("Unknown -O option")),
            ),
            // Paths, -P lists, websafe patterns and the command pass through untouched.
            (
                vec![bytes(b"-a/tmp/\xff"), bytes(b"\xfecmd"), bytes(b"-\xff")],
                Ok(Action::Run(Options {
                    bind_address: Some(PathBuf::from(bytes(b"/tmp/\xff"))),
                    command: vec![bytes(b"\xfecmd"), bytes(b"-\xff")],
                    ..o()
                })),
            ),
            (
                vec!["-P".into(), bytes(b"\xff")],
                Ok(Action::Run(o().note("-P"))),
            ),
            (
                vec![bytes(b"-Owebsafe-allow=\xff")],
                Ok(Action::Run(o().note("-O websafe-allow"))),
            ),
            (
                vec![bytes(b"--"), bytes(b"\xff")],
                Ok(Action::Run(Options {
                    command: vec![bytes(b"\xff")],
                    ..o()
                })),
            ),
        ];
        for (args, want) in cases {
            assert_eq!(parse(args.clone(), None), want, "{args:?}");
        }
    }

    #[test]
    fn convtime_table() {
        let cases: &[(&str, Option<u64>)] = &[
            ("", None),
            ("0", Some(0)),
            ("90", Some(90)),
            ("10m", Some(600)),
            ("10M", Some(600)),
            ("1h30m", Some(5400)),
            ("1h30", Some(3630)),
            ("5s5", Some(10)),
            ("1w", Some(604_800)),
            ("2d", Some(172_800)),
            ("1H1M1S1D1W", Some(3600 + 60 + 1 + 86_400 + 604_800)),
            ("2147483647", Some(2_147_483_647)),
            ("0000000000000000000000000000005", Some(5)),
            ("3550w", Some(3550 * 604_800)),
            // strtol accepts leading white space and a sign before each number (as OpenSSH does).
            (" 5", Some(5)),
            ("\t5", Some(5)),
            ("\x0b\x0c\r\n5", Some(5)),
            ("1h 30m", Some(5400)),
            ("+5", Some(5)),
            ("-0", Some(0)),
            ("1m+1", Some(61)),
            ("1m-0", Some(60)),
            // Garbage.
            ("5x", None),
            ("5 ", None),
            ("1h ", None),
            (" ", None),
            ("s", None),
            ("5ss", None),
            ("0x10", None),
            ("+", None),
            ("- 5", None),
            ("1.5h", None),
            ("５", None),
            // Negative.
            ("-1", None),
            ("1m-1", None),
            // Over INT_MAX: in a number, in a multiplication, in the sum.
            ("2147483648", None),
            ("99999999999999999999", None),
            ("3551w", None),
            ("35791394m", Some(35_791_394 * 60)),
            ("35791395m", None),
            ("596523h", Some(596_523 * 3600)),
            ("596524h", None),
            ("596523h847s", Some(2_147_483_647)),
            ("596523h848s", None),
            ("2147483647s1", None),
            ("99999999999999999999999999999999999999w", None),
            ("1000000000000w", None),
        ];
        for &(s, want) in cases {
            assert_eq!(convtime(s), want, "{s:?}");
        }
    }

    #[test]
    fn vis_escapes_like_openssh_log() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain text", "plain text"),
            (b"a\\b", "a\\\\b"),
            (b"\x00\x01\x1f\x7f", "\\000\\001\\037\\177"),
            (b"\t\n\r\x07\x08", "\t\n\r\x07\x08"),
            (b"\xc3\xa9\xff", "\\303\\251\\377"),
            (b"\"'", "\"'"),
        ];
        for &(input, want) in cases {
            assert_eq!(vis(input), want, "{input:?}");
        }
    }

    #[test]
    fn usage_text() {
        let lines: Vec<&str> = USAGE.lines().collect();
        assert_eq!(lines.len(), 11);
        assert!(!USAGE.ends_with('\n'));
        assert!(lines.iter().all(|l| l.len() <= 80 && !l.ends_with(' ')));
        assert!(lines[0].starts_with("usage: sshkeep ["));
        for (i, line) in lines.iter().enumerate().skip(1) {
            // A continuation sits under the first option, another synopsis under the name.
            let indent = line.len() - line.trim_start().len();
            if line.trim_start().starts_with("sshkeep ") {
                assert_eq!(indent, "usage: ".len(), "line {i}");
            } else {
                assert_eq!(indent, "usage: sshkeep ".len(), "line {i}");
            }
        }
        let all = lines.join(" ");
        for option in [
            "[-c | -s]",
            "[-Dd]",
            "[-a bind_address]",
            "[-E fingerprint_hash]",
            "[-O option]",
            "[-t life]",
            "[--exit-with pid]",
            "[--confirm-forwarded]",
            "[--log-use]",
            "command [arg ...]",
            "--reuse",
        ] {
            assert!(all.contains(option), "{option}");
        }
        assert_eq!(lines[8], "       sshkeep --status [-a bind_address]");
        assert_eq!(lines[9], "       sshkeep [-c | -s] -k");
        assert_eq!(lines[10], "       sshkeep -V");
    }
}
