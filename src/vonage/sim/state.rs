//! The simulator's data (users, conversations, members, events) and the JSON shapes the
//! Conversation API answers with (`vonage-api.md §2.3`).
//!
//! Everything here is synchronous and runs under the simulator's mutex: the operations
//! are in `ops.rs`, the request rules in `validate.rs`, HTTP in `routes.rs`, webhook
//! delivery in `rtc.rs`.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::problem::Problem;

pub(crate) fn ts(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub seq: u64,
    pub id: String,
    pub name: String,
    pub display_name: Option<String>,
    pub image_url: Option<String>,
    pub properties: Value,
    pub channels: Option<Value>,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub seq: u64,
    pub id: String,
    pub user_id: String,
    /// Uppercase, as the API answers (`INVITED`, `JOINED`).
    pub state: String,
    pub channel: Value,
    pub invited: Option<SystemTime>,
    pub joined: Option<SystemTime>,
}

#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// Per-conversation progressive integer starting at 1 (`vonage-api.md §2.2`).
    pub id: u64,
    /// Global creation order, for `all_events`.
    pub seq: u64,
    pub kind: String,
    pub from: Option<String>,
    pub body: Value,
    pub timestamp: SystemTime,
}

#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    pub seq: u64,
    pub id: String,
    pub name: String,
    pub display_name: Option<String>,
    pub image_url: Option<String>,
    pub properties: Value,
    pub created: SystemTime,
    pub members: Vec<Member>,
    pub events: Vec<Event>,
}

/// Everything the simulator knows; guarded by one mutex in `VonageSim`.
#[derive(Debug)]
pub(crate) struct State {
    pub application_id: String,
    pub(super) seq: u64,
    pub users: Vec<User>,
    pub conversations: Vec<Conversation>,
    /// RTC payloads produced by the latest mutation, drained into the dispatcher by the
    /// caller while it still holds the lock (so queue order = event id order).
    pub outbox: Vec<(String, Value)>,
}

pub(super) fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4())
}

pub(super) fn opt_str(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| json!(s))
}

/// Drops `null` members so absent optional fields are absent, as on the real API.
pub(super) fn compact(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}

impl State {
    pub fn new(application_id: String) -> Self {
        State { application_id, seq: 0, users: Vec::new(), conversations: Vec::new(), outbox: Vec::new() }
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    // ---- lookups -------------------------------------------------------------------

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn conversation(&self, id: &str) -> Result<&Conversation, Problem> {
        self.conversations.iter().find(|c| c.id == id).ok_or_else(Problem::conversation_not_found)
    }

    pub(super) fn conversation_mut(&mut self, id: &str) -> Result<&mut Conversation, Problem> {
        self.conversations.iter_mut().find(|c| c.id == id).ok_or_else(Problem::conversation_not_found)
    }

    // ---- JSON shapes ---------------------------------------------------------------

    /// Full user (`vonage-api.md §2.3`, PY `user.json`).
    pub fn user_json(&self, u: &User, base: &str) -> Value {
        compact(json!({
            "id": u.id,
            "name": u.name,
            "display_name": opt_str(&u.display_name),
            "image_url": opt_str(&u.image_url),
            "properties": u.properties,
            "channels": u.channels.clone().unwrap_or(Value::Null),
            "_links": {"self": {"href": format!("{base}/v1/users/{}", u.id)}},
        }))
    }

    pub(super) fn user_lite(u: &User, base: &str) -> Value {
        compact(json!({
            "id": u.id,
            "name": u.name,
            "display_name": opt_str(&u.display_name),
            "_links": {"self": {"href": format!("{base}/v1/users/{}", u.id)}},
        }))
    }

    /// Full conversation (`vonage-api.md §2.3`, JAVA `SAMPLE_CONVERSATION_RESPONSE`).
    pub fn conversation_json(c: &Conversation, base: &str) -> Value {
        compact(json!({
            "id": c.id,
            "name": c.name,
            "display_name": opt_str(&c.display_name),
            "image_url": opt_str(&c.image_url),
            "timestamp": {"created": ts(c.created), "updated": ts(c.created)},
            "state": "ACTIVE",
            // "The last Event ID in this conversation" (vonage-api.md §2.2).
            "sequence_number": c.events.last().map_or(0, |e| e.id),
            "properties": c.properties,
            "_links": {"self": {"href": format!("{base}/v1/conversations/{}", c.id)}},
        }))
    }

    pub(super) fn conversation_lite(c: &Conversation, base: &str) -> Value {
        compact(json!({
            "id": c.id,
            "name": c.name,
            "display_name": opt_str(&c.display_name),
            "image_url": opt_str(&c.image_url),
            "timestamp": {"created": ts(c.created), "updated": ts(c.created)},
            "_links": {"self": {"href": format!("{base}/v1/conversations/{}", c.id)}},
        }))
    }

    fn member_href(c: &Conversation, m: &Member, base: &str) -> String {
        format!("{base}/v1/conversations/{}/members/{}", c.id, m.id)
    }

    fn embedded_user(&self, user_id: &str, base: &str) -> Value {
        self.user(user_id).map_or(json!({"id": user_id}), |u| Self::user_lite(u, base))
    }

    /// Full member (`vonage-api.md §2.3`, JAVA `SAMPLE_MEMBER_RESPONSE`). `_links` has
    /// the sample's bare `href` and also `self.href` like every other resource.
    pub fn member_json(&self, c: &Conversation, m: &Member, base: &str) -> Value {
        let href = Self::member_href(c, m, base);
        let mut timestamp = Map::new();
        if let Some(t) = m.invited {
            timestamp.insert("invited".into(), json!(ts(t)));
        }
        if let Some(t) = m.joined {
            timestamp.insert("joined".into(), json!(ts(t)));
        }
        json!({
            "id": m.id,
            "conversation_id": c.id,
            "_embedded": {"user": self.embedded_user(&m.user_id, base)},
            "state": m.state,
            "timestamp": timestamp,
            "initiator": {"joined": {"is_system": true}},
            "channel": m.channel,
            "media": {"audio_settings": {"enabled": false, "earmuffed": false, "muted": false}, "audio": false},
            "_links": {"href": href, "self": {"href": href}},
        })
    }

    pub(super) fn member_lite(&self, c: &Conversation, m: &Member, base: &str) -> Value {
        let href = Self::member_href(c, m, base);
        json!({
            "id": m.id,
            "state": m.state,
            "_embedded": {"user": self.embedded_user(&m.user_id, base)},
            "_links": {"href": href, "self": {"href": href}},
        })
    }

    /// `_embedded.from_user` / `from_member` for an event whose `from` is a member.
    pub(super) fn event_embedded(&self, c: &Conversation, from: Option<&str>) -> Option<Value> {
        let m = c.members.iter().find(|m| Some(m.id.as_str()) == from)?;
        let u = self.user(&m.user_id)?;
        let custom_data = u.properties.get("custom_data").cloned().unwrap_or_else(|| json!({}));
        Some(json!({
            "from_user": compact(json!({
                "id": u.id, "name": u.name,
                "display_name": opt_str(&u.display_name),
                "image_url": opt_str(&u.image_url),
                "custom_data": custom_data,
            })),
            "from_member": {"id": m.id},
        }))
    }

    /// Full event (`vonage-api.md §2.3`, JAVA `SAMPLE_EVENT_RESPONSE`).
    pub fn event_json(&self, c: &Conversation, e: &Event, base: &str) -> Value {
        compact(json!({
            "id": e.id,
            "type": e.kind,
            "from": opt_str(&e.from),
            "body": e.body,
            "timestamp": ts(e.timestamp),
            "_embedded": self.event_embedded(c, e.from.as_deref()).unwrap_or(Value::Null),
            "_links": {"self": {"href": format!("{base}/v1/conversations/{}/events/{}", c.id, e.id)}},
        }))
    }

    /// The RTC webhook payload (`vonage-api.md §3.3`).
    pub fn rtc_payload(&self, c: &Conversation, e: &Event) -> Value {
        compact(json!({
            "type": e.kind,
            "id": e.id,
            "timestamp": ts(e.timestamp),
            "application_id": self.application_id,
            "conversation_id": c.id,
            "from": opt_str(&e.from),
            "body": e.body,
            "_embedded": self.event_embedded(c, e.from.as_deref()).unwrap_or(Value::Null),
        }))
    }
}
