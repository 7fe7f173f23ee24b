//! Keeping credentials out of delivery logs, which are readable through the API by anyone
//! with access to the environment.

/// What a secret is replaced with in logs.
pub const REDACTED: &str = "[REDACTED]";

/// Headers whose values are credentials. Matched case-insensitively.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-postmark-server-token",
    "x-amz-security-token",
];

pub fn is_secret_header(name: &str) -> bool {
    SECRET_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}
