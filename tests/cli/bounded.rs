//! Bounded under hostile output: captures stream and keep at most the cap, HTTP bodies are
//! read up to the cap and no further.

use crate::support::{Env, step};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

const HEAD: &str = "apiVersion: runbook/v1\nname: t\n";
const CAP: usize = 4 * 1024 * 1024;

fn exec(env: &Env, body: &str) -> (i32, serde_json::Value, String) {
    env.write("p.yaml", &format!("{HEAD}{body}"));
    let r = env.run(&["exec", "p.yaml", "--run-id", "r1"]);
    (r.code, env.show("r1"), r.all())
}

#[test]
fn shell_output_over_the_cap_keeps_head_and_tail_and_counts_the_rest() {
    let env = Env::new();
    // 10 MB on stderr first: a reader that drained stdout only would deadlock here.
    let (code, show, out) = exec(
        &env,
        concat!(
            "steps:\n  - id: loud\n    type: shell\n    with:\n      script: |\n",
            "        head -c 10000000 /dev/zero | tr '\\0' e >&2\n",
            "        printf START; head -c 12000000 /dev/zero | tr '\\0' x; printf END\n",
        ),
    );
    assert_eq!(code, 0, "{out}");
    let outputs = &step(&show, "loud")["outputs"];
    let stdout = outputs["stdout"].as_str().unwrap();
    assert!(stdout.starts_with("STARTxxx"), "{}", &stdout[..40]);
    assert!(stdout.ends_with("xxxEND"), "{}", &stdout[stdout.len() - 40..]);
    let cut = 12_000_008 - CAP;
    assert!(
        stdout.contains(&format!("\n[runbook: {cut} bytes cut here; the output was 12000008 bytes, 4 MiB are kept]\n")),
        "no cut note"
    );
    assert!(stdout.len() < CAP + 200, "kept {} bytes", stdout.len());
    let stderr = outputs["stderr"].as_str().unwrap();
    assert!(stderr.contains(&format!("{} bytes cut here; the output was 10000000 bytes", 10_000_000 - CAP)));
    assert!(stderr.len() < CAP + 200);
}

#[test]
fn json_stdout_over_the_cap_is_a_clear_error() {
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        "steps:\n  - id: big\n    type: shell\n    with: { stdout: json, script: \"head -c 5000000 /dev/zero | tr '\\\\0' 1\" }\n",
    );
    assert_eq!(code, 1, "{out}");
    let err = step(&show, "big")["error"].as_str().unwrap().to_owned();
    assert!(err.contains("is 5000000 bytes, over the 4 MiB capture cap, so it cannot be parsed as JSON"), "{err}");
}

/// Serves one HTTP answer that claims and tries to send `len` bytes; returns its address.
/// Write errors are expected: the client is meant to hang up once it has the cap.
fn serve_big_body(len: usize, prefix: &'static [u8]) -> (String, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(sock.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 2 {
            line.clear();
        }
        let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n");
        sock.write_all(head.as_bytes()).unwrap();
        let mut sent = 0;
        if sock.write_all(prefix).is_err() {
            return sent;
        }
        sent += prefix.len();
        let block = vec![b' '; 64 * 1024];
        while sent < len {
            let n = block.len().min(len - sent);
            if sock.write_all(&block[..n]).is_err() {
                break;
            }
            sent += n;
        }
        sent
    });
    (addr, handle)
}

#[test]
fn http_body_over_the_cap_is_cut_and_not_downloaded() {
    let env = Env::new();
    let total = 256 * 1024 * 1024;
    let (addr, server) = serve_big_body(total, b"[1,");
    let (code, show, out) =
        exec(&env, &format!("steps:\n  - id: get\n    type: http\n    with: {{ url: \"{addr}/big\" }}\n"));
    assert_eq!(code, 0, "{out}");
    let outputs = &step(&show, "get")["outputs"];
    assert_eq!(outputs["truncated"], true);
    assert_eq!(outputs["json"], serde_json::Value::Null);
    let body = outputs["body"].as_str().unwrap();
    assert!(body.starts_with("[1,  "));
    assert!(body.ends_with("\n[runbook: body cut at 4 MiB; the rest was not read]"), "{}", &body[body.len() - 80..]);
    assert!(body.len() < CAP + 100);
    // The client hung up long before the 256 MiB were sent.
    let sent = server.join().unwrap();
    assert!(sent < total, "the whole body was downloaded");
}

#[test]
fn http_body_under_the_cap_is_whole_and_parsed() {
    let env = Env::new();
    let (addr, server) = serve_big_body(8, b"[1,2,3] ");
    let (code, show, out) =
        exec(&env, &format!("steps:\n  - id: get\n    type: http\n    with: {{ url: \"{addr}/\" }}\n"));
    assert_eq!(code, 0, "{out}");
    let outputs = &step(&show, "get")["outputs"];
    assert_eq!(outputs["truncated"], false);
    assert_eq!(outputs["json"], serde_json::json!([1, 2, 3]));
    assert_eq!(server.join().unwrap(), 8);
}

#[test]
fn check_status_refuses_a_json_body_over_the_cap() {
    let env = Env::new();
    let (addr, server) = serve_big_body(64 * 1024 * 1024, b"{\"status\":\"ok\"");
    let (code, show, out) = exec(
        &env,
        &format!(
            "steps:\n  - id: st\n    type: check-status\n    with: {{ endpoints: [{{ name: api, url: \"{addr}/\", expect_json: {{ status: ok }} }}] }}\n"
        ),
    );
    assert_eq!(code, 0, "{out}");
    let api = &step(&show, "st")["outputs"]["endpoints"]["api"];
    assert_eq!(api["ok"], false);
    assert_eq!(api["error"], "the body is over 4 MiB; it was not read further");
    assert!(server.join().unwrap() < 64 * 1024 * 1024);
}

#[test]
fn sql_keeps_max_rows_and_counts_the_rest() {
    let c = crate::pg_cluster::Cluster::start();
    let env = Env::new();
    let url = c.url();
    let (code, show, out) = exec(
        &env,
        &format!(
            concat!(
                "steps:\n",
                "  - id: many\n    type: sql\n    with: {{ url: \"{url}\", query: \"select g as n from generate_series(1, 200000) g\", expect: {{ row_count: 200000 }} }}\n",
                "  - id: few\n    type: sql\n    with: {{ url: \"{url}\", query: \"select g as n from generate_series(1, 50) g where g > $1\", params: [45], max_rows: 3 }}\n",
                "  - id: script\n    type: sql\n    with: {{ url: \"{url}\", query: \"select 1 as a; select g as n from generate_series(1, 10) g\", mode: write, max_rows: 2 }}\n",
            ),
            url = url
        ),
    );
    assert_eq!(code, 0, "{out}");
    let many = &step(&show, "many")["outputs"];
    assert_eq!(many["row_count"], 200000);
    assert_eq!(many["rows_dropped"], 199000);
    let rows = many["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows[0]["n"], 1);
    assert_eq!(rows[999]["n"], 1000);
    let few = &step(&show, "few")["outputs"];
    assert_eq!(few["rows"], serde_json::json!([{"n": 46}, {"n": 47}, {"n": 48}]));
    assert_eq!((few["row_count"].clone(), few["rows_dropped"].clone()), (5.into(), 2.into()));
    let script = &step(&show, "script")["outputs"];
    assert_eq!(script["rows"], serde_json::json!([{"n": "1"}, {"n": "2"}]));
    assert_eq!((script["row_count"].clone(), script["rows_dropped"].clone()), (10.into(), 8.into()));
    // The journal holds the kept rows only.
    let journal: u64 = crate::support::walk(&env.path(".runbook")).iter().map(|p| p.metadata().unwrap().len()).sum();
    assert!(journal < 200_000, "the state is {journal} bytes");
}

#[test]
fn sql_expect_rows_longer_than_max_rows_is_refused_at_check() {
    let env = Env::new();
    env.write(
        "p.yaml",
        &format!(
            "{HEAD}steps:\n  - id: q\n    type: sql\n    with: {{ url: \"postgresql://x@127.0.0.1:1/x\", query: \"select 1 as n\", max_rows: 1, expect: {{ rows: [{{n: 1}}, {{n: 2}}] }} }}\n"
        ),
    );
    let r = env.run(&["validate", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.all().contains("lists 2 rows but `max_rows` keeps 1; raise `max_rows`"), "{}", r.all());
}

/// The hostile files of issue 11, as regressions: each is a clear error with a position.
#[test]
fn alias_bomb_by_bytes_is_a_positioned_error() {
    let env = Env::new();
    let mut text = format!("{HEAD}x-s: &s \"{}\"\n", "x".repeat(20_000));
    text.push_str(&format!("x-l1: &l1 [{}]\n", vec!["*s"; 20].join(", ")));
    for i in 2..=4 {
        text.push_str(&format!("x-l{i}: &l{i} [{}]\n", vec![format!("*l{}", i - 1); 20].join(", ")));
    }
    env.write("bomb.yaml", &text);
    let r = env.run(&["validate", "bomb.yaml"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.all().contains("bomb.yaml:6:")
            && r.all().contains("more than 32 MiB of text (aliases count at their expanded size)"),
        "{}",
        r.all()
    );
}

#[test]
fn many_keys_duplicate_check_names_both_lines() {
    let env = Env::new();
    let mut text = format!("{HEAD}vars:\n");
    for i in 0..150_000 {
        text.push_str(&format!("  k{i}: {i}\n"));
    }
    text.push_str("  k7: again\n");
    env.write("keys.yaml", &text);
    let r = env.run(&["validate", "keys.yaml"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.all().contains(&format!("keys.yaml:{}:3", 150_004)), "{}", r.all());
    assert!(r.all().contains("duplicate key `k7` (first at line 11)"), "{}", r.all());
}

/// Thousands of misspelt `needs` against thousands of ids: suggestions are bounded (long
/// names get none, the distance work has a budget), so this is a plain list of errors.
#[test]
fn many_misspelt_needs_are_errors_without_a_quadratic_wait() {
    let env = Env::new();
    let mut text = format!("{HEAD}steps:\n");
    for (n, len) in [(1500, 150), (1500, 60)] {
        for i in 0..n {
            let id = format!("s{len}_{i:05}_{}", "x".repeat(len - 10));
            text.push_str(&format!(
                "  - id: {id}\n    type: wait\n    needs: [{}y]\n    with: {{ duration: 0s }}\n",
                &id[..id.len() - 1]
            ));
        }
    }
    env.write("needs.yaml", &text);
    let r = env.run(&["validate", "needs.yaml", "--output", "json"]);
    assert_eq!(r.code, 2, "{}", &r.all()[..500.min(r.all().len())]);
    assert_eq!(r.stdout.matches("needs unknown step").count(), 3000);
    // Short ids still get a suggestion while the budget lasts (the first one surely).
    let first = format!("s60_00000_{}", "x".repeat(50));
    assert!(r.stdout.contains(&format!("(did you mean `{first}`?)")), "no suggestion for {first}");
}

/// A playbook piped in over the size limit is refused, not cut at the limit and run.
#[test]
fn a_piped_playbook_over_the_limit_is_refused() {
    let env = Env::new();
    let mut text = format!("{HEAD}steps:\n  - id: a\n    type: wait\n    with: {{ duration: 0s }}\n");
    // Valid YAML all the way: a cut at 8 MiB would leave a runnable playbook.
    while text.len() <= 8 * 1024 * 1024 + 100 {
        text.push_str(&format!("# {}\n", "c".repeat(1000)));
    }
    let mut child = env
        .command(&["exec", "/dev/stdin", "--run-id", "big"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(text.as_bytes());
    });
    let r = crate::support::finish(child.wait_with_output().unwrap());
    writer.join().unwrap();
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.all().contains("the file is over 8 MiB (read from a pipe); a playbook may be at most 8 MiB"),
        "{}",
        r.all()
    );
    // Nothing was created: no run folder under the state dir.
    assert!(!env.path(".runbook").exists() || crate::support::walk(&env.path(".runbook")).is_empty());
}
