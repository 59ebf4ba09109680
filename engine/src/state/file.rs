//! The embedded store: one folder per run under `<state-dir>/runs/<run-id>/`.
//!
//! ```text
//! meta.json       format version, run id, playbook name, file and sha256
//! playbook.yaml   the playbook exactly as run
//! inputs.json     the inputs, secret ones as "***"
//! journal.jsonl   header line, then one event per line (append-only)
//! state.json      compacted snapshot: the fold of the journal up to its `seq`
//! lock            flock(2) held by the process driving the run; says who
//! ```
//! Appends are O(1). A trailing partial line (a crash mid-write) is ignored; any other bad
//! line is corruption and is reported. The snapshot is written at the end of a session
//! (temp file, fsync, rename, fsync of the folder); loading takes the snapshot and folds
//! the journal lines after it.

use super::event::{Event, RunStatus};
use super::run_state::RunState;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const JOURNAL_VERSION: u32 = 1;
const JOURNAL_FORMAT: &str = "runbook-journal";

/// What can go wrong with run state, by kind: the CLI maps kinds to exit codes (a taken run
/// id or a held run is the operator's to fix, exit 2; damage or an unreachable store is a
/// failure), so a kind is never borrowed for another (no "corrupt" for a database error).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no run `{run_id}` in {dir}")]
    NotFound { run_id: String, dir: String },
    #[error("run `{run_id}` is held by {holder}")]
    Locked { run_id: String, holder: String },
    /// A new run was asked for under an id that is taken.
    #[error("run `{run_id}` already exists in {store}; choose another --run-id or `resume` it")]
    RunExists { run_id: String, store: String },
    /// Data that is there but cannot be read as what it should be.
    /// The team store's lease ran out under this process (or was taken over).
    #[error("lost the lease of run `{run_id}`: {reason}")]
    LeaseLost { run_id: String, reason: String },
    #[error("{path}: {message}")]
    Corrupt { path: String, message: String },
    /// Written by another release of runbook.
    #[error(
        "{path}: {what} version {found} is not supported by this runbook (it reads version {supported}); use the runbook release that wrote it"
    )]
    Version { path: String, what: &'static str, found: i64, supported: i64 },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    /// A record that could not be encoded (a bug, never the operator's input).
    #[error("cannot encode {what}: {source}")]
    Encode { what: &'static str, source: serde_json::Error },
    /// The team store's server said no, or the connection broke.
    #[error("team store: {}", crate::steps::pg::describe_error(.source))]
    Postgres { source: tokio_postgres::Error },
    /// The team store cannot be reached or used at all (no connection, its thread gone).
    #[error("team store: {message}")]
    TeamStore { message: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.display().to_string(), source }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMeta {
    pub format_version: u32,
    pub run_id: String,
    pub playbook: String,
    pub file: String,
    pub sha256: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub playbook: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    pub since: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pid == 0 {
            // Nothing could be read: say so rather than name a process 0 on no host.
            return write!(
                f,
                "another process, which could not be named (its lock file {} was unreadable)",
                self.since
            );
        }
        write!(f, "process {} on {} (since {})", self.pid, self.host, self.since)
    }
}

#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
    /// Asks who holds a run without ever touching its lock (`runbook serve`).
    observer: bool,
}

/// A run folder opened for driving: the lock is held as long as this lives.
pub struct RunDir {
    pub dir: PathBuf,
    _lock: File,
    /// Where a run being created goes once its first event is durable.
    publish_as: Option<PathBuf>,
}

/// The prefix of a run folder being created; run ids never start with a dot.
const CREATING: &str = ".creating-";

fn already_exists(run_id: &str, runs: &Path) -> StateError {
    StateError::RunExists { run_id: run_id.to_owned(), store: runs.display().to_string() }
}

/// Removes the hidden folders of creations that died before their first event: nobody
/// holds their lock, and no run ever existed under their name.
fn sweep_abandoned(runs: &Path) {
    let Ok(entries) = fs::read_dir(runs) else { return };
    for e in entries.flatten() {
        if !e.file_name().to_str().is_some_and(|n| n.starts_with(CREATING)) {
            continue;
        }
        let lock = e.path().join("lock");
        let free = match File::open(&lock) {
            Ok(f) => f.try_lock().is_ok(),
            // No lock file: the creator died before taking it, or is about to take it this
            // instant; only a folder a minute old is surely abandoned.
            Err(_) => e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(60))),
        };
        if free {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

impl FileStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileStore { root: root.into(), observer: false }
    }

    /// A store for watching runs only (`runbook serve`): asking who holds a run reads
    /// `/proc/locks` instead of trying the lock, so a watcher polling every second can never
    /// make a `resume` fail with "held by" at the instant of its try.
    pub fn observer(root: impl Into<PathBuf>) -> Self {
        FileStore { root: root.into(), observer: true }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.root.join("runs").join(run_id)
    }

    /// Creates the folder of a new run and takes its lock. The folder is built under a
    /// hidden name (`runs/.creating-<run-id>-<pid>`) and appears under its run id only once
    /// its first event is durable ([`RunDir::publish`]): a crash in the first milliseconds
    /// leaves no run that `runs` lists but nothing can open, only a hidden folder that the
    /// next `exec` sweeps away.
    pub fn create(
        &self,
        meta: &RunMeta,
        playbook_text: &str,
        inputs: &serde_json::Value,
    ) -> Result<RunDir, StateError> {
        let dir = self.run_dir(&meta.run_id);
        if dir.exists() {
            return Err(already_exists(&meta.run_id, &self.root.join("runs")));
        }
        let runs = self.root.join("runs");
        // Step outputs, SQL rows and errors are for the operators, not every local user.
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&runs).map_err(io_err(&runs))?;
        sweep_abandoned(&runs);
        let tmp = runs.join(format!("{CREATING}{}-{}", meta.run_id, std::process::id()));
        // A folder of ours from an earlier attempt in this process (same pid) cannot be live.
        let _ = fs::remove_dir_all(&tmp);
        fs::DirBuilder::new().mode(0o700).create(&tmp).map_err(io_err(&tmp))?;
        let lock = take_lock(&tmp, &meta.run_id)?;
        write_durable(&tmp.join("playbook.yaml"), playbook_text.as_bytes())?;
        write_durable(
            &tmp.join("inputs.json"),
            &serde_json::to_vec_pretty(&*super::redacted(inputs)).unwrap_or_default(),
        )?;
        write_durable(&tmp.join("meta.json"), &serde_json::to_vec_pretty(meta).unwrap_or_default())?;
        sync_dir(&tmp);
        Ok(RunDir { dir: tmp, _lock: lock, publish_as: Some(dir) })
    }

    /// Opens an existing run for driving (resume): takes its lock.
    pub fn open(&self, run_id: &str) -> Result<RunDir, StateError> {
        let dir = self.existing(run_id)?;
        let lock = take_lock(&dir, run_id)?;
        Ok(RunDir { dir, _lock: lock, publish_as: None })
    }

    fn existing(&self, run_id: &str) -> Result<PathBuf, StateError> {
        let dir = self.run_dir(run_id);
        // A dot folder is a run being created, not a run.
        if run_id.is_empty() || run_id.contains('/') || run_id.starts_with('.') || !dir.join("meta.json").is_file() {
            return Err(StateError::NotFound {
                run_id: run_id.to_owned(),
                dir: self.root.join("runs").display().to_string(),
            });
        }
        Ok(dir)
    }

    pub fn meta(&self, run_id: &str) -> Result<RunMeta, StateError> {
        let path = self.existing(run_id)?.join("meta.json");
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let meta: RunMeta = serde_json::from_slice(&bytes)
            .map_err(|e| StateError::Corrupt { path: path.display().to_string(), message: e.to_string() })?;
        if meta.format_version != JOURNAL_VERSION {
            return Err(StateError::Version {
                path: path.display().to_string(),
                what: "state format",
                found: meta.format_version.into(),
                supported: JOURNAL_VERSION.into(),
            });
        }
        Ok(meta)
    }

    pub fn playbook_text(&self, run_id: &str) -> Result<String, StateError> {
        let path = self.existing(run_id)?.join("playbook.yaml");
        fs::read_to_string(&path).map_err(io_err(&path))
    }

    pub fn inputs(&self, run_id: &str) -> Result<serde_json::Value, StateError> {
        let path = self.existing(run_id)?.join("inputs.json");
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StateError::Corrupt { path: path.display().to_string(), message: e.to_string() })
    }

    /// The state of a run: the snapshot plus the journal after it. A run marked running
    /// whose lock nobody holds has died; it is reported as interrupted.
    pub fn load(&self, run_id: &str) -> Result<RunState, StateError> {
        let dir = self.existing(run_id)?;
        let mut state = load_state(&dir)?;
        if state.status == RunStatus::Running && self.holder(run_id).is_none() {
            state.mark_dead();
        }
        Ok(state)
    }

    /// Every event of a run, in order (for moving it to another store).
    pub fn events(&self, run_id: &str) -> Result<Vec<Event>, StateError> {
        let path = self.existing(run_id)?.join("journal.jsonl");
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        let mut lines = text.lines();
        check_header(&path, lines.next().unwrap_or_default())?;
        // A torn last line (a crash mid-write) is not an event.
        Ok(lines.filter_map(|l| serde_json::from_str(l).ok()).collect())
    }

    /// Who drives the run right now, if anyone.
    pub fn holder(&self, run_id: &str) -> Option<LockHolder> {
        let path = self.run_dir(run_id).join("lock");
        if self.observer {
            return lock_is_held(&path).then(|| read_holder(&path));
        }
        let file = File::open(&path).ok()?;
        match file.try_lock() {
            Ok(()) => None,
            Err(_) => Some(read_holder(&path)),
        }
    }

    pub fn list(&self) -> Result<Vec<RunSummary>, StateError> {
        let runs = self.root.join("runs");
        let entries = match fs::read_dir(&runs) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateError::Io { path: runs.display().to_string(), source: e }),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if id.starts_with('.') {
                continue;
            }
            let Ok(meta) = self.meta(&id) else { continue };
            let (status, started_at, finished_at) = match self.load(&id) {
                Ok(s) => (s.status, s.started_at, s.finished_at),
                Err(_) => (RunStatus::Interrupted, meta.created_at.clone(), None),
            };
            out.push(RunSummary { run_id: id, playbook: meta.playbook, status, started_at, finished_at });
        }
        out.sort_by(|a, b| (&a.started_at, &a.run_id).cmp(&(&b.started_at, &b.run_id)));
        Ok(out)
    }
}

fn take_lock(dir: &Path, run_id: &str) -> Result<File, StateError> {
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    if file.try_lock().is_err() {
        return Err(StateError::Locked { run_id: run_id.to_owned(), holder: read_holder(&path).to_string() });
    }
    let holder = LockHolder { pid: std::process::id(), host: hostname(), since: jiff::Timestamp::now().to_string() };
    file.set_len(0).map_err(io_err(&path))?;
    file.write_all(serde_json::to_string(&holder).unwrap_or_default().as_bytes()).map_err(io_err(&path))?;
    Ok(file)
}

/// The processes holding (or waiting for) the flock(2) of `path`, found without taking it:
/// Linux lists every lock in `/proc/locks` as `N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE
/// START END`. `None` where that file cannot be read.
fn flock_holders(path: &Path) -> Option<Vec<u32>> {
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(path).ok()?;
    let (major, minor, ino) = (libc::major(md.dev()), libc::minor(md.dev()), md.ino());
    let locks = fs::read_to_string("/proc/locks").ok()?;
    Some(
        locks
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // "1: FLOCK ..." or, for a waiter, "1: -> FLOCK ...".
                let f = if f.get(1) == Some(&"->") { &f[1..] } else { &f[..] };
                let ours = f.get(1) == Some(&"FLOCK")
                    && f.get(5).is_some_and(|id| {
                        let mut p = id.split(':');
                        let (Some(ma), Some(mi), Some(i)) = (p.next(), p.next(), p.next()) else { return false };
                        u32::from_str_radix(ma, 16).ok() == Some(major)
                            && u32::from_str_radix(mi, 16).ok() == Some(minor)
                            && i.parse::<u64>().ok() == Some(ino)
                    });
                if ours { f.get(4).and_then(|p| p.parse().ok()) } else { None }
            })
            .collect(),
    )
}

/// Whether some process holds the flock(2) of `path`, found without taking it. Where
/// `/proc/locks` cannot be read, the holder written in the lock file is asked whether it is
/// alive (same host only; a process elsewhere cannot hold a local flock anyway).
fn lock_is_held(path: &Path) -> bool {
    if let Some(holders) = flock_holders(path) {
        return !holders.is_empty();
    }
    let h = read_holder(path);
    // SAFETY: kill with signal 0 only checks that the process exists.
    h.pid != 0 && h.host == hostname() && unsafe { libc::kill(h.pid as i32, 0) } == 0
}

/// Who holds the lock of `path`, as its holder wrote it. A holder takes the lock and only
/// then writes its name, so a reader racing it may find the file empty: it waits a moment
/// for the name, then asks the kernel (`/proc/locks`) which process holds the lock, and
/// only then says it could not be read.
fn read_holder(path: &Path) -> LockHolder {
    let parse = || fs::read_to_string(path).ok().and_then(|s| serde_json::from_str::<LockHolder>(&s).ok());
    for _ in 0..20 {
        if let Some(h) = parse() {
            return h;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if let Some(pid) = flock_holders(path).and_then(|h| h.first().copied()) {
        return LockHolder { pid, host: hostname(), since: "unknown".into() };
    }
    LockHolder { pid: 0, host: String::new(), since: path.display().to_string() }
}

pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

fn write_durable(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f =
            OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn load_state(dir: &Path) -> Result<RunState, StateError> {
    let snap_path = dir.join("state.json");
    let snapshot: Option<RunState> = match fs::read(&snap_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).ok(),
        Err(_) => None,
    };
    let journal_path = dir.join("journal.jsonl");
    let file = File::open(&journal_path).map_err(io_err(&journal_path))?;
    let mut state = snapshot;
    let corrupt = |message: String| StateError::Corrupt { path: journal_path.display().to_string(), message };
    let mut lines = BufReader::new(file).lines().enumerate().peekable();
    match lines.next() {
        Some((_, Ok(header))) => check_header(&journal_path, &header)?,
        _ => return Err(corrupt("the journal is empty".into())),
    }
    while let Some((n, line)) = lines.next() {
        let line = line.map_err(io_err(&journal_path))?;
        let is_last = lines.peek().is_none();
        let ev: Event = match serde_json::from_str(&line) {
            Ok(ev) => ev,
            // A crash can leave half a line at the end: the last valid line wins.
            Err(_) if is_last => break,
            Err(e) => return Err(corrupt(format!("line {}: {e}", n + 1))),
        };
        match &mut state {
            Some(s) if ev.seq <= s.seq => {}
            Some(s) => s.apply(&ev),
            None => {
                state = RunState::new(&ev);
                if state.is_none() {
                    return Err(corrupt(format!("line {}: the journal must start with run_started", n + 1)));
                }
            }
        }
    }
    state.ok_or_else(|| corrupt("the journal has no run_started event".into()))
}

fn check_header(path: &Path, line: &str) -> Result<(), StateError> {
    #[derive(Deserialize)]
    struct Header {
        format: String,
        version: u32,
    }
    let corrupt = |message: String| StateError::Corrupt { path: path.display().to_string(), message };
    let h: Header = serde_json::from_str(line).map_err(|e| corrupt(format!("not a runbook journal: {e}")))?;
    if h.format != JOURNAL_FORMAT {
        return Err(corrupt(format!("not a runbook journal (format `{}`)", h.format)));
    }
    if h.version != JOURNAL_VERSION {
        return Err(StateError::Version {
            path: path.display().to_string(),
            what: "journal format",
            found: h.version.into(),
            supported: JOURNAL_VERSION.into(),
        });
    }
    Ok(())
}

/// The append-only journal of one run.
pub struct Journal {
    out: BufWriter<File>,
    path: PathBuf,
    dirty: bool,
}

impl Journal {
    /// Opens (creating with a header) the journal of a run folder.
    pub fn open(dir: &Path) -> Result<Journal, StateError> {
        let path = dir.join("journal.jsonl");
        let exists = path.exists();
        let mut file = OpenOptions::new().create(true).append(true).mode(0o600).open(&path).map_err(io_err(&path))?;
        if !exists {
            writeln!(file, "{{\"format\":\"{JOURNAL_FORMAT}\",\"version\":{JOURNAL_VERSION}}}")
                .map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
            sync_dir(dir);
        } else {
            // A half-written last line from a crash would glue onto the next event: cut it.
            // Only the tail is read; a journal of a long run is not read whole.
            let len = file.metadata().map_err(io_err(&path))?.len();
            let keep = complete_prefix_len(&path, len).map_err(io_err(&path))?;
            if keep < len {
                file.set_len(keep).map_err(io_err(&path))?;
            }
        }
        Ok(Journal { out: BufWriter::with_capacity(64 * 1024, file), path, dirty: false })
    }

    pub fn append(&mut self, ev: &Event) -> Result<(), StateError> {
        serde_json::to_writer(&mut self.out, &*super::redacted(ev)).map_err(|e| match e.is_io() {
            true => StateError::Io { path: self.path.display().to_string(), source: e.into() },
            false => StateError::Encode { what: "an event", source: e },
        })?;
        self.out.write_all(b"\n").map_err(io_err(&self.path))?;
        self.dirty = true;
        super::crash_hook(|| {
            let _ = self.out.flush();
        });
        Ok(())
    }

    /// Hands buffered events to the OS: they survive the death of this process.
    pub fn flush(&mut self) -> Result<(), StateError> {
        if self.dirty {
            self.out.flush().map_err(io_err(&self.path))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Flush and fsync: they survive a power cut too.
    pub fn sync(&mut self) -> Result<(), StateError> {
        self.out.flush().map_err(io_err(&self.path))?;
        self.dirty = false;
        self.out.get_ref().sync_data().map_err(io_err(&self.path))
    }
}

/// The length of the journal up to and including its last newline.
fn complete_prefix_len(path: &Path, len: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path)?;
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(p) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(start + p as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl RunDir {
    /// Gives a run being created its name, once its first event is durable (the caller has
    /// fsynced the journal): from here on `runs`, `show` and `resume` see a whole run. The
    /// rename refuses to replace a run that appeared meanwhile under the same id.
    pub fn publish(&mut self) -> Result<(), StateError> {
        let Some(to) = self.publish_as.take() else { return Ok(()) };
        let (Ok(from_c), Ok(to_c)) = (
            std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()),
            std::ffi::CString::new(to.as_os_str().as_encoded_bytes()),
        ) else {
            return Err(StateError::Corrupt {
                path: to.display().to_string(),
                message: "a NUL byte in the path".into(),
            });
        };
        // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::renameat2(libc::AT_FDCWD, from_c.as_ptr(), libc::AT_FDCWD, to_c.as_ptr(), libc::RENAME_NOREPLACE)
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            let run_id = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let _ = fs::remove_dir_all(&self.dir);
            return Err(if e.kind() == io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(libc::ENOTEMPTY) {
                already_exists(&run_id, to.parent().unwrap_or(&to))
            } else {
                StateError::Io { path: to.display().to_string(), source: e }
            });
        }
        self.dir = to;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent);
        }
        Ok(())
    }

    /// Whether the run is still being created (no event durable yet).
    pub fn creating(&self) -> bool {
        self.publish_as.is_some()
    }

    pub fn write_snapshot(&self, state: &RunState) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(&*super::redacted(state))
            .map_err(|source| StateError::Encode { what: "the state snapshot", source })?;
        write_durable(&self.dir.join("state.json"), &bytes)?;
        sync_dir(&self.dir);
        Ok(())
    }

    pub fn load(&self) -> Result<RunState, StateError> {
        load_state(&self.dir)
    }
}
