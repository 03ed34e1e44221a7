//! Operators and their logins: `create-operator` (good, weak password, taken name, no
//! terminal), `list-operators`, `delete-operator [--deactivate]`; the console's login against
//! a real daemon and public worker (wrong password, 429 after repeated failures of one
//! username from one address while another address still logs in, logout ending the
//! session); the console's API refusing requests without a live token; and neither the
//! public site's role nor a tenant's able to read the operators' tables.

use apotheca_tenancy::db::Database;
use apotheca_tenancy::roles::{self, Secret};
use apotheca_testkit::connect_url;
use apotheca_testkit::system::site::{api, Site};
use apotheca_testkit::system::Apotheca;
use hyper::Method;
use tokio_postgres::error::SqlState;

#[tokio::test]
async fn operators_are_made_listed_and_removed_by_the_cli() {
    let a = Apotheca::migrated().await;
    let create = ["create-operator", "--username", "Alice", "--password-stdin"];
    let run = a.run_with_stdin(&create, "correct horse battery\n").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("created operator alice"),
        "{}",
        run.stdout
    );

    // Weak passwords and a taken name: exit 2, said why, nothing added.
    for weak in ["short", "elevenchars", "zzzzzzzzzzzzzzzz"] {
        let args = ["create-operator", "--username", "bob", "--password-stdin"];
        let run = a.run_with_stdin(&args, &format!("{weak}\n")).await;
        assert_eq!(run.code, 2, "{weak}: {}", run.stderr);
        assert!(run.stderr.contains("password"), "{}", run.stderr);
    }
    let run = a.run_with_stdin(&create, "another good password\n").await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("already taken"), "{}", run.stderr);
    let bad_name = ["create-operator", "--username", "a b", "--password-stdin"];
    let run = a.run_with_stdin(&bad_name, "correct horse battery\n").await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    // Without --password-stdin and with no terminal, it says how to give the password.
    let run = a
        .run_with_stdin(&["create-operator", "--username", "carol"], "x\n")
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--password-stdin"), "{}", run.stderr);

    let list = a.ok(&["list-operators", "--json"]).await;
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (&list[0]["username"], &list[0]["active"]),
        (&"alice".into(), &true.into())
    );
    let c = a.db.client().await;
    let hash: String = c
        .query_one("SELECT password_hash FROM public.operators", &[])
        .await
        .unwrap()
        .get(0);
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let out = a
        .ok(&["delete-operator", "--username", "alice", "--deactivate"])
        .await;
    assert!(out.contains("deactivated"), "{out}");
    assert!(a.ok(&["list-operators"]).await.contains("inactive"));
    a.ok(&["delete-operator", "--username", "ALICE"]).await;
    let run = a
        .fails(&["delete-operator", "--username", "alice"], 2)
        .await;
    assert!(run.stderr.contains("no operator named"), "{}", run.stderr);
    assert!(a.ok(&["list-operators"]).await.contains("no operators yet"));
}

#[tokio::test]
async fn logins_are_checked_limited_and_ended_by_control() {
    let a = Apotheca::migrated().await;
    a.create_operator("ops", "correct horse battery").await;
    let d = a.serve(&[]).await;
    let mut site = Site::of(&d).await;

    // Nothing without a session: the pages go to the login page, the API answers 401.
    let page = site.get("/operator/tenants").await;
    assert_eq!((page.status, page.location()), (303, "/operator/login"));
    for token in [None, Some("forged-token")] {
        for (method, path) in [
            (Method::GET, "/v1/console/tenants"),
            (Method::POST, "/v1/console/tenants/acme/suspend"),
            (Method::GET, "/v1/operators/me"),
        ] {
            let (status, body) = api(&d, method, path, token, "").await;
            assert_eq!(status, 401, "{path}: {body}");
        }
    }

    // A wrong password: 401 on the form, the username kept.
    let wrong = site.log_in("ops", "not the password").await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(
        wrong.body.contains("Wrong username or password"),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains("value=\"ops\""), "{}", wrong.body);
    assert!(site.token().is_none());
    // The login form without its token is refused.
    let forged = site
        .post(
            "/operator/login",
            &[("username", "ops"), ("password", "correct horse battery")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(site.token().is_none());

    // The right one: a session cookie only the console's pages get, then the tenant list.
    let done = site.log_in("OPS", "correct horse battery").await;
    assert_eq!(
        (done.status, done.location()),
        (303, "/operator/tenants"),
        "{}",
        done.body
    );
    let cookie = done.set_cookie("apotheca_operator").unwrap();
    for part in ["Path=/operator", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let token = site.token().unwrap();
    let (status, me) = api(&d, Method::GET, "/v1/operators/me", Some(&token), "").await;
    assert_eq!((status, &me["username"]), (200, &"ops".into()), "{me}");
    let list = site.get("/operator/tenants").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("No pharmacy yet"), "{}", list.body);
    assert!(list.body.contains(">ops <small>operator"), "{}", list.body);
    let stored: i64 =
        a.db.client()
            .await
            .query_one("SELECT count(*) FROM public.operator_sessions", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(stored, 1);

    // Logging out ends the session at control: the old token no longer works.
    let csrf = list.csrf();
    let out = site
        .post("/operator/logout", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(
        (out.status, out.location()),
        (303, "/operator/login?notice=logged_out")
    );
    assert!(site.token().is_none());
    let (status, _) = api(&d, Method::GET, "/v1/console/tenants", Some(&token), "").await;
    assert_eq!(status, 401);

    // Five failures of one username from one address: then refused, even the right password.
    for _ in 0..5 {
        assert_eq!(site.log_in("ops", "guess guess guess").await.status, 401);
    }
    let limited = site.log_in("ops", "correct horse battery").await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.headers.contains_key("retry-after"));
    assert!(
        limited.body.contains("Too many failed logins"),
        "{}",
        limited.body
    );
    assert!(site.token().is_none());
    // Another address is not held back by them.
    site.address = "192.0.2.77".to_owned();
    let elsewhere = site.log_in("ops", "correct horse battery").await;
    assert_eq!(elsewhere.status, 303, "{}", elsewhere.body);

    // Behind https the cookie is Secure.
    let mut https = Site::of(&d).await;
    https.proto = "https";
    https.address = "192.0.2.78".to_owned();
    let done = https.log_in("ops", "correct horse battery").await;
    assert_eq!(done.status, 303, "{}", done.body);
    let cookie = done.set_cookie("apotheca_operator").unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");

    // A deactivated operator's session ends at once.
    let token = site.token().unwrap();
    a.ok(&["delete-operator", "--username", "ops", "--deactivate"])
        .await;
    let page = site.get("/operator/tenants").await;
    assert_eq!((page.status, page.location()), (303, "/operator/login"));
    let (status, _) = api(&d, Method::GET, "/v1/console/tenants", Some(&token), "").await;
    assert_eq!(status, 401);
    d.stop().await;
}

#[tokio::test]
async fn neither_the_public_role_nor_a_tenant_role_reads_operators() {
    let a = Apotheca::migrated().await;
    a.create_operator("ops", "correct horse battery").await;
    a.create("alpha").await;
    // The daemon makes the public site's role.
    let d = a.serve(&[]).await;
    Site::of(&d).await;
    d.stop().await;

    let tenant_url = a.ok(&["db", "url", "--schema", "alpha"]).await;
    let db = Database::from_url(a.db.url().to_owned(), None).unwrap();
    let public = roles::public_role(db.name());
    let public_url = db.role_url(
        &public,
        &roles::role_password(&Secret::from_key("test-secret"), &public),
    );
    for url in [tenant_url.trim(), public_url.as_str()] {
        let client = connect_url(url).await.expect("the role logs in");
        for sql in [
            "SELECT * FROM public.operators",
            "SELECT * FROM public.operator_sessions",
            "SELECT username FROM public.operators",
            "DELETE FROM public.operator_sessions",
        ] {
            let err = client.batch_execute(sql).await.expect_err(sql);
            assert_eq!(
                err.code(),
                Some(&SqlState::INSUFFICIENT_PRIVILEGE),
                "{sql}: {err:?}"
            );
        }
    }
}
