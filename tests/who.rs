//! Who is asking: confirmation prompts name the requesting process, its parents and the bound
//! destination, and `--log-use` logs one line per signature request with the same facts and the
//! outcome. Driven through a real `SSH_ASKPASS` script that records its prompt, `ssh-keygen -Y
//! sign` started by a wrapper script, a client that renames itself, and a real `ssh` login to a
//! throwaway `sshd` (needs root; skipped otherwise).
//!
//! All sshkeep-only: OpenSSH's agent says none of this.

mod common;

use std::ffi::CStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// An agent run with `args` whose askpass writes its prompt to `<scripts>/prompt` and exits with
/// the status in `<scripts>/status` (0 when absent); `$HOME` is `home`. It holds one Ed25519 key
/// added with `ssh-add -c`; returns the agent and the key's path.
fn confirming_agent(scripts: &TempDir, home: &TempDir, args: &[&str]) -> (Agent, PathBuf) {
    let body = format!(
        "printf '%s' \"$1\" > '{d}/prompt'\nexit $(cat '{d}/status' 2>/dev/null || echo 0)",
        d = scripts.path().display()
    );
    let askpass = script(scripts.path(), "askpass", &body);
    let agent = Agent::start_env(
        args,
        &[
            ("SSH_ASKPASS", p(&askpass)),
            ("SSH_ASKPASS_REQUIRE", "force"),
            ("HOME", p(home.path())),
        ],
    );
    let key = keygen(agent.dir(), "ed25519");
    expect_ok(&ssh_add(&agent, &["-c", p(&key)]));
    (agent, key)
}

/// The fingerprint `ssh-keygen -l` gives a public key file (`SHA256:...`).
fn fp(pub_file: &Path) -> String {
    fingerprint(pub_file)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

/// The comment of a key file's public half.
fn comment(key: &Path) -> String {
    pub_line(&pub_path(key))
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string()
}

/// The prompt askpass last recorded, as lines.
fn prompt_lines(scripts: &TempDir) -> Vec<String> {
    let text = fs::read_to_string(scripts.join("prompt")).expect("askpass did not run");
    text.split('\n').map(str::to_string).collect()
}

/// Runs a wrapper script, `keygen-wrapper`, that starts `ssh-keygen -Y sign` with the agent's
/// copy of `key` and waits for it. Returns (whether it signed, the wrapper's pid, ssh-keygen's).
fn sign_through_wrapper(agent: &Agent, key: &Path) -> (bool, u32, u32) {
    let dir = TempDir::new();
    // Only the public half beside it: ssh-keygen can sign only through the agent.
    let public = dir.join("agent-only.pub");
    fs::copy(pub_path(key), &public).unwrap();
    let body = format!(
        "ssh-keygen -Y sign -n file -f '{pub_}' </dev/null >'{d}/sig' &\n\
         echo $! >'{d}/keygen.pid'\nwait $!",
        pub_ = public.display(),
        d = dir.path().display()
    );
    let wrapper = script(dir.path(), "keygen-wrapper", &body);
    let mut cmd = Command::new(&wrapper);
    scrub_env(&mut cmd, &[("SSH_AUTH_SOCK", agent.sock_str())]);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wrapper_pid = child.id();
    let status = wait_child(&mut child, RUN_DEADLINE).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the wrapper did not finish")
    });
    let keygen_pid = fs::read_to_string(dir.join("keygen.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (status.success(), wrapper_pid, keygen_pid)
}

/// The agent's log lines for signature requests.
fn use_lines(agent: &Agent) -> Vec<String> {
    agent
        .stderr_text()
        .lines()
        .filter(|l| l.starts_with("sshkeep: use of key "))
        .map(str::to_string)
        .collect()
}

#[test]
fn prompt_names_the_requesting_process_and_its_parent() {
    if !sshkeep_only() {
        return;
    }
    let (scripts, home) = (TempDir::new(), TempDir::new());
    let (agent, key) = confirming_agent(&scripts, &home, &[]);
    let (signed, wrapper, keygen_pid) = sign_through_wrapper(&agent, &key);
    assert!(signed, "agent stderr: {}", agent.stderr_text());
    let lines = prompt_lines(&scripts);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    // OpenSSH's lines first, as they were.
    assert_eq!(lines[0], format!("Allow use of key {}?", comment(&key)));
    assert_eq!(
        lines[1],
        format!("Key fingerprint {}.", fp(&pub_path(&key)))
    );
    // Then who asks: ssh-keygen, started by the wrapper, started by this test.
    let want = format!(
        "Requested by \"ssh-keygen\" (pid {keygen_pid}), from \"keygen-wrapper\" (pid {wrapper}), from \""
    );
    assert!(
        lines[2].starts_with(&want),
        "{:?}\nwanted it to start with {want:?}",
        lines[2]
    );
    assert!(
        lines[2].contains(&format!(" (pid {})", std::process::id())),
        "{:?}",
        lines[2]
    );
    // Without --log-use no line per signature.
    assert_eq!(use_lines(&agent), Vec::<String>::new());
}

#[test]
fn log_use_lines_for_allowed_and_refused_signatures() {
    if !sshkeep_only() {
        return;
    }
    let (scripts, home) = (TempDir::new(), TempDir::new());
    let (agent, key) = confirming_agent(&scripts, &home, &["--log-use"]);
    let (key_fp, key_comment) = (fp(&pub_path(&key)), comment(&key));

    let (signed, wrapper, keygen_pid) = sign_through_wrapper(&agent, &key);
    assert!(signed, "agent stderr: {}", agent.stderr_text());
    let lines = use_lines(&agent);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let want = format!(
        "sshkeep: use of key {key_fp} \"{key_comment}\"; requested by \"ssh-keygen\" (pid {keygen_pid}), \
         from \"keygen-wrapper\" (pid {wrapper}), from \""
    );
    assert!(
        lines[0].starts_with(&want),
        "{:?}\nwanted {want:?}",
        lines[0]
    );
    assert!(
        lines[0].ends_with("; not bound; local; allowed"),
        "{:?}",
        lines[0]
    );

    // The user says no.
    fs::write(scripts.join("status"), "1").unwrap();
    let (signed, _, keygen_pid) = sign_through_wrapper(&agent, &key);
    assert!(!signed, "signed without confirmation");
    let lines = use_lines(&agent);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[1].contains(&format!("requested by \"ssh-keygen\" (pid {keygen_pid})")),
        "{:?}",
        lines[1]
    );
    assert!(
        lines[1].ends_with("; refused: confirmation refused"),
        "{:?}",
        lines[1]
    );

    // A key the agent does not hold, over a raw connection.
    let other = keygen(agent.dir(), "ed25519");
    let mut body = string(&pub_blob(&pub_path(&other)));
    body.extend(string(b"data"));
    body.extend(u32(0));
    let mut c = RawClient::connect(agent.sock());
    assert_eq!(
        c.request(SSH_AGENTC_SIGN_REQUEST, &body),
        [SSH_AGENT_FAILURE]
    );
    let lines = use_lines(&agent);
    let want = format!(
        "sshkeep: use of key {} (not held); requested by \"who-",
        fp(&pub_path(&other))
    );
    assert!(
        lines[2].starts_with(&want),
        "{:?}\nwanted {want:?}",
        lines[2]
    );
    assert!(
        lines[2].contains(&format!(" (pid {}), from \"", std::process::id())),
        "{:?}",
        lines[2]
    );
    assert!(
        lines[2].ends_with("; refused: unknown key"),
        "{:?}",
        lines[2]
    );
}

/// Forks a client that names itself `name` with `prctl(PR_SET_NAME)`, as any process may, then
/// connects to `sock`, sends `request` (a whole frame) and reads one reply. Returns its pid and
/// whether the reply was a signature.
fn renamed_client(name: &CStr, sock: &Path, request: &[u8]) -> (i32, bool) {
    // Everything the child touches is prepared here: after fork it may not allocate.
    let mut addr = libc::sockaddr_un {
        sun_family: libc::AF_UNIX as libc::sa_family_t,
        sun_path: [0; 108],
    };
    let path = sock.as_os_str().as_bytes();
    assert!(path.len() < addr.sun_path.len());
    for (d, s) in addr.sun_path.iter_mut().zip(path) {
        *d = *s as libc::c_char;
    }
    let timeout = libc::timeval {
        tv_sec: 15,
        tv_usec: 0,
    };
    let mut reply = [0u8; 4096];
    // SAFETY: the test process has other threads, so the child makes only async-signal-safe
    // system calls (prctl, socket, setsockopt, connect, write, read, _exit) on memory prepared
    // before the fork; it allocates nothing and never returns from this block.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: as above; every pointer is to a live local of the right size.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            let ok = libc::connect(
                fd,
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            ) == 0
                && libc::write(fd, request.as_ptr().cast(), request.len())
                    == request.len() as isize
                && libc::read(fd, reply.as_mut_ptr().cast(), reply.len()) >= 5
                && reply[4] == SSH_AGENT_SIGN_RESPONSE;
            libc::_exit(if ok { 0 } else { 1 });
        }
    }
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    (
        pid,
        matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
    )
}

#[test]
fn a_process_name_with_newlines_cannot_add_prompt_lines() {
    if !sshkeep_only() {
        return;
    }
    let (scripts, home) = (TempDir::new(), TempDir::new());
    let (agent, key) = confirming_agent(&scripts, &home, &["--log-use"]);
    let mut body = string(&pub_blob(&pub_path(&key)));
    body.extend(string(b"data to sign"));
    body.extend(u32(0));
    // The kernel keeps the first 15 bytes: "x\nDestination h".
    let (pid, signed) = renamed_client(
        c"x\nDestination host key SHA256:forged",
        agent.sock(),
        &frame(SSH_AGENTC_SIGN_REQUEST, &body),
    );
    assert!(signed, "agent stderr: {}", agent.stderr_text());
    let lines = prompt_lines(&scripts);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let want = format!("Requested by \"x\\x0aDestination h\" (pid {pid}), from \"");
    assert!(
        lines[2].starts_with(&want),
        "{:?}\nwanted {want:?}",
        lines[2]
    );
    assert!(!lines.iter().any(|l| l.starts_with("Destination")));
    // Nor to the log.
    let logged = use_lines(&agent);
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert!(
        logged[0].contains(&format!("requested by \"x\\x0aDestination h\" (pid {pid})")),
        "{:?}",
        logged[0]
    );
    assert!(
        !agent
            .stderr_text()
            .lines()
            .any(|l| l.starts_with("Destination"))
    );
}

#[test]
fn ssh_login_prompt_and_log_name_ssh_and_the_sshd_host_key() {
    if !can_run_sshd() || !sshkeep_only() {
        return;
    }
    let (scripts, home) = (TempDir::new(), TempDir::new());
    let (agent, key) = confirming_agent(&scripts, &home, &["--log-use"]);
    let sshd = Sshd::start(&[&pub_path(&key)], None, &[]);
    // The agent names the host from the user's known_hosts ($HOME at its start).
    fs::create_dir(home.join(".ssh")).unwrap();
    let host_pub = sshd.host_key_pub();
    let host_fields: Vec<String> = pub_line(&host_pub)
        .split_whitespace()
        .take(2)
        .map(str::to_string)
        .collect();
    let host_name = format!("[127.0.0.1]:{},testhost", sshd.port());
    fs::write(
        home.join(".ssh/known_hosts"),
        format!("{host_name} {} {}\n", host_fields[0], host_fields[1]),
    )
    .unwrap();

    let out = TempDir::new();
    let mut cmd = Command::new("ssh");
    cmd.args(sshd.ssh_args(&[], "true"));
    scrub_env(&mut cmd, &[("SSH_AUTH_SOCK", agent.sock_str())]);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(out.join("stdout")).unwrap())
        .stderr(fs::File::create(out.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let ssh_pid = child.id();
    let status = wait_child(&mut child, RUN_DEADLINE).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("ssh did not finish")
    });
    assert!(
        status.success(),
        "login failed: {}\nsshd log:\n{}\nagent stderr: {}",
        fs::read_to_string(out.join("stderr")).unwrap(),
        sshd.log_text(),
        agent.stderr_text()
    );

    let host_fp = fp(&host_pub);
    let lines = prompt_lines(&scripts);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(lines[0], format!("Allow use of key {}?", comment(&key)));
    assert!(
        lines[2].starts_with(&format!("Requested by \"ssh\" (pid {ssh_pid}), from \"")),
        "{:?}",
        lines[2]
    );
    assert_eq!(
        lines[3],
        format!("Destination host key {host_fp}, known as \"{host_name}\"")
    );

    let logged = use_lines(&agent);
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert!(
        logged[0].starts_with(&format!(
            "sshkeep: use of key {} \"{}\"; requested by \"ssh\" (pid {ssh_pid}), from \"",
            fp(&pub_path(&key)),
            comment(&key)
        )),
        "{:?}",
        logged[0]
    );
    assert!(
        logged[0].ends_with(&format!(
            "; destination host key {host_fp} \"{host_name}\"; local; allowed"
        )),
        "{:?}",
        logged[0]
    );
}
