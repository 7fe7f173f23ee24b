//! New in-app feed messages, routed to the realtime sockets watching each feed, from
//! every node.
//!
//! The transaction that inserts an in-app message also records a [`FeedEvent`]. On
//! PostgreSQL it issues `NOTIFY hark_feed, '<event json>'`, which the database delivers
//! only when that transaction commits, to every node listening on the channel (the
//! node that created the message included). Each node runs one `LISTEN` connection that
//! hands each notification to the sockets watching its feed. SQLite is single-node, so
//! its store hands them over straight after the commit.
//!
//! Events are routed by feed rather than broadcast: a socket holds only a few of the
//! node's feeds, and waking every socket for every message (to find out it was not for
//! them) cost more than the push itself once a node held a few dozen sockets.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::{Pool, Postgres};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};

/// The PostgreSQL notification channel carrying [`FeedEvent`]s as JSON.
pub const FEED_CHANNEL: &str = "hark_feed";

/// How many events a slow watcher may fall behind before it is told it lagged.
const BUFFERED_EVENTS: usize = 1024;

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

    /// The feed the message belongs to.
    pub fn feed(&self) -> FeedKey {
        FeedKey {
            environment_id: self.environment_id.clone(),
            channel_key: self.channel_key.clone(),
            recipient_id: self.recipient_id.clone(),
        }
    }
}

/// One user's in-app feed: what a socket watches and an event is routed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeedKey {
    pub environment_id: String,
    pub channel_key: String,
    pub recipient_id: String,
}

/// What a [`FeedWatcher`] hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// A committed message in one of the watched feeds.
    Event(FeedEvent),
    /// Events for the watched feeds were dropped because the watcher fell behind; every
    /// watched feed may have changed.
    Lagged,
}

/// One watcher's inbox, as the routing table holds it.
struct Route {
    watcher: u64,
    sender: mpsc::Sender<FeedEvent>,
    lagged: Arc<AtomicBool>,
}

/// Which watchers hear of which feed. Shared by a hub's clones and its watchers.
#[derive(Default)]
struct Routes {
    by_feed: Mutex<HashMap<FeedKey, Vec<Route>>>,
    next_watcher: AtomicU64,
}

impl Routes {
    fn table(&self) -> MutexGuard<'_, HashMap<FeedKey, Vec<Route>>> {
        // Nothing panics while the lock is held, and the table stays consistent if it did.
        self.by_feed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands `event` to every watcher of its feed without waiting: a watcher whose inbox
    /// is full is marked lagged instead, so a slow socket never holds up the others.
    fn deliver(&self, event: &FeedEvent) {
        let feed = event.feed();
        let table = self.table();
        let Some(routes) = table.get(&feed) else {
            return;
        };
        for route in routes {
            match route.sender.try_send(event.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => route.lagged.store(true, Ordering::Release),
                // The watcher is being dropped; its drop removes the route.
                Err(TrySendError::Closed(_)) => {}
            }
        }
    }
}

/// A socket's subscription to the feeds it has joined. Dropping it stops the routing.
pub struct FeedWatcher {
    id: u64,
    routes: Arc<Routes>,
    /// Kept so the inbox never reports closed while nothing is watched.
    sender: mpsc::Sender<FeedEvent>,
    inbox: mpsc::Receiver<FeedEvent>,
    lagged: Arc<AtomicBool>,
    watched: HashSet<FeedKey>,
}

impl FeedWatcher {
    /// Routes events of `feed` to this watcher from now on. Watching a feed twice is
    /// the same as once.
    pub fn watch(&mut self, feed: FeedKey) {
        if self.watched.insert(feed.clone()) {
            self.routes.table().entry(feed).or_default().push(Route {
                watcher: self.id,
                sender: self.sender.clone(),
                lagged: self.lagged.clone(),
            });
        }
    }

    /// Stops routing events of `feed` here; events already routed are still received.
    pub fn unwatch(&mut self, feed: &FeedKey) {
        if self.watched.remove(feed) {
            remove_route(&mut self.routes.table(), feed, self.id);
        }
    }

    /// The next event of a watched feed, in commit order, or [`Watched::Lagged`] once
    /// after events were dropped (the events still queued are dropped with it: they are
    /// covered by the lag). Cancel-safe.
    pub async fn recv(&mut self) -> Watched {
        if self.lagged.swap(false, Ordering::AcqRel) {
            while self.inbox.try_recv().is_ok() {}
            return Watched::Lagged;
        }
        match self.inbox.recv().await {
            Some(event) => Watched::Event(event),
            // Unreachable while `self.sender` lives; wait rather than spin if it were not.
            None => std::future::pending().await,
        }
    }
}

impl Drop for FeedWatcher {
    fn drop(&mut self) {
        let mut table = self.routes.table();
        for feed in &self.watched {
            remove_route(&mut table, feed, self.id);
        }
    }
}

fn remove_route(table: &mut HashMap<FeedKey, Vec<Route>>, feed: &FeedKey, watcher: u64) {
    if let Some(routes) = table.get_mut(feed) {
        routes.retain(|route| route.watcher != watcher);
        if routes.is_empty() {
            table.remove(feed);
        }
    }
}

/// The per-node router of [`FeedEvent`]s. Cheap to clone.
#[derive(Clone)]
pub struct FeedEventHub {
    routes: Arc<Routes>,
    /// PostgreSQL only: the pool the `LISTEN` connection comes from, started on the first
    /// subscription so that nodes with no sockets hold no extra connection.
    listener_pool: Option<Pool<Postgres>>,
    listener_started: Arc<Once>,
    /// True while events from every node reach the routes: always on SQLite; on PostgreSQL
    /// once `LISTEN` has been issued.
    listening: Arc<watch::Sender<bool>>,
}

impl FeedEventHub {
    /// A hub whose events are published locally after each commit (SQLite).
    pub fn local() -> Self {
        Self {
            routes: Arc::default(),
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

    /// Delivers committed events to this node's watchers of their feeds.
    pub fn publish(&self, events: Vec<FeedEvent>) {
        for event in &events {
            self.routes.deliver(event);
        }
    }

    /// A watcher of no feed yet; [`FeedWatcher::watch`] adds feeds, whose events committed
    /// from then on (on any node, for PostgreSQL) it receives. Must be called within a
    /// Tokio runtime.
    pub fn watcher(&self) -> FeedWatcher {
        if let Some(pool) = &self.listener_pool {
            self.listener_started.call_once(|| {
                tokio::spawn(listen(
                    pool.clone(),
                    self.routes.clone(),
                    self.listening.clone(),
                ));
            });
        }
        let (sender, inbox) = mpsc::channel(BUFFERED_EVENTS);
        FeedWatcher {
            id: self.routes.next_watcher.fetch_add(1, Ordering::Relaxed),
            routes: self.routes.clone(),
            sender,
            inbox,
            lagged: Arc::default(),
            watched: HashSet::new(),
        }
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

/// Routes `hark_feed` notifications to their feeds' watchers for the life of the process,
/// reconnecting when the connection drops. Notifications sent while disconnected are
/// lost; clients refetch on their next event or reconnect, so the feed itself stays
/// correct.
async fn listen(pool: Pool<Postgres>, routes: Arc<Routes>, listening: Arc<watch::Sender<bool>>) {
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
                        Ok(event) => routes.deliver(&event),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(recipient: &str, message: &str) -> FeedEvent {
        FeedEvent {
            environment_id: "env".into(),
            channel_key: "in-app".into(),
            recipient_id: recipient.into(),
            message_id: message.into(),
        }
    }

    fn routed_feeds(hub: &FeedEventHub) -> usize {
        hub.routes.table().len()
    }

    async fn next(watcher: &mut FeedWatcher) -> Option<Watched> {
        tokio::time::timeout(Duration::from_millis(50), watcher.recv())
            .await
            .ok()
    }

    #[tokio::test]
    async fn a_watcher_hears_only_its_feeds_in_commit_order() {
        let hub = FeedEventHub::local();
        let mut watcher = hub.watcher();
        let mut other = hub.watcher();
        watcher.watch(event("a", "").feed());
        watcher.watch(event("a", "").feed());
        other.watch(event("b", "").feed());
        let mut email = event("a", "m-email");
        email.channel_key = "email".into();
        hub.publish(vec![
            event("a", "m1"),
            event("b", "m2"),
            email,
            event("a", "m3"),
        ]);
        assert_eq!(
            next(&mut watcher).await,
            Some(Watched::Event(event("a", "m1")))
        );
        assert_eq!(
            next(&mut watcher).await,
            Some(Watched::Event(event("a", "m3")))
        );
        assert_eq!(next(&mut watcher).await, None, "watched twice, heard once");
        assert_eq!(
            next(&mut other).await,
            Some(Watched::Event(event("b", "m2")))
        );
        assert_eq!(next(&mut other).await, None);
    }

    #[tokio::test]
    async fn unwatching_and_dropping_stop_the_routing() {
        let hub = FeedEventHub::local();
        let mut watcher = hub.watcher();
        let mut second = hub.watcher();
        watcher.watch(event("a", "").feed());
        watcher.watch(event("b", "").feed());
        second.watch(event("a", "").feed());
        watcher.unwatch(&event("a", "").feed());
        hub.publish(vec![event("a", "m1"), event("b", "m2")]);
        assert_eq!(
            next(&mut watcher).await,
            Some(Watched::Event(event("b", "m2")))
        );
        assert_eq!(next(&mut watcher).await, None);
        assert_eq!(
            next(&mut second).await,
            Some(Watched::Event(event("a", "m1")))
        );
        assert_eq!(routed_feeds(&hub), 2);
        drop(watcher);
        assert_eq!(routed_feeds(&hub), 1, "b had no other watcher");
        drop(second);
        assert_eq!(routed_feeds(&hub), 0);
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_told_once_and_hears_later_events() {
        let hub = FeedEventHub::local();
        let mut slow = hub.watcher();
        let mut fast = hub.watcher();
        slow.watch(event("a", "").feed());
        fast.watch(event("a", "").feed());
        let burst: Vec<FeedEvent> = (0..BUFFERED_EVENTS)
            .map(|n| event("a", &format!("m{n}")))
            .collect();
        hub.publish(burst.clone());
        for expected in &burst {
            assert_eq!(
                next(&mut fast).await,
                Some(Watched::Event(expected.clone()))
            );
        }
        // One more than the slow watcher's inbox holds; the fast one, which kept up, is
        // not held up or marked by it.
        hub.publish(vec![event("a", "overflow")]);
        assert_eq!(
            next(&mut fast).await,
            Some(Watched::Event(event("a", "overflow")))
        );
        assert_eq!(next(&mut slow).await, Some(Watched::Lagged));
        assert_eq!(
            next(&mut slow).await,
            None,
            "the queued events went with the lag"
        );
        hub.publish(vec![event("a", "later")]);
        assert_eq!(
            next(&mut slow).await,
            Some(Watched::Event(event("a", "later")))
        );
    }
}
