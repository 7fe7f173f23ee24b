//! Recipient notification preferences as Knock models them: the `PreferenceSet` of
//! `channel_types`, `channels`, `workflows`, `categories` and `commercial_subscribed`, how
//! writes are persisted, how environment and tenant defaults layer under a recipient's own
//! set, and the decision whether one message may be sent.
//!
//! Everything here is pure: stored sets come in as values, conditions read a
//! [`ConditionScope`](crate::conditions::ConditionScope) and "now" is passed in.

mod evaluate;
mod merge;
mod model;
mod parse;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_merge;
#[cfg(test)]
mod tests_wire;

pub use evaluate::{evaluate, Decision, MessageTarget, NO_PREFERENCE};
pub use merge::{resolve_effective, PreferenceSources};
pub use model::{
    ChannelSettings, KeyStrategy, PersistenceStrategy, PreferenceSet, ScopeObject, ScopeSetting,
    ScopeSettings, Setting, SettingMap, CHANNEL_TYPES,
};

/// `parent.name`, or `name` at the top level, for error field names and decision paths.
fn child(field: &str, name: &str) -> String {
    if field.is_empty() {
        name.to_owned()
    } else {
        format!("{field}.{name}")
    }
}
