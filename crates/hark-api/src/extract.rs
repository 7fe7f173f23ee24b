//! Request extractors that fail with Knock-shaped errors instead of axum's plain text.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use hark_core::time::parse_rfc3339;
use hark_core::Millis;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, ErrorCode};

/// Largest request body accepted anywhere (a 1000-recipient trigger with inline users fits).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A JSON body: malformed JSON is a 400 `invalid_json`; JSON of the wrong shape is a 422
/// `invalid_params`. An empty body reads as `{}` so optional bodies work.
pub struct KnockJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for KnockJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "The request body is too large")
            } else {
                ApiError::new(ErrorCode::InvalidJson, "The request body could not be read")
            }
        })?;
        let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidJson,
                    format!("The request body is not valid JSON: {e}"),
                )
            })?
        };
        let parsed =
            serde_json::from_value(value).map_err(|e| ApiError::field("body", &e.to_string()))?;
        Ok(KnockJson(parsed))
    }
}

/// Query parameters in every encoding the official clients send: `k=v`, `k[]=v`,
/// `k[0]=v`, `k[gte]=v` and `k.gte=v`. Names are normalised to `k` and `k.gte`.
#[derive(Debug, Default, Clone)]
pub struct Params {
    values: HashMap<String, Vec<String>>,
}

impl Params {
    pub fn parse(query: &str) -> Self {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key.is_empty() {
                continue;
            }
            values
                .entry(normalise(&key))
                .or_default()
                .push(value.into_owned());
        }
        Self { values }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// All values of a list parameter; a single comma-separated value is split too.
    pub fn list(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for v in self.values.get(name).into_iter().flatten() {
            out.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        out
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::field(name, "must be true or false")),
        }
    }

    pub fn page_size(&self) -> Result<i64, ApiError> {
        match self.get("page_size").or_else(|| self.get("limit")) {
            None => Ok(50),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (1..=50).contains(&n) => Ok(n),
                _ => Err(ApiError::field(
                    "page_size",
                    "must be an integer between 1 and 50",
                )),
            },
        }
    }

    pub fn page(&self) -> Result<hark_store::PageRequest, ApiError> {
        Ok(hark_store::PageRequest {
            after: self.get("after").map(String::from),
            before: self.get("before").map(String::from),
            page_size: self.page_size()?,
        })
    }

    pub fn timestamp(&self, name: &str) -> Result<Option<Millis>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse_rfc3339(v)
                .map(Some)
                .ok_or_else(|| ApiError::field(name, "must be an ISO 8601 timestamp")),
        }
    }
}

fn normalise(key: &str) -> String {
    // `k[]`, `k[3]` → `k`; `k[gte]` → `k.gte`; nested `objects[0][id]` → `objects.id`.
    let Some(open) = key.find('[') else {
        return key.to_string();
    };
    let mut name = key[..open].to_string();
    for part in key[open..].split('[').skip(1) {
        let part = part.trim_end_matches(']');
        if part.is_empty() || part.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        name.push('.');
        name.push_str(part);
    }
    name
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::parse(parts.uri.query().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_every_client_encoding() {
        let p = Params::parse(
            "status[]=read&status[]=seen&message_ids[0]=a&message_ids[1]=b&inserted_at[gte]=x&inserted_at.lte=y&page_size=5&after=",
        );
        assert_eq!(p.list("status"), vec!["read", "seen"]);
        assert_eq!(p.list("message_ids"), vec!["a", "b"]);
        assert_eq!(p.get("inserted_at.gte"), Some("x"));
        assert_eq!(p.get("inserted_at.lte"), Some("y"));
        assert_eq!(p.page_size().expect("valid"), 5);
        assert_eq!(p.get("after"), None);
    }

    #[test]
    fn refuses_bad_page_sizes() {
        assert!(Params::parse("page_size=0").page_size().is_err());
        assert!(Params::parse("page_size=51").page_size().is_err());
        assert!(Params::parse("page_size=x").page_size().is_err());
    }
}
