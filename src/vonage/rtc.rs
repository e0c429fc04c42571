//! Vonage's RTC event webhook (`vonage-api.md` §3, §4): signed-webhook check, then agents'
//! messages for WeChat are stored with their outbox job before the 200; everything else,
//! including the bridge's own events coming back, is answered 200 and ignored.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::webhook::{self, RtcEvent, SignatureError};
use crate::metrics::{Rejection, mark_rejections};
use crate::relay::{Relay, outbound};
use crate::store::Accepted;

/// The webhook's settings.
#[derive(Default)]
pub struct VonageWebhook {
    /// When set, every request must carry a valid signed-webhook JWT.
    pub signature_secret: Option<String>,
    /// Single-conversation mode: `to` names the WeChat user.
    pub shared_conversation: Option<String>,
    /// The channel whose contacts agents write to (its name in the store).
    pub channel: &'static str,
}

impl std::fmt::Debug for VonageWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VonageWebhook").field("signed", &self.signature_secret.is_some()).finish_non_exhaustive()
    }
}

/// Why an RTC request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RtcError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("unsupported content type {0}")]
    ContentType(String),
    #[error("cannot store the event: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// What the webhook refuses with, as `bridge_webhook_rejections_total` names it.
const REJECTIONS: &[&str] = &["signature", "stale", "malformed", "content_type", "too_large"];

impl IntoResponse for RtcError {
    fn into_response(self) -> Response {
        let (status, reason) = match &self {
            RtcError::Signature(SignatureError::Stale | SignatureError::OutsideValidity) => (StatusCode::UNAUTHORIZED, "stale"),
            RtcError::Signature(_) => (StatusCode::UNAUTHORIZED, "signature"),
            RtcError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
            RtcError::ContentType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "content_type"),
            // 5xx makes Vonage retry (§3.2), which is what a full disk or a locked database needs.
            RtcError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, ""),
        };
        tracing::warn!(error = %self, status = status.as_u16(), "rtc event rejected");
        let response = (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], self.to_string()).into_response();
        if status.is_client_error() { Rejection(reason).on(response) } else { response }
    }
}

#[derive(Clone, Debug)]
struct RtcState {
    hook: Arc<VonageWebhook>,
    relay: Relay,
}

/// `POST /webhooks/vonage/rtc` and the reference integration's alias `/rtcEvent`.
pub fn routes<S: Clone + Send + Sync + 'static>(hook: VonageWebhook, relay: Relay) -> Router<S> {
    const ROUTES: [&str; 2] = ["/webhooks/vonage/rtc", "/rtcEvent"];
    relay.signals.metrics().webhook_routes(&ROUTES, REJECTIONS);
    let state = RtcState { hook: Arc::new(hook), relay };
    Router::new()
        .route(ROUTES[0], post(receive_rtc_event))
        .route(ROUTES[1], post(receive_rtc_event))
        .route_layer(axum::middleware::map_response(mark_rejections))
        .with_state(state)
}

/// `POST /webhooks/vonage/rtc` (and `/rtcEvent`).
async fn receive_rtc_event(State(state): State<RtcState>, headers: HeaderMap, body: Bytes) -> Result<Response, RtcError> {
    let hook = &state.hook;
    let store = &state.relay.store;
    if let Some(secret) = &hook.signature_secret {
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let now = (crate::store::now_ms() / 1000) as u64;
        webhook::verify_signature(auth, &body, secret, now)?;
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && !ct.to_ascii_lowercase().contains("json")
    {
        return Err(RtcError::ContentType(ct.to_string()));
    }
    let event: serde_json::Value = serde_json::from_slice(&body).map_err(|e| RtcError::Malformed(e.to_string()))?;
    let request = match webhook::classify(&event).map_err(RtcError::Malformed)? {
        RtcEvent::Relay(request) => request,
        RtcEvent::Ignore(why) => return Ok(ignored(why)),
    };
    // Loop guard (§3.2): events created by any of the bridge's own members are echoes.
    if let Some(member) = &request.from_member
        && store.has_link(super::PLATFORM, super::MEMBER, member).await?
    {
        return Ok(ignored("event from the bridge's own member"));
    }
    // Who receives it. Per-user mode: the conversation decides, and a `to` naming anyone else
    // (an agent in conversation B writing to the customer of conversation A) is refused. Shared
    // mode: `to` decides, but only for events of the shared conversation.
    let contact = match (&request.to, &hook.shared_conversation) {
        (None, None) => store.contact_by_link(super::PLATFORM, super::CONVERSATION, &request.conversation_id).await?,
        (Some(openid), None) => {
            match store.contact_by_link(super::PLATFORM, super::CONVERSATION, &request.conversation_id).await? {
                Some(contact) if &contact.channel_id == openid => Some(contact),
                Some(_) => {
                    tracing::warn!(conversation = %request.conversation_id, event = %request.event_id,
                    "rtc event's `to` is not this conversation's WeChat user; ignored, nothing sent");
                    return Ok(ignored("`to` does not match the conversation's WeChat user"));
                }
                None => None,
            }
        }
        (Some(openid), Some(shared)) if *shared == request.conversation_id => {
            store.contact_by_channel_id(hook.channel, openid).await?
        }
        (Some(_), Some(_)) => return Ok(ignored("event outside the shared conversation")),
        (None, Some(_)) => return Ok(ignored("no `to` in the shared conversation")),
    };
    let Some(contact) = contact else {
        return Ok(ignored("no WeChat contact for this conversation or OpenID"));
    };
    match outbound::accept(
        &state.relay.store,
        &state.relay.signals,
        hook.channel,
        super::PLATFORM,
        &contact,
        &request.conversation_id,
        &request.event_id,
        request.message,
    )
    .await?
    {
        Accepted::New(id) => tracing::info!(bridge_message_id = %id, event = %request.event_id, "outbound message stored"),
        Accepted::Duplicate(id) => tracing::info!(bridge_message_id = %id, "redelivered rtc event ignored"),
    }
    Ok((StatusCode::OK, "stored").into_response())
}

fn ignored(why: &'static str) -> Response {
    tracing::debug!(why, "rtc event ignored");
    (StatusCode::OK, "ignored").into_response()
}
