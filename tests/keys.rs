//! The key code of the library (`sshkeep::keys`) against OpenSSH, in-process: keys and
//! certificates made by `ssh-keygen`, decoded from the ADD frames real `ssh-add` sends (caught
//! on a listener of the test's own), their blobs, names and fingerprints compared with
//! OpenSSH's, their signatures checked by `ssh-keygen -Y check-novalidate` and compared with
//! those of OpenSSH's own `ssh-agent`.
//!
//! These test the library, not the agent under test: they run whatever `AGENT_UNDER_TEST` says,
//! always against OpenSSH's tools.

mod common;

use std::io::ErrorKind;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use signature::Verifier;
use ssh_key::encoding::Decode;
use ssh_key::sha2::{Digest, Sha512};
use sshkeep::keys::{FingerprintHash, PrivateKey, verify};
use sshkeep::wire::{self, Refused};

/// `Refused::reason` of a private half that does not match its public half.
const MISMATCH: &str = "private key does not match public key";

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Whether OpenSSH's tools are installed; says why not (a failure under CI=true) when they are
/// missing.
fn have_openssh() -> bool {
    let missing = Command::new("ssh-keygen")
        .arg("-?")
        .stdin(Stdio::null())
        .output()
        .is_err_and(|e| e.kind() == ErrorKind::NotFound);
    !missing || !skip("ssh-keygen is missing: install openssh-client")
}

fn decode(body: &[u8]) -> Result<PrivateKey, Refused> {
    PrivateKey::decode(&mut wire::Reader::new(body))
}

/// Decodes the key of an ADD frame (type byte first); the comment must follow it.
fn decode_frame(frame: &[u8], comment: &str) -> Result<PrivateKey, Refused> {
    let mut r = wire::Reader::new(&frame[1..]);
    let key = PrivateKey::decode(&mut r)?;
    assert_eq!(r.string().unwrap(), comment.as_bytes());
    assert!(r.is_empty());
    Ok(key)
}

/// The SSH strings a body is made of.
fn fields(body: &[u8]) -> Vec<Vec<u8>> {
    let mut r = Reader(body);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(r.string().to_vec());
    }
    out
}

fn join(fields: &[Vec<u8>]) -> Vec<u8> {
    fields.iter().flat_map(|f| string(f)).collect()
}

/// The algorithm name a signature blob starts with.
fn sig_alg(sig: &[u8]) -> String {
    String::from_utf8(Reader(sig).string().to_vec()).unwrap()
}

/// Whether ssh-key's verifier, independent of `sshkeep::keys::verify`, accepts `sig`.
fn ssh_key_verifies(blob: &[u8], data: &[u8], sig: &[u8]) -> bool {
    let key = match ssh_key::Certificate::from_bytes(blob) {
        Ok(cert) => cert.public_key().clone(),
        Err(_) => ssh_key::public::KeyData::decode(&mut &blob[..]).unwrap(),
    };
    key.verify(data, &ssh_key::Signature::try_from(sig).unwrap())
        .is_ok()
}

/// Every prefix of `body` is refused, and so is a first string whose length runs past the end.
fn assert_truncations_fail(body: &[u8]) {
    for i in 0..body.len() {
        assert!(decode(&body[..i]).is_err(), "truncated at {i}");
    }
    assert!(decode(&[&[0xff][..], &body[1..4]].concat()).is_err());
}

/// The fingerprint `ssh-keygen -l -E hash` prints for a key file.
fn keygen_fingerprint(path: &Path, hash: &str) -> String {
    let out = run("ssh-keygen", &["-l", "-E", hash, "-f", p(path)], &[]);
    let line = stdout(expect_ok(&out));
    line.split_whitespace().nth(1).unwrap().to_string()
}

/// Runs `ssh-add args` against a listener of the test's own and returns every ADD frame it
/// sent (message type first). Everything is answered SUCCESS, or an empty identity list.
fn ssh_add_frames(dir: &Path, args: &[&Path]) -> Vec<Vec<u8>> {
    let sock = dir.join("capture.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut cmd = Command::new("ssh-add");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    scrub_env(
        &mut cmd,
        &[
            ("SSH_AUTH_SOCK", p(&sock)),
            ("SSH_ASKPASS_REQUIRE", "never"),
        ],
    );
    let mut child = cmd.spawn().unwrap();
    let mut accepted = None;
    let connected = wait_until(Duration::from_secs(20), || {
        match listener.accept() {
            Ok((s, _)) => accepted = Some(s),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        accepted.is_some() || child.try_wait().unwrap().is_some()
    });
    let Some(stream) = accepted else {
        panic!(
            "ssh-add {}",
            if connected {
                "exited early"
            } else {
                "never connected"
            }
        );
    };
    stream.set_nonblocking(false).unwrap();
    let mut c = RawClient::from_stream(stream);
    c.set_timeout(Duration::from_secs(20));
    let mut adds = Vec::new();
    while let Some(frame) = c.recv_frame() {
        match frame.first() {
            Some(&(SSH_AGENTC_ADD_IDENTITY | SSH_AGENTC_ADD_ID_CONSTRAINED)) => {
                adds.push(frame);
                c.send_frame(&[SSH_AGENT_SUCCESS]);
            }
            Some(&SSH_AGENTC_REQUEST_IDENTITIES) => {
                c.send_frame(&[SSH_AGENT_IDENTITIES_ANSWER, 0, 0, 0, 0]);
            }
            _ => c.send_frame(&[SSH_AGENT_FAILURE]),
        }
    }
    let status = wait_child(&mut child, RUN_DEADLINE).expect("ssh-add did not finish");
    assert!(status.success(), "ssh-add failed");
    adds
}

/// OpenSSH's agent's signature (the blob) of `data` with the key `blob` it holds.
fn openssh_agent_signs(agent: &Agent, blob: &[u8], data: &[u8], flags: u32) -> Vec<u8> {
    let body = [string(blob), string(data), u32(flags)].concat();
    let reply = RawClient::connect(agent.sock()).request(SSH_AGENTC_SIGN_REQUEST, &body);
    let mut r = Reader(&reply);
    assert_eq!(r.u8(), SSH_AGENT_SIGN_RESPONSE, "ssh-agent refused to sign");
    r.string().to_vec()
}

/// Whether `ssh-keygen -Y check-novalidate` accepts `key`'s signature (with `flags`) of an
/// SSHSIG envelope (PROTOCOL.sshsig) for a message, when it is shown that message.
fn openssh_accepts(dir: &Path, key: &PrivateKey, flags: u32) -> bool {
    openssh_accepts_for(dir, key, flags, b"a message for ssh-keygen -Y")
}

/// As `openssh_accepts`, but OpenSSH is shown `shown` instead of the signed message.
fn openssh_accepts_for(dir: &Path, key: &PrivateKey, flags: u32, shown: &[u8]) -> bool {
    let message = b"a message for ssh-keygen -Y";
    let header = [string(b"file"), string(b""), string(b"sha512")].concat();
    let signed = [b"SSHSIG", &header[..], &string(&Sha512::digest(message))].concat();
    let sig = key.sign(&signed, flags).unwrap();
    let envelope = [
        &b"SSHSIG"[..],
        &u32(1),
        &string(key.public_blob()),
        &header,
        &string(&sig),
    ]
    .concat();
    let b64 = base64_encode(&envelope);
    let mut armored = String::from("-----BEGIN SSH SIGNATURE-----\n");
    for line in b64.as_bytes().chunks(70) {
        armored.push_str(std::str::from_utf8(line).unwrap());
        armored.push('\n');
    }
    armored.push_str("-----END SSH SIGNATURE-----\n");
    let sig_path = dir.join("message.sig");
    let msg_path = dir.join("message");
    std::fs::write(&sig_path, armored).unwrap();
    std::fs::write(&msg_path, shown).unwrap();
    let check = r#"exec ssh-keygen -Y check-novalidate -n file -s "$0" < "$1""#;
    let out = run("sh", &["-c", check, p(&sig_path), p(&msg_path)], &[]);
    out.status.success()
}

/// ssh-keygen keys of every type, each with a certificate (CAs of three types), added
/// through real `ssh-add` frames: blobs, names, fingerprints, signatures and the
/// certificate checks, all against OpenSSH.
#[test]
fn openssh_keys_and_certificates() {
    if !have_openssh() {
        return;
    }
    let agent = Agent::start_bin(Path::new("ssh-agent"), &[]);
    let dir = agent.dir();
    let cas: Vec<PathBuf> = ["ed25519", "ecdsa-384", "rsa-2048"]
        .iter()
        .map(|kind| keygen_named(dir, kind, &format!("ca_{kind}"), "ca"))
        .collect();
    let types = [
        ("ed25519", "ed25519", "ssh-ed25519"),
        ("ecdsa256", "ecdsa-256", "ecdsa-sha2-nistp256"),
        ("ecdsa384", "ecdsa-384", "ecdsa-sha2-nistp384"),
        ("ecdsa521", "ecdsa-521", "ecdsa-sha2-nistp521"),
        ("rsa2048", "rsa-2048", "ssh-rsa"),
        ("rsa1024", "rsa-1024", "ssh-rsa"),
    ];
    let mut certs = Vec::new();
    for (i, (name, kind, type_name)) in types.into_iter().enumerate() {
        let path = keygen_named(dir, kind, name, name);
        let ca = &cas[i % cas.len()];
        let certified = ["-n", "user,other", "-V", "+1d"];
        sign_certificate(ca, &pub_path(&path), "key id", &certified);
        let frames = ssh_add_frames(dir, &[&path]);
        assert_eq!(
            frames.len(),
            2,
            "{name}: ssh-add sends the key, then the certificate"
        );
        let plain = decode_frame(&frames[0], name).unwrap();
        let cert = decode_frame(&frames[1], name).unwrap();
        let cert_type = format!("{type_name}-cert-v01@openssh.com");
        assert_eq!(plain.key_type_name(), type_name);
        assert_eq!(cert.key_type_name(), cert_type);
        assert_eq!(plain.public_blob(), pub_blob(&pub_path(&path)));
        assert_eq!(cert.public_blob(), pub_blob(&cert_path(&path)));
        assert_eq!(&frames[1][5..5 + cert_type.len()], cert_type.as_bytes());
        for hash in ["md5", "sha1", "sha256", "sha384", "sha512"] {
            let want = keygen_fingerprint(&pub_path(&path), hash);
            let h = FingerprintHash::from_name(hash).unwrap();
            assert_eq!(plain.fingerprint(h), want, "{name} {hash}");
            assert_eq!(cert.fingerprint(h), want, "{name} {hash} (certificate)");
        }
        // Certificates sign as their key, under the plain algorithm names.
        let data = b"data for a certificate";
        for flags in [0, 2, 4] {
            let sig = cert.sign(data, flags).unwrap();
            assert_eq!(sig, plain.sign(data, flags).unwrap(), "{name} {flags}");
            assert!(verify(cert.public_blob(), data, &sig));
            assert!(verify(plain.public_blob(), data, &sig));
            assert!(ssh_key_verifies(cert.public_blob(), data, &sig));
        }
        assert!(openssh_accepts(dir, &plain, 4), "{name}");
        assert!(openssh_accepts(dir, &cert, 2), "{name} (certificate)");
        assert!(!openssh_accepts_for(dir, &plain, 4, b"another message"));
        // The real agent signs the same way (ECDSA: OpenSSH's is randomised, so
        // check that each side's signatures verify).
        expect_ok(&ssh_add(&agent, &[p(&path)]));
        for key in [&plain, &cert] {
            for flags in [0, 2, 4] {
                let theirs = openssh_agent_signs(&agent, key.public_blob(), data, flags);
                let ours = key.sign(data, flags).unwrap();
                assert_eq!(sig_alg(&theirs), sig_alg(&ours), "{name} {flags}");
                assert!(verify(key.public_blob(), data, &theirs), "{name} {flags}");
                if !name.starts_with("ecdsa") {
                    assert_eq!(theirs, ours, "{name} {flags}");
                }
            }
        }
        let body = &frames[1][1..];
        let mut r = wire::Reader::new(body);
        PrivateKey::decode(&mut r).unwrap();
        assert_truncations_fail(&body[..body.len() - r.rest().len()]);
        certs.push((frames[1].clone(), frames[0].clone()));
    }
    // A certificate whose signed part was altered, or whose signature was: refused.
    let (cert_frame, _) = &certs[0];
    let mut r = wire::Reader::new(&cert_frame[1..]);
    let name = r.string().unwrap().to_vec();
    let blob = r.string().unwrap().to_vec();
    let rest = r.rest().to_vec();
    let rebuild = |blob: &[u8]| [string(&name), string(blob), rest.clone()].concat();
    assert!(decode(&rebuild(&blob)).is_ok());
    let serial_at = 4 + name.len() + 4 + 32 + 4 + 32; // type, nonce, pk
    for at in [serial_at, blob.len() - 1] {
        let mut b = blob.clone();
        b[at] ^= 1;
        assert_eq!(
            decode(&rebuild(&b)).unwrap_err().reason(),
            "invalid certificate signature",
            "byte {at}"
        );
    }
    // A certificate with trailing bytes, or under another type's name.
    let mut b = blob.clone();
    b.push(0);
    assert!(decode(&rebuild(&b)).is_err());
    let mut f = fields(&rebuild(&blob));
    f[0] = b"ecdsa-sha2-nistp256-cert-v01@openssh.com".to_vec();
    assert!(decode(&join(&f)).is_err());
    // A certificate carrying another key's private part: refused.
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    let other_pk = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let mut f = fields(&rebuild(&blob));
    f[2] = other_pk.to_vec();
    f[3] = [&seed[..], &other_pk].concat();
    assert_eq!(decode(&join(&f)).unwrap_err().reason(), MISMATCH);
    for (cert_frame, plain_frame) in &certs[1..] {
        // ECDSA: [name, cert, d]; RSA: [name, cert, d, iqmp, p, q].
        let mut f = fields(&cert_frame[1..]);
        f.truncate(f.len() - 1); // drop the comment
        let last = f.last_mut().unwrap();
        *last.last_mut().unwrap() ^= 1;
        assert_eq!(decode(&join(&f)).unwrap_err().reason(), MISMATCH);
        assert!(decode(&plain_frame[1..]).is_ok());
    }
}

#[test]
fn openssh_dsa_keys_are_refused() {
    if !have_openssh() {
        return;
    }
    let tmp = TempDir::new();
    let path = keygen_named(tmp.path(), "dsa", "dsa", "dsa");
    let frames = ssh_add_frames(tmp.path(), &[&path]);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        decode_frame(&frames[0], "dsa").unwrap_err().reason(),
        "unsupported key type"
    );
}
