//! Input values: parsed from `-i key=value` by their declared type, checked against
//! `enum`, defaults applied, required ones demanded.

use super::Playbook;
use super::raw::{InputType, RawInput};
use indexmap::IndexMap;
use serde_json::Value;

/// Checks (and normalizes) a value that came from YAML (a default) or JSON.
pub fn check_value(kind: InputType, v: &Value) -> Result<Value, String> {
    let bad = || format!("expected {}, got `{v}`", article(kind));
    Ok(match kind {
        InputType::String => match v {
            Value::String(_) => v.clone(),
            Value::Number(_) | Value::Bool(_) => Value::String(v.to_string()),
            _ => return Err(bad()),
        },
        InputType::Int => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v.clone(),
            Value::String(s) => Value::from(s.trim().parse::<i64>().map_err(|_| bad())?),
            _ => return Err(bad()),
        },
        InputType::Float => match v {
            Value::Number(_) => v.clone(),
            Value::String(s) => {
                let f: f64 = s.trim().parse().map_err(|_| bad())?;
                serde_json::Number::from_f64(f).map(Value::Number).ok_or_else(bad)?
            }
            _ => return Err(bad()),
        },
        InputType::Bool => match v {
            Value::Bool(_) => v.clone(),
            Value::String(s) => Value::Bool(parse_bool(s).ok_or_else(bad)?),
            _ => return Err(bad()),
        },
        InputType::List => match v {
            Value::Array(_) => v.clone(),
            _ => return Err(bad()),
        },
        InputType::Map => match v {
            Value::Object(_) => v.clone(),
            _ => return Err(bad()),
        },
        InputType::Timestamp => match v {
            Value::String(s) => {
                let ts: jiff::Timestamp = s.trim().parse().map_err(|e| {
                    format!("`{s}` is not an RFC 3339 timestamp ({e}); write e.g. `2026-11-27T09:12:00Z`")
                })?;
                Value::String(ts.to_string())
            }
            _ => return Err(bad()),
        },
        InputType::Duration => match v {
            Value::String(s) => {
                super::parse_duration(s)?;
                v.clone()
            }
            _ => return Err(bad()),
        },
    })
}

/// Parses the text of `-i key=value` by the declared type. Lists and maps take JSON
/// (`-i 'tables=["orders","users"]'`); a list also takes `a,b,c`.
pub fn parse_cli_value(kind: InputType, text: &str) -> Result<Value, String> {
    let v = match kind {
        InputType::List => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Array(_)) => v,
            _ if text.trim().is_empty() => Value::Array(Vec::new()),
            // Meant as JSON but broken (`[1,2`): splitting it on commas would hide the typo.
            Err(e) if text.trim_start().starts_with('[') => {
                return Err(format!("`{text}` is not a JSON list ({e}); write e.g. `[1, 2]` or `a,b,c`"));
            }
            _ => Value::Array(text.split(',').map(|s| Value::String(s.trim().to_owned())).collect()),
        },
        InputType::Map => serde_json::from_str::<Value>(text)
            .map_err(|e| format!("expected a JSON object such as `{{\"a\": 1}}`: {e}"))?,
        _ => Value::String(text.to_owned()),
    };
    check_value(kind, &v)
}

/// `true` or `false` only, as in the playbook itself (YAML 1.2 core schema): `yes`, `on`
/// or `1` are refused rather than guessed, so that `-i force=no` cannot surprise anyone.
fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn article(kind: InputType) -> &'static str {
    match kind {
        InputType::String => "a string",
        InputType::Int => "an integer",
        InputType::Float => "a number",
        InputType::Bool => "true or false",
        InputType::List => "a list",
        InputType::Map => "a map",
        InputType::Timestamp => "an RFC 3339 timestamp",
        InputType::Duration => "a duration such as `30s`",
    }
}

pub fn check_enum(name: &str, spec: &RawInput, v: &Value) -> Result<(), String> {
    match &spec.allowed {
        Some(allowed) if !allowed.contains(v) => Err(format!(
            "input `{name}`: `{v}` is not one of {}",
            allowed.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
        )),
        _ => Ok(()),
    }
}

/// Every problem with the given inputs, in one list.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct InputErrors(pub Vec<String>);

/// Resolves the inputs of a run: given values parsed by type, defaults applied, required
/// ones demanded. `given` values are raw text (from `-i`) or stored JSON (resume).
pub fn resolve(pb: &Playbook, given: &[(String, GivenValue)]) -> Result<IndexMap<String, Value>, InputErrors> {
    resolve_with(pb, given, &mut None)
}

/// Like [`resolve`], for reading a playbook (`plan`, `exec --dry-run`): a missing required
/// input becomes the placeholder `<inputs.NAME>` and a warning instead of an error.
pub fn resolve_for_reading(
    pb: &Playbook,
    given: &[(String, GivenValue)],
) -> Result<(IndexMap<String, Value>, Vec<String>), InputErrors> {
    let mut warnings = Some(Vec::new());
    let values = resolve_with(pb, given, &mut warnings)?;
    Ok((values, warnings.unwrap_or_default()))
}

fn resolve_with(
    pb: &Playbook,
    given: &[(String, GivenValue)],
    placeholders: &mut Option<Vec<String>>,
) -> Result<IndexMap<String, Value>, InputErrors> {
    let mut errors = Vec::new();
    let mut values = IndexMap::new();
    for (name, given) in given {
        let Some(spec) = pb.inputs.get(name) else {
            let hint = super::diag::did_you_mean(name, pb.inputs.keys().map(String::as_str))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            let known = if pb.inputs.is_empty() {
                "the playbook declares no inputs".to_owned()
            } else {
                format!("declared: {}", pb.inputs.keys().cloned().collect::<Vec<_>>().join(", "))
            };
            errors.push(format!("unknown input `{name}`{hint}; {known}"));
            continue;
        };
        let parsed = match given {
            GivenValue::Text(t) => parse_cli_value(spec.kind, t),
            GivenValue::Json(v) => check_value(spec.kind, v),
        };
        match parsed.and_then(|v| check_enum(name, spec, &v).map(|_| v)) {
            Ok(v) => {
                values.insert(name.clone(), v);
            }
            Err(_) if spec.secret => errors.push(secret_error(name, spec, "")),
            Err(e) if e.starts_with("input `") => errors.push(e),
            Err(e) => errors.push(format!("input `{name}`: {e}")),
        }
    }
    for (name, spec) in &pb.inputs {
        // A value given with `-i` was either taken or already reported as bad: never also
        // "missing" (a follow-on error that would send the operator after the wrong fix).
        let given_here = given.iter().any(|(n, _)| n == name);
        if values.contains_key(name) || given_here {
            continue;
        }
        if let Ok(env) = std::env::var(input_env_var(name)) {
            match parse_cli_value(spec.kind, &env) {
                Ok(v) => {
                    values.insert(name.clone(), v);
                    continue;
                }
                Err(_) if spec.secret => {
                    errors.push(secret_error(name, spec, &format!(" (from ${})", input_env_var(name))));
                    continue;
                }
                Err(e) => {
                    errors.push(format!("input `{name}` (from ${}): {e}", input_env_var(name)));
                    continue;
                }
            }
        }
        match &spec.default {
            Some(d) => {
                values.insert(name.clone(), check_value(spec.kind, d).unwrap_or_else(|_| d.clone()));
            }
            None if spec.required => {
                let msg = format!(
                    "missing required input `{name}`{}: pass `-i {name}=...` or set ${}",
                    spec.description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default(),
                    input_env_var(name)
                );
                match placeholders {
                    Some(w) => {
                        w.push(msg);
                        values.insert(name.clone(), Value::String(format!("<inputs.{name}>")));
                    }
                    None => errors.push(msg),
                }
            }
            None => {
                values.insert(name.clone(), Value::Null);
            }
        }
    }
    if errors.is_empty() { Ok(values) } else { Err(InputErrors(errors)) }
}

/// The error of a secret input: what was expected, never what was given (the redactor does
/// not know the value yet, and a mistyped secret is still a secret).
fn secret_error(name: &str, spec: &RawInput, source: &str) -> String {
    let allowed = match &spec.allowed {
        Some(a) => format!(", one of {}", a.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")),
        None => String::new(),
    };
    format!("input `{name}`{source}: expected {}{allowed} (the value is secret and not shown)", article(spec.kind))
}

#[derive(Debug, Clone)]
pub enum GivenValue {
    Text(String),
    Json(Value),
}

/// Inputs may also come from the environment: `RUNBOOK_INPUT_DB_PASSWORD` for `db_password`.
pub fn input_env_var(name: &str) -> String {
    format!("RUNBOOK_INPUT_{}", name.to_ascii_uppercase())
}
