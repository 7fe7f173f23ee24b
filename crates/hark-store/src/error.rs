use std::panic::Location;

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
                    .is_some_and(|c| c == "5" || c == "40001" || c == "40P01")
            }
            _ => false,
        }
    }
}
