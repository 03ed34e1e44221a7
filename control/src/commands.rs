//! What each `apotheca` command does and prints: settings and database resolution, then a call
//! into the library, then human output on stdout (or JSON when asked), errors on stderr.

use std::os::unix::process::CommandExt;

use apotheca_common::devdb::PrivateCluster;
use apotheca_common::names::{DomainName, SchemaName};
use apotheca_common::{settings, telemetry};
use apotheca_migrations::MigrationSet;
use rand::distr::{Alphanumeric, SampleString};

use crate::cli::{Cli, Command, CreateTenantArgs, DbCommand, MigrateArgs};
use crate::db::Database;
use crate::error::{ControlError, Result};
use crate::migrate::{self, Reporter, Summary, Target};
use crate::roles::{self, Secret};
use crate::settings::Settings;
use crate::spares;
use crate::tenants::{self, domains, FirstAdmin, Provisioner, TenantInfo};

/// The loaded settings and command-line overrides every command works from.
struct Context {
    settings: Settings,
    cli_url: Option<String>,
    migrations_dir: Option<std::path::PathBuf>,
}

impl Context {
    async fn database(&self) -> Result<Database> {
        Database::open(&self.settings, self.cli_url.as_deref()).await
    }

    fn migrations(&self) -> Result<MigrationSet> {
        Ok(match &self.migrations_dir {
            Some(dir) => MigrationSet::from_dir(dir)?,
            None => MigrationSet::embedded()?,
        })
    }

    /// The server secret, checked against the database's record of it.
    async fn secret(&self, client: &tokio_postgres::Client) -> Result<Secret> {
        let secret = Secret::load(&self.settings.control)?;
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
        println!(
            "{}",
            serde_json::to_string_pretty(&summary)
                .map_err(|e| ControlError::Other(e.to_string()))?
        );
    } else {
        print_summary(&summary);
    }
    if target == Target::All && !args.plan && !args.no_spares && failed == 0 {
        top_up_spares(ctx, &db, &set).await;
    }
    match failed {
        0 => Ok(()),
        n => Err(ControlError::MigrationsFailed(n)),
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

async fn create_tenant(ctx: &Context, args: CreateTenantArgs) -> Result<()> {
    // Input first: a refused name must not start a cluster or generate a secret.
    tenants::parse_display_name(&args.name)?;
    let (admin, generated) = match &args.admin_user {
        None => (None, None),
        Some(user) => {
            let (password, generated) = match &args.admin_password_file {
                Some(path) => (read_password_file(path)?, false),
                None => (Alphanumeric.sample_string(&mut rand::rng(), 16), true),
            };
            let admin = tokio::task::spawn_blocking({
                let (user, password) = (user.clone(), password.clone());
                move || FirstAdmin::new(&user, &password)
            })
            .await
            .map_err(|e| ControlError::Other(e.to_string()))??;
            (Some(admin), generated.then_some(password))
        }
    };
    let set = ctx.migrations()?;
    let db = ctx.database().await?;
    let mut client = db.connect().await?;
    ensure_public_migrated(&client).await?;
    let secret = ctx.secret(&client).await?;
    let provisioner = Provisioner {
        db: &db,
        secret: &secret,
        migrations: &set,
        role_limits: &ctx.settings.control.tenant_role,
    };
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
        println!(
            "{}",
            serde_json::to_string_pretty(&info).map_err(|e| ControlError::Other(e.to_string()))?
        );
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
async fn seed_tenant(
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
    let report = apotheca_worker::seed::run(&pool, clear)
        .await
        .map_err(|e| match e {
            apotheca_worker::seed::SeedError::AlreadySeeded => {
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

async fn list_tenants(ctx: &Context, json: bool) -> Result<()> {
    let db = ctx.database().await?;
    let client = db.connect().await?;
    ensure_public_migrated(&client).await?;
    let list = tenants::list(&client).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).map_err(|e| ControlError::Other(e.to_string()))?
        );
        return Ok(());
    }
    print_tenants(&list);
    Ok(())
}

fn print_tenants(list: &[TenantInfo]) {
    if list.is_empty() {
        println!("no tenants yet; create one with `apotheca create-tenant`");
        return;
    }
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|t| {
            [
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
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

async fn set_status(ctx: &Context, schema: &SchemaName, status: &str) -> Result<()> {
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

fn private_cluster(ctx: &Context) -> Result<PrivateCluster> {
    if ctx
        .settings
        .database
        .resolve(ctx.cli_url.as_deref())
        .is_some()
    {
        return Err(ControlError::invalid(
            "a database is configured (--database-url, DATABASE_URL or [database] url); `apotheca db start|stop|status` manage only the private cluster",
        ));
    }
    Ok(PrivateCluster::new(&ctx.settings.private_db)?)
}

async fn db_command(ctx: &Context, cmd: DbCommand) -> Result<()> {
    match cmd {
        DbCommand::Start => {
            let cluster = private_cluster(ctx)?;
            let started = cluster.start().await?;
            let what = match (started.initialised, started.already_running) {
                (true, _) => "created and started",
                (false, true) => "already running",
                (false, false) => "started",
            };
            println!(
                "private PostgreSQL {what}: data {}, socket in {}",
                cluster.data_dir().display(),
                cluster.socket_dir().display()
            );
            Ok(())
        }
        DbCommand::Stop => {
            let cluster = private_cluster(ctx)?;
            let was = cluster.stop().await?;
            println!(
                "private PostgreSQL {}",
                if was { "stopped" } else { "was not running" }
            );
            Ok(())
        }
        DbCommand::Status => {
            let cluster = private_cluster(ctx)?;
            if cluster.is_running() {
                println!(
                    "private PostgreSQL running: data {}, socket in {}, log {}",
                    cluster.data_dir().display(),
                    cluster.socket_dir().display(),
                    cluster.log_file().display()
                );
                Ok(())
            } else {
                println!(
                    "private PostgreSQL is not running (data {})",
                    cluster.data_dir().display()
                );
                Err(ControlError::Other("not running".into()))
            }
        }
        DbCommand::Url { schema } => {
            println!("{}", url_for(ctx, schema.as_ref()).await?.0);
            Ok(())
        }
        DbCommand::Psql { schema, args } => {
            let (url, db) = url_for(ctx, schema.as_ref()).await?;
            let err = db.tool_command("psql", &url).args(args).exec();
            Err(ControlError::Other(format!("running psql: {err}")))
        }
    }
}

/// The admin URL, or a tenant role's URL (the tenant must exist).
async fn url_for(ctx: &Context, schema: Option<&SchemaName>) -> Result<(String, Database)> {
    let db = ctx.database().await?;
    let Some(schema) = schema else {
        return Ok((db.admin_url().to_owned(), db));
    };
    let client = db.connect().await?;
    ensure_public_migrated(&client).await?;
    let tenant = tenants::load(&client, schema.as_str()).await?;
    let secret = ctx.secret(&client).await?;
    let url = db.role_url(&tenant.role, &roles::role_password(&secret, &tenant.role));
    Ok((url, db))
}

/// The demo tenants `up` creates on an empty system: (schema, name, domain).
const DEMO_TENANTS: [(&str, &str, &str); 2] = [
    ("acme", "Acme Pharmacy", "acme.localhost"),
    ("beta", "Beta Pharmacy", "beta.localhost"),
];

async fn up(ctx: &Context) -> Result<()> {
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
    println!("Serve a pharmacy's JSON API on 127.0.0.1:8081 (log in with the logins above):");
    println!(
        "  DATABASE_URL=$(target/release/apotheca db url --schema acme) target/release/apotheca-worker --schema acme --listen tcp:127.0.0.1:8081"
    );
    println!("Stop the database with: target/release/apotheca db stop");
    Ok(())
}
