//! The `custom:wechat:message` event body (DESIGN.md "The event body"): the reference
//! integration's `{to, from, content, direction}` plus typed extras, always under Vonage's
//! 4,096-byte body limit (`vonage-api.md` §2.3 "Custom event rules").

use serde_json::{Value, json};

use crate::relay::message::{InboundMessage, StatusReport};

/// The custom event type shared with the reference integration and its clients.
pub const MESSAGE_EVENT_TYPE: &str = "custom:wechat:message";
/// The outcome of each outbound message, posted back into its conversation.
pub const STATUS_EVENT_TYPE: &str = "custom:wechat:status";
/// Vonage rejects custom event bodies over this many bytes.
pub const MAX_BODY_BYTES: usize = 4096;

/// Builds the event posted into the conversation for an inbound message, from the member `from`.
pub fn inbound_event(msg: &InboundMessage, member_id: &str, bridge_message_id: &str) -> Value {
    json!({"type": MESSAGE_EVENT_TYPE, "from": member_id, "body": inbound_body(msg, bridge_message_id)})
}

/// The `custom:wechat:status` event for an outbound message's outcome (DESIGN.md).
pub fn status_event(report: &StatusReport, member_id: Option<&str>) -> Value {
    let mut body = json!({
        "bridge_message_id": report.bridge_message_id,
        "vonage_event_id": report.platform_event_id,
        "status": if report.delivered { "delivered" } else { "failed" },
    });
    if let Some(error) = &report.error {
        body["error"] = json!({"code": error.code, "message": error.message});
    }
    let mut event = json!({"type": STATUS_EVENT_TYPE, "body": body});
    if let Some(member) = member_id {
        event["from"] = json!(member);
    }
    event
}

/// The event body, shrunk until it fits: optional extras go first (link description, then
/// title, then raw event fields and recognition text), `content` is kept whole whenever possible.
pub fn inbound_body(msg: &InboundMessage, bridge_message_id: &str) -> Value {
    let mut msg = msg.clone();
    loop {
        let body = render(&msg, bridge_message_id);
        let size = serde_json::to_vec(&body).map(|v| v.len()).unwrap_or(usize::MAX);
        if size <= MAX_BODY_BYTES || !shrink(&mut msg, size - MAX_BODY_BYTES) {
            return body;
        }
    }
}

fn render(msg: &InboundMessage, bridge_message_id: &str) -> Value {
    let mut body = json!({
        "to": msg.account,
        "from": msg.sender,
        "content": msg.content,
        "direction": "inbound",
        "msgtype": msg.msg_type,
        "create_time": msg.create_time,
        "bridge_message_id": bridge_message_id,
    });
    let extras = [
        ("msg_id", msg.msg_id.as_ref().map(|v| json!(v))),
        ("media", msg.media.as_ref().map(|v| json!(v))),
        ("location", msg.location.as_ref().map(|v| json!(v))),
        ("link", msg.link.as_ref().map(|v| json!(v))),
        ("file", msg.file.as_ref().map(|v| json!(v))),
        ("event", msg.event.as_ref().map(|v| json!(v))),
    ];
    for (key, value) in extras {
        if let Some(value) = value {
            body[key] = value;
        }
    }
    body
}

/// Removes about `excess` bytes from the least important part; false when nothing is left to cut.
fn shrink(msg: &mut InboundMessage, excess: usize) -> bool {
    if let Some(link) = msg.link.as_mut() {
        if !link.description.is_empty() {
            link.description = cut(&link.description, excess);
            return true;
        }
        if !link.title.is_empty() {
            link.title = cut(&link.title, excess);
            return true;
        }
    }
    if let Some(event) = msg.event.as_mut()
        && event.fields.pop_last().is_some()
    {
        return true;
    }
    if let Some(media) = msg.media.as_mut()
        && media.recognition.take().is_some()
    {
        return true;
    }
    if let Some(file) = msg.file.as_mut()
        && file.description.take().is_some()
    {
        return true;
    }
    // Only pathological text gets here (a 2,048-byte WeChat text fits; heavy JSON escaping may
    // not): shorten content rather than lose the whole message.
    if msg.content.len() > 1 {
        msg.content = cut(&msg.content, excess + 3) + "…";
        return true;
    }
    false
}

/// `s` shortened by at least `excess` bytes, on a UTF-8 boundary, marked with an ellipsis.
fn cut(s: &str, excess: usize) -> String {
    let keep = s.len().saturating_sub(excess + "…".len());
    let mut end = keep;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end == 0 { String::new() } else { format!("{}…", &s[..end]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::message::{EventInfo, Link};

    fn text(content: &str) -> InboundMessage {
        InboundMessage {
            account: "gh_account".into(),
            sender: "openid_1".into(),
            msg_type: "text".into(),
            msg_id: Some("1234567890123456".into()),
            create_time: 1_700_000_000,
            content: content.into(),
            media: None,
            location: None,
            link: None,
            file: None,
            event: None,
        }
    }

    #[test]
    fn keeps_the_reference_four_fields_and_adds_typed_extras() {
        let event = inbound_event(&text("hello"), "MEM-1", "b-1");
        assert_eq!(event["type"], "custom:wechat:message");
        assert_eq!(event["from"], "MEM-1");
        let body = &event["body"];
        assert_eq!(body["to"], "gh_account");
        assert_eq!(body["from"], "openid_1");
        assert_eq!(body["content"], "hello");
        assert_eq!(body["direction"], "inbound");
        assert_eq!(body["msgtype"], "text");
        assert_eq!(body["msg_id"], "1234567890123456");
        assert_eq!(body["bridge_message_id"], "b-1");
        assert!(body.get("media").is_none());
    }

    #[test]
    fn a_full_size_chinese_text_fits_whole() {
        let content = "你".repeat(682) + "ab"; // 2,048 bytes, WeChat's maximum text
        let body = inbound_body(&text(&content), "b");
        assert_eq!(body["content"], content.as_str());
        assert!(serde_json::to_vec(&body).unwrap().len() <= MAX_BODY_BYTES);
    }

    #[test]
    fn a_long_link_description_is_shortened_not_the_content() {
        let mut msg = text("link: see this");
        msg.msg_type = "link".into();
        msg.link = Some(Link { title: "t".repeat(300), description: "d".repeat(6000), url: "https://example.com".into() });
        let body = inbound_body(&msg, "b");
        assert!(serde_json::to_vec(&body).unwrap().len() <= MAX_BODY_BYTES);
        assert_eq!(body["content"], "link: see this");
        assert_eq!(body["link"]["title"], "t".repeat(300));
        assert!(body["link"]["description"].as_str().unwrap().ends_with('…'));
    }

    #[test]
    fn huge_generic_event_fields_are_dropped_until_it_fits() {
        let mut msg = text("[event: weird]");
        msg.msg_type = "event".into();
        let fields = (0..50).map(|i| (format!("F{i:02}"), "x".repeat(200))).collect();
        msg.event = Some(EventInfo { name: "weird".into(), key: None, ticket: None, menu_id: None, fields });
        let body = inbound_body(&msg, "b");
        assert!(serde_json::to_vec(&body).unwrap().len() <= MAX_BODY_BYTES);
        assert_eq!(body["event"]["name"], "weird");
        assert_eq!(body["content"], "[event: weird]");
    }

    #[test]
    fn escaped_text_beyond_the_limit_is_shortened_on_a_char_boundary() {
        let content = "\u{1}".repeat(1500) + "终"; // escapes to 6 bytes per control char
        let body = inbound_body(&text(&content), "b");
        assert!(serde_json::to_vec(&body).unwrap().len() <= MAX_BODY_BYTES);
        assert!(body["content"].as_str().unwrap().ends_with('…'));
    }
}
