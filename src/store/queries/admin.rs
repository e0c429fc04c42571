//! The admin API's read models (see `store/admin.rs`).

use super::super::{Engine, Row, dialect, query};
use super::{message_from_row, select_messages};
use crate::store::admin::links_from_json;
use crate::store::{ConversationSummary, HealthFigures, MessageFilter, MessageRecord, StoreError};

impl Engine {
    pub(in crate::store) async fn conversations(&self, limit: i64) -> Result<Vec<ConversationSummary>, StoreError> {
        let rows = query(dialect::CONVERSATIONS).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|r| ConversationSummary {
                contact_id: r.get(0),
                channel_id: r.get(1),
                account: r.get(2),
                links: links_from_json(r.get(3)),
                last_inbound_at: r.get(4),
                window_sends: r.get(5),
                messages: r.get(6),
                failed: r.get(7),
                last_message_at: r.get(8),
            })
            .collect())
    }

    pub(in crate::store) async fn filtered_messages(&self, filter: &MessageFilter) -> Result<Vec<MessageRecord>, StoreError> {
        let rows = query(select_messages!(
            "WHERE ($1 IS NULL OR direction = $1) AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR contact_id = $3)
               AND ($4 IS NULL OR created_at >= $4) AND ($5 IS NULL OR created_at < $5)
             ORDER BY created_at DESC, id DESC LIMIT $6"
        ))
        .bind(&filter.direction)
        .bind(&filter.status)
        .bind(filter.contact_id)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.limit.unwrap_or(100).clamp(1, 500))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(message_from_row).collect())
    }

    pub(in crate::store) async fn health_figures(&self) -> Result<HealthFigures, StoreError> {
        let counts = query(
            "SELECT COALESCE(SUM(CASE WHEN status = 'stored' THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) FROM messages",
        )
        .fetch_one(&self.pool)
        .await?;
        let mut latencies: Vec<i64> = query(
            "SELECT delivered_at - created_at FROM messages WHERE status = 'delivered' AND delivered_at IS NOT NULL
             ORDER BY delivered_at DESC LIMIT 200",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        latencies.sort_unstable();
        let pct = |p: usize| (!latencies.is_empty()).then(|| latencies[(latencies.len() - 1) * p / 100]);
        let token_expires_at = query("SELECT MAX(expires_at) FROM access_tokens").fetch_one(&self.pool).await?.get(0);
        let errors = query(
            "SELECT COALESCE(error_code, 'other'), COUNT(*) FROM messages WHERE status = 'failed' GROUP BY 1 ORDER BY 2 DESC LIMIT 20",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        Ok(HealthFigures {
            outbox_depth: self.outbox_depth().await?,
            stored: counts.get(0),
            delivered: counts.get(1),
            failed: counts.get(2),
            latency_p50_ms: pct(50),
            latency_p95_ms: pct(95),
            latency_samples: latencies.len(),
            token_expires_at,
            errors,
        })
    }
}
