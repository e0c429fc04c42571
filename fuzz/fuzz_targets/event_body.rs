//! `vonage::event::inbound_body` / `inbound_event` on an arbitrary `InboundMessage`: the body
//! must fit Vonage's 4,096 bytes (`MAX_BODY_BYTES`), `content` must be whole whenever the
//! message without its extras fits, and a cut `content` must be a prefix marked with `…`.
//!
//! Strings are a fuzzed pattern repeated up to 16 KB, so a short input reaches a 5 KB link URL
//! or a 10 KB FromUserName. A builder that never returns cannot be caught in-process: run with
//! `-timeout=5` and libFuzzer reports it as a timeout. `cargo fuzz fmt event_body FILE` shows
//! a finding as its field sizes and the start of each field.
//!
//! With `EVENT_BODY_HANGS_ONLY=1` in the environment the body is built but nothing is checked:
//! on today's builder the size assertion fails within seconds and stops libFuzzer (or, with
//! `-fork`, restarts every job), which keeps it from reaching the inputs that never return.
#![no_main]

use std::fmt;
use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use wechat_bridge::relay::message::{EventInfo, FileInfo, InboundMessage, Link, Location, Media};
use wechat_bridge::vonage::event::{MAX_BODY_BYTES, MESSAGE_EVENT_TYPE, inbound_body, inbound_event};

const BRIDGE_MESSAGE_ID: &str = "019a1b2c-3d4e-7f60-8a9b-0c1d2e3f4a5b";
const MAX_STRING: usize = 16 * 1024;

/// A fuzzed string, repeated 1 to 1,024 times, at most 16 KB (cut on a char boundary).
fn text(u: &mut Unstructured<'_>) -> Result<String> {
    let pattern: String = u.arbitrary()?;
    let times = if u.arbitrary::<bool>()? { usize::from(u.arbitrary::<u16>()? % 1024) + 1 } else { 1 };
    let mut s = pattern.repeat(times.min(MAX_STRING / pattern.len().max(1)).max(1));
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    Ok(s)
}

fn opt(u: &mut Unstructured<'_>) -> Result<Option<String>> {
    Ok(if u.arbitrary()? { Some(text(u)?) } else { None })
}

fn finite(u: &mut Unstructured<'_>) -> Result<f64> {
    let f: f64 = u.arbitrary()?;
    Ok(if f.is_finite() { f } else { 0.0 })
}

fn message(u: &mut Unstructured<'_>) -> Result<InboundMessage> {
    const TYPES: [&str; 10] =
        ["text", "image", "voice", "video", "shortvideo", "location", "link", "file", "event", "miniprogrampage"];
    let mut msg = InboundMessage {
        account: text(u)?,
        sender: text(u)?,
        msg_type: u.choose(&TYPES)?.to_string(),
        msg_id: opt(u)?,
        create_time: u.arbitrary()?,
        content: text(u)?,
        media: None,
        location: None,
        link: None,
        file: None,
        event: None,
    };
    if u.arbitrary()? {
        msg.media = Some(Media {
            media_id: opt(u)?,
            url: opt(u)?,
            pic_url: opt(u)?,
            format: opt(u)?,
            thumb_media_id: opt(u)?,
            media_id_16k: opt(u)?,
            recognition: opt(u)?,
        });
    }
    if u.arbitrary()? {
        let (latitude, longitude) = (finite(u)?, finite(u)?);
        let scale = if u.arbitrary()? { Some(finite(u)?) } else { None };
        let precision = if u.arbitrary()? { Some(finite(u)?) } else { None };
        msg.location = Some(Location { latitude, longitude, scale, precision, label: opt(u)? });
    }
    if u.arbitrary()? {
        msg.link = Some(Link { title: text(u)?, description: text(u)?, url: text(u)? });
    }
    if u.arbitrary()? {
        msg.file =
            Some(FileInfo { title: text(u)?, description: opt(u)?, file_key: opt(u)?, file_md5: opt(u)?, size: u.arbitrary()? });
    }
    if u.arbitrary()? {
        let mut event = EventInfo { name: text(u)?, key: opt(u)?, ticket: opt(u)?, menu_id: opt(u)?, fields: Default::default() };
        for _ in 0..u.arbitrary_len::<(u8, u8)>()?.min(100) {
            event.fields.insert(String::arbitrary(u)?, text(u)?);
        }
        msg.event = Some(event);
    }
    Ok(msg)
}

/// The body without extras (DESIGN.md "The event body"): if this fits, `content` must be whole.
fn core_len(msg: &InboundMessage) -> usize {
    let mut body = json!({
        "to": msg.account, "from": msg.sender, "content": msg.content, "direction": "inbound",
        "msgtype": msg.msg_type, "create_time": msg.create_time, "bridge_message_id": BRIDGE_MESSAGE_ID,
    });
    if let Some(msg_id) = &msg.msg_id {
        body["msg_id"] = json!(msg_id);
    }
    serde_json::to_vec(&body).unwrap().len()
}

/// The fuzzed message; its `Debug` (for `cargo fuzz fmt`) gives sizes, not 16 KB strings.
struct Input(InboundMessage);

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        message(u).map(Input)
    }
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = serde_json::to_value(&self.0).map_err(|_| fmt::Error)?;
        write!(f, "core body {} bytes; ", core_len(&self.0))?;
        describe(f, "", &json)
    }
}

/// Every string as `path: N bytes "first 24 chars…"`.
fn describe(f: &mut fmt::Formatter<'_>, path: &str, value: &Value) -> fmt::Result {
    match value {
        Value::Object(map) => map.iter().try_for_each(|(k, v)| describe(f, &format!("{path}.{k}"), v)),
        Value::String(s) => write!(f, "{path}: {} bytes {:?}; ", s.len(), s.chars().take(24).collect::<String>()),
        other => write!(f, "{path}: {other}; "),
    }
}

fn hangs_only() -> bool {
    static HANGS_ONLY: OnceLock<bool> = OnceLock::new();
    *HANGS_ONLY.get_or_init(|| std::env::var_os("EVENT_BODY_HANGS_ONLY").is_some_and(|v| v == "1"))
}

fuzz_target!(|input: Input| {
    let msg = input.0;
    let body = inbound_body(&msg, BRIDGE_MESSAGE_ID);
    if hangs_only() {
        return;
    }
    let size = serde_json::to_vec(&body).unwrap().len();
    assert!(size <= MAX_BODY_BYTES, "body of {size} bytes");
    let event = inbound_event(&msg, "MEM-1", BRIDGE_MESSAGE_ID);
    assert_eq!(event["type"], MESSAGE_EVENT_TYPE);
    assert_eq!(event["body"], body);
    let content = body["content"].as_str().expect("content kept");
    if core_len(&msg) <= MAX_BODY_BYTES {
        assert_eq!(content, msg.content, "content cut although the message without extras fits");
    } else if content != msg.content {
        let prefix = content.strip_suffix('…').expect("a cut content ends with …");
        assert!(msg.content.starts_with(prefix), "a cut content is a prefix of the original");
    }
});
