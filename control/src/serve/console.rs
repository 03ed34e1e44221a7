//! The operator console's actions on the daemon's API (`/v1/console/...`), each behind an
//! operator session ([`super::operator_api::Operator`]) and each done by the same library code
//! as its CLI command: [`Provisioner::create`] (create-tenant --admin-user),
//! [`tenants::set_status`] (suspend-tenant, resume-tenant), [`tenants::delete`]
//! (delete-tenant), [`domains::add`] and [`domains::remove`] (add-domain, remove-domain),
//! [`policy::set`] (scale). Those send their NOTIFY, which the supervisor and the proxy follow.
//!
//! Listings join the database's rows with what the supervisor knows: state, ready workers,
//! requests served over the last minute and the last request.

use apotheca_common::names::{DomainName, SchemaName};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::DateTime;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{ask, Api, ApiError};
use super::catalog;
use super::operator_api::Operator;
use super::signup::{self, capitalized};
use super::supervisor::Msg;
use apotheca_protocol::api::{ConsoleTenant, StatusReport, TenantStatus};
use apotheca_tenancy::tenants::policy::{self, PolicyChange};
use apotheca_tenancy::tenants::{self, domains, FirstAdmin, Provisioner, TenantInfo};
use apotheca_tenancy::Error as TenancyError;

pub fn router() -> Router<Api> {
    Router::new()
        .route("/v1/console/tenants", get(list).post(create))
        .route("/v1/console/tenants/{schema}", get(one).delete(delete))
        .route("/v1/console/tenants/{schema}/suspend", post(suspend))
        .route("/v1/console/tenants/{schema}/resume", post(resume))
        .route("/v1/console/tenants/{schema}/domains", post(add_domain))
        .route(
            "/v1/console/tenants/{schema}/domains/{domain}",
            axum::routing::delete(remove_domain),
        )
        .route("/v1/console/tenants/{schema}/policy", put(set_policy))
}

fn combine(info: TenantInfo, live: Option<&TenantStatus>) -> ConsoleTenant {
    let workers = live.map_or(0, |t| {
        t.workers.iter().filter(|w| w.state == "ready").count()
    });
    let state = match live {
        Some(t) => t.state.clone(),
        None if info.status == "suspended" => "suspended".to_owned(),
        None => "cold".to_owned(),
    };
    ConsoleTenant {
        last_request_at: live
            .and_then(|t| t.last_request_at_unix_ms)
            .and_then(|ms| DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)),
        requests_last_minute: live.map_or(0, |t| t.requests_last_minute),
        workers,
        state,
        schema: info.schema,
        name: info.name,
        status: info.status,
        domains: info.domains,
        created_at: info.created_at,
        migration_version: info.migration_version,
        policy: catalog::stored(&info.policy),
    }
}

async fn report(api: &Api) -> Result<StatusReport, ApiError> {
    ask(api, |reply| Msg::Status { reply })
        .await
        .ok_or_else(ApiError::gone)
}

async fn connect(api: &Api) -> Result<tokio_postgres::Client, ApiError> {
    api.signup.db.connect().await.map_err(ApiError::database)
}

fn not_found(schema: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_tenant",
        format!("There is no tenant with schema {schema:?}."),
    )
}

/// The tenant `raw` names, from the database; 404 when there is none (or the name is not
/// one a tenant could have).
async fn existing(client: &tokio_postgres::Client, raw: &str) -> Result<TenantInfo, ApiError> {
    let schema = SchemaName::parse(raw).map_err(|_| not_found(raw))?;
    match tenants::load(client, schema.as_str()).await {
        Ok(info) => Ok(info),
        Err(TenancyError::Invalid(_)) => Err(not_found(raw)),
        Err(e) => Err(ApiError::database(e)),
    }
}

/// A refusal of the library code (bad input: nothing changed) for `field`, or a failure.
fn refused(field: &'static str, e: TenancyError) -> ApiError {
    match e {
        TenancyError::Invalid(m) if m.contains("already") => {
            let mut e = ApiError::invalid(field, capitalized(&m));
            (e.status, e.code) = (StatusCode::CONFLICT, "taken");
            e
        }
        TenancyError::Invalid(m) => ApiError::invalid(field, capitalized(&m)),
        TenancyError::Name(n) => ApiError::invalid(field, capitalized(&n.to_string())),
        other => ApiError::database(other),
    }
}

async fn list(State(api): State<Api>, who: Operator) -> Result<Json<Value>, ApiError> {
    let client = connect(&api).await?;
    let rows = tenants::list(&client).await.map_err(ApiError::database)?;
    let live = report(&api).await?;
    let tenants: Vec<ConsoleTenant> = rows
        .into_iter()
        .map(|info| {
            let t = live.tenants.iter().find(|t| t.schema == info.schema);
            combine(info, t)
        })
        .collect();
    Ok(Json(
        json!({"operator": who.operator.username, "tenants": tenants}),
    ))
}

async fn one(
    State(api): State<Api>,
    who: Operator,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let client = connect(&api).await?;
    let info = existing(&client, &raw).await?;
    let live = report(&api).await?;
    let t = live.tenants.iter().find(|t| t.schema == info.schema);
    Ok(Json(
        json!({"operator": who.operator.username, "tenant": combine(info, t)}),
    ))
}

#[derive(Debug, Deserialize)]
struct NewTenant {
    name: String,
    schema: String,
    domain: String,
    admin_user: String,
    admin_password: String,
}

/// Every field's refusal at once, so the form shows them all.
fn check_new(form: &NewTenant) -> Result<(String, SchemaName, DomainName), ApiError> {
    let mut wrong: Vec<(&'static str, String)> = Vec::new();
    let name = tenants::parse_display_name(&form.name)
        .map_err(|e| wrong.push(("name", capitalized(&e.to_string()))))
        .ok();
    let schema = SchemaName::parse(form.schema.trim())
        .map_err(|e| wrong.push(("schema", capitalized(&e.to_string()))))
        .ok();
    let domain = DomainName::parse(form.domain.trim())
        .map_err(|e| wrong.push(("domain", capitalized(&e.to_string()))))
        .ok();
    let user = form.admin_user.trim();
    let user_ok = (1..=150).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b));
    if !user_ok {
        wrong.push((
            "admin_user",
            "Use 1 to 150 letters, digits or . _ @ + - for the admin's username.".to_owned(),
        ));
    }
    if let Err(m) = apotheca_pharmacy::accounts::check_new_password(&form.admin_password) {
        wrong.push(("admin_password", capitalized(&m)));
    }
    ApiError::fields(wrong)?;
    match (name, schema, domain) {
        (Some(n), Some(s), Some(d)) => Ok((n, s, d)),
        _ => Err(ApiError::invalid("name", "Invalid.")),
    }
}

async fn create(
    State(api): State<Api>,
    who: Operator,
    Json(form): Json<NewTenant>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (name, schema, domain) = check_new(&form)?;
    let (user, password) = (form.admin_user, form.admin_password);
    let admin = FirstAdmin::new(&user, &password)
        .await
        .map_err(|e| match e {
            TenancyError::Busy(busy) => ApiError::busy(busy),
            e => refused("admin_password", e),
        })?;
    let s = &api.signup;
    let _turn = s.running.acquire().await.map_err(ApiError::database)?;
    let mut client = connect(&api).await?;
    let provisioner = Provisioner {
        db: &s.db,
        secret: &s.secret,
        migrations: &s.migrations,
        role_limits: &s.role_limits,
    };
    let created = provisioner
        .create(&mut client, &name, &schema, &domain, Some(&admin))
        .await;
    let info = created.map_err(|e| {
        let field = match &e {
            TenancyError::Invalid(m) if m.contains("domain") => "domain",
            _ => "schema",
        };
        refused(field, e)
    })?;
    signup::start_company_profile(&client, &schema, &name).await;
    tracing::info!(operator = %who.operator.username, schema = %info.schema, %domain, "console: tenant created");
    let base = s.tenant_url.replace("{domain}", domain.as_str());
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "schema": info.schema,
            "domain": domain.as_str(),
            "login_url": format!("{}/login", base.trim_end_matches('/')),
        })),
    ))
}

async fn set_status(
    api: &Api,
    who: &Operator,
    raw: &str,
    status: &str,
) -> Result<Json<Value>, ApiError> {
    let mut client = connect(api).await?;
    let info = existing(&client, raw).await?;
    let changed = tenants::set_status(&mut client, &info.schema, status)
        .await
        .map_err(|e| refused("schema", e))?;
    tracing::info!(operator = %who.operator.username, schema = %info.schema, status, changed, "console: status");
    Ok(Json(
        json!({"schema": info.schema, "status": status, "changed": changed}),
    ))
}

async fn suspend(
    State(api): State<Api>,
    who: Operator,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(&api, &who, &raw, "suspended").await
}

async fn resume(
    State(api): State<Api>,
    who: Operator,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(&api, &who, &raw, "active").await
}

#[derive(Debug, Deserialize)]
struct Confirm {
    confirm: Option<String>,
}

async fn delete(
    State(api): State<Api>,
    who: Operator,
    Path(raw): Path<String>,
    Query(q): Query<Confirm>,
) -> Result<Json<Value>, ApiError> {
    let mut client = connect(&api).await?;
    let info = existing(&client, &raw).await?;
    if q.confirm.as_deref().map(str::trim) != Some(info.schema.as_str()) {
        return Err(ApiError::invalid(
            "confirm",
            format!(
                "Type the schema name, {}, to confirm: the pharmacy and all its data are deleted for good.",
                info.schema
            ),
        ));
    }
    let schema = SchemaName::parse(&info.schema).map_err(|_| not_found(&raw))?;
    let gone = tenants::delete(&mut client, &api.signup.db, &schema, None)
        .await
        .map_err(|e| refused("confirm", e))?;
    tracing::info!(operator = %who.operator.username, schema = %gone.schema, "console: tenant deleted");
    Ok(Json(json!({"schema": gone.schema, "name": gone.name})))
}

#[derive(Debug, Deserialize)]
struct NewDomain {
    domain: String,
    #[serde(default)]
    primary: bool,
}

async fn add_domain(
    State(api): State<Api>,
    who: Operator,
    Path(raw): Path<String>,
    Json(body): Json<NewDomain>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let domain = DomainName::parse(body.domain.trim())
        .map_err(|e| ApiError::invalid("domain", capitalized(&e.to_string())))?;
    let mut client = connect(&api).await?;
    let info = existing(&client, &raw).await?;
    domains::add(&mut client, &info.schema, &domain, body.primary)
        .await
        .map_err(|e| refused("domain", e))?;
    tracing::info!(operator = %who.operator.username, schema = %info.schema, %domain, "console: domain added");
    Ok((
        StatusCode::CREATED,
        Json(json!({"schema": info.schema, "domain": domain.as_str()})),
    ))
}

#[derive(Debug, Deserialize)]
struct NewPrimary {
    new_primary: Option<String>,
}

async fn remove_domain(
    State(api): State<Api>,
    who: Operator,
    Path((raw, domain)): Path<(String, String)>,
    Query(q): Query<NewPrimary>,
) -> Result<Json<Value>, ApiError> {
    let mut client = connect(&api).await?;
    let info = existing(&client, &raw).await?;
    let theirs = |d: &str| info.domains.iter().any(|x| x == d);
    let domain = DomainName::parse(domain.trim())
        .ok()
        .filter(|d| theirs(d.as_str()))
        .ok_or_else(|| {
            ApiError::invalid(
                "domain",
                format!("{domain} is not a domain of {}.", info.schema),
            )
        })?;
    let next = match q.new_primary.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(n) => Some(
            DomainName::parse(n)
                .ok()
                .filter(|d| theirs(d.as_str()))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "new_primary",
                        format!("{n} is not a domain of {}.", info.schema),
                    )
                })?,
        ),
    };
    let is_primary = info.domains.first().map(String::as_str) == Some(domain.as_str());
    if is_primary && next.is_none() {
        return Err(ApiError::invalid(
            "new_primary",
            "This is the primary domain: choose the domain that becomes primary instead.",
        ));
    }
    domains::remove(&mut client, &domain, next.as_ref())
        .await
        .map_err(|e| refused("domain", e))?;
    tracing::info!(operator = %who.operator.username, schema = %info.schema, %domain, "console: domain removed");
    Ok(Json(
        json!({"schema": info.schema, "domain": domain.as_str()}),
    ))
}

#[derive(Debug, Deserialize)]
struct PolicyBody {
    min_workers: u16,
    max_workers: u16,
    idle_timeout_secs: u64,
}

async fn set_policy(
    State(api): State<Api>,
    who: Operator,
    Path(raw): Path<String>,
    Json(body): Json<PolicyBody>,
) -> Result<Json<tenants::Policy>, ApiError> {
    let mut wrong: Vec<(&'static str, String)> = Vec::new();
    if body.max_workers == 0 {
        wrong.push(("max_workers", "At least 1 worker.".to_owned()));
    } else if body.min_workers > body.max_workers {
        wrong.push((
            "min_workers",
            format!(
                "At most the max workers ({}); 0 lets the pharmacy scale to zero.",
                body.max_workers
            ),
        ));
    }
    if body.idle_timeout_secs == 0 || i32::try_from(body.idle_timeout_secs).is_err() {
        wrong.push((
            "idle_timeout_secs",
            "Give 1 second or more (at most 68 years).".to_owned(),
        ));
    }
    ApiError::fields(wrong)?;
    let mut client = connect(&api).await?;
    let info = existing(&client, &raw).await?;
    let change = PolicyChange {
        min_workers: Some(body.min_workers),
        max_workers: Some(body.max_workers),
        idle_timeout_secs: Some(body.idle_timeout_secs),
        max_inflight_per_worker: None,
    };
    let p = policy::set(&mut client, &info.schema, &change)
        .await
        .map_err(|e| refused("min_workers", e))?;
    tracing::info!(operator = %who.operator.username, schema = %info.schema, ?p, "console: policy");
    Ok(Json(p))
}
