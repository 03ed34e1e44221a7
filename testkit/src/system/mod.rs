//! The system as a user meets it, for the tests that run the real binaries: `apotheca` against
//! a test database as an operator would ([`Apotheca`]; another host on the same database:
//! [`Apotheca::another_host`]), its daemon ([`daemon`]), the proxy ([`proxy`]), HAProxy in
//! front of two hosts ([`haproxy`]), a stand-in worker that echoes what it gets ([`echo`]), a pharmacy's and the
//! public site's clients ([`pharmacy`], [`site`]), steady load ([`load`]), certificates and
//! TLS clients ([`tls`]). Control's tests and the proxy's use it.

pub mod daemon;
pub mod echo;
pub mod haproxy;
pub mod load;
pub mod pharmacy;
pub mod proxy;
pub mod site;
pub mod tls;

use std::path::PathBuf;
use std::process::Output;

use crate::TestDb;
use tempfile::TempDir;

pub struct Apotheca {
    /// Shared by [`Apotheca::another_host`]s; dropped with the last of them.
    pub db: std::sync::Arc<TestDb>,
    /// Working folder and state dir of every run (so no ./apotheca.toml is picked up).
    pub dir: TempDir,
    pub spares: usize,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Apotheca {
    pub async fn empty() -> Self {
        Self {
            db: std::sync::Arc::new(TestDb::empty().await),
            dir: TempDir::new().unwrap(),
            spares: 0,
        }
    }

    pub async fn migrated() -> Self {
        Self {
            db: std::sync::Arc::new(TestDb::migrated().await),
            dir: TempDir::new().unwrap(),
            spares: 0,
        }
    }

    /// Apotheca on `db` (a database of a cluster of the test's own).
    pub fn on(db: TestDb) -> Self {
        Self {
            db: std::sync::Arc::new(db),
            dir: TempDir::new().unwrap(),
            spares: 0,
        }
    }

    /// Another Apotheca host on the same database: its own folder (state, sockets, settings)
    /// and daemon, as a second machine would have.
    pub fn another_host(&self) -> Self {
        Self {
            db: self.db.clone(),
            dir: TempDir::new().unwrap(),
            spares: self.spares,
        }
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(crate::binary("apotheca"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("APOTHECA_CONFIG")
            .env("DATABASE_URL", self.db.url())
            .env("APOTHECA_CONTROL__STATE_DIR", self.dir.path())
            .env("APOTHECA_CONTROL__SECRET_KEY", "test-secret")
            .env("APOTHECA_CONTROL__SPARE_SCHEMAS", self.spares.to_string())
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        let out: Output = self.command(args).output().await.expect("running apotheca");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and expects success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(
            run.code, 0,
            "apotheca {args:?} failed:\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        run.stdout
    }

    /// Runs and expects exit status `code`; returns stderr.
    pub async fn fails(&self, args: &[&str], code: i32) -> Run {
        let run = self.run(args).await;
        assert_eq!(
            run.code, code,
            "apotheca {args:?}: want exit {code}\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        run
    }

    /// Runs with `input` on standard input.
    pub async fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        use tokio::io::AsyncWriteExt;
        let mut cmd = self.command(args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("running apotheca");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `create-operator` with the password on standard input.
    pub async fn create_operator(&self, username: &str, password: &str) {
        let args = [
            "create-operator",
            "--username",
            username,
            "--password-stdin",
        ];
        let run = self.run_with_stdin(&args, &format!("{password}\n")).await;
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    }

    pub async fn create(&self, schema: &str) {
        self.create_with(schema, &[]).await;
    }

    /// `create-tenant` named "Pharmacy `schema`" on `<schema>.localhost` (`_` as `-`), with
    /// `extra` arguments.
    pub async fn create_with(&self, schema: &str, extra: &[&str]) {
        let name = format!("Pharmacy {schema}");
        let domain = format!("{}.localhost", schema.replace('_', "-"));
        let mut args = vec![
            "create-tenant",
            "--name",
            &name,
            "--schema",
            schema,
            "--domain",
            &domain,
        ];
        args.extend_from_slice(extra);
        self.ok(&args).await;
    }

    pub async fn tenants(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["list-tenants", "--json"]).await;
        serde_json::from_str(&out).expect("list-tenants --json is JSON")
    }

    /// A copy of the built-in migrations to add files to.
    pub fn migrations_copy(&self) -> PathBuf {
        let src = crate::workspace_root().join("migrations");
        let dst = self.dir.path().join("migrations");
        for kind in ["shared", "tenant"] {
            std::fs::create_dir_all(dst.join(kind)).unwrap();
            for entry in std::fs::read_dir(src.join(kind)).unwrap() {
                let path = entry.unwrap().path();
                std::fs::copy(&path, dst.join(kind).join(path.file_name().unwrap())).unwrap();
            }
        }
        dst
    }

    /// The role a tenant of this database gets.
    pub fn role(&self, schema: &str) -> String {
        let schema = apotheca_common::names::SchemaName::parse(schema).unwrap();
        apotheca_tenancy::roles::role_name(&self.db.name, &schema)
    }

    /// What is left of a tenant: (schema exists, its role exists, tenant and record rows).
    pub async fn traces_of(&self, schema: &str) -> (bool, bool, i64) {
        let c = self.db.client().await;
        let ns = c
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
            .await
            .unwrap()
            .is_some();
        let role = c
            .query_opt(
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&self.role(schema)],
            )
            .await
            .unwrap()
            .is_some();
        let rows: i64 = c
            .query_one(
                "SELECT (SELECT count(*) FROM public.tenants WHERE schema_name = $1)
                      + (SELECT count(*) FROM public.apotheca_migrations WHERE schema_name = $1)",
                &[&schema],
            )
            .await
            .unwrap()
            .get(0);
        (ns, role, rows)
    }
}
