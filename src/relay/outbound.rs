//! Accepting an agent's message for a customer: stored with its outbox job in one transaction,
//! deduplicated by the platform's event id, then the worker is woken.

use super::Signals;
use super::message::Direction;
use super::message::{Contact, OutboundMessage, OutboundRecord};
use crate::store::{Accepted, IdempotencyKey, JobKind, NewMessage, Store, StoreError, WindowChange};

/// Stores `message` for `contact` (deduplicated on `conversation_id:event_id` within `source`).
pub async fn accept(
    store: &Store,
    signals: &Signals,
    channel: &str,
    source: &str,
    contact: &Contact,
    conversation_id: &str,
    event_id: &str,
    message: OutboundMessage,
) -> Result<Accepted, StoreError> {
    let record = OutboundRecord {
        conversation_id: conversation_id.to_string(),
        platform_event_id: event_id.to_string(),
        message,
        client_reference: None,
        more: Vec::new(),
    };
    accept_record(store, signals, channel, source, contact, &record, None).await
}

/// Stores `record` for `contact` like [`accept`], with the request's `Idempotency-Key` and its
/// answer in the same transaction when given.
pub async fn accept_record(
    store: &Store,
    signals: &Signals,
    channel: &str,
    source: &str,
    contact: &Contact,
    record: &OutboundRecord,
    idempotency: Option<IdempotencyKey<'_>>,
) -> Result<Accepted, StoreError> {
    let external_id = format!("{}:{}", record.conversation_id, record.platform_event_id);
    let payload = serde_json::to_string(record).expect("outbound record serializes");
    let accepted = store
        .accept(&NewMessage {
            channel,
            channel_id: &contact.channel_id,
            account: &contact.account,
            direction: Direction::Outbound,
            source,
            external_id: &external_id,
            msg_type: &record.message.msg_type,
            payload: &payload,
            kind: JobKind::DeliverOutbound,
            window: WindowChange::Keep,
            nonce: None,
            idempotency,
        })
        .await?;
    match &accepted {
        Accepted::New(id) => {
            signals.metrics().accepted(Direction::Outbound, &record.message.msg_type);
            signals.queued(id);
        }
        Accepted::Duplicate(_) => signals.metrics().duplicate(source),
    }
    Ok(accepted)
}
