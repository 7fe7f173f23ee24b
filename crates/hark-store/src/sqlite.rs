//! The embedded SQLite backend: WAL, `synchronous=FULL`, one writer connection (so every
//! write transaction is serialized without `SQLITE_BUSY` upgrades) and a pool of readers.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::StoreError;
use crate::rows::{Column, Rows};

pub type Db = sqlx::Sqlite;

/// Whether every write goes through one connection.
pub const SINGLE_WRITER: bool = true;

pub const BACKEND_NAME: &str = "sqlite";

/// Connections reads hand on without the pool's check (see `sql_impl::connections`): all
/// of the read-only pool's. The writer's one connection is held apart (`sql_impl::writer`).
pub const KEPT_CONNECTIONS: Option<usize> = Some(READERS as usize);

/// Read-only connections (WAL readers run beside the writer).
const READERS: u32 = 4;

/// Several statements go to SQLite as one `;`-separated script (see `sql_impl::chain`).
pub const STATEMENTS_AS_SCRIPT: bool = true;

/// SQLite has no row locks; the single writer connection already serializes claims.
/// Appended to a `SELECT` that must lock the rows it reads until the transaction ends.
/// SQLite has one writer at a time, so a row read in a write transaction stays as read.
pub const FOR_UPDATE: &str = "";

/// The run's `state` (JSON text) with `batch` set to the JSON text bound to `$4`.
pub const STATE_WITH_BATCH_SQL: &str = "json_set(state, '$.batch', json($4))";

/// A claim needs no fsync of its own: lost to a crash, it leaves the job unclaimed, as if
/// never taken. The writer runs claims with `synchronous = NORMAL` (a WAL append without
/// fsync) and goes back to `FULL`; the next durable commit carries the claim with it.
/// The second statement puts the connection back; see `claim_due_jobs`.
pub const CLAIM_WITHOUT_FSYNC: (&str, Option<&str>) = (
    "PRAGMA synchronous = NORMAL",
    Some("PRAGMA synchronous = FULL"),
);

/// How a feed page names its environment and orders ids: as any other statement. SQLite's
/// planner takes the index with the most equality terms, `messages_feed`, whatever the
/// table's size (see `postgres.rs` for why PostgreSQL's differ).
pub const FEED_ENVIRONMENT: &str = "environment_id";
pub const FEED_ID: &str = "id";

/// Reads jobs' current leases by id (the comparison with the ids goes between the two
/// parts). A write, so that a transaction starting with it takes the write lock at once
/// (waiting out another process's writer) instead of failing to upgrade a read later.
pub const LOCK_JOBS_SQL: (&str, &str) = (
    "UPDATE jobs SET lease = lease WHERE id",
    " RETURNING id, lease",
);

pub const CLAIM_JOBS_SQL: &str =
    "UPDATE jobs SET lease = $1, run_at = $2, attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM jobs WHERE run_at <= $3 ORDER BY run_at LIMIT $4) \
     RETURNING id, environment_id, kind, ref_id, attempts, lease";

/// `column.key = value` for JSON stored as text. `json_extract` maps both sides to SQL
/// values the same way, so strings, numbers, booleans and nested JSON compare as JSON.
pub fn push_json_field_eq(
    qb: &mut sqlx::QueryBuilder<'_, Db>,
    column: &str,
    key: &str,
    value: &serde_json::Value,
) {
    let path = format!("$.\"{}\"", key.replace('"', "\\\""));
    qb.push(format!("json_extract({column}, "));
    qb.push_bind(path);
    qb.push(") = json_extract(");
    qb.push_bind(value.to_string());
    qb.push(", '$')");
}

/// `rows` as a statement's row source: a `VALUES` list, a parameter per cell (see
/// `rows`).
pub fn push_rows(qb: &mut sqlx::QueryBuilder<'_, Db>, rows: Rows) {
    enum Cells {
        Text(std::vec::IntoIter<Option<String>>),
        Int(std::vec::IntoIter<Option<i64>>),
    }
    let len = rows.len();
    let mut columns: Vec<Cells> = rows
        .into_columns()
        .into_iter()
        .map(|column| match column {
            Column::Text(values) => Cells::Text(values.into_iter()),
            Column::Int(values) => Cells::Int(values.into_iter()),
        })
        .collect();
    qb.push("VALUES ");
    for row in 0..len {
        qb.push(if row == 0 { "(" } else { ", (" });
        let mut cells = qb.separated(", ");
        for column in &mut columns {
            match column {
                Cells::Text(values) => cells.push_bind(values.next().flatten()),
                Cells::Int(values) => cells.push_bind(values.next().flatten()),
            };
        }
        qb.push(")");
    }
}

/// Rows found by a list of keys are read with `key IN (…)`: SQLite's planner takes the
/// index with the most equality terms whatever the table's size.
pub const PROBE_EACH_KEY: bool = false;

/// SQLite serves one node, so feed events are published in-process after the commit.
pub const FEED_EVENTS_BY_NOTIFY: bool = false;

fn feed_event_hub(_pool: &sqlx::Pool<Db>) -> crate::feed_events::FeedEventHub {
    crate::feed_events::FeedEventHub::local()
}

// Deliberately compiled once per backend; see the crate docs.
#[allow(clippy::duplicate_mod)]
#[path = "sql_impl/mod.rs"]
mod imp;

pub use imp::SqlStore as SqliteStore;

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadUrl(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        // An embedded database's connections cannot go stale: no ping before each use,
        // which would cost a thread hand-off per statement.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.clone())
            .await
            .map_err(StoreError::db("open sqlite writer"))?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.read_only(true))
            .await
            .map_err(StoreError::db("open sqlite readers"))?;
        Ok(Self::from_pools(writer, reader))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{sample_rows, sample_rows_read_back, SampleRow};
    use crate::traits::JobStore;

    #[tokio::test]
    async fn rows_bound_as_values_arrive_whole() -> Result<(), Box<dyn std::error::Error>> {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:").await?;
        sqlx::query("CREATE TABLE t (a TEXT NOT NULL, b INTEGER, c TEXT)")
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
    async fn claims_leave_the_writer_fully_synchronous() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = fresh_store().await?;
        for _ in 0..3 {
            store.claim_due_jobs(0, 10, 1_000).await?;
        }
        // 2 is FULL: every later commit of the writer is fsync'd again.
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *store.writer().conn().await?)
            .await?;
        assert_eq!(synchronous, 2);
        Ok(())
    }

    /// A store on a new database file, with the directory that holds it (deleted on drop).
    async fn fresh_store() -> Result<(tempfile::TempDir, SqliteStore), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store =
            SqliteStore::connect(&format!("sqlite://{}/hark.db", dir.path().display())).await?;
        Ok((dir, store))
    }

    /// What SQLite plans for `sql`, one line per step.
    async fn query_plan(
        store: &SqliteStore,
        sql: &str,
    ) -> Result<String, Box<dyn std::error::Error>> {
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&mut *store.reader().acquire().await?)
            .await?;
        Ok(rows
            .iter()
            .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    #[tokio::test]
    async fn trigger_time_statements_find_runs_through_an_index(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = fresh_store().await?;
        // Both ran inside every trigger's transaction; scanning every run there made a
        // trigger's cost grow with the number of runs ever made.
        let cancel = query_plan(&store, super::imp::runs::APPLY_EARLY_CANCELLATION_SQL).await?;
        assert!(
            cancel.contains("recipient_runs USING INDEX recipient_runs_cancel"),
            "{cancel}"
        );
        let started = super::imp::workflow_signal_sql(super::imp::runs::STARTED_BY_TRIGGER);
        let started = query_plan(&store, &started).await?;
        assert!(
            started.contains("r USING INDEX recipient_runs_workflow_run"),
            "{started}"
        );
        // "SCAN r" covers the table under its own name and under the alias `r`.
        for plan in [&cancel, &started] {
            assert!(!plan.contains("SCAN r"), "{plan}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn events_and_logs_are_read_through_their_key_in_order(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = fresh_store().await?;
        // Keyed by (parent, id), each table is read in id order straight from its key:
        // neither a scan nor a sort.
        for (table, parent) in [
            ("run_events", "recipient_run_id"),
            ("message_events", "message_id"),
            ("delivery_logs", "message_id"),
        ] {
            let plan = query_plan(
                &store,
                &format!("SELECT * FROM {table} WHERE {parent} = 'p' AND id > 'c' ORDER BY id"),
            )
            .await?;
            assert!(
                plan.contains(&format!(
                    "SEARCH {table} USING INDEX sqlite_autoindex_{table}_1"
                )),
                "{plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn listings_by_trigger_go_through_its_runs() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = fresh_store().await?;
        let filter = crate::MessageFilter {
            workflow_run_id: Some("wr".into()),
            ..crate::MessageFilter::default()
        };
        let page = crate::PageRequest {
            after: Some(crate::cursor::encode("m")),
            before: None,
            page_size: 50,
        };
        // The statement `list_messages` sends, with the filter and page it builds.
        let mut messages = sqlx::QueryBuilder::<Db>::new("SELECT id FROM messages");
        super::imp::push_message_filter(&mut messages, "env", &filter);
        super::imp::push_id_page(&mut messages, &page, 50).ok_or("cursor")?;
        let plan = query_plan(&store, messages.sql()).await?;
        // The trigger's runs by their index, each run's messages by their key, then a
        // sort of those few: never a walk of the environment's messages.
        assert!(
            plan.contains(
                "recipient_runs USING INDEX recipient_runs_workflow_run (workflow_run_id=?)"
            ),
            "{plan}"
        );
        assert!(
            plan.contains("messages USING INDEX sqlite_autoindex_messages_2 (recipient_run_id=?)"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN"), "{plan}");

        let mut runs = sqlx::QueryBuilder::<Db>::new("SELECT id FROM recipient_runs WHERE ");
        super::imp::runs::push_runs_of_environment(&mut runs, "env", Some("wr"));
        super::imp::push_id_page(&mut runs, &page, 50).ok_or("cursor")?;
        let plan = query_plan(&store, runs.sql()).await?;
        assert!(
            plan.contains("recipient_runs USING INDEX recipient_runs_workflow_run"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN"), "{plan}");
        Ok(())
    }

    #[tokio::test]
    async fn a_feed_page_and_its_counts_read_one_range_of_the_feed_index(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = fresh_store().await?;
        let (feed, counts) = super::imp::feed_page_statements();
        let range = "messages USING INDEX messages_feed (environment_id=? AND \
                     recipient_collection=? AND recipient_id=? AND channel_key=?";
        for statement in [feed, counts] {
            let plan = query_plan(&store, &statement).await?;
            assert!(plan.contains(range), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
        // The feed route's one statement reads the same: the counts and the page each
        // from that range, the user by its key, and sorts nothing.
        let plan = query_plan(&store, &super::imp::feed_read_statement_sql()).await?;
        assert_eq!(plan.matches(range).count(), 2, "{plan}");
        assert!(
            plan.contains("users USING INDEX sqlite_autoindex_users_1"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN messages"), "{plan}");
        assert!(!plan.contains("SCAN users"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        Ok(())
    }

    #[tokio::test]
    async fn rows_found_by_a_list_of_keys_are_read_through_indexes(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = fresh_store().await?;
        for (name, statement, _, _) in super::imp::key_list_statements() {
            let plan = query_plan(&store, &statement).await?;
            // Each statement's table is searched by its key, never scanned (the bound
            // rows themselves are).
            assert!(plan.contains("SEARCH"), "{name}: {plan}");
            let scans_a_table = plan
                .lines()
                .any(|line| line.contains("SCAN") && !line.contains("VALUES CLAUSE"));
            assert!(!scans_a_table, "{name}: {plan}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn merging_a_user_reads_its_rows_through_indexes(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = fresh_store().await?;
        for statement in super::imp::users::MERGE_RECIPIENT_ROWS {
            let plan = query_plan(&store, statement).await?;
            // Neither the environment's rows nor every message event: only the user's.
            assert!(!plan.contains("SCAN"), "{statement}\n{plan}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_discarded_writer_connection_is_replaced() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = fresh_store().await?;
        let writer = store.writer();
        let mut conn = writer.conn().await?;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
        writer.discard(conn);
        // A fresh connection, back at FULL (2); the relaxed one is never handed on.
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *writer.conn().await?)
            .await?;
        assert_eq!(synchronous, 2);
        // Handed on, not discarded, the same connection keeps its setting.
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *writer.conn().await?)
            .await?;
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *writer.conn().await?)
            .await?;
        assert_eq!(synchronous, 1);
        Ok(())
    }

    #[tokio::test]
    async fn read_connections_are_handed_on_within_the_pool_size(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = fresh_store().await?;
        let store = std::sync::Arc::new(store);
        // More readers at once than connections: each waits its turn, none forever.
        let mut readers = tokio::task::JoinSet::new();
        for n in 0..16_i64 {
            let store = store.clone();
            readers.spawn(async move {
                let mut conn = store.reader().acquire().await?;
                let echoed: i64 = sqlx::query_scalar("SELECT $1")
                    .bind(n)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(crate::error::StoreError::db("echo"))?;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Ok::<_, crate::error::StoreError>(echoed == n)
            });
        }
        let all = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            let mut answered = 0;
            while let Some(done) = readers.join_next().await {
                if done?? {
                    answered += 1;
                }
            }
            Ok::<_, Box<dyn std::error::Error>>(answered)
        })
        .await??;
        assert_eq!(all, 16);
        // The connection handed back last is handed on next, straight from the idle list
        // (the pool would hand out the one idle longest), session and all.
        sqlx::query("PRAGMA cache_size = -777")
            .execute(&mut *store.reader().acquire().await?)
            .await?;
        let cache_size: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&mut *store.reader().acquire().await?)
            .await?;
        assert_eq!(cache_size, -777);
        Ok(())
    }
}
