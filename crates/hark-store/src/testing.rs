//! Helpers for tests that need a real database: a fresh SQLite file or a fresh
//! PostgreSQL database per test.

use sqlx::Connection;

use crate::error::StoreError;

/// The PostgreSQL server tests use: `HARK_TEST_POSTGRES_URL`, or the local one.
pub fn postgres_base_url() -> String {
    std::env::var("HARK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Test databases are named `hark_t_{created, unix seconds}_{random}`.
const TEST_DATABASE_PREFIX: &str = "hark_t_";

/// Test databases older than this are dropped by the next test that makes one: no test
/// run lasts that long, and a test cannot drop its own database on every way out.
const STALE_AFTER_SECS: u64 = 6 * 60 * 60;

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_postgres_database() -> Result<String, StoreError> {
    let base = postgres_base_url();
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .map_err(StoreError::db("connect to test postgres"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    drop_stale_test_databases(&mut conn, now).await;
    let name = format!(
        "{TEST_DATABASE_PREFIX}{now}_{}",
        uuid::Uuid::new_v4().simple()
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .map_err(StoreError::db("create test database"))?;
    let (prefix, _) = base
        .rsplit_once('/')
        .ok_or_else(|| StoreError::BadUrl(base.clone()))?;
    Ok(format!("{prefix}/{name}"))
}

/// The creation time a test database's name carries (`None` for any other name).
fn created_at(name: &str) -> Option<u64> {
    let (secs, _) = name.strip_prefix(TEST_DATABASE_PREFIX)?.split_once('_')?;
    secs.parse().ok()
}

/// Drops the test databases created more than [`STALE_AFTER_SECS`] before `now`. Best
/// effort: one still in use, or dropped by a concurrent test run, is left alone.
async fn drop_stale_test_databases(conn: &mut sqlx::PgConnection, now: u64) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
    )
    .bind(TEST_DATABASE_PREFIX)
    .fetch_all(&mut *conn)
    .await
    else {
        return;
    };
    for name in names {
        if created_at(&name).is_some_and(|t| t + STALE_AFTER_SECS < now) {
            // The name came from the catalogue and matched the pattern: digits, letters
            // and underscores only, so it needs no quoting.
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                .execute(&mut *conn)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_test_database_names_carry_a_creation_time() {
        assert_eq!(
            created_at("hark_t_1700000000_0123abcd"),
            Some(1_700_000_000)
        );
        assert_eq!(created_at("hark_t_0123abcd"), None);
        assert_eq!(created_at("test"), None);
        assert_eq!(created_at("hark_t_x_1"), None);
    }

    #[tokio::test]
    async fn stale_test_databases_are_dropped_and_fresh_ones_kept(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut conn = sqlx::PgConnection::connect(&postgres_base_url()).await?;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        // Real times, so a concurrent test's clean-up agrees with this one's.
        let stale = format!(
            "{TEST_DATABASE_PREFIX}{}_{suffix}",
            now - STALE_AFTER_SECS - 1
        );
        let fresh = format!("{TEST_DATABASE_PREFIX}{now}_{suffix}");
        for name in [&stale, &fresh] {
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await?;
        }
        drop_stale_test_databases(&mut conn, now).await;
        let left: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname = $1 OR datname = $2",
        )
        .bind(&stale)
        .bind(&fresh)
        .fetch_all(&mut conn)
        .await?;
        assert_eq!(left, vec![fresh.clone()]);
        sqlx::query(&format!("DROP DATABASE {fresh}"))
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}
