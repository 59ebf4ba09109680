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

/// The environment variable of the test-only crash hook (docs/semantics.md): the crash
/// matrix in tests/cli/crash_matrix.rs kills the binary after every possible journal write.
pub const ABORT_AFTER_WRITES_VAR: &str = "RUNBOOK_TEST_ABORT_AFTER_WRITES";

/// Where the crash hook stops the process, read once from [`ABORT_AFTER_WRITES_VAR`]:
/// `N` aborts right after the N-th event of this process was written to the store (the
/// event is in the file, as a kill -9 right after that write); `N:unflushed` aborts right
/// after the N-th event went into the process's buffer, so it and everything else not yet
/// handed to the OS since the last scheduler turn are lost, as with a kill -9 at that
/// instant. Unset (the normal case) costs one atomic load per event.
#[derive(Clone, Copy)]
struct AbortAt {
    nth: u64,
    flushed: bool,
}

fn abort_at() -> Option<AbortAt> {
    static AT: std::sync::OnceLock<Option<AbortAt>> = std::sync::OnceLock::new();
    *AT.get_or_init(|| {
        let v = std::env::var(ABORT_AFTER_WRITES_VAR).ok()?;
        let (n, flushed) = match v.strip_suffix(":unflushed") {
            Some(n) => (n, false),
            None => (v.as_str(), true),
        };
        match n.trim().parse::<u64>() {
            Ok(nth) if nth > 0 => Some(AbortAt { nth, flushed }),
            // A typo must not silently turn a crash test into a normal run that passes.
            _ => {
                eprintln!("error: {ABORT_AFTER_WRITES_VAR}=`{v}`: expected N or N:unflushed with N >= 1 (test-only)");
                std::process::exit(2)
            }
        }
    })
}

/// Reads the hook's setting before a store writes anything, so a bad value stops the
/// process before a run exists rather than in the middle of creating one.
pub(crate) fn check_test_hook() {
    let _ = abort_at();
}

/// Called by every store right after it took one event: counts the events of this process
/// and, at the configured one, aborts (`std::process::abort`: no unwinding, no destructors,
/// no buffered writes, like kill -9). `flush` hands the store's buffer to the OS first, for
/// the `N` form.
pub(crate) fn crash_hook(flush: impl FnOnce()) {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Some(at) = abort_at() else { return };
    if WRITES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == at.nth {
        if at.flushed {
            flush();
        }
        std::process::abort();
    }
}
