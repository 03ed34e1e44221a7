//! The domain's one error: what went wrong in the pharmacy's terms, with no HTTP in it. Its
//! status on the web is `apotheca_web::error::status_of`'s, for the API as for the pages;
//! `apotheca seed-data` prints it. A database error is classified here once ([`Error::from`]), so a broken rule
//! the schema caught reads the same as one the code caught, and nothing of SQL leaks.

use tokio_postgres::error::SqlState;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Well-formed, but a value breaks a rule; `field` names it (may be empty when unknown).
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// Something the request names does not exist.
    #[error("{what} not found")]
    NotFound { what: String, field: Option<String> },
    /// The request conflicts with the current state (stock, duplicates, a voided invoice...);
    /// `code` is the machine-readable reason, `detail` e.g. which lines lack stock.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        field: Option<String>,
        detail: Option<serde_json::Value>,
    },
    /// Not now: the database is away or busy, or too many password checks wait. Try again.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected database answer; the details went to the log.
    #[error("internal error")]
    Internal,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The answer to a transaction PostgreSQL ended to let another go on (a deadlock, a
/// serialization failure): nothing of it was kept, and it may simply run again.
const BUSY: &str = "busy; try again";
/// The answer to a statement or lock wait that timed out: running it again would wait as
/// long again.
const TIMED_OUT: &str = "the database took too long; try again";

impl Error {
    /// Whether this is [`BUSY`]: the transaction was ended for another's sake and may simply
    /// be run again.
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Unavailable(m) if m == BUSY)
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::NotFound {
            what: what.to_owned(),
            field: None,
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            field: None,
            detail: None,
        }
    }

    pub fn internal() -> Self {
        Self::Internal
    }

    /// Names the field a refusal is about (invalid, not found, conflict; others unchanged).
    pub fn with_field(mut self, name: &str) -> Self {
        match &mut self {
            Self::Invalid { field, .. } => *field = name.to_owned(),
            Self::NotFound { field, .. } | Self::Conflict { field, .. } => {
                *field = Some(name.to_owned())
            }
            Self::Unavailable(_) | Self::Internal => {}
        }
        self
    }

    /// Attaches machine-readable detail to a conflict (others unchanged).
    pub fn with_detail(mut self, value: serde_json::Value) -> Self {
        if let Self::Conflict { detail, .. } = &mut self {
            *detail = Some(value);
        }
        self
    }

    /// The conflict's code, if this is one.
    pub fn conflict_code(&self) -> Option<&'static str> {
        match self {
            Self::Conflict { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Too many password checks at once in this process: try again in a second.
impl From<crate::accounts::Busy> for Error {
    fn from(e: crate::accounts::Busy) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(code) = e.code() else {
            tracing::error!(error = %e, "database connection failed");
            return Self::Unavailable("the database is unavailable; try again".into());
        };
        let constraint = shard_less(e.as_db_error().map_or("", constraint_of)).to_owned();
        if *code == SqlState::UNIQUE_VIOLATION {
            return Self::conflict(
                "duplicate",
                format!("this already exists ({})", readable(&constraint)),
            )
            .with_field(&field_of(&constraint));
        }
        if *code == SqlState::CHECK_VIOLATION || *code == SqlState::NOT_NULL_VIOLATION {
            return Self::invalid(
                &field_of(&constraint),
                format!("a value breaks a rule ({})", readable(&constraint)),
            );
        }
        if *code == SqlState::FOREIGN_KEY_VIOLATION {
            return Self::conflict(
                "in_use",
                format!(
                    "it is referenced elsewhere or refers to something missing ({})",
                    readable(&constraint)
                ),
            );
        }
        if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            tracing::warn!(error = %e, "transaction could not complete");
            return Self::Unavailable(BUSY.into());
        }
        if *code == SqlState::QUERY_CANCELED || *code == SqlState::LOCK_NOT_AVAILABLE {
            tracing::warn!(error = %e, "a statement or lock timed out");
            return Self::Unavailable(TIMED_OUT.into());
        }
        // Class 08 (connection exception), 57 (operator intervention: the server shutting
        // down or restarting, e.g. 57P01 on a fast shutdown) and 58 (system error: an I/O
        // failure, or Citus's copy to a node that went away, 58030): the database is going or
        // coming back, not the request's fault nor ours.
        if code.code().starts_with("08")
            || code.code().starts_with("57")
            || code.code().starts_with("58")
            || lost_citus_node(code, e.as_db_error().map_or("", |d| d.message()))
        {
            tracing::warn!(error = %e, "the database went away");
            return Self::Unavailable("the database is unavailable; try again".into());
        }
        // Class 22, data exceptions: a value PostgreSQL cannot take (a date out of range, a
        // number too large, text too long) came from the request.
        if code.code().starts_with("22") {
            return Self::invalid("", "a value is out of range or malformed");
        }
        tracing::error!(error = ?e.as_db_error().map(|d| d.message()), code = code.code(), "database error");
        Self::Internal
    }
}

/// The constraint `e` says was violated, as the schema names it (on Citus too), if any.
pub fn violated_constraint(e: &tokio_postgres::Error) -> Option<&str> {
    let name = shard_less(constraint_of(e.as_db_error()?));
    (!name.is_empty()).then_some(name)
}

/// The constraint an error names: its field, else (Citus passes a node's error on without
/// it) the quoted name in its message (`... violates unique constraint "customers_phone_key"`).
fn constraint_of(db: &tokio_postgres::error::DbError) -> &str {
    if let Some(c) = db.constraint() {
        return c;
    }
    db.message()
        .split_once("constraint \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or("", |(name, _)| name)
}

/// A constraint's name as the schema has it: on Citus the error comes from a shard, whose
/// constraints carry the shard's id (`customers_phone_key_102018`).
fn shard_less(constraint: &str) -> &str {
    match constraint.rsplit_once('_') {
        Some((name, id)) if id.len() >= 6 && id.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => constraint,
    }
}

/// Citus's coordinator reports a worker node that went away in the middle of a query as an
/// internal error (XX000) carrying libpq's words for it: the tenant's node is down, the
/// request is not at fault. Only those words count; any other internal error stays one.
fn lost_citus_node(code: &SqlState, message: &str) -> bool {
    *code == SqlState::INTERNAL_ERROR
        && (message.contains("server closed the connection unexpectedly")
            || message.starts_with("connection to the remote node"))
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::error!(error = %e, "no database connection");
        Self::Unavailable("the database is unavailable; try again".into())
    }
}

/// `medicines_name_check` → `name` (the column a CHECK or UNIQUE constraint is about, when
/// PostgreSQL's default naming makes it clear).
fn field_of(constraint: &str) -> String {
    let parts: Vec<&str> = constraint.split('_').collect();
    if parts.len() >= 3 && matches!(parts.last(), Some(&"check" | &"key")) {
        // table is usually 1 word (e.g. "medicines") or 2 ("stock_movements"); the column
        // is what is between; a good enough guess for a hint.
        let inner = &parts[1..parts.len() - 1];
        return inner.join("_");
    }
    String::new()
}

fn readable(constraint: &str) -> String {
    constraint.replace('_', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_leave_constraint_names() {
        assert_eq!(
            shard_less("customers_phone_key_102018"),
            "customers_phone_key"
        );
        assert_eq!(shard_less("customers_phone_key"), "customers_phone_key");
        assert_eq!(shard_less("batches_check_1"), "batches_check_1");
        assert_eq!(shard_less(""), "");
    }

    #[test]
    fn a_lost_node_is_told_from_other_internal_errors() {
        let internal = SqlState::INTERNAL_ERROR;
        assert!(lost_citus_node(
            &internal,
            "server closed the connection unexpectedly\n\tThis probably means..."
        ));
        assert!(lost_citus_node(
            &internal,
            "connection to the remote node t_x@/run/node1:5433 failed"
        ));
        assert!(!lost_citus_node(
            &internal,
            "could not create distributed plan"
        ));
        assert!(!lost_citus_node(
            &SqlState::UNIQUE_VIOLATION,
            "server closed the connection unexpectedly"
        ));
    }
}
