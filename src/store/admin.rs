//! Read models for the admin API: contacts with their message counts, filtered message logs.

use sqlx::Row;

use super::{MessageRecord, Store, StoreError, message_from_row};
use crate::relay::message::ContactLinks;

/// A contact as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConversationSummary {
    pub contact_id: i64,
    /// The customer's id on the channel (the console's and API's field name since the start).
    #[serde(rename = "openid")]
    pub channel_id: String,
    pub account: String,
    /// The ids platforms gave the contact; the admin API shows the active platform's.
    #[serde(skip)]
    pub links: ContactLinks,
    pub last_inbound_at: Option<i64>,
    pub window_sends: i64,
    pub messages: i64,
    pub failed: i64,
    pub last_message_at: Option<i64>,
}

/// `[[platform, kind, value], …]` as SQLite's `json_group_array` builds it.
fn links_from_json(json: Option<String>) -> ContactLinks {
    let triples: Vec<(String, String, String)> = json.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default();
    triples.into_iter().map(|(platform, kind, value)| ((platform, kind), value)).collect()
}

/// Which messages to list; `None` means any.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct MessageFilter {
    pub direction: Option<String>,
    pub status: Option<String>,
    pub contact_id: Option<i64>,
    /// Unix ms, inclusive.
    pub since: Option<i64>,
    /// Unix ms, exclusive.
    pub until: Option<i64>,
    pub limit: Option<i64>,
}

impl Store {
    /// Contacts, most recently active first.
    pub async fn conversations(&self, limit: i64) -> Result<Vec<ConversationSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.id, c.channel_id, c.account,
                    (SELECT json_group_array(json_array(l.platform, l.kind, l.value)) FROM contact_links l WHERE l.contact_id = c.id),
                    c.last_inbound_at, c.window_sends, COUNT(m.id), COALESCE(SUM(m.status = 'failed'), 0), MAX(m.created_at)
             FROM contacts c LEFT JOIN messages m ON m.contact_id = c.id
             GROUP BY c.id ORDER BY MAX(m.created_at) DESC, c.id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
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

    /// Messages matching `filter`, newest first (at most 500).
    pub async fn filtered_messages(&self, filter: &MessageFilter) -> Result<Vec<MessageRecord>, StoreError> {
        let rows = sqlx::query(super::select_messages!(
            "WHERE (?1 IS NULL OR direction = ?1) AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR contact_id = ?3)
               AND (?4 IS NULL OR created_at >= ?4) AND (?5 IS NULL OR created_at < ?5)
             ORDER BY created_at DESC, id DESC LIMIT ?6"
        ))
        .bind(&filter.direction)
        .bind(&filter.status)
        .bind(filter.contact_id)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.limit.unwrap_or(100).clamp(1, 500))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(message_from_row).collect())
    }
}

/// Figures for the console's health page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthFigures {
    pub outbox_depth: i64,
    pub stored: i64,
    pub delivered: i64,
    pub failed: i64,
    /// Delivery latency (accepted → delivered) over the last 200 delivered messages.
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
    pub latency_samples: usize,
    /// The cached WeChat access token's expiry (Unix ms), if one is stored.
    pub token_expires_at: Option<i64>,
    /// Failed messages by remote error code.
    pub errors: Vec<(String, i64)>,
}

impl Store {
    pub async fn health_figures(&self) -> Result<HealthFigures, StoreError> {
        let counts = sqlx::query(
            "SELECT COALESCE(SUM(status = 'stored'), 0), COALESCE(SUM(status = 'delivered'), 0), COALESCE(SUM(status = 'failed'), 0) FROM messages",
        )
        .fetch_one(self.pool())
        .await?;
        let mut latencies: Vec<i64> = sqlx::query(
            "SELECT delivered_at - created_at FROM messages WHERE status = 'delivered' AND delivered_at IS NOT NULL
             ORDER BY delivered_at DESC LIMIT 200",
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        latencies.sort_unstable();
        let pct = |p: usize| (!latencies.is_empty()).then(|| latencies[(latencies.len() - 1) * p / 100]);
        let token_expires_at = sqlx::query("SELECT MAX(expires_at) FROM access_tokens").fetch_one(self.pool()).await?.get(0);
        let errors = sqlx::query(
            "SELECT COALESCE(error_code, 'other'), COUNT(*) FROM messages WHERE status = 'failed' GROUP BY 1 ORDER BY 2 DESC LIMIT 20",
        )
        .fetch_all(self.pool())
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
