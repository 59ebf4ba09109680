#!/usr/bin/env python3
"""Redaction benchmark: what masking secrets costs a run.

Two shapes, each without secrets and with 10 (nine tokens and a 4096-bit PEM key, whose
lines are secrets too): one `shell` step printing N MiB (captured output is redacted
before the 4 MiB cut, then again as an event, a journal line, a snapshot), and a chain of
200 `shell` steps printing one line each (the per-event cost). Prints best-of-three wall
time and peak RSS. Run `python3 bench/redact.py` after `cargo build --release`
(`RUNBOOK_BIN=target/debug/runbook` measures a debug build instead).
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("RUNBOOK_BIN", os.path.join(ROOT, "target", "release", "runbook"))


def pem(d):
    path = os.path.join(d, "k.pem")
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096", "-out", path],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return open(path).read()


def playbook(shape, n, secrets):
    names = [f"TOKEN_{i}" for i in range(9)] + ["PEM_KEY"] if secrets else []
    lines = ["apiVersion: runbook/v1", f"name: bench-{shape}", f"secrets: [{', '.join(names)}]", "steps:"]
    if shape == "output":
        lines += [
            "  - id: big",
            "    type: shell",
            f"    with: {{ script: \"head -c {n * 1024 * 1024} /dev/urandom | base64 -w 100; echo $TOKEN_0\" }}",
        ]
    else:
        for i in range(n):
            lines.append(f"  - id: s{i}")
            lines.append("    type: shell")
            if i > 0:
                lines.append(f"    needs: [s{i - 1}]")
            lines.append("    with: { command: [echo, \"step output line\"] }")
    return "\n".join(lines) + "\n"


def run(args, cwd, env):
    best, rss = None, 0
    for _ in range(3):
        t = time.perf_counter()
        p = subprocess.run(
            ["/usr/bin/time", "-f", "%M"] + args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wall = time.perf_counter() - t
        if p.returncode != 0:
            sys.exit(f"{' '.join(args)} failed: {p.stderr.decode()}")
        rss = max(rss, int(p.stderr.decode().strip().splitlines()[-1]))
        best = wall if best is None else min(best, wall)
    return best, rss / 1024


def main():
    if not os.path.exists(BIN):
        sys.exit(f"build first: cargo build --release (or set RUNBOOK_BIN); no {BIN}")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ)
        for i in range(9):
            env[f"TOKEN_{i}"] = f"bench-token-{i}-{'x' * (20 + i)}"
        env["PEM_KEY"] = pem(d)
        for shape, n in (("output", 1), ("output", 16), ("chain", 200)):
            for secrets in (False, True):
                f = os.path.join(d, f"{shape}-{n}-{secrets}.yaml")
                open(f, "w").write(playbook(shape, n, secrets))
                wall, rss = run([BIN, "exec", f, "--state-dir", os.path.join(d, "state")], d, env)
                size = f"{n} MiB output" if shape == "output" else f"{n}-step chain"
                rows.append((size, "10" if secrets else "0", f"{wall:.2f}", f"{rss:.0f}"))
    print(f"binary: {BIN}")
    print(f"| {'run':<18} | secrets | wall s | peak RSS MiB |")
    print(f"|{'-' * 20}|---------|--------|--------------|")
    for r in rows:
        print(f"| {r[0]:<18} | {r[1]:>7} | {r[2]:>6} | {r[3]:>12} |")


if __name__ == "__main__":
    main()
