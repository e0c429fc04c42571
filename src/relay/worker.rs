//! The outbox worker: claims due jobs, delivers them, and records the outcome. Failures are
//! retried with exponential backoff and jitter (honouring Retry-After); a permanent error or too
//! many attempts marks the message `failed`. Tests drive it step by step with `run_once`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;

use super::message::{ErrorInfo, InboundMessage, OutboundRecord, StatusReport};
use super::{Channel, DeliveryError, Platform, Signals};
use crate::config::RelayConfig;
use crate::store::{ClaimedJob, JobKind, Store, StoreError, now_ms};

/// Delivers outbox jobs to the platform and the channel.
pub struct Worker<P, C> {
    store: Store,
    platform: Arc<P>,
    channel: Arc<C>,
    config: RelayConfig,
    signals: Signals,
}

impl<P: Platform, C: Channel> Worker<P, C> {
    pub fn new(store: Store, platform: Arc<P>, channel: Arc<C>, config: RelayConfig, signals: Signals) -> Self {
        Self { store, platform, channel, config, signals }
    }

    /// Claims one batch of due jobs and runs them (concurrently: at most one per contact and
    /// lane is ever claimed, so order is kept). Returns how many jobs it ran.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let lease_ms = self.config.lease.as_millis() as i64;
        let jobs = self.store.claim_jobs(lease_ms, self.config.batch_size).await?;
        let count = jobs.len();
        let runs = jobs.into_iter().map(|job| self.run_job(job));
        for result in futures_util::future::join_all(runs).await {
            if let Err(e) = result {
                tracing::error!(error = %e, "recording a job outcome failed; its lease will expire and it runs again");
            }
        }
        Ok(count)
    }

    /// Runs until `shutdown` resolves: works while there is work, otherwise sleeps until woken
    /// by a new message, until the next job is due, or for the poll interval.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let idle = match self.run_once().await {
                Ok(0) => self.idle_time().await,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming jobs failed");
                    self.config.poll_interval
                }
            };
            if idle.is_zero() {
                continue;
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.signals.work_queued() => {}
                _ = tokio::time::sleep(idle) => {}
            }
        }
    }

    async fn idle_time(&self) -> Duration {
        let poll = self.config.poll_interval;
        match self.store.next_due_at().await {
            Ok(Some(due)) => Duration::from_millis((due - now_ms()).clamp(1, poll.as_millis() as i64) as u64),
            _ => poll,
        }
    }

    async fn run_job(&self, job: ClaimedJob) -> Result<(), StoreError> {
        let outcome = match job.kind {
            JobKind::DeliverInbound => self.deliver_inbound(&job).await,
            JobKind::DeliverOutbound => self.deliver_outbound(&job).await,
            JobKind::ReportStatus => self.report_status(&job).await,
        };
        match outcome {
            Ok(event_id) => {
                tracing::info!(job = job.id, message = %job.message_id, event = %event_id, "delivered");
                self.store.complete_job(&job, Some(&event_id)).await?;
            }
            Err(DeliveryError::Permanent { code, reason }) => {
                tracing::warn!(job = job.id, message = %job.message_id, code = ?code, error = %reason, "delivery failed for good");
                self.store.fail_job(&job, code.as_deref(), &reason).await?;
            }
            Err(DeliveryError::Retry { reason, after }) => {
                if job.attempt >= self.config.max_attempts {
                    let error = format!("gave up after {} attempts: {reason}", job.attempt);
                    tracing::warn!(job = job.id, message = %job.message_id, %error, "delivery failed for good");
                    self.store.fail_job(&job, None, &error).await?;
                } else {
                    let delay =
                        backoff(job.attempt, self.config.retry_base, self.config.retry_max).max(after.unwrap_or_default());
                    tracing::info!(job = job.id, attempt = job.attempt, delay_ms = delay.as_millis() as u64, %reason, "will retry");
                    self.store.reschedule_job(&job, now_ms() + delay.as_millis() as i64, &reason).await?;
                }
            }
        }
        self.signals.changed(&job.message_id);
        Ok(())
    }

    async fn deliver_inbound(&self, job: &ClaimedJob) -> Result<String, DeliveryError> {
        let record = self.store.message(&job.message_id).await.map_err(retry_store)?;
        let contact = self.store.contact(job.contact_id).await.map_err(retry_store)?;
        let msg: InboundMessage = serde_json::from_str(&record.payload)
            .map_err(|e| DeliveryError::Permanent { code: None, reason: format!("stored message is unreadable: {e}") })?;
        self.platform.deliver_inbound(&contact, &msg, &record.id).await
    }

    /// Sends the parts not yet sent, recording each as it is accepted, so a retry after a
    /// failure in the middle of a long text resumes there instead of repeating earlier parts.
    async fn deliver_outbound(&self, job: &ClaimedJob) -> Result<String, DeliveryError> {
        let record = self.store.message(&job.message_id).await.map_err(retry_store)?;
        let contact = self.store.contact(job.contact_id).await.map_err(retry_store)?;
        let outbound = outbound_record(&record.payload)?;
        let parts = self.channel.split(&outbound.message);
        let done = record.parts_sent.max(0) as usize;
        self.channel.check_window(&contact, parts.len().saturating_sub(done))?;
        for (i, part) in parts.iter().enumerate().skip(done) {
            self.channel.send(&contact, part).await?;
            self.store.record_part_sent(&record.id, contact.id, i as i64 + 1).await.map_err(retry_store)?;
        }
        Ok(outbound.platform_event_id)
    }

    async fn report_status(&self, job: &ClaimedJob) -> Result<String, DeliveryError> {
        let record = self.store.message(&job.message_id).await.map_err(retry_store)?;
        let contact = self.store.contact(job.contact_id).await.map_err(retry_store)?;
        let outbound = outbound_record(&record.payload)?;
        let delivered = record.status == "delivered";
        let report = StatusReport {
            bridge_message_id: record.id.clone(),
            platform_event_id: outbound.platform_event_id,
            delivered,
            error: (!delivered)
                .then(|| ErrorInfo { code: record.error_code.clone(), message: record.last_error.clone().unwrap_or_default() }),
        };
        self.platform.report_status(&contact, &outbound.conversation_id, &report).await
    }
}

fn outbound_record(payload: &str) -> Result<OutboundRecord, DeliveryError> {
    serde_json::from_str(payload)
        .map_err(|e| DeliveryError::Permanent { code: None, reason: format!("stored message is unreadable: {e}") })
}

fn retry_store(e: StoreError) -> DeliveryError {
    DeliveryError::Retry { reason: e.to_string(), after: None }
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
