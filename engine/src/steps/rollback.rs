//! `rollback-deploy`: put the last good production deployment back, then wait until the
//! alias has moved. Vercel REST API (https://vercel.com/docs/rest-api): list deployments
//! `GET /v6/deployments?projectId=&target=production&state=READY`, the project
//! `GET /v9/projects/{id}` (its `targets.production.id` is what serves now), the rollback
//! `POST /v1/projects/{projectId}/rollback/{deploymentId}`, and its progress
//! `GET /v9/projects/{id}?rollbackInfo=true` → `lastAliasRequest.jobStatus`.

use super::saas::Api;
use super::{Outputs, ParamError, StepContext, StepError, TypedStep};
use crate::playbook::Dur;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

pub struct RollbackDeploy;

#[derive(Debug, Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Vercel,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackParams {
    pub provider: Provider,
    /// Project id or name.
    pub project: String,
    #[serde(default)]
    pub team_id: Option<String>,
    /// A Vercel token (from a secret).
    pub token: String,
    /// `previous` (the READY production deployment before the current one), a deployment
    /// id (`dpl_...`), or `before:dpl_...` (the one before that deployment).
    #[serde(default = "default_to")]
    pub to: String,
    #[serde(default = "default_api")]
    pub api_url: String,
    #[serde(default = "default_poll")]
    pub poll_interval: Dur,
}

fn default_to() -> String {
    "previous".into()
}

fn default_api() -> String {
    "https://api.vercel.com".into()
}

fn default_poll() -> Dur {
    Dur(Duration::from_secs(5))
}

impl TypedStep for RollbackDeploy {
    const NAME: &'static str = "rollback-deploy";
    const SUMMARY: &'static str = "roll production back to the last good deployment (Vercel) and wait until it serves";
    type Params = RollbackParams;

    fn idempotent(_: &RollbackParams) -> bool {
        false
    }

    fn validate(p: &RollbackParams) -> Result<(), ParamError> {
        let to = p.to.as_str();
        if to != "previous"
            && !crate::template::is_template(to)
            && !to.starts_with("dpl_")
            && !to.starts_with("before:dpl_")
        {
            return Err(ParamError::at(
                "to",
                format!("`{to}`: use `previous`, a deployment id (dpl_...) or `before:dpl_...`"),
            ));
        }
        Ok(())
    }

    fn plan(p: &RollbackParams) -> String {
        let target = match p.to.as_str() {
            "previous" => "the previous READY production deployment".to_owned(),
            t => match t.strip_prefix("before:") {
                Some(id) => format!("the READY production deployment before {id}"),
                None => format!("deployment {t}"),
            },
        };
        format!("roll Vercel project {} back to {target}, then wait until it serves", p.project)
    }

    async fn preview(&self, ctx: &StepContext, p: &RollbackParams) -> Option<String> {
        // Only with real credentials: placeholders mean the dry run has none.
        if p.token.starts_with('<') || p.project.starts_with('<') {
            return None;
        }
        Some(match choose(&Vercel::new(ctx, p), p).await {
            Ok(c) => format!(
                "roll Vercel project {} back from {} to {}{}, then wait until it serves",
                p.project,
                c.current,
                c.to,
                c.to_url.as_deref().map(|u| format!(" ({u})")).unwrap_or_default()
            ),
            Err(e) => format!("{} (the look-up of the target failed: {e})", Self::plan(p)),
        })
    }

    async fn run(&self, ctx: &StepContext, p: RollbackParams) -> Result<Outputs, StepError> {
        // Vercel is the only provider so far; a new one adds a variant and a branch here.
        let Provider::Vercel = p.provider;
        let v = Vercel::new(ctx, &p);
        let c = choose(&v, &p).await?;
        v.api.post(&format!("/v1/projects/{}/rollback/{}{}", c.project_id, c.to, v.query("")), &json!({})).await?;
        let status = loop {
            tokio::time::sleep(p.poll_interval.0).await;
            let info = v.api.get(&format!("/v9/projects/{}{}", c.project_id, v.query("rollbackInfo=true"))).await?;
            let job =
                info.pointer("/lastAliasRequest/jobStatus").and_then(Value::as_str).unwrap_or("pending").to_owned();
            match job.as_str() {
                "succeeded" => break job,
                "failed" => {
                    return Err(StepError::failed(format!("Vercel reports the rollback to {} failed", c.to))
                        .with_hint("check the project's deployments in the Vercel dashboard"));
                }
                _ => {}
            }
        };
        Ok(json!({
            "from_deployment": c.current,
            "to_deployment": c.to,
            "to_url": c.to_url,
            "job_status": status,
        }))
    }
}

struct Vercel<'a> {
    api: Api<'a>,
    team: Option<String>,
}

impl<'a> Vercel<'a> {
    fn new(ctx: &'a StepContext, p: &'a RollbackParams) -> Self {
        Vercel {
            api: Api::new(&ctx.http, &p.api_url, Some(&p.token), "Vercel", "VERCEL_TOKEN"),
            team: p.team_id.clone(),
        }
    }

    /// The query string: `extra` and the team, when there is one.
    fn query(&self, extra: &str) -> String {
        let parts: Vec<String> =
            [(!extra.is_empty()).then(|| extra.to_owned()), self.team.as_ref().map(|t| format!("teamId={t}"))]
                .into_iter()
                .flatten()
                .collect();
        if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
    }
}

struct Choice {
    project_id: String,
    current: String,
    to: String,
    to_url: Option<String>,
}

/// The read-only half of a rollback: what serves now, and what to go back to.
async fn choose(v: &Vercel<'_>, p: &RollbackParams) -> Result<Choice, StepError> {
    let project = v.api.get(&format!("/v9/projects/{}{}", p.project, v.query(""))).await?;
    let project_id = project.get("id").and_then(Value::as_str).unwrap_or(&p.project).to_owned();
    let list = v
        .api
        .get(&format!(
            "/v6/deployments{}",
            v.query(&format!("projectId={project_id}&target=production&state=READY&limit=50"))
        ))
        .await?;
    let mut deployments: Vec<&Value> =
        list.get("deployments").and_then(Value::as_array).into_iter().flatten().collect();
    deployments.sort_by_key(|d| std::cmp::Reverse(created(d)));
    let current = project
        .pointer("/targets/production/id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| deployments.first().and_then(|d| uid(d)).map(str::to_owned))
        .ok_or_else(|| StepError::failed(format!("project {} has no production deployment", p.project)))?;
    let before = |id: &str| -> Result<&Value, StepError> {
        let at = deployments.iter().find(|d| uid(d) == Some(id)).map(|d| created(d));
        deployments
            .iter()
            .find(|d| uid(d) != Some(id) && at.is_none_or(|t| created(d) < t))
            .copied()
            .ok_or_else(|| StepError::failed(format!("no READY production deployment before {id} to roll back to")))
    };
    let target = match p.to.as_str() {
        "previous" => before(&current)?,
        t => match t.strip_prefix("before:") {
            Some(id) => before(id)?,
            None => deployments.iter().find(|d| uid(d) == Some(t)).copied().ok_or_else(|| {
                StepError::failed(format!("deployment {t} is not a READY production deployment of {}", p.project))
            })?,
        },
    };
    let to = uid(target).unwrap_or_default().to_owned();
    if to == current {
        return Err(StepError::failed(format!("{to} is already the production deployment")));
    }
    let to_url = target.get("url").and_then(Value::as_str).map(|u| format!("https://{u}"));
    Ok(Choice { project_id, current, to, to_url })
}

fn uid(d: &Value) -> Option<&str> {
    d.get("uid").or_else(|| d.get("id")).and_then(Value::as_str)
}

fn created(d: &Value) -> i64 {
    d.get("created").or_else(|| d.get("createdAt")).and_then(Value::as_i64).unwrap_or(0)
}
