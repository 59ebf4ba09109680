//! `notify`: post a message to a Slack-compatible incoming webhook.
//!
//! Slack's incoming webhooks take `POST` with a JSON body `{"text": "..."}` and answer
//! `200 ok` (https://api.slack.com/messaging/webhooks); Mattermost and Discord's
//! `/slack` endpoint accept the same shape.
//!
//! A notification is never worth failing a recovery: unless the playbook says `required:
//! true` (or sets `continue_on_error` itself), a failed post fails only this step and the run
//! goes on with a warning in the journal and the report. The webhook URL is a credential
//! (Slack's is the secret): errors name only its origin.

use super::support::error_chain;
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
    /// A failed post fails the run (default: it is a warning and the run goes on).
    #[serde(default)]
    pub required: bool,
}

impl TypedStep for Notify {
    const NAME: &'static str = "notify";
    const SUMMARY: &'static str = "post to a Slack-compatible webhook (a failure is a warning unless `required: true`)";
    type Params = NotifyParams;

    fn idempotent(_: &NotifyParams) -> bool {
        false
    }

    fn continue_on_error_default(p: &NotifyParams) -> bool {
        !p.required
    }

    fn plan(p: &NotifyParams) -> String {
        format!("post to webhook {}: {}", url_origin(&p.webhook), p.text)
    }

    async fn run(&self, ctx: &StepContext, p: NotifyParams) -> Result<Outputs, StepError> {
        let origin = url_origin(&p.webhook);
        let mut body = serde_json::Map::new();
        body.insert("text".into(), Value::String(p.text));
        body.extend(p.extra);
        // `without_url`: reqwest's errors quote the whole URL, token path included.
        let resp = ctx.http.post(&p.webhook).json(&body).send().await.map_err(|e| {
            StepError::failed(format!("cannot reach the webhook {origin}: {}", error_chain(&e.without_url())))
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            let said: String = text.trim().chars().take(200).collect();
            return Err(StepError::failed(format!("the webhook {origin} answered HTTP {status}: {said}"))
                .with_hint("check the webhook URL; Slack answers 403/404 for a revoked or mistyped hook"));
        }
        Ok(serde_json::json!({ "status": status }))
    }
}
