use std::panic::Location;

/// Database error codes that mean "not now" rather than "never": the API answers them
/// with 503 and `Retry-After`, and never with a 2xx for unstored work.
/// SQLite: busy (5), locked (6), I/O error (10), disk full (13). PostgreSQL: serialization
/// failure, deadlock, disk full, out of memory, too many connections, admin shutdown,
/// cannot connect now.
const TRANSIENT_CODES: &[&str] = &[
    "5", "6", "10", "13", "40001", "40P01", "53100", "53200", "53300", "57P01", "57P03",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error in {operation} (at {location}): {source}")]
    Database {
        operation: &'static str,
        location: &'static Location<'static>,
        #[source]
        source: sqlx::Error,
    },
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt in {operation}: {detail}")]
    Corrupt {
        operation: &'static str,
        detail: String,
    },
    #[error("invalid database url: {0}")]
    BadUrl(String),
    /// A transient failure reported on behalf of a shared operation (group commit).
    #[error("the database is temporarily unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Wraps a driver error with the operation it happened in and the caller's location.
    #[track_caller]
    pub fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        let location = Location::caller();
        move |source| StoreError::Database {
            operation,
            location,
            source,
        }
    }

    /// True for errors a caller may retry (busy database, lost connection).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database { source, .. } => {
                matches!(
                    source,
                    sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
                ) || source
                    .as_database_error()
                    .and_then(|e| e.code())
                    .is_some_and(|c| TRANSIENT_CODES.contains(&c.as_ref()))
            }
            StoreError::Unavailable(_) => true,
            _ => false,
        }
    }
}
