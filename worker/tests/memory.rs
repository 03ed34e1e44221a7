//! A worker process's memory under password logins: the hashes run a bounded number at a
//! time, and their working memory goes back to the operating system when they are done
//! (RSS read from /proc, with a generous bound; no timings).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use apotheca_pharmacy::accounts::hash_password;
use apotheca_testkit::TestTenant;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "correct horse battery";

/// One HTTP/1.1 request on a fresh connection: the status and the body.
async fn call(socket: &Path, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("worker socket");
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: memory.localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("worker alive");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn twenty_logins_at_once_hash_two_at_a_time_and_give_their_memory_back() {
    let tenant = TestTenant::new("memory").await;
    {
        let db = tokio_postgres::connect(&tenant.role_url, tokio_postgres::NoTls)
            .await
            .expect("tenant role connects");
        tokio::spawn(db.1);
        db.0.execute(
            "INSERT INTO users (username, password_hash, full_name, role) VALUES ('admin', $1, 'Admin', 'admin')",
            &[&hash_password(PASSWORD)],
        )
        .await
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("worker.sock");
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_apotheca-worker"))
        .args(["--schema", "memory", "--listen"])
        .arg(format!("unix:{}", socket.display()))
        .env("DATABASE_URL", &tenant.role_url)
        .env_remove("APOTHECA_CONFIG")
        // Twenty logins of one user at once must not throttle each other.
        .env("APOTHECA_WORKER__LOGIN_SLOW_AFTER", "1000")
        .env("APOTHECA_WORKER__LOGIN_REFUSE_AFTER", "1000")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("worker starts");
    let pid = worker.id().unwrap();
    for _ in 0..200 {
        if socket.exists() && tokio::net::UnixStream::connect(&socket).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = call(&socket, "GET", "/_apotheca/health", None).await;
    assert_eq!(status, 200);
    let idle = rss_kib(pid);

    let login = serde_json::json!({"username": "admin", "password": PASSWORD});
    let logins: Vec<_> = (0..20)
        .map(|_| {
            let (socket, login) = (socket.clone(), login.clone());
            tokio::spawn(
                async move { call(&socket, "POST", "/api/v1/auth/login", Some(&login)).await },
            )
        })
        .collect();
    for l in logins {
        let (status, body) = l.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }

    let (_, stats) = call(&socket, "GET", "/_apotheca/stats", None).await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    let hashes = &stats["password_hashes"];
    assert_eq!(hashes["done"], 20, "{stats}");
    let peak = hashes["peak_running"].as_u64().unwrap();
    assert!(
        (1..=2).contains(&peak),
        "at most two hashes at once, saw {peak}: {stats}"
    );

    // Each hash needed 7 MiB (19 MiB before): kept by the allocator, twenty logins left a
    // worker 100-350 MB larger. Given back, it is within a few MB of where it started.
    let mut after = rss_kib(pid);
    eprintln!("idle {idle} KiB, after {after} KiB");
    for _ in 0..50 {
        if after <= idle + 16 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = rss_kib(pid);
    }
    assert!(
        after <= idle + 16 * 1024,
        "RSS {idle} KiB before the logins, {after} KiB after"
    );
    worker.start_kill().unwrap();
    let _ = worker.wait().await;
}
