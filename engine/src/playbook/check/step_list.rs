//! Checking the `steps` list: each step's keys, type, parameters, `needs`, `when`,
//! `trigger` and `retry`, then the DAG.

use super::Checker;
use super::refs::{PendingRefs, Scope};
use super::serde_msg::{describe_at, scalar_text, tidy_serde};
use crate::graph::Dag;
use crate::playbook::diag::did_you_mean;
use crate::playbook::model::{Retry, Step, When};
use crate::playbook::node::{Node, NodeKind, Pos, Seg, segs};
use crate::playbook::raw::{RawRetry, RawStep, WhenValue};
use crate::steps;
use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;

/// The keys of a step, as in [`RawStep`] (a unit test holds them together).
pub(super) const STEP_KEYS: &[&str] = &[
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
pub(super) const RETRY_KEYS: &[&str] = &["attempts", "delay", "backoff", "max_delay", "until"];

impl Checker {
    pub(super) fn steps(
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
    pub(super) fn field<T: DeserializeOwned>(
        &mut self,
        map: &Node,
        key: &str,
        label: &str,
        ok: &mut bool,
    ) -> Option<T> {
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
        let mut ok = self.known_keys(item, STEP_KEYS, label);
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
}

/// Every problem of a step's parameters, not only the first: serde stops at the first bad
/// value, so the parameter it names is taken away and the rest checked again. What that
/// removal causes itself (the parameter now missing, a rule about the whole set) is not
/// reported. Returns the type's idempotence when all is well.
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
