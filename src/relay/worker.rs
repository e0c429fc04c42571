//! The outbox worker: claims due jobs, delivers them, and records the outcome. Failures are
//! retried with exponential backoff and jitter (honouring Retry-After); a permanent error or too
//! many attempts marks the message `failed`. Tests drive it step by step with `run_once`.
//!
//! Every job runs in its own task, bounded by `job_timeout`, while the worker keeps claiming
//! work for free slots: a slow remote call or a hostile message holds up nobody but its own
//! contact (DESIGN.md "Flow and guarantees" 4). A running job's lease is short and renewed while
//! it runs, so the jobs of a killed process are claimed again within one lease (3).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use rand::RngExt;
use tokio::task::{self, JoinSet};
use tracing::Instrument;

use super::message::{ErrorInfo, InboundMessage, MessageStatus, OutboundRecord, StatusReport};
use super::{Channel, DeliveryError, Platform, Signals};
use crate::config::RelayConfig;
use crate::metrics::Attempt;
use crate::store::{ClaimedJob, JobKind, Store, StoreError, now_ms};

/// Delivers outbox jobs to the platform and the channel.
pub struct Worker {
    store: Store,
    platform: Arc<dyn Platform>,
    channel: Arc<dyn Channel>,
    config: RelayConfig,
    signals: Signals,
}

impl Worker {
    pub fn new(
        store: Store,
        platform: Arc<dyn Platform>,
        channel: Arc<dyn Channel>,
        config: RelayConfig,
        signals: Signals,
    ) -> Self {
        Self { store, platform, channel, config, signals }
    }

    /// Claims one batch of due jobs and runs them to the end, each in its own task (at most one
    /// per contact and lane is ever claimed, so order is kept). Returns how many jobs it ran.
    pub async fn run_once(self: &Arc<Self>) -> Result<usize, StoreError> {
        let jobs = self.claim(self.config.batch_size).await?;
        let count = jobs.len();
        let mut tasks = JoinSet::new();
        for job in jobs {
            tasks.spawn(self.clone().execute(job));
        }
        while tasks.join_next().await.is_some() {}
        Ok(count)
    }

    /// Runs until `shutdown` resolves, with up to `batch_size` jobs in flight: claims work for
    /// free slots whenever a job ends, new work is queued, or the next job is due. On shutdown it
    /// claims nothing more, lets running jobs finish for `shutdown_grace`, then stops the rest
    /// and releases their jobs (due at once) so the next start or another instance takes them.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tasks = JoinSet::new();
        let mut running: HashMap<task::Id, ClaimedJob> = HashMap::new();
        let limit = self.config.batch_size.max(1) as usize;
        loop {
            let mut idle = self.config.poll_interval;
            // Claim when at least half the slots are free: one transaction per handful of jobs.
            if running.len() <= limit / 2 {
                match self.claim((limit - running.len()) as u32).await {
                    Ok(jobs) => {
                        for job in jobs {
                            let task = tasks.spawn(self.clone().execute(job.clone()));
                            running.insert(task.id(), job);
                        }
                        if running.is_empty() {
                            idle = self.idle_time().await;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    running.remove(&finished(done));
                    continue;
                }
                _ = self.signals.work_queued() => {}
                _ = tokio::time::sleep(idle) => {}
            }
        }
        self.stop(tasks, running).await;
    }

    async fn stop(&self, mut tasks: JoinSet<()>, mut running: HashMap<task::Id, ClaimedJob>) {
        let grace = tokio::time::sleep(self.config.shutdown_grace);
        tokio::pin!(grace);
        while !tasks.is_empty() {
            tokio::select! {
                Some(done) = tasks.join_next_with_id() => {
                    running.remove(&finished(done));
                }
                _ = &mut grace => break,
            }
        }
        tasks.shutdown().await;
        // One transaction for all, and bounded: a locked database must not hold up the exit
        // (a job not released runs again once its lease ends).
        let jobs: Vec<ClaimedJob> = running.into_values().collect();
        match tokio::time::timeout(Duration::from_secs(2), self.store.release_jobs(&jobs)).await {
            Ok(Ok(released)) => tracing::info!(released, "running jobs released at shutdown"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing jobs failed; they run again after their lease"),
            Err(_) => tracing::warn!("releasing jobs timed out; they run again after their lease"),
        }
    }

    async fn claim(&self, limit: u32) -> Result<Vec<ClaimedJob>, StoreError> {
        self.store.claim_jobs(self.config.lease.as_millis() as i64, limit).await
    }

    async fn idle_time(&self) -> Duration {
        let poll = self.config.poll_interval;
        match self.store.next_due_at().await {
            Ok(Some(due)) => Duration::from_millis((due - now_ms()).clamp(1, poll.as_millis() as i64) as u64),
            _ => poll,
        }
    }

    /// One attempt at `job`, bounded by `job_timeout`, its lease renewed while it runs; then the
    /// outcome is recorded. Everything it logs is in a `job` span naming the message.
    async fn execute(self: Arc<Self>, job: ClaimedJob) {
        let span =
            tracing::info_span!("job", bridge_message_id = %job.message_id, kind = job.kind.as_str(), attempt = job.attempt);
        self.execute_in_span(job).instrument(span).await
    }

    async fn execute_in_span(self: Arc<Self>, job: ClaimedJob) {
        // A panic in an adapter is a bug, but it must fail this message alone: caught, it is a
        // permanent failure recorded like any other, instead of a job that runs again forever.
        let attempt = std::panic::AssertUnwindSafe(self.attempt(&job)).catch_unwind();
        tokio::pin!(attempt);
        let deadline = tokio::time::sleep(self.config.job_timeout);
        tokio::pin!(deadline);
        let mut renew = tokio::time::interval(self.config.lease / 3);
        renew.tick().await; // the first tick is immediate
        let outcome = loop {
            tokio::select! {
                outcome = &mut attempt => break outcome.unwrap_or_else(|panic| Err(DeliveryError::Permanent {
                    code: None,
                    reason: format!("internal error: {}", panic_text(&*panic)),
                })),
                _ = &mut deadline => break Err(DeliveryError::Retry {
                    reason: format!("timed out after {} s", self.config.job_timeout.as_secs()),
                    after: None,
                }),
                _ = renew.tick() => {
                    match self.store.renew_lease(&job, self.config.lease.as_millis() as i64).await {
                        Ok(true) => {}
                        // The lease ran out and another worker holds the job now: stop, so it is
                        // not sent twice at once; that worker records the outcome.
                        Ok(false) => {
                            tracing::warn!(job = job.id, "lease lost; attempt abandoned");
                            return;
                        }
                        Err(e) => tracing::warn!(job = job.id, error = %e, "renewing a job's lease failed"),
                    }
                }
            }
        };
        if let Err(e) = self.record(&job, outcome).await {
            tracing::error!(error = %e, job = job.id, "recording a job outcome failed; its lease will expire and it runs again");
        }
    }

    async fn attempt(&self, job: &ClaimedJob) -> Result<Delivered, DeliveryError> {
        let event_id = match job.kind {
            JobKind::DeliverInbound => self.deliver_inbound(job).await?,
            JobKind::DeliverOutbound => return self.deliver_outbound(job).await,
            JobKind::ReportStatus => self.report_status(job).await?,
        };
        Ok(Delivered { event_id, last_part: None })
    }

    async fn record(&self, job: &ClaimedJob, outcome: Result<Delivered, DeliveryError>) -> Result<(), StoreError> {
        let attempt = Attempt::of(&outcome, job.attempt >= self.config.max_attempts);
        match outcome {
            Ok(Delivered { event_id, last_part }) => {
                tracing::info!(job = job.id, event = %event_id, "delivered");
                self.store.complete_job_after_parts(job, Some(&event_id), last_part).await?;
            }
            Err(DeliveryError::Permanent { code, reason }) => {
                tracing::warn!(job = job.id, code = ?code, error = %reason, "delivery failed for good");
                self.store.fail_job(job, code.as_ref(), &reason).await?;
            }
            Err(DeliveryError::Retry { reason, after }) => {
                if job.attempt >= self.config.max_attempts {
                    let error = format!("gave up after {} attempts: {reason}", job.attempt);
                    tracing::warn!(job = job.id, %error, "delivery failed for good");
                    self.store.fail_job(job, None, &error).await?;
                } else {
                    let delay =
                        backoff(job.attempt, self.config.retry_base, self.config.retry_max).max(after.unwrap_or_default());
                    tracing::info!(job = job.id, attempt = job.attempt, delay_ms = delay.as_millis() as u64, %reason, "will retry");
                    self.store.reschedule_job(job, now_ms() + delay.as_millis() as i64, &reason).await?;
                }
            }
        }
        self.signals.metrics().job_done(job.kind, &job.message_id, &attempt);
        self.signals.changed(&job.message_id);
        Ok(())
    }

    async fn deliver_inbound(&self, job: &ClaimedJob) -> Result<String, DeliveryError> {
        let (record, contact) = (&job.message, &job.contact);
        let msg: InboundMessage = serde_json::from_str(&record.payload)
            .map_err(|e| DeliveryError::Permanent { code: None, reason: format!("stored message is unreadable: {e}") })?;
        self.platform.deliver_inbound(contact, &msg, &record.id, job.attempt).await
    }

    /// Sends the parts not yet sent, recording each as it is accepted, so a retry after a
    /// failure in the middle of a long text resumes there instead of repeating earlier parts.
    /// The last part is recorded with the delivery itself (one write fewer per message).
    async fn deliver_outbound(&self, job: &ClaimedJob) -> Result<Delivered, DeliveryError> {
        let (record, contact) = (&job.message, &job.contact);
        let outbound = outbound_record(&record.payload)?;
        let parts: Vec<_> = outbound.pieces().flat_map(|piece| self.channel.split(piece)).collect();
        let done = record.parts_sent.max(0) as usize;
        self.channel.check_window(contact, parts.len().saturating_sub(done))?;
        let mut last_part = None;
        for (i, part) in parts.iter().enumerate().skip(done) {
            self.channel.send(contact, part).await?;
            let sent = i as i64 + 1;
            if i + 1 < parts.len() {
                self.store.record_part_sent(&record.id, contact.id, sent).await?;
            }
            last_part = Some(sent);
        }
        Ok(Delivered { event_id: outbound.platform_event_id, last_part })
    }

    async fn report_status(&self, job: &ClaimedJob) -> Result<String, DeliveryError> {
        let (record, contact) = (&job.message, &job.contact);
        let outbound = outbound_record(&record.payload)?;
        let delivered = record.status == MessageStatus::Delivered;
        let report = StatusReport {
            bridge_message_id: record.id.clone(),
            platform_event_id: outbound.platform_event_id,
            delivered,
            error: (!delivered).then(|| ErrorInfo {
                explanation: record.error_code.as_ref().and_then(|code| self.channel.explain(code)).map(str::to_string),
                code: record.error_code.clone(),
                message: record.last_error.clone().unwrap_or_default(),
            }),
            client_reference: outbound.client_reference,
            report_seq: job.id,
        };
        self.platform.report_status(contact, &outbound.conversation_id, &report).await
    }
}

/// A successful attempt: the id the other side gave the message, and for an outbound message
/// the number of its last part sent by this attempt (recorded with the completion).
struct Delivered {
    event_id: String,
    last_part: Option<i64>,
}

/// A panic's message, when it has one.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// The task that ended (a panicked job's lease simply runs out, and it is claimed again).
fn finished(done: Result<(task::Id, ()), task::JoinError>) -> task::Id {
    match done {
        Ok((id, ())) => id,
        Err(e) => {
            tracing::error!(error = %e, "a job's task ended abnormally");
            e.id()
        }
    }
}

fn outbound_record(payload: &str) -> Result<OutboundRecord, DeliveryError> {
    serde_json::from_str(payload)
        .map_err(|e| DeliveryError::Permanent { code: None, reason: format!("stored message is unreadable: {e}") })
}

/// Exponential backoff with "equal jitter": half the exponential delay plus a random part of
/// the other half, so retries of many jobs spread out instead of arriving together.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(max);
    let half = exp / 2;
    half + rand::rng().random_range(Duration::ZERO..=half)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::message::{BridgeMessageId, Contact, OutboundMessage};
    use crate::store::{Accepted, NewMessage, WindowChange};
    use futures_util::future::BoxFuture;

    /// A platform whose adapter has a bug: it panics on every delivery.
    struct PanickingPlatform;

    impl Platform for PanickingPlatform {
        fn name(&self) -> &'static str {
            "broken"
        }
        fn link_kinds(&self) -> &'static [&'static str] {
            &[]
        }
        fn deliver_inbound<'a>(
            &'a self,
            _: &'a Contact,
            _: &'a InboundMessage,
            _: &'a BridgeMessageId,
            _: u32,
        ) -> BoxFuture<'a, Result<String, DeliveryError>> {
            Box::pin(async { panic!("adapter bug") })
        }
        fn report_status<'a>(
            &'a self,
            _: &'a Contact,
            _: &'a str,
            _: &'a StatusReport,
        ) -> BoxFuture<'a, Result<String, DeliveryError>> {
            Box::pin(async { panic!("adapter bug") })
        }
    }

    struct NoChannel;

    impl Channel for NoChannel {
        fn split(&self, msg: &OutboundMessage) -> Vec<OutboundMessage> {
            vec![msg.clone()]
        }
        fn check_window(&self, _: &Contact, _: usize) -> Result<(), DeliveryError> {
            Ok(())
        }
        fn send<'a>(&'a self, _: &'a Contact, _: &'a OutboundMessage) -> BoxFuture<'a, Result<(), DeliveryError>> {
            Box::pin(async { Ok(()) })
        }
        fn fetch_media<'a>(
            &'a self,
            _: &'a crate::relay::message::Media,
        ) -> BoxFuture<'a, Result<crate::relay::MediaFile, DeliveryError>> {
            Box::pin(async { Err(DeliveryError::Permanent { code: None, reason: "no media".into() }) })
        }
        fn explain(&self, _: &crate::relay::ids::ErrorCode) -> Option<&'static str> {
            None
        }
    }

    #[tokio::test]
    async fn a_panicking_adapter_fails_its_message_alone_instead_of_retrying_forever() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("w.db").display())).await.unwrap();
        store.migrate().await.unwrap();
        let payload = serde_json::to_string(&InboundMessage {
            account: "gh".into(),
            sender: "o_1".into(),
            msg_type: "text".into(),
            msg_id: Some("1".into()),
            create_time: 0,
            content: "hi".into(),
            media: None,
            location: None,
            link: None,
            file: None,
            event: None,
        })
        .unwrap();
        let message = NewMessage {
            channel: "test",
            channel_id: "o_1",
            account: "gh",
            direction: crate::relay::message::Direction::Inbound,
            source: "test",
            external_id: "1",
            msg_type: "text",
            payload: &payload,
            kind: JobKind::DeliverInbound,
            window: WindowChange::Keep,
            nonce: None,
            idempotency: None,
        };
        let Accepted::New(id) = store.accept(&message).await.unwrap() else { panic!("stored") };
        let worker = Arc::new(Worker::new(
            store.clone(),
            Arc::new(PanickingPlatform),
            Arc::new(NoChannel),
            RelayConfig::default(),
            Signals::default(),
        ));
        assert_eq!(worker.run_once().await.unwrap(), 1);
        let record = store.message(&id).await.unwrap();
        assert_eq!(record.status, "failed");
        assert!(record.last_error.unwrap().contains("adapter bug"));
        assert_eq!(store.outbox_depth().await.unwrap(), 0, "nothing left to run again");
    }

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_cap() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for _ in 0..100 {
            let first = backoff(1, base, max);
            assert!(first >= Duration::from_millis(500) && first <= base);
            let fourth = backoff(4, base, max);
            assert!(fourth >= Duration::from_secs(4) && fourth <= Duration::from_secs(8));
            let late = backoff(30, base, max);
            assert!(late >= Duration::from_secs(30) && late <= max);
        }
    }
}
