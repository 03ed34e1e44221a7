//! The daemon's API: HTTP/1.1 + JSON on a Unix socket, for the proxy and the CLI
//! (`curl --unix-socket var/run/apotheca.sock http://control/v1/status` works too).
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/tenants/{schema}/wake[?timeout_ms=N]` | 200 `{schema, endpoints}` once a worker is ready; 404 unknown, 409 suspended, 503 crash-looping, stopping or timed out (with `Retry-After`) |
//! | `POST /v1/tenants/{schema}/restart[?timeout_ms=N]` | 200 `{schema, replaced, pids}` once every worker was replaced, one at a time |
//! | `POST /v1/restart[?timeout_ms=N]` | the same for every tenant and the public site: `[{schema, replaced, pids}]` |
//! | `GET /v1/status`, `GET /v1/tenants/{schema}` | workers (pid, state, uptime, in flight, served, RSS), restarts, last exit, policy; the status also `totals`: tenants, live tenants, workers, their RSS, the database's connections |
//! | `GET /metrics` | the status as Prometheus text: totals, and per tenant its workers and their RSS (the proxy's admin `/metrics` passes it on) |
//! | `GET /v1/ready` | 200 `{ready, status}` while the daemon serves (ready once, not stopping), else 503 with the status line: what the proxy's `/ready` asks |
//! | `GET /v1/endpoints` | `{schema: [endpoint]}` for every tenant with a ready worker |
//! | `GET /v1/endpoints/watch` | a stream of JSON lines: first `{"snapshot": {...}}`, then `{"schema", "endpoints"}` per change |
//! | `POST /v1/tenants` `{name, subdomain, admin_user, admin_password}` | the public sign-up ([`super::signup`]): 201 `{schema, domain, login_url}`; 409 subdomain taken, 422 invalid, each with the `field` at fault |
//! | `POST /v1/operators/login` `{username, password, address}` | an operator console login ([`super::operator_api`]): 200 `{token, username, expires_at}`; 401 wrong; 429 (with `Retry-After`) after 5 failures of one username from one address within 15 minutes |
//! | `POST /v1/operators/logout`, `GET /v1/operators/me` | ends the session / `{username}` (bearer token) |
//! | `GET /v1/console/tenants`, `GET /v1/console/tenants/{schema}` | ([`super::console`], bearer token) `{operator, tenants}` / `{operator, tenant}`: status, state, domains (primary first), ready workers, requests in the last minute, last request, policy |
//! | `POST /v1/console/tenants` `{name, schema, domain, admin_user, admin_password}` | create-tenant --admin-user: 201 `{schema, domain, login_url}` |
//! | `POST /v1/console/tenants/{schema}/suspend`, `.../resume` | suspend-tenant / resume-tenant: 200 `{schema, status, changed}` |
//! | `DELETE /v1/console/tenants/{schema}?confirm={schema}` | delete-tenant: 200 `{schema, name}` |
//! | `POST /v1/console/tenants/{schema}/domains` `{domain, primary}` | add-domain: 201 `{schema, domain}` |
//! | `DELETE /v1/console/tenants/{schema}/domains/{domain}[?new_primary=D]` | remove-domain: 200 `{schema, domain}` |
//! | `PUT /v1/console/tenants/{schema}/policy` `{min_workers, max_workers, idle_timeout_secs}` | scale: 200 the policy now in force |
//! | `POST /v1/console/imports?schema=S&domain=D[&name=N][&filename=F]`, a SQLite file or dumpdata JSON as the body | ([`super::imports`]) import pharmacy-app --dry-run: 200 `{token, schema, domain, name, filename, bytes, report}`; 413 over `[control] import_max_bytes` |
//! | `GET /v1/console/imports/{token}` | the same answer again |
//! | `POST /v1/console/imports/{token}`, `DELETE /v1/console/imports/{token}` | the import itself: 201 `{schema, domain, name, login_url, report}` / the upload dropped |
//!
//! Errors are `{"error": {"code", "message"}}`; refused input also names its `field` and, when
//! several fields are wrong, `fields: {field: message}`. Every `/v1/console/` route and
//! `/v1/operators/{logout,me}` need `Authorization: Bearer <token>` of a live operator session
//! (else 401), checked against `public.operator_sessions`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apotheca_common::names::SchemaName;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::catalog::Catalog;
use super::console;
use super::imports::{self, Imports};
use super::operator_api;
use super::readiness::Readiness;
use super::signup::{self, NewTenant, Signup};
use super::status::WakeError;
use super::supervisor::{Endpoints, Msg};
use apotheca_protocol::api::{DatabaseUse, FeedLine, Restarted, StatusReport, TenantStatus, Woken};

#[derive(Clone)]
pub struct Api {
    pub to: mpsc::Sender<Msg>,
    pub endpoints: watch::Receiver<Endpoints>,
    pub catalog: Catalog,
    pub wake_timeout: Duration,
    pub restart_timeout: Duration,
    pub signup: Arc<Signup>,
    /// How long an operator console session lasts.
    pub session_lifetime: Duration,
    /// Whether the daemon serves (`GET /v1/ready`).
    pub readiness: watch::Receiver<Readiness>,
    /// The connection the status's database figures are asked on, kept between calls (a
    /// scrape of `/metrics` every few seconds would otherwise start a backend each time).
    pub figures_db: Arc<tokio::sync::Mutex<Option<tokio_postgres::Client>>>,
    /// The database is a Citus coordinator's (the status then says where each tenant lives).
    pub citus: bool,
    /// The console's import uploads.
    pub imports: Arc<Imports>,
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/tenants", post(create_tenant))
        .route("/v1/tenants/{schema}", get(tenant_status))
        .route("/v1/tenants/{schema}/wake", post(wake))
        .route("/v1/tenants/{schema}/restart", post(restart))
        .route("/v1/restart", post(restart_all))
        .route("/v1/endpoints", get(endpoints))
        .route("/v1/ready", get(ready))
        .route("/v1/endpoints/watch", get(watch_endpoints))
        .merge(operator_api::router())
        .merge(console::router())
        .merge(imports::router())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
        })
        .with_state(api)
}

/// An API error: its status, a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The input field at fault.
    pub field: Option<&'static str>,
    /// Every field at fault when there are several (the first is also `field`).
    pub fields: Vec<(&'static str, String)>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            fields: Vec::new(),
            retry_after: None,
        }
    }

    /// Refused input: 422 naming `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message);
        e.field = Some(field);
        e
    }

    /// Every field at fault at once (422, the first also as `field`), so a form shows them
    /// all; none when `wrong` is empty.
    pub fn fields(wrong: Vec<(&'static str, String)>) -> Result<(), Self> {
        let Some((field, message)) = wrong.first().cloned() else {
            return Ok(());
        };
        let mut e = Self::invalid(field, message);
        e.fields = wrong;
        Err(e)
    }

    /// The database failed: logged, and a 503 that says to try again.
    pub fn database(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "API: the database failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database",
            "The database did not answer; try again in a moment.",
        )
    }

    /// Too many password hashes at once: 503, try again in a second.
    pub fn busy(e: apotheca_pharmacy::accounts::Busy) -> Self {
        let mut error = Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string());
        error.retry_after = Some(1);
        error
    }

    pub fn gone() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "control is shutting down",
        )
    }
}

impl From<&WakeError> for ApiError {
    fn from(e: &WakeError) -> Self {
        let (status, code) = match e {
            WakeError::Unknown => (StatusCode::NOT_FOUND, "unknown_tenant"),
            WakeError::Suspended => (StatusCode::CONFLICT, "suspended"),
            WakeError::CrashLooping { .. } => (StatusCode::SERVICE_UNAVAILABLE, "crash_looping"),
            WakeError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        if let Some(secs) = self.retry_after {
            error["retry_after"] = json!(secs);
        }
        if !self.fields.is_empty() {
            let fields: serde_json::Map<String, serde_json::Value> = self
                .fields
                .into_iter()
                .map(|(f, m)| (f.to_owned(), json!(m)))
                .collect();
            error["fields"] = serde_json::Value::Object(fields);
        }
        let body = Json(json!({ "error": error }));
        let retry_after = self
            .retry_after
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1));
        match retry_after {
            Some(secs) => {
                (self.status, [(header::RETRY_AFTER, secs.to_string())], body).into_response()
            }
            None => (self.status, body).into_response(),
        }
    }
}

/// `public` or a tenant schema name; anything else is a 400.
fn schema(raw: &str) -> Result<String, ApiError> {
    if raw == SchemaName::PUBLIC {
        return Ok(raw.to_owned());
    }
    SchemaName::parse(raw)
        .map(|s| s.to_string())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_schema", e.to_string()))
}

#[derive(Deserialize)]
struct Timeout {
    timeout_ms: Option<u64>,
}

impl Timeout {
    fn or(&self, default: Duration) -> Duration {
        self.timeout_ms
            .map_or(default, |ms| Duration::from_millis(ms.clamp(1, 3_600_000)))
    }
}

/// Sends a request to the supervisor and waits for its answer.
pub(super) async fn ask<T>(api: &Api, make: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Option<T> {
    let (reply, answer) = oneshot::channel();
    api.to.send(make(reply)).await.ok()?;
    answer.await.ok()
}

async fn status(State(api): State<Api>) -> Result<Json<StatusReport>, ApiError> {
    full_status(&api).await.map(Json)
}

async fn metrics(State(api): State<Api>) -> Result<Response, ApiError> {
    let report = full_status(&api).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        super::status::prometheus(&report),
    )
        .into_response())
}

/// The supervisor's report with the database's connection figures (left out when the
/// database does not answer within a second: the status still shows the workers).
async fn full_status(api: &Api) -> Result<StatusReport, ApiError> {
    let mut report = ask(api, |reply| Msg::Status { reply })
        .await
        .ok_or_else(ApiError::gone)?;
    report.totals.database =
        match tokio::time::timeout(Duration::from_secs(1), database_use(api)).await {
            Ok(Ok(used)) => Some(used),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "status: no connection figures from the database");
                None
            }
            Err(_) => None,
        };
    add_nodes(api, &mut report.tenants).await;
    Ok(report)
}

/// On Citus, the node each tenant's schema lives on (left out when the database does not
/// answer within a second).
async fn add_nodes(api: &Api, tenants: &mut [TenantStatus]) {
    if !api.citus {
        return;
    }
    let placements = async {
        let mut kept = api.figures_db.lock().await;
        let client = match &mut *kept {
            Some(c) if !c.is_closed() => c,
            slot => slot.insert(api.signup.db.connect().await?),
        };
        Ok::<_, crate::error::ControlError>(apotheca_tenancy::citus::placements(&*client).await?)
    };
    match tokio::time::timeout(Duration::from_secs(1), placements).await {
        Ok(Ok(nodes)) => {
            for t in tenants {
                t.node = nodes.get(&t.schema).map(ToString::to_string);
            }
        }
        Ok(Err(e)) => tracing::debug!(error = %e, "status: no node placements from the database"),
        Err(_) => {}
    }
}

async fn database_use(api: &Api) -> crate::error::Result<DatabaseUse> {
    let mut kept = api.figures_db.lock().await;
    let client = match &mut *kept {
        Some(c) if !c.is_closed() => c,
        slot => slot.insert(api.signup.db.connect().await?),
    };
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE backend_type = 'client backend'),
                    count(*) FILTER (WHERE backend_type = 'client backend' AND usename LIKE 't\\_%'),
                    current_setting('max_connections')::bigint
             FROM pg_stat_activity",
            &[],
        )
        .await?;
    Ok(DatabaseUse {
        connections: row.get::<_, i64>(0) as u64,
        tenant_connections: row.get::<_, i64>(1) as u64,
        max_connections: row.get::<_, i64>(2) as u64,
    })
}

async fn create_tenant(
    State(api): State<Api>,
    Json(form): Json<NewTenant>,
) -> Result<(StatusCode, Json<signup::Created>), ApiError> {
    match signup::create(api.signup.clone(), form).await {
        Ok(created) => Ok((StatusCode::CREATED, Json(created))),
        Err(r) => {
            let mut e = ApiError::new(r.status, r.code, r.message);
            e.field = r.field;
            Err(e)
        }
    }
}

async fn tenant_status(
    State(api): State<Api>,
    Path(raw): Path<String>,
) -> Result<Json<TenantStatus>, ApiError> {
    let schema = schema(&raw)?;
    let report: StatusReport = ask(&api, |reply| Msg::Status { reply })
        .await
        .ok_or_else(ApiError::gone)?;
    let mut tenant: Vec<TenantStatus> = report
        .tenants
        .into_iter()
        .filter(|t| t.schema == schema)
        .collect();
    add_nodes(&api, &mut tenant).await;
    tenant
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError::from(&WakeError::Unknown))
}

async fn wake(
    State(api): State<Api>,
    Path(raw): Path<String>,
    Query(timeout): Query<Timeout>,
) -> Result<Json<Woken>, ApiError> {
    let schema = schema(&raw)?;
    let timeout = timeout.or(api.wake_timeout);
    let attempt = async {
        let mut looked_up = false;
        loop {
            let s = schema.clone();
            let answer = ask(&api, |reply| Msg::Wake { schema: s, reply })
                .await
                .ok_or_else(ApiError::gone)?;
            match answer {
                Ok(endpoints) => {
                    let schema = schema.clone();
                    return Ok(Json(Woken { schema, endpoints }));
                }
                // Perhaps created a moment ago, before its notification arrived.
                Err(WakeError::Unknown) if !looked_up && schema != SchemaName::PUBLIC => {
                    looked_up = true;
                    if !lookup(&api, &schema).await? {
                        return Err(ApiError::from(&WakeError::Unknown));
                    }
                }
                Err(e) => return Err(ApiError::from(&e)),
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(answer) => answer,
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "no worker of {schema} became ready within {} ms",
                timeout.as_millis()
            ),
        )),
    }
}

/// Reads one tenant from the database and hands it to the supervisor; false if none.
async fn lookup(api: &Api, schema: &str) -> Result<bool, ApiError> {
    fn failed(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database", e.to_string())
    }
    let client = api.catalog.db.connect().await.map_err(failed)?;
    let row = api
        .catalog
        .load_one(&client, schema)
        .await
        .map_err(failed)?;
    let found = row.is_some();
    if found {
        let msg = Msg::Tenant {
            schema: schema.to_owned(),
            row,
        };
        api.to.send(msg).await.map_err(|_| ApiError::gone())?;
    }
    Ok(found)
}

async fn restart(
    State(api): State<Api>,
    Path(raw): Path<String>,
    Query(timeout): Query<Timeout>,
) -> Result<Json<Restarted>, ApiError> {
    let schema = schema(&raw)?;
    restart_one(&api, schema, timeout.or(api.restart_timeout))
        .await
        .map(Json)
}

async fn restart_one(api: &Api, schema: String, timeout: Duration) -> Result<Restarted, ApiError> {
    let s = schema.clone();
    let answer = ask(api, |reply| Msg::Restart { schema: s, reply });
    match tokio::time::timeout(timeout, answer).await {
        Ok(Some(Ok((replaced, pids)))) => Ok(Restarted {
            schema,
            replaced,
            pids,
        }),
        Ok(Some(Err(e))) => Err(ApiError::from(&e)),
        Ok(None) => Err(ApiError::gone()),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "{schema}: the restart did not finish within {} ms; it goes on",
                timeout.as_millis()
            ),
        )),
    }
}

async fn restart_all(
    State(api): State<Api>,
    Query(timeout): Query<Timeout>,
) -> Result<Json<Vec<Restarted>>, ApiError> {
    let report: StatusReport = ask(&api, |reply| Msg::Status { reply })
        .await
        .ok_or_else(ApiError::gone)?;
    let timeout = timeout.or(api.restart_timeout);
    let runs = report
        .tenants
        .into_iter()
        .filter(|t| t.state != "deleted")
        .map(|t| restart_one(&api, t.schema, timeout));
    let mut done = Vec::new();
    for outcome in futures::future::join_all(runs).await {
        match outcome {
            Ok(r) => done.push(r),
            // A tenant deleted meanwhile has nothing left to restart.
            Err(e) if e.status == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Json(done))
}

/// 200 while the daemon serves (ready once, not stopping), else 503; its status line either way.
async fn ready(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    let now = api.readiness.borrow().clone();
    if now.serving_now() {
        return Ok(Json(json!({ "ready": true, "status": now.status_line() })));
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        now.status_line(),
    ))
}

async fn endpoints(State(api): State<Api>) -> Json<BTreeMap<String, Vec<String>>> {
    let map = api.endpoints.borrow().clone();
    Json(map.as_ref().clone())
}

/// A snapshot, then one line per tenant whose endpoints changed (an empty list: none left).
async fn watch_endpoints(State(api): State<Api>) -> Response {
    let mut rx = api.endpoints.clone();
    let first = rx.borrow_and_update().clone();
    let snapshot = line(&FeedLine::Snapshot {
        snapshot: first.as_ref().clone(),
    });
    let changes = futures::stream::unfold((rx, first), |(mut rx, before)| async move {
        rx.changed().await.ok()?;
        let now = rx.borrow_and_update().clone();
        let lines = diff(&before, &now)
            .into_iter()
            .map(|(schema, endpoints)| {
                line(&FeedLine::Change {
                    schema: schema.to_owned(),
                    endpoints: endpoints.to_vec(),
                })
            })
            .collect::<Vec<_>>();
        Some((futures::stream::iter(lines), (rx, now)))
    })
    .flatten();
    let stream = futures::stream::once(async move { snapshot })
        .chain(changes)
        .map(Ok::<_, std::convert::Infallible>);
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One line of the feed (its types are strings and lists of them: it always serialises).
fn line(value: &FeedLine) -> String {
    let mut text = serde_json::to_string(value).unwrap_or_default();
    text.push('\n');
    text
}

/// The tenants whose endpoints differ, with their new list.
fn diff<'a>(
    before: &'a BTreeMap<String, Vec<String>>,
    now: &'a BTreeMap<String, Vec<String>>,
) -> Vec<(&'a str, &'a [String])> {
    let mut changed: Vec<(&str, &[String])> = now
        .iter()
        .filter(|(s, e)| before.get(*s) != Some(*e))
        .map(|(s, e)| (s.as_str(), e.as_slice()))
        .collect();
    changed.extend(
        before
            .keys()
            .filter(|s| !now.contains_key(*s))
            .map(|s| (s.as_str(), &[][..])),
    );
    changed
}
