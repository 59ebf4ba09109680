//! One attempt of a step: started (on disk first when it changes the world), its result
//! judged against `retry.until`, retried with backoff or finished, dependents released.

use super::{Dispatcher, TaskResult};
use crate::playbook::format_duration;
use crate::state::{EventKind, StateError, StepStatus};
use crate::steps::{Outputs, StepContext, StepError};
use crate::template;
use serde_json::Value;
use std::time::Duration;
use tokio::task::JoinSet;

impl Dispatcher<'_> {
    pub(super) fn start_attempt(
        &mut self,
        i: usize,
        delay: Duration,
        tasks: &mut JoinSet<TaskResult>,
    ) -> Result<(), StateError> {
        self.attempts[i] += 1;
        self.status[i] = StepStatus::Running;
        let step = &self.pb.steps[i];
        let attempt = self.attempts[i];
        // The crash rule: a step that changes the world is on disk as started before it starts.
        self.emit(EventKind::StepStarted { step: step.id.clone(), attempt }, !step.idempotent)?;
        let step = &self.pb.steps[i];
        let kind = step.kind;
        let timeout = step.timeout;
        let params = self.rendered[i].clone().unwrap_or(Value::Null);
        let sctx = self.step_context(i, attempt);
        let handle = tasks.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let fut = kind.run(&sctx, params);
            let result = match timeout {
                Some(t) => match tokio::time::timeout(t, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(StepError::failed(format!("timed out after {}", format_duration(t)))
                        .with_hint("raise the step's `timeout` if it legitimately takes longer")),
                },
                None => fut.await,
            };
            (i, result)
        });
        self.task_step.insert(handle.id(), i);
        Ok(())
    }

    pub(super) fn step_context(&self, i: usize, attempt: u32) -> StepContext {
        StepContext {
            run_id: self.run_id.clone(),
            step_id: self.pb.steps[i].id.clone(),
            attempt,
            http: self.http.clone(),
            gate: self.opts.gate.clone(),
            work_dir: self.opts.work_dir.clone(),
        }
    }

    pub(super) fn handle(
        &mut self,
        i: usize,
        result: Result<Outputs, StepError>,
        tasks: &mut JoinSet<TaskResult>,
    ) -> Result<(), StateError> {
        if self.opts.dry_run {
            return self.planned(i, result);
        }
        let step = &self.pb.steps[i];
        let max = step.retry.attempts;
        let attempt = self.attempts[i];
        match result {
            Ok(outputs) => {
                let Some(until) = step.retry.until.clone() else {
                    return self.finish(i, StepStatus::Succeeded, outputs, None, None, None);
                };
                match template::eval_bool(&until, &self.ctx.with_outputs(&outputs)) {
                    Ok(true) => self.finish(i, StepStatus::Succeeded, outputs, None, None, None),
                    Ok(false) if attempt < max => self.retry(i, format!("retry.until `{until}` is false"), tasks),
                    Ok(false) => self.finish(
                        i,
                        StepStatus::Failed,
                        outputs,
                        Some(format!("retry.until `{until}` still false after {attempt} attempt(s)")),
                        None,
                        None,
                    ),
                    Err(e) => self.finish(
                        i,
                        StepStatus::Failed,
                        outputs,
                        Some(format!("retry.until failed: {e}")),
                        None,
                        None,
                    ),
                }
            }
            Err(StepError::NeedsApproval { message }) => {
                self.status[i] = StepStatus::Waiting;
                let step = step.id.clone();
                self.emit(EventKind::StepWaiting { step, message }, true)
            }
            Err(StepError::Failed { message, hint, outputs }) => {
                if attempt < max {
                    self.retry(i, message, tasks)
                } else {
                    self.finish(i, StepStatus::Failed, outputs.unwrap_or(Value::Null), Some(message), hint, None)
                }
            }
        }
    }

    pub(super) fn retry(&mut self, i: usize, error: String, tasks: &mut JoinSet<TaskResult>) -> Result<(), StateError> {
        let delay = self.pb.steps[i].retry.delay_before(self.attempts[i] + 1);
        let step = self.pb.steps[i].id.clone();
        let attempt = self.attempts[i];
        self.emit(EventKind::StepRetrying { step, attempt, error, delay_ms: delay.as_millis() as u64 }, false)?;
        self.start_attempt(i, delay, tasks)
    }

    pub(super) fn finish(
        &mut self,
        i: usize,
        status: StepStatus,
        outputs: Value,
        error: Option<String>,
        hint: Option<String>,
        reason: Option<String>,
    ) -> Result<(), StateError> {
        let step = &self.pb.steps[i];
        self.status[i] = status;
        if status == StepStatus::Failed && !step.continue_on_error {
            self.run_failed = true;
        }
        let view = self.outputs_view(&step.id, &outputs);
        self.ctx.steps.set(&step.id, status.as_str(), view);
        self.ctx.steps.set_note(&step.id, reason.clone().filter(|_| status == StepStatus::Skipped));
        let skipped_by = if status == StepStatus::Skipped { self.skipped_by[i] } else { None };
        let durable = !step.idempotent && !self.opts.dry_run;
        // A failure the run goes on after is still news: the journal and the report list it.
        let warning = (status == StepStatus::Failed && step.continue_on_error).then(|| {
            format!("step `{}` failed and the run went on: {}", step.id, error.as_deref().unwrap_or("no message"))
        });
        let ev = EventKind::StepFinished {
            step: step.id.clone(),
            status,
            attempts: self.attempts[i],
            outputs,
            error,
            hint,
            reason,
            skipped_by,
        };
        self.emit(ev, durable)?;
        if let Some(message) = warning {
            self.emit(EventKind::Warning { message }, durable)?;
        }
        self.resolve(i);
        Ok(())
    }

    pub(super) fn resolve(&mut self, i: usize) {
        self.tainted[i] = self.taints(i);
        for &d in self.pb.dag.dependents(i) {
            self.remaining[d] -= 1;
            if self.remaining[d] == 0 && self.status[d] == StepStatus::Pending {
                self.ready.push_back(d);
            }
        }
    }
}
