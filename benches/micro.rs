//! Micro-benchmarks of the work the bridge does per message: `cargo bench --bench micro`.
//!
//! - `signature`: `msg_signature` check of a safe-mode push (SHA-1 over four sorted strings);
//! - `aes`: decrypting a push's `Encrypt` (AES-256-CBC, base64, WeChat's framing);
//! - `xml`: parsing the envelope and the decrypted push;
//! - `push`: the whole check-decrypt-parse of a push as the webhook does it;
//! - `event`: the event bodies built for a customer message (webhook platform, Vonage);
//! - `sign`: the Standard Webhooks signature of each event sent to the app;
//! - `jwt`: minting a Vonage application JWT (RS256), verifying an RTC webhook's JWT (HS256);
//! - `store`: the store's share of relaying a customer message (accept with its nonce, contact,
//!   window, message and job; the claim; the job's end) on an SQLite file with the bridge's
//!   settings (WAL, `synchronous = FULL`): one message at a time (each write its own commit,
//!   a quiet bridge) and 64 customers' messages at once (group commits, as under load). The
//!   writer thread is the bridge's bottleneck under load; this times it alone.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use wechat_bridge::relay::message::{Contact, Direction};
use wechat_bridge::store::{JobKind, NewMessage, RequestNonce, Store, WindowChange};
use wechat_bridge::wechat::crypto::MessageCrypto;
use wechat_bridge::wechat::message::{self, Body, Push};
use wechat_bridge::wechat::signature;
use wechat_bridge::wechat::webhook::{PushQuery, WeChatWebhook, verify_and_parse};

const TOKEN: &str = "benchToken2024";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APP_ID: &str = "wxbench0000000001";
const ACCOUNT: &str = "gh_bench00000001";
const TIMESTAMP: &str = "1714036504";
const NONCE: &str = "1514711492";

/// A typical customer text, as WeChat sends it in safe mode.
struct SafePush {
    push: Push,
    xml: String,
    encrypt: String,
    envelope: String,
    msg_signature: String,
}

fn safe_push() -> SafePush {
    let push = Push {
        to_user_name: ACCOUNT.into(),
        from_user_name: "oUuf-aE_cBW-xbv7R-r2_2GTtg-H".into(),
        create_time: 1_714_036_504,
        body: Body::Text {
            content: "你好，我想问一下我的订单什么时候发货？Order 2024-0042, thanks!".into(),
            msg_id: "24181234567890123".into(),
            biz_msg_menu_id: None,
        },
    };
    let crypto = MessageCrypto::new(AES_KEY, APP_ID).unwrap();
    let xml = message::to_xml(&push);
    let encrypt = crypto.encrypt_with_random(&xml, b"0123456789abcdef");
    let envelope = message::encrypted_envelope_xml(ACCOUNT, &encrypt);
    let msg_signature = signature::sign(&[TOKEN, TIMESTAMP, NONCE, &encrypt]);
    SafePush { push, xml, encrypt, envelope, msg_signature }
}

fn wechat(c: &mut Criterion) {
    let p = safe_push();
    let crypto = MessageCrypto::new(AES_KEY, APP_ID).unwrap();
    c.bench_function("signature/msg_signature_verify", |b| {
        b.iter(|| signature::verify(black_box(&p.msg_signature), &[TOKEN, TIMESTAMP, NONCE, black_box(&p.encrypt)]))
    });
    c.bench_function("aes/decrypt_push", |b| b.iter(|| crypto.decrypt(black_box(&p.encrypt)).unwrap()));
    c.bench_function("xml/parse_envelope", |b| b.iter(|| message::parse_encrypted_envelope(black_box(&p.envelope)).unwrap()));
    c.bench_function("xml/parse_push", |b| b.iter(|| message::parse(black_box(&p.xml)).unwrap()));
    let hook = WeChatWebhook {
        token: TOKEN.into(),
        crypto: Some(crypto.clone()),
        max_timestamp_skew_secs: 0,
        allow_plaintext: false,
        window_quota: 5,
    };
    let query = PushQuery {
        signature: Some(signature::sign(&[TOKEN, TIMESTAMP, NONCE])),
        timestamp: Some(TIMESTAMP.into()),
        nonce: Some(NONCE.into()),
        echostr: None,
        encrypt_type: Some("aes".into()),
        msg_signature: Some(p.msg_signature.clone()),
    };
    c.bench_function("push/verify_decrypt_parse", |b| {
        b.iter(|| verify_and_parse(&hook, &query, Some("text/xml"), black_box(p.envelope.as_bytes()), 1_714_036_504).unwrap())
    });
}

fn events(c: &mut Criterion) {
    let p = safe_push();
    let msg = wechat_bridge::wechat::inbound::to_inbound(&p.push);
    let contact = Contact { channel_id: p.push.from_user_name.clone(), account: ACCOUNT.into(), ..Contact::default() };
    let id = "0190f5c2-7b1e-7c3a-9d2e-5f4a3b2c1d0e";
    c.bench_function("event/webhook_message_received", |b| {
        b.iter(|| wechat_bridge::webhook::event::received("wechat", &contact, black_box(&msg), id))
    });
    c.bench_function("event/vonage_inbound_event", |b| {
        b.iter(|| wechat_bridge::vonage::event::inbound_event(black_box(&msg), "MEM-0001", id).to_string())
    });
    let body = wechat_bridge::webhook::event::received("wechat", &contact, &msg, id);
    let signer = standardwebhooks::Webhook::new("whsec_YmVuY2gtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXMhISE=").unwrap();
    c.bench_function("sign/standard_webhooks_event", |b| {
        b.iter(|| signer.sign("msg_0190f5c2", 1_714_036_504, black_box(&body)).unwrap())
    });
}

fn jwt(c: &mut Criterion) {
    let (private_pem, _) = wechat_bridge::vonage::sim::keys::generate_rsa_keypair();
    let minter = wechat_bridge::vonage::jwt::JwtMinter::new("00000000-0000-4000-8000-00000000be0c", &private_pem).unwrap();
    c.bench_function("jwt/mint_rs256", |b| {
        b.iter(|| {
            // Without the cache: what one mint costs (the bridge mints once per 14 minutes).
            minter.invalidate();
            minter.token().unwrap()
        })
    });
    let secret = "bench-signature-secret";
    let body = br#"{"type":"custom:wechat:message","id":42,"conversation_id":"CON-1","from":"MEM-agent","body":{"direction":"outbound","content":"hello"}}"#;
    let now = 1_714_036_504u64;
    let claims = serde_json::json!({"iat": now, "jti": "j1", "payload_hash": sha256_hex(body)});
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let authorization = format!("Bearer {jwt}");
    c.bench_function("jwt/verify_rtc_hs256", |b| {
        b.iter(|| wechat_bridge::vonage::webhook::verify_signature(Some(black_box(&authorization)), body, secret, now).unwrap())
    });
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn store(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = runtime.block_on(async {
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        store
    });
    let sent = AtomicU64::new(0);
    let mut group = c.benchmark_group("store");
    for customers in [1, 64] {
        let name = if customers == 1 { "relay_one_message".to_string() } else { format!("relay_{customers}_messages_at_once") };
        group.throughput(Throughput::Elements(customers as u64));
        group.bench_function(name, |b| b.iter(|| runtime.block_on(relay(&store, &sent, customers))));
    }
    group.finish();
}

/// One message from each of `customers` customers: accepted together, claimed in one claim,
/// their jobs ended together.
async fn relay(store: &Store, sent: &AtomicU64, customers: usize) {
    let accepts = (0..customers).map(|customer| {
        let n = sent.fetch_add(1, Ordering::Relaxed);
        async move {
            let (openid, msg_id, nonce) = (format!("o_bench_customer_{customer:04}"), n.to_string(), format!("{n}:nonce"));
            let payload = format!(
                r#"{{"account":"{ACCOUNT}","sender":"{openid}","msg_type":"text","msg_id":"{msg_id}","create_time":1714036504,"content":"你好，我想问一下我的订单什么时候发货？Order 2024-0042, thanks!"}}"#
            );
            let until_ms = wechat_bridge::store::now_ms() + 48 * 3_600_000;
            store
                .accept(&NewMessage {
                    channel: "wechat",
                    channel_id: &openid,
                    account: ACCOUNT,
                    direction: Direction::Inbound,
                    source: "wechat",
                    external_id: &format!("{openid}:{msg_id}"),
                    msg_type: "text",
                    payload: &payload,
                    kind: JobKind::DeliverInbound,
                    window: WindowChange::Open { until_ms, quota: 5 },
                    nonce: Some(RequestNonce { value: &nonce, retain_ms: 600_000 }),
                    idempotency: None,
                })
                .await
                .unwrap()
        }
    });
    join_all(accepts).await;
    let jobs = store.claim_jobs(10_000, customers as u32).await.unwrap();
    assert_eq!(jobs.len(), customers, "every message claimed");
    join_all(jobs.iter().map(|job| store.complete_job(job, Some("evt")))).await;
}

criterion_group!(benches, wechat, events, jwt, store);
criterion_main!(benches);
