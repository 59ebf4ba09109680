//! `runbook diff`: table tests, one pair of playbooks per kind of change and warning.

use crate::support::{Env, Test};

const BASE: &str = concat!(
    "apiVersion: runbook/v1\nname: p\nsecrets: [DB]\n",
    "inputs:\n  target: { type: timestamp, required: true }\n",
    "steps:\n",
    "  - id: check\n    type: wait\n    with: { duration: 0s }\n",
    "  - id: approve\n    type: approval\n    needs: [check]\n    with: { message: go? }\n",
    "  - id: restore\n    type: shell\n    needs: [approve]\n    timeout: 10m\n    retry: { attempts: 2, delay: 5s }\n    with: { command: [echo, restore] }\n",
    "  - id: verify\n    type: http\n    needs: [restore]\n    with: { url: \"http://x/health\" }\n",
);

fn diff(new: &str, format: &str) -> (i32, String) {
    let env = Env::new();
    env.write("old.yaml", BASE);
    env.write("new.yaml", new);
    let r = env.run(&["diff", "old.yaml", "new.yaml", "--format", format]);
    (r.code, r.stdout + &r.stderr)
}

#[test]
fn each_kind_of_change_and_warning() {
    let cases: &[(&str, String, &str)] = &[
        ("equal", BASE.to_owned(), "no semantic changes\n"),
        (
            "approval removed",
            BASE.replace("    needs: [approve]\n    timeout", "    needs: [check]\n    timeout"),
            concat!("warning: `restore` (shell) changes things and no longer waits for an approval (it waited for approve)\n", "+ edge check -> restore\n", "- edge approve -> restore\n"),
        ),
        (
            "became non-idempotent",
            BASE.replace("type: http\n    needs: [restore]\n    with: { url:", "type: http\n    needs: [restore]\n    with: { method: POST, url:"),
            concat!("warning: `verify` became non-idempotent: after a crash it will not be re-run without asking\n", "~ step verify: with: {\"url\":\"http://x/health\"} -> {\"method\":\"POST\",\"url\":\"http://x/health\"}\n"),
        ),
        ("timeout grew", BASE.replace("timeout: 10m", "timeout: 1h"), concat!("warning: `restore`: timeout grew from 10m to 1h\n", "~ step restore: timeout: 10m -> 1h\n")),
        ("timeout removed", BASE.replace("    timeout: 10m\n", ""), concat!("warning: `restore`: timeout removed (was 10m): it may now wait forever\n", "~ step restore: timeout: 10m -> (none)\n")),
        ("retry grew", BASE.replace("attempts: 2", "attempts: 5"), concat!("warning: `restore`: retry attempts grew from 2 to 5\n", "~ step restore: retry: {\"attempts\":2,\"delay\":\"5s\",\"backoff\":\"fixed\",\"max_delay\":null,\"until\":null} -> {\"attempts\":5,\"delay\":\"5s\",\"backoff\":\"fixed\",\"max_delay\":null,\"until\":null}\n")),
        ("new secret", BASE.replace("secrets: [DB]", "secrets: [DB, TOKEN]"), concat!("warning: new secret $TOKEN\n", "~ secrets: [\"DB\"] -> [\"DB\",\"TOKEN\"]\n")),
        (
            "renamed",
            BASE.replace("  - id: verify\n", "  - id: health\n"),
            "~ step verify renamed to health\n",
        ),
        (
            "added and removed",
            BASE.replace("  - id: verify\n    type: http\n    needs: [restore]\n    with: { url: \"http://x/health\" }\n", "  - id: notify\n    type: notify\n    needs: [check]\n    with: { webhook: \"http://x\", text: done }\n"),
            concat!("warning: new step `notify` (notify) changes things and has no approval before it\n", "+ step notify\n", "- step verify\n", "+ edge check -> notify\n", "- edge restore -> verify\n"),
        ),
        ("input changed", BASE.replace("target: { type: timestamp, required: true }", "target: { type: timestamp }"), "~ inputs.target: {\"type\":\"timestamp\",\"required\":true,\"secret\":false} -> {\"type\":\"timestamp\",\"required\":false,\"secret\":false}\n"),
    ];
    for (name, new, expected) in cases {
        let (code, out) = diff(new, "text");
        assert_eq!(code, if *name == "equal" { 0 } else { 1 }, "{name}: {out}");
        // The whole output: a line too many (an edge nobody expected) fails too.
        assert_eq!(out, *expected, "{name}");
    }
}

#[test]
fn markdown_highlights_changed_steps_and_json_is_for_bots() {
    let new = BASE.replace("timeout: 10m", "timeout: 1h");
    let (code, md) = diff(&new, "md");
    assert_eq!(code, 1);
    assert!(md.contains("- ⚠️ `restore`: timeout grew from 10m to 1h"), "{md}");
    assert!(md.contains("| `restore`.timeout | `10m` → `1h` |"), "{md}");
    assert!(md.contains("```mermaid\nflowchart TD\n") && md.contains("  class restore changed\n"), "{md}");
    let (_, json) = diff(&new, "json");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["changed"]["restore"]["timeout"], serde_json::json!(["10m", "1h"]));
    assert_eq!(v["warnings"][0], "`restore`: timeout grew from 10m to 1h");
    let env = Env::new();
    env.write("old.yaml", BASE);
    env.write("new.yaml", &new);
    let r = env.run(&["diff", "old.yaml", "new.yaml", "--output", "json"]);
    assert_eq!(r.code, 1);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap(), v);
}

#[test]
fn against_a_git_revision() {
    let env = Env::new();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).current_dir(env.dir.path()).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    env.write("p.yaml", BASE);
    git(&["add", "p.yaml"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "base"]);
    env.write("p.yaml", &BASE.replace("attempts: 2", "attempts: 3"));
    let env = Test::in_env(env).args(&["diff", "--git", "HEAD", "--", "p.yaml"]).status(1).stdout(concat!(
            "warning: `restore`: retry attempts grew from 2 to 3\n",
            "~ step restore: retry: {\"attempts\":2,\"delay\":\"5s\",\"backoff\":\"fixed\",\"max_delay\":null,\"until\":null} -> {\"attempts\":3,\"delay\":\"5s\",\"backoff\":\"fixed\",\"max_delay\":null,\"until\":null}\n",
        )).run();
    Test::in_env(env)
        .args(&["diff", "--git", "nope", "--", "p.yaml"])
        .status(2)
        .stderr("error: git show nope:p.yaml: fatal: invalid object name 'nope'.\n")
        .run();
}
