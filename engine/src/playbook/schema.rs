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
    for kind in steps::all() {
        let params = kind.params_schema(&mut generator);
        per_type.push((kind.name(), params.to_value(), kind.summary()));
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
            json!({ "type": "string", "pattern": "\\{\\{|\\{%", "description": "A minijinja template, rendered at run time." }),
        );
        if let Some(step) = defs.get_mut("RawStep").and_then(Value::as_object_mut) {
            let all_of: Vec<Value> = per_type
                .iter()
                .map(|(n, params, _)| json!({ "if": { "properties": { "type": { "const": n } } }, "then": { "properties": { "with": params } } }))
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

/// Lets every parameter of a step type (and of each variant of a tagged one) be a template.
fn allow_templates(def: &mut Value, defs_key: &str) {
    if let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) {
        for (_, p) in props.iter_mut() {
            let original = p.take();
            *p = json!({ "anyOf": [original, { "$ref": format!("#/{defs_key}/Template") }] });
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
