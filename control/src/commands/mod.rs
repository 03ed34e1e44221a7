//! What each `apotheca` command does and prints: settings and database resolution, then a call
//! into the library, then human output on stdout (or JSON when asked), errors on stderr.
//!
//! This module owns the dispatch, the [`Context`] every command works from, `migrate-schemas`
//! and the printing shared by several commands; `db` has the `apotheca db ...` subcommands,
//! `tenant` the per-tenant commands, `operator` the operator commands, `daemon` the daemon and the commands that talk to it,
//! `citus` the worker-node commands of a Citus cluster, and `up` the one-shot local set-up.

mod citus;
mod daemon;
mod db;
mod import;
mod operator;
mod tenant;
mod up;

use apotheca_common::{settings, telemetry};
use apotheca_migrations::MigrationSet;

use crate::cli::{Cli, Command, MigrateArgs};
use crate::error::{ControlError, Result};
use crate::settings::Settings;
use apotheca_tenancy::db::Database;
use apotheca_tenancy::migrate::{self, Summary, Target};

use crate::progress::Reporter;
use apotheca_tenancy::roles::Secret;
use apotheca_tenancy::spares;
use apotheca_tenancy::tenants::{self, domains, TenantInfo};

use db::db_command;
use tenant::{create_tenant, list_tenants, seed_tenant, set_status, sync_roles};
use up::up;

/// What creating tenants needs: the migrations, the database and the server secret. See
/// [`Context::provisioning`].
struct Provisioning {
    set: MigrationSet,
    db: Database,
    secret: Secret,
}

/// The loaded settings and command-line overrides every command works from.
struct Context {
    settings: Settings,
    cli_url: Option<String>,
    migrations_dir: Option<std::path::PathBuf>,
    /// The settings file that was read, if any (the daemon hands it on to workers).
    config_file: Option<std::path::PathBuf>,
}

impl Context {
    async fn database(&self) -> Result<Database> {
        Ok(Database::open(
            &self.settings.database,
            &self.settings.private_db,
            self.cli_url.as_deref(),
        )
        .await?)
    }

    fn migrations(&self) -> Result<MigrationSet> {
        Ok(match &self.migrations_dir {
            Some(dir) => MigrationSet::from_dir(dir)?,
            None => MigrationSet::embedded()?,
        })
    }

    /// What creating tenants needs, ready, and a connection with `public` migrated.
    async fn provisioning(&self) -> Result<(Provisioning, tokio_postgres::Client)> {
        let set = self.migrations()?;
        let db = self.database().await?;
        let client = db.connect().await?;
        ensure_public_migrated(&client).await?;
        let secret = self.secret(&client).await?;
        Ok((Provisioning { set, db, secret }, client))
    }

    /// What creates tenants, on `db` with its `secret` and the migrations `set`.
    fn provisioner<'a>(
        &'a self,
        db: &'a Database,
        secret: &'a Secret,
        set: &'a MigrationSet,
    ) -> tenants::Provisioner<'a> {
        tenants::Provisioner {
            db,
            secret,
            migrations: set,
            role_limits: &self.settings.control.tenant_role,
        }
    }

    /// [`Context::provisioner`] on what [`Context::provisioning`] made ready.
    fn provisioner_of<'a>(&'a self, p: &'a Provisioning) -> tenants::Provisioner<'a> {
        self.provisioner(&p.db, &p.secret, &p.set)
    }

    /// The server secret, checked against the database's record of it.
    async fn secret(&self, client: &tokio_postgres::Client) -> Result<Secret> {
        let secret = Secret::load(
            self.settings.control.secret_key.as_deref(),
            &self.settings.control.state_dir,
        )?;
        secret.verify(client).await?;
        Ok(secret)
    }

    fn tenant_url(&self, domain: &str) -> String {
        self.settings.control.tenant_url.replace("{domain}", domain)
    }
}

pub async fn dispatch(cli: Cli) -> Result<()> {
    let loaded = settings::load::<Settings>(cli.config.as_deref())?;
    loaded
        .settings
        .check()
        .map_err(|e| ControlError::invalid(format!("invalid settings: {e}")))?;
    let format = cli.log_format.unwrap_or(loaded.settings.log.format);
    telemetry::init(format, "warn,apotheca=info,apotheca_control=info");
    let ctx = Context {
        settings: loaded.settings,
        cli_url: cli.database_url,
        migrations_dir: cli.migrations_dir,
        config_file: loaded.file.clone(),
    };
    if cli.validate_config {
        return validate(&ctx, loaded.file.as_deref());
    }
    let Some(command) = cli.command else {
        return Err(ControlError::invalid(
            "no command given; see `apotheca --help`",
        ));
    };
    match command {
        Command::Up => up(&ctx).await,
        Command::Db(cmd) => db_command(&ctx, cmd).await,
        Command::MigrateSchemas(args) => migrate_schemas(&ctx, args).await,
        Command::CreateTenant(args) => create_tenant(&ctx, args).await,
        Command::Import(crate::cli::ImportCommand::PharmacyApp(args)) => {
            import::pharmacy_app(&ctx, args).await
        }
        Command::Import(crate::cli::ImportCommand::DjangoTenants(args)) => {
            import::django_tenants(&ctx, args).await
        }
        Command::PrepareSpares { count } => {
            let set = ctx.migrations()?;
            let db = ctx.database().await?;
            let mut client = db.connect().await?;
            ensure_public_migrated(&client).await?;
            let target = count.unwrap_or(ctx.settings.control.spare_schemas);
            let built = spares::fill(&mut client, &set, target).await?;
            println!(
                "built {built} spare schema(s); {} ready",
                spares::count_current(&client, &set).await?
            );
            Ok(())
        }
        Command::SeedData { schema, clear } => {
            let db = ctx.database().await?;
            let client = db.connect().await?;
            ensure_public_migrated(&client).await?;
            seed_tenant(&ctx, &db, &client, &schema, clear).await
        }
        Command::ListTenants { json } => list_tenants(&ctx, json).await,
        Command::ListNodes { json } => citus::list_nodes(&ctx, json).await,
        Command::MoveTenant { schema, to } => citus::move_tenant(&ctx, &schema, &to).await,
        Command::RebalanceTenants { dry_run, json } => citus::rebalance(&ctx, dry_run, json).await,
        Command::AddDomain {
            schema,
            domain,
            primary,
        } => {
            let db = ctx.database().await?;
            domains::add(&mut db.connect().await?, schema.as_str(), &domain, primary).await?;
            println!(
                "{domain} now routes to tenant {schema}{}",
                if primary { " (primary)" } else { "" }
            );
            Ok(())
        }
        Command::RemoveDomain {
            domain,
            new_primary,
        } => {
            let db = ctx.database().await?;
            let schema =
                domains::remove(&mut db.connect().await?, &domain, new_primary.as_ref()).await?;
            println!("{domain} no longer routes to tenant {schema}");
            Ok(())
        }
        Command::SuspendTenant { schema } => set_status(&ctx, &schema, "suspended").await,
        Command::ResumeTenant { schema } => set_status(&ctx, &schema, "active").await,
        Command::CreateOperator {
            username,
            password_stdin,
        } => operator::create(&ctx, &username, password_stdin).await,
        Command::ListOperators { json } => operator::list(&ctx, json).await,
        Command::DeleteOperator {
            username,
            deactivate,
        } => operator::delete(&ctx, &username, deactivate).await,
        Command::SyncRoles { json } => sync_roles(&ctx, json).await,
        Command::Serve => daemon::serve(&ctx).await,
        Command::Wake {
            schema,
            timeout,
            json,
        } => daemon::wake(&ctx, &schema, timeout, json).await,
        Command::Status {
            cluster: true,
            json,
            ..
        } => daemon::cluster(&ctx, json).await,
        Command::Status { schema, json, .. } => daemon::status(&ctx, schema.as_deref(), json).await,
        Command::Scale(args) => daemon::scale(&ctx, args).await,
        Command::Restart {
            schema,
            all: _,
            timeout,
            json,
        } => daemon::restart(&ctx, schema.as_deref(), timeout, json).await,
        Command::DeleteTenant {
            schema,
            yes,
            archive,
        } => {
            if !yes {
                return Err(ControlError::invalid(format!(
                    "deleting tenant {schema} drops its schema and all its data; add --yes to confirm (and --archive FILE to keep a dump)"
                )));
            }
            let db = ctx.database().await?;
            let info =
                tenants::delete(&mut db.connect().await?, &db, &schema, archive.as_deref()).await?;
            match archive {
                Some(path) => println!(
                    "deleted tenant {:?} ({schema}); archive in {}",
                    info.name,
                    path.display()
                ),
                None => println!("deleted tenant {:?} ({schema})", info.name),
            }
            Ok(())
        }
    }
}

fn validate(ctx: &Context, file: Option<&std::path::Path>) -> Result<()> {
    match file {
        Some(f) => println!("settings OK (file {})", f.display()),
        None => println!("settings OK (no settings file; defaults and environment)"),
    }
    match ctx.settings.database.resolve(ctx.cli_url.as_deref()) {
        Some(url) => {
            url.parse::<tokio_postgres::Config>()
                .map_err(|e| ControlError::invalid(format!("invalid database URL: {e}")))?;
            println!("database: configured URL");
        }
        None => println!(
            "database: private cluster in {}",
            ctx.settings.private_db.data_dir.display()
        ),
    }
    ctx.migrations()?;
    Ok(())
}

async fn migrate_schemas(ctx: &Context, args: MigrateArgs) -> Result<()> {
    let target = match (args.shared, args.schema) {
        (true, _) => Target::Shared,
        (false, Some(s)) => Target::Schema(s.to_string()),
        (false, None) => Target::All,
    };
    let jobs = args
        .jobs
        .map(usize::from)
        .unwrap_or(match ctx.settings.control.migrate_jobs {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        });
    let set = ctx.migrations()?;
    let db = ctx.database().await?;
    let pool = db.pool(jobs + 1)?;
    let reporter = Reporter::new(args.json);
    let summary = migrate::run(&pool, &set, &target, args.plan, jobs, &reporter).await?;
    let failed = summary.failed().count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    if target == Target::All && !args.plan && !args.no_spares && failed == 0 {
        top_up_spares(ctx, &db, &set).await;
    }
    match failed {
        0 => Ok(()),
        n => Err(apotheca_tenancy::Error::MigrationsFailed(n).into()),
    }
}

/// Tops the spare pool up; a failure here costs only create-tenant speed, so it is reported,
/// not fatal.
async fn top_up_spares(ctx: &Context, db: &Database, set: &MigrationSet) {
    let result = async {
        let mut client = db.connect().await?;
        spares::fill(&mut client, set, ctx.settings.control.spare_schemas).await
    }
    .await;
    if let Err(e) = result {
        eprintln!("warning: could not top up the spare schemas: {e}");
    }
}

fn print_summary(summary: &Summary) {
    if summary.planned_only {
        let mut any = false;
        for o in &summary.outcomes {
            if let Some(e) = &o.error {
                println!("{}: cannot migrate: {e}", o.schema);
            } else if !o.pending.is_empty() {
                any = true;
                println!("{}: {}", o.schema, o.pending.join(", "));
            }
        }
        if !any {
            println!(
                "nothing to apply: {} schema(s) are current",
                summary.current().count()
            );
        }
        return;
    }
    let migrated: Vec<_> = summary.migrated().collect();
    let applied: usize = migrated.iter().map(|o| o.applied.len()).sum();
    println!(
        "migrated {} schema(s) ({applied} migration(s) applied), {} already current, {} failed",
        migrated.len(),
        summary.current().count(),
        summary.failed().count()
    );
    for o in summary.failed() {
        println!(
            "  FAILED {}: {}",
            o.schema,
            o.error.as_deref().unwrap_or_default()
        );
    }
}

async fn ensure_public_migrated(client: &tokio_postgres::Client) -> Result<()> {
    let row = client
        .query_one("SELECT to_regclass('public.tenants') IS NOT NULL", &[])
        .await?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        Err(ControlError::invalid(migrate::NOT_MIGRATED))
    }
}

fn print_tenants(list: &[TenantInfo]) {
    if list.is_empty() {
        println!("no tenants yet; create one with `apotheca create-tenant`");
        return;
    }
    let citus = list.iter().any(|t| t.node.is_some());
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|t| {
            [
                t.node.clone().unwrap_or_else(|| "-".into()),
                t.schema.clone(),
                t.name.clone(),
                t.status.clone(),
                t.migration_version
                    .map_or("-".into(), |v| format!("{v:04}")),
                t.created_at.format("%Y-%m-%d %H:%M").to_string(),
                t.domains.join(" "),
            ]
        })
        .collect();
    let header = [
        "NODE",
        "SCHEMA",
        "NAME",
        "STATUS",
        "VERSION",
        "CREATED (UTC)",
        "DOMAINS (primary first)",
    ];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // The node column only on Citus.
    let skip = usize::from(!citus);
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .skip(skip)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}
