//! Crashes and stubborn workers under `apotheca serve`: a worker killed with SIGKILL is reaped
//! and replaced after a backoff that doubles, a tenant that keeps crashing is marked
//! crash-looping and left alone until `apotheca restart`, a worker that cannot start (or never
//! says ready) is a failed start, and one that ignores a drain is killed by a second SIGTERM
//! or the shutdown deadline.

use apotheca_testkit::system::daemon::{alive, assert_serves, ready_pids, signal, sockets_in};
use apotheca_testkit::system::Apotheca;
use nix::sys::signal::Signal;
use serde_json::Value;

/// CPU time (user + system) a process has used, in ms.
fn cpu_ms(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap_or(100) as u64;
    ticks * 1000 / hz
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test]
async fn killed_workers_are_replaced_with_backoff_then_marked_crash_looping() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let d = a
        .serve(&[
            ("APOTHECA_CONTROL__SERVE__CRASH_LOOP_CRASHES", "3"),
            ("APOTHECA_CONTROL__SERVE__BACKOFF_INITIAL_MS", "200"),
        ])
        .await;
    a.ok(&["scale", "--schema", "alpha", "--min", "1"]).await;
    let mut t = d
        .wait_for("alpha", "running with min 1", |t| ready_pids(t).len() == 1)
        .await;
    for crash in 1..=2u64 {
        let pid = ready_pids(&t)[0];
        signal(pid, Signal::SIGKILL);
        t = d
            .wait_for("alpha", "replaced", |t| {
                num(&t["restarts"]) == crash && ready_pids(t).len() == 1 && ready_pids(t)[0] != pid
            })
            .await;
        assert!(!alive(pid), "the killed worker was reaped");
        let exit = &t["last_exit"];
        assert_eq!(exit["reason"], "killed by SIGKILL", "{t}");
        assert_eq!(exit["crash"], true);
        // Backoff: 200 ms, then 400 ms, and the new worker started no sooner (both times
        // are the daemon's own records).
        let backoff = num(&t["last_backoff_ms"]);
        assert_eq!(backoff, 200 << (crash - 1), "{t}");
        let started = num(&t["workers"][0]["started_at_unix_ms"]);
        let died = num(&exit["at_unix_ms"]);
        assert!(
            started >= died + backoff,
            "restarted {} ms after the crash",
            started - died
        );
        assert_serves(t["workers"][0]["address"].as_str().unwrap(), "alpha").await;
    }
    // Idle between crashes: the daemon waits for its next deadline instead of spinning.
    let busy = cpu_ms(d.pid());
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let used = cpu_ms(d.pid()) - busy;
    assert!(
        used < 1000,
        "the daemon used {used} ms of CPU in 2 s while idle"
    );
    // The third crash in the window: crash-looping, nothing restarted.
    let pid = ready_pids(&t)[0];
    signal(pid, Signal::SIGKILL);
    let t = d
        .wait_for("alpha", "crash-looping", |t| t["crash_looping"] == true)
        .await;
    assert_eq!(t["state"], "crash-looping");
    assert_eq!(num(&t["restarts"]), 3);
    assert!(t["workers"].as_array().unwrap().is_empty(), "{t}");
    let run = a.fails(&["wake", "--schema", "alpha"], 1).await;
    assert!(run.stderr.contains("crash-loop"), "{}", run.stderr);
    assert!(d.tenant("alpha").await["workers"]
        .as_array()
        .unwrap()
        .is_empty());

    // An operator's restart lifts the mark; min 1 brings a worker back.
    let out = a.ok(&["restart", "--schema", "alpha"]).await;
    assert!(out.contains("alpha: replaced 0 worker(s)"), "{out}");
    let t = d
        .wait_for("alpha", "running again", |t| ready_pids(t).len() == 1)
        .await;
    assert_eq!(t["crash_looping"], false);
    assert_serves(&d.wake("alpha").await[0], "alpha").await;
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn a_worker_that_cannot_start_is_a_failed_start_not_a_hang() {
    let a = Apotheca::migrated().await;
    a.create("bravo").await;
    // A worker program that exits at once: every start fails.
    let fake = a.dir.path().join("broken-worker");
    std::fs::write(&fake, "#!/bin/sh\necho 'broken on purpose' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let d = a
        .serve(&[
            (
                "APOTHECA_CONTROL__SERVE__WORKER_BIN",
                fake.to_str().unwrap(),
            ),
            ("APOTHECA_CONTROL__SERVE__CRASH_LOOP_CRASHES", "2"),
            ("APOTHECA_CONTROL__SERVE__WAKE_TIMEOUT_MS", "30000"),
        ])
        .await;
    // The wake waits through the first failure and its backoff, then is refused when the
    // tenant is marked crash-looping.
    let run = a.fails(&["wake", "--schema", "bravo"], 1).await;
    assert!(run.stderr.contains("crash-loop"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("exited with status 3 before it was ready"),
        "{}",
        run.stderr
    );
    let t = d.tenant("bravo").await;
    assert_eq!(num(&t["restarts"]), 2, "{t}");
    // The public site fails the same way, and is marked too, not restarted forever.
    d.wait_for("public", "crash-looping", |t| t["crash_looping"] == true)
        .await;
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn a_worker_not_ready_in_time_is_killed() {
    let a = Apotheca::migrated().await;
    a.create("charlie").await;
    // Never says ready: sleeps (as its own process group leader, like any worker).
    let fake = a.dir.path().join("silent-worker");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let d = a
        .serve(&[
            (
                "APOTHECA_CONTROL__SERVE__WORKER_BIN",
                fake.to_str().unwrap(),
            ),
            ("APOTHECA_CONTROL__SERVE__READY_TIMEOUT_MS", "500"),
            ("APOTHECA_CONTROL__SERVE__CRASH_LOOP_CRASHES", "1"),
        ])
        .await;
    let starting = d
        .wait_for("public", "starting", |t| {
            !t["workers"].as_array().unwrap().is_empty()
        })
        .await;
    let pid = starting["workers"][0]["pid"].as_i64().unwrap() as i32;
    let t = d
        .wait_for("public", "crash-looping", |t| t["crash_looping"] == true)
        .await;
    let reason = t["last_exit"]["reason"].as_str().unwrap();
    assert_eq!(reason, "not ready within 500 ms (killed)", "{t}");
    // Killed with its whole process group, and reaped.
    assert!(!alive(pid));
    let (status, body) = d
        .call(hyper::Method::POST, "/v1/tenants/charlie/wake")
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "crash_looping");
    assert!(d.stop().await.success());
}

/// A worker that says ready, then ignores everything control says (as a worker stuck in a
/// long request would): a drain never ends it.
fn stubborn_worker(a: &Apotheca) -> std::path::PathBuf {
    let fake = a.dir.path().join("stubborn-worker");
    std::fs::write(
        &fake,
        "#!/bin/bash\n\
         while [ $# -gt 0 ]; do\n\
           case \"$1\" in --control-fd) fd=$2; shift;; --listen) listen=$2; shift;; esac\n\
           shift\n\
         done\n\
         eval \"echo ready $listen >&$fd\"\n\
         exec sleep 600\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fake
}

#[tokio::test]
async fn a_second_sigterm_kills_workers_that_do_not_drain() {
    let a = Apotheca::migrated().await;
    let fake = stubborn_worker(&a);
    let mut d = a
        .serve(&[
            (
                "APOTHECA_CONTROL__SERVE__WORKER_BIN",
                fake.to_str().unwrap(),
            ),
            // Without the second signal it would wait this long.
            ("APOTHECA_CONTROL__SERVE__SHUTDOWN_TIMEOUT_SECS", "3600"),
            ("APOTHECA_CONTROL__SERVE__DRAIN_TIMEOUT_SECS", "3600"),
        ])
        .await;
    let t = d
        .wait_for("public", "ready", |t| ready_pids(t).len() == 1)
        .await;
    let pid = ready_pids(&t)[0];
    signal(d.pid(), Signal::SIGTERM);
    // Still answering while it waits for the drain that will not come.
    d.wait_for("public", "draining", |t| {
        t["workers"][0]["state"] == "draining"
    })
    .await;
    assert!(alive(pid));
    signal(d.pid(), Signal::SIGTERM);
    let status = tokio::time::timeout(apotheca_testkit::system::daemon::PATIENCE, d.child.wait())
        .await
        .expect("the second SIGTERM stops the daemon")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!alive(pid), "killed and reaped");
    assert!(sockets_in(&d.worker_dir).is_empty());
}

#[tokio::test]
async fn the_shutdown_deadline_kills_workers_that_do_not_drain() {
    let a = Apotheca::migrated().await;
    let fake = stubborn_worker(&a);
    let d = a
        .serve(&[
            (
                "APOTHECA_CONTROL__SERVE__WORKER_BIN",
                fake.to_str().unwrap(),
            ),
            ("APOTHECA_CONTROL__SERVE__SHUTDOWN_TIMEOUT_SECS", "1"),
        ])
        .await;
    let t = d
        .wait_for("public", "ready", |t| ready_pids(t).len() == 1)
        .await;
    let pid = ready_pids(&t)[0];
    let log = d.log.clone();
    assert!(d.stop().await.success());
    assert!(!alive(pid), "killed and reaped");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("the shutdown deadline passed"), "{log}");
}
