//! Two Apotheca hosts on one database behind HAProxy configured by
//! `deploy/multi-host/haproxy.cfg` itself: while both are up each pharmacy is served by one
//! host only, its HTTP (hashed on the Host header) and its HTTPS (on SNI, TLS passed through to
//! the host's proxy) by the same one; the client's address reaches Apotheca (in
//! X-Forwarded-For on HTTP, a forged one not believed; in a PROXY header on HTTPS); and when a host's proxy and control stop, its pharmacies move to
//! the other (after two failed health checks, a second apart); so do those of a host whose
//! control alone died (its proxy's `/ready` says so). Two hosts creating pharmacies
//! from one pool of spare schemas and migrating at once do each thing once. Sales posted all
//! along, each with its idempotency key (retried until answered), while a host is killed or
//! while the hosts are upgraded one at a time (drained in HAProxy, restarted, back) leave every
//! pharmacy's books exact; the upgrade fails none of them. The development cluster
//! (`deploy/multi-host/up.sh`) comes up, serves, and stops everything it started.

use std::collections::BTreeMap;
use std::time::Duration;

use apotheca_testkit::system::daemon::{Daemon, PATIENCE};
use apotheca_testkit::system::haproxy::Haproxy;
use apotheca_testkit::system::pharmacy::{
    assert_agrees, audit, settle, summary, Attempt, Sales, Shop,
};
use apotheca_testkit::system::proxy::{request_from, Proxy, Reply};
use apotheca_testkit::system::tls::{https_get, make_cert};
use apotheca_testkit::system::Apotheca;
use hyper::Method;
use serde_json::json;

const PHARMACIES: usize = 12;
/// The client, as HAProxy sees it and passes it on.
const CLIENT: [u8; 4] = [127, 0, 0, 5];

fn host_env(name: &'static str) -> [(&'static str, &'static str); 3] {
    [
        ("APOTHECA_CONTROL__SERVE__HOST_NAME", name),
        ("APOTHECA_CONTROL__SERVE__HEARTBEAT_SECS", "1"),
        ("APOTHECA_CONTROL__SERVE__HOST_GONE_SECS", "3"),
    ]
}

async fn login_page(lb: &Haproxy, schema: &str) -> Reply {
    let host = format!("{schema}.localhost");
    request_from(
        CLIENT.into(),
        lb.http,
        Method::GET,
        "/login",
        &[("host", host.as_str())],
        "",
    )
    .await
    .unwrap_or_else(|e| panic!("{schema}: {e}"))
}

/// Whether `d` has a ready worker of `schema`.
async fn serves(d: &Daemon, schema: &str) -> bool {
    !d.ready_pids(schema).await.is_empty()
}

#[tokio::test]
async fn haproxy_keeps_each_pharmacy_on_one_host_and_moves_it_when_the_host_dies() {
    let a = Apotheca::migrated().await;
    let schemas: Vec<String> = (0..PHARMACIES).map(|i| format!("p{i:02}")).collect();
    for s in &schemas {
        a.create(s).await;
    }
    let b = a.another_host();
    let host_a = a.serve(&host_env("host-a")).await;
    let host_b = b.serve(&host_env("host-b")).await;
    // Each host terminates TLS with its certificate; HAProxy passes TLS through.
    let tls = a.dir.path().join("tls");
    make_cert(&tls, "default", "localhost").await;
    let (cert, key) = (tls.join("default.crt"), tls.join("default.key"));
    let (cert, key) = (format!("{cert:?}"), format!("{key:?}"));
    let keys = [
        ("proxy_protocol_from", "[\"127.0.0.1\"]"),
        ("forwarded_for_from", "[\"127.0.0.1\"]"),
        ("tls_cert", cert.as_str()),
        ("tls_key", key.as_str()),
    ];
    let proxy_a = a.proxy(&host_a, &keys).await;
    let proxy_b = b.proxy(&host_b, &keys).await;
    let lb = Haproxy::start(a.dir.path(), &proxy_a, &proxy_b).await;

    // Every pharmacy answers through HAProxy.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for s in &schemas {
        loop {
            let r = login_page(&lb, s).await;
            if r.status == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{s}: {} {}\n{}",
                r.status,
                r.text(),
                lb.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // More requests, over HTTPS too (hashed on SNI): each pharmacy still has workers on
    // exactly one host, and both hosts have some.
    for s in &schemas {
        let name = format!("{s}.localhost");
        for _ in 0..2 {
            assert_eq!(login_page(&lb, s).await.status, 200);
            let (status, _, _) = https_get(lb.https, &name, &name, "/login").await;
            assert_eq!(status, 200, "{s} over HTTPS");
        }
    }
    let mut placed: BTreeMap<String, &str> = BTreeMap::new();
    for s in &schemas {
        let on = (serves(&host_a, s).await, serves(&host_b, s).await);
        let host = match on {
            (true, false) => "host-a",
            (false, true) => "host-b",
            other => {
                let lines = |p: &apotheca_testkit::system::proxy::Proxy| {
                    std::fs::read_to_string(&p.log)
                        .unwrap_or_default()
                        .lines()
                        .filter(|l| l.contains(&format!("host={s}.localhost")))
                        .map(|l| l.split(" access: ").nth(1).unwrap_or(l).to_owned())
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                panic!(
                    "{s} on (host-a, host-b) = {other:?}\nA:\n{}\nB:\n{}\n{}",
                    lines(&proxy_a),
                    lines(&proxy_b),
                    lb.log_tail()
                )
            }
        };
        placed.insert(s.clone(), host);
    }
    let on_a = placed.values().filter(|h| **h == "host-a").count();
    assert!(
        (1..PHARMACIES).contains(&on_a),
        "{on_a} of {PHARMACIES} pharmacies on host-a: {placed:?}"
    );
    // The client's address came through HAProxy to Apotheca.
    let (moved, stays) = {
        let on = |h: &str| {
            placed
                .iter()
                .find(|(_, x)| **x == h)
                .map(|(s, _)| s.clone())
        };
        (on("host-a").unwrap(), on("host-b").unwrap())
    };
    let line = proxy_a
        .access_line(|l| l.contains(&format!("host={moved}.localhost")))
        .await;
    assert!(line.contains("client=127.0.0.5"), "{line}");
    // An address the client wrote itself is not believed: HAProxy's comes last.
    let host = format!("{moved}.localhost");
    let headers = [("host", host.as_str()), ("x-forwarded-for", "6.6.6.6")];
    request_from(
        CLIENT.into(),
        lb.http,
        Method::GET,
        "/spoof-check",
        &headers,
        "",
    )
    .await
    .unwrap();
    let line = proxy_a.access_line(|l| l.contains("/spoof-check")).await;
    assert!(line.contains("client=127.0.0.5"), "{line}");

    // Host A dies (its proxy and control stop): its pharmacies move to host B within the
    // health check's interval (2 failed checks a second apart), the others stay.
    let died = tokio::time::Instant::now();
    assert!(proxy_a.stop().await.success());
    assert!(host_a.stop().await.success());
    loop {
        let r = login_page(&lb, &moved).await;
        if r.status == 200 {
            break;
        }
        assert!(
            died.elapsed() < PATIENCE,
            "{moved} never moved: {} {}\n{}",
            r.status,
            r.text(),
            lb.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = died.elapsed();
    assert!(serves(&host_b, &moved).await);
    assert_eq!(login_page(&lb, &stays).await.status, 200);
    for s in &schemas {
        assert_eq!(
            login_page(&lb, s).await.status,
            200,
            "{s} after host-a died"
        );
    }
    println!("a pharmacy moved {took:?} after its host died");
    assert!(proxy_b.stop().await.success());
    assert!(host_b.stop().await.success());
}

/// Creates pharmacies `<prefix>0` to `<prefix>5` on `host`, one after another.
async fn create_six(host: &Apotheca, prefix: &str) {
    for i in 0..6 {
        host.create(&format!("{prefix}{i}")).await;
    }
}

/// Two hosts provisioning at once: each creates six pharmacies from the same pool of spare
/// schemas, then both run `migrate-schemas` together. Every pharmacy is created, each on a
/// spare of its own or a schema built for it (a spare taken twice would fail a create), no
/// pharmacy's schema is left listed as a spare, and every schema is migrated exactly once.
#[tokio::test]
async fn two_hosts_creating_pharmacies_and_migrating_at_once_do_each_thing_once() {
    let a = Apotheca::migrated().await;
    let out = a.ok(&["prepare-spares", "--count", "8"]).await;
    assert!(out.contains("8 ready"), "{out}");
    let b = a.another_host();
    tokio::join!(create_six(&a, "left"), create_six(&b, "right"));
    let tenants = a.tenants().await;
    assert_eq!(tenants.len(), 12, "{tenants:#?}");
    let db = a.db.client().await;
    let both: Vec<i64> = apotheca_testkit::column(
        &db,
        "SELECT count(*) FROM public.tenants t JOIN public.spare_schemas s
           ON s.schema_name = t.schema_name",
    )
    .await;
    assert_eq!(both, [0], "a pharmacy's schema still listed as a spare");
    let left: Vec<i64> =
        apotheca_testkit::column(&db, "SELECT count(*) FROM public.spare_schemas").await;
    assert!(
        left[0] < 8,
        "the pharmacies were made from the spares: {left:?} left"
    );
    let claimed: Vec<i64> = apotheca_testkit::column(
        &db,
        "SELECT count(*) FROM public.tenants t
          WHERE NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = t.schema_name)",
    )
    .await;
    assert_eq!(claimed, [0], "a pharmacy without its schema");

    let (one, two) = tokio::join!(a.run(&["migrate-schemas"]), b.run(&["migrate-schemas"]));
    assert_eq!(
        (one.code, two.code),
        (0, 0),
        "{}\n{}",
        one.stderr,
        two.stderr
    );
    let per_schema: Vec<i64> = apotheca_testkit::column(
        &db,
        "SELECT count(*) FROM public.apotheca_migrations m JOIN public.tenants t
           ON t.schema_name = m.schema_name GROUP BY m.schema_name",
    )
    .await;
    let built = apotheca_migrations::MigrationSet::embedded()
        .unwrap()
        .tenant_version();
    assert_eq!(per_schema.len(), 12);
    assert!(
        per_schema.iter().all(|n| *n == i64::from(built)),
        "each tenant schema migrated once: {per_schema:?}"
    );
}

/// A port of 127.0.0.1 that is free with the next two (the script gives the hosts +1 and +2).
fn three_free_ports() -> u16 {
    let free = |p: u16| std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, p)).is_ok();
    for _ in 0..100 {
        let base = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if base < 65000 && free(base) && free(base + 1) && free(base + 2) {
            return base;
        }
    }
    panic!("no three free ports in a row");
}

/// Whether something accepts connections at 127.0.0.1:`port`.
fn open(port: u16) -> bool {
    std::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[tokio::test]
async fn the_development_cluster_script_serves_each_pharmacy_from_one_host_and_stops_it_all() {
    use tokio::io::AsyncBufReadExt;

    let a = Apotheca::empty().await;
    let dir = a.dir.path().join("cluster");
    let (http, https, admin) = (three_free_ports(), three_free_ports(), three_free_ports());
    let bin_dir = apotheca_testkit::binary("apotheca")
        .parent()
        .unwrap()
        .to_owned();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/multi-host/up.sh");
    let mut up = tokio::process::Command::new(&script);
    up.arg("--no-build")
        .arg("--dir")
        .arg(&dir)
        .args(["--http", &http.to_string()])
        .args(["--https", &https.to_string()])
        .args(["--admin", &admin.to_string()])
        .env("APOTHECA_BIN_DIR", &bin_dir)
        .env("DATABASE_URL", a.db.url())
        .env("RUST_LOG", "warn")
        .env_remove("APOTHECA_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let mut up = up.spawn().expect("running deploy/multi-host/up.sh");
    // Should the test fail, the script's group still gets its SIGTERM (it stops what it
    // started); killing the script alone would leave its hosts and HAProxy running.
    struct Group(nix::unistd::Pid);
    impl Drop for Group {
        fn drop(&mut self) {
            let _ = nix::sys::signal::killpg(self.0, nix::sys::signal::Signal::SIGTERM);
        }
    }
    let group = Group(nix::unistd::Pid::from_raw(up.id().unwrap() as i32));
    let mut out = tokio::io::BufReader::new(up.stdout.take().unwrap()).lines();
    let mut said = String::new();
    let ready = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(line) = out.next_line().await.unwrap() {
            said.push_str(&line);
            said.push('\n');
            if line.starts_with("The cluster is up") {
                return true;
            }
        }
        false
    })
    .await;
    if ready != Ok(true) {
        let mut err = String::new();
        let _ =
            tokio::io::AsyncReadExt::read_to_string(up.stderr.as_mut().unwrap(), &mut err).await;
        panic!("the cluster did not come up ({ready:?}):\n{said}\n{err}");
    }

    // The demo pharmacies answer through HAProxy, over HTTP and HTTPS, each from one host.
    for schema in ["acme", "beta"] {
        let host = format!("{schema}.localhost");
        for _ in 0..3 {
            let page = apotheca_testkit::system::proxy::request(
                http,
                Method::GET,
                "/login",
                &[("host", host.as_str())],
                "",
            )
            .await
            .unwrap();
            assert_eq!(page.status, 200, "{schema}: {}", page.text());
            let (status, _, body) = https_get(https, &host, &host, "/login").await;
            assert_eq!(status, 200, "{schema} over HTTPS: {body}");
        }
    }
    let status = tokio::process::Command::new(bin_dir.join("apotheca"))
        .arg("--config")
        .arg(dir.join("host-a/apotheca.toml"))
        .args(["status", "--cluster", "--json"])
        .env("DATABASE_URL", a.db.url())
        .output()
        .await
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let cluster: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let hosts = cluster.as_array().expect("a list of hosts");
    let live: Vec<&str> = hosts
        .iter()
        .filter(|h| h["state"] == "live")
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert_eq!(live, ["host-a", "host-b"], "{cluster}");
    for schema in ["acme", "beta"] {
        let on: Vec<&str> = hosts
            .iter()
            .filter(|h| h["workers"].get(schema).is_some())
            .filter_map(|h| h["name"].as_str())
            .collect();
        assert_eq!(on.len(), 1, "{schema} on {on:?}: {cluster}");
    }

    // SIGTERM stops HAProxy and both hosts: nothing listens any more.
    nix::sys::signal::kill(group.0, nix::sys::signal::Signal::SIGTERM).unwrap();
    let ended = tokio::time::timeout(PATIENCE, up.wait()).await;
    assert!(ended.is_ok(), "the script did not stop");
    let used = [
        http,
        http + 1,
        http + 2,
        https,
        https + 1,
        https + 2,
        admin + 1,
        admin + 2,
    ];
    for p in used {
        assert!(!open(p), "port {p} still open after the stop");
    }
}

/// Units of each medicine a pharmacy receives before the sales.
const STOCK: i64 = 100_000;

/// host-a (on `a`) and host-b (on `b`), each its daemon and its proxy (HTTP, trusting
/// HAProxy's PROXY protocol), behind HAProxy.
async fn behind_haproxy(a: &Apotheca, b: &Apotheca) -> (Daemon, Daemon, Proxy, Proxy, Haproxy) {
    let host_a = a.serve(&host_env("host-a")).await;
    let host_b = b.serve(&host_env("host-b")).await;
    let keys = [
        ("proxy_protocol_from", "[\"127.0.0.1\"]"),
        ("forwarded_for_from", "[\"127.0.0.1\"]"),
    ];
    let proxy_a = a.proxy(&host_a, &keys).await;
    let proxy_b = b.proxy(&host_b, &keys).await;
    let lb = Haproxy::start(a.dir.path(), &proxy_a, &proxy_b).await;
    (host_a, host_b, proxy_a, proxy_b, lb)
}

/// Pharmacies `names` made with an admin, then opened for business through HAProxy (three
/// medicines of [`STOCK`] units each).
async fn open_shops(a: &Apotheca, lb: &Haproxy, names: &[&str]) -> Vec<Shop> {
    futures::future::join_all(names.iter().map(|s| a.create_pharmacy(s))).await;
    futures::future::join_all(names.iter().map(|s| Shop::open(lb.http, s, 3, STOCK))).await
}

/// Every sale retried until answered, then each pharmacy's books against what its clients
/// were told: stock = batches = ledger, one invoice per key.
async fn books_agree(a: &Apotheca, shops: &[Shop], attempts: Vec<Vec<Attempt>>) {
    let db = a.db.client().await;
    for (shop, attempts) in shops.iter().zip(attempts) {
        let settled = settle(shop, attempts).await;
        let audit = audit(&db, &shop.schema).await;
        assert_agrees(&audit, &settled, STOCK, &shop.medicines);
    }
}

#[tokio::test]
async fn sales_posted_while_a_host_dies_leave_every_pharmacys_books_exact() {
    let a = Apotheca::migrated().await;
    let b = a.another_host();
    let (host_a, host_b, proxy_a, proxy_b, lb) = behind_haproxy(&a, &b).await;
    let names = ["apple", "birch", "cedar", "daisy", "elder", "fern"];
    let shops = open_shops(&a, &lb, &names).await;
    let mut on_a = Vec::new();
    for (i, s) in names.iter().enumerate() {
        let here = (serves(&host_a, s).await, serves(&host_b, s).await);
        assert!(here.0 != here.1, "{s} on (host-a, host-b) = {here:?}");
        if here.0 {
            on_a.push(i);
        }
    }
    assert!(
        !on_a.is_empty() && on_a.len() < names.len(),
        "host-a serves {on_a:?} of {names:?}"
    );

    // Two clients per pharmacy post sales all along, each with its idempotency key.
    let sales: Vec<Sales> = shops.iter().map(|s| Sales::start(s, 2)).collect();
    for s in &sales {
        s.wait_more(5).await;
    }
    // Host A dies: its proxy and control are killed (its workers follow).
    let died = tokio::time::Instant::now();
    proxy_a.kill().await;
    host_a.kill().await;
    // Its pharmacies post sales again, through host B; the others never stopped.
    for s in &sales {
        s.wait_more(5).await;
    }
    let attempts: Vec<Vec<Attempt>> =
        futures::future::join_all(sales.into_iter().map(Sales::finish)).await;
    let moved_in = on_a
        .iter()
        .filter_map(|i| {
            attempts[*i]
                .iter()
                .filter(|t| t.started >= died && t.posted())
                .map(|t| t.ended - died)
                .min()
        })
        .max()
        .expect("sales of host-a's pharmacies after it died");
    for (name, attempts) in names.iter().zip(&attempts) {
        println!("{name}: {}", summary(attempts));
    }
    println!("host-a's pharmacies posted sales through host-b {moved_in:?} after it died");
    books_agree(&a, &shops, attempts).await;
    assert!(proxy_b.stop().await.success());
    assert!(host_b.stop().await.success());
}

/// Takes `server` out of HAProxy (drain: no new requests), restarts its control and proxy,
/// puts it back and waits until HAProxy has it up again.
async fn upgrade(
    lb: &Haproxy,
    server: &'static str,
    on: &Apotheca,
    host: Daemon,
    proxy: Proxy,
) -> (Daemon, Proxy) {
    for backend in ["apotheca_http", "apotheca_https"] {
        let said = lb
            .command(&format!("set server {backend}/{server} state drain"))
            .await;
        assert_eq!(said.trim(), "", "{backend}/{server}: {said}");
    }
    // What it was answering ends; nothing new comes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(host.stop().await.success());
    let host = on.serve(&host_env(server)).await;
    let proxy = proxy.restart().await;
    for backend in ["apotheca_http", "apotheca_https"] {
        let said = lb
            .command(&format!("set server {backend}/{server} state ready"))
            .await;
        assert_eq!(said.trim(), "", "{backend}/{server}: {said}");
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !lb.serving("apotheca_http", server).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{server} never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (host, proxy)
}

#[tokio::test]
async fn a_rolling_upgrade_under_continuous_sales_fails_none() {
    let a = Apotheca::migrated().await;
    let b = a.another_host();
    let (host_a, host_b, proxy_a, proxy_b, lb) = behind_haproxy(&a, &b).await;
    let names = ["apple", "birch", "cedar", "daisy"];
    let shops = open_shops(&a, &lb, &names).await;
    let sales: Vec<Sales> = shops.iter().map(|s| Sales::start(s, 1)).collect();
    for s in &sales {
        s.wait_more(3).await;
    }
    // Host by host: drained, restarted, back; sales go on through the other meanwhile.
    let (host_a, proxy_a) = upgrade(&lb, "host-a", &a, host_a, proxy_a).await;
    for s in &sales {
        s.wait_more(3).await;
    }
    let (host_b, proxy_b) = upgrade(&lb, "host-b", &b, host_b, proxy_b).await;
    for s in &sales {
        s.wait_more(3).await;
    }
    let attempts: Vec<Vec<Attempt>> =
        futures::future::join_all(sales.into_iter().map(Sales::finish)).await;
    for (name, attempts) in names.iter().zip(&attempts) {
        let failed: Vec<&Attempt> = attempts.iter().filter(|t| !t.posted()).collect();
        assert!(
            failed.is_empty(),
            "{name}: {} failed of {}: {failed:?}",
            failed.len(),
            attempts.len()
        );
        println!("{name}: {} sales, none failed", attempts.len());
    }
    books_agree(&a, &shops, attempts).await;
    for p in [proxy_a, proxy_b] {
        assert!(p.stop().await.success());
    }
    for d in [host_a, host_b] {
        assert!(d.stop().await.success());
    }
}

#[tokio::test]
async fn a_host_whose_control_died_is_taken_out_and_its_pharmacies_move() {
    let a = Apotheca::migrated().await;
    let names = ["apple", "birch", "cedar", "daisy", "elder", "fern"];
    for s in names {
        a.create(s).await;
    }
    let b = a.another_host();
    let (host_a, host_b, proxy_a, proxy_b, lb) = behind_haproxy(&a, &b).await;
    let mut on_a = None;
    for s in names {
        assert_eq!(login_page(&lb, s).await.status, 200, "{s}");
        if serves(&host_a, s).await {
            on_a = Some(s);
        }
    }
    let moved = on_a.expect("a pharmacy on host-a");
    let ready = |port: u16| async move {
        apotheca_testkit::system::proxy::request(port, Method::GET, "/ready", &[], "")
            .await
            .map(|r| r.status)
    };
    assert_eq!(ready(proxy_a.admin).await, Ok(200));
    let (status, said) = host_a.call(Method::GET, "/v1/ready").await;
    assert_eq!((status, &said["ready"]), (200, &json!(true)), "{said}");

    // Host A's control dies; its proxy runs on, but says it is not ready, and HAProxy sends
    // its pharmacies to host B.
    host_a.kill().await;
    assert_eq!(ready(proxy_a.admin).await, Ok(503));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let page = login_page(&lb, moved).await;
        if page.status == 200 && serves(&host_b, moved).await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{moved} never moved: {} {}\n{}\nB: {}",
            page.status,
            page.text(),
            lb.log_tail(),
            proxy_b.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!lb.serving("apotheca_http", "host-a").await);
    for p in [proxy_a, proxy_b] {
        assert!(p.stop().await.success());
    }
    assert!(host_b.stop().await.success());
}
