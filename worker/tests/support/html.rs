//! Driving the HTML pages: GETs with the session cookie only, form POSTs (urlencoded, with
//! or without the CSRF field), and what a browser would read from the answers.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::{Session, TestApp};

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// Where a redirect goes.
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The id in a redirect to `/{prefix}/{id}...`.
    pub fn id_in_location(&self, prefix: &str) -> i64 {
        let rest = self
            .location()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{} does not start with {prefix}", self.location()));
        rest.split(['/', '?'])
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no id in {}", self.location()))
    }

    /// The value of `<input name=... value=...>` (the first one).
    pub fn input_value(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\""))?;
        let tag_start = self.body[..at].rfind('<')?;
        let tag_end = at + self.body[at..].find('>')?;
        let tag = &self.body[tag_start..tag_end];
        let v = tag.split("value=\"").nth(1)?;
        Some(v[..v.find('"')?].to_owned())
    }

    /// The message shown next to field `name` (the element with id `e-{name}`), as read.
    pub fn field_error(&self, name: &str) -> Option<String> {
        let marker = format!("id=\"e-{name}\">");
        let at = self.body.find(&marker)? + marker.len();
        Some(unescape(&self.body[at..at + self.body[at..].find('<')?]))
    }

    pub fn is_html(&self) -> bool {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"))
    }

    /// The first Set-Cookie value's `name=value`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().to_owned())
            .find(|v| v.starts_with(&format!("{name}=")))
    }
}

/// Text as a browser shows it (the entities askama writes).
pub fn unescape(html: &str) -> String {
    html.replace("&#39;", "'")
        .replace("&#34;", "\"")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

async fn send(app: &TestApp, req: Request<Body>) -> Page {
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 16 << 20)
        .await
        .unwrap();
    Page {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// GET `path` as a browser would, with the session cookie (no CSRF header).
pub async fn get(app: &TestApp, path: &str, session: Option<&Session>) -> Page {
    get_with_cookie(app, path, session.map(|s| s.cookie.as_str())).await
}

pub async fn get_with_cookie(app: &TestApp, path: &str, cookie: Option<&str>) -> Page {
    let mut req = Request::builder().method(Method::GET).uri(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    send(app, req.body(Body::empty()).unwrap()).await
}

fn encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                s.bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect::<String>()
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// POST a form with the session's CSRF token.
pub async fn post(app: &TestApp, path: &str, session: &Session, fields: &[(&str, &str)]) -> Page {
    let mut all = vec![("csrf_token", session.csrf.as_str())];
    all.extend_from_slice(fields);
    post_raw(app, path, Some(&session.cookie), &all).await
}

/// POST a form as given (no token added).
pub async fn post_raw(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> Page {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    send(app, req.body(Body::from(encode(fields))).unwrap()).await
}

/// Test data made through the JSON API as admin: a supplier, a medicine with 20 units in
/// stock (received), a customer; returns their ids.
pub struct Stocked {
    pub supplier: i64,
    pub medicine: i64,
    pub receipt: i64,
    pub customer: i64,
}

pub async fn stock_up(app: &TestApp, admin: &Session) -> Stocked {
    let supplier = app
        .expect(
            201,
            app.post(
                "/api/v1/suppliers",
                admin,
                serde_json::json!({"name": "Himal Drugs", "phone": "014111111"}),
            )
            .await,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let medicine = app
        .expect(
            201,
            app.post(
                "/api/v1/medicines",
                admin,
                serde_json::json!({"name": "Paracetamol 500 mg", "generic_name": "paracetamol",
                                   "dosage_form": "tablet", "sale_price": "2.50", "reorder_level": 5}),
            )
            .await,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let receipt: Value = app
        .expect(
            201,
            app.post(
                "/api/v1/supplier-invoices",
                admin,
                serde_json::json!({"supplier_id": supplier, "invoice_no": "HD-1", "invoice_date": "2026-01-05",
                    "lines": [{"medicine_id": medicine, "batch_no": "B1", "expires_on": "2099-01-01",
                               "quantity": 20, "unit_cost": "1.00"}]}),
            )
            .await,
        )
        .await;
    let customer = app
        .expect(
            201,
            app.post(
                "/api/v1/customers",
                admin,
                serde_json::json!({"name": "Sita Sharma", "phone": "9841000000"}),
            )
            .await,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    Stocked {
        supplier,
        medicine,
        receipt: receipt["id"].as_i64().unwrap(),
        customer,
    }
}
