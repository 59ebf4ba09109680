//! The state of a run as the fold of its events.

use super::event::{Event, EventKind, RunStatus, SkipCause, StepStatus};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepState {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: StepStatus,
    pub attempts: u32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    #[serde(default)]
    pub outputs: Value,
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Set when `status` is `skipped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_by: Option<SkipCause>,
    /// What to do about the error, as the step said it (already redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The process group of the step's last attempt, if it ran programs in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<StepProcess>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepProcess {
    pub pgid: i32,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_start: Option<u64>,
}

/// Whether a recorded process group still runs, as seen from this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Gone,
    /// Recorded on another host: this one cannot tell.
    Elsewhere,
}

impl StepProcess {
    pub fn liveness(&self) -> Liveness {
        if self.host != super::file::hostname() {
            return Liveness::Elsewhere;
        }
        // SAFETY: kill(2) with signal 0 only asks whether the group exists.
        if unsafe { libc::kill(-self.pgid, 0) } != 0 || !group_has_a_live_member(self.pgid) {
            return Liveness::Gone;
        }
        // The leader still there but started at another time: the id was reused.
        match (self.leader_start, leader_start(self.pgid)) {
            (Some(recorded), Some(now)) if recorded != now => Liveness::Gone,
            _ => Liveness::Alive,
        }
    }
}

/// Whether a process of group `pgid` is alive and not a zombie: killed processes whose
/// parent died stay zombies until someone reaps them, and are in the group until then.
/// Where /proc cannot be read, kill(2) said the group exists: taken as alive.
fn group_has_a_live_member(pgid: i32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else { return true };
    procs.flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { return false };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
        let Some((_, rest)) = stat.rsplit_once(')') else { return false };
        let mut f = rest.split_whitespace();
        // After `(comm)`: state, ppid, pgrp.
        let (state, pgrp) = (f.next(), f.nth(1));
        state != Some("Z") && pgrp.and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
    })
}

/// The start time of process `pid` (field 22 of /proc/PID/stat, after the `(comm)` field).
pub fn leader_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub run_id: String,
    pub playbook: String,
    pub file: String,
    pub sha256: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub inputs: Value,
    pub steps: IndexMap<String, StepState>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Each resume: when and by whom.
    #[serde(default)]
    pub resumes: Vec<(String, String)>,
    /// Every approval given, in order (step, by, at): an approval step decided again on a
    /// resume keeps its earlier decisions here for the audit trail.
    #[serde(default)]
    pub approvals: Vec<(String, Value, Value)>,
    /// The last event folded in.
    pub seq: u64,
}

impl RunState {
    pub fn new(ev: &Event) -> Option<RunState> {
        let EventKind::RunStarted { playbook, file, sha256, steps, inputs, .. } = &ev.kind else { return None };
        let mut s = RunState {
            run_id: ev.run_id.clone(),
            playbook: playbook.clone(),
            file: file.clone(),
            sha256: sha256.clone(),
            status: RunStatus::Running,
            started_at: ev.at.clone(),
            finished_at: None,
            inputs: inputs.clone(),
            steps: IndexMap::new(),
            warnings: Vec::new(),
            resumes: Vec::new(),
            approvals: Vec::new(),
            seq: ev.seq,
        };
        s.set_steps(steps);
        Some(s)
    }

    fn set_steps(&mut self, steps: &[(String, String)]) {
        let mut next = IndexMap::with_capacity(steps.len());
        for (id, kind) in steps {
            let st = self.steps.swap_remove(id).unwrap_or(StepState {
                kind: kind.clone(),
                status: StepStatus::Pending,
                attempts: 0,
                started_at: None,
                finished_at: None,
                outputs: Value::Null,
                error: None,
                reason: None,
                skipped_by: None,
                hint: None,
                process: None,
            });
            next.insert(id.clone(), st);
        }
        self.steps = next;
    }

    pub fn apply(&mut self, ev: &Event) {
        self.seq = ev.seq;
        match &ev.kind {
            EventKind::RunStarted { .. } => {}
            EventKind::RunResumed { reset, steps, sha256, by } => {
                self.resumes.push((ev.at.clone(), by.clone()));
                self.status = RunStatus::Running;
                self.finished_at = None;
                self.sha256 = sha256.clone();
                self.set_steps(steps);
                for id in reset {
                    if let Some(s) = self.steps.get_mut(id) {
                        s.status = StepStatus::Pending;
                        s.error = None;
                        s.reason = None;
                        s.skipped_by = None;
                        s.hint = None;
                        s.attempts = 0;
                        // Its times are those of the coming attempt, not of the last session's.
                        s.started_at = None;
                        s.finished_at = None;
                    }
                }
            }
            EventKind::StepStarted { step, attempt } => {
                if let Some(s) = self.steps.get_mut(step) {
                    s.status = StepStatus::Running;
                    s.attempts = *attempt;
                    s.process = None;
                    if *attempt == 1 || s.started_at.is_none() {
                        s.started_at = Some(ev.at.clone());
                    }
                    s.finished_at = None;
                }
            }
            EventKind::StepProcess { step, pgid, host, leader_start } => {
                if let Some(s) = self.steps.get_mut(step) {
                    s.process = Some(StepProcess { pgid: *pgid, host: host.clone(), leader_start: *leader_start });
                }
            }
            EventKind::InputChanged { input, from, to, by } => {
                if let Some(m) = self.inputs.as_object_mut() {
                    m.insert(input.clone(), to.clone());
                }
                self.warnings.push(format!("input `{input}` changed on resume by {by}: {from} → {to}"));
            }
            EventKind::StepRetrying { step, error, .. } => {
                if let Some(s) = self.steps.get_mut(step) {
                    s.error = Some(error.clone());
                }
            }
            EventKind::StepPlanned { .. } => {}
            EventKind::StepFinished { step, status, attempts, outputs, error, reason, skipped_by, hint, .. } => {
                if let Some(s) = self.steps.get_mut(step) {
                    s.status = *status;
                    s.attempts = *attempts;
                    s.outputs = outputs.clone();
                    s.error = error.clone();
                    s.reason = reason.clone();
                    s.skipped_by = match status {
                        StepStatus::Skipped => Some(skipped_by.unwrap_or_else(|| SkipCause::infer(reason.as_deref()))),
                        _ => None,
                    };
                    s.hint = hint.clone();
                    s.finished_at = Some(ev.at.clone());
                    if s.kind == "approval"
                        && *status == StepStatus::Succeeded
                        && let Some(by) = outputs.get("approved_by")
                    {
                        let at = outputs.get("approved_at").cloned().unwrap_or(Value::Null);
                        self.approvals.push((step.clone(), by.clone(), at));
                    }
                }
            }
            EventKind::StepWaiting { step, .. } => {
                if let Some(s) = self.steps.get_mut(step) {
                    s.status = StepStatus::Waiting;
                }
            }
            EventKind::StepInterrupted { step } => {
                if let Some(s) = self.steps.get_mut(step) {
                    s.status = StepStatus::Interrupted;
                    s.finished_at = Some(ev.at.clone());
                }
            }
            EventKind::Warning { message } => self.warnings.push(message.clone()),
            EventKind::RunFinished { status, .. } => {
                self.status = *status;
                self.finished_at = Some(ev.at.clone());
            }
        }
    }

    /// A run whose process died: running steps become interrupted, the run too.
    pub fn mark_dead(&mut self) {
        if self.status == RunStatus::Running {
            self.status = RunStatus::Interrupted;
        }
        for s in self.steps.values_mut() {
            if s.status == StepStatus::Running {
                s.status = StepStatus::Interrupted;
            }
        }
    }
}
