//! The operator console's logins on the daemon's API: `POST /v1/operators/login` opens a
//! session ([`apotheca_tenancy::operators`]) and answers its token, `POST /v1/operators/logout` ends it,
//! `GET /v1/operators/me` says whose it is. [`Operator`] is the extractor every console
//! route takes: a live session's `Authorization: Bearer` token, checked here, else 401.
//!
//! The public site forwards logins with the client's address; failures are counted in the
//! database ([`operators::failed_attempt`]: every host counts the same ones). Past
//! [`MAX_FAILURES`] of one username from one address within [`FAILURE_WINDOW`], or
//! [`MAX_ADDRESS_FAILURES`] of any usernames from one address, that address is refused with
//! 429 until the window has passed: refusal is per address, so guesses from elsewhere never
//! lock an operator out. A username's failures from all addresses together (since that
//! operator's last login) only slow its further attempts down, past [`SLOW_AFTER`], by at most
//! [`MAX_DELAY`]. An attempt counts as a failure before the password is checked, so parallel
//! guesses count each other; a good password forgets its username's failures from its
//! address.

use std::time::Duration;

use apotheca_pharmacy::accounts;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{Api, ApiError};
use apotheca_tenancy::operators::{self, SessionOperator};

pub const MAX_FAILURES: i64 = 5;
/// Failures from one address, whatever the usernames, after which it is refused too.
pub const MAX_ADDRESS_FAILURES: i64 = 50;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// A username's failures (from any address) after which its attempts are slowed down...
pub const SLOW_AFTER: u64 = 3;
/// ...by half a second more per failure, at most this long ([`accounts::login_delay`]).
pub const MAX_DELAY: Duration = accounts::MAX_LOGIN_DELAY;

pub fn router() -> Router<Api> {
    Router::new()
        .route("/v1/operators/login", post(login))
        .route("/v1/operators/logout", post(logout))
        .route("/v1/operators/me", get(me))
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    username: String,
    password: String,
    /// The client's address as the public site saw it.
    #[serde(default)]
    address: Option<String>,
}

fn wrong() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "wrong_login",
        "Wrong username or password.",
    )
}

async fn login(
    State(api): State<Api>,
    Json(body): Json<LoginBody>,
) -> Result<Json<Value>, ApiError> {
    let username = body.username.trim().to_lowercase();
    let address = body
        .address
        .map(|a| a.trim().chars().take(64).collect::<String>())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "local".to_owned());
    // No operator has such a name: refused before anything is recorded or checked.
    if username.is_empty() || username.len() > 150 || body.password.len() > accounts::MAX_PASSWORD {
        return Err(wrong());
    }
    let connect = || async { api.signup.db.connect().await.map_err(ApiError::database) };
    let client = connect().await?;
    let failures = operators::failed_attempt(&client, &username, &address, FAILURE_WINDOW)
        .await
        .map_err(ApiError::database)?;
    let client = match verdict(&failures) {
        Ok(Duration::ZERO) => client,
        Ok(delay) => {
            // Given back for the delay: a held connection per guess would be the guesser's
            // to exhaust.
            drop(client);
            tokio::time::sleep(delay).await;
            connect().await?
        }
        Err(wait) => {
            // A refused attempt is not a failure: the window ends as the earlier ones age out.
            operators::forget_attempt(&client, failures.id)
                .await
                .map_err(ApiError::database)?;
            tracing::warn!(%username, %address, "operator login refused: too many failures");
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!(
                    "Too many failed logins; try again in {} minutes.",
                    wait.as_secs().div_ceil(60).max(1)
                ),
            );
            e.retry_after = Some(wait.as_secs().max(1));
            return Err(e);
        }
    };
    let found = operators::credentials(&client, &username)
        .await
        .map_err(ApiError::database)?;
    // A missing operator costs as long as a wrong password: no telling which names exist.
    let hash = found
        .as_ref()
        .map_or(accounts::dummy_hash(), |c| c.password_hash.as_str());
    let matches = match accounts::verify_password_async(hash, &body.password).await {
        Ok(matches) => matches,
        Err(busy) => return Err(ApiError::busy(busy)),
    };
    let operator = match found {
        Some(c) if matches && c.active => c,
        _ => {
            tracing::warn!(%username, %address, "operator login failed");
            return Err(wrong());
        }
    };
    operators::forget_failures(&client, &username, &address)
        .await
        .map_err(ApiError::database)?;
    if accounts::needs_rehash(&operator.password_hash) {
        // At today's parameters; skipped while busy (the next login tries again).
        if let Ok(new) = accounts::hash_password_async(&body.password).await {
            operators::replace_hash(&client, operator.id, &operator.password_hash, &new)
                .await
                .map_err(ApiError::database)?;
        }
    }
    let (token, expires_at) = operators::open_session(&client, operator.id, api.session_lifetime)
        .await
        .map_err(ApiError::database)?;
    tracing::info!(%username, %address, "operator logged in");
    Ok(Json(json!({
        "token": token,
        "username": username,
        "expires_at": expires_at,
    })))
}

/// The operator of a request's bearer token; 401 without a live session.
pub struct Operator {
    pub operator: SessionOperator,
    pub token: String,
}

impl FromRequestParts<Api> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "An operator session token is needed (Authorization: Bearer).",
            )
        };
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(unauthorized)?
            .to_owned();
        let client = api.signup.db.connect().await.map_err(ApiError::database)?;
        let operator = operators::session(&client, &token)
            .await
            .map_err(ApiError::database)?
            .ok_or_else(unauthorized)?;
        Ok(Self { operator, token })
    }
}

async fn logout(State(api): State<Api>, who: Operator) -> Result<Json<Value>, ApiError> {
    let client = api.signup.db.connect().await.map_err(ApiError::database)?;
    operators::close_session(&client, &who.token)
        .await
        .map_err(ApiError::database)?;
    tracing::info!(username = %who.operator.username, "operator logged out");
    Ok(Json(json!({ "username": who.operator.username })))
}

async fn me(who: Operator) -> Json<Value> {
    Json(json!({ "username": who.operator.username }))
}

/// What the failures before an attempt call for: `Ok(delay)`, how long to hold it back
/// before checking the password (zero, or longer the more its username failed from anywhere
/// since the operator last logged in); past the limit for its username from its address, or
/// for its address whatever the username, `Err` with how long until the next is allowed.
fn verdict(f: &operators::Failures) -> Result<Duration, Duration> {
    if f.from_here >= MAX_FAILURES {
        return Err(f.here_leaves_in);
    }
    if f.from_address >= MAX_ADDRESS_FAILURES {
        return Err(f.address_leaves_in);
    }
    Ok(accounts::login_delay(
        f.of_username.max(0) as u64,
        SLOW_AFTER,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(from_here: i64, of_username: i64) -> operators::Failures {
        operators::Failures {
            id: 1,
            from_here,
            here_leaves_in: Duration::from_secs(600),
            from_address: from_here,
            address_leaves_in: Duration::from_secs(300),
            of_username,
        }
    }

    #[test]
    fn failures_are_refused_per_username_and_address_and_per_address() {
        assert_eq!(verdict(&failures(0, 0)), Ok(Duration::ZERO));
        assert!(verdict(&failures(MAX_FAILURES - 1, MAX_FAILURES - 1)).is_ok());
        assert_eq!(
            verdict(&failures(MAX_FAILURES, MAX_FAILURES)),
            Err(Duration::from_secs(600))
        );
        // Many usernames from one address: refused once the address has failed too often.
        let spray = |n| operators::Failures {
            from_here: 0,
            from_address: n,
            ..failures(0, 0)
        };
        assert!(verdict(&spray(MAX_ADDRESS_FAILURES - 1)).is_ok());
        assert_eq!(
            verdict(&spray(MAX_ADDRESS_FAILURES)),
            Err(Duration::from_secs(300))
        );
    }

    #[test]
    fn a_usernames_failures_from_many_addresses_slow_it_down_but_never_refuse_it() {
        let delays: Vec<Duration> = (0..40)
            .map(|n| verdict(&failures(0, n)).expect("never refused"))
            .collect();
        let slow = SLOW_AFTER as usize;
        assert_eq!(delays[..slow], [Duration::ZERO; 3]);
        assert_eq!(delays[slow], Duration::from_millis(500));
        assert!(delays.windows(2).all(|d| d[0] <= d[1]), "{delays:?}");
        assert_eq!(delays[39], MAX_DELAY);
    }
}
