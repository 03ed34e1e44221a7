//! The HTML both the pharmacy's screens (the worker) and the public site share
//! (`apotheca-web`): the static files ([`assets`]), how a page fails ([`error`]: a redirect
//! to the login page or an error page), forms and their CSRF tokens ([`form`]), what a request
//! says about its client ([`request`]), and the headers every page carries ([`headers`]).
//! The templates every part extends are in `web/templates/` (`public.html`, `forms.html`,
//! `error.html`); each crate's `askama.toml` lists that folder after its own.

pub mod assets;
pub mod error;
pub mod form;
pub mod request;

use axum::http::{header, HeaderValue};
use axum::response::Response;

/// The pages' Content-Security-Policy, with `form-action` given: the one policy every page
/// and the public site share.
#[macro_export]
macro_rules! csp {
    ($form_action:literal) => {
        concat!(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; ",
            "form-action ",
            $form_action,
            "; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
        )
    };
}

/// Pages are never cached (they show stock and money; the back button after logging out
/// must not show them) unless they say otherwise (static files), are never framed, and run
/// only this site's scripts and styles.
pub async fn headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp!("'self'")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
