//! Cross-node wake-ups on PostgreSQL: a trigger accepted by one node wakes the idle
//! workers of another node through `LISTEN/NOTIFY`, long before their poll would.

mod support;

use std::sync::Arc;
use std::time::Duration;

use hark_engine::{ChannelRegistry, Engine, EngineConfig};
use serde_json::json;
use support::{feed_step, Backend, TestServer};
use tokio::sync::watch;

/// Far longer than the test may take: only a wake-up can get the second node's workers
/// to claim anything after their first round.
const POLL_NEVER: Duration = Duration::from_secs(6 * 3600);

/// Generous bound for a wake-up that is expected within milliseconds; reaching it
/// means the wake-up never came.
const WAKE_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_trigger_on_one_node_wakes_the_workers_of_another() -> anyhow::Result<()> {
    // Node A: the API (its engine runs no workers).
    let node_a = TestServer::start(Backend::Postgres, vec![]).await;
    node_a
        .put_workflow("wake", json!([feed_step("feed", "hello {{ data.n }}")]))
        .await;

    // Node B: workers only, on its own store handle, polling (practically) never.
    let store_b = hark_store::connect(&node_a.database_url).await?;
    let engine_b = Engine::new(
        store_b.clone(),
        node_a.clock.clone(),
        Arc::new(ChannelRegistry::build(
            &[],
            Default::default(),
            Duration::from_secs(2),
        )?),
        EngineConfig {
            poll_interval: POLL_NEVER,
            ..EngineConfig::default()
        },
    )?;
    let (stop, stopped) = watch::channel(false);
    let workers = tokio::spawn({
        let engine_b = engine_b.clone();
        async move { engine_b.run_workers(stopped).await }
    });
    wait_for_listener(&node_a.database_url).await?;

    // Several rounds: each trigger is committed while node B's workers are asleep
    // (they finished the previous round), so each must be woken across nodes.
    for round in 1..=3_usize {
        let (status, body) = node_a
            .trigger("wake", json!({"recipients": ["ada"], "data": {"n": round}}))
            .await;
        assert_eq!(status, 200, "trigger: {body}");
        let waited = tokio::time::timeout(WAKE_TIMEOUT, async {
            loop {
                if node_a.feed_texts("ada").await.len() == round {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "round {round}: node B's workers were not woken"
        );
    }
    assert_eq!(node_a.store.pending_job_count().await?, 0);

    let _ = stop.send(true);
    workers.await?;
    Ok(())
}

/// Waits until a connection of the test database is listening on `hark_jobs`, so the
/// triggers below are not picked up by the workers' first claim instead.
async fn wait_for_listener(database_url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(database_url).await?;
    let listening = tokio::time::timeout(WAKE_TIMEOUT, async {
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query ILIKE 'LISTEN%hark_jobs%'",
            )
            .fetch_one(&mut conn)
            .await?;
            if n > 0 {
                return Ok::<_, sqlx::Error>(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    match listening {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("node B never started listening on hark_jobs"),
    }
}
