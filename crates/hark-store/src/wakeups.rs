//! Cross-node wake-ups on PostgreSQL: a node that commits due jobs announces it on the
//! `hark_jobs` channel (`NOTIFY`), and every node's engine listens (`LISTEN`) and wakes
//! its workers instead of waiting for the next poll.
//!
//! The announcement is sent after the commit, from one task per node, and coalesced:
//! while one `NOTIFY` is in flight, any number of further announcements collapse into one
//! more. It is not issued inside the committing transaction on purpose: PostgreSQL
//! serializes the commits of every transaction that notified (a database-wide lock held
//! until the commit record is flushed), which would take away the concurrent commits
//! that let many triggers share one flush. Listeners only see notifications of
//! committed transactions either way, so sending after the commit loses nothing but a
//! crash between commit and `NOTIFY`, which the workers' poll covers.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;

/// The channel due-job announcements travel on.
pub const JOBS_CHANNEL: &str = "hark_jobs";

/// Shortest spacing between two announcements of one node, so a node committing
/// thousands of triggers a second sends hundreds of `NOTIFY`s, not thousands.
const MIN_ANNOUNCE_GAP: Duration = Duration::from_millis(2);

/// How long a listener waits before reconnecting after the connection failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// One node's side of the `hark_jobs` channel: announcing and listening.
pub struct JobWakeups {
    pool: PgPool,
    /// The payload of this node's announcements, so its own listener can skip them
    /// (the engine in the same process was already woken directly).
    node: String,
    /// Capacity one: a pending announcement absorbs every later one until it is sent.
    pending: mpsc::Sender<()>,
}

impl JobWakeups {
    /// Starts the announcing task; it ends when the returned value is dropped.
    pub(crate) fn start(pool: PgPool) -> Arc<Self> {
        let node = uuid::Uuid::new_v4().simple().to_string();
        let (pending, mut requests) = mpsc::channel::<()>(1);
        let announcer_pool = pool.clone();
        let payload = node.clone();
        tokio::spawn(async move {
            while requests.recv().await.is_some() {
                if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(JOBS_CHANNEL)
                    .bind(&payload)
                    .execute(&announcer_pool)
                    .await
                {
                    // Other nodes fall back to their poll; nothing is lost.
                    tracing::debug!(error = %e, "announcing due jobs failed");
                }
                tokio::time::sleep(MIN_ANNOUNCE_GAP).await;
            }
        });
        Arc::new(Self {
            pool,
            node,
            pending,
        })
    }

    /// Tells the other nodes that jobs were committed. Never blocks or fails: at worst
    /// the announcement merges into one already pending.
    pub fn announce(&self) {
        let _ = self.pending.try_send(());
    }

    /// Listens on the channel until the returned future is dropped, calling `on_wake`
    /// for every announcement of another node. After every (re)connection it calls
    /// `on_wake` once too, because announcements sent while it was not listening are
    /// gone; a failed connection is retried after a pause.
    pub async fn listen(&self, on_wake: impl Fn() + Send + Sync) {
        loop {
            match self.listen_once(&on_wake).await {
                Ok(()) => tracing::info!("job wake-up listener lost its connection; reconnecting"),
                Err(e) => tracing::warn!(error = %e, "job wake-up listener failed; reconnecting"),
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    }

    /// One connection's worth of listening: returns when the connection is lost.
    async fn listen_once(&self, on_wake: &(impl Fn() + Send + Sync)) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        // Reconnection is ours to do, so that the wake after a reconnect is not skipped.
        listener.eager_reconnect(false);
        listener.listen(JOBS_CHANNEL).await?;
        on_wake();
        while let Some(notification) = listener.try_recv().await? {
            if notification.payload() != self.node {
                on_wake();
            }
        }
        Ok(())
    }
}
