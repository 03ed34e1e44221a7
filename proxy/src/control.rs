//! The proxy's side of control's API (HTTP/1.1 + JSON on its Unix socket): wake a tenant and
//! learn its endpoints, fetch control's metrics, and follow the endpoint feed (`GET /v1/endpoints/watch`: a snapshot,
//! then one line per tenant whose ready workers changed) into [`Upstreams`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::upstreams::Upstreams;

#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    #[error("the control daemon is unreachable: {0}")]
    Unreachable(String),
    /// Control's own refusal: its status (404 unknown, 409 suspended, 503 crash-looping or
    /// timed out) and message.
    #[error("{1}")]
    Refused(u16, String),
}

#[derive(Debug, Deserialize)]
struct Woken {
    endpoints: Vec<String>,
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
    socket: PathBuf,
}

impl Control {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    /// Asks control to make sure `schema` has a ready worker; its endpoints.
    pub async fn wake(&self, schema: &str, timeout: Duration) -> Result<Vec<PathBuf>, WakeError> {
        let path = format!(
            "/v1/tenants/{schema}/wake?timeout_ms={}",
            timeout.as_millis()
        );
        let (status, body) = self
            .request(Method::POST, &path)
            .await
            .map_err(WakeError::Unreachable)?;
        let body = body
            .collect()
            .await
            .map_err(|e| WakeError::Unreachable(e.to_string()))?
            .to_bytes();
        if status == StatusCode::OK {
            let woken: Woken = serde_json::from_slice(&body)
                .map_err(|e| WakeError::Unreachable(format!("unreadable wake answer: {e}")))?;
            return Ok(sockets(&woken.endpoints));
        }
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Err(WakeError::Refused(status.as_u16(), message))
    }

    /// Control's own figures as Prometheus text (`GET /metrics`: workers and their memory,
    /// per tenant and in all), for the admin listener to pass on.
    pub async fn metrics(&self, timeout: Duration) -> Result<String, String> {
        let ask = async {
            let (status, body) = self.request(Method::GET, "/metrics").await?;
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            if status != StatusCode::OK {
                return Err(format!("control answered {status}"));
            }
            Ok(String::from_utf8_lossy(&body).into_owned())
        };
        tokio::time::timeout(timeout, ask)
            .await
            .map_err(|_| "control did not answer in time".to_owned())?
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
    ) -> Result<(StatusCode, hyper::body::Incoming), String> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| format!("{}: {e}", self.socket.display()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "control")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        Ok((status, response.into_body()))
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
        let (status, mut body) = self.request(Method::GET, "/v1/endpoints/watch").await?;
        if status != StatusCode::OK {
            return Err(format!("the endpoint feed answered {status}"));
        }
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

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FeedLine {
    Snapshot {
        snapshot: HashMap<String, Vec<String>>,
    },
    Change {
        schema: String,
        endpoints: Vec<String>,
    },
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
