//! Persistence for Hark: the [`Store`] traits and their two backends.
//!
//! Both backends share one implementation (`sql_impl/`), compiled once per database
//! type: the SQL text is portable (`$n` placeholders, `ON CONFLICT`, `RETURNING`, integer
//! instants, JSON as text) and only the few statements that must differ live in each
//! backend's module (`sqlite.rs`, `postgres.rs`).

pub mod cursor;
pub mod error;
pub mod feed_events;
mod group_commit;
pub mod handoff;
pub mod model;
mod postgres;
mod rows;
mod sqlite;
pub mod testing;
pub mod traits;
pub mod wakeups;

use std::sync::Arc;

pub use error::StoreError;
pub use group_commit::{
    delivery_committer, step_committer, trigger_committer, BatchLimits, DeliveryCommitter,
    GroupCommitter, StepCommitter, TriggerCommitter,
};
pub use model::*;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use traits::*;

/// Opens the store a URL names (`sqlite://PATH` or `postgres://…`) and runs migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::BadUrl(format!(
            "expected sqlite://… or postgres://…, got `{url}`"
        )))
    }
}

/// SHA-256 hex digest, used for every stored secret.
pub fn hash_secret(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}
