//! Apotheca's pharmacy domain (`apotheca-pharmacy`), with no HTTP in it: the rules the JSON
//! API, the HTML pages and `apotheca seed-data` share. Every change of stock or money happens
//! here, inside one transaction each, with rows locked in a fixed order (batches by id, then
//! the invoice counter) so concurrent sales never deadlock and never oversell.
//!
//! - [`accounts`]: roles and who may do what, passwords (argon2id, bounded memory), tokens;
//! - [`values`]: untrusted input into valid values, each refusal naming its field;
//! - [`company`]: the pharmacy's name, currency and clock, as every screen shows them;
//! - [`sale`], [`stock`], [`returns`], [`invoices`]: the pharmacy's rules (`docs/domain.md`);
//! - [`seed`]: a pharmacy's demo data;
//! - [`Error`]: the one error, in the domain's terms.

pub mod accounts;
pub mod company;
pub mod error;
pub mod invoices;
pub mod returns;
pub mod sale;
pub mod seed;
pub mod stock;
pub mod values;

pub use error::{Error, Result};

use rust_decimal::{Decimal, RoundingStrategy};

/// Rounds money to cents the way PostgreSQL's `round(numeric, 2)` does (half away from
/// zero), so amounts computed here satisfy the schema's CHECKs exactly.
pub fn cents(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Money as numeric(14,2) gives it back: exactly two decimal places.
pub fn money(mut value: Decimal) -> Decimal {
    value.rescale(2);
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn rounding_matches_postgres() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(cents(d("0.125")), d("0.13"));
        assert_eq!(cents(d("0.135")), d("0.14"));
        assert_eq!(cents(d("2.675")), d("2.68"));
        assert_eq!(cents(d("-0.125")), d("-0.13"));
    }
}
