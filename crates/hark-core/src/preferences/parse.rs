//! Reading a `PreferenceSetRequest` body, with errors that name the exact field.
//!
//! The parser keeps going after a problem so one response lists every mistake, and it
//! builds the set from the valid entries as it goes; [`parse_lenient`] uses that partial
//! set for stored data that must be evaluated even if part of it no longer validates.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::child;
use super::model::{
    ChannelSettings, KeyStrategy, PersistenceStrategy, PreferenceSet, ScopeObject, ScopeSetting,
    ScopeSettings, Setting, SettingMap, CHANNEL_TYPES,
};
use crate::conditions::Condition;
use crate::recipient::FieldError;

const STRATEGY_KEY: &str = "__strategy__";
const PERSISTENCE_KEY: &str = "__persistence_strategy__";

impl PreferenceSet {
    /// Parses a `PreferenceSetRequest` body. Errors name the field, e.g.
    /// `categories.marketing.channel_types.email`. Without `__persistence_strategy__` the
    /// strategy is `Replace`, the documented default of the preferences endpoints.
    pub fn parse(
        value: &Value,
        field: &str,
    ) -> Result<(PreferenceSet, PersistenceStrategy), Vec<FieldError>> {
        Self::parse_with_default(value, field, PersistenceStrategy::Replace)
    }

    /// As [`PreferenceSet::parse`], for writes whose documented default is different:
    /// a tenant's `settings.preference_set` and inline preferences merge unless told
    /// otherwise.
    pub fn parse_with_default(
        value: &Value,
        field: &str,
        default: PersistenceStrategy,
    ) -> Result<(PreferenceSet, PersistenceStrategy), Vec<FieldError>> {
        let mut parser = Parser::default();
        let parsed = parser.set(value, field, default);
        if parser.errors.is_empty() {
            Ok(parsed)
        } else {
            Err(parser.errors)
        }
    }
}

/// Parses what it can, skipping invalid entries instead of failing.
pub(super) fn parse_lenient(value: &Value) -> PreferenceSet {
    Parser::default()
        .set(value, "", PersistenceStrategy::Merge)
        .0
}

#[derive(Default)]
struct Parser {
    errors: Vec<FieldError>,
}

impl Parser {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    fn set(
        &mut self,
        value: &Value,
        field: &str,
        default: PersistenceStrategy,
    ) -> (PreferenceSet, PersistenceStrategy) {
        let mut set = PreferenceSet::default();
        let mut strategy = default;
        let Some(map) = value.as_object() else {
            self.error(field, "must be an object");
            return (set, strategy);
        };
        for (key, item) in map {
            let item_field = child(field, key);
            match key.as_str() {
                PERSISTENCE_KEY => match item {
                    Value::Null => {}
                    Value::String(text) if text == "merge" => {
                        strategy = PersistenceStrategy::Merge;
                    }
                    Value::String(text) if text == "replace" => {
                        strategy = PersistenceStrategy::Replace;
                    }
                    _ => self.error(item_field, "must be `merge` or `replace`"),
                },
                // Read-only fields of the response; clients that send back what they read
                // should not be refused for it.
                "id" | "__typename" => {}
                "channel_types" => set.channel_types = self.channel_map(item, &item_field, true),
                "channels" => set.channels = self.channel_map(item, &item_field, false),
                "workflows" => set.workflows = self.scope_map(item, &item_field),
                "categories" => set.categories = self.scope_map(item, &item_field),
                "commercial_subscribed" => {
                    set.commercial_subscribed = self.setting(item, &item_field);
                }
                STRATEGY_KEY => self.error(
                    item_field,
                    "applies to a single preference; the whole set can't be replaced this way",
                ),
                _ => self.error(item_field, "is not a preference set field"),
            }
        }
        (set, strategy)
    }

    fn strategy(&mut self, value: &Value, field: &str) -> Option<KeyStrategy> {
        match value {
            Value::Null => None,
            Value::String(text) => {
                let parsed = KeyStrategy::parse(text);
                if parsed.is_none() {
                    self.error(field, "must be `merge` or `replace`");
                }
                parsed
            }
            _ => {
                self.error(field, "must be `merge` or `replace`");
                None
            }
        }
    }

    /// An object of entries plus an optional `__strategy__`. `null` is the same as leaving
    /// the key out.
    fn map<T>(
        &mut self,
        value: &Value,
        field: &str,
        mut entry: impl FnMut(&mut Self, &str, &Value, &str) -> Option<T>,
    ) -> Option<SettingMap<T>> {
        let map = match value {
            Value::Null => return None,
            Value::Object(map) => map,
            _ => {
                self.error(field, "must be an object");
                return None;
            }
        };
        let mut strategy = None;
        let mut entries = BTreeMap::new();
        for (key, item) in map {
            let item_field = child(field, key);
            if key == STRATEGY_KEY {
                strategy = self.strategy(item, &item_field);
            } else if key.is_empty() {
                self.error(field, "keys can't be blank");
            } else if let Some(parsed) = entry(self, key, item, &item_field) {
                entries.insert(key.clone(), parsed);
            }
        }
        Some(SettingMap { strategy, entries })
    }

    fn channel_map(
        &mut self,
        value: &Value,
        field: &str,
        channel_types: bool,
    ) -> Option<ChannelSettings> {
        self.map(value, field, |parser, key, item, item_field| {
            // A misspelt channel type would otherwise be stored and never match anything.
            if channel_types && !CHANNEL_TYPES.contains(&key) {
                parser.error(
                    item_field,
                    format!(
                        "is not a channel type; use one of {}",
                        CHANNEL_TYPES.join(", ")
                    ),
                );
                return None;
            }
            parser.setting(item, item_field)
        })
    }

    fn scope_map(&mut self, value: &Value, field: &str) -> Option<ScopeSettings> {
        self.map(value, field, |parser, _key, item, item_field| {
            parser.scope_setting(item, item_field)
        })
    }

    /// `true`, `false` or `{"conditions": [...]}`; `null` is treated as unset because some
    /// SDKs serialize unset optional fields that way.
    fn setting(&mut self, value: &Value, field: &str) -> Option<Setting> {
        match value {
            Value::Null => None,
            Value::Bool(enabled) => Some(Setting::Enabled(*enabled)),
            Value::Object(map) => {
                for key in map.keys().filter(|key| key.as_str() != "conditions") {
                    self.error(
                        child(field, key),
                        "is not a setting field; a setting is `true`, `false` or \
                         an object with `conditions`",
                    );
                }
                let conditions_field = child(field, "conditions");
                match map.get("conditions") {
                    None | Some(Value::Null) => {
                        self.error(conditions_field, "can't be blank");
                        None
                    }
                    Some(list) => self
                        .conditions(list, &conditions_field)
                        .map(Setting::Conditions),
                }
            }
            _ => {
                self.error(field, "must be a boolean or an object with `conditions`");
                None
            }
        }
    }

    fn scope_setting(&mut self, value: &Value, field: &str) -> Option<ScopeSetting> {
        match value {
            Value::Null => None,
            Value::Bool(enabled) => Some(ScopeSetting::Enabled(*enabled)),
            Value::Object(map) => Some(ScopeSetting::Object(self.scope_object(map, field))),
            _ => {
                self.error(
                    field,
                    "must be a boolean or an object with `channel_types`, `channels` or `conditions`",
                );
                None
            }
        }
    }

    fn scope_object(&mut self, map: &Map<String, Value>, field: &str) -> ScopeObject {
        let mut object = ScopeObject::default();
        for (key, item) in map {
            let item_field = child(field, key);
            match key.as_str() {
                STRATEGY_KEY => object.strategy = self.strategy(item, &item_field),
                "channel_types" => {
                    object.channel_types = self.channel_map(item, &item_field, true);
                }
                "channels" => object.channels = self.channel_map(item, &item_field, false),
                "conditions" => {
                    object.conditions = match item {
                        Value::Null => None,
                        list => self.conditions(list, &item_field),
                    };
                }
                _ => self.error(
                    item_field,
                    "is not a workflow or category setting; use `channel_types`, `channels` \
                     or `conditions`",
                ),
            }
        }
        object
    }

    /// A list of conditions that must all hold. One invalid condition makes the whole list
    /// invalid: keeping the others would quietly loosen the preference.
    fn conditions(&mut self, value: &Value, field: &str) -> Option<Vec<Condition>> {
        let Some(items) = value.as_array() else {
            self.error(field, "must be a list of conditions");
            return None;
        };
        let before = self.errors.len();
        let mut conditions = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            match Condition::parse(item, &format!("{field}[{index}]")) {
                Ok(condition) => conditions.push(condition),
                Err(error) => self.errors.push(error),
            }
        }
        (self.errors.len() == before).then_some(conditions)
    }
}
