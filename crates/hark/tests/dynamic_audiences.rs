//! Audience definitions through the Management API and dynamic audiences in workflow
//! conditions, on both stores.

mod support;

use serde_json::json;
use support::{Backend, TestServer};

on_both_stores!(
    audience_definitions_through_the_management_api,
    dynamic_membership_follows_current_properties,
);

fn pro_segments() -> serde_json::Value {
    json!([
        {"conditions": [
            {"property": "recipient.plan", "operator": "equal_to", "argument": "pro"},
            {"property": "recipient.seats", "operator": "greater_than", "argument": 5},
        ]},
        {"conditions": [{"property": "recipient.vip", "operator": "equal_to", "argument": true}]},
    ])
}

async fn audience_definitions_through_the_management_api(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    let q = "?environment=development";
    let (status, body) = s
        .mgmt(
            "PUT",
            &format!("/v1/audiences/pro{q}"),
            Some(json!({"audience": {"name": "Pro", "description": "Paying teams", "type": "dynamic", "segments": pro_segments()}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let audience = &body["audience"];
    assert_eq!(audience["key"], "pro");
    assert_eq!(audience["type"], "dynamic");
    assert_eq!(audience["environment"], "development");
    assert_eq!(audience["segments"], pro_segments());
    let (status, body) = s
        .mgmt(
            "PUT",
            &format!("/v1/audiences/beta{q}"),
            Some(json!({"audience": {"name": "Beta", "type": "static"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["audience"].get("segments").is_none());

    let (status, got) = s.mgmt("GET", &format!("/v1/audiences/pro{q}"), None).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["description"], "Paying teams");
    let (_, list) = s
        .mgmt("GET", &format!("/v1/audiences{q}&page_size=1"), None)
        .await;
    assert_eq!(list["entries"][0]["key"], "beta");
    let after = list["page_info"]["after"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(after, "beta");
    let (_, rest) = s
        .mgmt(
            "GET",
            &format!("/v1/audiences{q}&page_size=1&after={after}"),
            None,
        )
        .await;
    assert_eq!(rest["entries"][0]["key"], "pro");
    assert!(rest["page_info"]["after"].is_null());

    // Bad input is refused and changes nothing.
    for (key, audience, field) in [
        (
            "pro",
            json!({"name": "Pro", "type": "static"}),
            "audience.type",
        ),
        (
            "x",
            json!({"name": "X", "type": "dynamic", "segments": []}),
            "audience.segments",
        ),
        (
            "x",
            json!({"name": "X", "type": "dynamic", "segments": [{"conditions": [{"property": "recipient.plan", "operator": "sounds_like"}]}]}),
            "audience.segments[0].conditions[0].operator",
        ),
        ("x", json!({"name": "X", "type": "fuzzy"}), "audience.type"),
        ("x", json!({"type": "static"}), "audience.name"),
    ] {
        let (status, err) = s
            .mgmt(
                "PUT",
                &format!("/v1/audiences/{key}{q}"),
                Some(json!({ "audience": audience })),
            )
            .await;
        assert_eq!(status, 422, "{audience} → {err}");
        assert_eq!(err["errors"][0]["field"], field, "{err}");
    }
    let (status, _) = s.mgmt("GET", &format!("/v1/audiences/x{q}"), None).await;
    assert_eq!(status, 404);
    let (_, still) = s.mgmt("GET", &format!("/v1/audiences/pro{q}"), None).await;
    assert_eq!(still["type"], "dynamic");

    // A dynamic audience has no member list to read or change.
    let (status, err) = s.call("GET", "/v1/audiences/pro/members", None).await;
    assert_eq!(status, 422, "{err}");
    let (status, _) = s
        .call(
            "POST",
            "/v1/audiences/pro/members",
            Some(json!({"members": [{"user": {"id": "ada"}}]})),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = s
        .call(
            "POST",
            "/v1/audiences/beta/members",
            Some(json!({"members": [{"user": {"id": "ada"}}]})),
        )
        .await;
    assert_eq!(status, 204, "static audiences keep their members");

    let (status, done) = s
        .mgmt("DELETE", &format!("/v1/audiences/pro{q}"), None)
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["result"], "success");
    let (status, _) = s.mgmt("GET", &format!("/v1/audiences/pro{q}"), None).await;
    assert_eq!(status, 404, "archived");
    let (status, _) = s
        .mgmt("DELETE", &format!("/v1/audiences/pro{q}"), None)
        .await;
    assert_eq!(status, 404);
    let (_, list) = s.mgmt("GET", &format!("/v1/audiences{q}"), None).await;
    assert_eq!(list["entries"].as_array().map(Vec::len), Some(1));
}

async fn dynamic_membership_follows_current_properties(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    let (status, body) = s
        .mgmt(
            "PUT",
            "/v1/audiences/pro?environment=development",
            Some(
                json!({"audience": {"name": "Pro", "type": "dynamic", "segments": pro_segments()}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.put_workflow(
        "perk",
        json!([{"type": "channel", "ref": "in", "channel_key": "in-app-feed",
                "conditions": {"all": [{"variable": "recipient", "operator": "is_audience_member", "argument": "pro"}]},
                "template": {"markdown_body": "Pro perk"}},
               {"type": "channel", "ref": "out", "channel_key": "in-app-feed",
                "conditions": {"all": [{"variable": "recipient", "operator": "is_not_audience_member", "argument": "pro"}]},
                "template": {"markdown_body": "Upgrade"}}]),
    )
    .await;
    for (id, props) in [
        ("team", json!({"plan": "pro", "seats": 10})),
        ("small", json!({"plan": "pro", "seats": 2})),
        ("vip", json!({"plan": "free", "vip": true})),
        ("free", json!({"plan": "free"})),
    ] {
        s.call("PUT", &format!("/v1/users/{id}"), Some(props)).await;
    }
    s.trigger(
        "perk",
        json!({"recipients": ["team", "small", "vip", "free"]}),
    )
    .await;
    s.run_engine().await;
    assert_eq!(s.feed_texts("team").await, vec!["Pro perk"]);
    assert_eq!(
        s.feed_texts("small").await,
        vec!["Upgrade"],
        "AND within a segment"
    );
    assert_eq!(
        s.feed_texts("vip").await,
        vec!["Pro perk"],
        "OR across segments"
    );
    assert_eq!(s.feed_texts("free").await, vec!["Upgrade"]);

    // Membership follows the user's properties at the time of the run.
    s.call("PUT", "/v1/users/small", Some(json!({"seats": 20})))
        .await;
    s.trigger("perk", json!({"recipients": ["small"]})).await;
    s.run_engine().await;
    let mut small = s.feed_texts("small").await;
    small.sort();
    assert_eq!(small, vec!["Pro perk", "Upgrade"]);

    // Objects are in no audience, even with a member's properties and a member's id.
    s.call(
        "PUT",
        "/v1/objects/teams/team",
        Some(json!({"plan": "pro", "seats": 10, "vip": true})),
    )
    .await;
    s.trigger(
        "perk",
        json!({"recipients": [{"collection": "teams", "id": "team"}]}),
    )
    .await;
    s.run_engine().await;
    let (status, listed) = s.call("GET", "/v1/objects/teams/team/messages", None).await;
    assert_eq!(status, 200, "{listed}");
    let refs: Vec<&str> = listed["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|m| m["source"]["step_ref"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(refs, vec!["out"], "{listed}");

    // An archived audience has no members.
    s.mgmt("DELETE", "/v1/audiences/pro?environment=development", None)
        .await;
    s.trigger("perk", json!({"recipients": ["team"]})).await;
    s.run_engine().await;
    let mut team = s.feed_texts("team").await;
    team.sort();
    assert_eq!(team, vec!["Pro perk", "Upgrade"]);
}
