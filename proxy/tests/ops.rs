//! The proxy under load and through its process life: a worker killed mid-load (every request
//! answered, none hangs), one tenant overloaded (503 with Retry-After at once, another tenant
//! unaffected, a slow client's body holding no slot), a zero-downtime upgrade on SIGQUIT under
//! continuous requests, and SIGTERM letting requests in flight finish and leaving nothing
//! behind; a taken port stops the start with an error. Requests held at a worker use the
//! stand-in worker of `apotheca_testkit::system::echo`.

use std::path::Path;
use std::time::Duration;

use apotheca_testkit::system::daemon::{alive, ready_pids, signal, Daemon, PATIENCE};
use apotheca_testkit::system::echo::wait_path;
use apotheca_testkit::system::load::Load;
use apotheca_testkit::system::proxy::{port_in_use, request, Held, Proxy};
use apotheca_testkit::system::Apotheca;
use nix::sys::signal::Signal;

/// Not a test: the stand-in worker of the tests below (the daemon runs this binary as its
/// worker program; see `apotheca_testkit::system::echo`).
#[test]
#[ignore = "run by the daemon as a stand-in worker"]
fn echo_worker() {
    apotheca_testkit::system::echo::run();
}

/// The daemon with the stand-in worker for every tenant.
async fn serve_echo(a: &Apotheca) -> Daemon {
    apotheca_testkit::system::echo::daemon(a, "echo_worker").await
}

/// Waits until the proxy counts `n` requests in flight for `tenant`.
async fn wait_in_flight(p: &Proxy, tenant: &str, n: f64) {
    let metric = format!(r#"apotheca_proxy_in_flight{{tenant="{tenant}"}}"#);
    let started = tokio::time::Instant::now();
    while p.metric(&metric).await != Some(n) {
        assert!(started.elapsed() < PATIENCE, "{}", p.log_tail());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A POST to `tenant`'s worker at `path` (a [`wait_path`]), returned once the proxy has taken
/// it: counted in flight, so no longer waiting in the listener's backlog, which a SIGTERM's
/// closing of the listener would reset. The slot of the request before (a health check's) is
/// given back just after its answer reaches the client, so the count must first settle at 0:
/// a 1 read then could be that one's, with this request not yet accepted.
async fn hold_at_worker(p: &Proxy, tenant: &str, path: &str) -> Held {
    wait_in_flight(p, tenant, 0.0).await;
    let held = p.hold(&format!("{tenant}.localhost"), path, 0, "").await;
    wait_in_flight(p, tenant, 1.0).await;
    held
}

#[tokio::test]
async fn a_worker_killed_under_load_never_leaves_a_request_hanging() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let d = serve_echo(&a).await;
    let p = a.proxy(&d, &[]).await;
    assert_eq!(p.health("alpha.localhost").await, Ok("alpha".into()));
    let victim = d.ready_pids("alpha").await;
    assert_eq!(victim.len(), 1);

    // A POST the worker is working on when it dies: not idempotent, so not retried.
    let never = a.dir.path().join("never");
    let held = hold_at_worker(&p, "alpha", &wait_path(&never)).await;

    let load = Load::start(p.http, "alpha.localhost", 4);
    load.wait_more(200, 20).await;
    signal(victim[0], Signal::SIGKILL);
    assert_eq!(held.status().await, Ok(502), "{}", p.log_tail());
    // Replaced by control, and serving through the proxy again.
    d.wait_for("alpha", "replaced", |t| {
        let pids = ready_pids(t);
        !pids.is_empty() && !pids.contains(&victim[0])
    })
    .await;
    load.wait_more(200, 20).await;
    let seen = load.finish().await;
    println!(
        "a worker killed under load: answers {:?}, no answer {}",
        seen.statuses,
        seen.errors.len()
    );
    for line in std::fs::read_to_string(&p.log).unwrap().lines() {
        if line.contains("status=5") {
            println!("  {line}");
        }
    }
    assert!(
        seen.errors.is_empty(),
        "requests without an answer: {:?}",
        seen.errors
    );
    // Health checks are idempotent: each one that failed with the worker was retried, and
    // waited for its replacement rather than failing while it started.
    assert_eq!(
        seen.statuses.keys().collect::<Vec<_>>(),
        [&200],
        "{:?}\n{}",
        seen.statuses,
        p.log_tail()
    );
    assert!(!alive(victim[0]));
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn an_overloaded_tenant_gets_503_at_once_while_another_stays_fast() {
    let a = Apotheca::migrated().await;
    a.create("hot").await;
    a.create("cool").await;
    // One request in flight and one waiting, for hot only; read by the proxy at start.
    a.ok(&[
        "scale",
        "--schema",
        "hot",
        "--max",
        "1",
        "--max-inflight",
        "1",
    ])
    .await;
    a.db.client()
        .await
        .execute(
            "UPDATE public.tenants SET queue_length = 1 WHERE schema_name = 'hot'",
            &[],
        )
        .await
        .unwrap();
    let d = serve_echo(&a).await;
    // A queued request may wait long: an answer well before that was not queued.
    let p = a.proxy(&d, &[("queue_timeout_ms", "30000")]).await;
    assert_eq!(p.health("hot.localhost").await, Ok("hot".into()));
    assert_eq!(p.health("cool.localhost").await, Ok("cool".into()));

    // A client still sending its body holds no slot: the proxy reads a body whole before
    // the request is admitted.
    let body = r#"{"username": "nobody", "password": "wrong"}"#;
    let slow = p
        .hold("hot.localhost", "/slow/body", body.len(), &body[..5])
        .await;
    for _ in 0..3 {
        assert_eq!(p.health("hot.localhost").await, Ok("hot".into()));
    }
    // A request's slot is given back just after its last bytes reach the client, so the
    // figure settles at 0 a moment after the answers (it stays 1 if the body held a slot).
    wait_in_flight(&p, "hot", 0.0).await;

    // A request the worker is working on holds hot's only slot.
    let release = a.dir.path().join("release-hot");
    let held = hold_at_worker(&p, "hot", &wait_path(&release)).await;

    // Two more: one waits in the queue, the other is refused at once.
    let ask = |p: &Proxy| {
        let port = p.http;
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let r = request(
                port,
                hyper::Method::GET,
                "/",
                &[("host", "hot.localhost"), ("accept", "application/json")],
                "",
            )
            .await
            .unwrap();
            (r, started.elapsed())
        })
    };
    let (mut first, mut second) = (ask(&p), ask(&p));
    let (refused, queued) = tokio::select! {
        r = &mut first => (r.unwrap(), second),
        r = &mut second => (r.unwrap(), first),
    };
    let (r, refused_after) = refused;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"]["code"], "overloaded");
    assert!(refused_after < Duration::from_secs(15), "{refused_after:?}");

    // The other tenant is served meanwhile, as quickly as ever.
    let mut cool = vec![];
    for _ in 0..5 {
        let started = tokio::time::Instant::now();
        assert_eq!(p.health("cool.localhost").await, Ok("cool".into()));
        cool.push(started.elapsed());
    }
    assert!(
        cool.iter().all(|t| *t < Duration::from_secs(15)),
        "{cool:?}"
    );
    assert!(
        !queued.is_finished(),
        "the queued request was answered early"
    );

    // The slot freed, the queued request goes through; then the slow body arrives and is
    // answered (sent before the queued request had left the queue, it would find the queue
    // full and get a 503, as it should).
    std::fs::write(&release, "").unwrap();
    assert_eq!(held.status().await, Ok(200));
    let (r, queued_for) = queued.await.unwrap();
    assert_eq!((r.status, &r.json()["schema"]), (200, &"hot".into()));
    assert_eq!(slow.finish(&body[5..]).await, Ok(200));
    println!(
        "overload: refused after {refused_after:?}, queued for {queued_for:?}, the other tenant meanwhile {cool:?}"
    );
    wait_in_flight(&p, "hot", 0.0).await;
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn sigquit_hands_the_listeners_over_without_a_failed_request() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let d = a.serve(&[]).await;
    let mut old = a.proxy(&d, &[]).await;
    assert_eq!(old.health("alpha.localhost").await, Ok("alpha".into()));

    let load = Load::start(old.http, "alpha.localhost", 2);
    load.wait_more(200, 20).await;
    signal(old.pid(), Signal::SIGQUIT);
    let new = old.upgrade().await;
    let status = old.wait().await;
    assert!(status.success(), "{status:?}\n{}", old.log_tail());
    load.wait_more(200, 20).await;
    let seen = load.finish().await;
    println!(
        "upgrade under load: answers {:?} by process {:?}, no answer {}",
        seen.statuses,
        seen.by_process,
        seen.errors.len()
    );
    assert!(
        seen.errors.is_empty(),
        "requests without an answer: {:?}",
        seen.errors
    );
    assert_eq!(seen.statuses.keys().collect::<Vec<_>>(), [&200]);
    assert_eq!(seen.by_process.len(), 2, "both processes answered");
    // The successor serves everything now, its admin listener included.
    assert_eq!(new.health("alpha.localhost").await, Ok("alpha".into()));
    assert!(new
        .metric(r#"apotheca_proxy_in_flight{tenant="alpha"}"#)
        .await
        .is_some());
    assert!(new.stop().await.success());
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_and_leaves_nothing_behind() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let d = serve_echo(&a).await;
    let mut p = a
        .proxy(
            &d,
            &[
                ("grace_period_secs", "0"),
                ("graceful_shutdown_timeout_secs", "30"),
            ],
        )
        .await;
    assert_eq!(p.health("alpha.localhost").await, Ok("alpha".into()));
    let release = a.dir.path().join("release");
    let held = hold_at_worker(&p, "alpha", &wait_path(&release)).await;

    signal(p.pid(), Signal::SIGTERM);
    // Draining, not gone: the request in flight is still answered.
    let started = tokio::time::Instant::now();
    while !std::fs::read_to_string(&p.log)
        .unwrap()
        .contains("draining")
    {
        assert!(started.elapsed() < PATIENCE, "{}", p.log_tail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(p.child.try_wait().unwrap().is_none(), "{}", p.log_tail());
    std::fs::write(&release, "").unwrap();
    assert_eq!(held.status().await, Ok(200), "{}", p.log_tail());
    let pid = p.pid();
    let status = p.wait().await;
    assert!(status.success(), "{status:?}\n{}", p.log_tail());
    assert!(!alive(pid));
    for port in [p.http, p.admin] {
        assert!(!port_in_use(port), "port {port} still taken");
    }
    let run = a.dir.path().join("var/run");
    let left: Vec<_> = std::fs::read_dir(&run)
        .map(|e| e.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with("proxy-")),
        "{left:?}"
    );
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn a_taken_port_is_an_error_at_start() {
    let a = Apotheca::migrated().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = a.dir.path().join("taken.toml");
    std::fs::write(
        &config,
        format!("[proxy]\nhttp_listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let (code, err) = proxy_that_exits(&a, &config, &[]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("http_listen 127.0.0.1:{port}")) && err.contains("in use"),
        "{err}"
    );
}

/// A successor finds the sockets it takes over by address: port 0 would name none of them.
#[tokio::test]
async fn an_upgrade_needs_the_ports_not_port_0() {
    let a = Apotheca::migrated().await;
    let config = a.dir.path().join("upgrade-0.toml");
    std::fs::write(
        &config,
        "[proxy]\nhttp_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let (code, err) = proxy_that_exits(&a, &config, &["--upgrade"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--upgrade") && err.contains("http_listen") && err.contains("not 127.0.0.1:0"),
        "{err}"
    );
}

/// Runs the proxy with `config` and `args` where it is expected to refuse to start: its exit
/// code and what it said on stderr.
async fn proxy_that_exits(a: &Apotheca, config: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new(apotheca_testkit::system::proxy::proxy_bin())
            .arg("--config")
            .arg(config)
            .args(args)
            .current_dir(a.dir.path())
            .env_remove("APOTHECA_CONFIG")
            .env("DATABASE_URL", a.db.url())
            .output(),
    )
    .await
    .expect("the proxy neither listened nor exited")
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
