//! `export-secrets`: an encrypted copy of a project environment's secrets, kept apart from
//! Infisical, so that losing Infisical (or the account) does not lose the secrets. The DR
//! document asks for one after every rotation.
//!
//! The secrets are read from the Infisical API (https://infisical.com/docs/api-reference):
//! machine identity login `POST /api/v1/auth/universal-auth/login` `{clientId, clientSecret}`
//! → `{accessToken}`, then `GET /api/v4/secrets?projectId=&environment=&secretPath=&recursive=
//! &viewSecretValue=true&expandSecretReferences=false&include_imports=false`
//! (https://infisical.com/docs/api-reference/endpoints/secrets/list) → `{secrets: [{secretKey,
//! secretValue, secretPath, ...}]}`. References stay unexpanded (`${OTHER}`): the export is
//! what Infisical stores, and the referenced secrets are in it too when they are in scope.
//!
//! They are encrypted in memory for one or more age recipients (X25519 public keys,
//! `age1...`; https://age-encryption.org/v1) and only the ciphertext leaves the process: a
//! file (mode 0600, written beside and renamed, so a crash leaves no half file) or an object
//! in an S3-compatible bucket (R2). The clear text is a JSON document:
//! `{"format": "runbook-secrets-export/1", "project_id", "environment", "secret_path",
//! "exported_at", "secrets": [{"key", "value", "path"}]}`. Restore: `age -d -i key.txt FILE`.

use super::s3::{client, s3_error};
use super::saas::Api;
use super::{Outputs, ParamError, StepContext, StepError, TypedStep};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct ExportSecrets;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// The Infisical base URL (default https://app.infisical.com).
    #[serde(default = "default_api")]
    pub api_url: String,
    /// Machine identity (universal auth), from secrets; it needs read access to the secrets.
    pub client_id: String,
    /// The machine identity's client secret (from a secret).
    pub client_secret: String,
    /// The Infisical project (workspace) id.
    pub project_id: String,
    /// `dev`, `staging`, `prod`, ...
    pub environment: String,
    /// The folder to export (default `/`).
    #[serde(default = "default_path")]
    pub secret_path: String,
    /// Also the folders below `secret_path`.
    #[serde(default = "default_true")]
    pub recursive: bool,
    /// age public keys (`age1...`) that can decrypt the export. Keep the private keys away
    /// from Infisical and from this machine (a password manager, a hardware key).
    pub recipients: Vec<String>,
    /// Where the ciphertext goes: `s3://bucket/key` (with `endpoint`/`region` for R2) or a
    /// file path (relative to the directory runbook runs in).
    pub to: String,
    /// The S3-compatible endpoint for an `s3://` target (AWS when absent).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region of the S3-compatible store (default `auto`, as R2 wants).
    #[serde(default = "default_region")]
    pub region: String,
}

fn default_api() -> String {
    "https://app.infisical.com".into()
}
fn default_path() -> String {
    "/".into()
}
fn default_true() -> bool {
    true
}
fn default_region() -> String {
    "auto".into()
}

/// Where the ciphertext goes.
enum Target {
    S3 { bucket: String, key: String },
    File(PathBuf),
}

fn target(to: &str) -> Result<Target, String> {
    match to.strip_prefix("s3://") {
        Some(rest) => match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() && !key.ends_with('/') => {
                Ok(Target::S3 { bucket: bucket.to_owned(), key: key.to_owned() })
            }
            _ => Err(format!("`{to}`: an S3 target is s3://BUCKET/KEY (a whole key, not a prefix)")),
        },
        None if to.trim().is_empty() => Err("give a file path or s3://BUCKET/KEY".into()),
        None if to.ends_with('/') => Err(format!("`{to}` is a directory: give a file name")),
        None => Ok(Target::File(PathBuf::from(to))),
    }
}

fn parse_recipients(keys: &[String]) -> Result<Vec<age::x25519::Recipient>, ParamError> {
    if keys.is_empty() {
        return Err(ParamError::at("recipients", "give at least one age public key (age1...)"));
    }
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            k.trim().parse::<age::x25519::Recipient>().map_err(|e| ParamError {
                path: vec![super::Seg::Key("recipients".into()), super::Seg::Index(i)],
                message: format!("not an age public key ({e}): it looks like age1..., as `age-keygen` prints it"),
            })
        })
        .collect()
}

impl TypedStep for ExportSecrets {
    const NAME: &'static str = "export-secrets";
    const SUMMARY: &'static str =
        "export an Infisical environment's secrets, age-encrypted, to a file (0600) or an S3/R2 object";
    type Params = ExportParams;

    fn idempotent(_: &ExportParams) -> bool {
        // Exporting again writes a fresh copy over the last one: harmless.
        true
    }

    fn validate(p: &ExportParams) -> Result<(), ParamError> {
        if !p.recipients.iter().any(|r| crate::template::is_template(r)) {
            parse_recipients(&p.recipients)?;
        }
        if !crate::template::is_template(&p.to) {
            target(&p.to).map_err(|e| ParamError::at("to", e))?;
        }
        Ok(())
    }

    fn plan(p: &ExportParams) -> String {
        format!(
            "export the secrets of Infisical project {} ({}{}{}), encrypted for {} age key(s), to {}",
            p.project_id,
            p.environment,
            p.secret_path,
            if p.recursive { " and below" } else { "" },
            p.recipients.len(),
            p.to
        )
    }

    async fn run(&self, ctx: &StepContext, p: ExportParams) -> Result<Outputs, StepError> {
        let recipients = parse_recipients(&p.recipients)
            .map_err(|e| StepError::failed(format!("`{}`: {}", e.path_string(), e.message)))?;
        let dest = target(&p.to).map_err(StepError::failed)?;
        let token = super::rotate::infisical_login(&ctx.http, &p.api_url, &p.client_id, &p.client_secret).await?;
        let api = Api::new(&ctx.http, &p.api_url, Some(&token), "Infisical", "the machine identity's access");
        let query = [
            ("projectId", p.project_id.as_str()),
            ("environment", p.environment.as_str()),
            ("secretPath", p.secret_path.as_str()),
            ("recursive", if p.recursive { "true" } else { "false" }),
            ("viewSecretValue", "true"),
            ("expandSecretReferences", "false"),
            ("include_imports", "false"),
        ];
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        let listed = api.get(&format!("/api/v4/secrets?{}", query.join("&"))).await?;
        let secrets = listed
            .get("secrets")
            .and_then(Value::as_array)
            .ok_or_else(|| StepError::failed("Infisical's answer has no `secrets` list"))?;
        let mut entries = Vec::with_capacity(secrets.len());
        let mut keys = Vec::with_capacity(secrets.len());
        for s in secrets {
            let (Some(key), Some(value)) =
                (s.get("secretKey").and_then(Value::as_str), s.get("secretValue").and_then(Value::as_str))
            else {
                return Err(StepError::failed("Infisical listed a secret without `secretKey` or `secretValue`")
                    .with_hint("the machine identity may lack permission to read secret values"));
            };
            let path = s.get("secretPath").and_then(Value::as_str).unwrap_or(&p.secret_path);
            keys.push(format!("{}{}{key}", path, if path.ends_with('/') { "" } else { "/" }));
            entries.push(json!({ "key": key, "value": value, "path": path }));
        }
        if entries.is_empty() {
            return Err(StepError::failed(format!(
                "Infisical has no secrets in {} {}: nothing to export",
                p.environment, p.secret_path
            ))
            .with_hint("check project_id, environment and secret_path, and the identity's read access"));
        }
        let exported_at = jiff::Timestamp::now().to_string();
        let doc = json!({
            "format": "runbook-secrets-export/1",
            "project_id": p.project_id,
            "environment": p.environment,
            "secret_path": p.secret_path,
            "exported_at": exported_at,
            "secrets": entries,
        });
        drop(listed);
        let mut plain = serde_json::to_vec(&doc).map_err(|e| StepError::failed(format!("cannot encode: {e}")))?;
        drop(doc);
        let cipher = encrypt(&recipients, &plain);
        // The clear text lived only in memory; overwrite it before the allocation is freed.
        plain.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&plain);
        drop(plain);
        let cipher = cipher?;
        let sha = hex(&sha2::Sha256::digest(&cipher));
        let bytes = cipher.len();
        let written = match dest {
            Target::File(path) => {
                let path = if path.is_absolute() { path } else { ctx.work_dir.join(path) };
                let shown = path.display().to_string();
                tokio::task::spawn_blocking(move || write_private(&path, &cipher))
                    .await
                    .map_err(|e| StepError::failed(format!("writing {shown}: {e}")))??;
                shown
            }
            Target::S3 { bucket, key } => {
                // An optional input left out renders empty: that is "AWS", not an endpoint.
                let c = client(p.endpoint.as_deref().filter(|e| !e.trim().is_empty()), &p.region)?;
                c.put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .content_type("application/octet-stream")
                    .body(cipher.into())
                    .send()
                    .await
                    .map_err(|e| s3_error(&format!("PutObject s3://{bucket}/{key}"), e))?;
                format!("s3://{bucket}/{key}")
            }
        };
        Ok(json!({
            "to": written,
            "count": keys.len(),
            "keys": keys,
            "bytes": bytes,
            "sha256": sha,
            "recipients": p.recipients.len(),
            "exported_at": exported_at,
            "decrypt": format!("age -d -i KEY_FILE {written}"),
        }))
    }
}

fn encrypt(recipients: &[age::x25519::Recipient], plain: &[u8]) -> Result<Vec<u8>, StepError> {
    let fail = |e: &dyn std::fmt::Display| StepError::failed(format!("age encryption failed: {e}"));
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient)).map_err(|e| fail(&e))?;
    let mut out = Vec::with_capacity(plain.len() + 512);
    let mut w = encryptor.wrap_output(&mut out).map_err(|e| fail(&e))?;
    w.write_all(plain).map_err(|e| fail(&e))?;
    w.finish().map_err(|e| fail(&e))?;
    Ok(out)
}

/// Beside the target with mode 0600 from the start (never a moment readable by others),
/// synced, then renamed over it.
fn write_private(path: &Path, data: &[u8]) -> Result<(), StepError> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |what: &str, e: std::io::Error| StepError::failed(format!("{what} {}: {e}", path.display()));
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(StepError::failed(format!("{} does not exist", dir.display()))
            .with_hint("create the directory first (keep it off the machine Infisical runs on)"));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail("cannot create a file beside", e))?;
    let res = f.write_all(data).and_then(|_| f.sync_all());
    drop(f);
    if let Err(e) = res.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("cannot write", e));
    }
    Ok(())
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert!(
            matches!(target("s3://b/k/x.age"), Ok(Target::S3 { bucket, key }) if bucket == "b" && key == "k/x.age")
        );
        assert!(target("s3://b/").is_err());
        assert!(target("s3://b").is_err());
        assert!(target("out/").is_err());
        assert!(matches!(target("x.age"), Ok(Target::File(_))));
    }

    #[test]
    fn encrypts_for_every_recipient() {
        let a = age::x25519::Identity::generate();
        let b = age::x25519::Identity::generate();
        let c = encrypt(&[a.to_public(), b.to_public()], b"{\"k\":\"v\"}").unwrap();
        assert!(!c.windows(3).any(|w| w == b"\"v\""));
        assert_eq!(age::decrypt(&a, &c).unwrap(), b"{\"k\":\"v\"}");
        assert_eq!(age::decrypt(&b, &c).unwrap(), b"{\"k\":\"v\"}");
    }
}
