//! The hostile-file corpus of issue 11: files built to make `validate` blow up, each of which
//! must end in a clear error with a position (or a clean success), never an abort, a panic or
//! a quadratic wait. The files are generated here (nothing big is committed); the same
//! generators, with time and peak memory measured, are bench/hostile.py. No wall-clock
//! asserts: a regression shows up there, and here as a test that takes minutes.

use crate::support::{Env, Test};

const HEAD: &str = "apiVersion: runbook/v1\nname: hostile\n";
const WAIT: &str = "    type: wait\n    with: { duration: 0s }\n";

/// `validate p.yaml` with the file written first; the exit code must be 0 or 2.
fn validate(text: &str) -> crate::support::Run {
    let env = Env::new();
    env.write("p.yaml", text);
    let r = env.run(&["validate", "p.yaml"]);
    assert!(r.code == 0 || r.code == 2, "exit {}: {}", r.code, &r.stderr[..r.stderr.len().min(2000)]);
    r
}

/// Every non-hint line of an error answer names `p.yaml:LINE:COL`, and the last one counts.
fn all_positioned(stderr: &str, problems: usize) {
    let lines: Vec<&str> = stderr.lines().collect();
    let (last, rest) = lines.split_last().expect("some output");
    let want = if problems == 1 { "1 problem found".to_owned() } else { format!("{problems} problems found") };
    assert_eq!(*last, want);
    let mut n = 0;
    for l in rest.iter().filter(|l| !l.starts_with("  hint: ")) {
        let mut parts = l.splitn(4, ':');
        assert_eq!(parts.next(), Some("p.yaml"), "{l}");
        for what in ["line", "column"] {
            let v = parts.next().unwrap_or_default();
            assert!(!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()), "no {what} in {l}");
        }
        n += 1;
    }
    assert_eq!(n, problems);
}

/// One 20 KB string aliased 20^4 times: 3.2 GB expanded from a 20 KB file (it aborted
/// `validate` with an allocation failure, exit 134).
#[test]
fn alias_bomb_of_a_long_string() {
    for (len, at) in [(20_000, "6:25"), (2_000, "7:15")] {
        let mut text = format!("{HEAD}s: &s \"{}\"\n", "x".repeat(len));
        text.push_str(&format!("l1: &l1 [{}]\n", vec!["*s"; 20].join(", ")));
        for i in 2..5 {
            text.push_str(&format!("l{i}: &l{i} [{}]\n", vec![format!("*l{}", i - 1); 20].join(", ")));
        }
        text.push_str("steps: []\n");
        Test::new()
            .file("p.yaml", &text)
            .args(&["validate", "p.yaml"])
            .stderr(&format!(
                "p.yaml:{at}: invalid YAML: the document has more than 32 MiB of text (aliases count at their expanded size)\n1 problem found\n"
            ))
            .status(2)
            .run();
    }
}

/// 150,000 keys in one mapping, the last a duplicate of the first (1.8 MB; 41 s before the
/// check used a hash set).
#[test]
fn duplicate_key_among_150k() {
    let mut text = format!("{HEAD}vars:\n");
    for i in 0..150_000 {
        text.push_str(&format!("  k{i:06}: v\n"));
    }
    text.push_str("  k000000: again\nsteps:\n  - id: a\n");
    text.push_str(WAIT);
    assert!(text.len() > 1_800_000);
    Test::new()
        .file("p.yaml", &text)
        .args(&["validate", "p.yaml"])
        .stderr("p.yaml:150004:3: invalid YAML: duplicate key `k000000` (first at line 4)\n1 problem found\n")
        .status(2)
        .run();
}

/// 2,000 steps with 64-character ids (the longest allowed), each needing a misspelt one:
/// 400 KB of did-you-mean candidates (over 100 s before suggestions had a budget).
#[test]
fn misspelt_long_ids_by_the_thousand() {
    let mut text = format!("{HEAD}steps:\n");
    for i in 0..2_000 {
        let id = format!("s{i:05}_{}", "a".repeat(57));
        text.push_str(&format!("  - id: {id}\n{WAIT}"));
        if i > 0 {
            text.push_str(&format!("    needs: [{}b]\n", &id[..63]));
        }
    }
    assert!(text.len() > 370_000);
    let r = validate(&text);
    assert_eq!(r.code, 2);
    all_positioned(&r.stderr, 1999);
    let a = "a".repeat(57);
    assert_eq!(
        r.stderr.lines().next().unwrap(),
        format!(
            "p.yaml:10:13: step `s00001_{a}`: needs unknown step `s00001_{}b` (did you mean `s00001_{a}`?)",
            &a[..56]
        )
    );
}

/// An id of 190,000 characters (and a typo of it): refused for its length, and no message
/// quotes more than 64 characters of it.
#[test]
fn a_huge_id_is_refused_and_quoted_short() {
    let a = "a".repeat(190_000);
    let text = format!("{HEAD}steps:\n  - id: {a}\n{WAIT}  - id: b\n    needs: [{}b]\n{WAIT}", &a[1..]);
    let short = format!("{}…", &a[..64]);
    Test::new()
        .file("p.yaml", &text)
        .args(&["validate", "p.yaml"])
        .stderr(&format!(
            "p.yaml:4:9: step id `{short}` is 190000 characters long\n  hint: ids are at most 64 characters\n\
             p.yaml:8:13: step `b`: needs unknown step `{short}`\n2 problems found\n"
        ))
        .status(2)
        .run();
    // 64 is allowed.
    let id = "a".repeat(64);
    Test::new()
        .file("p.yaml", &format!("{HEAD}steps:\n  - id: {id}\n{WAIT}"))
        .args(&["validate", "p.yaml"])
        .stdout("p.yaml: ok (1 steps)\n")
        .run();
}

/// A FIFO has no size up front: 8 MiB are read, one byte more is a refusal (it used to be
/// cut silently at 8 MiB + 1 byte and run the steps that fit).
#[test]
fn playbook_from_a_fifo_over_8_mib() {
    let limit = 8 << 20;
    for (extra, want) in [
        (0, "p.yaml: ok (1 steps)\n".to_owned()),
        (
            1,
            "p.yaml:1:1: the file is over 8 MiB (read from a pipe); a playbook may be at most 8 MiB\n  \
             hint: split it into several playbooks\n1 problem found\n"
                .to_owned(),
        ),
        (1 << 20, String::new()),
    ] {
        let env = Env::new();
        let path = env.path("p.yaml");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path that lives through the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let mut text = format!("{HEAD}steps:\n  - id: a\n{WAIT}").into_bytes();
        // Comment lines up to exactly `limit + extra` bytes.
        while text.len() < limit + extra {
            let n = (limit + extra - text.len()).min(1000);
            text.push(b'#');
            text.extend(std::iter::repeat_n(b'x', n.saturating_sub(2)));
            if n >= 2 {
                text.push(b'\n');
            }
        }
        assert_eq!(text.len(), limit + extra);
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            // runbook hangs up after 8 MiB + 1 byte: a broken pipe here is expected.
            let _ = std::fs::OpenOptions::new().write(true).open(&path).and_then(|mut f| f.write_all(&text));
        });
        let r = env.run(&["validate", "p.yaml"]);
        writer.join().unwrap();
        if want.is_empty() {
            assert_eq!(r.code, 2, "{}", r.all());
            assert!(r.stderr.starts_with("p.yaml:1:1: the file is over 8 MiB (read from a pipe)"), "{}", r.stderr);
        } else if extra == 0 {
            assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, want.as_str(), ""));
        } else {
            assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (2, "", want.as_str()));
        }
    }
}

/// Nesting far deeper than the 64 levels allowed, in flow and in block style, in lists and
/// in mappings, in YAML and in a `when` expression.
#[test]
fn deep_nesting() {
    let cases = [
        (format!("{HEAD}steps: {}{}\n", "[".repeat(5000), "]".repeat(5000)), "3:263"),
        (format!("{HEAD}steps: {}1{}\n", "{a: ".repeat(5000), "}".repeat(5000)), "3:260"),
        (
            {
                let mut t = format!("{HEAD}vars:\n");
                for d in 0..200 {
                    t.push_str(&format!("{}k:\n", "  ".repeat(d + 1)));
                }
                t + &"  ".repeat(201) + "v\nsteps: []\n"
            },
            "67:129",
        ),
        (
            {
                let mut t = format!("{HEAD}steps:\n");
                for d in 0..200 {
                    t.push_str(&format!("{}-\n", "  ".repeat(d + 1)));
                }
                t
            },
            "67:129",
        ),
    ];
    for (text, at) in cases {
        Test::new()
            .file("p.yaml", &text)
            .args(&["validate", "p.yaml"])
            .stderr(&format!("p.yaml:{at}: invalid YAML: nesting deeper than 64 levels\n1 problem found\n"))
            .status(2)
            .run();
    }
    let when = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
    Test::new()
        .file("p.yaml", &format!("{HEAD}steps:\n  - id: a\n    type: wait\n    when: \"{when}\"\n    with: {{ duration: 0s }}\n"))
        .args(&["validate", "p.yaml"])
        .stderr(
            "p.yaml:6:11: step `a`: invalid `when` expression: syntax error: template exceeds maximum recursion limits\n\
             1 problem found\n",
        )
        .status(2)
        .run();
}

/// `<<:` of a mapping with 90,000 keys (it compared each merged key with all before it:
/// minutes), then read back through a real run: explicit keys win, the last merged key is there.
#[test]
fn merge_key_over_a_huge_mapping() {
    let mut text = format!("{HEAD}vars:\n  base: &base\n");
    for i in 0..90_000 {
        text.push_str(&format!("    k{i}: {i}\n"));
    }
    text.push_str("  merged:\n    <<: *base\n    k0: own\n");
    text.push_str(concat!(
        "steps:\n  - id: a\n    type: shell\n",
        "    with: { command: [echo, \"{{ vars.merged.k0 }} {{ vars.merged.k89999 }} {{ vars.merged | length }}\"] }\n",
    ));
    let env = Env::new();
    env.write("p.yaml", &text);
    let r = env.run(&["validate", "p.yaml"]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "p.yaml: ok (1 steps)\n", ""));
    let r = env.run(&["exec", "p.yaml", "--run-id", "m", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", &r.stderr[..r.stderr.len().min(2000)]);
    let show = env.show("m");
    assert_eq!(crate::support::step(&show, "a")["outputs"]["stdout"], "own 89999 90000");
}

/// 3,000 small mappings merged into one (`<<: [*m0, *m1, ...]`): the first one wins.
#[test]
fn merge_key_over_many_mappings() {
    let mut text = format!("{HEAD}vars:\n");
    for i in 0..3_000 {
        text.push_str(&format!("  m{i}: &m{i} {{a: {i}, b: {i}, \"c{i}\": {i}}}\n"));
    }
    let all: Vec<String> = (0..3_000).map(|i| format!("*m{i}")).collect();
    text.push_str(&format!("  merged: {{<<: [{}], b: own}}\n", all.join(", ")));
    text.push_str(concat!(
        "steps:\n  - id: a\n    type: shell\n",
        "    with: { command: [echo, \"{{ vars.merged.a }} {{ vars.merged.b }} {{ vars.merged.c2999 }} {{ vars.merged | length }}\"] }\n",
    ));
    let env = Env::new();
    env.write("p.yaml", &text);
    let r = env.run(&["exec", "p.yaml", "--run-id", "m", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", &r.stderr[..r.stderr.len().min(2000)]);
    let show = env.show("m");
    assert_eq!(crate::support::step(&show, "a")["outputs"]["stdout"], "0 own 2999 3002");
}

/// Anchors nested 60 deep around a 4 MB string: each keeps a copy (240 MB held from a 4 MB
/// file); the copies now have a budget of their own.
#[test]
fn nested_anchors_around_a_long_string() {
    let mut text = format!("{HEAD}vars:\n  x: ");
    for d in 0..60 {
        text.push_str(&format!("&a{d} {{k: "));
    }
    text.push_str(&format!("\"{}\"{}\nsteps:\n  - id: a\n{WAIT}", "x".repeat(4_000_000), "}".repeat(60)));
    Test::new()
        .file("p.yaml", &text)
        .args(&["validate", "p.yaml"])
        .stderr(
            "p.yaml:4:460: invalid YAML: anchored values hold more than 400000 values or 32 MiB of text (each anchor \
             keeps a copy, so nested anchors count once per level)\n1 problem found\n",
        )
        .status(2)
        .run();
}

/// 25,000 chained steps that each read the first one's status: one ancestry check per
/// reference made this quadratic (46 s in a debug build). A step beside the chain that reads
/// its end is still caught.
#[test]
fn chain_of_25k_steps_reading_the_first() {
    let mut text = format!("{HEAD}steps:\n  - id: s0\n{WAIT}");
    for i in 1..25_000 {
        text.push_str(&format!(
            "  - id: s{i}\n    type: wait\n    needs: [s{}]\n    when: \"steps.s0.status == 'succeeded'\"\n    with: {{ duration: 0s }}\n",
            i - 1
        ));
    }
    let r = validate(&text);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "p.yaml: ok (25000 steps)\n", ""));
    text.push_str("  - id: beside\n    type: wait\n    when: \"steps.s24999.status == 'succeeded'\"\n    with: { duration: 0s }\n");
    let line = text.lines().count() - 1;
    let r = validate(&text);
    assert_eq!(
        r.stderr,
        format!(
            "p.yaml:{line}:11: step `beside`: template reads `steps.s24999`, but `s24999` is not among its needs (a race)\n  \
             hint: add `s24999` to `needs` (directly or through another step)\n1 problem found\n"
        )
    );
}

/// One cycle through 30,000 steps: Tarjan's recursion overflowed the stack (exit 134).
#[test]
fn cycle_through_30k_steps() {
    let n = 30_000;
    let mut text = format!("{HEAD}steps:\n");
    for i in 0..n {
        text.push_str(&format!("  - id: s{i}\n    needs: [s{}]\n{WAIT}", (i + 1) % n));
    }
    let r = validate(&text);
    assert_eq!(r.code, 2);
    let path: Vec<String> = (0..n).chain([0]).map(|i| format!("s{i}")).collect();
    assert_eq!(
        r.stderr,
        format!(
            "p.yaml:5:12: dependency cycle: {}\n  hint: remove one of these `needs` to break the cycle\n1 problem found\n",
            path.join(" -> ")
        )
    );
}

/// 50,000 stray parameters in one step's `with`: each was placed by a walk of the mapping
/// (quadratic); the first 20 are listed and the rest are said to exist.
#[test]
fn fifty_thousand_stray_parameters() {
    let mut text = format!("{HEAD}steps:\n  - id: a\n    type: wait\n    with:\n      duration: 0s\n");
    for i in 0..50_000 {
        text.push_str(&format!("      extra_{i}: 1\n"));
    }
    let r = validate(&text);
    assert_eq!(r.code, 2);
    all_positioned(&r.stderr, 21);
    assert_eq!(
        r.stderr.lines().next().unwrap(),
        "p.yaml:6:5: step `a`: `with`: more than 20 problems; the rest are not listed"
    );
    assert_eq!(r.stderr.matches("unknown parameter `extra_").count(), 20);
}

/// Problems by the ten thousand are all reported, each with its position, in linear time.
#[test]
fn many_problems_each_positioned() {
    let mut text = HEAD.to_owned();
    for i in 0..100_000 {
        text.push_str(&format!("stepz_{i}: 1\n"));
    }
    text.push_str(&format!("steps:\n  - id: a\n{WAIT}"));
    let r = validate(&text);
    all_positioned(&r.stderr, 100_000);
    assert!(r.stderr.starts_with("p.yaml:3:1: unknown key `stepz_0`\n  hint: allowed keys: apiVersion, name,"));

    let mut text = format!("{HEAD}steps:\n");
    for _ in 0..40_000 {
        text.push_str(&format!("  - id: a\n{WAIT}"));
    }
    let r = validate(&text);
    all_positioned(&r.stderr, 39_999);
    assert!(r.stderr.starts_with("p.yaml:7:9: duplicate step id `a`\n  hint: first defined at line 4\n"));
}

/// Big but legal: a 7 MiB scalar on one line, a join of 35,000 steps.
#[test]
fn big_legal_files_pass() {
    let text = format!("{HEAD}description: \"{}\"\nsteps:\n  - id: a\n{WAIT}", "x".repeat(7 << 20));
    let r = validate(&text);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "p.yaml: ok (1 steps)\n", ""));
    let n = 35_000;
    let mut text = format!("{HEAD}steps:\n");
    for i in 0..n {
        text.push_str(&format!("  - id: s{i}\n{WAIT}"));
    }
    let all: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    text.push_str(&format!("  - id: join\n    needs: [{}]\n{WAIT}", all.join(", ")));
    let r = validate(&text);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "p.yaml: ok (35001 steps)\n", ""));
}

/// Bytes that are not text: the first bad byte is pointed at; a NUL is a YAML error.
#[test]
fn bytes_that_are_not_text() {
    let env = Env::new();
    let mut bytes = format!("{HEAD}steps:\n  - id: a\n    type: wait\n    with: {{ duration: \"").into_bytes();
    bytes.extend([0xff, 0xfe]);
    bytes.extend(b"\" }\n");
    std::fs::write(env.path("p.yaml"), bytes).unwrap();
    let r = env.run(&["validate", "p.yaml"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            2,
            "p.yaml:6:24: the file is not UTF-8: invalid utf-8 sequence of 1 bytes from index 92\n  \
             hint: save the playbook as UTF-8\n1 problem found\n"
        )
    );
    Test::new()
        .file("p.yaml", "apiVersion: runbook/v1\nname: t\0\nsteps: []\n")
        .args(&["validate", "p.yaml"])
        .stderr("p.yaml:2:8: invalid YAML: unexpected character: `\\u{0}'\n1 problem found\n")
        .status(2)
        .run();
}

/// 20,000 vars, each reading the one before: the vars seen so far were copied for each var
/// (27 s to start a run of 20,000 plain vars, release build). Each still sees only the vars
/// before it.
#[test]
fn twenty_thousand_chained_vars() {
    let mut text = format!("{HEAD}vars:\n  v0: \"0\"\n");
    for i in 1..20_000 {
        text.push_str(&format!("  v{i}: \"{{{{ vars.v{} }}}}{}\"\n", i - 1, if i % 1000 == 0 { "|" } else { "" }));
    }
    text.push_str(concat!(
        "steps:\n  - id: a\n    type: shell\n",
        "    with: { command: [echo, \"{{ vars.v19999 }} {{ vars | length }}\"] }\n",
    ));
    let env = Env::new();
    env.write("p.yaml", &text);
    let r = env.run(&["exec", "p.yaml", "--run-id", "v", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", &r.stderr[..r.stderr.len().min(2000)]);
    let show = env.show("v");
    assert_eq!(crate::support::step(&show, "a")["outputs"]["stdout"], format!("0{} 20000", "|".repeat(19)));
    // A var reading a later one is refused before the run (the order is the file's).
    env.write("q.yaml", &format!("{HEAD}vars:\n  a: \"{{{{ vars.b }}}}\"\n  b: x\nsteps:\n  - id: s\n{WAIT}"));
    let r = env.run(&["validate", "q.yaml"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.starts_with("q.yaml:4:6: var `a`: "), "{}", r.stderr);
}

/// `runbook diff` of two 3,000-step playbooks with 300 approvals and no step in common but
/// the approvals: every step's approvals were found by a search per pair and renames by
/// comparing every removed step with every added one (64 s, release build). It runs in CI
/// on pull requests, so a hostile one must not stall it.
#[test]
fn diff_of_two_unrelated_3000_step_playbooks() {
    let playbook = |prefix: &str, text: &str| {
        let mut out = format!("{HEAD}steps:\n");
        for i in 0..3_000 {
            let needs = if i == 0 { String::new() } else { format!("    needs: [{prefix}{}]\n", i - 1) };
            if i % 10 == 0 {
                out.push_str(&format!("  - id: {prefix}{i}\n    type: approval\n{needs}    with: {{ message: ok }}\n"));
            } else {
                out.push_str(&format!(
                    "  - id: {prefix}{i}\n    type: shell\n{needs}    with: {{ command: [echo, \"{text}{i}\"] }}\n"
                ));
            }
        }
        out
    };
    let env = Env::new();
    env.write("old.yaml", &playbook("a", "old"));
    env.write("new.yaml", &playbook("b", "new"));
    let r = env.run(&["diff", "old.yaml", "new.yaml"]);
    assert_eq!(r.code, 1, "{}", &r.stderr[..r.stderr.len().min(2000)]);
    let count = |prefix: &str| r.stdout.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("+ step b"), 2_700);
    assert_eq!(count("- step a"), 2_700);
    // The approvals are the same but for their ids: renamed, in order.
    let renamed = r.stdout.lines().filter(|l| l.starts_with("~ step a") && l.contains(" renamed to ")).count();
    assert_eq!(renamed, 300);
    assert!(r.stdout.contains("~ step a2990 renamed to b2990\n"), "{}", &r.stdout[..2000]);
    // Every new shell step waits for an approval: no warning says otherwise.
    assert!(!r.stdout.contains("has no approval before it"));
}
