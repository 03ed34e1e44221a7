//! The HTML account and administration forms, in-process: users and their guards, the
//! company profile and settings, logging in and out, changing and resetting a password.

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::html;
use support::{TestApp, PASSWORD};

#[tokio::test]
async fn users_settings_and_the_guards() {
    let app = TestApp::new("forms").await;
    let admin = app.login("admin").await;
    let db = app.db().await;
    let id_of = |name: &'static str| {
        let db = &db;
        async move {
            db.query_one("SELECT id FROM users WHERE username = $1", &[&name])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let (admin_id, staff_id) = (id_of("admin").await, id_of("staff").await);
    // The last admin cannot deactivate themself.
    let me = html::post(
        &app,
        &format!("/users/{admin_id}/edit"),
        &admin,
        &[("full_name", "Boss"), ("role", "admin")],
    )
    .await;
    assert_eq!(me.status, StatusCode::CONFLICT);
    assert!(me.body.contains("this is the last active admin"));
    assert_eq!(me.input_value("full_name").as_deref(), Some("Boss"));
    // Staff promoted, then deactivated: their session ends.
    let staff = app.login("staff").await;
    let promoted = html::post(
        &app,
        &format!("/users/{staff_id}/edit"),
        &admin,
        &[
            ("full_name", "Hari"),
            ("role", "pharmacist"),
            ("active", "on"),
        ],
    )
    .await;
    assert_eq!(promoted.status, StatusCode::SEE_OTHER);
    assert_eq!(
        html::get(&app, "/medicines", Some(&staff)).await.status,
        StatusCode::OK
    );
    let off = html::post(
        &app,
        &format!("/users/{staff_id}/edit"),
        &admin,
        &[("full_name", "Hari"), ("role", "pharmacist")],
    )
    .await;
    assert_eq!(off.status, StatusCode::SEE_OTHER);
    assert_eq!(
        html::get(&app, "/dashboard", Some(&staff)).await.status,
        StatusCode::SEE_OTHER
    );
    let short = html::post(
        &app,
        &format!("/users/{staff_id}/password"),
        &admin,
        &[("new_password", "short")],
    )
    .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short
        .field_error("new_password")
        .unwrap()
        .contains("at least 8"));
    // Settings: a bad tax rate is refused next to it, a good one saved and shown.
    let bad = html::post(
        &app,
        "/settings/pharmacy",
        &admin,
        &[
            ("low_stock_threshold", "10"),
            ("near_expiry_days", "60"),
            ("tax_rate", "1.5"),
            ("currency", "NPR"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad.field_error("tax_rate").as_deref(),
        Some("tax_rate must be between 0 and 1")
    );
    assert_eq!(bad.input_value("near_expiry_days").as_deref(), Some("60"));
    let good = html::post(
        &app,
        "/settings/pharmacy",
        &admin,
        &[
            ("low_stock_threshold", "10"),
            ("near_expiry_days", "60"),
            ("tax_rate", "0.13"),
            ("currency", "USD"),
        ],
    )
    .await;
    assert_eq!(good.status, StatusCode::SEE_OTHER);
    let settings = app
        .expect(200, app.get("/api/v1/settings", &admin).await)
        .await;
    assert_eq!(
        (settings["tax_rate"].as_str(), settings["currency"].as_str()),
        (Some("0.1300"), Some("USD"))
    );
    let company = html::post(
        &app,
        "/settings/company",
        &admin,
        &[
            ("name", "Bhaktapur Pharmacy"),
            ("pan", "123"),
            ("email", "x"),
        ],
    )
    .await;
    assert_eq!(company.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        company.field_error("email").as_deref(),
        Some("email is not an email address")
    );
    let company = html::post(
        &app,
        "/settings/company",
        &admin,
        &[("name", "Bhaktapur Pharmacy"), ("pan", "123")],
    )
    .await;
    assert_eq!(company.status, StatusCode::SEE_OTHER);
    let page = html::get(&app, "/settings", Some(&admin)).await;
    assert_eq!(
        page.input_value("name").as_deref(),
        Some("Bhaktapur Pharmacy")
    );
    assert!(page
        .body
        .contains("<a class=\"brand\" href=\"/dashboard\">Bhaktapur Pharmacy</a>"));
}

#[tokio::test]
async fn logging_in_and_out_and_passwords() {
    let app = TestApp::new("forms").await;
    let form = html::get(&app, "/login?next=/invoices", None).await;
    assert_eq!(form.status, StatusCode::OK);
    let cookie = form.cookie("apotheca_form").expect("the form cookie");
    let token = form.input_value("csrf_token").unwrap();
    assert_eq!(cookie, format!("apotheca_form={token}"));
    assert_eq!(form.input_value("next").as_deref(), Some("/invoices"));
    // Without the form's token: refused.
    let forged = html::post_raw(
        &app,
        "/login",
        None,
        &[("username", "admin"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let wrong = html::post_raw(
        &app,
        "/login",
        Some(&cookie),
        &[
            ("csrf_token", &token),
            ("username", "admin"),
            ("password", "nope"),
            ("next", "/invoices"),
        ],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Wrong username or password."));
    assert_eq!(wrong.input_value("username").as_deref(), Some("admin"));
    assert_eq!(wrong.input_value("password").as_deref(), Some(""));
    // Another site as `next` is ignored.
    let ok = html::post_raw(
        &app,
        "/login",
        Some(&cookie),
        &[
            ("csrf_token", &token),
            ("username", "Admin "),
            ("password", PASSWORD),
            ("next", "//evil.example/"),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), "/dashboard");
    let session = ok.cookie("apotheca_session").expect("a session");
    let dashboard = html::get_with_cookie(&app, "/dashboard", Some(&session)).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    let csrf = dashboard.input_value("csrf_token").unwrap();
    // Changing the password: the current one must be right, the new ones alike.
    let s = support::Session {
        cookie: session.clone(),
        csrf,
    };
    let mismatch = html::post(
        &app,
        "/account/password",
        &s,
        &[
            ("current_password", PASSWORD),
            ("new_password", "brand new one"),
            ("confirm_password", "brand new two"),
        ],
    )
    .await;
    assert_eq!(mismatch.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        mismatch.field_error("confirm_password").as_deref(),
        Some("The two new passwords differ.")
    );
    let wrong = html::post(
        &app,
        "/account/password",
        &s,
        &[
            ("current_password", "nope"),
            ("new_password", "brand new one"),
            ("confirm_password", "brand new one"),
        ],
    )
    .await;
    assert_eq!(
        wrong.field_error("current_password").as_deref(),
        Some("the current password is wrong")
    );
    let changed = html::post(
        &app,
        "/account/password",
        &s,
        &[
            ("current_password", PASSWORD),
            ("new_password", "brand new one"),
            ("confirm_password", "brand new one"),
        ],
    )
    .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER);
    assert_eq!(changed.location(), "/dashboard?notice=password");
    // Logging out ends the session.
    let out = html::post(&app, "/logout", &s, &[]).await;
    assert_eq!(out.location(), "/login?notice=logged_out");
    assert!(out
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().contains("Max-Age=0")));
    assert_eq!(
        html::get_with_cookie(&app, "/dashboard", Some(&session))
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    // A reset: asked for (same answer whoever it is), then set through the link's token.
    for login in ["admin", "nobody"] {
        let asked = html::post_raw(
            &app,
            "/password-reset",
            Some(&cookie),
            &[("csrf_token", &token), ("login", login)],
        )
        .await;
        assert_eq!(asked.location(), "/login?notice=reset_sent");
    }
    let link_token = "a-known-reset-token";
    app.db()
        .await
        .execute(
            "INSERT INTO password_resets (user_id, token_hash, expires_at)
             SELECT id, sha256(convert_to($1, 'UTF8')), now() + interval '1 hour' FROM users WHERE username = 'admin'",
            &[&link_token],
        )
        .await
        .unwrap();
    let reset_form = html::get(&app, &format!("/reset-password?token={link_token}"), None).await;
    assert_eq!(reset_form.input_value("token").as_deref(), Some(link_token));
    let bad = html::post_raw(
        &app,
        "/reset-password",
        Some(&cookie),
        &[
            ("csrf_token", &token),
            ("token", "forged"),
            ("new_password", "third password"),
            ("confirm_password", "third password"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad
        .body
        .contains("the reset link is unknown, used or expired"));
    let done = html::post_raw(
        &app,
        "/reset-password",
        Some(&cookie),
        &[
            ("csrf_token", &token),
            ("token", link_token),
            ("new_password", "third password"),
            ("confirm_password", "third password"),
        ],
    )
    .await;
    assert_eq!(done.location(), "/login?notice=reset");
    let login = app
        .call(
            axum::http::Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "admin", "password": "third password"})),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
}

#[tokio::test]
async fn the_login_page_refuses_for_a_while_after_failed_logins() {
    let settings = apotheca_worker::settings::WorkerSettings {
        login_slow_after: 100,
        login_refuse_after: 2,
        ..Default::default()
    };
    let app =
        TestApp::with_settings(apotheca_testkit::TestTenant::new("forms").await, settings).await;
    let form = html::get(&app, "/login", None).await;
    let cookie = form.cookie("apotheca_form").unwrap();
    let token = form.input_value("csrf_token").unwrap();
    let attempt = |password: &'static str| {
        let (app, cookie, token) = (&app, cookie.clone(), token.clone());
        async move {
            html::post_raw(
                app,
                "/login",
                Some(&cookie),
                &[
                    ("csrf_token", &token),
                    ("username", "staff"),
                    ("password", password),
                ],
            )
            .await
        }
    };
    for _ in 0..2 {
        assert_eq!(attempt("wrong").await.status, StatusCode::UNAUTHORIZED);
    }
    let refused = attempt(PASSWORD).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.body.contains("Too many failed logins"));
    assert!(refused.headers.contains_key("retry-after"));
    assert!(refused.cookie("apotheca_session").is_none());
}
