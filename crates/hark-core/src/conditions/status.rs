//! Reserved `$message.<case>` arguments used by message status conditions
//! (`refs.<step_ref>.delivery_status` / `refs.<step_ref>.engagement_status`).

use std::cmp::Ordering;

use serde_json::Value;

use super::Operator;

pub(super) const TOKEN_PREFIX: &str = "$message.";

/// Delivery and engagement statuses from lowest to highest, as Knock ranks them when a
/// condition asks whether a step's message has reached at least some status. Equal ranks
/// are statuses Knock treats as the same level.
///
/// `skipped` is not part of Knock's list. It sits below everything so that a skipped step
/// reads as "has not been sent/delivered/…", which is what a negated condition on a step
/// that never produced a message should answer.
const RANKS: &[(&str, u8)] = &[
    ("skipped", 0),
    ("undelivered", 1),
    ("bounced", 2),
    ("delivery_attempted", 3),
    ("queued", 4),
    ("not_sent", 5),
    ("sent", 6),
    ("delivered", 7),
    ("seen", 8),
    ("read", 9),
    ("interacted", 10),
    ("link_clicked", 10),
    ("archived", 11),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StatusCase {
    Single(&'static str),
    /// Seen, and not (yet) read.
    SeenNotRead,
    /// Read, and no link clicked.
    ReadNotLinkClicked,
}

impl StatusCase {
    /// `None` when `text` is not a `$message.` token; `Some(None)` when it is one but names no
    /// known case.
    pub(super) fn parse_token(text: &str) -> Option<Option<Self>> {
        let case = text.strip_prefix(TOKEN_PREFIX)?;
        Some(match case {
            "seen_not_read" => Some(StatusCase::SeenNotRead),
            "read_not_link_clicked" => Some(StatusCase::ReadNotLinkClicked),
            _ => RANKS
                .iter()
                .find(|(name, _)| *name == case)
                .map(|(name, _)| StatusCase::Single(name)),
        })
    }

    /// Evaluates a status condition against the step's resolved status.
    ///
    /// A message Knock no longer has (or never had) makes every status condition false,
    /// negated ones included, so a missing or null status never passes.
    pub(super) fn evaluate(self, operator: Operator, status: Option<&Value>) -> bool {
        let Some(status) = status.filter(|v| !v.is_null()) else {
            return false;
        };
        match operator {
            Operator::EqualTo | Operator::Contains => self.matches(status),
            Operator::NotEqualTo | Operator::NotContains => !self.matches(status),
            Operator::GreaterThan => self.compare(status) == Some(Ordering::Greater),
            Operator::GreaterThanOrEqualTo => {
                matches!(
                    self.compare(status),
                    Some(Ordering::Greater | Ordering::Equal)
                )
            }
            Operator::LessThan => self.compare(status) == Some(Ordering::Less),
            Operator::LessThanOrEqualTo => {
                matches!(self.compare(status), Some(Ordering::Less | Ordering::Equal))
            }
            _ => false,
        }
    }

    /// Whether the status holds this case. Engagement statuses accumulate (a message can be
    /// seen, read and archived at once), so the status may be a list of names as well as a
    /// single name.
    fn matches(self, status: &Value) -> bool {
        match self {
            StatusCase::Single(name) => has(status, name),
            StatusCase::SeenNotRead => has(status, "seen") && !has(status, "read"),
            StatusCase::ReadNotLinkClicked => has(status, "read") && !has(status, "link_clicked"),
        }
    }

    /// The status's rank relative to this case's, for the hierarchical delivery checks.
    fn compare(self, status: &Value) -> Option<Ordering> {
        let StatusCase::Single(name) = self else {
            return None;
        };
        Some(rank(status.as_str()?)?.cmp(&rank(name)?))
    }
}

fn has(status: &Value, name: &str) -> bool {
    match status {
        Value::String(text) => text == name,
        Value::Array(items) => items.iter().any(|item| item.as_str() == Some(name)),
        _ => false,
    }
}

fn rank(name: &str) -> Option<u8> {
    RANKS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, rank)| *rank)
}
