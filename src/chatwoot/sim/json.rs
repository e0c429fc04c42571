//! The JSON shapes, each in the form a given Chatwoot view or model method writes it:
//! REST partials (`_inbox`, `_contact`, `_contact_inbox`, `_conversation`, `_message`,
//! `_user`), `push_event_data` (nested messages, senders) and `webhook_data` (webhooks, §3.3).
//! Mind the mixed encodings Chatwoot has (§0.6, §3.3): integer `message_type` and Unix times in
//! REST and nested messages, string `message_type` and ISO `created_at` at webhook top level.

use serde_json::{Value, json};

use super::model::{
    ACCOUNT_NAME, ACTIVITY, Attachment, BOT_ID, BOT_NAME, Contact, ContactInbox, Conversation, INCOMING, Inbox, MESSAGE_TYPES,
    Message, Sender, State, User, iso, unix, unix_f64,
};
use crate::urlencode;

fn opt(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| json!(s))
}

impl State {
    pub fn account_webhook(&self) -> Value {
        json!({"id": self.account_id, "name": ACCOUNT_NAME})
    }

    // ---- inboxes -------------------------------------------------------------------------

    /// `api/v1/models/_inbox` (§1.1): `hmac_token` and `secret` for administrators only.
    pub fn inbox_json(&self, inbox: &Inbox, admin: bool) -> Value {
        let mut v = json!({
            "id": inbox.id,
            "avatar_url": "",
            "channel_id": inbox.channel_id,
            "name": inbox.name,
            "channel_type": if inbox.api { "Channel::Api" } else { "Channel::WebWidget" },
            "csat_config": {},
            "auto_assignment_config": {},
            "working_hours": [],
            "callback_webhook_url": null,
            "allowed_domains": null,
            "widget_color": null,
            "website_url": null,
            "hmac_mandatory": inbox.hmac_mandatory,
            "welcome_title": null,
            "welcome_tagline": null,
            "web_widget_script": null,
            "website_token": null,
            "selected_feature_flags": null,
            "reply_time": null,
            "messaging_service_sid": null,
            "phone_number": null,
            "provider": null,
        });
        for (k, val) in &inbox.settings {
            v[k] = val.clone();
        }
        if inbox.api {
            if admin {
                v["hmac_token"] = json!(inbox.hmac_token);
                if let Some(secret) = &inbox.secret {
                    v["secret"] = json!(secret);
                }
            }
            v["webhook_url"] = opt(&inbox.webhook_url);
            v["inbox_identifier"] = json!(inbox.identifier);
            v["additional_attributes"] = inbox.additional_attributes.clone();
        } else {
            v["widget_color"] = json!("#1f93ff");
            v["website_url"] = json!("https://www.example.com");
            v["website_token"] = json!(inbox.identifier);
            v["welcome_title"] = json!("");
            v["welcome_tagline"] = json!("");
            v["reply_time"] = json!("in_a_few_minutes");
            v["selected_feature_flags"] = json!(["attachments", "emoji_picker", "end_conversation"]);
            if admin {
                v["hmac_token"] = json!(inbox.hmac_token);
            }
            v["pre_chat_form_enabled"] = json!(false);
            v["pre_chat_form_options"] = json!({});
            v["continuity_via_email"] = json!(true);
        }
        v
    }

    /// The `Inbox` record serialized whole (`contacts/create` `contact_inbox.inbox`, §2.1).
    pub fn inbox_record(&self, inbox: &Inbox) -> Value {
        let mut v = json!({
            "id": inbox.id,
            "channel_id": inbox.channel_id,
            "account_id": self.account_id,
            "name": inbox.name,
            "created_at": iso(inbox.created_at),
            "updated_at": iso(inbox.updated_at),
            "channel_type": if inbox.api { "Channel::Api" } else { "Channel::WebWidget" },
            "email_address": null,
            "portal_id": null,
            "auto_assignment_config": {},
            "csat_config": {},
        });
        for (k, val) in &inbox.settings {
            v[k] = val.clone();
        }
        v
    }

    // ---- contacts ------------------------------------------------------------------------

    /// `api/v1/models/_contact`, with `contact_inboxes` on the `/contacts` endpoints.
    pub fn contact_json(&self, c: &Contact, with_contact_inboxes: bool, admin: bool) -> Value {
        let mut v = json!({
            "additional_attributes": c.additional_attributes,
            "availability_status": "offline",
            "email": opt(&c.email),
            "id": c.id,
            "name": opt(&c.name),
            "phone_number": opt(&c.phone_number),
            "blocked": c.blocked,
            "identifier": opt(&c.identifier),
            "thumbnail": "",
            "custom_attributes": c.custom_attributes,
            "created_at": unix(c.created_at),
        });
        if let Some(t) = c.last_activity_at {
            v["last_activity_at"] = json!(unix(t));
        }
        if with_contact_inboxes {
            v["contact_inboxes"] = self
                .contact_inboxes
                .iter()
                .filter(|ci| ci.contact_id == c.id)
                .map(|ci| self.contact_inbox_json(ci, admin))
                .collect();
        }
        v
    }

    /// `Contact#push_event_data` (REST message senders, webhook `meta.sender`).
    pub fn contact_push(&self, c: &Contact) -> Value {
        json!({
            "additional_attributes": c.additional_attributes,
            "custom_attributes": c.custom_attributes,
            "email": opt(&c.email),
            "id": c.id,
            "identifier": opt(&c.identifier),
            "name": opt(&c.name),
            "phone_number": opt(&c.phone_number),
            "thumbnail": "",
            "blocked": c.blocked,
            "type": "contact",
        })
    }

    /// `Contact#webhook_data`: no `type` key (§3.3).
    pub fn contact_webhook(&self, c: &Contact) -> Value {
        json!({
            "account": self.account_webhook(),
            "additional_attributes": c.additional_attributes,
            "avatar": "",
            "custom_attributes": c.custom_attributes,
            "email": opt(&c.email),
            "id": c.id,
            "identifier": opt(&c.identifier),
            "name": opt(&c.name),
            "phone_number": opt(&c.phone_number),
            "thumbnail": "",
            "blocked": c.blocked,
        })
    }

    /// `api/v1/models/_contact_inbox`: `{source_id, inbox}`.
    pub fn contact_inbox_json(&self, ci: &ContactInbox, admin: bool) -> Value {
        let inbox = self.inbox(ci.inbox_id).map_or(Value::Null, |i| self.inbox_json(i, admin));
        json!({"source_id": ci.source_id, "inbox": inbox})
    }

    /// The `ContactInbox` record serialized whole (webhook `conversation.contact_inbox`).
    pub fn contact_inbox_record(&self, ci: &ContactInbox) -> Value {
        json!({
            "id": ci.id,
            "contact_id": ci.contact_id,
            "inbox_id": ci.inbox_id,
            "source_id": ci.source_id,
            "created_at": iso(ci.created_at),
            "updated_at": iso(ci.created_at),
            "hmac_verified": false,
            "pubsub_token": ci.pubsub_token,
        })
    }

    // ---- users and bots ------------------------------------------------------------------

    /// `api/v1/models/_user` (`GET /api/v1/profile`).
    pub fn profile_json(&self, u: &User) -> Value {
        json!({
            "access_token": u.access_token,
            "account_id": self.account_id,
            "available_name": u.name,
            "avatar_url": "",
            "confirmed": true,
            "display_name": null,
            "message_signature": null,
            "email": u.email,
            "id": u.id,
            "inviter_id": null,
            "name": u.name,
            "provider": "email",
            "pubsub_token": format!("pubsub-user-{}", u.id),
            "role": u.role.as_str(),
            "ui_settings": {},
            "uid": u.email,
            "type": null,
            "accounts": [{
                "id": self.account_id,
                "name": ACCOUNT_NAME,
                "status": "active",
                "active_at": null,
                "role": u.role.as_str(),
                "permissions": [u.role.as_str()],
                "availability": "online",
                "availability_status": "online",
                "auto_offline": true,
            }],
        })
    }

    /// A sender's `push_event_data` (REST messages, nested webhook messages).
    pub fn sender_push(&self, s: Sender) -> Value {
        match s {
            Sender::Contact(id) => self.contact(id).map_or(Value::Null, |c| self.contact_push(c)),
            Sender::User(id) => self.user(id).map_or(Value::Null, |u| {
                json!({"id": u.id, "name": u.name, "available_name": u.name, "avatar_url": "", "type": "user",
                       "availability_status": "online", "thumbnail": ""})
            }),
            Sender::Bot => json!({"id": BOT_ID, "name": BOT_NAME, "avatar_url": "", "type": "agent_bot"}),
            Sender::None => Value::Null,
        }
    }

    /// A sender's `webhook_data` (§3.3): users and bots carry `type`, contacts do not.
    pub fn sender_webhook(&self, s: Sender) -> Value {
        match s {
            Sender::Contact(id) => self.contact(id).map_or(Value::Null, |c| self.contact_webhook(c)),
            Sender::User(id) => {
                self.user(id).map_or(Value::Null, |u| json!({"id": u.id, "name": u.name, "email": u.email, "type": "user"}))
            }
            Sender::Bot => json!({"id": BOT_ID, "name": BOT_NAME, "type": "agent_bot"}),
            Sender::None => Value::Null,
        }
    }

    // ---- conversations -------------------------------------------------------------------

    fn conversation_messages(&self, conv: &Conversation) -> impl DoubleEndedIterator<Item = &Message> {
        self.messages.iter().filter(move |m| m.conversation_id == conv.id)
    }

    /// Incoming messages the agents have not seen (`agent_last_seen_at` stays 0 here).
    fn unread_count(&self, conv: &Conversation) -> usize {
        self.conversation_messages(conv).filter(|m| m.message_type == INCOMING).count()
    }

    /// `api/v1/conversations/partials/_conversation` (§2.2).
    pub fn conversation_json(&self, conv: &Conversation) -> Value {
        let contact = self.contact(conv.contact_id);
        let inbox = self.inbox(conv.inbox_id);
        let last = self.conversation_messages(conv).next_back().map(|m| self.message_push(m));
        let last_non_activity = self.conversation_messages(conv).rfind(|m| m.message_type != ACTIVITY);
        json!({
            "meta": {
                "sender": contact.map_or(Value::Null, |c| self.contact_json(c, false, false)),
                "channel": inbox.map(|i| if i.api { "Channel::Api" } else { "Channel::WebWidget" }),
                "hmac_verified": false,
            },
            "id": conv.display_id,
            "messages": last.into_iter().collect::<Vec<_>>(),
            "account_id": self.account_id,
            "uuid": conv.uuid,
            "additional_attributes": conv.additional_attributes,
            "agent_last_seen_at": 0,
            "assignee_last_seen_at": 0,
            "can_reply": self.can_reply(conv),
            "contact_last_seen_at": 0,
            "custom_attributes": conv.custom_attributes,
            "inbox_id": conv.inbox_id,
            "labels": [],
            "muted": false,
            "snoozed_until": null,
            "status": conv.status.as_str(),
            "created_at": unix(conv.created_at),
            "timestamp": unix(conv.last_activity_at),
            "first_reply_created_at": conv.first_reply_created_at.map_or(0, unix),
            "unread_count": self.unread_count(conv),
            "last_non_activity_message": last_non_activity.map_or(Value::Null, |m| self.message_push(m)),
            "last_activity_at": unix(conv.last_activity_at),
            "priority": null,
            "waiting_since": conv.waiting_since.map_or(0, unix),
            "sla_policy_id": null,
        })
    }

    /// `Conversation#webhook_data` (`Conversations::EventDataPresenter`, §3.3).
    pub fn conversation_webhook(&self, conv: &Conversation) -> Value {
        let contact = self.contact(conv.contact_id);
        let last_chat = self.conversation_messages(conv).rfind(|m| m.message_type != ACTIVITY && !m.private);
        json!({
            "additional_attributes": conv.additional_attributes,
            "can_reply": self.can_reply(conv),
            "channel": if conv.inbox_id == self.api_inbox().id { "Channel::Api" } else { "Channel::WebWidget" },
            "contact_inbox": self.contact_inbox(conv.contact_inbox_id).map_or(Value::Null, |ci| self.contact_inbox_record(ci)),
            "id": conv.display_id,
            "inbox_id": conv.inbox_id,
            "messages": last_chat.map(|m| self.message_push(m)).into_iter().collect::<Vec<_>>(),
            "labels": [],
            "meta": {
                "sender": contact.map_or(Value::Null, |c| self.contact_push(c)),
                "assignee": null,
                "assignee_type": null,
                "team": null,
                "hmac_verified": false,
            },
            "status": conv.status.as_str(),
            "custom_attributes": conv.custom_attributes,
            "snoozed_until": null,
            "unread_count": self.unread_count(conv),
            "first_reply_created_at": conv.first_reply_created_at.map(iso),
            "priority": null,
            "waiting_since": conv.waiting_since.map_or(0, unix),
            "agent_last_seen_at": 0,
            "contact_last_seen_at": 0,
            "last_activity_at": unix(conv.last_activity_at),
            "timestamp": unix(conv.last_activity_at),
            "created_at": unix(conv.created_at),
            "updated_at": unix_f64(conv.updated_at),
            "account": self.account_webhook(),
        })
    }

    // ---- messages ------------------------------------------------------------------------

    fn display_id_of(&self, m: &Message) -> Value {
        self.conversation(m.conversation_id).map_or(Value::Null, |c| json!(c.display_id))
    }

    fn attachments_of(&self, m: &Message) -> Vec<Value> {
        m.attachments
            .iter()
            .filter_map(|id| self.attachments.iter().find(|a| a.id == *id))
            .map(|a| self.attachment_push(a))
            .collect()
    }

    /// `api/v1/models/_message` (§2.3): integer `message_type`, string `status`, Unix
    /// `created_at`; `echo_id` only in the answer to the create call that sent one.
    pub fn message_json(&self, m: &Message, echo_id: Option<&str>) -> Value {
        let mut v = json!({
            "id": m.id,
            "content": opt(&m.content),
            "inbox_id": m.inbox_id,
            "conversation_id": self.display_id_of(m),
            "message_type": m.message_type,
            "content_type": m.content_type,
            "status": m.status,
            "content_attributes": m.content_attributes,
            "created_at": unix(m.created_at),
            "private": m.private,
            "source_id": opt(&m.source_id),
        });
        if let Some(echo) = echo_id {
            v["echo_id"] = json!(echo);
        }
        if m.sender != Sender::None {
            v["sender"] = self.sender_push(m.sender);
        }
        let attachments = self.attachments_of(m);
        if !attachments.is_empty() {
            v["attachments"] = json!(attachments);
        }
        v
    }

    /// `Message#push_event_data`: the record's attributes plus a conversation summary.
    pub fn message_push(&self, m: &Message) -> Value {
        let conv = self.conversation(m.conversation_id);
        let (sender_type, sender_id) = match m.sender {
            Sender::Contact(id) => (json!("Contact"), json!(id)),
            Sender::User(id) => (json!("User"), json!(id)),
            Sender::Bot => (json!("AgentBot"), json!(BOT_ID)),
            Sender::None => (Value::Null, Value::Null),
        };
        let mut v = json!({
            "id": m.id,
            "content": opt(&m.content),
            "account_id": self.account_id,
            "inbox_id": m.inbox_id,
            "conversation_id": self.display_id_of(m),
            "message_type": m.message_type,
            "created_at": unix(m.created_at),
            "updated_at": iso(m.updated_at),
            "private": m.private,
            "status": m.status,
            "source_id": opt(&m.source_id),
            "content_type": m.content_type,
            "content_attributes": m.content_attributes,
            "sender_type": sender_type,
            "sender_id": sender_id,
            "external_source_ids": {},
            "additional_attributes": m.additional_attributes,
            "processed_message_content": opt(&m.content),
            "sentiment": {},
            "conversation": conv.map_or(Value::Null, |c| json!({
                "assignee_id": null,
                "unread_count": self.unread_count(c),
                "last_activity_at": unix(c.last_activity_at),
                "contact_inbox": {"source_id": self.contact_inbox(c.contact_inbox_id).map(|ci| ci.source_id.clone())},
            })),
        });
        if m.sender != Sender::None {
            v["sender"] = self.sender_push(m.sender);
        }
        let attachments = self.attachments_of(m);
        if !attachments.is_empty() {
            v["attachments"] = json!(attachments);
        }
        v
    }

    /// `Message#webhook_data` plus `event` (§3.3). No `status` field (v4.15.1).
    pub fn message_webhook(&self, m: &Message, event: &str) -> Value {
        let mut v = json!({
            "event": event,
            "account": self.account_webhook(),
            "additional_attributes": m.additional_attributes,
            "content_attributes": m.content_attributes,
            "content_type": m.content_type,
            "content": m.content.as_deref().map(normalize_webhook_content),
            "conversation": self.conversation(m.conversation_id).map_or(Value::Null, |c| self.conversation_webhook(c)),
            "created_at": iso(m.created_at),
            "id": m.id,
            "inbox": self.inbox(m.inbox_id).map_or(Value::Null, |i| json!({"id": i.id, "name": i.name})),
            "message_type": MESSAGE_TYPES[m.message_type as usize],
            "private": m.private,
            "sender": self.sender_webhook(m.sender),
            "source_id": opt(&m.source_id),
        });
        let attachments = self.attachments_of(m);
        if !attachments.is_empty() {
            v["attachments"] = json!(attachments);
        }
        v
    }

    /// `Attachment#push_event_data` for a stored file (§3.3).
    pub fn attachment_push(&self, a: &Attachment) -> Value {
        let name = urlencode(&a.file.filename);
        let data_url = format!("{}/rails/active_storage/blobs/redirect/{}/{name}", a.base, a.signed_id);
        // Rails only makes thumbnails of images; other files get "".
        let thumb_url = if a.file_type == "image" {
            format!("{}/rails/active_storage/representations/redirect/{}/thumb250/{name}", a.base, a.signed_id)
        } else {
            String::new()
        };
        json!({
            "id": a.id,
            "message_id": a.message_id,
            "file_type": a.file_type,
            "account_id": self.account_id,
            "extension": opt(&a.extension),
            "content_type": a.file.content_type,
            "data_url": data_url,
            "thumb_url": thumb_url,
            "file_size": a.file.bytes.len(),
            "width": null,
            "height": null,
        })
    }
}

/// `Messages::WebhookContentNormalizer`: CommonMark hard-break backslashes and trailing
/// newlines removed (§3.3).
pub(crate) fn normalize_webhook_content(s: &str) -> String {
    s.replace("\\\r\n", "\r\n").replace("\\\n", "\n").trim_end_matches(['\n', '\r']).to_owned()
}
