//! Pieces shared by step types.

use std::time::Duration;

/// Captured output beyond this is cut (and says so): a runaway command must not eat memory.
pub const MAX_CAPTURE: usize = 4 * 1024 * 1024;

pub fn truncate_capture(bytes: &[u8]) -> String {
    // Redact first, then cut: a secret straddling the cut must not leave its head behind.
    // Both steps borrow when they can, so only the kept part is copied.
    let redactor = crate::template::redact::global();
    let lossy = String::from_utf8_lossy(bytes);
    let text = redactor.redact(&lossy);
    if text.len() <= MAX_CAPTURE {
        return text.into_owned();
    }
    let mut end = MAX_CAPTURE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[runbook: output cut at {} MiB of {} bytes]", &text[..end], MAX_CAPTURE >> 20, bytes.len())
}

/// The one HTTP client of a run: rustls, a user agent, and a connect timeout. Per-request
/// time limits come from the step's `timeout`.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| format!("cannot create the HTTP client: {e}"))
}

/// The last few lines of a text, for error messages.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `scheme://host[:port]` of a URL, for plans that must not print tokens in paths.
pub fn url_origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => url.to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}

/// Template results keep their native type (`{{ port }}` is a number). Where a parameter is
/// text by nature (argv, env values, headers), numbers and booleans are taken as text.
pub mod lenient {
    use indexmap::IndexMap;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    fn text<E: serde::de::Error>(v: Value) -> Result<String, E> {
        match v {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(E::custom(format!("expected text, got `{other}`"))),
        }
    }

    pub fn opt_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        match Option::<Vec<Value>>::deserialize(d)? {
            Some(items) => Ok(Some(items.into_iter().map(text).collect::<Result<_, _>>()?)),
            None => Ok(None),
        }
    }

    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, String>, D::Error> {
        IndexMap::<String, Value>::deserialize(d)?.into_iter().map(|(k, v)| Ok((k, text(v)?))).collect()
    }
}
