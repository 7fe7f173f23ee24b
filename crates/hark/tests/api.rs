//! End-to-end behaviour of the public and Management APIs with the engine in virtual
//! time, on SQLite and PostgreSQL.

mod support;

use serde_json::{json, Value};
use support::{feed_step, Backend, TestServer};

on_both_stores!(
    errors_have_knocks_shape_and_change_nothing,
    users_identify_get_list_merge_delete,
    trigger_renders_into_the_feed,
    feed_filters_pagination_and_engagement,
    idempotency_key_replays_and_refuses,
    runs_are_pinned_to_their_committed_version,
    cancel_stops_pending_runs,
    inactive_workflows_refuse_triggers,
    management_api_validates_and_lists,
    run_log_shows_every_step,
    environments_never_see_each_other,
);

async fn errors_have_knocks_shape_and_change_nothing(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("w", json!([feed_step("f", "hi")])).await;

    let (status, body) = s.call_with("GET", "/v1/users/u", None, "", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "api_key_missing");
    assert_eq!(body["status"], 401);
    assert_eq!(body["type"], "authentication_error");
    assert!(body["message"].is_string());

    let (status, body) = s
        .call_with("GET", "/v1/users/u", None, "sk_nope", &[])
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_api_key"))
    );

    let (status, body) = s.trigger("missing", json!({"recipients": ["u"]})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("workflow_missing"))
    );

    let (status, body) = s.trigger("w", json!({"recipients": "u"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "invalid_params");
    assert_eq!(body["errors"][0]["field"], "recipients");

    let too_many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let (status, _) = s.trigger("w", json!({"recipients": too_many})).await;
    assert_eq!(status, 422);

    let (status, body) = s
        .trigger(
            "w",
            json!({"recipients": ["ok", {"id": "bad", "email": 5}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "recipients[1].email");

    // Malformed JSON is a 400.
    let resp = s
        .http
        .post(format!("{}/v1/workflows/w/trigger", s.base))
        .bearer_auth(&s.secret_key)
        .header("content-type", "application/json")
        .body("{\"recipients\": [")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "invalid_json");

    // A public key never triggers.
    let (status, body) = s
        .call_with(
            "POST",
            "/v1/workflows/w/trigger",
            Some(json!({"recipients": ["u"]})),
            &s.public_key.clone(),
            &[],
        )
        .await;
    assert_eq!(status, 401, "{body}");

    let (status, body) = s.call("GET", "/v1/nothing-here", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("route_missing"))
    );

    // None of the refused requests stored anything.
    assert_eq!(s.store.pending_job_count().await.expect("count"), 0);
    assert_eq!(s.run_engine().await, 0);
    assert!(s.messages_of("ok").await.is_empty());
    let (status, _) = s.call("GET", "/v1/users/ok", None).await;
    assert_eq!(
        status, 404,
        "the inline user of a refused trigger was not identified"
    );
}

async fn users_identify_get_list_merge_delete(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    let (status, user) = s
        .call(
            "PUT",
            "/v1/users/ada",
            Some(json!({"name": "Ada", "email": "ada@example.com", "plan": "pro"})),
        )
        .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["__typename"], "User");
    assert_eq!(
        user["plan"], "pro",
        "custom properties are flattened onto the user"
    );
    assert!(user["updated_at"].is_string());

    let (status, body) = s
        .call("PUT", "/v1/users/ada", Some(json!({"email": 42})))
        .await;
    assert_eq!(status, 422, "{body}");
    let (_, user) = s.call("GET", "/v1/users/ada", None).await;
    assert_eq!(
        user["email"], "ada@example.com",
        "a refused identify changes nothing"
    );

    for i in 0..4 {
        s.call(
            "PUT",
            &format!("/v1/users/u{i}"),
            Some(json!({"name": format!("U{i}")})),
        )
        .await;
    }
    let mut ids = Vec::new();
    let mut path = "/v1/users?page_size=2".to_string();
    loop {
        let (status, page) = s.call("GET", &path, None).await;
        assert_eq!(status, 200);
        assert_eq!(page["page_info"]["page_size"], 2);
        for e in page["entries"].as_array().expect("entries") {
            ids.push(e["id"].as_str().expect("id").to_string());
        }
        match page["page_info"]["after"].as_str() {
            Some(after) => path = format!("/v1/users?page_size=2&after={after}"),
            None => break,
        }
    }
    assert_eq!(ids, vec!["ada", "u0", "u1", "u2", "u3"]);

    let (status, merged) = s
        .call(
            "POST",
            "/v1/users/ada/merge",
            Some(json!({"from_user_id": "u0"})),
        )
        .await;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(merged["name"], "Ada");
    let (status, _) = s.call("GET", "/v1/users/u0", None).await;
    assert_eq!(status, 404);

    let (status, op) = s
        .call(
            "POST",
            "/v1/users/bulk/identify",
            Some(json!({"users": [{"id": "b1", "name": "B"}, {"id": "b2"}]})),
        )
        .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["__typename"], "BulkOperation");
    assert_eq!(op["success_count"], 2);
    let (status, again) = s
        .call(
            "GET",
            &format!("/v1/bulk_operations/{}", op["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!((status, &again["id"]), (200, &op["id"]));
    let (status, _) = s
        .call(
            "POST",
            "/v1/users/bulk/delete",
            Some(json!({"user_ids": ["b1", "b2"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = s.call("GET", "/v1/users/b1", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("user_missing")));
    let (status, _) = s.call("DELETE", "/v1/users/ada", None).await;
    assert_eq!(status, 204);
    let (status, _) = s.call("DELETE", "/v1/users/ada", None).await;
    assert_eq!(status, 404);
}

async fn trigger_renders_into_the_feed(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "welcome",
        json!([feed_step(
            "feed",
            "Hello **{{ recipient.name }}** from {{ actor.name }}: {{ data.note }}"
        )]),
    )
    .await;
    let (status, body) = s
        .trigger(
            "welcome",
            json!({
                "recipients": [{"id": "ada", "name": "Ada"}, "ghost"],
                "actor": {"id": "bob", "name": "Bob"},
                "data": {"note": "hi", "url": "https://example.com/x"},
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let run_id = body["workflow_run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    assert_eq!(
        s.feed("ada", "").await["entries"].as_array().map(Vec::len),
        Some(0)
    );
    s.run_engine().await;

    let feed = s.feed("ada", "").await;
    let item = &feed["entries"][0];
    assert_eq!(feed["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(item["__typename"], "FeedItem");
    assert!(item["__cursor"].is_string());
    assert_eq!(item["blocks"][0]["type"], "markdown");
    assert_eq!(item["blocks"][0]["content"], "Hello **Ada** from Bob: hi");
    assert_eq!(
        item["blocks"][0]["rendered"],
        "<p>Hello <strong>Ada</strong> from Bob: hi</p>"
    );
    assert_eq!(item["blocks"][1]["name"], "action_url");
    assert_eq!(item["blocks"][1]["rendered"], "https://example.com/x");
    assert_eq!(item["actors"][0]["id"], "bob");
    assert_eq!(item["actors"][0]["name"], "Bob");
    // The recipient is read beside the page, the actor after it.
    assert_eq!(item["activities"][0]["recipient"]["id"], "ada");
    assert_eq!(item["activities"][0]["recipient"]["name"], "Ada");
    assert_eq!(item["activities"][0]["actor"]["name"], "Bob");
    assert_eq!(item["source"]["key"], "welcome");
    assert_eq!(item["source"]["categories"], json!(["updates"]));
    assert_eq!(item["data"]["note"], "hi");
    assert_eq!(feed["meta"]["total_count"], 1);
    assert_eq!(feed["meta"]["unread_count"], 1);
    assert_eq!(feed["meta"]["unseen_count"], 1);
    assert_eq!(feed["page_info"]["__typename"], "PageInfo");
    assert!(feed["vars"].is_object());

    // A recipient nobody identified still gets the in-app message.
    assert_eq!(
        s.feed("ghost", "").await["entries"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let messages = s.messages_of("ada").await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["status"], "delivered");
    assert_eq!(m["source"]["workflow_run_id"], run_id.as_str());
    let id = m["id"].as_str().expect("id");
    let (status, content) = s
        .call("GET", &format!("/v1/messages/{id}/content"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(content["data"]["__typename"], "MessageInAppFeedContent");
    assert_eq!(content["data"]["action_url"], "https://example.com/x");
    let (_, events) = s
        .call("GET", &format!("/v1/messages/{id}/events"), None)
        .await;
    assert_eq!(events["items"][0]["type"], "message.delivered");

    // Running the engine again creates nothing new.
    s.run_engine().await;
    assert_eq!(s.messages_of("ada").await.len(), 1);
}

async fn feed_filters_pagination_and_engagement(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("a", json!([feed_step("f", "A {{ data.n }}")]))
        .await;
    s.put_workflow("b", json!([feed_step("f", "B {{ data.n }}")]))
        .await;
    for n in 0..3 {
        s.trigger(
            "a",
            json!({"recipients": ["u"], "data": {"n": n}, "tenant": "acme"}),
        )
        .await;
        s.clock.advance(1000);
        s.run_engine().await;
    }
    s.trigger("b", json!({"recipients": ["u"], "data": {"n": 9}}))
        .await;
    s.run_engine().await;

    let feed = s.feed("u", "").await;
    let contents: Vec<&str> = feed["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["blocks"][0]["content"].as_str().expect("content"))
        .collect();
    assert_eq!(contents, vec!["B 9", "A 2", "A 1", "A 0"], "newest first");
    assert_eq!(
        s.feed("u", "?source=b").await["entries"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(s.feed("u", "?tenant=acme").await["meta"]["total_count"], 3);
    assert_eq!(
        s.feed("u", "?has_tenant=false").await["meta"]["total_count"],
        1
    );
    assert_eq!(
        s.feed("u", "?workflow_categories[]=updates").await["meta"]["total_count"],
        4
    );
    assert_eq!(
        s.feed("u", "?workflow_categories[]=other").await["meta"]["total_count"],
        0
    );
    let filtered = s
        .feed("u", &format!("?trigger_data={}", urlencode(r#"{"n":1}"#)))
        .await;
    assert_eq!(filtered["entries"].as_array().map(Vec::len), Some(1));

    let page1 = s.feed("u", "?page_size=2").await;
    let after = page1["page_info"]["after"]
        .as_str()
        .expect("more pages")
        .to_string();
    let page2 = s.feed("u", &format!("?page_size=2&after={after}")).await;
    assert_eq!(page2["entries"][0]["blocks"][0]["content"], "A 1");
    assert!(page2["page_info"]["after"].is_null());
    // The browser client refetches newer items with `before` = first cursor.
    let first_cursor = page2["entries"][0]["__cursor"].as_str().expect("cursor");
    let newer = s.feed("u", &format!("?before={first_cursor}")).await;
    assert_eq!(newer["entries"].as_array().map(Vec::len), Some(2));

    let ids: Vec<String> = feed["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect();
    let (status, m) = s
        .call("PUT", &format!("/v1/messages/{}/read", ids[0]), None)
        .await;
    assert_eq!(status, 200, "{m}");
    assert!(m["read_at"].is_string());
    assert_eq!(m["engagement_statuses"], json!(["read"]));
    let (status, updated) = s
        .call(
            "POST",
            "/v1/messages/batch/seen",
            Some(json!({"message_ids": [ids[0], ids[1]]})),
        )
        .await;
    assert_eq!((status, updated.as_array().map(Vec::len)), (200, Some(2)));
    let meta = &s.feed("u", "").await["meta"];
    assert_eq!(
        (meta["unread_count"].as_i64(), meta["unseen_count"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(
        s.feed("u", "?status=unread").await["entries"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_eq!(
        s.feed("u", "?status=read").await["entries"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    s.call("PUT", &format!("/v1/messages/{}/archived", ids[3]), None)
        .await;
    assert_eq!(
        s.feed("u", "").await["meta"]["total_count"],
        3,
        "archived excluded by default"
    );
    assert_eq!(
        s.feed("u", "?archived=include").await["meta"]["total_count"],
        4
    );
    assert_eq!(
        s.feed("u", "?archived=only").await["meta"]["total_count"],
        1
    );
    let (status, _) = s
        .call("DELETE", &format!("/v1/messages/{}/archived", ids[3]), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.feed("u", "").await["meta"]["total_count"], 4);

    let (status, body) = s
        .call("GET", "/v1/users/u/feeds/in-app-feed?status=bogus", None)
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = s
        .call("GET", "/v1/users/u/feeds/no-such-channel", None)
        .await;
    assert_eq!(status, 404);

    let (status, list) = s
        .call("GET", "/v1/messages?source=a&status[]=delivered", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3));
    let (_, list) = s
        .call("GET", "/v1/messages?engagement_status[]=read", None)
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn idempotency_key_replays_and_refuses(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("w", json!([feed_step("f", "once")])).await;
    let body = json!({"recipients": ["u"], "data": {"x": 1}});
    let key = s.secret_key.clone();
    let (s1, r1) = s
        .call_with(
            "POST",
            "/v1/workflows/w/trigger",
            Some(body.clone()),
            &key,
            &[("Idempotency-Key", "abc")],
        )
        .await;
    let resp = s
        .http
        .post(format!("{}/v1/workflows/w/trigger", s.base))
        .bearer_auth(&key)
        .header("Idempotency-Key", "abc")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let r2: Value = resp.json().await.expect("json");
    assert_eq!((s1, &r1), (200, &r2));
    let (s3, r3) = s
        .call_with(
            "POST",
            "/v1/workflows/w/trigger",
            Some(json!({"recipients": ["v"]})),
            &key,
            &[("Idempotency-Key", "abc")],
        )
        .await;
    assert_eq!(s3, 422, "{r3}");
    assert_eq!(r3["code"], "idempotency_key_reused");
    s.run_engine().await;
    assert_eq!(s.messages_of("u").await.len(), 1);
    assert!(s.messages_of("v").await.is_empty());
    let long = "k".repeat(256);
    let (status, _) = s
        .call_with(
            "POST",
            "/v1/workflows/w/trigger",
            Some(body),
            &key,
            &[("Idempotency-Key", &long)],
        )
        .await;
    assert_eq!(status, 422);
}

async fn runs_are_pinned_to_their_committed_version(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("w", json!([feed_step("f", "version one")]))
        .await;
    let (status, _) = s.trigger("w", json!({"recipients": ["u"]})).await;
    assert_eq!(status, 200);
    s.put_workflow("w", json!([feed_step("f", "version two")]))
        .await;
    // Saved but not committed: triggers keep using version two.
    let (status, _) = s
        .mgmt(
            "PUT",
            "/v1/workflows/w?environment=development",
            Some(json!({"workflow": {"name": "w", "steps": [feed_step("f", "draft")]}})),
        )
        .await;
    assert_eq!(status, 200);
    s.trigger("w", json!({"recipients": ["v"]})).await;
    s.run_engine().await;
    assert_eq!(
        s.feed("u", "").await["entries"][0]["blocks"][0]["content"],
        "version one"
    );
    assert_eq!(
        s.feed("v", "").await["entries"][0]["blocks"][0]["content"],
        "version two"
    );
    let (_, w) = s.mgmt("GET", "/v1/workflows/w", None).await;
    assert_eq!(w["steps"][0]["template"]["markdown_body"], "draft");
}

async fn cancel_stops_pending_runs(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("w", json!([feed_step("f", "x")])).await;
    s.trigger(
        "w",
        json!({"recipients": ["a", "b"], "cancellation_key": "c1"}),
    )
    .await;
    let (status, _) = s
        .call(
            "POST",
            "/v1/workflows/w/cancel",
            Some(json!({"cancellation_key": "c1", "recipients": ["a"]})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = s
        .call("POST", "/v1/workflows/w/cancel", Some(json!({})))
        .await;
    assert_eq!(status, 422, "{body}");
    s.run_engine().await;
    assert!(s.messages_of("a").await.is_empty());
    assert_eq!(s.messages_of("b").await.len(), 1);
    let (_, runs) = s
        .call("GET", "/v1/workflow_recipient_runs?recipient=a", None)
        .await;
    assert_eq!(runs["items"][0]["status"], "cancelled");
}

async fn inactive_workflows_refuse_triggers(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("w", json!([feed_step("f", "x")])).await;
    // The CLI sends `?status=false` with an empty body.
    let (status, w) = s
        .mgmt("PUT", "/v1/workflows/w/activate?status=false", None)
        .await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["workflow"]["active"], false);
    let (status, body) = s.trigger("w", json!({"recipients": ["u"]})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("workflow_inactive"))
    );
    let (_, w) = s
        .mgmt(
            "PUT",
            "/v1/workflows/w/activate",
            Some(json!({"status": true})),
        )
        .await;
    assert_eq!(w["workflow"]["active"], true);
    let (status, _) = s.trigger("w", json!({"recipients": ["u"]})).await;
    assert_eq!(status, 200);
}

async fn management_api_validates_and_lists(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    let (status, body) = s
        .call_with("GET", "/mgmt/v1/workflows", None, "wrong", &[])
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_service_token"))
    );
    let (status, body) = s
        .call_with(
            "GET",
            "/mgmt/v1/workflows",
            None,
            &s.secret_key.clone(),
            &[],
        )
        .await;
    assert_eq!(status, 401, "an API key is not a service token: {body}");

    let (status, channels) = s.mgmt("GET", "/v1/channels", None).await;
    assert_eq!(status, 200);
    assert_eq!(channels["entries"][0]["key"], "in-app-feed");
    assert_eq!(channels["entries"][0]["type"], "in_app_feed");
    let channel_id = channels["entries"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();

    let bad = json!({"workflow": {"name": "x", "steps": [
        {"type": "channel", "ref": "s", "channel_key": "nope", "template": {}},
        {"type": "delay", "ref": "d", "settings": {}}
    ]}});
    let (status, body) = s
        .mgmt("PUT", "/v1/workflows/x/validate", Some(bad.clone()))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(2));
    let (status, _) = s
        .mgmt("PUT", "/v1/workflows/x?commit=true", Some(bad))
        .await;
    assert_eq!(status, 422);
    let (status, _) = s.mgmt("GET", "/v1/workflows/x", None).await;
    assert_eq!(status, 404, "an invalid workflow is not stored");

    let good = json!({"workflow": {"name": "Good", "steps": [feed_step("s", "hi")], "$schema": "ignored"}});
    let (status, body) = s
        .mgmt("PUT", "/v1/workflows/good/validate", Some(good.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .mgmt(
            "PUT",
            "/v1/workflows/good?environment=development&commit=true",
            Some(good),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let w = &body["workflow"];
    assert_eq!(w["key"], "good");
    assert_eq!(w["environment"], "development");
    assert_eq!(w["steps"][0]["channel_type"], "in_app_feed");
    assert!(w.get("$schema").is_none());
    assert!(w["sha"].is_string());
    let (_, list) = s
        .mgmt("GET", "/v1/workflows?environment=development", None)
        .await;
    assert_eq!(list["entries"].as_array().map(Vec::len), Some(1));
    let (_, list) = s
        .mgmt("GET", "/v1/workflows?environment=production", None)
        .await;
    assert_eq!(
        list["entries"].as_array().map(Vec::len),
        Some(0),
        "environments are separate"
    );

    s.trigger("good", json!({"recipients": ["u"]})).await;
    s.run_engine().await;
    // The feed accepts the channel id as well as its key.
    let (status, feed) = s
        .call("GET", &format!("/v1/users/u/feeds/{channel_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(feed["entries"].as_array().map(Vec::len), Some(1));
}

async fn run_log_shows_every_step(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "w",
        json!([feed_step("one", "1"), feed_step("two", "{% if %}broken")]),
    )
    .await;
    let (_, body) = s.trigger("w", json!({"recipients": ["u"]})).await;
    s.run_engine().await;
    let (status, runs) = s
        .call("GET", "/v1/workflow_recipient_runs?workflow=w", None)
        .await;
    assert_eq!(status, 200);
    let run = &runs["items"][0];
    assert_eq!(run["workflow_run_id"], body["workflow_run_id"]);
    assert_eq!(run["status"], "completed");
    assert_eq!(run["error_count"], 1);
    let (status, detail) = s
        .call(
            "GET",
            &format!(
                "/v1/workflow_recipient_runs/{}",
                run["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let events: Vec<(String, String)> = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or_default().to_string(),
                e["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        events,
        vec![
            ("message_enqueued".to_string(), "ok".to_string()),
            ("message_render_failed".to_string(), "error".to_string()),
            ("workflow_run_completed".to_string(), "ok".to_string()),
        ]
    );
    assert_eq!(
        s.messages_of("u").await.len(),
        1,
        "the broken step made no message"
    );
}

async fn environments_never_see_each_other(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("w", json!([feed_step("f", "dev only")]))
        .await;
    s.trigger("w", json!({"recipients": [{"id": "u", "name": "U"}]}))
        .await;
    s.run_engine().await;
    let prod = s.env_id("production").await;
    let prod_key = "sk_prod_isolation_test";
    s.store
        .create_api_key(
            &prod,
            hark_store::KeyKind::Secret,
            &hark_store::hash_secret(prod_key),
            0,
        )
        .await
        .expect("key");
    let message_id = s.messages_of("u").await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    for path in [
        "/v1/users/u".to_string(),
        format!("/v1/messages/{message_id}"),
    ] {
        let (status, _) = s.call_with("GET", &path, None, prod_key, &[]).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, feed) = s
        .call_with("GET", "/v1/users/u/feeds/in-app-feed", None, prod_key, &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(feed["meta"]["total_count"], 0);
    let (status, body) = s
        .call_with(
            "POST",
            "/v1/workflows/w/trigger",
            Some(json!({"recipients": ["u"]})),
            prod_key,
            &[],
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("workflow_missing")),
        "workflows are per environment"
    );
    let (status, _) = s
        .call_with(
            "PUT",
            &format!("/v1/messages/{message_id}/read"),
            None,
            prod_key,
            &[],
        )
        .await;
    assert_eq!(status, 404);
    let (_, m) = s
        .call("GET", &format!("/v1/messages/{message_id}"), None)
        .await;
    assert!(m["read_at"].is_null());
}
