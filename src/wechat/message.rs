//! WeChat push XML ⇄ typed values (`wechat-api.md §2`, `§3.5`).
//!
//! * [`parse_fields`] is a small, safe reader over `quick_xml::Reader`: no DTD, no entities
//!   beyond the five predefined ones and character references, bounded depth, strict
//!   well-formedness (§2.5).
//! * [`parse`] maps the fields of a plaintext (or decrypted) push to a [`Push`];
//!   [`parse_encrypted_envelope`] reads the `<Encrypt>` envelope of safe/compatible mode (§3.1).
//! * [`to_xml`], [`encrypted_envelope_xml`] and [`encrypted_reply_xml`] write the official
//!   shapes, for the simulator that plays WeChat.
//!
//! The types derive serde because the relay stores them as JSON: snake_case fields, a [`Body`]
//! tagged by `"type"` (equal to WeChat's `MsgType` for the known types), an [`Event`] by
//! `"event_type"`.

use std::collections::BTreeMap;

use quick_xml::escape::escape;
use serde::{Deserialize, Serialize};

pub use super::xml::parse_fields;
use super::xml::{MAX_DEPTH, malformed};

/// The text of every element below `<xml>`, keyed by its path.
///
/// Direct children use their element name (`"Content"`); nested elements are joined with a dot
/// (`"ScanCodeInfo.ScanType"`). The n-th repeat (n ≥ 2) of a sibling name gets the suffix `[n]`
/// (`"SendPicsInfo.PicList.item[2].PicMd5Sum"`), so the first occurrence keeps the plain name.
/// A container whose own text is only whitespace has no entry. Being a `BTreeMap`, it iterates
/// in key order, not document order.
pub type Fields = BTreeMap<String, String>;

/// The header fields every push carries (§2.2).
const HEADER_FIELDS: [&str; 4] = ["ToUserName", "FromUserName", "CreateTime", "MsgType"];

/// Errors from parsing push XML.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not well-formed, not rooted at `<xml>`, or a value that does not parse (named in the text).
    #[error("malformed WeChat XML: {0}")]
    Malformed(String),
    /// The document contains a DTD or an entity declaration (§2.5).
    #[error("DOCTYPE and entity declarations are forbidden")]
    DoctypeForbidden,
    /// A required element is absent.
    #[error("missing required field <{0}>")]
    MissingField(&'static str),
    /// Elements nest deeper than the limit of 8.
    #[error("XML nests deeper than {MAX_DEPTH} elements")]
    TooDeep,
}

/// The outer body of a safe- or compatible-mode push (§3.1). Compatible-mode bodies also carry
/// every plaintext field; only these two are read.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `ToUserName`: the account's original id (`gh_…`), or the corpid for WeCom.
    pub to_user_name: Option<String>,
    /// `Encrypt`: the base64 ciphertext, to check against `msg_signature` and then decrypt.
    pub encrypt: Option<String>,
}

/// One decoded push: the common header (§2.2) and the typed body.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Push {
    /// `ToUserName`: the account's original id (`gh_…`).
    pub to_user_name: String,
    /// `FromUserName`: the sender's OpenID.
    pub from_user_name: String,
    /// `CreateTime`: Unix seconds.
    pub create_time: i64,
    /// Everything after the header, by `MsgType`.
    pub body: Body,
}

/// The typed content of a push, by `MsgType` (§2.3).
///
/// Each field is the snake_case of its WeChat element unless noted. `msg_id` is `MsgId` kept as
/// its exact decimal text (a 64-bit id). Optional strings are `None` when absent or empty.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// `text`; `biz_msg_menu_id` is `bizmsgmenuid`, sent when the user tapped a `msgmenu` item (§2.3).
    Text { content: String, msg_id: String, biz_msg_menu_id: Option<String> },
    /// `image`: `pic_url` is a system-generated CDN link; `media_id` works with `media/get`.
    Image { pic_url: String, media_id: String, msg_id: String },
    /// `voice`: `media_id` is 8 kHz when `format` is amr; `media_id_16k` is `MediaId16K`;
    /// `recognition` is mostly absent or empty nowadays (§2.3).
    Voice { media_id: String, format: String, recognition: Option<String>, media_id_16k: Option<String>, msg_id: String },
    /// `video`.
    Video { media_id: String, thumb_media_id: String, msg_id: String },
    /// `shortvideo` (the fields of `video`).
    #[serde(rename = "shortvideo")]
    ShortVideo { media_id: String, thumb_media_id: String, msg_id: String },
    /// `location`: `latitude` is `Location_X`, `longitude` is `Location_Y`, `scale` the map zoom.
    Location { latitude: f64, longitude: f64, scale: Option<f64>, label: Option<String>, msg_id: String },
    /// `link`.
    Link { title: String, description: String, url: String, msg_id: String },
    /// `file`, WeCom-style (not an Official Account type, §2.3); `file_total_len` is `FileTotalLen`.
    File { title: String, description: String, file_key: String, file_md5: String, file_total_len: Option<u64>, msg_id: String },
    /// `event` (§2.4).
    Event(Event),
    /// Any other `MsgType` (e.g. `miniprogrampage`), kept leniently: `msg_type` as received, the
    /// `MsgId` if any, and every field except the four header fields and `MsgId`.
    Unknown { msg_type: String, msg_id: Option<String>, fields: Fields },
}

/// An event push (`MsgType` = `event`), by its `Event` name matched case-insensitively (§2.4:
/// `SCAN` and `CLICK`, but `subscribe`). Optional strings are `None` when absent or empty.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "event_type", rename_all = "snake_case")]
pub enum Event {
    /// `subscribe`; via a parameterised QR code, `event_key` is `qrscene_…` and `ticket` is set.
    Subscribe { event_key: Option<String>, ticket: Option<String> },
    /// `unsubscribe`.
    Unsubscribe,
    /// `SCAN`: a follower scanned a parameterised QR code; `event_key` is the scene value.
    Scan { event_key: String, ticket: Option<String> },
    /// `LOCATION`: the reported position.
    Location { latitude: f64, longitude: f64, precision: Option<f64> },
    /// `CLICK`: a menu pull-message item.
    Click { event_key: String },
    /// `VIEW`: a menu link; `url` is `EventKey`, `menu_id` (`MenuId`) is set for personalised menus.
    View { url: String, menu_id: Option<String> },
    /// Any other event (e.g. `TEMPLATESENDJOBFINISH`, `scancode_waitmsg`): `event` as received,
    /// and every field except the four header fields and `Event`.
    Other { event: String, fields: Fields },
}

impl Event {
    /// The event name: the official spelling for typed variants (`subscribe`, `SCAN`, `VIEW`, …),
    /// the received spelling for [`Event::Other`].
    pub fn name(&self) -> &str {
        match self {
            Event::Subscribe { .. } => "subscribe",
            Event::Unsubscribe => "unsubscribe",
            Event::Scan { .. } => "SCAN",
            Event::Location { .. } => "LOCATION",
            Event::Click { .. } => "CLICK",
            Event::View { .. } => "VIEW",
            Event::Other { event, .. } => event,
        }
    }
}

impl Push {
    /// WeChat's `MsgType`: `"text"`, `"image"`, …, `"event"`, or the unknown type as received.
    pub fn msg_type(&self) -> &str {
        match &self.body {
            Body::Text { .. } => "text",
            Body::Image { .. } => "image",
            Body::Voice { .. } => "voice",
            Body::Video { .. } => "video",
            Body::ShortVideo { .. } => "shortvideo",
            Body::Location { .. } => "location",
            Body::Link { .. } => "link",
            Body::File { .. } => "file",
            Body::Event(_) => "event",
            Body::Unknown { msg_type, .. } => msg_type,
        }
    }

    /// The `MsgId`, which normal messages carry and events do not (§2.2).
    pub fn msg_id(&self) -> Option<&str> {
        match &self.body {
            Body::Text { msg_id, .. }
            | Body::Image { msg_id, .. }
            | Body::Voice { msg_id, .. }
            | Body::Video { msg_id, .. }
            | Body::ShortVideo { msg_id, .. }
            | Body::Location { msg_id, .. }
            | Body::Link { msg_id, .. }
            | Body::File { msg_id, .. } => Some(msg_id),
            Body::Unknown { msg_id, .. } => msg_id.as_deref(),
            Body::Event(_) => None,
        }
    }

    /// The key that recognises WeChat's retries (§4.1, §4.2): `msg:{FromUserName}:{MsgId}` for
    /// messages, else `evt:{FromUserName}:{CreateTime}:{Event}` (`{MsgType}` for an unknown type).
    /// FromUserName is in the message key because MsgIds collide across users (WxJava #333).
    /// A retry repeats the body exactly, so its key is the same.
    pub fn dedup_key(&self) -> String {
        let from = &self.from_user_name;
        if let Some(id) = self.msg_id() {
            return format!("msg:{from}:{id}");
        }
        let what = match &self.body {
            Body::Event(event) => event.name(),
            _ => self.msg_type(),
        };
        format!("evt:{from}:{}:{what}", self.create_time)
    }
}

/// Reads `<ToUserName>` and `<Encrypt>` from a safe- or compatible-mode body.
pub fn parse_encrypted_envelope(xml: &str) -> Result<Envelope, MessageError> {
    let mut fields = parse_fields(xml)?;
    Ok(Envelope { to_user_name: fields.remove("ToUserName"), encrypt: fields.remove("Encrypt") })
}

/// Typed access to [`Fields`]: every value is a string on the wire, CDATA or not (§2.5).
struct Get<'a>(&'a Fields);

impl Get<'_> {
    fn req(&self, name: &'static str) -> Result<String, MessageError> {
        self.0.get(name).cloned().ok_or(MessageError::MissingField(name))
    }

    /// `<MsgId>`: WeChat's 64-bit message id, the dedup key of every message (§2.2). An empty or
    /// non-numeric one would make every such push of a user look like the first: malformed.
    fn msg_id(&self) -> Result<String, MessageError> {
        let id = self.req("MsgId")?;
        let id = id.trim();
        if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed(format!("<MsgId> {id:?} is not a message id")));
        }
        Ok(id.to_string())
    }

    /// Optional text: an empty element counts as absent.
    fn opt(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.is_empty()).cloned()
    }

    fn num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, MessageError> {
        value.parse().map_err(|_| malformed(format!("<{name}> is not a valid number: {value:?}")))
    }

    fn req_f64(&self, name: &'static str) -> Result<f64, MessageError> {
        let v: f64 = Self::num(name, &self.req(name)?)?;
        // NaN and infinities are no coordinates, and JSON cannot hold them.
        if v.is_finite() { Ok(v) } else { Err(malformed(format!("<{name}> is not finite"))) }
    }

    fn opt_f64(&self, name: &'static str) -> Result<Option<f64>, MessageError> {
        self.opt(name).map(|_| self.req_f64(name)).transpose()
    }

    /// Every field except the header fields and `skip`.
    fn rest(&self, skip: &str) -> Fields {
        let keep = |k: &str| k != skip && !HEADER_FIELDS.contains(&k);
        self.0.iter().filter(|(k, _)| keep(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Parses a plaintext push (or a decrypted safe-mode message) into a [`Push`].
///
/// `ToUserName`, `FromUserName`, `CreateTime` and `MsgType` are required, and `MsgId` for
/// every known message type (→ [`MessageError::MissingField`]); a number that does not parse
/// → `Malformed` naming the field. Unknown message types and events are kept with their fields.
pub fn parse(xml: &str) -> Result<Push, MessageError> {
    let fields = parse_fields(xml)?;
    let g = Get(&fields);
    let to_user_name = g.req("ToUserName")?;
    let from_user_name = g.req("FromUserName")?;
    let create_time = Get::num("CreateTime", &g.req("CreateTime")?)?;
    let msg_type = g.req("MsgType")?;
    let body = match msg_type.to_ascii_lowercase().as_str() {
        "text" => Body::Text { content: g.req("Content")?, msg_id: g.msg_id()?, biz_msg_menu_id: g.opt("bizmsgmenuid") },
        "image" => Body::Image { pic_url: g.req("PicUrl")?, media_id: g.req("MediaId")?, msg_id: g.msg_id()? },
        "voice" => Body::Voice {
            media_id: g.req("MediaId")?,
            format: g.req("Format")?,
            recognition: g.opt("Recognition"),
            media_id_16k: g.opt("MediaId16K"),
            msg_id: g.msg_id()?,
        },
        "video" => Body::Video { media_id: g.req("MediaId")?, thumb_media_id: g.req("ThumbMediaId")?, msg_id: g.msg_id()? },
        "shortvideo" => {
            Body::ShortVideo { media_id: g.req("MediaId")?, thumb_media_id: g.req("ThumbMediaId")?, msg_id: g.msg_id()? }
        }
        // §2.3: Location_X is the latitude, Location_Y the longitude.
        "location" => Body::Location {
            latitude: g.req_f64("Location_X")?,
            longitude: g.req_f64("Location_Y")?,
            scale: g.opt_f64("Scale")?,
            label: g.opt("Label"),
            msg_id: g.msg_id()?,
        },
        "link" => {
            Body::Link { title: g.req("Title")?, description: g.req("Description")?, url: g.req("Url")?, msg_id: g.msg_id()? }
        }
        "file" => Body::File {
            title: g.req("Title")?,
            description: g.req("Description")?,
            file_key: g.req("FileKey")?,
            file_md5: g.req("FileMd5")?,
            file_total_len: g.opt("FileTotalLen").map(|v| Get::num("FileTotalLen", &v)).transpose()?,
            msg_id: g.msg_id()?,
        },
        "event" => Body::Event(parse_event(&g)?),
        _ => Body::Unknown { msg_type, msg_id: g.opt("MsgId"), fields: g.rest("MsgId") },
    };
    Ok(Push { to_user_name, from_user_name, create_time, body })
}

/// Maps an event push by its case-insensitive `Event` name (§2.4).
fn parse_event(g: &Get<'_>) -> Result<Event, MessageError> {
    let event = g.req("Event")?;
    Ok(match event.to_ascii_lowercase().as_str() {
        "subscribe" => Event::Subscribe { event_key: g.opt("EventKey"), ticket: g.opt("Ticket") },
        "unsubscribe" => Event::Unsubscribe,
        "scan" => Event::Scan { event_key: g.req("EventKey")?, ticket: g.opt("Ticket") },
        "location" => Event::Location {
            latitude: g.req_f64("Latitude")?,
            longitude: g.req_f64("Longitude")?,
            precision: g.opt_f64("Precision")?,
        },
        "click" => Event::Click { event_key: g.req("EventKey")? },
        "view" => Event::View { url: g.req("EventKey")?, menu_id: g.opt("MenuId") },
        _ => Event::Other { fields: g.rest("Event"), event },
    })
}

/// One element's value as written: string fields in CDATA, numbers bare (§2.3, §2.4).
enum Val<'a> {
    Cdata(&'a str),
    Bare(String),
}

fn cdata(value: &str) -> Option<Val<'_>> {
    Some(Val::Cdata(value))
}

fn bare(value: impl ToString) -> Option<Val<'static>> {
    Some(Val::Bare(value.to_string()))
}

/// `<![CDATA[value]]>`, with any `]]>` in the value split across two sections.
fn cdata_section(value: &str) -> String {
    format!("<![CDATA[{}]]>", value.replace("]]>", "]]]]><![CDATA[>"))
}

/// Writes the present elements, one per line like the official samples.
fn write_elements<'a>(out: &mut String, elements: impl IntoIterator<Item = (&'a str, Option<Val<'a>>)>) {
    for (name, value) in elements {
        let text = match value {
            Some(Val::Cdata(v)) => cdata_section(v),
            Some(Val::Bare(v)) => escape(v).into_owned(),
            None => continue,
        };
        out.push_str(&format!("<{name}>{text}</{name}>\n"));
    }
}

/// Writes generic [`Fields`]: dotted keys become nested elements (the `[n]` suffix dropped);
/// all-digit values are bare, as `<MsgID>` in §2.4, the rest CDATA.
fn write_fields(out: &mut String, fields: &Fields) {
    let element = |segment: &'_ str| segment.split('[').next().unwrap_or_default().to_owned();
    let mut open: Vec<&str> = Vec::new();
    for (key, value) in fields {
        let mut parents: Vec<&str> = key.split('.').collect();
        let leaf = parents.pop().unwrap_or_default();
        let common = open.iter().zip(&parents).take_while(|(a, b)| a == b).count();
        for segment in open.drain(common..).rev() {
            out.push_str(&format!("</{}>\n", element(segment)));
        }
        for segment in &parents[common..] {
            out.push_str(&format!("<{}>", element(segment)));
        }
        open = parents;
        let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
        let value = if digits { bare(value) } else { cdata(value) };
        write_elements(out, [(element(leaf).as_str(), value)]);
    }
    for segment in open.iter().rev() {
        out.push_str(&format!("</{}>\n", element(segment)));
    }
}

/// Writes `push` in the official push shape (§2.3, §2.4): string fields in CDATA, numbers bare,
/// one element per line. [`parse`] of the result gives `push` back (except that an empty
/// optional string comes back as `None`).
pub fn to_xml(push: &Push) -> String {
    let mut out = String::from("<xml>\n");
    write_elements(
        &mut out,
        [
            ("ToUserName", cdata(&push.to_user_name)),
            ("FromUserName", cdata(&push.from_user_name)),
            ("CreateTime", bare(push.create_time)),
            ("MsgType", cdata(push.msg_type())),
        ],
    );
    let body = match &push.body {
        Body::Text { content, biz_msg_menu_id: menu, .. } => {
            vec![("Content", cdata(content)), ("bizmsgmenuid", menu.as_deref().and_then(cdata))]
        }
        Body::Image { pic_url, media_id, .. } => vec![("PicUrl", cdata(pic_url)), ("MediaId", cdata(media_id))],
        Body::Voice { media_id, format, recognition, media_id_16k, .. } => vec![
            ("MediaId", cdata(media_id)),
            ("Format", cdata(format)),
            ("Recognition", recognition.as_deref().and_then(cdata)),
            ("MediaId16K", media_id_16k.as_deref().and_then(cdata)),
        ],
        Body::Video { media_id, thumb_media_id, .. } | Body::ShortVideo { media_id, thumb_media_id, .. } => {
            vec![("MediaId", cdata(media_id)), ("ThumbMediaId", cdata(thumb_media_id))]
        }
        Body::Location { latitude, longitude, scale, label, .. } => vec![
            ("Location_X", bare(latitude)),
            ("Location_Y", bare(longitude)),
            ("Scale", scale.and_then(bare)),
            ("Label", label.as_deref().and_then(cdata)),
        ],
        Body::Link { title, description, url, .. } => {
            vec![("Title", cdata(title)), ("Description", cdata(description)), ("Url", cdata(url))]
        }
        Body::File { title, description, file_key, file_md5, file_total_len, .. } => vec![
            ("Title", cdata(title)),
            ("Description", cdata(description)),
            ("FileKey", cdata(file_key)),
            ("FileMd5", cdata(file_md5)),
            ("FileTotalLen", file_total_len.and_then(bare)),
        ],
        Body::Event(event) => event_elements(event),
        Body::Unknown { .. } => Vec::new(),
    };
    write_elements(&mut out, body);
    if let Body::Unknown { fields, .. } | Body::Event(Event::Other { fields, .. }) = &push.body {
        write_fields(&mut out, fields);
    }
    write_elements(&mut out, [("MsgId", push.msg_id().and_then(bare))]);
    out.push_str("</xml>");
    out
}

fn event_elements(event: &Event) -> Vec<(&'static str, Option<Val<'_>>)> {
    let mut elements = vec![("Event", cdata(event.name()))];
    elements.extend(match event {
        Event::Subscribe { event_key, ticket } => {
            vec![("EventKey", event_key.as_deref().and_then(cdata)), ("Ticket", ticket.as_deref().and_then(cdata))]
        }
        Event::Scan { event_key, ticket } => {
            vec![("EventKey", cdata(event_key)), ("Ticket", ticket.as_deref().and_then(cdata))]
        }
        Event::Location { latitude, longitude, precision } => {
            vec![("Latitude", bare(latitude)), ("Longitude", bare(longitude)), ("Precision", precision.and_then(bare))]
        }
        Event::Click { event_key } => vec![("EventKey", cdata(event_key))],
        // The official VIEW sample writes MenuId bare (§2.4).
        Event::View { url, menu_id } => vec![("EventKey", cdata(url)), ("MenuId", menu_id.as_deref().and_then(bare))],
        Event::Unsubscribe | Event::Other { .. } => Vec::new(),
    });
    elements
}

/// The safe-mode push body (§3.1):
/// `<xml><ToUserName><![CDATA[…]]></ToUserName><Encrypt><![CDATA[…]]></Encrypt></xml>`.
pub fn encrypted_envelope_xml(to_user_name: &str, encrypt: &str) -> String {
    let (to, encrypt) = (cdata_section(to_user_name), cdata_section(encrypt));
    format!("<xml><ToUserName>{to}</ToUserName><Encrypt>{encrypt}</Encrypt></xml>")
}

/// The encrypted passive reply (§3.5): `Encrypt`, `MsgSignature` = sha1 of the sorted
/// (token, timestamp, nonce, encrypt), our `TimeStamp`, and the `Nonce` from the request URL.
pub fn encrypted_reply_xml(encrypt: &str, msg_signature: &str, timestamp: i64, nonce: &str) -> String {
    let mut out = String::from("<xml>\n");
    write_elements(
        &mut out,
        [
            ("Encrypt", cdata(encrypt)),
            ("MsgSignature", cdata(msg_signature)),
            ("TimeStamp", bare(timestamp)),
            ("Nonce", cdata(nonce)),
        ],
    );
    out.push_str("</xml>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(push: &Push, to: &str, from: &str, time: i64) {
        assert_eq!(push.to_user_name, to);
        assert_eq!(push.from_user_name, from);
        assert_eq!(push.create_time, time);
    }

    /// `parse(to_xml(p)) == p`, and the JSON form round-trips too.
    fn assert_round_trips(push: &Push) {
        let xml = to_xml(push);
        assert_eq!(&parse(&xml).unwrap(), push, "XML round trip of:\n{xml}");
        let json = serde_json::to_string(push).unwrap();
        assert_eq!(&serde_json::from_str::<Push>(&json).unwrap(), push, "JSON round trip of {json}");
    }

    // ---- §2.3 normal messages (verbatim samples) ----

    const TEXT: &str = r#"<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[fromUser]]></FromUserName>
  <CreateTime>1348831860</CreateTime>
  <MsgType><![CDATA[text]]></MsgType>
  <Content><![CDATA[this is a test]]></Content>
  <MsgId>1234567890123456</MsgId>
  <MsgDataId>xxxx</MsgDataId>
  <Idx>xxxx</Idx>
</xml>"#;

    #[test]
    fn official_text() {
        let p = parse(TEXT).unwrap();
        header(&p, "toUser", "fromUser", 1348831860);
        assert_eq!(
            p.body,
            Body::Text { content: "this is a test".into(), msg_id: "1234567890123456".into(), biz_msg_menu_id: None }
        );
        assert_eq!(p.msg_type(), "text");
        assert_eq!(p.msg_id(), Some("1234567890123456"));
        assert_round_trips(&p);
    }

    #[test]
    fn official_image() {
        let xml = r#"<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[fromUser]]></FromUserName>
  <CreateTime>1348831860</CreateTime>
  <MsgType><![CDATA[image]]></MsgType>
  <PicUrl><![CDATA[this is a url]]></PicUrl>
  <MediaId><![CDATA[media_id]]></MediaId>
  <MsgId>1234567890123456</MsgId>
  <MsgDataId>xxxx</MsgDataId>
  <Idx>xxxx</Idx>
</xml>"#;
        let p = parse(xml).unwrap();
        header(&p, "toUser", "fromUser", 1348831860);
        assert_eq!(
            p.body,
            Body::Image { pic_url: "this is a url".into(), media_id: "media_id".into(), msg_id: "1234567890123456".into() }
        );
        assert_round_trips(&p);
    }

    #[test]
    fn official_voice() {
        let xml = r#"<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[fromUser]]></FromUserName>
  <CreateTime>1357290913</CreateTime>
  <MsgType><![CDATA[voice]]></MsgType>
  <MediaId><![CDATA[media_id]]></MediaId>
  <Format><![CDATA[Format]]></Format>
  <MsgId>1234567890123456</MsgId>
  <MsgDataId>xxxx</MsgDataId>
  <Idx>xxxx</Idx>
  <MediaId16K><![CDATA[media_id_16k]]></MediaId16K>
</xml>"#;
        let p = parse(xml).unwrap();
        header(&p, "toUser", "fromUser", 1357290913);
        assert_eq!(
            p.body,
            Body::Voice {
                media_id: "media_id".into(),
                format: "Format".into(),
                recognition: None,
                media_id_16k: Some("media_id_16k".into()),
                msg_id: "1234567890123456".into(),
            }
        );
        assert_round_trips(&p);
    }

    #[test]
    fn official_voice_with_recognition() {
        let xml = "<xml> <ToUserName><![CDATA[toUser]]></ToUserName> <FromUserName><![CDATA[fromUser]]></FromUserName> <CreateTime>1357290913</CreateTime> <MsgType><![CDATA[voice]]></MsgType> <MediaId><![CDATA[media_id]]></MediaId> <Format><![CDATA[Format]]></Format> <Recognition><![CDATA[腾讯微信团队]]></Recognition> <MsgId>1234567890123456</MsgId> </xml>";
        let p = parse(xml).unwrap();
        assert_eq!(
            p.body,
            Body::Voice {
                media_id: "media_id".into(),
                format: "Format".into(),
                recognition: Some("腾讯微信团队".into()),
                media_id_16k: None,
                msg_id: "1234567890123456".into(),
            }
        );
        assert_round_trips(&p);
        // Recognition now arrives empty (§2.3): treated as absent.
        let empty = xml.replace("腾讯微信团队", "");
        assert!(matches!(parse(&empty).unwrap().body, Body::Voice { recognition: None, .. }));
    }

    const VIDEO: &str = r#"<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[fromUser]]></FromUserName>
  <CreateTime>1357290913</CreateTime>
  <MsgType><![CDATA[video]]></MsgType>
  <MediaId><![CDATA[media_id]]></MediaId>
  <ThumbMediaId><![CDATA[thumb_media_id]]></ThumbMediaId>
  <MsgId>1234567890123456</MsgId>
  <MsgDataId>xxxx</MsgDataId>
  <Idx>xxxx</Idx>
</xml>"#;

    #[test]
    fn official_video_and_shortvideo() {
        let p = parse(VIDEO).unwrap();
        assert_eq!(
            p.body,
            Body::Video {
                media_id: "media_id".into(),
                thumb_media_id: "thumb_media_id".into(),
                msg_id: "1234567890123456".into()
            }
        );
        assert_round_trips(&p);
        let p = parse(&VIDEO.replace("[video]", "[shortvideo]")).unwrap();
        assert_eq!(
            p.body,
            Body::ShortVideo {
                media_id: "media_id".into(),
                thumb_media_id: "thumb_media_id".into(),
                msg_id: "1234567890123456".into()
            }
        );
        assert_eq!(p.msg_type(), "shortvideo");
        assert!(serde_json::to_string(&p).unwrap().contains(r#""type":"shortvideo""#));
        assert_round_trips(&p);
    }

    #[test]
    fn official_location() {
        let xml = r#"<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[fromUser]]></FromUserName>
  <CreateTime>1351776360</CreateTime>
  <MsgType><![CDATA[location]]></MsgType>
  <Location_X>23.134521</Location_X>
  <Location_Y>113.358803</Location_Y>
  <Scale>20</Scale>
  <Label><![CDATA[位置信息]]></Label>
  <MsgId>1234567890123456</MsgId>
  <MsgDataId>xxxx</MsgDataId>
  <Idx>xxxx</Idx>
</xml>"#;
        let p = parse(xml).unwrap();
        assert_eq!(
            p.body,
            Body::Location {
                latitude: 23.134521,
                longitude: 113.358803,
                scale: Some(20.0),
                label: Some("位置信息".into()),
                msg_id: "1234567890123456".into(),
            }
        );
        assert_round_trips(&p);
        let bad = xml.replace("23.134521", "north");
        match parse(&bad) {
            Err(MessageError::Malformed(m)) => assert!(m.contains("Location_X"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(&xml.replace("23.134521", "NaN")), Err(MessageError::Malformed(_))));
    }

    #[test]
    fn official_link() {
        let xml = r#"<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[fromUser]]></FromUserName>
  <CreateTime>1351776360</CreateTime>
  <MsgType><![CDATA[link]]></MsgType>
  <Title><![CDATA[公众平台官网链接]]></Title>
  <Description><![CDATA[公众平台官网链接]]></Description>
  <Url><![CDATA[url]]></Url>
  <MsgId>1234567890123456</MsgId>
  <MsgDataId>xxxx</MsgDataId>
  <Idx>xxxx</Idx>
</xml>"#;
        let p = parse(xml).unwrap();
        assert_eq!(
            p.body,
            Body::Link {
                title: "公众平台官网链接".into(),
                description: "公众平台官网链接".into(),
                url: "url".into(),
                msg_id: "1234567890123456".into(),
            }
        );
        assert_round_trips(&p);
    }

    #[test]
    fn file_message() {
        let xml = "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1357290913</CreateTime><MsgType><![CDATA[file]]></MsgType><Title><![CDATA[report.pdf]]></Title><Description><![CDATA[Q3 report]]></Description><FileKey><![CDATA[fk_123]]></FileKey><FileMd5><![CDATA[5a6fa8d8bd0a2b0b8c1e3c1d2f3a4b5c]]></FileMd5><FileTotalLen>102400</FileTotalLen><MsgId>1234567890123456</MsgId></xml>";
        let p = parse(xml).unwrap();
        assert_eq!(
            p.body,
            Body::File {
                title: "report.pdf".into(),
                description: "Q3 report".into(),
                file_key: "fk_123".into(),
                file_md5: "5a6fa8d8bd0a2b0b8c1e3c1d2f3a4b5c".into(),
                file_total_len: Some(102400),
                msg_id: "1234567890123456".into(),
            }
        );
        assert_round_trips(&p);
        match parse(&xml.replace("102400", "-1")) {
            Err(MessageError::Malformed(m)) => assert!(m.contains("FileTotalLen"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_msg_type_is_kept() {
        let xml = "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1482048670</CreateTime><MsgType><![CDATA[miniprogrampage]]></MsgType><MsgId>1234567890123456</MsgId><Title><![CDATA[Title]]></Title><AppId><![CDATA[AppId]]></AppId><PagePath><![CDATA[PagePath]]></PagePath><ThumbUrl><![CDATA[ThumbUrl]]></ThumbUrl><ThumbMediaId><![CDATA[ThumbMediaId]]></ThumbMediaId></xml>";
        let p = parse(xml).unwrap();
        let Body::Unknown { msg_type, msg_id, fields } = &p.body else { panic!("{p:?}") };
        assert_eq!(msg_type, "miniprogrampage");
        assert_eq!(msg_id.as_deref(), Some("1234567890123456"));
        assert_eq!(fields.len(), 5);
        assert_eq!(fields["PagePath"], "PagePath");
        assert_eq!(p.msg_type(), "miniprogrampage");
        assert_eq!(p.dedup_key(), "msg:fromUser:1234567890123456");
        assert_round_trips(&p);
        // Without MsgId the unknown type is still accepted and dedups like an event.
        let p = parse(&xml.replace("<MsgId>1234567890123456</MsgId>", "")).unwrap();
        assert_eq!(p.msg_id(), None);
        assert_eq!(p.dedup_key(), "evt:fromUser:1482048670:miniprogrampage");
        assert_round_trips(&p);
    }

    #[test]
    fn bizmsgmenuid_and_wecom_plaintext() {
        // Decrypted WeCom sample (§3.7 V1): newline-separated, with AgentID.
        let xml = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<FromUserName><![CDATA[mycreate]]></FromUserName>\n<CreateTime>1409659813</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n<MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>";
        let p = parse(xml).unwrap();
        assert_eq!(p.msg_id(), Some("4561255354251345929"));
        let with_menu = xml.replace("<AgentID>", "<bizmsgmenuid>101</bizmsgmenuid><AgentID>");
        let p = parse(&with_menu).unwrap();
        assert!(matches!(&p.body, Body::Text { biz_msg_menu_id: Some(id), .. } if id == "101"));
        assert_round_trips(&p);
    }

    // ---- §2.4 events (verbatim samples) ----

    #[test]
    fn official_subscribe_and_unsubscribe() {
        let xml = r#"<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[FromUser]]></FromUserName>
  <CreateTime>123456789</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[subscribe]]></Event>
</xml>"#;
        let p = parse(xml).unwrap();
        header(&p, "toUser", "FromUser", 123456789);
        assert_eq!(p.body, Body::Event(Event::Subscribe { event_key: None, ticket: None }));
        assert_eq!(p.msg_type(), "event");
        assert_eq!(p.msg_id(), None);
        assert_round_trips(&p);
        let p = parse(&xml.replace("[subscribe]", "[unsubscribe]")).unwrap();
        assert_eq!(p.body, Body::Event(Event::Unsubscribe));
        assert_round_trips(&p);
        // A plain subscribe often carries an empty EventKey: still None.
        let empty_key = xml.replace("</Event>", "</Event><EventKey><![CDATA[]]></EventKey>");
        assert_eq!(parse(&empty_key).unwrap().body, Body::Event(Event::Subscribe { event_key: None, ticket: None }));
    }

    #[test]
    fn official_subscribe_via_qr_scene() {
        let xml = r#"<xml><ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[FromUser]]></FromUserName>
<CreateTime>123456789</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[subscribe]]></Event>
<EventKey><![CDATA[qrscene_123123]]></EventKey>
<Ticket><![CDATA[TICKET]]></Ticket>
</xml>"#;
        let p = parse(xml).unwrap();
        assert_eq!(
            p.body,
            Body::Event(Event::Subscribe { event_key: Some("qrscene_123123".into()), ticket: Some("TICKET".into()) })
        );
        assert_round_trips(&p);
    }

    const SCAN: &str = r#"<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[FromUser]]></FromUserName>
<CreateTime>123456789</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[SCAN]]></Event>
<EventKey><![CDATA[SCENE_VALUE]]></EventKey>
<Ticket><![CDATA[TICKET]]></Ticket>
</xml>"#;

    #[test]
    fn official_scan_and_lowercase_scan() {
        let expected = Body::Event(Event::Scan { event_key: "SCENE_VALUE".into(), ticket: Some("TICKET".into()) });
        let p = parse(SCAN).unwrap();
        assert_eq!(p.body, expected);
        assert_round_trips(&p);
        assert_eq!(parse(&SCAN.replace("[SCAN]", "[scan]")).unwrap().body, expected);
        assert_eq!(parse(&SCAN.replace("[SCAN]", "[Scan]")).unwrap().body, expected);
    }

    #[test]
    fn official_location_event() {
        let xml = r#"<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[fromUser]]></FromUserName>
  <CreateTime>123456789</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[LOCATION]]></Event>
  <Latitude>23.137466</Latitude>
  <Longitude>113.352425</Longitude>
  <Precision>119.385040</Precision>
</xml>"#;
        let p = parse(xml).unwrap();
        assert_eq!(
            p.body,
            Body::Event(Event::Location { latitude: 23.137466, longitude: 113.352425, precision: Some(119.38504) })
        );
        assert_round_trips(&p);
        assert_eq!(parse(&xml.replace("LOCATION", "location")).unwrap().body, p.body);
        assert!(matches!(parse(&xml.replace("<Latitude>23.137466</Latitude>", "")), Err(MessageError::MissingField("Latitude"))));
    }

    const CLICK: &str = r#"<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[FromUser]]></FromUserName>
  <CreateTime>123456789</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[CLICK]]></Event>
  <EventKey><![CDATA[EVENTKEY]]></EventKey>
</xml>"#;

    #[test]
    fn official_click_and_lowercase_click() {
        let expected = Body::Event(Event::Click { event_key: "EVENTKEY".into() });
        let p = parse(CLICK).unwrap();
        assert_eq!(p.body, expected);
        assert_round_trips(&p);
        assert_eq!(parse(&CLICK.replace("[CLICK]", "[click]")).unwrap().body, expected);
    }

    #[test]
    fn official_view_with_menu_id() {
        let xml = r#"<xml>
<ToUserName><![CDATA[toUser]]></ToUserName>
<FromUserName><![CDATA[FromUser]]></FromUserName>
<CreateTime>123456789</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[VIEW]]></Event>
<EventKey><![CDATA[www.qq.com]]></EventKey>
<MenuId>MENUID</MenuId>
</xml>"#;
        let p = parse(xml).unwrap();
        assert_eq!(p.body, Body::Event(Event::View { url: "www.qq.com".into(), menu_id: Some("MENUID".into()) }));
        assert_round_trips(&p);
        assert!(to_xml(&p).contains("<MenuId>MENUID</MenuId>"));
    }

    #[test]
    fn official_templatesendjobfinish_is_other() {
        let xml = r#"<xml>
<ToUserName><![CDATA[touser]]></ToUserName>
<FromUserName><![CDATA[fromuser]]></FromUserName>
<CreateTime>1395658920</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>
<MsgID>200163836</MsgID>
<Status><![CDATA[success]]></Status>
</xml>"#;
        let p = parse(xml).unwrap();
        let Body::Event(Event::Other { event, fields }) = &p.body else { panic!("{p:?}") };
        assert_eq!(event, "TEMPLATESENDJOBFINISH");
        // The event's `MsgID` spelling (capital D) is kept as a field, not a MsgId.
        assert_eq!(fields.get("MsgID").map(String::as_str), Some("200163836"));
        assert_eq!(fields.get("Status").map(String::as_str), Some("success"));
        assert_eq!(fields.len(), 2);
        assert_eq!(p.msg_id(), None);
        assert_eq!(p.dedup_key(), "evt:fromuser:1395658920:TEMPLATESENDJOBFINISH");
        assert_round_trips(&p);
        assert!(to_xml(&p).contains("<MsgID>200163836</MsgID>"));
    }

    #[test]
    fn official_scancode_waitmsg_is_other_with_nested_fields() {
        let xml = r#"<xml><ToUserName><![CDATA[gh_e136c6e50636]]></ToUserName>
<FromUserName><![CDATA[oMgHVjngRipVsoxg6TuX3vz6glDg]]></FromUserName>
<CreateTime>1408090606</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[scancode_waitmsg]]></Event>
<EventKey><![CDATA[6]]></EventKey>
<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>
<ScanResult><![CDATA[2]]></ScanResult>
</ScanCodeInfo>
</xml>"#;
        let p = parse(xml).unwrap();
        let Body::Event(Event::Other { event, fields }) = &p.body else { panic!("{p:?}") };
        assert_eq!(event, "scancode_waitmsg");
        let expected: Fields = [("EventKey", "6"), ("ScanCodeInfo.ScanResult", "2"), ("ScanCodeInfo.ScanType", "qrcode")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(fields, &expected);
        assert_round_trips(&p);
    }

    #[test]
    fn repeated_nested_elements_get_an_index() {
        let xml = "<xml><ToUserName>t</ToUserName><FromUserName>f</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>pic_weixin</Event><EventKey>k</EventKey><SendPicsInfo><Count>2</Count><PicList><item><PicMd5Sum><![CDATA[aaa]]></PicMd5Sum></item><item><PicMd5Sum><![CDATA[bbb]]></PicMd5Sum></item></PicList></SendPicsInfo></xml>";
        let fields = parse_fields(xml).unwrap();
        assert_eq!(fields["SendPicsInfo.Count"], "2");
        assert_eq!(fields["SendPicsInfo.PicList.item.PicMd5Sum"], "aaa");
        assert_eq!(fields["SendPicsInfo.PicList.item[2].PicMd5Sum"], "bbb");
        assert!(!fields.contains_key("SendPicsInfo"));
        assert_round_trips(&parse(xml).unwrap());
    }

    // ---- text handling ----

    fn content_of(inner: &str) -> String {
        let xml = format!(
            "<xml><ToUserName>t</ToUserName><FromUserName>f</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>{inner}</Content><MsgId>1</MsgId></xml>"
        );
        match parse(&xml).unwrap().body {
            Body::Text { content, .. } => content,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cdata_is_literal_and_text_is_unescaped() {
        assert_eq!(content_of("<![CDATA[<b>&amp; 你好]]>"), "<b>&amp; 你好");
        assert_eq!(content_of("&lt;b&gt; &amp;amp; &#20320;&#x597D; &quot;&apos;"), "<b> &amp; 你好 \"'");
        // Text is trimmed of XML whitespace; CDATA keeps its spaces; U+3000 is not XML whitespace.
        assert_eq!(content_of("\n   plain text \n "), "plain text");
        assert_eq!(content_of("\n  <![CDATA[  padded  ]]>\n  "), "  padded  ");
        assert_eq!(content_of("\u{3000}全角\u{3000}"), "\u{3000}全角\u{3000}");
        assert_eq!(content_of("a<![CDATA[b]]>c"), "abc");
        assert_eq!(content_of(""), "");
        assert_eq!(content_of("<!-- note -->x"), "x");
    }

    #[test]
    fn cdata_terminator_in_values_round_trips() {
        let push = Push {
            to_user_name: "gh_1".into(),
            from_user_name: "o_1".into(),
            create_time: 1,
            body: Body::Text { content: "a]]>b]]]]>c<![CDATA[d&amp;".into(), msg_id: "7".into(), biz_msg_menu_id: None },
        };
        let xml = to_xml(&push);
        assert!(xml.contains("]]]]><![CDATA[>"), "{xml}");
        assert_round_trips(&push);
    }

    // ---- hostile and broken input ----

    #[test]
    fn billion_laughs_is_forbidden() {
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<xml><ToUserName>t</ToUserName><FromUserName>f</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&lol2;</Content><MsgId>1</MsgId></xml>"#;
        assert!(matches!(parse(xml), Err(MessageError::DoctypeForbidden)));
        assert!(matches!(parse_fields(xml), Err(MessageError::DoctypeForbidden)));
    }

    #[test]
    fn external_entity_is_forbidden() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><ToUserName>&xxe;</ToUserName></xml>"#;
        assert!(matches!(parse(xml), Err(MessageError::DoctypeForbidden)));
        let inner = "<xml><ToUserName>t</ToUserName><!DOCTYPE x SYSTEM \"http://evil/\"></xml>";
        assert!(matches!(parse_fields(inner), Err(MessageError::DoctypeForbidden)));
        let bare_entity = r#"<xml><!ENTITY x SYSTEM "file:///etc/passwd"><ToUserName>t</ToUserName></xml>"#;
        assert!(matches!(parse_fields(bare_entity), Err(MessageError::DoctypeForbidden)));
        // The same text inside CDATA is just text.
        let fields = parse_fields("<xml><Content><![CDATA[<!DOCTYPE html><!ENTITY x>]]></Content></xml>").unwrap();
        assert_eq!(fields["Content"], "<!DOCTYPE html><!ENTITY x>");
    }

    #[test]
    fn malformed_documents() {
        for xml in [
            "",
            "   \n ",
            "hello",
            "<xml><ToUserName>t</ToUserName>",
            "<xml><ToUserName>t</xml>",
            "<xml><ToUserName>t</FromUserName></xml>",
            "</xml>",
            "<xml></xml>trailing",
            "<xml></xml><xml></xml>",
            "junk<xml></xml>",
            "<xml><a>x & y</a></xml>",
            "<xml><a>x < y</a></xml>",
            "<xml><a>&foo;</a></xml>",
            "<xml><a>&#0;</a></xml>",
            "<xml><a b=></a></xml>",
            "<xml><a b='1' b='2'></a></xml>",
            "<xml><1a>x</1a></xml>",
            "<xml>loose text</xml>",
            "<xml><![CDATA[loose]]></xml>",
            "<xml><a><![CDATA[unterminated</a></xml>",
            "<xml><?xml version=\"1.0\"?></xml>",
            "\u{0}\u{1}\u{2}binary",
        ] {
            assert!(matches!(parse_fields(xml), Err(MessageError::Malformed(_))), "{xml:?} gave {:?}", parse_fields(xml));
        }
    }

    #[test]
    fn root_must_be_xml() {
        let xml = "<root><ToUserName>t</ToUserName></root>";
        match parse(xml) {
            Err(MessageError::Malformed(m)) => assert!(m.contains("root"), "{m}"),
            other => panic!("{other:?}"),
        }
        // A declaration and comments around the root are fine; `<xml/>` is an empty root.
        assert!(parse_fields("<?xml version=\"1.0\"?><!-- c --><xml><a>1</a></xml><!-- d -->\n").is_ok());
        assert!(parse_fields("<xml/>").unwrap().is_empty());
        // quick-xml skips a UTF-8 byte-order mark itself.
        assert_eq!(parse_fields("\u{feff}<xml><a>1</a></xml>").unwrap()["a"], "1");
    }

    #[test]
    fn depth_is_limited() {
        let nest = |n: usize| {
            let open: String = (1..n).map(|i| format!("<e{i}>")).collect();
            let close: String = (1..n).rev().map(|i| format!("</e{i}>")).collect();
            format!("<xml>{open}v{close}</xml>")
        };
        let ok = parse_fields(&nest(8)).unwrap();
        assert_eq!(ok["e1.e2.e3.e4.e5.e6.e7"], "v");
        assert!(matches!(parse_fields(&nest(9)), Err(MessageError::TooDeep)));
        assert!(matches!(parse_fields(&nest(10_000)), Err(MessageError::TooDeep)));
    }

    #[test]
    fn missing_and_bad_required_fields() {
        let no_from = TEXT.replace("<FromUserName><![CDATA[fromUser]]></FromUserName>", "");
        assert!(matches!(parse(&no_from), Err(MessageError::MissingField("FromUserName"))));
        let no_id = TEXT.replace("<MsgId>1234567890123456</MsgId>", "");
        assert!(matches!(parse(&no_id), Err(MessageError::MissingField("MsgId"))));
        let no_type = TEXT.replace("<MsgType><![CDATA[text]]></MsgType>", "");
        assert!(matches!(parse(&no_type), Err(MessageError::MissingField("MsgType"))));
        let no_event = CLICK.replace("<Event><![CDATA[CLICK]]></Event>", "");
        assert!(matches!(parse(&no_event), Err(MessageError::MissingField("Event"))));
        match parse(&TEXT.replace("1348831860", "yesterday")) {
            Err(MessageError::Malformed(m)) => assert!(m.contains("CreateTime"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    // ---- envelopes, replies, dedup, JSON ----

    #[test]
    fn encrypted_envelope_safe_and_compatible() {
        let wecom = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA[RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==]]></Encrypt></xml>";
        let env = parse_encrypted_envelope(wecom).unwrap();
        assert_eq!(env.to_user_name.as_deref(), Some("wx5823bf96d3bd56c7"));
        assert!(env.encrypt.as_deref().unwrap().starts_with("RypEvHKD8QQ"));
        assert_eq!(encrypted_envelope_xml("wx5823bf96d3bd56c7", env.encrypt.as_deref().unwrap()), wecom);
        // Compatible mode: plaintext fields plus <Encrypt>.
        let compatible = TEXT.replace("</xml>", "<Encrypt><![CDATA[abc=]]></Encrypt>\n</xml>");
        let env = parse_encrypted_envelope(&compatible).unwrap();
        assert_eq!(env, Envelope { to_user_name: Some("toUser".into()), encrypt: Some("abc=".into()) });
        assert!(parse(&compatible).is_ok());
        // Plaintext mode: no Encrypt.
        assert_eq!(parse_encrypted_envelope(TEXT).unwrap().encrypt, None);
    }

    #[test]
    fn encrypted_reply_matches_wechatpy() {
        // §3.7 V4 expected reply, byte for byte.
        let expected = "<xml>\n<Encrypt><![CDATA[9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3]]></Encrypt>\n<MsgSignature><![CDATA[407518b7649e86ef23978113f92d27afa9296533]]></MsgSignature>\n<TimeStamp>1411525903</TimeStamp>\n<Nonce><![CDATA[461056294]]></Nonce>\n</xml>";
        let encrypt = "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3";
        let xml = encrypted_reply_xml(encrypt, "407518b7649e86ef23978113f92d27afa9296533", 1411525903, "461056294");
        assert_eq!(xml, expected);
        let fields = parse_fields(&xml).unwrap();
        assert_eq!(fields["TimeStamp"], "1411525903");
        assert_eq!(fields["Encrypt"], encrypt);
    }

    #[test]
    fn an_empty_or_non_numeric_msg_id_is_malformed() {
        for bad in ["", " ", "abc", "12a", "123456789012345678901"] {
            let xml = TEXT.replace("<MsgId>1234567890123456</MsgId>", &format!("<MsgId>{bad}</MsgId>"));
            assert_ne!(xml, TEXT);
            assert!(matches!(parse(&xml), Err(MessageError::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn dedup_keys() {
        assert_eq!(parse(TEXT).unwrap().dedup_key(), "msg:fromUser:1234567890123456");
        assert_eq!(parse(CLICK).unwrap().dedup_key(), "evt:FromUser:123456789:CLICK");
        assert_eq!(parse(SCAN).unwrap().dedup_key(), "evt:FromUser:123456789:SCAN");
        // Same MsgId from two users: different keys (WxJava #333).
        let other_user = TEXT.replace("[fromUser]", "[otherUser]");
        assert_ne!(parse(TEXT).unwrap().dedup_key(), parse(&other_user).unwrap().dedup_key());
    }

    #[test]
    fn every_variant_round_trips_through_xml_and_json() {
        let fields: Fields = [("A", "x ]]> y"), ("Nested.Inner", "1"), ("Nested.Other", "two"), ("Empty", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let id = || "9223372036854775807".to_owned();
        let bodies = vec![
            Body::Text { content: "hi <b> & 你好".into(), msg_id: id(), biz_msg_menu_id: Some("101".into()) },
            Body::Image { pic_url: "http://mmbiz/x?a=1&b=2".into(), media_id: "m".into(), msg_id: id() },
            Body::Voice {
                media_id: "m".into(),
                format: "amr".into(),
                recognition: Some("r".into()),
                media_id_16k: Some("m16".into()),
                msg_id: id(),
            },
            Body::Voice { media_id: "m".into(), format: "amr".into(), recognition: None, media_id_16k: None, msg_id: id() },
            Body::Video { media_id: "m".into(), thumb_media_id: "t".into(), msg_id: id() },
            Body::ShortVideo { media_id: "m".into(), thumb_media_id: "t".into(), msg_id: id() },
            Body::Location {
                latitude: -33.8688,
                longitude: 151.2093,
                scale: Some(15.0),
                label: Some("Sydney".into()),
                msg_id: id(),
            },
            Body::Location { latitude: 0.0, longitude: 0.0, scale: None, label: None, msg_id: id() },
            Body::Link { title: "t".into(), description: "d".into(), url: "u".into(), msg_id: id() },
            Body::File {
                title: "f".into(),
                description: "d".into(),
                file_key: "k".into(),
                file_md5: "m".into(),
                file_total_len: Some(u64::MAX),
                msg_id: id(),
            },
            Body::File {
                title: "f".into(),
                description: "".into(),
                file_key: "k".into(),
                file_md5: "m".into(),
                file_total_len: None,
                msg_id: id(),
            },
            Body::Event(Event::Subscribe { event_key: Some("qrscene_1".into()), ticket: Some("T".into()) }),
            Body::Event(Event::Subscribe { event_key: None, ticket: None }),
            Body::Event(Event::Unsubscribe),
            Body::Event(Event::Scan { event_key: "1".into(), ticket: None }),
            Body::Event(Event::Location { latitude: 1.5, longitude: -2.25, precision: Some(30.0) }),
            Body::Event(Event::Location { latitude: 1.5, longitude: -2.25, precision: None }),
            Body::Event(Event::Click { event_key: "K".into() }),
            Body::Event(Event::View { url: "https://a/?x=1&y=2".into(), menu_id: Some("3".into()) }),
            Body::Event(Event::View { url: "https://a/".into(), menu_id: None }),
            Body::Event(Event::Other { event: "kf_close_session".into(), fields: fields.clone() }),
            Body::Unknown { msg_type: "miniprogrampage".into(), msg_id: Some(id()), fields: fields.clone() },
            Body::Unknown { msg_type: "weird".into(), msg_id: None, fields: Fields::new() },
        ];
        for body in bodies {
            let push = Push { to_user_name: "gh_abc".into(), from_user_name: "oUser".into(), create_time: 1714112445, body };
            assert_round_trips(&push);
        }
    }

    #[test]
    fn json_shape() {
        let p = parse(CLICK).unwrap();
        let v: serde_json::Value = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "to_user_name": "toUser",
                "from_user_name": "FromUser",
                "create_time": 123456789,
                "body": {"type": "event", "event_type": "click", "event_key": "EVENTKEY"}
            })
        );
        let v = serde_json::to_value(parse(TEXT).unwrap()).unwrap();
        assert_eq!(v["body"]["type"], "text");
        assert_eq!(v["body"]["msg_id"], "1234567890123456");
    }
}
