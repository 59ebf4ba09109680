//! The checked playbook: ids resolved to indices, defaults applied, the DAG sealed.

use super::node::Pos;
use super::raw::{Backoff, RawInput, RawObjectives, RawStep, Trigger};
use crate::graph::Dag;
use crate::steps::StepKind;
use indexmap::IndexMap;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub struct Playbook {
    pub name: String,
    pub description: Option<String>,
    pub severity: Option<String>,
    pub objectives: RawObjectives,
    pub inputs: IndexMap<String, RawInput>,
    pub vars: IndexMap<String, Value>,
    pub secrets: Vec<String>,
    /// The manual follow-ups the report lists; the playbook says them, the engine only shows them.
    pub follow_ups: Vec<String>,
    pub steps: Vec<Step>,
    pub index: HashMap<String, usize>,
    pub dag: Dag,
    /// Where it was read from, for messages.
    pub file: String,
    pub path: Option<PathBuf>,
    /// The exact text, kept with each run so `resume` can tell if the playbook changed.
    pub text: String,
    pub sha256: String,
}

impl std::fmt::Debug for Playbook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playbook").field("name", &self.name).field("steps", &self.steps.len()).finish()
    }
}

pub struct Step {
    pub id: String,
    pub kind: &'static dyn StepKind,
    /// The step as written (templates unrendered), for plans and diffs.
    pub raw: RawStep,
    pub needs: Vec<usize>,
    pub params: Value,
    pub when: Option<When>,
    pub trigger: Trigger,
    pub retry: Retry,
    pub timeout: Option<Duration>,
    pub continue_on_error: bool,
    pub idempotent: bool,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum When {
    Const(bool),
    Expr(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub attempts: u32,
    pub delay: Duration,
    pub backoff: Backoff,
    pub max_delay: Option<Duration>,
    pub until: Option<String>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 1, delay: Duration::ZERO, backoff: Backoff::Fixed, max_delay: None, until: None }
    }
}

impl Retry {
    /// The wait before attempt `next` (2, 3, ...).
    pub fn delay_before(&self, next: u32) -> Duration {
        let n = next.saturating_sub(1).max(1);
        let d = match self.backoff {
            Backoff::Fixed => self.delay,
            Backoff::Linear => self.delay.saturating_mul(n),
            Backoff::Exponential => self.delay.saturating_mul(2u32.saturating_pow(n - 1)),
        };
        match self.max_delay {
            Some(max) => d.min(max),
            None => d,
        }
    }
}

impl Playbook {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.index.get(id).map(|&i| &self.steps[i])
    }

    pub fn secret_inputs(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().filter(|(_, i)| i.secret).map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_delays() {
        let r = Retry {
            attempts: 5,
            delay: Duration::from_secs(10),
            backoff: Backoff::Exponential,
            max_delay: Some(Duration::from_secs(30)),
            until: None,
        };
        let d: Vec<u64> = (2..=5).map(|n| r.delay_before(n).as_secs()).collect();
        assert_eq!(d, vec![10, 20, 30, 30]);
        let lin = Retry { backoff: Backoff::Linear, max_delay: None, ..r };
        assert_eq!((2..=4).map(|n| lin.delay_before(n).as_secs()).collect::<Vec<_>>(), vec![10, 20, 30]);
    }
}
