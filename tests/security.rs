//! Security hygiene of the real binary, checked from outside the process:
//!
//! - private key bytes are gone from the agent's memory after `ssh-add -D`, after expiry and
//!   after SIGUSR1 (every readable, writable region scanned through /proc/PID/mem, as root,
//!   after proving that the same scan finds them while the keys are loaded);
//! - a client of another uid is refused without a reply, and the refusal is logged;
//! - an agent running as an ordinary user cannot be ptrace-attached or have its memory read by
//!   another process of that same user (its parent, even), while a plain process of that user can;
//! - it leaves no core file when it crashes, even with `ulimit -c unlimited`.
//!
//! The tests that need root or a second user call `skip` when they cannot run (a failure under
//! CI=true). As root they create the user `sshkeep-test` (a system user without a home or a
//! login shell).

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const TEST_USER: &str = "sshkeep-test";
const NO_IDENTITIES: &str = "The agent has no identities.\n";

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

// ---------------------------------------------------------------------------------------------
// Scanning the agent's memory

/// One secret and the byte forms it may be stored in.
struct Secret {
    what: &'static str,
    forms: Vec<(&'static str, Vec<u8>)>,
}

impl Secret {
    /// A big-endian integer, looked for as written and reversed (little-endian limbs).
    fn integer(what: &'static str, be: &[u8]) -> Secret {
        let mut le = be.to_vec();
        le.reverse();
        Secret {
            what,
            forms: vec![("big-endian", be.to_vec()), ("little-endian", le)],
        }
    }
}

/// Where a secret was found.
#[derive(Debug)]
struct Hit {
    what: &'static str,
    form: &'static str,
    region: String,
    /// Offsets into the region of every copy.
    offsets: Vec<usize>,
}

/// The private parts of the three keys, read from the files `ssh-keygen` wrote.
fn secrets(ed25519: &Path, ecdsa: &Path, rsa: &Path) -> Vec<Secret> {
    let read = |p: &Path| {
        ssh_key::PrivateKey::read_openssh_file(p)
            .unwrap()
            .key_data()
            .clone()
    };
    let ed = read(ed25519);
    let ec = read(ecdsa);
    let rsa = read(rsa);
    let seed = ed.ed25519().unwrap().private.to_bytes().to_vec();
    let scalar = ec.ecdsa().unwrap().private_key_bytes().to_vec();
    let rsa = rsa.rsa().unwrap();
    let prime_p = rsa.private().p().as_positive_bytes().unwrap().to_vec();
    let prime_q = rsa.private().q().as_positive_bytes().unwrap().to_vec();
    vec![
        // ed25519-dalek keeps the seed as it is.
        Secret {
            what: "Ed25519 seed",
            forms: vec![("as is", seed)],
        },
        Secret::integer("ECDSA P-256 scalar", &scalar),
        Secret::integer("RSA prime p", &prime_p),
        Secret::integer("RSA prime q", &prime_q),
    ]
}

/// Every region of `pid` that can hold data the process wrote: readable, and writable or
/// anonymous (code and read-only data of mapped files cannot hold a key added at run time).
fn data_regions(pid: u32) -> Vec<(u64, u64, String)> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let path = f.nth(3).unwrap_or("").to_string();
            let (a, b) = range.split_once('-')?;
            let (a, b) = (
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            );
            let readable = perms.starts_with('r');
            let writable = perms.as_bytes().get(1) == Some(&b'w');
            let special = ["[vvar]", "[vvar_vclock]", "[vsyscall]", "[vdso]"].contains(&&*path);
            let anon = path.is_empty() || path.starts_with('[');
            (readable && !special && (writable || anon)).then(|| {
                let name = if path.is_empty() {
                    format!("anonymous {a:x}-{b:x}")
                } else {
                    format!("{path} {a:x}-{b:x}")
                };
                (a, b, name)
            })
        })
        .collect()
}

/// The offset of every occurrence of `needle` in `hay`.
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    let first = needle[0];
    let mut found = Vec::new();
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)
        {
            None => break,
            Some(off) => {
                let at = i + off;
                if &hay[at..at + needle.len()] == needle {
                    found.push(at);
                }
                i = at + 1;
            }
        }
    }
    found
}

/// Reads every data region of `pid` through /proc/PID/mem and reports where each secret is.
fn scan(pid: u32, secrets: &[Secret]) -> Vec<Hit> {
    use std::os::unix::fs::FileExt;
    let mem = fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut hits = Vec::new();
    let mut scanned = 0u64;
    for (start, end, name) in data_regions(pid) {
        let mut buf = vec![0u8; (end - start) as usize];
        // A region can vanish or shrink between reading maps and reading it: keep what was read.
        let mut got = 0;
        while got < buf.len() {
            match mem.read_at(&mut buf[got..], start + got as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        buf.truncate(got);
        scanned += got as u64;
        for s in secrets {
            for (form, bytes) in &s.forms {
                let offsets = find_all(&buf, bytes);
                if !offsets.is_empty() {
                    hits.push(Hit {
                        what: s.what,
                        form,
                        region: name.clone(),
                        offsets,
                    });
                }
            }
        }
    }
    assert!(scanned > 0, "nothing of process {pid} could be read");
    hits
}

/// Starts an agent with an Ed25519, an ECDSA P-256 and an RSA-2048 key (added with `extra`
/// arguments to ssh-add), and proves that a scan of its memory finds every secret.
fn loaded_agent(extra: &[&str]) -> (Agent, Vec<Secret>) {
    let agent = Agent::start(&[]);
    let keys: Vec<PathBuf> = ["ed25519", "ecdsa-256", "rsa-2048"]
        .iter()
        .map(|k| keygen(agent.dir(), k))
        .collect();
    for key in &keys {
        let mut args = vec!["-q"];
        args.extend_from_slice(extra);
        args.push(p(key));
        expect_ok(&ssh_add(&agent, &args));
    }
    let secrets = secrets(&keys[0], &keys[1], &keys[2]);
    let hits = scan(agent.pid(), &secrets);
    for s in &secrets {
        assert!(
            hits.iter().any(|h| h.what == s.what),
            "the scan does not find the {} while the key is loaded, so it could not prove it \
             gone later; found: {hits:?}",
            s.what
        );
    }
    println!("while loaded:\n{}", describe(&hits));
    (agent, secrets)
}

fn describe(hits: &[Hit]) -> String {
    hits.iter()
        .map(|h| {
            format!(
                "  {} ({}) in {}: {} cop{} at {:x?}",
                h.what,
                h.form,
                h.region,
                h.offsets.len(),
                if h.offsets.len() == 1 { "y" } else { "ies" },
                h.offsets
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn wait_empty(agent: &Agent, why: &str) {
    let empty = wait_until(Duration::from_secs(10), || {
        stdout(&ssh_add(agent, &["-l"])) == NO_IDENTITIES
    });
    assert!(empty, "the agent still lists keys after {why}");
}

#[track_caller]
fn assert_gone(agent: &Agent, secrets: &[Secret], why: &str) {
    let hits = scan(agent.pid(), secrets);
    assert!(
        hits.is_empty(),
        "key material still in the agent's memory after {why}:\n{}",
        describe(&hits)
    );
}

fn can_scan() -> bool {
    if !is_root() {
        skip("reading the memory of a non-dumpable process needs root: run the tests as root");
        return false;
    }
    sshkeep_only()
}

#[test]
fn keys_wiped_after_remove_all() {
    if !can_scan() {
        return;
    }
    let (agent, secrets) = loaded_agent(&[]);
    expect_ok(&ssh_add(&agent, &["-D"]));
    wait_empty(&agent, "ssh-add -D");
    assert_gone(&agent, &secrets, "ssh-add -D");
}

#[test]
fn keys_wiped_after_expiry() {
    if !can_scan() {
        return;
    }
    let (agent, secrets) = loaded_agent(&["-t", "1"]);
    wait_empty(&agent, "their 1 s lifetime");
    assert_gone(&agent, &secrets, "expiry");
}

#[test]
fn keys_wiped_after_sigusr1() {
    if !can_scan() {
        return;
    }
    let (agent, secrets) = loaded_agent(&[]);
    kill(Pid::from_raw(agent.pid() as i32), Signal::SIGUSR1).unwrap();
    wait_empty(&agent, "SIGUSR1");
    assert_gone(&agent, &secrets, "SIGUSR1");
}

// ---------------------------------------------------------------------------------------------
// Another user

/// The test user's uid and gid, created on first use; `None` (after a `skip`, which fails
/// under CI=true) when that is impossible.
fn test_user() -> Option<(u32, u32)> {
    static USER: OnceLock<Result<(u32, u32), String>> = OnceLock::new();
    let user = USER.get_or_init(|| {
        if !is_root() {
            return Err(
                "creating and becoming a second user needs root: run the tests as root".into(),
            );
        }
        let lookup = || {
            nix::unistd::User::from_name(TEST_USER)
                .ok()
                .flatten()
                .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
        };
        for _ in 0..20 {
            if let Some(ids) = lookup() {
                return Ok(ids);
            }
            // Other test processes may be adding it at the same moment (useradd then fails
            // to lock /etc/passwd, or finds the user there): look again.
            let out = Command::new("useradd")
                .args([
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    TEST_USER,
                ])
                .output();
            match out {
                Err(e) => return Err(format!("cannot run useradd ({e}): install passwd")),
                Ok(o) if !o.status.success() => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(_) => {}
            }
        }
        lookup().ok_or_else(|| format!("could not create the user {TEST_USER} with useradd"))
    });
    // Every test that needs the user reports its own skip.
    user.as_ref().map_err(|why| skip(why)).ok().copied()
}

/// A directory the test user can use (mode 0777), with a copy of the agent binary it can run.
struct Shared {
    dir: TempDir,
}

impl Shared {
    fn new() -> Shared {
        let dir = TempDir::new();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let bin = dir.join("sshkeep");
        fs::copy(agent_bin(), &bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        Shared { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.join("sshkeep")
    }

    fn join(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Runs `cmd args` as the test user (no supplementary groups), with stdin on /dev/null.
fn run_as(user: (u32, u32), cmd: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(cmd);
    c.args(args)
        .uid(user.0)
        .gid(user.1)
        .current_dir("/")
        .stdin(Stdio::null());
    scrub_env(&mut c, env);
    c.output().unwrap()
}

/// A child process killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A raw client in Perl (always on Debian): connects, sends a listing request, and prints how
/// many reply bytes it read, or the error.
const PERL_CLIENT: &str = r#"
use Socket;
$SIG{PIPE} = 'IGNORE'; # the agent may close before the request is written
socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
connect($s, pack_sockaddr_un($ARGV[0])) or die "connect: $!";
syswrite($s, "\0\0\0\1\x0b");
my $n = sysread($s, my $buf, 1024);
print defined $n ? "read $n\n" : "error $!\n";
"#;

#[test]
fn other_uid_is_refused() {
    let Some(user) = test_user() else { return };
    if !sshkeep_only() {
        return;
    }
    // Under -D the agent logs errors (the refusal is one) to stderr.
    let agent = Agent::start(&[]);
    fs::set_permissions(agent.dir(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(agent.sock(), fs::Permissions::from_mode(0o666)).unwrap();

    let out = run_as(user, "perl", &["-e", PERL_CLIENT, agent.sock_str()], &[]);
    let said = stdout(&out);
    assert!(
        said == "read 0\n" || said == "error Connection reset by peer\n",
        "the other uid's client: {said:?} {}",
        stderr(&out)
    );
    let out = run_as(
        user,
        "ssh-add",
        &["-l"],
        &[("SSH_AUTH_SOCK", agent.sock_str())],
    );
    assert!(!out.status.success(), "ssh-add -l as {TEST_USER} succeeded");

    let line = format!("uid mismatch: peer euid {} != uid 0", user.0);
    assert!(
        wait_until(Duration::from_secs(5), || agent
            .stderr_text()
            .contains(&line)),
        "no {line:?} in the log:\n{}",
        agent.stderr_text()
    );
    // Root (the agent's own uid) is still served.
    let out = ssh_add(&agent, &["-l"]);
    assert_eq!(stdout(&out), NO_IDENTITIES);
}

/// Perl as the test user: starts the agent and a control process (`sleep`) as its own
/// children, then tries to open their /proc/PID/mem and to PTRACE_ATTACH to them. Being their
/// parent, it passes any Yama ptrace_scope 1 restriction; only the agent's own
/// PR_SET_DUMPABLE 0 can stop it.
const PERL_TRACER: &str = r#"
my ($bin, $sock, $ptrace_nr) = @ARGV;
my $agent = fork() // die "fork: $!";
if ($agent == 0) { open(STDOUT, '>', '/dev/null'); exec($bin, '-D', '-a', $sock) or die "exec: $!"; }
for (1..1000) { last if -S $sock; select(undef, undef, undef, 0.01); }
-S $sock or die "the agent did not start";
my $control = fork() // die "fork: $!";
if ($control == 0) { exec('sleep', '60') or die "exec: $!"; }
sub mem { my $pid = shift; open(my $fh, '<', "/proc/$pid/mem") ? "ok" : "failed " . ($! + 0) }
sub attach {
    my $pid = shift;
    return "skipped" unless $ptrace_nr;
    # PTRACE_ATTACH = 16
    syscall($ptrace_nr, 16, $pid, 0, 0) == 0 ? "ok" : "failed " . ($! + 0);
}
print "agent-pid $agent\n";
print "agent-mem ", mem($agent), "\n";
print "agent-attach ", attach($agent), "\n";
print "control-mem ", mem($control), "\n";
print "control-attach ", attach($control), "\n";
if ($ARGV[3]) {
    my $gdb = `gdb -nx -batch -p $agent -ex 'info registers rip' 2>&1`;
    $gdb =~ s/\n/ | /g;
    print "gdb $gdb\n";
}
kill 'KILL', $control;
kill 'TERM', $agent;
waitpid($control, 0);
waitpid($agent, 0);
"#;

#[test]
fn same_uid_cannot_trace_or_read_the_agent() {
    let Some(user) = test_user() else { return };
    if !sshkeep_only() {
        return;
    }
    let shared = Shared::new();
    let sock = shared.join("s");
    // ptrace's syscall number for Perl's syscall(); 0 skips the attach checks elsewhere.
    let ptrace_nr = if cfg!(target_arch = "x86_64") {
        "101"
    } else {
        "0"
    };
    let gdb = if Path::new("/usr/bin/gdb").exists() {
        "1"
    } else {
        ""
    };
    let mut out = None;
    for _ in 0..5 {
        let o = run_as(
            user,
            "perl",
            &[
                "-e",
                PERL_TRACER,
                p(&shared.bin()),
                p(&sock),
                ptrace_nr,
                gdb,
            ],
            &[],
        );
        // A fresh copy of the binary can be busy for a moment (see start_user_agent).
        let busy = stderr(&o).contains("Text file busy");
        out = Some(o);
        if !busy {
            break;
        }
        let _ = fs::remove_file(&sock);
    }
    let out = out.unwrap();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "tracer failed: {text}{}",
        stderr(&out)
    );
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    println!("{text}");
    // The control shows that this user may normally read and trace its own children...
    assert_eq!(field("control-mem"), "ok", "{text}");
    // ...but not the agent: EACCES (13) for its memory, EPERM (1) for ptrace.
    assert_eq!(field("agent-mem"), "failed 13", "{text}");
    if ptrace_nr != "0" {
        assert_eq!(field("control-attach"), "ok", "{text}");
        assert_eq!(field("agent-attach"), "failed 1", "{text}");
    }
    if !gdb.is_empty() {
        let g = field("gdb");
        assert!(
            g.contains("ptrace: Operation not permitted") || g.contains("Could not attach"),
            "gdb attached to the agent: {g}"
        );
        assert!(!g.contains("rip "), "gdb read the agent's registers: {g}");
    }
}

/// Starts `sh -c 'ulimit -c unlimited; exec PROGRAM ARGS'` as the test user in `cwd`.
fn spawn_with_cores(user: (u32, u32), cwd: &Path, program: &Path, args: &[&str]) -> Reaped {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -c unlimited && exec \"$@\"")
        .arg("sh")
        .arg(program)
        .args(args)
        .uid(user.0)
        .gid(user.1)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    scrub_env(&mut c, &[]);
    Reaped(c.spawn().unwrap())
}

/// Starts the agent copy in `shared` as the test user with `ulimit -c unlimited`, and waits
/// for its socket. A binary copied a moment ago can fail to execute (ETXTBSY: another test
/// thread forked while the copy was open for writing), so a start that exits at once is
/// tried again.
fn start_user_agent(user: (u32, u32), shared: &Shared, sock: &Path) -> Reaped {
    for _ in 0..5 {
        let mut child = spawn_with_cores(
            user,
            shared.dir.path(),
            &shared.bin(),
            &["-D", "-a", p(sock)],
        );
        let mut exited = None;
        let up = wait_until(START_DEADLINE, || {
            exited = child.0.try_wait().unwrap();
            exited.is_some() || std::os::unix::net::UnixStream::connect(sock).is_ok()
        });
        match exited {
            None if up => return child,
            None => panic!("the agent did not start as {TEST_USER}"),
            Some(status) => println!("the agent exited at start ({status}); again"),
        }
    }
    panic!("the agent would not start as {TEST_USER}");
}

fn core_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("core"))
        .collect()
}

fn proc_field(pid: u32, file: &str, prefix: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /proc/{pid}/{file}"))
        .to_string()
}

/// Kills the process with `sig` and returns whether the kernel reported a core dump.
///
/// Rust's runtime catches SIGSEGV (to report stack overflows): a SIGSEGV sent by `kill`
/// only takes that handler away (it restores the default and returns), so the signal is sent
/// until the process dies of it.
fn crash(child: &mut Reaped, sig: Signal) -> bool {
    let pid = Pid::from_raw(child.0.id() as i32);
    let mut status = None;
    let died = wait_until(Duration::from_secs(10), || {
        let _ = kill(pid, sig);
        status = child.0.try_wait().unwrap();
        status.is_some()
    });
    assert!(died, "process {pid} survived {sig}");
    let status = status.unwrap();
    assert_eq!(status.signal(), Some(sig as i32), "{status:?}");
    status.core_dumped()
}

#[test]
fn no_core_file_when_the_agent_crashes() {
    let Some(user) = test_user() else { return };
    if !sshkeep_only() {
        return;
    }
    // Let the test user ask for unlimited core files (a root process may raise its hard limit).
    use nix::sys::resource::{RLIM_INFINITY, Resource, setrlimit};
    let _ = setrlimit(Resource::RLIMIT_CORE, RLIM_INFINITY, RLIM_INFINITY);

    // Control: a plain process of the same user, in the same kind of directory, dumps core.
    let control_dir = Shared::new();
    let mut control = spawn_with_cores(
        user,
        control_dir.dir.path(),
        Path::new("/bin/sleep"),
        &["60"],
    );
    assert!(wait_until(START_DEADLINE, || proc_field(
        control.0.id(),
        "status",
        "Name:"
    )
    .contains("sleep")));
    let control_dumped = crash(&mut control, Signal::SIGSEGV);
    let control_cores = wait_until(Duration::from_secs(5), || {
        !core_files(control_dir.dir.path()).is_empty()
    });
    if !(control_dumped && control_cores) {
        println!(
            "note: a plain process dumped core: {control_dumped}, core file written: \
             {control_cores} (core_pattern {:?}); the file check below proves less here",
            fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default()
        );
    }

    for sig in [Signal::SIGSEGV, Signal::SIGABRT] {
        let shared = Shared::new();
        let sock = shared.join("s");
        let mut agent = start_user_agent(user, &shared, &sock);
        let pid = agent.0.id();
        // It runs as the test user...
        let uid_line = proc_field(pid, "status", "Uid:");
        assert!(
            uid_line.split_whitespace().nth(1) == Some(&user.0.to_string()),
            "{uid_line}"
        );
        // ...with core dumps off, although its shell asked for unlimited...
        let core = proc_field(pid, "limits", "Max core file size");
        assert_eq!(
            core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
            ["0", "0"],
            "{core}"
        );
        // ...and not dumpable: the kernel then gives its /proc files to root.
        let owner = fs::metadata(format!("/proc/{pid}/status")).unwrap().uid();
        assert_eq!(owner, 0, "/proc/{pid}/status is owned by {owner}: dumpable");

        let dumped = crash(&mut agent, sig);
        assert!(!dumped, "the agent dumped core on {sig}");
        // The kernel writes a core file before the exit status can be collected.
        let cores = core_files(shared.dir.path());
        assert!(cores.is_empty(), "core files after {sig}: {cores:?}");
    }
}
