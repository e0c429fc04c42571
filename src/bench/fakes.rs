//! Fast stand-ins for the remote APIs the bridge calls, in the benchmark's process: they answer
//! at once, check nothing and only note the arrival of each numbered message. (The simulators in
//! `wechat::sim` and `vonage::sim` check everything and keep every request; here that work
//! would be measured instead of the bridge's.)
//!
//! - WeChat: `cgi-bin/token`, `stable_token` (one fixed token), `message/custom/send` (an
//!   agent's message arrived), anything else `{"errcode":0}`.
//! - The webhook platform: any POST is a customer message (`bench #N` in `data.content`) or a
//!   delivery report (`message.status`).
//! - Vonage: users, conversations and members get ids made from their names, so the benchmark
//!   knows each customer's conversation without asking; events are customer messages or reports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::track::{self, Tracker};

/// The access token the WeChat fake hands out.
pub const ACCESS_TOKEN: &str = "BENCH_ACCESS_TOKEN";

/// Serves `router` on an ephemeral loopback port.
pub async fn serve(router: Router) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("bench: a fake server stopped: {e}");
        }
    });
    Ok(addr)
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

const OK: &str = r#"{"errcode":0,"errmsg":"ok"}"#;

/// The WeChat API.
pub fn wechat(tracker: Arc<Tracker>) -> Router {
    let token = || async { json(StatusCode::OK, format!(r#"{{"access_token":"{ACCESS_TOKEN}","expires_in":7200}}"#)) };
    Router::new()
        .route("/cgi-bin/token", get(token).post(token))
        .route("/cgi-bin/stable_token", get(token).post(token))
        .route("/cgi-bin/message/custom/send", post(custom_send))
        .fallback(|| async { json(StatusCode::OK, OK.into()) })
        .with_state(tracker)
}

async fn custom_send(State(tracker): State<Arc<Tracker>>, body: Bytes) -> Response {
    match track::seq_in(&body) {
        Some(seq) => {
            if tracker.arrive(seq) {
                tracker.counters.outbound_arrived.fetch_add(1, Ordering::Relaxed);
            }
        }
        None => {
            tracker.counters.other_requests.fetch_add(1, Ordering::Relaxed);
        }
    }
    json(StatusCode::OK, OK.into())
}

/// A customer message or a delivery report reached the platform.
fn platform_event(tracker: &Tracker, body: &[u8]) {
    let counters = &tracker.counters;
    if let Some(seq) = track::seq_in(body) {
        if tracker.arrive(seq) {
            counters.inbound_arrived.fetch_add(1, Ordering::Relaxed);
        }
    } else if track::contains(body, b"message.status") || track::contains(body, b"custom:wechat:status") {
        counters.statuses.fetch_add(1, Ordering::Relaxed);
    } else {
        counters.other_requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// The app of the webhook platform: `POST /events` (signatures are not checked).
pub fn webhook_receiver(tracker: Arc<Tracker>) -> Router {
    Router::new()
        .route(
            "/events",
            post(|State(tracker): State<Arc<Tracker>>, body: Bytes| async move {
                platform_event(&tracker, &body);
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(tracker)
}

/// The id the Vonage fake gives the conversation named `wechat_<openid>`.
pub fn conversation_id(openid: &str) -> String {
    format!("CON-wechat_{openid}")
}

/// The member id of the agent whose messages the benchmark sends through Vonage.
pub const AGENT_MEMBER: &str = "MEM-bench-agent";

#[derive(Clone)]
struct VonageState {
    tracker: Arc<Tracker>,
    next_event: Arc<AtomicU64>,
}

/// The Vonage Conversation API (JWTs are not checked).
pub fn vonage(tracker: Arc<Tracker>) -> Router {
    let state = VonageState { tracker, next_event: Arc::new(AtomicU64::new(1)) };
    Router::new()
        .route("/v1/users", post(|body: Bytes| async move { created("USR", &body) }))
        .route("/v1/conversations", post(|body: Bytes| async move { created("CON", &body) }))
        .route(
            "/v1/conversations/{id}/members",
            post(|Path(id): Path<String>| async move {
                json(StatusCode::CREATED, format!(r#"{{"id":"MEM-{}","state":"JOINED"}}"#, id.trim_start_matches("CON-")))
            }),
        )
        .route("/v1/conversations/{id}/events", post(vonage_event))
        .fallback(|| async {
            json(StatusCode::NOT_FOUND, r#"{"code":"http:error:not-found","detail":"not in the benchmark's fake"}"#.into())
        })
        .with_state(state)
}

/// `{"id": "<prefix>-<name>"}` for a created user or conversation.
fn created(prefix: &str, body: &[u8]) -> Response {
    let name = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["name"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unnamed".into());
    json(StatusCode::CREATED, format!(r#"{{"id":"{prefix}-{name}","name":"{name}"}}"#))
}

async fn vonage_event(State(state): State<VonageState>, body: Bytes) -> Response {
    platform_event(&state.tracker, &body);
    let id = state.next_event.fetch_add(1, Ordering::Relaxed);
    json(StatusCode::CREATED, format!(r#"{{"id":{id},"timestamp":"2024-01-01T00:00:00.000Z"}}"#))
}
