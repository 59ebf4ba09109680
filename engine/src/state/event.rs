//! The events of a run: the journal's lines and the `--output json` stream.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Waiting,
    Interrupted,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Waiting => "waiting",
            StepStatus::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Waiting for an approval or a decision about an interrupted step; resumable.
    Paused,
    /// Stopped by Ctrl-C, or found dead (a crash); resumable.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Paused => "paused",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// Why a step ended `skipped`. The two differ for what comes after: a step skipped by its
/// `when` counts as done (a join after two exclusive branches still runs); one whose
/// trigger was not met takes its `trigger: success` dependents with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipCause {
    /// Its `when` was false.
    When,
    /// Its trigger was not met (a need failed, or was itself skipped for this reason; or,
    /// for `trigger: failure`, no ancestor failed).
    Trigger,
}

impl SkipCause {
    /// What a journal written before this field existed meant: only `when` skips said "when".
    pub fn infer(reason: Option<&str>) -> SkipCause {
        match reason {
            Some(r) if r.starts_with("when") => SkipCause::When,
            _ => SkipCause::Trigger,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SkipCause::When => "when",
            SkipCause::Trigger => "trigger",
        }
    }
}

/// One line of the journal, one JSON event on stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: String,
    pub run_id: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted {
        playbook: String,
        file: String,
        sha256: String,
        /// Step ids and types, in file order.
        steps: Vec<(String, String)>,
        inputs: Value,
        #[serde(default)]
        dry_run: bool,
    },
    RunResumed {
        by: String,
        /// Steps reset to pending for this resume.
        reset: Vec<String>,
        steps: Vec<(String, String)>,
        sha256: String,
    },
    StepStarted {
        step: String,
        attempt: u32,
    },
    /// A step's programs run in this process group (on `host`); written once the step has
    /// started them, so a resume after a crash can tell whether they still run.
    StepProcess {
        step: String,
        pgid: i32,
        host: String,
        /// The group leader's start time (clock ticks since boot, /proc/PID/stat field 22):
        /// a group id reused by another program later does not pass for the step's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader_start: Option<u64>,
    },
    StepRetrying {
        step: String,
        attempt: u32,
        error: String,
        delay_ms: u64,
    },
    /// Dry run only: what the step would do.
    StepPlanned {
        step: String,
        plan: String,
    },
    StepFinished {
        step: String,
        status: StepStatus,
        attempts: u32,
        #[serde(default, skip_serializing_if = "Value::is_null")]
        outputs: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
        /// Why a step was skipped or not started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// For a skipped step: by its `when`, or because its trigger was not met.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skipped_by: Option<SkipCause>,
    },
    StepWaiting {
        step: String,
        message: String,
    },
    StepInterrupted {
        step: String,
    },
    Warning {
        message: String,
    },
    /// `resume -i NAME=VALUE` gave a stored (non-secret) input another value.
    InputChanged {
        input: String,
        from: Value,
        to: Value,
        by: String,
    },
    RunFinished {
        status: RunStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}
