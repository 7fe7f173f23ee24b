//! Identifiers. Hark uses UUIDv7 strings: they sort by creation time, which keeps
//! cursor pagination and index locality cheap on both stores.

use uuid::Uuid;

/// A new time-ordered identifier.
pub fn new_id() -> String {
    Uuid::now_v7().to_string()
}

/// A new random secret of `bytes` bytes, hex-encoded (used for API keys and tokens).
pub fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        out.push_str(&Uuid::new_v4().simple().to_string());
    }
    out.truncate(bytes * 2);
    out
}
