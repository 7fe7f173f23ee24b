//! Parsing `PreferenceSetRequest` bodies and writing Knock's `PreferenceSet` shape.

use serde_json::{json, Value};

use super::*;
use crate::recipient::FieldError;

const EMAIL_CHANNEL: &str = "550e8400-e29b-41d4-a716-446655440000";

fn set(value: Value) -> PreferenceSet {
    match PreferenceSet::parse(&value, "") {
        Ok((set, _)) => set,
        Err(errors) => panic!("test set does not parse: {errors:?}"),
    }
}

fn errors_of(value: Value, field: &str) -> Vec<FieldError> {
    match PreferenceSet::parse(&value, field) {
        Ok(parsed) => panic!("expected errors, parsed {parsed:?}"),
        Err(mut errors) => {
            errors.sort_by(|a, b| a.field.cmp(&b.field));
            errors
        }
    }
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn parse_errors_name_the_field() {
    let errors = errors_of(
        json!({
            "__persistence_strategy__": "upsert",
            "__strategy__": "replace",
            "channel_type": {"email": false},
            "channel_types": {"email": "no", "emial": false, "sms": {"conditions": [{"variable": "recipient.x", "operator": "bigger", "argument": 1}]}},
            "channels": {"c1": {"conditions": [], "extra": 1}, "c2": {}},
            "workflows": {"w": 3, "x": {"channel_types": {"push": 1}, "bogus": true, "__strategy__": "overwrite"}},
            "categories": {"marketing": {"channel_types": {"email": []}, "conditions": {"all": []}}},
            "commercial_subscribed": "yes",
        }),
        "preferences",
    );
    assert_eq!(
        fields(&errors),
        vec![
            "preferences.__persistence_strategy__",
            "preferences.__strategy__",
            "preferences.categories.marketing.channel_types.email",
            "preferences.categories.marketing.conditions",
            "preferences.channel_type",
            "preferences.channel_types.email",
            "preferences.channel_types.emial",
            "preferences.channel_types.sms.conditions[0].operator",
            "preferences.channels.c1.extra",
            "preferences.channels.c2.conditions",
            "preferences.commercial_subscribed",
            "preferences.workflows.w",
            "preferences.workflows.x.__strategy__",
            "preferences.workflows.x.bogus",
            "preferences.workflows.x.channel_types.push",
        ]
    );
    let message = |field: &str| {
        errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        message("preferences.channel_types.emial"),
        "is not a channel type; use one of chat, email, http, in_app_feed, push, sms"
    );
    assert_eq!(
        message("preferences.channels.c2.conditions"),
        "can't be blank"
    );
    assert_eq!(
        message("preferences.__persistence_strategy__"),
        "must be `merge` or `replace`"
    );
    assert_eq!(
        message("preferences.channel_types.sms.conditions[0].operator"),
        "`bigger` is not a condition operator"
    );
}

#[test]
fn parse_errors_at_the_top_level() {
    assert_eq!(fields(&errors_of(json!([]), "")), vec![""]);
    assert_eq!(
        fields(&errors_of(
            json!({"channels": {"": true}, "categories": 1}),
            ""
        )),
        vec!["categories", "channels"]
    );
    assert_eq!(
        fields(&errors_of(
            json!({"channel_types": {"email": {"conditions": [{"operator": "equal_to"}]}}}),
            ""
        )),
        vec!["channel_types.email.conditions[0].variable"]
    );
}

#[test]
fn parse_reads_the_persistence_strategy() {
    let parse = |value: Value| PreferenceSet::parse(&value, "").map(|(_, strategy)| strategy);
    assert_eq!(parse(json!({})), Ok(PersistenceStrategy::Replace));
    assert_eq!(
        parse(json!({"__persistence_strategy__": null})),
        Ok(PersistenceStrategy::Replace)
    );
    assert_eq!(
        parse(json!({"__persistence_strategy__": "merge"})),
        Ok(PersistenceStrategy::Merge)
    );
    assert_eq!(
        parse(json!({"__persistence_strategy__": "replace"})),
        Ok(PersistenceStrategy::Replace)
    );
    let tenant_default =
        PreferenceSet::parse_with_default(&json!({}), "", PersistenceStrategy::Merge);
    assert_eq!(
        tenant_default.map(|(_, strategy)| strategy),
        Ok(PersistenceStrategy::Merge)
    );
}

#[test]
fn parse_ignores_response_only_fields_and_nulls() {
    let parsed = set(json!({
        "id": "default",
        "__typename": "PreferenceSet",
        "channel_types": {"email": null, "sms": false},
        "workflows": {"w": null, "x": {"conditions": null}},
        "commercial_subscribed": null,
    }));
    assert_eq!(
        parsed.to_json(),
        json!({
            "categories": null,
            "channel_types": {"sms": false},
            "channels": null,
            "commercial_subscribed": null,
            "workflows": {"x": {}},
        })
    );
}

/// The request example of Knock's `PreferenceSetRequest`, extended with `__strategy__`
/// markers and conditions at every level they are allowed.
fn wire_example() -> Value {
    json!({
        "categories": {
            "marketing": false,
            "collaboration": {
                "__strategy__": "replace",
                "channel_types": {"email": false, "in_app_feed": true},
                "channels": {EMAIL_CHANNEL: false},
                "conditions": [{"variable": "recipient.muted_dinos", "operator": "not_contains", "argument": "data.dino"}],
            },
            "transactional": {"channel_types": {"email": false}},
        },
        "channel_types": {
            "__strategy__": "replace",
            "email": true,
            "sms": {"conditions": [{"argument": "US", "operator": "equal_to", "variable": "recipient.country_code"}]},
            "push": {"conditions": [{"operator": "exists", "variable": "recipient.phone_number"}]},
        },
        "channels": {
            "2f641633-95d3-4555-9222-9f1eb7888a80": {"conditions": [{"argument": "US", "operator": "equal_to", "variable": "recipient.country_code"}]},
            "aef6e715-df82-4ab6-b61e-b743e249f7b6": true,
        },
        "commercial_subscribed": {"conditions": [{"argument": "false", "operator": "not_equal_to", "variable": "tenant.settings.preferences.commercial_subscribed"}]},
        "workflows": {
            "dinosaurs-loose": {"channel_types": {"email": false}, "__strategy__": "merge"},
            "welcome-sequence": true,
        },
    })
}

#[test]
fn to_json_round_trips_the_wire_shape() {
    let parsed = set(wire_example());
    let written = parsed.to_json();
    assert_eq!(written, wire_example());
    assert_eq!(set(written), parsed);
}

#[test]
fn to_json_writes_every_key() {
    assert_eq!(
        PreferenceSet::default().to_json(),
        json!({"categories": null, "channel_types": null, "channels": null, "commercial_subscribed": null, "workflows": null})
    );
    assert!(PreferenceSet::default().is_empty());
    assert_eq!(
        set(json!({"channels": {}, "commercial_subscribed": false})).to_json(),
        json!({"categories": null, "channel_types": null, "channels": {}, "commercial_subscribed": false, "workflows": null})
    );
}
