//! `check-status`: is it us or them? A provider's hosted status page, and our own health
//! endpoints (status, latency, a JSON field), checked concurrently. Two kinds of page:
//! - Atlassian Statuspage (Vercel, Supabase, Cloudflare, most SaaS): `GET /api/v2/summary.json`
//!   → `status.indicator` none | minor | major | critical | maintenance, and
//!   `components[].{name, status}` with status operational | degraded_performance |
//!   partial_outage | major_outage | under_maintenance (https://metastatuspage.com/api/v2);
//! - Better Stack (status.trigger.dev): `GET /index.json`, JSON:API: `data.attributes.aggregate_state`
//!   operational | degraded | downtime | maintenance, and `included[]` of type
//!   `status_page_resource` with `attributes.{public_name, status}`, status operational |
//!   degraded | downtime | maintenance | not_monitored
//!   (https://betterstack.com/docs/uptime/status-pages/subscribing-to-status-updates/subscribing-to-api).
//!
//! Both are reduced to Statuspage's `indicator` (Better Stack degraded → minor, downtime →
//! major), so playbooks test one thing: `steps.x.outputs.indicator in ['major', 'critical']`.

use super::support::error_chain;
use super::support::{MAX_CAPTURE, read_body_capped};
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
    /// A provider's status page, its address without a path, e.g. https://www.vercel-status.com
    /// (Atlassian Statuspage) or https://status.trigger.dev (Better Stack).
    #[serde(default)]
    pub statuspage: Option<String>,
    /// Which kind of page: `auto` (default) tries Statuspage's `/api/v2/summary.json`, then
    /// Better Stack's `/index.json`.
    #[serde(default)]
    pub format: PageFormat,
    /// Judge one component of the page instead of the whole page (`R2` on Cloudflare's):
    /// `indicator` is then that component's. Its name as the page shows it (any case).
    #[serde(default)]
    pub component: Option<String>,
    /// HTTP endpoints to probe, each with its expected status, latency and JSON fields.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// `none`: only report; `degraded`: fail when the page's indicator is not `none` or an
    /// endpoint is not ok.
    #[serde(default)]
    pub fail_on: FailOn,
}

#[derive(Debug, Deserialize, JsonSchema, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PageFormat {
    #[default]
    Auto,
    Statuspage,
    Betterstack,
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
    /// A name for the endpoint in outputs and messages.
    pub name: String,
    /// The URL to GET.
    pub url: String,
    /// Default 200.
    #[serde(default = "default_status")]
    pub expect_status: u16,
    /// Slower than this many milliseconds counts as not ok.
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
    const SUMMARY: &'static str = "status page indicator or one component (Statuspage, Better Stack), and HTTP health checks (status, latency, JSON field)";
    type Params = CheckParams;

    fn idempotent(_: &CheckParams) -> bool {
        true
    }

    fn validate(p: &CheckParams) -> Result<(), ParamError> {
        if p.statuspage.is_none() && p.endpoints.is_empty() {
            return Err(ParamError::root("give a `statuspage`, `endpoints`, or both"));
        }
        if p.statuspage.is_none() && (p.component.is_some() || p.format != PageFormat::Auto) {
            return Err(ParamError::at(
                if p.component.is_some() { "component" } else { "format" },
                "only with a `statuspage`",
            ));
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
            match &p.component {
                Some(c) => parts.push(format!("read component {c} on the status page {page}")),
                None => parts.push(format!("read the status page {page}")),
            }
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
                Some(url) => read_page(&ctx.http, url, p.format).await.map(Some),
                None => Ok(None),
            }
        };
        let checks = futures_util::future::join_all(p.endpoints.iter().map(|e| check(ctx, e)));
        let (page, checks) = tokio::join!(page, checks);
        let mut out = Map::new();
        let mut healthy = true;
        if let Some(page) = page? {
            let mut indicator = page.indicator.clone();
            if let Some(want) = &p.component {
                let matching: Vec<&(String, String)> =
                    page.components.iter().filter(|(n, _)| n.eq_ignore_ascii_case(want.trim())).collect();
                // Statuspage allows one name in several groups (an `API` per region): reading
                // the first of them could report a healthy one while the other is down.
                if matching.len() > 1 {
                    let statuses: Vec<&str> = matching.iter().map(|(_, s)| s.as_str()).collect();
                    return Err(StepError::failed(format!(
                        "the status page has {} components named `{want}` ({}): which one is meant is not clear",
                        matching.len(),
                        statuses.join(", ")
                    ))
                    .with_hint("check that service with `endpoints`, or check the whole page without `component`"));
                }
                let (name, status) = matching.first().copied().ok_or_else(|| {
                    let names: Vec<&str> = page.components.iter().map(|(n, _)| n.as_str()).take(30).collect();
                    StepError::failed(format!("the status page has no component `{want}`"))
                        .with_hint(format!("its components: {}", names.join(", ")))
                })?;
                indicator = component_indicator(page.format, status).to_owned();
                out.insert("component".into(), json!({ "name": name, "status": status }));
            }
            healthy &= indicator == "none";
            out.insert("format".into(), json!(page.format));
            out.insert("indicator".into(), indicator.into());
            out.insert("page_indicator".into(), page.indicator.into());
            out.insert("description".into(), page.description);
            out.insert(
                "components".into(),
                Value::Object(page.components.into_iter().map(|(n, s)| (n, Value::String(s))).collect()),
            );
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

/// A status page, whichever kind, in Statuspage's terms.
struct Page {
    format: &'static str,
    indicator: String,
    description: Value,
    /// Name → the page's own status word, in the page's order.
    components: Vec<(String, String)>,
}

/// What a GET of a status page document gave.
enum Fetched {
    Json(Value),
    /// Not there (404) or not the document we asked for (HTML, another JSON).
    Missing(String),
}

async fn fetch(http: &reqwest::Client, base: &str, path: &str) -> Result<Fetched, StepError> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| StepError::failed(format!("cannot read the status page {url}: {}", error_chain(&e))))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    if status == 404 || status == 410 {
        return Ok(Fetched::Missing(format!("{path}: HTTP {status}")));
    }
    if !(200..300).contains(&status) {
        // A page that is itself down (5xx) is not a verdict on the provider: the step's
        // `retry:` decides whether to ask again.
        return Err(StepError::failed(format!("the status page {url} answered HTTP {status}")));
    }
    Ok(match serde_json::from_slice(&body) {
        Ok(v) => Fetched::Json(v),
        Err(_) => Fetched::Missing(format!("{path}: not JSON")),
    })
}

async fn read_page(http: &reqwest::Client, base: &str, format: PageFormat) -> Result<Page, StepError> {
    let mut tried = Vec::new();
    if matches!(format, PageFormat::Auto | PageFormat::Statuspage) {
        match fetch(http, base, "/api/v2/summary.json").await? {
            Fetched::Json(v) if v.pointer("/status/indicator").is_some() => return statuspage(&v),
            Fetched::Json(_) => tried.push("/api/v2/summary.json: no `status.indicator`".to_owned()),
            Fetched::Missing(why) => tried.push(why),
        }
    }
    if matches!(format, PageFormat::Auto | PageFormat::Betterstack) {
        match fetch(http, base, "/index.json").await? {
            Fetched::Json(v) if v.pointer("/data/attributes/aggregate_state").is_some() => return betterstack(&v),
            Fetched::Json(_) => tried.push("/index.json: no `data.attributes.aggregate_state`".to_owned()),
            Fetched::Missing(why) => tried.push(why),
        }
    }
    let kinds = match format {
        PageFormat::Auto => "an Atlassian Statuspage or a Better Stack status page",
        PageFormat::Statuspage => "an Atlassian Statuspage",
        PageFormat::Betterstack => "a Better Stack status page",
    };
    Err(StepError::failed(format!("{base} is not {kinds} ({})", tried.join("; "))).with_hint(
        "check the status page URL: the page's own address without a path, as a browser shows it \
         (e.g. https://www.vercel-status.com); for another kind of page use `endpoints` with `expect_json`",
    ))
}

fn statuspage(v: &Value) -> Result<Page, StepError> {
    let indicator = v.pointer("/status/indicator").and_then(Value::as_str).unwrap_or("unknown").to_owned();
    let components = v
        .get("components")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c.get("name")?.as_str()?.to_owned(), c.get("status")?.as_str()?.to_owned())))
        .collect();
    Ok(Page {
        format: "statuspage",
        indicator,
        description: v.pointer("/status/description").cloned().unwrap_or(Value::Null),
        components,
    })
}

fn betterstack(v: &Value) -> Result<Page, StepError> {
    let state = v.pointer("/data/attributes/aggregate_state").and_then(Value::as_str).unwrap_or("unknown");
    let components = v
        .get("included")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|x| x.get("type").and_then(Value::as_str) == Some("status_page_resource"))
        .filter_map(|x| {
            let a = x.get("attributes")?;
            Some((a.get("public_name")?.as_str()?.to_owned(), a.get("status")?.as_str()?.to_owned()))
        })
        .collect();
    Ok(Page {
        format: "betterstack",
        indicator: component_indicator("betterstack", state).to_owned(),
        description: Value::String(state.to_owned()),
        components,
    })
}

/// A component's (or Better Stack page's) status word as a Statuspage indicator. Unknown
/// words are `unknown`, which is not healthy: better a look than a wrong all-clear.
fn component_indicator(format: &str, status: &str) -> &'static str {
    match (format, status) {
        (_, "operational") => "none",
        ("statuspage", "degraded_performance") | ("betterstack", "degraded") => "minor",
        ("statuspage", "partial_outage") | ("betterstack", "downtime") => "major",
        ("statuspage", "major_outage") => "critical",
        (_, "under_maintenance" | "maintenance") => "maintenance",
        _ => "unknown",
    }
}

async fn check(ctx: &StepContext, e: &Endpoint) -> Value {
    let started = Instant::now();
    let resp = match ctx.http.get(&e.url).send().await {
        Ok(r) => r,
        Err(err) => return json!({ "ok": false, "status": null, "latency_ms": null, "error": error_chain(&err) }),
    };
    let status = resp.status().as_u16();
    let mut resp = resp;
    // The body is read up to the capture cap and no further (a 1 GB answer is not downloaded).
    let (body, truncated) = match read_body_capped(&mut resp, MAX_CAPTURE).await {
        Ok(read) => read,
        Err(err) => return json!({ "ok": false, "status": status, "latency_ms": null, "error": error_chain(&err) }),
    };
    drop(resp);
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
    if truncated && !e.expect_json.is_empty() {
        problems.push(format!("the body is over {} MiB; it was not read further", MAX_CAPTURE >> 20));
    } else if !e.expect_json.is_empty() {
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
