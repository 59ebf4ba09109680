//! Reference analysis: what a template may name (inputs, vars, env, run, steps, outputs)
//! from where it stands, checked once the DAG is known, with a did-you-mean for typos.

use super::{Checker, Parts};
use crate::playbook::diag::did_you_mean;
use crate::playbook::node::{Node, NodeKind, Pos};
use crate::template;
use std::collections::HashSet;

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
pub(super) enum Scope {
    /// `vars.<name>` at this index: inputs, env, run and earlier vars.
    Var(usize),
    /// A step's `with` or `when`.
    Step(usize),
    /// A step's `retry.until`: also its own `outputs`.
    Until(usize),
}

pub(super) struct PendingRefs {
    scope: Scope,
    pos: Pos,
    refs: Vec<String>,
}

impl Checker {
    /// Finds every template string under `node`, checks its syntax and queues its references.
    pub(super) fn templates_in(&mut self, node: &Node, scope: Scope, pending: &mut Vec<PendingRefs>) {
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

    pub(super) fn expression(
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

    /// Checks what templates reference, once the DAG is known (step references need it).
    pub(super) fn references(&mut self, parts: &Parts, mut pending: Vec<PendingRefs>) {
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
