//! `apotheca serve` with real worker processes and a real PostgreSQL: waking a cold tenant,
//! scaling an idle one to zero, the public site, stopping without leaving processes or
//! sockets behind, workers outliving no killed daemon, workers on the threads `[worker]
//! threads` gives, and bad input.

use apotheca_testkit::system::daemon::{
    alive, assert_serves, ready_pids, signal, sockets_in, wait_gone, PATIENCE,
};
use apotheca_testkit::system::Apotheca;

#[tokio::test]
async fn a_cold_tenant_wakes_serves_and_idles_back_to_zero() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let d = a.serve(&[]).await;

    // The public site always runs.
    let public = d
        .wait_for("public", "running", |t| !ready_pids(t).is_empty())
        .await;
    assert_serves(public["workers"][0]["address"].as_str().unwrap(), "public").await;

    let cold = d.tenant("alpha").await;
    assert_eq!(cold["state"], "cold", "{cold}");
    assert!(cold["workers"].as_array().unwrap().is_empty());

    let out = a.ok(&["wake", "--schema", "alpha"]).await;
    let endpoint = out
        .trim()
        .strip_prefix("alpha: ready at ")
        .unwrap_or_else(|| panic!("{out}"));
    assert_serves(endpoint, "alpha").await;
    // A second wake answers with the same worker.
    assert_eq!(d.wake("alpha").await, [endpoint]);

    let out = a.ok(&["status"]).await;
    assert!(out.contains("alpha: running, 1 worker(s)"), "{out}");
    // Totals: alpha's worker and the public site's, and the database's connections.
    assert!(
        out.contains("2 tenant(s), 2 live; 2 worker(s), RSS "),
        "{out}"
    );
    let report = d.status().await;
    let totals = &report["totals"];
    assert_eq!(totals["workers"], 2, "{report}");
    assert!(
        totals["rss_bytes"].as_u64().unwrap() > 1_000_000,
        "{report}"
    );
    let db = &totals["database"];
    assert!(db["tenant_connections"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        db["connections"].as_u64().unwrap() > db["tenant_connections"].as_u64().unwrap(),
        "{report}"
    );
    assert!(db["max_connections"].as_u64().unwrap() > 0, "{report}");
    let (status, metrics) =
        apotheca_testkit::system::daemon::http(&d.socket, hyper::Method::GET, "/metrics")
            .await
            .unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert_eq!(status, 200);
    assert!(metrics.contains("\napotheca_workers 2\n"), "{metrics}");
    assert!(
        metrics.contains("\napotheca_tenant_workers{tenant=\"alpha\"} 1\n"),
        "{metrics}"
    );
    let rss = metrics
        .lines()
        .find_map(|l| l.strip_prefix("apotheca_tenant_worker_rss_bytes{tenant=\"alpha\"} "))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(rss.parse::<u64>().unwrap() > 1_000_000, "{metrics}");
    let json: serde_json::Value =
        serde_json::from_str(&a.ok(&["status", "--json", "--schema", "alpha"]).await).unwrap();
    let worker = &json["workers"][0];
    assert_eq!(worker["state"], "ready");
    assert_eq!(worker["address"], endpoint);
    let pid = worker["pid"].as_i64().unwrap() as i32;
    assert!(alive(pid));
    assert_eq!(json["policy"]["min_workers"], 0);

    // Idle for a second: back to zero, the process and its socket gone.
    a.ok(&["scale", "--schema", "alpha", "--idle-timeout", "1s"])
        .await;
    let t = d
        .wait_for("alpha", "scaled to zero", |t| {
            t["policy"]["idle_timeout_secs"] == 1 && t["workers"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(t["state"], "cold");
    let exit = &t["last_exit"];
    assert_eq!(exit["crash"], false, "{t}");
    assert!(
        exit["reason"]
            .as_str()
            .unwrap()
            .starts_with("drained (idle)"),
        "{t}"
    );
    assert_eq!(t["restarts"], 0);
    wait_gone(&[pid]).await;
    let socket = endpoint.strip_prefix("unix:").unwrap();
    assert!(!std::path::Path::new(socket).exists());

    // Cold again, it wakes again.
    assert_serves(&d.wake("alpha").await[0], "alpha").await;
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn sigterm_drains_every_worker_and_leaves_no_process_or_socket() {
    let a = Apotheca::migrated().await;
    a.create("bravo").await;
    a.create("charlie").await;
    let mut d = a.serve(&[]).await;
    for schema in ["bravo", "charlie"] {
        assert_serves(&d.wake(schema).await[0], schema).await;
    }
    d.wait_for("public", "running", |t| !ready_pids(t).is_empty())
        .await;
    let mut pids = vec![];
    for schema in ["public", "bravo", "charlie"] {
        pids.extend(d.ready_pids(schema).await);
    }
    assert_eq!(pids.len(), 3);
    assert_eq!(sockets_in(&d.worker_dir).len(), 3);
    assert!(d.socket.exists());

    signal(d.pid(), nix::sys::signal::Signal::SIGTERM);
    let status = tokio::time::timeout(PATIENCE, d.child.wait())
        .await
        .expect("apotheca serve stops")
        .unwrap();
    assert!(status.success(), "{status:?}\n{}", d.log_tail());
    let mut last = String::new();
    while let Ok(Some(line)) = d.stdout.next_line().await {
        last = line;
    }
    assert_eq!(last, "apotheca serve: stopped");
    // The daemon reaped them before it exited: not even zombies are left.
    for pid in &pids {
        assert!(!alive(*pid), "worker {pid} outlived the daemon");
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    assert_eq!(sockets_in(&d.worker_dir), Vec::<std::path::PathBuf>::new());
    assert!(!d.socket.exists(), "the API socket is removed");
    let log = d.log_tail();
    assert!(log.contains("every worker stopped"), "{log}");
}

#[tokio::test]
async fn workers_stop_by_themselves_when_the_daemon_is_killed() {
    let a = Apotheca::migrated().await;
    a.create("delta").await;
    let mut d = a.serve(&[]).await;
    assert_serves(&d.wake("delta").await[0], "delta").await;
    d.wait_for("public", "running", |t| !ready_pids(t).is_empty())
        .await;
    let mut pids = d.ready_pids("delta").await;
    pids.extend(d.ready_pids("public").await);
    assert_eq!(pids.len(), 2);

    signal(d.pid(), nix::sys::signal::Signal::SIGKILL);
    d.child.wait().await.unwrap();
    // Their channels reached EOF: idle, they drain and exit by themselves at once.
    wait_gone(&pids).await;

    // A new daemon takes over the same folder: the lock is free, stale sockets are cleared.
    let d = a.serve(&[]).await;
    assert_serves(&d.wake("delta").await[0], "delta").await;
    let sockets = sockets_in(&d.worker_dir);
    assert!(sockets.len() <= 2, "{sockets:?}");
    assert!(d.stop().await.success());
}

/// The threads of worker `pid` (its main thread among them).
fn threads_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

#[tokio::test]
async fn workers_run_on_the_threads_the_settings_give() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    a.create("beta").await;
    // The default: one thread.
    let d = a.serve(&[]).await;
    assert_serves(&d.wake("alpha").await[0], "alpha").await;
    let pid = d.ready_pids("alpha").await[0];
    assert_eq!(threads_of(pid), 1, "{}", d.log_tail());
    assert!(d.stop().await.success());
    // Three runtime threads beside the main one.
    let d = a.serve(&[("APOTHECA_WORKER__THREADS", "3")]).await;
    assert_serves(&d.wake("beta").await[0], "beta").await;
    let pid = d.ready_pids("beta").await[0];
    assert_eq!(threads_of(pid), 4, "{}", d.log_tail());
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn bad_input_exits_2_and_errors_are_clear() {
    let a = Apotheca::migrated().await;
    a.create("echo").await;
    // Without a daemon.
    let run = a.fails(&["status"], 1).await;
    assert!(
        run.stderr.contains("is `apotheca serve` running?"),
        "{}",
        run.stderr
    );
    for (args, message) in [
        (vec!["scale", "--schema", "echo"], "nothing to change"),
        (
            vec!["scale", "--schema", "echo", "--min", "3", "--max", "2"],
            "--min 3 is above --max 2",
        ),
        (
            vec!["scale", "--schema", "echo", "--min", "5"],
            "min workers (5) would be above max workers (4)",
        ),
        (
            vec!["scale", "--schema", "echo", "--idle-timeout", "0s"],
            "at least 1s",
        ),
        (
            vec!["scale", "--schema", "echo", "--idle-timeout", "5 weeks"],
            "is not a duration",
        ),
        (
            vec!["scale", "--schema", "echo", "--max", "0"],
            "0 is not in 1..",
        ),
        (
            vec!["scale", "--schema", "nope", "--max", "2"],
            "no tenant with schema \"nope\"",
        ),
        (
            vec!["scale", "--schema", "public", "--max", "2"],
            "reserved",
        ),
        (vec!["wake", "--schema", "Echo"], "is invalid"),
        (vec!["restart"], "--schema"),
        (
            vec!["restart", "--schema", "echo", "--all"],
            "cannot be used with",
        ),
    ] {
        let run = a.fails(&args, 2).await;
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
    let t = &a.tenants().await[0];
    assert_eq!(t["policy"]["max_workers"], 4, "nothing changed");

    let d = a.serve(&[]).await;
    let run = a.fails(&["wake", "--schema", "nope"], 2).await;
    assert!(run.stderr.contains("no such tenant"), "{}", run.stderr);
    // One daemon per socket.
    let run = a.fails(&["serve"], 1).await;
    assert!(
        run.stderr.contains("another `apotheca serve` is running"),
        "{}",
        run.stderr
    );
    // A suspended tenant is not woken; resumed, it is.
    a.ok(&["suspend-tenant", "--schema", "echo"]).await;
    d.wait_for("echo", "suspended", |t| t["state"] == "suspended")
        .await;
    let run = a.fails(&["wake", "--schema", "echo"], 1).await;
    assert!(run.stderr.contains("suspended"), "{}", run.stderr);
    a.ok(&["resume-tenant", "--schema", "echo"]).await;
    d.wait_for("echo", "resumed", |t| t["state"] == "cold")
        .await;
    a.ok(&["wake", "--schema", "echo"]).await;
    assert!(d.stop().await.success());
}

/// One GET with a bearer token on a fresh connection to a worker's socket: status and body.
async fn get_with_token(endpoint: &str, path: &str, token: &str) -> (u16, String) {
    let socket = std::path::Path::new(endpoint.strip_prefix("unix:").unwrap());
    let bearer = format!("Bearer {token}");
    let (status, body) = apotheca_testkit::system::daemon::http_with(
        socket,
        hyper::Method::GET,
        path,
        &[("authorization", &bearer)],
    )
    .await
    .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Workers do not listen on their tenant's channel themselves (a PostgreSQL backend each):
/// control hears every tenant's on one connection and relays it. A worker keeps its reads only
/// once control says it hears the channel, and an announcement there (as the CLI's writes
/// make) reaches it at once, long before its cache would expire.
#[tokio::test]
async fn control_relays_the_tenants_change_channel_to_its_workers() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let url = a.ok(&["db", "url", "--schema", "alpha"]).await;
    let (db, conn) = tokio_postgres::connect(url.trim(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let token = "relay-test-token-0123456789abcdefghijklmnop";
    db.batch_execute(&format!(
        "INSERT INTO users (username, password_hash, full_name, role)
           VALUES ('admin', '$argon2id$v=19$m=7168,t=5,p=1$c2FsdHNhbHQ$aGFzaGhhc2g', 'Admin', 'admin');
         INSERT INTO api_tokens (user_id, name, token_hash, token_prefix)
           SELECT id, 'relay', sha256(convert_to('{token}', 'UTF8')), 'relay' FROM users;
         INSERT INTO medicines (name, dosage_form, sale_price, reorder_level)
           VALUES ('Relay v0', 'tablet', 1.00, 1);"
    ))
    .await
    .unwrap();
    // Answers kept for minutes: only a relayed announcement can refresh them in time.
    let d = a
        .serve(&[("APOTHECA_WORKER__READ_CACHE_SECS", "600")])
        .await;
    let endpoint = d.wake("alpha").await.remove(0);
    let list = "/api/v1/medicines?per_page=5";
    // Once control says it hears the channel, a change made without an announcement is not
    // seen: the answer is kept.
    let started = std::time::Instant::now();
    let mut version = 0;
    loop {
        let (status, body) = get_with_token(&endpoint, list, token).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("Relay v{version}")), "{body}");
        version += 1;
        db.execute(
            "UPDATE medicines SET name = $1",
            &[&format!("Relay v{version}")],
        )
        .await
        .unwrap();
        let (_, body) = get_with_token(&endpoint, list, token).await;
        if body.contains(&format!("Relay v{}", version - 1)) {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the worker never kept an answer"
        );
    }
    // Announced on the channel, as the CLI does: forgotten at once.
    db.execute("SELECT pg_notify('alpha', 'data')", &[])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let (_, body) = get_with_token(&endpoint, list, token).await;
        if body.contains(&format!("Relay v{version}")) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the announcement never reached the worker: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The worker opened no connection of its own to listen: one backend of alpha's role.
    let backends: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(backends, 1, "the worker's connections");
    assert!(d.stop().await.success());
}
