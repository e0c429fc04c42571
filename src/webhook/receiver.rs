//! A receiver standing in for the app (`demo --platform webhook`, tests): verifies every
//! delivery's Standard Webhooks signature with the `standardwebhooks` crate on the raw body
//! (401 when it does not verify), records what it got, and deduplicates on `webhook-id`. Answers
//! can be scripted (a 500, a 429 with Retry-After, a 400) to exercise the bridge's retries.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use standardwebhooks::{HEADER_WEBHOOK_ID, HEADER_WEBHOOK_TIMESTAMP, Webhook};

/// One verified delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: i64,
    /// The parsed body: `{type, timestamp, data}`.
    pub event: Value,
    /// What the receiver answered.
    pub status: u16,
}

/// A scripted answer to the next delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
}

#[derive(Default)]
struct Inner {
    deliveries: Vec<Delivery>,
    seen: HashSet<String>,
    script: VecDeque<Answer>,
    rejected: usize,
}

/// The receiver; clones share its state.
#[derive(Clone)]
pub struct Receiver {
    verifier: Arc<Webhook>,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl Receiver {
    /// A receiver verifying with `secret` (`whsec_…`).
    pub fn new(secret: &str) -> Result<Self, String> {
        super::signing_key(secret)?;
        let verifier = Webhook::new(secret).map_err(|e| format!("invalid secret: {e}"))?;
        Ok(Self { verifier: Arc::new(verifier), inner: Arc::default() })
    }

    /// `POST /` (and any path: `POST /{*path}`).
    pub fn router(&self) -> Router {
        Router::new().route("/", post(receive)).route("/{*path}", post(receive)).with_state(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next deliveries are answered `answer`, one each, in order.
    pub fn answer_next(&self, answer: Answer) {
        self.lock().script.push_back(answer);
    }

    /// Every verified delivery, retries and refused ones included, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    /// The events taken (2xx), each once: what the app acts on.
    pub fn events(&self) -> Vec<Value> {
        let inner = self.lock();
        let mut seen = HashSet::new();
        inner
            .deliveries
            .iter()
            .filter(|d| (200..300).contains(&d.status) && seen.insert(d.id.clone()))
            .map(|d| d.event.clone())
            .collect()
    }

    /// The taken events of one type.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["type"] == kind).collect()
    }

    /// Deliveries refused because their signature did not verify.
    pub fn rejected(&self) -> usize {
        self.lock().rejected
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = receiver.verifier.verify(&body, &headers) {
        tracing::warn!(error = ?e, "receiver: signature does not verify");
        receiver.lock().rejected += 1;
        return (StatusCode::UNAUTHORIZED, "invalid signature").into_response();
    }
    // Only after the signature verified: parse.
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let id = header(HEADER_WEBHOOK_ID);
    let timestamp = header(HEADER_WEBHOOK_TIMESTAMP).parse().unwrap_or_default();
    let mut inner = receiver.lock();
    let answer = inner.script.pop_front();
    let status = answer.map_or(200, |a| a.status);
    let duplicate = (200..300).contains(&status) && !inner.seen.insert(id.clone());
    inner.deliveries.push(Delivery { id, timestamp, event, status });
    drop(inner);
    let mut response =
        (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), if duplicate { "duplicate" } else { "ok" }).into_response();
    if let Some(secs) = answer.and_then(|a| a.retry_after) {
        response.headers_mut().insert(header::RETRY_AFTER, secs.into());
    }
    response
}
