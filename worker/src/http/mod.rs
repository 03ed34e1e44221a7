//! The worker's HTTP surface: the router, and the middleware every request passes through
//! (request id, tenant check, one tracing span, in-flight counting). The internal routes
//! (`/_apotheca/health`, `/_apotheca/stats`) answer only requests that did not come through
//! the proxy (control, local tools on the worker's socket): the proxy refuses them to clients
//! and, should one get through anyway, it carries the proxy's `X-Apotheca-Tenant` and is
//! answered 404 here.

pub mod auth;
pub mod error;
pub mod json;

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::RngCore;
use tracing::Instrument;

use crate::state::AppState;
use error::ApiError;

/// Header the proxy sets to the tenant it routed to; a mismatch means a routing bug.
pub const TENANT_HEADER: &str = "x-apotheca-tenant";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

pub fn router(state: AppState) -> Router {
    let internal = Router::new()
        .route("/_apotheca/health", get(health))
        .route("/_apotheca/stats", get(stats))
        .route_layer(axum::middleware::from_fn(not_through_the_proxy));
    // The public schema holds no pharmacy: its worker serves only the public site.
    let app: Router = if state.schema == apotheca_common::names::SchemaName::PUBLIC {
        let site = apotheca_site::SiteState::new(
            state.pool.clone(),
            state.settings.control_socket.clone(),
            state.settings.signups_per_hour,
        );
        internal
            .with_state(state.clone())
            .merge(apotheca_site::router(site))
    } else {
        internal
            .nest("/api/v1", crate::api::router(&state))
            .merge(crate::pages::router())
            .with_state(state.clone())
    };
    app.fallback(crate::pages::fallback)
        .layer(axum::middleware::from_fn_with_state(state, envelope))
}

/// Every request: an id (the client's if it is sane, else a new one), a span with tenant,
/// id, method and path, a refusal when the proxy says it meant another tenant, and the
/// status and latency recorded at the end.
async fn envelope(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = state.stats.begin();
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_sane_id(id))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let span = tracing::info_span!(
        "request",
        tenant = %state.schema,
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
        status = tracing::field::Empty,
        latency_us = tracing::field::Empty,
    );
    let misdirected = req
        .headers()
        .get(TENANT_HEADER)
        .map(|v| v.as_bytes() != state.schema.as_bytes());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let mut response = async {
        if misdirected == Some(true) {
            let claimed = req
                .headers()
                .get(TENANT_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            tracing::warn!(claimed, "request meant for another tenant");
            return ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected",
                "this worker serves another pharmacy",
            )
            .into_response();
        }
        next.run(req).await
    }
    .instrument(span.clone())
    .await;
    let status = response.status().as_u16();
    let latency = started.elapsed().as_micros() as u64;
    span.record("status", status);
    span.record("latency_us", latency);
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, latency_us = latency, "request failed");
        } else {
            tracing::debug!(status, latency_us = latency, "request done");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The internal routes: a request the proxy forwarded (it always says the tenant) gets the
/// same 404 as a path no route takes.
async fn not_through_the_proxy(req: Request, next: Next) -> Response {
    if req.headers().contains_key(TENANT_HEADER) {
        return ApiError::not_found("page").into_response();
    }
    next.run(req).await
}

/// The request's id, for handlers that log or return it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn is_sane_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Pings the database.
async fn health(State(state): State<AppState>) -> Response {
    let ping = async {
        let client = state.db().await?;
        client.simple_query("SELECT 1").await?;
        Ok::<_, ApiError>(())
    };
    match ping.await {
        Ok(()) => Json(serde_json::json!({"status": "ok", "schema": state.schema})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "schema": state.schema,
        "in_flight": state.stats.in_flight(),
        "served": state.stats.served(),
        "rss_bytes": crate::stats::rss_bytes(),
        "pool": {"size": state.pool.status().size, "available": state.pool.status().available},
        "password_hashes": apotheca_pharmacy::accounts::password::stats(),
    }))
}
