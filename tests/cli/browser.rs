//! `runbook serve` in a real headless browser (Debian's chromium, installed by `.ci/run`),
//! driven over the DevTools protocol (a websocket, `Runtime.evaluate`): the page is opened
//! once while this test drives the run, and must follow it by itself (no reload): a step
//! goes from running to succeeded, a pending approval appears, then the run finishes and
//! its report shows. Screenshots go to target/test-artifacts/.

use crate::serve::{Reap, Server};
use crate::support::{Env, repo_root};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PLAYBOOK: &str = r#"apiVersion: runbook/v1
name: browser-drill
objectives: { rto: 30m }
steps:
  - id: prepare
    type: shell
    with: { script: "touch started; while [ ! -f go ]; do sleep 0.05; done; echo prepared" }
  - id: snapshot
    type: shell
    needs: [prepare]
    with: { script: "echo snapshot" }
  - id: verify
    type: shell
    needs: [prepare]
    with: { script: "echo verify" }
  - id: go_ahead
    type: approval
    needs: [snapshot, verify]
    with: { message: "Switch traffic to the restored database?" }
  - id: switch
    type: shell
    needs: [go_ahead]
    with: { script: "echo switched" }
"#;

/// A headless chromium in its own process group (it starts helpers), stopped when dropped.
struct Browser {
    child: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: signals the process group this test created for the browser, nothing else.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser"] {
        if Command::new(c).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok() {
            return c;
        }
    }
    panic!("chromium is not installed: `apt-get install -y chromium` (.ci/run does it)");
}

fn start_browser(profile: &std::path::Path, url: &str) -> (Browser, u16) {
    let child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1100",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let browser = Browser { child };
    // With port 0 chromium picks one and writes it as the first line of this file.
    let file = profile.join("DevToolsActivePort");
    let port = crate::support::eventually("chromium never opened its DevTools port", Duration::from_secs(60), || {
        std::fs::read_to_string(&file).ok().and_then(|s| s.lines().next()?.parse().ok())
    });
    (browser, port)
}

/// The DevTools websocket of the tab showing `url_part`.
fn page_socket(port: u16, url_part: &str) -> String {
    let t = Instant::now();
    loop {
        let body = devtools_get(port, "/json/list");
        let tabs: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let found = tabs
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.contains(url_part)));
        if let Some(ws) = found.and_then(|t| t["webSocketDebuggerUrl"].as_str()) {
            return ws.to_owned();
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no tab shows {url_part}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A GET to chromium's DevTools HTTP endpoint. It keeps the connection open whatever the
/// request says, so the body is read by its Content-Length.
fn devtools_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return String::new();
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return body.to_owned();
            }
        }
    }
}

struct Cdp {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Cdp {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws.send(tungstenite::Message::text(msg)).expect("send to DevTools");
        loop {
            let m = self.ws.read().expect("read from DevTools");
            let Ok(text) = m.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            // Events (no id) and answers to other calls are not ours.
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({ "expression": expr, "returnByValue": true }));
        assert!(r["exceptionDetails"].is_null(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    fn wait_until(&mut self, what: &str, expr: &str) {
        let t = Instant::now();
        while self.eval(expr) != Value::Bool(true) {
            let html = self.eval("document.getElementById('live') && document.getElementById('live').innerText");
            assert!(t.elapsed() < Duration::from_secs(30), "the page never showed {what}; it shows:\n{html}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&mut self, name: &str) -> std::path::PathBuf {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true }));
        let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = repo_root().join("target").join("test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

fn status_of(step: &str) -> String {
    format!(
        "(document.querySelector('[data-step=\"{step}\"]') || {{getAttribute: () => null}}).getAttribute('data-status')"
    )
}

#[test]
fn a_browser_follows_a_run_live() {
    let env = Env::new();
    env.write("p.yaml", PLAYBOOK);
    let srv = Server::start(&env, None);
    let mut exec = Reap(env.command(&["exec", "p.yaml", "--run-id", "live1"]).stdout(Stdio::null()).spawn().unwrap());
    crate::support::wait_for(&env, "started");
    let profile = env.path("chromium-profile");
    let (_browser, port) = start_browser(&profile, &srv.url("/runs/live1"));
    let ws = page_socket(port, "/runs/live1");
    let (ws, _) = tungstenite::connect(ws.as_str()).expect("open the DevTools websocket");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    let mut cdp = Cdp { ws, next: 0 };

    cdp.wait_until("`prepare` running", &format!("{} === 'running'", status_of("prepare")));
    assert_eq!(cdp.eval(&status_of("go_ahead")), "pending");
    assert_eq!(cdp.eval("document.getElementById('pending') === null"), true);
    // Marks this document: a reload would lose it, so seeing it later proves the page
    // followed the run by itself.
    cdp.eval("window.__opened_once = 'yes'");
    cdp.screenshot("serve-running.png");

    env.write("go", "");
    cdp.wait_until("`prepare` succeeded", &format!("{} === 'succeeded'", status_of("prepare")));
    cdp.wait_until(
        "the pending approval",
        "document.querySelector('#pending [data-pending=\"go_ahead\"]') !== null && \
         document.getElementById('run-status').getAttribute('data-status') === 'paused'",
    );
    assert_eq!(exec.0.wait().unwrap().code(), Some(3), "the run pauses at the approval");
    let text = cdp.eval("document.getElementById('pending').innerText").as_str().unwrap_or_default().to_owned();
    assert!(text.contains("Switch traffic to the restored database?"), "{text}");
    assert!(text.contains("runbook resume live1 --approve go_ahead"), "{text}");
    assert_eq!(cdp.eval(&status_of("snapshot")), "succeeded");
    assert_eq!(cdp.eval(&status_of("go_ahead")), "waiting");
    assert_eq!(cdp.eval("window.__opened_once"), "yes", "the page was reloaded");
    let shot = cdp.screenshot("serve.png");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "the screenshot is suspiciously small");

    // The commander approves from the terminal; the page shows who, and the report.
    let r = env.run_env(&["resume", "live1", "--approve", "go_ahead"], &[("USER", "carol")]);
    assert_eq!(r.code, 0, "{}", r.all());
    cdp.wait_until(
        "the finished run",
        "document.getElementById('run-status').getAttribute('data-status') === 'succeeded' && \
         document.getElementById('report') !== null && document.getElementById('pending') === null && \
         document.getElementById('live').innerText.includes('no process is driving it now')",
    );
    let approvals = cdp.eval("document.querySelector('[data-approval=\"go_ahead\"]').innerText");
    assert!(approvals.as_str().unwrap_or_default().contains("carol@"), "{approvals}");
    assert_eq!(cdp.eval("window.__opened_once"), "yes", "the page was reloaded");
    cdp.screenshot("serve-finished.png");
}
