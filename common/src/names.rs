//! Untrusted names become types here, at the edge: a [`SchemaName`] or [`DomainName`] that
//! exists is valid, so the rest of the code never re-checks one. Also home of [`quote_ident`],
//! the only way an identifier is ever interpolated into SQL.

use std::fmt;
use std::str::FromStr;

/// Why a name was refused; the message is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("schema name is empty")]
    EmptySchema,
    #[error("schema name {0:?} is invalid: use 1 to 63 characters, a lowercase letter first, then lowercase letters, digits or '_'")]
    SchemaPattern(String),
    #[error("schema name {0:?} is reserved by PostgreSQL or Apotheca")]
    SchemaReserved(String),
    #[error("schema name {0:?} is an SQL keyword")]
    SchemaKeyword(String),
    #[error("domain is empty")]
    EmptyDomain,
    #[error("domain {0:?} must not contain a port, a path or a scheme (give the host name only)")]
    DomainHasPort(String),
    #[error("domain {0:?} is not a valid host name: {1}")]
    DomainInvalid(String, &'static str),
}

/// PostgreSQL's reserved, type/function-name and column-name keywords (`pg_get_keywords()`
/// categories R, T and C), which make confusing or unusable schema names.
#[rustfmt::skip]
const SQL_KEYWORDS: &[&str] = &[
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "authorization",
    "between", "bigint", "binary", "bit", "boolean", "both", "case", "cast", "char", "character",
    "check", "coalesce", "collate", "collation", "column", "concurrently", "constraint", "create",
    "cross", "current_catalog", "current_date", "current_role", "current_schema", "current_time",
    "current_timestamp", "current_user", "dec", "decimal", "default", "deferrable", "desc",
    "distinct", "do", "else", "end", "except", "exists", "extract", "false", "fetch", "float",
    "for", "foreign", "freeze", "from", "full", "grant", "greatest", "group", "grouping", "having",
    "ilike", "in", "initially", "inner", "inout", "int", "integer", "intersect", "interval", "into",
    "is", "isnull", "join", "lateral", "leading", "least", "left", "like", "limit", "localtime",
    "localtimestamp", "national", "natural", "nchar", "none", "normalize", "not", "notnull", "null",
    "nullif", "numeric", "offset", "on", "only", "or", "order", "out", "outer", "overlaps",
    "overlay", "placing", "position", "precision", "primary", "real", "references", "returning",
    "right", "row", "select", "session_user", "setof", "similar", "smallint", "some", "substring",
    "symmetric", "table", "tablesample", "then", "time", "timestamp", "to", "trailing", "treat",
    "trim", "true", "union", "unique", "user", "using", "values", "varchar", "variadic", "verbose",
    "when", "where", "window", "with", "xmlattributes", "xmlconcat", "xmlelement", "xmlexists",
    "xmlforest", "xmlnamespaces", "xmlparse", "xmlpi", "xmlroot", "xmlserialize", "xmltable",
];

/// A tenant schema name: `^[a-z][a-z0-9_]{0,62}$`, not `public`, `pg_*`,
/// `information_schema` or an SQL keyword.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaName(String);

impl SchemaName {
    /// The public schema, which holds the shared tables; never a tenant.
    pub const PUBLIC: &'static str = "public";

    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() {
            return Err(NameError::EmptySchema);
        }
        let bytes = raw.as_bytes();
        let pattern_ok = raw.len() <= 63
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !pattern_ok {
            return Err(NameError::SchemaPattern(raw.to_owned()));
        }
        if raw == Self::PUBLIC
            || raw.starts_with("pg_")
            || raw == "information_schema"
            || raw.starts_with("apotheca")
        {
            return Err(NameError::SchemaReserved(raw.to_owned()));
        }
        if SQL_KEYWORDS.binary_search(&raw).is_ok() {
            return Err(NameError::SchemaKeyword(raw.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The schema quoted for SQL.
    pub fn quoted(&self) -> String {
        quote_ident(&self.0)
    }
}

impl FromStr for SchemaName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SchemaName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A host name as Apotheca stores and routes it: IDNA-mapped to punycode, lowercase, no port,
/// no trailing dot, at most 253 characters, labels of 1 to 63 letters, digits and inner hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

impl DomainName {
    /// Normalises and validates. A single trailing dot (the DNS root) is accepted and removed.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(NameError::EmptyDomain);
        }
        if trimmed.contains([':', '/', '@', '?', '#', '[', ']']) {
            return Err(NameError::DomainHasPort(raw.to_owned()));
        }
        let without_root = trimmed.strip_suffix('.').unwrap_or(trimmed);
        let ascii = idna::domain_to_ascii(without_root)
            .map_err(|_| NameError::DomainInvalid(raw.to_owned(), "IDNA conversion failed"))?;
        Self::check_ascii(&ascii).map_err(|why| NameError::DomainInvalid(raw.to_owned(), why))?;
        Ok(Self(ascii))
    }

    fn check_ascii(host: &str) -> Result<(), &'static str> {
        if host.is_empty() {
            return Err("it is empty");
        }
        if host.len() > 253 {
            return Err("longer than 253 characters");
        }
        let labels: Vec<&str> = host.split('.').collect();
        for label in &labels {
            if label.is_empty() {
                return Err("it has an empty label (two dots in a row, or a leading dot)");
            }
            if label.len() > 63 {
                return Err("a label is longer than 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err("labels may hold only letters, digits and hyphens");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err("a label starts or ends with a hyphen");
            }
        }
        let last = labels.last().copied().unwrap_or_default();
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err("it looks like an IP address; give a host name");
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DomainName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Quotes an SQL identifier (`"` doubled). Every identifier interpolated into SQL goes
/// through here, even validated ones, so a future looser validator cannot open an injection.
pub fn quote_ident(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    out.push('"');
    for c in ident.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quotes an SQL string literal (standard-conforming strings: `'` doubled). Used only for
/// the few statements that take no parameters (role options, `ALTER ROLE ... SET`).
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Percent-encodes everything but unreserved URL characters (a URL's user, password, path
/// segment or query value).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keywords_are_sorted_for_binary_search() {
        let mut sorted = SQL_KEYWORDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, SQL_KEYWORDS);
    }

    #[test]
    fn schema_examples() {
        assert!(SchemaName::parse("acme").is_ok());
        assert!(SchemaName::parse("my_pharmacy_2").is_ok());
        assert!(SchemaName::parse(&"a".repeat(63)).is_ok());
        for bad in [
            "",
            "public",
            "pg_x",
            "information_schema",
            "select",
            "user",
            "Acme",
            "1abc",
            "_a",
            "a-b",
            "a b",
            "é",
            "apotheca_x",
        ] {
            assert!(SchemaName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(SchemaName::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn domain_examples() {
        let ok = |raw: &str, want: &str| assert_eq!(DomainName::parse(raw).unwrap().as_str(), want);
        ok("Acme.Example.COM", "acme.example.com");
        ok("acme.localhost.", "acme.localhost");
        ok("bücher.example", "xn--bcher-kva.example");
        ok("localhost", "localhost");
        for bad in [
            "",
            "acme.localhost:8080",
            "http://x.com",
            "a..b",
            ".a",
            "-a.com",
            "a-.com",
            "a_b.com",
            "127.0.0.1",
            "a b.com",
        ] {
            assert!(DomainName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(DomainName::parse(&format!("{}.com", "a".repeat(64))).is_err());
        let long = vec!["a".repeat(60); 5].join(".");
        assert!(DomainName::parse(&long).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    proptest! {
        #[test]
        fn valid_schema_names_round_trip(name in "[a-z][a-z0-9_]{0,62}") {
            match SchemaName::parse(&name) {
                Ok(s) => prop_assert_eq!(s.as_str(), name.as_str()),
                Err(NameError::SchemaReserved(_) | NameError::SchemaKeyword(_)) => {}
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }

        #[test]
        fn parsed_schema_names_match_the_pattern(raw in "\\PC{0,70}") {
            if let Ok(s) = SchemaName::parse(&raw) {
                let s = s.as_str();
                prop_assert!(s.len() <= 63 && s.as_bytes()[0].is_ascii_lowercase());
                prop_assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
                prop_assert!(s != "public" && !s.starts_with("pg_"));
            }
        }

        #[test]
        fn parsed_domains_are_normal(raw in "\\PC{0,80}") {
            if let Ok(d) = DomainName::parse(&raw) {
                let d = d.as_str();
                prop_assert!(d.len() <= 253);
                prop_assert!(!d.ends_with('.') && !d.contains(':'));
                prop_assert_eq!(d.to_ascii_lowercase(), d);
                prop_assert!(d.split('.').all(|l| !l.is_empty() && l.len() <= 63));
                // Normalising a normal name changes nothing.
                prop_assert_eq!(DomainName::parse(d).unwrap().to_string(), d.to_string());
            }
        }

        #[test]
        fn ldh_domains_are_accepted(labels in proptest::collection::vec("[a-z]([a-z0-9-]{0,20}[a-z0-9])?", 1..5)) {
            let host = labels.join(".");
            // Labels with "--" in positions 3-4 are IDNA-special (e.g. "xn--"); skip those.
            prop_assume!(labels.iter().all(|l| l.get(2..4) != Some("--")));
            prop_assert_eq!(DomainName::parse(&host).unwrap().to_string(), host);
        }
    }
}
