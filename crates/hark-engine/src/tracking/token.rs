//! Tracking tokens: what a tracking URL's last path segment carries, signed so that a
//! recipient cannot forge a click or open for another message, and self-contained so
//! that any node can check one without a database row per link.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, kind "." payload64))`,
//! where the payload is a small JSON object. The kind (`c` click, `o` open) is inside the
//! MAC, so a click token cannot be replayed as an open token or the reverse.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Tokens longer than this are refused before any decoding (a target URL is bounded by
/// the rendered content, but the route should not do work for arbitrary input).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// What a tracking URL records when it is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A link click, redirecting to the target URL.
    Click,
    /// An email open, answered with the tracking pixel.
    Open,
}

impl TokenKind {
    /// The path segment of the tracking route, also bound into the signature.
    pub fn path_segment(self) -> &'static str {
        match self {
            TokenKind::Click => "c",
            TokenKind::Open => "o",
        }
    }
}

/// The message a token speaks for and, for clicks, where the link goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedLink {
    #[serde(rename = "m")]
    pub message_id: String,
    #[serde(rename = "e")]
    pub environment_id: String,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The HMAC key tracking tokens are signed with (generated once, stored in the database).
#[derive(Clone)]
pub struct TrackingKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for TrackingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrackingKey([REDACTED])")
    }
}

impl TrackingKey {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: secret.to_vec(),
        }
    }

    fn mac(&self, kind: TokenKind, payload64: &str) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        mac.update(kind.path_segment().as_bytes());
        mac.update(b".");
        mac.update(payload64.as_bytes());
        mac
    }

    pub fn sign(&self, kind: TokenKind, link: &TrackedLink) -> String {
        // Serializing a struct of strings cannot fail.
        let payload = serde_json::to_vec(link).unwrap_or_default();
        let payload64 = URL_SAFE_NO_PAD.encode(payload);
        let tag = self.mac(kind, &payload64).finalize().into_bytes();
        format!("{payload64}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The link a token speaks for, or `None` when it is malformed, was signed with
    /// another key or for the other kind. The comparison is constant-time.
    pub fn verify(&self, kind: TokenKind, token: &str) -> Option<TrackedLink> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let (payload64, tag64) = token.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag64).ok()?;
        self.mac(kind, payload64).verify_slice(&tag).ok()?;
        let payload = URL_SAFE_NO_PAD.decode(payload64).ok()?;
        let link: TrackedLink = serde_json::from_slice(&payload).ok()?;
        match (kind, &link.target) {
            (TokenKind::Click, Some(_)) | (TokenKind::Open, None) => Some(link),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(target: Option<&str>) -> TrackedLink {
        TrackedLink {
            message_id: "m1".into(),
            environment_id: "e1".into(),
            target: target.map(str::to_string),
        }
    }

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let key = TrackingKey::new(b"secret");
        let click = key.sign(TokenKind::Click, &link(Some("https://example.com/a?b=c")));
        assert_eq!(
            key.verify(TokenKind::Click, &click),
            Some(link(Some("https://example.com/a?b=c")))
        );
        assert!(click
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        // Another key, the other kind, a changed payload, garbage: all refused.
        assert_eq!(
            TrackingKey::new(b"other").verify(TokenKind::Click, &click),
            None
        );
        assert_eq!(key.verify(TokenKind::Open, &click), None);
        let (_, tag) = click.split_once('.').expect("dot");
        let forged_payload = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&link(Some("https://evil.example"))).expect("json"));
        assert_eq!(
            key.verify(TokenKind::Click, &format!("{forged_payload}.{tag}")),
            None
        );
        for garbage in [
            "",
            ".",
            "abc",
            "a.b",
            "!!.??",
            &"x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(key.verify(TokenKind::Click, garbage), None, "{garbage}");
        }
        let open = key.sign(TokenKind::Open, &link(None));
        assert_eq!(key.verify(TokenKind::Open, &open), Some(link(None)));
    }
}
