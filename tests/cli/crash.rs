//! Crashes, Ctrl-C, locks, changed playbooks and secrets.

use crate::support::{Env, finish, status, wait_for};
use std::process::Stdio;
use std::time::Duration;

const PLAYBOOK: &str = concat!(
    "apiVersion: runbook/v1\nname: crashy\n",
    "secrets: [CRASH_TOKEN]\n",
    "inputs:\n  db_password: { type: string, secret: true, required: true }\n",
    "steps:\n",
    "  - id: first\n    type: shell\n    with: { script: \"echo run >> first.log; echo token=$CRASH_TOKEN pw={{ inputs.db_password }}\" }\n",
    "  - id: destroy\n    type: shell\n    needs: [first]\n    with: { script: \"echo start >> destroy.log; touch destroy.started; sleep 3; echo end >> destroy.log\" }\n",
    "  - id: last\n    type: shell\n    needs: [destroy]\n    with: { command: [echo, done] }\n",
);

fn start(env: &Env) -> std::process::Child {
    env.write("p.yaml", PLAYBOOK);
    env.command(&["exec", "p.yaml", "--run-id", "c1", "-i", "db_password=hunter2hunter2"])
        .env("CRASH_TOKEN", "tok-5ecret-value")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start runbook")
}

#[test]
fn sigkill_then_resume_never_reruns_silently() {
    let env = Env::new();
    let mut child = start(&env);
    wait_for(&env, "destroy.started");
    child.kill().expect("SIGKILL");
    child.wait().unwrap();

    let show = env.show("c1");
    assert_eq!(show["status"], "interrupted");
    assert_eq!(status(&show, "first"), "succeeded");
    assert_eq!(status(&show, "destroy"), "interrupted");

    // Non-interactive resume without the flag: exit 3, says why, runs nothing.
    let r = env.run_env(&["resume", "c1", "-i", "db_password=hunter2hunter2"], &[("CRASH_TOKEN", "tok-5ecret-value")]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stderr.contains("destroy were interrupted while running and are not idempotent"), "{}", r.stderr);
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(env.read("destroy.log").matches("start").count(), 1);

    // Secrets are asked for again, never read from disk.
    let r = env.run(&["resume", "c1", "--rerun-interrupted"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("secret inputs are never stored; give them again: -i db_password=..."), "{}", r.stderr);

    let r = env.run_env(
        &["resume", "c1", "--rerun-interrupted", "-i", "db_password=hunter2hunter2"],
        &[("CRASH_TOKEN", "tok-5ecret-value")],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("c1");
    assert_eq!(show["status"], "succeeded");
    assert_eq!(env.read("first.log").lines().count(), 1, "a completed step was run again");
    assert_eq!(env.read("destroy.log").matches("start").count(), 2);
}

#[test]
fn secrets_never_reach_the_state_dir_or_output() {
    let env = Env::new();
    env.write("p.yaml", PLAYBOOK);
    env.write("fast.yaml", &PLAYBOOK.replace("sleep 3; ", "").replace("name: crashy", "name: fast"));
    let r = env.run_env(
        &["exec", "fast.yaml", "--run-id", "s1", "-i", "db_password=hunter2hunter2", "--output", "json"],
        &[("CRASH_TOKEN", "tok-5ecret-value")],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains("hunter2hunter2") && !r.all().contains("tok-5ecret-value"), "{}", r.all());
    assert!(r.stdout.contains("token=*** pw=***"), "{}", r.stdout);
    let mut files = 0;
    for entry in crate::support::walk(&env.path(".runbook")) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("hunter2hunter2"), "secret input in {}", entry.display());
        assert!(!text.contains("tok-5ecret-value"), "secret env var in {}", entry.display());
        files += 1;
    }
    assert!(files >= 5, "expected the run's files, found {files}");
    let show = env.run(&["show", "s1"]);
    assert!(!show.stdout.contains("hunter2hunter2"));
}

#[test]
fn ctrl_c_checkpoints_and_exits_130() {
    let env = Env::new();
    env.write("p.yaml", PLAYBOOK);
    let child = env
        .command(&["exec", "p.yaml", "--run-id", "c1", "-i", "db_password=hunter2hunter2"])
        .env("CRASH_TOKEN", "tok-5ecret-value")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start runbook");
    wait_for(&env, "destroy.started");
    // SAFETY: sending SIGINT to our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = finish(child.wait_with_output().unwrap());
    assert_eq!(out.code, 130, "{}", out.all());
    let show = env.show("c1");
    assert_eq!(show["status"], "interrupted");
    assert_eq!(status(&show, "destroy"), "interrupted");
    assert_eq!(status(&show, "last"), "pending");
    // The step's process group was killed: it never finishes its work.
    std::thread::sleep(Duration::from_millis(3200));
    assert!(!env.read("destroy.log").contains("end"));
    // The last line names a command that works: the stopped step is not idempotent.
    assert_eq!(
        out.stdout.lines().last(),
        Some(
            "run c1 interrupted: interrupted; destroy stopped mid-way and may have done part of the work: check, then continue with `runbook resume c1 --rerun-interrupted`"
        ),
        "{}",
        out.all()
    );
    let r = env.run_env(
        &["resume", "c1", "--rerun-interrupted", "-i", "db_password=hunter2hunter2"],
        &[("CRASH_TOKEN", "tok-5ecret-value")],
    );
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn one_process_per_run_and_changed_playbooks_are_refused() {
    let env = Env::new();
    let mut child = start(&env);
    wait_for(&env, "destroy.started");
    let r = env.run(&["resume", "c1", "-i", "db_password=hunter2hunter2"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("error: run `c1` is held by process "), "{}", r.stderr);
    // A second exec of the same playbook warns that a run of it is active.
    env.write("p.yaml", PLAYBOOK);
    let r = env.run(&["exec", "p.yaml", "--dry-run", "-i", "db_password=x"]);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("warning: run c1 of playbook crashy is still active (process "), "{}", r.stderr);
    child.kill().unwrap();
    child.wait().unwrap();

    env.write("p.yaml", &PLAYBOOK.replace("[echo, done]", "[echo, changed]"));
    let r = env.run(&["resume", "c1", "-i", "db_password=hunter2hunter2", "--rerun-interrupted"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("changed since run c1 started; review the change, then resume with --allow-changed"),
        "{}",
        r.stderr
    );
    // `destroy`'s own process outlived the kill -9 and may still run: re-run it beside it
    // knowingly (without the flag, resume refuses while it runs).
    let r = env.run_env(
        &[
            "resume",
            "c1",
            "-i",
            "db_password=hunter2hunter2",
            "--rerun-interrupted",
            "--allow-changed",
            "--even-if-alive",
        ],
        &[("CRASH_TOKEN", "tok-5ecret-value")],
    );
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn a_torn_last_journal_line_is_ignored() {
    let env = Env::new();
    env.write(
        "p.yaml",
        "apiVersion: runbook/v1\nname: t\nsteps:\n  - id: a\n    type: shell\n    with: { command: [echo, hi] }\n",
    );
    assert_eq!(env.run(&["exec", "p.yaml", "--run-id", "t1"]).code, 0);
    let dir = env.path(".runbook/runs/t1");
    std::fs::remove_file(dir.join("state.json")).unwrap();
    let mut j = std::fs::OpenOptions::new().append(true).open(dir.join("journal.jsonl")).unwrap();
    std::io::Write::write_all(&mut j, b"{\"seq\":99,\"at\":\"2026").unwrap();
    let show = env.show("t1");
    assert_eq!(show["status"], "succeeded");
    // Resuming cuts the torn line before appending, so the journal stays readable.
    let r = env.run(&["resume", "t1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert!(!journal.contains("\"seq\":99"), "{journal}");
    assert!(journal.lines().skip(1).all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    // A journal from a future format is refused with a clear message.
    let text =
        std::fs::read_to_string(dir.join("journal.jsonl")).unwrap().replacen("\"version\":1", "\"version\":9", 1);
    std::fs::write(dir.join("journal.jsonl"), text).unwrap();
    let r = env.run(&["show", "t1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("journal format version 9 is not supported by this runbook"), "{}", r.stderr);
}
