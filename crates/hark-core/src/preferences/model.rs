//! The preference set's types and their serialization to Knock's wire shape.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::conditions::Condition;

/// Channel types a `channel_types` preference can name: the keys of Knock's
/// `PreferenceSetChannelTypes`.
pub const CHANNEL_TYPES: [&str; 6] = ["chat", "email", "http", "in_app_feed", "push", "sms"];

/// A single preference's `__strategy__`, which decides how a lower layer (a tenant's default
/// set) combines with the layers above it when preferences are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStrategy {
    /// The default: the higher layer (the recipient's own set) wins, key by key.
    Merge,
    /// This layer's value is used as a whole, even over the recipient's own preference.
    Replace,
}

impl KeyStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStrategy::Merge => "merge",
            KeyStrategy::Replace => "replace",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "merge" => Some(KeyStrategy::Merge),
            "replace" => Some(KeyStrategy::Replace),
            _ => None,
        }
    }
}

/// A leaf preference: `true`, `false` or `{"conditions": [...]}` (every condition must
/// hold). Used for channel types, channels and `commercial_subscribed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    Enabled(bool),
    Conditions(Vec<Condition>),
}

/// An object of preferences keyed by channel type, channel id, category or workflow key,
/// with the optional `__strategy__` that applies to the object as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingMap<T> {
    pub strategy: Option<KeyStrategy>,
    pub entries: BTreeMap<String, T>,
}

// A manual impl: the derive would needlessly require `T: Default`.
impl<T> Default for SettingMap<T> {
    fn default() -> Self {
        Self {
            strategy: None,
            entries: BTreeMap::new(),
        }
    }
}

impl<T> SettingMap<T> {
    pub fn get(&self, key: &str) -> Option<&T> {
        self.entries.get(key)
    }
}

/// `channel_types` or `channels`.
pub type ChannelSettings = SettingMap<Setting>;

/// The object form of a workflow or category preference.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScopeObject {
    pub strategy: Option<KeyStrategy>,
    pub channel_types: Option<ChannelSettings>,
    pub channels: Option<ChannelSettings>,
    /// Conditions on the workflow or category itself; all must hold.
    pub conditions: Option<Vec<Condition>>,
}

/// A workflow or category preference: a boolean or an object with nested channel
/// preferences and conditions (Knock's `PreferenceSetWorkflowCategorySetting`).
#[derive(Debug, Clone, PartialEq)]
pub enum ScopeSetting {
    Enabled(bool),
    Object(ScopeObject),
}

/// `workflows` or `categories`.
pub type ScopeSettings = SettingMap<ScopeSetting>;

/// A recipient's (or tenant's, or environment's) preferences. `None` means the key was not
/// set, which Knock treats as opted in; it is kept apart from an empty object so the set
/// reads back exactly as it was written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PreferenceSet {
    pub channel_types: Option<ChannelSettings>,
    pub channels: Option<ChannelSettings>,
    pub workflows: Option<ScopeSettings>,
    pub categories: Option<ScopeSettings>,
    pub commercial_subscribed: Option<Setting>,
}

/// How a write combines with the stored set (`__persistence_strategy__`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistenceStrategy {
    /// Deep merge into the existing set.
    Merge,
    /// Overwrite the existing set.
    Replace,
}

impl PersistenceStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            PersistenceStrategy::Merge => "merge",
            PersistenceStrategy::Replace => "replace",
        }
    }
}

impl PreferenceSet {
    /// Knock's wire shape: the `PreferenceSet` response body without `id` and
    /// `__typename`, which the API adds. Every key is present, `null` when unset, as Knock's
    /// responses show them.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert(
            "categories".into(),
            option_json(self.categories.as_ref(), scope_map_json),
        );
        out.insert(
            "channel_types".into(),
            option_json(self.channel_types.as_ref(), channel_map_json),
        );
        out.insert(
            "channels".into(),
            option_json(self.channels.as_ref(), channel_map_json),
        );
        out.insert(
            "commercial_subscribed".into(),
            option_json(self.commercial_subscribed.as_ref(), setting_json),
        );
        out.insert(
            "workflows".into(),
            option_json(self.workflows.as_ref(), scope_map_json),
        );
        Value::Object(out)
    }

    /// Whether nothing at all is set.
    pub fn is_empty(&self) -> bool {
        self == &PreferenceSet::default()
    }
}

fn option_json<T>(value: Option<&T>, to_json: impl Fn(&T) -> Value) -> Value {
    value.map_or(Value::Null, to_json)
}

fn map_json<T>(map: &SettingMap<T>, entry_json: impl Fn(&T) -> Value) -> Value {
    let mut out = Map::new();
    if let Some(strategy) = map.strategy {
        out.insert("__strategy__".into(), Value::from(strategy.as_str()));
    }
    for (key, entry) in &map.entries {
        out.insert(key.clone(), entry_json(entry));
    }
    Value::Object(out)
}

fn channel_map_json(map: &ChannelSettings) -> Value {
    map_json(map, setting_json)
}

fn scope_map_json(map: &ScopeSettings) -> Value {
    map_json(map, scope_setting_json)
}

pub(super) fn setting_json(setting: &Setting) -> Value {
    match setting {
        Setting::Enabled(enabled) => Value::Bool(*enabled),
        Setting::Conditions(conditions) => {
            let mut out = Map::new();
            out.insert("conditions".into(), conditions_json(conditions));
            Value::Object(out)
        }
    }
}

fn scope_setting_json(setting: &ScopeSetting) -> Value {
    match setting {
        ScopeSetting::Enabled(enabled) => Value::Bool(*enabled),
        ScopeSetting::Object(object) => {
            let mut out = Map::new();
            if let Some(strategy) = object.strategy {
                out.insert("__strategy__".into(), Value::from(strategy.as_str()));
            }
            if let Some(channel_types) = &object.channel_types {
                out.insert("channel_types".into(), channel_map_json(channel_types));
            }
            if let Some(channels) = &object.channels {
                out.insert("channels".into(), channel_map_json(channels));
            }
            if let Some(conditions) = &object.conditions {
                out.insert("conditions".into(), conditions_json(conditions));
            }
            Value::Object(out)
        }
    }
}

fn conditions_json(conditions: &[Condition]) -> Value {
    Value::Array(conditions.iter().map(condition_json).collect())
}

/// A condition as Knock's `Condition` schema writes it. The argument is written only when
/// one was given, so an absent argument stays absent on the way back in.
fn condition_json(condition: &Condition) -> Value {
    let mut out = Map::new();
    out.insert("variable".into(), Value::from(condition.variable.clone()));
    out.insert("operator".into(), Value::from(condition.operator.as_str()));
    if let Some(argument) = &condition.argument {
        out.insert("argument".into(), argument.clone());
    }
    Value::Object(out)
}
