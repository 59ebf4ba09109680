//! The schema, the shipped playbooks and examples, and the reviewer views.

use crate::support::{Env, Test, repo_root};

#[test]
fn committed_schema_is_current() {
    let env = Env::new();
    let r = env.run(&["schema"]);
    assert_eq!(r.code, 0);
    let committed = std::fs::read_to_string(repo_root().join("schemas/playbook.schema.json"))
        .expect("schemas/playbook.schema.json");
    assert!(
        committed.trim_end() == r.stdout.trim_end(),
        "schemas/playbook.schema.json is stale: run `cargo run -q -- schema > schemas/playbook.schema.json`"
    );
}

fn shipped_playbooks() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for dir in ["playbooks", "examples"] {
        if let Ok(entries) = std::fs::read_dir(repo_root().join(dir)) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    files
}

#[test]
fn shipped_playbooks_validate_and_match_the_schema() {
    let files = shipped_playbooks();
    assert!(!files.is_empty());
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("schemas/playbook.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let env = Env::new();
    for f in &files {
        let r = env.run(&["validate", f.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}: {}", f.display(), r.all());
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.starts_with("# yaml-language-server: $schema="), "{} lacks the schema line", f.display());
        let limits = runbook::playbook::node::Limits { max_depth: 64, max_nodes: 400_000, max_bytes: 32 << 20 };
        let doc = runbook::playbook::node::parse(&text, limits).unwrap().to_json();
        let errors: Vec<String> =
            validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{} does not match the schema: {errors:?}", f.display());
    }
    // And the schema does reject what the loader rejects.
    let bad = serde_json::json!({"apiVersion": "runbook/v1", "name": "x", "steps": [{"id": "a", "type": "wait", "with": {"duration": "0s", "extra": 1}}]});
    assert!(!validator.is_valid(&bad));
}

#[test]
fn graph_plan_and_help() {
    let env = Env::new();
    env.write(
        "p.yaml",
        "apiVersion: runbook/v1\nname: g\nsteps:\n  - id: a\n    type: wait\n    with: { duration: 0s }\n  - id: b\n    type: approval\n    needs: [a]\n    with: { message: ok? }\n",
    );
    let r = env.run(&["graph", "p.yaml"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout, "flowchart TD\n  a[\"a (wait)\"]\n  b[\"✋ b (approval)\"]\n  a --> b\n");
    let env = Test::in_env(env)
        .args(&["graph", "p.yaml", "--format", "dot"])
        .stdout(concat!(
            "digraph \"g\" {\n",
            "  rankdir=TB;\n",
            "  node [shape=box];\n",
            "  \"a\" [label=\"a (wait)\"];\n",
            "  \"b\" [label=\"✋ b (approval)\"];\n",
            "  \"a\" -> \"b\";\n",
            "}\n",
        ))
        .run();
    let r = env.run(&["graph", "p.yaml", "--output", "json"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap(),
        serde_json::json!({
            "playbook": "g",
            "steps": [
                { "id": "a", "type": "wait", "needs": [], "trigger": "success" },
                { "id": "b", "type": "approval", "needs": ["a"], "trigger": "success" }
            ],
            "levels": [["a"], ["b"]]
        })
    );
    let r = env.run(&["plan", "p.yaml", "--output", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(plan["levels"][1][0]["plan"], "ask for approval: ok?");
    // The help text is clap's, wrapped to the terminal; only the exit-code section is ours.
    let r = env.run(&["--help"]);
    assert!(r.stdout.contains("Exit codes: 0 success"), "{}", r.stdout);
    let r = env.run(&["exec"]);
    assert_eq!(r.code, 2);
    Test::in_env(env).args(&["report", "x"]).status(2).stderr("error: no run `x` in [TMP]/.runbook/runs\n").run();
}

#[test]
fn shipped_playbooks_dry_run_without_credentials() {
    for f in shipped_playbooks() {
        let env = Env::new();
        let mut cmd = env.command(&["exec", f.to_str().unwrap(), "--dry-run"]);
        for secret in ["DATABASE_URL", "SUPABASE_ACCESS_TOKEN", "SCRATCH_DATABASE_URL", "SLACK_WEBHOOK"] {
            cmd.env_remove(secret);
        }
        let r = crate::support::finish(cmd.output().unwrap());
        assert_eq!(r.code, 0, "{}: {}", f.display(), r.all());
        // One loop over every shipped playbook, each with its own plan: the header and the
        // unset-secret warning are what all of them share.
        assert!(r.stdout.contains("(dry run: nothing is changed)"), "{}", r.stdout);
        assert!(!env.path(".runbook").exists(), "{}: a dry run wrote state", f.display());
        let text = std::fs::read_to_string(&f).unwrap();
        if text.contains("secrets: [DATABASE_URL") {
            assert!(
                r.stdout.contains("warning: secret $DATABASE_URL is not set (a real run would need it)"),
                "{}",
                r.stdout
            );
        }
    }
}

#[test]
fn docs_playbooks_md_is_current() {
    let root = repo_root();
    let out = std::process::Command::new("bash")
        .arg(root.join("docs/playbooks.sh"))
        .env("RUNBOOK", crate::support::bin())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let committed = std::fs::read_to_string(root.join("docs/playbooks.md")).unwrap();
    assert!(
        committed == String::from_utf8_lossy(&out.stdout),
        "docs/playbooks.md is stale: run `bash docs/playbooks.sh > docs/playbooks.md`"
    );
}
