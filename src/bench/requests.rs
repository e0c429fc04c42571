//! The requests the load generator sends, built before each phase so that its time is spent
//! sending, not encrypting: WeChat pushes in safe mode (AES, `msg_signature`), as production
//! receives them; agents' messages through `/api/v1/messages` (webhook platform) or as signed
//! RTC events (Vonage). Each carries a unique sequence number in its text, MsgId and nonce.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use hyper::Uri;
use hyper::header::HeaderValue;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::track::MARK;
use crate::wechat::crypto::MessageCrypto;
use crate::wechat::message::{self, Body, Push};
use crate::wechat::signature;

/// The Official Account the bridge is configured with and the pushes are signed for.
pub const APP_ID: &str = "wxbench0000000001";
pub const APP_SECRET: &str = "bench-app-secret";
pub const TOKEN: &str = "benchToken2024";
/// 43 letters and digits.
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const ACCOUNT: &str = "gh_bench00000001";
/// The webhook platform's API token and Standard Webhooks secret (`whsec_` + 32 bytes).
pub const API_TOKEN: &str = "bench-api-token";
pub const WEBHOOK_SECRET: &str = "whsec_YmVuY2gtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXMhISE=";
/// The Vonage application and its RTC webhook secret.
pub const VONAGE_APP_ID: &str = "00000000-0000-4000-8000-00000000be0c";
pub const SIGNATURE_SECRET: &str = "bench-signature-secret";

/// Which counter a success adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A customer's push.
    Inbound,
    /// An agent's message.
    Outbound,
}

/// One request, ready to send.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub seq: u64,
    pub uri: Uri,
    pub body: Bytes,
    /// Per-request `Authorization` (RTC JWTs); else the pool's.
    pub authorization: Option<HeaderValue>,
}

/// The requests of one phase, taken in order by every sender.
#[derive(Debug)]
pub struct Pool {
    pub direction: Direction,
    pub content_type: HeaderValue,
    pub authorization: Option<HeaderValue>,
    /// 200 for pushes (with `success`), 2xx for the others.
    pub expect_success_body: bool,
    items: Vec<Prepared>,
    next: AtomicUsize,
    /// Start again at the first request when all were taken (the baseline keeps no state).
    cycle: bool,
}

impl Pool {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The next request, or `None` when all were taken (never, for a cycling pool).
    pub fn take(&self) -> Option<&Prepared> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.items.get(i) {
            Some(item) => Some(item),
            None if self.cycle && !self.items.is_empty() => Some(&self.items[i % self.items.len()]),
            None => None,
        }
    }

    /// Requests taken so far (at most the pool's size unless it cycles).
    pub fn taken(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }

    /// Whether a non-cycling pool ran out.
    pub fn exhausted(&self) -> bool {
        !self.cycle && self.taken() >= self.items.len()
    }

    /// The sequence numbers of the requests taken.
    pub fn taken_seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.items.iter().take(self.taken()).map(|p| p.seq)
    }

    pub fn cycling(mut self) -> Self {
        self.cycle = true;
        self
    }
}

/// The OpenID of user `n`.
pub fn openid(user: usize) -> String {
    format!("o_bench_{user:06}")
}

/// The text of message `seq`.
pub fn text(seq: u64) -> String {
    format!("{MARK}{seq}")
}

/// Builds requests: WeChat's crypto for the account, a MsgId base unique to this run.
pub struct Builder {
    crypto: MessageCrypto,
    msg_id_base: u64,
    users: usize,
}

impl Builder {
    pub fn new(users: usize) -> Self {
        let crypto = MessageCrypto::new(AES_KEY, APP_ID).expect("the benchmark's AES key is valid");
        // Seconds since 1970 × 10⁹ + seq: unique across runs on one database, and 64-bit like WeChat's.
        let msg_id_base = (crate::store::now_ms() as u64 / 1000) * 1_000_000_000;
        Self { crypto, msg_id_base, users: users.max(1) }
    }

    pub fn users(&self) -> usize {
        self.users
    }

    /// The user message `seq` is from or for.
    pub fn user_of(&self, seq: u64) -> usize {
        (seq % self.users as u64) as usize
    }

    /// Safe-mode text pushes for `seqs`, built on all cores.
    pub fn pushes(&self, seqs: std::ops::Range<u64>) -> Pool {
        let now = crate::store::now_ms() / 1000;
        let items = parallel(seqs, |seq| self.push(seq, now));
        pool(Direction::Inbound, "text/xml", None, true, items)
    }

    /// One push per user, the `n`-th from user `n`: opens every reply window.
    pub fn one_push_per_user(&self, first_seq: u64) -> Pool {
        let now = crate::store::now_ms() / 1000;
        let items = (0..self.users)
            .map(|user| {
                let seq = first_seq + user as u64;
                self.push_from(seq, &openid(user), now)
            })
            .collect();
        pool(Direction::Inbound, "text/xml", None, true, items)
    }

    fn push(&self, seq: u64, now: i64) -> Prepared {
        self.push_from(seq, &openid(self.user_of(seq)), now)
    }

    fn push_from(&self, seq: u64, openid: &str, now: i64) -> Prepared {
        let push = Push {
            to_user_name: ACCOUNT.into(),
            from_user_name: openid.into(),
            create_time: now,
            body: Body::Text { content: text(seq), msg_id: (self.msg_id_base + seq).to_string(), biz_msg_menu_id: None },
        };
        let encrypt = self.crypto.encrypt(&message::to_xml(&push));
        let (timestamp, nonce) = (now.to_string(), seq.to_string());
        let sig = signature::sign(&[TOKEN, &timestamp, &nonce]);
        let msg_signature = signature::sign(&[TOKEN, &timestamp, &nonce, &encrypt]);
        let uri = format!(
            "/webhooks/wechat?signature={sig}&timestamp={timestamp}&nonce={nonce}&openid={openid}\
             &encrypt_type=aes&msg_signature={msg_signature}"
        );
        Prepared {
            seq,
            uri: uri.parse().expect("a valid path"),
            body: Bytes::from(message::encrypted_envelope_xml(ACCOUNT, &encrypt)),
            authorization: None,
        }
    }

    /// Agents' texts through the webhook platform's `POST /api/v1/messages`.
    pub fn api_messages(&self, seqs: std::ops::Range<u64>) -> Pool {
        let uri: Uri = "/api/v1/messages".parse().expect("a valid path");
        let items = parallel(seqs, |seq| Prepared {
            seq,
            uri: uri.clone(),
            body: Bytes::from(json!({"to": openid(self.user_of(seq)), "content": text(seq)}).to_string()),
            authorization: None,
        });
        let auth = HeaderValue::from_str(&format!("Bearer {API_TOKEN}")).expect("a valid header");
        pool(Direction::Outbound, "application/json", Some(auth), false, items)
    }

    /// Agents' texts as Vonage RTC events (`custom:wechat:message`, outbound) in each customer's
    /// conversation, each with its signed-webhook JWT.
    pub fn rtc_events(&self, seqs: std::ops::Range<u64>) -> Pool {
        let uri: Uri = "/webhooks/vonage/rtc".parse().expect("a valid path");
        let key = jsonwebtoken::EncodingKey::from_secret(SIGNATURE_SECRET.as_bytes());
        let now = (crate::store::now_ms() / 1000) as u64;
        let items = parallel(seqs, |seq| {
            let openid = openid(self.user_of(seq));
            let body = json!({
                "type": "custom:wechat:message",
                "id": format!("bench-{}-{seq}", self.msg_id_base),
                "conversation_id": super::fakes::conversation_id(&openid),
                "from": super::fakes::AGENT_MEMBER,
                "body": {"direction": "outbound", "to": openid, "content": text(seq)},
            })
            .to_string();
            let claims = json!({"iat": now, "jti": format!("bench-{seq}"), "payload_hash": hex::encode(Sha256::digest(&body))});
            let jwt = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key)
                .expect("HS256 signs");
            Prepared {
                seq,
                uri: uri.clone(),
                body: Bytes::from(body),
                authorization: Some(HeaderValue::from_str(&format!("Bearer {jwt}")).expect("a valid header")),
            }
        });
        pool(Direction::Outbound, "application/json", None, false, items)
    }
}

fn pool(
    direction: Direction,
    content_type: &'static str,
    authorization: Option<HeaderValue>,
    expect_success_body: bool,
    items: Vec<Prepared>,
) -> Pool {
    Pool {
        direction,
        content_type: HeaderValue::from_static(content_type),
        authorization,
        expect_success_body,
        items,
        next: AtomicUsize::new(0),
        cycle: false,
    }
}

/// `make` over `seqs`, split across the machine's cores, in order.
fn parallel(seqs: std::ops::Range<u64>, make: impl Fn(u64) -> Prepared + Sync) -> Vec<Prepared> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let len = seqs.end.saturating_sub(seqs.start);
    if len < 1_000 || threads == 1 {
        return seqs.map(make).collect();
    }
    let per = len.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = seqs.start + t * per;
                let end = (start + per).min(seqs.end);
                let make = &make;
                scope.spawn(move || (start..end).map(make).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a builder thread")).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::webhook::{PushQuery, WeChatWebhook, verify_and_parse};

    #[test]
    fn pushes_pass_the_bridges_own_checks() {
        let builder = Builder::new(3);
        let pool = builder.pushes(10..2_010);
        assert_eq!(pool.len(), 2_000);
        let hook = WeChatWebhook {
            token: TOKEN.into(),
            crypto: Some(MessageCrypto::new(AES_KEY, APP_ID).unwrap()),
            max_timestamp_skew_secs: 300,
            allow_plaintext: false,
            window_quota: 5,
        };
        let first = pool.take().unwrap();
        let query: PushQuery = serde_urlencoded_query(first.uri.query().unwrap());
        let push = verify_and_parse(&hook, &query, Some("text/xml"), &first.body, crate::store::now_ms() / 1000).unwrap();
        assert_eq!(push.from_user_name, openid(1));
        assert!(matches!(push.body, Body::Text { ref content, .. } if content == "bench #10"));
        let seqs: Vec<u64> = pool.taken_seqs().collect();
        assert_eq!(seqs, vec![10]);
    }

    fn serde_urlencoded_query(query: &str) -> PushQuery {
        let get =
            |k: &str| query.split('&').find_map(|kv| kv.split_once('=').filter(|(key, _)| *key == k).map(|(_, v)| v.to_string()));
        PushQuery {
            signature: get("signature"),
            timestamp: get("timestamp"),
            nonce: get("nonce"),
            echostr: None,
            encrypt_type: get("encrypt_type"),
            msg_signature: get("msg_signature"),
        }
    }
}
