//! Users (admin only): list, add, edit (name, email, role, active), set a password. The
//! guards of `crate::api::users` apply: nobody deactivates or demotes themself or the last
//! active admin.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::fields;
use super::session::{Submitted, Viewer};
use super::view::{Chrome, Pager};
use crate::api::users::{self as api, NewUser, User, UserPatch};
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_pharmacy::values::Page;
use apotheca_web::error::{ok, render, see_other, PageResult};
use apotheca_web::form::FormState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list))
        .route("/users/new", get(new_form).post(create))
        .route("/users/{id}/edit", get(edit_form).post(update))
        .route("/users/{id}/password", post(set_password))
}

const PER_PAGE: i64 = 50;

fn roles() -> Vec<(String, String)> {
    [
        ("staff", "Staff: counter, own invoices, customers, alerts"),
        (
            "pharmacist",
            "Pharmacist: also medicines, suppliers, stock, returns, reports",
        ),
        ("admin", "Admin: everything"),
    ]
    .map(|(v, t)| (v.to_owned(), t.to_owned()))
    .to_vec()
}

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    page: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "users/list.html")]
struct ListPage {
    chrome: Chrome,
    items: Vec<User>,
    pager: Pager,
}

async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<ListParams>,
) -> PageResult {
    viewer.require(Area::Users)?;
    let chrome = Chrome::new(&state, &viewer, "/users", p.notice.as_deref()).await?;
    let page = Page {
        page: p.page.as_deref().and_then(|s| s.parse().ok()).unwrap_or(1),
        per_page: PER_PAGE,
    };
    let (total, items) = api::list(&**state.db().await?, page).await?;
    let pager = Pager::new("/users", &[], page.page, PER_PAGE, total);
    ok(&ListPage {
        chrome,
        items,
        pager,
    })
}

#[derive(Template)]
#[template(path = "users/new.html")]
struct NewPage {
    chrome: Chrome,
    form: FormState,
    roles: Vec<(String, String)>,
}

async fn new_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.require(Area::Users)?;
    let page = NewPage {
        chrome: Chrome::new(&state, &viewer, "/users", None).await?,
        form: FormState::default().with("role", "staff"),
        roles: roles(),
    };
    ok(&page)
}

async fn create(
    State(state): State<AppState>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Users)?;
    let body = NewUser {
        username: data.given("username"),
        password: data.given("password"),
        full_name: data.given("full_name"),
        email: data.given("email"),
        role: data.given("role"),
    };
    match api::create(&state, body).await {
        Ok(_) => Ok(see_other("/users?notice=created")),
        Err(e) => {
            let mut form = FormState::from_data(&data).with("password", "");
            let status = fields::on_form(
                e,
                &mut form,
                &["username", "password", "full_name", "email", "role"],
            )?;
            let page = NewPage {
                chrome: Chrome::new(&state, &viewer, "/users", None).await?,
                form,
                roles: roles(),
            };
            render(status, &page)
        }
    }
}

#[derive(Template)]
#[template(path = "users/edit.html")]
struct EditPage {
    chrome: Chrome,
    user: User,
    form: FormState,
    password: FormState,
    roles: Vec<(String, String)>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

async fn show_edit(
    state: &AppState,
    viewer: &Viewer,
    id: i64,
    status: StatusCode,
    notice: Option<&str>,
    form: Option<FormState>,
    password: FormState,
) -> PageResult {
    let user = api::load(&**state.db().await?, id).await?;
    let form = form.unwrap_or_else(|| {
        let form = FormState::default()
            .with("full_name", user.full_name.clone())
            .with_opt("email", user.email.clone())
            .with("role", user.role.as_str());
        if user.active {
            form.with("active", "on")
        } else {
            form
        }
    });
    let page = EditPage {
        chrome: Chrome::new(state, viewer, "/users", notice).await?,
        user,
        form,
        password,
        roles: roles(),
    };
    render(status, &page)
}

async fn edit_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    viewer.require(Area::Users)?;
    show_edit(
        &state,
        &viewer,
        id,
        StatusCode::OK,
        q.notice.as_deref(),
        None,
        FormState::default(),
    )
    .await
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Users)?;
    let body = UserPatch {
        full_name: data.given("full_name"),
        email: data.given("email"),
        role: data.given("role"),
        active: Some(data.ticked("active")),
    };
    match api::update(&state, &viewer.auth, id, body).await {
        Ok(_) => Ok(see_other(&format!("/users/{id}/edit?notice=saved"))),
        Err(e) => {
            let mut form = FormState::from_data(&data);
            let status = fields::on_form(e, &mut form, &["full_name", "email", "role"])?;
            show_edit(
                &state,
                &viewer,
                id,
                status,
                None,
                Some(form),
                FormState::default(),
            )
            .await
        }
    }
}

async fn set_password(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Users)?;
    let password = data.get("new_password").to_owned();
    match api::set_password(&state, &viewer.auth, id, password).await {
        Ok(()) => Ok(see_other(&format!("/users/{id}/edit?notice=user_password"))),
        Err(e) => {
            let mut form = FormState::default();
            let status = fields::on_form(e, &mut form, &["new_password"])?;
            show_edit(&state, &viewer, id, status, None, None, form).await
        }
    }
}
