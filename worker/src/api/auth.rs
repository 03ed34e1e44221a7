//! Logging in and out, the current user, changing and resetting passwords, personal API
//! tokens. Failed logins are counted per username and per client address: after a few each
//! attempt is slowed down, after more they are refused until the window passes.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::users::{self, user_from_row, User, USER_COLUMNS};
use crate::accounts;
use crate::http::auth::{Auth, SESSION_COOKIE};
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::ApiJson;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/auth/password", post(change_password))
        .route("/auth/password-reset", post(request_reset))
        .route("/auth/password-reset/confirm", post(confirm_reset))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

/// The client address the proxy saw (the last X-Forwarded-For hop is the one our proxy
/// added), else "local".
pub fn client_address(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .unwrap_or_else(|| "local".to_owned())
}

fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The session cookie: HttpOnly, SameSite=Lax, host-only (no Domain, so never shared
/// across subdomains), Secure behind https.
fn session_cookie(token: &str, headers: &HeaderMap) -> String {
    let secure = if secure(headers) { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}")
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Login>,
) -> ApiResult<Response> {
    let username = body.username.trim().to_lowercase();
    if username.is_empty() || username.len() > 150 || body.password.len() > accounts::MAX_PASSWORD {
        return Err(ApiError::unauthorized("wrong username or password"));
    }
    let address = client_address(&headers);
    let s = &state.settings;
    let db = state.db().await?;
    // The attempt is recorded as a failure before anything is checked (and removed again on
    // success), so parallel guesses count each other instead of all seeing the old count.
    let attempt: Vec<i64> = db
        .query(
            "INSERT INTO login_failures (kind, key) VALUES ('username', $1), ('address', $2) RETURNING id",
            &[&username, &address],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let failures = db
        .query_one(
            "SELECT (SELECT count(*) FROM login_failures WHERE kind = 'username' AND key = $1 AND at > now() - make_interval(mins => $3)),
                    (SELECT count(*) FROM login_failures WHERE kind = 'address' AND key = $2 AND at > now() - make_interval(mins => $3))",
            &[&username, &address, &(s.login_window_minutes as i32)],
        )
        .await?;
    // Failures before this attempt.
    let worst = failures.get::<_, i64>(0).max(failures.get::<_, i64>(1)) - 1;
    if worst >= s.login_refuse_after {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many failed logins; try again later",
        );
        e.retry_after = Some((s.login_window_minutes * 60) as u64);
        return Err(e);
    }
    if worst >= s.login_slow_after {
        tokio::time::sleep(Duration::from_millis(
            500 * (worst - s.login_slow_after + 1).min(10) as u64,
        ))
        .await;
    }
    let user = db
        .query_opt(
            "SELECT id, password_hash, active FROM users WHERE lower(username) = $1",
            &[&username],
        )
        .await?;
    let hash = user
        .as_ref()
        .map(|u| u.get::<_, String>(1))
        .unwrap_or_else(|| accounts::dummy_hash().to_owned());
    let matches = accounts::verify_password_async(&hash, &body.password).await;
    let user = match user {
        Some(u) if matches && u.get::<_, bool>(2) => u,
        _ => return Err(ApiError::unauthorized("wrong username or password")),
    };
    let user_id: i64 = user.get(0);
    let (token, token_hash) = accounts::new_token();
    let (csrf_secret, _) = {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        (bytes.to_vec(), ())
    };
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect::<String>());
    let ip: Option<std::net::IpAddr> = address.parse().ok();
    db.execute(
        "INSERT INTO sessions (token_hash, user_id, csrf_secret, expires_at, user_agent, ip)
         VALUES ($1, $2, $3, now() + make_interval(mins => $4), $5, $6)",
        &[
            &token_hash,
            &user_id,
            &csrf_secret,
            &(s.session_idle_minutes as i32),
            &agent,
            &ip,
        ],
    )
    .await?;
    db.execute(
        "DELETE FROM login_failures WHERE (kind = 'username' AND key = $1) OR id = ANY($2)",
        &[&username, &attempt],
    )
    .await?;
    let row = db
        .query_one(
            &format!(
                "UPDATE users SET last_login_at = now() WHERE id = $1 RETURNING {USER_COLUMNS}"
            ),
            &[&user_id],
        )
        .await?;
    let out = user_from_row(&row)?;
    let body = Json(json!({"user": out, "csrf_token": hex::encode(&csrf_secret)}));
    Ok((
        [(header::SET_COOKIE, session_cookie(&token, &headers))],
        body,
    )
        .into_response())
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    auth: Auth,
) -> ApiResult<Response> {
    if let Some(id) = auth.session_id {
        state
            .db()
            .await?
            .execute("DELETE FROM sessions WHERE id = $1", &[&id])
            .await?;
        announce_auth_change(&state).await?;
    }
    let secure = if secure(&headers) { "; Secure" } else { "" };
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}");
    Ok(([(header::SET_COOKIE, expired)], StatusCode::NO_CONTENT).into_response())
}

async fn me(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<User>> {
    Ok(Json(users::load(&**state.db().await?, auth.user_id).await?))
}

#[derive(Deserialize)]
struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// Changing the password ends every other session of the user.
async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<ChangePassword>,
) -> ApiResult<StatusCode> {
    accounts::check_new_password(&body.new_password)
        .map_err(|m| ApiError::invalid("new_password", m))?;
    let db = state.db().await?;
    let hash: String = db
        .query_one(
            "SELECT password_hash FROM users WHERE id = $1",
            &[&auth.user_id],
        )
        .await?
        .get(0);
    let ok = accounts::verify_password_async(&hash, &body.current_password).await;
    if !ok {
        return Err(ApiError::invalid(
            "current_password",
            "the current password is wrong",
        ));
    }
    let new_hash = accounts::hash_password_async(&body.new_password)
        .await
        .ok_or_else(ApiError::internal)?;
    db.execute(
        "UPDATE users SET password_hash = $2, password_changed_at = now(), updated_at = now() WHERE id = $1",
        &[&auth.user_id, &new_hash],
    )
    .await?;
    db.execute(
        "DELETE FROM sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2",
        &[&auth.user_id, &auth.session_id],
    )
    .await?;
    announce_auth_change(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ResetRequest {
    /// Username or email.
    login: String,
}

/// Always 202, whether or not the user exists (no account discovery). A user with an email
/// gets a one-hour link; without SMTP configured, the link is written to the log.
async fn request_reset(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ResetRequest>,
) -> ApiResult<StatusCode> {
    let login = body.login.trim().to_lowercase();
    let db = state.db().await?;
    let user = db
        .query_opt(
            "SELECT id, email, username FROM users WHERE active AND (lower(username) = $1 OR lower(email) = $1) LIMIT 1",
            &[&login],
        )
        .await?;
    if let Some(user) = user {
        let id: i64 = user.get(0);
        let email: Option<String> = user.get(1);
        let (token, hash) = accounts::new_token();
        let address: Option<std::net::IpAddr> = client_address(&headers).parse().ok();
        // At most three open links per user: requests beyond that are answered alike but
        // neither stored nor mailed, so nobody can flood a user's mailbox or the table.
        let stored = db
            .execute(
                "INSERT INTO password_resets (user_id, token_hash, expires_at, requested_ip)
                 SELECT $1, $2, now() + interval '1 hour', $3
                 WHERE (SELECT count(*) FROM password_resets
                        WHERE user_id = $1 AND used_at IS NULL AND expires_at > now()) < 3",
                &[&id, &hash, &address],
            )
            .await?;
        if stored == 0 {
            return Ok(StatusCode::ACCEPTED);
        }
        // Only Host: the proxy routes a request here only when its Host is one of this
        // tenant's domains, whereas X-Forwarded-Host could be anything a client sent.
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let link = format!(
            "{}?token={token}",
            state.settings.reset_url.replace("{host}", host)
        );
        // Sent in the background: how long SMTP takes must not tell who has an account.
        let (settings, username) = (state.settings.clone(), user.get::<_, String>(2));
        tokio::spawn(async move {
            crate::mail::send_reset(&settings, email.as_deref(), &username, &link).await;
        });
    }
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
struct ResetConfirm {
    token: String,
    new_password: String,
}

async fn confirm_reset(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> ApiResult<StatusCode> {
    accounts::check_new_password(&body.new_password)
        .map_err(|m| ApiError::invalid("new_password", m))?;
    let hash = accounts::token_hash(body.token.trim());
    let mut db = state.db().await?;
    // The token first: an unknown one must not cost a password hash.
    let known = db
        .query_opt(
            "SELECT 1 FROM password_resets WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()",
            &[&hash],
        )
        .await?;
    if known.is_none() {
        return Err(ApiError::invalid(
            "token",
            "the reset link is unknown, used or expired",
        ));
    }
    let new_hash = accounts::hash_password_async(&body.new_password)
        .await
        .ok_or_else(ApiError::internal)?;
    let tx = db.transaction().await?;
    let reset = tx
        .query_opt(
            "UPDATE password_resets SET used_at = now()
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id",
            &[&hash],
        )
        .await?
        .ok_or_else(|| ApiError::invalid("token", "the reset link is unknown, used or expired"))?;
    let user_id: i64 = reset.get(0);
    tx.execute(
        "UPDATE users SET password_hash = $2, password_changed_at = now(), updated_at = now() WHERE id = $1",
        &[&user_id, &new_hash],
    )
    .await?;
    tx.execute("DELETE FROM sessions WHERE user_id = $1", &[&user_id])
        .await?;
    tx.commit().await?;
    announce_auth_change(&state).await?;
    Ok(StatusCode::NO_CONTENT)
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
    let n = state
        .db()
        .await?
        .execute(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND user_id = $2",
            &[&id, &auth.user_id],
        )
        .await?;
    announce_auth_change(&state).await?;
    if n == 0 {
        return Err(ApiError::not_found("token"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Tells every worker of this tenant (this one at once, the others through the tenant's
/// channel) to forget the logins it remembers.
pub async fn announce_auth_change(state: &AppState) -> ApiResult<()> {
    state.auth_cache.clear();
    // The change itself has committed: a failed announcement must not turn it into an error.
    // Other workers then forget within their cache's ceiling (30 s), or at once if their
    // listener noticed the database trouble.
    let announced = async {
        let db = state.db().await?;
        crate::changes::announce(&**db, &state.schema, crate::changes::AUTH).await?;
        Ok::<_, ApiError>(())
    };
    if let Err(e) = announced.await {
        tracing::error!(error = %e.message, "could not announce a login change to the other workers");
    }
    Ok(())
}
