//! The role matrix of `docs/domain.md`, "Roles and permissions": every endpoint × every role. Allowed calls may
//! answer 2xx, 404 or 4xx for their input, but never 401, 403 or 5xx; refused calls answer
//! 403; without credentials, 401.

mod support;

use axum::http::Method;
use serde_json::{json, Value};
use support::TestApp;

/// Who may call it: A = admin, P = pharmacist, S = staff.
const ALL: &str = "APS";
const AP: &str = "AP";
const A: &str = "A";

fn endpoints() -> Vec<(Method, &'static str, Option<Value>, &'static str)> {
    use Method as M;
    vec![
        (M::GET, "/api/v1/auth/me", None, ALL),
        (
            M::POST,
            "/api/v1/auth/password",
            Some(json!({"current_password": "wrong one", "new_password": "another one"})),
            ALL,
        ),
        (M::GET, "/api/v1/tokens", None, ALL),
        (M::POST, "/api/v1/tokens", Some(json!({"name": "t"})), ALL),
        (M::DELETE, "/api/v1/tokens/999", None, ALL),
        (M::GET, "/api/v1/dashboard", None, ALL),
        (M::GET, "/api/v1/alerts", None, ALL),
        (M::GET, "/api/v1/company", None, ALL),
        (M::PUT, "/api/v1/company", Some(json!({"name": "Acme"})), A),
        (M::GET, "/api/v1/settings", None, ALL),
        (
            M::PUT,
            "/api/v1/settings",
            Some(json!({"currency": "NPR"})),
            A,
        ),
        (M::GET, "/api/v1/users", None, A),
        (
            M::POST,
            "/api/v1/users",
            Some(json!({"username": "newbie", "password": "long enough", "role": "staff"})),
            A,
        ),
        (M::GET, "/api/v1/users/999", None, A),
        (
            M::PATCH,
            "/api/v1/users/999",
            Some(json!({"full_name": "X"})),
            A,
        ),
        (
            M::POST,
            "/api/v1/users/999/password",
            Some(json!({"new_password": "long enough"})),
            A,
        ),
        (M::GET, "/api/v1/suppliers", None, AP),
        (M::POST, "/api/v1/suppliers", Some(json!({"name": "S"})), AP),
        (M::GET, "/api/v1/suppliers/999", None, AP),
        (
            M::PATCH,
            "/api/v1/suppliers/999",
            Some(json!({"name": "S"})),
            AP,
        ),
        (M::DELETE, "/api/v1/suppliers/999", None, AP),
        (M::GET, "/api/v1/medicines", None, AP),
        (
            M::POST,
            "/api/v1/medicines",
            Some(json!({"name": "M", "dosage_form": "tablet", "sale_price": "1.00"})),
            AP,
        ),
        (M::GET, "/api/v1/medicines/999", None, AP),
        (
            M::PATCH,
            "/api/v1/medicines/999",
            Some(json!({"name": "M"})),
            AP,
        ),
        (
            M::POST,
            "/api/v1/batches/999/write-off",
            Some(json!({"quantity": 1, "reason": "x"})),
            AP,
        ),
        (
            M::POST,
            "/api/v1/batches/999/adjust",
            Some(json!({"quantity": 1, "reason": "x"})),
            AP,
        ),
        (M::GET, "/api/v1/supplier-invoices", None, AP),
        (M::GET, "/api/v1/supplier-invoices/999", None, AP),
        (
            M::POST,
            "/api/v1/supplier-invoices",
            Some(
                json!({"supplier_id": 999, "invoice_no": "X", "invoice_date": "2026-01-01", "lines": []}),
            ),
            AP,
        ),
        (M::GET, "/api/v1/counter/search?q=pa", None, ALL),
        (
            M::POST,
            "/api/v1/sales",
            Some(json!({"payment_method": "card", "lines": [{"medicine_id": 999, "quantity": 1}]})),
            ALL,
        ),
        (M::GET, "/api/v1/invoices", None, ALL),
        (M::GET, "/api/v1/invoices/999", None, ALL),
        (
            M::POST,
            "/api/v1/invoices/999/returns",
            Some(json!({"reason": "x", "lines": [{"invoice_line_id": 1, "quantity": 1}]})),
            AP,
        ),
        (
            M::POST,
            "/api/v1/invoices/999/void",
            Some(json!({"reason": "x"})),
            AP,
        ),
        (M::GET, "/api/v1/customers", None, ALL),
        (
            M::POST,
            "/api/v1/customers",
            Some(json!({"name": "C"})),
            ALL,
        ),
        (M::GET, "/api/v1/customers/999", None, ALL),
        (
            M::PATCH,
            "/api/v1/customers/999",
            Some(json!({"name": "C"})),
            ALL,
        ),
        (M::GET, "/api/v1/reports/daily", None, AP),
        (M::GET, "/api/v1/reports/sales", None, AP),
        (M::GET, "/api/v1/reports/top-sellers", None, AP),
        (M::GET, "/api/v1/reports/stock", None, AP),
        (M::GET, "/api/v1/reports/stock-by-supplier", None, AP),
    ]
}

#[tokio::test]
async fn every_endpoint_by_every_role() {
    let app = TestApp::new("acme").await;
    let sessions = [
        ('A', app.login("admin").await),
        ('P', app.login("pharmacist").await),
        ('S', app.login("staff").await),
    ];
    let mut failures = Vec::new();
    for (method, path, body, who) in endpoints() {
        let anonymous = app.call(method.clone(), path, None, body.clone()).await;
        if anonymous.status.as_u16() != 401 {
            failures.push(format!(
                "anonymous {method} {path}: {} (want 401)",
                anonymous.status
            ));
        }
        for (role, session) in &sessions {
            let r = app
                .call(method.clone(), path, Some(session), body.clone())
                .await;
            let status = r.status.as_u16();
            let allowed = who.contains(*role);
            let ok = if allowed {
                !matches!(status, 401 | 403) && status < 500
            } else {
                status == 403
            };
            if !ok {
                failures.push(format!(
                    "{role} {method} {path}: {status} {} (allowed: {allowed})",
                    r.body
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "role matrix broken:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn staff_see_only_their_own_invoices() {
    let app = TestApp::new("acme").await;
    let admin = app.login("admin").await;
    let staff = app.login("staff").await;
    let m: i64 = app
        .db()
        .await
        .query_one("INSERT INTO medicines (name, dosage_form, sale_price) VALUES ('X', 'tablet', 1) RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    let supplier = app
        .expect(
            201,
            app.post("/api/v1/suppliers", &admin, json!({"name": "S"}))
                .await,
        )
        .await["id"]
        .clone();
    let receipt = json!({"supplier_id": supplier, "invoice_no": "1", "invoice_date": "2026-01-01",
                         "lines": [{"medicine_id": m, "batch_no": "B", "expires_on": "2099-01-01", "quantity": 10, "unit_cost": "0.50"}]});
    app.expect(
        201,
        app.post("/api/v1/supplier-invoices", &admin, receipt).await,
    )
    .await;
    let sale = json!({"payment_method": "card", "lines": [{"medicine_id": m, "quantity": 1}]});
    let mine = app
        .expect(201, app.post("/api/v1/sales", &staff, sale.clone()).await)
        .await;
    let theirs = app
        .expect(201, app.post("/api/v1/sales", &admin, sale).await)
        .await;
    let list = app
        .expect(200, app.get("/api/v1/invoices", &staff).await)
        .await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], mine["id"]);
    assert_eq!(
        app.get(&format!("/api/v1/invoices/{}", theirs["id"]), &staff)
            .await
            .status
            .as_u16(),
        404
    );
    assert_eq!(
        app.expect(200, app.get("/api/v1/invoices", &admin).await)
            .await["total"],
        2
    );
}

/// The internal routes answer local callers (control, tools on the worker's socket) but not a
/// request the proxy forwarded, which always carries `X-Apotheca-Tenant` (its own, here).
#[tokio::test]
async fn internal_routes_are_not_for_requests_through_the_proxy() {
    let app = TestApp::new("acme").await;
    for path in ["/_apotheca/health", "/_apotheca/stats"] {
        let local = app.call(Method::GET, path, None, None).await;
        assert_eq!(local.status, 200, "{path}: {}", local.body);
        assert_eq!(local.body["schema"], "acme", "{path}");
        let proxied = app
            .call_with(
                Method::GET,
                path,
                None,
                None,
                &[("x-apotheca-tenant", "acme")],
            )
            .await;
        assert_eq!(proxied.status, 404, "{path}: {}", proxied.body);
        assert_eq!(proxied.body["error"]["code"], "not_found", "{path}");
        assert!(proxied.body.get("rss_bytes").is_none(), "{path}");
    }
}
