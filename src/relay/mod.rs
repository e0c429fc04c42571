//! The relay core, between the channel (WeChat, where customers are) and the platform (Vonage,
//! where agents are). It speaks the bridge's own types (`message`), accepts messages into the
//! store (`inbound`) and delivers them from the outbox (`worker`).

pub mod ids;
pub mod inbound;
pub mod message;
pub mod outbound;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{Notify, broadcast};

use crate::metrics::Metrics;
use ids::{BridgeMessageId, ErrorCode};
use message::{Contact, InboundMessage, OutboundMessage, StatusReport};

/// The relay core as the adapters' webhooks use it: where messages are accepted into, and whom
/// to tell about them. Clones share the store's pool and the signals.
#[derive(Clone, Debug)]
pub struct Relay {
    pub store: crate::store::Store,
    pub signals: Signals,
}

/// What the relay tells the rest of the process about messages: new work for the worker, every
/// message stored or changed (the console's live stream), and the application's counts
/// (`metrics`, which every part that holds the signals records on). Clones share all three.
#[derive(Clone, Debug)]
pub struct Signals {
    wake: Arc<Notify>,
    changes: broadcast::Sender<BridgeMessageId>,
    metrics: Metrics,
}

/// Signals whose metrics record nothing.
impl Default for Signals {
    fn default() -> Self {
        Self::new(Metrics::default())
    }
}

impl Signals {
    /// Signals counting on `metrics` (the application's registry).
    pub fn new(metrics: Metrics) -> Self {
        Self { wake: Arc::new(Notify::new()), changes: broadcast::channel(1024).0, metrics }
    }

    /// The application's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A message was stored or put back in the outbox: wake the worker, tell listeners.
    pub fn queued(&self, message_id: &BridgeMessageId) {
        self.wake.notify_one();
        self.changed(message_id);
    }

    /// A message's state changed (nobody listening is fine).
    pub fn changed(&self, message_id: &BridgeMessageId) {
        let _ = self.changes.send(message_id.clone());
    }

    /// Resolves when new work was queued.
    pub async fn work_queued(&self) {
        self.wake.notified().await
    }

    /// Ids of messages stored or changed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BridgeMessageId> {
        self.changes.subscribe()
    }
}

/// How a delivery attempt ended badly: worth another try later, or never going to work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// 5xx, 429, timeouts, connection errors: try again after a backoff (or `after`, when the
    /// remote side said how long to wait).
    #[error("{reason}")]
    Retry { reason: String, after: Option<Duration> },
    /// A 4xx that cannot succeed by retrying: the message is marked `failed` at once.
    #[error("{reason}")]
    Permanent { code: Option<ErrorCode>, reason: String },
}

/// The database failed under a delivery (locked, full disk): worth another try later.
impl From<crate::store::StoreError> for DeliveryError {
    fn from(e: crate::store::StoreError) -> Self {
        DeliveryError::Retry { reason: e.to_string(), after: None }
    }
}

/// Where agents are: the side that receives customers' messages as conversation events.
/// Object safe (boxed futures): the worker holds whichever platform the configuration chose.
pub trait Platform: Send + Sync + 'static {
    /// The platform's name in the store (message sources, contact links) and in the admin API.
    fn name(&self) -> &'static str;

    /// The kinds of id the platform links to a contact (`Contact::link`), as the admin API lists them.
    fn link_kinds(&self) -> &'static [&'static str];

    /// Posts `msg` into the contact's conversation (creating and remembering the platform's
    /// user, conversation and member on first contact). Returns the platform's event id.
    /// `attempt` counts from 1: on a retry the first post may have landed with its answer lost,
    /// which a platform without idempotent posts checks before posting again.
    fn deliver_inbound<'a>(
        &'a self,
        contact: &'a Contact,
        msg: &'a InboundMessage,
        bridge_message_id: &'a BridgeMessageId,
        attempt: u32,
    ) -> BoxFuture<'a, Result<String, DeliveryError>>;

    /// Posts the outcome of an outbound message into `conversation_id`. Returns the event id.
    fn report_status<'a>(
        &'a self,
        contact: &'a Contact,
        conversation_id: &'a str,
        report: &'a StatusReport,
    ) -> BoxFuture<'a, Result<String, DeliveryError>>;

    /// Work the platform does on its own while the bridge serves (e.g. catching up on agents'
    /// replies a fire-once webhook could not deliver). It runs until the bridge stops; none by default.
    fn background(self: Arc<Self>) -> Option<BoxFuture<'static, ()>> {
        None
    }
}

/// A media file fetched from the channel (a customer's image, voice or video).
#[derive(Debug, Clone, PartialEq)]
pub struct MediaFile {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// Where customers are: the side that receives agents' messages. Object safe, like `Platform`.
pub trait Channel: Send + Sync + 'static {
    /// The parts `msg` is sent in, in order (a text over the channel's size limit is split).
    fn split(&self, msg: &OutboundMessage) -> Vec<OutboundMessage>;

    /// Fails early, without a remote call, when the contact cannot receive `parts` more
    /// messages now (reply window closed, quota used up).
    fn check_window(&self, contact: &Contact, parts: usize) -> Result<(), DeliveryError>;

    /// Sends one part to the contact.
    fn send<'a>(&'a self, contact: &'a Contact, msg: &'a OutboundMessage) -> BoxFuture<'a, Result<(), DeliveryError>>;

    /// Downloads a customer's media (`Media::media_id`), for platforms that take files rather than links.
    fn fetch_media<'a>(&'a self, media: &'a message::Media) -> BoxFuture<'a, Result<MediaFile, DeliveryError>>;

    /// What one of the channel's error codes means for an agent, in words, when it is known.
    fn explain(&self, code: &ErrorCode) -> Option<&'static str>;
}
