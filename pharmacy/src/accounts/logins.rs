//! The rows behind a request's login: the user of an API token or of a session (found by the
//! token's SHA-256), and the writes a login makes now and then (a token's last use, a
//! session's sliding expiry). Who may log in at all: an active user, a token neither revoked
//! nor expired, a session not expired.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::Role;
use crate::{Error, Result};

/// The user an API token belongs to.
#[derive(Debug, Clone)]
pub struct TokenLogin {
    pub token_id: i64,
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    /// Its last use is more than a minute old (or never written): write it.
    pub use_due: bool,
    /// When it expires (`DateTime::<Utc>::MAX_UTC`: never).
    pub expires_at: DateTime<Utc>,
}

/// A session and its user.
#[derive(Debug, Clone)]
pub struct SessionLogin {
    pub session_id: i64,
    pub csrf_secret: Vec<u8>,
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    /// Last seen more than a minute ago: slide its expiry ([`slide_session`]).
    pub slide_due: bool,
    pub expires_at: DateTime<Utc>,
}

/// The login of the API token whose hash is `hash`; `None` when it is unknown, revoked or
/// expired, or its user is inactive.
pub async fn token(db: &impl GenericClient, hash: &[u8]) -> Result<Option<TokenLogin>> {
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
    let Some(row) = db.query_opt(&stmt, &[&hash]).await? else {
        return Ok(None);
    };
    Ok(Some(TokenLogin {
        token_id: row.get(0),
        user_id: row.get(1),
        username: row.get(2),
        role: role(row.get(3))?,
        use_due: row.get(4),
        // 'infinity' does not fit a DateTime: never expires.
        expires_at: row.try_get(5).unwrap_or(DateTime::<Utc>::MAX_UTC),
    }))
}

/// Writes that the API token `token_id` was used now.
pub async fn record_token_use(db: &impl GenericClient, token_id: i64) -> Result<()> {
    db.execute(
        "UPDATE api_tokens SET last_used_at = now() WHERE id = $1",
        &[&token_id],
    )
    .await?;
    Ok(())
}

/// The session whose token's hash is `hash`; `None` when it is unknown or expired, or its user
/// is inactive.
pub async fn session(db: &impl GenericClient, hash: &[u8]) -> Result<Option<SessionLogin>> {
    let stmt = db
        .prepare_cached(
            "SELECT s.id, s.csrf_secret, s.last_seen_at < now() - interval '1 minute', u.id, u.username, u.role,
                    s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND s.expires_at > now() AND u.active",
        )
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&hash]).await? else {
        return Ok(None);
    };
    Ok(Some(SessionLogin {
        session_id: row.get(0),
        csrf_secret: row.get(1),
        slide_due: row.get(2),
        user_id: row.get(3),
        username: row.get(4),
        role: role(row.get(5))?,
        expires_at: row.get(6),
    }))
}

/// Marks the session seen now and moves its expiry to `idle_minutes` from now; returns the new
/// expiry.
pub async fn slide_session(
    db: &impl GenericClient,
    session_id: i64,
    idle_minutes: i64,
) -> Result<DateTime<Utc>> {
    let idle = i32::try_from(idle_minutes).unwrap_or(i32::MAX);
    let row = db
        .query_one(
            "UPDATE sessions SET last_seen_at = now(), expires_at = now() + make_interval(mins => $2) WHERE id = $1
             RETURNING expires_at",
            &[&session_id, &idle],
        )
        .await?;
    Ok(row.get(0))
}

/// A user row's role (the schema's CHECK allows only the three).
pub fn role(raw: &str) -> Result<Role> {
    raw.parse().map_err(|e: String| {
        tracing::error!(error = %e, "a user row has an unknown role");
        Error::internal()
    })
}
