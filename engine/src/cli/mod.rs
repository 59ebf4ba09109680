//! The `runbook` command: clap definitions, each command wired to the engine, and results
//! mapped to the exit codes of SPEC §3. No logic worth testing on its own lives here.

mod args;
mod commands;
mod drill;
mod gate;

use args::{Cli, Command, ErrorFormat, ExecArgs, Output, ResumeArgs};
use clap::Parser;
use gate::CliGate;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use crate::exec::resume::{self, ResumeError};
use crate::exec::{self, ExecOptions, Outcome};
use crate::playbook::inputs::{self, GivenValue};
use crate::playbook::{self, LoadError, Playbook};
use crate::report::{LiveReporter, Mode};
use crate::state::{EventKind, FileStore, JOURNAL_VERSION, RunMeta, StateError, Store};

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_PAUSED: i32 = 3;
pub const EXIT_INTERRUPTED: i32 = 130;

/// A command's failure: the exit code, what to print, and the playbook problems behind
/// it (printed one by one: as snippets, as lines or as JSON).
struct Fail {
    code: i32,
    message: String,
    problems: Vec<playbook::Diagnostic>,
}

#[allow(non_snake_case)]
fn Fail(code: i32, message: String) -> Fail {
    Fail { code, message, problems: Vec::new() }
}

type Res = Result<i32, Fail>;

fn usage(msg: impl Into<String>) -> Fail {
    Fail(EXIT_USAGE, msg.into())
}

/// How playbook problems are shown to people. `auto`: a snippet with a caret when stderr
/// is a terminal, the one-line `file:line:col: message` form otherwise (CI logs, pipes,
/// editors' problem matchers read one line per problem).
fn snippets(cli: &Cli) -> Option<bool> {
    let tty = std::io::stderr().is_terminal();
    let on = match cli.global.error_format {
        ErrorFormat::Snippet => true,
        ErrorFormat::Short => false,
        ErrorFormat::Auto => tty,
    };
    // Colours only on a terminal, and never under NO_COLOR (no-color.org).
    on.then(|| tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
}

/// The problems of playbooks for people, each as a snippet (or a line), in file order.
fn render_problems(cli: &Cli, problems: &[playbook::Diagnostic]) -> String {
    let mut sources: std::collections::HashMap<&str, Option<String>> = std::collections::HashMap::new();
    let mut out = String::new();
    for d in problems {
        let text = match snippets(cli) {
            _ if d.line == 0 => d.message.clone(),
            None => d.to_string(),
            Some(color) => match sources.entry(&d.file).or_insert_with(|| std::fs::read_to_string(&d.file).ok()) {
                Some(src) => format!("{}\n", d.snippet(src, color)),
                None => d.to_string(),
            },
        };
        out.push_str(&text);
        out.push('\n');
    }
    let n = problems.len();
    out.push_str(&format!("{n} problem{} found", if n == 1 { "" } else { "s" }));
    out
}

/// The arguments asked for JSON output: then even a usage error clap finds is JSON.
fn json_requested() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--output=json") || args.windows(2).any(|w| w[0] == "--output" && w[1] == "json")
}

/// An error as one JSON document on stdout, where a machine reading `--output json` looks.
fn print_json_error(code: i32, message: &str, problems: &[playbook::Diagnostic]) {
    let mut doc = serde_json::json!({ "ok": false, "error": { "exit_code": code, "message": message } });
    if !problems.is_empty() {
        doc["error"]["problems"] = serde_json::json!(problems);
    }
    println!("{doc}");
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            if code == EXIT_USAGE && json_requested() {
                let text = e.render().to_string();
                print_json_error(code, text.trim_end().trim_start_matches("error: "), &[]);
                return code;
            }
            let _ = e.print();
            return code;
        }
    };
    let result = match &cli.command {
        Command::Validate { files } => commands::validate(&cli, files),
        Command::Plan { file, inputs } => commands::plan(&cli, file, inputs),
        Command::Graph { file, format } => commands::graph(&cli, file, *format),
        Command::Exec(a) => exec_cmd(&cli, a),
        Command::Resume(a) => resume_cmd(&cli, a),
        Command::Runs => commands::runs(&cli),
        Command::Show { run_id } => commands::show(&cli, run_id),
        Command::Report { run_id, format } => commands::report_cmd(&cli, run_id, *format),
        Command::Diff { git, format, files } => commands::diff(&cli, git.as_deref(), *format, files),
        Command::RlsSnapshot { url, schemas } => commands::rls_snapshot(&cli, url, schemas),
        Command::State { action: args::StateAction::Migrate { from, to } } => commands::migrate(&cli, from, to),
        Command::Drill(a) => drill::drill_cmd(&cli, a),
        Command::Serve { listen } => commands::serve(&cli, *listen),
        Command::Schema => {
            println!("{}", playbook::schema::schema_json());
            Ok(EXIT_OK)
        }
    };
    match result {
        Ok(code) => code,
        Err(Fail { code, message, problems }) => {
            // The one redactor sees every error text before it leaves the process.
            let message = crate::template::redact::text(&message);
            if cli.global.output == Output::Json {
                print_json_error(code, &message, &problems);
            } else if !problems.is_empty() {
                eprintln!("{}", render_problems(&cli, &problems));
            } else if !message.is_empty() {
                eprintln!("error: {message}");
            }
            code
        }
    }
}

/// One thread: steps wait on processes, sockets and timers, not on the CPU, and a chain of
/// steps handed between threads paid two context switches per step (measured: 52 → 10 µs
/// of engine time per step). Blocking work (the approval prompt) goes to spawn_blocking.
fn runtime() -> Result<tokio::runtime::Runtime, Fail> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fail(EXIT_FAILED, format!("cannot start the async runtime: {e}")))
}

fn store(cli: &Cli) -> Result<Box<dyn Store>, Fail> {
    match &cli.global.state {
        Some(url) => Ok(Box::new(team_store(url)?)),
        None => Ok(Box::new(FileStore::new(&cli.global.state_dir))),
    }
}

/// The lease of the team store: renewed while a run is driven; after it expires (the
/// driver died), another process may take the run over. `RUNBOOK_LEASE_TTL` sets it.
fn team_store(url: &str) -> Result<crate::state::PgStore, Fail> {
    let ttl = match std::env::var("RUNBOOK_LEASE_TTL") {
        Ok(t) => playbook::parse_duration(&t).map_err(|e| usage(format!("RUNBOOK_LEASE_TTL: {e}")))?,
        Err(_) => std::time::Duration::from_secs(30),
    };
    crate::state::PgStore::connect(url, ttl).map_err(|e| {
        // The message names the store by its URL (no password), so the kinds that say
        // "team store" themselves give only their detail here.
        let detail = match e {
            StateError::TeamStore { message } => message,
            StateError::Postgres { source } => crate::steps::pg::describe_error(&source),
            other => other.to_string(),
        };
        Fail(EXIT_FAILED, format!("team store {}: {detail}", crate::steps::pg::strip_password(url)))
    })
}

fn load(file: &Path) -> Result<Playbook, Fail> {
    playbook::load(file).map_err(load_fail)
}

fn load_fail(e: LoadError) -> Fail {
    match e {
        LoadError::Io { .. } => usage(e.to_string()),
        LoadError::Invalid(problems) => {
            let n = problems.len();
            Fail { code: EXIT_USAGE, message: format!("{n} problem{} found", if n == 1 { "" } else { "s" }), problems }
        }
    }
}

fn parse_kv(items: &[String]) -> Result<Vec<(String, GivenValue)>, Fail> {
    let mut out: Vec<(String, GivenValue)> = Vec::with_capacity(items.len());
    for kv in items {
        let Some((k, v)) = kv.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
            return Err(usage(format!("`-i {kv}`: write inputs as key=value")));
        };
        let k = k.trim();
        // Taking the last of two values silently would run with the one not meant.
        if out.iter().any(|(n, _)| n == k) {
            return Err(usage(format!("input `{k}` is given twice with -i; give it once (a list takes `-i {k}=a,b`)")));
        }
        out.push((k.to_owned(), GivenValue::Text(v.to_owned())));
    }
    Ok(out)
}

fn mode(cli: &Cli) -> Mode {
    if cli.global.output == Output::Json {
        Mode::Json
    } else if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
        Mode::Tty
    } else {
        Mode::Plain
    }
}

fn interactive(cli: &Cli) -> bool {
    cli.global.output == Output::Human && std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn exit_code(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Succeeded => EXIT_OK,
        Outcome::Failed => EXIT_FAILED,
        Outcome::Paused => EXIT_PAUSED,
        Outcome::Interrupted => EXIT_INTERRUPTED,
    }
}

fn check_approvals(pb: &Playbook, ids: &[String]) -> Result<(), Fail> {
    for id in ids {
        match pb.step(id) {
            Some(s) if s.kind.name() == "approval" => {}
            Some(_) => return Err(usage(format!("--approve {id}: step `{id}` is not an approval step"))),
            None => return Err(usage(format!("--approve {id}: no step `{id}` in playbook {}", pb.name))),
        }
    }
    Ok(())
}

/// State errors by kind: what the operator must change (a held run, an unknown or a taken
/// run id) is a usage error or refusal, exit 2; damage or an unreachable store is exit 1.
fn state_fail(e: StateError) -> Fail {
    match e {
        StateError::Locked { .. } | StateError::NotFound { .. } | StateError::RunExists { .. } => usage(e.to_string()),
        other => Fail(EXIT_FAILED, other.to_string()),
    }
}

fn run_fail(e: exec::RunError) -> Fail {
    match e {
        exec::RunError::State(e) => state_fail(e),
        other => Fail(EXIT_FAILED, other.to_string()),
    }
}

fn exec_cmd(cli: &Cli, a: &ExecArgs) -> Res {
    let pb = load(&a.file)?;
    check_approvals(&pb, &a.approve)?;
    let given = parse_kv(&a.inputs)?;
    let (values, input_warnings) = if a.dry_run {
        inputs::resolve_for_reading(&pb, &given).map_err(|e| usage(e.to_string()))?
    } else {
        (inputs::resolve(&pb, &given).map_err(|e| usage(e.to_string()))?, Vec::new())
    };
    if let Some(id) = &a.run_id
        && (id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || id.starts_with('.'))
    {
        return Err(usage(format!("--run-id `{id}`: use letters, digits, `-`, `_` and `.`")));
    }
    let run_id = a.run_id.clone().unwrap_or_else(|| exec::new_run_id(&pb.name));
    exec::guards::check_run_id(a.run_id.as_deref(), &run_id, &pb.name).map_err(usage)?;
    let started_at = jiff::Timestamp::now().to_string();
    let mut prepared = exec::prepare_context(&pb, &values, &run_id, &started_at, a.dry_run).map_err(usage)?;
    prepared.warnings.splice(0..0, input_warnings);
    let mode = mode(cli);
    let (mut reporter, opts) = session(cli, &pb, a.yes, &a.approve, a.max_parallel, a.dry_run)?;
    let first = EventKind::RunStarted {
        playbook: pb.name.clone(),
        file: absolute(&a.file),
        sha256: pb.sha256.clone(),
        steps: step_list(&pb),
        inputs: prepared.stored_inputs.clone(),
        dry_run: a.dry_run,
    };
    let store = store(cli)?;
    if let Ok(runs) = store.list() {
        for r in runs.iter().filter(|r| r.playbook == pb.name && r.status == crate::state::RunStatus::Running) {
            if let Some(holder) = store.holder(&r.run_id) {
                eprintln!("warning: run {} of playbook {} is still active ({holder})", r.run_id, pb.name);
            }
        }
    }
    let rt = runtime()?;
    if a.dry_run {
        let (outcome, _) = rt
            .block_on(exec::run(&pb, &run_id, prepared, first, None, None, &mut reporter, &opts))
            .map_err(run_fail)?;
        reporter.finish();
        return Ok(exit_code(outcome));
    }
    let meta = RunMeta {
        format_version: JOURNAL_VERSION,
        run_id: run_id.clone(),
        playbook: pb.name.clone(),
        file: absolute(&a.file),
        sha256: pb.sha256.clone(),
        created_at: started_at,
    };
    let mut held = store.create(&meta, &pb.text, &prepared.stored_inputs).map_err(state_fail)?;
    // Once the id is known to be free. A dry run gets none: there is no run to show or resume.
    if mode != Mode::Json {
        reporter.say(&format!("run {run_id}"));
    }
    let (outcome, state) = rt
        .block_on(exec::run(&pb, &run_id, prepared, first, None, Some(held.log()), &mut reporter, &opts))
        .map_err(run_fail)?;
    reporter.finish();
    held.write_snapshot(&state).map_err(state_fail)?;
    Ok(exit_code(outcome))
}

/// The reporter and the options of one exec or resume session.
fn session(
    cli: &Cli,
    pb: &Playbook,
    yes: bool,
    approve: &[String],
    max_parallel: u32,
    dry_run: bool,
) -> Result<(LiveReporter, ExecOptions), Fail> {
    let reporter = LiveReporter::new(mode(cli), pb.steps.len());
    let gate = Arc::new(CliGate::new(yes, approve, interactive(cli), reporter.multi()));
    let work_dir = std::env::current_dir().map_err(|e| Fail(EXIT_FAILED, format!("no working directory: {e}")))?;
    Ok((reporter, ExecOptions { max_parallel: max_parallel as usize, dry_run, gate, work_dir }))
}

fn step_list(pb: &Playbook) -> Vec<(String, String)> {
    pb.steps.iter().map(|s| (s.id.clone(), s.kind.name().to_owned())).collect()
}

fn absolute(p: &Path) -> String {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

fn resume_cmd(cli: &Cli, a: &ResumeArgs) -> Res {
    let store = store(cli)?;
    let mut held = store.open(&a.run_id).map_err(state_fail)?;
    let meta = store.meta(&a.run_id).map_err(state_fail)?;
    let mut state = held.load().map_err(state_fail)?;
    // We hold the lock: anything still "running" belongs to a process that died.
    state.mark_dead();
    let saved = store.playbook_text(&a.run_id).map_err(state_fail)?;
    let original = Path::new(&meta.file);
    let resume_fail = |e: ResumeError| usage(e.to_string());
    let source = if exec::guards::source_is_not_a_file(original) {
        eprintln!("warning: {} is not a regular file; resuming with the copy saved with the run", meta.file);
        None
    } else {
        Some(resume::source(original, &a.run_id, &saved, a.allow_changed).map_err(resume_fail)?)
    };
    let pb = match source {
        None => playbook::load_str(&meta.file, saved, None).map_err(load_fail)?,
        Some(resume::Source::Current) => load(original)?,
        Some(resume::Source::Saved) => {
            eprintln!("warning: {} is gone; resuming with the copy saved with the run", meta.file);
            playbook::load_str(&meta.file, saved, None).map_err(load_fail)?
        }
    };
    check_approvals(&pb, &a.approve)?;
    let from = resume::from_step(&pb, a.from.as_deref()).map_err(resume_fail)?;
    // Inputs: the stored ones, secrets again from -i or the environment.
    let mut stored = store.inputs(&a.run_id).map_err(state_fail)?;
    // Values changed by an earlier `resume -i` are in the journal (`input_changed`).
    if let (Some(m), Some(folded)) = (stored.as_object_mut(), state.inputs.as_object()) {
        m.extend(folded.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let given = parse_kv(&a.inputs)?;
    let given_names: Vec<String> = given.iter().map(|(n, _)| n.clone()).collect();
    let values = resume::inputs(&pb, &stored, given).map_err(resume_fail)?;
    let interrupted = resume::interrupted(&pb, &state);
    // kill -9 of runbook cannot take a step's process group with it: say which still run.
    let alive = exec::guards::still_running(&pb, &state);
    let mut rerun = a.rerun_interrupted;
    if !interrupted.is_empty() && !rerun && from.is_none() {
        if interactive(cli) {
            rerun = gate::confirm(&format!(
                "step(s) {} were running when the run stopped and may have done part of their work. Run them again? [y/N] ",
                interrupted.join(", ")
            ));
        }
        if !rerun {
            eprintln!(
                "error: step(s) {} were interrupted while running and are not idempotent; check what they did, then resume with --rerun-interrupted (or --from STEP)",
                interrupted.join(", ")
            );
            for (step, pgid) in &alive {
                eprintln!("  step `{step}`: its process group {pgid} still runs");
            }
            return Ok(EXIT_PAUSED);
        }
    }
    let reset = exec::resume_reset(&pb, &pb.dag, &state, from, rerun);
    // A second copy of a step beside the first one still running is never started unasked.
    let mut alive_warnings = Vec::new();
    for (step, pgid) in alive.iter().filter(|(s, _)| reset.iter().any(|&i| pb.steps[i].id == *s)) {
        if !a.even_if_alive {
            return Err(usage(format!(
                "step `{step}` is still running (process group {pgid}) from before the crash; stop it (kill -- -{pgid}) or wait for it, or resume with --even-if-alive to run a second copy beside it"
            )));
        }
        let w = format!(
            "step `{step}` still runs from before (process group {pgid}); running it again beside it as asked (--even-if-alive)"
        );
        eprintln!("warning: {w}");
        alive_warnings.push(w);
    }
    let mut prepared = exec::prepare_context(&pb, &values, &a.run_id, &state.started_at, false).map_err(usage)?;
    prepared.warnings.extend(alive_warnings);
    prepared.events =
        exec::guards::input_changes(&state.inputs, &prepared.stored_inputs, &given_names, &gate::operator());
    if let Some(previous) = held.took_over_from() {
        prepared.warnings.insert(0, format!("took the run over from {previous}: its lease had expired"));
    }
    let mode = mode(cli);
    let (mut reporter, opts) = session(cli, &pb, a.yes, &a.approve, a.max_parallel, false)?;
    let first = EventKind::RunResumed {
        by: gate::operator(),
        reset: reset.iter().map(|&i| pb.steps[i].id.clone()).collect(),
        steps: step_list(&pb),
        sha256: pb.sha256.clone(),
    };
    if mode != Mode::Json {
        reporter.say(&format!("run {}", a.run_id));
    }
    let rt = runtime()?;
    let (outcome, state) = rt
        .block_on(exec::run(&pb, &a.run_id, prepared, first, Some(state), Some(held.log()), &mut reporter, &opts))
        .map_err(run_fail)?;
    reporter.finish();
    held.write_snapshot(&state).map_err(state_fail)?;
    Ok(exit_code(outcome))
}
