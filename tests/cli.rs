//! The command line: shell snippets, socket location and modes, `-k`, command mode and errors, with
//! OpenSSH's exact output bytes, exit codes and error wording.
//!
//! Every test here passes against OpenSSH's agent too
//! (`AGENT_UNDER_TEST=/usr/bin/ssh-agent cargo test --test cli`), except those that call
//! `sshkeep_only()`.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use common::*;

/// How long a command-line invocation may take before the test calls it hung.
const CMD_DEADLINE: Duration = Duration::from_secs(10);

/// One finished invocation of the agent binary.
struct Run {
    /// The pid of the process that was started (the one that prints the snippet).
    pid: u32,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// Stops a background agent the invocation left behind when the test ends.
    _agent: KillOnDrop,
}

impl Run {
    /// The background agent's pid from the snippet (`SSH_AGENT_PID`), if any.
    fn agent_pid(&self) -> Option<u32> {
        agent_pid_in(&self.stdout)
    }

    #[track_caller]
    fn assert_code(&self, code: i32) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
    }
}

fn agent_pid_in(snippet: &str) -> Option<u32> {
    snippet.lines().find_map(|l| {
        let rest = l
            .strip_prefix("SSH_AGENT_PID=")
            .or_else(|| l.strip_prefix("setenv SSH_AGENT_PID "))?;
        rest.split(';').next()?.parse().ok()
    })
}

/// Runs `<bin> args` with `env` (and the scrubbed environment of [`scrub_env`]), its output in
/// files so a background agent holding them cannot stall the test; fails after [`CMD_DEADLINE`].
fn agent_cmd(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = TempDir::new();
    let mut cmd = Command::new(agent_bin());
    cmd.args(args).stdin(Stdio::null());
    scrub_env(&mut cmd, env);
    cmd.stdout(fs::File::create(out.join("stdout")).unwrap())
        .stderr(fs::File::create(out.join("stderr")).unwrap());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let status = wait_child(&mut child, CMD_DEADLINE);
    let done = status.is_some();
    if !done {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = fs::read_to_string(out.join("stdout")).unwrap();
    let stderr = fs::read_to_string(out.join("stderr")).unwrap();
    let agent = KillOnDrop(agent_pid_in(&stdout).unwrap_or(0));
    assert!(
        done,
        "{args:?} did not finish\nstdout: {stdout}\nstderr: {stderr}"
    );
    Run {
        pid,
        status: status.unwrap(),
        stdout,
        stderr,
        _agent: agent,
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The socket path from the first line of a Bourne snippet, checking the line's exact form.
fn sock_in_sh(snippet: &str) -> PathBuf {
    let line = snippet.lines().next().unwrap_or_default();
    let sock = line
        .strip_prefix("SSH_AUTH_SOCK=")
        .and_then(|r| r.strip_suffix("; export SSH_AUTH_SOCK;"))
        .unwrap_or_else(|| panic!("not a Bourne snippet: {snippet:?}"));
    PathBuf::from(sock)
}

/// `ssh-add -l` against `sock` says the agent is there and empty.
#[track_caller]
fn assert_agent_empty(sock: &Path) {
    let out = run("ssh-add", &["-l"], &[("SSH_AUTH_SOCK", s(sock))]);
    assert_eq!(
        stdout(&out),
        "The agent has no identities.\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(1));
}

/// Where the default socket directory may be. OpenSSH uses `$TMPDIR` too, but Debian installs its
/// ssh-agent setgid, and glibc drops `TMPDIR` from the environment of setgid programs.
fn default_parents(tmpdir: &Path) -> Vec<PathBuf> {
    if is_sshkeep() {
        vec![tmpdir.to_path_buf()]
    } else {
        vec![tmpdir.to_path_buf(), PathBuf::from("/tmp")]
    }
}

/// Checks a default socket path: `<parent>/ssh-XXXXXXXXXXXX/agent.<printer pid>`, directory 0700,
/// socket 0600.
#[track_caller]
fn check_default_socket(sock: &Path, tmpdir: &Path, printer_pid: u32) {
    let dir = sock.parent().unwrap();
    assert!(
        default_parents(tmpdir).contains(&dir.parent().unwrap().to_path_buf()),
        "socket {} not under {}",
        sock.display(),
        tmpdir.display()
    );
    let name = dir.file_name().unwrap().to_str().unwrap();
    let random = name
        .strip_prefix("ssh-")
        .unwrap_or_else(|| panic!("{name}"));
    assert_eq!(random.len(), 12, "{name}");
    assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()), "{name}");
    assert_eq!(
        sock.file_name().unwrap().to_str().unwrap(),
        format!("agent.{printer_pid}")
    );
    let dir_meta = fs::metadata(dir).unwrap();
    assert!(dir_meta.is_dir());
    assert_eq!(dir_meta.permissions().mode() & 0o7777, 0o700);
    let sock_meta = fs::symlink_metadata(sock).unwrap();
    assert!(sock_meta.file_type().is_socket());
    assert_eq!(sock_meta.permissions().mode() & 0o7777, 0o600);
}

/// `-s`: the exact Bourne snippet, a background agent on a fresh default socket, then `-k`.
#[test]
fn sh_snippet_default_socket_and_kill() {
    let tmpdir = TempDir::new();
    let r = agent_cmd(&["-s"], &[("TMPDIR", s(tmpdir.path()))]);
    r.assert_code(0);
    assert_eq!(r.stderr, "");
    let sock = sock_in_sh(&r.stdout);
    let pid = r.agent_pid().expect("no SSH_AGENT_PID line");
    assert_eq!(
        r.stdout,
        format!(
            "SSH_AUTH_SOCK={}; export SSH_AUTH_SOCK;\nSSH_AGENT_PID={pid}; export SSH_AGENT_PID;\n\
             echo Agent pid {pid};\n",
            sock.display()
        )
    );
    check_default_socket(&sock, tmpdir.path(), r.pid);
    // The printing process has exited; the agent lives on in the background.
    assert!(pid_alive(pid));
    assert_agent_empty(&sock);

    let k = agent_cmd(&["-k"], &[("SSH_AGENT_PID", &pid.to_string())]);
    k.assert_code(0);
    assert_eq!(
        k.stdout,
        format!("unset SSH_AUTH_SOCK;\nunset SSH_AGENT_PID;\necho Agent pid {pid} killed;\n")
    );
    assert_eq!(k.stderr, "");
    let dir = sock.parent().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)
            && !sock.exists()
            && !dir.exists()),
        "agent {pid}, its socket or its directory survived -k"
    );
}

/// `-c`: the exact csh snippet, and `-c -k` unsets in csh syntax.
#[test]
fn csh_snippet_and_kill() {
    let tmp = TempDir::new();
    let sock = tmp.join("a.sock");
    let r = agent_cmd(&["-c", "-a", s(&sock)], &[]);
    r.assert_code(0);
    let pid = r.agent_pid().expect("no SSH_AGENT_PID line");
    assert_eq!(
        r.stdout,
        format!(
            "setenv SSH_AUTH_SOCK {};\nsetenv SSH_AGENT_PID {pid};\necho Agent pid {pid};\n",
            sock.display()
        )
    );
    assert_agent_empty(&sock);
    let k = agent_cmd(&["-c", "-k"], &[("SSH_AGENT_PID", &pid.to_string())]);
    k.assert_code(0);
    assert_eq!(
        k.stdout,
        format!("unsetenv SSH_AUTH_SOCK;\nunsetenv SSH_AGENT_PID;\necho Agent pid {pid} killed;\n")
    );
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid) && !sock.exists()),
        "agent {pid} or its socket survived -k"
    );
}

/// Without `-c`/`-s`, a `SHELL` ending in `csh` selects csh syntax, for `-k` as well.
#[test]
fn shell_variable_selects_syntax() {
    let tmp = TempDir::new();
    let cases = [
        ("/bin/tcsh", &[][..], true),
        ("/usr/bin/csh", &[][..], true),
        ("/bin/bash", &[][..], false),
        ("/bin/tcsh", &["-s"][..], false),
        // OpenSSH: longer than 2 characters and ending in "csh", so "csh" itself counts.
        ("csh", &[][..], true),
    ];
    for (i, (shell, flags, csh)) in cases.into_iter().enumerate() {
        let sock = tmp.join(format!("{i}.sock"));
        let mut args = flags.to_vec();
        args.extend(["-a", s(&sock)]);
        let r = agent_cmd(&args, &[("SHELL", shell)]);
        r.assert_code(0);
        let pid = r.agent_pid().expect("no agent pid");
        let first = if csh {
            format!("setenv SSH_AUTH_SOCK {};\n", sock.display())
        } else {
            format!("SSH_AUTH_SOCK={}; export SSH_AUTH_SOCK;\n", sock.display())
        };
        assert!(
            r.stdout.starts_with(&first),
            "SHELL={shell} {flags:?}: {}",
            r.stdout
        );
        // -k is given without -c/-s here, so SHELL alone decides its syntax.
        let k = agent_cmd(
            &["-k"],
            &[("SHELL", shell), ("SSH_AGENT_PID", &pid.to_string())],
        );
        k.assert_code(0);
        let unset = if shell.ends_with("csh") {
            "unsetenv SSH_AUTH_SOCK;\n"
        } else {
            "unset SSH_AUTH_SOCK;\n"
        };
        assert!(k.stdout.starts_with(unset), "SHELL={shell}: {}", k.stdout);
    }
}

/// `-D -a path`: two lines, no `SSH_AGENT_PID`, and the pid is the agent's own.
#[test]
fn foreground_snippet() {
    let agent = Agent::start(&[]);
    let expected = format!(
        "SSH_AUTH_SOCK={}; export SSH_AUTH_SOCK;\necho Agent pid {};\n",
        agent.sock_str(),
        agent.pid()
    );
    assert!(
        wait_until(Duration::from_secs(5), || agent.stdout_text() == expected),
        "{:?}",
        agent.stdout_text()
    );

    let agent = Agent::start(&["-c"]);
    let expected = format!(
        "setenv SSH_AUTH_SOCK {};\necho Agent pid {};\n",
        agent.sock_str(),
        agent.pid()
    );
    assert!(
        wait_until(Duration::from_secs(5), || agent.stdout_text() == expected),
        "{:?}",
        agent.stdout_text()
    );
}

/// SIGTERM: the foreground agent removes its socket and exits 2.
#[test]
fn sigterm_removes_socket() {
    let mut agent = Agent::start(&[]);
    let sock = agent.sock().to_path_buf();
    assert!(sock.exists());
    let status = agent.stop();
    assert_eq!(status.code(), Some(2), "{:?}", status);
    assert!(!sock.exists());
}

/// `-a` refuses a path that exists, leaving it untouched: a file, or a live agent's socket.
#[test]
fn bind_address_exists() {
    let tmp = TempDir::new();
    let file = tmp.join("exists");
    fs::write(&file, "keep me\n").unwrap();
    let r = agent_cmd(&["-s", "-a", s(&file)], &[]);
    r.assert_code(1);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains(s(&file)), "{}", r.stderr);
    if is_sshkeep() {
        // One line, OpenSSH's wording behind one program prefix.
        assert_eq!(
            r.stderr,
            format!(
                "sshkeep: unix_listener: cannot bind to path {}: Address already in use\n",
                s(&file)
            )
        );
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "keep me\n");

    let agent = Agent::start(&[]);
    let r = agent_cmd(&["-s", "-a", agent.sock_str()], &[]);
    r.assert_code(1);
    assert_eq!(r.stdout, "");
    assert_agent_empty(agent.sock());
}

/// `-k` without `SSH_AGENT_PID`.
#[test]
fn kill_without_pid() {
    let r = agent_cmd(&["-k"], &[]);
    r.assert_code(1);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr, "SSH_AGENT_PID not set, cannot kill agent\n");
}

/// `-k` with a `SSH_AGENT_PID` that is not a usable pid (`strtonum(s, 2, INT_MAX)` wording).
#[test]
fn kill_bad_pid() {
    for (value, why) in [
        ("1x", "invalid"),
        ("", "invalid"),
        ("1", "too small"),
        ("0", "too small"),
        ("-5", "too small"),
        ("2147483648", "too large"),
    ] {
        let r = agent_cmd(&["-k"], &[("SSH_AGENT_PID", value)]);
        r.assert_code(1);
        assert_eq!(r.stdout, "");
        assert_eq!(
            r.stderr,
            format!("SSH_AGENT_PID=\"{value}\", which is not a good PID: {why}\n")
        );
    }
}

/// `-k` for a pid that does not exist fails with exit 1 and prints nothing on stdout.
#[test]
fn kill_missing_process() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let r = agent_cmd(&["-k"], &[("SSH_AGENT_PID", &pid.to_string())]);
    r.assert_code(1);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("No such process"), "{}", r.stderr);
}

/// Flags that cannot go together print the usage, exit 1, and print nothing on stdout.
#[test]
fn conflicting_flags_print_usage() {
    for args in [
        &["-c", "-s"][..],
        &["-d", "-D"],
        &["-s", "true"],
        &["-c", "true"],
        &["-D", "true"],
        &["-k", "true"],
        &["-Z"],
    ] {
        let r = agent_cmd(args, &[]);
        r.assert_code(1);
        assert_eq!(r.stdout, "", "{args:?}");
        assert!(r.stderr.contains("usage:"), "{args:?}: {}", r.stderr);
    }
}

/// A bad `-t` is reported, then the usage; exit 1.
#[test]
fn invalid_lifetime() {
    for bad in ["5x", "abc", "-1"] {
        let r = agent_cmd(&["-t", bad], &[]);
        r.assert_code(1);
        assert_eq!(r.stdout, "");
        assert!(r.stderr.starts_with("Invalid lifetime\n"), "{}", r.stderr);
        assert!(r.stderr.contains("usage:"), "{}", r.stderr);
    }
}

/// `convtime` lifetimes such as `1h30m` are accepted.
#[test]
fn valid_lifetimes() {
    for good in ["90", "10m", "1h30m", "1w", "0"] {
        let agent = Agent::start(&["-t", good]);
        assert_agent_empty(agent.sock());
    }
}

/// An unknown `-E` hash is fatal (exit 255); a known one is accepted.
#[test]
fn fingerprint_hash() {
    let r = agent_cmd(&["-E", "foo"], &[]);
    r.assert_code(255);
    assert_eq!(r.stdout, "");
    // OpenSSH's fatal() ends the line with "\r\n".
    assert_eq!(
        r.stderr.trim_end_matches(['\r', '\n']),
        "Invalid hash algorithm \"foo\""
    );
    for good in ["md5", "sha256"] {
        let agent = Agent::start(&["-E", good]);
        assert_agent_empty(agent.sock());
    }
}

/// Command mode: the command sees the socket and pid, its exit status is the invocation's, and the
/// agent goes away (with its socket directory) once the command has exited.
#[test]
fn command_mode() {
    let tmpdir = TempDir::new();
    let script = "echo $SSH_AUTH_SOCK; echo $SSH_AGENT_PID; ssh-add -l; echo rc=$?; exit 3";
    let r = agent_cmd(&["sh", "-c", script], &[("TMPDIR", s(tmpdir.path()))]);
    r.assert_code(3);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    let sock = PathBuf::from(lines[0]);
    let pid: u32 = lines[1].parse().unwrap();
    assert_eq!(&lines[2..], ["The agent has no identities.", "rc=1"]);
    let dir = sock.parent().unwrap();
    assert!(default_parents(tmpdir.path()).contains(&dir.parent().unwrap().to_path_buf()));
    // sshkeep notices at once; OpenSSH checks its parent every 10 s.
    let deadline = Duration::from_secs(if is_sshkeep() { 2 } else { 15 });
    let _guard = KillOnDrop(pid);
    assert!(
        wait_until(deadline, || !pid_alive(pid) && !dir.exists()),
        "agent {pid} or {} still there after the command exited",
        dir.display()
    );
}

/// Command mode with a command that cannot be run: exit 1, and the agent does not linger.
#[test]
fn command_mode_exec_failure() {
    let tmpdir = TempDir::new();
    let r = agent_cmd(&["/nonexistent/command"], &[("TMPDIR", s(tmpdir.path()))]);
    r.assert_code(1);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("/nonexistent/command"), "{}", r.stderr);
    if is_sshkeep() {
        assert!(
            wait_until(Duration::from_secs(2), || fs::read_dir(tmpdir.path())
                .unwrap()
                .next()
                .is_none()),
            "socket directory left in {}",
            tmpdir.path().display()
        );
    }
}

/// `-V` prints a version naming sshkeep (OpenSSH 9.2 has no `-V`).
#[test]
fn version() {
    if !sshkeep_only() {
        return;
    }
    let r = agent_cmd(&["-V"], &[]);
    r.assert_code(0);
    assert!(
        r.stdout.contains("sshkeep") || r.stderr.contains("sshkeep"),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
}

/// Evaluates a Bourne snippet in `sh` and returns the resulting `SSH_AUTH_SOCK`.
fn eval_sock(snippet: &str) -> String {
    let out = run(
        "sh",
        &[
            "-c",
            "eval \"$1\" >/dev/null; printf %s \"$SSH_AUTH_SOCK\"",
            "sh",
            snippet,
        ],
        &[],
    );
    stdout(expect_ok(&out))
}

/// Starts an agent with `-s -a <tmp>/<dir_name>/s`: the snippet's first line is
/// `first_line(sock)`, `eval` gives the path back and the agent answers there.
fn check_escaped_snippet(dir_name: &str, first_line: impl Fn(&str) -> String) {
    let tmp = TempDir::new();
    let dir = tmp.join(dir_name);
    fs::create_dir(&dir).unwrap();
    let sock = dir.join("s");
    let r = agent_cmd(&["-s", "-a", s(&sock)], &[]);
    r.assert_code(0);
    assert_eq!(r.stdout.lines().next().unwrap(), first_line(s(&sock)));
    assert_eq!(eval_sock(&r.stdout), s(&sock));
    assert_agent_empty(&sock);
}

/// Socket paths are shell-escaped in the snippet (OpenSSH 10.3+; 9.2 prints them raw): a path with a
/// space is wrapped in double quotes, and `eval` gives the path back.
#[test]
fn snippet_escapes_space() {
    if !sshkeep_only() {
        return;
    }
    check_escaped_snippet("dir with space", |sock| {
        format!("SSH_AUTH_SOCK=\"{sock}\"; export SSH_AUTH_SOCK;")
    });
}

/// A single quote in the path is backslash-escaped (no double quotes without white space).
#[test]
fn snippet_escapes_quote() {
    if !sshkeep_only() {
        return;
    }
    check_escaped_snippet("it's", |sock| {
        let escaped = sock.replace('\'', "\\'");
        format!("SSH_AUTH_SOCK={escaped}; export SSH_AUTH_SOCK;")
    });
}
