//! CSV output (RFC 4180) for the reports: a header row, CRLF line ends, fields quoted when
//! needed.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::http::error::{ApiError, ApiResult};

/// A field as CSV: quoted when it holds a comma, quote or line break. Text that a
/// spreadsheet would run as a formula (starting with = + - @ or a tab) gets a leading
/// apostrophe, since names come from users; numbers are left alone.
pub(crate) fn field(raw: &str) -> String {
    let formula =
        raw.starts_with(['=', '+', '-', '@', '\t', '\r']) && raw.parse::<Decimal>().is_err();
    let value = if formula {
        format!("'{raw}")
    } else {
        raw.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// A JSON value as CSV text: strings as they are (money serialises as a string),
/// numbers and booleans printed, null empty.
fn text(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A `text/csv` download named `<name>.csv` (names are built from dates, never input):
/// the header row `head` (column names, comma-separated), then for each item the fields
/// of its JSON form that `head` names.
pub(crate) fn table<T: Serialize>(name: &str, head: &str, items: &[T]) -> ApiResult<Response> {
    let mut out = format!("{head}\r\n");
    for item in items {
        let value = serde_json::to_value(item).map_err(|e| {
            tracing::error!(error = %e, "a report row does not serialise");
            ApiError::internal()
        })?;
        let fields: Vec<String> = head
            .split(',')
            .map(|h| field(&text(value.get(h))))
            .collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    let disposition = format!("attachment; filename=\"{name}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn quoting() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("=cmd()"), "'=cmd()");
        assert_eq!(field("-5"), "-5");
        assert_eq!(field("-12.50"), "-12.50");
    }
}
