//! Who is looking at a page, and what a form sent. Pages take the session cookie only (no
//! bearer tokens); a form POST must carry the session's CSRF token in the `csrf_token` field
//! (the same token the JSON API takes in `X-CSRF-Token`). The forms shown before logging in
//! (login, password reset) carry a token of their own, double-submitted in a cookie.

use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use rand::RngCore;

use super::error::{PageError, PageResult};
use crate::http::auth::{self, cookie, cookie_value, Auth, SESSION_COOKIE};
use crate::http::error::ApiError;
use crate::state::AppState;
use apotheca_pharmacy::accounts::{self, Area};

/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";
/// The cookie behind the forms shown before logging in.
pub const FORM_COOKIE: &str = "apotheca_form";

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

/// A path of this site (never `//host` or `/\host`, which browsers take as another site).
pub fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= 1000
        && !path.chars().any(|c| c.is_control())
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
#[derive(Debug, Default, Clone)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `Some(value)` when the field was sent (blank included), as the API's "given" fields.
    pub fn given(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// A checkbox: sent means ticked.
    pub fn ticked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, v)| k == name && v != "false")
    }

    /// The token sent with the form is `expected`.
    fn carries(&self, expected: &str) -> bool {
        !expected.is_empty()
            && accounts::same_secret(self.get(CSRF_FIELD).as_bytes(), expected.as_bytes())
    }
}

async fn read_form(req: Request, state: &AppState) -> PageResult<FormData> {
    match Form::<Vec<(String, String)>>::from_request(req, state).await {
        Ok(Form(pairs)) => Ok(FormData(pairs)),
        Err(e) => Err(ApiError::new(e.status(), "bad_form", e.body_text()).into()),
    }
}

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

/// A form POSTed before logging in, its token checked against the form cookie.
pub struct PublicForm(pub FormData);

impl FromRequest<AppState> for PublicForm {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> PageResult<Self> {
        let expected = cookie_value(req.headers(), FORM_COOKIE)
            .unwrap_or_default()
            .to_owned();
        let form = read_form(req, state).await?;
        if !form.carries(&expected) {
            return Err(PageError::csrf());
        }
        Ok(Self(form))
    }
}

/// The token for a form shown before logging in: the form cookie's, or a new one with the
/// Set-Cookie value that stores it.
pub fn form_token(headers: &HeaderMap) -> (String, Option<String>) {
    let known = cookie_value(headers, FORM_COOKIE)
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned);
    if let Some(token) = known {
        return (token, None);
    }
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let secure = if crate::api::auth::secure(headers) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{FORM_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}");
    (token, Some(cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_only() {
        assert!(is_local_path("/medicines?q=para"));
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "",
            "x",
        ] {
            assert!(!is_local_path(bad), "{bad}");
        }
    }

    #[test]
    fn form_fields() {
        let f = FormData(vec![
            ("a".into(), "1".into()),
            ("a".into(), "2".into()),
            ("box".into(), "on".into()),
            ("blank".into(), String::new()),
        ]);
        assert_eq!(f.get("a"), "1");
        assert_eq!(f.all("a"), ["1", "2"]);
        assert_eq!(f.get("missing"), "");
        assert!(f.ticked("box") && !f.ticked("missing"));
        assert_eq!(f.given("blank").as_deref(), Some(""));
        assert_eq!(f.given("missing"), None);
        assert!(!f.carries(""));
    }
}
