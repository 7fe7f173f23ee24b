//! Group commit: concurrent writers share one transaction, so one durable commit (one
//! fsync) answers many of them. A caller waits only for the commit its item is in, and
//! nothing is acknowledged before that commit. Used for triggers (API) and step outcomes
//! (engine), which on SQLite share the one writer connection; on PostgreSQL lanes may
//! commit batches in parallel (see `lanes_for`). The store writes the plain items of a
//! batch with one multi-row statement per table (`sql_impl::trigger_batch`,
//! `sql_impl::step_batch`). The trigger and step committers lease the jobs they create to
//! this node's workers when those have room (`handoff`).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::error::StoreError;
use crate::handoff::{hand_over, LocalWorkers, Reservation};
use crate::model::{ClaimedJob, DeliveryCommit, StepCommit, TriggerOutcome, TriggerWrite};
use crate::traits::{Store, StoreResult};

/// Requests waiting for a commit; beyond this, submitters wait (back-pressure).
const QUEUE_DEPTH: usize = 4096;

type Reply<O> = oneshot::Sender<StoreResult<O>>;

/// Hands items to the committing lanes. Cheap to clone.
pub struct GroupCommitter<I, O> {
    queue: mpsc::Sender<(I, Reply<O>)>,
}

impl<I, O> Clone for GroupCommitter<I, O> {
    fn clone(&self) -> Self {
        GroupCommitter {
            queue: self.queue.clone(),
        }
    }
}

/// Limits for one transaction: at most `max_items` items and `max_weight` total weight.
pub struct BatchLimits<I> {
    pub max_items: usize,
    pub max_weight: usize,
    pub weight: fn(&I) -> usize,
}

// By hand: a derive would require `I: Copy`, though only a function pointer over `I` is held.
impl<I> Clone for BatchLimits<I> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I> Copy for BatchLimits<I> {}

impl<I: Send + 'static, O: Send + 'static> GroupCommitter<I, O> {
    /// Starts `lanes` committing tasks on the current runtime, sharing one queue: while
    /// one lane commits, the next collects what is waiting. `commit` stores a batch in one
    /// transaction and returns one outcome per item, in order.
    pub fn batched<F, Fut>(limits: BatchLimits<I>, lanes: usize, commit: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = StoreResult<Vec<StoreResult<O>>>> + Send + 'static,
    {
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let rx = Arc::new(Mutex::new(rx));
        let commit = Arc::new(commit);
        for _ in 0..lanes.max(1) {
            tokio::spawn(commit_loop(rx.clone(), limits, commit.clone()));
        }
        GroupCommitter { queue }
    }

    /// Stores the item durably (with whatever else is waiting, when batched).
    pub async fn submit(&self, item: I) -> StoreResult<O> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the group committer stopped".into())
}

type SharedQueue<I, O> = Arc<Mutex<mpsc::Receiver<(I, Reply<O>)>>>;

/// Takes the next batch: waits for one item, then takes what queued up while the previous
/// commit ran, never waiting for more. `None` once every sender is gone.
async fn next_batch<I, O>(
    rx: &SharedQueue<I, O>,
    limits: &BatchLimits<I>,
) -> Option<Vec<(I, Reply<O>)>> {
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let mut weight = (limits.weight)(&first.0);
    let mut batch = vec![first];
    while batch.len() < limits.max_items && weight < limits.max_weight {
        match rx.try_recv() {
            Ok(item) => {
                weight += (limits.weight)(&item.0);
                batch.push(item);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn commit_loop<I, O, F, Fut>(rx: SharedQueue<I, O>, limits: BatchLimits<I>, commit: Arc<F>)
where
    F: Fn(Vec<I>) -> Fut,
    Fut: Future<Output = StoreResult<Vec<StoreResult<O>>>>,
{
    while let Some(batch) = next_batch(&rx, &limits).await {
        let (items, replies): (Vec<I>, Vec<Reply<O>>) = batch.into_iter().unzip();
        match commit(items).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                // The transaction did not commit: nobody in it may be told otherwise.
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
                }
            }
        }
    }
}

pub type TriggerCommitter = GroupCommitter<TriggerWrite, TriggerOutcome>;
pub type StepCommitter = GroupCommitter<(ClaimedJob, StepCommit), bool>;
pub type DeliveryCommitter = GroupCommitter<(ClaimedJob, DeliveryCommit), bool>;

/// How many batches of one kind commit at once. SQLite has one writer, so one lane.
/// PostgreSQL takes parallel writers, but lanes share one queue: more lanes mean smaller
/// batches, so more transactions and statements for the same work, and the overlap of
/// their round trips and fsyncs pays only with cores to spare. On 2 cores one lane beat
/// four in every figure with workers on (webhooks flat out 3,700 against 2,900 /s, their
/// p99 at 1,000 /s 10–13 against 28–37 ms; docs/benchmarks.md); larger machines get a
/// lane per two cores, up to the four that used to be fixed.
fn lanes_for(store: &dyn Store) -> usize {
    if store.single_writer() {
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(1, 4)
}

/// Triggers of concurrent requests, committed together (up to 4000 recipients per commit).
/// Their runs' jobs go to this node's `workers` when they have room (the rest are
/// announced), so the caller need not wake anyone.
pub fn trigger_committer(
    store: Arc<dyn Store>,
    workers: Arc<dyn LocalWorkers>,
) -> TriggerCommitter {
    let lanes = lanes_for(store.as_ref());
    let limits = BatchLimits {
        max_items: 256,
        max_weight: 4000,
        weight: |t: &TriggerWrite| t.recipients.len().max(1),
    };
    let commit = move |mut batch: Vec<TriggerWrite>| {
        let (store, workers) = (store.clone(), workers.clone());
        async move {
            // A trigger's jobs are leased all together or not at all.
            let jobs_of = |t: &TriggerWrite| t.recipients.len() + t.fan_outs.len();
            let wanted = batch.iter().map(jobs_of).sum();
            let reservation = workers.reserve(wanted);
            if let Some(reservation) = &reservation {
                let mut room = reservation.slots();
                for t in batch.iter_mut() {
                    if jobs_of(t) <= room {
                        room -= jobs_of(t);
                        t.lease = Some(reservation.lease.clone());
                    }
                }
            }
            // A fan-out's own job is never leased.
            let unheld = batch
                .iter()
                .any(|t| t.lease.is_none() || !t.fan_outs.is_empty());
            let written = store.create_triggers_with_jobs(&batch).await;
            hand_over(workers.as_ref(), reservation, &written, unheld);
            Ok(written?.into_iter().map(|o| o.map(|w| w.outcome)).collect())
        }
    };
    GroupCommitter::batched(limits, lanes, commit)
}

/// Step outcomes of concurrent jobs, committed together. The delivery jobs they create go
/// to this node's `workers` when they have room; the rest, and workflows the steps start,
/// are announced.
pub fn step_committer(store: Arc<dyn Store>, workers: Arc<dyn LocalWorkers>) -> StepCommitter {
    let lanes = lanes_for(store.as_ref());
    let limits = BatchLimits {
        max_items: 256,
        max_weight: 256,
        weight: |_: &(ClaimedJob, StepCommit)| 1,
    };
    let commit = move |mut batch: Vec<(ClaimedJob, StepCommit)>| {
        let (store, workers) = (store.clone(), workers.clone());
        async move {
            let wanted = batch.iter().filter(|(_, s)| creates_delivery(s)).count();
            let reservation = (wanted > 0).then(|| workers.reserve(wanted)).flatten();
            lease_deliveries(&mut batch, reservation.as_ref());
            let unheld = batch.iter().any(|(_, s)| {
                (creates_delivery(s) && s.delivery_lease.is_none()) || !s.triggers.is_empty()
            });
            let written = store.commit_steps_with_jobs(&batch).await;
            hand_over(workers.as_ref(), reservation, &written, unheld);
            Ok(written?.into_iter().map(|o| o.map(|w| w.outcome)).collect())
        }
    };
    GroupCommitter::batched(limits, lanes, commit)
}

/// Whether committing `step` writes a delivery job (when its message is new).
fn creates_delivery(step: &StepCommit) -> bool {
    step.enqueue_delivery && step.message.is_some()
}

/// Leases the delivery jobs of as many of the batch's steps as the reservation has room
/// for.
fn lease_deliveries(batch: &mut [(ClaimedJob, StepCommit)], reservation: Option<&Reservation>) {
    let Some(reservation) = reservation else {
        return;
    };
    let delivering = batch.iter_mut().filter(|(_, s)| creates_delivery(s));
    for (_, step) in delivering.take(reservation.slots()) {
        step.delivery_lease = Some(reservation.lease.clone());
    }
}

/// Delivery outcomes of concurrent jobs, committed together.
pub fn delivery_committer(store: Arc<dyn Store>) -> DeliveryCommitter {
    let lanes = lanes_for(store.as_ref());
    let limits = BatchLimits {
        max_items: 256,
        max_weight: 256,
        weight: |_: &(ClaimedJob, DeliveryCommit)| 1,
    };
    let commit = move |batch: Vec<(ClaimedJob, DeliveryCommit)>| {
        let store = store.clone();
        async move { store.commit_deliveries(&batch).await }
    };
    GroupCommitter::batched(limits, lanes, commit)
}
