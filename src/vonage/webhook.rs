//! Vonage's RTC event webhook: signed-webhook verification and what each event means to the
//! bridge (`vonage-api.md` §3, §4).

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::event::{MESSAGE_EVENT_TYPE, STATUS_EVENT_TYPE};
use crate::relay::message::OutboundMessage;

/// How far a webhook's `iat` may be from now (§4: "an `iat` within a freshness window").
pub const MAX_AGE_SECS: u64 = 300;

/// Clock skew tolerated on `exp` and `nbf`.
const CLOCK_LEEWAY_SECS: u64 = 60;

/// Why a webhook was not accepted as coming from Vonage.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignatureError {
    #[error("missing Authorization: Bearer token")]
    Missing,
    #[error("invalid signed-webhook JWT: {0}")]
    Invalid(String),
    #[error("signed-webhook JWT is too old or from the future")]
    Stale,
    #[error("signed-webhook JWT has expired (exp) or is not valid yet (nbf)")]
    OutsideValidity,
    #[error("payload_hash does not match the body")]
    PayloadHash,
}

#[derive(Deserialize)]
struct Claims {
    iat: Option<u64>,
    exp: Option<u64>,
    nbf: Option<u64>,
    payload_hash: Option<String>,
}

/// Verifies `Authorization: Bearer <JWT>`: HS256 with the signature secret, a recent `iat`, and
/// `payload_hash` equal to the SHA-256 of the exact body bytes (§4 steps 1–6). The SDKs skip the
/// hash; we do not, so a replayed token cannot carry a different body.
pub fn verify_signature(authorization: Option<&str>, body: &[u8], secret: &str, now_secs: u64) -> Result<(), SignatureError> {
    let token = authorization
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(SignatureError::Missing)?;
    let mut validation = Validation::new(Algorithm::HS256);
    // Vonage's signed webhooks carry no `exp` (§4 sample): freshness is checked on `iat`, and
    // `exp`/`nbf` when present, below (with `now_secs`, not the system clock, for tests).
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation)
        .map_err(|e| SignatureError::Invalid(e.to_string()))?;
    let iat = data.claims.iat.ok_or_else(|| SignatureError::Invalid("no iat claim".into()))?;
    if iat.abs_diff(now_secs) > MAX_AGE_SECS {
        return Err(SignatureError::Stale);
    }
    // Vonage's tokens carry neither today, but a token that says when it stops (or starts) being
    // valid is held to it, with the same small leeway for clock skew as jsonwebtoken's default.
    if data.claims.exp.is_some_and(|exp| exp + CLOCK_LEEWAY_SECS < now_secs)
        || data.claims.nbf.is_some_and(|nbf| nbf > now_secs + CLOCK_LEEWAY_SECS)
    {
        return Err(SignatureError::OutsideValidity);
    }
    let expected = hex::encode(Sha256::digest(body));
    let claimed = data.claims.payload_hash.ok_or(SignatureError::PayloadHash)?.to_ascii_lowercase();
    if !bool::from(expected.as_bytes().ct_eq(claimed.as_bytes())) {
        return Err(SignatureError::PayloadHash);
    }
    Ok(())
}

/// An event the bridge relays to WeChat.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayRequest {
    pub conversation_id: String,
    pub event_id: String,
    /// The member that created the event, if any (loop guard: never our own members).
    pub from_member: Option<String>,
    /// The OpenID named in the body; may be omitted in a per-user conversation.
    pub to: Option<String>,
    pub message: OutboundMessage,
}

/// What an RTC event means to the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum RtcEvent {
    Relay(Box<RelayRequest>),
    /// Answered 200 and dropped, with the reason (for the log).
    Ignore(&'static str),
}

/// Reads an RTC webhook body (§3.3). Relayed: `custom:wechat:message` with direction
/// `outbound` (the reference integration's shape), and ordinary `message` events (text, image)
/// so agents can use a plain Vonage client. Our own inbound events and status events come back
/// through this webhook too (§3.2 "Loop prevention"): they are ignored.
pub fn classify(event: &Value) -> Result<RtcEvent, String> {
    let kind = event["type"].as_str().ok_or("no event type")?;
    let body = &event["body"];
    let message = match kind {
        MESSAGE_EVENT_TYPE => {
            if body["direction"] != "outbound" {
                return Ok(RtcEvent::Ignore("custom:wechat:message that is not outbound (our own echo)"));
            }
            custom_message(body)?
        }
        STATUS_EVENT_TYPE => return Ok(RtcEvent::Ignore("our own status event")),
        "message" => match plain_message(body) {
            Some(m) => m,
            None => return Ok(RtcEvent::Ignore("message type the bridge does not relay")),
        },
        _ => return Ok(RtcEvent::Ignore("event type the bridge does not relay")),
    };
    // `cid` is the legacy name of `conversation_id` (§3.3).
    let conversation_id = event["conversation_id"].as_str().or(event["cid"].as_str()).ok_or("no conversation_id")?;
    let event_id = match &event["id"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) if !s.is_empty() => s.clone(),
        _ => return Err("no event id".into()),
    };
    let from_member = event["from"].as_str().or(event["_embedded"]["from_member"]["id"].as_str()).map(str::to_string);
    let to = body["to"].as_str().filter(|t| !t.is_empty()).map(str::to_string);
    Ok(RtcEvent::Relay(Box::new(RelayRequest {
        conversation_id: conversation_id.to_string(),
        event_id,
        from_member,
        to,
        message,
    })))
}

/// `{to, content}` or `{msgtype, media: {url|media_id}}`, link/news with `link`.
fn custom_message(body: &Value) -> Result<OutboundMessage, String> {
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let msg_type = body["msgtype"].as_str().unwrap_or("text");
    let message = match msg_type {
        "text" => OutboundMessage::text(text(&body["content"]).ok_or("outbound text without content")?),
        "image" | "voice" | "video" => {
            let media = &body["media"];
            let (url, media_id) = (text(&media["url"]), text(&media["media_id"]));
            if url.is_none() && media_id.is_none() {
                return Err(format!("outbound {msg_type} without media.url or media.media_id"));
            }
            OutboundMessage {
                msg_type: msg_type.into(),
                media_url: url,
                media_id,
                thumb_media_id: text(&media["thumb_media_id"]),
                title: text(&media["title"]),
                description: text(&media["description"]),
                ..OutboundMessage::default()
            }
        }
        "link" | "news" => {
            let link = if body["link"].is_object() { &body["link"] } else { body };
            OutboundMessage {
                msg_type: "news".into(),
                title: Some(text(&link["title"]).ok_or("outbound link without title")?),
                description: text(&link["description"]),
                url: Some(text(&link["url"]).ok_or("outbound link without url")?),
                pic_url: text(&link["pic_url"]).or(text(&link["picurl"])),
                ..OutboundMessage::default()
            }
        }
        other => return Err(format!("outbound msgtype {other} is not supported")),
    };
    Ok(message)
}

/// A plain Vonage `message` event: `{message_type: text, text}` or `{message_type: image,
/// image: {url}}` (§2.3 "Other event types").
fn plain_message(body: &Value) -> Option<OutboundMessage> {
    match body["message_type"].as_str()? {
        "text" => body["text"].as_str().filter(|t| !t.is_empty()).map(|t| OutboundMessage::text(t.to_string())),
        "image" => body["image"]["url"].as_str().map(|url| OutboundMessage {
            msg_type: "image".into(),
            media_url: Some(url.to_string()),
            ..OutboundMessage::default()
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn sign(claims: Value, secret: &str) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn claims(body: &[u8], iat: u64) -> Value {
        json!({"iat": iat, "jti": "j", "iss": "Vonage", "payload_hash": hex::encode(Sha256::digest(body)), "api_key": "k"})
    }

    #[test]
    fn a_correctly_signed_webhook_verifies() {
        let body = br#"{"type":"message"}"#;
        let auth = format!("Bearer {}", sign(claims(body, 1_000), "s3cret"));
        assert_eq!(verify_signature(Some(&auth), body, "s3cret", 1_010), Ok(()));
    }

    #[test]
    fn forged_stale_tampered_and_missing_are_rejected() {
        let body = br#"{"type":"message"}"#;
        let good = sign(claims(body, 1_000), "s3cret");
        assert_eq!(verify_signature(None, body, "s3cret", 1_000), Err(SignatureError::Missing));
        assert!(matches!(
            verify_signature(Some(&format!("Bearer {}", sign(claims(body, 1_000), "other"))), body, "s3cret", 1_000),
            Err(SignatureError::Invalid(_))
        ));
        assert_eq!(
            verify_signature(Some(&format!("Bearer {good}")), body, "s3cret", 1_000 + MAX_AGE_SECS + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(Some(&format!("Bearer {good}")), br#"{"type":"other"}"#, "s3cret", 1_000),
            Err(SignatureError::PayloadHash)
        );
        let no_hash = sign(json!({"iat": 1_000}), "s3cret");
        assert_eq!(verify_signature(Some(&format!("Bearer {no_hash}")), body, "s3cret", 1_000), Err(SignatureError::PayloadHash));
    }

    #[test]
    fn a_fresh_iat_does_not_excuse_an_expired_or_not_yet_valid_token() {
        let body = br#"{"type":"message"}"#;
        let with = |extra: Value| {
            let mut c = claims(body, 1_000);
            c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            format!("Bearer {}", sign(c, "s3cret"))
        };
        let check = |auth: String| verify_signature(Some(&auth), body, "s3cret", 1_000);
        assert_eq!(check(with(json!({"exp": 900}))), Err(SignatureError::OutsideValidity));
        assert_eq!(check(with(json!({"nbf": 1_100}))), Err(SignatureError::OutsideValidity));
        assert_eq!(check(with(json!({"exp": 1_300, "nbf": 990}))), Ok(()));
        assert_eq!(check(with(json!({"exp": 950}))), Ok(()), "within the leeway");
    }

    #[test]
    fn outbound_custom_events_and_plain_messages_are_relayed() {
        let custom = json!({"type": "custom:wechat:message", "id": 7, "conversation_id": "CON-1", "from": "MEM-agent",
            "body": {"to": "o_1", "from": "agent", "content": "hi", "direction": "outbound"}});
        let RtcEvent::Relay(r) = classify(&custom).unwrap() else { panic!() };
        assert_eq!((r.conversation_id.as_str(), r.event_id.as_str(), r.to.as_deref()), ("CON-1", "7", Some("o_1")));
        assert_eq!(r.message, OutboundMessage::text("hi".into()));
        let plain = json!({"type": "message", "id": 8, "cid": "CON-1", "from": "MEM-agent", "body": {"message_type": "image", "image": {"url": "https://x/p.png"}}});
        let RtcEvent::Relay(r) = classify(&plain).unwrap() else { panic!() };
        assert_eq!(r.message.media_url.as_deref(), Some("https://x/p.png"));
        assert_eq!(r.to, None);
    }

    #[test]
    fn echoes_status_events_and_others_are_ignored() {
        for event in [
            json!({"type": "custom:wechat:message", "id": 1, "conversation_id": "C", "body": {"direction": "inbound", "content": "x"}}),
            json!({"type": "custom:wechat:status", "id": 2, "conversation_id": "C", "body": {"status": "delivered"}}),
            json!({"type": "member:joined", "id": 3, "conversation_id": "C", "body": {}}),
            json!({"type": "message", "id": 4, "conversation_id": "C", "body": {"message_type": "audio"}}),
        ] {
            assert!(matches!(classify(&event).unwrap(), RtcEvent::Ignore(_)), "{event}");
        }
        assert!(
            classify(&json!({"type": "custom:wechat:message", "conversation_id": "C", "body": {"direction": "outbound"}}))
                .is_err()
        );
    }
}
