//! A locked agent holds no usable key: `ssh-add -x` seals every key under the passphrase, and
//! a root scan of the agent's memory (every readable mapping, through /proc/PID/mem) finds no
//! secret form of any key, after a wrong unlock too; the right passphrase gives every key back
//! in its old order with its old constraints, signing as before. Keys expire while locked,
//! SIGUSR1 while locked leaves nothing, and the cost of locking 1000 keys is measured.
//!
//! These run against the release binary (`cargo build --release --locked`; `make bench` and CI
//! build it before the tests), where the memory layout is the one users get. They need root
//! to read the agent's memory; under CI=true a missing binary or root is a failure.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::memscan::{self, Secret};
use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const PASSPHRASE: &str = "correct horse battery staple";
const NO_IDENTITIES: &str = "The agent has no identities.\n";

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The release agent in the environment `env`.
fn release(bin: &Path, env: &[(&str, &str)]) -> Agent {
    Agent::start_wrapped(&[], bin, &[], env)
}

/// `ssh-add -x` / `-X` with the passphrase from an askpass script.
fn lock_op(agent: &Agent, op: &str, passphrase: &str) -> Output {
    let askpass = script(
        agent.dir(),
        &format!("askpass-{}", passphrase.len()),
        &format!("echo '{passphrase}'"),
    );
    ssh_add_env(
        agent,
        &[op],
        &[
            ("SSH_ASKPASS", p(&askpass)),
            ("SSH_ASKPASS_REQUIRE", "force"),
        ],
    )
}

fn listed(agent: &Agent) -> String {
    stdout(&ssh_add(agent, &["-L"]))
}

#[track_caller]
fn assert_none(agent: &Agent, secrets: &[Secret], when: &str) {
    let hits = memscan::scan(agent.pid(), secrets);
    assert!(
        hits.is_empty(),
        "key material in the memory of the agent {when}:\n{}",
        memscan::describe(&hits)
    );
}

/// A raw SIGN_REQUEST for `blob` over fixed data: the reply frame.
fn raw_sign(agent: &Agent, blob: &[u8], flags: u32) -> Vec<u8> {
    let mut body = string(blob);
    body.extend(string(b"sealed, then unsealed"));
    body.extend(u32(flags));
    let mut c = RawClient::connect(agent.sock());
    c.set_timeout(Duration::from_secs(30));
    c.request(SSH_AGENTC_SIGN_REQUEST, &body)
}

/// Every identity's replies to signature requests (flags 0, and for RSA 2 and 4). ECDSA
/// is deterministic in sshkeep and Ed25519 and RSA by definition, so the same key gives the
/// same bytes.
fn signatures(agent: &Agent) -> Vec<Vec<Vec<u8>>> {
    let mut c = RawClient::connect(agent.sock());
    let ids = parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
    ids.iter()
        .map(|(blob, _)| {
            let rsa = Reader(blob).string().starts_with(b"ssh-rsa");
            let flags: &[u32] = if rsa { &[0, 2, 4] } else { &[0] };
            flags.iter().map(|&f| raw_sign(agent, blob, f)).collect()
        })
        .collect()
}

/// `ssh-keygen -Y sign` through the agent with the key `key` names (a public copy with no
/// private key beside it), then `ssh-keygen -Y verify` of the signature.
fn sign_and_verify(agent: &Agent, key: &Path) -> bool {
    let dir = agent.dir();
    let name = key.file_name().unwrap().to_string_lossy().into_owned();
    let public = dir.join(format!("{name}-only.pub"));
    fs::copy(pub_path(key), &public).unwrap();
    let msg = dir.join(format!("{name}.msg"));
    fs::write(&msg, b"a message").unwrap();
    let sig = PathBuf::from(format!("{}.sig", msg.display()));
    let _ = fs::remove_file(&sig);
    let signed = run(
        "ssh-keygen",
        &["-Y", "sign", "-n", "file", "-f", p(&public), p(&msg)],
        &[("SSH_AUTH_SOCK", agent.sock_str())],
    );
    if !signed.status.success() {
        return false;
    }
    let allowed = dir.join(format!("{name}.allowed"));
    fs::write(&allowed, format!("signer@test {}\n", pub_line(&public))).unwrap();
    let verify = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-n", "file", "-I", "signer@test"])
        .args(["-f", p(&allowed), "-s", p(&sig)])
        .stdin(fs::File::open(&msg).unwrap())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "ssh-keygen -Y verify of {name}'s signature: {}",
        stderr(&verify)
    );
    true
}

#[test]
fn montgomery_form_arithmetic() {
    // 3·2^4 mod 7 = 48 mod 7 = 6; 1·2^8 mod 257 = 256.
    assert_eq!(memscan::montgomery(&[3], &[7], 4), vec![6]);
    assert_eq!(memscan::montgomery(&[1], &[1, 1], 8), vec![1, 0]);
    assert_eq!(memscan::montgomery(&[2], &[1, 1], 8), vec![0, 255]);
}

/// One key of each type (and a certificate), with constraints; signed with; `ssh-add -x`:
/// no secret form of any key is left in the agent's memory, nor after a wrong `ssh-add -X`;
/// the right one restores every key, in its old order, with its old constraints.
#[test]
fn locked_agent_memory_holds_no_key_and_unlock_restores_every_key() {
    let Some(bin) = memscan::release_agent() else {
        return;
    };
    let keys = TempDir::new();
    let prompts = keys.join("prompts");
    let confirm = script(
        keys.path(),
        "confirm",
        &format!("echo prompt >> '{}'", p(&prompts)),
    );
    let agent = release(
        &bin,
        &[
            ("SSH_ASKPASS", p(&confirm)),
            ("SSH_ASKPASS_REQUIRE", "force"),
        ],
    );
    let ed = keygen(keys.path(), "ed25519");
    let p256 = keygen(keys.path(), "ecdsa-256");
    let p384 = keygen(keys.path(), "ecdsa-384");
    let p521 = keygen(keys.path(), "ecdsa-521");
    let rsa = keygen(keys.path(), "rsa-2048");
    // A certificate beside the P-521 key: ssh-add adds both.
    let ca_dir = TempDir::new();
    let ca = keygen(ca_dir.path(), "ed25519");
    certify(&ca, &pub_path(&p521), "root");
    // A destination for the P-256 key, named in a known_hosts file.
    let host = keygen(ca_dir.path(), "ed25519");
    let known_hosts = keys.join("known_hosts");
    let host_line = pub_line(&pub_path(&host));
    let mut fields = host_line.split_whitespace();
    let (kind, b64) = (fields.next().unwrap(), fields.next().unwrap());
    fs::write(&known_hosts, format!("somehost {kind} {b64}\n")).unwrap();

    let adds: [(&Path, &[&str]); 5] = [
        (&ed, &["-c"]),
        (&p256, &["-H", p(&known_hosts), "-h", "somehost"]),
        (&p384, &["-t", "3600"]),
        (&p521, &[]),
        (&rsa, &[]),
    ];
    for (key, args) in adds {
        let mut a = vec!["-q"];
        a.extend_from_slice(args);
        a.push(p(key));
        expect_ok(&ssh_add(&agent, &a));
    }
    let before = listed(&agent);
    assert_eq!(before.lines().count(), 6, "{before}");

    let sigs = signatures(&agent);
    let prompted = fs::read_to_string(&prompts).unwrap().lines().count();
    assert_eq!(prompted, 1, "the confirm key asked once");
    // The destination-constrained key does not sign on an unbound connection.
    assert_eq!(sigs[1], vec![vec![SSH_AGENT_FAILURE]]);
    for (i, s) in sigs.iter().enumerate() {
        if i != 1 {
            assert!(
                s.iter().all(|r| r[0] == SSH_AGENT_SIGN_RESPONSE),
                "identity {i}: {s:?}"
            );
        }
    }
    for key in [&ed, &p384, &p521, &rsa] {
        assert!(
            sign_and_verify(&agent, key),
            "{} did not sign",
            key.display()
        );
    }

    let secrets: Vec<Secret> = [&ed, &p256, &p384, &p521, &rsa]
        .into_iter()
        .flat_map(|k| memscan::secrets_of(k))
        .collect();
    // The scan finds every key while it is ready to sign, so it could find it later.
    let hits = memscan::scan(agent.pid(), &secrets);
    println!("while unlocked:\n{}", memscan::describe(&hits));
    for key in [&ed, &p256, &p384, &p521, &rsa] {
        let name = key.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            hits.iter().any(|h| h.key == name),
            "the scan does not find {name} while it is loaded"
        );
    }

    let prompts_before = fs::read_to_string(&prompts).unwrap().lines().count();
    let locked = Instant::now();
    let out = lock_op(&agent, "-x", PASSPHRASE);
    assert_eq!(stderr(expect_ok(&out)), "Agent locked.\n");
    println!("ssh-add -x took {:?}", locked.elapsed());
    assert_eq!(listed(&agent), NO_IDENTITIES);
    assert_none(&agent, &secrets, "after ssh-add -x");

    let out = lock_op(&agent, "-X", "wrong passphrase");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "Failed to unlock agent: agent refused operation\n"
    );
    assert_eq!(listed(&agent), NO_IDENTITIES);
    assert_none(&agent, &secrets, "after a wrong ssh-add -X");

    let out = lock_op(&agent, "-X", PASSPHRASE);
    assert_eq!(stderr(expect_ok(&out)), "Agent unlocked.\n");
    assert_eq!(listed(&agent), before, "order or comments changed");
    // Opened by the unlock, not yet rebuilt (that is at a key's first signature): locked
    // again, the opened records are sealed as they are, and nothing is left either.
    expect_ok(&lock_op(&agent, "-x", PASSPHRASE));
    assert_none(
        &agent,
        &secrets,
        "after ssh-add -x of keys unused since an unlock",
    );
    expect_ok(&lock_op(&agent, "-X", PASSPHRASE));
    assert_eq!(listed(&agent), before, "order or comments changed");
    assert_eq!(signatures(&agent), sigs, "a key signs differently");
    let prompted = fs::read_to_string(&prompts).unwrap().lines().count();
    assert_eq!(
        prompted,
        prompts_before + 1,
        "the confirm key did not ask again"
    );
    for key in [&ed, &p384, &p521, &rsa] {
        assert!(
            sign_and_verify(&agent, key),
            "{} did not sign",
            key.display()
        );
    }
    assert!(
        !sign_and_verify(&agent, &p256),
        "the destination-constrained key signed on an unbound connection"
    );
    // Rebuilt where they signed, below the main loop: nothing of them is left on the stack.
    memscan::assert_none_on_stack(
        &memscan::scan(agent.pid(), &secrets),
        "by the first signatures after an unlock",
    );
    // Rebuilt at their first signatures: locked again, nothing is left.
    expect_ok(&lock_op(&agent, "-x", PASSPHRASE));
    assert_none(
        &agent,
        &secrets,
        "after ssh-add -x of keys rebuilt since an unlock",
    );
}

/// Keys opened by an unlock and removed, before their first signature (their opened record)
/// or after it (the key rebuilt from that record), leave nothing in the agent's memory.
#[test]
fn opened_keys_leave_nothing_when_removed() {
    let Some(bin) = memscan::release_agent() else {
        return;
    };
    let agent = release(&bin, &[]);
    let keys = TempDir::new();
    // Two keys of each kind: one signs after the unlock (which rebuilds it), one does not
    // (its opened record stays). P-521 first: its curve's tables are built once, deep in the
    // stack (secret.rs). The last key stays.
    let kinds = ["ecdsa-521", "ed25519", "ecdsa-256", "rsa-2048", "ecdsa-384"];
    let files: Vec<PathBuf> = kinds
        .iter()
        .flat_map(|k| [keygen(keys.path(), k), keygen(keys.path(), k)])
        .chain([keygen(keys.path(), "ed25519")])
        .collect();
    let (removed_files, kept) = files.split_at(files.len() - 1);
    for f in &files {
        expect_ok(&ssh_add(&agent, &["-q", p(f)]));
    }
    let blobs: Vec<Vec<u8>> = files.iter().map(|f| pub_blob(&pub_path(f))).collect();
    for blob in &blobs {
        assert_eq!(raw_sign(&agent, blob, 0)[0], SSH_AGENT_SIGN_RESPONSE);
    }
    expect_ok(&lock_op(&agent, "-x", PASSPHRASE));
    expect_ok(&lock_op(&agent, "-X", PASSPHRASE));
    // The first key of each kind signs (rebuilt); the second does not (opened).
    for blob in blobs[..removed_files.len()].iter().step_by(2) {
        assert_eq!(raw_sign(&agent, blob, 0)[0], SSH_AGENT_SIGN_RESPONSE);
    }
    let removed: Vec<Secret> = removed_files
        .iter()
        .flat_map(|f| memscan::secrets_of(f))
        .collect();
    // The scan finds each while it is held, opened or rebuilt (so it could find it later),
    // and nothing of any on the stack, where the rebuilds ran.
    let hits = memscan::scan(agent.pid(), &removed);
    for (i, f) in removed_files.iter().enumerate() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let state = if i % 2 == 0 { "rebuilt" } else { "opened" };
        assert!(
            hits.iter().any(|h| h.key == name),
            "{} ({state}) not found",
            kinds[i / 2]
        );
    }
    memscan::assert_none_on_stack(&hits, "by the rebuilds after an unlock");
    for f in removed_files {
        expect_ok(&ssh_add(&agent, &["-q", "-d", p(&pub_path(f))]));
    }
    assert_none(&agent, &removed, "after removing opened and rebuilt keys");
    // The one left is rebuilt at its first signature and signs.
    assert!(sign_and_verify(&agent, &kept[0]));
}

/// A key whose lifetime ends while the agent is locked is gone when it is unlocked; the
/// other stays.
#[test]
fn key_expires_while_locked() {
    let Some(bin) = memscan::release_agent() else {
        return;
    };
    let agent = release(&bin, &[]);
    let keys = TempDir::new();
    let short = keygen(keys.path(), "ecdsa-256");
    let long = keygen(keys.path(), "ed25519");
    expect_ok(&ssh_add(&agent, &["-q", "-t", "2", p(&short)]));
    let added = Instant::now();
    expect_ok(&ssh_add(&agent, &["-q", p(&long)]));
    expect_ok(&lock_op(&agent, "-x", PASSPHRASE));
    // A locked agent shows nothing to poll for: sleep out the locked 3 s.
    std::thread::sleep((added + Duration::from_secs(3)).saturating_duration_since(Instant::now()));
    expect_ok(&lock_op(&agent, "-X", PASSPHRASE));
    assert_eq!(
        listed(&agent),
        format!("{}\n", pub_line(&pub_path(&long))),
        "after 3 s locked"
    );
    assert_none(&agent, &memscan::secrets_of(&short), "after expiry");
}

/// SIGUSR1 while locked removes every sealed key; the agent stays locked, and the right
/// passphrase opens it to an empty table.
#[test]
fn sigusr1_while_locked_leaves_nothing() {
    let Some(bin) = memscan::release_agent() else {
        return;
    };
    let agent = release(&bin, &[]);
    let keys = TempDir::new();
    let files: Vec<PathBuf> = ["ed25519", "ecdsa-256", "rsa-2048"]
        .iter()
        .map(|k| keygen(keys.path(), k))
        .collect();
    for f in &files {
        expect_ok(&ssh_add(&agent, &["-q", p(f)]));
    }
    let secrets: Vec<Secret> = files.iter().flat_map(|f| memscan::secrets_of(f)).collect();
    expect_ok(&lock_op(&agent, "-x", PASSPHRASE));
    kill(Pid::from_raw(agent.pid() as i32), Signal::SIGUSR1).unwrap();
    // Still locked: a wrong passphrase is refused.
    assert_eq!(lock_op(&agent, "-X", "wrong").status.code(), Some(1));
    expect_ok(&lock_op(&agent, "-X", PASSPHRASE));
    assert_eq!(listed(&agent), NO_IDENTITIES);
    assert_none(&agent, &secrets, "after SIGUSR1 while locked and unlock");
}

/// An SSH mpint of the magnitude `m` (big-endian).
fn mpint(m: &[u8]) -> Vec<u8> {
    let m = &m[m.iter().take_while(|&&b| b == 0).count()..];
    let pad = m.first().is_some_and(|&b| b & 0x80 != 0);
    string(&[if pad { &[0u8][..] } else { &[] }, m].concat())
}

/// ADD_IDENTITY bodies of `count` distinct keys of `kind` (a `keygen` kind), made cheaply:
/// random seeds and scalars for Ed25519 and ECDSA; for RSA one pair of primes from
/// `ssh-keygen` under `count` public exponents (65537 and the odd numbers above it that are
/// prime to λ(n)), so 1000 RSA-4096 keys take seconds, not an hour. Each is a whole key of
/// that size: the agent validates and builds it as any other.
fn add_bodies(kind: &str, count: usize) -> Vec<Vec<u8>> {
    let random = |len: usize| {
        let mut b = vec![0u8; len];
        getrandom::fill(&mut b).unwrap();
        b
    };
    // A random scalar of `$len` bytes (its top bits cleared to `$top`), or the next round
    // of the loop if it is not below the curve's order.
    macro_rules! ecdsa {
        ($krate:ident, $len:literal, $top:literal, $name:literal, $curve:literal) => {{
            let mut d = random($len);
            d[0] &= $top;
            let Ok(k) = $krate::ecdsa::SigningKey::from_slice(&d) else {
                continue;
            };
            let q = k.verifying_key().to_sec1_point(false);
            let fields = [
                string($name),
                string($curve),
                string(q.as_bytes()),
                mpint(&d),
            ];
            fields.concat()
        }};
    }
    let mut bodies: Vec<Vec<u8>> = Vec::with_capacity(count);
    while bodies.len() < count {
        let body = match kind {
            "ed25519" => {
                let seed: [u8; 32] = random(32).try_into().unwrap();
                let pk = ed25519_dalek::SigningKey::from_bytes(&seed)
                    .verifying_key()
                    .to_bytes();
                [
                    string(b"ssh-ed25519"),
                    string(&pk),
                    string(&[seed.as_slice(), &pk].concat()),
                ]
                .concat()
            }
            "ecdsa-256" => ecdsa!(p256, 32, 0xff, b"ecdsa-sha2-nistp256", b"nistp256"),
            "ecdsa-384" => ecdsa!(p384, 48, 0xff, b"ecdsa-sha2-nistp384", b"nistp384"),
            "ecdsa-521" => ecdsa!(p521, 66, 0x01, b"ecdsa-sha2-nistp521", b"nistp521"),
            "rsa-2048" | "rsa-4096" | "rsa-8192" => return rsa_bodies(kind, count),
            other => panic!("{other}"),
        };
        bodies.push(body);
    }
    for (n, body) in bodies.iter_mut().enumerate() {
        body.extend(string(format!("key {n}").as_bytes()));
    }
    bodies
}

fn rsa_bodies(kind: &str, count: usize) -> Vec<Vec<u8>> {
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    let key = if kind == "rsa-8192" {
        ssh_key::PrivateKey::from_openssh(RSA_8192).unwrap()
    } else {
        let dir = TempDir::new();
        ssh_key::PrivateKey::read_openssh_file(keygen(dir.path(), kind)).unwrap()
    };
    let ssh_key::private::KeypairData::Rsa(kp) = key.key_data() else {
        panic!("{kind} is not RSA")
    };
    let base = rsa::RsaPrivateKey::try_from(kp).unwrap();
    let [p, q] = base.primes() else {
        panic!("two primes")
    };
    let be = |x: &rsa::BoxedUint| mpint(&x.to_be_bytes());
    let iqmp = be(&base.qinv().unwrap().retrieve()); // q⁻¹ mod p: the same for every e
    (65537u64..)
        .step_by(2)
        .filter_map(|e| rsa::RsaPrivateKey::from_p_q(p.clone(), q.clone(), e.into()).ok())
        .take(count)
        .enumerate()
        .map(|(n, k)| {
            [
                string(b"ssh-rsa"),
                be(k.n().as_ref()),
                be(k.e()),
                be(k.d()),
                iqmp.clone(),
                be(p),
                be(q),
                string(format!("key {n}").as_bytes()),
            ]
            .concat()
        })
        .collect()
}

/// CPU time the agent takes to answer a raw request (`kind`, `body`) with `want`.
fn cpu_of(agent: &Agent, c: &mut RawClient, kind: u8, body: &[u8], want: u8) -> Duration {
    let cpu = cpu_time(agent.pid());
    assert_eq!(c.request(kind, body)[0], want);
    cpu_time(agent.pid()) - cpu
}

/// Locking and unlocking 1000 keys costs the KDF plus under 100 ms of the agent's CPU, for
/// every key type; RSA keys fill the identity list (256 KiB) first, so for them the table is
/// as full as the limits allow (892 RSA-2048, 476 RSA-4096, 246 RSA-8192 keys). Unlocking
/// decrypts and authenticates every key; each is rebuilt into its ready-to-sign form at its
/// first signature. Printed per type, beyond the KDF (an agent with no keys locked and
/// unlocked beside it; the cheapest of three rounds): locking ready keys, locking opened ones
/// again, unlocking, and a first signature after the unlock beside the next. About 1 to 5 ms
/// each here, so the 100 ms asserted holds on a loaded machine; rebuilding every key at the
/// unlock took 60 to 360 ms (P-256 to RSA-8192).
#[test]
fn lock_and_unlock_1000_keys() {
    let Some(bin) = memscan::release_agent() else {
        return;
    };
    let agent = release(&bin, &[]);
    let mut c = RawClient::connect(agent.sock());
    c.set_timeout(Duration::from_secs(60));
    // The KDF's cost: an agent with no keys, locked and unlocked beside the measured one.
    let empty = release(&bin, &[]);
    let mut e = RawClient::connect(empty.sock());
    let pw = string(PASSPHRASE.as_bytes());
    let (lock, unlock) = (SSH_AGENTC_LOCK, SSH_AGENTC_UNLOCK);
    println!("keys type       agent CPU beyond the KDF, ms (the KDF: lock, unlock)");
    let kinds = [
        "ed25519",
        "ecdsa-256",
        "ecdsa-384",
        "ecdsa-521",
        "rsa-2048",
        "rsa-4096",
        "rsa-8192",
    ];
    for kind in kinds {
        c.request(SSH_AGENTC_REMOVE_ALL_IDENTITIES, &[]);
        // RSA keys fill the identity list (256 KiB) before 1000: as many as it takes.
        let mut count = 0;
        for body in add_bodies(kind, 1000) {
            if c.request(SSH_AGENTC_ADD_IDENTITY, &body) == [SSH_AGENT_SUCCESS] {
                count += 1;
                continue;
            }
            let listed = c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
            let ids = parse_identities(&listed);
            let (blob, comment) = ids.last().unwrap();
            let entry = 8 + blob.len() + comment.len();
            assert!(
                kind.starts_with("rsa") && listed.len() + entry > MAX_MESSAGE_LEN,
                "{kind}: key {count} refused"
            );
            break;
        }
        // The cheapest of three rounds of each; the first lock seals the keys as added, the
        // next ones seal the records the unlock before opened (no key has signed since).
        let mut kdf = [Duration::MAX; 2];
        let mut cost = [Duration::MAX; 3]; // lock ready keys, lock opened keys, unlock
        for round in 0..3 {
            kdf[0] = kdf[0].min(cpu_of(&empty, &mut e, lock, &pw, SSH_AGENT_SUCCESS));
            kdf[1] = kdf[1].min(cpu_of(&empty, &mut e, unlock, &pw, SSH_AGENT_SUCCESS));
            let i = usize::from(round > 0);
            cost[i] = cost[i].min(cpu_of(&agent, &mut c, lock, &pw, SSH_AGENT_SUCCESS));
            cost[2] = cost[2].min(cpu_of(&agent, &mut c, unlock, &pw, SSH_AGENT_SUCCESS));
        }
        let ms = |cost: Duration, kdf: Duration| (cost.as_secs_f64() - kdf.as_secs_f64()) * 1e3;
        let ready = ms(cost[0], kdf[0]);
        let opened = ms(cost[1], kdf[0]);
        let unlocked = ms(cost[2], kdf[1]);
        // The first signature of a few keys after the unlock (which rebuilds the key), and
        // the next one of each.
        let ids = parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
        assert_eq!(ids.len(), count);
        let (mut first, mut next) = (Duration::ZERO, Duration::ZERO);
        for (blob, _) in ids.iter().take(10) {
            let body = [string(blob), string(b"data"), u32(SSH_AGENT_RSA_SHA2_512)].concat();
            let want = SSH_AGENT_SIGN_RESPONSE;
            first += cpu_of(&agent, &mut c, SSH_AGENTC_SIGN_REQUEST, &body, want);
            next += cpu_of(&agent, &mut c, SSH_AGENTC_SIGN_REQUEST, &body, want);
        }
        println!(
            "{count:>4} {kind:<9}  lock {ready:>5.1} (ready keys) {opened:>5.1} (opened keys)  \
             unlock {unlocked:>5.1}  ({:.1?}, {:.1?})  |  a signature after unlock: \
             first {:.1?}, next {:.1?}",
            kdf[0],
            kdf[1],
            first / 10,
            next / 10
        );
        assert!(
            ready + unlocked < 100.0 && opened < 100.0,
            "locking and unlocking {count} {kind} keys took {ready:.1} ms (or {opened:.1} ms \
             again) and {unlocked:.1} ms beyond the KDF"
        );
    }
}
