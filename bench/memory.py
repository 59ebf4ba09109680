#!/usr/bin/env python3
"""Memory benchmark: peak RSS of `runbook exec` while a step is flooded.

Cases: a `shell` step printing 2 GiB on stdout; an `http` step whose server answers a 1 GiB
body (a local server in this script; it reports how much it got to send before runbook hung
up); a `pg-restore` of one table of about 1 GiB from a custom-format dump into a second
database of a throwaway PostgreSQL cluster (initdb/pg_ctl as the `postgres` OS user when run
as root, a free port, a temp dir), where runbook itself pipes pg_restore's output into psql.
The goal for each is a peak RSS of the runbook process under 100 MB (PostgreSQL's own
processes are not counted: /usr/bin/time measures runbook and reports the largest of it and
its children, and pg_restore/psql stay small).

    python3 bench/memory.py                          # all three, pg-restore at 1024 MiB
    python3 bench/memory.py pg-restore --pg-mb 256   # only the cases named, a smaller table

Run after `cargo build --release` (or set RUNBOOK_BIN to another build, e.g.
target/debug/runbook).
"""
import http.server
import os
import shutil
import socket
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


def pgbin(name):
    versions = sorted((int(v), v) for v in os.listdir("/usr/lib/postgresql") if v.isdigit())
    return os.path.join("/usr/lib/postgresql", versions[-1][1], "bin", name)


def as_pg(args):
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + args


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_restore_case(d, size_mb):
    """A table of about `size_mb` MiB in database `src`, dumped (custom format), restored by a
    `pg-restore` step into the same (empty) table in database `dst`."""
    work = tempfile.mkdtemp(prefix="runbook-mem-pg-")
    os.chmod(work, 0o777)
    data, port = os.path.join(work, "data"), free_port()
    url = lambda db: f"postgresql://postgres@127.0.0.1:{port}/{db}"
    psql = lambda db: [pgbin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url(db)]
    try:
        subprocess.run(as_pg([pgbin("initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"]), check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{work}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_wal_size = 4GB\n")
        subprocess.run(as_pg([pgbin("pg_ctl"), "-D", data, "-l", os.path.join(work, "log"), "-w", "start"]), check=True, stdout=subprocess.DEVNULL)
        table = "create table t (id bigint primary key, a text, b text, n numeric)"
        for db in ("src", "dst"):
            subprocess.run(psql("postgres") + ["-c", f"create database {db}"], check=True)
            subprocess.run(psql(db) + ["-c", table], check=True)
        # About 117 bytes per row in the table's heap (measured: 447,392 rows, 50 MiB).
        rows = size_mb * 1024 * 1024 // 117
        started = time.monotonic()
        subprocess.run(psql("src") + ["-c", f"insert into t select g, md5(g::text), md5((g * 7)::text), g / 3.0 from generate_series(1, {rows}) g"], check=True)
        table_mb = int(subprocess.run(psql("src") + ["-At", "-c", "select pg_table_size('t')"], check=True, capture_output=True, text=True).stdout) / 1048576
        load_s = time.monotonic() - started
        dump = os.path.join(work, "src.dump")
        started = time.monotonic()
        subprocess.run([pgbin("pg_dump"), "-Fc", "-t", "t", "-f", dump, "-d", url("src")], check=True)
        dump_s = time.monotonic() - started
        print(f"pg-restore: table {table_mb:.0f} MiB, {rows} rows (loaded in {load_s:.0f} s), "
              f"dump {os.path.getsize(dump) >> 20} MiB (in {dump_s:.0f} s)", flush=True)
        rss, secs = run(
            d, "pg-restore",
            f"  - id: restore\n    type: pg-restore\n    with: {{ url: \"{url('dst')}\", from: \"{dump}\", tables: [public.t] }}\n",
        )
        got = int(subprocess.run(psql("dst") + ["-At", "-c", "select count(*) from t"], check=True, capture_output=True, text=True).stdout)
        if got != rows:
            sys.exit(f"pg-restore restored {got} rows, not {rows}")
        return rss, secs, f"{table_mb:.0f} MiB table, {rows:,} rows restored ({os.path.getsize(dump) >> 20} MiB dump)"
    finally:
        subprocess.run(as_pg([pgbin("pg_ctl"), "-D", data, "-m", "immediate", "stop"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


def main():
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release (or set RUNBOOK_BIN)")
    args = sys.argv[1:]
    pg_mb = 1024
    if "--pg-mb" in args:
        i = args.index("--pg-mb")
        pg_mb = int(args[i + 1])
        del args[i:i + 2]
    cases = args or ["shell", "http", "pg-restore"]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        if "shell" in cases:
            rss, secs = run(
                d, "shell-2g",
                "  - id: flood\n    type: shell\n"
                f"    with: {{ script: \"head -c {2 * GIB} /dev/zero | tr '\\\\0' x\" }}\n",
            )
            rows.append(("shell stdout", "2 GiB", rss, secs, "head+tail 4 MiB kept"))
        if "http" in cases:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BigBody)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            url = f"http://127.0.0.1:{server.server_address[1]}/big"
            rss, secs = run(d, "http-1g", f"  - id: get\n    type: http\n    with: {{ url: \"{url}\" }}\n")
            rows.append(("http body", "1 GiB", rss, secs, f"server sent {BigBody.sent >> 20} MiB before hang-up"))
            server.shutdown()
        if "pg-restore" in cases:
            rss, secs, note = pg_restore_case(d, pg_mb)
            rows.append(("pg-restore", f"{pg_mb} MiB" if pg_mb < 1024 else f"{pg_mb / 1024:g} GiB", rss, secs, note))
    print(f"binary: {os.path.relpath(BIN, ROOT)}")
    print(f"{'case':<14} {'size':>8} {'peak RSS MiB':>13} {'seconds':>8} {'< 100 MB':>9}  note")
    for case, size, rss, secs, note in rows:
        ok = "yes" if rss * 1.048576 < 100 else "NO"
        print(f"{case:<14} {size:>8} {rss:>13.1f} {secs:>8.1f} {ok:>9}  {note}")


if __name__ == "__main__":
    main()
