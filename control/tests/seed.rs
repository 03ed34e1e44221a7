//! `seed-data` and `create-tenant --admin-user`: through the CLI, checked in the database.

use apotheca_testkit::system::Apotheca;

#[tokio::test]
async fn seed_data_fills_a_consistent_pharmacy_once() {
    let a = Apotheca::migrated().await;
    a.create("acme").await;
    let out = a.ok(&["seed-data", "--schema", "acme"]).await;
    assert!(out.contains("seeded acme: 22 medicines"), "{out}");
    assert_eq!(
        out.matches("shown once").count(),
        3,
        "three users with one-time passwords: {out}"
    );
    let c = a.db.client().await;
    let q = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert!(q("SELECT count(*) FROM acme.medicines").await >= 20);
    assert!(q("SELECT count(DISTINCT dosage_form) FROM acme.medicines").await >= 6);
    assert_eq!(q("SELECT count(*) FROM acme.suppliers").await, 2);
    assert_eq!(q("SELECT count(*) FROM acme.customers").await, 2);
    assert_eq!(q("SELECT count(*) FROM acme.company").await, 1);
    assert!(q("SELECT count(*) FROM acme.batches WHERE expires_on <= current_date AND quantity_on_hand > 0").await >= 1, "an expired batch");
    assert!(q("SELECT count(*) FROM acme.batches WHERE expires_on BETWEEN current_date + 1 AND current_date + 29").await >= 1, "one expiring soon");
    assert!(
        q("SELECT count(*) FROM acme.medicines m WHERE NOT EXISTS (SELECT 1 FROM acme.batches b WHERE b.medicine_id = m.id AND b.quantity_on_hand > 0)").await >= 1,
        "one out of stock"
    );
    assert!(q("SELECT count(*) FROM acme.invoices").await >= 3);
    assert!(
        q("SELECT count(DISTINCT created_at::date) FROM acme.invoices").await >= 3,
        "spread over the week"
    );
    assert_eq!(
        q("SELECT count(*) FROM acme.invoices WHERE created_at < now() - interval '8 days'").await,
        0
    );
    // Stock = batches = ledger.
    assert_eq!(
        q("SELECT count(*) FROM acme.batches b WHERE quantity_on_hand <> (SELECT coalesce(sum(quantity), 0) FROM acme.stock_movements m WHERE m.batch_id = b.id)").await,
        0
    );
    assert_eq!(q("SELECT count(*) FROM acme.invoices i WHERE i.subtotal <> (SELECT sum(line_total) FROM acme.invoice_lines l WHERE l.invoice_id = i.id)").await, 0);

    // Twice: refused (status 2), nothing duplicated; --clear replaces the data, keeps users.
    let run = a.fails(&["seed-data", "--schema", "acme"], 2).await;
    assert!(run.stderr.contains("--clear"), "{}", run.stderr);
    assert_eq!(q("SELECT count(*) FROM acme.medicines").await, 22);
    let out = a.ok(&["seed-data", "--schema", "acme", "--clear"]).await;
    assert!(out.contains("kept") && !out.contains("shown once"), "{out}");
    assert_eq!(q("SELECT count(*) FROM acme.medicines").await, 22);
    assert_eq!(q("SELECT count(*) FROM acme.users").await, 3);
    assert_eq!(
        q("SELECT min(number) FROM acme.invoices").await,
        1,
        "numbering restarts"
    );
    a.fails(&["seed-data", "--schema", "nope"], 2).await;
}

#[tokio::test]
async fn create_tenant_with_its_first_admin() {
    let a = Apotheca::migrated().await;
    let out = a
        .ok(&[
            "create-tenant",
            "--name",
            "A",
            "--schema",
            "alpha",
            "--domain",
            "alpha.localhost",
            "--admin-user",
            "owner",
        ])
        .await;
    let password = out
        .split("admin login: owner / ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap();
    let hash: String =
        a.db.client()
            .await
            .query_one(
                "SELECT password_hash FROM alpha.users WHERE username = 'owner' AND role = 'admin'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert!(apotheca_pharmacy::accounts::verify_password(
        &hash, password
    ));

    let file = a.dir.path().join("pw");
    std::fs::write(&file, "a good long password\n").unwrap();
    let f = file.to_str().unwrap();
    let out = a
        .ok(&[
            "create-tenant",
            "--name",
            "B",
            "--schema",
            "bravo",
            "--domain",
            "bravo.localhost",
            "--admin-user",
            "boss",
            "--admin-password-file",
            f,
        ])
        .await;
    assert!(
        !out.contains("admin login"),
        "a given password is not printed"
    );
    let hash: String =
        a.db.client()
            .await
            .query_one(
                "SELECT password_hash FROM bravo.users WHERE username = 'boss'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert!(apotheca_pharmacy::accounts::verify_password(
        &hash,
        "a good long password"
    ));

    std::fs::write(&file, "short\n").unwrap();
    let run = a
        .fails(
            &[
                "create-tenant",
                "--name",
                "C",
                "--schema",
                "charlie",
                "--domain",
                "charlie.localhost",
                "--admin-user",
                "boss",
                "--admin-password-file",
                f,
            ],
            2,
        )
        .await;
    assert!(run.stderr.contains("at least 8"), "{}", run.stderr);
    let run = a
        .fails(
            &[
                "create-tenant",
                "--name",
                "C",
                "--schema",
                "charlie",
                "--domain",
                "charlie.localhost",
                "--admin-user",
                "bad name",
            ],
            2,
        )
        .await;
    assert!(run.stderr.contains("admin username"), "{}", run.stderr);
    assert_eq!(a.traces_of("charlie").await, (false, false, 0));
}
