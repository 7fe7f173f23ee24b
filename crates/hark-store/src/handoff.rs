//! Jobs written already held by the node that writes them (see [`JobLease`]).
//!
//! A group committer asks this node's workers for room before it writes, leases that many
//! of the jobs its batch creates to them, and hands those jobs over once the commit is
//! durable. The workers start them at once: no wake-up, no claim statement, and on
//! PostgreSQL no row version left behind by a claim's `UPDATE`. Jobs beyond the room
//! granted, and every job on a node without workers, are written due as before and
//! announced to whoever claims them.

use tokio::sync::OwnedSemaphorePermit;

use crate::model::{ClaimedJob, JobLease, Written};
use crate::traits::StoreResult;

/// Room on this node's workers, taken before a write and given back when unused.
pub struct Reservation {
    pub lease: JobLease,
    /// One permit per job the reservation may lease, held until that job finishes.
    permits: OwnedSemaphorePermit,
}

impl Reservation {
    pub fn new(lease: JobLease, permits: OwnedSemaphorePermit) -> Self {
        Reservation { lease, permits }
    }

    /// How many jobs may be written with this lease.
    pub fn slots(&self) -> usize {
        self.permits.num_permits()
    }

    pub fn into_permits(self) -> OwnedSemaphorePermit {
        self.permits
    }
}

/// This node's workers as the group committers see them.
pub trait LocalWorkers: Send + Sync {
    /// Room for up to `wanted` new jobs, leased to this node's workers; `None` when this
    /// node runs no workers or they are busy.
    fn reserve(&self, wanted: usize) -> Option<Reservation>;
    /// Starts `jobs`, written with the reservation's lease, at once. Room they do not use
    /// is given back.
    fn start(&self, reservation: Reservation, jobs: Vec<ClaimedJob>);
    /// Tells workers, here and on other nodes, that jobs nobody holds are due.
    fn wake(&self);
}

/// After a group commit: hands the jobs leased to this node's workers over (or gives the
/// room back when the commit failed) and wakes the workers when jobs nobody holds are due.
pub(crate) fn hand_over<O>(
    workers: &dyn LocalWorkers,
    reservation: Option<Reservation>,
    outcomes: &StoreResult<Vec<StoreResult<Written<O>>>>,
    unheld_due_jobs: bool,
) {
    let Ok(outcomes) = outcomes else {
        // Nothing committed: the reservation's room goes back as it drops.
        return;
    };
    if let Some(reservation) = reservation {
        let jobs: Vec<ClaimedJob> = outcomes
            .iter()
            .flatten()
            .flat_map(|w| w.leased_jobs.iter().cloned())
            .collect();
        workers.start(reservation, jobs);
    }
    if unheld_due_jobs && outcomes.iter().any(|o| o.is_ok()) {
        workers.wake();
    }
}
