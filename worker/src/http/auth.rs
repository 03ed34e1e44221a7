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
use apotheca_pharmacy::accounts::{self, logins, Area, Role};

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
    let login = logins::token(&db, &hash)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the API token is unknown, revoked or expired"))?;
    drop(db);
    let mut auth = Auth {
        user_id: login.user_id,
        username: login.username,
        role: login.role,
        session_id: None,
        behind: None,
    };
    state
        .auth_cache
        .put(generation, hash, auth.clone(), None, login.expires_at);
    if login.use_due {
        // Written after the request, so that it need not wait for that commit's flush.
        let owned = state.clone();
        auth.behind = Some(Behind::new(state, async move {
            let state = owned;
            // No connection: logged where it arose; the next use is written instead.
            let Ok(db) = state.db().await else {
                return;
            };
            if let Err(e) = logins::record_token_use(&db, login.token_id).await {
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
    let login = logins::session(&db, &hash)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the session has ended; log in again"))?;
    let mut expires_at = login.expires_at;
    if login.slide_due {
        // Sliding expiry, written at most once a minute per session.
        expires_at =
            logins::slide_session(&db, login.session_id, state.settings.session_idle_minutes)
                .await?;
    }
    let auth = Auth {
        user_id: login.user_id,
        username: login.username,
        role: login.role,
        session_id: Some(login.session_id),
        behind: None,
    };
    state.auth_cache.put(
        generation,
        hash,
        auth.clone(),
        Some(login.csrf_secret.clone()),
        expires_at,
    );
    Ok((auth, login.csrf_secret))
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
