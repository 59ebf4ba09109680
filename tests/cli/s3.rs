//! Object storage steps against a real S3-compatible server run locally (moto, installed by
//! .ci/run into .ci/venv), and an R2-like fake that answers `NotImplemented` for versioning.

use crate::support::{Env, finish, status, step};
use aws_sdk_s3::primitives::ByteStream;
use std::time::Duration;

pub(crate) struct Moto(std::process::Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto_server() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return p.into();
    }
    let venv = crate::support::repo_root().join(".ci/venv/bin/moto_server");
    if venv.exists() { venv } else { "moto_server".into() }
}

/// The moto series the tests are pinned to (.ci/run installs `moto[s3,server]==5.0.28`):
/// moto 5.1+ answers GetBucketVersioning and CompleteMultipartUpload with XML roots that
/// S3 does not use and aws-sdk-s3 rightly refuses, so a test against it would fail for
/// the server's fault, not ours.
const MOTO_SERIES: &str = "5.0.";

/// The version of the moto behind a `moto_server` script, read with the Python of its
/// shebang line (a venv's script names its own interpreter).
fn moto_version(server: &std::path::Path) -> Result<String, String> {
    let script = std::fs::read_to_string(server)
        .or_else(|_| which(server).and_then(|p| std::fs::read_to_string(p).ok()).ok_or(()))
        .map_err(|_| format!("cannot read {}", server.display()))?;
    let python = script
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .map(str::trim)
        .filter(|p| p.contains("python"))
        .ok_or_else(|| format!("{} is not a Python script of a venv (a pyenv shim?)", server.display()))?;
    let out = std::process::Command::new(python)
        .args(["-c", "import moto; print(moto.__version__)"])
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn which(p: &std::path::Path) -> Option<std::path::PathBuf> {
    if p.components().count() > 1 {
        return None;
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(p)).find(|c| c.is_file())
}

impl Moto {
    pub(crate) fn start() -> Moto {
        let server = moto_server();
        match moto_version(&server) {
            Ok(v) if v.starts_with(MOTO_SERIES) => {}
            Ok(v) => panic!(
                "{} is moto {v}; these tests need moto {MOTO_SERIES}x (5.1+ answers S3 calls with XML the SDK refuses). \
                 Run `bash .ci/run` (installs moto[s3,server]==5.0.28 into .ci/venv) or set MOTO_SERVER=.ci/venv/bin/moto_server",
                server.display()
            ),
            Err(e) => panic!(
                "cannot tell which moto {} is ({e}); set MOTO_SERVER=.ci/venv/bin/moto_server (`bash .ci/run` installs it)",
                server.display()
            ),
        }
        let port = crate::pg_cluster::free_port();
        let child = std::process::Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server runs (bash .ci/run installs it into .ci/venv; or set MOTO_SERVER)");
        // Owned before the wait, so a server that never listens is still killed.
        let moto = Moto(child, port);
        crate::support::listening("moto_server did not start", port);
        moto
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.1)
    }
}

fn creds() {
    // SAFETY: set before any thread of this test process reads the environment.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    }
}

async fn put(c: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) {
    c.put_object().bucket(bucket).key(key).body(ByteStream::from(body.as_bytes().to_vec())).send().await.unwrap();
}

async fn get(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<String> {
    let o = c.get_object().bucket(bucket).key(key).send().await.ok()?;
    Some(String::from_utf8(o.body.collect().await.unwrap().into_bytes().to_vec()).unwrap())
}

async fn run(env: &Env, run_id: &str, body: &str) -> (i32, serde_json::Value, String) {
    env.write(
        &format!("{run_id}.yaml"),
        &format!("apiVersion: runbook/v1\nname: s3\nsecrets: [AWS_SECRET_ACCESS_KEY]\nsteps:\n{body}"),
    );
    let mut cmd = env.command(&["exec", &format!("{run_id}.yaml"), "--run-id", run_id]);
    cmd.env("AWS_ACCESS_KEY_ID", "testing").env("AWS_SECRET_ACCESS_KEY", "testing");
    let out = tokio::task::spawn_blocking(move || finish(cmd.output().unwrap())).await.unwrap();
    (out.code, env.show(run_id), out.all())
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_a_versioned_prefix_to_a_point_in_time() {
    creds();
    let moto = Moto::start();
    let c = runbook::steps::s3::client(Some(&moto.endpoint()), "us-east-1").unwrap();
    c.create_bucket().bucket("media").send().await.unwrap();
    c.put_bucket_versioning()
        .bucket("media")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    put(&c, "media", "img/a.png", "a-v1").await;
    put(&c, "media", "img/b.png", "b-v1").await;
    put(&c, "media", "other/x.png", "x-v1").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let at = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    put(&c, "media", "img/a.png", "a-v2-corrupt").await;
    c.delete_object().bucket("media").key("img/b.png").send().await.unwrap();
    put(&c, "media", "img/c.png", "c-new").await;
    put(&c, "media", "other/x.png", "x-v2").await;

    let env = Env::new();
    let e = moto.endpoint();
    // The pinned moto answers GetBucketVersioning as S3 does, so the check runs on it too.
    let (code, show, out) = run(&env, "v1", &format!(
        "  - id: versioning\n    type: s3-versioning\n    with: {{ bucket: media, endpoint: \"{e}\", region: us-east-1 }}\n  - id: restore\n    type: s3-restore-versions\n    needs: [versioning]\n    with: {{ bucket: media, prefix: img/, at: \"{at}\", endpoint: \"{e}\", region: us-east-1 }}\n"
    )).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "versioning")["outputs"]["status"], "Enabled");
    assert_eq!(step(&show, "restore")["outputs"], serde_json::json!({"restored": 2, "deleted": 1, "unchanged": 0}));
    assert_eq!(get(&c, "media", "img/a.png").await.as_deref(), Some("a-v1"));
    assert_eq!(get(&c, "media", "img/b.png").await.as_deref(), Some("b-v1"));
    assert_eq!(get(&c, "media", "img/c.png").await, None);
    assert_eq!(get(&c, "media", "other/x.png").await.as_deref(), Some("x-v2"), "outside the prefix: untouched");
    assert!(!out.contains("testing"), "a secret leaked: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_copy_is_resumable_and_restores_without_versioning() {
    creds();
    let moto = Moto::start();
    let c = runbook::steps::s3::client(Some(&moto.endpoint()), "us-east-1").unwrap();
    c.create_bucket().bucket("media").send().await.unwrap();
    c.create_bucket().bucket("media-backup").send().await.unwrap();
    for i in 0..40 {
        put(&c, "media", &format!("u/{i:03} file.png"), &format!("content {i}")).await;
    }
    let env = Env::new();
    let e = moto.endpoint();
    let copy = format!(
        "  - id: copy\n    type: s3-copy\n    with: {{ source: {{ bucket: media, prefix: u/ }}, target: {{ bucket: media-backup, prefix: \"2026-11-27/\" }}, endpoint: \"{e}\", region: us-east-1 }}\n"
    );
    let (code, show, out) = run(&env, "c1", &copy).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "copy")["outputs"]["copied"], 40);
    // A bucket that never had versioning: moto answers an empty VersioningConfiguration, as S3 does.
    let (code, show, out) = run(&env, "v0", &format!(
        "  - id: versioning\n    type: s3-versioning\n    with: {{ bucket: media-backup, endpoint: \"{e}\", region: us-east-1 }}\n"
    )).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "versioning")["outputs"]["status"], "Disabled");
    assert_eq!(get(&c, "media-backup", "2026-11-27/007 file.png").await.as_deref(), Some("content 7"));
    // Again: nothing to do. After a change: just that object.
    let (_, show, _) = run(&env, "c2", &copy).await;
    assert_eq!(
        (step(&show, "copy")["outputs"]["copied"].as_u64(), step(&show, "copy")["outputs"]["skipped"].as_u64()),
        (Some(0), Some(40))
    );
    put(&c, "media", "u/003 file.png", "changed").await;
    let (_, show, _) = run(&env, "c3", &copy).await;
    assert_eq!(step(&show, "copy")["outputs"]["copied"], 1);
    // The incident: objects overwritten; restore from the backup copy.
    put(&c, "media", "u/010 file.png", "garbage").await;
    put(&c, "media", "u/011 file.png", "garbage").await;
    let (code, show, out) = run(&env, "r1", &format!(
        "  - id: restore\n    type: s3-restore-versions\n    with: {{ bucket: media, prefix: u/, from: {{ bucket: media-backup, prefix: \"2026-11-27/\" }}, endpoint: \"{e}\", region: us-east-1 }}\n"
    )).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "restore")["outputs"]["restored"], 2);
    assert_eq!(get(&c, "media", "u/010 file.png").await.as_deref(), Some("content 10"));
    // Errors name the bucket and say what to check.
    let (code, show, _) = run(&env, "e1", &format!("  - id: missing\n    type: s3-copy\n    with: {{ source: {{ bucket: nope }}, target: {{ bucket: media-backup }}, endpoint: \"{e}\", region: us-east-1 }}\n")).await;
    assert_eq!(code, 1);
    assert_eq!(status(&show, "missing"), "failed");
    assert!(
        step(&show, "missing")["error"].as_str().unwrap().starts_with("ListObjectsV2 nope: NoSuchBucket"),
        "{}",
        step(&show, "missing")["error"]
    );
}

/// Versioning status as AWS answers it (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketVersioning.html:
/// `<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>`), and as
/// Cloudflare R2 does: 501 NotImplemented
/// (https://developers.cloudflare.com/r2/api/s3/api/: bucket versioning is not supported).
#[tokio::test(flavor = "multi_thread")]
async fn r2_without_versioning_is_a_finding_not_a_crash() {
    use wiremock::matchers::{method, path_regex, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let aws = MockServer::start().await;
    Mock::given(method("GET")).and(path_regex("^/media/?$")).and(query_param("versioning", ""))
        .respond_with(ResponseTemplate::new(200).insert_header("content-type", "application/xml").set_body_string(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>Enabled</Status></VersioningConfiguration>",
        ))
        .mount(&aws).await;
    let env = Env::new();
    let (code, show, out) = run(&env, "aws", &format!("  - id: versioning\n    type: s3-versioning\n    with: {{ bucket: media, endpoint: \"{}\", region: us-east-1 }}\n", aws.uri())).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "versioning")["outputs"]["status"], "Enabled");
    let r2 = MockServer::start().await;
    Mock::given(method("GET")).and(query_param("versioning", ""))
        .respond_with(ResponseTemplate::new(501).insert_header("content-type", "application/xml").set_body_string(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NotImplemented</Code><Message>GetBucketVersioning not implemented</Message></Error>",
        ))
        .mount(&r2).await;
    let env = Env::new();
    let (code, show, out) = run(
        &env,
        "r2",
        &format!(
            "  - id: versioning\n    type: s3-versioning\n    with: {{ bucket: media, endpoint: \"{}\" }}\n",
            r2.uri()
        ),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "versioning")["outputs"]["status"], "Unsupported");
    assert!(step(&show, "versioning")["outputs"]["finding"].as_str().unwrap().contains("Cloudflare R2 does not"));
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_dump_streams_to_s3_in_parts() {
    creds();
    let moto = Moto::start();
    let c = runbook::steps::s3::client(Some(&moto.endpoint()), "us-east-1").unwrap();
    c.create_bucket().bucket("backups").send().await.unwrap();
    let pg = tokio::task::spawn_blocking(|| {
        let pg = crate::pg_cluster::Cluster::start();
        pg.psql("create table t as select g as id, md5(g::text) || md5((g * 3)::text) as v from generate_series(1, 300000) g");
        pg
    })
    .await
    .unwrap();
    let env = Env::new();
    let (code, show, out) = run(&env, "d1", &format!(
        "  - id: dump\n    type: pg-dump\n    with: {{ url: \"{}\", to: \"s3://backups/db/\", s3: {{ endpoint: \"{}\", region: us-east-1 }} }}\n",
        pg.url(),
        moto.endpoint()
    )).await;
    assert_eq!(code, 0, "{out}");
    let o = step(&show, "dump")["outputs"].clone();
    let path = o["path"].as_str().unwrap().to_owned();
    let key = path.strip_prefix("s3://backups/").unwrap().to_owned();
    assert!(key.starts_with("db/backup-") && key.ends_with(".sql"), "{key}");
    assert!(o["parts"].as_u64().unwrap() >= 2, "a {} byte dump should take several parts", o["bytes"]);
    let body =
        c.get_object().bucket("backups").key(&key).send().await.unwrap().body.collect().await.unwrap().into_bytes();
    assert_eq!(body.len() as u64, o["bytes"].as_u64().unwrap());
    let digest = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map(|mut ch| {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(&body).unwrap();
            String::from_utf8(ch.wait_with_output().unwrap().stdout).unwrap()
        })
        .unwrap();
    assert_eq!(o["sha256"].as_str().unwrap(), digest.split_whitespace().next().unwrap());
    assert!(String::from_utf8_lossy(&body[body.len() - 200..]).contains("PostgreSQL database dump complete"));
    // A dump that fails leaves no object behind.
    let (code, _, _) = run(&env, "d2", &format!(
        "  - id: dump\n    type: pg-dump\n    with: {{ url: \"{}\", to: \"s3://backups/bad/x.sql\", s3: {{ endpoint: \"{}\", region: us-east-1 }} }}\n",
        pg.url().replace(crate::pg_cluster::PASSWORD, "wrong"),
        moto.endpoint()
    )).await;
    assert_eq!(code, 1);
    assert!(c.head_object().bucket("backups").key("bad/x.sql").send().await.is_err());
    drop(pg);
}

/// `export-secrets` to an S3 object (moto): the object is the age ciphertext, and it decrypts
/// to Infisical's values; a missing bucket fails with S3's words.
#[tokio::test(flavor = "multi_thread")]
async fn export_secrets_to_s3_is_ciphertext_that_decrypts() {
    creds();
    let moto = Moto::start();
    let c = runbook::steps::s3::client(Some(&moto.endpoint()), "us-east-1").unwrap();
    c.create_bucket().bucket("dr-secrets").send().await.unwrap();
    let infisical = crate::providers::infisical().await;
    let key = age::x25519::Identity::generate();
    let env = Env::new();
    let step = |id: &str, to: &str| {
        format!(
            "  - id: {id}\n    type: export-secrets\n    continue_on_error: true\n    with: {{ api_url: \"{}\", client_id: machine-id, client_secret: \"{{{{ env.INF_SECRET }}}}\", project_id: p1, environment: prod, recipients: [\"{}\"], to: \"{to}\", endpoint: \"{}\", region: us-east-1 }}\n",
            infisical.uri(),
            key.to_public(),
            moto.endpoint()
        )
    };
    env.write(
        "e.yaml",
        &format!(
            "apiVersion: runbook/v1\nname: s3\nsecrets: [AWS_SECRET_ACCESS_KEY, INF_SECRET]\nsteps:\n{}{}",
            step("ok", "s3://dr-secrets/infisical/prod.age"),
            step("nobucket", "s3://no-such-bucket/prod.age")
        ),
    );
    let mut cmd = env.command(&["exec", "e.yaml", "--run-id", "e"]);
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("INF_SECRET", "machine-secret-xyz");
    let out = tokio::task::spawn_blocking(move || finish(cmd.output().unwrap())).await.unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
    let show = env.show("e");
    assert_eq!(crate::support::step(&show, "ok")["outputs"]["to"], "s3://dr-secrets/infisical/prod.age");
    let o = c.get_object().bucket("dr-secrets").key("infisical/prod.age").send().await.unwrap();
    let cipher = o.body.collect().await.unwrap().into_bytes().to_vec();
    assert!(!cipher.windows(13).any(|w| w == b"clear_value_1"));
    let plain: serde_json::Value = serde_json::from_slice(&age::decrypt(&key, &cipher).unwrap()).unwrap();
    assert_eq!(plain["secrets"][0]["value"], "sk_live_clear_value_1");
    assert_eq!(crate::support::status(&show, "nobucket"), "failed");
    let err = crate::support::step(&show, "nobucket")["error"].as_str().unwrap().to_owned();
    assert!(err.starts_with("PutObject s3://no-such-bucket/prod.age: NoSuchBucket"), "{err}");
    assert!(!out.all().contains("clear_value"));
}
