//! Drives the worker's router in-process as a real tenant's role, logged in as each role.

#![allow(dead_code)] // each test file uses a different part of this

pub mod html;

use apotheca_pharmacy::accounts::hash_password;
use apotheca_testkit::TestTenant;
use apotheca_worker::settings::WorkerSettings;
use apotheca_worker::state::AppState;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub tenant: TestTenant,
    pub state: AppState,
    pub router: Router,
}

/// A logged-in client: the session cookie and its CSRF token.
#[derive(Clone, Debug)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: axum::http::HeaderMap,
}

impl TestApp {
    /// A tenant with users `admin`, `pharmacist` and `staff` (password [`PASSWORD`]).
    pub async fn new(schema: &str) -> Self {
        let tenant = TestTenant::new(schema).await;
        let settings = WorkerSettings {
            login_slow_after: 100,
            login_refuse_after: 1000,
            ..WorkerSettings::default()
        };
        Self::with_settings(tenant, settings).await
    }

    /// On the Citus pass the worker is told so, as the daemon tells it (`[worker] citus`).
    pub async fn with_settings(tenant: TestTenant, settings: WorkerSettings) -> Self {
        let settings = WorkerSettings {
            citus: apotheca_testkit::citus(),
            ..settings
        };
        let state =
            AppState::new(&tenant.schema, &tenant.role_url, settings).expect("worker state");
        Self::with_state(tenant, state).await
    }

    /// A worker that announces its writes with the tenant's change marker at `marker`.
    pub async fn with_marker(schema: &str, marker: &std::path::Path) -> Self {
        let tenant = TestTenant::new(schema).await;
        let marker = apotheca_worker::readcache::Marker::open(marker).expect("change marker");
        let state = AppState::with_marker(
            &tenant.schema,
            &tenant.role_url,
            WorkerSettings {
                citus: apotheca_testkit::citus(),
                ..WorkerSettings::default()
            },
            Some(marker),
        )
        .expect("worker state");
        Self::with_state(tenant, state).await
    }

    async fn with_state(tenant: TestTenant, state: AppState) -> Self {
        let router = apotheca_worker::http::router(state.clone());
        let app = Self {
            tenant,
            state,
            router,
        };
        let hash = hash_password(PASSWORD);
        let db = app.state.pool.get().await.expect("tenant connection");
        for role in ["admin", "pharmacist", "staff"] {
            db.execute(
                "INSERT INTO users (username, password_hash, full_name, role) VALUES ($1, $2, $3, $1)",
                &[&role, &hash, &format!("The {role}")],
            )
            .await
            .expect("test user");
        }
        app
    }

    /// A connection as the tenant's role.
    pub async fn db(&self) -> deadpool_postgres::Object {
        self.state.pool.get().await.expect("tenant connection")
    }

    /// The id of the user `username`.
    pub async fn user_id(&self, username: &str) -> i64 {
        self.db()
            .await
            .query_one("SELECT id FROM users WHERE username = $1", &[&username])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn login(&self, username: &str) -> Session {
        let r = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(serde_json::json!({"username": username, "password": PASSWORD})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {username}: {}", r.body);
        let cookie = r.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        Session {
            cookie,
            csrf: r.body["csrf_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        session: Option<&Session>,
        body: Option<Value>,
    ) -> Reply {
        self.call_with(method, path, session, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        session: Option<&Session>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(s) = session {
            req = req
                .header(header::COOKIE, &s.cookie)
                .header("x-csrf-token", &s.csrf);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 16 << 20)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, s: &Session) -> Reply {
        self.call(Method::GET, path, Some(s), None).await
    }

    pub async fn post(&self, path: &str, s: &Session, body: Value) -> Reply {
        self.call(Method::POST, path, Some(s), Some(body)).await
    }

    pub async fn patch(&self, path: &str, s: &Session, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(s), Some(body)).await
    }

    /// Expects `status`, returns the body.
    pub async fn expect(&self, status: u16, r: Reply) -> Value {
        assert_eq!(r.status.as_u16(), status, "body: {}", r.body);
        r.body
    }
}
