//! `pitr-restore`: point-in-time restore.
//!
//! `provider: postgres` (self-hosted) restores a `pg_basebackup` plus a WAL archive into a
//! **new** data directory and starts it on its own port with `recovery_target_time` and
//! `recovery_target_action = promote`, then waits until recovery has finished. The
//! original data directory is never touched. When runbook runs as root, the new cluster
//! is owned by and started as an unprivileged OS user (`postgres` by default), because
//! PostgreSQL refuses to run as root.
//!
//! `provider: supabase` asks the Supabase Management API for a PITR restore of the project
//! and waits until the project is healthy again.

use super::pg::{self, pg_command};
use super::saas::Api;
use super::{Outputs, StepContext, StepError, TypedStep};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Pitr;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum PitrParams {
    Postgres(PostgresPitr),
    Supabase(SupabasePitr),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresPitr {
    /// A `pg_basebackup` directory, or its `base.tar` / `base.tar.gz`.
    pub base_backup: String,
    /// Where `archive_command` copied the WAL segments.
    pub wal_archive: String,
    /// RFC 3339: the moment to restore to.
    pub target_time: String,
    /// A new (absent or empty) directory for the restored cluster.
    pub data_dir: String,
    /// The port the restored cluster listens on (127.0.0.1).
    pub port: u16,
    /// The database superuser in the output URL.
    #[serde(default = "default_user")]
    pub user: String,
    /// Its password, if the restored cluster asks for one over TCP (put it in a secret:
    /// it is part of the output URL, which is redacted in state and output).
    #[serde(default)]
    pub password: Option<String>,
    /// The OS user that owns and runs the restored cluster when runbook runs as root.
    #[serde(default)]
    pub os_user: Option<String>,
}

fn default_user() -> String {
    "postgres".into()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SupabasePitr {
    /// The Supabase project reference (the subdomain of its URL).
    pub project_ref: String,
    /// RFC 3339: the moment to restore to (needs the PITR add-on). Give this or `from`.
    #[serde(default)]
    pub target_time: Option<String>,
    /// Restore a daily backup instead: `latest-backup` (the newest COMPLETED one) or a
    /// backup id from `GET /v1/projects/{ref}/database/backups`. Give this or `target_time`.
    #[serde(default)]
    pub from: Option<String>,
    /// A Supabase personal access token (from a secret).
    pub token: String,
    /// The Supabase Management API base URL (default https://api.supabase.com).
    #[serde(default = "default_supabase_api")]
    pub api_url: String,
    /// How often to ask whether the restore has finished.
    #[serde(default = "default_poll")]
    pub poll_interval: crate::playbook::Dur,
    /// How long the project may take to report `RESTORING` after the request; a project
    /// that stays healthy longer than this has not started the restore, and the step fails
    /// instead of taking the old database for the restored one.
    #[serde(default = "default_start_timeout")]
    pub start_timeout: crate::playbook::Dur,
}

fn default_start_timeout() -> crate::playbook::Dur {
    crate::playbook::Dur(Duration::from_secs(600))
}

fn default_supabase_api() -> String {
    "https://api.supabase.com".into()
}

fn default_poll() -> crate::playbook::Dur {
    crate::playbook::Dur(Duration::from_secs(10))
}

impl TypedStep for Pitr {
    const NAME: &'static str = "pitr-restore";
    const SUMMARY: &'static str = "point-in-time restore: self-hosted PostgreSQL (base backup + WAL) or Supabase";
    type Params = PitrParams;

    fn idempotent(_: &PitrParams) -> bool {
        false
    }

    fn variant_error(params: &Value) -> Option<super::ParamError> {
        let mut rest = params.as_object()?.clone();
        let provider = rest.remove("provider")?;
        let rest = Value::Object(rest);
        match provider.as_str()? {
            "postgres" => super::parse_params::<PostgresPitr>(&rest).err(),
            "supabase" => super::parse_params::<SupabasePitr>(&rest).err(),
            _ => None,
        }
    }

    fn validate(p: &PitrParams) -> Result<(), super::ParamError> {
        if let PitrParams::Supabase(p) = p {
            match (&p.target_time, &p.from) {
                (Some(_), Some(_)) => {
                    return Err(super::ParamError::at(
                        "from",
                        "give either `target_time` (point-in-time) or `from` (a daily backup), not both",
                    ));
                }
                (None, None) => {
                    return Err(super::ParamError::at(
                        "target_time",
                        "missing: give `target_time` (point-in-time, needs the PITR add-on) or `from: latest-backup` (a daily backup)",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn plan(p: &PitrParams) -> String {
        match p {
            PitrParams::Postgres(p) => format!(
                "restore base backup {} + WAL {} to {} into new data dir {} on port {}",
                p.base_backup, p.wal_archive, p.target_time, p.data_dir, p.port
            ),
            PitrParams::Supabase(p) => match (&p.target_time, &p.from) {
                (Some(t), _) => {
                    format!("ask Supabase to restore project {} to {t} and wait until it is healthy", p.project_ref)
                }
                (None, Some(b)) => format!(
                    "ask Supabase to restore project {} from daily backup {b} and wait until it is healthy",
                    p.project_ref
                ),
                (None, None) => format!("restore Supabase project {} (target_time or from is missing)", p.project_ref),
            },
        }
    }

    async fn run(&self, ctx: &StepContext, p: PitrParams) -> Result<Outputs, StepError> {
        match p {
            PitrParams::Postgres(p) => postgres(ctx, p).await,
            PitrParams::Supabase(p) => supabase(ctx, p).await,
        }
    }
}

fn parse_target(text: &str) -> Result<jiff::Timestamp, StepError> {
    let t: jiff::Timestamp = text.trim().parse().map_err(|e| {
        StepError::failed(format!("target_time `{text}` is not an RFC 3339 timestamp: {e}"))
            .with_hint("write it like 2026-11-27T09:12:00Z")
    })?;
    if t > jiff::Timestamp::now() {
        return Err(StepError::failed(format!("target_time {t} is in the future"))
            .with_hint("a restore can only go back in time"));
    }
    Ok(t)
}

/// The OS user to run PostgreSQL as: none (ourselves) unless we are root.
fn run_as(os_user: &Option<String>) -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    match os_user {
        Some(u) if root && u != "root" => Some(u.clone()),
        None if root => Some("postgres".into()),
        _ => None,
    }
}

async fn sh(cmd: &mut tokio::process::Command, what: &str) -> Result<String, StepError> {
    let out = cmd.output().await.map_err(|e| {
        StepError::failed(format!("cannot run {what}: {e}"))
            .with_hint("is PostgreSQL installed? set RUNBOOK_PG_BIN to its bin directory")
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(StepError::failed(format!("{what} failed: {}", super::support::tail_lines(&err, 6))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn absolute(work: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() { p.to_path_buf() } else { work.join(p) }
}

async fn postgres(ctx: &StepContext, p: PostgresPitr) -> Result<Outputs, StepError> {
    let started = Instant::now();
    let target = parse_target(&p.target_time)?;
    let data_dir = absolute(&ctx.work_dir, &p.data_dir);
    let base = absolute(&ctx.work_dir, &p.base_backup);
    let archive = absolute(&ctx.work_dir, &p.wal_archive);
    if std::fs::read_dir(&data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(StepError::failed(format!("data_dir {} is not empty", data_dir.display()))
            .with_hint("a restore never writes over a directory: choose a new one"));
    }
    if !archive.is_dir() {
        return Err(StepError::failed(format!("wal_archive {} is not a directory", archive.display())));
    }
    if std::net::TcpListener::bind(("127.0.0.1", p.port)).is_err() {
        return Err(StepError::failed(format!("port {} is in use", p.port))
            .with_hint("choose a free port for the restored cluster"));
    }
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| StepError::failed(format!("cannot create {}: {e}", data_dir.display())))?;
    // 1. The base backup, copied (or unpacked) into the new directory.
    if base.is_dir() {
        sh(tokio::process::Command::new("cp").arg("-a").arg(base.join(".")).arg(&data_dir), "copying the base backup")
            .await?;
    } else if base.is_file() {
        sh(
            tokio::process::Command::new("tar").arg("-xf").arg(&base).arg("-C").arg(&data_dir),
            "unpacking the base backup",
        )
        .await?;
    } else {
        return Err(StepError::failed(format!("base_backup {} does not exist", base.display())));
    }
    if !data_dir.join("PG_VERSION").exists() {
        return Err(StepError::failed(format!("{} is not a PostgreSQL base backup (no PG_VERSION)", base.display())));
    }
    if let Some(start) = backup_start(&data_dir)
        && target < start
    {
        return Err(StepError::failed(format!("target_time {target} is before the base backup was taken ({start})"))
            .with_hint("restore from an older base backup"));
    }
    for stale in ["postmaster.pid", "standby.signal"] {
        let _ = std::fs::remove_file(data_dir.join(stale));
    }
    // 2. Recovery settings: replay the archive up to the target, then promote.
    let target_pg = target.strftime("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
    let conf = format!(
        "\n# added by runbook pitr-restore (run {run}, step {step})\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
unix_socket_directories = '{dir}'\narchive_mode = off\nrestore_command = 'cp \"{archive}/%f\" \"%p\"'\n\
recovery_target_time = '{target_pg}'\nrecovery_target_action = 'promote'\n",
        run = ctx.run_id,
        step = ctx.step_id,
        port = p.port,
        dir = data_dir.display(),
        archive = archive.display(),
    );
    let auto = data_dir.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap_or_default();
    text.push_str(&conf);
    std::fs::write(&auto, text).map_err(|e| StepError::failed(format!("cannot write {}: {e}", auto.display())))?;
    std::fs::write(data_dir.join("recovery.signal"), b"")
        .map_err(|e| StepError::failed(format!("cannot write recovery.signal: {e}")))?;
    let user = run_as(&p.os_user);
    if let Some(u) = &user {
        sh(
            tokio::process::Command::new("chown").arg("-R").arg(format!("{u}:")).arg(&data_dir),
            "chown of the data dir",
        )
        .await?;
    }
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700));
    // 3. Start it and wait until recovery is over.
    let log = data_dir.join("runbook-restore.log");
    let mut start = pg_command("pg_ctl", user.as_deref());
    start.arg("-D").arg(&data_dir).arg("-l").arg(&log).args(["-w", "-t", "86400", "start"]);
    if let Err(e) = sh(&mut start, "pg_ctl start").await {
        return Err(explain_log(&log).unwrap_or(e));
    }
    let auth = match &p.password {
        Some(pw) => format!("{}:{}", p.user, pct(pw)),
        None => p.user.clone(),
    };
    let url = format!("postgresql://{auth}@127.0.0.1:{}/postgres", p.port);
    // Recovery runs while we wait; if the server gives up (missing WAL, bad backup), its
    // log says why, and that beats any connection error we would see meanwhile.
    let client = loop {
        match pg::connect(&url).await {
            Ok((client, label)) => match client.query_one("select pg_is_in_recovery()", &[]).await {
                Ok(row) if !row.get::<_, bool>(0) => break client,
                Ok(_) => {}
                Err(e) => return Err(explain_log(&log).unwrap_or_else(|| pg::query_error(&label, &e))),
            },
            Err(e) => {
                // A wrong password will not get better by waiting.
                if e.to_string().contains("authentication failed") {
                    return Err(e);
                }
                // The server is gone: the log has the reason. Else it is still starting
                // (the step's `timeout` bounds the wait).
                if !data_dir.join("postmaster.pid").exists() {
                    return Err(explain_log(&log).unwrap_or(e));
                }
            }
        }
        if let Some(err) = explain_log(&log) {
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let replayed = client
        .query_one("select pg_last_xact_replay_timestamp()", &[])
        .await
        .ok()
        .and_then(|r| r.try_get::<_, pg::Cell>(0).ok())
        .map(|c| c.0)
        .filter(|v| !v.is_null());
    Ok(serde_json::json!({
        "url": url,
        "data_dir": data_dir.display().to_string(),
        "port": p.port,
        "target_time": target.to_string(),
        // Read from the restored server (the last transaction it replayed), not copied from
        // the request; null (unverified) when no transaction was replayed.
        "recovered_to_verified": replayed.is_some(),
        "recovered_to": replayed,
        "duration_ms": started.elapsed().as_millis() as u64,
        "log": log.display().to_string(),
    }))
}

/// Percent-encodes a password for a URL.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// START TIME from `backup_label` ("2026-11-27 10:00:00 UTC").
fn backup_start(data_dir: &Path) -> Option<jiff::Timestamp> {
    let label = std::fs::read_to_string(data_dir.join("backup_label")).ok()?;
    let line = label.lines().find_map(|l| l.strip_prefix("START TIME: "))?;
    let text = line.trim().trim_end_matches(" UTC");
    let dt: jiff::civil::DateTime = text.parse().ok()?;
    jiff::tz::TimeZone::UTC.to_timestamp(dt).ok()
}

/// Turns what PostgreSQL wrote in its log into an error an SRE can act on.
fn explain_log(log: &Path) -> Option<StepError> {
    let text = std::fs::read_to_string(log).ok()?;
    let fatal = text.lines().rev().find(|l| l.contains("FATAL:") || l.contains("PANIC:"))?;
    let msg = fatal.split_once(":  ").map_or(fatal, |(_, m)| m).trim();
    let hint = if msg.contains("recovery ended before configured recovery target was reached") {
        "the WAL archive ends before the target time: segments are missing, or the target is later than the last archived WAL"
    } else if msg.contains("could not locate required checkpoint record") || msg.contains("invalid checkpoint") {
        "the base backup is incomplete or does not match the WAL archive"
    } else if msg.contains("Address already in use") || msg.contains("could not bind") {
        "the port is in use: choose another one"
    } else {
        "see the restore log for details"
    };
    Some(
        StepError::failed(format!("the restored cluster stopped: {msg}"))
            .with_hint(format!("{hint} ({})", log.display())),
    )
}

/// Supabase Management API (https://supabase.com/docs/reference/api/introduction):
/// `GET /v1/projects/{ref}/database/backups` (v1-list-all-backups) answers `{region,
/// walg_enabled, pitr_enabled, backups: [{id, is_physical_backup, status, inserted_at}],
/// physical_backup_data: {earliest_physical_backup_date_unix,
/// latest_physical_backup_date_unix}}`; `POST .../database/backups/restore-pitr`
/// (v1-restore-pitr-backup) takes `{recovery_time_target_unix}`; `GET /v1/projects/{ref}`
/// (v1-get-project) has `status`, one of the enum in [`project_status`].
async fn supabase(ctx: &StepContext, p: SupabasePitr) -> Result<Outputs, StepError> {
    let started = Instant::now();
    let api = Api::new(&ctx.http, &p.api_url, Some(&p.token), "Supabase", "SUPABASE_ACCESS_TOKEN");
    let backups = api.get(&format!("/v1/projects/{}/database/backups", p.project_ref)).await?;
    let mut out = serde_json::Map::new();
    out.insert("project_ref".into(), p.project_ref.clone().into());
    match (&p.target_time, &p.from) {
        (Some(text), _) => {
            let target = parse_target(text)?;
            if backups.get("pitr_enabled").and_then(|v| v.as_bool()) != Some(true) {
                return Err(StepError::failed(format!(
                    "point-in-time recovery is not enabled for project {}",
                    p.project_ref
                ))
                .with_hint(
                    "PITR is a paid add-on; without it, restore a daily backup (`from: latest-backup`) or a pg_dump",
                ));
            }
            let unix = target.as_second();
            let range = backups.get("physical_backup_data");
            let earliest = range.and_then(|r| r.get("earliest_physical_backup_date_unix")).and_then(|v| v.as_i64());
            let latest = range.and_then(|r| r.get("latest_physical_backup_date_unix")).and_then(|v| v.as_i64());
            if let (Some(e), Some(l)) = (earliest, latest)
                && (unix < e || unix > l)
            {
                let show = |s: i64| jiff::Timestamp::from_second(s).map(|t| t.to_string()).unwrap_or_default();
                return Err(StepError::failed(format!(
                    "target_time {target} is outside the recoverable window {} .. {}",
                    show(e),
                    show(l)
                )));
            }
            api.post(
                &format!("/v1/projects/{}/database/backups/restore-pitr", p.project_ref),
                &serde_json::json!({ "recovery_time_target_unix": unix }),
            )
            .await?;
            out.insert("target_time".into(), target.to_string().into());
        }
        (None, Some(from)) => {
            let backup = choose_backup(&backups, from, &p.project_ref)?;
            let id = backup.get("id").cloned().unwrap_or(Value::Null);
            // Not in the published v1 reference (which lists backups and documents only
            // restore-pitr); this is the daily-backup restore the Supabase dashboard calls.
            // If the API does not have it, the error says to use the dashboard.
            api.post(
                &format!("/v1/projects/{}/database/backups/restore", p.project_ref),
                &serde_json::json!({ "id": id }),
            )
            .await
            .map_err(|e| {
                let hint = "restore the backup from the Supabase dashboard (Database > Backups), then resume the run from the next step";
                match e {
                    StepError::Failed { message, .. } if message.contains("HTTP 404") || message.contains("HTTP 405") => {
                        StepError::failed(format!("{message} (the Management API has no daily-backup restore here)"))
                            .with_hint(hint)
                    }
                    other => other,
                }
            })?;
            out.insert("backup_id".into(), id);
            out.insert("backup_inserted_at".into(), backup.get("inserted_at").cloned().unwrap_or(Value::Null));
        }
        (None, None) => {
            return Err(StepError::failed("give `target_time` or `from`"));
        }
    }
    let (status, polls) = wait_restored(&api, &p).await?;
    // The Management API reports no recovery point for a finished restore: say so rather
    // than copy the request back as if it had been measured.
    out.insert("recovered_to".into(), Value::Null);
    out.insert("recovered_to_verified".into(), false.into());
    out.insert("status".into(), status.into());
    out.insert("polls".into(), polls.into());
    out.insert("duration_ms".into(), (started.elapsed().as_millis() as u64).into());
    Ok(Value::Object(out))
}

/// The newest COMPLETED backup (`latest-backup`), or the one with this id.
fn choose_backup<'a>(backups: &'a Value, from: &str, project: &str) -> Result<&'a Value, StepError> {
    let list: Vec<&Value> =
        backups.get("backups").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    let completed = |b: &&Value| b.get("status").and_then(Value::as_str) == Some("COMPLETED");
    if from == "latest-backup" {
        return list
            .into_iter()
            .filter(completed)
            .max_by_key(|b| {
                b.get("inserted_at").and_then(Value::as_str).and_then(|t| t.parse::<jiff::Timestamp>().ok())
            })
            .ok_or_else(|| {
                StepError::failed(format!("project {project} has no completed daily backup"))
                    .with_hint("restore from a pg_dump instead (pg-restore)")
            });
    }
    let b = list
        .into_iter()
        .find(|b| b.get("id").is_some_and(|id| id.to_string().trim_matches('"') == from))
        .ok_or_else(|| {
            StepError::failed(format!("project {project} has no backup with id {from}"))
                .with_hint("list them with GET /v1/projects/{ref}/database/backups, or use `from: latest-backup`")
        })?;
    if !completed(&b) {
        return Err(StepError::failed(format!(
            "backup {from} of project {project} is {}, not COMPLETED",
            b.get("status").and_then(Value::as_str).unwrap_or("of unknown status")
        )));
    }
    Ok(b)
}

/// What a project status means for a restore we asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Phase {
    /// The restore is running.
    Restoring,
    /// Healthy: done if the restore was seen running, else it has not started yet.
    Healthy,
    /// On the way (starting, restarting, resizing, unhealthy while coming back): wait.
    Wait,
    /// The project will not come back by waiting.
    Failed(&'static str),
}

/// The documented enum of `status` (v1-get-project): ACTIVE_HEALTHY, ACTIVE_UNHEALTHY,
/// COMING_UP, GOING_DOWN, INACTIVE, INIT_FAILED, REMOVED, RESTARTING, UNKNOWN, UPGRADING,
/// PAUSING, RESTORING, RESTORE_FAILED, PAUSE_FAILED, RESIZING.
pub fn project_status(status: &str) -> Phase {
    match status {
        "RESTORING" => Phase::Restoring,
        "ACTIVE_HEALTHY" => Phase::Healthy,
        "ACTIVE_UNHEALTHY" | "COMING_UP" | "RESTARTING" | "UPGRADING" | "RESIZING" | "UNKNOWN" => Phase::Wait,
        "RESTORE_FAILED" => Phase::Failed("the restore failed"),
        "INIT_FAILED" => Phase::Failed("the project failed to initialise"),
        "REMOVED" => Phase::Failed("the project was removed"),
        "INACTIVE" => Phase::Failed("the project is paused"),
        "PAUSING" | "GOING_DOWN" => Phase::Failed("the project is being paused or shut down"),
        "PAUSE_FAILED" => Phase::Failed("pausing the project failed"),
        _ => Phase::Failed("a status runbook does not know"),
    }
}

/// Polls the project until the restore is seen running and then healthy. A project that
/// is still ACTIVE_HEALTHY right after the request has not begun (Supabase answers the
/// POST before it moves the project), so healthy only counts after RESTORING.
async fn wait_restored(api: &Api<'_>, p: &SupabasePitr) -> Result<(String, u64), StepError> {
    let asked = Instant::now();
    let mut seen_restoring = false;
    let mut polls = 0u64;
    loop {
        tokio::time::sleep(p.poll_interval.0).await;
        let project = api.get(&format!("/v1/projects/{}", p.project_ref)).await?;
        polls += 1;
        let status = project.get("status").and_then(|s| s.as_str()).unwrap_or("").to_owned();
        match project_status(&status) {
            Phase::Restoring => seen_restoring = true,
            Phase::Healthy if seen_restoring => return Ok((status, polls)),
            Phase::Failed(why) => {
                return Err(StepError::failed(format!(
                    "Supabase reports {status} for project {}: {why}",
                    p.project_ref
                ))
                .with_hint("check the project in the Supabase dashboard and contact Supabase support"));
            }
            Phase::Healthy | Phase::Wait => {}
        }
        if !seen_restoring && asked.elapsed() >= p.start_timeout.0 {
            return Err(StepError::failed(format!(
                "Supabase accepted the restore of project {}, but the project never reported RESTORING within {} (last status {status}); the restore may not have run",
                p.project_ref, p.start_timeout
            ))
            .with_hint("check the project in the Supabase dashboard before trusting its data; raise start_timeout if restores start slowly"));
        }
    }
}
