//! The team store: runs, their events and their leases in PostgreSQL (`--state
//! postgres://...`), so a second operator on another machine sees a run (`runs`, `show`,
//! `report`) and can take it over with `resume` when the first one's laptop dies.
//!
//! One process drives a run at a time through a lease row (holder, `lease_until`), renewed
//! by a heartbeat; a lease that has expired can be taken over, and the takeover is written
//! into the run's journal. Leases are plain rows and statements, not session advisory
//! locks, so this works behind Supabase's transaction pooler (port 6543) too.
//!
//! The store's connection lives on a thread of its own with its own small runtime: the
//! engine calls it synchronously (an event append must be durable before a destructive step
//! starts), and a blocking call must never run on the engine's runtime.

use super::event::{Event, RunStatus};
use super::file::{FileStore, LockHolder, RunMeta, RunSummary, StateError, hostname};
use super::run_state::RunState;
use super::store::{EventLog, HeldRun, Store};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// The schema this build writes; a store with a newer one is refused.
const SCHEMA_VERSION: i32 = 1;

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

struct Worker {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

fn err(e: impl std::fmt::Display) -> StateError {
    StateError::Corrupt { path: "team store".into(), message: e.to_string() }
}

fn db(e: tokio_postgres::Error) -> StateError {
    match e.as_db_error() {
        Some(d) => err(format!("{} (SQLSTATE {})", d.message(), d.code().code())),
        None => err(e),
    }
}

#[derive(Clone)]
pub struct PgStore {
    jobs: mpsc::Sender<Job>,
    ttl: Duration,
}

impl PgStore {
    /// Connects, and creates or checks the tables.
    pub fn connect(url: &str, ttl: Duration) -> Result<PgStore, StateError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StateError>>();
        let url = url.to_owned();
        std::thread::Builder::new()
            .name("runbook-team-store".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(err(e)));
                        return;
                    }
                };
                let client = match rt.block_on(crate::steps::pg::connect(&url)) {
                    Ok((c, _)) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(err(format!("{e}"))));
                        return;
                    }
                };
                let mut w = Worker { rt, client };
                let _ = ready_tx.send(migrate(&mut w));
                while let Ok(job) = rx.recv() {
                    job(&mut w);
                }
            })
            .map_err(err)?;
        ready_rx.recv().map_err(|_| err("the team store's connection thread died"))??;
        Ok(PgStore { jobs, ttl })
    }

    /// Runs `f` on the store's thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(Box::new(move |w| {
                let _ = tx.send(f(w));
            }))
            .map_err(|_| err("the team store's connection is closed"))?;
        rx.recv().map_err(|_| err("the team store's connection is closed"))?
    }

    fn query(&self, sql: &'static str, params: Vec<String>) -> Result<Vec<Vec<Option<String>>>, StateError> {
        self.call(move |w| {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
            let rows = w.rt.block_on(w.client.query(sql, &refs)).map_err(db)?;
            Ok(rows.iter().map(|r| (0..r.len()).map(|i| r.get::<_, Option<String>>(i)).collect()).collect())
        })
    }

    fn events_after(&self, run_id: &str, seq: i64) -> Result<Vec<Event>, StateError> {
        let rows = self.query(
            "select event from runbook_events where run_id = $1 and seq > $2::text::bigint order by seq",
            vec![run_id.to_owned(), seq.to_string()],
        )?;
        rows.into_iter()
            .map(|r| {
                serde_json::from_str(r[0].as_deref().unwrap_or("null"))
                    .map_err(|e| err(format!("run {run_id}: a bad event: {e}")))
            })
            .collect()
    }

    fn fold(&self, run_id: &str) -> Result<(RunState, bool), StateError> {
        let rows = self.query(
            "select snapshot, snapshot_seq::text, (holder is not null and lease_until > now())::text from runbook_runs where run_id = $1",
            vec![run_id.to_owned()],
        )?;
        let Some(row) = rows.into_iter().next() else {
            return Err(StateError::NotFound { run_id: run_id.to_owned(), dir: "the team store".into() });
        };
        let held = row[2].as_deref() == Some("true");
        let mut state: Option<RunState> = row[0].as_deref().and_then(|s| serde_json::from_str(s).ok());
        let from = state.as_ref().map_or(0, |s| s.seq as i64);
        for ev in self.events_after(run_id, from)? {
            match &mut state {
                Some(s) => s.apply(&ev),
                None => state = RunState::new(&ev),
            }
        }
        let state = state.ok_or_else(|| err(format!("run {run_id} has no events")))?;
        Ok((state, held))
    }

    fn hold(&self, run_id: &str, create: Option<(&RunMeta, &str, &Value)>) -> Result<Box<dyn HeldRun>, StateError> {
        let me = LockHolder { pid: std::process::id(), host: hostname(), since: jiff::Timestamp::now().to_string() };
        let me_json = serde_json::to_string(&me).map_err(err)?;
        let ttl = self.ttl.as_secs_f64().to_string();
        let previous = match create {
            Some((meta, text, inputs)) => {
                let mut params = run_row(meta, text.to_owned(), inputs);
                params.extend([me_json.clone(), ttl]);
                let inserted = self.query(
                    "insert into runbook_runs (run_id, playbook, file, sha256, created_at, playbook_text, inputs, holder, lease_until)
                     values ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::text::float8 * interval '1 second')
                     on conflict (run_id) do nothing returning run_id",
                    params,
                )?;
                if inserted.is_empty() {
                    return Err(err(format!(
                        "run `{}` already exists; choose another --run-id or `resume` it",
                        meta.run_id
                    )));
                }
                None
            }
            None => {
                let run = run_id.to_owned();
                let me_json = me_json.clone();
                self.call(move |w| {
                    let tx = w.rt.block_on(w.client.transaction()).map_err(db)?;
                    let row = w
                        .rt
                        .block_on(tx.query_opt(
                            "select holder, (lease_until > now()) from runbook_runs where run_id = $1 for update",
                            &[&run],
                        ))
                        .map_err(db)?
                        .ok_or_else(|| StateError::NotFound { run_id: run.clone(), dir: "the team store".into() })?;
                    let holder: Option<String> = row.get(0);
                    let live: Option<bool> = row.get(1);
                    let previous: Option<LockHolder> = holder.as_deref().and_then(|h| serde_json::from_str(h).ok());
                    if let (Some(p), Some(true)) = (&previous, live) {
                        return Err(StateError::Locked { run_id: run.clone(), holder: format!("{p} (lease renewed until it stops)") });
                    }
                    w.rt.block_on(tx.execute(
                        "update runbook_runs set holder = $2, lease_until = now() + $3::text::float8 * interval '1 second' where run_id = $1",
                        &[&run, &me_json, &ttl],
                    ))
                    .map_err(db)?;
                    w.rt.block_on(tx.commit()).map_err(db)?;
                    Ok(previous)
                })?
            }
        };
        let lost = Arc::new(AtomicBool::new(false));
        // The heartbeat sleeps on a channel, so stopping it (drop of the sender) is immediate.
        let (stop, stopped) = mpsc::channel::<()>();
        let beat = {
            let (store, run, me, lost, every) =
                (self.clone(), run_id.to_owned(), me_json.clone(), lost.clone(), self.ttl / 6);
            std::thread::spawn(move || {
                let every = every.clamp(Duration::from_millis(50), Duration::from_secs(5));
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    // Checked six times per lease; renewed once a third of it is used.
                    let renewed = store.query(
                        "update runbook_runs set lease_until = now() + $3::text::float8 * interval '1 second'
                         where run_id = $1 and holder = $2 and lease_until < now() + $3::text::float8 * interval '1 second' * 2 / 3
                         returning run_id",
                        vec![run.clone(), me.clone(), store.ttl.as_secs_f64().to_string()],
                    );
                    let still_ours = store.query(
                        "select 1::text from runbook_runs where run_id = $1 and holder = $2",
                        vec![run.clone(), me.clone()],
                    );
                    if renewed.is_err() || still_ours.map(|r| r.is_empty()).unwrap_or(true) {
                        lost.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            })
        };
        Ok(Box::new(PgRun {
            store: self.clone(),
            run_id: run_id.to_owned(),
            me: me_json,
            pending: Vec::new(),
            lost,
            stop: Some(stop),
            beat: Some(beat),
            previous: previous.filter(|p| p.pid != 0),
        }))
    }
}

/// The first seven columns of a `runbook_runs` row.
fn run_row(meta: &RunMeta, playbook_text: String, inputs: &Value) -> Vec<String> {
    vec![
        meta.run_id.clone(),
        meta.playbook.clone(),
        meta.file.clone(),
        meta.sha256.clone(),
        meta.created_at.clone(),
        playbook_text,
        super::redacted(inputs).to_string(),
    ]
}

fn migrate(w: &mut Worker) -> Result<(), StateError> {
    w.rt.block_on(w.client.batch_execute(
        "create table if not exists runbook_schema (version int not null);
         create table if not exists runbook_runs (
             run_id text primary key, playbook text not null, file text not null, sha256 text not null,
             created_at text not null, playbook_text text not null, inputs text not null,
             snapshot text, snapshot_seq bigint not null default 0, holder text, lease_until timestamptz);
         create table if not exists runbook_events (
             run_id text not null references runbook_runs (run_id) on delete cascade,
             seq bigint not null, event text not null, primary key (run_id, seq));",
    ))
    .map_err(db)?;
    let rows = w.rt.block_on(w.client.query("select version from runbook_schema", &[])).map_err(db)?;
    match rows.first().map(|r| r.get::<_, i32>(0)) {
        None => {
            w.rt.block_on(w.client.execute("insert into runbook_schema (version) values ($1)", &[&SCHEMA_VERSION]))
                .map_err(db)?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(err(format!(
                "the team store has schema version {v}; this runbook reads up to {SCHEMA_VERSION}: use a newer runbook"
            )));
        }
        Some(_) => {}
    }
    Ok(())
}

struct PgRun {
    store: PgStore,
    run_id: String,
    me: String,
    pending: Vec<Event>,
    lost: Arc<AtomicBool>,
    stop: Option<mpsc::Sender<()>>,
    beat: Option<std::thread::JoinHandle<()>>,
    previous: Option<LockHolder>,
}

impl EventLog for PgRun {
    fn append(&mut self, ev: &Event) -> Result<(), StateError> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(StateError::Locked {
                run_id: self.run_id.clone(),
                holder: "another process (this one's lease expired)".into(),
            });
        }
        self.pending.push(super::redacted(ev).into_owned());
        super::crash_hook(|| {
            let _ = self.flush();
        });
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StateError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = serde_json::to_string(&self.pending).map_err(err)?;
        let n = self.pending.len();
        // Only the lease holder may write, checked in the same statement.
        let rows = self.store.query(
            "insert into runbook_events (run_id, seq, event)
             select $1, (e->>'seq')::bigint, e::text from jsonb_array_elements($2::text::jsonb) as e
             where exists (select 1 from runbook_runs where run_id = $1 and holder = $3)
             returning seq::text",
            vec![self.run_id.clone(), batch, self.me.clone()],
        )?;
        if rows.len() != n {
            self.lost.store(true, Ordering::Relaxed);
            return Err(StateError::Locked {
                run_id: self.run_id.clone(),
                holder: "another process (this one's lease was taken over)".into(),
            });
        }
        self.pending.clear();
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StateError> {
        // A committed insert is durable on the server.
        self.flush()
    }
}

impl HeldRun for PgRun {
    fn log(&mut self) -> &mut dyn EventLog {
        self
    }

    fn load(&self) -> Result<RunState, StateError> {
        self.store.fold(&self.run_id).map(|(s, _)| s)
    }

    fn write_snapshot(&mut self, state: &RunState) -> Result<(), StateError> {
        self.flush()?;
        let snap = serde_json::to_string(&*super::redacted(state)).map_err(err)?;
        self.store.query(
            "update runbook_runs set snapshot = $2, snapshot_seq = $3::text::bigint where run_id = $1 and holder = $4 returning run_id",
            vec![self.run_id.clone(), snap, state.seq.to_string(), self.me.clone()],
        )?;
        Ok(())
    }

    fn took_over_from(&self) -> Option<LockHolder> {
        self.previous.clone()
    }
}

impl Drop for PgRun {
    fn drop(&mut self) {
        let _ = self.flush();
        drop(self.stop.take());
        if let Some(b) = self.beat.take() {
            let _ = b.join();
        }
        let _ = self.store.query(
            "update runbook_runs set holder = null, lease_until = null where run_id = $1 and holder = $2 returning run_id",
            vec![self.run_id.clone(), self.me.clone()],
        );
    }
}

impl Store for PgStore {
    fn create(&self, meta: &RunMeta, playbook_text: &str, inputs: &Value) -> Result<Box<dyn HeldRun>, StateError> {
        super::check_test_hook();
        self.hold(&meta.run_id, Some((meta, playbook_text, inputs)))
    }

    fn open(&self, run_id: &str) -> Result<Box<dyn HeldRun>, StateError> {
        super::check_test_hook();
        self.hold(run_id, None)
    }

    fn meta(&self, run_id: &str) -> Result<RunMeta, StateError> {
        let rows = self.query(
            "select playbook, file, sha256, created_at from runbook_runs where run_id = $1",
            vec![run_id.to_owned()],
        )?;
        let r = rows
            .into_iter()
            .next()
            .ok_or_else(|| StateError::NotFound { run_id: run_id.to_owned(), dir: "the team store".into() })?;
        let s = |i: usize| r[i].clone().unwrap_or_default();
        Ok(RunMeta {
            format_version: super::file::JOURNAL_VERSION,
            run_id: run_id.to_owned(),
            playbook: s(0),
            file: s(1),
            sha256: s(2),
            created_at: s(3),
        })
    }

    fn playbook_text(&self, run_id: &str) -> Result<String, StateError> {
        let rows = self.query("select playbook_text from runbook_runs where run_id = $1", vec![run_id.to_owned()])?;
        rows.into_iter()
            .next()
            .and_then(|r| r[0].clone())
            .ok_or_else(|| StateError::NotFound { run_id: run_id.to_owned(), dir: "the team store".into() })
    }

    fn inputs(&self, run_id: &str) -> Result<Value, StateError> {
        let rows = self.query("select inputs from runbook_runs where run_id = $1", vec![run_id.to_owned()])?;
        let text = rows
            .into_iter()
            .next()
            .and_then(|r| r[0].clone())
            .ok_or_else(|| StateError::NotFound { run_id: run_id.to_owned(), dir: "the team store".into() })?;
        serde_json::from_str(&text).map_err(err)
    }

    fn load(&self, run_id: &str) -> Result<RunState, StateError> {
        let (mut state, held) = self.fold(run_id)?;
        if state.status == RunStatus::Running && !held {
            state.mark_dead();
        }
        Ok(state)
    }

    fn holder(&self, run_id: &str) -> Option<LockHolder> {
        let rows = self
            .query("select holder from runbook_runs where run_id = $1 and lease_until > now()", vec![run_id.to_owned()])
            .ok()?;
        rows.into_iter().next().and_then(|r| r[0].clone()).and_then(|h| serde_json::from_str(&h).ok())
    }

    fn list(&self) -> Result<Vec<RunSummary>, StateError> {
        let rows = self.query("select run_id from runbook_runs order by created_at, run_id", vec![])?;
        let mut out = Vec::new();
        for r in rows {
            let id = r[0].clone().unwrap_or_default();
            let s = self.load(&id)?;
            out.push(RunSummary {
                run_id: id,
                playbook: s.playbook,
                status: s.status,
                started_at: s.started_at,
                finished_at: s.finished_at,
            });
        }
        Ok(out)
    }
}

/// `runbook state migrate`: copies the runs of a state dir into the team store (runs the
/// store already has are left alone). Returns (copied, skipped).
pub fn migrate_from(files: &FileStore, to: &PgStore) -> Result<(Vec<String>, Vec<String>), StateError> {
    let (mut copied, mut skipped) = (Vec::new(), Vec::new());
    for summary in files.list()? {
        let id = summary.run_id;
        if files.holder(&id).is_some() {
            return Err(StateError::Locked {
                run_id: id.clone(),
                holder: files.holder(&id).map(|h| h.to_string()).unwrap_or_default(),
            });
        }
        let meta = files.meta(&id)?;
        let exists = !to.query("select run_id from runbook_runs where run_id = $1", vec![id.clone()])?.is_empty();
        if exists {
            skipped.push(id);
            continue;
        }
        let events = files.events(&id)?;
        let params = run_row(&meta, files.playbook_text(&id)?, &files.inputs(&id)?);
        to.query(
            "insert into runbook_runs (run_id, playbook, file, sha256, created_at, playbook_text, inputs) values ($1, $2, $3, $4, $5, $6, $7) returning run_id",
            params,
        )?;
        let batch = serde_json::to_string(&events).map_err(err)?;
        to.query(
            "insert into runbook_events (run_id, seq, event) select $1, (e->>'seq')::bigint, e::text from jsonb_array_elements($2::text::jsonb) as e returning seq::text",
            vec![id.clone(), batch],
        )?;
        copied.push(id);
    }
    Ok((copied, skipped))
}
