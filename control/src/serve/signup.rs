//! `POST /v1/tenants`: the public site's "Create your pharmacy". The public worker holds no
//! secret and creates no role; it sends the form here and control provisions the tenant with
//! the same code as `apotheca create-tenant --admin-user` ([`Provisioner::create`]), then
//! starts the pharmacy's company profile with its name.
//!
//! The body is `{name, subdomain, admin_user, admin_password}`; the tenant's domain is
//! `<subdomain>.<[control] signup_domain>` and its schema the subdomain with `-` as `_`.
//! Answers 201 `{schema, domain, login_url}`; 409 when the subdomain is taken; 422 for
//! invalid input; both errors name the form `field` at fault.

use std::sync::Arc;

use apotheca_common::names::{DomainName, SchemaName};
use apotheca_migrations::MigrationSet;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use apotheca_tenancy::db::Database;
use apotheca_tenancy::roles::Secret;
use apotheca_tenancy::roles::TenantRoleSettings;
use apotheca_tenancy::tenants::{self, FirstAdmin, Provisioner};
use apotheca_tenancy::Error as TenancyError;

/// Subdomains kept for the hosting itself.
const RESERVED: [&str; 9] = [
    "www", "api", "admin", "app", "mail", "static", "control", "proxy", "status",
];

/// What provisioning needs beyond the catalog's database.
pub struct Signup {
    pub db: Database,
    pub secret: Secret,
    pub migrations: MigrationSet,
    pub role_limits: TenantRoleSettings,
    /// `[control] signup_domain`.
    pub base_domain: String,
    /// `[control] tenant_url`.
    pub tenant_url: String,
    /// Provisions running at once (each holds a connection and takes locks); others wait.
    pub running: tokio::sync::Semaphore,
}

#[derive(Debug, Deserialize)]
pub struct NewTenant {
    pub name: String,
    pub subdomain: String,
    pub admin_user: String,
    pub admin_password: String,
}

#[derive(Debug, Serialize)]
pub struct Created {
    pub schema: String,
    pub domain: String,
    pub login_url: String,
}

/// A refusal: its status, a stable code, the form field at fault and a message for people.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub code: &'static str,
    pub field: Option<&'static str>,
    pub message: String,
}

impl Refused {
    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid",
            field: Some(field),
            message: message.into(),
        }
    }

    fn taken() -> Self {
        Self {
            status: StatusCode::CONFLICT,
            code: "taken",
            field: Some("subdomain"),
            message: "This subdomain is already taken; choose another.".to_owned(),
        }
    }

    fn failed(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "sign-up failed");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "database",
            field: None,
            message: "The pharmacy could not be created; try again in a moment.".to_owned(),
        }
    }
}

/// The schema and domain of a subdomain typed into the form.
pub fn names(subdomain: &str, base: &str) -> Result<(SchemaName, DomainName), Refused> {
    let sub = subdomain.trim().to_ascii_lowercase();
    let bad = || {
        Refused::invalid(
            "subdomain",
            "Use 3 to 40 lowercase letters, digits and hyphens, starting with a letter \
             and not ending with a hyphen.",
        )
    };
    let shaped = (3..=40).contains(&sub.len())
        && sub.starts_with(|c: char| c.is_ascii_lowercase())
        && !sub.ends_with('-')
        && !sub.contains("--")
        && sub
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !shaped {
        return Err(bad());
    }
    let reserved = || Refused::invalid("subdomain", "This subdomain is reserved; choose another.");
    if RESERVED.contains(&sub.as_str()) {
        return Err(reserved());
    }
    let schema = SchemaName::parse(&sub.replace('-', "_")).map_err(|_| reserved())?;
    let domain = DomainName::parse(&format!("{sub}.{base}")).map_err(|_| bad())?;
    Ok((schema, domain))
}

/// Checks the form, then provisions the tenant and its first admin.
pub async fn create(signup: Arc<Signup>, form: NewTenant) -> Result<Created, Refused> {
    let name = tenants::parse_display_name(&form.name)
        .map_err(|e| Refused::invalid("name", capitalized(&e.to_string())))?;
    let (schema, domain) = names(&form.subdomain, &signup.base_domain)?;
    let (user, password) = (form.admin_user, form.admin_password);
    let admin = FirstAdmin::new(&user, &password).await.map_err(|e| {
        if matches!(e, TenancyError::Busy(_)) {
            return Refused::failed(e);
        }
        let message = e.to_string();
        let field = if message.starts_with("the admin username") {
            "admin_user"
        } else {
            "admin_password"
        };
        Refused::invalid(field, capitalized(&message))
    })?;
    let _turn = signup.running.acquire().await.map_err(Refused::failed)?;
    let mut client = signup.db.connect().await.map_err(Refused::failed)?;
    if tenants::taken(&client, &schema, &domain)
        .await
        .map_err(Refused::failed)?
    {
        return Err(Refused::taken());
    }
    let provisioner = Provisioner {
        db: &signup.db,
        secret: &signup.secret,
        migrations: &signup.migrations,
        role_limits: &signup.role_limits,
    };
    match provisioner
        .create(&mut client, &name, &schema, &domain, Some(&admin))
        .await
    {
        Ok(info) => {
            tracing::info!(schema = %info.schema, domain = %domain, "signed up");
            start_company_profile(&client, &schema, &name).await;
            let base = signup.tenant_url.replace("{domain}", domain.as_str());
            Ok(Created {
                schema: info.schema,
                domain: domain.to_string(),
                login_url: format!("{}/login", base.trim_end_matches('/')),
            })
        }
        // Taken by a sign-up that won the race since the check above.
        Err(TenancyError::Invalid(m)) if m.contains("already") => Err(Refused::taken()),
        Err(TenancyError::Invalid(m)) => Err(Refused::invalid("name", capitalized(&m))),
        Err(e) => Err(Refused::failed(e)),
    }
}

/// The company profile (the pharmacy's name on its pages and receipts) of a pharmacy made on
/// the web (sign-up, operator console); without it the pharmacy fills it in under Settings,
/// so a failure is only logged.
pub(super) async fn start_company_profile(
    client: &tokio_postgres::Client,
    schema: &SchemaName,
    name: &str,
) {
    let profile = format!(
        "INSERT INTO {}.company (name) VALUES ($1) ON CONFLICT (id) DO NOTHING",
        schema.quoted()
    );
    if let Err(e) = client.execute(&profile, &[&name]).await {
        tracing::warn!(%schema, error = %e, "no company profile");
    }
}

/// A library message as a sentence for a form: capitalised, with a full stop.
pub(super) fn capitalized(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains() {
        let (schema, domain) = names("Green-Cross1", "localhost").unwrap();
        assert_eq!(schema.as_str(), "green_cross1");
        assert_eq!(domain.as_str(), "green-cross1.localhost");
        for bad in [
            "", "ab", "1abc", "abc-", "a--b", "ab_c", "ab.c", "www", "select",
        ] {
            assert!(names(bad, "localhost").is_err(), "{bad}");
        }
    }
}
