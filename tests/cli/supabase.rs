//! `pitr-restore` with `provider: supabase` against a local fake of the Supabase
//! Management API. The fake follows the documented shapes
//! (https://supabase.com/docs/reference/api/v1-list-all-backups,
//! .../v1-restore-pitr-backup, .../v1-get-project): `GET /v1/projects/{ref}/database/backups`
//! answers `{region, walg_enabled, pitr_enabled, backups: [...], physical_backup_data:
//! {earliest_physical_backup_date_unix, latest_physical_backup_date_unix}}`; `POST
//! .../restore-pitr` takes `{recovery_time_target_unix}`; `GET /v1/projects/{ref}` answers
//! a project with `status` (`RESTORING`, `ACTIVE_HEALTHY`, `RESTORE_FAILED`, ...).
//!
//! The stateful fake below is strict: every endpoint requires `Authorization: Bearer` with
//! the right token (anything else gets 401), the restore POST must carry the exact body,
//! and the project status only moves after that POST (before it, the project is the old,
//! healthy one, as the real project is until Supabase starts the restore).

use crate::support::{Env, step};
use serde_json::json;
use std::sync::{Arc, Mutex};
use wiremock::matchers::{any, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

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
}

const TOKEN: &str = "sbp_token_123";

/// The project as the fake sees it: the POSTs it got, and the statuses it will report
/// after the first one (the last repeats).
#[derive(Default)]
struct ProjectState {
    posts: Vec<serde_json::Value>,
    after_post: Vec<&'static str>,
    polls_before_post: usize,
    polls_after_post: usize,
}

#[derive(Clone)]
struct Fake(Arc<Mutex<ProjectState>>);

struct Status(Fake);
impl Respond for Status {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut s = self.0.0.lock().unwrap();
        let status = if s.posts.is_empty() {
            s.polls_before_post += 1;
            "ACTIVE_HEALTHY"
        } else {
            let i = s.polls_after_post.min(s.after_post.len() - 1);
            s.polls_after_post += 1;
            s.after_post[i]
        };
        ResponseTemplate::new(200).set_body_json(json!({"id": REF, "ref": REF, "name": "prod", "status": status}))
    }
}

/// The restore POST: 400 unless the body is exactly `want`; the state changes only here.
struct Restore(Fake, serde_json::Value);
impl Respond for Restore {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        if body != self.1 {
            return ResponseTemplate::new(400).set_body_json(json!({"message": format!("bad body {body}")}));
        }
        self.0.0.lock().unwrap().posts.push(body);
        ResponseTemplate::new(201).set_body_json(json!({}))
    }
}

/// A strict fake: `list` from the backups endpoint, `restore_path` takes `want`, and the
/// project reports `after_post` once restored.
async fn strict(
    list: serde_json::Value,
    restore_path: &str,
    want: serde_json::Value,
    after_post: &[&'static str],
) -> (MockServer, Fake) {
    let server = MockServer::start().await;
    let fake = Fake(Arc::new(Mutex::new(ProjectState { after_post: after_post.to_vec(), ..Default::default() })));
    let auth = format!("Bearer {TOKEN}");
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{REF}/database/backups")))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(list))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/projects/{REF}/database/backups/{restore_path}")))
        .and(header("authorization", auth.as_str()))
        .and(header("content-type", "application/json"))
        .respond_with(Restore(fake.clone(), want))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{REF}")))
        .and(header("authorization", auth.as_str()))
        .respond_with(Status(fake.clone()))
        .mount(&server)
        .await;
    // Anything else (no token, a wrong one): what the API answers to an unauthenticated call.
    Mock::given(any())
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "Unauthorized"})))
        .with_priority(10)
        .mount(&server)
        .await;
    (server, fake)
}

async fn run_with(env: &Env, run_id: &str, step_type: &str, with: &str) -> (i32, serde_json::Value, String) {
    env.write(
        &format!("{run_id}.yaml"),
        &format!("apiVersion: runbook/v1\nname: supa\nsecrets: [SUPABASE_ACCESS_TOKEN]\nsteps:\n  - id: s\n    type: {step_type}\n    with: {{ project_ref: {REF}, token: \"{{{{ env.SUPABASE_ACCESS_TOKEN }}}}\", {with} }}\n"),
    );
    let mut cmd = env.command(&["exec", &format!("{run_id}.yaml"), "--run-id", run_id]);
    cmd.env("SUPABASE_ACCESS_TOKEN", TOKEN);
    let out = tokio::task::spawn_blocking(move || crate::support::finish(cmd.output().unwrap())).await.unwrap();
    (out.code, env.show(run_id), out.all())
}

/// Supabase answers the POST while the project is still the old, healthy one: the step
/// must not take that for the restored database. It waits for RESTORING, then health.
#[tokio::test(flavor = "multi_thread")]
async fn pitr_waits_for_the_restore_to_start_before_accepting_healthy() {
    let (target, unix) = target_minutes_ago(30);
    let (server, fake) = strict(
        backups(true),
        "restore-pitr",
        json!({"recovery_time_target_unix": unix}),
        &["ACTIVE_HEALTHY", "ACTIVE_HEALTHY", "RESTORING", "COMING_UP", "ACTIVE_UNHEALTHY", "ACTIVE_HEALTHY"],
    )
    .await;
    let env = Env::new();
    let with =
        format!("provider: supabase, target_time: \"{target}\", api_url: \"{}\", poll_interval: 20ms", server.uri());
    let (code, show, out) = run_with(&env, "p1", "pitr-restore", &with).await;
    assert_eq!(code, 0, "{out}");
    let o = &step(&show, "s")["outputs"];
    assert_eq!(o["status"], "ACTIVE_HEALTHY");
    assert_eq!(o["polls"], 6, "stopped before the restore was over: {o}");
    assert_eq!(o["target_time"], target);
    // Supabase does not report where the restore landed: unverified, never the request.
    assert_eq!(o["recovered_to"], serde_json::Value::Null);
    assert_eq!(o["recovered_to_verified"], false);
    let f = fake.0.lock().unwrap();
    assert_eq!(f.posts, vec![json!({"recovery_time_target_unix": unix})]);
    assert_eq!((f.polls_before_post, f.polls_after_post), (0, 6));
    assert!(!out.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread")]
async fn pitr_fails_when_the_restore_never_starts() {
    let (target, unix) = target_minutes_ago(30);
    let (server, fake) =
        strict(backups(true), "restore-pitr", json!({"recovery_time_target_unix": unix}), &["ACTIVE_HEALTHY"]).await;
    let env = Env::new();
    let with = format!(
        "provider: supabase, target_time: \"{target}\", api_url: \"{}\", poll_interval: 20ms, start_timeout: 300ms",
        server.uri()
    );
    let (code, show, out) = run_with(&env, "p2", "pitr-restore", &with).await;
    assert_eq!(code, 1, "{out}");
    let err = step(&show, "s")["error"].as_str().unwrap().to_owned();
    assert!(
        err.starts_with(&format!("Supabase accepted the restore of project {REF}, but the project never reported RESTORING within 300ms (last status ACTIVE_HEALTHY)")),
        "{err}"
    );
    assert_eq!(fake.0.lock().unwrap().posts.len(), 1);
}

/// Terminal statuses end the step at the poll that sees them, not at the step timeout.
#[tokio::test(flavor = "multi_thread")]
async fn pitr_fails_at_once_on_terminal_statuses() {
    let (target, unix) = target_minutes_ago(30);
    for (i, status) in [
        "RESTORE_FAILED",
        "INIT_FAILED",
        "REMOVED",
        "INACTIVE",
        "PAUSE_FAILED",
        "PAUSING",
        "GOING_DOWN",
        "SOMETHING_NEW",
    ]
    .into_iter()
    .enumerate()
    {
        let (server, fake) =
            strict(backups(true), "restore-pitr", json!({"recovery_time_target_unix": unix}), &["RESTORING", status])
                .await;
        let env = Env::new();
        let with = format!(
            "provider: supabase, target_time: \"{target}\", api_url: \"{}\", poll_interval: 20ms",
            server.uri()
        );
        let (code, show, out) = run_with(&env, &format!("t{i}"), "pitr-restore", &with).await;
        assert_eq!(code, 1, "{status}: {out}");
        let err = step(&show, "s")["error"].as_str().unwrap().to_owned();
        assert!(err.starts_with(&format!("Supabase reports {status} for project {REF}: ")), "{err}");
        assert_eq!(fake.0.lock().unwrap().polls_after_post, 2, "{status}: kept polling after a terminal status");
    }
}

fn daily(now: jiff::Timestamp) -> serde_json::Value {
    let at = |h: i64| (now - jiff::SignedDuration::from_hours(h)).to_string();
    json!({
        "region": "eu-central-1", "walg_enabled": true, "pitr_enabled": false,
        "backups": [
            {"id": 7, "is_physical_backup": true, "status": "COMPLETED", "inserted_at": at(49)},
            {"id": 9, "is_physical_backup": true, "status": "COMPLETED", "inserted_at": at(25)},
            {"id": 8, "is_physical_backup": true, "status": "COMPLETED", "inserted_at": at(73)},
            {"id": 10, "is_physical_backup": true, "status": "FAILED", "inserted_at": at(1)},
        ],
        "physical_backup_data": {}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn daily_backup_restore_takes_the_newest_completed_one() {
    let now = jiff::Timestamp::now();
    let (server, fake) =
        strict(daily(now), "restore", json!({"id": 9}), &["ACTIVE_HEALTHY", "RESTORING", "ACTIVE_HEALTHY"]).await;
    let env = Env::new();
    let with = format!("provider: supabase, from: latest-backup, api_url: \"{}\", poll_interval: 20ms", server.uri());
    let (code, show, out) = run_with(&env, "b1", "pitr-restore", &with).await;
    assert_eq!(code, 0, "{out}");
    let o = &step(&show, "s")["outputs"];
    assert_eq!(o["backup_id"], 9);
    assert_eq!(o["polls"], 3);
    assert_eq!(o["recovered_to_verified"], false);
    assert_eq!(fake.0.lock().unwrap().posts, vec![json!({"id": 9})]);

    // A given id; one that does not exist; a FAILED one; both modes at once.
    let (server, fake) = strict(daily(now), "restore", json!({"id": 7}), &["RESTORING", "ACTIVE_HEALTHY"]).await;
    let with = format!("provider: supabase, from: \"7\", api_url: \"{}\", poll_interval: 20ms", server.uri());
    let (code, _, out) = run_with(&env, "b2", "pitr-restore", &with).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(fake.0.lock().unwrap().posts, vec![json!({"id": 7})]);
    for (id, from, msg) in [
        ("b3", "\"11\"", format!("project {REF} has no backup with id 11")),
        ("b4", "\"10\"", format!("backup 10 of project {REF} is FAILED, not COMPLETED")),
    ] {
        let with = format!("provider: supabase, from: {from}, api_url: \"{}\", poll_interval: 20ms", server.uri());
        let (code, show, _) = run_with(&env, id, "pitr-restore", &with).await;
        assert_eq!(code, 1);
        assert_eq!(step(&show, "s")["error"], msg);
    }
    assert_eq!(fake.0.lock().unwrap().posts.len(), 1, "a refused restore was sent");
    let with = format!(
        "provider: supabase, from: latest-backup, target_time: \"2026-01-01T00:00:00Z\", api_url: \"{}\"",
        server.uri()
    );
    env.write(
        "b5.yaml",
        &format!("apiVersion: runbook/v1\nname: supa\nsteps:\n  - id: s\n    type: pitr-restore\n    with: {{ project_ref: {REF}, token: t, {with} }}\n"),
    );
    let r = env.run(&["exec", "b5.yaml", "--run-id", "b5"]);
    let (code, out) = (r.code, r.all());
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not both"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_backups_compares_the_newest_restore_point_with_max_age() {
    let now = jiff::Timestamp::now();
    let (server, _) = strict(daily(now), "restore", json!({}), &["ACTIVE_HEALTHY"]).await;
    let env = Env::new();
    let api = server.uri();
    let (code, show, out) = run_with(&env, "f1", "check-backups", &format!("max_age: 26h, api_url: \"{api}\"")).await;
    assert_eq!(code, 0, "{out}");
    let o = &step(&show, "s")["outputs"];
    assert_eq!(o["pitr_enabled"], false);
    let age = o["latest_backup_age_s"].as_i64().unwrap();
    assert!((25 * 3600..25 * 3600 + 60).contains(&age), "{o}");
    let (code, show, out) = run_with(&env, "f2", "check-backups", &format!("max_age: 24h, api_url: \"{api}\"")).await;
    assert_eq!(code, 1, "{out}");
    let err = step(&show, "s")["error"].as_str().unwrap().to_owned();
    assert!(
        err.starts_with(&format!("the newest restore point of project {REF} is 25h"))
            && err.ends_with("more than max_age 24h"),
        "{err}"
    );
    let (code, show, _) =
        run_with(&env, "f3", "check-backups", &format!("max_age: 26h, require_pitr: true, api_url: \"{api}\"")).await;
    assert_eq!(code, 1);
    assert_eq!(step(&show, "s")["error"], format!("point-in-time recovery is not enabled for project {REF}"));
    // A wrong token is refused by the fake, and the step says which secret to check.
    env.write("f4.yaml", &format!("apiVersion: runbook/v1\nname: supa\nsteps:\n  - id: s\n    type: check-backups\n    with: {{ project_ref: {REF}, token: wrong, max_age: 26h, api_url: \"{api}\" }}\n"));
    let r = env.run(&["exec", "f4.yaml", "--run-id", "f4"]);
    assert_eq!(r.code, 1);
    assert!(r.all().contains("HTTP 401: Unauthorized"), "{}", r.all());
}

/// The scheduled playbook, as shipped, against the strict fake.
#[tokio::test(flavor = "multi_thread")]
async fn backup_freshness_playbook_runs_as_shipped() {
    let (server, _) = strict(daily(jiff::Timestamp::now()), "restore", json!({}), &["ACTIVE_HEALTHY"]).await;
    let env = Env::new();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../playbooks/backup-freshness.yaml");
    let api = format!("supabase_api={}", server.uri());
    let args = |id: &'static str, max: &'static str| {
        let mut cmd = env.command(&[
            "exec",
            file,
            "--run-id",
            id,
            "-i",
            &format!("supabase_project_ref={REF}"),
            "-i",
            &api,
            "-i",
            max,
        ]);
        cmd.env("SUPABASE_ACCESS_TOKEN", TOKEN);
        cmd
    };
    let (ok, stale) = (args("ok", "max_age=26h"), args("stale", "max_age=1h"));
    let ok = tokio::task::spawn_blocking(move || {
        crate::support::finish({
            let mut c = ok;
            c.output().unwrap()
        })
    })
    .await
    .unwrap();
    assert_eq!(ok.code, 0, "{}", ok.all());
    let stale = tokio::task::spawn_blocking(move || {
        crate::support::finish({
            let mut c = stale;
            c.output().unwrap()
        })
    })
    .await
    .unwrap();
    assert_eq!(stale.code, 1, "{}", stale.all());
    assert!(step(&env.show("stale"), "freshness")["error"].as_str().unwrap().ends_with("more than max_age 1h"));
}
