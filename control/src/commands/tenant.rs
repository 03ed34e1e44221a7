//! The per-tenant commands: `create-tenant`, `seed-data`, `list-tenants`,
//! `suspend-tenant` / `resume-tenant` and `sync-roles`.

use apotheca_common::names::SchemaName;
use rand::distr::{Alphanumeric, SampleString};

use super::{ensure_public_migrated, print_tenants, Context};
use crate::cli::CreateTenantArgs;
use crate::error::{ControlError, Result};
use apotheca_tenancy::db::Database;
use apotheca_tenancy::roles;
use apotheca_tenancy::tenants::{self, FirstAdmin};

pub(super) async fn create_tenant(ctx: &Context, args: CreateTenantArgs) -> Result<()> {
    // Input first: a refused name must not start a cluster or generate a secret.
    tenants::parse_display_name(&args.name)?;
    let (admin, generated) = match &args.admin_user {
        None => (None, None),
        Some(user) => {
            let (password, generated) = match &args.admin_password_file {
                Some(path) => (read_password_file(path)?, false),
                None => (Alphanumeric.sample_string(&mut rand::rng(), 16), true),
            };
            let admin = FirstAdmin::new(user, &password).await?;
            (Some(admin), generated.then_some(password))
        }
    };
    let (ready, mut client) = ctx.provisioning().await?;
    let provisioner = ctx.provisioner_of(&ready);
    let info = provisioner
        .create(
            &mut client,
            &args.name,
            &args.schema,
            &args.domain,
            admin.as_ref(),
        )
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!(
            "created tenant {:?}: schema {}, role {}, migration {:04}\n  {}",
            info.name,
            info.schema,
            info.role,
            info.migration_version.unwrap_or(0),
            ctx.tenant_url(&args.domain.to_string())
        );
    }
    if let (Some(user), Some(password)) = (&args.admin_user, generated) {
        println!("  admin login: {user} / {password}  (shown once; change it after logging in)");
    }
    Ok(())
}

/// The first line of a password file, without its line ending.
fn read_password_file(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ControlError::invalid(format!("reading the password file {}: {e}", path.display()))
    })?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// Seeds one tenant as its own role and prints what was made (passwords once).
pub(super) async fn seed_tenant(
    ctx: &Context,
    db: &Database,
    client: &tokio_postgres::Client,
    schema: &SchemaName,
    clear: bool,
) -> Result<()> {
    let tenant = tenants::load(client, schema.as_str()).await?;
    let secret = ctx.secret(client).await?;
    let url = db.role_url(&tenant.role, &roles::role_password(&secret, &tenant.role));
    let pool = Database::from_url(url, None)?.pool(1)?;
    let report = apotheca_pharmacy::seed::run(&pool, clear)
        .await
        .map_err(|e| match e {
            apotheca_pharmacy::seed::SeedError::AlreadySeeded => {
                ControlError::invalid(format!("tenant {schema}: {e}"))
            }
            other => ControlError::Other(format!("seeding {schema}: {other}")),
        })?;
    pool.close();
    println!(
        "seeded {schema}: {} medicines, {} batches, {} invoices over the last week",
        report.medicines, report.batches, report.invoices
    );
    for (user, role, password) in &report.users {
        println!("  login {user} / {password}  ({role}; shown once)");
    }
    for user in &report.kept_users {
        println!("  login {user}: kept (its password is unchanged)");
    }
    Ok(())
}

pub(super) async fn list_tenants(ctx: &Context, json: bool) -> Result<()> {
    let db = ctx.database().await?;
    let client = db.connect().await?;
    ensure_public_migrated(&client).await?;
    let list = tenants::list(&client).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    print_tenants(&list);
    Ok(())
}

pub(super) async fn set_status(ctx: &Context, schema: &SchemaName, status: &str) -> Result<()> {
    let db = ctx.database().await?;
    let changed = tenants::set_status(&mut db.connect().await?, schema.as_str(), status).await?;
    let word = if status == "active" {
        "active"
    } else {
        "suspended"
    };
    if changed {
        println!("tenant {schema} is now {word}");
    } else {
        println!("tenant {schema} was already {word}");
    }
    Ok(())
}

pub(super) async fn sync_roles(ctx: &Context, json: bool) -> Result<()> {
    let db = ctx.database().await?;
    let mut client = db.connect().await?;
    ensure_public_migrated(&client).await?;
    let secret = ctx.secret(&client).await?;
    let done = tenants::sync_roles::sync(
        &mut client,
        db.name(),
        &secret,
        &ctx.settings.control.tenant_role,
    )
    .await?;
    if json {
        let text = serde_json::to_string_pretty(&done)?;
        println!("{text}");
    } else {
        println!(
            "roles in order: {} tenant(s), {} spare schema(s); created {}",
            done.tenants,
            done.spares,
            if done.created.is_empty() {
                "none".to_owned()
            } else {
                done.created.join(", ")
            }
        );
    }
    Ok(())
}
