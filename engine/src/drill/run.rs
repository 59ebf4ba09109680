//! Running a drill: each playbook of the suite as a normal run of this same program
//! (`runbook exec`, or `runbook resume` when the run already exists), one after the other,
//! with a run id derived from the drill id so that a drill can be resumed from the store
//! alone. The drill's own record (which suite, which runs) sits next to the report.

use super::suite::{Entry, Suite, expand};
use crate::state::{RunState, RunStatus, StateError, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    State(#[from] StateError),
}

/// What the drill remembers between a start and a `--resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillRecord {
    pub drill_id: String,
    pub suite: String,
    pub suite_file: String,
    pub suite_sha256: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub by: String,
    /// Each time the drill was resumed: when and by whom.
    #[serde(default)]
    pub resumes: Vec<(String, String)>,
    pub entries: Vec<EntryRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryRecord {
    pub id: String,
    pub run_id: String,
    pub playbook: String,
    pub file: String,
    /// The exit code of the last `exec`/`resume` of this run (none: not started yet).
    pub exit_code: Option<i32>,
    /// `exec` or `resume`, the last command this drill gave for the run.
    pub last_command: Option<String>,
}

/// How the runs are started.
pub struct RunOptions {
    /// This program.
    pub exe: PathBuf,
    /// Environment that makes the child use the same store (`RUNBOOK_STATE_DIR` or `RUNBOOK_STATE`).
    pub store_env: Vec<(String, String)>,
    /// `--output json`: the children's JSON events go to stderr, stdout is the report's.
    pub json: bool,
    pub rerun_interrupted: bool,
    pub allow_changed: bool,
}

/// The drill folder: `<state-dir>/drills/<drill-id>/`.
pub fn drill_dir(state_dir: &Path, drill_id: &str) -> PathBuf {
    state_dir.join("drills").join(drill_id)
}

pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

pub fn new_record(suite: &Suite, drill_id: &str, by: &str) -> DrillRecord {
    DrillRecord {
        drill_id: drill_id.to_owned(),
        suite: suite.name.clone(),
        suite_file: std::path::absolute(&suite.file).unwrap_or_else(|_| suite.file.clone()).display().to_string(),
        suite_sha256: suite.sha256.clone(),
        started_at: jiff::Timestamp::now().to_string(),
        finished_at: None,
        by: by.to_owned(),
        resumes: Vec::new(),
        entries: suite
            .entries
            .iter()
            .map(|e| EntryRecord {
                id: e.raw.id.clone(),
                run_id: run_id(drill_id, &e.raw.id),
                playbook: e.playbook.name.clone(),
                file: e.raw.file.clone(),
                exit_code: None,
                last_command: None,
            })
            .collect(),
    }
}

pub fn run_id(drill_id: &str, entry: &str) -> String {
    format!("{drill_id}-{entry}")
}

pub fn save(dir: &Path, record: &DrillRecord) -> Result<(), DrillError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| DrillError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join("drill.json");
    let tmp = dir.join("drill.json.tmp");
    let text = serde_json::to_string_pretty(record).unwrap_or_default();
    // Written aside and renamed: a crash leaves the old record or the new one, never half.
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(())
}

pub fn load_record(dir: &Path) -> Result<DrillRecord, DrillError> {
    let path = dir.join("drill.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DrillError::Usage(format!("no drill in {} (see `runbook drill --help`)", dir.display()))
        } else {
            DrillError::Io { path: path.display().to_string(), source: e }
        }
    })?;
    serde_json::from_str(&text).map_err(|e| DrillError::Usage(format!("{}: not a drill record: {e}", path.display())))
}

/// The run of an entry, if it was created.
pub fn run_state(store: &dyn Store, run_id: &str) -> Result<Option<RunState>, DrillError> {
    match store.load(run_id) {
        Ok(s) => Ok(Some(s)),
        Err(StateError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a finished run can be kept as it is on `--resume`: it ended, and how it ended is
/// what the suite expects. Anything else (paused, interrupted, an unexpected failure) is
/// resumed, which re-runs what did not succeed.
pub fn keep(entry: &Entry, state: &RunState) -> bool {
    match state.status {
        RunStatus::Succeeded => entry.raw.expect == super::suite::Expect::Succeeded,
        RunStatus::Failed => entry.raw.expect == super::suite::Expect::Failed,
        _ => false,
    }
}

/// The environment of an entry's run: the suite's, then the entry's, `${NAME}` expanded
/// from this process's environment.
pub fn entry_env(suite: &Suite, entry: &Entry) -> Result<Vec<(String, String)>, DrillError> {
    let lookup = |n: &str| std::env::var(n).ok();
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (k, v) in suite.env.iter().chain(entry.raw.env.iter()) {
        match expand(v, &lookup) {
            Ok(val) => out.push((k.clone(), val)),
            Err(names) => missing.extend(names.into_iter().map(|n| format!("{n} (for {k})"))),
        }
    }
    unset_vars(entry, missing).map(|()| out)
}

/// The `-i name=value` arguments of an entry: lists and maps as JSON (as `-i` reads them),
/// `${NAME}` in strings expanded from this process's environment.
pub fn entry_inputs(entry: &Entry) -> Result<Vec<String>, DrillError> {
    let lookup = |n: &str| std::env::var(n).ok();
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (k, v) in &entry.raw.inputs {
        let text = match v {
            Value::String(s) => match expand(s, &lookup) {
                Ok(t) => t,
                Err(names) => {
                    missing.extend(names.into_iter().map(|n| format!("{n} (for input {k})")));
                    continue;
                }
            },
            other => other.to_string(),
        };
        out.push(format!("{k}={text}"));
    }
    unset_vars(entry, missing).map(|()| out)
}

/// Starts or resumes one entry's run and waits for it; returns the child's exit code.
pub fn run_entry(
    suite: &Suite,
    entry: &Entry,
    rec: &EntryRecord,
    resume: bool,
    opts: &RunOptions,
) -> Result<(i32, &'static str), DrillError> {
    let env = entry_env(suite, entry)?;
    let mut cmd = Command::new(&opts.exe);
    let verb = if resume { "resume" } else { "exec" };
    if opts.json {
        cmd.args(["--output", "json"]);
    }
    cmd.arg(verb);
    if resume {
        cmd.arg(&rec.run_id);
        if opts.rerun_interrupted {
            cmd.arg("--rerun-interrupted");
        }
        if opts.allow_changed {
            cmd.arg("--allow-changed");
        }
    } else {
        cmd.arg(&entry.path).args(["--run-id", &rec.run_id]);
        for kv in entry_inputs(entry)? {
            cmd.arg("-i").arg(kv);
        }
    }
    if entry.raw.yes {
        cmd.arg("--yes");
    }
    for a in &entry.raw.approve {
        cmd.args(["--approve", a]);
    }
    cmd.envs(opts.store_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if opts.json {
        // stdout carries the drill report alone.
        use std::os::fd::AsFd;
        let err = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| DrillError::Io { path: "stderr".into(), source: e })?;
        cmd.stdout(Stdio::from(err));
    }
    let status = cmd.status().map_err(|e| DrillError::Io { path: opts.exe.display().to_string(), source: e })?;
    // A child killed by a signal (SIGKILL, OOM) has no code: count it as interrupted.
    Ok((status.code().unwrap_or(130), verb))
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Ctrl-C goes to the whole foreground process group: the run in progress checkpoints and
/// exits 130 on its own. The drill waits for it instead of dying first, so that the drill
/// record is written and says how to resume. A handler (unlike SIG_IGN) is reset by exec,
/// so the children still get the default behaviour.
pub fn survive_ctrl_c() {
    // SAFETY: installing a handler that does nothing is async-signal-safe; no other code
    // of this process handles SIGINT while a drill runs (the runs are child processes).
    unsafe {
        libc::signal(libc::SIGINT, ignore_signal as *const () as libc::sighandler_t);
    }
}

/// The error for `${NAME}`s of an entry that the environment does not set.
fn unset_vars(entry: &Entry, missing: Vec<String>) -> Result<(), DrillError> {
    if missing.is_empty() {
        return Ok(());
    }
    Err(DrillError::Usage(format!(
        "playbook `{}` of the suite needs environment variable(s) that are not set: {}",
        entry.raw.id,
        missing.join(", ")
    )))
}
