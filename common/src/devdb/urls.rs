//! Connection URLs for the private cluster: libpq-style Unix-socket URLs and the
//! percent-encoding they need.

use std::path::Path;

use crate::names::percent_encode;

/// A libpq-style URL for a Unix-socket connection (understood by tokio-postgres and psql).
pub fn socket_url(
    user: &str,
    password: &str,
    socket_dir: &Path,
    port: u16,
    database: &str,
) -> String {
    format!(
        "postgresql://{}:{}@/{}?host={}&port={port}",
        percent_encode(user),
        percent_encode(password),
        percent_encode(database),
        percent_encode(&socket_dir.display().to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_encoded() {
        let url = socket_url("postgres", "a b", Path::new("/tmp/x y"), 5432, "apotheca");
        assert_eq!(
            url,
            "postgresql://postgres:a%20b@/apotheca?host=%2Ftmp%2Fx%20y&port=5432"
        );
    }
}
