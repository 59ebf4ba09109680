//! The process groups of the steps running now, in this process. A step that starts a
//! program puts it in a group of its own and registers it here for as long as it runs, so
//! that whoever must stop every step at once without going through the dispatcher (the team
//! store's heartbeat, when the lease is about to be lost) can do it in one call.

use std::collections::BTreeMap;
use std::sync::Mutex;

static RUNNING: Mutex<BTreeMap<i32, String>> = Mutex::new(BTreeMap::new());

/// A new group, as the dispatcher journals it: (step, group id, the leader's start time).
pub type Started = (String, i32, Option<u64>);

static WATCHER: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Started>>> = Mutex::new(None);

/// The dispatcher's feed of new groups, to journal each (`step_process`): a resume after a
/// crash can then tell whether the step's programs still run.
pub fn watch() -> tokio::sync::mpsc::UnboundedReceiver<Started> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    if let Ok(mut w) = WATCHER.lock() {
        *w = Some(tx);
    }
    rx
}

/// A registered group: unregistered (and killed, if still alive) when dropped, so no child of
/// a step outlives its step (timeout, Ctrl-C, a cancelled branch).
pub struct Group(i32);

impl Group {
    pub fn register(pgid: i32, step: &str) -> Group {
        if let Ok(mut m) = RUNNING.lock() {
            m.insert(pgid, step.to_owned());
        }
        if let Ok(w) = WATCHER.lock()
            && let Some(tx) = w.as_ref()
        {
            let _ = tx.send((step.to_owned(), pgid, crate::state::leader_start(pgid)));
        }
        Group(pgid)
    }

    pub fn id(&self) -> i32 {
        self.0
    }

    /// The step ended on its own: forget the group without killing what the step left
    /// running in it on purpose (a script that starts a server in the background).
    pub fn release(self) {
        if let Ok(mut m) = RUNNING.lock() {
            m.remove(&self.0);
        }
        std::mem::forget(self);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(mut m) = RUNNING.lock() {
            m.remove(&self.0);
        }
        // SAFETY: kill(2) with a negative pid signals the process group this step created.
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
        }
    }
}

/// SIGKILLs every registered group; returns (step, group id) of each, for the message.
pub fn kill_all() -> Vec<(String, i32)> {
    let Ok(m) = RUNNING.lock() else { return Vec::new() };
    m.iter()
        .map(|(&pgid, step)| {
            // SAFETY: as above; a group that already ended makes kill fail harmlessly (ESRCH).
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            (step.clone(), pgid)
        })
        .collect()
}
