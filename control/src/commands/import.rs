//! `apotheca import pharmacy-app`: a new tenant made from one database of the Django pharmacy
//! app (`apotheca_import` reads, maps and writes; this runs it in the transaction that creates
//! the tenant, and prints the report).

use super::{ensure_public_migrated, Context};
use crate::cli::ImportPharmacyAppArgs;
use crate::error::Result;
use apotheca_import::{plan, write, Report};
use apotheca_tenancy::tenants;

pub(super) async fn pharmacy_app(ctx: &Context, args: ImportPharmacyAppArgs) -> Result<()> {
    let snapshot = apotheca_import::read(&args.from).await?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => snapshot
            .company
            .iter()
            .flatten()
            .min_by_key(|c| c.id)
            .map(|c| c.company_name.trim().chars().take(200).collect::<String>())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| args.schema.to_string()),
    };
    tenants::parse_display_name(&name)?;
    let mut report = Report {
        schema: args.schema.to_string(),
        dry_run: args.dry_run,
        ..Report::default()
    };
    let plan = plan::plan(&snapshot, &name, &mut report);

    let set = ctx.migrations()?;
    let db = ctx.database().await?;
    let mut client = db.connect().await?;
    ensure_public_migrated(&client).await?;
    let secret = ctx.secret(&client).await?;
    let provisioner = ctx.provisioner(&db, &secret, &set);
    let tx = client.transaction().await?;
    provisioner
        .create_in(&tx, &name, &args.schema, &args.domain, None)
        .await?;
    write::write(&tx, &args.schema.quoted(), &plan).await?;
    if args.dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
        if !args.dry_run {
            println!("  {}", ctx.tenant_url(&args.domain.to_string()));
        }
    }
    Ok(())
}
