//! Read models for the admin API: contacts with their message counts, filtered message logs.

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
pub(super) fn links_from_json(json: Option<String>) -> ContactLinks {
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
