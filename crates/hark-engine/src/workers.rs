//! This node's workers: how many jobs run at once, where they come from and how they are
//! woken.
//!
//! Jobs reach the workers two ways. Jobs this node writes while its workers have room
//! (the runs of the triggers it accepts, the deliveries its steps create) are written
//! already leased to them and handed over after the commit (`hark_store::handoff`).
//! Everything else (timers, retries, runs whose waits an event reached, full batches,
//! other nodes' work, overflow) is claimed from the job table: when a wake-up says jobs
//! are due (the store's own after a commit that made jobs due), when one of this node's
//! timers comes due (`crate::timers`), when the poll interval passes, and again at once
//! while claims come back full.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use hark_core::{new_id, Clock, Millis};
use hark_store::handoff::{LocalWorkers, Reservation};
use hark_store::wakeups::JobWakeups;
use hark_store::{ClaimedJob, JobKind, JobLease, StoreError};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Duration, Instant};
use tracing::Instrument;

use crate::prefetch::{worth_prefetching, Prefetched};
use crate::timers::DueTimers;
use crate::{Engine, EngineConfig};

/// Jobs written leased to this node's workers, with one `held` permit each.
struct HandedOver {
    jobs: Vec<ClaimedJob>,
    held: OwnedSemaphorePermit,
    lease_expires_at: Millis,
}

/// A handed-over job waiting for a running slot.
struct Pending {
    job: ClaimedJob,
    held: Option<OwnedSemaphorePermit>,
    lease_expires_at: Millis,
    reads: Arc<BatchReads>,
}

/// What a batch of jobs (a claim, or hand-overs that arrived together) reads ahead, read
/// by whichever of its jobs starts first and shared with the rest: the worker loop never
/// waits for a read.
struct BatchReads {
    jobs: Vec<ClaimedJob>,
    read: tokio::sync::OnceCell<Option<Arc<Prefetched>>>,
}

impl BatchReads {
    fn new(jobs: Vec<ClaimedJob>) -> Arc<Self> {
        Arc::new(BatchReads {
            jobs,
            read: tokio::sync::OnceCell::new(),
        })
    }
}

/// Handed-over jobs held per running slot. At a few thousand jobs a second the queue this
/// allows drains in well under a second, a small part of the lease; a job that still
/// waited half its lease is left to be claimed once the lease expires.
const HELD_PER_SLOT: usize = 4;

/// The worker slots of one node, shared by its workers and its group committers.
pub(crate) struct Slots {
    /// One permit per job running.
    running: Arc<Semaphore>,
    concurrency: usize,
    /// Running slots handed-over jobs leave free while claims find more due jobs than
    /// they have room for, so timers, retries and other nodes' work are not starved by a
    /// steady stream of new work.
    kept_for_claims: usize,
    /// One permit per job leased to this node's workers, from before its write until it
    /// ends: bounds the handed-over jobs waiting for a running slot.
    held: Arc<Semaphore>,
    max_held: usize,
    lease_ms: i64,
    clock: Arc<dyn Clock>,
    /// Open while `run_workers` runs; without it nothing is leased to this node.
    handover: Mutex<Option<mpsc::UnboundedSender<HandedOver>>>,
    wake: Notify,
    /// Other nodes' workers, reached through the store (PostgreSQL only).
    wakeups: Option<Arc<JobWakeups>>,
    /// When jobs this node wrote for later come due.
    pub(crate) timers: DueTimers,
}

impl Slots {
    pub(crate) fn new(
        config: &EngineConfig,
        clock: Arc<dyn Clock>,
        wakeups: Option<Arc<JobWakeups>>,
    ) -> Self {
        let max_held = config.concurrency * HELD_PER_SLOT;
        Slots {
            running: Arc::new(Semaphore::new(config.concurrency)),
            concurrency: config.concurrency,
            kept_for_claims: config.concurrency / 4,
            held: Arc::new(Semaphore::new(max_held)),
            max_held,
            lease_ms: config.lease_ms,
            clock,
            handover: Mutex::new(None),
            wake: Notify::new(),
            wakeups,
            timers: DueTimers::default(),
        }
    }

    fn set_handover(&self, sender: Option<mpsc::UnboundedSender<HandedOver>>) {
        if let Ok(mut handover) = self.handover.lock() {
            *handover = sender;
        }
    }

    fn handover(&self) -> Option<mpsc::UnboundedSender<HandedOver>> {
        self.handover.lock().ok().and_then(|h| h.clone())
    }

    /// Room for exactly `wanted` new jobs, waiting up to `patience` for it; `None` when
    /// the workers do not run or stay too busy.
    pub(crate) async fn reserve_waiting(
        &self,
        wanted: usize,
        patience: Duration,
    ) -> Option<Reservation> {
        let wanted = u32::try_from(wanted).ok().filter(|n| *n > 0)?;
        if self.handover().is_none() || wanted as usize > self.max_held {
            return None;
        }
        let held = tokio::time::timeout(patience, self.held.clone().acquire_many_owned(wanted))
            .await
            .ok()?
            .ok()?;
        Some(Reservation::new(self.new_lease(), held))
    }

    /// A lease for jobs written from now on.
    fn new_lease(&self) -> JobLease {
        JobLease {
            lease: new_id(),
            expires_at: self.clock.now_ms() + self.lease_ms,
        }
    }

    /// No job runs and none is leased to this node's workers.
    fn all_free(&self) -> bool {
        self.running.available_permits() == self.concurrency
            && self.held.available_permits() == self.max_held
    }
}

impl LocalWorkers for Slots {
    fn reserve(&self, wanted: usize) -> Option<Reservation> {
        if wanted == 0 || self.handover().is_none() {
            return None;
        }
        let granted = wanted.min(self.held.available_permits());
        let granted = u32::try_from(granted).ok().filter(|n| *n > 0)?;
        let held = self.held.clone().try_acquire_many_owned(granted).ok()?;
        Some(Reservation::new(self.new_lease(), held))
    }

    fn start(&self, reservation: Reservation, jobs: Vec<ClaimedJob>) {
        if jobs.is_empty() {
            return;
        }
        let lease_expires_at = reservation.lease.expires_at;
        let mut held = reservation.into_permits();
        let unused = held.num_permits().saturating_sub(jobs.len());
        if unused > 0 {
            drop(held.split(unused));
        }
        let count = jobs.len();
        let batch = HandedOver {
            jobs,
            held,
            lease_expires_at,
        };
        let sent = self.handover().map(|handover| handover.send(batch));
        if !matches!(sent, Some(Ok(()))) {
            // Only when the workers stopped between reserving and now, which shutdown
            // rules out by waiting until nothing is held: the jobs run elsewhere (or
            // after a restart) once their lease expires.
            tracing::warn!(
                jobs = count,
                "workers stopped before jobs leased to them arrived"
            );
        }
    }

    fn wake(&self) {
        // One loop waits on this; a wake with nobody waiting is kept for the next wait.
        self.wake.notify_one();
        if let Some(wakeups) = &self.wakeups {
            wakeups.announce();
        }
    }
}

/// Instants read from the job table when the worker loop starts.
const TIMERS_READ_AT_START: i64 = 1_000;

impl Engine {
    /// Notes when the jobs already in the table come due: those this node wrote for later
    /// before it restarted, and the leases of a node that died. Its own timers are kept in
    /// memory only, so without this they would wait for the poll.
    async fn note_timers_from_before_start(&self) {
        let now = self.inner.clock.now_ms();
        match self
            .inner
            .store
            .upcoming_due_times(now, TIMERS_READ_AT_START)
            .await
        {
            Ok(instants) => {
                for at in instants {
                    self.inner.slots.timers.note(at);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read when pending jobs come due; the poll finds them");
            }
        }
    }

    /// Runs jobs until `shutdown` turns true: those handed over by this node's committers
    /// and those claimed from the job table. In-flight jobs finish before it returns; jobs
    /// it never got to stay in the table for the next start.
    pub async fn run_workers(&self, mut shutdown: watch::Receiver<bool>) {
        let slots = self.inner.slots.clone();
        // Other nodes' announcements wake this node's workers; the poll stays as the
        // fallback for announcements lost to a crash or a dropped connection.
        let listener = slots.wakeups.clone().map(|wakeups| {
            let slots = slots.clone();
            tokio::spawn(async move { wakeups.listen(move || slots.wake.notify_one()).await })
        });
        let (sender, mut handed_over) = mpsc::unbounded_channel();
        slots.set_handover(Some(sender));
        let poll_interval = self.inner.config.poll_interval;
        let mut tasks = JoinSet::new();
        let mut pending = VecDeque::new();
        let mut claim_now = true;
        // The last claim came back full: more may be due once slots free up.
        let mut backlog = false;
        let mut next_poll = Instant::now() + poll_interval;
        self.note_timers_from_before_start().await;
        loop {
            if *shutdown.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            // While claims find more than they have room for, handed-over jobs leave them
            // a quarter of the slots; otherwise they may use every slot.
            let keep = if backlog { slots.kept_for_claims } else { 0 };
            self.start_pending(&mut tasks, &mut pending, keep);
            if std::mem::take(&mut claim_now) {
                next_poll = Instant::now() + poll_interval;
                slots.timers.forget_through(self.inner.clock.now_ms());
                backlog = self.claim_and_start(&mut tasks).await;
            }
            let wake_at = match slots.timers.earliest() {
                Some(at) => {
                    let wait = (at - self.inner.clock.now_ms()).max(0) as u64;
                    next_poll.min(Instant::now() + Duration::from_millis(wait))
                }
                None => next_poll,
            };
            tokio::select! {
                _ = slots.wake.notified() => claim_now = true,
                // A commit of this process made jobs nobody holds due: waiting runs an
                // event reached, a full batch (other nodes' arrive through the wake-ups).
                _ = self.inner.store.jobs_made_due().notified() => claim_now = true,
                // The poll, or the earliest of this node's timers.
                _ = sleep_until(wake_at) => claim_now = true,
                // A timer earlier than the one slept towards.
                _ = slots.timers.earlier_noted() => {}
                Some(batch) = handed_over.recv() => {
                    self.queue_handed_over(&mut pending, batch, &mut handed_over);
                }
                _ = shutdown.changed() => {}
                // A finished job frees a slot for what waits: handed-over jobs, and what
                // the last full claim left behind.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => claim_now = backlog,
            }
        }
        // No new reservations; jobs already held still arrive and run, and every job
        // started finishes.
        slots.set_handover(None);
        loop {
            while tasks.try_join_next().is_some() {}
            while let Ok(batch) = handed_over.try_recv() {
                self.queue_handed_over(&mut pending, batch, &mut handed_over);
            }
            self.start_pending(&mut tasks, &mut pending, 0);
            if tasks.is_empty() && pending.is_empty() && slots.all_free() {
                break;
            }
            tokio::select! {
                Some(batch) = handed_over.recv() => {
                    self.queue_handed_over(&mut pending, batch, &mut handed_over);
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                // A reservation given back unused sends nothing.
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        if let Some(listener) = listener {
            listener.abort();
        }
    }

    /// Queues handed-over jobs, with whatever else has arrived meanwhile; they read ahead
    /// together.
    fn queue_handed_over(
        &self,
        pending: &mut VecDeque<Pending>,
        first: HandedOver,
        more: &mut mpsc::UnboundedReceiver<HandedOver>,
    ) {
        let mut batches = vec![first];
        while let Ok(batch) = more.try_recv() {
            batches.push(batch);
        }
        let jobs: Vec<ClaimedJob> = batches
            .iter()
            .flat_map(|b| b.jobs.iter().cloned())
            .collect();
        metrics::counter!("hark_jobs_handed_over_total").increment(jobs.len() as u64);
        let reads = BatchReads::new(jobs);
        for batch in batches {
            let mut held = batch.held;
            for job in batch.jobs {
                pending.push_back(Pending {
                    job,
                    held: held.split(1),
                    lease_expires_at: batch.lease_expires_at,
                    reads: reads.clone(),
                });
            }
        }
    }

    /// Starts waiting handed-over jobs while more than `keep` running slots are free. A
    /// job that waited half its lease is dropped instead: it is claimed, here or by
    /// another node, once its lease expires.
    fn start_pending(&self, tasks: &mut JoinSet<()>, pending: &mut VecDeque<Pending>, keep: usize) {
        let running = &self.inner.slots.running;
        while !pending.is_empty() && running.available_permits() > keep {
            let Ok(permit) = running.clone().try_acquire_owned() else {
                return;
            };
            let Some(next) = pending.pop_front() else {
                return;
            };
            let remaining = next.lease_expires_at - self.inner.clock.now_ms();
            if remaining < self.inner.config.lease_ms / 2 {
                metrics::counter!("hark_jobs_handover_expired_total").increment(1);
                tracing::info!(job = %next.job.id, "handed-over job waited too long; left to a claim");
                continue;
            }
            self.spawn_job(tasks, next.job, next.reads, (permit, next.held));
        }
    }

    /// Claims as many due jobs as there are free running slots (at most a claim batch)
    /// and starts them. Returns whether the claim came back full, so that more may be due.
    async fn claim_and_start(&self, tasks: &mut JoinSet<()>) -> bool {
        let running = &self.inner.slots.running;
        let limit = running
            .available_permits()
            .min(self.inner.config.claim_batch.max(0) as usize);
        let Some(mut permits) = u32::try_from(limit)
            .ok()
            .filter(|n| *n > 0)
            .and_then(|n| running.clone().try_acquire_many_owned(n).ok())
        else {
            // Every slot is busy: claim again when one frees up.
            return true;
        };
        let claimed = self
            .inner
            .store
            .claim_due_jobs(
                self.inner.clock.now_ms(),
                limit as i64,
                self.inner.config.lease_ms,
            )
            .await;
        let jobs = match claimed {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "claiming jobs failed");
                return false;
            }
        };
        metrics::counter!("hark_jobs_claimed_total").increment(jobs.len() as u64);
        let full = jobs.len() >= limit;
        let reads = BatchReads::new(jobs.clone());
        for job in jobs {
            let Some(permit) = permits.split(1) else {
                break;
            };
            self.spawn_job(tasks, job, reads.clone(), permit);
        }
        full
    }

    /// Runs `job`; `slot` (its running permit, and its held permit if it was handed over)
    /// is released when it ends.
    fn spawn_job<S: Send + 'static>(
        &self,
        tasks: &mut JoinSet<()>,
        job: ClaimedJob,
        reads: Arc<BatchReads>,
        slot: S,
    ) {
        let engine = self.clone();
        let span = tracing::info_span!("job", kind = job.kind.as_str(), id = %job.id);
        tasks.spawn(
            async move {
                let prefetched = reads
                    .read
                    .get_or_init(|| engine.prefetch(&reads.jobs))
                    .await
                    .clone();
                engine.process_job(job, prefetched.as_deref()).await;
                drop(slot);
            }
            .instrument(span),
        );
    }

    /// Processes every job due at the clock's current time, including jobs those jobs
    /// create, and returns how many it processed. Tests drive virtual time with this.
    pub async fn run_until_idle(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let jobs = self
                .inner
                .store
                .claim_due_jobs(
                    self.inner.clock.now_ms(),
                    self.inner.config.claim_batch,
                    self.inner.config.lease_ms,
                )
                .await?;
            if jobs.is_empty() {
                return Ok(total);
            }
            total += jobs.len();
            let prefetched = self.prefetch(&jobs).await;
            let mut tasks = JoinSet::new();
            for job in jobs {
                let engine = self.clone();
                let prefetched = prefetched.clone();
                tasks.spawn(async move { engine.process_job(job, prefetched.as_deref()).await });
            }
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Reads ahead for a batch's runs to advance and messages to deliver. A failed read
    /// only costs the speed-up: each job then reads for itself.
    async fn prefetch(&self, jobs: &[ClaimedJob]) -> Option<Arc<Prefetched>> {
        if !worth_prefetching(jobs) {
            return None;
        }
        match Prefetched::load(&self.inner.store, jobs).await {
            Ok(prefetched) => Some(Arc::new(prefetched)),
            Err(e) => {
                tracing::warn!(error = %e, "reading ahead for claimed runs failed");
                None
            }
        }
    }

    async fn process_job(&self, job: ClaimedJob, prefetched: Option<&Prefetched>) {
        let result = match job.kind {
            JobKind::AdvanceRun => self.advance_run(&job, prefetched).await,
            JobKind::DeliverMessage => self.deliver_message(&job, prefetched).await,
            JobKind::CloseBatch => self.close_batch(&job).await,
            JobKind::FanOut => self.fan_out(&job).await,
        };
        if let Err(e) = result {
            // The job keeps its lease and becomes due again when the lease expires: a
            // store hiccup delays the work, it never drops it.
            tracing::warn!(job = %job.id, kind = job.kind.as_str(), error = %e, "job failed; will retry");
        }
    }
}
