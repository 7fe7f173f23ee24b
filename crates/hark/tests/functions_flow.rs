//! Branches, cohorts, conditions, fetch, update-data, trigger-workflow, wait-for-event and
//! trigger-level rules, in virtual time on SQLite and PostgreSQL.

mod support;

use hark_channels::testing::HttpSink;
use serde_json::{json, Value};
use support::{feed_step, webhook_channel, Backend, TestServer};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

on_both_stores!(
    branches_run_the_first_matching_arm,
    conditions_gate_runs_and_steps,
    message_status_conditions_read_earlier_steps,
    random_cohorts_are_deterministic,
    fetch_merges_json_and_retries_server_errors,
    fetch_failures_halt_the_run,
    update_data_merges_rendered_values,
    wait_for_message_event_halts_or_times_out,
    trigger_workflow_and_wait_for_its_completion,
    trigger_data_schema_is_enforced,
    trigger_frequency_once_per_recipient,
    sandbox_mode_creates_unsent_messages,
);

fn cond(variable: &str, operator: &str, argument: Value) -> Value {
    json!({"variable": variable, "operator": operator, "argument": argument})
}

async fn events_of(s: &TestServer, user: &str, workflow: &str) -> Vec<Value> {
    let runs = s.runs_of(user, workflow).await;
    let id = runs[0]["id"].as_str().expect("run id").to_string();
    s.run_log(&id).await["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn branches_run_the_first_matching_arm(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "plans",
        json!([
            {"type": "branch", "ref": "by_plan", "branches": [
                {"name": "Pro", "conditions": {"all": [cond("recipient.plan", "equal_to", json!("pro"))]},
                 "steps": [feed_step("pro", "Pro")], "terminates": true},
                {"name": "Trial", "conditions": {"any": [cond("data.trial", "equal_to", json!(true)),
                                                         {"all": [cond("recipient.plan", "equal_to", json!("free")), cond("data.days", "greater_than", json!(10))]}]},
                 "steps": [feed_step("trial", "Trial"),
                           {"type": "branch", "ref": "nested", "branches": [
                               {"name": "Big", "conditions": {"all": [cond("data.days", "greater_than_or_equal_to", json!(30))]}, "steps": [feed_step("big", "Big")]},
                               {"name": "default", "steps": []}]}]},
                {"name": "Default", "steps": [feed_step("default", "Default")]}
            ]},
            feed_step("after", "After")
        ]),
    )
    .await;
    s.trigger("plans", json!({"recipients": [{"id": "p", "plan": "pro"}, {"id": "t", "plan": "free"}], "data": {"trial": true}}))
        .await;
    s.trigger(
        "plans",
        json!({"recipients": [{"id": "f", "plan": "free"}], "data": {"days": 40}}),
    )
    .await;
    s.trigger(
        "plans",
        json!({"recipients": [{"id": "d", "plan": "team"}], "data": {}}),
    )
    .await;
    s.run_engine().await;
    assert_eq!(s.feed_texts("p").await, vec!["Pro"], "terminating branch");
    assert_eq!(s.feed_texts("t").await, vec!["After", "Trial"]);
    assert_eq!(s.feed_texts("f").await, vec!["After", "Big", "Trial"]);
    assert_eq!(s.feed_texts("d").await, vec!["After", "Default"]);
    let events = events_of(&s, "p", "plans").await;
    let branch = events
        .iter()
        .find(|e| e["event"] == "branch_evaluated")
        .expect("branch event");
    assert_eq!(branch["data"]["chosen_branch"], "Pro");
    assert_eq!(
        branch["data"]["evaluations"][0]["conditions"]["results"][0]["resolved_variable"],
        "pro"
    );
}

async fn conditions_gate_runs_and_steps(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow_request(
        "gated",
        json!({"name": "gated",
               "conditions": {"all": [cond("data.send", "equal_to", json!(true))]},
               "steps": [
                   feed_step("always", "Always"),
                   {"type": "channel", "ref": "vip", "channel_key": "in-app-feed",
                    "conditions": {"any": [cond("recipient.vip", "equal_to", json!(true)), cond("recipient.created_at", "is_timestamp_before", json!("7 days ago"))]},
                    "template": {"markdown_body": "VIP"}}
               ]}),
    )
    .await;
    let old = hark_core::time::rfc3339(support::START_MS - 30 * DAY);
    let new = hark_core::time::rfc3339(support::START_MS - DAY);
    s.trigger(
        "gated",
        json!({"recipients": ["nope"], "data": {"send": false}}),
    )
    .await;
    s.trigger("gated", json!({"recipients": [{"id": "vip", "vip": true}, {"id": "old", "created_at": old}, {"id": "new", "created_at": new}], "data": {"send": true}}))
        .await;
    s.run_engine().await;
    assert!(s.feed_texts("nope").await.is_empty());
    let events = events_of(&s, "nope", "gated").await;
    assert_eq!(events[0]["event"], "workflow_conditions_not_met");
    assert_eq!(events[0]["data"]["conditions"]["passed"], false);
    assert_eq!(s.feed_texts("vip").await, vec!["VIP", "Always"]);
    assert_eq!(s.feed_texts("old").await, vec!["VIP", "Always"]);
    assert_eq!(s.feed_texts("new").await, vec!["Always"]);
    let skipped = events_of(&s, "new", "gated").await;
    let skip = skipped
        .iter()
        .find(|e| e["event"] == "step_skipped")
        .expect("skip event");
    assert_eq!(skip["step_ref"], "vip");
    assert_eq!(skip["data"]["reason"], "conditions_not_met");
    assert_eq!(
        skip["data"]["conditions"]["results"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

async fn message_status_conditions_read_earlier_steps(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "nudge",
        json!([
            feed_step("hello", "Hello"),
            {"type": "delay", "ref": "wait", "settings": {"delay_for": {"unit": "hours", "value": 1}}},
            {"type": "channel", "ref": "reminder", "channel_key": "in-app-feed",
             "conditions": {"all": [cond("refs.hello.engagement_status", "not_contains", json!("$message.read"))]},
             "template": {"markdown_body": "Did you see it?"}}
        ]),
    )
    .await;
    s.trigger("nudge", json!({"recipients": ["reader", "ignorer"]}))
        .await;
    s.run_engine().await;
    let id = s.messages_of("reader").await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (status, _) = s
        .call("PUT", &format!("/v1/messages/{id}/read"), None)
        .await;
    assert_eq!(status, 200);
    s.advance(HOUR).await;
    assert_eq!(s.feed_texts("reader").await, vec!["Hello"]);
    assert_eq!(
        s.feed_texts("ignorer").await,
        vec!["Did you see it?", "Hello"]
    );
}

async fn random_cohorts_are_deterministic(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "experiment",
        json!([{"type": "random_cohort", "ref": "split", "cohort_branches": [
            {"name": "A", "percentage": 50, "steps": [feed_step("a", "A")]},
            {"name": "B", "percentage": 50, "steps": [feed_step("b", "B")]}
        ]}]),
    )
    .await;
    let users: Vec<String> = (0..40).map(|i| format!("user{i}")).collect();
    s.trigger("experiment", json!({"recipients": users})).await;
    s.run_engine().await;
    s.trigger("experiment", json!({"recipients": users})).await;
    s.run_engine().await;
    let mut seen = std::collections::HashSet::new();
    for user in &users {
        let texts = s.feed_texts(user).await;
        assert_eq!(texts.len(), 2, "{user}");
        assert_eq!(texts[0], texts[1], "{user} stays in its cohort");
        seen.insert(texts[0].clone());
    }
    assert_eq!(seen.len(), 2, "both cohorts are used");
    let events = events_of(&s, "user0", "experiment").await;
    let assigned = events
        .iter()
        .find(|e| e["event"] == "cohort_assigned")
        .expect("cohort event");
    assert_eq!(assigned["data"]["cohort_key"], "user0");
}

fn fetch_workflow(url: &str, response_path: Option<&str>) -> Value {
    let mut settings = json!({"method": "get", "url": url,
        "query_params": [{"key": "user", "value": "{{ recipient.id }}"}],
        "headers": [{"key": "Authorization", "value": "Bearer {{ data.token }}"}]});
    if let Some(path) = response_path {
        settings["response_path"] = json!(path);
    }
    json!([
        {"type": "http_fetch", "ref": "lookup", "settings": settings},
        feed_step("f", "{{ data.plan }} {{ data.profile.plan }} {{ data.keep }}")
    ])
}

async fn fetch_merges_json_and_retries_server_errors(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("lookup", fetch_workflow(&sink.url("/profile"), None))
        .await;
    s.put_workflow(
        "nested",
        fetch_workflow(&sink.url("/profile"), Some("profile")),
    )
    .await;
    let json_reply = |body: Value| {
        sink.push_response(
            200,
            vec![("content-type".into(), "application/json".into())],
            body.to_string(),
        )
    };
    json_reply(json!({"plan": "gold", "keep": "overwritten"}));
    s.trigger(
        "lookup",
        json!({"recipients": ["ada"], "data": {"token": "t0k", "keep": "mine"}}),
    )
    .await;
    s.run_engine().await;
    assert_eq!(s.feed_texts("ada").await, vec!["gold  overwritten"]);
    let request = &sink.requests()[0];
    assert_eq!(request.path, "/profile");
    assert!(request.query.contains("user=ada"), "{request:?}");
    assert_eq!(request.header("authorization"), Some("Bearer t0k"));

    // Two server errors, then success: retried after 30 s and 60 s.
    sink.push_response(503, vec![], "down".into());
    sink.push_response(500, vec![], "still down".into());
    json_reply(json!({"plan": "silver"}));
    s.trigger(
        "nested",
        json!({"recipients": ["bob"], "data": {"keep": "mine"}}),
    )
    .await;
    s.run_engine().await;
    assert!(s.feed_texts("bob").await.is_empty());
    s.advance(30_000).await;
    assert!(s.feed_texts("bob").await.is_empty());
    s.advance(60_000).await;
    assert_eq!(s.feed_texts("bob").await, vec![" silver mine"]);
    let events = events_of(&s, "bob", "nested").await;
    let attempts: Vec<i64> = events
        .iter()
        .filter(|e| e["event"] == "fetch_request")
        .map(|e| e["attempt"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    let logged = events
        .iter()
        .find(|e| e["event"] == "fetch_request")
        .expect("fetch event");
    assert_eq!(logged["data"]["response"]["status"], 503);
}

async fn fetch_failures_halt_the_run(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("lookup", fetch_workflow(&sink.url("/profile"), None))
        .await;
    sink.push_response(404, vec![], "nope".into());
    s.trigger("lookup", json!({"recipients": ["ada"]})).await;
    s.run_engine().await;
    for _ in 0..3 {
        sink.push_response(500, vec![], "down".into());
    }
    s.trigger("lookup", json!({"recipients": ["bob"]})).await;
    s.run_engine().await;
    s.advance(30_000).await;
    s.advance(60_000).await;
    assert_eq!(sink.requests().len(), 4, "one 404, three 500s, no more");
    for user in ["ada", "bob"] {
        assert!(s.feed_texts(user).await.is_empty(), "{user}");
        let runs = s.runs_of(user, "lookup").await;
        assert_eq!(runs[0]["status"], "completed");
        assert_eq!(runs[0]["error_count"], 1);
        let events = events_of(&s, user, "lookup").await;
        assert!(
            events.iter().any(|e| e["event"] == "step_failed"),
            "{user}: {events:?}"
        );
    }
    // A fetch to a private address is refused without retries.
    let s2 = TestServer::start_with_policy(backend, vec![], false).await;
    s2.put_workflow(
        "lookup",
        fetch_workflow("http://169.254.169.254/latest", None),
    )
    .await;
    s2.trigger("lookup", json!({"recipients": ["eve"]})).await;
    s2.run_engine().await;
    let events = events_of(&s2, "eve", "lookup").await;
    assert!(
        events.iter().any(|e| e["event"] == "step_failed"),
        "{events:?}"
    );
}

async fn update_data_merges_rendered_values(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "names",
        json!([
            {"type": "update_data", "ref": "pairs", "settings": {"data": {"full_name": "{{ data.first }} {{ data.last }}", "count": "{{ data.items | size }}", "fixed": 7}}},
            {"type": "update_data", "ref": "json", "settings": {"data": "{\"meta\": {\"computed\": true}, \"who\": \"{{ recipient.id }}\"}"}},
            feed_step("f", "{{ data.full_name }}|{{ data.count | plus: 1 }}|{{ data.fixed }}|{{ data.meta.computed }}|{{ data.meta.source }}|{{ data.who }}")
        ]),
    )
    .await;
    s.trigger("names", json!({"recipients": ["ada"], "data": {"first": "Ada", "last": "L", "items": [1, 2], "meta": {"source": "web"}}}))
        .await;
    s.run_engine().await;
    assert_eq!(s.feed_texts("ada").await, vec!["Ada L|3|7|true||ada"]);
    // A template that doesn't render a JSON object fails the step and halts the run.
    s.put_workflow(
        "broken",
        json!([{"type": "update_data", "ref": "bad", "settings": {"data": "not json {{ data.x }}"}}, feed_step("f", "never")]),
    )
    .await;
    s.trigger("broken", json!({"recipients": ["bob"]})).await;
    s.run_engine().await;
    assert!(s.feed_texts("bob").await.is_empty());
}

async fn wait_for_message_event_halts_or_times_out(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "nudge",
        json!([
            feed_step("hello", "Hello"),
            {"type": "wait_for_event", "ref": "wait_read", "settings": {
                "event": {"event_type": "message", "event_key": "read", "source_type": "workflow", "source_key": "nudge"},
                "match_conditions": [{"operator": "and", "conditions": [cond("event.step_ref", "equal_to", json!("hello"))]}],
                "expires_after": {"unit": "days", "value": 1},
                "on_match": "halt", "on_timeout": "continue"}},
            feed_step("reminder", "Reminder {{ refs.wait_read.matched }}")
        ]),
    )
    .await;
    s.trigger("nudge", json!({"recipients": ["reader", "ignorer"]}))
        .await;
    s.run_engine().await;
    assert_eq!(s.runs_of("reader", "nudge").await[0]["status"], "paused");
    let id = s.messages_of("reader").await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Seen is not the awaited event; read is.
    s.call("PUT", &format!("/v1/messages/{id}/seen"), None)
        .await;
    s.run_engine().await;
    assert_eq!(s.runs_of("reader", "nudge").await[0]["status"], "paused");
    s.call("PUT", &format!("/v1/messages/{id}/read"), None)
        .await;
    s.run_engine().await;
    assert_eq!(s.runs_of("reader", "nudge").await[0]["status"], "cancelled");
    s.advance(2 * DAY).await;
    assert_eq!(s.feed_texts("reader").await, vec!["Hello"]);
    assert_eq!(
        s.feed_texts("ignorer").await,
        vec!["Reminder false", "Hello"]
    );
    let events = events_of(&s, "reader", "nudge").await;
    assert!(
        events.iter().any(|e| e["event"] == "wait_matched"),
        "{events:?}"
    );
    assert_eq!(s.store.pending_job_count().await.expect("jobs"), 0);
}

async fn trigger_workflow_and_wait_for_its_completion(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "child",
        json!([{"type": "delay", "ref": "d", "settings": {"delay_for": {"unit": "hours", "value": 1}}},
               feed_step("c", "Child for {{ recipient.id }} about {{ data.topic }} by {{ actor.id }}")]),
    )
    .await;
    s.put_workflow(
        "parent",
        json!([
            {"type": "trigger_workflow", "ref": "start_child", "settings": {"workflow_key": "child"}},
            {"type": "trigger_workflow", "ref": "fan_out", "settings": {"workflow_key": "child", "recipients": "{{ data.team | json }}", "data": "{\"topic\": \"team\"}"}},
            {"type": "wait_for_event", "ref": "child_done", "settings": {
                "event": {"event_type": "workflow", "event_key": "completed", "source_key": "child"},
                "match_conditions": [{"operator": "and", "conditions": [cond("event.workflow_key", "equal_to", json!("child"))]}],
                "expires_after": {"unit": "days", "value": 1}, "on_timeout": "halt"}},
            feed_step("p", "Parent saw {{ refs.child_done.signal_variables.status }}")
        ]),
    )
    .await;
    s.trigger("parent", json!({"recipients": ["ada"], "actor": "boss", "data": {"topic": "launch", "team": ["bo", "cy"]}}))
        .await;
    s.run_engine().await;
    assert!(s.feed_texts("ada").await.is_empty());
    s.advance(HOUR).await;
    assert_eq!(
        s.feed_texts("ada").await,
        vec!["Parent saw completed", "Child for ada about launch by boss"]
    );
    assert_eq!(
        s.feed_texts("bo").await,
        vec!["Child for bo about team by boss"]
    );
    assert_eq!(s.feed_texts("cy").await.len(), 1);
    // The child of an inactive workflow is skipped, not run.
    s.mgmt(
        "PUT",
        "/v1/workflows/child/activate?environment=development&status=false",
        None,
    )
    .await;
    s.trigger(
        "parent",
        json!({"recipients": ["dee"], "data": {"team": []}}),
    )
    .await;
    s.run_engine().await;
    let events = events_of(&s, "dee", "parent").await;
    let skipped = events
        .iter()
        .find(|e| e["event"] == "step_skipped")
        .expect("skipped");
    assert_eq!(skipped["data"]["reason"], "workflow_inactive");
}

async fn trigger_data_schema_is_enforced(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow_request(
        "typed",
        json!({"name": "typed", "steps": [feed_step("f", "{{ data.name }}")],
               "trigger_data_json_schema": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name"]}}),
    )
    .await;
    let (status, body) = s
        .trigger(
            "typed",
            json!({"recipients": ["ada"], "data": {"age": "old"}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "invalid_params");
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 2, "{body}");
    assert!(errors.iter().any(|e| e["field"] == "data.age"), "{body}");
    let (status, _) = s
        .trigger(
            "typed",
            json!({"recipients": ["ada"], "data": {"name": "Ada", "age": 3}}),
        )
        .await;
    assert_eq!(status, 200);
    s.run_engine().await;
    assert_eq!(s.feed_texts("ada").await, vec!["Ada"]);
    assert_eq!(
        s.runs_of("ada", "typed").await.len(),
        1,
        "the refused trigger ran nothing"
    );
}

async fn trigger_frequency_once_per_recipient(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow_request(
        "welcome",
        json!({"name": "welcome", "trigger_frequency": "once_per_recipient", "steps": [feed_step("f", "Welcome")]}),
    )
    .await;
    s.put_workflow_request(
        "tenant-welcome",
        json!({"name": "tw", "trigger_frequency": "once_per_recipient_per_tenant", "steps": [feed_step("f", "Welcome to {{ tenant.id }}")]}),
    )
    .await;
    for _ in 0..3 {
        s.trigger("welcome", json!({"recipients": ["ada", "bob"]}))
            .await;
        for tenant in ["acme", "globex", "acme"] {
            s.trigger(
                "tenant-welcome",
                json!({"recipients": ["cy"], "tenant": tenant}),
            )
            .await;
        }
    }
    s.run_engine().await;
    assert_eq!(s.feed_texts("ada").await, vec!["Welcome"]);
    assert_eq!(s.feed_texts("bob").await, vec!["Welcome"]);
    assert_eq!(s.runs_of("ada", "welcome").await.len(), 1);
    let mut texts = s.feed_texts("cy").await;
    texts.sort();
    assert_eq!(texts, vec!["Welcome to acme", "Welcome to globex"]);
}

async fn sandbox_mode_creates_unsent_messages(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let s = TestServer::start(backend, vec![webhook_channel()]).await;
    s.put_workflow(
        "hook",
        json!([{"type": "channel", "ref": "h", "channel_key": "webhook",
                "template": {"url": sink.url("/hook"), "method": "post", "body": "{}"}}]),
    )
    .await;
    s.trigger(
        "hook",
        json!({"recipients": ["ada"], "settings": {"sandbox_mode": true}}),
    )
    .await;
    s.run_engine().await;
    let messages = s.messages_of("ada").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["status"], "not_sent");
    assert!(sink.requests().is_empty(), "nothing left the building");
    s.trigger("hook", json!({"recipients": ["ada"]})).await;
    s.run_engine().await;
    assert_eq!(
        sink.wait_for(1, std::time::Duration::from_secs(5))
            .await
            .len(),
        1
    );
}
