//! The outbox's statements (see `store/jobs.rs` for what jobs are).

use std::collections::HashMap;

use super::super::{Conn, Engine, Row, dialect, query};
use super::{contact_from_row, count_window_send, lock_contact, message_from_row, select_contacts, select_messages};
use crate::relay::ids::{BridgeMessageId, ContactId, ErrorCode};
use crate::relay::message::{Contact, ContactLinks};
use crate::store::jobs::JobKey;
use crate::store::{ClaimedJob, JobKind, MessageRecord, StoreError, now_ms};

pub(super) async fn insert(
    tx: &mut Conn,
    message_id: &BridgeMessageId,
    contact_id: ContactId,
    kind: JobKind,
    now: i64,
) -> Result<(), StoreError> {
    // The head of its lane when nothing older of the contact is unfinished (see `claim_on`).
    // The caller holds the contact's row (accept's upsert, `end_job`'s lock).
    query(
        "INSERT INTO jobs (message_id, contact_id, lane, kind, state, due_at, created_at, head)
         VALUES ($1, $2, $3, $4, 'pending', $5, $5, CASE WHEN EXISTS (
             SELECT 1 FROM jobs e WHERE e.contact_id = $2 AND e.lane = $3 AND e.state IN ('pending', 'running')) THEN 0 ELSE 1 END)",
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
async fn end_job(tx: &mut Conn, job: &JobKey, state: &str, error: Option<&str>) -> Result<bool, StoreError> {
    // First the contact, then its jobs: the order every writer of heads takes them in.
    lock_contact(tx, job.contact_id).await?;
    let ended = query(
        "UPDATE jobs SET state = $1, head = 0, last_error = $2, claim_token = NULL
         WHERE id = $3 AND claim_token = $4 AND state = 'running'",
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
        query(
            "UPDATE jobs SET head = 1 WHERE id = (
                 SELECT MIN(id) FROM jobs WHERE contact_id = $1 AND lane = $2 AND state IN ('pending', 'running'))",
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
async fn report_outcome(tx: &mut Conn, job: &JobKey) -> Result<(), StoreError> {
    if job.kind == JobKind::DeliverOutbound {
        insert(tx, &job.message_id, job.contact_id, JobKind::ReportStatus, now_ms()).await?;
    }
    Ok(())
}

impl Engine {
    pub(in crate::store) async fn claim_jobs(&self, lease_ms: i64, limit: u32) -> Result<Vec<ClaimedJob>, StoreError> {
        self.write(move |tx| Box::pin(claim_on(tx, lease_ms, limit))).await
    }

    pub(in crate::store) async fn complete_job_after_parts(
        &self,
        job: &ClaimedJob,
        platform_event_id: Option<&str>,
        last_part: Option<i64>,
    ) -> Result<bool, StoreError> {
        let (job, event) = (job.key(), platform_event_id.map(str::to_string));
        self.write(move |tx| {
            let (job, event) = (job.clone(), event.clone());
            Box::pin(async move {
                let done = end_job(tx, &job, "done", None).await?;
                if done && job.kind.decides_message_status() {
                    query(
                        "UPDATE messages SET status = 'delivered', delivered_at = $1, platform_event_id = COALESCE($2, platform_event_id),
                         last_error = NULL, error_code = NULL, parts_sent = COALESCE($3, parts_sent) WHERE id = $4",
                    )
                    .bind(now_ms())
                    .bind(event)
                    .bind(last_part)
                    .bind(&job.message_id)
                    .execute(&mut *tx)
                    .await?;
                    if last_part.is_some() {
                        // The last part counts against the reply window like the others.
                        count_window_send(tx, job.contact_id).await?;
                    }
                    report_outcome(tx, &job).await?;
                }
                Ok(done)
            })
        })
        .await
    }

    pub(in crate::store) async fn reschedule_job(&self, job: &ClaimedJob, due_at: i64, error: &str) -> Result<bool, StoreError> {
        let (job, error) = (job.key(), error.to_string());
        self.write(move |tx| {
            let (job, error) = (job.clone(), error.clone());
            Box::pin(async move {
                let rescheduled = query(
                    "UPDATE jobs SET state = 'pending', due_at = $1, last_error = $2, claim_token = NULL
                     WHERE id = $3 AND claim_token = $4 AND state = 'running'",
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
                    query("UPDATE messages SET last_error = $1 WHERE id = $2")
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

    pub(in crate::store) async fn fail_job(
        &self,
        job: &ClaimedJob,
        code: Option<&ErrorCode>,
        error: &str,
    ) -> Result<bool, StoreError> {
        let (job, code, error) = (job.key(), code.cloned(), error.to_string());
        self.write(move |tx| {
            let (job, code, error) = (job.clone(), code.clone(), error.clone());
            Box::pin(async move {
                let failed = end_job(tx, &job, "failed", Some(&error)).await?;
                if failed && job.kind.decides_message_status() {
                    query("UPDATE messages SET status = 'failed', last_error = $1, error_code = $2 WHERE id = $3")
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

    pub(in crate::store) async fn renew_lease(&self, job: &ClaimedJob, lease_ms: i64) -> Result<bool, StoreError> {
        let job = job.key();
        self.write(move |tx| {
            let job = job.clone();
            Box::pin(async move {
                let renewed = query("UPDATE jobs SET due_at = $1 WHERE id = $2 AND claim_token = $3 AND state = 'running'")
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

    pub(in crate::store) async fn release_jobs(&self, jobs: &[ClaimedJob]) -> Result<u64, StoreError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let jobs: Vec<JobKey> = jobs.iter().map(ClaimedJob::key).collect();
        self.write(move |tx| {
            let jobs = jobs.clone();
            Box::pin(async move {
                let mut released = 0;
                for job in &jobs {
                    released += query(
                        "UPDATE jobs SET state = 'pending', due_at = $1, claim_token = NULL
                         WHERE id = $2 AND claim_token = $3 AND state = 'running'",
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

    pub(in crate::store) async fn retry_message(&self, message_id: &BridgeMessageId) -> Result<bool, StoreError> {
        let message_id = message_id.clone();
        self.write(move |tx| {
            let message_id = message_id.clone();
            Box::pin(async move {
                let Some(contact) =
                    query("SELECT contact_id FROM messages WHERE id = $1").bind(&message_id).fetch_optional(&mut *tx).await?
                else {
                    return Ok(false);
                };
                lock_contact(tx, contact.get(0)).await?;
                let retried = query(
                    "UPDATE jobs SET state = 'pending', due_at = $1, attempts = 0
                     WHERE message_id = $2 AND state = 'failed' AND kind != 'report_status'",
                )
                .bind(now_ms())
                .bind(&message_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                if retried {
                    query("UPDATE messages SET status = 'stored', attempts = 0 WHERE id = $1")
                        .bind(&message_id)
                        .execute(&mut *tx)
                        .await?;
                    // The revived job is older than the lane's current head: it goes first
                    // again, as before it failed (a running head finishes its attempt).
                    query(
                        "UPDATE jobs SET head = CASE WHEN id = (
                             SELECT MIN(e.id) FROM jobs e
                             WHERE e.contact_id = jobs.contact_id AND e.lane = jobs.lane AND e.state IN ('pending', 'running'))
                             THEN 1 ELSE 0 END
                         WHERE state IN ('pending', 'running')
                           AND (contact_id, lane) IN (SELECT contact_id, lane FROM jobs WHERE message_id = $1)",
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

    pub(in crate::store) async fn outbox_depth(&self) -> Result<i64, StoreError> {
        Ok(query("SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')").fetch_one(&self.pool).await?.get(0))
    }

    pub(in crate::store) async fn running_jobs(&self) -> Result<i64, StoreError> {
        Ok(query("SELECT COUNT(*) FROM jobs WHERE state = 'running'").fetch_one(&self.pool).await?.get(0))
    }

    pub(in crate::store) async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        // Only a head can be due: the others wait for the jobs before them (`jobs_heads_due`).
        Ok(query("SELECT MIN(due_at) FROM jobs WHERE head = 1 AND state IN ('pending', 'running')")
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }
}

/// `Engine::claim_jobs`'s writes, and the reads that give each job its message and contact: a
/// fixed number of statements per claim, however many jobs it takes.
async fn claim_on(tx: &mut Conn, lease_ms: i64, limit: u32) -> Result<Vec<ClaimedJob>, StoreError> {
    let now = now_ms();
    let token = uuid::Uuid::new_v4().to_string();
    let rows =
        query(dialect::CLAIM).bind(now + lease_ms).bind(&token).bind(now).bind(i64::from(limit)).fetch_all(&mut *tx).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // A message's attempts are its delivery's, not those of the report of its outcome.
    // Joins, not `IN (SELECT …)`: SQLite builds a temporary index for each such subquery. A
    // claim holds at most one delivery job per message (a message's report job is another kind).
    query(
        "UPDATE messages SET attempts = j.attempts FROM jobs j
         WHERE j.message_id = messages.id AND j.claim_token = $1 AND j.kind != 'report_status'",
    )
    .bind(&token)
    .execute(&mut *tx)
    .await?;
    let messages: HashMap<BridgeMessageId, MessageRecord> =
        query(select_messages!("JOIN jobs j ON j.message_id = m.id WHERE j.claim_token = $1"))
            .bind(&token)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| {
                let message = message_from_row(row);
                (message.id.clone(), message)
            })
            .collect();
    let mut links: HashMap<ContactId, ContactLinks> = HashMap::new();
    for row in query(
        "SELECT DISTINCT l.contact_id, l.platform, l.kind, l.value FROM contact_links l
         JOIN jobs j ON j.contact_id = l.contact_id WHERE j.claim_token = $1",
    )
    .bind(&token)
    .fetch_all(&mut *tx)
    .await?
    {
        links.entry(row.get(0)).or_default().insert((row.get(1), row.get(2)), row.get(3));
    }
    let contacts: HashMap<ContactId, Contact> =
        query(select_contacts!("JOIN jobs j ON j.contact_id = c.id WHERE j.claim_token = $1"))
            .bind(&token)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| {
                let mut contact = contact_from_row(row);
                contact.links = links.remove(&contact.id).unwrap_or_default();
                (contact.id, contact)
            })
            .collect();
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        let message_id: BridgeMessageId = row.get(1);
        let contact_id: ContactId = row.get(2);
        let kind: String = row.get(3);
        let kind = JobKind::parse(&kind).ok_or_else(|| StoreError::NotFound(format!("job kind {kind}")))?;
        let message = messages.get(&message_id).cloned().ok_or_else(|| StoreError::NotFound(format!("message {message_id}")))?;
        let contact = contacts.get(&contact_id).cloned().ok_or_else(|| StoreError::NotFound(format!("contact {contact_id}")))?;
        jobs.push(ClaimedJob {
            id: row.get(0),
            message_id,
            contact_id,
            kind,
            attempt: row.get::<i64, _>(4) as u32,
            message,
            contact,
            claim_token: token.clone(),
        });
    }
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}
