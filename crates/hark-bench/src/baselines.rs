//! The baselines figures are printed next to, measured in the same run on the same
//! machine: an empty HTTP route, raw single-row commits, raw batched inserts.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use sqlx::Connection;

use crate::measure::{closed_loop, Figure};

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
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("raw.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await?;
        sqlx::query("PRAGMA journal_mode=WAL")
            .execute(&mut conn)
            .await?;
        sqlx::query("PRAGMA synchronous=FULL")
            .execute(&mut conn)
            .await?;
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
            let url = format!("sqlite://{}?mode=rwc", dir.join("raw.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await?;
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&mut conn)
                .await?;
            sqlx::query("PRAGMA synchronous = FULL")
                .execute(&mut conn)
                .await?;
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
