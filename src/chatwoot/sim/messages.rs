//! Messages (`chatwoot-api.md §2.3`, §3.6, §5): create as the `MessageBuilder` does (sender,
//! incoming only in API inboxes, at most 15 attachments, 200 per conversation per minute,
//! reopening), list with `after`/`before`, the status `PATCH` (`Messages::StatusUpdateService`),
//! deletion, the dashboard's Retry, and what a failed webhook does to a message (§3.2).

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::conversations::ruby_to_i;
use super::error::ApiError;
use super::model::{
    ACTIVITY, AGENT_USER_ID, Attachment, ConvStatus, INCOMING, MESSAGE_TYPES, Message, OUTGOING, Principal, STATUSES, Sender,
    State, TEMPLATE, bool_param, str_param,
};
use super::storage;
use super::{AgentReply, SimFile};

/// `Message::NUMBER_OF_PERMITTED_ATTACHMENTS`.
const MAX_ATTACHMENTS: usize = 15;
/// `CONVERSATION_MESSAGE_PER_MINUTE_LIMIT` (CW `lib/limits.rb`).
const MESSAGES_PER_MINUTE: usize = 200;
const MAX_CONTENT: usize = 150_000;
const CONTENT_TYPES: [&str; 13] = [
    "text",
    "input_text",
    "input_textarea",
    "input_email",
    "input_select",
    "cards",
    "form",
    "article",
    "incoming_email",
    "input_csat",
    "integrations",
    "sticker",
    "voice_call",
];
const DELETED: &str = "This message was deleted";

/// The parameters of `POST …/messages`, from JSON or multipart.
#[derive(Debug, Default)]
pub(crate) struct NewMessage {
    pub content: Option<String>,
    pub message_type: Option<Value>,
    pub private: bool,
    pub source_id: Option<String>,
    pub content_type: Option<String>,
    pub content_attributes: Option<Map<String, Value>>,
    pub echo_id: Option<String>,
    pub external_created_at: Option<Value>,
    pub files: Vec<SimFile>,
    /// `attachments[]` values that are not uploaded files: the builder takes them for signed
    /// blob ids, which they are not.
    pub unsigned_attachments: bool,
}

impl NewMessage {
    pub fn from_json(body: &Value) -> Self {
        NewMessage {
            content: str_param(body, "content"),
            message_type: body.get("message_type").filter(|v| !v.is_null()).cloned(),
            private: bool_param(body, "private").unwrap_or(false),
            source_id: str_param(body, "source_id"),
            content_type: str_param(body, "content_type").filter(|s| !s.is_empty()),
            content_attributes: body.get("content_attributes").and_then(Value::as_object).cloned(),
            echo_id: str_param(body, "echo_id"),
            external_created_at: body.get("external_created_at").filter(|v| !v.is_null()).cloned(),
            files: Vec::new(),
            unsigned_attachments: body.get("attachments").and_then(Value::as_array).is_some_and(|a| !a.is_empty()),
        }
    }
}

/// A message ready to be stored.
struct Spec {
    message_type: u8,
    content: Option<String>,
    content_type: String,
    private: bool,
    source_id: Option<String>,
    content_attributes: Map<String, Value>,
    sender: Sender,
    files: Vec<SimFile>,
}

fn parse_message_type(v: Option<&Value>) -> Result<u8, ApiError> {
    let invalid = |s: String| ApiError::unprocessable(format!("'{s}' is not a valid message_type"));
    match v {
        None => Ok(OUTGOING),
        Some(Value::String(s)) if s.is_empty() => Ok(OUTGOING),
        Some(Value::String(s)) => MESSAGE_TYPES.iter().position(|t| t == s).map(|i| i as u8).ok_or_else(|| invalid(s.clone())),
        Some(Value::Number(n)) => n.as_u64().filter(|n| *n <= 3).map(|n| n as u8).ok_or_else(|| invalid(n.to_string())),
        Some(other) => Err(invalid(other.to_string())),
    }
}

impl State {
    /// `POST /conversations/{display_id}/messages` (§2.3). Outgoing messages are sent by the
    /// principal (user or agent bot); every other type by the conversation's contact (§1.2).
    pub fn create_message(&mut self, p: Principal, display_id: u64, new: NewMessage, base: &str) -> Result<Value, ApiError> {
        let pos = self.visible_conversation(p, display_id)?;
        let message_type = parse_message_type(new.message_type.as_ref())?;
        let conv = &self.conversations[pos];
        let api = self.inbox(conv.inbox_id).is_some_and(|i| i.api);
        if message_type == INCOMING && !api {
            return Err(ApiError::unprocessable("Incoming messages are only allowed in Api inboxes"));
        }
        let content_type = new.content_type.clone().unwrap_or_else(|| "text".to_owned());
        if !CONTENT_TYPES.contains(&content_type.as_str()) {
            return Err(ApiError::unprocessable(format!("'{content_type}' is not a valid content_type")));
        }
        if new.unsigned_attachments {
            return Err(ApiError::unprocessable("ActiveSupport::MessageVerifier::InvalidSignature"));
        }
        let mut content_attributes = new.content_attributes.clone().unwrap_or_default();
        if let Some(at) = &new.external_created_at {
            content_attributes.insert("external_created_at".into(), at.clone());
        }
        let sender = if message_type == OUTGOING { Sender::from(p) } else { Sender::Contact(conv.contact_id) };
        let spec = Spec {
            message_type,
            content: new.content,
            content_type,
            private: new.private,
            source_id: new.source_id,
            content_attributes,
            sender,
            files: new.files,
        };
        let id = self.insert_message(pos, spec, base)?;
        let m = &self.messages[self.message_pos(id).expect("inserted")];
        Ok(self.message_json(m, new.echo_id.as_deref()))
    }

    /// What an agent's reply from the dashboard creates (see `ChatwootSim::agent_reply`).
    pub fn agent_reply(&mut self, display_id: u64, reply: &AgentReply, base: &str) -> Result<u64, ApiError> {
        let pos = self.conversation_pos(display_id).ok_or_else(ApiError::not_found)?;
        let (message_type, sender) = match (reply.template, reply.by_bot) {
            (true, _) => (TEMPLATE, Sender::None),
            (false, true) => (OUTGOING, Sender::Bot),
            (false, false) => (OUTGOING, Sender::User(AGENT_USER_ID)),
        };
        let spec = Spec {
            message_type,
            content: Some(reply.content.clone()),
            content_type: "text".into(),
            private: reply.private,
            source_id: None,
            content_attributes: Map::new(),
            sender,
            files: reply.attachments.clone(),
        };
        self.insert_message(pos, spec, base)
    }

    /// Validates and stores a message, then runs Chatwoot's after-create steps in their order:
    /// reopen (an incoming message on a resolved conversation, §2.2), conversation activity,
    /// `message_created`, first-reply and waiting-since bookkeeping.
    fn insert_message(&mut self, pos: usize, spec: Spec, base: &str) -> Result<u64, ApiError> {
        if spec.content.as_ref().is_some_and(|c| c.chars().count() > MAX_CONTENT) {
            return Err(ApiError::unprocessable(format!(
                "Validation failed: Content is too long (maximum is {MAX_CONTENT} characters)"
            )));
        }
        if spec.files.len() > MAX_ATTACHMENTS {
            return Err(ApiError::unprocessable("Validation failed: Attachments exceeded maximum allowed"));
        }
        if self.flooded(pos) {
            return Err(ApiError::unprocessable("Validation failed: Too many messages"));
        }
        let now = SystemTime::now();
        let id = self.next_message_id();
        let conv = &self.conversations[pos];
        let (conv_id, inbox_id, contact_id) = (conv.id, conv.inbox_id, conv.contact_id);
        let mut attachment_ids = Vec::new();
        for file in spec.files {
            let att_id = self.next_attachment_id();
            self.attachments.push(Attachment {
                id: att_id,
                message_id: id,
                file_type: storage::file_type(&file.content_type),
                extension: storage::extension(&file.filename),
                signed_id: storage::signed_id(att_id),
                key: storage::disk_key(),
                base: base.to_owned(),
                file,
            });
            attachment_ids.push(att_id);
        }
        let outgoing_human = spec.message_type == OUTGOING && matches!(spec.sender, Sender::User(_));
        let outgoing_bot = spec.message_type == OUTGOING && spec.sender == Sender::Bot;
        let (incoming, private) = (spec.message_type == INCOMING, spec.private);
        let sender = spec.sender;
        self.messages.push(Message {
            id,
            conversation_id: conv_id,
            inbox_id,
            content: spec.content,
            message_type: spec.message_type,
            content_type: spec.content_type,
            status: "sent",
            content_attributes: spec.content_attributes,
            additional_attributes: json!({}),
            private: spec.private,
            source_id: spec.source_id,
            sender,
            created_at: now,
            updated_at: now,
            attachments: attachment_ids,
        });

        if incoming {
            match self.conversations[pos].status {
                ConvStatus::Resolved | ConvStatus::Snoozed => {
                    self.change_status(pos, ConvStatus::Open, Sender::Contact(contact_id));
                }
                _ => {}
            }
        }
        let conv = &mut self.conversations[pos];
        conv.last_activity_at = now;
        conv.updated_at = SystemTime::now();
        self.emit_message(id, "message_created");

        let first_reply = outgoing_human && !private && self.conversations[pos].first_reply_created_at.is_none() && {
            let human_replies = self
                .messages
                .iter()
                .filter(|m| {
                    m.conversation_id == conv_id
                        && m.message_type == OUTGOING
                        && !m.private
                        && matches!(m.sender, Sender::User(_))
                })
                .count();
            human_replies <= 1
        };
        let conv = &mut self.conversations[pos];
        if first_reply {
            conv.first_reply_created_at = Some(now);
            conv.waiting_since = None;
        } else {
            if conv.waiting_since.is_some() && !private && (outgoing_human || outgoing_bot) {
                conv.waiting_since = None;
            }
            if incoming && conv.waiting_since.is_none() {
                conv.waiting_since = Some(now);
            }
        }
        if let Sender::Contact(cid) = sender
            && let Some(c) = self.contacts.iter_mut().find(|c| c.id == cid)
        {
            c.last_activity_at = Some(now);
        }
        Ok(id)
    }

    /// An activity message (status changes); never sent to the webhook. Skipped, like the
    /// failing background job would be, when the conversation is flooded.
    pub fn insert_activity(&mut self, pos: usize, content: String) {
        if self.flooded(pos) {
            return;
        }
        let now = SystemTime::now();
        let id = self.next_message_id();
        let conv = &mut self.conversations[pos];
        conv.last_activity_at = now;
        let (conversation_id, inbox_id) = (conv.id, conv.inbox_id);
        self.messages.push(Message {
            id,
            conversation_id,
            inbox_id,
            content: Some(content),
            message_type: ACTIVITY,
            content_type: "text".into(),
            status: "sent",
            content_attributes: Map::new(),
            additional_attributes: json!({}),
            private: false,
            source_id: None,
            sender: Sender::None,
            created_at: now,
            updated_at: now,
            attachments: Vec::new(),
        });
    }

    /// `prevent_message_flooding`: 200 messages of any kind in the last minute (§2.3).
    fn flooded(&self, pos: usize) -> bool {
        let conv_id = self.conversations[pos].id;
        let since = SystemTime::now() - Duration::from_secs(60);
        self.messages.iter().filter(|m| m.conversation_id == conv_id && m.created_at >= since).count() >= MESSAGES_PER_MINUTE
    }

    /// Queues `message_created`/`message_updated` for incoming, outgoing and template messages
    /// (private notes included, activity never: `webhook_sendable?`, §3.1).
    fn emit_message(&mut self, id: u64, event: &'static str) {
        let Some(pos) = self.message_pos(id) else { return };
        let m = &self.messages[pos];
        if m.message_type == ACTIVITY {
            return;
        }
        let payload = self.message_webhook(m, event);
        let inbox_id = m.inbox_id;
        self.emit(inbox_id, event, Some(id), payload);
    }

    /// `GET /conversations/{display_id}/messages` (`MessageFinder`, §3.6).
    pub fn list_messages(&self, p: Principal, display_id: u64, query: &[(String, String)]) -> Result<Value, ApiError> {
        let pos = self.visible_conversation(p, display_id)?;
        let conv = &self.conversations[pos];
        let param = |k: &str| query.iter().rev().find(|(n, v)| n == k && !v.trim().is_empty()).map(|(_, v)| v.as_str());
        let filter_internal = param("filter_internal_messages").is_some();
        let msgs: Vec<&Message> = self
            .messages
            .iter()
            .filter(|m| m.conversation_id == conv.id && !(filter_internal && (m.private || m.message_type == ACTIVITY)))
            .collect();
        let id_of = |v: &str| ruby_to_i(v);
        let selected: Vec<&Message> = match (param("after").map(id_of), param("before").map(id_of)) {
            (Some(after), Some(before)) => {
                msgs.into_iter().filter(|m| (m.id as i64) >= after && (m.id as i64) < before).take(1000).collect()
            }
            (None, Some(before)) => latest(msgs.into_iter().filter(|m| (m.id as i64) < before).collect(), 20),
            (Some(after), None) => msgs.into_iter().filter(|m| (m.id as i64) > after).take(100).collect(),
            (None, None) => latest(msgs, 20),
        };
        let contact = self.contact(conv.contact_id);
        Ok(json!({
            "meta": {
                "labels": [],
                "additional_attributes": conv.additional_attributes,
                "contact_id": conv.contact_id,
                "contact": contact.map_or(Value::Null, |c| self.contact_push(c)),
                "agent_last_seen_at": 0,
                "assignee_last_seen_at": 0,
            },
            "payload": selected.into_iter().map(|m| self.message_json(m, None)).collect::<Vec<_>>(),
        }))
    }

    /// `PATCH /conversations/{display_id}/messages/{id}` (§5.1): API inboxes only (403),
    /// `status` one of sent/delivered/read/failed or silently ignored, `external_error` kept only
    /// for `failed`; answers the message, changed or not.
    pub fn patch_message(&mut self, p: Principal, display_id: u64, message_id: u64, body: &Value) -> Result<Value, ApiError> {
        let pos = self.visible_conversation(p, display_id)?;
        let conv = &self.conversations[pos];
        if !self.inbox(conv.inbox_id).is_some_and(|i| i.api) {
            return Err(ApiError::forbidden("Message status update is only allowed for API inboxes"));
        }
        let conv_id = conv.id;
        let mpos = self
            .messages
            .iter()
            .position(|m| m.id == message_id && m.conversation_id == conv_id)
            .ok_or_else(ApiError::not_found)?;
        let status = str_param(body, "status").unwrap_or_default();
        let external_error = body.get("external_error").filter(|v| !v.is_null()).cloned();
        self.update_status(mpos, &status, external_error);
        Ok(self.message_json(&self.messages[mpos], None))
    }

    /// `DELETE /conversations/{display_id}/messages/{id}`.
    pub fn destroy_message(&mut self, p: Principal, display_id: u64, message_id: u64) -> Result<Value, ApiError> {
        let pos = self.visible_conversation(p, display_id)?;
        let conv_id = self.conversations[pos].id;
        let mpos = self
            .messages
            .iter()
            .position(|m| m.id == message_id && m.conversation_id == conv_id)
            .ok_or_else(ApiError::not_found)?;
        self.delete_message(message_id);
        Ok(self.message_json(&self.messages[mpos], None))
    }

    /// `Messages::StatusUpdateService`: unknown statuses and read → delivered are ignored;
    /// `external_error` is written only for `failed` and set to null otherwise (a store
    /// accessor: the key stays, with null, once it existed). `message_updated` only if
    /// something changed. Returns whether it did.
    fn update_status(&mut self, mpos: usize, status: &str, external_error: Option<Value>) -> bool {
        let Some(status) = STATUSES.iter().find(|s| **s == status).copied() else { return false };
        let m = &self.messages[mpos];
        if m.status == "read" && status == "delivered" {
            return false;
        }
        let mut attrs = m.content_attributes.clone();
        let error = if status == "failed" { external_error } else { None };
        match error {
            Some(e) => {
                if attrs.get("external_error") != Some(&e) {
                    attrs.insert("external_error".into(), e);
                }
            }
            None => {
                if attrs.get("external_error").is_some_and(|v| !v.is_null()) {
                    attrs.insert("external_error".into(), Value::Null);
                }
            }
        }
        if status == m.status && attrs == m.content_attributes {
            return false;
        }
        let id = m.id;
        let m = &mut self.messages[mpos];
        m.status = status;
        m.content_attributes = attrs;
        m.updated_at = SystemTime::now();
        self.emit_message(id, "message_updated");
        true
    }

    /// A failed webhook for this message (`Webhooks::Trigger#handle_error`, §3.2): status
    /// `failed` with the error text, through the same service as the `PATCH`.
    pub fn mark_failed(&mut self, message_id: u64, error: &str) {
        if let Some(mpos) = self.message_pos(message_id) {
            self.update_status(mpos, "failed", Some(json!(error)));
        }
    }

    /// The dashboard's Retry (§5.3, CW v4.15.1 `messages_controller.rb#retry`): status `sent`
    /// through the status service, then `content_attributes` replaced by `{}`: two saves, each
    /// firing `message_updated` when it changed something. Returns whether the message exists.
    pub fn retry_message(&mut self, message_id: u64) -> bool {
        let Some(mpos) = self.message_pos(message_id) else { return false };
        self.update_status(mpos, "sent", None);
        let m = &mut self.messages[mpos];
        if !m.content_attributes.is_empty() {
            m.content_attributes = Map::new();
            m.updated_at = SystemTime::now();
            self.emit_message(message_id, "message_updated");
        }
        true
    }

    /// An agent deletes the message: deleted text, `{"deleted": true}`, attachments destroyed,
    /// one `message_updated` (one transaction). Returns whether the message exists.
    pub fn delete_message(&mut self, message_id: u64) -> bool {
        let Some(mpos) = self.message_pos(message_id) else { return false };
        let m = &mut self.messages[mpos];
        let mut deleted = Map::new();
        deleted.insert("deleted".into(), json!(true));
        let changed = m.content.as_deref() != Some(DELETED)
            || m.content_type != "text"
            || m.content_attributes != deleted
            || !m.attachments.is_empty();
        m.content = Some(DELETED.to_owned());
        m.content_type = "text".into();
        m.content_attributes = deleted;
        let dropped = std::mem::take(&mut m.attachments);
        if changed {
            m.updated_at = SystemTime::now();
        }
        self.attachments.retain(|a| !dropped.contains(&a.id));
        if changed {
            self.emit_message(message_id, "message_updated");
        }
        true
    }
}

/// The last `n` of `msgs`, oldest first.
fn latest(msgs: Vec<&Message>, n: usize) -> Vec<&Message> {
    let skip = msgs.len().saturating_sub(n);
    msgs.into_iter().skip(skip).collect()
}
