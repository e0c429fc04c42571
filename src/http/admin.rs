//! The admin JSON API under `/api/` (bearer `BRIDGE_ADMIN_TOKEN`): what happened to every
//! message, and a retry for those that failed. Without a token configured it answers 404, so a
//! forgotten setting never exposes customers' messages.

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{AppState, stream_ticket};
use crate::config::Secret;
use crate::relay::message::{BridgeMessageId, MessageStatus};
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

/// Checks access before any `/api/` handler runs: `Authorization: Bearer` only, so the token
/// never has to appear in a URL (a `?token=` here is refused: URLs end up in logs and history).
pub async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match &state.admin {
        AdminAccess::Open => next.run(request).await,
        AdminAccess::Closed => StatusCode::NOT_FOUND.into_response(),
        AdminAccess::Token(token) if bearer_matches(&request, token) => next.run(request).await,
        AdminAccess::Token(_) => unauthorized(),
    }
}

/// Access to `GET /api/stream`: the bearer header, or, because EventSource cannot send headers,
/// `?ticket=` (see `stream_ticket`) or `?token=` (percent-decoded, so tokens with `/ + =` work).
pub async fn require_admin_for_stream(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let token = match &state.admin {
        AdminAccess::Open => return next.run(request).await,
        AdminAccess::Closed => return StatusCode::NOT_FOUND.into_response(),
        AdminAccess::Token(token) => token,
    };
    if bearer_matches(&request, token) {
        return next.run(request).await;
    }
    let query = Query::<StreamCredentials>::try_from_uri(request.uri()).map(|q| q.0).unwrap_or_default();
    let by_ticket = query.ticket.is_some_and(|ticket| {
        stream_ticket::verify(token.expose(), &ticket, stream_ticket::unix_now())
            .inspect_err(|e| tracing::debug!(reason = %e, "stream ticket refused"))
            .is_ok()
    });
    let by_token = query.token.is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())));
    if by_ticket || by_token { next.run(request).await } else { unauthorized() }
}

/// The query string of `GET /api/stream`, percent-decoded.
#[derive(Debug, Default, Deserialize)]
struct StreamCredentials {
    ticket: Option<String>,
    token: Option<String>,
}

/// `Authorization: Bearer <token>`, compared in constant time.
fn bearer_matches(request: &Request, token: &Secret) -> bool {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())))
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "admin token required").into_response()
}

/// `POST /api/stream-ticket` (bearer): `{"ticket": …}` that opens the live stream for 60 s.
pub async fn issue_stream_ticket(State(state): State<AppState>) -> Response {
    // Open access (the loopback `demo`) needs no ticket; one signed with no key does no harm.
    let key = match &state.admin {
        AdminAccess::Token(token) => token.expose(),
        AdminAccess::Open | AdminAccess::Closed => "",
    };
    let ticket = stream_ticket::issue(key, stream_ticket::unix_now());
    ([(header::CACHE_CONTROL, "no-store")], Json(json!({"ticket": ticket, "expires_in": stream_ticket::TICKET_TTL_SECS})))
        .into_response()
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

/// The active platform's name and the kinds of id it links to contacts: each is listed per
/// contact as `{platform}_{kind}_id` (null until the platform gave one).
#[derive(Clone, Copy, Debug)]
pub struct PlatformLinks {
    pub platform: &'static str,
    pub kinds: &'static [&'static str],
}

/// `GET /api/conversations`: one row per contact with the ids the platform gave it.
pub async fn list_conversations(State(state): State<AppState>) -> Response {
    let links = state.platform_links;
    match state.store.conversations(500).await {
        Ok(list) => {
            let rows: Vec<Value> = list
                .into_iter()
                .map(|summary| {
                    let mut row = serde_json::to_value(&summary).unwrap_or(Value::Null);
                    for kind in links.kinds {
                        let value = summary.links.get(&(links.platform.to_string(), kind.to_string()));
                        row[format!("{}_{kind}_id", links.platform)] = json!(value);
                    }
                    row
                })
                .collect();
            Json(json!({"platform": links.platform, "conversations": rows})).into_response()
        }
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
pub async fn get_message(State(state): State<AppState>, Path(id): Path<BridgeMessageId>) -> Response {
    match state.store.message(&id).await {
        Ok(m) => Json(message_json(m)).into_response(),
        Err(StoreError::NotFound(what)) => (StatusCode::NOT_FOUND, what).into_response(),
        Err(e) => unavailable(e),
    }
}

/// `POST /api/messages/{id}/retry`: a `failed` message goes back into the outbox, due now.
pub async fn retry_message(State(state): State<AppState>, Path(id): Path<BridgeMessageId>) -> Response {
    match state.store.message(&id).await {
        Err(StoreError::NotFound(what)) => return (StatusCode::NOT_FOUND, what).into_response(),
        Err(e) => return unavailable(e),
        Ok(m) if m.status != MessageStatus::Failed => {
            return (
                StatusCode::CONFLICT,
                Json(json!({"error": format!("message is {}, only failed messages are retried", m.status)})),
            )
                .into_response();
        }
        Ok(_) => {}
    }
    match state.store.retry_message(&id).await {
        Ok(true) => {
            state.signals.queued(&id);
            Json(json!({"id": id, "status": "stored", "retried": true})).into_response()
        }
        Ok(false) => (StatusCode::CONFLICT, Json(json!({"error": "nothing to retry"}))).into_response(),
        Err(e) => unavailable(e),
    }
}

/// `GET /api/health`: outbox depth, outcomes, delivery latency, token state, error counts.
pub async fn health(State(state): State<AppState>) -> Response {
    match state.store.health_figures().await {
        Ok(h) => {
            let now = crate::store::now_ms();
            Json(json!({
                "outbox_depth": h.outbox_depth,
                "messages": {"stored": h.stored, "delivered": h.delivered, "failed": h.failed},
                "latency_ms": {"p50": h.latency_p50_ms, "p95": h.latency_p95_ms, "samples": h.latency_samples},
                "token": {"cached": h.token_expires_at.is_some_and(|t| t > now),
                          "expires_in_secs": h.token_expires_at.map(|t| ((t - now) / 1000).max(0))},
                "errors": h.errors.iter().map(|(code, count)| json!({"code": code, "count": count})).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// `GET /api/stream`: server-sent events, one `message` event per message stored or changed.
/// Ends when the bridge shuts down: an endless response would hold the graceful shutdown forever.
pub async fn stream(State(state): State<AppState>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt;
    let changes = tokio_stream_from(state.signals.subscribe());
    let store = state.store.clone();
    let events = changes.then(move |id| {
        let store = store.clone();
        async move {
            let message = store.message(&id).await.ok()?;
            Event::default().event("message").json_data(message_json(message)).ok()
        }
    });
    let events = events.filter_map(|e| async move { e.map(Ok::<_, std::convert::Infallible>) });
    let shutdown = state.shutdown.clone();
    let events = events.take_until(async move { shutdown.triggered().await });
    Sse::new(events).keep_alive(KeepAlive::new().interval(state.stream_keep_alive)).into_response()
}

/// Message ids from a broadcast receiver; a lagging subscriber skips what it missed.
fn tokio_stream_from(rx: tokio::sync::broadcast::Receiver<BridgeMessageId>) -> impl futures_util::Stream<Item = BridgeMessageId> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(id) => return Some((id, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
