//! `BRIDGE_PLATFORM=chatwoot`: the real bridge against the WeChat and Chatwoot simulators.
//! Customers become contacts with one conversation in the API inbox; agents' replies arrive by
//! the signed inbox webhook, or by catching up when the webhook could not reach the bridge;
//! every outcome shows on the agent's message.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use wechat_bridge::app::WorkerMode;
use wechat_bridge::chatwoot::sim::{AgentReply, SimFile};
use wechat_bridge::wechat::message::{Body, Event, Push};
use wechat_bridge::wechat::sim::PushMode;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

async fn chatwoot_app() -> TestApp {
    spawn_app_with_platform(TestPlatform::Chatwoot, WorkerMode::Background, |_| {}).await
}

async fn customer_writes(app: &TestApp, openid: &str, text: &str) {
    assert_eq!(app.push(&app.wechat.text(openid, text), PushMode::Safe).await.status, 200);
}

async fn customer_sends(app: &TestApp, openid: &str, body: Body) {
    let push = Push { to_user_name: ACCOUNT.into(), from_user_name: openid.into(), create_time: now_secs(), body };
    assert_eq!(app.push(&push, PushMode::Safe).await.status, 200);
}

fn now_secs() -> i64 {
    wechat_bridge::store::now_ms() / 1000
}

/// Waits until the bridge stored `n` messages and none is waiting in the outbox.
async fn settled(app: &TestApp, n: usize) {
    wait_for(&format!("{n} messages settled"), WAIT, || async {
        let messages = app.store.messages(None, 10_000).await.unwrap();
        messages.len() >= n && messages.iter().all(|m| m.status != "stored") && app.store.outbox_depth().await.unwrap() == 0
    })
    .await;
}

/// The conversation (display id) Chatwoot holds for `openid`.
fn conversation_of(app: &TestApp, openid: &str) -> u64 {
    let identifier = format!("wechat:{APP_ID}:{openid}");
    let contact = app.chatwoot.contacts().into_iter().find(|c| c["identifier"] == identifier).expect("a Chatwoot contact");
    app.chatwoot
        .conversations()
        .into_iter()
        .find(|c| c["meta"]["sender"]["id"] == contact["id"])
        .and_then(|c| c["id"].as_u64())
        .expect("a conversation")
}

fn texts_sent_to_wechat(app: &TestApp, openid: &str) -> Vec<String> {
    app.wechat
        .sent()
        .into_iter()
        .filter(|s| s["touser"] == openid && s["msgtype"] == "text")
        .map(|s| s["text"]["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The status (and external_error) Chatwoot shows on message `id`.
fn status_of(app: &TestApp, conversation: u64, id: u64) -> (String, Option<String>) {
    let message = app.chatwoot.messages(conversation).into_iter().find(|m| m["id"] == id).expect("the message");
    (
        message["status"].as_str().unwrap_or_default().to_string(),
        message["content_attributes"]["external_error"].as_str().map(str::to_string),
    )
}

async fn wait_status(app: &TestApp, conversation: u64, id: u64, status: &str) {
    wait_for(&format!("message {id} {status} in Chatwoot"), WAIT, || async { status_of(app, conversation, id).0 == status })
        .await;
}

/// As after a lost database or on another instance: Chatwoot already has `openid`'s contact
/// and a conversation in the inbox, made through its API. Returns the conversation's id.
async fn existing_contact_and_conversation(app: &TestApp, openid: &str) -> u64 {
    let client = reqwest::Client::new();
    let base = &app.settings["CHATWOOT_BASE_URL"];
    let token = &app.settings["CHATWOOT_API_TOKEN"];
    let post = |path: &str, body: Value| {
        client.post(format!("{base}/api/v1/accounts/1/{path}")).header("api_access_token", token.as_str()).json(&body).send()
    };
    let identifier = format!("wechat:{APP_ID}:{openid}");
    let created: Value =
        post("contacts", json!({"inbox_id": 3, "name": "Known", "identifier": identifier})).await.unwrap().json().await.unwrap();
    let contact_id = created["payload"]["contact"]["id"].as_u64().unwrap();
    let conversation: Value =
        post("conversations", json!({"inbox_id": 3, "contact_id": contact_id})).await.unwrap().json().await.unwrap();
    conversation["id"].as_u64().unwrap()
}

#[tokio::test]
async fn first_message_makes_one_contact_and_conversation_and_every_message_lands_in_it() {
    let app = chatwoot_app().await;
    customer_writes(&app, "o_cw_first", "你好").await;
    customer_writes(&app, "o_cw_first", "is my order on its way?").await;
    settled(&app, 2).await;

    let contacts = app.chatwoot.contacts();
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(contacts[0]["identifier"], format!("wechat:{APP_ID}:o_cw_first"));
    assert_eq!(app.chatwoot.conversations().len(), 1);
    let conversation = conversation_of(&app, "o_cw_first");
    let incoming = app.chatwoot_incoming();
    assert_eq!(incoming.iter().map(|m| m["content"].as_str().unwrap()).collect::<Vec<_>>(), ["你好", "is my order on its way?"]);
    // The MsgId is the message's source_id, and the bridge's id is kept for tracing.
    let stored = app.store.messages(None, 10).await.unwrap();
    let first = stored.iter().find(|m| m.payload.contains("你好")).unwrap();
    let payload: Value = serde_json::from_str(&first.payload).unwrap();
    assert!(first.external_id.ends_with(payload["msg_id"].as_str().unwrap()));
    assert_eq!(incoming[0]["source_id"], payload["msg_id"], "the WeChat MsgId is the source_id");
    assert_eq!(incoming[0]["content_attributes"]["bridge_message_id"], first.id.to_string());
    assert_eq!(first.platform_event_id.as_deref(), Some(incoming[0]["id"].to_string().as_str()));
    // The contact's ids are remembered (the admin API lists them).
    let contact = app.store.contact_by_channel_id("wechat", "o_cw_first").await.unwrap().unwrap();
    assert_eq!(contact.link("chatwoot", "conversation"), Some(conversation.to_string().as_str()));
    assert_eq!(contact.link("chatwoot", "contact"), Some(contacts[0]["id"].to_string().as_str()));
    // Every webhook Chatwoot sent (our own incoming messages come back) was answered 2xx,
    // so none of them was marked failed.
    app.chatwoot.settle().await;
    assert!(app.chatwoot.webhooks().iter().all(|w| w.status == Some(200)), "{:?}", app.chatwoot.webhooks());
    assert!(incoming.iter().all(|m| m["status"] != "failed"));
}

#[tokio::test]
async fn a_contact_chatwoot_already_has_is_reused_with_its_conversation() {
    let app = chatwoot_app().await;
    let conversation = existing_contact_and_conversation(&app, "o_cw_known").await;
    customer_writes(&app, "o_cw_known", "back again").await;
    settled(&app, 1).await;
    assert_eq!(app.chatwoot.contacts().len(), 1, "no second contact");
    assert_eq!(app.chatwoot.conversations().len(), 1, "no second conversation");
    let messages = app.chatwoot.messages(conversation);
    assert!(messages.iter().any(|m| m["content"] == "back again"), "{messages:?}");
}

#[tokio::test]
async fn media_arrive_as_attachments_and_location_link_and_events_as_readable_text() {
    let app = chatwoot_app().await;
    let photo = vec![0x89, b'P', b'N', b'G', 1, 2, 3];
    let media_id = app.wechat.add_media("image/png", photo.clone());
    let openid = "o_cw_media";
    customer_sends(&app, openid, Body::Event(Event::Subscribe { event_key: Some("qrscene_spring".into()), ticket: None })).await;
    customer_sends(
        &app,
        openid,
        Body::Image { pic_url: "http://mmbiz.example/p.png".into(), media_id, msg_id: app.wechat.next_msg_id() },
    )
    .await;
    customer_sends(
        &app,
        openid,
        Body::Location {
            latitude: 23.134521,
            longitude: 113.358803,
            scale: Some(20.0),
            label: Some("Tianhe".into()),
            msg_id: app.wechat.next_msg_id(),
        },
    )
    .await;
    customer_sends(
        &app,
        openid,
        Body::Link {
            title: "Order".into(),
            description: "my order".into(),
            url: "https://shop.example/o/1".into(),
            msg_id: app.wechat.next_msg_id(),
        },
    )
    .await;
    // Automatic location reports are not shown to agents.
    customer_sends(&app, openid, Body::Event(Event::Location { latitude: 1.0, longitude: 2.0, precision: None })).await;
    customer_sends(&app, openid, Body::Event(Event::Click { event_key: "MENU_HELP".into() })).await;
    settled(&app, 6).await;

    let incoming = app.chatwoot_incoming();
    let contents: Vec<&str> = incoming.iter().map(|m| m["content"].as_str().unwrap_or_default()).collect();
    assert_eq!(contents.len(), 5, "the location report is not posted: {contents:?}");
    assert_eq!(contents[0], "[followed the Official Account by scanning QR code spring]");
    let attachment = &incoming[1]["attachments"][0];
    assert_eq!(attachment["file_type"], "image");
    let file = app.chatwoot.attachment(attachment["id"].as_u64().unwrap()).unwrap();
    assert_eq!((file.content_type.as_str(), file.bytes), ("image/png", photo));
    assert!(contents[2].contains("Tianhe") && contents[2].contains("23.134521, 113.358803"), "{}", contents[2]);
    assert_eq!(contents[3], "🔗 Order\nmy order\nhttps://shop.example/o/1");
    assert_eq!(contents[4], "[tapped menu item MENU_HELP]");
    let report = app
        .store
        .messages(None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.payload.contains("\"location\"") && m.msg_type == "event")
        .unwrap();
    assert_eq!(report.status, "delivered");
    assert!(report.platform_event_id.unwrap().starts_with("not posted"));
}

#[tokio::test]
async fn a_resolved_conversation_is_reopened_by_the_next_customer_message() {
    let app = chatwoot_app().await;
    customer_writes(&app, "o_cw_resolved", "first").await;
    settled(&app, 1).await;
    let conversation = conversation_of(&app, "o_cw_resolved");
    app.chatwoot.resolve(conversation).await;
    customer_writes(&app, "o_cw_resolved", "one more question").await;
    settled(&app, 2).await;
    let conversations = app.chatwoot.conversations();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0]["status"], "open");
    assert!(app.chatwoot.messages(conversation).iter().any(|m| m["content"] == "one more question"));
}

#[tokio::test]
async fn an_outage_of_chatwoot_delays_messages_but_loses_and_reorders_none() {
    let app = chatwoot_app().await;
    app.chatwoot.fail_next(2, 503);
    customer_writes(&app, "o_cw_outage", "one").await;
    customer_writes(&app, "o_cw_outage", "two").await;
    settled(&app, 2).await;
    app.chatwoot.fail_next(2, 429);
    customer_writes(&app, "o_cw_outage", "three").await;
    app.chatwoot.set_down(true);
    customer_writes(&app, "o_cw_outage", "four").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.chatwoot.set_down(false);
    settled(&app, 4).await;
    assert_eq!(app.platform_texts(), ["one", "two", "three", "four"]);
    assert_eq!(app.chatwoot.contacts().len(), 1);
    assert!(app.store.messages(None, 10).await.unwrap().iter().all(|m| m.status == "delivered"));

    // The agent's reply goes out while Chatwoot is failing: its outcome reaches Chatwoot after.
    let conversation = conversation_of(&app, "o_cw_outage");
    app.chatwoot.fail_next(1, 500);
    app.chatwoot.fail_next(1, 429);
    let reply = app.chatwoot.agent_reply(conversation, AgentReply::text("sorry for the wait")).await;
    wait_status(&app, conversation, reply, "delivered").await;
    assert_eq!(texts_sent_to_wechat(&app, "o_cw_outage"), ["sorry for the wait"]);
}

#[tokio::test]
async fn an_agents_public_reply_reaches_wechat_once_in_order_as_plain_text_and_shows_delivered() {
    let app = chatwoot_app().await;
    customer_writes(&app, "o_cw_reply", "hello?").await;
    settled(&app, 1).await;
    let conversation = conversation_of(&app, "o_cw_reply");
    let first = app.chatwoot.agent_reply(conversation, AgentReply::text("**Yes!** See [the tracker](https://t.example/1)")).await;
    let second = app.chatwoot.agent_reply(conversation, AgentReply::text("second")).await;
    let third = app.chatwoot.agent_reply(conversation, AgentReply::text("third")).await;
    settled(&app, 4).await;
    assert_eq!(texts_sent_to_wechat(&app, "o_cw_reply"), ["Yes! See the tracker (https://t.example/1)", "second", "third"]);
    for id in [first, second, third] {
        wait_status(&app, conversation, id, "delivered").await;
    }
}

#[tokio::test]
async fn notes_templates_the_bridges_own_messages_and_other_events_are_answered_200_and_ignored() {
    let app = chatwoot_app().await;
    customer_writes(&app, "o_cw_ignore", "hi").await;
    settled(&app, 1).await;
    let conversation = conversation_of(&app, "o_cw_ignore");
    let note = app.chatwoot.agent_reply(conversation, AgentReply::private_note("internal: VIP customer")).await;
    let template =
        app.chatwoot.agent_reply(conversation, AgentReply { template: true, ..AgentReply::text("How did we do?") }).await;
    app.chatwoot.resolve(conversation).await;
    app.chatwoot.settle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.wechat.sent().is_empty(), "{:?}", app.wechat.sent());
    assert_eq!(app.store.messages(None, 10).await.unwrap().len(), 1, "only the customer's message is stored");
    let webhooks = app.chatwoot.webhooks();
    assert!(webhooks.len() >= 4, "{webhooks:?}");
    assert!(webhooks.iter().all(|w| w.status == Some(200)), "every webhook answered 200: {webhooks:?}");
    assert_ne!(status_of(&app, conversation, note).0, "failed");
    assert_ne!(status_of(&app, conversation, template).0, "failed");
}

fn sign(body: &str, ts: i64, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn a_missing_wrong_or_stale_signature_is_401_and_stores_nothing_and_a_redelivery_is_relayed_once() {
    let app = chatwoot_app().await;
    customer_writes(&app, "o_cw_signed", "hi").await;
    settled(&app, 1).await;
    let conversation = conversation_of(&app, "o_cw_signed");
    let body = json!({"event": "message_created", "id": 99_001, "content": "forged?", "message_type": "outgoing",
        "private": false, "account": {"id": 1}, "inbox": {"id": 3},
        "conversation": {"id": conversation, "inbox_id": 3}})
    .to_string();
    let url = format!("{}/webhooks/chatwoot", app.address);
    let client = reqwest::Client::new();
    let post = |ts: Option<i64>, sig: Option<String>| {
        let mut request = client.post(&url).header("content-type", "application/json").body(body.clone());
        if let Some(ts) = ts {
            request = request.header("X-Chatwoot-Timestamp", ts.to_string());
        }
        if let Some(sig) = sig {
            request = request.header("X-Chatwoot-Signature", sig);
        }
        request.send()
    };
    let now = now_secs();
    assert_eq!(post(None, None).await.unwrap().status(), 401, "unsigned");
    assert_eq!(post(Some(now), Some(sign(&body, now, "not-the-secret"))).await.unwrap().status(), 401, "wrong secret");
    assert_eq!(post(Some(now - 600), Some(sign(&body, now - 600, CHATWOOT_SECRET))).await.unwrap().status(), 401, "stale");
    assert_eq!(app.store.messages(None, 10).await.unwrap().len(), 1, "nothing stored");

    for _ in 0..2 {
        let answer = post(Some(now), Some(sign(&body, now, CHATWOOT_SECRET))).await.unwrap();
        assert_eq!(answer.status(), 200);
    }
    settled(&app, 2).await;
    assert_eq!(texts_sent_to_wechat(&app, "o_cw_signed"), ["forged?"], "a redelivered message id is relayed once");
}

#[tokio::test]
async fn an_agents_image_reaches_wechat_by_upload_after_the_text() {
    let app = chatwoot_app().await;
    customer_writes(&app, "o_cw_photo", "a photo please").await;
    settled(&app, 1).await;
    let conversation = conversation_of(&app, "o_cw_photo");
    let photo = SimFile { filename: "box.png".into(), content_type: "image/png".into(), bytes: vec![0x89, b'P', b'N', b'G', 9] };
    let id = app.chatwoot.agent_reply(conversation, AgentReply::text("here it is").with_attachment(photo)).await;
    settled(&app, 2).await;
    let sent: Vec<Value> = app.wechat.sent().into_iter().filter(|s| s["touser"] == "o_cw_photo").collect();
    assert_eq!(sent.iter().map(|s| s["msgtype"].as_str().unwrap()).collect::<Vec<_>>(), ["text", "image"]);
    assert!(sent[1]["image"]["media_id"].as_str().is_some_and(|m| !m.is_empty()));
    wait_status(&app, conversation, id, "delivered").await;
}

#[tokio::test]
async fn a_failed_reply_shows_the_reason_in_words_and_the_dashboards_retry_sends_it_again() {
    let app = chatwoot_app().await;
    customer_writes(&app, "o_cw_late", "hello").await;
    settled(&app, 1).await;
    let conversation = conversation_of(&app, "o_cw_late");
    app.wechat.close_window("o_cw_late");
    // The bridge's window says open, so it tries, and WeChat answers 45015.
    let id = app.chatwoot.agent_reply(conversation, AgentReply::text("sorry for the wait")).await;
    wait_status(&app, conversation, id, "failed").await;
    let (_, error) = status_of(&app, conversation, id);
    assert_eq!(error.as_deref(), Some("45015: the customer has not written in 48 hours; they must write first"));

    // The customer writes again; the agent presses Retry on the failed message.
    app.wechat.touch_window("o_cw_late");
    customer_writes(&app, "o_cw_late", "still there?").await;
    settled(&app, 3).await;
    app.chatwoot.retry(id).await;
    wait_status(&app, conversation, id, "delivered").await;
    assert_eq!(texts_sent_to_wechat(&app, "o_cw_late"), ["sorry for the wait"]);
    // Our own `delivered` report comes back as message_updated and changes nothing.
    app.chatwoot.settle().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(texts_sent_to_wechat(&app, "o_cw_late").len(), 1);
}

#[tokio::test]
async fn a_reply_written_while_the_bridge_was_away_reaches_wechat_once_after_the_restart() {
    let mut app = chatwoot_app().await;
    customer_writes(&app, "o_cw_away", "are you there?").await;
    settled(&app, 1).await;
    let conversation = conversation_of(&app, "o_cw_away");
    app.shutdown().await;
    // Chatwoot's fire-once webhook fails: the reply is marked failed there, never retried.
    let id = app.chatwoot.agent_reply(conversation, AgentReply::text("yes, I am")).await;
    let (status, error) = status_of(&app, conversation, id);
    assert_eq!(status, "failed", "Chatwoot marks the reply failed when its webhook fails");
    assert!(error.is_some());
    app.restart(WorkerMode::Background).await;
    settled(&app, 2).await;
    wait_status(&app, conversation, id, "delivered").await;
    assert_eq!(texts_sent_to_wechat(&app, "o_cw_away"), ["yes, I am"]);
    // A second restart catches up again from the last message seen: nothing is sent twice.
    app.restart(WorkerMode::Background).await;
    customer_writes(&app, "o_cw_away", "thanks").await;
    settled(&app, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(texts_sent_to_wechat(&app, "o_cw_away"), ["yes, I am"]);
}

#[tokio::test]
async fn order_per_contact_is_kept_through_failures_on_chatwoot() {
    let app = chatwoot_app().await;
    app.platform_fails_next(2, 503, None);
    for text in ["one", "two", "three"] {
        customer_writes(&app, "o_order", text).await;
    }
    wait_for("three messages on the platform", WAIT, || async { app.platform_texts().len() >= 3 }).await;
    assert_eq!(app.platform_texts(), ["one", "two", "three"]);
}

#[tokio::test]
async fn setup_points_the_inbox_at_the_bridge_with_a_48_hour_reply_window_and_says_what_is_left() {
    let app = chatwoot_app().await;
    let mut settings = app.settings.clone();
    settings.insert("BRIDGE_PUBLIC_URL".into(), "https://bridge.example.com".into());
    let config = wechat_bridge::config::Config::from_lookup(|k| settings.get(k).cloned()).unwrap();
    let mut out = Vec::new();
    wechat_bridge::app::setup(&config, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    let inbox = app.chatwoot.inbox();
    assert_eq!(inbox["webhook_url"], "https://bridge.example.com/webhooks/chatwoot");
    assert_eq!(inbox["additional_attributes"]["agent_reply_time_window"], 48);
    assert!(out.contains("CHATWOOT_WEBHOOK_SECRET matches"), "{out}");
    assert!(!out.contains(CHATWOOT_SECRET), "the secret is never printed: {out}");
    assert!(out.contains("https://bridge.example.com/webhooks/wechat"), "the WeChat console values follow: {out}");

    // A wrong secret, a bot token, an unknown inbox: one line naming the problem.
    settings.insert("CHATWOOT_WEBHOOK_SECRET".into(), "stale".into());
    let config = wechat_bridge::config::Config::from_lookup(|k| settings.get(k).cloned()).unwrap();
    let mut out = Vec::new();
    wechat_bridge::app::setup(&config, &mut out).await.unwrap();
    assert!(String::from_utf8(out).unwrap().contains("does not match the inbox's secret"));
    settings.insert("CHATWOOT_API_TOKEN".into(), wechat_bridge::chatwoot::sim::ChatwootSimConfig::new().bot_token);
    let config = wechat_bridge::config::Config::from_lookup(|k| settings.get(k).cloned()).unwrap();
    let err = wechat_bridge::app::setup(&config, &mut Vec::new()).await.unwrap_err();
    assert!(err.to_string().contains("agent-bot token"), "{err}");
    settings.insert("CHATWOOT_API_TOKEN".into(), wechat_bridge::chatwoot::sim::ChatwootSimConfig::new().admin_token);
    settings.insert("CHATWOOT_INBOX_ID".into(), "77".into());
    let config = wechat_bridge::config::Config::from_lookup(|k| settings.get(k).cloned()).unwrap();
    let err = wechat_bridge::app::setup(&config, &mut Vec::new()).await.unwrap_err();
    assert!(err.to_string().contains("no inbox 77"), "{err}");
}

/// A reply whose webhook was missed (a network blip) goes out before the next one, whose
/// webhook made the bridge catch up on the conversation first: the customer reads them in the
/// order the agent wrote them, long before the periodic catch-up.
#[tokio::test]
async fn a_reply_whose_webhook_was_missed_still_goes_out_before_the_next_one() {
    let app = spawn_app_with_platform(TestPlatform::Chatwoot, WorkerMode::Background, |s| {
        s.insert("CHATWOOT_CATCH_UP_SECS".into(), "3600".into());
    })
    .await;
    customer_writes(&app, "o_cw_gap", "hello").await;
    settled(&app, 1).await;
    let conversation = conversation_of(&app, "o_cw_gap");
    app.chatwoot.set_webhook_url(Some("http://127.0.0.1:9/unreachable".into()));
    let missed = app.chatwoot.agent_reply(conversation, AgentReply::text("first")).await;
    assert_eq!(status_of(&app, conversation, missed).0, "failed", "its webhook failed");
    app.chatwoot.set_webhook_url(Some(format!("{}/webhooks/chatwoot", app.address)));
    app.chatwoot.agent_reply(conversation, AgentReply::text("second")).await;
    settled(&app, 3).await;
    assert_eq!(texts_sent_to_wechat(&app, "o_cw_gap"), ["first", "second"]);
    wait_status(&app, conversation, missed, "delivered").await;
}

/// Without a webhook secret, a webhook only says where to look: what is sent is what
/// Chatwoot's API lists, so a forged body sends nothing.
#[tokio::test]
async fn unsigned_webhooks_relay_only_what_chatwoots_api_confirms() {
    let app = spawn_app_with_platform(TestPlatform::Chatwoot, WorkerMode::Background, |s| {
        s.remove("CHATWOOT_WEBHOOK_SECRET");
    })
    .await;
    customer_writes(&app, "o_cw_unsigned", "hi").await;
    settled(&app, 1).await;
    let conversation = conversation_of(&app, "o_cw_unsigned");
    let forged = json!({"event": "message_created", "id": 999_999, "content": "send money to …", "message_type": "outgoing",
        "private": false, "account": {"id": 1}, "inbox": {"id": 3}, "conversation": {"id": conversation, "inbox_id": 3}});
    let answer = reqwest::Client::new().post(format!("{}/webhooks/chatwoot", app.address)).json(&forged).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "not confirmed by Chatwoot's API");
    // A real reply (its webhook is unsigned too) is confirmed by the API and sent.
    let real = app.chatwoot.agent_reply(conversation, AgentReply::text("the real answer")).await;
    wait_status(&app, conversation, real, "delivered").await;
    assert_eq!(texts_sent_to_wechat(&app, "o_cw_unsigned"), ["the real answer"]);
}

/// Chatwoot saved the customer's message but its answer was lost (a proxy's 504): the retry
/// finds the message instead of posting it twice.
#[tokio::test]
async fn a_post_whose_answer_was_lost_is_not_posted_twice() {
    let app = chatwoot_app().await;
    customer_writes(&app, "o_cw_lost", "first").await;
    settled(&app, 1).await;
    app.chatwoot.lose_next_answers(1);
    customer_writes(&app, "o_cw_lost", "answer lost").await;
    let photo = app.wechat.add_media("image/png", vec![0x89, b'P', b'N', b'G']);
    settled(&app, 2).await;
    app.chatwoot.lose_next_answers(1);
    customer_sends(
        &app,
        "o_cw_lost",
        Body::Image { pic_url: "http://mmbiz.example/x.png".into(), media_id: photo, msg_id: app.wechat.next_msg_id() },
    )
    .await;
    settled(&app, 3).await;
    let contents: Vec<String> =
        app.chatwoot_incoming().iter().map(|m| m["content"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(contents, ["first", "answer lost", ""], "each message once");
    let stored = app.store.messages(None, 10).await.unwrap();
    assert!(stored.iter().all(|m| m.status == "delivered" && m.attempts <= 2), "{stored:?}");
    assert!(stored.iter().any(|m| m.attempts == 2), "the lost answers were retried");
}

/// An unfollow is a private note: agents see it, but it does not reopen a resolved
/// conversation or make it look answerable.
#[tokio::test]
async fn an_unfollow_is_a_private_note_that_does_not_reopen_the_conversation() {
    let app = chatwoot_app().await;
    customer_writes(&app, "o_cw_unfollow", "bye").await;
    settled(&app, 1).await;
    let conversation = conversation_of(&app, "o_cw_unfollow");
    app.chatwoot.resolve(conversation).await;
    customer_sends(&app, "o_cw_unfollow", Body::Event(Event::Unsubscribe)).await;
    settled(&app, 2).await;
    let note = app.chatwoot.messages(conversation).into_iter().find(|m| m["private"] == true).expect("a private note");
    assert!(note["content"].as_str().unwrap().contains("unfollowed"));
    assert_eq!(app.chatwoot.conversations()[0]["status"], "resolved");
}

/// A conversation Chatwoot already had (a lost database): what agents wrote there before is
/// history; the bridge adopts the conversation without sending old replies.
#[tokio::test]
async fn an_adopted_conversation_does_not_resend_its_history() {
    let app = chatwoot_app().await;
    let conversation = existing_contact_and_conversation(&app, "o_cw_history").await;
    app.chatwoot.agent_reply(conversation, AgentReply::text("an old reply, answered by phone")).await;
    customer_writes(&app, "o_cw_history", "hello again").await;
    settled(&app, 1).await;
    let fresh = app.chatwoot.agent_reply(conversation, AgentReply::text("a new reply")).await;
    wait_status(&app, conversation, fresh, "delivered").await;
    assert_eq!(texts_sent_to_wechat(&app, "o_cw_history"), ["a new reply"]);
}

/// A file WeChat cannot show (a PDF) goes as a link to it; a webhook of another inbox is ignored.
#[tokio::test]
async fn a_file_goes_as_a_link_and_other_inboxes_are_ignored() {
    let app = chatwoot_app().await;
    customer_writes(&app, "o_cw_file", "the invoice?").await;
    settled(&app, 1).await;
    let conversation = conversation_of(&app, "o_cw_file");
    let pdf = SimFile { filename: "invoice.pdf".into(), content_type: "application/pdf".into(), bytes: b"%PDF-1.4".to_vec() };
    let id = app.chatwoot.agent_reply(conversation, AgentReply::text("").with_attachment(pdf)).await;
    wait_status(&app, conversation, id, "delivered").await;
    let texts = texts_sent_to_wechat(&app, "o_cw_file");
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].starts_with("📎 http") && texts[0].ends_with("invoice.pdf"), "{texts:?}");
    let link = texts[0].trim_start_matches("📎 ");
    let file = reqwest::get(link).await.unwrap();
    assert_eq!(file.bytes().await.unwrap().as_ref(), b"%PDF-1.4", "the link leads to the file");

    let body = json!({"event": "message_created", "id": 5, "content": "not ours", "message_type": "outgoing",
        "private": false, "account": {"id": 1}, "inbox": {"id": 4}, "conversation": {"id": conversation, "inbox_id": 4}})
    .to_string();
    let now = now_secs();
    let answer = reqwest::Client::new()
        .post(format!("{}/webhooks/chatwoot", app.address))
        .header("content-type", "application/json")
        .header("X-Chatwoot-Timestamp", now.to_string())
        .header("X-Chatwoot-Signature", sign(&body, now, CHATWOOT_SECRET))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!((answer.status().as_u16(), answer.text().await.unwrap().as_str()), (200, "another inbox"));
}
