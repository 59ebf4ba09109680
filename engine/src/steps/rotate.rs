//! `rotate-secret`: give a secret a new value in Infisical and record the new version. The
//! value is never written to outputs, events or logs.
//!
//! Where the value comes from matters: a credential issued by someone else (a Stripe key, a
//! database password, an API token) must be minted at its issuer and given here (`value:`,
//! from a secret input or an earlier step); a random value written to Infisical would be one
//! no issuer accepts, and the compromised one would stay valid. Only secrets the app itself
//! owns (session or signing keys) may be generated here, and only when the playbook says
//! `generate: true`. Revoking the old credential at its issuer is a step of its own.
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
    /// The Infisical base URL (default https://app.infisical.com).
    #[serde(default = "default_api")]
    pub api_url: String,
    /// Machine identity (universal auth), from secrets.
    pub client_id: String,
    /// The machine identity's client secret (from a secret).
    pub client_secret: String,
    /// The Infisical project (workspace) id.
    pub project_id: String,
    /// `dev`, `staging`, `prod`, ...
    pub environment: String,
    /// The folder of the secret (default `/`).
    #[serde(default = "default_path")]
    pub secret_path: String,
    /// The secret's name (key).
    pub name: String,
    /// The new value, minted at the issuer: a secret input or an earlier step's output. An
    /// empty value counts as not given.
    #[serde(default)]
    pub value: Option<String>,
    /// Generate a random value instead (letters and digits): only for secrets the app itself
    /// owns (session keys), never for a credential an issuer must know.
    #[serde(default)]
    pub generate: bool,
    /// Length of a generated value.
    #[serde(default = "default_length")]
    pub length: usize,
    /// Succeed when the change waits for approval in Infisical (default: fail, since the
    /// old, compromised value is still the live one).
    #[serde(default)]
    pub allow_pending_approval: bool,
}

const NO_VALUE: &str = "give `value:` (the new credential, minted at its issuer, from a secret input or an earlier \
     step's output) or `generate: true` (only for a secret the app itself owns, such as a session key)";

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
    const SUMMARY: &'static str =
        "set a secret's new value (minted at its issuer, or generated for app-owned secrets) in Infisical";
    type Params = RotateParams;

    fn idempotent(_: &RotateParams) -> bool {
        false
    }

    fn validate(p: &RotateParams) -> Result<(), ParamError> {
        if !(16..=256).contains(&p.length) {
            return Err(ParamError::at("length", "a generated secret is 16 to 256 characters long"));
        }
        // Templated values are only known at run time; `run` checks again.
        let given = p.value.as_deref().is_some_and(|v| !v.trim().is_empty());
        if given && p.generate {
            return Err(ParamError::at("generate", "give either `value` or `generate: true`, not both"));
        }
        if !given && !p.generate && p.value.is_none() {
            return Err(ParamError::root(NO_VALUE));
        }
        Ok(())
    }

    fn plan(p: &RotateParams) -> String {
        let how = if p.generate { "a generated value" } else { "the given value" };
        format!("rotate {} in Infisical project {} ({}{}) to {how}", p.name, p.project_id, p.environment, p.secret_path)
    }

    async fn run(&self, ctx: &StepContext, p: RotateParams) -> Result<Outputs, StepError> {
        let given = p.value.as_deref().filter(|v| !v.trim().is_empty());
        let value = match (given, p.generate) {
            (Some(_), true) => {
                return Err(StepError::failed("give either `value` or `generate: true`, not both"));
            }
            (Some(v), false) => v.to_owned(),
            (None, true) => generate(p.length)?,
            (None, false) => {
                return Err(StepError::failed(format!("no new value for {}: {NO_VALUE}", p.name))
                    .with_hint("mint the new credential at its issuer first, then pass it as a secret input"));
            }
        };
        let token = infisical_login(&ctx.http, &p.api_url, &p.client_id, &p.client_secret).await?;
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
            json!({ "name": p.name, "environment": p.environment, "version": version, "generated": p.generate, "approval_required": false, "approval_id": null }),
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

/// Infisical's machine identity login (universal auth): the access token for later calls.
/// Shared by `rotate-secret` and `export-secrets`.
pub async fn infisical_login(
    http: &reqwest::Client,
    api_url: &str,
    client_id: &str,
    client_secret: &str,
) -> Result<String, StepError> {
    let login = Api::new(http, api_url, None, "Infisical", "the machine identity's client id and secret")
        .post("/api/v1/auth/universal-auth/login", &json!({ "clientId": client_id, "clientSecret": client_secret }))
        .await?;
    login
        .get("accessToken")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| StepError::failed("Infisical's login answer has no accessToken"))
}
