//! Property tests (proptest), small enough for CI.
//!
//! - [`dispatcher_matches_the_reference_model`]: random DAGs of `shell` steps that succeed or
//!   fail and of approvals given or not, with random triggers, `when` and
//!   `continue_on_error`, run by the real binary (`--max-parallel 1`, so the order is fixed)
//!   and, when the run did not succeed, resumed with new outcomes, against [`model`], a
//!   direct reading of the rules in docs/format.md and docs/semantics.md.
//! - [`in_parallel_every_step_agrees_with_its_needs`]: the same DAGs with steps in parallel,
//!   where the order is a race: each step's result against its needs' results.
//! - [`loading_mutated_playbooks_never_panics_and_every_error_has_a_position`]: the real
//!   playbooks in playbooks/, changed at random (keys deleted, renamed, duplicated; values
//!   replaced by values of other types and odd Unicode; nodes nested past the depth limit;
//!   text spliced in or cut off), loaded through the library; and
//! - [`a_duplicated_key_is_reported_where_it_is`]: one key written twice anywhere in a real
//!   playbook is an error at the second one's line, naming the key.

use crate::support::{Env, repo_root, step};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use std::collections::VecDeque;

// ---------------------------------------------------------------------------------------
// The dispatcher against a reference model.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Trig {
    Success,
    Failure,
    Always,
}

#[derive(Clone, Debug)]
struct Spec {
    needs: Vec<usize>,
    /// Whether the step succeeds in the first run, and in the resume after it.
    ok: bool,
    ok_again: bool,
    trigger: Trig,
    /// None, or the value of `when` (written as a constant or as an expression).
    when: Option<bool>,
    when_expr: bool,
    continue_on_error: bool,
    /// An `approval` step instead of a shell one: approved with `--approve` or not.
    approval: Option<bool>,
}

fn dag() -> impl Strategy<Value = Vec<Spec>> {
    let step = (
        any::<u8>(),
        (prop::bool::weighted(0.7), prop::bool::weighted(0.8)),
        prop_oneof![4 => Just(Trig::Success), 2 => Just(Trig::Failure), 1 => Just(Trig::Always)],
        prop_oneof![5 => Just(None), 1 => Just(Some(true)), 2 => Just(Some(false))],
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop_oneof![6 => Just(None), 1 => Just(Some(true)), 1 => Just(Some(false))],
    );
    prop::collection::vec(step, 2..8).prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (mask, (ok, ok_again), trigger, when, when_expr, continue_on_error, approval))| Spec {
                // Any subset of the earlier steps: at most 7 of them, so a u8 covers it.
                needs: (0..i).filter(|j| mask & (1 << j) != 0).collect(),
                ok,
                ok_again,
                trigger,
                when,
                when_expr,
                continue_on_error,
                approval,
            })
            .collect()
    })
}

fn yaml(specs: &[Spec]) -> String {
    let mut y = String::from("apiVersion: runbook/v1\nname: prop\nsteps:\n");
    for (i, s) in specs.iter().enumerate() {
        if s.approval.is_some() {
            y += &format!("  - id: s{i}\n    type: approval\n");
        } else {
            // Idempotent: nothing here is about crashes, and it spares two fsyncs per step.
            y += &format!("  - id: s{i}\n    type: shell\n    idempotent: true\n");
        }
        if !s.needs.is_empty() {
            let needs: Vec<String> = s.needs.iter().map(|j| format!("s{j}")).collect();
            y += &format!("    needs: [{}]\n", needs.join(", "));
        }
        match s.trigger {
            Trig::Success => {}
            Trig::Failure => y += "    trigger: failure\n",
            Trig::Always => y += "    trigger: always\n",
        }
        match (s.when, s.when_expr) {
            (None, _) => {}
            (Some(w), false) => y += &format!("    when: {w}\n"),
            (Some(true), true) => y += "    when: \"1 < 2\"\n",
            (Some(false), true) => y += "    when: \"1 > 2\"\n",
        }
        if s.continue_on_error {
            y += "    continue_on_error: true\n";
        }
        if s.approval.is_some() {
            y += "    with: { message: go on? }\n";
        } else {
            // Succeeds while its file exists: the test decides before the exec and the resume.
            y += &format!("    with: {{ command: [test, -f, s{i}.ok] }}\n");
        }
    }
    y
}

#[derive(Clone, Debug, PartialEq)]
struct Outcome {
    /// Run status and exit code.
    run: (String, i32),
    /// Per step: status and `skipped_by`.
    steps: Vec<(String, Option<String>)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum St {
    Pending,
    NotStarted,
    Succeeded,
    Failed,
    SkippedWhen,
    SkippedTrigger,
    Waiting,
}

/// The documented rules, written as plainly as possible (one step at a time, as with
/// `--max-parallel 1`: ready steps in the order they became ready, the first ones in file
/// order). `start` holds what a resume keeps (`Pending` for the steps to run).
/// - `trigger: success` (format.md) runs when every need succeeded, was skipped by its
///   `when`, or failed with `continue_on_error`; a need that failed otherwise skips it
///   (`skipped_by: trigger`), and so does a need skipped by its trigger (Argo's "omitted",
///   semantics.md). A need that never started leaves it not started (`pending`), as does a
///   run that has already failed ("no new `trigger: success` step starts").
/// - `trigger: failure` runs when some ancestor failed (without `continue_on_error`), through
///   any path of needs (GitHub Actions' `failure()`); otherwise it is skipped by its trigger,
///   or stays pending when a need never started.
/// - `trigger: always` runs in any case once its needs are settled, even when one was not
///   started because the run had failed (GitHub Actions' `always()`).
/// - A step that would start but whose `when` is false is skipped (`skipped_by: when`).
/// - An approval that would start succeeds when `--approve` names it, and otherwise waits;
///   a waiting approval blocks its dependents whatever their trigger (semantics.md).
/// - The run fails when a step failed without `continue_on_error` (exit 1); otherwise it is
///   paused while an approval waits (exit 3), else it succeeds.
fn simulate(specs: &[Spec], ok: impl Fn(usize) -> bool, start: Vec<St>) -> (Vec<St>, bool) {
    let n = specs.len();
    let mut st = start;
    let hard_failed = |st: &[St], j: usize| st[j] == St::Failed && !specs[j].continue_on_error;
    // "Some ancestor (or the step itself) failed": what a failure trigger looks for.
    let mut failed_line = vec![false; n];
    for i in 0..n {
        if st[i] != St::Pending {
            failed_line[i] = hard_failed(&st, i) || specs[i].needs.iter().any(|&j| failed_line[j]);
        }
    }
    let mut run_failed = false;
    let mut remaining: Vec<usize> =
        specs.iter().map(|s| s.needs.iter().filter(|&&j| st[j] == St::Pending).count()).collect();
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| st[i] == St::Pending && remaining[i] == 0).collect();
    while let Some(i) = ready.pop_front() {
        let s = &specs[i];
        let decided = match s.trigger {
            Trig::Success => {
                if s.needs.iter().any(|&j| hard_failed(&st, j) || st[j] == St::SkippedTrigger) {
                    Some(St::SkippedTrigger)
                } else if s.needs.iter().any(|&j| st[j] == St::NotStarted) || run_failed {
                    Some(St::NotStarted)
                } else {
                    None
                }
            }
            Trig::Failure => {
                if s.needs.iter().any(|&j| failed_line[j]) {
                    None
                } else if s.needs.iter().any(|&j| st[j] == St::NotStarted) {
                    Some(St::NotStarted)
                } else {
                    Some(St::SkippedTrigger)
                }
            }
            Trig::Always => None,
        };
        st[i] = match decided {
            Some(d) => d,
            None if s.when == Some(false) => St::SkippedWhen,
            None if s.approval == Some(true) => St::Succeeded,
            None if s.approval == Some(false) => St::Waiting,
            None if ok(i) => St::Succeeded,
            None => St::Failed,
        };
        if hard_failed(&st, i) {
            run_failed = true;
        }
        failed_line[i] = hard_failed(&st, i) || s.needs.iter().any(|&j| failed_line[j]);
        if st[i] == St::Waiting {
            continue;
        }
        for (d, spec) in specs.iter().enumerate() {
            if spec.needs.contains(&i) && st[d] == St::Pending {
                remaining[d] -= 1;
                if remaining[d] == 0 {
                    ready.push_back(d);
                }
            }
        }
    }
    (st, run_failed)
}

/// What `resume` runs again (docs/semantics.md): failed, waiting and not-started steps, every step
/// downstream of them that did not succeed, and every `failure`/`always` handler downstream
/// of them even if it succeeded (it is decided anew). The rest is kept.
fn resume_start(specs: &[Spec], first: &[St]) -> Vec<St> {
    let mut down: Vec<bool> =
        first.iter().map(|s| matches!(s, St::Failed | St::NotStarted | St::Waiting | St::Pending)).collect();
    for i in 0..specs.len() {
        down[i] |= specs[i].needs.iter().any(|&j| down[j]);
    }
    (0..specs.len())
        .map(|i| {
            let again = down[i] && (first[i] != St::Succeeded || specs[i].trigger != Trig::Success);
            if again { St::Pending } else { first[i] }
        })
        .collect()
}

fn outcome(st: &[St], run_failed: bool) -> Outcome {
    let steps = st
        .iter()
        .map(|s| match s {
            St::Pending | St::NotStarted => ("pending".to_owned(), None),
            St::Succeeded => ("succeeded".to_owned(), None),
            St::Failed => ("failed".to_owned(), None),
            St::SkippedWhen => ("skipped".to_owned(), Some("when".to_owned())),
            St::SkippedTrigger => ("skipped".to_owned(), Some("trigger".to_owned())),
            St::Waiting => ("waiting".to_owned(), None),
        })
        .collect();
    let run = if run_failed {
        ("failed".to_owned(), 1)
    } else if st.contains(&St::Waiting) {
        ("paused".to_owned(), 3)
    } else {
        ("succeeded".to_owned(), 0)
    };
    Outcome { run, steps }
}

/// The first run and, when it did not succeed, the resume after it (with the steps' second
/// outcomes, and the same approvals).
fn model(specs: &[Spec]) -> (Outcome, Option<Outcome>) {
    let (first, failed) = simulate(specs, |i| specs[i].ok, vec![St::Pending; specs.len()]);
    let resumed = (failed || first.contains(&St::Waiting)).then(|| {
        let (st, failed) = simulate(specs, |i| specs[i].ok_again, resume_start(specs, &first));
        outcome(&st, failed)
    });
    (outcome(&first, failed), resumed)
}

fn observe(env: &Env, n: usize, code: i32) -> Outcome {
    let show = env.show("p");
    let steps = (0..n)
        .map(|i| {
            let s = step(&show, &format!("s{i}"));
            (s["status"].as_str().unwrap_or("?").to_owned(), s["skipped_by"].as_str().map(str::to_owned))
        })
        .collect();
    Outcome { run: (show["status"].as_str().unwrap_or("?").to_owned(), code), steps }
}

fn set_outcomes(env: &Env, ok: impl Fn(usize) -> bool, n: usize) {
    for i in 0..n {
        let f = env.path(&format!("s{i}.ok"));
        if ok(i) {
            std::fs::write(&f, "").unwrap();
        } else {
            let _ = std::fs::remove_file(&f);
        }
    }
}

fn real(specs: &[Spec]) -> (Outcome, Option<Outcome>) {
    let env = Env::new();
    env.write("p.yaml", &yaml(specs));
    set_outcomes(&env, |i| specs[i].ok, specs.len());
    let approve: Vec<String> =
        (0..specs.len()).filter(|&i| specs[i].approval == Some(true)).map(|i| format!("--approve=s{i}")).collect();
    let args = |first: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = first.iter().map(|s| (*s).to_owned()).collect();
        v.extend(["--max-parallel".to_owned(), "1".to_owned()]);
        v.extend(approve.iter().cloned());
        v
    };
    let r = env.run(&args(&["exec", "p.yaml", "--run-id", "p"]).iter().map(String::as_str).collect::<Vec<_>>());
    let first = observe(&env, specs.len(), r.code);
    let resumed = (r.code != 0).then(|| {
        set_outcomes(&env, |i| specs[i].ok_again, specs.len());
        let r = env.run(&args(&["resume", "p"]).iter().map(String::as_str).collect::<Vec<_>>());
        observe(&env, specs.len(), r.code)
    });
    (first, resumed)
}

proptest! {
    #![proptest_config(Config { cases: 48, failure_persistence: None, ..Config::default() })]

    /// The real dispatcher decides every step (status, `skipped_by`), the run's status and
    /// the exit code as the reference model does, in the first run and, when that failed, in
    /// a `resume` where each step may now succeed or fail differently.
    #[test]
    fn dispatcher_matches_the_reference_model(specs in dag()) {
        let want = model(&specs);
        let got = real(&specs);
        prop_assert_eq!(&got, &want, "playbook:\n{}", yaml(&specs));
    }
}

/// What each step must be, given only the final statuses of its needs: the rules of
/// [`simulate`] that do not depend on the order steps ran in. With steps in parallel, which
/// `trigger: success` steps had started before another branch failed is a race, so a step
/// that could start may also be `pending` ("the run had already failed") — but only then.
fn check_settled(specs: &[Spec], got: &Outcome) -> Result<(), String> {
    let status = |j: usize| got.steps[j].0.as_str();
    let skipped_by = |j: usize| got.steps[j].1.as_deref();
    let hard_failed = |j: usize| status(j) == "failed" && !specs[j].continue_on_error;
    let run_failed = (0..specs.len()).any(hard_failed);
    let mut failed_line = vec![false; specs.len()];
    for (i, s) in specs.iter().enumerate() {
        failed_line[i] = hard_failed(i) || s.needs.iter().any(|&j| failed_line[j]);
        let ran = if s.when == Some(false) {
            ("skipped", Some("when"))
        } else if s.ok {
            ("succeeded", None)
        } else {
            ("failed", None)
        };
        let pending = ("pending", None);
        let skip = ("skipped", Some("trigger"));
        let allowed: Vec<(&str, Option<&str>)> = match s.trigger {
            Trig::Success => {
                if s.needs.iter().any(|&j| hard_failed(j) || skipped_by(j) == Some("trigger")) {
                    vec![skip]
                } else if s.needs.iter().any(|&j| status(j) == "pending") {
                    vec![pending]
                } else if run_failed {
                    vec![ran, pending]
                } else {
                    vec![ran]
                }
            }
            Trig::Failure => {
                if s.needs.iter().any(|&j| failed_line[j]) {
                    vec![ran]
                } else if s.needs.iter().any(|&j| status(j) == "pending") {
                    vec![pending]
                } else {
                    vec![skip]
                }
            }
            Trig::Always => vec![ran],
        };
        if !allowed.contains(&(status(i), skipped_by(i))) {
            return Err(format!("s{i} is {:?}, but its needs' results allow only {allowed:?}", got.steps[i]));
        }
    }
    let want = if run_failed { ("failed", 1) } else { ("succeeded", 0) };
    if (got.run.0.as_str(), got.run.1) != want {
        return Err(format!("the run is {:?}, want {want:?}", got.run));
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 32, failure_persistence: None, ..Config::default() })]

    /// With steps in parallel (the default `--max-parallel`), every step's result agrees with
    /// its needs' results by the documented rules ([`check_settled`]), and the run's status
    /// and exit code with its steps'.
    #[test]
    fn in_parallel_every_step_agrees_with_its_needs(specs in dag()) {
        let specs: Vec<Spec> = specs.into_iter().map(|s| Spec { approval: None, ..s }).collect();
        let env = Env::new();
        env.write("p.yaml", &yaml(&specs));
        set_outcomes(&env, |i| specs[i].ok, specs.len());
        let r = env.run(&["exec", "p.yaml", "--run-id", "p"]);
        let got = observe(&env, specs.len(), r.code);
        if let Err(e) = check_settled(&specs, &got) {
            return Err(TestCaseError::fail(format!("{e}\n{}", yaml(&specs))));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Loading mutated playbooks.

/// A YAML tree that can hold what serde_json cannot: duplicate keys, and keys in any order.
#[derive(Clone, Debug)]
enum Y {
    Scalar(String),
    Map(Vec<(String, Y)>),
    Seq(Vec<Y>),
}

fn from_json(v: &serde_json::Value) -> Y {
    use serde_json::Value as V;
    match v {
        V::Object(m) => Y::Map(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
        V::Array(a) => Y::Seq(a.iter().map(from_json).collect()),
        V::String(s) => Y::Scalar(quote(s)),
        other => Y::Scalar(other.to_string()),
    }
}

/// A double-quoted YAML scalar: JSON's escapes are valid YAML escapes.
fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') { k.to_owned() } else { quote(k) }
}

fn emit(y: &Y, indent: usize, out: &mut String) {
    emit_at(y, indent, out, &mut Vec::new(), &[], &mut None);
}

/// Emits block YAML; `found` gets the line (1-based) where the node at path `target` starts
/// (its key's line for a map entry, its dash's for a list item).
fn emit_at(y: &Y, indent: usize, out: &mut String, here: &mut Vec<usize>, target: &[usize], found: &mut Option<u64>) {
    let pad = " ".repeat(indent);
    let mark = |out: &String, here: &[usize], found: &mut Option<u64>| {
        if here == target {
            *found = Some(out.matches('\n').count() as u64 + 1);
        }
    };
    match y {
        Y::Scalar(s) => {
            out.push_str(&pad);
            out.push_str(s);
            out.push('\n');
        }
        Y::Map(m) if m.is_empty() => out.push_str(&format!("{pad}{{}}\n")),
        Y::Seq(s) if s.is_empty() => out.push_str(&format!("{pad}[]\n")),
        Y::Map(m) => {
            for (i, (k, v)) in m.iter().enumerate() {
                here.push(i);
                mark(out, here, found);
                match v {
                    Y::Scalar(s) => out.push_str(&format!("{pad}{}: {s}\n", key(k))),
                    Y::Map(x) if x.is_empty() => out.push_str(&format!("{pad}{}: {{}}\n", key(k))),
                    Y::Seq(x) if x.is_empty() => out.push_str(&format!("{pad}{}: []\n", key(k))),
                    _ => {
                        out.push_str(&format!("{pad}{}:\n", key(k)));
                        emit_at(v, indent + 2, out, here, target, found);
                    }
                }
                here.pop();
            }
        }
        Y::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                here.push(i);
                mark(out, here, found);
                match v {
                    Y::Scalar(s) => out.push_str(&format!("{pad}- {s}\n")),
                    _ => {
                        out.push_str(&format!("{pad}-\n"));
                        emit_at(v, indent + 2, out, here, target, found);
                    }
                }
                here.pop();
            }
        }
    }
}

/// Every node, as a path of child indices from the root.
fn paths(y: &Y, here: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    out.push(here.clone());
    let children: Vec<&Y> = match y {
        Y::Scalar(_) => Vec::new(),
        Y::Map(m) => m.iter().map(|(_, v)| v).collect(),
        Y::Seq(s) => s.iter().collect(),
    };
    for (i, c) in children.into_iter().enumerate() {
        here.push(i);
        paths(c, here, out);
        here.pop();
    }
}

fn at<'a>(y: &'a mut Y, path: &[usize]) -> &'a mut Y {
    match path.split_first() {
        None => y,
        Some((&i, rest)) => match y {
            Y::Map(m) => at(&mut m[i].1, rest),
            Y::Seq(s) => at(&mut s[i], rest),
            Y::Scalar(_) => unreachable!("paths only lead into collections"),
        },
    }
}

/// Text that parsers and renderers get wrong: controls, a BOM, bidi marks, joiners,
/// line and paragraph separators, NEL, astral characters, combining marks, YAML indicators.
fn odd_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "\u{0}", "\u{7}", "\t", "\r", "\u{85}", "\u{2028}", "\u{2029}", "\u{feff}", "\u{202e}", "\u{200d}", "\u{301}",
        "😀", "𝕏", "é", "日本", "{{", "}}", "{%", ": ", "- ", "#", "&a", "*a", "!!str", "<<", "'", "\"", "\\", "---",
        "...", "|", ">", "@", "`", "%", "needs", "id", "steps", "x",
    ]);
    prop::collection::vec(pieces, 0..6).prop_map(|v| v.concat())
}

/// A value of any type, to put where something else was.
fn odd_value() -> impl Strategy<Value = Y> {
    prop_oneof![
        Just(Y::Scalar("null".into())),
        Just(Y::Scalar("true".into())),
        Just(Y::Scalar("-1".into())),
        Just(Y::Scalar("0".into())),
        Just(Y::Scalar("1e309".into())),
        Just(Y::Scalar("99999999999999999999999".into())),
        Just(Y::Scalar("0755".into())),
        Just(Y::Scalar("no".into())),
        Just(Y::Scalar("~".into())),
        Just(Y::Scalar("\"\"".into())),
        Just(Y::Map(Vec::new())),
        Just(Y::Seq(Vec::new())),
        Just(Y::Seq(vec![Y::Scalar("1".into()), Y::Map(vec![("a".into(), Y::Scalar("b".into()))])])),
        odd_text().prop_map(|s| Y::Scalar(quote(&s))),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    DeleteKey(Index, Index),
    Replace(Index, Y),
    DuplicateKey(Index, Index, Option<Y>),
    RenameKey(Index, Index, String),
    Nest(Index, usize),
    /// On the emitted text: splice text in at a character, or cut the file there.
    Splice(Index, String),
    Cut(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::DeleteKey(a, b)),
        3 => (any::<Index>(), odd_value()).prop_map(|(a, v)| Mutation::Replace(a, v)),
        2 => (any::<Index>(), any::<Index>(), prop::option::of(odd_value()))
            .prop_map(|(a, b, v)| Mutation::DuplicateKey(a, b, v)),
        2 => (any::<Index>(), any::<Index>(), odd_text()).prop_map(|(a, b, k)| Mutation::RenameKey(a, b, k)),
        1 => (any::<Index>(), 1usize..100).prop_map(|(a, d)| Mutation::Nest(a, d)),
        2 => (any::<Index>(), odd_text()).prop_map(|(a, t)| Mutation::Splice(a, t)),
        1 => any::<Index>().prop_map(Mutation::Cut),
    ]
}

fn apply_tree(y: &mut Y, m: &Mutation) {
    let mut all = Vec::new();
    paths(y, &mut Vec::new(), &mut all);
    let maps: Vec<&Vec<usize>> =
        all.iter().filter(|p| matches!(at(&mut y.clone(), p), Y::Map(m) if !m.is_empty())).collect();
    match m {
        Mutation::DeleteKey(a, b) | Mutation::DuplicateKey(a, b, _) | Mutation::RenameKey(a, b, _) => {
            if maps.is_empty() {
                return;
            }
            let path = maps[a.index(maps.len())].clone();
            let Y::Map(entries) = at(y, &path) else { return };
            let k = b.index(entries.len());
            match m {
                Mutation::DeleteKey(..) => {
                    entries.remove(k);
                }
                Mutation::DuplicateKey(_, _, v) => {
                    let (name, old) = entries[k].clone();
                    entries.push((name, v.clone().unwrap_or(old)));
                }
                Mutation::RenameKey(_, _, new) => entries[k].0 = new.clone(),
                _ => {}
            }
        }
        Mutation::Replace(a, v) => *at(y, &all[a.index(all.len())]) = v.clone(),
        Mutation::Nest(a, depth) => {
            let node = at(y, &all[a.index(all.len())]);
            for d in 0..*depth {
                let inner = std::mem::replace(node, Y::Seq(Vec::new()));
                *node = if d % 2 == 0 { Y::Seq(vec![inner]) } else { Y::Map(vec![("k".into(), inner)]) };
            }
        }
        Mutation::Splice(..) | Mutation::Cut(_) => {}
    }
}

fn apply_text(text: &mut String, m: &Mutation) {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    match m {
        Mutation::Splice(a, s) => text.insert_str(*a.get(&bounds), s),
        Mutation::Cut(a) => text.truncate(*a.get(&bounds)),
        _ => {}
    }
}

fn playbooks() -> Vec<(String, Y)> {
    let dir = repo_root().join("playbooks");
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir).expect("playbooks/").flatten().map(|e| e.path()).collect();
    names.sort();
    for p in names.into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(&p).expect("read playbook");
        let limits = runbook::playbook::node::Limits { max_depth: 64, max_nodes: 400_000, max_bytes: 32 << 20 };
        let tree = runbook::playbook::node::parse(&text, limits).expect("the real playbooks parse").to_json();
        out.push((p.file_name().unwrap().to_string_lossy().into_owned(), from_json(&tree)));
    }
    assert!(out.len() >= 5, "expected the playbooks in playbooks/, found {}", out.len());
    out
}

proptest! {
    #![proptest_config(Config { cases: 256, failure_persistence: None, ..Config::default() })]

    /// Loading and checking a mutated playbook never panics; when it fails, it fails with
    /// diagnostics (never an I/O error), each naming the file and a line:col inside the text
    /// (line 1 to the last line + 1, column 1 to the line's length + 1), with a message, and
    /// each renders as a snippet without panicking.
    #[test]
    fn loading_mutated_playbooks_never_panics_and_every_error_has_a_position(
        which in any::<Index>(),
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        thread_local!(static PLAYBOOKS: Vec<(String, Y)> = playbooks());
        let (name, mut tree) = PLAYBOOKS.with(|p| which.get(p).clone());
        for m in &muts {
            apply_tree(&mut tree, m);
        }
        let mut text = String::new();
        emit(&tree, 0, &mut text);
        for m in &muts {
            apply_text(&mut text, m);
        }
        let file = format!("mutated-{name}");
        let loaded = std::panic::catch_unwind(|| runbook::playbook::load_str(&file, text.clone(), None));
        let Ok(result) = loaded else {
            return Err(TestCaseError::fail(format!("load_str panicked on:\n{text}")));
        };
        match result {
            Ok(_) => {}
            Err(runbook::playbook::LoadError::Io { message, .. }) => {
                return Err(TestCaseError::fail(format!("an I/O error from text: {message}\n{text}")));
            }
            Err(runbook::playbook::LoadError::Invalid(diags)) => {
                prop_assert!(!diags.is_empty(), "an error without a diagnostic:\n{}", text);
                // Lines as YAML counts them (and editors show them): CR LF, a lone CR, or LF.
                let lines: Vec<&str> = text.split("\r\n").flat_map(|l| l.split(['\r', '\n'])).collect();
                for d in &diags {
                    prop_assert_eq!(&d.file, &file);
                    prop_assert!(!d.message.trim().is_empty(), "empty message at {}:{}", d.line, d.col);
                    let line_ok = d.line >= 1 && (d.line as usize) <= lines.len();
                    prop_assert!(line_ok, "{} is outside the text ({} lines):\n{}", d, lines.len(), text);
                    let width = lines[d.line as usize - 1].chars().count() as u64;
                    let col_ok = d.col >= 1 && d.col <= width + 1;
                    prop_assert!(col_ok, "{} is past its line ({} chars):\n{}", d, width, text);
                    let shown = std::panic::catch_unwind(|| d.snippet(&text, false));
                    prop_assert!(shown.is_ok(), "the snippet of {} panicked", d);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: 64, failure_persistence: None, ..Config::default() })]

    /// A key written twice in any mapping of a real playbook is refused, and the error is at
    /// the second one's line and names the key (a position that is merely inside the file
    /// would pass the property above).
    #[test]
    fn a_duplicated_key_is_reported_where_it_is(
        which in any::<Index>(),
        map in any::<Index>(),
        entry in any::<Index>(),
    ) {
        thread_local!(static PLAYBOOKS: Vec<(String, Y)> = playbooks());
        let (_, mut tree) = PLAYBOOKS.with(|p| which.get(p).clone());
        let mut all = Vec::new();
        paths(&tree, &mut Vec::new(), &mut all);
        let maps: Vec<Vec<usize>> =
            all.into_iter().filter(|p| matches!(at(&mut tree.clone(), p), Y::Map(m) if !m.is_empty())).collect();
        let path = maps[map.index(maps.len())].clone();
        let Y::Map(entries) = at(&mut tree, &path) else { unreachable!("chosen among maps") };
        let (name, value) = entries[entry.index(entries.len())].clone();
        entries.push((name.clone(), value));
        let mut target = path.clone();
        target.push(entries.len() - 1);
        let (mut text, mut line) = (String::new(), None);
        emit_at(&tree, 0, &mut text, &mut Vec::new(), &target, &mut line);
        let line = line.expect("the duplicate was written");
        match runbook::playbook::load_str("dup.yaml", text.clone(), None) {
            Err(runbook::playbook::LoadError::Invalid(diags)) => {
                let want = format!("duplicate key `{name}`");
                prop_assert!(
                    diags.iter().any(|d| d.line == line && d.message.contains(&want)),
                    "want `{}` at line {}, got:\n{}\n{}",
                    want, line, diags.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"), text
                );
            }
            other => {
                let what = if other.is_ok() { "loaded" } else { "an I/O error" };
                return Err(TestCaseError::fail(format!("a duplicate key was not refused ({what}):\n{text}")));
            }
        }
    }
}

/// Found by the property above: `with: 1e309` (a float that overflows to infinity) read as
/// null, i.e. as no `with` at all, and `load_str` panicked on a playbook that had no error
/// to report. A number JSON cannot hold is now an error where it is written.
#[test]
fn a_number_that_is_not_finite_is_an_error_where_it_is_written() {
    for (value, col) in [("1e309", 11), (".inf", 11), ("[-.inf]", 12), (".NaN", 11)] {
        let text = format!("apiVersion: runbook/v1\nname: x\nsteps:\n  - id: a\n    type: shell\n    with: {value}\n");
        let Err(runbook::playbook::LoadError::Invalid(diags)) = runbook::playbook::load_str("p.yaml", text, None)
        else {
            panic!("`with: {value}` was accepted");
        };
        let got: Vec<String> = diags.iter().map(ToString::to_string).collect();
        let word = value.trim_matches(['[', ']']);
        assert_eq!(
            got,
            [format!("p.yaml:6:{col}: invalid YAML: `{word}` is not a finite number; quote it if it is meant as text")]
        );
    }
}

/// Found by the load property: a severity starting with a character of several bytes
/// (`"😀"`, a line separator) panicked on a byte slice instead of being refused.
#[test]
fn a_severity_in_any_script_is_refused_without_a_panic() {
    for severity in ["😀 outage", "\u{2028}", "é", "S"] {
        let text = format!(
            concat!(
                "apiVersion: runbook/v1\nname: x\nseverity: {}\n",
                "steps:\n  - id: a\n    type: shell\n    with: {{ command: [x] }}\n"
            ),
            serde_json::to_string(severity).unwrap()
        );
        let Err(runbook::playbook::LoadError::Invalid(diags)) = runbook::playbook::load_str("p.yaml", text, None)
        else {
            panic!("severity {severity:?} was accepted");
        };
        assert_eq!((diags[0].line, diags[0].col), (3, 11), "{}", diags[0]);
        assert!(diags[0].message.starts_with("invalid severity `"), "{}", diags[0]);
    }
}
