//! The public site as a browser uses it, on the public worker's socket of a real daemon:
//! requests with headers and a body, cookies, form tokens, and the operator console's login.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

use super::daemon::{ready_pids, Daemon};

pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `name=value` part of the Set-Cookie for `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap_or_default().to_owned())
    }

    /// The whole Set-Cookie line for `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// The value of the first hidden `csrf_token` field.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf_token\" value=\"")
            .unwrap_or_else(|| panic!("no csrf_token in {}", self.body));
        let rest = &self.body[at + "name=\"csrf_token\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

/// One request on a fresh connection to a Unix socket.
pub async fn send(
    socket: &Path,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = sender
        .send_request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A form body (`application/x-www-form-urlencoded`).
pub fn encode(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The public site of a running daemon, as one browser with its cookies.
pub struct Site {
    pub socket: PathBuf,
    pub cookies: Vec<String>,
    pub address: String,
    /// X-Forwarded-Proto, as the proxy sets it.
    pub proto: &'static str,
}

impl Site {
    /// The public worker's socket, once one is ready.
    pub async fn of(d: &Daemon) -> Self {
        let public = d
            .wait_for("public", "running", |t| !ready_pids(t).is_empty())
            .await;
        let endpoint = public["workers"][0]["address"].as_str().unwrap();
        Self {
            socket: PathBuf::from(endpoint.strip_prefix("unix:").unwrap()),
            cookies: Vec::new(),
            address: "192.0.2.10".to_owned(),
            proto: "http",
        }
    }

    fn keep(&mut self, a: &Answer) {
        for v in a.headers.get_all("set-cookie").iter() {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap().to_owned();
            let name = pair.split('=').next().unwrap().to_owned();
            self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            if !v.contains("Max-Age=0") {
                self.cookies.push(pair);
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let cookie = self.cookies.join("; ");
        let a = send(
            &self.socket,
            Method::GET,
            path,
            &[
                ("host", "localhost:8080"),
                ("cookie", &cookie),
                ("x-forwarded-proto", self.proto),
            ],
            "",
        )
        .await;
        self.keep(&a);
        a
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let cookie = self.cookies.join("; ");
        let a = send(
            &self.socket,
            Method::POST,
            path,
            &[
                ("host", "localhost:8080"),
                ("cookie", &cookie),
                ("x-forwarded-for", &self.address),
                ("x-forwarded-proto", self.proto),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &encode(fields),
        )
        .await;
        self.keep(&a);
        a
    }

    /// Posts the login form with its token.
    pub async fn log_in(&mut self, username: &str, password: &str) -> Answer {
        let form = self.get("/operator/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let token = form.csrf();
        self.post(
            "/operator/login",
            &[
                ("csrf_token", &token),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    /// The operator's session token (the console cookie).
    pub fn token(&self) -> Option<String> {
        self.cookies
            .iter()
            .find_map(|c| c.strip_prefix("apotheca_operator="))
            .map(str::to_owned)
    }
}

/// A request to the daemon's API with an optional bearer token and JSON body.
pub async fn api(
    d: &Daemon,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("host", "control"), ("content-type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b));
    }
    let a = send(&d.socket, method, path, &headers, body).await;
    let json = serde_json::from_str(&a.body).unwrap_or(serde_json::Value::String(a.body));
    (a.status, json)
}
