//! Signals and process life: exit codes and cleanup on SIGTERM/SIGHUP/SIGINT, SIGUSR1, command
//! mode, eval mode outliving its starter, `--exit-with`, systemd socket activation, stale `-a` paths.
//!
//! Prove against OpenSSH with `AGENT_UNDER_TEST=/usr/bin/ssh-agent cargo test --test lifecycle`.

mod common;

use std::fs;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use common::*;

/// How long an agent may take to exit after the process it follows is gone.
const EXIT_DEADLINE: Duration = Duration::from_secs(2);

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).unwrap();
}

/// An agent that is nobody's child here (daemon, command or eval mode), stopped on drop if it is
/// still alive: SIGTERM so that it removes its socket directory, SIGKILL if that is not enough.
struct Daemon {
    pid: u32,
    sock: PathBuf,
}

impl Daemon {
    /// The socket's directory (the default-socket `ssh-XXXXXXXXXXXX` one).
    fn sock_dir(&self) -> &Path {
        self.sock.parent().unwrap()
    }

    fn ssh_add(&self, args: &[&str]) -> Output {
        run(
            "ssh-add",
            args,
            &[("SSH_AUTH_SOCK", self.sock.to_str().unwrap())],
        )
    }

    /// Whether the agent answers `ssh-add -l` (exit 0 with keys, 1 with none; 2 = no agent).
    fn answers(&self) -> bool {
        let out = self.ssh_add(&["-l"]);
        match out.status.code() {
            Some(0) => true,
            Some(1) => stdout(&out) == "The agent has no identities.\n",
            _ => false,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if pid_alive(self.pid) {
            let pid = Pid::from_raw(self.pid as i32);
            let _ = kill(pid, Signal::SIGTERM);
            if !wait_until(Duration::from_secs(2), || !pid_alive(self.pid)) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }
}

/// Parses a pid a shell printed; panics with the command's whole output when it is not one.
#[track_caller]
fn parse_pid(word: &str, out: &Output) -> u32 {
    word.parse().unwrap_or_else(|_| {
        panic!(
            "no pid in {word:?}\nstdout: {}\nstderr: {}",
            stdout(out),
            stderr(out)
        )
    })
}

/// The value of `NAME=value;` in Bourne-shell agent output.
fn snippet_var(out: &str, name: &str) -> Option<String> {
    out.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('=')?;
        Some(rest.split(';').next()?.to_string())
    })
}

/// Checks that a default socket is `$TMPDIR/ssh-XXXXXXXXXXXX/agent.<pid>`. Debian's OpenSSH agent
/// is setgid, so the C library drops `TMPDIR` from its environment and it always uses `/tmp`.
#[track_caller]
fn assert_default_socket(tmp: &TempDir, sock: &Path) {
    let dir = sock.parent().unwrap();
    let dir_name = dir.file_name().unwrap().to_str().unwrap();
    assert!(
        dir_name.starts_with("ssh-") && dir_name.len() == 16,
        "socket {sock:?}"
    );
    let file_name = sock.file_name().unwrap().to_str().unwrap();
    assert!(file_name.starts_with("agent."), "socket {sock:?}");
    if is_sshkeep() {
        assert_eq!(
            dir.parent(),
            Some(tmp.path()),
            "socket {sock:?} not under TMPDIR"
        );
    }
}

/// Starts `<bin> -s <args>` with its default socket under `tmp`; returns the running daemon.
fn start_daemon(tmp: &TempDir, args: &[&str]) -> Daemon {
    let mut all = vec!["-s"];
    all.extend_from_slice(args);
    let out = run(
        agent_bin(),
        &all,
        &[("TMPDIR", tmp.path().to_str().unwrap())],
    );
    expect_ok(&out);
    let text = stdout(&out);
    let pid = snippet_var(&text, "SSH_AGENT_PID").expect("no SSH_AGENT_PID");
    let sock = snippet_var(&text, "SSH_AUTH_SOCK").expect("no SSH_AUTH_SOCK");
    let daemon = Daemon {
        pid: parse_pid(&pid, &out),
        sock: PathBuf::from(sock),
    };
    assert_default_socket(tmp, &daemon.sock);
    daemon
}

/// The environment for [`sh`]: the agent under test as `$AGENT`, default sockets under `tmp`.
fn sh_env(tmp: &TempDir) -> Vec<(&str, String)> {
    vec![
        ("AGENT", agent_bin().to_str().unwrap().to_string()),
        ("TMPDIR", tmp.path().to_str().unwrap().to_string()),
    ]
}

/// Runs `sh -c script` with `$AGENT` and `$TMPDIR` set.
fn sh(tmp: &TempDir, script: &str) -> Output {
    let env = sh_env(tmp);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run("sh", &["-c", script], &env)
}

/// Whether any default-socket directory (`ssh-*`) is left in `dir`.
fn socket_dirs(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ssh-"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Signals

/// In `-D` mode the test is the agent's parent: `sig` makes it exit 2 and remove its socket.
fn foreground_signal_exits_2(sig: Signal) {
    let mut agent = Agent::start(&[]);
    let key = keygen(agent.dir(), "ed25519");
    expect_ok(&ssh_add(&agent, &[key.to_str().unwrap()]));
    signal(agent.pid(), sig);
    assert!(
        wait_until(START_DEADLINE, || !agent.is_running()),
        "agent still running after {sig}"
    );
    assert_eq!(agent.exit_status().unwrap().code(), Some(2), "after {sig}");
    assert!(!agent.sock().exists(), "socket left behind after {sig}");
}

#[test]
fn sigterm_in_foreground_exits_2_and_removes_socket() {
    foreground_signal_exits_2(Signal::SIGTERM);
}

#[test]
fn sighup_in_foreground_exits_2_and_removes_socket() {
    foreground_signal_exits_2(Signal::SIGHUP);
}

#[test]
fn sigint_in_foreground_exits_2_and_removes_socket() {
    foreground_signal_exits_2(Signal::SIGINT);
}

/// A daemonised agent removes its socket and the directory it made on `sig`.
fn daemon_signal_cleans_up(sig: Signal) {
    let tmp = TempDir::new();
    let daemon = start_daemon(&tmp, &[]);
    assert!(daemon.answers());
    signal(daemon.pid, sig);
    assert!(
        wait_until(START_DEADLINE, || !pid_alive(daemon.pid)),
        "daemon still running after {sig}"
    );
    assert!(!daemon.sock.exists(), "socket left behind after {sig}");
    assert!(
        !daemon.sock_dir().exists(),
        "socket directory left behind after {sig}"
    );
}

#[test]
fn sigterm_in_daemon_mode_removes_socket_and_directory() {
    daemon_signal_cleans_up(Signal::SIGTERM);
}

#[test]
fn sighup_in_daemon_mode_removes_socket_and_directory() {
    daemon_signal_cleans_up(Signal::SIGHUP);
}

#[test]
fn sigint_is_ignored_in_daemon_mode() {
    let tmp = TempDir::new();
    let daemon = start_daemon(&tmp, &[]);
    assert!(daemon.answers());
    signal(daemon.pid, Signal::SIGINT);
    // Two round trips: an agent that reacts to the signal from its loop has seen it by then.
    assert!(daemon.answers(), "no answer after SIGINT");
    assert!(daemon.answers(), "no answer after SIGINT");
    assert!(pid_alive(daemon.pid));
    assert!(daemon.sock.exists());
}

/// OpenSSH 9.2 has no SIGUSR1 handler (it dies of it); sshkeep (like OpenSSH 10.0) drops every key.
#[test]
fn sigusr1_removes_all_keys_and_agent_carries_on() {
    if !sshkeep_only() {
        return;
    }
    let mut agent = Agent::start(&[]);
    let k1 = keygen(agent.dir(), "ed25519");
    let k2 = keygen(agent.dir(), "ecdsa-256");
    expect_ok(&ssh_add(
        &agent,
        &[k1.to_str().unwrap(), k2.to_str().unwrap()],
    ));
    signal(agent.pid(), Signal::SIGUSR1);
    let mut last = String::new();
    let emptied = wait_until(START_DEADLINE, || {
        let out = ssh_add(&agent, &["-l"]);
        last = stdout(&out);
        (out.status.code() == Some(1) && last == "The agent has no identities.\n")
            || !agent.is_running()
    });
    assert!(
        agent.is_running(),
        "SIGUSR1 ended the agent: {:?}",
        agent.exit_status()
    );
    assert!(emptied, "after SIGUSR1 ssh-add -l says: {last}");
    // Still a working agent.
    expect_ok(&ssh_add(&agent, &[k1.to_str().unwrap()]));
    assert_eq!(
        stdout(expect_ok(&ssh_add(&agent, &["-l"]))),
        format!("{}\n", fingerprint(&pub_path(&k1)))
    );
}

// ---------------------------------------------------------------------------------------------
// Command mode

/// Runs `<bin> sh -c '...; exit 3'` and returns its output and the agent it started.
fn command_mode(tmp: &TempDir) -> (Output, Daemon) {
    let script = "echo $SSH_AGENT_PID; echo $SSH_AUTH_SOCK; \
                  ssh-add -l >/dev/null 2>&1; echo rc=$?; exit 3";
    let out = run(
        agent_bin(),
        &["sh", "-c", script],
        &[("TMPDIR", tmp.path().to_str().unwrap())],
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "command printed {text:?}; stderr {}",
        stderr(&out)
    );
    let daemon = Daemon {
        pid: parse_pid(lines[0], &out),
        sock: PathBuf::from(lines[1]),
    };
    // ssh-add reached the agent (1 = no identities; 2 would be no agent).
    assert_eq!(lines[2], "rc=1", "ssh-add -l inside the command");
    (out, daemon)
}

#[test]
fn command_mode_exits_with_the_command_status() {
    let tmp = TempDir::new();
    let (out, daemon) = command_mode(&tmp);
    assert_eq!(out.status.code(), Some(3));
    assert_default_socket(&tmp, &daemon.sock);
    // OpenSSH's agent notices within 10 s; `daemon` is killed on drop either way.
}

/// OpenSSH checks for its parent every 10 s; sshkeep exits within 1 s of the command.
#[test]
fn command_mode_agent_exits_soon_after_the_command() {
    if !sshkeep_only() {
        return;
    }
    let tmp = TempDir::new();
    let (out, daemon) = command_mode(&tmp);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        wait_until(EXIT_DEADLINE, || !pid_alive(daemon.pid)),
        "agent {} still running 2 s after its command exited",
        daemon.pid
    );
    assert!(!daemon.sock.exists(), "socket left behind");
    assert!(!daemon.sock_dir().exists(), "socket directory left behind");
    assert_eq!(socket_dirs(tmp.path()), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Eval mode

/// `sh -c '<start the agent>; echo pid; echo sock'` → the shell is gone, the agent lives on, and
/// `<bin> -k` stops it.
fn eval_agent_outlives_shell(start: &str) {
    let tmp = TempDir::new();
    let out = sh(
        &tmp,
        &format!("{start}\necho $SSH_AGENT_PID\necho $SSH_AUTH_SOCK"),
    );
    expect_ok(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() >= 2,
        "shell printed {text:?}; stderr {}",
        stderr(&out)
    );
    let daemon = Daemon {
        pid: parse_pid(lines[lines.len() - 2], &out),
        sock: PathBuf::from(lines[lines.len() - 1]),
    };
    assert_default_socket(&tmp, &daemon.sock);

    // The shell has exited. An agent that follows its parent would be gone within a second.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert!(
            pid_alive(daemon.pid),
            "agent exited with the shell that started it"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        daemon.answers(),
        "agent does not answer after its shell exited"
    );

    let pid = daemon.pid.to_string();
    let out = run(agent_bin(), &["-k"], &[("SSH_AGENT_PID", &pid)]);
    expect_ok(&out);
    assert_eq!(
        stdout(&out),
        format!("unset SSH_AUTH_SOCK;\nunset SSH_AGENT_PID;\necho Agent pid {pid} killed;\n")
    );
    assert!(
        wait_until(START_DEADLINE, || !pid_alive(daemon.pid)),
        "-k did not stop the agent"
    );
    assert!(!daemon.sock.exists(), "socket left behind");
    assert!(!daemon.sock_dir().exists(), "socket directory left behind");
}

#[test]
fn eval_mode_agent_outlives_the_shell_that_started_it() {
    eval_agent_outlives_shell(r#"eval "$("$AGENT" -s)""#);
}

#[test]
fn eval_mode_agent_outlives_a_backquote_pipeline() {
    eval_agent_outlives_shell(r#"eval `"$AGENT" -s | sed s/x/x/`"#);
}

// ---------------------------------------------------------------------------------------------
// --exit-with

#[test]
fn exit_with_shell_pid_ends_with_the_shell() {
    if !sshkeep_only() {
        return;
    }
    let tmp = TempDir::new();
    let out = sh(
        &tmp,
        r#"eval "$("$AGENT" -s --exit-with $$)" >/dev/null
echo $SSH_AGENT_PID
echo $SSH_AUTH_SOCK
ssh-add -l >/dev/null 2>&1; echo rc=$?
sleep 0.5"#,
    );
    expect_ok(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "shell printed {text:?}; stderr {}",
        stderr(&out)
    );
    let daemon = Daemon {
        pid: parse_pid(lines[0], &out),
        sock: PathBuf::from(lines[1]),
    };
    assert_eq!(
        lines[2], "rc=1",
        "agent did not answer while its shell lived"
    );
    assert!(
        wait_until(EXIT_DEADLINE, || !pid_alive(daemon.pid)),
        "agent still running 2 s after the shell exited"
    );
    assert!(!daemon.sock.exists(), "socket left behind");
    assert!(!daemon.sock_dir().exists(), "socket directory left behind");
}

#[test]
fn exit_with_equals_form_follows_any_process() {
    if !sshkeep_only() {
        return;
    }
    let mut sleeper = Reaped(Command::new("sleep").arg("30").spawn().unwrap());
    let mut agent = Agent::start(&[&format!("--exit-with={}", sleeper.0.id())]);
    let out = ssh_add(&agent, &["-l"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    sleeper.0.kill().unwrap();
    sleeper.0.wait().unwrap();
    assert!(
        wait_until(EXIT_DEADLINE, || !agent.is_running()),
        "agent still running 2 s after the process it follows exited"
    );
    assert!(!agent.sock().exists(), "socket left behind");
}

#[test]
fn exit_with_missing_pid_fails_at_start() {
    if !sshkeep_only() {
        return;
    }
    let missing = 999_999;
    assert!(
        kill(Pid::from_raw(missing), None).is_err(),
        "pid {missing} exists"
    );
    let tmp = TempDir::new();
    let out = run(
        agent_bin(),
        &["-s", "--exit-with", &missing.to_string()],
        &[("TMPDIR", tmp.path().to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.contains(&missing.to_string()), "stderr: {err}");
    assert_eq!(socket_dirs(tmp.path()), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// systemd socket activation, without systemd

/// The agent under `-D` takes a listening socket as fd 3 (`LISTEN_FDS=1`, `LISTEN_PID` its own pid),
/// serves it, and on SIGTERM exits 0 leaving the socket file to its owner.
#[test]
fn socket_activation_serves_the_inherited_listener() {
    if !sshkeep_only() {
        return;
    }
    let tmp = TempDir::new();
    let path = tmp.join("activated.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut agent = Agent::launch(Launch {
        listener: Some(&listener),
        ..Launch::default()
    });
    drop(listener);
    let sock = path.to_str().unwrap();
    let key = keygen(tmp.path(), "ed25519");
    expect_ok(&run(
        "ssh-add",
        &[key.to_str().unwrap()],
        &[("SSH_AUTH_SOCK", sock)],
    ));
    let out = run("ssh-add", &["-l"], &[("SSH_AUTH_SOCK", sock)]);
    assert_eq!(
        stdout(expect_ok(&out)),
        format!("{}\n", fingerprint(&pub_path(&key)))
    );

    let status = agent.stop();
    assert_eq!(status.code(), Some(0), "stderr: {}", agent.stderr_text());
    assert!(
        path.exists(),
        "the agent removed a socket it did not create"
    );
}

/// Under socket activation the inherited listener (fd 3) is not passed on to askpass
/// children: a confirmation prompt's askpass holds no socket at all, so it cannot accept the
/// agent's clients.
#[test]
fn socket_activation_listener_is_not_inherited_by_askpass() {
    if !sshkeep_only() {
        return;
    }
    let tmp = TempDir::new();
    let path = tmp.join("activated.sock");
    let fds = tmp.join("askpass-fds");
    let listener = UnixListener::bind(&path).unwrap();
    // The askpass records where each of its descriptors points, then allows.
    let askpass = tmp.join("askpass");
    write_executable(
        &askpass,
        &format!(
            "#!/bin/sh\nfor f in /proc/$$/fd/*; do echo \"${{f##*/}} $(readlink \"$f\")\"; done > '{}'\nexit 0\n",
            fds.display()
        ),
    );

    let agent = Agent::launch(Launch {
        env: &[
            ("SSH_ASKPASS", askpass.to_str().unwrap()),
            ("SSH_ASKPASS_REQUIRE", "force"),
        ],
        listener: Some(&listener),
        ..Launch::default()
    });
    drop(listener);

    let key = keygen(tmp.path(), "ed25519");
    let sock = path.to_str().unwrap();
    expect_ok(&run(
        "ssh-add",
        &["-c", key.to_str().unwrap()],
        &[("SSH_AUTH_SOCK", sock)],
    ));
    let mut sign = string(&pub_blob(&pub_path(&key)));
    sign.extend(string(b"data"));
    sign.extend(u32(0));
    let mut c = RawClient::connect(&path);
    c.set_timeout(Duration::from_secs(30));
    let reply = c.request(SSH_AGENTC_SIGN_REQUEST, &sign);
    assert_eq!(
        reply[0],
        SSH_AGENT_SIGN_RESPONSE,
        "stderr: {}",
        agent.stderr_text()
    );

    let seen = fs::read_to_string(&fds).expect("askpass did not run");
    assert!(seen.lines().count() >= 3, "askpass fds: {seen}");
    let sockets: Vec<&str> = seen.lines().filter(|l| l.contains("socket:")).collect();
    assert!(
        sockets.is_empty(),
        "askpass inherited sockets {sockets:?}; all its fds:\n{seen}"
    );
}

// ---------------------------------------------------------------------------------------------
// Stale -a path

#[test]
fn existing_bind_path_is_refused_and_left_alone() {
    let tmp = TempDir::new();
    let path = tmp.join("stale.sock");
    fs::write(&path, "not a socket\n").unwrap();
    let out = run(agent_bin(), &["-D", "-a", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert_eq!(fs::read_to_string(&path).unwrap(), "not a socket\n");
}
