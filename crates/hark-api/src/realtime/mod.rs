//! `/ws/v1/websocket`: live in-app feed updates over Phoenix Channels (serializer 2.0.0),
//! the protocol Knock's browser client speaks.
//!
//! The socket is authenticated once, on upgrade, from the `api_key` and `user_token`
//! query parameters (the same rules as the feed's HTTP routes). A client joins
//! `feeds:{channel_id}:{user_id}` with a map from its feed references to their options;
//! each committed in-app message for that user and channel (from any node, see
//! `hark_store::feed_events`) is pushed as `new-message` to the references whose feed
//! contains it.

mod feed_refs;
pub mod phoenix;

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hark_core::workflow::ChannelType;
use hark_store::feed_events::{FeedEvent, FeedKey, FeedWatcher, Watched};
use serde_json::{json, Value};
use tokio::time::Instant;

use self::feed_refs::{new_message_payload, parse_join_payload, FeedRef, RefUpdate};
use self::phoenix::Frame;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Params;
use crate::state::AppState;

/// Clients heartbeat every 30 s; a socket silent for twice that is gone (Phoenix's own
/// server uses the same limit), and holding it open would leak its subscription.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// The only realtime event Hark pushes today.
const NEW_MESSAGE: &str = "new-message";

/// Clients send small JSON frames (joins, heartbeats). The socket layer zero-fills its
/// whole read buffer on every read attempt, so its default of 128 KiB cost more than
/// the frames themselves; larger frames still grow the buffer as needed.
const READ_BUFFER: usize = 8 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/ws/v1/websocket", get(upgrade))
}

/// Authenticates before upgrading, so a bad key is refused with Knock's error shape and
/// no socket is opened. `RawQuery` because clients send empty segments (`?&api_key=…`)
/// that a typed query extractor would reject.
async fn upgrade(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    socket: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref().unwrap_or_default());
    let caller =
        Caller::authenticate(&state, params.get("api_key"), params.get("user_token")).await?;
    Ok(socket
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| Connection::new(state, caller).serve(socket)))
}

/// One joined feed topic on one socket.
struct JoinedFeed {
    join_ref: Option<String>,
    channel_key: String,
    recipient_id: String,
    refs: Vec<FeedRef>,
}

impl JoinedFeed {
    fn feed(&self, environment_id: &str) -> FeedKey {
        FeedKey {
            environment_id: environment_id.to_string(),
            channel_key: self.channel_key.clone(),
            recipient_id: self.recipient_id.clone(),
        }
    }

    fn concerns(&self, environment_id: &str, event: &FeedEvent) -> bool {
        event.environment_id == environment_id
            && event.recipient_id == self.recipient_id
            && event.channel_key == self.channel_key
    }
}

struct Connection {
    state: AppState,
    caller: Caller,
    feeds: HashMap<String, JoinedFeed>,
    /// Routes the joined feeds' events here, and only theirs.
    watcher: FeedWatcher,
}

impl Connection {
    fn new(state: AppState, caller: Caller) -> Self {
        let watcher = state.store.feed_events().watcher();
        Self {
            state,
            caller,
            feeds: HashMap::new(),
            watcher,
        }
    }

    async fn serve(mut self, mut socket: WebSocket) {
        // Wait until events from every node arrive before answering the first frame: a
        // join's feed is watched before its reply, so no message committed after a
        // client's join reply is missed.
        self.state.store.feed_events().ready().await;
        let mut deadline = Instant::now() + IDLE_LIMIT;
        loop {
            let outgoing = tokio::select! {
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        deadline = Instant::now() + IDLE_LIMIT;
                        self.handle_text(text.as_str()).await
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    // Pings are answered by the socket layer; binary frames are not part
                    // of the JSON serializer.
                    Some(Ok(_)) => {
                        deadline = Instant::now() + IDLE_LIMIT;
                        Vec::new()
                    }
                },
                watched = self.watcher.recv() => match watched {
                    Watched::Event(event) => self.on_event(&event).await,
                    Watched::Lagged => {
                        tracing::warn!("realtime: socket fell behind the feed events; notifying every joined feed");
                        self.on_lag().await
                    }
                },
                () = tokio::time::sleep_until(deadline) => break,
            };
            for frame in outgoing {
                if socket
                    .send(Message::Text(frame.encode().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }

    async fn handle_text(&mut self, text: &str) -> Vec<Frame> {
        let frame = match Frame::parse(text) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::debug!(%error, "realtime: ignoring malformed frame");
                return Vec::new();
            }
        };
        let reply = match (frame.topic.as_str(), frame.event.as_str()) {
            (phoenix::SOCKET_TOPIC, phoenix::HEARTBEAT) => frame.reply(true, json!({})),
            (_, phoenix::JOIN) => match self.join(&frame).await {
                Ok(()) => frame.reply(true, json!({})),
                Err(reason) => frame.reply(false, json!({ "reason": reason })),
            },
            (topic, phoenix::LEAVE) => {
                self.leave(topic);
                frame.reply(true, json!({}))
            }
            (topic, _) if !self.feeds.contains_key(topic) => {
                frame.reply(false, json!({"reason": "unmatched topic"}))
            }
            // Clients push nothing else on feed topics; answer so a caller waiting on the
            // reply is not left hanging.
            _ => frame.reply(false, json!({"reason": "unknown event"})),
        };
        vec![reply]
    }

    /// Joins (or re-joins with a new reference map) `feeds:{channel}:{user}`.
    async fn join(&mut self, frame: &Frame) -> Result<(), String> {
        let Some(rest) = frame.topic.strip_prefix("feeds:") else {
            return Err("unmatched topic".to_string());
        };
        let Some((channel_id, user_id)) = rest.split_once(':') else {
            return Err("feed topics are feeds:{channel_id}:{user_id}".to_string());
        };
        if user_id.is_empty() {
            return Err("feed topics are feeds:{channel_id}:{user_id}".to_string());
        }
        self.caller
            .require_user(user_id)
            .map_err(|_| "unauthorized: the user token does not grant access to this user")?;
        let channel_key = self
            .state
            .channels()
            .by_id_or_key(channel_id)
            .filter(|c| c.channel_type == ChannelType::InAppFeed)
            .map(|c| c.key.clone())
            .ok_or_else(|| format!("no in-app feed channel `{channel_id}`"))?;
        let refs = parse_join_payload(&frame.payload, user_id, &channel_key)?;
        // A re-join carries every reference the client has on this topic, so it replaces
        // the previous map rather than adding to it.
        let joined = JoinedFeed {
            join_ref: frame.join_ref.clone(),
            channel_key,
            recipient_id: user_id.to_string(),
            refs,
        };
        self.watcher.watch(joined.feed(self.caller.env_id()));
        self.feeds.insert(frame.topic.clone(), joined);
        Ok(())
    }

    /// Leaves a topic; its feed stays watched while another topic (the channel named by
    /// id and by key) still joins it.
    fn leave(&mut self, topic: &str) {
        let environment_id = self.caller.env_id();
        if let Some(left) = self.feeds.remove(topic) {
            let feed = left.feed(environment_id);
            if !self.feeds.values().any(|f| f.feed(environment_id) == feed) {
                self.watcher.unwatch(&feed);
            }
        }
    }

    async fn on_event(&self, event: &FeedEvent) -> Vec<Frame> {
        let environment_id = self.caller.env_id();
        let mut frames = Vec::new();
        for (topic, feed) in &self.feeds {
            if !feed.concerns(environment_id, event) {
                continue;
            }
            let mut updates = Vec::new();
            for feed_ref in &feed.refs {
                match feed_ref
                    .update_for(&*self.state.store, environment_id, &event.message_id)
                    .await
                {
                    Ok(Some(update)) => updates.push(update),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, "realtime: cannot match a new message to a feed")
                    }
                }
            }
            if !updates.is_empty() {
                frames.push(push_new_message(topic, feed, &updates));
            }
        }
        frames
    }

    /// Events were dropped: tell every reference to refetch, with fresh counts.
    async fn on_lag(&self) -> Vec<Frame> {
        let environment_id = self.caller.env_id();
        let mut frames = Vec::new();
        for (topic, feed) in &self.feeds {
            let mut updates = Vec::new();
            for feed_ref in &feed.refs {
                match feed_ref.counts(&*self.state.store, environment_id).await {
                    Ok(counts) => updates.push(RefUpdate {
                        name: feed_ref.name.clone(),
                        counts,
                    }),
                    Err(error) => tracing::warn!(%error, "realtime: cannot count a feed"),
                }
            }
            if !updates.is_empty() {
                frames.push(push_new_message(topic, feed, &updates));
            }
        }
        frames
    }
}

fn push_new_message(topic: &str, feed: &JoinedFeed, updates: &[RefUpdate]) -> Frame {
    let payload: Value = new_message_payload(updates);
    Frame::push(feed.join_ref.clone(), topic, NEW_MESSAGE, payload)
}
