//! Lock, unlock and confirm: `ssh-add -x`/`-X`, raw LOCK/UNLOCK frames, the failed-unlock back-off,
//! keys expiring while locked, and `ssh-add -c` confirmation through `$SSH_ASKPASS`.
//!
//! Prove against OpenSSH with `AGENT_UNDER_TEST=/usr/bin/ssh-agent cargo test --test session`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

/// The passphrase every lock in this file uses.
const PASSPHRASE: &str = "passphrase";

/// Writes an executable `/bin/sh` script `name` into `dir` and returns its path.
/// An askpass script that answers every prompt with `answer`.
fn askpass_answering(dir: &Path, name: &str, answer: &str) -> PathBuf {
    script(dir, name, &format!("echo '{answer}'"))
}

/// `ssh-add args` with its passphrase prompts answered by `askpass` (no terminal involved).
fn ssh_add_askpass(agent: &Agent, args: &[&str], askpass: &Path) -> Output {
    ssh_add_env(
        agent,
        args,
        &[
            ("SSH_ASKPASS", askpass.to_str().unwrap()),
            ("SSH_ASKPASS_REQUIRE", "force"),
        ],
    )
}

/// A copy of `key`'s public half under a name with no private key beside it, so that
/// `ssh-keygen -Y sign -f <copy>` can only sign through the agent.
fn agent_only_pub(key: &Path) -> PathBuf {
    let copy = PathBuf::from(format!("{}-agent-only.pub", key.display()));
    fs::copy(pub_path(key), &copy).unwrap();
    copy
}

/// `ssh-keygen -Y sign` of an empty message with the key `pub_copy` names, through the agent.
fn sign_via_keygen(agent: &Agent, pub_copy: &Path) -> Output {
    run(
        "ssh-keygen",
        &["-Y", "sign", "-n", "file", "-f", pub_copy.to_str().unwrap()],
        &[("SSH_AUTH_SOCK", agent.sock_str())],
    )
}

/// The body of a SIGN_REQUEST for `blob` over `data`.
fn sign_body(blob: &[u8], data: &[u8]) -> Vec<u8> {
    let mut body = string(blob);
    body.extend(string(data));
    body.extend(u32(0));
    body
}

/// Sends a raw SIGN_REQUEST on a new connection and returns the reply's type.
fn raw_sign(agent: &Agent, blob: &[u8]) -> u8 {
    let mut c = RawClient::connect(agent.sock());
    c.set_timeout(Duration::from_secs(15));
    c.request(SSH_AGENTC_SIGN_REQUEST, &sign_body(blob, b"data to sign"))[0]
}

/// The reply type of a raw LOCK (22) or UNLOCK (23) with `passphrase`.
fn lock_request(c: &mut RawClient, kind: u8, passphrase: &str) -> u8 {
    let reply = c.request(kind, &string(passphrase.as_bytes()));
    assert_eq!(
        reply.len(),
        1,
        "lock/unlock reply is a bare status: {reply:?}"
    );
    reply[0]
}

/// The key blobs the agent lists, in order, over a raw connection.
fn raw_list(agent: &Agent) -> Vec<Vec<u8>> {
    let mut c = RawClient::connect(agent.sock());
    parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]))
        .into_iter()
        .map(|(blob, _)| blob)
        .collect()
}

/// `ssh-add -l` when the agent holds no keys (or hides them): exit 1 and OpenSSH's sentence.
#[track_caller]
fn assert_no_identities(agent: &Agent) {
    let out = ssh_add(agent, &["-l"]);
    assert_eq!(out.status.code(), Some(1), "ssh-add -l: {}", stderr(&out));
    assert_eq!(stdout(&out), "The agent has no identities.\n");
}

/// `ssh-add -l` output for keys held by the agent (must succeed).
#[track_caller]
fn listed(agent: &Agent) -> String {
    stdout(expect_ok(&ssh_add(agent, &["-l"])))
}

// ---------------------------------------------------------------------------------------------
// Lock and unlock

#[test]
fn ssh_add_lock_hides_keys_refuses_use_and_unlock_restores_order() {
    let agent = Agent::start(&[]);
    let dir = agent.dir();
    let k1 = keygen(dir, "ed25519");
    let k2 = keygen(dir, "ecdsa-256");
    let k3 = keygen(dir, "ed25519");
    expect_ok(&ssh_add(
        &agent,
        &[k1.to_str().unwrap(), k2.to_str().unwrap()],
    ));
    let before = listed(&agent);
    assert_eq!(
        before,
        format!(
            "{}\n{}\n",
            fingerprint(&pub_path(&k1)),
            fingerprint(&pub_path(&k2))
        )
    );
    let signer = agent_only_pub(&k1);
    expect_ok(&sign_via_keygen(&agent, &signer));

    let right = askpass_answering(dir, "right", PASSPHRASE);
    let wrong = askpass_answering(dir, "wrong", "not the passphrase");

    let out = ssh_add_askpass(&agent, &["-x"], &right);
    expect_ok(&out);
    assert_eq!(stderr(&out), "Agent locked.\n");

    // Locked: no keys listed, no signatures, no new keys.
    assert_no_identities(&agent);
    let out = sign_via_keygen(&agent, &signer);
    assert!(
        !out.status.success(),
        "signed while locked: {}",
        stderr(&out)
    );
    let out = ssh_add(&agent, &[k3.to_str().unwrap()]);
    assert!(!out.status.success(), "added a key while locked");
    assert!(
        stderr(&out).contains("agent refused operation"),
        "{}",
        stderr(&out)
    );

    // Locking again fails, and so does a wrong passphrase.
    let out = ssh_add_askpass(&agent, &["-x"], &right);
    assert_eq!(out.status.code(), Some(1), "second lock: {}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "Failed to lock agent: agent refused operation\n"
    );
    let out = ssh_add_askpass(&agent, &["-X"], &wrong);
    assert_eq!(out.status.code(), Some(1), "wrong unlock: {}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "Failed to unlock agent: agent refused operation\n"
    );
    assert_no_identities(&agent);

    // The right passphrase brings the same keys back in the same order.
    let out = ssh_add_askpass(&agent, &["-X"], &right);
    expect_ok(&out);
    assert_eq!(stderr(&out), "Agent unlocked.\n");
    assert_eq!(listed(&agent), before);
    expect_ok(&sign_via_keygen(&agent, &signer));

    // Unlocking an unlocked agent fails.
    let out = ssh_add_askpass(&agent, &["-X"], &right);
    assert_eq!(
        out.status.code(),
        Some(1),
        "second unlock: {}",
        stderr(&out)
    );
    assert_eq!(listed(&agent), before);
}

#[test]
fn raw_lock_unlock_matrix() {
    let agent = Agent::start(&[]);
    let key = keygen(agent.dir(), "ed25519");
    expect_ok(&ssh_add(&agent, &[key.to_str().unwrap()]));
    let blob = pub_blob(&pub_path(&key));
    let mut c = RawClient::connect(agent.sock());

    // Not locked: UNLOCK fails, an empty passphrase cannot lock.
    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_UNLOCK, PASSPHRASE),
        SSH_AGENT_FAILURE
    );
    assert_eq!(lock_request(&mut c, SSH_AGENTC_LOCK, ""), SSH_AGENT_FAILURE);
    assert_eq!(raw_list(&agent), vec![blob.clone()]);

    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_LOCK, PASSPHRASE),
        SSH_AGENT_SUCCESS
    );
    // Locked: an empty list (not a failure), refused signatures, refused second lock.
    assert_eq!(raw_list(&agent), Vec::<Vec<u8>>::new());
    assert_eq!(raw_sign(&agent, &blob), SSH_AGENT_FAILURE);
    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_LOCK, PASSPHRASE),
        SSH_AGENT_FAILURE
    );
    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_LOCK, "other"),
        SSH_AGENT_FAILURE
    );
    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_UNLOCK, ""),
        SSH_AGENT_FAILURE
    );
    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_UNLOCK, "other"),
        SSH_AGENT_FAILURE
    );
    assert_eq!(raw_list(&agent), Vec::<Vec<u8>>::new());

    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_UNLOCK, PASSPHRASE),
        SSH_AGENT_SUCCESS
    );
    assert_eq!(raw_list(&agent), vec![blob.clone()]);
    assert_eq!(raw_sign(&agent, &blob), SSH_AGENT_SIGN_RESPONSE);
    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_UNLOCK, PASSPHRASE),
        SSH_AGENT_FAILURE
    );

    // A lock passphrase is any byte string without a NUL (OpenSSH reads it as a C string).
    let mut c2 = RawClient::connect(agent.sock());
    let binary = string(&[0xff, b'\n', 0x80, b' ']);
    assert_eq!(c2.request(SSH_AGENTC_LOCK, &binary), [SSH_AGENT_SUCCESS]);
    assert_eq!(c2.request(SSH_AGENTC_UNLOCK, &binary), [SSH_AGENT_SUCCESS]);
    assert_eq!(raw_list(&agent), vec![blob]);
}

/// OpenSSH deliberately aborts (exit 255, every key lost) on a LOCK or UNLOCK whose passphrase
/// string does not parse; sshkeep answers FAILURE and keeps its keys.
#[test]
fn unparseable_lock_body_is_refused_and_keys_kept() {
    if !sshkeep_only() {
        return;
    }
    let mut agent = Agent::start(&[]);
    let key = keygen(agent.dir(), "ed25519");
    expect_ok(&ssh_add(&agent, &[key.to_str().unwrap()]));
    let blob = pub_blob(&pub_path(&key));

    // The string claims 10 bytes and carries 3; then a body with no string at all.
    let mut truncated = u32(10);
    truncated.extend_from_slice(b"abc");
    let mut c = RawClient::connect(agent.sock());
    assert_eq!(c.request(SSH_AGENTC_LOCK, &truncated), [SSH_AGENT_FAILURE]);
    assert_eq!(c.request(SSH_AGENTC_LOCK, &[0, 0]), [SSH_AGENT_FAILURE]);
    // Not locked by either, and the connection lives on.
    assert_eq!(
        parse_identities(&c.request(SSH_AGENTC_REQUEST_IDENTITIES, &[])).len(),
        1
    );

    // The same while locked, for UNLOCK: refused, still locked, nothing lost.
    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_LOCK, PASSPHRASE),
        SSH_AGENT_SUCCESS
    );
    assert_eq!(
        c.request(SSH_AGENTC_UNLOCK, &truncated),
        [SSH_AGENT_FAILURE]
    );
    assert_eq!(raw_list(&agent), Vec::<Vec<u8>>::new());
    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_UNLOCK, PASSPHRASE),
        SSH_AGENT_SUCCESS
    );
    assert_eq!(raw_list(&agent), vec![blob.clone()]);

    // OpenSSH also aborts on a passphrase with a NUL in it (it wants a C string). Whether sshkeep
    // takes such a passphrase or refuses it, it must stay consistent and keep the keys.
    let nul = string(b"pass\0phrase");
    match c.request(SSH_AGENTC_LOCK, &nul)[..] {
        [SSH_AGENT_FAILURE] => {}
        [SSH_AGENT_SUCCESS] => {
            assert_eq!(
                c.request(SSH_AGENTC_UNLOCK, &string(b"pass")),
                [SSH_AGENT_FAILURE]
            );
            assert_eq!(c.request(SSH_AGENTC_UNLOCK, &nul), [SSH_AGENT_SUCCESS]);
        }
        ref other => panic!("reply to LOCK with a NUL in the passphrase: {other:?}"),
    }
    assert_eq!(raw_list(&agent), vec![blob]);
    assert!(agent.is_running());
}

/// Times one raw request on `c`; returns the reply type and how long the reply took.
fn timed_unlock(c: &mut RawClient, passphrase: &str) -> (u8, Duration) {
    timed(c, SSH_AGENTC_UNLOCK, passphrase)
}

/// Times a raw LOCK (22) or UNLOCK (23) on `c`; returns the reply type and the time it took.
fn timed(c: &mut RawClient, kind: u8, passphrase: &str) -> (u8, Duration) {
    let start = Instant::now();
    let kind = lock_request(c, kind, passphrase);
    (kind, start.elapsed())
}

/// sshkeep derives a key from the passphrase with a costly KDF (about 0.1 s) on lock and on
/// every unlock; OpenSSH's one-round hash costs a few milliseconds. A lock's time, measured
/// just before, is what an unlock that is not held back costs.
#[test]
fn failed_unlocks_are_delayed_more_each_time_until_a_success() {
    let agent = Agent::start(&[]);
    let mut c = RawClient::connect(agent.sock());
    let (kind, kdf) = timed(&mut c, SSH_AGENTC_LOCK, PASSPHRASE);
    assert_eq!(kind, SSH_AGENT_SUCCESS);

    let (kind, first) = timed_unlock(&mut c, "wrong");
    assert_eq!(kind, SSH_AGENT_FAILURE);
    assert!(
        first >= Duration::from_millis(100),
        "first failure after {first:?}"
    );
    let (kind, second) = timed_unlock(&mut c, "wrong");
    assert_eq!(kind, SSH_AGENT_FAILURE);
    assert!(
        second >= Duration::from_millis(200),
        "second failure after {second:?}"
    );

    // The right passphrase is not delayed (a third failure would wait 0.3 s): it costs what
    // the lock did, and it resets the count.
    let (kind, right) = timed_unlock(&mut c, PASSPHRASE);
    assert_eq!(kind, SSH_AGENT_SUCCESS);
    assert!(
        right < kdf * 2 + Duration::from_millis(100),
        "success after {right:?} (the lock took {kdf:?})"
    );

    let (kind, kdf) = timed(&mut c, SSH_AGENTC_LOCK, PASSPHRASE);
    assert_eq!(kind, SSH_AGENT_SUCCESS);
    let (kind, again) = timed_unlock(&mut c, "wrong");
    assert_eq!(kind, SSH_AGENT_FAILURE);
    // A third failure in a row would wait 0.3 s after its check began; the first waits 0.1 s
    // (the KDF runs within that time, or past it).
    assert!(
        again >= Duration::from_millis(100) && again < Duration::from_millis(250).max(kdf * 2),
        "first failure after a success took {again:?} (the lock took {kdf:?})"
    );
    // Unlock while unlocked is refused at once, with no delay.
    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_UNLOCK, PASSPHRASE),
        SSH_AGENT_SUCCESS
    );
    let (kind, unlocked) = timed_unlock(&mut c, "wrong");
    assert_eq!(kind, SSH_AGENT_FAILURE);
    assert!(unlocked < Duration::from_millis(100), "took {unlocked:?}");
}

/// OpenSSH sleeps in its only thread for a failed unlock, so every client waits; sshkeep makes only
/// the failing client wait. Another client may wait for one check of a passphrase (the KDF,
/// about 0.1 s, runs in the agent's loop), never for the back-off: the lister goes on until
/// the back-off reaches 1.1 s (the eleventh failure), longer than any list may take.
#[test]
fn delayed_unlock_failure_does_not_stall_other_clients() {
    if !sshkeep_only() {
        return;
    }
    let agent = Agent::start(&[]);
    let mut locker = RawClient::connect(agent.sock());
    assert_eq!(
        lock_request(&mut locker, SSH_AGENTC_LOCK, PASSPHRASE),
        SSH_AGENT_SUCCESS
    );

    // Twenty wrong passphrases in one write: the failures add up to seconds of delay.
    let mut burst = Vec::new();
    for _ in 0..20 {
        burst.extend(frame(SSH_AGENTC_UNLOCK, &string(b"wrong")));
    }
    let sent = Instant::now();
    locker.send_raw(&burst);
    let first_failure = std::thread::spawn(move || {
        let reply = locker.recv_frame();
        (reply, sent.elapsed())
    });

    // Meanwhile another client is served promptly, again and again, until the eleventh
    // failure's back-off (1.1 s) is under way.
    let window = backoff_after(10) + Duration::from_millis(1100);
    let mut c = RawClient::connect(agent.sock());
    c.set_timeout(Duration::from_secs(5));
    let mut rounds = 0;
    let mut slowest = Duration::ZERO;
    while sent.elapsed() < window {
        let start = Instant::now();
        c.send_raw(&frame(SSH_AGENTC_REQUEST_IDENTITIES, &[]));
        let reply = c.recv_frame().unwrap_or_else(|| {
            panic!("no list reply within 5 s behind a failing unlock (round {rounds})")
        });
        let took = start.elapsed();
        slowest = slowest.max(took);
        assert_eq!(reply, [SSH_AGENT_IDENTITIES_ANSWER, 0, 0, 0, 0]);
        assert!(
            took < Duration::from_secs(1),
            "a list request waited {took:?} behind a failing unlock (round {rounds})"
        );
        rounds += 1;
        std::thread::sleep(Duration::from_millis(20));
    }

    println!("{rounds} lists in {window:?}, the slowest in {slowest:?}");

    // And the failing client did wait.
    let (reply, after) = first_failure.join().unwrap();
    assert_eq!(reply.as_deref(), Some(&[SSH_AGENT_FAILURE][..]));
    assert!(
        after >= Duration::from_millis(100),
        "first failure after {after:?}"
    );
}

#[test]
fn keys_expire_while_locked() {
    let agent = Agent::start(&[]);
    let short = keygen(agent.dir(), "ed25519");
    let long = keygen(agent.dir(), "ed25519");
    expect_ok(&ssh_add(&agent, &["-t", "1", short.to_str().unwrap()]));
    let added = Instant::now();
    expect_ok(&ssh_add(&agent, &[long.to_str().unwrap()]));
    let mut c = RawClient::connect(agent.sock());
    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_LOCK, PASSPHRASE),
        SSH_AGENT_SUCCESS
    );

    // The point is time passing while locked, and a locked agent shows nothing to poll for:
    // sleep out the 1 s lifetime (OpenSSH counts whole seconds, so it is over by then).
    let lifetime_over = added + Duration::from_millis(1200);
    std::thread::sleep(lifetime_over.saturating_duration_since(Instant::now()));
    assert_eq!(raw_list(&agent), Vec::<Vec<u8>>::new());

    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_UNLOCK, PASSPHRASE),
        SSH_AGENT_SUCCESS
    );
    let long_only = vec![pub_blob(&pub_path(&long))];
    let mut seen = Vec::new();
    let expired = wait_until(Duration::from_millis(500), || {
        seen = raw_list(&agent);
        seen == long_only
    });
    assert!(expired, "after unlock the agent lists {} keys", seen.len());
}

// ---------------------------------------------------------------------------------------------
// Confirmation (ssh-add -c)

/// An agent whose environment runs `askpass` for confirmations (`force` adds
/// `SSH_ASKPASS_REQUIRE=force`; no DISPLAY either way), holding one key added with `ssh-add -c`.
/// The script lives in `scripts`. Returns the agent and the key's private key path.
fn confirm_agent(scripts: &TempDir, askpass_body: &str, force: bool) -> (Agent, PathBuf) {
    let askpass = script(scripts.path(), "askpass", askpass_body);
    let mut env = vec![("SSH_ASKPASS", askpass.to_str().unwrap())];
    if force {
        env.push(("SSH_ASKPASS_REQUIRE", "force"));
    }
    let agent = Agent::start_env(&[], &env);
    let key = keygen(agent.dir(), "ed25519");
    let out = ssh_add(&agent, &["-c", key.to_str().unwrap()]);
    expect_ok(&out);
    assert!(
        stderr(&out).contains("The user must confirm each use of the key"),
        "{}",
        stderr(&out)
    );
    (agent, key)
}

/// Shell-quotes a path for a script body.
fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

#[test]
fn confirm_allows_when_askpass_exits_0_silently_and_shows_the_prompt() {
    let scripts = TempDir::new();
    let dump = scripts.join("dump");
    let body = format!(
        "printf '%s\\n' \"$SSH_ASKPASS_PROMPT\" > {d}\nprintf '%s' \"$1\" >> {d}\nexit 0",
        d = q(&dump)
    );
    let (agent, key) = confirm_agent(&scripts, &body, true);

    let signer = agent_only_pub(&key);
    let out = sign_via_keygen(&agent, &signer);
    expect_ok(&out);
    assert!(stdout(&out).starts_with("-----BEGIN SSH SIGNATURE-----"));

    let text = fs::read_to_string(&dump).expect("askpass did not run");
    let (kind, prompt) = text.split_once('\n').unwrap();
    assert_eq!(kind, "confirm", "SSH_ASKPASS_PROMPT");
    assert!(
        prompt.starts_with("Allow use of key "),
        "prompt: {prompt:?}"
    );
    // OpenSSH's text: "Allow use of key <comment>?\nKey fingerprint <fp>."
    let fp_line = fingerprint(&pub_path(&key));
    let fp = fp_line.split_whitespace().nth(1).unwrap();
    let comment = pub_line(&pub_path(&key))
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let openssh = format!("Allow use of key {comment}?\nKey fingerprint {fp}.");
    if is_sshkeep() {
        // sshkeep keeps those lines and says who asks after them (tests/who.rs).
        let more = format!("{openssh}\nRequested by \"ssh-keygen\" (pid ");
        assert!(prompt.starts_with(&more), "prompt: {prompt:?}");
    } else {
        assert_eq!(prompt, openssh);
    }
}

#[test]
fn confirm_refused_when_askpass_exits_1() {
    let scripts = TempDir::new();
    let (agent, key) = confirm_agent(&scripts, "exit 1", true);
    let out = sign_via_keygen(&agent, &agent_only_pub(&key));
    assert!(!out.status.success(), "signed without confirmation");
    assert!(
        stderr(&out).contains("agent refused operation"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        raw_sign(&agent, &pub_blob(&pub_path(&key))),
        SSH_AGENT_FAILURE
    );
}

#[test]
fn confirm_answer_yes_allows_and_no_refuses() {
    let scripts = TempDir::new();
    let answer = scripts.join("answer");
    let (agent, key) = confirm_agent(&scripts, &format!("cat {}", q(&answer)), true);
    let blob = pub_blob(&pub_path(&key));
    for (text, expected) in [
        ("yes\n", SSH_AGENT_SIGN_RESPONSE),
        ("YES\n", SSH_AGENT_SIGN_RESPONSE),
        ("no\n", SSH_AGENT_FAILURE),
        ("\n", SSH_AGENT_SIGN_RESPONSE),
        ("yess\n", SSH_AGENT_FAILURE),
    ] {
        fs::write(&answer, text).unwrap();
        assert_eq!(
            raw_sign(&agent, &blob),
            expected,
            "askpass printed {text:?}"
        );
    }
}

#[test]
fn confirm_refused_without_display_or_force_and_askpass_not_run() {
    let scripts = TempDir::new();
    let marker = scripts.join("ran");
    let (agent, key) = confirm_agent(&scripts, &format!("touch {}\nexit 0", q(&marker)), false);
    assert_eq!(
        raw_sign(&agent, &pub_blob(&pub_path(&key))),
        SSH_AGENT_FAILURE
    );
    assert!(!marker.exists(), "askpass ran without DISPLAY or force");
}

/// The process ids of `pid`'s children and whether each is a zombie.
fn children(pid: u32) -> Vec<(u32, bool)> {
    let mut kids = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return kids;
    };
    for task in tasks.flatten() {
        let list = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in list.split_whitespace() {
            let child: u32 = child.parse().unwrap();
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // "pid (comm) S ...": the state follows the last ')'.
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            let zombie = state.is_some_and(|s| s.starts_with('Z'));
            kids.push((child, zombie));
        }
    }
    kids
}

#[test]
fn confirm_leaves_no_zombie_askpass() {
    let scripts = TempDir::new();
    let (agent, key) = confirm_agent(&scripts, "exit 0", true);
    let blob = pub_blob(&pub_path(&key));
    for _ in 0..3 {
        assert_eq!(raw_sign(&agent, &blob), SSH_AGENT_SIGN_RESPONSE);
    }
    let mut kids = Vec::new();
    let reaped = wait_until(Duration::from_secs(2), || {
        kids = children(agent.pid());
        kids.is_empty()
    });
    assert!(reaped, "agent children after confirmations: {kids:?}");
}

/// OpenSSH waits for the askpass in its only thread, so a pending confirmation stalls every
/// client; sshkeep serves the others meanwhile.
#[test]
fn pending_confirmation_does_not_stall_other_clients() {
    if !sshkeep_only() {
        return;
    }
    let scripts = TempDir::new();
    let started = scripts.join("started");
    let go = scripts.join("go");
    let body = format!(
        "touch {s}\ni=0\nwhile [ ! -e {g} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\nexit 0",
        s = q(&started),
        g = q(&go)
    );
    let (agent, key) = confirm_agent(&scripts, &body, true);
    let blob = pub_blob(&pub_path(&key));

    let mut signer = RawClient::connect(agent.sock());
    signer.set_timeout(Duration::from_secs(15));
    signer.send_raw(&frame(
        SSH_AGENTC_SIGN_REQUEST,
        &sign_body(&blob, b"waiting for confirmation"),
    ));
    assert!(
        wait_until(Duration::from_secs(5), || started.exists()),
        "askpass did not start"
    );

    let start = Instant::now();
    let list = listed(&agent);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "ssh-add -l took {took:?}");
    assert_eq!(list, format!("{}\n", fingerprint(&pub_path(&key))));
    // The signature is still pending.
    signer.set_timeout(Duration::from_millis(50));
    assert_eq!(signer.recv_frame(), None, "signed before the confirmation");

    fs::write(&go, "").unwrap();
    signer.set_timeout(Duration::from_secs(15));
    let reply = signer
        .recv_frame()
        .expect("no reply to the confirmed sign request");
    assert_eq!(reply[0], SSH_AGENT_SIGN_RESPONSE);

    let mut kids = Vec::new();
    let reaped = wait_until(Duration::from_secs(2), || {
        kids = children(agent.pid());
        kids.is_empty()
    });
    assert!(reaped, "agent children after the confirmation: {kids:?}");
}

// ---------------------------------------------------------------------------------------------
// The unlock back-off is agent-wide; prompts show one at a time

/// Bytes `c` has written that the agent has not read yet (SIOCOUTQ): 0 once it has read them
/// all, which is how a test knows a request has reached the agent before it sends the next.
fn unread(c: &RawClient) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) on a socket writes one int through the pointer given,
    // which points at a live c_int.
    let r = unsafe { libc::ioctl(c.stream().as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    assert_eq!(r, 0, "ioctl(SIOCOUTQ): {}", std::io::Error::last_os_error());
    n as usize
}

/// Waits until the agent has read everything `c` sent.
#[track_caller]
fn until_read(c: &RawClient) {
    assert!(
        wait_until(Duration::from_secs(10), || unread(c) == 0),
        "the agent did not read the request"
    );
}

/// The back-off after a failed unlock, as the agent computes it: 0.1 s × failures, up to 10 s.
fn backoff_after(failures: u32) -> Duration {
    (1..=failures)
        .map(|n| (Duration::from_millis(100) * n).min(Duration::from_secs(10)))
        .sum()
}

/// A little slack for the agent's and the test's clocks (CLOCK_BOOTTIME against
/// CLOCK_MONOTONIC): the lower bounds below are exact otherwise.
const CLOCK_SLACK: Duration = Duration::from_millis(20);

/// An agent holding one Ed25519 key, locked with `ssh-add -x` through an askpass script.
fn locked_agent() -> (Agent, PathBuf) {
    let agent = Agent::start(&[]);
    let key = keygen(agent.dir(), "ed25519");
    expect_ok(&ssh_add(&agent, &[key.to_str().unwrap()]));
    let right = askpass_answering(agent.dir(), "right", PASSPHRASE);
    expect_ok(&ssh_add_askpass(&agent, &["-x"], &right));
    assert_no_identities(&agent);
    (agent, key)
}

/// Sends UNLOCK `passphrase` on a new connection and waits until the agent has read it.
fn send_unlock(agent: &Agent, passphrase: &str) -> RawClient {
    let mut c = RawClient::connect(agent.sock());
    c.set_timeout(Duration::from_secs(30));
    c.send_raw(&frame(SSH_AGENTC_UNLOCK, &string(passphrase.as_bytes())));
    until_read(&c);
    c
}

/// Reads `c`'s reply on a thread: the reply and when it came, counted from `start`.
fn reply_later(
    mut c: RawClient,
    start: Instant,
) -> std::thread::JoinHandle<(Option<Vec<u8>>, Duration)> {
    std::thread::spawn(move || {
        let reply = c.recv_frame();
        (reply, start.elapsed())
    })
}

/// A guesser that opens a new connection per guess and does not wait for replies gets its
/// guesses checked no faster than OpenSSH checks them (it sleeps in its only thread): 8 wrong
/// guesses take 0.1 s × (1 + … + 8) = 3.6 s to be answered. Only the guessers wait: another
/// client is served meanwhile. The right passphrase sent during the back-off is held, and
/// accepted when its turn comes, after the last wrong one's back-off.
#[test]
fn unlock_guesses_on_fresh_connections_are_checked_one_at_a_time() {
    if !sshkeep_only() {
        return;
    }
    const GUESSES: u32 = 8;
    let (agent, key) = locked_agent();

    let start = Instant::now();
    let guessers: Vec<RawClient> = (0..GUESSES)
        .map(|i| send_unlock(&agent, &format!("{i:04}")))
        .collect();
    let right = send_unlock(&agent, PASSPHRASE);
    let guesses: Vec<_> = guessers
        .into_iter()
        .map(|c| reply_later(c, start))
        .collect();
    let right = reply_later(right, start);

    // Meanwhile another client lists (an empty list: still locked), answered promptly
    // every time. The key may show up only once the right passphrase has had its turn
    // (the reply to it may not have reached its reader yet).
    let mut lister = RawClient::connect(agent.sock());
    let mut rounds = 0;
    while !right.is_finished() {
        assert!(start.elapsed() < Duration::from_secs(30), "no unlock reply");
        let t = Instant::now();
        let reply = lister.request(SSH_AGENTC_REQUEST_IDENTITIES, &[]);
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "a list waited {took:?} behind the unlock back-off (round {rounds})"
        );
        if reply != [SSH_AGENT_IDENTITIES_ANSWER, 0, 0, 0, 0] {
            let at = start.elapsed();
            assert!(
                at + CLOCK_SLACK >= backoff_after(GUESSES),
                "keys listed after {at:?}, before the right passphrase's turn"
            );
            assert_eq!(parse_identities(&reply).len(), 1, "{reply:?}");
            break;
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(rounds >= 10, "only {rounds} lists during the back-off");

    let mut times: Vec<Duration> = guesses
        .into_iter()
        .map(|h| {
            let (reply, at) = h.join().unwrap();
            assert_eq!(
                reply.as_deref(),
                Some(&[SSH_AGENT_FAILURE][..]),
                "at {at:?}"
            );
            at
        })
        .collect();
    times.sort();
    // The n-th failure is answered when the back-off of n failures ends, no sooner.
    for (n, at) in (1..).zip(&times) {
        let due = backoff_after(n);
        assert!(
            *at + CLOCK_SLACK >= due,
            "failure {n} answered after {at:?}, before the back-off of {due:?}: {times:?}"
        );
    }
    let (reply, at) = right.join().unwrap();
    assert_eq!(reply.as_deref(), Some(&[SSH_AGENT_SUCCESS][..]));
    let due = backoff_after(GUESSES);
    assert!(
        at + CLOCK_SLACK >= due,
        "the right passphrase was checked after {at:?}, before its turn at {due:?}"
    );
    println!("failures answered at {times:?}, success at {at:?}; {rounds} lists meanwhile");

    // Unlocked: the key is back and signs.
    assert_eq!(raw_list(&agent), vec![pub_blob(&pub_path(&key))]);
    expect_ok(&sign_via_keygen(&agent, &agent_only_pub(&key)));
}

/// A client that closes while its UNLOCK is held leaves the line: its passphrase (here the
/// right one) is never checked, and the guess behind it takes its turn.
#[test]
fn held_unlock_of_a_closed_client_is_never_checked() {
    if !sshkeep_only() {
        return;
    }
    let (agent, key) = locked_agent();
    let start = Instant::now();
    // Five wrong guesses: the back-off reaches 0.1 s × (1 + … + 5) = 1.5 s.
    let guessers: Vec<RawClient> = (0..5)
        .map(|i| send_unlock(&agent, &format!("{i:04}")))
        .collect();
    // The right passphrase, held behind them; its client leaves at once.
    drop(send_unlock(&agent, PASSPHRASE));
    let last = send_unlock(&agent, "wrong");
    let guesses: Vec<_> = guessers
        .into_iter()
        .map(|c| reply_later(c, start))
        .collect();
    let (reply, at) = reply_later(last, start).join().unwrap();
    // Had the right passphrase been checked, the agent would be unlocked, and this would be
    // refused at once as an unlock of an unlocked agent; it is the sixth failure instead.
    assert_eq!(reply.as_deref(), Some(&[SSH_AGENT_FAILURE][..]));
    let due = backoff_after(6);
    assert!(
        at + CLOCK_SLACK >= due,
        "the guess behind the closed client was answered after {at:?}, before {due:?}"
    );
    for h in guesses {
        assert_eq!(
            h.join().unwrap().0.as_deref(),
            Some(&[SSH_AGENT_FAILURE][..])
        );
    }
    assert_eq!(raw_list(&agent), Vec::<Vec<u8>>::new(), "unlocked");

    // The back-off is over once the last failure is answered: the right passphrase now works.
    let mut c = RawClient::connect(agent.sock());
    assert_eq!(
        lock_request(&mut c, SSH_AGENTC_UNLOCK, PASSPHRASE),
        SSH_AGENT_SUCCESS
    );
    assert_eq!(raw_list(&agent), vec![pub_blob(&pub_path(&key))]);
}

/// The askpass prompt lines an agent's askpass script logged: `start <comment>` and `end`.
fn prompt_log(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Confirmations show one prompt at a time, in arrival order; the clients behind the first
/// wait, others are served meanwhile, and a client that closes while in line never gets its
/// prompt. (OpenSSH shows one at a time too, but stalls every client while it does.)
#[test]
fn confirmations_show_one_prompt_at_a_time_in_order() {
    if !sshkeep_only() {
        return;
    }
    let scripts = TempDir::new();
    let log = scripts.join("log");
    let go = scripts.join("go");
    // Logs the key's comment (the prompt's first line is "Allow use of key <comment>?"),
    // waits for the test's go-ahead (20 s at most), logs its end and allows.
    let body = format!(
        "first=$(printf '%s\\n' \"$1\" | head -n 1)\n\
         comment=${{first#Allow use of key }}\n\
         echo \"start ${{comment%\\?}}\" >> {log}\n\
         i=0\n\
         while [ ! -e {go} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done\n\
         echo end >> {log}\n\
         exit 0",
        log = q(&log),
        go = q(&go)
    );
    let askpass = script(scripts.path(), "askpass", &body);
    let agent = Agent::start_env(
        &[],
        &[
            ("SSH_ASKPASS", askpass.to_str().unwrap()),
            ("SSH_ASKPASS_REQUIRE", "force"),
        ],
    );
    let keys: Vec<PathBuf> = ["first", "second", "third"]
        .iter()
        .map(|name| {
            let k = keygen_named(agent.dir(), "ed25519", name, name);
            expect_ok(&ssh_add(&agent, &["-c", k.to_str().unwrap()]));
            k
        })
        .collect();
    let blob = |i: usize| pub_blob(&pub_path(&keys[i]));
    let sign = |i: usize| {
        let mut c = RawClient::connect(agent.sock());
        c.set_timeout(Duration::from_secs(30));
        c.send_raw(&frame(
            SSH_AGENTC_SIGN_REQUEST,
            &sign_body(&blob(i), b"confirm me"),
        ));
        c
    };

    // The first prompt shows; the second and third requests wait in line behind it.
    let mut first = sign(0);
    assert!(
        wait_until(Duration::from_secs(10), || prompt_log(&log).len() == 1),
        "the first prompt did not show: {:?}",
        prompt_log(&log)
    );
    let mut second = sign(1);
    until_read(&second);
    let third = sign(2);
    until_read(&third);
    // The third client gives up while in line.
    drop(third);

    // Others are served while the prompts are pending, and no second prompt is shown.
    let t = Instant::now();
    let listed = raw_list(&agent);
    let took = t.elapsed();
    assert_eq!(listed.len(), 3);
    assert!(took < Duration::from_secs(1), "a list took {took:?}");
    assert_eq!(prompt_log(&log), ["start first"]);
    first.set_timeout(Duration::from_millis(50));
    assert_eq!(first.recv_frame(), None, "signed before the confirmation");

    // The go-ahead: the prompts end one after the other, each answered.
    fs::write(&go, "").unwrap();
    first.set_timeout(Duration::from_secs(30));
    assert_eq!(
        first.recv_frame().expect("no reply")[0],
        SSH_AGENT_SIGN_RESPONSE
    );
    assert_eq!(
        second.recv_frame().expect("no reply")[0],
        SSH_AGENT_SIGN_RESPONSE
    );
    // A later confirmation is shown right after the second: had the third client's prompt
    // stayed in line, it would have shown before this one.
    let mut later = sign(0);
    assert_eq!(
        later.recv_frame().expect("no reply")[0],
        SSH_AGENT_SIGN_RESPONSE
    );
    assert_eq!(
        prompt_log(&log),
        [
            "start first",
            "end",
            "start second",
            "end",
            "start first",
            "end"
        ]
    );
}
