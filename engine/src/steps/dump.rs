//! `pg-dump`: the manual backups of the DR document (`pg_dump` full and schema-only), with
//! the PostgreSQL client tools (`pg-restore` is in pg_restore.rs). Passwords travel in
//! PGPASSWORD, never on a command line.

use super::pg;
use super::pg::pg_command;
use super::support::tail_lines;
use super::{Outputs, StepContext, StepError, TypedStep};
use schemars::JsonSchema;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// SQL text (`backup-*.sql`), restorable with psql.
    #[default]
    Plain,
    /// pg_dump's custom format (`backup-*.dump`): compressed, tables restorable one by one.
    Custom,
}

pub struct PgDump;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DumpParams {
    /// The database to dump: `postgresql://user@host:port/db` (the password may come from PGPASSWORD).
    pub url: String,
    /// A file, or a folder (ending in `/` or existing) for `backup-YYYYMMDD-HHMMSS.sql|dump`
    /// (`schema-...` with `schema_only`), or `s3://bucket/prefix/` to stream the dump to
    /// S3/R2 with a multipart upload (no temporary file).
    pub to: String,
    /// With an `s3://` destination: the store (`endpoint`, `region`).
    #[serde(default)]
    pub s3: Option<super::s3::Store>,
    /// Dump the schema only, no data.
    #[serde(default)]
    pub schema_only: bool,
    /// `plain` (SQL text) or `custom` (pg_dump -Fc, for pg-restore).
    #[serde(default)]
    pub format: DumpFormat,
    /// Only these tables (`schema.table`).
    #[serde(default)]
    pub tables: Vec<String>,
}

impl TypedStep for PgDump {
    const NAME: &'static str = "pg-dump";
    const SUMMARY: &'static str = "pg_dump full or schema-only to a file, with size and sha256";
    type Params = DumpParams;

    fn idempotent(_: &DumpParams) -> bool {
        false
    }

    fn plan(p: &DumpParams) -> String {
        let url = pg::label(&p.url);
        let what = if p.schema_only { "schema of" } else { "all of" };
        let format = match p.format {
            DumpFormat::Plain => "plain SQL",
            DumpFormat::Custom => "custom format",
        };
        format!("dump {what} {url} ({format}) to {}", p.to)
    }

    async fn run(&self, ctx: &StepContext, p: DumpParams) -> Result<Outputs, StepError> {
        let started = Instant::now();
        let (conn, env) = pg::tool_env(&p.url)?;
        let mut cmd = pg_command("pg_dump", None);
        cmd.arg("--dbname").arg(&conn).arg("--no-password").envs(env);
        cmd.arg(match p.format {
            DumpFormat::Plain => "--format=plain",
            DumpFormat::Custom => "--format=custom",
        });
        if p.schema_only {
            cmd.arg("--schema-only");
        }
        for t in &p.tables {
            cmd.arg("--table").arg(t);
        }
        let format = match p.format {
            DumpFormat::Plain => "plain",
            DumpFormat::Custom => "custom",
        };
        if let Some(rest) = p.to.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let key = if prefix.is_empty() || prefix.ends_with('/') {
                format!("{prefix}{}", file_name(&p))
            } else {
                prefix.to_owned()
            };
            let store = p.s3.clone().unwrap_or(super::s3::Store { endpoint: None, region: "auto".into() });
            let (bytes, sha256, parts) = stream_to_s3(cmd, &store, bucket, &key).await?;
            return Ok(serde_json::json!({
                "path": format!("s3://{bucket}/{key}"),
                "bytes": bytes,
                "sha256": sha256,
                "parts": parts,
                "format": format,
                "duration_ms": started.elapsed().as_millis() as u64,
            }));
        }
        let path = destination(&ctx.work_dir, &p)?;
        let tmp = path.with_extension("partial");
        // A full copy of the database: private from its first byte (pg_dump keeps the mode
        // of the file it truncates).
        private_file(&tmp)?;
        cmd.arg("--file").arg(&tmp);
        let out = super::support::output_in_group(cmd, &ctx.step_id).await.map_err(pg_dump_missing)?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            return Err(pg_dump_failed(&out.stderr));
        }
        std::fs::rename(&tmp, &path).map_err(|e| StepError::failed(format!("cannot move the dump into place: {e}")))?;
        // Hashing a dump of many GB takes seconds of CPU: on a blocking thread, so the other
        // branches of the run (and Ctrl-C, and timeouts) go on meanwhile.
        let (bytes, sha256) = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || digest(&path))
                .await
                .map_err(|e| StepError::failed(format!("hashing the dump failed: {e}")))??
        };
        Ok(serde_json::json!({
            "path": path.display().to_string(),
            "bytes": bytes,
            "sha256": sha256,
            "format": format,
            "duration_ms": started.elapsed().as_millis() as u64,
        }))
    }
}

fn pg_dump_missing(e: std::io::Error) -> StepError {
    StepError::failed(format!("cannot run pg_dump: {e}"))
        .with_hint("install the PostgreSQL client (postgresql-client) or set RUNBOOK_PG_BIN")
}

fn pg_dump_failed(stderr: &[u8]) -> StepError {
    let err = String::from_utf8_lossy(stderr);
    let hint = if err.contains("server version mismatch") {
        "pg_dump must be at least as new as the server: install the matching postgresql-client"
    } else {
        "check the connection string and the user's rights"
    };
    StepError::failed(format!("pg_dump failed: {}", tail_lines(&err, 5))).with_hint(hint)
}

/// Parts of a streamed upload: S3's minimum part size is 5 MiB; 8 MiB keeps memory flat.
const PART: usize = 8 * 1024 * 1024;

/// Streams pg_dump's stdout into a multipart upload, hashing on the way. A failed dump
/// aborts the upload, so no half backup is left looking like a whole one.
async fn stream_to_s3(
    mut cmd: tokio::process::Command,
    store: &super::s3::Store,
    bucket: &str,
    key: &str,
) -> Result<(u64, String, usize), StepError> {
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    use tokio::io::AsyncReadExt;
    let c = super::s3::client(store.endpoint.as_deref(), &store.region)?;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(pg_dump_missing)?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let stderr_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });
    let upload = c
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| super::s3::s3_error(&format!("CreateMultipartUpload s3://{bucket}/{key}"), e))?;
    let upload_id = upload.upload_id().unwrap_or_default().to_owned();
    let abort = |c: aws_sdk_s3::Client, why: StepError| {
        let (bucket, key, id) = (bucket.to_owned(), key.to_owned(), upload_id.clone());
        async move {
            let _ = c.abort_multipart_upload().bucket(bucket).key(key).upload_id(id).send().await;
            why
        }
    };
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut parts = Vec::new();
    loop {
        let mut buf = Vec::with_capacity(PART);
        while buf.len() < PART {
            let n = match (&mut stdout).take((PART - buf.len()) as u64).read_to_end(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    return Err(abort(c.clone(), StepError::failed(format!("reading pg_dump's output: {e}"))).await);
                }
            };
            if n == 0 {
                break;
            }
        }
        if buf.is_empty() && !parts.is_empty() {
            break;
        }
        // A part is many MB: hashed off the runtime, like the dump file's digest.
        let hashed = tokio::task::spawn_blocking(move || {
            hasher.update(&buf);
            (hasher, buf)
        })
        .await;
        (hasher, buf) = match hashed {
            Ok(hb) => hb,
            Err(e) => return Err(abort(c.clone(), StepError::failed(format!("hashing the dump failed: {e}"))).await),
        };
        total += buf.len() as u64;
        let number = parts.len() as i32 + 1;
        let last = buf.len() < PART;
        let part = c
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(buf))
            .send()
            .await;
        match part {
            Ok(r) => {
                parts.push(CompletedPart::builder().part_number(number).set_e_tag(r.e_tag().map(str::to_owned)).build())
            }
            Err(e) => {
                return Err(abort(
                    c.clone(),
                    super::s3::s3_error(&format!("UploadPart {number} of s3://{bucket}/{key}"), e),
                )
                .await);
            }
        }
        if last {
            break;
        }
    }
    let status = child.wait().await.map_err(|e| StepError::failed(format!("waiting for pg_dump: {e}")))?;
    let err = stderr_task.await.unwrap_or_default();
    if !status.success() {
        return Err(abort(c.clone(), pg_dump_failed(&err)).await);
    }
    let n = parts.len();
    c.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .map_err(|e| super::s3::s3_error(&format!("CompleteMultipartUpload s3://{bucket}/{key}"), e))?;
    Ok((total, crate::playbook::hex(&hasher.finalize()), n))
}

/// `backup-YYYYMMDD-HHMMSS.sql|dump`, or `schema-...` for schema-only dumps.
fn file_name(p: &DumpParams) -> String {
    let stamp = jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S");
    let kind = if p.schema_only { "schema" } else { "backup" };
    let ext = match p.format {
        DumpFormat::Plain => "sql",
        DumpFormat::Custom => "dump",
    };
    format!("{kind}-{stamp}.{ext}")
}

fn destination(work: &Path, p: &DumpParams) -> Result<PathBuf, StepError> {
    let to = work.join(&p.to);
    if p.to.ends_with('/') || to.is_dir() {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&to)
            .map_err(|e| StepError::failed(format!("cannot create {}: {e}", to.display())))?;
        return Ok(to.join(file_name(p)));
    }
    if to.exists() {
        return Err(StepError::failed(format!("{} exists; a backup never overwrites a file", to.display())));
    }
    Ok(to)
}

fn private_file(path: &Path) -> Result<(), StepError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path);
    f.and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(0o600)))
        .map_err(|e| StepError::failed(format!("cannot create {}: {e}", path.display())))
}

fn digest(path: &Path) -> Result<(u64, String), StepError> {
    let mut f =
        std::fs::File::open(path).map_err(|e| StepError::failed(format!("cannot read {}: {e}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| StepError::failed(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((total, crate::playbook::hex(&h.finalize())))
}
