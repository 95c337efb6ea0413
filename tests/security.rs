//! Security hygiene of the real binary, checked from outside the process:
//!
//! - private key material is gone from the agent's memory after `ssh-add -d` (one key, the
//!   others staying), `ssh-add -D`, expiry, SIGUSR1 and replacement (re-adding a key): every
//!   readable mapping of the RELEASE binary (`make`: LTO, panic=abort, stripped; the one users
//!   run, whose frames and inlining differ from the debug build's) is read through
//!   /proc/PID/mem, as root, for every form each secret may take (Ed25519 seed and its SHA-512
//!   expansion, ECDSA scalars plain and in Montgomery form, RSA d, p, q, dp, dq, qinv and the
//!   primes' Montgomery constants, big- and little-endian), after signing with every key, and
//!   after proving that the same scan finds each key while it is loaded;
//! - a client of another uid is refused without a reply, and the refusal is logged;
//! - an agent running as an ordinary user cannot be ptrace-attached or have its memory read by
//!   another process of that same user (its parent, even), while a plain process of that user can;
//! - it leaves no core file when it crashes, even with `ulimit -c unlimited`;
//! - memory is locked against swap only where that cannot fail later: with CAP_IPC_LOCK, not
//!   merely as root.
//!
//! The tests that need root, a second user or the release binary call `skip` when they cannot
//! run (a failure under CI=true). As root they create the user `sshkeep-test` (a system user
//! without a home or a login shell).

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::memscan::{self, Hit, Secret};
use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ssh_key::sha2::{Digest, Sha512};

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

/// The key types every scan loads, in this order: the three the agent's users have, and P-521,
/// whose first use runs deepest on the stack (it builds the curve's tables). P-521 comes first:
/// added after the Ed25519 key, its decoding overwrites, by chance, what an Ed25519 add left in
/// the loop's own frame (in a build that left it), and the scan would miss that leak.
const KINDS: [&str; 4] = ["ecdsa-521", "ed25519", "ecdsa-256", "rsa-2048"];

/// One key in the agent; its secrets are named after its file ([`memscan::secrets_of`]).
struct Key {
    kind: &'static str,
    path: PathBuf,
}

impl Key {
    /// The key file's name: the [`memscan::Hit::key`] of its secrets.
    fn name(&self) -> String {
        self.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    fn pub_path(&self) -> PathBuf {
        pub_path(&self.path)
    }
}

/// The release agent with one key of each of [`KINDS`] (added with `extra` arguments to
/// ssh-add), each used once for a signature (`ssh-keygen -Y sign` through the agent, so the
/// signing code has run and left what it leaves); a scan must then find every key. `None`
/// (after a skip) when the scan cannot run here.
struct Loaded {
    agent: Agent,
    keys: Vec<Key>,
    /// Every form of every key's secrets.
    secrets: Vec<Secret>,
}

impl Loaded {
    fn start(extra: &[&str]) -> Option<Loaded> {
        let bin = memscan::release_agent()?;
        let agent = Agent::start_bin(&bin, &[]);
        let keys: Vec<Key> = KINDS
            .iter()
            .map(|&kind| Key {
                kind,
                path: keygen(agent.dir(), kind),
            })
            .collect();
        let secrets = keys
            .iter()
            .flat_map(|k| memscan::secrets_of(&k.path))
            .collect();
        for key in &keys {
            let mut args = vec!["-q"];
            args.extend_from_slice(extra);
            args.push(p(&key.path));
            expect_ok(&ssh_add(&agent, &args));
        }
        let loaded = Loaded {
            agent,
            keys,
            secrets,
        };
        loaded.sign_with_each();
        loaded.assert_found(&loaded.keys.iter().collect::<Vec<_>>(), "while loaded");
        memscan::assert_none_on_stack(&loaded.scan(), "after adding and signing with every key");
        Some(loaded)
    }

    /// A signature with every key, through the agent: `-f` names the public key, so only
    /// the agent can make it. Checked by `ssh-keygen -Y check-novalidate`.
    fn sign_with_each(&self) {
        let msg = self.agent.dir().join("message");
        fs::write(&msg, "a message signed through the agent\n").unwrap();
        let sig = self.agent.dir().join("message.sig");
        let env = [("SSH_AUTH_SOCK", self.agent.sock_str())];
        for key in &self.keys {
            let _ = fs::remove_file(&sig);
            let out = run(
                "ssh-keygen",
                &[
                    "-Y",
                    "sign",
                    "-n",
                    "file",
                    "-f",
                    p(&key.pub_path()),
                    p(&msg),
                ],
                &env,
            );
            expect_ok(&out);
            let check = Command::new("ssh-keygen")
                .args(["-Y", "check-novalidate", "-n", "file", "-s", p(&sig)])
                .stdin(fs::File::open(&msg).unwrap())
                .output()
                .unwrap();
            expect_ok(&check);
        }
    }

    fn key(&self, kind: &str) -> &Key {
        self.keys.iter().find(|k| k.kind == kind).unwrap()
    }

    fn scan(&self) -> Vec<Hit> {
        memscan::scan(self.agent.pid(), &self.secrets)
    }

    /// Every key of `present` is found in some form: the scan can see them.
    #[track_caller]
    fn assert_found(&self, present: &[&Key], when: &str) {
        let hits = self.scan();
        for key in present {
            let name = key.name();
            assert!(
                hits.iter().any(|h| h.key == name),
                "the scan does not find the {} key {when}, so it could not prove it gone \
                 later; found:\n{}",
                key.kind,
                memscan::describe(&hits)
            );
        }
        println!("{when}:\n{}", memscan::describe(&hits));
    }

    /// No form of any secret of the keys of `kinds` is anywhere in the agent's memory.
    #[track_caller]
    fn assert_gone(&self, kinds: &[&str], why: &str) {
        let names: Vec<String> = self
            .keys
            .iter()
            .filter(|k| kinds.contains(&k.kind))
            .map(Key::name)
            .collect();
        let hits: Vec<Hit> = self
            .scan()
            .into_iter()
            .filter(|h| names.contains(&h.key))
            .collect();
        assert!(
            hits.is_empty(),
            "key material still in the agent's memory after {why}:\n{}",
            memscan::describe(&hits)
        );
    }

    fn listed(&self) -> String {
        stdout(&ssh_add(&self.agent, &["-l"]))
    }

    fn wait_empty(&self, why: &str) {
        let empty = wait_until(Duration::from_secs(20), || self.listed() == NO_IDENTITIES);
        assert!(empty, "the agent still lists keys after {why}");
    }
}

#[test]
fn keys_wiped_after_remove_one_while_others_stay() {
    let Some(l) = Loaded::start(&[]) else { return };
    let mut removed: Vec<&str> = Vec::new();
    for kind in KINDS {
        let key = l.key(kind);
        expect_ok(&ssh_add(&l.agent, &["-q", "-d", p(&key.pub_path())]));
        removed.push(kind);
        let why = format!("ssh-add -d of the {kind} key");
        assert!(
            !l.listed().contains(&pub_blob_comment(key)),
            "still listed after {why}"
        );
        l.assert_gone(&removed, &why);
        let staying: Vec<&Key> = l
            .keys
            .iter()
            .filter(|k| !removed.contains(&k.kind))
            .collect();
        l.assert_found(&staying, &format!("after {why}"));
    }
}

/// System call numbers the main loop waits in: poll and ppoll (x86_64), ppoll (aarch64).
#[cfg(target_arch = "x86_64")]
const LOOP_WAITS: &[&str] = &["7", "271"];
#[cfg(target_arch = "aarch64")]
const LOOP_WAITS: &[&str] = &["73"];

/// The main thread's stack below the stack pointer of the agent's `poll` (the main loop
/// waiting), where every request ran: `(sp, below)`, `below[d]` the byte `d + 1` below it.
/// Waits until the agent is blocked in its poll.
fn stack_below_the_loop(pid: u32) -> (u64, Vec<u8>) {
    let mut sp = None;
    let waiting = wait_until(Duration::from_secs(10), || {
        // "NR ARG1 ... ARG6 SP PC" while blocked, "running" (or "-1 SP PC") otherwise.
        let line = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        sp = (fields.len() == 9 && LOOP_WAITS.contains(&fields[0]))
            .then(|| u64::from_str_radix(fields[7].trim_start_matches("0x"), 16).unwrap());
        sp.is_some()
    });
    assert!(waiting, "the agent never waited in its poll");
    let sp = sp.unwrap();
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let range = maps
        .lines()
        .find(|l| l.ends_with("[stack]"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    let low = u64::from_str_radix(range.split_once('-').unwrap().0, 16).unwrap();
    let mut below = vec![0u8; (sp - low) as usize];
    let mem = fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&mem, &mut below, low).unwrap();
    below.reverse();
    (sp, below)
}

/// The man page's stack wipe, by its depths: after every request that decoded or used a key
/// or a passphrase, the server clears 64 KiB of stack below the loop, 128 KiB after a slow
/// one (RSA's adds and signatures, lock, unlock, held unlocks) and a confirmed signature,
/// deeper than those requests go. Two checks after each request, from the stack as the
/// loop waits again:
/// - it is zero from 8 KiB below the loop (above that: what the loop ran after the wipe,
///   the 4 KiB read buffer of the next read among it, and a signal's frame) down to the
///   wipe's depth: the wipe cleared what the request left;
/// - from 4 KiB past the wipe (its own last words) down to twice its depth, nothing changed:
///   the request did not go deeper than its wipe (a stack page never touched reads as zero).
#[test]
fn the_stack_below_the_loop_is_cleared_as_deep_as_requests_go() {
    let Some(bin) = memscan::release_agent() else {
        return;
    };
    let scripts = TempDir::new();
    let askpass = script(scripts.path(), "askpass", "echo 'a passphrase'");
    let wrong = script(scripts.path(), "wrong", "echo 'not the passphrase'");
    // The agent's own, for confirmations: an empty answer is a yes.
    let confirm = script(scripts.path(), "confirm", "true");
    let agent = Agent::start_wrapped(
        &[],
        &bin,
        &["-d"],
        &[
            ("SSH_ASKPASS", p(&confirm)),
            ("SSH_ASKPASS_REQUIRE", "force"),
        ],
    );
    let ssh_add_with = |args: &[&str], askpass: &Path| {
        let env = [
            ("SSH_ASKPASS", p(askpass)),
            ("SSH_ASKPASS_REQUIRE", "force"),
        ];
        ssh_add_env(&agent, args, &env)
    };
    let msg = scripts.join("message");
    fs::write(&msg, "signed through the agent\n").unwrap();
    let sign = |key: &Path| {
        let _ = fs::remove_file(scripts.join("message.sig"));
        let pubkey = pub_path(key);
        let args = ["-Y", "sign", "-n", "file", "-f", p(&pubkey), p(&msg)];
        expect_ok(&run(
            "ssh-keygen",
            &args,
            &[("SSH_AUTH_SOCK", agent.sock_str())],
        ));
    };
    let step = |wipe: usize, what: &str, op: &mut dyn FnMut()| {
        let (sp, before) = stack_below_the_loop(agent.pid());
        op();
        let (sp_after, after) = stack_below_the_loop(agent.pid());
        assert_eq!(sp, sp_after, "the loop waits at another depth after {what}");
        assert!(
            after.len() >= wipe,
            "the stack after {what} is shorter than its wipe"
        );
        let dirty: Vec<usize> = (8 << 10..wipe).filter(|&d| after[d] != 0).collect();
        assert!(
            dirty.is_empty(),
            "{} non-zero bytes between 8 and {} KiB below the loop after {what}, the first {} \
             bytes down",
            dirty.len(),
            wipe >> 10,
            dirty.first().unwrap_or(&0)
        );
        let changed: Vec<usize> = (wipe + (4 << 10)..2 * wipe)
            .filter(|&d| after.get(d).copied().unwrap_or(0) != before.get(d).copied().unwrap_or(0))
            .collect();
        assert!(
            changed.is_empty(),
            "{what} went deeper than its {} KiB wipe: {} bytes changed, the deepest {} bytes \
             below the loop",
            wipe >> 10,
            changed.len(),
            changed.last().unwrap_or(&0)
        );
    };
    const QUICK: usize = 64 << 10;
    const SLOW: usize = 128 << 10;
    for kind in ["ed25519", "ecdsa-256"] {
        let key = keygen(scripts.path(), kind);
        step(QUICK, &format!("adding an {kind} key"), &mut || {
            expect_ok(&ssh_add(&agent, &["-q", p(&key)]));
        });
        step(QUICK, &format!("an {kind} signature"), &mut || sign(&key));
    }
    // The first P-384 and P-521 keys go deeper once, building their curves' public tables
    // (secret.rs); after that, their signatures and adds stay within the quick wipe.
    for kind in ["ecdsa-384", "ecdsa-521"] {
        let first = keygen(scripts.path(), kind);
        expect_ok(&ssh_add(&agent, &["-q", p(&first)]));
        let key = keygen(scripts.path(), kind);
        step(QUICK, &format!("adding a second {kind} key"), &mut || {
            expect_ok(&ssh_add(&agent, &["-q", p(&key)]));
        });
        step(QUICK, &format!("an {kind} signature"), &mut || sign(&key));
    }
    // RSA up to the largest key the agent takes.
    for kind in ["rsa-2048", "rsa-4096", "rsa-8192"] {
        let key = keygen(scripts.path(), kind);
        step(SLOW, &format!("adding an {kind} key"), &mut || {
            expect_ok(&ssh_add(&agent, &["-q", p(&key)]));
        });
        step(SLOW, &format!("an {kind} signature"), &mut || sign(&key));
        step(SLOW, "a lock", &mut || {
            expect_ok(&ssh_add_with(&["-x"], &askpass));
        });
        step(SLOW, "an unlock", &mut || {
            expect_ok(&ssh_add_with(&["-X"], &askpass));
        });
        step(
            SLOW,
            &format!("the first {kind} signature after an unlock (its rebuild)"),
            &mut || sign(&key),
        );
    }
    // An unlock held through the back-off, answered when it ends (server.rs:
    // check_held_unlocks): wrong guesses, the sixth raw, so that the right passphrase comes
    // while its 0.6 s back-off runs (the KDF of that guess, about 0.1 s, is part of it).
    let unlock = |pw: &str| frame(SSH_AGENTC_UNLOCK, &string(pw.as_bytes()));
    expect_ok(&ssh_add_with(&["-x"], &askpass));
    for _ in 0..5 {
        let out = ssh_add_with(&["-X"], &wrong);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    }
    step(SLOW, "an unlock held through the back-off", &mut || {
        let mut guess = RawClient::connect(agent.sock());
        guess.set_timeout(Duration::from_secs(10));
        guess.send_raw(&unlock("not the passphrase"));
        let checked = wait_until(Duration::from_secs(10), || {
            agent
                .stderr_text()
                .contains("incorrect passphrase (6 failures)")
        });
        assert!(checked, "the sixth guess was not checked");
        let mut right = RawClient::connect(agent.sock());
        right.set_timeout(Duration::from_secs(10));
        right.send_raw(&unlock("a passphrase"));
        assert_eq!(right.recv_frame().unwrap(), [SSH_AGENT_SUCCESS]);
        assert_eq!(guess.recv_frame().unwrap(), [SSH_AGENT_FAILURE]);
    });
    assert!(
        agent
            .stderr_text()
            .contains("unlock held until the back-off"),
        "the right passphrase was not held: {}",
        agent.stderr_text()
    );
    // A confirmed RSA signature (server.rs: finish_prompts); the agent's askpass says yes.
    let confirmed = keygen(scripts.path(), "rsa-2048");
    expect_ok(&ssh_add(&agent, &["-q", "-c", p(&confirmed)]));
    step(SLOW, "a confirmed rsa-2048 signature", &mut || {
        sign(&confirmed)
    });
}

/// The comment `ssh-add -l` shows for a key made by `keygen`.
fn pub_blob_comment(key: &Key) -> String {
    pub_line(&key.pub_path())
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string()
}

#[test]
fn keys_wiped_after_remove_all() {
    let Some(l) = Loaded::start(&[]) else { return };
    expect_ok(&ssh_add(&l.agent, &["-D"]));
    l.wait_empty("ssh-add -D");
    l.assert_gone(&KINDS, "ssh-add -D");
}

#[test]
fn keys_wiped_after_expiry() {
    // Long enough to sign with every key and scan before they expire, on a slow machine too.
    let Some(l) = Loaded::start(&["-t", "8"]) else {
        return;
    };
    assert_eq!(
        l.listed().lines().count(),
        KINDS.len(),
        "keys expired before the test could use them"
    );
    l.wait_empty("their lifetime");
    l.assert_gone(&KINDS, "expiry");
}

#[test]
fn keys_wiped_after_sigusr1() {
    let Some(l) = Loaded::start(&[]) else { return };
    kill(Pid::from_raw(l.agent.pid() as i32), Signal::SIGUSR1).unwrap();
    l.wait_empty("SIGUSR1");
    l.assert_gone(&KINDS, "SIGUSR1");
}

/// Re-adding a key replaces it (new comment): the old copy is wiped then, not when the new
/// one goes. Replaced, each secret has as many copies as before; after removing the new keys,
/// none.
#[test]
fn replaced_keys_are_wiped() {
    let Some(l) = Loaded::start(&[]) else { return };
    let count = |hits: &[Hit]| {
        let mut c: Vec<_> = hits
            .iter()
            .map(|h| ((h.key.clone(), h.what, h.form), h.offsets.len()))
            .collect();
        c.sort();
        c
    };
    let before = l.scan();
    for key in &l.keys {
        expect_ok(&run(
            "ssh-keygen",
            &["-q", "-c", "-C", "replaced", "-f", p(&key.path)],
            &[],
        ));
        expect_ok(&ssh_add(&l.agent, &["-q", p(&key.path)]));
    }
    let listed = l.listed();
    assert_eq!(
        listed.matches(" replaced (").count(),
        KINDS.len(),
        "not replaced:\n{listed}"
    );
    let after = l.scan();
    for (form, n) in count(&after) {
        let was = count(&before)
            .into_iter()
            .find(|(f, _)| *f == form)
            .map_or(0, |(_, n)| n);
        assert!(
            n <= was,
            "{form:?}: {n} copies after replacement, {was} before:\nbefore:\n{}\nafter:\n{}",
            memscan::describe(&before),
            memscan::describe(&after)
        );
    }
    for key in &l.keys {
        expect_ok(&ssh_add(&l.agent, &["-q", "-d", p(&key.pub_path())]));
    }
    assert_eq!(l.listed(), NO_IDENTITIES);
    l.assert_gone(&KINDS, "replacement, then ssh-add -d of the new keys");
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
    /// The copy is made without the ETXTBSY race (`copy_executable`): a copy written here
    /// could be held open for writing by a child another test thread forked meanwhile, and
    /// then fail to execute ("the agent would not start", exit status 126).
    fn new() -> Shared {
        let dir = TempDir::new();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        copy_executable(&agent_bin(), &dir.join("sshkeep"));
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
    let out = run_as(
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

/// A wrapper that lets the program it execs dump core: `sh -c 'ulimit -c unlimited; exec "$@"'`.
const CORES_UNLIMITED: &[&str] = &["sh", "-c", "ulimit -c unlimited && exec \"$@\"", "sh"];

/// Starts `program args` under [`CORES_UNLIMITED`] as the test user in `cwd`.
fn spawn_with_cores(user: (u32, u32), cwd: &Path, program: &Path, args: &[&str]) -> Reaped {
    let mut c = Command::new(CORES_UNLIMITED[0]);
    c.args(&CORES_UNLIMITED[1..])
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

/// Starts the agent copy in `shared` under [`CORES_UNLIMITED`] as the test user, in `shared`'s
/// directory, with its socket at `sock`.
fn start_user_agent(user: (u32, u32), shared: &Shared, sock: &Path) -> Agent {
    Agent::launch(Launch {
        bin: Some(&shared.bin()),
        wrapper: CORES_UNLIMITED,
        sock: Some(sock),
        user: Some(user),
        cwd: Some(shared.dir.path()),
        ..Launch::default()
    })
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

/// Kills process `pid` with `sig` (until `try_wait` gives its exit status) and returns whether
/// the kernel reported a core dump.
///
/// Rust's runtime catches SIGSEGV (to report stack overflows): a SIGSEGV sent by `kill`
/// only takes that handler away (it restores the default and returns), so the signal is sent
/// until the process dies of it.
fn crash(pid: u32, sig: Signal, mut try_wait: impl FnMut() -> Option<ExitStatus>) -> bool {
    let mut status = None;
    let died = wait_until(Duration::from_secs(10), || {
        let _ = kill(Pid::from_raw(pid as i32), sig);
        status = try_wait();
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
    let control_pid = control.0.id();
    let control_dumped = crash(control_pid, Signal::SIGSEGV, || {
        control.0.try_wait().unwrap()
    });
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
        let pid = agent.pid();
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

        let dumped = crash(pid, sig, || agent.exit_status());
        assert!(!dumped, "the agent dumped core on {sig}");
        // The kernel writes a core file before the exit status can be collected.
        let cores = core_files(shared.dir.path());
        assert!(cores.is_empty(), "core files after {sig}: {cores:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Locking memory against swap

/// A field of /proc/PID/status in kB (`VmSize:`, `VmLck:`).
fn status_kb(pid: u32, field: &str) -> u64 {
    proc_field(pid, "status", field)
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in {field} of /proc/{pid}/status"))
}

/// Adds `n` fresh Ed25519 keys through raw ADD frames; every one must succeed.
fn add_many_keys(agent: &Agent, n: u32) {
    let mut c = RawClient::connect(agent.sock());
    for i in 0..n {
        let seed: [u8; 32] = Sha512::digest(format!("memlock key {i}"))[..32]
            .try_into()
            .unwrap();
        let pk = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let mut body = string(b"ssh-ed25519");
        body.extend(string(&pk));
        body.extend(string(&[&seed[..], &pk[..]].concat()));
        body.extend(string(format!("memlock-{i}").as_bytes()));
        let reply = c.request(SSH_AGENTC_ADD_IDENTITY, &body);
        assert_eq!(reply, [SSH_AGENT_SUCCESS], "key {i} of {n} refused");
    }
}

/// Root is not enough to lock all memory: under a finite RLIMIT_MEMLOCK and without
/// CAP_IPC_LOCK (a container, a systemd unit with CapabilityBoundingSet), MCL_FUTURE would
/// make every allocation beyond the limit fail, and the agent abort with every key. With the
/// capability the limit does not apply and memory is locked; without it, it is not (said under
/// -d). Either way the agent grows well past the limit while 2048 keys are added.
#[test]
fn memory_is_locked_only_with_cap_ipc_lock() {
    if !is_root() {
        skip("dropping CAP_IPC_LOCK from a root agent needs root: run the tests as root");
        return;
    }
    if !sshkeep_only() {
        return;
    }
    for tool in ["/usr/bin/prlimit", "/usr/bin/setpriv"] {
        if !Path::new(tool).exists() {
            skip(&format!("{tool} is missing: install util-linux"));
            return;
        }
    }
    // The limit: 256 KiB above the agent's whole address space at start, so that locking
    // everything succeeds at start and only later growth would hit it.
    let bin = agent_bin();
    let mut probe = Agent::start_bin(&bin, &["-d"]);
    let limit = (status_kb(probe.pid(), "VmSize:") + 256) * 1024;
    probe.stop();
    let memlock = format!("--memlock={limit}:{limit}");
    let without_cap = [
        "/usr/bin/prlimit",
        &memlock,
        "/usr/bin/setpriv",
        "--inh-caps=-ipc_lock",
        "--bounding-set=-ipc_lock",
    ];
    for (wrapper, capable) in [
        (&["/usr/bin/prlimit", &memlock][..], true),
        (&without_cap[..], false),
    ] {
        let mut agent = Agent::start_wrapped(wrapper, &bin, &["-d"], &[]);
        let pid = agent.pid();
        let caps = proc_field(pid, "status", "CapEff:");
        let cap_bit = u64::from_str_radix(caps.split_whitespace().nth(1).unwrap(), 16).unwrap()
            & (1 << 14)
            != 0;
        assert_eq!(cap_bit, capable, "{wrapper:?}: {caps}");
        let locked = status_kb(pid, "VmLck:");
        let said = agent
            .stderr_text()
            .contains("memory not locked against swap");
        if capable {
            assert!(
                locked > 0 && !said,
                "not locked with CAP_IPC_LOCK: VmLck {locked} kB"
            );
        } else {
            assert!(
                locked == 0 && said,
                "locked without CAP_IPC_LOCK under a {limit}-byte limit: VmLck {locked} kB, \
                 log:\n{}",
                agent.stderr_text()
            );
        }
        add_many_keys(&agent, 2048);
        assert!(agent.is_running(), "{wrapper:?}: the agent died");
        let grown = status_kb(pid, "VmSize:") * 1024;
        assert!(
            grown > limit + 256 * 1024,
            "the agent grew only to {grown} bytes, not past the {limit}-byte limit"
        );
        let listed = ssh_add(&agent, &["-l"]);
        assert_eq!(stdout(&listed).lines().count(), 2048);
        if capable {
            assert!(status_kb(pid, "VmLck:") * 1024 > limit, "growth not locked");
        }
    }
}
