//! The terminal view, under a real pseudo-terminal (`script` from util-linux).

use crate::support::{Env, finish, status, step};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const PLAYBOOK: &str = concat!(
    "apiVersion: runbook/v1\nname: tty\nsteps:\n",
    "  - id: slow\n    type: shell\n    with: { script: \"sleep 0.5\" }\n",
    "  - id: go\n    type: approval\n    needs: [slow]\n    with: { message: \"Proceed with restore?\" }\n",
    "  - id: after\n    type: shell\n    needs: [go]\n    with: { command: [echo, ok] }\n",
);

/// Runs `exec` on a TTY and answers the approval prompt with `answer`.
fn exec_on_tty(env: &Env, run_id: &str, answer: &str) -> (i32, String) {
    env.write("tty.yaml", PLAYBOOK);
    let cmd = format!("{} exec tty.yaml --run-id {run_id}", crate::support::bin());
    let mut child = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .current_dir(env.dir.path())
        .env("RUNBOOK_STATE_DIR", env.path(".runbook"))
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`script` (util-linux) runs");
    // Answer once the prompt is up (the first step takes 0.5 s).
    std::thread::sleep(Duration::from_millis(1500));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
    drop(stdin);
    let out = finish(child.wait_with_output().unwrap());
    (out.code, out.stdout.replace('\r', "\n"))
}

#[test]
fn tty_shows_progress_and_asks_for_approval() {
    let env = Env::new();
    let (code, screen) = exec_on_tty(&env, "yes1", "y");
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("✋ approval `go`: Proceed with restore?"), "{screen}");
    assert!(screen.contains("approve? [y/N]"), "{screen}");
    assert!(screen.contains("/3 steps"), "no progress bar drawn:\n{screen}");
    assert!(screen.contains("✔ after succeeded"), "{screen}");
    let show = env.show("yes1");
    let by = step(&show, "go")["outputs"]["approved_by"].as_str().unwrap().to_owned();
    assert!(!by.contains("--approve") && !by.starts_with("unknown"), "{by}");
}

#[test]
fn tty_denial_fails_the_step_and_skips_what_follows() {
    let env = Env::new();
    let (code, screen) = exec_on_tty(&env, "no1", "n");
    assert_eq!(code, 1, "{screen}");
    let show = env.show("no1");
    assert_eq!(status(&show, "go"), "failed");
    assert!(step(&show, "go")["error"].as_str().unwrap().starts_with("approval denied by "));
    assert_eq!(status(&show, "after"), "skipped");
}

/// On a terminal, `validate` shows each problem as a snippet with a caret, in colour unless
/// NO_COLOR is set.
#[test]
fn tty_validate_shows_snippets() {
    let env = Env::new();
    env.write("bad.yaml", "apiVersion: runbook/v1\nname: t\nsteps:\n  - id: a\n    type: shel\n");
    let on_tty = |no_color: bool| {
        let mut cmd = Command::new("script");
        cmd.args(["-qfec", &format!("{} validate bad.yaml", crate::support::bin()), "/dev/null"])
            .current_dir(env.dir.path())
            .env("TERM", "xterm")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        let out = finish(cmd.output().expect("`script` (util-linux) runs"));
        (out.code, out.stdout.replace("\r\n", "\n"))
    };
    let (code, screen) = on_tty(true);
    assert_eq!(code, 2, "{screen}");
    assert!(
        screen.starts_with(
            "error: step `a`: unknown step type `shel` (did you mean `shell`?)\n --> bad.yaml:5:11\n  |\n5 |     type: shel\n  |           ^^^^\n"
        ),
        "{screen}"
    );
    let (_, coloured) = on_tty(false);
    assert!(coloured.contains("\u{1b}["), "no colour on a terminal: {coloured}");
}
