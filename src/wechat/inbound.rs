//! What a WeChat push becomes in the bridge: an `InboundMessage` with readable `content` (so a
//! plain client shows something for every type) and the typed extras of DESIGN.md's event body.

use crate::relay::message::{EventInfo, FileInfo, InboundMessage, Link, Location, Media};
use crate::store::WindowChange;
use crate::wechat::message::{Body, Event, Push};

/// A message opens the customer-service window for 48 hours (`wechat-api.md` §6.2).
const MESSAGE_WINDOW_MS: i64 = 48 * 3600 * 1000;
/// A follow, QR scan or menu click opens it for 1 minute and 3 replies (§6.2).
const INTERACTION_WINDOW_MS: i64 = 60 * 1000;
const INTERACTION_QUOTA: i64 = 3;

/// What `push` does to the reply window, by WeChat's rules (§6.2): a message opens 48 hours
/// with `message_quota` replies; a follow, scan or the menu clicks that count (click and the
/// scan-code pushes) open 1 minute with 3, unless a longer window is open; unsubscribing closes
/// it; other events (location reports, link views, job reports) change nothing.
pub fn window_change(push: &Push, now_ms: i64, message_quota: i64) -> WindowChange {
    let interaction = WindowChange::OpenUnlessLonger { until_ms: now_ms + INTERACTION_WINDOW_MS, quota: INTERACTION_QUOTA };
    match &push.body {
        Body::Event(Event::Subscribe { .. } | Event::Scan { .. } | Event::Click { .. }) => interaction,
        Body::Event(Event::Other { event, .. })
            if event.eq_ignore_ascii_case("scancode_push") || event.eq_ignore_ascii_case("scancode_waitmsg") =>
        {
            interaction
        }
        Body::Event(Event::Unsubscribe) => WindowChange::Close,
        Body::Event(_) => WindowChange::Keep,
        _ => WindowChange::Open { until_ms: now_ms + MESSAGE_WINDOW_MS, quota: message_quota },
    }
}

/// Converts a parsed push.
pub fn to_inbound(push: &Push) -> InboundMessage {
    let mut msg = InboundMessage {
        account: push.to_user_name.clone(),
        sender: push.from_user_name.clone(),
        msg_type: push.msg_type().to_string(),
        msg_id: push.msg_id().map(str::to_string),
        create_time: push.create_time,
        content: String::new(),
        media: None,
        location: None,
        link: None,
        file: None,
        event: None,
    };
    match &push.body {
        Body::Text { content, .. } => msg.content = content.clone(),
        Body::Image { pic_url, media_id, .. } => {
            msg.content = "[image]".into();
            msg.media = Some(Media {
                media_id: Some(media_id.clone()),
                url: Some(pic_url.clone()),
                pic_url: Some(pic_url.clone()),
                ..Media::default()
            });
        }
        Body::Voice { media_id, format, recognition, media_id_16k, .. } => {
            // Recognition is often empty nowadays (§2.3); when present it is the best text.
            msg.content = recognition.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| "[voice]".into());
            msg.media = Some(Media {
                media_id: Some(media_id.clone()),
                format: Some(format.clone()).filter(|f| !f.is_empty()),
                media_id_16k: media_id_16k.clone(),
                recognition: recognition.clone().filter(|r| !r.is_empty()),
                ..Media::default()
            });
        }
        Body::Video { media_id, thumb_media_id, .. } | Body::ShortVideo { media_id, thumb_media_id, .. } => {
            msg.content = format!("[{}]", msg.msg_type);
            msg.media = Some(Media {
                media_id: Some(media_id.clone()),
                thumb_media_id: Some(thumb_media_id.clone()).filter(|t| !t.is_empty()),
                ..Media::default()
            });
        }
        Body::Location { latitude, longitude, scale, label, .. } => {
            msg.content = match label {
                Some(label) if !label.is_empty() => format!("[location] {label}"),
                _ => format!("[location] {latitude},{longitude}"),
            };
            msg.location = Some(Location {
                latitude: *latitude,
                longitude: *longitude,
                scale: *scale,
                precision: None,
                label: label.clone(),
            });
        }
        Body::Link { title, description, url, .. } => {
            msg.content = format!("{title} {url}");
            msg.link = Some(Link { title: title.clone(), description: description.clone(), url: url.clone() });
        }
        Body::File { title, description, file_key, file_md5, file_total_len, .. } => {
            msg.content = format!("[file] {title}");
            msg.file = Some(FileInfo {
                title: title.clone(),
                description: Some(description.clone()).filter(|d| !d.is_empty()),
                file_key: Some(file_key.clone()).filter(|k| !k.is_empty()),
                file_md5: Some(file_md5.clone()).filter(|m| !m.is_empty()),
                size: *file_total_len,
            });
        }
        Body::Event(event) => {
            let info = event_info(event);
            msg.content = match &info.key {
                Some(key) => format!("[event: {} {key}]", info.name),
                None => format!("[event: {}]", info.name),
            };
            if let Event::Location { latitude, longitude, precision } = event {
                msg.location = Some(Location {
                    latitude: *latitude,
                    longitude: *longitude,
                    scale: None,
                    precision: *precision,
                    label: None,
                });
            }
            msg.event = Some(info);
        }
        Body::Unknown { msg_type, fields, .. } => {
            msg.content = format!("[{msg_type}]");
            // Keep the raw fields where clients can see them.
            msg.event =
                Some(EventInfo { name: msg_type.clone(), key: None, ticket: None, menu_id: None, fields: fields.clone() });
        }
    }
    msg
}

fn event_info(event: &Event) -> EventInfo {
    let mut info =
        EventInfo { name: event.name().to_ascii_lowercase(), key: None, ticket: None, menu_id: None, fields: Default::default() };
    match event {
        Event::Subscribe { event_key, ticket } => {
            info.key = event_key.clone();
            info.ticket = ticket.clone();
        }
        Event::Scan { event_key, ticket } => {
            info.key = Some(event_key.clone());
            info.ticket = ticket.clone();
        }
        Event::Click { event_key } => info.key = Some(event_key.clone()),
        Event::View { url, menu_id } => {
            info.key = Some(url.clone());
            info.menu_id = menu_id.clone();
        }
        Event::Other { event, fields } => {
            info.name = event.clone();
            info.key = fields.get("EventKey").cloned().filter(|k| !k.is_empty());
            info.fields = fields.clone();
        }
        Event::Unsubscribe | Event::Location { .. } => {}
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::message::parse;

    fn convert(rest: &str) -> InboundMessage {
        to_inbound(&parse(&format!(
            "<xml><ToUserName><![CDATA[gh_a]]></ToUserName><FromUserName><![CDATA[o_1]]></FromUserName><CreateTime>1700000000</CreateTime>{rest}</xml>"
        )).unwrap())
    }

    #[test]
    fn messages_follows_clicks_and_unsubscribes_change_the_window_as_wechat_does() {
        let at = |rest: &str| {
            window_change(
                &parse(&format!(
                    "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>{rest}</xml>"
                ))
                .unwrap(),
                1_000,
                5,
            )
        };
        assert_eq!(
            at("<MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId>"),
            WindowChange::Open { until_ms: 1_000 + MESSAGE_WINDOW_MS, quota: 5 }
        );
        let minute = WindowChange::OpenUnlessLonger { until_ms: 61_000, quota: 3 };
        assert_eq!(at("<MsgType>event</MsgType><Event>subscribe</Event>"), minute);
        assert_eq!(at("<MsgType>event</MsgType><Event>CLICK</Event><EventKey>k</EventKey>"), minute);
        assert_eq!(at("<MsgType>event</MsgType><Event>SCAN</Event><EventKey>k</EventKey>"), minute);
        assert_eq!(at("<MsgType>event</MsgType><Event>scancode_push</Event><EventKey>k</EventKey>"), minute);
        assert_eq!(at("<MsgType>event</MsgType><Event>unsubscribe</Event>"), WindowChange::Close);
        assert_eq!(at("<MsgType>event</MsgType><Event>VIEW</Event><EventKey>u</EventKey>"), WindowChange::Keep);
        assert_eq!(
            at("<MsgType>event</MsgType><Event>LOCATION</Event><Latitude>1</Latitude><Longitude>2</Longitude>"),
            WindowChange::Keep
        );
    }

    #[test]
    fn text_keeps_its_content_and_ids() {
        let m = convert("<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>9</MsgId>");
        assert_eq!(
            (m.account.as_str(), m.sender.as_str(), m.content.as_str(), m.msg_id.as_deref()),
            ("gh_a", "o_1", "hi", Some("9"))
        );
        assert_eq!(m.create_time, 1_700_000_000);
    }

    #[test]
    fn every_type_gets_readable_content_and_its_extras() {
        let image = convert("<MsgType>image</MsgType><PicUrl>http://p</PicUrl><MediaId>m</MediaId><MsgId>1</MsgId>");
        assert_eq!(image.content, "[image]");
        assert_eq!(image.media.unwrap().url.as_deref(), Some("http://p"));
        let video = convert("<MsgType>shortvideo</MsgType><MediaId>m</MediaId><ThumbMediaId>t</ThumbMediaId><MsgId>1</MsgId>");
        assert_eq!(video.content, "[shortvideo]");
        assert_eq!(video.media.unwrap().thumb_media_id.as_deref(), Some("t"));
        let voice = convert(
            "<MsgType>voice</MsgType><MediaId>m</MediaId><Format>amr</Format><Recognition></Recognition><MsgId>1</MsgId>",
        );
        assert_eq!(voice.content, "[voice]");
        let location = convert(
            "<MsgType>event</MsgType><Event>LOCATION</Event><Latitude>23.1</Latitude><Longitude>113.3</Longitude><Precision>119.3</Precision>",
        );
        assert_eq!(location.location.as_ref().unwrap().precision, Some(119.3));
        assert_eq!(location.event.unwrap().name, "location");
        let click = convert("<MsgType>event</MsgType><Event>CLICK</Event><EventKey>MENU_1</EventKey>");
        assert_eq!(click.content, "[event: click MENU_1]");
        let view = convert("<MsgType>event</MsgType><Event>VIEW</Event><EventKey>https://x</EventKey><MenuId>7</MenuId>");
        assert_eq!(view.event.unwrap().menu_id.as_deref(), Some("7"));
        let file = convert(
            "<MsgType>file</MsgType><Title>a.pdf</Title><Description></Description><FileKey>k</FileKey><FileMd5>md5</FileMd5><FileTotalLen>10</FileTotalLen><MsgId>1</MsgId>",
        );
        assert_eq!(file.content, "[file] a.pdf");
        assert_eq!(file.file.unwrap().size, Some(10));
        let other = convert(
            "<MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event><MsgID>200163836</MsgID><Status>success</Status>",
        );
        let info = other.event.unwrap();
        assert_eq!(info.name, "TEMPLATESENDJOBFINISH");
        assert_eq!(info.fields.get("Status").map(String::as_str), Some("success"));
        let unknown = convert("<MsgType>miniprogrampage</MsgType><Title>t</Title><MsgId>5</MsgId>");
        assert_eq!(unknown.content, "[miniprogrampage]");
        assert_eq!(unknown.msg_id.as_deref(), Some("5"));
    }
}
