#!/usr/bin/env python3
"""Engine benchmark: validate and exec generated playbooks of no-op steps (`wait` 0s).

Prints a table of wall time, peak memory (RSS) and per-step engine overhead, for chains
(each step needs the previous one) and wide fans (one root, N-1 independent steps, one
join). Exec uses the durable file journal, as a real run does. Run it with
`python3 bench/engine.py` after `cargo build --release`.
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "runbook")


def playbook(shape: str, n: int) -> str:
    lines = ["apiVersion: runbook/v1", f"name: bench-{shape}-{n}", "steps:"]
    for i in range(n):
        lines.append(f"  - id: s{i}")
        lines.append("    type: wait")
        if shape == "chain" and i > 0:
            lines.append(f"    needs: [s{i - 1}]")
        if shape == "fan" and 0 < i < n - 1:
            lines.append("    needs: [s0]")
        if shape == "fan" and i == n - 1 and n > 1:
            lines.append("    needs: [" + ", ".join(f"s{j}" for j in range(1, n - 1)) + "]")
        lines.append("    with: { duration: 0s }")
    return "\n".join(lines) + "\n"


def measure(make_args, cwd):
    """Best of three wall-clock seconds; `make_args()` gives each repetition's command."""
    best = None
    for _ in range(3):
        args = make_args()
        t = time.perf_counter()
        p = subprocess.run(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t
        if p.returncode != 0:
            sys.exit(f"{' '.join(args)} failed: {p.stderr.decode()}")
        best = wall if best is None else min(best, wall)
    return best


def peak_rss_mib(args, cwd):
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return int(p.stderr.decode().strip().splitlines()[-1]) / 1024


def main():
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for shape in ("chain", "fan"):
            for n in (100, 1000, 10000):
                f = os.path.join(d, f"{shape}-{n}.yaml")
                with open(f, "w") as fh:
                    fh.write(playbook(shape, n))
                state = os.path.join(d, f"state-{shape}-{n}")
                v = measure(lambda: [BIN, "validate", f], d)
                counter = [0]

                def exec_args():
                    counter[0] += 1
                    return [BIN, "--state-dir", state, "exec", f, "--output", "json", "--run-id", f"r{counter[0]}"]

                e = measure(exec_args, d)
                rss = peak_rss_mib(exec_args(), d)
                per_step_us = (e - v) / n * 1e6
                rows.append((shape, n, v * 1000, e * 1000, per_step_us, rss))
    print(f"{'shape':<6} {'steps':>6} {'validate ms':>12} {'exec ms':>9} {'overhead µs/step':>17} {'exec peak MiB':>14}")
    for shape, n, v, e, per, rss in rows:
        print(f"{shape:<6} {n:>6} {v:>12.1f} {e:>9.1f} {per:>17.1f} {rss:>14.1f}")


if __name__ == "__main__":
    main()
