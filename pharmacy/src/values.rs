//! Untrusted input becomes valid values here: trimmed bounded text, emails, phone numbers,
//! money (exact decimals with at most two places), quantities and pages. Every parser names
//! the field it refuses, so the API can answer 422 with `field` set.

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::{Error, Result};

/// Required text: trimmed, 1..=max characters, no control characters.
pub fn text(field: &str, raw: &str, max: usize) -> Result<String> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(Error::invalid(field, format!("{field} is required")));
    }
    if value.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("{field} is longer than {max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::invalid(
            field,
            format!("{field} contains control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Optional text: absent or blank is `None`.
pub fn opt_text(field: &str, raw: Option<&str>, max: usize) -> Result<Option<String>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => text(field, v, max).map(Some),
    }
}

/// Optional email: one `@` with something on both sides, no spaces.
pub fn opt_email(field: &str, raw: Option<&str>) -> Result<Option<String>> {
    let Some(value) = opt_text(field, raw, 254)? else {
        return Ok(None);
    };
    let ok = value
        .split_once('@')
        .is_some_and(|(user, host)| !user.is_empty() && !host.is_empty() && !host.contains('@'))
        && !value.contains(char::is_whitespace);
    if ok {
        Ok(Some(value))
    } else {
        Err(Error::invalid(
            field,
            format!("{field} is not an email address"),
        ))
    }
}

/// Optional phone number, normalised to digits with an optional leading `+` (6 to 15 digits);
/// spaces, dashes, dots and brackets are dropped.
pub fn opt_phone(field: &str, raw: Option<&str>) -> Result<Option<String>> {
    let Some(value) = opt_text(field, raw, 50)? else {
        return Ok(None);
    };
    let plus = value.starts_with('+');
    let mut digits = String::new();
    for c in value.chars().skip(usize::from(plus)) {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => {
                return Err(Error::invalid(
                    field,
                    format!("{field} may hold digits, spaces, dashes and a leading +"),
                ))
            }
        }
    }
    if !(6..=15).contains(&digits.len()) {
        return Err(Error::invalid(
            field,
            format!("{field} needs 6 to 15 digits"),
        ));
    }
    Ok(Some(if plus { format!("+{digits}") } else { digits }))
}

/// The largest amount a numeric(14,2) column holds.
pub fn max_money() -> Decimal {
    Decimal::new(99_999_999_999_999, 2)
}

/// Money: exact, at least zero, at most two decimal places, within numeric(14,2).
pub fn money(field: &str, value: Decimal) -> Result<Decimal> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(Error::invalid(field, format!("{field} cannot be negative")));
    }
    if value.normalize().scale() > 2 {
        return Err(Error::invalid(
            field,
            format!("{field} has more than two decimal places"),
        ));
    }
    if value > max_money() {
        return Err(Error::invalid(field, format!("{field} is too large")));
    }
    Ok(value.round_dp(2))
}

/// The most units one line or adjustment may move.
pub const MAX_QUANTITY: i64 = 1_000_000;

/// A quantity of units: 1..=1,000,000.
pub fn quantity(field: &str, value: i64) -> Result<i32> {
    if !(1..=MAX_QUANTITY).contains(&value) {
        return Err(Error::invalid(
            field,
            format!("{field} must be between 1 and {MAX_QUANTITY}"),
        ));
    }
    Ok(value as i32)
}

/// `?page=&per_page=` (1-based; 50 per page by default, at most 200).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct Page {
    #[serde(deserialize_with = "lenient_int")]
    pub page: i64,
    #[serde(deserialize_with = "lenient_int")]
    pub per_page: i64,
}

/// A whole number given as a number or as a string: query strings reach a `#[serde(flatten)]`
/// struct as strings.
fn lenient_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Number(i64),
        Text(String),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a whole number"))),
    }
}

impl Default for Page {
    fn default() -> Self {
        Self {
            page: 1,
            per_page: 50,
        }
    }
}

impl Page {
    pub fn limit(&self) -> i64 {
        self.per_page.clamp(1, 200)
    }

    pub fn offset(&self) -> i64 {
        (self.page.max(1) - 1).saturating_mul(self.limit())
    }
}

/// Escapes `%`, `_` and `\` for a LIKE pattern.
pub fn like_prefix(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 1);
    for c in raw.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn parsers() {
        assert_eq!(text("name", "  Aspirin ", 10).unwrap(), "Aspirin");
        assert!(text("name", "   ", 10).is_err());
        assert!(text("name", "abcdefghijk", 10).is_err());
        assert_eq!(opt_text("x", Some(" "), 5).unwrap(), None);
        assert_eq!(
            opt_phone("phone", Some("+977 (1) 555-1234"))
                .unwrap()
                .as_deref(),
            Some("+97715551234")
        );
        assert!(opt_phone("phone", Some("12ab")).is_err());
        assert!(opt_email("email", Some("a@b")).unwrap().is_some());
        assert!(opt_email("email", Some("a b@c")).is_err());
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(money("price", d("12.50")).unwrap(), d("12.50"));
        assert_eq!(money("price", d("12.500")).unwrap(), d("12.50"));
        assert!(money("price", d("12.505")).is_err());
        assert!(money("price", d("-1")).is_err());
        assert!(money("price", d("1000000000000")).is_err());
        assert!(
            quantity("q", 0).is_err()
                && quantity("q", 1_000_001).is_err()
                && quantity("q", 5).is_ok()
        );
        assert_eq!(like_prefix("50%_a"), "50\\%\\_a%");
        let p = Page {
            page: 3,
            per_page: 500,
        };
        assert_eq!((p.limit(), p.offset()), (200, 400));
    }
}
