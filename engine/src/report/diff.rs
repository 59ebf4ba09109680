//! `runbook diff`: what changed between two versions of a playbook, as a reviewer needs it:
//! steps added, removed, renamed (same type and parameters, new id) and changed (field by
//! field, templates as written), edges, objectives, inputs and secrets; and the warnings a
//! reviewer must not miss: a step that changes the world lost its approval, became
//! non-idempotent, a timeout or retry grew, a new secret.

use crate::playbook::Playbook;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

#[derive(Debug, Serialize, Default)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// (old id, new id)
    pub renamed: Vec<(String, String)>,
    /// step → field → (old, new)
    pub changed: BTreeMap<String, BTreeMap<String, (Value, Value)>>,
    pub edges_added: Vec<(String, String)>,
    pub edges_removed: Vec<(String, String)>,
    /// Top-level parts: `objectives`, `inputs.x`, `secrets`, `vars.x`, ...
    pub playbook: BTreeMap<String, (Value, Value)>,
    pub warnings: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.renamed.is_empty()
            && self.changed.is_empty()
            && self.edges_added.is_empty()
            && self.edges_removed.is_empty()
            && self.playbook.is_empty()
    }
}

fn step_json(pb: &Playbook, i: usize) -> BTreeMap<String, Value> {
    let raw = serde_json::to_value(&pb.steps[i].raw).unwrap_or(Value::Null);
    let mut m: BTreeMap<String, Value> = raw.as_object().map(|o| o.clone().into_iter().collect()).unwrap_or_default();
    m.remove("id");
    m
}

/// Fields compared for a rename: everything but the id and the edges.
fn identity(pb: &Playbook, i: usize) -> Value {
    let mut m = step_json(pb, i);
    m.remove("needs");
    m.remove("description");
    json!(m)
}

fn approvals(pb: &Playbook) -> Vec<usize> {
    (0..pb.steps.len()).filter(|&j| pb.steps[j].kind.name() == "approval").collect()
}

pub fn diff(old: &Playbook, new: &Playbook) -> Diff {
    let mut d = Diff::default();
    let old_ids: BTreeSet<&str> = old.steps.iter().map(|s| s.id.as_str()).collect();
    let new_ids: BTreeSet<&str> = new.steps.iter().map(|s| s.id.as_str()).collect();
    let mut removed: Vec<&str> = old_ids.difference(&new_ids).copied().collect();
    let mut added: Vec<&str> = new_ids.difference(&old_ids).copied().collect();
    // Renames: a removed and an added step that are the same but for the id, each removed
    // step taking the first such added one. Added steps are grouped by what they are, so a
    // diff of thousands of unrelated steps is not a comparison of every pair.
    let mut rename: BTreeMap<String, String> = BTreeMap::new();
    let mut by_identity: HashMap<String, VecDeque<&str>> = HashMap::new();
    for a in &added {
        by_identity.entry(identity(new, new.index[*a]).to_string()).or_default().push_back(a);
    }
    for r in removed.clone() {
        if let Some(a) = by_identity.get_mut(&identity(old, old.index[r]).to_string()).and_then(VecDeque::pop_front) {
            rename.insert(r.to_owned(), a.to_owned());
            d.renamed.push((r.to_owned(), a.to_owned()));
        }
    }
    let renamed_to: HashSet<&str> = rename.values().map(String::as_str).collect();
    added.retain(|a| !renamed_to.contains(a));
    removed.retain(|r| !rename.contains_key(*r));
    d.added = added.iter().map(|s| s.to_string()).collect();
    d.removed = removed.iter().map(|s| s.to_string()).collect();
    let new_name = |id: &str| rename.get(id).cloned().unwrap_or_else(|| id.to_owned());

    // Which steps wait for an approval, before and after; the names of those they waited
    // for only where a warning will list them (one pass over each DAG, not a search per pair).
    let (old_gated, new_gated) = (old.dag.below_any(&approvals(old)), new.dag.below_any(&approvals(new)));
    let lost: Vec<usize> = (0..old.steps.len())
        .filter(|&oi| {
            new.index
                .get(&new_name(&old.steps[oi].id))
                .is_some_and(|&ni| !new.steps[ni].idempotent && old_gated[oi] && !new_gated[ni])
        })
        .collect();
    let waited: HashMap<usize, Vec<String>> = lost
        .iter()
        .copied()
        .zip(old.dag.ancestors_from(&approvals(old), &lost))
        .map(|(oi, js)| (oi, js.into_iter().map(|j| old.steps[j].id.clone()).collect()))
        .collect();
    let gates = Gates { new_gated: &new_gated, waited: &waited };

    // Changed fields of the steps in both (renamed ones by their new id). Edges are
    // compared separately, with renames applied.
    for (oi, os) in old.steps.iter().enumerate() {
        let nid = new_name(&os.id);
        let Some(&ni) = new.index.get(&nid) else { continue };
        let (a, b) = (step_json(old, oi), step_json(new, ni));
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            if k == "needs" {
                continue;
            }
            let (va, vb) = (a.get(k).cloned().unwrap_or(Value::Null), b.get(k).cloned().unwrap_or(Value::Null));
            if va != vb {
                d.changed.entry(nid.clone()).or_default().insert(k.clone(), (va, vb));
            }
        }
        warn_step(&mut d, old, oi, new, ni, &gates);
    }
    let added: HashSet<&str> = d.added.iter().map(String::as_str).collect();
    for (ni, ns) in new.steps.iter().enumerate() {
        if added.contains(ns.id.as_str()) && !ns.idempotent && !new_gated[ni] {
            d.warnings.push(format!(
                "new step `{}` ({}) changes things and has no approval before it",
                ns.id,
                ns.kind.name()
            ));
        }
    }
    let edges = |pb: &Playbook, map: &dyn Fn(&str) -> String| -> BTreeSet<(String, String)> {
        pb.steps.iter().flat_map(|s| s.needs.iter().map(move |&j| (map(&pb.steps[j].id), map(&s.id)))).collect()
    };
    let old_edges = edges(old, &|id: &str| new_name(id));
    let new_edges = edges(new, &|id: &str| id.to_owned());
    d.edges_added = new_edges.difference(&old_edges).cloned().collect();
    d.edges_removed = old_edges.difference(&new_edges).cloned().collect();

    // The playbook's own parts.
    let mut top = |key: &str, a: Value, b: Value| {
        if a != b {
            d.playbook.insert(key.to_owned(), (a, b));
        }
    };
    top("name", json!(old.name), json!(new.name));
    top("description", json!(old.description), json!(new.description));
    top("severity", json!(old.severity), json!(new.severity));
    top("objectives", json!(old.objectives), json!(new.objectives));
    top("secrets", json!(old.secrets), json!(new.secrets));
    top("follow_ups", json!(old.follow_ups), json!(new.follow_ups));
    let names: BTreeSet<&String> = old.inputs.keys().chain(new.inputs.keys()).collect();
    for n in names {
        top(&format!("inputs.{n}"), json!(old.inputs.get(n)), json!(new.inputs.get(n)));
    }
    let names: BTreeSet<&String> = old.vars.keys().chain(new.vars.keys()).collect();
    for n in names {
        top(&format!("vars.{n}"), json!(old.vars.get(n)), json!(new.vars.get(n)));
    }
    for s in new.secrets.iter().filter(|s| !old.secrets.contains(s)) {
        d.warnings.push(format!("new secret ${s}"));
    }
    for (n, _) in new.inputs.iter().filter(|(_, i)| i.secret) {
        if !old.inputs.get(n).is_some_and(|o| o.secret) {
            d.warnings.push(format!("new secret input `{n}`"));
        }
    }
    d
}

/// Who waits for an approval: every step of the new playbook, and the approvals each step
/// that lost them used to wait for (by index in the old playbook).
struct Gates<'a> {
    new_gated: &'a [bool],
    waited: &'a HashMap<usize, Vec<String>>,
}

fn warn_step(d: &mut Diff, old: &Playbook, oi: usize, new: &Playbook, ni: usize, gates: &Gates) {
    let (os, ns) = (&old.steps[oi], &new.steps[ni]);
    if !ns.idempotent
        && !gates.new_gated[ni]
        && let Some(before) = gates.waited.get(&oi)
    {
        let mut before = before.clone();
        before.sort();
        d.warnings.push(format!(
            "`{}` ({}) changes things and no longer waits for an approval (it waited for {})",
            ns.id,
            ns.kind.name(),
            before.join(", ")
        ));
    }
    if os.idempotent && !ns.idempotent {
        d.warnings
            .push(format!("`{}` became non-idempotent: after a crash it will not be re-run without asking", ns.id));
    }
    match (os.timeout, ns.timeout) {
        (Some(a), Some(b)) if b > a => d.warnings.push(format!(
            "`{}`: timeout grew from {} to {}",
            ns.id,
            crate::playbook::format_duration(a),
            crate::playbook::format_duration(b)
        )),
        (Some(a), None) => d.warnings.push(format!(
            "`{}`: timeout removed (was {}): it may now wait forever",
            ns.id,
            crate::playbook::format_duration(a)
        )),
        _ => {}
    }
    if ns.retry.attempts > os.retry.attempts {
        d.warnings
            .push(format!("`{}`: retry attempts grew from {} to {}", ns.id, os.retry.attempts, ns.retry.attempts));
    }
    let worst =
        |r: &crate::playbook::Retry| (1..r.attempts).map(|n| r.delay_before(n + 1)).sum::<std::time::Duration>();
    if worst(&ns.retry) > worst(&os.retry) && ns.retry.attempts == os.retry.attempts {
        d.warnings.push(format!("`{}`: retry delays grew", ns.id));
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn text(d: &Diff) -> String {
    if d.is_empty() {
        return "no semantic changes\n".into();
    }
    let mut out = String::new();
    for w in &d.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    for a in &d.added {
        out.push_str(&format!("+ step {a}\n"));
    }
    for r in &d.removed {
        out.push_str(&format!("- step {r}\n"));
    }
    for (a, b) in &d.renamed {
        out.push_str(&format!("~ step {a} renamed to {b}\n"));
    }
    for (id, fields) in &d.changed {
        for (f, (a, b)) in fields {
            out.push_str(&format!("~ step {id}: {f}: {} -> {}\n", short(a), short(b)));
        }
    }
    for (a, b) in &d.edges_added {
        out.push_str(&format!("+ edge {a} -> {b}\n"));
    }
    for (a, b) in &d.edges_removed {
        out.push_str(&format!("- edge {a} -> {b}\n"));
    }
    for (k, (a, b)) in &d.playbook {
        out.push_str(&format!("~ {k}: {} -> {}\n", short(a), short(b)));
    }
    out
}

/// Markdown for a PR comment, with the new playbook's graph and the changed steps marked.
pub fn markdown(d: &Diff, new: &Playbook) -> String {
    let mut out = format!("### runbook diff: `{}`\n\n", new.name);
    if d.is_empty() {
        out.push_str("No semantic changes.\n");
        return out;
    }
    if !d.warnings.is_empty() {
        out.push_str("**Warnings**\n\n");
        for w in &d.warnings {
            out.push_str(&format!("- ⚠️ {w}\n"));
        }
        out.push('\n');
    }
    out.push_str("| change | what |\n|---|---|\n");
    let cell = |s: String| s.replace('|', "\\|").replace('\n', " ");
    for a in &d.added {
        out.push_str(&format!("| added step | `{a}` |\n"));
    }
    for r in &d.removed {
        out.push_str(&format!("| removed step | `{r}` |\n"));
    }
    for (a, b) in &d.renamed {
        out.push_str(&format!("| renamed step | `{a}` → `{b}` |\n"));
    }
    for (id, fields) in &d.changed {
        for (f, (a, b)) in fields {
            out.push_str(&format!(
                "| `{id}`.{f} | {} → {} |\n",
                cell(format!("`{}`", short(a))),
                cell(format!("`{}`", short(b)))
            ));
        }
    }
    for (a, b) in &d.edges_added {
        out.push_str(&format!("| added edge | `{a}` → `{b}` |\n"));
    }
    for (a, b) in &d.edges_removed {
        out.push_str(&format!("| removed edge | `{a}` → `{b}` |\n"));
    }
    for (k, (a, b)) in &d.playbook {
        out.push_str(&format!("| {k} | {} → {} |\n", cell(format!("`{}`", short(a))), cell(format!("`{}`", short(b)))));
    }
    let ids: Vec<&str> = new.steps.iter().map(|s| s.id.as_str()).collect();
    let mut graph = new.dag.mermaid(&ids, |i| format!("{} ({})", new.steps[i].id, new.steps[i].kind.name()));
    let touched: BTreeSet<&str> = d
        .added
        .iter()
        .map(String::as_str)
        .chain(d.renamed.iter().map(|(_, b)| b.as_str()))
        .chain(d.changed.keys().map(String::as_str))
        .collect();
    if !touched.is_empty() {
        graph.push_str("  classDef changed fill:#fff3b0,stroke:#d4a000,stroke-width:2px\n");
        graph.push_str(&format!("  class {} changed\n", touched.into_iter().collect::<Vec<_>>().join(",")));
    }
    out.push_str(&format!("\n```mermaid\n{graph}```\n"));
    out
}
