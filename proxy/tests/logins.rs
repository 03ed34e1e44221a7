//! Failed logins through the proxy, from real client addresses (connections from 127.0.0.2,
//! 127.0.0.3, ...; the proxy's X-Forwarded-For is the TCP peer): guesses from one address
//! refuse that address, never the user logging in from their own, and guesses spread over many
//! addresses never refuse the username — a pharmacy's staff and the hosting provider's
//! operators alike. (How much a username's failures slow it down is checked where it is
//! decided: `worker::api::auth::throttle` and `control::serve::operator_api`.)

use std::net::IpAddr;

use apotheca_testkit::system::pharmacy::ADMIN_PASSWORD;
use apotheca_testkit::system::proxy::{request_from, Reply};
use apotheca_testkit::system::site::encode;
use apotheca_testkit::system::Apotheca;
use hyper::Method;
use serde_json::json;

fn from(n: u8) -> IpAddr {
    [127, 0, 0, n].into()
}

#[tokio::test]
async fn guesses_from_elsewhere_never_lock_the_pharmacy_staff_out() {
    let a = Apotheca::migrated().await;
    a.create_pharmacy("alpha").await;
    // No slowing down here (it would only make the test slow): refusal is what is checked.
    let d = a
        .serve(&[("APOTHECA_WORKER__LOGIN_SLOW_AFTER", "1000")])
        .await;
    let p = a.proxy(&d, &[]).await;
    let log_in = |at: u8, password: &'static str| {
        let port = p.http;
        async move {
            let body = json!({"username": "admin", "password": password}).to_string();
            let headers = [
                ("host", "alpha.localhost"),
                ("content-type", "application/json"),
            ];
            request_from(
                from(at),
                port,
                Method::POST,
                "/api/v1/auth/login",
                &headers,
                &body,
            )
            .await
            .unwrap()
        }
    };

    // Ten wrong passwords for admin from one address: that address is refused from then on,
    // even with the right password.
    for _ in 0..10 {
        let r = log_in(2, "not the password").await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let r = log_in(2, ADMIN_PASSWORD).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "too_many_attempts");
    // The real admin, at the counter's own address, logs in.
    let r = log_in(3, ADMIN_PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"]["username"], "admin");

    // Guesses spread over many addresses, fewer from each than refuse one: the username's
    // failures add up past the limit, and the admin still logs in, from yet another address.
    for at in 10..25 {
        let r = log_in(at, "not the password").await;
        assert_eq!(r.status, 401, "from 127.0.0.{at}: {}", r.text());
    }
    let r = log_in(30, ADMIN_PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The worker counted the addresses the proxy saw.
    let addresses: Vec<String> = apotheca_testkit::column(
        &a.db.client().await,
        "SELECT DISTINCT key FROM alpha.login_failures WHERE kind = 'address' ORDER BY key",
    )
    .await;
    assert!(addresses.contains(&"127.0.0.2".to_owned()), "{addresses:?}");
    assert!(
        addresses.contains(&"127.0.0.24".to_owned()),
        "{addresses:?}"
    );
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}

/// The operator console's login form on the public site, through the proxy from `at`: the
/// form (its CSRF cookie and token), then the login posted with them.
async fn operator_log_in(port: u16, at: u8, password: &str) -> Reply {
    let host = ("host", "localhost");
    let form = request_from(from(at), port, Method::GET, "/operator/login", &[host], "")
        .await
        .unwrap();
    assert_eq!(form.status, 200, "{}", form.text());
    let cookie = form
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .collect::<Vec<_>>()
        .join("; ");
    let text = form.text();
    let marker = "name=\"csrf_token\" value=\"";
    let at_token = text.find(marker).expect("a csrf_token field") + marker.len();
    let token = &text[at_token..at_token + text[at_token..].find('"').unwrap()];
    let body = encode(&[
        ("csrf_token", token),
        ("username", "ops"),
        ("password", password),
    ]);
    let headers = [
        host,
        ("cookie", cookie.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    request_from(
        from(at),
        port,
        Method::POST,
        "/operator/login",
        &headers,
        &body,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn guesses_from_elsewhere_never_lock_an_operator_out() {
    let a = Apotheca::migrated().await;
    a.create_operator("ops", "correct horse battery").await;
    let d = a.serve(&[]).await;
    let p = a.proxy(&d, &[]).await;

    // Five wrong passwords from one address: refused there, even the right one.
    for _ in 0..5 {
        let r = operator_log_in(p.http, 2, "guess guess guess").await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let r = operator_log_in(p.http, 2, "correct horse battery").await;
    assert_eq!(r.status, 429, "{}", r.text());
    // The operator at their own address logs in.
    let r = operator_log_in(p.http, 3, "correct horse battery").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/operator/tenants"));
    // Guesses spread over addresses, one from each, past the per-address limit in all:
    // answered (slowly), never refused; then the operator logs in again.
    for at in 10..16 {
        let r = operator_log_in(p.http, at, "guess guess guess").await;
        assert_eq!(r.status, 401, "from 127.0.0.{at}: {}", r.text());
    }
    let r = operator_log_in(p.http, 20, "correct horse battery").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}
