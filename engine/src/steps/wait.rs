//! `wait`: sleep. `0s` is a no-op step (useful as a join point).

use super::{Outputs, StepContext, StepError, TypedStep};
use crate::playbook::Dur;
use schemars::JsonSchema;
use serde::Deserialize;

pub struct Wait;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// How long to wait, e.g. `30s`.
    pub duration: Dur,
}

impl TypedStep for Wait {
    const NAME: &'static str = "wait";
    const SUMMARY: &'static str = "sleep for a duration";
    type Params = WaitParams;

    fn idempotent(_: &WaitParams) -> bool {
        true
    }

    fn plan(p: &WaitParams) -> String {
        format!("wait {}", p.duration)
    }

    async fn run(&self, _ctx: &StepContext, p: WaitParams) -> Result<Outputs, StepError> {
        if !p.duration.0.is_zero() {
            tokio::time::sleep(p.duration.0).await;
        }
        Ok(serde_json::json!({ "waited_ms": p.duration.0.as_millis() as u64 }))
    }
}
