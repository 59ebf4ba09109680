//! Pieces shared by step types.

use std::time::Duration;

/// Captured output beyond this is cut (and says so): a runaway command must not eat memory.
pub const MAX_CAPTURE: usize = 4 * 1024 * 1024;

pub fn truncate_capture(bytes: &[u8]) -> String {
    if bytes.len() <= MAX_CAPTURE {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut s = String::from_utf8_lossy(&bytes[..MAX_CAPTURE]).into_owned();
    s.push_str(&format!("\n[runbook: output cut at {} MiB of {} bytes]", MAX_CAPTURE >> 20, bytes.len()));
    s
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

    /// What the schema says of such a parameter: text, a number or a boolean, as the
    /// deserializers below accept (editors must not flag `command: [sleep, 5]`).
    pub struct Text;

    impl schemars::JsonSchema for Text {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> std::borrow::Cow<'static, str> {
            "Text".into()
        }
        fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
            schemars::json_schema!({ "type": ["string", "number", "boolean"] })
        }
    }

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
