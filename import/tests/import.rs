//! `apotheca import` (pharmacy-app and django-tenants) on databases Django itself made
//! (`tests/django/`: the app's models, rows through the ORM with make_password, then the
//! quirks real databases hold): a SQLite file, the same rows as a UTF-16 dumpdata JSON, a
//! PostgreSQL database on the test cluster, and a django-tenants database of three pharmacies.
//! Each test checks the mapping rules on the rows it knows, the report, and the books.
//!
//! Django comes from PyPI into a virtualenv under the target folder, made once and kept
//! (`scripts/django-venv.sh`; the requirements are `tests/django/requirements.txt`).

use std::path::{Path, PathBuf};
use std::process::Command;

use apotheca_testkit::system::Apotheca;
use apotheca_testkit::{column, TestDb};
use hyper::Method;
use serde_json::Value;
use tokio::sync::OnceCell;

const HERE: &str = env!("CARGO_MANIFEST_DIR");

/// The Python of the virtualenv with the requirements (`scripts/django-venv.sh`, shared with
/// the browser flow and `bench/import.sh`), made on first use.
async fn python() -> &'static Path {
    static PYTHON: OnceCell<PathBuf> = OnceCell::const_new();
    PYTHON
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| {
                let script = Path::new(HERE).join("../scripts/django-venv.sh");
                PathBuf::from(run(&mut Command::new(script)).trim())
            })
            .await
            .unwrap()
        })
        .await
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes the small set as `kind` (sqlite, dumpdata: a file in `dir`; postgres: into `url`).
async fn make(kind: &str, target: &str) {
    let python = python().await.to_path_buf();
    let (kind, target) = (kind.to_owned(), target.to_owned());
    tokio::task::spawn_blocking(move || {
        run(Command::new(python)
            .arg(Path::new(HERE).join("tests/django/make_source.py"))
            .args([&kind, &target]))
    })
    .await
    .unwrap();
}

/// Imports `from` as schema `sunrise` and returns the JSON report.
async fn import(a: &Apotheca, from: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "import",
        "pharmacy-app",
        "--from",
        from,
        "--schema",
        "sunrise",
        "--domain",
        "sunrise.localhost",
        "--json",
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&a.ok(&args).await).expect("the report as JSON")
}

/// A login to the imported pharmacy through the proxy.
async fn log_in(
    proxy: &apotheca_testkit::system::proxy::Proxy,
    user: &str,
    password: &str,
) -> apotheca_testkit::system::proxy::Reply {
    let body = serde_json::json!({"username": user, "password": password}).to_string();
    let headers = [
        ("host", "sunrise.localhost"),
        ("content-type", "application/json"),
    ];
    proxy
        .request(Method::POST, "/api/v1/auth/login", &headers, &body)
        .await
        .unwrap()
}

/// An import of `from` as `schema` on `domain` that is to be refused as bad input (exit 2).
async fn refused(
    a: &Apotheca,
    from: &str,
    schema: &str,
    domain: &str,
) -> apotheca_testkit::system::Run {
    let args = [
        "import",
        "pharmacy-app",
        "--from",
        from,
        "--schema",
        schema,
        "--domain",
        domain,
    ];
    a.fails(&args, 2).await
}

fn count(report: &Value, entity: &str, what: &str) -> u64 {
    report["counts"][entity][what]
        .as_u64()
        .unwrap_or_else(|| panic!("{entity}.{what} in {report}"))
}

fn has(report: &Value, table: &str, id: i64, problem: &str) -> bool {
    report["anomalies"].as_array().unwrap().iter().any(|a| {
        a["table"] == table && a["id"] == id && a["problem"].as_str().unwrap().contains(problem)
    })
}

/// Every rule the small set exercises, as a test reads them back from the tenant's schema.
async fn check_small(a: &Apotheca, report: &Value) {
    for (entity, read, written) in [
        ("users", 5, 7),
        ("suppliers", 2, 2),
        ("medicines", 10, 9),
        ("batches", 10, 11),
        ("customers", 2, 2),
        ("invoices", 5, 5),
        ("invoice lines", 8, 8),
        ("receipts", 2, 2),
        ("receipt lines", 2, 2),
    ] {
        assert_eq!(count(report, entity, "read"), read, "{entity}");
        assert_eq!(count(report, entity, "written"), written, "{entity}");
    }
    assert_eq!(count(report, "medicines", "merged"), 2);
    for (table, id, problem) in [
        ("pharmacy_user", 3, "role \"cashier\""),
        ("pharmacy_user", 5, "unusable"),
        ("medicine_medicine", 3, "no batch number"),
        ("medicine_medicine", 7, "appears twice"),
        (
            "medicine_medicine",
            8,
            "expired on 2025-01-01 with 25 units",
        ),
        ("medicine_medicine", 9, "not before its expiry"),
        ("billing_customer", 2, "not a phone number"),
        ("billing_invoice", 4, "no amount received"),
        ("billing_invoice", 4, "total 180.00 is not subtotal 200.00"),
        ("billing_invoice", 3, "names no user"),
        ("billing_invoice", 5, "\"ghost\", who does not exist"),
        ("billing_invoice", 5, "customer 3 does not exist"),
        (
            "billing_invoiceitem",
            7,
            "line total 200.00 is not 2 × 120.00",
        ),
        ("billing_invoiceitem", 8, "medicine row 11 does not exist"),
    ] {
        assert!(
            has(report, table, id, problem),
            "no anomaly {table} {id} {problem:?} in {report:#}"
        );
    }

    let db = a.db.client().await;
    db.batch_execute("SET search_path = sunrise").await.unwrap();
    // Users: names, roles, active flags and their Django hashes kept; the unknown made inactive.
    let users: Vec<(String, String, bool, String)> = db
        .query(
            "SELECT username, role, active, password_hash FROM users ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let summary: Vec<(&str, &str, bool)> = users
        .iter()
        .map(|(u, r, a, _)| (u.as_str(), r.as_str(), *a))
        .collect();
    assert_eq!(
        summary,
        [
            ("admin", "admin", true),
            ("ram", "pharmacist", true),
            ("sita", "staff", true),
            ("hari", "pharmacist", false),
            ("gopal", "admin", true),
            ("imported-unknown", "staff", false),
            ("ghost", "staff", false)
        ]
    );
    let prefixes: Vec<&str> = users
        .iter()
        .map(|u| u.3.split('$').next().unwrap())
        .collect();
    assert_eq!(
        prefixes[..4],
        ["pbkdf2_sha256", "argon2", "bcrypt_sha256", "pbkdf2_sha1"]
    );
    assert!(users[4].3.starts_with('!'));
    // The company.
    let company: Vec<String> = column(
        &db,
        "SELECT name || '|' || coalesce(phone, '') || '|' || coalesce(vat_no, '') FROM company",
    )
    .await;
    assert_eq!(company, ["Sunrise Pharmacy|+977 1-5521234|VAT-77"]);
    // Medicines: one per name, brand and form, with the batches as rows; forms mapped.
    let medicines: Vec<String> = column(
        &db,
        "SELECT m.name || '|' || m.dosage_form || '|' || m.sale_price || '|' || m.active || '|' ||
                string_agg(b.batch_no || ':' || b.quantity_on_hand, ',' ORDER BY b.id)
         FROM medicines m JOIN batches b ON b.medicine_id = m.id GROUP BY m.id ORDER BY m.id",
    )
    .await;
    assert_eq!(
        medicines,
        [
            "Paracetamol 500mg|tablet|2.75|true|PC-001:100,PC-002:50",
            "Amoxicillin 250mg|tablet|8.00|true|IMPORT-3:40",
            "Cough Syrup|syrup|120.00|true|CS-9:12",
            "Insulin pen|other|950.00|true|IP-1:3",
            "Cetirizine 10mg|tablet|3.00|true|CZ-1:30,CZ-1-7:20",
            "Vitamin C|tablet|1.00|true|VC-0:25",
            "ORS sachet|liquid|15.00|true|OR-5:60",
            "Bandage|patch|0.00|true|BA-1:10",
            "Medicine #11 (deleted)|other|5.00|false|DELETED-11:0",
        ]
    );
    // Opening balances: one movement per batch with stock, and the books agree.
    let books: Vec<i64> = column(
        &db,
        "SELECT (SELECT count(*) FROM batches b WHERE b.quantity_on_hand <>
                    (SELECT coalesce(sum(m.quantity), 0) FROM stock_movements m WHERE m.batch_id = b.id))
              + (SELECT count(*) FROM invoice_lines l WHERE l.quantity <>
                    (SELECT coalesce(sum(a.quantity), 0) FROM invoice_line_batches a WHERE a.invoice_line_id = l.id))
              + (SELECT count(*) FROM stock_movements WHERE reason <> 'opening')",
    )
    .await;
    assert_eq!(books, [0]);
    // Sales: numbers, payment methods (esewa → wallet), who billed them, recorded figures.
    let invoices: Vec<String> = column(
        &db,
        "SELECT i.number || '|' || i.payment_method || '|' || u.username || '|' || i.total || '|' ||
                i.amount_received || '|' || coalesce(i.customer_id::text, '-') || '|' || i.imported
         FROM invoices i JOIN users u ON u.id = i.billed_by ORDER BY i.number",
    )
    .await;
    assert_eq!(
        invoices,
        [
            "1|cash|ram|280.00|300.00|1|true",
            "2|wallet|sita|25.00|25.00|-|true",
            "3|card|imported-unknown|16.00|16.00|2|true",
            "4|cash|admin|180.00|180.00|-|true",
            "5|cash|ghost|50.00|50.00|-|true",
        ]
    );
    let next: Vec<i64> = column(&db, "SELECT last_number FROM invoice_counter").await;
    assert_eq!(next, [5], "new sales continue after the highest number");
}

#[tokio::test]
async fn a_sqlite_file_becomes_a_pharmacy_whose_staff_log_in_with_their_old_passwords() {
    let a = Apotheca::migrated().await;
    let file = a.dir.path().join("pharmacy.sqlite3");
    make("sqlite", file.to_str().unwrap()).await;
    let from = format!("sqlite:{}", file.display());

    // A dry run reports everything and changes nothing.
    let dry = import(&a, &from, &["--dry-run"]).await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(count(&dry, "invoices", "written"), 5);
    assert!(a.tenants().await.is_empty(), "a dry run made a tenant");
    let schemas: Vec<i64> = column(
        &a.db.client().await,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'sunrise'",
    )
    .await;
    assert_eq!(schemas, [0]);

    let report = import(&a, &from, &[]).await;
    check_small(&a, &report).await;
    assert_eq!(a.tenants().await.len(), 1);

    // The same schema again is refused, and so is a taken domain: nothing changes.
    let again = refused(&a, &from, "sunrise", "x.localhost").await;
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let taken = refused(&a, &from, "other", "sunrise.localhost").await;
    assert!(
        taken.stderr.contains("sunrise.localhost"),
        "{}",
        taken.stderr
    );
    assert_eq!(a.tenants().await.len(), 1);
    let none: Vec<i64> = column(
        &a.db.client().await,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'other'",
    )
    .await;
    assert_eq!(none, [0]);

    // Staff log in through the proxy with the passwords they had in Django; the hash is then
    // Apotheca's own.
    let d = a.serve(&[]).await;
    let proxy = a.proxy(&d, &[]).await;
    for (user, password) in [
        ("admin", "admin-old-pass-1"),
        ("ram", "ram-old-pass-22"),
        ("sita", "sita-old-pass-333"),
    ] {
        let r = log_in(&proxy, user, password).await;
        assert_eq!(r.status, 200, "{user}: {}", r.text());
        if user == "admin" {
            // Past sales are there, marked imported, with the figures the app recorded.
            let cookie = r.headers["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            let headers = [("host", "sunrise.localhost"), ("cookie", cookie.as_str())];
            let api = proxy
                .request(Method::GET, "/api/v1/invoices/4", &headers, "")
                .await
                .unwrap();
            assert_eq!(api.status, 200, "{}", api.text());
            let invoice = api.json();
            assert_eq!(
                (invoice["imported"].as_bool(), invoice["total"].as_str()),
                (Some(true), Some("180.00"))
            );
            let page = proxy
                .request(Method::GET, "/invoices/4", &headers, "")
                .await
                .unwrap();
            assert_eq!(page.status, 200, "{}", page.text());
            assert!(page.text().contains(">imported</span>"), "{}", page.text());
            let medicines = proxy
                .request(Method::GET, "/api/v1/medicines?q=Paracetamol", &headers, "")
                .await
                .unwrap();
            assert!(
                medicines.text().contains("Paracetamol 500mg"),
                "{}",
                medicines.text()
            );
            // A unit returned from an imported line is worth its share of the total the line
            // recorded (200.00 for 2, not 2 × 120.00), scaled as every refund is by total ÷
            // subtotal (180 ÷ 200): 90.00, and it goes back on the shelf.
            let csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
            let line = invoice["lines"][0]["id"].as_i64().unwrap();
            let body = serde_json::json!({"reason": "unopened", "lines": [{"invoice_line_id": line, "quantity": 1}]});
            let returned = proxy
                .request(
                    Method::POST,
                    "/api/v1/invoices/4/returns",
                    &[
                        ("host", "sunrise.localhost"),
                        ("cookie", cookie.as_str()),
                        ("x-csrf-token", csrf.as_str()),
                        ("content-type", "application/json"),
                    ],
                    &body.to_string(),
                )
                .await
                .unwrap();
            assert_eq!(returned.status, 201, "{}", returned.text());
            let refunds: Vec<String> = column(
                &a.db.client().await,
                "SELECT refund::text FROM sunrise.returns",
            )
            .await;
            assert_eq!(refunds, ["90.00"]);
        }
    }
    // The inactive user and the unusable password stay out.
    for (user, password) in [("hari", "hari-old-pass-4444"), ("gopal", "anything-at-all")] {
        let r = log_in(&proxy, user, password).await;
        assert_eq!(r.status, 401, "{user}: {}", r.text());
    }
    let db = a.db.client().await;
    let hashes: Vec<String> = column(
        &db,
        "SELECT left(password_hash, 10) FROM sunrise.users WHERE username IN ('admin', 'ram', 'sita') ORDER BY id",
    )
    .await;
    assert_eq!(hashes, ["$argon2id$"; 3]);
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn a_utf16_dumpdata_json_imports_the_same_as_the_database() {
    let a = Apotheca::migrated().await;
    let file = a.dir.path().join("dump.json");
    make("dumpdata", file.to_str().unwrap()).await;
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(
        bytes[..2],
        [0xFF, 0xFE],
        "PowerShell's UTF-16 LE with a byte-order mark"
    );
    let report = import(&a, &format!("dumpdata:{}", file.display()), &[]).await;
    check_small(&a, &report).await;
}

#[tokio::test]
async fn a_postgresql_database_of_the_app_imports_the_same() {
    let a = Apotheca::migrated().await;
    let source = TestDb::empty().await;
    make("postgres", &source.url()).await;
    let report = import(&a, &source.url(), &[]).await;
    check_small(&a, &report).await;
    // The source is read, never written.
    let rows: Vec<i64> = column(
        &source.client().await,
        "SELECT count(*) FROM billing_invoice",
    )
    .await;
    assert_eq!(rows, [5]);
}

#[tokio::test]
async fn sources_that_cannot_be_read_are_refused_clearly() {
    let a = Apotheca::migrated().await;
    let missing = a.dir.path().join("nothing.sqlite3");
    let run = refused(
        &a,
        &format!("sqlite:{}", missing.display()),
        "x",
        "x.localhost",
    )
    .await;
    assert!(run.stderr.contains("no such file"), "{}", run.stderr);
    let junk = a.dir.path().join("junk.sqlite3");
    std::fs::write(&junk, "this is not a database").unwrap();
    let run = refused(
        &a,
        &format!("sqlite:{}", junk.display()),
        "x",
        "x.localhost",
    )
    .await;
    assert!(
        run.stderr.contains("not a SQLite database"),
        "{}",
        run.stderr
    );
    let json = a.dir.path().join("bad.json");
    std::fs::write(&json, "{\"not\": \"a list\"}").unwrap();
    let run = refused(
        &a,
        &format!("dumpdata:{}", json.display()),
        "x",
        "x.localhost",
    )
    .await;
    assert!(run.stderr.contains("not a JSON list"), "{}", run.stderr);
    let run = refused(&a, "mysql://x", "x", "x.localhost").await;
    assert!(run.stderr.contains("sqlite:PATH"), "{}", run.stderr);
    assert!(a.tenants().await.is_empty());
}

/// A django-tenants database (on the test cluster) with its three pharmacies, and one tenant
/// row whose schema holds nothing.
async fn django_tenants() -> TestDb {
    let source = TestDb::empty().await;
    make("tenants", &source.url()).await;
    source
        .client()
        .await
        .batch_execute(
            "INSERT INTO public.tenants_client (schema_name, name, created_on, is_active)
                 VALUES ('ghost', 'Ghost Pharmacy', current_date, true);
             INSERT INTO public.tenants_domain (domain, tenant_id, is_primary)
                 SELECT 'ghost.pharmacies.test', id, true FROM public.tenants_client
                 WHERE schema_name = 'ghost';",
        )
        .await
        .unwrap();
    source
}

#[tokio::test]
async fn every_pharmacy_of_a_django_tenants_database_is_imported_with_its_domains() {
    let a = Apotheca::migrated().await;
    let source = django_tenants().await;
    let url = source.url();
    let import = |extra: &'static [&'static str]| {
        let mut args = vec!["import", "django-tenants", "--from", url.as_str(), "--json"];
        args.extend_from_slice(extra);
        args
    };

    // A dry run: every pharmacy's report, nothing made.
    let run = a.fails(&import(&["--dry-run"]), 1).await;
    let dry: Value = serde_json::from_str(&run.stdout).expect("the summary as JSON");
    assert_eq!(
        (dry["imported"].as_u64(), dry["failed"].as_u64()),
        (Some(3), Some(1))
    );
    assert!(a.tenants().await.is_empty(), "a dry run made tenants");

    // --only, two at once.
    let only: Value = serde_json::from_str(
        &a.ok(&import(&[
            "--only", "sunrise", "--only", "closed", "--jobs", "2",
        ]))
        .await,
    )
    .unwrap();
    assert_eq!(only["imported"], 2, "{only:#}");

    // All: the two already there are skipped, the third imported, the empty one failed.
    let run = a.fails(&import(&[]), 1).await;
    assert!(
        run.stderr.contains("1 of 4 pharmacies failed"),
        "{}",
        run.stderr
    );
    let all: Value = serde_json::from_str(&run.stdout).unwrap();
    let results: Vec<(String, String)> = all["pharmacies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["schema"].as_str().unwrap().to_owned(),
                p["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("closed".into(), "skipped".into()),
            ("ghost".into(), "failed".into()),
            ("moonlight".into(), "imported".into()),
            ("sunrise".into(), "skipped".into()),
        ]
    );
    let moonlight = &all["pharmacies"][2]["report"];
    assert_eq!(
        moonlight["missing_tables"],
        serde_json::json!(["pharmacy_company"])
    );
    assert_eq!(count(moonlight, "invoices", "written"), 5);

    // The tenants: names, domains (the primary first), an inactive one suspended.
    let tenants = a.tenants().await;
    let summary: Vec<(String, String, Vec<String>)> = tenants
        .iter()
        .map(|t| {
            (
                t["schema"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
                t["domains"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "closed".into(),
                "suspended".into(),
                vec!["closed.pharmacies.test".to_owned()]
            ),
            (
                "moonlight".into(),
                "active".into(),
                vec!["moonlight.pharmacies.test".to_owned()]
            ),
            (
                "sunrise".into(),
                "active".into(),
                vec![
                    "sunrise.pharmacies.test".to_owned(),
                    "www.sunrise.test".to_owned()
                ]
            ),
        ]
    );
    // Moonlight had no company table: its company is its name.
    let db = a.db.client().await;
    let company: Vec<String> = column(&db, "SELECT name FROM moonlight.company").await;
    assert_eq!(company, ["Moonlight Chemists"]);
    for schema in ["closed", "moonlight", "sunrise"] {
        let books: Vec<i64> = column(
            &db,
            &format!(
                "SELECT (SELECT count(*) FROM {schema}.batches b WHERE b.quantity_on_hand <>
                            (SELECT coalesce(sum(m.quantity), 0) FROM {schema}.stock_movements m WHERE m.batch_id = b.id))
                      + (SELECT count(*) FROM {schema}.invoice_lines l WHERE l.quantity <>
                            (SELECT coalesce(sum(x.quantity), 0) FROM {schema}.invoice_line_batches x WHERE x.invoice_line_id = l.id))"
            ),
        )
        .await;
        assert_eq!(books, [0], "{schema}");
    }
    // The failed one left nothing.
    assert_eq!(a.traces_of("ghost").await, (false, false, 0));
}

/// One browser on the public site through the proxy, with its cookies.
struct Browser<'a> {
    proxy: &'a apotheca_testkit::system::proxy::Proxy,
    cookies: Vec<String>,
}

impl Browser<'_> {
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> apotheca_testkit::system::proxy::Reply {
        let cookie = self.cookies.join("; ");
        let mut headers = vec![("host", "localhost"), ("cookie", cookie.as_str())];
        if let Some(t) = content_type {
            headers.push(("content-type", t));
        }
        let r = self
            .proxy
            .request(method, path, &headers, body)
            .await
            .unwrap();
        for v in r.headers.get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap().to_owned();
            let name = pair.split('=').next().unwrap().to_owned();
            self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            self.cookies.push(pair);
        }
        r
    }

    async fn get(&mut self, path: &str) -> apotheca_testkit::system::proxy::Reply {
        self.send(Method::GET, path, None, b"").await
    }

    async fn post(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> apotheca_testkit::system::proxy::Reply {
        let body = apotheca_testkit::system::site::encode(fields);
        let form = "application/x-www-form-urlencoded";
        self.send(Method::POST, path, Some(form), body.as_bytes())
            .await
    }

    /// The import form sent with `file` as the upload, after the page's CSRF token.
    async fn upload(
        &mut self,
        schema: &str,
        domain: &str,
        file: (&str, &[u8]),
    ) -> apotheca_testkit::system::proxy::Reply {
        let page = self.get("/operator/imports/new").await;
        assert_eq!(page.status, 200, "{}", page.text());
        let csrf = csrf(&page.text());
        let boundary = "----apotheca-test-boundary";
        let mut body = Vec::new();
        for (name, value) in [
            ("csrf_token", csrf.as_str()),
            ("schema", schema),
            ("domain", domain),
            ("name", ""),
        ] {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n", file.0).as_bytes(),
        );
        body.extend_from_slice(file.1);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ctype = format!("multipart/form-data; boundary={boundary}");
        self.send(Method::POST, "/operator/imports", Some(&ctype), &body)
            .await
    }
}

fn csrf(html: &str) -> String {
    let key = "name=\"csrf_token\" value=\"";
    let at = html
        .find(key)
        .unwrap_or_else(|| panic!("no csrf_token in {html}"));
    let rest = &html[at + key.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Files the daemon keeps for uploads waiting for their confirmation.
fn kept_uploads(a: &Apotheca) -> usize {
    std::fs::read_dir(a.dir.path().join("imports")).map_or(0, |d| d.count())
}

#[tokio::test]
async fn an_operator_uploads_a_pharmacy_reads_the_report_and_imports_it_from_the_console() {
    let a = Apotheca::migrated().await;
    a.create_operator("ops", "correct horse battery").await;
    let file = a.dir.path().join("pharmacy.sqlite3");
    make("sqlite", file.to_str().unwrap()).await;
    let sqlite = std::fs::read(&file).unwrap();
    // Control takes files up to 4 MiB here; the proxy, its default 64 MiB.
    let d = a
        .serve(&[("APOTHECA_CONTROL__IMPORT_MAX_BYTES", "4194304")])
        .await;
    let proxy = a.proxy(&d, &[]).await;
    let mut b = Browser {
        proxy: &proxy,
        cookies: Vec::new(),
    };
    let login = b.get("/operator/login").await;
    let token = csrf(&login.text());
    let fields = [
        ("csrf_token", token.as_str()),
        ("username", "ops"),
        ("password", "correct horse battery"),
    ];
    assert_eq!(b.post("/operator/login", &fields).await.status, 303);

    // The upload: a dry run, nothing made, its report on the next page.
    let sent = b
        .upload(
            "sunrise",
            "sunrise.localhost",
            ("pharmacy.sqlite3", &sqlite),
        )
        .await;
    assert_eq!(sent.status, 303, "{}", sent.text());
    let at = sent.header("location").unwrap().to_owned();
    let upload = at.strip_prefix("/operator/imports/").unwrap().to_owned();
    assert!(a.tenants().await.is_empty(), "the check made a tenant");
    assert_eq!(kept_uploads(&a), 2, "the file and what it is for");
    let page = b.get(&at).await;
    let html = page.text();
    assert_eq!(page.status, 200, "{html}");
    for shown in [
        "Import Sunrise Pharmacy?",
        "pharmacy.sqlite3",
        "<th scope=\"row\">invoices</th><td class=\"num\">5</td>",
        "billing_invoice",
    ] {
        assert!(html.contains(shown), "{shown}: {html}");
    }
    // The whole report, to download.
    let json = b.get(&format!("{at}/report.json")).await;
    assert_eq!(json.status, 200, "{}", json.text());
    assert_eq!(
        json.header("content-disposition"),
        Some("attachment; filename=\"import-sunrise-dry-run.json\"")
    );
    assert_eq!(count(&json.json(), "invoices", "written"), 5);
    // The same report as the CLI's (control's API, with the operator's session).
    let session = b
        .cookies
        .iter()
        .find_map(|c| c.strip_prefix("apotheca_operator="))
        .unwrap()
        .to_owned();
    let (status, pending) = apotheca_testkit::system::site::api(
        &d,
        Method::GET,
        &format!("/v1/console/imports/{upload}"),
        Some(&session),
        "",
    )
    .await;
    assert_eq!(status, 200, "{pending}");

    // Confirmed: the pharmacy is there, every rule of the import held, its staff log in
    // with their old passwords, and the file is gone.
    let csrf_now = csrf(&html);
    let done = b.post(&at, &[("csrf_token", &csrf_now)]).await;
    assert_eq!(done.status, 303, "{}", done.text());
    assert_eq!(
        done.header("location"),
        Some("/operator/tenants/sunrise?notice=imported")
    );
    check_small(&a, &pending["report"]).await;
    assert_eq!(kept_uploads(&a), 0);
    let r = log_in(&proxy, "ram", "ram-old-pass-22").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Confirming twice does nothing more.
    let again = b.post(&at, &[("csrf_token", &csrf_now)]).await;
    assert_eq!(again.status, 404, "{}", again.text());

    // Refused: the schema taken, a file that is no pharmacy, one over control's limit; each
    // with its message next to its field, and nothing kept.
    let taken = b
        .upload(
            "sunrise",
            "elsewhere.localhost",
            ("pharmacy.sqlite3", &sqlite),
        )
        .await;
    assert_eq!(taken.status, 409, "{}", taken.text());
    assert!(taken.text().contains("id=\"e-schema\""), "{}", taken.text());
    let junk = b
        .upload(
            "other",
            "other.localhost",
            ("notes.json", b"{\"not\": \"a list\"}"),
        )
        .await;
    assert_eq!(junk.status, 422, "{}", junk.text());
    assert!(junk.text().contains("id=\"e-file\""), "{}", junk.text());
    assert!(
        junk.text().contains("notes.json is not a pharmacy"),
        "{}",
        junk.text()
    );
    let big = vec![b'x'; 5 * 1024 * 1024];
    let over = b
        .upload("other", "other.localhost", ("big.sqlite3", &big))
        .await;
    assert_eq!(over.status, 413, "{}", over.text());
    assert!(over.text().contains("larger than 4 MiB"), "{}", over.text());
    assert_eq!(kept_uploads(&a), 0);
    assert_eq!(a.tenants().await.len(), 1);

    // Another operator sees, confirms and cancels nothing of it; its owner cancels it: the
    // file goes, nothing is made.
    let sent = b
        .upload("other", "other.localhost", ("pharmacy.sqlite3", &sqlite))
        .await;
    assert_eq!(sent.status, 303, "{}", sent.text());
    let at = sent.header("location").unwrap().to_owned();
    let other = at.strip_prefix("/operator/imports/").unwrap().to_owned();
    a.create_operator("ops2", "another horse battery").await;
    let login =
        r#"{"username": "ops2", "password": "another horse battery", "address": "192.0.2.3"}"#;
    let (status, body) =
        apotheca_testkit::system::site::api(&d, Method::POST, "/v1/operators/login", None, login)
            .await;
    assert_eq!(status, 200, "{body}");
    let stranger = body["token"].as_str().unwrap().to_owned();
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let path = format!("/v1/console/imports/{other}");
        let (status, body) =
            apotheca_testkit::system::site::api(&d, method.clone(), &path, Some(&stranger), "")
                .await;
        assert_eq!(status, 404, "{method}: {body}");
    }
    let page = b.get(&at).await;
    let cancel = b
        .post(
            &format!("{at}/cancel"),
            &[("csrf_token", &csrf(&page.text()))],
        )
        .await;
    assert_eq!(cancel.status, 303, "{}", cancel.text());
    assert_eq!(kept_uploads(&a), 0);
    assert_eq!(a.tenants().await.len(), 1);
    // Cancelled already: an error page, not a second "cancelled".
    let twice = b
        .post(
            &format!("{at}/cancel"),
            &[("csrf_token", &csrf(&page.text()))],
        )
        .await;
    assert_eq!(twice.status, 404, "{}", twice.text());

    // Two confirmations at once (a double click): one imports, the other finds it gone.
    let sent = b
        .upload("third", "third.localhost", ("pharmacy.sqlite3", &sqlite))
        .await;
    assert_eq!(sent.status, 303, "{}", sent.text());
    let third = sent
        .header("location")
        .unwrap()
        .replace("/operator/imports/", "/v1/console/imports/");
    let confirm =
        || apotheca_testkit::system::site::api(&d, Method::POST, &third, Some(&session), "");
    let (one, two) = tokio::join!(confirm(), confirm());
    let mut statuses = [one.0, two.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 404], "{} / {}", one.1, two.1);
    assert_eq!(a.tenants().await.len(), 2);
    assert_eq!(kept_uploads(&a), 0);

    // The proxy bounds the upload itself (`max_upload_bytes`), other requests' bodies stay
    // at `max_body_bytes`.
    let strict = a
        .proxy(
            &d,
            &[("max_upload_bytes", "1000"), ("max_body_bytes", "100")],
        )
        .await;
    let mut s = Browser {
        proxy: &strict,
        cookies: b.cookies.clone(),
    };
    let refused = s
        .upload("other", "other.localhost", ("pharmacy.sqlite3", &sqlite))
        .await;
    assert_eq!(refused.status, 413, "{}", refused.text());
    let small = s
        .upload("other", "other.localhost", ("small.json", b"[]"))
        .await;
    assert_eq!(small.status, 422, "passed the proxy: {}", small.text());
    assert_eq!(kept_uploads(&a), 0);
    assert!(d.stop().await.success());
}
