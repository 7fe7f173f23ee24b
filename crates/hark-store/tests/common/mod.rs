//! The fixture every contract suite shares: a fresh store per test on each backend.

#![allow(dead_code)]

use std::sync::Arc;

use hark_store::*;
use serde_json::{Map, Value};

pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub env: String,
    pub _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = connect(&url).await.expect("sqlite store");
    fixture(store, Some(dir)).await
}

pub async fn postgres() -> Fixture {
    let url = testing::fresh_postgres_database()
        .await
        .expect("fresh postgres database");
    let store = connect(&url).await.expect("postgres store");
    fixture(store, None).await
}

pub async fn fixture(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) -> Fixture {
    store.ensure_default_environments(1).await.expect("envs");
    let env = store
        .environment_by_slug("development")
        .await
        .expect("lookup")
        .expect("development exists")
        .id;
    Fixture {
        store,
        env,
        _dir: dir,
    }
}

/// The first page of `size` entries.
pub fn first_page(size: i64) -> PageRequest {
    PageRequest {
        page_size: size,
        ..Default::default()
    }
}

pub fn props(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

#[macro_export]
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )*
        }
        mod on_postgres {
            $( #[tokio::test] async fn $name() { super::$name(super::postgres().await).await } )*
        }
    };
}
