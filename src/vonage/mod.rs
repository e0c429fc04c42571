//! Vonage as a platform adapter, everything Vonage-specific: application JWTs (`jwt`), the
//! Conversation API client (`client`), the event body (`event`), the RTC webhook's checks
//! (`webhook`) and handler (`rtc`), `setup` of the application, the simulator (`sim`), and
//! `VonagePlatform`, the relay's platform on top of them.

pub mod client;
pub mod event;
pub mod jwt;
pub mod rtc;
pub mod setup;
pub mod sim;
pub mod webhook;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use futures_util::future::BoxFuture;
use serde_json::json;

use crate::config::VonageConfig;
use crate::metrics::Metrics;
use crate::relay::message::{BridgeMessageId, Contact, ErrorCode, InboundMessage, StatusReport};
use crate::relay::{DeliveryError, Platform, Relay};
use crate::store::Store;
use client::{VonageClient, VonageError};
use jwt::JwtMinter;

/// The platform's name in the store (message sources, contact links).
pub const PLATFORM: &str = "vonage";
/// The kinds of id Vonage gives a contact, kept as contact links.
pub const USER: &str = "user";
pub const CONVERSATION: &str = "conversation";
pub const MEMBER: &str = "member";
/// The links the admin API lists, in this order.
pub const LINK_KINDS: &[&str] = &[USER, CONVERSATION, MEMBER];

/// Vonage as `app` wires it: the platform the worker delivers to, and the RTC webhook's routes
/// (agents' messages for `channel`'s contacts).
pub fn adapter<S: Clone + Send + Sync + 'static>(
    config: &VonageConfig,
    relay: Relay,
    channel: &'static str,
) -> anyhow::Result<(Arc<dyn Platform>, Router<S>)> {
    let jwt = JwtMinter::new(&config.application_id, config.private_key_pem.expose()).context("VONAGE_PRIVATE_KEY")?;
    let platform = VonagePlatform::new(
        VonageClient::new(&config.api_base, jwt),
        relay.store.clone(),
        config.conversation_id.clone(),
        relay.signals.metrics().clone(),
    );
    let hook = rtc::VonageWebhook {
        signature_secret: config.signature_secret.as_ref().map(|s| s.expose().to_string()),
        shared_conversation: config.conversation_id.clone(),
        channel,
    };
    Ok((Arc::new(platform), rtc::routes(hook, relay)))
}

/// Vonage as the relay's platform: one user, conversation and member per WeChat contact
/// (or one shared conversation, the reference integration's mode).
#[derive(Debug)]
pub struct VonagePlatform {
    client: VonageClient,
    store: Store,
    shared_conversation: Option<String>,
    /// Counts Vonage's errors.
    metrics: Metrics,
}

impl VonagePlatform {
    pub fn new(client: VonageClient, store: Store, shared_conversation: Option<String>, metrics: Metrics) -> Self {
        Self { client, store, shared_conversation, metrics }
    }

    /// What `e` means for the relay ([`classify`]), counted in `bridge_remote_errors_total`.
    fn classify(&self, e: VonageError) -> DeliveryError {
        self.count(&e);
        classify(e)
    }

    /// Counts `e` by its Vonage code, else its HTTP status (a JWT that cannot be minted is ours).
    fn count(&self, e: &VonageError) {
        let code = match e {
            VonageError::Api { code: Some(code), .. } => code.clone(),
            VonageError::Api { status, .. } => status.to_string(),
            VonageError::Transport(_) => "transport".into(),
            VonageError::Decode(_) => "decode".into(),
            VonageError::Jwt(_) => return,
        };
        self.metrics.remote_error(PLATFORM, &code);
    }

    /// The conversation the contact's member is in: the shared one, or the contact's own.
    fn conversation_of<'a>(&'a self, contact: &'a Contact) -> Option<&'a str> {
        self.shared_conversation.as_deref().or(contact.link(PLATFORM, CONVERSATION))
    }

    /// The contact's conversation and member, created on first contact. Each id is saved the
    /// moment it exists; a crash in between is repaired by the 409-means-exists lookups.
    async fn ensure_contact(&self, contact: &Contact) -> Result<(String, String), DeliveryError> {
        if let (Some(conv), Some(member)) = (self.conversation_of(contact), contact.link(PLATFORM, MEMBER)) {
            return Ok((conv.to_string(), member.to_string()));
        }
        let openid = &contact.channel_id;
        let custom = json!({"wechat_openid": openid, "wechat_account": contact.account});
        let user = match contact.link(PLATFORM, USER) {
            Some(user) => user.to_string(),
            None => {
                let user = self
                    .client
                    .create_or_find_user(&user_name(openid), &display_name(openid), custom.clone())
                    .await
                    .map_err(|e| self.classify(e))?;
                self.save(contact, USER, &user).await?;
                user
            }
        };
        let conversation = match self.conversation_of(contact) {
            Some(conv) => conv.to_string(),
            None => {
                let conv = self
                    .client
                    .create_or_find_conversation(&conversation_name(openid), &display_name(openid), custom, &user)
                    .await
                    .map_err(|e| self.classify(e))?;
                self.save(contact, CONVERSATION, &conv).await?;
                conv
            }
        };
        let member = self.client.join_user(&conversation, &user).await.map_err(|e| self.classify(e))?;
        self.save(contact, MEMBER, &member).await?;
        Ok((conversation, member))
    }

    async fn save(&self, contact: &Contact, kind: &str, value: &str) -> Result<(), DeliveryError> {
        self.store.save_link(contact.id, PLATFORM, kind, value).await.map_err(DeliveryError::from)
    }
}

impl Platform for VonagePlatform {
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
        _attempt: u32,
    ) -> BoxFuture<'a, Result<String, DeliveryError>> {
        Box::pin(self.post_message(contact, msg, bridge_message_id))
    }

    fn report_status<'a>(
        &'a self,
        contact: &'a Contact,
        conversation_id: &'a str,
        report: &'a StatusReport,
    ) -> BoxFuture<'a, Result<String, DeliveryError>> {
        Box::pin(self.post_status(contact, conversation_id, report))
    }
}

impl VonagePlatform {
    /// The message as a `custom:wechat:message` event in the contact's conversation.
    async fn post_message(
        &self,
        contact: &Contact,
        msg: &InboundMessage,
        bridge_message_id: &str,
    ) -> Result<String, DeliveryError> {
        let (conversation, member) = self.ensure_contact(contact).await?;
        let event = event::inbound_event(msg, &member, bridge_message_id);
        match self.client.create_event(&conversation, &event).await {
            Ok(id) => Ok(id),
            // The conversation was deleted on Vonage's side: forget it, and the retry creates a
            // new one (only in per-user mode; a missing shared conversation is a config error).
            Err(e) if e.code() == Some("conversation:error:not-found") && self.shared_conversation.is_none() => {
                self.count(&e);
                self.store.remove_link(contact.id, PLATFORM, CONVERSATION).await?;
                self.store.remove_link(contact.id, PLATFORM, MEMBER).await?;
                Err(DeliveryError::Retry { reason: format!("{e}; conversation will be recreated"), after: None })
            }
            Err(e) => Err(self.classify(e)),
        }
    }

    /// The outcome as a `custom:wechat:status` event in `conversation_id`.
    async fn post_status(
        &self,
        contact: &Contact,
        conversation_id: &str,
        report: &StatusReport,
    ) -> Result<String, DeliveryError> {
        // From the customer's member when it is in this conversation, so clients show it in
        // the thread; Vonage accepts events without `from` from an application JWT (§2.3).
        let member = contact.link(PLATFORM, MEMBER).filter(|_| self.conversation_of(contact) == Some(conversation_id));
        let event = event::status_event(report, member);
        self.client.create_event(conversation_id, &event).await.map_err(|e| self.classify(e))
    }
}

/// Vonage user name for an OpenID: unique, so a 409 finds the same user again.
fn user_name(openid: &str) -> String {
    format!("wechat_{openid}")
}

/// Conversation name (max 100 characters, unique per application, `vonage-api.md` §2.3).
fn conversation_name(openid: &str) -> String {
    format!("wechat_{openid}").chars().take(100).collect()
}

/// Display names are limited to 50 characters (§2.3).
fn display_name(openid: &str) -> String {
    format!("WeChat {openid}").chars().take(50).collect()
}

fn classify(e: VonageError) -> DeliveryError {
    if e.is_retryable() {
        DeliveryError::Retry { after: e.retry_after(), reason: e.to_string() }
    } else {
        DeliveryError::Permanent { code: e.code().map(ErrorCode::from), reason: e.to_string() }
    }
}
