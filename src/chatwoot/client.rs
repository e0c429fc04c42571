//! HTTP client for Chatwoot's Application API (`chatwoot-api.md` §1.3: the only API that can find
//! a contact by identifier, stamp `source_id`, and report delivery status), with a user access
//! token in the `api_access_token` header (§1.2). Errors keep Chatwoot's own text (§4.2), so the
//! relay can tell a retry (429, 5xx, "Too many messages") from a permanent refusal.

use std::time::Duration;

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::config::Secret;
use crate::relay::MediaFile;

/// Per-request timeout: a stuck call must not hold a job longer than its lease renewals allow.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// What went wrong talking to Chatwoot.
#[derive(Debug, thiserror::Error)]
pub enum ChatwootError {
    /// Chatwoot answered with an error status; `message` is its `error` or `message` text.
    #[error("chatwoot answered {status}: {message}")]
    Api { status: u16, message: String },
    /// No answer: connection refused, reset or timed out. The request may or may not have landed.
    #[error("chatwoot unreachable: {0}")]
    Transport(String),
    #[error("unexpected chatwoot response: {0}")]
    Decode(String),
}

impl ChatwootError {
    /// 408, 429, 5xx and transport errors are worth retrying (§4.2: "Retry only 429/5xx/timeouts"),
    /// and so is the per-conversation flood limit, a 422 "Too many messages" that passes within
    /// a minute (§2.3): a customer's burst must wait, not be dropped.
    pub fn is_retryable(&self) -> bool {
        match self {
            ChatwootError::Api { status, .. } => *status == 408 || *status == 429 || *status >= 500 || self.is_flood_limit(),
            ChatwootError::Transport(_) => true,
            ChatwootError::Decode(_) => false,
        }
    }

    /// The 200-messages-per-conversation-per-minute limit (§2.3, `prevent_message_flooding`).
    pub fn is_flood_limit(&self) -> bool {
        matches!(self, ChatwootError::Api { status: 422, message } if message.contains("Too many messages"))
    }

    /// How long to wait before the retry, when the error says (the flood limit's rolling minute;
    /// Rack::Attack's 429 sends no Retry-After, §4.1).
    pub fn retry_after(&self) -> Option<Duration> {
        self.is_flood_limit().then_some(Duration::from_secs(60))
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ChatwootError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A contact as the bridge needs it: its id and its inbox sessions (§2.1).
#[derive(Debug, Clone, Deserialize)]
pub struct CwContact {
    pub id: u64,
    #[serde(default)]
    pub identifier: Option<String>,
    #[serde(default)]
    pub contact_inboxes: Vec<CwContactInbox>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CwContactInbox {
    pub source_id: String,
    #[serde(default)]
    pub inbox: Option<CwInboxRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CwInboxRef {
    pub id: u64,
}

impl CwContact {
    /// True when the contact already has a session in `inbox_id`.
    pub fn in_inbox(&self, inbox_id: u64) -> bool {
        self.contact_inboxes.iter().any(|ci| ci.inbox.as_ref().is_some_and(|i| i.id == inbox_id))
    }
}

/// A conversation: `id` is the per-account display id used in every URL (§6).
#[derive(Debug, Clone, Deserialize)]
pub struct CwConversation {
    pub id: u64,
    #[serde(default)]
    pub inbox_id: Option<u64>,
    #[serde(default)]
    pub status: Option<String>,
}

/// A message as REST answers show it (§2.3, §3.6): `message_type` is an integer there.
#[derive(Debug, Clone, Deserialize)]
pub struct CwMessage {
    pub id: u64,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub message_type: Value,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub created_at: Value,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub content_attributes: Value,
    #[serde(default)]
    pub attachments: Vec<CwAttachment>,
    #[serde(default)]
    pub source_id: Option<String>,
}

/// An attachment of a message (§3.3): `data_url` redirects to the file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CwAttachment {
    #[serde(default)]
    pub file_type: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub extension: Option<String>,
    #[serde(default)]
    pub data_url: Option<String>,
    #[serde(default)]
    pub file_size: Option<u64>,
}

/// How a message's delivery went, as `PATCH …/messages/{id}` takes it (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Delivered,
    Failed,
}

/// An incoming message to post for a customer (§2.3).
#[derive(Debug, Clone, Default)]
pub struct IncomingMessage {
    pub content: String,
    /// The channel's message id (WeChat MsgId), stamped so agents and tools can trace it.
    pub source_id: Option<String>,
    pub content_attributes: Value,
    pub attachment: Option<MediaFile>,
}

/// Talks to one Chatwoot account.
pub struct ChatwootClient {
    http: reqwest::Client,
    base: String,
    account_id: u64,
    token: Secret,
}

impl std::fmt::Debug for ChatwootClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatwootClient").field("base", &self.base).field("account_id", &self.account_id).finish_non_exhaustive()
    }
}

impl ChatwootClient {
    pub fn new(base: &str, account_id: u64, token: Secret) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("wechat-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("reqwest client builds");
        Self { http, base: base.trim_end_matches('/').to_string(), account_id, token }
    }

    fn account_path(&self, path: &str) -> String {
        format!("{}/api/v1/accounts/{}{path}", self.base, self.account_id)
    }

    /// `POST /contacts/filter` on `identifier` (exact, case-insensitive, §2.1): the contact, if any.
    pub async fn find_contact(&self, identifier: &str) -> Result<Option<CwContact>, ChatwootError> {
        let body = json!({"payload": [{"attribute_key": "identifier", "filter_operator": "equal_to",
            "values": [identifier], "query_operator": null}]});
        let found: Value = self.call(Method::POST, &self.account_path("/contacts/filter"), Some(&body)).await?;
        let contacts: Vec<CwContact> = decode(found["payload"].clone())?;
        // Chatwoot compares case-insensitively; OpenIDs are case-sensitive.
        Ok(contacts.into_iter().find(|c| c.identifier.as_deref() == Some(identifier)))
    }

    /// `POST /contacts` with the inbox session (§2.1). A 422 means the identifier is taken
    /// (another instance, or a lost database): the caller looks it up.
    pub async fn create_contact(
        &self,
        inbox_id: u64,
        name: &str,
        identifier: &str,
        source_id: &str,
        additional: Value,
    ) -> Result<CwContact, ChatwootError> {
        let body = json!({"inbox_id": inbox_id, "name": name, "identifier": identifier, "source_id": source_id,
            "additional_attributes": additional, "custom_attributes": {}});
        let created: Value = self.call(Method::POST, &self.account_path("/contacts"), Some(&body)).await?;
        decode(created["payload"]["contact"].clone())
    }

    /// `POST /contacts/{id}/contact_inboxes`: a session in our inbox for a contact made elsewhere.
    pub async fn add_contact_inbox(&self, contact_id: u64, inbox_id: u64, source_id: &str) -> Result<(), ChatwootError> {
        let body = json!({"inbox_id": inbox_id, "source_id": source_id});
        let _: Value =
            self.call(Method::POST, &self.account_path(&format!("/contacts/{contact_id}/contact_inboxes")), Some(&body)).await?;
        Ok(())
    }

    /// `GET /contacts/{id}/conversations`: the contact's most recent conversations (§2.1).
    pub async fn contact_conversations(&self, contact_id: u64) -> Result<Vec<CwConversation>, ChatwootError> {
        let found: Value =
            self.call(Method::GET, &self.account_path(&format!("/contacts/{contact_id}/conversations")), None).await?;
        decode(found["payload"].clone())
    }

    /// `POST /conversations` with `inbox_id` and `contact_id` always (§2.2: `source_id` alone
    /// looks across all inboxes).
    pub async fn create_conversation(
        &self,
        inbox_id: u64,
        contact_id: u64,
        source_id: &str,
    ) -> Result<CwConversation, ChatwootError> {
        let body = json!({"source_id": source_id, "inbox_id": inbox_id, "contact_id": contact_id, "status": "open"});
        let created: Value = self.call(Method::POST, &self.account_path("/conversations"), Some(&body)).await?;
        decode(created)
    }

    /// `POST /conversations/{id}/messages` as an incoming message: JSON, or multipart with the
    /// file as `attachments[]` (§2.3). Returns the message id.
    pub async fn post_incoming(&self, conversation: u64, msg: &IncomingMessage) -> Result<u64, ChatwootError> {
        let url = self.account_path(&format!("/conversations/{conversation}/messages"));
        let created: CwMessage = match &msg.attachment {
            None => {
                let mut body = json!({"content": msg.content, "message_type": "incoming", "private": false,
                    "content_attributes": msg.content_attributes});
                if let Some(source_id) = &msg.source_id {
                    body["source_id"] = json!(source_id);
                }
                self.call(Method::POST, &url, Some(&body)).await?
            }
            Some(file) => {
                let part = Part::bytes(file.bytes.clone())
                    .file_name(file.filename.clone())
                    .mime_str(&file.content_type)
                    .or_else(|_| {
                        Part::bytes(file.bytes.clone()).file_name(file.filename.clone()).mime_str("application/octet-stream")
                    })
                    .map_err(|e| ChatwootError::Decode(e.to_string()))?;
                let mut form = Form::new()
                    .text("content", msg.content.clone())
                    .text("message_type", "incoming")
                    .text("private", "false")
                    .part("attachments[]", part);
                if let Some(source_id) = &msg.source_id {
                    form = form.text("source_id", source_id.clone());
                }
                self.send(self.request(Method::POST, &url).multipart(form)).await?
            }
        };
        Ok(created.id)
    }

    /// `PATCH /conversations/{id}/messages/{message_id}` `{status, external_error}` (§5.1).
    pub async fn update_status(
        &self,
        conversation: u64,
        message_id: u64,
        status: DeliveryStatus,
        external_error: Option<&str>,
    ) -> Result<(), ChatwootError> {
        let body = match status {
            DeliveryStatus::Delivered => json!({"status": "delivered"}),
            DeliveryStatus::Failed => json!({"status": "failed", "external_error": external_error.unwrap_or("failed")}),
        };
        let url = self.account_path(&format!("/conversations/{conversation}/messages/{message_id}"));
        let _: Value = self.call(Method::PATCH, &url, Some(&body)).await?;
        Ok(())
    }

    /// `GET /conversations/{id}/messages?after=` (§3.6): up to 100 messages with a greater id,
    /// oldest first.
    pub async fn messages_after(&self, conversation: u64, after: u64) -> Result<Vec<CwMessage>, ChatwootError> {
        let url = self.account_path(&format!("/conversations/{conversation}/messages?after={after}"));
        let found: Value = self.call(Method::GET, &url, None).await?;
        decode(found["payload"].clone())
    }

    /// `GET /conversations/{id}/messages` without a cursor: the latest 20 (§3.6).
    pub async fn latest_messages(&self, conversation: u64) -> Result<Vec<CwMessage>, ChatwootError> {
        let url = self.account_path(&format!("/conversations/{conversation}/messages"));
        let found: Value = self.call(Method::GET, &url, None).await?;
        decode(found["payload"].clone())
    }

    /// A private note in the conversation (§5.4): seen by agents only, it neither reopens a
    /// resolved conversation nor counts as the customer writing. Returns its id.
    pub async fn post_note(&self, conversation: u64, content: &str) -> Result<u64, ChatwootError> {
        let url = self.account_path(&format!("/conversations/{conversation}/messages"));
        let body = json!({"content": content, "message_type": "outgoing", "private": true});
        let created: CwMessage = self.call(Method::POST, &url, Some(&body)).await?;
        Ok(created.id)
    }

    /// The source_id of the contact's session in `inbox_id` (`GET /contacts/{id}`), which a new
    /// conversation is opened on.
    pub async fn source_id_in(&self, contact_id: u64, inbox_id: u64) -> Result<String, ChatwootError> {
        let found: Value = self.call(Method::GET, &self.account_path(&format!("/contacts/{contact_id}")), None).await?;
        let contact: CwContact = decode(found["payload"].clone())?;
        contact
            .contact_inboxes
            .into_iter()
            .find(|ci| ci.inbox.as_ref().is_some_and(|i| i.id == inbox_id))
            .map(|ci| ci.source_id)
            .ok_or_else(|| ChatwootError::Decode(format!("contact {contact_id} has no session in inbox {inbox_id}")))
    }

    /// `GET /inboxes/{id}` (§1.1).
    pub async fn inbox(&self, inbox_id: u64) -> Result<Value, ChatwootError> {
        self.call(Method::GET, &self.account_path(&format!("/inboxes/{inbox_id}")), None).await
    }

    /// `PATCH /inboxes/{id}` with `body`.
    pub async fn update_inbox(&self, inbox_id: u64, body: &Value) -> Result<Value, ChatwootError> {
        self.call(Method::PATCH, &self.account_path(&format!("/inboxes/{inbox_id}")), Some(body)).await
    }

    /// `GET /api/v1/profile`: the token's user, with its role in each account.
    pub async fn profile(&self) -> Result<Value, ChatwootError> {
        self.call(Method::GET, &format!("{}/api/v1/profile", self.base), None).await
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url).header("api_access_token", self.token.expose())
    }

    async fn call<T: DeserializeOwned>(&self, method: Method, url: &str, body: Option<&Value>) -> Result<T, ChatwootError> {
        let mut request = self.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, ChatwootError> {
        let response = request.send().await.map_err(|e| ChatwootError::Transport(crate::transport_error_text(e)))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| ChatwootError::Transport(crate::transport_error_text(e)))?;
        if !status.is_success() {
            return Err(ChatwootError::Api { status: status.as_u16(), message: error_text(&bytes) });
        }
        serde_json::from_slice(&bytes).map_err(|e| ChatwootError::Decode(e.to_string()))
    }
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T, ChatwootError> {
    serde_json::from_value(value).map_err(|e| ChatwootError::Decode(e.to_string()))
}

/// Chatwoot's error text (§4.2): `{"error": …}`, `{"message": …}`, or a short plain body
/// (Rack::Attack's "Retry later", a proxy's page), cut to 200 characters.
fn error_text(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v["error"].as_str().or(v["message"].as_str()).map(str::to_string).unwrap_or_else(|| v.to_string()),
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_429_5xx_timeouts_and_the_flood_limit_are_retried() {
        let api = |status: u16, message: &str| ChatwootError::Api { status, message: message.into() };
        assert!(api(429, "Retry later").is_retryable());
        assert!(api(503, "").is_retryable());
        assert!(api(408, "").is_retryable());
        assert!(ChatwootError::Transport("refused".into()).is_retryable());
        let flood = api(422, "Validation failed: Too many messages");
        assert!(flood.is_retryable());
        assert_eq!(flood.retry_after(), Some(Duration::from_secs(60)));
        assert!(!api(422, "Identifier has already been taken").is_retryable());
        assert!(!api(401, "Invalid Access Token").is_retryable());
        assert!(!api(404, "Resource could not be found").is_retryable());
        assert_eq!(api(429, "Retry later").retry_after(), None, "Rack::Attack sends no Retry-After (§4.1)");
    }

    #[test]
    fn error_text_takes_chatwoots_shapes() {
        assert_eq!(error_text(br#"{"error":"Invalid Access Token"}"#), "Invalid Access Token");
        assert_eq!(
            error_text(br#"{"message":"Identifier has already been taken","attributes":["identifier"]}"#),
            "Identifier has already been taken"
        );
        assert_eq!(error_text(b"Retry later\n"), "Retry later");
        assert_eq!(error_text(&[b'x'; 1000]).len(), 200);
    }
}
