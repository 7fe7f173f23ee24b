//! The PostgreSQL backend: one pool; claims use `FOR UPDATE SKIP LOCKED` so any number of
//! nodes can share the job table.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::error::StoreError;
use crate::rows::{Column, Rows};

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

/// How a feed page (one recipient's messages on one channel) and its counts name their
/// environment, and how the page orders and compares ids: in the "C" collation, as
/// `messages_feed` holds them (migration 0015). No other index holds either
/// (`messages_env`, the primary key and `messages_object_recipient` use the column's
/// own collation), so any plan for a page, even the one PostgreSQL keeps for all values
/// after a connection's first calls, made while the table was empty or with no
/// statistics, reads the newest entries of one range of `messages_feed`. Before, such a
/// plan walked `messages_env` or the primary key past every other recipient's messages,
/// so pages were planned on every call. Both collations compare text byte by byte for
/// equality; only the page order is "C"'s.
pub const FEED_ENVIRONMENT: &str = "environment_id COLLATE \"C\"";
pub const FEED_ID: &str = "id COLLATE \"C\"";

/// The run's `state` (JSON text) with `batch` set to the JSON text bound to `$4`.
pub const STATE_WITH_BATCH_SQL: &str = "(jsonb_set(state::jsonb, '{batch}', ($4)::jsonb))::text";

/// A claim needs no fsync of its own: lost to a crash, it leaves the job unclaimed, as if
/// never taken. Its transaction commits without waiting for the WAL flush; the next
/// synchronous commit flushes it along with itself.
pub const CLAIM_WITHOUT_FSYNC: (&str, Option<&str>) = ("SET LOCAL synchronous_commit = off", None);

/// Reads jobs' current leases by id (the comparison with the ids goes between the two
/// parts) and row-locks them until the transaction ends, so no claim can take them over
/// meanwhile. A lock writes no new row version, unlike an `UPDATE`, which keeps the
/// churning job table and its indexes smaller.
pub const LOCK_JOBS_SQL: (&str, &str) = ("SELECT id, lease FROM jobs WHERE id", " FOR UPDATE");

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

/// `rows` as a statement's row source: one array parameter per column, unnested (see
/// `rows`), so the statement's text is the same for any number of rows.
pub fn push_rows(qb: &mut sqlx::QueryBuilder<'_, Db>, rows: Rows) {
    // `unnest` in the select list, not `FROM UNNEST(…)`: the latter fills a tuple store
    // per column before the first row, which made a one-row insert slower than `VALUES`.
    qb.push("SELECT ");
    for (i, column) in rows.into_columns().into_iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        qb.push("unnest(");
        match column {
            Column::Text(values) => qb.push_bind(values).push("::text[]"),
            Column::Int(values) => qb.push_bind(values).push("::int8[]"),
        };
        qb.push(format!(") AS column{}", i + 1));
    }
}

/// Rows found by a list of keys are looked up one key at a time (`LATERAL` over a
/// `VALUES` list of the keys; see `sql_impl::listing::BoundKeys`): a plain `key IN (…)`
/// got a plan, made while the table was nearly empty and kept for later calls, that read
/// the whole range of the other terms (or the whole table) and filtered it.
pub const PROBE_EACH_KEY: bool = true;

/// New in-app messages are announced to every node by `NOTIFY` from the statement that
/// inserts them, delivered only if the transaction commits.
pub const FEED_EVENTS_BY_NOTIFY: bool = true;

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
    use crate::rows::{sample_rows, sample_rows_read_back, SampleRow};
    use sqlx::Connection;

    async fn backend_pid(store: &PostgresStore) -> Result<i32, StoreError> {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *store.reader().acquire().await?)
            .await
            .map_err(StoreError::db("backend pid"))
    }

    #[test]
    fn a_row_source_reads_the_same_for_any_number_of_rows() {
        let text = |n| {
            let mut qb = sqlx::QueryBuilder::<Db>::new("INSERT INTO t (a, b, c) ");
            push_rows(&mut qb, sample_rows(n));
            qb.push(" ON CONFLICT DO NOTHING RETURNING a");
            qb.sql().to_string()
        };
        assert_eq!(text(1), text(500));
        assert!(
            text(1).contains("unnest($1::text[]) AS column1, unnest($2::int8[]) AS column2"),
            "{}",
            text(1)
        );
    }

    #[tokio::test]
    async fn rows_bound_as_arrays_arrive_whole() -> Result<(), Box<dyn std::error::Error>> {
        let url = crate::testing::fresh_postgres_database().await?;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        sqlx::query("CREATE TABLE t (a TEXT NOT NULL, b BIGINT, c TEXT)")
            .execute(&mut conn)
            .await?;
        let mut insert = sqlx::QueryBuilder::<Db>::new("INSERT INTO t (a, b, c) ");
        push_rows(&mut insert, sample_rows(3));
        insert.build().execute(&mut conn).await?;
        let found: Vec<SampleRow> = sqlx::query_as("SELECT a, b, c FROM t ORDER BY a")
            .fetch_all(&mut conn)
            .await?;
        assert_eq!(found, sample_rows_read_back());
        Ok(())
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

    async fn prepare(
        conn: &mut sqlx::PgConnection,
        name: &str,
        statement: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(&format!("PREPARE {name} AS {statement}"))
            .execute(&mut *conn)
            .await
            .map(|_| ())
    }

    /// The plan of prepared statement `name` run with `values`, as `plan_cache_mode`
    /// chooses it.
    async fn plan_of(
        conn: &mut sqlx::PgConnection,
        name: &str,
        values: &str,
    ) -> Result<String, sqlx::Error> {
        let lines: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE {name}{values}"))
            .fetch_all(&mut *conn)
            .await?;
        Ok(lines.join("\n"))
    }

    /// Whether `plan` scans `index` (an index or a bitmap index scan).
    fn reads_index(plan: &str, index: &str) -> bool {
        plan.contains(&format!("using {index}")) || plan.contains(&format!("on {index}"))
    }

    /// Prepares a feed page's two statements afresh (named after `round`), so that their
    /// plans are made on the table as it is now, and returns each one's plan as
    /// PostgreSQL keeps it for all values and as it plans it for the values at hand.
    async fn feed_plans(
        conn: &mut sqlx::PgConnection,
        round: usize,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        let (feed, counts) = super::imp::feed_page_statements();
        let statements = [
            (
                format!("feed_page_{round}"),
                feed,
                "('env', 'u', '', 'in-app-feed', 51)",
            ),
            (
                format!("feed_counts_{round}"),
                counts,
                "('env', 'u', '', 'in-app-feed')",
            ),
            (
                format!("feed_read_{round}"),
                super::imp::feed_read_statement_sql(),
                "('env', 'u', '', 'in-app-feed', 'env', 'u', 'env', 'u', '', 'in-app-feed', 51)",
            ),
        ];
        for (name, statement, _) in &statements {
            prepare(conn, name, statement).await?;
        }
        let mut found = Vec::new();
        for mode in ["force_generic_plan", "force_custom_plan"] {
            sqlx::query(&format!("SET plan_cache_mode = {mode}"))
                .execute(&mut *conn)
                .await?;
            for (name, _, values) in &statements {
                let plan = plan_of(conn, name, values).await?;
                found.push((format!("{name}, {mode}"), plan));
            }
        }
        Ok(found)
    }

    #[tokio::test]
    async fn a_feed_page_and_its_counts_read_one_range_of_the_feed_index(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let url = crate::testing::fresh_postgres_database().await?;
        let _store = PostgresStore::connect(&url).await?;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        // The plans a feed page's statements get: the one PostgreSQL keeps for all values
        // after a connection's first calls, made on an empty table; then, over 3,000 rows
        // with no statistics (as before the first ANALYZE) and again with statistics,
        // that one and the one for the values at hand.
        let mut all = feed_plans(&mut conn, 0).await?;
        // Recipient `u` has 600 messages on the feed's channel and 600 on another; an
        // object of the same id has 600 more; 1,200 belong to others.
        sqlx::query(
            "INSERT INTO messages (id, environment_id, recipient_run_id, workflow_run_id, \
             step_ref, workflow_key, workflow_version, categories, channel_key, channel_type, \
             recipient_id, actors, status, content, data, inserted_at, updated_at, \
             recipient_collection) \
             SELECT lpad(n::text, 8, '0'), 'env', 'run-' || n, 'wr', 's', 'w', 1, '[]', \
             CASE WHEN n % 2 = 0 THEN 'in-app-feed' ELSE 'other' END, 'in_app_feed', \
             CASE WHEN n % 5 < 3 THEN 'u' ELSE 'v-' || n END, '[]', 'sent', '{}', '{}', n, n, \
             CASE WHEN n % 5 = 2 THEN 'projects' ELSE '' END \
             FROM generate_series(1, 3000) AS n",
        )
        .execute(&mut conn)
        .await?;
        all.extend(feed_plans(&mut conn, 1).await?);
        sqlx::query("ANALYZE messages").execute(&mut conn).await?;
        all.extend(feed_plans(&mut conn, 2).await?);
        // Statistics gathered while one recipient held every message (a new database's
        // first ANALYZE): by them, walking any index in id order finds a page at once.
        // Only `messages_feed` holds ids in a feed page's order, so the page still reads
        // its range (its counts may read the whole table while that is so; they are
        // planned again when the statistics change).
        sqlx::query(
            "DELETE FROM messages WHERE recipient_id <> 'u' OR recipient_collection <> '' \
             OR channel_key <> 'in-app-feed'",
        )
        .execute(&mut conn)
        .await?;
        sqlx::query("ANALYZE messages").execute(&mut conn).await?;
        all.extend(
            feed_plans(&mut conn, 3)
                .await?
                .into_iter()
                .filter(|(name, _)| name.starts_with("feed_page")),
        );
        for (name, plan) in all {
            if name.starts_with("feed_read") {
                // The route's one statement: the counts and the page each read that
                // range, the user its key, and nothing is sorted.
                assert_eq!(plan.matches("messages_feed").count(), 2, "{name}: {plan}");
                assert!(reads_index(&plan, "users_pkey"), "{name}: {plan}");
                assert!(!plan.contains("Seq Scan"), "{name}: {plan}");
                assert!(!plan.contains("Sort"), "{name}: {plan}");
                for terms in plan
                    .lines()
                    .filter(|line| line.contains("Index Cond") && line.contains("channel_key"))
                {
                    assert!(terms.contains("recipient_collection"), "{name}: {plan}");
                }
                continue;
            }
            // Every term of the read is in the index, in order: a page is the newest
            // entries of one range, and the counts read that range and no other rows.
            assert!(reads_index(&plan, "messages_feed"), "{name}: {plan}");
            let terms = plan
                .lines()
                .find(|line| line.contains("Index Cond"))
                .unwrap_or_default();
            for column in [
                "environment_id",
                "recipient_collection",
                "recipient_id",
                "channel_key",
            ] {
                assert!(terms.contains(column), "{name}: {plan}");
            }
            assert!(!plan.contains("Sort"), "{name}: {plan}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_plan_kept_for_any_keys_probes_the_index_per_key_even_made_on_empty_tables(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let url = crate::testing::fresh_postgres_database().await?;
        let _store = PostgresStore::connect(&url).await?;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        // The plan PostgreSQL keeps for every later call, made while the tables are empty
        // and have no statistics: the one a new database gets.
        sqlx::query("SET plan_cache_mode = force_generic_plan")
            .execute(&mut conn)
            .await?;
        for (name, statement, values, index) in super::imp::key_list_statements() {
            prepare(&mut conn, name, &statement).await?;
            let plan = plan_of(&mut conn, name, values).await?;
            assert!(reads_index(&plan, index), "{name}: {plan}");
            assert!(!plan.contains("Seq Scan"), "{name}: {plan}");
            // Each key is a term of an index scan, not a filter over a wider range.
            let key_terms = plan
                .lines()
                .filter(|line| line.contains("Index Cond"))
                .any(|line| line.contains("= \"*VALUES*\".column1)"));
            assert!(key_terms, "{name}: {plan}");
            assert!(!plan.contains("Filter"), "{name}: {plan}");
        }
        Ok(())
    }
}
