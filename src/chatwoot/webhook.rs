//! `POST /webhooks/chatwoot`: the API inbox's webhook (`chatwoot-api.md` §3). Chatwoot sends
//! each event once and marks the message failed when it gets no 2xx within 5 s (§0.2), so every
//! event is answered at once: an agent's reply is stored with its outbox job before the 200,
//! everything else (the bridge's own incoming messages, private notes, templates, other inboxes
//! and events) gets 200 and is ignored. Signed requests (Chatwoot ≥ 4.13, §3.5) are checked
//! when `CHATWOOT_WEBHOOK_SECRET` is set.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::client::CwAttachment;
use super::{CONVERSATION, ChatwootPlatform, PLATFORM, content};
use crate::metrics::{Rejection, mark_rejections};
use crate::relay::message::{Contact, MessageStatus, OutboundRecord};
use crate::relay::{Relay, outbound};
use crate::store::{Accepted, StoreError};

/// How old a signed request may be (§3.5: "rejecting timestamps older than about 5 minutes").
pub const MAX_AGE_SECS: i64 = 300;
/// How far ahead of our clock a timestamp may be (§3.5: DOCS-VERIFY accepts −30 s).
pub const MAX_AHEAD_SECS: i64 = 30;

/// Why a request was not accepted as coming from Chatwoot.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignatureError {
    #[error("missing X-Chatwoot-Signature or X-Chatwoot-Timestamp")]
    Missing,
    #[error("X-Chatwoot-Timestamp is not Unix seconds")]
    BadTimestamp,
    #[error("X-Chatwoot-Timestamp is too old or from the future")]
    Stale,
    #[error("X-Chatwoot-Signature does not match the body")]
    Mismatch,
}

/// Checks `X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{raw body}")>`
/// in constant time, and the timestamp's age (§3.5). The key is the secret's bytes as they are.
pub fn verify_signature(
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    secret: &str,
    now_secs: i64,
) -> Result<(), SignatureError> {
    let (Some(signature), Some(timestamp)) = (signature.map(str::trim), timestamp.map(str::trim)) else {
        return Err(SignatureError::Missing);
    };
    let ts: i64 = timestamp.parse().map_err(|_| SignatureError::BadTimestamp)?;
    let age = now_secs - ts;
    if !(-MAX_AHEAD_SECS..=MAX_AGE_SECS).contains(&age) {
        return Err(SignatureError::Stale);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    if !bool::from(expected.as_bytes().ct_eq(signature.to_ascii_lowercase().as_bytes())) {
        return Err(SignatureError::Mismatch);
    }
    Ok(())
}

/// What one webhook means to the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum Hook {
    /// An agent's (or bot's) new public reply, to send to the customer.
    Reply(AgentMessage),
    /// A public reply changed with no `external_error` left: the dashboard's Retry (§5.3) when
    /// the bridge had failed it; the bridge's own `delivered` report otherwise.
    Updated(AgentMessage),
    /// Nothing to do (answered 200).
    Ignore(&'static str),
}

/// An outgoing message of an agent or bot in the API inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentMessage {
    pub conversation: u64,
    pub message_id: u64,
    /// `conversation.meta.sender.identifier`: the customer, when the conversation is not known yet.
    pub contact_identifier: Option<String>,
    pub content: Option<String>,
    pub attachments: Vec<CwAttachment>,
    /// `content_attributes` hold nothing but a cleared `external_error` (what Retry leaves).
    pub attributes_cleared: bool,
}

/// Reads a webhook body (§3.1, §3.3, §3.4): only `message_created`/`message_updated` of an
/// outgoing, public message in our account and inbox matters. `message_type` is a string at the
/// top level of webhooks but an integer in REST answers (§0.6): both are understood.
pub fn classify(event: &Value, account_id: u64, inbox_id: u64) -> Hook {
    let name = event["event"].as_str().unwrap_or_default();
    if name != "message_created" && name != "message_updated" {
        return Hook::Ignore("not a message event");
    }
    if !is_outgoing(&event["message_type"]) {
        // The bridge's own incoming posts come back here (§3.4), and templates (greetings,
        // CSAT) are Chatwoot's automation, not an agent's answer.
        return Hook::Ignore("not an outgoing message");
    }
    if event["private"].as_bool().unwrap_or(false) {
        return Hook::Ignore("private note");
    }
    if event["account"]["id"].as_u64().is_some_and(|id| id != account_id) {
        return Hook::Ignore("another account");
    }
    let inbox = event["inbox"]["id"].as_u64().or(event["conversation"]["inbox_id"].as_u64());
    if inbox != Some(inbox_id) {
        return Hook::Ignore("another inbox");
    }
    let (Some(conversation), Some(message_id)) = (event["conversation"]["id"].as_u64(), event["id"].as_u64()) else {
        return Hook::Ignore("no conversation or message id");
    };
    let attributes = &event["content_attributes"];
    let message = AgentMessage {
        conversation,
        message_id,
        contact_identifier: event["conversation"]["meta"]["sender"]["identifier"].as_str().map(str::to_string),
        content: event["content"].as_str().map(str::to_string),
        attachments: serde_json::from_value(event["attachments"].clone()).unwrap_or_default(),
        attributes_cleared: attributes
            .as_object()
            .is_none_or(|a| a.iter().all(|(key, value)| key == "external_error" && value.is_null())),
    };
    if name == "message_created" {
        return Hook::Reply(message);
    }
    if attributes["deleted"].as_bool().unwrap_or(false) {
        return Hook::Ignore("message deleted");
    }
    if attributes.get("external_error").is_some_and(|e| !e.is_null()) {
        // The bridge's own `failed` report, or Chatwoot marking its webhook failed.
        return Hook::Ignore("message marked failed");
    }
    Hook::Updated(message)
}

/// `message_type` as webhooks (`"outgoing"`) or REST (`1`) give it.
pub fn is_outgoing(message_type: &Value) -> bool {
    message_type.as_str() == Some("outgoing") || message_type.as_u64() == Some(1)
}

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("malformed webhook body: {0}")]
    Malformed(String),
    #[error("cannot store the message: {0}")]
    Store(#[from] StoreError),
}

/// What the webhook refuses with, as `bridge_webhook_rejections_total` names it.
const REJECTIONS: &[&str] = &["signature", "stale", "malformed", "too_large"];

impl IntoResponse for HookError {
    fn into_response(self) -> Response {
        let (status, reason) = match &self {
            HookError::Signature(SignatureError::Stale) => (StatusCode::UNAUTHORIZED, "stale"),
            HookError::Signature(_) => (StatusCode::UNAUTHORIZED, "signature"),
            HookError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
            // Chatwoot does not retry: it marks the reply failed, and the catch-up finds it later.
            HookError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, ""),
        };
        tracing::warn!(error = %self, status = status.as_u16(), "chatwoot webhook rejected");
        let response = (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], self.to_string()).into_response();
        if status.is_client_error() { Rejection(reason).on(response) } else { response }
    }
}

#[derive(Clone)]
struct HookState {
    platform: Arc<ChatwootPlatform>,
    secret: Option<Arc<str>>,
}

/// `POST /webhooks/chatwoot`.
pub fn routes<S: Clone + Send + Sync + 'static>(platform: Arc<ChatwootPlatform>, secret: Option<String>) -> Router<S> {
    const ROUTE: &str = "/webhooks/chatwoot";
    platform.relay.signals.metrics().webhook_routes(&[ROUTE], REJECTIONS);
    let state = HookState { platform, secret: secret.map(Arc::from) };
    Router::new().route(ROUTE, post(receive)).route_layer(axum::middleware::map_response(mark_rejections)).with_state(state)
}

async fn receive(State(state): State<HookState>, headers: HeaderMap, body: Bytes) -> Result<Response, HookError> {
    let signed = match &state.secret {
        Some(secret) => {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            let now = crate::store::now_ms() / 1000;
            verify_signature(header("x-chatwoot-signature"), header("x-chatwoot-timestamp"), &body, secret, now)?;
            true
        }
        None => false,
    };
    let event: Value = serde_json::from_slice(&body).map_err(|e| HookError::Malformed(e.to_string()))?;
    let platform = &state.platform;
    let outcome = match classify(&event, platform.account_id, platform.inbox_id) {
        Hook::Ignore(why) => return Ok(answer(why)),
        Hook::Reply(message) => platform.on_reply(&message, signed, Change::Created).await?,
        Hook::Updated(message) => platform.on_reply(&message, signed, Change::Updated).await?,
    };
    Ok(answer(outcome.as_str()))
}

fn answer(outcome: &'static str) -> Response {
    tracing::debug!(outcome, "chatwoot webhook handled");
    (StatusCode::OK, outcome).into_response()
}

/// Which webhook brought an agent's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
}

/// How an agent's message reached the bridge (for the logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    Webhook,
    CatchUp,
}

/// What became of an agent's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    AlreadyStored,
    Retrying,
    NothingToSend,
    NoContact,
    /// Unsigned and not confirmed by Chatwoot's API: not relayed (the next catch-up asks again).
    Unconfirmed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::AlreadyStored => "already stored",
            Outcome::Retrying => "retrying",
            Outcome::NothingToSend => "nothing to send",
            Outcome::NoContact => "no WeChat contact for this conversation",
            Outcome::Unconfirmed => "not confirmed by Chatwoot's API",
        }
    }
}

/// How long a webhook may spend catching up on its conversation before it is answered:
/// Chatwoot waits 5 s (§3.2) and marks the message failed after that.
const SYNC_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

impl ChatwootPlatform {
    /// The contact a conversation belongs to: by the conversation the bridge remembers, else by
    /// the contact's identifier (a conversation made before a lost database, or by another
    /// instance), which is then remembered if the contact has no conversation linked yet (an
    /// agent answering in an older conversation of the customer does not move the link).
    pub(super) async fn contact_of(&self, conversation: u64, identifier: Option<&str>) -> Result<Option<Contact>, StoreError> {
        let store = &self.relay.store;
        if let Some(contact) = store.contact_by_link(PLATFORM, CONVERSATION, &conversation.to_string()).await? {
            return Ok(Some(contact));
        }
        let Some(channel_id) = identifier.and_then(|id| self.channel_id_of(id)) else { return Ok(None) };
        let Some(contact) = store.contact_by_channel_id(self.channel_name, channel_id).await? else { return Ok(None) };
        if contact.link(PLATFORM, CONVERSATION).is_none() {
            store.save_link(contact.id, PLATFORM, CONVERSATION, &conversation.to_string()).await?;
            return store.contact(contact.id).await.map(Some);
        }
        Ok(Some(contact))
    }

    /// An agent's message announced by the webhook. The conversation is first caught up from
    /// the last message seen, in Chatwoot's order (a reply whose webhook was missed goes out
    /// before the one announced now), with Chatwoot's own data. Only when Chatwoot cannot be
    /// asked in time is the webhook's copy used, and then only if it was signed.
    pub(super) async fn on_reply(&self, hint: &AgentMessage, signed: bool, change: Change) -> Result<Outcome, StoreError> {
        let Some(contact) = self.contact_of(hint.conversation, hint.contact_identifier.as_deref()).await? else {
            return Ok(Outcome::NoContact);
        };
        let listed = match tokio::time::timeout(SYNC_BUDGET, self.sync(&contact, hint.conversation)).await {
            Ok(Ok(sync)) => sync.seen >= hint.message_id,
            Ok(Err(super::catchup::CatchUpError::Store(e))) => return Err(e),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, conversation = hint.conversation, "catching up on the conversation failed");
                false
            }
            Err(_) => false,
        };
        let external_id = format!("{}:{}", hint.conversation, hint.message_id);
        let stored = self.relay.store.message_by_external_id(PLATFORM, &external_id).await?;
        match (change, stored) {
            // The dashboard's Retry of a reply the bridge failed: send it again (§5.3).
            (Change::Updated, Some(stored)) if stored.status == MessageStatus::Failed => {
                if self.relay.store.retry_message(&stored.id).await? {
                    self.relay.signals.queued(&stored.id);
                    tracing::info!(bridge_message_id = %stored.id, chatwoot_message = hint.message_id, "retried from Chatwoot's dashboard");
                }
                Ok(Outcome::Retrying)
            }
            (_, Some(_)) => Ok(Outcome::AlreadyStored),
            // Listed by the API but not stored: not something to send (a note, too old, delivered).
            (_, None) if listed => Ok(Outcome::NothingToSend),
            (_, None) if !signed => Ok(Outcome::Unconfirmed),
            // An update of a message the bridge never stored is relayed only when nothing but a
            // cleared error changed (Retry after a webhook the bridge missed), not on edits.
            (Change::Updated, None) if !hint.attributes_cleared => Ok(Outcome::NothingToSend),
            (_, None) => self.accept_reply(&contact, hint, Arrival::Webhook).await,
        }
    }

    /// Stores an agent's reply for the customer (deduplicated on conversation and message id:
    /// a redelivered webhook, or the catch-up finding what a webhook brought, is relayed once).
    pub(super) async fn accept_reply(
        &self,
        contact: &Contact,
        message: &AgentMessage,
        arrival: Arrival,
    ) -> Result<Outcome, StoreError> {
        let Some((first, more)) = content::outgoing(message.content.as_deref(), &message.attachments) else {
            return Ok(Outcome::NothingToSend);
        };
        let record = OutboundRecord {
            conversation_id: message.conversation.to_string(),
            platform_event_id: message.message_id.to_string(),
            message: first,
            client_reference: None,
            more,
        };
        let relay: &Relay = &self.relay;
        match outbound::accept_record(&relay.store, &relay.signals, self.channel_name, PLATFORM, contact, &record, None).await? {
            Accepted::New(id) => {
                tracing::info!(bridge_message_id = %id, chatwoot_message = message.message_id, ?arrival, "agent reply stored");
                Ok(Outcome::Stored)
            }
            Accepted::Duplicate(_) => Ok(Outcome::AlreadyStored),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_reference_test_vector_verifies() {
        // chatwoot-api.md §3.5 (computed with Python's hmac).
        let body = br#"{"event":"message_created","id":1}"#;
        let sig = "sha256=d8c71a1af70756addac164b2dffedee786ed12f9ac2ca7d604c3ee2f6e26e97f";
        assert_eq!(verify_signature(Some(sig), Some("1781700000"), body, "cw_secret_abc", 1781700000), Ok(()));
        assert_eq!(verify_signature(Some(sig), Some("1781700000"), body, "cw_secret_abc", 1781700000 + 300), Ok(()));
        assert_eq!(
            verify_signature(Some(sig), Some("1781700000"), body, "cw_secret_abc", 1781700000 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(Some(sig), Some("1781700000"), body, "cw_secret_abc", 1781700000 - 31),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(Some(sig), Some("1781700000"), b"{}", "cw_secret_abc", 1781700000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify_signature(Some(sig), Some("1781700000"), body, "another", 1781700000), Err(SignatureError::Mismatch));
        assert_eq!(verify_signature(None, Some("1781700000"), body, "cw_secret_abc", 1781700000), Err(SignatureError::Missing));
        assert_eq!(verify_signature(Some(sig), None, body, "cw_secret_abc", 1781700000), Err(SignatureError::Missing));
        assert_eq!(
            verify_signature(Some(sig), Some("soon"), body, "cw_secret_abc", 1781700000),
            Err(SignatureError::BadTimestamp)
        );
        // The body alone (issue #13809's mistake) never matches.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"cw_secret_abc").unwrap();
        mac.update(body);
        let body_only = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            verify_signature(Some(&body_only), Some("1781700000"), body, "cw_secret_abc", 1781700000),
            Err(SignatureError::Mismatch)
        );
    }

    fn reply() -> Value {
        json!({"event": "message_created", "id": 1240, "content": "您好", "message_type": "outgoing", "private": false,
            "account": {"id": 1}, "inbox": {"id": 3},
            "conversation": {"id": 42, "inbox_id": 3, "meta": {"sender": {"identifier": "wechat:wx1:o_1"}}}})
    }

    #[test]
    fn only_public_outgoing_messages_of_our_inbox_are_replies() {
        let Hook::Reply(m) = classify(&reply(), 1, 3) else { panic!("a reply") };
        assert_eq!((m.conversation, m.message_id), (42, 1240));
        assert_eq!(m.contact_identifier.as_deref(), Some("wechat:wx1:o_1"));
        let with = |key: &str, value: Value| {
            let mut e = reply();
            e[key] = value;
            classify(&e, 1, 3)
        };
        assert_eq!(with("message_type", json!("incoming")), Hook::Ignore("not an outgoing message"));
        assert_eq!(with("message_type", json!("template")), Hook::Ignore("not an outgoing message"));
        assert!(matches!(with("message_type", json!(1)), Hook::Reply(_)), "REST's integer form");
        assert_eq!(with("private", json!(true)), Hook::Ignore("private note"));
        assert_eq!(with("inbox", json!({"id": 4})), Hook::Ignore("another inbox"));
        assert_eq!(with("account", json!({"id": 2})), Hook::Ignore("another account"));
        assert_eq!(with("event", json!("conversation_status_changed")), Hook::Ignore("not a message event"));
    }

    #[test]
    fn an_update_without_external_error_is_a_retry_candidate() {
        let mut e = reply();
        e["event"] = json!("message_updated");
        e["content_attributes"] = json!({});
        assert!(matches!(classify(&e, 1, 3), Hook::Updated(_)));
        e["content_attributes"] = json!({"external_error": "45015: …"});
        assert_eq!(classify(&e, 1, 3), Hook::Ignore("message marked failed"));
        e["content_attributes"] = json!({"deleted": true});
        assert_eq!(classify(&e, 1, 3), Hook::Ignore("message deleted"));
    }
}
