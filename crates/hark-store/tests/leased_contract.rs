//! Jobs written leased to their writer (`JobLease`): triggers and step commits that carry
//! a lease write their jobs held, return them as the writer holds them, keep them from
//! claims until the lease expires, and fence them like claimed jobs; on both backends.

mod common;

use common::*;
use hark_store::*;
use serde_json::json;

contract!(
    leased_triggers_are_held_by_their_writer,
    leased_triggers_outside_the_plain_batch,
    leased_delivery_jobs_are_held_by_their_writer,
    held_runs_are_handed_over_as_the_store_reads_them,
);

const NOW: i64 = 10;
const EXPIRES: i64 = 1_010;

fn lease(name: &str) -> JobLease {
    JobLease {
        lease: name.to_string(),
        expires_at: EXPIRES,
    }
}

fn trigger(env: &str, recipients: &[&str], lease: Option<JobLease>) -> TriggerWrite {
    TriggerWrite {
        environment_id: env.to_string(),
        workflow_key: "w".into(),
        workflow_version: 1,
        workflow_run_id: hark_core::new_id(),
        actor: None,
        tenant: None,
        data: json!({}),
        cancellation_key: None,
        recipients: recipients.iter().map(|s| s.to_string()).collect(),
        inline_users: Vec::new(),
        inline_objects: Vec::new(),
        inline_documents: Vec::new(),
        fan_outs: Vec::new(),
        idempotency: None,
        state: json!({}),
        frequency: TriggerFrequency::EveryTrigger,
        lease,
        now: NOW,
    }
}

fn accepted(outcome: &StoreResult<Written<TriggerOutcome>>) -> &[ClaimedJob] {
    let written = outcome.as_ref().expect("trigger written");
    assert_eq!(written.outcome, TriggerOutcome::Accepted);
    &written.leased_jobs
}

/// The recipient of the run each job advances, sorted.
async fn recipients_of(f: &Fixture, jobs: &[ClaimedJob]) -> Vec<String> {
    let ids: Vec<String> = jobs.iter().map(|j| j.ref_id.clone()).collect();
    let mut recipients: Vec<String> = f
        .store
        .load_runs_for_jobs(&ids)
        .await
        .expect("runs")
        .into_iter()
        .map(|r| r.recipient_id)
        .collect();
    recipients.sort();
    recipients
}

fn finishing_step(job: &ClaimedJob) -> StepCommit {
    StepCommit {
        run_id: job.ref_id.clone(),
        next_cursor: 1,
        finished: Some(RunStatus::Completed),
        now: 20,
        ..StepCommit::default()
    }
}

async fn leased_triggers_are_held_by_their_writer(f: Fixture) {
    // Written together (three plain triggers), two of them leased.
    let outcomes = f
        .store
        .create_triggers_with_jobs(&[
            trigger(&f.env, &["a1", "a2"], Some(lease("L1"))),
            trigger(&f.env, &["b"], None),
            trigger(&f.env, &["c"], Some(lease("L1"))),
        ])
        .await
        .expect("batch");
    let a = accepted(&outcomes[0]).to_vec();
    assert!(accepted(&outcomes[1]).is_empty(), "no lease, no held jobs");
    let c = accepted(&outcomes[2]).to_vec();
    assert_eq!(recipients_of(&f, &a).await, ["a1", "a2"]);
    assert_eq!(recipients_of(&f, &c).await, ["c"]);
    for job in a.iter().chain(&c) {
        assert_eq!(job.kind, JobKind::AdvanceRun);
        assert_eq!(job.lease, "L1");
        assert_eq!(
            job.attempts, 1,
            "held from the start counts as claimed once"
        );
        assert_eq!(job.environment_id, f.env);
    }
    // A single trigger goes its own way through the store; it is leased all the same.
    let single = f
        .store
        .create_triggers_with_jobs(&[trigger(&f.env, &["d"], Some(lease("L2")))])
        .await
        .expect("single");
    let d = accepted(&single[0]).to_vec();
    assert_eq!(recipients_of(&f, &d).await, ["d"]);
    assert_eq!(f.store.pending_job_count().await.expect("count"), 5);

    // Claims see only the job nobody holds.
    let claimed = f
        .store
        .claim_due_jobs(NOW, 100, 10_000)
        .await
        .expect("claim");
    assert_eq!(recipients_of(&f, &claimed).await, ["b"]);

    // The writer's lease fences like a claim's: a wrong lease writes nothing.
    let mut stranger = a[0].clone();
    stranger.lease = "someone else".into();
    assert!(!f
        .store
        .commit_step(&stranger, &finishing_step(&a[0]))
        .await
        .expect("stale"));
    assert!(f
        .store
        .commit_step(&a[0], &finishing_step(&a[0]))
        .await
        .expect("held"));

    // Until the lease expires nobody else takes the rest; then anyone may.
    let early = f
        .store
        .claim_due_jobs(EXPIRES - 1, 100, 1_000)
        .await
        .expect("claim");
    assert!(
        early.is_empty(),
        "held jobs stay with their writer: {early:?}"
    );
    let taken_over = f
        .store
        .claim_due_jobs(EXPIRES, 100, 1_000)
        .await
        .expect("claim");
    assert_eq!(recipients_of(&f, &taken_over).await, ["a2", "c", "d"]);
    assert!(taken_over.iter().all(|j| j.attempts == 2));
    // The writer's late result is refused once another worker took the job over.
    let late = f
        .store
        .commit_step(&c[0], &finishing_step(&c[0]))
        .await
        .expect("late");
    assert!(!late, "a taken-over job refuses its first holder");
}

async fn leased_triggers_outside_the_plain_batch(f: Fixture) {
    // An idempotency key makes a trigger go through the per-trigger statements.
    let mut keyed = trigger(&f.env, &["k"], Some(lease("L3")));
    keyed.idempotency = Some(IdempotencyClaim {
        key: "idem".into(),
        request_hash: "h".into(),
        response: json!({"workflow_run_id": "first"}),
        not_before: 0,
    });
    let plain = trigger(&f.env, &["p1", "p2"], Some(lease("L3")));
    let outcomes = f
        .store
        .create_triggers_with_jobs(&[keyed.clone(), plain])
        .await
        .expect("batch");
    assert_eq!(recipients_of(&f, accepted(&outcomes[0])).await, ["k"]);
    assert_eq!(
        recipients_of(&f, accepted(&outcomes[1])).await,
        ["p1", "p2"]
    );

    // A replay writes no run, so it holds no job.
    let mut replay = keyed;
    replay.workflow_run_id = hark_core::new_id();
    let outcomes = f
        .store
        .create_triggers_with_jobs(&[replay])
        .await
        .expect("replay");
    let written = outcomes[0].as_ref().expect("replayed");
    assert!(matches!(written.outcome, TriggerOutcome::Replayed(_)));
    assert!(written.leased_jobs.is_empty());

    // A batch that fails together is redone trigger by trigger; the jobs returned are
    // those that were committed.
    let first = trigger(&f.env, &["x"], Some(lease("L4")));
    let mut duplicate = trigger(&f.env, &["y"], Some(lease("L4")));
    duplicate.workflow_run_id = first.workflow_run_id.clone();
    let outcomes = f
        .store
        .create_triggers_with_jobs(&[first, duplicate])
        .await
        .expect("batch");
    assert_eq!(recipients_of(&f, accepted(&outcomes[0])).await, ["x"]);
    assert!(outcomes[1].is_err());
    assert_eq!(f.store.pending_job_count().await.expect("count"), 4);
}

fn email(env: &str, run_id: &str, recipient: &str) -> NewMessage {
    NewMessage {
        id: hark_core::new_id(),
        environment_id: env.to_string(),
        recipient_run_id: run_id.to_string(),
        workflow_run_id: "wr".into(),
        step_ref: "email".into(),
        workflow_key: "w".into(),
        workflow_version: 1,
        categories: Vec::new(),
        channel_key: "email".into(),
        channel_type: "email".into(),
        recipient_id: recipient.to_string(),
        recipient_collection: None,
        actors: Vec::new(),
        tenant: None,
        status: "queued".into(),
        content: json!({}),
        data: json!({}),
        batch: None,
        now: 20,
    }
}

/// A step that creates an email to deliver; the run goes on (its job stays).
fn emailing_step(job: &ClaimedJob, message: &NewMessage, lease: Option<JobLease>) -> StepCommit {
    StepCommit {
        run_id: job.ref_id.clone(),
        next_cursor: 1,
        message: Some(message.clone()),
        enqueue_delivery: true,
        delivery_lease: lease,
        now: 20,
        ..StepCommit::default()
    }
}

async fn leased_delivery_jobs_are_held_by_their_writer(f: Fixture) {
    let outcomes = f
        .store
        .create_triggers_with_jobs(&[
            trigger(&f.env, &["a"], Some(lease("T"))),
            trigger(&f.env, &["b"], Some(lease("T"))),
            trigger(&f.env, &["c"], Some(lease("T"))),
        ])
        .await
        .expect("triggers");
    let advances: Vec<ClaimedJob> = outcomes.iter().flat_map(|o| accepted(o).to_vec()).collect();
    let runs = f
        .store
        .load_runs_for_jobs(
            &advances
                .iter()
                .map(|j| j.ref_id.clone())
                .collect::<Vec<_>>(),
        )
        .await
        .expect("runs");
    let recipient = |job: &ClaimedJob| {
        runs.iter()
            .find(|r| r.id == job.ref_id)
            .map(|r| r.recipient_id.clone())
            .expect("run of job")
    };
    let mut messages: Vec<NewMessage> = advances
        .iter()
        .map(|j| email(&f.env, &j.ref_id, &recipient(j)))
        .collect();
    // Every column a delivery reads, carried with its job as a read returns it.
    messages[0].categories = vec!["billing".into(), "é".into()];
    messages[0].actors = vec!["boss".into()];
    messages[0].tenant = Some("acme".into());
    messages[0].content = json!({"subject": "Hi ✓", "body": "<p>1.5</p>", "n": 1.25});
    messages[0].data = json!({"nested": {"list": [1, null, true]}});
    messages[0].batch = Some(json!({"total_activities": 2}));

    // Written together: a's and b's deliveries leased, c's not.
    let batch: Vec<(ClaimedJob, StepCommit)> = advances
        .iter()
        .zip(&messages)
        .enumerate()
        .map(|(i, (job, m))| {
            let lease = (i < 2).then(|| lease("D"));
            (job.clone(), emailing_step(job, m, lease))
        })
        .collect();
    let written = f.store.commit_steps_with_jobs(&batch).await.expect("steps");
    for (i, w) in written.iter().enumerate() {
        let w = w.as_ref().expect("step written");
        assert!(w.outcome);
        if i < 2 {
            assert_eq!(w.leased_jobs.len(), 1);
            let job = &w.leased_jobs[0];
            assert_eq!(job.kind, JobKind::DeliverMessage);
            assert_eq!(job.ref_id, messages[i].id);
            assert_eq!((job.lease.as_str(), job.attempts), ("D", 1));
            let read = f
                .store
                .load_messages_for_jobs(std::slice::from_ref(&job.ref_id))
                .await
                .expect("read");
            assert_eq!(
                read.iter().collect::<Vec<_>>(),
                job.written_message()
                    .map(|message| message.as_ref())
                    .into_iter()
                    .collect::<Vec<_>>(),
                "the message comes with its job as a read returns it"
            );
        } else {
            assert!(w.leased_jobs.is_empty());
        }
    }
    let claimed = f.store.claim_due_jobs(30, 100, 1_000).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|j| &j.ref_id).collect::<Vec<_>>(),
        [&messages[2].id],
        "only the delivery nobody holds is claimed"
    );

    // A held delivery commits under its writer's lease.
    let held = written[0].as_ref().expect("a").leased_jobs[0].clone();
    let delivered = DeliveryCommit {
        message_id: messages[0].id.clone(),
        status: "sent".into(),
        logs: Vec::new(),
        event_type: "message.sent".into(),
        event_data: json!({}),
        retry_at: None,
        provider_message_id: None,
        now: 40,
    };
    assert!(f
        .store
        .commit_delivery(&held, &delivered)
        .await
        .expect("delivery"));

    // The same step again (a replay with a fresh message id) creates no message, so no
    // delivery job: nothing is handed to the writer.
    let replayed = emailing_step(
        &advances[1],
        &email(&f.env, &advances[1].ref_id, "b"),
        Some(lease("D2")),
    );
    let again = f
        .store
        .commit_steps_with_jobs(&[(advances[1].clone(), replayed)])
        .await
        .expect("replay");
    let again = again[0].as_ref().expect("replay written");
    assert!(again.outcome);
    assert!(again.leased_jobs.is_empty(), "{:?}", again.leased_jobs);
}

/// The run a held job carries is the run a read returns, field for field, so the worker
/// it is handed to need not read it; except where a cancel that arrived first may have
/// cancelled it in the same commit.
async fn held_runs_are_handed_over_as_the_store_reads_them(f: Fixture) {
    let detailed = |recipients: &[&str]| {
        let mut t = trigger(&f.env, recipients, Some(lease("L5")));
        t.actor = Some("boss".into());
        t.tenant = Some("acme".into());
        t.data = json!({"n": 1.25, "big": 12345678901234_i64, "text": "é ✓", "nested": {"list": [1, null, true]}});
        t.state = json!({"settings": {"delay": 5}});
        t
    };
    let mut cancellable = detailed(&["k"]);
    cancellable.cancellation_key = Some("order-1".into());
    let mut idempotent = detailed(&["i"]);
    idempotent.idempotency = Some(IdempotencyClaim {
        key: "idem-5".into(),
        request_hash: "h".into(),
        response: json!({"workflow_run_id": "first"}),
        not_before: 0,
    });
    let outcomes = f
        .store
        .create_triggers_with_jobs(&[detailed(&["a", "b"]), cancellable, idempotent])
        .await
        .expect("batch");
    let carried: Vec<&ClaimedJob> = outcomes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .flat_map(|(_, o)| accepted(o))
        .collect();
    assert_eq!(carried.len(), 3);
    for job in carried {
        let written = job.written_run().expect("the run comes with its job");
        let read = f
            .store
            .load_runs_for_jobs(std::slice::from_ref(&job.ref_id))
            .await
            .expect("read");
        assert_eq!(read, vec![(**written).clone()]);
    }
    let keyed = accepted(&outcomes[1]);
    assert_eq!(keyed.len(), 1);
    assert!(
        keyed[0].written.is_none(),
        "a run a cancel may have cancelled is read by its worker"
    );
}
