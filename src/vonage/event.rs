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
        "bridge_message_id": cut_to(&report.bridge_message_id, MAX_ID_BYTES),
        "vonage_event_id": cut_to(&report.platform_event_id, MAX_ID_BYTES),
        "status": if report.delivered { "delivered" } else { "failed" },
    });
    if let Some(error) = &report.error {
        // A remote error text is not ours to bound: cap it so the report always fits.
        let code = error.code.as_deref().map(|c| cut_to(c, MAX_ID_BYTES));
        body["error"] = json!({"code": code, "message": cut_to(&error.message, MAX_EXTRA_BYTES)});
    }
    let mut event = json!({"type": STATUS_EVENT_TYPE, "body": body});
    if let Some(member) = member_id {
        event["from"] = json!(member);
    }
    event
}

/// Identifiers (account, sender, msg id, type) longer than this are cut: real ones are under 64
/// bytes (an OpenID is 28), so only a forged or broken push gets here, and it must still fit.
/// Caps count bytes of the JSON-escaped form, so escape-heavy values cannot exceed them.
const MAX_ID_BYTES: usize = 128;
/// Free-text extras (JSON bytes) kept in full while the body fits; never more than this.
const MAX_EXTRA_BYTES: usize = 1024;

/// The event body, built to fit Vonage's 4,096 bytes by construction, never by open-ended trial
/// and error: a message that fits goes out unchanged; else a fixed list of steps runs, each at
/// most once, until it fits: free-text extras capped, then shortened or dropped (link
/// description, title, raw event fields, recognition text, file description, link url, then
/// every extra), then identifiers capped, and `content` is cut last, by the bytes still over.
/// A WeChat text (≤ 2,048 bytes) always keeps its `content` whole.
pub fn inbound_body(msg: &InboundMessage, bridge_message_id: &str) -> Value {
    let mut msg = msg.clone();
    let mut bridge_message_id = bridge_message_id.to_string();
    type Step = fn(&mut InboundMessage, &mut String, usize);
    let steps: [Step; 10] = [
        |m, _, _| cap_extras(m),
        |m, _, over| {
            if let Some(link) = m.link.as_mut() {
                link.description = shorten(&link.description, over)
            }
        },
        |m, _, over| {
            if let Some(link) = m.link.as_mut() {
                link.title = shorten(&link.title, over)
            }
        },
        |m, _, _| {
            if let Some(event) = m.event.as_mut() {
                event.fields.clear()
            }
        },
        |m, _, _| {
            if let Some(media) = m.media.as_mut() {
                media.recognition = None
            }
        },
        |m, _, _| {
            if let Some(file) = m.file.as_mut() {
                file.description = None
            }
        },
        |m, _, over| {
            if let Some(link) = m.link.as_mut() {
                link.url = shorten(&link.url, over)
            }
        },
        |m, _, _| (m.media, m.location, m.link, m.file, m.event) = (None, None, None, None, None),
        |m, bridge_id, _| {
            let id = |s: &str| cut_to(s, MAX_ID_BYTES);
            (m.account, m.sender, m.msg_type) = (id(&m.account), id(&m.sender), id(&m.msg_type));
            m.msg_id = m.msg_id.as_deref().map(id);
            *bridge_id = id(bridge_id);
        },
        // Only content is left; every other field is capped by now, so this always fits.
        |m, _, over| m.content = shorten(&m.content, over),
    ];
    for step in steps {
        let over = excess(&msg, &bridge_message_id);
        if over == 0 {
            break;
        }
        step(&mut msg, &mut bridge_message_id, over);
    }
    render(&msg, &bridge_message_id)
}

/// Bytes by which the rendered body exceeds the limit (0 when it fits).
fn excess(msg: &InboundMessage, bridge_message_id: &str) -> usize {
    serde_json::to_vec(&render(msg, bridge_message_id)).map_or(usize::MAX, |v| v.len()).saturating_sub(MAX_BODY_BYTES)
}

/// Caps every extra: identifiers in it at [`MAX_ID_BYTES`], free text at [`MAX_EXTRA_BYTES`].
fn cap_extras(m: &mut InboundMessage) {
    let id = |s: &mut Option<String>| *s = s.as_deref().map(|s| cut_to(s, MAX_ID_BYTES));
    let text = |s: &mut String| *s = cut_to(s, MAX_EXTRA_BYTES);
    let opt_text = |s: &mut Option<String>| *s = s.as_deref().map(|s| cut_to(s, MAX_EXTRA_BYTES));
    if let Some(media) = m.media.as_mut() {
        [&mut media.media_id, &mut media.format, &mut media.thumb_media_id, &mut media.media_id_16k].into_iter().for_each(id);
        [&mut media.url, &mut media.pic_url, &mut media.recognition].into_iter().for_each(opt_text);
    }
    if let Some(location) = m.location.as_mut() {
        opt_text(&mut location.label);
    }
    if let Some(link) = m.link.as_mut() {
        [&mut link.title, &mut link.description, &mut link.url].into_iter().for_each(text);
    }
    if let Some(file) = m.file.as_mut() {
        text(&mut file.title);
        opt_text(&mut file.description);
        [&mut file.file_key, &mut file.file_md5].into_iter().for_each(id);
    }
    if let Some(event) = m.event.as_mut() {
        event.name = cut_to(&event.name, MAX_ID_BYTES);
        opt_text(&mut event.key);
        [&mut event.ticket, &mut event.menu_id].into_iter().for_each(id);
        // Raw fields of an unknown event: a few short ones are useful, a flood is not.
        let fields = std::mem::take(&mut event.fields);
        event.fields = fields.into_iter().take(32).map(|(k, v)| (cut_to(&k, 64), cut_to(&v, 256))).collect();
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

/// `s` shortened so its JSON form loses at least `excess` bytes (see [`fit_json`]).
fn shorten(s: &str, excess: usize) -> String {
    fit_json(s, json_len(s).saturating_sub(excess))
}

/// `s` cut to at most `max` bytes as a JSON string (quotes aside), on a character boundary and
/// marked with an ellipsis; empty when nothing but the ellipsis would be left.
fn cut_to(s: &str, max: usize) -> String {
    fit_json(s, max)
}

fn fit_json(s: &str, max: usize) -> String {
    if json_len(s) <= max {
        return s.to_string();
    }
    let budget = max.saturating_sub("…".len());
    let mut used = 0;
    let end = s
        .char_indices()
        .find(|&(_, c)| {
            used += json_char_len(c);
            used > budget
        })
        .map_or(s.len(), |(i, _)| i);
    if end == 0 { String::new() } else { format!("{}…", &s[..end]) }
}

/// Length of `s` once JSON-escaped by serde_json, without the quotes.
fn json_len(s: &str) -> usize {
    s.chars().map(json_char_len).sum()
}

fn json_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
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

    fn fits(body: &Value) -> bool {
        serde_json::to_vec(body).unwrap().len() <= MAX_BODY_BYTES
    }

    #[test]
    fn a_link_with_a_5_kb_url_fits_and_keeps_its_content() {
        let mut msg = text("see this");
        msg.msg_type = "link".into();
        msg.link = Some(Link { title: "t".into(), description: "d".into(), url: format!("https://e.com/{}", "u".repeat(5000)) });
        let body = inbound_body(&msg, "b");
        assert!(fits(&body));
        assert_eq!(body["content"], "see this");
        assert!(body["link"]["url"].as_str().unwrap().starts_with("https://e.com/uuu"));
    }

    #[test]
    fn a_10_kb_sender_and_escape_heavy_ids_still_fit() {
        let mut msg = text(&"x".repeat(2048));
        msg.sender = "o".repeat(10_000);
        msg.account = "\u{1}".repeat(5_000);
        msg.msg_type = "\"".repeat(5_000);
        msg.msg_id = Some("\u{2}".repeat(5_000));
        let body = inbound_body(&msg, &"\u{3}".repeat(500));
        assert!(fits(&body), "{}", serde_json::to_vec(&body).unwrap().len());
        assert!(body["from"].as_str().unwrap().starts_with("ooo"));
    }

    #[test]
    fn a_huge_status_error_fits() {
        let report = StatusReport {
            bridge_message_id: crate::relay::ids::BridgeMessageId::from_raw("b"),
            platform_event_id: "e".repeat(10_000),
            delivered: false,
            error: Some(crate::relay::message::ErrorInfo {
                code: Some(crate::relay::ids::ErrorCode::new("4".repeat(9_000))),
                message: "\u{1}".repeat(20_000),
                explanation: None,
            }),
            client_reference: None,
            report_seq: 1,
        };
        assert!(fits(&status_event(&report, Some("MEM-1"))["body"]));
    }

    #[test]
    fn escaped_text_beyond_the_limit_is_shortened_on_a_char_boundary() {
        let content = "\u{1}".repeat(1500) + "终"; // escapes to 6 bytes per control char
        let body = inbound_body(&text(&content), "b");
        assert!(serde_json::to_vec(&body).unwrap().len() <= MAX_BODY_BYTES);
        assert!(body["content"].as_str().unwrap().ends_with('…'));
    }
}
