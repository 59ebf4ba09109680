//! `notify`: post a message to a Slack-compatible incoming webhook.
//!
//! Slack's incoming webhooks take `POST` with a JSON body `{"text": "..."}` and answer
//! `200 ok` (https://api.slack.com/messaging/webhooks); Mattermost and Discord's
//! `/slack` endpoint accept the same shape.

use super::support::url_origin;
use super::{Outputs, StepContext, StepError, TypedStep};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

pub struct Notify;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyParams {
    /// The webhook URL (usually from a secret env var).
    pub webhook: String,
    /// The message text.
    pub text: String,
    /// More fields for the payload (`channel`, `username`, `blocks`, ...).
    #[serde(default)]
    pub extra: IndexMap<String, Value>,
}

impl TypedStep for Notify {
    const NAME: &'static str = "notify";
    const SUMMARY: &'static str = "post to a Slack-compatible webhook";
    type Params = NotifyParams;

    fn idempotent(_: &NotifyParams) -> bool {
        false
    }

    fn plan(p: &NotifyParams) -> String {
        format!("post to webhook {}: {}", url_origin(&p.webhook), p.text)
    }

    async fn run(&self, ctx: &StepContext, p: NotifyParams) -> Result<Outputs, StepError> {
        let mut body = serde_json::Map::new();
        body.insert("text".into(), Value::String(p.text));
        body.extend(p.extra);
        let resp = ctx
            .http
            .post(&p.webhook)
            .json(&body)
            .send()
            .await
            .map_err(|e| StepError::failed(format!("cannot reach the webhook {}: {e}", url_origin(&p.webhook))))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(StepError::failed(format!("the webhook answered HTTP {status}: {}", text.trim()))
                .with_hint("check the webhook URL; Slack answers 403/404 for a revoked or mistyped hook"));
        }
        Ok(serde_json::json!({ "status": status }))
    }
}
