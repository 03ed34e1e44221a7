//! The public site's client of control's API socket (`--control-socket`): one HTTP/1.1
//! request per connection, JSON both ways, an operator's session token as a bearer token
//! when there is one. The sign-up and the operator console ask control for everything they
//! change; the public site itself holds no secret and creates nothing.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Provisioning migrates a schema when no spare is ready, and deleting a tenant drops one:
/// seconds, not minutes.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Control's answer: its status and its JSON (null when it sent none).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: serde_json::Value,
}

impl Answer {
    /// The error's message, else `fallback`.
    pub fn message<'a>(&'a self, fallback: &'a str) -> &'a str {
        self.json["error"]["message"].as_str().unwrap_or(fallback)
    }

    /// Every field the error names with its message (`fields`, else `field`).
    pub fn field_errors(&self) -> Vec<(String, String)> {
        let error = &self.json["error"];
        if let Some(fields) = error["fields"].as_object() {
            return fields
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("Invalid.").to_owned()))
                .collect();
        }
        match error["field"].as_str() {
            Some(f) => vec![(f.to_owned(), self.message("Invalid.").to_owned())],
            None => Vec::new(),
        }
    }
}

/// `method path` on control's socket, within [`TIMEOUT`]. Err: control could not be reached
/// or answered something that is not HTTP.
pub async fn call(
    socket: &Path,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<Answer, String> {
    tokio::time::timeout(TIMEOUT, exchange(socket, method, path, bearer, body))
        .await
        .map_err(|_| "no answer in time".to_owned())?
}

async fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<Answer, String> {
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: control\r\nConnection: close\r\n");
    if let Some(token) = bearer {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("writing to control: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("reading control's answer: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "a malformed answer from control".to_owned())?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "a malformed status line from control".to_owned())?;
    let json = serde_json::from_str(rest).unwrap_or(serde_json::Value::Null);
    Ok(Answer { status, json })
}

/// Percent-encoding for a path segment or query value sent to control.
pub fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_from_either_shape() {
        let one = Answer {
            status: 422,
            json: serde_json::json!({"error": {"message": "Bad.", "field": "domain"}}),
        };
        assert_eq!(one.field_errors(), [("domain".into(), "Bad.".into())]);
        let many = Answer {
            status: 422,
            json: serde_json::json!({"error": {"message": "A.", "field": "name",
                "fields": {"name": "A.", "schema": "B."}}}),
        };
        assert_eq!(many.field_errors().len(), 2);
        assert_eq!(encode("a.b/c d"), "a.b%2Fc%20d");
    }
}
