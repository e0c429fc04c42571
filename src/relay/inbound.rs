//! Accepting a customer's message: one transaction stores it with its outbox job, then the
//! worker (and the live stream) is told. No remote call happens here, so the webhook answers in milliseconds.

use super::Signals;
use super::message::Direction;
use super::message::InboundMessage;
use crate::store::{Accepted, JobKind, NewMessage, RequestNonce, Store, StoreError, WindowChange};

/// Stores `msg` (deduplicated by `dedup_key` within `channel`) and wakes the worker. A `nonce`
/// seen before fails with [`StoreError::Replay`] unless the message itself is a duplicate (a
/// sender's retry of a stored request).
pub async fn accept(
    store: &Store,
    signals: &Signals,
    channel: &str,
    dedup_key: &str,
    msg: &InboundMessage,
    window: WindowChange,
    nonce: Option<RequestNonce<'_>>,
) -> Result<Accepted, StoreError> {
    let payload = serde_json::to_string(msg).expect("inbound message serializes");
    let accepted = store
        .accept(&NewMessage {
            channel,
            channel_id: &msg.sender,
            account: &msg.account,
            direction: Direction::Inbound,
            source: channel,
            external_id: dedup_key,
            msg_type: &msg.msg_type,
            payload: &payload,
            kind: JobKind::DeliverInbound,
            window,
            nonce,
            idempotency: None,
        })
        .await?;
    match &accepted {
        Accepted::New(id) => {
            signals.metrics().accepted(Direction::Inbound, &msg.msg_type);
            signals.queued(id);
        }
        Accepted::Duplicate(_) => signals.metrics().duplicate(channel),
    }
    Ok(accepted)
}
