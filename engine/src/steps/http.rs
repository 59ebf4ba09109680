//! `http`: any HTTP request; outputs status, headers, body and the JSON body.

use super::support::{CUT_OVERLAP, MAX_CAPTURE, body_text, error_chain, read_body_capped};
use super::{Outputs, ParamError, StepContext, StepError, TypedStep};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::time::Instant;

pub struct Http;

#[derive(Debug, Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

/// One status code or a list of them.
#[derive(Debug, Deserialize, JsonSchema, Clone)]
#[serde(untagged)]
pub enum StatusSet {
    One(u16),
    Many(Vec<u16>),
}

impl StatusSet {
    fn contains(&self, code: u16) -> bool {
        match self {
            StatusSet::One(c) => *c == code,
            StatusSet::Many(cs) => cs.contains(&code),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpParams {
    /// The HTTP method (default GET).
    #[serde(default)]
    pub method: Method,
    /// The URL to call (http or https).
    pub url: String,
    /// Request headers; numbers and booleans are sent as text.
    #[serde(default, deserialize_with = "super::support::lenient::map")]
    #[schemars(with = "IndexMap<String, super::support::lenient::Text>")]
    pub headers: IndexMap<String, String>,
    /// A raw request body.
    #[serde(default)]
    pub body: Option<String>,
    /// A JSON request body (sets `content-type: application/json`).
    #[serde(default)]
    pub json: Option<Value>,
    /// Status codes that count as success; default: any 2xx.
    #[serde(default)]
    pub expect_status: Option<StatusSet>,
}

impl TypedStep for Http {
    const NAME: &'static str = "http";
    const SUMMARY: &'static str = "any HTTP request; outputs status, headers, body, json";
    type Params = HttpParams;

    fn idempotent(p: &HttpParams) -> bool {
        matches!(p.method, Method::Get | Method::Head | Method::Options)
    }

    fn validate(p: &HttpParams) -> Result<(), ParamError> {
        if p.body.is_some() && p.json.is_some() {
            return Err(ParamError::at("json", "give either `body` or `json`, not both"));
        }
        if !crate::template::is_template(&p.url) && reqwest::Url::parse(&p.url).is_err() {
            return Err(ParamError::at("url", format!("`{}` is not a valid URL", p.url)));
        }
        Ok(())
    }

    fn plan(p: &HttpParams) -> String {
        format!("{} {}", p.method.as_str(), p.url)
    }

    async fn run(&self, ctx: &StepContext, p: HttpParams) -> Result<Outputs, StepError> {
        let method = reqwest::Method::from_bytes(p.method.as_str().as_bytes()).expect("known method");
        let mut req = ctx.http.request(method, &p.url);
        for (k, v) in &p.headers {
            req = req.header(k, v);
        }
        if let Some(body) = p.body {
            req = req.body(body);
        } else if let Some(json) = &p.json {
            req = req.json(json);
        }
        let started = Instant::now();
        let mut resp = req.send().await.map_err(|e| {
            StepError::failed(format!("{} {} failed: {}", p.method.as_str(), p.url, error_chain(&e.without_url())))
        })?;
        let status = resp.status().as_u16();
        let headers: serde_json::Map<String, Value> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())))
            .collect();
        // Read at most the cap (plus the redaction overlap) and stop: a 1 GB answer must not
        // become 1 GB of memory.
        let (bytes, truncated) = read_body_capped(&mut resp, MAX_CAPTURE + CUT_OVERLAP).await.map_err(|e| {
            StepError::failed(format!("reading the body of {} failed: {}", p.url, error_chain(&e.without_url())))
        })?;
        drop(resp);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let body = body_text(&bytes, truncated, MAX_CAPTURE);
        let json = if truncated { None } else { serde_json::from_slice::<Value>(&bytes).ok() };
        let outputs = serde_json::json!({
            "status": status,
            "headers": headers,
            "body": body,
            "json": json,
            "truncated": truncated,
            "elapsed_ms": elapsed_ms,
        });
        let ok = match &p.expect_status {
            Some(set) => set.contains(status),
            None => (200..300).contains(&status),
        };
        if !ok {
            let expected = match &p.expect_status {
                Some(StatusSet::One(c)) => c.to_string(),
                Some(StatusSet::Many(cs)) => format!("{cs:?}"),
                None => "2xx".into(),
            };
            return Err(StepError::failed(format!(
                "{} {} answered HTTP {status}, expected {expected}",
                p.method.as_str(),
                p.url
            ))
            .with_outputs(outputs));
        }
        Ok(outputs)
    }
}
