//! Bad input through the real proxy, daemon and worker: 1 MB of headers (431), a head trickled
//! in byte by byte (408 and closed within the header timeout, another client served
//! meanwhile), invalid UTF-8 in the path, headers, JSON and form bodies, SQL in every field of
//! the sale and medicine bodies (refused, or for free text stored verbatim — never run), huge
//! quantities, negative prices and costs: each a 4xx with a message (or, for harmless text, a
//! success), never a 5xx, never a hang (every call bounded in time); the books agree after.

use std::time::Duration;

use apotheca_testkit::system::daemon::{Daemon, PATIENCE};
use apotheca_testkit::system::pharmacy::{audit, Shop};
use apotheca_testkit::system::proxy::{Proxy, CLIENT_TIMEOUT};
use apotheca_testkit::system::Apotheca;
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Header timeout of the proxy in these tests.
const HEADER_TIMEOUT_MS: u64 = 1500;

/// Sends `request` as raw bytes on a fresh connection and reads the answer until the proxy
/// closes it (the requests say `Connection: close`): its status and the rest of it. Writing
/// may fail once the proxy answered early; that is not an error. No whole answer within
/// [`CLIENT_TIMEOUT`] is.
async fn raw(port: u16, request: Vec<u8>) -> Result<(u16, String), String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let (mut read, mut write) = stream.into_split();
        let writer = tokio::spawn(async move {
            let _ = write.write_all(&request).await;
            write
        });
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        drop(writer.await);
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
        Ok((status, text))
    };
    tokio::time::timeout(CLIENT_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {CLIENT_TIMEOUT:?}"))?
}

/// A request head (and body) for the shop, as bytes, closing the connection after.
fn head(shop: &Shop, method: &str, path: &[u8], extra: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(path);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    r.extend_from_slice(shop.host.as_bytes());
    r.extend_from_slice(
        b"\r\nAccept: application/json\r\nConnection: close\r\nAuthorization: Bearer ",
    );
    r.extend_from_slice(shop.token.as_bytes());
    for h in extra {
        r.extend_from_slice(b"\r\n");
        r.extend_from_slice(h);
    }
    r.extend_from_slice(format!("\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    r.extend_from_slice(body);
    r
}

/// A 4xx whose body says what was wrong.
fn assert_clear_4xx(what: &str, status: u16, text: &str) {
    assert!((400..500).contains(&status), "{what}: {status}\n{text}");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
    assert!(
        body.len() > 10,
        "{what}: {status} without a message: {text:?}"
    );
}

/// The worker's error message in a JSON answer.
fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

async fn open() -> (Apotheca, Daemon, Proxy, Shop) {
    let a = Apotheca::migrated().await;
    a.create_pharmacy("alpha").await;
    let d = a.serve(&[]).await;
    let timeout = HEADER_TIMEOUT_MS.to_string();
    let p = a.proxy(&d, &[("client_header_timeout_ms", &timeout)]).await;
    let shop = Shop::open(p.http, "alpha", 2, 1000).await;
    (a, d, p, shop)
}

#[tokio::test]
async fn huge_and_slow_heads_and_invalid_utf8_get_a_clear_4xx() {
    let (a, d, p, shop) = open().await;

    // 1 MB of headers: 431 at once.
    let mut big = head(&shop, "GET", b"/api/v1/medicines", &[], b"");
    let filler = vec![b'a'; 1 << 20];
    let at = big.len() - 4;
    big.splice(at..at, [b"\r\nX-Filler: ".as_slice(), &filler].concat());
    let (status, text) = raw(p.http, big).await.unwrap();
    assert_eq!(status, 431, "{text}");
    assert_clear_4xx("1 MB of headers", status, &text);

    // A head trickled in: 408 and closed within the header timeout, others served meanwhile.
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", p.http))
        .await
        .unwrap();
    let started = Instant::now();
    let trickle = head(&shop, "GET", b"/api/v1/medicines", &[], b"");
    let sent = async {
        for b in trickle.iter().take(trickle.len() - 1) {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let others = async {
        let mut fast = vec![];
        while started.elapsed() < Duration::from_millis(HEADER_TIMEOUT_MS) {
            let t = Instant::now();
            shop.json(Method::GET, "/api/v1/medicines", &Value::Null, 200)
                .await;
            fast.push(t.elapsed());
        }
        fast
    };
    let ((), fast) = tokio::join!(sent, others);
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, slow.read_to_end(&mut answer)).await;
    let took = started.elapsed();
    assert!(closed.is_ok(), "the trickling connection was not closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        took < Duration::from_millis(HEADER_TIMEOUT_MS) + Duration::from_secs(3),
        "closed after {took:?}"
    );
    let slowest = fast.iter().max().copied().unwrap_or_default();
    println!(
        "slowloris: 408 after {took:?}; meanwhile {} requests, the slowest {slowest:?}",
        fast.len()
    );
    assert!(
        !fast.is_empty() && slowest < Duration::from_secs(5),
        "{fast:?}"
    );

    // Invalid UTF-8 in the path, in headers, in a JSON body and in a form body.
    let sale = br#"{"payment_method": "card", "lines": [{"medicine_id": 1, "quantity": 1}]}"#;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "path",
            head(&shop, "GET", b"/api/v1/medicines/\xff\xfe", &[], b""),
        ),
        (
            "query",
            head(&shop, "GET", b"/api/v1/medicines?q=\xc3\x28", &[], b""),
        ),
        (
            "idempotency key",
            head(
                &shop,
                "POST",
                b"/api/v1/sales",
                &[
                    b"Content-Type: application/json",
                    b"Idempotency-Key: k\xff\xfe",
                ],
                sale,
            ),
        ),
        (
            "JSON body",
            head(
                &shop,
                "POST",
                b"/api/v1/sales",
                &[b"Content-Type: application/json"],
                b"{\"payment_method\": \"c\xffrd\", \"lines\": []}",
            ),
        ),
        (
            "form body",
            head(
                &shop,
                "POST",
                b"/login",
                &[b"Content-Type: application/x-www-form-urlencoded"],
                b"username=\xff\xfe&password=%ff%fe&csrf_token=\xc3\x28",
            ),
        ),
    ];
    for (what, request) in cases {
        let (status, text) = raw(p.http, request).await.unwrap();
        println!("invalid UTF-8 in the {what}: {status}");
        assert_clear_4xx(what, status, &text);
    }
    // A Host that is not UTF-8: the proxy's 400.
    let mut bad_host = head(&shop, "GET", b"/", &[], b"");
    let at = bad_host.windows(6).position(|w| w == b"Host: ").unwrap() + 6;
    bad_host.splice(at..at, b"\xff".iter().copied());
    let (status, text) = raw(p.http, bad_host).await.unwrap();
    assert_eq!(status, 400, "{text}");
    assert_clear_4xx("host", status, &text);

    let db = a.db.client().await;
    let books = audit(&db, "alpha").await;
    assert!(books.invoices.is_empty(), "{books:?}");
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}

const SQL: [&str; 4] = [
    "'; DROP TABLE medicines; --",
    "1 OR 1=1",
    "Robert'); DELETE FROM batches; --",
    "$$; SELECT pg_sleep(30); $$",
];

#[tokio::test]
async fn sql_huge_quantities_and_negative_prices_are_refused_or_kept_verbatim() {
    let (a, d, p, shop) = open().await;
    let m = shop.medicines[0];
    let post = |path: &'static str, body: Value| {
        let shop = shop.clone();
        async move {
            let r = shop
                .send(Method::POST, path, &[], &body.to_string())
                .await
                .unwrap_or_else(|e| panic!("{path} {body}: {e}"));
            assert!(r.status < 500, "{path} {body}: {} {}", r.status, r.text());
            (r.status, r.json())
        }
    };

    // SQL in every field of a medicine: free text is kept verbatim, typed fields refused.
    let medicine = json!({"name": "Cetirizine", "brand": "Zyrtec", "generic_name": "cetirizine",
                          "dosage_form": "tablet", "strength": "10 mg", "sale_price": "1.50",
                          "reorder_level": 5});
    for field in [
        "name",
        "brand",
        "generic_name",
        "dosage_form",
        "strength",
        "sale_price",
        "reorder_level",
    ] {
        for (i, sql) in SQL.iter().enumerate() {
            let mut body = medicine.clone();
            // Names are unique: one per case.
            body["name"] = json!(format!("Cetirizine {field} {i}"));
            body[field] = json!(sql);
            let (status, v) = post("/api/v1/medicines", body.clone()).await;
            match field {
                "name" | "brand" | "generic_name" | "strength" if status == 201 => {
                    let id = v["id"].as_i64().unwrap();
                    let back = shop
                        .json(
                            Method::GET,
                            &format!("/api/v1/medicines/{id}"),
                            &Value::Null,
                            200,
                        )
                        .await;
                    let kept = back[field].as_str().or(back["medicine"][field].as_str());
                    assert_eq!(kept, Some(*sql), "{field}: {back}");
                }
                _ => {
                    assert!(
                        (400..500).contains(&status),
                        "{field} = {sql}: {status} {v}"
                    );
                    assert!(!message(&v).is_empty(), "{field}: {v}");
                }
            }
        }
    }

    // SQL in every field of a sale: refused, except the customer's name (kept verbatim).
    let sale = json!({"payment_method": "cash", "amount_received": "100.00", "discount": "0",
                      "customer_name": "Walk-in", "customer_phone": "9800000000",
                      "lines": [{"medicine_id": m, "quantity": 1}]});
    let mut posted = 0;
    for field in [
        "customer_id",
        "customer_name",
        "customer_phone",
        "payment_method",
        "discount",
        "amount_received",
        "lines",
        "medicine_id",
        "quantity",
    ] {
        for sql in SQL {
            let mut body = sale.clone();
            match field {
                "medicine_id" | "quantity" => body["lines"][0][field] = json!(sql),
                _ => body[field] = json!(sql),
            }
            let (status, v) = post("/api/v1/sales", body).await;
            if field == "customer_name" && status == 201 {
                assert_eq!(v["customer_name"], sql, "{v}");
                posted += 1;
                continue;
            }
            assert!(
                (400..500).contains(&status),
                "{field} = {sql}: {status} {v}"
            );
            assert!(!message(&v).is_empty(), "{field}: {v}");
        }
    }
    // The Idempotency-Key header: any text is a key; SQL in it is just a key.
    let r = shop
        .send(
            Method::POST,
            "/api/v1/sales",
            &[("idempotency-key", SQL[0])],
            &sale.to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    posted += 1;

    // Huge and negative numbers.
    let huge = [
        "1000001",
        "2147483648",
        "9223372036854775807",
        "1e30",
        "-1",
        "0",
        "1.5",
    ];
    for q in huge {
        let body: Value = serde_json::from_str(&format!(
            r#"{{"payment_method": "card", "lines": [{{"medicine_id": {m}, "quantity": {q}}}]}}"#
        ))
        .unwrap_or_else(
            |_| json!({"payment_method": "card", "lines": [{"medicine_id": m, "quantity": q}]}),
        );
        let (status, v) = post("/api/v1/sales", body).await;
        assert!((400..500).contains(&status), "quantity {q}: {status} {v}");
        assert!(!message(&v).is_empty(), "{v}");
    }
    for (field, value) in [
        ("sale_price", json!("-1.00")),
        ("sale_price", json!(-0.01)),
        ("sale_price", json!("1e30")),
        ("sale_price", json!("999999999999999999.99")),
        ("sale_price", json!("0.001")),
        ("reorder_level", json!(-5)),
        ("reorder_level", json!(9_223_372_036_854_775_807_i64)),
    ] {
        let mut body = medicine.clone();
        body["name"] = json!(format!("Priced {field} {value}"));
        body[field] = value.clone();
        let (status, v) = post("/api/v1/medicines", body).await;
        assert!(
            (400..500).contains(&status),
            "{field} {value}: {status} {v}"
        );
        assert!(!message(&v).is_empty(), "{v}");
    }
    for (discount, received) in [
        ("-5.00", "100"),
        ("0", "-1"),
        ("1e30", "100"),
        ("0", "1e40"),
    ] {
        let mut body = sale.clone();
        body["discount"] = json!(discount);
        body["amount_received"] = json!(received);
        let (status, v) = post("/api/v1/sales", body).await;
        assert!(
            (400..500).contains(&status),
            "discount {discount} received {received}: {status} {v}"
        );
    }
    let today = chrono::Utc::now().date_naive();
    for (quantity, cost) in [
        (json!(5), json!("-1.00")),
        (json!(3_000_000_000_i64), json!("1.00")),
        (json!(-3), json!("1.00")),
        (json!(1), json!("1e30")),
    ] {
        let body = json!({"supplier_id": 1, "invoice_no": format!("BAD-{quantity}-{cost}"),
                          "invoice_date": today, "lines": [{"medicine_id": m, "batch_no": "X-1",
                          "expires_on": today + chrono::Days::new(100), "quantity": quantity,
                          "unit_cost": cost}]});
        let (status, v) = post("/api/v1/supplier-invoices", body).await;
        assert!(
            (400..500).contains(&status),
            "receipt {quantity} at {cost}: {status} {v}"
        );
    }

    // Nothing ran: every table is there, the books agree, only the sales accepted were made.
    let db = a.db.client().await;
    let books = audit(&db, "alpha").await;
    assert_eq!(books.invoices.len(), 1, "{books:?}");
    let sold: i64 = books.sold.values().sum();
    assert_eq!(sold, posted, "{books:?}");
    assert_eq!(books.on_hand.get(&m), Some(&(1000 - posted)));
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}
