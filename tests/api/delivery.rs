//! The inbound path end to end: WeChat push → store → outbox worker → Vonage events, through
//! outages, restarts, crashed workers and permanent errors.

use std::time::Duration;

use serde_json::{Value, json};
use wechat_bridge::app::WorkerMode;
use wechat_bridge::vonage::jwt::JwtMinter;
use wechat_bridge::wechat::message;
use wechat_bridge::wechat::sim::PushMode;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

async fn wait_for_events(app: &TestApp, n: usize) {
    wait_for(&format!("{n} wechat events"), WAIT, || async { app.wechat_events().len() >= n }).await;
}

fn xml(openid: &str, rest: &str) -> message::Push {
    let xml = format!(
        "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{}</CreateTime>{rest}</xml>",
        wechat_bridge::store::now_ms() / 1000
    );
    message::parse(&xml).unwrap()
}

#[tokio::test]
async fn a_first_text_creates_user_conversation_member_and_posts_the_event() {
    let app = spawn_app().await;
    let push = app.wechat.text("o_alice", "你好, agent");
    assert_eq!(app.push(&push, PushMode::Safe).await.status, 200);
    wait_for_events(&app, 1).await;

    let users = app.vonage.users();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["name"], "wechat_o_alice");
    let conversations = app.vonage.conversations();
    assert_eq!(conversations.len(), 1);
    let conv_id = conversations[0]["id"].as_str().unwrap().to_string();
    let members = app.vonage.members(&conv_id);
    assert_eq!(members.len(), 1);
    let member_id = members[0]["id"].as_str().unwrap();

    let (event_conv, event) = &app.wechat_events()[0];
    assert_eq!(event_conv, &conv_id);
    assert_eq!(event["from"], member_id);
    let body = &event["body"];
    assert_eq!(body["to"], ACCOUNT);
    assert_eq!(body["from"], "o_alice");
    assert_eq!(body["content"], "你好, agent");
    assert_eq!(body["direction"], "inbound");
    assert_eq!(body["msgtype"], "text");
    assert_eq!(body["msg_id"], push.msg_id().unwrap());

    wait_for("message delivered", WAIT, || async { app.store.messages(None, 10).await.unwrap()[0].status == "delivered" }).await;
    let record = app.store.messages(None, 10).await.unwrap().remove(0);
    assert_eq!(body["bridge_message_id"], record.id.as_str());
    assert_eq!(record.platform_event_id.as_deref(), Some(event["id"].to_string().as_str()));
}

#[tokio::test]
async fn media_location_link_and_events_carry_typed_extras() {
    let app = spawn_app().await;
    let pushes = [
        xml(
            "o_bob",
            "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_42]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket>",
        ),
        xml(
            "o_bob",
            "<MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://mmbiz.example/pic.jpg]]></PicUrl><MediaId><![CDATA[media_1]]></MediaId><MsgId>1001</MsgId>",
        ),
        xml(
            "o_bob",
            "<MsgType><![CDATA[location]]></MsgType><Location_X>23.134521</Location_X><Location_Y>113.358803</Location_Y><Scale>20</Scale><Label><![CDATA[广州]]></Label><MsgId>1002</MsgId>",
        ),
        xml(
            "o_bob",
            "<MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[voice_1]]></MediaId><Format><![CDATA[amr]]></Format><Recognition><![CDATA[腾讯微信团队]]></Recognition><MsgId>1003</MsgId>",
        ),
        xml(
            "o_bob",
            "<MsgType><![CDATA[link]]></MsgType><Title><![CDATA[Docs]]></Title><Description><![CDATA[Read me]]></Description><Url><![CDATA[https://example.com]]></Url><MsgId>1004</MsgId>",
        ),
    ];
    for push in &pushes {
        assert_eq!(app.push(push, PushMode::Safe).await.status, 200);
    }
    wait_for_events(&app, 5).await;
    let bodies: Vec<Value> = app.wechat_events().into_iter().map(|(_, e)| e["body"].clone()).collect();
    // Per-contact order is kept.
    let types: Vec<&str> = bodies.iter().map(|b| b["msgtype"].as_str().unwrap()).collect();
    assert_eq!(types, ["event", "image", "location", "voice", "link"]);
    assert_eq!(bodies[0]["event"]["name"], "subscribe");
    assert_eq!(bodies[0]["event"]["key"], "qrscene_42");
    assert_eq!(bodies[0]["event"]["ticket"], "TICKET");
    assert_eq!(bodies[1]["media"]["media_id"], "media_1");
    assert_eq!(bodies[1]["media"]["url"], "http://mmbiz.example/pic.jpg");
    assert_eq!(bodies[2]["location"]["latitude"], 23.134521);
    assert_eq!(bodies[2]["location"]["label"], "广州");
    assert_eq!(bodies[3]["media"]["recognition"], "腾讯微信团队");
    assert_eq!(bodies[3]["content"], "腾讯微信团队");
    assert_eq!(bodies[4]["link"]["url"], "https://example.com");
    for body in &bodies {
        assert!(!body["content"].as_str().unwrap().is_empty(), "content is never empty: {body}");
    }
    // One contact, one user, one conversation.
    assert_eq!(app.vonage.users().len(), 1);
    assert_eq!(app.vonage.conversations().len(), 1);
}

#[tokio::test]
async fn many_messages_from_one_user_arrive_in_order() {
    let app = spawn_app_with(WorkerMode::Manual, |_| {}).await;
    for i in 0..8 {
        let push = app.wechat.text("o_carol", &format!("message {i}"));
        assert_eq!(app.push(&push, PushMode::Safe).await.status, 200);
    }
    assert!(app.wechat_events().is_empty(), "nothing is delivered before the worker runs");
    // One job per contact and lane is claimed at a time: eight batches of one, in order.
    assert_eq!(app.run_worker().await, 8);
    let contents: Vec<String> =
        app.wechat_events().iter().map(|(_, e)| e["body"]["content"].as_str().unwrap().to_string()).collect();
    assert_eq!(contents, (0..8).map(|i| format!("message {i}")).collect::<Vec<_>>());
    assert_eq!(app.store.outbox_depth().await.unwrap(), 0);
}

#[tokio::test]
async fn vonage_failing_for_a_while_delays_but_loses_nothing() {
    let app = spawn_app().await;
    app.vonage.set_down(true);
    for user in ["o_d1", "o_d2"] {
        for i in 0..3 {
            let push = app.wechat.text(user, &format!("{user} {i}"));
            assert_eq!(app.push(&push, PushMode::Safe).await.status, 200, "accepting never waits for Vonage");
        }
    }
    wait_for("several failed attempts", WAIT, || async {
        app.store.messages(None, 10).await.unwrap().iter().any(|m| m.attempts >= 2)
    })
    .await;
    assert!(app.wechat_events().is_empty());
    assert!(app.store.messages(None, 10).await.unwrap().iter().all(|m| m.status == "stored"));
    app.vonage.set_down(false);
    wait_for_events(&app, 6).await;
    wait_for("all delivered", WAIT, || async {
        app.store.messages(None, 10).await.unwrap().iter().all(|m| m.status == "delivered")
    })
    .await;
    let events = app.wechat_events();
    assert_eq!(events.len(), 6, "each message exactly once");
    for user in ["o_d1", "o_d2"] {
        let contents: Vec<&str> = events
            .iter()
            .filter(|(_, e)| e["body"]["from"] == user)
            .map(|(_, e)| e["body"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(contents, (0..3).map(|i| format!("{user} {i}")).collect::<Vec<_>>());
    }
    assert_eq!(app.vonage.users().len(), 2);
    assert_eq!(app.vonage.conversations().len(), 2);
}

#[tokio::test]
async fn transient_429s_and_5xx_are_retried_and_retry_after_is_honoured() {
    let app = spawn_app_with(WorkerMode::Manual, |_| {}).await;
    app.vonage.fail_next(1, 429, Some(1));
    app.push(&app.wechat.text("o_erin", "rate limited"), PushMode::Safe).await;
    let started = wechat_bridge::store::now_ms();
    assert_eq!(app.run_worker().await, 1, "one attempt, then the job waits");
    assert!(app.wechat_events().is_empty());
    let due = app.store.next_due_at().await.unwrap().expect("the job is rescheduled");
    assert!(due >= started + 1000, "Retry-After: 1 was not honoured: due in {} ms", due - started);
    app.skip_backoff().await;
    assert_eq!(app.run_worker().await, 1);
    assert_eq!(app.wechat_events().len(), 1);

    app.vonage.fail_next(2, 503, None);
    app.push(&app.wechat.text("o_erin", "after 503s"), PushMode::Safe).await;
    for _ in 0..3 {
        app.run_worker().await;
        app.skip_backoff().await;
    }
    assert_eq!(app.wechat_events().len(), 2);
    let after_503s = app.store.messages(None, 10).await.unwrap().remove(0);
    assert_eq!((after_503s.status.as_str(), after_503s.attempts), ("delivered", 3), "two 503s, then delivered");
}

#[tokio::test]
async fn a_restart_in_the_middle_loses_nothing_and_creates_no_second_conversation() {
    let mut app = spawn_app_with(WorkerMode::Manual, |_| {}).await;
    for i in 0..3 {
        app.push(&app.wechat.text("o_frank", &format!("before restart {i}")), PushMode::Safe).await;
    }
    assert!(app.wechat_events().is_empty());
    app.restart(WorkerMode::Background).await;
    wait_for_events(&app, 3).await;
    app.restart(WorkerMode::Background).await;
    app.push(&app.wechat.text("o_frank", "after restart"), PushMode::Safe).await;
    wait_for_events(&app, 4).await;
    let contents: Vec<String> =
        app.wechat_events().iter().map(|(_, e)| e["body"]["content"].as_str().unwrap().to_string()).collect();
    assert_eq!(contents, ["before restart 0", "before restart 1", "before restart 2", "after restart"]);
    assert_eq!(app.vonage.users().len(), 1);
    assert_eq!(app.vonage.conversations().len(), 1);
    assert_eq!(app.vonage.request_count("POST", "/v1/users"), 1);
}

#[tokio::test]
async fn a_job_claimed_by_a_dead_worker_is_claimed_again_after_its_lease() {
    let mut app = spawn_app_with(WorkerMode::Manual, |_| {}).await;
    app.push(&app.wechat.text("o_gina", "orphaned"), PushMode::Safe).await;
    // Another process claims the job and dies without finishing it.
    let claimed = app.store.claim_jobs(300, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(app.store.claim_jobs(300, 10).await.unwrap().is_empty(), "a leased job is not claimed twice");
    app.restart(WorkerMode::Background).await;
    wait_for_events(&app, 1).await;
    // The dead worker's late completion must not count.
    assert!(!app.store.complete_job(&claimed[0], None).await.unwrap());
    assert_eq!(app.wechat_events().len(), 1);
}

#[tokio::test]
async fn a_permanent_error_fails_at_once_and_can_be_retried() {
    let app = spawn_app().await;
    app.vonage.fail_next(1, 400, None);
    app.push(&app.wechat.text("o_hank", "bad request"), PushMode::Safe).await;
    wait_for("failed", WAIT, || async { app.store.messages(None, 10).await.unwrap()[0].status == "failed" }).await;
    let failed = app.store.messages(Some("failed"), 10).await.unwrap().remove(0);
    assert_eq!(failed.attempts, 1);
    assert!(failed.last_error.as_deref().unwrap().contains("400"), "{:?}", failed.last_error);
    assert!(app.wechat_events().is_empty());
    assert!(app.store.retry_message(&failed.id).await.unwrap());
    wait_for_events(&app, 1).await;
    wait_for("delivered", WAIT, || async { app.store.message(&failed.id).await.unwrap().status == "delivered" }).await;
}

#[tokio::test]
async fn too_many_attempts_mark_the_message_failed() {
    let app = spawn_app_with(WorkerMode::Background, |s| {
        s.insert("BRIDGE_MAX_ATTEMPTS".into(), "3".into());
    })
    .await;
    app.vonage.set_down(true);
    app.push(&app.wechat.text("o_ivy", "never"), PushMode::Safe).await;
    wait_for("failed", WAIT, || async { app.store.messages(None, 10).await.unwrap()[0].status == "failed" }).await;
    let failed = app.store.messages(None, 10).await.unwrap().remove(0);
    assert_eq!(failed.attempts, 3);
    assert!(failed.last_error.unwrap().contains("gave up after 3 attempts"));
    assert_eq!(app.store.outbox_depth().await.unwrap(), 0);
}

#[tokio::test]
async fn an_existing_vonage_user_and_conversation_are_found_and_reused() {
    let app = spawn_app().await;
    // A previous run created them, then lost its database.
    let minter = JwtMinter::new(VONAGE_APP_ID, &keypair().0).unwrap();
    let http = reqwest::Client::new();
    let base = &app.settings["VONAGE_API_BASE"];
    for (path, body) in [
        ("/v1/users", json!({"name": "wechat_o_jack", "display_name": "old"})),
        ("/v1/conversations", json!({"name": "wechat_o_jack", "display_name": "old"})),
    ] {
        let status =
            http.post(format!("{base}{path}")).bearer_auth(minter.token().unwrap()).json(&body).send().await.unwrap().status();
        assert_eq!(status, 201);
    }
    app.push(&app.wechat.text("o_jack", "I am back"), PushMode::Safe).await;
    wait_for_events(&app, 1).await;
    assert_eq!(app.vonage.users().len(), 1);
    assert_eq!(app.vonage.conversations().len(), 1);
    let conv = app.vonage.conversations()[0]["id"].as_str().unwrap().to_string();
    assert_eq!(app.wechat_events()[0].0, conv);
}

#[tokio::test]
async fn single_conversation_mode_puts_every_user_in_the_configured_conversation() {
    let mut app = spawn_app_with(WorkerMode::Manual, |_| {}).await;
    let minter = JwtMinter::new(VONAGE_APP_ID, &keypair().0).unwrap();
    let created: Value = reqwest::Client::new()
        .post(format!("{}/v1/conversations", app.settings["VONAGE_API_BASE"]))
        .bearer_auth(minter.token().unwrap())
        .json(&json!({"name": "support"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shared = created["id"].as_str().unwrap().to_string();
    app.settings.insert("VONAGE_CONVERSATION_ID".into(), shared.clone());
    app.restart(WorkerMode::Background).await;
    app.push(&app.wechat.text("o_k1", "one"), PushMode::Safe).await;
    app.push(&app.wechat.text("o_k2", "two"), PushMode::Safe).await;
    wait_for_events(&app, 2).await;
    assert_eq!(app.vonage.conversations().len(), 1);
    assert!(app.wechat_events().iter().all(|(conv, _)| conv == &shared));
    assert_eq!(app.vonage.members(&shared).len(), 2);
}

#[tokio::test]
async fn application_jwts_are_reused_between_calls() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.push(&app.wechat.text("o_lee", &format!("{i}")), PushMode::Safe).await;
    }
    wait_for_events(&app, 3).await;
    let ids = app.vonage.jwt_ids();
    assert!(ids.len() >= 6, "user, conversation, member and 3 events");
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 1, "one token for all calls within its lifetime");
}
