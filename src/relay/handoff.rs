//! Jobs handed to the worker in memory instead of through a claim. A write that makes a job
//! runnable (the accept of a message whose lane is idle, the end of a job with a next one
//! waiting) claims it in its own transaction, for a worker slot reserved before the write, and
//! the job travels here to the worker. The claim is the same lease a worker's claim takes: if the
//! process dies before the job runs, the lease runs out and any worker claims it again. The
//! worker's claim stays for the rest (slots were full, a retry came due, another instance's
//! jobs, a restart).
//!
//! Slots are the worker's concurrency (`batch_size`): a job holds one from its reservation to
//! its end, so handed-over jobs never exceed what the worker runs, and the channel never grows
//! beyond it.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::metrics::JobStart;
use crate::store::ClaimedJob;

/// The worker's slots and the way in for jobs claimed elsewhere. Clones share both.
#[derive(Clone, Debug)]
pub struct Handoff {
    slots: Arc<Semaphore>,
    lease_ms: i64,
    jobs: mpsc::UnboundedSender<Handed>,
}

/// One of the worker's slots, held by a job from its reservation until it ends.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// A job claimed for the worker, with its slot.
#[derive(Debug)]
pub struct Handed {
    pub job: ClaimedJob,
    pub slot: Slot,
    pub how: JobStart,
}

impl Handoff {
    /// `slots` jobs at most at once, each claimed for `lease_ms`; the receiver is the worker's.
    pub fn new(slots: usize, lease_ms: i64) -> (Self, mpsc::UnboundedReceiver<Handed>) {
        let (jobs, received) = mpsc::unbounded_channel();
        (Self { slots: Arc::new(Semaphore::new(slots)), lease_ms, jobs }, received)
    }

    /// How long a job claimed for the worker is its own.
    pub fn lease_ms(&self) -> i64 {
        self.lease_ms
    }

    /// A free slot, if any (none once the worker stops).
    pub fn reserve(&self) -> Option<Slot> {
        self.slots.clone().try_acquire_owned().ok().map(Slot)
    }

    /// Up to `n` free slots.
    pub fn reserve_up_to(&self, n: usize) -> Vec<Slot> {
        (0..n).map_while(|_| self.reserve()).collect()
    }

    /// Free slots now.
    pub fn free(&self) -> usize {
        self.slots.available_permits()
    }

    /// Gives the worker `job`, claimed for it in `slot`. When the worker is gone (shutdown), the
    /// job waits for its lease to end, as after a crash.
    pub fn hand_over(&self, job: ClaimedJob, slot: Slot, how: JobStart) {
        if self.jobs.send(Handed { job, slot, how }).is_err() {
            tracing::debug!("the worker stopped; a handed-over job runs again after its lease");
        }
    }

    /// No more reservations: the worker is stopping.
    pub fn close(&self) {
        self.slots.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_bound_reservations_and_come_back_when_dropped() {
        let (handoff, _received) = Handoff::new(2, 1_000);
        let slots = handoff.reserve_up_to(5);
        assert_eq!(slots.len(), 2);
        assert!(handoff.reserve().is_none(), "all taken");
        drop(slots);
        assert_eq!(handoff.free(), 2);
        handoff.close();
        assert!(handoff.reserve().is_none(), "a stopping worker takes nothing more");
    }
}
