//! Loading and checking: every rule of the format, all problems of a file in one pass.
//! The step list, template references and serde's messages each have a submodule.

mod refs;
mod serde_msg;
mod step_list;

use refs::{PendingRefs, Scope};
pub(crate) use serde_msg::de_node;
use serde_msg::scalar_text;

use super::diag::{Diagnostic, Diagnostics, did_you_mean};
use super::duration::Dur;
use super::inputs::{check_enum, check_value};
use super::model::{Playbook, Step};
use super::node::{Limits, Node, NodeKind, Pos};
use super::raw::{InputType, RawInput, RawObjectives, RpoValue};
use crate::graph::Dag;
use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// A playbook larger than this is refused before parsing: real ones are a few KiB, and
/// 10,000 generated steps are about 1 MiB.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

pub fn load(path: &Path) -> Result<Playbook, LoadError> {
    let file = path.display().to_string();
    let io =
        |e: std::io::Error| LoadError::Io { file: file.clone(), message: format!("cannot read the playbook: {e}") };
    let f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let too_big = |size: String| {
        LoadError::Invalid(vec![
            Diagnostic::new(
                &file,
                Pos { line: 1, col: 1 },
                format!("the file is {size}; a playbook may be at most {} MiB", MAX_FILE_BYTES >> 20),
            )
            .with_hint("split it into several playbooks"),
        ])
    };
    if len > MAX_FILE_BYTES {
        return Err(too_big(format!("{:.1} MiB", len as f64 / 1048576.0)));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    // A pipe or FIFO has no size up front: reading one byte past the limit is how we know,
    // and it is refused like a regular file, never silently cut.
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(format!("over {} MiB (read from a pipe)", MAX_FILE_BYTES >> 20)));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        // Point at the first bad byte, as for any other mistake in the file.
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let pos = Pos {
            line: good.iter().filter(|&&b| b == b'\n').count() as u64 + 1,
            col: std::str::from_utf8(&good[line_start..]).map_or(1, |l| l.chars().count() as u64 + 1),
        };
        LoadError::Invalid(vec![
            Diagnostic::new(&file, pos, format!("the file is not UTF-8: {}", e.utf8_error()))
                .with_hint("save the playbook as UTF-8"),
        ])
    })?;
    load_str(&file, text, Some(path))
}

pub fn load_str(file: &str, text: String, path: Option<&Path>) -> Result<Playbook, LoadError> {
    let root = parse_yaml(file, &text)?;
    let mut checker = Checker { diags: Diagnostics::new(file) };
    let checked = checker.playbook(&root);
    match checked {
        Some(parts) if checker.diags.is_empty() && parts.dag.is_some() => {
            let sha256 = hex(&Sha256::digest(text.as_bytes()));
            Ok(Playbook {
                name: parts.name,
                description: parts.description,
                severity: parts.severity,
                objectives: parts.objectives,
                inputs: parts.inputs,
                vars: parts.vars,
                secrets: parts.secrets,
                follow_ups: parts.follow_ups,
                index: parts.index,
                dag: parts.dag.expect("no diagnostics means the DAG was built"),
                steps: parts.steps,
                file: file.to_owned(),
                path: path.map(Path::to_path_buf),
                text,
                sha256,
            })
        }
        _ => {
            // A step refused without a word is a bug of the checks, but a panic would hide
            // the playbook's other problems and end `validate` with a backtrace.
            if checker.diags.is_empty() {
                checker.diags.error(
                    Pos { line: 1, col: 1 },
                    "internal error: a step was set aside without a reason; please report this playbook",
                );
            }
            Err(LoadError::Invalid(checker.diags.into_sorted()))
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_yaml(file: &str, text: &str) -> Result<Node, LoadError> {
    // Playbooks are small and shallow; these bounds turn alias bombs, deep nesting and
    // generated monsters into errors instead of a hang or an out-of-memory kill.
    let limits = Limits { max_depth: 64, max_nodes: 400_000, max_bytes: 32 << 20 };
    super::node::parse(text, limits)
        .map_err(|e| LoadError::Invalid(vec![Diagnostic::new(file, e.pos, format!("invalid YAML: {}", e.message))]))
}

struct Parts {
    name: String,
    description: Option<String>,
    severity: Option<String>,
    objectives: RawObjectives,
    inputs: IndexMap<String, RawInput>,
    vars: IndexMap<String, Value>,
    secrets: Vec<String>,
    follow_ups: Vec<String>,
    steps: Vec<Step>,
    index: HashMap<String, usize>,
    dag: Option<Dag>,
    /// Step ids by position in the file, also for steps that did not check out.
    labels: Vec<String>,
}

const TOP_KEYS: &[&str] = &[
    "apiVersion",
    "name",
    "description",
    "severity",
    "objectives",
    "inputs",
    "vars",
    "secrets",
    "follow_ups",
    "steps",
];
/// The keys of `objectives`, as in [`RawObjectives`].
const OBJECTIVE_KEYS: &[&str] = &["rto", "rpo", "restored_by"];
/// The keys of an input declaration, as in [`RawInput`].
const INPUT_KEYS: &[&str] = &["type", "required", "default", "secret", "description", "enum"];

struct Checker {
    diags: Diagnostics,
}

impl Checker {
    fn de<T: DeserializeOwned>(&mut self, node: &Node, what: &str) -> Option<T> {
        de_node(&mut self.diags, node, what)
    }

    fn playbook(&mut self, root: &Node) -> Option<Parts> {
        let NodeKind::Map(_) = &root.kind else {
            self.diags.error(root.pos, "a playbook is a YAML mapping").hint =
                Some("start with `apiVersion: runbook/v1`, then `name:` and `steps:`".into());
            return None;
        };
        self.known_keys(root, TOP_KEYS, "");
        let top = Pos { line: 1, col: 1 };
        match root.get("apiVersion") {
            None => self.diags.error(top, "missing `apiVersion: runbook/v1`").hint = None,
            Some(n) if n.as_str() != Some("runbook/v1") => {
                self.diags.error(n.pos, format!("unsupported apiVersion `{}`", scalar_text(n))).hint =
                    Some("this version of runbook reads `runbook/v1`".into());
            }
            _ => {}
        }
        let name = match root.get("name") {
            None => {
                self.diags.error(top, "missing `name`").hint = Some("add `name: my-playbook` ([a-z0-9-]+)".into());
                String::new()
            }
            Some(n) => {
                let s = scalar_text(n);
                if s.is_empty() || !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                    self.diags.error(n.pos, format!("invalid name `{s}`: use lowercase letters, digits and `-`"));
                }
                s
            }
        };
        let description = root.get("description").and_then(|n| self.de::<String>(n, "description: "));
        let severity = root.get("severity").and_then(|n| {
            let s = self.de::<String>(n, "severity: ")?;
            // `get`, not `[..2]`: the text may start with a character of several bytes.
            let ok = matches!(s.get(..2), Some("S1" | "S2" | "S3" | "S4"))
                && s[2..].chars().next().is_none_or(|c| !c.is_ascii_alphanumeric());
            if !ok {
                self.diags.error(n.pos, format!("invalid severity `{s}`")).hint =
                    Some("start with S1, S2, S3 or S4 (text may follow: `S1 full outage`)".into());
            }
            Some(s)
        });
        let objectives = root.get("objectives").map(|n| self.objectives(n)).unwrap_or_default();
        let inputs = self.inputs(root.get("inputs"));
        let secrets = self.secrets(root.get("secrets"));
        // Item by item, so every bad item is reported, each at its own position.
        let follow_ups = match root.get("follow_ups") {
            Some(Node { kind: NodeKind::Seq(items), .. }) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.de::<String>(item, &format!("follow_ups: `[{i}]`: ")))
                .collect(),
            Some(n) => self.de::<Vec<String>>(n, "follow_ups: ").unwrap_or_default(),
            None => Vec::new(),
        };
        let mut pending = Vec::new();
        let vars = self.vars(root.get("vars"), &mut pending);
        let Some(steps_node) = root.get("steps") else {
            self.diags.error(top, "missing `steps`").hint = Some("a playbook needs at least one step".into());
            return None;
        };
        let (steps, index, dag) = self.steps(steps_node, &mut pending);
        let labels = match &steps_node.kind {
            NodeKind::Seq(items) => items.iter().map(|n| n.get("id").map(scalar_text).unwrap_or_default()).collect(),
            _ => Vec::new(),
        };
        if let Some(id) = &objectives.restored_by
            && !labels.contains(id)
        {
            let pos = root.get("objectives").and_then(|n| n.get("restored_by")).map_or(top, |n| n.pos);
            let msg = match did_you_mean(id, labels.iter().map(String::as_str)) {
                Some(s) => format!("`objectives.restored_by` names unknown step `{id}` (did you mean `{s}`?)"),
                None => format!("`objectives.restored_by` names unknown step `{id}`"),
            };
            self.diags.error(pos, msg).hint =
                Some("name the step whose success ends the outage, e.g. the last verification".into());
        }
        let mut parts = Parts {
            name,
            description,
            severity,
            objectives,
            inputs,
            vars,
            secrets,
            follow_ups,
            steps,
            index,
            dag,
            labels,
        };
        self.references(&parts, pending);
        if parts.dag.is_none() || parts.steps.len() != parts.labels.len() {
            parts.steps.clear();
            parts.dag = None;
        }
        Some(parts)
    }

    fn inputs(&mut self, node: Option<&Node>) -> IndexMap<String, RawInput> {
        let mut out = IndexMap::new();
        let Some(node) = node else { return out };
        let NodeKind::Map(entries) = &node.kind else {
            self.diags.error(node.pos, "`inputs` must be a mapping of input names to their declarations");
            return out;
        };
        for (key, decl) in entries {
            if !is_identifier(&key.name) {
                self.diags.error(key.pos, format!("invalid input name `{}`: use letters, digits and `_`", key.name));
            }
            let what = format!("input `{}`: ", key.name);
            let Some(spec) = self.input(decl, &what) else {
                // Still declared: later templates that use it must not say "undeclared input".
                out.insert(key.name.clone(), RawInput::placeholder());
                continue;
            };
            if let Some(d) = &spec.default
                && let Err(e) = check_value(spec.kind, d).and_then(|v| check_enum(&key.name, &spec, &v))
            {
                let pos = decl.get("default").map_or(decl.pos, |n| n.pos);
                self.diags.error(pos, format!("{what}default: {e}"));
            }
            if let Some(allowed) = &spec.allowed {
                for (i, a) in allowed.iter().enumerate() {
                    if let Err(e) = check_value(spec.kind, a) {
                        let pos = decl.get("enum").and_then(|n| n.index(i)).map_or(decl.pos, |n| n.pos);
                        self.diags.error(pos, format!("{what}enum: {e}"));
                    }
                }
            }
            if spec.secret && spec.default.is_some() {
                let pos = decl.get("default").map_or(decl.pos, |n| n.pos);
                self.diags.error(pos, format!("{what}a secret input cannot have a default")).hint =
                    Some("a default is stored in the playbook in clear; pass the secret at run time".into());
            }
            out.insert(key.name.clone(), spec);
        }
        out
    }

    /// Reports every key of `map` that is not in `allowed` (with the closest one); true when
    /// there is none. One home for the unknown-key check of every hand-checked mapping.
    pub(super) fn known_keys(&mut self, map: &Node, allowed: &[&str], what: &str) -> bool {
        let NodeKind::Map(entries) = &map.kind else { return true };
        let mut ok = true;
        for (key, _) in entries {
            if !allowed.contains(&key.name.as_str()) {
                ok = false;
                let msg = match did_you_mean(&key.name, allowed.iter().copied()) {
                    Some(s) => format!("{what}unknown key `{}` (did you mean `{s}`?)", key.name),
                    None => format!("{what}unknown key `{}`", key.name),
                };
                self.diags.error(key.pos, msg).hint = Some(format!("allowed keys: {}", allowed.join(", ")));
            }
        }
        ok
    }

    /// `objectives`, field by field: a bad `rto` and a bad `restored_by` are both reported,
    /// each at its position, and a field that is fine still counts (the `restored_by` check).
    fn objectives(&mut self, node: &Node) -> RawObjectives {
        let what = "objectives: ";
        if !matches!(node.kind, NodeKind::Map(_)) {
            return self.de::<RawObjectives>(node, what).unwrap_or_default();
        }
        let mut ok = self.known_keys(node, OBJECTIVE_KEYS, what);
        RawObjectives {
            rto: self.field::<Option<Dur>>(node, "rto", what, &mut ok).flatten(),
            rpo: self.field::<Option<RpoValue>>(node, "rpo", what, &mut ok).flatten(),
            restored_by: self.field::<Option<String>>(node, "restored_by", what, &mut ok).flatten(),
        }
    }

    /// One input declaration, field by field, so every problem in it is reported.
    fn input(&mut self, decl: &Node, what: &str) -> Option<RawInput> {
        let NodeKind::Map(_) = &decl.kind else {
            return self.de::<RawInput>(decl, what);
        };
        let mut ok = self.known_keys(decl, INPUT_KEYS, what);
        let spec = RawInput {
            kind: self.field(decl, "type", what, &mut ok).unwrap_or(InputType::String),
            required: self.field(decl, "required", what, &mut ok).unwrap_or_default(),
            default: self.field::<Option<Value>>(decl, "default", what, &mut ok).flatten(),
            secret: self.field(decl, "secret", what, &mut ok).unwrap_or_default(),
            description: self.field(decl, "description", what, &mut ok),
            allowed: self.field(decl, "enum", what, &mut ok),
        };
        ok.then_some(spec)
    }

    fn secrets(&mut self, node: Option<&Node>) -> Vec<String> {
        let Some(node) = node else { return Vec::new() };
        let Some(list) = self.de::<Vec<String>>(node, "secrets: ") else { return Vec::new() };
        for (i, s) in list.iter().enumerate() {
            let ok = s.chars().next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                let pos = node.index(i).map_or(node.pos, |n| n.pos);
                self.diags.error(pos, format!("`{s}` is not an environment variable name")).hint =
                    Some("`secrets` lists env vars (e.g. VERCEL_TOKEN) whose values are redacted".into());
            }
        }
        list
    }

    fn vars(&mut self, node: Option<&Node>, pending: &mut Vec<PendingRefs>) -> IndexMap<String, Value> {
        let mut out = IndexMap::new();
        let Some(node) = node else { return out };
        let NodeKind::Map(entries) = &node.kind else {
            self.diags.error(node.pos, "`vars` must be a mapping of names to values");
            return out;
        };
        for (i, (key, value)) in entries.iter().enumerate() {
            if !is_identifier(&key.name) {
                self.diags.error(key.pos, format!("invalid var name `{}`: use letters, digits and `_`", key.name));
            }
            self.templates_in(value, Scope::Var(i), pending);
            out.insert(key.name.clone(), value.to_json());
        }
        out
    }
}

pub(super) fn is_identifier(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::step_list::{RETRY_KEYS, STEP_KEYS};
    use super::*;

    /// The key lists checked by hand are the serde structs' fields, no more, no less.
    #[test]
    fn key_lists_match_the_raw_types() {
        let schema = crate::playbook::schema::schema();
        let defs = &schema["definitions"];
        for (def, keys) in [
            ("RawStep", STEP_KEYS),
            ("RawInput", INPUT_KEYS),
            ("RawRetry", RETRY_KEYS),
            ("RawObjectives", OBJECTIVE_KEYS),
        ] {
            let props: Vec<&str> = defs[def]["properties"].as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(props, keys, "{def}");
        }
    }
}
