//! Where preference sets come from besides the preferences endpoints, on both stores:
//! inline `preferences` on trigger recipients, bulk writes, `include[]=preferences` on the
//! user list, and the environment-level default set beneath every recipient's own.

mod support;

use serde_json::{json, Value};
use support::{feed_step, Backend, TestServer};

on_both_stores!(
    inline_trigger_preferences_merge_before_the_run,
    bulk_preferences_replace_each_users_set,
    user_list_includes_preference_sets,
    environment_default_lies_beneath_recipient_sets,
);

async fn default_set(s: &TestServer, user: &str) -> Value {
    let (status, set) = s
        .call(
            "GET",
            &format!("/v1/users/{user}/preferences/default"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{set}");
    set
}

async fn inline_trigger_preferences_merge_before_the_run(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("news", json!([feed_step("f", "News")]))
        .await;
    s.call(
        "PUT",
        "/v1/users/ada/preferences/default",
        Some(json!({"workflows": {"digest": false}})),
    )
    .await;
    let (status, body) = s
        .trigger(
            "news",
            json!({"recipients": [
                {"id": "ada", "preferences": {"default": {"channel_types": {"in_app_feed": false}}}},
                {"id": "bob", "name": "Bob", "preferences": {"default": {"workflows": {"news": true}}}},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.run_engine().await;
    let ada = default_set(&s, "ada").await;
    assert_eq!(
        ada["workflows"]["digest"], false,
        "merged, not replaced: {ada}"
    );
    assert_eq!(ada["channel_types"]["in_app_feed"], false);
    assert!(
        s.feed_texts("ada").await.is_empty(),
        "the run saw the inline set"
    );
    assert_eq!(s.feed_texts("bob").await, vec!["News"]);
    let (_, bob) = s.call("GET", "/v1/users/bob", None).await;
    assert_eq!(bob["name"], "Bob");
    assert!(bob.get("preferences").is_none(), "not a user property");

    // An invalid inline set refuses the whole trigger and writes nothing.
    let (status, body) = s
        .trigger(
            "news",
            json!({"recipients": [
                {"id": "cy", "name": "Cy"},
                {"id": "ada", "preferences": {"default": {"channel_types": {"pigeon": true}}}},
            ]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["errors"][0]["field"],
        "recipients[1].preferences.default.channel_types.pigeon"
    );
    let (status, _) = s.call("GET", "/v1/users/cy", None).await;
    assert_eq!(status, 404, "nothing was written");
    // A trigger refused after parsing (unknown workflow) leaves preferences alone too.
    let (status, _) = s
        .trigger(
            "missing",
            json!({"recipients": [{"id": "ada", "preferences": {"default": {"channel_types": {"in_app_feed": true}}}}]}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        default_set(&s, "ada").await["channel_types"]["in_app_feed"],
        false
    );
}

async fn bulk_preferences_replace_each_users_set(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.call(
        "PUT",
        "/v1/users/ada/preferences/default",
        Some(json!({"workflows": {"digest": false}})),
    )
    .await;
    let (status, op) = s
        .call(
            "POST",
            "/v1/users/bulk/preferences",
            Some(json!({
                "user_ids": ["ada", "bob"],
                "preferences": {"categories": {"marketing": false}, "channel_types": {"email": true}},
            })),
        )
        .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["__typename"], "BulkOperation");
    assert_eq!(op["status"], "completed");
    assert_eq!(op["success_count"], 2);
    let (_, fetched) = s
        .call(
            "GET",
            &format!("/v1/bulk_operations/{}", op["id"].as_str().unwrap_or("")),
            None,
        )
        .await;
    assert_eq!(fetched["name"], "users.set_preferences");
    for user in ["ada", "bob"] {
        let set = default_set(&s, user).await;
        assert_eq!(set["categories"]["marketing"], false, "{user}: {set}");
        assert_eq!(set["channel_types"]["email"], true);
        assert!(
            set["workflows"].is_null(),
            "{user}: replaced, not merged: {set}"
        );
    }
    // `preferences.id` names the set: a tenant set here.
    let (status, _) = s
        .call(
            "POST",
            "/v1/users/bulk/preferences",
            Some(json!({"user_ids": ["ada"], "preferences": {"id": "acme", "workflows": {"news": false}}})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, acme) = s.call("GET", "/v1/users/ada/preferences/acme", None).await;
    assert_eq!(acme["workflows"]["news"], false);
    assert_eq!(
        default_set(&s, "ada").await["categories"]["marketing"],
        false
    );

    // Bad input: an invalid set or a missing list changes nothing.
    for body in [
        json!({"user_ids": ["ada"], "preferences": {"channel_types": {"pigeon": true}}}),
        json!({"preferences": {"workflows": {"news": true}}}),
        json!({"user_ids": ["ada"]}),
        json!({"user_ids": [7], "preferences": {}}),
    ] {
        let (status, err) = s
            .call("POST", "/v1/users/bulk/preferences", Some(body.clone()))
            .await;
        assert_eq!(status, 422, "{body} → {err}");
        assert_eq!(err["code"], "invalid_params", "{err}");
    }
    assert_eq!(default_set(&s, "ada").await["channel_types"]["email"], true);
}

async fn user_list_includes_preference_sets(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    for user in ["ada", "bob"] {
        s.call(
            "PUT",
            &format!("/v1/users/{user}"),
            Some(json!({"name": user})),
        )
        .await;
    }
    s.call(
        "PUT",
        "/v1/users/ada/preferences/default",
        Some(json!({"workflows": {"digest": false}})),
    )
    .await;
    s.call(
        "PUT",
        "/v1/users/ada/preferences/acme",
        Some(json!({"channel_types": {"sms": false}})),
    )
    .await;
    let (status, plain) = s.call("GET", "/v1/users", None).await;
    assert_eq!(status, 200, "{plain}");
    assert!(plain["entries"][0].get("preferences").is_none());
    for query in ["include[]=preferences", "include=preferences"] {
        let (status, list) = s.call("GET", &format!("/v1/users?{query}"), None).await;
        assert_eq!(status, 200, "{list}");
        let entries = list["entries"].as_array().cloned().unwrap_or_default();
        let of = |id: &str| {
            entries
                .iter()
                .find(|e| e["id"] == id)
                .map(|e| e["preferences"].clone())
                .unwrap_or(Value::Null)
        };
        let ada = of("ada");
        assert_eq!(ada["default"]["__typename"], "PreferenceSet", "{ada}");
        assert_eq!(ada["default"]["workflows"]["digest"], false);
        assert_eq!(ada["acme"]["id"], "acme");
        assert_eq!(ada["acme"]["channel_types"]["sms"], false);
        assert_eq!(of("bob"), json!({}), "no sets stored");
    }
    let (status, err) = s
        .call("GET", "/v1/users?include[]=channel_data", None)
        .await;
    assert_eq!(status, 422, "{err}");
}

async fn environment_default_lies_beneath_recipient_sets(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("news", json!([feed_step("f", "News")]))
        .await;
    let (status, empty) = s.mgmt("GET", "/v1/preference_sets/default", None).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["id"], "default");
    assert!(empty["workflows"].is_null());
    let (status, set) = s
        .mgmt(
            "PUT",
            "/v1/preference_sets/default",
            Some(json!({"workflows": {"news": false}})),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["workflows"]["news"], false);
    let (status, err) = s
        .mgmt(
            "PUT",
            "/v1/preference_sets/default",
            Some(json!({"channel_types": {"pigeon": false}})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    let (_, kept) = s.mgmt("GET", "/v1/preference_sets/default", None).await;
    assert_eq!(
        kept["workflows"]["news"], false,
        "a refused write changed nothing"
    );
    // The environment default is per environment: the public API of another environment
    // is unaffected, and a service token alone can change it.
    let (status, _) = s
        .call("PUT", "/mgmt/v1/preference_sets/default", Some(json!({})))
        .await;
    assert_eq!(status, 401, "a secret key is not a service token");

    s.call(
        "PUT",
        "/v1/users/keen/preferences/default",
        Some(json!({"workflows": {"news": true}})),
    )
    .await;
    s.call(
        "PUT",
        "/v1/users/other/preferences/default",
        Some(json!({"workflows": {"digest": true}})),
    )
    .await;
    for user in ["plain", "keen", "other"] {
        s.trigger("news", json!({"recipients": [user]})).await;
    }
    s.run_engine().await;
    assert!(
        s.feed_texts("plain").await.is_empty(),
        "blocked by the environment default"
    );
    assert!(
        s.feed_texts("other").await.is_empty(),
        "a recipient set without this workflow keeps the default beneath it"
    );
    assert_eq!(
        s.feed_texts("keen").await,
        vec!["News"],
        "the recipient's own set wins"
    );
    let run = &s.runs_of("plain", "news").await[0];
    let log = s.run_log(run["id"].as_str().unwrap_or("")).await;
    let skipped = log["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["event"] == "step_skipped"))
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        skipped["data"]["preferences"]["decided_by"]
            .as_str()
            .is_some_and(|d| d.contains("workflows.news")),
        "{skipped}"
    );

    let (status, _) = s.mgmt("DELETE", "/v1/preference_sets/default", None).await;
    assert_eq!(status, 204);
    s.trigger("news", json!({"recipients": ["plain"]})).await;
    s.run_engine().await;
    assert_eq!(s.feed_texts("plain").await, vec!["News"], "default removed");
}
