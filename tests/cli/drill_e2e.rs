//! The repository's playbooks run through `runbook drill` against stand-ins: real
//! PostgreSQL (a throwaway cluster), a real redis-server, strict fakes of Slack, Vercel,
//! the status pages, the app and Infisical. First the failure scenarios, one or more per
//! playbook, next to passing runs (the quarterly restore drill, the nightly backup, an S3
//! limited-scope restore from a custom-format dump): scratch == production refused with
//! nothing dropped; a failed restore pages; a refused rollback pages; the app down fails
//! S2; a rotation held for approval stops S4 before the redeploy; an unreachable database
//! fails the backup. Then `drills/pre-launch.yaml` itself, all passing.

use crate::pg_cluster::Cluster;
use crate::support::{Env, finish, repo_root, status};
use serde_json::Value;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn playbook(name: &str) -> String {
    repo_root().join("playbooks").join(name).display().to_string()
}

/// The production data the playbooks protect: `orders` under row level security, and
/// Supabase's auth audit log (which S4 reads for the compromise window), empty.
fn seed(c: &Cluster, orders: u32) {
    c.psql(&format!(
        "create table orders (id int primary key, owner text not null, total int not null);
         insert into orders select g, 'u' || (g % 7), g * 10 from generate_series(1, {orders}) g;
         alter table orders enable row level security;
         create policy orders_owner on orders for select using (owner = current_user);
         create schema auth; create table auth.audit_log_entries (id serial, payload json, created_at timestamptz default now());"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn repository_playbooks_pass_a_drill_on_postgres_and_their_failure_scenarios_hold() {
    let c = Cluster::start();
    seed(&c, 500);
    c.psql("create database scratch");
    let prod = c.url();
    // postgresql://postgres:PW@127.0.0.1:PORT/postgres → the same server, database `scratch`.
    let scratch = format!("{}/scratch", prod.rsplit_once('/').unwrap().0);
    // The production database under another host name: must still be recognised.
    let prod_alias = prod.replace("127.0.0.1", "localhost");
    let env = Env::new();
    let snap = env.run(&["rls-snapshot", &prod]);
    assert_eq!(snap.code, 0, "{}", snap.all());
    env.write("rls.yaml", &snap.stdout);
    // Last night's backup, in the format the nightly backup writes (checked below too).
    std::fs::create_dir_all(env.path("backups")).unwrap();
    let dump = env.path("backups/nightly.dump");
    c.dump_custom(&dump);
    // For the self-hosted point-in-time restore: a base backup, rows written after it (only
    // WAL replay brings them back), the moment to restore to, then the corruption, archived.
    let base = c.base_backup();
    c.psql("insert into orders select g, 'u' || (g % 7), g * 10 from generate_series(501, 600) g");
    let target = c.now();
    // The corruption S3 repairs.
    c.psql("update orders set total = -1 where id <= 40");
    c.archive_now();
    let recovered = c.path("recovered");
    c.adopt(&recovered);
    let recovered_port = crate::pg_cluster::free_port();

    // Slack incoming webhook (https://api.slack.com/messaging/webhooks): POST JSON
    // `{"text": ...}` to the hook URL; answers 200 `ok`. Only the page of the failed restore
    // may arrive, exactly once.
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T0/B0/hook"))
        .and(header("content-type", "application/json"))
        .and(body_string_contains("FAILED"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .and(path("/services/T0/B0/hook"))
        .and(header("content-type", "application/json"))
        .and(body_string_contains("S1 recovery is failing"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&slack)
        .await;
    let hook = format!("{}/services/T0/B0/hook", slack.uri());
    // S1's stand-ins: the status page says Vercel is fine, the app is down, and the
    // rollback is refused (Vercel answers errors as `{"error": {"code", "message"}}`,
    // https://vercel.com/docs/rest-api/errors). S2's app is down too.
    let pages = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/summary.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json({
            // One page for all: Vercel's components and Cloudflare's R2 (which S2 reads).
            let mut page = crate::cloud::summary("none");
            page["components"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"id": "c2", "name": "R2", "status": "operational"}));
            page
        }))
        .mount(&pages)
        .await;
    let app = MockServer::start().await;
    Mock::given(method("GET")).and(path("/api/health")).respond_with(ResponseTemplate::new(503)).mount(&app).await;
    Mock::given(method("GET")).and(path("/rpc")).respond_with(ResponseTemplate::new(200)).mount(&app).await;
    let vercel = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v9/projects/prj_app"))
        .and(header("authorization", "Bearer vercel-token-123"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(serde_json::json!({"error": {"code": "forbidden", "message": "Not authorized"}})),
        )
        .mount(&vercel)
        .await;
    // Infisical with a change-approval policy on the secret: the PATCH opens a change request
    // instead of rotating (https://infisical.com/docs/documentation/platform/pr-workflows).
    let infisical = MockServer::start().await;
    crate::providers::infisical_login(&infisical).await;
    Mock::given(method("PATCH"))
        .and(path("/api/v4/secrets/GUARDED"))
        .and(header("authorization", "Bearer at-123"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"approval": {"id": "cr_9", "status": "open"}})),
        )
        .mount(&infisical)
        .await;

    let suite = format!(
        r#"apiVersion: runbook-drill/v1
name: pg-drill
env: {{ DATABASE_URL: "${{PROD_URL}}" }}
playbooks:
  - id: backup
    file: {backup}
    inputs: {{ to: backups/nightly/ }}
    expect_steps: {{ check_full: succeeded, check_schema: succeeded, media_backup: skipped }}
  - id: restore_drill
    file: {dr}
    inputs: {{ rls_expected: rls.yaml }}
    env: {{ SCRATCH_DATABASE_URL: "${{SCRATCH_URL}}" }}
    expect_steps: {{ scratch_is_separate: succeeded, verify_data: succeeded, verify_rls: succeeded, empty_scratch: succeeded }}
  - id: restore_drill_on_production
    description: The scratch URL is production under another host name; refused, nothing dropped.
    file: {dr}
    inputs: {{ rls_expected: rls.yaml }}
    env: {{ SCRATCH_DATABASE_URL: "${{PROD_ALIAS}}" }}
    expect: failed
    expect_steps: {{ scratch_is_separate: failed, restore: skipped, empty_scratch: skipped }}
  - id: s3_tables
    file: {s3}
    inputs: {{ project_ref: local, target_time: "2026-11-27T09:12:00Z", scope: tables, tables: [public.orders], dump_file: backups/nightly.dump, damage_query: "select count(*) as n from orders where total < 0", rls_expected: rls.yaml }}
    approve: [approve_restore]
    expect_steps: {{ restore_tables: succeeded, restore_pitr: skipped, verify_data: succeeded, page_on_failure: skipped }}
  - id: s3_point_in_time
    description: Self-hosted point-in-time restore into a new cluster, for real (base backup + WAL).
    file: {s3}
    inputs: {{ project_ref: local, target_time: "{target}", scope: pitr, provider: postgres, base_backup: "{base}", wal_archive: "{archive}", restore_data_dir: "{recovered}", restore_port: {recovered_port}, damage_query: "select count(*) as n from orders where total < 0", rls_expected: rls.yaml }}
    env: {{ RESTORED_DB_PASSWORD: "${{PG_PASSWORD}}" }}
    approve: [approve_restore, switch_over]
    expect_steps: {{ restore_pitr_self_hosted: succeeded, restore_pitr: skipped, restore_tables: skipped, verify_rls: succeeded, verify_data: succeeded, switch_over: succeeded }}
  - id: s3_restore_fails_and_pages
    description: The dump to restore from is missing; the restore fails and the team is paged.
    file: {s3}
    inputs: {{ project_ref: local, target_time: "2026-11-27T09:12:00Z", scope: tables, tables: [public.orders], dump_file: backups/missing.dump, rls_expected: rls.yaml }}
    env: {{ SLACK_WEBHOOK: "{hook}" }}
    approve: [approve_restore]
    expect: failed
    expect_steps: {{ restore_tables: failed, page_on_failure: succeeded }}
  - id: backup_database_down
    file: {backup}
    inputs: {{ to: backups/failed/ }}
    env: {{ DATABASE_URL: "postgresql://postgres@127.0.0.1:9/postgres" }}
    expect: failed
    expect_steps: {{ full: failed, schema: failed, check_full: skipped }}
  - id: s1_rollback_refused_pages
    description: The app is down, Vercel is fine, the rollback is refused; the team is paged.
    file: {s1}
    inputs: {{ vercel_project: prj_app, app_health_url: "{app}/api/health", supabase_project_ref: abcd, vercel_status_page: "{pages}", supabase_status_page: "{pages}", vercel_api: "{vercel}", poll_interval: 10ms }}
    env: {{ VERCEL_TOKEN: vercel-token-123, SLACK_WEBHOOK: "{hook}" }}
    yes: true
    expect: failed
    expect_steps: {{ rollback: failed, page_on_failure: succeeded }}
  - id: s2_app_down
    description: The app itself is down; S2 fails (it is an S1).
    file: {s2}
    inputs: {{ app_health_url: "{app}/api/health", rpc_url: "{app}/rpc", trigger_status_page: "{pages}", cloudflare_status_page: "{pages}", supabase_status_page: "{pages}" }}
    env: {{ REDIS_URL: "redis://127.0.0.1:9" }}
    expect: failed
    expect_steps: {{ app_still_up: failed }}
  - id: s4_rotation_refused
    description: Infisical holds the new value for approval; S4 stops before the redeploy.
    file: {s4}
    inputs: {{ secret_name: GUARDED, compromised_since: "2026-11-27T08:00:00Z", infisical_project: p1, app_health_url: "{app}/api/health", infisical_api: "{infisical}", export_to: never.age, export_recipient: age1notused }}
    env: {{ INFISICAL_CLIENT_ID: machine-id, INFISICAL_CLIENT_SECRET: machine-secret-xyz, RUNBOOK_INPUT_NEW_VALUE: sk_new_value_456 }}
    yes: true
    expect: failed
    expect_steps: {{ rotate: failed, redeploy: skipped }}
"#,
        backup = playbook("backup.yaml"),
        s1 = playbook("s1-full-outage.yaml"),
        s2 = playbook("s2-partial-outage.yaml"),
        s4 = playbook("s4-secret-compromise.yaml"),
        app = app.uri(),
        pages = pages.uri(),
        vercel = vercel.uri(),
        infisical = infisical.uri(),
        dr = playbook("dr-drill.yaml"),
        s3 = playbook("s3-data-corruption.yaml"),
        base = base.display(),
        archive = c.path("archive").display(),
        recovered = recovered.display(),
    );
    env.write("suite.yaml", &suite);
    let mut cmd = env.command(&["drill", "suite.yaml", "--id", "e2e", "--output", "json"]);
    cmd.env("PROD_URL", &prod).env("SCRATCH_URL", &scratch).env("PROD_ALIAS", &prod_alias).env_remove("SLACK_WEBHOOK");
    cmd.env("PG_PASSWORD", crate::pg_cluster::PASSWORD);
    let r = tokio::task::spawn_blocking(move || finish(cmd.output().unwrap())).await.unwrap();
    let rep: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
    let not_passed: Vec<String> = rep["playbooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["result"] != "passed")
        .map(|p| format!("{} ({} ms): {} {}", p["id"], p["duration_ms"], p["problems"], p["failed_steps"]))
        .collect();
    assert!(not_passed.is_empty(), "{}", not_passed.join("\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The nightly backup is custom-format (pg_restore can list it: restore_tables can use it).
    let nightly: Vec<_> = std::fs::read_dir(env.path("backups/nightly")).unwrap().flatten().map(|e| e.path()).collect();
    let full = nightly.iter().find(|p| p.extension().is_some_and(|e| e == "dump")).expect("a .dump in backups/nightly");
    let list =
        std::process::Command::new(crate::pg_cluster::bin("pg_restore")).arg("--list").arg(full).output().unwrap();
    assert!(list.status.success() && String::from_utf8_lossy(&list.stdout).contains("TABLE public orders"));
    // The refused drill dropped nothing: production still has its table and rows, and the
    // corruption was repaired by the S3 run.
    assert_eq!(c.psql("select count(*), count(*) filter (where total < 0) from orders"), "500|0");
    // The recovered cluster holds what was committed before the target, nothing after it:
    // the 100 rows written after the base backup came back by WAL replay, the corruption
    // did not; and the server says it replayed up to (not past) the target.
    assert_eq!(c.psql_port(recovered_port, "select count(*), count(*) filter (where total < 0) from orders"), "600|0");
    let pitr = env.show("e2e-s3_point_in_time");
    let out = &crate::support::step(&pitr, "restore_pitr_self_hosted")["outputs"];
    assert_eq!(out["recovered_to_verified"], true, "{out}");
    let to: jiff::Timestamp = out["recovered_to"].as_str().unwrap().parse().unwrap();
    assert!(to <= target.parse::<jiff::Timestamp>().unwrap(), "recovered to {to}, after the target {target}");
    // S4 never got to the redeploy approval nor to checking the app.
    let s4 = env.show("e2e-s4_rotation_refused");
    assert!(crate::support::step(&s4, "rotate")["error"].as_str().unwrap().contains("waits for approval in Infisical"));
    assert_ne!(status(&s4, "verify_app"), "succeeded");
    let refused = env.show("e2e-restore_drill_on_production");
    assert_eq!(status(&refused, "empty_scratch"), "skipped");
    // The good drill emptied the scratch database at the end.
    assert_eq!(c.psql("select count(*) from pg_database where datname = 'scratch'"), "1");
    let md = env.read(".runbook/drills/e2e/report.md");
    assert!(md.contains("| `restore_drill` (dr-drill) | S3 drill | succeeded | succeeded | 2h / "), "{md}");
    // Secrets: the database password is in no file of the state dir.
    for f in crate::support::walk(&env.path(".runbook")) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(!text.contains(crate::pg_cluster::PASSWORD), "{} holds the password", f.display());
    }
}

/// `drills/pre-launch.yaml` itself, end to end, against stand-ins: a real PostgreSQL cluster
/// (staging and scratch databases), a real redis-server, and strict fakes of the Vercel
/// API, the status pages, the app and Infisical (the shapes documented in cloud.rs, whose
/// fakes these are). Every playbook must pass, and the report must say so.
#[tokio::test(flavor = "multi_thread")]
async fn pre_launch_suite_passes_end_to_end_against_stand_ins() {
    use crate::cloud::{Redis, summary, vercel_three};
    use serde_json::json;
    let c = Cluster::start();
    seed(&c, 200);
    c.psql(
        "insert into auth.audit_log_entries (payload) values ('{\"actor_id\": \"u1\"}'), ('{\"actor_id\": \"u2\"}');",
    );
    c.psql("create database scratch");
    let prod = c.url();
    let scratch = format!("{}/scratch", prod.rsplit_once('/').unwrap().0);
    let env = Env::new();
    let snap = env.run(&["rls-snapshot", &prod]);
    assert_eq!(snap.code, 0, "{}", snap.all());
    let rls = env.write("rls.yaml", &snap.stdout);
    let dump = env.path("staging.dump");
    c.dump_custom(&dump);
    let redis = Redis::start();

    let pages = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/summary.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(summary("none")))
        .mount(&pages)
        .await;
    // Cloudflare's status page lists R2 as a component (Statuspage v2 summary shape).
    let cf_page = MockServer::start().await;
    let mut cf = summary("none");
    cf["components"] = json!([{"id": "c2", "name": "R2", "status": "operational"}]);
    Mock::given(method("GET"))
        .and(path("/api/v2/summary.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(cf))
        .mount(&cf_page)
        .await;
    let app = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/health"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})))
        .mount(&app)
        .await;
    Mock::given(method("GET")).and(path("/rpc")).respond_with(ResponseTemplate::new(200)).mount(&app).await;
    // Vercel: three production deployments, dpl_3 serving (tests/cli/vercel_fake.rs).
    let (vercel, vercel_fake) = vercel_three().await;
    // Infisical (https://infisical.com/docs/api-reference/endpoints/universal-auth/login and
    // .../secrets/update): login with the machine identity, then PATCH the secret with the
    // bearer token it returned.
    let infisical = MockServer::start().await;
    crate::providers::infisical_login(&infisical).await;
    Mock::given(method("PATCH"))
        .and(path("/api/v4/secrets/STRIPE_KEY"))
        .and(header("authorization", "Bearer at-123"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"secret": {"id": "s1", "secretKey": "STRIPE_KEY", "version": 8, "type": "shared"}}),
            ),
        )
        .expect(1)
        .mount(&infisical)
        .await;
    // The export reads the environment's secrets (GET /api/v4/secrets, as in providers.rs).
    Mock::given(method("GET"))
        .and(path("/api/v4/secrets"))
        .and(header("authorization", "Bearer at-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"secrets": [
            {"id": "s1", "secretKey": "STRIPE_KEY", "secretValue": "sk_new_value_123", "secretPath": "/", "version": 8, "type": "shared"}
        ], "imports": []})))
        .mount(&infisical)
        .await;
    let age_key = age::x25519::Identity::generate();

    let suite = repo_root().join("drills/pre-launch.yaml");
    let mut cmd = env.command(&["drill", suite.to_str().unwrap(), "--id", "pl", "--output", "json"]);
    let vars = [
        ("DRILL_DATABASE_URL", prod.clone()),
        ("DRILL_SCRATCH_DATABASE_URL", scratch),
        ("DRILL_RLS_EXPECTED", rls.display().to_string()),
        ("DRILL_DUMP_FILE", dump.display().to_string()),
        ("DRILL_APP_HEALTH_URL", format!("{}/api/health", app.uri())),
        ("DRILL_RPC_URL", format!("{}/rpc", app.uri())),
        ("DRILL_REDIS_URL", format!("redis://:redis-pw-123@127.0.0.1:{}", redis.1)),
        ("DRILL_VERCEL_PROJECT", "prj_app".into()),
        ("DRILL_VERCEL_TOKEN", "vercel-token-123".into()),
        ("DRILL_VERCEL_API", vercel.uri()),
        ("DRILL_POLL_INTERVAL", "10ms".into()),
        ("DRILL_SUPABASE_PROJECT_REF", "abcd".into()),
        ("DRILL_VERCEL_STATUS_PAGE", pages.uri()),
        ("DRILL_SUPABASE_STATUS_PAGE", pages.uri()),
        ("DRILL_TRIGGER_STATUS_PAGE", pages.uri()),
        ("DRILL_CLOUDFLARE_STATUS_PAGE", cf_page.uri()),
        // Nothing of the drill may reach a real API: a default left in place fails here.
        ("DRILL_SUPABASE_API", "http://127.0.0.1:9".into()),
        ("DRILL_INFISICAL_API", infisical.uri()),
        ("DRILL_INFISICAL_PROJECT", "p1".into()),
        ("DRILL_INFISICAL_CLIENT_ID", "machine-id".into()),
        ("DRILL_INFISICAL_CLIENT_SECRET", "machine-secret-xyz".into()),
        ("DRILL_SECRET_NAME", "STRIPE_KEY".into()),
        ("DRILL_NEW_SECRET_VALUE", "sk_new_value_123".into()),
        ("DRILL_EXPORT_TO", env.path("secrets.age").display().to_string()),
        ("DRILL_EXPORT_RECIPIENT", age_key.to_public().to_string()),
    ];
    for (k, v) in &vars {
        cmd.env(k, v);
    }
    cmd.env_remove("SLACK_WEBHOOK");
    let r = tokio::task::spawn_blocking(move || finish(cmd.output().unwrap())).await.unwrap();
    let rep: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
    let ids: Vec<&str> = rep["playbooks"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "backup",
            "restore_drill",
            "s1_full_outage",
            "s2_partial_outage",
            "s3_data_corruption",
            "s4_secret_compromise"
        ]
    );
    for p in rep["playbooks"].as_array().unwrap() {
        assert_eq!(p["result"], "passed", "{}: {}\n{}", p["id"], p, r.stderr);
    }
    assert_eq!((rep["result"].as_str(), r.code), (Some("passed"), 0), "{}", r.stderr);
    // What the stand-ins saw: one rollback to the last good deployment, one rotation.
    {
        let st = vercel_fake.state();
        assert_eq!(st.posts.len(), 1, "one rollback: {:?}", st.posts);
        assert!(st.refused.is_empty(), "bad requests to Vercel: {:?}", st.refused);
    }
    let s1 = env.show("pl-s1_full_outage");
    assert_eq!(crate::support::step(&s1, "rollback")["outputs"]["to_deployment"], "dpl_2");
    let s4 = env.show("pl-s4_secret_compromise");
    assert_eq!(crate::support::step(&s4, "rotate")["outputs"]["version"], 8);
    assert_eq!(crate::support::step(&s4, "auth_activity")["outputs"]["rows"][0]["events"], 2);
    // S4's RTO runs to verify_app; the audit approvals after it are follow-up time.
    let s4_objectives = &rep["playbooks"][5]["objectives"];
    assert_eq!(s4_objectives["restored_by"], "verify_app", "{s4_objectives}");
    assert_eq!(s4_objectives["rto_result"], "met", "{s4_objectives}");
    assert!(s4_objectives["follow_up_ms"].as_u64().is_some(), "{s4_objectives}");
    let md = env.read(".runbook/drills/pl/report.md");
    assert!(md.contains("result: **passed** (6 of 6 passed"), "{md}");
    for f in crate::support::walk(&env.path(".runbook")) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        for secret in
            [crate::pg_cluster::PASSWORD, "machine-secret-xyz", "vercel-token-123", "redis-pw-123", "sk_new_value_123"]
        {
            assert!(!text.contains(secret), "{} holds a secret", f.display());
        }
    }
}
