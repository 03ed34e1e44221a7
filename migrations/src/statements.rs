//! Splitting a migration file into its statements: at each `;` outside quoted text ('…', E'…'
//! with backslash escapes, "…"), dollar-quoted bodies ($$…$$, $tag$…$tag$) and comments (-- to
//! the end of the line, /* … */ nested), as `psql` does for everything but a `;` inside
//! parentheses (`CREATE RULE … DO (a; b)`), which is split here: write such rules one action
//! each.
//!
//! Citus propagates some DDL (CREATE INDEX among it) to its nodes as the text of the query it
//! came in, so a file sent as one multi-statement query fails there ("cannot insert multiple
//! commands into a prepared statement"); on Citus each statement goes alone. SQL-standard
//! function bodies (`BEGIN ATOMIC … END`) hold bare semicolons and are refused: write such
//! bodies dollar-quoted.

/// A statement the splitter cannot cut safely.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    #[error("a BEGIN ATOMIC function body cannot be split into statements; write the body dollar-quoted ($$ … $$)")]
    BeginAtomic,
    #[error("the file ends inside a quoted string, a dollar-quoted body or a comment")]
    Unterminated,
}

/// The statements of `sql`, each trimmed, without its `;`; empty ones (only whitespace and
/// comments) are left out.
pub fn statements(sql: &str) -> Result<Vec<&str>, SplitError> {
    let bytes = sql.as_bytes();
    let mut out = vec![];
    let mut start = 0;
    let mut i = 0;
    // Whether the statement so far holds anything but whitespace and comments.
    let mut content = false;
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = block_comment_end(bytes, i)?;
                continue;
            }
            b'\'' => {
                let escapes =
                    i > 0 && matches!(bytes[i - 1], b'E' | b'e') && !ident_byte(bytes, i - 1);
                i = quoted_end(bytes, i, b'\'', escapes)?;
                content = true;
                continue;
            }
            b'"' => {
                i = quoted_end(bytes, i, b'"', false)?;
                content = true;
                continue;
            }
            b'$' if i == 0 || !ident_byte(bytes, i) => {
                if let Some(tag_len) = dollar_tag(&bytes[i..]) {
                    let tag = &sql[i..i + tag_len];
                    let body = i + tag_len;
                    let close = sql[body..].find(tag).ok_or(SplitError::Unterminated)?;
                    i = body + close + tag_len;
                    content = true;
                    continue;
                }
                content = true;
            }
            b';' => {
                let statement = strip(&sql[start..i]);
                if content && !statement.is_empty() {
                    check_atomic(statement)?;
                    out.push(statement);
                }
                start = i + 1;
                content = false;
            }
            b if !b.is_ascii_whitespace() => content = true,
            _ => {}
        }
        i += 1;
    }
    let rest = strip(&sql[start..]);
    if content && !rest.is_empty() {
        check_atomic(rest)?;
        out.push(rest);
    }
    Ok(out)
}

/// `text` trimmed of whitespace (comments inside stay: they are harmless to PostgreSQL).
fn strip(text: &str) -> &str {
    text.trim()
}

fn check_atomic(statement: &str) -> Result<(), SplitError> {
    let upper = statement.to_ascii_uppercase();
    let words: Vec<&str> = upper.split_ascii_whitespace().collect();
    if words.windows(2).any(|w| w == ["BEGIN", "ATOMIC"]) {
        return Err(SplitError::BeginAtomic);
    }
    Ok(())
}

/// Whether the byte before `i` continues an identifier (so `$` or `E` belongs to it).
fn ident_byte(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] >= 0x80)
}

/// The end (one past) of a '…' or "…" run starting at `i`; a doubled quote stays inside,
/// and with `escapes` (E'…') so does a backslash-escaped one.
fn quoted_end(bytes: &[u8], i: usize, quote: u8, escapes: bool) -> Result<usize, SplitError> {
    let mut j = i + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' if escapes => j += 2,
            q if q == quote => {
                if bytes.get(j + 1) == Some(&quote) {
                    j += 2;
                } else {
                    return Ok(j + 1);
                }
            }
            _ => j += 1,
        }
    }
    Err(SplitError::Unterminated)
}

/// The end (one past) of a /* … */ comment starting at `i`, nested ones included.
fn block_comment_end(bytes: &[u8], i: usize) -> Result<usize, SplitError> {
    let mut depth = 0usize;
    let mut j = i;
    while j + 1 < bytes.len() {
        match (bytes[j], bytes[j + 1]) {
            (b'/', b'*') => {
                depth += 1;
                j += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                j += 2;
                if depth == 0 {
                    return Ok(j);
                }
            }
            _ => j += 1,
        }
    }
    Err(SplitError::Unterminated)
}

/// The length of a dollar-quote tag (`$$` or `$name$`) at the start of `bytes`, if one is
/// there (`$1`, a parameter, is not).
fn dollar_tag(bytes: &[u8]) -> Option<usize> {
    let mut j = 1;
    while j < bytes.len() {
        match bytes[j] {
            b'$' => return Some(j + 1),
            b if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => j += 1,
            b if b.is_ascii_digit() && j > 1 => j += 1,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_where_psql_does() {
        let sql = "-- a comment; not a statement\n\
                   CREATE TABLE t (a text DEFAULT 'x;y''z', \"we;ird\" int);\n\
                   /* block; /* nested; */ still; */\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;\n\
                   CREATE FUNCTION g() RETURNS text LANGUAGE sql AS $body$ SELECT ';' $body$;\n\
                   SELECT E'it\\'s; fine', $1;\n\
                   ;;  \n\
                   SELECT 2";
        let got = statements(sql).unwrap();
        assert_eq!(got.len(), 5, "{got:#?}");
        assert!(got[0].starts_with("-- a comment; not a statement\nCREATE TABLE t"));
        assert!(got[0].ends_with("int)"));
        assert!(got[1].starts_with("/* block;") && got[1].ends_with("END $$"));
        assert_eq!(
            got[2],
            "CREATE FUNCTION g() RETURNS text LANGUAGE sql AS $body$ SELECT ';' $body$"
        );
        assert_eq!(got[3], "SELECT E'it\\'s; fine', $1");
        assert_eq!(got[4], "SELECT 2");
    }

    #[test]
    fn refuses_what_it_cannot_cut() {
        assert_eq!(statements("SELECT 'open"), Err(SplitError::Unterminated));
        assert_eq!(statements("SELECT $$ open"), Err(SplitError::Unterminated));
        assert_eq!(statements("/* open"), Err(SplitError::Unterminated));
        assert_eq!(
            statements("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;"),
            Err(SplitError::BeginAtomic)
        );
        assert!(statements("-- only a comment\n").unwrap().is_empty());
    }

    #[test]
    fn every_migration_file_splits() {
        let set = crate::MigrationSet::embedded().unwrap();
        for m in set.shared.iter().chain(&set.tenant) {
            let parts = statements(&m.sql).unwrap_or_else(|e| panic!("{}: {e}", m.file_name()));
            assert!(!parts.is_empty(), "{}", m.file_name());
        }
    }
}
