//! One agent per user: `--reuse` (start, share, csh output, `-k`, stale sockets, paths left
//! alone, concurrent starts, the default paths, socket activation) and `--status` (every
//! outcome, OpenSSH's agent included), and their usage errors.
//!
//! These are sshkeep features: every test starts with `sshkeep_only()`.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use common::*;

/// `path` with `suffix` appended (`agent.sock` → `agent.sock.pid`).
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs the agent binary with `args` and `env` (see [`run`] for the rest of the environment).
fn sshkeep(args: &[&str], env: &[(&str, &str)]) -> Output {
    run(agent_bin(), args, env)
}

/// The value of `NAME=value;` (Bourne) or `setenv NAME value;` (csh) in a snippet.
fn var(snippet: &str, name: &str) -> Option<String> {
    snippet.lines().find_map(|line| {
        let rest = line
            .strip_prefix(&format!("{name}="))
            .or_else(|| line.strip_prefix(&format!("setenv {name} ")))?;
        Some(rest.split(';').next()?.to_string())
    })
}

/// The agent pid a successful `--reuse` printed (with a guard that stops it when the test ends).
#[track_caller]
fn started(out: &Output) -> (u32, KillOnDrop) {
    expect_ok(out);
    let text = stdout(out);
    let pid: u32 = var(&text, "SSH_AGENT_PID")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no SSH_AGENT_PID in {text:?}; stderr: {}", stderr(out)));
    assert!(pid_alive(pid), "agent {pid} is not running");
    (pid, KillOnDrop(pid))
}

/// The Bourne snippet for an agent at `sock` with pid `pid`, byte for byte.
fn bourne(sock: &Path, pid: u32) -> String {
    format!(
        "SSH_AUTH_SOCK={}; export SSH_AUTH_SOCK;\nSSH_AGENT_PID={pid}; export SSH_AGENT_PID;\n\
         echo Agent pid {pid};\n",
        s(sock)
    )
}

/// The processes whose command line names `sock` (an agent started with `-a sock`, or a starter
/// still running).
fn processes_naming(sock: &Path) -> Vec<u32> {
    let want = sock.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|&b| b == 0).any(|arg| arg == want) && pid_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// The listening sockets bound at `sock`, from /proc/net/unix.
fn listeners_at(sock: &Path) -> usize {
    let table = fs::read_to_string("/proc/net/unix").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(3).is_some_and(|f| f.ends_with("10000"))
                && l.ends_with(&format!(" {}", s(sock)))
        })
        .count()
}

/// For a test of `--reuse`: a fresh directory and the path `agent.sock` in it; `None` when
/// another agent is under test (these are sshkeep features).
fn fresh_socket() -> Option<(TempDir, PathBuf)> {
    if !sshkeep_only() {
        return None;
    }
    let dir = TempDir::new();
    let sock = dir.join("agent.sock");
    Some((dir, sock))
}

/// `sshkeep -s --reuse -a sock`.
fn reuse_at(sock: &Path) -> Output {
    sshkeep(&["-s", "--reuse", "-a", s(sock)], &[])
}

/// Exactly one agent, `pid`, runs at `sock`, and one socket listens there.
#[track_caller]
fn assert_one_agent(sock: &Path, pid: u32) {
    assert_eq!(processes_naming(sock), vec![pid], "more than one agent");
    assert_eq!(listeners_at(sock), 1);
}

/// `ssh-add args` against the socket `sock`.
fn ssh_add_at(sock: &Path, args: &[&str]) -> Output {
    run("ssh-add", args, &[("SSH_AUTH_SOCK", s(sock))])
}

/// Runs `sh -c script` with `$AGENT` the binary under test and `env`.
fn sh(script: &str, env: &[(&str, &str)]) -> Output {
    let bin = agent_bin();
    let mut all = vec![("AGENT", bin.to_str().unwrap())];
    all.extend_from_slice(env);
    run("sh", &["-c", script], &all)
}

/// Whether this test may do what needs root; a skip under CI fails.
fn need_root(what: &str) -> bool {
    nix::unistd::geteuid().is_root() || !skip(&format!("{what} needs root"))
}

// ---------------------------------------------------------------------------------------------
// Starting and sharing

/// The first `--reuse` starts an agent and prints it as `-s -a` would; the next ones print the
/// same agent without starting anything, and a key added in one "shell" is listed in the next.
#[test]
fn reuse_starts_an_agent_and_every_shell_shares_it() {
    let Some((dir, sock)) = fresh_socket() else {
        return;
    };
    let first = reuse_at(&sock);
    let (pid, _agent) = started(&first);
    assert_eq!(stdout(&first), bourne(&sock, pid));
    assert_eq!(stderr(&first), "");
    assert!(fs::symlink_metadata(&sock).unwrap().file_type().is_socket());

    let again = reuse_at(&sock);
    expect_ok(&again);
    assert_eq!(stdout(&again), stdout(&first));
    assert_eq!(stderr(&again), "", "the pid must be known for certain");
    assert_eq!(
        processes_naming(&sock),
        vec![pid],
        "a second agent was started"
    );

    let key = keygen(dir.path(), "ed25519");
    let env = [("SOCK", s(&sock)), ("KEY", s(&key))];
    expect_ok(&sh(
        r#"eval "$("$AGENT" -s --reuse -a "$SOCK")" >/dev/null && ssh-add -q "$KEY""#,
        &env,
    ));
    let second = sh(
        r#"eval "$("$AGENT" -s --reuse -a "$SOCK")" >/dev/null && echo "pid=$SSH_AGENT_PID" && ssh-add -l"#,
        &env,
    );
    assert_eq!(
        stdout(expect_ok(&second)),
        format!("pid={pid}\n{}\n", fingerprint(&pub_path(&key)))
    );
    assert_one_agent(&sock, pid);
}

/// A relative `-a` names the same socket from any directory, printed as an absolute path.
#[test]
fn relative_bind_address_is_made_absolute() {
    let Some((dir, sock)) = fresh_socket() else {
        return;
    };
    let out = sh(
        r#"cd "$DIR" && "$AGENT" -s --reuse -a agent.sock"#,
        &[("DIR", s(dir.path()))],
    );
    let (pid, _agent) = started(&out);
    assert_eq!(stdout(&out), bourne(&sock, pid));
    let from_elsewhere = reuse_at(&sock);
    assert_eq!(stdout(expect_ok(&from_elsewhere)), bourne(&sock, pid));
}

/// `-c`, or a csh `$SHELL`, gives the csh lines, for a new agent and for a found one.
#[test]
fn reuse_prints_csh_lines() {
    let Some((_dir, sock)) = fresh_socket() else {
        return;
    };
    let first = sshkeep(&["-c", "--reuse", "-a", s(&sock)], &[]);
    let (pid, _agent) = started(&first);
    let csh = format!(
        "setenv SSH_AUTH_SOCK {};\nsetenv SSH_AGENT_PID {pid};\necho Agent pid {pid};\n",
        s(&sock)
    );
    assert_eq!(stdout(&first), csh);
    let found = sshkeep(&["-c", "--reuse", "-a", s(&sock)], &[]);
    assert_eq!(stdout(expect_ok(&found)), csh);
    let by_shell = sshkeep(&["--reuse", "-a", s(&sock)], &[("SHELL", "/bin/tcsh")]);
    assert_eq!(stdout(expect_ok(&by_shell)), csh);
    let bourne_anyway = sshkeep(
        &["-s", "--reuse", "-a", s(&sock)],
        &[("SHELL", "/bin/tcsh")],
    );
    assert_eq!(stdout(expect_ok(&bourne_anyway)), bourne(&sock, pid));
}

/// Options apply to the agent `--reuse` starts: here `-t 1`, so a key added without a lifetime
/// is gone soon after.
#[test]
fn options_apply_to_the_agent_it_starts() {
    let Some((dir, sock)) = fresh_socket() else {
        return;
    };
    let (_pid, _agent) = started(&sshkeep(&["-s", "--reuse", "-t", "1", "-a", s(&sock)], &[]));
    let key = keygen(dir.path(), "ed25519");
    expect_ok(&ssh_add_at(&sock, &[s(&key)]));
    assert!(
        wait_until(Duration::from_secs(10), || ssh_add_at(&sock, &["-l"])
            .status
            .code()
            == Some(1)),
        "the key outlived the -t 1 of the agent --reuse started"
    );
}

/// `sshkeep -k` with the printed pid stops the shared agent, which removes its socket, lock
/// file and pid file (and leaves the directory).
#[test]
fn kill_stops_a_shared_agent_and_it_removes_its_files() {
    let Some((dir, sock)) = fresh_socket() else {
        return;
    };
    let (pid, _agent) = started(&reuse_at(&sock));
    assert!(beside(&sock, ".pid").exists());
    assert!(beside(&sock, ".lock").exists());
    let out = sh(
        r#"eval "$("$AGENT" -s --reuse -a "$SOCK")" >/dev/null && "$AGENT" -k"#,
        &[("SOCK", s(&sock))],
    );
    assert_eq!(
        stdout(expect_ok(&out)),
        format!("unset SSH_AUTH_SOCK;\nunset SSH_AGENT_PID;\necho Agent pid {pid} killed;\n")
    );
    assert!(
        wait_until(START_DEADLINE, || !pid_alive(pid)),
        "agent {pid} survived -k"
    );
    for left in [sock.clone(), beside(&sock, ".pid"), beside(&sock, ".lock")] {
        assert!(!left.exists(), "{} left behind", left.display());
    }
    assert!(dir.path().is_dir());
}

/// A socket left by an agent killed with SIGKILL is stale: `--reuse` replaces it with a new
/// agent at the same path.
#[test]
fn stale_socket_after_kill_9_is_replaced() {
    let Some((_dir, sock)) = fresh_socket() else {
        return;
    };
    let (old, _old_agent) = started(&reuse_at(&sock));
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
    assert!(wait_until(START_DEADLINE, || !pid_alive(old)));
    assert!(fs::symlink_metadata(&sock).unwrap().file_type().is_socket());

    let out = reuse_at(&sock);
    let (new, _agent) = started(&out);
    assert_ne!(new, old);
    assert_eq!(stdout(&out), bourne(&sock, new));
    let list = ssh_add_at(&sock, &["-l"]);
    assert_eq!(stdout(&list), "The agent has no identities.\n");
    let again = reuse_at(&sock);
    assert_eq!(stdout(expect_ok(&again)), bourne(&sock, new));
    assert_eq!(stderr(&again), "");
}

/// `--reuse` fails with one line naming the path, and touches nothing, when the path is not a
/// socket or its directory is unsafe.
#[test]
fn what_is_not_a_socket_of_ours_is_left_alone() {
    if !sshkeep_only() {
        return;
    }
    let dir = TempDir::new();
    #[track_caller]
    fn refused(sock: &Path, dir: &Path) {
        let before: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        let out = sshkeep(&["-s", "--reuse", "-a", s(sock)], &[]);
        assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
        assert_eq!(stdout(&out), "");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "stderr: {err}");
        assert!(err.starts_with("sshkeep: "), "stderr: {err}");
        assert!(err.contains(s(sock)), "stderr: {err}");
        let after: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(before, after, "something was created or removed");
    }

    // A regular file.
    let file = dir.join("file.sock");
    fs::write(&file, "not a socket\n").unwrap();
    refused(&file, dir.path());
    assert_eq!(fs::read_to_string(&file).unwrap(), "not a socket\n");

    // A directory.
    let sub = dir.join("dir.sock");
    fs::create_dir(&sub).unwrap();
    refused(&sub, dir.path());

    // A directory writable by others, and one writable by the group.
    for mode in [0o777, 0o770] {
        let open = dir.join(format!("open{mode:o}"));
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(mode)).unwrap();
        refused(&open.join("agent.sock"), &open);
    }

    // A directory that is a symbolic link.
    let real = dir.join("real");
    fs::create_dir(&real).unwrap();
    let link = dir.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    refused(&link.join("agent.sock"), &real);

    // A directory under one writable by others (and not sticky).
    let open = dir.join("open");
    fs::create_dir(&open).unwrap();
    let inner = open.join("inner");
    fs::create_dir(&inner).unwrap();
    fs::set_permissions(&inner, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    refused(&inner.join("agent.sock"), &inner);
}

/// A socket of another user's, stale or not, is left alone.
#[test]
fn another_users_socket_is_left_alone() {
    if !sshkeep_only() || !need_root("chown to another user") {
        return;
    }
    let dir = TempDir::new();
    let sock = dir.join("agent.sock");
    drop(UnixListener::bind(&sock).unwrap());
    nix::unistd::chown(
        &sock,
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    let out = reuse_at(&sock);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", stdout(&out));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(
        err.contains(s(&sock)) && err.contains("65534"),
        "stderr: {err}"
    );
    assert_eq!(fs::symlink_metadata(&sock).unwrap().uid(), 65534);
    assert!(!beside(&sock, ".lock").exists());
}

/// A socket path too long for a Unix socket is an error that names it; nothing is created.
#[test]
fn too_long_path_is_an_error_naming_it() {
    if !sshkeep_only() {
        return;
    }
    let dir = TempDir::new();
    let sock = dir.join("x".repeat(120));
    let out = reuse_at(&sock);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains(s(&sock)), "stderr: {}", stderr(&out));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

    // The same for a default socket under a deep home directory.
    let home = dir.join("h".repeat(100));
    fs::create_dir(&home).unwrap();
    let out = sshkeep(
        &["-s", "--reuse"],
        &[("HOME", s(&home)), ("XDG_RUNTIME_DIR", "")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("{}/.ssh/agent/sshkeep.", s(&home))),
        "stderr: {}",
        stderr(&out)
    );
    assert!(!home.join(".ssh").exists());
}

/// Eight `--reuse` started at the same moment make exactly one agent, and all print it.
#[test]
fn eight_concurrent_starts_make_one_agent() {
    let Some((_dir, sock)) = fresh_socket() else {
        return;
    };
    let outs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| reuse_at(&sock))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (pid, _agent) = started(&outs[0]);
    for out in &outs {
        assert_eq!(stdout(expect_ok(out)), bourne(&sock, pid));
        assert_eq!(stderr(out), "");
    }
    assert_one_agent(&sock, pid);
}

/// Whether process `pid` has `path` open (needs root: starters are not dumpable).
fn has_open(pid: u32, path: &Path) -> bool {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == path))
        })
        .unwrap_or(false)
}

/// The worst case for the start lock: eight starters all find no agent and line up on the lock
/// (held here by the test), then race for it once it is free. None may start an agent while
/// the lock is held; after, exactly one starts it and the seven others find it answering.
#[test]
fn eight_starters_lined_up_on_the_lock_make_one_agent() {
    if !sshkeep_only() || !need_root("seeing which files the starters hold open") {
        return;
    }
    use nix::fcntl::{Flock, FlockArg};
    let dir = TempDir::new();
    let sock = dir.join("agent.sock");
    let lock_path = beside(&sock, ".lock");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&lock_path)
        .unwrap();
    fs::set_permissions(&lock_path, fs::Permissions::from_mode(0o600)).unwrap();
    let held = Flock::lock(file, FlockArg::LockExclusive).unwrap();

    let out_dir = TempDir::new();
    let mut children: Vec<Child> = (0..8)
        .map(|i| {
            let mut cmd = Command::new(agent_bin());
            cmd.args(["-s", "--reuse", "-a", s(&sock)])
                .stdin(Stdio::null())
                .stdout(fs::File::create(out_dir.join(format!("out{i}"))).unwrap())
                .stderr(fs::File::create(out_dir.join(format!("err{i}"))).unwrap());
            scrub_env(&mut cmd, &[]);
            cmd.spawn().unwrap()
        })
        .collect();
    let lined_up = wait_until(START_DEADLINE, || {
        children.iter().all(|c| has_open(c.id(), &lock_path))
    });
    assert!(
        lined_up,
        "the starters do not wait on {}",
        lock_path.display()
    );
    assert!(
        children.iter_mut().all(|c| c.try_wait().unwrap().is_none()),
        "a starter finished while the lock was held"
    );
    assert!(
        !sock.exists(),
        "an agent was started while the lock was held"
    );
    drop(held);

    for child in &mut children {
        assert!(wait_child(child, START_DEADLINE).is_some());
    }
    let read = |name: String| fs::read_to_string(out_dir.join(name)).unwrap();
    let first = read("out0".into());
    let pid: u32 = var(&first, "SSH_AGENT_PID")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid: {first:?} {}", read("err0".into())));
    let _agent = KillOnDrop(pid);
    for i in 0..8 {
        assert_eq!(
            read(format!("out{i}")),
            bourne(&sock, pid),
            "{}",
            read(format!("err{i}"))
        );
        assert_eq!(read(format!("err{i}")), "");
    }
    assert_one_agent(&sock, pid);
}

// ---------------------------------------------------------------------------------------------
// Default paths

/// Without `-a`: `$XDG_RUNTIME_DIR/sshkeep/agent.sock` (the systemd unit's path), the
/// directory made 0700.
#[test]
fn default_socket_under_xdg_runtime_dir() {
    if !sshkeep_only() {
        return;
    }
    let tmp = TempDir::new();
    let runtime = tmp.join("run");
    fs::create_dir(&runtime).unwrap();
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).unwrap();
    let home = tmp.join("home");
    fs::create_dir(&home).unwrap();
    let env = [("XDG_RUNTIME_DIR", s(&runtime)), ("HOME", s(&home))];
    let out = sshkeep(&["-s", "--reuse"], &env);
    let (pid, _agent) = started(&out);
    let sock = runtime.join("sshkeep/agent.sock");
    assert_eq!(stdout(&out), bourne(&sock, pid));
    let mode = fs::metadata(runtime.join("sshkeep")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    assert_eq!(fs::read_dir(&home).unwrap().count(), 0, "HOME was touched");

    let again = sshkeep(&["-s", "--reuse"], &env);
    assert_eq!(stdout(expect_ok(&again)), bourne(&sock, pid));

    // The real .bashrc line, then a script's check.
    let shell = sh(
        r#"eval "$("$AGENT" -s --reuse)" >/dev/null && "$AGENT" --status"#,
        &env,
    );
    assert_eq!(
        stdout(expect_ok(&shell)),
        format!("agent running at {}: 0 keys, pid {pid}\n", s(&sock))
    );
}

/// Without `-a` and without a usable `$XDG_RUNTIME_DIR`: `~/.ssh/agent/sshkeep.<host>.sock`,
/// `~/.ssh` and `~/.ssh/agent` made 0700.
#[test]
fn default_socket_under_home() {
    if !sshkeep_only() {
        return;
    }
    let tmp = TempDir::new();
    let home = tmp.join("home");
    fs::create_dir(&home).unwrap();
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let sock = home.join(format!(".ssh/agent/sshkeep.{}.sock", host.trim_end()));

    // XDG_RUNTIME_DIR unset.
    let out = run(
        "env",
        &[
            "-u",
            "XDG_RUNTIME_DIR",
            agent_bin().to_str().unwrap(),
            "-s",
            "--reuse",
        ],
        &[("HOME", s(&home))],
    );
    let (pid, _agent) = started(&out);
    assert_eq!(stdout(&out), bourne(&sock, pid));
    for d in [".ssh", ".ssh/agent"] {
        assert_eq!(
            fs::metadata(home.join(d)).unwrap().mode() & 0o7777,
            0o700,
            "{d}"
        );
    }

    // Set but unusable: missing, not a directory, writable by others.
    let open = tmp.join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let file = tmp.join("file");
    fs::write(&file, "").unwrap();
    for runtime in ["", "relative", s(&tmp.join("missing")), s(&file), s(&open)] {
        let out = sshkeep(
            &["-s", "--reuse"],
            &[("HOME", s(&home)), ("XDG_RUNTIME_DIR", runtime)],
        );
        assert_eq!(
            stdout(expect_ok(&out)),
            bourne(&sock, pid),
            "XDG_RUNTIME_DIR={runtime}"
        );
        assert_eq!(stderr(&out), "");
    }
    assert_eq!(fs::read_dir(&open).unwrap().count(), 0);
}

/// A user who is not root (whom the kernel does not let read the agent's /proc/PID/fd, as the
/// agent is not dumpable) still gets the agent's pid, and `-k` stops it.
#[test]
fn an_unprivileged_user_gets_the_pid() {
    if !sshkeep_only() || !need_root("running as another user") {
        return;
    }
    const NOBODY: u32 = 65534;
    let tmp = TempDir::new();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // The test binary's directory may be closed to that user: run a copy.
    let bin = tmp.join("sshkeep");
    copy_executable(&agent_bin(), &bin);
    let home = tmp.join("home");
    fs::create_dir(&home).unwrap();
    nix::unistd::chown(
        &home,
        Some(nix::unistd::Uid::from_raw(NOBODY)),
        Some(nix::unistd::Gid::from_raw(NOBODY)),
    )
    .unwrap();
    let as_nobody = |args: &[&str], env: &[(&str, &str)]| -> Output {
        let mut cmd = Command::new(&bin);
        cmd.args(args)
            .env_clear()
            .env("HOME", &home)
            .env("PATH", "/usr/bin:/bin")
            .envs(env.iter().copied())
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(Stdio::null());
        let child = cmd.output();
        child.unwrap()
    };
    let first = as_nobody(&["-s", "--reuse"], &[]);
    let (pid, _agent) = started(&first);
    let sock = PathBuf::from(var(&stdout(&first), "SSH_AUTH_SOCK").unwrap());
    // The premise: that user cannot see which sockets the agent holds.
    let fds = Command::new("ls")
        .arg(format!("/proc/{pid}/fd"))
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!fds.success(), "the agent's fds are readable by its user");
    let again = as_nobody(&["-s", "--reuse"], &[]);
    assert_eq!(stdout(&again), stdout(&first));
    assert_eq!(stderr(&again), "", "pid not known without root");
    let status = as_nobody(&["--status"], &[("SSH_AUTH_SOCK", s(&sock))]);
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        format!("agent running at {}: 0 keys, pid {pid}\n", s(&sock))
    );
    let pidstr = pid.to_string();
    let killed = as_nobody(&["-k"], &[("SSH_AGENT_PID", &pidstr)]);
    assert!(killed.status.success());
    assert!(wait_until(START_DEADLINE, || !pid_alive(pid)));
    assert!(!sock.exists());
}

// ---------------------------------------------------------------------------------------------
// Socket activation

/// The agent under `-D` with `listener` as fd 3 and `LISTEN_FDS`/`LISTEN_PID`, as systemd
/// starts it.
fn activate(listener: &UnixListener) -> Agent {
    Agent::launch(Launch {
        listener: Some(listener),
        ..Launch::default()
    })
}

/// Under socket activation the listening socket was made by another process (here the test;
/// systemd in real life), which is what SO_PEERCRED names: `--reuse` prints the agent's own pid
/// from its pid file, and without that file prints no pid at all and says why.
#[test]
fn socket_activated_agent_is_named_by_its_own_pid_or_not_at_all() {
    let Some((_tmp, sock)) = fresh_socket() else {
        return;
    };
    let listener = UnixListener::bind(&sock).unwrap();
    let mut activated = activate(&listener);
    let agent = activated.pid();
    let me = std::process::id();

    let out = reuse_at(&sock);
    assert_eq!(stdout(expect_ok(&out)), bourne(&sock, agent));
    assert_ne!(agent, me);
    let status = sshkeep(&["--status", "-a", s(&sock)], &[]);
    assert_eq!(
        stdout(expect_ok(&status)),
        format!("agent running at {}: 0 keys, pid {agent}\n", s(&sock))
    );

    // Without the pid file nothing names a pid, least of all the listener's maker.
    fs::remove_file(beside(&sock, ".pid")).unwrap();
    let out = reuse_at(&sock);
    assert_eq!(
        stdout(expect_ok(&out)),
        format!(
            "SSH_AUTH_SOCK={}; export SSH_AUTH_SOCK;\nunset SSH_AGENT_PID;\n",
            s(&sock)
        )
    );
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(
        err.contains("not known for certain") && err.contains("no pid file"),
        "{err}"
    );
    let csh = sshkeep(&["-c", "--reuse", "-a", s(&sock)], &[]);
    assert_eq!(
        stdout(expect_ok(&csh)),
        format!(
            "setenv SSH_AUTH_SOCK {};\nunsetenv SSH_AGENT_PID;\n",
            s(&sock)
        )
    );
    let status = sshkeep(&["--status", "-a", s(&sock)], &[]);
    assert_eq!(
        stdout(expect_ok(&status)),
        format!("agent running at {}: 0 keys\n", s(&sock))
    );

    // A pid file naming the listener's maker is not believed.
    let meta = fs::symlink_metadata(&sock).unwrap();
    let listener_ino = fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
        .unwrap()
        .ino();
    fs::write(
        beside(&sock, ".pid"),
        format!(
            "pid {me}\nstart 1\nsocket {} {}\nlistener {listener_ino}\n",
            meta.dev(),
            meta.ino()
        ),
    )
    .unwrap();
    fs::set_permissions(beside(&sock, ".pid"), fs::Permissions::from_mode(0o600)).unwrap();
    let out = reuse_at(&sock);
    assert!(
        !stdout(expect_ok(&out)).contains("SSH_AGENT_PID="),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("not the agent"), "{}", stderr(&out));
    fs::remove_file(beside(&sock, ".pid")).unwrap();

    // The socket is the service manager's: the agent leaves it.
    assert_eq!(activated.stop().code(), Some(0));
    assert!(sock.exists());
    drop(listener);
}

/// An activated agent removes the pid file it wrote when it exits.
#[test]
fn socket_activated_agent_removes_its_pid_file() {
    let Some((_tmp, sock)) = fresh_socket() else {
        return;
    };
    let listener = UnixListener::bind(&sock).unwrap();
    let mut agent = activate(&listener);
    assert!(beside(&sock, ".pid").exists());
    assert_eq!(agent.stop().code(), Some(0));
    assert!(!beside(&sock, ".pid").exists());
    assert!(sock.exists());
}

// ---------------------------------------------------------------------------------------------
// --status

/// `--status` prints exactly one line on stdout, never the usage; returns it and the exit code.
#[track_caller]
fn status(args: &[&str], env: &[(&str, &str)]) -> (String, i32) {
    let mut all = vec!["--status"];
    all.extend_from_slice(args);
    let out = sshkeep(&all, env);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "stdout: {text:?}");
    assert_eq!(stderr(&out), "", "{args:?}");
    (text, out.status.code().unwrap())
}

#[test]
fn status_of_an_sshkeep_agent() {
    let Some((dir, sock)) = fresh_socket() else {
        return;
    };
    let (pid, _agent) = started(&reuse_at(&sock));
    let running = format!("agent running at {}: 0 keys, pid {pid}\n", s(&sock));
    assert_eq!(
        status(&[], &[("SSH_AUTH_SOCK", s(&sock))]),
        (running.clone(), 0)
    );
    assert_eq!(status(&["-a", s(&sock)], &[]), (running, 0));
    // -a wins over the variable.
    assert_eq!(
        status(&["-a", s(&sock)], &[("SSH_AUTH_SOCK", "/nonexistent")]).1,
        0
    );
    for (kind, count) in [("ed25519", "1 key"), ("ecdsa-256", "2 keys")] {
        let key = keygen(dir.path(), kind);
        expect_ok(&ssh_add_at(&sock, &[s(&key)]));
        assert_eq!(
            status(&["-a", s(&sock)], &[]),
            (
                format!("agent running at {}: {count}, pid {pid}\n", s(&sock)),
                0
            )
        );
    }

    // An sshkeep started without --reuse writes no pid file: no pid.
    let plain = Agent::start(&[]);
    assert_eq!(
        status(&["-a", plain.sock_str()], &[]),
        (
            format!("agent running at {}: 0 keys\n", plain.sock_str()),
            0
        )
    );

    // Killed with SIGKILL: a stale socket.
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    assert!(wait_until(START_DEADLINE, || !pid_alive(pid)));
    assert_eq!(
        status(&["-a", s(&sock)], &[]),
        (
            format!("stale socket at {}: no agent listens\n", s(&sock)),
            1
        )
    );
}

#[test]
fn status_of_openssh_agent() {
    if !sshkeep_only() {
        return;
    }
    let agent = Agent::start_bin(Path::new("/usr/bin/ssh-agent"), &[]);
    let env = [("SSH_AUTH_SOCK", agent.sock_str())];
    assert_eq!(
        status(&[], &env),
        (
            format!("agent running at {}: 0 keys\n", agent.sock_str()),
            0
        )
    );
    let key = keygen(agent.dir(), "ed25519");
    expect_ok(&ssh_add(&agent, &[s(&key)]));
    assert_eq!(
        status(&[], &env),
        (format!("agent running at {}: 1 key\n", agent.sock_str()), 0)
    );
}

#[test]
fn status_when_nothing_answers() {
    if !sshkeep_only() {
        return;
    }
    let dir = TempDir::new();
    // No variable, no -a.
    assert_eq!(status(&[], &[]), ("SSH_AUTH_SOCK is not set\n".into(), 1));
    assert_eq!(
        status(&[], &[("SSH_AUTH_SOCK", "")]),
        ("SSH_AUTH_SOCK is not set\n".into(), 1)
    );
    // No such path.
    let missing = dir.join("missing.sock");
    assert_eq!(
        status(&[], &[("SSH_AUTH_SOCK", s(&missing))]),
        (
            format!("no agent at {}: No such file or directory\n", s(&missing)),
            1
        )
    );
    // Not a socket.
    let file = dir.join("file");
    fs::write(&file, "").unwrap();
    assert_eq!(
        status(&["-a", s(&file)], &[]),
        (format!("no agent at {}: not a socket\n", s(&file)), 1)
    );
    // A socket nobody listens on.
    let stale = dir.join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    assert_eq!(
        status(&["-a", s(&stale)], &[]),
        (
            format!("stale socket at {}: no agent listens\n", s(&stale)),
            1
        )
    );
    // A listener that never answers.
    let silent = dir.join("silent.sock");
    let _listener = UnixListener::bind(&silent).unwrap();
    assert_eq!(
        status(&["-a", s(&silent)], &[]),
        (
            format!("no agent answers at {}: no reply within 2 s\n", s(&silent)),
            1
        )
    );
    // A path with a newline is still one line.
    let odd = dir.join("a\nb");
    let (line, code) = status(&["-a", s(&odd)], &[]);
    assert_eq!(code, 1);
    assert!(line.contains("a\\012b"), "{line}");
}

/// `--reuse` does not take over a listener that does not answer as an agent.
#[test]
fn reuse_leaves_a_silent_listener_alone() {
    let Some((_dir, sock)) = fresh_socket() else {
        return;
    };
    let _listener = UnixListener::bind(&sock).unwrap();
    let out = reuse_at(&sock);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(s(&sock)) && err.contains("does not answer"),
        "{err}"
    );
    assert!(sock.exists());
}

// ---------------------------------------------------------------------------------------------
// Usage errors

#[test]
fn usage_errors() {
    if !sshkeep_only() {
        return;
    }
    let cases: &[(&[&str], &str)] = &[
        (&["--reuse", "-D"], "--reuse cannot be combined with -D"),
        (&["--reuse", "-d"], "--reuse cannot be combined with -d"),
        (
            &["-s", "--reuse", "-k"],
            "--reuse cannot be combined with -k",
        ),
        (
            &["--reuse", "--exit-with", "1"],
            "--reuse cannot be combined with --exit-with",
        ),
        (
            &["--reuse", "true"],
            "--reuse cannot be combined with a command",
        ),
        (&["--status", "-s"], "--status cannot be combined with -s"),
        (
            &["--status", "-t", "5"],
            "--status cannot be combined with -t",
        ),
        (
            &["--status", "--reuse"],
            "--status cannot be combined with --reuse",
        ),
        (
            &["--status", "true"],
            "--status cannot be combined with a command",
        ),
        (&["--reuse=1"], "option --reuse takes no argument"),
        (&["--status=1"], "option --status takes no argument"),
    ];
    for (args, message) in cases {
        let out = sshkeep(args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("sshkeep: {message}\nusage: sshkeep ")),
            "{args:?}: {err}"
        );
        assert!(err.contains("--reuse") && err.contains("--status"), "{err}");
    }
}
