//! The dispatcher: readiness, triggers, `when`, retries, timeouts, approvals, Ctrl-C. One
//! attempt of a step (start, result, retry, finish) is in `attempt`; where a dry run differs
//! (placeholders, a plan instead of an attempt), the dispatcher asks `dry_run`.

mod attempt;
mod decide;
mod dry_run;

use super::RunError;
use super::prepare::Prepared;
use crate::playbook::{Playbook, When, format_duration};
use crate::state::{Event, EventKind, EventLog, RunState, RunStatus, SkipCause, StateError, StepStatus};
use crate::steps::{ApprovalGate, Outputs, StepError};
use crate::template::{self, Context, Redactor};
use decide::Decision;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

pub struct ExecOptions {
    pub max_parallel: usize,
    pub dry_run: bool,
    pub gate: Arc<dyn ApprovalGate>,
    pub work_dir: PathBuf,
}

/// Where events go besides the journal: the reporter.
pub trait Sink {
    fn event(&mut self, ev: &Event);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    Paused,
    Interrupted,
}

type TaskResult = (usize, Result<Outputs, StepError>);

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

struct Dispatcher<'a> {
    pb: &'a Playbook,
    run_id: String,
    ctx: Context,
    redactor: Arc<Redactor>,
    journal: Option<&'a mut dyn EventLog>,
    sink: &'a mut dyn Sink,
    opts: &'a ExecOptions,
    http: reqwest::Client,
    state: RunState,
    seq: u64,
    status: Vec<StepStatus>,
    attempts: Vec<u32>,
    remaining: Vec<usize>,
    cancelled: Vec<bool>,
    /// Why each skipped step was skipped.
    skipped_by: Vec<Option<SkipCause>>,
    /// The step failed (without `continue_on_error`) or one of its ancestors did: what a
    /// `trigger: failure` dependent fires on. Set when the step is resolved.
    tainted: Vec<bool>,
    rendered: Vec<Option<Value>>,
    ready: VecDeque<usize>,
    run_failed: bool,
    /// Which step each running task belongs to (to attribute a panic).
    task_step: HashMap<tokio::task::Id, usize>,
}

/// Runs (or resumes) a playbook. `prior` is the state of the run being resumed, and
/// `first` its first event of this session (`run_started` or `run_resumed`).
#[allow(clippy::too_many_arguments)]
pub async fn run<'a>(
    pb: &'a Playbook,
    run_id: &str,
    prepared: Prepared,
    first: EventKind,
    prior: Option<RunState>,
    journal: Option<&'a mut dyn EventLog>,
    sink: &'a mut dyn Sink,
    opts: &'a ExecOptions,
) -> Result<(Outcome, RunState), RunError> {
    let n = pb.steps.len();
    let seq = prior.as_ref().map_or(0, |s| s.seq);
    let http = crate::steps::support::http_client().map_err(RunError::HttpClient)?;
    let placeholder_state = RunState {
        run_id: run_id.to_owned(),
        playbook: pb.name.clone(),
        file: pb.file.clone(),
        sha256: pb.sha256.clone(),
        status: RunStatus::Running,
        started_at: String::new(),
        finished_at: None,
        inputs: Value::Null,
        steps: Default::default(),
        warnings: Vec::new(),
        resumes: Vec::new(),
        approvals: Vec::new(),
        seq,
    };
    let mut d = Dispatcher {
        pb,
        run_id: run_id.to_owned(),
        ctx: prepared.context,
        redactor: prepared.redactor,
        journal,
        sink,
        opts,
        http,
        state: prior.unwrap_or(placeholder_state),
        seq,
        status: vec![StepStatus::Pending; n],
        attempts: vec![0; n],
        remaining: vec![0; n],
        cancelled: vec![false; n],
        skipped_by: vec![None; n],
        tainted: vec![false; n],
        rendered: vec![None; n],
        ready: VecDeque::new(),
        run_failed: false,
        task_step: HashMap::new(),
    };
    // Ctrl-C and SIGTERM are watched before the first event, so a run never starts unable
    // to checkpoint on them.
    let sigint = signal(SignalKind::interrupt()).map_err(|source| RunError::Signal { signal: "SIGINT", source })?;
    let sigterm = signal(SignalKind::terminate()).map_err(|source| RunError::Signal { signal: "SIGTERM", source })?;
    d.emit(first, true)?;
    for e in prepared.events {
        d.emit(e, false)?;
    }
    for w in prepared.warnings {
        d.emit(EventKind::Warning { message: w }, false)?;
    }
    d.init_from_state();
    Ok(d.main_loop(sigint, sigterm).await?)
}

impl<'a> Dispatcher<'a> {
    fn init_from_state(&mut self) {
        for (i, step) in self.pb.steps.iter().enumerate() {
            let mut outputs = &Value::Null;
            if let Some(s) = self.state.steps.get(&step.id) {
                self.status[i] = match s.status {
                    StepStatus::Running => StepStatus::Interrupted,
                    other => other,
                };
                if s.status == StepStatus::Skipped {
                    self.skipped_by[i] = Some(s.skipped_by.unwrap_or_else(|| SkipCause::infer(s.reason.as_deref())));
                    self.ctx.steps.set_note(&step.id, s.reason.clone());
                }
                if matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped) {
                    outputs = &s.outputs;
                }
            }
            // Every step is in `steps` from the start, with its status and (until it
            // succeeds) no outputs, so templates on the failure path can read it.
            self.ctx.steps.set(&step.id, self.status[i].as_str(), self.outputs_view(&step.id, outputs));
        }
        for &i in self.pb.dag.topo() {
            if self.is_resolved(i) {
                self.tainted[i] = self.taints(i);
            }
        }
        for i in 0..self.pb.steps.len() {
            self.remaining[i] = self.pb.dag.needs(i).iter().filter(|&&j| !self.is_resolved(j)).count();
        }
        for &i in self.pb.dag.topo() {
            if self.status[i] == StepStatus::Pending && self.remaining[i] == 0 {
                self.ready.push_back(i);
            }
        }
    }

    /// The step whose success ends the outage (`objectives.restored_by`).
    fn restored_by(&self) -> Option<usize> {
        self.pb.objectives.restored_by.as_deref().and_then(|id| self.pb.index.get(id).copied())
    }

    /// Whether step `i`, now resolved, failed or has a failed ancestor.
    fn taints(&self, i: usize) -> bool {
        (self.status[i] == StepStatus::Failed && !self.pb.steps[i].continue_on_error)
            || self.pb.dag.needs(i).iter().any(|&j| self.tainted[j])
    }

    fn is_resolved(&self, i: usize) -> bool {
        self.cancelled[i] || matches!(self.status[i], StepStatus::Succeeded | StepStatus::Failed | StepStatus::Skipped)
    }

    fn emit(&mut self, kind: EventKind, durable: bool) -> Result<(), StateError> {
        self.seq += 1;
        let ev = Event { seq: self.seq, at: jiff::Timestamp::now().to_string(), run_id: self.run_id.clone(), kind };
        // The whole event, every field, before the fold, the journal and the reporter see it.
        let ev = self.redactor.redact_record(ev);
        if let EventKind::RunStarted { .. } = ev.kind {
            if let Some(s) = RunState::new(&ev) {
                self.state = s;
            }
        } else {
            self.state.apply(&ev);
        }
        if let Some(j) = self.journal.as_deref_mut() {
            j.append(&ev)?;
            if durable {
                j.sync()?;
            }
        }
        self.sink.event(&ev);
        Ok(())
    }

    async fn main_loop(
        mut self,
        mut sigint: tokio::signal::unix::Signal,
        mut sigterm: tokio::signal::unix::Signal,
    ) -> Result<(Outcome, RunState), StateError> {
        let mut tasks: JoinSet<TaskResult> = JoinSet::new();
        let max = self.opts.max_parallel.max(1);
        let mut rto = self.rto_marks()?;
        // Each step's process group, journaled as it starts (none in a dry run: no journal).
        let mut groups = crate::exec::groups::watch();
        loop {
            while tasks.len() < max {
                let Some(i) = self.ready.pop_front() else { break };
                self.consider(i, &mut tasks)?;
            }
            if tasks.is_empty() {
                if self.ready.is_empty() {
                    break;
                }
                continue;
            }
            if let Some(j) = self.journal.as_deref_mut() {
                j.flush()?;
            }
            tokio::select! {
                Some((step, pgid, leader_start)) = groups.recv() => {
                    // Durable: after a kill -9 this is how resume finds what may still run.
                    let host = crate::state::file_hostname();
                    self.emit(EventKind::StepProcess { step, pgid, host, leader_start }, self.journal.is_some())?;
                }
                joined = tasks.join_next_with_id() => {
                    let Some(joined) = joined else { continue };
                    let (i, result) = match joined {
                        Ok((id, r)) => {
                            self.task_step.remove(&id);
                            r
                        }
                        // A step that panicked fails; the run and its state go on.
                        Err(e) => match self.task_step.remove(&e.id()) {
                            Some(i) => (i, Err(StepError::failed(format!("internal error in the step: {e}")))),
                            None => continue,
                        },
                    };
                    self.handle(i, result, &mut tasks)?;
                    // The outage is over once the restore step succeeded: what follows is
                    // follow-up time, not counted against the RTO.
                    if self.restored_by() == Some(i) && self.status[i] == StepStatus::Succeeded {
                        rto.clear();
                    }
                }
                _ = tokio::time::sleep_until(rto.first().map_or_else(far_future, |m| m.0)), if !rto.is_empty() => {
                    let (_, message) = rto.remove(0);
                    self.emit(EventKind::Warning { message }, false)?;
                }
                _ = sigint.recv() => return self.interrupted(tasks).await,
                _ = sigterm.recv() => return self.interrupted(tasks).await,
            }
        }
        self.finish_run()
    }

    /// When 50 % and 100 % of the playbook's RTO will have been used, counted from the
    /// run's first start (a resumed incident keeps its clock). A mark already passed when
    /// this session starts is said at once (the highest one only).
    fn rto_marks(&mut self) -> Result<Vec<(tokio::time::Instant, String)>, StateError> {
        let Some(rto) = self.pb.objectives.rto.map(|r| r.0).filter(|r| !r.is_zero()) else { return Ok(Vec::new()) };
        if self.opts.dry_run || self.restored_by().is_some_and(|i| self.status[i] == StepStatus::Succeeded) {
            return Ok(Vec::new());
        }
        let started: jiff::Timestamp = self.state.started_at.parse().unwrap_or_else(|_| jiff::Timestamp::now());
        let elapsed = Duration::try_from(jiff::Timestamp::now().duration_since(started)).unwrap_or_default();
        let now = tokio::time::Instant::now();
        let rto_text = format_duration(rto);
        let mut marks = Vec::new();
        let mut passed = None;
        for (pct, at) in [(50u32, rto / 2), (100, rto)] {
            let message = format!("{pct}% of the RTO ({rto_text}) used");
            if elapsed >= at {
                passed = Some(format!(
                    "{message}: {} since the run started",
                    format_duration(Duration::from_secs(elapsed.as_secs()))
                ));
            } else {
                marks.push((now + (at - elapsed), message));
            }
        }
        if let Some(message) = passed {
            self.emit(EventKind::Warning { message }, false)?;
        }
        Ok(marks)
    }

    async fn interrupted(mut self, mut tasks: JoinSet<TaskResult>) -> Result<(Outcome, RunState), StateError> {
        tasks.shutdown().await;
        let mut stopped = Vec::new();
        for i in 0..self.status.len() {
            if self.status[i] == StepStatus::Running {
                self.status[i] = StepStatus::Interrupted;
                let step = self.pb.steps[i].id.clone();
                if !self.pb.steps[i].idempotent {
                    stopped.push(step.clone());
                }
                self.emit(EventKind::StepInterrupted { step }, false)?;
            }
        }
        // We stopped these ourselves, so they are not running any more; but they may have
        // done part of their work, and resume asks for the flag that says "checked".
        let message = if stopped.is_empty() {
            format!("interrupted; continue with `runbook resume {}`", self.run_id)
        } else {
            format!(
                "interrupted; {} stopped mid-way and may have done part of the work: check, then continue with `runbook resume {} --rerun-interrupted`",
                stopped.join(", "),
                self.run_id
            )
        };
        self.emit(EventKind::RunFinished { status: RunStatus::Interrupted, message: Some(message) }, true)?;
        Ok((Outcome::Interrupted, self.state))
    }

    fn finish_run(mut self) -> Result<(Outcome, RunState), StateError> {
        let ids = |want: StepStatus, s: &Self| -> Vec<String> {
            (0..s.status.len()).filter(|&i| s.status[i] == want).map(|i| s.pb.steps[i].id.clone()).collect()
        };
        let waiting = ids(StepStatus::Waiting, &self);
        let interrupted = ids(StepStatus::Interrupted, &self);
        let (outcome, status, message) = if self.run_failed {
            let failed = ids(StepStatus::Failed, &self);
            (Outcome::Failed, RunStatus::Failed, Some(format!("failed steps: {}", failed.join(", "))))
        } else if !waiting.is_empty() {
            let approve: Vec<String> = waiting.iter().map(|w| format!("--approve {w}")).collect();
            let msg = format!(
                "waiting for approval: {}; continue with `runbook resume {} {}`",
                waiting.join(", "),
                self.run_id,
                approve.join(" ")
            );
            (Outcome::Paused, RunStatus::Paused, Some(msg))
        } else if !interrupted.is_empty() {
            let msg = format!(
                "interrupted steps not re-run: {}; continue with `runbook resume {} --rerun-interrupted`",
                interrupted.join(", "),
                self.run_id
            );
            (Outcome::Paused, RunStatus::Paused, Some(msg))
        } else {
            (Outcome::Succeeded, RunStatus::Succeeded, None)
        };
        self.emit(EventKind::RunFinished { status, message }, true)?;
        Ok((outcome, self.state))
    }

    fn consider(&mut self, i: usize, tasks: &mut JoinSet<TaskResult>) -> Result<(), StateError> {
        match self.decide(i) {
            Decision::Skip(reason) => {
                self.skipped_by[i] = Some(SkipCause::Trigger);
                return self.finish(i, StepStatus::Skipped, Value::Null, None, None, Some(reason));
            }
            Decision::Cancel(reason) => {
                self.cancelled[i] = true;
                let step = self.pb.steps[i].id.clone();
                self.emit(
                    EventKind::StepFinished {
                        step,
                        status: StepStatus::Pending,
                        attempts: 0,
                        outputs: Value::Null,
                        error: None,
                        hint: None,
                        reason: Some(reason.clone()),
                        skipped_by: None,
                    },
                    false,
                )?;
                self.ctx.steps.set_note(&self.pb.steps[i].id, Some(reason));
                self.resolve(i);
                return Ok(());
            }
            Decision::Start => {}
        }
        let step = &self.pb.steps[i];
        match &step.when {
            Some(When::Const(false)) => {
                self.skipped_by[i] = Some(SkipCause::When);
                return self.finish(i, StepStatus::Skipped, Value::Null, None, None, Some("when: false".into()));
            }
            Some(When::Expr(expr)) => {
                let reads_steps = self.opts.dry_run
                    && template::expression_references(expr).is_ok_and(|r| r.iter().any(|x| x.starts_with("steps")));
                if !reads_steps {
                    match template::eval_bool(expr, self.ctx.value()) {
                        Ok(true) => {}
                        Ok(false) => {
                            self.skipped_by[i] = Some(SkipCause::When);
                            return self.finish(
                                i,
                                StepStatus::Skipped,
                                Value::Null,
                                None,
                                None,
                                Some(format!("when `{expr}` is false")),
                            );
                        }
                        Err(e) if self.opts.dry_run => {
                            let message = format!("step `{}`: `when` cannot be evaluated yet: {e}", step.id);
                            self.emit(EventKind::Warning { message }, false)?;
                        }
                        Err(e) => {
                            return self.finish(
                                i,
                                StepStatus::Failed,
                                Value::Null,
                                Some(format!("`when` failed: {e}")),
                                None,
                                None,
                            );
                        }
                    }
                }
            }
            _ => {}
        }
        let params = match template::render_value(&step.params, self.ctx.value(), "with") {
            Ok(p) => p,
            Err(e) if self.opts.dry_run => {
                let message = format!("step `{}`: {e} (shown unrendered)", step.id);
                self.emit(EventKind::Warning { message }, false)?;
                step.params.clone()
            }
            Err(e) => {
                return self.finish(i, StepStatus::Failed, Value::Null, Some(format!("cannot render {e}")), None, None);
            }
        };
        if self.opts.dry_run {
            return self.start_plan(i, params, tasks);
        }
        self.rendered[i] = Some(params);
        self.start_attempt(i, Duration::ZERO, tasks)
    }
}
