//! The console's "Import a pharmacy": the operator uploads one pharmacy's SQLite file or
//! `dumpdata` JSON of the Django app with the schema and domain it is to have, reads the dry
//! run's report (every count and anomaly), then imports it or cancels. Control does the work
//! (`/v1/console/imports`, the code of `apotheca import pharmacy-app`); the file is streamed
//! to it as it arrives, never held whole here.

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::multipart::Field;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use super::tenants::{read, refused, Frame};
use super::{answered, ask, ask_within, control};
use super::{ConsoleError, ConsoleResult, NoticeQuery, Operator, OperatorForm};
use apotheca_web::error::{render, see_other, PageError};
use apotheca_web::form::{FormState, CSRF_FIELD};
use futures::SinkExt;

use crate::SiteState;
use apotheca_common::names::percent_encode as encode;
use apotheca_pharmacy::accounts::same_secret;
use apotheca_protocol::api::PendingImport;
use apotheca_protocol::client::Answer;

/// The form's fields, each with what to say when it is missing; the file comes last.
const FIELDS: [(&str, &str); 2] = [
    ("schema", "Give the schema name."),
    ("domain", "Give its domain."),
];
/// A text field of the form is at most this long.
const TEXT_MAX: usize = 1000;
/// The report page lists this many anomalies; all of them are in the report's download.
const ANOMALIES_SHOWN: usize = 500;
/// Reading and checking a big pharmacy takes seconds; an upload over a slow link, minutes.
const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

pub fn routes() -> Router<SiteState> {
    Router::new()
        .route("/operator/imports/new", get(new_form))
        // The proxy and control bound the upload (`max_upload_bytes`, `import_max_bytes`);
        // it is streamed on, never held here.
        .route(
            "/operator/imports",
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/operator/imports/{token}", get(show).post(confirm))
        .route("/operator/imports/{token}/report.json", get(download))
        .route("/operator/imports/{token}/cancel", post(cancel))
}

#[derive(Template)]
#[template(path = "console/import.html")]
struct UploadPage {
    frame: Frame,
    form: FormState,
}

async fn upload_page(
    state: &SiteState,
    who: &Operator,
    form: FormState,
    status: StatusCode,
    notice: Option<&str>,
) -> ConsoleResult {
    let a = ask(state, Some(who), Method::GET, "/v1/operators/me", None).await?;
    let operator: String = read(&a, "username")?;
    let page = UploadPage {
        frame: Frame::new(who, &operator, "import", notice),
        form,
    };
    Ok(render(status, &page)?)
}

async fn new_form(
    State(state): State<SiteState>,
    who: Operator,
    Query(q): Query<NoticeQuery>,
) -> ConsoleResult {
    let notice = q.notice.as_deref();
    upload_page(&state, &who, FormState::default(), StatusCode::OK, notice).await
}

fn unreadable(e: impl std::fmt::Display) -> ConsoleError {
    ConsoleError::Page(
        StatusCode::BAD_REQUEST,
        format!("The form could not be read: {e}"),
    )
}

/// Sends the upload's file on to control as it arrives, with the form's other fields.
async fn send(
    state: &SiteState,
    who: &Operator,
    form: &FormState,
    mut field: Field<'_>,
) -> ConsoleResult<Answer> {
    let client = control(state)?.with_timeout(UPLOAD_TIMEOUT);
    let filename = field.file_name().unwrap_or_default().to_owned();
    let path = format!(
        "/v1/console/imports?schema={}&domain={}&name={}&filename={}",
        encode(form.v("schema").trim()),
        encode(form.v("domain").trim()),
        encode(form.v("name").trim()),
        encode(&filename),
    );
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let call = client.send(
        Method::POST,
        &path,
        Some(&who.token),
        "application/octet-stream",
        Body::from_stream(rx),
    );
    // The file's pieces go into the body while control reads it; a broken upload ends the
    // body with an error, so control keeps nothing.
    let pump = async move {
        loop {
            let next = match field.chunk().await {
                Ok(Some(bytes)) => Ok(bytes),
                Ok(None) => break,
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let failed = next.is_err();
            if tx.send(next).await.is_err() || failed {
                break;
            }
        }
    };
    let (answer, ()) = tokio::join!(call, pump);
    answered(answer, true, &path)
}

/// A text field of the form, at most [`TEXT_MAX`] bytes read.
async fn text(mut field: Field<'_>) -> ConsoleResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
        if bytes.len() + chunk.len() > TEXT_MAX {
            return Err(unreadable("a field is too long"));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| unreadable("a field is not UTF-8 text"))
}

async fn upload(
    State(state): State<SiteState>,
    who: Operator,
    mut multipart: Multipart,
) -> ConsoleResult {
    let mut form = FormState::default();
    let mut csrf = String::new();
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name != "file" {
            let value = text(field).await?;
            if name == CSRF_FIELD {
                csrf = value;
            } else if ["schema", "domain", "name"].contains(&name.as_str()) {
                form = form.with(&name, value);
            }
            continue;
        }
        if !same_secret(csrf.as_bytes(), who.csrf.as_bytes()) {
            return Err(PageError::csrf().into());
        }
        for (name, message) in FIELDS {
            if form.v(name).trim().is_empty() {
                form.invalid(name, message);
            }
        }
        if field.file_name().unwrap_or_default().is_empty() {
            form.invalid(
                "file",
                "Choose the pharmacy's SQLite file or dumpdata JSON.",
            );
        }
        if form.has_errors() {
            return upload_page(&state, &who, form, StatusCode::UNPROCESSABLE_ENTITY, None).await;
        }
        let a = send(&state, &who, &form, field).await?;
        return match a.status.as_u16() {
            200 => {
                let pending: PendingImport = read_pending(&a)?;
                Ok(see_other(&format!(
                    "/operator/imports/{}",
                    encode(&pending.token)
                )))
            }
            409 | 413 | 422 => {
                refused(&mut form, &a, &["schema", "domain", "name", "file"]);
                upload_page(&state, &who, form, a.status, None).await
            }
            _ => Err(ConsoleError::from_answer(&a)),
        };
    }
    // No file part at all: a form not sent by the console's page.
    Err(unreadable("it has no file"))
}

fn read_pending(a: &Answer) -> ConsoleResult<PendingImport> {
    a.read().map_err(|e| {
        tracing::error!(error = %e, "operator console: an unreadable import from control");
        ConsoleError::unavailable()
    })
}

#[derive(Template)]
#[template(path = "console/import_report.html")]
struct ReportPage {
    frame: Frame,
    p: PendingImport,
    /// Entity, read, written, merged, skipped.
    rows: Vec<(String, usize, usize, usize, usize)>,
    /// Anomalies beyond the first [`ANOMALIES_SHOWN`], left to the download.
    more: usize,
}

/// The upload `token` names, as control has it (the operator's own only).
async fn pending(state: &SiteState, who: &Operator, token: &str) -> ConsoleResult<Answer> {
    let path = format!("/v1/console/imports/{}", encode(token));
    let a = ask(state, Some(who), Method::GET, &path, None).await?;
    if a.status.as_u16() != 200 {
        return Err(ConsoleError::from_answer(&a));
    }
    Ok(a)
}

async fn show(
    State(state): State<SiteState>,
    who: Operator,
    Path(token): Path<String>,
) -> ConsoleResult {
    let mut p = read_pending(&pending(&state, &who, &token).await?)?;
    let more = p.report.anomalies.len().saturating_sub(ANOMALIES_SHOWN);
    p.report.anomalies.truncate(ANOMALIES_SHOWN);
    let me = ask(&state, Some(&who), Method::GET, "/v1/operators/me", None).await?;
    let operator: String = read(&me, "username")?;
    let rows = p
        .report
        .counts
        .iter()
        .map(|(k, c)| (k.clone(), c.read, c.written, c.merged, c.skipped))
        .collect();
    let page = ReportPage {
        frame: Frame::new(&who, &operator, "import", None),
        p,
        rows,
        more,
    };
    Ok(render(StatusCode::OK, &page)?)
}

/// The dry run's whole report as JSON (what `import pharmacy-app --dry-run --json` prints).
async fn download(
    State(state): State<SiteState>,
    who: Operator,
    Path(token): Path<String>,
) -> ConsoleResult {
    let a = pending(&state, &who, &token).await?;
    let json = a.json();
    let name = format!(
        "attachment; filename=\"import-{}-dry-run.json\"",
        json["schema"].as_str().unwrap_or("pharmacy")
    );
    let body = serde_json::to_vec_pretty(&json["report"]).map_err(|e| {
        tracing::error!(error = %e, "operator console: writing the report");
        ConsoleError::unavailable()
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        body,
    )
        .into_response())
}

async fn confirm(
    State(state): State<SiteState>,
    Path(token): Path<String>,
    OperatorForm { operator, .. }: OperatorForm,
) -> ConsoleResult {
    let path = format!("/v1/console/imports/{}", encode(&token));
    let a = ask_within(&state, Some(&operator), Method::POST, &path, UPLOAD_TIMEOUT).await?;
    match a.status.as_u16() {
        201 => {
            let schema = a.json()["schema"].as_str().unwrap_or_default().to_owned();
            Ok(see_other(&format!(
                "/operator/tenants/{}?notice=imported",
                encode(&schema)
            )))
        }
        _ => Err(ConsoleError::from_answer(&a)),
    }
}

async fn cancel(
    State(state): State<SiteState>,
    Path(token): Path<String>,
    OperatorForm { operator, .. }: OperatorForm,
) -> ConsoleResult {
    let path = format!("/v1/console/imports/{}", encode(&token));
    let a = ask(&state, Some(&operator), Method::DELETE, &path, None).await?;
    match a.status.as_u16() {
        200 => Ok(see_other("/operator/imports/new?notice=import_cancelled")),
        _ => Err(ConsoleError::from_answer(&a)),
    }
}
