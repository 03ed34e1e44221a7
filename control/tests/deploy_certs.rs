//! `deploy/nginx-free/cert-deploy-hook.sh` with real certificates (made by the openssl
//! command): as certbot's deploy hook, a wildcard lineage becomes the proxy's default
//! certificate and any other lineage one pair per name in `domains/`; by hand, a pharmacy's
//! own certificate goes into `domains/`; keys are 0640, certificates 0644; a key that is not
//! the certificate's, or a file that is not PEM, is refused and replaces nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use apotheca_testkit::system::tls::make_cert;

fn hook() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx-free/cert-deploy-hook.sh")
}

/// Runs the hook with `tls` as its folder; (exit code, stdout + stderr).
fn run(tls: &Path, args: &[&Path], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(hook())
        .args(args)
        .env("TLS_DIR", tls)
        // The test has no apotheca group; root's stands in.
        .env("APOTHECA_GROUP", "root")
        // No proxy unit to signal here.
        .env("PROXY_UNIT", "apotheca-proxy-test-none.service")
        .env_remove("RENEWED_LINEAGE")
        .env_remove("RENEWED_DOMAINS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A certbot lineage folder (fullchain.pem, privkey.pem) for `cn`.
async fn lineage(dir: &Path, cn: &str) -> PathBuf {
    make_cert(dir, "cert", cn).await;
    std::fs::rename(dir.join("cert.crt"), dir.join("fullchain.pem")).unwrap();
    std::fs::rename(dir.join("cert.key"), dir.join("privkey.pem")).unwrap();
    dir.to_path_buf()
}

#[tokio::test]
async fn certificates_land_where_the_proxy_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = tmp.path().join("tls");
    std::fs::create_dir_all(tls.join("domains")).unwrap();

    // certbot: the wildcard lineage is the default certificate.
    let wild = lineage(&tmp.path().join("live-wild"), "*.example.com").await;
    let (code, out) = run(
        &tls,
        &[],
        &[
            ("RENEWED_LINEAGE", wild.to_str().unwrap()),
            ("RENEWED_DOMAINS", "example.com *.example.com"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read(tls.join("wildcard.crt")).unwrap(),
        std::fs::read(wild.join("fullchain.pem")).unwrap()
    );
    assert_eq!(mode(&tls.join("wildcard.key")), 0o640);
    assert_eq!(mode(&tls.join("wildcard.crt")), 0o644);

    // certbot: a pharmacy's own domain (two names) goes into domains/, one pair per name.
    let own = lineage(&tmp.path().join("live-own"), "pharmacie-acme.fr").await;
    let (code, out) = run(
        &tls,
        &[],
        &[
            ("RENEWED_LINEAGE", own.to_str().unwrap()),
            ("RENEWED_DOMAINS", "pharmacie-acme.fr www.pharmacie-acme.fr"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    for name in ["pharmacie-acme.fr", "www.pharmacie-acme.fr"] {
        assert!(tls.join(format!("domains/{name}.crt")).is_file(), "{out}");
        assert_eq!(mode(&tls.join(format!("domains/{name}.key"))), 0o640);
    }

    // By hand: a certificate the pharmacy brought.
    let brought = tmp.path().join("brought");
    make_cert(&brought, "beta", "beta-pharmacy.com").await;
    let (code, out) = run(
        &tls,
        &[
            Path::new("Beta-Pharmacy.com"),
            &brought.join("beta.crt"),
            &brought.join("beta.key"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let placed = tls.join("domains/beta-pharmacy.com.crt");
    assert_eq!(
        std::fs::read(&placed).unwrap(),
        std::fs::read(brought.join("beta.crt")).unwrap()
    );

    // Refused, and nothing replaced: another certificate's key, a file that is not PEM, a
    // name that is not a domain, no arguments outside certbot.
    let before = std::fs::read(&placed).unwrap();
    make_cert(&brought, "other", "other.example").await;
    let (code, out) = run(
        &tls,
        &[
            Path::new("beta-pharmacy.com"),
            &brought.join("beta.crt"),
            &brought.join("other.key"),
        ],
        &[],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is not the key of"), "{out}");
    std::fs::write(brought.join("junk.crt"), "junk").unwrap();
    let (code, out) = run(
        &tls,
        &[
            Path::new("beta-pharmacy.com"),
            &brought.join("junk.crt"),
            &brought.join("beta.key"),
        ],
        &[],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not a PEM certificate"), "{out}");
    let (code, out) = run(
        &tls,
        &[
            Path::new("../etc/passwd"),
            &brought.join("beta.crt"),
            &brought.join("beta.key"),
        ],
        &[],
    );
    assert_eq!(code, 2, "{out}");
    let (code, out) = run(&tls, &[], &[]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(std::fs::read(&placed).unwrap(), before);
    let left: Vec<_> = std::fs::read_dir(tls.join("domains"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".new"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
