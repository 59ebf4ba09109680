//! Cloud steps against local fakes that follow the documented request and response shapes:
//! Atlassian Statuspage v2 (https://metastatuspage.com/api/v2: `GET /api/v2/summary.json` →
//! `{page, status: {indicator, description}, components: [{name, status}], ...}`) and the
//! Vercel REST API (https://vercel.com/docs/rest-api: `GET /v9/projects/{id}` with
//! `targets.production.id` and, with `rollbackInfo=true`, `lastAliasRequest.jobStatus`;
//! `GET /v6/deployments` → `{deployments: [{uid, url, created, state, target}], pagination}`;
//! `POST /v1/projects/{projectId}/rollback/{deploymentId}`).

use crate::support::{Env, finish, status, step};
use crate::vercel_fake::{Vercel, dep};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub(crate) fn summary(indicator: &str) -> serde_json::Value {
    json!({
        "page": {"id": "x", "name": "Vercel", "url": "https://www.vercel-status.com", "updated_at": "2026-11-27T10:00:00Z"},
        "status": {"indicator": indicator, "description": if indicator == "none" { "All Systems Operational" } else { "Major Service Outage" }},
        "components": [{"id": "c1", "name": "Edge Network", "status": if indicator == "none" { "operational" } else { "major_outage" }}],
        "incidents": [], "scheduled_maintenances": []
    })
}

/// Three production deployments, dpl_3 serving; a stale `succeeded` rollback to dpl_2 from
/// an earlier incident is still the project's last alias request (it must not end ours).
pub(crate) async fn vercel_three() -> (MockServer, Vercel) {
    let (server, fake) = Vercel::start(
        "dpl_3",
        vec![dep("dpl_1", 1000, true), dep("dpl_2", 2000, true), dep("dpl_3", 3000, true)],
        &["pending", "in-progress", "succeeded"],
    )
    .await;
    fake.state().last_alias = Some(json!({"fromDeploymentId": "dpl_3", "toDeploymentId": "dpl_2",
        "jobStatus": "succeeded", "requestedAt": 1_000_000, "type": "rollback"}));
    (server, fake)
}

async fn run_s1(indicators: &[&str]) -> (i32, serde_json::Value, String, Vercel) {
    let (vercel, fake) = vercel_three().await;
    run_s1_with(indicators, &vercel, fake, &[]).await
}

pub(crate) async fn run_s1_with(
    indicators: &[&str],
    vercel: &MockServer,
    fake: Vercel,
    extra: &[&str],
) -> (i32, serde_json::Value, String, Vercel) {
    let status_page = MockServer::start().await;
    for (i, ind) in indicators.iter().enumerate() {
        let m = Mock::given(method("GET"))
            .and(path("/api/v2/summary.json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(summary(ind)));
        if i + 1 < indicators.len() {
            m.up_to_n_times(1).mount(&status_page).await
        } else {
            m.mount(&status_page).await
        }
    }
    let app = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/health"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})))
        .mount(&app)
        .await;
    let env = Env::new();
    let s1 = crate::support::repo_root().join("playbooks/s1-full-outage.yaml");
    let args: Vec<String> = vec![
        "exec".into(),
        s1.display().to_string(),
        "--yes".into(),
        "--run-id".into(),
        "s1".into(),
        "-i".into(),
        "vercel_project=prj_app".into(),
        "-i".into(),
        format!("app_health_url={}/api/health", app.uri()),
        "-i".into(),
        "supabase_project_ref=abcd".into(),
        "-i".into(),
        format!("vercel_status_page={}", status_page.uri()),
        "-i".into(),
        format!("supabase_status_page={}", status_page.uri()),
        "-i".into(),
        format!("vercel_api={}", vercel.uri()),
        "-i".into(),
        "poll_interval=10ms".into(),
    ];
    let args: Vec<String> =
        args.into_iter().chain(extra.iter().flat_map(|e| ["-i".to_owned(), (*e).to_owned()])).collect();
    let mut cmd = env.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // No DATABASE_URL: db_check fails at once (no connect retries), as a lost database would.
    cmd.env("VERCEL_TOKEN", "vercel-token-123").env_remove("DATABASE_URL").env_remove("SLACK_WEBHOOK");
    let out = tokio::task::spawn_blocking(move || finish(cmd.output().unwrap())).await.unwrap();
    let show = env.show("s1");
    (out.code, show, out.all(), fake)
}

#[tokio::test(flavor = "multi_thread")]
async fn s1_rolls_back_when_vercel_is_fine() {
    let (code, show, out, vercel) = run_s1(&["none"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(status(&show, "wait_for_vercel"), "skipped");
    assert_eq!(status(&show, "rollback"), "succeeded");
    let o = &step(&show, "rollback")["outputs"];
    assert_eq!((o["from_deployment"].as_str(), o["to_deployment"].as_str()), (Some("dpl_3"), Some("dpl_2")));
    assert_eq!(o["to_url"], "https://app-2.vercel.app");
    assert_eq!(status(&show, "verify"), "succeeded");
    // The database did not answer, but no restore point was given: no restore.
    assert_eq!(status(&show, "db_check"), "failed");
    assert_eq!(status(&show, "restore_db"), "skipped");
    assert!(!out.contains("vercel-token-123"));
    let st = vercel.state();
    assert_eq!(st.posts, ["dpl_2"]);
    // The stale `succeeded` did not end the step: it polled until our request succeeded.
    assert!(st.reads_after_post >= 3, "{} reads after the POST", st.reads_after_post);
    assert_eq!(st.production, "dpl_2");
    assert!(st.refused.is_empty(), "{:?}", st.refused);
}

#[tokio::test(flavor = "multi_thread")]
async fn s1_waits_when_vercel_itself_is_down() {
    let (code, show, out, vercel) = run_s1(&["major", "major", "none"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "vercel_status")["outputs"]["indicator"], "major");
    assert_eq!(step(&show, "vercel_status")["outputs"]["components"]["Edge Network"], "major_outage");
    assert_eq!(status(&show, "wait_for_vercel"), "succeeded");
    assert_eq!(status(&show, "approve_rollback"), "skipped");
    assert_eq!(status(&show, "rollback"), "skipped");
    assert_eq!(status(&show, "verify"), "succeeded");
    assert!(vercel.state().posts.is_empty()); // no rollback call
}

#[tokio::test(flavor = "multi_thread")]
async fn check_status_endpoints_and_rollback_errors() {
    let app = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/ok"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ok", "checks": {"db": "up"}})))
        .mount(&app)
        .await;
    Mock::given(method("GET"))
        .and(path("/degraded"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ok", "checks": {"db": "down"}})))
        .mount(&app)
        .await;
    Mock::given(method("GET"))
        .and(path("/slow"))
        .respond_with(ResponseTemplate::new(503).set_delay(std::time::Duration::from_millis(300)))
        .mount(&app)
        .await;
    let vercel = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v9/projects/prj_app"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"error": {"code": "forbidden", "message": "Not authorized"}})),
        )
        .mount(&vercel)
        .await;
    let env = Env::new();
    let a = app.uri();
    env.write("p.yaml", &format!(concat!(
        "apiVersion: runbook/v1\nname: t\nsteps:\n",
        "  - id: report\n    type: check-status\n    with:\n      endpoints:\n",
        "        - {{ name: ok, url: \"{a}/ok\", expect_json: {{ status: ok, checks.db: up }} }}\n",
        "        - {{ name: degraded, url: \"{a}/degraded\", expect_json: {{ checks.db: up }} }}\n",
        "        - {{ name: slow, url: \"{a}/slow\", max_latency_ms: 100 }}\n",
        "        - {{ name: down, url: \"http://127.0.0.1:1/\" }}\n",
        "  - id: strict\n    type: check-status\n    continue_on_error: true\n    with: {{ endpoints: [{{ name: degraded, url: \"{a}/degraded\", expect_json: {{ checks.db: up }} }}], fail_on: degraded }}\n",
        "  - id: rollback\n    type: rollback-deploy\n    continue_on_error: true\n    with: {{ provider: vercel, project: prj_app, token: bad, api_url: \"{v}\" }}\n",
    ), a = a, v = vercel.uri()));
    let out = {
        let mut c = env.command(&["exec", "p.yaml", "--run-id", "c1"]);
        tokio::task::spawn_blocking(move || finish(c.output().unwrap())).await.unwrap()
    };
    assert_eq!(out.code, 0, "{}", out.all());
    let show = env.show("c1");
    let eps = &step(&show, "report")["outputs"]["endpoints"];
    assert_eq!(eps["ok"]["ok"], true);
    assert_eq!(eps["degraded"]["error"], "`checks.db` is \"down\", expected \"up\"");
    assert_eq!(eps["slow"]["ok"], false);
    assert!(eps["slow"]["error"].as_str().unwrap().starts_with("HTTP 503, expected 200; "), "{}", eps["slow"]);
    assert_eq!(eps["down"]["ok"], false);
    assert_eq!(step(&show, "report")["outputs"]["healthy"], false);
    assert_eq!(status(&show, "strict"), "failed");
    assert_eq!(step(&show, "strict")["error"], "not healthy: degraded: `checks.db` is \"down\", expected \"up\"");
    assert_eq!(
        step(&show, "rollback")["error"],
        "Vercel GET /v9/projects/prj_app?rollbackInfo=true: HTTP 403: Not authorized"
    );
    assert!(out.all().contains("hint: token rejected: check VERCEL_TOKEN"), "{}", out.all());
}

/// Infisical (https://infisical.com/docs/api-reference): universal-auth login, then the v4
/// update `PATCH /api/v4/secrets/{name}` answering `{secret: {version}}` or, under a
/// change-approval policy, `{approval: {id, status}}`.
#[tokio::test(flavor = "multi_thread")]
async fn rotate_secret_sets_a_generated_value_that_is_never_written_down() {
    let infisical = MockServer::start().await;
    crate::providers::infisical_login(&infisical).await;
    Mock::given(method("PATCH"))
        .and(path("/api/v4/secrets/STRIPE_KEY"))
        .and(header("authorization", "Bearer at-123"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"secret": {"id": "s1", "secretKey": "STRIPE_KEY", "version": 7, "type": "shared"}}),
            ),
        )
        .mount(&infisical)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v4/secrets/GUARDED"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"approval": {"id": "cr_9", "status": "open"}})))
        .mount(&infisical)
        .await;
    let env = Env::new();
    let api = infisical.uri();
    let rotation = |id: &str, name: &str| {
        format!(
            "  - id: {id}\n    type: rotate-secret\n    continue_on_error: true\n    with: {{ api_url: \"{api}\", client_id: \"{{{{ env.INF_ID }}}}\", client_secret: \"{{{{ env.INF_SECRET }}}}\", project_id: p1, environment: prod, name: {name}, generate: true }}\n"
        )
    };
    env.write(
        "p.yaml",
        &format!(
            "apiVersion: runbook/v1\nname: t\nsecrets: [INF_ID, INF_SECRET]\nsteps:\n{}{}",
            rotation("rotate", "STRIPE_KEY"),
            rotation("guarded", "GUARDED")
        ),
    );
    let mut cmd = env.command(&["exec", "p.yaml", "--run-id", "r1"]);
    cmd.env("INF_ID", "machine-id").env("INF_SECRET", "machine-secret-xyz");
    let out = tokio::task::spawn_blocking(move || finish(cmd.output().unwrap())).await.unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
    let show = env.show("r1");
    assert_eq!(step_out(&show, "rotate")["version"], 7);
    assert_eq!(status(&show, "guarded"), "failed");
    assert_eq!(
        step(&show, "guarded")["error"],
        "the new value of GUARDED waits for approval in Infisical (change request \"cr_9\"); the old value is still live"
    );
    // The value Infisical received: generated, 32 letters and digits, and nowhere on our side.
    let sent: Vec<String> = infisical
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/api/v4/secrets/STRIPE_KEY")
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["secretValue"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].len() == 32 && sent[0].chars().all(|c| c.is_ascii_alphanumeric()), "{}", sent[0]);
    assert!(!out.all().contains(&sent[0]));
    for f in crate::support::walk(&env.path(".runbook")) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        assert!(!text.contains(&sent[0]) && !text.contains("machine-secret-xyz"), "secret in {}", f.display());
    }
}

fn step_out<'a>(show: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    &step(show, id)["outputs"]
}

/// A real redis-server (Debian's) on a free port, with a password.
/// The child, its port, and its working directory (kept alive with it).
pub(crate) struct Redis(std::process::Child, pub(crate) u16, #[allow(dead_code)] tempfile::TempDir);

impl Redis {
    pub(crate) fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::pg_cluster::free_port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                "redis-pw-123",
            ])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        // Owned before the wait, so a redis-server that never listens is still killed.
        let redis = Redis(child, port, dir);
        crate::support::listening("redis-server did not start", port);
        redis
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn redis_ping_reports_latency_version_and_auth_problems() {
    let redis = Redis::start();
    let env = Env::new();
    let p = redis.1;
    env.write("p.yaml", &format!(concat!(
        "apiVersion: runbook/v1\nname: t\nsteps:\n",
        "  - id: ok\n    type: redis-ping\n    with: {{ url: \"redis://:redis-pw-123@127.0.0.1:{p}/0\" }}\n",
        "  - id: wrong_pw\n    type: redis-ping\n    continue_on_error: true\n    with: {{ url: \"redis://:nope@127.0.0.1:{p}\" }}\n",
        "  - id: no_pw\n    type: redis-ping\n    continue_on_error: true\n    with: {{ url: \"redis://127.0.0.1:{p}\" }}\n",
        "  - id: down\n    type: redis-ping\n    continue_on_error: true\n    with: {{ url: \"redis://127.0.0.1:1\" }}\n",
    ), p = p));
    let r = env.run(&["exec", "p.yaml", "--run-id", "r1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("r1");
    let o = &step(&show, "ok")["outputs"];
    assert!(o["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(o["version"].as_str().unwrap().chars().next().unwrap().is_ascii_digit(), "{o}");
    assert_eq!(o["role"], "master");
    let wrong = step(&show, "wrong_pw")["error"].as_str().unwrap().to_owned();
    assert!(wrong.starts_with(&format!("redis://127.0.0.1:{p}: AUTH failed: WRONGPASS")), "{wrong}");
    let none = step(&show, "no_pw")["error"].as_str().unwrap().to_owned();
    assert!(none.starts_with(&format!("redis://127.0.0.1:{p}: PING failed: NOAUTH")), "{none}");
    assert!(r.all().contains("hint: Redis wants a password"), "{}", r.all());
    assert!(step(&show, "down")["error"].as_str().unwrap().starts_with("cannot connect to redis://127.0.0.1:1: "));
    assert!(!r.all().contains("redis-pw-123"));
}

#[tokio::test(flavor = "multi_thread")]
async fn s2_names_what_is_down_and_keeps_the_app_in_view() {
    let app = MockServer::start().await;
    Mock::given(method("GET")).and(path("/api/health")).respond_with(ResponseTemplate::new(200)).mount(&app).await;
    Mock::given(method("GET")).and(path("/rpc")).respond_with(ResponseTemplate::new(502)).mount(&app).await;
    let pages = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/summary.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(summary("major")))
        .mount(&pages)
        .await;
    // status.trigger.dev is a Better Stack page; Cloudflare's is a Statuspage where only the
    // R2 component matters.
    let trigger = crate::providers::betterstack_page("downtime", &[("Trigger.dev API", "downtime")]).await;
    let cloudflare =
        crate::providers::statuspage_page("minor", &[("R2", "partial_outage"), ("Workers", "operational")]).await;
    let env = Env::new();
    let s2 = crate::support::repo_root().join("playbooks/s2-partial-outage.yaml");
    let a = app.uri();
    let pg = pages.uri();
    let args = [
        "exec".to_owned(),
        s2.display().to_string(),
        "--run-id".into(),
        "s2".into(),
        "-i".into(),
        format!("app_health_url={a}/api/health"),
        "-i".into(),
        format!("rpc_url={a}/rpc"),
        "-i".into(),
        format!("trigger_status_page={}", trigger.uri()),
        "-i".into(),
        format!("cloudflare_status_page={}", cloudflare.uri()),
        "-i".into(),
        format!("supabase_status_page={pg}"),
    ];
    let mut cmd = env.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.env("REDIS_URL", "redis://127.0.0.1:1").env_remove("SLACK_WEBHOOK");
    let out = tokio::task::spawn_blocking(move || finish(cmd.output().unwrap())).await.unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
    let show = env.show("s2");
    assert_eq!(status(&show, "redis"), "failed");
    assert_eq!(
        step(&show, "findings")["outputs"]["stdout"],
        "app: up; rpc: DOWN, the app falls back to the public endpoint; redis: DOWN, rate limiting lets requests through; trigger.dev: major, jobs queue and retry; cloudflare (R2): major, media uploads fail, the app keeps working; supabase: major"
    );
    assert_eq!(status(&show, "app_still_up"), "succeeded");
    assert_eq!(step(&show, "trigger_dev")["outputs"]["format"], "betterstack");
    assert_eq!(step(&show, "cloudflare")["outputs"]["page_indicator"], "minor");
    assert_eq!(step(&show, "cloudflare")["outputs"]["component"], json!({"name": "R2", "status": "partial_outage"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_names_the_rollback_target_without_rolling_back() {
    let (vercel, fake) = vercel_three().await;
    let env = Env::new();
    env.write("p.yaml", &format!(
        "apiVersion: runbook/v1\nname: t\nsecrets: [VERCEL_TOKEN]\nsteps:\n  - id: rollback\n    type: rollback-deploy\n    with: {{ provider: vercel, project: prj_app, token: \"{{{{ env.VERCEL_TOKEN }}}}\", api_url: \"{}\" }}\n",
        vercel.uri()
    ));
    let mut with_token = env.command(&["exec", "p.yaml", "--dry-run"]);
    with_token.env("VERCEL_TOKEN", "vercel-token-123");
    let out = tokio::task::spawn_blocking(move || finish(with_token.output().unwrap())).await.unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("• rollback: would roll Vercel project prj_app back from dpl_3 to dpl_2 (https://app-2.vercel.app), then wait until it serves"),
        "{}",
        out.stdout
    );
    // Without credentials: the rule, not a guess.
    let mut without = env.command(&["exec", "p.yaml", "--dry-run"]);
    without.env_remove("VERCEL_TOKEN");
    let out = tokio::task::spawn_blocking(move || finish(without.output().unwrap())).await.unwrap();
    assert!(
        out.stdout.contains("• rollback: would roll Vercel project prj_app back to the previous production deployment"),
        "{}",
        out.stdout
    );
    assert!(fake.state().posts.is_empty()); // no rollback call
}
