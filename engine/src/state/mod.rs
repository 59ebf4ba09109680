//! Run state on disk: everything that happens in a run is an [`Event`]; the state of a run
//! is the fold of its journal ([`RunState`]). The file store keeps, per run, the playbook
//! as run, its inputs (secrets redacted), an append-only journal and a compacted snapshot,
//! with a lock so only one process drives a run. This room decides nothing about what runs.

mod event;
mod file;
mod pg;
mod run_state;
mod store;

pub use event::{Event, EventKind, RunStatus, SkipCause, StepStatus};
pub use file::{
    FileStore, JOURNAL_VERSION, Journal, LockHolder, RunDir, RunMeta, RunSummary, StateError, hostname as file_hostname,
};
pub use pg::{PgStore, migrate_from};
pub use run_state::{Liveness, RunState, StepProcess, StepState, leader_start};
pub use store::{EventLog, HeldRun, Store};

/// Every record a store writes passes the process's redactor here, whatever the dispatcher
/// did before: the write path is the last boundary before disk or the database.
pub fn redacted<T: serde::Serialize + serde::de::DeserializeOwned + Clone>(x: &T) -> std::borrow::Cow<'_, T> {
    let r = crate::template::redact::global();
    if r.is_empty() { std::borrow::Cow::Borrowed(x) } else { std::borrow::Cow::Owned(r.redact_record(x.clone())) }
}
