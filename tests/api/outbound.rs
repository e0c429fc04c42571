//! The outbound path end to end: an agent's event on Vonage → signed RTC webhook → store →
//! worker → WeChat customer-service API → `custom:wechat:status` back in the conversation.

use std::time::Duration;

use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wechat_bridge::app::WorkerMode;
use wechat_bridge::wechat::sim::PushMode;

use wechat_bridge::relay::ids::BridgeMessageId;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

/// A customer writes first (opening the window); returns the conversation id and an agent member.
async fn customer_writes(app: &TestApp, openid: &str) -> (String, String) {
    let before = app.wechat_events().len();
    assert_eq!(app.push(&app.wechat.text(openid, "hello"), PushMode::Safe).await.status, 200);
    wait_for("the inbound event", WAIT, || async { app.wechat_events().len() > before }).await;
    let conv = app.wechat_events().last().unwrap().0.clone();
    let agent = app.vonage.create_agent("agent_1", &conv);
    (conv, agent)
}

fn agent_says(app: &TestApp, conv: &str, agent: &str, body: Value) -> Value {
    app.vonage
        .post_event_as_client(conv, json!({"type": "custom:wechat:message", "from": agent, "body": body}))
        .expect("the simulator accepts the agent's event")
}

fn statuses(app: &TestApp, conv: &str) -> Vec<Value> {
    app.vonage.events(conv).into_iter().filter(|e| e["type"] == "custom:wechat:status").map(|e| e["body"].clone()).collect()
}

async fn wait_sent(app: &TestApp, n: usize) {
    wait_for(&format!("{n} messages sent to WeChat"), WAIT, || async { app.wechat.sent().len() >= n }).await;
}

async fn wait_statuses(app: &TestApp, conv: &str, n: usize) {
    wait_for(&format!("{n} status events"), WAIT, || async { statuses(app, conv).len() >= n }).await;
}

#[tokio::test]
async fn an_agent_reply_reaches_wechat_and_its_status_comes_back() {
    let app = spawn_app().await;
    let (conv, agent) = customer_writes(&app, "o_out_1").await;
    let event = agent_says(
        &app,
        &conv,
        &agent,
        json!({"to": "o_out_1", "from": "agent", "content": "Your order ships today", "direction": "outbound"}),
    );
    wait_sent(&app, 1).await;
    let sent = app.wechat.sent();
    assert_eq!(sent[0], json!({"touser": "o_out_1", "msgtype": "text", "text": {"content": "Your order ships today"}}));
    wait_statuses(&app, &conv, 1).await;
    let status = &statuses(&app, &conv)[0];
    assert_eq!(status["status"], "delivered");
    assert_eq!(status["vonage_event_id"], event["id"].to_string());
    let record = app.store.message(&BridgeMessageId::from_raw(status["bridge_message_id"].as_str().unwrap())).await.unwrap();
    assert_eq!((record.direction.as_str(), record.status.as_str()), ("outbound", "delivered"));
    // Echoes: the bridge's own inbound and status events came back through the webhook and were
    // ignored, so exactly one message went to WeChat and nothing loops.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.wechat.sent().len(), 1);
    assert_eq!(app.store.messages(None, 100).await.unwrap().iter().filter(|m| m.direction == "outbound").count(), 1);
}

#[tokio::test]
async fn a_plain_vonage_message_event_is_relayed_without_to() {
    let app = spawn_app().await;
    let (conv, agent) = customer_writes(&app, "o_out_2").await;
    app.vonage
        .post_event_as_client(
            &conv,
            json!({"type": "message", "from": agent, "body": {"message_type": "text", "text": "from a plain client"}}),
        )
        .unwrap();
    wait_sent(&app, 1).await;
    assert_eq!(app.wechat.sent()[0]["touser"], "o_out_2");
    assert_eq!(app.wechat.sent()[0]["text"]["content"], "from a plain client");
}

/// Signs `body` like Vonage's signed webhooks (HS256, payload_hash, iat).
fn signed(body: &str, secret: &str, iat: u64) -> String {
    let claims = json!({"iat": iat, "jti": uuid::Uuid::new_v4().to_string(), "iss": "Vonage",
        "payload_hash": hex::encode(Sha256::digest(body.as_bytes())), "api_key": "key", "application_id": VONAGE_APP_ID});
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

async fn post_rtc(app: &TestApp, body: &str, auth: Option<String>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{}/webhooks/vonage/rtc", app.address))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(token) = auth {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

fn now() -> u64 {
    (wechat_bridge::store::now_ms() / 1000) as u64
}

#[tokio::test]
async fn unsigned_forged_stale_and_tampered_webhooks_are_401_and_store_nothing() {
    let app = spawn_app().await;
    let (conv, _) = customer_writes(&app, "o_out_3").await;
    let body = json!({"type": "custom:wechat:message", "id": 9999, "conversation_id": conv, "from": "MEM-x",
        "body": {"to": "o_out_3", "content": "forged", "direction": "outbound"}})
    .to_string();
    let tampered = body.replace("forged", "tampered");
    assert_eq!(post_rtc(&app, &body, None).await, 401);
    assert_eq!(post_rtc(&app, &body, Some(signed(&body, "wrong-secret", now()))).await, 401);
    assert_eq!(post_rtc(&app, &body, Some(signed(&body, SIGNATURE_SECRET, now() - 3600))).await, 401);
    assert_eq!(post_rtc(&app, &tampered, Some(signed(&body, SIGNATURE_SECRET, now()))).await, 401);
    assert_eq!(post_rtc(&app, "{not json", Some(signed("{not json", SIGNATURE_SECRET, now()))).await, 400);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.store.messages(None, 100).await.unwrap().iter().all(|m| m.direction == "inbound"));
    assert!(app.wechat.sent().is_empty());
    // The same event, correctly signed, is accepted; redelivered, it is relayed once.
    for _ in 0..3 {
        assert_eq!(post_rtc(&app, &body, Some(signed(&body, SIGNATURE_SECRET, now()))).await, 200);
    }
    wait_sent(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.wechat.sent().len(), 1);
}

#[tokio::test]
async fn the_access_token_is_fetched_once_for_many_sends_and_renewed_when_revoked() {
    let app = spawn_app().await;
    let (conv, agent) = customer_writes(&app, "o_out_4").await;
    for i in 0..3 {
        agent_says(&app, &conv, &agent, json!({"content": format!("reply {i}"), "direction": "outbound"}));
    }
    wait_sent(&app, 3).await;
    assert_eq!(app.wechat.token_calls(), 1, "one token for all sends");
    app.wechat.revoke_tokens();
    agent_says(&app, &conv, &agent, json!({"content": "after revocation", "direction": "outbound"}));
    wait_sent(&app, 4).await;
    wait_statuses(&app, &conv, 4).await;
    let contents: Vec<Value> = app.wechat.sent().iter().map(|m| m["text"]["content"].clone()).collect();
    assert_eq!(contents, ["reply 0", "reply 1", "reply 2", "after revocation"]);
    assert!(statuses(&app, &conv).iter().all(|s| s["status"] == "delivered"));
}

#[tokio::test]
async fn outside_the_48_hour_window_the_reply_fails_at_once_with_a_status_event() {
    let app = spawn_app().await;
    let (conv, agent) = customer_writes(&app, "o_out_5").await;
    app.wechat.close_window("o_out_5");
    agent_says(&app, &conv, &agent, json!({"content": "too late", "direction": "outbound"}));
    wait_statuses(&app, &conv, 1).await;
    let status = &statuses(&app, &conv)[0];
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"]["code"], "45015");
    let record = app.store.message(&BridgeMessageId::from_raw(status["bridge_message_id"].as_str().unwrap())).await.unwrap();
    assert_eq!((record.status.as_str(), record.attempts), ("failed", 1), "a permanent error is not retried");
}

#[tokio::test]
async fn the_window_quota_is_enforced_without_calling_wechat() {
    let app = spawn_app_with(wechat_bridge::app::WorkerMode::Background, |s| {
        s.insert("WECHAT_WINDOW_QUOTA".into(), "2".into());
    })
    .await;
    let (conv, agent) = customer_writes(&app, "o_out_6").await;
    for i in 0..3 {
        agent_says(&app, &conv, &agent, json!({"content": format!("r{i}"), "direction": "outbound"}));
    }
    wait_statuses(&app, &conv, 3).await;
    let s = statuses(&app, &conv);
    assert_eq!(s.iter().filter(|s| s["status"] == "delivered").count(), 2);
    let failed: Vec<&Value> = s.iter().filter(|s| s["status"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["error"]["code"], "45047");
    assert_eq!(app.wechat.sent().len(), 2);
    // The customer writes again: the window and its quota start over.
    app.push(&app.wechat.text("o_out_6", "again"), PushMode::Safe).await;
    wait_for("the second inbound", WAIT, || async { app.wechat_events().len() >= 2 }).await;
    agent_says(&app, &conv, &agent, json!({"content": "r3", "direction": "outbound"}));
    wait_sent(&app, 3).await;
}

#[tokio::test]
async fn wechat_down_for_a_while_delays_delivery_and_loses_nothing() {
    let app = spawn_app().await;
    let (conv, agent) = customer_writes(&app, "o_out_7").await;
    app.wechat.set_down(true);
    agent_says(&app, &conv, &agent, json!({"content": "during the outage", "direction": "outbound"}));
    wait_for("retries", WAIT, || async {
        app.store.messages(None, 100).await.unwrap().iter().any(|m| m.direction == "outbound" && m.attempts >= 2)
    })
    .await;
    assert!(app.wechat.sent().is_empty());
    app.wechat.set_down(false);
    app.wechat.fail_next(1, -1, "system error");
    wait_sent(&app, 1).await;
    wait_statuses(&app, &conv, 1).await;
    assert_eq!(statuses(&app, &conv)[0]["status"], "delivered");
    assert_eq!(app.wechat.sent().len(), 1);
}

#[tokio::test]
async fn a_long_text_is_split_in_order() {
    let app = spawn_app().await;
    let (conv, agent) = customer_writes(&app, "o_out_8").await;
    let text: String = (0..300).map(|i| format!("{i:04} 中文 ")).collect(); // 3,600 bytes: Vonage caps the body at 4,096
    agent_says(&app, &conv, &agent, json!({"content": text, "direction": "outbound"}));
    wait_statuses(&app, &conv, 1).await;
    let parts: Vec<String> = app.wechat.sent().iter().map(|m| m["text"]["content"].as_str().unwrap().to_string()).collect();
    assert_eq!(parts.len(), 2);
    assert!(parts.iter().all(|p| p.len() <= 2048));
    assert_eq!(parts.concat(), text);
    assert_eq!(statuses(&app, &conv).len(), 1, "one status for the whole message");
}

#[tokio::test]
async fn an_image_by_url_is_downloaded_uploaded_then_sent() {
    let app = spawn_app().await;
    let png: Vec<u8> = vec![0x89, b'P', b'N', b'G', 13, 10, 26, 10, 1, 2, 3];
    let served = png.clone();
    let files = serve(axum::Router::new().route(
        "/pic.png",
        get(move || {
            let bytes = served.clone();
            async move { ([("content-type", "image/png")], bytes) }
        }),
    ))
    .await;
    let (conv, agent) = customer_writes(&app, "o_out_9").await;
    agent_says(
        &app,
        &conv,
        &agent,
        json!({"msgtype": "image", "media": {"url": format!("{files}/pic.png")}, "direction": "outbound"}),
    );
    wait_sent(&app, 1).await;
    let sent = &app.wechat.sent()[0];
    assert_eq!(sent["msgtype"], "image");
    let media_id = sent["image"]["media_id"].as_str().unwrap();
    let requests = app.wechat.requests();
    let upload = requests.iter().position(|r| r == "/cgi-bin/media/upload").expect("uploaded");
    let send = requests.iter().position(|r| r == "/cgi-bin/message/custom/send").unwrap();
    assert!(upload < send);
    let client = reqwest::Client::new();
    let token: Value = client
        .post(format!("{}/cgi-bin/stable_token", app.settings["WECHAT_API_BASE"]))
        .json(&json!({"grant_type": "client_credential", "appid": APP_ID, "secret": APP_SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = client
        .get(format!(
            "{}/cgi-bin/media/get?access_token={}&media_id={media_id}",
            app.settings["WECHAT_API_BASE"],
            token["access_token"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(stored.to_vec(), png);
}

#[tokio::test]
async fn a_follow_opens_a_one_minute_window_of_three_replies_and_unsubscribing_closes_it() {
    let app = spawn_app().await;
    let follow = wechat_bridge::wechat::message::parse(&format!(
        "<xml><ToUserName>{ACCOUNT}</ToUserName><FromUserName>o_follow</FromUserName><CreateTime>{}</CreateTime>\
         <MsgType>event</MsgType><Event>subscribe</Event></xml>",
        now()
    ))
    .unwrap();
    assert_eq!(app.push(&follow, PushMode::Safe).await.status, 200);
    wait_for("the follow event", WAIT, || async { !app.wechat_events().is_empty() }).await;
    let conv = app.wechat_events()[0].0.clone();
    let agent = app.vonage.create_agent("agent_1", &conv);
    for i in 0..4 {
        agent_says(&app, &conv, &agent, json!({"content": format!("welcome {i}"), "direction": "outbound"}));
    }
    wait_statuses(&app, &conv, 4).await;
    let s = statuses(&app, &conv);
    assert_eq!(s.iter().filter(|s| s["status"] == "delivered").count(), 3, "3 replies after a follow (§6.2)");
    assert_eq!(s.iter().find(|s| s["status"] == "failed").unwrap()["error"]["code"], "45047");

    let mut unfollow = follow.clone();
    unfollow.create_time += 1;
    unfollow.body = wechat_bridge::wechat::message::Body::Event(wechat_bridge::wechat::message::Event::Unsubscribe);
    assert_eq!(app.push(&unfollow, PushMode::Safe).await.status, 200);
    wait_for("the unsubscribe event", WAIT, || async { app.wechat_events().len() >= 2 }).await;
    let sends_before = app.wechat.requests().iter().filter(|r| *r == "/cgi-bin/message/custom/send").count();
    agent_says(&app, &conv, &agent, json!({"content": "come back", "direction": "outbound"}));
    wait_statuses(&app, &conv, 5).await;
    assert_eq!(statuses(&app, &conv)[4]["error"]["code"], "45015");
    let sends_after = app.wechat.requests().iter().filter(|r| *r == "/cgi-bin/message/custom/send").count();
    assert_eq!(sends_before, sends_after, "a closed window fails without calling WeChat");
}

/// The newest outbound message in the store.
async fn last_outbound(app: &TestApp) -> Option<wechat_bridge::store::MessageRecord> {
    app.store.messages(None, 100).await.unwrap().into_iter().find(|m| m.direction == "outbound")
}

#[tokio::test]
async fn a_hanging_media_url_holds_up_nobody_else_and_is_cut_off_by_the_job_timeout() {
    let app = spawn_app_with(WorkerMode::Background, |s| {
        s.insert("BRIDGE_JOB_TIMEOUT_SECS".into(), "3".into());
    })
    .await;
    // A media server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow.png", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let (conv, agent) = customer_writes(&app, "o_hang").await;
    agent_says(&app, &conv, &agent, json!({"msgtype": "image", "media": {"url": url}, "direction": "outbound"}));
    wait_for("the hanging job to start", WAIT, || async { last_outbound(&app).await.is_some_and(|m| m.attempts >= 1) }).await;
    // Another customer writes meanwhile: delivered while the first job still hangs.
    let before = app.wechat_events().len();
    assert_eq!(app.push(&app.wechat.text("o_other", "am I stuck?"), PushMode::Safe).await.status, 200);
    wait_for("the other customer's message", WAIT, || async { app.wechat_events().len() > before }).await;
    let hanging = last_outbound(&app).await.unwrap();
    assert_eq!((hanging.status.as_str(), hanging.attempts, hanging.last_error.as_deref()), ("stored", 1, None));
    // The job timeout ends the attempt; it is retried later like any other failure.
    wait_for("the job timeout", WAIT, || async {
        last_outbound(&app).await.and_then(|m| m.last_error).is_some_and(|e| e.contains("timed out after 3 s"))
    })
    .await;
}

#[tokio::test]
async fn shutdown_releases_running_jobs_instead_of_draining_the_outbox() {
    let mut app = spawn_app().await;
    for i in 0..10 {
        assert_eq!(app.push(&app.wechat.text("o_slow", &format!("m{i}")), PushMode::Safe).await.status, 200);
        if i == 0 {
            wait_for("the first delivery", WAIT, || async { app.wechat_events().len() == 1 }).await;
            app.vonage.set_latency(Duration::from_secs(3)); // slower than the 1 s grace of tests
        }
    }
    wait_for("a slow delivery in flight", WAIT, || async { app.store.running_jobs().await.unwrap() == 1 }).await;
    let started = std::time::Instant::now();
    app.shutdown().await;
    println!("shutdown with a delivery in flight took {:?}", started.elapsed());
    assert!(app.wechat_events().len() < 10, "shutdown drained the whole outbox first");
    assert_eq!(app.store.running_jobs().await.unwrap(), 0, "a claimed job was neither finished nor released");
    app.vonage.set_latency(Duration::ZERO);
    app.restart(WorkerMode::Background).await;
    wait_for("all ten delivered", WAIT, || async { app.store.outbox_depth().await.unwrap() == 0 }).await;
    let mut contents: Vec<String> =
        app.wechat_events().iter().map(|(_, e)| e["body"]["content"].as_str().unwrap().to_string()).collect();
    contents.dedup(); // a delivery cut off by the shutdown may arrive twice, back to back
    assert_eq!(contents, (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_to_naming_another_conversations_customer_is_refused() {
    let app = spawn_app().await;
    let (_conv_a, _) = customer_writes(&app, "o_alice").await;
    let (conv_b, agent_b) = customer_writes(&app, "o_bob").await;
    // An agent in Bob's conversation names Alice's OpenID: nothing goes to Alice (or Bob).
    agent_says(&app, &conv_b, &agent_b, json!({"to": "o_alice", "content": "for alice?", "direction": "outbound"}));
    // Then a proper reply in the same conversation: it is the only one sent.
    agent_says(&app, &conv_b, &agent_b, json!({"to": "o_bob", "content": "for bob", "direction": "outbound"}));
    wait_sent(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = app.wechat.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0]["touser"].as_str(), sent[0]["text"]["content"].as_str()), (Some("o_bob"), Some("for bob")));
    assert_eq!(app.store.messages(None, 100).await.unwrap().iter().filter(|m| m.direction == "outbound").count(), 1);
}

#[tokio::test]
async fn a_job_running_longer_than_its_lease_keeps_it_and_is_not_run_twice() {
    // 1 s leases (the test settings); the media server takes 2.5 s to answer.
    let app = spawn_app().await;
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = fetches.clone();
    let files = serve(axum::Router::new().route(
        "/slow.png",
        get(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                ([("content-type", "image/png")], vec![0x89, b'P', b'N', b'G', 13, 10, 26, 10])
            }
        }),
    ))
    .await;
    let (conv, agent) = customer_writes(&app, "o_lease").await;
    // A second instance on the same database, ready to take any job whose lease runs out.
    let mut config = app.config();
    config.relay.poll_interval = Duration::from_millis(50);
    let other = wechat_bridge::app::Application::build(config, WorkerMode::Background).await.unwrap();
    tokio::spawn(other.run_until_stopped(std::future::pending()));
    agent_says(
        &app,
        &conv,
        &agent,
        json!({"msgtype": "image", "media": {"url": format!("{files}/slow.png")}, "direction": "outbound"}),
    );
    wait_sent(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1, "the job was claimed again while it ran");
    assert_eq!(app.wechat.sent().len(), 1);
}
