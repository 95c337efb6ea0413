//! Side-by-side benchmark of sshkeep against OpenSSH's `ssh-agent`.
//!
//! ```text
//! cargo bench --bench agents -- [--quick] [--openssh PATH] [--sshkeep PATH] [--json PATH]
//! ```
//!
//! Both agents are started here in the foreground (`-D -a SOCK`), given the same keys, and measured
//! in alternating rounds (sshkeep then OpenSSH, then OpenSSH then sshkeep, ...), so that drift on a
//! noisy machine hits both alike. A rate or a time is the median of the rounds; latency percentiles
//! are taken over the samples of all rounds. Every signature an agent returns is verified: a fast
//! wrong answer is not a win. The result is one table (ratio > 1.0 means sshkeep is better) and the
//! same figures as JSON.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use signature::Verifier;
use ssh_key::EcdsaCurve;
use ssh_key::Signature;
use ssh_key::encoding::Encode;
use ssh_key::private::{EcdsaKeypair, Ed25519Keypair, KeypairData, RsaKeypair};
use ssh_key::public::KeyData;

// Agent protocol messages (RFC 9987).
const FAILURE: u8 = 5;
const SUCCESS: u8 = 6;
const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;
const ADD_IDENTITY: u8 = 17;
const REMOVE_ALL_IDENTITIES: u8 = 19;
const SIGN_RSA_SHA2_256: u32 = 2;
const SIGN_RSA_SHA2_512: u32 = 4;

/// Clients refuse longer replies (OpenSSH: MAX_AGENT_REPLY_LEN).
const MAX_REPLY_LEN: usize = 256 * 1024;
/// Size of the data to sign, about what an SSH user-authentication request is.
const DATA_LEN: usize = 256;
/// Keys loaded for the list and add measurements.
const BULK_KEYS: usize = 1000;
/// Positions of the RSA-2048 keys among the bulk keys; the rest are Ed25519 and ECDSA.
const BULK_RSA_AT: [usize; 4] = [50, 300, 550, 800];
/// Clients signing with RSA-4096 while one client's Ed25519 latency is measured.
const HAMMERS: usize = 4;
/// No single reply may take longer than this (64 clients queueing for RSA-4096 stay well below).
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// An agent must answer its first request within this time after being started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

const SSHKEEP: usize = 0;
const OPENSSH: usize = 1;
const NAMES: [&str; 2] = ["sshkeep", "OpenSSH"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sshkeep: bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
    quick: bool,
    sshkeep: PathBuf,
    openssh: PathBuf,
    json: PathBuf,
}

/// Round sizes: measurements are sized by time, not by counts.
struct Plan {
    rounds: usize,
    slice: Duration,
    fair_slice: Duration,
    startup_runs: usize,
    eval_runs: usize,
}

const USAGE: &str = "usage: cargo bench --bench agents -- [--quick] [--openssh PATH] [--sshkeep PATH] [--json PATH]";

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        quick: false,
        sshkeep: target_dir().join("release").join("sshkeep"),
        openssh: PathBuf::from("/usr/bin/ssh-agent"),
        json: target_dir().join("bench.json"),
    };
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<PathBuf, String> {
            match inline.clone() {
                Some(v) => Ok(PathBuf::from(v)),
                None => args
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("{name} needs a path\n{USAGE}")),
            }
        };
        match flag.as_str() {
            "--quick" => opts.quick = true,
            "--sshkeep" => opts.sshkeep = value("--sshkeep")?,
            "--openssh" => opts.openssh = value("--openssh")?,
            "--json" => opts.json = value("--json")?,
            // cargo passes --bench to every bench binary.
            "--bench" => {}
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    Ok(opts)
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                rounds: 1,
                slice: Duration::from_millis(100),
                fair_slice: Duration::from_millis(300),
                startup_runs: 3,
                eval_runs: 2,
            }
        } else {
            Plan {
                rounds: 3,
                slice: Duration::from_millis(500),
                fair_slice: Duration::from_millis(1000),
                startup_runs: 10,
                eval_runs: 5,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire format

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_string(buf: &mut Vec<u8>, s: &[u8]) {
    put_u32(buf, u32::try_from(s.len()).unwrap_or(u32::MAX));
    buf.extend_from_slice(s);
}

fn take_u32(buf: &[u8]) -> Result<(u32, &[u8]), String> {
    match buf.split_first_chunk::<4>() {
        Some((n, rest)) => Ok((u32::from_be_bytes(*n), rest)),
        None => Err("truncated reply".into()),
    }
}

fn take_string(buf: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let (len, rest) = take_u32(buf)?;
    let len = usize::try_from(len).map_err(|_| "truncated reply")?;
    if len > rest.len() {
        return Err("truncated reply".into());
    }
    Ok(rest.split_at(len))
}

fn msg_name(t: u8) -> String {
    match t {
        FAILURE => "FAILURE".into(),
        SUCCESS => "SUCCESS".into(),
        IDENTITIES_ANSWER => "IDENTITIES_ANSWER".into(),
        SIGN_RESPONSE => "SIGN_RESPONSE".into(),
        30 => "EXTENSION_FAILURE".into(),
        102 => "ssh.com FAILURE".into(),
        t => format!("message {t}"),
    }
}

/// The data signed by request `id`: reproducible, so signatures can be verified afterwards.
fn sign_data(id: u64) -> [u8; DATA_LEN] {
    let mut data = [0u8; DATA_LEN];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    data[..8].copy_from_slice(&id.to_be_bytes());
    data
}

/// One client connection with blocking I/O.
struct Client {
    stream: UnixStream,
    out: Vec<u8>,
    reply: Vec<u8>,
}

impl Client {
    fn connect(sock: &Path) -> Result<Client, String> {
        let stream = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
        Client::with(stream)
    }

    fn with(stream: UnixStream) -> Result<Client, String> {
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| format!("socket timeout: {e}"))?;
        Ok(Client {
            stream,
            out: Vec::with_capacity(1024),
            reply: Vec::with_capacity(1024),
        })
    }

    /// Sends one request (its body, without the length) and returns the reply body.
    fn call(&mut self, body: &[u8]) -> Result<&[u8], String> {
        self.out.clear();
        put_string(&mut self.out, body);
        self.stream
            .write_all(&self.out)
            .map_err(|e| io_error("send", &e))?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .map_err(|e| io_error("receive", &e))?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_REPLY_LEN {
            return Err(format!("reply of {len} bytes"));
        }
        self.reply.resize(len, 0);
        self.stream
            .read_exact(&mut self.reply)
            .map_err(|e| io_error("receive", &e))?;
        Ok(&self.reply)
    }

    /// Sends a request that must be answered with SUCCESS.
    fn call_ok(&mut self, body: &[u8], what: &str) -> Result<(), String> {
        match self.call(body)?.first() {
            Some(&SUCCESS) => Ok(()),
            Some(&t) => Err(format!("{what}: agent replied {}", msg_name(t))),
            None => Err(format!("{what}: empty reply")),
        }
    }
}

fn io_error(what: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => format!("{what}: agent closed the connection"),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("{what}: no reply within {} s", IO_TIMEOUT.as_secs())
        }
        _ => format!("{what}: {e}"),
    }
}

/// Checks an IDENTITIES_ANSWER against the expected key blobs, in order.
fn check_identities(reply: &[u8], expected: &[&[u8]]) -> Result<(), String> {
    let rest = match reply.split_first() {
        Some((&IDENTITIES_ANSWER, rest)) => rest,
        Some((&t, _)) => return Err(format!("list: agent replied {}", msg_name(t))),
        None => return Err("list: empty reply".into()),
    };
    let (n, mut rest) = take_u32(rest)?;
    if n as usize != expected.len() {
        return Err(format!("list: {n} keys instead of {}", expected.len()));
    }
    for (i, want) in expected.iter().enumerate() {
        let (blob, r) = take_string(rest)?;
        let (_comment, r) = take_string(r)?;
        if blob != *want {
            return Err(format!(
                "list: key {i} is not the key added at that position"
            ));
        }
        rest = r;
    }
    if !rest.is_empty() {
        return Err("list: trailing bytes".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Keys

struct TestKey {
    label: String,
    public: KeyData,
    blob: Vec<u8>,
    /// The whole ADD_IDENTITY body.
    add: Vec<u8>,
    flags: u32,
    sig_alg: &'static str,
}

impl TestKey {
    fn new(label: &str, kp: &KeypairData, comment: &str) -> Result<TestKey, String> {
        let public = KeyData::try_from(kp).map_err(|e| format!("{label}: {e}"))?;
        let blob = public.encode_vec().map_err(|e| format!("{label}: {e}"))?;
        let mut add = vec![ADD_IDENTITY];
        // string key type, then the private fields: KeypairData's encoding is exactly that.
        kp.encode(&mut add).map_err(|e| format!("{label}: {e}"))?;
        put_string(&mut add, comment.as_bytes());
        let (flags, sig_alg) = match kp {
            KeypairData::Ed25519(_) => (0, "ssh-ed25519"),
            KeypairData::Ecdsa(EcdsaKeypair::NistP256 { .. }) => (0, "ecdsa-sha2-nistp256"),
            KeypairData::Ecdsa(EcdsaKeypair::NistP384 { .. }) => (0, "ecdsa-sha2-nistp384"),
            KeypairData::Ecdsa(EcdsaKeypair::NistP521 { .. }) => (0, "ecdsa-sha2-nistp521"),
            // RSA-2048 is measured with rsa-sha2-256, RSA-4096 with rsa-sha2-512.
            KeypairData::Rsa(rsa) if rsa.public().key_size() > 2048 => {
                (SIGN_RSA_SHA2_512, "rsa-sha2-512")
            }
            KeypairData::Rsa(_) => (SIGN_RSA_SHA2_256, "rsa-sha2-256"),
            _ => return Err(format!("{label}: unexpected key type")),
        };
        Ok(TestKey {
            label: label.to_owned(),
            public,
            blob,
            add,
            flags,
            sig_alg,
        })
    }

    /// A SIGN_REQUEST body and the offset of the data in it (patched per request).
    fn sign_body(&self) -> (Vec<u8>, usize) {
        let mut body = vec![SIGN_REQUEST];
        put_string(&mut body, &self.blob);
        let at = body.len() + 4;
        put_string(&mut body, &sign_data(0));
        put_u32(&mut body, self.flags);
        (body, at)
    }

    fn verify(&self, id: u64, blob: &[u8]) -> Result<(), String> {
        let sig = Signature::try_from(blob)
            .map_err(|e| format!("{}: signature does not parse: {e}", self.label))?;
        if sig.algorithm().as_str() != self.sig_alg {
            return Err(format!(
                "{}: signature is {} instead of {}",
                self.label,
                sig.algorithm().as_str(),
                self.sig_alg
            ));
        }
        self.public
            .verify(&sign_data(id), &sig)
            .map_err(|_| format!("{}: a signature does not verify", self.label))
    }
}

struct Keys {
    /// Ed25519, P-256, P-384, P-521, RSA-2048, RSA-4096.
    sign: Vec<TestKey>,
    /// BULK_KEYS keys of mixed types.
    bulk: Vec<TestKey>,
}

fn rng() -> getrandom::rand_core::UnwrapErr<getrandom::SysRng> {
    getrandom::rand_core::UnwrapErr(getrandom::SysRng)
}

fn generate_keys() -> Result<Keys, String> {
    // RSA generation dominates; run each RSA key on its own thread.
    let rsa_bits: Vec<usize> = [4096, 2048]
        .into_iter()
        .chain(BULK_RSA_AT.iter().map(|_| 2048))
        .collect();
    let mut rsa = thread::scope(|s| {
        let handles: Vec<_> = rsa_bits
            .iter()
            .map(|&bits| {
                s.spawn(move || {
                    RsaKeypair::random(&mut rng(), bits)
                        .map(KeypairData::Rsa)
                        .map_err(|e| format!("RSA-{bits} generation: {e}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("RSA generation panicked".into()))
            })
            .collect::<Result<Vec<_>, String>>()
    })?
    .into_iter();
    let mut next_rsa = || rsa.next().ok_or_else(|| "missing RSA key".to_string());
    let ecdsa = |curve| {
        EcdsaKeypair::random(&mut rng(), curve)
            .map(KeypairData::Ecdsa)
            .map_err(|e| format!("ECDSA generation: {e}"))
    };

    let rsa4096 = next_rsa()?;
    let rsa2048 = next_rsa()?;
    let sign = vec![
        TestKey::new(
            "Ed25519",
            &KeypairData::Ed25519(Ed25519Keypair::random(&mut rng())),
            "bench-ed25519",
        )?,
        TestKey::new("ECDSA P-256", &ecdsa(EcdsaCurve::NistP256)?, "bench-p256")?,
        TestKey::new("ECDSA P-384", &ecdsa(EcdsaCurve::NistP384)?, "bench-p384")?,
        TestKey::new("ECDSA P-521", &ecdsa(EcdsaCurve::NistP521)?, "bench-p521")?,
        TestKey::new("RSA-2048", &rsa2048, "bench-rsa2048")?,
        TestKey::new("RSA-4096", &rsa4096, "bench-rsa4096")?,
    ];

    let mut bulk = Vec::with_capacity(BULK_KEYS);
    for i in 0..BULK_KEYS {
        let kp = if BULK_RSA_AT.contains(&i) {
            next_rsa()?
        } else {
            match i % 8 {
                0..=4 => KeypairData::Ed25519(Ed25519Keypair::random(&mut rng())),
                5 => ecdsa(EcdsaCurve::NistP256)?,
                6 => ecdsa(EcdsaCurve::NistP384)?,
                _ => ecdsa(EcdsaCurve::NistP521)?,
            }
        };
        bulk.push(TestKey::new(
            &format!("bulk key {i}"),
            &kp,
            &format!("bench-bulk-{i}"),
        )?);
    }
    Ok(Keys { sign, bulk })
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A private directory for the sockets, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("sshkeep-bench.{}.{nanos:x}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One agent under test, running in the foreground.
struct Agent {
    side: usize,
    bin: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Why the agent is not running, when it could not be started.
    failed: Option<String>,
}

impl Agent {
    fn new(side: usize, bin: &Path, dir: &Path) -> Agent {
        Agent {
            side,
            bin: bin.to_owned(),
            sock: dir.join(format!("{}.sock", NAMES[side])),
            log: dir.join(format!("{}.log", NAMES[side])),
            child: None,
            failed: None,
        }
    }

    fn name(&self) -> &'static str {
        NAMES[self.side]
    }

    fn start(&mut self) -> Result<(), String> {
        self.stop();
        match spawn_ready(&self.bin, &self.sock, &self.log) {
            Ok((child, _)) => {
                self.child = Some(child);
                self.failed = None;
                Ok(())
            }
            Err(e) => {
                self.failed = Some(format!("{} did not start: {e}", self.name()));
                Err(e)
            }
        }
    }

    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How the agent ended, if it was running and is no more.
    fn exited(&mut self) -> Option<String> {
        match self.child.as_mut()?.try_wait() {
            Ok(Some(status)) => Some(format!("exited ({status})")),
            _ => None,
        }
    }

    /// Restarts the agent if it died; returns a note saying so. An agent that could not be
    /// (re)started is not tried again: its rows report the connection errors.
    fn revive(&mut self, during: &str) -> Option<String> {
        let status = match self.child.as_mut().map(Child::try_wait)? {
            Ok(None) => return None,
            Ok(Some(status)) => format!("exited ({status})"),
            Err(e) => format!("could not be waited for ({e})"),
        };
        let log = read_log(&self.log);
        self.child = None;
        let restarted = match self.start() {
            Ok(()) => "restarted".to_owned(),
            Err(e) => format!("restart failed: {e}"),
        };
        Some(format!(
            "{} {status} before {during}; {restarted}{log}",
            self.name()
        ))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_log(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => format!(" (stderr: {})", s.trim().replace('\n', " / ")),
        _ => String::new(),
    }
}

/// Starts `bin -D -a sock` and waits until it answers REQUEST_IDENTITIES.
fn spawn_ready(bin: &Path, sock: &Path, log: &Path) -> Result<(Child, Duration), String> {
    let _ = fs::remove_file(sock);
    let stderr = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .arg("-D")
        .arg("-a")
        .arg(sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    loop {
        if let Ok(stream) = UnixStream::connect(sock) {
            let answered = Client::with(stream).and_then(|mut c| {
                c.call(&[REQUEST_IDENTITIES]).and_then(|r| match r.first() {
                    Some(&IDENTITIES_ANSWER) => Ok(()),
                    Some(&t) => Err(format!("first list: agent replied {}", msg_name(t))),
                    None => Err("first list: empty reply".into()),
                })
            });
            let elapsed = t0.elapsed();
            return match answered {
                Ok(()) => Ok((child, elapsed)),
                Err(e) => {
                    terminate(child);
                    Err(format!("{e}{}", read_log(log)))
                }
            };
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(format!(
                    "{} -D -a {} exited ({status}) before answering{}",
                    bin.display(),
                    sock.display(),
                    read_log(log)
                ));
            }
            Ok(None) if t0.elapsed() > START_TIMEOUT => {
                terminate(child);
                return Err(format!(
                    "{} did not answer within {} s",
                    bin.display(),
                    START_TIMEOUT.as_secs()
                ));
            }
            _ => thread::yield_now(),
        }
    }
}

/// SIGTERM, then SIGKILL if the agent is still there after 2 s.
fn terminate(mut child: Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        match child.try_wait() {
            Ok(None) => thread::sleep(Duration::from_millis(1)),
            _ => return,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory(pid: Option<u32>) -> Result<(f64, f64), String> {
    let pid = pid.ok_or("agent not running")?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let field = |name: &str| -> Result<f64, String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

// ---------------------------------------------------------------------------------------------
// Measurements

/// One round of one measurement on one agent.
#[derive(Default)]
struct Sample {
    /// Rate (per second) or time (milliseconds), as the row says.
    value: f64,
    /// Per-request latencies in nanoseconds.
    lat: Vec<u64>,
    /// Anything else a measurement reports (memory after the add).
    extra: Vec<f64>,
}

/// Removes all keys, then adds `keys` one by one.
fn load(sock: &Path, keys: &[TestKey]) -> Result<(), String> {
    let mut c = Client::connect(sock)?;
    c.call_ok(&[REMOVE_ALL_IDENTITIES], "remove all")?;
    for k in keys {
        c.call_ok(&k.add, &format!("add {} ({})", k.label, k.sig_alg))?;
    }
    Ok(())
}

/// Removes all keys, then adds each key, reporting each key's outcome.
fn load_each(sock: &Path, keys: &[TestKey]) -> Vec<Result<(), String>> {
    let mut c = match Client::connect(sock) {
        Ok(c) => c,
        Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
    };
    if let Err(e) = c.call_ok(&[REMOVE_ALL_IDENTITIES], "remove all") {
        return keys.iter().map(|_| Err(e.clone())).collect();
    }
    keys.iter()
        .map(|k| c.call_ok(&k.add, &format!("add {}", k.label)))
        .collect()
}

/// Times the adding of `keys` to an empty agent; `extra` = memory afterwards.
fn add_run(agent: &Agent, keys: &[TestKey]) -> Result<Sample, String> {
    let mut c = Client::connect(&agent.sock)?;
    c.call_ok(&[REMOVE_ALL_IDENTITIES], "remove all")?;
    let t0 = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        c.call_ok(&k.add, &format!("add key {i} ({})", k.sig_alg))?;
    }
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let (rss, hwm) = memory(agent.pid())?;
    Ok(Sample {
        value: ms,
        lat: Vec::new(),
        extra: vec![rss, hwm],
    })
}

/// REQUEST_IDENTITIES round trips per second on one connection.
fn list_run(sock: &Path, expected: &[&[u8]], slice: Duration) -> Result<Sample, String> {
    let mut c = Client::connect(sock)?;
    let first = c.call(&[REQUEST_IDENTITIES])?.to_vec();
    check_identities(&first, expected)?;
    let mut lat = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < slice {
        let t = Instant::now();
        let reply = c.call(&[REQUEST_IDENTITIES])?;
        lat.push(t.elapsed().as_nanos() as u64);
        if reply != first.as_slice() {
            return Err("list: answer changed between requests".into());
        }
    }
    Ok(Sample {
        value: lat.len() as f64 / t0.elapsed().as_secs_f64(),
        lat,
        extra: Vec::new(),
    })
}

/// Connect + REQUEST_IDENTITIES + close, per second.
fn churn_run(sock: &Path, expected: &[&[u8]], slice: Duration) -> Result<Sample, String> {
    let first = Client::connect(sock)?.call(&[REQUEST_IDENTITIES])?.to_vec();
    check_identities(&first, expected)?;
    let mut lat = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < slice {
        let t = Instant::now();
        let mut c = Client::connect(sock)?;
        if c.call(&[REQUEST_IDENTITIES])? != first.as_slice() {
            return Err("list: answer changed between connections".into());
        }
        drop(c);
        lat.push(t.elapsed().as_nanos() as u64);
    }
    Ok(Sample {
        value: lat.len() as f64 / t0.elapsed().as_secs_f64(),
        lat,
        extra: Vec::new(),
    })
}

/// What one signing client did.
struct Signed {
    lat: Vec<u64>,
    sigs: Vec<(u64, Vec<u8>)>,
    end: Instant,
}

/// Signs with `key` on `c` until `stop` says so; request ids are `tag << 40 | n`.
fn sign_loop(
    c: &mut Client,
    key: &TestKey,
    tag: u64,
    stop: &dyn Fn() -> bool,
) -> Result<Signed, String> {
    let (mut body, at) = key.sign_body();
    let mut out = Signed {
        lat: Vec::new(),
        sigs: Vec::new(),
        end: Instant::now(),
    };
    let mut n: u64 = 0;
    while !stop() {
        let id = (tag << 40) | n;
        n += 1;
        body[at..at + 8].copy_from_slice(&id.to_be_bytes());
        let t = Instant::now();
        let reply = c.call(&body)?;
        out.end = Instant::now();
        out.lat.push(out.end.duration_since(t).as_nanos() as u64);
        let rest = match reply.split_first() {
            Some((&SIGN_RESPONSE, rest)) => rest,
            Some((&t, _)) => {
                return Err(format!("sign {}: agent replied {}", key.label, msg_name(t)));
            }
            None => return Err(format!("sign {}: empty reply", key.label)),
        };
        let (sig, rest) = take_string(rest)?;
        if !rest.is_empty() {
            return Err(format!("sign {}: trailing bytes", key.label));
        }
        out.sigs.push((id, sig.to_vec()));
    }
    Ok(out)
}

/// Verifies every signature, on all cores, after the timed part.
fn verify_all(key: &TestKey, sigs: &[(u64, Vec<u8>)]) -> Result<(), String> {
    let threads = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let chunk = sigs.len().div_ceil(threads).max(1);
    thread::scope(|s| {
        let handles: Vec<_> = sigs
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().try_for_each(|(id, sig)| key.verify(*id, sig))))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err("verification panicked".into()))
        })
    })
}

/// `clients` concurrent clients signing with `key` for `slice`; the value is total signatures/s.
fn sign_run(sock: &Path, key: &TestKey, clients: usize, slice: Duration) -> Result<Sample, String> {
    let conns = (0..clients)
        .map(|_| Client::connect(sock))
        .collect::<Result<Vec<_>, String>>()?;
    let barrier = Barrier::new(clients + 1);
    let (start, results) = thread::scope(|s| {
        let handles: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(t, mut c)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let deadline = Instant::now() + slice;
                    sign_loop(&mut c, key, t as u64, &|| Instant::now() >= deadline)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<Result<Signed, String>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into())))
            .collect();
        (start, results)
    });
    let mut lat = Vec::new();
    let mut sigs = Vec::new();
    let mut end = start;
    for r in results {
        let r = r?;
        lat.extend(r.lat);
        sigs.extend(r.sigs);
        end = end.max(r.end);
    }
    verify_all(key, &sigs)?;
    let secs = end.duration_since(start).as_secs_f64();
    Ok(Sample {
        value: if secs > 0.0 {
            sigs.len() as f64 / secs
        } else {
            0.0
        },
        lat,
        extra: Vec::new(),
    })
}

/// One client's Ed25519 latency while HAMMERS other clients sign with RSA-4096 non-stop.
fn fairness_run(
    sock: &Path,
    ed: &TestKey,
    rsa: &TestKey,
    slice: Duration,
) -> Result<Sample, String> {
    let mut probe = Client::connect(sock)?;
    let hammers = (0..HAMMERS)
        .map(|_| Client::connect(sock))
        .collect::<Result<Vec<_>, String>>()?;
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(HAMMERS + 1);
    let (probed, hammered) = thread::scope(|s| {
        let handles: Vec<_> = hammers
            .into_iter()
            .enumerate()
            .map(|(t, mut c)| {
                let (barrier, stop) = (&barrier, &stop);
                s.spawn(move || {
                    barrier.wait();
                    sign_loop(&mut c, rsa, t as u64, &|| stop.load(Ordering::Relaxed))
                })
            })
            .collect();
        barrier.wait();
        // Let every hammer have a request in the agent before probing.
        thread::sleep(Duration::from_millis(20));
        let deadline = Instant::now() + slice;
        let probed = sign_loop(&mut probe, ed, 1 << 20, &|| Instant::now() >= deadline);
        stop.store(true, Ordering::Relaxed);
        let hammered: Vec<Result<Signed, String>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into())))
            .collect();
        (probed, hammered)
    });
    let probed = probed?;
    let mut rsa_sigs = Vec::new();
    for h in hammered {
        rsa_sigs.extend(h?.sigs);
    }
    if rsa_sigs.is_empty() {
        return Err("no RSA-4096 signature completed during the probe".into());
    }
    verify_all(ed, &probed.sigs)?;
    verify_all(rsa, &rsa_sigs)?;
    Ok(Sample {
        value: 0.0,
        lat: probed.lat,
        extra: Vec::new(),
    })
}

/// Start-up to the first answered REQUEST_IDENTITIES, in milliseconds.
fn startup_run(bin: &Path, dir: &Path, side: usize) -> Result<Sample, String> {
    let sock = dir.join(format!("start-{}.sock", NAMES[side]));
    let log = dir.join(format!("start-{}.log", NAMES[side]));
    let (child, took) = spawn_ready(bin, &sock, &log)?;
    terminate(child);
    Ok(Sample {
        value: took.as_secs_f64() * 1e3,
        ..Sample::default()
    })
}

/// `eval $(agent -s)`, one list, `agent -k`, until the agent is gone, in milliseconds.
fn eval_run(bin: &Path, dir: &Path) -> Result<Sample, String> {
    let t0 = Instant::now();
    let out = Command::new(bin)
        .arg("-s")
        .env("TMPDIR", dir)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("SSH_AGENT_PID")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("start {} -s: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "-s exited ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', " / ")
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let var = |name: &str| -> Result<String, String> {
        let at = text
            .find(&format!("{name}="))
            .ok_or_else(|| format!("-s printed no {name}"))?;
        let value = &text[at + name.len() + 1..];
        let value = value.split(';').next().unwrap_or("").trim();
        Ok(value.trim_matches('\'').to_owned())
    };
    let sock = PathBuf::from(var("SSH_AUTH_SOCK")?);
    let pid_text = var("SSH_AGENT_PID")?;
    let pid: i32 = pid_text
        .parse()
        .map_err(|_| format!("-s printed SSH_AGENT_PID={pid_text}"))?;
    let listed =
        Client::connect(&sock).and_then(|mut c| match c.call(&[REQUEST_IDENTITIES])?.first() {
            Some(&IDENTITIES_ANSWER) => Ok(()),
            Some(&t) => Err(format!("list: agent replied {}", msg_name(t))),
            None => Err("list: empty reply".into()),
        });
    let killed = Command::new(bin)
        .arg("-k")
        .env("SSH_AGENT_PID", &pid_text)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("start {} -k: {e}", bin.display()))
        .and_then(|o| {
            if o.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "-k exited ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr)
                        .trim()
                        .replace('\n', " / ")
                ))
            }
        });
    let gone = wait_gone(pid);
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    if gone.is_err() || killed.is_err() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = wait_gone(pid);
    }
    listed?;
    killed?;
    gone?;
    Ok(Sample {
        value: ms,
        ..Sample::default()
    })
}

/// Waits until a daemonised agent has exited. We are its subreaper, so it is reaped here; if not
/// (the subreaper could not be set), a zombie counts as gone.
fn wait_gone(pid: i32) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => return Ok(()),
            Err(_) => match fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return Ok(()),
                Ok(stat)
                    if stat
                        .rsplit(')')
                        .next()
                        .is_some_and(|s| s.trim_start().starts_with('Z')) =>
                {
                    return Ok(());
                }
                Ok(_) => {}
            },
        }
        if t0.elapsed() > START_TIMEOUT {
            return Err(format!(
                "agent {pid} still running {} s after -k",
                START_TIMEOUT.as_secs()
            ));
        }
        thread::sleep(Duration::from_micros(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(Clone, Copy, PartialEq)]
enum Better {
    Higher,
    Lower,
    /// Shown for information; no ratio.
    Neither,
}

struct Row {
    section: u8,
    metric: String,
    better: Better,
    values: [Result<f64, String>; 2],
    target: Option<Target>,
}

/// What the project aims for on a row.
#[derive(Clone, Copy)]
enum Target {
    /// The ratio is at least this.
    MinRatio(f64),
    /// sshkeep's own figure is at most this.
    MaxValue(f64),
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::MinRatio(t) => format!("ratio >= {t:.1}"),
            Target::MaxValue(t) => format!("sshkeep <= {t:.1}"),
        }
    }
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        let (Ok(a), Ok(b)) = (&self.values[SSHKEEP], &self.values[OPENSSH]) else {
            return None;
        };
        match self.better {
            Better::Higher if *b > 0.0 => Some(a / b),
            Better::Lower if *a > 0.0 => Some(b / a),
            _ => None,
        }
    }

    fn verdict(&self) -> Option<bool> {
        Some(match self.target? {
            Target::MinRatio(t) => self.ratio().is_some_and(|r| r >= t),
            Target::MaxValue(t) => self.values[SSHKEEP].as_ref().is_ok_and(|v| *v <= t),
        })
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile of latencies (ns), in milliseconds.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1e6
}

fn pooled_latencies(samples: &[Sample]) -> Vec<u64> {
    let mut lat: Vec<u64> = samples.iter().flat_map(|s| s.lat.iter().copied()).collect();
    lat.sort_unstable();
    lat
}

fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".into()
    } else if a >= 1000.0 {
        let s = format!("{v:.0}");
        // Thousands separators for readability.
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 && ch.is_ascii_digit() {
                out.push(',');
            }
            out.push(ch);
        }
        out
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn short_error(e: &str) -> String {
    const MAX: usize = 48;
    if e.chars().count() <= MAX {
        format!("error: {e}")
    } else {
        let cut: String = e.chars().take(MAX - 3).collect();
        format!("error: {cut}...")
    }
}

const SECTIONS: [&str; 9] = [
    "",
    "1. sign round trips, one client, sequential",
    "2. sign round trips, concurrent clients (total throughput; latency p50/p99)",
    "   fairness: one client's Ed25519 latency while 4 clients sign with RSA-4096",
    "3. REQUEST_IDENTITIES round trips, one client",
    "4. connect + list + close (what every ssh invocation does)",
    "5. adding 1000 keys (ADD_IDENTITY, mixed types, one connection)",
    "6. resident memory",
    "7. start-up",
];

fn render_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let v = |i: usize| match &r.values[i] {
                Ok(x) => fmt_value(*x),
                Err(e) => short_error(e),
            };
            let ratio = r
                .ratio()
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
            let target = match (r.target, r.verdict()) {
                (Some(t), Some(true)) => format!("{} ok", t.describe()),
                (Some(t), _) => format!("{} MISS", t.describe()),
                _ => String::new(),
            };
            [r.metric.clone(), v(SSHKEEP), v(OPENSSH), ratio, target]
        })
        .collect();
    let head = ["metric", "sshkeep", "OpenSSH", "ratio", "target"];
    let mut w = head.map(str::len);
    for c in &cells {
        for (i, s) in c.iter().enumerate() {
            w[i] = w[i].max(s.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, c: &[String; 5]| {
        let _ = writeln!(
            out,
            "{:<w0$} | {:>w1$} | {:>w2$} | {:>w3$} | {}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
    };
    line(&mut out, &head.map(str::to_owned));
    let total = w.iter().sum::<usize>() + 3 * 4;
    let _ = writeln!(out, "{}", "-".repeat(total));
    let mut section = 0;
    for (r, c) in rows.iter().zip(&cells) {
        if r.section != section {
            section = r.section;
            if let Some(title) = SECTIONS.get(usize::from(section)) {
                let _ = writeln!(out, "{title}");
            }
        }
        line(&mut out, c);
    }
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

struct Report<'a> {
    opts: &'a Options,
    plan: &'a Plan,
    rows: &'a [Row],
    notes: &'a [String],
    seconds: f64,
}

fn render_json(r: &Report) -> String {
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"quick\": {},", r.opts.quick);
    let _ = writeln!(out, "  \"rounds\": {},", r.plan.rounds);
    let _ = writeln!(out, "  \"round_seconds\": {},", r.plan.slice.as_secs_f64());
    let _ = writeln!(
        out,
        "  \"cpus\": {},",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        out,
        "  \"sshkeep_path\": {},",
        json_string(&r.opts.sshkeep.display().to_string())
    );
    let _ = writeln!(
        out,
        "  \"openssh_path\": {},",
        json_string(&r.opts.openssh.display().to_string())
    );
    let _ = writeln!(
        out,
        "  \"ratio_meaning\": \"greater than 1.0 means sshkeep is better\","
    );
    let _ = writeln!(out, "  \"duration_seconds\": {:.1},", r.seconds);
    out.push_str("  \"rows\": [\n");
    for (i, row) in r.rows.iter().enumerate() {
        let side = |s: usize| {
            let key = NAMES[s].to_lowercase();
            match &row.values[s] {
                Ok(v) => format!("\"{key}\": {}", json_number(*v)),
                Err(e) => format!("\"{key}\": null, \"{key}_error\": {}", json_string(e)),
            }
        };
        // "name (unit)" in the table; separate fields here.
        let (metric, unit) = match row.metric.rsplit_once(" (") {
            Some((m, u)) if u.ends_with(')') => (m, u.trim_end_matches(')')),
            _ => (row.metric.as_str(), ""),
        };
        let better = match row.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
            Better::Neither => "none",
        };
        let _ = write!(
            out,
            "    {{\"section\": {}, \"metric\": {}, \"unit\": {}, \"better\": \"{better}\", {}, {}, \"ratio\": {}",
            row.section,
            json_string(metric),
            json_string(unit),
            side(SSHKEEP),
            side(OPENSSH),
            row.ratio().map_or_else(|| "null".to_owned(), json_number),
        );
        if let Some(t) = row.target {
            let (kind, value) = match t {
                Target::MinRatio(v) => ("target_min_ratio", v),
                Target::MaxValue(v) => ("target_max_sshkeep", v),
            };
            let _ = write!(
                out,
                ", \"{kind}\": {}, \"met\": {}",
                json_number(value),
                row.verdict() == Some(true)
            );
        }
        out.push('}');
        out.push_str(if i + 1 < r.rows.len() { ",\n" } else { "\n" });
    }
    out.push_str("  ],\n  \"notes\": [");
    for (i, n) in r.notes.iter().enumerate() {
        out.push_str(if i == 0 { "\n    " } else { ",\n    " });
        out.push_str(&json_string(n));
    }
    out.push_str(if r.notes.is_empty() {
        "]\n}\n"
    } else {
        "\n  ]\n}\n"
    });
    out
}

// ---------------------------------------------------------------------------------------------
// The run

struct Bench<'a> {
    plan: &'a Plan,
    dir: PathBuf,
    bins: [PathBuf; 2],
    agents: [Agent; 2],
    rows: Vec<Row>,
    notes: Vec<String>,
    /// Which agent goes first in the next round.
    flip: bool,
    t0: Instant,
}

type Outcome = [Result<Vec<Sample>, String>; 2];

impl Bench<'_> {
    /// Progress on stderr, with the time since the start.
    fn say(&self, what: &str) {
        eprintln!("[{:6.1} s] {what}", self.t0.elapsed().as_secs_f64());
    }

    /// Runs `f` for `rounds` rounds on each agent, alternating which goes first.
    fn alternate(
        &mut self,
        rounds: usize,
        f: &mut dyn FnMut(usize, &Agent) -> Result<Sample, String>,
    ) -> Outcome {
        let mut out: Outcome = [Ok(Vec::new()), Ok(Vec::new())];
        for _ in 0..rounds {
            // Counted across measurements, so one-round (quick) runs alternate too.
            self.flip = !self.flip;
            let order = if self.flip {
                [SSHKEEP, OPENSSH]
            } else {
                [OPENSSH, SSHKEEP]
            };
            for side in order {
                if let Ok(samples) = &mut out[side] {
                    match f(side, &self.agents[side]) {
                        Ok(s) => samples.push(s),
                        Err(e) => {
                            // "connection closed" alone would hide a crash.
                            out[side] = Err(match self.agents[side].exited() {
                                Some(how) => format!("{e}: {} {how}", NAMES[side]),
                                None => e,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// `alternate` over the running agents, for `plan.rounds` rounds.
    fn measure(&mut self, f: &mut dyn FnMut(usize, &Agent) -> Result<Sample, String>) -> Outcome {
        self.alternate(self.plan.rounds, &mut |side, a| match &a.failed {
            Some(why) => Err(why.clone()),
            None => f(side, a),
        })
    }

    fn revive(&mut self, during: &str) -> [bool; 2] {
        let mut restarted = [false; 2];
        for side in [SSHKEEP, OPENSSH] {
            if let Some(note) = self.agents[side].revive(during) {
                self.say(&note);
                self.notes.push(note);
                restarted[side] = true;
            }
        }
        restarted
    }

    fn row(
        &mut self,
        section: u8,
        metric: String,
        better: Better,
        values: [Result<f64, String>; 2],
    ) {
        self.rows.push(Row {
            section,
            metric,
            better,
            values,
            target: None,
        });
    }

    fn target(&mut self, min_ratio: f64) {
        self.aim(Target::MinRatio(min_ratio));
    }

    fn aim(&mut self, target: Target) {
        if let Some(r) = self.rows.last_mut() {
            r.target = Some(target);
        }
    }

    fn memory_and_add(&mut self, keys: &Keys) {
        self.say(&format!("memory (empty) and adding {BULK_KEYS} keys"));
        self.revive("the memory measurement");
        let empty = [SSHKEEP, OPENSSH].map(|s| memory(self.agents[s].pid()));
        let pick = |m: &Result<(f64, f64), String>, hwm: bool| {
            m.clone().map(|(rss, h)| if hwm { h } else { rss })
        };
        self.row(
            7,
            "empty: VmRSS (KiB)".into(),
            Better::Lower,
            [pick(&empty[0], false), pick(&empty[1], false)],
        );
        self.target(1.0);
        self.row(
            7,
            "empty: VmHWM (KiB)".into(),
            Better::Lower,
            [pick(&empty[0], true), pick(&empty[1], true)],
        );
        self.target(1.0);

        let bulk = &keys.bulk;
        let out = self.measure(&mut |_, a| add_run(a, bulk));
        let time = out.each_ref().map(|r| {
            r.as_ref()
                .map(|s| median(s.iter().map(|x| x.value).collect()))
                .map_err(Clone::clone)
        });
        self.row(
            6,
            format!("time to add {BULK_KEYS} keys (ms)"),
            Better::Lower,
            time,
        );
        self.target(1.0);
        // Memory right after the first add of the keys.
        let mem = |hwm: usize| {
            out.each_ref().map(|r| match r {
                Ok(s) => s
                    .first()
                    .and_then(|x| x.extra.get(hwm).copied())
                    .ok_or_else(|| "no sample".to_owned()),
                Err(e) => Err(e.clone()),
            })
        };
        self.row(
            7,
            format!("{BULK_KEYS} keys: VmRSS (KiB)"),
            Better::Lower,
            mem(0),
        );
        self.target(1.0);
        self.row(
            7,
            format!("{BULK_KEYS} keys: VmHWM (KiB)"),
            Better::Lower,
            mem(1),
        );
        self.target(1.0);
    }

    fn lists(&mut self, keys: &Keys) {
        for n in [1, 100, BULK_KEYS] {
            self.say(&format!("list with {n} keys"));
            self.revive("the list measurement");
            let subset = &keys.bulk[..n];
            let loaded = [SSHKEEP, OPENSSH].map(|s| load(&self.agents[s].sock, subset));
            let expected: Vec<&[u8]> = subset.iter().map(|k| k.blob.as_slice()).collect();
            let slice = self.plan.slice;
            let out = self.measure(&mut |side, a| {
                loaded[side].clone()?;
                list_run(&a.sock, &expected, slice)
            });
            let rate = out.each_ref().map(|r| {
                r.as_ref()
                    .map(|s| median(s.iter().map(|x| x.value).collect()))
                    .map_err(Clone::clone)
            });
            self.row(
                4,
                format!("list, {n} key{} (req/s)", if n == 1 { "" } else { "s" }),
                Better::Higher,
                rate,
            );
            if n == BULK_KEYS {
                self.target(1.0);
            }
        }
    }

    fn signing(&mut self, keys: &Keys) {
        let mut loaded = [SSHKEEP, OPENSSH].map(|s| load_each(&self.agents[s].sock, &keys.sign));
        let slice = self.plan.slice;
        let mut seq_lat: Vec<[Option<Vec<u64>>; 2]> = Vec::new();
        for clients in [1, 8, 64] {
            for (k, key) in keys.sign.iter().enumerate() {
                self.say(&format!(
                    "sign {} with {clients} client{}",
                    key.label,
                    if clients == 1 { "" } else { "s" }
                ));
                for (side, again) in self
                    .revive(&format!("sign {}", key.label))
                    .into_iter()
                    .enumerate()
                {
                    if again {
                        loaded[side] = load_each(&self.agents[side].sock, &keys.sign);
                    }
                }
                let out = self.measure(&mut |side, a| {
                    loaded[side][k].clone()?;
                    sign_run(&a.sock, key, clients, slice)
                });
                let rate = out.each_ref().map(|r| {
                    r.as_ref()
                        .map(|s| median(s.iter().map(|x| x.value).collect()))
                        .map_err(Clone::clone)
                });
                let lat = out.each_ref().map(|r| {
                    r.as_ref()
                        .map(|s| pooled_latencies(s))
                        .map_err(Clone::clone)
                });
                // Aims: Ed25519 10x from one client (OpenSSH's agent unshields the key for every
                // signature), 3x from many; RSA 1.2x (graviola's assembly against OpenSSL's).
                let target = match (k, clients) {
                    (0, 1) => 10.0,
                    (0, _) => 3.0,
                    _ if key.label.starts_with("RSA") => 1.2,
                    _ => 1.0,
                };
                if clients == 1 {
                    self.row(1, format!("{} (sig/s)", key.label), Better::Higher, rate);
                    self.target(target);
                    seq_lat.push(lat.map(Result::ok));
                } else {
                    self.row(
                        2,
                        format!("{}, {clients} clients (sig/s)", key.label),
                        Better::Higher,
                        rate,
                    );
                    self.target(target);
                    for (p, name) in [(50.0, "p50"), (99.0, "p99")] {
                        let v = lat
                            .each_ref()
                            .map(|l| l.as_ref().map(|l| percentile(l, p)).map_err(Clone::clone));
                        self.row(
                            2,
                            format!("{}, {clients} clients {name} latency (ms)", key.label),
                            Better::Lower,
                            v,
                        );
                    }
                }
            }
        }

        self.say(&format!(
            "Ed25519 latency while {HAMMERS} clients sign with RSA-4096"
        ));
        for (side, again) in self
            .revive("the fairness measurement")
            .into_iter()
            .enumerate()
        {
            if again {
                loaded[side] = load_each(&self.agents[side].sock, &keys.sign);
            }
        }
        let (ed, rsa) = (&keys.sign[0], &keys.sign[5]);
        let fair_slice = self.plan.fair_slice;
        let out = self.measure(&mut |side, a| {
            loaded[side][0].clone()?;
            loaded[side][5].clone()?;
            fairness_run(&a.sock, ed, rsa, fair_slice)
        });
        let lat = out.each_ref().map(|r| {
            r.as_ref()
                .map(|s| pooled_latencies(s))
                .map_err(Clone::clone)
        });
        let alone = |k: usize, p: f64| -> [Result<f64, String>; 2] {
            [SSHKEEP, OPENSSH].map(|side| {
                seq_lat
                    .get(k)
                    .and_then(|l| l[side].as_ref())
                    .map(|l| percentile(l, p))
                    .ok_or_else(|| "no one-client measurement".to_owned())
            })
        };
        let loaded_p = |p: f64| {
            lat.each_ref()
                .map(|l| l.as_ref().map(|l| percentile(l, p)).map_err(Clone::clone))
        };
        self.row(
            3,
            "Ed25519 p50 latency, alone (ms)".into(),
            Better::Lower,
            alone(0, 50.0),
        );
        self.row(
            3,
            "Ed25519 p99 latency, alone (ms)".into(),
            Better::Lower,
            alone(0, 99.0),
        );
        self.row(
            3,
            "RSA-4096 signature, alone, p50 (ms)".into(),
            Better::Lower,
            alone(5, 50.0),
        );
        self.row(
            3,
            "Ed25519 p50 latency, under RSA-4096 load (ms)".into(),
            Better::Lower,
            loaded_p(50.0),
        );
        self.row(
            3,
            "Ed25519 p99 latency, under RSA-4096 load (ms)".into(),
            Better::Lower,
            loaded_p(99.0),
        );
        // How many RSA-4096 signatures' time the load added to the Ed25519 p99: the aim is at most one.
        let added = [SSHKEEP, OPENSSH].map(|side| {
            let under = loaded_p(99.0)[side].clone()?;
            let base = alone(0, 99.0)[side].clone()?;
            let rsa = alone(5, 50.0)[side].clone()?;
            Ok((under - base) / rsa)
        });
        self.row(
            3,
            "Ed25519 p99 added, in RSA-4096 signatures".into(),
            Better::Neither,
            added,
        );
        self.aim(Target::MaxValue(1.0));

        self.say("connect + list + close");
        let restarted = self.revive("connect + list + close");
        for (side, again) in restarted.into_iter().enumerate() {
            if again {
                loaded[side] = load_each(&self.agents[side].sock, &keys.sign);
            }
        }
        let expected: [Vec<&[u8]>; 2] = [SSHKEEP, OPENSSH].map(|side| {
            keys.sign
                .iter()
                .zip(&loaded[side])
                .filter(|(_, ok)| ok.is_ok())
                .map(|(k, _)| k.blob.as_slice())
                .collect()
        });
        let out = self.measure(&mut |side, a| churn_run(&a.sock, &expected[side], slice));
        let rate = out.each_ref().map(|r| {
            r.as_ref()
                .map(|s| median(s.iter().map(|x| x.value).collect()))
                .map_err(Clone::clone)
        });
        self.row(
            5,
            format!("connect + list ({} keys) + close (/s)", keys.sign.len()),
            Better::Higher,
            rate,
        );
        self.target(1.0);
    }

    fn startup(&mut self) {
        self.say("start-up");
        for agent in &mut self.agents {
            agent.stop();
        }
        let dir = self.dir.clone();
        let bins = self.bins.clone();
        let runs = self.plan.startup_runs;
        let out = self.alternate(runs, &mut |side, _| startup_run(&bins[side], &dir, side));
        let ms = out.each_ref().map(|r| {
            r.as_ref()
                .map(|s| median(s.iter().map(|x| x.value).collect()))
                .map_err(Clone::clone)
        });
        self.row(
            8,
            "-D -a until a list is answered (ms)".into(),
            Better::Lower,
            ms,
        );
        self.target(1.0);

        self.say("eval $(agent -s), list, agent -k");
        let runs = self.plan.eval_runs;
        let out = self.alternate(runs, &mut |side, _| eval_run(&bins[side], &dir));
        let ms = out.each_ref().map(|r| {
            r.as_ref()
                .map(|s| median(s.iter().map(|x| x.value).collect()))
                .map_err(Clone::clone)
        });
        self.row(
            8,
            "eval $(agent -s) + list + agent -k (ms)".into(),
            Better::Lower,
            ms,
        );
        self.target(1.0);

        let size = bins.each_ref().map(|b| {
            fs::metadata(b)
                .map(|m| m.len() as f64 / 1024.0)
                .map_err(|e| format!("{}: {e}", b.display()))
        });
        self.row(8, "binary size (KiB)".into(), Better::Neither, size);
    }
}

fn run() -> Result<(), String> {
    let opts = parse_args()?;
    let plan = Plan::new(opts.quick);
    if !opts.sshkeep.is_file() {
        return Err(format!(
            "{} not found: run `cargo build --release` first, or pass --sshkeep PATH",
            opts.sshkeep.display()
        ));
    }
    if !opts.openssh.is_file() {
        return Err(format!(
            "{} not found: install OpenSSH's ssh-agent or pass --openssh PATH",
            opts.openssh.display()
        ));
    }
    let t0 = Instant::now();
    // Daemonised agents (eval cycle) become our children when their parent exits, so we can
    // see them exit. Best effort: without it, a zombie counts as exited.
    let _ = nix::sys::prctl::set_child_subreaper(true);

    eprintln!("generating keys");
    let keys = generate_keys()?;
    let keygen = t0.elapsed();

    let tmp = TempDir::new()?;
    let bins = [opts.sshkeep.clone(), opts.openssh.clone()];
    let mut agents = [
        Agent::new(SSHKEEP, &bins[0], &tmp.0),
        Agent::new(OPENSSH, &bins[1], &tmp.0),
    ];
    let mut notes = vec![format!("key generation took {:.1} s", keygen.as_secs_f64())];
    for a in &mut agents {
        if let Err(e) = a.start() {
            // Every row of that agent will say why.
            notes.push(format!("{} did not start: {e}", a.name()));
            eprintln!("{} did not start: {e}", a.name());
        }
    }
    let mut bench = Bench {
        plan: &plan,
        dir: tmp.0.clone(),
        bins,
        agents,
        rows: Vec::new(),
        notes,
        flip: false,
        t0,
    };
    bench.memory_and_add(&keys);
    bench.lists(&keys);
    bench.signing(&keys);
    bench.startup();
    for a in &mut bench.agents {
        a.stop();
    }
    bench.notes.push(
        "OpenSSH's ssh-agent links libcrypto dynamically: its binary size excludes the library"
            .into(),
    );

    let seconds = t0.elapsed().as_secs_f64();
    let mut rows = std::mem::take(&mut bench.rows);
    rows.sort_by_key(|r| r.section);
    println!();
    println!(
        "sshkeep vs OpenSSH ssh-agent ({} mode: {} round{} per agent, {:.1} s each; {} CPUs)",
        if opts.quick { "quick" } else { "default" },
        plan.rounds,
        if plan.rounds == 1 { "" } else { "s" },
        plan.slice.as_secs_f64(),
        thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "ratio > 1.0 means sshkeep is better (sshkeep/OpenSSH for rates, OpenSSH/sshkeep for times and sizes)"
    );
    println!();
    print!("{}", render_table(&rows));
    let errors: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.values
                .iter()
                .enumerate()
                .filter_map(|(s, v)| {
                    v.as_ref()
                        .err()
                        .map(|e| format!("{} | {}: {e}", r.metric, NAMES[s]))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if !errors.is_empty() {
        println!("\nerrors:");
        for e in &errors {
            println!("  {e}");
        }
    }
    let misses: Vec<&str> = rows
        .iter()
        .filter(|r| r.verdict() == Some(false))
        .map(|r| r.metric.as_str())
        .collect();
    println!(
        "\ntargets missed: {}",
        if misses.is_empty() {
            "none".to_owned()
        } else {
            misses.join("; ")
        }
    );
    for n in &bench.notes {
        println!("note: {n}");
    }
    println!("total time: {seconds:.1} s");

    let json = render_json(&Report {
        opts: &opts,
        plan: &plan,
        rows: &rows,
        notes: &bench.notes,
        seconds,
    });
    if let Some(parent) = opts.json.parent() {
        let _ = fs::create_dir_all(parent);
    }
    fs::write(&opts.json, json).map_err(|e| format!("write {}: {e}", opts.json.display()))?;
    println!("json: {}", opts.json.display());
    drop(tmp);
    // A row sshkeep could not answer is a broken agent, not a slow one: fail the run, so
    // the quick run in CI catches it. Missed targets are reported above, not failed.
    let broken = rows.iter().filter(|r| r.values[SSHKEEP].is_err()).count();
    if broken > 0 {
        return Err(format!(
            "{broken} rows failed for sshkeep (see errors above)"
        ));
    }
    Ok(())
}
