//! The public site's "Create your pharmacy", driven on the public worker's socket of a real
//! daemon: a valid sign-up provisions the tenant through control and its admin logs in on
//! the new pharmacy's worker; a taken or invalid subdomain is answered on the form with the
//! other fields kept; a form without its CSRF token is refused; attempts are limited per
//! client address; "Find my pharmacy" links to the new subdomain. Through the proxy: the
//! redirect leads to the new pharmacy, at once.

use std::path::Path;

use apotheca_testkit::system::daemon::ready_pids;
use apotheca_testkit::system::site::{encode, send, Answer};
use apotheca_testkit::system::Apotheca;
use hyper::Method;

/// The form's token and the cookie that backs it.
async fn form(socket: &Path) -> (String, String) {
    let a = send(
        socket,
        Method::GET,
        "/tenants/create-tenant/",
        &[("host", "localhost:8080")],
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let cookie = a.headers["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let token = cookie.split_once('=').unwrap().1.to_owned();
    assert!(a.body.contains(&format!("value=\"{token}\"")), "{}", a.body);
    (token, cookie)
}

async fn sign_up(socket: &Path, from: &str, cookie: &str, fields: &[(&str, &str)]) -> Answer {
    send(
        socket,
        Method::POST,
        "/tenants/create-tenant/",
        &[
            ("host", "localhost:8080"),
            ("x-forwarded-for", from),
            ("cookie", cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &encode(fields),
    )
    .await
}

#[tokio::test]
async fn sign_up_creates_a_pharmacy_whose_admin_logs_in() {
    let a = Apotheca::migrated().await;
    let d = a.serve(&[("APOTHECA_WORKER__SIGNUPS_PER_HOUR", "3")]).await;
    let public = d
        .wait_for("public", "running", |t| !ready_pids(t).is_empty())
        .await;
    let endpoint = public["workers"][0]["address"].as_str().unwrap().to_owned();
    let socket = Path::new(endpoint.strip_prefix("unix:").unwrap());

    let landing = send(socket, Method::GET, "/", &[("host", "localhost:8080")], "").await;
    assert_eq!(landing.status, 200);
    assert!(
        landing.body.contains("/tenants/create-tenant/"),
        "{}",
        landing.body
    );

    let (token, cookie) = form(socket).await;
    let good = [
        ("csrf_token", token.as_str()),
        ("name", "Green Cross"),
        ("subdomain", "green-cross"),
        ("admin_user", "owner"),
        ("admin_password", "correct horse"),
    ];

    // No token, or a wrong one: refused, nothing created.
    let no_token = sign_up(socket, "10.0.0.1", &cookie, &good[1..]).await;
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let mut forged = good;
    forged[0].1 = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        sign_up(socket, "10.0.0.1", &cookie, &forged).await.status,
        403
    );
    assert!(a.tenants().await.is_empty());

    // A valid sign-up: 303 to the new subdomain's login, on the port it came in by.
    let done = sign_up(socket, "10.0.0.1", &cookie, &good).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.headers["location"],
        "http://green-cross.localhost:8080/login"
    );
    let tenants = a.tenants().await;
    assert_eq!(tenants.len(), 1, "{tenants:?}");
    assert_eq!(tenants[0]["schema"], "green_cross");
    assert_eq!(tenants[0]["name"], "Green Cross");
    assert_eq!(tenants[0]["domains"][0], "green-cross.localhost");

    // Its admin logs in on the new pharmacy's worker.
    let tenant = d.wake("green_cross").await;
    let tenant = Path::new(tenant[0].strip_prefix("unix:").unwrap());
    let login = send(
        tenant,
        Method::POST,
        "/api/v1/auth/login",
        &[
            ("host", "green-cross.localhost:8080"),
            ("content-type", "application/json"),
        ],
        r#"{"username": "owner", "password": "correct horse"}"#,
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(login.body.contains("\"admin\""), "{}", login.body);

    // Taken: the message next to the subdomain, the other fields kept, the password not.
    let mut again = good;
    again[1].1 = "Green Cross Two";
    again[3].1 = "second";
    let taken = sign_up(socket, "10.0.0.2", &cookie, &again).await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    assert!(taken.body.contains("already taken"), "{}", taken.body);
    assert!(
        taken.body.contains("value=\"Green Cross Two\""),
        "{}",
        taken.body
    );
    assert!(
        taken.body.contains("value=\"green-cross\""),
        "{}",
        taken.body
    );
    assert!(taken.body.contains("value=\"second\""), "{}", taken.body);
    assert!(!taken.body.contains("correct horse"), "{}", taken.body);

    // Invalid and reserved subdomains.
    for (sub, says) in [
        ("-bad", "Use 3 to 40"),
        ("www", "reserved"),
        ("select", "reserved"),
    ] {
        let mut bad = good;
        bad[2].1 = sub;
        let answer = sign_up(socket, "10.0.0.3", &cookie, &bad).await;
        assert_eq!(answer.status, 422, "{sub}: {}", answer.body);
        assert!(answer.body.contains(says), "{sub}: {}", answer.body);
        assert!(
            answer.body.contains("value=\"Green Cross\""),
            "{}",
            answer.body
        );
    }
    // A bad password is the control's check, shown next to its field.
    let mut weak = good;
    weak[2].1 = "weak-one";
    weak[4].1 = "short";
    let answer = sign_up(socket, "10.0.0.4", &cookie, &weak).await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(
        answer.body.contains("id=\"e-admin_password\""),
        "{}",
        answer.body
    );
    assert_eq!(a.tenants().await.len(), 1);

    // 10.0.0.3 made three attempts: the fourth is refused; another address still may.
    let mut fine = good;
    fine[1].1 = "Another One";
    fine[2].1 = "another-one";
    let limited = sign_up(socket, "10.0.0.3", &cookie, &fine).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.headers.contains_key("retry-after"));
    assert!(
        limited.body.contains("Too many sign-ups"),
        "{}",
        limited.body
    );
    let other = sign_up(socket, "10.0.0.5", &cookie, &fine).await;
    assert_eq!(other.status, 303, "{}", other.body);

    // Find my pharmacy: by subdomain or exact name, a link to its login.
    for q in ["green-cross", "green+cross"] {
        let found = send(
            socket,
            Method::GET,
            &format!("/tenants/find/?q={q}"),
            &[("host", "localhost:8080")],
            "",
        )
        .await;
        assert_eq!(found.status, 200);
        assert!(
            found
                .body
                .contains("http://green-cross.localhost:8080/login"),
            "{q}: {}",
            found.body
        );
        assert!(!found.body.contains("another-one"), "{}", found.body);
    }
    let none = send(
        socket,
        Method::GET,
        "/tenants/find/?q=green",
        &[("host", "localhost")],
        "",
    )
    .await;
    assert!(none.body.contains("No pharmacy"), "{}", none.body);

    d.stop().await;
}

#[tokio::test]
async fn sign_up_through_the_proxy_leads_to_the_new_pharmacy() {
    let a = Apotheca::migrated().await;
    let d = a.serve(&[("APOTHECA_WORKER__SIGNUPS_PER_HOUR", "2")]).await;
    d.wait_for("public", "running", |t| !ready_pids(t).is_empty())
        .await;
    let p = a.proxy(&d, &[]).await;
    let site = format!("localhost:{}", p.http);

    let page = p.get(&site, "/tenants/create-tenant/").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let cookie = page.header("set-cookie").unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let token = cookie.split_once('=').unwrap().1.to_owned();
    let post = |fields: Vec<(&'static str, String)>, forged: &'static str| {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let headers = [
            ("host", site.clone()),
            ("cookie", cookie.clone()),
            (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("x-forwarded-for", forged.to_owned()),
        ];
        let p = &p;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            p.request(Method::POST, "/tenants/create-tenant/", &headers, &body)
                .await
                .unwrap()
        }
    };
    let fields = |sub: &str| {
        vec![
            ("csrf_token", token.clone()),
            ("name", "Corner+Shop".to_owned()),
            ("subdomain", sub.to_owned()),
            ("admin_user", "boss".to_owned()),
            ("admin_password", "long+enough".to_owned()),
        ]
    };

    let done = post(fields("corner-shop"), "198.51.100.1").await;
    assert_eq!(done.status, 303, "{}", done.text());
    let login = format!("http://corner-shop.localhost:{}/login", p.http);
    assert_eq!(done.header("location"), Some(login.as_str()));

    // The new host routes to the new pharmacy, whose admin logs in there.
    let host = format!("corner-shop.localhost:{}", p.http);
    p.wait_route(&host, Ok("corner_shop")).await;
    let page = p.get(&host, "/login").await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("action=\"/login\""), "{}", page.text());
    // The sign-up's name is the pharmacy's on its own pages.
    assert!(
        page.text().contains("Log in · Corner Shop"),
        "{}",
        page.text()
    );
    let logged_in = p
        .request(
            Method::POST,
            "/api/v1/auth/login",
            &[("host", &host), ("content-type", "application/json")],
            r#"{"username": "boss", "password": "long enough"}"#,
        )
        .await
        .unwrap();
    assert_eq!(logged_in.status, 200, "{}", logged_in.text());

    // The limit is per address the proxy saw: a forged X-Forwarded-For does not reset it.
    let second = post(fields("-nope"), "203.0.113.7").await;
    assert_eq!(second.status, 422, "{}", second.text());
    let third = post(fields("another-shop"), "192.0.2.99").await;
    assert_eq!(third.status, 429, "{}", third.text());

    p.stop().await;
    d.stop().await;
}

/// The browser follows the sign-up's 303 at once: the proxy learns of the new domain from
/// control's NOTIFY and then reloads its map, so an unknown host waits for a reload it was
/// notified of (before, about one sign-up in five got "No pharmacy at this address").
#[tokio::test]
async fn the_sign_up_redirect_is_routed_at_once() {
    let a = Apotheca::migrated().await;
    let d = a
        .serve(&[("APOTHECA_WORKER__SIGNUPS_PER_HOUR", "100")])
        .await;
    d.wait_for("public", "running", |t| !ready_pids(t).is_empty())
        .await;
    let p = a.proxy(&d, &[]).await;
    let site = format!("localhost:{}", p.http);
    let page = p.get(&site, "/tenants/create-tenant/").await;
    let cookie = page.header("set-cookie").unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let token = cookie.split_once('=').unwrap().1.to_owned();

    let mut missed = Vec::new();
    for i in 0..20 {
        let sub = format!("fast-{i}");
        let body = format!(
            "csrf_token={token}&name=Fast+{i}&subdomain={sub}&admin_user=boss&admin_password=long+enough"
        );
        let headers = [
            ("host", site.as_str()),
            ("cookie", cookie.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        let done = p
            .request(Method::POST, "/tenants/create-tenant/", &headers, &body)
            .await
            .unwrap();
        assert_eq!(done.status, 303, "{}", done.text());
        let host = format!("{sub}.localhost:{}", p.http);
        let login = p.get(&host, "/login").await;
        if login.status != 200 {
            missed.push(format!("{host}: {}", login.status));
        }
    }
    assert!(
        missed.is_empty(),
        "right after the sign-up: {missed:?}\n{}",
        p.log_tail()
    );
    p.stop().await;
    d.stop().await;
}
