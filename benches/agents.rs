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
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use signature::Verifier;
use ssh_key::EcdsaCurve;
use ssh_key::Signature;
use ssh_key::encoding::Encode;
use ssh_key::private::{EcdsaKeypair, Ed25519Keypair, KeypairData, RsaKeypair};
use ssh_key::public::KeyData;

// The integration tests' fixtures: the agent launcher, the raw client, the message numbers, the
// temporary directory. Only those that report errors as values and never skip are used here
// (`skip` and `release_bin` are for tests).
#[path = "../tests/common/mod.rs"]
mod common;

use common::{
    RawClient, Reader, SSH_AGENT_EXTENSION_FAILURE, SSH_AGENT_FAILURE, SSH_AGENT_IDENTITIES_ANSWER,
    SSH_AGENT_RSA_SHA2_256, SSH_AGENT_RSA_SHA2_512, SSH_AGENT_SIGN_RESPONSE, SSH_AGENT_SUCCESS,
    SSH_AGENTC_ADD_IDENTITY, SSH_AGENTC_REMOVE_ALL_IDENTITIES, SSH_AGENTC_REQUEST_IDENTITIES,
    SSH_AGENTC_SIGN_REQUEST, START_DEADLINE, TempDir, string,
};

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
    /// For RSA signing rows: a round of RSA-4096 from 64 clients at 0.5 s holds about two
    /// signatures per client, and its rate varied by 20% from run to run.
    rsa_slice: Duration,
    fair_slice: Duration,
    startup_runs: usize,
    eval_runs: usize,
}

const USAGE: &str = "usage: cargo bench --bench agents -- [--quick] [--openssh PATH] [--sshkeep PATH] [--json PATH]";

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        quick: false,
        sshkeep: common::target_dir().join("release").join("sshkeep"),
        openssh: PathBuf::from("/usr/bin/ssh-agent"),
        json: common::target_dir().join("bench.json"),
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
                rsa_slice: Duration::from_millis(100),
                fair_slice: Duration::from_millis(300),
                startup_runs: 3,
                eval_runs: 2,
            }
        } else {
            Plan {
                rounds: 3,
                slice: Duration::from_millis(500),
                rsa_slice: Duration::from_millis(1500),
                fair_slice: Duration::from_millis(1000),
                startup_runs: 10,
                eval_runs: 5,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire format

fn msg_name(t: u8) -> String {
    match t {
        SSH_AGENT_FAILURE => "FAILURE".into(),
        SSH_AGENT_SUCCESS => "SUCCESS".into(),
        SSH_AGENT_IDENTITIES_ANSWER => "IDENTITIES_ANSWER".into(),
        SSH_AGENT_SIGN_RESPONSE => "SIGN_RESPONSE".into(),
        SSH_AGENT_EXTENSION_FAILURE => "EXTENSION_FAILURE".into(),
        102 => "ssh.com FAILURE".into(),
        t => format!("message {t}"),
    }
}

/// The body of `reply` after its type byte, when that is `want`.
fn body_of<'a>(reply: &'a [u8], want: u8, what: &str) -> Result<&'a [u8], String> {
    match reply.split_first() {
        Some((&t, rest)) if t == want => Ok(rest),
        Some((&t, _)) => Err(format!("{what}: agent replied {}", msg_name(t))),
        None => Err(format!("{what}: empty reply")),
    }
}

/// Sends a request that must be answered with SUCCESS.
fn call_ok(c: &mut RawClient, body: &[u8], what: &str) -> Result<(), String> {
    body_of(c.call(body)?, SSH_AGENT_SUCCESS, what).map(drop)
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

/// Checks an IDENTITIES_ANSWER against the expected key blobs, in order.
fn check_identities(reply: &[u8], expected: &[&[u8]]) -> Result<(), String> {
    let mut r = Reader(body_of(reply, SSH_AGENT_IDENTITIES_ANSWER, "list")?);
    let n = r.try_u32().ok_or("truncated reply")?;
    if n as usize != expected.len() {
        return Err(format!("list: {n} keys instead of {}", expected.len()));
    }
    for (i, want) in expected.iter().enumerate() {
        let blob = r.try_string().ok_or("truncated reply")?;
        let _comment = r.try_string().ok_or("truncated reply")?;
        if blob != *want {
            return Err(format!(
                "list: key {i} is not the key added at that position"
            ));
        }
    }
    if !r.is_empty() {
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
        let mut add = vec![SSH_AGENTC_ADD_IDENTITY];
        // string key type, then the private fields: KeypairData's encoding is exactly that.
        kp.encode(&mut add).map_err(|e| format!("{label}: {e}"))?;
        add.extend(string(comment.as_bytes()));
        let (flags, sig_alg) = match kp {
            KeypairData::Ed25519(_) => (0, "ssh-ed25519"),
            KeypairData::Ecdsa(EcdsaKeypair::NistP256 { .. }) => (0, "ecdsa-sha2-nistp256"),
            KeypairData::Ecdsa(EcdsaKeypair::NistP384 { .. }) => (0, "ecdsa-sha2-nistp384"),
            KeypairData::Ecdsa(EcdsaKeypair::NistP521 { .. }) => (0, "ecdsa-sha2-nistp521"),
            // RSA-2048 is measured with rsa-sha2-256, RSA-4096 with rsa-sha2-512.
            KeypairData::Rsa(rsa) if rsa.public().key_size() > 2048 => {
                (SSH_AGENT_RSA_SHA2_512, "rsa-sha2-512")
            }
            KeypairData::Rsa(_) => (SSH_AGENT_RSA_SHA2_256, "rsa-sha2-256"),
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
        let mut body = vec![SSH_AGENTC_SIGN_REQUEST];
        body.extend(string(&self.blob));
        let at = body.len() + 4;
        body.extend(string(&sign_data(0)));
        body.extend(self.flags.to_be_bytes());
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

/// One side of the comparison: its binary and its agent, running in the foreground
/// (`-D -a SOCK`), or why that agent is not running.
struct Agent {
    side: usize,
    bin: PathBuf,
    running: Result<common::Agent, String>,
}

impl Agent {
    fn new(side: usize, bin: &Path) -> Agent {
        Agent {
            side,
            bin: bin.to_owned(),
            running: Err(format!("{} was not started", NAMES[side])),
        }
    }

    fn name(&self) -> &'static str {
        NAMES[self.side]
    }

    fn start(&mut self) -> Result<(), String> {
        self.stop();
        match launch(&self.bin) {
            Ok(agent) => {
                self.running = Ok(agent);
                Ok(())
            }
            Err(e) => {
                self.running = Err(format!("{} did not start: {e}", self.name()));
                Err(e)
            }
        }
    }

    /// Stops the agent (dropping it sends SIGTERM, then SIGKILL, and waits).
    fn stop(&mut self) {
        self.running = Err(format!("{} was stopped", self.name()));
    }

    /// A connection to the agent, or why there is none.
    fn connect(&self) -> Result<RawClient, String> {
        let agent = self.running.as_ref().map_err(Clone::clone)?;
        RawClient::try_connect(agent.sock(), IO_TIMEOUT)
    }

    fn pid(&self) -> Option<u32> {
        self.running.as_ref().ok().map(common::Agent::pid)
    }

    /// How the agent ended, if it was running and is no more.
    fn exited(&mut self) -> Option<String> {
        let status = self.running.as_mut().ok()?.exit_status()?;
        Some(format!("exited ({status})"))
    }

    /// Restarts the agent if it died; returns a note saying so. An agent that could not be
    /// (re)started is not tried again: its rows report the connection errors.
    fn revive(&mut self, during: &str) -> Option<String> {
        let status = self.exited()?;
        let log = self
            .running
            .as_ref()
            .map_or(String::new(), |a| one_line(&a.stderr_text()));
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

/// An agent's stderr as a note: ` (stderr: line / line)`, or nothing when it is empty.
fn one_line(stderr: &str) -> String {
    match stderr.trim() {
        "" => String::new(),
        s => format!(" (stderr: {})", s.replace('\n', " / ")),
    }
}

/// Starts `bin -D -a SOCK` and waits, without sleeping, until it answers REQUEST_IDENTITIES
/// (how long that took: `started_in`).
fn launch(bin: &Path) -> Result<common::Agent, String> {
    common::Agent::try_launch(common::Launch {
        bin: Some(bin),
        poll: Some(Duration::ZERO),
        ..common::Launch::default()
    })
    .map_err(|e| e.trim().replace('\n', " / "))
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory(pid: Option<u32>) -> Result<(f64, f64), String> {
    let pid = pid.ok_or("agent not running")?;
    let field = |name: &str| {
        common::status_kib(pid, name)
            .map(|kib| kib as f64)
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS")?, field("VmHWM")?))
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
fn load(agent: &Agent, keys: &[TestKey]) -> Result<(), String> {
    let mut c = agent.connect()?;
    call_ok(&mut c, &[SSH_AGENTC_REMOVE_ALL_IDENTITIES], "remove all")?;
    for k in keys {
        call_ok(&mut c, &k.add, &format!("add {} ({})", k.label, k.sig_alg))?;
    }
    Ok(())
}

/// Removes all keys, then adds each key, reporting each key's outcome.
fn load_each(agent: &Agent, keys: &[TestKey]) -> Vec<Result<(), String>> {
    let mut c = match agent.connect() {
        Ok(c) => c,
        Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
    };
    if let Err(e) = call_ok(&mut c, &[SSH_AGENTC_REMOVE_ALL_IDENTITIES], "remove all") {
        return keys.iter().map(|_| Err(e.clone())).collect();
    }
    keys.iter()
        .map(|k| call_ok(&mut c, &k.add, &format!("add {}", k.label)))
        .collect()
}

/// Times the adding of `keys` to an empty agent; `extra` = memory afterwards.
fn add_run(agent: &Agent, keys: &[TestKey]) -> Result<Sample, String> {
    let mut c = agent.connect()?;
    call_ok(&mut c, &[SSH_AGENTC_REMOVE_ALL_IDENTITIES], "remove all")?;
    let t0 = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        call_ok(&mut c, &k.add, &format!("add key {i} ({})", k.sig_alg))?;
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
fn list_run(agent: &Agent, expected: &[&[u8]], slice: Duration) -> Result<Sample, String> {
    let mut c = agent.connect()?;
    let first = c.call(&[SSH_AGENTC_REQUEST_IDENTITIES])?.to_vec();
    check_identities(&first, expected)?;
    let mut lat = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < slice {
        let t = Instant::now();
        let reply = c.call(&[SSH_AGENTC_REQUEST_IDENTITIES])?;
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
fn churn_run(agent: &Agent, expected: &[&[u8]], slice: Duration) -> Result<Sample, String> {
    let first = agent
        .connect()?
        .call(&[SSH_AGENTC_REQUEST_IDENTITIES])?
        .to_vec();
    check_identities(&first, expected)?;
    let mut lat = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < slice {
        let t = Instant::now();
        let mut c = agent.connect()?;
        if c.call(&[SSH_AGENTC_REQUEST_IDENTITIES])? != first.as_slice() {
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
    c: &mut RawClient,
    key: &TestKey,
    tag: u64,
    stop: &dyn Fn() -> bool,
) -> Result<Signed, String> {
    let (mut body, at) = key.sign_body();
    let what = format!("sign {}", key.label);
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
        let mut r = Reader(body_of(reply, SSH_AGENT_SIGN_RESPONSE, &what)?);
        let sig = r.try_string().ok_or("truncated reply")?;
        if !r.is_empty() {
            return Err(format!("{what}: trailing bytes"));
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
fn sign_run(
    agent: &Agent,
    key: &TestKey,
    clients: usize,
    slice: Duration,
) -> Result<Sample, String> {
    let conns = (0..clients)
        .map(|_| agent.connect())
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
    agent: &Agent,
    ed: &TestKey,
    rsa: &TestKey,
    slice: Duration,
) -> Result<Sample, String> {
    let mut probe = agent.connect()?;
    let hammers = (0..HAMMERS)
        .map(|_| agent.connect())
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
fn startup_run(bin: &Path) -> Result<Sample, String> {
    let took = launch(bin)?.started_in();
    Ok(Sample {
        value: took.as_secs_f64() * 1e3,
        ..Sample::default()
    })
}

/// `eval $(agent -s)`, one list, `agent -k`, until the agent is gone, in milliseconds.
fn eval_run(bin: &Path, dir: &Path) -> Result<Sample, String> {
    let tmpdir = dir.to_string_lossy();
    let mut start = Command::new(bin);
    start.arg("-s").stdin(Stdio::null()).stderr(Stdio::piped());
    common::scrub_env(&mut start, &[("TMPDIR", &tmpdir)]);
    let t0 = Instant::now();
    let out = start
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
    let pid = pid_text
        .parse::<u32>()
        .ok()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| format!("-s printed SSH_AGENT_PID={pid_text}"))?;
    let listed = RawClient::try_connect(&sock, IO_TIMEOUT).and_then(|mut c| {
        let reply = c.call(&[SSH_AGENTC_REQUEST_IDENTITIES])?;
        body_of(reply, SSH_AGENT_IDENTITIES_ANSWER, "list").map(drop)
    });
    let mut stop = Command::new(bin);
    stop.arg("-k")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    common::scrub_env(&mut stop, &[("SSH_AGENT_PID", &pid_text)]);
    let killed = stop
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
    let gone = common::poll_until(
        START_DEADLINE,
        Duration::from_micros(100),
        || match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => false,
            Ok(_) => true,
            Err(_) => !common::pid_alive(pid.unsigned_abs()),
        },
    );
    if gone {
        Ok(())
    } else {
        Err(format!(
            "agent {pid} still running {} s after -k",
            START_DEADLINE.as_secs()
        ))
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
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::MinRatio(t) => format!("ratio >= {t:.1}"),
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

/// Per agent, the median of its rounds' values.
fn medians(out: &Outcome) -> [Result<f64, String>; 2] {
    out.each_ref().map(|r| {
        r.as_ref()
            .map(|s| median(s.iter().map(|x| x.value).collect()))
            .map_err(Clone::clone)
    })
}

/// Per agent, the latencies of all its rounds, sorted.
fn pooled_latencies(out: &Outcome) -> [Result<Vec<u64>, String>; 2] {
    out.each_ref().map(|r| {
        r.as_ref()
            .map(|samples| {
                let mut lat: Vec<u64> =
                    samples.iter().flat_map(|s| s.lat.iter().copied()).collect();
                lat.sort_unstable();
                lat
            })
            .map_err(Clone::clone)
    })
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
        "  \"rsa_round_seconds\": {},",
        r.plan.rsa_slice.as_secs_f64()
    );
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
        self.alternate(self.plan.rounds, &mut |side, a| match &a.running {
            Err(why) => Err(why.clone()),
            Ok(_) => f(side, a),
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
        let time = medians(&out);
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
            let loaded = [SSHKEEP, OPENSSH].map(|s| load(&self.agents[s], subset));
            let expected: Vec<&[u8]> = subset.iter().map(|k| k.blob.as_slice()).collect();
            let slice = self.plan.slice;
            let out = self.measure(&mut |side, a| {
                loaded[side].clone()?;
                list_run(a, &expected, slice)
            });
            let rate = medians(&out);
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
        let mut loaded = [SSHKEEP, OPENSSH].map(|s| load_each(&self.agents[s], &keys.sign));
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
                        loaded[side] = load_each(&self.agents[side], &keys.sign);
                    }
                }
                let slice = if key.label.starts_with("RSA") {
                    self.plan.rsa_slice
                } else {
                    slice
                };
                let out = self.measure(&mut |side, a| {
                    loaded[side][k].clone()?;
                    sign_run(a, key, clients, slice)
                });
                let rate = medians(&out);
                let lat = pooled_latencies(&out);
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
                loaded[side] = load_each(&self.agents[side], &keys.sign);
            }
        }
        let (ed, rsa) = (&keys.sign[0], &keys.sign[5]);
        let fair_slice = self.plan.fair_slice;
        let out = self.measure(&mut |side, a| {
            loaded[side][0].clone()?;
            loaded[side][5].clone()?;
            fairness_run(a, ed, rsa, fair_slice)
        });
        let lat = pooled_latencies(&out);
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
        // How many RSA-4096 signatures' time the load added to the Ed25519 p99, each agent in
        // units of its own signature: the aim is no more than OpenSSH's agent adds. (About one
        // is the floor for a client that sends its next request as the next signature starts:
        // a single thread cannot interrupt a signature.)
        let added = [SSHKEEP, OPENSSH].map(|side| {
            let under = loaded_p(99.0)[side].clone()?;
            let base = alone(0, 99.0)[side].clone()?;
            let rsa = alone(5, 50.0)[side].clone()?;
            Ok((under - base) / rsa)
        });
        self.row(
            3,
            "Ed25519 p99 added, in RSA-4096 signatures".into(),
            Better::Lower,
            added,
        );
        self.aim(Target::MinRatio(1.0));

        self.say("connect + list + close");
        let restarted = self.revive("connect + list + close");
        for (side, again) in restarted.into_iter().enumerate() {
            if again {
                loaded[side] = load_each(&self.agents[side], &keys.sign);
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
        let out = self.measure(&mut |side, a| churn_run(a, &expected[side], slice));
        let rate = medians(&out);
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
        let out = self.alternate(runs, &mut |side, _| startup_run(&bins[side]));
        let ms = medians(&out);
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
        let ms = medians(&out);
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

    let tmp = TempDir::new();
    let bins = [opts.sshkeep.clone(), opts.openssh.clone()];
    let mut agents = [Agent::new(SSHKEEP, &bins[0]), Agent::new(OPENSSH, &bins[1])];
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
        dir: tmp.path().to_owned(),
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
        "sshkeep vs OpenSSH ssh-agent ({} mode: {} round{} per agent, {:.1} s each, {:.1} s for RSA signing; {} CPUs)",
        if opts.quick { "quick" } else { "default" },
        plan.rounds,
        if plan.rounds == 1 { "" } else { "s" },
        plan.slice.as_secs_f64(),
        plan.rsa_slice.as_secs_f64(),
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
