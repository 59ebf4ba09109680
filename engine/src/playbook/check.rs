//! Loading and checking: every rule of the format, all problems of a file in one pass.

use super::diag::{Diagnostic, Diagnostics, did_you_mean};
use super::inputs::{check_enum, check_value};
use super::model::{Playbook, Retry, Step, When};
use super::node::{Limits, Node, NodeKind, Pos, Seg, segs};
use super::raw::{InputType, RawInput, RawObjectives, RawRetry, RawStep, WhenValue};
use crate::graph::Dag;
use crate::steps;
use crate::template;
use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
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
        Some(parts) if checker.diags.is_empty() => {
            let sha256 = hex(&Sha256::digest(text.as_bytes()));
            Ok(Playbook {
                name: parts.name,
                description: parts.description,
                severity: parts.severity,
                objectives: parts.objectives,
                inputs: parts.inputs,
                vars: parts.vars,
                secrets: parts.secrets,
                index: parts.index,
                dag: parts.dag.expect("no diagnostics means the DAG was built"),
                steps: parts.steps,
                file: file.to_owned(),
                path: path.map(Path::to_path_buf),
                text,
                sha256,
            })
        }
        _ => Err(LoadError::Invalid(checker.diags.into_sorted())),
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
    steps: Vec<Step>,
    index: HashMap<String, usize>,
    dag: Option<Dag>,
    /// Step ids by position in the file, also for steps that did not check out.
    labels: Vec<String>,
}

const TOP_KEYS: &[&str] =
    &["apiVersion", "name", "description", "severity", "objectives", "inputs", "vars", "secrets", "steps"];
/// The keys of a step, as in [`RawStep`] (a unit test holds them together).
const STEP_KEYS: &[&str] = &[
    "id",
    "type",
    "description",
    "needs",
    "with",
    "when",
    "trigger",
    "retry",
    "timeout",
    "continue_on_error",
    "idempotent",
];
/// The keys of `retry`, as in [`RawRetry`].
const RETRY_KEYS: &[&str] = &["attempts", "delay", "backoff", "max_delay", "until"];
/// The keys of an input declaration, as in [`RawInput`].
const INPUT_KEYS: &[&str] = &["type", "required", "default", "secret", "description", "enum"];
const RUN_FIELDS: &[&str] = &["id", "started_at", "playbook"];
/// minijinja globals a template may call without declaring them.
const GLOBALS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "lipsum",
    "cycler",
    "joiner",
    "loop",
    "caller",
    "self",
    "super",
    "varargs",
    "kwargs",
];

/// Where a template stands, which decides what it may reference.
#[derive(Clone, Copy)]
enum Scope {
    /// `vars.<name>` at this index: inputs, env, run and earlier vars.
    Var(usize),
    /// A step's `with` or `when`.
    Step(usize),
    /// A step's `retry.until`: also its own `outputs`.
    Until(usize),
}

struct Checker {
    diags: Diagnostics,
}

struct PendingRefs {
    scope: Scope,
    pos: Pos,
    refs: Vec<String>,
}

impl Checker {
    fn de<T: DeserializeOwned>(&mut self, node: &Node, what: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(node.to_json()) {
            Ok(v) => Some(v),
            Err(err) => {
                let path = segs(err.path());
                let message = err.into_inner().to_string();
                let (pos, message, hint) = describe_at(node, path, &message, what, "key", "allowed keys");
                self.diags.error(pos, message).hint = hint;
                None
            }
        }
    }

    fn playbook(&mut self, root: &Node) -> Option<Parts> {
        let NodeKind::Map(entries) = &root.kind else {
            self.diags.error(root.pos, "a playbook is a YAML mapping").hint =
                Some("start with `apiVersion: runbook/v1`, then `name:` and `steps:`".into());
            return None;
        };
        for (key, _) in entries {
            if !TOP_KEYS.contains(&key.name.as_str()) {
                let msg = match did_you_mean(&key.name, TOP_KEYS.iter().copied()) {
                    Some(s) => format!("unknown key `{}` (did you mean `{s}`?)", key.name),
                    None => format!("unknown key `{}`", key.name),
                };
                self.diags.error(key.pos, msg).hint = Some(format!("allowed keys: {}", TOP_KEYS.join(", ")));
            }
        }
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
            let ok = s.len() >= 2
                && matches!(&s[..2], "S1" | "S2" | "S3" | "S4")
                && s[2..].chars().next().is_none_or(|c| !c.is_ascii_alphanumeric());
            if !ok {
                self.diags.error(n.pos, format!("invalid severity `{s}`")).hint =
                    Some("start with S1, S2, S3 or S4 (text may follow: `S1 full outage`)".into());
            }
            Some(s)
        });
        let objectives =
            root.get("objectives").and_then(|n| self.de::<RawObjectives>(n, "objectives: ")).unwrap_or_default();
        let inputs = self.inputs(root.get("inputs"));
        let secrets = self.secrets(root.get("secrets"));
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
        let mut parts =
            Parts { name, description, severity, objectives, inputs, vars, secrets, steps, index, dag, labels };
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

    /// One input declaration, field by field, so every problem in it is reported.
    fn input(&mut self, decl: &Node, what: &str) -> Option<RawInput> {
        let NodeKind::Map(entries) = &decl.kind else {
            return self.de::<RawInput>(decl, what);
        };
        let mut ok = true;
        for (key, _) in entries {
            if !INPUT_KEYS.contains(&key.name.as_str()) {
                ok = false;
                let msg = match did_you_mean(&key.name, INPUT_KEYS.iter().copied()) {
                    Some(s) => format!("{what}unknown key `{}` (did you mean `{s}`?)", key.name),
                    None => format!("{what}unknown key `{}`", key.name),
                };
                self.diags.error(key.pos, msg).hint = Some(format!("allowed keys: {}", INPUT_KEYS.join(", ")));
            }
        }
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

    /// Finds every template string under `node`, checks its syntax and queues its references.
    fn templates_in(&mut self, node: &Node, scope: Scope, pending: &mut Vec<PendingRefs>) {
        match &node.kind {
            NodeKind::Str(s) if template::is_template(s) => match template::template_references(s) {
                Ok(refs) => pending.push(PendingRefs { scope, pos: node.pos, refs }),
                Err(e) => {
                    self.diags.error(node.pos, format!("invalid template: {e}"));
                }
            },
            NodeKind::Seq(items) => items.iter().for_each(|n| self.templates_in(n, scope, pending)),
            NodeKind::Map(entries) => entries.iter().for_each(|(_, n)| self.templates_in(n, scope, pending)),
            _ => {}
        }
    }

    fn expression(
        &mut self,
        node: &Node,
        src: &str,
        scope: Scope,
        field: &str,
        pending: &mut Vec<PendingRefs>,
        label: &str,
    ) {
        if template::is_template(src) {
            self.diags
                .error(node.pos, format!("{label}`{field}` is an expression: write it without `{{{{ }}}}`"))
                .hint = Some(format!("e.g. `{field}: \"not inputs.dry_drill\"`"));
            return;
        }
        match template::expression_references(src) {
            Ok(refs) => pending.push(PendingRefs { scope, pos: node.pos, refs }),
            Err(e) => {
                self.diags.error(node.pos, format!("{label}invalid `{field}` expression: {e}"));
            }
        }
    }

    fn steps(
        &mut self,
        node: &Node,
        pending: &mut Vec<PendingRefs>,
    ) -> (Vec<Step>, HashMap<String, usize>, Option<Dag>) {
        let NodeKind::Seq(items) = &node.kind else {
            self.diags.error(node.pos, "`steps` must be a list of steps");
            return (Vec::new(), HashMap::new(), None);
        };
        if items.is_empty() {
            self.diags.error(node.pos, "`steps` is empty: a playbook needs at least one step");
        }
        // Ids first, from the raw nodes, so a broken step does not make its dependents'
        // `needs` look wrong.
        let mut index: HashMap<String, usize> = HashMap::with_capacity(items.len());
        let mut first_pos: HashMap<String, Pos> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let Some(id_node) = item.get("id") else { continue };
            let id = scalar_text(id_node);
            if let Some(prev) = first_pos.get(&id) {
                self.diags.error(id_node.pos, format!("duplicate step id `{id}`")).hint =
                    Some(format!("first defined at line {}", prev.line));
                continue;
            }
            if id.len() > MAX_ID_LEN {
                self.diags
                    .error(id_node.pos, format!("step id `{}` is {} characters long", shorten(&id), id.len()))
                    .hint = Some(format!("ids are at most {MAX_ID_LEN} characters"));
            } else if id.is_empty()
                || !id.starts_with(|c: char| c.is_ascii_lowercase())
                || !id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                self.diags.error(id_node.pos, format!("invalid step id `{id}`")).hint =
                    Some("ids are lowercase letters, digits and `_`, starting with a letter ([a-z][a-z0-9_]*)".into());
            }
            first_pos.insert(id.clone(), id_node.pos);
            index.insert(id, i);
        }
        let ids: Vec<&str> = {
            let mut v = vec![""; items.len()];
            for (id, &i) in &index {
                v[i] = id.as_str();
            }
            v
        };
        let mut steps = Vec::with_capacity(items.len());
        let mut needs_all: Vec<Vec<usize>> = vec![Vec::new(); items.len()];
        for (i, item) in items.iter().enumerate() {
            if !matches!(item.kind, NodeKind::Map(_)) {
                self.diags.error(item.pos, "a step is a mapping with at least `id` and `type`");
                continue;
            }
            let label = match item.get("id") {
                Some(n) => format!("step `{}`: ", shorten(&scalar_text(n))),
                None => format!("step #{}: ", i + 1),
            };
            // Field by field, so a bad field does not hide the step's other problems or
            // make its dependents' references look wrong.
            let (raw, fields_ok) = self.raw_step(item, &label);
            needs_all[i] = raw.needs.iter().filter_map(|n| index.get(n).copied()).filter(|&j| j != i).collect();
            needs_all[i].dedup();
            if let Some(step) = self.step(i, item, raw, &label, &index, &ids, pending)
                && fields_ok
            {
                steps.push(step);
            }
        }
        if index.len() != items.len() {
            // Duplicate or missing ids: positions and ids no longer line up.
            return (steps, index, None);
        }
        match Dag::build(needs_all) {
            Ok(dag) => (steps, index, Some(dag)),
            Err(cycles) => {
                for cycle in cycles {
                    let path: Vec<&str> = cycle.iter().map(|&i| ids[i]).collect();
                    let pos = items[cycle[0]].get("needs").map_or(items[cycle[0]].pos, |n| n.pos);
                    self.diags.error(pos, format!("dependency cycle: {}", path.join(" -> "))).hint =
                        Some("remove one of these `needs` to break the cycle".into());
                }
                (steps, index, None)
            }
        }
    }

    /// One field of a mapping, deserialized on its own; a problem is reported at the field.
    fn field<T: DeserializeOwned>(&mut self, map: &Node, key: &str, label: &str, ok: &mut bool) -> Option<T> {
        self.field_in(map, &[key], label, ok)
    }

    /// A value at `keys` under `map` (`retry.backoff`), deserialized on its own; a problem
    /// is reported at it, named by its whole path.
    fn field_in<T: DeserializeOwned>(&mut self, map: &Node, keys: &[&str], label: &str, ok: &mut bool) -> Option<T> {
        let node = keys.iter().try_fold(map, |n, k| n.get(k))?;
        match serde_path_to_error::deserialize::<_, T>(node.to_json()) {
            Ok(v) => Some(v),
            Err(err) => {
                *ok = false;
                let mut path: Vec<Seg> = keys.iter().map(|k| Seg::Key((*k).to_owned())).collect();
                path.extend(segs(err.path()));
                let message = err.into_inner().to_string();
                let (pos, message, hint) = describe_at(map, path, &message, label, "key", "allowed keys");
                self.diags.error(pos, message).hint = hint;
                None
            }
        }
    }

    /// A step's keys, each checked on its own: every problem of the step is reported, and
    /// the fields that are fine still take part in the later checks.
    fn raw_step(&mut self, item: &Node, label: &str) -> (RawStep, bool) {
        let mut ok = true;
        if let NodeKind::Map(entries) = &item.kind {
            for (key, _) in entries {
                if !STEP_KEYS.contains(&key.name.as_str()) {
                    ok = false;
                    let msg = match did_you_mean(&key.name, STEP_KEYS.iter().copied()) {
                        Some(s) => format!("{label}unknown key `{}` (did you mean `{s}`?)", key.name),
                        None => format!("{label}unknown key `{}`", key.name),
                    };
                    self.diags.error(key.pos, msg).hint = Some(format!("allowed keys: {}", STEP_KEYS.join(", ")));
                }
            }
        }
        for required in ["id", "type"] {
            if item.get(required).is_none() {
                ok = false;
                self.diags.error(item.pos, format!("{label}missing field `{required}`"));
            }
        }
        let when = match item.get("when") {
            None => None,
            Some(n) => match &n.kind {
                NodeKind::Null => None,
                NodeKind::Bool(b) => Some(WhenValue::Bool(*b)),
                NodeKind::Str(s) => Some(WhenValue::Expr(s.clone())),
                _ => {
                    ok = false;
                    self.diags.error(n.pos, format!("{label}`when`: expected an expression or true/false")).hint =
                        Some("e.g. `when: \"inputs.region == 'eu'\"` or `when: false`".into());
                    None
                }
            },
        };
        let raw = RawStep {
            id: self.field(item, "id", label, &mut ok).unwrap_or_default(),
            kind: self.field(item, "type", label, &mut ok).unwrap_or_default(),
            description: self.field(item, "description", label, &mut ok),
            needs: self.field(item, "needs", label, &mut ok).unwrap_or_default(),
            params: self.field::<Option<IndexMap<String, Value>>>(item, "with", label, &mut ok).flatten(),
            when,
            trigger: self.field(item, "trigger", label, &mut ok),
            retry: self.retry(item, label, &mut ok),
            timeout: self.field(item, "timeout", label, &mut ok),
            continue_on_error: self.field(item, "continue_on_error", label, &mut ok),
            idempotent: self.field(item, "idempotent", label, &mut ok),
        };
        (raw, ok)
    }

    /// `retry:` key by key, like the step around it.
    fn retry(&mut self, item: &Node, label: &str, ok: &mut bool) -> Option<RawRetry> {
        let node = item.get("retry")?;
        let NodeKind::Map(entries) = &node.kind else {
            return self.field(item, "retry", label, ok);
        };
        for (key, _) in entries {
            if !RETRY_KEYS.contains(&key.name.as_str()) {
                *ok = false;
                let msg = match did_you_mean(&key.name, RETRY_KEYS.iter().copied()) {
                    Some(s) => format!("{label}`retry`: unknown key `{}` (did you mean `{s}`?)", key.name),
                    None => format!("{label}`retry`: unknown key `{}`", key.name),
                };
                self.diags.error(key.pos, msg).hint = Some(format!("allowed keys: {}", RETRY_KEYS.join(", ")));
            }
        }
        let attempts = self.field_in::<u32>(item, &["retry", "attempts"], label, ok);
        if node.get("attempts").is_none() {
            *ok = false;
            self.diags.error(node.pos, format!("{label}`retry`: missing field `attempts`")).hint =
                Some("`attempts` counts the first try too: `retry: { attempts: 3, delay: 10s }`".into());
        }
        let retry = RawRetry {
            attempts: attempts.unwrap_or(1),
            delay: self.field_in(item, &["retry", "delay"], label, ok),
            backoff: self.field_in(item, &["retry", "backoff"], label, ok).unwrap_or_default(),
            max_delay: self.field_in(item, &["retry", "max_delay"], label, ok),
            until: self.field_in(item, &["retry", "until"], label, ok),
        };
        Some(retry)
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        i: usize,
        node: &Node,
        raw: RawStep,
        label: &str,
        index: &HashMap<String, usize>,
        ids: &[&str],
        pending: &mut Vec<PendingRefs>,
    ) -> Option<Step> {
        let mut ok = true;
        let type_pos = node.get("type").map_or(node.pos, |n| n.pos);
        let kind = match steps::lookup(&raw.kind) {
            Some(k) => Some(k),
            // Missing or not text: already reported.
            None if node.get("type").is_none_or(|t| t.as_str().is_none()) => {
                ok = false;
                None
            }
            None => {
                ok = false;
                let msg = match did_you_mean(&raw.kind, steps::known_names()) {
                    Some(s) => format!("{label}unknown step type `{}` (did you mean `{s}`?)", raw.kind),
                    None => format!("{label}unknown step type `{}`", raw.kind),
                };
                self.diags.error(type_pos, msg).hint = Some(format!("known types: {}", known_list()));
                None
            }
        };
        let mut needs = Vec::with_capacity(raw.needs.len());
        let needs_node = node.get("needs");
        // A join of thousands of branches must not cost a quadratic duplicate check.
        let mut seen = std::collections::HashSet::with_capacity(raw.needs.len());
        for (n, need) in raw.needs.iter().enumerate() {
            let pos = needs_node.and_then(|nn| nn.index(n)).map_or(node.pos, |x| x.pos);
            match index.get(need) {
                Some(&j) if j == i => {
                    ok = false;
                    self.diags.error(pos, format!("{label}needs itself"));
                }
                Some(&j) if !seen.insert(j) => {
                    ok = false;
                    self.diags.error(pos, format!("{label}needs `{need}` twice"));
                }
                Some(&j) => needs.push(j),
                None => {
                    ok = false;
                    let msg = match did_you_mean(need, ids.iter().copied().filter(|s| !s.is_empty())) {
                        Some(s) => format!("{label}needs unknown step `{need}` (did you mean `{s}`?)"),
                        None => format!("{label}needs unknown step `{}`", shorten(need)),
                    };
                    self.diags.error(pos, msg);
                }
            }
        }
        let params = match &raw.params {
            Some(map) => Value::Object(map.clone().into_iter().collect()),
            None => Value::Object(Default::default()),
        };
        if let Some(with_node) = node.get("with") {
            if !matches!(with_node.kind, NodeKind::Map(_) | NodeKind::Null) {
                ok = false;
            }
            self.templates_in(with_node, Scope::Step(i), pending);
        }
        let mut kind_idempotent = false;
        // A `with` that is not a mapping is reported already; checking `{}` would add noise.
        let with_ok = node.get("with").is_none_or(|w| matches!(w.kind, NodeKind::Map(_) | NodeKind::Null));
        if let Some(kind) = kind.filter(|_| with_ok) {
            let (idem, errors, more) = param_errors(kind, &params);
            kind_idempotent = idem;
            if more {
                let pos = node.entry("with").map_or(node.pos, |(k, _)| k.pos);
                self.diags.error(
                    pos,
                    format!("{label}`with`: more than {MAX_PARAM_ERRORS} problems; the rest are not listed"),
                );
            }
            for e in errors {
                ok = false;
                let (pos, message, hint) = match node.get("with") {
                    Some(_) => {
                        let mut path = vec![Seg::Key("with".into())];
                        path.extend(e.path);
                        let takes = format!("`{}` takes", kind.name());
                        describe_at(node, path, &e.message, label, "parameter", &takes)
                    }
                    None => (
                        node.entry("type").map_or(node.pos, |(k, _)| k.pos),
                        format!("{label}`with`: {}", tidy_serde(&e.message)),
                        None,
                    ),
                };
                self.diags.error(pos, message).hint = hint;
            }
        }
        let when = match &raw.when {
            None => None,
            Some(WhenValue::Bool(b)) => Some(When::Const(*b)),
            Some(WhenValue::Expr(e)) => {
                let wn = node.get("when").unwrap_or(node);
                self.expression(wn, e, Scope::Step(i), "when", pending, label);
                Some(When::Expr(e.clone()))
            }
        };
        let mut retry = Retry::default();
        if let Some(r) = &raw.retry {
            let rn = node.get("retry").unwrap_or(node);
            if r.attempts == 0 {
                ok = false;
                self.diags.error(
                    rn.get("attempts").map_or(rn.pos, |n| n.pos),
                    format!("{label}`retry.attempts` must be at least 1"),
                );
            }
            if let Some(until) = &r.until {
                self.expression(rn.get("until").unwrap_or(rn), until, Scope::Until(i), "retry.until", pending, label);
            }
            if let (Some(d), Some(m)) = (r.delay, r.max_delay)
                && m.0 < d.0
            {
                self.diags.error(
                    rn.get("max_delay").map_or(rn.pos, |n| n.pos),
                    format!("{label}`retry.max_delay` ({m}) is shorter than `retry.delay` ({d})"),
                );
            }
            retry = Retry {
                attempts: r.attempts.max(1),
                delay: r.delay.map(|d| d.0).unwrap_or_default(),
                backoff: r.backoff,
                max_delay: r.max_delay.map(|d| d.0),
                until: r.until.clone(),
            };
        }
        if let Some(t) = raw.timeout
            && t.0.is_zero()
        {
            self.diags.error(
                node.get("timeout").map_or(node.pos, |n| n.pos),
                format!("{label}`timeout` must be more than 0s"),
            );
        }
        let kind = kind?;
        if !ok {
            return None;
        }
        let idempotent = raw.idempotent.unwrap_or(kind_idempotent);
        let continue_on_error = raw.continue_on_error.unwrap_or_else(|| kind.continue_on_error_default(&params));
        Some(Step {
            id: raw.id.clone(),
            kind,
            needs,
            params,
            when,
            trigger: raw.trigger.unwrap_or_default(),
            retry,
            timeout: raw.timeout.map(|d| d.0),
            continue_on_error,
            idempotent,
            pos: node.pos,
            raw,
        })
    }

    /// Checks what templates reference, once the DAG is known (step references need it).
    fn references(&mut self, parts: &Parts, mut pending: Vec<PendingRefs>) {
        let var_names: Vec<&str> = parts.vars.keys().map(String::as_str).collect();
        for p in &mut pending {
            p.refs.sort();
            p.refs.dedup();
        }
        // Which step reads which: the ancestry of all of them in one pass over the DAG.
        let mut pairs = Vec::new();
        for p in &pending {
            let (Scope::Step(i) | Scope::Until(i)) = p.scope else { continue };
            for r in &p.refs {
                if let Some(&j) = r.strip_prefix("steps.").and_then(|r| parts.index.get(r.split('.').next()?)) {
                    pairs.push((j, i));
                }
            }
        }
        let answers = parts.dag.as_ref().map(|dag| dag.ancestors_among(&pairs)).unwrap_or_default();
        let ancestry: HashSet<(usize, usize)> =
            pairs.into_iter().zip(answers).filter(|(_, a)| *a).map(|(p, _)| p).collect();
        for p in pending {
            for r in &p.refs {
                if let Some(msg) = self.reference(parts, &var_names, &ancestry, p.scope, r) {
                    let (message, hint) = msg;
                    let d = self.diags.error(p.pos, message);
                    d.hint = hint;
                }
            }
        }
    }

    /// What is wrong with reference `r`, if anything; `ancestry` holds the (step read, step
    /// reading) pairs where the first is an ancestor of the second.
    fn reference(
        &self,
        parts: &Parts,
        vars: &[&str],
        ancestry: &HashSet<(usize, usize)>,
        scope: Scope,
        r: &str,
    ) -> Option<(String, Option<String>)> {
        let mut it = r.split('.');
        let root = it.next().unwrap_or_default();
        let name = it.next();
        let field = it.next();
        let who = match scope {
            Scope::Var(i) => format!("var `{}`: ", vars.get(i).copied().unwrap_or("?")),
            Scope::Step(i) | Scope::Until(i) => match parts.labels.get(i) {
                Some(s) if !s.is_empty() => format!("step `{s}`: "),
                _ => String::new(),
            },
        };
        match root {
            "inputs" => {
                let name = name?;
                if parts.inputs.contains_key(name) {
                    return None;
                }
                let dym = did_you_mean(name, parts.inputs.keys().map(String::as_str))
                    .map(|s| format!(" (did you mean `{s}`?)"));
                Some((
                    format!("{who}template uses undeclared input `{name}`{}", dym.unwrap_or_default()),
                    Some(format!("declare it under `inputs:` (e.g. `{name}: {{ type: string, required: true }}`)")),
                ))
            }
            "vars" => {
                let name = name?;
                match vars.iter().position(|v| *v == name) {
                    Some(j) => match scope {
                        Scope::Var(i) if j >= i => Some((
                            format!(
                                "{who}uses `vars.{name}`, which is defined {}",
                                if i == j { "by itself" } else { "later" }
                            ),
                            Some("vars are rendered once, in order: move it above".into()),
                        )),
                        _ => None,
                    },
                    None => {
                        let dym = did_you_mean(name, vars.iter().copied()).map(|s| format!(" (did you mean `{s}`?)"));
                        Some((
                            format!("{who}template uses undeclared var `{name}`{}", dym.unwrap_or_default()),
                            Some("declare it under `vars:`".into()),
                        ))
                    }
                }
            }
            "env" => None,
            "run" => match name {
                Some(n) if !RUN_FIELDS.contains(&n) => Some((
                    format!("{who}unknown field `run.{n}`"),
                    Some(format!("`run` has: {}", RUN_FIELDS.join(", "))),
                )),
                _ => None,
            },
            "steps" => {
                let i = match scope {
                    Scope::Var(_) => {
                        return Some((
                            format!("{who}vars cannot use step results (`{r}`)"),
                            Some("vars are rendered once at run start; put this template in the step's `with`".into()),
                        ));
                    }
                    Scope::Step(i) | Scope::Until(i) => i,
                };
                let name = name?;
                let Some(&j) = parts.index.get(name) else {
                    let dym = did_you_mean(name, parts.index.keys().map(String::as_str))
                        .map(|s| format!(" (did you mean `{s}`?)"));
                    return Some((
                        format!("{who}template uses unknown step `{name}`{}", dym.unwrap_or_default()),
                        None,
                    ));
                };
                if let Some(f) = field
                    && f != "outputs"
                    && f != "status"
                {
                    return Some((
                        format!("{who}unknown field `steps.{name}.{f}`"),
                        Some("a step has `outputs` and `status`".into()),
                    ));
                }
                if i == j {
                    return Some((
                        format!("{who}template reads its own step's results (`{r}`)"),
                        Some("use `outputs` inside `retry.until`".into()),
                    ));
                }
                parts.dag.as_ref()?;
                if ancestry.contains(&(j, i)) {
                    return None;
                }
                Some((
                    format!("{who}template reads `steps.{name}`, but `{name}` is not among its needs (a race)"),
                    Some(format!("add `{name}` to `needs` (directly or through another step)")),
                ))
            }
            "outputs" if matches!(scope, Scope::Until(_)) => None,
            "outputs" => Some((
                format!("{who}`outputs` is only defined in `retry.until`"),
                Some("use `steps.<id>.outputs`".into()),
            )),
            g if GLOBALS.contains(&g) => None,
            other => Some((
                format!("{who}template uses unknown variable `{other}`"),
                Some("templates see inputs, vars, env, run and steps".into()),
            )),
        }
    }
}

/// Every problem of a step's parameters, not only the first: serde stops at the first bad
/// value, so the parameter it names is taken away and the rest checked again. What that
/// removal causes itself (the parameter now missing, a rule about the whole set) is not
/// reported. Returns the type's idempotence when all is well, and whether problems past
/// [`MAX_PARAM_ERRORS`] were left unlisted.
fn param_errors(kind: &dyn steps::StepKind, params: &Value) -> (bool, Vec<steps::ParamError>, bool) {
    let mut trial = params.clone();
    let mut removed: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    // Bounded: each round takes one parameter away.
    for _ in 0..=params.as_object().map_or(0, |m| m.len()) {
        let e = match kind.check(&trial) {
            Ok(idem) => return (idem, errors, false),
            Err(e) => e,
        };
        if errors.len() == MAX_PARAM_ERRORS {
            return (false, errors, true);
        }
        let first = match e.path.first() {
            Some(Seg::Key(k)) if trial.get(k).is_some() => Some(k.clone()),
            _ => None,
        };
        match first {
            Some(k) => {
                errors.push(e);
                if let Some(map) = trial.as_object_mut() {
                    map.remove(&k);
                }
                removed.push(k);
            }
            None => {
                // A missing parameter or a rule about the whole set: real only if we have
                // taken nothing away.
                if removed.is_empty() {
                    errors.push(e);
                }
                break;
            }
        }
    }
    (false, errors, false)
}

/// Problems listed for one step's `with`: each is placed by a walk of the mapping, and a
/// generated step with 50,000 stray parameters made that quadratic (23 s in a debug build);
/// nobody reads past the first screen of them anyway.
const MAX_PARAM_ERRORS: usize = 20;

/// The longest step id: ids name steps in tables, logs and temporary file names, and a
/// 190,000-character id made every message about its step that long.
pub const MAX_ID_LEN: usize = 64;

/// A name as messages quote it: whole up to [`MAX_ID_LEN`], then cut with `…`.
fn shorten(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(MAX_ID_LEN) {
        Some((at, _)) => Cow::Owned(format!("{}…", &s[..at])),
        None => Cow::Borrowed(s),
    }
}

fn known_list() -> String {
    steps::known_names().collect::<Vec<_>>().join(", ")
}

/// Where an error about `path` (under `node`) points, and how it reads. An unknown-field
/// error names the stray key: it points at that key and suggests the closest allowed one.
pub(crate) fn describe_at(
    node: &Node,
    mut path: Vec<Seg>,
    message: &str,
    what: &str,
    noun: &str,
    allowed: &str,
) -> (Pos, String, Option<String>) {
    let Some((field, expected)) = unknown_field(message) else {
        let (_, pos) = node.locate(&path);
        let at = if path.is_empty() { String::new() } else { format!("`{}`: ", path_text(&path)) };
        // An enum value: suggest the closest allowed one, as for keys.
        if let Some((value, allowed)) = unknown_variant(message) {
            // Short names (`int`, `bool`) are too far by edit distance from a longer
            // spelling (`integr`, `boolean`): a name the value starts with also counts.
            let close = did_you_mean(&value, allowed.iter().map(String::as_str)).or_else(|| {
                allowed.iter().map(String::as_str).find(|a| a.len() >= 3 && value.to_ascii_lowercase().starts_with(a))
            });
            let message = match close {
                Some(s) => format!("{what}{at}unknown value `{value}` (did you mean `{s}`?)"),
                None => format!("{what}{at}unknown value `{value}`"),
            };
            return (pos, message, Some(format!("allowed values: {}", allowed.join(", "))));
        }
        return (pos, format!("{what}{at}{}", tidy_serde(message)), None);
    };
    // serde_path_to_error ends the path with the stray key itself.
    if path.last() == Some(&Seg::Key(field.clone())) {
        path.pop();
    }
    let (map, mut pos) = node.locate(&path);
    if let Some((k, _)) = map.entry(&field) {
        pos = k.pos;
    }
    let at = if path.is_empty() { String::new() } else { format!("`{}`: ", path_text(&path)) };
    let message = match did_you_mean(&field, expected.iter().map(String::as_str)) {
        Some(s) => format!("{what}{at}unknown {noun} `{field}` (did you mean `{s}`?)"),
        None => format!("{what}{at}unknown {noun} `{field}`"),
    };
    (pos, message, Some(format!("{allowed}: {}", expected.join(", "))))
}

fn path_text(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn scalar_text(n: &Node) -> String {
    match &n.kind {
        NodeKind::Str(s) => s.clone(),
        NodeKind::Int(i) => i.to_string(),
        NodeKind::Float(f) => f.to_string(),
        NodeKind::Bool(b) => b.to_string(),
        NodeKind::Null => String::new(),
        NodeKind::Seq(_) | NodeKind::Map(_) => n.to_json().to_string(),
    }
}

fn is_identifier(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`").
fn unknown_field(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    let field = rest[..end].to_owned();
    let expected = rest[end..].split('`').skip(2).step_by(2).map(str::to_owned).collect();
    Some((field, expected))
}

/// Parses serde's "unknown variant `x`, expected one of `a`, `b`" (or "expected `a`").
fn unknown_variant(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix("unknown variant `")?;
    let end = rest.find('`')?;
    let value = rest[..end].to_owned();
    let expected = rest[end..].split('`').skip(2).step_by(2).map(str::to_owned).collect();
    Some((value, expected))
}

/// serde's wording in words an SRE uses: no Rust type names (`u32`, `WhenValue`).
fn tidy_serde(msg: &str) -> String {
    // Untagged enums say only "did not match any variant of untagged enum X": say what fits.
    const UNTAGGED: &[(&str, &str)] = &[
        ("RpoValue", "expected a duration such as `15m` or a text such as `point-in-time`"),
        ("StatusSet", "expected an HTTP status code such as `200` or a list of them such as `[200, 204]`"),
        ("WhenValue", "expected an expression or true/false"),
    ];
    if let Some(name) = msg.strip_prefix("data did not match any variant of untagged enum ") {
        let name = name.split_whitespace().next().unwrap_or_default();
        if let Some((_, say)) = UNTAGGED.iter().find(|(n, _)| *n == name) {
            return (*say).to_owned();
        }
        return "the value has none of the accepted shapes".to_owned();
    }
    let mut out = msg.replace("invalid type: ", "wrong type: ").replace("invalid value: ", "wrong value: ");
    for (rust, words) in [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a mapping"),
        ("expected a boolean", "expected true or false"),
        ("integer `", "number `"),
        ("floating point `", "number `"),
        ("sequence,", "list,"),
        (", expected", "; expected"),
        ("expected string or map", "expected one of the allowed values"),
    ] {
        out = out.replace(rust, words);
    }
    // "expected struct RawRetry" / "expected enum Method": the Rust name means nothing here.
    for (rust, words) in
        [("expected struct ", "expected a mapping"), ("expected enum ", "expected one of the allowed values")]
    {
        if let Some(at) = out.find(rust) {
            let end = out[at + rust.len()..]
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .map_or(out.len(), |e| at + rust.len() + e);
            out.replace_range(at..end, words);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key lists checked by hand are the serde structs' fields, no more, no less.
    #[test]
    fn key_lists_match_the_raw_types() {
        let schema = crate::playbook::schema::schema();
        let defs = &schema["definitions"];
        for (def, keys) in [("RawStep", STEP_KEYS), ("RawInput", INPUT_KEYS), ("RawRetry", RETRY_KEYS)] {
            let props: Vec<&str> = defs[def]["properties"].as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(props, keys, "{def}");
        }
    }

    #[test]
    fn unknown_field_parse() {
        let (f, e) = unknown_field("unknown field `need`, expected one of `id`, `needs`").unwrap();
        assert_eq!(f, "need");
        assert_eq!(e, vec!["id", "needs"]);
    }
}
