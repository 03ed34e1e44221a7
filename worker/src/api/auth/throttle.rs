//! The failed-login throttle in front of every password check (the API's and the login
//! page's, through `log_in`). Each attempt is recorded in `login_failures` as a failure of its
//! username and of its client address before the password is checked (so parallel guesses
//! count each other) and removed again when it succeeds. Refusal is per address only: an
//! address with `login_refuse_after` failures within the window is refused until they age out.
//! A username's failures, from whatever addresses, only slow its further attempts down (a
//! bounded delay), so that guessing a user's password elsewhere can never lock that user out
//! at their own counter.

use std::time::Duration;

use axum::http::StatusCode;

use crate::http::error::{ApiError, ApiResult};
use crate::settings::WorkerSettings;
use apotheca_pharmacy::accounts;

/// What the failures before an attempt (within the window) call for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Check the password after this long.
    Wait(Duration),
    /// Not now: this address failed too often.
    Refuse,
}

/// The verdict for an attempt after `username` failures of its username (from any address)
/// and `address` failures from its address (any username).
pub fn verdict(username: i64, address: i64, s: &WorkerSettings) -> Verdict {
    if address >= s.login_refuse_after {
        return Verdict::Refuse;
    }
    let worst = username.max(address).max(0) as u64;
    match accounts::login_delay(worst, s.login_slow_after.max(0) as u64) {
        Duration::ZERO => Verdict::Go,
        delay => Verdict::Wait(delay),
    }
}

/// Records the attempt as a failure of `username` and of `address`, then refuses it (429) or
/// holds it back as [`verdict`] says. Returns the recorded rows' ids, which a successful
/// login deletes again.
pub async fn attempt(
    db: &tokio_postgres::Client,
    s: &WorkerSettings,
    username: &str,
    address: &str,
) -> ApiResult<Vec<i64>> {
    let recorded: Vec<i64> = db
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
    let before = |i: usize| failures.get::<_, i64>(i) - 1;
    match verdict(before(0), before(1), s) {
        Verdict::Go => {}
        Verdict::Wait(delay) => tokio::time::sleep(delay).await,
        Verdict::Refuse => {
            tracing::warn!(
                address,
                "login refused: too many failures from this address"
            );
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "too many failed logins; try again later",
            );
            e.retry_after = Some((s.login_window_minutes * 60) as u64);
            return Err(e);
        }
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usernames_failures_slow_it_down_and_only_an_address_is_refused() {
        let s = WorkerSettings {
            login_slow_after: 3,
            login_refuse_after: 10,
            ..WorkerSettings::default()
        };
        assert_eq!(verdict(0, 0, &s), Verdict::Go);
        assert_eq!(verdict(2, 2, &s), Verdict::Go);
        assert_eq!(verdict(3, 0, &s), Verdict::Wait(Duration::from_millis(500)));
        assert_eq!(
            verdict(0, 4, &s),
            Verdict::Wait(Duration::from_millis(1000))
        );
        // However many failures a username has (from many addresses), it is slowed, never
        // refused, and never longer than the bound.
        assert_eq!(verdict(10, 0, &s), Verdict::Wait(Duration::from_secs(4)));
        for n in [12, 13, 1_000, i64::MAX] {
            assert_eq!(
                verdict(n, 0, &s),
                Verdict::Wait(accounts::MAX_LOGIN_DELAY),
                "{n}"
            );
        }
        // An address that failed too often is refused, whatever the username.
        assert_eq!(verdict(0, 10, &s), Verdict::Refuse);
        assert_eq!(
            verdict(i64::MAX, 9, &s),
            Verdict::Wait(accounts::MAX_LOGIN_DELAY)
        );
    }
}
