//! `apotheca serve` under a service manager: with `NOTIFY_SOCKET` pointing at a datagram
//! socket this test holds (a path, or an abstract `@name`), the real daemon says `READY=1`
//! only once its API answers and every tenant's minimum of workers is ready, keeps a `STATUS=`
//! line, says `STOPPING=1` when SIGTERM starts the drain, and pings `WATCHDOG=1` when
//! `WATCHDOG_USEC` asks for it. Workers never inherit the variables.

use std::os::linux::net::SocketAddrExt;
use std::time::Duration;

use apotheca_testkit::system::daemon::{ready_pids, signal, worker_bin, Daemon, PATIENCE};
use apotheca_testkit::system::Apotheca;
use nix::sys::signal::Signal;
use tokio::net::UnixDatagram;

/// Every datagram received so far, in order.
struct Manager {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Manager {
    fn at_path(path: &std::path::Path) -> Self {
        Self {
            socket: UnixDatagram::bind(path).unwrap(),
            seen: vec![],
        }
    }

    fn abstract_name(name: &str) -> Self {
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
        let std = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
        std.set_nonblocking(true).unwrap();
        Self {
            socket: UnixDatagram::from_std(std).unwrap(),
            seen: vec![],
        }
    }

    /// Receives until a datagram holds `line` (at most [`PATIENCE`]); returns that datagram.
    async fn until(&mut self, line: &str, d: &Daemon) -> String {
        let mut buf = vec![0u8; 4096];
        let started = tokio::time::Instant::now();
        loop {
            let left = PATIENCE.saturating_sub(started.elapsed());
            let n = match tokio::time::timeout(left, self.socket.recv(&mut buf)).await {
                Ok(r) => r.unwrap(),
                Err(_) => panic!(
                    "no {line:?} within {PATIENCE:?}; received {:#?}\nlog:\n{}",
                    self.seen,
                    d.log_tail()
                ),
            };
            let datagram = String::from_utf8(buf[..n].to_vec()).unwrap();
            self.seen.push(datagram.clone());
            if datagram.lines().any(|l| l == line) {
                return datagram;
            }
        }
    }

    /// What is left to read now, without waiting.
    fn drain(&mut self) {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = self.socket.try_recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    fn count(&self, line: &str) -> usize {
        self.seen
            .iter()
            .filter(|d| d.lines().any(|l| l == line))
            .count()
    }
}

/// A worker program that takes `delay` before starting the real worker for `schema` (others
/// start at once), so the daemon has to wait for that tenant.
fn slow_worker(dir: &std::path::Path, schema: &str, delay: &str) -> std::path::PathBuf {
    let path = dir.join("slow-worker.sh");
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *\" --schema {schema} \"*) sleep {delay} ;; esac\nexec {} \"$@\"\n",
        worker_bin().display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn ready_waits_for_every_minimum_then_stopping_on_sigterm() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    a.create("beta").await;
    // alpha must always have a worker; beta may sleep.
    a.ok(&["scale", "--schema", "alpha", "--min", "1"]).await;
    let path = a.dir.path().join("notify.sock");
    let mut manager = Manager::at_path(&path);
    let worker = slow_worker(a.dir.path(), "alpha", "1.5");
    let d = a
        .serve(&[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            (
                "APOTHECA_CONTROL__SERVE__WORKER_BIN",
                worker.to_str().unwrap(),
            ),
        ])
        .await;

    let ready = manager.until("READY=1", &d).await;
    // At that moment the API answers, and the public site and alpha have their workers.
    let status = d.status().await;
    let tenant = |schema: &str| {
        status["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["schema"] == schema)
            .unwrap_or_else(|| panic!("{schema} missing: {status:#}"))
            .clone()
    };
    assert_eq!(ready_pids(&tenant("public")).len(), 1, "{status:#}");
    assert_eq!(ready_pids(&tenant("alpha")).len(), 1, "{status:#}");
    assert!(tenant("beta")["workers"].as_array().unwrap().is_empty());
    assert!(
        ready
            .lines()
            .any(|l| l == "STATUS=serving: 3 tenant(s), 2 worker(s) ready"),
        "{ready:?}"
    );
    // Before that it said what it was waiting for: alpha's slow worker.
    let waiting = manager.seen[..manager.seen.len() - 1].iter().any(|d| {
        d.contains("STATUS=starting: waiting for the minimum workers of") && d.contains("alpha")
    });
    assert!(waiting, "{:#?}", manager.seen);

    // The service manager's variables are the daemon's alone.
    for pid in ready_pids(&tenant("alpha")) {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(
            !environ.contains("NOTIFY_SOCKET="),
            "worker {pid} inherited NOTIFY_SOCKET"
        );
    }

    let pid = d.pid();
    let mut d = d;
    signal(pid, Signal::SIGTERM);
    let stopping = manager.until("STOPPING=1", &d).await;
    assert!(
        stopping.contains("STATUS=stopping: draining"),
        "{stopping:?}"
    );
    let exit = tokio::time::timeout(PATIENCE, d.child.wait())
        .await
        .expect("the daemon did not stop in time")
        .unwrap();
    assert!(exit.success(), "{exit:?}\n{}", d.log_tail());
    manager.drain();
    assert_eq!(manager.count("READY=1"), 1, "{:#?}", manager.seen);
    assert_eq!(manager.count("STOPPING=1"), 1, "{:#?}", manager.seen);
    assert!(
        manager
            .seen
            .last()
            .is_some_and(|d| d.contains("STATUS=stopped")),
        "{:#?}",
        manager.seen
    );
}

#[tokio::test]
async fn an_abstract_socket_gets_ready_and_watchdog_pings() {
    let a = Apotheca::migrated().await;
    let name = format!("apotheca-test-notify-{}-{}", std::process::id(), a.db.name);
    let mut manager = Manager::abstract_name(&name);
    let d = a
        .serve(&[
            ("NOTIFY_SOCKET", &format!("@{name}")),
            // Two seconds: a ping every second.
            ("WATCHDOG_USEC", "2000000"),
        ])
        .await;
    manager.until("READY=1", &d).await;
    let started = tokio::time::Instant::now();
    manager.until("WATCHDOG=1", &d).await;
    manager.until("WATCHDOG=1", &d).await;
    let took = started.elapsed();
    // Two pings take about one period (the first may come at once): never many.
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(d.stop().await.success());
}
