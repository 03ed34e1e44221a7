//! The operator console's "Import a pharmacy" on the daemon's API: an operator uploads one
//! pharmacy's SQLite file or `dumpdata` JSON, sees the dry run's report, then confirms (or
//! cancels). Both runs are [`crate::import::pharmacy_app`], the code of
//! `apotheca import pharmacy-app`.
//!
//! - `POST /v1/console/imports?schema=S&domain=D[&name=N][&filename=F]`, the file as the body:
//!   the file is kept as `<state_dir>/imports/<token>.upload` (at most
//!   `[control] import_max_bytes`, else 413 and nothing kept), its kind told by its first
//!   bytes, and imported as a dry run. 200 `{token, schema, domain, name, filename, bytes,
//!   report}`; a schema or domain taken is a 409, a file that cannot be read (or data the
//!   tenant schema refuses) or a name refused a 422, each naming its `field`, and nothing is
//!   kept.
//! - `GET /v1/console/imports/{token}`: the same answer again.
//! - `POST /v1/console/imports/{token}`: the real import. 201 `{schema, domain, name,
//!   login_url, report}`; the file is removed.
//! - `DELETE /v1/console/imports/{token}`: the file is removed.
//!
//! Only the operator who uploaded a file sees, confirms or cancels it, once: confirming or
//! cancelling first claims the upload (its `<token>.json` renamed, which only one request
//! can do). The files are the operator's pharmacy (password hashes, customers): readable by
//! control's user only. An upload nobody confirmed is gone an hour later (refused from then
//! on, removed at the next upload).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use apotheca_common::names::{DomainName, NameError, SchemaName};
use apotheca_import::{Location, SourceError};
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::api::{Api, ApiError};
use super::operator_api::Operator;
use super::signup::capitalized;
use crate::import::{self, PharmacyApp};
use crate::ControlError;
use apotheca_tenancy::tenants::{self, Provisioner};

/// An upload nobody confirmed is removed after this.
const KEPT: Duration = Duration::from_secs(3600);
/// The first bytes of every SQLite 3 database.
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// Where uploads wait for their confirmation, and how big they may be.
pub struct Imports {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

pub fn router() -> Router<Api> {
    Router::new()
        .route("/v1/console/imports", post(upload))
        .route(
            "/v1/console/imports/{token}",
            get(show).post(confirm).delete(cancel),
        )
}

/// What an upload is for, kept beside it until it is confirmed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    /// The operator who uploaded it: only they confirm or cancel it.
    operator_id: i64,
    schema: String,
    domain: String,
    /// Empty: the company's name in the file.
    name: String,
    filename: String,
    bytes: u64,
    /// The dry run's: the tenant's name and the report.
    checked_name: String,
    report: Value,
}

impl Pending {
    /// The upload and its dry run's report, as the API gives them.
    fn shown(&self, token: &str) -> Value {
        json!({
            "token": token,
            "schema": self.schema,
            "domain": self.domain,
            "name": self.checked_name,
            "filename": self.filename,
            "bytes": self.bytes,
            "report": self.report,
        })
    }
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    schema: String,
    domain: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    filename: String,
}

/// Every field's refusal at once, so the form shows them all.
fn check(q: &UploadQuery) -> Result<(SchemaName, DomainName, Option<String>), ApiError> {
    let mut wrong: Vec<(&'static str, String)> = Vec::new();
    let schema = SchemaName::parse(q.schema.trim())
        .map_err(|e| wrong.push(("schema", capitalized(&e.to_string()))))
        .ok();
    let domain = DomainName::parse(q.domain.trim())
        .map_err(|e| wrong.push(("domain", capitalized(&e.to_string()))))
        .ok();
    let name = match q.name.trim() {
        "" => None,
        raw => tenants::parse_display_name(raw)
            .map_err(|e| wrong.push(("name", capitalized(&e.to_string()))))
            .ok(),
    };
    ApiError::fields(wrong)?;
    match (schema, domain) {
        (Some(s), Some(d)) => Ok((s, d, name)),
        _ => Err(ApiError::invalid("schema", "Invalid.")),
    }
}

fn too_large(max: u64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "The file is larger than {} MiB, the most the console takes ([control] import_max_bytes); import it with `apotheca import pharmacy-app` on the host.",
            max.div_ceil(1024 * 1024)
        ),
    );
    e.field = Some("file");
    e
}

fn io_failed(e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, "console import: keeping the upload failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "storage",
        "The upload could not be kept on the server; see control's log.",
    )
}

/// A 32-hex-digit token, nothing else (it names files).
fn valid_token(raw: &str) -> bool {
    raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The files of an upload: the file, what it is for (until claimed), and that once claimed.
struct Files {
    file: PathBuf,
    pending: PathBuf,
    claimed: PathBuf,
}

fn files(dir: &Path, token: &str) -> Files {
    Files {
        file: dir.join(format!("{token}.upload")),
        pending: dir.join(format!("{token}.json")),
        claimed: dir.join(format!("{token}.claimed")),
    }
}

async fn remove(dir: &Path, token: &str) {
    let f = files(dir, token);
    for path in [f.file, f.pending, f.claimed] {
        let _ = tokio::fs::remove_file(path).await;
    }
}

fn age(meta: &std::fs::Metadata) -> Duration {
    meta.modified()
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default()
}

/// Removes the uploads older than [`KEPT`], each token's files together (judged by what it
/// is for; a file without that, by its own age).
async fn sweep(dir: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        let Some(token) = path.file_stem().and_then(|t| t.to_str()) else {
            continue;
        };
        let pending = files(dir, token).pending;
        let judged = if pending.exists() { &pending } else { &path };
        let old = tokio::fs::metadata(judged)
            .await
            .is_ok_and(|m| age(&m) > KEPT);
        if old && valid_token(token) {
            tracing::info!(%token, "console import: an unconfirmed upload removed");
            remove(dir, token).await;
        }
    }
}

/// A new file only control's user can read.
async fn create_private(path: &Path) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
}

/// Writes the body to `path`, at most `max` bytes: its length, or why not (a body over `max`
/// read to its end, up to as much again, before the refusal is answered).
async fn keep(body: Body, path: &Path, max: u64) -> Result<u64, ApiError> {
    let mut file = create_private(path).await.map_err(io_failed)?;
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "upload_broken",
                format!("The upload broke off: {e}"),
            )
        })?;
        written += chunk.len() as u64;
        if written > max {
            drop(file);
            // The rest is read and dropped (as much again at most), so that the sender, who
            // is still writing it, reads this answer rather than a connection reset.
            let mut rest = 0u64;
            while let Some(Ok(chunk)) = stream.next().await {
                rest += chunk.len() as u64;
                if rest > max {
                    break;
                }
            }
            return Err(too_large(max));
        }
        file.write_all(&chunk).await.map_err(io_failed)?;
    }
    file.flush().await.map_err(io_failed)?;
    Ok(written)
}

/// The source the file is, by its first bytes: a SQLite database or a dumpdata JSON.
async fn location(path: &Path) -> Result<Location, ApiError> {
    let mut head = [0u8; 16];
    let mut file = tokio::fs::File::open(path).await.map_err(io_failed)?;
    let n = tokio::io::AsyncReadExt::read(&mut file, &mut head)
        .await
        .map_err(io_failed)?;
    Ok(if head[..n] == *SQLITE_MAGIC {
        Location::Sqlite(path.to_owned())
    } else {
        Location::Dumpdata(path.to_owned())
    })
}

/// An import's failure as the console shows it: the file (by the name it was uploaded
/// with, not where it is kept), or the field, at fault.
fn failed(e: ControlError, file: &Path, filename: &str) -> ApiError {
    match e {
        ControlError::Source(SourceError::Io { source, .. }) => io_failed(source),
        ControlError::Source(e) => {
            let message = match e {
                SourceError::Invalid(m) => m,
                other => other.to_string(),
            };
            let kept = file.display().to_string();
            let message = message
                .replace(&format!("sqlite:{kept}"), filename)
                .replace(&format!("dumpdata:{kept}"), filename)
                .replace(&kept, filename);
            ApiError::invalid(
                "file",
                format!(
                    "{filename} is not a pharmacy's SQLite database or dumpdata JSON that can be read: {message}"
                ),
            )
        }
        ControlError::Tenancy(e) if e.is_bad_input() => {
            // The provisioning's refusals say what they are about first.
            let message = e.to_string();
            let field = if message.starts_with("domain ") {
                "domain"
            } else if message.starts_with("the tenant name") {
                "name"
            } else {
                "schema"
            };
            let mut e = ApiError::invalid(field, capitalized(&message));
            if message.contains(" already ") {
                (e.status, e.code) = (StatusCode::CONFLICT, "taken");
            }
            e
        }
        ControlError::Invalid(m) => ApiError::invalid("file", capitalized(&m)),
        // A value of the file the tenant schema refuses: the same every time.
        ControlError::Db(e) if data_refused(&e) => ApiError::invalid(
            "file",
            format!(
                "{filename} holds data the pharmacy's tables refuse: {}",
                crate::error::db_message(&e)
            ),
        ),
        other => ApiError::database(other),
    }
}

/// A data exception (SQLSTATE class 22) or an integrity violation (23).
fn data_refused(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

/// Runs [`import::pharmacy_app`] on a kept upload.
async fn run(
    api: &Api,
    file: &Path,
    pending: &Pending,
    dry_run: bool,
) -> Result<import::Imported, ApiError> {
    let invalid = |field| move |e: NameError| ApiError::invalid(field, capitalized(&e.to_string()));
    let schema = SchemaName::parse(&pending.schema).map_err(invalid("schema"))?;
    let domain = DomainName::parse(&pending.domain).map_err(invalid("domain"))?;
    let from = location(file).await?;
    let s = &api.signup;
    let _turn = s.running.acquire().await.map_err(ApiError::database)?;
    let mut client = s.db.connect().await.map_err(ApiError::database)?;
    let provisioner = Provisioner {
        db: &s.db,
        secret: &s.secret,
        migrations: &s.migrations,
        role_limits: &s.role_limits,
    };
    let job = PharmacyApp {
        from: &from,
        schema: &schema,
        domain: &domain,
        name: (!pending.name.is_empty()).then_some(pending.name.as_str()),
        dry_run,
    };
    import::pharmacy_app(&provisioner, &mut client, &job)
        .await
        .map_err(|e| failed(e, file, &pending.filename))
}

/// Refuses a schema or domain in use already, each on its own field.
async fn taken(api: &Api, schema: &SchemaName, domain: &DomainName) -> Result<(), ApiError> {
    let client = api.signup.db.connect().await.map_err(ApiError::database)?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)
                 OR EXISTS (SELECT 1 FROM public.tenants WHERE schema_name = $1),
                    EXISTS (SELECT 1 FROM public.domains WHERE domain = $2)",
            &[&schema.as_str(), &domain.as_str()],
        )
        .await
        .map_err(ApiError::database)?;
    let mut wrong: Vec<(&'static str, String)> = Vec::new();
    if row.get::<_, bool>(0) {
        wrong.push(("schema", format!("Schema {schema} is taken already.")));
    }
    if row.get::<_, bool>(1) {
        wrong.push((
            "domain",
            format!("Domain {domain} is used by a tenant already."),
        ));
    }
    ApiError::fields(wrong).map_err(|mut e| {
        (e.status, e.code) = (StatusCode::CONFLICT, "taken");
        e
    })
}

async fn upload(
    State(api): State<Api>,
    who: Operator,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (schema, domain, name) = check(&q)?;
    let max = api.imports.max_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    taken(&api, &schema, &domain).await?;
    let dir = &api.imports.dir;
    tokio::fs::create_dir_all(dir).await.map_err(io_failed)?;
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .await
        .map_err(io_failed)?;
    sweep(dir).await;
    let token = format!("{:032x}", rand::random::<u128>());
    let Files {
        file,
        pending: pending_path,
        ..
    } = files(dir, &token);
    let bytes = match keep(body, &file, max).await {
        Ok(0) => {
            remove(dir, &token).await;
            return Err(ApiError::invalid("file", "The file is empty."));
        }
        Ok(n) => n,
        Err(e) => {
            remove(dir, &token).await;
            return Err(e);
        }
    };
    let filename = match q.filename.trim() {
        "" => "The file".to_owned(),
        f => f.chars().take(200).collect(),
    };
    let mut pending = Pending {
        operator_id: who.operator.id,
        schema: schema.to_string(),
        domain: domain.to_string(),
        name: name.unwrap_or_default(),
        filename,
        bytes,
        checked_name: String::new(),
        report: Value::Null,
    };
    let dry = match run(&api, &file, &pending, true).await {
        Ok(dry) => dry,
        Err(e) => {
            remove(dir, &token).await;
            return Err(e);
        }
    };
    pending.checked_name = dry.name;
    pending.report = json!(dry.report);
    let kept = serde_json::to_vec(&pending).map_err(|e| io_failed(std::io::Error::other(e)))?;
    let written = async {
        let mut f = create_private(&pending_path).await?;
        f.write_all(&kept).await?;
        f.flush().await
    };
    if let Err(e) = written.await {
        remove(dir, &token).await;
        return Err(io_failed(e));
    }
    tracing::info!(operator = %who.operator.username, %schema, bytes, "console: import checked (dry run)");
    Ok(Json(pending.shown(&token)))
}

async fn show(
    State(api): State<Api>,
    who: Operator,
    UrlPath(token): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(pending(&api, &who, &token).await?.shown(&token)))
}

fn gone() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_import",
        "There is no such upload: it was imported or cancelled (or is being), or left unconfirmed for an hour. Upload the file again if you need to.",
    )
}

/// The upload `token` names, if the operator `who` made it and it is not over an hour old.
async fn pending(api: &Api, who: &Operator, token: &str) -> Result<Pending, ApiError> {
    if !valid_token(token) {
        return Err(gone());
    }
    let dir = &api.imports.dir;
    let path = files(dir, token).pending;
    let meta = tokio::fs::metadata(&path).await.map_err(|_| gone())?;
    if age(&meta) > KEPT {
        remove(dir, token).await;
        return Err(gone());
    }
    let raw = tokio::fs::read(&path).await.map_err(|_| gone())?;
    let pending: Pending = serde_json::from_slice(&raw).map_err(|_| gone())?;
    if pending.operator_id != who.operator.id {
        return Err(gone());
    }
    Ok(pending)
}

/// Takes the upload for this request alone: a second confirmation, or a cancel meanwhile,
/// finds it gone.
async fn claim(api: &Api, who: &Operator, token: &str) -> Result<Pending, ApiError> {
    let pending = pending(api, who, token).await?;
    let f = files(&api.imports.dir, token);
    tokio::fs::rename(&f.pending, &f.claimed)
        .await
        .map_err(|_| gone())?;
    Ok(pending)
}

async fn confirm(
    State(api): State<Api>,
    who: Operator,
    UrlPath(token): UrlPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let pending = claim(&api, &who, &token).await?;
    let dir = &api.imports.dir;
    let f = files(dir, &token);
    let imported = match run(&api, &f.file, &pending, false).await {
        Ok(imported) => imported,
        Err(e) => {
            // Refused input will be refused again: the upload goes. A failing database
            // leaves it to be confirmed again.
            if e.status == StatusCode::SERVICE_UNAVAILABLE {
                let _ = tokio::fs::rename(&f.claimed, &f.pending).await;
            } else {
                remove(dir, &token).await;
            }
            return Err(e);
        }
    };
    remove(dir, &token).await;
    tracing::info!(operator = %who.operator.username, schema = %pending.schema, domain = %pending.domain, "console: pharmacy imported");
    let base = api.signup.tenant_url.replace("{domain}", &pending.domain);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "schema": pending.schema,
            "domain": pending.domain,
            "name": imported.name,
            "login_url": format!("{}/login", base.trim_end_matches('/')),
            "report": imported.report,
        })),
    ))
}

async fn cancel(
    State(api): State<Api>,
    who: Operator,
    UrlPath(token): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let pending = claim(&api, &who, &token).await?;
    remove(&api.imports.dir, &token).await;
    Ok(Json(json!({"schema": pending.schema, "cancelled": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_files_only() {
        assert!(valid_token(&"a".repeat(32)));
        assert!(!valid_token("../../etc/passwd"));
        assert!(!valid_token(&"a".repeat(31)));
        assert!(!valid_token(&format!("{}/", "a".repeat(31))));
    }

    #[test]
    fn every_field_is_checked_at_once() {
        let q = UploadQuery {
            schema: "Bad Schema".into(),
            domain: "no domain".into(),
            name: String::new(),
            filename: String::new(),
        };
        let e = check(&q).unwrap_err();
        assert_eq!(e.fields.len(), 2, "{:?}", e.fields);
        let q = UploadQuery {
            schema: "city".into(),
            domain: "city.example.com".into(),
            name: "  City Pharmacy ".into(),
            filename: String::new(),
        };
        let (s, d, n) = check(&q).unwrap();
        assert_eq!(
            (s.as_str(), d.as_str(), n.as_deref()),
            ("city", "city.example.com", Some("City Pharmacy"))
        );
    }
}
