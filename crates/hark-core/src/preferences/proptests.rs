use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::conditions::{Condition, JsonScope};

fn conditions() -> Vec<Condition> {
    [
        json!({"variable": "recipient.country_code", "operator": "equal_to", "argument": "US"}),
        json!({"variable": "recipient.muted", "operator": "not_contains", "argument": "data.dino"}),
        json!({"variable": "data.count", "operator": "greater_than", "argument": 3}),
        json!({"variable": "data.missing", "operator": "exists"}),
        json!({"variable": "data.at", "operator": "is_timestamp_before", "argument": "2025-01-01T00:00:00Z"}),
    ]
    .iter()
    .map(|value| Condition::parse(value, "c").expect("test condition parses"))
    .collect()
}

fn arb_strategy() -> impl Strategy<Value = Option<KeyStrategy>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(KeyStrategy::Merge)),
        1 => Just(Some(KeyStrategy::Replace)),
    ]
}

fn arb_setting() -> impl Strategy<Value = Setting> {
    prop_oneof![
        any::<bool>().prop_map(Setting::Enabled),
        prop::sample::subsequence(conditions(), 0..3).prop_map(Setting::Conditions),
    ]
}

fn arb_map<T: std::fmt::Debug + Clone>(
    keys: &'static [&'static str],
    entry: impl Strategy<Value = T>,
) -> impl Strategy<Value = SettingMap<T>> {
    (
        arb_strategy(),
        prop::collection::btree_map(
            prop::sample::select(keys).prop_map(str::to_owned),
            entry,
            0..4,
        ),
    )
        .prop_map(|(strategy, entries)| SettingMap { strategy, entries })
}

const CHANNEL_IDS: &[&str] = &["c1", "c2", "c3"];
const SCOPE_KEYS: &[&str] = &["a", "b", "new-comment"];

fn arb_channel_types() -> impl Strategy<Value = Option<ChannelSettings>> {
    prop::option::of(arb_map(&CHANNEL_TYPES, arb_setting()))
}

fn arb_channels() -> impl Strategy<Value = Option<ChannelSettings>> {
    prop::option::of(arb_map(CHANNEL_IDS, arb_setting()))
}

fn arb_scope_setting() -> impl Strategy<Value = ScopeSetting> {
    let object = (
        arb_strategy(),
        arb_channel_types(),
        arb_channels(),
        prop::option::of(prop::sample::subsequence(conditions(), 0..3)),
    )
        .prop_map(|(strategy, channel_types, channels, conditions)| {
            ScopeSetting::Object(ScopeObject {
                strategy,
                channel_types,
                channels,
                conditions,
            })
        });
    prop_oneof![any::<bool>().prop_map(ScopeSetting::Enabled), object]
}

fn arb_set() -> impl Strategy<Value = PreferenceSet> {
    (
        arb_channel_types(),
        arb_channels(),
        prop::option::of(arb_map(SCOPE_KEYS, arb_scope_setting())),
        prop::option::of(arb_map(SCOPE_KEYS, arb_scope_setting())),
        prop::option::of(arb_setting()),
    )
        .prop_map(
            |(channel_types, channels, workflows, categories, commercial_subscribed)| {
                PreferenceSet {
                    channel_types,
                    channels,
                    workflows,
                    categories,
                    commercial_subscribed,
                }
            },
        )
}

#[derive(Debug, Clone)]
struct Target {
    workflow: String,
    categories: Vec<String>,
    channel_type: String,
    channel_id: String,
    commercial: bool,
    override_preferences: bool,
}

fn arb_target() -> impl Strategy<Value = Target> {
    let key = || prop::sample::select(SCOPE_KEYS).prop_map(str::to_owned);
    (
        key(),
        prop::collection::vec(key(), 0..3),
        prop::sample::select(&CHANNEL_TYPES[..]).prop_map(str::to_owned),
        prop::sample::select(CHANNEL_IDS).prop_map(str::to_owned),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(workflow, categories, channel_type, channel_id, commercial, override_preferences)| {
                Target {
                    workflow,
                    categories,
                    channel_type,
                    channel_id,
                    commercial,
                    override_preferences,
                }
            },
        )
}

fn decide(set: &PreferenceSet, target: &Target, root: &Value) -> Decision {
    let message = MessageTarget {
        workflow_key: &target.workflow,
        categories: &target.categories,
        channel_type: &target.channel_type,
        channel_id: &target.channel_id,
        commercial: target.commercial,
        override_preferences: target.override_preferences,
    };
    let scope = JsonScope {
        root,
        audiences: &[],
    };
    evaluate(set, &message, &scope, 1_750_000_000_000)
}

fn arb_root() -> impl Strategy<Value = Value> {
    (any::<bool>(), any::<i64>()).prop_map(|(us, count)| {
        json!({
            "recipient": {"country_code": if us { "US" } else { "CA" }, "muted": ["t-rex"]},
            "data": {"dino": if us { "t-rex" } else { "raptor" }, "count": count, "at": "2024-05-01T00:00:00Z"},
        })
    })
}

proptest! {
    #[test]
    fn evaluation_is_total_and_consistent(set in arb_set(), target in arb_target(), root in arb_root()) {
        let decision = decide(&set, &target, &root);
        prop_assert!(!decision.decided_by.is_empty());
        // Every evaluation that passed led on; only the last can have failed.
        if let Some((last, earlier)) = decision.conditions.split_last() {
            prop_assert!(earlier.iter().all(|e| e.passed));
            if decision.allowed {
                prop_assert!(last.passed);
            }
        }
        if target.override_preferences && decision.allowed {
            prop_assert_eq!(decision.decided_by, "override_preferences");
        }
    }

    #[test]
    fn an_empty_set_allows_everything(target in arb_target(), root in arb_root()) {
        let decision = decide(&PreferenceSet::default(), &target, &root);
        prop_assert!(decision.allowed);
        prop_assert!(decision.conditions.is_empty());
    }

    #[test]
    fn wire_shape_round_trips(set in arb_set()) {
        let parsed = PreferenceSet::parse(&set.to_json(), "");
        prop_assert_eq!(parsed, Ok((set, PersistenceStrategy::Replace)));
    }

    #[test]
    fn replace_then_to_json_round_trips(stored in arb_set(), update in arb_set()) {
        let replaced = stored.apply(&update, PersistenceStrategy::Replace);
        prop_assert_eq!(&replaced, &update);
        let reparsed = PreferenceSet::parse(&replaced.to_json(), "").map(|(set, _)| set);
        prop_assert_eq!(reparsed, Ok(update));
    }

    #[test]
    fn merge_identities(stored in arb_set()) {
        prop_assert_eq!(stored.apply(&PreferenceSet::default(), PersistenceStrategy::Merge), stored.clone());
        prop_assert_eq!(PreferenceSet::default().apply(&stored, PersistenceStrategy::Merge), stored.clone());
        prop_assert_eq!(stored.apply(&stored, PersistenceStrategy::Merge), stored);
    }

    /// A top-level channel type the write sets is what the merged set holds; one it leaves
    /// out keeps its stored value.
    #[test]
    fn merge_keeps_the_writes_leaves(stored in arb_set(), update in arb_set(), target in arb_target()) {
        let merged = stored.apply(&update, PersistenceStrategy::Merge);
        let leaf = |set: &PreferenceSet| {
            set.channel_types.as_ref().and_then(|m| m.get(&target.channel_type)).cloned()
        };
        if let Some(setting) = leaf(&update) {
            prop_assert_eq!(leaf(&merged), Some(setting));
        } else {
            prop_assert_eq!(leaf(&merged), leaf(&stored));
        }
    }

    /// "If a workflow's category is set to false, the notification will not send", whatever
    /// else the set says, unless the workflow overrides preferences.
    #[test]
    fn a_false_category_always_blocks(mut set in arb_set(), target in arb_target(), root in arb_root()) {
        let Some(category) = target.categories.first().cloned() else {
            return Ok(());
        };
        set.categories
            .get_or_insert_with(SettingMap::default)
            .entries
            .insert(category, ScopeSetting::Enabled(false));
        let decision = decide(&set, &target, &root);
        prop_assert_eq!(decision.allowed, target.override_preferences && !decision.decided_by.starts_with("commercial"));
    }

    /// Layering a set over nothing gives the set back, and without `replace` markers
    /// layering is the same deep merge as persisting a `merge` write.
    #[test]
    fn layering_without_markers_lets_the_recipient_win(lower in arb_set(), recipient in arb_set()) {
        prop_assert_eq!(resolve_effective(None, None, Some(&recipient)), recipient.clone());
        let layered = resolve_effective(Some(&lower), None, Some(&recipient));
        let marked = |set: &PreferenceSet| set.to_json().to_string().contains("replace");
        if !marked(&lower) && !marked(&recipient) {
            prop_assert_eq!(layered, lower.apply(&recipient, PersistenceStrategy::Merge));
        }
    }
}
