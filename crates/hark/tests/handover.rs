//! A node with workers runs the work it creates itself: the runs of the triggers it
//! accepts and the deliveries its steps create are written leased to its workers and
//! handed over after the commit, so none of them is claimed from the job table. The real
//! binary on both stores, with polling practically off; and the worker slots in process:
//! reservations, and a hand-over that came too late. Also with polling off: a run waiting
//! for an event goes on as soon as the commit that brings the event, since no finished
//! job triggers a claim any more; and a delay or a batch window ends on time, woken by
//! the node's own timer.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hark_channels::testing::HttpSink;
use hark_core::Clock;
use hark_store::handoff::LocalWorkers;
use hark_store::{TriggerFrequency, TriggerWrite};
use serde_json::{json, Value};
use support::process::*;
use support::{feed_step, Backend, TestServer};
use tokio::sync::watch;

const TRIGGERS: usize = 20;

/// A counter's value in Prometheus text (absent: never incremented).
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A server whose workers practically never poll: whatever runs was handed over or woken.
async fn serve_without_polling(postgres: bool) -> (Target, Served) {
    let t = target_with_engine(postgres, "poll_interval_ms = 3600000", "").await;
    let served = serve_with_credentials(&t, "serve.log").await;
    (t, served)
}

/// [`serve_without_polling`], with these workflows committed, and a client.
async fn serve_workflows_without_polling(
    postgres: bool,
    workflows: &[(&str, Value)],
) -> (Target, Served, reqwest::Client) {
    let (t, served) = serve_without_polling(postgres).await;
    let http = reqwest::Client::new();
    for (key, steps) in workflows {
        put_workflow(&http, &served.base, &served.token, key, steps.clone()).await;
    }
    (t, served, http)
}

/// Triggers workflow `key` for `recipients` and asserts it was accepted.
async fn trigger(http: &reqwest::Client, served: &Served, key: &str, recipients: Value) {
    let resp = http
        .post(format!("{}/v1/workflows/{key}/trigger", served.base))
        .bearer_auth(&served.sk)
        .json(&json!({ "recipients": recipients }))
        .send()
        .await
        .expect("trigger");
    assert!(
        resp.status().is_success(),
        "trigger {key} for {recipients}: {}",
        resp.status()
    );
}

async fn accepted_work_runs_without_claims(postgres: bool) {
    let sink = HttpSink::start().await.expect("sink");
    // An hour between polls: only a claim at start, and claims on wake-ups, could pick
    // jobs up besides the hand-over.
    let t = target_with_config(
        postgres,
        "poll_interval_ms = 3600000\n\n[outbound]\nallow_private_networks = true\n\n\
         [[channels]]\nkey = \"webhook\"\ntype = \"http\"\nprovider = \"webhook\"\n",
    )
    .await;
    let Served {
        base,
        sk,
        token,
        mut server,
        ..
    } = serve_with_credentials(&t, "serve.log").await;
    let http = reqwest::Client::new();
    put_workflow(
        &http,
        &base,
        &token,
        "local",
        json!([
            {"type": "channel", "ref": "feed", "channel_key": "in-app-feed",
             "template": {"markdown_body": "hi {{ recipient.id }}"}},
            {"type": "channel", "ref": "hook", "channel_key": "webhook",
             "template": {"method": "post", "url": sink.url("/in"),
                          "body": "{\"user\": \"{{ recipient.id }}\"}"}}
        ]),
    )
    .await;

    // One trigger at a time, each waited for, so the workers always have room and every
    // job is handed over (with no room, a job is written due and claimed instead).
    for i in 0..TRIGGERS {
        let resp = http
            .post(format!("{base}/v1/workflows/local/trigger"))
            .bearer_auth(&sk)
            .json(&json!({"recipients": [format!("u{i}")]}))
            .send()
            .await
            .expect("trigger");
        assert!(
            resp.status().is_success(),
            "trigger u{i}: {}",
            resp.status()
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while sink.requests().len() <= i {
            assert!(Instant::now() < deadline, "webhook for u{i} never came");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    let mut recipients = all_message_recipients(&http, &base, &sk).await;
    recipients.sort();
    let mut expected: Vec<String> = (0..TRIGGERS)
        .flat_map(|i| [format!("u{i}"), format!("u{i}")])
        .collect();
    expected.sort();
    assert_eq!(recipients, expected, "a feed message and a webhook each");

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text");
    // Every run and every delivery went straight to the workers.
    assert_eq!(
        counter(&metrics, "hark_jobs_handed_over_total"),
        (2 * TRIGGERS) as f64,
        "{metrics}"
    );
    assert_eq!(
        counter(&metrics, "hark_jobs_claimed_total"),
        0.0,
        "{metrics}"
    );
    let _ = server.kill();
    let _ = server.wait();
}

#[tokio::test]
async fn accepted_work_runs_without_claims_on_sqlite() {
    accepted_work_runs_without_claims(false).await;
}

#[tokio::test]
async fn accepted_work_runs_without_claims_on_postgres() {
    accepted_work_runs_without_claims(true).await;
}

async fn fan_out_runs_are_handed_over(postgres: bool) {
    const SUBSCRIBERS: usize = 1_200;
    // Default concurrency (a page of 500 runs fits what the workers may hold).
    let (_t, served, http) = serve_workflows_without_polling(
        postgres,
        &[(
            "announce",
            json!([{"type": "channel", "ref": "feed", "channel_key": "in-app-feed",
                        "template": {"markdown_body": "news for {{ recipient.id }}"}}]),
        )],
    )
    .await;
    let (base, sk) = (served.base.clone(), served.sk.clone());
    let resp = http
        .put(format!("{base}/v1/objects/teams/all"))
        .bearer_auth(&sk)
        .json(&json!({"name": "everyone"}))
        .send()
        .await
        .expect("object");
    assert!(resp.status().is_success(), "object: {}", resp.status());
    let ids: Vec<String> = (0..SUBSCRIBERS).map(|i| format!("s{i:04}")).collect();
    for chunk in ids.chunks(100) {
        let resp = http
            .post(format!("{base}/v1/objects/teams/all/subscriptions"))
            .bearer_auth(&sk)
            .json(&json!({"recipients": chunk}))
            .send()
            .await
            .expect("subscribe");
        assert!(resp.status().is_success(), "subscribe: {}", resp.status());
    }
    trigger(
        &http,
        &served,
        "announce",
        json!([{"collection": "teams", "id": "all"}]),
    )
    .await;

    // Every subscriber's message, and the object's own.
    let deadline = Instant::now() + Duration::from_secs(120);
    let runs = loop {
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text");
        let finished = counter(&metrics, "hark_runs_finished_total{status=\"completed\"}");
        if finished >= (SUBSCRIBERS + 1) as f64 {
            break metrics;
        }
        assert!(Instant::now() < deadline, "runs finished: {finished}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut recipients = all_message_recipients(&http, &base, &sk).await;
    assert!(
        recipients.iter().any(|r| r == "teams/all"),
        "the object's own"
    );
    recipients.retain(|r| r.starts_with('s'));
    recipients.sort();
    assert_eq!(recipients, ids, "one message per subscriber");
    // Each run ran once, by one path or the other: the fan-out job is claimed (nobody
    // holds it), the object's run and at least the first page (the workers held nothing
    // yet) are handed over; later pages are handed over when the workers have room.
    let handed_over = counter(&runs, "hark_jobs_handed_over_total");
    let claimed = counter(&runs, "hark_jobs_claimed_total");
    assert_eq!(handed_over + claimed, (SUBSCRIBERS + 2) as f64, "{runs}");
    assert!(handed_over >= 501.0, "{runs}");
}

#[tokio::test]
async fn fan_out_runs_are_handed_over_on_sqlite() {
    fan_out_runs_are_handed_over(false).await;
}

#[tokio::test]
async fn fan_out_runs_are_handed_over_on_postgres() {
    fan_out_runs_are_handed_over(true).await;
}

/// Polls `done` until it holds, failing with `what` after 30 s.
async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status of the recipient's run of `workflow` over the API (`None`: no run yet).
async fn run_status(
    http: &reqwest::Client,
    base: &str,
    sk: &str,
    workflow: &str,
) -> Option<String> {
    let runs = get_json(
        http,
        &format!("{base}/v1/workflow_recipient_runs?recipient=ada&workflow={workflow}"),
        sk,
    )
    .await;
    runs["items"][0]["status"].as_str().map(str::to_string)
}

async fn a_waiting_run_goes_on_when_its_event_commits(postgres: bool) {
    let (_t, served, http) = serve_workflows_without_polling(
        postgres,
        &[
            (
                "nudge",
                json!([{"type": "channel", "ref": "hello", "channel_key": "in-app-feed",
                        "template": {"markdown_body": "hello"}}]),
            ),
            (
                "waiter",
                json!([
                    {"type": "wait_for_event", "ref": "seen_hello", "settings": {
                        "event": {"event_type": "message", "event_key": "delivered",
                                  "source_type": "workflow", "source_key": "nudge"},
                        "match_conditions": [{"operator": "and", "conditions": [
                            {"variable": "event.step_ref", "operator": "equal_to", "argument": "hello"}]}],
                        "expires_after": {"unit": "days", "value": 1},
                        "on_match": "continue", "on_timeout": "halt"}},
                    {"type": "channel", "ref": "after", "channel_key": "in-app-feed",
                     "template": {"markdown_body": "after the wait"}}
                ]),
            ),
        ],
    )
    .await;
    let (base, sk) = (served.base.clone(), served.sk.clone());
    trigger(&http, &served, "waiter", json!(["ada"])).await;
    wait_until("the waiter never started waiting", || async {
        run_status(&http, &base, &sk, "waiter").await.as_deref() == Some("paused")
    })
    .await;

    // The nudge's in-app message is `message.delivered` for the waiting run: the commit
    // that creates it makes the waiter's job due, and that commit wakes the workers.
    trigger(&http, &served, "nudge", json!(["ada"])).await;
    wait_until(
        "the waiting run was not woken by its event (polling is off)",
        || async { run_status(&http, &base, &sk, "waiter").await.as_deref() == Some("completed") },
    )
    .await;
    let mut recipients = all_message_recipients(&http, &base, &sk).await;
    recipients.sort();
    assert_eq!(
        recipients,
        ["ada", "ada"],
        "the nudge and the message after the wait"
    );
}

#[tokio::test]
async fn a_waiting_run_goes_on_when_its_event_commits_on_sqlite() {
    a_waiting_run_goes_on_when_its_event_commits(false).await;
}

#[tokio::test]
async fn a_waiting_run_goes_on_when_its_event_commits_on_postgres() {
    a_waiting_run_goes_on_when_its_event_commits(true).await;
}

async fn a_batch_that_fills_up_closes_at_once(postgres: bool) {
    let (_t, served, http) = serve_workflows_without_polling(
        postgres,
        &[(
            "digest",
            json!([
                {"type": "batch", "ref": "batch", "settings": {
                    "batch_window": {"unit": "hours", "value": 1}, "batch_items_max_limit": 2}},
                {"type": "channel", "ref": "digest", "channel_key": "in-app-feed",
                 "template": {"markdown_body": "{{ total_activities }} comments"}}
            ]),
        )],
    )
    .await;
    let (base, sk) = (served.base.clone(), served.sk.clone());
    for _ in 0..2 {
        trigger(&http, &served, "digest", json!(["ada"])).await;
    }
    // The second item fills the batch: the commit that adds it makes the close due now
    // and wakes the workers, an hour before the window ends and the poll comes.
    wait_until("the full batch did not close (polling is off)", || async {
        !all_message_recipients(&http, &base, &sk).await.is_empty()
    })
    .await;
    assert_eq!(all_message_recipients(&http, &base, &sk).await, ["ada"]);
}

#[tokio::test]
async fn a_batch_that_fills_up_closes_at_once_on_sqlite() {
    a_batch_that_fills_up_closes_at_once(false).await;
}

#[tokio::test]
async fn a_batch_that_fills_up_closes_at_once_on_postgres() {
    a_batch_that_fills_up_closes_at_once(true).await;
}

async fn timers_fire_without_the_poll(postgres: bool) {
    let (_t, served, http) = serve_workflows_without_polling(
        postgres,
        &[
            (
                "later",
                json!([
                    {"type": "delay", "ref": "wait", "settings": {"delay_for": {"unit": "seconds", "value": 1}}},
                    {"type": "channel", "ref": "hello", "channel_key": "in-app-feed",
                     "template": {"markdown_body": "a second later"}}
                ]),
            ),
            (
                "digest",
                json!([
                    {"type": "batch", "ref": "batch", "settings": {
                        "batch_window": {"unit": "seconds", "value": 1}}},
                    {"type": "channel", "ref": "digest", "channel_key": "in-app-feed",
                     "template": {"markdown_body": "{{ total_activities }} comments"}}
                ]),
            ),
        ],
    )
    .await;
    let (base, sk) = (served.base.clone(), served.sk.clone());
    trigger(&http, &served, "later", json!(["ada"])).await;
    for _ in 0..2 {
        trigger(&http, &served, "digest", json!(["bob"])).await;
    }
    // The delay's job and the batch's close are due a second later, an hour before the
    // poll: only the node's own timers can have woken its workers for them.
    wait_until(
        "the delay or the batch window was not woken (polling is off)",
        || async { all_message_recipients(&http, &base, &sk).await.len() == 2 },
    )
    .await;
    let mut recipients = all_message_recipients(&http, &base, &sk).await;
    recipients.sort();
    assert_eq!(
        recipients,
        ["ada", "bob"],
        "one delayed message, one digest"
    );
}

#[tokio::test]
async fn timers_fire_without_the_poll_on_sqlite() {
    timers_fire_without_the_poll(false).await;
}

#[tokio::test]
async fn timers_fire_without_the_poll_on_postgres() {
    timers_fire_without_the_poll(true).await;
}

/// A delay written before the node is killed ends on time after it restarts, though the
/// restarted node polls once an hour: its worker loop read the pending job's due time
/// from the table when it started.
async fn timers_written_before_a_restart_fire_on_time(postgres: bool) {
    let (t, served, http) = serve_workflows_without_polling(
        postgres,
        &[(
            "later",
            json!([
                {"type": "delay", "ref": "wait", "settings": {"delay_for": {"unit": "seconds", "value": 3}}},
                {"type": "channel", "ref": "hello", "channel_key": "in-app-feed",
                 "template": {"markdown_body": "three seconds later"}}
            ]),
        )],
    )
    .await;
    trigger(&http, &served, "later", json!(["ada"])).await;
    let Served {
        base,
        port,
        sk,
        server,
        ..
    } = served;
    let paused = format!("{base}/v1/workflow_recipient_runs?status=paused");
    wait_until("the run never reached its delay", || async {
        get_json(&http, &paused, &sk).await["items"]
            .as_array()
            .is_some_and(|runs| runs.len() == 1)
    })
    .await;
    // SIGKILL: nothing is written on the way down, and the node's timers are gone.
    drop(server);
    let _restarted = spawn_server(&t.args, port, &t._dir.path().join("restarted.log"));
    wait_healthy(&base).await;
    wait_until(
        "the delay written before the restart was not woken (polling is off)",
        || async { all_message_recipients(&http, &base, &sk).await == ["ada"] },
    )
    .await;
}

#[tokio::test]
async fn timers_written_before_a_restart_fire_on_time_on_sqlite() {
    timers_written_before_a_restart_fire_on_time(false).await;
}

#[tokio::test]
async fn timers_written_before_a_restart_fire_on_time_on_postgres() {
    timers_written_before_a_restart_fire_on_time(true).await;
}

/// Waits until the engine's worker loop takes hand-overs, and returns a reservation.
async fn reservation_once_open(
    workers: &Arc<dyn LocalWorkers>,
    wanted: usize,
) -> hark_store::handoff::Reservation {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(reservation) = workers.reserve(wanted) {
            return reservation;
        }
        assert!(Instant::now() < deadline, "the workers never opened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn room_is_reserved_only_while_workers_run_and_within_what_they_hold() {
    let server = TestServer::start(Backend::Sqlite, vec![]).await;
    let workers = server.engine.local_workers();
    assert!(
        workers.reserve(1).is_none(),
        "no worker loop, nothing is leased to it"
    );
    let (stop, stopped) = watch::channel(false);
    let engine = server.engine.clone();
    let loop_task = tokio::spawn(async move { engine.run_workers(stopped).await });

    // The default 256 slots hold at most four queued jobs each.
    let all = reservation_once_open(&workers, 100_000).await;
    assert_eq!(all.slots(), 1024);
    assert!(workers.reserve(1).is_none(), "everything is held");
    // Room a write did not use is given back.
    workers.start(all, Vec::new());
    let again = workers.reserve(10).expect("room is back");
    assert_eq!(again.slots(), 10);
    drop(again);

    stop.send(true).expect("stop");
    loop_task.await.expect("worker loop");
    assert!(workers.reserve(1).is_none(), "stopped workers take nothing");
}

#[tokio::test]
async fn a_handed_over_job_that_waited_half_its_lease_is_left_to_a_claim() {
    let server = TestServer::start(Backend::Sqlite, vec![]).await;
    server
        .put_workflow("late", json!([feed_step("feed", "late hello")]))
        .await;
    let env = server.env_id("development").await;
    let (version, _) = server
        .store
        .committed_version(&env, "late")
        .await
        .expect("version")
        .expect("committed");
    let (stop, stopped) = watch::channel(false);
    let engine = server.engine.clone();
    let loop_task = tokio::spawn(async move { engine.run_workers(stopped).await });
    let workers = server.engine.local_workers();
    let reservation = reservation_once_open(&workers, 1).await;
    let lease = reservation.lease.clone();
    let written = server
        .store
        .create_triggers_with_jobs(&[TriggerWrite {
            environment_id: env.clone(),
            workflow_key: "late".into(),
            workflow_version: version,
            workflow_run_id: hark_core::new_id(),
            actor: None,
            tenant: None,
            data: json!({}),
            cancellation_key: None,
            recipients: vec!["ada".into()],
            inline_users: Vec::new(),
            inline_objects: Vec::new(),
            inline_documents: Vec::new(),
            fan_outs: Vec::new(),
            idempotency: None,
            state: json!({}),
            frequency: TriggerFrequency::EveryTrigger,
            lease: Some(lease.clone()),
            now: server.clock.now_ms(),
        }])
        .await
        .expect("trigger");
    let jobs = written[0].as_ref().expect("accepted").leased_jobs.clone();
    assert_eq!(jobs.len(), 1);

    // The hand-over comes after more than half the lease (60 s by default).
    server.clock.advance(31_000);
    workers.start(reservation, jobs);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        server.feed_texts("ada").await.is_empty(),
        "a job this close to losing its lease is not started"
    );
    let run = &server.runs_of("ada", "late").await[0];
    assert_eq!(run["status"], "queued", "{run}");

    // Once the lease expires the job is due, and a claim runs it.
    server.clock.advance(30_000);
    server.engine.wake();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.feed_texts("ada").await.is_empty() {
        assert!(Instant::now() < deadline, "the job was never claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.feed_texts("ada").await, ["late hello"]);
    assert!(lease.expires_at <= server.clock.now_ms());

    stop.send(true).expect("stop");
    loop_task.await.expect("worker loop");
}
