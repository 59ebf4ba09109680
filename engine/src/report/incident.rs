//! `runbook report`: the incident report of a run, for the post-mortem: the timeline,
//! approvals, what was skipped and why, the objectives against what was measured, and the
//! manual follow-ups the playbook lists (`follow_ups:`; the engine knows no procedure's).
//! Built from the run's state (already redacted) and the playbook saved with it.

use crate::playbook::{Playbook, RpoValue, format_duration, human_ms};
use crate::state::{RunState, RunStatus, StepStatus};
use serde_json::{Value, json};
use std::time::Duration;

fn ts(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

fn between(a: &Option<String>, b: &Option<String>) -> Option<Duration> {
    crate::playbook::between(a.as_deref(), b.as_deref())
}

pub fn build(state: &RunState, pb: Option<&Playbook>) -> Value {
    let total = between(&Some(state.started_at.clone()), &state.finished_at);
    let steps: Vec<Value> = state
        .steps
        .iter()
        .map(|(id, s)| {
            json!({
                "id": id,
                "type": s.kind,
                "status": s.status,
                "attempts": s.attempts,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
                "duration_ms": between(&s.started_at, &s.finished_at).map(|d| d.as_millis() as u64),
                "error": s.error,
                "reason": s.reason,
                "skipped_by": s.skipped_by,
            })
        })
        .collect();
    // Every decision, also those of an approval decided again on a resume.
    let approvals: Vec<Value> =
        state.approvals.iter().map(|(step, by, at)| json!({ "step": step, "by": by, "at": at })).collect();
    let restores: Vec<Value> = state
        .steps
        .iter()
        .filter(|(_, s)| s.kind == "pitr-restore" && s.status == StepStatus::Succeeded)
        .map(|(id, s)| {
            json!({
                "step": id,
                "target_time": s.outputs.get("target_time"),
                "recovered_to": s.outputs.get("recovered_to"),
                // A provider that does not report its recovery point gives `false`: such a
                // value never counts as evidence that the RPO was met.
                "recovered_to_verified": s.outputs.get("recovered_to_verified").cloned()
                    .unwrap_or(Value::Bool(s.outputs.get("recovered_to").is_some_and(|v| !v.is_null()))),
                "duration_ms": s.outputs.get("duration_ms"),
            })
        })
        .collect();
    let objectives = pb.map(|pb| objectives(pb, state, total, &restores)).unwrap_or(Value::Null);
    json!({
        "run_id": state.run_id,
        "playbook": state.playbook,
        "severity": pb.and_then(|p| p.severity.clone()),
        "status": state.status,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "duration_ms": total.map(|d| d.as_millis() as u64),
        "resumes": state.resumes.iter().map(|(at, by)| json!({ "at": at, "by": by })).collect::<Vec<_>>(),
        "objectives": objectives,
        "approvals": approvals,
        "restores": restores,
        "steps": steps,
        "warnings": state.warnings,
        "follow_ups": pb.map(|p| p.follow_ups.clone()).unwrap_or_default(),
    })
}

fn objectives(pb: &Playbook, state: &RunState, total: Option<Duration>, restores: &[Value]) -> Value {
    let rto = pb.objectives.rto.map(|r| r.0);
    // With `restored_by`, the outage ends when that step succeeded; the rest of the run
    // (audits, approvals of the follow-up, notes) is follow-up time, not recovery time.
    let restored_by = pb.objectives.restored_by.as_deref();
    let restore_step = restored_by.and_then(|id| state.steps.get(id));
    let restored_at = restore_step.filter(|s| s.status == StepStatus::Succeeded).and_then(|s| s.finished_at.clone());
    let (to_recovery, follow_up) = match (restored_by, &restored_at) {
        (None, _) => (total, None),
        (Some(_), Some(at)) => (
            between(&Some(state.started_at.clone()), &Some(at.clone())),
            between(&Some(at.clone()), &state.finished_at),
        ),
        (Some(_), None) => (None, None),
    };
    let finished = matches!(state.status, RunStatus::Succeeded | RunStatus::Failed);
    let rto_verdict: Option<String> = match (rto, to_recovery) {
        (Some(r), Some(t)) => Some(if t <= r { "met" } else { "missed" }.into()),
        (Some(_), None) => Some(match (restored_by, restore_step) {
            (Some(id), Some(s)) if finished => format!("not restored: `{id}` {}", s.status.as_str()),
            _ => "not finished".into(),
        }),
        _ => None,
    };
    // RPO: what a restore gave up, measured from the restore point to when the run began
    // (the incident was being handled by then).
    let started = ts(&state.started_at);
    let verified = |r: &&Value| r.get("recovered_to_verified").and_then(Value::as_bool) == Some(true);
    let lost: Option<Duration> = restores
        .iter()
        .filter(verified)
        .filter_map(|r| r.get("recovered_to").and_then(Value::as_str).and_then(ts))
        .filter_map(|rec| Duration::try_from(started?.duration_since(rec)).ok())
        .max();
    let (rpo_text, rpo_verdict) = match &pb.objectives.rpo {
        Some(RpoValue::Duration(d)) => (
            Some(d.to_string()),
            lost.map(|l| if l <= d.0 { "met" } else { "missed" }).or(if restores.is_empty() {
                Some("no restore in this run")
            } else {
                Some("unverified: the restore's recovery point was not reported by the provider")
            }),
        ),
        Some(RpoValue::Text(t)) if t == "point-in-time" => (
            Some(t.clone()),
            Some(if restores.iter().filter(verified).any(|r| r.get("recovered_to").is_some_and(|v| !v.is_null())) {
                "met: restored to a point in time"
            } else if restores.is_empty() {
                "no restore in this run"
            } else {
                "a restore ran, but its recovery point is unknown"
            }),
        ),
        Some(RpoValue::Text(t)) => (Some(t.clone()), None),
        None => (None, None),
    };
    json!({
        "rto": rto.map(format_duration),
        "restored_by": restored_by,
        "restored_at": restored_at,
        "time_to_recovery_ms": to_recovery.map(|d| d.as_millis() as u64),
        "follow_up_ms": follow_up.map(|d| d.as_millis() as u64),
        "rto_result": rto_verdict,
        "rpo": rpo_text,
        "data_loss_window_ms": lost.map(|d| d.as_millis() as u64),
        "rpo_result": rpo_verdict,
    })
}

fn ms(v: &Value) -> String {
    human_ms(v.as_u64())
}

/// Timestamps to the second, for people.
fn t(v: &Value) -> String {
    match v.as_str().and_then(ts) {
        Some(x) => x.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        None => s(v),
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.replace('|', "\\|").replace('\n', " "),
        other => other.to_string(),
    }
}

pub fn markdown(r: &Value) -> String {
    let mut out = format!("# Incident report: `{}`\n\n", s(&r["playbook"]));
    out.push_str(&format!(
        "- run: `{}` ({})\n- severity: {}\n- started {} · finished {} (UTC) · took {}\n",
        s(&r["run_id"]),
        s(&r["status"]),
        s(&r["severity"]),
        t(&r["started_at"]),
        t(&r["finished_at"]),
        ms(&r["duration_ms"])
    ));
    for res in r["resumes"].as_array().into_iter().flatten() {
        out.push_str(&format!("- resumed {} by {}\n", t(&res["at"]), s(&res["by"])));
    }
    let o = &r["objectives"];
    if !o.is_null() {
        out.push_str("\n## Objectives\n\n| objective | target | measured | result |\n|---|---|---|---|\n");
        if !o["rto"].is_null() {
            out.push_str(&format!(
                "| RTO | {} | {} | {} |\n",
                s(&o["rto"]),
                ms(&o["time_to_recovery_ms"]),
                s(&o["rto_result"])
            ));
        }
        if !o["rpo"].is_null() {
            let measured = if o["data_loss_window_ms"].is_null() {
                "-".into()
            } else {
                format!("≤ {}", ms(&o["data_loss_window_ms"]))
            };
            out.push_str(&format!("| RPO | {} | {measured} | {} |\n", s(&o["rpo"]), s(&o["rpo_result"])));
        }
        if !o["restored_by"].is_null() {
            out.push_str(&format!(
                "\nThe RTO is measured to the success of `{}` ({}); follow-up after it took {}.\n",
                s(&o["restored_by"]),
                if o["restored_at"].is_null() { "it did not succeed".into() } else { t(&o["restored_at"]) },
                ms(&o["follow_up_ms"])
            ));
        }
    }
    if let Some(rs) = r["restores"].as_array().filter(|a| !a.is_empty()) {
        out.push_str(
            "\n## Restores\n\n| step | target | recovered to (last transaction) | took |\n|---|---|---|---|\n",
        );
        for x in rs {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                s(&x["step"]),
                s(&x["target_time"]),
                s(&x["recovered_to"]),
                ms(&x["duration_ms"])
            ));
        }
    }
    if let Some(a) = r["approvals"].as_array().filter(|a| !a.is_empty()) {
        out.push_str("\n## Approvals\n\n| step | by | at |\n|---|---|---|\n");
        for x in a {
            out.push_str(&format!("| `{}` | {} | {} |\n", s(&x["step"]), s(&x["by"]), t(&x["at"])));
        }
    }
    out.push_str(
        "\n## Timeline\n\n| step | type | status | attempts | started | took | note |\n|---|---|---|---|---|---|---|\n",
    );
    for x in r["steps"].as_array().into_iter().flatten() {
        let note = if x["error"].is_null() { s(&x["reason"]) } else { s(&x["error"]) };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            s(&x["id"]),
            s(&x["type"]),
            s(&x["status"]),
            s(&x["attempts"]),
            t(&x["started_at"]),
            ms(&x["duration_ms"]),
            if note == "-" { String::new() } else { note }
        ));
    }
    if let Some(w) = r["warnings"].as_array().filter(|a| !a.is_empty()) {
        out.push_str("\n## Warnings\n\n");
        for x in w {
            out.push_str(&format!("- {}\n", s(x)));
        }
    }
    if let Some(f) = r["follow_ups"].as_array().filter(|a| !a.is_empty()) {
        out.push_str("\n## Follow-ups\n\n");
        for x in f {
            out.push_str(&format!("- [ ] {}\n", s(x)));
        }
    }
    out
}
