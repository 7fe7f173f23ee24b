//! A realtime feed client over one WebSocket per node, speaking Phoenix Channels as
//! Knock's browser client does: it joins a user's feed topic and learns of each new
//! message from the server's `new-message` push, with no polling load on the server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Frames for one topic: `(event, payload)`.
type TopicFrames = mpsc::UnboundedSender<(String, Value)>;

/// One socket; any number of topics joined and left over it.
pub struct FeedSocket {
    outgoing: mpsc::UnboundedSender<String>,
    topics: Arc<Mutex<HashMap<String, TopicFrames>>>,
    next_ref: AtomicU64,
}

impl FeedSocket {
    /// Connects to `base` (an `http://` server address) with a publishable key.
    pub async fn connect(base: &str, public_key: &str) -> anyhow::Result<Arc<Self>> {
        let url = format!(
            "{}/ws/v1/websocket?api_key={public_key}&vsn=2.0.0",
            base.replacen("http://", "ws://", 1)
        );
        // The socket layer zero-fills its whole read buffer on every read attempt; the
        // default 128 KiB made the load generator spend more on that than on the frames,
        // which are a few hundred bytes. Larger frames still grow the buffer.
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let (socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false)
            .await
            .context("opening the realtime socket")?;
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut to_send) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = to_send.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
        let topics: Arc<Mutex<HashMap<String, TopicFrames>>> = Arc::default();
        let routes = topics.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                // `[join_ref, ref, topic, event, payload]`
                let Ok(Value::Array(frame)) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let (Some(topic), Some(event)) = (
                    frame.get(2).and_then(Value::as_str),
                    frame.get(3).and_then(Value::as_str),
                ) else {
                    continue;
                };
                let route = routes.lock().ok().and_then(|t| t.get(topic).cloned());
                if let Some(route) = route {
                    let payload = frame.get(4).cloned().unwrap_or(Value::Null);
                    let _ = route.send((event.to_string(), payload));
                }
            }
        });
        let socket = Arc::new(Self {
            outgoing,
            topics,
            next_ref: AtomicU64::new(1),
        });
        // The server closes sockets silent for a minute.
        let beat = Arc::downgrade(&socket);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                let Some(socket) = beat.upgrade() else { break };
                let r = socket.next_ref().to_string();
                let _ = socket
                    .outgoing
                    .send(json!([null, r, "phoenix", "heartbeat", {}]).to_string());
            }
        });
        Ok(socket)
    }

    fn next_ref(&self) -> u64 {
        self.next_ref.fetch_add(1, Ordering::Relaxed)
    }

    /// Joins `feeds:{channel}:{user}` with one reference taking every message, and waits
    /// for the server to acknowledge the join.
    pub async fn join(self: &Arc<Self>, channel: &str, user: &str) -> anyhow::Result<FeedJoin> {
        let topic = format!("feeds:{channel}:{user}");
        let (route, frames) = mpsc::unbounded_channel();
        if let Ok(mut topics) = self.topics.lock() {
            topics.insert(topic.clone(), route);
        }
        let join_ref = self.next_ref().to_string();
        let mut joined = FeedJoin {
            socket: self.clone(),
            topic,
            join_ref,
            frames,
        };
        self.outgoing
            .send(
                json!([joined.join_ref, joined.join_ref, joined.topic, "phx_join", {"all": {}}])
                    .to_string(),
            )
            .context("the realtime socket closed")?;
        let reply = joined
            .next_event("phx_reply", Duration::from_secs(10))
            .await?;
        if reply["status"] != "ok" {
            bail!("joining {} was refused: {reply}", joined.topic);
        }
        Ok(joined)
    }
}

/// A joined feed topic; left when dropped.
pub struct FeedJoin {
    socket: Arc<FeedSocket>,
    topic: String,
    join_ref: String,
    frames: mpsc::UnboundedReceiver<(String, Value)>,
}

impl FeedJoin {
    /// The payload of the topic's next `event`, skipping other events.
    pub async fn next_event(&mut self, event: &str, limit: Duration) -> anyhow::Result<Value> {
        let wait = async {
            while let Some((name, payload)) = self.frames.recv().await {
                if name == event {
                    return Ok(payload);
                }
            }
            bail!("the realtime socket closed")
        };
        tokio::time::timeout(limit, wait)
            .await
            .with_context(|| format!("no {event} on {} within {limit:?}", self.topic))?
    }
}

impl Drop for FeedJoin {
    fn drop(&mut self) {
        if let Ok(mut topics) = self.socket.topics.lock() {
            topics.remove(&self.topic);
        }
        let r = self.socket.next_ref().to_string();
        let _ = self
            .socket
            .outgoing
            .send(json!([self.join_ref, r, self.topic, "phx_leave", {}]).to_string());
    }
}
