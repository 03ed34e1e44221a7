//! Personal API tokens (for scripts): list, create (shown once), revoke. Only their SHA-256
//! is stored.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::announce_auth_change;
use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::ApiJson;
use crate::state::AppState;
use apotheca_pharmacy::accounts;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
}

#[derive(Serialize)]
struct TokenOut {
    id: i64,
    name: String,
    prefix: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    revoked: bool,
}

async fn list_tokens(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Vec<TokenOut>>> {
    let rows = state
        .db()
        .await?
        .query(
            "SELECT id, name, token_prefix, created_at, last_used_at, expires_at, revoked_at IS NOT NULL
             FROM api_tokens WHERE user_id = $1 ORDER BY id",
            &[&auth.user_id],
        )
        .await?;
    Ok(Json(
        rows.iter()
            .map(|r| TokenOut {
                id: r.get(0),
                name: r.get(1),
                prefix: r.get(2),
                created_at: r.get(3),
                last_used_at: r.get(4),
                expires_at: r.get(5),
                revoked: r.get(6),
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
    /// Days until it expires; none: until revoked.
    expires_in_days: Option<u16>,
}

/// The token is shown in this answer only.
async fn create_token(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid(
            "name",
            "give the token a name of 1 to 100 characters",
        ));
    }
    let (token, hash) = accounts::new_token();
    let prefix: String = token.chars().take(8).collect();
    let days = body.expires_in_days.map(i32::from);
    let row = state
        .db()
        .await?
        .query_one(
            "INSERT INTO api_tokens (user_id, name, token_hash, token_prefix, expires_at)
             VALUES ($1, $2, $3, $4, CASE WHEN $5::int IS NULL THEN NULL ELSE now() + make_interval(days => $5) END)
             RETURNING id",
            &[&auth.user_id, &name, &hash, &prefix, &days],
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": row.get::<_, i64>(0), "name": name, "token": token})),
    ))
}

async fn revoke_token(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let db = state.db().await?;
    // Revoked once: a token revoked already keeps its time. (Not `coalesce(revoked_at, now())`:
    // Citus refuses a non-immutable function inside COALESCE in an UPDATE.)
    let n = db
        .execute(
            "UPDATE api_tokens SET revoked_at = now()
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            &[&id, &auth.user_id],
        )
        .await?;
    if n == 0 {
        let exists = db
            .query_opt(
                "SELECT 1 FROM api_tokens WHERE id = $1 AND user_id = $2",
                &[&id, &auth.user_id],
            )
            .await?
            .is_some();
        if !exists {
            return Err(ApiError::not_found("token"));
        }
    }
    announce_auth_change(&state, &**db).await?;
    Ok(StatusCode::NO_CONTENT)
}
