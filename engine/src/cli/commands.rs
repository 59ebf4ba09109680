//! The commands that read playbooks and runs without running anything (`validate`, `plan`,
//! `graph`, `runs`, `show`, `report`, `diff`, `rls-snapshot`, `serve`) and `state migrate`.

use super::args::{Cli, DiffFormat, GraphFormat, Output, ReportFormat};
use super::{
    EXIT_FAILED, EXIT_OK, EXIT_USAGE, Fail, Res, absolute, load, load_fail, parse_kv, render_problems, runtime,
    state_fail, store, team_store, usage,
};
use crate::exec;
use crate::playbook::{self, LoadError, inputs};
use crate::report;
use crate::state::{FileStore, Store};
use std::path::Path;
use std::sync::Arc;

pub(super) fn validate(cli: &Cli, files: &[std::path::PathBuf]) -> Res {
    let mut all = Vec::new();
    let mut ok_files = Vec::new();
    for f in files {
        match playbook::load(f) {
            Ok(pb) => ok_files.push((f.display().to_string(), pb.steps.len())),
            Err(LoadError::Invalid(d)) => all.extend(d),
            Err(e @ LoadError::Io { .. }) => all.push(playbook::Diagnostic {
                file: f.display().to_string(),
                line: 0,
                col: 0,
                message: e.to_string(),
                hint: None,
            }),
        }
    }
    if cli.global.output == Output::Json {
        println!(
            "{}",
            serde_json::json!({ "ok": all.is_empty(), "problems": all, "valid": ok_files.iter().map(|(f, _)| f).collect::<Vec<_>>() })
        );
    } else {
        if !all.is_empty() {
            eprintln!("{}", render_problems(cli, &all));
        }
        for (f, n) in &ok_files {
            println!("{f}: ok ({n} steps)");
        }
    }
    Ok(if all.is_empty() { EXIT_OK } else { EXIT_USAGE })
}

pub(super) fn plan(cli: &Cli, file: &Path, raw_inputs: &[String]) -> Res {
    let pb = load(file)?;
    let given = parse_kv(raw_inputs)?;
    // A plan is for reading: missing inputs become placeholders instead of errors.
    let (values, mut warnings) = inputs::resolve_for_reading(&pb, &given).map_err(|e| usage(e.to_string()))?;
    let prepared = exec::prepare_context(&pb, &values, "<run.id>", "<run.started_at>", true).map_err(usage)?;
    warnings.extend(prepared.warnings.iter().cloned());
    for s in &pb.steps {
        prepared.context.steps.set(
            &s.id,
            "<status>",
            crate::template::Placeholder::value(format!("steps.{}.outputs", s.id)),
        );
    }
    let plans: Vec<String> = pb
        .steps
        .iter()
        .map(|s| match crate::template::render_value(&s.params, prepared.context.value(), "with") {
            Ok(p) => prepared.redactor.redact(&s.kind.plan(&p)).into_owned(),
            Err(_) => s.kind.plan(&s.params),
        })
        .collect();
    if cli.global.output == Output::Json {
        println!("{}", report::plan_json(&pb, &plans, &warnings));
    } else {
        print!("{}", report::plan_text(&pb, &plans, &warnings));
    }
    Ok(EXIT_OK)
}

pub(super) fn graph(cli: &Cli, file: &Path, format: GraphFormat) -> Res {
    let pb = load(file)?;
    if cli.global.output == Output::Json {
        // The graph as data: steps in run order (file order among equals), each with what
        // it needs, and the levels that may run in parallel.
        let steps: Vec<serde_json::Value> = pb
            .dag
            .topo()
            .iter()
            .map(|&i| {
                let s = &pb.steps[i];
                serde_json::json!({
                    "id": s.id,
                    "type": s.kind.name(),
                    "needs": pb.dag.needs(i).iter().map(|&j| pb.steps[j].id.as_str()).collect::<Vec<_>>(),
                    "trigger": s.trigger,
                })
            })
            .collect();
        let levels: Vec<Vec<&str>> =
            pb.dag.levels().iter().map(|l| l.iter().map(|&i| pb.steps[i].id.as_str()).collect()).collect();
        println!("{}", serde_json::json!({ "playbook": pb.name, "steps": steps, "levels": levels }));
        return Ok(EXIT_OK);
    }
    let ids: Vec<&str> = pb.steps.iter().map(|s| s.id.as_str()).collect();
    let label = |i: usize| {
        let s = &pb.steps[i];
        let mut l = format!("{} ({})", s.id, s.kind.name());
        if s.kind.name() == "approval" {
            l = format!("✋ {l}");
        }
        l
    };
    match format {
        GraphFormat::Mermaid => print!("{}", pb.dag.mermaid(&ids, label)),
        GraphFormat::Dot => print!("{}", pb.dag.dot(&pb.name, &ids, label)),
    }
    Ok(EXIT_OK)
}

pub(super) fn runs(cli: &Cli) -> Res {
    let store = store(cli)?;
    let runs = store.list().map_err(state_fail)?;
    if cli.global.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&runs).unwrap_or_default());
    } else {
        print!("{}", report::runs_table(&runs));
    }
    Ok(EXIT_OK)
}

pub(super) fn show(cli: &Cli, run_id: &str) -> Res {
    let store = store(cli)?;
    let state = store.load(run_id).map_err(state_fail)?;
    if cli.global.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report::show_json(&state)).unwrap_or_default());
    } else {
        print!("{}", report::show_text(&state));
    }
    Ok(EXIT_OK)
}

pub(super) fn rls_snapshot(cli: &Cli, url: &str, schemas: &[String]) -> Res {
    let rt = runtime()?;
    let snap = rt
        .block_on(async {
            let (client, label) = crate::steps::pg::connect(url).await?;
            crate::steps::rls::read(&client, &label, Some(schemas), None).await
        })
        .map_err(|e| match e {
            crate::steps::StepError::Failed { message, hint: Some(h), .. } => {
                Fail(EXIT_FAILED, format!("{message}\n  hint: {h}"))
            }
            other => Fail(EXIT_FAILED, other.to_string()),
        })?;
    if cli.global.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&snap).unwrap_or_default());
    } else {
        print!("{}", crate::steps::rls::to_yaml(&snap));
    }
    Ok(EXIT_OK)
}

pub(super) fn diff(cli: &Cli, git: Option<&str>, format: DiffFormat, files: &[std::path::PathBuf]) -> Res {
    let (old, new) = match (git, files) {
        (Some(rev), [file]) => {
            let out = std::process::Command::new("git")
                .args(["show", &format!("{rev}:./{}", file.display())])
                .output()
                .map_err(|e| usage(format!("cannot run git: {e}")))?;
            if !out.status.success() {
                return Err(usage(format!(
                    "git show {rev}:{}: {}",
                    file.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let text = String::from_utf8(out.stdout).map_err(|_| usage("the file at that revision is not UTF-8"))?;
            let label = format!("{}@{rev}", file.display());
            let old = playbook::load_str(&label, text, None).map_err(load_fail)?;
            (old, load(file)?)
        }
        (None, [a, b]) => (load(a)?, load(b)?),
        (Some(_), _) => return Err(usage("with --git, give one FILE: runbook diff --git REV -- FILE")),
        (None, _) => return Err(usage("give two files: runbook diff OLD.yaml NEW.yaml")),
    };
    let d = report::diff::diff(&old, &new);
    // `--output json` asks for machine output whatever `--format` says.
    let format = if cli.global.output == Output::Json { DiffFormat::Json } else { format };
    match format {
        DiffFormat::Text => print!("{}", report::diff::text(&d)),
        DiffFormat::Md => print!("{}", report::diff::markdown(&d, &new)),
        DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default()),
    }
    Ok(if d.is_empty() { EXIT_OK } else { EXIT_FAILED })
}

pub(super) fn report_cmd(cli: &Cli, run_id: &str, format: ReportFormat) -> Res {
    let store = store(cli)?;
    let state = store.load(run_id).map_err(state_fail)?;
    // The playbook as run, for its objectives and severity.
    let pb = store.playbook_text(run_id).ok().and_then(|text| playbook::load_str(&state.file, text, None).ok());
    let r = report::incident::build(&state, pb.as_ref());
    let format = if cli.global.output == Output::Json { ReportFormat::Json } else { format };
    match format {
        ReportFormat::Md => print!("{}", report::incident::markdown(&r)),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default()),
    }
    Ok(EXIT_OK)
}

pub(super) fn serve(cli: &Cli, listen: std::net::SocketAddr) -> Res {
    // An observer file store: it never tries a run's lock (see FileStore::observer).
    let (store, source): (Arc<dyn Store + Send + Sync>, String) = match &cli.global.state {
        Some(url) => (Arc::new(team_store(url)?), format!("team store {}", where_only(url))),
        None => (
            Arc::new(FileStore::observer(&cli.global.state_dir)),
            format!("state dir {}", absolute(&cli.global.state_dir)),
        ),
    };
    if !listen.ip().is_loopback() {
        eprintln!(
            "warning: listening on {listen}: anyone who can reach this address sees the runs (there is no login); \
             the default 127.0.0.1 keeps it on this machine"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Fail(EXIT_FAILED, format!("cannot start the async runtime: {e}")))?;
    rt.block_on(crate::serve::serve(store, source.clone(), listen, |addr| {
        println!("serving the runs of {source} at http://{addr}/ (read-only; Ctrl-C to stop)");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }))
    .map_err(|e| Fail(EXIT_FAILED, e.to_string()))?;
    Ok(EXIT_OK)
}

/// A team store URL as the web page may show it: host, port and database, nothing else (a
/// password may also sit in the query string: `?password=...`).
fn where_only(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}{}",
            u.scheme(),
            u.host_str().unwrap_or("localhost"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
            u.path()
        ),
        Err(_) => "(a postgres:// URL)".into(),
    }
}

pub(super) fn migrate(cli: &Cli, from: &Path, to: &str) -> Res {
    let files = FileStore::new(from);
    let team = team_store(to)?;
    let (copied, skipped) = crate::state::migrate_from(&files, &team).map_err(state_fail)?;
    if cli.global.output == Output::Json {
        println!("{}", serde_json::json!({ "copied": copied, "skipped": skipped }));
        return Ok(EXIT_OK);
    }
    for id in &copied {
        println!("copied {id}");
    }
    for id in &skipped {
        println!("skipped {id} (already in the team store)");
    }
    println!("{} run(s) copied, {} skipped", copied.len(), skipped.len());
    Ok(EXIT_OK)
}
