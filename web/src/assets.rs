//! The stylesheet and the scripts, embedded in the binary and served under names that carry
//! a hash of their content (`/static/app.1a2b3c4d5e.css`): a changed file gets a new name, so
//! browsers may keep each one for a year without asking again.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// (name, content, content type)
const FILES: [(&str, &[u8], &str); 3] = [
    (
        "app.css",
        include_bytes!("../static/app.css"),
        "text/css; charset=utf-8",
    ),
    (
        "app.js",
        include_bytes!("../static/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "counter.js",
        include_bytes!("../static/counter.js"),
        "text/javascript; charset=utf-8",
    ),
];

struct Hashed {
    /// `/static/app.<hash>.css`
    url: String,
    /// The hash, also the ETag.
    hash: String,
}

fn hashed() -> &'static [Hashed] {
    static HASHED: OnceLock<Vec<Hashed>> = OnceLock::new();
    HASHED.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, body, _)| {
                let hash = hex::encode(&Sha256::digest(body)[..5]);
                let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
                Hashed {
                    url: format!("/static/{stem}.{hash}.{ext}"),
                    hash,
                }
            })
            .collect()
    })
}

/// The URL of an embedded file (`name` as in [`FILES`]); "" for an unknown name.
pub fn url(name: &str) -> &'static str {
    FILES
        .iter()
        .position(|(n, ..)| *n == name)
        .map_or("", |i| hashed()[i].url.as_str())
}

/// `GET /static/{file}`: only the current hashed names; anything else is 404.
pub async fn serve(Path(file): Path<String>) -> Response {
    let wanted = format!("/static/{file}");
    let Some(i) = hashed().iter().position(|h| h.url == wanted) else {
        return crate::error::error_page(StatusCode::NOT_FOUND, "no such file");
    };
    let (_, body, content_type) = FILES[i];
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CACHE_CONTROL,
                "public, max-age=31536000, immutable".to_owned(),
            ),
            (header::ETAG, format!("\"{}\"", hashed()[i].hash)),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_hash() {
        let css = url("app.css");
        assert!(
            css.starts_with("/static/app.") && css.ends_with(".css"),
            "{css}"
        );
        assert_eq!(css.len(), "/static/app.".len() + 10 + ".css".len());
        assert_ne!(url("app.js"), url("counter.js"));
        assert_eq!(url("nothing.css"), "");
    }
}
