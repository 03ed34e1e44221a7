//! Who is looking at a page, and what a form sent. Pages take the session cookie only (no
//! bearer tokens); a form POST must carry the session's CSRF token in the `csrf_token` field
//! (the same token the JSON API takes in `X-CSRF-Token`). The forms shown before logging in
//! (login, password reset) carry a token of their own, double-submitted in a cookie.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::Method;

use crate::http::auth::{self, cookie, Auth, SESSION_COOKIE};
use crate::state::AppState;
use apotheca_pharmacy::accounts::{self, Area};
use apotheca_web::error::{PageError, PageResult};
use apotheca_web::form::{read_form, FormData};

/// The logged-in user of a page, and the token their forms carry.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub auth: Auth,
    pub csrf: String,
}

impl Viewer {
    /// A 403 page unless the user's role may use `area`.
    pub fn require(&self, area: Area) -> PageResult<()> {
        if self.may(area) {
            Ok(())
        } else {
            Err(PageError::forbidden())
        }
    }

    pub fn may(&self, area: Area) -> bool {
        accounts::may(self.auth.role, area)
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> PageResult<Self> {
        if let Some(viewer) = parts.extensions.get::<Viewer>() {
            return Ok(viewer.clone());
        }
        // After logging in, a GET comes back where it was; a POST to its form's page is
        // not known here, so it starts over from the dashboard.
        let next = (parts.method == Method::GET)
            .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_owned()))
            .flatten();
        let Some(token) = cookie(parts, SESSION_COOKIE) else {
            return Err(PageError::Login { next });
        };
        let viewer = match auth::session(state, token).await {
            Ok((auth, secret)) => Viewer {
                auth,
                csrf: auth::csrf_token(&secret),
            },
            Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED => {
                return Err(PageError::Login { next })
            }
            Err(e) => return Err(e.into()),
        };
        parts.extensions.insert(viewer.clone());
        Ok(viewer)
    }
}

/// The fields of a submitted form, in order (a name may repeat: one per line of a sale or
/// a receipt).
/// A form POSTed by a logged-in user, its CSRF token checked.
pub struct Submitted {
    pub viewer: Viewer,
    pub form: FormData,
}

impl FromRequest<AppState> for Submitted {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> PageResult<Self> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let form = read_form(Request::from_parts(parts, body), state).await?;
        if !form.carries(&viewer.csrf) {
            return Err(PageError::csrf());
        }
        Ok(Self { viewer, form })
    }
}
