//! `approval`: a human gate before destructive work. Asked on a TTY; in a non-interactive
//! run it pauses the run (exit 3) until `resume --approve ID`, unless `--yes`/`--approve`.

use super::{Decision, Outputs, StepContext, StepError, TypedStep};
use schemars::JsonSchema;
use serde::Deserialize;

pub struct Approval;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalParams {
    /// The question put to the operator.
    pub message: String,
}

impl TypedStep for Approval {
    const NAME: &'static str = "approval";
    const SUMMARY: &'static str = "human gate: prompt on a TTY, --approve ID / --yes otherwise";
    type Params = ApprovalParams;

    fn idempotent(_: &ApprovalParams) -> bool {
        // Asking again is harmless; once approved the answer is kept.
        true
    }

    fn plan(p: &ApprovalParams) -> String {
        format!("ask for approval: {}", p.message)
    }

    async fn run(&self, ctx: &StepContext, p: ApprovalParams) -> Result<Outputs, StepError> {
        match ctx.gate.decide(&ctx.step_id, &p.message).await {
            Decision::Approved { by } => Ok(serde_json::json!({
                "approved_by": by,
                "approved_at": jiff::Timestamp::now().to_string(),
            })),
            Decision::Denied { by } => Err(StepError::failed(format!("approval denied by {by}"))),
            Decision::Pending => Err(StepError::NeedsApproval { message: p.message }),
        }
    }
}
