//! What the page and `/api/runs/{id}` show of one run, computed from the store only: the
//! run's state (the fold of its journal, redacted by the engine before it was written) and
//! the playbook saved with the run (for the graph, the RTO and the approval questions).

use crate::playbook::{Playbook, format_duration};
use crate::report::incident;
use crate::state::{RunState, RunStatus, StepStatus};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Serialize)]
pub struct RunView {
    pub run_id: String,
    pub playbook: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Which process drives the run right now, if any (`process 42 on host (since ...)`).
    pub driven_by: Option<String>,
    /// The last event folded in: a client can tell when something changed.
    pub seq: u64,
    pub steps: Vec<StepView>,
    pub graph: GraphView,
    pub approvals: Vec<ApprovalView>,
    pub pending_approvals: Vec<PendingView>,
    pub clock: Clock,
    pub resumes: Vec<ResumeView>,
    pub warnings: Vec<String>,
    /// `runbook report --format json` of the run, once it has succeeded or failed.
    pub report: Option<Value>,
    #[serde(skip)]
    pub report_markdown: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StepView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: StepStatus,
    pub attempts: u32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    pub hint: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ApprovalView {
    pub step: String,
    pub by: Value,
    pub at: Value,
}

#[derive(Debug, Serialize)]
pub struct PendingView {
    pub step: String,
    /// The question as written in the playbook (templates unrendered).
    pub message: Option<String>,
    /// What the commander types to approve it.
    pub command: String,
}

#[derive(Debug, Serialize)]
pub struct ResumeView {
    pub at: String,
    pub by: String,
}

/// The incident clock: time since the run first started, against the playbook's RTO.
#[derive(Debug, Serialize)]
pub struct Clock {
    pub elapsed_ms: u64,
    /// False once the run succeeded or failed: the clock stopped at `finished_at`.
    pub ticking: bool,
    pub rto_ms: Option<u64>,
    pub rto: Option<String>,
    /// Percent of the RTO used (may exceed 100).
    pub used_percent: Option<u64>,
    /// `ok` (under 50 %), `half` (50 % reached, the engine's first warning), `over` (100 %).
    pub level: &'static str,
    /// The playbook's `objectives.restored_by`: the step whose success ends the outage.
    pub restored_by: Option<String>,
    /// When that step succeeded: the clock stopped there.
    pub restored_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct GraphView {
    pub width: u32,
    pub height: u32,
    pub nodes: Vec<NodeView>,
    /// (from, to): `to` needs `from`; indexes into `nodes`.
    pub edges: Vec<(usize, usize)>,
}

#[derive(Debug, Serialize)]
pub struct NodeView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The step's status, or `unknown` for a step of the playbook the run has not seen.
    pub status: String,
    pub x: u32,
    pub y: u32,
}

pub const NODE_W: u32 = 190;
pub const NODE_H: u32 = 46;
const GAP_X: u32 = 24;
const GAP_Y: u32 = 48;
const MARGIN: u32 = 12;

fn span_ms(a: Option<&str>, b: Option<&str>) -> Option<u64> {
    crate::playbook::between(a, b).map(|d| d.as_millis() as u64)
}

fn finished(status: RunStatus) -> bool {
    matches!(status, RunStatus::Succeeded | RunStatus::Failed)
}

pub fn build(state: &RunState, pb: Option<&Playbook>, driven_by: Option<String>, now: jiff::Timestamp) -> RunView {
    let steps = state
        .steps
        .iter()
        .map(|(id, s)| StepView {
            id: id.clone(),
            kind: s.kind.clone(),
            status: s.status,
            attempts: s.attempts,
            started_at: s.started_at.clone(),
            finished_at: s.finished_at.clone(),
            duration_ms: span_ms(s.started_at.as_deref(), s.finished_at.as_deref()),
            error: s.error.clone(),
            hint: s.hint.clone(),
            reason: s.reason.clone(),
        })
        .collect();
    let approvals = state
        .steps
        .iter()
        .filter(|(_, s)| s.kind == "approval" && s.status == StepStatus::Succeeded)
        .map(|(id, s)| ApprovalView {
            step: id.clone(),
            by: s.outputs.get("approved_by").cloned().unwrap_or(Value::Null),
            at: s.outputs.get("approved_at").cloned().unwrap_or(Value::Null),
        })
        .collect();
    let pending_approvals = state
        .steps
        .iter()
        .filter(|(_, s)| s.kind == "approval" && s.status == StepStatus::Waiting)
        .map(|(id, _)| PendingView {
            step: id.clone(),
            message: pb
                .and_then(|p| p.step(id))
                .and_then(|s| s.params.get("message"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            command: format!("runbook resume {} --approve {id}", state.run_id),
        })
        .collect();
    // With `objectives.restored_by`, the outage (and the RTO clock) ends when that step
    // succeeded, as in the report and the engine's warnings; otherwise at the run's end.
    let restored_by = pb.and_then(|p| p.objectives.restored_by.clone());
    let restored_at = restored_by
        .as_deref()
        .and_then(|id| state.steps.get(id))
        .filter(|s| s.status == StepStatus::Succeeded)
        .and_then(|s| s.finished_at.clone());
    let ticking = !finished(state.status) && restored_at.is_none();
    let end = if ticking { Some(now.to_string()) } else { restored_at.clone().or_else(|| state.finished_at.clone()) };
    let elapsed_ms = span_ms(Some(&state.started_at), end.as_deref()).unwrap_or(0);
    let rto = pb.and_then(|p| p.objectives.rto).map(|r| r.0).filter(|r| !r.is_zero());
    let used_percent = rto.map(|r| (elapsed_ms as u128 * 100 / r.as_millis().max(1)) as u64);
    let clock = Clock {
        elapsed_ms,
        ticking,
        rto_ms: rto.map(|r| r.as_millis() as u64),
        rto: rto.map(format_duration),
        used_percent,
        level: match used_percent {
            Some(p) if p >= 100 => "over",
            Some(p) if p >= 50 => "half",
            _ => "ok",
        },
        restored_by,
        restored_at,
    };
    let (report, report_markdown) = if finished(state.status) {
        let r = incident::build(state, pb);
        let md = incident::markdown(&r);
        (Some(r), Some(md))
    } else {
        (None, None)
    };
    RunView {
        run_id: state.run_id.clone(),
        playbook: state.playbook.clone(),
        status: state.status,
        started_at: state.started_at.clone(),
        finished_at: state.finished_at.clone(),
        driven_by,
        seq: state.seq,
        steps,
        graph: graph(state, pb),
        approvals,
        pending_approvals,
        clock,
        resumes: state.resumes.iter().map(|(at, by)| ResumeView { at: at.clone(), by: by.clone() }).collect(),
        warnings: state.warnings.clone(),
        report,
        report_markdown,
    }
}

/// The same graph as `runbook graph` (the playbook's DAG), laid out by levels: a step sits
/// one row below the deepest step it needs; within a row, file order. Without the playbook
/// (it no longer parses), the run's steps in one column and no edges.
fn graph(state: &RunState, pb: Option<&Playbook>) -> GraphView {
    let status = |id: &str| state.steps.get(id).map_or("unknown", |s| s.status.as_str()).to_owned();
    type Shape = (Vec<Vec<usize>>, Vec<String>, Vec<String>, Vec<(usize, usize)>);
    let (levels, ids, kinds, edges): Shape = match pb {
        Some(pb) => (
            pb.dag.levels(),
            pb.steps.iter().map(|s| s.id.clone()).collect(),
            pb.steps.iter().map(|s| s.kind.name().to_owned()).collect(),
            (0..pb.steps.len()).flat_map(|i| pb.dag.needs(i).iter().map(move |&d| (d, i))).collect(),
        ),
        None => (
            (0..state.steps.len()).map(|i| vec![i]).collect(),
            state.steps.keys().cloned().collect(),
            state.steps.values().map(|s| s.kind.clone()).collect(),
            Vec::new(),
        ),
    };
    let widest = levels.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let width = (2 * MARGIN + widest * NODE_W + widest.saturating_sub(1) * GAP_X).max(NODE_W + 2 * MARGIN);
    let mut pos = vec![(0u32, 0u32); ids.len()];
    for (row, members) in levels.iter().enumerate() {
        let n = members.len() as u32;
        let row_w = n * NODE_W + n.saturating_sub(1) * GAP_X;
        let left = (width - row_w) / 2;
        for (k, &i) in members.iter().enumerate() {
            pos[i] = (left + k as u32 * (NODE_W + GAP_X), MARGIN + row as u32 * (NODE_H + GAP_Y));
        }
    }
    let height = 2 * MARGIN + (levels.len() as u32) * (NODE_H + GAP_Y) - if levels.is_empty() { 0 } else { GAP_Y };
    let nodes = ids
        .iter()
        .zip(kinds)
        .zip(pos)
        .map(|((id, kind), (x, y))| NodeView { id: id.clone(), kind, status: status(id), x, y })
        .collect();
    GraphView { width, height, nodes, edges }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Event, EventKind};

    const PB: &str = "apiVersion: runbook/v1\nname: clock\nobjectives: { rto: 1h }\nsteps:\n  - id: a\n    type: shell\n    with: { script: 'true' }\n  - id: ok\n    type: approval\n    needs: [a]\n    with: { message: 'Go?' }\n";

    fn state(started: jiff::Timestamp) -> RunState {
        let ev = Event {
            seq: 1,
            at: started.to_string(),
            run_id: "r".into(),
            kind: EventKind::RunStarted {
                playbook: "clock".into(),
                file: "p.yaml".into(),
                sha256: String::new(),
                steps: vec![("a".into(), "shell".into()), ("ok".into(), "approval".into())],
                inputs: Value::Null,
                dry_run: false,
            },
        };
        RunState::new(&ev).unwrap()
    }

    #[test]
    fn the_clock_warns_at_half_and_full_rto_and_stops_when_the_run_is_over() {
        let pb = crate::playbook::load_str("p.yaml", PB.into(), None).unwrap();
        let now = jiff::Timestamp::now();
        let ago = |m: i64| now.checked_sub(jiff::SignedDuration::from_mins(m)).unwrap();
        let v = build(&state(ago(20)), Some(&pb), None, now);
        assert_eq!((v.clock.level, v.clock.used_percent, v.clock.ticking), ("ok", Some(33), true));
        let v = build(&state(ago(30)), Some(&pb), None, now);
        assert_eq!((v.clock.level, v.clock.used_percent), ("half", Some(50)));
        let v = build(&state(ago(75)), Some(&pb), None, now);
        assert_eq!((v.clock.level, v.clock.used_percent), ("over", Some(125)));
        // Paused (waiting for the approval): the incident goes on, the clock too.
        let mut s = state(ago(10));
        s.steps["ok"].status = StepStatus::Waiting;
        s.status = RunStatus::Paused;
        s.finished_at = Some(ago(9).to_string());
        let v = build(&s, Some(&pb), None, now);
        assert!(v.clock.ticking && v.clock.elapsed_ms >= 600_000, "{:?}", v.clock);
        assert_eq!(v.pending_approvals[0].message.as_deref(), Some("Go?"));
        assert_eq!(v.pending_approvals[0].command, "runbook resume r --approve ok");
        assert!(v.report.is_none());
        // Succeeded: the clock stops at the end, the report is there.
        s.status = RunStatus::Succeeded;
        let v = build(&s, Some(&pb), None, now);
        assert!(!v.clock.ticking);
        assert_eq!(v.clock.elapsed_ms, 60_000);
        assert!(v.report.is_some());
        // With `restored_by: a`, the clock stops when `a` succeeded, while the run goes on.
        let pb2 = crate::playbook::load_str("p.yaml", PB.replace("rto: 1h", "rto: 1h, restored_by: a"), None).unwrap();
        let mut r = state(ago(10));
        r.steps["a"].status = StepStatus::Succeeded;
        r.steps["a"].finished_at = Some(ago(8).to_string());
        let v = build(&r, Some(&pb2), None, now);
        assert!(!v.clock.ticking);
        assert_eq!((v.clock.elapsed_ms, v.clock.restored_by.as_deref()), (120_000, Some("a")));
        // The graph: a above ok, one edge.
        assert_eq!(v.graph.edges, vec![(0, 1)]);
        assert!(v.graph.nodes[1].y > v.graph.nodes[0].y);
        // Without the playbook: no RTO, no edges, the run's steps in a column.
        let v = build(&s, None, None, now);
        assert_eq!((v.clock.rto_ms, v.graph.edges.len(), v.graph.nodes.len()), (None, 0, 2));
    }
}
