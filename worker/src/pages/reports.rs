//! Reports (admin, pharmacist): daily sales, sales over a range, top sellers, stock on hand
//! and its value, stock by supplier; each page reads the same queries as the API and links
//! the API's CSV download of the same report (the session cookie authorises a GET).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use rust_decimal::Decimal;

use super::fields;
use super::session::Viewer;
use super::view::Chrome;
use crate::api::reports::{
    self as api, Daily, DaySales, Params, StockRow, SupplierStock, TopSeller,
};
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_web::error::{ok, render, PageResult};
use apotheca_web::form::{url_encode, FormState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/reports", get(index))
        .route("/reports/daily", get(daily))
        .route("/reports/sales", get(sales))
        .route("/reports/top-sellers", get(top_sellers))
        .route("/reports/stock", get(stock))
        .route("/reports/stock-by-supplier", get(stock_by_supplier))
}

/// The API's CSV of `report` with the page's parameters.
fn csv_href(report: &str, params: &[(&str, &str)]) -> String {
    let mut query: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url_encode(v)))
        .collect();
    query.push("format=csv".to_owned());
    format!("/api/v1/reports/{report}?{}", query.join("&"))
}

#[derive(Template)]
#[template(path = "reports/index.html")]
struct IndexPage {
    chrome: Chrome,
}

async fn index(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.require(Area::Reports)?;
    let chrome = Chrome::new(&state, &viewer, "/reports", None).await?;
    ok(&IndexPage { chrome })
}

#[derive(Template)]
#[template(path = "reports/daily.html")]
struct DailyPage {
    chrome: Chrome,
    form: FormState,
    d: Option<Daily>,
    csv: String,
}

async fn daily(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<Params>,
) -> PageResult {
    viewer.require(Area::Reports)?;
    let chrome = Chrome::new(&state, &viewer, "/reports", None).await?;
    let raw = p.date.clone().unwrap_or_default();
    let mut form = FormState::default().with("date", raw.clone());
    let (d, status) = match api::opt_date("date", p.date.as_deref()) {
        Ok(date) => {
            let date = date.unwrap_or(chrome.today);
            form = form.with("date", date.to_string());
            let d = api::daily_report(&**state.db().await?, date).await?;
            (Some(d), StatusCode::OK)
        }
        Err(e) => (None, fields::on_form(e, &mut form, &["date"])?),
    };
    let csv = csv_href("daily", &[("date", form.v("date"))]);
    render(
        status,
        &DailyPage {
            chrome,
            form,
            d,
            csv,
        },
    )
}

#[derive(Template)]
#[template(path = "reports/sales.html")]
struct SalesPage {
    chrome: Chrome,
    form: FormState,
    days: Vec<DaySales>,
    totals: (i64, Decimal, Decimal),
    csv: String,
}

async fn sales(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<Params>,
) -> PageResult {
    viewer.require(Area::Reports)?;
    let chrome = Chrome::new(&state, &viewer, "/reports", None).await?;
    let mut form = FormState::default()
        .with_opt("from", p.from.clone())
        .with_opt("to", p.to.clone());
    let (days, status) = match p.range(chrome.today) {
        Ok((from, to)) => {
            form = form
                .with("from", from.to_string())
                .with("to", to.to_string());
            let days = api::sales_by_day(&**state.db().await?, from, to, None).await?;
            (days, StatusCode::OK)
        }
        Err(e) => (Vec::new(), fields::on_form(e, &mut form, &["from", "to"])?),
    };
    let totals = api::day_totals(&days);
    let csv = csv_href("sales", &[("from", form.v("from")), ("to", form.v("to"))]);
    render(
        status,
        &SalesPage {
            chrome,
            form,
            days,
            totals,
            csv,
        },
    )
}

#[derive(Template)]
#[template(path = "reports/top.html")]
struct TopPage {
    chrome: Chrome,
    form: FormState,
    items: Vec<TopSeller>,
    csv: String,
}

async fn top_sellers(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<Params>,
) -> PageResult {
    viewer.require(Area::Reports)?;
    let chrome = Chrome::new(&state, &viewer, "/reports", None).await?;
    let mut form = FormState::default()
        .with_opt("from", p.from.clone())
        .with_opt("to", p.to.clone())
        .with_opt("limit", p.limit.clone());
    let asked = p
        .limit()
        .and_then(|limit| Ok((limit, p.range(chrome.today)?)));
    let (items, status) = match asked {
        Ok((limit, (from, to))) => {
            form = form
                .with("from", from.to_string())
                .with("to", to.to_string())
                .with("limit", limit.to_string());
            let items = api::top_sellers(&**state.db().await?, from, to, limit, None).await?;
            (items, StatusCode::OK)
        }
        Err(e) => (
            Vec::new(),
            fields::on_form(e, &mut form, &["from", "to", "limit"])?,
        ),
    };
    let csv = csv_href(
        "top-sellers",
        &[
            ("from", form.v("from")),
            ("to", form.v("to")),
            ("limit", form.v("limit")),
        ],
    );
    render(
        status,
        &TopPage {
            chrome,
            form,
            items,
            csv,
        },
    )
}

#[derive(Template)]
#[template(path = "reports/stock.html")]
struct StockPage {
    chrome: Chrome,
    items: Vec<StockRow>,
    totals: (i64, i64, Decimal),
    csv: String,
}

async fn stock(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.require(Area::Reports)?;
    let chrome = Chrome::new(&state, &viewer, "/reports", None).await?;
    let items = api::stock_rows(&**state.db().await?).await?;
    let totals = api::stock_totals(&items);
    ok(&StockPage {
        chrome,
        items,
        totals,
        csv: csv_href("stock", &[]),
    })
}

#[derive(Template)]
#[template(path = "reports/by_supplier.html")]
struct BySupplierPage {
    chrome: Chrome,
    items: Vec<SupplierStock>,
    totals: (i64, Decimal),
    csv: String,
}

async fn stock_by_supplier(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.require(Area::Reports)?;
    let chrome = Chrome::new(&state, &viewer, "/reports", None).await?;
    let items = api::supplier_stock_rows(&**state.db().await?).await?;
    let totals = api::supplier_stock_totals(&items);
    ok(&BySupplierPage {
        chrome,
        items,
        totals,
        csv: csv_href("stock-by-supplier", &[]),
    })
}

#[cfg(test)]
mod tests {
    use super::csv_href;

    #[test]
    fn csv_links_keep_the_parameters() {
        assert_eq!(
            csv_href("sales", &[("from", "2026-01-01"), ("to", "")]),
            "/api/v1/reports/sales?from=2026-01-01&format=csv"
        );
        assert_eq!(csv_href("stock", &[]), "/api/v1/reports/stock?format=csv");
    }
}
