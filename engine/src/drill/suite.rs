//! The drill suite format (`runbook-drill/v1`): which playbooks a DR test runs, with which
//! inputs, environment and approvals, and what outcome counts as passed. Loaded like a
//! playbook: positioned YAML, every problem of the file collected with its line and
//! column, and each listed playbook loaded and checked too (its inputs against its
//! declarations, its approval ids against its steps).

use crate::playbook::diag::{Diagnostics, did_you_mean};
use crate::playbook::inputs::{check_enum, check_value, input_env_var};
use crate::playbook::node::{Limits, Node, NodeKind, Pos};
use crate::playbook::{self, Diagnostic, LoadError, Playbook};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A drill suite: playbooks run one after the other, each a normal journaled run, and one
/// report for all of them.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "runbook drill suite (runbook-drill/v1)")]
pub struct RawSuite {
    /// Always `runbook-drill/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Lowercase letters, digits and dashes.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Environment for every run; `${NAME}` takes NAME from the drill's own environment.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// The playbooks, run in this order.
    pub playbooks: Vec<RawEntry>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawEntry {
    /// Unique in the suite: lowercase letters, digits, `_` and `-`. The run id is
    /// `<drill id>-<id>`.
    pub id: String,
    /// The playbook file, relative to the suite file.
    pub file: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Input values (not secret ones: give those as `env: {RUNBOOK_INPUT_NAME: "${VAR}"}`);
    /// in a string, `${NAME}` takes NAME from the drill's environment.
    #[serde(default)]
    pub inputs: IndexMap<String, Value>,
    /// Environment for this run, over the suite's; `${NAME}` expands from the drill's environment.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Approve every approval step of this run (an unattended drill).
    #[serde(default)]
    pub yes: bool,
    /// Approve these approval steps.
    #[serde(default)]
    pub approve: Vec<String>,
    /// The run outcome that counts as passed: `succeeded` (default) or `failed` (a
    /// failure scenario: the failure path is what is being tested).
    #[serde(default)]
    pub expect: Expect,
    /// Step statuses that must hold at the end (`page_team: succeeded`, `redeploy: skipped`).
    #[serde(default)]
    pub expect_steps: IndexMap<String, ExpectStatus>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    #[default]
    Succeeded,
    Failed,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExpectStatus {
    Succeeded,
    Failed,
    Skipped,
    Pending,
}

impl ExpectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpectStatus::Succeeded => "succeeded",
            ExpectStatus::Failed => "failed",
            ExpectStatus::Skipped => "skipped",
            ExpectStatus::Pending => "pending",
        }
    }
}

/// A checked suite: every entry's playbook loaded.
#[derive(Debug)]
pub struct Suite {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub sha256: String,
    pub text: String,
    pub env: IndexMap<String, String>,
    pub entries: Vec<Entry>,
}

#[derive(Debug)]
pub struct Entry {
    pub raw: RawEntry,
    pub path: PathBuf,
    pub playbook: Playbook,
}

const TOP_KEYS: &[&str] = &["apiVersion", "name", "description", "env", "playbooks"];

/// Loads and checks a suite; every problem (the suite's and its playbooks') in one list.
pub fn load(path: &Path) -> Result<Suite, LoadError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError::Io { file: file.clone(), message: format!("cannot read the drill suite: {e}") })?;
    let root = playbook::node::parse(&text, Limits { max_depth: 32, max_nodes: 100_000, max_bytes: 8 << 20 })
        .map_err(|e| LoadError::Invalid(vec![Diagnostic::new(&file, e.pos, format!("invalid YAML: {}", e.message))]))?;
    let mut diags = Diagnostics::new(&file);
    let mut nested: Vec<Diagnostic> = Vec::new();
    let top = Pos { line: 1, col: 1 };
    let NodeKind::Map(entries) = &root.kind else {
        diags.error(root.pos, "a drill suite is a YAML mapping").hint =
            Some("start with `apiVersion: runbook-drill/v1`, then `name:` and `playbooks:`".into());
        return Err(LoadError::Invalid(diags.into_sorted()));
    };
    for (key, _) in entries {
        if !TOP_KEYS.contains(&key.name.as_str()) {
            let msg = match did_you_mean(&key.name, TOP_KEYS.iter().copied()) {
                Some(s) => format!("unknown key `{}` (did you mean `{s}`?)", key.name),
                None => format!("unknown key `{}`", key.name),
            };
            diags.error(key.pos, msg).hint = Some(format!("allowed keys: {}", TOP_KEYS.join(", ")));
        }
    }
    match root.get("apiVersion") {
        None => diags.error(top, "missing `apiVersion: runbook-drill/v1`").hint = None,
        Some(n) if n.as_str() != Some("runbook-drill/v1") => {
            diags.error(n.pos, format!("unsupported apiVersion `{}`", n.to_json())).hint =
                Some("a drill suite starts with `apiVersion: runbook-drill/v1`".into());
        }
        _ => {}
    }
    let name = match root.get("name").map(|n| (n, n.as_str())) {
        None => {
            diags.error(top, "missing `name`").hint = Some("add `name: pre-launch` ([a-z0-9-]+)".into());
            String::new()
        }
        Some((_, Some(s)))
            if !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') =>
        {
            s.to_owned()
        }
        Some((n, _)) => {
            diags.error(n.pos, format!("invalid name `{}`: use lowercase letters, digits and `-`", n.to_json()));
            String::new()
        }
    };
    let description = root.get("description").and_then(|n| de::<String>(&mut diags, n, "description: "));
    let env = root.get("env").and_then(|n| de::<IndexMap<String, String>>(&mut diags, n, "env: ")).unwrap_or_default();
    check_env(&mut diags, root.get("env"), &env);
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut out = Vec::new();
    match root.get("playbooks") {
        None => {
            diags.error(top, "missing `playbooks`").hint =
                Some("list the playbooks to run: `- { id: s1, file: ... }`".into())
        }
        Some(n) => match &n.kind {
            NodeKind::Seq(items) if !items.is_empty() => {
                let mut seen: IndexMap<String, Pos> = IndexMap::new();
                for (i, item) in items.iter().enumerate() {
                    let what = format!("playbooks[{i}]: ");
                    let Some(raw) = de::<RawEntry>(&mut diags, item, &what) else { continue };
                    let id_pos = item.get("id").map_or(item.pos, |n| n.pos);
                    if raw.id.is_empty()
                        || !raw.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
                    {
                        diags.error(
                            id_pos,
                            format!("invalid id `{}`: use lowercase letters, digits, `_` and `-`", raw.id),
                        );
                    }
                    if let Some(first) = seen.get(&raw.id) {
                        diags.error(id_pos, format!("duplicate id `{}` (first at line {})", raw.id, first.line));
                    } else {
                        seen.insert(raw.id.clone(), id_pos);
                    }
                    check_env(&mut diags, item.get("env"), &raw.env);
                    if let Some(e) = entry(&mut diags, &mut nested, item, raw, base, &env) {
                        out.push(e);
                    }
                }
            }
            NodeKind::Seq(_) => {
                diags.error(n.pos, "`playbooks` is empty").hint = Some("list at least one playbook".into());
            }
            _ => {
                diags.error(n.pos, "`playbooks` must be a list").hint =
                    Some("write `playbooks:` then `- { id: s1, file: ../playbooks/s1-full-outage.yaml }`".into());
            }
        },
    }
    if diags.is_empty() && nested.is_empty() {
        Ok(Suite {
            name,
            description,
            file: path.to_path_buf(),
            sha256: playbook::hex(&Sha256::digest(text.as_bytes())),
            text,
            env,
            entries: out,
        })
    } else {
        let mut all = diags.into_sorted();
        all.extend(nested);
        Err(LoadError::Invalid(all))
    }
}

fn de<T: serde::de::DeserializeOwned>(diags: &mut Diagnostics, node: &Node, what: &str) -> Option<T> {
    playbook::de_node(diags, node, what)
}

/// `${NAME}` references must name a variable: an unset one is found when the drill starts.
fn check_env(diags: &mut Diagnostics, node: Option<&Node>, env: &IndexMap<String, String>) {
    for (k, v) in env {
        let pos = node.and_then(|n| n.get(k)).map_or(Pos { line: 1, col: 1 }, |n| n.pos);
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            diags.error(pos, format!("env: invalid variable name `{k}`"));
        }
        if let Err(e) = expand_refs(v) {
            diags.error(pos, format!("env.{k}: {e}")).hint =
                Some("write `${NAME}` to take NAME from the environment".into());
        }
    }
}

/// The variable names `${NAME}` in a value; an unclosed `${` is an error.
pub fn expand_refs(v: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = v;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else { return Err(format!("unclosed `${{` in `{v}`")) };
        let name = after[..end].split_once(":-").map_or(&after[..end], |(n, _)| n);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{}}}` is not a variable name (write `${{NAME}}` or `${{NAME:-default}}`)",
                &after[..end]
            ));
        }
        names.push(name.to_owned());
        rest = &after[end + 1..];
    }
    Ok(names)
}

/// Expands `${NAME}` and `${NAME:-default}` from `lookup`; the names that were not set
/// (and have no default) come back as the error.
pub fn expand(v: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, Vec<String>> {
    let mut out = String::new();
    let mut missing = Vec::new();
    let mut rest = v;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        // `${NAME:-default}`: the default when NAME is unset or empty, as in sh.
        let (name, default) = match after[..end].split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (&after[..end], None),
        };
        match (lookup(name).filter(|v| !v.is_empty() || default.is_none()), default) {
            (Some(val), _) => out.push_str(&val),
            (None, Some(d)) => out.push_str(d),
            (None, None) => missing.push(name.to_owned()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if missing.is_empty() { Ok(out) } else { Err(missing) }
}

fn entry(
    diags: &mut Diagnostics,
    nested: &mut Vec<Diagnostic>,
    item: &Node,
    raw: RawEntry,
    base: &Path,
    suite_env: &IndexMap<String, String>,
) -> Option<Entry> {
    let at = |key: &str| item.get(key).map_or(item.pos, |n| n.pos);
    let key_at = |key: &str, sub: &str| item.get(key).and_then(|m| m.entry(sub)).map_or(at(key), |(k, _)| k.pos);
    let path = base.join(&raw.file);
    let pb = match playbook::load(&path) {
        Ok(pb) => pb,
        Err(LoadError::Io { message, .. }) => {
            diags.error(at("file"), format!("playbook `{}`: {message}", raw.file)).hint =
                Some(format!("`file` is relative to the suite's folder ({})", base.display()));
            return None;
        }
        Err(LoadError::Invalid(d)) => {
            diags.error(
                at("file"),
                format!(
                    "playbook `{}` is invalid ({} problem{}, listed below)",
                    raw.file,
                    d.len(),
                    if d.len() == 1 { "" } else { "s" }
                ),
            );
            nested.extend(d);
            return None;
        }
    };
    let before = diags.len();
    for (name, v) in &raw.inputs {
        let pos = item.get("inputs").and_then(|m| m.get(name)).map_or(at("inputs"), |n| n.pos);
        let Some(spec) = pb.inputs.get(name) else {
            let msg = match did_you_mean(name, pb.inputs.keys().map(String::as_str)) {
                Some(s) => format!("input `{name}` is not declared by playbook {} (did you mean `{s}`?)", pb.name),
                None => format!("input `{name}` is not declared by playbook {}", pb.name),
            };
            diags.error(key_at("inputs", name), msg);
            continue;
        };
        if spec.secret {
            // A drill suite is committed and read by auditors: a secret written into it is leaked.
            diags.error(pos, format!("input `{name}` is secret: its value does not belong in the suite")).hint =
                Some(format!("give it through the environment: `env: {{ {}: \"${{VAR}}\" }}`", input_env_var(name)));
            continue;
        }
        if let Some(text) = v.as_str()
            && text.contains("${")
        {
            // Taken from the environment when the drill runs; `runbook exec` checks the value then.
            if let Err(e) = expand_refs(text) {
                diags.error(pos, format!("input `{name}`: {e}"));
            }
            continue;
        }
        if let Err(e) = check_value(spec.kind, v).and_then(|c| check_enum(name, spec, &c)) {
            diags.error(pos, format!("input `{name}`: {e}"));
        }
    }
    for (name, spec) in &pb.inputs {
        let env_name = input_env_var(name);
        let given = raw.inputs.contains_key(name)
            || raw.env.contains_key(&env_name)
            || suite_env.contains_key(&env_name)
            || std::env::var_os(&env_name).is_some();
        if spec.required && spec.default.is_none() && !given {
            diags.error(at("id"), format!("playbook {} requires input `{name}`", pb.name)).hint =
                Some(format!("add it under `inputs:` (or, if secret, `env: {{ {env_name}: \"${{VAR}}\" }}`)"));
        }
    }
    for (i, a) in raw.approve.iter().enumerate() {
        let pos = item.get("approve").and_then(|n| n.index(i)).map_or(at("approve"), |n| n.pos);
        match pb.step(a) {
            Some(s) if s.kind.name() == "approval" => {}
            Some(_) => {
                diags.error(pos, format!("approve: step `{a}` of playbook {} is not an approval step", pb.name));
            }
            None => {
                diags.error(pos, format!("approve: playbook {} has no step `{a}`", pb.name));
            }
        }
    }
    for name in raw.expect_steps.keys() {
        if pb.step(name).is_none() {
            let msg = match did_you_mean(name, pb.steps.iter().map(|s| s.id.as_str())) {
                Some(s) => format!("expect_steps: playbook {} has no step `{name}` (did you mean `{s}`?)", pb.name),
                None => format!("expect_steps: playbook {} has no step `{name}`", pb.name),
            };
            diags.error(key_at("expect_steps", name), msg);
        }
    }
    if diags.len() != before {
        return None;
    }
    Some(Entry { raw, path, playbook: pb })
}
