//! The pharmacy's own particulars as every screen shows them: its name (`company`), its
//! currency (`settings`), and the database's clock (the session's time zone and today's date).

use chrono::{FixedOffset, NaiveDate, Offset, Utc};
use deadpool_postgres::GenericClient;

use crate::Result;

/// What a page's header and footer need.
#[derive(Debug, Clone)]
pub struct Letterhead {
    /// The company's name ("Apotheca" before one is entered).
    pub name: String,
    /// The currency amounts are in ("NPR" before one is set).
    pub currency: String,
    /// The database session's offset from UTC, for showing times.
    pub offset: FixedOffset,
    /// Today in the database's time zone.
    pub today: NaiveDate,
}

pub async fn letterhead(db: &impl GenericClient) -> Result<Letterhead> {
    let stmt = db
        .prepare_cached(
            "SELECT (SELECT name FROM company), (SELECT currency FROM settings),
                    extract(timezone FROM now())::int, current_date",
        )
        .await?;
    let row = db.query_one(&stmt, &[]).await?;
    Ok(Letterhead {
        name: row
            .get::<_, Option<String>>(0)
            .unwrap_or_else(|| "Apotheca".to_owned()),
        currency: row
            .get::<_, Option<String>>(1)
            .unwrap_or_else(|| "NPR".to_owned()),
        offset: FixedOffset::east_opt(row.get(2)).unwrap_or(Utc.fix()),
        today: row.get(3),
    })
}
