//! Approvals as the command line answers them: flags first, then a prompt on a TTY,
//! else the run pauses.

use crate::steps::{ApprovalGate, Decision};
use futures_util::future::BoxFuture;
use indicatif::MultiProgress;
use std::collections::HashSet;
use std::io::{BufRead, Write};

pub struct CliGate {
    yes: bool,
    approve: HashSet<String>,
    interactive: bool,
    multi: MultiProgress,
    /// One prompt at a time, even when parallel branches reach approvals together.
    prompt: tokio::sync::Mutex<()>,
}

impl CliGate {
    pub fn new(yes: bool, approve: &[String], interactive: bool, multi: MultiProgress) -> Self {
        CliGate {
            yes,
            approve: approve.iter().cloned().collect(),
            interactive,
            multi,
            prompt: tokio::sync::Mutex::new(()),
        }
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
            let _one = self.prompt.lock().await;
            let multi = self.multi.clone();
            // The prompt leaves the engine like any record: through the redactor.
            let message = crate::template::redact::text(message);
            let question = format!("\n✋ approval `{step_id}`: {message}\n   approve? [y/N] ");
            let yes = tokio::task::spawn_blocking(move || multi.suspend(|| confirm(&question))).await.unwrap_or(false);
            if yes { Decision::Approved { by: operator() } } else { Decision::Denied { by: operator() } }
        })
    }
}
