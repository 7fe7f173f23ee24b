//! The PostgreSQL backend: one pool; claims use `FOR UPDATE SKIP LOCKED` so any number of
//! nodes can share the job table.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::error::StoreError;

pub type Db = sqlx::Postgres;

/// Pooled connections idle at least this long are pinged before use.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(10);

/// Whether every write goes through one connection.
pub const SINGLE_WRITER: bool = false;

pub const BACKEND_NAME: &str = "postgres";

/// Connections reads and writes hand on without the pool's check (see
/// `sql_impl::connections`): the pool's size less room for this node's two `LISTEN`
/// connections (job wake-ups, feed events) and the wake-up `NOTIFY`s.
pub const KEPT_CONNECTIONS: Option<usize> = Some(POOL_SIZE as usize - 4);

/// Connections per node.
const POOL_SIZE: u32 = 16;

/// Several statements go to PostgreSQL as data-modifying CTEs of one statement (see
/// `sql_impl::chain`): the extended protocol takes one statement per request.
pub const STATEMENTS_AS_SCRIPT: bool = false;

/// Appended to a `SELECT` that must lock the rows it reads until the transaction ends.
/// Row locks make concurrent batch joins and closes take turns.
pub const FOR_UPDATE: &str = " FOR UPDATE";

/// The run's `state` (JSON text) with `batch` set to the JSON text bound to `$4`.
pub const STATE_WITH_BATCH_SQL: &str = "(jsonb_set(state::jsonb, '{batch}', ($4)::jsonb))::text";

/// A claim needs no fsync of its own: lost to a crash, it leaves the job unclaimed, as if
/// never taken. Its transaction commits without waiting for the WAL flush; the next
/// synchronous commit flushes it along with itself.
pub const CLAIM_WITHOUT_FSYNC: (&str, Option<&str>) = ("SET LOCAL synchronous_commit = off", None);

/// Reads jobs' current leases by id (the list goes between the two parts) and row-locks
/// them until the transaction ends, so no claim can take them over meanwhile. A lock
/// writes no new row version, unlike an `UPDATE`, which keeps the churning job table and
/// its indexes smaller.
pub const LOCK_JOBS_SQL: (&str, &str) =
    ("SELECT id, lease FROM jobs WHERE id IN (", ") FOR UPDATE");

pub const CLAIM_JOBS_SQL: &str = "UPDATE jobs SET lease = $1, run_at = $2, attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM jobs WHERE run_at <= $3 ORDER BY run_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
     RETURNING id, environment_id, kind, ref_id, attempts, lease";

/// `column.key = value` for JSON stored as text, compared as `jsonb`.
pub fn push_json_field_eq(
    qb: &mut sqlx::QueryBuilder<'_, Db>,
    column: &str,
    key: &str,
    value: &serde_json::Value,
) {
    qb.push(format!("(({column})::jsonb -> "));
    qb.push_bind(key.to_string());
    qb.push(") = (");
    qb.push_bind(value.to_string());
    qb.push(")::jsonb");
}

/// Announces a new in-app message to every node: `$1` is the channel, `$2` the event
/// JSON. Delivered only if the transaction commits.
pub const FEED_NOTIFY_SQL: Option<&str> = Some("SELECT pg_notify($1, $2)");

/// Feed events arrive through `LISTEN`, from this node and every other.
fn feed_event_hub(pool: &sqlx::Pool<Db>) -> crate::feed_events::FeedEventHub {
    crate::feed_events::FeedEventHub::listening(pool.clone())
}

// Deliberately compiled once per backend; see the crate docs.
#[allow(clippy::duplicate_mod)]
#[path = "sql_impl/mod.rs"]
mod imp;

pub use imp::SqlStore as PostgresStore;

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(60))
            // A ping on every acquire would double the round trips of single statements;
            // only a connection idle long enough to have been dropped is checked first.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE_FOR {
                        sqlx::Connection::ping(connection).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::db("open postgres pool"))?;
        // Two nodes starting together would race on the migrations table; an advisory lock
        // held by sqlx's migrator serializes them.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let wakeups = crate::wakeups::JobWakeups::start(pool.clone());
        Ok(Self::from_pools(pool.clone(), pool).with_job_wakeups(wakeups))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    async fn backend_pid(store: &PostgresStore) -> Result<i32, StoreError> {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *store.reader().acquire().await?)
            .await
            .map_err(StoreError::db("backend pid"))
    }

    #[tokio::test]
    async fn a_kept_connection_the_server_closed_is_replaced(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let url = crate::testing::fresh_postgres_database().await?;
        let store = PostgresStore::connect(&url).await?;
        let first = backend_pid(&store).await?;
        // Handed on without the pool's check, the same connection serves the next read.
        assert_eq!(backend_pid(&store).await?, first);
        let mut admin = sqlx::PgConnection::connect(&url).await?;
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(first)
            .execute(&mut admin)
            .await?;
        // Reads on the dead connection fail until it goes back through the pool's check,
        // which closes it; then a fresh connection answers.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let replaced = loop {
            match backend_pid(&store).await {
                Ok(pid) => break pid,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        assert_ne!(replaced, first);
        Ok(())
    }
}
