//! The public pages (served by the worker for schema `public`): a landing page, "Create your pharmacy"
//! and "Find my pharmacy". Sign-up holds no secret and creates nothing itself: it sends the
//! form to control's API (`POST /v1/tenants` on `--control-socket`), which provisions the
//! tenant with the same code as `apotheca create-tenant --admin-user`, then sends the browser
//! to the new pharmacy's login page. Attempts are limited per client address
//! (`[worker] signups_per_hour`), counted before anything else is checked, in the database so
//! that every host counts the same ones.

use std::time::Duration;

use apotheca_protocol::client::Client;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::Method;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use apotheca_web::error::{public_page, render, see_other, PageResult};
use apotheca_web::form::{form_token, FormState, PublicForm};
use apotheca_web::request::{client_address, secure};

use crate::SiteState;

const SITE: &str = "Apotheca";
const HOUR: Duration = Duration::from_secs(3600);

pub fn routes() -> Router<SiteState> {
    Router::new()
        .route("/", get(landing))
        .route("/tenants/create-tenant/", get(signup_form).post(signup))
        .route("/tenants/find/", get(find))
}

/// Records a sign-up attempt from `address` (`public.apotheca_signup_attempt`: every host
/// counts the same ones) unless `limit` were recorded within `window`; then how long until the
/// next is allowed instead.
async fn attempt(
    client: &deadpool_postgres::Client,
    address: &str,
    limit: usize,
    window: Duration,
) -> Result<Result<(), Duration>, deadpool_postgres::tokio_postgres::Error> {
    let address: String = address.chars().take(200).collect();
    let limit = i32::try_from(limit).unwrap_or(i32::MAX);
    let wait: f64 = client
        .query_one(
            "SELECT public.apotheca_signup_attempt($1, $2, $3)",
            &[&address, &limit, &window.as_secs_f64()],
        )
        .await?
        .get(0);
    if wait > 0.0 {
        return Ok(Err(Duration::try_from_secs_f64(wait).unwrap_or(window)));
    }
    Ok(Ok(()))
}

#[derive(Template)]
#[template(path = "site/landing.html")]
struct LandingPage {
    pharmacy: &'static str,
    css: &'static str,
    notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "site/signup.html")]
struct SignupPage {
    pharmacy: &'static str,
    css: &'static str,
    notice: Option<&'static str>,
    token: String,
    form: FormState,
}

#[derive(Template)]
#[template(path = "site/find.html")]
struct FindPage {
    pharmacy: &'static str,
    css: &'static str,
    notice: Option<&'static str>,
    q: String,
    searched: bool,
    found: Vec<(String, String)>,
}

async fn landing() -> PageResult {
    let page = LandingPage {
        pharmacy: SITE,
        css: apotheca_web::assets::url("app.css"),
        notice: None,
    };
    render(StatusCode::OK, &page)
}

fn signup_page(headers: &HeaderMap, status: StatusCode, form: FormState) -> PageResult {
    let (token, cookie) = form_token(headers);
    let page = SignupPage {
        pharmacy: SITE,
        css: apotheca_web::assets::url("app.css"),
        notice: None,
        token,
        form,
    };
    public_page(status, &page, cookie)
}

async fn signup_form(headers: HeaderMap) -> PageResult {
    signup_page(&headers, StatusCode::OK, FormState::default())
}

const FIELDS: [(&str, &str); 4] = [
    ("name", "Give your pharmacy's name."),
    ("subdomain", "Choose a subdomain."),
    ("admin_user", "Choose the administrator's username."),
    ("admin_password", "Choose the administrator's password."),
];

async fn signup(
    State(state): State<SiteState>,
    headers: HeaderMap,
    PublicForm(data): PublicForm,
) -> PageResult {
    let mut form = FormState::from_data(&data).with("admin_password", "");
    let address = client_address(&headers);
    // Its own connection, given back at once: the provisioning below can take a while.
    let counted = {
        let client = state.pool.get().await?;
        attempt(&client, &address, state.signups_per_hour, HOUR).await?
    };
    if let Err(wait) = counted {
        tracing::warn!(%address, "sign-up refused: too many attempts");
        form.error = Some(format!(
            "Too many sign-ups from your address; try again in {} minutes.",
            wait.as_secs().div_ceil(60).max(1)
        ));
        let mut response = signup_page(&headers, StatusCode::TOO_MANY_REQUESTS, form)?;
        if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Ok(response);
    }
    for (name, message) in FIELDS {
        if data.get(name).trim().is_empty() {
            form.invalid(name, message);
        }
    }
    if form.has_errors() {
        return signup_page(&headers, StatusCode::UNPROCESSABLE_ENTITY, form);
    }
    let Some(socket) = state.control_socket.as_deref() else {
        tracing::error!("sign-up without a control socket (--control-socket)");
        form.error = Some("Sign-up is not available here.".to_owned());
        return signup_page(&headers, StatusCode::SERVICE_UNAVAILABLE, form);
    };
    let body = serde_json::json!({
        "name": data.get("name"),
        "subdomain": data.get("subdomain").trim(),
        "admin_user": data.get("admin_user"),
        "admin_password": data.get("admin_password"),
    });
    let answer = Client::new(socket)
        .with_timeout(crate::console::CONTROL_TIMEOUT)
        .call(Method::POST, "/v1/tenants", None, Some(&body))
        .await;
    match answer.map(|a| (a.status.as_u16(), a.json())) {
        Ok((201, created)) => {
            let domain = created["domain"].as_str().unwrap_or_default();
            let to = site_url(&headers, domain)
                .or_else(|| created["login_url"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("http://{domain}/login"));
            Ok(see_other(&to))
        }
        Ok((status @ (409 | 422), refused)) => {
            let error = &refused["error"];
            let message = error["message"].as_str().unwrap_or("This was refused.");
            match error["field"].as_str() {
                Some(field) if FIELDS.iter().any(|(f, _)| *f == field) => {
                    form.invalid(field, message);
                }
                _ => form.error = Some(message.to_owned()),
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT);
            signup_page(&headers, status, form)
        }
        other => {
            tracing::error!(answer = ?other, "sign-up: control failed");
            form.error =
                Some("Your pharmacy could not be created just now; try again in a moment.".into());
            signup_page(&headers, StatusCode::SERVICE_UNAVAILABLE, form)
        }
    }
}

/// `<scheme>://<domain>[:port]/login`, with the scheme and port this request came in by
/// (the proxy's X-Forwarded-Proto and the Host header), so the browser stays on the same
/// listener.
pub(super) fn site_url(headers: &HeaderMap, domain: &str) -> Option<String> {
    if domain.is_empty() {
        return None;
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let port = host
        .rsplit_once(':')
        .filter(|(h, p)| {
            !h.ends_with(':') && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
        })
        .map_or(String::new(), |(_, p)| format!(":{p}"));
    let scheme = if secure(headers) { "https" } else { "http" };
    Some(format!("{scheme}://{domain}{port}/login"))
}

#[derive(Debug, Default, Deserialize)]
struct FindQuery {
    q: Option<String>,
}

/// Active pharmacies whose name is exactly `q` (any case) or one of whose domains is `q` or
/// starts with the label `q`: a link for someone who knows their pharmacy, not a directory.
async fn find(
    State(state): State<SiteState>,
    headers: HeaderMap,
    Query(query): Query<FindQuery>,
) -> PageResult {
    let q = query.q.unwrap_or_default().trim().to_owned();
    let mut found = Vec::new();
    if !q.is_empty() && q.len() <= 253 {
        let client = state.pool.get().await?;
        let rows = client
            .query(
                "SELECT t.name, p.domain FROM public.tenants t
                 JOIN public.domains p ON p.tenant_id = t.id AND p.is_primary
                 WHERE t.status = 'active'
                   AND (lower(t.name) = lower($1)
                        OR EXISTS (SELECT 1 FROM public.domains d WHERE d.tenant_id = t.id
                                   AND (d.domain = lower($1) OR split_part(d.domain, '.', 1) = lower($1))))
                 ORDER BY t.name LIMIT 10",
                &[&q],
            )
            .await?;
        for row in rows {
            let domain: String = row.get(1);
            let url =
                site_url(&headers, &domain).unwrap_or_else(|| format!("http://{domain}/login"));
            found.push((row.get(0), url));
        }
    }
    let page = FindPage {
        pharmacy: SITE,
        css: apotheca_web::assets::url("app.css"),
        notice: None,
        searched: !q.is_empty(),
        q,
        found,
    };
    render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_links_keep_the_port_and_scheme() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("localhost:8080"));
        assert_eq!(
            site_url(&h, "green.localhost").as_deref(),
            Some("http://green.localhost:8080/login")
        );
        h.insert(header::HOST, HeaderValue::from_static("example.com"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(
            site_url(&h, "green.example.com").as_deref(),
            Some("https://green.example.com/login")
        );
    }
}
