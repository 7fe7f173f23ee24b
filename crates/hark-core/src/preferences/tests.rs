//! The evaluation rules, one table row per rule.

use serde_json::{json, Value};

use super::*;
use crate::conditions::JsonScope;

const NOW: crate::Millis = 1_750_000_000_000;
const EMAIL_CHANNEL: &str = "550e8400-e29b-41d4-a716-446655440000";
const OTHER_CHANNEL: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

fn set(value: Value) -> PreferenceSet {
    match PreferenceSet::parse(&value, "") {
        Ok((set, _)) => set,
        Err(errors) => panic!("test set does not parse: {errors:?}"),
    }
}

fn scope_root() -> Value {
    json!({
        "recipient": {"id": "u1", "country_code": "US", "muted_dinos": ["t-rex"]},
        "actor": {"id": "u2"},
        "data": {"dino": "t-rex", "other_dino": "raptor"},
    })
}

/// The message of each row; rows change only what they are about.
#[derive(Clone, Copy)]
struct Target {
    workflow: &'static str,
    categories: &'static [&'static str],
    channel_type: &'static str,
    channel_id: &'static str,
    commercial: bool,
    override_preferences: bool,
}

const EMAIL: Target = Target {
    workflow: "new-comment",
    categories: &["collaboration"],
    channel_type: "email",
    channel_id: EMAIL_CHANNEL,
    commercial: false,
    override_preferences: false,
};

fn decide(set: &PreferenceSet, target: Target) -> Decision {
    let categories: Vec<String> = target.categories.iter().map(|c| c.to_string()).collect();
    let message = MessageTarget {
        workflow_key: target.workflow,
        categories: &categories,
        channel_type: target.channel_type,
        channel_id: target.channel_id,
        commercial: target.commercial,
        override_preferences: target.override_preferences,
    };
    let root = scope_root();
    let scope = JsonScope {
        root: &root,
        audiences: &[],
    };
    evaluate(set, &message, &scope, NOW)
}

struct Row {
    rule: &'static str,
    set: Value,
    target: Target,
    allowed: bool,
    decided_by: &'static str,
    /// How many condition lists were evaluated.
    evaluations: usize,
}

fn row(rule: &'static str, set: Value, target: Target, allowed: bool, by: &'static str) -> Row {
    Row {
        rule,
        set,
        target,
        allowed,
        decided_by: by,
        evaluations: 0,
    }
}

fn cond(variable: &str, operator: &str, argument: Value) -> Value {
    json!({"variable": variable, "operator": operator, "argument": argument})
}

fn rows() -> Vec<Row> {
    let in_us = cond("recipient.country_code", "equal_to", json!("US"));
    let in_ca = cond("recipient.country_code", "equal_to", json!("CA"));
    let not_muted = cond("recipient.muted_dinos", "not_contains", json!("data.dino"));
    let not_muted_other = cond(
        "recipient.muted_dinos",
        "not_contains",
        json!("data.other_dino"),
    );
    let not_self = cond("recipient.id", "not_equal_to", json!("actor.id"));
    let commercial = Target {
        commercial: true,
        ..EMAIL
    };
    let overriding = Target {
        override_preferences: true,
        ..EMAIL
    };
    let sms = Target {
        channel_type: "sms",
        channel_id: OTHER_CHANNEL,
        ..EMAIL
    };
    let two_categories = Target {
        categories: &["collaboration", "marketing"],
        ..EMAIL
    };
    let everything_off = json!({
        "channel_types": {"email": false},
        "channels": {EMAIL_CHANNEL: false},
        "workflows": {"new-comment": false},
        "categories": {"collaboration": false},
    });

    vec![
        // Unset means opted in.
        row("empty set allows", json!({}), EMAIL, true, NO_PREFERENCE),
        row(
            "null keys allow",
            json!({"channel_types": null, "workflows": null}),
            EMAIL,
            true,
            NO_PREFERENCE,
        ),
        row(
            "unrelated preferences allow",
            json!({"channel_types": {"sms": false}, "workflows": {"other": false}, "categories": {"billing": false}}),
            EMAIL,
            true,
            NO_PREFERENCE,
        ),
        // Channel types.
        row(
            "channel type false blocks",
            json!({"channel_types": {"email": false}}),
            EMAIL,
            false,
            "channel_types.email",
        ),
        row(
            "channel type true allows",
            json!({"channel_types": {"email": true}}),
            EMAIL,
            true,
            "channel_types.email",
        ),
        row(
            "other channel type's false doesn't apply",
            json!({"channel_types": {"email": false}}),
            sms,
            true,
            NO_PREFERENCE,
        ),
        // Channels beat channel types, both ways.
        row(
            "channel true beats channel type false",
            json!({"channel_types": {"email": false}, "channels": {EMAIL_CHANNEL: true}}),
            EMAIL,
            true,
            "channels.550e8400-e29b-41d4-a716-446655440000",
        ),
        row(
            "channel false beats channel type true",
            json!({"channel_types": {"email": true}, "channels": {EMAIL_CHANNEL: false}}),
            EMAIL,
            false,
            "channels.550e8400-e29b-41d4-a716-446655440000",
        ),
        row(
            "another channel's preference doesn't apply",
            json!({"channel_types": {"email": true}, "channels": {OTHER_CHANNEL: false}}),
            EMAIL,
            true,
            "channel_types.email",
        ),
        // Workflows.
        row(
            "workflow false blocks",
            json!({"workflows": {"new-comment": false}}),
            EMAIL,
            false,
            "workflows.new-comment",
        ),
        row(
            "workflow true allows",
            json!({"workflows": {"new-comment": true}}),
            EMAIL,
            true,
            "workflows.new-comment",
        ),
        row(
            "another workflow's false doesn't apply",
            json!({"workflows": {"invoice-issued": false}}),
            EMAIL,
            true,
            NO_PREFERENCE,
        ),
        row(
            "workflow channel type false blocks",
            json!({"workflows": {"new-comment": {"channel_types": {"email": false, "sms": true}}}}),
            EMAIL,
            false,
            "workflows.new-comment.channel_types.email",
        ),
        row(
            "workflow channel type for another type doesn't apply",
            json!({"workflows": {"new-comment": {"channel_types": {"email": false, "sms": true}}}}),
            sms,
            true,
            "workflows.new-comment.channel_types.sms",
        ),
        row(
            "workflow channel beats workflow channel type",
            json!({"workflows": {"new-comment": {"channel_types": {"email": false}, "channels": {EMAIL_CHANNEL: true}}}}),
            EMAIL,
            true,
            "workflows.new-comment.channels.550e8400-e29b-41d4-a716-446655440000",
        ),
        row(
            "empty workflow object allows",
            json!({"workflows": {"new-comment": {}}}),
            EMAIL,
            true,
            NO_PREFERENCE,
        ),
        // Categories.
        row(
            "category false blocks",
            json!({"categories": {"collaboration": false}}),
            EMAIL,
            false,
            "categories.collaboration",
        ),
        row(
            "category false blocks even when everything else is true",
            json!({"categories": {"collaboration": false}, "workflows": {"new-comment": true}, "channel_types": {"email": true}, "channels": {EMAIL_CHANNEL: true}}),
            EMAIL,
            false,
            "categories.collaboration",
        ),
        row(
            "category the workflow lacks doesn't apply",
            json!({"categories": {"marketing": false}}),
            EMAIL,
            true,
            NO_PREFERENCE,
        ),
        row(
            "any false category blocks",
            json!({"categories": {"collaboration": true, "marketing": false}}),
            two_categories,
            false,
            "categories.marketing",
        ),
        row(
            "all true categories allow",
            json!({"categories": {"collaboration": true, "marketing": true}}),
            two_categories,
            true,
            "categories.collaboration, categories.marketing",
        ),
        row(
            "category channel type false blocks",
            json!({"categories": {"collaboration": {"channel_types": {"email": false, "in_app_feed": true}}}}),
            EMAIL,
            false,
            "categories.collaboration.channel_types.email",
        ),
        row(
            "category channel type true allows",
            json!({"categories": {"collaboration": {"channel_types": {"email": true}}}}),
            EMAIL,
            true,
            "categories.collaboration.channel_types.email",
        ),
        row(
            "category channel beats category channel type",
            json!({"categories": {"collaboration": {"channel_types": {"email": false}, "channels": {EMAIL_CHANNEL: true}}}}),
            EMAIL,
            true,
            "categories.collaboration.channels.550e8400-e29b-41d4-a716-446655440000",
        ),
        row(
            "every scope must pass: top-level false blocks a category true",
            json!({"categories": {"collaboration": {"channel_types": {"email": true}}}, "channel_types": {"email": false}}),
            EMAIL,
            false,
            "channel_types.email",
        ),
        row(
            "every scope must pass: a category false isn't beaten by a top-level channel",
            json!({"categories": {"collaboration": {"channel_types": {"email": false}}}, "channels": {EMAIL_CHANNEL: true}}),
            EMAIL,
            false,
            "categories.collaboration.channel_types.email",
        ),
        row(
            "every scope must pass: workflow false with category true",
            json!({"categories": {"collaboration": true}, "workflows": {"new-comment": {"channel_types": {"email": false}}}}),
            EMAIL,
            false,
            "workflows.new-comment.channel_types.email",
        ),
        // Conditions.
        Row {
            evaluations: 1,
            ..row(
                "channel type conditions that hold allow",
                json!({"channel_types": {"email": {"conditions": [in_us]}}}),
                EMAIL,
                true,
                "channel_types.email.conditions",
            )
        },
        Row {
            evaluations: 1,
            ..row(
                "channel type conditions that fail block",
                json!({"channel_types": {"email": {"conditions": [in_ca]}}}),
                EMAIL,
                false,
                "channel_types.email.conditions",
            )
        },
        Row {
            evaluations: 1,
            ..row(
                "channel conditions beat the channel type",
                json!({"channel_types": {"email": false}, "channels": {EMAIL_CHANNEL: {"conditions": [in_us]}}}),
                EMAIL,
                true,
                "channels.550e8400-e29b-41d4-a716-446655440000.conditions",
            )
        },
        Row {
            evaluations: 1,
            ..row(
                "workflow conditions that fail block",
                json!({"workflows": {"new-comment": {"conditions": [not_muted]}}}),
                EMAIL,
                false,
                "workflows.new-comment.conditions",
            )
        },
        Row {
            evaluations: 1,
            ..row(
                "workflow conditions that hold allow",
                json!({"workflows": {"new-comment": {"conditions": [not_muted_other]}}}),
                EMAIL,
                true,
                "workflows.new-comment.conditions",
            )
        },
        Row {
            evaluations: 1,
            ..row(
                "workflow conditions hold but its channel type blocks",
                json!({"workflows": {"new-comment": {"conditions": [in_us], "channel_types": {"email": false}}}}),
                EMAIL,
                false,
                "workflows.new-comment.channel_types.email",
            )
        },
        Row {
            evaluations: 1,
            ..row(
                "category conditions that fail block",
                json!({"categories": {"collaboration": {"conditions": [in_ca]}}}),
                EMAIL,
                false,
                "categories.collaboration.conditions",
            )
        },
        Row {
            evaluations: 1,
            ..row(
                "category channel type conditions",
                json!({"categories": {"collaboration": {"channel_types": {"email": {"conditions": [in_us]}}}}}),
                EMAIL,
                true,
                "categories.collaboration.channel_types.email.conditions",
            )
        },
        Row {
            evaluations: 1,
            ..row(
                "conditions are ANDed: one failure blocks",
                json!({"workflows": {"new-comment": {"conditions": [in_us, not_self, not_muted]}}}),
                EMAIL,
                false,
                "workflows.new-comment.conditions",
            )
        },
        Row {
            evaluations: 1,
            ..row(
                "conditions are ANDed: all holding allows",
                json!({"workflows": {"new-comment": {"conditions": [in_us, not_self]}}}),
                EMAIL,
                true,
                "workflows.new-comment.conditions",
            )
        },
        Row {
            evaluations: 1,
            ..row(
                "an empty condition list holds",
                json!({"workflows": {"new-comment": {"conditions": []}}}),
                EMAIL,
                true,
                "workflows.new-comment.conditions",
            )
        },
        Row {
            evaluations: 2,
            ..row(
                "evaluation stops at the first block",
                json!({"categories": {"collaboration": {"conditions": [in_us]}}, "workflows": {"new-comment": {"conditions": [in_ca]}}, "channel_types": {"email": {"conditions": [in_us]}}}),
                EMAIL,
                false,
                "workflows.new-comment.conditions",
            )
        },
        // Workflow overrides.
        row(
            "override bypasses every preference",
            everything_off.clone(),
            overriding,
            true,
            "override_preferences",
        ),
        row(
            "override bypasses preference conditions without evaluating them",
            json!({"workflows": {"new-comment": {"conditions": [in_ca]}}}),
            overriding,
            true,
            "override_preferences",
        ),
        // Commercial unsubscribe.
        row(
            "unsubscribed blocks a commercial workflow",
            json!({"commercial_subscribed": false}),
            commercial,
            false,
            "commercial_subscribed",
        ),
        row(
            "unsubscribed doesn't block a transactional workflow",
            json!({"commercial_subscribed": false}),
            EMAIL,
            true,
            NO_PREFERENCE,
        ),
        row(
            "unset subscription allows a commercial workflow",
            json!({}),
            commercial,
            true,
            NO_PREFERENCE,
        ),
        row(
            "subscribed allows a commercial workflow",
            json!({"commercial_subscribed": true}),
            commercial,
            true,
            "commercial_subscribed",
        ),
        row(
            "subscribed commercial workflows still follow other preferences",
            json!({"commercial_subscribed": true, "channel_types": {"email": false}}),
            commercial,
            false,
            "channel_types.email",
        ),
        row(
            "override does not bypass an unsubscribe",
            json!({"commercial_subscribed": false}),
            Target {
                commercial: true,
                override_preferences: true,
                ..EMAIL
            },
            false,
            "commercial_subscribed",
        ),
        row(
            "override bypasses everything else on a subscribed commercial workflow",
            json!({"commercial_subscribed": true, "channel_types": {"email": false}}),
            Target {
                commercial: true,
                override_preferences: true,
                ..EMAIL
            },
            true,
            "override_preferences",
        ),
        Row {
            evaluations: 1,
            ..row(
                "commercial subscription conditions",
                json!({"commercial_subscribed": {"conditions": [in_ca]}}),
                commercial,
                false,
                "commercial_subscribed.conditions",
            )
        },
    ]
}

#[test]
fn evaluation_rules() {
    let mut failures = Vec::new();
    for row in rows() {
        let decision = decide(&set(row.set.clone()), row.target);
        if decision.allowed != row.allowed
            || decision.decided_by != row.decided_by
            || decision.conditions.len() != row.evaluations
        {
            failures.push(format!(
                "{}: expected allowed={} by `{}` with {} evaluations, got allowed={} by `{}` with {}",
                row.rule,
                row.allowed,
                row.decided_by,
                row.evaluations,
                decision.allowed,
                decision.decided_by,
                decision.conditions.len()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn decisions_record_condition_results() {
    let set = set(json!({"channel_types": {"email": {"conditions": [
        cond("recipient.country_code", "equal_to", json!("US")),
        cond("recipient.muted_dinos", "not_contains", json!("data.dino")),
    ]}}}));
    let decision = decide(&set, EMAIL);
    assert!(!decision.allowed);
    let evaluation = &decision.conditions[0];
    assert!(!evaluation.passed);
    let passed: Vec<bool> = evaluation.results.iter().map(|r| r.passed).collect();
    assert_eq!(passed, vec![true, false]);
    assert_eq!(
        evaluation.results[1].resolved_argument,
        Some(json!("t-rex"))
    );
    let logged = serde_json::to_value(&decision).expect("serializes");
    assert_eq!(
        logged["decided_by"],
        json!("channel_types.email.conditions")
    );
    assert_eq!(
        logged["conditions"][0]["results"][0]["operator"],
        json!("equal_to")
    );
}

#[test]
fn duplicate_categories_are_checked_once() {
    let set = set(json!({"categories": {"a": {"conditions": []}}}));
    let decision = decide(
        &set,
        Target {
            categories: &["a", "a"],
            ..EMAIL
        },
    );
    assert!(decision.allowed);
    assert_eq!(decision.conditions.len(), 1);
    assert_eq!(decision.decided_by, "categories.a.conditions");
}
