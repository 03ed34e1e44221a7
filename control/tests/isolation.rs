//! Tenant roles: each can use its own schema and nothing else.

use apotheca_testkit::connect_url;
use apotheca_testkit::system::Apotheca;
use tokio_postgres::error::SqlState;

#[tokio::test]
async fn a_tenant_role_reaches_only_its_own_schema() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    a.create("bravo").await;
    let url = a.ok(&["db", "url", "--schema", "alpha"]).await;
    let url = url.trim();
    assert!(url.contains(&a.role("alpha")), "{url}");
    let alpha = connect_url(url).await.expect("alpha's role logs in");

    let search_path: String = alpha
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(search_path, "alpha");
    let timeout: String = alpha
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "30s");
    let idle: String = alpha
        .query_one("SHOW idle_in_transaction_session_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(idle, "1min");
    let version: i32 = alpha
        .query_one("SELECT public.apotheca_tenant_migration_version()", &[])
        .await
        .unwrap()
        .get(0);
    let built_in = apotheca_migrations::MigrationSet::embedded().unwrap();
    assert_eq!(version, built_in.tenant_version());

    // Read and write on its own tables (unqualified names resolve to its schema).
    alpha
        .batch_execute("INSERT INTO suppliers (name) VALUES ('Own supplier')")
        .await
        .unwrap();
    let n: i64 = alpha
        .query_one("SELECT count(*) FROM alpha.suppliers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    let denied = |sql: &'static str| {
        let alpha = &alpha;
        async move {
            let err = alpha.batch_execute(sql).await.expect_err(sql);
            assert_eq!(
                err.code(),
                Some(&SqlState::INSUFFICIENT_PRIVILEGE),
                "{sql}: {err:?}"
            );
        }
    };
    denied("SELECT * FROM bravo.suppliers").await;
    denied("INSERT INTO bravo.suppliers (name) VALUES ('x')").await;
    denied("SELECT * FROM public.tenants").await;
    denied("SELECT * FROM public.domains").await;
    denied("SELECT * FROM public.apotheca_migrations").await;
    denied("CREATE TABLE mine (i int)").await;
    denied("CREATE TABLE public.mine (i int)").await;
    denied("DROP TABLE suppliers").await;
    denied("ALTER TABLE suppliers ADD COLUMN x int").await;
    denied("CREATE SCHEMA mine").await;
    // Changing its own search_path does not open bravo.
    // (A schema without USAGE is skipped in the search_path, so the table "does not exist".)
    alpha
        .batch_execute("SET search_path TO bravo")
        .await
        .unwrap();
    let err = alpha
        .batch_execute("SELECT * FROM suppliers")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE), "{err:?}");

    denied("CREATE TEMP TABLE scratch (i int)").await;
    denied("CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'").await;
    // No other database of the cluster lets it in.
    let elsewhere = url.replace(&format!("/{}?", a.db.name), "/postgres?");
    assert_ne!(elsewhere, url);
    assert!(
        connect_url(&elsewhere).await.is_err(),
        "tenant role connected to postgres"
    );

    // What it may still create outside its schema (a large object) does not stop deletion.
    alpha.batch_execute("SELECT lo_create(0)").await.unwrap();
    drop(alpha);
    a.ok(&["delete-tenant", "--schema", "alpha", "--yes"]).await;
    assert_eq!(a.traces_of("alpha").await, (false, false, 0));

    // A role's password is not another's.
    let bravo_url = a.ok(&["db", "url", "--schema", "bravo"]).await;
    let forged = url.replace(&a.role("alpha"), &a.role("bravo"));
    assert!(
        connect_url(&forged).await.is_err(),
        "alpha's password must not log in as bravo"
    );
    assert!(connect_url(bravo_url.trim()).await.is_ok());
}

#[tokio::test]
async fn a_different_server_secret_is_refused() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let mut cmd = a.command(&["db", "url", "--schema", "alpha"]);
    cmd.env("APOTHECA_CONTROL__SECRET_KEY", "not-the-same-secret");
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("server secret is not the one"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "no URL with a wrong password is printed"
    );
}

#[tokio::test]
async fn the_worker_start_up_check_accepts_only_its_own_role() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    a.create("bravo").await;
    let url = a.ok(&["db", "url", "--schema", "alpha"]).await;
    let worker = apotheca_testkit::binary("apotheca-worker");
    let check = |schema: &str| {
        std::process::Command::new(&worker)
            .args(["--schema", schema, "--check", "--database-url", url.trim()])
            .env_remove("DATABASE_URL")
            .current_dir(a.dir.path())
            .output()
            .unwrap()
    };
    let ok = check("alpha");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let wrong = check("bravo");
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("search_path"));
}

/// A tenant role may change its own settings (`ALTER ROLE CURRENT_USER ... SET`, say through
/// an SQL injection): its next worker would refuse to start (its `search_path` is not its
/// schema). Control puts them back before it starts a worker, and says so in its log.
#[tokio::test]
async fn a_role_that_changed_its_own_settings_gets_them_back_before_its_worker_starts() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let url = a.ok(&["db", "url", "--schema", "alpha"]).await;
    let url = url.trim();
    let alpha = connect_url(url).await.unwrap();
    let database: String = alpha
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    alpha
        .batch_execute(&format!(
            "ALTER ROLE CURRENT_USER IN DATABASE {} SET search_path = public;
             ALTER ROLE CURRENT_USER SET default_transaction_read_only = on;
             ALTER ROLE CURRENT_USER SET statement_timeout = '1ms';",
            apotheca_common::names::quote_ident(&database)
        ))
        .await
        .expect("a role may change its own settings");
    drop(alpha);
    let changed = connect_url(url).await.unwrap();
    let search_path: String = changed
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(search_path, "public");
    drop(changed);

    let d = a.serve(&[]).await;
    let endpoints = d.wake("alpha").await;
    apotheca_testkit::system::daemon::assert_serves(&endpoints[0], "alpha").await;
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(
        log.lines().any(|l| l.contains("settings had been changed")
            && l.contains("schema=alpha")
            && l.contains("default_transaction_read_only=on")),
        "{log}"
    );
    let alpha = connect_url(url).await.unwrap();
    for (setting, want) in [
        ("search_path", "alpha"),
        ("default_transaction_read_only", "off"),
        ("statement_timeout", "30s"),
        ("idle_in_transaction_session_timeout", "1min"),
    ] {
        let now: String = alpha
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(now, want, "{setting}");
    }
    // Said once, for this tenant.
    let log_path = d.log.clone();
    assert!(d.stop().await.success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    let told = log
        .lines()
        .filter(|l| l.contains("settings had been changed"))
        .collect::<Vec<_>>();
    assert_eq!(told.len(), 1, "{told:?}");
}
