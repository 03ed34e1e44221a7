//! Password hashes made by Django, as the pharmacy app stored them (`docs/domain.md`): users
//! imported from it log in with their old passwords, and a successful login replaces the hash
//! with Apotheca's own ([`super::needs_rehash`] is true for every one of these).
//!
//! Django writes `algorithm$…`:
//! - `pbkdf2_sha256$<iterations>$<salt>$<base64 hash>` (Django's default) and `pbkdf2_sha1$…`:
//!   PBKDF2-HMAC with the salt's UTF-8 bytes, 32 or 20 bytes out;
//! - `argon2$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>` (or `argon2i`): a PHC string after the
//!   `argon2` prefix, verified as Apotheca's own are, within the same memory bound;
//! - `bcrypt_sha256$$2b$12$…`: bcrypt of the hex SHA-256 of the password;
//! - `!…`: an unusable password (the user must reset it): it verifies nothing.
//!
//! Bounds, as for argon2: a PBKDF2 hash asking for more than [`MAX_PBKDF2_ITERATIONS`] or a
//! bcrypt cost above [`MAX_BCRYPT_COST`] verifies nothing (an imported row could otherwise make
//! one login take minutes of CPU).

use base64::Engine;
use sha2::Digest;

/// Django 5.x uses 870,000 to 1,000,000; ten times that is about ten seconds of CPU.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// Django's default is 12; each step doubles the work.
pub const MAX_BCRYPT_COST: u32 = 16;

/// The PHC string inside Django's argon2 hash ("argon2$argon2id$v=19…" → "$argon2id$v=19…"),
/// which the caller verifies as it does Apotheca's own.
pub(super) fn argon2_phc(stored: &str) -> Option<&str> {
    stored
        .strip_prefix("argon2")
        .filter(|phc| phc.starts_with('$'))
}

/// A Django hash other than argon2, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Hash {
    Pbkdf2 {
        digest: Digest2,
        iterations: u32,
        salt: String,
        expected: Vec<u8>,
    },
    /// The bcrypt hash after Django's `bcrypt_sha256$` prefix.
    BcryptSha256(String),
}

/// PBKDF2's hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Digest2 {
    Sha256,
    Sha1,
}

impl Hash {
    /// `None`: not a PBKDF2 or bcrypt hash this verifies (unusable, argon2 ([`argon2_phc`]),
    /// another algorithm, malformed, or past the bounds).
    pub(super) fn parse(stored: &str) -> Option<Self> {
        if let Some(bcrypt) = stored.strip_prefix("bcrypt_sha256$") {
            let cost: u32 = bcrypt.split('$').nth(2)?.parse().ok()?;
            if cost > MAX_BCRYPT_COST {
                tracing::warn!(cost, "a Django bcrypt hash asks for more work than allowed");
                return None;
            }
            return Some(Self::BcryptSha256(bcrypt.to_owned()));
        }
        let (digest, rest) = if let Some(rest) = stored.strip_prefix("pbkdf2_sha256$") {
            (Digest2::Sha256, rest)
        } else {
            (Digest2::Sha1, stored.strip_prefix("pbkdf2_sha1$")?)
        };
        let mut parts = rest.splitn(3, '$');
        let iterations: u32 = parts.next()?.parse().ok()?;
        let salt = parts.next()?;
        let expected = base64::engine::general_purpose::STANDARD
            .decode(parts.next()?)
            .ok()?;
        if iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS {
            tracing::warn!(
                iterations,
                "a Django PBKDF2 hash asks for more work than allowed"
            );
            return None;
        }
        let length = match digest {
            Digest2::Sha256 => 32,
            Digest2::Sha1 => 20,
        };
        (expected.len() == length).then_some(Self::Pbkdf2 {
            digest,
            iterations,
            salt: salt.to_owned(),
            expected,
        })
    }

    /// Whether `password` matches.
    pub(super) fn matches(&self, password: &[u8]) -> bool {
        match self {
            Self::Pbkdf2 {
                digest,
                iterations,
                salt,
                expected,
            } => {
                let mut out = vec![0u8; expected.len()];
                match digest {
                    Digest2::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
                        password,
                        salt.as_bytes(),
                        *iterations,
                        &mut out,
                    ),
                    Digest2::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(
                        password,
                        salt.as_bytes(),
                        *iterations,
                        &mut out,
                    ),
                }
                super::same_secret(&out, expected)
            }
            Self::BcryptSha256(bcrypt) => {
                let digest = hex::encode(sha2::Sha256::digest(password));
                bcrypt::verify(digest, bcrypt).unwrap_or(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{needs_rehash, verify_password, verify_password_async};
    use super::*;

    // Made by Django 5.2's make_password("Sé-cret 12", hasher=...) with argon2-cffi and bcrypt
    // installed; the last is make_password(None).
    const PBKDF2_SHA256: &str =
        "pbkdf2_sha256$1000000$nvzyuUFlNYuD44MfpIWBa4$IFI+M5c1yTShotbBl2lC6I1WS6g18SN0zjeBcXRqV7o=";
    const PBKDF2_SHA1: &str =
        "pbkdf2_sha1$1000000$f5UKDltsbQohHIsI8pLS7D$xebWIfy9vJJcFM9XA9ff0ypLj9I=";
    const ARGON2: &str = "argon2$argon2id$v=19$m=102400,t=2,p=8$cXBxN2g1NkIyZ2lOeUluN1NONGJwQQ$tBjJBQUWeo0Y2OfRsObcufAzop4UVcwtyB8CysS/auw";
    const BCRYPT_SHA256: &str =
        "bcrypt_sha256$$2b$12$Udq89Gp5Hx9Ah/VzhbZC3u1XHQerf/GdhiZcK8Xgu6IsyZqkEO9RO";
    const UNUSABLE: &str = "!dK36PjY2nrDe3BXqpUtKRILnDT4mEhNolzcy1wp2";
    const PASSWORD: &str = "Sé-cret 12";

    #[test]
    fn every_django_hash_verifies_its_password_and_no_other() {
        for hash in [PBKDF2_SHA256, PBKDF2_SHA1, ARGON2, BCRYPT_SHA256] {
            assert!(verify_password(hash, PASSWORD), "{hash}");
            assert!(!verify_password(hash, "Sé-cret 13"), "{hash}");
            // A successful login replaces it with Apotheca's own.
            assert!(needs_rehash(hash), "{hash}");
        }
    }

    #[tokio::test]
    async fn the_async_check_takes_django_hashes_through_the_gate() {
        assert_eq!(
            verify_password_async(PBKDF2_SHA256, PASSWORD).await,
            Ok(true)
        );
        assert_eq!(verify_password_async(ARGON2, "wrong").await, Ok(false));
    }

    #[test]
    fn unusable_malformed_and_unbounded_hashes_verify_nothing() {
        assert!(!verify_password(UNUSABLE, PASSWORD));
        assert!(!verify_password("!", ""));
        for bad in [
            "pbkdf2_sha256$abc$salt$IFI+M5c1yTShotbBl2lC6I1WS6g18SN0zjeBcXRqV7o=",
            "pbkdf2_sha256$1000$salt$not base64",
            // 20 bytes where SHA-256 gives 32
            "pbkdf2_sha256$1000$salt$xebWIfy9vJJcFM9XA9ff0ypLj9I=",
            "pbkdf2_sha256$0$salt$IFI+M5c1yTShotbBl2lC6I1WS6g18SN0zjeBcXRqV7o=",
            "pbkdf2_sha256$10000001$salt$IFI+M5c1yTShotbBl2lC6I1WS6g18SN0zjeBcXRqV7o=",
            "pbkdf2_sha256$1000",
            "bcrypt_sha256$$2b$17$Udq89Gp5Hx9Ah/VzhbZC3u1XHQerf/GdhiZcK8Xgu6IsyZqkEO9RO",
            "bcrypt_sha256$garbage",
            "argon2$argon2id$v=19$m=1048576,t=2,p=8$cXBxN2g1NkIyZ2lOeUluN1NONGJwQQ$tBjJBQUWeo0Y2OfRsObcufAzop4UVcwtyB8CysS/auw",
            "argon2$nonsense",
            "md5$salt$0123456789abcdef",
        ] {
            assert!(!verify_password(bad, PASSWORD), "{bad}");
        }
        assert_eq!(
            Hash::parse("pbkdf2_sha256$10000001$s$IFI+M5c1yTShotbBl2lC6I1WS6g18SN0zjeBcXRqV7o="),
            None
        );
    }
}
