//! Destination constraints (`ssh-add -h`, `-H`) and session binding (`session-bind@openssh.com`),
//! end to end: real `ssh`, `ssh-add` and several throwaway `sshd`s on 127.0.0.1, each with its own
//! host key (one kind with a host certificate), port and config. Forwarding hops run on the same
//! machine: `ssh -A hosta ssh hostb true` runs the inner `ssh` in a session on "hosta", through the
//! forwarded agent. Hosts are named by `HostKeyAlias` and a private known_hosts file, which
//! `ssh-add -H` reads too. Needs root (sshd logs in as root); those tests are skipped otherwise.
//!
//! Prove against OpenSSH with `AGENT_UNDER_TEST=/usr/bin/ssh-agent cargo test --test destinations`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::*;
use signature::Signer;
use ssh_key::encoding::Encode;

const SESSION_BIND: &[u8] = b"session-bind@openssh.com";

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The base64 blob of a public key file: how `ssh-add -L` output is compared.
fn b64(key: &Path) -> String {
    pub_line(&pub_path(key))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

/// The base64 blobs `ssh-add -L` printed.
fn listed(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter(|l| *l != "The agent has no identities.")
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Throwaway sshd hosts

/// An sshd known to clients as `alias`, authorizing `keys` for root.
fn host(alias: &str, keys: &[&Path]) -> Sshd {
    Sshd::builder().alias(alias).authorize(keys).start()
}

/// Two sshds, `names`, authorizing `key`, and a known_hosts file in the agent's directory that
/// names both.
fn two_hosts(agent: &Agent, names: [&str; 2], key: &Path) -> (Sshd, Sshd, PathBuf) {
    let a = host(names[0], &[&pub_path(key)]);
    let b = host(names[1], &[&pub_path(key)]);
    let lines = [a.known_hosts_line(), b.known_hosts_line()];
    let kh = known_hosts(agent.dir(), "known_hosts", &lines);
    (a, b, kh)
}

/// Writes a known_hosts file `name` in `dir` with these lines.
fn known_hosts(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(&path, text).unwrap();
    path
}

/// Everything worth seeing when a login did not go as expected.
fn explain(out: &Output, hosts: &[&Sshd], agent: &Agent) -> String {
    let mut s = format!(
        "status {:?}\nssh stdout: {}\nssh stderr: {}\nagent stderr: {}\n",
        out.status,
        stdout(out),
        stderr(out),
        agent.stderr_text()
    );
    for h in hosts {
        s.push_str(&format!("--- sshd {} log:\n{}\n", h.alias(), h.log_text()));
    }
    s
}

#[track_caller]
fn assert_login(out: &Output, hosts: &[&Sshd], agent: &Agent) {
    assert!(
        out.status.success(),
        "login failed\n{}",
        explain(out, hosts, agent)
    );
}

#[track_caller]
fn assert_refused(out: &Output, hosts: &[&Sshd], agent: &Agent) {
    assert_eq!(
        out.status.code(),
        Some(255),
        "login should have failed\n{}",
        explain(out, hosts, agent)
    );
    assert!(
        stderr(out).contains("Permission denied"),
        "{}",
        explain(out, hosts, agent)
    );
}

/// `ssh-add -H known_hosts -h c1 -h c2 ... key`.
fn add_restricted(agent: &Agent, known_hosts: &Path, dests: &[&str], key: &Path) {
    let mut args = vec!["-H", p(known_hosts)];
    for d in dests {
        args.push("-h");
        args.push(d);
    }
    args.push(p(key));
    let out = ssh_add(agent, &args);
    expect_ok(&out);
}

/// An agent and an Ed25519 key file beside it (not added), when sshd tests can run here.
fn agent_for_logins() -> Option<(Agent, PathBuf)> {
    if !can_run_sshd() {
        return None;
    }
    let agent = Agent::start(&[]);
    let key = keygen(agent.dir(), "ed25519");
    Some((agent, key))
}

/// A new Ed25519 key `name` added with [`add_restricted`]; returns its blob.
fn restricted_key(agent: &Agent, known_hosts: &Path, dests: &[&str], name: &str) -> Vec<u8> {
    let key = keygen_named(agent.dir(), "ed25519", name, name);
    add_restricted(agent, known_hosts, dests, &key);
    pub_blob(&pub_path(&key))
}

// ---------------------------------------------------------------------------------------------
// Logins through real ssh and sshd

/// A key restricted to hosta logs in there and nowhere else, and a forwarded agent on hosta does
/// not even show it (it may not be used beyond hosta).
#[test]
fn restricted_key_logs_in_only_to_its_host_and_is_hidden_beyond_it() {
    let Some((agent, key)) = agent_for_logins() else {
        return;
    };
    let (a, b, kh) = two_hosts(&agent, ["hosta", "hostb"], &key);
    add_restricted(&agent, &kh, &["hosta"], &key);

    let out = a.ssh_known(&agent, &kh, &[], "true");
    assert_login(&out, &[&a], &agent);

    // B authorizes the key too: only the agent stands in the way.
    let out = b.ssh_known(&agent, &kh, &[], "true");
    assert_refused(&out, &[&b], &agent);
    assert!(!b.accepted(), "{}", b.log_text());

    // Locally the key is listed (no binding: local use) ...
    let out = ssh_add(&agent, &["-L"]);
    assert_eq!(listed(&out), [b64(&key)]);
    // ... but not through the agent forwarded to hosta.
    let out = a.ssh_known(&agent, &kh, &["-A"], "ssh-add -L");
    assert!(listed(&out).is_empty(), "{}", explain(&out, &[&a], &agent));
    assert!(
        stdout(&out).contains("The agent has no identities."),
        "{}",
        explain(&out, &[&a], &agent)
    );

    // Control: the same key without the constraint logs in to B.
    expect_ok(&ssh_add(&agent, &[p(&key)]));
    let out = b.ssh_known(&agent, &kh, &[], "true");
    assert_login(&out, &[&b], &agent);
}

/// `-h hosta -h "hosta>hostb"`: hostb is reachable only through the agent forwarded to hosta.
#[test]
fn key_allowed_a_to_b_reaches_b_only_through_a() {
    let Some((agent, key)) = agent_for_logins() else {
        return;
    };
    let (a, b, kh) = two_hosts(&agent, ["hosta", "hostb"], &key);
    add_restricted(&agent, &kh, &["hosta", "hosta>hostb"], &key);

    // Through hosta: the inner ssh runs on "hosta" and signs through the forwarded agent.
    let inner = b.ssh_command_line(&kh, "true");
    let out = a.ssh_known(&agent, &kh, &["-A"], &inner);
    assert_login(&out, &[&a, &b], &agent);
    assert!(b.accepted(), "{}", b.log_text());

    // The forwarded agent on hosta lists it: it may be used beyond hosta.
    let out = a.ssh_known(&agent, &kh, &["-A"], "ssh-add -L");
    assert_eq!(
        listed(&out),
        [b64(&key)],
        "{}",
        explain(&out, &[&a], &agent)
    );

    // Directly: refused.
    let out = b.ssh_known(&agent, &kh, &[], "true");
    assert_refused(&out, &[&b], &agent);

    // hosta>hosta is not allowed either: only the hosta>hostb hop is.
    let inner = a.ssh_command_line(&kh, "true");
    let out = a.ssh_known(&agent, &kh, &["-A"], &inner);
    assert_refused(&out, &[&a], &agent);
}

/// The user part of a destination (`user@host`, a `match_pattern` pattern) is checked when the
/// agent signs: a key for nobody@hosta cannot log in as root.
#[test]
fn user_patterns_in_destinations() {
    let Some((agent, key)) = agent_for_logins() else {
        return;
    };
    let a = host("hosta", &[&pub_path(&key)]);
    let kh = known_hosts(agent.dir(), "known_hosts", &[a.known_hosts_line()]);
    // Adding the key again replaces its constraints in place.
    for (dest, ok) in [
        ("nobody@hosta", false),
        ("root@hosta", true),
        ("nob*@hosta", false),
        ("r*t@hosta", true),
        ("r?t@hosta", false),
        ("r??t@hosta", true),
    ] {
        add_restricted(&agent, &kh, &[dest], &key);
        let out = a.ssh_known(&agent, &kh, &[], "true");
        if ok {
            assert_login(&out, &[&a], &agent);
        } else {
            assert_refused(&out, &[&a], &agent);
        }
        let out = ssh_add(&agent, &["-L"]);
        assert_eq!(listed(&out), [b64(&key)], "{dest}");
    }
}

/// Two hosts and an agent holding four keys: `any` (unconstrained), `only_a` (restricted to
/// hosta), `only_b` (to hostb) and `a_to_b` (hosta, and hostb through hosta). Only `any` is
/// authorized at hosta.
struct FourKeys {
    agent: Agent,
    a: Sshd,
    _b: Sshd,
    kh: PathBuf,
    any: PathBuf,
    only_a: PathBuf,
    only_b: PathBuf,
    a_to_b: PathBuf,
}

impl FourKeys {
    fn start() -> FourKeys {
        let agent = Agent::start(&[]);
        let dir = agent.dir();
        let any = keygen_named(dir, "ed25519", "any", "any");
        let only_a = keygen_named(dir, "ed25519", "only_a", "only_a");
        let only_b = keygen_named(dir, "ecdsa-256", "only_b", "only_b");
        let a_to_b = keygen_named(dir, "ed25519", "a_to_b", "a_to_b");
        let a = host("hosta", &[&pub_path(&any)]);
        let b = host("hostb", &[]);
        let kh = known_hosts(
            dir,
            "known_hosts",
            &[a.known_hosts_line(), b.known_hosts_line()],
        );
        expect_ok(&ssh_add(&agent, &[p(&any)]));
        add_restricted(&agent, &kh, &["hosta"], &only_a);
        add_restricted(&agent, &kh, &["hostb"], &only_b);
        add_restricted(&agent, &kh, &["hosta", "hosta>hostb"], &a_to_b);
        FourKeys {
            agent,
            a,
            _b: b,
            kh,
            any,
            only_a,
            only_b,
            a_to_b,
        }
    }
}

/// What a forwarded agent on hosta lists: unconstrained keys, and constrained keys allowed at
/// hosta AND beyond it. Hidden keys cannot be removed through it either.
#[test]
fn forwarded_agent_lists_only_what_the_host_may_see() {
    if !can_run_sshd() {
        return;
    }
    let FourKeys {
        agent,
        a,
        kh,
        any,
        only_a,
        only_b,
        a_to_b,
        ..
    } = FourKeys::start();

    let all = [b64(&any), b64(&only_a), b64(&only_b), b64(&a_to_b)];
    assert_eq!(listed(&ssh_add(&agent, &["-L"])), all);

    let out = a.ssh_known(&agent, &kh, &["-A"], "ssh-add -L");
    assert_eq!(
        listed(&out),
        [b64(&any), b64(&a_to_b)],
        "{}",
        explain(&out, &[&a], &agent)
    );

    // A hidden key cannot be removed through the forwarded agent.
    let cmd = format!("ssh-add -d {}", sh_quote(p(&pub_path(&only_b))));
    let out = a.ssh_known(&agent, &kh, &["-A"], &cmd);
    assert!(!out.status.success(), "{}", explain(&out, &[&a], &agent));
    assert_eq!(listed(&ssh_add(&agent, &["-L"])), all);
    // A visible one can.
    let cmd = format!("ssh-add -d {}", sh_quote(p(&pub_path(&a_to_b))));
    let out = a.ssh_known(&agent, &kh, &["-A"], &cmd);
    assert!(out.status.success(), "{}", explain(&out, &[&a], &agent));
    assert_eq!(
        listed(&ssh_add(&agent, &["-L"])),
        [b64(&any), b64(&only_a), b64(&only_b)]
    );
}

/// sshkeep: `ssh-add -D` through a forwarded agent removes only the keys that connection may see.
/// (OpenSSH removes every key, hidden ones included.)
#[test]
fn forwarded_remove_all_leaves_hidden_keys() {
    if !can_run_sshd() || !sshkeep_only() {
        return;
    }
    let FourKeys {
        agent,
        a,
        kh,
        only_a,
        only_b,
        ..
    } = FourKeys::start();

    let out = a.ssh_known(&agent, &kh, &["-A"], "ssh-add -D");
    assert!(out.status.success(), "{}", explain(&out, &[&a], &agent));
    assert!(
        stderr(&out).contains("All identities removed."),
        "{}",
        explain(&out, &[&a], &agent)
    );
    assert_eq!(
        listed(&ssh_add(&agent, &["-L"])),
        [b64(&only_a), b64(&only_b)]
    );
    // Locally (unbound) remove-all still removes everything.
    expect_ok(&ssh_add(&agent, &["-D"]));
    assert!(listed(&ssh_add(&agent, &["-L"])).is_empty());
}

/// A key restricted to a host known by a `@cert-authority` line logs in to the sshd presenting a
/// host certificate from that CA for that name, and not to one whose certificate names another.
#[test]
fn host_certificate_destination() {
    if !can_run_sshd() {
        return;
    }
    let agent = Agent::start(&[]);
    let dir = agent.dir();
    let ca = keygen_named(dir, "ed25519", "host_ca", "host_ca");
    let key = keygen(dir, "ed25519");
    let hostc = Sshd::builder().alias("hostc").host_cert(&ca, "hostc");
    let c = hostc.authorize(&[&pub_path(&key)]).start();
    let hostd = Sshd::builder().alias("hostd").host_cert(&ca, "hostd");
    let d = hostd.authorize(&[&pub_path(&key)]).start();
    // Only the CA is known: the plain host keys are in no file.
    let kh = known_hosts(
        dir,
        "known_hosts_ca",
        &[format!(
            "@cert-authority hostc,hostd {}",
            key_fields(&pub_path(&ca))
        )],
    );
    add_restricted(&agent, &kh, &["hostc"], &key);

    let out = c.ssh_known(&agent, &kh, &[], "true");
    assert_login(&out, &[&c], &agent);
    assert!(
        c.log_text().contains("Accepted publickey for root"),
        "{}",
        c.log_text()
    );

    // Same CA, but the certificate is for hostd: not the host the key was restricted to.
    let out = d.ssh_known(&agent, &kh, &[], "true");
    assert_refused(&out, &[&d], &agent);

    // Both: ssh-add -h hostc -h hostd.
    add_restricted(&agent, &kh, &["hostc", "hostd"], &key);
    let out = d.ssh_known(&agent, &kh, &[], "true");
    assert_login(&out, &[&d], &agent);
}

// ---------------------------------------------------------------------------------------------
// --confirm-forwarded (sshkeep only)

/// Writes an executable `/bin/sh` script `name` into `dir` and returns its path.
/// An agent with `--confirm-forwarded` whose askpass writes its prompt to `marker` and exits
/// `status`; holding one unconstrained key (added without `-c`).
fn confirm_forwarded_agent(scripts: &TempDir, marker: &Path, status: u8) -> (Agent, PathBuf) {
    let body = format!(
        "printf '%s' \"$1\" > {}\nexit {status}",
        sh_quote(p(marker))
    );
    let askpass = script(scripts.path(), "askpass", &body);
    let agent = Agent::start_env(
        &["--confirm-forwarded"],
        &[
            ("SSH_ASKPASS", p(&askpass)),
            ("SSH_ASKPASS_REQUIRE", "force"),
        ],
    );
    let key = keygen(agent.dir(), "ed25519");
    expect_ok(&ssh_add(&agent, &[p(&key)]));
    (agent, key)
}

#[test]
fn confirm_forwarded_asks_only_for_signatures_through_a_forwarded_agent() {
    if !can_run_sshd() || !sshkeep_only() {
        return;
    }
    let scripts = TempDir::new();
    let marker = scripts.join("asked");
    let (agent, key) = confirm_forwarded_agent(&scripts, &marker, 0);
    let (a, a2, kh) = two_hosts(&agent, ["hosta", "hosta2"], &key);

    // Local use, with or without forwarding turned on: no question.
    let out = a.ssh_known(&agent, &kh, &[], "true");
    assert_login(&out, &[&a], &agent);
    let out = a.ssh_known(&agent, &kh, &["-A"], "ssh-add -L");
    assert_login(&out, &[&a], &agent);
    assert_eq!(listed(&out), [b64(&key)]);
    assert!(!marker.exists(), "askpass ran for local use");

    // A signature through the forwarded agent: asked, allowed.
    let inner = a2.ssh_command_line(&kh, "true");
    let out = a.ssh_known(&agent, &kh, &["-A"], &inner);
    assert_login(&out, &[&a, &a2], &agent);
    assert!(a2.accepted(), "{}", a2.log_text());
    let prompt = fs::read_to_string(&marker).expect("askpass did not run");
    let fp_line = fingerprint(&pub_path(&key));
    let fp = fp_line.split_whitespace().nth(1).unwrap();
    // OpenSSH's lines, the forwarded line, then who forwards it and the hops (tests/who.rs).
    let lines: Vec<&str> = prompt.split('\n').collect();
    assert_eq!(
        lines[..3],
        [
            "Allow use of key id_ed25519@sshkeep-test?",
            &format!("Key fingerprint {fp}."),
            "requested through a forwarded agent connection",
        ],
        "{prompt}"
    );
    assert!(
        lines[3].starts_with("Forwarded by \"ssh\" (pid "),
        "{prompt}"
    );
    let host_fp = |h: &Sshd| {
        fingerprint(&h.host_key_pub())
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(
        lines[4..],
        [
            format!(
                "Forwarded to host key {} (no name in known_hosts)",
                host_fp(&a)
            ),
            format!(
                "Destination host key {} (no name in known_hosts)",
                host_fp(&a2)
            ),
        ],
        "{prompt}"
    );
}

#[test]
fn confirm_forwarded_refusal_fails_only_the_forwarded_login() {
    if !can_run_sshd() || !sshkeep_only() {
        return;
    }
    let scripts = TempDir::new();
    let marker = scripts.join("asked");
    let (agent, key) = confirm_forwarded_agent(&scripts, &marker, 1);
    let (a, a2, kh) = two_hosts(&agent, ["hosta", "hosta2"], &key);

    let inner = a2.ssh_command_line(&kh, "true");
    let out = a.ssh_known(&agent, &kh, &["-A"], &inner);
    assert_refused(&out, &[&a, &a2], &agent);
    assert!(marker.exists(), "askpass did not run");
    assert!(!a2.accepted(), "{}", a2.log_text());

    fs::remove_file(&marker).unwrap();
    let out = a.ssh_known(&agent, &kh, &[], "true");
    assert_login(&out, &[&a], &agent);
    assert!(!marker.exists(), "askpass ran for local use");
}

// ---------------------------------------------------------------------------------------------
// session-bind@openssh.com on the raw protocol

/// A host key the test holds the private half of.
struct HostKey {
    private: ssh_key::PrivateKey,
    blob: Vec<u8>,
    pub_file: PathBuf,
}

impl HostKey {
    fn new(dir: &Path, kind: &str, name: &str) -> HostKey {
        let path = keygen_named(dir, kind, name, name);
        HostKey {
            private: ssh_key::PrivateKey::read_openssh_file(&path).unwrap(),
            blob: pub_blob(&pub_path(&path)),
            pub_file: pub_path(&path),
        }
    }

    /// A certificate of this key signed by `ca` with `ssh-keygen -s ca <args>` (e.g. `-h`,
    /// `-n principals`, `-V interval`); returns its blob.
    fn certify(&self, ca: &Path, args: &[&str]) -> Vec<u8> {
        let cert = sign_certificate(ca, &self.pub_file, "sshkeep-test-host", args);
        let blob = pub_blob(&cert);
        fs::remove_file(cert).unwrap();
        blob
    }

    /// The host key's signature over `sid`, as ssh passes it on (`string alg, string sig`).
    fn sign(&self, sid: &[u8]) -> Vec<u8> {
        let sig: ssh_key::Signature = self.private.try_sign(sid).unwrap();
        sig.encode_vec().unwrap()
    }

    fn known_hosts_line(&self, name: &str) -> String {
        format!("{name} {}", key_fields(&self.pub_file))
    }
}

/// A known_hosts file in `dir` naming `a` hosta and `b` hostb.
fn known_a_and_b(dir: &Path, a: &HostKey, b: &HostKey) -> PathBuf {
    let lines = [a.known_hosts_line("hosta"), b.known_hosts_line("hostb")];
    known_hosts(dir, "known_hosts", &lines)
}

/// A session-bind extension body.
fn bind_body(host_key: &[u8], sid: &[u8], sig: &[u8], forwarding: bool) -> Vec<u8> {
    let mut v = string(SESSION_BIND);
    v.extend(string(host_key));
    v.extend(string(sid));
    v.extend(string(sig));
    v.push(u8::from(forwarding));
    v
}

/// Sends a bind and returns the reply's type.
fn bind(c: &mut RawClient, host_key: &HostKey, sid: &[u8], forwarding: bool) -> u8 {
    bind_as(c, &host_key.blob, host_key, sid, forwarding)
}

/// Sends a bind presenting `blob` (e.g. a certificate of `host_key`) signed by `host_key`.
fn bind_as(c: &mut RawClient, blob: &[u8], host_key: &HostKey, sid: &[u8], fwd: bool) -> u8 {
    let body = bind_body(blob, sid, &host_key.sign(sid), fwd);
    c.request(SSH_AGENTC_EXTENSION, &body)[0]
}

/// The reply type for a refused bind: 28 (SSH_AGENT_EXTENSION_FAILURE) for sshkeep and
/// OpenSSH 10.3+, 5 for older OpenSSH.
#[track_caller]
fn assert_bind_refused(reply: u8) {
    if is_sshkeep() {
        assert_eq!(reply, SSH_AGENT_EXTENSION_FAILURE);
    } else {
        assert!(
            reply == SSH_AGENT_EXTENSION_FAILURE || reply == SSH_AGENT_FAILURE,
            "reply {reply}"
        );
    }
}

fn list(c: &mut RawClient) -> Vec<Vec<u8>> {
    parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]))
        .into_iter()
        .map(|(blob, _)| blob)
        .collect()
}

/// A publickey userauth request as ssh asks an agent to sign it (with the host key: the
/// `publickey-hostbound-v00@openssh.com` method).
fn userauth_request(sid: &[u8], user: &str, key: &[u8], host_key: Option<&[u8]>) -> Vec<u8> {
    let mut v = string(sid);
    v.push(50); // SSH2_MSG_USERAUTH_REQUEST
    v.extend(string(user.as_bytes()));
    v.extend(string(b"ssh-connection"));
    let method: &[u8] = match host_key {
        Some(_) => b"publickey-hostbound-v00@openssh.com",
        None => b"publickey",
    };
    v.extend(string(method));
    v.push(1);
    let alg = Reader(key).string().to_vec();
    v.extend(string(&alg));
    v.extend(string(key));
    if let Some(hk) = host_key {
        v.extend(string(hk));
    }
    v
}

/// Sends a sign request and returns the reply's type.
fn sign(c: &mut RawClient, key: &[u8], data: &[u8]) -> u8 {
    let mut body = string(key);
    body.extend(string(data));
    body.extend(u32(0));
    c.request(SSH_AGENTC_SIGN_REQUEST, &body)[0]
}

/// Binds that do not verify, reuse a session id for another host key, or follow an
/// authentication bind are refused; a failed bind hides destination-constrained keys.
#[test]
fn forged_and_conflicting_session_binds() {
    let agent = Agent::start(&[]);
    let dir = agent.dir();
    let hk1 = HostKey::new(dir, "ed25519", "hk1");
    let hk2 = HostKey::new(dir, "ecdsa-256", "hk2");
    let hk3 = HostKey::new(dir, "rsa-2048", "hk3");
    let kh = known_a_and_b(dir, &hk1, &hk2);
    let free = keygen_named(dir, "ed25519", "free", "free");
    expect_ok(&ssh_add(&agent, &[p(&free)]));
    let to_a_blob = restricted_key(&agent, &kh, &["hosta"], "to_a");
    let free_blob = pub_blob(&pub_path(&free));
    let sid1 = [0x11u8; 32];
    let sid2 = [0x22u8; 48];

    // Valid binds with each kind of host key (RSA as rsa-sha2-512, as sshd signs).
    for hk in [&hk1, &hk2, &hk3] {
        let mut c = RawClient::connect(agent.sock());
        assert_eq!(bind(&mut c, hk, &sid1, false), SSH_AGENT_SUCCESS);
    }

    // A signature that does not verify: by another key, over other data, or garbage.
    let forged = [
        bind_body(&hk1.blob, &sid1, &hk2.sign(&sid1), false),
        bind_body(&hk1.blob, &sid1, &hk1.sign(&sid2), false),
        bind_body(&hk1.blob, &sid1, &string(b"garbage"), false),
    ];
    for body in &forged {
        let mut c = RawClient::connect(agent.sock());
        assert_bind_refused(c.request(SSH_AGENTC_EXTENSION, body)[0]);
        let listed = list(&mut c);
        assert!(listed.contains(&free_blob));
        if is_sshkeep() {
            // OpenSSH 9.6+: after a failed bind the connection is not local any more.
            assert!(!listed.contains(&to_a_blob), "constrained key listed");
            assert_eq!(sign(&mut c, &to_a_blob, b"data"), SSH_AGENT_FAILURE);
        } else if listed.contains(&to_a_blob) {
            println!("note: this agent still lists a constrained key after a failed bind");
        }
    }

    // Forwarding binds: the same pair again is a no-op; the same session id with another host
    // key is refused; a new session id with a known key is fine.
    let mut c = RawClient::connect(agent.sock());
    assert_eq!(bind(&mut c, &hk1, &sid1, true), SSH_AGENT_SUCCESS);
    assert_eq!(bind(&mut c, &hk1, &sid1, true), SSH_AGENT_SUCCESS);
    assert_bind_refused(bind(&mut c, &hk2, &sid1, true));
    assert_eq!(bind(&mut c, &hk1, &sid2, true), SSH_AGENT_SUCCESS);

    // At most 16 bindings per connection.
    let mut c = RawClient::connect(agent.sock());
    for i in 0..16u8 {
        assert_eq!(bind(&mut c, &hk1, &[i + 1; 32], true), SSH_AGENT_SUCCESS);
    }
    assert_bind_refused(bind(&mut c, &hk1, &[0xff; 32], true));
    // The ones recorded still count as recorded.
    assert_eq!(bind(&mut c, &hk1, &[1; 32], true), SSH_AGENT_SUCCESS);

    if is_sshkeep() {
        // OpenSSH 10.0+: session ids longer than 128 bytes are refused.
        let mut c = RawClient::connect(agent.sock());
        assert_eq!(bind(&mut c, &hk1, &[7; 128], true), SSH_AGENT_SUCCESS);
        assert_bind_refused(bind(&mut c, &hk1, &[7; 129], true));
    }

    // After an authentication bind nothing more can be bound.
    let mut c = RawClient::connect(agent.sock());
    assert_eq!(bind(&mut c, &hk1, &sid1, false), SSH_AGENT_SUCCESS);
    assert_bind_refused(bind(&mut c, &hk2, &sid2, false));
    assert_bind_refused(bind(&mut c, &hk2, &sid2, true));
    assert_bind_refused(bind(&mut c, &hk1, &sid1, false));
}

/// On a connection bound to a host, a constrained key is listed and signs only for that host's
/// session: a userauth request for the last bound session id and host key.
#[test]
fn bound_connection_signs_only_userauth_for_the_bound_session() {
    let agent = Agent::start(&[]);
    let dir = agent.dir();
    let hk1 = HostKey::new(dir, "ed25519", "hk1");
    let hk2 = HostKey::new(dir, "ed25519", "hk2");
    let kh = known_a_and_b(dir, &hk1, &hk2);
    let key = restricted_key(&agent, &kh, &["hosta"], "to_a");
    let sid = [0x33u8; 32];
    let other_sid = [0x44u8; 32];

    // Unbound (local use): listed, but a constrained key never signs on an unbound connection.
    let mut c = RawClient::connect(agent.sock());
    assert_eq!(list(&mut c), std::slice::from_ref(&key));
    let req = userauth_request(&sid, "root", &key, Some(&hk1.blob));
    assert_eq!(sign(&mut c, &key, &req), SSH_AGENT_FAILURE);

    // Bound to hostb: hidden, and refused.
    let mut c = RawClient::connect(agent.sock());
    assert_eq!(bind(&mut c, &hk2, &sid, false), SSH_AGENT_SUCCESS);
    assert!(list(&mut c).is_empty());
    let req = userauth_request(&sid, "root", &key, Some(&hk2.blob));
    assert_eq!(sign(&mut c, &key, &req), SSH_AGENT_FAILURE);

    // Bound to hosta.
    let mut c = RawClient::connect(agent.sock());
    assert_eq!(bind(&mut c, &hk1, &sid, false), SSH_AGENT_SUCCESS);
    assert_eq!(list(&mut c), std::slice::from_ref(&key));
    for (data, ok) in [
        (userauth_request(&sid, "root", &key, Some(&hk1.blob)), true),
        (userauth_request(&sid, "root", &key, None), true),
        (b"not a userauth request".to_vec(), false),
        (
            userauth_request(&other_sid, "root", &key, Some(&hk1.blob)),
            false,
        ),
        (userauth_request(&sid, "root", &key, Some(&hk2.blob)), false),
    ] {
        let reply = sign(&mut c, &key, &data);
        let want = if ok {
            SSH_AGENT_SIGN_RESPONSE
        } else {
            SSH_AGENT_FAILURE
        };
        assert_eq!(reply, want, "data {data:?}");
    }

    // Forwarded to hosta, then authenticating at hosta again: hosta>hosta is not allowed.
    let mut c = RawClient::connect(agent.sock());
    assert_eq!(bind(&mut c, &hk1, &sid, true), SSH_AGENT_SUCCESS);
    assert!(list(&mut c).is_empty(), "listed beyond hosta");
    assert_eq!(bind(&mut c, &hk1, &other_sid, false), SSH_AGENT_SUCCESS);
    let req = userauth_request(&other_sid, "root", &key, Some(&hk1.blob));
    assert_eq!(sign(&mut c, &key, &req), SSH_AGENT_FAILURE);
}

// ---------------------------------------------------------------------------------------------
// query

/// The `query` extension lists session-bind. (OpenSSH added it in 10.3; older agents answer
/// FAILURE, and older ssh-add has no -Q.)
#[test]
fn query_lists_session_bind() {
    let agent = Agent::start(&[]);
    let mut c = RawClient::connect(agent.sock());
    let reply = c.request(SSH_AGENTC_EXTENSION, &string(b"query"));
    if !is_sshkeep() && reply == [SSH_AGENT_FAILURE] {
        println!("note: this agent does not implement query");
    } else {
        let mut r = Reader(&reply);
        assert_eq!(r.u8(), SSH_AGENT_EXTENSION_RESPONSE);
        assert_eq!(r.string(), b"query");
        assert_eq!(r.string(), SESSION_BIND);
        assert!(r.is_empty(), "trailing bytes: {reply:?}");
    }

    // ssh-add -Q where the installed ssh-add has it.
    let out = ssh_add(&agent, &["-Q"]);
    if stderr(&out).contains("unknown option") {
        println!("note: this ssh-add has no -Q");
    } else if is_sshkeep() {
        expect_ok(&out);
        assert!(
            stdout(&out).contains("session-bind@openssh.com"),
            "{}",
            stdout(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Host certificates on the raw protocol

/// Whether `key` is listed on a fresh connection bound (for authentication) to `blob`, a
/// certificate of `host_key`.
fn listed_when_bound_to(agent: &Agent, blob: &[u8], host_key: &HostKey, key: &[u8]) -> bool {
    let mut c = RawClient::connect(agent.sock());
    assert_eq!(
        bind_as(&mut c, blob, host_key, &[0x55; 32], false),
        SSH_AGENT_SUCCESS
    );
    list(&mut c).iter().any(|b| b == key)
}

/// A key restricted to a host known only by its CA is usable at a host presenting a valid host
/// certificate from that CA for that name, and not with a certificate from another CA, for
/// another name, of the wrong type, or out of its validity interval.
#[test]
fn host_certificate_binds() {
    let agent = Agent::start(&[]);
    let dir = agent.dir();
    let ca = keygen_named(dir, "ed25519", "ca", "ca");
    let rsa_ca = keygen_named(dir, "rsa-2048", "rsa_ca", "rsa_ca");
    let other_ca = keygen_named(dir, "ecdsa-256", "other_ca", "other_ca");
    let hk = HostKey::new(dir, "ed25519", "hk");
    let kh = known_hosts(
        dir,
        "known_hosts",
        &[
            format!("@cert-authority hoste,hostf {}", key_fields(&pub_path(&ca))),
            format!("@cert-authority hoste {}", key_fields(&pub_path(&rsa_ca))),
        ],
    );
    let key = restricted_key(&agent, &kh, &["hoste"], "to_e");

    let good = hk.certify(&ca, &["-h", "-n", "hoste"]);
    assert!(listed_when_bound_to(&agent, &good, &hk, &key));
    let by_rsa = hk.certify(&rsa_ca, &["-h", "-n", "hoste", "-t", "rsa-sha2-512"]);
    assert!(listed_when_bound_to(&agent, &by_rsa, &hk, &key));
    let several = hk.certify(&ca, &["-h", "-n", "hostx,hoste"]);
    assert!(listed_when_bound_to(&agent, &several, &hk, &key));
    let wrongly_listed = [
        ("another CA", hk.certify(&other_ca, &["-h", "-n", "hoste"])),
        ("another name", hk.certify(&ca, &["-h", "-n", "hostf"])),
        ("a user certificate", hk.certify(&ca, &["-n", "hoste"])),
        (
            "an expired certificate",
            hk.certify(&ca, &["-h", "-n", "hoste", "-V", "20000101:20010101"]),
        ),
        (
            "a certificate not yet valid",
            hk.certify(&ca, &["-h", "-n", "hoste", "-V", "+3650d:+3651d"]),
        ),
        (
            "a certificate with a critical option",
            hk.certify(
                &ca,
                &["-h", "-n", "hoste", "-O", "critical:x@example.test=y"],
            ),
        ),
        (
            "a certificate signed with SHA-1 ssh-rsa",
            hk.certify(&rsa_ca, &["-h", "-n", "hoste", "-t", "ssh-rsa"]),
        ),
    ]
    .into_iter()
    .filter(|(_, cert)| listed_when_bound_to(&agent, cert, &hk, &key))
    .map(|(what, _)| what)
    .collect::<Vec<_>>();
    assert!(
        wrongly_listed.is_empty(),
        "a key restricted to hoste is listed on connections bound to {wrongly_listed:?}"
    );
    // The plain host key is not the CA.
    assert!(!listed_when_bound_to(&agent, &hk.blob, &hk, &key));
}

/// Principals of host certificates as OpenSSH 10.3+ reads them (sshkey_cert_check_host since
/// "requires all certificates include principals sections ... fixes interpretation of wildcard
/// principals"): a principal is a wildcard pattern the destination's host name must match, and
/// a certificate without principals is valid for no host. OpenSSH 9.2 differs on both (it
/// matched the host name as the pattern and took an empty list for any host).
#[test]
fn host_certificate_principals_as_current_openssh() {
    if !sshkeep_only() {
        return;
    }
    let agent = Agent::start(&[]);
    let dir = agent.dir();
    let ca = keygen_named(dir, "ed25519", "ca", "ca");
    let hk = HostKey::new(dir, "ed25519", "hk");
    let kh = known_hosts(
        dir,
        "known_hosts",
        &[format!(
            "@cert-authority *.example.test {}",
            key_fields(&pub_path(&ca))
        )],
    );
    let exact = restricted_key(&agent, &kh, &["e.example.test"], "exact");
    let pattern = restricted_key(&agent, &kh, &["*.example.test"], "pattern");

    let named = hk.certify(&ca, &["-h", "-n", "e.example.test"]);
    assert!(listed_when_bound_to(&agent, &named, &hk, &exact));
    // The destination's name is not a pattern.
    assert!(!listed_when_bound_to(&agent, &named, &hk, &pattern));
    // A wildcard principal covers the name.
    let wildcard = hk.certify(&ca, &["-h", "-n", "*.example.test"]);
    assert!(
        listed_when_bound_to(&agent, &wildcard, &hk, &exact),
        "a host certificate for *.example.test does not match e.example.test"
    );
    // No principals: valid for no host.
    let anyhost = hk.certify(&ca, &["-h"]);
    assert!(
        !listed_when_bound_to(&agent, &anyhost, &hk, &exact),
        "a host certificate without principals matches any host"
    );
}

// ---------------------------------------------------------------------------------------------
// The cost of the worst constraints the limits allow (sshkeep only)

/// sshkeep's limits on destination constraints (see the man page, "Limits of destination
/// constraints"): host names and principals up to 255 bytes, user names 255 and user patterns
/// 256 (as OpenSSH), 256 principals per host certificate (as OpenSSH) of which 64 bytes may be
/// wildcard principals, and across all keys 16384 host keys of which 256 CA keys.
const MAX_NAME: usize = 255;
const MAX_USER: usize = 255;
const MAX_USER_PATTERN: usize = 256;
const MAX_PRINCIPALS: usize = 256;
const MAX_WILDCARD_BYTES: usize = 64;
const MAX_HOST_KEYS: usize = 16384;
const MAX_CA_KEYS: usize = 256;
/// 2048 keys (the agent's and OpenSSH's clients' limit), 16 bindings per connection.
const KEYS: usize = 2048;
const BINDINGS: usize = 16;
/// How much of the agent's CPU time one request may take: 10 ms, measured on the release
/// binary users run (1 to 2 ms measured on a loaded 2-CPU virtual machine). It fails by far
/// an agent that re-verifies certificates or matches unbounded patterns per request (sshkeep
/// before these limits: 120 ms to 3 s per request, release build).
const REQUEST_CPU_BOUND: Duration = Duration::from_millis(10);

/// An Ed25519 key made in-process from a number: (its ADD body without comment and
/// constraints, its public blob).
fn ed25519_key(n: u64) -> (Vec<u8>, Vec<u8>) {
    let mut seed = [0x5au8; 32];
    seed[..8].copy_from_slice(&n.to_be_bytes());
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    let pk = sk.verifying_key().to_bytes();
    let mut blob = string(b"ssh-ed25519");
    blob.extend(string(&pk));
    let mut body = blob.clone();
    let mut pair = seed.to_vec();
    pair.extend_from_slice(&pk);
    body.extend(string(&pair));
    (body, blob)
}

/// A public Ed25519 host key blob nobody holds the private half of.
fn fake_host_key(n: u64) -> Vec<u8> {
    let mut pk = [0xc3u8; 32];
    pk[..8].copy_from_slice(&n.to_be_bytes());
    let mut blob = string(b"ssh-ed25519");
    blob.extend(string(&pk));
    blob
}

/// One end of a destination constraint on the wire.
fn wire_hop(user: &[u8], host: &[u8], keys: &[(&[u8], bool)]) -> Vec<u8> {
    let mut h = string(user);
    h.extend(string(host));
    h.extend(string(b""));
    for (k, ca) in keys {
        h.extend(string(k));
        h.push(u8::from(*ca));
    }
    h
}

fn wire_rule(from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut c = string(from);
    c.extend(string(to));
    c.extend(string(b""));
    string(&c)
}

/// An ADD_ID_CONSTRAINED body restricting `key` to `rules`.
fn constrained_add(key: &[u8], comment: &str, rules: &[Vec<u8>]) -> Vec<u8> {
    let mut body = key.to_vec();
    body.extend(string(comment.as_bytes()));
    body.push(255);
    body.extend(string(b"restrict-destination-v00@openssh.com"));
    body.extend(string(&rules.concat()));
    body
}

/// Adds a key over `c`; panics unless the agent says SUCCESS.
#[track_caller]
fn add_ok(c: &mut RawClient, body: &[u8]) {
    assert!(body.len() < MAX_MESSAGE_LEN, "add of {} bytes", body.len());
    assert_eq!(
        c.request(SSH_AGENTC_ADD_ID_CONSTRAINED, body),
        [SSH_AGENT_SUCCESS]
    );
}

/// The worst case the limits allow, for the work of one request: 2048 destination-constrained
/// keys holding every host key and CA key the agent accepts (the longest names, the patterns
/// that cost most), seen through connections with 16 bindings to hosts presenting host
/// certificates with 256 principals of the longest kind. One REQUEST_IDENTITIES or SIGN takes
/// at most a few milliseconds of the agent's CPU: host certificates were verified when bound,
/// names are capped, and so is what all keys hold together.
#[test]
fn worst_case_constraints_cost_little_cpu_per_request() {
    if !sshkeep_only() {
        return;
    }
    let Some(bin) = release_bin() else {
        return;
    };
    let agent = Agent::start_bin(&bin, &[]);
    let dir = agent.dir();
    let ca = keygen_named(dir, "ed25519", "ca", "ca");
    let ca_blob = pub_blob(&pub_path(&ca));

    // Host certificates: 256 principals each, one of them the host name the keys use, 254
    // plain ones of the longest length and one wildcard principal that matches nothing
    // after a full scan of the longest host name ("*aaa...ab" against "aaa...a").
    let host = b"hostc";
    let long_name = vec![b'a'; MAX_NAME];
    let mut wildcard = vec![b'*'];
    wildcard.extend(vec![b'a'; MAX_WILDCARD_BYTES - 2]);
    wildcard.push(b'b');
    let mut principals = vec![String::from_utf8(host.to_vec()).unwrap()];
    principals.push(String::from_utf8(wildcard).unwrap());
    for i in 0..MAX_PRINCIPALS - 2 {
        principals.push(format!("{i:0>width$}", width = MAX_NAME));
    }
    let principals = principals.join(",");
    let hosts: Vec<(HostKey, Vec<u8>)> = (0..BINDINGS)
        .map(|i| {
            let hk = HostKey::new(dir, "ed25519", &format!("hk{i}"));
            let cert = hk.certify(&ca, &["-h", "-n", &principals]);
            (hk, cert)
        })
        .collect();
    let plain14 = HostKey::new(dir, "ed25519", "plain14");
    let plain15 = HostKey::new(dir, "ed25519", "plain15");

    let mut c = RawClient::connect(agent.sock());
    c.set_timeout(Duration::from_secs(600));
    // Host keys and CA keys added so far.
    let (mut host_keys, mut ca_keys) = (0, 0);
    let count = |host_keys: &mut usize, ca_keys: &mut usize, hops: &[&[(&[u8], bool)]]| {
        for hop in hops {
            *host_keys += hop.len();
            *ca_keys += hop.iter().filter(|(_, ca)| *ca).count();
        }
    };
    let ca_hop: &[(&[u8], bool)] = &[(&ca_blob, true)];
    let origin = wire_hop(b"", b"", &[]);
    let via_ca = wire_hop(b"", host, ca_hop);

    // The signing key: usable along 14 certificate hops, then two plain ones (the last an
    // authentication), for any user; before that rule come as many rules as an ADD holds
    // that pass the host checks at the last hop and then fail on the user: a 256-byte
    // pattern that costs a full scan of a 255-byte user name.
    let (sign_key, sign_blob) = ed25519_key(0);
    let p14: &[(&[u8], bool)] = &[(&plain14.blob, false)];
    let p15: &[(&[u8], bool)] = &[(&plain15.blob, false)];
    let mut user_pattern = vec![b'*'];
    user_pattern.extend(vec![b'a'; MAX_USER_PATTERN - 2]);
    user_pattern.push(b'b');
    let from14 = wire_hop(b"", b"plain14", p14);
    let decoy = wire_rule(&from14, &wire_hop(&user_pattern, b"plain15", p15));
    let mut rules = vec![
        wire_rule(&origin, &via_ca),
        wire_rule(&via_ca, &via_ca),
        wire_rule(&via_ca, &wire_hop(b"", b"plain14", p14)),
    ];
    count(
        &mut host_keys,
        &mut ca_keys,
        &[ca_hop, ca_hop, ca_hop, ca_hop, p14],
    );
    let room = MAX_MESSAGE_LEN - 1024 - rules.concat().len();
    let decoys = (room / decoy.len()).min(1024 - 4);
    for _ in 0..decoys {
        rules.push(decoy.clone());
        count(&mut host_keys, &mut ca_keys, &[p14, p15]);
    }
    rules.push(wire_rule(&from14, &wire_hop(b"", b"plain15", p15)));
    count(&mut host_keys, &mut ca_keys, &[p14, p15]);
    add_ok(&mut c, &constrained_add(&sign_key, "sign", &rules));

    // Filler keys: one rule each, hidden from every bound connection.
    let fillers = KEYS - 6;
    let mut n = 1;
    for i in 0..fillers as u64 {
        let (key, _) = ed25519_key(1000 + i);
        let fake = fake_host_key(i);
        let hop: &[(&[u8], bool)] = &[(&fake, false)];
        let rule = wire_rule(&origin, &wire_hop(b"", b"filler", hop));
        count(&mut host_keys, &mut ca_keys, &[hop]);
        add_ok(&mut c, &constrained_add(&key, "filler", &[rule]));
        n += 1;
    }

    // Five keys usable along 16 certificate hops, holding the rest: first every remaining CA
    // key, each in a rule whose "from" names a host of the longest name (a full wildcard scan
    // per binding, then no match), then every remaining host key in "from" hops that do not
    // match, scanned at every hop. The rules that let the key through come last.
    let visible_keys = 5;
    let path_ca = visible_keys * 3;
    let ca_decoys = MAX_CA_KEYS - ca_keys - path_ca;
    let mut fake_n = 1_000_000u64;
    let mut visible_blobs = vec![sign_blob.clone()];
    for v in 0..visible_keys {
        let (key, blob) = ed25519_key(100 + v as u64);
        visible_blobs.push(blob);
        let mut rules = Vec::new();
        if v == 0 {
            for i in 0..ca_decoys {
                let fake = fake_host_key(fake_n);
                fake_n += 1;
                let to: &[(&[u8], bool)] = &[(&fake, false)];
                let mut name = long_name[5..].to_vec();
                name.extend(format!("{i:05}").bytes());
                rules.push(wire_rule(
                    &wire_hop(b"", &name, ca_hop),
                    &wire_hop(b"", b"x", to),
                ));
                count(&mut host_keys, &mut ca_keys, &[ca_hop, to]);
            }
        }
        // Path rules: 3 CA keys (count them now, so the host keys left are known).
        count(&mut host_keys, &mut ca_keys, &[ca_hop, ca_hop, ca_hop]);
        let left_keys = MAX_HOST_KEYS - host_keys;
        let share = left_keys / (visible_keys - v);
        let per_rule = 16;
        let mut used = 0;
        while share - used >= 2 {
            let k = per_rule.min(share - used - 1);
            let fakes: Vec<Vec<u8>> = (0..k)
                .map(|_| {
                    fake_n += 1;
                    fake_host_key(fake_n)
                })
                .collect();
            let from: Vec<(&[u8], bool)> = fakes.iter().map(|f| (f.as_slice(), false)).collect();
            // "to" holds the first fake again: never reached, and counted.
            let to: Vec<(&[u8], bool)> = vec![(fakes[0].as_slice(), false)];
            rules.push(wire_rule(
                &wire_hop(b"", b"decoy", &from),
                &wire_hop(b"", b"decoy", &to),
            ));
            count(&mut host_keys, &mut ca_keys, &[&from, &to]);
            used += k + 1;
        }
        rules.push(wire_rule(&origin, &via_ca));
        rules.push(wire_rule(&via_ca, &via_ca));
        add_ok(&mut c, &constrained_add(&key, "visible", &rules));
        n += 1;
    }
    assert_eq!(n, KEYS);
    assert_eq!(ca_keys, MAX_CA_KEYS);
    assert!(
        host_keys <= MAX_HOST_KEYS && host_keys > MAX_HOST_KEYS - 32,
        "{host_keys} host keys"
    );

    // Connection L: 16 forwarding bindings, each to a host with a certificate.
    let mut l = RawClient::connect(agent.sock());
    l.set_timeout(Duration::from_secs(600));
    for (i, (hk, cert)) in hosts.iter().enumerate() {
        assert_eq!(
            bind_as(&mut l, cert, hk, &[i as u8 + 1; 32], true),
            SSH_AGENT_SUCCESS
        );
    }
    // Connection S: 14 such bindings, then plain14 (forwarding) and plain15 (authentication).
    let mut s = RawClient::connect(agent.sock());
    s.set_timeout(Duration::from_secs(600));
    for (i, (hk, cert)) in hosts.iter().take(BINDINGS - 2).enumerate() {
        assert_eq!(
            bind_as(&mut s, cert, hk, &[i as u8 + 1; 32], true),
            SSH_AGENT_SUCCESS
        );
    }
    assert_eq!(bind(&mut s, &plain14, &[0xe0; 32], true), SSH_AGENT_SUCCESS);
    let sid = [0xf0u8; 32];
    assert_eq!(bind(&mut s, &plain15, &sid, false), SSH_AGENT_SUCCESS);

    let pid = agent.pid();
    let mut costs = Vec::new();
    let mut timed = |what: &str, c: &mut RawClient, kind: u8, body: &[u8]| {
        let before = cpu_time(pid);
        let reply = c.request(kind, body);
        let cost = cpu_time(pid) - before;
        println!("{what}: {cost:?} of agent CPU");
        costs.push((what.to_string(), cost));
        reply
    };
    let user = "a".repeat(MAX_USER);
    let data = userauth_request(&sid, &user, &sign_blob, Some(&plain15.blob));
    let mut sign_body = string(&sign_blob);
    sign_body.extend(string(&data));
    sign_body.extend(u32(0));
    for _ in 0..3 {
        let reply = timed("list, 16 certificate bindings", &mut l, 11, &[]);
        let listed: Vec<Vec<u8>> = parse_identities(&reply)
            .into_iter()
            .map(|(b, _)| b)
            .collect();
        assert_eq!(listed, visible_blobs);
        let reply = timed("list, 16 bindings, last two plain", &mut s, 11, &[]);
        assert_eq!(parse_identities(&reply).len(), 1, "only the signing key");
        let reply = timed("sign", &mut s, SSH_AGENTC_SIGN_REQUEST, &sign_body);
        assert_eq!(reply[0], SSH_AGENT_SIGN_RESPONSE);
    }
    let over: Vec<_> = costs
        .iter()
        .filter(|(_, cost)| *cost > REQUEST_CPU_BOUND)
        .collect();
    assert!(
        over.is_empty(),
        "requests over {REQUEST_CPU_BOUND:?} of CPU: {over:?}"
    );

    // The limit was reached: replacing a filler key's plain host key by a CA key is refused.
    let (key, _) = ed25519_key(1000);
    let one_more = constrained_add(&key, "one more", &[wire_rule(&origin, &via_ca)]);
    assert_eq!(
        c.request(SSH_AGENTC_ADD_ID_CONSTRAINED, &one_more),
        [SSH_AGENT_FAILURE]
    );
}
