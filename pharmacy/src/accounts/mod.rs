//! Who may do what: roles and the access table of `docs/domain.md`, password rules and hashing
//! ([`password`]: argon2id with bounded memory), the random tokens behind sessions, API tokens
//! and password resets (only their SHA-256 is ever stored), and the rows a request's login is
//! looked up in ([`logins`]).

use std::str::FromStr;

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod django;
pub mod logins;
pub mod password;
pub use password::{
    dummy_hash, hash_password, hash_password_async, needs_rehash, verifiable, verify_password,
    verify_password_async, Busy,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Pharmacist,
    Staff,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Pharmacist => "pharmacist",
            Self::Staff => "staff",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "pharmacist" => Ok(Self::Pharmacist),
            "staff" => Ok(Self::Staff),
            other => Err(format!(
                "unknown role {other:?} (admin, pharmacist or staff)"
            )),
        }
    }
}

/// The parts of the app, as `docs/domain.md`, "Roles and permissions", names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Medicine master data, batches, stock adjustments.
    Medicines,
    Suppliers,
    /// Goods receipts (supplier invoices).
    Receipts,
    /// Billing: medicine search for sale, posting sales.
    Counter,
    /// Invoices: staff see their own only.
    Invoices,
    Returns,
    /// Voiding an invoice.
    Voids,
    Reports,
    Customers,
    Alerts,
    Dashboard,
    Users,
    /// Editing the company profile and settings (reading them is open to all).
    Company,
}

/// `docs/domain.md`, "Roles and permissions": admin everything; pharmacist medicines, suppliers, receipts, counter,
/// invoices, returns, reports (and what the counter needs: customers, alerts); staff counter,
/// their own invoices, customers, alerts.
pub fn may(role: Role, area: Area) -> bool {
    use Area::*;
    match role {
        Role::Admin => true,
        Role::Pharmacist => !matches!(area, Users | Company),
        Role::Staff => matches!(area, Counter | Invoices | Customers | Alerts | Dashboard),
    }
}

/// The longest a login attempt is held back for earlier failures ([`login_delay`]).
pub const MAX_LOGIN_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a login attempt is held back after `failures` earlier failed ones: nothing below
/// `slow_after`, then half a second more per failure, at most [`MAX_LOGIN_DELAY`]. Pharmacy
/// logins (per username or address) and operator logins (per username) both slow down so.
pub fn login_delay(failures: u64, slow_after: u64) -> std::time::Duration {
    let steps = (failures + 1).saturating_sub(slow_after);
    let steps = u32::try_from(steps.min(10)).unwrap_or(10);
    (std::time::Duration::from_millis(500) * steps).min(MAX_LOGIN_DELAY)
}

pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 1024;

/// Refuses passwords that are too short, too long or blank.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD {
        return Err(format!(
            "a password needs at least {MIN_PASSWORD} characters"
        ));
    }
    if password.len() > MAX_PASSWORD {
        return Err(format!("a password may have at most {MAX_PASSWORD} bytes"));
    }
    if password.trim().is_empty() {
        return Err("a password cannot be only spaces".into());
    }
    Ok(())
}

/// A new random token (URL-safe, 256 bits) and the SHA-256 that is stored in its place.
pub fn new_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Constant-time equality for secrets.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_passwords_are_checked() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("        ").is_err());
        assert!(check_new_password("long enough").is_ok());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(token_hash(&a), ha);
        assert_eq!(ha.len(), 32);
        assert!(
            same_secret(b"abc", b"abc")
                && !same_secret(b"abc", b"abd")
                && !same_secret(b"ab", b"abc")
        );
    }

    #[test]
    fn access_table() {
        assert!(Area::Users != Area::Company);
        assert!(may(Role::Admin, Area::Users));
        assert!(!may(Role::Pharmacist, Area::Users) && may(Role::Pharmacist, Area::Reports));
        assert!(may(Role::Staff, Area::Counter) && !may(Role::Staff, Area::Medicines));
        assert!(!may(Role::Staff, Area::Returns) && !may(Role::Staff, Area::Reports));
    }
}
