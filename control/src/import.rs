//! One pharmacy of the Django app made a new tenant, the same way for `apotheca import`
//! ([`crate::commands`]) and the operator console's "Import a pharmacy"
//! ([`crate::serve`]): `apotheca_import` reads, maps and writes; this creates the tenant and
//! writes its rows in one transaction, committed, or rolled back for a dry run, so a failure
//! or a dry run leaves nothing.

use std::time::Instant;

use apotheca_common::names::{DomainName, SchemaName};
use apotheca_import::{plan, write, Location, Plan, Report};
use apotheca_tenancy::tenants::{self, domains, Provisioner};

use crate::error::Result;

/// The tenant a pharmacy becomes.
pub struct Target<'a> {
    pub name: &'a str,
    pub schema: &'a SchemaName,
    /// Primary first.
    pub domains: &'a [DomainName],
    /// Imported suspended (inactive in django-tenants).
    pub suspended: bool,
    /// Log each step's time (one pharmacy at a time; not under a progress bar).
    pub log_steps: bool,
}

/// Creates `target` with `plan`'s rows in one transaction on `client`; a dry run rolls it
/// back.
pub async fn create(
    provisioner: &Provisioner<'_>,
    client: &mut tokio_postgres::Client,
    plan: &Plan,
    target: &Target<'_>,
    dry_run: bool,
) -> Result<()> {
    let Some((primary, others)) = target.domains.split_first() else {
        return Err(crate::ControlError::invalid("a tenant needs a domain"));
    };
    let tx = client.transaction().await?;
    let step = Instant::now();
    provisioner
        .create_in(&tx, target.name, target.schema, primary, None)
        .await?;
    for domain in others {
        domains::add_in(&tx, target.schema.as_str(), domain, false).await?;
    }
    let created_ms = step.elapsed().as_millis() as u64;
    let step = Instant::now();
    write::write(&tx, &target.schema.quoted(), plan).await?;
    if target.log_steps {
        tracing::info!(ms = created_ms, "created tenant {}", target.schema);
        tracing::info!(ms = step.elapsed().as_millis() as u64, "wrote the rows");
    }
    if target.suspended {
        tenants::set_status_in(&tx, target.schema.as_str(), "suspended").await?;
    }
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(())
}

/// What `apotheca import pharmacy-app` is asked.
pub struct PharmacyApp<'a> {
    pub from: &'a Location,
    pub schema: &'a SchemaName,
    pub domain: &'a DomainName,
    /// The pharmacy's name; none: the company's, as the plan took it.
    pub name: Option<&'a str>,
    pub dry_run: bool,
}

/// A pharmacy imported (or, for a dry run, that would be).
pub struct Imported {
    pub report: Report,
    /// The tenant's name: `--name`, else the company's.
    pub name: String,
}

/// Reads the pharmacy at `job.from`, maps it and creates its tenant ([`create`]). Each step's time is logged: a big
/// pharmacy takes seconds, and this says where they went.
pub async fn pharmacy_app(
    provisioner: &Provisioner<'_>,
    client: &mut tokio_postgres::Client,
    job: &PharmacyApp<'_>,
) -> Result<Imported> {
    let started = Instant::now();
    let snapshot = apotheca_import::read(job.from).await?;
    tracing::info!(
        invoices = snapshot.invoices.len(),
        lines = snapshot.invoice_items.len(),
        medicine_rows = snapshot.medicines.len(),
        ms = started.elapsed().as_millis() as u64,
        "read {}",
        job.from
    );
    let mut report = Report {
        schema: job.schema.to_string(),
        dry_run: job.dry_run,
        ..Report::default()
    };
    let step = Instant::now();
    let plan = plan::plan(
        &snapshot,
        job.name.unwrap_or(job.schema.as_str()),
        &mut report,
    );
    drop(snapshot);
    let name = job.name.unwrap_or(&plan.company.name);
    let name = tenants::parse_display_name(name)?;
    tracing::info!(
        anomalies = report.anomalies.len(),
        ms = step.elapsed().as_millis() as u64,
        "mapped"
    );
    let step = Instant::now();
    let target = Target {
        name: &name,
        schema: job.schema,
        domains: std::slice::from_ref(job.domain),
        suspended: false,
        log_steps: true,
    };
    create(provisioner, client, &plan, &target, job.dry_run).await?;
    tracing::info!(
        ms = step.elapsed().as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "{} {}",
        job.schema,
        if job.dry_run {
            "rolled back (dry run)"
        } else {
            "committed"
        }
    );
    Ok(Imported { report, name })
}
