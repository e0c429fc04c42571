//! Accepting an agent's message for a customer: stored with its outbox job in one transaction,
//! deduplicated by the platform's event id, then the worker is woken.

use super::Signals;
use super::message::Direction;
use super::message::{Contact, OutboundMessage, OutboundRecord};
use crate::store::{Accepted, JobKind, NewMessage, Store, StoreError, WindowChange};

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
    let external_id = format!("{conversation_id}:{event_id}");
    let msg_type = message.msg_type.clone();
    let record =
        OutboundRecord { conversation_id: conversation_id.to_string(), platform_event_id: event_id.to_string(), message };
    let payload = serde_json::to_string(&record).expect("outbound record serializes");
    let accepted = store
        .accept(&NewMessage {
            channel,
            channel_id: &contact.channel_id,
            account: &contact.account,
            direction: Direction::Outbound,
            source,
            external_id: &external_id,
            msg_type: &msg_type,
            payload: &payload,
            kind: JobKind::DeliverOutbound,
            window: WindowChange::Keep,
            nonce: None,
        })
        .await?;
    if let Accepted::New(id) = &accepted {
        signals.queued(id);
    }
    Ok(accepted)
}
