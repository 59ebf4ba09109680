//! Running a playbook. The dispatcher is the only owner of run state: it decides what is
//! ready (needs, triggers, `when`), renders parameters, starts executors, handles retries,
//! timeouts, approvals and Ctrl-C, and turns everything into events. Each event is redacted
//! once, then journaled and handed to the reporter. Executors only execute.

mod dispatcher;
pub mod groups;
pub mod guards;
mod prepare;
pub mod resume;

pub use dispatcher::{ExecOptions, Outcome, Sink, run};

/// Why a run could not be driven (not why it failed: a failed step is an outcome). The
/// state kinds keep their own meaning; the rest is the process's, never the store's.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    #[error("cannot watch for {signal}: {source}")]
    Signal { signal: &'static str, source: std::io::Error },
}
pub use prepare::{Prepared, new_run_id, prepare_context, resume_reset};
