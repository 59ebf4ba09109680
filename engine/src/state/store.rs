//! The two places runs can live, behind one interface: the embedded file store (the
//! default) and the PostgreSQL team store (`--state postgres://...`), which lets another
//! operator see a run and take it over.

use super::event::Event;
use super::file::{FileStore, Journal, LockHolder, RunDir, RunMeta, RunSummary, StateError};
use super::run_state::RunState;
use serde_json::Value;

/// Where a run's events go, one by one.
pub trait EventLog {
    fn append(&mut self, ev: &Event) -> Result<(), StateError>;
    /// Make what was appended survive the death of this process.
    fn flush(&mut self) -> Result<(), StateError>;
    /// Make it survive a power cut (or a lost machine) too.
    fn sync(&mut self) -> Result<(), StateError>;
}

/// A run held by this process (its lock or lease), to be driven.
pub trait HeldRun {
    fn log(&mut self) -> &mut dyn EventLog;
    fn load(&self) -> Result<RunState, StateError>;
    fn write_snapshot(&mut self, state: &RunState) -> Result<(), StateError>;
    /// Who held the run before us, when we took it over from a holder that died.
    fn took_over_from(&self) -> Option<LockHolder> {
        None
    }
}

pub trait Store {
    /// Creates a run and holds it.
    fn create(&self, meta: &RunMeta, playbook_text: &str, inputs: &Value) -> Result<Box<dyn HeldRun>, StateError>;
    /// Holds an existing run (refused while another process holds it).
    fn open(&self, run_id: &str) -> Result<Box<dyn HeldRun>, StateError>;
    fn meta(&self, run_id: &str) -> Result<RunMeta, StateError>;
    fn playbook_text(&self, run_id: &str) -> Result<String, StateError>;
    fn inputs(&self, run_id: &str) -> Result<Value, StateError>;
    /// The state of a run; one marked running that nobody holds is reported interrupted.
    fn load(&self, run_id: &str) -> Result<RunState, StateError>;
    fn holder(&self, run_id: &str) -> Option<LockHolder>;
    fn list(&self) -> Result<Vec<RunSummary>, StateError>;
}

impl EventLog for Journal {
    fn append(&mut self, ev: &Event) -> Result<(), StateError> {
        Journal::append(self, ev)
    }
    fn flush(&mut self) -> Result<(), StateError> {
        Journal::flush(self)
    }
    fn sync(&mut self) -> Result<(), StateError> {
        Journal::sync(self)
    }
}

struct FileRun {
    dir: RunDir,
    journal: Journal,
}

/// The file run's log publishes a run being created once its first event is fsynced.
impl EventLog for FileRun {
    fn append(&mut self, ev: &Event) -> Result<(), StateError> {
        self.journal.append(ev)
    }
    fn flush(&mut self) -> Result<(), StateError> {
        if self.dir.creating() {
            // Nothing of a run is visible before its first event is durable.
            return self.sync();
        }
        self.journal.flush()
    }
    fn sync(&mut self) -> Result<(), StateError> {
        self.journal.sync()?;
        self.dir.publish()
    }
}

impl HeldRun for FileRun {
    fn log(&mut self) -> &mut dyn EventLog {
        self
    }
    fn load(&self) -> Result<RunState, StateError> {
        self.dir.load()
    }
    fn write_snapshot(&mut self, state: &RunState) -> Result<(), StateError> {
        EventLog::sync(self)?;
        self.dir.write_snapshot(state)
    }
}

impl Store for FileStore {
    fn create(&self, meta: &RunMeta, playbook_text: &str, inputs: &Value) -> Result<Box<dyn HeldRun>, StateError> {
        super::check_test_hook();
        let dir = FileStore::create(self, meta, playbook_text, inputs)?;
        let journal = Journal::open(&dir.dir)?;
        Ok(Box::new(FileRun { dir, journal }))
    }
    fn open(&self, run_id: &str) -> Result<Box<dyn HeldRun>, StateError> {
        super::check_test_hook();
        let dir = FileStore::open(self, run_id)?;
        let journal = Journal::open(&dir.dir)?;
        Ok(Box::new(FileRun { dir, journal }))
    }
    fn meta(&self, run_id: &str) -> Result<RunMeta, StateError> {
        FileStore::meta(self, run_id)
    }
    fn playbook_text(&self, run_id: &str) -> Result<String, StateError> {
        FileStore::playbook_text(self, run_id)
    }
    fn inputs(&self, run_id: &str) -> Result<Value, StateError> {
        FileStore::inputs(self, run_id)
    }
    fn load(&self, run_id: &str) -> Result<RunState, StateError> {
        FileStore::load(self, run_id)
    }
    fn holder(&self, run_id: &str) -> Option<LockHolder> {
        FileStore::holder(self, run_id)
    }
    fn list(&self) -> Result<Vec<RunSummary>, StateError> {
        FileStore::list(self)
    }
}
