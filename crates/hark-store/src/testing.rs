//! Helpers for tests that need a real database: a fresh SQLite file or a fresh
//! PostgreSQL database per test.

use sqlx::Connection;

use crate::error::StoreError;

/// The PostgreSQL server tests use: `HARK_TEST_POSTGRES_URL`, or the local one.
pub fn postgres_base_url() -> String {
    std::env::var("HARK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_postgres_database() -> Result<String, StoreError> {
    let base = postgres_base_url();
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .map_err(StoreError::db("connect to test postgres"))?;
    let name = format!("hark_t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .map_err(StoreError::db("create test database"))?;
    let (prefix, _) = base
        .rsplit_once('/')
        .ok_or_else(|| StoreError::BadUrl(base.clone()))?;
    Ok(format!("{prefix}/{name}"))
}
