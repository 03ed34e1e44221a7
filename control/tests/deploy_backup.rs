//! `deploy/nginx-free/backup.sh` and `restore.sh` against a real cluster (the test kit's),
//! run as an operator would with the real `apotheca` binary: a seeded pharmacy's schema
//! backed up, damaged, and restored to exactly what it held, its workers taken down by the
//! script while a real daemon runs, and its role working again; backups that do not fit are
//! refused with nothing changed; and a whole database restored into an empty one on a
//! "new cluster" (its tenant roles gone), where `sync-roles` gives the tenants their roles
//! back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apotheca_testkit::system::daemon::{assert_serves, ready_pids};
use apotheca_testkit::system::{Apotheca, Run};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/nginx-free")
        .join(name)
}

/// Runs a deploy script with the same environment the test's `apotheca` gets, against
/// `database_url`.
async fn run_script(a: &Apotheca, name: &str, args: &[&str], database_url: &str) -> Run {
    let out = tokio::process::Command::new("bash")
        .arg(script(name))
        .args(args)
        .current_dir(a.dir.path())
        .env("DATABASE_URL", database_url)
        .env("APOTHECA_BIN", env!("CARGO_BIN_EXE_apotheca"))
        // No settings file: the environment says everything (as in every test here).
        .env(
            "APOTHECA_CONFIG",
            a.dir.path().join("no-such-settings.toml"),
        )
        .env("APOTHECA_CONTROL__STATE_DIR", a.dir.path())
        .env("APOTHECA_CONTROL__SECRET_KEY", "test-secret")
        .env("APOTHECA_CONTROL__SPARE_SCHEMAS", "0")
        .env(
            "APOTHECA_CONTROL__SERVE__SOCKET",
            a.dir.path().join("var/run/apotheca.sock"),
        )
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn ok(a: &Apotheca, name: &str, args: &[&str], url: &str) -> String {
    let r = run_script(a, name, args, url).await;
    assert_eq!(
        r.code, 0,
        "{name} {args:?}:\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    r.stdout
}

/// Every table of `schema` (and the tenant's migration records) as a checksum of its rows.
async fn snapshot(url: &str, schema: &str) -> BTreeMap<String, String> {
    let c = apotheca_testkit::connect_url(url).await.unwrap();
    let tables: Vec<String> = c
        .query(
            "SELECT table_name FROM information_schema.tables
             WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        tables.len() > 10,
        "{schema} has the pharmacy's tables: {tables:?}"
    );
    let mut out = BTreeMap::new();
    for t in tables {
        let sql = format!(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '')
             FROM \"{schema}\".\"{t}\" x"
        );
        let row = c.query_one(&sql, &[]).await.unwrap();
        out.insert(t, row.get::<_, String>(0));
    }
    let records = c
        .query_one(
            "SELECT string_agg(version || ' ' || checksum, ',' ORDER BY version)
             FROM public.apotheca_migrations WHERE schema_name = $1",
            &[&schema],
        )
        .await
        .unwrap();
    out.insert("(migrations)".into(), records.get(0));
    out
}

/// The tenant's own role can log in and read and write its tables.
async fn role_works(a: &Apotheca, schema: &str, url: &str) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_apotheca"))
        .args(["db", "url", "--schema", schema])
        .env("DATABASE_URL", url)
        .env("APOTHECA_CONTROL__STATE_DIR", a.dir.path())
        .env("APOTHECA_CONTROL__SECRET_KEY", "test-secret")
        .env_remove("APOTHECA_CONFIG")
        .current_dir(a.dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let role_url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let c = apotheca_testkit::connect_url(&role_url)
        .await
        .unwrap_or_else(|e| panic!("{schema}'s role cannot log in: {e}"));
    let n: i64 = c
        .query_one("SELECT count(*) FROM medicines", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n >= 20, "{n}");
    c.execute(
        "UPDATE settings SET low_stock_threshold = low_stock_threshold",
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("{schema}'s role cannot write: {e}"));
    // And nothing beyond its own schema's rows: no objects of its own, in public neither.
    let created = c
        .batch_execute("CREATE TABLE public.intruder (id int)")
        .await;
    assert!(
        created.is_err(),
        "{schema}'s role created a table in public"
    );
}

fn files(stdout: &str) -> Vec<String> {
    stdout.lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn a_tenants_backup_restores_its_data_while_its_workers_are_taken_down() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    a.create("beta").await;
    a.ok(&["seed-data", "--schema", "alpha"]).await;
    a.ok(&["seed-data", "--schema", "beta"]).await;
    let url = a.db.url();
    let out_dir = a.dir.path().join("backups");
    std::fs::create_dir(&out_dir).unwrap();
    let before = snapshot(&url, "alpha").await;
    let beta_before = snapshot(&url, "beta").await;

    let written = files(
        &ok(
            &a,
            "backup.sh",
            &["--schema", "alpha", "--out", out_dir.to_str().unwrap()],
            &url,
        )
        .await,
    );
    assert_eq!(written.len(), 2, "{written:?}");
    let dump = &written[0];
    assert!(
        dump.ends_with(".dump") && written[1].ends_with(".migrations.csv"),
        "{written:?}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dump).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "backups are for the apotheca user only"
    );

    // Damage: rows changed and deleted, a table gone, a sale's lines gone.
    let c = a.db.client().await;
    c.batch_execute(
        "UPDATE alpha.medicines SET name = 'wrong';
         DELETE FROM alpha.invoice_lines;
         DROP TABLE alpha.stock_movements CASCADE;",
    )
    .await
    .unwrap();
    assert_ne!(snapshot(&url, "alpha").await, before);

    // A daemon runs, with a worker of alpha: the restore takes it down first.
    let d = a.serve(&[]).await;
    let endpoint = d.wake("alpha").await.remove(0);
    assert_serves(&endpoint, "alpha").await;
    let worker = d.ready_pids("alpha").await;
    let out = ok(&a, "restore.sh", &["--schema", "alpha", dump], &url).await;
    assert!(
        out.contains("restored alpha") && out.contains("alpha resumed"),
        "{out}"
    );
    assert_eq!(
        snapshot(&url, "alpha").await,
        before,
        "alpha is as it was backed up"
    );
    assert_eq!(
        snapshot(&url, "beta").await,
        beta_before,
        "beta was not touched"
    );
    let t = d.tenant("alpha").await;
    assert!(
        ready_pids(&t).iter().all(|p| !worker.contains(p)),
        "the old worker was drained: {t}"
    );
    let tenants = a.tenants().await;
    let alpha = tenants.iter().find(|t| t["schema"] == "alpha").unwrap();
    assert_eq!(alpha["status"], "active", "{alpha}");
    // Its role logs in and works on the restored tables, and a new worker serves it.
    role_works(&a, "alpha", &url).await;
    let endpoint = d.wake("alpha").await.remove(0);
    assert_serves(&endpoint, "alpha").await;
    assert!(d.stop().await.success());

    // A suspended tenant stays suspended; with no daemon there are no workers to wait for.
    a.ok(&["suspend-tenant", "--schema", "alpha"]).await;
    c.batch_execute("UPDATE alpha.customers SET name = 'wrong'")
        .await
        .unwrap();
    assert_ne!(snapshot(&url, "alpha").await, before);
    let out = ok(&a, "restore.sh", &["--schema", "alpha", dump], &url).await;
    assert!(
        out.contains("restored alpha") && !out.contains("resumed"),
        "{out}"
    );
    let tenants = a.tenants().await;
    let alpha = tenants.iter().find(|t| t["schema"] == "alpha").unwrap();
    assert_eq!(alpha["status"], "suspended");
    assert_eq!(snapshot(&url, "alpha").await, before);
}

#[tokio::test]
async fn backups_that_do_not_fit_are_refused_and_change_nothing() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    a.create("beta").await;
    a.ok(&["seed-data", "--schema", "alpha"]).await;
    let url = a.db.url();
    let dir = a.dir.path().join("backups");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let alpha_dump =
        files(&ok(&a, "backup.sh", &["--schema", "alpha", "--out", d], &url).await).remove(0);
    let before = snapshot(&url, "alpha").await;
    let beta = snapshot(&url, "beta").await;

    // --keep-days removes that tenant's old backups, and only those.
    for name in [
        "alpha-20200101T000000Z.dump",
        "alpha-20200101T000000Z.migrations.csv",
        "beta-20200101T000000Z.dump",
    ] {
        let path = dir.join(name);
        std::fs::write(&path, "old").unwrap();
        let touched = std::process::Command::new("touch")
            .args(["-d", "20 days ago"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(touched.success());
    }
    let out = ok(
        &a,
        "backup.sh",
        &["--schema", "alpha", "--out", d, "--keep-days", "14"],
        &url,
    )
    .await;
    assert_eq!(out.matches("removed ").count(), 2, "{out}");
    assert!(!dir.join("alpha-20200101T000000Z.dump").exists());
    assert!(dir.join("beta-20200101T000000Z.dump").exists());

    let refused = |args: Vec<String>, script_name: &'static str, says: &'static str| {
        let a = &a;
        let url = url.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = run_script(a, script_name, &args, &url).await;
            assert_eq!(
                r.code, 2,
                "{script_name} {args:?}: {}{}",
                r.stdout, r.stderr
            );
            assert!(
                r.stderr.contains(says),
                "{script_name} {args:?}: {}",
                r.stderr
            );
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    refused(
        s(&["--schema", "nobody", "--out", d]),
        "backup.sh",
        "no tenant with schema nobody",
    )
    .await;
    refused(
        s(&["--schema", "Bad-Name", "--out", d]),
        "backup.sh",
        "not a tenant schema name",
    )
    .await;
    refused(
        s(&["--schema", "alpha", "--out", "/no/such/folder"]),
        "backup.sh",
        "does not exist",
    )
    .await;
    refused(s(&[]), "backup.sh", "say what to back up").await;
    refused(
        s(&["--all", "--out", d, "--keep-days", "two"]),
        "backup.sh",
        "whole number of days",
    )
    .await;
    // Another tenant's backup is not restored over beta.
    refused(
        s(&["--schema", "beta", &alpha_dump]),
        "restore.sh",
        "not exactly beta",
    )
    .await;
    let junk = dir.join("junk.dump");
    std::fs::write(&junk, "not a dump").unwrap();
    refused(
        s(&["--schema", "alpha", junk.to_str().unwrap()]),
        "restore.sh",
        "not a pg_dump archive",
    )
    .await;
    let lonely = dir.join("lonely.dump");
    std::fs::copy(&alpha_dump, &lonely).unwrap();
    refused(
        s(&["--schema", "alpha", lonely.to_str().unwrap()]),
        "restore.sh",
        "migration records",
    )
    .await;
    // A whole-database restore goes only into an empty database.
    refused(
        s(&["--all", &alpha_dump]),
        "restore.sh",
        "already holds Apotheca's tables",
    )
    .await;
    assert_eq!(snapshot(&url, "alpha").await, before);
    assert_eq!(snapshot(&url, "beta").await, beta);
    let tenants = a.tenants().await;
    assert!(
        tenants.iter().all(|t| t["status"] == "active"),
        "{tenants:?}"
    );
}

#[tokio::test]
async fn a_whole_database_restores_onto_a_new_cluster_and_its_roles_come_back() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    a.ok(&["seed-data", "--schema", "alpha"]).await;
    let url = a.db.url();
    let dir = a.dir.path().join("backups");
    std::fs::create_dir(&dir).unwrap();
    let r = run_script(
        &a,
        "backup.sh",
        &["--all", "--out", dir.to_str().unwrap()],
        &url,
    )
    .await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // The test's secret comes from the environment: the script says to keep it.
    assert!(r.stderr.contains("secret_key"), "{}", r.stderr);
    let dump = files(&r.stdout).remove(0);
    let before = snapshot(&url, "alpha").await;

    // The old database and every role it had are gone, as on a new cluster.
    let role = a.role("alpha");
    let admin = apotheca_testkit::connect(a.db.cluster(), "postgres").await;
    admin
        .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", a.db.name))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP ROLE \"{role}\""))
        .await
        .unwrap();
    let new = apotheca_testkit::TestDb::empty().await;
    let new_url = new.url();

    let out = ok(&a, "restore.sh", &["--all", &dump], &new_url).await;
    assert!(
        out.contains("roles in order: 1 tenant(s)") && out.contains(&role),
        "{out}"
    );
    assert_eq!(snapshot(&new_url, "alpha").await, before);
    role_works(&a, "alpha", &new_url).await;
    // sync-roles is idempotent: a second run creates nothing.
    let again = a
        .command(&["sync-roles", "--json"])
        .env("DATABASE_URL", &new_url)
        .output()
        .await
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(json["tenants"], 1);
    assert_eq!(json["created"], serde_json::json!([]));
    // Restoring again over it is refused.
    let r = run_script(&a, "restore.sh", &["--all", &dump], &new_url).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
}
