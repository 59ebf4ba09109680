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
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The schema this build writes; a store with a newer one is refused.
const SCHEMA_VERSION: i32 = 1;

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

struct Worker {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

/// The store cannot be reached or used (no connection, its thread gone): not damage.
fn err(e: impl std::fmt::Display) -> StateError {
    StateError::TeamStore { message: e.to_string() }
}

fn db(source: tokio_postgres::Error) -> StateError {
    StateError::Postgres { source }
}

/// A row that is there but cannot be read as what it should be.
fn corrupt(run_id: &str, message: String) -> StateError {
    StateError::Corrupt { path: format!("team store, run `{run_id}`"), message }
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

    /// Hands `f` to the store's thread; its answer arrives on the returned channel.
    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker) -> Result<T, StateError> + Send + 'static,
    ) -> Result<mpsc::Receiver<Result<T, StateError>>, StateError> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(Box::new(move |w| {
                let _ = tx.send(f(w));
            }))
            .map_err(|_| err("the team store's connection is closed"))?;
        Ok(rx)
    }

    /// Runs `f` on the store's thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        self.submit(f)?.recv().map_err(|_| err("the team store's connection is closed"))?
    }

    /// Like [`call`](Self::call), but gives up waiting at `deadline`: a connection hung on a
    /// dead network must not hold the heartbeat past the lease it is trying to keep.
    fn call_until<T: Send + 'static>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&mut Worker) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        match self.submit(f)?.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(err("the team store did not answer in time")),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(err("the team store's connection is closed")),
        }
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
                    .map_err(|e| corrupt(run_id, format!("a bad event: {e}")))
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
        let state = state.ok_or_else(|| corrupt(run_id, "the run has no events".into()))?;
        Ok((state, held))
    }

    fn hold(&self, run_id: &str, create: Option<(&RunMeta, &str, &Value)>) -> Result<Box<dyn HeldRun>, StateError> {
        let me = LockHolder { pid: std::process::id(), host: hostname(), since: jiff::Timestamp::now().to_string() };
        let me_json = serde_json::to_string(&me).map_err(err)?;
        let ttl = self.ttl.as_secs_f64().to_string();
        let previous = match create {
            // The row and the first event go in together, in one transaction, at the first
            // flush ([`PgRun::publish`]): a crash before it leaves no run without events.
            Some((meta, text, inputs)) => {
                let exists = !self
                    .query("select run_id from runbook_runs where run_id = $1", vec![meta.run_id.clone()])?
                    .is_empty();
                if exists {
                    return Err(already_exists(&meta.run_id));
                }
                let mut params = run_row(meta, text.to_owned(), inputs);
                params.extend([me_json.clone(), ttl]);
                return Ok(Box::new(PgRun::new(self, run_id, me_json, None, Some(params))));
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
        let mut run = PgRun::new(self, run_id, me_json, previous.filter(|p| p.pid != 0), None);
        run.start_heartbeat();
        Ok(Box::new(run))
    }
}

fn already_exists(run_id: &str) -> StateError {
    StateError::RunExists { run_id: run_id.to_owned(), store: "the team store".into() }
}

/// Renews the lease until told to stop. A failed renewal is retried with backoff for as long
/// as the lease surely still holds; just before it could expire (and another operator could
/// take the run over), every step this process runs is killed, so no step ever runs twice at
/// once, and the run's next event is refused with the reason.
fn heartbeat(store: PgStore, run: String, me: String, lost: Arc<Mutex<Option<String>>>, stopped: mpsc::Receiver<()>) {
    let ttl = store.ttl;
    let every = (ttl / 6).clamp(Duration::from_millis(50), Duration::from_secs(5));
    // Stop the steps this long before the lease could expire: time to kill and for the
    // clocks of two machines to disagree a little.
    let margin = (ttl / 5).clamp(Duration::from_millis(200), Duration::from_secs(10));
    // Measured from when a renewal was *sent*: the server set `now() + ttl` after that.
    let mut held_until = Instant::now() + ttl;
    let mut wait = every;
    let mut failures = 0u32;
    let mut last_error = String::new();
    loop {
        match stopped.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let give_up_at = held_until.checked_sub(margin).unwrap_or_else(Instant::now);
        if Instant::now() >= give_up_at {
            let stopped_steps = crate::exec::groups::kill_all();
            let what = if stopped_steps.is_empty() {
                "no step was running".to_owned()
            } else {
                let list: Vec<String> =
                    stopped_steps.iter().map(|(s, g)| format!("`{s}` (process group {g})")).collect();
                format!("stopped step(s) {} so that no one runs them twice", list.join(", "))
            };
            let reason = format!(
                "the team store did not renew the lease for {:.1}s of its {:.1}s ({failures} attempt(s) failed, last: {last_error}); {what}. \
                 When the store answers again, `runbook resume {run}` (with --rerun-interrupted for the stopped steps)",
                (Instant::now() + ttl).saturating_duration_since(held_until).as_secs_f64(),
                ttl.as_secs_f64()
            );
            if let Ok(mut l) = lost.lock() {
                *l = Some(reason);
            }
            return;
        }
        let sent = Instant::now();
        let (r, m, t) = (run.clone(), me.clone(), ttl.as_secs_f64().to_string());
        let renewed = store.call_until(give_up_at, move |w| {
            let rows =
                w.rt.block_on(w.client.query(
                    "update runbook_runs set lease_until = now() + $3::text::float8 * interval '1 second'
                     where run_id = $1 and holder = $2 returning run_id",
                    &[&r, &m, &t],
                ))
                .map_err(db)?;
            Ok(rows.len())
        });
        match renewed {
            Ok(1) => {
                held_until = sent + ttl;
                wait = every;
                failures = 0;
            }
            Ok(_) => {
                // Someone took the run over (our lease had expired): stop at once.
                let stopped_steps = crate::exec::groups::kill_all();
                if let Ok(mut l) = lost.lock() {
                    *l = Some(format!(
                        "another process took the run over; stopped {} step(s) of this one",
                        stopped_steps.len()
                    ));
                }
                return;
            }
            Err(e) => {
                failures += 1;
                last_error = e.to_string();
                // 50 ms, 100 ms, ... up to the renewal interval.
                wait = (Duration::from_millis(50) * 2u32.saturating_pow(failures.min(10) - 1)).min(every);
            }
        }
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
            return Err(StateError::Version {
                path: "runbook_schema".into(),
                what: "schema",
                found: v.into(),
                supported: SCHEMA_VERSION.into(),
            });
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
    /// Why the lease was lost, once it was: every later write is refused with it.
    lost: Arc<Mutex<Option<String>>>,
    stop: Option<mpsc::Sender<()>>,
    beat: Option<std::thread::JoinHandle<()>>,
    previous: Option<LockHolder>,
    /// The row of a run being created, inserted with its first events.
    unpublished: Option<Vec<String>>,
}

impl PgRun {
    fn new(
        store: &PgStore,
        run_id: &str,
        me: String,
        previous: Option<LockHolder>,
        unpublished: Option<Vec<String>>,
    ) -> PgRun {
        PgRun {
            store: store.clone(),
            run_id: run_id.to_owned(),
            me,
            pending: Vec::new(),
            lost: Arc::new(Mutex::new(None)),
            stop: None,
            beat: None,
            previous,
            unpublished,
        }
    }

    fn start_heartbeat(&mut self) {
        // The heartbeat sleeps on a channel, so stopping it (drop of the sender) is immediate.
        let (stop, stopped) = mpsc::channel::<()>();
        let (store, run, me, lost) = (self.store.clone(), self.run_id.clone(), self.me.clone(), self.lost.clone());
        self.beat = Some(std::thread::spawn(move || heartbeat(store, run, me, lost, stopped)));
        self.stop = Some(stop);
    }

    fn lost(&self) -> Result<(), StateError> {
        match self.lost.lock().ok().and_then(|l| l.clone()) {
            Some(reason) => Err(StateError::LeaseLost { run_id: self.run_id.clone(), reason }),
            None => Ok(()),
        }
    }

    /// Inserts the run's row, lease and first events in one transaction.
    fn publish(&mut self, row: Vec<String>, batch: String) -> Result<(), StateError> {
        let run_id = self.run_id.clone();
        self.store.call(move |w| {
            let tx = w.rt.block_on(w.client.transaction()).map_err(db)?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = row.iter().map(|p| p as _).collect();
            let inserted = w
                .rt
                .block_on(tx.query(
                    "insert into runbook_runs (run_id, playbook, file, sha256, created_at, playbook_text, inputs, holder, lease_until)
                     values ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::text::float8 * interval '1 second')
                     on conflict (run_id) do nothing returning run_id",
                    &refs,
                ))
                .map_err(db)?;
            if inserted.is_empty() {
                return Err(already_exists(&run_id));
            }
            w.rt.block_on(tx.execute(
                "insert into runbook_events (run_id, seq, event)
                 select $1, (e->>'seq')::bigint, e::text from jsonb_array_elements($2::text::jsonb) as e",
                &[&run_id, &batch],
            ))
            .map_err(db)?;
            w.rt.block_on(tx.commit()).map_err(db)
        })?;
        self.pending.clear();
        self.start_heartbeat();
        Ok(())
    }
}

impl EventLog for PgRun {
    fn append(&mut self, ev: &Event) -> Result<(), StateError> {
        self.lost()?;
        self.pending.push(super::redacted(ev).into_owned());
        super::crash_hook(|| {
            let _ = self.flush();
        });
        Ok(())
    }

    /// Hands the batch to the store's thread without waiting for it: the engine's one
    /// runtime thread goes on with the other branches while the insert travels. The thread
    /// runs jobs in order, so a later [`sync`](Self::sync) that waits for its own turn has
    /// waited for this insert too; a failed insert marks the run lost, and the next write
    /// is refused with it.
    fn flush(&mut self) -> Result<(), StateError> {
        self.lost()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = serde_json::to_string(&self.pending).map_err(err)?;
        if let Some(row) = self.unpublished.take() {
            return self.publish(row, batch);
        }
        let n = self.pending.len();
        self.pending.clear();
        let (run_id, me, lost) = (self.run_id.clone(), self.me.clone(), self.lost.clone());
        self.store
            .jobs
            .send(Box::new(move |w| {
                // Only the lease holder may write, checked in the same statement.
                let r = w.rt.block_on(w.client.query(
                    "insert into runbook_events (run_id, seq, event)
                     select $1, (e->>'seq')::bigint, e::text from jsonb_array_elements($2::text::jsonb) as e
                     where exists (select 1 from runbook_runs where run_id = $1 and holder = $3)
                     returning seq::text",
                    &[&run_id, &batch, &me],
                ));
                let why = match r {
                    Ok(rows) if rows.len() == n => return,
                    Ok(_) => "another process took the run over; its events were not written".to_owned(),
                    Err(e) => format!("writing events failed: {}", db(e)),
                };
                if let Ok(mut l) = lost.lock() {
                    l.get_or_insert(why);
                }
            }))
            .map_err(|_| err("the team store's connection is closed"))
    }

    /// Waits until every batch handed over is committed (a committed insert is durable on
    /// the server), at most one lease: past that another operator could take the run over.
    fn sync(&mut self) -> Result<(), StateError> {
        self.flush()?;
        self.store.call_until(Instant::now() + self.store.ttl, |_| Ok(()))?;
        self.lost()
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
        self.sync()?;
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
        if self.unpublished.is_some() {
            // Never published: there is no row to release.
            return;
        }
        let _ = self.flush();
        drop(self.stop.take());
        if let Some(b) = self.beat.take() {
            let _ = b.join();
        }
        // Bounded: a store that does not answer must not keep the process from ending (the
        // lease then simply expires).
        let (run, me) = (self.run_id.clone(), self.me.clone());
        let _ = self.store.call_until(Instant::now() + self.store.ttl, move |w| {
            w.rt.block_on(w.client.execute(
                "update runbook_runs set holder = null, lease_until = null where run_id = $1 and holder = $2",
                &[&run, &me],
            ))
            .map_err(db)
        });
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
        serde_json::from_str(&text).map_err(|e| corrupt(run_id, format!("its inputs: {e}")))
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
