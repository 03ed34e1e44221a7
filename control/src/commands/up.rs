//! `apotheca up`: migrate everything, top up the spares, create and seed the demo tenants on
//! an empty system, and say how to reach them.

use apotheca_common::names::{DomainName, SchemaName};

use super::{print_summary, print_tenants, seed_tenant, top_up_spares, Context};
use crate::error::{ControlError, Result};
use crate::migrate::{self, Reporter, Target};
use crate::tenants::{self, Provisioner};

/// The demo tenants `up` creates on an empty system: (schema, name, domain).
const DEMO_TENANTS: [(&str, &str, &str); 2] = [
    ("acme", "Acme Pharmacy", "acme.localhost"),
    ("beta", "Beta Pharmacy", "beta.localhost"),
];

pub(super) async fn up(ctx: &Context) -> Result<()> {
    let db = ctx.database().await?;
    let set = ctx.migrations()?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = db.pool(jobs + 1)?;
    let summary = migrate::run(
        &pool,
        &set,
        &Target::All,
        false,
        jobs,
        &Reporter::new(false),
    )
    .await?;
    print_summary(&summary);
    if summary.failed().count() > 0 {
        return Err(ControlError::MigrationsFailed(summary.failed().count()));
    }
    top_up_spares(ctx, &db, &set).await;
    let mut client = db.connect().await?;
    if tenants::list(&client).await?.is_empty() {
        let secret = ctx.secret(&client).await?;
        let provisioner = Provisioner {
            db: &db,
            secret: &secret,
            migrations: &set,
            role_limits: &ctx.settings.control.tenant_role,
        };
        for (schema, name, domain) in DEMO_TENANTS {
            let schema = SchemaName::parse(schema)?;
            let domain = DomainName::parse(domain)?;
            provisioner
                .create(&mut client, name, &schema, &domain, None)
                .await?;
            println!("created demo tenant {name:?} (schema {schema}) on {domain}");
            seed_tenant(ctx, &db, &client, &schema, false).await?;
        }
    }
    println!();
    print_tenants(&tenants::list(&client).await?);
    println!("\nThe database is running. Reach it with:");
    println!("  target/release/apotheca db psql                 # as admin");
    println!("  target/release/apotheca db psql --schema acme   # as tenant acme's own role");
    println!("  target/release/apotheca list-tenants");
    println!("Supervise the workers (wake a tenant, then reach its worker's socket):");
    println!("  target/release/apotheca serve &");
    println!("  target/release/apotheca wake --schema acme");
    println!("Or serve one pharmacy's JSON API on 127.0.0.1:8081 by hand (log in with the logins above):");
    println!(
        "  DATABASE_URL=$(target/release/apotheca db url --schema acme) target/release/apotheca-worker --schema acme --listen tcp:127.0.0.1:8081"
    );
    println!("Stop the database with: target/release/apotheca db stop");
    Ok(())
}
