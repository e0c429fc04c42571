//! Inboxes (`chatwoot-api.md §1.1`) and conversations (§2.2): inbox show/update, conversation
//! create/show, status changes (`toggle_status`, the dashboard's Resolve, reopening by an
//! incoming message) with their webhooks and activity messages, and `can_reply` (§1.1).

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::error::ApiError;
use super::messages::NewMessage;
use super::model::{
    ConvStatus, Conversation, INCOMING, Principal, Sender, State, bool_param, id_param, iso, object_param, str_param,
};

/// `Limits::URL_LENGTH_LIMIT`.
const MAX_URL: usize = 2048;

/// Inbox-level attributes `PATCH …/inboxes/{id}` accepts (CW `inboxes_controller.rb`
/// `inbox_attributes`), with whether each is a boolean.
const INBOX_ATTRIBUTES: [(&str, bool); 12] = [
    ("name", false),
    ("greeting_enabled", true),
    ("greeting_message", false),
    ("enable_email_collect", true),
    ("csat_survey_enabled", true),
    ("enable_auto_assignment", true),
    ("working_hours_enabled", true),
    ("out_of_office_message", false),
    ("timezone", false),
    ("allow_messages_after_resolved", true),
    ("lock_to_single_conversation", true),
    ("business_name", false),
];

impl State {
    /// `GET /inboxes/{id}`: 404 unknown, 401 for an agent who is not a member.
    pub fn show_inbox(&self, p: Principal, id: u64) -> Result<Value, ApiError> {
        let inbox = self.visible_inbox(p, id)?;
        Ok(self.inbox_json(inbox, self.is_admin(p)))
    }

    /// `PATCH /inboxes/{id}`: administrators only. Inbox attributes are saved first, then the
    /// channel's `EDITABLE_ATTRS` from `channel` (for `Channel::Api`: `webhook_url`,
    /// `hmac_mandatory`, `additional_attributes`), as the controller does. In the real code
    /// `agent_reply_time_window` is a key of the channel's `additional_attributes` (CW
    /// `channel/api.rb`, `message_window_service.rb`), so `{"channel": {"additional_attributes":
    /// {"agent_reply_time_window": 48}}}` sets it; that hash is replaced whole, not merged.
    pub fn update_inbox(&mut self, p: Principal, id: u64, body: &Value) -> Result<Value, ApiError> {
        self.visible_inbox(p, id)?;
        if !self.is_admin(p) {
            return Err(ApiError::not_allowed());
        }
        let pos = self.inboxes.iter().position(|i| i.id == id).expect("visible");
        let now = SystemTime::now();
        {
            let inbox = &mut self.inboxes[pos];
            for (key, boolean) in INBOX_ATTRIBUTES {
                let Some(v) = body.get(key) else { continue };
                let v = if boolean && !v.is_null() {
                    json!(bool_param(body, key).unwrap_or(false))
                } else if v.is_null() {
                    Value::Null
                } else {
                    json!(str_param(body, key).unwrap_or_default())
                };
                if key == "name" {
                    if let Some(name) = v.as_str().filter(|n| !n.is_empty()) {
                        inbox.name = name.to_owned();
                    }
                } else {
                    inbox.settings.insert(key.to_owned(), v);
                }
                inbox.updated_at = now;
            }
        }
        let Some(channel) = body.get("channel").and_then(Value::as_object) else {
            return Ok(self.inbox_json(&self.inboxes[pos], true));
        };
        if !self.inboxes[pos].api {
            // The web widget's own channel attributes are not simulated.
            return Ok(self.inbox_json(&self.inboxes[pos], true));
        }
        let ch = Value::Object(channel.clone());
        let webhook_url = channel.contains_key("webhook_url").then(|| str_param(&ch, "webhook_url"));
        let additional = channel.get("additional_attributes").map(|v| match v {
            Value::Object(_) => v.clone(),
            _ => json!({}),
        });
        let mut errors: Vec<(&str, String)> = Vec::new();
        if let Some(Some(url)) = &webhook_url
            && url.chars().count() > MAX_URL
        {
            errors.push(("webhook_url", format!("Webhook url is too long (maximum is {MAX_URL} characters)")));
        }
        if let Some(attrs) = &additional
            && let Some(w) = attrs.get("agent_reply_time_window").filter(|w| !is_blank(w))
            && ruby_to_i(&str_param(&json!({"w": w}), "w").unwrap_or_default()) <= 0
        {
            errors.push((
                "agent_reply_time_window",
                "Agent reply time window agent_reply_time_window must be greater than 0".into(),
            ));
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(&errors));
        }
        let inbox = &mut self.inboxes[pos];
        if let Some(url) = webhook_url {
            inbox.webhook_url = url;
        }
        if channel.contains_key("hmac_mandatory") {
            inbox.hmac_mandatory = bool_param(&ch, "hmac_mandatory").unwrap_or(false);
        }
        if let Some(attrs) = additional {
            inbox.additional_attributes = attrs;
        }
        inbox.updated_at = now;
        Ok(self.inbox_json(&self.inboxes[pos], true))
    }

    /// `POST /conversations` (§2.2). With `contact_id` and `inbox_id` the contact inbox is found
    /// or made with `source_id`; with `source_id` alone it is looked up across all inboxes (the
    /// "old case"). `lock_to_single_conversation` returns the last conversation instead. An
    /// optional `message` object becomes the first message.
    pub fn create_conversation(&mut self, p: Principal, body: &Value, base: &str) -> Result<Value, ApiError> {
        let source_id = str_param(body, "source_id").filter(|s| !s.is_empty());
        let contact_inbox_id = match (id_param(body, "contact_id"), id_param(body, "inbox_id")) {
            (Some(contact_id), Some(inbox_id)) => {
                self.visible_inbox(p, inbox_id)?;
                self.contact(contact_id).ok_or_else(ApiError::not_found)?;
                if let Some(sid) = &source_id
                    && self
                        .contact_inboxes
                        .iter()
                        .any(|ci| ci.inbox_id == inbox_id && &ci.source_id == sid && ci.contact_id != contact_id)
                {
                    return Err(ApiError::internal());
                }
                self.find_or_create_contact_inbox(contact_id, inbox_id, source_id)
            }
            _ => {
                let sid = source_id.ok_or_else(ApiError::not_found)?;
                let ci = self.contact_inboxes.iter().find(|ci| ci.source_id == sid).ok_or_else(ApiError::not_found)?;
                if !self.can_see_inbox(p, ci.inbox_id) {
                    return Err(ApiError::not_allowed());
                }
                ci.id
            }
        };
        // An unknown status is an ArgumentError the controller does not rescue.
        let status = match str_param(body, "status").filter(|s| !s.is_empty()) {
            Some(s) => ConvStatus::parse(&s).ok_or_else(ApiError::internal)?,
            None => ConvStatus::Open,
        };
        let ci = self.contact_inbox(contact_inbox_id).expect("found above").clone();
        let locked = self.inbox(ci.inbox_id).is_some_and(|i| i.settings.get("lock_to_single_conversation") == Some(&json!(true)));
        if locked && let Some(existing) = self.conversations.iter().rev().find(|c| c.contact_inbox_id == ci.id) {
            return Ok(self.conversation_json(existing));
        }

        let (outbox_len, conv_count) = (self.outbox.len(), self.conversations.len());
        let now = SystemTime::now();
        let (id, display_id) = self.next_conversation_ids();
        self.conversations.push(Conversation {
            id,
            display_id,
            uuid: uuid::Uuid::new_v4().to_string(),
            inbox_id: ci.inbox_id,
            contact_id: ci.contact_id,
            contact_inbox_id: ci.id,
            status,
            additional_attributes: object_param(body, "additional_attributes").unwrap_or_else(|| json!({})),
            custom_attributes: object_param(body, "custom_attributes").unwrap_or_else(|| json!({})),
            created_at: now,
            updated_at: now,
            last_activity_at: now,
            waiting_since: None,
            first_reply_created_at: None,
        });
        let conv = self.conversations.last().expect("just pushed");
        let mut payload = self.conversation_webhook(conv);
        payload["event"] = json!("conversation_created");
        self.emit(ci.inbox_id, "conversation_created", None, payload);
        if let Some(message) = body.get("message").filter(|m| m.is_object()) {
            let new = NewMessage::from_json(message);
            if let Err(e) = self.create_message(p, display_id, new, base) {
                // The controller's transaction: no conversation, no events.
                self.conversations.truncate(conv_count);
                self.outbox.truncate(outbox_len);
                return Err(e);
            }
        }
        Ok(self.conversation_json(self.conversations.last().expect("created")))
    }

    /// `GET /conversations/{display_id}`.
    pub fn show_conversation(&self, p: Principal, display_id: u64) -> Result<Value, ApiError> {
        let pos = self.visible_conversation(p, display_id)?;
        Ok(self.conversation_json(&self.conversations[pos]))
    }

    /// `POST /conversations/{display_id}/toggle_status`: the given `status`, or without one
    /// open → resolved and anything else → open.
    pub fn toggle_status(&mut self, p: Principal, display_id: u64, body: &Value) -> Result<Value, ApiError> {
        let pos = self.visible_conversation(p, display_id)?;
        let current = self.conversations[pos].status;
        let status = match str_param(body, "status").filter(|s| !s.is_empty()) {
            Some(s) => ConvStatus::parse(&s).ok_or_else(ApiError::internal)?,
            None if current == ConvStatus::Open => ConvStatus::Resolved,
            None => ConvStatus::Open,
        };
        self.change_status(pos, status, Sender::from(p));
        Ok(json!({"meta": {}, "payload": {
            "success": true,
            "conversation_id": display_id,
            "current_status": status.as_str(),
            "snoozed_until": null,
        }}))
    }

    /// Changes the status as `conversation.update!` would: `conversation_status_changed`, then
    /// `conversation_updated`, both with `changed_attributes` (§3.1), and an activity message
    /// naming `by`. Nothing happens if the status is already that. Returns whether it changed.
    pub fn change_status(&mut self, pos: usize, status: ConvStatus, by: Sender) -> bool {
        let previous = self.conversations[pos].status;
        if previous == status {
            return false;
        }
        let now = SystemTime::now();
        let before = self.conversations[pos].updated_at;
        let conv = &mut self.conversations[pos];
        conv.status = status;
        conv.updated_at = now;
        let changed = json!([
            {"status": {"previous_value": previous.as_str(), "current_value": status.as_str()}},
            {"updated_at": {"previous_value": iso(before), "current_value": iso(now)}},
        ]);
        let inbox_id = self.conversations[pos].inbox_id;
        for event in ["conversation_status_changed", "conversation_updated"] {
            let mut payload = self.conversation_webhook(&self.conversations[pos]);
            payload["event"] = json!(event);
            payload["changed_attributes"] = changed.clone();
            self.emit(inbox_id, event, None, payload);
        }
        let name = self.sender_name(by);
        let text = match (status, by) {
            (ConvStatus::Resolved, Sender::Contact(_)) => format!("Conversation was resolved by {name}"),
            (ConvStatus::Resolved, _) => format!("Conversation was marked resolved by {name}"),
            (ConvStatus::Open, _) => format!("Conversation was reopened by {name}"),
            (ConvStatus::Pending, _) => format!("Conversation was marked as pending by {name}"),
            (ConvStatus::Snoozed, _) => format!("Conversation was snoozed by {name}"),
        };
        self.insert_activity(pos, text);
        true
    }

    /// `Conversations::MessageWindowService#can_reply?` (§1.1): for an API inbox with
    /// `agent_reply_time_window` (hours), only within that many hours of the last incoming
    /// message; always otherwise.
    pub fn can_reply(&self, conv: &Conversation) -> bool {
        let Some(inbox) = self.inbox(conv.inbox_id).filter(|i| i.api) else { return true };
        let Some(window) = inbox.additional_attributes.get("agent_reply_time_window").filter(|w| !is_blank(w)) else {
            return true;
        };
        let hours = ruby_to_i(&str_param(&json!({"w": window}), "w").unwrap_or_default()).max(0) as u64;
        let last_incoming = self.messages.iter().rev().find(|m| m.conversation_id == conv.id && m.message_type == INCOMING);
        match last_incoming {
            Some(m) => SystemTime::now() < m.created_at + Duration::from_secs(hours * 3600),
            None => false,
        }
    }
}

/// Rails' `blank?` for a JSON value.
pub(crate) fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Bool(b) => !b,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

/// Ruby's `String#to_i`: leading whitespace, an optional sign, the leading digits; 0 if none.
pub(crate) fn ruby_to_i(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let n: i64 = digits
        .chars()
        .take_while(char::is_ascii_digit)
        .fold(0i64, |acc, c| acc.saturating_mul(10).saturating_add(i64::from(c.to_digit(10).unwrap_or(0))));
    if neg { -n } else { n }
}
