//! The HTTPS listener's TLS: the acceptor (Mozilla's intermediate settings, ALPN preferring
//! `h2` over `http/1.1`) and the certificates, chosen by SNI during the handshake: an exact
//! per-domain certificate from `tls_cert_dir` (`<domain>.crt` + `<domain>.key`), else a
//! wildcard one there (`_wildcard.<parent>.crt`, serving `*.<parent>`), else the default
//! certificate. The store is re-read on SIGHUP and when the folder or the default files
//! change; a store that fails to load leaves the previous one in place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::tls::ext;
use pingora::tls::pkey::{PKey, Private};
use pingora::tls::ssl::NameType;
use pingora::tls::x509::X509;

/// The acceptor every HTTPS handshake starts from; the certificate comes from [`Callback`].
pub fn acceptor() -> Result<pingora::tls::ssl::SslAcceptor, String> {
    use pingora::tls::ssl::{select_next_proto, AlpnError, SslAcceptor, SslMethod};
    let mut builder =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(|e| format!("TLS: {e}"))?;
    builder.set_alpn_select_callback(|_, offered| {
        select_next_proto(b"\x02h2\x08http/1.1", offered).ok_or(AlpnError::NOACK)
    });
    Ok(builder.build())
}

/// A certificate chain (leaf first) and its key.
pub struct Cert {
    chain: Vec<X509>,
    key: PKey<Private>,
}

impl Cert {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
        let chain = X509::stack_from_pem(&pem).map_err(|e| format!("{}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate in the file", cert.display()));
        }
        let pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
        let key_pair =
            PKey::private_key_from_pem(&pem).map_err(|e| format!("{}: {e}", key.display()))?;
        let public = chain[0]
            .public_key()
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        if !public.public_eq(&key_pair) {
            return Err(format!(
                "{} does not belong to the certificate {}",
                key.display(),
                cert.display()
            ));
        }
        Ok(Self {
            chain,
            key: key_pair,
        })
    }
}

/// Every certificate the listener may present.
pub struct Store {
    default: Cert,
    by_name: HashMap<String, Arc<Cert>>,
}

impl Store {
    pub fn load(
        default_cert: &Path,
        default_key: &Path,
        dir: Option<&Path>,
    ) -> Result<Self, String> {
        let default = Cert::load(default_cert, default_key)?;
        let mut by_name = HashMap::new();
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("crt") {
                    continue;
                }
                let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                let name = match stem.strip_prefix("_wildcard.") {
                    Some(parent) => format!("*.{}", parent.to_ascii_lowercase()),
                    None => stem.to_ascii_lowercase(),
                };
                let cert = Cert::load(&path, &path.with_extension("key"))?;
                by_name.insert(name, Arc::new(cert));
            }
        }
        Ok(Self { default, by_name })
    }

    /// The certificate for `server_name` (already lowercase): exact, wildcard, default.
    pub fn pick(&self, server_name: Option<&str>) -> &Cert {
        let Some(name) = server_name else {
            return &self.default;
        };
        if let Some(c) = self.by_name.get(name) {
            return c;
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(c) = self.by_name.get(&format!("*.{parent}")) {
                return c;
            }
        }
        &self.default
    }

    /// How many certificates, the default included.
    pub fn count(&self) -> usize {
        self.by_name.len() + 1
    }
}

/// The handshake callback and the reloadable store behind it.
pub struct Certificates {
    store: ArcSwap<Store>,
    cert: PathBuf,
    key: PathBuf,
    dir: Option<PathBuf>,
}

impl Certificates {
    pub fn new(cert: &Path, key: &Path, dir: Option<&Path>) -> Result<Arc<Self>, String> {
        let store = Store::load(cert, key, dir)?;
        Ok(Arc::new(Self {
            store: ArcSwap::from_pointee(store),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            dir: dir.map(Path::to_path_buf),
        }))
    }

    /// Reads the files again; on failure the current certificates stay.
    pub fn reload(&self) {
        match Store::load(&self.cert, &self.key, self.dir.as_deref()) {
            Ok(store) => {
                tracing::info!(certificates = store.count(), "certificates reloaded");
                self.store.store(Arc::new(store));
            }
            Err(e) => {
                tracing::error!(error = %e, "certificates not reloaded; keeping the current ones")
            }
        }
    }

    /// The newest modification time among the files (and the folder).
    fn stamp(&self) -> Option<SystemTime> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        if let Some(dir) = &self.dir {
            paths.push(dir.clone());
            if let Ok(entries) = std::fs::read_dir(dir) {
                paths.extend(entries.flatten().map(|e| e.path()));
            }
        }
        paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .max()
    }

    /// Reloads on SIGHUP and when a file changes (checked every two seconds).
    pub async fn watch(self: Arc<Self>) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; certificates reload on file changes only");
                None
            }
        };
        let mut seen = self.stamp();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => {
                    self.reload();
                    seen = self.stamp();
                }
                _ = tick.tick() => {
                    let now = self.stamp();
                    if now != seen {
                        seen = now;
                        self.reload();
                    }
                }
            }
        }
    }
}

/// The handshake side: hands the callback a reference to the shared store.
pub struct Callback(pub Arc<Certificates>);

#[async_trait]
impl TlsAccept for Callback {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let name = ssl
            .servername(NameType::HOST_NAME)
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        let store = self.0.store.load();
        let cert = store.pick(name.as_deref());
        let result = ext::ssl_use_certificate(ssl, &cert.chain[0])
            .and_then(|()| {
                cert.chain[1..]
                    .iter()
                    .try_for_each(|c| ext::ssl_add_chain_cert(ssl, c))
            })
            .and_then(|()| ext::ssl_use_private_key(ssl, &cert.key));
        if let Err(e) = result {
            tracing::error!(error = %e, server_name = ?name, "could not present a certificate");
        }
    }
}
