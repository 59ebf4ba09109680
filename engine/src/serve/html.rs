//! The HTML of `runbook serve`. Every piece of text from a run (step ids, errors, hints,
//! who approved, the report) goes through `esc`: a step error is whatever a command or an
//! API printed, and must never become markup in the incident channel's browsers.

use super::view::{NODE_H, NODE_W, RunView};
use crate::playbook::human_ms;
use crate::state::RunSummary;
use serde_json::Value;
use std::fmt::Write;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A timestamp to the second, UTC, for people.
fn t(s: Option<&str>) -> String {
    match s.and_then(|x| x.parse::<jiff::Timestamp>().ok()) {
        Some(x) => x.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        None => s.map(esc).unwrap_or_else(|| "-".into()),
    }
}

fn ms(v: Option<u64>) -> String {
    human_ms(v)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

fn page(title: &str, body: &str, live: Option<&str>) -> String {
    // The run page carries its own address for the live stream; no inline script (the CSP
    // forbids it), app.js reads it from the body.
    let live_attr = live.map(|id| format!(" data-live=\"{}\"", esc(id))).unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><link rel=\"stylesheet\" href=\"/assets/style.css\">\
<script src=\"/assets/app.js\" defer></script></head>\
<body{live_attr}><header><a class=\"home\" href=\"/\">runbook</a> <span class=\"ro\">read-only view</span></header>\n{body}</body></html>\n",
        esc(title)
    )
}

pub fn runs_page(source: &str, runs: &[RunSummary]) -> String {
    let mut b = format!("<main data-page=\"runs\"><h1>Runs</h1><p class=\"muted\">{}</p>", esc(source));
    if runs.is_empty() {
        b.push_str("<p>No runs yet. Start one with <code>runbook exec PLAYBOOK.yaml</code>.</p>");
    } else {
        b.push_str(
            "<table class=\"runs\"><thead><tr><th>run</th><th>playbook</th><th>status</th><th>started (UTC)</th>\
<th>finished (UTC)</th></tr></thead><tbody>",
        );
        // Newest first: during an incident the run that matters is the latest one.
        for r in runs.iter().rev() {
            let _ = write!(
                b,
                "<tr><td><a href=\"/runs/{id}\">{id}</a></td><td>{}</td><td><span class=\"chip st-{s}\">{s}</span></td>\
<td>{}</td><td>{}</td></tr>",
                esc(&r.playbook),
                t(Some(&r.started_at)),
                t(r.finished_at.as_deref()),
                id = esc(&r.run_id),
                s = r.status.as_str(),
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str(
        "<p class=\"muted\">This list refreshes every 5 seconds. JSON: <a href=\"/api/runs\">/api/runs</a></p></main>",
    );
    page("runbook: runs", &b, None).replace("<head>", "<head><meta http-equiv=\"refresh\" content=\"5\">")
}

pub fn run_page(v: &RunView) -> String {
    let body = format!("<main id=\"live\" data-page=\"run\">{}</main>", run_fragment(v));
    page(&format!("{} · {}", v.playbook, v.run_id), &body, Some(&v.run_id))
}

pub fn not_found(what: &str) -> String {
    page(
        "runbook: not found",
        &format!("<main><h1>Not found</h1><p>{}</p><p><a href=\"/\">All runs</a></p></main>", esc(what)),
        None,
    )
}

/// The part of the run page that the live stream replaces on every change.
pub fn run_fragment(v: &RunView) -> String {
    let mut b = String::new();
    let id = esc(&v.run_id);
    let _ = write!(
        b,
        "<h1>{} <span class=\"chip st-{s}\" id=\"run-status\" data-status=\"{s}\">{s}</span></h1>\
<p class=\"muted\">run <code>{id}</code> · started {} UTC{} · {}</p>",
        esc(&v.playbook),
        t(Some(&v.started_at)),
        v.finished_at
            .as_deref()
            .map(|f| {
                // A paused or interrupted run stopped; only a succeeded or failed one is over.
                let word = if v.clock.ticking { "stopped" } else { "finished" };
                format!(" · {word} {} UTC", t(Some(f)))
            })
            .unwrap_or_default(),
        match &v.driven_by {
            Some(h) => format!("driven by {}", esc(h)),
            None => "no process is driving it now".into(),
        },
        s = v.status.as_str(),
    );
    clock(&mut b, v);
    if !v.pending_approvals.is_empty() {
        b.push_str("<section class=\"pending\" id=\"pending\"><h2>Waiting for approval</h2><ul>");
        for p in &v.pending_approvals {
            let _ = write!(
                b,
                "<li data-pending=\"{s}\"><strong>{s}</strong>{}<br>to approve: <code>{}</code></li>",
                p.message.as_deref().map(|m| format!(": {}", esc(m))).unwrap_or_default(),
                esc(&p.command),
                s = esc(&p.step),
            );
        }
        b.push_str("</ul></section>");
    }
    b.push_str("<section><h2>Steps</h2>");
    svg(&mut b, v);
    b.push_str("</section>");
    timeline(&mut b, v);
    if !v.approvals.is_empty() {
        b.push_str(
            "<section><h2>Approvals</h2><table><thead><tr><th>step</th><th>by</th><th>at (UTC)</th></tr></thead><tbody>",
        );
        for a in &v.approvals {
            let _ = write!(
                b,
                "<tr data-approval=\"{s}\"><td>{s}</td><td>{}</td><td>{}</td></tr>",
                value_text(&a.by),
                t(a.at.as_str()),
                s = esc(&a.step),
            );
        }
        b.push_str("</tbody></table></section>");
    }
    if !v.resumes.is_empty() {
        b.push_str("<section><h2>Resumes</h2><ul>");
        for r in &v.resumes {
            let _ = write!(b, "<li>{} UTC by {}</li>", t(Some(&r.at)), esc(&r.by));
        }
        b.push_str("</ul></section>");
    }
    if !v.warnings.is_empty() {
        b.push_str("<section><h2>Warnings</h2><ul class=\"warnings\">");
        for w in &v.warnings {
            let _ = write!(b, "<li>{}</li>", esc(w));
        }
        b.push_str("</ul></section>");
    }
    if let Some(md) = &v.report_markdown {
        let _ = write!(
            b,
            "<section id=\"report\"><h2>Incident report</h2><p><a href=\"/runs/{id}/report.md\">report.md</a> · \
<a href=\"/api/runs/{id}\">JSON</a></p><pre class=\"report\">{}</pre></section>",
            esc(md)
        );
    } else {
        let _ = write!(b, "<p class=\"muted\">JSON: <a href=\"/api/runs/{id}\">/api/runs/{id}</a></p>");
    }
    b
}

fn clock(b: &mut String, v: &RunView) {
    let c = &v.clock;
    let target = match (&c.rto, c.used_percent) {
        (Some(rto), Some(p)) => format!(" of the RTO {} (<span id=\"clock-pct\">{p}</span>%)", esc(rto)),
        _ => " (the playbook sets no RTO)".into(),
    };
    let note = match c.level {
        "over" => " · the RTO is used up",
        "half" => " · half of the RTO is used",
        _ => "",
    };
    let _ = write!(
        b,
        "<p class=\"clock lvl-{}\" id=\"clock\" data-elapsed-ms=\"{}\" data-rto-ms=\"{}\" data-ticking=\"{}\">\
incident clock <span id=\"clock-elapsed\">{}</span>{target}{note}{}</p>",
        c.level,
        c.elapsed_ms,
        c.rto_ms.map(|r| r.to_string()).unwrap_or_default(),
        c.ticking,
        ms(Some(c.elapsed_ms)),
        match (&c.restored_by, &c.restored_at) {
            _ if c.ticking => String::new(),
            (Some(step), Some(at)) => format!(" · stopped: restored by {} at {} UTC", esc(step), t(Some(at))),
            _ => " · stopped: the run is over".into(),
        },
    );
}

/// Truncates a label to fit a node; the full text is in the node's `<title>`.
fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

fn svg(b: &mut String, v: &RunView) {
    let g = &v.graph;
    let _ = write!(
        b,
        "<div class=\"graph\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
role=\"img\" aria-label=\"step graph\"><defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" \
markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" class=\"arrowhead\"/>\
</marker></defs>",
        w = g.width,
        h = g.height
    );
    for &(from, to) in &g.edges {
        let (a, z) = (&g.nodes[from], &g.nodes[to]);
        let (x1, y1) = (a.x + NODE_W / 2, a.y + NODE_H);
        let (x2, y2) = (z.x + NODE_W / 2, z.y);
        let my = (y1 + y2) / 2;
        let _ = write!(
            b,
            "<path class=\"edge\" d=\"M{x1},{y1} C{x1},{my} {x2},{my} {x2},{y2}\" marker-end=\"url(#arrow)\"/>"
        );
    }
    for n in &g.nodes {
        let icon = match n.status.as_str() {
            "succeeded" => "✓",
            "failed" => "✗",
            "running" => "▶",
            "waiting" => "‖",
            "skipped" => "↷",
            "interrupted" => "⚠",
            _ => "·",
        };
        let _ = write!(
            b,
            "<g class=\"node st-{st}\" data-step=\"{id}\" data-status=\"{st}\"><title>{id} ({kind}): {st}</title>\
<rect x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"6\"/>\
<text x=\"{tx}\" y=\"{ty1}\" class=\"id\">{icon} {label}</text><text x=\"{tx}\" y=\"{ty2}\" class=\"sub\">{kind} · {st}</text></g>",
            st = esc(&n.status),
            id = esc(&n.id),
            kind = esc(&n.kind),
            label = esc(&fit(&n.id, 22)),
            x = n.x,
            y = n.y,
            tx = n.x + 10,
            ty1 = n.y + 19,
            ty2 = n.y + 36,
        );
    }
    b.push_str("</svg></div>");
}

fn timeline(b: &mut String, v: &RunView) {
    b.push_str(
        "<section><h2>Timeline</h2><table class=\"timeline\"><thead><tr><th>step</th><th>type</th><th>status</th>\
<th>attempts</th><th>started (UTC)</th><th>took</th><th>error, hint or reason</th></tr></thead><tbody>",
    );
    let mut rows: Vec<&super::view::StepView> = v.steps.iter().collect();
    // In the order things happened; steps that have not started keep file order, last.
    rows.sort_by_key(|s| (s.started_at.is_none(), s.started_at.clone()));
    for s in rows {
        let mut note = String::new();
        if let Some(e) = &s.error {
            let _ = write!(note, "<div class=\"error\">{}</div>", esc(e));
        }
        if let Some(h) = &s.hint {
            let _ = write!(note, "<div class=\"hint\">hint: {}</div>", esc(h));
        }
        if let Some(r) = &s.reason {
            let _ = write!(note, "<div class=\"reason\">{}</div>", esc(r));
        }
        let _ = write!(
            b,
            "<tr data-row=\"{id}\"><td>{id}</td><td>{}</td><td><span class=\"chip st-{st}\">{st}</span></td><td>{}</td>\
<td>{}</td><td>{}</td><td>{note}</td></tr>",
            esc(&s.kind),
            s.attempts,
            t(s.started_at.as_deref()),
            ms(s.duration_ms),
            id = esc(&s.id),
            st = s.status.as_str(),
        );
    }
    b.push_str("</tbody></table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
