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
pub use prepare::{Prepared, new_run_id, prepare_context, resume_reset};
