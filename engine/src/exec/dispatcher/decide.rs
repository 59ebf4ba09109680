//! Whether a ready step starts: its trigger against its needs' results (and, for a
//! failure handler, every ancestor's), the omitted success path, and a run that already failed.

use super::Dispatcher;
use crate::playbook::Trigger;
use crate::state::{SkipCause, StepStatus};

pub(super) enum Decision {
    Start,
    /// The trigger is not met: skipped, and `trigger: success` dependents with it.
    Skip(String),
    /// Not started because the run already failed; stays pending (resume runs it).
    Cancel(String),
}

impl Dispatcher<'_> {
    pub(super) fn decide(&self, i: usize) -> Decision {
        let step = &self.pb.steps[i];
        let needs = self.pb.dag.needs(i);
        let failed_hard = |j: usize| self.status[j] == StepStatus::Failed && !self.pb.steps[j].continue_on_error;
        let omitted =
            |j: usize| self.status[j] == StepStatus::Skipped && self.skipped_by[j] == Some(SkipCause::Trigger);
        let ok = |j: usize| {
            matches!(self.status[j], StepStatus::Succeeded | StepStatus::Skipped)
                || (self.status[j] == StepStatus::Failed && self.pb.steps[j].continue_on_error)
        };
        let names = |f: &dyn Fn(usize) -> bool| -> String {
            needs.iter().copied().filter(|&j| f(j)).map(|j| self.pb.steps[j].id.as_str()).collect::<Vec<_>>().join(", ")
        };
        let failed = names(&failed_hard);
        let cancelled = names(&|j| self.cancelled[j]);
        match step.trigger {
            Trigger::Success => {
                if !failed.is_empty() {
                    return Decision::Skip(format!("trigger not met: {failed} failed"));
                }
                // Argo's "omitted": the success path behind a step that was not triggered
                // (a failure handler that did not fire, a step after a failure) does not run.
                let omitted = names(&omitted);
                if !omitted.is_empty() {
                    return Decision::Skip(format!("trigger not met: {omitted} skipped (trigger not met)"));
                }
                if !cancelled.is_empty() || !needs.iter().all(|&j| ok(j)) {
                    return Decision::Cancel(format!("not started: {cancelled} did not run"));
                }
                if self.run_failed {
                    return Decision::Cancel("not started: the run had already failed".into());
                }
            }
            // As GitHub Actions' `failure()`: any ancestor, not only a direct need, so a
            // paging step after the verify steps fires when the restore before them failed.
            Trigger::Failure => {
                if !needs.iter().any(|&j| self.tainted[j]) {
                    if !cancelled.is_empty() {
                        return Decision::Cancel(format!("not started: {cancelled} did not run"));
                    }
                    return Decision::Skip("trigger not met: no ancestor failed".into());
                }
            }
            Trigger::Always => {}
        }
        Decision::Start
    }
}
