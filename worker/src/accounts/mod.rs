//! Who may do what: roles and the access table of DOMAIN.md, password hashing (argon2id),
//! and the random tokens behind sessions, API tokens and password resets (only their SHA-256
//! is ever stored).

use std::str::FromStr;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// The parts of the app, as DOMAIN.md's "Access" names them.
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

/// DOMAIN.md "Access": admin everything; pharmacist medicines, suppliers, receipts, counter,
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

/// An argon2id PHC string (slow on purpose: call from a blocking thread).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .expect("argon2 with default parameters hashes any password")
}

/// Whether `password` matches `hash` (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// At most this many argon2 computations at once (each takes ~19 MiB and a core for tens of
/// milliseconds): a flood of logins or resets queues here instead of exhausting the machine.
fn argon2_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    })
}

/// [`hash_password`] on a blocking thread, within the argon2 limit.
pub async fn hash_password_async(password: &str) -> Option<String> {
    let _slot = argon2_slots().acquire().await.ok()?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .ok()
}

/// [`verify_password`] on a blocking thread, within the argon2 limit.
pub async fn verify_password_async(hash: &str, password: &str) -> bool {
    let Ok(_slot) = argon2_slots().acquire().await else {
        return false;
    };
    let (hash, password) = (hash.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so that answering takes as long
/// either way and does not reveal which usernames exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no such user, no such password"))
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
    fn passwords_round_trip() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horse "));
        assert!(!verify_password("garbage", "x"));
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
