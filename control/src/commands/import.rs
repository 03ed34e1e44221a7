//! `apotheca import pharmacy-app`: a new tenant made from one database of the Django pharmacy
//! app; `apotheca import django-tenants`: one for every pharmacy of a django-tenants database,
//! several at once. Each pharmacy becomes its tenant through [`crate::import`], the code the
//! operator console's import runs too; this reads the command line and prints the reports.

use std::io::IsTerminal;

use apotheca_common::names::{DomainName, SchemaName};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::Context;
use crate::cli::{ImportDjangoTenantsArgs, ImportPharmacyAppArgs};
use crate::error::{ControlError, Result};
use crate::import;
use apotheca_import::source::{self, tenants::DjangoTenant};
use apotheca_import::{plan, Location, Report, SourceError};
use apotheca_tenancy::tenants::{self, Provisioner};

pub(super) async fn pharmacy_app(ctx: &Context, args: ImportPharmacyAppArgs) -> Result<()> {
    let (ready, mut client) = ctx.provisioning().await?;
    let provisioner = ctx.provisioner_of(&ready);
    let job = import::PharmacyApp {
        from: &args.from,
        schema: &args.schema,
        domain: &args.domain,
        name: args.name.as_deref(),
        dry_run: args.dry_run,
    };
    let report = import::pharmacy_app(&provisioner, &mut client, &job)
        .await?
        .report;
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

/// What became of one pharmacy of a django-tenants database.
#[derive(Debug, Serialize)]
struct Outcome {
    schema: String,
    name: String,
    /// imported, skipped or failed
    result: &'static str,
    reason: Option<String>,
    report: Option<Report>,
}

/// Why a pharmacy was not imported.
enum NotImported {
    /// Its schema or a domain exists already.
    Skipped(String),
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for NotImported {
    fn from(e: E) -> Self {
        Self::Failed(e.to_string())
    }
}

pub(super) async fn django_tenants(ctx: &Context, args: ImportDjangoTenantsArgs) -> Result<()> {
    let Location::Postgres(url) = args
        .from
        .parse::<Location>()
        .map_err(ControlError::invalid)?
    else {
        return Err(ControlError::invalid(
            "--from: a django-tenants database is a postgres:// URL",
        ));
    };
    let source = connect_source(&url).await?;
    let mut pharmacies = source::tenants::list(&source).await?;
    drop(source);
    if !args.only.is_empty() {
        let unknown: Vec<&String> = args
            .only
            .iter()
            .filter(|o| !pharmacies.iter().any(|p| &p.schema_name == *o))
            .collect();
        if !unknown.is_empty() {
            return Err(ControlError::invalid(format!(
                "--only: no pharmacy with schema {unknown:?} in the django-tenants database"
            )));
        }
        pharmacies.retain(|p| args.only.contains(&p.schema_name));
    }

    let (ready, _) = ctx.provisioning().await?;
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(pharmacies.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} importing [{bar:30}] {pos}/{len} pharmacies {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let jobs = args.jobs.unwrap_or(2).max(1);
    let provisioner = ctx.provisioner_of(&ready);
    let mut outcomes: Vec<Outcome> = futures::stream::iter(pharmacies)
        .map(|p| {
            let (provisioner, url, bar) = (&provisioner, &url, &bar);
            async move {
                let (result, reason, report) = match one(provisioner, url, &p, args.dry_run).await {
                    Ok(report) => ("imported", None, Some(report)),
                    Err(NotImported::Skipped(reason)) => ("skipped", Some(reason), None),
                    Err(NotImported::Failed(reason)) => ("failed", Some(reason), None),
                };
                let outcome = Outcome {
                    schema: p.schema_name,
                    name: p.name,
                    result,
                    reason,
                    report,
                };
                if let Some(bar) = bar {
                    if outcome.result != "imported" {
                        bar.println(describe(&outcome));
                    }
                    bar.inc(1);
                }
                outcome
            }
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    outcomes.sort_by(|a, b| a.schema.cmp(&b.schema));
    let count = |r: &str| outcomes.iter().filter(|o| o.result == r).count();
    let (imported, skipped, failed) = (count("imported"), count("skipped"), count("failed"));
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dry_run": args.dry_run,
                "imported": imported,
                "skipped": skipped,
                "failed": failed,
                "pharmacies": outcomes,
            }))?
        );
    } else {
        for o in &outcomes {
            match &o.report {
                Some(report) => print!("{}", report.text()),
                None => println!("{}", describe(o)),
            }
        }
        let verb = if args.dry_run {
            "would import"
        } else {
            "imported"
        };
        println!("{verb} {imported} pharmacies, skipped {skipped}, {failed} failed");
    }
    if failed > 0 {
        return Err(ControlError::Other(format!(
            "{failed} of {} pharmacies failed to import",
            outcomes.len()
        )));
    }
    Ok(())
}

fn describe(o: &Outcome) -> String {
    format!(
        "{}: {} ({})",
        o.schema,
        o.result.to_uppercase(),
        o.reason.as_deref().unwrap_or_default()
    )
}

/// A connection to the source, its driver on a task of its own.
async fn connect_source(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(SourceError::from)?;
    tokio::spawn(connection);
    Ok(client)
}

/// One pharmacy: its schema read, mapped, and written as a new tenant with its domains (and
/// suspended when it was inactive), in one transaction.
async fn one(
    provisioner: &Provisioner<'_>,
    url: &str,
    p: &DjangoTenant,
    dry_run: bool,
) -> std::result::Result<Report, NotImported> {
    let mut report = Report {
        schema: p.schema_name.clone(),
        dry_run,
        ..Report::default()
    };
    let schema = SchemaName::parse(&p.schema_name).map_err(|e| {
        NotImported::Failed(format!("the schema name is not one Apotheca takes: {e}"))
    })?;
    let mut domains = Vec::new();
    for raw in &p.domains {
        match DomainName::parse(raw) {
            Ok(d) => domains.push(d),
            Err(e) => report.anomaly(
                "tenants_domain",
                0,
                format!("domain {raw:?}: {e}"),
                "left out",
            ),
        }
    }
    if domains.is_empty() {
        return Err(NotImported::Failed("no domain Apotheca can route".into()));
    }
    let mut client = provisioner.db.connect().await?;
    for domain in &domains {
        if tenants::taken(&client, &schema, domain).await? {
            return Err(NotImported::Skipped(format!(
                "schema {schema} or domain {domain} exists already"
            )));
        }
    }
    let mut source = connect_source(url).await?;
    let tables = source::postgres::read(&mut source, &p.schema_name).await?;
    drop(source);
    if tables.is_empty() {
        return Err(NotImported::Failed(
            "the schema has none of the app's tables".into(),
        ));
    }
    let name = match tenants::parse_display_name(&p.name) {
        Ok(name) => name,
        Err(e) => {
            report.anomaly(
                "tenants_client",
                0,
                format!("name {:?}: {e}", p.name),
                "named after the schema",
            );
            schema.to_string()
        }
    };
    let plan = plan::plan(&source::snapshot(&tables), &name, &mut report);
    let target = import::Target {
        name: &name,
        schema: &schema,
        domains: &domains,
        suspended: !p.is_active,
        log_steps: false,
    };
    import::create(provisioner, &mut client, &plan, &target, dry_run).await?;
    if !p.is_active {
        report.anomaly(
            "tenants_client",
            0,
            "inactive in django-tenants",
            "imported suspended",
        );
    }
    Ok(report)
}
