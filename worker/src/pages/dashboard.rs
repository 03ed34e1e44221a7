//! The dashboard (per role: staff see their own sales) with its 7-day chart drawn here as
//! inline SVG, and the alerts page.

use askama::Template;
use axum::extract::{Query, State};
use chrono::Datelike;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;

use super::session::Viewer;
use super::view::{self, amount_text, Chrome};
use crate::api::alerts::{self, Alerts};
use crate::api::dashboard::{self as dashboard_api, Dashboard};
use crate::api::reports::DaySales;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_web::error::{ok, render, PageResult};
use apotheca_web::form::FormState;

#[derive(Debug, Default, Deserialize)]
pub struct DashboardQuery {
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    d: Dashboard,
    chart: String,
    may_sell: bool,
    may_receive: bool,
    may_add_medicines: bool,
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<DashboardQuery>,
) -> PageResult {
    viewer.require(Area::Dashboard)?;
    let chrome = Chrome::new(&state, &viewer, "/dashboard", q.notice.as_deref()).await?;
    let d = dashboard_api::load(&**state.db().await?, &viewer.auth).await?;
    let chart = chart(&d.trend, &chrome.currency);
    ok(&DashboardPage {
        may_sell: viewer.may(Area::Counter),
        may_receive: viewer.may(Area::Receipts),
        may_add_medicines: viewer.may(Area::Medicines),
        chrome,
        d,
        chart,
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The days' sales totals as bars, a label under each (weekday and day) and the amount over
/// it; the tallest bar fills the height. Text comes from numbers and dates only, escaped all
/// the same.
pub fn chart(days: &[DaySales], currency: &str) -> String {
    const W: f64 = 560.0;
    const H: f64 = 220.0;
    const TOP: f64 = 24.0;
    const BOTTOM: f64 = 36.0;
    let n = days.len().max(1) as f64;
    let slot = W / n;
    let bar = slot * 0.6;
    let max = days
        .iter()
        .filter_map(|d| d.total.to_f64())
        .fold(0.0_f64, f64::max);
    let plot = H - TOP - BOTTOM;
    let summary: Vec<String> = days
        .iter()
        .map(|d| {
            format!(
                "{}: {} {} in {} sale(s)",
                d.date,
                currency,
                amount_text(d.total),
                d.count
            )
        })
        .collect();
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"chart-title chart-desc\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title id=\"chart-title\">Sales of the last {} days</title>\
         <desc id=\"chart-desc\">{}</desc>",
        days.len(),
        escape(&summary.join("; "))
    );
    svg.push_str(&format!(
        "<line x1=\"0\" y1=\"{y}\" x2=\"{W}\" y2=\"{y}\" class=\"axis\"/>",
        y = H - BOTTOM
    ));
    for (i, d) in days.iter().enumerate() {
        let value = d.total.to_f64().unwrap_or(0.0);
        let height = if max > 0.0 { plot * value / max } else { 0.0 };
        let x = slot * i as f64 + (slot - bar) / 2.0;
        let y = H - BOTTOM - height;
        let centre = slot * i as f64 + slot / 2.0;
        svg.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{height:.1}\" class=\"bar\"><title>{}</title></rect>",
            escape(&summary[i])
        ));
        svg.push_str(&format!(
            "<text x=\"{centre:.1}\" y=\"{:.1}\" class=\"value\">{}</text>",
            (y - 6.0).max(12.0),
            escape(&amount_text(d.total))
        ));
        svg.push_str(&format!(
            "<text x=\"{centre:.1}\" y=\"{:.1}\" class=\"day\">{} {}</text>",
            H - BOTTOM + 22.0,
            d.date.weekday(),
            d.date.day()
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[derive(Debug, Default, Deserialize)]
pub struct AlertsQuery {
    days: Option<String>,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    chrome: Chrome,
    a: Alerts,
    form: FormState,
    show_medicine_links: bool,
}

pub async fn alerts(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<AlertsQuery>,
) -> PageResult {
    viewer.require(Area::Alerts)?;
    let chrome = Chrome::new(&state, &viewer, "/alerts", None).await?;
    let mut form = FormState::default().with_opt("days", q.days.clone());
    let days = match alerts::days(q.days.as_deref()) {
        Ok(days) => days,
        Err(e) => {
            form.fail(e.field.as_deref(), &e.message, &["days"]);
            None
        }
    };
    let a = alerts::load(&*state.db().await?, days).await?;
    let status = if form.has_errors() {
        view::form_status(None)
    } else {
        axum::http::StatusCode::OK
    };
    render(
        status,
        &AlertsPage {
            chrome,
            a,
            form,
            show_medicine_links: viewer.may(Area::Medicines),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

    #[test]
    fn chart_draws_a_bar_per_day() {
        let day = |d: u32, total: i64| DaySales {
            date: NaiveDate::from_ymd_opt(2026, 3, d).unwrap(),
            count: 1,
            total: Decimal::new(total, 2),
            discount: Decimal::ZERO,
        };
        let svg = chart(&[day(1, 0), day(2, 5000), day(3, 10000)], "NPR");
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("100.00") && svg.contains("Tue 3"));
        // The tallest bar fills the plot (220 - 24 - 36 = 160).
        assert!(svg.contains("height=\"160.0\""));
        assert!(svg.contains("height=\"0.0\""));
        assert!(chart(&[], "NPR").starts_with("<svg"));
    }
}
