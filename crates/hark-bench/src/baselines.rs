//! The baselines figures are printed next to, measured in the same run on the same
//! machine: an empty HTTP route, raw single-row commits, raw batched inserts.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use sqlx::Connection;

use crate::measure::{closed_loop, Figure};

/// One SQLite connection set up like Hark's writer: WAL, and every commit synced.
async fn durable_sqlite(path: &std::path::Path) -> anyhow::Result<sqlx::SqliteConnection> {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await?;
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&mut conn)
        .await?;
    sqlx::query("PRAGMA synchronous = FULL")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

pub async fn empty_route_baseline(clients: usize, seconds: u64) -> anyhow::Result<Figure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let app = axum::Router::new().route("/", axum::routing::post(|| async { "{}" }));
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/");
    Ok(closed_loop(clients, seconds, move |_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(&url)
                .json(&json!({"recipients": ["u"]}))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await)
}

/// Single-row insert transactions, each committed durably, on the same database kind.
pub async fn raw_commit_baseline(
    store: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Figure> {
    let dir = tempfile::tempdir()?;
    if store == "sqlite" {
        let mut conn = durable_sqlite(&dir.path().join("raw.db")).await?;
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            .execute(&mut conn)
            .await?;
        let conn = Arc::new(tokio::sync::Mutex::new(conn));
        // SQLite has one writer: clients queue on the connection, as they do in Hark.
        let fig = closed_loop(clients, seconds, move |n| {
            let conn = conn.clone();
            async move {
                let mut c = conn.lock().await;
                sqlx::query("INSERT INTO t (id, v) VALUES ($1, 'x')")
                    .bind(n as i64)
                    .execute(&mut *c)
                    .await
                    .is_ok()
            }
        })
        .await;
        Ok(fig)
    } else {
        let url = hark_store::testing::fresh_postgres_database().await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(clients.min(32) as u32)
            .connect(&url)
            .await?;
        sqlx::query("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
            .execute(&pool)
            .await?;
        Ok(closed_loop(clients, seconds, move |n| {
            let pool = pool.clone();
            async move {
                sqlx::query("INSERT INTO t (id, v) VALUES ($1, 'x')")
                    .bind(n as i64)
                    .execute(&pool)
                    .await
                    .is_ok()
            }
        })
        .await)
    }
}

/// The same number of rows written as fast as the database takes them: 500-row
/// multi-row inserts, one transaction each, into a plain table.
pub async fn raw_batched_insert_rate(
    kind: &str,
    dir: &std::path::Path,
    rows: usize,
) -> anyhow::Result<Figure> {
    let ids: Vec<String> = (0..rows).map(|i| format!("row-{i:07}")).collect();
    let started;
    match kind {
        "sqlite" => {
            let mut conn = durable_sqlite(&dir.join("raw.db")).await?;
            sqlx::query("CREATE TABLE raw (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
                .execute(&mut conn)
                .await?;
            started = Instant::now();
            for chunk in ids.chunks(500) {
                let mut tx = conn.begin().await?;
                let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO raw (id, body) ");
                qb.push_values(chunk, |mut b, id| {
                    b.push_bind(id).push_bind("{}");
                });
                qb.build().execute(&mut *tx).await?;
                tx.commit().await?;
            }
        }
        _ => {
            let url = hark_store::testing::fresh_postgres_database().await?;
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            sqlx::query("CREATE TABLE raw (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
                .execute(&mut conn)
                .await?;
            started = Instant::now();
            for chunk in ids.chunks(500) {
                let mut tx = conn.begin().await?;
                let mut qb =
                    sqlx::QueryBuilder::<sqlx::Postgres>::new("INSERT INTO raw (id, body) ");
                qb.push_values(chunk, |mut b, id| {
                    b.push_bind(id).push_bind("{}");
                });
                qb.build().execute(&mut *tx).await?;
                tx.commit().await?;
            }
        }
    }
    Ok(Figure::rate(rows as u64, started.elapsed()))
}

/// The floor of a fan-out in Hark's own schema: for each message, only the rows any
/// fan-out must write (the recipient marked reached, its run, the message, the message's
/// first event), inserted straight into a freshly migrated database, 500 messages per
/// commit, by one connection — no jobs, no engine, no rendering. No fan-out through
/// Hark can be faster than this on the same machine.
pub async fn fan_out_floor(
    kind: &str,
    dir: &std::path::Path,
    messages: usize,
) -> anyhow::Result<Figure> {
    let recipients: Vec<String> = (0..messages).map(|i| format!("sub-{i:07}")).collect();
    let content = json!({"blocks": [{"type": "markdown", "name": "body",
        "content": "Hello {{ recipient.id }}", "rendered": "<p>Hello sub</p>"}]})
    .to_string();
    // Binds the rows of one batch; the same text for both databases.
    macro_rules! insert_batch {
        ($db:ty, $tx:expr, $chunk:expr) => {{
            let chunk = $chunk;
            let ids: Vec<(String, String, String)> = chunk
                .iter()
                .map(|_| (hark_core::new_id(), hark_core::new_id(), hark_core::new_id()))
                .collect();
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO fanout_seen (workflow_run_id, recipient_collection, recipient_id) ",
            );
            qb.push_values(chunk.iter(), |mut b, r| {
                b.push_bind("wr").push_bind("").push_bind(r.as_str());
            });
            qb.build().execute(&mut *$tx).await?;
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO recipient_runs (id, environment_id, workflow_run_id, workflow_key, \
                 workflow_version, recipient_id, actor, tenant, data, cancellation_key, status, \
                 step_cursor, error_count, inserted_at, updated_at, state, recipient_collection) ",
            );
            qb.push_values(chunk.iter().zip(&ids), |mut b, (r, (run, _, _))| {
                b.push_bind(run.as_str()).push_bind("env").push_bind("wr")
                    .push_bind("announce").push_bind(1_i64).push_bind(r.as_str())
                    .push_bind(None::<String>).push_bind(None::<String>).push_bind("{}")
                    .push_bind(None::<String>).push_bind("completed").push_bind(1_i64)
                    .push_bind(0_i64).push_bind(1_i64).push_bind(1_i64).push_bind("{}")
                    .push_bind("");
            });
            qb.build().execute(&mut *$tx).await?;
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO messages (id, environment_id, recipient_run_id, workflow_run_id, \
                 step_ref, workflow_key, workflow_version, categories, channel_key, channel_type, \
                 recipient_id, actors, tenant, status, content, data, inserted_at, updated_at, \
                 recipient_collection) ",
            );
            qb.push_values(chunk.iter().zip(&ids), |mut b, (r, (run, message, _))| {
                b.push_bind(message.as_str()).push_bind("env").push_bind(run.as_str())
                    .push_bind("wr").push_bind("feed").push_bind("announce").push_bind(1_i64)
                    .push_bind("[]").push_bind("in-app-feed").push_bind("in_app_feed")
                    .push_bind(r.as_str()).push_bind("[]").push_bind(None::<String>)
                    .push_bind("delivered").push_bind(content.as_str()).push_bind("{}")
                    .push_bind(1_i64).push_bind(1_i64).push_bind("");
            });
            qb.build().execute(&mut *$tx).await?;
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO message_events (id, environment_id, message_id, recipient_id, \
                 event_type, data, inserted_at) ",
            );
            qb.push_values(chunk.iter().zip(&ids), |mut b, (r, (_, message, event))| {
                b.push_bind(event.as_str()).push_bind("env").push_bind(message.as_str())
                    .push_bind(r.as_str()).push_bind("message.delivered").push_bind("null")
                    .push_bind(1_i64);
            });
            qb.build().execute(&mut *$tx).await?;
        }};
    }
    let started;
    match kind {
        "sqlite" => {
            let path = dir.join("floor.db");
            let url = format!("sqlite://{}", path.display());
            // Hark's migrations, then a connection of its own like Hark's writer.
            drop(hark_store::connect(&url).await?);
            let mut conn = durable_sqlite(&path).await?;
            started = Instant::now();
            for chunk in recipients.chunks(500) {
                let mut tx = conn.begin().await?;
                insert_batch!(sqlx::Sqlite, tx, chunk);
                tx.commit().await?;
            }
        }
        _ => {
            let url = hark_store::testing::fresh_postgres_database().await?;
            drop(hark_store::connect(&url).await?);
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            started = Instant::now();
            for chunk in recipients.chunks(500) {
                let mut tx = conn.begin().await?;
                insert_batch!(sqlx::Postgres, tx, chunk);
                tx.commit().await?;
            }
        }
    }
    Ok(Figure::rate(messages as u64, started.elapsed()))
}
