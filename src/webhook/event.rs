//! The events the bridge POSTs to the app (DESIGN.md "Platforms → webhook"): exactly
//! `message.received` and `message.status`, as `{type, timestamp, data}` (Standard Webhooks
//! "Payload"). Each event's `webhook-id` is derived from the bridge message id and the event type,
//! so every retry of an event carries the same id and receivers can deduplicate on it.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::relay::message::{Contact, EventInfo, FileInfo, InboundMessage, Link, Location, Media, StatusReport};

pub const RECEIVED: &str = "message.received";
pub const STATUS: &str = "message.status";

/// The `webhook-id` of a customer message's `message.received` (no `.`: it is part of the signed text).
pub fn received_id(bridge_message_id: &str) -> String {
    format!("msg_{bridge_message_id}")
}

/// The `webhook-id` of one `message.status` of an outbound message: the same on every retry of
/// that report, but a new one when a failed message is retried and reported again, so a receiver
/// that deduplicates on the id never drops the later outcome.
pub fn status_id(bridge_message_id: &str, report_seq: i64) -> String {
    format!("status_{bridge_message_id}_{report_seq}")
}

#[derive(Serialize)]
struct Event<T> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// When it happened, RFC 3339.
    timestamp: String,
    data: T,
}

#[derive(Serialize)]
struct Received<'a> {
    bridge_message_id: &'a str,
    channel: &'a str,
    account: &'a str,
    contact: &'a str,
    direction: &'static str,
    msgtype: &'a str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg_id: Option<&'a str>,
    create_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<&'a Media>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<&'a Location>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<&'a Link>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a FileInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a EventInfo>,
}

#[derive(Serialize)]
struct Status<'a> {
    bridge_message_id: &'a str,
    client_reference: Option<&'a str>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: Option<&'a str>,
    message: &'a str,
}

/// RFC 3339 (UTC, whole seconds) of a Unix time.
pub fn rfc3339(unix_secs: i64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs.max(0) as u64)).to_string()
}

/// The body of `message.received` for `msg` from `contact`; stamped with the channel's time, so
/// every retry sends the same bytes.
pub fn received(channel: &str, contact: &Contact, msg: &InboundMessage, bridge_message_id: &str) -> Vec<u8> {
    let data = Received {
        bridge_message_id,
        channel,
        account: &msg.account,
        contact: &contact.channel_id,
        direction: "inbound",
        msgtype: &msg.msg_type,
        content: &msg.content,
        msg_id: msg.msg_id.as_deref(),
        create_time: msg.create_time,
        media: msg.media.as_ref(),
        location: msg.location.as_ref(),
        link: msg.link.as_ref(),
        file: msg.file.as_ref(),
        event: msg.event.as_ref(),
    };
    let event = Event { kind: RECEIVED, timestamp: rfc3339(msg.create_time), data };
    serde_json::to_vec(&event).expect("event serializes")
}

/// The body of `message.status` for an outbound message's outcome.
pub fn status(report: &StatusReport) -> Vec<u8> {
    let data = Status {
        bridge_message_id: &report.bridge_message_id,
        client_reference: report.client_reference.as_deref(),
        status: if report.delivered { "delivered" } else { "failed" },
        error: report.error.as_ref().map(|e| ErrorBody { code: e.code.as_deref(), message: &e.message }),
    };
    let event = Event { kind: STATUS, timestamp: rfc3339(crate::store::now_ms() / 1000), data };
    serde_json::to_vec(&event).expect("event serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::message::ErrorInfo;
    use serde_json::{Value, json};

    #[test]
    fn received_has_the_documented_fields_and_msg_id_as_a_string() {
        let contact = Contact { channel_id: "o_user".into(), ..Contact::default() };
        let msg = InboundMessage {
            account: "gh_acc".into(),
            sender: "o_user".into(),
            msg_type: "image".into(),
            msg_id: Some("24181234567890123".into()),
            create_time: 1_700_000_000,
            content: "[image]".into(),
            media: Some(Media { media_id: Some("M1".into()), url: Some("https://b/media/M1?sig=x".into()), ..Media::default() }),
            location: None,
            link: None,
            file: None,
            event: None,
        };
        let event: Value = serde_json::from_slice(&received("wechat", &contact, &msg, "B1")).unwrap();
        assert_eq!(event["type"], "message.received");
        assert_eq!(event["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(
            event["data"],
            json!({"bridge_message_id": "B1", "channel": "wechat", "account": "gh_acc", "contact": "o_user",
                   "direction": "inbound", "msgtype": "image", "content": "[image]", "msg_id": "24181234567890123",
                   "create_time": 1_700_000_000, "media": {"media_id": "M1", "url": "https://b/media/M1?sig=x"}})
        );
    }

    #[test]
    fn status_carries_the_client_reference_and_the_error() {
        let report = StatusReport {
            bridge_message_id: crate::relay::ids::BridgeMessageId::from_raw("B2"),
            platform_event_id: "e".into(),
            delivered: false,
            error: Some(ErrorInfo { code: Some("45015".into()), message: "window closed".into(), explanation: None }),
            client_reference: Some("order-7".into()),
            report_seq: 1,
        };
        let event: Value = serde_json::from_slice(&status(&report)).unwrap();
        assert_eq!(event["type"], "message.status");
        assert_eq!(
            event["data"],
            json!({"bridge_message_id": "B2", "client_reference": "order-7", "status": "failed",
                   "error": {"code": "45015", "message": "window closed"}})
        );
        assert!(!received_id("B2").contains('.') && received_id("B2") != status_id("B2", 1));
    }
}
