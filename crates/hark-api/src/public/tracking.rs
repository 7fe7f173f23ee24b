//! `GET /v1/t/c/{token}` and `GET /v1/t/o/{token}`: the tracking URLs that link and open
//! tracking put into messages. No API key: recipients' browsers and mail clients follow
//! them. The token's signature is the authorization: it names the message, its
//! environment and (for clicks) the target, and only this server could have made it.
//!
//! A valid token always gets its redirect or pixel, even when recording fails or the
//! message is gone: a recipient's link must keep working.

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hark_engine::tracking::{TokenKind, TrackedLink};
use hark_store::Engagement;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A 1×1 fully transparent PNG (grayscale with alpha, one zero pixel).
const TRANSPARENT_PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, // signature
    0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, // IHDR: 1×1, 8 bits, gray + alpha
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x04, 0x00, 0x00, 0x00, //
    0xb5, 0x1c, 0x0c, 0x02, // CRC
    0x00, 0x00, 0x00, 0x0b, 0x49, 0x44, 0x41,
    0x54, // IDAT: zlib of [filter 0, gray 0, alpha 0]
    0x78, 0xda, 0x63, 0x60, 0x60, 0x00, 0x00, 0x00, 0x03, 0x00, 0x01, //
    0x2b, 0x09, 0x4d, 0x84, // CRC
    0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82, // IEND
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/t/c/{token}", get(click))
        .route("/v1/t/o/{token}", get(open))
}

fn verified(state: &AppState, kind: TokenKind, token: &str) -> ApiResult<TrackedLink> {
    state
        .engine
        .tracking()
        .and_then(|tracking| tracking.key().verify(kind, token))
        .ok_or_else(|| ApiError::not_found("tracking link"))
}

/// Records the engagement on the message; failures are logged, not shown to the
/// recipient, whose redirect or image matters more than one lost event.
async fn record(state: &AppState, link: &TrackedLink, change: Engagement) {
    let result = state
        .store
        .set_engagement(
            &link.environment_id,
            std::slice::from_ref(&link.message_id),
            change,
            state.now(),
        )
        .await;
    // A run the event released is announced by the store after its commit.
    if let Err(e) = result {
        tracing::warn!(message = %link.message_id, error = %e, "recording a tracking event failed");
    }
}

async fn click(State(state): State<AppState>, Path(token): Path<String>) -> ApiResult<Response> {
    let link = verified(&state, TokenKind::Click, &token)?;
    let Some(target) = link.target.clone() else {
        return Err(ApiError::not_found("tracking link"));
    };
    record(&state, &link, Engagement::LinkClicked).await;
    Ok((
        StatusCode::FOUND,
        [
            (LOCATION, location_header(&target)),
            (CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response())
}

/// The target as a `Location` value: header values must be visible ASCII, and a link
/// written with spaces or non-ASCII characters still has to reach its page, so those
/// bytes are percent-encoded as browsers do.
fn location_header(target: &str) -> String {
    let mut out = String::with_capacity(target.len());
    for byte in target.bytes() {
        if (0x21..=0x7e).contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn open(State(state): State<AppState>, Path(token): Path<String>) -> ApiResult<Response> {
    let link = verified(&state, TokenKind::Open, &token)?;
    record(&state, &link, Engagement::Read).await;
    Ok((
        StatusCode::OK,
        [(CONTENT_TYPE, "image/png"), (CACHE_CONTROL, "no-store")],
        TRANSPARENT_PIXEL_PNG,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_visible_ascii() {
        assert_eq!(
            location_header("https://a.example/p?q=1&r=2#f"),
            "https://a.example/p?q=1&r=2#f"
        );
        assert_eq!(
            location_header("https://é.example/a b"),
            "https://%C3%A9.example/a%20b"
        );
    }
}
