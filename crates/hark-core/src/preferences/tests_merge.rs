//! Persisting writes and layering defaults.

use serde_json::{json, Value};

use super::*;

fn set(value: Value) -> PreferenceSet {
    match PreferenceSet::parse(&value, "") {
        Ok((set, _)) => set,
        Err(errors) => panic!("test set does not parse: {errors:?}"),
    }
}

/// The set as JSON without the unset keys, so expectations read like the docs' examples.
fn shown(set: &PreferenceSet) -> Value {
    let mut value = set.to_json();
    if let Some(map) = value.as_object_mut() {
        map.retain(|_, item| !item.is_null());
    }
    value
}

#[test]
fn merge_persistence_is_a_deep_merge() {
    // The docs' FAQ example: updating one email preference of one category.
    let existing = set(
        json!({"categories": {"collaboration": {"channel_types": {"email": true, "in_app_feed": true}}}}),
    );
    let update = set(json!({"categories": {"collaboration": {"channel_types": {"email": false}}}}));
    assert_eq!(
        shown(&existing.apply(&update, PersistenceStrategy::Merge)),
        json!({"categories": {"collaboration": {"channel_types": {"email": false, "in_app_feed": true}}}})
    );
}

#[test]
fn merge_persistence_keeps_what_the_write_leaves_out() {
    let existing = set(json!({
        "channel_types": {"email": false, "sms": true},
        "channels": {"c1": false},
        "workflows": {"w": {"channel_types": {"email": false}, "conditions": [{"variable": "data.a", "operator": "exists"}]}},
        "categories": {"marketing": false},
        "commercial_subscribed": false,
    }));
    let update = set(json!({
        "channel_types": {"sms": false, "push": {"conditions": [{"variable": "data.b", "operator": "exists"}]}},
        "workflows": {"w": {"channels": {"c2": true}}, "v": true},
        "categories": {"marketing": {"channel_types": {"email": true}}},
        "channels": null,
    }));
    assert_eq!(
        shown(&existing.apply(&update, PersistenceStrategy::Merge)),
        json!({
            "channel_types": {"email": false, "sms": false, "push": {"conditions": [{"variable": "data.b", "operator": "exists"}]}},
            "channels": {"c1": false},
            "workflows": {
                "w": {"channel_types": {"email": false}, "channels": {"c2": true}, "conditions": [{"variable": "data.a", "operator": "exists"}]},
                "v": true,
            },
            // A boolean and an object don't merge: the written value replaces the stored one.
            "categories": {"marketing": {"channel_types": {"email": true}}},
            "commercial_subscribed": false,
        })
    );
}

#[test]
fn merge_persistence_replaces_condition_lists_and_leaves() {
    let existing = set(
        json!({"workflows": {"w": {"conditions": [{"variable": "data.a", "operator": "exists"}]}}, "commercial_subscribed": false}),
    );
    let update = set(
        json!({"workflows": {"w": {"conditions": [{"variable": "data.b", "operator": "exists"}]}}, "commercial_subscribed": true}),
    );
    assert_eq!(
        shown(&existing.apply(&update, PersistenceStrategy::Merge)),
        json!({"workflows": {"w": {"conditions": [{"variable": "data.b", "operator": "exists"}]}}, "commercial_subscribed": true})
    );
}

#[test]
fn replace_persistence_overwrites_everything() {
    let existing = set(json!({"channel_types": {"email": false}, "commercial_subscribed": false}));
    let update = set(json!({"workflows": {"w": false}}));
    assert_eq!(
        existing.apply(&update, PersistenceStrategy::Replace),
        update
    );
    assert_eq!(
        existing.apply(&PreferenceSet::default(), PersistenceStrategy::Replace),
        PreferenceSet::default()
    );
}

#[test]
fn merge_persistence_keeps_a_strategy_marker_until_it_is_set_again() {
    // "Once a preference has been set with the replace strategy, simply omitting the
    // `__strategy__` from your next request will not remove it."
    let stored = set(
        json!({"categories": {"collaboration": {"__strategy__": "replace", "channel_types": {"email": false}}}}),
    );
    let omitted = set(json!({"categories": {"collaboration": {"channel_types": {"sms": false}}}}));
    assert_eq!(
        shown(&stored.apply(&omitted, PersistenceStrategy::Merge)),
        json!({"categories": {"collaboration": {"__strategy__": "replace", "channel_types": {"email": false, "sms": false}}}})
    );
    // "Explicitly set the `__strategy__` key to "merge"" removes the override.
    let explicit = set(json!({"categories": {"collaboration": {"__strategy__": "merge"}}}));
    let merged = stored.apply(&explicit, PersistenceStrategy::Merge);
    assert_eq!(
        shown(&merged),
        json!({"categories": {"collaboration": {"__strategy__": "merge", "channel_types": {"email": false}}}})
    );
    let recipient =
        set(json!({"categories": {"collaboration": {"channel_types": {"email": true}}}}));
    let layered = resolve_effective(None, Some(&merged.to_json()), Some(&recipient));
    assert_eq!(
        shown(&layered),
        json!({"categories": {"collaboration": {"__strategy__": "merge", "channel_types": {"email": true}}}})
    );
}

#[test]
fn environment_default_is_the_lowest_layer() {
    // The docs' standard hierarchy: the recipient's default set over the environment's.
    let environment =
        set(json!({"channel_types": {"sms": false}, "categories": {"collaboration": true}}));
    let recipient = set(json!({"channel_types": {"sms": true, "email": false}}));
    assert_eq!(
        shown(&resolve_effective(
            Some(&environment),
            None,
            Some(&recipient)
        )),
        json!({"channel_types": {"sms": true, "email": false}, "categories": {"collaboration": true}})
    );
    assert_eq!(
        resolve_effective(Some(&environment), None, None),
        environment
    );
    assert_eq!(resolve_effective(None, None, Some(&recipient)), recipient);
    assert_eq!(
        resolve_effective(None, None, None),
        PreferenceSet::default()
    );
}

#[test]
fn tenant_default_sits_between_environment_and_recipient() {
    let environment = set(
        json!({"channel_types": {"sms": false}, "categories": {"collaboration": true, "reminders": false}}),
    );
    let tenant = json!({"categories": {"reminders": true}, "channel_types": {"push": false}});
    let recipient =
        set(json!({"categories": {"reminders": false}, "channel_types": {"push": true}}));
    assert_eq!(
        shown(&resolve_effective(
            Some(&environment),
            Some(&tenant),
            Some(&recipient)
        )),
        json!({
            "channel_types": {"sms": false, "push": true},
            "categories": {"collaboration": true, "reminders": false},
        })
    );
    assert_eq!(
        shown(&resolve_effective(Some(&environment), Some(&tenant), None)),
        json!({
            "channel_types": {"sms": false, "push": false},
            "categories": {"collaboration": true, "reminders": true},
        })
    );
    // `preference_set: null` clears a tenant's default.
    assert_eq!(
        resolve_effective(None, Some(&Value::Null), Some(&recipient)),
        recipient
    );
}

#[test]
fn tenant_replace_strategy_beats_the_recipient() {
    // The docs' FAQ example.
    let recipient = set(json!({"categories": {
        "collaboration": {"channel_types": {"email": true}},
        "project-updates": {"channel_types": {"email": true}},
    }}));
    let tenant = json!({"categories": {
        "collaboration": {"__strategy__": "replace", "channel_types": {"email": false}},
        "project-updates": {"channel_types": {"email": false}},
    }});
    let effective = resolve_effective(None, Some(&tenant), Some(&recipient));
    assert_eq!(
        shown(&effective),
        json!({"categories": {
            "collaboration": {"__strategy__": "replace", "channel_types": {"email": false}},
            "project-updates": {"channel_types": {"email": true}},
        }})
    );
}

#[test]
fn tenant_replace_strategy_on_top_level_channel_maps() {
    let environment = set(json!({"channel_types": {"chat": false}}));
    let recipient = set(
        json!({"channel_types": {"email": true, "push": false}, "channels": {"c1": true, "c2": false}}),
    );
    let tenant = json!({
        "channel_types": {"__strategy__": "replace", "email": false, "sms": true},
        "channels": {"__strategy__": "replace", "c1": false},
    });
    assert_eq!(
        shown(&resolve_effective(
            Some(&environment),
            Some(&tenant),
            Some(&recipient)
        )),
        json!({
            "channel_types": {"__strategy__": "replace", "email": false, "sms": true},
            "channels": {"__strategy__": "replace", "c1": false},
        })
    );
}

#[test]
fn tenant_replace_strategy_beats_a_recipient_boolean_and_nested_maps() {
    let recipient = set(
        json!({"workflows": {"w": true, "v": {"channel_types": {"email": true, "sms": true}}}}),
    );
    let tenant = json!({"workflows": {
        "w": {"__strategy__": "replace", "channel_types": {"email": false}},
        "v": {"channel_types": {"__strategy__": "replace", "email": false}},
    }});
    assert_eq!(
        shown(&resolve_effective(None, Some(&tenant), Some(&recipient))),
        json!({"workflows": {
            "w": {"__strategy__": "replace", "channel_types": {"email": false}},
            "v": {"channel_types": {"__strategy__": "replace", "email": false}},
        }})
    );
}

#[test]
fn invalid_parts_of_a_stored_tenant_default_are_skipped() {
    let tenant = json!({"channel_types": {"email": false, "fax": false}, "workflows": 3});
    assert_eq!(
        shown(&resolve_effective(None, Some(&tenant), None)),
        json!({"channel_types": {"email": false}})
    );
}

fn sources<'a>(
    environment: Option<&'a PreferenceSet>,
    tenant: Option<&'a Value>,
    recipient_tenant: Option<&'a PreferenceSet>,
    recipient_default: Option<&'a PreferenceSet>,
) -> PreferenceSet {
    PreferenceSources {
        environment_default: environment,
        tenant_default: tenant,
        recipient_tenant,
        recipient_default,
    }
    .resolve()
}

#[test]
fn run_sources_follow_the_documented_hierarchies() {
    let environment = set(json!({"channel_types": {"sms": false}}));
    let tenant = json!({"channel_types": {"push": false}});
    let recipient_tenant = set(json!({"channel_types": {"email": false}}));
    let recipient_default =
        set(json!({"channel_types": {"chat": false}, "commercial_subscribed": false}));

    // No tenant: the recipient's default set over the environment default.
    assert_eq!(
        shown(&sources(
            Some(&environment),
            None,
            None,
            Some(&recipient_default)
        )),
        json!({"channel_types": {"chat": false, "sms": false}, "commercial_subscribed": false})
    );
    // A tenant with neither a default nor a recipient set: as if there were no tenant.
    assert_eq!(
        shown(&sources(
            Some(&environment),
            Some(&Value::Null),
            None,
            Some(&recipient_default)
        )),
        json!({"channel_types": {"chat": false, "sms": false}, "commercial_subscribed": false})
    );
    // Tenant hierarchy: the recipient's tenant set, the tenant default, the environment
    // default; the recipient's default set contributes only `commercial_subscribed`.
    assert_eq!(
        shown(&sources(
            Some(&environment),
            Some(&tenant),
            Some(&recipient_tenant),
            Some(&recipient_default)
        )),
        json!({"channel_types": {"email": false, "push": false, "sms": false}, "commercial_subscribed": false})
    );
    // "If the user does not have a tenant-specific preference set, Knock uses the tenant's
    // default preference set."
    assert_eq!(
        shown(&sources(
            Some(&environment),
            Some(&tenant),
            None,
            Some(&recipient_default)
        )),
        json!({"channel_types": {"push": false, "sms": false}, "commercial_subscribed": false})
    );
    // A tenant default that sets nothing counts as none.
    assert_eq!(
        shown(&sources(
            None,
            Some(&json!({"channel_types": {}})),
            None,
            Some(&recipient_default)
        )),
        shown(&sources(None, None, None, Some(&recipient_default)))
    );
    // A recipient tenant set without a tenant default.
    assert_eq!(
        shown(&sources(None, None, Some(&recipient_tenant), None)),
        json!({"channel_types": {"email": false}})
    );
}

#[test]
fn the_default_sets_unsubscribe_beats_tenant_sets() {
    let tenant = json!({"commercial_subscribed": true});
    let recipient_tenant = set(json!({"commercial_subscribed": true}));
    let unsubscribed = set(json!({"commercial_subscribed": false}));
    let effective = sources(
        None,
        Some(&tenant),
        Some(&recipient_tenant),
        Some(&unsubscribed),
    );
    assert_eq!(
        effective.commercial_subscribed,
        Some(Setting::Enabled(false))
    );
    // Without one on the default set, the layered value stands.
    let silent = set(json!({}));
    let effective = sources(None, Some(&tenant), Some(&recipient_tenant), Some(&silent));
    assert_eq!(
        effective.commercial_subscribed,
        Some(Setting::Enabled(true))
    );
}
