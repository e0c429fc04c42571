//! What a `/metrics` scrape reads about the outbox (see `store/outbox_stats.rs`).

use super::super::{Engine, Row, query};
use crate::store::{OutboxStats, StoreError};

impl Engine {
    pub(in crate::store) async fn outbox_stats(&self, now: i64) -> Result<OutboxStats, StoreError> {
        // The WHERE is the partial index `jobs_active_by_contact`'s own: only unfinished jobs are read.
        let rows = query(
            "SELECT kind, COUNT(*), MIN(CASE WHEN state = 'pending' AND due_at <= $1 THEN created_at END)
             FROM jobs WHERE state IN ('pending', 'running') GROUP BY kind",
        )
        .bind(now)
        .fetch_all(&self.pool)
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
