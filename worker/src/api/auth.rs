//! Logging in and out, the current user, changing and resetting passwords (personal API
//! tokens are in `super::tokens`). The login page and the other account pages call the
//! functions here too. Failed logins are counted per username and per client address
//! ([`throttle`]): after a few each attempt is slowed down (a bounded delay); an address with
//! more is refused until the window passes, a username never is.

mod throttle;

use apotheca_web::request::{client_address, secure};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::users::{self, user_from_row, User, USER_COLUMNS};
use crate::http::auth::{Auth, SESSION_COOKIE};
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::ApiJson;
use crate::state::AppState;
use apotheca_pharmacy::accounts;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/auth/password", post(change_password_route))
        .route("/auth/password-reset", post(request_reset))
        .route("/auth/password-reset/confirm", post(confirm_reset))
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

/// The session cookie: HttpOnly, SameSite=Lax, host-only (no Domain, so never shared
/// across subdomains), Secure behind https.
pub(crate) fn session_cookie(token: &str, headers: &HeaderMap) -> String {
    let secure = if secure(headers) { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}")
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Login>,
) -> ApiResult<Response> {
    let done = log_in(&state, &headers, &body.username, &body.password).await?;
    let body = Json(json!({"user": done.user, "csrf_token": done.csrf_token}));
    Ok((
        [(header::SET_COOKIE, session_cookie(&done.token, &headers))],
        body,
    )
        .into_response())
}

/// A new session: its token (for the cookie), its CSRF token, and who logged in.
pub(crate) struct LoggedIn {
    pub token: String,
    pub csrf_token: String,
    pub user: User,
}

/// Checks a username and password (with the failed-login throttling) and opens a session;
/// the API and the login page both log in here.
pub(crate) async fn log_in(
    state: &AppState,
    headers: &HeaderMap,
    username: &str,
    password: &str,
) -> ApiResult<LoggedIn> {
    let username = username.trim().to_lowercase();
    if username.is_empty() || username.len() > 150 || password.len() > accounts::MAX_PASSWORD {
        return Err(ApiError::unauthorized("wrong username or password"));
    }
    let address = client_address(headers);
    let s = &state.settings;
    let db = state.db().await?;
    let attempt = throttle::attempt(&db, s, &username, &address).await?;
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
    let matches = match accounts::verify_password_async(&hash, password).await {
        Ok(matches) => matches,
        Err(busy) => {
            // Not checked, so not a failure: a flood of logins must not count against anyone.
            db.execute("DELETE FROM login_failures WHERE id = ANY($1)", &[&attempt])
                .await?;
            return Err(busy.into());
        }
    };
    let user = match user {
        Some(u) if matches && u.get::<_, bool>(2) => u,
        _ => return Err(ApiError::unauthorized("wrong username or password")),
    };
    let user_id: i64 = user.get(0);
    if accounts::needs_rehash(&hash) {
        rehash(&db, user_id, &hash, password).await?;
    }
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
    Ok(LoggedIn {
        token,
        csrf_token: crate::http::auth::csrf_token(&csrf_secret),
        user: user_from_row(&row)?,
    })
}

/// Replaces a user's hash made with other parameters by one at today's (the password just
/// verified). Skipped, to be tried at the next login, while the worker is busy hashing; a
/// hash changed meanwhile (a password change) is left alone.
async fn rehash(
    db: &deadpool_postgres::Object,
    user_id: i64,
    old: &str,
    password: &str,
) -> ApiResult<()> {
    let Ok(new) = accounts::hash_password_async(password).await else {
        return Ok(());
    };
    db.execute(
        "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
        &[&user_id, &old, &new],
    )
    .await?;
    Ok(())
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    auth: Auth,
) -> ApiResult<Response> {
    log_out(&state, &auth).await?;
    Ok((
        [(header::SET_COOKIE, expired_cookie(&headers))],
        StatusCode::NO_CONTENT,
    )
        .into_response())
}

/// Ends the caller's session (a bearer token has none to end).
pub(crate) async fn log_out(state: &AppState, auth: &Auth) -> ApiResult<()> {
    if let Some(id) = auth.session_id {
        let db = state.db().await?;
        db.execute("DELETE FROM sessions WHERE id = $1", &[&id])
            .await?;
        announce_auth_change(state, &**db).await?;
    }
    Ok(())
}

/// A Set-Cookie value that removes the session cookie.
pub(crate) fn expired_cookie(headers: &HeaderMap) -> String {
    let secure = if secure(headers) { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}")
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
async fn change_password_route(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<ChangePassword>,
) -> ApiResult<StatusCode> {
    change_password(&state, &auth, &body.current_password, &body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes the caller's password; their other sessions end.
pub(crate) async fn change_password(
    state: &AppState,
    auth: &Auth,
    current_password: &str,
    new_password: &str,
) -> ApiResult<()> {
    accounts::check_new_password(new_password).map_err(|m| ApiError::invalid("new_password", m))?;
    let db = state.db().await?;
    let hash: String = db
        .query_one(
            "SELECT password_hash FROM users WHERE id = $1",
            &[&auth.user_id],
        )
        .await?
        .get(0);
    let ok = accounts::verify_password_async(&hash, current_password).await?;
    if !ok {
        return Err(ApiError::invalid(
            "current_password",
            "the current password is wrong",
        ));
    }
    let new_hash = accounts::hash_password_async(new_password).await?;
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
    announce_auth_change(state, &**db).await
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
    send_reset_link(&state, &headers, &body.login).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Stores and sends a reset link when `login` names an active user (by username or email);
/// answers alike either way, and in the same time (the mail leaves in the background).
pub(crate) async fn send_reset_link(
    state: &AppState,
    headers: &HeaderMap,
    login: &str,
) -> ApiResult<()> {
    let login = login.trim().to_lowercase();
    let db = state.db().await?;
    let user = db
        .query_opt(
            "SELECT id, email, username FROM users WHERE active AND (lower(username) = $1 OR lower(email) = $1) LIMIT 1",
            &[&login],
        )
        .await?;
    drop(db);
    if let Some(user) = user {
        let id: i64 = user.get(0);
        let email: Option<String> = user.get(1);
        let (token, hash) = accounts::new_token();
        let address: Option<std::net::IpAddr> = client_address(headers).parse().ok();
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
        // Stored and sent in the background: how long that takes must not tell who has an
        // account.
        let (state, username) = (state.clone(), user.get::<_, String>(2));
        tokio::spawn(async move {
            match store_reset(&state, id, &hash, address).await {
                Ok(true) => {
                    crate::mail::send_reset(&state.settings, email.as_deref(), &username, &link)
                        .await
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "a password reset link was not stored"),
            }
        });
    }
    Ok(())
}

/// Stores a reset link's token for user `id` unless three are open already (then false):
/// nobody can flood a user's mailbox or the table. The user's row is locked while counting, so
/// requests at once count one after another. (Counted apart from the INSERT: Citus takes no
/// subquery in an INSERT.)
async fn store_reset(
    state: &AppState,
    id: i64,
    hash: &[u8],
    address: Option<std::net::IpAddr>,
) -> apotheca_pharmacy::Result<bool> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    tx.execute(
        "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE",
        &[&id],
    )
    .await?;
    let open: i64 = tx
        .query_one(
            "SELECT count(*) FROM password_resets
             WHERE user_id = $1 AND used_at IS NULL AND expires_at > now()",
            &[&id],
        )
        .await?
        .get(0);
    if open >= 3 {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO password_resets (user_id, token_hash, expires_at, requested_ip)
         VALUES ($1, $2, now() + interval '1 hour', $3)",
        &[&id, &hash, &address],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
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
    reset_password(&state, &body.token, &body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a new password through a reset link's token; every session of the user ends.
pub(crate) async fn reset_password(
    state: &AppState,
    token: &str,
    new_password: &str,
) -> ApiResult<()> {
    accounts::check_new_password(new_password).map_err(|m| ApiError::invalid("new_password", m))?;
    let hash = accounts::token_hash(token.trim());
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
    let new_hash = accounts::hash_password_async(new_password).await?;
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
    announce_auth_change(state, &**db).await
}

/// Tells every worker of this tenant (this one at once, the others through the tenant's
/// channel) to forget the logins it remembers, on the connection the caller already holds
/// (a second checkout could wait on a full pool while this one is held).
pub async fn announce_auth_change(
    state: &AppState,
    db: &impl tokio_postgres::GenericClient,
) -> ApiResult<()> {
    state.auth_cache.clear();
    // The change itself has committed: a failed announcement must not turn it into an error.
    // Other workers then forget within their cache's ceiling (30 s), or at once if their
    // listener noticed the database trouble.
    if let Err(e) = crate::changes::announce(db, &state.schema, crate::changes::AUTH).await {
        tracing::error!(error = %e, "could not announce a login change to the other workers");
    }
    Ok(())
}
