//! Delivery of conversation events to the application's RTC `event_url` (`vonage-api.md §3`).
//!
//! Every stored event is queued here by conversation. Each conversation has its own
//! tokio task that delivers its events one at a time, in id order, so a receiver sees
//! a conversation's events in order even while it is failing, and a slow conversation
//! does not hold up the others.
//!
//! Retries: Vonage documents none for the RTC webhook. The simulator follows the Messages
//! API's published policy instead ("retry periodically at intervals of increasing length:
//! 5, 10, 20, 40, …", `vonage-api.md §3.2`): exponential backoff from `rtc_retry_base`
//! (5 s by default), at most [`MAX_ATTEMPTS`] tries, then the event is dropped with a
//! warning. Only 200–205 counts as delivered (`vonage-api.md §3.2`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Tries per event before it is dropped.
pub(crate) const MAX_ATTEMPTS: u32 = 8;

/// What every delivery needs; shared by the per-conversation tasks.
pub(crate) struct RtcShared {
    pub client: reqwest::Client,
    /// The current `event_url`; read at each attempt, so a new address set through the
    /// Application API applies to events already queued.
    pub url: Mutex<Option<String>>,
    pub signature_secret: Option<String>,
    pub api_key: String,
    pub application_id: String,
    pub retry_base: Duration,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub attempts: AtomicU64,
}

/// Queues events per conversation and owns the delivery tasks.
pub(crate) struct RtcDispatcher {
    pub shared: Arc<RtcShared>,
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Value>>>,
}

impl RtcDispatcher {
    pub fn new(shared: RtcShared) -> Self {
        RtcDispatcher { shared: Arc::new(shared), queues: Mutex::new(HashMap::new()) }
    }

    pub fn url(&self) -> Option<String> {
        self.shared.url.lock().expect("rtc url lock").clone()
    }

    pub fn set_url(&self, url: Option<String>) {
        *self.shared.url.lock().expect("rtc url lock") = url;
    }

    /// Queues `payload` for `conv_id`. Synchronous, so it can be called with the state
    /// lock held (which is what keeps queue order equal to event id order). Nothing is
    /// queued when no `event_url` is configured: Vonage does not keep undeliverable
    /// events for later.
    pub fn enqueue(&self, conv_id: &str, payload: Value) {
        if self.url().is_none() {
            return;
        }
        let mut queues = self.queues.lock().expect("rtc queues lock");
        if let Some(tx) = queues.get(conv_id)
            && tx.send(payload.clone()).is_ok()
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(conversation_id = conv_id, "no tokio runtime: RTC event not dispatched");
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(payload).expect("receiver alive");
        runtime.spawn(conversation_worker(conv_id.to_owned(), rx, self.shared.clone()));
        queues.insert(conv_id.to_owned(), tx);
    }
}

/// Delivers one conversation's events in order, each with retries.
async fn conversation_worker(conv_id: String, mut rx: mpsc::UnboundedReceiver<Value>, shared: Arc<RtcShared>) {
    while let Some(payload) = rx.recv().await {
        deliver_with_retries(&conv_id, &payload, &shared).await;
    }
}

async fn deliver_with_retries(conv_id: &str, payload: &Value, shared: &RtcShared) {
    let body = serde_json::to_vec(payload).expect("JSON value serialises");
    let mut delay = shared.retry_base;
    for attempt in 1..=MAX_ATTEMPTS {
        let Some(url) = shared.url.lock().expect("rtc url lock").clone() else {
            tracing::debug!(conversation_id = conv_id, "event_url removed; RTC event dropped");
            return;
        };
        shared.attempts.fetch_add(1, Ordering::Relaxed);
        let outcome = post_once(shared, &url, &body).await;
        match outcome {
            Ok(status) if (200..=205).contains(&status) => {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(status) => tracing::info!(
                conversation_id = conv_id, event_id = %payload["id"], attempt, status,
                "RTC webhook answered non-success; will retry"
            ),
            Err(e) => tracing::info!(
                conversation_id = conv_id, event_id = %payload["id"], attempt, error = %e,
                "RTC webhook unreachable; will retry"
            ),
        }
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
    shared.dropped.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        conversation_id = conv_id, event_id = %payload["id"], event_type = %payload["type"],
        attempts = MAX_ATTEMPTS, "RTC event dropped after all delivery attempts failed"
    );
}

async fn post_once(shared: &RtcShared, url: &str, body: &[u8]) -> Result<u16, String> {
    let mut req = shared.client.post(url).header("content-type", "application/json").body(body.to_vec());
    if let Some(secret) = &shared.signature_secret {
        let token = signed_webhook_jwt(secret, &shared.api_key, &shared.application_id, body);
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    Ok(resp.status().as_u16())
}

/// The signed-webhook JWT (`vonage-api.md §4`): HS256 with the signature secret, claims
/// `iat`, `jti`, `iss: "Vonage"`, `payload_hash` (lowercase hex SHA-256 of the exact
/// body bytes sent), `api_key`, `application_id`.
pub(crate) fn signed_webhook_jwt(secret: &str, api_key: &str, application_id: &str, body: &[u8]) -> String {
    let claims = json!({
        "iat": jsonwebtoken::get_current_timestamp(),
        "jti": uuid::Uuid::new_v4().to_string(),
        "iss": "Vonage",
        "payload_hash": hex::encode(Sha256::digest(body)),
        "api_key": api_key,
        "application_id": application_id,
    });
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret.as_bytes())).expect("HS256 signing cannot fail")
}
