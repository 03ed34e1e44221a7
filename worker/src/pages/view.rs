//! What every page shows around its content ([`Chrome`]: the pharmacy's letterhead, the menu
//! for the user's role, the CSRF token, a notice), paging, and how money, dates and times are
//! written. Rendering, forms and their state are `apotheca_web`'s.

use axum::http::StatusCode;
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::session::Viewer;
use crate::http::error::ApiError;
use crate::state::AppState;
use apotheca_pharmacy::accounts::{Area, Role};
use apotheca_pharmacy::company;
use apotheca_web::error::PageResult;
use apotheca_web::form::url_encode;

/// A menu entry.
#[derive(Debug, Clone)]
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The menu, in order, with the area each entry needs.
const MENU: [(&str, &str, Area); 11] = [
    ("/dashboard", "Dashboard", Area::Dashboard),
    ("/counter", "Counter", Area::Counter),
    ("/invoices", "Invoices", Area::Invoices),
    ("/customers", "Customers", Area::Customers),
    ("/medicines", "Medicines", Area::Medicines),
    ("/suppliers", "Suppliers", Area::Suppliers),
    ("/receipts", "Stock in", Area::Receipts),
    ("/alerts", "Alerts", Area::Alerts),
    ("/reports", "Reports", Area::Reports),
    ("/users", "Users", Area::Users),
    ("/settings", "Settings", Area::Company),
];

/// Only what `role` may use.
pub fn menu(role: Role, current: &str) -> Vec<NavItem> {
    MENU.iter()
        .filter(|(_, _, area)| apotheca_pharmacy::accounts::may(role, *area))
        .map(|&(href, label, _)| NavItem {
            href,
            label,
            current: href == current,
        })
        .collect()
}

/// Messages a redirect may ask the next page to show (`?notice=`): a fixed list, so a link
/// can never make the page say something else.
pub fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "saved" => "Saved.",
        "created" => "Created.",
        "password" => "Your password was changed.",
        "reset" => "Your new password is set. Log in with it.",
        "reset_sent" => "If that account exists and has an email address, a reset link is on its way. It works for one hour.",
        "logged_out" => "You have logged out.",
        "received" => "The stock was received.",
        "returned" => "The return was recorded and the refund is shown below.",
        "voided" => "The invoice was voided and its stock put back.",
        "activated" => "Activated.",
        "deactivated" => "Deactivated.",
        "user_password" => "The password was set; that user's sessions have ended.",
        _ => return None,
    })
}

/// The page around the content.
pub struct Chrome {
    pub username: String,
    pub role: &'static str,
    pub nav: Vec<NavItem>,
    pub csrf: String,
    pub notice: Option<&'static str>,
    /// The company name, else "Apotheca".
    pub pharmacy: String,
    pub currency: String,
    /// The database's offset from UTC now (its time zone decides what "today" is).
    offset: FixedOffset,
    pub today: NaiveDate,
    pub css: &'static str,
    pub js: &'static str,
}

impl Chrome {
    /// The chrome of a page in the menu section `section`, with the notice `?notice=` asks for.
    pub async fn new(
        state: &AppState,
        viewer: &Viewer,
        section: &str,
        notice: Option<&str>,
    ) -> PageResult<Self> {
        let db = state.db().await?;
        let letterhead = company::letterhead(&db).await?;
        Ok(Self {
            username: viewer.auth.username.clone(),
            role: viewer.auth.role.as_str(),
            nav: menu(viewer.auth.role, section),
            csrf: viewer.csrf.clone(),
            notice: notice.and_then(notice_text),
            pharmacy: letterhead.name,
            currency: letterhead.currency,
            offset: letterhead.offset,
            today: letterhead.today,
            css: apotheca_web::assets::url("app.css"),
            js: apotheca_web::assets::url("app.js"),
        })
    }

    /// "NPR 1,234.50".
    pub fn money(&self, amount: &Decimal) -> String {
        format!("{} {}", self.currency, amount_text(*amount))
    }

    /// "1,234.50" (no currency: for columns of amounts).
    pub fn amount(&self, amount: &Decimal) -> String {
        amount_text(*amount)
    }

    /// A rate as a percentage: 0.1300 is "13%", 0.125 "12.5%".
    pub fn percent(&self, rate: &Decimal) -> String {
        format!("{}%", (*rate * Decimal::ONE_HUNDRED).normalize())
    }

    /// "2026-03-01 14:05", in the database's time zone.
    pub fn time(&self, at: &DateTime<Utc>) -> String {
        at.with_timezone(&self.offset)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }

    /// Days from today to `day` (negative: past).
    pub fn days_until(&self, day: &NaiveDate) -> i64 {
        (*day - self.today).num_days()
    }
}

/// An amount with thousands separators and its two places: "1,234.50".
pub fn amount_text(amount: Decimal) -> String {
    let text = apotheca_pharmacy::money(amount).to_string();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (whole, cents) = digits.split_once('.').unwrap_or((digits, "00"));
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{cents}")
}

/// `?page=`: prev and next links that keep the other parameters.
pub struct Pager {
    pub page: i64,
    pub pages: i64,
    pub total: i64,
    pub prev: Option<String>,
    pub next: Option<String>,
}

impl Pager {
    pub fn new(path: &str, params: &[(&str, &str)], page: i64, per_page: i64, total: i64) -> Self {
        let page = page.max(1);
        let pages = ((total + per_page - 1) / per_page.max(1)).max(1);
        let link = |p: i64| {
            let mut query: Vec<String> = params
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("{k}={}", url_encode(v)))
                .collect();
            query.push(format!("page={p}"));
            format!("{path}?{}", query.join("&"))
        };
        Self {
            page,
            pages,
            total,
            prev: (page > 1).then(|| link(page - 1)),
            next: (page < pages).then(|| link(page + 1)),
        }
    }
}

/// The status a form shown again answers with: the error's, or 422 for a form refused
/// before it reached the domain code.
pub fn form_status(e: Option<&ApiError>) -> StatusCode {
    e.map_or(StatusCode::UNPROCESSABLE_ENTITY, |e| e.status)
}

/// Whether an error should be shown as its own page rather than on the form (nothing the
/// user typed can fix it).
pub fn is_page_error(e: &ApiError) -> bool {
    matches!(e.status.as_u16(), 401 | 403 | 404) && e.field.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn amounts() {
        let t = |s: &str| amount_text(Decimal::from_str(s).unwrap());
        assert_eq!(t("0"), "0.00");
        assert_eq!(t("12.5"), "12.50");
        assert_eq!(t("1234.56"), "1,234.56");
        assert_eq!(t("1234567"), "1,234,567.00");
        assert_eq!(t("-1000.1"), "-1,000.10");
        assert_eq!(t("999"), "999.00");
    }

    #[test]
    fn encoding_and_pages() {
        assert_eq!(url_encode("a b&c=/é"), "a%20b%26c%3D/%C3%A9");
        let p = Pager::new("/x", &[("q", "a b"), ("empty", "")], 2, 50, 120);
        assert_eq!(p.pages, 3);
        assert_eq!(p.prev.as_deref(), Some("/x?q=a%20b&page=1"));
        assert_eq!(p.next.as_deref(), Some("/x?q=a%20b&page=3"));
        assert!(Pager::new("/x", &[], 1, 50, 0).next.is_none());
    }

    #[test]
    fn menus_follow_roles() {
        let staff: Vec<_> = menu(Role::Staff, "/counter")
            .iter()
            .map(|n| n.href)
            .collect();
        assert_eq!(
            staff,
            [
                "/dashboard",
                "/counter",
                "/invoices",
                "/customers",
                "/alerts"
            ]
        );
        assert_eq!(menu(Role::Admin, "").len(), MENU.len());
        let pharmacist: Vec<_> = menu(Role::Pharmacist, "").iter().map(|n| n.href).collect();
        assert!(!pharmacist.contains(&"/users") && !pharmacist.contains(&"/settings"));
        assert!(menu(Role::Staff, "/counter")[1].current);
    }
}
