//! `shell`: run a command. `command` is an argv list run without a shell; `script` is
//! run by `sh -c` and only when asked for, so a templated value cannot inject shell syntax
//! into an argv command.

use super::support::{MAX_CAPTURE, capture_stream, tail_lines};
use super::{Outputs, ParamError, StepContext, StepError, TypedStep};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use std::process::Stdio;

pub struct Shell;

#[derive(Debug, Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StdoutMode {
    #[default]
    Text,
    /// Parse stdout as JSON into `outputs.json`.
    Json,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellParams {
    /// The program and its arguments; no shell is involved.
    #[serde(default, deserialize_with = "super::support::lenient::opt_vec")]
    #[schemars(with = "Option<Vec<super::support::lenient::Text>>")]
    pub command: Option<Vec<String>>,
    /// A script for `sh -c` (pipes, redirections).
    #[serde(default)]
    pub script: Option<String>,
    /// Extra environment variables.
    #[serde(default, deserialize_with = "super::support::lenient::map")]
    #[schemars(with = "IndexMap<String, super::support::lenient::Text>")]
    pub env: IndexMap<String, String>,
    /// Working directory, relative to where `runbook` runs.
    #[serde(default)]
    pub cwd: Option<String>,
    /// `text` (default) or `json`: also parse stdout as JSON into `outputs.json`.
    #[serde(default)]
    pub stdout: StdoutMode,
    /// Exit codes that count as success.
    #[serde(default = "default_ok_codes")]
    pub ok_codes: Vec<i32>,
}

fn default_ok_codes() -> Vec<i32> {
    vec![0]
}

impl TypedStep for Shell {
    const NAME: &'static str = "shell";
    const SUMMARY: &'static str = "run a command (argv) or a script (sh -c); outputs stdout, stderr, exit_code";
    type Params = ShellParams;

    fn idempotent(_: &ShellParams) -> bool {
        false
    }

    fn validate(p: &ShellParams) -> Result<(), ParamError> {
        match (&p.command, &p.script) {
            (Some(_), Some(_)) => Err(ParamError::root("give either `command` (argv) or `script`, not both")),
            (None, None) => Err(ParamError::root("missing `command` (an argv list) or `script` (run by sh -c)")),
            (Some(c), None) if c.is_empty() => Err(ParamError::at("command", "`command` is empty")),
            _ if p.ok_codes.is_empty() => Err(ParamError::at("ok_codes", "`ok_codes` is empty")),
            _ => Ok(()),
        }
    }

    fn plan(p: &ShellParams) -> String {
        match (&p.command, &p.script) {
            (Some(argv), _) => format!("run {}", argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")),
            (None, Some(script)) => {
                let lines: Vec<&str> = script.trim().lines().collect();
                match lines.len() {
                    0 | 1 => format!("run script: {}", script.trim()),
                    n => format!("run script: {} … ({n} lines)", lines[0].trim()),
                }
            }
            (None, None) => "run nothing".into(),
        }
    }

    async fn run(&self, ctx: &StepContext, p: ShellParams) -> Result<Outputs, StepError> {
        let mut cmd = match (&p.command, &p.script) {
            (Some(argv), _) => {
                let mut c = tokio::process::Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
            (None, Some(script)) => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(script);
                c
            }
            (None, None) => return Err(StepError::failed("nothing to run")),
        };
        let cwd = match &p.cwd {
            Some(dir) => ctx.work_dir.join(dir),
            None => ctx.work_dir.clone(),
        };
        cmd.current_dir(&cwd)
            .envs(&p.env)
            .env("RUNBOOK_RUN_ID", &ctx.run_id)
            .env("RUNBOOK_STEP_ID", &ctx.step_id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let what = Self::plan(&p);
        let child = cmd.spawn().map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound if !cwd.is_dir() => {
                    format!("the working directory {} does not exist", cwd.display())
                }
                std::io::ErrorKind::NotFound => "is the program installed and on PATH?".to_owned(),
                _ => "check the command and its permissions".to_owned(),
            };
            StepError::failed(format!("cannot start `{what}`: {e}")).with_hint(hint)
        })?;
        let mut child = child;
        // Registered, the group is killed when the step is cancelled (timeout, Ctrl-C) and when the
        // team store's lease is about to be lost; no child of a script outlives its step.
        let guard = child.id().map(|id| crate::exec::groups::Group::register(id as i32, &ctx.step_id));
        // Both pipes are drained at once into bounded captures (a child blocked on a full
        // stderr pipe would never close stdout), and only then is the exit status read.
        let (stdout_pipe, stderr_pipe) = (child.stdout.take(), child.stderr.take());
        let stdout = async {
            match stdout_pipe {
                Some(p) => capture_stream(p, MAX_CAPTURE).await,
                None => capture_stream(tokio::io::empty(), MAX_CAPTURE).await,
            }
        };
        let stderr = async {
            match stderr_pipe {
                Some(p) => capture_stream(p, MAX_CAPTURE).await,
                None => capture_stream(tokio::io::empty(), MAX_CAPTURE).await,
            }
        };
        let (stdout, stderr) = tokio::join!(stdout, stderr);
        let failed = |e: std::io::Error| StepError::failed(format!("reading the output of `{what}` failed: {e}"));
        let (stdout, stderr) = (stdout.map_err(failed)?, stderr.map_err(failed)?);
        let status = child.wait().await.map_err(|e| StepError::failed(format!("waiting for `{what}` failed: {e}")))?;
        if let Some(g) = guard {
            g.release();
        }
        let stdout_whole = stdout.whole().map(<[u8]>::to_vec);
        let stdout_cut = stdout.truncated().then(|| stdout.total());
        let stdout = stdout.text();
        let stderr = stderr.text();
        let code = status.code();
        let mut outputs = serde_json::json!({
            "stdout": stdout.strip_suffix('\n').unwrap_or(&stdout),
            "stderr": stderr,
            "exit_code": code,
        });
        if p.stdout == StdoutMode::Json {
            if let Some(total) = stdout_cut {
                return Err(StepError::failed(format!(
                    "stdout of `{what}` is {total} bytes, over the {} MiB capture cap, so it cannot be parsed as JSON",
                    MAX_CAPTURE >> 20
                ))
                .with_hint("print less, or write the JSON to a file and read what you need from it")
                .with_outputs(outputs));
            }
            match serde_json::from_slice::<serde_json::Value>(stdout_whole.as_deref().unwrap_or_default()) {
                Ok(json) => outputs["json"] = json,
                Err(e) => {
                    return Err(StepError::failed(format!("stdout of `{what}` is not JSON: {e}"))
                        .with_hint("set `stdout: text` or make the command print JSON")
                        .with_outputs(outputs));
                }
            }
        }
        match code {
            Some(c) if p.ok_codes.contains(&c) => Ok(outputs),
            Some(c) => {
                let tail = tail_lines(&stderr, 5);
                let mut msg = format!("`{what}` exited with code {c}");
                if !tail.is_empty() {
                    msg.push_str(&format!(": {tail}"));
                }
                Err(StepError::failed(msg).with_outputs(outputs))
            }
            None => {
                use std::os::unix::process::ExitStatusExt;
                let sig = status.signal().unwrap_or(0);
                Err(StepError::failed(format!("`{what}` was killed by signal {sig}")).with_outputs(outputs))
            }
        }
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%{}<>".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
