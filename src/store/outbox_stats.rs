//! What a `/metrics` scrape reads about the outbox: unfinished jobs by kind, and when the oldest
//! job that is due and waiting for a worker was queued. One query, on the active-jobs index.

/// The outbox at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Pending and running jobs per kind (`JobKind::as_str`); kinds without any are left out.
    pub depth: Vec<(String, i64)>,
    /// When the oldest pending job that is due by now was created (Unix milliseconds).
    pub oldest_due_created_at: Option<i64>,
}
