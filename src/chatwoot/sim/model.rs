//! The simulated account's records (users, inboxes, contacts, contact inboxes, conversations,
//! messages, attachments), their lookups and the permission rules that depend on them.
//! The endpoints' logic is in `contacts.rs`, `conversations.rs` and `messages.rs`; the JSON
//! shapes in `json.rs`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::{ChatwootSimConfig, SimFile};

pub(crate) const ACCOUNT_NAME: &str = "Acme";
/// "WeChat Bridge": the administrator the bridge should use (§1.2), not an inbox member.
pub(crate) const ADMIN_USER_ID: u64 = 1;
/// "Agent Li": an agent, member of the API inbox only.
pub(crate) const AGENT_USER_ID: u64 = 2;
pub(crate) const BOT_ID: u64 = 1;
pub(crate) const BOT_NAME: &str = "Helper Bot";

/// Who an API request acts as (the owner of its `api_access_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Principal {
    User(u64),
    Bot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Administrator,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Agent => "agent",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub access_token: String,
    /// Inboxes the user is a member of (administrators see all inboxes anyway).
    pub inboxes: Vec<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    pub id: u64,
    pub channel_id: u64,
    pub name: String,
    /// `Channel::Api`; otherwise `Channel::WebWidget`.
    pub api: bool,
    /// The API channel's `identifier` (Client API `inbox_identifier`), or the widget's token.
    pub identifier: String,
    pub hmac_token: String,
    pub secret: Option<String>,
    pub webhook_url: Option<String>,
    pub hmac_mandatory: bool,
    /// The channel's `additional_attributes` (`agent_reply_time_window` lives here, §1.1).
    pub additional_attributes: Value,
    /// Inbox-level settings (`greeting_enabled`, `lock_to_single_conversation`, …).
    pub settings: Map<String, Value>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

#[derive(Debug, Clone)]
pub(crate) struct Contact {
    pub id: u64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub identifier: Option<String>,
    pub blocked: bool,
    pub additional_attributes: Value,
    pub custom_attributes: Value,
    pub created_at: SystemTime,
    pub last_activity_at: Option<SystemTime>,
}

#[derive(Debug, Clone)]
pub(crate) struct ContactInbox {
    pub id: u64,
    pub contact_id: u64,
    pub inbox_id: u64,
    pub source_id: String,
    pub pubsub_token: String,
    pub created_at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConvStatus {
    Open,
    Resolved,
    Pending,
    Snoozed,
}

impl ConvStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConvStatus::Open => "open",
            ConvStatus::Resolved => "resolved",
            ConvStatus::Pending => "pending",
            ConvStatus::Snoozed => "snoozed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => ConvStatus::Open,
            "resolved" => ConvStatus::Resolved,
            "pending" => ConvStatus::Pending,
            "snoozed" => ConvStatus::Snoozed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    /// The database id (not shown by the API, which uses `display_id` everywhere).
    pub id: u64,
    pub display_id: u64,
    pub uuid: String,
    pub inbox_id: u64,
    pub contact_id: u64,
    pub contact_inbox_id: u64,
    pub status: ConvStatus,
    pub additional_attributes: Value,
    pub custom_attributes: Value,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub last_activity_at: SystemTime,
    pub waiting_since: Option<SystemTime>,
    pub first_reply_created_at: Option<SystemTime>,
}

/// Who sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    Contact(u64),
    User(u64),
    Bot,
    /// Activity and template messages.
    None,
}

impl From<Principal> for Sender {
    fn from(p: Principal) -> Self {
        match p {
            Principal::User(id) => Sender::User(id),
            Principal::Bot => Sender::Bot,
        }
    }
}

/// `message_type` (§0.6): the integer is what REST shows.
pub(crate) const INCOMING: u8 = 0;
pub(crate) const OUTGOING: u8 = 1;
pub(crate) const ACTIVITY: u8 = 2;
pub(crate) const TEMPLATE: u8 = 3;
pub(crate) const MESSAGE_TYPES: [&str; 4] = ["incoming", "outgoing", "activity", "template"];

/// Message `status` enum (CW `message.rb`).
pub(crate) const STATUSES: [&str; 4] = ["sent", "delivered", "read", "failed"];

#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub id: u64,
    /// The conversation's database id.
    pub conversation_id: u64,
    pub inbox_id: u64,
    pub content: Option<String>,
    pub message_type: u8,
    pub content_type: String,
    /// One of [`STATUSES`].
    pub status: &'static str,
    pub content_attributes: Map<String, Value>,
    pub additional_attributes: Value,
    pub private: bool,
    pub source_id: Option<String>,
    pub sender: Sender,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub attachments: Vec<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Attachment {
    pub id: u64,
    pub message_id: u64,
    pub file_type: &'static str,
    pub extension: Option<String>,
    pub file: SimFile,
    /// The blob's signed id in `…/blobs/redirect/{signed_id}/{filename}`.
    pub signed_id: String,
    /// The storage key in `…/disk/{key}/{filename}`.
    pub key: String,
    /// `http://<Host>` of the request that created it: the host of its URLs.
    pub base: String,
}

/// An event for the inbox webhook, queued by [`super::Inner::mutate`].
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub event: &'static str,
    pub message_id: Option<u64>,
    pub payload: Value,
}

#[derive(Debug, Default)]
struct Ids {
    contact: u64,
    contact_inbox: u64,
    conversation: u64,
    display: u64,
    message: u64,
    attachment: u64,
}

pub(crate) struct State {
    pub account_id: u64,
    pub users: Vec<User>,
    /// The API inbox first, then the web widget.
    pub inboxes: Vec<Inbox>,
    pub contacts: Vec<Contact>,
    pub contact_inboxes: Vec<ContactInbox>,
    pub conversations: Vec<Conversation>,
    pub messages: Vec<Message>,
    pub attachments: Vec<Attachment>,
    ids: Ids,
    pub outbox: Vec<Outgoing>,
}

impl State {
    pub fn new(cfg: &ChatwootSimConfig) -> Self {
        let now = SystemTime::now();
        let settings = |greeting: bool| -> Map<String, Value> {
            let v = json!({
                "greeting_enabled": greeting, "greeting_message": null, "enable_email_collect": true,
                "csat_survey_enabled": false, "enable_auto_assignment": true, "working_hours_enabled": false,
                "out_of_office_message": null, "timezone": "UTC", "allow_messages_after_resolved": true,
                "lock_to_single_conversation": false, "sender_name_type": "friendly", "business_name": null,
            });
            v.as_object().cloned().unwrap_or_default()
        };
        let api = Inbox {
            id: cfg.inbox_id,
            channel_id: 1,
            name: "WeChat".into(),
            api: true,
            identifier: secure_token(),
            hmac_token: secure_token(),
            secret: cfg.inbox_secret.clone(),
            webhook_url: cfg.webhook_url.clone(),
            hmac_mandatory: false,
            additional_attributes: json!({}),
            settings: settings(false),
            created_at: now,
            updated_at: now,
        };
        let widget = Inbox {
            id: cfg.inbox_id + 1,
            channel_id: 1,
            name: "Website".into(),
            api: false,
            identifier: secure_token(),
            hmac_token: secure_token(),
            secret: None,
            webhook_url: None,
            hmac_mandatory: false,
            additional_attributes: json!({}),
            settings: settings(false),
            created_at: now,
            updated_at: now,
        };
        let users = vec![
            User {
                id: ADMIN_USER_ID,
                name: "WeChat Bridge".into(),
                email: "wechat-bridge@example.com".into(),
                role: Role::Administrator,
                access_token: cfg.admin_token.clone(),
                inboxes: Vec::new(),
            },
            User {
                id: AGENT_USER_ID,
                name: "Agent Li".into(),
                email: "li@example.com".into(),
                role: Role::Agent,
                access_token: cfg.agent_token.clone(),
                inboxes: vec![cfg.inbox_id],
            },
        ];
        // Distinct starting points, so an id of one kind used as another fails visibly.
        let ids = Ids { contact: 100, contact_inbox: 200, conversation: 300, display: 0, message: 1000, attachment: 500 };
        State {
            account_id: cfg.account_id,
            users,
            inboxes: vec![api, widget],
            contacts: Vec::new(),
            contact_inboxes: Vec::new(),
            conversations: Vec::new(),
            messages: Vec::new(),
            attachments: Vec::new(),
            ids,
            outbox: Vec::new(),
        }
    }

    // ---- ids -----------------------------------------------------------------------------

    pub fn next_contact_id(&mut self) -> u64 {
        self.ids.contact += 1;
        self.ids.contact
    }

    pub fn next_contact_inbox_id(&mut self) -> u64 {
        self.ids.contact_inbox += 1;
        self.ids.contact_inbox
    }

    /// `(database id, display id)`: the display id is a per-account counter (§6).
    pub fn next_conversation_ids(&mut self) -> (u64, u64) {
        self.ids.conversation += 1;
        self.ids.display += 1;
        (self.ids.conversation, self.ids.display)
    }

    pub fn next_message_id(&mut self) -> u64 {
        self.ids.message += 1;
        self.ids.message
    }

    pub fn next_attachment_id(&mut self) -> u64 {
        self.ids.attachment += 1;
        self.ids.attachment
    }

    // ---- lookups -------------------------------------------------------------------------

    pub fn api_inbox(&self) -> &Inbox {
        &self.inboxes[0]
    }

    pub fn api_inbox_mut(&mut self) -> &mut Inbox {
        &mut self.inboxes[0]
    }

    pub fn inbox(&self, id: u64) -> Option<&Inbox> {
        self.inboxes.iter().find(|i| i.id == id)
    }

    pub fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn contact(&self, id: u64) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.id == id)
    }

    pub fn contact_inbox(&self, id: u64) -> Option<&ContactInbox> {
        self.contact_inboxes.iter().find(|ci| ci.id == id)
    }

    pub fn conversation(&self, id: u64) -> Option<&Conversation> {
        self.conversations.iter().find(|c| c.id == id)
    }

    pub fn conversation_by_display(&self, display_id: u64) -> Option<&Conversation> {
        self.conversations.iter().find(|c| c.display_id == display_id)
    }

    pub fn conversation_pos(&self, display_id: u64) -> Option<usize> {
        self.conversations.iter().position(|c| c.display_id == display_id)
    }

    pub fn message_pos(&self, id: u64) -> Option<usize> {
        self.messages.iter().position(|m| m.id == id)
    }

    pub fn is_admin(&self, p: Principal) -> bool {
        matches!(p, Principal::User(id) if self.user(id).is_some_and(|u| u.role == Role::Administrator))
    }

    /// `InboxPolicy#show?`: bots and administrators see every inbox, agents their own.
    pub fn can_see_inbox(&self, p: Principal, inbox_id: u64) -> bool {
        match p {
            Principal::Bot => true,
            Principal::User(id) => self.user(id).is_some_and(|u| u.role == Role::Administrator || u.inboxes.contains(&inbox_id)),
        }
    }

    /// The inbox, 404 if unknown, 401 if the principal may not see it (Pundit denials are 401).
    pub fn visible_inbox(&self, p: Principal, inbox_id: u64) -> Result<&Inbox, ApiError> {
        let inbox = self.inbox(inbox_id).ok_or_else(ApiError::not_found)?;
        if !self.can_see_inbox(p, inbox_id) {
            return Err(ApiError::not_allowed());
        }
        Ok(inbox)
    }

    /// The conversation position by display id, 404 if unknown, 401 if not visible.
    pub fn visible_conversation(&self, p: Principal, display_id: u64) -> Result<usize, ApiError> {
        let pos = self.conversation_pos(display_id).ok_or_else(ApiError::not_found)?;
        if !self.can_see_inbox(p, self.conversations[pos].inbox_id) {
            return Err(ApiError::not_allowed());
        }
        Ok(pos)
    }

    /// The name shown for whoever performed an action.
    pub fn sender_name(&self, s: Sender) -> String {
        match s {
            Sender::Contact(id) => self.contact(id).and_then(|c| c.name.clone()).unwrap_or_default(),
            Sender::User(id) => self.user(id).map(|u| u.name.clone()).unwrap_or_default(),
            Sender::Bot => BOT_NAME.to_owned(),
            Sender::None => String::new(),
        }
    }

    /// Queues an event for the inbox webhook if it concerns the API inbox.
    pub fn emit(&mut self, inbox_id: u64, event: &'static str, message_id: Option<u64>, payload: Value) {
        if inbox_id == self.api_inbox().id {
            self.outbox.push(Outgoing { event, message_id, payload });
        }
    }
}

// ---- small helpers ---------------------------------------------------------------------------

pub(crate) fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn unix_f64(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| (d.as_micros() as f64) / 1e6)
}

/// ISO 8601 with milliseconds, like Rails' JSON encoding of times.
pub(crate) fn iso(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A 24-character base58 token like Rails' `has_secure_token`.
pub(crate) fn secure_token() -> String {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut bytes = uuid::Uuid::new_v4().as_bytes().to_vec();
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.iter().take(24).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// A string parameter: strings as given, numbers as their text (Rails params are strings).
pub(crate) fn str_param(body: &Value, key: &str) -> Option<String> {
    match body.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An id parameter (`"3"` or `3`), as Rails' integer cast reads it.
pub(crate) fn id_param(body: &Value, key: &str) -> Option<u64> {
    str_param(body, key).and_then(|s| s.trim().parse().ok())
}

/// A boolean parameter as ActiveRecord casts it (`"false"`, `"0"`, `"f"`, `"off"` are false).
pub(crate) fn bool_param(body: &Value, key: &str) -> Option<bool> {
    match body.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::Null => None,
        v => {
            let s = match v {
                Value::String(s) => s.trim().to_ascii_lowercase(),
                other => other.to_string(),
            };
            if s.is_empty() {
                return None;
            }
            Some(!matches!(s.as_str(), "false" | "0" | "f" | "off"))
        }
    }
}

/// A JSON object parameter (`{}` when absent or not an object).
pub(crate) fn object_param(body: &Value, key: &str) -> Option<Value> {
    body.get(key).filter(|v| v.is_object()).cloned()
}
