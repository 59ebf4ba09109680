//! `pitr-restore` with `provider: supabase` against a local fake of the Supabase
//! Management API. The fake follows the documented shapes
//! (https://supabase.com/docs/reference/api/v1-list-all-backups,
//! .../v1-restore-pitr-backup, .../v1-get-project): `GET /v1/projects/{ref}/database/backups`
//! answers `{region, walg_enabled, pitr_enabled, backups: [...], physical_backup_data:
//! {earliest_physical_backup_date_unix, latest_physical_backup_date_unix}}`; `POST
//! .../restore-pitr` takes `{recovery_time_target_unix}`; `GET /v1/projects/{ref}` answers
//! a project with `status` (`RESTORING`, `ACTIVE_HEALTHY`, `RESTORE_FAILED`, ...).

use crate::support::{Env, step};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REF: &str = "abcdefghijklmnop";

fn backups(pitr: bool) -> serde_json::Value {
    let now = jiff::Timestamp::now().as_second();
    json!({
        "region": "eu-central-1",
        "walg_enabled": true,
        "pitr_enabled": pitr,
        "backups": [{"is_physical_backup": true, "status": "COMPLETED", "inserted_at": "2026-11-26T00:00:00Z"}],
        "physical_backup_data": {"earliest_physical_backup_date_unix": now - 86_400, "latest_physical_backup_date_unix": now}
    })
}

/// A fake whose backups endpoint gives `answer`.
async fn server_with_backups(answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{REF}/database/backups")))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

fn playbook(api: &str, target: &str) -> String {
    format!(
        "apiVersion: runbook/v1\nname: supa\nsecrets: [SUPABASE_ACCESS_TOKEN]\nsteps:\n  - id: restore\n    type: pitr-restore\n    with: {{ provider: supabase, project_ref: {REF}, target_time: \"{target}\", token: \"{{{{ env.SUPABASE_ACCESS_TOKEN }}}}\", api_url: \"{api}\", poll_interval: 50ms }}\n"
    )
}

async fn run(env: &Env, server: &MockServer, target: &str, token: &str) -> (i32, serde_json::Value, String) {
    env.write("p.yaml", &playbook(&server.uri(), target));
    let args: Vec<String> = ["exec", "p.yaml", "--run-id", "s1"].iter().map(|s| s.to_string()).collect();
    let mut cmd = env.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.env("SUPABASE_ACCESS_TOKEN", token);
    let out = tokio::task::spawn_blocking(move || crate::support::finish(cmd.output().unwrap())).await.unwrap();
    (out.code, env.show("s1"), out.all())
}

fn target_minutes_ago(m: i64) -> (String, i64) {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(m * 60);
    let t = jiff::Timestamp::from_second(t.as_second()).unwrap();
    (t.to_string(), t.as_second())
}

#[tokio::test(flavor = "multi_thread")]
async fn restores_and_waits_until_healthy() {
    let server = MockServer::start().await;
    let (target, unix) = target_minutes_ago(30);
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{REF}/database/backups")))
        .and(header("authorization", "Bearer sbp_token_123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(backups(true)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/projects/{REF}/database/backups/restore-pitr")))
        .and(body_json(json!({"recovery_time_target_unix": unix})))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&server)
        .await;
    // Throttled once (the client waits Retry-After), restoring twice, then healthy.
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{REF}")))
        .respond_with(
            ResponseTemplate::new(429).insert_header("retry-after", "1").set_body_json(json!({"message": "slow down"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{REF}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": REF, "status": "RESTORING"})))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{REF}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": REF, "status": "ACTIVE_HEALTHY"})))
        .mount(&server)
        .await;
    let env = Env::new();
    let (code, show, out) = run(&env, &server, &target, "sbp_token_123").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "restore")["outputs"]["status"], "ACTIVE_HEALTHY");
    assert!(!out.contains("sbp_token_123"));
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_clear() {
    let (target, _) = target_minutes_ago(30);
    let env = Env::new();

    let server =
        server_with_backups(ResponseTemplate::new(401).set_body_json(json!({"message": "Unauthorized"}))).await;
    let (code, show, out) = run(&env, &server, &target, "bad-token-value").await;
    assert_eq!(code, 1);
    assert_eq!(
        step(&show, "restore")["error"],
        format!("Supabase GET /v1/projects/{REF}/database/backups: HTTP 401: Unauthorized")
    );
    assert!(out.contains("hint: token rejected: check SUPABASE_ACCESS_TOKEN"), "{out}");

    let server = server_with_backups(ResponseTemplate::new(200).set_body_json(backups(false))).await;
    let env = Env::new();
    let (code, show, _) = run(&env, &server, &target, "sbp_token_123").await;
    assert_eq!(code, 1);
    assert_eq!(step(&show, "restore")["error"], format!("point-in-time recovery is not enabled for project {REF}"));

    let server = server_with_backups(ResponseTemplate::new(200).set_body_json(backups(true))).await;
    let env = Env::new();
    let (old, _) = target_minutes_ago(60 * 24 * 3);
    let (code, show, _) = run(&env, &server, &old, "sbp_token_123").await;
    assert_eq!(code, 1);
    assert!(step(&show, "restore")["error"].as_str().unwrap().contains("is outside the recoverable window"));

    let server = server_with_backups(ResponseTemplate::new(200).set_body_json(backups(true))).await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/projects/{REF}/database/backups/restore-pitr")))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{REF}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": REF, "status": "RESTORE_FAILED"})))
        .mount(&server)
        .await;
    let env = Env::new();
    let (code, show, _) = run(&env, &server, &target, "sbp_token_123").await;
    assert_eq!(code, 1);
    assert_eq!(step(&show, "restore")["error"], format!("Supabase reports RESTORE_FAILED for project {REF}"));
}
