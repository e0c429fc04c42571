//! Signed delivery of one event to the app's URL (`reference/webhooks.md` §3): signed afresh
//! for every attempt (a new `webhook-timestamp`, the same `webhook-id`), bounded in time, the
//! answer read up to a cap. Any 2xx is delivered; 429, 5xx, 3xx (redirects are not followed),
//! timeouts and connection errors are retried (honouring Retry-After); other 4xx, 410 included,
//! fail for good.

use std::time::Duration;

use standardwebhooks::{HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Webhook};

use crate::metrics::Metrics;
use crate::relay::DeliveryError;
use crate::relay::ids::ErrorCode;

/// The API's name in `bridge_remote_errors_total`.
const API: &str = "webhook";
/// Per-request timeout: a stuck receiver holds its contact's queue no longer than this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this much of an answer is read (for the error text).
const MAX_RESPONSE_BYTES: usize = 4096;
/// A Retry-After longer than this is capped (the outbox backs off on its own anyway).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// POSTs signed events to one URL.
pub struct WebhookClient {
    http: reqwest::Client,
    url: reqwest::Url,
    signer: Webhook,
    /// Counts the receiver's error answers.
    metrics: Metrics,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient").field("url", &self.url.as_str()).finish_non_exhaustive()
    }
}

impl WebhookClient {
    /// A client for `url`, signing with `secret` (`whsec_…`, checked by `signing_key`), counting
    /// the receiver's errors on `metrics`.
    pub fn new(url: &str, secret: &str, metrics: Metrics) -> Result<Self, String> {
        super::signing_key(secret).map_err(|e| format!("PLATFORM_WEBHOOK_SECRET {e}"))?;
        let signer = Webhook::new(secret).map_err(|_| "PLATFORM_WEBHOOK_SECRET is not a valid whsec_ secret".to_string())?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wechat-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("reqwest client builds");
        // Parsed once: reqwest would parse the text (host name rules included) on every send.
        let url = reqwest::Url::parse(url).map_err(|e| format!("PLATFORM_WEBHOOK_URL is not a URL: {e}"))?;
        Ok(Self { http, url, signer, metrics })
    }

    /// One attempt at delivering the event `id` with `body` (JSON).
    pub async fn send(&self, id: &str, body: &[u8]) -> Result<(), DeliveryError> {
        let timestamp = crate::store::now_ms() / 1000;
        let signature = self
            .signer
            .sign(id, timestamp, body)
            .map_err(|e| DeliveryError::Permanent { code: None, reason: format!("cannot sign the event: {e}") })?;
        let response = self
            .http
            .post(self.url.clone())
            .header(HEADER_WEBHOOK_ID, id)
            .header(HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string())
            .header(HEADER_WEBHOOK_SIGNATURE, signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| {
                self.metrics.remote_error(API, "transport");
                DeliveryError::Retry {
                    reason: format!("webhook receiver unreachable: {}", crate::transport_error_text(e)),
                    after: None,
                }
            })?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(());
        }
        self.metrics.remote_error(API, &status.to_string());
        let after = retry_after(response.headers());
        let text = snippet(response).await;
        let reason =
            format!("webhook receiver answered {status}{}", if text.is_empty() { String::new() } else { format!(": {text}") });
        match status {
            429 | 500.. | 300..=399 => Err(DeliveryError::Retry { reason, after }),
            _ => Err(DeliveryError::Permanent { code: Some(ErrorCode::new(status.to_string())), reason }),
        }
    }
}

/// `Retry-After` in seconds (an HTTP date is not honoured: the backoff applies).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// The start of an error answer, as one line of at most 200 characters.
async fn snippet(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_RESPONSE_BYTES);
    String::from_utf8_lossy(&body).split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).collect()
}
