//! Run semantics, asserted from `show --output json`.

use crate::support::{Env, Test, status, step};

const HEAD: &str = "apiVersion: runbook/v1\nname: t\n";

fn exec(env: &Env, body: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    env.write("p.yaml", &format!("{HEAD}{body}"));
    let mut args = vec!["exec", "p.yaml", "--run-id", "r1"];
    args.extend_from_slice(extra);
    let r = env.run(&args);
    (r.code, env.show("r1"), r.all())
}

#[test]
fn independent_branches_run_concurrently() {
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        concat!(
            "steps:\n",
            "  - id: a\n    type: shell\n    with: { script: \"sleep 0.4\" }\n",
            "  - id: b\n    type: shell\n    with: { script: \"sleep 0.4\" }\n",
            "  - id: join\n    type: wait\n    needs: [a, b]\n    with: { duration: 0s }\n",
        ),
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let t = |id: &str, f: &str| step(&show, id)[f].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    // b started before a finished, and a before b finished: they overlapped.
    assert!(t("b", "started_at") < t("a", "finished_at") && t("a", "started_at") < t("b", "finished_at"), "{show}");
    assert!(t("join", "started_at") >= t("a", "finished_at").max(t("b", "finished_at")));
}

#[test]
fn max_parallel_one_serializes() {
    let env = Env::new();
    let (code, show, _) = exec(
        &env,
        "steps:\n  - id: a\n    type: shell\n    with: { script: \"sleep 0.2\" }\n  - id: b\n    type: shell\n    with: { script: \"sleep 0.2\" }\n",
        &["--max-parallel", "1"],
    );
    assert_eq!(code, 0);
    let t = |id: &str, f: &str| step(&show, id)[f].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    assert!(t("b", "started_at") >= t("a", "finished_at"), "{show}");
}

#[test]
fn skipped_branch_still_lets_the_join_run() {
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        concat!(
            "inputs:\n  provider_wide: { type: bool, default: false }\n",
            "steps:\n",
            "  - id: wait_out\n    type: wait\n    when: \"inputs.provider_wide\"\n    with: { duration: 0s }\n",
            "  - id: rollback\n    type: wait\n    when: \"not inputs.provider_wide\"\n    with: { duration: 0s }\n",
            "  - id: verify\n    type: wait\n    needs: [wait_out, rollback]\n    with: { duration: 0s }\n",
        ),
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(status(&show, "wait_out"), "skipped");
    assert_eq!(status(&show, "rollback"), "succeeded");
    assert_eq!(status(&show, "verify"), "succeeded");
    assert_eq!(step(&show, "wait_out")["reason"], "when `inputs.provider_wide` is false");
    assert_eq!(step(&show, "wait_out")["skipped_by"], "when");
}

#[test]
fn failure_and_always_triggers() {
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        concat!(
            "steps:\n",
            "  - id: restore\n    type: shell\n    with: { command: [\"false\"] }\n",
            "  - id: verify\n    type: wait\n    needs: [restore]\n    with: { duration: 0s }\n",
            "  - id: page_team\n    type: shell\n    needs: [restore, verify]\n    trigger: failure\n    with: { command: [echo, paged] }\n",
            "  - id: cleanup\n    type: wait\n    needs: [verify]\n    trigger: always\n    with: { duration: 0s }\n",
            "  - id: celebrate\n    type: wait\n    needs: [restore]\n    trigger: failure\n    when: \"false\"\n    with: { duration: 0s }\n",
            "  - id: through_cleanup\n    type: wait\n    needs: [cleanup]\n    trigger: failure\n    with: { duration: 0s }\n",
        ),
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(show["status"], "failed");
    assert_eq!(status(&show, "restore"), "failed");
    assert_eq!(status(&show, "verify"), "skipped");
    assert_eq!(step(&show, "verify")["reason"], "trigger not met: restore failed");
    assert_eq!(step(&show, "verify")["skipped_by"], "trigger");
    assert_eq!(status(&show, "page_team"), "succeeded");
    assert_eq!(step(&show, "page_team")["outputs"]["stdout"], "paged");
    assert_eq!(status(&show, "cleanup"), "succeeded");
    assert_eq!(status(&show, "celebrate"), "skipped");
    // `cleanup` succeeded, but `restore` before it failed: a failure handler looks at every ancestor.
    assert_eq!(status(&show, "through_cleanup"), "succeeded");
}

// Issue 10: in s1/s3 the paging step needs the verify steps, not the restore; when the
// restore failed the verify steps were skipped and nobody was paged.
#[test]
fn failure_handler_fires_when_a_grand_ancestor_failed() {
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        concat!(
            "steps:\n",
            "  - id: restore\n    type: shell\n    with: { command: [\"false\"] }\n",
            "  - id: verify_db\n    type: wait\n    needs: [restore]\n    with: { duration: 0s }\n",
            "  - id: verify_app\n    type: wait\n    needs: [verify_db]\n    with: { duration: 0s }\n",
            "  - id: page\n    type: shell\n    needs: [verify_app]\n    trigger: failure\n    with: { command: [echo, paged] }\n",
            "  - id: fine\n    type: wait\n    with: { duration: 0s }\n",
            "  - id: page_fine\n    type: wait\n    needs: [fine]\n    trigger: failure\n    with: { duration: 0s }\n",
        ),
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&show, "verify_db"), "skipped");
    assert_eq!(step(&show, "verify_app")["reason"], "trigger not met: verify_db skipped (trigger not met)");
    assert_eq!(step(&show, "verify_app")["skipped_by"], "trigger");
    assert_eq!(status(&show, "page"), "succeeded", "{show}");
    assert_eq!(step(&show, "page")["outputs"]["stdout"], "paged");
    // A failure elsewhere in the run is not this handler's business: only its ancestors count.
    assert_eq!(status(&show, "page_fine"), "skipped");
    assert_eq!(step(&show, "page_fine")["reason"], "trigger not met: no ancestor failed");
}

#[test]
fn success_path_after_a_handler_that_did_not_fire_is_skipped() {
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        concat!(
            "steps:\n",
            "  - id: restore\n    type: wait\n    with: { duration: 0s }\n",
            "  - id: page\n    type: wait\n    needs: [restore]\n    trigger: failure\n    with: { duration: 0s }\n",
            "  - id: after_page\n    type: shell\n    needs: [page]\n    with: { script: \"echo ran > after_page\" }\n",
            "  - id: after_after\n    type: wait\n    needs: [after_page]\n    with: { duration: 0s }\n",
            "  - id: tidy\n    type: wait\n    needs: [after_after]\n    trigger: always\n    with: { duration: 0s }\n",
            "  - id: after_tidy\n    type: wait\n    needs: [tidy]\n    with: { duration: 0s }\n",
        ),
        &[],
    );
    // Nothing failed: the run succeeds, but the steps behind the handler did not run.
    assert_eq!(code, 0, "{out}");
    assert_eq!(show["status"], "succeeded");
    assert_eq!(step(&show, "page")["skipped_by"], "trigger");
    assert_eq!(status(&show, "after_page"), "skipped");
    assert_eq!(step(&show, "after_page")["reason"], "trigger not met: page skipped (trigger not met)");
    assert_eq!(step(&show, "after_page")["skipped_by"], "trigger");
    assert!(!env.path("after_page").exists(), "the omitted step ran");
    assert_eq!(status(&show, "after_after"), "skipped");
    assert_eq!(step(&show, "after_after")["skipped_by"], "trigger");
    // `always` runs whatever happened before it, and what follows it is back on the success path.
    assert_eq!(status(&show, "tidy"), "succeeded");
    assert_eq!(status(&show, "after_tidy"), "succeeded");
    // The reason is in the journal's event, in `show` and in the report.
    let events = env.read(".runbook/runs/r1/journal.jsonl");
    assert!(
        events.lines().any(|l| l.contains(r#""step":"after_page""#) && l.contains(r#""skipped_by":"trigger""#)),
        "{events}"
    );
    // `show` prints start times and durations: one line is checked, not the whole output.
    let text = env.run(&["show", "r1"]).stdout;
    assert!(text.lines().any(|l| l.starts_with("after_page") && l.contains("trigger not met: page skipped")), "{text}");
    let report = env.run(&["report", "r1", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let after = report["steps"].as_array().unwrap().iter().find(|s| s["id"] == "after_page").unwrap();
    assert_eq!(after["skipped_by"], "trigger");
}

#[test]
fn always_step_reads_the_status_of_ancestors_that_never_ran() {
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        concat!(
            "steps:\n",
            "  - id: restore\n    type: shell\n    with: { command: [\"false\"] }\n",
            "  - id: slow\n    type: shell\n    with: { script: \"sleep 0.3\" }\n",
            "  - id: verify\n    type: wait\n    needs: [restore]\n    with: { duration: 0s }\n",
            "  - id: later\n    type: wait\n    needs: [slow]\n    with: { duration: 0s }\n",
            "  - id: summary\n    type: shell\n    needs: [verify, later]\n    trigger: always\n",
            "    with: { command: [echo, \"{{ steps.restore.status }} {{ steps.verify.status }} {{ steps.later.status }} {{ steps.verify.outputs | length }}\"] }\n",
            "  - id: link\n    type: shell\n    needs: [verify]\n    trigger: always\n",
            "    with: { command: [echo, \"{{ steps.verify.outputs.url }}\"] }\n",
        ),
        &[],
    );
    assert_eq!(code, 1, "{out}");
    // `later` never started (the run had failed): it is there, `pending`, with no outputs.
    assert_eq!(status(&show, "later"), "pending");
    assert_eq!(status(&show, "summary"), "succeeded", "{show}");
    assert_eq!(step(&show, "summary")["outputs"]["stdout"], "failed skipped pending 0");
    // Reading an output that a skipped step never produced names the variable and the reason.
    assert_eq!(status(&show, "link"), "failed");
    assert_eq!(
        step(&show, "link")["error"],
        "cannot render `with.command[1]`: undefined value `steps.verify.outputs.url`: \
         step `verify` was skipped (trigger not met: restore failed)"
    );
}

#[test]
fn a_failure_stops_new_independent_work() {
    let env = Env::new();
    let (code, show, _) = exec(
        &env,
        concat!(
            "steps:\n",
            "  - id: boom\n    type: shell\n    with: { command: [\"false\"] }\n",
            "  - id: slow\n    type: shell\n    with: { script: \"sleep 0.3\" }\n",
            "  - id: later\n    type: wait\n    needs: [slow]\n    with: { duration: 0s }\n",
        ),
        &[],
    );
    assert_eq!(code, 1);
    // `slow` was already running and finishes; `later` is not started and stays pending for resume.
    assert_eq!(status(&show, "slow"), "succeeded");
    assert_eq!(status(&show, "later"), "pending");
    assert_eq!(step(&show, "later")["reason"], "not started: the run had already failed");
}

#[test]
fn retry_until_counts_attempts() {
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        concat!(
            "steps:\n",
            "  - id: poll\n    type: shell\n",
            "    with: { script: \"echo x >> count; wc -l < count | tr -d ' '\" }\n",
            "    retry: { attempts: 5, delay: 10ms, backoff: exponential, until: \"outputs.stdout == '3'\" }\n",
            "  - id: never\n    type: shell\n",
            "    with: { command: [echo, nope] }\n",
            "    retry: { attempts: 2, until: \"outputs.stdout == 'yes'\" }\n",
            "    continue_on_error: true\n",
        ),
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "poll")["attempts"], 3);
    assert_eq!(env.read("count").lines().count(), 3);
    assert_eq!(status(&show, "never"), "failed");
    assert_eq!(step(&show, "never")["attempts"], 2);
    assert_eq!(step(&show, "never")["error"], "retry.until `outputs.stdout == 'yes'` still false after 2 attempt(s)");
}

#[test]
fn retry_after_failures_then_success() {
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        "steps:\n  - id: flaky\n    type: shell\n    with: { script: \"echo x >> n; test $(wc -l < n) -ge 2\" }\n    retry: { attempts: 3, delay: 1ms }\n",
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "flaky")["attempts"], 2);
    // A run's output carries durations; the retry line is what this test is about.
    assert!(out.contains("↻ flaky attempt 1 failed"), "{out}");
}

#[test]
fn timeout_fails_the_attempt_and_kills_the_command() {
    let env = Env::new();
    let (code, show, _) = exec(
        &env,
        "steps:\n  - id: hang\n    type: shell\n    timeout: 300ms\n    with: { script: \"sleep 5; echo late > late.txt\" }\n",
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(status(&show, "hang"), "failed");
    assert_eq!(step(&show, "hang")["error"], "timed out after 300ms");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!env.path("late.txt").exists());
}

#[test]
fn continue_on_error_keeps_the_truth_but_not_the_failure() {
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        concat!(
            "steps:\n",
            "  - id: optional\n    type: shell\n    continue_on_error: true\n    with: { command: [sh, -c, \"exit 3\"] }\n",
            "  - id: next\n    type: wait\n    needs: [optional]\n    with: { duration: 0s }\n",
        ),
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(show["status"], "succeeded");
    assert_eq!(status(&show, "optional"), "failed");
    assert_eq!(step(&show, "optional")["outputs"]["exit_code"], 3);
    assert_eq!(status(&show, "next"), "succeeded");
}

#[test]
fn outputs_flow_through_templates_with_native_types() {
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        concat!(
            "inputs:\n  who: { type: string, required: true }\n  n: { type: int, default: 2 }\n",
            "vars:\n  greeting: \"hi {{ inputs.who }}\"\n",
            "steps:\n",
            "  - id: produce\n    type: shell\n    with: { script: \"echo '{\\\"rows\\\": [{\\\"n\\\": 41}]}'\", stdout: json }\n",
            "  - id: consume\n    type: shell\n    needs: [produce]\n",
            "    with: { command: [echo, \"{{ vars.greeting }}\", \"{{ steps.produce.outputs.json.rows[0].n + 1 }}\", \"{{ steps.produce.status }}\", \"{{ run.playbook }}\"] }\n",
        ),
        &["-i", "who=ops"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "consume")["outputs"]["stdout"], "hi ops 42 succeeded t");
}

#[test]
fn json_events_carry_the_run_id() {
    let env = Env::new();
    env.write("p.yaml", &format!("{HEAD}steps:\n  - id: a\n    type: wait\n    with: {{ duration: 0s }}\n"));
    let r = env.run(&["exec", "p.yaml", "--output", "json", "--run-id", "j1"]);
    assert_eq!(r.code, 0);
    let events: Vec<serde_json::Value> =
        r.stdout.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert!(events.iter().all(|e| e["run_id"] == "j1"));
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["run_started", "step_started", "step_finished", "run_finished"]);
}

#[test]
fn inputs_are_parsed_by_type() {
    let env = Env::new();
    env.write(
        "p.yaml",
        &format!("{HEAD}inputs:\n  n: {{ type: int, required: true }}\n  env: {{ type: string, enum: [prod, staging], default: prod }}\nsteps:\n  - id: a\n    type: wait\n    with: {{ duration: 0s }}\n"),
    );
    let env = Test::in_env(env)
        .args(&["exec", "p.yaml"])
        .status(2)
        .stderr("error: missing required input `n`: pass `-i n=...` or set $RUNBOOK_INPUT_N\n")
        .run();
    let env = Test::in_env(env)
        .args(&["exec", "p.yaml", "-i", "n=abc"])
        .status(2)
        .stderr("error: input `n`: expected an integer, got `\"abc\"`\n")
        .run();
    let env = Test::in_env(env)
        .args(&["exec", "p.yaml", "-i", "n=1", "-i", "nn=2"])
        .status(2)
        .stderr("error: unknown input `nn` (did you mean `n`?); declared: n, env\n")
        .run();
    let env = Test::in_env(env)
        .args(&["exec", "p.yaml", "-i", "n=1", "-i", "env=dev"])
        .status(2)
        .stderr("error: input `env`: `\"dev\"` is not one of `\"prod\"`, `\"staging\"`\n")
        .run();
    assert_eq!(env.run(&["exec", "p.yaml", "-i", "n=7"]).code, 0);
}

/// Input text that could be read two ways is an error that says what to write.
#[test]
fn ambiguous_inputs_are_refused() {
    let env = Env::new();
    env.write(
        "p.yaml",
        &format!("{HEAD}inputs:\n  l: {{ type: list }}\n  b: {{ type: bool }}\n  opt: {{ type: string }}\nsteps:\n  - id: a\n    type: shell\n    with: {{ command: [echo, \"--tag={{{{ inputs.opt }}}}\"] }}\n"),
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &["-i", "l=[1,2"],
            "error: input `l`: `[1,2` is not a JSON list (EOF while parsing a list at line 1 column 4); write e.g. `[1, 2]` or `a,b,c`\n",
        ),
        (
            &["-i", "b=true", "-i", "b=false"],
            "error: input `b` is given twice with -i; give it once (a list takes `-i b=a,b`)\n",
        ),
        (&["-i", "b=yes"], "error: input `b`: expected true or false, got `\"yes\"`\n"),
        (&["-i", "b=1"], "error: input `b`: expected true or false, got `\"1\"`\n"),
    ];
    let playbook = env.read("p.yaml");
    for (args, stderr) in cases {
        Test::new().file("p.yaml", &playbook).args(&["exec", "p.yaml"]).args(args).status(2).stderr(stderr).run();
    }
    // A list in JSON or comma-separated, and a bool as true/false, are fine.
    assert_eq!(env.run(&["exec", "p.yaml", "-i", "l=[1, 2]", "-i", "b=TRUE", "-i", "opt=x"]).code, 0);
    assert_eq!(env.run(&["exec", "p.yaml", "-i", "l=a,b", "-i", "b=false", "-i", "opt=x"]).code, 0);
    // An optional input without a value never becomes the word "none" in a command line.
    let r = env.run(&["exec", "p.yaml", "--run-id", "o1"]);
    assert_eq!(r.code, 1, "{}", r.all());
    // The run's output carries durations: the failure line is checked whole, not the output.
    assert!(
        r.stdout.contains(
            "✘ a failed: cannot render `with.command[1]`: optional input `opt` has no value and cannot go into text: pass `-i opt=...`, give it a default, or guard it with `{% if inputs.opt is not none %}`"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn approval_pauses_then_resume_approves() {
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        concat!(
            "steps:\n",
            "  - id: go_ahead\n    type: approval\n    with: { message: \"Roll back production?\" }\n",
            "  - id: rollback\n    type: shell\n    needs: [go_ahead]\n    with: { command: [echo, rolled] }\n",
        ),
        &[],
    );
    assert_eq!(code, 3, "{out}");
    assert_eq!(show["status"], "paused");
    assert_eq!(status(&show, "go_ahead"), "waiting");
    assert_eq!(status(&show, "rollback"), "pending");
    // The run's output carries durations: the line that says how to go on is checked.
    assert!(out.contains("runbook resume r1 --approve go_ahead"), "{out}");
    let r = env.run(&["resume", "r1", "--approve", "go_ahead"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("r1");
    assert_eq!(show["status"], "succeeded");
    let who = step(&show, "go_ahead")["outputs"]["approved_by"].as_str().unwrap().to_owned();
    assert!(who.ends_with("(--approve go_ahead)"), "{who}");
    assert!(step(&show, "go_ahead")["outputs"]["approved_at"].as_str().is_some());
    assert_eq!(status(&show, "rollback"), "succeeded");
}

#[test]
fn resume_reruns_failed_and_keeps_succeeded() {
    let env = Env::new();
    let (code, _, _) = exec(
        &env,
        concat!(
            "steps:\n",
            "  - id: once\n    type: shell\n    with: { script: \"echo x >> once.log\" }\n",
            "  - id: needs_fix\n    type: shell\n    needs: [once]\n    with: { script: \"test -f fixed\" }\n",
            "  - id: after\n    type: shell\n    needs: [needs_fix]\n    with: { script: \"echo x >> after.log\" }\n",
        ),
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(status(&env.show("r1"), "after"), "skipped");
    env.write("fixed", "");
    let r = env.run(&["resume", "r1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("r1");
    assert_eq!(status(&show, "needs_fix"), "succeeded");
    assert_eq!(status(&show, "after"), "succeeded");
    assert_eq!(env.read("once.log").lines().count(), 1, "a succeeded step ran again");
    // --from re-runs a step and everything after it, even when it succeeded.
    let r = env.run(&["resume", "r1", "--from", "once"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(env.read("once.log").lines().count(), 2);
    assert_eq!(env.read("after.log").lines().count(), 2);
    Test::in_env(env)
        .args(&["resume", "r1", "--from", "nope"])
        .status(2)
        .stderr("error: --from nope: no step `nope` in playbook t\n")
        .run();
}

#[test]
fn resume_decides_a_failure_handler_again_after_the_retried_step() {
    // The handler fired because `restore` failed; on resume `restore` is retried, so the
    // handler and the success path behind it wait for it and are decided anew.
    let env = Env::new();
    let (code, show, out) = exec(
        &env,
        concat!(
            "steps:\n",
            "  - id: restore\n    type: shell\n    with: { script: \"test -f fixed\" }\n",
            "  - id: verify\n    type: shell\n    needs: [restore]\n    with: { script: \"echo x >> verify.log\" }\n",
            "  - id: page\n    type: shell\n    needs: [verify]\n    trigger: failure\n    with: { script: \"echo x >> page.log\" }\n",
            "  - id: after\n    type: shell\n    needs: [page]\n    with: { script: \"echo x >> after.log\" }\n",
        ),
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&show, "page"), "succeeded");
    assert_eq!(env.read("page.log").lines().count(), 1);
    // Still broken: the retry fails, the page fires again, nothing behind it starts.
    let r = env.run(&["resume", "r1"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let show = env.show("r1");
    assert_eq!(status(&show, "restore"), "failed");
    assert_eq!(status(&show, "page"), "succeeded");
    assert_eq!(env.read("page.log").lines().count(), 2, "the handler was not decided again");
    assert!(!env.path("after.log").exists(), "`after` started while the restore was failing");
    assert!(!env.path("verify.log").exists());
    // Fixed: the restore succeeds, verify runs, the handler does not fire, `after` is omitted.
    env.write("fixed", "");
    let r = env.run(&["resume", "r1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("r1");
    assert_eq!(status(&show, "verify"), "succeeded");
    assert_eq!(status(&show, "page"), "skipped");
    assert_eq!(step(&show, "page")["reason"], "trigger not met: no ancestor failed");
    assert_eq!(status(&show, "after"), "skipped");
    assert_eq!(step(&show, "after")["skipped_by"], "trigger");
    assert_eq!(env.read("page.log").lines().count(), 2);
    assert!(!env.path("after.log").exists());
    // Skipped in this session: no start time left over from the last one.
    assert_eq!(step(&show, "page")["started_at"], serde_json::Value::Null);
}

#[test]
fn every_approval_decision_stays_in_the_report() {
    // An approval handler decided again on a resume: both decisions are in the audit trail.
    let env = Env::new();
    let body = concat!(
        "steps:\n",
        "  - id: restore\n    type: shell\n    with: { script: \"test -f fixed\" }\n",
        "  - id: ack\n    type: approval\n    needs: [restore]\n    trigger: failure\n    with: { message: ack? }\n",
    );
    let (code, _, out) = exec(&env, body, &["--approve", "ack"]);
    assert_eq!(code, 1, "{out}");
    let r = env.run(&["resume", "r1", "--approve", "ack"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let report = env.run(&["report", "r1", "--format", "json"]);
    assert_eq!(report.code, 0, "{}", report.all());
    let rep: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let steps: Vec<&str> = rep["approvals"].as_array().unwrap().iter().map(|a| a["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["ack", "ack"], "{}", rep["approvals"]);
}

#[test]
fn dry_run_changes_nothing_and_shows_placeholders() {
    let env = Env::new();
    env.write(
        "p.yaml",
        &format!(
            "{HEAD}secrets: [DEPLOY_TOKEN]\nsteps:\n  - id: a\n    type: shell\n    with: {{ script: \"echo x > touched\" }}\n  - id: b\n    type: http\n    needs: [a]\n    with: {{ method: POST, url: \"https://example.invalid/{{{{ steps.a.outputs.stdout }}}}\" }}\n"
        ),
    );
    // The whole plan: placeholders for what only a real run knows, the unset secret warned
    // about, and no run id and no "succeeded", since nothing ran and nothing is kept.
    let env = Test::in_env(env)
        .args(&["exec", "p.yaml", "--dry-run"])
        .stdout(concat!(
            "playbook t: 2 steps (dry run: nothing is changed)\n",
            "warning: secret $DEPLOY_TOKEN is not set (a real run would need it)\n",
            "▶ a started\n",
            "• a: would run script: echo x > touched\n",
            "▶ b started\n",
            "• b: would POST https://example.invalid/<steps.a.outputs.stdout>\n",
            "dry run done: nothing was run and nothing was kept\n",
        ))
        .run();
    assert!(!env.path("touched").exists());
    assert!(!env.path(".runbook").exists(), "dry run wrote state");
}
