//! Untrusted input becomes valid values here: trimmed bounded text, emails, phone numbers,
//! money and quantities as types of their own ([`Money`], [`Quantity`]), and pages. Every
//! parser names the field it refuses, so the API can answer 422 with `field` set.

use bytes::BytesMut;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

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

/// An amount of money as the books keep it: exact, at least zero, at most two decimal places,
/// within numeric(14,2). Only [`Money::parse`] (input, refused with the field's name) and
/// [`Money::checked`] (a computed amount, rounded to cents) make one, so a `Money` is always
/// valid; it binds as a numeric parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Money(Decimal);

impl Money {
    /// The largest amount a numeric(14,2) column holds.
    pub const MAX: Money = Money(Decimal::from_parts(276_447_231, 23_283, 0, false, 2));

    /// Checks `value` (the refusal names `field`).
    pub fn parse(field: &str, value: Decimal) -> Result<Money> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(Error::invalid(field, format!("{field} cannot be negative")));
        }
        if value.normalize().scale() > 2 {
            return Err(Error::invalid(
                field,
                format!("{field} has more than two decimal places"),
            ));
        }
        if value > Self::MAX.0 {
            return Err(Error::invalid(field, format!("{field} is too large")));
        }
        Ok(Money(value.round_dp(2)))
    }

    /// A computed amount (a total, a line's value) if it is one the books can keep.
    pub fn checked(value: Decimal) -> Option<Money> {
        (!value.is_sign_negative() && value <= Self::MAX.0).then(|| Money(value.round_dp(2)))
    }

    pub fn get(self) -> Decimal {
        self.0
    }

    /// This amount `quantity` times (a line's value; it may exceed what one column holds).
    pub fn times(self, quantity: Quantity) -> Decimal {
        self.0 * Decimal::from(quantity.0)
    }
}

/// The most units one line or adjustment may move.
pub const MAX_QUANTITY: i64 = 1_000_000;

/// A number of units one line or adjustment moves: 1..=[`MAX_QUANTITY`]. Only
/// [`Quantity::parse`] makes one; it binds as an integer parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(i32);

impl Quantity {
    /// Checks `value` (the refusal names `field`).
    pub fn parse(field: &str, value: i64) -> Result<Quantity> {
        if !(1..=MAX_QUANTITY).contains(&value) {
            return Err(Error::invalid(
                field,
                format!("{field} must be between 1 and {MAX_QUANTITY}"),
            ));
        }
        Ok(Quantity(value as i32))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// Both bind as their inner value.
macro_rules! to_sql_as_inner {
    ($t:ty, $inner:ty) => {
        impl ToSql for $t {
            fn to_sql(
                &self,
                ty: &Type,
                out: &mut BytesMut,
            ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.0.to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <$inner as ToSql>::accepts(ty)
            }

            to_sql_checked!();
        }
    };
}
to_sql_as_inner!(Money, Decimal);
to_sql_as_inner!(Quantity, i32);

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
        let money = |s: &str| Money::parse("price", d(s)).map(Money::get);
        assert_eq!(money("12.50").unwrap(), d("12.50"));
        assert_eq!(money("12.500").unwrap(), d("12.50"));
        assert!(money("12.505").is_err());
        assert!(money("-1").is_err());
        assert_eq!(Money::MAX.get(), d("999999999999.99"));
        assert_eq!(money("999999999999.99").unwrap(), Money::MAX.get());
        assert!(money("1000000000000").is_err());
        assert_eq!(Money::checked(d("12.5")), Some(Money(d("12.5"))));
        assert_eq!(Money::checked(d("1000000000000")), None);
        assert_eq!(Money::checked(d("-0.01")), None);
        assert!(
            Quantity::parse("q", 0).is_err()
                && Quantity::parse("q", 1_000_001).is_err()
                && Quantity::parse("q", 1_000_000).is_ok()
                && Quantity::parse("q", 5).map(Quantity::get).ok() == Some(5)
        );
        assert_eq!(like_prefix("50%_a"), "50\\%\\_a%");
        let p = Page {
            page: 3,
            per_page: 500,
        };
        assert_eq!((p.limit(), p.offset()), (200, 400));
    }
}
