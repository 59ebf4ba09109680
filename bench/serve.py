#!/usr/bin/env python3
"""`runbook serve` benchmark: how long the run page, its JSON and the first live update
take for finished runs of generated playbooks (no-op `wait` steps, ten per level), and
how big they are. Every open run page costs one such read of the run every 500 ms.

Run it with `python3 bench/serve.py` after `cargo build --release` (or set RUNBOOK_BIN to
another build, e.g. target/debug/runbook; say which when quoting numbers).
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.abspath(os.environ.get("RUNBOOK_BIN", os.path.join(ROOT, "target", "release", "runbook")))


def playbook(n: int) -> str:
    lines = ["apiVersion: runbook/v1", f"name: serve-{n}", "objectives: { rto: 1h }", "steps:"]
    for i in range(n):
        lines += [f"  - id: s{i}", "    type: wait", "    with: { duration: 0s }"]
        if i >= 10:
            # Ten per level: each step needs the one ten places before it.
            lines.append(f"    needs: [s{i - 10}]")
    return "\n".join(lines) + "\n"


def get(url: str):
    t = time.perf_counter()
    with urllib.request.urlopen(url) as r:
        body = r.read()
    return time.perf_counter() - t, len(body)


def first_event(host: str, port: int, path: str) -> float:
    t = time.perf_counter()
    s = socket.create_connection((host, port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    got = b""
    while b"event: run" not in got or b"\n\n" not in got.split(b"event: run", 1)[1]:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("the stream ended")
        got += chunk
    s.close()
    return time.perf_counter() - t


def main():
    if not os.path.exists(BIN):
        sys.exit(f"build first: cargo build --release (or set RUNBOOK_BIN); no {BIN}")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, RUNBOOK_STATE_DIR=os.path.join(d, ".runbook"))
        env.pop("RUNBOOK_STATE", None)
        for n in (100, 1000, 5000):
            f = os.path.join(d, f"p{n}.yaml")
            with open(f, "w") as fh:
                fh.write(playbook(n))
            subprocess.run([BIN, "exec", f, "--run-id", f"r{n}"], env=env, cwd=d, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        srv = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0"], env=env, cwd=d,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = srv.stdout.readline()
            addr = line.split("http://", 1)[1].split("/", 1)[0]
            host, port = addr.rsplit(":", 1)
            for n in (100, 1000, 5000):
                for path in (f"/runs/r{n}", f"/api/runs/r{n}"):
                    samples = [get(f"http://{addr}{path}") for _ in range(10)]
                    ms = statistics.median(s[0] for s in samples) * 1000
                    rows.append((n, path, f"{ms:.1f}", f"{samples[0][1] / 1024:.0f}"))
                ev = statistics.median(first_event(host, int(port), f"/runs/r{n}/live") for _ in range(5)) * 1000
                rows.append((n, f"/runs/r{n}/live (first event)", f"{ev:.1f}", "-"))
        finally:
            srv.kill()
            srv.wait()
    print(f"binary: {os.path.relpath(BIN, ROOT)}")
    print(f"| steps | route | median ms | KiB |\n|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | `{r[1]}` | {r[2]} | {r[3]} |")


if __name__ == "__main__":
    main()
