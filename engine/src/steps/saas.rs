//! The one HTTP client policy of every SaaS step (Supabase, Vercel, Infisical, Statuspage):
//! - 429 and 503 with `Retry-After` are retried here, bounded, honouring the header;
//! - 401/403/404/409/422 fail at once with the API's own message and a hint;
//! - other 5xx and network errors fail the step and leave retrying to its `retry:`.

use super::StepError;
use super::support::error_chain;
use serde_json::Value;
use std::time::Duration;

/// How often a throttled call is tried again, and the longest wait we accept.
const THROTTLE_RETRIES: u32 = 3;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

pub struct Api<'a> {
    http: &'a reqwest::Client,
    base: String,
    token: Option<&'a str>,
    service: &'static str,
    token_var: &'static str,
}

impl<'a> Api<'a> {
    pub fn new(
        http: &'a reqwest::Client,
        base: &str,
        token: Option<&'a str>,
        service: &'static str,
        token_var: &'static str,
    ) -> Self {
        Api { http, base: base.trim_end_matches('/').to_owned(), token, service, token_var }
    }

    pub async fn get(&self, path: &str) -> Result<Value, StepError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, StepError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, StepError> {
        let url = format!("{}{path}", self.base);
        let mut tries = 0;
        loop {
            let mut req = self.http.request(method.clone(), &url);
            if let Some(token) = self.token {
                req = req.bearer_auth(token);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| StepError::failed(format!("{} {method} {path}: {}", self.service, error_chain(&e))))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = resp.text().await.unwrap_or_default();
            if (200..300).contains(&status) {
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_str(&text).map_err(|e| {
                    StepError::failed(format!(
                        "{} {method} {path}: the answer is not JSON ({e}): {}",
                        self.service,
                        short(&text)
                    ))
                });
            }
            if matches!(status, 429 | 503)
                && tries < THROTTLE_RETRIES
                && let Some(wait) = retry_after.filter(|w| *w <= MAX_RETRY_AFTER)
            {
                tries += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            let message = api_message(&text);
            let hint = match status {
                401 | 403 => format!("token rejected: check {}", self.token_var),
                404 => "check the project / resource id and that the token's account can see it".to_owned(),
                409 => format!("{} reports a conflict: another operation may be running", self.service),
                422 => "the API refused the request's content; check the step's parameters".to_owned(),
                429 => format!("{} is throttling; retry later (or give the step a `retry:`)", self.service),
                _ => format!("{} answered an error; the step's `retry:` decides whether to try again", self.service),
            };
            return Err(StepError::failed(format!("{} {method} {path}: HTTP {status}: {message}", self.service))
                .with_hint(hint));
        }
    }
}

/// The API's own words: `message`, `error.message`, `error` or the body.
fn api_message(text: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        for ptr in ["/message", "/error/message", "/error", "/msg"] {
            if let Some(s) = v.pointer(ptr).and_then(|s| s.as_str()) {
                return s.to_owned();
            }
        }
    }
    short(text)
}

fn short(text: &str) -> String {
    let t = text.trim();
    if t.chars().count() > 300 { format!("{}…", t.chars().take(300).collect::<String>()) } else { t.to_owned() }
}
