//! The `runbook/v1` format as serde sees it: every key known, nothing ignored.
//!
//! These types are the source of the JSON Schema (`runbook schema`). Steps are
//! deserialized one by one from their YAML nodes so that a mistake in one step does not
//! hide the mistakes in the others.

use super::duration::Dur;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A runbook playbook: a DAG of typed steps that carries out a recovery procedure.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "runbook playbook (runbook/v1)")]
pub struct RawPlaybook {
    /// Always `runbook/v1`.
    #[serde(rename = "apiVersion")]
    #[schemars(extend("const" = "runbook/v1"))]
    pub api_version: String,
    /// Lowercase letters, digits and dashes.
    #[schemars(regex(pattern = r"^[a-z0-9-]+$"))]
    pub name: String,
    /// What the playbook is for and when to use it, for the people who will run it.
    #[serde(default)]
    pub description: Option<String>,
    /// `S1`..`S4`, free text allowed after it (`S1 full outage`).
    #[serde(default)]
    #[schemars(regex(pattern = r"^S[1-4]\b"))]
    pub severity: Option<String>,
    /// The recovery objectives (RTO, RPO) the run and its report are measured against.
    #[serde(default)]
    pub objectives: Option<RawObjectives>,
    /// Values given at run time (`-i name=value` or `RUNBOOK_INPUT_NAME`), by name.
    #[serde(default)]
    pub inputs: IndexMap<String, RawInput>,
    /// Rendered once, in order, at run start; may use inputs, env, run and earlier vars.
    #[serde(default)]
    pub vars: IndexMap<String, Value>,
    /// Names of environment variables whose values are redacted everywhere.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// What is left to people once the run is over (checks with users, the post-mortem):
    /// `runbook report` ends with them as a checklist, in this order, whatever happened.
    #[serde(default)]
    #[schemars(extend("uniqueItems" = true))]
    pub follow_ups: Vec<String>,
    /// The steps, at least one. They run as a DAG: each starts once its `needs` have
    /// finished, independent ones in parallel.
    #[schemars(with = "Vec<RawStep>", length(min = 1))]
    pub steps: Vec<Value>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawObjectives {
    /// Recovery time objective.
    #[serde(default)]
    pub rto: Option<Dur>,
    /// Recovery point objective: a duration, or text such as `point-in-time`.
    #[serde(default)]
    pub rpo: Option<RpoValue>,
    /// The step whose success ends the outage: the RTO is measured from the run's start to
    /// it; the rest of the run (audits, notes) is follow-up time, reported separately.
    /// Without it, the RTO is measured to the end of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub restored_by: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, PartialEq)]
#[serde(untagged)]
pub enum RpoValue {
    Duration(Dur),
    Text(String),
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Int,
    Float,
    Bool,
    List,
    Map,
    Timestamp,
    Duration,
}

impl InputType {
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Int => "int",
            InputType::Float => "float",
            InputType::Bool => "bool",
            InputType::List => "list",
            InputType::Map => "map",
            InputType::Timestamp => "timestamp",
            InputType::Duration => "duration",
        }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    /// How the value given with `-i` is parsed and checked (default `string`).
    #[serde(rename = "type", default = "default_input_type")]
    pub kind: InputType,
    /// A run refuses to start without it (unless it has a default).
    #[serde(default)]
    pub required: bool,
    /// The value when none is given; must fit `type` and `enum`. Not allowed on a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("description" = "The value when none is given; must fit `type` and `enum`. Not allowed on a secret."))]
    pub default: Option<Value>,
    /// Never stored, redacted in every output; `resume` asks for it again.
    #[serde(default)]
    pub secret: bool,
    /// Shown in errors about the input, for whoever runs the playbook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The allowed values.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
}

impl RawInput {
    /// Stands for a declaration that did not check out, so that templates using the input
    /// do not also report it as undeclared.
    pub fn placeholder() -> Self {
        RawInput {
            kind: InputType::String,
            required: false,
            default: None,
            secret: false,
            description: None,
            allowed: None,
        }
    }
}

fn default_input_type() -> InputType {
    InputType::String
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// Run when every need succeeded or was skipped by its `when` (the default). A need
    /// skipped because its own trigger was not met skips this step too.
    #[default]
    Success,
    /// Run when at least one ancestor (not only a direct need) failed.
    Failure,
    /// Run in any case once the needs have finished.
    Always,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    #[default]
    Fixed,
    Linear,
    Exponential,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Total number of attempts, the first included (at least 1).
    #[schemars(range(min = 1))]
    pub attempts: u32,
    /// The wait before the second attempt (default 0s).
    #[serde(default)]
    pub delay: Option<Dur>,
    /// How the wait grows: `fixed` (default), `linear` (delay × attempt) or `exponential`
    /// (delay × 2^(attempt-1)).
    #[serde(default)]
    pub backoff: Backoff,
    /// The longest wait between attempts, whatever the backoff.
    #[serde(default)]
    pub max_delay: Option<Dur>,
    /// Expression over the step's own `outputs`; the step repeats until it is true.
    #[serde(default)]
    pub until: Option<String>,
}

/// `when:` is an expression (no braces) or a plain boolean.
#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, PartialEq)]
#[serde(untagged)]
pub enum WhenValue {
    Bool(bool),
    Expr(String),
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// `[a-z][a-z0-9_]*`, at most 64 characters, unique in the playbook.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]*$"), length(max = 64))]
    pub id: String,
    /// The step type; see `runbook schema` or docs/steps.md for the list.
    #[serde(rename = "type")]
    pub kind: String,
    /// What the step does and why, shown in plans and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Steps that must finish before this one (each once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true))]
    pub needs: Vec<String>,
    /// The step type's parameters; strings may be minijinja templates.
    #[serde(default, rename = "with", skip_serializing_if = "Option::is_none")]
    pub params: Option<IndexMap<String, Value>>,
    /// Run only if this expression (no `{{ }}`) is true; otherwise the step is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<WhenValue>,
    /// When the step runs, given how its needs ended: `success` (default), `failure`, `always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// Try again after a failure (or until `until` holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RawRetry>,
    /// Bound on each attempt (more than 0s); the attempt is stopped when it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// A failure of this step does not fail the run: it ends `failed`, and steps that need
    /// it run as if it had succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_on_error: Option<bool>,
    /// Overrides the step type's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent: Option<bool>,
}
