//! What messages look like on each side: a customer's message as a Chatwoot incoming message
//! (text, an attachment, or readable text that keeps the data), and an agent's Chatwoot message
//! (Markdown and attachments, `chatwoot-api.md` §3.3) as the pieces the channel sends.

use pulldown_cmark::{Event, Parser, Tag, TagEnd};
use serde_json::{Value, json};

use super::client::CwAttachment;
use crate::relay::message::{InboundMessage, Media, OutboundMessage};

/// What a customer's message becomes in the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Posting<'a> {
    /// An incoming message: `content`, with the customer's file attached when `media` is set.
    Message { content: String, media: Option<&'a Media>, attributes: Value },
    /// A private note for agents only: something they should know that must not reopen the
    /// conversation or mark it answerable (the customer unfollowed).
    Note(String),
    /// Not shown to agents (automatic location reports, the platform's own job reports).
    Skip(&'static str),
}

/// The incoming message for `msg`. Events an agent acts on (follow, unfollow, menu, QR scan)
/// become short bracketed lines; automatic ones are skipped (README, "Chatwoot").
pub fn incoming<'a>(msg: &'a InboundMessage) -> Posting<'a> {
    let message = |content: String, media: Option<&'a Media>| Posting::Message {
        content,
        media,
        attributes: json!({"wechat_msgtype": msg.msg_type}),
    };
    match msg.msg_type.as_str() {
        "text" => message(msg.content.clone(), None),
        "image" | "voice" | "video" | "shortvideo" => {
            let recognition = msg.media.as_ref().and_then(|m| m.recognition.clone()).unwrap_or_default();
            message(recognition, msg.media.as_ref().filter(|m| m.media_id.is_some()))
        }
        "location" => match &msg.location {
            Some(l) => {
                let label = l.label.as_deref().filter(|s| !s.is_empty()).unwrap_or("Location");
                // WeChat's coordinates are GCJ-02, the datum Chinese maps (AMap) use.
                let map = format!("https://uri.amap.com/marker?position={},{}", l.longitude, l.latitude);
                let content = format!("📍 {label}\n{}, {}\n{map}", l.latitude, l.longitude);
                Posting::Message {
                    content,
                    media: None,
                    attributes: json!({"wechat_msgtype": "location", "latitude": l.latitude, "longitude": l.longitude,
                        "scale": l.scale, "label": l.label}),
                }
            }
            None => message(msg.content.clone(), None),
        },
        "link" => match &msg.link {
            Some(link) => {
                let lines: Vec<&str> = [link.title.as_str(), link.description.as_str(), link.url.as_str()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect();
                message(format!("🔗 {}", lines.join("\n")), None)
            }
            None => message(msg.content.clone(), None),
        },
        "file" => match &msg.file {
            Some(file) => {
                let size = file.size.map(|n| format!(" ({n} bytes)")).unwrap_or_default();
                message(format!("📎 {}{size}", file.title), None)
            }
            None => message(msg.content.clone(), None),
        },
        "event" if msg.event.as_ref().is_some_and(|e| e.name == "unsubscribe") => {
            Posting::Note("[unfollowed the Official Account: replies can no longer reach them]".into())
        }
        "event" => event_line(msg).map_or_else(Posting::Skip, |line| message(line, None)),
        _ => message(msg.content.clone(), None),
    }
}

/// The line an event becomes, or why it is not posted.
fn event_line(msg: &InboundMessage) -> Result<String, &'static str> {
    let Some(event) = &msg.event else { return Err("event without a name") };
    let key = event.key.as_deref().filter(|k| !k.is_empty());
    Ok(match event.name.as_str() {
        "subscribe" => match key.and_then(|k| k.strip_prefix("qrscene_")) {
            Some(scene) => format!("[followed the Official Account by scanning QR code {scene}]"),
            None => "[followed the Official Account]".into(),
        },
        "scan" => format!("[scanned QR code {}]", key.unwrap_or("?")),
        "click" => format!("[tapped menu item {}]", key.unwrap_or("?")),
        "view" | "view_miniprogram" => format!("[opened menu link {}]", key.unwrap_or("?")),
        "scancode_push" | "scancode_waitmsg" | "pic_sysphoto" | "pic_photo_or_album" | "pic_weixin" | "location_select" => {
            format!("[used menu item {} ({})]", key.unwrap_or("?"), event.name)
        }
        // Reported every few seconds while the customer has the chat open: noise for agents.
        "location" => return Err("automatic location reports are not posted"),
        _ => return Err("the event is not something an agent acts on"),
    })
}

/// A customer's file could not be fetched from the channel for good (expired after 3 days):
/// what the agent reads instead.
pub fn media_unavailable(msg: &InboundMessage, reason: &str) -> String {
    let link = msg.media.as_ref().and_then(|m| m.pic_url.as_deref()).map(|u| format!("\n{u}")).unwrap_or_default();
    format!("[{} the bridge could not fetch: {reason}]{link}", msg.msg_type)
}

/// WeChat's limits for what it takes as media (`wechat-api.md` §7.1): type and size.
fn wechat_media_type(attachment: &CwAttachment) -> Option<&'static str> {
    let mime = attachment.content_type.as_deref().unwrap_or_default().to_ascii_lowercase();
    let ext = attachment.extension.as_deref().unwrap_or_default().to_ascii_lowercase();
    let size = attachment.file_size.unwrap_or(0);
    let is = |mimes: &[&str], exts: &[&str]| mimes.contains(&mime.as_str()) || (mime.is_empty() && exts.contains(&ext.as_str()));
    match attachment.file_type.as_deref() {
        Some("image") if is(&["image/jpeg", "image/jpg", "image/png", "image/gif"], &["jpg", "jpeg", "png", "gif"]) => {
            // §7.1: "validate against 2 MB for images to be safe".
            (size <= 2 << 20).then_some("image")
        }
        Some("audio") if is(&["audio/amr", "audio/mpeg", "audio/mp3"], &["amr", "mp3"]) => (size <= 2 << 20).then_some("voice"),
        Some("video") if is(&["video/mp4"], &["mp4"]) => (size <= 10 << 20).then_some("video"),
        _ => None,
    }
}

/// The pieces an agent's message is sent in: its text, then each attachment WeChat can show
/// (image, voice, video, uploaded from Chatwoot), others as a link to the file. None when there
/// is nothing to send.
pub fn outgoing(content: Option<&str>, attachments: &[CwAttachment]) -> Option<(OutboundMessage, Vec<OutboundMessage>)> {
    let mut pieces = Vec::new();
    let text = content.map(markdown_to_text).unwrap_or_default();
    if !text.trim().is_empty() {
        pieces.push(OutboundMessage::text(text));
    }
    for attachment in attachments {
        let Some(url) = attachment.data_url.clone().filter(|u| !u.is_empty()) else { continue };
        pieces.push(match wechat_media_type(attachment) {
            Some(kind) => OutboundMessage { msg_type: kind.into(), media_url: Some(url), ..OutboundMessage::default() },
            None => OutboundMessage::text(format!("📎 {}", url)),
        });
    }
    let mut pieces = pieces.into_iter();
    let first = pieces.next()?;
    Some((first, pieces.collect()))
}

/// Chatwoot's `content` is Markdown (§3.3); WeChat shows plain text. Emphasis and headings
/// lose their marks, a link keeps its address after its text, list items get bullets.
pub fn markdown_to_text(markdown: &str) -> String {
    let mut out = String::new();
    let mut links: Vec<String> = Vec::new();
    let mut lists: Vec<Option<u64>> = Vec::new();
    for event in Parser::new(markdown) {
        match event {
            Event::Text(t) | Event::Code(t) | Event::InlineHtml(t) | Event::Html(t) => out.push_str(&t),
            Event::SoftBreak | Event::HardBreak => out.push('\n'),
            Event::Rule => out.push_str("———\n"),
            Event::Start(Tag::Link { dest_url, .. }) => links.push(dest_url.to_string()),
            Event::End(TagEnd::Link) => {
                if let Some(url) = links.pop()
                    && !out.ends_with(url.as_str())
                {
                    out.push_str(&format!(" ({url})"));
                }
            }
            Event::Start(Tag::List(start)) => lists.push(start),
            Event::End(TagEnd::List(_)) => {
                lists.pop();
                if lists.is_empty() {
                    out.push('\n');
                }
            }
            Event::Start(Tag::Item) => {
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(&"  ".repeat(lists.len().saturating_sub(1)));
                match lists.last_mut() {
                    Some(Some(n)) => {
                        out.push_str(&format!("{n}. "));
                        *n += 1;
                    }
                    _ => out.push_str("• "),
                }
            }
            Event::End(TagEnd::Item) if !out.ends_with('\n') => out.push('\n'),
            Event::End(TagEnd::Paragraph | TagEnd::Heading(_) | TagEnd::CodeBlock | TagEnd::BlockQuote(_)) => {
                if lists.is_empty() {
                    out.push_str("\n\n");
                } else if !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            _ => {}
        }
    }
    let trimmed = out.trim_end();
    // At most one blank line anywhere.
    let mut text = String::with_capacity(trimmed.len());
    for line in trimmed.split('\n') {
        if line.trim().is_empty() && text.ends_with("\n\n") {
            continue;
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::message::{EventInfo, Link, Location};

    fn inbound(msg_type: &str) -> InboundMessage {
        InboundMessage {
            account: "gh_1".into(),
            sender: "o_1".into(),
            msg_type: msg_type.into(),
            msg_id: Some("1".into()),
            create_time: 0,
            content: format!("[{msg_type}]"),
            media: None,
            location: None,
            link: None,
            file: None,
            event: None,
        }
    }

    #[test]
    fn markdown_becomes_plain_text_with_link_addresses_and_bullets() {
        assert_eq!(markdown_to_text("**Hello** _there_"), "Hello there");
        assert_eq!(markdown_to_text("See [our site](https://example.com/a)"), "See our site (https://example.com/a)");
        assert_eq!(markdown_to_text("<https://example.com>"), "https://example.com");
        assert_eq!(markdown_to_text("# Title\n\nBody"), "Title\n\nBody");
        assert_eq!(markdown_to_text("- one\n- two\n\nafter"), "• one\n• two\n\nafter");
        assert_eq!(markdown_to_text("1. a\n2. b"), "1. a\n2. b");
        assert_eq!(markdown_to_text("line one\nline two"), "line one\nline two");
        assert_eq!(markdown_to_text("你好，请问有什么可以帮您？"), "你好，请问有什么可以帮您？");
        assert_eq!(markdown_to_text("`code` and 2 * 3"), "code and 2 * 3");
    }

    #[test]
    fn events_agents_act_on_become_lines_and_automatic_ones_are_skipped() {
        let event = |name: &str, key: Option<&str>| {
            let mut msg = inbound("event");
            msg.event = Some(EventInfo {
                name: name.into(),
                key: key.map(str::to_string),
                ticket: None,
                menu_id: None,
                fields: Default::default(),
            });
            msg
        };
        let line = |msg: &InboundMessage| match incoming(msg) {
            Posting::Message { content, .. } => content,
            other => panic!("not a message: {other:?}"),
        };
        assert_eq!(line(&event("subscribe", None)), "[followed the Official Account]");
        assert!(line(&event("subscribe", Some("qrscene_spring"))).contains("QR code spring"));
        assert!(matches!(incoming(&event("unsubscribe", None)), Posting::Note(n) if n.contains("unfollowed")));
        assert_eq!(line(&event("click", Some("V1001_HELP"))), "[tapped menu item V1001_HELP]");
        assert!(line(&event("view", Some("https://example.com"))).contains("https://example.com"));
        assert!(matches!(incoming(&event("location", None)), Posting::Skip(_)));
        assert!(matches!(incoming(&event("templatesendjobfinish", None)), Posting::Skip(_)));
    }

    #[test]
    fn location_and_link_are_readable_and_keep_their_data() {
        let mut loc = inbound("location");
        loc.location = Some(Location {
            latitude: 23.134521,
            longitude: 113.358803,
            scale: Some(20.0),
            precision: None,
            label: Some("Guangzhou".into()),
        });
        let Posting::Message { content, attributes, media } = incoming(&loc) else { panic!() };
        assert!(content.contains("Guangzhou") && content.contains("23.134521, 113.358803"), "{content}");
        assert!(content.contains("https://uri.amap.com/marker?position=113.358803,23.134521"));
        assert_eq!(attributes["latitude"], 23.134521);
        assert!(media.is_none());
        let mut link = inbound("link");
        link.link = Some(Link { title: "T".into(), description: "D".into(), url: "https://e.com/x".into() });
        let Posting::Message { content, .. } = incoming(&link) else { panic!() };
        assert_eq!(content, "🔗 T\nD\nhttps://e.com/x");
    }

    #[test]
    fn media_is_attached_and_voice_keeps_its_recognition() {
        let mut voice = inbound("voice");
        voice.media = Some(Media { media_id: Some("m1".into()), recognition: Some("你好".into()), ..Media::default() });
        let Posting::Message { content, media, .. } = incoming(&voice) else { panic!() };
        assert_eq!(content, "你好");
        assert_eq!(media.unwrap().media_id.as_deref(), Some("m1"));
    }

    #[test]
    fn attachments_wechat_can_show_are_media_the_rest_are_links() {
        let att = |file_type: &str, mime: &str, size: u64| CwAttachment {
            file_type: Some(file_type.into()),
            content_type: Some(mime.into()),
            extension: None,
            data_url: Some(format!("https://chat.example.com/f/{file_type}")),
            file_size: Some(size),
        };
        let (first, more) = outgoing(
            Some("**Here** you go"),
            &[
                att("image", "image/png", 1000),
                att("audio", "audio/mpeg", 1000),
                att("video", "video/mp4", 1000),
                att("file", "application/pdf", 10),
            ],
        )
        .unwrap();
        assert_eq!(first, OutboundMessage::text("Here you go".into()));
        assert_eq!(more.iter().map(|m| m.msg_type.as_str()).collect::<Vec<_>>(), ["image", "voice", "video", "text"]);
        assert_eq!(more[0].media_url.as_deref(), Some("https://chat.example.com/f/image"));
        assert_eq!(more[3].content.as_deref(), Some("📎 https://chat.example.com/f/file"));
        let (only, rest) = outgoing(Some(""), &[att("image", "image/webp", 10)]).unwrap();
        assert_eq!(only.msg_type, "text", "WeChat shows no webp: a link");
        assert!(rest.is_empty());
        let (big, _) = outgoing(None, &[att("image", "image/jpeg", 3 << 20)]).unwrap();
        assert_eq!(big.msg_type, "text", "over WeChat's 2 MB image limit: a link");
        assert!(outgoing(Some("  "), &[]).is_none());
    }
}
