//! `runbook serve`: a live, read-only web view of the runs for the incident channel.
//!
//! It reads the same store as `runbook show` (state dir or team store) and never holds a
//! run: no lock, no lease, no event written; another process drives the run and the page
//! follows it. Routes:
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the runs, newest first |
//! | `GET /runs/{id}` | one run: graph with statuses, clock, pending approvals, timeline, report |
//! | `GET /runs/{id}/live` | Server-Sent Events: the run's part of the page, again on every change |
//! | `GET /runs/{id}/report.md` | `runbook report` of the run, as Markdown |
//! | `GET /api/runs`, `GET /api/runs/{id}` | the same as JSON |
//! | `GET /assets/style.css`, `/assets/app.js` | embedded in the binary |

mod html;
pub mod view;

use crate::playbook;
use crate::report::incident;
use crate::state::{RunState, StateError, Store};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const STYLE: &str = include_str!("assets/style.css");
const APP_JS: &str = include_str!("assets/app.js");

/// How often a live page's run is read again from the store.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source} (is another server using that port? pick another with --listen)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the web server stopped: {0}")]
    Server(std::io::Error),
}

/// What the handlers share: the store, read only.
#[derive(Clone)]
struct App {
    store: Arc<dyn Store + Send + Sync>,
    /// Where the runs come from, for the runs page (a team store URL without its password).
    source: Arc<str>,
}

/// Serves until Ctrl-C. `ready` is told the bound address (the port may have been 0).
pub async fn serve(
    store: Arc<dyn Store + Send + Sync>,
    source: String,
    listen: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| ServeError::Bind { addr: listen, source })?;
    let bound = listener.local_addr().map_err(ServeError::Server)?;
    ready(bound);
    let app = router(App { store, source: source.into() });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(ServeError::Server)
}

fn router(app: App) -> Router {
    Router::new()
        .route("/", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/live", get(run_live))
        .route("/runs/{id}/report.md", get(run_report))
        .route("/api/runs", get(api_runs))
        .route("/api/runs/{id}", get(api_run))
        .route("/assets/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .fallback(|| async { not_found("No such page.") })
        .layer(axum::middleware::map_response(harden))
        .with_state(app)
}

/// Every answer: no script or style from anywhere but this server, no framing, no sniffing,
/// no caching (the page is live and may be opened on a shared screen).
async fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn not_found(what: &str) -> Response {
    html(StatusCode::NOT_FOUND, html::not_found(what))
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response {
    match serde_json::to_string_pretty(v) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot write JSON: {e}")).into_response(),
    }
}

fn json_error(status: StatusCode, message: String) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

/// Run ids are what `exec --run-id` accepts (letters, digits, `-`, `_`, `.`; not starting
/// with `.`): anything else, such as `../..` from `/runs/..%2F..`, names no run and never
/// reaches the store as a path.
fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

enum Failure {
    NotFound(String),
    Store(String),
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        match e {
            StateError::NotFound { run_id, .. } => Failure::NotFound(format!("No run `{run_id}`.")),
            other => Failure::Store(other.to_string()),
        }
    }
}

impl Failure {
    fn page(self) -> Response {
        match self {
            Failure::NotFound(m) => not_found(&m),
            Failure::Store(m) => {
                html(StatusCode::INTERNAL_SERVER_ERROR, html::not_found(&format!("The store failed: {m}")))
            }
        }
    }
    fn json(self) -> Response {
        match self {
            Failure::NotFound(m) => json_error(StatusCode::NOT_FOUND, m),
            Failure::Store(m) => json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("the store failed: {m}")),
        }
    }
}

/// Reads one run's state and who drives it, off the async threads (the file store reads
/// files, the team store waits on its connection thread).
async fn load_state(app: &App, id: &str) -> Result<(RunState, Option<String>), Failure> {
    if !valid_run_id(id) {
        return Err(Failure::NotFound("No such run: a run id has only letters, digits, `-`, `_` and `.`.".into()));
    }
    let (store, id) = (app.store.clone(), id.to_owned());
    tokio::task::spawn_blocking(move || -> Result<(RunState, Option<String>), Failure> {
        let state = store.load(&id)?;
        let driven_by = store.holder(&id).map(|h| h.to_string());
        Ok((state, driven_by))
    })
    .await
    .map_err(|e| Failure::Store(format!("the reader task died: {e}")))?
}

/// The view of a state: parses the playbook saved with the run (for the graph, the RTO and
/// the approval questions). Done only when something changed, not at every poll.
async fn view_of(app: &App, state: RunState, driven_by: Option<String>) -> Result<view::RunView, Failure> {
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || {
        let pb =
            store.playbook_text(&state.run_id).ok().and_then(|text| playbook::load_str(&state.file, text, None).ok());
        view::build(&state, pb.as_ref(), driven_by, jiff::Timestamp::now())
    })
    .await
    .map_err(|e| Failure::Store(format!("the reader task died: {e}")))
}

async fn load_view(app: &App, id: String) -> Result<view::RunView, Failure> {
    let (state, driven_by) = load_state(app, &id).await?;
    view_of(app, state, driven_by).await
}

async fn list(app: &App) -> Result<Vec<crate::state::RunSummary>, Failure> {
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || store.list().map_err(Failure::from))
        .await
        .map_err(|e| Failure::Store(format!("the reader task died: {e}")))?
}

async fn runs_page(State(app): State<App>) -> Response {
    match list(&app).await {
        Ok(runs) => html(StatusCode::OK, html::runs_page(&app.source, &runs)),
        Err(f) => f.page(),
    }
}

async fn api_runs(State(app): State<App>) -> Response {
    match list(&app).await {
        Ok(runs) => json(StatusCode::OK, &runs),
        Err(f) => f.json(),
    }
}

async fn run_page(State(app): State<App>, Path(id): Path<String>) -> Response {
    match load_view(&app, id).await {
        Ok(v) => html(StatusCode::OK, html::run_page(&v)),
        Err(f) => f.page(),
    }
}

async fn api_run(State(app): State<App>, Path(id): Path<String>) -> Response {
    match load_view(&app, id).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(f) => f.json(),
    }
}

async fn run_report(State(app): State<App>, Path(id): Path<String>) -> Response {
    let v = match load_view(&app, id.clone()).await {
        Ok(v) => v,
        Err(f) => return f.page(),
    };
    // A run still going has no report yet, but the commander may want the draft: build it
    // the same way `runbook report` does.
    let md = match v.report_markdown {
        Some(md) => md,
        None => {
            let store = app.store.clone();
            let built = tokio::task::spawn_blocking(move || -> Result<String, Failure> {
                let state = store.load(&id)?;
                let pb = store.playbook_text(&id).ok().and_then(|t| playbook::load_str(&state.file, t, None).ok());
                Ok(incident::markdown(&incident::build(&state, pb.as_ref())))
            })
            .await;
            match built {
                Ok(Ok(md)) => md,
                Ok(Err(f)) => return f.page(),
                Err(e) => return Failure::Store(format!("the reader task died: {e}")).page(),
            }
        }
    };
    ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], md).into_response()
}

/// The live stream: the run's fragment of the page at once, then again whenever the run's
/// journal moved (a new event) or its status changed (its driver died). A run that cannot
/// be read is ended with an `error` event; the browser's EventSource reconnects by itself.
async fn run_live(State(app): State<App>, Path(id): Path<String>) -> Response {
    let first = match load_state(&app, &id).await {
        Ok(x) => x,
        Err(f) => return f.page(),
    };
    struct Watch {
        app: App,
        id: String,
        /// The state read to check the run exists: the stream's first event.
        first: Option<(RunState, Option<String>)>,
        last: Option<(u64, &'static str, bool)>,
        done: bool,
    }
    let start = Watch { app, id, first: Some(first), last: None, done: false };
    let stream = futures_util::stream::unfold(start, |mut w| async move {
        if w.done {
            return None;
        }
        loop {
            let read = match w.first.take() {
                Some(x) => Ok(x),
                None => load_state(&w.app, &w.id).await,
            };
            // Only a change costs a rendering; an unchanged run costs one read of the store.
            let rendered = match read {
                Ok((state, driven_by)) => {
                    let key = (state.seq, state.status.as_str(), driven_by.is_some());
                    if w.last == Some(key) {
                        None
                    } else {
                        w.last = Some(key);
                        Some(view_of(&w.app, state, driven_by).await)
                    }
                }
                Err(f) => Some(Err(f)),
            };
            match rendered {
                Some(Ok(v)) => {
                    let ev = SseEvent::default().event("run").data(html::run_fragment(&v));
                    return Some((Ok::<_, Infallible>(ev), w));
                }
                Some(Err(Failure::NotFound(m) | Failure::Store(m))) => {
                    w.done = true;
                    return Some((Ok(SseEvent::default().event("error").data(m)), w));
                }
                None => tokio::time::sleep(POLL).await,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

#[cfg(test)]
mod tests {
    use super::valid_run_id;

    #[test]
    fn run_ids_are_never_paths() {
        assert!(valid_run_id("drill-20260101-abc.1"));
        for bad in ["", ".", "..", "../..", "a/b", ".hidden", "a\\b", "a b", "%2e%2e"] {
            assert!(!valid_run_id(bad), "{bad}");
        }
    }
}
