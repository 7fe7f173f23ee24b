//! The contract for batches, throttles and waits, run against every backend.

mod common;

use std::sync::Arc;

use common::*;
use hark_store::*;
use serde_json::json;

contract!(
    batch_join_and_close_are_fenced_and_exactly_once,
    throttle_counts_concurrent_hits_exactly,
    message_events_wake_waiting_runs,
    cancel_races_step_commits_without_deadlock,
);

const WINDOW: i64 = 1_000;

fn trigger(env: &str, recipient: &str, now: i64) -> TriggerWrite {
    TriggerWrite {
        environment_id: env.to_string(),
        workflow_key: "w".into(),
        workflow_version: 1,
        workflow_run_id: hark_core::new_id(),
        actor: Some(format!("actor-{now}")),
        tenant: None,
        data: json!({"n": now}),
        cancellation_key: None,
        recipients: vec![recipient.to_string()],
        inline_users: vec![],
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

fn join(env: &str, job: &ClaimedJob, now: i64) -> BatchJoin {
    BatchJoin {
        run_id: job.ref_id.clone(),
        environment_id: env.to_string(),
        batch_key: "w|step:b|a".into(),
        workflow_key: "w".into(),
        step_ref: "b".into(),
        settings: json!({"step_ref": "b", "render_limit": 10}),
        closes_at: now + WINDOW,
        slide_to: None,
        extension_limit: None,
        items_max: None,
        flush_leading: false,
        flush_state: json!({}),
        actor: Some(format!("actor-{now}")),
        data: json!({"n": now}),
        next_cursor: 1,
        events: vec![],
        now,
    }
}

async fn advance_jobs(f: &Fixture, now: i64) -> Vec<ClaimedJob> {
    f.store
        .claim_due_jobs(now, 100, 10_000)
        .await
        .expect("claim")
        .into_iter()
        .filter(|j| j.kind == JobKind::AdvanceRun)
        .collect()
}

async fn batch_join_and_close_are_fenced_and_exactly_once(f: Fixture) {
    for now in [10, 11, 12] {
        f.store
            .create_trigger(&trigger(&f.env, "a", now))
            .await
            .expect("trigger");
    }
    let jobs = advance_jobs(&f, 20).await;
    assert_eq!(jobs.len(), 3);
    let mut outcomes = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let mut arrival = join(&f.env, job, 20);
        arrival.actor = Some(format!("actor-{i}"));
        arrival.data = json!({"n": 10 + i});
        let outcome = f
            .store
            .join_batch(job, &arrival)
            .await
            .expect("join")
            .expect("lease held");
        outcomes.push(outcome);
    }
    assert!(matches!(
        outcomes[0],
        BatchJoined::Opened { flushed: false, .. }
    ));
    assert!(outcomes[1..]
        .iter()
        .all(|o| matches!(o, BatchJoined::Joined { .. })));
    // A stale worker can't join: its lease is gone with the job.
    assert!(f
        .store
        .join_batch(&jobs[0], &join(&f.env, &jobs[0], 21))
        .await
        .expect("stale join")
        .is_none());
    assert_eq!(
        f.store.pending_job_count().await.expect("count"),
        1,
        "only the close job"
    );

    // The close job falls due; the first worker "crashes" holding it.
    let crashed = f
        .store
        .claim_due_jobs(20 + WINDOW, 10, 100)
        .await
        .expect("claim close")
        .remove(0);
    assert_eq!(crashed.kind, JobKind::CloseBatch);
    let taker = f
        .store
        .claim_due_jobs(20 + WINDOW + 200, 10, 100)
        .await
        .expect("reclaim")
        .remove(0);
    assert!(f
        .store
        .close_batch(&crashed, 20 + WINDOW + 201)
        .await
        .expect("stale close")
        .is_none());
    let closed = f
        .store
        .close_batch(&taker, 20 + WINDOW + 201)
        .await
        .expect("close")
        .expect("lease held");
    let BatchClosed::Closed {
        continuation_run_id,
        total_activities,
    } = closed
    else {
        panic!("closed expected, got {closed:?}");
    };
    assert_eq!(total_activities, 3);
    assert_eq!(continuation_run_id, jobs[0].ref_id);
    // Repeating the close finds nothing to do.
    assert!(f
        .store
        .close_batch(&taker, 20 + WINDOW + 202)
        .await
        .expect("again")
        .is_none());
    let run = f
        .store
        .get_recipient_run(&f.env, &continuation_run_id)
        .await
        .expect("get")
        .expect("run");
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.state["batch"]["total_activities"], 3);
    assert_eq!(run.state["batch"]["total_actors"], 3);
    assert_eq!(
        run.data,
        json!({"n": 12}),
        "merged scalars, the latest wins"
    );
    let next = advance_jobs(&f, 20 + WINDOW + 300).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].ref_id, continuation_run_id);
    for job in &jobs[1..] {
        let other = f
            .store
            .get_recipient_run(&f.env, &job.ref_id)
            .await
            .expect("get")
            .expect("run");
        assert_eq!(other.status, RunStatus::Completed);
    }
}

async fn throttle_counts_concurrent_hits_exactly(f: Fixture) {
    for now in 0..12 {
        f.store
            .create_trigger(&trigger(&f.env, "a", now))
            .await
            .expect("trigger");
    }
    let jobs = advance_jobs(&f, 100).await;
    assert_eq!(jobs.len(), 12);
    let store: Arc<dyn Store> = f.store.clone();
    let mut tasks = Vec::new();
    for job in jobs {
        let store = store.clone();
        let env = f.env.clone();
        tasks.push(tokio::spawn(async move {
            let hit = ThrottleHit {
                run_id: job.ref_id.clone(),
                environment_id: env,
                throttle_key: "w|gate|a".into(),
                limit: 3,
                window_end: 1_000,
                next_cursor: 1,
                events_if_passed: vec![],
                events_if_throttled: vec![],
                now: 100,
            };
            store.hit_throttle(&job, &hit).await
        }));
    }
    let mut passed = 0;
    for t in tasks {
        if t.await.expect("join").expect("hit").expect("lease") {
            passed += 1;
        }
    }
    assert_eq!(passed, 3);
}

async fn message_events_wake_waiting_runs(f: Fixture) {
    f.store
        .create_trigger(&trigger(&f.env, "a", 0))
        .await
        .expect("trigger");
    let job = advance_jobs(&f, 0).await.remove(0);
    let message = NewMessage {
        id: hark_core::new_id(),
        environment_id: f.env.clone(),
        recipient_run_id: job.ref_id.clone(),
        workflow_run_id: "wr".into(),
        step_ref: "feed".into(),
        workflow_key: "w".into(),
        workflow_version: 1,
        categories: vec![],
        channel_key: "in-app-feed".into(),
        channel_type: "in_app_feed".into(),
        recipient_id: "a".into(),
        recipient_collection: None,
        actors: vec![],
        tenant: None,
        status: "delivered".into(),
        content: json!({}),
        data: json!({}),
        batch: None,
        now: 1,
    };
    let wait = NewWait {
        id: hark_core::new_id(),
        environment_id: f.env.clone(),
        recipient_id: "a".into(),
        event_type: "message".into(),
        event_key: "read".into(),
        source_key: "w".into(),
        expires_at: 10_000,
    };
    let commit = StepCommit {
        run_id: job.ref_id.clone(),
        next_cursor: 1,
        message: Some(message.clone()),
        new_wait: Some(wait.clone()),
        resume_at: Some(10_000),
        now: 1,
        ..StepCommit::default()
    };
    assert!(f.store.commit_step(&job, &commit).await.expect("commit"));
    assert!(
        advance_jobs(&f, 100).await.is_empty(),
        "asleep until expiry"
    );
    f.store
        .set_engagement(
            &f.env,
            std::slice::from_ref(&message.id),
            Engagement::Seen,
            50,
        )
        .await
        .expect("seen");
    assert!(
        advance_jobs(&f, 100).await.is_empty(),
        "seen is not awaited"
    );
    f.store
        .set_engagement(
            &f.env,
            std::slice::from_ref(&message.id),
            Engagement::Read,
            60,
        )
        .await
        .expect("read");
    let woken = advance_jobs(&f, 100).await;
    assert_eq!(woken.len(), 1, "read wakes the run");
    let candidates = f.store.wait_candidates(&wait.id).await.expect("candidates");
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0].payload["message_id"], message.id.as_str());
    assert_eq!(candidates[0].payload["event_type"], "message.read");
}

/// A cancel that lands while workers commit steps of the same runs must neither fail
/// nor let a step through after it: both take job, then run.
async fn cancel_races_step_commits_without_deadlock(f: Fixture) {
    for round in 0..5 {
        let mut t = trigger(&f.env, "a", round);
        t.recipients = (0..40).map(|i| format!("r{round}-{i}")).collect();
        t.cancellation_key = Some(format!("ck{round}"));
        f.store.create_trigger(&t).await.expect("trigger");
        let jobs = advance_jobs(&f, round).await;
        assert_eq!(jobs.len(), 40);
        let mut tasks = Vec::new();
        for job in jobs {
            let store = f.store.clone();
            tasks.push(tokio::spawn(async move {
                let commit = StepCommit {
                    run_id: job.ref_id.clone(),
                    next_cursor: 1,
                    resume_at: Some(1_000_000),
                    now: round,
                    ..StepCommit::default()
                };
                store.commit_step(&job, &commit).await.map(|_| ())
            }));
        }
        let store = f.store.clone();
        let env = f.env.clone();
        let cancel = tokio::spawn(async move {
            store
                .cancel_runs(&env, "w", &format!("ck{round}"), None, round)
                .await
                .map(|_| ())
        });
        for task in tasks {
            task.await.expect("join").expect("step commit");
        }
        cancel.await.expect("join").expect("cancel");
        // Whatever the interleaving, the cancel wins: no run of the round stays live.
        let live = f
            .store
            .list_recipient_runs(
                &f.env,
                &RunFilter {
                    workflow_key: Some("w".into()),
                    status: vec!["queued".into(), "processing".into(), "paused".into()],
                    ..RunFilter::default()
                },
                &first_page(50),
            )
            .await
            .expect("runs");
        assert!(
            live.entries.is_empty(),
            "round {round}: {:?}",
            live.entries.len()
        );
    }
    assert_eq!(f.store.pending_job_count().await.expect("jobs"), 0);
}
