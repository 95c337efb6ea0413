//! The agent driven by OpenSSH's own clients: `ssh-add` and `ssh-keygen -Y sign/verify`.
//!
//! Every test here passes against OpenSSH's agent too
//! (`AGENT_UNDER_TEST=/usr/bin/ssh-agent cargo test --test clients`), except those that call
//! `sshkeep_only()`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// What `ssh-add -l` prints for an empty agent (on stdout, exit status 1).
const NO_IDENTITIES: &str = "The agent has no identities.\n";

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `ssh-add -l` output; the listing must succeed.
fn list(agent: &Agent) -> String {
    stdout(expect_ok(&ssh_add(agent, &["-l"])))
}

/// `ssh-add -L` output; the listing must succeed.
fn list_public(agent: &Agent) -> String {
    stdout(expect_ok(&ssh_add(agent, &["-L"])))
}

/// Lines joined with newlines, each terminated.
fn lines(items: &[String]) -> String {
    items.iter().map(|l| format!("{l}\n")).collect()
}

#[track_caller]
fn assert_empty(agent: &Agent) {
    let out = ssh_add(agent, &["-l"]);
    assert_eq!(stdout(&out), NO_IDENTITIES, "stderr: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(1));
}

/// Signs `data` with `ssh-keygen -Y sign -f key.pub` (the private key must be only in the agent) and
/// returns the command's output; the signature lands in `data.sig`.
fn sign_file(agent: &Agent, key_pub: &Path, data: &Path) -> std::process::Output {
    run(
        "ssh-keygen",
        &["-Y", "sign", "-f", p(key_pub), "-n", "file", p(data)],
        &[("SSH_AUTH_SOCK", agent.sock_str())],
    )
}

/// The type and base64 fields of a public key file (an allowed_signers key).
fn key_fields(key_pub: &Path) -> String {
    let line = pub_line(key_pub);
    let fields: Vec<&str> = line.split_whitespace().take(2).collect();
    fields.join(" ")
}

/// Verifies `data.sig` over `data` with `ssh-keygen -Y verify` for signer `tester`, whose
/// allowed_signers entry is `allowed` (`<options> <type> <base64>`).
fn verify_file(dir: &Path, allowed: &str, data: &Path) -> std::process::Output {
    let signers = dir.join("allowed_signers");
    fs::write(&signers, format!("tester {allowed}\n")).unwrap();
    let mut sig = data.as_os_str().to_owned();
    sig.push(".sig");
    let sig = PathBuf::from(sig);
    let script = format!(
        "exec ssh-keygen -Y verify -f '{}' -I tester -n file -s '{}' < '{}'",
        p(&signers),
        p(&sig),
        p(data)
    );
    run("sh", &["-c", &script], &[])
}

/// Adds a key of `kind`, checks `-l` and `-L` against `ssh-keygen`'s view of the files, then signs
/// with the key held only by the agent and verifies the signature.
fn add_list_sign(kind: &str) {
    let agent = Agent::start(&[]);
    let key = keygen(agent.dir(), kind);
    let key_pub = pub_path(&key);

    let out = ssh_add(&agent, &[p(&key)]);
    expect_ok(&out);
    assert!(
        stderr(&out).starts_with("Identity added: "),
        "{}",
        stderr(&out)
    );
    assert_eq!(list(&agent), lines(&[fingerprint(&key_pub)]));
    assert_eq!(list_public(&agent), lines(&[pub_line(&key_pub)]));

    // Only the agent can sign now.
    fs::remove_file(&key).unwrap();
    let data = agent.dir().join("data");
    fs::write(&data, format!("signed by a {kind} key in the agent\n")).unwrap();
    expect_ok(&sign_file(&agent, &key_pub, &data));
    let allowed = key_fields(&key_pub);
    expect_ok(&verify_file(agent.dir(), &allowed, &data));

    // A tampered message does not verify: the check above means something.
    fs::write(&data, "something else\n").unwrap();
    assert!(!verify_file(agent.dir(), &allowed, &data).status.success());
}

#[test]
fn add_list_sign_ed25519() {
    add_list_sign("ed25519");
}

#[test]
fn add_list_sign_ecdsa_256() {
    add_list_sign("ecdsa-256");
}

#[test]
fn add_list_sign_ecdsa_384() {
    add_list_sign("ecdsa-384");
}

#[test]
fn add_list_sign_ecdsa_521() {
    add_list_sign("ecdsa-521");
}

/// A P-256 key whose scalar has a zero top byte: ssh-keygen writes it as a 31-byte mpint
/// (about one key in 256), which ssh-key refuses to read (`ssh_key_reads`), so `keygen` never
/// gives one. The agent takes it and signs with it as with any other.
#[test]
fn add_list_sign_ecdsa_256_with_a_short_scalar() {
    let agent = Agent::start(&[]);
    let key = (0..4096)
        .map(|_| ssh_keygen(agent.dir(), "ecdsa-256", "short", "short@sshkeep-test"))
        .find(|k| !ssh_key_reads(k))
        .expect("none of 4096 P-256 keys had a short scalar");
    let key_pub = pub_path(&key);
    expect_ok(&ssh_add(&agent, &["-q", p(&key)]));
    assert_eq!(list(&agent), lines(&[fingerprint(&key_pub)]));
    fs::remove_file(&key).unwrap();
    let data = agent.dir().join("data");
    fs::write(&data, "signed by a P-256 key with a short scalar\n").unwrap();
    expect_ok(&sign_file(&agent, &key_pub, &data));
    expect_ok(&verify_file(agent.dir(), &key_fields(&key_pub), &data));
}

#[test]
fn add_list_sign_rsa_2048() {
    add_list_sign("rsa-2048");
}

#[test]
fn add_list_sign_rsa_3072() {
    add_list_sign("rsa-3072");
}

#[test]
fn add_list_sign_rsa_4096() {
    add_list_sign("rsa-4096");
}

/// Keys of every type, added one by one, are listed in insertion order (not sorted by type or name).
#[test]
fn list_in_insertion_order() {
    let agent = Agent::start(&[]);
    let order = [
        "rsa-2048",
        "ed25519",
        "ecdsa-521",
        "rsa-4096",
        "ecdsa-256",
        "rsa-3072",
        "ecdsa-384",
    ];
    let keys: Vec<PathBuf> = order.iter().map(|k| keygen(agent.dir(), k)).collect();
    for key in &keys {
        expect_ok(&ssh_add(&agent, &[p(key)]));
    }
    let fps: Vec<String> = keys.iter().map(|k| fingerprint(&pub_path(k))).collect();
    let pubs: Vec<String> = keys.iter().map(|k| pub_line(&pub_path(k))).collect();
    assert_eq!(list(&agent), lines(&fps));
    assert_eq!(list_public(&agent), lines(&pubs));
}

/// `ssh-add key` with `key-cert.pub` beside it adds the key and its certificate.
fn add_certificate(kind: &str) {
    let agent = Agent::start(&[]);
    let ca = keygen_named(agent.dir(), "ed25519", "ca", "test-ca");
    let key = keygen(agent.dir(), kind);
    let key_pub = pub_path(&key);
    let cert = certify(&ca, &key_pub, "root,tester");
    assert_eq!(cert, cert_path(&key));

    let out = ssh_add(&agent, &[p(&key)]);
    expect_ok(&out);
    assert!(
        stderr(&out).contains("Certificate added: "),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        list(&agent),
        lines(&[fingerprint(&key_pub), fingerprint(&cert)])
    );
    assert!(list(&agent).contains("-CERT)\n"));
    assert_eq!(
        list_public(&agent),
        lines(&[pub_line(&key_pub), pub_line(&cert)])
    );

    // Signing with the certificate works too (ssh-keygen -Y sign accepts a certificate as -f).
    fs::remove_file(&key).unwrap();
    let data = agent.dir().join("data");
    fs::write(&data, "signed by a certified key\n").unwrap();
    expect_ok(&sign_file(&agent, &cert, &data));
    let allowed = format!("cert-authority {}", key_fields(&pub_path(&ca)));
    expect_ok(&verify_file(agent.dir(), &allowed, &data));

    // `ssh-add -d key` removes the key and the certificate beside it.
    let out = ssh_add(&agent, &["-d", p(&key)]);
    expect_ok(&out);
    assert_empty(&agent);
}

#[test]
fn add_certificate_ed25519() {
    add_certificate("ed25519");
}

#[test]
fn add_certificate_ecdsa() {
    add_certificate("ecdsa-256");
}

#[test]
fn add_certificate_rsa() {
    add_certificate("rsa-2048");
}

/// `ssh-add -d key` removes that key only; the others keep their order.
#[test]
fn remove_one() {
    let agent = Agent::start(&[]);
    let keys: Vec<PathBuf> = ["ed25519", "ecdsa-256", "ed25519"]
        .iter()
        .map(|k| keygen(agent.dir(), k))
        .collect();
    for key in &keys {
        expect_ok(&ssh_add(&agent, &[p(key)]));
    }
    let out = ssh_add(&agent, &["-d", p(&keys[1])]);
    expect_ok(&out);
    assert!(
        stderr(&out).starts_with("Identity removed: "),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        list(&agent),
        lines(&[fingerprint(&keys[0]), fingerprint(&keys[2])])
    );

    // Removing it again fails: the agent no longer has it.
    let out = ssh_add(&agent, &["-d", p(&keys[1])]);
    assert!(!out.status.success(), "second removal succeeded");
    assert_eq!(
        list(&agent),
        lines(&[fingerprint(&keys[0]), fingerprint(&keys[2])])
    );
}

/// `ssh-add -D` removes every key.
#[test]
fn remove_all() {
    let agent = Agent::start(&[]);
    for kind in ["ed25519", "ecdsa-384", "rsa-2048"] {
        let key = keygen(agent.dir(), kind);
        expect_ok(&ssh_add(&agent, &[p(&key)]));
    }
    assert_eq!(list(&agent).lines().count(), 3);
    let out = ssh_add(&agent, &["-D"]);
    expect_ok(&out);
    assert_eq!(stderr(&out), "All identities removed.\n");
    assert_empty(&agent);

    // Removing all from an empty agent succeeds as well.
    expect_ok(&ssh_add(&agent, &["-D"]));
    assert_empty(&agent);
}

/// Re-adding a key that is already present replaces its comment in place: same list position.
#[test]
fn readd_keeps_position_and_updates_comment() {
    let agent = Agent::start(&[]);
    let first = keygen_named(agent.dir(), "ed25519", "first", "first-comment");
    let second = keygen_named(agent.dir(), "ecdsa-256", "second", "second-comment");
    expect_ok(&ssh_add(&agent, &[p(&first)]));
    expect_ok(&ssh_add(&agent, &[p(&second)]));
    let before = list(&agent);
    assert!(before.lines().next().unwrap().contains(" first-comment "));

    expect_ok(&run(
        "ssh-keygen",
        &["-q", "-c", "-C", "renamed-comment", "-f", p(&first)],
        &[],
    ));
    expect_ok(&ssh_add(&agent, &[p(&first)]));
    let after = list(&agent);
    assert_eq!(
        after,
        lines(&[
            fingerprint(&pub_path(&first)),
            fingerprint(&pub_path(&second))
        ])
    );
    assert!(after.lines().next().unwrap().contains(" renamed-comment "));
    assert_eq!(
        list_public(&agent),
        lines(&[pub_line(&pub_path(&first)), pub_line(&pub_path(&second))])
    );
}

/// `ssh-add -t 2` keys vanish after two seconds; keys without a lifetime stay.
#[test]
fn lifetime_expires() {
    let agent = Agent::start(&[]);
    let keep = keygen(agent.dir(), "ed25519");
    let brief = keygen(agent.dir(), "ed25519");
    expect_ok(&ssh_add(&agent, &[p(&keep)]));
    let out = ssh_add(&agent, &["-t", "2", p(&brief)]);
    expect_ok(&out);
    assert!(
        stderr(&out).contains("Lifetime set to 2 seconds"),
        "{}",
        stderr(&out)
    );
    let both = lines(&[fingerprint(&keep), fingerprint(&brief)]);
    let only_keep = lines(&[fingerprint(&keep)]);
    assert_eq!(list(&agent), both);
    assert!(
        wait_until(Duration::from_secs(5), || list(&agent) == only_keep),
        "key with lifetime 2 s still listed: {}",
        list(&agent)
    );
}

/// `-t` on the agent is the default lifetime of keys added without one.
#[test]
fn agent_default_lifetime() {
    let agent = Agent::start(&["-t", "2"]);
    let brief = keygen(agent.dir(), "ed25519");
    expect_ok(&ssh_add(&agent, &[p(&brief)]));
    assert_eq!(list(&agent), lines(&[fingerprint(&brief)]));
    assert!(
        wait_until(Duration::from_secs(5), || {
            stdout(&ssh_add(&agent, &["-l"])) == NO_IDENTITIES
        }),
        "key still listed after the agent's default lifetime"
    );
}

/// `ssh-add -c` keys need confirmation; with no askpass and no display the agent refuses to sign.
#[test]
fn confirm_without_askpass_refuses() {
    let agent = Agent::start(&[]);
    let key = keygen(agent.dir(), "ed25519");
    let key_pub = pub_path(&key);
    let out = ssh_add(&agent, &["-c", p(&key)]);
    expect_ok(&out);
    assert_eq!(list(&agent), lines(&[fingerprint(&key_pub)]));
    fs::remove_file(&key).unwrap();
    let data = agent.dir().join("data");
    fs::write(&data, "needs confirmation\n").unwrap();
    let out = sign_file(&agent, &key_pub, &data);
    assert!(!out.status.success(), "signed without confirmation");
    assert!(
        stderr(&out).contains("agent refused operation"),
        "{}",
        stderr(&out)
    );
    // The key is still there, and the agent still serves.
    assert_eq!(list(&agent), lines(&[fingerprint(&key_pub)]));
}

/// DSA keys are refused (OpenSSH 9.2 still accepts them; 10.0 dropped DSA).
#[test]
fn dsa_refused() {
    if !sshkeep_only() {
        return;
    }
    let agent = Agent::start(&[]);
    let key = agent.dir().join("id_dsa");
    let made = run(
        "ssh-keygen",
        &["-q", "-N", "", "-t", "dsa", "-C", "dsa", "-f", p(&key)],
        &[],
    );
    if !made.status.success() {
        skip("this ssh-keygen cannot make DSA keys (OpenSSH 10 removed them): use OpenSSH 9");
        return;
    }
    let out = ssh_add(&agent, &[p(&key)]);
    assert!(!out.status.success(), "DSA key accepted");
    assert_empty(&agent);
}

/// Twenty `ssh-add -l` at once all get the full answer.
#[test]
fn many_clients_at_once() {
    let agent = Agent::start(&[]);
    let a = keygen(agent.dir(), "ed25519");
    let b = keygen(agent.dir(), "ecdsa-256");
    expect_ok(&ssh_add(&agent, &[p(&a), p(&b)]));
    let expected = lines(&[fingerprint(&a), fingerprint(&b)]);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| s.spawn(|| ssh_add(&agent, &["-l"])))
            .collect();
        for h in handles {
            let out = h.join().unwrap();
            expect_ok(&out);
            assert_eq!(stdout(&out), expected);
        }
    });
}

/// An empty agent: `ssh-add -l` and `-L` say so and exit 1.
#[test]
fn empty_agent() {
    let agent = Agent::start(&[]);
    assert_empty(&agent);
    let out = ssh_add(&agent, &["-L"]);
    assert_eq!(stdout(&out), NO_IDENTITIES);
    assert_eq!(out.status.code(), Some(1));
}
