//! Invoices (every role; staff see their own): the list by date, one invoice with its lines,
//! batches and returns, and the corrections (admin, pharmacist): a return of some units,
//! or voiding the whole invoice, by the same domain code as the API.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use chrono::Days;
use serde::Deserialize;

use super::fields;
use super::session::{Submitted, Viewer};
use super::view::{self, Chrome, Pager};
use crate::api::sales::{self as api, InvoiceFilter, Summary};
use crate::changes;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_pharmacy::invoices::{self, Invoice};
use apotheca_pharmacy::returns::{ReturnLine, ReturnRequest};
use apotheca_pharmacy::values::Page;
use apotheca_web::error::{render, see_other, PageResult};
use apotheca_web::form::{FormData, FormState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/invoices", get(list))
        .route("/invoices/{id}", get(detail))
        .route("/invoices/{id}/return", post(post_return))
        .route("/invoices/{id}/void", post(void))
}

const PER_PAGE: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    from: Option<String>,
    to: Option<String>,
    status: Option<String>,
    page: Option<String>,
}

#[derive(Template)]
#[template(path = "invoices/list.html")]
struct ListPage {
    chrome: Chrome,
    form: FormState,
    items: Vec<Summary>,
    pager: Pager,
    own_only: bool,
}

async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<ListParams>,
) -> PageResult {
    viewer.require(Area::Invoices)?;
    let chrome = Chrome::new(&state, &viewer, "/invoices", None).await?;
    // A week up to today unless asked otherwise.
    let today = chrome.today;
    let week_ago = today.checked_sub_days(Days::new(6)).unwrap_or(today);
    let from_raw = p.from.clone().unwrap_or_else(|| week_ago.to_string());
    let to_raw = p.to.clone().unwrap_or_else(|| today.to_string());
    let status_raw = p.status.clone().unwrap_or_default();
    let mut form = FormState::default()
        .with("from", from_raw.clone())
        .with("to", to_raw.clone())
        .with("status", status_raw.clone());
    let mut date = |name: &str, raw: &str| match fields::date(raw) {
        Ok(d) => d,
        Err(fields::BadDate) => {
            form.invalid(name, "A date YYYY-MM-DD, or blank");
            None
        }
    };
    let (from, to) = (date("from", &from_raw), date("to", &to_raw));
    let filter = InvoiceFilter {
        from,
        to,
        status: Some(status_raw.clone()).filter(|s| !s.is_empty()),
        billed_by: viewer
            .auth
            .own_invoices_only()
            .then_some(viewer.auth.user_id),
    };
    let page = Page {
        page: p.page.as_deref().and_then(|s| s.parse().ok()).unwrap_or(1),
        per_page: PER_PAGE,
    };
    let (total, items) = if form.has_errors() {
        (0, Vec::new())
    } else {
        match api::list_of(&**state.db().await?, &filter, page).await {
            Ok(found) => found,
            Err(e) => {
                fields::on_form(e, &mut form, &["from", "to", "status"])?;
                (0, Vec::new())
            }
        }
    };
    let pager = Pager::new(
        "/invoices",
        &[
            ("from", &from_raw),
            ("to", &to_raw),
            ("status", &status_raw),
        ],
        page.page,
        PER_PAGE,
        total,
    );
    let status = if form.has_errors() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(
        status,
        &ListPage {
            chrome,
            form,
            items,
            pager,
            own_only: filter.billed_by.is_some(),
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "invoices/detail.html")]
struct DetailPage {
    chrome: Chrome,
    i: Invoice,
    may_return: bool,
    may_void: bool,
    /// The return form as sent (when it was refused).
    returning: FormState,
    voiding: FormState,
}

impl DetailPage {
    /// Units of a line that may still be returned.
    fn open(&self, line: &apotheca_pharmacy::invoices::Line) -> i64 {
        i64::from(line.quantity) - line.returned
    }

    fn any_open(&self) -> bool {
        self.i.lines.iter().any(|l| self.open(l) > 0)
    }
}

async fn show_detail(
    state: &AppState,
    viewer: &Viewer,
    id: i64,
    status: StatusCode,
    notice: Option<&str>,
    returning: FormState,
    voiding: FormState,
) -> PageResult {
    let own = viewer
        .auth
        .own_invoices_only()
        .then_some(viewer.auth.user_id);
    let i = invoices::load(&*state.db().await?, id, own).await?;
    let page = DetailPage {
        chrome: Chrome::new(state, viewer, "/invoices", notice).await?,
        i,
        may_return: viewer.may(Area::Returns),
        may_void: viewer.may(Area::Voids),
        returning,
        voiding,
    };
    render(status, &page)
}

async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    viewer.require(Area::Invoices)?;
    let returning = FormState::default().with("restock", "on");
    show_detail(
        &state,
        &viewer,
        id,
        StatusCode::OK,
        q.notice.as_deref(),
        returning,
        FormState::default(),
    )
    .await
}

/// The return the form asks for: `return_<line id>` units of each line (blank or 0 skips
/// the line), restocked unless the goods are damaged.
fn return_of(data: &FormData, form: &mut FormState) -> ReturnRequest {
    let restock = data.ticked("restock");
    let mut lines = Vec::new();
    for (name, value) in &data.0 {
        let Some(line_id) = name.strip_prefix("return_").and_then(|id| id.parse().ok()) else {
            continue;
        };
        match value.trim() {
            "" | "0" => {}
            raw => match raw.parse::<i64>() {
                Ok(quantity) => lines.push(ReturnLine {
                    invoice_line_id: line_id,
                    quantity,
                    restock,
                }),
                Err(_) => form.invalid(name, "A whole number of units"),
            },
        }
    }
    ReturnRequest {
        reason: data.get("reason").to_owned(),
        lines,
    }
}

async fn post_return(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Returns)?;
    let mut form = FormState::from_data(&data);
    let req = return_of(&data, &mut form);
    let status = if form.has_errors() {
        view::form_status(None)
    } else {
        let mut db = state.db().await?;
        match api::record_return(&mut db, viewer.auth.user_id, id, &req).await {
            Ok(_) => {
                drop(db);
                changes::data_changed(&state).await;
                return Ok(see_other(&format!("/invoices/{id}?notice=returned")));
            }
            Err(e) => {
                // Messages about lines are shown above the form: they name the line.
                fields::on_form(e, &mut form, &["reason"])?
            }
        }
    };
    show_detail(
        &state,
        &viewer,
        id,
        status,
        None,
        form,
        FormState::default(),
    )
    .await
}

async fn void(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Voids)?;
    let mut form = FormState::from_data(&data);
    let mut db = state.db().await?;
    let reason = data.get("void_reason");
    let status = match api::void_invoice(&mut db, viewer.auth.user_id, id, reason).await {
        Ok(()) => {
            drop(db);
            changes::data_changed(&state).await;
            return Ok(see_other(&format!("/invoices/{id}?notice=voided")));
        }
        Err(mut e) => {
            drop(db);
            // The page's field (the return form beside it has its own "reason").
            if e.field.as_deref() == Some("reason") {
                e.field = Some("void_reason".to_owned());
            }
            fields::on_form(e, &mut form, &["void_reason"])?
        }
    };
    let returning = FormState::default().with("restock", "on");
    show_detail(&state, &viewer, id, status, None, returning, form).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_lines_from_the_form() {
        let data = FormData(
            [
                ("return_7", "2"),
                ("return_8", ""),
                ("return_9", "0"),
                ("return_x", "1"),
                ("reason", "damaged box"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec(),
        );
        let mut form = FormState::default();
        let req = return_of(&data, &mut form);
        assert_eq!(req.lines.len(), 1);
        assert_eq!(
            (req.lines[0].invoice_line_id, req.lines[0].quantity),
            (7, 2)
        );
        assert!(!req.lines[0].restock, "restock is a ticked box");
        assert_eq!(req.reason, "damaged box");
        let bad = FormData(vec![("return_3".into(), "two".into())]);
        return_of(&bad, &mut form);
        assert!(form.err("return_3").is_some());
    }
}
