//! Runtime faults a run must survive or refuse cleanly: a reader that goes away, a crash
//! while the run is being created, a prompt left open, a store that stops answering.

use crate::support::{Env, bin, status};
use std::io::Read;
use std::process::{Command, Stdio};

const HEAD: &str = "apiVersion: runbook/v1\nname: t\n";

/// `runbook exec x.yaml | head -1`: the reader leaves after the first line; the run must go
/// on to the end (exit 0, every step succeeded in the journal), not die of SIGPIPE.
#[test]
fn exec_survives_a_reader_that_closes_early() {
    let env = Env::new();
    let mut body = String::from(HEAD);
    body.push_str("steps:\n");
    for i in 0..20 {
        // The steps take a moment so the reader is surely gone before most lines are written.
        let needs = if i == 0 { String::new() } else { format!("\n    needs: [s{}]", i - 1) };
        body.push_str(&format!(
            "  - id: s{i}\n    type: shell{needs}\n    with: {{ script: \"sleep 0.02; echo {i}\" }}\n"
        ));
    }
    env.write("p.yaml", &body);
    let mut child = env
        .command(&["exec", "p.yaml", "--run-id", "piped"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runbook starts");
    // Read one line, then close our end like `head -1` does.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&first), "run piped");
    assert_eq!(
        out.status.code(),
        Some(0),
        "killed or failed: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let show = env.show("piped");
    assert_eq!(show["status"], "succeeded", "{show}");
    for i in 0..20 {
        assert_eq!(status(&show, &format!("s{i}")), "succeeded", "{show}");
    }
}

/// The JSON event stream too: a consumer that stops reading does not stop the run.
#[test]
fn json_output_survives_a_reader_that_closes_early() {
    let env = Env::new();
    // Enough events to overflow the output buffer and the pipe many times over after the
    // reader has gone, so writes surely meet a closed pipe.
    let mut body = format!("{HEAD}steps:\n  - id: first\n    type: wait\n    with: {{ duration: 200ms }}\n");
    for i in 0..300 {
        body.push_str(&format!("  - id: w{i}\n    type: wait\n    needs: [first]\n    with: {{ duration: 0s }}\n"));
    }
    env.write("p.yaml", &body);
    let cmd = format!("{} exec p.yaml --run-id pj --output json | head -c 10 >/dev/null", bin());
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", &cmd])
        .current_dir(env.dir.path())
        .env("RUNBOOK_STATE_DIR", env.path(".runbook"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let show = env.show("pj");
    assert_eq!(show["status"], "succeeded", "{show}");
    assert_eq!(status(&show, "w299"), "succeeded", "{show}");
}

/// kill -9 at every moment of a run's first milliseconds: whatever `runs` lists afterwards
/// is a whole run that `show` and `resume` accept, and the run id can be used again when
/// nothing was listed.
#[test]
fn a_kill_during_run_creation_leaves_a_whole_run_or_none() {
    let env = Env::new();
    env.write("p.yaml", &format!("{HEAD}steps:\n  - id: a\n    type: wait\n    with: {{ duration: 0s }}\n"));
    let (mut listed, mut none) = (0, 0);
    for i in 0..40u64 {
        let id = format!("k{i}");
        let mut child = env.command(&["exec", "p.yaml", "--run-id", &id]).stdout(Stdio::null()).spawn().unwrap();
        // From "not started yet" to "done": the creation window is somewhere in between.
        std::thread::sleep(std::time::Duration::from_micros(2500 * i));
        let _ = child.kill();
        let _ = child.wait();
        let runs = env.run(&["runs", "--output", "json"]);
        let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
        if runs.as_array().unwrap().iter().any(|r| r["run_id"] == id.as_str()) {
            listed += 1;
            let show = env.run(&["show", &id]);
            assert_eq!(show.code, 0, "listed but not shown: {}", show.all());
            let r = env.run(&["resume", &id, "--rerun-interrupted"]);
            assert!(r.code == 0 || r.all().contains("already finished"), "listed but not resumable: {}", r.all());
        } else {
            none += 1;
            let r = env.run(&["exec", "p.yaml", "--run-id", &id]);
            assert_eq!(r.code, 0, "run id not reusable after a kill before creation: {}", r.all());
        }
    }
    // No hidden folder of a dead creation is left once later runs swept them.
    let left: Vec<_> = std::fs::read_dir(env.path(".runbook/runs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.len() <= 1, "abandoned creations not swept: {left:?}");
    assert!(listed > 0 && none > 0, "the kills missed the window: {listed} listed, {none} not");
}

/// What a crash before the first event leaves (a hidden folder without a journal) is not a
/// run: `runs` does not list it, `show` does not find it, and `exec` sweeps it away.
#[test]
fn a_half_created_run_is_not_a_run() {
    let env = Env::new();
    env.write("p.yaml", &format!("{HEAD}steps:\n  - id: a\n    type: wait\n    with: {{ duration: 0s }}\n"));
    let half = env.path(".runbook/runs/.creating-r1-4194303");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(half.join("meta.json"), "{}").unwrap();
    // Its creator took the lock and died: the lock file is there, nobody holds it.
    std::fs::write(half.join("lock"), "").unwrap();
    // A creation that has not taken its lock yet (this instant) is left alone.
    let fresh = env.path(".runbook/runs/.creating-r2-4194302");
    std::fs::create_dir_all(&fresh).unwrap();
    assert_eq!(env.run(&["runs"]).stdout.matches("r1").count(), 0);
    let r = env.run(&["show", ".creating-r1-4194303"]);
    assert_eq!(r.code, 2, "{}", r.all());
    let r = env.run(&["exec", "p.yaml", "--run-id", "r1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!half.exists(), "the abandoned creation was not swept");
    assert!(fresh.exists(), "a creation in progress was swept");
    assert_eq!(env.show("r1")["status"], "succeeded");
}

/// The team store stops answering while a step runs: the heartbeat retries, and before the
/// lease could expire (when another operator could take the run over and start the step
/// again) it kills the step's process group and says so. Proven against the lease the
/// store itself recorded: the step was dead before `lease_until`.
#[test]
fn a_lost_team_store_stops_the_step_before_the_lease_expires() {
    use crate::pg_cluster::{Cluster, pg};
    let c = Cluster::start();
    let env = Env::new();
    env.write(
        "p.yaml",
        &format!(
            "{HEAD}steps:\n  - id: a\n    type: shell\n    with: {{ script: \"echo $$ > a.pid; exec sleep 60\" }}\n"
        ),
    );
    let url = c.url();
    let child = env
        .command(&["--state", &url, "exec", "p.yaml", "--run-id", "hb"])
        .env("RUNBOOK_LEASE_TTL", "3s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_for(&env, "a.pid");
    let pid: i32 = loop {
        // The file may exist a moment before the shell has written it.
        if let Ok(p) = env.read("a.pid").trim().parse() {
            break p;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let data = c.path("data");
    let ctl = |what: &[&str]| {
        let mut cmd = pg("pg_ctl");
        cmd.arg("-D").arg(&data).arg("-l").arg(c.path("log")).args(what);
        assert!(cmd.status().unwrap().success(), "pg_ctl {what:?}");
    };
    ctl(&["-m", "immediate", "-w", "stop"]);
    // Dead means gone or a zombie (killed, not yet reaped).
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let died_at = jiff::Timestamp::now();
    assert!(!alive(), "the step still runs 20 s after the store went away");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lost the lease of run `hb`: the team store did not renew the lease for "), "{stderr}");
    assert!(
        stderr.contains(&format!("stopped step(s) `a` (process group {pid}) so that no one runs them twice")),
        "{stderr}"
    );
    // The lease as the store last recorded it: the step was dead before it ran out.
    ctl(&["-w", "start"]);
    let until = c.psql(
        "select to_char(lease_until at time zone 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') from runbook_runs where run_id = 'hb'",
    );
    let until: jiff::Timestamp = until.trim().parse().unwrap();
    assert!(died_at < until, "the step was stopped at {died_at}, after the lease ran out at {until}");
    // Once the lease is over the run reads as interrupted, its step as interrupted.
    std::thread::sleep(
        until.duration_since(jiff::Timestamp::now()).unsigned_abs() + std::time::Duration::from_millis(200),
    );
    let show = env.run(&["--state", &url, "show", "hb", "--output", "json"]);
    let show: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(status(&show, "a"), "interrupted", "{show}");
}

/// An open approval prompt on a TTY does not freeze the run: a parallel branch goes on to
/// its end (the step after it starts, which only the dispatcher can do) while the question
/// waits; then the answer is taken as usual.
#[test]
fn a_parallel_branch_finishes_while_the_prompt_waits() {
    use std::io::Write;
    let env = Env::new();
    env.write(
        "tty.yaml",
        concat!(
            "apiVersion: runbook/v1\nname: tty\nsteps:\n",
            "  - id: go\n    type: approval\n    with: { message: \"Proceed?\" }\n",
            "  - id: side\n    type: wait\n    with: { duration: 1s }\n",
            "  - id: side_after\n    type: wait\n    needs: [side]\n    with: { duration: 0s }\n",
            // Started only after side_after's end was reported: its line is on screen by then.
            "  - id: side_mark\n    type: shell\n    needs: [side_after]\n    with: { command: [touch, side.done] }\n",
            "  - id: after\n    type: shell\n    needs: [go]\n    with: { command: [echo, ok] }\n",
        ),
    );
    let cmd = format!("{} exec tty.yaml --run-id p1", bin());
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
    // Nobody answers yet: the branch must get to its end on its own.
    crate::support::wait_for(&env, "side.done");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"y\n").unwrap();
    drop(stdin);
    let out = crate::support::finish(child.wait_with_output().unwrap());
    let screen = out.stdout.replace('\r', "\n");
    assert_eq!(out.code, 0, "{screen}");
    assert!(screen.contains("✋ approval `go`: Proceed?"), "{screen}");
    // The branch's lines were printed while the question was open, and it was asked again.
    let asked = screen.find("approve? [y/N]").unwrap();
    let side = screen.find("✔ side_after succeeded").expect("the branch's line is on screen");
    assert!(side > asked && screen[side..].contains("approve? [y/N]"), "{screen}");
    let show = env.show("p1");
    assert_eq!(status(&show, "side_after"), "succeeded");
    assert_eq!(status(&show, "after"), "succeeded");
    let t =
        |id: &str, f: &str| crate::support::step(&show, id)[f].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    assert!(t("side_after", "finished_at") < t("go", "finished_at"), "{show}");
}

/// A holder that has taken the lock but not yet written its name (the race of two starts)
/// is named from the kernel's lock table, not as "process 0 on an unknown host".
#[test]
fn a_lock_whose_holder_wrote_nothing_is_named_by_the_kernel() {
    let env = Env::new();
    env.write("p.yaml", &format!("{HEAD}steps:\n  - id: a\n    type: wait\n    with: {{ duration: 0s }}\n"));
    assert_eq!(env.run(&["exec", "p.yaml", "--run-id", "r1"]).code, 0);
    let lock = env.path(".runbook/runs/r1/lock");
    std::fs::write(&lock, "").unwrap();
    // util-linux flock(1) takes flock(2) on the file and holds it while `sleep` runs.
    use std::os::unix::process::CommandExt;
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "10"])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flock(1) runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let r = loop {
        let r = env.run(&["resume", "r1"]);
        if r.code == 2 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // SAFETY: kill(2) of the group we created for flock and its sleep.
    unsafe { libc::kill(-(holder.id() as i32), libc::SIGKILL) };
    let _ = holder.wait();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains(&format!(
            "error: run `r1` is held by process {} on {} (since unknown)",
            holder.id(),
            host.trim()
        )),
        "{}",
        r.stderr
    );
}

/// `exec --run-id` of a run that exists is a refusal (exit 2), before anything runs.
#[test]
fn exec_with_an_existing_run_id_is_a_refusal() {
    let env = Env::new();
    env.write("p.yaml", &format!("{HEAD}steps:\n  - id: a\n    type: shell\n    with: {{ command: [touch, ran] }}\n"));
    assert_eq!(env.run(&["exec", "p.yaml", "--run-id", "r1"]).code, 0);
    std::fs::remove_file(env.path("ran")).unwrap();
    let r = env.run(&["exec", "p.yaml", "--run-id", "r1"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert_eq!(r.stdout, "");
    let runs = env.path(".runbook/runs");
    assert_eq!(
        r.stderr,
        format!("error: run `r1` already exists in {}; choose another --run-id or `resume` it\n", runs.display())
    );
    assert!(!env.path("ran").exists(), "a step ran under a refused run id");
}

/// Run ids become file names: one too long is refused at once, with the limit, instead of
/// failing late with "File name too long"; so is a playbook name that would make one.
#[test]
fn long_run_ids_and_playbook_names_are_refused_early() {
    let env = Env::new();
    env.write("p.yaml", &format!("{HEAD}steps:\n  - id: a\n    type: shell\n    with: {{ command: [touch, ran] }}\n"));
    let long = "r".repeat(200);
    let r = env.run(&["exec", "p.yaml", "--run-id", &long]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr, "error: --run-id is 200 characters long; a run id has at most 128\n");
    let name = "n".repeat(150);
    env.write("long.yaml", &format!("apiVersion: runbook/v1\nname: {name}\nsteps:\n  - id: a\n    type: shell\n    with: {{ command: [touch, ran] }}\n"));
    let r = env.run(&["exec", "long.yaml"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert_eq!(
        r.stderr,
        format!(
            "error: the run id made from playbook name `{name}` would be 171 characters long (at most 128); give a shorter one with --run-id\n"
        )
    );
    assert!(!env.path("ran").exists());
    // With a run id of its own, the long name is fine.
    let r = env.run(&["exec", "long.yaml", "--run-id", "ok"]);
    assert_eq!(r.code, 0, "{}", r.all());
}

/// `resume -i name=v` over a stored input is journaled (`input_changed`) and shown.
#[test]
fn resume_with_a_changed_input_journals_the_change() {
    let env = Env::new();
    env.write(
        "p.yaml",
        &format!(
            "{HEAD}inputs:\n  region: {{ type: string }}\nsteps:\n  - id: go\n    type: approval\n    with: {{ message: ok? }}\n  - id: use\n    type: shell\n    needs: [go]\n    with: {{ command: [touch, \"{{{{ inputs.region }}}}\"] }}\n"
        ),
    );
    assert_eq!(env.run(&["exec", "p.yaml", "--run-id", "r1", "-i", "region=eu"]).code, 3);
    let r = env.run(&["resume", "r1", "--approve", "go", "-i", "region=us"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("input `region` changed: \"eu\" → \"us\""), "{}", r.stdout);
    assert!(env.path("us").exists() && !env.path("eu").exists());
    let show = env.show("r1");
    let w: Vec<&str> = show["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert!(
        w.iter().any(|w| w.starts_with("input `region` changed on resume by ") && w.ends_with(": \"eu\" → \"us\"")),
        "{w:?}"
    );
    let journal = env.read(".runbook/runs/r1/journal.jsonl");
    assert_eq!(journal.matches("\"event\":\"input_changed\"").count(), 1, "{journal}");
}

/// A changed input stays changed for the resumes after it.
#[test]
fn a_changed_input_holds_for_later_resumes() {
    let env = Env::new();
    env.write(
        "p.yaml",
        &format!(
            "{HEAD}inputs:\n  region: {{ type: string }}\nsteps:\n  - id: go\n    type: approval\n    with: {{ message: ok? }}\n  - id: go2\n    type: approval\n    needs: [go]\n    with: {{ message: ok? }}\n  - id: use\n    type: shell\n    needs: [go2]\n    with: {{ command: [touch, \"{{{{ inputs.region }}}}\"] }}\n"
        ),
    );
    assert_eq!(env.run(&["exec", "p.yaml", "--run-id", "r1", "-i", "region=eu"]).code, 3);
    assert_eq!(env.run(&["resume", "r1", "--approve", "go", "-i", "region=us"]).code, 3);
    // No -i this time: the changed value is the run's now.
    let r = env.run(&["resume", "r1", "--approve", "go2"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(env.path("us").exists() && !env.path("eu").exists());
    let journal = env.read(".runbook/runs/r1/journal.jsonl");
    assert_eq!(journal.matches("\"event\":\"input_changed\"").count(), 1, "{journal}");
}

/// A playbook read from /dev/stdin (not a regular file) is resumed from the saved copy.
#[test]
fn a_run_started_from_stdin_is_resumed_from_its_saved_copy() {
    let env = Env::new();
    let p = env.write(
        "p.yaml",
        &format!("{HEAD}steps:\n  - id: go\n    type: approval\n    with: {{ message: ok? }}\n  - id: b\n    type: shell\n    needs: [go]\n    with: {{ command: [touch, b.done] }}\n"),
    );
    let out = env
        .command(&["exec", "/dev/stdin", "--run-id", "s1"])
        .stdin(std::fs::File::open(&p).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let r = env.run(&["resume", "s1", "--approve", "go"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("warning: /dev/stdin is not a regular file; resuming with the copy saved with the run"),
        "{}",
        r.stderr
    );
    assert!(env.path("b.done").exists());
}

/// kill -9 of runbook leaves a shell step's programs running: the journal has their process
/// group, resume says it still runs, and `--rerun-interrupted` refuses to start a second copy
/// beside it unless told with `--even-if-alive`; once it is gone, the re-run goes ahead.
#[test]
fn an_interrupted_step_whose_processes_still_run_is_not_run_twice() {
    let env = Env::new();
    env.write(
        "p.yaml",
        &format!("{HEAD}steps:\n  - id: a\n    type: shell\n    with: {{ script: \"echo $$ >> a.pids; [ -e second ] || exec sleep 60\" }}\n"),
    );
    let mut child = env.command(&["exec", "p.yaml", "--run-id", "k1"]).stdout(Stdio::null()).spawn().unwrap();
    crate::support::wait_for(&env, "a.pids");
    let pid: i32 = loop {
        if let Ok(p) = env.read("a.pids").trim().parse() {
            break p;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    // The event is written just after the program starts: wait for it in the journal.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !env.read(".runbook/runs/k1/journal.jsonl").contains("step_process") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let show = env.show("k1");
    assert_eq!(crate::support::step(&show, "a")["process"]["pgid"], pid, "{show}");
    let r = env.run(&["resume", "k1"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stderr.contains(&format!("step `a`: its process group {pid} still runs")), "{}", r.stderr);
    let r = env.run(&["resume", "k1", "--rerun-interrupted"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains(&format!("error: step `a` is still running (process group {pid}) from before the crash; stop it (kill -- -{pid}) or wait for it, or resume with --even-if-alive to run a second copy beside it")),
        "{}",
        r.stderr
    );
    assert_eq!(env.read("a.pids").lines().count(), 1, "a second copy started");
    // SAFETY: the group the test's run left behind.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::fs::write(env.path("second"), "").unwrap();
    let r = env.run(&["resume", "k1", "--rerun-interrupted"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(env.read("a.pids").lines().count(), 2);
}

/// `--even-if-alive` is the operator's word that a second copy is fine.
#[test]
fn even_if_alive_reruns_beside_the_old_copy() {
    let env = Env::new();
    env.write(
        "p.yaml",
        &format!("{HEAD}steps:\n  - id: a\n    type: shell\n    with: {{ script: \"echo $$ >> a.pids; [ -e second ] || exec sleep 60\" }}\n"),
    );
    let mut child = env.command(&["exec", "p.yaml", "--run-id", "k2"]).stdout(Stdio::null()).spawn().unwrap();
    crate::support::wait_for(&env, "a.pids");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !env.read(".runbook/runs/k2/journal.jsonl").contains("step_process") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let pid: i32 = env.read("a.pids").trim().parse().unwrap();
    std::fs::write(env.path("second"), "").unwrap();
    let r = env.run(&["resume", "k2", "--rerun-interrupted", "--even-if-alive"]);
    // SAFETY: the group the test's run left behind.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains(&format!("warning: step `a` still runs from before (process group {pid}); running it again beside it as asked (--even-if-alive)")), "{}", r.stderr);
    assert_eq!(env.read("a.pids").lines().count(), 2);
}

/// A reader gone before the first line (`runbook exec x.yaml | true`): no panic on the run
/// id line, the run completes.
#[test]
fn exec_survives_a_reader_gone_before_the_first_line() {
    let env = Env::new();
    env.write("p.yaml", &format!("{HEAD}steps:\n  - id: a\n    type: wait\n    with: {{ duration: 100ms }}\n"));
    let cmd = format!("{} exec p.yaml --run-id gone | true", bin());
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", &cmd])
        .current_dir(env.dir.path())
        .env("RUNBOOK_STATE_DIR", env.path(".runbook"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(env.show("gone")["status"], "succeeded");
}

/// The team store: a run id in use is a refusal (exit 2), and the refused run left nothing.
#[test]
fn team_store_refuses_a_run_id_in_use() {
    let c = crate::pg_cluster::Cluster::start();
    let url = c.url();
    let env = Env::new();
    env.write("p.yaml", &format!("{HEAD}steps:\n  - id: a\n    type: wait\n    with: {{ duration: 0s }}\n"));
    assert_eq!(env.run(&["--state", &url, "exec", "p.yaml", "--run-id", "t1"]).code, 0);
    let r = env.run(&["--state", &url, "exec", "p.yaml", "--run-id", "t1"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert_eq!(r.stderr, "error: run `t1` already exists in the team store; choose another --run-id or `resume` it\n");
    // Every run row has its events: none was created without its first one.
    assert_eq!(c.psql("select count(*) from runbook_runs r where not exists (select 1 from runbook_events e where e.run_id = r.run_id)").trim(), "0");
    assert_eq!(
        c.psql("select count(*) from runbook_events where run_id = 't1'").trim(),
        c.psql("select max(seq) from runbook_events where run_id = 't1'").trim()
    );
}
