//! Durations as SREs write them: `30s`, `5m`, `2h`, `1h30m`, `250ms`, `0s`; and the one
//! home of durations shown to people and measured between two recorded timestamps.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration `{text}`: expected a number before `{rest}`"));
        }
        let n: u128 = rest[..digits].parse().map_err(|_| format!("invalid duration `{text}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let millis = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("invalid duration `{text}`: missing unit (use ms, s, m, h or d, e.g. `30s`)")),
            other => return Err(format!("invalid duration `{text}`: unknown unit `{other}` (use ms, s, m, h or d)")),
        };
        total = total.saturating_add(n.saturating_mul(millis));
        rest = &rest[unit_len..];
    }
    let millis = u64::try_from(total).map_err(|_| format!("invalid duration `{text}`: too long"))?;
    Ok(Duration::from_millis(millis))
}

pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let (h, m, s, rem) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    if rem > 0 {
        out.push_str(&format!("{rem}ms"));
    }
    out
}

/// An elapsed time for people, to a tenth of a second or to the minute (`850ms`, `4.2s`,
/// `3m05s`, `1h02m`): rounded, unlike [`format_duration`], which writes playbook syntax.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        let s = d.as_secs();
        if s < 3600 { format!("{}m{:02}s", s / 60, s % 60) } else { format!("{}h{:02}m", s / 3600, s / 60 % 60) }
    }
}

/// The time between two recorded RFC 3339 timestamps; none if either is missing or
/// unreadable, or if the second comes first.
pub fn between(from: Option<&str>, to: Option<&str>) -> Option<Duration> {
    let (a, b): (jiff::Timestamp, jiff::Timestamp) = (from?.parse().ok()?, to?.parse().ok()?);
    Duration::try_from(b.duration_since(a)).ok()
}

/// A duration in milliseconds from a report or a view (a JSON number), `-` when absent.
pub fn human_ms(ms: Option<u64>) -> String {
    ms.map(|m| human_duration(Duration::from_millis(m))).unwrap_or_else(|| "-".into())
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match &v {
            serde_json::Value::String(s) => parse_duration(s).map(Dur).map_err(serde::de::Error::custom),
            serde_json::Value::Number(n) if n.as_u64() == Some(0) => Ok(Dur(Duration::ZERO)),
            _ => Err(serde::de::Error::custom(format!(
                "invalid duration `{v}`: write it as a string with a unit, e.g. `30s`, `5m`, `2h`"
            ))),
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration such as `30s`, `5m`, `2h` or `1h30m`."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(format_duration(Duration::from_millis(3_723_004)), "1h2m3s4ms");
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit `x`"));
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
        assert!(parse_duration("s").unwrap_err().contains("expected a number"));
    }
}
