#!/usr/bin/env python3
"""Capture the seed corpus: agent requests exactly as OpenSSH's own clients send them.

Runs ssh-keygen to make throwaway keys of every type (and a certificate), points
SSH_AUTH_SOCK at a tiny recording listener, runs ssh-add / ssh-keygen -Y sign against it,
and writes every request body (type byte first, no length prefix) to corpus/decode/.
Then it writes request sequences for the agent target to corpus/agent/, in that target's
format: for each request, one byte of clock advance (seconds), a u32 length, the body.

The listener answers like an agent would, so the clients carry on: an identities list
with the keys for REQUEST_IDENTITIES, FAILURE for extensions, SUCCESS for the rest.

Usage: python3 fuzz/capture-corpus.py   (from the repository root or fuzz/)
"""

import hashlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
DECODE = os.path.join(HERE, "corpus", "decode")
AGENT = os.path.join(HERE, "corpus", "agent")


def string(b):
    return struct.pack(">I", len(b)) + b


class Recorder:
    """A Unix listener that records every request body it receives."""

    def __init__(self, path):
        self.path = path
        self.frames = []
        self.identities = []  # (blob, comment) answered to REQUEST_IDENTITIES
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.client, args=(conn,), daemon=True).start()

    def client(self, conn):
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while len(buf) >= 4:
                    (n,) = struct.unpack(">I", buf[:4])
                    if len(buf) < 4 + n:
                        break
                    body, buf = buf[4 : 4 + n], buf[4 + n :]
                    self.frames.append(body)
                    conn.sendall(self.answer(body))

    def answer(self, body):
        kind = body[0]
        if kind == 11:
            reply = bytes([12]) + struct.pack(">I", len(self.identities))
            for blob, comment in self.identities:
                reply += string(blob) + string(comment)
        elif kind == 13:
            # A signature the client will reject; the request is what we came for.
            reply = bytes([14]) + string(string(b"ssh-ed25519") + string(b"\0" * 64))
        elif kind == 27:
            reply = bytes([5])
        else:
            reply = bytes([6])
        return struct.pack(">I", len(reply)) + reply

    def take(self):
        frames, self.frames = self.frames, []
        return frames


def run(args, env, check=True):
    r = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True)
    if check and r.returncode != 0:
        sys.exit(f"{args}: {r.returncode}\n{r.stderr.decode()}")
    return r


def pub_blob(path):
    import base64

    with open(path) as f:
        return base64.b64decode(f.read().split()[1])


def main():
    os.makedirs(DECODE, exist_ok=True)
    os.makedirs(AGENT, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="capture")
    rec = Recorder(os.path.join(tmp, "sock"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSH_", "DISPLAY"))}
    env["SSH_AUTH_SOCK"] = rec.path
    askpass = os.path.join(tmp, "askpass")
    with open(askpass, "w") as f:
        f.write("#!/bin/sh\necho lockpass\n")
    os.chmod(askpass, 0o755)

    kinds = {
        "ed25519": ["-t", "ed25519"],
        "ecdsa256": ["-t", "ecdsa", "-b", "256"],
        "ecdsa384": ["-t", "ecdsa", "-b", "384"],
        "ecdsa521": ["-t", "ecdsa", "-b", "521"],
        "rsa2048": ["-t", "rsa", "-b", "2048"],
    }
    keys = {}
    for name, args in kinds.items():
        path = os.path.join(tmp, f"id_{name}")
        run(["ssh-keygen", "-q", "-N", "", "-C", f"{name}@fuzz", "-f", path] + args, env)
        keys[name] = path
    ca = os.path.join(tmp, "ca")
    run(["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-C", "ca", "-f", ca], env)
    # Certificates live beside copies of their keys, so the plain adds above stay plain.
    certs = {}
    for name in ["ed25519", "ecdsa256", "rsa2048"]:
        path = os.path.join(tmp, f"certkey_{name}")
        run(["cp", keys[name], path], env)
        run(["cp", keys[name] + ".pub", path + ".pub"], env)
        run(["ssh-keygen", "-q", "-s", ca, "-I", "fuzz", "-n", "root", path + ".pub"], env)
        certs[name] = path

    out = {}  # file name -> body

    def capture(label, args, extra_env=None, check=False, only=None):
        e = dict(env)
        e.update(extra_env or {})
        run(args, e, check=check)
        frames = [f for f in rec.take() if only is None or f[0] == only]
        for i, body in enumerate(frames):
            out[f"{label}-{i}" if i else label] = body

    for name, path in keys.items():
        capture(f"add-{name}", ["ssh-add", "-q", path], check=True)
    capture("add-ed25519-lifetime-confirm", ["ssh-add", "-q", "-t", "600", "-c", keys["ed25519"]], check=True)
    for name, path in certs.items():
        # ssh-add adds the plain key, then the certificate: keep only the certificate.
        run(["ssh-add", "-q", path], env, check=True)
        frames = rec.take()
        cert = [f for f in frames if b"-cert-v01@openssh.com" in f[:60]]
        out[f"add-cert-{name}"] = cert[0]
    capture("list", ["ssh-add", "-l"])
    rec.identities = [(pub_blob(p + ".pub"), os.path.basename(p).encode()) for p in keys.values()]
    data = os.path.join(tmp, "data")
    with open(data, "w") as f:
        f.write("hello\n")
    for name, path in keys.items():
        capture(f"sign-{name}", ["ssh-keygen", "-Y", "sign", "-f", path + ".pub", "-n", "file", data],
                only=13)
    rec.identities = []
    for name in ["ed25519", "rsa2048"]:
        capture(f"remove-{name}", ["ssh-add", "-d", keys[name] + ".pub"])
    # ssh-add -D sends REMOVE_ALL_IDENTITIES, then the legacy SSH-1 REMOVE_ALL (9).
    capture("remove-all", ["ssh-add", "-D"], only=19)
    lock_env = {"SSH_ASKPASS": askpass, "SSH_ASKPASS_REQUIRE": "force"}
    capture("lock", ["ssh-add", "-x"], lock_env)
    capture("unlock", ["ssh-add", "-X"], lock_env)
    # Frames no client here sends on its own: built by hand.
    out["extension-query"] = bytes([27]) + string(b"query")
    out["extension-session-bind"] = (
        bytes([27]) + string(b"session-bind@openssh.com")
        + string(pub_blob(keys["ed25519"] + ".pub")) + string(b"\x11" * 32)
        + string(string(b"ssh-ed25519") + string(b"\x22" * 64)) + b"\x00"
    )
    out["remove-all-rsa1"] = bytes([9])  # what ssh-add -D sends second
    out["unknown-type"] = bytes([200])

    for name, body in sorted(out.items()):
        with open(os.path.join(DECODE, name), "wb") as f:
            f.write(body)

    # Agent sequences: [u8 seconds to advance the clock][u32 length][body] per request.
    def seq(*items):
        b = b""
        for dt, name in items:
            body = out[name]
            b += bytes([dt]) + struct.pack(">I", len(body)) + body
        return b

    sequences = {
        "every-key-then-list": seq(*[(0, f"add-{k}") for k in kinds], (0, "list")),
        "certs-then-list": seq(*[(0, f"add-cert-{k}") for k in certs], (1, "list")),
        "sign-each": seq(*[x for k in kinds for x in [(0, f"add-{k}"), (0, f"sign-{k}")]]),
        "lifetime-expiry": seq((0, "add-ed25519-lifetime-confirm"), (0, "sign-ed25519"), (255, "list")),
        "lock-unlock": seq((0, "add-ed25519"), (0, "lock"), (0, "list"), (0, "sign-ed25519"),
                           (0, "unlock"), (0, "list")),
        "remove": seq((0, "add-ed25519"), (0, "add-rsa2048"), (0, "remove-ed25519"), (0, "list"),
                      (0, "remove-all"), (0, "list")),
        "extensions": seq((0, "extension-query"), (0, "extension-session-bind"), (0, "unknown-type")),
    }
    for name, b in sequences.items():
        with open(os.path.join(AGENT, name), "wb") as f:
            f.write(b)
    print(f"{len(out)} request bodies in {DECODE}, {len(sequences)} sequences in {AGENT}")
    for name, body in sorted(out.items()):
        print(f"  {name}: {len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()[:16]}")
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
