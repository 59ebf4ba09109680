//! The JSON Schema of `runbook/v1`, generated from the raw types and the step types'
//! parameter types, so it cannot drift from what the loader accepts. Templated values
//! (`"{{ inputs.port }}"` where a number is expected) are allowed by the schema too.

use super::raw::RawPlaybook;
use crate::steps;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

pub fn schema() -> Value {
    let mut generator = SchemaSettings::draft07().into_generator();
    let mut per_type = Vec::new();
    // Types whose parameters have required fields cannot do without `with`.
    let mut needs_with = Vec::new();
    for kind in steps::all() {
        let params = kind.params_schema(&mut generator);
        per_type.push((kind.name(), params.to_value(), kind.summary()));
        needs_with.push(kind.check(&json!({})).is_err());
    }
    let root = generator.into_root_schema_for::<RawPlaybook>();
    let mut root = root.to_value();
    let defs_key = if root.get("definitions").is_some() { "definitions" } else { "$defs" };
    let names: Vec<&str> = per_type.iter().map(|(n, _, _)| *n).collect();
    // Allow templates wherever a parameter's value goes.
    if let Some(defs) = root.get_mut(defs_key).and_then(Value::as_object_mut) {
        // Every definition a step type's parameters reach, once each.
        let mut queue: Vec<String> = per_type.iter().filter_map(|(_, params, _)| ref_name(params)).collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(name) = queue.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(def) = defs.get_mut(&name) {
                collect_refs(def, &mut queue);
                allow_templates(def, defs_key);
            }
        }
        defs.insert(
            "Template".into(),
            json!({ "type": "string", "pattern": "\\{\\{|\\{%", "description": "A minijinja template (`{{ inputs.port }}`), rendered at run time; its result must fit the parameter." }),
        );
        tighten(defs);
        if let Some(step) = defs.get_mut("RawStep").and_then(Value::as_object_mut) {
            let all_of: Vec<Value> = per_type
                .iter()
                .zip(&needs_with)
                .map(|((n, params, summary), needs_with)| {
                    let with = json!({ "allOf": [params], "description": format!("The parameters of a `{n}` step: {summary}.") });
                    let mut then = json!({ "properties": { "with": with } });
                    if *needs_with {
                        then["required"] = json!(["with"]);
                    }
                    json!({ "if": { "properties": { "type": { "const": n } }, "required": ["type"] }, "then": then })
                })
                .collect();
            step.insert("allOf".into(), Value::Array(all_of));
            if let Some(t) = step.get_mut("properties").and_then(|p| p.get_mut("type")) {
                t["enum"] = json!(names);
                t["description"] =
                    json!(per_type.iter().map(|(n, _, s)| format!("`{n}`: {s}")).collect::<Vec<_>>().join("; "));
            }
        }
    }
    root["$id"] = json!("https://runbook.dev/schemas/playbook.schema.json");
    root
}

fn ref_name(v: &Value) -> Option<String> {
    v.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()).map(str::to_owned)
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(n) = ref_name(v) {
                out.push(n);
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// Text where the engine renders a template, never an expression inside `{{ }}`.
const NO_TEMPLATE: &str = "\\{\\{|\\{%|\\{#";

/// Rules `validate` applies that the generated types do not say by themselves. Each
/// names a definition; a test checks they all exist.
const RULES: &[(&str, &str)] = &[
    (
        "ShellParams",
        r#"{ "oneOf": [ { "required": ["command"], "not": { "required": ["script"] } }, { "required": ["script"], "not": { "required": ["command"] } } ] }"#,
    ),
    ("HttpParams", r#"{ "not": { "required": ["body", "json"] } }"#),
    ("CheckParams", r#"{ "anyOf": [ { "required": ["statuspage"] }, { "required": ["endpoints"] } ] }"#),
];

fn tighten(defs: &mut serde_json::Map<String, Value>) {
    for (name, rule) in RULES {
        let rule: Value = serde_json::from_str(rule).expect("a rule is JSON");
        if let (Some(def), Value::Object(rule)) = (defs.get_mut(*name).and_then(Value::as_object_mut), rule) {
            def.extend(rule);
        }
    }
    // `when` and `until` are expressions: written without braces.
    if let Some(expr) = defs.get_mut("WhenValue").and_then(|w| w.pointer_mut("/anyOf/1")) {
        expr["not"] = json!({ "pattern": NO_TEMPLATE });
    }
    if let Some(until) = defs.get_mut("RawRetry").and_then(|r| r.pointer_mut("/properties/until")) {
        until["not"] = json!({ "pattern": NO_TEMPLATE });
    }
    // A step's `timeout` bounds each attempt: zero would fail every attempt at once.
    if let Some(timeout) = defs.get_mut("RawStep").and_then(|r| r.pointer_mut("/properties/timeout")) {
        timeout["not"] = json!({ "type": "string", "pattern": "^(0+(ms|s|m|h|d))+$" });
    }
}

/// Lets every parameter of a step type (and of each variant of a tagged one) be a template.
/// The parameter's own description moves up, where editors look for it.
fn allow_templates(def: &mut Value, defs_key: &str) {
    if let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) {
        for (_, p) in props.iter_mut() {
            let mut original = p.take();
            let mut description = original.as_object_mut().and_then(|o| o.remove("description"));
            // The tag of a tagged step type (`provider: postgres`) says which variant this is.
            if description.is_none()
                && let Some(c) = original.get("const").and_then(Value::as_str)
            {
                description = Some(json!(format!("Selects these parameters: `{c}`.")));
            }
            *p = json!({ "anyOf": [original, { "$ref": format!("#/{defs_key}/Template") }] });
            if let Some(d) = description {
                p["description"] = d;
            }
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(variants) = def.get_mut(key).and_then(Value::as_array_mut) {
            variants.iter_mut().for_each(|v| allow_templates(v, defs_key));
        }
    }
}

pub fn schema_json() -> String {
    serde_json::to_string_pretty(&schema()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A renamed parameter type must not make its rule vanish silently.
    #[test]
    fn every_rule_names_a_definition() {
        let schema = schema();
        for (name, rule) in RULES {
            let def = &schema["definitions"][*name];
            assert!(def.is_object(), "no definition `{name}`");
            let rule: Value = serde_json::from_str(rule).unwrap();
            for key in rule.as_object().unwrap().keys() {
                assert_eq!(def[key], rule[key], "`{name}` lacks its `{key}` rule");
            }
        }
    }
}
