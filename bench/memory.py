#!/usr/bin/env python3
"""Memory benchmark: peak RSS of `runbook exec` while a step is flooded.

Cases: a `shell` step printing 2 GiB on stdout; an `http` step whose server answers a 1 GiB
body (a local server in this script; it reports how much it got to send before runbook hung
up). The goal for each is a peak RSS under 100 MB. pg-restore streaming belongs to the
PostgreSQL work and is not measured here. Run `python3 bench/memory.py` after
`cargo build --release` (or set RUNBOOK_BIN to another build, e.g. target/debug/runbook).
"""
import http.server
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("RUNBOOK_BIN", os.path.join(ROOT, "target", "release", "runbook"))
GIB = 1 << 30


class BigBody(http.server.BaseHTTPRequestHandler):
    sent = 0

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(GIB))
        self.end_headers()
        block = b"y" * (1 << 20)
        try:
            while BigBody.sent < GIB:
                self.wfile.write(block)
                BigBody.sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *_):
        pass


def run(d, name, body):
    path = os.path.join(d, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(f"apiVersion: runbook/v1\nname: {name}\nsteps:\n{body}")
    env = dict(os.environ, RUNBOOK_STATE_DIR=os.path.join(d, "state"))
    started = time.monotonic()
    p = subprocess.run(
        ["/usr/bin/time", "-f", "%M", BIN, "exec", path, "--output", "json"],
        cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    secs = time.monotonic() - started
    if p.returncode != 0:
        sys.exit(f"{name} failed: {p.stderr.decode()[-2000:]}")
    return int(p.stderr.decode().strip().splitlines()[-1]) / 1024, secs


def main():
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release (or set RUNBOOK_BIN)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BigBody)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/big"
    rows = []
    with tempfile.TemporaryDirectory() as d:
        rss, secs = run(
            d, "shell-2g",
            "  - id: flood\n    type: shell\n"
            f"    with: {{ script: \"head -c {2 * GIB} /dev/zero | tr '\\\\0' x\" }}\n",
        )
        rows.append(("shell stdout", "2 GiB", rss, secs, "head+tail 4 MiB kept"))
        rss, secs = run(d, "http-1g", f"  - id: get\n    type: http\n    with: {{ url: \"{url}\" }}\n")
        rows.append(("http body", "1 GiB", rss, secs, f"server sent {BigBody.sent >> 20} MiB before hang-up"))
    server.shutdown()
    print(f"binary: {os.path.relpath(BIN, ROOT)}")
    print(f"{'case':<14} {'size':>6} {'peak RSS MiB':>13} {'seconds':>8} {'< 100 MB':>9}  note")
    for case, size, rss, secs, note in rows:
        ok = "yes" if rss * 1.048576 < 100 else "NO"
        print(f"{case:<14} {size:>6} {rss:>13.1f} {secs:>8.1f} {ok:>9}  {note}")


if __name__ == "__main__":
    main()
