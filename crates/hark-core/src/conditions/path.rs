//! Dotted variable paths such as `data.items[0].name` and their lookup in JSON.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Segment<'a> {
    Key(&'a str),
    /// A bracketed index; negative values count from the end of the list the way Liquid
    /// templates do, so a path means the same thing in a condition and in a template.
    Index(i64),
}

/// Splits a path into its segments, or `None` when the text is not a path at all.
///
/// Keys may hold any character except `.`, `[`, `]` and whitespace. Whitespace is refused so
/// that an argument such as `"data. hello"` (or a sentence that happens to contain a dot) is
/// never mistaken for a variable reference.
pub(super) fn parse_path(path: &str) -> Option<Vec<Segment<'_>>> {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(at) => part.split_at(at),
            None => (part, ""),
        };
        if !valid_key(key) {
            return None;
        }
        segments.push(Segment::Key(key));
        while !rest.is_empty() {
            let inner = rest.strip_prefix('[')?;
            let close = inner.find(']')?;
            let index = parse_index(&inner[..close])?;
            segments.push(Segment::Index(index));
            rest = &inner[close + 1..];
        }
    }
    Some(segments)
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key
            .chars()
            .any(|c| c == '[' || c == ']' || c == '.' || c.is_whitespace())
}

fn parse_index(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Resolves a dotted path (`data.order.total`, `data.items[0].name`, `data.items.0`) in a
/// JSON value. `None` when the path is malformed or leads nowhere; a property that is present
/// but `null` resolves to `Some(Value::Null)`.
pub fn resolve_path(root: &Value, path: &str) -> Option<Value> {
    let segments = parse_path(path)?;
    let mut current = root;
    for segment in segments {
        current = match (segment, current) {
            (Segment::Key(key), Value::Object(map)) => map.get(key)?,
            // A numeric dotted segment indexes a list too (`data.items.0`), since payload
            // authors reach for both spellings.
            (Segment::Key(key), Value::Array(items)) => {
                let index = key
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| key.parse::<usize>().ok())??;
                items.get(index)?
            }
            (Segment::Index(index), Value::Array(items)) => {
                items.get(list_index(index, items.len())?)?
            }
            _ => return None,
        };
    }
    Some(current.clone())
}

fn list_index(index: i64, len: usize) -> Option<usize> {
    if index >= 0 {
        usize::try_from(index).ok()
    } else {
        let back = usize::try_from(index.unsigned_abs()).ok()?;
        len.checked_sub(back)
    }
}
