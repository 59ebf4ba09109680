//! `runbook report` on real runs: a failure, a resume, an approval, a skip.

use crate::support::Env;

#[test]
fn report_tells_the_story_of_a_failed_and_resumed_run() {
    let env = Env::new();
    env.write(
        "p.yaml",
        concat!(
            "apiVersion: runbook/v1\nname: incident\nseverity: S4 secret compromise\nobjectives: { rto: 15m }\n",
            "secrets: [TOKEN]\n",
            "follow_ups:\n  - Audit all logs from the compromise window\n  - \"Notify users | by mail\"\n",
            "steps:\n",
            "  - id: rotate\n    type: shell\n    with: { script: \"echo token=$TOKEN; test -f fixed\" }\n",
            "  - id: approve\n    type: approval\n    needs: [rotate]\n    with: { message: go? }\n",
            "  - id: optional\n    type: wait\n    needs: [approve]\n    when: \"false\"\n    with: { duration: 0s }\n",
            "  - id: done\n    type: wait\n    needs: [approve, optional]\n    with: { duration: 0s }\n",
        ),
    );
    let r = env.run_env(&["exec", "p.yaml", "--run-id", "i1"], &[("TOKEN", "tok-very-secret")]);
    assert_eq!(r.code, 1);
    env.write("fixed", "");
    let r = env.run_env(&["resume", "i1", "--approve", "approve"], &[("TOKEN", "tok-very-secret")]);
    assert_eq!(r.code, 0, "{}", r.all());

    let md = env.run(&["report", "i1"]);
    assert_eq!(md.code, 0, "{}", md.all());
    let md = md.stdout;
    // The report carries times and durations: its lines are checked one by one.
    assert!(md.starts_with("# Incident report: `incident`\n"), "{md}");
    assert!(md.contains("- severity: S4 secret compromise"), "{md}");
    assert!(md.contains("| RTO | 15m | "), "{md}");
    assert!(md.contains("| met |"), "{md}");
    assert!(md.contains("- resumed "), "{md}");
    assert!(md.contains("| `approve` | "), "{md}");
    assert!(md.contains("(--approve approve) |"), "{md}");
    assert!(md.contains("| `optional` | wait | skipped | 0 | - | - | when `false` is false |"), "{md}");
    // The report ends with the playbook's follow-ups, as written (a `|` escaped for the
    // table-minded markdown renderers), and nothing the engine made up.
    assert!(
        md.ends_with(
            "\n## Follow-ups\n\n- [ ] Audit all logs from the compromise window\n- [ ] Notify users \\| by mail\n"
        ),
        "{md}"
    );
    assert!(!md.contains("tok-very-secret"), "{md}");

    let json = env.run(&["report", "i1", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["objectives"]["rto"], "15m");
    assert_eq!(v["objectives"]["rto_result"], "met");
    assert_eq!(v["resumes"].as_array().unwrap().len(), 1);
    let rotate = v["steps"].as_array().unwrap().iter().find(|s| s["id"] == "rotate").unwrap();
    assert_eq!(rotate["status"], "succeeded");
    assert_eq!(v["approvals"][0]["step"], "approve");
    // `--output json` means JSON whatever `--format` says.
    let global = env.run(&["report", "i1", "--output", "json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&global.stdout).unwrap(), v);
    let r = env.run(&["report", "nope"]);
    assert_eq!(r.code, 2);
}

#[test]
fn rto_warnings_during_the_run_and_a_missed_rto_in_the_report() {
    let env = Env::new();
    env.write("p.yaml", "apiVersion: runbook/v1\nname: slow\nobjectives: { rto: 600ms }\nsteps:\n  - id: slow\n    type: shell\n    with: { script: \"sleep 0.9\" }\n");
    let r = env.run(&["exec", "p.yaml", "--run-id", "s1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let w50 = r.stdout.find("warning: 50% of the RTO (600ms) used").expect("50% warning");
    let w100 = r.stdout.find("warning: 100% of the RTO (600ms) used").expect("100% warning");
    assert!(w50 < w100, "{}", r.stdout);
    let json = env.run(&["report", "s1", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["objectives"]["rto_result"], "missed");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 2, "{v}");
    // No `follow_ups:` in the playbook, no follow-ups in the report (none made up).
    assert_eq!(v["follow_ups"], serde_json::json!([]), "{v}");
    let md = env.run(&["report", "s1"]).stdout;
    assert!(!md.contains("Follow-ups"), "{md}");
}

// Issue 10: S4's RTO was measured to the end of the run, human audit approvals included, so
// it was always "missed". With `restored_by` the clock stops when the service is back.
#[test]
fn restored_by_stops_the_rto_clock_and_reports_follow_up_time() {
    let env = Env::new();
    env.write(
        "p.yaml",
        concat!(
            "apiVersion: runbook/v1\nname: s4\nobjectives: { rto: 2s, restored_by: verify }\nsteps:\n",
            "  - id: rotate\n    type: shell\n    with: { script: \"sleep 0.1\" }\n",
            "  - id: verify\n    type: wait\n    needs: [rotate]\n    with: { duration: 0s }\n",
            "  - id: audit\n    type: shell\n    needs: [verify]\n    with: { script: \"sleep 2.5\" }\n",
        ),
    );
    let r = env.run(&["exec", "p.yaml", "--run-id", "s4"]);
    assert_eq!(r.code, 0, "{}", r.all());
    // The run took longer than the RTO, but the outage ended before half of it: no warning.
    assert!(!r.stdout.contains("of the RTO"), "{}", r.stdout);
    let json = env.run(&["report", "s4", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let o = &v["objectives"];
    assert_eq!(o["rto_result"], "met", "{v}");
    assert_eq!(o["restored_by"], "verify");
    let show = env.show("s4");
    assert_eq!(o["restored_at"], crate::support::step(&show, "verify")["finished_at"]);
    let recovery = o["time_to_recovery_ms"].as_u64().unwrap();
    let follow_up = o["follow_up_ms"].as_u64().unwrap();
    assert!((100..2000).contains(&recovery), "{o}");
    assert!(follow_up >= 2500, "{o}");
    assert!(recovery + follow_up <= v["duration_ms"].as_u64().unwrap(), "{v}");
    assert!(v["warnings"].as_array().unwrap().is_empty(), "{v}");
    let md = env.run(&["report", "s4"]).stdout;
    assert!(md.contains("| RTO | 2s | "), "{md}");
    assert!(md.contains("The RTO is measured to the success of `verify` ("), "{md}");
    assert!(md.contains("follow-up after it took "), "{md}");

    // When the restore step never succeeds, the RTO is not "met" however short the run was.
    env.write("f.yaml", &std::fs::read_to_string(env.path("p.yaml")).unwrap().replace("sleep 0.1", "exit 1"));
    let r = env.run(&["exec", "f.yaml", "--run-id", "f4"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let json = env.run(&["report", "f4", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["objectives"]["rto_result"], "not restored: `verify` skipped", "{v}");
    assert!(v["objectives"]["time_to_recovery_ms"].is_null());
}

#[test]
fn restored_by_stops_the_rto_warnings_once_the_restore_succeeded() {
    let env = Env::new();
    env.write(
        "p.yaml",
        concat!(
            "apiVersion: runbook/v1\nname: slowfix\nobjectives: { rto: 2s, restored_by: fix }\nsteps:\n",
            "  - id: fix\n    type: shell\n    with: { script: \"sleep 1.2\" }\n",
            "  - id: audit\n    type: shell\n    needs: [fix]\n    with: { script: \"sleep 1.5\" }\n",
        ),
    );
    let r = env.run(&["exec", "p.yaml", "--run-id", "w1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    // 50% (1s) passes while `fix` runs; 100% (2s) would pass during `audit`, after the restore.
    assert!(r.stdout.contains("warning: 50% of the RTO (2s) used"), "{}", r.stdout);
    assert!(!r.stdout.contains("100% of the RTO"), "{}", r.stdout);
    let json = env.run(&["report", "w1", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["objectives"]["rto_result"], "met", "{v}");
}
