//! The access to PostgreSQL of everything that changes its shape (control, the test kit): which database (command line, `DATABASE_URL`, settings,
//! else the private cluster, started on demand), admin connections and pools, and the URLs
//! tenant roles log in with.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apotheca_common::devdb::{socket_url, PrivateCluster};
use apotheca_common::names::percent_encode;
use apotheca_common::settings::{DatabaseSettings, PrivateDbSettings};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{Error, Result};

/// The database control works on, with the admin credentials.
#[derive(Clone)]
pub struct Database {
    admin_url: String,
    config: Config,
    /// Set when the private cluster is in use.
    pub private: Option<PrivateCluster>,
    /// The connection `open` made to see whether the private cluster is up, handed out by
    /// the first `connect` instead of opening another.
    probe: Arc<Mutex<Option<Client>>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the URL: it holds the password.
        f.debug_struct("Database")
            .field("database", &self.name())
            .finish_non_exhaustive()
    }
}

impl Database {
    /// The configured database (`cli_url`, else `[database]`), or the private cluster
    /// (started if it is not running).
    pub async fn open(
        database: &DatabaseSettings,
        private_db: &PrivateDbSettings,
        cli_url: Option<&str>,
    ) -> Result<Self> {
        let db = Self::open_unchecked(database, private_db, cli_url).await?;
        if database.citus.is_some() {
            let client = db.connect().await?;
            crate::citus::check_setting(&client, database.citus).await?;
            if let Ok(mut probe) = db.probe.lock() {
                *probe = Some(client);
            }
        }
        Ok(db)
    }

    async fn open_unchecked(
        database: &DatabaseSettings,
        private_db: &PrivateDbSettings,
        cli_url: Option<&str>,
    ) -> Result<Self> {
        match database.resolve(cli_url) {
            Some(url) => Self::from_url(url, None),
            None => {
                let cluster = PrivateCluster::new(private_db)?;
                // Fast path: the cluster is up and the database answers.
                if let Ok(url) = cluster.admin_url() {
                    if let Ok(db) = Self::from_url(url, Some(cluster.clone())) {
                        if let Ok(client) = db.connect().await {
                            if let Ok(mut probe) = db.probe.lock() {
                                *probe = Some(client);
                            }
                            return Ok(db);
                        }
                    }
                }
                cluster.start().await?;
                Self::from_url(cluster.admin_url()?, Some(cluster))
            }
        }
    }

    pub fn from_url(url: String, private: Option<PrivateCluster>) -> Result<Self> {
        let mut config: Config = url
            .parse()
            .map_err(|e| Error::invalid(format!("invalid database URL: {e}")))?;
        config.connect_timeout(Duration::from_secs(10));
        config.application_name("apotheca-control");
        Ok(Self {
            admin_url: url,
            config,
            private,
            probe: Arc::default(),
        })
    }

    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The database's name (where tenant schemas live).
    pub fn name(&self) -> &str {
        self.config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres")
    }

    pub async fn connect(&self) -> Result<Client> {
        let probe = self.probe.lock().ok().and_then(|mut p| p.take());
        if let Some(client) = probe.filter(|c| !c.is_closed()) {
            return Ok(client);
        }
        let (client, conn) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection closed");
            }
        });
        Ok(client)
    }

    /// An admin connection whose driver the caller runs: a LISTEN receives its notifications
    /// through it (`Connection::poll_message`).
    pub async fn connect_driven(
        &self,
    ) -> Result<(
        Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    )> {
        Ok(self.config.connect(NoTls).await?)
    }

    /// A pool of at most `size` admin connections, opened lazily.
    pub fn pool(&self, size: usize) -> Result<Pool> {
        let manager = Manager::from_config(
            self.config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size.max(1))
            .build()
            .map_err(Error::from)
    }

    /// A PostgreSQL client program (psql, pg_dump) aimed at `url`: the installed one that
    /// matches the private cluster, else the one on PATH. The password goes through the
    /// environment, never the command line, where `ps` would show it.
    pub fn tool_command(&self, tool: &str, url: &str) -> std::process::Command {
        let program = self
            .private
            .as_ref()
            .map_or_else(|| tool.into(), |c| c.bin(tool));
        let mut cmd = std::process::Command::new(program);
        let (url, password) = split_password(url);
        if let Some(password) = password {
            cmd.env("PGPASSWORD", password);
        }
        cmd.arg("--dbname").arg(url);
        cmd
    }

    /// The URL a tenant's role logs in with: the admin URL's server and database, that role's
    /// name and password.
    pub fn role_url(&self, role: &str, password: &str) -> String {
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        match self.config.get_hosts().first() {
            Some(Host::Unix(dir)) => socket_url(role, password, dir, port, self.name()),
            Some(Host::Tcp(host)) => format!(
                "postgresql://{}:{}@{}:{port}/{}",
                percent_encode(role),
                percent_encode(password),
                if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                },
                percent_encode(self.name()),
            ),
            None => format!(
                "postgresql://{}:{}@/{}",
                percent_encode(role),
                percent_encode(password),
                percent_encode(self.name())
            ),
        }
    }
}

/// Splits the password out of a connection URL (`scheme://user:password@…` or a
/// `password=` query parameter), so it can travel in `PGPASSWORD` instead.
pub fn split_password(url: &str) -> (String, Option<String>) {
    let password = url.parse::<Config>().ok().and_then(|c| {
        c.get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    });
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                let (from, to) = (scheme_end + 3 + colon, scheme_end + 3 + at);
                out.replace_range(from..to, "");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("password="))
            .collect();
        out = format!("{base}{}", kept.join("&"));
        if out.ends_with('?') {
            out.pop();
        }
    }
    (out, password)
}

#[cfg(test)]
mod tests {
    use super::split_password;

    #[test]
    fn passwords_leave_the_url() {
        let (url, pw) = split_password("postgresql://u:s3cr%40t@/db?host=%2Frun&port=5432");
        assert_eq!(url, "postgresql://u@/db?host=%2Frun&port=5432");
        assert_eq!(pw.as_deref(), Some("s3cr@t"));
        let (url, pw) = split_password("postgresql://u@h:5432/db?password=x&sslmode=disable");
        assert_eq!(url, "postgresql://u@h:5432/db?sslmode=disable");
        assert_eq!(pw.as_deref(), Some("x"));
        let (url, pw) = split_password("postgresql://h/db");
        assert_eq!((url.as_str(), pw), ("postgresql://h/db", None));
    }
}
