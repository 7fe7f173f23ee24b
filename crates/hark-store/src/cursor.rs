//! Opaque pagination cursors: base64url of the sort key, so callers can't depend on it.

use base64::Engine;

const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn encode(key: &str) -> String {
    ENGINE.encode(key.as_bytes())
}

/// Decodes a cursor; an undecodable one reads as `None` (start from the beginning would
/// be wrong, so callers treat `None` from a present cursor as an empty page).
pub fn decode(cursor: &str) -> Option<String> {
    ENGINE
        .decode(cursor.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// Users sort by (inserted_at, id); their cursor carries both.
pub fn encode_pair(ms: i64, id: &str) -> String {
    encode(&format!("{ms}\u{1f}{id}"))
}

pub fn decode_pair(cursor: &str) -> Option<(i64, String)> {
    let raw = decode(cursor)?;
    let (ms, id) = raw.split_once('\u{1f}')?;
    Some((ms.parse().ok()?, id.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips() {
        assert_eq!(super::decode(&super::encode("abc")), Some("abc".into()));
        assert_eq!(
            super::decode_pair(&super::encode_pair(5, "u:1")),
            Some((5, "u:1".into()))
        );
        assert_eq!(super::decode("!!"), None);
    }
}
