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
