//! The request and response as written to the delivery log (Knock's
//! MessageDeliveryLogRequest / MessageDeliveryLogResponse shapes).

use reqwest::header::HeaderMap;
use serde_json::{json, Map, Value};
use url::Url;

use crate::outbound::BoundedBody;
use crate::{is_secret_header, REDACTED};

/// A body as logged: parsed JSON when it is JSON, so the log reads like the payload,
/// otherwise the raw string.
pub fn body_value(body: Option<&str>) -> Value {
    match body {
        None => Value::Null,
        Some(text) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(|v| v.is_object() || v.is_array())
            .unwrap_or_else(|| Value::String(text.to_string())),
    }
}

/// Headers as a JSON object, secrets redacted. Repeated headers are joined with ", " as
/// HTTP allows.
pub fn headers_value<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        let value = if is_secret_header(name) {
            REDACTED
        } else {
            value
        };
        match map.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                map.insert(name.to_string(), Value::String(value.to_string()));
            }
        }
    }
    Value::Object(map)
}

pub fn header_map_value(headers: &HeaderMap) -> Value {
    headers_value(
        headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or("<non-ascii>"))),
    )
}

/// The request log for a parsed URL. Credentials in the URL's userinfo are never logged.
pub fn request_value(method: &str, url: &Url, headers: Value, body: Option<&str>) -> Value {
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => String::new(),
    };
    json!({
        "method": method,
        "host": host,
        "path": url.path(),
        "query": url.query(),
        "headers": headers,
        "body": body_value(body),
    })
}

/// The request log when the URL could not even be parsed: the raw string is all we have.
pub fn unparsed_request_value(method: &str, raw_url: &str, body: Option<&str>) -> Value {
    json!({
        "method": method,
        "host": Value::Null,
        "path": raw_url,
        "query": Value::Null,
        "headers": {},
        "body": body_value(body),
    })
}

pub fn response_value(status: u16, headers: &HeaderMap, body: &BoundedBody) -> Value {
    let logged_body = if body.truncated {
        Value::String(body.text.clone())
    } else {
        body_value(Some(&body.text))
    };
    json!({
        "status": status,
        "headers": header_map_value(headers),
        "body": logged_body,
    })
}

pub fn error_value(error: &str) -> Value {
    json!({ "error": error })
}
