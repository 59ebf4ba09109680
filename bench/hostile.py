#!/usr/bin/env python3
"""Hostile-file benchmark: time and peak RSS of `runbook validate` on files built to hurt it.

Each case is generated here (nothing big is committed) and run once through
`runbook validate` (`exec` or `diff` where the name says so); the table shows the file, its size, the exit code (2 = refused with a
positioned error, 0 = valid), wall seconds and the peak RSS of the runbook process
(/usr/bin/time -v). The same inputs are regression tests in tests/cli/hostile.rs, which
check the messages and positions; time and memory are only measured here.

    python3 bench/hostile.py            # builds target/release/runbook if it is missing
    python3 bench/hostile.py --keep DIR # also leaves the generated files in DIR
    python3 bench/hostile.py --only keys-150k-dup,cycle-40k --timeout 60
    RUNBOOK_BIN=target/debug/runbook python3 bench/hostile.py
"""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.abspath(os.environ.get("RUNBOOK_BIN", os.path.join(ROOT, "target", "release", "runbook")))
HEAD = "apiVersion: runbook/v1\nname: hostile\n"
WAIT = "    type: wait\n    with: { duration: 0s }\n"


def alias_bomb(string_len):
    """A `string_len` string aliased 20^4 times through four levels of 20-item lists."""
    text = HEAD + f"s: &s \"{'x' * string_len}\"\n"
    text += "l1: &l1 [" + ", ".join(["*s"] * 20) + "]\n"
    for i in range(2, 5):
        text += f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 20) + "]\n"
    return text + "steps: []\n"


def many_keys(n):
    """`vars` with `n` keys, the last one a duplicate of the first (1.8 MB at 150k)."""
    lines = [HEAD + "vars:\n"]
    lines += [f"  k{i:06}: v\n" for i in range(n)]
    lines.append("  k000000: again\n")
    lines.append("steps:\n  - id: a\n" + WAIT)
    return "".join(lines)


def long_ids(n_steps, id_len):
    """Steps with long ids, each needing a misspelt id: every one wants a did-you-mean."""
    out = [HEAD + "steps:\n"]
    for i in range(n_steps):
        base = f"s{i:05}_" + "a" * (id_len - 7)
        out.append(f"  - id: {base}\n" + WAIT)
        if i:
            out.append(f"    needs: [{base[:-1]}b]\n")
    return "".join(out)


def huge_ids(id_len):
    """Two ids of `id_len` characters, one a typo of the other (the did-you-mean worst case)."""
    a = "a" * id_len
    return HEAD + f"steps:\n  - id: {a}\n" + WAIT + f"  - id: b\n    needs: [{a[:-1]}b]\n" + WAIT


def deep_flow(depth):
    return HEAD + "steps: " + "[" * depth + "]" * depth + "\n"


def deep_block(depth):
    """Block mappings nested `depth` deep, indentation and all."""
    out = [HEAD + "vars:\n"]
    for d in range(depth):
        out.append("  " * (d + 1) + "k:\n")
    out.append("  " * (depth + 1) + "v\n")
    return "".join(out) + "steps: []\n"


def merge_huge(n):
    """`<<:` of a mapping with `n` keys into a mapping that also has its own keys."""
    lines = [HEAD + "vars:\n  base: &base\n"]
    lines += [f"    k{i}: {i}\n" for i in range(n)]
    lines.append("  merged:\n    <<: *base\n    k0: own\n")
    lines.append("steps:\n  - id: a\n" + WAIT)
    return "".join(lines)


def merge_many(n):
    """`<<: [*m0, *m1, ...]`: `n` small mappings with the same keys merged into one."""
    lines = [HEAD + "vars:\n"]
    for i in range(n):
        lines.append(f"  m{i}: &m{i} {{a: {i}, b: {i}, c: {i}}}\n")
    lines.append("  merged: {<<: [" + ", ".join(f"*m{i}" for i in range(n)) + "]}\n")
    lines.append("steps:\n  - id: a\n" + WAIT)
    return "".join(lines)


def chain_refs(n):
    """A chain of `n` steps, each reading the first one's outputs (an ancestry check each)."""
    out = [HEAD + "steps:\n  - id: s0\n" + WAIT]
    for i in range(1, n):
        out.append(f"  - id: s{i}\n    type: wait\n    needs: [s{i - 1}]\n")
        out.append("    when: \"steps.s0.status == 'succeeded'\"\n    with: { duration: 0s }\n")
    return "".join(out)


def big_cycle(n):
    """One cycle through all `n` steps."""
    out = [HEAD + "steps:\n"]
    for i in range(n):
        out.append(f"  - id: s{i}\n    needs: [s{(i + 1) % n}]\n" + WAIT)
    return "".join(out)


def bad_params(n):
    """One step with `n` unknown parameters in `with`."""
    out = [HEAD + "steps:\n  - id: a\n    type: wait\n    with:\n      duration: 0s\n"]
    out += [f"      extra_{i}: 1\n" for i in range(n)]
    return "".join(out)


def unknown_keys(n):
    """`n` unknown top-level keys: one problem each."""
    return HEAD + "".join(f"stepz_{i}: 1\n" for i in range(n)) + "steps:\n  - id: a\n" + WAIT


def dup_ids(n):
    """`n` steps all called `a`."""
    return HEAD + "steps:\n" + "".join("  - id: a\n" + WAIT for _ in range(n))


def deep_template(depth):
    """A `when` expression of `depth` nested parentheses."""
    return HEAD + "steps:\n  - id: a\n    type: wait\n" + f"    when: \"{'(' * depth}true{')' * depth}\"\n" + "    with: { duration: 0s }\n"


def nested_anchors(depth, string_len):
    """Anchors nested `depth` deep around one long string: each anchor holds a copy."""
    text = HEAD + "vars:\n  x: "
    for d in range(depth):
        text += f"&a{d} {{k: "
    text += f"\"{'x' * string_len}\"" + "}" * depth + "\n"
    return text + "steps:\n  - id: a\n" + WAIT


def long_line(n):
    """One scalar of `n` bytes on one line."""
    return HEAD + f"description: \"{'x' * n}\"\n" + "steps:\n  - id: a\n" + WAIT


def wide_needs(n):
    """One join step needing `n` steps."""
    out = [HEAD + "steps:\n"]
    out += [f"  - id: s{i}\n" + WAIT for i in range(n)]
    out.append("  - id: join\n    needs: [" + ", ".join(f"s{i}" for i in range(n)) + "]\n" + WAIT)
    return "".join(out)


def chained_vars(n):
    """`n` vars, each reading the one before (run with `exec`: vars are rendered at run start)."""
    out = [HEAD + "vars:\n  v0: \"0\"\n"]
    out += [f"  v{i}: \"{{{{ vars.v{i - 1} }}}}\"\n" for i in range(1, n)]
    out.append("steps:\n  - id: a\n" + WAIT)
    return "".join(out)


def diff_pair(n):
    """Two `n`-step chains with an approval every 10 steps and no step in common but the
    approvals (run with `diff`: a pull request's review in CI)."""
    def playbook(prefix, text):
        out = [HEAD + "steps:\n"]
        for i in range(n):
            needs = f"    needs: [{prefix}{i - 1}]\n" if i else ""
            if i % 10 == 0:
                out.append(f"  - id: {prefix}{i}\n    type: approval\n{needs}    with: {{ message: ok }}\n")
            else:
                out.append(f"  - id: {prefix}{i}\n    type: shell\n{needs}    with: {{ command: [echo, \"{text}{i}\"] }}\n")
        return "".join(out)
    return playbook("a", "old"), playbook("b", "new")


# (name, generator). Sizes follow the issue where it names them.
CASES = [
    ("alias-20k-string", lambda: alias_bomb(20_000)),
    ("alias-2k-string", lambda: alias_bomb(2_000)),
    ("keys-150k-dup", lambda: many_keys(150_000)),
    ("long-ids-400k", lambda: long_ids(2_000, 64)),
    ("huge-ids", lambda: huge_ids(190_000)),
    ("deep-flow-5000", lambda: deep_flow(5_000)),
    ("deep-block-200", lambda: deep_block(200)),
    ("merge-90k-keys", lambda: merge_huge(90_000)),
    ("merge-3000-maps", lambda: merge_many(3_000)),
    ("chain-refs-25k", lambda: chain_refs(25_000)),
    ("cycle-30k", lambda: big_cycle(30_000)),
    ("bad-params-50k", lambda: bad_params(50_000)),
    ("unknown-keys-100k", lambda: unknown_keys(100_000)),
    ("dup-ids-40k", lambda: dup_ids(40_000)),
    ("deep-template-10k", lambda: deep_template(10_000)),
    ("nested-anchors", lambda: nested_anchors(60, 4_000_000)),
    ("long-line-7m", lambda: long_line(7 << 20)),
    ("wide-needs-35k", lambda: wide_needs(35_000)),
    ("vars-20k (exec)", lambda: chained_vars(20_000)),
    ("diff-3000 (diff)", lambda: diff_pair(3_000)),
]


def measure(args, cwd, timeout):
    """Exit code, seconds, peak RSS MiB and the first line of stderr; a run past `timeout`
    seconds is killed (with its process group) and shown as exit `-`."""
    started = time.monotonic()
    p = subprocess.Popen(
        ["/usr/bin/time", "-v"] + args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return "-", time.monotonic() - started, float("nan"), f"killed after {timeout} s"
    secs = time.monotonic() - started
    err = err.decode(errors="replace")
    rss_kb = next(int(l.split(":")[1]) for l in err.splitlines() if "Maximum resident set size" in l)
    code = next((int(l.split(":")[1]) for l in err.splitlines() if "Exit status" in l), p.returncode)
    if "Command terminated by signal" in err:
        code = 128 + int(err.split("Command terminated by signal")[1].split()[0])
    first = next((l for l in err.splitlines() if l and not l.startswith("\t") and "Command" not in l), "")
    first = first if code and not (code == 1 and args[-3] == "diff") else "ok"
    return code, secs, rss_kb / 1024, first


def fifo_case(d):
    """A FIFO fed 9 MiB (over the 8 MiB limit) by a thread of this script."""
    path = os.path.join(d, "fifo-9m.yaml")
    os.mkfifo(path)

    def feed():
        try:
            with open(path, "w") as f:
                f.write(HEAD + "steps:\n  - id: a\n" + WAIT)
                f.write(("#" + "x" * 1022 + "\n") * (9 * 1024))
        except BrokenPipeError:
            pass

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return path, t


def main():
    keep = sys.argv[sys.argv.index("--keep") + 1] if "--keep" in sys.argv else None
    timeout = int(sys.argv[sys.argv.index("--timeout") + 1]) if "--timeout" in sys.argv else 300
    only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else None
    if not os.path.exists(BIN):
        print("building target/release/runbook ...", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "-p", "runbook"], cwd=ROOT, check=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = keep or tmp
        os.makedirs(d, exist_ok=True)
        for name, make in CASES:
            if only and name not in only:
                continue
            base, _, how = name.partition(" (")
            path = os.path.join(d, f"{base}.yaml")
            text = make()
            cmd = ["exec", path, "--output", "json"] if how == "exec)" else ["validate", path]
            if how == "diff)":
                old_path = os.path.join(d, f"{base}.old.yaml")
                with open(old_path, "w") as f:
                    f.write(text[0])
                text, cmd = text[1], ["diff", old_path, path]
            with open(path, "w") as f:
                f.write(text)
            size = os.path.getsize(path)
            code, secs, rss, first = measure([BIN, "--state-dir", os.path.join(d, "state")] + cmd, d, timeout)
            rows.append((name, size, code, secs, rss, first.replace(d + "/", "")))
        path, feeder = fifo_case(d)
        code, secs, rss, first = measure([BIN, "validate", path], d, timeout)
        feeder.join(timeout=5)
        os.remove(path)
        rows.append(("fifo-9m", 9 << 20, code, secs, rss, first.replace(d + "/", "")))
    print(f"binary: {os.path.relpath(BIN, ROOT)}")
    print(f"| {'file':<18} | {'size':>9} | {'exit':>4} | {'seconds':>7} | {'peak RSS MiB':>12} | first line of the answer")
    print(f"|{'-' * 20}|{'-' * 10}:|{'-' * 5}:|{'-' * 8}:|{'-' * 13}:|---")
    for name, size, code, secs, rss, first in rows:
        shown = first if len(first) <= 90 else first[:87] + "..."
        print(f"| {name:<18} | {human(size):>9} | {code:>4} | {secs:>7.2f} | {rss:>12.1f} | {shown}")


def human(n):
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.0f} KiB"
    return f"{n} B"


if __name__ == "__main__":
    main()
