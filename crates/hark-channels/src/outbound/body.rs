//! Reading a provider's response body without letting a hostile or broken receiver make
//! us buffer without bound.

/// How much of a response body is kept for the delivery log.
pub const LOGGED_BODY_LIMIT: usize = 64 * 1024;
/// How much is read at most. Draining a modest body lets the connection be reused; past
/// this the connection is dropped instead.
pub const READ_BODY_LIMIT: usize = 1024 * 1024;

/// A response body as kept for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedBody {
    /// At most `LOGGED_BODY_LIMIT` bytes, lossily decoded as UTF-8.
    pub text: String,
    /// Whether anything was left out.
    pub truncated: bool,
}

/// Reads up to `READ_BODY_LIMIT` bytes and keeps the first `LOGGED_BODY_LIMIT`. A read
/// error ends the body early: the status code has already decided the outcome.
pub async fn read_bounded(mut response: reqwest::Response) -> BoundedBody {
    let mut kept: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    let mut truncated = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                seen += chunk.len();
                let room = LOGGED_BODY_LIMIT.saturating_sub(kept.len());
                if chunk.len() > room {
                    truncated = true;
                }
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if seen >= READ_BODY_LIMIT {
                    truncated = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(_) => {
                truncated = true;
                break;
            }
        }
    }
    BoundedBody {
        text: String::from_utf8_lossy(&kept).into_owned(),
        truncated,
    }
}
