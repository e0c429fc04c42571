//! The outbox: jobs claimed with a lease, run in order per contact and lane, retried with
//! backoff, and marked `failed` for good when they cannot succeed (DESIGN.md "Flow" 2, 3).

use sqlx::{Row, SqliteConnection};

use super::{Store, StoreError, now_ms};
use crate::relay::ids::{BridgeMessageId, ContactId, ErrorCode};

/// Which way a job sends. Order is kept per contact *and* lane, so a customer whose replies are
/// stuck (WeChat down) still reaches the agents, and the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Towards the platform (Vonage).
    Platform,
    /// Towards the channel (WeChat).
    Channel,
}

impl Lane {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Lane::Platform => "platform",
            Lane::Channel => "channel",
        }
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Post an inbound channel message into the contact's platform conversation.
    DeliverInbound,
    /// Send an outbound platform message to the contact on the channel.
    DeliverOutbound,
    /// Report an outbound message's outcome back into its platform conversation.
    ReportStatus,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::DeliverInbound => "deliver_inbound",
            JobKind::DeliverOutbound => "deliver_outbound",
            JobKind::ReportStatus => "report_status",
        }
    }

    pub fn lane(self) -> Lane {
        match self {
            JobKind::DeliverInbound | JobKind::ReportStatus => Lane::Platform,
            JobKind::DeliverOutbound => Lane::Channel,
        }
    }

    /// Whether the job's outcome is its message's status (a status report's is not).
    fn decides_message_status(self) -> bool {
        !matches!(self, JobKind::ReportStatus)
    }

    fn parse(s: &str) -> Option<Self> {
        [JobKind::DeliverInbound, JobKind::DeliverOutbound, JobKind::ReportStatus].into_iter().find(|k| k.as_str() == s)
    }
}

/// A job this worker holds until `lease` ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    pub id: i64,
    pub message_id: BridgeMessageId,
    pub contact_id: ContactId,
    pub kind: JobKind,
    /// Attempts including this one.
    pub attempt: u32,
    claim_token: String,
}

pub(super) async fn insert(
    tx: &mut SqliteConnection,
    message_id: &BridgeMessageId,
    contact_id: ContactId,
    kind: JobKind,
    now: i64,
) -> Result<(), sqlx::Error> {
    // The head of its lane when nothing older of the contact is unfinished (see `claim_on`).
    sqlx::query(
        "INSERT INTO jobs (message_id, contact_id, lane, kind, state, due_at, created_at, head)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, NOT EXISTS (
             SELECT 1 FROM jobs e WHERE e.contact_id = ?2 AND e.lane = ?3 AND e.state IN ('pending', 'running')))",
    )
    .bind(message_id)
    .bind(contact_id)
    .bind(kind.lane().as_str())
    .bind(kind.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Ends `job` as `state` (`done` or `failed`, with `error`) if this claim still holds it; the
/// oldest unfinished job left in its contact's lane becomes the head, free to be claimed.
/// False when the lease had been lost.
async fn end_job(tx: &mut SqliteConnection, job: &ClaimedJob, state: &str, error: Option<&str>) -> Result<bool, sqlx::Error> {
    let ended = sqlx::query(
        "UPDATE jobs SET state = ?, head = 0, last_error = ?, claim_token = NULL
         WHERE id = ? AND claim_token = ? AND state = 'running'",
    )
    .bind(state)
    .bind(error)
    .bind(job.id)
    .bind(&job.claim_token)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if ended {
        sqlx::query(
            "UPDATE jobs SET head = 1 WHERE id = (
                 SELECT MIN(id) FROM jobs WHERE contact_id = ? AND lane = ? AND state IN ('pending', 'running'))",
        )
        .bind(job.contact_id)
        .bind(job.kind.lane().as_str())
        .execute(&mut *tx)
        .await?;
    }
    Ok(ended)
}

/// An outbound message's outcome goes back to the platform: queued in the same transaction
/// that records it, so a crash cannot lose the report.
async fn report_outcome(tx: &mut SqliteConnection, job: &ClaimedJob) -> Result<(), sqlx::Error> {
    if job.kind == JobKind::DeliverOutbound {
        insert(tx, &job.message_id, job.contact_id, JobKind::ReportStatus, now_ms()).await?;
    }
    Ok(())
}

impl Store {
    /// Claims up to `limit` due jobs for `lease_ms`: only the oldest unfinished job of each
    /// contact and lane is eligible (its `head`, kept as jobs finish), which keeps per-contact
    /// order and lets different contacts run in parallel; the claim reads only due heads, however
    /// long the backlog. A job whose lease ran out (its worker died) is due again.
    pub async fn claim_jobs(&self, lease_ms: i64, limit: u32) -> Result<Vec<ClaimedJob>, StoreError> {
        self.writer.write(move |tx| Box::pin(claim_on(tx, lease_ms, limit))).await
    }

    /// The job succeeded: the message is delivered (with the id the other side gave it).
    /// Returns false when the lease had been lost and another worker owns the job now.
    pub async fn complete_job(&self, job: &ClaimedJob, platform_event_id: Option<&str>) -> Result<bool, StoreError> {
        let (job, event) = (job.clone(), platform_event_id.map(str::to_string));
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    let done = end_job(tx, &job, "done", None).await?;
                    if done && job.kind.decides_message_status() {
                        sqlx::query(
                            "UPDATE messages SET status = 'delivered', delivered_at = ?, platform_event_id = COALESCE(?, platform_event_id),
                             last_error = NULL, error_code = NULL WHERE id = ?",
                        )
                        .bind(now_ms())
                        .bind(event)
                        .bind(&job.message_id)
                        .execute(&mut *tx)
                        .await?;
                        report_outcome(tx, &job).await?;
                    }
                    Ok(done)
                })
            })
            .await
    }

    /// The attempt failed but may succeed later: run again at `due_at`.
    pub async fn reschedule_job(&self, job: &ClaimedJob, due_at: i64, error: &str) -> Result<bool, StoreError> {
        let (job, error) = (job.clone(), error.to_string());
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    let rescheduled = sqlx::query(
                        "UPDATE jobs SET state = 'pending', due_at = ?, last_error = ?, claim_token = NULL
                         WHERE id = ? AND claim_token = ? AND state = 'running'",
                    )
                    .bind(due_at)
                    .bind(&error)
                    .bind(job.id)
                    .bind(&job.claim_token)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if rescheduled {
                        sqlx::query("UPDATE messages SET last_error = ? WHERE id = ?")
                            .bind(&error)
                            .bind(&job.message_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Ok(rescheduled)
                })
            })
            .await
    }

    /// The job cannot succeed (a permanent error, or too many attempts): mark it and its message
    /// `failed`, visible and retryable from the admin API.
    pub async fn fail_job(&self, job: &ClaimedJob, code: Option<&ErrorCode>, error: &str) -> Result<bool, StoreError> {
        let (job, code, error) = (job.clone(), code.cloned(), error.to_string());
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    let failed = end_job(tx, &job, "failed", Some(&error)).await?;
                    if failed && job.kind.decides_message_status() {
                        sqlx::query("UPDATE messages SET status = 'failed', last_error = ?, error_code = ? WHERE id = ?")
                            .bind(&error)
                            .bind(&code)
                            .bind(&job.message_id)
                            .execute(&mut *tx)
                            .await?;
                        report_outcome(tx, &job).await?;
                    }
                    Ok(failed)
                })
            })
            .await
    }

    /// The job is still running: extend its lease by `lease_ms` from now. False when the lease
    /// was lost (it ran out and another worker claimed the job).
    pub async fn renew_lease(&self, job: &ClaimedJob, lease_ms: i64) -> Result<bool, StoreError> {
        let job = job.clone();
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    let renewed =
                        sqlx::query("UPDATE jobs SET due_at = ? WHERE id = ? AND claim_token = ? AND state = 'running'")
                            .bind(now_ms() + lease_ms)
                            .bind(job.id)
                            .bind(&job.claim_token)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected()
                            == 1;
                    Ok(renewed)
                })
            })
            .await
    }

    /// The worker stops before these jobs finished (shutdown): hand them back, due now, so the
    /// next start or another instance runs them without waiting for their leases. Jobs that
    /// finished meanwhile, or whose lease another worker took, are left alone. Returns how many
    /// were released.
    pub async fn release_jobs(&self, jobs: &[ClaimedJob]) -> Result<u64, StoreError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let jobs = jobs.to_vec();
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    let mut released = 0;
                    for job in &jobs {
                        released += sqlx::query(
                            "UPDATE jobs SET state = 'pending', due_at = ?, claim_token = NULL
                             WHERE id = ? AND claim_token = ? AND state = 'running'",
                        )
                        .bind(now_ms())
                        .bind(job.id)
                        .bind(&job.claim_token)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    }
                    Ok(released)
                })
            })
            .await
    }

    /// Puts a `failed` message's job back in the queue, due now, with a fresh attempt count.
    /// Returns false when the message is not failed.
    pub async fn retry_message(&self, message_id: &BridgeMessageId) -> Result<bool, StoreError> {
        let message_id = message_id.clone();
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    let retried = sqlx::query(
                        "UPDATE jobs SET state = 'pending', due_at = ?, attempts = 0
                         WHERE message_id = ? AND state = 'failed' AND kind != 'report_status'",
                    )
                    .bind(now_ms())
                    .bind(&message_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        > 0;
                    if retried {
                        sqlx::query("UPDATE messages SET status = 'stored', attempts = 0 WHERE id = ?")
                            .bind(&message_id)
                            .execute(&mut *tx)
                            .await?;
                        // The revived job is older than the lane's current head: it goes first
                        // again, as before it failed (a running head finishes its attempt).
                        sqlx::query(
                            "UPDATE jobs SET head = (id = (
                                 SELECT MIN(e.id) FROM jobs e
                                 WHERE e.contact_id = jobs.contact_id AND e.lane = jobs.lane AND e.state IN ('pending', 'running')))
                             WHERE state IN ('pending', 'running')
                               AND (contact_id, lane) IN (SELECT contact_id, lane FROM jobs WHERE message_id = ?)",
                        )
                        .bind(&message_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Ok(retried)
                })
            })
            .await
    }

    /// Jobs not yet finished (pending or running): the outbox depth.
    pub async fn outbox_depth(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')").fetch_one(self.pool()).await?.get(0))
    }

    /// Jobs claimed by a worker and not finished.
    pub async fn running_jobs(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM jobs WHERE state = 'running'").fetch_one(self.pool()).await?.get(0))
    }

    /// When the next pending job is due, if any (lets an idle worker sleep exactly that long).
    pub async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query("SELECT MIN(due_at) FROM jobs WHERE state IN ('pending', 'running')").fetch_one(self.pool()).await?.get(0))
    }
}

/// `Store::claim_jobs`'s writes, on the batch's connection.
async fn claim_on(tx: &mut SqliteConnection, lease_ms: i64, limit: u32) -> Result<Vec<ClaimedJob>, StoreError> {
    let now = now_ms();
    let token = uuid::Uuid::new_v4().to_string();
    let rows = sqlx::query(
        "UPDATE jobs SET state = 'running', due_at = ?1, claim_token = ?2, attempts = attempts + 1
         WHERE id IN (
             SELECT j.id FROM jobs j
             WHERE j.head = 1 AND j.state IN ('pending', 'running') AND j.due_at <= ?3
             ORDER BY j.due_at LIMIT ?4)
         RETURNING id, message_id, contact_id, kind, attempts",
    )
    .bind(now + lease_ms)
    .bind(&token)
    .bind(now)
    .bind(limit as i64)
    .fetch_all(&mut *tx)
    .await?;
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.get(0);
        let message_id: BridgeMessageId = row.get(1);
        let attempt: i64 = row.get(4);
        let kind: String = row.get(3);
        let kind = JobKind::parse(&kind).ok_or_else(|| StoreError::NotFound(format!("job kind {kind}")))?;
        // A message's attempts are its delivery's, not those of the report of its outcome.
        if kind.decides_message_status() {
            sqlx::query("UPDATE messages SET attempts = ? WHERE id = ?")
                .bind(attempt)
                .bind(&message_id)
                .execute(&mut *tx)
                .await?;
        }
        jobs.push(ClaimedJob {
            id,
            message_id,
            contact_id: row.get(2),
            kind,
            attempt: attempt as u32,
            claim_token: token.clone(),
        });
    }
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}
