//! One contract suite, run against every backend: a fresh SQLite file and a fresh
//! PostgreSQL database per test.

mod common;

use common::*;
use hark_store::*;
use serde_json::{json, Map, Value};

contract!(
    environments_and_credentials,
    users_merge_properties_and_paginate,
    users_merge_and_bulk,
    workflows_commit_versions,
    trigger_creates_runs_and_jobs,
    idempotency_replays_and_refuses_other_bodies,
    concurrent_idempotent_triggers_store_one_run,
    leases_fence_stale_workers,
    one_message_per_run_and_step,
    feed_filters_counts_and_engagement,
    a_feed_read_is_its_page_counts_and_user,
    cancel_drops_pending_jobs,
    delivery_commit_retries_and_logs,
    trigger_data_filter_compares_json_values,
    group_commit_isolates_each_trigger,
    server_secrets_are_created_once,
);

async fn server_secrets_are_created_once(f: Fixture) {
    let first = f
        .store
        .server_secret("tracking", "first", 1)
        .await
        .expect("created");
    assert_eq!(first, "first");
    // A later start (or a node racing the first) offers its own and gets the stored one.
    let again = f
        .store
        .server_secret("tracking", "second", 2)
        .await
        .expect("read");
    assert_eq!(again, "first");
    let other = f
        .store
        .server_secret("other", "third", 3)
        .await
        .expect("another name");
    assert_eq!(other, "third");
}

async fn environments_and_credentials(f: Fixture) {
    f.store
        .ensure_default_environments(2)
        .await
        .expect("idempotent");
    let prod = f
        .store
        .environment_by_slug("production")
        .await
        .expect("q")
        .expect("prod");
    assert!(
        prod.enhanced_security,
        "production enforces user tokens by default"
    );
    let dev = f
        .store
        .environment_by_slug("development")
        .await
        .expect("q")
        .expect("dev");
    assert!(!dev.enhanced_security);
    f.store
        .create_api_key(&f.env, KeyKind::Secret, &hash_secret("sk_a"), 1)
        .await
        .expect("key");
    let (env, kind) = f
        .store
        .find_api_key(&hash_secret("sk_a"))
        .await
        .expect("q")
        .expect("found");
    assert_eq!((env.slug.as_str(), kind), ("development", KeyKind::Secret));
    assert!(f
        .store
        .find_api_key(&hash_secret("sk_b"))
        .await
        .expect("q")
        .is_none());
    f.store
        .create_service_token(&hash_secret("t"), 1)
        .await
        .expect("token");
    assert!(f
        .store
        .service_token_exists(&hash_secret("t"))
        .await
        .expect("q"));
    assert!(!f
        .store
        .service_token_exists(&hash_secret("u"))
        .await
        .expect("q"));
}

async fn users_merge_properties_and_paginate(f: Fixture) {
    let u = f
        .store
        .upsert_user(
            &f.env,
            "u1",
            &props(json!({"name": "A", "plan": "pro"})),
            10,
        )
        .await
        .expect("upsert");
    assert_eq!(u.properties["plan"], json!("pro"));
    let u = f
        .store
        .upsert_user(
            &f.env,
            "u1",
            &props(json!({"email": "a@x.io", "plan": null})),
            20,
        )
        .await
        .expect("upsert");
    assert_eq!(u.properties.get("name"), Some(&json!("A")));
    assert_eq!(u.properties.get("email"), Some(&json!("a@x.io")));
    assert!(
        u.properties.get("plan").is_none(),
        "null removes a property"
    );
    assert_eq!((u.inserted_at, u.updated_at), (10, 20));

    for i in 2..=5 {
        f.store
            .upsert_user(&f.env, &format!("u{i}"), &Map::new(), 10 + i)
            .await
            .expect("upsert");
    }
    let mut page = PageRequest {
        page_size: 2,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let p = f.store.list_users(&f.env, &page).await.expect("list");
        seen.extend(p.entries.iter().map(|u| u.id.clone()));
        match p.after {
            Some(after) => page.after = Some(after),
            None => break,
        }
    }
    assert_eq!(seen, vec!["u1", "u2", "u3", "u4", "u5"]);
    let mut some = f
        .store
        .get_users(&f.env, &["u2".into(), "u4".into(), "nobody".into()])
        .await
        .expect("get users");
    some.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        some.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        vec!["u2", "u4"]
    );
    let prod = f
        .store
        .environment_by_slug("production")
        .await
        .expect("q")
        .expect("prod");
    assert!(f
        .store
        .get_users(&prod.id, &["u2".into()])
        .await
        .expect("q")
        .is_empty());
    assert!(f.store.delete_user(&f.env, "u3").await.expect("delete"));
    assert!(!f
        .store
        .delete_user(&f.env, "u3")
        .await
        .expect("delete twice"));
    assert!(f.store.get_user(&f.env, "u3").await.expect("get").is_none());
}

async fn users_merge_and_bulk(f: Fixture) {
    let op = f
        .store
        .bulk_identify(
            &f.env,
            &[
                ("a".into(), props(json!({"name": "Keep", "x": 1}))),
                ("b".into(), props(json!({"name": "Lose", "y": 2}))),
            ],
            5,
        )
        .await
        .expect("bulk");
    assert_eq!((op.status.as_str(), op.success_count), ("completed", 2));
    assert_eq!(
        f.store.get_bulk_operation(&f.env, &op.id).await.expect("q"),
        Some(op)
    );
    let merged = f
        .store
        .merge_users(&f.env, "a", "b", 6)
        .await
        .expect("merge")
        .expect("both exist");
    assert_eq!(merged.properties["name"], json!("Keep"));
    assert_eq!(merged.properties["y"], json!(2));
    assert!(f.store.get_user(&f.env, "b").await.expect("q").is_none());
    assert!(f
        .store
        .merge_users(&f.env, "a", "nobody", 7)
        .await
        .expect("merge")
        .is_none());
    let op = f
        .store
        .bulk_delete_users(&f.env, &["a".into()], 8)
        .await
        .expect("bulk delete");
    assert_eq!(op.success_count, 1);
    assert!(f.store.get_user(&f.env, "a").await.expect("q").is_none());
}

async fn workflows_commit_versions(f: Fixture) {
    let def1 = json!({"name": "W", "steps": []});
    let w = f
        .store
        .save_workflow(&f.env, "w", &def1, false, 1)
        .await
        .expect("save");
    assert_eq!(w.committed_version, None);
    assert!(f
        .store
        .committed_workflow(&f.env, "w")
        .await
        .expect("q")
        .is_none());
    f.store
        .save_workflow(&f.env, "w", &def1, true, 2)
        .await
        .expect("commit");
    let def2 = json!({"name": "W2", "steps": []});
    let w = f
        .store
        .save_workflow(&f.env, "w", &def2, true, 3)
        .await
        .expect("commit 2");
    assert_eq!(w.committed_version, Some(2));
    let c = f
        .store
        .committed_workflow(&f.env, "w")
        .await
        .expect("q")
        .expect("committed");
    assert_eq!((c.version, c.definition), (2, def2.clone()));
    assert_eq!(
        f.store.workflow_version(&f.env, "w", 1).await.expect("q"),
        Some(def1)
    );
    let w = f
        .store
        .set_workflow_active(&f.env, "w", false, 4)
        .await
        .expect("q")
        .expect("exists");
    assert!(!w.active);
    let page = f
        .store
        .list_workflows(&f.env, &first_page(10))
        .await
        .expect("list");
    assert_eq!(page.entries.len(), 1);
}

fn trigger(env: &str, recipients: &[&str], now: i64) -> TriggerWrite {
    TriggerWrite {
        environment_id: env.to_string(),
        workflow_key: "w".into(),
        workflow_version: 1,
        workflow_run_id: hark_core::new_id(),
        actor: None,
        tenant: None,
        data: json!({"k": 1}),
        cancellation_key: Some("ck".into()),
        recipients: recipients.iter().map(|s| s.to_string()).collect(),
        inline_users: vec![("r1".into(), props(json!({"email": "r1@x.io"})))],
        inline_objects: vec![],
        inline_documents: Vec::new(),
        fan_outs: vec![],
        idempotency: None,
        state: json!({}),
        frequency: TriggerFrequency::EveryTrigger,
        lease: None,
        now,
    }
}

async fn trigger_creates_runs_and_jobs(f: Fixture) {
    let recipients: Vec<String> = (0..450).map(|i| format!("r{i}")).collect();
    let refs: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let t = trigger(&f.env, &refs, 100);
    assert_eq!(
        f.store.create_trigger(&t).await.expect("trigger"),
        TriggerOutcome::Accepted
    );
    assert_eq!(f.store.pending_job_count().await.expect("count"), 450);
    let user = f
        .store
        .get_user(&f.env, "r1")
        .await
        .expect("q")
        .expect("inline user identified");
    assert_eq!(user.properties["email"], json!("r1@x.io"));
    assert!(
        f.store
            .claim_due_jobs(99, 10, 1000)
            .await
            .expect("claim")
            .is_empty(),
        "not due yet"
    );
    let jobs = f.store.claim_due_jobs(100, 500, 1000).await.expect("claim");
    assert_eq!(jobs.len(), 450);
    assert!(
        f.store
            .claim_due_jobs(100, 500, 1000)
            .await
            .expect("claim")
            .is_empty(),
        "leased"
    );
    let run = f
        .store
        .load_run_for_job(&jobs[0].ref_id)
        .await
        .expect("load")
        .expect("run");
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.data, json!({"k": 1}));
}

async fn idempotency_replays_and_refuses_other_bodies(f: Fixture) {
    let mut t = trigger(&f.env, &["a"], 1000);
    t.idempotency = Some(IdempotencyClaim {
        key: "k1".into(),
        request_hash: "h1".into(),
        response: json!({"workflow_run_id": t.workflow_run_id}),
        not_before: 0,
    });
    assert_eq!(
        f.store.create_trigger(&t).await.expect("first"),
        TriggerOutcome::Accepted
    );
    let first_response = json!({"workflow_run_id": t.workflow_run_id});
    let mut again = t.clone();
    again.workflow_run_id = "other".into();
    if let Some(c) = again.idempotency.as_mut() {
        c.response = json!({"workflow_run_id": "other"});
    }
    assert_eq!(
        f.store.create_trigger(&again).await.expect("replay"),
        TriggerOutcome::Replayed(first_response)
    );
    if let Some(c) = again.idempotency.as_mut() {
        c.request_hash = "h2".into();
    }
    assert_eq!(
        f.store.create_trigger(&again).await.expect("reuse"),
        TriggerOutcome::IdempotencyKeyReused
    );
    assert_eq!(
        f.store.pending_job_count().await.expect("count"),
        1,
        "nothing else stored"
    );
    // After the window the key is free again.
    if let Some(c) = again.idempotency.as_mut() {
        c.not_before = 2000;
    }
    again.now = 3000;
    assert_eq!(
        f.store.create_trigger(&again).await.expect("expired"),
        TriggerOutcome::Accepted
    );
}

async fn concurrent_idempotent_triggers_store_one_run(f: Fixture) {
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = f.store.clone();
        let mut t = trigger(&f.env, &["a"], 1000);
        t.workflow_run_id = format!("run-{i}");
        t.idempotency = Some(IdempotencyClaim {
            key: "same".into(),
            request_hash: "h".into(),
            response: json!({"workflow_run_id": format!("run-{i}")}),
            not_before: 0,
        });
        tasks.push(tokio::spawn(async move { store.create_trigger(&t).await }));
    }
    let mut accepted = 0;
    let mut replayed = std::collections::HashSet::new();
    for task in tasks {
        match task.await.expect("join").expect("trigger") {
            TriggerOutcome::Accepted => accepted += 1,
            TriggerOutcome::Replayed(v) => {
                replayed.insert(v.to_string());
            }
            TriggerOutcome::IdempotencyKeyReused => panic!("same body must not be refused"),
        }
    }
    assert_eq!(accepted, 1);
    assert!(
        replayed.len() <= 1,
        "every replay answers with the one stored response"
    );
    assert_eq!(f.store.pending_job_count().await.expect("count"), 1);
}

async fn leases_fence_stale_workers(f: Fixture) {
    f.store
        .create_trigger(&trigger(&f.env, &["a"], 0))
        .await
        .expect("trigger");
    let stale = f
        .store
        .claim_due_jobs(0, 1, 100)
        .await
        .expect("claim")
        .remove(0);
    // The stale worker's lease expires; another worker takes the job over.
    let fresh = f
        .store
        .claim_due_jobs(101, 1, 100)
        .await
        .expect("reclaim")
        .remove(0);
    assert_eq!(stale.id, fresh.id);
    assert_eq!(fresh.attempts, 2);
    let step = StepCommit {
        run_id: stale.ref_id.clone(),
        next_cursor: 1,
        message: None,
        enqueue_delivery: false,
        events: vec![],
        finished: Some(RunStatus::Completed),
        error: false,
        now: 102,
        ..StepCommit::default()
    };
    assert!(
        !f.store
            .commit_step(&stale, &step)
            .await
            .expect("stale commit"),
        "refused"
    );
    assert!(!f.store.complete_job(&stale).await.expect("stale complete"));
    assert!(f
        .store
        .commit_step(&fresh, &step)
        .await
        .expect("fresh commit"));
    assert_eq!(f.store.pending_job_count().await.expect("count"), 0);
    let run = f
        .store
        .get_recipient_run(&f.env, &fresh.ref_id)
        .await
        .expect("q")
        .expect("run");
    assert_eq!(run.status, RunStatus::Completed);
}

fn message(env: &str, run_id: &str, step: &str, recipient: &str, now: i64) -> NewMessage {
    NewMessage {
        id: hark_core::new_id(),
        environment_id: env.to_string(),
        recipient_run_id: run_id.to_string(),
        workflow_run_id: "wr".into(),
        step_ref: step.to_string(),
        workflow_key: "w".into(),
        workflow_version: 1,
        categories: vec!["alerts".into()],
        channel_key: "in-app-feed".into(),
        channel_type: "in_app_feed".into(),
        recipient_id: recipient.to_string(),
        recipient_collection: None,
        actors: vec![],
        tenant: None,
        status: "delivered".into(),
        content: json!({"blocks": []}),
        data: json!({"n": now}),
        batch: None,
        now,
    }
}

async fn commit_message(f: &Fixture, m: NewMessage, enqueue: bool) -> bool {
    let mut t = trigger(&f.env, &[m.recipient_id.as_str()], 0);
    t.inline_users.clear();
    f.store.create_trigger(&t).await.expect("trigger");
    let job = f
        .store
        .claim_due_jobs(i64::MAX / 4, 1, 1000)
        .await
        .expect("claim")
        .remove(0);
    let mut m = m;
    m.recipient_run_id = job.ref_id.clone();
    f.store
        .commit_step(
            &job,
            &StepCommit {
                run_id: job.ref_id.clone(),
                next_cursor: 1,
                message: Some(m),
                enqueue_delivery: enqueue,
                events: vec![],
                finished: None,
                error: false,
                now: 1,
                ..StepCommit::default()
            },
        )
        .await
        .expect("commit")
}

async fn one_message_per_run_and_step(f: Fixture) {
    f.store
        .create_trigger(&trigger(&f.env, &["a"], 0))
        .await
        .expect("trigger");
    let job = f
        .store
        .claim_due_jobs(0, 1, 1000)
        .await
        .expect("claim")
        .remove(0);
    for _ in 0..3 {
        let step = StepCommit {
            run_id: job.ref_id.clone(),
            next_cursor: 1,
            message: Some(message(&f.env, &job.ref_id, "s1", "a", 5)),
            enqueue_delivery: true,
            events: vec![],
            finished: None,
            error: false,
            now: 5,
            ..StepCommit::default()
        };
        assert!(f.store.commit_step(&job, &step).await.expect("commit"));
    }
    let filter = MessageFilter {
        recipient_id: Some("a".into()),
        ..Default::default()
    };
    let page = f
        .store
        .list_messages(&f.env, &filter, &first_page(50))
        .await
        .expect("list");
    assert_eq!(page.entries.len(), 1, "the unique key keeps one message");
    // One advance job plus exactly one delivery job.
    assert_eq!(f.store.pending_job_count().await.expect("count"), 2);
}

/// `read_feed` answers, in one statement, what the page, the counts and the user read
/// on their own answer: for pages either way, an unreadable cursor, a status filter
/// that narrows the page but not the counts, and a user with no record or messages.
async fn a_feed_read_is_its_page_counts_and_user(f: Fixture) {
    for i in 0..5 {
        assert!(commit_message(&f, message(&f.env, "x", "s", "u", i), false).await);
    }
    f.store
        .upsert_user(&f.env, "u", &props(json!({"name": "Ümit"})), 7)
        .await
        .expect("user");
    let counts_filter = MessageFilter {
        recipient_id: Some("u".into()),
        channel_key: Some("in-app-feed".into()),
        archived: ArchivedFilter::Exclude,
        ..Default::default()
    };
    let newest = f
        .store
        .list_messages(&f.env, &counts_filter, &first_page(50))
        .await
        .expect("list")
        .entries;
    let ids: Vec<String> = newest.iter().map(|m| m.id.clone()).collect();
    f.store
        .set_engagement(&f.env, &ids[1..3], Engagement::Read, 50)
        .await
        .expect("read");
    f.store
        .set_engagement(&f.env, &ids[4..5], Engagement::Archived, 50)
        .await
        .expect("archive");
    let unread = MessageFilter {
        engagement: vec!["unread".into()],
        ..counts_filter.clone()
    };
    let p1 = f
        .store
        .list_messages(&f.env, &counts_filter, &first_page(2))
        .await
        .expect("p1");
    let page = |after: Option<String>, before: Option<String>| PageRequest {
        page_size: 2,
        after,
        before,
    };
    let cases = [
        (&counts_filter, first_page(2), "u"),
        (&counts_filter, page(p1.after.clone(), None), "u"),
        (
            &counts_filter,
            // A `before` cursor from the page after p1's.
            page(None, Some(hark_store::cursor::encode(&ids[3]))),
            "u",
        ),
        (&counts_filter, page(Some("not a cursor".into()), None), "u"),
        // The page goes by `after`; an unreadable `before` beside it changes nothing.
        (
            &counts_filter,
            page(p1.after.clone(), Some("not a cursor".into())),
            "u",
        ),
        (&unread, first_page(50), "u"),
        (&counts_filter, first_page(50), "nobody"),
    ];
    for (filter, request, user) in cases {
        let counts_filter = MessageFilter {
            recipient_id: Some(user.into()),
            ..counts_filter.clone()
        };
        let filter = MessageFilter {
            recipient_id: Some(user.into()),
            ..filter.clone()
        };
        let read = f
            .store
            .read_feed(&f.env, &filter, &counts_filter, &request, user)
            .await
            .expect("read feed");
        let expected = FeedRead {
            counts: f
                .store
                .count_feed(&f.env, &counts_filter)
                .await
                .expect("counts"),
            page: f
                .store
                .list_messages(&f.env, &filter, &request)
                .await
                .expect("page"),
            user: f.store.get_user(&f.env, user).await.expect("user"),
        };
        assert_eq!(read, expected, "{user}, {request:?}, {filter:?}");
    }
    // What the cases above cover, so that a vacuous comparison cannot pass.
    let read = |filter: MessageFilter, request: PageRequest| {
        let store = f.store.clone();
        let env = f.env.clone();
        async move {
            store
                .read_feed(&env, &filter, &counts_filter_of(&filter), &request, "u")
                .await
                .expect("read feed")
        }
    };
    let first = read(counts_filter.clone(), first_page(2)).await;
    assert_eq!(
        first.counts,
        FeedCounts {
            total: 4,
            unread: 2,
            unseen: 4
        }
    );
    assert_eq!(first.page.entries.len(), 2);
    assert!(first.page.after.is_some());
    assert_eq!(
        first.user.map(|u| u.properties["name"].clone()),
        Some(json!("Ümit"))
    );
    let narrowed = read(unread.clone(), first_page(50)).await;
    assert_eq!(narrowed.page.entries.len(), 2, "unread and not archived");
    assert_eq!(
        narrowed.counts.total, 4,
        "the status filter leaves the counts"
    );
    let backwards = read(
        counts_filter.clone(),
        page(None, Some(hark_store::cursor::encode(&ids[3]))),
    )
    .await;
    assert_eq!(
        backwards
            .page
            .entries
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>(),
        ids[1..3].to_vec(),
        "the two before the cursor, newest first"
    );
}

/// A feed's counts ignore its read/seen status filter.
fn counts_filter_of(filter: &MessageFilter) -> MessageFilter {
    MessageFilter {
        engagement: Vec::new(),
        ..filter.clone()
    }
}

async fn feed_filters_counts_and_engagement(f: Fixture) {
    for i in 0..5 {
        assert!(commit_message(&f, message(&f.env, "x", "s", "u", i), false).await);
    }
    let base = MessageFilter {
        recipient_id: Some("u".into()),
        channel_key: Some("in-app-feed".into()),
        archived: ArchivedFilter::Exclude,
        ..Default::default()
    };
    let all = f
        .store
        .list_messages(&f.env, &base, &first_page(50))
        .await
        .expect("list");
    assert_eq!(all.entries.len(), 5);
    let ids: Vec<String> = all.entries.iter().map(|m| m.id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(ids, sorted, "newest first");

    // Pages of 2 forwards, then back with `before`.
    let p1 = f
        .store
        .list_messages(&f.env, &base, &first_page(2))
        .await
        .expect("p1");
    let p2 = f
        .store
        .list_messages(
            &f.env,
            &base,
            &PageRequest {
                page_size: 2,
                after: p1.after.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("p2");
    assert_eq!(
        p2.entries.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        ids[2..4].to_vec()
    );
    let back = f
        .store
        .list_messages(
            &f.env,
            &base,
            &PageRequest {
                page_size: 2,
                before: p2.before.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("back");
    assert_eq!(
        back.entries
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>(),
        ids[0..2].to_vec()
    );

    let counts = f.store.count_feed(&f.env, &base).await.expect("counts");
    assert_eq!(
        counts,
        FeedCounts {
            total: 5,
            unread: 5,
            unseen: 5
        }
    );
    let changed = f
        .store
        .set_engagement(&f.env, &ids[0..2], Engagement::Read, 50)
        .await
        .expect("read");
    assert!(changed.iter().all(|m| m.read_at == Some(50)));
    f.store
        .set_engagement(&f.env, &ids[0..1], Engagement::Seen, 50)
        .await
        .expect("seen");
    f.store
        .set_engagement(&f.env, &ids[4..5], Engagement::Archived, 50)
        .await
        .expect("archive");
    let counts = f.store.count_feed(&f.env, &base).await.expect("counts");
    assert_eq!(
        counts,
        FeedCounts {
            total: 4,
            unread: 2,
            unseen: 3
        }
    );
    let unread = MessageFilter {
        engagement: vec!["unread".into()],
        ..base.clone()
    };
    let page = f
        .store
        .list_messages(&f.env, &unread, &first_page(50))
        .await
        .expect("unread");
    assert_eq!(page.entries.len(), 2);
    let events = f
        .store
        .message_events(&f.env, &ids[0], &first_page(50))
        .await
        .expect("events");
    let types: Vec<&str> = events
        .entries
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert!(
        types.contains(&"message.read") && types.contains(&"message.seen"),
        "{types:?}"
    );
    // Marking unread what is unread changes nothing and records nothing.
    f.store
        .set_engagement(&f.env, &ids[3..4], Engagement::Unread, 60)
        .await
        .expect("unread");
    assert!(f
        .store
        .message_events(&f.env, &ids[3], &first_page(50))
        .await
        .expect("events")
        .entries
        .iter()
        .all(|e| e.event_type != "message.unread"));
    let by_category = MessageFilter {
        categories: vec!["nope".into()],
        ..base.clone()
    };
    assert_eq!(
        f.store
            .count_feed(&f.env, &by_category)
            .await
            .expect("c")
            .total,
        0
    );
    // Another environment sees none of it.
    let prod = f
        .store
        .environment_by_slug("production")
        .await
        .expect("q")
        .expect("prod");
    assert_eq!(
        f.store.count_feed(&prod.id, &base).await.expect("c").total,
        0
    );
    assert!(f
        .store
        .get_message(&prod.id, &ids[0])
        .await
        .expect("q")
        .is_none());
}

async fn cancel_drops_pending_jobs(f: Fixture) {
    f.store
        .create_trigger(&trigger(&f.env, &["a", "b"], 0))
        .await
        .expect("trigger");
    let n = f
        .store
        .cancel_runs(&f.env, "w", "ck", Some(&["a".into()]), 1)
        .await
        .expect("cancel");
    assert_eq!(n, 1);
    assert_eq!(f.store.pending_job_count().await.expect("count"), 1);
    let n = f
        .store
        .cancel_runs(&f.env, "w", "ck", None, 2)
        .await
        .expect("cancel");
    assert_eq!(n, 1);
    assert_eq!(f.store.pending_job_count().await.expect("count"), 0);
    assert_eq!(
        f.store
            .cancel_runs(&f.env, "w", "ck", None, 3)
            .await
            .expect("again"),
        0
    );
    let runs = f
        .store
        .list_recipient_runs(&f.env, &RunFilter::default(), &first_page(10))
        .await
        .expect("runs");
    assert!(runs
        .entries
        .iter()
        .all(|r| r.status == RunStatus::Cancelled));
    let events = f
        .store
        .run_events(&runs.entries[0].id)
        .await
        .expect("events");
    assert_eq!(events[0].event, "workflow_run_cancelled");
}

async fn delivery_commit_retries_and_logs(f: Fixture) {
    let m = message(&f.env, "x", "email", "u", 1);
    assert!(commit_message(&f, m, true).await);
    let filter = MessageFilter {
        recipient_id: Some("u".into()),
        ..Default::default()
    };
    let msg = f
        .store
        .list_messages(&f.env, &filter, &first_page(5))
        .await
        .expect("list")
        .entries
        .remove(0);
    let job = f
        .store
        .claim_due_jobs(i64::MAX / 4, 10, 1000)
        .await
        .expect("claim")
        .into_iter()
        .find(|j| j.kind == JobKind::DeliverMessage)
        .expect("delivery job");
    let log = |id: &str| DeliveryLog {
        id: id.to_string(),
        environment_id: f.env.clone(),
        message_id: msg.id.clone(),
        service_name: "webhook".into(),
        request: json!({"method": "POST"}),
        response: json!({"status": 500}),
        inserted_at: 7,
    };
    let retry = DeliveryCommit {
        message_id: msg.id.clone(),
        status: "delivery_attempted".into(),
        logs: vec![log("l1")],
        event_type: "message.delivery_attempted".into(),
        event_data: json!({}),
        retry_at: Some(1_000),
        provider_message_id: None,
        now: 7,
    };
    assert!(f.store.commit_delivery(&job, &retry).await.expect("commit"));
    assert!(f
        .store
        .claim_due_jobs(999, 10, 10)
        .await
        .expect("claim")
        .iter()
        .all(|j| j.id != job.id));
    let again = f
        .store
        .claim_due_jobs(1_000, 10, 10)
        .await
        .expect("claim")
        .into_iter()
        .find(|j| j.id == job.id)
        .expect("retried");
    let done = DeliveryCommit {
        status: "delivered".into(),
        logs: vec![log("l2")],
        event_type: "message.delivered".into(),
        retry_at: None,
        provider_message_id: None,
        ..retry
    };
    assert!(f
        .store
        .commit_delivery(&again, &done)
        .await
        .expect("commit"));
    let msg = f
        .store
        .get_message(&f.env, &msg.id)
        .await
        .expect("q")
        .expect("msg");
    assert_eq!(msg.status, "delivered");
    assert_eq!(
        f.store
            .delivery_logs(&f.env, &msg.id, &first_page(50))
            .await
            .expect("logs")
            .entries
            .len(),
        2
    );
    // One log per page: newest first, and the cursor leads to the older one.
    let first = f
        .store
        .delivery_logs(&f.env, &msg.id, &first_page(1))
        .await
        .expect("page 1");
    assert_eq!(first.entries[0].id, "l2");
    let after = first.after.clone().expect("a second page");
    let second = f
        .store
        .delivery_logs(
            &f.env,
            &msg.id,
            &PageRequest {
                page_size: 1,
                after: Some(after),
                ..Default::default()
            },
        )
        .await
        .expect("page 2");
    assert_eq!(second.entries[0].id, "l1");
    assert!(second.after.is_none());
}

async fn trigger_data_filter_compares_json_values(f: Fixture) {
    let datas = [
        json!({"kind": "a", "n": 1, "flag": true, "nested": {"x": [1, 2]}}),
        json!({"kind": "b", "n": 2, "flag": false, "nested": {"x": [1]}}),
        json!({"kind": "1", "n": 1.5}),
    ];
    for d in &datas {
        let mut m = message(&f.env, "x", "s", "u", 1);
        m.data = d.clone();
        assert!(commit_message(&f, m, false).await);
    }
    let count = |pairs: Vec<(&str, Value)>| {
        let filter = MessageFilter {
            recipient_id: Some("u".into()),
            trigger_data: pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ..Default::default()
        };
        let store = f.store.clone();
        let env = f.env.clone();
        async move { store.count_feed(&env, &filter).await.expect("count").total }
    };
    assert_eq!(count(vec![("kind", json!("a"))]).await, 1);
    assert_eq!(
        count(vec![("n", json!(1))]).await,
        1,
        "1 is not \"1\" nor 1.5"
    );
    assert_eq!(count(vec![("kind", json!("1"))]).await, 1);
    assert_eq!(count(vec![("n", json!(1.5))]).await, 1);
    assert_eq!(count(vec![("flag", json!(false))]).await, 1);
    assert_eq!(count(vec![("nested", json!({"x": [1, 2]}))]).await, 1);
    assert_eq!(count(vec![("kind", json!("a")), ("n", json!(2))]).await, 0);
    assert_eq!(count(vec![("missing", json!("a"))]).await, 0);
    assert_eq!(count(vec![]).await, 3);
}

async fn group_commit_isolates_each_trigger(f: Fixture) {
    let claim = |hash: &str, run: &str| IdempotencyClaim {
        key: "same-key".into(),
        request_hash: hash.into(),
        response: json!({"workflow_run_id": run}),
        not_before: 0,
    };
    let mut a = trigger(&f.env, &["a"], 10);
    a.workflow_run_id = "run-a".into();
    a.idempotency = Some(claim("h", "run-a"));
    let mut replay = trigger(&f.env, &["a"], 10);
    replay.workflow_run_id = "run-a2".into();
    replay.idempotency = Some(claim("h", "run-a2"));
    let mut reused = trigger(&f.env, &["a"], 10);
    reused.workflow_run_id = "run-a3".into();
    reused.idempotency = Some(claim("other", "run-a3"));
    // Same workflow run id as `a`: violates the primary key and must fail alone.
    let mut broken = trigger(&f.env, &["b"], 10);
    broken.workflow_run_id = "run-a".into();
    let mut c = trigger(&f.env, &["c"], 10);
    c.workflow_run_id = "run-c".into();
    let outcomes = f
        .store
        .create_triggers(&[a, replay, reused, broken, c])
        .await
        .expect("batch commits");
    assert_eq!(outcomes.len(), 5);
    assert_eq!(outcomes[0].as_ref().expect("a"), &TriggerOutcome::Accepted);
    assert_eq!(
        outcomes[1].as_ref().expect("replay"),
        &TriggerOutcome::Replayed(json!({"workflow_run_id": "run-a"}))
    );
    assert_eq!(
        outcomes[2].as_ref().expect("reused"),
        &TriggerOutcome::IdempotencyKeyReused
    );
    assert!(outcomes[3].is_err(), "the broken trigger fails");
    assert_eq!(outcomes[4].as_ref().expect("c"), &TriggerOutcome::Accepted);
    // a and c stored one run and one job each; nothing of the broken one remains.
    assert_eq!(f.store.pending_job_count().await.expect("count"), 2);
    let runs = f
        .store
        .list_recipient_runs(&f.env, &RunFilter::default(), &first_page(10))
        .await
        .expect("runs");
    let mut recipients: Vec<_> = runs
        .entries
        .iter()
        .map(|r| r.recipient_id.clone())
        .collect();
    recipients.sort();
    assert_eq!(recipients, vec!["a", "c"]);
}
