//! The HTML pages' access rules: every page renders for the roles that may open it and is a
//! 403 page for the others; menus show only what the role may open; every form POST needs
//! the CSRF token and the role; without a session, pages send the browser to the login page;
//! static files carry long-lived cache headers; unknown addresses are HTML 404 pages (JSON
//! under /api/).

mod support;

use axum::http::StatusCode;
use support::html::{self, stock_up};
use support::TestApp;

const ALL: &str = "APS";
const AP: &str = "AP";
const A: &str = "A";

#[tokio::test]
async fn every_page_renders_for_its_roles_and_is_refused_to_the_others() {
    let app = TestApp::new("pages").await;
    let sessions = [
        ('A', app.login("admin").await),
        ('P', app.login("pharmacist").await),
        ('S', app.login("staff").await),
    ];
    let admin = &sessions[0].1;
    let staff = &sessions[2].1;
    let s = stock_up(&app, admin).await;
    app.expect(
        200,
        app.call(
            axum::http::Method::PUT,
            "/api/v1/company",
            Some(admin),
            Some(serde_json::json!({"name": "Lalitpur Pharmacy"})),
        )
        .await,
    )
    .await;
    // An invoice billed by staff, so that every role may open it.
    let sale = app
        .expect(
            201,
            app.post(
                "/api/v1/sales",
                staff,
                serde_json::json!({"payment_method": "card",
                                   "lines": [{"medicine_id": s.medicine, "quantity": 2}]}),
            )
            .await,
        )
        .await;
    let invoice = sale["id"].as_i64().unwrap();
    let admin_id: i64 = app
        .db()
        .await
        .query_one("SELECT id FROM users WHERE username = 'admin'", &[])
        .await
        .unwrap()
        .get(0);
    let pages: Vec<(String, &str, &str)> = vec![
        ("/dashboard".into(), ALL, "<h1>Dashboard</h1>"),
        ("/alerts".into(), ALL, "<h1>Alerts</h1>"),
        ("/counter".into(), ALL, "<h1>Counter</h1>"),
        ("/invoices".into(), ALL, "<h1>Invoices</h1>"),
        (format!("/invoices/{invoice}"), ALL, "Paracetamol 500 mg"),
        (
            format!("/invoices/{invoice}/receipt"),
            ALL,
            "Lalitpur Pharmacy",
        ),
        ("/customers".into(), ALL, "Sita Sharma"),
        ("/customers/new".into(), ALL, "Add a customer"),
        (format!("/customers/{}", s.customer), ALL, "9841000000"),
        (
            format!("/customers/{}/edit", s.customer),
            ALL,
            "Edit customer",
        ),
        ("/account/password".into(), ALL, "Change your password"),
        ("/medicines".into(), AP, "Paracetamol 500 mg"),
        ("/medicines/new".into(), AP, "Add a medicine"),
        (format!("/medicines/{}", s.medicine), AP, "Stock ledger"),
        (
            format!("/medicines/{}/edit", s.medicine),
            AP,
            "Edit medicine",
        ),
        ("/suppliers".into(), AP, "Himal Drugs"),
        ("/suppliers/new".into(), AP, "Add a supplier"),
        (format!("/suppliers/{}", s.supplier), AP, "HD-1"),
        (
            format!("/suppliers/{}/edit", s.supplier),
            AP,
            "Edit supplier",
        ),
        ("/receipts".into(), AP, "HD-1"),
        ("/receipts/new".into(), AP, "Receive stock"),
        (format!("/receipts/{}", s.receipt), AP, "Invoice HD-1"),
        ("/reports".into(), AP, "<h1>Reports</h1>"),
        ("/reports/daily".into(), AP, "By payment method"),
        ("/reports/sales".into(), AP, "Sales over a range"),
        ("/reports/top-sellers".into(), AP, "Paracetamol 500 mg"),
        ("/reports/stock".into(), AP, "Paracetamol 500 mg"),
        ("/reports/stock-by-supplier".into(), AP, "Himal Drugs"),
        ("/users".into(), A, "pharmacist"),
        ("/users/new".into(), A, "Add a user"),
        (format!("/users/{admin_id}/edit"), A, "User admin"),
        ("/settings".into(), A, "Company profile"),
    ];
    let mut failures = Vec::new();
    for (path, who, marker) in &pages {
        for (role, session) in &sessions {
            let page = html::get(&app, path, Some(session)).await;
            let allowed = who.contains(*role);
            let ok = page.is_html()
                && if allowed {
                    page.status == StatusCode::OK && page.body.contains(marker)
                } else {
                    page.status == StatusCode::FORBIDDEN && page.body.contains("Not allowed")
                };
            if !ok {
                failures.push(format!(
                    "{role} GET {path}: {} (allowed: {allowed}, marker {marker:?} found: {})",
                    page.status,
                    page.body.contains(marker)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "pages:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn menus_show_only_what_the_role_may_open() {
    let app = TestApp::new("pages").await;
    let staff = html::get(&app, "/dashboard", Some(&app.login("staff").await)).await;
    let admin = html::get(&app, "/dashboard", Some(&app.login("admin").await)).await;
    let pharmacist = html::get(&app, "/dashboard", Some(&app.login("pharmacist").await)).await;
    let link = |href: &str| format!("<a href=\"{href}\"");
    for href in ["/counter", "/invoices", "/customers", "/alerts"] {
        assert!(staff.body.contains(&link(href)), "staff menu lacks {href}");
    }
    for href in [
        "/medicines",
        "/suppliers",
        "/receipts",
        "/reports",
        "/users",
        "/settings",
    ] {
        assert!(!staff.body.contains(&link(href)), "staff menu has {href}");
        assert!(admin.body.contains(&link(href)), "admin menu lacks {href}");
    }
    assert!(pharmacist.body.contains(&link("/reports")));
    assert!(!pharmacist.body.contains(&link("/users")));
    assert!(!pharmacist.body.contains(&link("/settings")));
    // The page shows whose it is, and staff see their own sales.
    assert!(staff.body.contains("Your own sales."));
    assert!(!admin.body.contains("Your own sales."));
}

#[tokio::test]
async fn forms_need_the_csrf_token_and_the_role() {
    let app = TestApp::new("pages").await;
    let admin = app.login("admin").await;
    let pharmacist = app.login("pharmacist").await;
    let staff = app.login("staff").await;
    let s = stock_up(&app, &admin).await;
    let sale = app
        .expect(
            201,
            app.post(
                "/api/v1/sales",
                &admin,
                serde_json::json!({"payment_method": "card",
                                   "lines": [{"medicine_id": s.medicine, "quantity": 1}]}),
            )
            .await,
        )
        .await;
    let (inv, line) = (
        sale["id"].as_i64().unwrap(),
        sale["lines"][0]["id"].as_i64().unwrap(),
    );
    let staff_id: i64 = app
        .db()
        .await
        .query_one("SELECT id FROM users WHERE username = 'staff'", &[])
        .await
        .unwrap()
        .get(0);
    let (m, sup, c) = (s.medicine, s.supplier, s.customer);
    let return_field = format!("return_{line}");
    // (path, fields, who may post it)
    type Form<'a> = (String, Vec<(&'a str, String)>, &'a str);
    let forms: Vec<Form> = vec![
        (
            "/account/password".into(),
            vec![("current_password", "x".into())],
            ALL,
        ),
        ("/medicines/new".into(), vec![("name", "New".into())], AP),
        (
            format!("/medicines/{m}/edit"),
            vec![("name", "Renamed".into())],
            AP,
        ),
        (
            format!("/medicines/{m}/active"),
            vec![("active", "false".into())],
            AP,
        ),
        (
            "/suppliers/new".into(),
            vec![("name", "New supplier".into())],
            AP,
        ),
        (
            format!("/suppliers/{sup}/edit"),
            vec![("name", "Renamed".into())],
            AP,
        ),
        (
            format!("/suppliers/{sup}/active"),
            vec![("active", "false".into())],
            AP,
        ),
        (
            "/receipts/new".into(),
            vec![("supplier_id", sup.to_string())],
            AP,
        ),
        (
            "/counter".into(),
            vec![
                ("medicine_id", m.to_string()),
                ("quantity", "1".into()),
                ("payment_method", "card".into()),
            ],
            ALL,
        ),
        (
            format!("/invoices/{inv}/return"),
            vec![(return_field.as_str(), "1".into()), ("reason", "x".into())],
            AP,
        ),
        (
            format!("/invoices/{inv}/void"),
            vec![("void_reason", "x".into())],
            AP,
        ),
        (
            "/customers/new".into(),
            vec![("name", "New customer".into())],
            ALL,
        ),
        (
            format!("/customers/{c}/edit"),
            vec![("name", "Renamed".into())],
            ALL,
        ),
        (
            "/users/new".into(),
            vec![
                ("username", "newbie".into()),
                ("password", "long enough".into()),
                ("role", "staff".into()),
            ],
            A,
        ),
        (
            format!("/users/{staff_id}/edit"),
            vec![("full_name", "Renamed".into()), ("role", "staff".into())],
            A,
        ),
        (
            format!("/users/{staff_id}/password"),
            vec![("new_password", "long enough".into())],
            A,
        ),
        (
            "/settings/company".into(),
            vec![("name", "Renamed".into())],
            A,
        ),
        (
            "/settings/pharmacy".into(),
            vec![("currency", "USD".into())],
            A,
        ),
        ("/logout".into(), vec![], ALL),
    ];
    let snapshot = || async {
        let row = app
            .db()
            .await
            .query_one(
                "SELECT concat_ws('|',
                    (SELECT string_agg(name || active, ',' ORDER BY id) FROM medicines),
                    (SELECT string_agg(name || active, ',' ORDER BY id) FROM suppliers),
                    (SELECT string_agg(name, ',' ORDER BY id) FROM customers),
                    (SELECT string_agg(username || full_name || password_hash || active, ',' ORDER BY id) FROM users),
                    (SELECT count(*) FROM invoices WHERE status = 'completed'),
                    (SELECT count(*) FROM returns),
                    (SELECT count(*) FROM supplier_invoices),
                    (SELECT count(*) FROM sessions),
                    (SELECT name FROM company), (SELECT currency FROM settings))",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, String>(0)
    };
    let before = snapshot().await;
    let mut failures = Vec::new();
    for (path, fields, who) in &forms {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // No token, a wrong one, another session's: refused, whoever sends it.
        let other = &pharmacist.csrf;
        for token in [None, Some("0000"), Some(other.as_str())] {
            let mut sent = fields.clone();
            if let Some(t) = token {
                sent.push(("csrf_token", t));
            }
            let page = html::post_raw(&app, path, Some(&admin.cookie), &sent).await;
            if page.status != StatusCode::FORBIDDEN || !page.body.contains("This form has expired")
            {
                failures.push(format!("POST {path} with token {token:?}: {}", page.status));
            }
        }
        // Staff with their own valid token, where staff may not.
        if !who.contains('S') {
            let page = html::post(&app, path, &staff, &fields).await;
            if page.status != StatusCode::FORBIDDEN {
                failures.push(format!("staff POST {path}: {}", page.status));
            }
        }
        if !who.contains('P') {
            let page = html::post(&app, path, &pharmacist, &fields).await;
            if page.status != StatusCode::FORBIDDEN {
                failures.push(format!("pharmacist POST {path}: {}", page.status));
            }
        }
    }
    assert!(failures.is_empty(), "forms:\n{}", failures.join("\n"));
    assert_eq!(snapshot().await, before, "a refused form changed something");
}

#[tokio::test]
async fn without_a_session_pages_go_to_the_login() {
    let app = TestApp::new("pages").await;
    let page = html::get(&app, "/medicines?q=para", None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login?next=/medicines%3Fq%3Dpara");
    let page = html::get(&app, "/", None).await;
    assert_eq!(page.location(), "/login");
    // An ended session is the same as none.
    let gone = html::get_with_cookie(&app, "/dashboard", Some("apotheca_session=nonsense")).await;
    assert_eq!(gone.location(), "/login?next=/dashboard");
    let post = html::post_raw(&app, "/customers/new", None, &[("name", "X")]).await;
    assert_eq!(post.status, StatusCode::SEE_OTHER);
    assert_eq!(post.location(), "/login");
    // An API token is not a session.
    let admin = app.login("admin").await;
    let token = app
        .expect(
            201,
            app.post(
                "/api/v1/tokens",
                &admin,
                serde_json::json!({"name": "script"}),
            )
            .await,
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Used once as a bearer token, so the login cache knows it.
    let r = app
        .call_with(
            axum::http::Method::GET,
            "/api/v1/auth/me",
            None,
            None,
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let page = html::get_with_cookie(
        &app,
        "/dashboard",
        Some(&format!("apotheca_session={token}")),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "a token as a cookie");
}

#[tokio::test]
async fn static_files_errors_and_headers() {
    let app = TestApp::new("pages").await;
    let admin = app.login("admin").await;
    let dashboard = html::get(&app, "/dashboard", Some(&admin)).await;
    assert_eq!(dashboard.headers["cache-control"], "no-store");
    assert!(dashboard.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(dashboard.headers["x-frame-options"], "DENY");
    // The stylesheet and script the page links, under hashed names.
    for ext in [".css", ".js"] {
        let href = dashboard
            .body
            .split('"')
            .find(|s| s.starts_with("/static/app.") && s.ends_with(ext))
            .unwrap_or_else(|| panic!("no app{ext} link"))
            .to_owned();
        let file = html::get(&app, &href, None).await;
        assert_eq!(file.status, StatusCode::OK, "{href}");
        assert_eq!(
            file.headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert!(file.headers["etag"].to_str().unwrap().len() > 2);
        let stale = href.replace("/static/app.", "/static/app.0");
        assert_eq!(
            html::get(&app, &stale, None).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert!(html::get(&app, "/static/app.css", None).await.status == StatusCode::NOT_FOUND);
    // Unknown pages: an HTML page; unknown API paths: the API's JSON.
    let missing = html::get(&app, "/no/such/page", Some(&admin)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.is_html() && missing.body.contains("Not found"));
    let api = app.get("/api/v1/no/such/thing", &admin).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(api.body["error"]["code"], "not_found");
    // A record that is not there: a 404 page.
    let page = html::get(&app, "/medicines/999999", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.is_html() && page.body.contains("medicine not found"));
}
