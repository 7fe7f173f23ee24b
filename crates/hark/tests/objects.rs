//! Objects and subscriptions through the API, and triggers that fan out to subscribers,
//! on both stores.

mod support;

use hark_channels::testing::HttpSink;
use hark_engine::registry::channel_id_for_key;
use hark_engine::ChannelConfig;
use serde_json::{json, Value};
use support::{email_channel, feed_step, Backend, TestServer};

on_both_stores!(
    objects_crud_and_bulk,
    subscriptions_add_list_delete,
    triggers_fan_out_to_subscribers_once_each,
    an_object_recipient_gets_its_own_message,
    an_object_without_email_skips_email_steps,
    runs_are_listed_by_recipient_errors_and_time,
);

async fn objects_crud_and_bulk(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    let (status, object) = s
        .call(
            "PUT",
            "/v1/objects/projects/p1",
            Some(json!({"name": "Apollo", "owner": "ada"})),
        )
        .await;
    assert_eq!(status, 200, "{object}");
    assert_eq!(object["__typename"], "Object");
    assert_eq!(object["collection"], "projects");
    assert_eq!(object["properties"]["name"], "Apollo");
    let (_, object) = s
        .call(
            "PUT",
            "/v1/objects/projects/p1",
            Some(json!({"properties": {"owner": null, "stage": 2}})),
        )
        .await;
    assert_eq!(object["properties"], json!({"name": "Apollo", "stage": 2}));
    let (status, _) = s
        .call("PUT", "/v1/objects/$tenants/x", Some(json!({})))
        .await;
    assert_eq!(status, 422, "reserved collection");
    let (status, body) = s
        .call("PUT", "/v1/objects/projects/p2", Some(json!([1])))
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, op) = s
        .call(
            "POST",
            "/v1/objects/projects/bulk/set",
            Some(json!({"objects": [{"id": "p2", "name": "Gemini"}, {"id": "p3"}]})),
        )
        .await;
    assert_eq!(status, 200, "{op}");
    let (_, list) = s.call("GET", "/v1/objects/projects", None).await;
    let ids: Vec<&str> = list["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|o| o["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec!["p1", "p2", "p3"]);
    s.call(
        "POST",
        "/v1/objects/projects/bulk/delete",
        Some(json!({"object_ids": ["p2", "p3"]})),
    )
    .await;
    let (status, _) = s.call("DELETE", "/v1/objects/projects/p1", None).await;
    assert_eq!(status, 204);
    let (status, _) = s.call("GET", "/v1/objects/projects/p1", None).await;
    assert_eq!(status, 404);
    let (_, list) = s.call("GET", "/v1/objects/projects", None).await;
    assert_eq!(list["entries"], json!([]));
}

async fn subscriptions_add_list_delete(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    let (status, _) = s
        .call(
            "POST",
            "/v1/objects/projects/nope/subscriptions",
            Some(json!({"recipients": ["ada"]})),
        )
        .await;
    assert_eq!(status, 404, "the object must exist");
    s.call(
        "PUT",
        "/v1/objects/projects/p1",
        Some(json!({"name": "Apollo"})),
    )
    .await;
    let (status, subs) = s
        .call(
            "POST",
            "/v1/objects/projects/p1/subscriptions",
            Some(json!({"recipients": ["ada", {"id": "bob", "name": "Bob"}, {"collection": "teams", "id": "t1", "name": "Team"}],
                        "properties": {"role": "watcher"}})),
        )
        .await;
    assert_eq!(status, 200, "{subs}");
    assert_eq!(subs.as_array().map(Vec::len), Some(3));
    assert_eq!(subs[0]["__typename"], "Subscription");
    assert_eq!(subs[0]["properties"]["role"], "watcher");
    let (_, bob) = s.call("GET", "/v1/users/bob", None).await;
    assert_eq!(bob["name"], "Bob", "inline users are identified");
    let (_, page) = s
        .call(
            "GET",
            "/v1/objects/projects/p1/subscriptions?page_size=2",
            None,
        )
        .await;
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(2));
    let after = page["page_info"]["after"]
        .as_str()
        .expect("more")
        .to_string();
    let (_, rest) = s
        .call(
            "GET",
            &format!("/v1/objects/projects/p1/subscriptions?page_size=2&after={after}"),
            None,
        )
        .await;
    assert_eq!(rest["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest["entries"][0]["recipient"]["collection"], "teams");
    let (_, mine) = s.call("GET", "/v1/users/ada/subscriptions", None).await;
    assert_eq!(mine["entries"][0]["object"]["id"], "p1");
    assert_eq!(mine["entries"][0]["object"]["properties"]["name"], "Apollo");
    let (status, body) = s
        .call(
            "POST",
            "/v1/objects/projects/p1/subscriptions",
            Some(json!({"recipients": [{"collection": "", "id": "x"}]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, removed) = s
        .call(
            "DELETE",
            "/v1/objects/projects/p1/subscriptions",
            Some(json!({"recipients": ["ada", "nobody"]})),
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed.as_array().map(Vec::len), Some(1));
    let (_, mine) = s.call("GET", "/v1/users/ada/subscriptions", None).await;
    assert_eq!(mine["entries"], Value::Array(vec![]));

    // Bulk: many objects at once; missing objects are created.
    let (status, op) = s
        .call(
            "POST",
            "/v1/objects/projects/bulk/subscriptions/add",
            Some(json!({"subscriptions": [
                {"id": "p1", "recipients": ["ada"]},
                {"id": "p9", "recipients": ["ada", "bob"], "properties": {"role": "viewer"}}
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["status"], "completed");
    let (_, mine) = s.call("GET", "/v1/users/ada/subscriptions", None).await;
    assert_eq!(mine["entries"].as_array().map(Vec::len), Some(2));
    let (_, p9) = s.call("GET", "/v1/objects/projects/p9", None).await;
    assert_eq!(p9["id"], "p9");
    let (status, _) = s
        .call(
            "POST",
            "/v1/objects/projects/bulk/subscriptions/delete",
            Some(json!({"subscriptions": [{"id": "p9", "recipients": ["ada", "bob"]}]})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, mine) = s.call("GET", "/v1/users/ada/subscriptions", None).await;
    assert_eq!(mine["entries"].as_array().map(Vec::len), Some(1));
    let (status, body) = s
        .call(
            "POST",
            "/v1/objects/projects/bulk/subscriptions/add",
            Some(json!({"subscriptions": [{"id": "p1", "recipients": [{"collection": 3, "id": "x"}]}]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    // A merge carries subscriptions and preference sets to the surviving user.
    s.call(
        "PUT",
        "/v1/users/ada/preferences/acme",
        Some(json!({"channel_types": {"email": false}})),
    )
    .await;
    s.call("PUT", "/v1/users/ada", Some(json!({"name": "Ada"})))
        .await;
    s.call("PUT", "/v1/users/zed", Some(json!({"name": "Zed"})))
        .await;
    let (status, merged) = s
        .call(
            "POST",
            "/v1/users/zed/merge",
            Some(json!({"from_user_id": "ada"})),
        )
        .await;
    assert_eq!(status, 200, "{merged}");
    let (_, subs) = s.call("GET", "/v1/users/zed/subscriptions", None).await;
    assert_eq!(subs["entries"][0]["object"]["id"], "p1");
    let (_, set) = s.call("GET", "/v1/users/zed/preferences/acme", None).await;
    assert_eq!(set["channel_types"]["email"], false);
    let (_, gone) = s.call("GET", "/v1/users/ada/subscriptions", None).await;
    assert_eq!(gone["entries"], json!([]));
}

async fn subscribe(s: &TestServer, object: &str, recipients: Value, properties: Value) {
    let (status, body) = s
        .call(
            "POST",
            &format!("/v1/objects/{object}/subscriptions"),
            Some(json!({"recipients": recipients, "properties": properties})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn triggers_fan_out_to_subscribers_once_each(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "alert",
        json!([feed_step("f", "{{ recipient.id }} as {{ recipient.subscription.role }} on {{ recipient.subscription.object.id }}")]),
    )
    .await;
    s.call("PUT", "/v1/objects/projects/p1", Some(json!({})))
        .await;
    s.call("PUT", "/v1/objects/teams/t1", Some(json!({}))).await;
    subscribe(
        &s,
        "projects/p1",
        json!(["ada", "bob", "carl", {"collection": "teams", "id": "t1"}]),
        json!({"role": "owner"}),
    )
    .await;
    subscribe(
        &s,
        "teams/t1",
        json!(["bob", "dee"]),
        json!({"role": "member"}),
    )
    .await;
    let many: Vec<Value> = (0..1200).map(|i| json!(format!("m{i:04}"))).collect();
    s.call("PUT", "/v1/objects/projects/big", Some(json!({})))
        .await;
    for chunk in many.chunks(100) {
        subscribe(&s, "projects/big", Value::Array(chunk.to_vec()), json!({})).await;
    }
    let (status, body) = s
        .trigger(
            "alert",
            json!({"recipients": [{"collection": "projects", "id": "p1"}, "ada", {"collection": "projects", "id": "big"}], "actor": "carl"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.run_engine().await;
    assert_eq!(
        s.feed_texts("ada").await.len(),
        1,
        "a direct recipient who also subscribes runs once"
    );
    assert_eq!(
        s.feed_texts("bob").await,
        vec!["bob as owner on p1"],
        "reached twice, run once"
    );
    assert_eq!(
        s.feed_texts("dee").await,
        vec!["dee as member on t1"],
        "nested subscriber"
    );
    assert!(
        s.feed_texts("carl").await.is_empty(),
        "the actor is not notified"
    );
    let (_, messages) = s.call("GET", "/v1/messages?page_size=1", None).await;
    assert!(messages["items"].as_array().is_some_and(|m| !m.is_empty()));
    for i in [0, 499, 500, 1199] {
        assert_eq!(s.feed_texts(&format!("m{i:04}")).await.len(), 1, "m{i:04}");
    }
    assert_eq!(s.store.pending_job_count().await.expect("jobs"), 0);
    let (status, body) = s
        .trigger(
            "alert",
            json!({"recipients": [{"collection": "", "id": "x"}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

fn slack_channel() -> ChannelConfig {
    serde_json::from_value(json!({
        "key": "slack", "type": "chat", "provider": "slack", "settings": {},
    }))
    .expect("channel config")
}

/// A Slack-channel object: the trigger runs for the object (its incoming webhook gets
/// the message, `recipient` is the object) and for each subscriber once.
async fn an_object_recipient_gets_its_own_message(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let s = TestServer::start(backend, vec![slack_channel()]).await;
    s.put_workflow(
        "alert",
        json!([
            {"type": "channel", "ref": "chat", "channel_key": "slack",
             "template": {"markdown_body": "to {{ recipient.collection }}/{{ recipient.id }} ({{ recipient.name }})"}},
            feed_step("f", "hi {{ recipient.id }}"),
        ]),
    )
    .await;
    let (status, body) = s
        .call(
            "PUT",
            "/v1/objects/channels/ops",
            Some(json!({"name": "Ops room"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .call(
            "PUT",
            "/v1/objects/channels/ops/channel_data/slack",
            Some(json!({"data": {"connections": [{"incoming_webhook": {"url": sink.url("/services/hook")}}]}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    subscribe(&s, "channels/ops", json!(["ada", "bob"]), json!({})).await;
    let object = json!({"collection": "channels", "id": "ops"});
    let (status, body) = s
        .trigger("alert", json!({"recipients": [object, object, "ada"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    s.run_engine().await;

    let requests = sink.requests();
    assert_eq!(requests.len(), 1, "one post, for the object only");
    assert_eq!(requests[0].path, "/services/hook");
    assert!(
        requests[0].body.contains("to channels/ops (Ops room)"),
        "{}",
        requests[0].body
    );
    assert_eq!(s.feed_texts("ada").await, vec!["hi ada"]);
    assert_eq!(s.feed_texts("bob").await, vec!["hi bob"]);

    let (status, listed) = s
        .call("GET", "/v1/objects/channels/ops/messages", None)
        .await;
    assert_eq!(status, 200, "{listed}");
    let items = listed["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{listed}");
    for item in &items {
        assert_eq!(item["recipient"], object);
    }
    let (_, chat_only) = s
        .call(
            "GET",
            "/v1/objects/channels/ops/messages?channel_id=slack&page_size=1",
            None,
        )
        .await;
    assert_eq!(chat_only["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(chat_only["items"][0]["status"], "sent", "{chat_only}");
    let (_, by_id) = s
        .call(
            "GET",
            &format!("/v1/messages/{}", items[0]["id"].as_str().unwrap_or("")),
            None,
        )
        .await;
    assert_eq!(by_id["recipient"], object);
    // The object's messages are not those of a user who shares its id.
    let (_, user_ops) = s.call("GET", "/v1/users/ops/messages", None).await;
    assert_eq!(user_ops["items"], json!([]));
    let (_, ada) = s.call("GET", "/v1/users/ada/messages", None).await;
    assert_eq!(ada["items"][0]["recipient"], "ada");
    // Named twice, run once: the object's run shows it as `{collection, id}`.
    let (_, runs) = s
        .call(
            "GET",
            "/v1/workflow_recipient_runs?workflow=alert&page_size=50",
            None,
        )
        .await;
    let object_runs: Vec<&Value> = runs["items"]
        .as_array()
        .map(|r| r.iter().filter(|r| r["recipient"] == object).collect())
        .unwrap_or_default();
    assert_eq!(object_runs.len(), 1, "{runs}");
    let (_, none) = s
        .call("GET", "/v1/objects/channels/nobody/messages", None)
        .await;
    assert_eq!(none["items"], json!([]));
}

async fn an_object_without_email_skips_email_steps(backend: Backend) {
    // Nothing listens here: an attempted send would leave a queued email message.
    let s = TestServer::start(backend, vec![email_channel(9)]).await;
    s.put_workflow(
        "digest",
        json!([
            {"type": "channel", "ref": "mail", "channel_key": "email",
             "template": {"subject": "Digest", "text_body": "for {{ recipient.id }}"}},
            feed_step("f", "feed for {{ recipient.id }}"),
        ]),
    )
    .await;
    s.call(
        "PUT",
        "/v1/objects/projects/p9",
        Some(json!({"name": "P9"})),
    )
    .await;
    let (status, body) = s
        .trigger(
            "digest",
            json!({"recipients": [{"collection": "projects", "id": "p9"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.run_engine().await;
    let (_, listed) = s
        .call("GET", "/v1/objects/projects/p9/messages", None)
        .await;
    let items = listed["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "only the feed message: {listed}");
    // The object's own preferences decide its channel steps.
    s.call("PUT", "/v1/objects/projects/quiet", Some(json!({})))
        .await;
    let (status, body) = s
        .call(
            "PUT",
            "/v1/objects/projects/quiet/preferences/default",
            Some(json!({"channel_types": {"in_app_feed": false}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.trigger(
        "digest",
        json!({"recipients": [{"collection": "projects", "id": "quiet"}]}),
    )
    .await;
    s.run_engine().await;
    let (_, quiet) = s
        .call("GET", "/v1/objects/projects/quiet/messages", None)
        .await;
    assert_eq!(quiet["items"], json!([]), "{quiet}");
    assert_eq!(
        items[0]["channel_id"],
        channel_id_for_key("in-app-feed"),
        "{listed}"
    );
}

/// `GET /v1/workflow_recipient_runs` takes a user's id or an object reference as
/// `recipient` (the official clients send the reference as `recipient[id]` and
/// `recipient[collection]`), `has_errors`, and `starting_at` / `ending_at`.
async fn runs_are_listed_by_recipient_errors_and_time(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("note", json!([feed_step("f", "hi {{ recipient.id }}")]))
        .await;
    let (status, body) = s
        .call(
            "PUT",
            "/v1/objects/projects/ops",
            Some(json!({"name": "Ops"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The user `ops` and the object `projects/ops` share an id.
    let object = json!({"collection": "projects", "id": "ops"});
    let (status, body) = s
        .trigger("note", json!({"recipients": ["ops", object]}))
        .await;
    assert_eq!(status, 200, "{body}");
    s.run_engine().await;

    let recipients = |query: &'static str| {
        let s = &s;
        async move {
            let (status, body) = s
                .call("GET", &format!("/v1/workflow_recipient_runs?{query}"), None)
                .await;
            assert_eq!(status, 200, "{query}: {body}");
            body["items"]
                .as_array()
                .map(|runs| runs.iter().map(|r| r["recipient"].clone()).collect())
                .unwrap_or_else(Vec::new)
        }
    };
    assert_eq!(recipients("recipient=ops").await, vec![json!("ops")]);
    assert_eq!(
        recipients("recipient[id]=ops&recipient[collection]=projects").await,
        vec![object.clone()]
    );
    assert!(recipients("recipient[id]=ops&recipient[collection]=teams")
        .await
        .is_empty());
    assert_eq!(recipients("has_errors=false").await.len(), 2);
    assert!(recipients("has_errors=true").await.is_empty());
    assert_eq!(
        recipients("starting_at=2000-01-01T00:00:00Z").await.len(),
        2
    );
    assert!(recipients("starting_at=2999-01-01T00:00:00Z")
        .await
        .is_empty());
    assert_eq!(recipients("ending_at=2999-01-01T00:00:00Z").await.len(), 2);
    assert!(recipients("ending_at=2000-01-01T00:00:00Z")
        .await
        .is_empty());

    for bad in [
        "has_errors=maybe",
        "starting_at=yesterday",
        "recipient[collection]=projects",
    ] {
        let (status, body) = s
            .call("GET", &format!("/v1/workflow_recipient_runs?{bad}"), None)
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_params", "{bad}: {body}");
    }
}
