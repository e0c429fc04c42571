//! The Conversation API operations on the simulator's state: create/list/get for users,
//! conversations, members and events (`vonage-api.md §2.2`, §2.3). Each returns the
//! answer's JSON or the RFC 7807 problem; events they store are queued in
//! `State::outbox` for the RTC webhook.

use std::time::SystemTime;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::paging::{Page, Query, links, param};
use super::problem::Problem;
use super::state::{Conversation, Event, Member, State, User, compact, new_id, opt_str, ts};
use super::validate::{MAX_CUSTOM_BODY_BYTES, MAX_CUSTOM_TYPE_CHARS, named_fields, valid_custom_type, validate_message_body};

impl State {
    // ---- users ---------------------------------------------------------------------

    /// `POST /v1/users`.
    pub fn create_user(&mut self, body: &Value, base: &str) -> Result<Value, Problem> {
        let f = named_fields(body, &["name", "display_name", "image_url", "properties", "channels"], None, None)?;
        if let Some(ch) = body.get("channels")
            && !ch.is_object()
        {
            return Err(Problem::invalid("channels", "\"channels\" must be of type object"));
        }
        if let Some(name) = &f.name
            && self.user_by_name(name).is_some()
        {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "Conflict",
                "user:error:duplicate-name",
                "The request failed because the user name already exists. Please provide a unique user name and try again.",
            ));
        }
        let seq = self.next_seq();
        let user = User {
            seq,
            id: new_id("USR-"),
            // Unnamed users get `NAM-<uuid>` (vonage-api.md §2.3, PY list_users.json).
            name: f.name.unwrap_or_else(|| new_id("NAM-")),
            display_name: f.display_name,
            image_url: f.image_url,
            properties: f.properties.unwrap_or_else(|| json!({"custom_data": {}})),
            channels: body.get("channels").cloned(),
        };
        let out = self.user_json(&user, base);
        self.users.push(user);
        Ok(out)
    }

    /// `GET /v1/users?name&page_size&order&cursor`.
    pub fn list_users(&self, q: &Query, base: &str) -> Result<Value, Problem> {
        let page = Page::parse(q)?;
        let name = param(q, "name");
        let items =
            self.users.iter().filter(|u| name.is_none_or(|n| u.name == n)).map(|u| (u.seq, Self::user_lite(u, base))).collect();
        let (users, next) = page.cut(items);
        Ok(json!({
            "page_size": page.size,
            "_embedded": {"users": users},
            "_links": links(base, "/v1/users", q, next),
        }))
    }

    /// `GET /v1/users/{id}/conversations?state&page_size&order&cursor`.
    pub fn user_conversations(&self, user_id: &str, q: &Query, base: &str) -> Result<Value, Problem> {
        self.user(user_id).ok_or_else(Problem::user_not_found)?;
        let page = Page::parse(q)?;
        let state = param(q, "state").map(str::to_ascii_uppercase);
        let items = self
            .conversations
            .iter()
            .filter_map(|c| {
                let m = c.members.iter().find(|m| m.user_id == user_id && state.as_ref().is_none_or(|s| &m.state == s))?;
                let mut v = Self::conversation_lite(c, base);
                v["state"] = json!("ACTIVE");
                v["_embedded"] = json!({"member": {"id": m.id, "state": m.state}});
                Some((c.seq, v))
            })
            .collect();
        let (convs, next) = page.cut(items);
        Ok(json!({
            "page_size": page.size,
            "_embedded": {"conversations": convs},
            "_links": links(base, &format!("/v1/users/{user_id}/conversations"), q, next),
        }))
    }

    // ---- conversations -------------------------------------------------------------

    /// `POST /v1/conversations`: name ≤ 100, display_name ≤ 50, image_url ≤ 2048, unique
    /// name (`vonage-api.md §2.3`).
    pub fn create_conversation(&mut self, body: &Value, base: &str) -> Result<Value, Problem> {
        let f =
            named_fields(body, &["name", "display_name", "image_url", "properties", "numbers", "callback"], Some(100), Some(50))?;
        if let Some(name) = &f.name
            && self.conversations.iter().any(|c| &c.name == name)
        {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "Conflict",
                "conversation:error:duplicate-name",
                "The request failed because the conversation name already exists. Please provide a unique conversation name and try again.",
            ));
        }
        let seq = self.next_seq();
        let conv = Conversation {
            seq,
            id: new_id("CON-"),
            name: f.name.unwrap_or_else(|| new_id("NAM-")),
            display_name: f.display_name,
            image_url: f.image_url,
            properties: f.properties.unwrap_or_else(|| json!({})),
            created: SystemTime::now(),
            members: Vec::new(),
            events: Vec::new(),
        };
        let out = Self::conversation_json(&conv, base);
        self.conversations.push(conv);
        Ok(out)
    }

    /// `GET /v1/conversations?date_start&date_end&page_size&order&cursor`.
    pub fn list_conversations(&self, q: &Query, base: &str) -> Result<Value, Problem> {
        let page = Page::parse(q)?;
        let bound = |key: &str| -> Result<Option<SystemTime>, Problem> {
            param(q, key)
                .map(|s| {
                    humantime::parse_rfc3339_weak(s)
                        .map_err(|_| Problem::invalid(key, format!("\"{key}\" must be a valid ISO 8601 date")))
                })
                .transpose()
        };
        let (start, end) = (bound("date_start")?, bound("date_end")?);
        let items = self
            .conversations
            .iter()
            .filter(|c| start.is_none_or(|s| c.created >= s) && end.is_none_or(|e| c.created <= e))
            .map(|c| (c.seq, Self::conversation_lite(c, base)))
            .collect();
        let (convs, next) = page.cut(items);
        Ok(json!({
            "page_size": page.size,
            "_embedded": {"conversations": convs},
            "_links": links(base, "/v1/conversations", q, next),
        }))
    }

    // ---- members -------------------------------------------------------------------

    /// `POST /v1/conversations/{id}/members` (`vonage-api.md §2.3`, "Create member").
    pub fn create_member(&mut self, conv_id: &str, body: &Value, base: &str) -> Result<Value, Problem> {
        self.conversation(conv_id)?;
        let Some(obj) = body.as_object() else {
            return Err(Problem::invalid("body", "\"value\" must be of type object"));
        };
        let mut bad = Vec::new();
        // Requests use lowercase; uppercase was accepted by live community code (§2.3).
        let state = match obj.get("state").and_then(Value::as_str).map(str::to_ascii_lowercase) {
            Some(s) if s == "joined" || s == "invited" => Some(s.to_ascii_uppercase()),
            Some(_) => {
                bad.push(("state".into(), "\"state\" must be one of [invited, joined]".into()));
                None
            }
            None => {
                bad.push(("state".into(), "\"state\" is required".into()));
                None
            }
        };
        const CHANNELS: [&str; 10] = ["app", "phone", "sip", "websocket", "vbc", "sms", "mms", "whatsapp", "viber", "messenger"];
        match obj.get("channel") {
            Some(Value::Object(ch)) => match ch.get("type").and_then(Value::as_str) {
                Some(t) if CHANNELS.contains(&t) => {}
                Some(_) => {
                    bad.push(("channel.type".into(), format!("\"channel.type\" must be one of [{}]", CHANNELS.join(", "))))
                }
                None => bad.push(("channel.type".into(), "\"channel.type\" is required".into())),
            },
            Some(_) => bad.push(("channel".into(), "\"channel\" must be of type object".into())),
            None => bad.push(("channel".into(), "\"channel\" is required".into())),
        }
        let user_ref = match obj.get("user") {
            Some(Value::Object(u)) => {
                let id = u.get("id").and_then(Value::as_str);
                let name = u.get("name").and_then(Value::as_str);
                if id.is_none() && name.is_none() {
                    // "Either :id or :name is required" (RUBY, §2.3).
                    bad.push(("user".into(), "\"user\" must contain at least one of [id, name]".into()));
                }
                Some((id.map(str::to_owned), name.map(str::to_owned)))
            }
            Some(_) => {
                bad.push(("user".into(), "\"user\" must be of type object".into()));
                None
            }
            None => {
                bad.push(("user".into(), "\"user\" is required".into()));
                None
            }
        };
        if !bad.is_empty() {
            return Err(Problem::validation(bad));
        }
        let (state, (uid, uname)) = (state.expect("validated"), user_ref.expect("validated"));
        let user = match (&uid, &uname) {
            (Some(id), _) => self.user(id),
            (None, Some(name)) => self.user_by_name(name),
            (None, None) => None,
        }
        .ok_or_else(Problem::user_not_found)?;
        let (user_id, user_name, user_display) = (user.id.clone(), user.name.clone(), user.display_name.clone());
        let channel = obj["channel"].clone();
        let now = SystemTime::now();
        let seq = self.next_seq();

        let conv = self.conversation_mut(conv_id)?;
        let existing = conv.members.iter().position(|m| m.user_id == user_id);
        let idx = match existing {
            Some(i) if conv.members[i].state == "JOINED" => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    "conversation:error:member-already-joined",
                    "The user is already a joined member of this conversation.",
                ));
            }
            Some(i) if state == "JOINED" => {
                // An invited user joining: same member, new state.
                conv.members[i].state = state.clone();
                conv.members[i].joined = Some(now);
                conv.members[i].channel = channel.clone();
                i
            }
            Some(_) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    "conversation:error:already-member",
                    "The user is already a member of this conversation.",
                ));
            }
            None => {
                conv.members.push(Member {
                    seq,
                    id: new_id("MEM-"),
                    user_id: user_id.clone(),
                    state: state.clone(),
                    channel: channel.clone(),
                    invited: (state == "INVITED").then_some(now),
                    joined: (state == "JOINED").then_some(now),
                });
                conv.members.len() - 1
            }
        };
        let member_id = conv.members[idx].id.clone();

        // The service itself records the membership change as an event (and dispatches it
        // to the RTC webhook like any other, vonage-api.md §3.2).
        let kind = if state == "JOINED" { "member:joined" } else { "member:invited" };
        let mut ev_body = json!({
            "member_id": member_id,
            "user": compact(json!({"id": user_id, "name": user_name, "display_name": opt_str(&user_display)})),
            "channel": channel,
            "timestamp": {state.to_ascii_lowercase(): ts(now)},
        });
        if state == "JOINED" {
            ev_body["initiator"] = json!({"joined": {"is_system": true}});
        }
        self.append_event(conv_id, kind, Some(member_id.clone()), ev_body)?;

        let conv = self.conversation(conv_id)?;
        Ok(self.member_json(conv, &conv.members[idx], base))
    }

    /// `GET /v1/conversations/{id}/members?page_size&order&cursor`.
    pub fn list_members(&self, conv_id: &str, q: &Query, base: &str) -> Result<Value, Problem> {
        let conv = self.conversation(conv_id)?;
        let page = Page::parse(q)?;
        let items = conv.members.iter().map(|m| (m.seq, self.member_lite(conv, m, base))).collect();
        let (members, next) = page.cut(items);
        Ok(json!({
            "page_size": page.size,
            "_embedded": {"members": members},
            "_links": links(base, &format!("/v1/conversations/{conv_id}/members"), q, next),
        }))
    }

    // ---- events --------------------------------------------------------------------

    /// Stores an event (id = previous + 1) and queues its RTC payload in `outbox`.
    fn append_event(&mut self, conv_id: &str, kind: &str, from: Option<String>, body: Value) -> Result<u64, Problem> {
        let seq = self.next_seq();
        let conv = self.conversation_mut(conv_id)?;
        let id = conv.events.last().map_or(1, |e| e.id + 1);
        conv.events.push(Event { id, seq, kind: kind.to_owned(), from, body, timestamp: SystemTime::now() });
        let conv = self.conversation(conv_id)?;
        let payload = self.rtc_payload(conv, conv.events.last().expect("just pushed"));
        self.outbox.push((conv_id.to_owned(), payload));
        Ok(id)
    }

    /// `POST /v1/conversations/{id}/events`: custom events per the "Custom event rules"
    /// and `message` events (`vonage-api.md §2.3`).
    pub fn create_event(&mut self, conv_id: &str, body: &Value, base: &str) -> Result<Value, Problem> {
        let conv = self.conversation(conv_id)?;
        let Some(obj) = body.as_object() else {
            return Err(Problem::invalid("body", "\"value\" must be of type object"));
        };
        let kind = match obj.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(_) => return Err(Problem::invalid("type", "\"type\" must be a string")),
            None => return Err(Problem::invalid("type", "\"type\" is required")),
        };
        let ev_body = match obj.get("body") {
            Some(Value::Object(b)) => Value::Object(b.clone()),
            Some(_) => return Err(Problem::invalid("body", "\"body\" must be of type object")),
            None => return Err(Problem::invalid("body", "\"body\" is required")),
        };
        if kind.starts_with("custom:") {
            if kind.chars().count() > MAX_CUSTOM_TYPE_CHARS {
                return Err(Problem::invalid("type", format!("\"type\" must not exceed {MAX_CUSTOM_TYPE_CHARS} characters")));
            }
            if !valid_custom_type(&kind) {
                return Err(Problem::invalid(
                    "type",
                    "\"type\" must match ^custom:[A-Za-z0-9:_-]+$ (custom: followed by alphanumeric, ':', '-' or '_' characters)",
                ));
            }
            let size = serde_json::to_vec(&ev_body).expect("JSON value serialises").len();
            if size > MAX_CUSTOM_BODY_BYTES {
                return Err(Problem::invalid(
                    "body",
                    format!("\"body\" must not exceed {MAX_CUSTOM_BODY_BYTES} bytes (got {size} bytes)"),
                ));
            }
        } else if kind == "message" {
            validate_message_body(&ev_body)?;
        } else {
            return Err(Problem::invalid_event(format!(
                "Event type \"{kind}\" cannot be created through this API; use \"message\" or a \"custom:\" type."
            )));
        }
        let from = match obj.get("from") {
            None | Some(Value::Null) => None,
            Some(Value::String(f)) => {
                match conv.members.iter().find(|m| &m.id == f) {
                    Some(m) if m.state == "JOINED" => {}
                    Some(m) => {
                        return Err(Problem::invalid_event(format!(
                            "\"from\" member {f} is {} in this conversation; only joined members can send events.",
                            m.state
                        )));
                    }
                    None => {
                        return Err(Problem::invalid_event(format!("\"from\" {f} is not a member of conversation {conv_id}.")));
                    }
                }
                Some(f.clone())
            }
            Some(_) => return Err(Problem::invalid("from", "\"from\" must be a string")),
        };
        let id = self.append_event(conv_id, &kind, from, ev_body)?;
        let conv = self.conversation(conv_id)?;
        let ev = conv.events.iter().find(|e| e.id == id).expect("just stored");
        Ok(self.event_json(conv, ev, base))
    }

    /// `GET /v1/conversations/{id}/events?start_id&end_id&event_type&page_size&order&cursor`.
    /// `_embedded` is an ARRAY, as the OpenAPI spec and most SDKs read it (§0.3, §2.3).
    pub fn list_events(&self, conv_id: &str, q: &Query, base: &str) -> Result<Value, Problem> {
        let conv = self.conversation(conv_id)?;
        let page = Page::parse(q)?;
        let id_param = |key: &str| -> Result<Option<u64>, Problem> {
            param(q, key)
                .map(|s| s.parse::<u64>().map_err(|_| Problem::invalid(key, format!("\"{key}\" must be a number"))))
                .transpose()
        };
        let (start, end) = (id_param("start_id")?, id_param("end_id")?);
        let event_type = param(q, "event_type");
        let items = conv
            .events
            .iter()
            .filter(|e| {
                start.is_none_or(|s| e.id >= s) && end.is_none_or(|x| e.id <= x) && event_type.is_none_or(|t| e.kind == t)
            })
            .map(|e| (e.id, self.event_json(conv, e, base)))
            .collect();
        let (events, next) = page.cut(items);
        Ok(json!({
            "page_size": page.size,
            "_embedded": events,
            "_links": links(base, &format!("/v1/conversations/{conv_id}/events"), q, next),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_get_progressive_ids_and_member_join_is_an_event() {
        let mut st = State::new("app".into());
        let u = st.create_user(&json!({"name": "bridge"}), "http://h").unwrap();
        let c = st.create_conversation(&json!({"name": "c1"}), "http://h").unwrap();
        let cid = c["id"].as_str().unwrap();
        let m = st
            .create_member(cid, &json!({"user": {"id": u["id"]}, "state": "joined", "channel": {"type": "app"}}), "http://h")
            .unwrap();
        assert_eq!(m["state"], "JOINED");
        let e = st.create_event(cid, &json!({"type": "custom:x", "from": m["id"], "body": {"a": 1}}), "http://h").unwrap();
        assert_eq!(e["id"], 2);
        assert_eq!(e["_embedded"]["from_member"]["id"], m["id"]);
        assert_eq!(st.outbox.len(), 2);
        assert_eq!(st.outbox[0].1["type"], "member:joined");
        let conv = st.conversation(cid).unwrap();
        assert_eq!(State::conversation_json(conv, "http://h")["sequence_number"], 2);
    }
}
