//! New in-app feed messages as an in-process stream, fed from every node.
//!
//! The transaction that inserts an in-app message also records a [`FeedEvent`]. On
//! PostgreSQL it issues `NOTIFY hark_feed, '<event json>'`, which the database delivers
//! only when that transaction commits, to every node listening on the channel (the
//! node that created the message included). Each node runs one `LISTEN` connection that
//! forwards notifications into a local broadcast channel; realtime sockets subscribe to
//! that. SQLite is single-node, so its store publishes straight into the broadcast
//! channel after the commit.

use std::sync::{Arc, Once};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::{Pool, Postgres};
use tokio::sync::{broadcast, watch};

/// The PostgreSQL notification channel carrying [`FeedEvent`]s as JSON.
pub const FEED_CHANNEL: &str = "hark_feed";

/// How many events a slow subscriber may fall behind before it is told it lagged.
const BUFFERED_EVENTS: usize = 4096;

/// Pause before reopening a `LISTEN` connection that failed to open.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// One committed in-app message, as much as a socket needs to decide who to tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedEvent {
    pub environment_id: String,
    /// The channel's key (messages record the key, not the channel id).
    pub channel_key: String,
    pub recipient_id: String,
    pub message_id: String,
}

impl FeedEvent {
    pub fn of(message: &crate::model::NewMessage) -> Self {
        FeedEvent {
            environment_id: message.environment_id.clone(),
            channel_key: message.channel_key.clone(),
            recipient_id: message.recipient_id.clone(),
            message_id: message.id.clone(),
        }
    }
}

/// The per-node broadcast of [`FeedEvent`]s. Cheap to clone.
#[derive(Clone)]
pub struct FeedEventHub {
    sender: broadcast::Sender<FeedEvent>,
    /// PostgreSQL only: the pool the `LISTEN` connection comes from, started on the first
    /// subscription so that nodes with no sockets hold no extra connection.
    listener_pool: Option<Pool<Postgres>>,
    listener_started: Arc<Once>,
    /// True while events from every node reach `sender`: always on SQLite; on PostgreSQL
    /// once `LISTEN` has been issued.
    listening: Arc<watch::Sender<bool>>,
}

impl FeedEventHub {
    /// A hub whose events are published locally after each commit (SQLite).
    pub fn local() -> Self {
        Self {
            sender: broadcast::channel(BUFFERED_EVENTS).0,
            listener_pool: None,
            listener_started: Arc::new(Once::new()),
            listening: Arc::new(watch::channel(true).0),
        }
    }

    /// A hub fed by `LISTEN hark_feed` on a connection from `pool` (PostgreSQL).
    pub fn listening(pool: Pool<Postgres>) -> Self {
        Self {
            listener_pool: Some(pool),
            listening: Arc::new(watch::channel(false).0),
            ..Self::local()
        }
    }

    /// Delivers committed events to this node's subscribers.
    pub fn publish(&self, events: Vec<FeedEvent>) {
        for event in events {
            // An error only means nobody is subscribed right now.
            let _ = self.sender.send(event);
        }
    }

    /// A receiver of every event committed from now on (on any node, for PostgreSQL).
    /// Must be called within a Tokio runtime.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        let receiver = self.sender.subscribe();
        if let Some(pool) = &self.listener_pool {
            self.listener_started.call_once(|| {
                tokio::spawn(listen(
                    pool.clone(),
                    self.sender.clone(),
                    self.listening.clone(),
                ));
            });
        }
        receiver
    }

    /// Resolves once events committed from now on are sure to arrive. A socket waits for
    /// this before answering joins, so a client never misses a message committed after
    /// its join was acknowledged.
    pub async fn ready(&self) {
        let mut state = self.listening.subscribe();
        // An error means the sender is gone, which only happens at shutdown.
        let _ = state.wait_for(|listening| *listening).await;
    }
}

/// Forwards `hark_feed` notifications into `sender` for the life of the process,
/// reconnecting when the connection drops. Notifications sent while disconnected are
/// lost; clients refetch on their next event or reconnect, so the feed itself stays
/// correct.
async fn listen(
    pool: Pool<Postgres>,
    sender: broadcast::Sender<FeedEvent>,
    listening: Arc<watch::Sender<bool>>,
) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "feed events: cannot open LISTEN connection; retrying");
                tokio::time::sleep(RELISTEN_DELAY).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(FEED_CHANNEL).await {
            tracing::warn!(%error, "feed events: LISTEN failed; retrying");
            tokio::time::sleep(RELISTEN_DELAY).await;
            continue;
        }
        listening.send_replace(true);
        loop {
            // `try_recv` reports a dropped connection as `None`; the next call reconnects
            // and re-issues LISTEN.
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    match serde_json::from_str::<FeedEvent>(notification.payload()) {
                        Ok(event) => {
                            let _ = sender.send(event);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "feed events: ignoring malformed notification")
                        }
                    }
                }
                Ok(None) => {
                    tracing::warn!(
                        "feed events: LISTEN connection lost; reconnecting (events in the gap are not pushed)"
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, "feed events: LISTEN connection failed; reopening");
                    tokio::time::sleep(RELISTEN_DELAY).await;
                    break;
                }
            }
        }
    }
}
