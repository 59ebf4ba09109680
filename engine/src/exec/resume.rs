//! Resuming a run, the decisions before the first step: which copy of the playbook runs,
//! where `--from` restarts, which inputs come back (never a masked secret), and which
//! interrupted steps need the operator's word. The lock, the journal and the reset are
//! elsewhere (the store, the dispatcher, [`super::resume_reset`]); the CLI turns these
//! errors into messages and exit codes.

use crate::playbook::Playbook;
use crate::playbook::inputs::{self, GivenValue, InputErrors};
use crate::state::{RunState, StepStatus};
use indexmap::IndexMap;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error(
        "the playbook {file} changed since run {run_id} started; review the change, then resume with --allow-changed"
    )]
    Changed { file: String, run_id: String },
    #[error("--from {step}: no step `{step}` in playbook {playbook}")]
    NoStep { step: String, playbook: String },
    /// Secret inputs (and plain ones that held a secret) are stored masked.
    #[error("secret inputs are never stored; give them again: {flags} (or set {vars})")]
    SecretsMissing { flags: String, vars: String },
    #[error(transparent)]
    Inputs(#[from] InputErrors),
}

/// Which copy of the playbook a resume runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The file where the run found it: unchanged, or changed and allowed.
    Current,
    /// The file is gone: the copy saved with the run.
    Saved,
}

/// Decides between the playbook file as it is now and the text `saved` with run `run_id`.
pub fn source(file: &Path, run_id: &str, saved: &str, allow_changed: bool) -> Result<Source, ResumeError> {
    match std::fs::read_to_string(file) {
        Ok(current) if current == saved => Ok(Source::Current),
        Ok(_) if !allow_changed => {
            Err(ResumeError::Changed { file: file.display().to_string(), run_id: run_id.to_owned() })
        }
        Ok(_) => Ok(Source::Current),
        Err(_) => Ok(Source::Saved),
    }
}

/// The index of the `--from` step, if one is given.
pub fn from_step(pb: &Playbook, from: Option<&str>) -> Result<Option<usize>, ResumeError> {
    match from {
        Some(f) => pb
            .index
            .get(f)
            .copied()
            .map(Some)
            .ok_or_else(|| ResumeError::NoStep { step: f.to_owned(), playbook: pb.name.clone() }),
        None => Ok(None),
    }
}

/// The inputs of the resumed run: those `given` again, the `stored` ones otherwise.
pub fn inputs(
    pb: &Playbook,
    stored: &Value,
    mut given: Vec<(String, GivenValue)>,
) -> Result<IndexMap<String, Value>, ResumeError> {
    let mut missing = Vec::new();
    if let Some(map) = stored.as_object() {
        for (k, v) in map {
            if given.iter().any(|(n, _)| n == k) || !pb.inputs.contains_key(k) {
                continue;
            }
            // Secret inputs are stored as `***`; a plain one that held a secret's value was
            // masked too: both must be given again, never resumed with the mask.
            if holds_mask(v) {
                if std::env::var(inputs::input_env_var(k)).is_err() {
                    missing.push(k.clone());
                }
                continue;
            }
            given.push((k.clone(), GivenValue::Json(v.clone())));
        }
    }
    if !missing.is_empty() {
        let flags: Vec<String> = missing.iter().map(|m| format!("-i {m}=...")).collect();
        return Err(ResumeError::SecretsMissing {
            flags: flags.join(" "),
            vars: missing.iter().map(|m| format!("${}", inputs::input_env_var(m))).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(inputs::resolve(pb, &given)?)
}

/// Steps that change the world and were running when the run stopped: they are not run
/// again without being asked.
pub fn interrupted<'p>(pb: &'p Playbook, state: &RunState) -> Vec<&'p str> {
    pb.steps
        .iter()
        .filter(|s| !s.idempotent && state.steps.get(&s.id).is_some_and(|st| st.status == StepStatus::Interrupted))
        .map(|s| s.id.as_str())
        .collect()
}

fn holds_mask(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(crate::template::redact::MASK),
        Value::Array(items) => items.iter().any(holds_mask),
        Value::Object(map) => map.values().any(holds_mask),
        _ => false,
    }
}
