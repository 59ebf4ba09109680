//! `rollback-deploy`: put a good production deployment back, then wait until Vercel says
//! that this very rollback has finished.
//!
//! Vercel REST API (https://vercel.com/docs/rest-api):
//! - the project `GET /v9/projects/{idOrName}?rollbackInfo=true`: `targets.production.id` is
//!   what serves now; `lastAliasRequest {fromDeploymentId, toDeploymentId, jobStatus,
//!   requestedAt, type}` is the latest promote or rollback, `jobStatus` one of `succeeded`,
//!   `failed`, `skipped`, `pending`, `in-progress` and `type` one of `promote`, `rollback`
//!   (the SDK's model: https://github.com/vercel/vercel/blob/main/packages/sdk/docs/models/operations/lastaliasrequest.md);
//! - the candidates `GET /v6/deployments?projectId=&target=production&rollbackCandidate=true`
//!   (https://vercel.com/docs/rest-api/deployments/list-deployments), newest first, paged:
//!   `pagination.next` is the `until` of the next page, `null` on the last one. Only a
//!   deployment that was aliased to production is a candidate
//!   (https://vercel.com/docs/instant-rollback#eligible-deployments);
//! - the rollback `POST /v1/projects/{projectId}/rollback/{deploymentId}` → 201
//!   (https://vercel.com/docs/rest-api/projects/points-all-production-domains-for-a-project-to-the-given-deploy).

use super::saas::Api;
use super::{Outputs, ParamError, StepContext, StepError, TypedStep};
use crate::playbook::Dur;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub struct RollbackDeploy;

#[derive(Debug, Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Vercel,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackParams {
    /// The hosting provider; `vercel` today.
    pub provider: Provider,
    /// Project id or name.
    pub project: String,
    /// The Vercel team that owns the project, if not a personal account.
    #[serde(default)]
    pub team_id: Option<String>,
    /// A Vercel token (from a secret).
    pub token: String,
    /// Which deployment to put back; always a rollback candidate older than the one serving
    /// now (never a roll forward):
    /// - `previous`: the newest candidate before the current one;
    /// - `dpl_...`: that deployment;
    /// - `before:dpl_...`: the newest candidate created before that deployment (the last
    ///   known good one when that deployment and all after it are bad);
    /// - `before:2026-11-27T08:00:00Z`: the newest candidate created before that time.
    #[serde(default = "default_to")]
    pub to: String,
    /// The Vercel API base URL (default https://api.vercel.com).
    #[serde(default = "default_api")]
    pub api_url: String,
    /// How often to ask whether the rolled-back deployment serves.
    #[serde(default = "default_poll")]
    pub poll_interval: Dur,
    /// How long to wait for Vercel to finish the rollback before failing.
    #[serde(default = "default_max_wait")]
    pub max_wait: Dur,
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

fn default_max_wait() -> Dur {
    Dur(Duration::from_secs(15 * 60))
}

/// Pages of 100 deployments; 50 pages is 5000 production deployments back, far beyond any
/// rollback anyone means. The bound keeps a misbehaving API from looping us forever.
const PAGE_SIZE: u32 = 100;
const MAX_PAGES: u32 = 50;

/// `to:`, parsed.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Previous,
    Id(String),
    BeforeId(String),
    BeforeTime(jiff::Timestamp),
}

fn parse_to(to: &str) -> Result<Target, String> {
    let to = to.trim();
    if to == "previous" {
        return Ok(Target::Previous);
    }
    if to.starts_with("dpl_") {
        return Ok(Target::Id(to.to_owned()));
    }
    if let Some(rest) = to.strip_prefix("before:") {
        let rest = rest.trim();
        if rest.starts_with("dpl_") {
            return Ok(Target::BeforeId(rest.to_owned()));
        }
        return rest
            .parse::<jiff::Timestamp>()
            .map(Target::BeforeTime)
            .map_err(|e| format!("`{to}`: after `before:` give a deployment id (dpl_...) or an RFC 3339 time ({e})"));
    }
    Err(format!(
        "`{to}`: use `previous`, a deployment id (dpl_...), `before:dpl_...` or `before:<RFC 3339 time>` (the last known good deployment)"
    ))
}

impl TypedStep for RollbackDeploy {
    const NAME: &'static str = "rollback-deploy";
    const SUMMARY: &'static str =
        "roll production back to an earlier rollback candidate (Vercel) and wait until this rollback has finished";
    type Params = RollbackParams;

    fn idempotent(_: &RollbackParams) -> bool {
        false
    }

    fn validate(p: &RollbackParams) -> Result<(), ParamError> {
        if !crate::template::is_template(&p.to) {
            parse_to(&p.to).map_err(|e| ParamError::at("to", e))?;
        }
        Ok(())
    }

    fn plan(p: &RollbackParams) -> String {
        let target = match parse_to(&p.to) {
            Ok(Target::Previous) => "the previous production deployment".to_owned(),
            Ok(Target::Id(id)) => format!("deployment {id}"),
            Ok(Target::BeforeId(id)) => format!("the last production deployment before {id}"),
            Ok(Target::BeforeTime(t)) => format!("the last production deployment before {t}"),
            Err(_) => format!("`{}`", p.to),
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
        // The alias request that was there before ours: a stale `succeeded` of an earlier
        // promote or rollback must not be taken for ours.
        let before = AliasRequest::of(&c.project);
        v.api.post(&format!("/v1/projects/{}/rollback/{}{}", c.project_id, c.to, v.query("")), &json!({})).await?;
        let started = Instant::now();
        let mut last = String::from("not visible yet");
        loop {
            if started.elapsed() >= p.max_wait.0 {
                return Err(StepError::failed(format!(
                    "the rollback to {} did not finish within {} (last state: {last})",
                    c.to,
                    crate::playbook::format_duration(p.max_wait.0)
                ))
                .with_hint("Vercel may still finish it: check the project's deployments in the Vercel dashboard"));
            }
            tokio::time::sleep(p.poll_interval.0).await;
            let project = v.api.get(&format!("/v9/projects/{}{}", c.project_id, v.query("rollbackInfo=true"))).await?;
            let Some(req) = AliasRequest::of(&project) else { continue };
            if before.as_ref().is_some_and(|b| !req.newer_than(b)) {
                continue; // still the old request: ours is not visible yet
            }
            if req.to != c.to || req.kind != "rollback" {
                return Err(StepError::failed(format!(
                    "another {} (to {}) was requested after ours; it replaced the rollback to {}",
                    req.kind, req.to, c.to
                ))
                .with_hint("someone else is changing production: agree who acts, then re-run the step"));
            }
            last = req.status.clone();
            match req.status.as_str() {
                "succeeded" => {
                    // The request says done; the project's production target says serving.
                    let serving = project.pointer("/targets/production/id").and_then(Value::as_str);
                    if serving.is_none_or(|s| s == c.to) {
                        break;
                    }
                    last = format!("succeeded, but production still points at {}", serving.unwrap_or_default());
                }
                "failed" => {
                    return Err(StepError::failed(format!("Vercel reports the rollback to {} failed", c.to))
                        .with_hint("check the project's deployments in the Vercel dashboard"));
                }
                "skipped" => {
                    return Err(StepError::failed(format!("Vercel skipped the rollback to {}", c.to)).with_hint(
                        "a newer promote or rollback superseded it: check what serves production in the Vercel dashboard",
                    ));
                }
                "pending" | "in-progress" => {}
                other => last = format!("`{other}` (not a documented state; still waiting)"),
            }
        }
        Ok(json!({
            "from_deployment": c.current,
            "to_deployment": c.to,
            "to_url": c.to_url,
            "job_status": "succeeded",
        }))
    }
}

/// `lastAliasRequest`, the fields we rely on.
struct AliasRequest {
    to: String,
    kind: String,
    status: String,
    requested_at: f64,
}

impl AliasRequest {
    fn of(project: &Value) -> Option<AliasRequest> {
        let r = project.get("lastAliasRequest").filter(|r| !r.is_null())?;
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        Some(AliasRequest {
            to: s("toDeploymentId"),
            kind: s("type"),
            status: s("jobStatus"),
            requested_at: r.get("requestedAt").and_then(Value::as_f64).unwrap_or(0.0),
        })
    }

    /// Vercel's own clock on both sides: no skew with ours.
    fn newer_than(&self, other: &AliasRequest) -> bool {
        self.requested_at > other.requested_at
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
            team: p.team_id.clone().filter(|t| !t.is_empty()),
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
    project: Value,
    project_id: String,
    current: String,
    to: String,
    to_url: Option<String>,
}

/// A listed deployment, the fields the choice needs.
struct Listed {
    id: String,
    created: i64,
    url: Option<String>,
    candidate: bool,
}

/// The read-only half of a rollback: what serves now, and which older candidate to put back.
/// Pages through the candidates (newest first) until the current deployment has been seen and
/// the target is known.
async fn choose(v: &Vercel<'_>, p: &RollbackParams) -> Result<Choice, StepError> {
    let target = parse_to(&p.to).map_err(StepError::failed)?;
    let project = v.api.get(&format!("/v9/projects/{}{}", p.project, v.query("rollbackInfo=true"))).await?;
    let project_id = project.get("id").and_then(Value::as_str).unwrap_or(&p.project).to_owned();
    // Only the project says what serves: the newest READY deployment may never have been
    // aliased (or was rolled back from).
    let current = project
        .pointer("/targets/production/id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| StepError::failed(format!("project {} has no production deployment", p.project)))?;
    let mut listed: Vec<Listed> = Vec::new();
    let mut until: Option<i64> = None;
    for _ in 0..MAX_PAGES {
        let mut q = format!("projectId={project_id}&target=production&rollbackCandidate=true&limit={PAGE_SIZE}");
        if let Some(u) = until {
            q.push_str(&format!("&until={u}"));
        }
        let page = v.api.get(&format!("/v6/deployments{}", v.query(&q))).await?;
        for d in page.get("deployments").and_then(Value::as_array).into_iter().flatten() {
            listed.push(Listed {
                id: uid(d).unwrap_or_default().to_owned(),
                created: created(d),
                url: d.get("url").and_then(Value::as_str).map(|u| format!("https://{u}")),
                // The filter asked for candidates; one marked otherwise is still skipped.
                candidate: d.get("isRollbackCandidate").and_then(Value::as_bool) != Some(false),
            });
        }
        if let Some(current_at) = listed.iter().find(|d| d.id == current).map(|d| d.created)
            && let Some(found) = pick(&listed, &target, &current, current_at, None)
        {
            return Ok(choice(found, project, project_id, current));
        }
        match page.pointer("/pagination/next").and_then(Value::as_i64) {
            Some(next) if until != Some(next) => until = Some(next),
            _ => break,
        }
    }
    // The list is done. The current deployment may not be listed as a candidate of its own
    // (it is serving, not a way back): ask for it by id.
    let current_at = match listed.iter().find(|d| d.id == current) {
        Some(d) => Some(d.created),
        None => deployment_created(v, &current).await?,
    };
    // `before:dpl_...` names a bad deployment, often the one serving now or another that is
    // not itself a candidate (not listed): its age comes from the deployment itself.
    let before_at = match &target {
        Target::BeforeId(b) if !listed.iter().any(|d| &d.id == b) => {
            if *b == current {
                current_at
            } else {
                deployment_created(v, b).await.ok().flatten()
            }
        }
        _ => None,
    };
    if let Some(current_at) = current_at
        && let Some(found) = pick(&listed, &target, &current, current_at, before_at)
    {
        return Ok(choice(found, project, project_id, current));
    }
    let n = listed.len();
    let why = match (&target, current_at) {
        (_, None) => {
            format!("Vercel does not say when the production deployment {current} of {} was created", p.project)
        }
        (Target::Previous, _) => format!("no rollback candidate of {} is older than {current} ({n} listed)", p.project),
        (Target::Id(id), _) => format!(
            "{id} is not a rollback candidate of {} older than the current {current} (a rollback never rolls forward)",
            p.project
        ),
        (Target::BeforeId(id), _) if before_at.is_none() && !listed.iter().any(|d| &d.id == id) => {
            format!("{id} is not a production deployment of {} ({n} listed)", p.project)
        }
        (Target::BeforeId(id), _) => format!("no rollback candidate of {} older than {id} and {current}", p.project),
        (Target::BeforeTime(t), _) => format!("no rollback candidate of {} created before {t}", p.project),
    };
    Err(StepError::failed(why)
        .with_hint("list the candidates in the Vercel dashboard (Instant Rollback) and give `to:` a deployment id"))
}

/// The newest listed candidate that `to:` allows, always older than what serves now.
/// `before_at`: the age of a `before:` deployment that is not in the list.
fn pick<'a>(
    listed: &'a [Listed],
    target: &Target,
    current: &str,
    current_at: i64,
    before_at: Option<i64>,
) -> Option<&'a Listed> {
    let bound = match target {
        Target::BeforeTime(t) => Some(t.as_millisecond()),
        Target::BeforeId(b) if b == current => Some(current_at),
        Target::BeforeId(b) => Some(listed.iter().find(|d| &d.id == b).map(|d| d.created).or(before_at)?),
        _ => None,
    };
    let mut older: Vec<&Listed> =
        listed.iter().filter(|d| d.candidate && d.id != current && d.created < current_at).collect();
    older.sort_by_key(|d| std::cmp::Reverse(d.created));
    older.into_iter().find(|d| match target {
        Target::Previous => true,
        Target::Id(want) => &d.id == want,
        Target::BeforeId(_) | Target::BeforeTime(_) => bound.is_some_and(|b| d.created < b),
    })
}

fn choice(found: &Listed, project: Value, project_id: String, current: String) -> Choice {
    Choice { to: found.id.clone(), to_url: found.url.clone(), project, project_id, current }
}

/// `GET /v13/deployments/{id}` → `createdAt` (ms)
/// (https://vercel.com/docs/rest-api/deployments/get-a-deployment-by-id-or-url).
async fn deployment_created(v: &Vercel<'_>, id: &str) -> Result<Option<i64>, StepError> {
    let d = v.api.get(&format!("/v13/deployments/{id}{}", v.query(""))).await?;
    Ok(Some(created(&d)).filter(|c| *c > 0))
}

fn uid(d: &Value) -> Option<&str> {
    d.get("uid").or_else(|| d.get("id")).and_then(Value::as_str)
}

fn created(d: &Value) -> i64 {
    d.get("created").or_else(|| d.get("createdAt")).and_then(Value::as_i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_forms() {
        assert_eq!(parse_to("previous"), Ok(Target::Previous));
        assert_eq!(parse_to("dpl_9"), Ok(Target::Id("dpl_9".into())));
        assert_eq!(parse_to("before:dpl_9"), Ok(Target::BeforeId("dpl_9".into())));
        assert_eq!(
            parse_to("before:2026-11-27T08:00:00Z"),
            Ok(Target::BeforeTime("2026-11-27T08:00:00Z".parse().unwrap()))
        );
        assert!(parse_to("before:yesterday").unwrap_err().contains("RFC 3339"));
        assert!(parse_to("latest").unwrap_err().contains("`previous`"));
    }
}
