//! The two signing paths of the real binary: graviola's verified assembly, where the CPU has
//! what it needs, and the portable RustCrypto code, which `SSHKEEP_PORTABLE_CRYPTO` forces (it
//! is what a CPU without those features gets). Both must give the same signatures, byte for byte,
//! and OpenSSH must accept them. sshkeep-only: OpenSSH's agent has one path.

mod common;

use std::fs;
use std::path::Path;

use common::*;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Whether this CPU has what graviola needs: the list its documentation gives, checked here
/// independently of the agent.
fn cpu_runs_graviola() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("adx")
            && std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("avx")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("sha2")
            && std::arch::is_aarch64_feature_detected!("pmull")
            && std::arch::is_aarch64_feature_detected!("neon")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The agent under `-d`, with `env` (and without `SSHKEEP_PORTABLE_CRYPTO` unless `env` has it),
/// once it has logged which code it signs with.
fn debug_agent(name: &str, env: &[(&str, &str)]) -> Agent {
    let agent = Agent::launch(Launch {
        args: &["-d"],
        env,
        env_remove: &["SSHKEEP_PORTABLE_CRYPTO"],
        ..Launch::default()
    });
    let up = wait_until(START_DEADLINE, || {
        agent.stderr_text().contains("signing with")
    });
    assert!(up, "agent {name} did not come up: {}", agent.stderr_text());
    agent
}

/// A raw SIGN_REQUEST's reply body (the signature blob); the agent must sign.
fn sign(agent: &Agent, blob: &[u8], data: &[u8], flags: u32) -> Vec<u8> {
    let mut body = string(blob);
    body.extend_from_slice(&string(data));
    body.extend_from_slice(&u32(flags));
    let reply = RawClient::connect(agent.sock()).request(SSH_AGENTC_SIGN_REQUEST, &body);
    let mut r = Reader(&reply);
    assert_eq!(r.u8(), SSH_AGENT_SIGN_RESPONSE, "flags {flags}");
    r.string().to_vec()
}

/// The same keys in an agent left to choose and in one forced onto the portable code: the
/// choice is logged once under `-d` and follows the CPU, every signature is the same in both
/// (Ed25519 and PKCS#1 v1.5 are deterministic), over raw requests with each RSA flag and through
/// `ssh-keygen -Y sign`, and `ssh-keygen -Y verify` accepts them.
#[test]
fn portable_path_signs_as_the_verified_one() {
    if !sshkeep_only() {
        return;
    }
    let tmp = TempDir::new();
    let dir = tmp.path();
    let chosen = debug_agent("chosen", &[]);
    let portable = debug_agent("portable", &[("SSHKEEP_PORTABLE_CRYPTO", "1")]);
    let lines = |a: &Agent| a.stderr_text().matches("signing with").count();
    assert_eq!(lines(&chosen), 1, "{}", chosen.stderr_text());
    assert!(
        portable
            .stderr_text()
            .contains("signing with portable Rust code"),
        "{}",
        portable.stderr_text()
    );
    let graviola = chosen.stderr_text().contains("signing with graviola");
    assert_eq!(graviola, cpu_runs_graviola(), "{}", chosen.stderr_text());
    if !graviola {
        println!("this CPU cannot run graviola: both agents are on the portable path");
    }

    for kind in ["ed25519", "rsa-2048", "rsa-3072", "rsa-4096"] {
        let key = keygen(dir, kind);
        let key_pub = pub_path(&key);
        for agent in [&chosen, &portable] {
            expect_ok(&ssh_add(agent, &["-q", p(&key)]));
        }
        let blob = pub_blob(&key_pub);
        for flags in [0, SSH_AGENT_RSA_SHA2_256, SSH_AGENT_RSA_SHA2_512] {
            for data in [&b""[..], b"some data", &[0x5a; 3000]] {
                assert_eq!(
                    sign(&chosen, &blob, data, flags),
                    sign(&portable, &blob, data, flags),
                    "{kind}, flags {flags}"
                );
            }
        }

        let signers = dir.join("allowed_signers");
        let line = pub_line(&key_pub);
        let fields: Vec<&str> = line.split_whitespace().take(2).collect();
        fs::write(&signers, format!("tester {}\n", fields.join(" "))).unwrap();
        let mut sigs = Vec::new();
        for (name, agent) in [("chosen", &chosen), ("portable", &portable)] {
            let data = dir.join(format!("{kind}-{name}"));
            fs::write(&data, format!("a file signed with a {kind} key\n")).unwrap();
            expect_ok(&run(
                "ssh-keygen",
                &["-Y", "sign", "-f", p(&key_pub), "-n", "file", p(&data)],
                &[("SSH_AUTH_SOCK", agent.sock_str())],
            ));
            let sig = format!("{}.sig", p(&data));
            let script = format!(
                "exec ssh-keygen -Y verify -f '{}' -I tester -n file -s '{sig}' < '{}'",
                p(&signers),
                p(&data)
            );
            expect_ok(&run("sh", &["-c", &script], &[]));
            sigs.push(fs::read(&sig).unwrap());
        }
        assert_eq!(sigs[0], sigs[1], "{kind}: ssh-keygen -Y sign");
    }
}
