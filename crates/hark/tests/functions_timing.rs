//! Delays, batches, throttles and cancellation in virtual time (days of workflow time in
//! milliseconds), on SQLite and PostgreSQL.

mod support;

use serde_json::{json, Value};
use support::{feed_step, Backend, TestServer, START_MS};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

on_both_stores!(
    fixed_delay_resumes_exactly_once,
    dynamic_and_relative_delays,
    invalid_dynamic_delays_are_skipped_and_logged,
    skip_delay_setting_runs_straight_through,
    cancel_stops_a_delayed_run,
    cancel_before_trigger_still_cancels,
    batch_collects_activities_into_one_message,
    batch_keys_and_item_limit_split_batches,
    batch_order_desc_and_flush_leading,
    sliding_window_extends_up_to_its_limit,
    cancelled_activity_leaves_the_batch,
    batch_version_modes_and_inactive_workflows,
    concurrent_triggers_land_in_one_batch,
    throttle_lets_exactly_the_limit_through,
    throttle_window_reopens_and_keys_separate,
);

fn delay(reference: &str, settings: Value) -> Value {
    json!({"type": "delay", "ref": reference, "settings": settings})
}

async fn runs_status(s: &TestServer, user: &str, workflow: &str) -> Vec<String> {
    s.runs_of(user, workflow)
        .await
        .iter()
        .map(|r| r["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn fixed_delay_resumes_exactly_once(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "remind",
        json!([
            delay("wait", json!({"delay_for": {"unit": "days", "value": 2}})),
            feed_step("later", "Reminder")
        ]),
    )
    .await;
    let (status, _) = s.trigger("remind", json!({"recipients": ["ada"]})).await;
    assert_eq!(status, 200);
    s.run_engine().await;
    assert!(s.feed_texts("ada").await.is_empty());
    assert_eq!(runs_status(&s, "ada", "remind").await, vec!["paused"]);
    s.advance(2 * DAY - 1).await;
    assert!(
        s.feed_texts("ada").await.is_empty(),
        "not a millisecond early"
    );
    s.advance(1).await;
    assert_eq!(s.feed_texts("ada").await, vec!["Reminder"]);
    // The timer fired once: more time changes nothing.
    s.advance(10 * DAY).await;
    assert_eq!(s.feed_texts("ada").await.len(), 1);
    let run = &s.runs_of("ada", "remind").await[0];
    assert_eq!(run["status"], "completed");
    let events = s.run_events(run["id"].as_str().expect("id")).await;
    assert_eq!(
        events.iter().filter(|e| *e == "delay_started").count(),
        1,
        "{events:?}"
    );
    assert_eq!(s.store.pending_job_count().await.expect("jobs"), 0);
}

async fn dynamic_and_relative_delays(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "until",
        json!([
            delay("wait", json!({"delay_until_field_path": "data.send_at"})),
            feed_step("f", "At time")
        ]),
    )
    .await;
    s.put_workflow(
        "before",
        json!([delay("wait", json!({"delay_until_field_path": "data.appointment", "delay_for": {"unit": "hours", "value": -1}})),
               feed_step("f", "One hour before")]),
    )
    .await;
    s.put_workflow(
        "duration",
        json!([
            delay("wait", json!({"delay_until_field_path": "recipient.wait"})),
            feed_step("f", "After duration")
        ]),
    )
    .await;
    let at = |ms: i64| hark_core::time::rfc3339(ms);
    s.trigger(
        "until",
        json!({"recipients": ["a"], "data": {"send_at": at(START_MS + 3 * HOUR)}}),
    )
    .await;
    s.trigger(
        "before",
        json!({"recipients": ["b"], "data": {"appointment": at(START_MS + DAY)}}),
    )
    .await;
    s.trigger(
        "duration",
        json!({"recipients": [{"id": "c", "wait": {"unit": "minutes", "value": 30}}]}),
    )
    .await;
    s.run_engine().await;
    s.advance(30 * MINUTE).await;
    assert_eq!(s.feed_texts("c").await, vec!["After duration"]);
    assert!(s.feed_texts("a").await.is_empty());
    s.advance(150 * MINUTE).await;
    assert_eq!(s.feed_texts("a").await, vec!["At time"]);
    assert!(s.feed_texts("b").await.is_empty());
    s.advance(DAY - 3 * HOUR - HOUR - 1).await;
    assert!(s.feed_texts("b").await.is_empty());
    s.advance(1).await;
    assert_eq!(s.feed_texts("b").await, vec!["One hour before"]);
}

async fn invalid_dynamic_delays_are_skipped_and_logged(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "until",
        json!([
            delay("wait", json!({"delay_until_field_path": "data.send_at"})),
            feed_step("f", "Sent")
        ]),
    )
    .await;
    for (user, data) in [
        ("missing", json!({})),
        ("garbage", json!({"send_at": "next tuesday"})),
        (
            "past",
            json!({"send_at": hark_core::time::rfc3339(START_MS - HOUR)}),
        ),
    ] {
        s.trigger("until", json!({"recipients": [user], "data": data}))
            .await;
    }
    s.run_engine().await;
    for (user, reason) in [
        ("missing", "invalid_delay"),
        ("garbage", "invalid_delay"),
        ("past", "delay_in_the_past"),
    ] {
        assert_eq!(
            s.feed_texts(user).await,
            vec!["Sent"],
            "{user}: delay skipped"
        );
        let run = &s.runs_of(user, "until").await[0];
        let log = s.run_log(run["id"].as_str().expect("id")).await;
        let skipped = log["events"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["event"] == "step_skipped"))
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(skipped["data"]["reason"], reason, "{user}: {log}");
        assert_eq!(skipped["step_ref"], "wait");
    }
}

async fn skip_delay_setting_runs_straight_through(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "remind",
        json!([
            delay("wait", json!({"delay_for": {"unit": "days", "value": 2}})),
            feed_step("f", "Now")
        ]),
    )
    .await;
    let (status, _) = s
        .trigger(
            "remind",
            json!({"recipients": ["ada"], "settings": {"skip_delay": true}}),
        )
        .await;
    assert_eq!(status, 200);
    s.run_engine().await;
    assert_eq!(s.feed_texts("ada").await, vec!["Now"]);
    let (status, body) = s
        .trigger(
            "remind",
            json!({"recipients": ["ada"], "settings": {"skip_delay": "yes"}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

async fn cancel_stops_a_delayed_run(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "remind",
        json!([
            delay("wait", json!({"delay_for": {"unit": "hours", "value": 1}})),
            feed_step("f", "Reminder")
        ]),
    )
    .await;
    s.trigger(
        "remind",
        json!({"recipients": ["a", "b", "c"], "cancellation_key": "invite-1"}),
    )
    .await;
    s.run_engine().await;
    let (status, _) = s
        .call(
            "POST",
            "/v1/workflows/remind/cancel",
            Some(json!({"cancellation_key": "invite-1", "recipients": ["a"]})),
        )
        .await;
    assert_eq!(status, 204);
    s.advance(30 * MINUTE).await;
    s.call(
        "POST",
        "/v1/workflows/remind/cancel",
        Some(json!({"cancellation_key": "invite-1"})),
    )
    .await;
    s.advance(2 * HOUR).await;
    for user in ["a", "b", "c"] {
        assert!(
            s.feed_texts(user).await.is_empty(),
            "{user} got no reminder"
        );
        assert_eq!(runs_status(&s, user, "remind").await, vec!["cancelled"]);
    }
    assert_eq!(s.store.pending_job_count().await.expect("jobs"), 0);
}

async fn cancel_before_trigger_still_cancels(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "remind",
        json!([
            delay("wait", json!({"delay_for": {"unit": "hours", "value": 1}})),
            feed_step("f", "Reminder")
        ]),
    )
    .await;
    let (status, _) = s
        .call(
            "POST",
            "/v1/workflows/remind/cancel",
            Some(json!({"cancellation_key": "early", "recipients": ["a"]})),
        )
        .await;
    assert_eq!(status, 204);
    s.trigger(
        "remind",
        json!({"recipients": ["a", "b"], "cancellation_key": "early"}),
    )
    .await;
    s.run_engine().await;
    s.advance(2 * HOUR).await;
    assert!(s.feed_texts("a").await.is_empty());
    assert_eq!(
        s.feed_texts("b").await,
        vec!["Reminder"],
        "only `a` was cancelled"
    );
    // An early cancel expires: a trigger long after it runs normally.
    s.call(
        "POST",
        "/v1/workflows/remind/cancel",
        Some(json!({"cancellation_key": "stale"})),
    )
    .await;
    s.advance(DAY).await;
    s.trigger(
        "remind",
        json!({"recipients": ["a"], "cancellation_key": "stale"}),
    )
    .await;
    s.run_engine().await;
    s.advance(2 * HOUR).await;
    assert_eq!(s.feed_texts("a").await, vec!["Reminder"]);
}

fn batch_workflow(settings: Value) -> Value {
    json!([
        {"type": "batch", "ref": "batch", "settings": settings},
        feed_step("digest", "{{ total_activities }} comments by {{ total_actors }}: {% for a in activities %}{{ a.actor.name }}/{{ a.comment }};{% endfor %} last={{ data.comment }}")
    ])
}

async fn comment(s: &TestServer, workflow: &str, actor: &str, comment: &str, extra: Value) {
    let mut data = json!({"comment": comment});
    if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    let (status, body) = s
        .trigger(
            workflow,
            json!({"recipients": ["ada"], "actor": {"id": actor, "name": actor.to_uppercase()}, "data": data}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.run_engine().await;
}

async fn batch_collects_activities_into_one_message(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "comments",
        batch_workflow(json!({"batch_window": {"unit": "minutes", "value": 10}})),
    )
    .await;
    for (i, actor) in ["x", "y", "x", "z", "y"].iter().enumerate() {
        comment(&s, "comments", actor, &format!("c{i}"), json!({})).await;
        s.advance(MINUTE).await;
    }
    assert!(s.feed_texts("ada").await.is_empty(), "window still open");
    s.advance(5 * MINUTE - 1).await;
    assert!(s.feed_texts("ada").await.is_empty());
    s.advance(1).await;
    assert_eq!(
        s.feed_texts("ada").await,
        vec!["5 comments by 3: X/c0;Y/c1;X/c2;Z/c3;Y/c4; last=c4"]
    );
    let runs = s.runs_of("ada", "comments").await;
    assert_eq!(runs.len(), 5);
    assert!(runs.iter().all(|r| r["status"] == "completed"), "{runs:?}");
    let messages = s.messages_of("ada").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["actors"].as_array().map(Vec::len), Some(3));
    let feed = s.feed("ada", "").await;
    let item = &feed["entries"][0];
    assert_eq!(item["total_activities"], 5);
    assert_eq!(item["total_actors"], 3);
    assert_eq!(item["activities"].as_array().map(Vec::len), Some(5));
    assert_eq!(item["activities"][1]["actor"]["name"], "Y");
    assert_eq!(item["activities"][1]["data"]["comment"], "c1");
    let id = messages[0]["id"].as_str().expect("id");
    let (_, activities) = s
        .call("GET", &format!("/v1/messages/{id}/activities"), None)
        .await;
    assert_eq!(
        activities["items"].as_array().map(Vec::len),
        Some(5),
        "{activities}"
    );
    // A trigger after the close opens a new batch.
    comment(&s, "comments", "x", "late", json!({})).await;
    s.advance(10 * MINUTE).await;
    assert_eq!(
        s.feed_texts("ada").await[0],
        "1 comments by 1: X/late; last=late"
    );
    assert_eq!(s.store.pending_job_count().await.expect("jobs"), 0);
}

async fn batch_keys_and_item_limit_split_batches(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "pages",
        batch_workflow(json!({"batch_window": {"unit": "hours", "value": 1}, "batch_key": "page"})),
    )
    .await;
    s.put_workflow(
        "capped",
        batch_workflow(
            json!({"batch_window": {"unit": "hours", "value": 1}, "batch_items_max_limit": 3}),
        ),
    )
    .await;
    for (i, page) in ["A", "B", "A", "A", "B"].iter().enumerate() {
        comment(
            &s,
            "pages",
            "x",
            &format!("{page}{i}"),
            json!({"page": page}),
        )
        .await;
    }
    for i in 0..4 {
        comment(&s, "capped", "y", &format!("k{i}"), json!({})).await;
    }
    s.run_engine().await;
    // The cap closed the first capped batch at once; the fourth trigger opened another.
    assert_eq!(
        s.feed_texts("ada").await,
        vec!["3 comments by 1: Y/k0;Y/k1;Y/k2; last=k2"]
    );
    s.advance(HOUR).await;
    let mut texts = s.feed_texts("ada").await;
    texts.sort();
    assert_eq!(
        texts,
        vec![
            "1 comments by 1: Y/k3; last=k3",
            "2 comments by 1: X/B1;X/B4; last=B4",
            "3 comments by 1: X/A0;X/A2;X/A3; last=A3",
            "3 comments by 1: Y/k0;Y/k1;Y/k2; last=k2",
        ]
    );
}

async fn batch_order_desc_and_flush_leading(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "recent",
        batch_workflow(json!({"batch_window": {"unit": "minutes", "value": 5}, "batch_order": "desc", "batch_items_render_limit": 2})),
    )
    .await;
    s.put_workflow(
        "leading",
        batch_workflow(json!({"batch_window": {"unit": "minutes", "value": 5}, "batch_execution_mode": "flush_leading"})),
    )
    .await;
    for i in 0..4 {
        comment(&s, "recent", "x", &format!("r{i}"), json!({})).await;
    }
    comment(&s, "leading", "y", "first", json!({})).await;
    s.run_engine().await;
    assert_eq!(
        s.feed_texts("ada").await,
        vec!["1 comments by 1: Y/first; last=first"],
        "the leading item goes out at once, outside any batch"
    );
    comment(&s, "leading", "y", "second", json!({})).await;
    comment(&s, "leading", "y", "third", json!({})).await;
    s.advance(5 * MINUTE).await;
    let texts = s.feed_texts("ada").await;
    assert!(
        texts.contains(&"4 comments by 1: X/r2;X/r3; last=r3".to_string()),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"2 comments by 1: Y/second;Y/third; last=third".to_string()),
        "{texts:?}"
    );
    assert_eq!(texts.len(), 3);
}

async fn sliding_window_extends_up_to_its_limit(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "sliding",
        batch_workflow(
            json!({"batch_window": {"unit": "minutes", "value": 1}, "batch_window_type": "sliding",
                              "batch_window_extension_limit": {"unit": "minutes", "value": 3}}),
        ),
    )
    .await;
    comment(&s, "sliding", "x", "a", json!({})).await;
    s.advance(50_000).await;
    comment(&s, "sliding", "x", "b", json!({})).await; // closes at 110 s
    s.advance(50_000).await;
    comment(&s, "sliding", "x", "c", json!({})).await; // closes at 160 s
    s.advance(55_000).await; // 155 s
    assert!(
        s.feed_texts("ada").await.is_empty(),
        "extended by the last trigger"
    );
    s.advance(5_000).await; // 160 s
    assert_eq!(s.feed_texts("ada").await.len(), 1);
    // The limit caps extensions at three minutes after opening.
    comment(&s, "sliding", "x", "d", json!({})).await;
    for _ in 0..5 {
        s.advance(50_000).await;
        comment(&s, "sliding", "x", "more", json!({})).await;
    }
    // Opened at 160 s; five extensions would reach 460 s, the limit closes it at 340 s.
    let texts = s.feed_texts("ada").await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].starts_with("4 comments"), "{texts:?}");
}

async fn cancelled_activity_leaves_the_batch(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "comments",
        batch_workflow(json!({"batch_window": {"unit": "minutes", "value": 10}})),
    )
    .await;
    for (key, text) in [("k1", "one"), ("k2", "two"), ("k3", "three")] {
        s.trigger(
            "comments",
            json!({"recipients": ["ada"], "actor": "x", "data": {"comment": text}, "cancellation_key": key}),
        )
        .await;
        s.run_engine().await;
    }
    s.run_engine().await;
    // Cancelling the activity that opened the batch does not close it.
    let (status, _) = s
        .call(
            "POST",
            "/v1/workflows/comments/cancel",
            Some(json!({"cancellation_key": "k1"})),
        )
        .await;
    assert_eq!(status, 204);
    s.advance(10 * MINUTE).await;
    assert_eq!(
        s.feed_texts("ada").await,
        vec!["2 comments by 1: /two;/three; last=three"]
    );
    let statuses = runs_status(&s, "ada", "comments").await;
    // Newest first, as the API lists runs.
    assert_eq!(statuses, vec!["completed", "completed", "cancelled"]);
}

type Sent = tokio::task::JoinHandle<Result<u16, reqwest::Error>>;

/// Sends every trigger at once, each from its own task.
fn trigger_concurrently(s: &TestServer, workflow: &str, bodies: Vec<Value>) -> Vec<Sent> {
    bodies
        .into_iter()
        .map(|body| {
            let http = s.http.clone();
            let url = format!("{}/v1/workflows/{workflow}/trigger", s.base);
            let key = s.secret_key.clone();
            tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect()
}

async fn concurrent_triggers_land_in_one_batch(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "comments",
        batch_workflow(json!({"batch_window": {"unit": "minutes", "value": 1}, "batch_items_render_limit": 100})),
    )
    .await;
    let tasks = trigger_concurrently(
        &s,
        "comments",
        (0..40)
            .map(|i| json!({"recipients": ["ada"], "actor": format!("u{i}"), "data": {"comment": i}}))
            .collect(),
    );
    // Workers run while the triggers arrive.
    let engine = s.engine.clone();
    let workers = tokio::spawn(async move {
        for _ in 0..20 {
            engine.run_until_idle().await.expect("engine");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    for t in tasks {
        assert_eq!(t.await.expect("join").expect("send"), 200);
    }
    workers.await.expect("workers");
    s.run_engine().await;
    s.advance(MINUTE).await;
    let texts = s.feed_texts("ada").await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].starts_with("40 comments by 40:"), "{texts:?}");
    let runs = s.runs_of("ada", "comments").await;
    assert_eq!(runs.len(), 40);
    assert!(runs.iter().all(|r| r["status"] == "completed"));
}

async fn throttle_lets_exactly_the_limit_through(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "alert",
        json!([{"type": "throttle", "ref": "gate", "settings": {"throttle_window": {"unit": "hours", "value": 1}}},
               feed_step("f", "Alert {{ data.n }}")]),
    )
    .await;
    let tasks = trigger_concurrently(
        &s,
        "alert",
        (0..100)
            .map(|i| json!({"recipients": ["ops"], "data": {"n": i}}))
            .collect(),
    );
    for t in tasks {
        assert_eq!(t.await.expect("join").expect("send"), 200);
    }
    // Many workers at once: the gate must still count exactly.
    let mut workers = Vec::new();
    for _ in 0..4 {
        let engine = s.engine.clone();
        workers.push(tokio::spawn(async move { engine.run_until_idle().await }));
    }
    for w in workers {
        w.await.expect("join").expect("engine");
    }
    s.run_engine().await;
    assert_eq!(s.feed_texts("ops").await.len(), 1);
    let runs = s.runs_of("ops", "alert").await;
    assert_eq!(runs.len(), 100);
    let mut throttled = 0;
    for r in &runs {
        assert_eq!(r["status"], "completed");
        if s.run_events(r["id"].as_str().expect("id"))
            .await
            .contains(&"throttled".to_string())
        {
            throttled += 1;
        }
    }
    assert_eq!(throttled, 99);
}

async fn throttle_window_reopens_and_keys_separate(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "alert",
        json!([{"type": "throttle", "ref": "gate", "settings": {"throttle_window": {"unit": "minutes", "value": 10},
                "throttle_limit": 2, "throttle_key": "{{ data.alert }}"}},
               feed_step("f", "{{ data.alert }} {{ data.n }}")]),
    )
    .await;
    for n in 0..3 {
        for alert in ["disk", "cpu"] {
            s.trigger(
                "alert",
                json!({"recipients": ["ops"], "data": {"alert": alert, "n": n}}),
            )
            .await;
            s.run_engine().await;
        }
    }
    let mut texts = s.feed_texts("ops").await;
    texts.sort();
    assert_eq!(texts, vec!["cpu 0", "cpu 1", "disk 0", "disk 1"]);
    s.advance(10 * MINUTE).await;
    s.trigger(
        "alert",
        json!({"recipients": ["ops"], "data": {"alert": "disk", "n": 9}}),
    )
    .await;
    s.run_engine().await;
    assert_eq!(
        s.feed_texts("ops").await[0],
        "disk 9",
        "a new window opened"
    );
}

async fn batch_version_modes_and_inactive_workflows(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    let version = |mode: &str, text: &str| {
        json!([{"type": "batch", "ref": "batch", "settings": {"batch_window": {"unit": "minutes", "value": 5}, "workflow_version_mode": mode}},
               feed_step("digest", text)])
    };
    s.put_workflow("latest", version("latest", "latest v1"))
        .await;
    s.put_workflow("pinned", version("pinned", "pinned v1"))
        .await;
    s.put_workflow("paused", version("latest", "never")).await;
    for workflow in ["latest", "pinned", "paused"] {
        comment(&s, workflow, "x", "one", json!({})).await;
    }
    // New versions are committed while the batches are open.
    s.put_workflow("latest", version("latest", "latest v2"))
        .await;
    s.put_workflow("pinned", version("pinned", "pinned v2"))
        .await;
    s.mgmt(
        "PUT",
        "/v1/workflows/paused/activate?environment=development&status=false",
        None,
    )
    .await;
    // A trigger on the new pinned version opens a batch of its own.
    comment(&s, "pinned", "x", "two", json!({})).await;
    s.advance(5 * MINUTE).await;
    let mut texts = s.feed_texts("ada").await;
    texts.sort();
    assert_eq!(texts, vec!["latest v2", "pinned v1", "pinned v2"]);
    let run = &s.runs_of("ada", "paused").await[0];
    assert_eq!(run["status"], "completed");
    let events = s.run_events(run["id"].as_str().expect("id")).await;
    assert!(events.contains(&"batch_closed".to_string()), "{events:?}");
}
