//! The one client of control's API socket, used by the CLI (`apotheca wake|status|restart`),
//! the proxy (wake, metrics, the endpoint feed) and the public site (sign-up, the operator
//! console): one HTTP/1.1 exchange per connection over the Unix socket (hyper), JSON both
//! ways (or a file streamed up: the console's import), an operator's session token as a
//! bearer token when there is one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

/// Why an exchange with control gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot reach the control daemon at {}: {source} (is `apotheca serve` running?)", socket.display())]
    Unreachable {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("the control daemon did not answer: {0}")]
    Lost(#[from] hyper::Error),
    #[error("the control daemon gave no answer within {0:?}")]
    Timeout(Duration),
    /// It answered, but not what the caller can read.
    #[error("an unreadable answer from the control daemon: {0}")]
    Unreadable(String),
}

/// Control's answer: its status and its body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (null when it is none or not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A success's body as `T`.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, CallError> {
        serde_json::from_slice(&self.body).map_err(|e| CallError::Unreadable(e.to_string()))
    }

    /// A refusal's message (`{"error": {"message"}}`), if it has one.
    fn error_message(&self) -> Option<String> {
        self.json()["error"]["message"].as_str().map(str::to_owned)
    }

    /// A refusal's message, else the body as text.
    pub fn message(&self) -> String {
        self.error_message()
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned())
    }

    /// A refusal's message, else `fallback`.
    pub fn message_or(&self, fallback: &str) -> String {
        self.error_message().unwrap_or_else(|| fallback.to_owned())
    }

    /// Every field a refusal names, with its message (`fields`, else `field`).
    pub fn field_errors(&self) -> Vec<(String, String)> {
        let json = self.json();
        let error = &json["error"];
        if let Some(fields) = error["fields"].as_object() {
            return fields
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("Invalid.").to_owned()))
                .collect();
        }
        match (error["field"].as_str(), error["message"].as_str()) {
            (Some(f), message) => vec![(f.to_owned(), message.unwrap_or("Invalid.").to_owned())],
            (None, _) => Vec::new(),
        }
    }
}

/// Control's API at `socket`.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Option<Duration>,
}

impl Client {
    /// A client that waits for an answer as long as control takes (a rolling restart).
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
            timeout: None,
        }
    }

    /// A client that gives up on an exchange after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// `method path` with an optional bearer token and JSON body, and the whole answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, CallError> {
        let (content_type, payload) = json_body(body);
        self.exchange(method, path, bearer, content_type, payload)
            .await
    }

    /// `method path` with a bearer token and a body sent as it comes (an upload), and the
    /// whole answer. The timeout counts the upload too.
    pub async fn send<B>(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        content_type: &str,
        body: B,
    ) -> Result<Answer, CallError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let body = body.map_err(Into::into).boxed_unsync();
        self.exchange(method, path, bearer, Some(content_type), body)
            .await
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        content_type: Option<&str>,
        body: RequestBody,
    ) -> Result<Answer, CallError> {
        let exchange = async {
            let response = self
                .request(method, path, bearer, content_type, body)
                .await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok(Answer { status, body })
        };
        match self.timeout {
            Some(limit) => tokio::time::timeout(limit, exchange)
                .await
                .map_err(|_| CallError::Timeout(limit))?,
            None => exchange.await,
        }
    }

    /// The answer's head, its body left to read as it comes (the endpoint feed).
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Response<Incoming>, CallError> {
        let (content_type, payload) = json_body(body);
        self.request(method, path, bearer, content_type, payload)
            .await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        content_type: Option<&str>,
        body: RequestBody,
    ) -> Result<Response<Incoming>, CallError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| CallError::Unreachable {
                socket: self.socket.clone(),
                source,
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "control");
        if let Some(token) = bearer {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            request = request.header(hyper::header::CONTENT_TYPE, content_type);
        }
        let request = request
            .body(body)
            .map_err(|e| CallError::Unreadable(format!("request {path:?}: {e}")))?;
        Ok(sender.send_request(request).await?)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a request carries: a JSON body whole, or an upload as it comes.
type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

/// A JSON body and its content type, or none.
fn json_body(body: Option<&serde_json::Value>) -> (Option<&'static str>, RequestBody) {
    let (content_type, bytes) = match body {
        Some(json) => (Some("application/json"), Bytes::from(json.to_string())),
        None => (None, Bytes::new()),
    };
    let body = Full::new(bytes).map_err(|never| match never {});
    (content_type, body.boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_from_either_shape() {
        let answer = |json: serde_json::Value| Answer {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: Bytes::from(json.to_string()),
        };
        let one = answer(serde_json::json!({"error": {"message": "Bad.", "field": "domain"}}));
        assert_eq!(one.field_errors(), [("domain".into(), "Bad.".into())]);
        assert_eq!(one.message(), "Bad.");
        let many = answer(
            serde_json::json!({"error": {"message": "A.", "field": "name",
            "fields": {"name": "A.", "schema": "B."}}}),
        );
        assert_eq!(many.field_errors().len(), 2);
        let text = Answer {
            status: StatusCode::BAD_GATEWAY,
            body: Bytes::from_static(b"not json"),
        };
        assert_eq!(text.message(), "not json");
        assert!(text.field_errors().is_empty());
    }

    #[tokio::test]
    async fn an_absent_daemon_is_unreachable() {
        let dir = std::env::temp_dir().join(format!("apotheca-protocol-{}", std::process::id()));
        let client = Client::new(&dir.join("none.sock")).with_timeout(Duration::from_secs(5));
        let e = client
            .call(Method::GET, "/v1/status", None, None)
            .await
            .unwrap_err();
        assert!(matches!(e, CallError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("is `apotheca serve` running?"));
    }
}
