//! Phoenix Channels frames, serializer version 2.0.0: each text frame is a JSON array
//! `[join_ref, ref, topic, event, payload]`.

use serde_json::{json, Value};

pub const JOIN: &str = "phx_join";
pub const LEAVE: &str = "phx_leave";
pub const REPLY: &str = "phx_reply";
pub const HEARTBEAT: &str = "heartbeat";
/// The topic heartbeats travel on.
pub const SOCKET_TOPIC: &str = "phoenix";

/// One frame in either direction. `join_ref` and `msg_ref` are opaque strings chosen by
/// the client and echoed back; Phoenix clients send them as strings, `null` when absent.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub join_ref: Option<String>,
    pub msg_ref: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("frame is not JSON: {0}")]
    NotJson(String),
    #[error("frame must be a JSON array [join_ref, ref, topic, event, payload]")]
    NotArray,
    #[error("frame field `{0}` must be a string")]
    BadField(&'static str),
}

/// `null` or a string; numbers are accepted too because some clients count refs as
/// integers, and echoing them as strings is what Phoenix does.
fn optional_ref(value: &Value, field: &'static str) -> Result<Option<String>, FrameError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(FrameError::BadField(field)),
    }
}

impl Frame {
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
        let Value::Array(mut items) = value else {
            return Err(FrameError::NotArray);
        };
        if items.len() != 5 {
            return Err(FrameError::NotArray);
        }
        let payload = items.pop().unwrap_or(Value::Null);
        let text_field = |value: &Value, field| {
            value
                .as_str()
                .map(String::from)
                .ok_or(FrameError::BadField(field))
        };
        Ok(Frame {
            join_ref: optional_ref(&items[0], "join_ref")?,
            msg_ref: optional_ref(&items[1], "ref")?,
            topic: text_field(&items[2], "topic")?,
            event: text_field(&items[3], "event")?,
            payload,
        })
    }

    pub fn encode(&self) -> String {
        json!([
            self.join_ref,
            self.msg_ref,
            self.topic,
            self.event,
            self.payload
        ])
        .to_string()
    }

    /// The `phx_reply` answering this frame.
    pub fn reply(&self, ok: bool, response: Value) -> Frame {
        Frame {
            join_ref: self.join_ref.clone(),
            msg_ref: self.msg_ref.clone(),
            topic: self.topic.clone(),
            event: REPLY.to_string(),
            payload: json!({
                "status": if ok { "ok" } else { "error" },
                "response": response,
            }),
        }
    }

    /// A server push on a joined topic: tagged with the join it belongs to so the client
    /// drops pushes meant for an earlier join; no `ref`, since nothing is answered.
    pub fn push(join_ref: Option<String>, topic: &str, event: &str, payload: Value) -> Frame {
        Frame {
            join_ref,
            msg_ref: None,
            topic: topic.to_string(),
            event: event.to_string(),
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_encodes_a_join() {
        let frame = Frame::parse(r#"["3","3","feeds:c:u","phx_join",{"r":{}}]"#).expect("frame");
        assert_eq!(frame.join_ref.as_deref(), Some("3"));
        assert_eq!(frame.event, JOIN);
        let reply = frame.reply(true, json!({}));
        let encoded: Value = serde_json::from_str(&reply.encode()).expect("JSON");
        assert_eq!(
            encoded,
            json!(["3", "3", "feeds:c:u", "phx_reply", {"status": "ok", "response": {}}])
        );
    }

    #[test]
    fn refuses_malformed_frames() {
        assert_eq!(Frame::parse("[1,2,3]"), Err(FrameError::NotArray));
        assert_eq!(
            Frame::parse(r#"[null,"1",7,"heartbeat",{}]"#),
            Err(FrameError::BadField("topic"))
        );
        assert!(matches!(Frame::parse("{"), Err(FrameError::NotJson(_))));
    }
}
