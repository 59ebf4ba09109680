//! The state stores: the same scenarios against the file store and the PostgreSQL team
//! store (a throwaway cluster), and what only the team store does: leases between machines,
//! takeover after a holder died, migration from a state dir.

use crate::pg_cluster::Cluster;
use crate::support::{Env, finish, status, wait_for};
use std::process::Stdio;
use std::time::Duration;

/// Extra arguments that select the store; `None` is the file store.
fn args<'a>(team: Option<&'a str>, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = match team {
        Some(url) => vec!["--state", url],
        None => vec![],
    };
    v.extend_from_slice(rest);
    v
}

fn show(env: &Env, team: Option<&str>, run: &str) -> serde_json::Value {
    let r = env.run(&args(team, &["show", run, "--output", "json"]));
    assert_eq!(r.code, 0, "{}", r.all());
    serde_json::from_str(&r.stdout).unwrap()
}

const PLAYBOOK: &str = concat!(
    "apiVersion: runbook/v1\nname: team\nsecrets: [TEAM_TOKEN]\n",
    "steps:\n",
    "  - id: first\n    type: shell\n    with: { script: \"echo x >> first.log; echo token=$TEAM_TOKEN\" }\n",
    "  - id: go\n    type: approval\n    needs: [first]\n    with: { message: go? }\n",
    "  - id: slow\n    type: shell\n    needs: [go]\n    with: { script: \"touch slow.started; sleep 2; echo x >> slow.log\" }\n",
);

/// Pause at an approval, resume with it; the state is where the store keeps it, and no
/// secret is in it.
fn approve_and_resume(team: Option<&str>, stored: impl Fn(&Env) -> String) {
    let env = Env::new();
    env.write("p.yaml", PLAYBOOK);
    let r = env.run_env(&args(team, &["exec", "p.yaml", "--run-id", "a1"]), &[("TEAM_TOKEN", "team-secret-123")]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert_eq!(status(&show(&env, team, "a1"), "go"), "waiting");
    let r = env.run_env(&args(team, &["resume", "a1", "--approve", "go"]), &[("TEAM_TOKEN", "team-secret-123")]);
    assert_eq!(r.code, 0, "{}", r.all());
    let s = show(&env, team, "a1");
    assert_eq!(s["status"], "succeeded");
    assert_eq!(env.read("first.log").lines().count(), 1);
    let runs = env.run(&args(team, &["runs", "--output", "json"]));
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    let a1 = runs.as_array().unwrap().iter().find(|r| r["run_id"] == "a1").expect("a1 is listed");
    assert_eq!(a1["status"], "succeeded");
    let report = env.run(&args(team, &["report", "a1"]));
    assert!(report.stdout.contains("| `go` | "), "{}", report.stdout);
    let everything = stored(&env);
    assert!(everything.contains("token=***"), "the redacted output is not where the store keeps it");
    assert!(!everything.contains("team-secret-123"), "a secret reached the store");
    // A new run under a taken id is refused as the operator's to fix (exit 2), and the
    // run that has the id is left alone.
    let store = if team.is_some() { "the team store" } else { "[TMP]/.runbook/runs" };
    let env = crate::support::Test::in_env(env)
        .args(&args(team, &["exec", "p.yaml", "--run-id", "a1"]))
        .status(2)
        .stderr(&format!("error: run `a1` already exists in {store}; choose another --run-id or `resume` it\n"))
        .run();
    assert_eq!(show(&env, team, "a1")["status"], "succeeded");
    assert_eq!(env.read("first.log").lines().count(), 1);
}

/// A failed step, fixed, resumed: only what did not succeed runs again; an interrupted
/// step that changes things is not re-run without being asked.
fn fail_crash_and_resume(team: Option<&str>) {
    let env = Env::new();
    env.write("p.yaml", concat!(
        "apiVersion: runbook/v1\nname: team2\nsteps:\n",
        "  - id: once\n    type: shell\n    with: { script: \"echo x >> once.log\" }\n",
        "  - id: fixable\n    type: shell\n    needs: [once]\n    with: { script: \"test -f fixed\" }\n",
        "  - id: slow\n    type: shell\n    needs: [fixable]\n    with: { script: \"touch slow.started; sleep 4; echo x >> slow.log\" }\n",
    ));
    let r = env.run(&args(team, &["exec", "p.yaml", "--run-id", "f1"]));
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(status(&show(&env, team, "f1"), "fixable"), "failed");
    env.write("fixed", "");
    let mut child = env
        .command(&args(team, &["resume", "f1"]))
        .env("RUNBOOK_LEASE_TTL", "1s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&env, "slow.started");
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let r = env.run(&args(team, &["resume", "f1"]));
    assert_eq!(r.code, 3, "an interrupted non-idempotent step needs --rerun-interrupted: {}", r.all());
    // SIGKILL cannot take the step's own processes down with runbook: while they run, a
    // re-run beside them is refused.
    let r = env.run(&args(team, &["resume", "f1", "--rerun-interrupted"]));
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("error: step `slow` is still running (process group "), "{}", r.stderr);
    wait_for(&env, "slow.log");
    std::thread::sleep(Duration::from_millis(100));
    let r = env.run(&args(team, &["resume", "f1", "--rerun-interrupted"]));
    assert_eq!(r.code, 0, "{}", r.all());
    let s = show(&env, team, "f1");
    assert_eq!(s["status"], "succeeded");
    assert_eq!(env.read("once.log").lines().count(), 1, "a succeeded step ran again");
    // The first copy ended on its own, then the re-run asked for: never two at once.
    assert_eq!(env.read("slow.log").lines().count(), 2);
    assert_eq!(status(&s, "slow"), "succeeded");
}

#[test]
fn file_store_suite() {
    approve_and_resume(None, |env| {
        crate::support::walk(&env.path(".runbook"))
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect()
    });
    fail_crash_and_resume(None);
}

#[test]
fn team_store_suite() {
    let c = Cluster::start();
    let url = c.url();
    fail_crash_and_resume(Some(&url));
    approve_and_resume(Some(&url), |_| {
        c.psql("select coalesce(string_agg(event, ''), '') || coalesce((select string_agg(inputs || coalesce(snapshot, ''), '') from runbook_runs), '') from runbook_events")
    });
}

#[test]
fn one_driver_at_a_time_and_takeover_after_the_holder_dies() {
    let c = Cluster::start();
    let url = c.url();
    let env = Env::new();
    env.write("p.yaml", PLAYBOOK);
    // Paused at the approval; two operators resume it at the same moment.
    let r = env.run(&args(Some(&url), &["exec", "p.yaml", "--run-id", "t1"]));
    assert_eq!(r.code, 3, "{}", r.all());
    let spawn = || {
        env.command(&args(Some(&url), &["resume", "t1", "--approve", "go"]))
            .env("RUNBOOK_LEASE_TTL", "3s")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (finish(a.wait_with_output().unwrap()), finish(b.wait_with_output().unwrap()));
    let mut codes = [a.code, b.code];
    codes.sort();
    assert_eq!(codes, [0, 2], "exactly one drives:\n{}\n{}", a.all(), b.all());
    let refused = if a.code == 2 { &a } else { &b };
    assert!(refused.stderr.contains("error: run `t1` is held by process "), "{}", refused.stderr);
    assert_eq!(env.read("slow.log").lines().count(), 1);

    // A holder that dies (SIGKILL) keeps its lease until it expires; then another takes over.
    let env = Env::new();
    env.write("p.yaml", PLAYBOOK);
    let mut holder = env
        .command(&args(Some(&url), &["exec", "p.yaml", "--run-id", "t2", "--yes"]))
        .env("RUNBOOK_LEASE_TTL", "2s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&env, "slow.started");
    holder.kill().unwrap();
    holder.wait().unwrap();
    let r = env.run(&args(Some(&url), &["resume", "t2", "--rerun-interrupted"]));
    assert_eq!(r.code, 2, "the lease is still live: {}", r.all());
    std::thread::sleep(Duration::from_millis(2500));
    let s = show(&env, Some(&url), "t2");
    assert_eq!(s["status"], "interrupted");
    assert_eq!(status(&s, "slow"), "interrupted");
    // The dead holder's `slow` outlived it; a re-run waits until that copy has ended.
    wait_for(&env, "slow.log");
    std::thread::sleep(Duration::from_millis(100));
    let r = env.run_env(&args(Some(&url), &["resume", "t2", "--rerun-interrupted"]), &[("RUNBOOK_LEASE_TTL", "2s")]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("warning: took the run over from process "), "{}", r.stdout);
    assert_eq!(env.read("first.log").lines().count(), 1, "a completed step ran again");
    let report = env.run(&args(Some(&url), &["report", "t2", "--format", "json"]));
    let v: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    assert!(
        v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().starts_with("took the run over from process ")),
        "{v}"
    );
}

#[test]
fn migrate_a_state_dir_into_the_team_store() {
    let c = Cluster::start();
    let url = c.url();
    let env = Env::new();
    env.write(
        "p.yaml",
        "apiVersion: runbook/v1\nname: m\nsteps:\n  - id: a\n    type: shell\n    with: { command: [echo, hi] }\n",
    );
    assert_eq!(env.run(&["exec", "p.yaml", "--run-id", "m1"]).code, 0);
    assert_eq!(env.run(&["exec", "p.yaml", "--run-id", "m2"]).code, 0);
    let dir = env.path(".runbook");
    let r = env.run(&["state", "migrate", "--from", dir.to_str().unwrap(), "--to", &url]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("2 run(s) copied, 0 skipped"), "{}", r.stdout);
    let r = env.run(&["state", "migrate", "--from", dir.to_str().unwrap(), "--to", &url]);
    assert!(r.stdout.contains("0 run(s) copied, 2 skipped"), "{}", r.stdout);
    let s = show(&env, Some(&url), "m2");
    assert_eq!(s["status"], "succeeded");
    assert_eq!(crate::support::step(&s, "a")["outputs"]["stdout"], "hi");
    // An unreachable store: named once, by its URL, with the cause.
    crate::support::Test::in_env(env)
        .args(&["--state", "postgresql://postgres@127.0.0.1:1/postgres", "runs"])
        .status(1)
        .stderr(concat!(
            "error: team store postgresql://postgres@127.0.0.1:1/postgres: cannot connect to ",
            "postgres@127.0.0.1:1/postgres: Connection refused (os error 111)\n",
        ))
        .run();
}
