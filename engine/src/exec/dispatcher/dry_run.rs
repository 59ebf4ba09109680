//! Dry runs: outputs are placeholders, and a step is planned instead of attempted. The
//! dispatcher asks here wherever a dry run differs; `when` and `with` that cannot be
//! evaluated yet are warnings there, next to the real path.

use super::{Dispatcher, TaskResult};
use crate::state::{EventKind, StateError, StepStatus};
use crate::steps::{Outputs, StepError};
use crate::template::Placeholder;
use minijinja::Value as JValue;
use serde_json::Value;
use std::time::Duration;
use tokio::task::JoinSet;

/// Where a dry run's plan travels from its task back to the dispatcher.
const DRY_PLAN: &str = "plan";

impl Dispatcher<'_> {
    /// What templates see as a step's outputs: placeholders in a dry run.
    pub(super) fn outputs_view(&self, id: &str, outputs: &Value) -> JValue {
        if self.opts.dry_run {
            Placeholder::value(format!("steps.{id}.outputs"))
        } else {
            JValue::from(minijinja::value::Serde(outputs))
        }
    }

    /// Starts the planning task of step `i` in place of an attempt.
    pub(super) fn start_plan(
        &mut self,
        i: usize,
        params: Value,
        tasks: &mut JoinSet<TaskResult>,
    ) -> Result<(), StateError> {
        let step = &self.pb.steps[i];
        // The plan, made more precise by the step's read-only look-ups where it has
        // any (and credentials are at hand); it comes back through `handle`.
        let id = step.id.clone();
        let kind = step.kind;
        let fallback = kind.plan(&params);
        self.attempts[i] = 1;
        self.status[i] = StepStatus::Running;
        self.emit(EventKind::StepStarted { step: id, attempt: 1 }, false)?;
        let sctx = self.step_context(i, 1);
        let handle = tasks.spawn(async move {
            let look = tokio::time::timeout(Duration::from_secs(15), kind.preview(&sctx, params)).await;
            let plan = look.ok().flatten().unwrap_or(fallback);
            (i, Ok(serde_json::json!({ DRY_PLAN: plan })))
        });
        self.task_step.insert(handle.id(), i);
        Ok(())
    }

    /// A planning task is back: the plan is reported and the step counts as done.
    pub(super) fn planned(&mut self, i: usize, result: Result<Outputs, StepError>) -> Result<(), StateError> {
        let plan =
            result.ok().and_then(|o| o.get(DRY_PLAN).and_then(Value::as_str).map(str::to_owned)).unwrap_or_default();
        let step = self.pb.steps[i].id.clone();
        self.emit(EventKind::StepPlanned { step, plan }, false)?;
        self.finish(i, StepStatus::Succeeded, Value::Null, None, None, Some("dry run".into()))
    }
}
