//! The tenancy core through the `apotheca` CLI, against a real PostgreSQL: migrations, tenant
//! lifecycle, failures that must leave nothing behind, and concurrency.

use std::fs;

use apotheca_testkit::system::Apotheca;

/// The last built-in tenant migration's version (they are numbered from 1 without gaps).
fn built() -> i32 {
    static BUILT: std::sync::LazyLock<i32> = std::sync::LazyLock::new(|| {
        apotheca_migrations::MigrationSet::embedded()
            .unwrap()
            .tenant_version()
    });
    *BUILT
}

/// The file name of a tenant migration `n` versions after the built-in ones.
fn later(n: i32, name: &str) -> String {
    format!("{:04}_{name}.sql", built() + n)
}

#[tokio::test]
async fn lifecycle_from_fresh_database_to_delete() {
    let a = Apotheca::empty().await;
    let out = a.ok(&["migrate-schemas", "--shared"]).await;
    assert!(out.contains("migrated 1 schema(s)"), "{out}");
    for s in ["alpha", "bravo", "charlie"] {
        a.create(s).await;
    }
    let list = a.tenants().await;
    let schemas: Vec<&str> = list.iter().map(|t| t["schema"].as_str().unwrap()).collect();
    assert_eq!(schemas, ["alpha", "bravo", "charlie"]);
    assert_eq!(list[0]["domains"][0], "alpha.localhost");
    assert_eq!(list[0]["status"], "active");
    assert_eq!(list[0]["migration_version"], built());
    assert_eq!(list[0]["policy"]["max_workers"], 4);
    // On Citus each tenant's node is listed (first), and its schema is a distributed one.
    assert_eq!(
        list[0]["node"].is_string(),
        apotheca_testkit::citus(),
        "{list:?}"
    );
    let plain = a.ok(&["list-tenants"]).await;
    let first = if apotheca_testkit::citus() {
        "NODE"
    } else {
        "SCHEMA"
    };
    assert!(
        plain.lines().next().unwrap().starts_with(first) && plain.contains("bravo.localhost"),
        "{plain}"
    );

    let plan = a.ok(&["migrate-schemas", "--plan"]).await;
    assert!(
        plan.contains("nothing to apply: 4 schema(s) are current"),
        "{plan}"
    );

    // A new migration in a folder applies to every tenant.
    let dir = a.migrations_copy();
    fs::write(
        dir.join(format!("tenant/{}", later(1, "medicine_note"))),
        "ALTER TABLE medicines ADD COLUMN note text;\nCREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text);\n",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let plan = a
        .ok(&["--migrations-dir", d, "migrate-schemas", "--plan"])
        .await;
    assert_eq!(
        plan.matches(&later(1, "medicine_note")).count(),
        3,
        "{plan}"
    );
    let out = a.ok(&["--migrations-dir", d, "migrate-schemas"]).await;
    assert!(
        out.contains("migrated 3 schema(s) (3 migration(s) applied), 1 already current, 0 failed"),
        "{out}"
    );
    let c = a.db.client().await;
    let with_note: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'medicines' AND column_name = 'note'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(with_note, 3);
    let recorded: i64 = c
        .query_one("SELECT count(*) FROM apotheca_migrations WHERE version = $1 AND name = 'medicine_note' AND duration_ms >= 0", &[&(built() + 1)])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 3);
    // The new table is the tenant role's to use: default privileges granted it at creation.
    let url = a.ok(&["db", "url", "--schema", "bravo"]).await;
    let bravo = apotheca_testkit::connect_url(url.trim()).await.unwrap();
    bravo
        .batch_execute("INSERT INTO notes (body) VALUES ('hi')")
        .await
        .unwrap();

    // An applied file that changed is refused before anything runs, naming the file.
    fs::write(
        dir.join(format!("tenant/{}", later(1, "medicine_note"))),
        "ALTER TABLE medicines ADD COLUMN note2 text;\n",
    )
    .unwrap();
    fs::write(
        dir.join(format!("tenant/{}", later(2, "more"))),
        "ALTER TABLE medicines ADD COLUMN more text;\n",
    )
    .unwrap();
    let shared_next = apotheca_migrations::MigrationSet::embedded()
        .unwrap()
        .shared
        .last()
        .map_or(1, |m| m.version + 1);
    fs::write(
        dir.join(format!("shared/{shared_next:04}_more.sql")),
        "CREATE TABLE public.more (i int);\n",
    )
    .unwrap();
    let run = a
        .fails(&["--migrations-dir", d, "migrate-schemas"], 1)
        .await;
    assert!(
        run.stderr.contains(&format!(
            "migrations/tenant/{} changed after it was applied",
            later(1, "medicine_note")
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("nothing was applied"), "{}", run.stderr);
    let more: i64 = c
        .query_one(
            "SELECT count(*) FROM apotheca_migrations WHERE name = 'more'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(more, 0);
    let shared_more = c
        .query_one("SELECT to_regclass('public.more') IS NOT NULL", &[])
        .await
        .unwrap();
    assert!(
        !shared_more.get::<_, bool>(0),
        "a pending shared migration ran despite the changed file"
    );

    // Delete with an archive: the dump exists, the tenant is gone entirely.
    let archive = a.dir.path().join("charlie.dump");
    let out = a
        .ok(&[
            "delete-tenant",
            "--schema",
            "charlie",
            "--yes",
            "--archive",
            archive.to_str().unwrap(),
        ])
        .await;
    assert!(out.contains("deleted tenant"), "{out}");
    assert!(fs::metadata(&archive).unwrap().len() > 1000);
    assert_eq!(a.traces_of("charlie").await, (false, false, 0));
    assert_eq!(a.tenants().await.len(), 2);
    let domains: i64 = c
        .query_one("SELECT count(*) FROM domains", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(domains, 2);
}

#[tokio::test]
async fn two_concurrent_runs_apply_each_migration_once() {
    let a = Apotheca::migrated().await;
    let schemas: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    for s in &schemas {
        a.create(s).await;
    }
    let dir = a.migrations_copy();
    fs::write(
        dir.join(format!("tenant/{}", later(1, "a"))),
        "ALTER TABLE medicines ADD COLUMN a text;\n",
    )
    .unwrap();
    fs::write(
        dir.join(format!("tenant/{}", later(2, "b"))),
        "ALTER TABLE suppliers ADD COLUMN b text;\n",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let args = [
        "--migrations-dir",
        d,
        "migrate-schemas",
        "--json",
        "--jobs",
        "3",
    ];
    let (one, two) = tokio::join!(a.run(&args), a.run(&args));
    for run in [&one, &two] {
        assert_eq!(run.code, 0, "stdout {} stderr {}", run.stdout, run.stderr);
    }
    let applied = |out: &str| -> usize {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        v["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["applied"].as_array().unwrap().len())
            .sum()
    };
    assert_eq!(
        applied(&one.stdout) + applied(&two.stdout),
        20,
        "each of 2 migrations once per tenant"
    );
    let c = a.db.client().await;
    let rows: i64 = c
        .query_one(
            "SELECT count(*) FROM apotheca_migrations WHERE version IN ($1, $2) AND schema_name <> 'public'",
            &[&(built() + 1), &(built() + 2)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 20);
}

#[tokio::test]
async fn a_schema_broken_by_hand_fails_alone() {
    let a = Apotheca::migrated().await;
    for s in ["alpha", "bravo", "charlie"] {
        a.create(s).await;
    }
    a.db.client()
        .await
        .batch_execute("DROP TABLE bravo.medicines CASCADE")
        .await
        .unwrap();
    let dir = a.migrations_copy();
    fs::write(
        dir.join(format!("tenant/{}", later(1, "note"))),
        "ALTER TABLE medicines ADD COLUMN note text;\nCREATE TABLE notes (id serial PRIMARY KEY, body text);\n",
    )
    .unwrap();
    let run = a
        .fails(
            &["--migrations-dir", dir.to_str().unwrap(), "migrate-schemas"],
            1,
        )
        .await;
    assert!(
        run.stdout.contains("migrated 2 schema(s)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("1 failed"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("FAILED bravo: {}", later(1, "note"))),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("medicines"), "{}", run.stdout);
    let c = a.db.client().await;
    let versions: Vec<(String, i32)> = c
        .query("SELECT schema_name, max(version) FROM apotheca_migrations WHERE schema_name <> 'public' GROUP BY 1 ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        versions,
        [
            ("alpha".into(), built() + 1),
            ("bravo".into(), built()),
            ("charlie".into(), built() + 1)
        ]
    );
}

#[tokio::test]
async fn a_failed_create_leaves_nothing_behind() {
    let a = Apotheca::migrated().await;
    let dir = a.migrations_copy();
    // The failure comes after the schema, tables and records were made in the transaction.
    fs::write(
        dir.join(format!("tenant/{}", later(1, "boom"))),
        "CREATE TABLE x (i int);\nSELECT 1/0;\n",
    )
    .unwrap();
    let run = a
        .fails(
            &[
                "--migrations-dir",
                dir.to_str().unwrap(),
                "create-tenant",
                "--name",
                "A",
                "--schema",
                "alpha",
                "--domain",
                "alpha.localhost",
            ],
            1,
        )
        .await;
    assert!(
        run.stderr.contains(&later(1, "boom")) && run.stderr.contains("division by zero"),
        "{}",
        run.stderr
    );
    assert_eq!(a.traces_of("alpha").await, (false, false, 0));
    let domains: i64 =
        a.db.client()
            .await
            .query_one("SELECT count(*) FROM domains", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(domains, 0);
    // And the same tenant can then be created.
    a.create("alpha").await;
    assert_eq!(
        a.traces_of("alpha").await,
        (true, true, 1 + i64::from(built()))
    );
}

#[tokio::test]
async fn spare_schemas_are_claimed_and_migrated() {
    let a = Apotheca::migrated().await;
    let out = a.ok(&["prepare-spares", "--count", "2"]).await;
    assert!(out.contains("built 2 spare schema(s); 2 ready"), "{out}");
    let c = a.db.client().await;
    let spares = || async {
        let rows =
            a.db.client()
                .await
                .query("SELECT schema_name FROM spare_schemas ORDER BY 1", &[])
                .await
                .unwrap();
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    let before = spares().await;
    a.create("alpha").await;
    let after = spares().await;
    assert_eq!(after.len(), 1);
    let claimed: Vec<_> = before.iter().filter(|s| !after.contains(s)).collect();
    assert_eq!(claimed.len(), 1);
    // The claimed spare became alpha: its records moved, nothing is left under the old name.
    let moved: i64 = c
        .query_one(
            "SELECT count(*) FROM apotheca_migrations WHERE schema_name = $1",
            &[claimed[0]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(moved, 0);
    assert_eq!(
        a.traces_of("alpha").await,
        (true, true, 1 + i64::from(built()))
    );
    assert_eq!(a.tenants().await[0]["migration_version"], built());

    // Spares are migrated with the tenants, and a spare of the old version is not claimed.
    let dir = a.migrations_copy();
    fs::write(
        dir.join(format!("tenant/{}", later(1, "note"))),
        "ALTER TABLE medicines ADD COLUMN note text;\nCREATE TABLE notes (id serial PRIMARY KEY, body text);\n",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let out = a
        .ok(&["--migrations-dir", d, "migrate-schemas", "--no-spares"])
        .await;
    assert!(out.contains("migrated 2 schema(s)"), "{out}");
    let spare_v: i32 = c
        .query_one(
            "SELECT max(version) FROM apotheca_migrations WHERE schema_name = $1",
            &[&after[0]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(spare_v, built() + 1);
    a.ok(&[
        "--migrations-dir",
        d,
        "create-tenant",
        "--name",
        "B",
        "--schema",
        "bravo",
        "--domain",
        "bravo.localhost",
    ])
    .await;
    assert!(spares().await.is_empty(), "the migrated spare was claimed");
    // A worker of bravo's role can use the renamed schema.
    let url = a.ok(&["db", "url", "--schema", "bravo"]).await;
    let role = apotheca_testkit::connect_url(url.trim()).await.unwrap();
    role.batch_execute("INSERT INTO notes (body) VALUES ('made in a spare')")
        .await
        .unwrap();
    role.batch_execute("INSERT INTO customers (name) VALUES ('x')")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_secret_recorded_by_another_process_at_the_same_moment_is_read() {
    // The first command on a database records the secret's check value. Another one at the
    // same moment: its insert waits for the first's commit and does nothing, and it must then
    // read the value on record rather than fail (it did: "unexpected number of rows").
    let a = Apotheca::migrated().await;
    let secret = apotheca_tenancy::roles::Secret::from_key("one secret");
    let mut first = a.db.client().await;
    first
        .batch_execute("DELETE FROM public.control_state WHERE key = 'secret_check'")
        .await
        .unwrap();
    let holding = first.transaction().await.unwrap();
    secret.verify(&holding).await.unwrap();
    let second = a.db.client().await;
    let waiting =
        tokio::spawn(async move { secret.verify(&second).await.map_err(|e| e.to_string()) });
    // Until the second waits on the first's row lock.
    let watch = a.db.client().await;
    let started = std::time::Instant::now();
    while watch
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the second never waited");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    holding.commit().await.unwrap();
    assert_eq!(waiting.await.unwrap(), Ok(()));
}
