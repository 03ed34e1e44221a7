//! Reading form fields the API takes as typed JSON (whole numbers, amounts, dates): a value
//! that does not parse gets its message next to its field, and the form is shown again.
//! Everything else (lengths, ranges, rules) is checked by the same code as the API's.

use std::str::FromStr;

use axum::http::StatusCode;
use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::view::is_page_error;
use crate::http::error::ApiError;
use apotheca_web::error::{PageError, PageResult};
use apotheca_web::form::{FormData, FormState};

/// A whole number; blank is `None`.
pub fn int(data: &FormData, form: &mut FormState, name: &str, label: &str) -> Option<i64> {
    let raw = data.get(name).trim();
    if raw.is_empty() {
        return None;
    }
    match raw.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            form.invalid(name, format!("{label} must be a whole number"));
            None
        }
    }
}

/// An amount such as 12.50; blank is `None`.
pub fn amount(data: &FormData, form: &mut FormState, name: &str, label: &str) -> Option<Decimal> {
    let raw = data.get(name).trim();
    if raw.is_empty() {
        return None;
    }
    match Decimal::from_str(raw) {
        Ok(d) => Some(d),
        Err(_) => {
            form.invalid(name, format!("{label} must be an amount such as 12.50"));
            None
        }
    }
}

/// A value that is not a date YYYY-MM-DD.
#[derive(Debug, PartialEq, Eq)]
pub struct BadDate;

/// A date YYYY-MM-DD (what date inputs send); blank is `None`.
pub fn date(raw: &str) -> Result<Option<NaiveDate>, BadDate> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| BadDate)
}

/// An error from the domain code: on the form (its status returned) when what was typed can
/// fix it, else as a page of its own.
pub fn on_form(e: ApiError, form: &mut FormState, fields: &[&str]) -> PageResult<StatusCode> {
    if !fits_form(&e) {
        return Err(PageError::from(e));
    }
    form.fail(e.field.as_deref(), &e.message, fields);
    Ok(e.status)
}

/// Whether an error is shown on the form (what was typed can fix it, or trying again can)
/// rather than as a page of its own.
pub fn fits_form(e: &ApiError) -> bool {
    !is_page_error(e) && (e.status.is_client_error() || e.status == StatusCode::SERVICE_UNAVAILABLE)
}

/// `"true"` or `"false"` from an activate/deactivate button.
pub fn flag(data: &FormData, name: &str) -> PageResult<bool> {
    match data.get(name) {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::bad_request(format!("{name} must be true or false")).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_or_marks_the_field() {
        let data = FormData(vec![
            ("n".into(), " 12 ".into()),
            ("bad".into(), "1x".into()),
            ("money".into(), "3.5".into()),
        ]);
        let mut form = FormState::default();
        assert_eq!(int(&data, &mut form, "n", "N"), Some(12));
        assert_eq!(int(&data, &mut form, "missing", "M"), None);
        assert!(!form.has_errors());
        assert_eq!(int(&data, &mut form, "bad", "Bad"), None);
        assert_eq!(form.err("bad"), Some("Bad must be a whole number"));
        assert_eq!(
            amount(&data, &mut form, "money", "M"),
            Some(Decimal::new(35, 1))
        );
        assert_eq!(date("2026-02-30"), Err(BadDate));
        assert_eq!(date(""), Ok(None));
        assert!(date("2026-02-28").unwrap().is_some());
    }

    #[test]
    fn errors_go_where_they_can_be_fixed() {
        let mut form = FormState::default();
        let status = on_form(
            ApiError::invalid("name", "name is required"),
            &mut form,
            &["name"],
        );
        assert_eq!(status.unwrap(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(form.err("name"), Some("name is required"));
        assert!(on_form(ApiError::not_found("supplier"), &mut form, &["name"]).is_err());
        assert!(on_form(ApiError::internal(), &mut form, &["name"]).is_err());
        let other = on_form(ApiError::conflict("x", "taken"), &mut form, &["name"]);
        assert_eq!(other.unwrap(), StatusCode::CONFLICT);
        assert_eq!(form.error.as_deref(), Some("taken"));
    }
}
