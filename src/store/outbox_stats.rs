//! What a `/metrics` scrape reads about the outbox: unfinished jobs by kind, and when the oldest
//! job that is due and waiting for a worker was queued. One query, on the active-jobs index.

use sqlx::Row;

use super::{Store, StoreError};

/// The outbox at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Pending and running jobs per kind (`JobKind::as_str`); kinds without any are left out.
    pub depth: Vec<(String, i64)>,
    /// When the oldest pending job that is due by now was created (Unix milliseconds).
    pub oldest_due_created_at: Option<i64>,
}

impl Store {
    /// The outbox's depth by kind and its oldest due job, as of `now` (Unix milliseconds).
    pub async fn outbox_stats(&self, now: i64) -> Result<OutboxStats, StoreError> {
        // The WHERE is the partial index `jobs_active_due`'s own: only unfinished jobs are read.
        let rows = sqlx::query(
            "SELECT kind, COUNT(*), MIN(CASE WHEN state = 'pending' AND due_at <= ?1 THEN created_at END)
             FROM jobs WHERE state IN ('pending', 'running') GROUP BY kind",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        let mut stats = OutboxStats::default();
        for row in rows {
            stats.depth.push((row.get(0), row.get(1)));
            let oldest: Option<i64> = row.get(2);
            stats.oldest_due_created_at = match (stats.oldest_due_created_at, oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(stats)
    }
}
