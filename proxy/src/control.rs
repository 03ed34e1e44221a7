//! The proxy's side of control's API (HTTP/1.1 + JSON on its Unix socket): wake a tenant and
//! learn its endpoints, fetch control's metrics, see whether control serves, and follow the endpoint feed (`GET /v1/endpoints/watch`: a snapshot,
//! then one line per tenant whose ready workers changed) into [`Upstreams`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apotheca_protocol::api::{FeedLine, Woken};
use apotheca_protocol::client::{CallError, Client};
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};

use crate::upstreams::Upstreams;

#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    #[error(transparent)]
    Unreachable(#[from] CallError),
    /// Control's own refusal: its status (404 unknown, 409 suspended, 503 crash-looping or
    /// timed out) and message.
    #[error("{1}")]
    Refused(u16, String),
}

/// The worker sockets among control's endpoints (`unix:/path`); other kinds are skipped.
fn sockets(endpoints: &[String]) -> Vec<PathBuf> {
    endpoints
        .iter()
        .filter_map(|e| match e.strip_prefix("unix:") {
            Some(path) => Some(PathBuf::from(path)),
            None => {
                tracing::warn!(endpoint = %e, "skipping an endpoint that is not a Unix socket");
                None
            }
        })
        .collect()
}

pub struct Control {
    client: Client,
}

impl Control {
    pub fn new(socket: &Path) -> Self {
        Self {
            client: Client::new(socket),
        }
    }

    /// Asks control to make sure `schema` has a ready worker; its endpoints.
    pub async fn wake(&self, schema: &str, timeout: Duration) -> Result<Vec<PathBuf>, WakeError> {
        let path = format!(
            "/v1/tenants/{schema}/wake?timeout_ms={}",
            timeout.as_millis()
        );
        let answer = self.client.call(Method::POST, &path, None, None).await?;
        if answer.status == StatusCode::OK {
            let woken: Woken = answer.read()?;
            return Ok(sockets(&woken.endpoints));
        }
        Err(WakeError::Refused(answer.status.as_u16(), answer.message()))
    }

    /// Control's own figures as Prometheus text (`GET /metrics`: workers and their memory,
    /// per tenant and in all), for the admin listener to pass on.
    pub async fn metrics(&self, timeout: Duration) -> Result<String, String> {
        let body = self.get("/metrics", timeout).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Whether control serves (`GET /v1/ready`: ready once and not stopping), answered within
    /// `timeout`, for the admin listener's `/ready`.
    pub async fn ready(&self, timeout: Duration) -> Result<(), String> {
        self.get("/v1/ready", timeout).await.map(|_| ())
    }

    /// A GET of `path` answered 200 within `timeout`: its body.
    async fn get(&self, path: &str, timeout: Duration) -> Result<hyper::body::Bytes, String> {
        let answer = self
            .client
            .clone()
            .with_timeout(timeout)
            .call(Method::GET, path, None, None)
            .await
            .map_err(|e| e.to_string())?;
        if answer.status != StatusCode::OK {
            return Err(format!("control answered {}", answer.status));
        }
        Ok(answer.body)
    }

    /// Follows the endpoint feed until the process ends, reconnecting with backoff; while
    /// control is unreachable the last endpoints stay (a dead one is dropped when a connection
    /// to it is refused).
    pub async fn follow(self: Arc<Self>, upstreams: Arc<Upstreams>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.follow_once(&upstreams).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(e) => tracing::debug!(error = %e, "control's endpoint feed is unavailable"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn follow_once(&self, upstreams: &Upstreams) -> Result<(), String> {
        let response = self
            .client
            .open(Method::GET, "/v1/endpoints/watch", None, None)
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != StatusCode::OK {
            return Err(format!("the endpoint feed answered {}", response.status()));
        }
        let mut body = response.into_body();
        tracing::info!("following control's endpoint feed");
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            pending.extend_from_slice(data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                apply(upstreams, &line)?;
            }
        }
        Ok(())
    }
}

fn apply(upstreams: &Upstreams, line: &[u8]) -> Result<(), String> {
    match serde_json::from_slice::<FeedLine>(line)
        .map_err(|e| format!("unreadable endpoint feed line: {e}"))?
    {
        FeedLine::Snapshot { snapshot } => upstreams.replace_all(
            &snapshot
                .iter()
                .map(|(schema, e)| (schema.clone(), sockets(e)))
                .collect(),
        ),
        FeedLine::Change { schema, endpoints } => upstreams.get(&schema).set(&sockets(&endpoints)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_lines_update_the_upstreams() {
        let u = Upstreams::default();
        apply(
            &u,
            br#"{"snapshot": {"acme": ["unix:/run/a.sock"], "beta": ["unix:/run/b.sock"]}}"#,
        )
        .unwrap();
        assert_eq!(
            u.get("acme").pick(&[]).unwrap().endpoint().path,
            PathBuf::from("/run/a.sock")
        );
        assert!(u.get("acme").has_endpoints());
        apply(&u, br#"{"schema": "acme", "endpoints": []}"#).unwrap();
        assert!(!u.get("acme").has_endpoints());
        apply(
            &u,
            br#"{"snapshot": {"acme": ["unix:/run/a2.sock", "tcp:127.0.0.1:1"]}}"#,
        )
        .unwrap();
        assert!(u.get("acme").has_endpoints());
        assert!(
            !u.get("beta").has_endpoints(),
            "missing from a snapshot: none ready"
        );
        assert!(apply(&u, b"not json").is_err());
    }
}
