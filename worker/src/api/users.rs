//! User management (admin only): list, add, edit, activate/deactivate, reset a password.
//!
//! Guards that keep a pharmacy administrable: an admin cannot deactivate or demote
//! themself, and the last active admin cannot be deactivated or demoted. Deactivating a
//! user or resetting their password ends their sessions at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;

use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::{ApiJson, ApiQuery};
use crate::state::AppState;
use apotheca_pharmacy::accounts::{self, logins, Area, Role};
use apotheca_pharmacy::values::{self, Page};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/users/{id}", get(user_detail).patch(update_user))
        .route("/users/{id}/password", post(reset_password))
}

#[derive(Debug, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub full_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

pub(crate) const USER_COLUMNS: &str =
    "id, username, full_name, email, role, active, created_at, last_login_at";

pub(crate) fn user_from_row(r: &tokio_postgres::Row) -> ApiResult<User> {
    Ok(User {
        id: r.get(0),
        username: r.get(1),
        full_name: r.get(2),
        email: r.get(3),
        role: logins::role(r.get(4))?,
        active: r.get(5),
        created_at: r.get(6),
        last_login_at: r.get(7),
    })
}

/// A role sent by a client.
fn role_in(raw: &str) -> ApiResult<Role> {
    raw.trim()
        .parse()
        .map_err(|e: String| ApiError::invalid("role", e))
}

fn valid_username(raw: &str) -> ApiResult<String> {
    let name = raw.trim();
    let ok = (1..=150).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'+' | b'-'));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ApiError::invalid(
            "username",
            "a username has 1 to 150 letters, digits or . _ @ + -",
        ))
    }
}

fn duplicate_username() -> ApiError {
    ApiError::conflict("duplicate", "this username is taken").with_field("username")
}

async fn hash(password: String) -> ApiResult<String> {
    Ok(accounts::hash_password_async(&password).await?)
}

async fn list_users(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Area::Users)?;
    let (total, items) = list(&**state.db().await?, page).await?;
    Ok(Json(
        serde_json::json!({"total": total, "page": page.page.max(1), "items": items}),
    ))
}

/// One page of users by username, and how many there are.
pub(crate) async fn list(db: &tokio_postgres::Client, page: Page) -> ApiResult<(i64, Vec<User>)> {
    let rows = db
        .query(
            &format!(
                "SELECT {USER_COLUMNS}, count(*) OVER () FROM users
                 ORDER BY lower(username), id LIMIT $1 OFFSET $2"
            ),
            &[&page.limit(), &page.offset()],
        )
        .await?;
    let total: i64 = rows.first().map_or(0, |r| r.get(8));
    let items = rows
        .iter()
        .map(user_from_row)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok((total, items))
}

async fn user_detail(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<Json<User>> {
    auth.require(Area::Users)?;
    Ok(Json(load(&**state.db().await?, id).await?))
}

/// One user, or 404.
pub(crate) async fn load(db: &tokio_postgres::Client, id: i64) -> ApiResult<User> {
    let row = db
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    user_from_row(&row)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct NewUser {
    pub username: Option<String>,
    pub password: Option<String>,
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub role: Option<String>,
}

async fn create_user(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    auth.require(Area::Users)?;
    Ok((StatusCode::CREATED, Json(create(&state, body).await?)))
}

/// Adds a user (the caller has checked that they may).
pub(crate) async fn create(state: &AppState, body: NewUser) -> ApiResult<User> {
    let username = valid_username(body.username.as_deref().unwrap_or_default())?;
    let password = body.password.unwrap_or_default();
    accounts::check_new_password(&password).map_err(|m| ApiError::invalid("password", m))?;
    let full_name = values::opt_text("full_name", body.full_name.as_deref(), 200)?;
    let email = values::opt_email("email", body.email.as_deref())?;
    let role = role_in(body.role.as_deref().unwrap_or_default())?;
    let db = state.db().await?;
    // Checked before hashing so that a taken name answers fast; the unique index still
    // decides a race (mapped below).
    let taken = db
        .query_opt(
            "SELECT 1 FROM users WHERE lower(username) = lower($1)",
            &[&username],
        )
        .await?
        .is_some();
    if taken {
        return Err(duplicate_username());
    }
    let password_hash = hash(password).await?;
    let row = db
        .query_one(
            &format!(
                "INSERT INTO users (username, password_hash, full_name, email, role)
                 VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
            ),
            &[
                &username,
                &password_hash,
                &full_name.unwrap_or_default(),
                &email,
                &role.as_str(),
            ],
        )
        .await
        .map_err(|e| match e.code() {
            Some(code) if *code == SqlState::UNIQUE_VIOLATION => duplicate_username(),
            _ => ApiError::from(e),
        })?;
    user_from_row(&row)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct UserPatch {
    /// Blank clears it.
    pub full_name: Option<String>,
    /// Blank clears it.
    pub email: Option<String>,
    pub role: Option<String>,
    pub active: Option<bool>,
}

/// Changes the fields given. Deactivating ends the user's sessions and revokes their API
/// tokens (a role change needs neither: every request re-reads the role).
async fn update_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<UserPatch>,
) -> ApiResult<Json<User>> {
    auth.require(Area::Users)?;
    Ok(Json(update(&state, &auth, id, body).await?))
}

/// Changes a user (the caller has checked that `auth` may), keeping the pharmacy
/// administrable.
pub(crate) async fn update(
    state: &AppState,
    auth: &Auth,
    id: i64,
    body: UserPatch,
) -> ApiResult<User> {
    let full_name = match body.full_name.as_deref() {
        None => None,
        Some(raw) => Some(values::opt_text("full_name", Some(raw), 200)?.unwrap_or_default()),
    };
    let email = match body.email.as_deref() {
        None => None,
        Some(raw) => Some(values::opt_email("email", Some(raw))?),
    };
    let role = body.role.as_deref().map(role_in).transpose()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    // Lock every active admin first: two admins demoting each other at once are then
    // serialised, and the second sees that only one admin would remain.
    let admins: Vec<i64> = tx
        .query(
            "SELECT id FROM users WHERE role = 'admin' AND active ORDER BY id FOR UPDATE",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let current = tx
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let current = user_from_row(&current)?;
    let new_role = role.unwrap_or(current.role);
    let new_active = body.active.unwrap_or(current.active);
    let was_admin = current.active && current.role == Role::Admin;
    let stays_admin = new_active && new_role == Role::Admin;
    if was_admin && !stays_admin {
        if admins.iter().all(|&a| a == id) {
            return Err(ApiError::conflict(
                "last_admin",
                "this is the last active admin; make another user admin first",
            ));
        }
        if id == auth.user_id {
            return Err(ApiError::conflict(
                "self",
                "you cannot deactivate or demote yourself; ask another admin",
            ));
        }
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE users SET full_name = coalesce($2, full_name),
                        email = CASE WHEN $3::bool THEN $4 ELSE email END,
                        role = $5, active = $6, updated_at = now()
                 WHERE id = $1 RETURNING {USER_COLUMNS}"
            ),
            &[
                &id,
                &full_name,
                &email.is_some(),
                &email.flatten(),
                &new_role.as_str(),
                &new_active,
            ],
        )
        .await?;
    if current.active && !new_active {
        tx.execute("DELETE FROM sessions WHERE user_id = $1", &[&id])
            .await?;
        tx.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
            &[&id],
        )
        .await?;
    }
    tx.commit().await?;
    super::auth::announce_auth_change(state, &**db).await?;
    user_from_row(&row)
}

#[derive(Debug, Deserialize)]
struct PasswordReset {
    new_password: Option<String>,
}

/// An admin sets a user's password; that user's sessions end (the admin's own current
/// session survives when they reset their own).
async fn reset_password(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<PasswordReset>,
) -> ApiResult<StatusCode> {
    auth.require(Area::Users)?;
    set_password(&state, &auth, id, body.new_password.unwrap_or_default()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An admin sets user `id`'s password (the caller has checked that `auth` may).
pub(crate) async fn set_password(
    state: &AppState,
    auth: &Auth,
    id: i64,
    password: String,
) -> ApiResult<()> {
    accounts::check_new_password(&password).map_err(|m| ApiError::invalid("new_password", m))?;
    let mut db = state.db().await?;
    let exists = db
        .query_opt("SELECT 1 FROM users WHERE id = $1", &[&id])
        .await?
        .is_some();
    if !exists {
        return Err(ApiError::not_found("user"));
    }
    let password_hash = hash(password).await?;
    let keep = auth.session_id.filter(|_| id == auth.user_id);
    // Users are never deleted, so the row checked above is still there.
    let tx = db.transaction().await?;
    tx.execute(
        "UPDATE users SET password_hash = $2, password_changed_at = now(), updated_at = now()
         WHERE id = $1",
        &[&id, &password_hash],
    )
    .await?;
    tx.execute(
        "DELETE FROM sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2",
        &[&id, &keep],
    )
    .await?;
    tx.commit().await?;
    super::auth::announce_auth_change(state, &**db).await
}
