//! WeChat's webhook: the URL check (GET) and message pushes (POST), plaintext, compatible and
//! safe mode (`wechat-api.md` §1–§3). Verified, parsed and stored before `success` is answered.
//!
//! `verify_and_parse` is the whole check-decrypt-parse sequence as a pure function (no store, no
//! clock of its own), so property tests and fuzzers can drive it; the handlers add the store.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::crypto::{CryptoError, MessageCrypto};
use super::media_link::MediaLinks;
use super::message::{self, Push};
use super::openid::OpenId;
use super::signature;
use crate::metrics::{Rejection, mark_rejections};
use crate::relay::{Relay, inbound};
use crate::store::{Accepted, RequestNonce, StoreError};

/// The channel's name in the store (contacts, dedup keys, nonces).
pub const CHANNEL: &str = "wechat";

/// What the webhook needs to know about the Official Account.
pub struct WeChatWebhook {
    pub token: String,
    pub crypto: Option<MessageCrypto>,
    pub max_timestamp_skew_secs: u64,
    /// With an AES key: accept plaintext pushes too (only while switching WeChat's console).
    pub allow_plaintext: bool,
    /// Replies allowed in the 48-hour window a message opens.
    pub window_quota: u32,
}

impl std::fmt::Debug for WeChatWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeChatWebhook").field("aes", &self.crypto.is_some()).finish_non_exhaustive()
    }
}

/// Why a push was refused; each maps to one HTTP status and stores nothing.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("missing query parameter {0}")]
    MissingParameter(&'static str),
    #[error("signature does not match")]
    BadSignature,
    #[error("msg_signature does not match")]
    BadMsgSignature,
    #[error("timestamp is outside the allowed skew")]
    StaleTimestamp,
    #[error("encrypted message is for another app id")]
    WrongAppId,
    #[error("encrypted push, but WECHAT_ENCODING_AES_KEY is not configured")]
    NoAesKey,
    #[error("plaintext push refused: an AES key is configured (WECHAT_ALLOW_PLAINTEXT=true accepts them)")]
    PlaintextRefused,
    #[error("timestamp and nonce were used before (replay)")]
    Replay,
    #[error("cannot decrypt: {0}")]
    Decrypt(CryptoError),
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("unsupported content type {0}")]
    ContentType(String),
    #[error("cannot store the message: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// What the webhook refuses with, as `bridge_webhook_rejections_total` names it.
const REJECTIONS: &[&str] = &["signature", "stale", "replay", "malformed", "content_type", "decrypt", "plaintext", "too_large"];

impl WebhookError {
    /// The rejection's reason (one of [`REJECTIONS`]), or `None` for a 5xx.
    fn rejection(&self) -> Option<Rejection> {
        Some(Rejection(match self {
            WebhookError::MissingParameter(_) | WebhookError::Malformed(_) => "malformed",
            // A push for another app id is not ours: it fails authentication like a bad signature.
            WebhookError::BadSignature | WebhookError::BadMsgSignature | WebhookError::WrongAppId => "signature",
            WebhookError::StaleTimestamp => "stale",
            WebhookError::Replay => "replay",
            WebhookError::NoAesKey | WebhookError::Decrypt(_) => "decrypt",
            WebhookError::PlaintextRefused => "plaintext",
            WebhookError::ContentType(_) => "content_type",
            WebhookError::Store(_) => return None,
        }))
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let status = match &self {
            WebhookError::MissingParameter(_)
            | WebhookError::Malformed(_)
            | WebhookError::Decrypt(_)
            | WebhookError::NoAesKey => StatusCode::BAD_REQUEST,
            WebhookError::BadSignature
            | WebhookError::BadMsgSignature
            | WebhookError::StaleTimestamp
            | WebhookError::WrongAppId
            | WebhookError::PlaintextRefused
            | WebhookError::Replay => StatusCode::UNAUTHORIZED,
            WebhookError::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebhookError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "wechat push not stored");
        } else {
            tracing::warn!(error = %self, status = status.as_u16(), "wechat request rejected");
        }
        let rejection = self.rejection();
        let response = (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], self.to_string()).into_response();
        match rejection {
            Some(rejection) => rejection.on(response),
            None => response,
        }
    }
}

/// Query string of both GET and POST (§1, §2.1).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct PushQuery {
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub echostr: Option<String>,
    pub encrypt_type: Option<String>,
    pub msg_signature: Option<String>,
}

/// What the webhook's handlers share: the settings, the relay core, the media link signer.
#[derive(Clone, Debug)]
struct WebhookState {
    hook: Arc<WeChatWebhook>,
    relay: Relay,
    media_links: Option<Arc<MediaLinks>>,
}

/// `GET/POST /webhooks/wechat` and the reference integration's alias `/weChatEvent`.
pub fn routes<S: Clone + Send + Sync + 'static>(
    hook: WeChatWebhook,
    relay: Relay,
    media_links: Option<Arc<MediaLinks>>,
) -> Router<S> {
    const ROUTES: [&str; 2] = ["/webhooks/wechat", "/weChatEvent"];
    relay.signals.metrics().webhook_routes(&ROUTES, REJECTIONS);
    let state = WebhookState { hook: Arc::new(hook), relay, media_links };
    let push = get(verify_wechat_url).post(receive_wechat_push);
    Router::new()
        .route(ROUTES[0], push.clone())
        .route(ROUTES[1], push)
        .route_layer(axum::middleware::map_response(mark_rejections))
        .with_state(state)
}

/// `GET /webhooks/wechat`: WeChat's URL check. The echostr is plaintext in every mode for an
/// Official Account (§1, EasyWeChat #2983), answered as is, without quotes or newline.
async fn verify_wechat_url(State(state): State<WebhookState>, Query(q): Query<PushQuery>) -> Result<Response, WebhookError> {
    let hook = &state.hook;
    let signature_param = q.signature.as_deref().ok_or(WebhookError::MissingParameter("signature"))?;
    let timestamp = q.timestamp.as_deref().ok_or(WebhookError::MissingParameter("timestamp"))?;
    let nonce = q.nonce.as_deref().ok_or(WebhookError::MissingParameter("nonce"))?;
    let echostr = q.echostr.ok_or(WebhookError::MissingParameter("echostr"))?;
    if !signature::verify(signature_param, &[&hook.token, timestamp, nonce]) {
        return Err(WebhookError::BadSignature);
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], echostr).into_response())
}

/// Checks a push the way WeChat signs it, decrypts it in safe mode and parses it: everything
/// before the store, as a pure function of the request and the clock (`now_secs`).
/// `content_type` is the request's header, if any (a value that is not text counts as empty).
pub fn verify_and_parse(
    hook: &WeChatWebhook,
    q: &PushQuery,
    content_type: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<Push, WebhookError> {
    let timestamp = q.timestamp.as_deref().ok_or(WebhookError::MissingParameter("timestamp"))?;
    let nonce = q.nonce.as_deref().ok_or(WebhookError::MissingParameter("nonce"))?;
    let encrypted = q.encrypt_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("aes"));

    // `signature` authenticates the sender in every mode (§1); in safe mode `msg_signature`
    // additionally covers the ciphertext (§3.4). Neither may stand in for the other.
    match q.signature.as_deref() {
        Some(sig) if signature::verify(sig, &[&hook.token, timestamp, nonce]) => {}
        Some(_) => return Err(WebhookError::BadSignature),
        None if encrypted => {}
        None => return Err(WebhookError::MissingParameter("signature")),
    }
    check_timestamp(timestamp, hook.max_timestamp_skew_secs, now_secs)?;
    check_content_type(content_type)?;
    let text = std::str::from_utf8(body).map_err(|_| WebhookError::Malformed("body is not UTF-8".into()))?;

    let xml = if encrypted {
        let crypto = hook.crypto.as_ref().ok_or(WebhookError::NoAesKey)?;
        let msg_signature = q.msg_signature.as_deref().ok_or(WebhookError::MissingParameter("msg_signature"))?;
        let envelope = message::parse_encrypted_envelope(text).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        let encrypt = envelope.encrypt.ok_or_else(|| WebhookError::Malformed("no Encrypt element".into()))?;
        if !signature::verify(msg_signature, &[&hook.token, timestamp, nonce, &encrypt]) {
            return Err(WebhookError::BadMsgSignature);
        }
        crypto.decrypt(&encrypt).map_err(|e| match e {
            CryptoError::AppIdMismatch { .. } => WebhookError::WrongAppId,
            other => WebhookError::Decrypt(other),
        })?
    } else if hook.crypto.is_some() && !hook.allow_plaintext {
        // `signature` covers only token, timestamp and nonce, not the body (§1): anyone who saw
        // one push URL could post any text as anyone until the timestamp goes stale. With an AES
        // key, only a body under `msg_signature` is trusted.
        return Err(WebhookError::PlaintextRefused);
    } else {
        text.to_string()
    };
    let push = message::parse(&xml).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    // The sender becomes a contact and the recipient of replies: only a well-formed OpenID.
    OpenId::parse(&push.from_user_name).map_err(|e| WebhookError::Malformed(format!("FromUserName: {e}")))?;
    Ok(push)
}

/// `POST /webhooks/wechat`: a message push. Answers `success` once the message and its outbox
/// job are committed; a retry of a message already stored answers `success` and changes nothing.
async fn receive_wechat_push(
    State(state): State<WebhookState>,
    Query(q): Query<PushQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebhookError> {
    let hook: &Arc<WeChatWebhook> = &state.hook;
    let now_secs = crate::store::now_ms() / 1000;
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or(""));
    let push = verify_and_parse(hook, &q, content_type, &body, now_secs)?;
    let (timestamp, nonce) = (q.timestamp.as_deref().unwrap_or_default(), q.nonce.as_deref().unwrap_or_default());
    let mut inbound_msg = super::inbound::to_inbound(&push);
    // Agents' clients get a signed bridge link: WeChat's media/get needs the access token.
    if let (Some(links), Some(media)) = (&state.media_links, inbound_msg.media.as_mut())
        && let Some(id) = &media.media_id
    {
        media.url = Some(links.url(id, crate::store::now_ms() / 1000));
    }
    let dedup_key = push.dedup_key();
    let window = super::inbound::window_change(&push, crate::store::now_ms(), hook.window_quota as i64);
    // A (timestamp, nonce) pair is good for one push, on every instance: a replay with another
    // body is refused; WeChat's own retry of a stored push is a duplicate and answered `success`.
    let nonce_value = format!("{timestamp}:{nonce}");
    let nonce = RequestNonce { value: &nonce_value, retain_ms: nonce_retention_ms(hook.max_timestamp_skew_secs) };
    let accepted =
        inbound::accept(&state.relay.store, &state.relay.signals, CHANNEL, &dedup_key, &inbound_msg, window, Some(nonce)).await;
    match accepted.map_err(|e| match e {
        StoreError::Replay => WebhookError::Replay,
        other => WebhookError::Store(other),
    })? {
        Accepted::New(id) => tracing::info!(bridge_message_id = %id, msgtype = %inbound_msg.msg_type, "wechat push stored"),
        Accepted::Duplicate(id) => tracing::info!(bridge_message_id = %id, "wechat retry of a stored push ignored"),
    }
    // "success" stops WeChat's retries; it never needs encryption (§3.5, §4.1).
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "success").into_response())
}

/// How long a nonce is remembered: a push whose timestamp is up to `skew` in the future stays
/// acceptable for `2 × skew` after it arrived. With the timestamp check off, one day.
fn nonce_retention_ms(max_skew_secs: u64) -> i64 {
    let secs = if max_skew_secs == 0 { 24 * 3600 } else { 2 * max_skew_secs };
    secs as i64 * 1000
}

/// Rejects replays of old pushes: WeChat stamps each request with the current time.
fn check_timestamp(timestamp: &str, max_skew_secs: u64, now: i64) -> Result<(), WebhookError> {
    if max_skew_secs == 0 {
        return Ok(());
    }
    let ts: i64 = timestamp.parse().map_err(|_| WebhookError::Malformed("timestamp is not a number".into()))?;
    if now.abs_diff(ts) > max_skew_secs {
        return Err(WebhookError::StaleTimestamp);
    }
    Ok(())
}

/// WeChat sends `text/xml`; accept any XML or plain text type (or none), refuse the rest.
fn check_content_type(content_type: Option<&str>) -> Result<(), WebhookError> {
    let Some(value) = content_type else { return Ok(()) };
    let value = value.to_ascii_lowercase();
    if value.contains("xml") || value.starts_with("text/plain") || value.is_empty() {
        Ok(())
    } else {
        Err(WebhookError::ContentType(value))
    }
}
