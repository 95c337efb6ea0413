//! Real logins: `ssh` authenticates to a throwaway `sshd` on 127.0.0.1 with keys held only by the
//! agent under test. Needs root (the fixture logs in as root); skipped otherwise.

mod common;

use std::path::Path;

use common::*;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Logs in with a `kind` key held only by the agent; `ssh_opts` go to the client and
/// `sshd_config` lines to the server. Returns the sshd log (to check which key type was accepted).
fn login(kind: &str, ssh_opts: &[&str], sshd_config: &[&str]) -> String {
    let agent = Agent::start(&[]);
    let key = keygen(agent.dir(), kind);
    expect_ok(&ssh_add(&agent, &[p(&key)]));
    std::fs::remove_file(&key).unwrap();
    let sshd = Sshd::start(&[&pub_path(&key)], None, sshd_config);
    let out = sshd.ssh(&agent, ssh_opts, "true");
    assert!(
        out.status.success(),
        "login with {kind} failed: {:?}\nssh stderr: {}\nsshd log:\n{}\nagent stderr: {}",
        out.status,
        stderr(&out),
        sshd.log_text(),
        agent.stderr_text()
    );
    sshd.log_text()
}

/// The line sshd logs for the successful authentication.
fn accepted_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("Accepted publickey for root"))
        .unwrap_or_else(|| panic!("no accepted login in the sshd log:\n{log}"))
}

#[test]
fn login_ed25519() {
    if !can_run_sshd() {
        return;
    }
    let log = login("ed25519", &[], &[]);
    assert!(accepted_line(&log).contains(" ED25519 "));
}

#[test]
fn login_ecdsa_256() {
    if !can_run_sshd() {
        return;
    }
    let log = login("ecdsa-256", &[], &[]);
    assert!(accepted_line(&log).contains(" ECDSA "));
}

#[test]
fn login_ecdsa_384() {
    if !can_run_sshd() {
        return;
    }
    login("ecdsa-384", &[], &[]);
}

#[test]
fn login_ecdsa_521() {
    if !can_run_sshd() {
        return;
    }
    login("ecdsa-521", &[], &[]);
}

/// RSA with the signature algorithm pinned on both sides, so the agent must sign with exactly it.
fn login_rsa(alg: &str) {
    let client_opt = format!("PubkeyAcceptedAlgorithms={alg}");
    let server_opt = format!("PubkeyAcceptedAlgorithms {alg}");
    let log = login("rsa-2048", &["-o", &client_opt], &[&server_opt]);
    assert!(accepted_line(&log).contains(" RSA "));
    // sshd verifies the signature under the algorithm the client named; that is the pinned one.
    assert!(log.contains(&format!("pkalg {alg} pkblob RSA ")), "{log}");
}

#[test]
fn login_rsa_sha2_256() {
    if !can_run_sshd() {
        return;
    }
    login_rsa("rsa-sha2-256");
}

#[test]
fn login_rsa_sha2_512() {
    if !can_run_sshd() {
        return;
    }
    login_rsa("rsa-sha2-512");
}

/// Legacy SHA-1 `ssh-rsa` signatures (off by default in OpenSSH 8.8+, enabled on both sides).
#[test]
fn login_rsa_sha1() {
    if !can_run_sshd() {
        return;
    }
    login_rsa("ssh-rsa");
}

/// A user certificate from the agent, trusted through `TrustedUserCAKeys` (no authorized keys).
#[test]
fn login_certificate() {
    if !can_run_sshd() {
        return;
    }
    let agent = Agent::start(&[]);
    let ca = keygen_named(agent.dir(), "ed25519", "ca", "test-ca");
    let key = keygen(agent.dir(), "ecdsa-256");
    certify(&ca, &pub_path(&key), "root");
    expect_ok(&ssh_add(&agent, &[p(&key)]));
    std::fs::remove_file(&key).unwrap();
    let sshd = Sshd::start(&[], Some(&pub_path(&ca)), &[]);
    let out = sshd.ssh(&agent, &[], "true");
    assert!(
        out.status.success(),
        "certificate login failed: {}\nsshd log:\n{}",
        stderr(&out),
        sshd.log_text()
    );
    assert!(accepted_line(&sshd.log_text()).contains("ECDSA-CERT"));
}

/// A command's output comes back through the session.
#[test]
fn run_remote_command() {
    if !can_run_sshd() {
        return;
    }
    let agent = Agent::start(&[]);
    let key = keygen(agent.dir(), "ed25519");
    expect_ok(&ssh_add(&agent, &[p(&key)]));
    let sshd = Sshd::start(&[&pub_path(&key)], None, &[]);
    let out = sshd.ssh(&agent, &[], "echo hi");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\n");
}

/// The fixture refuses a login when the agent holds no authorized key: the tests above mean something.
#[test]
fn login_fails_without_the_key() {
    if !can_run_sshd() {
        return;
    }
    let agent = Agent::start(&[]);
    let authorized = keygen(agent.dir(), "ed25519");
    let other = keygen(agent.dir(), "ed25519");
    expect_ok(&ssh_add(&agent, &[p(&other)]));
    let sshd = Sshd::start(&[&pub_path(&authorized)], None, &[]);
    let out = sshd.ssh(&agent, &[], "true");
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
}
