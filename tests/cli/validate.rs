//! Every validation rule has a failing example with its exact message.

use crate::support::{Env, Test};

const HEAD: &str = "apiVersion: runbook/v1\nname: t\n";

/// Validates `body` (after the two header lines) and returns stderr.
fn problems(body: &str) -> String {
    let env = Env::new();
    env.write("p.yaml", &format!("{HEAD}{body}"));
    let r = env.run(&["validate", "p.yaml"]);
    assert_eq!(r.code, 2, "expected exit 2, got {}: {}", r.code, r.all());
    r.stderr
}

fn has(stderr: &str, line: &str) {
    assert!(stderr.lines().any(|l| l == line), "missing line:\n  {line}\nin:\n{stderr}");
}

#[test]
fn valid_playbook_passes() {
    let env = Env::new();
    env.write("p.yaml", &format!("{HEAD}steps:\n  - id: a\n    type: wait\n    with: {{ duration: 0s }}\n"));
    let r = env.run(&["validate", "p.yaml"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.stdout.trim(), "p.yaml: ok (1 steps)");
}

#[test]
fn yaml_syntax_error_has_position() {
    let e = problems("steps:\n  - id: a\n    type: [wait\n");
    has(&e, "p.yaml:5:11: invalid YAML: unclosed bracket '['");
}

#[test]
fn unknown_keys_anywhere() {
    let e = problems("stepz: []\nsteps:\n  - id: a\n    type: wait\n    need: [b]\n    with: { duration: 0s }\n");
    has(&e, "p.yaml:3:1: unknown key `stepz` (did you mean `steps`?)");
    has(&e, "p.yaml:7:5: step `a`: unknown key `need` (did you mean `needs`?)");
}

#[test]
fn ids_missing_invalid_duplicate() {
    let e = problems(
        "steps:\n  - type: wait\n    with: { duration: 0s }\n  - id: Bad-Id\n    type: wait\n    with: { duration: 0s }\n  - id: x\n    type: wait\n    with: { duration: 0s }\n  - id: x\n    type: wait\n    with: { duration: 0s }\n",
    );
    has(&e, "p.yaml:4:5: step #1: missing field `id`");
    has(&e, "p.yaml:6:9: invalid step id `Bad-Id`");
    has(&e, "p.yaml:12:9: duplicate step id `x`");
    has(&e, "  hint: first defined at line 9");
}

#[test]
fn unknown_step_type_lists_known_ones() {
    let e = problems("steps:\n  - id: a\n    type: shel\n");
    has(&e, "p.yaml:5:11: step `a`: unknown step type `shel` (did you mean `shell`?)");
    has(
        &e,
        "  hint: known types: approval, check-backups, check-status, export-secrets, http, notify, pg-dump, pg-restore, pitr-restore, redis-ping, rollback-deploy, rotate-secret, s3-copy, s3-restore-versions, s3-versioning, shell, sql, verify-rls, wait",
    );
}

#[test]
fn needs_unknown_step_suggests() {
    let e = problems(
        "steps:\n  - id: check\n    type: wait\n    with: { duration: 0s }\n  - id: rollback\n    type: wait\n    needs: [chek]\n    with: { duration: 0s }\n",
    );
    has(&e, "p.yaml:9:13: step `rollback`: needs unknown step `chek` (did you mean `check`?)");
}

#[test]
fn restored_by_must_name_a_step() {
    let e = problems(
        "objectives: { rto: 15m, restored_by: verfy_app }\nsteps:\n  - id: verify_app\n    type: wait\n    with: { duration: 0s }\n",
    );
    has(&e, "p.yaml:3:38: `objectives.restored_by` names unknown step `verfy_app` (did you mean `verify_app`?)");
    has(&e, "  hint: name the step whose success ends the outage, e.g. the last verification");
}

#[test]
fn cycle_prints_whole_path() {
    let w = "    type: wait\n    with: { duration: 0s }\n";
    let e = problems(&format!(
        "steps:\n  - id: a\n{w}    needs: [c]\n  - id: b\n{w}    needs: [a]\n  - id: c\n{w}    needs: [b]\n"
    ));
    has(&e, "p.yaml:7:12: dependency cycle: a -> c -> b -> a");
}

#[test]
fn template_syntax_error() {
    let e = problems("steps:\n  - id: a\n    type: shell\n    with: { command: [echo, \"{{ inputs.x \"] }\n");
    has(&e, "p.yaml:6:29: invalid template: syntax error: unexpected end of input, expected end of variable block");
}

#[test]
fn templates_reference_only_declared_things_and_ancestors() {
    let e = problems(concat!(
        "inputs:\n  project_ref: { type: string }\n",
        "vars:\n  url: \"{{ vars.later }}/{{ inputs.project_rf }}\"\n  later: x\n",
        "steps:\n",
        "  - id: a\n    type: shell\n    with: { command: [echo, \"{{ steps.b.outputs.stdout }}\"] }\n",
        "  - id: b\n    type: shell\n    with: { command: [echo, \"{{ vars.nope }} {{ run.user }}\"] }\n",
    ));
    has(&e, "p.yaml:6:8: var `url`: template uses undeclared input `project_rf` (did you mean `project_ref`?)");
    has(&e, "p.yaml:6:8: var `url`: uses `vars.later`, which is defined later");
    has(&e, "p.yaml:11:29: step `a`: template reads `steps.b`, but `b` is not among its needs (a race)");
    has(&e, "p.yaml:14:29: step `b`: template uses undeclared var `nope`");
    has(&e, "p.yaml:14:29: step `b`: unknown field `run.user`");
}

#[test]
fn bad_durations_triggers_and_retry_blocks() {
    let e = problems(concat!(
        "steps:\n",
        "  - id: a\n    type: wait\n    timeout: 10x\n    with: { duration: 0s }\n",
        "  - id: b\n    type: wait\n    trigger: sometimes\n    with: { duration: 0s }\n",
        "  - id: c\n    type: wait\n    retry: { attempts: 0, delay: 5s, backoff: quadratic }\n    with: { duration: 0s }\n",
        "  - id: d\n    type: wait\n    retry: { attempts: 0, until: \"outputs.x ==\" }\n    with: { duration: 0s }\n",
    ));
    has(&e, "p.yaml:6:14: step `a`: `timeout`: invalid duration `10x`: unknown unit `x` (use ms, s, m, h or d)");
    has(&e, "p.yaml:10:14: step `b`: `trigger`: unknown value `sometimes`");
    has(&e, "  hint: allowed values: success, failure, always");
    has(&e, "p.yaml:14:47: step `c`: `retry.backoff`: unknown value `quadratic`");
    has(&e, "  hint: allowed values: fixed, linear, exponential");
    has(&e, "p.yaml:18:24: step `d`: `retry.attempts` must be at least 1");
    has(
        &e,
        "p.yaml:18:34: step `d`: invalid `retry.until` expression: syntax error: unexpected end of input, expected expression",
    );
}

#[test]
fn with_parameters_must_fit_the_type() {
    let e = problems(concat!(
        "steps:\n",
        "  - id: a\n    type: http\n    with: { method: FETCH, url: \"http://x\" }\n",
        "  - id: b\n    type: shell\n    with: { command: [true], timeout: 5 }\n",
        "  - id: c\n    type: wait\n    with: {}\n",
        "  - id: d\n    type: shell\n    with: { script: \"echo\", command: [echo] }\n",
    ));
    has(&e, "p.yaml:6:21: step `a`: `with.method`: unknown value `FETCH` (did you mean `PATCH`?)");
    has(&e, "  hint: allowed values: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
    has(&e, "p.yaml:9:30: step `b`: `with`: unknown parameter `timeout`");
    has(&e, "  hint: `shell` takes: command, script, env, cwd, stdout, ok_codes");
    has(&e, "p.yaml:12:5: step `c`: `with`: missing field `duration`");
    has(&e, "p.yaml:15:5: step `d`: `with`: give either `command` (argv) or `script`, not both");
}

#[test]
fn templated_parameters_are_checked_at_run_time_only() {
    let env = Env::new();
    env.write(
        "p.yaml",
        &format!("{HEAD}inputs:\n  d: {{ type: duration, default: 0s }}\nsteps:\n  - id: a\n    type: wait\n    with: {{ duration: \"{{{{ inputs.d }}}}\" }}\n"),
    );
    let r = env.run(&["validate", "p.yaml"]);
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn all_problems_of_several_files_in_one_pass() {
    let env = Env::new();
    env.write("a.yaml", "apiVersion: runbook/v2\nname: a\nsteps: []\n");
    env.write("b.yaml", "name: b\nsteps:\n  - id: x\n    type: nope\n");
    let r = env.run(&["validate", "a.yaml", "b.yaml"]);
    assert_eq!(r.code, 2);
    has(&r.stderr, "a.yaml:1:13: unsupported apiVersion `runbook/v2`");
    has(&r.stderr, "a.yaml:3:8: `steps` is empty: a playbook needs at least one step");
    has(&r.stderr, "b.yaml:1:1: missing `apiVersion: runbook/v1`");
    has(&r.stderr, "b.yaml:4:11: step `x`: unknown step type `nope`");
    assert!(r.stderr.trim_end().ends_with("4 problems found"), "{}", r.stderr);
}

#[test]
fn pathological_files_are_errors_not_hangs() {
    let env = Env::new();
    // A billion laughs.
    let mut bomb = String::from("apiVersion: runbook/v1\nname: bomb\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
            p = i - 1
        ));
    }
    bomb.push_str("steps: []\n");
    env.write("bomb.yaml", &bomb);
    let env = Test::in_env(env).args(&["validate", "bomb.yaml"]).status(2).stderr(concat!(
            "bomb.yaml:8:20: invalid YAML: the document has more than 400000 values (aliases count at their expanded size)\n",
            "1 problem found\n",
        )).run();

    let deep = format!("apiVersion: runbook/v1\nname: deep\nsteps: {}{}\n", "[".repeat(5000), "]".repeat(5000));
    env.write("deep.yaml", &deep);
    let env = Test::in_env(env)
        .args(&["validate", "deep.yaml"])
        .status(2)
        .stderr(concat!("deep.yaml:3:263: invalid YAML: nesting deeper than 64 levels\n", "1 problem found\n",))
        .run();

    let big = env.path("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(50 * 1024 * 1024).unwrap();
    let r = env.run(&["validate", "big.yaml"]);
    assert_eq!(r.code, 2, "{}", r.all());
    has(&r.stderr, "big.yaml:1:1: the file is 50.0 MiB; a playbook may be at most 8 MiB");
}

/// Whole stderr of `validate` for one mistake each: the exact message, every problem of a
/// step at once, no follow-on errors, did-you-mean for values, no Rust type names.
#[test]
fn messages_table() {
    let w = "    type: wait\n    with: { duration: 0s }\n";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("steps:\n  - id: a\n{w}    retry: {{ attempts: 2, backoff: exponentail }}\n"),
            "p.yaml:7:36: step `a`: `retry.backoff`: unknown value `exponentail` (did you mean `exponential`?)\n  \
             hint: allowed values: fixed, linear, exponential\n1 problem found\n",
        ),
        (
            format!("steps:\n  - id: a\n{w}    trigger: alwyas\n"),
            "p.yaml:7:14: step `a`: `trigger`: unknown value `alwyas` (did you mean `always`?)\n  \
             hint: allowed values: success, failure, always\n1 problem found\n",
        ),
        // A bad input declaration is still declared: no "undeclared input" after it.
        (
            "inputs:\n  n: { type: integr }\nsteps:\n  - id: a\n    type: shell\n    with: { command: [echo, \"{{ inputs.n }}\"] }\n".to_owned(),
            "p.yaml:4:14: input `n`: `type`: unknown value `integr` (did you mean `int`?)\n  \
             hint: allowed values: string, int, float, bool, list, map, timestamp, duration\n1 problem found\n",
        ),
        // Every bad field of one step, and the step still counts for `needs` and templates.
        (
            format!(
                "steps:\n  - id: pause\n{w}    when: [1]\n    timeout: 5\n    continue_on_error: maybe\n    retry: {{ attempts: -1 }}\n  - id: b\n    needs: [pause]\n    type: shell\n    with: {{ command: [echo, \"{{{{ steps.pause.status }}}}\"] }}\n"
            ),
            "p.yaml:7:11: step `pause`: `when`: expected an expression or true/false\n  \
             hint: e.g. `when: \"inputs.region == 'eu'\"` or `when: false`\n\
             p.yaml:8:14: step `pause`: `timeout`: invalid duration `5`: write it as a string with a unit, e.g. `30s`, `5m`, `2h`\n\
             p.yaml:9:24: step `pause`: `continue_on_error`: wrong type: string \"maybe\"; expected true or false\n\
             p.yaml:10:24: step `pause`: `retry.attempts`: wrong value: number `-1`; expected a whole number, 0 or more\n\
             4 problems found\n",
        ),
        (
            "steps:\n  - id: a\n    type: http\n    with: { url: \"http://x\", expect_status: abc }\n".to_owned(),
            "p.yaml:6:45: step `a`: `with.expect_status`: expected an HTTP status code such as `200` or a list of them such as `[200, 204]`\n\
             1 problem found\n",
        ),
        (
            "objectives: { rpo: [1] }\nsteps:\n  - id: a\n    type: wait\n    with: { duration: 0s }\n".to_owned(),
            "p.yaml:3:15: objectives: `rpo`: expected a duration such as `15m` or a text such as `point-in-time`\n\
             1 problem found\n",
        ),
        // Every mistake inside `retry` too.
        (
            format!("steps:\n  - id: a\n{w}    retry: {{ attempts: x, backoff: exponentail, dely: 1s }}\n"),
            "p.yaml:7:24: step `a`: `retry.attempts`: wrong type: string \"x\"; expected a whole number, 0 or more\n\
             p.yaml:7:36: step `a`: `retry.backoff`: unknown value `exponentail` (did you mean `exponential`?)\n  \
             hint: allowed values: fixed, linear, exponential\n\
             p.yaml:7:49: step `a`: `retry`: unknown key `dely` (did you mean `delay`?)\n  \
             hint: allowed keys: attempts, delay, backoff, max_delay, until\n3 problems found\n",
        ),
        // Every bad parameter of `with`, not only the first serde meets.
        (
            "steps:\n  - id: a\n    type: check-status\n    with: { endpoints: [5], fail_on: sometimes }\n".to_owned(),
            "p.yaml:6:25: step `a`: `with.endpoints[0]`: wrong type: number `5`; expected a mapping\n\
             p.yaml:6:38: step `a`: `with.fail_on`: unknown value `sometimes`\n  \
             hint: allowed values: none, degraded\n2 problems found\n",
        ),
        // Inside a provider's `with` (an internally tagged variant) too, each at its position,
        // and the misspelt `data_dir` is not also reported missing.
        (
            "steps:\n  - id: r\n    type: pitr-restore\n    with: { provider: postgres, base_backup: /b, wal_archive: /w, target_time: \"2026-01-01T00:00:00Z\", data_dri: /d, port: lots, user: 5 }\n".to_owned(),
            "p.yaml:6:104: step `r`: `with`: unknown parameter `data_dri` (did you mean `data_dir`?)\n  \
             hint: `pitr-restore` takes: base_backup, wal_archive, target_time, data_dir, port, user, password, os_user\n\
             p.yaml:6:124: step `r`: `with.port`: wrong type: string \"lots\"; expected a whole number from 0 to 65535\n\
             p.yaml:6:136: step `r`: `with.user`: wrong type: number `5`; expected a string\n3 problems found\n",
        ),
        (
            "steps:\n  - id: r\n    type: pitr-restore\n    with: { provider: supabase, project_ref: [x], token: t, poll_interval: often }\n".to_owned(),
            "p.yaml:6:33: step `r`: `with.project_ref`: wrong type: list; expected a string\n\
             p.yaml:6:76: step `r`: `with.poll_interval`: invalid duration `often`: expected a number before `often`\n\
             2 problems found\n",
        ),
        // `objectives` field by field: every bad field and the stray key, each at its place.
        (
            "objectives: { rto: soon, restored_by: [a], rpoo: 1h }\nsteps:\n  - id: a\n    type: wait\n    with: { duration: 0s }\n".to_owned(),
            "p.yaml:3:20: objectives: `rto`: invalid duration `soon`: expected a number before `soon`\n\
             p.yaml:3:26: objectives: `restored_by`: wrong type: list; expected a string\n\
             p.yaml:3:44: objectives: unknown key `rpoo` (did you mean `rpo`?)\n  \
             hint: allowed keys: rto, rpo, restored_by\n3 problems found\n",
        ),
        // A bad `rto` does not hide that `restored_by` names no step.
        (
            "objectives: { rto: soon, restored_by: verfy }\nsteps:\n  - id: verify\n    type: wait\n    with: { duration: 0s }\n".to_owned(),
            "p.yaml:3:20: objectives: `rto`: invalid duration `soon`: expected a number before `soon`\n\
             p.yaml:3:39: `objectives.restored_by` names unknown step `verfy` (did you mean `verify`?)\n  \
             hint: name the step whose success ends the outage, e.g. the last verification\n2 problems found\n",
        ),
        (
            "follow_ups: [ok, 5]\nsteps:\n  - id: a\n    type: wait\n    with: { duration: 0s }\n".to_owned(),
            "p.yaml:3:18: follow_ups: `[1]`: wrong type: number `5`; expected a string\n1 problem found\n",
        ),
        // A step with neither id nor type reports both, and nothing about its type.
        (
            "steps:\n  - needs: []\n".to_owned(),
            "p.yaml:4:5: step #1: missing field `id`\np.yaml:4:5: step #1: missing field `type`\n2 problems found\n",
        ),
    ];
    let mut failures = Vec::new();
    for (body, expected) in &cases {
        let got = problems(body);
        if got != *expected {
            failures.push(format!("--- body:\n{body}--- expected:\n{expected}--- got:\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn snippets_on_request_lines_in_ci() {
    let p = format!("{HEAD}steps:\n  - id: a\n    type: shel\n");
    let known = "approval, check-backups, check-status, export-secrets, http, notify, pg-dump, pg-restore, pitr-restore, redis-ping, rollback-deploy, rotate-secret, s3-copy, s3-restore-versions, s3-versioning, shell, sql, verify-rls, wait";
    Test::new()
        .file("p.yaml", &p)
        .args(&["validate", "--error-format", "snippet", "p.yaml"])
        .status(2)
        .stderr(&format!(
            "error: step `a`: unknown step type `shel` (did you mean `shell`?)\n --> p.yaml:5:11\n  |\n5 |     type: shel\n  |           ^^^^\n  |\n  = help: known types: {known}\n\n1 problem found\n"
        ))
        .run();
    // Not a terminal (as here, and in CI): one line per problem, whatever command loads it.
    Test::new()
        .file("p.yaml", &p)
        .args(&["graph", "p.yaml"])
        .status(2)
        .stderr(&format!(
            "p.yaml:5:11: step `a`: unknown step type `shel` (did you mean `shell`?)\n  hint: known types: {known}\n1 problem found\n"
        ))
        .run();
}

#[test]
fn errors_are_json_when_asked() {
    let env = Env::new();
    env.write("p.yaml", &format!("{HEAD}steps:\n  - id: a\n    type: shel\n"));
    for cmd in ["graph", "plan", "exec"] {
        let r = env.run(&[cmd, "--output", "json", "p.yaml"]);
        assert_eq!(r.code, 2, "{}", r.all());
        assert_eq!(r.stderr, "");
        let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON document");
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["exit_code"], 2);
        assert_eq!(v["error"]["message"], "1 problem found");
        assert_eq!(v["error"]["problems"][0]["line"], 5);
        assert_eq!(v["error"]["problems"][0]["message"], "step `a`: unknown step type `shel` (did you mean `shell`?)");
    }
    // Usage errors too, and errors that are not about the playbook.
    let r = env.run(&["show", "--output", "json", "nope"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON document");
    assert_eq!((r.code, v["error"]["exit_code"].as_i64()), (2, Some(2)));
    assert!(v["error"]["message"].as_str().unwrap().starts_with("no run `nope` in "), "{v}");
    let r = env.run(&["--output=json", "graph", "p.yaml", "--bogus"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON document");
    assert_eq!(r.code, 2);
    assert!(v["error"]["message"].as_str().unwrap().starts_with("unexpected argument '--bogus' found"), "{v}");
}

/// Messages speak the format's words: no Rust type names, whatever the wrong value.
#[test]
fn no_rust_type_names_in_messages() {
    let e = problems(concat!(
        "objectives: 5\ninputs:\n  x: 5\n  y: { enum: 3 }\n",
        "steps:\n",
        "  - id: a\n    type: wait\n    with: 5\n    retry: 5\n    when: {}\n",
        "  - id: b\n    type: check-status\n    with: { endpoints: [5] }\n",
        "  - id: c\n    type: http\n    with: { url: x, method: 3, expect_status: abc }\n",
        "  - id: d\n    type: s3-copy\n    with: { source: x, target: { bucket: 1 } }\n",
        "  - id: e\n    type: sql\n    with: { url: x, query: y, expect: { row_count: -1 } }\n",
        "  - id: f\n    type: rotate-secret\n    with: { client_id: a, client_secret: b, project_id: c, environment: d, name: e, length: x }\n",
    ));
    for word in [
        "struct",
        "enum ",
        "u8",
        "u16",
        "u32",
        "u64",
        "usize",
        "i32",
        "i64",
        "f64",
        "Raw",
        "Params",
        "WhenValue",
        "StatusSet",
        "RpoValue",
        "untagged",
        "variant",
        "sequence",
    ] {
        assert!(!e.contains(word), "`{word}` in:\n{e}");
    }
    assert_eq!(e.lines().filter(|l| l.starts_with("p.yaml:")).count(), 14, "{e}");
}

/// The whole-output builder fails on an extra line, which `contains` would let pass.
#[test]
#[should_panic(expected = "stdout:")]
fn whole_output_builder_catches_extra_lines() {
    let p = format!("{HEAD}steps:\n  - id: a\n    type: wait\n    with: {{ duration: 0s }}\n");
    Test::new().file("p.yaml", &p).args(&["validate", "p.yaml", "p.yaml"]).stdout("p.yaml: ok (1 steps)\n").run();
}
