//! Object storage (S3, Cloudflare R2, MinIO, ...) with aws-sdk-s3: `s3-versioning`,
//! `s3-copy` and `s3-restore-versions`.
//!
//! The DR document asks for bucket versioning on R2 as the rollback for media; R2 has no
//! S3 bucket versioning (it answers `NotImplemented`), so `s3-versioning` reports that as a
//! finding (`Unsupported`), and the realistic alternative is a backup copy: `s3-copy` into a
//! backup bucket/prefix (skipping what is already there, so it can run every night and
//! resume after a failure), and `s3-restore-versions` with `from:` to copy it back. On
//! stores with versioning, `s3-restore-versions` puts every object under a prefix back to
//! its version as of a time.
//!
//! Credentials: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) from
//! the environment (list them in `secrets:`). Path-style addressing, region `auto` for R2,
//! checksums only where required (R2 rejects some of the SDK's default ones).

use super::{Outputs, ParamError, StepContext, StepError, TypedStep};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Where the store is.
#[derive(Debug, Deserialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// Any S3-compatible endpoint, e.g. https://ACCOUNT.r2.cloudflarestorage.com; AWS when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `auto` for R2.
    #[serde(default = "default_region")]
    pub region: String,
}

fn default_region() -> String {
    "auto".into()
}

pub fn client(endpoint: Option<&str>, region: &str) -> Result<Client, StepError> {
    let key = std::env::var("AWS_ACCESS_KEY_ID").map_err(|_| {
        StepError::failed("AWS_ACCESS_KEY_ID is not set")
            .with_hint("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (R2: an API token's S3 credentials)")
    })?;
    let secret =
        std::env::var("AWS_SECRET_ACCESS_KEY").map_err(|_| StepError::failed("AWS_SECRET_ACCESS_KEY is not set"))?;
    let token = std::env::var("AWS_SESSION_TOKEN").ok();
    let mut b = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new(key, secret, token, None, "environment"))
        .region(Region::new(region.to_owned()))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(e) = endpoint {
        b = b.endpoint_url(e);
    }
    Ok(Client::from_conf(b.build()))
}

/// An S3 error with the service's code and words, and a hint for the usual suspects.
pub fn s3_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    e: aws_sdk_s3::error::SdkError<E, R>,
) -> StepError {
    let code = e.code().map(str::to_owned);
    let msg = match (&code, e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        _ => {
            // The SDK's full context is long (it includes the raw response); keep the start.
            let full = DisplayErrorContext(&e).to_string();
            let cut: String = full.chars().take(300).collect();
            if cut.len() < full.len() { format!("{cut}…") } else { cut }
        }
    };
    let hint = match code.as_deref() {
        Some("NoSuchBucket") => Some("check the bucket name and the endpoint"),
        Some("AccessDenied") | Some("InvalidAccessKeyId") | Some("SignatureDoesNotMatch") => {
            Some("check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the token's permissions")
        }
        _ => None,
    };
    let err = StepError::failed(format!("{what}: {msg}"));
    match hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

pub struct S3Versioning;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VersioningParams {
    /// The bucket to inspect.
    pub bucket: String,
    #[serde(flatten)]
    pub store: Store,
}

impl TypedStep for S3Versioning {
    const NAME: &'static str = "s3-versioning";
    const SUMMARY: &'static str = "report a bucket's versioning status (Enabled | Suspended | Disabled | Unsupported)";
    type Params = VersioningParams;

    fn idempotent(_: &VersioningParams) -> bool {
        true
    }

    fn plan(p: &VersioningParams) -> String {
        format!("read the versioning status of bucket {}", p.bucket)
    }

    async fn run(&self, _ctx: &StepContext, p: VersioningParams) -> Result<Outputs, StepError> {
        let c = client(p.store.endpoint.as_deref(), &p.store.region)?;
        match c.get_bucket_versioning().bucket(&p.bucket).send().await {
            Ok(v) => {
                let status = v.status().map(|s| s.as_str().to_owned()).unwrap_or_else(|| "Disabled".into());
                Ok(json!({ "bucket": p.bucket, "status": status, "finding": null }))
            }
            Err(e) if e.code() == Some("NotImplemented") => Ok(json!({
                "bucket": p.bucket,
                "status": "Unsupported",
                "finding": "this store does not implement S3 bucket versioning (Cloudflare R2 does not): keep a backup copy with s3-copy and restore from it with s3-restore-versions `from:`",
            })),
            Err(e) => Err(s3_error(&format!("GetBucketVersioning {}", p.bucket), e)),
        }
    }
}

/// A bucket and a key prefix.
#[derive(Debug, Deserialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// The bucket name.
    pub bucket: String,
    /// Only keys under this prefix (default: the whole bucket).
    #[serde(default)]
    pub prefix: String,
}

pub struct S3Copy;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyParams {
    /// Where to copy from: `bucket` and optional `prefix`.
    pub source: Location,
    /// Where to copy to: `bucket` and optional `prefix`.
    pub target: Location,
    #[serde(flatten)]
    pub store: Store,
    /// Copies in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_concurrency() -> usize {
    16
}

impl TypedStep for S3Copy {
    const NAME: &'static str = "s3-copy";
    const SUMMARY: &'static str = "copy a bucket/prefix to another (skips identical objects; resumable)";
    type Params = CopyParams;

    fn idempotent(_: &CopyParams) -> bool {
        // Copying again skips what is there: harmless.
        true
    }

    fn validate(p: &CopyParams) -> Result<(), ParamError> {
        if !(1..=256).contains(&p.concurrency) {
            return Err(ParamError::at("concurrency", "between 1 and 256"));
        }
        if p.source.bucket == p.target.bucket
            && (p.target.prefix.starts_with(&p.source.prefix) || p.source.prefix.starts_with(&p.target.prefix))
        {
            return Err(ParamError::at(
                "target",
                "the target overlaps the source: use another bucket or a separate prefix",
            ));
        }
        Ok(())
    }

    fn plan(p: &CopyParams) -> String {
        format!(
            "copy s3://{}/{} to s3://{}/{} (skipping identical objects)",
            p.source.bucket, p.source.prefix, p.target.bucket, p.target.prefix
        )
    }

    async fn run(&self, _ctx: &StepContext, p: CopyParams) -> Result<Outputs, StepError> {
        let c = client(p.store.endpoint.as_deref(), &p.store.region)?;
        let (copied, skipped, bytes) = copy_prefix(&c, &p.source, &p.target, p.concurrency).await?;
        Ok(json!({ "copied": copied, "skipped": skipped, "bytes": bytes }))
    }
}

struct Object {
    key: String,
    etag: String,
    size: i64,
}

async fn list(c: &Client, loc: &Location) -> Result<Vec<Object>, StepError> {
    let mut out = Vec::new();
    let mut pages = c.list_objects_v2().bucket(&loc.bucket).prefix(&loc.prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| s3_error(&format!("ListObjectsV2 {}", loc.bucket), e))?;
        for o in page.contents() {
            out.push(Object {
                key: o.key().unwrap_or_default().to_owned(),
                etag: o.e_tag().unwrap_or_default().to_owned(),
                size: o.size().unwrap_or(0),
            });
        }
    }
    Ok(out)
}

/// Copies every object under `from` to `to`, keys re-rooted; identical ones (ETag and size)
/// are skipped. Returns (copied, skipped, bytes copied).
pub async fn copy_prefix(
    c: &Client,
    from: &Location,
    to: &Location,
    concurrency: usize,
) -> Result<(u64, u64, i64), StepError> {
    let (source, target) = tokio::try_join!(list(c, from), list(c, to))?;
    let have: HashMap<&str, (&str, i64)> = target.iter().map(|o| (o.key.as_str(), (o.etag.as_str(), o.size))).collect();
    let mut todo = Vec::new();
    let mut skipped = 0u64;
    for o in &source {
        let rel = o.key.strip_prefix(&from.prefix).unwrap_or(&o.key);
        let dest = format!("{}{rel}", to.prefix);
        if have.get(dest.as_str()) == Some(&(o.etag.as_str(), o.size)) {
            skipped += 1;
        } else {
            todo.push((o.key.clone(), dest, o.size));
        }
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (key, dest, size) in todo {
        let (c, limit) = (c.clone(), limit.clone());
        let (src_bucket, dst_bucket) = (from.bucket.clone(), to.bucket.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            c.copy_object()
                .copy_source(format!("{src_bucket}/{}", encode_key(&key)))
                .bucket(&dst_bucket)
                .key(&dest)
                .send()
                .await
                .map(|_| size)
                .map_err(|e| s3_error(&format!("CopyObject {key} -> {dst_bucket}/{dest}"), e))
        });
    }
    let (mut copied, mut bytes) = (0u64, 0i64);
    while let Some(r) = tasks.join_next().await {
        let size = r.map_err(|e| StepError::failed(format!("copy task failed: {e}")))??;
        copied += 1;
        bytes += size;
    }
    Ok((copied, skipped, bytes))
}

/// `x-amz-copy-source` wants the key URL-encoded (slashes kept).
fn encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub struct S3RestoreVersions;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreVersionsParams {
    /// The bucket whose objects are put back.
    pub bucket: String,
    /// Only keys under this prefix (default: the whole bucket).
    #[serde(default)]
    pub prefix: String,
    /// RFC 3339: put each object back to its version at this time (versioned buckets).
    #[serde(default)]
    pub at: Option<String>,
    /// Or copy back from a backup copy (stores without versioning, such as R2).
    #[serde(default)]
    pub from: Option<Location>,
    /// With `at`: delete objects created after that time (default true).
    #[serde(default = "yes")]
    pub delete_newer: bool,
    #[serde(flatten)]
    pub store: Store,
}

fn yes() -> bool {
    true
}

impl TypedStep for S3RestoreVersions {
    const NAME: &'static str = "s3-restore-versions";
    const SUMMARY: &'static str =
        "put objects under a prefix back to their version at a time, or copy them back from a backup";
    type Params = RestoreVersionsParams;

    fn idempotent(_: &RestoreVersionsParams) -> bool {
        false
    }

    fn validate(p: &RestoreVersionsParams) -> Result<(), ParamError> {
        match (&p.at, &p.from) {
            (Some(_), Some(_)) => {
                Err(ParamError::at("from", "give `at` (versioned bucket) or `from` (backup copy), not both"))
            }
            (None, None) => {
                Err(ParamError::root("missing `at` (a time, for versioned buckets) or `from` (a backup copy)"))
            }
            _ => Ok(()),
        }
    }

    fn plan(p: &RestoreVersionsParams) -> String {
        match (&p.at, &p.from) {
            (Some(t), _) => format!("put s3://{}/{} back to the versions of {t}", p.bucket, p.prefix),
            (_, Some(f)) => format!("copy s3://{}/{} back over s3://{}/{}", f.bucket, f.prefix, p.bucket, p.prefix),
            _ => "nothing".into(),
        }
    }

    async fn run(&self, _ctx: &StepContext, p: RestoreVersionsParams) -> Result<Outputs, StepError> {
        let c = client(p.store.endpoint.as_deref(), &p.store.region)?;
        if let Some(from) = &p.from {
            let target = Location { bucket: p.bucket.clone(), prefix: p.prefix.clone() };
            let (copied, skipped, bytes) = copy_prefix(&c, from, &target, 16).await?;
            return Ok(json!({ "restored": copied, "unchanged": skipped, "deleted": 0, "bytes": bytes }));
        }
        let at_text = p.at.clone().unwrap_or_default();
        let at: jiff::Timestamp = at_text
            .parse()
            .map_err(|e| StepError::failed(format!("`at` `{at_text}` is not an RFC 3339 timestamp: {e}")))?;
        // Every version and delete marker under the prefix, per key.
        #[derive(Clone)]
        struct V {
            id: String,
            time: i64,
            latest: bool,
            deleted: bool,
        }
        let mut by_key: HashMap<String, Vec<V>> = HashMap::new();
        // ListObjectVersions has no paginator in the SDK: follow the markers by hand.
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = c
                .list_object_versions()
                .bucket(&p.bucket)
                .prefix(&p.prefix)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .map_err(|e| s3_error(&format!("ListObjectVersions {}", p.bucket), e))?;
            let millis = |t: Option<&aws_sdk_s3::primitives::DateTime>| {
                t.map(|t| t.secs() * 1000 + t.subsec_nanos() as i64 / 1_000_000).unwrap_or(0)
            };
            let versions = page
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id(), millis(v.last_modified()), v.is_latest(), false));
            let markers = page
                .delete_markers()
                .iter()
                .map(|m| (m.key(), m.version_id(), millis(m.last_modified()), m.is_latest(), true));
            for (key, id, time, latest, deleted) in versions.chain(markers) {
                by_key.entry(key.unwrap_or_default().to_owned()).or_default().push(V {
                    id: id.unwrap_or_default().to_owned(),
                    time,
                    latest: latest.unwrap_or(false),
                    deleted,
                });
            }
            if !page.is_truncated().unwrap_or(false) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                break;
            }
        }
        if by_key.is_empty() {
            return Ok(json!({ "restored": 0, "deleted": 0, "unchanged": 0, "bytes": 0 }));
        }
        let cutoff = at.as_millisecond();
        let (mut restored, mut deleted, mut unchanged) = (0u64, 0u64, 0u64);
        for (key, mut versions) in by_key {
            versions.sort_by_key(|v| v.time);
            let then = versions.iter().rev().find(|v| v.time <= cutoff).cloned();
            let now = versions.iter().find(|v| v.latest).cloned().or_else(|| versions.last().cloned());
            // What the object was then decides: the same version, gone then (and there now),
            // another version, or not there yet.
            let live_now = now.as_ref().is_some_and(|n| !n.deleted);
            let restore_to = match (&then, &now) {
                (Some(t), Some(n)) if t.id == n.id => None,
                (Some(t), _) if t.deleted => Some(None),
                (Some(t), _) => Some(Some(t.id.clone())),
                (None, _) if p.delete_newer => Some(None),
                (None, _) => None,
            };
            match restore_to {
                Some(Some(version)) => {
                    c.copy_object()
                        .bucket(&p.bucket)
                        .key(&key)
                        .copy_source(format!("{}/{}?versionId={version}", p.bucket, encode_key(&key)))
                        .send()
                        .await
                        .map_err(|e| s3_error(&format!("CopyObject {key} (version {version})"), e))?;
                    restored += 1;
                }
                Some(None) if live_now => {
                    c.delete_object()
                        .bucket(&p.bucket)
                        .key(&key)
                        .send()
                        .await
                        .map_err(|e| s3_error(&format!("DeleteObject {key}"), e))?;
                    deleted += 1;
                }
                _ => unchanged += 1,
            }
        }
        Ok(json!({ "restored": restored, "deleted": deleted, "unchanged": unchanged }))
    }
}
