//! Forms: what one sent ([`FormData`]), the state of one shown again ([`FormState`]: values
//! kept, messages next to their fields), and the forms shown before logging in, whose token is
//! double-submitted in a cookie ([`PublicForm`], [`form_token`]). A logged-in user's forms carry
//! the session's token in the same [`CSRF_FIELD`].

use std::collections::HashMap;

use axum::extract::{Form, FromRequest, Request};
use axum::http::HeaderMap;
use rand::RngCore;

use crate::error::{PageError, PageResult};
use crate::request::cookie_value;

/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";
/// The cookie of the forms shown before logging in.
pub const FORM_COOKIE: &str = "apotheca_form";

/// A path of this site (never `//host` or `/\host`, which browsers take as another site).
pub fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= 1000
        && !path.chars().any(|c| c.is_control())
}

/// Percent-encoding for a query string value.
pub fn url_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A form being shown (again): the values to put back and the messages for its fields.
#[derive(Debug, Default)]
pub struct FormState {
    values: HashMap<String, String>,
    errors: HashMap<String, String>,
    /// A message about the whole form.
    pub error: Option<String>,
    /// More lines under that message (e.g. which medicines lack stock).
    pub details: Vec<String>,
}

impl FormState {
    /// The values a form sent (the first of each name).
    pub fn from_data(data: &FormData) -> Self {
        let mut values = HashMap::new();
        for (k, v) in &data.0 {
            values.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Self {
            values,
            ..Self::default()
        }
    }

    /// Sets a value to show.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.values.insert(name.to_owned(), value.into());
        self
    }

    /// Sets an optional value (None shows blank).
    pub fn with_opt(self, name: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.with(name, v),
            None => self,
        }
    }

    pub fn v(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    pub fn err(&self, name: &str) -> Option<&str> {
        self.errors.get(name).map(String::as_str)
    }

    /// A ticked checkbox (or a true value).
    pub fn checked(&self, name: &str) -> bool {
        matches!(self.v(name), "on" | "true" | "1")
    }

    /// Whether anything is wrong with the form.
    pub fn has_errors(&self) -> bool {
        self.error.is_some() || !self.errors.is_empty()
    }

    /// A message next to `field`.
    pub fn invalid(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .entry(field.to_owned())
            .or_insert_with(|| message.into());
    }

    /// Places a refusal (`message`, about `field` if it names one): next to its field when
    /// the form shows that field, else above the form.
    pub fn fail(&mut self, field: Option<&str>, message: &str, fields: &[&str]) {
        match field {
            Some(f) if fields.contains(&f) => self.invalid(f, message),
            _ => self.error = Some(message.to_owned()),
        }
    }
}

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
    pub fn carries(&self, expected: &str) -> bool {
        !expected.is_empty()
            && apotheca_pharmacy::accounts::same_secret(
                self.get(CSRF_FIELD).as_bytes(),
                expected.as_bytes(),
            )
    }
}

/// The fields of a POSTed form.
pub async fn read_form<S: Send + Sync>(req: Request, state: &S) -> PageResult<FormData> {
    match Form::<Vec<(String, String)>>::from_request(req, state).await {
        Ok(Form(pairs)) => Ok(FormData(pairs)),
        Err(e) => Err(PageError::new(e.status(), e.body_text())),
    }
}

/// A form POSTed before logging in, its token checked against the form cookie.
pub struct PublicForm(pub FormData);

impl<S: Send + Sync> FromRequest<S> for PublicForm {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> PageResult<Self> {
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
    let secure = if crate::request::secure(headers) {
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
