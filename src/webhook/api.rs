//! `/api/v1`, the REST API apps send messages through (DESIGN.md "Platforms → webhook"):
//! `POST /api/v1/messages` stores a message for a contact (202 once stored, through the relay's
//! outbound accept), `GET /api/v1/messages/{id}` tells its status, `GET /api/v1/openapi.json` is
//! the OpenAPI 3.1 document generated from the types and handlers below. Errors are RFC 9457
//! problem details. A request that is refused stores nothing.
//!
//! `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header, `reference/webhooks.md` §7): a
//! repeat of a request that stored a message, with the same body, gets the first answer again and
//! sends nothing; with another body, 422; while the first is still being handled, 409. Keys are
//! kept 24 hours, recorded in the transaction that stores the message. Refusals (4xx) are not
//! recorded: a request refused for a cause since fixed may be sent again with the same key.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{OpenApi, ToSchema};

use super::PLATFORM;
use crate::config::Secret;
use crate::metrics::{Rejection, mark_rejections};
use crate::relay::ids::BridgeMessageId;
use crate::relay::message::{Direction, MessageStatus, OutboundMessage, OutboundRecord};
use crate::relay::{Channel, DeliveryError, Relay, outbound};
use crate::store::{Accepted, IdempotencyKey, StoreError, StoredResponse};

/// Longest `client_reference`, in characters.
pub const MAX_CLIENT_REFERENCE: usize = 256;
/// Longest `Idempotency-Key`, in characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// The scope of this API's keys in the store.
const KEY_SCOPE: &str = "webhook:POST /api/v1/messages";

/// What the API's handlers share.
#[derive(Clone)]
pub struct MessagesApi {
    relay: Relay,
    channel: Arc<dyn Channel>,
    channel_name: &'static str,
    token_hash: [u8; 32],
    /// Keys whose first request is being handled now (409 for a second one).
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for MessagesApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagesApi").field("channel", &self.channel_name).finish_non_exhaustive()
    }
}

impl MessagesApi {
    pub fn new(relay: Relay, channel: Arc<dyn Channel>, channel_name: &'static str, token: Secret) -> Self {
        Self {
            relay,
            channel,
            channel_name,
            token_hash: Sha256::digest(token.expose().as_bytes()).into(),
            in_flight: Arc::default(),
        }
    }

    /// Compares hashes in constant time: neither the token nor its length shows in the timing.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .unwrap_or_default();
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        !presented.is_empty() && bool::from(hash.ct_eq(&self.token_hash))
    }
}

/// `/api/v1/messages`, `/api/v1/messages/{id}`, `/api/v1/openapi.json`.
pub fn routes<S: Clone + Send + Sync + 'static>(api: MessagesApi) -> Router<S> {
    const SEND: &str = "/api/v1/messages";
    const GET: &str = "/api/v1/messages/{id}";
    let metrics = api.relay.signals.metrics();
    metrics.webhook_routes(&[SEND], SEND_REJECTIONS);
    metrics.webhook_routes(&[GET], GET_REJECTIONS);
    Router::new()
        .route(SEND, post(send_message))
        .route(GET, get(get_message))
        .route_layer(axum::middleware::map_response(mark_rejections))
        .route("/api/v1/openapi.json", get(openapi_json))
        .with_state(api)
}

/// The OpenAPI document of `/api/v1`, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wechat-bridge /api/v1",
        description = "Send messages to WeChat contacts and follow their delivery (BRIDGE_PLATFORM=webhook). \
                       Idempotency-Key: a repeat with the same body within 24 hours gets the first answer again; \
                       another body 422; while the first is in progress 409."
    ),
    paths(send_message, get_message),
    components(schemas(SendMessage, MessageType, MediaRef, MessageAccepted, MessageState, DeliveryState, ErrorDetail, Problem)),
    modifiers(&BearerToken)
)]
pub struct ApiDoc;

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("PLATFORM_API_TOKEN")).build(),
            ),
        );
    }
}

/// A message for a contact: a text (`content`), media (`msgtype` image, voice or video with
/// `media.url` or `media.media_id`), or a link card (`msgtype` link with `title` and `url`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct SendMessage {
    /// The contact's id on the channel (WeChat: OpenID). They must have written before.
    pub to: String,
    /// `text` when omitted.
    #[serde(default)]
    pub msgtype: Option<MessageType>,
    /// The text (`text`).
    #[serde(default)]
    pub content: Option<String>,
    /// The media to send (`image`, `voice`, `video`).
    #[serde(default)]
    pub media: Option<MediaRef>,
    /// The card's title (`link`).
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Where the card leads (`link`).
    #[serde(default)]
    pub url: Option<String>,
    /// The card's picture (`link`).
    #[serde(default)]
    pub pic_url: Option<String>,
    /// Your own reference (at most 256 characters), given back in `message.status`.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub client_reference: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Text,
    Image,
    Voice,
    Video,
    Link,
}

/// Media to send: a URL the bridge fetches and uploads, or a media id the channel knows.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MediaRef {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub media_id: Option<String>,
}

/// The answer to a stored message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageAccepted {
    /// The bridge message id.
    pub id: String,
    pub status: DeliveryState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// In the outbox: not sent yet, or being retried.
    Stored,
    Delivered,
    /// Failed for good (see `error`).
    Failed,
}

impl From<MessageStatus> for DeliveryState {
    fn from(status: MessageStatus) -> Self {
        match status {
            MessageStatus::Stored => DeliveryState::Stored,
            MessageStatus::Delivered => DeliveryState::Delivered,
            MessageStatus::Failed => DeliveryState::Failed,
        }
    }
}

/// A message's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageState {
    pub id: String,
    pub status: DeliveryState,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// The last error (the reason of a failure, or of the last retry).
    pub error: Option<ErrorDetail>,
    pub client_reference: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once delivered.
    pub delivered_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The channel's error code (WeChat errcode, e.g. 45015), when there is one.
    pub code: Option<String>,
    pub message: String,
}

/// An RFC 9457 problem (`application/problem+json`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The channel's error code, for a message the channel would refuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A refusal: its status, a short type name, a title and the detail.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    code: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self { status, kind, title, detail: detail.into(), code: None }
    }

    fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-message", "The message is invalid", detail)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "api/v1: the store failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The database cannot take the request", "try again later")
    }
}

/// What `/api/v1/messages` refuses with, as `bridge_webhook_rejections_total` names it.
const SEND_REJECTIONS: &[&str] = &[
    "unauthorized",
    "content_type",
    "malformed",
    "invalid",
    "idempotency_key",
    "idempotency_in_use",
    "idempotency_reused",
    "unknown_contact",
    "reply_window",
    "too_large",
];
/// What `/api/v1/messages/{id}` refuses with.
const GET_REJECTIONS: &[&str] = &["unauthorized", "not_found"];

impl ApiError {
    /// The refusal's reason in `bridge_webhook_rejections_total`: its kind, in the metric's words.
    fn rejection(&self) -> Rejection {
        match self.kind {
            "unauthorized" => Rejection("unauthorized"),
            "unsupported-media-type" => Rejection("content_type"),
            "malformed" => Rejection("malformed"),
            "invalid-message" => Rejection("invalid"),
            "invalid-idempotency-key" => Rejection("idempotency_key"),
            "idempotency-key-in-use" => Rejection("idempotency_in_use"),
            "idempotency-key-reused" => Rejection("idempotency_reused"),
            "unknown-contact" => Rejection("unknown_contact"),
            "reply-window" => Rejection("reply_window"),
            "unknown-message" => Rejection("not_found"),
            _ => Rejection::of_status(self.status),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let rejection = self.rejection();
        if self.status.is_client_error() {
            tracing::info!(status = self.status.as_u16(), kind = self.kind, detail = %self.detail, "api/v1 request refused");
        }
        let problem = Problem {
            kind: format!("urn:wechat-bridge:problem:{}", self.kind),
            title: self.title.into(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
        };
        let body = serde_json::to_string(&problem).expect("problem serializes");
        rejection.on((self.status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response())
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized",
        "a valid bearer token (PLATFORM_API_TOKEN) is required",
    )
}

fn accepted_body(id: &str) -> String {
    serde_json::to_string(&MessageAccepted { id: id.to_string(), status: DeliveryState::Stored }).expect("serializes")
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Send a message to a contact.
#[utoipa::path(
    post,
    path = "/api/v1/messages",
    request_body(content = SendMessage, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header,
         description = "1-255 characters [A-Za-z0-9._:-], quoted or not; kept 24 hours")
    ),
    responses(
        (status = 202, description = "Stored; delivered by the outbox", body = MessageAccepted),
        (status = 400, description = "Malformed JSON, an invalid message or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The contact never wrote", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The reply window is closed (code 45015) or its quota used (45047); or the Idempotency-Key was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database cannot take the write", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
async fn send_message(State(api): State<MessagesApi>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    if !api.authorized(&headers) {
        return Err(unauthorized());
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !is_json(content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the message as application/json",
        ));
    }
    let key = idempotency_key(&headers)?;
    let body_hash = hex::encode(Sha256::digest(&body));
    let _claim = match &key {
        Some(key) => {
            let claim = InFlight::claim(&api.in_flight, key).ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency-key-in-use",
                    "A request is outstanding for this Idempotency-Key",
                    "retry once the first request is answered",
                )
            })?;
            if let Some(first) = api.relay.store.idempotent_response(KEY_SCOPE, key).await? {
                return replay(first, &body_hash);
            }
            Some(claim)
        }
        None => None,
    };
    let request: SendMessage = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed", "Malformed JSON", e.to_string()))?;
    let (to, message, client_reference) = validate(request)?;
    let contact = api.relay.store.contact_by_channel_id(api.channel_name, &to).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-contact",
            "Unknown contact",
            format!("{to} has never written to the account"),
        )
    })?;
    if let Err(DeliveryError::Permanent { code, reason }) = api.channel.check_window(&contact, api.channel.split(&message).len())
    {
        return Err(ApiError {
            code: code.map(|c| c.to_string()),
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "reply-window", "The channel would refuse this message", reason)
        });
    }
    let record = OutboundRecord {
        conversation_id: contact.channel_id.clone(),
        // Always a fresh id: the key's table decides what is a repeat (and forgets after 24 h),
        // so a key reused later with another body is a new message, never a silent duplicate.
        platform_event_id: uuid::Uuid::new_v4().to_string(),
        message,
        client_reference,
        more: Vec::new(),
    };
    let idempotency = key.as_deref().map(|key| IdempotencyKey {
        scope: KEY_SCOPE,
        key,
        body_hash: &body_hash,
        response_status: StatusCode::ACCEPTED.as_u16(),
        response_body: accepted_body,
    });
    let relay = &api.relay;
    let accepted =
        outbound::accept_record(&relay.store, &relay.signals, api.channel_name, PLATFORM, &contact, &record, idempotency).await;
    let id = match accepted {
        Ok(Accepted::New(id) | Accepted::Duplicate(id)) => id,
        // Another instance stored a request with this key meanwhile: its answer, or 422.
        Err(StoreError::KeyTaken) => {
            let first = relay.store.idempotent_response(KEY_SCOPE, key.as_deref().unwrap_or_default()).await?;
            return first.map_or_else(|| Err(StoreError::KeyTaken.into()), |first| replay(first, &body_hash));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(bridge_message_id = %id, "api/v1: outbound message stored");
    Ok(json_response(StatusCode::ACCEPTED, accepted_body(&id)))
}

/// The first answer to an `Idempotency-Key`, for a repeat with the same body; 422 for another body.
fn replay(first: StoredResponse, body_hash: &str) -> Result<Response, ApiError> {
    if first.body_hash != body_hash {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency-Key is already used",
            "this key was used with another request body",
        ));
    }
    let mut response = json_response(StatusCode::from_u16(first.status).unwrap_or(StatusCode::ACCEPTED), first.body);
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}

/// A message's delivery status.
#[utoipa::path(
    get,
    path = "/api/v1/messages/{id}",
    params(("id" = String, Path, description = "The bridge message id from the 202")),
    responses(
        (status = 200, description = "The message's state", body = MessageState),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No message with this id was sent through this API", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
async fn get_message(State(api): State<MessagesApi>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    if !api.authorized(&headers) {
        return Err(unauthorized());
    }
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "unknown-message", "Unknown message", format!("no message {id}"));
    let record = match api.relay.store.message(&BridgeMessageId::from_raw(id.as_str())).await {
        Ok(record) if record.direction == Direction::Outbound && record.source == PLATFORM => record,
        Ok(_) | Err(StoreError::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    let client_reference = serde_json::from_str::<OutboundRecord>(&record.payload).ok().and_then(|r| r.client_reference);
    let state = MessageState {
        id: record.id.to_string(),
        status: record.status.into(),
        attempts: record.attempts,
        error: record.last_error.map(|message| ErrorDetail { code: record.error_code.map(|c| c.to_string()), message }),
        client_reference,
        created_at: super::event::rfc3339(record.created_at / 1000),
        delivered_at: record.delivered_at.map(|at| super::event::rfc3339(at / 1000)),
    };
    Ok(json_response(StatusCode::OK, serde_json::to_string(&state).expect("serializes")))
}

/// `GET /api/v1/openapi.json` (public).
async fn openapi_json() -> Response {
    json_response(StatusCode::OK, ApiDoc::openapi().to_json().expect("the OpenAPI document serializes"))
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The `Idempotency-Key`, as an sf-string (`"…"`) or a bare token; 400 when malformed.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else { return Ok(None) };
    let invalid =
        |detail: &str| ApiError::new(StatusCode::BAD_REQUEST, "invalid-idempotency-key", "Invalid Idempotency-Key", detail);
    if values.next().is_some() {
        return Err(invalid("send one Idempotency-Key header"));
    }
    let raw = value.to_str().map_err(|_| invalid("the key must be ASCII"))?.trim();
    let key = raw.strip_prefix('"').and_then(|k| k.strip_suffix('"')).unwrap_or(raw);
    let valid = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if !valid {
        return Err(invalid("1 to 255 characters of A-Z a-z 0-9 . _ : -"));
    }
    Ok(Some(key.to_string()))
}

/// The recipient, the message for the channel, and the client's reference; or why not.
fn validate(request: SendMessage) -> Result<(String, OutboundMessage, Option<String>), ApiError> {
    let to = request.to.trim().to_string();
    if to.is_empty() || to.len() > 128 {
        return Err(ApiError::invalid("`to` must be the contact's id (1 to 128 characters)"));
    }
    if request.client_reference.as_ref().is_some_and(|r| r.chars().count() > MAX_CLIENT_REFERENCE) {
        return Err(ApiError::invalid("`client_reference` is longer than 256 characters"));
    }
    let text = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let message = match request.msgtype.unwrap_or(MessageType::Text) {
        MessageType::Text => {
            OutboundMessage::text(text(request.content).ok_or_else(|| ApiError::invalid("a text needs `content`"))?)
        }
        kind @ (MessageType::Image | MessageType::Voice | MessageType::Video) => {
            let media = request.media.ok_or_else(|| ApiError::invalid("media needs `media.url` or `media.media_id`"))?;
            let (url, media_id) = (text(media.url), text(media.media_id));
            if url.is_none() && media_id.is_none() {
                return Err(ApiError::invalid("media needs `media.url` or `media.media_id`"));
            }
            if let Some(url) = &url {
                http_url(url, "media.url")?;
            }
            let msg_type = match kind {
                MessageType::Image => "image",
                MessageType::Voice => "voice",
                _ => "video",
            };
            OutboundMessage {
                msg_type: msg_type.into(),
                media_url: url,
                media_id,
                title: text(request.title),
                description: text(request.description),
                ..OutboundMessage::default()
            }
        }
        MessageType::Link => {
            let url = text(request.url).ok_or_else(|| ApiError::invalid("a link needs `url`"))?;
            http_url(&url, "url")?;
            let pic_url = text(request.pic_url);
            if let Some(pic) = &pic_url {
                http_url(pic, "pic_url")?;
            }
            OutboundMessage {
                msg_type: "news".into(),
                title: Some(text(request.title).ok_or_else(|| ApiError::invalid("a link needs `title`"))?),
                description: text(request.description),
                url: Some(url),
                pic_url,
                ..OutboundMessage::default()
            }
        }
    };
    Ok((to, message, request.client_reference))
}

fn http_url(url: &str, field: &str) -> Result<(), ApiError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("`{field}` must be an http(s) URL")))
    }
}

/// A key claimed while its first request is handled; released when dropped.
struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    fn claim(keys: &Arc<Mutex<HashSet<String>>>, key: &str) -> Option<Self> {
        let fresh = keys.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string());
        fresh.then(|| Self { keys: keys.clone(), key: key.to_string() })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_quoted_or_bare_and_validated() {
        let key = |v: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("idempotency-key", HeaderValue::from_str(v).unwrap());
            idempotency_key(&headers)
        };
        assert_eq!(key("\"8e03978e-40d5\"").unwrap().as_deref(), Some("8e03978e-40d5"));
        assert_eq!(key("abc:1.2_3").unwrap().as_deref(), Some("abc:1.2_3"));
        assert!(key("\"\"").is_err());
        assert!(key("has space").is_err());
        assert!(key(&"k".repeat(256)).is_err());
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }

    #[test]
    fn a_key_is_claimed_once_until_released() {
        let keys = Arc::default();
        let first = InFlight::claim(&keys, "k").unwrap();
        assert!(InFlight::claim(&keys, "k").is_none());
        drop(first);
        assert!(InFlight::claim(&keys, "k").is_some());
    }
}
