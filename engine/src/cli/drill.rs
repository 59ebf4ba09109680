//! `runbook drill`: wires the suite, the drill record, the child runs and the report to
//! the command line and its exit codes.

use super::args::{Cli, DrillArgs, Output};
use super::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PAUSED, EXIT_USAGE, Fail, Res, absolute, gate, usage};
use crate::drill::run::{self, DrillError, RunOptions};
use crate::drill::{report, suite};
use crate::playbook::{self, LoadError};

fn drill_fail(e: DrillError) -> Fail {
    match e {
        DrillError::Usage(m) => usage(m),
        DrillError::State(s) => super::state_fail(s),
        other => Fail(EXIT_FAILED, other.to_string()),
    }
}

pub(super) fn drill_cmd(cli: &Cli, a: &DrillArgs) -> Res {
    let suite = suite::load(&a.suite).map_err(|e| match e {
        LoadError::Io { .. } => usage(e.to_string()),
        LoadError::Invalid(diags) => {
            let n = diags.len();
            let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
            Fail(EXIT_USAGE, format!("{}\n{n} problem{} found", text.join("\n"), if n == 1 { "" } else { "s" }))
        }
    })?;
    if a.check {
        if cli.global.output == Output::Json {
            println!("{}", serde_json::json!({ "ok": true, "suite": suite.name, "playbooks": suite.entries.len() }));
        } else {
            println!("{}: ok ({} playbooks)", a.suite.display(), suite.entries.len());
        }
        return Ok(EXIT_OK);
    }
    // Every `${NAME}` must be set before the first run starts, not found missing halfway.
    let mut missing = Vec::new();
    for entry in &suite.entries {
        for r in [run::entry_env(&suite, entry).map(drop), run::entry_inputs(entry).map(drop)] {
            if let Err(e) = r {
                missing.push(e.to_string());
            }
        }
    }
    if !missing.is_empty() {
        return Err(usage(missing.join("\n")));
    }
    let state_dir = &cli.global.state_dir;
    let by = gate::operator();
    let (drill_id, mut record, resuming) = match &a.resume {
        Some(id) => {
            if !run::valid_id(id) {
                return Err(usage(format!("--resume `{id}`: not a drill id")));
            }
            let mut record = run::load_record(&run::drill_dir(state_dir, id)).map_err(drill_fail)?;
            if record.suite_sha256 != suite.sha256 {
                if !a.allow_changed {
                    return Err(usage(format!(
                        "the suite {} changed since drill {id} started; review the change, then resume with --allow-changed",
                        a.suite.display()
                    )));
                }
                // The entries follow the suite as it is now; runs of kept ids are found again by their ids.
                let fresh = run::new_record(&suite, id, &by);
                record.entries = fresh.entries;
                record.suite_sha256 = suite.sha256.clone();
            }
            record.resumes.push((jiff::Timestamp::now().to_string(), by.clone()));
            record.finished_at = None;
            (id.clone(), record, true)
        }
        None => {
            let id = match &a.id {
                Some(id) if !run::valid_id(id) => {
                    return Err(usage(format!("--id `{id}`: use letters, digits, `-`, `_` and `.`")));
                }
                Some(id) => id.clone(),
                None => format!("{}-{}", suite.name, jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S")),
            };
            if run::drill_dir(state_dir, &id).join("drill.json").exists() {
                return Err(usage(format!("drill {id} exists already; continue it with --resume {id}")));
            }
            let record = run::new_record(&suite, &id, &by);
            (id, record, false)
        }
    };
    let dir = run::drill_dir(state_dir, &drill_id);
    let store = super::store(cli)?;
    if !resuming {
        for rec in &record.entries {
            if run::run_state(store.as_ref(), &rec.run_id).map_err(drill_fail)?.is_some() {
                return Err(usage(format!("a run {} exists already; choose another --id", rec.run_id)));
            }
        }
    }
    run::save(&dir, &record).map_err(drill_fail)?;
    std::fs::write(dir.join("suite.yaml"), &suite.text)
        .map_err(|e| Fail(EXIT_FAILED, format!("{}: {e}", dir.join("suite.yaml").display())))?;
    let json = cli.global.output == Output::Json;
    if !json {
        println!("drill {drill_id}");
    }
    let store_env = match &cli.global.state {
        Some(url) => vec![("RUNBOOK_STATE".to_owned(), url.clone())],
        None => vec![("RUNBOOK_STATE_DIR".to_owned(), absolute(state_dir))],
    };
    let opts = RunOptions {
        exe: std::env::current_exe().map_err(|e| Fail(EXIT_FAILED, format!("cannot find this program: {e}")))?,
        store_env,
        json,
        rerun_interrupted: a.rerun_interrupted,
        allow_changed: a.allow_changed,
    };
    run::survive_ctrl_c();
    let mut interrupted = false;
    for (i, entry) in suite.entries.iter().enumerate() {
        let existing = run::run_state(store.as_ref(), &record.entries[i].run_id).map_err(drill_fail)?;
        let rec = &record.entries[i];
        if let Some(st) = &existing
            && run::keep(entry, st)
        {
            if !json {
                eprintln!("drill: {} kept: run {} {} as expected", entry.raw.id, rec.run_id, st.status.as_str());
            }
            continue;
        }
        if !json {
            eprintln!(
                "drill: {} ({}): {} run {}",
                entry.raw.id,
                entry.playbook.name,
                if existing.is_some() { "resuming" } else { "starting" },
                rec.run_id
            );
        }
        let (code, verb) = run::run_entry(&suite, entry, rec, existing.is_some(), &opts).map_err(drill_fail)?;
        let rec = &mut record.entries[i];
        rec.exit_code = Some(code);
        rec.last_command = Some(verb.to_owned());
        run::save(&dir, &record).map_err(drill_fail)?;
        if code == EXIT_INTERRUPTED {
            interrupted = true;
            break;
        }
    }
    if !interrupted {
        record.finished_at = Some(jiff::Timestamp::now().to_string());
        run::save(&dir, &record).map_err(drill_fail)?;
    }
    let mut states = Vec::new();
    let mut playbooks = Vec::new();
    for rec in &record.entries {
        let st = run::run_state(store.as_ref(), &rec.run_id).map_err(drill_fail)?;
        // The playbook as each run ran it (for its objectives), not as the file is now.
        let pb = st.as_ref().and_then(|s| {
            let text = store.playbook_text(&rec.run_id).ok()?;
            playbook::load_str(&s.file, text, None).ok()
        });
        states.push(st);
        playbooks.push(pb);
    }
    let r = report::build(&suite, &record, &states, &playbooks);
    let md = report::markdown(&r);
    let pretty = serde_json::to_string_pretty(&r).unwrap_or_default();
    for (name, text) in [("report.md", &md), ("report.json", &pretty)] {
        std::fs::write(dir.join(name), text)
            .map_err(|e| Fail(EXIT_FAILED, format!("{}: {e}", dir.join(name).display())))?;
    }
    if json {
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    } else {
        for p in r["playbooks"].as_array().into_iter().flatten() {
            println!(
                "{:<24} {:<11} run {}{}",
                p["id"].as_str().unwrap_or(""),
                p["result"].as_str().unwrap_or(""),
                p["run_id"].as_str().unwrap_or(""),
                p["problems"]
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .map(|a| format!(": {}", a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; ")))
                    .unwrap_or_default()
            );
        }
        println!(
            "drill {drill_id}: {} ({} of {} passed)\nreport: {} (and report.json)",
            r["result"].as_str().unwrap_or(""),
            r["passed"],
            r["total"],
            dir.join("report.md").display()
        );
    }
    if interrupted {
        eprintln!("drill interrupted; continue it with: runbook drill {} --resume {drill_id}", a.suite.display());
        return Ok(EXIT_INTERRUPTED);
    }
    Ok(match r["result"].as_str() {
        Some("passed") => EXIT_OK,
        Some("incomplete") => {
            eprintln!(
                "some runs are paused or interrupted; continue with: runbook drill {} --resume {drill_id}",
                a.suite.display()
            );
            EXIT_PAUSED
        }
        _ => EXIT_FAILED,
    })
}
