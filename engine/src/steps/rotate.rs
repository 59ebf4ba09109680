//! `rotate-secret`: give a secret a new value in Infisical and record the new version. The
//! value (generated here unless given) is never written to outputs, events or logs.
//!
//! Infisical API (https://infisical.com/docs/api-reference): machine identity login
//! `POST /api/v1/auth/universal-auth/login` `{clientId, clientSecret}` → `{accessToken}`;
//! update `PATCH /api/v4/secrets/{secretName}` `{projectId, environment, secretPath,
//! secretValue, type}` → `{secret: {id, version, ...}}`, or, where a change-approval policy
//! guards the environment, `{approval: {id, status, ...}}` (a change request to approve).

use super::saas::Api;
use super::{Outputs, ParamError, StepContext, StepError, TypedStep};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

pub struct RotateSecret;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateParams {
    #[serde(default = "default_api")]
    pub api_url: String,
    /// Machine identity (universal auth), from secrets.
    pub client_id: String,
    pub client_secret: String,
    pub project_id: String,
    /// `dev`, `staging`, `prod`, ...
    pub environment: String,
    #[serde(default = "default_path")]
    pub secret_path: String,
    /// The secret's name (key).
    pub name: String,
    /// The new value; generated when absent (mark its source as secret).
    #[serde(default)]
    pub value: Option<String>,
    /// Length of a generated value (letters and digits).
    #[serde(default = "default_length")]
    pub length: usize,
    /// Succeed when the change waits for approval in Infisical (default: fail, since the
    /// old, compromised value is still the live one).
    #[serde(default)]
    pub allow_pending_approval: bool,
}

fn default_api() -> String {
    "https://app.infisical.com".into()
}
fn default_path() -> String {
    "/".into()
}
fn default_length() -> usize {
    32
}

impl TypedStep for RotateSecret {
    const NAME: &'static str = "rotate-secret";
    const SUMMARY: &'static str = "set a new (generated or given) value for a secret in Infisical; record the version";
    type Params = RotateParams;

    fn idempotent(_: &RotateParams) -> bool {
        false
    }

    fn validate(p: &RotateParams) -> Result<(), ParamError> {
        if !(16..=256).contains(&p.length) {
            return Err(ParamError::at("length", "a generated secret is 16 to 256 characters long"));
        }
        Ok(())
    }

    fn plan(p: &RotateParams) -> String {
        let how = if p.value.is_some() { "a given value" } else { "a generated value" };
        format!("rotate {} in Infisical project {} ({}{}) to {how}", p.name, p.project_id, p.environment, p.secret_path)
    }

    async fn run(&self, ctx: &StepContext, p: RotateParams) -> Result<Outputs, StepError> {
        let login = Api::new(&ctx.http, &p.api_url, None, "Infisical", "the machine identity's client id and secret")
            .post(
                "/api/v1/auth/universal-auth/login",
                &json!({ "clientId": p.client_id, "clientSecret": p.client_secret }),
            )
            .await?;
        let token = login
            .get("accessToken")
            .and_then(Value::as_str)
            .ok_or_else(|| StepError::failed("Infisical's login answer has no accessToken"))?
            .to_owned();
        let value = match &p.value {
            Some(v) => v.clone(),
            None => generate(p.length)?,
        };
        let api = Api::new(&ctx.http, &p.api_url, Some(&token), "Infisical", "the machine identity's access");
        let body = json!({
            "projectId": p.project_id,
            "environment": p.environment,
            "secretPath": p.secret_path,
            "secretValue": value,
            "type": "shared",
        });
        let answer = api.call(reqwest::Method::PATCH, &format!("/api/v4/secrets/{}", p.name), Some(&body)).await?;
        drop(value);
        if let Some(approval) = answer.get("approval") {
            let id = approval.get("id").cloned().unwrap_or(Value::Null);
            let outputs = json!({ "name": p.name, "environment": p.environment, "approval_required": true, "approval_id": id, "version": null });
            if p.allow_pending_approval {
                return Ok(outputs);
            }
            return Err(StepError::failed(format!(
                "the new value of {} waits for approval in Infisical (change request {id}); the old value is still live",
                p.name
            ))
            .with_hint("approve the change request in Infisical, then `runbook resume` (or set allow_pending_approval)")
            .with_outputs(outputs));
        }
        let version = answer.pointer("/secret/version").cloned().unwrap_or(Value::Null);
        Ok(
            json!({ "name": p.name, "environment": p.environment, "version": version, "approval_required": false, "approval_id": null }),
        )
    }
}

/// Letters and digits from the OS's random source, without modulo bias.
fn generate(len: usize) -> Result<String, StepError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut f = std::fs::File::open("/dev/urandom").map_err(|e| StepError::failed(format!("no random source: {e}")))?;
    let mut buf = [0u8; 64];
    while out.len() < len {
        std::io::Read::read_exact(&mut f, &mut buf).map_err(|e| StepError::failed(format!("no random source: {e}")))?;
        for b in buf {
            // 248 = 4 × 62: bytes above it would favour some characters.
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}
