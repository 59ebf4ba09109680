//! Static views: `show`, `runs`, `plan`.

use crate::playbook::{Playbook, RpoValue, Trigger, When, between, format_duration, human_duration};
use crate::state::{Liveness, RunState, RunSummary, StepStatus};
use serde_json::{Value, json};

pub fn show_json(s: &RunState) -> Value {
    let steps: Vec<Value> = s
        .steps
        .iter()
        .map(|(id, st)| {
            let mut v = json!({
                "id": id,
                "type": st.kind,
                "status": st.status,
                "attempts": st.attempts,
                "started_at": st.started_at,
                "finished_at": st.finished_at,
                "outputs": st.outputs,
                "error": st.error,
                "reason": st.reason,
                "skipped_by": st.skipped_by,
            });
            if let Some(p) = &st.process {
                let alive = match p.liveness() {
                    Liveness::Alive => json!(true),
                    Liveness::Gone => json!(false),
                    Liveness::Elsewhere => Value::Null,
                };
                v["process"] = json!({ "pgid": p.pgid, "host": p.host, "alive": alive });
            }
            v
        })
        .collect();
    json!({
        "run_id": s.run_id,
        "playbook": s.playbook,
        "status": s.status,
        "started_at": s.started_at,
        "finished_at": s.finished_at,
        "steps": steps,
        "warnings": s.warnings,
    })
}

pub fn show_text(s: &RunState) -> String {
    let mut out = format!("run {}  playbook {}  {}\n", s.run_id, s.playbook, s.status.as_str());
    let total =
        between(Some(&s.started_at), s.finished_at.as_deref()).map(human_duration).unwrap_or_else(|| "-".into());
    out.push_str(&format!(
        "started {}  finished {}  took {total}\n\n",
        s.started_at,
        s.finished_at.as_deref().unwrap_or("-")
    ));
    let w = s.steps.keys().map(|k| k.len()).max().unwrap_or(4).max(4);
    out.push_str(&format!(
        "{:<w$}  {:<12}  {:<11}  {:>8}  {:>8}  NOTE\n",
        "STEP", "TYPE", "STATUS", "ATTEMPTS", "TOOK"
    ));
    for (id, st) in &s.steps {
        let took = between(st.started_at.as_deref(), st.finished_at.as_deref())
            .map(human_duration)
            .unwrap_or_else(|| "-".into());
        let note = st.error.as_deref().or(st.reason.as_deref()).unwrap_or("");
        let mut note = note.lines().next().unwrap_or("").to_owned();
        // After a crash, whether the step's programs outlived runbook matters most.
        if let (Some(p), StepStatus::Interrupted | StepStatus::Running) = (&st.process, st.status) {
            let live = match p.liveness() {
                Liveness::Alive => "still runs",
                Liveness::Gone => "is gone",
                Liveness::Elsewhere => "ran elsewhere",
            };
            note = format!("process group {} on {} {live}", p.pgid, p.host);
        }
        out.push_str(&format!(
            "{id:<w$}  {:<12}  {:<11}  {:>8}  {took:>8}  {note}\n",
            st.kind,
            st.status.as_str(),
            st.attempts
        ));
    }
    for warning in &s.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}

pub fn runs_table(runs: &[RunSummary]) -> String {
    if runs.is_empty() {
        return "no runs yet\n".into();
    }
    let w = runs.iter().map(|r| r.run_id.len()).max().unwrap_or(6).max(6);
    let mut out = format!("{:<w$}  {:<24}  {:<11}  STARTED\n", "RUN", "PLAYBOOK", "STATUS");
    for r in runs {
        out.push_str(&format!("{:<w$}  {:<24}  {:<11}  {}\n", r.run_id, r.playbook, r.status.as_str(), r.started_at));
    }
    out
}

fn step_notes(pb: &Playbook, i: usize) -> Vec<String> {
    let s = &pb.steps[i];
    let mut notes = Vec::new();
    if !s.needs.is_empty() {
        notes
            .push(format!("needs {}", s.needs.iter().map(|&j| pb.steps[j].id.as_str()).collect::<Vec<_>>().join(", ")));
    }
    match s.trigger {
        Trigger::Success => {}
        Trigger::Failure => notes.push("only if an ancestor failed".into()),
        Trigger::Always => notes.push("always".into()),
    }
    match &s.when {
        Some(When::Expr(e)) => notes.push(format!("when {e}")),
        Some(When::Const(b)) => notes.push(format!("when {b}")),
        None => {}
    }
    if s.retry.attempts > 1 {
        notes.push(format!("up to {} attempts", s.retry.attempts));
    }
    if let Some(t) = s.timeout {
        notes.push(format!("timeout {}", format_duration(t)));
    }
    if s.continue_on_error {
        notes.push("continue on error".into());
    }
    if !s.idempotent {
        notes.push("changes things".into());
    }
    notes
}

pub fn plan_text(pb: &Playbook, plans: &[String], warnings: &[String]) -> String {
    let levels = pb.dag.levels();
    let mut out = format!("playbook {}", pb.name);
    if let Some(sev) = &pb.severity {
        out.push_str(&format!(" ({sev})"));
    }
    out.push_str(&format!(": {} steps in {} levels\n", pb.steps.len(), levels.len()));
    if let Some(d) = &pb.description {
        out.push_str(&format!("{}\n", d.trim()));
    }
    let mut obj = Vec::new();
    if let Some(rto) = pb.objectives.rto {
        obj.push(format!("RTO {rto}"));
    }
    match &pb.objectives.rpo {
        Some(RpoValue::Duration(d)) => obj.push(format!("RPO {d}")),
        Some(RpoValue::Text(t)) => obj.push(format!("RPO {t}")),
        None => {}
    }
    if let Some(step) = &pb.objectives.restored_by {
        obj.push(format!("restored by `{step}` (RTO measured to its success)"));
    }
    if !obj.is_empty() {
        out.push_str(&format!("objectives: {}\n", obj.join(", ")));
    }
    if !pb.secrets.is_empty() {
        let s: Vec<String> = pb
            .secrets
            .iter()
            .map(|n| format!("{n} ({})", if std::env::var_os(n).is_some() { "set" } else { "missing" }))
            .collect();
        out.push_str(&format!("secrets: {}\n", s.join(", ")));
    }
    for w in warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    for (n, level) in levels.iter().enumerate() {
        let par = if level.len() > 1 { format!(" ({} in parallel)", level.len()) } else { String::new() };
        out.push_str(&format!("\nlevel {}{par}\n", n + 1));
        for &i in level {
            let s = &pb.steps[i];
            out.push_str(&format!("  {} [{}]: {}\n", s.id, s.kind.name(), plans[i]));
            let notes = step_notes(pb, i);
            if !notes.is_empty() {
                out.push_str(&format!("      {}\n", notes.join("; ")));
            }
        }
    }
    out
}

pub fn plan_json(pb: &Playbook, plans: &[String], warnings: &[String]) -> Value {
    let levels: Vec<Vec<Value>> = pb
        .dag
        .levels()
        .iter()
        .map(|level| {
            level
                .iter()
                .map(|&i| {
                    let s = &pb.steps[i];
                    json!({
                        "id": s.id,
                        "type": s.kind.name(),
                        "plan": plans[i],
                        "needs": s.needs.iter().map(|&j| pb.steps[j].id.as_str()).collect::<Vec<_>>(),
                        "idempotent": s.idempotent,
                        "notes": step_notes(pb, i),
                    })
                })
                .collect()
        })
        .collect();
    json!({ "playbook": pb.name, "severity": pb.severity, "objectives": pb.objectives, "secrets": pb.secrets, "warnings": warnings, "levels": levels })
}
