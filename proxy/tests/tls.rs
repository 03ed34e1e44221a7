//! The proxy's HTTPS listener: the certificate chosen by SNI (per-domain, wildcard, default),
//! requests routed over TLS, HTTP/2 offered over ALPN, redirect and HSTS, and the
//! certificates re-read on SIGHUP and when the folder changes, a broken file leaving the
//! current ones in place.

use std::path::Path;

use apotheca_testkit::system::daemon::{signal, PATIENCE};
use apotheca_testkit::system::proxy::Proxy;
use apotheca_testkit::system::tls::{handshake, https_get, make_cert, served_cn};
use apotheca_testkit::system::Apotheca;
use nix::sys::signal::Signal;

/// Polls until the certificate served for `name` has subject CN `want` (at most
/// [`PATIENCE`]).
async fn wait_cn(p: &Proxy, name: &str, want: &str) -> std::time::Duration {
    let port = p.https.unwrap();
    let started = tokio::time::Instant::now();
    loop {
        let cn = served_cn(port, Some(name)).await;
        if cn == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{name}: still {cn}, not {want}, after {PATIENCE:?}\n{}",
            p.log_tail()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Overwrites `dst` with `src`'s bytes in place, keeping `dst`'s modification time: a
/// change the file watcher cannot see (the folder's entries are unchanged too).
fn overwrite_unseen(src: &Path, dst: &Path) {
    let mtime = std::fs::metadata(dst).unwrap().modified().unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dst)
        .unwrap();
    std::io::Write::write_all(&mut &file, &std::fs::read(src).unwrap()).unwrap();
    file.set_modified(mtime).unwrap();
}

#[tokio::test]
async fn sni_picks_the_certificate_and_reloads_pick_up_new_ones() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    a.create("bravo").await;
    a.ok(&[
        "add-domain",
        "--schema",
        "alpha",
        "--domain",
        "alpha.example.test",
    ])
    .await;
    a.ok(&[
        "add-domain",
        "--schema",
        "bravo",
        "--domain",
        "bravo.shops.test",
    ])
    .await;
    let tls = a.dir.path().join("tls");
    let domains = tls.join("domains");
    make_cert(&tls, "default", "default.apotheca.test").await;
    make_cert(&domains, "alpha.example.test", "alpha.example.test").await;
    make_cert(&domains, "_wildcard.shops.test", "*.shops.test").await;
    let d = a.serve(&[]).await;
    let cert = tls.join("default.crt");
    let key = tls.join("default.key");
    let p = a
        .proxy(
            &d,
            &[
                ("tls_cert", &format!("{:?}", cert.to_str().unwrap())),
                ("tls_key", &format!("{:?}", key.to_str().unwrap())),
                ("tls_cert_dir", &format!("{:?}", domains.to_str().unwrap())),
                ("hsts_max_age_secs", "600"),
            ],
        )
        .await;
    let port = p.https.unwrap();

    for (name, want) in [
        (Some("alpha.example.test"), "alpha.example.test"),
        (Some("ALPHA.Example.test"), "alpha.example.test"),
        (Some("bravo.shops.test"), "*.shops.test"),
        (Some("other.shops.test"), "*.shops.test"),
        // A wildcard covers one label only.
        (Some("deep.bravo.shops.test"), "default.apotheca.test"),
        (Some("alpha.localhost"), "default.apotheca.test"),
        (None, "default.apotheca.test"),
    ] {
        assert_eq!(served_cn(port, name).await, want, "SNI {name:?}");
    }

    // Requests over TLS reach the tenant the Host names, with HSTS on the answer.
    for (sni, host, schema) in [
        ("alpha.example.test", "alpha.example.test", "alpha"),
        ("bravo.shops.test", "bravo.shops.test", "bravo"),
        ("alpha.localhost", "alpha.localhost", "alpha"),
    ] {
        let (status, head, body) = https_get(port, sni, host, "/login").await;
        assert_eq!(status, 200, "{host}: {head}\n{body}");
        // Routed to the tenant (whose worker answers only for its own: 421 otherwise).
        let routed = format!("tenant={schema} host={host} method=GET path=\"/login\" status=200 ");
        p.access_line(|l| l.contains(&routed)).await;
        assert!(
            head.contains("strict-transport-security: max-age=600"),
            "{head}"
        );
    }
    // HTTP/2 is offered over ALPN; plain HTTP gets no HSTS.
    let out = handshake(port, Some("alpha.example.test"), &["-alpn", "h2,http/1.1"]).await;
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    let r = p.get("alpha.localhost", "/login").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None);

    // SIGHUP: a renewed certificate, written over the old files so that only the signal can
    // make the proxy notice it.
    let renewed = tls.join("renewed");
    make_cert(&renewed, "alpha", "renewed.alpha.example.test").await;
    overwrite_unseen(
        &renewed.join("alpha.key"),
        &domains.join("alpha.example.test.key"),
    );
    overwrite_unseen(
        &renewed.join("alpha.crt"),
        &domains.join("alpha.example.test.crt"),
    );
    assert_eq!(
        served_cn(port, Some("alpha.example.test")).await,
        "alpha.example.test"
    );
    signal(p.pid(), Signal::SIGHUP);
    let hup = wait_cn(&p, "alpha.example.test", "renewed.alpha.example.test").await;

    // A new file in the folder is picked up without a signal.
    make_cert(&domains, "gamma.example.test", "gamma.example.test").await;
    let watched = wait_cn(&p, "gamma.example.test", "gamma.example.test").await;

    // A broken pair is refused as a whole: the certificates in use stay.
    std::fs::write(domains.join("broken.example.test.crt"), "not a certificate").unwrap();
    std::fs::write(domains.join("broken.example.test.key"), "not a key").unwrap();
    signal(p.pid(), Signal::SIGHUP);
    let started = tokio::time::Instant::now();
    while !std::fs::read_to_string(&p.log)
        .unwrap()
        .contains("certificates not reloaded")
    {
        assert!(started.elapsed() < PATIENCE, "{}", p.log_tail());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        served_cn(port, Some("gamma.example.test")).await,
        "gamma.example.test"
    );
    assert_eq!(
        served_cn(port, Some("alpha.example.test")).await,
        "renewed.alpha.example.test"
    );
    println!("certificate reloads: SIGHUP seen after {hup:?}, a new file after {watched:?}");
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn plain_http_can_redirect_to_https() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let tls = a.dir.path().join("tls");
    make_cert(&tls, "default", "default.apotheca.test").await;
    let d = a.serve(&[]).await;
    let cert = tls.join("default.crt");
    let key = tls.join("default.key");
    let p = a
        .proxy(
            &d,
            &[
                ("tls_cert", &format!("{:?}", cert.to_str().unwrap())),
                ("tls_key", &format!("{:?}", key.to_str().unwrap())),
                ("redirect_https", "true"),
            ],
        )
        .await;
    // To the HTTPS listener's port (the Host's is the plain one's).
    let https = p.https.unwrap();
    let r = p.get("Alpha.localhost:8080", "/api/v1/auth/me?x=1").await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://alpha.localhost:{https}/api/v1/auth/me?x=1").as_str())
    );
    let r = p.get("[::1]", "/").await;
    assert_eq!(
        r.header("location"),
        Some(format!("https://[::1]:{https}/").as_str())
    );
    let (status, _, body) = https_get(https, "alpha.localhost", "alpha.localhost", "/login").await;
    assert_eq!(status, 200, "{body}");
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}
