//! What happens before the first step: inputs and vars rendered, secrets known, run id.

use crate::graph::Dag;
use crate::playbook::{Playbook, Trigger};
use crate::state::{RunState, StepStatus};
use crate::template::{self, Context, Redactor};
use indexmap::IndexMap;
use minijinja::Value as JValue;
use serde_json::Value;

pub struct Prepared {
    pub context: Context,
    /// Also installed as the process's redactor (`template::redact::global`).
    pub redactor: std::sync::Arc<Redactor>,
    /// Inputs as stored: secret ones replaced by `***`, any secret inside others masked.
    pub stored_inputs: Value,
    pub warnings: Vec<String>,
    /// Events journaled right after the session's first one (`input_changed` on resume).
    pub events: Vec<crate::state::EventKind>,
}

/// Builds the template context of a run. `dry` renders what it can and leaves placeholders.
pub fn prepare_context(
    pb: &Playbook,
    inputs: &IndexMap<String, Value>,
    run_id: &str,
    started_at: &str,
    dry: bool,
) -> Result<Prepared, String> {
    let mut redactor = Redactor::new();
    let mut warnings = Vec::new();
    let mut stored = serde_json::Map::new();
    for (name, v) in inputs {
        let secret = pb.inputs.get(name).is_some_and(|i| i.secret);
        if secret {
            let empty = v.is_null() || v.as_str().is_some_and(str::is_empty);
            if !empty && !redactor.add_value(v) {
                warnings.push(format!("secret input `{name}` (or a part of it) is too short to be redacted reliably"));
            }
            stored.insert(name.clone(), Value::String(template::redact::MASK.into()));
        } else {
            stored.insert(name.clone(), v.clone());
        }
    }
    for name in &pb.secrets {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => {
                if !redactor.add(&v) {
                    warnings.push(format!("secret ${name} is too short to be redacted reliably"));
                }
            }
            _ => warnings
                .push(format!("secret ${name} is not set{}", if dry { " (a real run would need it)" } else { "" })),
        }
    }
    // A plain input that holds a secret's value (a token passed with `-i` instead of
    // through its env var) is masked like any other record.
    let mut stored = Value::Object(stored);
    redactor.redact_value(&mut stored);
    let redactor = std::sync::Arc::new(redactor);
    template::redact::install(redactor.clone());
    let run = minijinja::context! { id => run_id, started_at => started_at, playbook => pb.name.as_str() };
    let base = Context::new(JValue::from(minijinja::value::Serde(inputs)), JValue::from(()), run, dry);
    let mut vars = serde_json::Map::new();
    let so_far = std::sync::Arc::new(template::VarsSoFar::default());
    let rendering = base.with_vars(JValue::from_dyn_object(so_far.clone()));
    for (name, raw) in &pb.vars {
        let v = match template::render_value(raw, rendering.value(), &format!("vars.{name}")) {
            Ok(v) => v,
            Err(e) if dry => {
                warnings.push(format!("var `{name}` cannot be rendered yet: {}", redactor.redact(&e.message)));
                Value::String(format!("<vars.{name}>"))
            }
            Err(e) => return Err(format!("cannot render {}", redactor.redact(&e.message))),
        };
        so_far.push(name, &v);
        vars.insert(name.clone(), v);
    }
    let ctx = base.with_vars(JValue::from(minijinja::value::Serde(&vars)));
    Ok(Prepared { context: ctx, redactor, stored_inputs: stored, warnings, events: Vec::new() })
}

/// A run id people can read and sort: `20261127-101502-s1-full-outage-3f9a`.
pub fn new_run_id(playbook: &str) -> String {
    let now = jiff::Timestamp::now();
    let nanos = now.subsec_nanosecond() as u32;
    let salt = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) & 0xffff;
    format!("{}-{}-{:04x}", now.strftime("%Y%m%d-%H%M%S"), playbook, salt)
}

/// The steps a resume runs again: failed, pending, waiting and interrupted ones (the
/// latter only if allowed), `--from` and everything downstream of it, and every step
/// downstream of a re-run step that did not succeed (it was skipped or not started
/// because of what is now being re-run). A `failure`/`always` handler downstream of a
/// re-run step is re-run too, even when it succeeded: its condition is decided anew.
pub fn resume_reset(
    pb: &Playbook,
    dag: &Dag,
    state: &RunState,
    from: Option<usize>,
    rerun_interrupted: bool,
) -> Vec<usize> {
    let status = |i: usize| state.steps.get(&pb.steps[i].id).map_or(StepStatus::Pending, |s| s.status);
    let mut roots: Vec<usize> = (0..pb.steps.len())
        .filter(|&i| match status(i) {
            StepStatus::Failed | StepStatus::Pending | StepStatus::Waiting | StepStatus::Running => true,
            StepStatus::Interrupted => rerun_interrupted || pb.steps[i].idempotent,
            StepStatus::Succeeded | StepStatus::Skipped => false,
        })
        .collect();
    let forced = from.map(|f| dag.downstream([f])).unwrap_or_else(|| vec![false; pb.steps.len()]);
    roots.extend((0..pb.steps.len()).filter(|&i| forced[i]));
    // A failure or always handler that ran because of a step now re-run must be decided
    // again once that step ends: kept as succeeded, it would let its success path start
    // while the restore is still being retried, and it would not page if the retry fails.
    let down = dag.downstream(roots.iter().copied());
    roots.extend(
        (0..pb.steps.len())
            .filter(|&i| down[i] && pb.steps[i].trigger != Trigger::Success && status(i) == StepStatus::Succeeded),
    );
    let down = dag.downstream(roots.iter().copied());
    (0..pb.steps.len())
        .filter(|&i| forced[i] || (down[i] && (status(i) != StepStatus::Succeeded || roots.contains(&i))))
        .filter(|&i| status(i) != StepStatus::Interrupted || rerun_interrupted || pb.steps[i].idempotent || forced[i])
        .collect()
}
