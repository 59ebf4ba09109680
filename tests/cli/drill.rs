//! `runbook drill`: suite checks with positions, the drill report, expected failures,
//! resume, paused runs and secrets, over small local playbooks. The pre-launch suite
//! against stand-ins is in `drill_e2e`.

use crate::support::{Env, Test, walk};
use serde_json::Value;

const STEPS: &str = r#"apiVersion: runbook/v1
name: restore-sim
severity: S3 data corruption
objectives: { rto: 10m, rpo: point-in-time }
follow_ups: [Write the post-mortem, Re-run the failed jobs]
inputs:
  marker: { type: string, default: "" }
  token: { type: string, secret: true }
steps:
  - id: restore
    type: shell
    with: { script: "if [ -n \"{{ inputs.marker }}\" ]; then test -f \"{{ inputs.marker }}\" || exit 1; fi; echo restored {% if inputs.token is not none %}{{ inputs.token }}{% endif %}" }
  - id: verify
    type: shell
    needs: [restore]
    with: { command: [echo, ok] }
  - id: page
    type: shell
    needs: [verify]
    trigger: failure
    with: { script: "echo paged >> paged.txt" }
"#;

const GATED: &str = r#"apiVersion: runbook/v1
name: gated
steps:
  - id: go
    type: approval
    with: { message: "go?" }
  - id: act
    type: shell
    needs: [go]
    with: { command: [echo, acted] }
"#;

fn env_with_playbooks() -> Env {
    let env = Env::new();
    env.write("restore.yaml", STEPS);
    env.write("gated.yaml", GATED);
    env
}

fn report(env: &Env, drill: &str) -> Value {
    let text = env.read(&format!(".runbook/drills/{drill}/report.json"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("report.json of {drill}: {e}: {text}"))
}

fn entry<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["playbooks"].as_array().and_then(|a| a.iter().find(|p| p["id"] == id)).unwrap_or_else(|| panic!("no {id} in {r}"))
}

/// What `drill suite.yaml` says of the suite in `drill_suite_problems_are_listed_with_positions`.
const SUITE_PROBLEMS: &str = concat!(
    "error: suite.yaml:3:1: unknown key `playbok` (did you mean `playbooks`?)\n",
    "  hint: allowed keys: apiVersion, name, description, env, playbooks\n",
    "suite.yaml:7:15: input `markr` is not declared by playbook restore-sim (did you mean `marker`?)\n",
    "suite.yaml:7:32: input `token` is secret: its value does not belong in the suite\n",
    "  hint: give it through the environment: `env: { RUNBOOK_INPUT_TOKEN: \"${VAR}\" }`\n",
    "suite.yaml:8:21: expect_steps: playbook restore-sim has no step `verfy` (did you mean `verify`?)\n",
    "suite.yaml:9:9: duplicate id `one` (first at line 5)\n",
    "suite.yaml:10:11: playbook `missing.yaml`: cannot read the playbook: No such file or directory (os error 2)\n",
    "  hint: `file` is relative to the suite's folder (.)\n",
    "suite.yaml:14:13: playbooks[2]: `expect`: unknown value `maybe`\n",
    "  hint: allowed values: succeeded, failed\n",
    "7 problems found\n",
);

#[test]
fn drill_suite_problems_are_listed_with_positions() {
    let env = env_with_playbooks();
    env.write(
        "suite.yaml",
        r#"apiVersion: runbook-drill/v1
name: checks
playbok: x
playbooks:
  - id: one
    file: restore.yaml
    inputs: { markr: a, token: "hunter2" }
    expect_steps: { verfy: succeeded }
  - id: one
    file: missing.yaml
  - id: two
    file: gated.yaml
    approve: [act]
    expect: maybe
"#,
    );
    // Every problem, each with its position, and nothing else: the secret written in the
    // suite (`hunter2`) is not echoed, and the hint says how to give it.
    let env = Test::in_env(env).args(&["drill", "suite.yaml"]).status(2).stderr(SUITE_PROBLEMS).run();
    // Nothing ran, nothing was recorded.
    assert!(!env.path(".runbook/runs").exists());
    assert!(!env.path(".runbook/drills").exists());
    let env = Test::in_env(env).args(&["drill", "suite.yaml", "--output", "json"]).status(2).stdout(&format!("{}\n", serde_json::json!({"ok": false, "error": {"exit_code": 2, "message": SUITE_PROBLEMS.trim_start_matches("error: ").trim_end()}}))).run();

    // A playbook that is itself invalid: the suite points at the entry, the playbook's own
    // problems follow with their positions.
    env.write("bad.yaml", "apiVersion: runbook/v1\nname: bad\nsteps:\n  - id: a\n    type: shel\n");
    env.write("suite2.yaml", "apiVersion: runbook-drill/v1\nname: x\nplaybooks:\n  - { id: a, file: bad.yaml }\n");
    Test::in_env(env).args(&["drill", "suite2.yaml", "--check"]).status(2).stderr(concat!(
            "error: suite2.yaml:4:20: playbook `bad.yaml` is invalid (1 problem, listed below)\n",
            "./bad.yaml:5:11: step `a`: unknown step type `shel` (did you mean `shell`?)\n",
            "  hint: known types: approval, check-backups, check-status, export-secrets, http, notify, pg-dump, pg-restore, pitr-restore, redis-ping, rollback-deploy, rotate-secret, s3-copy, s3-restore-versions, s3-versioning, shell, sql, verify-rls, wait\n",
            "2 problems found\n",
        )).run();
}

#[test]
fn drill_runs_each_playbook_and_reports_outcome_objectives_and_failed_checks() {
    let env = env_with_playbooks();
    env.write(
        "suite.yaml",
        r#"apiVersion: runbook-drill/v1
name: pre-launch-mini
description: Two scenarios of the restore
playbooks:
  - id: restore_ok
    file: restore.yaml
    expect_steps: { page: skipped }
  - id: restore_fails
    description: The restore fails; the page must fire.
    file: restore.yaml
    inputs: { marker: does-not-exist }
    expect: failed
    expect_steps: { restore: failed, page: succeeded }
  - id: unexpected
    file: restore.yaml
    inputs: { marker: "${NO_SUCH_VARIABLE:-does-not-exist}" }
"#,
    );
    assert_eq!(env.run(&["drill", "suite.yaml", "--check"]).code, 0);
    let r = env.run(&["drill", "suite.yaml", "--id", "d1"]);
    assert_eq!(r.code, 1, "one playbook failed unexpectedly: {}", r.all());
    assert!(r.stdout.contains("restore_ok               passed"), "{}", r.stdout);
    let rep = report(&env, "d1");
    assert_eq!(rep["result"], "failed");
    assert_eq!((rep["passed"].as_u64(), rep["failed"].as_u64(), rep["total"].as_u64()), (Some(2), Some(1), Some(3)));
    let ok = entry(&rep, "restore_ok");
    assert_eq!(ok["result"], "passed");
    assert_eq!(ok["status"], "succeeded");
    assert_eq!(ok["run_id"], "d1-restore_ok");
    assert_eq!(ok["objectives"]["rto"], "10m");
    assert_eq!(ok["objectives"]["rto_result"], "met");
    assert!(ok["objectives"]["time_to_recovery_ms"].as_u64().is_some());
    assert_eq!(ok["severity"], "S3 data corruption");
    // The playbook's own follow-ups, as written: the engine adds none.
    assert_eq!(ok["follow_ups"], serde_json::json!(["Write the post-mortem", "Re-run the failed jobs"]));
    let scenario = entry(&rep, "restore_fails");
    assert_eq!(scenario["result"], "passed", "{scenario}");
    assert_eq!(scenario["status"], "failed");
    let bad = entry(&rep, "unexpected");
    assert_eq!(bad["result"], "failed");
    assert_eq!(bad["failed_steps"][0]["step"], "restore");
    assert!(bad["problems"][0].as_str().unwrap().contains("the run failed (expected: succeeded)"), "{bad}");
    // The page fired once per failing run, not for the good one.
    assert_eq!(env.read("paged.txt").lines().count(), 2);
    // Each run is a normal run: `show` and `report` know it.
    let show = env.show("d1-restore_fails");
    assert_eq!(crate::support::status(&show, "page"), "succeeded");
    assert_eq!(env.run(&["report", "d1-unexpected"]).code, 0);
    let md = env.read(".runbook/drills/d1/report.md");
    assert!(md.contains("# DR drill report: `pre-launch-mini`"), "{md}");
    assert!(md.contains("| `restore_ok` (restore-sim) | S3 data corruption | succeeded | succeeded | 10m / "), "{md}");
    assert!(md.contains("**Failed checks**"), "{md}");
    assert!(md.contains("- [ ] Write the post-mortem\n"), "{md}");
    // The same id again is refused: it would mix two drills.
    let again = env.run(&["drill", "suite.yaml", "--id", "d1"]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("--resume d1"), "{}", again.stderr);
}

#[test]
fn drill_resume_keeps_what_ended_as_expected_and_resumes_the_rest() {
    let env = env_with_playbooks();
    env.write(
        "suite.yaml",
        "apiVersion: runbook-drill/v1\nname: r\nenv: { RUNBOOK_INPUT_TOKEN: t }\nplaybooks:\n  - { id: first, file: restore.yaml }\n  - { id: second, file: restore.yaml, inputs: { marker: fixed } }\n",
    );
    let r = env.run(&["drill", "suite.yaml", "--id", "d2"]);
    assert_eq!(r.code, 1, "{}", r.all());
    // The operator fixes the cause, then continues the drill.
    env.write("fixed", "");
    let r = env.run(&["drill", "suite.yaml", "--resume", "d2"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("first kept"), "{}", r.stderr);
    assert!(r.stderr.contains("second (restore-sim): resuming run d2-second"), "{}", r.stderr);
    let rep = report(&env, "d2");
    assert_eq!(rep["result"], "passed");
    assert_eq!(rep["resumes"].as_array().map(Vec::len), Some(1));
    // The kept run was not run again; the resumed one re-ran its failed step only once more.
    let first = env.show("d2-first");
    assert_eq!(crate::support::step(&first, "restore")["attempts"], 1);
    let second = env.show("d2-second");
    assert_eq!(crate::support::status(&second, "verify"), "succeeded");
    // A changed suite is refused unless asked.
    env.write(
        "suite.yaml",
        "apiVersion: runbook-drill/v1\nname: r\nenv: { RUNBOOK_INPUT_TOKEN: t }\nplaybooks:\n  - { id: first, file: restore.yaml }\n",
    );
    let r = env.run(&["drill", "suite.yaml", "--resume", "d2"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--allow-changed"), "{}", r.stderr);
    let r = env.run(&["drill", "suite.yaml", "--resume", "nope"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no drill"), "{}", r.stderr);
}

#[test]
fn drill_with_a_pending_approval_is_incomplete_and_json_output_is_one_document() {
    let env = env_with_playbooks();
    env.write(
        "suite.yaml",
        "apiVersion: runbook-drill/v1\nname: g\nplaybooks:\n  - { id: gated, file: gated.yaml }\n  - { id: after, file: restore.yaml }\n",
    );
    let r = env.run(&["drill", "suite.yaml", "--id", "d3", "--output", "json"]);
    assert_eq!(r.code, 3, "{}", r.all());
    let rep: Value = serde_json::from_str(&r.stdout).expect("stdout is the report alone");
    assert_eq!(rep["result"], "incomplete");
    assert_eq!(entry(&rep, "gated")["result"], "incomplete");
    // The next playbook still ran: one pending approval does not hold the drill back.
    assert_eq!(entry(&rep, "after")["result"], "passed");
    // The runs' JSON events went to stderr.
    assert!(r.stderr.contains("\"run_id\":\"d3-gated\""), "{}", r.stderr);
    // Approving it in the suite and resuming finishes the drill.
    env.write(
        "suite.yaml",
        "apiVersion: runbook-drill/v1\nname: g\nplaybooks:\n  - { id: gated, file: gated.yaml, approve: [go] }\n  - { id: after, file: restore.yaml }\n",
    );
    let r = env.run(&["drill", "suite.yaml", "--resume", "d3", "--allow-changed"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("d3-gated");
    assert_eq!(crate::support::status(&show, "act"), "succeeded");
}

#[test]
fn drill_secrets_come_from_the_environment_and_stay_out_of_every_file() {
    let env = env_with_playbooks();
    env.write(
        "suite.yaml",
        "apiVersion: runbook-drill/v1\nname: s\nenv: { RUNBOOK_INPUT_TOKEN: \"${DRILL_TOKEN}\" }\nplaybooks:\n  - { id: one, file: restore.yaml }\n",
    );
    // Not set: refused before anything runs, naming the variable.
    let r = env.run_env(&["drill", "suite.yaml", "--id", "d4"], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("DRILL_TOKEN (for RUNBOOK_INPUT_TOKEN)"), "{}", r.stderr);
    let secret = "s3cr3t-drill-value";
    let r = env.run_env(&["drill", "suite.yaml", "--id", "d5"], &[("DRILL_TOKEN", secret)]);
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("d5-one");
    assert!(show.to_string().contains("restored ***"), "the step saw the secret, redacted: {show}");
    for f in walk(&env.path(".runbook")) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(!text.contains(secret), "{} holds the secret", f.display());
    }
    assert!(!r.all().contains(secret));
}

#[test]
fn pre_launch_suite_checks_out_and_names_every_missing_variable_before_running_anything() {
    let env = Env::new();
    let suite = crate::support::repo_root().join("drills/pre-launch.yaml");
    let suite = suite.to_str().unwrap();
    let r = env.run(&["drill", suite, "--check"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("ok (6 playbooks)"), "{}", r.stdout);
    let r = env.run(&["drill", suite]);
    assert_eq!(r.code, 2, "{}", r.all());
    for var in [
        "DRILL_DATABASE_URL",
        "DRILL_SCRATCH_DATABASE_URL",
        "DRILL_VERCEL_TOKEN",
        "DRILL_INFISICAL_CLIENT_SECRET",
        "DRILL_EXPORT_RECIPIENT",
    ] {
        assert!(r.stderr.contains(var), "{var} not named: {}", r.stderr);
    }
    // Defaults (`${NAME:-default}`) are not demanded.
    assert!(!r.stderr.contains("DRILL_VERCEL_API"), "{}", r.stderr);
    assert!(!env.path(".runbook").exists(), "nothing ran, nothing recorded");
}

#[test]
fn ctrl_c_stops_the_drill_after_the_run_checkpointed_and_resume_finishes_it() {
    use std::os::unix::process::CommandExt;
    let env = env_with_playbooks();
    env.write(
        "slow.yaml",
        "apiVersion: runbook/v1\nname: slow\nsteps:\n  - id: work\n    type: shell\n    idempotent: true\n    with: { script: \"test -f go || sleep 30\" }\n",
    );
    env.write(
        "suite.yaml",
        "apiVersion: runbook-drill/v1\nname: c\nplaybooks:\n  - { id: slow, file: slow.yaml }\n  - { id: after, file: restore.yaml }\n",
    );
    let mut cmd = env.command(&["drill", "suite.yaml", "--id", "d6"]);
    // Its own process group, as a terminal's foreground job: Ctrl-C reaches the drill and its run.
    cmd.process_group(0).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let journal = env.path(".runbook/runs/d6-slow/journal.jsonl");
    crate::support::eventually("the slow playbook's step never started", std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(&journal).is_ok_and(|j| j.contains("step_started")).then_some(())
    });
    // SAFETY: signalling the process group of our own child.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGINT);
    }
    let r = crate::support::finish(child.wait_with_output().unwrap());
    assert_eq!(r.code, 130, "{}", r.all());
    assert!(r.stderr.contains("--resume d6"), "{}", r.stderr);
    let rep = report(&env, "d6");
    assert_eq!(rep["result"], "incomplete");
    assert_eq!(entry(&rep, "slow")["status"], "interrupted");
    assert!(entry(&rep, "after")["status"].is_null(), "the next playbook did not start");
    env.write("go", "");
    let r = env.run(&["drill", "suite.yaml", "--resume", "d6"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(report(&env, "d6")["result"], "passed");
}
