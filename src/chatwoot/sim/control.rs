//! The simulator's own `/_sim` endpoints, for people running `wechat-bridge simulate chatwoot`:
//! state, faults, the webhook URL, and what agents do in the dashboard (reply, resolve, retry,
//! delete). No token needed; never counted as API requests.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::model::{AGENT_USER_ID, ConvStatus, Sender, str_param};
use super::routes::{Sim, base_url, body_params};
use super::{AgentReply, Faults};

fn bad(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response()
}

fn missing(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": format!("no such {what}")}))).into_response()
}

fn faults_json(f: &Faults) -> Value {
    json!({"fail_next": f.fail_queue, "down": f.down})
}

/// `GET /_sim/state`: the inbox (as an administrator sees it), contacts, conversations with
/// their messages, a summary of every webhook attempt, faults.
pub(super) async fn state(AxState(inner): Sim) -> Json<Value> {
    let (inbox, contacts, conversations) = inner.read(|st| {
        let contacts: Vec<Value> = st.contacts.iter().map(|c| st.contact_json(c, true, true)).collect();
        let conversations: Vec<Value> = st
            .conversations
            .iter()
            .map(|c| {
                let mut v = st.conversation_json(c);
                v["messages"] =
                    st.messages.iter().filter(|m| m.conversation_id == c.id).map(|m| st.message_json(m, None)).collect();
                v
            })
            .collect();
        (st.inbox_json(st.api_inbox(), true), contacts, conversations)
    });
    let webhooks: Vec<Value> = inner
        .hooks
        .records()
        .iter()
        .map(|r| json!({"event": r.event, "message_id": r.message_id, "status": r.status, "error": r.error, "signed": r.signed}))
        .collect();
    let meta = inner.meta();
    Json(json!({
        "account_id": inner.cfg.account_id,
        "inbox": inbox,
        "contacts": contacts,
        "conversations": conversations,
        "webhooks": webhooks,
        "faults": faults_json(&meta.faults),
        "api_requests": meta.requests.len(),
    }))
}

/// `POST /_sim/faults` with any of `{"fail_next": {"n": 2, "status": 503}}` (or
/// `{"fail_next": 2, "status": 503}`), `{"down": true}`, `{"clear": true}`.
pub(super) async fn faults(AxState(inner): Sim, body: Bytes) -> Response {
    let Ok(req @ Value::Object(_)) = serde_json::from_slice::<Value>(&body) else {
        return bad("expected a JSON object");
    };
    let mut meta = inner.meta();
    if req.get("clear").and_then(Value::as_bool) == Some(true) {
        meta.faults = Faults::default();
    }
    let (n, status) = match req.get("fail_next") {
        Some(Value::Object(f)) => (f.get("n").and_then(Value::as_u64), f.get("status").and_then(Value::as_u64)),
        Some(v) => (v.as_u64(), req.get("status").and_then(Value::as_u64)),
        None => (None, None),
    };
    if let Some(n) = n {
        let status = status.unwrap_or(503);
        if !(400..=599).contains(&status) {
            return bad("status must be 400..=599");
        }
        meta.faults.fail_queue.extend(std::iter::repeat_n(status as u16, n as usize));
    }
    if let Some(down) = req.get("down").and_then(Value::as_bool) {
        meta.faults.down = down;
    }
    Json(faults_json(&meta.faults)).into_response()
}

/// `PUT /_sim/webhook_url {"url": "…" | null}`.
pub(super) async fn webhook_url(AxState(inner): Sim, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(req) = body_params(&headers, &body) else { return bad("expected a JSON object") };
    let url = str_param(&req, "url").filter(|u| !u.is_empty());
    inner.apply(|st| st.api_inbox_mut().webhook_url = url.clone());
    Json(json!({"webhook_url": url})).into_response()
}

/// `POST /_sim/conversations/{id}/reply {"content", "private"?, "template"?, "by_bot"?}` →
/// `{"id"}` once its webhook was attempted (see `ChatwootSim::agent_reply`).
pub(super) async fn reply(AxState(inner): Sim, headers: HeaderMap, Path(id): Path<u64>, body: Bytes) -> Response {
    let Ok(req) = body_params(&headers, &body) else { return bad("expected a JSON object") };
    let flag = |k: &str| req.get(k).and_then(Value::as_bool).unwrap_or(false);
    let reply = AgentReply {
        content: str_param(&req, "content").unwrap_or_default(),
        private: flag("private"),
        template: flag("template"),
        attachments: Vec::new(),
        by_bot: flag("by_bot"),
    };
    let base = base_url(&headers);
    let (result, seqs) = inner.mutate(|st| st.agent_reply(id, &reply, &base));
    match result {
        Ok(message_id) => {
            inner.hooks.wait_chain(seqs).await;
            Json(json!({"id": message_id})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /_sim/conversations/{id}/resolve`: "Agent Li" resolves it.
pub(super) async fn resolve(AxState(inner): Sim, Path(id): Path<u64>) -> Response {
    let (found, seqs) = inner.mutate(|st| {
        let pos = st.conversation_pos(id)?;
        st.change_status(pos, ConvStatus::Resolved, Sender::User(AGENT_USER_ID));
        Some(())
    });
    if found.is_none() {
        return missing("conversation");
    }
    inner.hooks.wait_chain(seqs).await;
    Json(json!({"id": id, "status": "resolved"})).into_response()
}

/// `POST /_sim/messages/{id}/retry`: the dashboard's Retry (§5.3).
pub(super) async fn retry(AxState(inner): Sim, Path(id): Path<u64>) -> Response {
    let (found, seqs) = inner.mutate(|st| st.retry_message(id));
    if !found {
        return missing("message");
    }
    inner.hooks.wait_chain(seqs).await;
    Json(json!({"id": id})).into_response()
}

/// `POST /_sim/messages/{id}/delete`: an agent deletes the message.
pub(super) async fn delete(AxState(inner): Sim, Path(id): Path<u64>) -> Response {
    let (found, seqs) = inner.mutate(|st| st.delete_message(id));
    if !found {
        return missing("message");
    }
    inner.hooks.wait_chain(seqs).await;
    Json(json!({"id": id})).into_response()
}
