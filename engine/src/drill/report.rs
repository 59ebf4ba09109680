//! The drill report: for each playbook of the suite, how its run ended against what the
//! suite expected, the objectives against what was measured (from the incident report of
//! the run), the checks that failed, and the follow-ups. The evidence of a DR test.
//! Built from the runs' states, which are already redacted.

use super::run::DrillRecord;
use super::suite::{Expect, Suite};
use crate::playbook::Playbook;
use crate::report::incident;
use crate::state::{RunState, RunStatus, StepStatus};
use serde_json::{Value, json};

/// One playbook's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    /// Paused for an approval, or interrupted: resumable, not decided.
    Incomplete,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Incomplete => "incomplete",
        }
    }
}

/// Judges one run: its outcome against `expect`, each `expect_steps` status, and (for a
/// run expected to succeed) the RTO and RPO verdicts of its incident report.
pub fn judge(
    expect: Expect,
    expect_steps: &[(String, &str)],
    state: Option<&RunState>,
    attempted: bool,
    inc: &Value,
) -> (Verdict, Vec<String>) {
    let Some(state) = state else {
        if !attempted {
            // The drill stopped (Ctrl-C) before this playbook's turn.
            return (Verdict::Incomplete, vec!["not started yet (resume the drill with --resume)".into()]);
        }
        return (
            Verdict::Failed,
            vec!["the run was not created (the command was refused; see the drill's output)".into()],
        );
    };
    let mut problems = Vec::new();
    let want = match expect {
        Expect::Succeeded => RunStatus::Succeeded,
        Expect::Failed => RunStatus::Failed,
    };
    match state.status {
        RunStatus::Paused | RunStatus::Interrupted | RunStatus::Running => {
            problems
                .push(format!("the run is {} (resume the drill with --resume to finish it)", state.status.as_str()));
            return (Verdict::Incomplete, problems);
        }
        s if s != want => problems.push(format!("the run {} (expected: {})", s.as_str(), want.as_str())),
        _ => {}
    }
    for (step, expected) in expect_steps {
        let actual = state.steps.get(step).map_or("absent", |s| s.status.as_str());
        if actual != *expected {
            problems.push(format!("step `{step}` ended {actual} (expected: {expected})"));
        }
    }
    if expect == Expect::Succeeded {
        let o = &inc["objectives"];
        for (what, key) in [("RTO", "rto_result"), ("RPO", "rpo_result")] {
            if o[key].as_str() == Some("missed") {
                problems.push(format!(
                    "{what} missed ({} objective {})",
                    what,
                    o[what.to_ascii_lowercase()].as_str().unwrap_or("?")
                ));
            }
        }
    }
    (if problems.is_empty() { Verdict::Passed } else { Verdict::Failed }, problems)
}

/// The report (JSON form; [`markdown`] renders it).
pub fn build(
    suite: &Suite,
    record: &DrillRecord,
    states: &[Option<RunState>],
    playbooks: &[Option<Playbook>],
) -> Value {
    let mut items = Vec::new();
    let (mut passed, mut failed, mut incomplete) = (0, 0, 0);
    for (i, (entry, rec)) in suite.entries.iter().zip(&record.entries).enumerate() {
        let state = states.get(i).and_then(Option::as_ref);
        let pb = playbooks.get(i).and_then(Option::as_ref).or(Some(&entry.playbook));
        let inc = state.map(|s| incident::build(s, pb)).unwrap_or(Value::Null);
        let expect_steps: Vec<(String, &str)> =
            entry.raw.expect_steps.iter().map(|(k, v)| (k.clone(), v.as_str())).collect();
        let (verdict, problems) = judge(entry.raw.expect, &expect_steps, state, rec.exit_code.is_some(), &inc);
        match verdict {
            Verdict::Passed => passed += 1,
            Verdict::Failed => failed += 1,
            Verdict::Incomplete => incomplete += 1,
        }
        let failed_steps: Vec<Value> = state
            .map(|s| {
                s.steps
                    .iter()
                    .filter(|(_, st)| st.status == StepStatus::Failed)
                    .map(|(id, st)| json!({ "step": id, "type": st.kind, "error": st.error }))
                    .collect()
            })
            .unwrap_or_default();
        let skipped: Vec<Value> = state
            .map(|s| {
                s.steps
                    .iter()
                    .filter(|(_, st)| matches!(st.status, StepStatus::Skipped | StepStatus::Pending))
                    .map(|(id, st)| json!({ "step": id, "status": st.status, "reason": st.reason }))
                    .collect()
            })
            .unwrap_or_default();
        items.push(json!({
            "id": entry.raw.id,
            "description": entry.raw.description,
            "playbook": entry.playbook.name,
            "file": entry.raw.file,
            "severity": entry.playbook.severity,
            "run_id": rec.run_id,
            "expect": match entry.raw.expect { Expect::Succeeded => "succeeded", Expect::Failed => "failed" },
            "status": state.map(|s| s.status.as_str()),
            "result": verdict.as_str(),
            "problems": problems,
            "started_at": inc["started_at"],
            "finished_at": inc["finished_at"],
            "duration_ms": inc["duration_ms"],
            "objectives": inc["objectives"],
            "failed_steps": failed_steps,
            "not_run_steps": skipped,
            "approvals": inc["approvals"],
            "restores": inc["restores"],
            "warnings": inc["warnings"],
            "follow_ups": inc["follow_ups"],
        }));
    }
    let result = if failed > 0 {
        "failed"
    } else if incomplete > 0 {
        "incomplete"
    } else {
        "passed"
    };
    json!({
        "drill_id": record.drill_id,
        "suite": suite.name,
        "description": suite.description,
        "suite_file": record.suite_file,
        "suite_sha256": record.suite_sha256,
        "by": record.by,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "resumes": record.resumes.iter().map(|(at, by)| json!({ "at": at, "by": by })).collect::<Vec<_>>(),
        "result": result,
        "passed": passed,
        "failed": failed,
        "incomplete": incomplete,
        "total": suite.entries.len(),
        "playbooks": items,
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.replace('|', "\\|").replace('\n', " "),
        other => other.to_string(),
    }
}

fn ms(v: &Value) -> String {
    crate::playbook::human_ms(v.as_u64())
}

fn objective(o: &Value, target: &str, measured: &str, result: &str) -> String {
    if o[target].is_null() {
        return "-".into();
    }
    format!("{} / {} / {}", s(&o[target]), ms(&o[measured]), s(&o[result]))
}

pub fn markdown(r: &Value) -> String {
    let mut out = format!("# DR drill report: `{}`\n\n", s(&r["suite"]));
    if let Some(d) = r["description"].as_str() {
        out.push_str(&format!("{d}\n\n"));
    }
    out.push_str(&format!(
        "- drill: `{}` · result: **{}** ({} of {} passed, {} failed, {} incomplete)\n- run by {} · started {} · finished {} (UTC)\n- suite: `{}` (sha256 `{}`)\n",
        s(&r["drill_id"]),
        s(&r["result"]),
        s(&r["passed"]),
        s(&r["total"]),
        s(&r["failed"]),
        s(&r["incomplete"]),
        s(&r["by"]),
        s(&r["started_at"]),
        s(&r["finished_at"]),
        s(&r["suite_file"]),
        s(&r["suite_sha256"]),
    ));
    for res in r["resumes"].as_array().into_iter().flatten() {
        out.push_str(&format!("- resumed {} by {}\n", s(&res["at"]), s(&res["by"])));
    }
    out.push_str(
        "\n## Summary\n\n| playbook | severity | expected | outcome | RTO (target / measured / result) | RPO (target / loss window / result) | result |\n|---|---|---|---|---|---|---|\n",
    );
    for p in r["playbooks"].as_array().into_iter().flatten() {
        let o = &p["objectives"];
        out.push_str(&format!(
            "| `{}` ({}) | {} | {} | {} | {} | {} | **{}** |\n",
            s(&p["id"]),
            s(&p["playbook"]),
            s(&p["severity"]),
            s(&p["expect"]),
            s(&p["status"]),
            objective(o, "rto", "time_to_recovery_ms", "rto_result"),
            objective(o, "rpo", "data_loss_window_ms", "rpo_result"),
            s(&p["result"]),
        ));
    }
    for p in r["playbooks"].as_array().into_iter().flatten() {
        out.push_str(&format!("\n## `{}`: {}\n\n", s(&p["id"]), s(&p["result"])));
        if let Some(d) = p["description"].as_str() {
            out.push_str(&format!("{d}\n\n"));
        }
        out.push_str(&format!(
            "- playbook `{}` ({}) · run `{}` · {} · took {}\n- full timeline: `runbook report {}`\n",
            s(&p["playbook"]),
            s(&p["file"]),
            s(&p["run_id"]),
            s(&p["status"]),
            ms(&p["duration_ms"]),
            s(&p["run_id"]),
        ));
        if let Some(xs) = p["problems"].as_array().filter(|a| !a.is_empty()) {
            out.push_str("\n**Why it did not pass**\n\n");
            for x in xs {
                out.push_str(&format!("- {}\n", s(x)));
            }
        }
        if let Some(xs) = p["failed_steps"].as_array().filter(|a| !a.is_empty()) {
            out.push_str("\n**Failed checks**\n\n| step | type | error |\n|---|---|---|\n");
            for x in xs {
                out.push_str(&format!("| `{}` | {} | {} |\n", s(&x["step"]), s(&x["type"]), s(&x["error"])));
            }
        }
        if let Some(xs) = p["not_run_steps"].as_array().filter(|a| !a.is_empty()) {
            out.push_str("\n**Not run**\n\n| step | status | reason |\n|---|---|---|\n");
            for x in xs {
                out.push_str(&format!("| `{}` | {} | {} |\n", s(&x["step"]), s(&x["status"]), s(&x["reason"])));
            }
        }
        if let Some(xs) = p["approvals"].as_array().filter(|a| !a.is_empty()) {
            out.push_str("\n**Approvals**\n\n");
            for x in xs {
                out.push_str(&format!("- `{}` by {} at {}\n", s(&x["step"]), s(&x["by"]), s(&x["at"])));
            }
        }
        if let Some(xs) = p["follow_ups"].as_array().filter(|a| !a.is_empty()) {
            out.push_str("\n**Follow-ups**\n\n");
            for x in xs {
                out.push_str(&format!("- [ ] {}\n", s(x)));
            }
        }
    }
    out
}
