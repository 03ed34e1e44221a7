//! `apotheca-proxy` in front of a real daemon and real workers: each tenant reached by its
//! host (normalised), a cold tenant woken by its first request, the public site, unknown and
//! malformed hosts, domains added and removed and tenants suspended and resumed while it runs
//! (with the delay measured), and the headers the proxy forwards as a worker sees them (none
//! of those a client sends to pass for the proxy among them, over HTTP/1.1 and HTTP/2).

use apotheca_testkit::system::daemon::ready_pids;
use apotheca_testkit::system::echo::values;
use apotheca_testkit::system::tls::{h2_request, https_get, make_cert};
use apotheca_testkit::system::Apotheca;
use hyper::Method;

const JSON: (&str, &str) = ("accept", "application/json");

#[tokio::test]
async fn each_host_reaches_its_tenant_and_a_cold_one_is_woken() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    a.create("bravo").await;
    let d = a.serve(&[]).await;
    let p = a
        .proxy(
            &d,
            &[("public_hosts", r#"["localhost", "www.apotheca.test"]"#)],
        )
        .await;

    // Cold: no worker until the first request, which wakes one and is answered by it.
    let cold = d.tenant("alpha").await;
    assert_eq!(cold["state"], "cold", "{cold}");
    assert_eq!(p.health("alpha.localhost").await, Ok("alpha".into()));
    assert_eq!(d.ready_pids("alpha").await.len(), 1);
    assert_eq!(
        p.metric(r#"apotheca_proxy_wakes_total{tenant="alpha",result="ok"}"#)
            .await,
        Some(1.0)
    );
    // Control's figures come with the proxy's: alpha's worker, with its memory.
    assert_eq!(p.metric("apotheca_control_up").await, Some(1.0));
    assert_eq!(
        p.metric(r#"apotheca_tenant_workers{tenant="alpha"}"#).await,
        Some(1.0)
    );
    assert!(p
        .metric(r#"apotheca_tenant_worker_rss_bytes{tenant="alpha"}"#)
        .await
        .is_some_and(|rss| rss > 1e6));
    assert_eq!(p.health("bravo.localhost").await, Ok("bravo".into()));
    // The host as browsers and clients may write it.
    for host in [
        "ALPHA.LocalHost",
        "alpha.localhost:8080",
        "alpha.localhost.",
        "Bravo.localhost.:443",
    ] {
        let want = if host.to_lowercase().starts_with("alpha") {
            "alpha"
        } else {
            "bravo"
        };
        assert_eq!(p.health(host).await, Ok(want.into()), "{host}");
    }
    // The public site's hosts.
    for host in ["localhost", "localhost:8080", "www.apotheca.test"] {
        assert_eq!(p.health(host).await, Ok("public".into()), "{host}");
    }

    // The request id: a sane one from the client is kept, anything else replaced.
    let r = p
        .get_with("alpha.localhost", "/", &[("x-request-id", "trace-42")])
        .await;
    assert_eq!(r.header("x-request-id"), Some("trace-42"));
    let r = p
        .get_with("alpha.localhost", "/", &[("x-request-id", "bad id!")])
        .await;
    let id = r.header("x-request-id").unwrap();
    assert!(!id.is_empty() && id != "bad id!", "{id}");
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn unknown_and_malformed_hosts() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let d = a.serve(&[]).await;
    let p = a.proxy(&d, &[]).await;

    // Unknown: the proxy's own 404 page, or JSON when asked (or on an API path).
    let r = p.get("nowhere.localhost", "/").await;
    assert_eq!(r.status, 404);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(
        r.text().contains("No pharmacy at this address"),
        "{}",
        r.text()
    );
    let r = p.get_with("nowhere.localhost", "/", &[JSON]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "no_pharmacy", "{}", r.text());
    let r = p.get("nowhere.localhost", "/api/v1/medicines").await;
    assert_eq!(r.json()["error"]["code"], "no_pharmacy", "{}", r.text());

    // Malformed: 400, whatever the path; the proxy's own page, except for what Pingora's
    // parser already refuses (userinfo, ambiguous authorities) with a bare 400.
    for (host, page) in [
        ("alpha..localhost", true),
        ("-alpha.localhost", true),
        ("alpha.localhost:port", true),
        ("alpha.localhost:99999", true),
        ("alpha.localhost/evil", true),
        ("[::1", true),
        ("user@alpha.localhost", false),
    ] {
        let r = p.get_with(host, "/", &[JSON]).await;
        assert_eq!(r.status, 400, "{host}: {}", r.text());
        if page {
            assert_eq!(
                r.json()["error"]["code"],
                "bad_host",
                "{host}: {}",
                r.text()
            );
        }
    }
    // No Host at all (HTTP/1.1 requires one).
    let r = p.request(Method::GET, "/", &[], "").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    // Nothing of this reached a worker: alpha was never woken.
    assert!(d.ready_pids("alpha").await.is_empty());
    assert!(p.stop().await.success());

    // With show_public_if_no_tenant_found, unknown hosts get the public site instead.
    let p = a
        .proxy(&d, &[("show_public_if_no_tenant_found", "true")])
        .await;
    assert_eq!(p.health("nowhere.localhost").await, Ok("public".into()));
    assert_eq!(p.health("alpha.localhost").await, Ok("alpha".into()));
    let r = p.get_with("alpha..localhost", "/", &[JSON]).await;
    assert_eq!(r.status, 400);
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn domains_added_and_removed_route_live() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    a.create("bravo").await;
    let d = a.serve(&[]).await;
    let p = a.proxy(&d, &[]).await;
    // Awake first, so the delays below are the routes' alone.
    assert_eq!(p.health("alpha.localhost").await, Ok("alpha".into()));
    assert_eq!(p.get("shop.example.test", "/").await.status, 404);

    a.ok(&[
        "add-domain",
        "--schema",
        "alpha",
        "--domain",
        "shop.example.test",
    ])
    .await;
    let added = p.wait_route("shop.example.test", Ok("alpha")).await;
    // An internationalised domain is stored and routed as punycode.
    a.ok(&[
        "add-domain",
        "--schema",
        "bravo",
        "--domain",
        "Bücher.Example.test",
    ])
    .await;
    let idn = p
        .wait_route("xn--bcher-kva.example.test", Ok("bravo"))
        .await;
    assert_eq!(
        p.health("XN--BCHER-KVA.example.test.").await,
        Ok("bravo".into())
    );

    a.ok(&["remove-domain", "--domain", "shop.example.test"])
        .await;
    let removed = p.wait_route("shop.example.test", Err(404)).await;
    assert_eq!(p.health("alpha.localhost").await, Ok("alpha".into()));
    println!(
        "route delays after the command returned: added {added:?}, added (IDN) {idn:?}, removed {removed:?}"
    );
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn a_suspended_tenant_gets_403_until_resumed() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    a.create("bravo").await;
    let d = a.serve(&[]).await;
    let p = a.proxy(&d, &[]).await;
    assert_eq!(p.health("alpha.localhost").await, Ok("alpha".into()));
    assert_eq!(p.health("bravo.localhost").await, Ok("bravo".into()));

    a.ok(&["suspend-tenant", "--schema", "alpha"]).await;
    let suspended = p.wait_route("alpha.localhost", Err(403)).await;
    let r = p.get("alpha.localhost", "/").await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("suspended"), "{}", r.text());
    let r = p
        .get_with("alpha.localhost", "/api/v1/auth/me", &[JSON])
        .await;
    assert_eq!(
        (r.status, &r.json()["error"]["code"]),
        (403, &"suspended".into())
    );
    // Its workers are drained; the other tenant is untouched.
    d.wait_for("alpha", "drained", |t| ready_pids(t).is_empty())
        .await;
    assert_eq!(p.health("bravo.localhost").await, Ok("bravo".into()));

    a.ok(&["resume-tenant", "--schema", "alpha"]).await;
    let resumed = p.wait_route("alpha.localhost", Ok("alpha")).await;
    println!("route delays after the command returned: suspended {suspended:?}, resumed (with a wake) {resumed:?}");
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn headers_a_client_sends_to_pass_for_the_proxy_have_no_effect() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    a.create("bravo").await;
    let d = a.serve(&[]).await;
    let p = a.proxy(&d, &[]).await;

    // The worker refuses (421) a request whose X-Apotheca-Tenant names another tenant: had
    // the client's header reached it, this would be a 421.
    for spoof in ["bravo", "public", "alpha, bravo"] {
        let r = p
            .get_with(
                "alpha.localhost",
                "/login",
                &[("x-apotheca-tenant", spoof), ("x-apotheca-anything", "1")],
            )
            .await;
        assert_eq!(r.status, 200, "{spoof}: {}", r.text());
        assert!(
            r.text().contains("action=\"/login\""),
            "{spoof}: {}",
            r.text()
        );
    }
    // Failed logins are counted per client address, which the worker takes from
    // X-Forwarded-For: it must be the address the proxy saw, not the one the client claims.
    let r = p
        .request(
            Method::POST,
            "/api/v1/auth/login",
            &[
                ("host", "alpha.localhost"),
                ("content-type", "application/json"),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-real-ip", "203.0.113.9"),
            ],
            r#"{"username": "nobody", "password": "wrong"}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    let keys: Vec<String> = apotheca_testkit::column(
        &a.db.client().await,
        "SELECT key FROM alpha.login_failures WHERE kind = 'address'",
    )
    .await;
    assert_eq!(keys, ["127.0.0.1"]);
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}

/// Not a test: the stand-in worker of the test below (the daemon runs this binary as its
/// worker program; see `apotheca_testkit::system::echo`).
#[test]
#[ignore = "run by the daemon as a stand-in worker"]
fn echo_worker() {
    apotheca_testkit::system::echo::run();
}

#[tokio::test]
async fn the_worker_sees_the_headers_the_proxy_sets_and_none_a_client_forged() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let d = apotheca_testkit::system::echo::daemon(&a, "echo_worker").await;
    let tls = a.dir.path().join("tls");
    make_cert(&tls, "default", "alpha.localhost").await;
    let (cert, key) = (tls.join("default.crt"), tls.join("default.key"));
    let p = a
        .proxy(
            &d,
            &[
                ("tls_cert", &format!("{:?}", cert.to_str().unwrap())),
                ("tls_key", &format!("{:?}", key.to_str().unwrap())),
            ],
        )
        .await;

    let r = p
        .get_with(
            "Alpha.localhost:8080",
            "/some/page?q=1",
            &[
                ("x-apotheca-tenant", "bravo"),
                ("x-apotheca-role", "admin"),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.test"),
                ("x-request-id", "trace-7"),
                ("connection", "x-hop-secret"),
                ("x-hop-secret", "1"),
                ("te", "trailers"),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("x-custom", "kept"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(
        (&echo["schema"], &echo["method"], &echo["path"]),
        (&"alpha".into(), &"GET".into(), &"/some/page?q=1".into()),
        "{echo}"
    );
    for (name, want) in [
        ("x-apotheca-tenant", vec!["alpha"]),
        ("x-apotheca-role", vec![]),
        ("x-forwarded-for", vec!["127.0.0.1"]),
        ("x-forwarded-proto", vec!["http"]),
        ("x-forwarded-host", vec!["alpha.localhost"]),
        ("x-request-id", vec!["trace-7"]),
        ("x-custom", vec!["kept"]),
        // Hop-by-hop, and what the client's Connection named as such.
        ("te", vec![]),
        ("proxy-authorization", vec![]),
        ("x-hop-secret", vec![]),
    ] {
        assert_eq!(values(&echo, name), want, "{name}: {echo}");
    }
    assert!(
        values(&echo, "connection")
            .iter()
            .all(|v| !v.contains("x-hop-secret")),
        "{echo}"
    );
    // Each request gets its own id when the client sends none.
    let ids: Vec<Vec<String>> = [
        p.get("alpha.localhost", "/").await,
        p.get("alpha.localhost", "/").await,
    ]
    .iter()
    .map(|r| values(&r.json(), "x-request-id"))
    .collect();
    assert!(
        ids[0].len() == 1 && ids[1].len() == 1 && ids[0] != ids[1],
        "{ids:?}"
    );

    let (status, _, body) = https_get(
        p.https.unwrap(),
        "alpha.localhost",
        "alpha.localhost",
        "/over/tls",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(values(&echo, "x-forwarded-proto"), ["https"], "{echo}");
    assert_eq!(values(&echo, "x-apotheca-tenant"), ["alpha"], "{echo}");

    // HTTP/2: the same request path; the worker gets HTTP/1.1 with the host from
    // `:authority`, split cookies joined, the body with its length, and nothing forged.
    let https = p.https.unwrap();
    let (version, status, body) = h2_request(
        https,
        "alpha.localhost",
        "/over/h2?x=1",
        &[
            "-H",
            "cookie: a=1",
            "-H",
            "cookie: b=2",
            "-H",
            "x-apotheca-tenant: bravo",
            "-H",
            "x-forwarded-for: 203.0.113.9",
            "--data-binary",
            "sold=3",
        ],
    )
    .await;
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&echo["method"], &echo["path"]),
        (&"POST".into(), &"/over/h2?x=1".into()),
        "{echo}"
    );
    for (name, want) in [
        ("host", vec![format!("alpha.localhost:{https}")]),
        ("cookie", vec!["a=1; b=2".to_owned()]),
        ("content-length", vec!["6".to_owned()]),
        ("x-apotheca-tenant", vec!["alpha".to_owned()]),
        ("x-forwarded-for", vec!["127.0.0.1".to_owned()]),
        ("x-forwarded-proto", vec!["https".to_owned()]),
    ] {
        assert_eq!(values(&echo, name), want, "{name}: {echo}");
    }
    // The proxy's own pages over HTTP/2 too.
    let (version, status, body) = h2_request(
        https,
        "nowhere.localhost",
        "/",
        &["-H", "accept: application/json"],
    )
    .await;
    assert_eq!((version.as_str(), status), ("2", 404), "{body}");
    assert!(body.contains("no_pharmacy"), "{body}");
    // A worker's internal routes are out of reach over HTTP/2 too (the stand-in worker would
    // answer anything with 200).
    for path in [
        "/_apotheca/stats",
        "/_APOTHECA/health",
        "/%5Fapotheca/stats",
    ] {
        let (version, status, body) = h2_request(
            https,
            "alpha.localhost",
            path,
            &["--path-as-is", "-H", "accept: application/json"],
        )
        .await;
        assert_eq!((version.as_str(), status), ("2", 404), "{path}: {body}");
        assert!(body.contains("\"not_found\""), "{path}: {body}");
    }
    // And the headers a worker's answer names in its Connection header are dropped.
    let (version, status, answer) = h2_request(
        https,
        "alpha.localhost",
        apotheca_testkit::system::echo::CONNECTION_PATH,
        &["--include"],
    )
    .await;
    assert_eq!((version.as_str(), status), ("2", 200), "{answer}");
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.contains("\r\nx-end: kept"), "{head}");
    assert!(!head.contains("x-hop"), "{head}");
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}

/// What an outside probe found: a worker's figures (`/_apotheca/stats`: RSS, pool, requests)
/// answered to anyone through the proxy. Clients get the proxy's 404; control and local tools
/// still reach them on the worker's socket.
#[tokio::test]
async fn clients_never_reach_a_workers_internal_routes() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let d = a.serve(&[]).await;
    let p = a.proxy(&d, &[]).await;
    for host in ["alpha.localhost", "localhost"] {
        for path in ["/_apotheca/stats", "/_apotheca/health", "/_Apotheca/Stats"] {
            let r = p.get_with(host, path, &[JSON]).await;
            assert_eq!(r.status, 404, "{host}{path}: {}", r.text());
            assert_eq!(r.json()["error"]["code"], "not_found", "{host}{path}");
            assert!(
                !r.text().contains("rss_bytes"),
                "{host}{path}: {}",
                r.text()
            );
        }
    }
    let endpoint = d.wake("alpha").await.remove(0);
    let (status, body) = apotheca_testkit::system::daemon::get(&endpoint, "/_apotheca/stats")
        .await
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, &stats["schema"]),
        (200, &"alpha".into()),
        "{stats}"
    );
    assert!(stats["rss_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}
