//! Templates: the minijinja environment, the context a step sees, static reference
//! analysis for `validate`, and redaction of secrets.
//!
//! Strings in `with`, `vars`, `when` and `retry.until` are minijinja. Undefined is strict:
//! a typo is an error, never an empty string. A string that is exactly one `{{ expr }}`
//! keeps the expression's native type (a number stays a number), so typed parameters can
//! be templated.

mod context;
pub mod redact;

pub use context::{Context, EnvObject, Placeholder, StepsView, VarsSoFar};
pub use redact::Redactor;

use minijinja::{Environment, UndefinedBehavior, Value as JValue};
use serde_json::Value;
use std::sync::OnceLock;

/// The shared environment. Templates are compiled on use; they are short.
pub fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Bounds runaway loops such as `range(10**9)` in a playbook.
        env.set_fuel(Some(1_000_000));
        // `none` printed into text would become the word "none" in a command line or a
        // URL (an optional input left out): refuse, as for an undefined value.
        env.set_formatter(|out, state, value| {
            if value.is_none() {
                return Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, NONE_IN_TEXT));
            }
            minijinja::escape_formatter(out, state, value)
        });
        env
    })
}

const NONE_IN_TEXT: &str = "cannot put none into text";

/// Whether a string needs rendering at all (most do not; skipping them keeps runs fast).
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// A string that is exactly `{{ expr }}`: its expression, to be evaluated natively.
fn single_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim().trim_start_matches('-').trim_end_matches('-').trim())
}

/// A problem with a template: syntax at validate time, evaluation at run time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
}

fn describe(err: &minijinja::Error) -> String {
    let mut msg = match err.detail() {
        Some(d) => format!("{}: {d}", err.kind()),
        None => err.kind().to_string(),
    };
    if let Some(line) = err.line().filter(|l| *l > 1) {
        msg.push_str(&format!(" (template line {line})"));
    }
    msg
}

/// For an undefined-value error: which variable the template read that is not there, and,
/// for a step's outputs, why the step has none. `None` when it cannot be told.
fn explain_undefined(refs: Result<Vec<String>, TemplateError>, ctx: &JValue) -> Option<String> {
    let mut refs = refs.ok()?;
    refs.sort();
    for r in refs {
        let segs: Vec<&str> = r.split('.').collect();
        let mut v = ctx.clone();
        for (k, seg) in segs.iter().enumerate() {
            v = match v.get_attr(seg) {
                Ok(x) if !x.is_undefined() => x,
                _ => {
                    let path = segs[..=k].join(".");
                    let mut msg = format!("undefined value `{path}`");
                    if segs[0] == "steps" && k >= 2 {
                        let steps = ctx.get_attr("steps").ok()?;
                        let why = steps
                            .downcast_object_ref::<StepsView>()
                            .and_then(|view| view.explain(segs[1], segs.get(3).copied().filter(|_| k >= 3)));
                        if let Some(why) = why {
                            msg.push_str(&format!(": {why}"));
                        }
                    }
                    return Some(msg);
                }
            };
        }
    }
    None
}

/// The message of an evaluation error: the undefined variable named where it can be found.
fn describe_eval(err: &minijinja::Error, src: &str, expression: bool, ctx: &JValue) -> String {
    let refs = if expression { expression_references(src) } else { template_references(src) };
    let undefined = err.kind() == minijinja::ErrorKind::UndefinedError;
    undefined.then(|| explain_undefined(refs, ctx)).flatten().unwrap_or_else(|| describe(err))
}

/// The variables a template reads, as dotted paths (`steps.check.outputs.rows`).
pub fn template_references(src: &str) -> Result<Vec<String>, TemplateError> {
    if let Some(expr) = single_expression(src) {
        return expression_references(expr);
    }
    let tmpl = env().template_from_str(src).map_err(|e| TemplateError { message: describe(&e) })?;
    Ok(tmpl.undeclared_variables(true).into_iter().collect())
}

/// The variables an expression (`when`, `until`) reads.
pub fn expression_references(src: &str) -> Result<Vec<String>, TemplateError> {
    let expr = env().compile_expression(src).map_err(|e| TemplateError { message: describe(&e) })?;
    Ok(expr.undeclared_variables(true).into_iter().collect())
}

/// Renders one string. A lone `{{ expr }}` keeps the native type of its result.
pub fn render_str(src: &str, ctx: &JValue) -> Result<Value, TemplateError> {
    if !is_template(src) {
        return Ok(Value::String(src.to_owned()));
    }
    if let Some(expr) = single_expression(src) {
        let compiled = env().compile_expression(expr).map_err(|e| TemplateError { message: describe(&e) })?;
        let v =
            compiled.eval(ctx.clone()).map_err(|e| TemplateError { message: describe_eval(&e, expr, true, ctx) })?;
        if v.is_undefined()
            && let Some(message) = explain_undefined(expression_references(expr), ctx)
        {
            return Err(TemplateError { message });
        }
        return to_json(&v);
    }
    env().render_str(src, ctx.clone()).map(Value::String).map_err(|e| {
        let mut message = describe_eval(&e, src, false, ctx);
        if e.detail() == Some(NONE_IN_TEXT) {
            message = none_in_text(src, ctx).unwrap_or(message);
        }
        TemplateError { message }
    })
}

/// Names the optional inputs without a value that a template prints, and what to do.
fn none_in_text(src: &str, ctx: &JValue) -> Option<String> {
    let inputs = ctx.get_attr("inputs").ok()?;
    let mut names: Vec<String> = template_references(src)
        .ok()?
        .into_iter()
        .filter_map(|r| r.strip_prefix("inputs.").map(|n| n.split('.').next().unwrap_or(n).to_owned()))
        .filter(|n| inputs.get_attr(n).is_ok_and(|v| v.is_none()))
        .collect();
    names.dedup();
    if names.is_empty() {
        return None;
    }
    let list = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    Some(format!(
        "optional input {list} has no value and cannot go into text: pass `-i {}=...`, give it a default, or guard it with `{{% if inputs.{} is not none %}}`",
        names[0], names[0]
    ))
}

/// Renders every string inside a value; the error names the path (`with.url`).
pub fn render_value(v: &Value, ctx: &JValue, path: &str) -> Result<Value, TemplateError> {
    Ok(match v {
        Value::String(s) => {
            render_str(s, ctx).map_err(|e| TemplateError { message: format!("`{path}`: {}", e.message) })?
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| render_value(item, ctx, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, item)| Ok((k.clone(), render_value(item, ctx, &format!("{path}.{k}"))?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// Whether a value holds any template at all.
pub fn has_template(v: &Value) -> bool {
    match v {
        Value::String(s) => is_template(s),
        Value::Array(items) => items.iter().any(has_template),
        Value::Object(map) => map.values().any(has_template),
        _ => false,
    }
}

/// Evaluates a `when`/`until` expression to a boolean (Jinja truthiness).
pub fn eval_bool(expr: &str, ctx: &JValue) -> Result<bool, TemplateError> {
    let compiled = env().compile_expression(expr).map_err(|e| TemplateError { message: describe(&e) })?;
    let v = compiled.eval(ctx.clone()).map_err(|e| TemplateError { message: describe_eval(&e, expr, true, ctx) })?;
    Ok(v.is_true())
}

/// Converts a template result to JSON. Placeholders (dry run) become their display text.
pub fn to_json(v: &JValue) -> Result<Value, TemplateError> {
    if v.is_undefined() {
        return Err(TemplateError { message: "undefined value".into() });
    }
    if v.downcast_object_ref::<Placeholder>().is_some() {
        return Ok(Value::String(v.to_string()));
    }
    serde_json::to_value(v).map_err(|e| TemplateError { message: format!("cannot use the value as data: {e}") })
}
