//! Chatwoot as a platform adapter (`chatwoot-api.md`): customers appear as contacts with a
//! conversation in an API-channel inbox, their messages as incoming messages (`content` turns
//! them into Chatwoot's terms); agents' replies arrive at the inbox webhook (`webhook`), and the
//! ones it missed are caught up on (`catchup`); outcomes go back as message statuses. `client`
//! speaks the Application API, `setup` prepares the inbox, `sim` simulates Chatwoot.

pub mod catchup;
pub mod client;
pub mod content;
pub mod setup;
pub mod sim;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures_util::future::BoxFuture;
use serde_json::json;

use crate::config::ChatwootConfig;
use crate::relay::message::{BridgeMessageId, Contact, ErrorCode, InboundMessage, StatusReport};
use crate::relay::{Channel, DeliveryError, Platform, Relay};
use client::{ChatwootClient, ChatwootError, CwContact, DeliveryStatus, IncomingMessage};
use content::Posting;

/// The platform's name in the store (message sources, contact links).
pub const PLATFORM: &str = "chatwoot";
/// The Chatwoot contact id and conversation display id of a customer, kept as contact links.
pub const CONTACT: &str = "contact";
pub const CONVERSATION: &str = "conversation";
/// The highest message id seen in the conversation: where the next catch-up starts.
pub const SEEN: &str = "seen_message";
/// The links the admin API lists.
pub const LINK_KINDS: &[&str] = &[CONTACT, CONVERSATION];

/// Longest `external_error` the bridge writes (the dashboard shows it under the message).
const MAX_EXTERNAL_ERROR: usize = 500;

/// Chatwoot as `app` wires it: the platform the worker delivers to, and the inbox webhook's
/// route. `channel` fetches customers' media; contacts are named `{channel_name}:{channel_account}:{id}`.
pub fn adapter<S: Clone + Send + Sync + 'static>(
    config: &ChatwootConfig,
    relay: Relay,
    channel: Arc<dyn Channel>,
    channel_name: &'static str,
    channel_account: &str,
) -> anyhow::Result<(Arc<dyn Platform>, Router<S>)> {
    let platform = Arc::new(ChatwootPlatform {
        client: ChatwootClient::new(&config.base_url, config.account_id, config.api_token.clone()),
        relay,
        channel,
        channel_name,
        channel_account: channel_account.to_string(),
        account_id: config.account_id,
        inbox_id: config.inbox_id,
        catch_up_every: config.catch_up_interval,
    });
    let routes = webhook::routes(platform.clone(), config.webhook_secret.as_ref().map(|s| s.expose().to_string()));
    Ok((platform, routes))
}

/// Chatwoot as the relay's platform: one contact and one conversation per customer.
pub struct ChatwootPlatform {
    client: ChatwootClient,
    relay: Relay,
    channel: Arc<dyn Channel>,
    channel_name: &'static str,
    /// The channel's account (WeChat AppID): customers' ids are unique within it.
    channel_account: String,
    account_id: u64,
    inbox_id: u64,
    catch_up_every: Duration,
}

impl std::fmt::Debug for ChatwootPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatwootPlatform").field("client", &self.client).field("inbox_id", &self.inbox_id).finish_non_exhaustive()
    }
}

impl ChatwootPlatform {
    /// The contact's `identifier` in Chatwoot, unique per account (§2.1): `wechat:<appid>:<openid>`.
    pub fn identifier(&self, contact: &Contact) -> String {
        format!("{}:{}:{}", self.channel_name, self.channel_account, contact.channel_id)
    }

    /// The channel id an identifier names, if it is one of ours.
    fn channel_id_of<'a>(&self, identifier: &'a str) -> Option<&'a str> {
        identifier
            .strip_prefix(self.channel_name)?
            .strip_prefix(':')?
            .strip_prefix(self.channel_account.as_str())?
            .strip_prefix(':')
            .filter(|id| !id.is_empty())
    }

    /// The contact's conversation, created on first contact. The Chatwoot contact is found by
    /// its identifier before one is created (and again after a 422 "taken"), so a restart, a
    /// lost database or a second instance never makes a second one; an existing conversation of
    /// the contact in our inbox is reused. Each id is saved the moment it is known.
    async fn ensure_conversation(&self, contact: &Contact) -> Result<u64, DeliveryError> {
        if let Some(conversation) = contact.link(PLATFORM, CONVERSATION).and_then(|c| c.parse().ok()) {
            return Ok(conversation);
        }
        let identifier = self.identifier(contact);
        let contact_id = match contact.link(PLATFORM, CONTACT).and_then(|c| c.parse().ok()) {
            Some(id) => id,
            None => {
                let found = self.find_or_create_contact(contact, &identifier).await?;
                self.save(contact, CONTACT, found.id).await?;
                found.id
            }
        };
        let existing = match self.client.contact_conversations(contact_id).await {
            Ok(conversations) => conversations,
            // The contact was deleted in Chatwoot: forget it, the retry makes a new one.
            Err(e) if e.status() == Some(404) => return Err(self.forget(contact, CONTACT, e).await),
            Err(e) => return Err(self.classify(e)),
        };
        let conversation = match existing.iter().filter(|c| c.inbox_id == Some(self.inbox_id)).map(|c| c.id).max() {
            Some(id) => {
                // An existing conversation (a lost database, another instance): what agents
                // wrote in it before is history, not replies to relay now.
                let latest = self.client.latest_messages(id).await.map_err(|e| self.classify(e))?;
                if let Some(seen) = latest.iter().map(|m| m.id).max() {
                    self.save(contact, SEEN, seen).await?;
                }
                id
            }
            None => {
                let source_id = self.client.source_id_in(contact_id, self.inbox_id).await.map_err(|e| self.classify(e))?;
                match self.client.create_conversation(self.inbox_id, contact_id, &source_id).await {
                    Ok(created) => created.id,
                    Err(e) if e.status() == Some(404) => return Err(self.forget(contact, CONTACT, e).await),
                    Err(e) => return Err(self.classify(e)),
                }
            }
        };
        self.save(contact, CONVERSATION, conversation).await?;
        Ok(conversation)
    }

    async fn find_or_create_contact(&self, contact: &Contact, identifier: &str) -> Result<CwContact, DeliveryError> {
        let found = match self.client.find_contact(identifier).await.map_err(|e| self.classify(e))? {
            Some(found) => found,
            None => {
                let name = display_name(&contact.channel_id);
                let attributes = json!({"wechat_openid": contact.channel_id, "wechat_account": contact.account});
                // The inbox session's source_id is opaque: in Chatwoot's public Client API it acts as
                // a bearer credential (§1.3), so it must not be derivable from the OpenID.
                let source_id = uuid::Uuid::new_v4().to_string();
                match self.client.create_contact(self.inbox_id, &name, identifier, &source_id, attributes).await {
                    Ok(created) => return Ok(created),
                    // Taken: created meanwhile by another instance, or before a lost database.
                    Err(ChatwootError::Api { status: 422, .. }) => {
                        self.client.find_contact(identifier).await.map_err(|e| self.classify(e))?.ok_or_else(|| {
                            DeliveryError::Retry {
                                reason: format!("contact {identifier} exists (422) but the filter does not find it yet"),
                                after: None,
                            }
                        })?
                    }
                    Err(e) => return Err(self.classify(e)),
                }
            }
        };
        if !found.in_inbox(self.inbox_id) {
            // A contact made elsewhere (CRM import, another inbox): give it a session in ours.
            let source_id = uuid::Uuid::new_v4().to_string();
            self.client.add_contact_inbox(found.id, self.inbox_id, &source_id).await.map_err(|e| self.classify(e))?;
        }
        Ok(found)
    }

    async fn save(&self, contact: &Contact, kind: &str, id: u64) -> Result<(), DeliveryError> {
        self.relay.store.save_link(contact.id, PLATFORM, kind, &id.to_string()).await.map_err(DeliveryError::from)
    }

    /// What `e` means for the relay ([`classify`]), counted in `bridge_remote_errors_total`.
    fn classify(&self, e: ChatwootError) -> DeliveryError {
        self.count(&e);
        classify(e)
    }

    /// Counts `e` by its HTTP status (or `transport`, `decode`).
    fn count(&self, e: &ChatwootError) {
        let code = match e {
            ChatwootError::Api { status, .. } => status.to_string(),
            ChatwootError::Transport(_) => "transport".into(),
            ChatwootError::Decode(_) => "decode".into(),
        };
        self.relay.signals.metrics().remote_error(PLATFORM, &code);
    }

    /// Forgets an id Chatwoot no longer knows (and what hangs on it), so the retry recreates it.
    async fn forget(&self, contact: &Contact, kind: &str, e: ChatwootError) -> DeliveryError {
        self.count(&e);
        let kinds: &[&str] = if kind == CONTACT { &[CONTACT, CONVERSATION, SEEN] } else { &[CONVERSATION, SEEN] };
        for kind in kinds {
            if let Err(store) = self.relay.store.remove_link(contact.id, PLATFORM, kind).await {
                return store.into();
            }
        }
        DeliveryError::Retry { reason: format!("{e}; the {kind} will be recreated"), after: None }
    }

    /// The customer's message as an incoming message in their conversation; returns its id.
    async fn post_message(
        &self,
        contact: &Contact,
        msg: &InboundMessage,
        id: &BridgeMessageId,
        attempt: u32,
    ) -> Result<String, DeliveryError> {
        let (mut content, media, mut attributes) = match content::incoming(msg) {
            Posting::Message { content, media, attributes } => (content, media, attributes),
            Posting::Note(note) => {
                let conversation = self.ensure_conversation(contact).await?;
                return match self.client.post_note(conversation, &note).await {
                    Ok(message_id) => Ok(message_id.to_string()),
                    Err(e) if e.status() == Some(404) => Err(self.forget(contact, CONVERSATION, e).await),
                    Err(e) => Err(self.classify(e)),
                };
            }
            Posting::Skip(why) => return Ok(format!("not posted: {why}")),
        };
        let conversation = self.ensure_conversation(contact).await?;
        if attempt > 1
            && let Some(posted) = self.already_posted(conversation, msg, id).await?
        {
            return Ok(posted.to_string());
        }
        let attachment = match media {
            None => None,
            Some(media) => match self.channel.fetch_media(media).await {
                Ok(file) => Some(file),
                Err(DeliveryError::Permanent { reason, .. }) => {
                    // Gone for good (WeChat keeps media 3 days): the agent still sees the message.
                    content = content::media_unavailable(msg, &reason);
                    None
                }
                Err(retry) => return Err(retry),
            },
        };
        attributes["bridge_message_id"] = json!(id.to_string());
        let incoming = IncomingMessage { content, source_id: msg.msg_id.clone(), content_attributes: attributes, attachment };
        // (The MsgId is the source_id of media posts too, so a retry can recognise them.)
        match self.client.post_incoming(conversation, &incoming).await {
            Ok(message_id) => Ok(message_id.to_string()),
            // The conversation was deleted in Chatwoot: the retry makes a new one.
            Err(e) if e.status() == Some(404) => Err(self.forget(contact, CONVERSATION, e).await),
            Err(e) => Err(self.classify(e)),
        }
    }

    /// On a retry: the message if the earlier attempt's post landed although its answer was lost
    /// (a timeout, a proxy's 502 after Chatwoot saved it). Chatwoot's `source_id` is not unique
    /// and cannot be looked up (§2.3), so the conversation's latest messages are read.
    async fn already_posted(
        &self,
        conversation: u64,
        msg: &InboundMessage,
        id: &BridgeMessageId,
    ) -> Result<Option<u64>, DeliveryError> {
        let latest = self.client.latest_messages(conversation).await.map_err(|e| self.classify(e))?;
        Ok(latest
            .iter()
            .filter(|m| m.message_type.as_u64() == Some(0) || m.message_type.as_str() == Some("incoming"))
            .find(|m| {
                let ours = m.content_attributes["bridge_message_id"].as_str() == Some(id.as_str());
                let same_msg = msg.msg_id.is_some() && m.source_id.as_deref() == msg.msg_id.as_deref();
                ours || same_msg
            })
            .map(|m| m.id))
    }

    /// The outcome as the agent's message status: `delivered`, or `failed` with the reason in
    /// words (§5.1). Chatwoot's dashboard shows it on the message.
    async fn post_status(&self, conversation_id: &str, report: &StatusReport) -> Result<String, DeliveryError> {
        let ids = conversation_id.parse::<u64>().ok().zip(report.platform_event_id.parse::<u64>().ok());
        let Some((conversation, message_id)) = ids else {
            return Err(DeliveryError::Permanent { code: None, reason: "not a Chatwoot conversation and message id".into() });
        };
        let (status, error) = match (&report.delivered, &report.error) {
            (true, _) => (DeliveryStatus::Delivered, None),
            (false, error) => (DeliveryStatus::Failed, Some(external_error(error.as_ref()))),
        };
        self.client.update_status(conversation, message_id, status, error.as_deref()).await.map_err(|e| self.classify(e))?;
        Ok(format!("status:{message_id}:{}", report.report_seq))
    }
}

/// The failure as the agent reads it: "45015: the customer has not written in 48 hours; they
/// must write first", or the channel's own text when the code has no explanation.
pub fn external_error(error: Option<&crate::relay::message::ErrorInfo>) -> String {
    let text = match error {
        None => "not delivered".to_string(),
        Some(e) => match (&e.code, &e.explanation) {
            (Some(code), Some(explanation)) => format!("{code}: {explanation}"),
            (Some(code), None) if !e.message.contains(code.as_str()) => format!("{code}: {}", e.message),
            _ => e.message.clone(),
        },
    };
    text.chars().take(MAX_EXTERNAL_ERROR).collect()
}

impl Platform for ChatwootPlatform {
    fn name(&self) -> &'static str {
        PLATFORM
    }

    fn link_kinds(&self) -> &'static [&'static str] {
        LINK_KINDS
    }

    fn deliver_inbound<'a>(
        &'a self,
        contact: &'a Contact,
        msg: &'a InboundMessage,
        bridge_message_id: &'a BridgeMessageId,
        attempt: u32,
    ) -> BoxFuture<'a, Result<String, DeliveryError>> {
        Box::pin(self.post_message(contact, msg, bridge_message_id, attempt))
    }

    fn report_status<'a>(
        &'a self,
        _contact: &'a Contact,
        conversation_id: &'a str,
        report: &'a StatusReport,
    ) -> BoxFuture<'a, Result<String, DeliveryError>> {
        Box::pin(self.post_status(conversation_id, report))
    }

    /// Catches up at start, then every `catch_up_every` (`catchup`).
    fn background(self: Arc<Self>) -> Option<BoxFuture<'static, ()>> {
        Some(Box::pin(async move {
            loop {
                match self.catch_up().await {
                    Ok(pass) if pass.stored > 0 || pass.failed > 0 => {
                        tracing::info!(
                            stored = pass.stored,
                            conversations = pass.conversations,
                            failed = pass.failed,
                            "caught up on Chatwoot replies"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "catching up on Chatwoot replies failed"),
                }
                tokio::time::sleep(self.catch_up_every).await;
            }
        }))
    }
}

/// The contact's name until an agent changes it (WeChat gives no names to the bridge).
fn display_name(openid: &str) -> String {
    format!("WeChat {openid}")
}

fn classify(e: ChatwootError) -> DeliveryError {
    if e.is_retryable() {
        DeliveryError::Retry { after: e.retry_after(), reason: e.to_string() }
    } else {
        DeliveryError::Permanent { code: e.status().map(|s| ErrorCode::new(format!("chatwoot:{s}"))), reason: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::message::ErrorInfo;

    #[test]
    fn failures_read_as_words_with_their_code() {
        let info = |code: Option<&str>, explanation: Option<&str>, message: &str| ErrorInfo {
            code: code.map(ErrorCode::from),
            message: message.into(),
            explanation: explanation.map(str::to_string),
        };
        assert_eq!(
            external_error(Some(&info(
                Some("45015"),
                Some("the customer has not written in 48 hours; they must write first"),
                "x"
            ))),
            "45015: the customer has not written in 48 hours; they must write first"
        );
        assert_eq!(external_error(Some(&info(Some("99"), None, "odd"))), "99: odd");
        assert_eq!(external_error(Some(&info(Some("99"), None, "wechat errcode 99: odd"))), "wechat errcode 99: odd");
        assert_eq!(external_error(Some(&info(None, None, "timed out"))), "timed out");
        assert_eq!(external_error(Some(&info(None, None, &"x".repeat(900)))).len(), MAX_EXTERNAL_ERROR);
    }
}
