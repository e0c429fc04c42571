//! WeChat as the relay's channel: agents' messages go out through the customer-service API
//! (`wechat-api.md` §6), inside the 48-hour window and its quota, long texts split in order.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::client::{WeChatClient, WeChatError};
use super::media_fetch::{FetchError, MediaFetcher};
use super::openid::OpenId;
use crate::metrics::WindowRefusal;
use crate::relay::message::{Contact, ErrorCode, Media, OutboundMessage};
use crate::relay::{Channel, DeliveryError, MediaFile};

/// WeChat refuses texts over 2,048 bytes with 45002 (§6.2).
pub const MAX_TEXT_BYTES: usize = 2048;
/// Media downloaded from an agent's URL is capped at WeChat's largest upload (10 MB, §7.1).
const MAX_MEDIA_BYTES: usize = 10 << 20;

/// The WeChat channel.
#[derive(Debug)]
pub struct WeChatChannel {
    client: Arc<WeChatClient>,
    /// Downloads agents' `media.url`s; public addresses only unless told otherwise.
    fetcher: MediaFetcher,
}

impl WeChatChannel {
    /// The channel on `client`; agents' media URLs may reach public addresses only.
    /// Sends through `client`; downloads agents' media URLs with `fetcher` (built from
    /// `BRIDGE_MEDIA_FETCH_ALLOWLIST`).
    pub fn new(client: Arc<WeChatClient>, fetcher: MediaFetcher) -> Self {
        Self { client, fetcher }
    }

    /// The `custom/send` body for one part (§6.3), uploading media given by URL first.
    async fn body(&self, openid: &OpenId, msg: &OutboundMessage) -> Result<Value, DeliveryError> {
        let openid = openid.as_str();
        let body = match msg.msg_type.as_str() {
            "text" => json!({"touser": openid, "msgtype": "text", "text": {"content": msg.content.clone().unwrap_or_default()}}),
            "image" | "voice" => {
                let media_id = self.media_id(msg).await?;
                json!({"touser": openid, "msgtype": msg.msg_type, (msg.msg_type.as_str()): {"media_id": media_id}})
            }
            "video" => {
                let media_id = self.media_id(msg).await?;
                json!({"touser": openid, "msgtype": "video", "video": {
                    "media_id": media_id, "thumb_media_id": msg.thumb_media_id.clone().unwrap_or_default(),
                    "title": msg.title.clone().unwrap_or_default(), "description": msg.description.clone().unwrap_or_default()}})
            }
            "news" => json!({"touser": openid, "msgtype": "news", "news": {"articles": [{
                "title": msg.title, "description": msg.description.clone().unwrap_or_default(),
                "url": msg.url, "picurl": msg.pic_url.clone().unwrap_or_default()}]}}),
            other => {
                return Err(DeliveryError::Permanent { code: None, reason: format!("msgtype {other} cannot be sent to WeChat") });
            }
        };
        Ok(body)
    }

    /// A `media_id` as given, or obtained by downloading `media_url` and uploading it (§7.1).
    async fn media_id(&self, msg: &OutboundMessage) -> Result<String, DeliveryError> {
        if let Some(id) = &msg.media_id {
            return Ok(id.clone());
        }
        let url = msg.media_url.as_deref().ok_or_else(|| DeliveryError::Permanent {
            code: None,
            reason: format!("{} without media_url or media_id", msg.msg_type),
        })?;
        // Agents' URLs go through the fetcher's address policy: the bytes end up with a customer,
        // so a URL must not read the bridge's own network.
        let (content_type, bytes) = self.fetcher.fetch(url, MAX_MEDIA_BYTES).await.map_err(fetch_failed)?;
        let filename = url
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && n.len() < 100)
            .unwrap_or("media")
            .split('?')
            .next()
            .unwrap_or("media");
        self.client.upload_media(&msg.msg_type, filename, &content_type, bytes).await.map_err(classify)
    }
}

impl Channel for WeChatChannel {
    fn split(&self, msg: &OutboundMessage) -> Vec<OutboundMessage> {
        match (&msg.msg_type[..], &msg.content) {
            ("text", Some(content)) if content.len() > MAX_TEXT_BYTES => {
                split_text(content, MAX_TEXT_BYTES).into_iter().map(OutboundMessage::text).collect()
            }
            _ => vec![msg.clone()],
        }
    }

    /// Each refusal counts in `bridge_reply_window_refusals_total` (the worker's, and the
    /// webhook platform's check before it stores a message).
    fn check_window(&self, contact: &Contact, parts: usize) -> Result<(), DeliveryError> {
        // The window was recorded as the customer's messages and events arrived (see
        // `wechat::inbound::window_change`); failing here gives the answer WeChat would (45015,
        // 45047) without spending a call on it.
        let now = crate::store::now_ms();
        if contact.window_until.is_none_or(|until| until <= now) {
            self.client.metrics().window_refused(WindowRefusal::Closed);
            return Err(DeliveryError::Permanent {
                code: Some("45015".into()),
                reason: "outside the reply window: the customer has not written in the last 48 hours (or unsubscribed)".into(),
            });
        }
        let quota = contact.window_quota.unwrap_or(0);
        if contact.window_sends + parts as i64 > quota {
            self.client.metrics().window_refused(WindowRefusal::Quota);
            return Err(DeliveryError::Permanent {
                code: Some("45047".into()),
                reason: format!("reply quota used up: {} of {quota} replies sent in this window", contact.window_sends),
            });
        }
        Ok(())
    }

    fn send<'a>(&'a self, contact: &'a Contact, msg: &'a OutboundMessage) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let openid = OpenId::parse(&contact.channel_id)
                .map_err(|e| DeliveryError::Permanent { code: None, reason: format!("contact's OpenID: {e}") })?;
            let body = self.body(&openid, msg).await?;
            self.client.send(&body).await.map_err(classify)
        })
    }

    /// `media/get` (§7.2): the customer's file, named by its media id and type. Customers' media
    /// live 3 days on WeChat (§7.3), so a 40007 is permanent.
    fn fetch_media<'a>(&'a self, media: &'a Media) -> BoxFuture<'a, Result<MediaFile, DeliveryError>> {
        Box::pin(async move {
            let media_id = media
                .media_id
                .as_deref()
                .ok_or_else(|| DeliveryError::Permanent { code: None, reason: "the message has no media_id".into() })?;
            let (content_type, bytes) = self.client.download_media(media_id).await.map_err(classify)?;
            let extension = extension_of(&content_type, media.format.as_deref());
            let stem: String =
                media_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(64).collect();
            Ok(MediaFile { filename: format!("{stem}.{extension}"), content_type, bytes })
        })
    }

    fn explain(&self, code: &ErrorCode) -> Option<&'static str> {
        explain(code)
    }
}

/// What WeChat's customer-service error codes mean for an agent (`wechat-api.md` §5.3, §6.2).
pub fn explain(code: &str) -> Option<&'static str> {
    Some(match code {
        "45015" => "the customer has not written in 48 hours; they must write first",
        "45047" => "reply limit reached: WeChat allows 5 replies per customer message; wait for the customer to write again",
        "43004" => "the customer has unfollowed the Official Account",
        "40003" => "this customer is unknown to the Official Account (invalid OpenID)",
        "45002" => "the message is too long for WeChat",
        "40007" | "40004" => "the attachment could not be sent: WeChat refused the file (wrong type, too large, or expired)",
        "48001" => "the Official Account is not allowed to send customer-service messages (unverified account)",
        "45009" => "the Official Account used up its API quota for today",
        "40164" => "WeChat refused the bridge's IP address (add it to the IP whitelist)",
        "40001" | "40125" | "40013" => "WeChat refused the bridge's credentials (check WECHAT_APP_ID and WECHAT_APP_SECRET)",
        "-1" => "WeChat was busy; the bridge gave up after retrying",
        _ => return None,
    })
}

/// A file extension for downloaded media: from its content type, else the push's `Format`.
fn extension_of(content_type: &str, format: Option<&str>) -> String {
    let mime = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let known = match mime.as_str() {
        "image/jpeg" | "image/jpg" => Some("jpg"),
        "image/png" => Some("png"),
        "image/gif" => Some("gif"),
        "audio/amr" => Some("amr"),
        "audio/mpeg" | "audio/mp3" => Some("mp3"),
        "audio/speex" => Some("speex"),
        "video/mp4" => Some("mp4"),
        _ => None,
    };
    known
        .map(str::to_string)
        .or_else(|| {
            format
                .map(|f| f.to_ascii_lowercase())
                .filter(|f| !f.is_empty() && f.len() <= 8 && f.chars().all(|c| c.is_ascii_alphanumeric()))
        })
        .unwrap_or_else(|| "bin".into())
}

/// Splits `text` into parts of at most `max` bytes, on UTF-8 boundaries, preferring to break
/// after a newline or space in the last quarter of a part so words stay whole.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut end = max;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let mut start = end - end / 4;
        while !rest.is_char_boundary(start) {
            start += 1;
        }
        if let Some(i) = rest[start..end].rfind(['\n', ' ']) {
            end = start + i + 1;
        }
        parts.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    if !rest.is_empty() {
        parts.push(rest.to_string());
    }
    parts
}

fn classify(e: WeChatError) -> DeliveryError {
    if e.is_retryable() {
        DeliveryError::Retry { reason: e.to_string(), after: None }
    } else {
        DeliveryError::Permanent { code: e.code().map(|c| ErrorCode::new(c.to_string())), reason: e.to_string() }
    }
}

/// A refused or hopeless fetch fails the message now (its reason tells the agent why); one that
/// may work later waits for the outbox's backoff.
fn fetch_failed(e: FetchError) -> DeliveryError {
    if e.is_retryable() {
        DeliveryError::Retry { reason: e.to_string(), after: None }
    } else {
        DeliveryError::Permanent { code: None, reason: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::store::{Store, now_ms};
    use crate::wechat::fetch_policy::FetchAllowlist;

    async fn channel() -> WeChatChannel {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        WeChatChannel::new(
            Arc::new(WeChatClient::new("http://127.0.0.1:9", "wx", Secret::new("s"), store)),
            MediaFetcher::new(FetchAllowlist::default()),
        )
    }

    /// A contact whose window ends at `window_until` (5 replies allowed).
    fn contact(window_until: Option<i64>, window_sends: i64) -> Contact {
        Contact {
            id: crate::relay::ids::ContactId(1),
            channel_id: "o_1".into(),
            account: "gh".into(),
            links: Default::default(),
            last_inbound_at: None,
            window_sends,
            window_until,
            window_quota: Some(5),
        }
    }

    #[tokio::test]
    async fn the_window_and_quota_fail_early_with_wechats_codes() {
        let ch = channel().await;
        let hour = 3_600_000;
        assert_eq!(ch.check_window(&contact(Some(now_ms() + hour), 0), 1), Ok(()));
        let code = |r: Result<(), DeliveryError>| match r {
            Err(DeliveryError::Permanent { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(ch.check_window(&contact(Some(now_ms() - 1), 0), 1)).as_deref(), Some("45015"));
        assert_eq!(code(ch.check_window(&contact(None, 0), 1)).as_deref(), Some("45015"));
        assert_eq!(code(ch.check_window(&contact(Some(now_ms() + hour), 4), 2)).as_deref(), Some("45047"));
        assert_eq!(ch.check_window(&contact(Some(now_ms() + hour), 4), 1), Ok(()));
    }

    #[test]
    fn long_texts_split_on_char_boundaries_in_order() {
        let text = "微".repeat(2000); // 6,000 bytes, 3 bytes a char
        let parts = split_text(&text, MAX_TEXT_BYTES);
        assert!(parts.iter().all(|p| p.len() <= MAX_TEXT_BYTES));
        assert_eq!(parts.concat(), text);
        assert_eq!(parts.len(), 3);
    }

    #[test]
    fn splits_prefer_whitespace() {
        let text = format!("{} {}", "a".repeat(1900), "b".repeat(500));
        let parts = split_text(&text, MAX_TEXT_BYTES);
        assert_eq!(parts, [format!("{} ", "a".repeat(1900)), "b".repeat(500)]);
        assert_eq!(split_text("short", MAX_TEXT_BYTES), ["short"]);
    }
}
