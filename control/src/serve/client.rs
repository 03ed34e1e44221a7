//! The CLI's side of the daemon's API: one HTTP/1.1 request over the Unix socket, its JSON
//! answer back, and the API's errors turned into control errors (404: bad input, exit 2).

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use crate::error::{ControlError, Result};

pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::POST, path).await
    }

    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T> {
        let (status, body) = self.request(method, path).await?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                ControlError::Other(format!("unreadable answer from the daemon: {e}"))
            });
        }
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Err(match status {
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => ControlError::Invalid(message),
            _ => ControlError::Other(message),
        })
    }

    async fn request(&self, method: Method, path: &str) -> Result<(StatusCode, Bytes)> {
        let unreachable = |e: &dyn std::fmt::Display| {
            ControlError::Other(format!(
                "cannot reach the control daemon at {}: {e} (is `apotheca serve` running?)",
                self.socket.display()
            ))
        };
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "control")
            .body(Empty::<Bytes>::new())
            .map_err(|e| ControlError::Other(e.to_string()))?;
        let lost = |e: &dyn std::fmt::Display| {
            ControlError::Other(format!("the control daemon did not answer: {e}"))
        };
        let response = sender.send_request(request).await.map_err(|e| lost(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| lost(&e))?
            .to_bytes();
        Ok((status, body))
    }
}
