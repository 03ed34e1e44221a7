//! The console's tenant pages: the list, one tenant (status, domains, worker policy, suspend
//! or resume), a new tenant, and deleting one after the operator typed its schema name. Each
//! form's refusals come from control, next to their fields, the values kept; a successful
//! POST redirects (303) to the page that shows its effect.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{ask, notice_text, ConsoleError, ConsoleResult, NoticeQuery, Operator, OperatorForm};
use apotheca_web::error::{render, see_other};
use apotheca_web::form::FormState;

use crate::SiteState;
use apotheca_common::names::percent_encode as encode;
use apotheca_protocol::api::ConsoleTenant;
use apotheca_protocol::client::Answer;

pub fn routes() -> Router<SiteState> {
    Router::new()
        .route("/operator/tenants", get(list))
        .route("/operator/tenants/new", get(new_form).post(create))
        .route("/operator/tenants/{schema}", get(show))
        .route("/operator/tenants/{schema}/suspend", post(suspend))
        .route("/operator/tenants/{schema}/resume", post(resume))
        .route("/operator/tenants/{schema}/domains", post(add_domain))
        .route(
            "/operator/tenants/{schema}/domains/remove",
            post(remove_domain),
        )
        .route("/operator/tenants/{schema}/policy", post(set_policy))
        .route(
            "/operator/tenants/{schema}/delete",
            get(delete_form).post(delete),
        )
}

/// What every console page shows around its content.
pub struct Frame {
    pub operator: String,
    pub csrf: String,
    pub section: &'static str,
    pub notice: Option<&'static str>,
    pub css: &'static str,
}

impl Frame {
    pub(super) fn new(
        who: &Operator,
        operator: &str,
        section: &'static str,
        notice: Option<&str>,
    ) -> Self {
        Self {
            operator: operator.to_owned(),
            csrf: who.csrf.clone(),
            section,
            notice: notice.and_then(notice_text),
            css: apotheca_web::assets::url("app.css"),
        }
    }

    /// "2026-03-01 14:05 UTC".
    pub fn time(&self, at: &DateTime<Utc>) -> String {
        at.format("%Y-%m-%d %H:%M UTC").to_string()
    }
}

pub(super) fn read<T: serde::de::DeserializeOwned>(a: &Answer, key: &str) -> ConsoleResult<T> {
    if a.status.as_u16() != 200 {
        return Err(ConsoleError::from_answer(a));
    }
    serde_json::from_value(a.json()[key].clone()).map_err(|e| {
        tracing::error!(error = %e, "operator console: an unreadable answer from control");
        ConsoleError::unavailable()
    })
}

/// A tenant and the operator's name, from control (404 page when there is none).
async fn tenant(
    state: &SiteState,
    who: &Operator,
    schema: &str,
) -> ConsoleResult<(ConsoleTenant, String)> {
    let path = format!("/v1/console/tenants/{}", encode(schema));
    let a = ask(state, Some(who), Method::GET, &path, None).await?;
    Ok((read(&a, "tenant")?, read(&a, "operator")?))
}

/// A form's refusal from control: each field's message next to it, else above the form.
pub(super) fn refused(form: &mut FormState, a: &Answer, fields: &[&str]) {
    let errors = a.field_errors();
    let mut placed = false;
    for (field, message) in &errors {
        if fields.contains(&field.as_str()) {
            form.invalid(field, message.clone());
            placed = true;
        }
    }
    if !placed {
        form.error = Some(a.message_or("Control refused this."));
    }
}

fn answer_status(a: &Answer) -> StatusCode {
    a.status
}

#[derive(Template)]
#[template(path = "console/tenants.html")]
struct ListPage {
    frame: Frame,
    tenants: Vec<ConsoleTenant>,
}

async fn list(
    State(state): State<SiteState>,
    who: Operator,
    Query(q): Query<NoticeQuery>,
) -> ConsoleResult {
    let a = ask(&state, Some(&who), Method::GET, "/v1/console/tenants", None).await?;
    let operator: String = read(&a, "operator")?;
    let page = ListPage {
        frame: Frame::new(&who, &operator, "tenants", q.notice.as_deref()),
        tenants: read(&a, "tenants")?,
    };
    Ok(apotheca_web::error::ok(&page)?)
}

#[derive(Template)]
#[template(path = "console/tenant.html")]
struct TenantPage {
    frame: Frame,
    t: ConsoleTenant,
    /// Each domain's login page.
    links: Vec<String>,
    domain_form: FormState,
    remove_form: FormState,
    policy_form: FormState,
}

/// The forms of the tenant page; the one being shown again carries what was sent.
#[derive(Default)]
struct Forms {
    domain: FormState,
    remove: Option<FormState>,
    policy: Option<FormState>,
}

async fn tenant_page(
    state: &SiteState,
    who: &Operator,
    schema: &str,
    notice: Option<&str>,
    forms: Forms,
    status: StatusCode,
) -> ConsoleResult {
    let (t, operator) = tenant(state, who, schema).await?;
    let policy_form = forms.policy.unwrap_or_else(|| {
        FormState::default()
            .with("min_workers", t.policy.min_workers.to_string())
            .with("max_workers", t.policy.max_workers.to_string())
            .with("idle_timeout_secs", t.policy.idle_timeout_secs.to_string())
    });
    let page = TenantPage {
        frame: Frame::new(who, &operator, "tenants", notice),
        domain_form: forms.domain,
        remove_form: forms.remove.unwrap_or_default(),
        policy_form,
        links: t.domains.iter().map(|d| who.login_url(d)).collect(),
        t,
    };
    Ok(render(status, &page)?)
}

async fn show(
    State(state): State<SiteState>,
    who: Operator,
    Path(schema): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> ConsoleResult {
    let notice = q.notice.as_deref();
    tenant_page(
        &state,
        &who,
        &schema,
        notice,
        Forms::default(),
        StatusCode::OK,
    )
    .await
}

fn tenant_url(schema: &str, notice: &str) -> String {
    format!("/operator/tenants/{}?notice={notice}", encode(schema))
}

async fn change_status(
    state: &SiteState,
    who: &Operator,
    schema: &str,
    verb: &str,
) -> ConsoleResult {
    let path = format!("/v1/console/tenants/{}/{verb}", encode(schema));
    let a = ask(state, Some(who), Method::POST, &path, None).await?;
    if a.status.as_u16() != 200 {
        return Err(ConsoleError::from_answer(&a));
    }
    let notice = if verb == "suspend" {
        "suspended"
    } else {
        "resumed"
    };
    Ok(see_other(&tenant_url(schema, notice)))
}

async fn suspend(
    State(state): State<SiteState>,
    Path(schema): Path<String>,
    OperatorForm { operator, .. }: OperatorForm,
) -> ConsoleResult {
    change_status(&state, &operator, &schema, "suspend").await
}

async fn resume(
    State(state): State<SiteState>,
    Path(schema): Path<String>,
    OperatorForm { operator, .. }: OperatorForm,
) -> ConsoleResult {
    change_status(&state, &operator, &schema, "resume").await
}

async fn add_domain(
    State(state): State<SiteState>,
    Path(schema): Path<String>,
    OperatorForm {
        operator,
        form: data,
    }: OperatorForm,
) -> ConsoleResult {
    let mut form = FormState::from_data(&data);
    let domain = data.get("domain").trim();
    let status = if domain.is_empty() {
        form.invalid("domain", "Give the domain, e.g. pharmacy.example.com.");
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        let body = json!({"domain": domain, "primary": data.ticked("primary")});
        let path = format!("/v1/console/tenants/{}/domains", encode(&schema));
        let a = ask(&state, Some(&operator), Method::POST, &path, Some(&body)).await?;
        match a.status.as_u16() {
            201 => return Ok(see_other(&tenant_url(&schema, "domain_added"))),
            409 | 422 => refused(&mut form, &a, &["domain"]),
            _ => return Err(ConsoleError::from_answer(&a)),
        }
        answer_status(&a)
    };
    let forms = Forms {
        domain: form,
        ..Forms::default()
    };
    tenant_page(&state, &operator, &schema, None, forms, status).await
}

async fn remove_domain(
    State(state): State<SiteState>,
    Path(schema): Path<String>,
    OperatorForm {
        operator,
        form: data,
    }: OperatorForm,
) -> ConsoleResult {
    let mut path = format!(
        "/v1/console/tenants/{}/domains/{}",
        encode(&schema),
        encode(data.get("domain").trim())
    );
    let next = data.get("new_primary").trim();
    if !next.is_empty() {
        path.push_str(&format!("?new_primary={}", encode(next)));
    }
    let a = ask(&state, Some(&operator), Method::DELETE, &path, None).await?;
    let mut form = FormState::from_data(&data);
    match a.status.as_u16() {
        200 => return Ok(see_other(&tenant_url(&schema, "domain_removed"))),
        409 | 422 => form.error = Some(a.message_or("This domain cannot be removed.")),
        _ => return Err(ConsoleError::from_answer(&a)),
    }
    let forms = Forms {
        remove: Some(form),
        ..Forms::default()
    };
    tenant_page(&state, &operator, &schema, None, forms, answer_status(&a)).await
}

const POLICY_FIELDS: [&str; 3] = ["min_workers", "max_workers", "idle_timeout_secs"];

async fn set_policy(
    State(state): State<SiteState>,
    Path(schema): Path<String>,
    OperatorForm {
        operator,
        form: data,
    }: OperatorForm,
) -> ConsoleResult {
    let mut form = FormState::from_data(&data);
    let mut numbers = Vec::new();
    for field in POLICY_FIELDS {
        match data.get(field).trim().parse::<u32>() {
            Ok(n) => numbers.push(n),
            Err(_) => form.invalid(field, "Give a whole number, 0 or more."),
        }
    }
    let status = if let [min, max, idle] = numbers[..] {
        let body = json!({"min_workers": min, "max_workers": max, "idle_timeout_secs": idle});
        let path = format!("/v1/console/tenants/{}/policy", encode(&schema));
        let a = ask(&state, Some(&operator), Method::PUT, &path, Some(&body)).await?;
        match a.status.as_u16() {
            200 => return Ok(see_other(&tenant_url(&schema, "policy"))),
            409 | 422 => refused(&mut form, &a, &POLICY_FIELDS),
            _ => return Err(ConsoleError::from_answer(&a)),
        }
        answer_status(&a)
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let forms = Forms {
        policy: Some(form),
        ..Forms::default()
    };
    tenant_page(&state, &operator, &schema, None, forms, status).await
}

#[derive(Template)]
#[template(path = "console/new.html")]
struct NewPage {
    frame: Frame,
    form: FormState,
}

const NEW_FIELDS: [(&str, &str); 5] = [
    ("name", "Give the pharmacy's name."),
    ("schema", "Give the schema name."),
    ("domain", "Give its domain."),
    ("admin_user", "Give the administrator's username."),
    ("admin_password", "Give the administrator's password."),
];

async fn new_page(
    state: &SiteState,
    who: &Operator,
    form: FormState,
    status: StatusCode,
) -> ConsoleResult {
    // The session is checked before the form is shown.
    let a = ask(state, Some(who), Method::GET, "/v1/operators/me", None).await?;
    let operator: String = read(&a, "username")?;
    let page = NewPage {
        frame: Frame::new(who, &operator, "new", None),
        form,
    };
    Ok(render(status, &page)?)
}

async fn new_form(State(state): State<SiteState>, who: Operator) -> ConsoleResult {
    new_page(&state, &who, FormState::default(), StatusCode::OK).await
}

async fn create(
    State(state): State<SiteState>,
    OperatorForm {
        operator,
        form: data,
    }: OperatorForm,
) -> ConsoleResult {
    let mut form = FormState::from_data(&data).with("admin_password", "");
    for (name, message) in NEW_FIELDS {
        if data.get(name).trim().is_empty() {
            form.invalid(name, message);
        }
    }
    if form.has_errors() {
        return new_page(&state, &operator, form, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let body = json!({
        "name": data.get("name"),
        "schema": data.get("schema").trim(),
        "domain": data.get("domain").trim(),
        "admin_user": data.get("admin_user").trim(),
        "admin_password": data.get("admin_password"),
    });
    let a = ask(
        &state,
        Some(&operator),
        Method::POST,
        "/v1/console/tenants",
        Some(&body),
    )
    .await?;
    match a.status.as_u16() {
        201 => {
            let json = a.json();
            let schema = json["schema"].as_str().unwrap_or_default();
            Ok(see_other(&tenant_url(schema, "created")))
        }
        409 | 422 => {
            let fields: Vec<&str> = NEW_FIELDS.iter().map(|(f, _)| *f).collect();
            refused(&mut form, &a, &fields);
            new_page(&state, &operator, form, answer_status(&a)).await
        }
        _ => Err(ConsoleError::from_answer(&a)),
    }
}

#[derive(Template)]
#[template(path = "console/delete.html")]
struct DeletePage {
    frame: Frame,
    t: ConsoleTenant,
    form: FormState,
}

async fn delete_page(
    state: &SiteState,
    who: &Operator,
    schema: &str,
    form: FormState,
    status: StatusCode,
) -> ConsoleResult {
    let (t, operator) = tenant(state, who, schema).await?;
    let page = DeletePage {
        frame: Frame::new(who, &operator, "tenants", None),
        t,
        form,
    };
    Ok(render(status, &page)?)
}

async fn delete_form(
    State(state): State<SiteState>,
    who: Operator,
    Path(schema): Path<String>,
) -> ConsoleResult {
    delete_page(&state, &who, &schema, FormState::default(), StatusCode::OK).await
}

async fn delete(
    State(state): State<SiteState>,
    Path(schema): Path<String>,
    OperatorForm {
        operator,
        form: data,
    }: OperatorForm,
) -> ConsoleResult {
    let mut form = FormState::from_data(&data);
    let typed = data.get("confirm").trim();
    let path = format!(
        "/v1/console/tenants/{}?confirm={}",
        encode(&schema),
        encode(typed)
    );
    let a = ask(&state, Some(&operator), Method::DELETE, &path, None).await?;
    match a.status.as_u16() {
        200 => Ok(see_other("/operator/tenants?notice=deleted")),
        409 | 422 => {
            refused(&mut form, &a, &["confirm"]);
            delete_page(&state, &operator, &schema, form, answer_status(&a)).await
        }
        _ => Err(ConsoleError::from_answer(&a)),
    }
}
