//! Apotheca's public site (`apotheca-site`), served by the worker for schema `public`: the
//! landing page, "Create your pharmacy" and "Find my pharmacy" ([`public`]), and the hosting
//! provider's operator console under `/operator/` ([`console`]). Neither holds a secret nor
//! changes anything itself: both ask control's API (`--control-socket`) for every change.
//! It has its own state ([`SiteState`]); the worker only hands it a pool on the public schema
//! and its settings.

pub mod console;
pub mod public;

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

/// What the site's pages share.
#[derive(Clone)]
pub struct SiteState(Arc<Inner>);

pub struct Inner {
    /// Connections as the public site's role (tenants' names and domains to read, sign-up
    /// attempts to count).
    pub pool: deadpool_postgres::Pool,
    /// Control's API socket; none: sign-up and the console answer 503.
    pub control_socket: Option<PathBuf>,
    /// Sign-up attempts allowed per client address and hour.
    pub signups_per_hour: usize,
}

impl SiteState {
    pub fn new(
        pool: deadpool_postgres::Pool,
        control_socket: Option<PathBuf>,
        signups_per_hour: usize,
    ) -> Self {
        Self(Arc::new(Inner {
            pool,
            control_socket,
            signups_per_hour,
        }))
    }
}

impl Deref for SiteState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Every page of the site, with its state.
pub fn router(state: SiteState) -> Router {
    Router::new()
        .merge(public::routes())
        .merge(console::router())
        .route("/static/{file}", get(apotheca_web::assets::serve))
        .layer(axum::middleware::map_response(site_headers))
        .with_state(state)
}

/// The pages' usual headers, but the sign-up form may lead to another host: after it, the
/// browser follows a redirect to the new pharmacy's subdomain, which `form-action 'self'`
/// would block.
async fn site_headers(response: Response) -> Response {
    let mut response = apotheca_web::headers(response).await;
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(apotheca_web::csp!("'self' http: https:")),
    );
    response
}
