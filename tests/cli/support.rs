//! Small builders that run the real binary in a temp dir: [`Env`] for scenarios, [`Test`]
//! for one command whose whole output is compared.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Env {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_runbook")
}

impl Env {
    pub fn new() -> Env {
        Env { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .current_dir(self.dir.path())
            .env("RUNBOOK_STATE_DIR", self.path(".runbook"))
            .env_remove("RUNBOOK_STATE")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        finish(c.output().expect("run runbook"))
    }

    /// `show RUN --output json`, parsed.
    pub fn show(&self, run_id: &str) -> Value {
        let r = self.run(&["show", run_id, "--output", "json"]);
        assert_eq!(r.code, 0, "show failed: {}", r.all());
        serde_json::from_str(&r.stdout).expect("show prints JSON")
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

pub fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The step of a `show` document, by id.
pub fn step<'a>(show: &'a Value, id: &str) -> &'a Value {
    show["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {show}"))
}

pub fn status(show: &Value, id: &str) -> String {
    step(show, id)["status"].as_str().unwrap_or_default().to_owned()
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Every file under a directory (to search a state dir for leaked secrets).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// The one wait loop of the tests: polls `ready` until it gives a value, and fails the
/// test with `what` (what never happened) after `limit`. A wait that gives up silently
/// would let the test go on to assert against a state that never came.
pub fn eventually<T>(what: &str, limit: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = ready() {
            return v;
        }
        assert!(t.elapsed() < limit, "{what} (waited {limit:?})");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until something listens on a local port (a server the test started).
pub fn listening(what: &str, port: u16) {
    eventually(what, Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok().then_some(())
    });
}

/// Waits until a file appears in the temp dir (a step's marker that it has started).
pub fn wait_for(env: &Env, file: &str) {
    eventually(&format!("{file} never appeared"), Duration::from_secs(20), || env.path(file).exists().then_some(()));
}

/// One command, with its whole stdout, stderr and exit code compared (as just's `Test`):
/// an extra or a missing line fails, where `contains` would let it pass. By default the
/// command must succeed and print nothing. The temp dir's path reads `[TMP]` in what it
/// prints, so messages that name a file there still compare whole.
pub struct Test {
    env: Env,
    args: Vec<String>,
    stdout: String,
    stderr: String,
    status: i32,
}

impl Test {
    pub fn new() -> Test {
        Test { env: Env::new(), args: Vec::new(), stdout: String::new(), stderr: String::new(), status: 0 }
    }

    /// The next command of a scenario, in the environment the earlier ones left.
    pub fn in_env(env: Env) -> Test {
        Test { env, ..Test::new() }
    }

    /// A file in the temp dir the command runs in.
    pub fn file(self, name: &str, text: &str) -> Test {
        self.env.write(name, text);
        self
    }

    pub fn args(mut self, args: &[&str]) -> Test {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    pub fn stdout(mut self, text: &str) -> Test {
        self.stdout = text.to_owned();
        self
    }

    pub fn stderr(mut self, text: &str) -> Test {
        self.stderr = text.to_owned();
        self
    }

    pub fn status(mut self, code: i32) -> Test {
        self.status = code;
        self
    }

    /// Runs the command and compares everything; returns the environment for more commands.
    pub fn run(self) -> Env {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut r = self.env.run(&args);
        let tmp = self.env.dir.path().display().to_string();
        r.stdout = r.stdout.replace(&tmp, "[TMP]");
        r.stderr = r.stderr.replace(&tmp, "[TMP]");
        let mut wrong = Vec::new();
        if r.code != self.status {
            wrong.push(format!("exit code {} (want {})", r.code, self.status));
        }
        for (name, got, want) in [("stdout", &r.stdout, &self.stdout), ("stderr", &r.stderr, &self.stderr)] {
            if got != want {
                wrong.push(format!("{name}:\n--- want\n{want}--- got\n{got}---"));
            }
        }
        assert!(wrong.is_empty(), "runbook {}:\n{}", args.join(" "), wrong.join("\n"));
        self.env
    }
}
