//! The hosts that share a database (`public.hosts`): a daemon records itself with its name and
//! address, beats with the tenants it has ready workers for, marks a host whose beat stopped
//! as gone, and records its own clean stop; `apotheca status --cluster` shows all of it. A
//! pharmacy served by two hosts at once (two daemons and proxies on one database) shows every
//! write and every logout on both at once; sign-up and operator login limits count what every
//! host saw.

use std::time::Duration;

use apotheca_testkit::system::daemon::{Daemon, PATIENCE};
use apotheca_testkit::system::pharmacy::{Shop, ADMIN_PASSWORD};
use apotheca_testkit::system::site::Site;
use apotheca_testkit::system::Apotheca;
use hyper::Method;
use serde_json::{json, Value};

async fn cluster(a: &Apotheca) -> Vec<Value> {
    let out = a.ok(&["status", "--cluster", "--json"]).await;
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn host<'a>(hosts: &'a [Value], name: &str) -> &'a Value {
    hosts
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("no host {name} in {hosts:?}"))
}

/// Polls `status --cluster` until `ok` holds for it.
async fn until(a: &Apotheca, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let hosts = cluster(a).await;
        if ok(&hosts) {
            return hosts;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {hosts:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn hosts_beat_with_their_tenants_and_a_silent_one_is_gone() {
    let a = Apotheca::migrated().await;
    a.create("acme").await;
    assert!(a
        .ok(&["status", "--cluster"])
        .await
        .contains("no host has run"));
    // Another host that beat a minute ago and never stopped: it died.
    a.db.client()
        .await
        .execute(
            "INSERT INTO public.hosts (name, address, version, heartbeat_at, workers)
             VALUES ('host-b', '10.0.0.2:8080', '0.1.0', now() - interval '1 minute', '{\"acme\": 1}')",
            &[],
        )
        .await
        .unwrap();
    let d = a
        .serve(&[
            ("APOTHECA_CONTROL__SERVE__HOST_NAME", "host-a"),
            ("APOTHECA_CONTROL__SERVE__HOST_ADDRESS", "10.0.0.1:8080"),
            ("APOTHECA_CONTROL__SERVE__HEARTBEAT_SECS", "1"),
            ("APOTHECA_CONTROL__SERVE__HOST_GONE_SECS", "3"),
        ])
        .await;
    d.wake("acme").await;
    let hosts = until(
        &a,
        "host-a beats with acme's worker, and host-b is gone",
        |h| {
            h.iter()
                .any(|x| x["name"] == "host-a" && x["workers"]["acme"] == 1)
                && h.iter()
                    .any(|x| x["name"] == "host-b" && x["state"] == "gone")
        },
    )
    .await;
    let me = host(&hosts, "host-a");
    assert_eq!(
        (me["state"].as_str(), me["address"].as_str()),
        (Some("live"), Some("10.0.0.1:8080"))
    );
    assert!(
        me["workers"].get("public").is_none(),
        "the public site runs on every host: {me}"
    );
    let b = host(&hosts, "host-b");
    assert_eq!(b["state"], "gone", "{b}");
    assert_eq!(
        b["workers"],
        serde_json::json!({}),
        "a gone host holds nothing"
    );
    let marked: Vec<bool> = apotheca_testkit::column(
        &a.db.client().await,
        "SELECT gone_at IS NOT NULL FROM public.hosts WHERE name = 'host-b'",
    )
    .await;
    assert_eq!(marked, [true], "host-a marked host-b gone");
    let text = a.ok(&["status", "--cluster"]).await;
    assert!(
        text.contains("host-a") && text.contains("acme (1)"),
        "{text}"
    );

    // A clean stop is recorded as such.
    assert!(d.stop().await.success());
    let hosts = cluster(&a).await;
    let me = host(&hosts, "host-a");
    assert_eq!(me["state"], "stopped", "{me}");
    assert_eq!(me["workers"], serde_json::json!({}));
}

/// Host settings for a test: this name, a beat a second, gone after three, and read caches
/// that keep an answer a minute (so a stale one would show).
fn host_env(name: &'static str) -> [(&'static str, &'static str); 4] {
    [
        ("APOTHECA_CONTROL__SERVE__HOST_NAME", name),
        ("APOTHECA_CONTROL__SERVE__HEARTBEAT_SECS", "1"),
        ("APOTHECA_CONTROL__SERVE__HOST_GONE_SECS", "3"),
        ("APOTHECA_WORKER__READ_CACHE_SECS", "60"),
    ]
}

/// Sets the price behind the app's back (no announcement): only a read that is not cached
/// sees it.
async fn price_in_database(a: &Apotheca, medicine: i64, price: &str) {
    a.db.client()
        .await
        .execute(
            "UPDATE acme.medicines SET sale_price = $2::text::numeric WHERE id = $1",
            &[&medicine, &price],
        )
        .await
        .unwrap();
}

/// The medicine's sale price in the medicines list (an answer the read cache keeps).
async fn listed_price(shop: &Shop, medicine: i64) -> String {
    let list = shop
        .json(
            Method::GET,
            "/api/v1/medicines?per_page=50",
            &json!(null),
            200,
        )
        .await;
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == medicine)
        .and_then(|m| m["sale_price"].as_str())
        .unwrap_or_else(|| panic!("medicine {medicine} in {list}"))
        .to_owned()
}

async fn shared_with(d: &Daemon, schema: &str) -> Value {
    d.tenant(schema).await["shared_with"].clone()
}

/// Waits until `d` says `schema` is also served by `hosts`.
async fn until_shared(d: &Daemon, schema: &str, hosts: Value) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while shared_with(d, schema).await != hosts {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{schema} shared with {hosts}: {}",
            d.tenant(schema).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_pharmacy_served_by_two_hosts_shows_every_write_on_both_at_once() {
    let a = Apotheca::migrated().await;
    a.create_pharmacy("acme").await;
    let b = a.another_host();
    let host_a = a.serve(&host_env("host-a")).await;
    let host_b = b.serve(&host_env("host-b")).await;
    let (proxy_a, proxy_b) = (a.proxy(&host_a, &[]).await, b.proxy(&host_b, &[]).await);
    let on_a = Shop::open(proxy_a.http, "acme", 1, 10).await;
    let on_b = Shop {
        port: proxy_b.http,
        ..on_a.clone()
    };
    let medicine = on_a.medicines[0];
    let set_price = |shop: &Shop, price: &str| {
        let (shop, body) = (shop.clone(), json!({ "sale_price": price }));
        async move {
            let path = format!("/api/v1/medicines/{medicine}");
            shop.json(Method::PATCH, &path, &body, 200).await;
        }
    };

    // Host A alone keeps the list: a change behind the app's back does not show.
    assert_eq!(listed_price(&on_a, medicine).await, "2.50");
    price_in_database(&a, medicine, "9.99").await;
    assert_eq!(
        listed_price(&on_a, medicine).await,
        "2.50",
        "A keeps its list"
    );
    assert_eq!(shared_with(&host_a, "acme").await, json!([]));
    // Host B serves it too: both know it at once, and neither keeps anything.
    assert_eq!(listed_price(&on_b, medicine).await, "9.99");
    until_shared(&host_a, "acme", json!(["host-b"])).await;
    until_shared(&host_b, "acme", json!(["host-a"])).await;
    assert_eq!(
        listed_price(&on_a, medicine).await,
        "9.99",
        "A dropped its list"
    );

    // A write through one host is what the other answers next, both ways.
    set_price(&on_b, "3.75").await;
    assert_eq!(listed_price(&on_a, medicine).await, "3.75");
    set_price(&on_a, "4.10").await;
    assert_eq!(listed_price(&on_b, medicine).await, "4.10");

    // A logout on B ends the session on A.
    let login = json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    let host = [
        ("host", "acme.localhost"),
        ("content-type", "application/json"),
    ];
    let r = proxy_a
        .request(Method::POST, "/api/v1/auth/login", &host, &login)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
    let me = |proxy: &apotheca_testkit::system::proxy::Proxy| {
        let headers = [("host", "acme.localhost"), ("cookie", cookie.as_str())];
        let port = proxy.http;
        async move {
            apotheca_testkit::system::proxy::request(
                port,
                Method::GET,
                "/api/v1/auth/me",
                &headers,
                "",
            )
            .await
            .unwrap()
            .status
        }
    };
    assert_eq!(me(&proxy_a).await, 200);
    assert_eq!(me(&proxy_b).await, 200);
    let out = proxy_b
        .request(
            Method::POST,
            "/api/v1/auth/logout",
            &[
                ("host", "acme.localhost"),
                ("cookie", cookie.as_str()),
                ("x-csrf-token", csrf.as_str()),
            ],
            "",
        )
        .await
        .unwrap();
    assert!(out.status < 300, "{}", out.text());
    assert_eq!(me(&proxy_a).await, 401);

    // B stops: the pharmacy is A's alone again, and A keeps its list again.
    assert!(host_b.stop().await.success());
    until_shared(&host_a, "acme", json!([])).await;
    set_price(&on_a, "4.20").await;
    assert_eq!(listed_price(&on_a, medicine).await, "4.20");
    price_in_database(&a, medicine, "5.55").await;
    assert_eq!(
        listed_price(&on_a, medicine).await,
        "4.20",
        "A keeps its list again"
    );
    assert!(host_a.stop().await.success());
}

#[tokio::test]
async fn sign_up_and_operator_login_limits_count_on_every_host() {
    let a = Apotheca::migrated().await;
    a.create_operator("ops", "correct horse battery").await;
    let b = a.another_host();
    let limit = ("APOTHECA_WORKER__SIGNUPS_PER_HOUR", "2");
    let host_a = a.serve(&[host_env("host-a")[0], limit]).await;
    let host_b = b.serve(&[host_env("host-b")[0], limit]).await;
    let (mut on_a, mut on_b) = (Site::of(&host_a).await, Site::of(&host_b).await);

    // One address fails to log in three times on A and twice on B: the sixth try is refused on
    // both, the right password too.
    for (site, times) in [(&mut on_a, 3), (&mut on_b, 2)] {
        for _ in 0..times {
            let wrong = site.log_in("ops", "guess guess guess").await;
            assert_eq!(wrong.status, 401, "{}", wrong.body);
        }
    }
    for site in [&mut on_a, &mut on_b] {
        let refused = site.log_in("ops", "correct horse battery").await;
        assert_eq!(refused.status, 429, "{}", refused.body);
        assert!(site.token().is_none());
    }
    // From another address the operator logs in on B; the guessing address stays refused on
    // both.
    let mut elsewhere = Site::of(&host_b).await;
    elsewhere.address = "192.0.2.99".to_owned();
    let home = elsewhere.log_in("ops", "correct horse battery").await;
    assert_eq!(home.status, 303, "{}", home.body);
    for site in [&mut on_a, &mut on_b] {
        let still = site.log_in("ops", "correct horse battery").await;
        assert_eq!(still.status, 429, "{}", still.body);
    }

    // Two sign-up attempts an hour from one address (invalid ones count too): one on each
    // host, then the third is refused on either; another address still may.
    let attempt = |site: &mut Site| {
        let mut site = Site {
            cookies: Vec::new(),
            socket: site.socket.clone(),
            address: site.address.clone(),
            proto: site.proto,
        };
        async move {
            let form = site.get("/tenants/create-tenant/").await;
            assert_eq!(form.status, 200, "{}", form.body);
            let token = form.csrf();
            site.post("/tenants/create-tenant/", &[("csrf_token", &token)])
                .await
        }
    };
    assert_eq!(attempt(&mut on_a).await.status, 422);
    assert_eq!(attempt(&mut on_b).await.status, 422);
    for site in [&mut on_a, &mut on_b] {
        let refused = attempt(site).await;
        assert_eq!(refused.status, 429, "{}", refused.body);
        assert!(
            refused.body.contains("Too many sign-ups"),
            "{}",
            refused.body
        );
    }
    assert_eq!(attempt(&mut elsewhere).await.status, 422);
    // Six at once from a third address, three on each host: two go on, four are refused.
    let burst = |site: &Site| Site {
        cookies: Vec::new(),
        socket: site.socket.clone(),
        address: "192.0.2.77".to_owned(),
        proto: site.proto,
    };
    let mut sites: Vec<Site> = (0..6)
        .map(|i| burst(if i % 2 == 0 { &on_a } else { &on_b }))
        .collect();
    let statuses: Vec<u16> = futures::future::join_all(sites.iter_mut().map(attempt))
        .await
        .iter()
        .map(|a| a.status)
        .collect();
    assert_eq!(
        (
            statuses.iter().filter(|s| **s == 422).count(),
            statuses.iter().filter(|s| **s == 429).count()
        ),
        (2, 4),
        "{statuses:?}"
    );
    // Refused attempts were taken back: two are recorded for the first address.
    let recorded: i64 =
        a.db.client()
            .await
            .query_one(
                "SELECT count(*) FROM public.signup_attempts WHERE address = '192.0.2.10'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(recorded, 2);
    assert!(host_b.stop().await.success());
    assert!(host_a.stop().await.success());
}
