//! `check-status`: is it us or them? An Atlassian Statuspage v2 page (Vercel, Supabase and
//! most SaaS publish one: `GET /api/v2/summary.json` → `status.indicator` none | minor |
//! major | critical, and `components[].{name, status}`; https://metastatuspage.com/api/v2),
//! and our own health endpoints (status, latency, a JSON field), checked concurrently.
//! Outputs are meant for `when`: `steps.x.outputs.indicator in ['major', 'critical']`.

use super::http::error_chain;
use super::saas::Api;
use super::{Outputs, ParamError, StepContext, StepError, TypedStep};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::time::Instant;

pub struct CheckStatus;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckParams {
    /// A Statuspage v2 page, e.g. https://www.vercel-status.com.
    #[serde(default)]
    pub statuspage: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// `none`: only report; `degraded`: fail when the page's indicator is not `none` or an
    /// endpoint is not ok.
    #[serde(default)]
    pub fail_on: FailOn,
}

#[derive(Debug, Deserialize, JsonSchema, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailOn {
    #[default]
    None,
    Degraded,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
    /// Default 200.
    #[serde(default = "default_status")]
    pub expect_status: u16,
    #[serde(default)]
    pub max_latency_ms: Option<u64>,
    /// JSON fields that must equal, by dotted path: `{ status: ok, "checks.db": up }`.
    #[serde(default)]
    pub expect_json: IndexMap<String, Value>,
}

fn default_status() -> u16 {
    200
}

impl TypedStep for CheckStatus {
    const NAME: &'static str = "check-status";
    const SUMMARY: &'static str =
        "Statuspage v2 indicator and components, and HTTP health checks (status, latency, JSON field)";
    type Params = CheckParams;

    fn idempotent(_: &CheckParams) -> bool {
        true
    }

    fn validate(p: &CheckParams) -> Result<(), ParamError> {
        if p.statuspage.is_none() && p.endpoints.is_empty() {
            return Err(ParamError::root("give a `statuspage`, `endpoints`, or both"));
        }
        let mut names: Vec<&str> = p.endpoints.iter().map(|e| e.name.as_str()).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ParamError::at("endpoints", format!("two endpoints are named `{}`", w[0])));
        }
        Ok(())
    }

    fn plan(p: &CheckParams) -> String {
        let mut parts = Vec::new();
        if let Some(page) = &p.statuspage {
            parts.push(format!("read the status page {page}"));
        }
        if !p.endpoints.is_empty() {
            parts.push(format!("check {}", p.endpoints.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")));
        }
        let fail = if p.fail_on == FailOn::Degraded { " (fail when degraded)" } else { "" };
        format!("{}{fail}", parts.join(" and "))
    }

    async fn run(&self, ctx: &StepContext, p: CheckParams) -> Result<Outputs, StepError> {
        let page = async {
            match &p.statuspage {
                Some(url) => {
                    Api::new(&ctx.http, url, None, "Statuspage", "").get("/api/v2/summary.json").await.map(Some)
                }
                None => Ok(None),
            }
        };
        let checks = futures_util::future::join_all(p.endpoints.iter().map(|e| check(ctx, e)));
        let (page, checks) = tokio::join!(page, checks);
        let mut out = Map::new();
        let mut healthy = true;
        if let Some(summary) = page? {
            let indicator = summary.pointer("/status/indicator").and_then(Value::as_str).ok_or_else(|| {
                StepError::failed("the status page's summary has no `status.indicator`")
                    .with_hint("is it an Atlassian Statuspage (…/api/v2/summary.json)?")
            })?;
            healthy &= indicator == "none";
            out.insert("indicator".into(), indicator.into());
            out.insert("description".into(), summary.pointer("/status/description").cloned().unwrap_or(Value::Null));
            let components: Map<String, Value> = summary
                .get("components")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| Some((c.get("name")?.as_str()?.to_owned(), c.get("status")?.clone())))
                .collect();
            out.insert("components".into(), Value::Object(components));
        }
        let mut endpoints = Map::new();
        for (e, result) in p.endpoints.iter().zip(checks) {
            healthy &= result["ok"] == true;
            endpoints.insert(e.name.clone(), result);
        }
        out.insert("endpoints".into(), Value::Object(endpoints));
        out.insert("healthy".into(), Value::Bool(healthy));
        let outputs = Value::Object(out);
        if p.fail_on == FailOn::Degraded && !healthy {
            return Err(StepError::failed(format!("not healthy: {}", summary(&outputs))).with_outputs(outputs));
        }
        Ok(outputs)
    }
}

async fn check(ctx: &StepContext, e: &Endpoint) -> Value {
    let started = Instant::now();
    let resp = match ctx.http.get(&e.url).send().await {
        Ok(r) => r,
        Err(err) => return json!({ "ok": false, "status": null, "latency_ms": null, "error": error_chain(&err) }),
    };
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    let latency = started.elapsed().as_millis() as u64;
    let mut problems = Vec::new();
    if status != e.expect_status {
        problems.push(format!("HTTP {status}, expected {}", e.expect_status));
    }
    if let Some(max) = e.max_latency_ms
        && latency > max
    {
        problems.push(format!("{latency} ms, over {max} ms"));
    }
    if !e.expect_json.is_empty() {
        match serde_json::from_slice::<Value>(&body) {
            Ok(json) => {
                for (path, want) in &e.expect_json {
                    let ptr = format!("/{}", path.replace('.', "/"));
                    let got = json.pointer(&ptr).cloned().unwrap_or(Value::Null);
                    if &got != want {
                        problems.push(format!("`{path}` is {got}, expected {want}"));
                    }
                }
            }
            Err(_) => problems.push("the body is not JSON".into()),
        }
    }
    json!({
        "ok": problems.is_empty(),
        "status": status,
        "latency_ms": latency,
        "error": if problems.is_empty() { Value::Null } else { Value::String(problems.join("; ")) },
    })
}

fn summary(o: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(i) = o.get("indicator").and_then(Value::as_str).filter(|i| *i != "none") {
        parts.push(format!("status page says `{i}`"));
    }
    if let Some(eps) = o.get("endpoints").and_then(Value::as_object) {
        for (name, r) in eps {
            if r["ok"] != true {
                parts.push(format!("{name}: {}", r["error"].as_str().unwrap_or("failed")));
            }
        }
    }
    parts.join("; ")
}
