//! `runbook serve`: every route over plain HTTP against the real binary, over both stores;
//! 404s, path traversal, HTML escaping of what steps printed, and that watching never
//! takes a run's lock. The browser test is in browser.rs.

use crate::pg_cluster::Cluster;
use crate::support::{Env, bin};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A `runbook serve` process on a free port, stopped when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(env: &Env, team: Option<&str>) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        if let Some(url) = team {
            args.extend(["--state", url]);
        }
        let mut child = env.command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start serve");
        // The first line names the bound address: "serving the runs of ... at http://ADDR/ ...".
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read serve's first line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("serve did not say where it listens: {line:?} {err}")
            })
            .to_owned();
        Server { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET with the path sent exactly as given (no client-side normalisation of `..`).
    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path)
    }

    pub fn request(&self, method: &str, path: &str) -> Reply {
        let mut s = TcpStream::connect(&self.addr).expect("connect to serve");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.addr)
            .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the reply");
        Reply::parse(&raw)
    }

    pub fn json(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", r.body))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed when the test ends, even by a failed assertion (a blocked
/// `exec` must not outlive its temp dir).
pub struct Reap(pub Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())))
            .collect();
        Reply { status, headers, body: body.to_owned() }
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

const PLAYBOOK: &str = r#"apiVersion: runbook/v1
name: web-view
objectives: { rto: 1h }
steps:
  - id: prepare
    type: shell
    with: { script: "echo ready" }
  - id: go
    type: approval
    needs: [prepare]
    with: { message: "Restore <b>prod</b>?" }
  - id: parse
    type: shell
    needs: [go]
    continue_on_error: true
    with: { script: "echo not-json", stdout: json }
  - id: breaks
    type: shell
    needs: [parse]
    with: { script: "echo '<script>alert(1)</script>' >&2; exit 3" }
"#;

fn store_args<'a>(team: Option<&'a str>, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = team.map(|u| vec!["--state", u]).unwrap_or_default();
    v.extend_from_slice(rest);
    v
}

/// One finished (failed) run with an approval, an error carrying markup and a hint; then
/// every route.
fn every_route(team: Option<&str>) {
    let env = Env::new();
    env.write("p.yaml", PLAYBOOK);
    env.write("secret.txt", "do-not-serve-me");
    let r = env
        .run_env(&store_args(team, &["exec", "p.yaml", "--run-id", "web1", "--approve", "go"]), &[("USER", "alice")]);
    assert_eq!(r.code, 1, "the run should fail at `breaks`: {}", r.all());
    let srv = Server::start(&env, team);

    // The runs page and its JSON.
    let home = srv.get("/");
    assert_eq!(home.status, 200);
    assert!(home.header("content-type").starts_with("text/html"), "{:?}", home.headers);
    assert!(home.header("content-security-policy").contains("script-src 'self'"), "{:?}", home.headers);
    assert!(home.body.contains("href=\"/runs/web1\""), "{}", home.body);
    if let Some(url) = team {
        // The page names the team store by host, port and database; never its password,
        // given in the URL or in its query string.
        let password = url.split_once("postgres:").and_then(|(_, r)| r.split_once('@')).map(|(p, _)| p).unwrap();
        assert!(!home.body.contains(password), "{}", home.body);
        assert!(home.body.contains("team store postgresql://127.0.0.1:"), "{}", home.body);
    }
    let runs = srv.json("/api/runs");
    assert_eq!(runs[0]["run_id"], "web1", "{runs}");
    assert_eq!(runs[0]["status"], "failed", "{runs}");

    // The run page: escaped error, hint, approval with who, graph nodes with statuses.
    let page = srv.get("/runs/web1");
    assert_eq!(page.status, 200, "{}", page.body);
    let b = &page.body;
    assert!(b.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the error is not shown escaped: {b}");
    assert!(!b.contains("<script>alert(1)"), "a step's error became markup: {b}");
    assert!(!b.contains("<b>prod</b>"), "{b}");
    assert!(b.contains("hint: set `stdout: text` or make the command print JSON"), "{b}");
    assert!(b.contains("data-step=\"breaks\" data-status=\"failed\""), "{b}");
    assert!(b.contains("data-step=\"go\" data-status=\"succeeded\""), "{b}");
    assert!(b.contains("<tr data-approval=\"go\"><td>go</td><td>alice@"), "who approved is not shown: {b}");
    assert!(b.contains("of the RTO 1h"), "{b}");
    assert!(b.contains("Incident report"), "a finished run shows its report: {b}");
    assert!(b.contains("/assets/app.js"), "{b}");
    // Edges of the graph: prepare → go → parse → breaks.
    assert_eq!(b.matches("class=\"edge\"").count(), 3, "{b}");

    let api = srv.json("/api/runs/web1");
    assert_eq!(api["status"], "failed");
    assert_eq!(api["graph"]["edges"], serde_json::json!([[0, 1], [1, 2], [2, 3]]), "{api}");
    assert_eq!(api["approvals"][0]["step"], "go");
    assert!(api["approvals"][0]["by"].as_str().unwrap().starts_with("alice@"), "{api}");
    assert!(api["approvals"][0]["at"].is_string(), "{api}");
    assert_eq!(api["pending_approvals"], serde_json::json!([]));
    let parse = api["steps"].as_array().unwrap().iter().find(|s| s["id"] == "parse").unwrap();
    assert_eq!(parse["hint"], "set `stdout: text` or make the command print JSON", "{api}");
    assert_eq!(api["clock"]["rto_ms"], 3_600_000);
    assert_eq!(api["clock"]["ticking"], false);
    assert_eq!(api["report"]["objectives"]["rto_result"], "met", "{api}");

    let md = srv.get("/runs/web1/report.md");
    assert_eq!(md.status, 200);
    assert!(md.header("content-type").starts_with("text/markdown"));
    assert!(md.body.starts_with("# Incident report: `web-view`"), "{}", md.body);

    let css = srv.get("/assets/style.css");
    assert_eq!((css.status, css.header("content-type")), (200, "text/css; charset=utf-8"));
    let js = srv.get("/assets/app.js");
    assert_eq!(js.status, 200);
    assert!(js.body.contains("EventSource"), "{}", js.body);

    // The live stream answers at once with the run's part of the page.
    let first = first_sse_event(&srv, "/runs/web1/live");
    assert!(first.contains("event: run"), "{first}");
    assert!(first.contains("data-step=\"breaks\" data-status=\"failed\""), "{first}");
    assert!(!first.contains("<script>alert"), "{first}");

    // Unknown runs, unknown pages, and every way to climb out of the state dir.
    for path in [
        "/runs/nope",
        "/api/runs/nope",
        "/runs/nope/live",
        "/runs/nope/report.md",
        "/nothing",
        "/runs/..%2F..",
        "/runs/..%2F..%2Fsecret.txt",
        "/runs/..%2f..%2f..%2fetc%2fpasswd",
        "/api/runs/..%2F..",
        "/runs/%2e%2e",
        "/runs/..",
        "/runs/../../secret.txt",
        "/runs/web1/../../secret.txt",
        "/runs/.runbook",
        "/assets/../secret.txt",
        "/assets/..%2F..%2Fsecret.txt",
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 404, "{path}: {} {}", r.status, r.body);
        assert!(!r.body.contains("do-not-serve-me") && !r.body.contains("root:"), "{path} leaked a file");
    }
    // Read-only: nothing but GET (and HEAD) is accepted anywhere.
    for (method, path) in [("POST", "/runs/web1"), ("PUT", "/api/runs/web1"), ("DELETE", "/runs/web1"), ("POST", "/")] {
        let r = srv.request(method, path);
        assert_eq!(r.status, 405, "{method} {path}: {}", r.body);
    }
    let missing = srv.get("/api/runs/nope");
    assert!(missing.header("content-type").starts_with("application/json"));
    assert_eq!(serde_json::from_str::<Value>(&missing.body).unwrap()["error"], "No run `nope`.");
}

/// Reads a Server-Sent Events stream until its first complete event.
pub fn first_sse_event(srv: &Server, path: &str) -> String {
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n", srv.addr).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let t = Instant::now();
    loop {
        let n = s.read(&mut buf).expect("read the stream");
        assert!(n > 0, "the stream ended: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        // Chunked transfer: an event ends with a blank line inside the chunk's data.
        if let Some(at) = text.find("event: ")
            && text[at..].contains("\n\n")
        {
            return text[at..].to_owned();
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no event: {text}");
    }
}

#[test]
fn every_route_over_the_state_dir() {
    every_route(None);
}

#[test]
fn every_route_over_the_team_store() {
    let c = Cluster::start();
    every_route(Some(&c.url()));
}

/// While `exec` drives a run, the page names the driver and shows the running step; the
/// server keeps reading the run many times a second and `resume` of a paused run is never
/// refused because of it (it never tries the lock).
#[test]
fn watching_never_takes_the_lock() {
    let env = Env::new();
    env.write(
        "p.yaml",
        "apiVersion: runbook/v1\nname: held\nsteps:\n  - id: block\n    type: shell\n    with: { script: \"touch started; while [ ! -f go ]; do sleep 0.05; done\" }\n  - id: gate\n    type: approval\n    needs: [block]\n    with: { message: ok? }\n",
    );
    let srv = Server::start(&env, None);
    let mut exec = Reap(env.command(&["exec", "p.yaml", "--run-id", "h1"]).stdout(Stdio::null()).spawn().unwrap());
    crate::support::wait_for(&env, "started");
    let v = srv.json("/api/runs/h1");
    assert_eq!(v["status"], "running", "{v}");
    let driver = v["driven_by"].as_str().unwrap_or_else(|| panic!("no driver shown: {v}"));
    assert!(driver.starts_with(&format!("process {} on ", exec.0.id())), "{driver}");
    assert!(v["steps"][0]["status"] == "running", "{v}");
    env.write("go", "");
    assert_eq!(exec.0.wait().unwrap().code(), Some(3), "the run pauses at the approval");
    let v = srv.json("/api/runs/h1");
    assert_eq!(v["status"], "paused", "{v}");
    assert_eq!(v["driven_by"], Value::Null, "{v}");
    assert_eq!(v["pending_approvals"][0]["step"], "gate", "{v}");
    assert_eq!(v["pending_approvals"][0]["message"], "ok?");
    assert_eq!(v["pending_approvals"][0]["command"], "runbook resume h1 --approve gate");

    // Hammer the server from two threads while resuming, several times.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pollers: Vec<_> = (0..2)
        .map(|_| {
            let (addr, stop) = (srv.addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut s = TcpStream::connect(&addr).unwrap();
                    write!(s, "GET /api/runs/h1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
                    let mut sink = Vec::new();
                    let _ = s.read_to_end(&mut sink);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let r = env.run(&["resume", "h1", "--approve", "gate"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let polls: u32 = pollers.into_iter().map(|p| p.join().unwrap()).sum();
    assert_eq!(r.code, 0, "resume was refused while the page was watched: {}", r.all());
    assert!(polls > 0);
    assert_eq!(srv.json("/api/runs/h1")["status"], "succeeded");
}

#[test]
fn serve_refuses_a_busy_port_clearly() {
    let env = Env::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(bin())
        .args(["serve", "--listen", &addr])
        .env("RUNBOOK_STATE_DIR", env.path(".runbook"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")) && err.contains("--listen"), "{err}");
}
