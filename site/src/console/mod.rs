//! The operator console on the public site (`/operator/`): the hosting provider's operators
//! log in, list the tenants and create, suspend, resume and delete them, add and remove their
//! domains and change their worker policies. The public site holds no secret and reads no
//! operator: every page asks control's API (`/v1/operators/...`, `/v1/console/...`), which
//! checks the operator's session token on every call and does the work with the CLI's code.
//!
//! The token lives in the `apotheca_operator` cookie (HttpOnly, SameSite=Lax, Path=/operator,
//! Secure behind https); the forms carry a CSRF token derived from it (the login form a
//! double-submitted one, like the site's other public forms). Without a cookie, or when
//! control says the session is over, a page goes to `/operator/login`. This module owns the
//! session, the call to control and the login and logout pages; [`tenants`] the tenants'
//! pages, [`imports`] "Import a pharmacy".

mod imports;
mod tenants;

use askama::Template;
use axum::extract::{Form, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use apotheca_web::error::{error_page_in, public_page, see_other, Links, PageError};
use apotheca_web::form::{form_token, FormData, FormState, PublicForm, CSRF_FIELD};
use apotheca_web::request::{client_address, cookie_value, secure};

use crate::SiteState;
use apotheca_pharmacy::accounts::same_secret;
use apotheca_protocol::client::{Answer, CallError, Client};

pub const OPERATOR_COOKIE: &str = "apotheca_operator";
const SITE: &str = "Apotheca operators";

/// Where the console's error pages lead.
pub const LINKS: Links = Links {
    home: "/operator/tenants",
    home_label: "Go to the tenants",
    login: "/operator/login",
};

pub fn router() -> Router<SiteState> {
    Router::new()
        .route(
            "/operator",
            get(|| async { see_other("/operator/tenants") }),
        )
        .route(
            "/operator/",
            get(|| async { see_other("/operator/tenants") }),
        )
        .route("/operator/login", get(login_form).post(login))
        .route("/operator/logout", post(logout))
        .merge(tenants::routes())
        .merge(imports::routes())
}

/// How a console page fails: to the login page, or an error page with the console's links.
#[derive(Debug)]
pub enum ConsoleError {
    /// No session, or control says it is over.
    Login,
    Page(StatusCode, String),
}

impl ConsoleError {
    fn unavailable() -> Self {
        Self::Page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The control daemon did not answer; try again in a moment.".to_owned(),
        )
    }

    /// Control's refusal of a request the console made, as a page.
    fn from_answer(a: &Answer) -> Self {
        let status = a.status;
        Self::Page(status, a.message_or("Control refused this."))
    }
}

impl From<PageError> for ConsoleError {
    fn from(e: PageError) -> Self {
        match e {
            PageError::Login { .. } => Self::Login,
            PageError::Status {
                status, message, ..
            } => Self::Page(status, message),
        }
    }
}

impl From<askama::Error> for ConsoleError {
    fn from(e: askama::Error) -> Self {
        PageError::from(e).into()
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            Self::Login => see_other("/operator/login"),
            Self::Page(status, message) => error_page_in(status, &message, &LINKS),
        }
    }
}

pub type ConsoleResult<T = Response> = Result<T, ConsoleError>;

/// The operator looking at a page: their session token (only ever sent on to control) and
/// the CSRF token their forms carry.
#[derive(Debug, Clone)]
pub struct Operator {
    token: String,
    pub csrf: String,
    /// The request's Host and X-Forwarded-Proto: links to a tenant's domains keep the
    /// scheme and port the console was reached by.
    origin: HeaderMap,
}

impl Operator {
    /// A tenant domain's login page, on this request's scheme and port.
    pub fn login_url(&self, domain: &str) -> String {
        crate::public::site_url(&self.origin, domain)
            .unwrap_or_else(|| format!("http://{domain}/login"))
    }
}

/// The CSRF token of a session: derived from its token, which only the operator's browser
/// and control know.
fn csrf_of(token: &str) -> String {
    let digest = Sha256::digest(format!("apotheca operator csrf\0{token}").as_bytes());
    hex::encode(&digest[..16])
}

impl FromRequestParts<SiteState> for Operator {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, _: &SiteState) -> ConsoleResult<Self> {
        let token = cookie_value(&parts.headers, OPERATOR_COOKIE)
            .filter(|t| !t.is_empty() && t.len() <= 100)
            .ok_or(ConsoleError::Login)?;
        let mut origin = HeaderMap::new();
        for name in [
            header::HOST,
            header::HeaderName::from_static("x-forwarded-proto"),
        ] {
            if let Some(value) = parts.headers.get(&name) {
                origin.insert(name, value.clone());
            }
        }
        Ok(Self {
            csrf: csrf_of(token),
            token: token.to_owned(),
            origin,
        })
    }
}

/// A form POSTed by an operator, its CSRF token checked.
pub struct OperatorForm {
    pub operator: Operator,
    pub form: FormData,
}

impl FromRequest<SiteState> for OperatorForm {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &SiteState) -> ConsoleResult<Self> {
        let (mut parts, body) = req.into_parts();
        let operator = Operator::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let form = match Form::<Vec<(String, String)>>::from_request(req, state).await {
            Ok(Form(pairs)) => FormData(pairs),
            Err(e) => return Err(ConsoleError::Page(e.status(), e.body_text())),
        };
        if !same_secret(form.get(CSRF_FIELD).as_bytes(), operator.csrf.as_bytes()) {
            return Err(PageError::csrf().into());
        }
        Ok(Self { operator, form })
    }
}

/// Provisioning migrates a schema when no spare is ready, and deleting a tenant drops one:
/// seconds, not minutes.
pub const CONTROL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Asks control; 401 for an operator's request means their session is over.
pub async fn ask(
    state: &SiteState,
    operator: Option<&Operator>,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> ConsoleResult<Answer> {
    call(state, operator, method, path, body, CONTROL_TIMEOUT).await
}

/// [`ask`] without a body, waiting at most `timeout` (an import takes longer).
pub async fn ask_within(
    state: &SiteState,
    operator: Option<&Operator>,
    method: Method,
    path: &str,
    timeout: std::time::Duration,
) -> ConsoleResult<Answer> {
    call(state, operator, method, path, None, timeout).await
}

async fn call(
    state: &SiteState,
    operator: Option<&Operator>,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
    timeout: std::time::Duration,
) -> ConsoleResult<Answer> {
    let bearer = operator.map(|o| o.token.as_str());
    let client = control(state)?.with_timeout(timeout);
    let answer = client.call(method, path, bearer, body).await;
    answered(answer, operator.is_some(), path)
}

/// Control's API, when the site was given its socket.
fn control(state: &SiteState) -> ConsoleResult<Client> {
    match state.control_socket.as_deref() {
        Some(socket) => Ok(Client::new(socket)),
        None => {
            tracing::error!("operator console without a control socket (--control-socket)");
            Err(ConsoleError::Page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The operator console is not available here.".to_owned(),
            ))
        }
    }
}

/// Control's answer to a call, as the console takes it: 401 for an operator's request means
/// their session is over; no answer, a page saying to try again.
fn answered(
    answer: Result<Answer, CallError>,
    operator: bool,
    path: &str,
) -> ConsoleResult<Answer> {
    match answer {
        Ok(a) if a.status.as_u16() == 401 && operator => Err(ConsoleError::Login),
        Ok(a) => Ok(a),
        Err(e) => {
            tracing::error!(error = %e, %path, "operator console: control failed");
            Err(ConsoleError::unavailable())
        }
    }
}

/// Messages a redirect may ask the next page to show (`?notice=`): a fixed list.
pub fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "logged_out" => "You have logged out.",
        "created" => "The pharmacy was created.",
        "suspended" => "The pharmacy is suspended: its addresses answer 403 until it is resumed.",
        "resumed" => "The pharmacy is active again.",
        "deleted" => "The pharmacy and all its data were deleted.",
        "domain_added" => "The domain was added.",
        "domain_removed" => "The domain was removed.",
        "policy" => "The worker policy was changed.",
        "imported" => "The pharmacy was imported: its staff log in with their old passwords.",
        "import_cancelled" => "The import was cancelled; the uploaded file was removed.",
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    pharmacy: &'static str,
    css: &'static str,
    notice: Option<&'static str>,
    token: String,
    form: FormState,
}

fn login_page(
    headers: &HeaderMap,
    status: StatusCode,
    form: FormState,
    notice: Option<&'static str>,
) -> ConsoleResult {
    let (token, cookie) = form_token(headers);
    let page = LoginPage {
        pharmacy: SITE,
        css: apotheca_web::assets::url("app.css"),
        notice,
        token,
        form,
    };
    Ok(public_page(status, &page, cookie)?)
}

async fn login_form(headers: HeaderMap, Query(q): Query<NoticeQuery>) -> ConsoleResult {
    let notice = q.notice.as_deref().and_then(notice_text);
    login_page(&headers, StatusCode::OK, FormState::default(), notice)
}

fn session_cookie(token: &str, headers: &HeaderMap, max_age: Option<u64>) -> String {
    let secure = if secure(headers) { "; Secure" } else { "" };
    let age = max_age.map_or(String::new(), |s| format!("; Max-Age={s}"));
    format!("{OPERATOR_COOKIE}={token}; Path=/operator; HttpOnly; SameSite=Lax{age}{secure}")
}

async fn login(
    State(state): State<SiteState>,
    headers: HeaderMap,
    PublicForm(data): PublicForm,
) -> ConsoleResult {
    let mut form = FormState::from_data(&data).with("password", "");
    for (name, message) in [
        ("username", "Give your username."),
        ("password", "Give your password."),
    ] {
        if data.get(name).is_empty() {
            form.invalid(name, message);
        }
    }
    if form.has_errors() {
        return login_page(&headers, StatusCode::UNPROCESSABLE_ENTITY, form, None);
    }
    let body = serde_json::json!({
        "username": data.get("username"),
        "password": data.get("password"),
        "address": client_address(&headers),
    });
    let answer = ask(
        &state,
        None,
        Method::POST,
        "/v1/operators/login",
        Some(&body),
    )
    .await?;
    match answer.status.as_u16() {
        200 => {
            let json = answer.json();
            let token = json["token"].as_str().unwrap_or_default();
            if token.is_empty() {
                return Err(ConsoleError::unavailable());
            }
            let mut response = see_other("/operator/tenants");
            if let Ok(value) = HeaderValue::from_str(&session_cookie(token, &headers, None)) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            Ok(response)
        }
        401 | 429 => {
            form.error = Some(answer.message_or("Wrong username or password."));
            let status = answer.status;
            let mut response = login_page(&headers, status, form, None)?;
            let wait = answer.json()["error"]["retry_after"].as_u64();
            if let Some(value) = wait.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Ok(response)
        }
        _ => Err(ConsoleError::from_answer(&answer)),
    }
}

async fn logout(
    State(state): State<SiteState>,
    headers: HeaderMap,
    OperatorForm { operator, .. }: OperatorForm,
) -> ConsoleResult {
    // A session already over is logged out all the same.
    match ask(
        &state,
        Some(&operator),
        Method::POST,
        "/v1/operators/logout",
        None,
    )
    .await
    {
        Ok(_) | Err(ConsoleError::Login) => {}
        Err(e) => return Err(e),
    }
    let mut response = see_other("/operator/login?notice=logged_out");
    if let Ok(value) = HeaderValue::from_str(&session_cookie("", &headers, Some(0))) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_follow_the_session() {
        assert_eq!(csrf_of("a"), csrf_of("a"));
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert_eq!(csrf_of("a").len(), 32);
        let h = HeaderMap::new();
        assert_eq!(
            session_cookie("t", &h, None),
            "apotheca_operator=t; Path=/operator; HttpOnly; SameSite=Lax"
        );
    }
}
