//! The bridge's own message types: what the relay stores and moves, independent of WeChat's XML
//! and Vonage's JSON. `wechat/` converts pushes into these; `vonage/` turns them into events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::ids::{BridgeMessageId, ContactId, ErrorCode};

/// Where a stored message is in its life: stored (in the outbox), delivered, or failed for good.
/// Stored as today's lower-case text, serialized the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
pub enum MessageStatus {
    Stored,
    Delivered,
    Failed,
}

/// Which way a message goes: from a customer (channel → platform) or to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Stored => "stored",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Failed => "failed",
        }
    }
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl std::fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the stored text (`record.status == "delivered"`).
impl PartialEq<&str> for MessageStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<&str> for Direction {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A message (or event) a customer produced on the channel, on its way to the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// The account the customer wrote to (WeChat: the Official Account's `gh_…` id).
    pub account: String,
    /// The customer's id on the channel (WeChat: OpenID).
    pub sender: String,
    /// text, image, voice, video, shortvideo, location, link, file, event, or the channel's own name.
    pub msg_type: String,
    /// The channel's message id, when it has one (events have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<String>,
    /// Unix seconds, as stamped by the channel.
    pub create_time: i64,
    /// Readable text for any client: the text itself, or a summary such as `[image]`.
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventInfo>,
}

/// Media attached to an inbound message; `media_id` is fetched later through the channel's API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Media {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    /// A URL a client can fetch: the bridge's signed `/media/{id}` link when BRIDGE_PUBLIC_URL
    /// is set, else WeChat's `PicUrl` for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// WeChat's own CDN link of an image (`PicUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pic_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb_media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id_16k: Option<String>,
    /// Speech recognition text, when the channel provides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recognition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub title: String,
    pub description: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileInfo {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A channel event (follow, menu click, scan, location report …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInfo {
    /// Lower-case event name: subscribe, unsubscribe, scan, location, click, view, or as received.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub menu_id: Option<String>,
    /// Every other field of an event the bridge has no type for, kept as received.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

/// The ids platforms gave a contact, by (platform, kind): Vonage's user, conversation, member.
pub type ContactLinks = BTreeMap<(String, String), String>;

/// A contact as stored: the customer on the channel (channel, account, channel id) and the ids
/// platforms gave them (`links`), each saved as soon as it exists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contact {
    pub id: ContactId,
    pub channel_id: String,
    pub account: String,
    pub links: ContactLinks,
    /// When the customer last wrote (Unix ms): opens the channel's reply window.
    pub last_inbound_at: Option<i64>,
    /// Replies sent in the current window.
    pub window_sends: i64,
    /// Until when the channel accepts replies (Unix ms), and how many.
    pub window_until: Option<i64>,
    pub window_quota: Option<i64>,
}

impl Contact {
    /// The id `platform` gave this contact for `kind`, if any.
    pub fn link(&self, platform: &str, kind: &str) -> Option<&str> {
        self.links.get(&(platform.to_string(), kind.to_string())).map(String::as_str)
    }
}

/// A message an agent wrote on the platform, on its way to the customer on the channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// text, image, voice, video or news (a link card).
    pub msg_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Media to download and upload to the channel first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    /// Media already known to the channel (WeChat media_id), used as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb_media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pic_url: Option<String>,
}

impl OutboundMessage {
    pub fn text(content: String) -> Self {
        Self { msg_type: "text".into(), content: Some(content), ..Self::default() }
    }
}

/// An outbound message as stored: what to send, and where it came from on the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundRecord {
    pub conversation_id: String,
    pub platform_event_id: String,
    pub message: OutboundMessage,
    /// The sender's own reference for the message, given back with its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_reference: Option<String>,
    /// Further pieces of the same platform message, sent after `message` in order (a reply's
    /// attachments after its text); one outcome is reported for all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<OutboundMessage>,
}

impl OutboundRecord {
    /// The message and its further pieces, in the order they are sent.
    pub fn pieces(&self) -> impl Iterator<Item = &OutboundMessage> {
        std::iter::once(&self.message).chain(&self.more)
    }
}

/// The outcome of an outbound message, reported back to the platform.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub bridge_message_id: BridgeMessageId,
    pub platform_event_id: String,
    pub delivered: bool,
    pub error: Option<ErrorInfo>,
    /// The sender's reference given with the message, if any.
    pub client_reference: Option<String>,
    /// Which report of this message this is (a retried failure is reported again): the same on
    /// every delivery attempt of one report, different between reports.
    pub report_seq: i64,
}

/// An error as the channel reported it (WeChat errcode and errmsg).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorInfo {
    pub code: Option<ErrorCode>,
    pub message: String,
    /// What the code means for the agent, in words (`Channel::explain`), when the channel knows it.
    pub explanation: Option<String>,
}
