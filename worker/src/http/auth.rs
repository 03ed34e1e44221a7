//! The `Auth` extractor: who is calling. A bearer token (`Authorization: Bearer …`, for
//! scripts) or the session cookie, which for state-changing methods must come with the
//! session's CSRF token in `X-CSRF-Token`. Inactive users and expired sessions are 401.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};

use crate::authcache::Cached;
use crate::http::error::{ApiError, ApiResult};
use crate::state::AppState;
use apotheca_pharmacy::accounts::{self, Area, Role};

pub const SESSION_COOKIE: &str = "apotheca_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Auth {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    /// Set when the request came with the session cookie.
    pub session_id: Option<i64>,
    /// Database work this login leaves for after the request (never on a remembered copy).
    pub behind: Option<Arc<Behind>>,
}

/// Work a login leaves for after its request — looking a stale login up again, writing a
/// token's last use — started once the last copy of the request's [`Auth`] is dropped: the
/// handler has returned and given its connection back, which this work then takes. Started
/// beside the request instead, it took the worker's idle connection first and the request's
/// own database work (a sale) had the pool open another: a new backend, an authentication and
/// every statement prepared again, 50-270 ms on a saturated box, for one sale in a hundred at
/// 200 tenants.
pub struct Behind(Mutex<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>);

impl Behind {
    /// `work`, to run on a connection of `state`'s pool that is idle, or to skip when none
    /// is for long (see [`AppState::behind`]).
    fn new(state: &AppState, work: impl Future<Output = ()> + Send + 'static) -> Arc<Self> {
        let state = state.clone();
        Arc::new(Self(Mutex::new(Some(Box::pin(async move {
            state.behind(work).await;
        })))))
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        let work = self.0.get_mut().ok().and_then(Option::take);
        if let (Some(work), Ok(runtime)) = (work, tokio::runtime::Handle::try_current()) {
            runtime.spawn(work);
        }
    }
}

impl std::fmt::Debug for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Behind")
    }
}

impl Auth {
    /// 403 unless the user's role may use `area`.
    pub fn require(&self, area: Area) -> ApiResult<()> {
        if accounts::may(self.role, area) {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// Staff see only what they billed themselves.
    pub fn own_invoices_only(&self) -> bool {
        self.role == Role::Staff
    }
}

/// The value of one cookie from the Cookie header(s).
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    apotheca_web::request::cookie_value(&parts.headers, name)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(auth) = parts.extensions.get::<Auth>() {
            return Ok(auth.clone());
        }
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let auth = if let Some(token) = bearer {
            by_token(state, token).await?
        } else if let Some(token) = cookie(parts, SESSION_COOKIE) {
            by_session(
                state,
                token,
                &parts.method,
                parts.headers.get(CSRF_HEADER).map(|v| v.as_bytes()),
            )
            .await?
        } else {
            return Err(ApiError::unauthorized(
                "log in first (session cookie or bearer token)",
            ));
        };
        parts.extensions.insert(auth.clone());
        Ok(auth)
    }
}

async fn by_token(state: &AppState, token: &str) -> ApiResult<Auth> {
    let hash = accounts::token_hash(token);
    // A remembered login is re-read (and its last use written) once its entry is stale,
    // behind the request.
    match state.auth_cache.get(&hash) {
        Cached::Fresh(entry) => return Ok(entry.auth),
        Cached::Stale(entry) => {
            let mut auth = entry.auth;
            auth.behind = behind(state, hash, |state, hash| async move {
                token_login(&state, hash).await.map(drop)
            });
            return Ok(auth);
        }
        Cached::Nothing => {}
    }
    token_login(state, hash).await
}

/// Looks `hash` up again behind a request that its stale entry let in (unless that is under
/// way already): the entry is renewed, or forgotten when the login is gone.
fn behind<F, Fut>(state: &AppState, hash: Vec<u8>, look_up: F) -> Option<Arc<Behind>>
where
    F: FnOnce(AppState, Vec<u8>) -> Fut + Send + 'static,
    Fut: Future<Output = ApiResult<()>> + Send + 'static,
{
    let refreshing = state.auth_cache.refresh(&hash)?;
    let owned = state.clone();
    Some(Behind::new(state, async move {
        let (state, _refreshing) = (owned, refreshing);
        if let Err(e) = look_up(state.clone(), hash.clone()).await {
            // Logged where it arose. A login found gone stops now; a database that failed
            // leaves the stale entry for the next request to try again, within its grace.
            if e.status == axum::http::StatusCode::UNAUTHORIZED {
                state.auth_cache.forget(&hash);
            }
        }
    }))
}

/// The user of the API token with `hash`, from the database (remembered, and its last use
/// written at most once a minute).
async fn token_login(state: &AppState, hash: Vec<u8>) -> ApiResult<Auth> {
    let generation = state.auth_cache.generation();
    let db = state.db().await?;
    let stmt = db
        .prepare_cached(
            "SELECT t.id, u.id, u.username, u.role,
                    t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute',
                    coalesce(t.expires_at, 'infinity')
             FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
               AND u.active",
        )
        .await?;
    let row = db
        .query_opt(&stmt, &[&hash])
        .await?
        .ok_or_else(|| ApiError::unauthorized("the API token is unknown, revoked or expired"))?;
    let due: bool = row.get(4);
    let id: i64 = row.get(0);
    drop(db);
    let mut auth = Auth {
        user_id: row.get(1),
        username: row.get(2),
        role: parse_role(row.get(3))?,
        session_id: None,
        behind: None,
    };
    let expires: chrono::DateTime<chrono::Utc> = row
        .try_get(5)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    state
        .auth_cache
        .put(generation, hash, auth.clone(), None, expires);
    if due {
        // Written after the request, so that it need not wait for that commit's flush.
        let owned = state.clone();
        auth.behind = Some(Behind::new(state, async move {
            let state = owned;
            // No connection: logged where it arose; the next use is written instead.
            let Ok(db) = state.db().await else {
                return;
            };
            let written = db
                .execute(
                    "UPDATE api_tokens SET last_used_at = now() WHERE id = $1",
                    &[&id],
                )
                .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "could not record the API token's last use");
            }
        }));
    }
    Ok(auth)
}

async fn by_session(
    state: &AppState,
    token: &str,
    method: &Method,
    csrf: Option<&[u8]>,
) -> ApiResult<Auth> {
    let (auth, secret) = session(state, token).await?;
    check_csrf(method, &secret, csrf)?;
    Ok(auth)
}

/// The user of a session token and the session's CSRF secret (the caller checks the token
/// it was sent: a header for the API, a form field for the HTML pages).
pub async fn session(state: &AppState, token: &str) -> ApiResult<(Auth, Vec<u8>)> {
    let hash = accounts::token_hash(token);
    let entry = match state.auth_cache.get(&hash) {
        Cached::Fresh(entry) => entry,
        Cached::Stale(mut entry) => {
            if entry.csrf_secret.is_some() {
                entry.auth.behind = behind(state, hash, |state, hash| async move {
                    session_login(&state, hash).await.map(drop)
                });
            }
            entry
        }
        Cached::Nothing => return session_login(state, hash).await,
    };
    // An entry without a secret is an API token's: not a session.
    match entry.csrf_secret {
        Some(secret) => Ok((entry.auth, secret)),
        None => Err(ApiError::unauthorized(
            "the session has ended; log in again",
        )),
    }
}

/// The user and CSRF secret of the session with `hash`, from the database (remembered, and
/// its expiry slid at most once a minute).
async fn session_login(state: &AppState, hash: Vec<u8>) -> ApiResult<(Auth, Vec<u8>)> {
    let generation = state.auth_cache.generation();
    let db = state.db().await?;
    let stmt = db
        .prepare_cached(
            "SELECT s.id, s.csrf_secret, s.last_seen_at < now() - interval '1 minute', u.id, u.username, u.role,
                    s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND s.expires_at > now() AND u.active",
        )
        .await?;
    let row = db
        .query_opt(&stmt, &[&hash])
        .await?
        .ok_or_else(|| ApiError::unauthorized("the session has ended; log in again"))?;
    let secret: Vec<u8> = row.get(1);
    let session_id: i64 = row.get(0);
    let mut expires_at: chrono::DateTime<chrono::Utc> = row.get(6);
    if row.get::<_, bool>(2) {
        // Sliding expiry, written at most once a minute per session.
        let idle = i32::try_from(state.settings.session_idle_minutes).unwrap_or(i32::MAX);
        expires_at = db
            .query_one(
                "UPDATE sessions SET last_seen_at = now(), expires_at = now() + make_interval(mins => $2) WHERE id = $1
                 RETURNING expires_at",
                &[&session_id, &idle],
            )
            .await?
            .get(0);
    }
    let auth = Auth {
        user_id: row.get(3),
        username: row.get(4),
        role: parse_role(row.get(5))?,
        session_id: Some(session_id),
        behind: None,
    };
    state.auth_cache.put(
        generation,
        hash,
        auth.clone(),
        Some(secret.clone()),
        expires_at,
    );
    Ok((auth, secret))
}

/// State-changing requests with the session cookie must carry the session's CSRF token.
fn check_csrf(method: &Method, secret: &[u8], csrf: Option<&[u8]>) -> ApiResult<()> {
    if is_safe(method) {
        return Ok(());
    }
    if csrf.is_some_and(|got| csrf_matches(secret, got)) {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "csrf",
            "missing or wrong X-CSRF-Token (it comes with the login answer)",
        ))
    }
}

/// Whether `got` is the CSRF token of the session whose secret is `secret`.
pub fn csrf_matches(secret: &[u8], got: &[u8]) -> bool {
    !secret.is_empty() && accounts::same_secret(got, csrf_token(secret).as_bytes())
}

/// The CSRF token clients send back: the session secret in hex.
pub fn csrf_token(secret: &[u8]) -> String {
    hex::encode(secret)
}

/// A role stored in the database; its CHECK makes an unknown one a bug, not bad input.
pub(crate) fn parse_role(raw: &str) -> ApiResult<Role> {
    raw.parse().map_err(|e: String| {
        tracing::error!(error = %e, "a user row has an unknown role");
        ApiError::internal()
    })
}
