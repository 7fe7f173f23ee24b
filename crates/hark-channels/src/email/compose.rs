//! Building the MIME message and its delivery-log entry.

use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use serde_json::{json, Map, Value};

use super::api::split_addresses;
use super::EmailMessage;
use crate::outbound::LOGGED_BODY_LIMIT;
use crate::REDACTED;

/// Why a message could not be built. Always final: retrying would build the same thing.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("invalid sender address `{address}`: {detail}")]
    From { address: String, detail: String },
    #[error("invalid recipient address `{address}`: {detail}")]
    To { address: String, detail: String },
    #[error("could not build message: {0}")]
    Build(String),
}

/// Builds the message. Both bodies make a multipart/alternative so clients pick the
/// richest they can show.
pub fn compose(msg: &EmailMessage, default_from: &str) -> Result<Message, ComposeError> {
    let from_text = if msg.from.trim().is_empty() {
        default_from
    } else {
        msg.from.trim()
    };
    let from: Mailbox = from_text.parse().map_err(|e| ComposeError::From {
        address: from_text.to_string(),
        detail: format!("{e}"),
    })?;
    let mut builder = Message::builder()
        .from(from)
        .subject(msg.subject.clone())
        .message_id(Some(message_id_header(&msg.message_id)));
    let to = split_addresses(&msg.to);
    if to.is_empty() {
        return Err(ComposeError::To {
            address: msg.to.clone(),
            detail: "no address".into(),
        });
    }
    for address in &to {
        builder = builder.to(mailbox(address)?);
    }
    for address in &msg.cc {
        builder = builder.cc(mailbox(address)?);
    }
    // lettre puts Bcc addresses in the envelope only, not in the headers.
    for address in &msg.bcc {
        builder = builder.bcc(mailbox(address)?);
    }
    for address in &msg.reply_to {
        builder = builder.reply_to(mailbox(address)?);
    }
    let html = msg.html_body.clone().filter(|b| !b.is_empty());
    let text = msg.text_body.clone().filter(|b| !b.is_empty());
    let built = match (text, html) {
        (Some(text), Some(html)) => {
            builder.multipart(MultiPart::alternative_plain_html(text, html))
        }
        (None, Some(html)) => builder.singlepart(SinglePart::html(html)),
        (Some(text), None) => builder.singlepart(SinglePart::plain(text)),
        (None, None) => builder.singlepart(SinglePart::plain(String::new())),
    };
    built.map_err(|e| ComposeError::Build(e.to_string()))
}

fn mailbox(address: &str) -> Result<Mailbox, ComposeError> {
    address.trim().parse().map_err(|e| ComposeError::To {
        address: address.to_string(),
        detail: format!("{e}"),
    })
}

/// The Message-ID for a Hark message id, stable across retries so a recipient's client
/// (and some relays) can drop a duplicate sent after a crash.
pub fn message_id_header(message_id: &str) -> String {
    format!("<{message_id}@hark>")
}

/// The request log: envelope headers, bodies (bounded), and who we authenticated as with
/// the password redacted.
pub fn request_value(
    msg: &EmailMessage,
    default_from: &str,
    server: &str,
    username: Option<&str>,
) -> Value {
    let from = if msg.from.trim().is_empty() {
        default_from
    } else {
        msg.from.as_str()
    };
    let mut headers = Map::new();
    headers.insert("From".into(), Value::String(from.to_string()));
    headers.insert("To".into(), Value::String(msg.to.clone()));
    for (name, list) in [
        ("Cc", &msg.cc),
        ("Bcc", &msg.bcc),
        ("Reply-To", &msg.reply_to),
    ] {
        if !list.is_empty() {
            headers.insert(name.into(), Value::String(list.join(", ")));
        }
    }
    headers.insert("Subject".into(), Value::String(msg.subject.clone()));
    headers.insert(
        "Message-ID".into(),
        Value::String(message_id_header(&msg.message_id)),
    );
    let mut body = Map::new();
    if let Some(html) = &msg.html_body {
        body.insert("html_body".into(), Value::String(bounded(html)));
    }
    if let Some(text) = &msg.text_body {
        body.insert("text_body".into(), Value::String(bounded(text)));
    }
    let mut request = json!({
        "method": "SMTP",
        "host": server,
        "path": Value::Null,
        "query": Value::Null,
        "headers": headers,
        "body": body,
    });
    if let (Some(user), Value::Object(map)) = (username, &mut request) {
        map.insert(
            "auth".into(),
            json!({"username": user, "password": REDACTED}),
        );
    }
    request
}

fn bounded(text: &str) -> String {
    if text.len() <= LOGGED_BODY_LIMIT {
        return text.to_string();
    }
    let mut end = LOGGED_BODY_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}
