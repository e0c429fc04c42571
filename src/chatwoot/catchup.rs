//! Catching up on agents' replies the webhook did not bring. Chatwoot sends each webhook once
//! (`chatwoot-api.md` §0.2): a reply written while the bridge was restarting, down, or cut off
//! reaches it only by asking. At start and then every `CHATWOOT_CATCH_UP_SECS`, the bridge pages
//! each conversation whose customer can still be answered (reply window open) from the highest
//! message id it has seen (§3.6), and stores the outgoing public replies it has not stored yet;
//! its deduplication on (conversation, message id) makes a reply found twice relay once.

use std::time::Duration;

use super::client::CwMessage;
use super::webhook::{AgentMessage, Arrival, Outcome, is_outgoing};
use super::{CONVERSATION, ChatwootPlatform, PLATFORM, SEEN};
use crate::relay::message::Contact;
use crate::store::{StoreError, now_ms};

/// `GET …/messages?after=` returns at most this many (§3.6): fewer means the end.
const PAGE: usize = 100;
/// Pause between two requests of a pass, to stay far below Chatwoot's per-IP limit (§4.1).
const PAUSE: Duration = Duration::from_millis(50);
/// Replies older than WeChat's reply window cannot reach the customer: not caught up.
const WINDOW_MS: i64 = 48 * 3600 * 1000;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub conversations: usize,
    pub stored: usize,
    /// Conversations skipped because Chatwoot could not answer (tried again next pass).
    pub failed: usize,
}

/// What catching up on one conversation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sync {
    /// The highest message id Chatwoot listed (or the cursor, if it listed nothing new).
    pub seen: u64,
    pub stored: usize,
}

impl ChatwootPlatform {
    /// One pass over the conversations whose reply window is open.
    pub async fn catch_up(&self) -> Result<Pass, StoreError> {
        let now = now_ms();
        let contacts = self.relay.store.contacts_with_open_window(PLATFORM, CONVERSATION, now).await?;
        let mut pass = Pass::default();
        for contact in &contacts {
            let Some(conversation) = contact.link(PLATFORM, CONVERSATION).and_then(|c| c.parse::<u64>().ok()) else {
                continue;
            };
            match self.sync(contact, conversation).await {
                Ok(sync) => {
                    pass.conversations += 1;
                    pass.stored += sync.stored;
                }
                Err(CatchUpError::Store(e)) => return Err(e),
                Err(CatchUpError::Chatwoot(e)) if e.status() == Some(404) => {
                    // Deleted in Chatwoot: forget it; the customer's next message opens a new one.
                    for kind in [CONVERSATION, SEEN] {
                        self.relay.store.remove_link(contact.id, PLATFORM, kind).await?;
                    }
                    tracing::info!(contact = %contact.id, conversation, "the Chatwoot conversation is gone; forgotten");
                }
                Err(CatchUpError::Chatwoot(e)) => {
                    pass.failed += 1;
                    tracing::warn!(contact = %contact.id, error = %e, "catching up on a Chatwoot conversation failed; next pass tries again");
                }
            }
            tokio::time::sleep(PAUSE).await;
        }
        Ok(pass)
    }

    /// Catches up on one conversation: pages it from the last message seen (as `contact`, just
    /// read, holds it) and stores, in Chatwoot's order, the replies not stored yet; then
    /// remembers the new cursor. Two syncs at once read some messages twice; storing
    /// deduplicates them.
    pub(super) async fn sync(&self, contact: &Contact, conversation: u64) -> Result<Sync, CatchUpError> {
        let now = now_ms();
        let seen = contact.link(PLATFORM, SEEN).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let mut sync = Sync { seen, stored: 0 };
        loop {
            let page = self
                .client
                .messages_after(conversation, sync.seen)
                .await
                .inspect_err(|e| self.count(e))
                .map_err(CatchUpError::Chatwoot)?;
            for message in &page {
                sync.seen = sync.seen.max(message.id);
                if let Some(reply) = missed_reply(conversation, message, now)
                    && self.accept_reply(contact, &reply, Arrival::CatchUp).await? == Outcome::Stored
                {
                    sync.stored += 1;
                }
            }
            if page.len() < PAGE {
                break;
            }
            tokio::time::sleep(PAUSE).await;
        }
        if sync.seen > seen {
            self.relay.store.save_link(contact.id, PLATFORM, SEEN, &sync.seen.to_string()).await?;
        }
        Ok(sync)
    }
}

/// A message of the conversation worth relaying: an outgoing, public message within the reply
/// window that no bridge has reported delivered (a lost database must not send them again).
fn missed_reply(conversation: u64, message: &CwMessage, now: i64) -> Option<AgentMessage> {
    if !is_outgoing(&message.message_type) || message.private {
        return None;
    }
    if matches!(message.status.as_deref(), Some("delivered" | "read")) {
        return None;
    }
    let created_ms = message.created_at.as_i64().map(|secs| secs * 1000)?;
    if created_ms < now - WINDOW_MS {
        return None;
    }
    Some(AgentMessage {
        conversation,
        message_id: message.id,
        contact_identifier: None,
        content: message.content.clone(),
        attachments: message.attachments.clone(),
        attributes_cleared: true,
    })
}

/// Why catching up on a conversation stopped.
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chatwoot(super::client::ChatwootError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(value: serde_json::Value) -> CwMessage {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn only_recent_public_outgoing_replies_not_yet_delivered_are_missed() {
        let now = 1_800_000_000_000;
        let secs = now / 1000;
        let base =
            json!({"id": 7, "content": "hi", "message_type": 1, "private": false, "created_at": secs - 60, "status": "failed"});
        assert!(missed_reply(42, &message(base.clone()), now).is_some());
        let with = |key: &str, value: serde_json::Value| {
            let mut m = base.clone();
            m[key] = value;
            missed_reply(42, &message(m), now)
        };
        assert!(with("status", json!("sent")).is_some());
        assert!(with("status", json!("delivered")).is_none());
        assert!(with("status", json!("read")).is_none());
        assert!(with("message_type", json!(0)).is_none(), "incoming");
        assert!(with("message_type", json!(2)).is_none(), "activity");
        assert!(with("message_type", json!(3)).is_none(), "template");
        assert!(with("private", json!(true)).is_none());
        assert!(with("created_at", json!(secs - 49 * 3600)).is_none(), "outside the reply window");
    }
}
