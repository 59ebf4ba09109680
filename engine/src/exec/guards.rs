//! Checks made before a run is created or resumed, about what the last session left behind:
//! the run id as a file name, the playbook's source, inputs given again, and processes of
//! interrupted steps that outlived their runbook.

use crate::playbook::Playbook;
use crate::state::{EventKind, Liveness, RunState, StepStatus};
use serde_json::Value;
use std::path::Path;

/// Run ids name folders (`runs/<id>/`, and `runs/.creating-<id>-<pid>/` while created):
/// well under the 255 bytes of a file name, with room to spare.
pub const MAX_RUN_ID: usize = 128;

/// Refuses a run id that is too long, before anything is created or run.
pub fn check_run_id(given: Option<&str>, generated: &str, playbook: &str) -> Result<(), String> {
    match given {
        Some(id) if id.len() > MAX_RUN_ID => {
            Err(format!("--run-id is {} characters long; a run id has at most {MAX_RUN_ID}", id.len()))
        }
        None if generated.len() > MAX_RUN_ID => Err(format!(
            "the run id made from playbook name `{playbook}` would be {} characters long (at most {MAX_RUN_ID}); give a shorter one with --run-id",
            generated.len()
        )),
        _ => Ok(()),
    }
}

/// Whether a run's playbook must be taken from the copy saved with it: its source is not a
/// regular file (`/dev/stdin`, a pipe, a FIFO), so reading it again gives something else or
/// nothing, never the playbook that ran.
pub fn source_is_not_a_file(file: &Path) -> bool {
    std::fs::metadata(file).is_ok_and(|m| !m.is_file())
}

/// `input_changed` events for stored inputs that `resume -i` gives another value. Both sides
/// are the stored forms (secrets masked), so no secret enters the journal; a masked one was
/// never stored and is not a change.
pub fn input_changes(before: &Value, after: &Value, given: &[String], by: &str) -> Vec<EventKind> {
    let mask = crate::template::redact::MASK;
    given
        .iter()
        .filter_map(|name| {
            let (from, to) = (before.get(name)?, after.get(name)?);
            let masked = |v: &Value| v.to_string().contains(mask);
            (from != to && !masked(from) && !masked(to)).then(|| EventKind::InputChanged {
                input: name.clone(),
                from: from.clone(),
                to: to.clone(),
                by: by.to_owned(),
            })
        })
        .collect()
}

/// Interrupted steps (of `ids`) whose process group still runs on this host.
pub fn still_running(pb: &Playbook, state: &RunState) -> Vec<(String, i32)> {
    pb.steps
        .iter()
        .filter_map(|s| {
            let st = state.steps.get(&s.id)?;
            let p = st.process.as_ref()?;
            (matches!(st.status, StepStatus::Interrupted | StepStatus::Running) && p.liveness() == Liveness::Alive)
                .then(|| (s.id.clone(), p.pgid))
        })
        .collect()
}
