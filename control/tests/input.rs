//! Bad input: a clear message on stderr, exit status 2, nothing created or changed.

use apotheca_testkit::system::Apotheca;
use futures::StreamExt;
use tokio_postgres::AsyncMessage;

/// Everything an operator could observe: tenants, domains, schemas, roles, records.
async fn snapshot(a: &Apotheca) -> String {
    let c = a.db.client().await;
    let row = c
        .query_one(
            "SELECT (SELECT string_agg(schema_name || ':' || status || ':' || name, ',' ORDER BY schema_name) FROM tenants),
                    (SELECT string_agg(domain || ':' || is_primary, ',' ORDER BY domain) FROM domains),
                    (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace),
                    (SELECT count(*) FROM apotheca_migrations)::text",
            &[],
        )
        .await
        .unwrap();
    let roles = c
        .query_one(
            "SELECT count(*)::text FROM pg_roles WHERE rolname = $1",
            &[&a.role("alpha")],
        )
        .await
        .unwrap();
    format!(
        "{:?} {:?} {:?} {:?} {:?}",
        row.get::<_, Option<String>>(0),
        row.get::<_, Option<String>>(1),
        row.get::<_, Option<String>>(2),
        row.get::<_, String>(3),
        roles.get::<_, String>(0)
    )
}

#[tokio::test]
async fn bad_input_is_refused_with_status_2_and_changes_nothing() {
    let a = Apotheca::migrated().await;
    a.ok(&[
        "create-tenant",
        "--name",
        "Alpha",
        "--schema",
        "alpha",
        "--domain",
        "alpha.localhost",
    ])
    .await;
    a.ok(&[
        "add-domain",
        "--schema",
        "alpha",
        "--domain",
        "second.localhost",
    ])
    .await;
    let before = snapshot(&a).await;
    let long_name = "n".repeat(201);
    let long_schema = "a".repeat(64);
    let long_label = format!("{}.localhost", "l".repeat(64));
    let long_domain = vec!["abcdefghi"; 26].join(".");
    let create = |schema: &str, domain: &str, name: &str| -> Vec<String> {
        vec![
            "create-tenant".into(),
            format!("--name={name}"),
            format!("--schema={schema}"),
            format!("--domain={domain}"),
        ]
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            create("Bad", "x.localhost", "X"),
            "schema name \"Bad\" is invalid",
        ),
        (create("1abc", "x.localhost", "X"), "is invalid"),
        (create("my-pharmacy", "x.localhost", "X"), "is invalid"),
        (create(&long_schema, "x.localhost", "X"), "is invalid"),
        (create("", "x.localhost", "X"), "schema name is empty"),
        (create("public", "x.localhost", "X"), "reserved"),
        (create("pg_temp_x", "x.localhost", "X"), "reserved"),
        (create("information_schema", "x.localhost", "X"), "reserved"),
        (create("apotheca_spare_abc", "x.localhost", "X"), "reserved"),
        (create("select", "x.localhost", "X"), "SQL keyword"),
        (
            create("alpha", "x.localhost", "X"),
            "schema \"alpha\" already exists",
        ),
        (
            create("delta", "x.localhost:8080", "X"),
            "must not contain a port",
        ),
        (
            create("delta", "http://x.localhost", "X"),
            "must not contain a port",
        ),
        (create("delta", "a..localhost", "X"), "empty label"),
        (create("delta", "-a.localhost", "X"), "hyphen"),
        (
            create("delta", "a_b.localhost", "X"),
            "not a valid host name",
        ),
        (create("delta", "127.0.0.1", "X"), "IP address"),
        (create("delta", &long_label, "X"), "not a valid host name"),
        (create("delta", &long_domain, "X"), "not a valid host name"),
        (create("delta", "", "X"), "domain is empty"),
        (
            create("delta", "ALPHA.localhost.", "X"),
            "already used by tenant \"Alpha\" (schema alpha)",
        ),
        (
            create("delta", "Second.LOCALHOST", "X"),
            "already used by tenant \"Alpha\"",
        ),
        (create("delta", "d.localhost", ""), "name is empty"),
        (create("delta", "d.localhost", "   "), "name is empty"),
        (
            create("delta", "d.localhost", &long_name),
            "longer than 200",
        ),
        (create("delta", "d.localhost", "a\tb"), "control characters"),
        (
            ["suspend-tenant", "--schema", "nope"]
                .map(String::from)
                .to_vec(),
            "no tenant with schema \"nope\"",
        ),
        (
            ["resume-tenant", "--schema", "nope"]
                .map(String::from)
                .to_vec(),
            "no tenant with schema",
        ),
        (
            ["delete-tenant", "--schema", "nope", "--yes"]
                .map(String::from)
                .to_vec(),
            "no tenant with schema",
        ),
        (
            ["delete-tenant", "--schema", "public", "--yes"]
                .map(String::from)
                .to_vec(),
            "reserved",
        ),
        (
            ["delete-tenant", "--schema", "alpha"]
                .map(String::from)
                .to_vec(),
            "add --yes",
        ),
        (
            ["add-domain", "--schema", "nope", "--domain", "n.localhost"]
                .map(String::from)
                .to_vec(),
            "no tenant with schema",
        ),
        (
            [
                "add-domain",
                "--schema",
                "alpha",
                "--domain",
                "second.localhost",
            ]
            .map(String::from)
            .to_vec(),
            "already used",
        ),
        (
            ["remove-domain", "--domain", "alpha.localhost"]
                .map(String::from)
                .to_vec(),
            "primary domain",
        ),
        (
            [
                "remove-domain",
                "--domain",
                "alpha.localhost",
                "--new-primary",
                "alpha.localhost",
            ]
            .map(String::from)
            .to_vec(),
            "another domain",
        ),
        (
            ["remove-domain", "--domain", "nowhere.localhost"]
                .map(String::from)
                .to_vec(),
            "no tenant has domain",
        ),
        (
            ["db", "url", "--schema", "nope"].map(String::from).to_vec(),
            "no tenant with schema",
        ),
        (
            ["migrate-schemas", "--schema", "nope"]
                .map(String::from)
                .to_vec(),
            "no tenant with schema",
        ),
        (
            ["db", "start"].map(String::from).to_vec(),
            "manage only the private cluster",
        ),
        (
            ["no-such-command"].map(String::from).to_vec(),
            "unrecognized subcommand",
        ),
    ];
    for (args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = a.fails(&args, 2).await;
        assert!(
            run.stderr.contains(expected),
            "apotheca {args:?}: stderr lacks {expected:?}:\n{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    assert_eq!(snapshot(&a).await, before, "bad input changed something");
}

#[tokio::test]
async fn domains_status_and_notifications() {
    let a = Apotheca::migrated().await;
    // Exactly what the proxy will do: LISTEN and read notifications off the connection.
    let (listener, mut conn) = tokio_postgres::connect(&a.db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(msg)) = messages.next().await {
            if let AsyncMessage::Notification(n) = msg {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    listener
        .batch_execute("LISTEN apotheca_tenants")
        .await
        .unwrap();

    a.create("alpha").await;
    a.ok(&[
        "add-domain",
        "--schema",
        "alpha",
        "--domain",
        "www.alpha.example",
        "--primary",
    ])
    .await;
    let list = a.tenants().await;
    assert_eq!(
        list[0]["domains"],
        serde_json::json!(["www.alpha.example", "alpha.localhost"])
    );
    a.ok(&[
        "remove-domain",
        "--domain",
        "www.alpha.example",
        "--new-primary",
        "alpha.localhost",
    ])
    .await;
    assert_eq!(
        a.tenants().await[0]["domains"],
        serde_json::json!(["alpha.localhost"])
    );
    // Removing a non-primary domain while naming the new primary also works.
    a.ok(&[
        "add-domain",
        "--schema",
        "alpha",
        "--domain",
        "b.alpha.example",
    ])
    .await;
    a.ok(&[
        "add-domain",
        "--schema",
        "alpha",
        "--domain",
        "c.alpha.example",
    ])
    .await;
    a.ok(&[
        "remove-domain",
        "--domain",
        "b.alpha.example",
        "--new-primary",
        "c.alpha.example",
    ])
    .await;
    assert_eq!(
        a.tenants().await[0]["domains"],
        serde_json::json!(["c.alpha.example", "alpha.localhost"])
    );
    a.ok(&[
        "remove-domain",
        "--domain",
        "c.alpha.example",
        "--new-primary",
        "alpha.localhost",
    ])
    .await;
    let run = a
        .fails(&["remove-domain", "--domain", "alpha.localhost"], 2)
        .await;
    assert!(run.stderr.contains("only domain"), "{}", run.stderr);

    assert!(a
        .ok(&["suspend-tenant", "--schema", "alpha"])
        .await
        .contains("now suspended"));
    assert_eq!(a.tenants().await[0]["status"], "suspended");
    assert!(a
        .ok(&["suspend-tenant", "--schema", "alpha"])
        .await
        .contains("already suspended"));
    assert!(a
        .ok(&["resume-tenant", "--schema", "alpha"])
        .await
        .contains("now active"));
    a.ok(&["delete-tenant", "--schema", "alpha", "--yes"]).await;

    let mut ops = Vec::new();
    while ops.len() < 10 {
        let payload = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("notification within 10 s")
            .expect("listener alive");
        let event: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(event["schema"], "alpha");
        ops.push(event["op"].as_str().unwrap().to_owned());
    }
    let want = [
        "created",
        "domain_added",
        "domain_removed",
        "domain_added",
        "domain_added",
        "domain_removed",
        "domain_removed",
        "suspended",
        "resumed",
        "deleted",
    ];
    assert_eq!(ops, want);
    drop(listener);
}
