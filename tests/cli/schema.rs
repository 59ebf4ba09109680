//! The JSON Schema and `validate` give the same answer on a corpus of playbooks: both
//! accept or both reject. Where they cannot agree (rules about the whole playbook that a
//! JSON Schema cannot express), the case says which rule it is.

use crate::support::{Env, repo_root};

const HEAD: &str = "apiVersion: runbook/v1\nname: t\n";
const WAIT: &str = "steps:\n  - id: a\n    type: wait\n    with: { duration: 0s }\n";

/// The rules only `validate` can check: the schema accepts these playbooks, `validate`
/// refuses them. Every one has a case below.
const SEMANTIC_RULES: &[&str] = &[
    "step ids are unique",
    "needs name existing steps, not the step itself, without cycles",
    "templates parse, and reference declared inputs, vars and steps among the needs",
    "`when` and `retry.until` are valid expressions",
    "an input's default and enum values fit its type",
    "a secret input has no default",
    "`retry.max_delay` is not shorter than `retry.delay`",
    "names in `secrets` are environment variable names",
    "input and var names are identifiers",
    "YAML keys are unique",
    "a step type's own checks (e.g. `shell` ok_codes not empty, `check-status` endpoints not empty)",
];

struct Case {
    name: &'static str,
    yaml: String,
    valid: bool,
    /// For a playbook only `validate` refuses: which of [`SEMANTIC_RULES`].
    semantic: Option<&'static str>,
}

fn ok(name: &'static str, body: &str) -> Case {
    Case { name, yaml: format!("{HEAD}{body}"), valid: true, semantic: None }
}

fn bad(name: &'static str, body: &str) -> Case {
    Case { name, yaml: format!("{HEAD}{body}"), valid: false, semantic: None }
}

fn semantic(name: &'static str, rule: &'static str, body: &str) -> Case {
    Case { name, yaml: format!("{HEAD}{body}"), valid: false, semantic: Some(rule) }
}

fn step(extra: &str) -> String {
    format!("steps:\n  - id: a\n    type: wait\n    with: {{ duration: 0s }}\n{extra}")
}

fn corpus() -> Vec<Case> {
    vec![
        ok("minimal", WAIT),
        ok(
            "argv numbers and booleans",
            "steps:\n  - id: a\n    type: shell\n    with: { command: [sleep, 0, true] }\n",
        ),
        ok(
            "env numbers",
            "steps:\n  - id: a\n    type: shell\n    with: { script: \"true\", env: { PORT: 5432, DEBUG: false } }\n",
        ),
        ok(
            "header numbers",
            "steps:\n  - id: a\n    type: http\n    with: { url: \"http://x\", headers: { X-Retry: 3 } }\n",
        ),
        ok(
            "templated number",
            "inputs:\n  d: { type: duration, default: 1s }\nsteps:\n  - id: a\n    type: wait\n    with: { duration: \"{{ inputs.d }}\" }\n",
        ),
        ok("approval", "steps:\n  - id: a\n    type: approval\n    with: { message: go? }\n"),
        ok("when and until", &step("    when: \"true\"\n    retry: { attempts: 2, until: \"outputs is defined\" }\n")),
        ok("when bool", &step("    when: false\n")),
        ok("timeout", &step("    timeout: 1m\n")),
        ok("needs", &format!("{WAIT}  - id: b\n    type: wait\n    needs: [a]\n    with: {{ duration: 0s }}\n")),
        ok("objectives", &format!("objectives: {{ rto: 15m, rpo: point-in-time }}\n{WAIT}")),
        ok(
            "inputs",
            &format!(
                "inputs:\n  who: {{ type: string, required: true, description: x }}\n  n: {{ type: int, default: 3, enum: [1, 3] }}\n{WAIT}"
            ),
        ),
        bad("no steps", ""),
        bad("empty steps", "steps: []\n"),
        bad("unknown top key", &format!("stepz: []\n{WAIT}")),
        bad("bad apiVersion", WAIT).edit("runbook/v1", "runbook/v2"),
        bad("unknown step key", &step("    need: [b]\n")),
        bad("unknown step type", "steps:\n  - id: a\n    type: shel\n"),
        bad("bad id", "steps:\n  - id: Bad\n    type: wait\n    with: { duration: 0s }\n"),
        bad("with missing where required", "steps:\n  - id: a\n    type: wait\n"),
        bad("with missing field", "steps:\n  - id: a\n    type: wait\n    with: {}\n"),
        bad("unknown parameter", "steps:\n  - id: a\n    type: wait\n    with: { duration: 0s, extra: 1 }\n"),
        bad("command and script", "steps:\n  - id: a\n    type: shell\n    with: { command: [echo], script: echo }\n"),
        bad("neither command nor script", "steps:\n  - id: a\n    type: shell\n    with: { cwd: / }\n"),
        bad(
            "body and json",
            "steps:\n  - id: a\n    type: http\n    with: { url: \"http://x\", body: x, json: { a: 1 } }\n",
        ),
        bad("argv holds a map", "steps:\n  - id: a\n    type: shell\n    with: { command: [echo, { a: 1 }] }\n"),
        bad(
            "needs twice",
            &format!("{WAIT}  - id: b\n    type: wait\n    needs: [a, a]\n    with: {{ duration: 0s }}\n"),
        ),
        bad("braces in when", &step("    when: \"{{ true }}\"\n")),
        bad("braces in until", &step("    retry: { attempts: 2, until: \"{{ true }}\" }\n")),
        bad("zero timeout", &step("    timeout: 0s\n")),
        bad("timeout without unit", &step("    timeout: 5\n")),
        bad("bad trigger", &step("    trigger: alwyas\n")),
        bad("bad backoff", &step("    retry: { attempts: 2, backoff: exponentail }\n")),
        bad("zero attempts", &step("    retry: { attempts: 0 }\n")),
        bad("bad input type", &format!("inputs:\n  n: {{ type: integr }}\n{WAIT}")),
        bad("unknown input key", &format!("inputs:\n  n: {{ requird: true }}\n{WAIT}")),
        bad("when is a list", &step("    when: [1]\n")),
        bad("bad severity", &format!("severity: high\n{WAIT}")),
        bad("bad name", WAIT).edit("name: t\n", "name: Bad Name\n"),
        bad("continue_on_error text", &step("    continue_on_error: maybe\n")),
        bad("bad method", "steps:\n  - id: a\n    type: http\n    with: { url: \"http://x\", method: FETCH }\n"),
        semantic(
            "duplicate ids",
            SEMANTIC_RULES[0],
            &format!("{WAIT}  - id: a\n    type: wait\n    with: {{ duration: 0s }}\n"),
        ),
        semantic("unknown need", SEMANTIC_RULES[1], &step("    needs: [nope]\n")),
        semantic(
            "cycle",
            SEMANTIC_RULES[1],
            "steps:\n  - id: a\n    type: wait\n    needs: [b]\n    with: { duration: 0s }\n  - id: b\n    type: wait\n    needs: [a]\n    with: { duration: 0s }\n",
        ),
        semantic(
            "undeclared input",
            SEMANTIC_RULES[2],
            "steps:\n  - id: a\n    type: shell\n    with: { command: [echo, \"{{ inputs.who }}\"] }\n",
        ),
        semantic(
            "template syntax",
            SEMANTIC_RULES[2],
            "steps:\n  - id: a\n    type: shell\n    with: { command: [echo, \"{{ inputs. }}\"] }\n",
        ),
        semantic(
            "race",
            SEMANTIC_RULES[2],
            &format!(
                "{WAIT}  - id: b\n    type: shell\n    with: {{ command: [echo, \"{{{{ steps.a.status }}}}\"] }}\n"
            ),
        ),
        semantic("bad when expression", SEMANTIC_RULES[3], &step("    when: \"1 +\"\n")),
        semantic(
            "default of wrong type",
            SEMANTIC_RULES[4],
            &format!("inputs:\n  n: {{ type: int, default: x }}\n{WAIT}"),
        ),
        semantic(
            "secret with default",
            SEMANTIC_RULES[5],
            &format!("inputs:\n  p: {{ secret: true, default: x }}\n{WAIT}"),
        ),
        semantic(
            "max_delay shorter",
            SEMANTIC_RULES[6],
            &step("    retry: { attempts: 2, delay: 10s, max_delay: 1s }\n"),
        ),
        semantic("secret name", SEMANTIC_RULES[7], &format!("secrets: [lower]\n{WAIT}")),
        semantic("input name", SEMANTIC_RULES[8], &format!("inputs:\n  bad-name: {{ type: string }}\n{WAIT}")),
        semantic("duplicate key", SEMANTIC_RULES[9], &step("    timeout: 1s\n    timeout: 2s\n")),
        semantic(
            "empty ok_codes",
            SEMANTIC_RULES[10],
            "steps:\n  - id: a\n    type: shell\n    with: { command: [echo], ok_codes: [] }\n",
        ),
    ]
}

impl Case {
    fn edit(mut self, from: &str, to: &str) -> Case {
        assert!(self.yaml.contains(from), "{}: no `{from}` to edit", self.name);
        self.yaml = self.yaml.replace(from, to);
        self
    }
}

#[test]
fn schema_and_validate_agree() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("schemas/playbook.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let env = Env::new();
    let mut cases = corpus();
    for dir in ["playbooks", "examples"] {
        for e in std::fs::read_dir(repo_root().join(dir)).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "yaml") {
                let yaml = std::fs::read_to_string(&p).unwrap();
                cases.push(Case { name: "shipped", yaml, valid: true, semantic: None });
            }
        }
    }
    let used: std::collections::HashSet<&str> = cases.iter().filter_map(|c| c.semantic).collect();
    assert_eq!(used.len(), SEMANTIC_RULES.len(), "every semantic rule has a case");
    let mut wrong = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let file = format!("c{i}.yaml");
        env.write(&file, &c.yaml);
        let r = env.run(&["validate", &file]);
        let by_validate = r.code == 0;
        // The schema sees the document as editors do: YAML read without our extra rules.
        let limits = runbook::playbook::node::Limits { max_depth: 64, max_nodes: 400_000, max_bytes: 32 << 20 };
        let by_schema = match runbook::playbook::node::parse(&c.yaml, limits) {
            Ok(doc) => validator.is_valid(&doc.to_json()),
            // Only the duplicate-key case fails here; an editor's YAML parser keeps one.
            Err(_) => true,
        };
        let expected_schema = c.valid || c.semantic.is_some();
        if by_validate != c.valid || by_schema != expected_schema {
            wrong.push(format!(
                "{} ({file}): validate {} (want {}), schema {} (want {})\n{}{}",
                c.name, by_validate, c.valid, by_schema, expected_schema, c.yaml, r.stderr
            ));
        }
    }
    // Every step type without `with`, and with an empty one: both refuse where the type
    // has required parameters, both accept where it has none.
    let types: Vec<String> = schema["definitions"]["RawStep"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    for (i, t) in types.iter().enumerate() {
        for with in ["", "    with: {}\n"] {
            let yaml = format!("{HEAD}steps:\n  - id: a\n    type: {t}\n{with}");
            let file = format!("t{i}.yaml");
            env.write(&file, &yaml);
            let by_validate = env.run(&["validate", &file]).code == 0;
            let limits = runbook::playbook::node::Limits { max_depth: 64, max_nodes: 400_000, max_bytes: 32 << 20 };
            let by_schema = validator.is_valid(&runbook::playbook::node::parse(&yaml, limits).unwrap().to_json());
            if by_validate != by_schema {
                wrong.push(format!("`{t}` {}: validate {by_validate}, schema {by_schema}", with.trim()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Editors show a property's description on hover: every property has its own, and none
/// is only the template wrapper's.
#[test]
fn every_property_is_described() {
    fn walk(v: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(props) = m.get("properties").and_then(|p| p.as_object()) {
                    for (k, p) in props {
                        let d = p.get("description").and_then(|d| d.as_str()).unwrap_or_default();
                        if d.len() < 10 || d.starts_with("A minijinja template") {
                            missing.push(format!("{path}.{k}"));
                        }
                    }
                }
                for (k, x) in m {
                    walk(x, &format!("{path}/{k}"), missing);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|x| walk(x, path, missing)),
            _ => {}
        }
    }
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("schemas/playbook.schema.json")).unwrap())
            .unwrap();
    let mut missing = Vec::new();
    walk(&schema, "", &mut missing);
    // `if` conditions on the step type repeat `type`: those are matchers, not properties.
    missing.retain(|m| !m.contains("/if"));
    assert!(missing.is_empty(), "properties without a description: {missing:#?}");
}

/// docs/format.md names every key of the format and every step type; docs/steps.md (which
/// it links) names every step parameter.
#[test]
fn the_reference_covers_the_schema() {
    let root = repo_root();
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("schemas/playbook.schema.json")).unwrap()).unwrap();
    let format = std::fs::read_to_string(root.join("docs/format.md")).unwrap();
    let steps = std::fs::read_to_string(root.join("docs/steps.md")).unwrap();
    assert!(format.contains("](steps.md)"), "docs/format.md links docs/steps.md");
    let defs = schema["definitions"].as_object().unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default()
    };
    let mut missing = Vec::new();
    let mut format_keys = keys(&schema);
    for def in ["RawInput", "RawStep", "RawRetry", "RawObjectives"] {
        format_keys.extend(keys(&defs[def]));
    }
    for k in format_keys {
        if !format.contains(&format!("`{k}`")) {
            missing.push(format!("docs/format.md: key `{k}`"));
        }
    }
    for t in schema["definitions"]["RawStep"]["properties"]["type"]["enum"].as_array().unwrap() {
        let t = t.as_str().unwrap();
        if !format.contains(&format!("`{t}`")) {
            missing.push(format!("docs/format.md: step type `{t}`"));
        }
    }
    // Step parameters: every property of a definition reached from a step type's `with`.
    let playbook_defs = ["RawInput", "RawStep", "RawRetry", "RawObjectives", "RawPlaybook"];
    for (name, def) in defs {
        if playbook_defs.contains(&name.as_str()) {
            continue;
        }
        let mut props = keys(def);
        for variant in def["oneOf"].as_array().into_iter().flatten() {
            props.extend(keys(variant));
        }
        for p in props {
            if !steps.contains(&format!("`{p}")) {
                missing.push(format!("docs/steps.md: parameter `{p}` ({name})"));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "not documented: {missing:#?}");
}
