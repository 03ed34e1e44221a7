//! Operators: the hosting provider's people who use the operator console, and their sessions
//! (`public.operators`, `public.operator_sessions`, which only control reads). This module
//! owns their SQL: creating, listing, deleting and deactivating operators (`apotheca
//! create-operator` and friends), the sessions the console's login opens (the token is
//! only ever the operator's; its SHA-256 is stored), and the failed logins that limit it
//! (`public.operator_login_failures`, counted alike by every host).

use std::time::Duration;

use apotheca_pharmacy::accounts;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;

use crate::error::{Error, Result};

/// Operators can do anything to every tenant: their passwords are longer than a pharmacy
/// user's.
pub const MIN_PASSWORD: usize = 12;

/// An operator as `list-operators` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Operator {
    pub username: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// The operator a valid session belongs to.
#[derive(Debug, Clone)]
pub struct SessionOperator {
    pub id: i64,
    pub username: String,
}

/// What a login checks a password against.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: i64,
    pub password_hash: String,
    pub active: bool,
}

/// A username: trimmed, lowercased, 1 to 150 letters, digits or `. _ @ + -`.
pub fn parse_username(raw: &str) -> Result<String> {
    let username = raw.trim().to_lowercase();
    let valid = (1..=150).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b));
    if valid {
        Ok(username)
    } else {
        Err(Error::invalid(
            "the operator username must be 1 to 150 letters, digits or . _ @ + -",
        ))
    }
}

/// A pharmacy user's password rules, and at least [`MIN_PASSWORD`] characters.
pub fn check_password(password: &str) -> Result<()> {
    accounts::check_new_password(password).map_err(Error::invalid)?;
    if password.chars().count() < MIN_PASSWORD {
        return Err(Error::invalid(format!(
            "an operator's password needs at least {MIN_PASSWORD} characters"
        )));
    }
    if password.chars().all(|c| password.starts_with(c)) {
        return Err(Error::invalid(
            "an operator's password cannot be one character repeated",
        ));
    }
    Ok(())
}

/// Adds an operator; a taken username is bad input (exit 2).
pub async fn create(
    client: &impl GenericClient,
    username: &str,
    password_hash: &str,
) -> Result<()> {
    let inserted = client
        .execute(
            "INSERT INTO public.operators (username, password_hash) VALUES ($1, $2)",
            &[&username, &password_hash],
        )
        .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(Error::invalid(format!(
            "the operator username {username:?} is already taken"
        ))),
        Err(e) => Err(e.into()),
    }
}

pub async fn list(client: &impl GenericClient) -> Result<Vec<Operator>> {
    let rows = client
        .query(
            "SELECT username, active, created_at, last_login_at FROM public.operators
             ORDER BY username",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Operator {
            username: r.get(0),
            active: r.get(1),
            created_at: r.get(2),
            last_login_at: r.get(3),
        })
        .collect())
}

fn unknown(username: &str) -> Error {
    Error::invalid(format!(
        "no operator named {username:?} (see `apotheca list-operators`)"
    ))
}

/// Removes an operator and their sessions.
pub async fn delete(client: &impl GenericClient, username: &str) -> Result<()> {
    let n = client
        .execute(
            "DELETE FROM public.operators WHERE username = $1",
            &[&username],
        )
        .await?;
    if n == 0 {
        return Err(unknown(username));
    }
    Ok(())
}

/// Keeps the operator but ends their sessions and refuses their logins; false when they
/// already were inactive.
pub async fn deactivate(client: &mut tokio_postgres::Client, username: &str) -> Result<bool> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT id, active FROM public.operators WHERE username = $1 FOR UPDATE",
            &[&username],
        )
        .await?
        .ok_or_else(|| unknown(username))?;
    let (id, active): (i64, bool) = (row.get(0), row.get(1));
    tx.execute(
        "UPDATE public.operators SET active = false WHERE id = $1",
        &[&id],
    )
    .await?;
    tx.execute(
        "DELETE FROM public.operator_sessions WHERE operator_id = $1",
        &[&id],
    )
    .await?;
    tx.commit().await?;
    Ok(active)
}

/// Replaces an operator's password hash made with older parameters by `new` (the same
/// password), unless it was changed meanwhile.
pub async fn replace_hash(
    client: &impl GenericClient,
    id: i64,
    old: &str,
    new: &str,
) -> Result<()> {
    client
        .execute(
            "UPDATE public.operators SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
            &[&id, &old, &new],
        )
        .await?;
    Ok(())
}

/// The stored password hash of `username` (already lowercased), if there is such an operator.
pub async fn credentials(
    client: &impl GenericClient,
    username: &str,
) -> Result<Option<Credentials>> {
    let row = client
        .query_opt(
            "SELECT id, password_hash, active FROM public.operators WHERE username = $1",
            &[&username],
        )
        .await?;
    Ok(row.map(|r| Credentials {
        id: r.get(0),
        password_hash: r.get(1),
        active: r.get(2),
    }))
}

/// Opens a session lasting `lifetime`: the token to hand to the operator and when it expires.
/// Expired sessions of everyone are cleared on the way.
pub async fn open_session(
    client: &impl GenericClient,
    operator_id: i64,
    lifetime: Duration,
) -> Result<(String, DateTime<Utc>)> {
    let (token, hash) = accounts::new_token();
    let secs = i64::try_from(lifetime.as_secs().max(1)).unwrap_or(i64::MAX / 2);
    client
        .execute(
            "DELETE FROM public.operator_sessions WHERE expires_at <= now()",
            &[],
        )
        .await?;
    let row = client
        .query_one(
            "INSERT INTO public.operator_sessions (token_hash, operator_id, expires_at)
             VALUES ($1, $2, now() + make_interval(secs => $3::bigint::double precision))
             RETURNING expires_at",
            &[&hash, &operator_id, &secs],
        )
        .await?;
    client
        .execute(
            "UPDATE public.operators SET last_login_at = now() WHERE id = $1",
            &[&operator_id],
        )
        .await?;
    Ok((token, row.get(0)))
}

/// The active operator whose unexpired session `token` is, if any.
pub async fn session(client: &impl GenericClient, token: &str) -> Result<Option<SessionOperator>> {
    if token.is_empty() || token.len() > 100 {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT o.id, o.username FROM public.operator_sessions s
             JOIN public.operators o ON o.id = s.operator_id
             WHERE s.token_hash = $1 AND s.expires_at > now() AND o.active",
            &[&accounts::token_hash(token)],
        )
        .await?;
    Ok(row.map(|r| SessionOperator {
        id: r.get(0),
        username: r.get(1),
    }))
}

/// Ends the session `token`.
pub async fn close_session(client: &impl GenericClient, token: &str) -> Result<()> {
    client
        .execute(
            "DELETE FROM public.operator_sessions WHERE token_hash = $1",
            &[&accounts::token_hash(token)],
        )
        .await?;
    Ok(())
}

/// The failed logins before an attempt, within the window it was counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    /// The recorded attempt (deleted again when its password proves good, or when it is
    /// refused).
    pub id: i64,
    /// Of its username from its address...
    pub from_here: i64,
    /// ...and how long until the oldest of them leaves the window (zero without any).
    pub here_leaves_in: Duration,
    /// Of any username from its address...
    pub from_address: i64,
    /// ...and how long until the oldest of them leaves the window.
    pub address_leaves_in: Duration,
    /// Of its username from any address since that operator last logged in.
    pub of_username: i64,
}

/// Records a login attempt as a failure of `username` (lowercased, 1 to 150 characters) from
/// `address` (`public.operator_login_failures`, so every host counts it) before its password
/// is checked, then counts the failures before it within `window`: recorded first, so that
/// parallel guesses count each other. `address` is 1 to 200 characters (the table's check).
pub async fn failed_attempt(
    client: &impl GenericClient,
    username: &str,
    address: &str,
    window: Duration,
) -> Result<Failures> {
    let id: i64 = client
        .query_one(
            "INSERT INTO public.operator_login_failures (username, address) VALUES ($1, $2)
             RETURNING id",
            &[&username, &address],
        )
        .await?
        .get(0);
    let row = client
        .query_one(
            "WITH f AS (
                 SELECT username = $1 AND address = $2 AS here, address = $2 AS there,
                        username = $1 AND at > coalesce(
                            (SELECT last_login_at FROM public.operators WHERE username = $1),
                            '-infinity') AS since_login,
                        at
                 FROM public.operator_login_failures
                 WHERE (username = $1 OR address = $2) AND id <> $4
                   AND at > now() - make_interval(secs => $3))
             SELECT count(*) FILTER (WHERE here),
                    coalesce(extract(epoch FROM min(at) FILTER (WHERE here)
                                     + make_interval(secs => $3) - now()), 0)::float8,
                    count(*) FILTER (WHERE there),
                    coalesce(extract(epoch FROM min(at) FILTER (WHERE there)
                                     + make_interval(secs => $3) - now()), 0)::float8,
                    count(*) FILTER (WHERE since_login)
             FROM f",
            &[&username, &address, &window.as_secs_f64(), &id],
        )
        .await?;
    let leaves_in =
        |i: usize| Duration::try_from_secs_f64(row.get::<_, f64>(i)).unwrap_or_default();
    Ok(Failures {
        id,
        from_here: row.get(0),
        here_leaves_in: leaves_in(1),
        from_address: row.get(2),
        address_leaves_in: leaves_in(3),
        of_username: row.get(4),
    })
}

/// Takes back one recorded attempt (a refused one does not count as a failure).
pub async fn forget_attempt(client: &impl GenericClient, id: i64) -> Result<()> {
    client
        .execute(
            "DELETE FROM public.operator_login_failures WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}

/// A good password from `address`: the failures of `username` from there are forgotten, on
/// every host. Those from elsewhere stay (a guesser elsewhere stays refused); they no longer
/// slow the operator down, since only failures after the last login do.
pub async fn forget_failures(
    client: &impl GenericClient,
    username: &str,
    address: &str,
) -> Result<()> {
    client
        .execute(
            "DELETE FROM public.operator_login_failures WHERE username = $1 AND address = $2",
            &[&username, &address],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_passwords() {
        assert_eq!(parse_username("  Alice@Host ").unwrap(), "alice@host");
        for bad in ["", " ", "a b", "é", &"a".repeat(151)] {
            assert!(parse_username(bad).is_err(), "{bad:?}");
        }
        assert!(check_password("correct horse battery").is_ok());
        for weak in ["short", "elevenchars", "aaaaaaaaaaaaaaaa", "            "] {
            assert!(check_password(weak).is_err(), "{weak:?}");
        }
    }
}
