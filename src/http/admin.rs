//! The admin JSON API under `/api/` (bearer `BRIDGE_ADMIN_TOKEN`): what happened to every
//! message, and a retry for those that failed. Without a token configured it answers 404, so a
//! forgotten setting never exposes customers' messages.

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::store::{MessageFilter, MessageRecord, StoreError};

/// Who may use the admin API.
#[derive(Clone, Debug)]
pub enum AdminAccess {
    /// No token configured: the API does not exist (404).
    Closed,
    /// `Authorization: Bearer <token>` required.
    Token(crate::config::Secret),
    /// Open to anyone who can reach it (the loopback-only `demo`).
    Open,
}

/// Checks access before any `/api/` handler runs.
pub async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match &state.admin {
        AdminAccess::Open => next.run(request).await,
        AdminAccess::Closed => StatusCode::NOT_FOUND.into_response(),
        AdminAccess::Token(token) => {
            let given = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
                next.run(request).await
            } else {
                (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "admin token required").into_response()
            }
        }
    }
}

fn unavailable(e: StoreError) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
}

/// The stored message with its payload as JSON rather than a string.
fn message_json(m: MessageRecord) -> Value {
    let mut v = serde_json::to_value(&m).unwrap_or(Value::Null);
    v["payload"] = serde_json::from_str(&m.payload).unwrap_or(Value::String(m.payload));
    v
}

/// `GET /api/conversations`: one row per WeChat contact with its Vonage conversation.
pub async fn list_conversations(State(state): State<AppState>) -> Response {
    match state.store.conversations(500).await {
        Ok(list) => Json(json!({"conversations": list})).into_response(),
        Err(e) => unavailable(e),
    }
}

/// `GET /api/messages?direction&status&contact_id&since&until&limit`.
pub async fn list_messages(State(state): State<AppState>, Query(filter): Query<MessageFilter>) -> Response {
    match state.store.filtered_messages(&filter).await {
        Ok(list) => Json(json!({"messages": list.into_iter().map(message_json).collect::<Vec<_>>()})).into_response(),
        Err(e) => unavailable(e),
    }
}

/// `GET /api/messages/{id}`.
pub async fn get_message(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.store.message(&id).await {
        Ok(m) => Json(message_json(m)).into_response(),
        Err(StoreError::NotFound(what)) => (StatusCode::NOT_FOUND, what).into_response(),
        Err(e) => unavailable(e),
    }
}

/// `POST /api/messages/{id}/retry`: a `failed` message goes back into the outbox, due now.
pub async fn retry_message(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.store.message(&id).await {
        Err(StoreError::NotFound(what)) => return (StatusCode::NOT_FOUND, what).into_response(),
        Err(e) => return unavailable(e),
        Ok(m) if m.status != "failed" => {
            return (StatusCode::CONFLICT, Json(json!({"error": format!("message is {}, only failed messages are retried", m.status)})))
                .into_response();
        }
        Ok(_) => {}
    }
    match state.store.retry_message(&id).await {
        Ok(true) => {
            state.wake.notify_one();
            Json(json!({"id": id, "status": "stored", "retried": true})).into_response()
        }
        Ok(false) => (StatusCode::CONFLICT, Json(json!({"error": "nothing to retry"}))).into_response(),
        Err(e) => unavailable(e),
    }
}
