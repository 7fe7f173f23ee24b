//! Group commits write plain triggers and plain step outcomes with a few multi-row
//! statements; these tests hold that path to what the per-item statements do, on both
//! backends.

mod common;

use common::*;
use hark_store::*;
use serde_json::json;

contract!(
    plain_triggers_commit_together,
    plain_triggers_honour_early_cancels_and_start_waits,
    plain_triggers_beyond_one_request,
    step_batch_matches_per_step_commits,
    failed_step_batch_is_redone_step_by_step,
    delivery_batch_fences_each_job,
    deliveries_padded_to_a_list_shape_are_each_written_once,
    failed_delivery_batch_is_redone_one_by_one,
    messages_and_runs_are_listed_by_their_trigger,
    merging_users_moves_the_users_messages_but_not_an_objects,
    upcoming_due_times_are_distinct_and_in_order,
    new_feed_messages_are_announced_once,
);

fn plain_trigger(env: &str, recipients: &[&str], now: i64) -> TriggerWrite {
    TriggerWrite {
        environment_id: env.to_string(),
        workflow_key: "w".into(),
        workflow_version: 1,
        workflow_run_id: hark_core::new_id(),
        actor: Some("boss".into()),
        tenant: Some("t1".into()),
        data: json!({"k": 1}),
        cancellation_key: None,
        recipients: recipients.iter().map(|s| s.to_string()).collect(),
        inline_users: Vec::new(),
        inline_objects: Vec::new(),
        inline_documents: Vec::new(),
        fan_outs: Vec::new(),
        idempotency: None,
        state: json!({"settings": {}}),
        frequency: TriggerFrequency::EveryTrigger,
        lease: None,
        now,
    }
}

fn page(page_size: i64) -> PageRequest {
    PageRequest {
        after: None,
        before: None,
        page_size,
    }
}

/// Starts a run of workflow `waiter` for recipient `a` at `now` and pauses it on a wait
/// for `w`'s `event_type`/`event_key` of `a` (the run's job is claimed and committed
/// with the wait); returns the wait's id.
async fn wait_for_a(f: &Fixture, now: i64, event_type: &str, event_key: &str) -> String {
    let mut waiter = plain_trigger(&f.env, &["a"], now);
    waiter.workflow_key = "waiter".into();
    f.store.create_trigger(&waiter).await.expect("waiter");
    let job = f
        .store
        .claim_due_jobs(now, 1, 1_000)
        .await
        .expect("claim waiter")
        .remove(0);
    let wait_id = hark_core::new_id();
    let paused = StepCommit {
        run_id: job.ref_id.clone(),
        next_cursor: 0,
        new_wait: Some(NewWait {
            id: wait_id.clone(),
            environment_id: f.env.clone(),
            recipient_id: "a".into(),
            event_type: event_type.into(),
            event_key: event_key.into(),
            source_key: "w".into(),
            expires_at: 1_000_000,
        }),
        resume_at: Some(1_000_000),
        now: now + 1,
        ..StepCommit::default()
    };
    assert!(f.store.commit_step(&job, &paused).await.expect("wait"));
    wait_id
}

async fn runs_of(f: &Fixture) -> Vec<RecipientRun> {
    let page = f
        .store
        .list_recipient_runs(&f.env, &RunFilter::default(), &page(100))
        .await
        .expect("runs");
    page.entries
}

/// Commits each claimed job's first step with the message `message_for` makes of its run;
/// every step must be written.
async fn commit_messages(
    f: &Fixture,
    jobs: &[ClaimedJob],
    message_for: impl Fn(&RecipientRun) -> NewMessage,
) {
    let runs = runs_of(f).await;
    let batch: Vec<(ClaimedJob, StepCommit)> = jobs
        .iter()
        .map(|job| {
            let run = runs.iter().find(|r| r.id == job.ref_id).expect("run");
            let step = StepCommit {
                run_id: run.id.clone(),
                next_cursor: 1,
                message: Some(message_for(run)),
                now: 20,
                ..StepCommit::default()
            };
            (job.clone(), step)
        })
        .collect();
    let outcomes = f.store.commit_steps(&batch).await.expect("batch");
    assert!(outcomes.iter().all(|o| matches!(o, Ok(true))));
}

async fn plain_triggers_commit_together(f: Fixture) {
    let a = plain_trigger(&f.env, &["a"], 10);
    let b = plain_trigger(&f.env, &["b1", "b2"], 10);
    let c = plain_trigger(&f.env, &["c"], 10);
    let outcomes = f
        .store
        .create_triggers(&[a.clone(), b.clone(), c])
        .await
        .expect("batch");
    assert!(outcomes
        .iter()
        .all(|o| o.as_ref().ok() == Some(&TriggerOutcome::Accepted)));
    assert_eq!(f.store.pending_job_count().await.expect("count"), 4);
    let runs = runs_of(&f).await;
    assert_eq!(runs.len(), 4);
    let b1 = runs
        .iter()
        .find(|r| r.recipient_id == "b1")
        .expect("b1 run");
    assert_eq!(b1.workflow_run_id, b.workflow_run_id);
    assert_eq!(b1.actor.as_deref(), Some("boss"));
    assert_eq!(b1.tenant.as_deref(), Some("t1"));
    assert_eq!(b1.data, json!({"k": 1}));
    assert_eq!(b1.status, RunStatus::Queued);
    // The same workflow run id again: the batch fails as a whole and is retried one
    // trigger at a time, so only the duplicate fails.
    let mut dup = plain_trigger(&f.env, &["x"], 11);
    dup.workflow_run_id = a.workflow_run_id.clone();
    let d = plain_trigger(&f.env, &["d"], 11);
    let outcomes = f.store.create_triggers(&[dup, d]).await.expect("batch");
    assert!(outcomes[0].is_err());
    assert_eq!(outcomes[1].as_ref().ok(), Some(&TriggerOutcome::Accepted));
    assert_eq!(f.store.pending_job_count().await.expect("count"), 5);
}

async fn plain_triggers_beyond_one_request(f: Fixture) {
    // 3,000 runs and jobs bind about 75,000 parameters, more than one PostgreSQL
    // statement may hold; every run and job still commits. (Whether the batch went as
    // several requests or fell back to one trigger at a time is not visible here; the
    // split itself is tested in `sql_impl::chain`.)
    let names: Vec<Vec<String>> = (0..3)
        .map(|t| (0..1000).map(|i| format!("u{t}-{i}")).collect())
        .collect();
    let triggers: Vec<TriggerWrite> = names
        .iter()
        .map(|n| {
            let ids: Vec<&str> = n.iter().map(String::as_str).collect();
            plain_trigger(&f.env, &ids, 10)
        })
        .collect();
    let outcomes = f.store.create_triggers(&triggers).await.expect("batch");
    assert!(outcomes
        .iter()
        .all(|o| o.as_ref().ok() == Some(&TriggerOutcome::Accepted)));
    assert_eq!(f.store.pending_job_count().await.expect("count"), 3000);
}

async fn plain_triggers_honour_early_cancels_and_start_waits(f: Fixture) {
    // A cancel that arrives before its trigger is kept and applies on arrival.
    let cancelled = f
        .store
        .cancel_runs(&f.env, "w", "ck", None, 5)
        .await
        .expect("cancel");
    assert_eq!(cancelled, 0);
    // A run of another workflow waits for `w` to start for recipient `a`.
    let wait_id = wait_for_a(&f, 5, "workflow", "started").await;

    let mut keyed = plain_trigger(&f.env, &["a"], 10);
    keyed.cancellation_key = Some("ck".into());
    let other = plain_trigger(&f.env, &["b"], 10);
    let outcomes = f
        .store
        .create_triggers(&[keyed.clone(), other.clone()])
        .await
        .expect("batch");
    assert!(outcomes.iter().all(|o| o.is_ok()));
    let runs = runs_of(&f).await;
    let status_of = |workflow_run_id: &str| {
        runs.iter()
            .find(|r| r.workflow_run_id == workflow_run_id)
            .map(|r| r.status)
    };
    assert_eq!(
        status_of(&keyed.workflow_run_id),
        Some(RunStatus::Cancelled)
    );
    assert_eq!(status_of(&other.workflow_run_id), Some(RunStatus::Queued));
    // Both triggers started `w`; only the one for `a` is a candidate for a's wait.
    let candidates = f.store.wait_candidates(&wait_id).await.expect("candidates");
    assert_eq!(candidates.len(), 1, "{candidates:?}");
    assert_eq!(
        candidates[0].payload["workflow_run_id"],
        json!(keyed.workflow_run_id)
    );
}

fn feed_message(env: &str, run_id: &str, recipient: &str, step_ref: &str) -> NewMessage {
    NewMessage {
        id: hark_core::new_id(),
        environment_id: env.to_string(),
        recipient_run_id: run_id.to_string(),
        workflow_run_id: "wr".into(),
        step_ref: step_ref.into(),
        workflow_key: "w".into(),
        workflow_version: 1,
        categories: vec!["alerts".into()],
        channel_key: "in-app-feed".into(),
        channel_type: "in_app_feed".into(),
        recipient_id: recipient.to_string(),
        recipient_collection: None,
        actors: vec!["boss".into()],
        tenant: None,
        status: "delivered".into(),
        content: json!({"blocks": []}),
        data: json!({"n": 1}),
        batch: None,
        now: 20,
    }
}

/// One trigger per recipient, each run's first job claimed: the jobs by recipient.
async fn claim_one_run_each(
    f: &Fixture,
    recipients: &[&str],
) -> std::collections::HashMap<String, ClaimedJob> {
    for r in recipients {
        f.store
            .create_trigger(&plain_trigger(&f.env, &[r], 10))
            .await
            .expect("trigger");
    }
    let jobs = f.store.claim_due_jobs(10, 10, 1_000).await.expect("claim");
    assert_eq!(jobs.len(), recipients.len());
    runs_of(f)
        .await
        .into_iter()
        .map(|run| {
            let job = jobs
                .iter()
                .find(|j| j.ref_id == run.id)
                .cloned()
                .expect("job");
            (run.recipient_id, job)
        })
        .collect()
}

fn event(name: &str) -> RunEvent {
    RunEvent {
        id: hark_core::new_id(),
        event: name.into(),
        status: "ok".into(),
        step_ref: Some("s1".into()),
        step_type: Some("channel".into()),
        attempt: 1,
        data: json!({"n": 1}),
        inserted_at: 20,
    }
}

async fn step_batch_matches_per_step_commits(f: Fixture) {
    let jobs = claim_one_run_each(&f, &["a", "b", "c", "d", "e", "g", "h"]).await;
    let job_of = |recipient: &str| jobs[recipient].clone();
    let (a, b, c, d, e, g) = (
        job_of("a"),
        job_of("b"),
        job_of("c"),
        job_of("d"),
        job_of("e"),
        job_of("g"),
    );
    // g waits for `w` runs of recipient `a` to complete.
    let wait_id = hark_core::new_id();
    let waiting = StepCommit {
        run_id: g.ref_id.clone(),
        next_cursor: 0,
        new_wait: Some(NewWait {
            id: wait_id.clone(),
            environment_id: f.env.clone(),
            recipient_id: "a".into(),
            event_type: "workflow".into(),
            event_key: "completed".into(),
            source_key: "w".into(),
            expires_at: 1_000_000,
        }),
        resume_at: Some(1_000_000),
        now: 15,
        ..StepCommit::default()
    };
    assert!(f.store.commit_step(&g, &waiting).await.expect("wait"));
    // h waits for recipient `a`'s messages to be delivered: the batch answers both kinds
    // of wait at once.
    let h = job_of("h");
    let message_wait_id = hark_core::new_id();
    let waiting_for_message = StepCommit {
        run_id: h.ref_id.clone(),
        next_cursor: 0,
        new_wait: Some(NewWait {
            id: message_wait_id.clone(),
            environment_id: f.env.clone(),
            recipient_id: "a".into(),
            event_type: "message".into(),
            event_key: "delivered".into(),
            source_key: "w".into(),
            expires_at: 1_000_000,
        }),
        resume_at: Some(1_000_000),
        now: 15,
        ..StepCommit::default()
    };
    assert!(f
        .store
        .commit_step(&h, &waiting_for_message)
        .await
        .expect("message wait"));
    // d's step was committed before (a replay follows in the batch).
    let first_d = feed_message(&f.env, &d.ref_id, "d", "s1");
    let d_step = StepCommit {
        run_id: d.ref_id.clone(),
        next_cursor: 1,
        message: Some(first_d.clone()),
        events: vec![event("message_enqueued")],
        now: 20,
        ..StepCommit::default()
    };
    assert!(f.store.commit_step(&d, &d_step).await.expect("d"));
    // c's lease was taken over by another worker.
    let mut stale_c = c.clone();
    stale_c.lease = "someone-else".into();

    let a_message = feed_message(&f.env, &a.ref_id, "a", "s1");
    let mut b_message = feed_message(&f.env, &b.ref_id, "b", "s1");
    b_message.channel_key = "email".into();
    b_message.channel_type = "email".into();
    b_message.status = "queued".into();
    let mut d_replay = d_step.clone();
    d_replay.message = Some(feed_message(&f.env, &d.ref_id, "d", "s1"));
    d_replay.events = vec![event("message_enqueued")];
    let batch = vec![
        (
            a.clone(),
            StepCommit {
                run_id: a.ref_id.clone(),
                next_cursor: 1,
                message: Some(a_message.clone()),
                events: vec![event("message_enqueued"), event("workflow_run_completed")],
                finished: Some(RunStatus::Completed),
                state: Some(json!({"seen": true})),
                now: 20,
                ..StepCommit::default()
            },
        ),
        (
            b.clone(),
            StepCommit {
                run_id: b.ref_id.clone(),
                next_cursor: 1,
                message: Some(b_message.clone()),
                enqueue_delivery: true,
                events: vec![event("message_enqueued")],
                error: true,
                data: Some(json!({"k": 2})),
                now: 20,
                ..StepCommit::default()
            },
        ),
        (
            stale_c,
            StepCommit {
                run_id: c.ref_id.clone(),
                next_cursor: 1,
                message: Some(feed_message(&f.env, &c.ref_id, "c", "s1")),
                finished: Some(RunStatus::Completed),
                now: 20,
                ..StepCommit::default()
            },
        ),
        (d.clone(), d_replay),
        // Not plain (a pause): written by the per-step statements in the same commit.
        (
            e.clone(),
            StepCommit {
                run_id: e.ref_id.clone(),
                next_cursor: 1,
                resume_at: Some(5_000),
                now: 20,
                ..StepCommit::default()
            },
        ),
    ];
    let outcomes = f.store.commit_steps(&batch).await.expect("batch");
    let held: Vec<bool> = outcomes.into_iter().map(|o| o.expect("ok")).collect();
    assert_eq!(held, vec![true, true, false, true, true]);

    let run = |job: &ClaimedJob| {
        let store = f.store.clone();
        let (env, id) = (f.env.clone(), job.ref_id.clone());
        async move {
            store
                .get_recipient_run(&env, &id)
                .await
                .expect("q")
                .expect("run")
        }
    };
    let run_a = run(&a).await;
    assert_eq!(run_a.status, RunStatus::Completed);
    assert_eq!(run_a.step_cursor, 1);
    assert_eq!(run_a.state["seen"], json!(true));
    let run_b = run(&b).await;
    assert_eq!(run_b.status, RunStatus::Processing);
    assert_eq!(run_b.error_count, 1);
    assert_eq!(run_b.data, json!({"k": 2}));
    assert_eq!(
        run(&c).await.status,
        RunStatus::Queued,
        "the stale step wrote nothing"
    );
    assert_eq!(run(&e).await.status, RunStatus::Paused);
    assert_eq!(
        f.store.run_events(&a.ref_id).await.expect("events").len(),
        2
    );
    // One message per (run, step): d kept its first message.
    let messages = f
        .store
        .list_messages(&f.env, &MessageFilter::default(), &page(50))
        .await
        .expect("messages");
    let mut ids: Vec<&str> = messages.entries.iter().map(|m| m.id.as_str()).collect();
    ids.sort();
    let mut expected = vec![
        a_message.id.as_str(),
        b_message.id.as_str(),
        first_d.id.as_str(),
    ];
    expected.sort();
    assert_eq!(ids, expected);
    let events = f
        .store
        .message_events(&f.env, &a_message.id, &page(10))
        .await
        .expect("events")
        .entries;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "message.delivered");
    // Jobs left: b's advance job and its delivery, c's (stale), d's, e's (paused), g's
    // and h's; a's finished job is gone.
    assert_eq!(f.store.pending_job_count().await.expect("count"), 7);
    // g's wait saw a's run complete.
    let candidates = f.store.wait_candidates(&wait_id).await.expect("candidates");
    assert_eq!(candidates.len(), 1, "{candidates:?}");
    assert_eq!(candidates[0].payload["status"], json!("completed"));
    // h's wait saw a's message delivered, and no one else's.
    let candidates = f
        .store
        .wait_candidates(&message_wait_id)
        .await
        .expect("candidates");
    assert_eq!(candidates.len(), 1, "{candidates:?}");
    assert_eq!(candidates[0].payload["message_id"], a_message.id.as_str());
    assert_eq!(candidates[0].payload["event_type"], "message.delivered");
}

async fn failed_step_batch_is_redone_step_by_step(f: Fixture) {
    for r in ["a", "b", "c"] {
        f.store
            .create_trigger(&plain_trigger(&f.env, &[r], 10))
            .await
            .expect("trigger");
    }
    let jobs = f.store.claim_due_jobs(10, 10, 1_000).await.expect("claim");
    assert_eq!(jobs.len(), 3);
    let step = |job: &ClaimedJob, message: NewMessage| StepCommit {
        run_id: job.ref_id.clone(),
        next_cursor: 1,
        message: Some(message),
        events: vec![event("message_enqueued")],
        now: 20,
        ..StepCommit::default()
    };
    let first = feed_message(&f.env, &jobs[0].ref_id, "a", "s1");
    let second = feed_message(&f.env, &jobs[1].ref_id, "b", "s1");
    // The third message reuses the second's id: writing the batch together fails, and
    // only that step may fail when the steps are written one by one.
    let mut clash = feed_message(&f.env, &jobs[2].ref_id, "c", "s1");
    clash.id = second.id.clone();
    let batch = vec![
        (jobs[0].clone(), step(&jobs[0], first)),
        (jobs[1].clone(), step(&jobs[1], second)),
        (jobs[2].clone(), step(&jobs[2], clash)),
    ];
    let outcomes = f.store.commit_steps(&batch).await.expect("batch");
    assert!(matches!(outcomes[0], Ok(true)), "{outcomes:?}");
    assert!(matches!(outcomes[1], Ok(true)), "{outcomes:?}");
    assert!(outcomes[2].is_err(), "{outcomes:?}");
    for (job, cursor) in jobs.iter().zip([1, 1, 0]) {
        let run = f
            .store
            .get_recipient_run(&f.env, &job.ref_id)
            .await
            .expect("q")
            .expect("run");
        assert_eq!(run.step_cursor, cursor, "{}", run.recipient_id);
    }
    let messages = f
        .store
        .list_messages(&f.env, &MessageFilter::default(), &page(50))
        .await
        .expect("messages");
    assert_eq!(messages.entries.len(), 2);
}

/// Queued email messages, one per recipient, with their delivery jobs claimed.
async fn claimed_deliveries(f: &Fixture, recipients: &[&str]) -> Vec<(ClaimedJob, NewMessage)> {
    let mut out = Vec::new();
    for recipient in recipients {
        f.store
            .create_trigger(&plain_trigger(&f.env, &[*recipient], 10))
            .await
            .expect("trigger");
        let advance = f
            .store
            .claim_due_jobs(10, 1, 1_000)
            .await
            .expect("claim")
            .remove(0);
        let mut message = feed_message(&f.env, &advance.ref_id, recipient, "email");
        message.channel_key = "email".into();
        message.channel_type = "email".into();
        message.status = "queued".into();
        let step = StepCommit {
            run_id: advance.ref_id.clone(),
            next_cursor: 1,
            message: Some(message.clone()),
            enqueue_delivery: true,
            finished: Some(RunStatus::Completed),
            now: 20,
            ..StepCommit::default()
        };
        assert!(f.store.commit_step(&advance, &step).await.expect("step"));
        let delivery = f
            .store
            .claim_due_jobs(30, 1, 1_000)
            .await
            .expect("claim delivery")
            .remove(0);
        assert_eq!(delivery.kind, JobKind::DeliverMessage);
        out.push((delivery, message));
    }
    out
}

/// The stored message `id`, which must exist.
async fn stored_message(f: &Fixture, id: &str) -> MessageRecord {
    f.store
        .get_message(&f.env, id)
        .await
        .expect("q")
        .expect("message")
}

/// Message `id`'s delivery logs (the first ten).
async fn logs_of(f: &Fixture, id: &str) -> Vec<DeliveryLog> {
    f.store
        .delivery_logs(&f.env, id, &page(10))
        .await
        .expect("logs")
        .entries
}

/// A delivery's outcome: sent, or queued again for `retry_at`; with one log.
fn delivery(f: &Fixture, message: &NewMessage, retry_at: Option<i64>) -> DeliveryCommit {
    DeliveryCommit {
        message_id: message.id.clone(),
        status: if retry_at.is_some() { "queued" } else { "sent" }.into(),
        logs: vec![DeliveryLog {
            id: hark_core::new_id(),
            environment_id: f.env.clone(),
            message_id: message.id.clone(),
            service_name: "smtp".into(),
            request: json!({"to": "x"}),
            response: json!({"ok": retry_at.is_none()}),
            inserted_at: 40,
        }],
        event_type: if retry_at.is_some() {
            "message.queued"
        } else {
            "message.sent"
        }
        .into(),
        event_data: json!({"attempt": 1}),
        retry_at,
        provider_message_id: retry_at.is_none().then(|| format!("p-{}", message.id)),
        now: 40,
    }
}

async fn delivery_batch_fences_each_job(f: Fixture) {
    let claimed = claimed_deliveries(&f, &["a", "b", "c", "d"]).await;
    // Workers read a claimed batch's messages in one query; a missing id is left out.
    let mut ids: Vec<String> = claimed.iter().map(|(job, _)| job.ref_id.clone()).collect();
    ids.push("no-such-message".into());
    let mut read: Vec<String> = f
        .store
        .load_messages_for_jobs(&ids)
        .await
        .expect("read ahead")
        .into_iter()
        .map(|m| m.id)
        .collect();
    read.sort();
    let mut expected: Vec<String> = claimed.iter().map(|(_, m)| m.id.clone()).collect();
    expected.sort();
    assert_eq!(read, expected);
    let commit = |message: &NewMessage, retry_at: Option<i64>| delivery(&f, message, retry_at);
    let (a_job, a_message) = &claimed[0];
    let (b_job, b_message) = &claimed[1];
    let (c_job, c_message) = &claimed[2];
    let (d_job, d_message) = &claimed[3];
    // A run of another workflow waits for recipient `a`'s messages of `w` to be sent: the
    // batch asks once whether anyone waits, then signals only a's.
    let wait_id = wait_for_a(&f, 30, "message", "sent").await;
    let mut stale_b = b_job.clone();
    stale_b.lease = "someone-else".into();
    // a and d are written together; b lost its lease; c is retried (the per-item path).
    let outcomes = f
        .store
        .commit_deliveries(&[
            (a_job.clone(), commit(a_message, None)),
            (stale_b, commit(b_message, None)),
            (c_job.clone(), commit(c_message, Some(5_000))),
            (d_job.clone(), commit(d_message, None)),
        ])
        .await
        .expect("batch");
    let held: Vec<bool> = outcomes.into_iter().map(|o| o.expect("ok")).collect();
    assert_eq!(held, vec![true, false, true, true]);
    for (m, status) in [
        (a_message, "sent"),
        (b_message, "queued"),
        (c_message, "queued"),
        (d_message, "sent"),
    ] {
        let stored = stored_message(&f, &m.id).await;
        assert_eq!(stored.status, status, "{}", m.recipient_id);
    }
    assert_eq!(logs_of(&f, &a_message.id).await.len(), 1);
    assert_eq!(logs_of(&f, &b_message.id).await.len(), 0);
    assert_eq!(logs_of(&f, &c_message.id).await.len(), 1);
    assert_eq!(
        logs_of(&f, &d_message.id).await[0].response,
        json!({"ok": true})
    );
    let events = |id: &str| {
        let (store, env, id) = (f.store.clone(), f.env.clone(), id.to_string());
        async move {
            store
                .message_events(&env, &id, &page(10))
                .await
                .expect("events")
                .entries
                .into_iter()
                .map(|e| e.event_type)
                .collect::<Vec<_>>()
        }
    };
    assert!(events(&a_message.id)
        .await
        .contains(&"message.sent".to_string()));
    assert!(!events(&b_message.id)
        .await
        .contains(&"message.sent".to_string()));
    assert!(events(&d_message.id)
        .await
        .contains(&"message.sent".to_string()));
    // The wait saw a's message sent, and not d's (another recipient's).
    let candidates = f.store.wait_candidates(&wait_id).await.expect("candidates");
    assert_eq!(candidates.len(), 1, "{candidates:?}");
    assert_eq!(candidates[0].payload["message_id"], a_message.id.as_str());
    assert_eq!(candidates[0].payload["event_type"], "message.sent");
    // a's and d's jobs are done; b's stays for the worker that holds it, c's for its
    // retry, and the waiting run's.
    assert_eq!(f.store.pending_job_count().await.expect("count"), 3);
    // Replaying a's outcome with the old lease writes nothing more.
    let replay = f
        .store
        .commit_deliveries(&[
            (a_job.clone(), commit(a_message, None)),
            (d_job.clone(), commit(d_message, None)),
        ])
        .await
        .expect("replay");
    assert!(replay.into_iter().all(|o| !o.expect("ok")));
    assert_eq!(logs_of(&f, &a_message.id).await.len(), 1);
}

async fn deliveries_padded_to_a_list_shape_are_each_written_once(f: Fixture) {
    // Seven deliveries, one of them stale: the statements' lists of six are written with
    // eight entries, the last two `NULL`s that match nothing.
    let recipients = ["a", "b", "c", "d", "e", "g", "h"];
    let claimed = claimed_deliveries(&f, &recipients).await;
    let ids: Vec<String> = claimed.iter().map(|(job, _)| job.ref_id.clone()).collect();
    let read = f
        .store
        .load_messages_for_jobs(&ids)
        .await
        .expect("read ahead");
    assert_eq!(read.len(), recipients.len());
    let batch: Vec<(ClaimedJob, DeliveryCommit)> = claimed
        .iter()
        .enumerate()
        .map(|(i, (job, message))| {
            let mut job = job.clone();
            if i == 2 {
                job.lease = "someone-else".into();
            }
            (job, delivery(&f, message, None))
        })
        .collect();
    let held: Vec<bool> = f
        .store
        .commit_deliveries(&batch)
        .await
        .expect("batch")
        .into_iter()
        .map(|o| o.expect("ok"))
        .collect();
    assert_eq!(held, vec![true, true, false, true, true, true, true]);
    for (i, (_, message)) in claimed.iter().enumerate() {
        let stored = stored_message(&f, &message.id).await;
        let logs = logs_of(&f, &message.id).await;
        let status = if i == 2 { "queued" } else { "sent" };
        assert_eq!(stored.status, status, "{}", message.recipient_id);
        assert_eq!(logs.len(), usize::from(i != 2), "{}", message.recipient_id);
    }
    // Only the stale job is left, for the worker that holds it.
    assert_eq!(f.store.pending_job_count().await.expect("count"), 1);
}

async fn failed_delivery_batch_is_redone_one_by_one(f: Fixture) {
    let claimed = claimed_deliveries(&f, &["a", "b", "c"]).await;
    let log = |message: &NewMessage, log_id: &str| DeliveryLog {
        id: log_id.to_string(),
        environment_id: f.env.clone(),
        message_id: message.id.clone(),
        service_name: "smtp".into(),
        request: json!({}),
        response: json!({}),
        inserted_at: 40,
    };
    let commit = |message: &NewMessage, logs: Vec<DeliveryLog>| DeliveryCommit {
        message_id: message.id.clone(),
        status: "sent".into(),
        logs,
        event_type: "message.sent".into(),
        event_data: json!({}),
        retry_at: None,
        provider_message_id: None,
        now: 40,
    };
    // c logs twice under one id: written together the batch fails, and one by one only c
    // may fail.
    let twice = hark_core::new_id();
    let batch: Vec<(ClaimedJob, DeliveryCommit)> = claimed
        .iter()
        .enumerate()
        .map(|(i, (job, message))| {
            let logs = if i == 2 {
                vec![log(message, &twice), log(message, &twice)]
            } else {
                vec![log(message, &hark_core::new_id())]
            };
            (job.clone(), commit(message, logs))
        })
        .collect();
    let outcomes = f.store.commit_deliveries(&batch).await.expect("batch");
    assert!(matches!(outcomes[0], Ok(true)), "{outcomes:?}");
    assert!(matches!(outcomes[1], Ok(true)), "{outcomes:?}");
    assert!(outcomes[2].is_err(), "{outcomes:?}");
    for ((_, message), status) in claimed.iter().zip(["sent", "sent", "queued"]) {
        let stored = stored_message(&f, &message.id).await;
        assert_eq!(stored.status, status, "{}", message.recipient_id);
    }
    // c's job is still there to be retried; a's and b's are done.
    assert_eq!(f.store.pending_job_count().await.expect("count"), 1);
}

/// Knock's listings take the `workflow_run_id` a trigger answers with; its runs and their
/// messages are found through it, and nothing of another trigger's.
async fn messages_and_runs_are_listed_by_their_trigger(f: Fixture) {
    let first = plain_trigger(&f.env, &["a", "b", "c"], 10);
    let other = plain_trigger(&f.env, &["a", "d"], 10);
    for t in [&first, &other] {
        f.store.create_trigger(t).await.expect("trigger");
    }
    let jobs = f.store.claim_due_jobs(10, 10, 1_000).await.expect("claim");
    assert_eq!(jobs.len(), 5);
    commit_messages(&f, &jobs, |run| {
        let mut message = feed_message(&f.env, &run.id, &run.recipient_id, "s1");
        message.workflow_run_id = run.workflow_run_id.clone();
        message
    })
    .await;

    let by_trigger = |workflow_run_id: &str| MessageFilter {
        workflow_run_id: Some(workflow_run_id.to_string()),
        ..MessageFilter::default()
    };
    let recipients_of = |messages: &[MessageRecord]| {
        let mut ids: Vec<String> = messages.iter().map(|m| m.recipient_id.clone()).collect();
        ids.sort();
        ids
    };
    let listed = f
        .store
        .list_messages(&f.env, &by_trigger(&first.workflow_run_id), &page(50))
        .await
        .expect("list");
    assert_eq!(recipients_of(&listed.entries), ["a", "b", "c"]);
    assert!(listed
        .entries
        .iter()
        .all(|m| m.workflow_run_id == first.workflow_run_id));
    // Paged newest first like every listing: two, then the one left.
    let head = f
        .store
        .list_messages(&f.env, &by_trigger(&first.workflow_run_id), &page(2))
        .await
        .expect("first page");
    let after = head.after.clone().expect("a next page");
    let tail = f
        .store
        .list_messages(
            &f.env,
            &by_trigger(&first.workflow_run_id),
            &PageRequest {
                after: Some(after),
                before: None,
                page_size: 2,
            },
        )
        .await
        .expect("second page");
    let mut paged: Vec<MessageRecord> = head.entries;
    paged.extend(tail.entries);
    assert_eq!(recipients_of(&paged), ["a", "b", "c"]);
    // Combined with a recipient, and for a trigger that made no messages.
    let only_a = MessageFilter {
        recipient_id: Some("a".into()),
        ..by_trigger(&other.workflow_run_id)
    };
    let listed = f
        .store
        .list_messages(&f.env, &only_a, &page(50))
        .await
        .expect("list");
    assert_eq!(recipients_of(&listed.entries), ["a"]);
    assert_eq!(listed.entries[0].workflow_run_id, other.workflow_run_id);
    let none = f
        .store
        .list_messages(&f.env, &by_trigger(&hark_core::new_id()), &page(50))
        .await
        .expect("list");
    assert!(none.entries.is_empty());
    let counts = f
        .store
        .count_feed(&f.env, &by_trigger(&other.workflow_run_id))
        .await
        .expect("count");
    assert_eq!(counts.total, 2);

    let run_filter = RunFilter {
        workflow_run_id: Some(other.workflow_run_id.clone()),
        ..RunFilter::default()
    };
    let listed = f
        .store
        .list_recipient_runs(&f.env, &run_filter, &page(50))
        .await
        .expect("runs");
    let mut recipients: Vec<String> = listed
        .entries
        .iter()
        .map(|r| r.recipient_id.clone())
        .collect();
    recipients.sort();
    assert_eq!(recipients, ["a", "d"]);
}

async fn merging_users_moves_the_users_messages_but_not_an_objects(f: Fixture) {
    for id in ["x", "z"] {
        f.store
            .upsert_user(&f.env, id, &props(json!({"name": id})), 5)
            .await
            .expect("user");
    }
    f.store
        .create_trigger(&plain_trigger(&f.env, &["x", "y"], 10))
        .await
        .expect("trigger");
    let jobs = f.store.claim_due_jobs(10, 10, 1_000).await.expect("claim");
    // User x's run messages user x; user y's run messages the object `projects/x`, which
    // shares the user's id.
    commit_messages(&f, &jobs, |run| {
        let mut message = feed_message(&f.env, &run.id, "x", "s1");
        if run.recipient_id == "y" {
            message.recipient_collection = Some("projects".into());
        }
        message
    })
    .await;

    f.store
        .merge_users(&f.env, "z", "x", 30)
        .await
        .expect("merge")
        .expect("both exist");
    let messages_of = |recipient: &str, collection: Option<&str>| MessageFilter {
        recipient_id: Some(recipient.into()),
        recipient_collection: collection.map(String::from),
        ..MessageFilter::default()
    };
    let listed = |filter: MessageFilter| {
        let store = f.store.clone();
        let env = f.env.clone();
        async move {
            store
                .list_messages(&env, &filter, &page(50))
                .await
                .expect("list")
                .entries
        }
    };
    let users = listed(messages_of("z", None)).await;
    assert_eq!(users.len(), 1);
    assert!(listed(messages_of("x", None)).await.is_empty());
    let objects = listed(messages_of("x", Some("projects"))).await;
    assert_eq!(objects.len(), 1);
    assert!(listed(messages_of("z", Some("projects"))).await.is_empty());
    // Each message's events follow it, or stay with it.
    for (message, recipient) in [(&users[0], "z"), (&objects[0], "x")] {
        let events = f
            .store
            .message_events(&f.env, &message.id, &page(50))
            .await
            .expect("events")
            .entries;
        assert!(!events.is_empty());
        assert!(
            events.iter().all(|e| e.recipient_id == recipient),
            "{events:?}"
        );
    }
    // The user's run moved too; the run that messaged the object is user y's, untouched.
    let mut run_recipients: Vec<String> = runs_of(&f)
        .await
        .into_iter()
        .map(|r| r.recipient_id)
        .collect();
    run_recipients.sort();
    assert_eq!(run_recipients, ["y", "z"]);
}

async fn upcoming_due_times_are_distinct_and_in_order(f: Fixture) {
    // Three jobs due at 10; one of them then claimed with a lease to 1,010.
    f.store
        .create_trigger(&plain_trigger(&f.env, &["a", "b", "c"], 10))
        .await
        .expect("trigger");
    let claimed = f.store.claim_due_jobs(10, 1, 1_000).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    let upcoming = |now, limit| f.store.upcoming_due_times(now, limit);
    assert_eq!(upcoming(5, 10).await.expect("times"), [10, 1_010]);
    assert_eq!(upcoming(5, 1).await.expect("times"), [10]);
    // Only instants after `now`: due jobs are the claim's business.
    assert_eq!(upcoming(10, 10).await.expect("times"), [1_010]);
    assert!(upcoming(1_010, 10).await.expect("times").is_empty());
}

/// Realtime feeds hear of each new in-app message of a user once, after its commit: not
/// of other channels' messages, an object's, or a replayed step's.
async fn new_feed_messages_are_announced_once(f: Fixture) {
    let jobs = claim_one_run_each(&f, &["a", "b", "c", "d"]).await;
    let job_of = |recipient: &str| jobs[recipient].clone();
    let (a, b, c, d) = (job_of("a"), job_of("b"), job_of("c"), job_of("d"));
    let hub = f.store.feed_events();
    let mut watcher = hub.watcher();
    // Every feed a loosened announcement could reach: each recipient's in-app feed, and
    // b's email channel.
    for (channel, recipient) in [
        ("in-app-feed", "a"),
        ("in-app-feed", "b"),
        ("email", "b"),
        ("in-app-feed", "c"),
        ("in-app-feed", "d"),
    ] {
        watcher.watch(feed_events::FeedKey {
            environment_id: f.env.clone(),
            channel_key: channel.into(),
            recipient_id: recipient.into(),
        });
    }
    hub.ready().await;
    let step = |job: &ClaimedJob, message: NewMessage| StepCommit {
        run_id: job.ref_id.clone(),
        next_cursor: 1,
        message: Some(message),
        now: 20,
        ..StepCommit::default()
    };
    // One step on its own, then a batch.
    let d_message = feed_message(&f.env, &d.ref_id, "d", "s1");
    assert!(f
        .store
        .commit_step(&d, &step(&d, d_message.clone()))
        .await
        .expect("d"));
    let a_message = feed_message(&f.env, &a.ref_id, "a", "s1");
    let mut b_email = feed_message(&f.env, &b.ref_id, "b", "s1");
    b_email.channel_key = "email".into();
    b_email.channel_type = "email".into();
    let mut c_object = feed_message(&f.env, &c.ref_id, "c", "s1");
    c_object.recipient_collection = Some("projects".into());
    let d_replay = feed_message(&f.env, &d.ref_id, "d", "s1");
    let batch = vec![
        (a.clone(), step(&a, a_message.clone())),
        (b.clone(), step(&b, b_email)),
        (c.clone(), step(&c, c_object)),
        (d.clone(), step(&d, d_replay)),
    ];
    let outcomes = f.store.commit_steps(&batch).await.expect("batch");
    assert!(outcomes.into_iter().all(|o| o.expect("ok")));
    let mut heard = Vec::new();
    while let Ok(watched) =
        tokio::time::timeout(std::time::Duration::from_secs(1), watcher.recv()).await
    {
        match watched {
            feed_events::Watched::Event(event) => {
                heard.push((event.recipient_id, event.message_id))
            }
            feed_events::Watched::Lagged => panic!("five events lagged"),
        }
    }
    assert_eq!(
        heard,
        vec![
            ("d".to_string(), d_message.id.clone()),
            ("a".to_string(), a_message.id.clone()),
        ]
    );
}
