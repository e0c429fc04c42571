//! The WeChat webhook: URL check, pushes in every mode, and every kind of bad input (which must
//! get the right status and store nothing).

use wechat_bridge::app::WorkerMode;
use wechat_bridge::wechat::crypto::MessageCrypto;
use wechat_bridge::wechat::sim::PushMode;
use wechat_bridge::wechat::{message, signature};

use crate::helpers::*;

/// These tests exercise plaintext pushes too: with the AES key configured, that takes
/// `WECHAT_ALLOW_PLAINTEXT` (the refusal itself is tested below).
fn allow_plaintext(settings: &mut std::collections::HashMap<String, String>) {
    settings.insert("WECHAT_ALLOW_PLAINTEXT".into(), "true".into());
}

fn now() -> i64 {
    wechat_bridge::store::now_ms() / 1000
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn url_check_echoes_echostr_when_signed_and_401_when_not() {
    let app = spawn_app().await;
    let ts = now().to_string();
    let sig = signature::sign(&[TOKEN, &ts, "123"]);
    for path in ["/webhooks/wechat", "/weChatEvent"] {
        let url = format!("{}{path}?signature={sig}&timestamp={ts}&nonce=123&echostr=4375120948345356249", app.address);
        assert_eq!(get(&url).await, (200, "4375120948345356249".to_string()));
        let forged = url.replace(&sig, &"0".repeat(40));
        assert_eq!(get(&forged).await.0, 401);
    }
    let missing = format!("{}/webhooks/wechat?timestamp={ts}&nonce=123&echostr=1", app.address);
    assert_eq!(get(&missing).await.0, 400);
}

#[tokio::test]
async fn official_url_check_vector_passes() {
    // wechat-api.md §1: token AAAAA, the doc's own request.
    let app = spawn_app_with(WorkerMode::Manual, |s| {
        s.insert("WECHAT_TOKEN".into(), "AAAAA".into());
    })
    .await;
    let url = format!(
        "{}/weChatEvent?signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249&timestamp=1714036504&nonce=1514711492",
        app.address
    );
    assert_eq!(get(&url).await, (200, "4375120948345356249".to_string()));
}

#[tokio::test]
async fn plain_safe_and_compatible_pushes_are_stored_and_answered_success() {
    let app = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    for (i, mode) in [PushMode::Plain, PushMode::Safe, PushMode::Compatible].into_iter().enumerate() {
        let push = app.wechat.text("o_user_1", &format!("hello {i}"));
        let reply = app.push(&push, mode).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "success"), "{mode:?}");
    }
    let messages = app.store.messages(None, 10).await.unwrap();
    assert_eq!(messages.len(), 3);
    assert!(messages.iter().all(|m| m.status == "stored" && m.direction == "inbound"));
    let mut contents: Vec<String> = messages
        .iter()
        .map(|m| serde_json::from_str::<serde_json::Value>(&m.payload).unwrap()["content"].as_str().unwrap().to_string())
        .collect();
    contents.sort();
    assert_eq!(contents, ["hello 0", "hello 1", "hello 2"]);
    assert_eq!(app.store.contact_count().await.unwrap(), 1);
}

#[tokio::test]
async fn the_alias_route_accepts_pushes_too() {
    let app = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    let push = app.wechat.text("o_user_1", "via alias");
    let reply = app.wechat.push(&format!("{}/weChatEvent", app.address), &push, PushMode::Plain).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(app.message_count().await, 1);
}

#[tokio::test]
async fn four_deliveries_of_one_msgid_store_one_message() {
    let app = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    let push = app.wechat.text("o_user_1", "retried by wechat");
    // WeChat's retries may overlap the first attempt (§4.1): send them concurrently.
    let replies = futures_util::future::join_all((0..4).map(|i| {
        let mode = if i % 2 == 0 { PushMode::Plain } else { PushMode::Safe };
        app.push(&push, mode)
    }))
    .await;
    assert!(replies.iter().all(|r| r.status == 200 && r.body == "success"));
    assert_eq!(app.message_count().await, 1);
    assert_eq!(app.store.outbox_depth().await.unwrap(), 1);
}

#[tokio::test]
async fn the_same_msgid_from_two_users_is_two_messages() {
    // MsgIds collide across users (WxJava #333): the key includes FromUserName.
    let app = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    let mut push = app.wechat.text("o_user_1", "a");
    app.push(&push, PushMode::Plain).await;
    push.from_user_name = "o_user_2".into();
    app.push(&push, PushMode::Plain).await;
    assert_eq!(app.message_count().await, 2);
}

#[tokio::test]
async fn an_event_retried_is_stored_once() {
    let app = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    let xml = format!(
        "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[o_user_1]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>",
        now()
    );
    let push = message::parse(&xml).unwrap();
    for _ in 0..3 {
        assert_eq!(app.push(&push, PushMode::Safe).await.status, 200);
    }
    assert_eq!(app.message_count().await, 1);
}

/// Sends `body` with a valid plaintext signature and returns the status.
async fn post_signed(app: &TestApp, body: String) -> u16 {
    let ts = now().to_string();
    let sig = signature::sign(&[TOKEN, &ts, "42"]);
    app.wechat.post_raw(&app.webhook(), &format!("signature={sig}&timestamp={ts}&nonce=42"), body).await.unwrap().status
}

async fn assert_nothing_stored(app: &TestApp) {
    assert_eq!(app.message_count().await, 0, "a rejected request stored a message");
    assert_eq!(app.store.contact_count().await.unwrap(), 0, "a rejected request stored a contact");
}

#[tokio::test]
async fn forged_signatures_are_401_and_store_nothing() {
    let app = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    let push = app.wechat.text("o_user_1", "forged");
    let (query, body) = app.wechat.signed_request(&push, PushMode::Plain, now());
    let tampered_sig = {
        let sig = query.split('&').next().unwrap().trim_start_matches("signature=");
        query.replace(sig, &signature::sign(&["other-token", "1", "2"]))
    };
    assert_eq!(app.wechat.post_raw(&app.webhook(), &tampered_sig, body.clone()).await.unwrap().status, 401);
    // Safe mode with a msg_signature that does not cover this ciphertext.
    let (query, body) = app.wechat.signed_request(&push, PushMode::Safe, now());
    let msg_sig = query.split("msg_signature=").nth(1).unwrap().to_string();
    let bad = query.replace(&msg_sig, &"a".repeat(40));
    assert_eq!(app.wechat.post_raw(&app.webhook(), &bad, body).await.unwrap().status, 401);
    // No signature at all on a plaintext push.
    let (query, body) = app.wechat.signed_request(&push, PushMode::Plain, now());
    let unsigned = query.split('&').filter(|p| !p.starts_with("signature=")).collect::<Vec<_>>().join("&");
    assert_eq!(app.wechat.post_raw(&app.webhook(), &unsigned, body).await.unwrap().status, 400);
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn stale_or_future_timestamps_are_401_unless_the_check_is_off() {
    let app = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    let push = app.wechat.text("o_user_1", "replayed");
    for skew in [-301, 301] {
        let (query, body) = app.wechat.signed_request(&push, PushMode::Plain, now() + skew);
        assert_eq!(app.wechat.post_raw(&app.webhook(), &query, body).await.unwrap().status, 401);
    }
    assert_nothing_stored(&app).await;

    let lenient = spawn_app_with(WorkerMode::Manual, |s| {
        allow_plaintext(s);
        s.insert("WECHAT_MAX_TIMESTAMP_SKEW_SECS".into(), "0".into());
    })
    .await;
    let (query, body) = lenient.wechat.signed_request(&push, PushMode::Plain, now() - 86_400);
    assert_eq!(lenient.wechat.post_raw(&lenient.webhook(), &query, body).await.unwrap().status, 200);
}

#[tokio::test]
async fn malformed_xml_and_doctype_are_400_and_store_nothing() {
    let app = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    let bodies = [
        "<xml><ToUserName>unclosed".to_string(),
        "not xml at all".to_string(),
        String::new(),
        "<xml><ToUserName><![CDATA[a]]></ToUserName></xml>".to_string(),
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><xml><ToUserName>&lol2;</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId></xml>"#.to_string(),
        r#"<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><ToUserName>&xxe;</ToUserName></xml>"#.to_string(),
    ];
    for body in bodies {
        assert_eq!(post_signed(&app, body.clone()).await, 400, "body {body:?}");
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_413() {
    let app = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    let body = format!("<xml><Content>{}</Content></xml>", "a".repeat(1 << 20));
    assert_eq!(post_signed(&app, body).await, 413);
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let app = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    let push = app.wechat.text("o_user_1", "x");
    let (query, body) = app.wechat.signed_request(&push, PushMode::Plain, now());
    let status = reqwest::Client::new()
        .post(format!("{}?{query}", app.webhook()))
        .header("Content-Type", "multipart/form-data; boundary=x")
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 415);
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn an_encrypted_message_for_another_app_id_is_401() {
    let app = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    let push = app.wechat.text("o_user_1", "for someone else");
    let other = MessageCrypto::new(AES_KEY, "wx_other_app_id").unwrap();
    let encrypt = other.encrypt(&message::to_xml(&push));
    let ts = now().to_string();
    let sig = signature::sign(&[TOKEN, &ts, "7"]);
    let msg_sig = signature::sign(&[TOKEN, &ts, "7", &encrypt]);
    let query = format!("signature={sig}&timestamp={ts}&nonce=7&encrypt_type=aes&msg_signature={msg_sig}");
    let body = message::encrypted_envelope_xml(ACCOUNT, &encrypt);
    assert_eq!(app.wechat.post_raw(&app.webhook(), &query, body).await.unwrap().status, 401);
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn an_encrypted_push_without_a_configured_key_is_400() {
    let app = spawn_app_with(WorkerMode::Manual, |s| {
        s.remove("WECHAT_ENCODING_AES_KEY");
    })
    .await;
    let push = app.wechat.text("o_user_1", "x");
    let (query, body) = app.wechat.signed_request(&push, PushMode::Safe, now());
    assert_eq!(app.wechat.post_raw(&app.webhook(), &query, body).await.unwrap().status, 400);
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    assert_eq!(get(&format!("{}/healthz", app.address)).await.0, 200);
    assert_eq!(get(&format!("{}/readyz", app.address)).await, (200, "ready".to_string()));
}

#[tokio::test]
async fn with_an_aes_key_plaintext_pushes_are_refused_unless_allowed() {
    let app = spawn_app_with(WorkerMode::Manual, |_| {}).await;
    let push = app.wechat.text("o_injected", "I am someone else");
    assert_eq!(app.push(&push, PushMode::Plain).await.status, 401);
    assert_nothing_stored(&app).await;
    // Encrypted pushes (safe and compatible mode) are what an AES key is for.
    assert_eq!(app.push(&push, PushMode::Safe).await.status, 200);
    assert_eq!(app.push(&app.wechat.text("o_injected", "two"), PushMode::Compatible).await.status, 200);
    assert_eq!(app.message_count().await, 2);

    let switching = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    assert_eq!(switching.push(&push, PushMode::Plain).await.status, 200);
}

#[tokio::test]
async fn a_replayed_timestamp_and_nonce_with_another_body_is_401() {
    let app = spawn_app_with(WorkerMode::Manual, allow_plaintext).await;
    let first = app.wechat.text("o_victim", "the real message");
    let (query, body) = app.wechat.signed_request(&first, PushMode::Plain, now());
    assert_eq!(app.wechat.post_raw(&app.webhook(), &query, body.clone()).await.unwrap().status, 200);
    // WeChat's retry of the same push (same query, same body) is a duplicate: `success`.
    let retry = app.wechat.post_raw(&app.webhook(), &query, body).await.unwrap();
    assert_eq!((retry.status, retry.body.as_str()), (200, "success"));
    // Someone who saw the URL posts another message under the same signature: refused.
    let forged = message::to_xml(&app.wechat.text("o_victim", "send the money to me"));
    assert_eq!(app.wechat.post_raw(&app.webhook(), &query, forged).await.unwrap().status, 401);
    assert_eq!(app.message_count().await, 1);
    // Refused on another instance too: the nonce is in the shared database.
    let (query, body) = app.wechat.signed_request(&app.wechat.text("o_victim", "once"), PushMode::Safe, now());
    assert_eq!(app.wechat.post_raw(&app.webhook(), &query, body).await.unwrap().status, 200);
    let mut other = app.config();
    other.listen = "127.0.0.1:0".parse().unwrap();
    let second = wechat_bridge::app::Application::build(other, WorkerMode::Manual).await.unwrap();
    let second_url = format!("http://127.0.0.1:{}/webhooks/wechat", second.port());
    tokio::spawn(second.run_until_stopped(std::future::pending()));
    let other_body = app.wechat.signed_request(&app.wechat.text("o_victim", "twice"), PushMode::Safe, now()).1;
    assert_eq!(app.wechat.post_raw(&second_url, &query, other_body).await.unwrap().status, 401);
}

#[tokio::test]
async fn a_message_with_an_empty_msgid_is_400_and_stores_nothing() {
    let app = spawn_app_with(WorkerMode::Manual, |_| {}).await;
    let xml = |id: &str| {
        format!(
            "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[o_empty]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content>\
             <MsgId>{id}</MsgId></xml>",
            now()
        )
    };
    let crypto = MessageCrypto::new(AES_KEY, APP_ID).unwrap();
    for id in ["", "   "] {
        let ts = now().to_string();
        let nonce = format!("n{}", id.len());
        let encrypt = crypto.encrypt(&xml(id));
        let msg_sig = signature::sign(&[TOKEN, &ts, &nonce, &encrypt]);
        let sig = signature::sign(&[TOKEN, &ts, &nonce]);
        let query = format!("signature={sig}&timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={msg_sig}");
        let body = message::encrypted_envelope_xml(ACCOUNT, &encrypt);
        assert_eq!(app.wechat.post_raw(&app.webhook(), &query, body).await.unwrap().status, 400, "MsgId {id:?}");
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_push_from_a_malformed_openid_is_400_and_stores_nothing() {
    let app = spawn_app_with(WorkerMode::Manual, |_| {}).await;
    for from in ["o".repeat(10_000), "o<script>".to_string(), "o user".to_string()] {
        let push = app.wechat.text(&from, "hostile sender");
        assert_eq!(app.push(&push, PushMode::Safe).await.status, 400, "{}", &from[..from.len().min(20)]);
    }
    assert_nothing_stored(&app).await;
}
