//! Approvals as the command line answers them: flags first, then a prompt on a TTY,
//! else the run pauses.

use crate::report::Terminal;
use crate::steps::{ApprovalGate, Decision};
use futures_util::future::BoxFuture;
use std::collections::HashSet;
use std::io::{BufRead, Write};

pub struct CliGate {
    yes: bool,
    approve: HashSet<String>,
    interactive: bool,
    terminal: Terminal,
    /// One prompt at a time, even when parallel branches reach approvals together; it holds
    /// the operator's typed lines.
    prompt: tokio::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
}

impl CliGate {
    pub fn new(yes: bool, approve: &[String], interactive: bool, terminal: Terminal) -> Self {
        CliGate {
            yes,
            approve: approve.iter().cloned().collect(),
            interactive,
            terminal,
            prompt: tokio::sync::Mutex::new(None),
        }
    }
}

/// Reads the operator's lines on a thread of its own, for the whole session: a read of
/// stdin cannot be cancelled, so one reader serves every prompt (a prompt dropped by a
/// timeout or Ctrl-C leaves no reader behind to swallow the next answer). A plain thread,
/// not spawn_blocking: the runtime must be able to shut down while it waits for a line.
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let _ = std::thread::Builder::new().name("runbook-stdin".into()).spawn(move || {
        let stdin = std::io::stdin();
        loop {
            let mut line = String::new();
            match stdin.lock().read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Closes the prompt on every way out, a cancelled future included.
struct Open<'a>(&'a Terminal);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.close_prompt();
    }
}

/// Who is at the keyboard, as recorded with approvals.
pub fn operator() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| user_of_uid());
    format!("{user}@{}", crate::state::file_hostname())
}

/// The login name of this process's user from /etc/passwd (services and CI often set no $USER).
fn user_of_uid() -> String {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() }.to_string();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid).then(|| f[0].to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// Asks a yes/no question on the terminal.
pub fn confirm(question: &str) -> bool {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

impl ApprovalGate for CliGate {
    fn decide<'a>(&'a self, step_id: &'a str, message: &'a str) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            if self.yes {
                return Decision::Approved { by: format!("{} (--yes)", operator()) };
            }
            if self.approve.contains(step_id) {
                return Decision::Approved { by: format!("{} (--approve {step_id})", operator()) };
            }
            if !self.interactive {
                return Decision::Pending;
            }
            let mut lines = self.prompt.lock().await;
            let lines = lines.get_or_insert_with(stdin_lines);
            // What was typed while no question was open answers nothing.
            while lines.try_recv().is_ok() {}
            // The prompt leaves the engine like any record: through the redactor.
            let message = crate::template::redact::text(message);
            let question = format!("\n✋ approval `{step_id}`: {message}\n   approve? [y/N] ");
            self.terminal.open_prompt(&question);
            let _open = Open(&self.terminal);
            // Awaited, not blocked on: the runtime goes on with everything else meanwhile.
            let answer = lines.recv().await.unwrap_or_default();
            let yes = matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes");
            if yes { Decision::Approved { by: operator() } } else { Decision::Denied { by: operator() } }
        })
    }
}
