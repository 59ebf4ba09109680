#!/usr/bin/env python3
"""PostgreSQL benchmark: the `pg-dump` step against raw `pg_dump` on a generated database,
and the duration of the restore drill (examples/drill.yaml).

Makes a throwaway cluster (as the `postgres` OS user when run as root), loads about
SIZE_MB of rows (default 1024: `python3 bench/pg.py 1024`), then times, best of three:
raw `pg_dump -Fc -f FILE` and `runbook exec` of a one-step `pg-dump` playbook (which also
checksums the file). Prints a table. Needs `cargo build --release` first.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "runbook")


def pgbin(name):
    versions = sorted((int(v), v) for v in os.listdir("/usr/lib/postgresql") if v.isdigit())
    return os.path.join("/usr/lib/postgresql", versions[-1][1], "bin", name)


def as_pg(args):
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + args


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def best(fn, n=3):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    work = tempfile.mkdtemp(prefix="runbook-bench-")
    os.chmod(work, 0o777)
    data, port = os.path.join(work, "data"), free_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        subprocess.run(as_pg([pgbin("initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"]), check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{work}'\nfsync = off\nmax_wal_size = 4GB\n")
        subprocess.run(as_pg([pgbin("pg_ctl"), "-D", data, "-l", os.path.join(work, "log"), "-w", "start"]), check=True, stdout=subprocess.DEVNULL)
        rows = size_mb * 1024 * 1024 // 150  # about 150 bytes per row on disk
        psql = [pgbin("psql"), "-X", "-q", "-d", url]
        subprocess.run(psql + ["-c", "create table t (id bigint primary key, a text, b text, n numeric)"], check=True)
        t = time.perf_counter()
        subprocess.run(psql + ["-c", f"insert into t select g, md5(g::text), md5((g * 7)::text), g / 3.0 from generate_series(1, {rows}) g"], check=True)
        load = time.perf_counter() - t
        db_bytes = int(subprocess.run(psql + ["-At", "-c", "select pg_database_size('postgres')"], check=True, capture_output=True, text=True).stdout)
        out = os.path.join(work, "dumps")
        os.makedirs(out)

        def raw():
            f = os.path.join(out, "raw.dump")
            subprocess.run([pgbin("pg_dump"), "-Fc", "-f", f, "-d", url], check=True)
            os.remove(f)

        with open(os.path.join(work, "dump.yaml"), "w") as f:
            f.write(f"apiVersion: runbook/v1\nname: bench-dump\nsteps:\n  - id: dump\n    type: pg-dump\n    with: {{ url: \"{url}\", to: {out}/, format: custom }}\n")

        def step():
            subprocess.run([BIN, "--state-dir", os.path.join(work, "state"), "exec", os.path.join(work, "dump.yaml"), "--output", "json"], check=True, stdout=subprocess.DEVNULL)
            for name in os.listdir(out):
                os.remove(os.path.join(out, name))

        raw_s, step_s = best(raw), best(step)
        drill_s = best(lambda: subprocess.run([BIN, "--state-dir", os.path.join(work, "state"), "exec", os.path.join(ROOT, "examples", "drill.yaml"), "--yes",
                                               "-i", f"source_port={free_port()}", "-i", f"restore_port={free_port()}"], check=True, stdout=subprocess.DEVNULL, cwd=ROOT), n=2)
        mb = db_bytes / 1048576
        print(f"database: {mb:.0f} MiB, {rows} rows (loaded in {load:.1f} s)")
        print(f"{'what':<34} {'seconds':>8} {'MiB/s':>8}")
        print(f"{'raw pg_dump -Fc -f FILE':<34} {raw_s:>8.2f} {mb / raw_s:>8.1f}")
        print(f"{'runbook pg-dump step (+ sha256)':<34} {step_s:>8.2f} {mb / step_s:>8.1f}")
        print(f"{'step overhead':<34} {step_s - raw_s:>8.2f} {(step_s / raw_s - 1) * 100:>7.1f}%")
        print(f"{'restore drill (examples/drill.yaml)':<34} {drill_s:>8.2f}")
    finally:
        subprocess.run(as_pg([pgbin("pg_ctl"), "-D", data, "-m", "immediate", "stop"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
