//! The answers the proxy gives itself (a bad request, no pharmacy here, suspended, overloaded,
//! the worker unreachable or too slow): a small HTML page for browsers, JSON for clients that
//! ask for it, rendered into bytes that either front writes out.

/// One of the proxy's own answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    BadHost,
    BadRequest,
    RequestTimeout,
    TooLarge,
    HeadersTooLarge,
    NotImplemented,
    NoPharmacy,
    Suspended,
    Overloaded,
    Waking,
    Unreachable,
    WorkerTimeout,
    NotFound,
}

/// A page ready to send.
pub struct Rendered {
    pub status: u16,
    pub content_type: &'static str,
    pub retry_after: Option<u32>,
    pub body: Vec<u8>,
}

impl Page {
    pub fn status(self) -> u16 {
        match self {
            Self::BadHost | Self::BadRequest => 400,
            Self::RequestTimeout => 408,
            Self::TooLarge => 413,
            Self::HeadersTooLarge => 431,
            Self::NotImplemented => 501,
            Self::NoPharmacy | Self::NotFound => 404,
            Self::Suspended => 403,
            Self::Overloaded | Self::Waking => 503,
            Self::Unreachable => 502,
            Self::WorkerTimeout => 504,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Self::BadHost => "bad_host",
            Self::BadRequest => "bad_request",
            Self::RequestTimeout => "request_timeout",
            Self::TooLarge => "too_large",
            Self::HeadersTooLarge => "headers_too_large",
            Self::NotImplemented => "not_implemented",
            Self::NoPharmacy => "no_pharmacy",
            Self::Suspended => "suspended",
            Self::Overloaded => "overloaded",
            Self::Waking => "unavailable",
            Self::Unreachable => "bad_gateway",
            Self::WorkerTimeout => "gateway_timeout",
            Self::NotFound => "not_found",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::BadHost | Self::BadRequest => "Bad request",
            Self::RequestTimeout => "Request timed out",
            Self::TooLarge => "Request too large",
            Self::HeadersTooLarge => "Request headers too large",
            Self::NotImplemented => "Not supported",
            Self::NoPharmacy => "No pharmacy at this address",
            Self::Suspended => "This pharmacy is suspended",
            Self::Overloaded => "Too busy right now",
            Self::Waking => "Not available right now",
            Self::Unreachable => "The pharmacy did not answer",
            Self::WorkerTimeout => "The pharmacy took too long",
            Self::NotFound => "Not found",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::BadHost => "The request did not name a valid host.",
            Self::BadRequest => "The request was not valid HTTP.",
            Self::RequestTimeout => "The request did not arrive in time.",
            Self::TooLarge => "The request's body is larger than this server accepts.",
            Self::HeadersTooLarge => "The request's headers are larger than this server accepts.",
            Self::NotImplemented => "The request uses a transfer coding this server does not support.",
            Self::NoPharmacy => "No pharmacy is served at this address. Check the address, or find your pharmacy on the main site.",
            Self::Suspended => "This pharmacy's account is suspended. Please contact your hosting provider.",
            Self::Overloaded => "This pharmacy is receiving more requests than it can take. Please try again in a moment.",
            Self::Waking => "This pharmacy could not be started in time. Please try again in a moment.",
            Self::Unreachable => "The pharmacy's server did not answer. Please try again.",
            Self::WorkerTimeout => "The pharmacy's server did not answer in time. Please try again.",
            Self::NotFound => "There is nothing at this address.",
        }
    }

    /// Seconds for `Retry-After`, for the answers that are worth retrying.
    fn retry_after(self) -> Option<u32> {
        match self {
            Self::Overloaded => Some(1),
            Self::Waking => Some(5),
            _ => None,
        }
    }

    /// The answer as bytes; `json` when the client prefers JSON.
    pub fn render(self, json: bool) -> Rendered {
        let (body, content_type) = if json {
            let body =
                serde_json::json!({"error": {"code": self.code(), "message": self.message()}});
            (body.to_string(), "application/json")
        } else {
            (
                format!(
                    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                     <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
                     <title>{t}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;\
                     margin:15vh auto;padding:0 1rem;color:#1d2b36}}h1{{font-size:1.4rem}}</style>\
                     </head><body><h1>{t}</h1><p>{m}</p></body></html>",
                    t = self.title(),
                    m = self.message()
                ),
                "text/html; charset=utf-8",
            )
        };
        Rendered {
            status: self.status(),
            content_type,
            retry_after: self.retry_after(),
            body: body.into_bytes(),
        }
    }
}

/// Whether the client asked for JSON rather than a page (`Accept` naming JSON before HTML,
/// or an API path).
pub fn wants_json(accept: Option<&str>, path: &str) -> bool {
    if path.starts_with("/api/") {
        return true;
    }
    let Some(accept) = accept else {
        return false;
    };
    let json = accept.find("json");
    let html = accept.find("html");
    match (json, html) {
        (Some(j), Some(h)) => j < h,
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_when_asked_for_or_on_the_api() {
        assert!(wants_json(Some("application/json"), "/"));
        assert!(wants_json(None, "/api/v1/medicines"));
        assert!(!wants_json(
            Some("text/html,application/xhtml+xml,application/json;q=0.9"),
            "/"
        ));
        assert!(wants_json(Some("application/json, text/html;q=0.5"), "/"));
        assert!(!wants_json(None, "/"));
        assert!(!wants_json(Some("*/*"), "/"));
    }
}
