//! A strict fake of the Vercel REST API parts `rollback-deploy` uses. It keeps state and
//! changes it only after the request that causes it: the rollback's alias request exists
//! only after our POST, and moves through its states one poll at a time.
//!
//! Shapes (https://vercel.com/docs/rest-api):
//! - `GET /v9/projects/{idOrName}[?rollbackInfo=true]` → `{id, name, targets: {production:
//!   {id}}, lastAliasRequest: {fromDeploymentId, toDeploymentId, jobStatus, requestedAt,
//!   type}}`; jobStatus succeeded | failed | skipped | pending | in-progress, type promote |
//!   rollback (https://github.com/vercel/vercel/blob/main/packages/sdk/docs/models/operations/lastaliasrequest.md);
//! - `GET /v6/deployments?projectId=&target=production&rollbackCandidate=true&limit=&until=`
//!   → `{deployments: [{uid, url, created, state, target, isRollbackCandidate}], pagination:
//!   {count, next, prev}}`, newest first; `next` is the `until` of the next page
//!   (https://vercel.com/docs/rest-api/deployments/list-deployments);
//! - `GET /v13/deployments/{id}` → `{id, url, createdAt, readyState, target}`
//!   (https://vercel.com/docs/rest-api/deployments/get-a-deployment-by-id-or-url);
//! - `POST /v1/projects/{projectId}/rollback/{deploymentId}` → 201; 409 when it is not a
//!   rollback candidate
//!   (https://vercel.com/docs/rest-api/projects/points-all-production-domains-for-a-project-to-the-given-deploy).

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const TOKEN: &str = "vercel-token-123";
pub const PROJECT: &str = "prj_app";

#[derive(Clone)]
pub struct Deployment {
    pub uid: String,
    pub created: i64,
    /// Was aliased to production once (Vercel's rollback candidates).
    pub candidate: bool,
}

pub fn dep(uid: &str, created: i64, candidate: bool) -> Deployment {
    Deployment { uid: uid.into(), created, candidate }
}

#[derive(Default)]
pub struct State {
    pub production: String,
    pub deployments: Vec<Deployment>,
    pub last_alias: Option<Value>,
    /// The states our rollback's alias request goes through, one per project read after the
    /// POST; the last one stays. `succeeded` also moves production.
    pub script: Vec<&'static str>,
    pub posts: Vec<String>,
    pub list_queries: Vec<String>,
    pub reads_after_post: usize,
    /// Bad requests seen (wrong token, missing filter): the test asserts there are none.
    pub refused: Vec<String>,
}

#[derive(Clone)]
pub struct Vercel(pub Arc<Mutex<State>>);

impl Vercel {
    pub async fn start(
        production: &str,
        deployments: Vec<Deployment>,
        script: &[&'static str],
    ) -> (MockServer, Vercel) {
        let state = State { production: production.into(), deployments, script: script.to_vec(), ..Default::default() };
        let fake = Vercel(Arc::new(Mutex::new(state)));
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any()).respond_with(fake.clone()).mount(&server).await;
        (server, fake)
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
}

fn query(req: &Request, k: &str) -> Option<String> {
    req.url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned())
}

impl Respond for Vercel {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        let auth = req.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if auth != format!("Bearer {TOKEN}") {
            s.refused.push(format!("{} {}: bad token", req.method, req.url.path()));
            return ResponseTemplate::new(403)
                .set_body_json(json!({"error": {"code": "forbidden", "message": "Not authorized"}}));
        }
        let path = req.url.path().to_owned();
        match (req.method.as_str(), path.as_str()) {
            ("GET", p) if p == format!("/v9/projects/{PROJECT}") => {
                if !s.posts.is_empty() {
                    s.reads_after_post += 1;
                    // Advance our request one state per read, after the POST only.
                    if let Some(last) = s.last_alias.clone()
                        && last["type"] == "rollback"
                        && Some(last["toDeploymentId"].as_str().unwrap_or_default())
                            == s.posts.last().map(String::as_str)
                    {
                        let i = s.reads_after_post.min(s.script.len()) - 1;
                        let status = s.script[i];
                        let mut req = last;
                        req["jobStatus"] = json!(status);
                        if status == "succeeded" {
                            s.production = req["toDeploymentId"].as_str().unwrap().to_owned();
                        }
                        s.last_alias = Some(req);
                    }
                }
                let mut body = json!({"id": PROJECT, "name": "app", "targets": {"production": {"id": s.production}}});
                if query(req, "rollbackInfo").as_deref() == Some("true") {
                    body["lastAliasRequest"] = s.last_alias.clone().unwrap_or(Value::Null);
                }
                ResponseTemplate::new(200).set_body_json(body)
            }
            ("GET", "/v6/deployments") => {
                s.list_queries.push(req.url.query().unwrap_or_default().to_owned());
                if query(req, "projectId").as_deref() != Some(PROJECT)
                    || query(req, "target").as_deref() != Some("production")
                {
                    s.refused.push(format!("list without projectId/target: {}", req.url));
                    return ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "bad query"}}));
                }
                let only_candidates = query(req, "rollbackCandidate").as_deref() == Some("true");
                let limit: usize = query(req, "limit").and_then(|l| l.parse().ok()).unwrap_or(20).min(100);
                let until: Option<i64> = query(req, "until").and_then(|u| u.parse().ok());
                let mut all: Vec<&Deployment> = s
                    .deployments
                    .iter()
                    .filter(|d| !only_candidates || d.candidate)
                    .filter(|d| until.is_none_or(|u| d.created < u))
                    .collect();
                all.sort_by_key(|d| std::cmp::Reverse(d.created));
                let more = all.len() > limit;
                let page: Vec<Value> = all
                    .iter()
                    .take(limit)
                    .map(|d| {
                        json!({"uid": d.uid, "name": "app", "url": format!("app-{}.vercel.app", d.uid.trim_start_matches("dpl_")), "created": d.created,
                               "state": "READY", "readyState": "READY", "target": "production", "isRollbackCandidate": d.candidate})
                    })
                    .collect();
                let next = if more { json!(page.last().unwrap()["created"]) } else { Value::Null };
                ResponseTemplate::new(200).set_body_json(
                    json!({"deployments": page, "pagination": {"count": page.len(), "next": next, "prev": null}}),
                )
            }
            ("GET", p) if p.starts_with("/v13/deployments/") => {
                let id = p.rsplit('/').next().unwrap();
                match s.deployments.iter().find(|d| d.uid == id) {
                    Some(d) => ResponseTemplate::new(200).set_body_json(json!({
                        "id": d.uid, "url": format!("app-{}.vercel.app", d.uid.trim_start_matches("dpl_")),
                        "createdAt": d.created, "readyState": "READY", "target": "production", "projectId": PROJECT
                    })),
                    None => ResponseTemplate::new(404).set_body_json(
                        json!({"error": {"code": "not_found", "message": "The deployment could not be found."}}),
                    ),
                }
            }
            ("POST", p) if p.starts_with(&format!("/v1/projects/{PROJECT}/rollback/")) => {
                let to = p.rsplit('/').next().unwrap().to_owned();
                let prod_created = s.deployments.iter().find(|d| d.uid == s.production).map(|d| d.created);
                let Some(target) = s.deployments.iter().find(|d| d.uid == to).cloned() else {
                    return ResponseTemplate::new(404)
                        .set_body_json(json!({"error": {"message": "Deployment not found"}}));
                };
                if !target.candidate {
                    s.refused.push(format!("rollback to non-candidate {to}"));
                    return ResponseTemplate::new(409)
                        .set_body_json(json!({"error": {"message": "This deployment is not eligible for rollback"}}));
                }
                if prod_created.is_some_and(|c| target.created >= c) {
                    s.refused.push(format!("roll forward to {to}"));
                }
                let requested_at = jiff::Timestamp::now().as_millisecond();
                let from = s.production.clone();
                s.last_alias = Some(json!({
                    "fromDeploymentId": from, "toDeploymentId": to, "jobStatus": "pending",
                    "requestedAt": requested_at, "type": "rollback"
                }));
                s.posts.push(to);
                ResponseTemplate::new(201).set_body_json(json!({}))
            }
            _ => {
                s.refused.push(format!("unexpected {} {}", req.method, req.url));
                ResponseTemplate::new(404).set_body_json(json!({"error": {"message": "Not found"}}))
            }
        }
    }
}
