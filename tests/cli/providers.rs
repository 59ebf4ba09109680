//! The provider steps against strict fakes: Vercel rollbacks (stale alias requests, every end
//! state, paging, candidates only, last known good), status pages of both kinds, webhooks that
//! fail, and the encrypted Infisical export.

use crate::support::{Env, finish, status, step, walk};
use crate::vercel_fake::{TOKEN, Vercel, dep};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn exec(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> crate::support::Run {
    let mut c = env.command(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    tokio::task::spawn_blocking(move || finish(c.output().unwrap())).await.unwrap()
}

fn rollback_step(id: &str, api: &str, to: &str, extra: &str) -> String {
    format!(
        "  - id: {id}\n    type: rollback-deploy\n    continue_on_error: true\n{extra}    with: {{ provider: vercel, project: prj_app, token: \"{{{{ env.VERCEL_TOKEN }}}}\", api_url: \"{api}\", to: \"{to}\", poll_interval: 10ms, max_wait: 20s }}\n"
    )
}

fn playbook(steps: &[String]) -> String {
    format!("apiVersion: runbook/v1\nname: t\nsecrets: [VERCEL_TOKEN]\nsteps:\n{}", steps.concat())
}

/// A stale `succeeded` (an earlier rollback to the same deployment) is there before our POST;
/// ours then fails, or is skipped. Neither may pass for success, and neither waits for the
/// timeout.
#[tokio::test(flavor = "multi_thread")]
async fn rollback_ends_on_its_own_request_failed_or_skipped_not_a_stale_success() {
    let three = || vec![dep("dpl_1", 1000, true), dep("dpl_2", 2000, true), dep("dpl_3", 3000, true)];
    let stale = json!({"fromDeploymentId": "dpl_3", "toDeploymentId": "dpl_2", "jobStatus": "succeeded",
        "requestedAt": 1_000_000, "type": "rollback"});
    let (s_failed, failed) = Vercel::start("dpl_3", three(), &["pending", "in-progress", "failed"]).await;
    failed.state().last_alias = Some(stale.clone());
    let (s_skipped, skipped) = Vercel::start("dpl_3", three(), &["skipped"]).await;
    skipped.state().last_alias = Some(stale);
    let env = Env::new();
    env.write(
        "p.yaml",
        &playbook(&[
            rollback_step("failed", &s_failed.uri(), "previous", ""),
            rollback_step("skipped", &s_skipped.uri(), "previous", ""),
        ]),
    );
    let r = exec(&env, &["exec", "p.yaml", "--run-id", "r"], &[("VERCEL_TOKEN", TOKEN)]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("r");
    assert_eq!(status(&show, "failed"), "failed");
    assert_eq!(step(&show, "failed")["error"], "Vercel reports the rollback to dpl_2 failed");
    assert_eq!(failed.state().reads_after_post, 3, "polled through pending and in-progress to failed");
    assert_eq!(status(&show, "skipped"), "failed");
    assert_eq!(step(&show, "skipped")["error"], "Vercel skipped the rollback to dpl_2");
    assert_eq!(skipped.state().reads_after_post, 1, "skipped ends at once");
    for f in [&failed, &skipped] {
        let st = f.state();
        assert_eq!(st.posts, ["dpl_2"]);
        assert_eq!(st.production, "dpl_3");
        assert!(st.refused.is_empty(), "{:?}", st.refused);
    }
    assert!(!r.all().contains(TOKEN));
}

/// 150 candidates; production was rolled back to dpl_040 earlier, so the first page holds
/// only newer ones. `previous` must page on to dpl_039 (never forward), a newer id is refused,
/// and a READY build that was never aliased is never picked.
#[tokio::test(flavor = "multi_thread")]
async fn rollback_pages_to_the_current_deployment_and_never_rolls_forward() {
    let many: Vec<_> = (1..=150).map(|i| dep(&format!("dpl_{i:03}"), i * 1000, true)).collect();
    let (server, paged) = Vercel::start("dpl_040", many, &["pending", "succeeded"]).await;
    // dpl_2 was built READY for production but never aliased: not a candidate.
    let (s_unaliased, unaliased) = Vercel::start(
        "dpl_3",
        vec![dep("dpl_1", 1000, true), dep("dpl_2", 2000, false), dep("dpl_3", 3000, true)],
        &["succeeded"],
    )
    .await;
    // The serving deployment is not listed as a candidate of its own: its age comes from
    // `GET /v13/deployments/{id}`.
    let (s_serving, serving) = Vercel::start(
        "dpl_3",
        vec![dep("dpl_1", 1000, true), dep("dpl_2", 2000, true), dep("dpl_3", 3000, false)],
        &["succeeded"],
    )
    .await;
    let env = Env::new();
    env.write(
        "p.yaml",
        &playbook(&[
            rollback_step("serving", &s_serving.uri(), "previous", ""),
            rollback_step("back", &server.uri(), "previous", ""),
            rollback_step("forward", &server.uri(), "dpl_120", "    needs: [back]\n"),
            rollback_step("unaliased", &s_unaliased.uri(), "previous", ""),
        ]),
    );
    let r = exec(&env, &["exec", "p.yaml", "--run-id", "r"], &[("VERCEL_TOKEN", TOKEN)]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("r");
    assert_eq!(status(&show, "back"), "succeeded", "{}", r.all());
    assert_eq!(step(&show, "back")["outputs"]["to_deployment"], "dpl_039");
    assert_eq!(step(&show, "back")["outputs"]["from_deployment"], "dpl_040");
    {
        let st = paged.state();
        assert_eq!(st.posts, ["dpl_039"]);
        assert_eq!(st.production, "dpl_039");
        assert!(st.list_queries.iter().all(|q| q.contains("rollbackCandidate=true")), "{:?}", st.list_queries);
        // The second page was asked for with the first page's `pagination.next`.
        assert!(st.list_queries.iter().any(|q| q.contains("until=51000")), "{:?}", st.list_queries);
        assert!(st.refused.is_empty(), "{:?}", st.refused);
    }
    assert_eq!(status(&show, "forward"), "failed");
    assert_eq!(
        step(&show, "forward")["error"],
        "dpl_120 is not a rollback candidate of prj_app older than the current dpl_039 (a rollback never rolls forward)"
    );
    assert_eq!(step(&show, "unaliased")["outputs"]["to_deployment"], "dpl_1");
    assert_eq!(unaliased.state().posts, ["dpl_1"]);
    assert_eq!(step(&show, "serving")["outputs"]["to_deployment"], "dpl_2");
    assert_eq!(serving.state().posts, ["dpl_2"]);
}

/// `before:` names a bad deployment that the candidate list leaves out: the one serving now
/// (not a way back of its own) or one that was never aliased. Its age comes from the
/// deployment itself, and the newest candidate before it is put back.
#[tokio::test(flavor = "multi_thread")]
async fn rollback_before_a_deployment_the_candidate_list_leaves_out() {
    let deps = || {
        vec![dep("dpl_1", 1000, true), dep("dpl_2", 2000, true), dep("dpl_25", 2500, false), dep("dpl_3", 3000, false)]
    };
    let (s_current, current) = Vercel::start("dpl_3", deps(), &["succeeded"]).await;
    let (s_other, other) = Vercel::start("dpl_3", deps(), &["succeeded"]).await;
    let (s_unknown, unknown) = Vercel::start("dpl_3", deps(), &["succeeded"]).await;
    let env = Env::new();
    env.write(
        "p.yaml",
        &playbook(&[
            rollback_step("current", &s_current.uri(), "before:dpl_3", ""),
            rollback_step("other", &s_other.uri(), "before:dpl_25", ""),
            rollback_step("unknown", &s_unknown.uri(), "before:dpl_nope", ""),
        ]),
    );
    let r = exec(&env, &["exec", "p.yaml", "--run-id", "r"], &[("VERCEL_TOKEN", TOKEN)]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("r");
    assert_eq!(status(&show, "current"), "succeeded", "{}", r.all());
    assert_eq!(step(&show, "current")["outputs"]["to_deployment"], "dpl_2");
    assert_eq!(current.state().posts, ["dpl_2"]);
    assert_eq!(status(&show, "other"), "succeeded", "{}", r.all());
    assert_eq!(step(&show, "other")["outputs"]["to_deployment"], "dpl_2");
    assert_eq!(other.state().posts, ["dpl_2"]);
    assert_eq!(status(&show, "unknown"), "failed");
    assert_eq!(step(&show, "unknown")["error"], "dpl_nope is not a production deployment of prj_app (2 listed)");
    assert!(unknown.state().posts.is_empty());
    for f in [&current, &other] {
        assert!(f.state().refused.is_empty(), "{:?}", f.state().refused);
    }
}

/// Two bad deploys in a row: `previous` would put the first bad one back. S1 takes the last
/// known good one as an input: before the first bad deployment, or before a time.
#[tokio::test(flavor = "multi_thread")]
async fn s1_rolls_back_past_two_bad_deploys_to_the_last_known_good() {
    let (server, fake) = Vercel::start(
        "dpl_3",
        vec![dep("dpl_1", 1000, true), dep("dpl_2", 2000, true), dep("dpl_3", 3000, true)],
        &["in-progress", "succeeded"],
    )
    .await;
    let (code, show, out, fake) =
        crate::cloud::run_s1_with(&["none"], &server, fake, &["rollback_to=before:dpl_2"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(step(&show, "rollback")["outputs"]["to_deployment"], "dpl_1");
    assert_eq!(fake.state().posts, ["dpl_1"]);
    assert_eq!(fake.state().production, "dpl_1");

    // By time (dry run: the choice only).
    let env = Env::new();
    env.write("p.yaml", &playbook(&[rollback_step("t", &server.uri(), "before:1970-01-01T00:00:02.5Z", "")]));
    let (s2, _f2) = Vercel::start(
        "dpl_3",
        vec![dep("dpl_1", 1000, true), dep("dpl_2", 2000, true), dep("dpl_3", 3000, true)],
        &["succeeded"],
    )
    .await;
    env.write("q.yaml", &playbook(&[rollback_step("t", &s2.uri(), "before:1970-01-01T00:00:01.5Z", "")]));
    let r = exec(&env, &["exec", "q.yaml", "--dry-run"], &[("VERCEL_TOKEN", TOKEN)]).await;
    assert!(r.stdout.contains("back from dpl_3 to dpl_1 (https://app-1.vercel.app)"), "{}", r.all());
    let r = exec(&env, &["validate", "p.yaml"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    env.write("bad.yaml", &playbook(&[rollback_step("t", &s2.uri(), "before:yesterday", "")]));
    let r = exec(&env, &["validate", "bad.yaml"], &[]).await;
    assert_ne!(r.code, 0);
    assert!(r.all().contains("after `before:` give a deployment id (dpl_...) or an RFC 3339 time"), "{}", r.all());
}

/// A Better Stack page (https://betterstack.com/docs/uptime/status-pages/subscribing-to-status-updates/subscribing-to-api):
/// `/index.json`, JSON:API, `data.attributes.aggregate_state` and `included[]`
/// `status_page_resource`s with `public_name` and `status`. It has no `/api/v2/summary.json`.
pub async fn betterstack_page(state: &str, resources: &[(&str, &str)]) -> MockServer {
    let server = MockServer::start().await;
    let included: Vec<Value> = resources
        .iter()
        .enumerate()
        .map(|(i, (name, st))| {
            json!({"id": format!("{}", 100 + i), "type": "status_page_resource",
                   "attributes": {"status_page_section_id": 1, "resource_id": 7 + i, "resource_type": "Monitor",
                                  "public_name": name, "explanation": "", "position": i, "availability": 0.999, "status": st}})
        })
        .chain(std::iter::once(json!({"id": "1", "type": "status_page_section", "attributes": {"name": "Services", "position": 0}})))
        .collect();
    Mock::given(method("GET"))
        .and(path("/index.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"id": "165", "type": "status_page", "attributes": {
                "company_name": "Trigger.dev", "subdomain": "trigger", "custom_domain": "status.trigger.dev",
                "aggregate_state": state, "timezone": "UTC"},
              "relationships": {"sections": {"data": []}, "resources": {"data": []}, "status_reports": {"data": []}}},
            "included": included
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/summary.json"))
        .respond_with(ResponseTemplate::new(404).set_body_string("<html>Not found</html>"))
        .mount(&server)
        .await;
    server
}

/// An Atlassian Statuspage (https://metastatuspage.com/api/v2): `/api/v2/summary.json`.
pub async fn statuspage_page(indicator: &str, components: &[(&str, &str)]) -> MockServer {
    let server = MockServer::start().await;
    let comps: Vec<Value> = components
        .iter()
        .enumerate()
        .map(|(i, (n, s))| json!({"id": format!("c{i}"), "name": n, "status": s, "group": false, "only_show_if_degraded": false}))
        .collect();
    Mock::given(method("GET"))
        .and(path("/api/v2/summary.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "page": {"id": "p", "name": "Cloudflare", "url": "https://www.cloudflarestatus.com", "updated_at": "2026-11-27T10:00:00Z"},
            "status": {"indicator": indicator, "description": "Minor Service Outage"},
            "components": comps, "incidents": [], "scheduled_maintenances": []
        })))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn status_pages_of_both_kinds_a_component_and_a_wrong_url() {
    let bs = betterstack_page("degraded", &[("API", "operational"), ("Workers", "degraded")]).await;
    let sp =
        statuspage_page("minor", &[("R2", "major_outage"), ("Workers", "operational"), ("DNS", "operational")]).await;
    // One name in two groups (an `API` per region): which one is meant is not clear.
    let twice = statuspage_page("major", &[("API", "operational"), ("api", "major_outage")]).await;
    let nothing = MockServer::start().await; // 404 for everything
    let env = Env::new();
    let step = |id: &str, with: String| {
        format!("  - id: {id}\n    type: check-status\n    continue_on_error: true\n    with: {{ {with} }}\n")
    };
    env.write(
        "p.yaml",
        &format!(
            "apiVersion: runbook/v1\nname: t\nsteps:\n{}{}{}{}{}{}{}",
            step("twice", format!("statuspage: \"{}\", component: Api", twice.uri())),
            step("bs", format!("statuspage: \"{}\"", bs.uri())),
            step("bs_api", format!("statuspage: \"{}\", format: betterstack, component: api", bs.uri())),
            step("r2", format!("statuspage: \"{}\", component: R2", sp.uri())),
            step("dns", format!("statuspage: \"{}\", component: DNS, fail_on: degraded", sp.uri())),
            step("nope", format!("statuspage: \"{}\", component: S3", sp.uri())),
            step("wrong", format!("statuspage: \"{}/status\"", nothing.uri())),
        ),
    );
    let r = exec(&env, &["exec", "p.yaml", "--run-id", "c"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("c");
    let o = |id: &str| crate::support::step(&show, id)["outputs"].clone();
    assert_eq!(o("bs")["format"], "betterstack");
    assert_eq!(o("bs")["indicator"], "minor");
    assert_eq!(o("bs")["components"], json!({"API": "operational", "Workers": "degraded"}));
    assert_eq!(o("bs")["healthy"], false);
    assert_eq!(o("bs_api")["indicator"], "none");
    assert_eq!(o("bs_api")["page_indicator"], "minor");
    assert_eq!(o("r2")["indicator"], "critical");
    assert_eq!(o("r2")["component"], json!({"name": "R2", "status": "major_outage"}));
    // The page says minor (R2), but DNS is fine: a check of DNS passes.
    assert_eq!(status(&show, "dns"), "succeeded");
    assert_eq!(o("dns")["healthy"], true);
    assert_eq!(status(&show, "twice"), "failed");
    assert_eq!(
        crate::support::step(&show, "twice")["error"],
        "the status page has 2 components named `Api` (operational, major_outage): which one is meant is not clear"
    );
    assert_eq!(status(&show, "nope"), "failed");
    assert_eq!(crate::support::step(&show, "nope")["error"], "the status page has no component `S3`");
    assert!(r.all().contains("hint: its components: R2, Workers, DNS"), "{}", r.all());
    let wrong = crate::support::step(&show, "wrong")["error"].as_str().unwrap().to_owned();
    assert!(
        wrong.ends_with("/status is not an Atlassian Statuspage or a Better Stack status page (/api/v2/summary.json: HTTP 404; /index.json: HTTP 404)"),
        "{wrong}"
    );
    assert!(r.all().contains("hint: check the status page URL"), "{}", r.all());
    assert!(!r.all().contains("project"), "{}", r.all());
}

/// A webhook that fails is a warning, not a failed recovery; `required: true` restores
/// failing. The hook's URL (its path is the credential) appears nowhere.
#[tokio::test(flavor = "multi_thread")]
async fn failing_webhook_is_a_warning_and_the_run_succeeds() {
    let slack = MockServer::start().await;
    // Slack answers a revoked hook with 404 `no_service` (https://api.slack.com/messaging/webhooks#handling_errors).
    Mock::given(method("POST"))
        .and(path("/services/T000/B000/hook-secret-xyz"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"text": "recovered"})))
        .respond_with(ResponseTemplate::new(404).set_body_string("no_service"))
        .expect(2)
        .mount(&slack)
        .await;
    let env = Env::new();
    let hook = format!("{}/services/T000/B000/hook-secret-xyz", slack.uri());
    let pb = |required: bool| {
        format!(
            "apiVersion: runbook/v1\nname: t\nsecrets: [SLACK_WEBHOOK]\nsteps:\n  - id: work\n    type: wait\n    with: {{ duration: 0s }}\n  - id: tell\n    type: notify\n    needs: [work]\n    with: {{ webhook: \"{{{{ env.SLACK_WEBHOOK }}}}\", text: recovered{} }}\n  - id: after\n    type: wait\n    needs: [tell]\n    with: {{ duration: 0s }}\n",
            if required { ", required: true" } else { "" }
        )
    };
    // Also a hook that does not answer at all: its error must not quote the URL either.
    env.write(
        "p.yaml",
        &format!(
            "{}  - id: down\n    type: notify\n    with: {{ webhook: \"{{{{ env.DOWN_HOOK }}}}\", text: hi }}\n",
            pb(false).replace("secrets: [SLACK_WEBHOOK]", "secrets: [SLACK_WEBHOOK, DOWN_HOOK]")
        ),
    );
    env.write("q.yaml", &pb(true));
    let down = "http://127.0.0.1:1/services/T000/B000/hook-secret-xyz";
    let r = exec(&env, &["exec", "p.yaml", "--run-id", "n1"], &[("SLACK_WEBHOOK", &hook), ("DOWN_HOOK", down)]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("n1");
    assert_eq!(status(&show, "tell"), "failed");
    assert_eq!(status(&show, "after"), "succeeded");
    let origin = slack.uri();
    let want = format!("step `tell` failed and the run went on: the webhook {origin} answered HTTP 404: no_service");
    let warnings: Vec<&str> = show["warnings"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(warnings.len(), 2, "{show}");
    assert!(warnings.contains(&want.as_str()), "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w
                .starts_with("step `down` failed and the run went on: cannot reach the webhook http://127.0.0.1:1: ")),
        "{warnings:?}"
    );
    assert!(r.all().contains(&format!("warning: {want}")), "{}", r.all());
    let md = env.run(&["report", "n1"]);
    assert!(md.stdout.contains("## Warnings\n\n- step `"), "{}", md.stdout);
    assert!(md.stdout.contains(&format!("- {want}\n")), "{}", md.stdout);

    let r = exec(&env, &["exec", "q.yaml", "--run-id", "n2"], &[("SLACK_WEBHOOK", &hook)]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(status(&env.show("n2"), "after"), "skipped");
    for f in walk(env.dir.path()) {
        assert!(!std::fs::read_to_string(&f).unwrap_or_default().contains("hook-secret-xyz"), "{}", f.display());
    }
    assert!(!r.all().contains("hook-secret-xyz") && !md.stdout.contains("hook-secret-xyz"));
    slack.verify().await;
}

/// Infisical's universal-auth login
/// (https://infisical.com/docs/api-reference/endpoints/universal-auth/login): only the
/// test's machine identity gets the access token `at-123`, which the other fakes require.
pub(crate) async fn infisical_login(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/api/v1/auth/universal-auth/login"))
        .and(body_json(json!({"clientId": "machine-id", "clientSecret": "machine-secret-xyz"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"accessToken": "at-123", "expiresIn": 7200, "accessTokenMaxTTL": 7200, "tokenType": "Bearer"}),
        ))
        .mount(server)
        .await;
}

/// Infisical (https://infisical.com/docs/api-reference): universal-auth login, then
/// `GET /api/v4/secrets` (https://infisical.com/docs/api-reference/endpoints/secrets/list)
/// with the access token; the list only for the right project, environment and path.
pub(crate) async fn infisical() -> MockServer {
    let server = MockServer::start().await;
    infisical_login(&server).await;
    Mock::given(method("GET"))
        .and(path("/api/v4/secrets"))
        .and(header("authorization", "Bearer at-123"))
        .and(query_param("projectId", "p1"))
        .and(query_param("environment", "prod"))
        .and(query_param("secretPath", "/"))
        .and(query_param("recursive", "true"))
        .and(query_param("viewSecretValue", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "secrets": [
                {"id": "s1", "_id": "s1", "workspace": "p1", "environment": "prod", "version": 3, "type": "shared",
                 "secretKey": "STRIPE_SECRET_KEY", "secretValue": "sk_live_clear_value_1", "secretComment": "", "secretPath": "/"},
                {"id": "s2", "_id": "s2", "workspace": "p1", "environment": "prod", "version": 1, "type": "shared",
                 "secretKey": "DB_PASSWORD", "secretValue": "multi\nline \"pw\" clear_value_2", "secretComment": "", "secretPath": "/db"}
            ],
            "imports": []
        })))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn export_secrets_decrypts_to_the_values_and_leaves_no_clear_text() {
    use age::secrecy::ExposeSecret;
    let server = infisical().await;
    let key = age::x25519::Identity::generate();
    let other = age::x25519::Identity::generate();
    let env = Env::new();
    std::fs::create_dir(env.path("exports")).unwrap();
    env.write(
        "p.yaml",
        &format!(
            "apiVersion: runbook/v1\nname: t\nsecrets: [INF_ID, INF_SECRET]\nsteps:\n  - id: export\n    type: export-secrets\n    with:\n      api_url: \"{}\"\n      client_id: \"{{{{ env.INF_ID }}}}\"\n      client_secret: \"{{{{ env.INF_SECRET }}}}\"\n      project_id: p1\n      environment: prod\n      recipients: [\"{}\", \"{}\"]\n      to: exports/prod.age\n",
            server.uri(),
            key.to_public(),
            other.to_public()
        ),
    );
    let r = exec(
        &env,
        &["exec", "p.yaml", "--run-id", "e1"],
        &[("INF_ID", "machine-id"), ("INF_SECRET", "machine-secret-xyz")],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("e1");
    let o = &step(&show, "export")["outputs"];
    assert_eq!(o["count"], 2);
    assert_eq!(o["keys"], json!(["/STRIPE_SECRET_KEY", "/db/DB_PASSWORD"]));
    let file = env.path("exports/prod.age");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let cipher = std::fs::read(&file).unwrap();
    assert!(cipher.starts_with(b"age-encryption.org/v1\n"));
    for id in [&key, &other] {
        let plain: Value = serde_json::from_slice(&age::decrypt(id, &cipher).unwrap()).unwrap();
        assert_eq!(plain["format"], "runbook-secrets-export/1");
        assert_eq!(plain["environment"], "prod");
        assert_eq!(
            plain["secrets"],
            json!([{"key": "STRIPE_SECRET_KEY", "value": "sk_live_clear_value_1", "path": "/"},
                   {"key": "DB_PASSWORD", "value": "multi\nline \"pw\" clear_value_2", "path": "/db"}])
        );
    }
    // A key that is not a recipient cannot read it.
    assert!(age::decrypt(&age::x25519::Identity::generate(), &cipher).is_err());
    // No clear text anywhere: not in the export dir, the state dir, the output.
    for f in walk(env.dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        for needle in ["clear_value_1", "clear_value_2", "machine-secret-xyz", "at-123"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} in {}", f.display());
        }
    }
    assert!(!r.all().contains("clear_value"));
    // The private key was never needed by runbook.
    assert!(!r.all().contains(key.to_string().expose_secret()));

    // A bad recipient is refused at validate time, with the field.
    env.write(
        "bad.yaml",
        &std::fs::read_to_string(env.path("p.yaml")).unwrap().replace(&key.to_public().to_string(), "age1nope"),
    );
    let r = exec(&env, &["validate", "bad.yaml"], &[]).await;
    assert_ne!(r.code, 0);
    assert!(r.all().contains("with.recipients[0]") && r.all().contains("not an age public key"), "{}", r.all());
}

/// A stateful Infisical for a rotation: the list shows the new value only after the PATCH
/// that sets it, and the PATCH body must be the documented one
/// (https://infisical.com/docs/api-reference/endpoints/secrets/update).
#[derive(Clone)]
struct Infisical(
    std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
);

impl wiremock::Respond for Infisical {
    fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
        let refuse = |why: String| {
            self.1.lock().unwrap().push(why);
            ResponseTemplate::new(400).set_body_json(json!({"message": "bad request"}))
        };
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let path = req.url.path();
        if req.method.as_str() == "POST" && path == "/api/v1/auth/universal-auth/login" {
            if body != json!({"clientId": "machine-id", "clientSecret": "machine-secret-xyz"}) {
                return ResponseTemplate::new(401).set_body_json(json!({"message": "Invalid credentials"}));
            }
            return ResponseTemplate::new(200)
                .set_body_json(json!({"accessToken": "at-123", "expiresIn": 7200, "tokenType": "Bearer"}));
        }
        if req.headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer at-123") {
            return ResponseTemplate::new(401).set_body_json(json!({"message": "Token missing"}));
        }
        let mut secrets = self.0.lock().unwrap();
        if req.method.as_str() == "PATCH" && path.starts_with("/api/v4/secrets/") {
            let name = path.rsplit('/').next().unwrap().to_owned();
            let value = body["secretValue"].as_str().unwrap_or_default().to_owned();
            let want = json!({"projectId": "p1", "environment": "prod", "secretPath": "/", "secretValue": value, "type": "shared"});
            if body != want || value.is_empty() {
                drop(secrets);
                return refuse(format!("PATCH body {body}"));
            }
            let Some(s) = secrets.iter_mut().find(|(k, _)| *k == name) else {
                return ResponseTemplate::new(404).set_body_json(json!({"message": "Secret not found"}));
            };
            s.1 = value;
            return ResponseTemplate::new(200)
                .set_body_json(json!({"secret": {"id": "s1", "secretKey": name, "version": 4, "type": "shared"}}));
        }
        if req.method.as_str() == "GET" && path == "/api/v4/secrets" {
            // The list is only for the project and environment that was rotated, with values.
            let q = |k: &str| req.url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
            if q("projectId").as_deref() != Some("p1")
                || q("environment").as_deref() != Some("prod")
                || q("viewSecretValue").as_deref() != Some("true")
            {
                drop(secrets);
                return refuse(format!("list query {}", req.url.query().unwrap_or_default()));
            }
            let list: Vec<Value> = secrets
                .iter()
                .map(|(k, v)| json!({"id": k, "secretKey": k, "secretValue": v, "secretPath": "/", "version": 1, "type": "shared"}))
                .collect();
            return ResponseTemplate::new(200).set_body_json(json!({"secrets": list, "imports": []}));
        }
        drop(secrets);
        refuse(format!("unexpected {} {}", req.method, req.url))
    }
}

/// The routine rotation playbook end to end: the value minted at the issuer (a secret input)
/// reaches Infisical, the export that follows holds it (encrypted), and nothing is in clear.
/// Without a value (and without `generate`) the rotation refuses instead of inventing one.
#[tokio::test(flavor = "multi_thread")]
async fn routine_rotation_writes_the_issuers_value_and_exports_it_encrypted() {
    let fake = Infisical(
        std::sync::Arc::new(std::sync::Mutex::new(vec![
            ("RESEND_API_KEY".into(), "re_old_compromised_111".into()),
            ("SESSION_KEY".into(), "session_key_clear_222".into()),
        ])),
        Default::default(),
    );
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any()).respond_with(fake.clone()).mount(&server).await;
    let app = MockServer::start().await;
    Mock::given(method("GET")).and(path("/health")).respond_with(ResponseTemplate::new(200)).mount(&app).await;
    let key = age::x25519::Identity::generate();
    let env = Env::new();
    let pb = crate::support::repo_root().join("playbooks/rotate-routine.yaml");
    let args = |run: &str| -> Vec<String> {
        [
            "exec",
            pb.to_str().unwrap(),
            "--yes",
            "--run-id",
            run,
            "-i",
            "secret_name=RESEND_API_KEY",
            "-i",
            "infisical_project=p1",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "-i".into(),
            format!("infisical_api={}", server.uri()),
            "-i".into(),
            format!("app_health_url={}/health", app.uri()),
            "-i".into(),
            "export_to=prod.age".into(),
            "-i".into(),
            format!("export_recipient={}", key.to_public()),
        ])
        .collect()
    };
    let creds = [("INFISICAL_CLIENT_ID", "machine-id"), ("INFISICAL_CLIENT_SECRET", "machine-secret-xyz")];
    // No new value: refused, nothing written to Infisical.
    let a = args("r0");
    let r = exec(&env, &a.iter().map(String::as_str).collect::<Vec<_>>(), &creds).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        crate::support::step(&env.show("r0"), "rotate")["error"]
            .as_str()
            .unwrap()
            .starts_with("`with`: give `value:` (the new credential, minted at its issuer"),
        "{}",
        r.all()
    );
    assert_eq!(fake.0.lock().unwrap()[0].1, "re_old_compromised_111");
    assert!(!env.path("prod.age").exists());

    let a = args("r1");
    let mut vars = creds.to_vec();
    vars.push(("RUNBOOK_INPUT_NEW_VALUE", "re_new_from_issuer_333"));
    let r = exec(&env, &a.iter().map(String::as_str).collect::<Vec<_>>(), &vars).await;
    assert_eq!(r.code, 0, "{}", r.all());
    let show = env.show("r1");
    assert_eq!(step(&show, "rotate")["outputs"]["version"], 4);
    assert_eq!(step(&show, "rotate")["outputs"]["generated"], false);
    assert_eq!(status(&show, "revoke_old"), "succeeded");
    assert_eq!(fake.0.lock().unwrap()[0].1, "re_new_from_issuer_333");
    assert!(fake.1.lock().unwrap().is_empty(), "{:?}", fake.1.lock().unwrap());
    let plain: Value =
        serde_json::from_slice(&age::decrypt(&key, &std::fs::read(env.path("prod.age")).unwrap()).unwrap()).unwrap();
    assert_eq!(plain["secrets"][0], json!({"key": "RESEND_API_KEY", "value": "re_new_from_issuer_333", "path": "/"}));
    for f in walk(env.dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        for needle in ["re_new_from_issuer_333", "session_key_clear_222", "machine-secret-xyz"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} in {}", f.display());
        }
    }
    assert!(!r.all().contains("re_new_from_issuer_333"));
}

/// `rotate-secret` never invents a value by default: without `value` or `generate: true` the
/// playbook does not validate, and both at once are refused too.
#[test]
fn rotate_secret_needs_a_value_or_an_explicit_generate() {
    let env = Env::new();
    let pb = |with: &str| {
        format!(
            "apiVersion: runbook/v1\nname: t\nsteps:\n  - id: r\n    type: rotate-secret\n    with: {{ client_id: a, client_secret: b, project_id: p, environment: prod, name: K{with} }}\n"
        )
    };
    env.write("none.yaml", &pb(""));
    env.write("both.yaml", &pb(", value: \"{{ env.NEW }}\", generate: true"));
    env.write("given.yaml", &pb(", value: \"{{ env.NEW }}\""));
    env.write("gen.yaml", &pb(", generate: true"));
    let env = crate::support::Test::in_env(env)
        .args(&["validate", "none.yaml"])
        .status(2)
        .stderr(concat!(
            "none.yaml:6:5: step `r`: `with`: give `value:` (the new credential, minted at its issuer, from a secret ",
            "input or an earlier step's output) or `generate: true` (only for a secret the app itself owns, such as a ",
            "session key)\n1 problem found\n",
        ))
        .run();
    let env = crate::support::Test::in_env(env)
        .args(&["validate", "both.yaml"])
        .status(2)
        .stderr("both.yaml:6:122: step `r`: `with.generate`: give either `value` or `generate: true`, not both\n1 problem found\n")
        .run();
    assert_eq!(env.run(&["validate", "given.yaml"]).code, 0);
    assert_eq!(env.run(&["validate", "gen.yaml"]).code, 0);
}
