//! Logging in and out, resetting a forgotten password, changing one's own: the pages over
//! `crate::api::auth`'s functions (the same throttling, sessions and reset links as the API).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::session::{Submitted, Viewer};
use super::view::{self, Chrome};
use crate::api::auth as accounts_api;
use crate::http::auth::SESSION_COOKIE;
use crate::http::error::ApiError;
use crate::state::AppState;
use apotheca_web::error::public_page;
use apotheca_web::error::{ok, render, see_other, PageResult};
use apotheca_web::form::{form_token, is_local_path, FormState, PublicForm};
use apotheca_web::request::cookie_value;

/// `/`: the dashboard when logged in, else the login page.
pub async fn home(headers: HeaderMap) -> Response {
    if cookie_value(&headers, SESSION_COOKIE).is_some() {
        see_other("/dashboard")
    } else {
        see_other("/login")
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    pub notice: Option<String>,
    pub next: Option<String>,
    pub token: Option<String>,
}

/// The pages shown before logging in: the pharmacy's name and the stylesheet, without a
/// session.
async fn pharmacy_name(state: &AppState) -> String {
    let name = async {
        let company = crate::api::admin::company(&**state.db().await?).await?;
        Ok::<_, ApiError>(company.name)
    };
    name.await
        .ok()
        .flatten()
        .unwrap_or_else(|| "Apotheca".to_owned())
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    pharmacy: String,
    css: &'static str,
    notice: Option<&'static str>,
    token: String,
    form: FormState,
}

/// A `?next=` worth going back to.
fn next_of(raw: Option<&str>) -> Option<String> {
    raw.filter(|n| is_local_path(n)).map(str::to_owned)
}

pub async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let (token, cookie) = form_token(&headers);
    let form = FormState::default().with_opt("next", next_of(q.next.as_deref()));
    let page = LoginPage {
        pharmacy: pharmacy_name(&state).await,
        css: apotheca_web::assets::url("app.css"),
        notice: q.notice.as_deref().and_then(view::notice_text),
        token,
        form,
    };
    public_page(StatusCode::OK, &page, cookie)
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    PublicForm(data): PublicForm,
) -> PageResult {
    let username = data.get("username");
    match accounts_api::log_in(&state, &headers, username, data.get("password")).await {
        Ok(done) => {
            let to = next_of(Some(data.get("next"))).unwrap_or_else(|| "/dashboard".to_owned());
            let mut response = see_other(&to);
            if let Ok(value) = accounts_api::session_cookie(&done.token, &headers).parse() {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            Ok(response)
        }
        Err(e) if matches!(e.status.as_u16(), 401 | 429) => {
            let mut form = FormState::from_data(&data).with("password", "");
            form.error = Some(if e.status == StatusCode::UNAUTHORIZED {
                "Wrong username or password.".to_owned()
            } else {
                "Too many failed logins; try again later.".to_owned()
            });
            let (token, cookie) = form_token(&headers);
            let page = LoginPage {
                pharmacy: pharmacy_name(&state).await,
                css: apotheca_web::assets::url("app.css"),
                notice: None,
                token,
                form,
            };
            let mut response = public_page(e.status, &page, cookie)?;
            if let Some(value) = e.retry_after.and_then(|s| s.to_string().parse().ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Submitted { viewer, .. }: Submitted,
) -> PageResult {
    accounts_api::log_out(&state, &viewer.auth).await?;
    let mut response = see_other("/login?notice=logged_out");
    if let Ok(value) = accounts_api::expired_cookie(&headers).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Template)]
#[template(path = "reset_request.html")]
struct ResetRequestPage {
    pharmacy: String,
    css: &'static str,
    notice: Option<&'static str>,
    token: String,
    form: FormState,
}

pub async fn reset_request_form(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let (token, cookie) = form_token(&headers);
    let page = ResetRequestPage {
        pharmacy: pharmacy_name(&state).await,
        css: apotheca_web::assets::url("app.css"),
        notice: None,
        token,
        form: FormState::default(),
    };
    public_page(StatusCode::OK, &page, cookie)
}

pub async fn reset_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    PublicForm(data): PublicForm,
) -> PageResult {
    let login = data.get("login").trim();
    if login.is_empty() || login.len() > 254 {
        let mut form = FormState::from_data(&data);
        form.invalid("login", "Give your username or email address.");
        let (token, cookie) = form_token(&headers);
        let page = ResetRequestPage {
            pharmacy: pharmacy_name(&state).await,
            css: apotheca_web::assets::url("app.css"),
            notice: None,
            token,
            form,
        };
        return public_page(StatusCode::UNPROCESSABLE_ENTITY, &page, cookie);
    }
    accounts_api::send_reset_link(&state, &headers, login).await?;
    Ok(see_other("/login?notice=reset_sent"))
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage {
    pharmacy: String,
    css: &'static str,
    notice: Option<&'static str>,
    token: String,
    form: FormState,
}

/// The form behind a reset link (`?token=`); the token is checked when the form is sent.
pub async fn reset_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let (token, cookie) = form_token(&headers);
    let page = ResetPage {
        pharmacy: pharmacy_name(&state).await,
        css: apotheca_web::assets::url("app.css"),
        notice: None,
        token,
        form: FormState::default().with_opt("token", q.token),
    };
    public_page(StatusCode::OK, &page, cookie)
}

pub async fn reset(
    State(state): State<AppState>,
    headers: HeaderMap,
    PublicForm(data): PublicForm,
) -> PageResult {
    let new_password = data.get("new_password");
    let result = if new_password != data.get("confirm_password") {
        Err(ApiError::invalid(
            "confirm_password",
            "The two passwords differ.",
        ))
    } else {
        accounts_api::reset_password(&state, data.get("token"), new_password).await
    };
    match result {
        Ok(()) => Ok(see_other("/login?notice=reset")),
        Err(e) if e.status.is_client_error() => {
            let mut form = FormState::from_data(&data)
                .with("new_password", "")
                .with("confirm_password", "");
            form.fail(
                e.field.as_deref(),
                &e.message,
                &["new_password", "confirm_password"],
            );
            let (token, cookie) = form_token(&headers);
            let page = ResetPage {
                pharmacy: pharmacy_name(&state).await,
                css: apotheca_web::assets::url("app.css"),
                notice: None,
                token,
                form,
            };
            public_page(e.status, &page, cookie)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    chrome: Chrome,
    form: FormState,
}

pub async fn password_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let page = PasswordPage {
        chrome: Chrome::new(&state, &viewer, "", None).await?,
        form: FormState::default(),
    };
    ok(&page)
}

pub async fn change_password(
    State(state): State<AppState>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    let new_password = data.get("new_password");
    let result = if new_password != data.get("confirm_password") {
        Err(ApiError::invalid(
            "confirm_password",
            "The two new passwords differ.",
        ))
    } else {
        accounts_api::change_password(
            &state,
            &viewer.auth,
            data.get("current_password"),
            new_password,
        )
        .await
    };
    match result {
        Ok(()) => Ok(see_other("/dashboard?notice=password")),
        Err(e) if e.status.is_client_error() => {
            let mut form = FormState::default();
            form.fail(
                e.field.as_deref(),
                &e.message,
                &["current_password", "new_password", "confirm_password"],
            );
            let page = PasswordPage {
                chrome: Chrome::new(&state, &viewer, "", None).await?,
                form,
            };
            render(e.status, &page)
        }
        Err(e) => Err(e.into()),
    }
}
