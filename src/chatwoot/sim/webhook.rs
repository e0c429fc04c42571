//! The API inbox webhook (`chatwoot-api.md §3`): one queue served by one background task, in
//! order, like the Sidekiq `WebhookJob`. Each event is POSTed once (§0.2): a non-2xx answer, a
//! connection error or a timeout (`WEBHOOK_TIMEOUT`) is not retried; for `message_created` and
//! `message_updated` it marks the message `failed` with the error text as `external_error`
//! (`Webhooks::Trigger#handle_error`, §3.2), which is itself a `message_updated`.
//!
//! Headers (§3.2, §3.5): `Content-Type`/`Accept: application/json`, `X-Chatwoot-Delivery`, and
//! with a channel `secret` `X-Chatwoot-Timestamp` and `X-Chatwoot-Signature:
//! sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::{mpsc, watch};

use super::model::Outgoing;
use super::{Inner, WebhookRecord};

/// One queued delivery. The payload and URL are fixed when the event happens, as the
/// listener builds them before enqueuing the job.
struct Job {
    seq: u64,
    url: String,
    delivery_id: String,
    event: Outgoing,
}

/// The queue, its worker and what it did.
pub(crate) struct Hooks {
    client: reqwest::Client,
    tx: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    /// The number of the latest queued job (jobs are numbered from 1).
    queued: AtomicU64,
    /// The number of the latest finished job.
    done: watch::Sender<u64>,
    records: Mutex<Vec<WebhookRecord>>,
    /// Jobs a finished job queued (the `message_updated` of a failure), by its number.
    followups: Mutex<HashMap<u64, Vec<u64>>>,
}

impl Hooks {
    pub fn new(timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            // RestClient/Net::HTTP open and read timeouts, both WEBHOOK_TIMEOUT (§3.2).
            .connect_timeout(timeout)
            .read_timeout(timeout)
            // A redirect answer to a POST is an error for RestClient, not something to follow.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("rest-client/2.1.0 (linux x86_64) ruby/3.4.4p34")
            .build()
            .expect("webhook HTTP client");
        Hooks {
            client,
            tx: Mutex::new(None),
            queued: AtomicU64::new(0),
            done: watch::Sender::new(0),
            records: Mutex::new(Vec::new()),
            followups: Mutex::new(HashMap::new()),
        }
    }

    pub fn records(&self) -> Vec<WebhookRecord> {
        self.records.lock().expect("webhook records lock").clone()
    }

    /// Queues one event for `url`; returns its number. Synchronous, so it is called with the
    /// state lock held and the queue order is the order of the changes. The worker is started
    /// on first use (on the current tokio runtime), and again if its runtime went away.
    pub fn enqueue(&self, me: &Weak<Inner>, url: &str, event: Outgoing) -> u64 {
        let mut tx = self.tx.lock().expect("webhook queue lock");
        let seq = self.queued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut job = Job { seq, url: url.to_owned(), delivery_id: uuid::Uuid::new_v4().to_string(), event };
        if let Some(sender) = tx.as_ref() {
            match sender.send(job) {
                Ok(()) => return seq,
                Err(mpsc::error::SendError(back)) => job = back,
            }
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(event = job.event.event, "no tokio runtime: Chatwoot webhook not sent");
            self.finish(seq);
            return seq;
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        sender.send(job).ok();
        runtime.spawn(worker(me.clone(), receiver));
        *tx = Some(sender);
        seq
    }

    fn finish(&self, seq: u64) {
        self.done.send_modify(|d| *d = (*d).max(seq));
    }

    async fn wait_for(&self, seq: u64) {
        let mut rx = self.done.subscribe();
        // The sender lives as long as `self`, which the caller holds.
        let _ = rx.wait_for(|d| *d >= seq).await;
    }

    /// Waits for these jobs and for every job their failures queued, recursively.
    pub async fn wait_chain(&self, seqs: Vec<u64>) {
        let mut pending = seqs;
        while let Some(seq) = pending.pop() {
            self.wait_for(seq).await;
            if let Some(more) = self.followups.lock().expect("followups lock").remove(&seq) {
                pending.extend(more);
            }
        }
    }

    /// Waits until every job queued so far, and every job queued meanwhile, is finished.
    pub async fn settle(&self) {
        loop {
            let target = self.queued.load(Ordering::SeqCst);
            self.wait_for(target).await;
            if self.queued.load(Ordering::SeqCst) == target {
                return;
            }
        }
    }
}

/// Delivers the queue in order. Holds the simulator only while delivering, so dropping the
/// last `ChatwootSim` closes the queue and ends the task.
async fn worker(me: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = rx.recv().await {
        let Some(inner) = me.upgrade() else { return };
        deliver(&inner, job).await;
    }
}

async fn deliver(inner: &Arc<Inner>, job: Job) {
    let hooks = &inner.hooks;
    let body = serde_json::to_vec(&job.event.payload).expect("JSON value serializes");
    // The channel's secret at send time (`reset_secret` would change it).
    let secret = inner.read(|st| st.api_inbox().secret.clone());
    let mut req = hooks
        .client
        .post(&job.url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("x-chatwoot-delivery", &job.delivery_id)
        .body(body.clone());
    if let Some(secret) = &secret {
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).to_string();
        req = req.header("x-chatwoot-timestamp", &ts).header("x-chatwoot-signature", signature(secret, &ts, &body));
    }
    let (status, error) = match req.send().await {
        Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16()), None),
        // RestClient's exception message for a status: "500 Internal Server Error".
        Ok(resp) => {
            let s = resp.status();
            (Some(s.as_u16()), Some(format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or("")).trim_end().to_owned()))
        }
        Err(e) => (None, Some(transport_error(&job.url, &e))),
    };
    if let Some(err) = &error {
        tracing::info!(event = job.event.event, url = %job.url, error = %err, "Chatwoot sim: webhook failed (not retried)");
    }
    hooks.records.lock().expect("webhook records lock").push(WebhookRecord {
        event: job.event.event.to_owned(),
        message_id: job.event.message_id,
        status,
        error: error.clone(),
        body: job.event.payload,
        signed: secret.is_some(),
    });
    if let (Some(err), Some(id)) = (&error, job.event.message_id)
        && matches!(job.event.event, "message_created" | "message_updated")
    {
        let (_, seqs) = inner.mutate(|st| st.mark_failed(id, err));
        if !seqs.is_empty() {
            hooks.followups.lock().expect("followups lock").insert(job.seq, seqs);
        }
    }
    hooks.finish(job.seq);
}

/// The text Ruby would give for a failed request (Net::HTTP / RestClient messages).
fn transport_error(url: &str, e: &reqwest::Error) -> String {
    if e.is_builder() {
        return format!("bad URI(is not URI?): \"{url}\"");
    }
    if e.is_timeout() {
        return if e.is_connect() {
            "Timed out connecting to server".into()
        } else {
            "Timed out reading data from server".into()
        };
    }
    let parsed = reqwest::Url::parse(url).ok();
    let host = parsed.as_ref().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let port = parsed.as_ref().and_then(|u| u.port_or_known_default()).unwrap_or(80);
    let mut chain = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        chain = cause.to_string();
        source = cause.source();
    }
    if e.is_connect() {
        let cause = if chain.to_ascii_lowercase().contains("refused") {
            format!("Connection refused - connect(2) for \"{host}\" port {port}")
        } else {
            chain
        };
        return format!("Failed to open TCP connection to {host}:{port} ({cause})");
    }
    if chain.is_empty() { e.to_string() } else { chain }
}

/// `X-Chatwoot-Signature` (§3.5): `sha256=` + lowercase hex HMAC-SHA256 keyed with the
/// secret's bytes over `"<timestamp>.<body>"`.
pub(crate) fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn signature_matches_the_reference_vector() {
        // chatwoot-api.md §3.5.
        assert_eq!(
            signature("cw_secret_abc", "1781700000", br#"{"event":"message_created","id":1}"#),
            "sha256=d8c71a1af70756addac164b2dffedee786ed12f9ac2ca7d604c3ee2f6e26e97f"
        );
    }
}
