//! Preference sets through the API, and their enforcement at channel steps, on both
//! stores. The evaluation rules themselves are tabled in `hark-core::preferences`.

mod support;

use serde_json::{json, Value};
use support::{feed_step, Backend, TestServer};

on_both_stores!(
    preference_sets_merge_replace_and_validate,
    channel_steps_honour_preferences,
    inline_and_object_preference_sets,
);

async fn put_prefs(s: &TestServer, user: &str, set: &str, body: Value) -> (u16, Value) {
    s.call(
        "PUT",
        &format!("/v1/users/{user}/preferences/{set}"),
        Some(body),
    )
    .await
}

async fn preference_sets_merge_replace_and_validate(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    let (status, empty) = s
        .call("GET", "/v1/users/ada/preferences/default", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(empty["__typename"], "PreferenceSet");
    assert_eq!(empty["id"], "default");
    let (status, set) = put_prefs(
        &s,
        "ada",
        "default",
        json!({"workflows": {"digest": false}}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["workflows"]["digest"], false);
    let (_, merged) = put_prefs(
        &s,
        "ada",
        "default",
        json!({"__persistence_strategy__": "merge", "categories": {"marketing": {"channel_types": {"email": false}}}}),
    )
    .await;
    assert_eq!(
        merged["workflows"]["digest"], false,
        "merge keeps: {merged}"
    );
    assert_eq!(
        merged["categories"]["marketing"]["channel_types"]["email"],
        false
    );
    let (_, replaced) = put_prefs(
        &s,
        "ada",
        "default",
        json!({"channel_types": {"sms": false}}),
    )
    .await;
    assert!(replaced["workflows"].is_null(), "replace drops: {replaced}");
    assert_eq!(replaced["channel_types"]["sms"], false);
    let (status, body) = put_prefs(
        &s,
        "ada",
        "default",
        json!({"channel_types": {"pigeon": false}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["errors"][0]["field"],
        "preferences.channel_types.pigeon"
    );
    let (_, after) = s
        .call("GET", "/v1/users/ada/preferences/default", None)
        .await;
    assert_eq!(
        after["channel_types"]["sms"], false,
        "a refused write changed nothing"
    );
    put_prefs(&s, "ada", "acme", json!({"channel_types": {"email": true}})).await;
    let (_, list) = s.call("GET", "/v1/users/ada/preferences", None).await;
    let ids: Vec<&str> = list
        .as_array()
        .map(|l| l.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec!["acme", "default"]);
    let (status, _) = s
        .call("DELETE", "/v1/users/ada/preferences/acme", None)
        .await;
    assert_eq!(status, 204);
    let (_, list) = s.call("GET", "/v1/users/ada/preferences", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
}

async fn decision_of(s: &TestServer, user: &str, workflow: &str) -> Value {
    let run = &s.runs_of(user, workflow).await[0];
    let log = s.run_log(run["id"].as_str().expect("id")).await;
    log["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["event"] == "step_skipped"))
        .map(|e| e["data"].clone())
        .unwrap_or(Value::Null)
}

async fn channel_steps_honour_preferences(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("news", json!([feed_step("f", "News")]))
        .await;
    s.put_workflow_request(
        "security",
        json!({"name": "security", "settings": {"override_preferences": true}, "steps": [feed_step("f", "Security")]}),
    )
    .await;
    put_prefs(
        &s,
        "off",
        "default",
        json!({"channel_types": {"in_app_feed": false}}),
    )
    .await;
    put_prefs(
        &s,
        "cat",
        "default",
        json!({"categories": {"updates": false}}),
    )
    .await;
    put_prefs(
        &s,
        "cat-on",
        "default",
        json!({"categories": {"updates": {"channel_types": {"in_app_feed": true}}}, "channel_types": {"in_app_feed": false}}),
    )
    .await;
    put_prefs(
        &s,
        "cond",
        "default",
        json!({"channel_types": {"in_app_feed": {"conditions": [{"variable": "recipient.plan", "operator": "equal_to", "argument": "pro"}]}}}),
    )
    .await;
    for user in ["off", "cat", "cat-on", "plain"] {
        s.trigger("news", json!({"recipients": [user]})).await;
        s.trigger("security", json!({"recipients": [user]})).await;
    }
    s.trigger(
        "news",
        json!({"recipients": [{"id": "cond", "plan": "free"}]}),
    )
    .await;
    s.run_engine().await;
    assert_eq!(
        s.feed_texts("off").await,
        vec!["Security"],
        "override bypasses"
    );
    assert_eq!(s.feed_texts("cat").await, vec!["Security"]);
    assert_eq!(
        s.feed_texts("cat-on").await,
        vec!["Security"],
        "category and channel type must both allow"
    );
    let mut plain = s.feed_texts("plain").await;
    plain.sort();
    assert_eq!(plain, vec!["News", "Security"]);
    assert!(s.feed_texts("cond").await.is_empty());
    let decision = decision_of(&s, "off", "news").await;
    assert_eq!(decision["reason"], "recipient_preferences");
    assert!(
        decision["preferences"]["decided_by"]
            .as_str()
            .is_some_and(|d| d.contains("channel_types.in_app_feed")),
        "{decision}"
    );
    assert_eq!(
        decision_of(&s, "cond", "news").await["preferences"]["conditions"][0]["passed"],
        false
    );
    s.call("PUT", "/v1/users/cond", Some(json!({"plan": "pro"})))
        .await;
    s.trigger("news", json!({"recipients": ["cond"]})).await;
    s.run_engine().await;
    assert_eq!(s.feed_texts("cond").await, vec!["News"]);

    // A tenant's default preferences apply to runs in that tenant, unless the recipient
    // has a set for that tenant.
    s.call(
        "PUT",
        "/v1/tenants/quiet",
        Some(json!({"settings": {"preference_set": {"channel_types": {"in_app_feed": false}}}})),
    )
    .await;
    put_prefs(
        &s,
        "t-own",
        "quiet",
        json!({"channel_types": {"in_app_feed": true}}),
    )
    .await;
    for user in ["t-plain", "t-own"] {
        s.trigger("news", json!({"recipients": [user], "tenant": "quiet"}))
            .await;
    }
    s.run_engine().await;
    assert!(s.feed_texts("t-plain").await.is_empty());
    assert_eq!(s.feed_texts("t-own").await, vec!["News"]);
}

async fn inline_and_object_preference_sets(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    put_prefs(
        &s,
        "ada",
        "default",
        json!({"workflows": {"digest": false}}),
    )
    .await;
    // Inline sets on identify merge into what is stored.
    let (status, user) = s
        .call(
            "PUT",
            "/v1/users/ada",
            Some(json!({"name": "Ada", "preferences": {"default": {"channel_types": {"email": false}}}})),
        )
        .await;
    assert_eq!(status, 200, "{user}");
    assert!(user.get("preferences").is_none(), "not a user property");
    let (_, set) = s
        .call("GET", "/v1/users/ada/preferences/default", None)
        .await;
    assert_eq!(set["workflows"]["digest"], false);
    assert_eq!(set["channel_types"]["email"], false);
    // An invalid inline set refuses the whole identify.
    let (status, body) = s
        .call(
            "PUT",
            "/v1/users/bob",
            Some(json!({"name": "Bob", "preferences": {"default": {"channel_types": {"pigeon": true}}}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["errors"][0]["field"],
        "preferences.default.channel_types.pigeon"
    );
    let (status, _) = s.call("GET", "/v1/users/bob", None).await;
    assert_eq!(status, 404, "nothing was written");

    // Objects have preference sets too.
    let (status, set) = s
        .call(
            "PUT",
            "/v1/objects/projects/p1/preferences/default",
            Some(json!({"categories": {"updates": false}})),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["categories"]["updates"], false);
    let (_, list) = s
        .call("GET", "/v1/objects/projects/p1/preferences", None)
        .await;
    assert_eq!(list[0]["id"], "default");
    assert_eq!(list[0]["categories"]["updates"], false);
    let (status, _) = s
        .call(
            "DELETE",
            "/v1/objects/projects/p1/preferences/default",
            None,
        )
        .await;
    assert_eq!(status, 204);
}
