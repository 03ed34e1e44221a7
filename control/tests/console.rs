//! The operator console's pages end to end, on the public worker of a real daemon: an
//! operator creates a pharmacy, suspends and resumes it, adds and removes domains, changes
//! its worker policy and deletes it, and each change is really in `public.tenants` and
//! `public.domains` (or gone from the database). Refused input is answered on its form with
//! the message next to the field and the values kept; a form without its CSRF token changes
//! nothing; the list shows each tenant's ready workers and requests of the last minute.

use std::path::Path;
use std::time::Duration;

use apotheca_testkit::system::daemon::{ready_pids, PATIENCE};
use apotheca_testkit::system::site::{api, send, Site};
use apotheca_testkit::system::Apotheca;
use hyper::Method;

/// The tenant row: status and policy (min, max, idle timeout).
async fn row(a: &Apotheca, schema: &str) -> Option<(String, i32, i32, i32)> {
    let c = a.db.client().await;
    c.query_opt(
        "SELECT status, min_workers, max_workers, idle_timeout_secs FROM public.tenants
         WHERE schema_name = $1",
        &[&schema],
    )
    .await
    .unwrap()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

async fn domains(a: &Apotheca, schema: &str) -> Vec<(String, bool)> {
    let c = a.db.client().await;
    c.query(
        "SELECT d.domain, d.is_primary FROM public.domains d
         JOIN public.tenants t ON t.id = d.tenant_id WHERE t.schema_name = $1
         ORDER BY d.domain",
        &[&schema],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test]
async fn an_operator_runs_a_pharmacy_from_the_console() {
    let a = Apotheca::migrated().await;
    a.create_operator("ops", "correct horse battery").await;
    let d = a.serve(&[]).await;
    let mut site = Site::of(&d).await;
    assert_eq!(
        site.log_in("ops", "correct horse battery").await.status,
        303
    );
    let form = site.get("/operator/tenants/new").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.csrf();

    // Refused input: every message next to its field, the values kept, the password not.
    let bad = site
        .post(
            "/operator/tenants/new",
            &[
                ("csrf_token", &csrf),
                ("name", "Green Cross"),
                ("schema", "Green Cross"),
                ("domain", "green cross.test"),
                ("admin_user", "owner"),
                ("admin_password", "short"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    for field in ["schema", "domain", "admin_password"] {
        assert!(
            bad.body.contains(&format!("id=\"e-{field}\"")),
            "{field}: {}",
            bad.body
        );
    }
    assert!(bad.body.contains("value=\"Green Cross\""), "{}", bad.body);
    assert!(bad.body.contains("value=\"owner\""), "{}", bad.body);
    assert!(!bad.body.contains("value=\"short\""), "{}", bad.body);
    assert!(a.tenants().await.is_empty());

    let good = [
        ("csrf_token", csrf.as_str()),
        ("name", "Green Cross"),
        ("schema", "green_cross"),
        ("domain", "green-cross.test"),
        ("admin_user", "owner"),
        ("admin_password", "correct horse"),
    ];
    // Without the CSRF token: refused, nothing made.
    let forged = site.post("/operator/tenants/new", &good[1..]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(a.tenants().await.is_empty());
    let made = site.post("/operator/tenants/new", &good).await;
    assert_eq!(
        (made.status, made.location()),
        (303, "/operator/tenants/green_cross?notice=created"),
        "{}",
        made.body
    );
    assert_eq!(row(&a, "green_cross").await.unwrap().0, "active");
    assert_eq!(
        domains(&a, "green_cross").await,
        [("green-cross.test".into(), true)]
    );
    // Taken: the schema's message next to it.
    let taken = site.post("/operator/tenants/new", &good).await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    assert!(taken.body.contains("id=\"e-schema\""), "{}", taken.body);

    // Its admin logs in on the new pharmacy's worker.
    let tenant = d.wake("green_cross").await;
    let worker = Path::new(tenant[0].strip_prefix("unix:").unwrap()).to_owned();
    let login = send(
        &worker,
        Method::POST,
        "/api/v1/auth/login",
        &[
            ("host", "green-cross.test"),
            ("content-type", "application/json"),
        ],
        r#"{"username": "owner", "password": "correct horse"}"#,
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);

    // The list: status, domains, ready workers and the requests it just served.
    for _ in 0..4 {
        let page = send(
            &worker,
            Method::GET,
            "/login",
            &[("host", "green-cross.test")],
            "",
        )
        .await;
        assert_eq!(page.status, 200);
    }
    let token = site.token().unwrap();
    let started = tokio::time::Instant::now();
    let listed = loop {
        let (status, list) = api(&d, Method::GET, "/v1/console/tenants", Some(&token), "").await;
        assert_eq!(status, 200, "{list}");
        let t = list["tenants"][0].clone();
        if t["requests_last_minute"].as_u64() >= Some(5) {
            break t;
        }
        assert!(started.elapsed() < PATIENCE, "no requests counted: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(listed["workers"], 1, "{listed}");
    assert_eq!(listed["state"], "running", "{listed}");
    assert!(listed["last_request_at"].is_string(), "{listed}");
    let page = site.get("/operator/tenants").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for text in ["Green Cross", "green-cross.test", "Requests / min", "UTC"] {
        assert!(page.body.contains(text), "{text}: {}", page.body);
    }

    let detail = site.get("/operator/tenants/green_cross").await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    // Its domains link to its login page on the port the console came in by.
    assert!(
        detail
            .body
            .contains("href=\"http://green-cross.test:8080/login\""),
        "{}",
        detail.body
    );
    let csrf = detail.csrf();
    // Suspend and resume: what the tenant row says, and the button the page offers.
    let plain = site
        .post("/operator/tenants/green_cross/suspend", &[])
        .await;
    assert_eq!(plain.status, 403, "{}", plain.body);
    assert_eq!(row(&a, "green_cross").await.unwrap().0, "active");
    let done = site
        .post(
            "/operator/tenants/green_cross/suspend",
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(
        done.location(),
        "/operator/tenants/green_cross?notice=suspended"
    );
    assert_eq!(row(&a, "green_cross").await.unwrap().0, "suspended");
    d.wait_for("green_cross", "suspended", |t| {
        t["state"] == "suspended" && ready_pids(t).is_empty()
    })
    .await;
    let page = site
        .get("/operator/tenants/green_cross?notice=suspended")
        .await;
    assert!(
        page.body
            .contains("action=\"/operator/tenants/green_cross/resume\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("is suspended"), "{}", page.body);
    let done = site
        .post(
            "/operator/tenants/green_cross/resume",
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(
        done.location(),
        "/operator/tenants/green_cross?notice=resumed"
    );
    assert_eq!(row(&a, "green_cross").await.unwrap().0, "active");

    // Domains: added (primary when asked), a taken one refused next to the field.
    let add = |domain: &'static str, primary: bool| {
        let mut fields = vec![("csrf_token", csrf.clone()), ("domain", domain.to_owned())];
        if primary {
            fields.push(("primary", "on".to_owned()));
        }
        fields
    };
    for (domain, primary) in [("www.green-cross.test", false), ("green.example", true)] {
        let fields = add(domain, primary);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let done = site
            .post("/operator/tenants/green_cross/domains", &fields)
            .await;
        assert_eq!(
            done.location(),
            "/operator/tenants/green_cross?notice=domain_added",
            "{}",
            done.body
        );
    }
    assert_eq!(
        domains(&a, "green_cross").await,
        [
            ("green-cross.test".into(), false),
            ("green.example".into(), true),
            ("www.green-cross.test".into(), false)
        ]
    );
    let fields = [
        ("csrf_token", csrf.as_str()),
        ("domain", "green-cross.test"),
    ];
    let taken = site
        .post("/operator/tenants/green_cross/domains", &fields)
        .await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    assert!(taken.body.contains("id=\"e-domain\""), "{}", taken.body);
    assert!(taken.body.contains("already used"), "{}", taken.body);
    assert!(
        taken.body.contains("value=\"green-cross.test\""),
        "{}",
        taken.body
    );

    // Removing: the primary only with the next one named; another at once.
    let remove = |domain: &'static str, next: &'static str| {
        vec![
            ("csrf_token", csrf.clone()),
            ("domain", domain.to_owned()),
            ("new_primary", next.to_owned()),
        ]
    };
    let fields = remove("green.example", "");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = site
        .post("/operator/tenants/green_cross/domains/remove", &fields)
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("primary domain"), "{}", refused.body);
    for (domain, next) in [
        ("www.green-cross.test", ""),
        ("green.example", "green-cross.test"),
    ] {
        let fields = remove(domain, next);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let done = site
            .post("/operator/tenants/green_cross/domains/remove", &fields)
            .await;
        assert_eq!(
            done.location(),
            "/operator/tenants/green_cross?notice=domain_removed",
            "{}",
            done.body
        );
    }
    assert_eq!(
        domains(&a, "green_cross").await,
        [("green-cross.test".into(), true)]
    );
    let page = site.get("/operator/tenants/green_cross").await;
    assert!(page.body.contains("The only domain"), "{}", page.body);

    // The worker policy, checked by control: min above max is refused next to min.
    let policy = |min: &'static str, max: &'static str, idle: &'static str| {
        [
            ("csrf_token", csrf.clone()),
            ("min_workers", min.to_owned()),
            ("max_workers", max.to_owned()),
            ("idle_timeout_secs", idle.to_owned()),
        ]
    };
    let fields = policy("5", "2", "120");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = site
        .post("/operator/tenants/green_cross/policy", &fields)
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("id=\"e-min_workers\""),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("value=\"5\""), "{}", refused.body);
    let fields = policy("1", "3", "x");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = site
        .post("/operator/tenants/green_cross/policy", &fields)
        .await;
    assert!(
        refused.body.contains("id=\"e-idle_timeout_secs\""),
        "{}",
        refused.body
    );
    assert_eq!(row(&a, "green_cross").await.unwrap().1, 0);
    let fields = policy("1", "3", "120");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = site
        .post("/operator/tenants/green_cross/policy", &fields)
        .await;
    assert_eq!(
        done.location(),
        "/operator/tenants/green_cross?notice=policy",
        "{}",
        done.body
    );
    assert_eq!(
        row(&a, "green_cross").await.unwrap(),
        ("active".into(), 1, 3, 120)
    );
    d.wait_for("green_cross", "on its new policy", |t| {
        t["policy"]["max_workers"] == 3 && t["policy"]["idle_timeout_secs"] == 120
    })
    .await;

    // Deleting: a confirmation page; a wrong name changes nothing; the schema name deletes.
    let confirm = site.get("/operator/tenants/green_cross/delete").await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(
        confirm.body.contains("Type the schema name"),
        "{}",
        confirm.body
    );
    let fields = [("csrf_token", csrf.as_str()), ("confirm", "green")];
    let wrong = site
        .post("/operator/tenants/green_cross/delete", &fields)
        .await;
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    assert!(wrong.body.contains("id=\"e-confirm\""), "{}", wrong.body);
    assert!(wrong.body.contains("value=\"green\""), "{}", wrong.body);
    assert!(row(&a, "green_cross").await.is_some());
    let no_token = site
        .post(
            "/operator/tenants/green_cross/delete",
            &[("confirm", "green_cross")],
        )
        .await;
    assert_eq!(no_token.status, 403);
    assert!(row(&a, "green_cross").await.is_some());
    let fields = [("csrf_token", csrf.as_str()), ("confirm", "green_cross")];
    let gone = site
        .post("/operator/tenants/green_cross/delete", &fields)
        .await;
    assert_eq!(
        gone.location(),
        "/operator/tenants?notice=deleted",
        "{}",
        gone.body
    );
    assert_eq!(a.traces_of("green_cross").await, (false, false, 0));
    let page = site.get("/operator/tenants/green_cross").await;
    assert_eq!(page.status, 404, "{}", page.body);
    assert!(page.body.contains("/operator/tenants"), "{}", page.body);
    d.stop().await;
}
