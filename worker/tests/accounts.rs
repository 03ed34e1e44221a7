//! Logging in and out, sessions, CSRF, tokens, throttling, passwords.

mod support;

use axum::http::{Method, StatusCode};
use serde_json::json;
use support::{TestApp, PASSWORD};

#[tokio::test]
async fn sessions_csrf_and_tokens() {
    let app = TestApp::new("acme").await;
    let s = app.login("admin").await;
    assert!(app.get("/api/v1/auth/me", &s).await.body["role"] == "admin");

    // The cookie is HttpOnly, SameSite=Lax and host-only.
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "ADMIN", "password": PASSWORD})),
        )
        .await;
    let cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && !cookie.to_lowercase().contains("domain="),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"));
    let r = app
        .call_with(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "admin", "password": PASSWORD})),
            &[("x-forwarded-proto", "https")],
        )
        .await;
    assert!(r.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("; Secure"));

    // A state-changing call with the cookie but no CSRF token is refused.
    let mut no_csrf = s.clone();
    no_csrf.csrf = "wrong".into();
    let r = app
        .post("/api/v1/tokens", &no_csrf, json!({"name": "script"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["error"]["code"], "csrf");

    // A personal token works as a bearer token, without CSRF, until revoked.
    let created = app
        .expect(
            201,
            app.post("/api/v1/tokens", &s, json!({"name": "script"}))
                .await,
        )
        .await;
    let token = created["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let r = app
        .call_with(
            Method::GET,
            "/api/v1/auth/me",
            None,
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(r.body["username"], "admin");
    let r = app
        .call_with(
            Method::POST,
            "/api/v1/suppliers",
            None,
            Some(json!({"name": "Via token"})),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let list = app.get("/api/v1/tokens", &s).await.body;
    assert_eq!(list[0]["name"], "script");
    assert!(
        list[0].get("token").is_none(),
        "the token is shown once only"
    );
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        app.call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&s),
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    let r = app
        .call_with(
            Method::GET,
            "/api/v1/auth/me",
            None,
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Logout ends the session.
    assert_eq!(
        app.call(Method::POST, "/api/v1/auth/logout", Some(&s), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/v1/auth/me", &s).await.status,
        StatusCode::UNAUTHORIZED
    );
    // No credentials at all: 401.
    assert_eq!(
        app.call(Method::GET, "/api/v1/suppliers", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn wrong_passwords_inactive_users_and_throttling() {
    let tenant = apotheca_testkit::TestTenant::new("acme").await;
    let settings = apotheca_worker::settings::WorkerSettings {
        login_slow_after: 2,
        login_refuse_after: 4,
        ..Default::default()
    };
    let app = TestApp::with_settings(tenant, settings).await;
    let bad = json!({"username": "staff", "password": "not it"});
    for _ in 0..4 {
        let r = app
            .call(Method::POST, "/api/v1/auth/login", None, Some(bad.clone()))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["error"]["message"], "wrong username or password");
    }
    // Now refused, even with the right password, until the window passes.
    let good = json!({"username": "staff", "password": PASSWORD});
    let r = app
        .call(Method::POST, "/api/v1/auth/login", None, Some(good.clone()))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));
    // Unknown users answer exactly like wrong passwords.
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "nobody", "password": "x"})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the address is throttled too"
    );
    app.db()
        .await
        .batch_execute("DELETE FROM login_failures")
        .await
        .unwrap();
    let s = app.login("staff").await;
    // A deactivated user's session stops working at once.
    app.db()
        .await
        .batch_execute("UPDATE users SET active = false WHERE username = 'staff'")
        .await
        .unwrap();
    assert_eq!(
        app.get("/api/v1/auth/me", &s).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .call(Method::POST, "/api/v1/auth/login", None, Some(good))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn change_and_reset_password() {
    let app = TestApp::new("acme").await;
    let s = app.login("pharmacist").await;
    let other = app.login("pharmacist").await;
    let r = app
        .post(
            "/api/v1/auth/password",
            &s,
            json!({"current_password": "nope", "new_password": "a new password"}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["field"].as_str()),
        (422, Some("current_password"))
    );
    let r = app
        .post(
            "/api/v1/auth/password",
            &s,
            json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!(r.body["error"]["field"], "new_password");
    let r = app
        .post(
            "/api/v1/auth/password",
            &s,
            json!({"current_password": PASSWORD, "new_password": "a new password"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/auth/me", &s).await.status,
        StatusCode::OK,
        "this session stays"
    );
    assert_eq!(
        app.get("/api/v1/auth/me", &other).await.status,
        StatusCode::UNAUTHORIZED,
        "other sessions end"
    );

    // Reset: always 202; the token (hashed in the database) works once, within the hour.
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/password-reset",
            None,
            Some(json!({"login": "nobody"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/password-reset",
            None,
            Some(json!({"login": "pharmacist"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // The link went to the log; plant a known token the way the handler stores one.
    let (token, hash) = apotheca_pharmacy::accounts::new_token();
    let db = app.db().await;
    db.execute(
        "INSERT INTO password_resets (user_id, token_hash, expires_at) SELECT id, $1, now() + interval '1 hour' FROM users WHERE username = 'pharmacist'",
        &[&hash],
    )
    .await
    .unwrap();
    let stored: i64 = db
        .query_one(
            "SELECT count(*) FROM password_resets WHERE token_hash = $1",
            &[&hash],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
    let confirm = json!({"token": token, "new_password": "reset password 1"});
    assert_eq!(
        app.call(
            Method::POST,
            "/api/v1/auth/password-reset/confirm",
            None,
            Some(confirm.clone())
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(
            Method::POST,
            "/api/v1/auth/password-reset/confirm",
            None,
            Some(confirm)
        )
        .await
        .status
        .as_u16(),
        422,
        "used once"
    );
    assert_eq!(
        app.get("/api/v1/auth/me", &s).await.status,
        StatusCode::UNAUTHORIZED,
        "a reset ends all sessions"
    );
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "pharmacist", "password": "reset password 1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Expired tokens are refused.
    let (token, hash) = apotheca_pharmacy::accounts::new_token();
    db.execute(
        "INSERT INTO password_resets (user_id, token_hash, created_at, expires_at) SELECT id, $1, now() - interval '2 hours', now() - interval '1 hour' FROM users WHERE username = 'staff'",
        &[&hash],
    )
    .await
    .unwrap();
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/password-reset/confirm",
            None,
            Some(json!({"token": token, "new_password": "whatever 123"})),
        )
        .await;
    assert_eq!(r.status.as_u16(), 422);
}

#[tokio::test]
async fn misdirected_and_tenant_isolation() {
    let a = TestApp::new("acme").await;
    let b = TestApp::new("beta").await;
    let s = a.login("admin").await;
    // Tenant A's session token sent to tenant B's worker: 401.
    assert_eq!(
        b.get("/api/v1/auth/me", &s).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = a
        .call_with(
            Method::GET,
            "/api/v1/auth/me",
            Some(&s),
            None,
            &[("x-apotheca-tenant", "beta")],
        )
        .await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
    let r = a
        .call_with(
            Method::GET,
            "/api/v1/auth/me",
            Some(&s),
            None,
            &[("x-apotheca-tenant", "acme")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn pages_come_from_query_strings() {
    let app = TestApp::new("acme").await;
    let s = app.login("pharmacist").await;
    for name in ["Alpha", "Beta", "Gamma"] {
        app.expect(
            201,
            app.post("/api/v1/suppliers", &s, json!({"name": name}))
                .await,
        )
        .await;
    }
    let r = app
        .expect(
            200,
            app.get("/api/v1/suppliers?page=2&per_page=2", &s).await,
        )
        .await;
    assert_eq!(r["total"], 3);
    assert_eq!(r["items"][0]["name"], "Gamma");
    let r = app.get("/api/v1/suppliers?page=two", &s).await;
    assert_eq!(r.status.as_u16(), 422);
    app.expect(
        200,
        app.get("/api/v1/invoices?page=1&from=2026-01-01", &s).await,
    )
    .await;
    app.expect(200, app.get("/api/v1/supplier-invoices?page=1", &s).await)
        .await;
}

#[tokio::test]
async fn wrong_body_types_name_their_field() {
    let app = TestApp::new("acme").await;
    let s = app.login("staff").await;
    let body = json!({"payment_method": "card", "lines": [{"medicine_id": 1, "quantity": "x"}]});
    let r = app.post("/api/v1/sales", &s, body).await;
    assert_eq!(r.status.as_u16(), 422, "body: {}", r.body);
    assert_eq!(r.body["error"]["field"], "lines[0].quantity", "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_worker_ends_the_session_on_all() {
    let a = TestApp::new("acme").await;
    // A second worker of the same tenant, as control would run it.
    let b_state = apotheca_worker::state::AppState::new(
        &a.tenant.schema,
        &a.tenant.role_url,
        Default::default(),
    )
    .unwrap();
    let b_router = apotheca_worker::http::router(b_state.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let listener = tokio::spawn(apotheca_worker::changes::listen(
        b_state.clone(),
        a.tenant.role_url.clone(),
        stopped,
    ));
    let s = a.login("admin").await;
    let me = |router: axum::Router, s: support::Session| async move {
        use tower::ServiceExt;
        let req = axum::http::Request::get("/api/v1/auth/me")
            .header("cookie", &s.cookie)
            .body(axum::body::Body::empty())
            .unwrap();
        router.oneshot(req).await.unwrap().status().as_u16()
    };
    // Wait until worker B listens, then let it remember the session.
    let mut cached = false;
    for _ in 0..100 {
        assert_eq!(me(b_router.clone(), s.clone()).await, 200);
        let hash = apotheca_pharmacy::accounts::token_hash(s.cookie.split_once('=').unwrap().1);
        if matches!(
            b_state.auth_cache.get(&hash),
            apotheca_worker::authcache::Cached::Fresh(_)
        ) {
            cached = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(cached, "worker B caches the login once its listener runs");
    assert_eq!(
        a.call(Method::POST, "/api/v1/auth/logout", Some(&s), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let mut refused = false;
    for _ in 0..100 {
        if me(b_router.clone(), s.clone()).await == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "worker B forgot the session within 2 s of the logout on worker A"
    );
    stop.send(true).unwrap();
    listener.await.unwrap();
}

#[tokio::test]
async fn a_hash_with_older_parameters_is_replaced_at_the_next_login() {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let app = TestApp::new("rehash").await;
    // What Apotheca stored before: the argon2 crate's defaults, 19 MiB and 2 passes.
    let old = argon2::Argon2::default()
        .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
    assert!(old.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{old}");
    let stored = || staff_hash(&app);
    set_staff_hash(&app, &old).await.unwrap();
    // A wrong password changes nothing.
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "staff", "password": "not the password"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stored().await, old);
    // The right one logs in with the old hash and leaves a new one, which works too.
    app.login("staff").await;
    let new = stored().await;
    assert!(new.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{new}");
    assert!(!apotheca_pharmacy::accounts::needs_rehash(&new));
    app.login("staff").await;
    assert_eq!(stored().await, new, "a current hash is kept as it is");
}

/// Users brought from the Django pharmacy app keep their passwords: Django's hash verifies at
/// login and is replaced by Apotheca's own there.
#[tokio::test]
async fn a_django_password_hash_logs_in_and_is_replaced() {
    let app = TestApp::new("django_hash").await;
    // Made by Django 5.2's make_password(PASSWORD, hasher=...).
    let hashes = [
        "pbkdf2_sha256$1000000$GcOCH5u8fGMiZ1gMFAI6XY$SG2Fqm5XA/Wno5IclUH+AaNsNz1CMBtpzovMKSWZ+M4=",
        "bcrypt_sha256$$2b$12$CrQqyZg39F73OVyAjZ938.6b3UNbmdtFQKl4R.c13DQQ6I3tM1euu",
    ];
    for django in hashes {
        set_staff_hash(&app, django).await.unwrap();
        let r = app
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": "staff", "password": "correct horse batterY"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{django}");
        app.login("staff").await;
        let now = staff_hash(&app).await;
        assert!(
            now.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"),
            "{django} → {now}"
        );
    }
    // The column takes Django's formats and Apotheca's own, nothing else.
    for refused in [
        "md5$salt$0123456789abcdef",
        "plain text",
        "pbkdf2_sha256$x$y$z",
    ] {
        let e = set_staff_hash(&app, refused).await.expect_err(refused);
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
            "{refused}"
        );
    }
    set_staff_hash(&app, "!dK36PjY2nrDe3BXqpUtKRILnDT4mEhNolzcy1wp2")
        .await
        .expect("Django's unusable password is stored as it is");
}

/// The staff user's stored password hash.
async fn staff_hash(app: &TestApp) -> String {
    app.db()
        .await
        .query_one(
            "SELECT password_hash FROM users WHERE username = 'staff'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Stores `hash` as the staff user's password hash, as the column's CHECK takes it or not.
async fn set_staff_hash(app: &TestApp, hash: &str) -> Result<u64, tokio_postgres::Error> {
    app.db()
        .await
        .execute(
            "UPDATE users SET password_hash = $1 WHERE username = 'staff'",
            &[&hash],
        )
        .await
}
