//! `apotheca db`: the private cluster's life cycle, from nothing to stopped.

use std::process::Command;

fn apotheca(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_apotheca"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("APOTHECA_CONFIG")
        .env("APOTHECA_PRIVATE_DB__UNSAFE_FAST", "true")
        .env("APOTHECA_PRIVATE_DB__MAX_CONNECTIONS", "20")
        .env("APOTHECA_PRIVATE_DB__SHARED_BUFFERS", "16MB")
        .output()
        .expect("running apotheca");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Stops the cluster even when an assertion fails half-way.
struct StopOnDrop<'a>(&'a std::path::Path);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = apotheca(self.0, &["db", "stop"]);
    }
}

#[test]
fn private_cluster_from_nothing_to_stopped() {
    // A short path: the Unix socket lives inside it.
    let dir = tempfile::Builder::new()
        .prefix("apo")
        .tempdir_in("/tmp")
        .unwrap();
    let d = dir.path();
    let _stop = StopOnDrop(d);
    let (code, out, err) = apotheca(d, &["db", "status"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("not running"));

    let (code, out, err) = apotheca(d, &["db", "start"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created and started"), "{out}");
    let (code, out, _) = apotheca(d, &["db", "start"]);
    assert_eq!(code, 0);
    assert!(out.contains("already running"), "{out}");
    let (code, out, _) = apotheca(d, &["db", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("running"), "{out}");

    // The server took the WAL settings written for it (a value it refuses fails the start):
    // compressed full-page images (lz4 where built with it), checkpoints every 15 min.
    let conf = std::fs::read_to_string(d.join("var/pg/apotheca.conf")).unwrap();
    assert!(conf.contains("checkpoint_timeout = '15min'"), "{conf}");
    assert!(
        conf.contains("wal_compression = lz4") || conf.contains("wal_compression = on"),
        "{conf}"
    );

    // Password auth over a socket in var/run; the password file is private.
    let (code, url, _) = apotheca(d, &["db", "url"]);
    assert_eq!(code, 0);
    assert!(
        url.starts_with("postgresql://postgres:") && url.contains("var%2Frun"),
        "{url}"
    );
    let pw = d.join("var/run/superuser.password");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&pw).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let hba = std::fs::read_to_string(d.join("var/pg/pg_hba.conf"));
    if let Ok(hba) = hba {
        assert!(
            !hba.lines()
                .any(|l| !l.trim_start().starts_with('#') && l.contains("trust")),
            "no trust auth"
        );
    }

    // The cluster serves the CLI with nothing configured.
    let (code, out, err) = apotheca(d, &["list-tenants"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("migrate-schemas --shared"), "{err}");
    let (code, out, err) = apotheca(d, &["migrate-schemas"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = apotheca(
        d,
        &[
            "create-tenant",
            "--name",
            "Acme",
            "--schema",
            "acme",
            "--domain",
            "acme.localhost",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("http://acme.localhost:8080/"), "{out}");

    let (code, out, _) = apotheca(d, &["db", "stop"]);
    assert_eq!(code, 0);
    assert!(out.contains("stopped"), "{out}");
    let (code, _, _) = apotheca(d, &["db", "status"]);
    assert_eq!(code, 1);
    let (code, out, _) = apotheca(d, &["db", "stop"]);
    assert_eq!(code, 0);
    assert!(out.contains("was not running"), "{out}");
}
