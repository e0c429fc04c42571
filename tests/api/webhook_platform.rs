//! `BRIDGE_PLATFORM=webhook`: customer messages and outcomes go out as Standard Webhooks events
//! to the app's receiver; apps send through `/api/v1`. Plus test bodies shared by both platforms.

use std::time::Duration;

use serde_json::{Value, json};
use wechat_bridge::app::WorkerMode;
use wechat_bridge::wechat::message::{Body, Push};
use wechat_bridge::wechat::sim::PushMode;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);
const ADMIN: &str = "admin-token-for-webhook-tests";

async fn webhook_app(mode: WorkerMode) -> TestApp {
    spawn_app_with_platform(TestPlatform::Webhook, mode, |s| {
        s.insert("BRIDGE_ADMIN_TOKEN".into(), ADMIN.into());
    })
    .await
}

/// A customer writes (and the message is delivered): their reply window opens.
async fn customer_writes(app: &TestApp, openid: &str, text: &str) {
    assert_eq!(app.push(&app.wechat.text(openid, text), PushMode::Safe).await.status, 200);
}

#[tokio::test]
async fn a_customer_message_becomes_a_signed_message_received_event() {
    let app = webhook_app(WorkerMode::Manual).await;
    let text = app.wechat.text("o_hook_1", "你好, app");
    app.push(&text, PushMode::Safe).await;
    let media_id = app.wechat.add_media("image/png", vec![1, 2, 3]);
    let image = Push {
        to_user_name: ACCOUNT.into(),
        from_user_name: "o_hook_1".into(),
        create_time: 1_700_000_000,
        body: Body::Image {
            pic_url: "http://mmbiz.example/a.png".into(),
            media_id: media_id.clone(),
            msg_id: app.wechat.next_msg_id(),
        },
    };
    app.push(&image, PushMode::Safe).await;
    assert_eq!(app.run_worker().await, 2);

    // The receiver verified both with the `standardwebhooks` crate (it answers 401 otherwise).
    assert_eq!(app.receiver.rejected(), 0);
    let deliveries = app.receiver.deliveries();
    assert_eq!(deliveries.len(), 2);
    let messages = app.store.messages(None, 10).await.unwrap();
    let first = messages.iter().find(|m| m.msg_type == "text").unwrap();
    assert_eq!(first.status, "delivered");
    assert_eq!(deliveries[0].id, format!("msg_{}", first.id));
    assert_eq!(first.platform_event_id.as_deref(), Some(deliveries[0].id.as_str()));
    assert!((deliveries[0].timestamp - wechat_bridge::store::now_ms() / 1000).abs() < 60);
    let event = &deliveries[0].event;
    assert_eq!(event["type"], "message.received");
    assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
    let data = &event["data"];
    assert_eq!(data["bridge_message_id"], first.id.as_str());
    assert_eq!(
        (&data["channel"], &data["account"], &data["contact"], &data["direction"], &data["msgtype"], &data["content"]),
        (&json!("wechat"), &json!(ACCOUNT), &json!("o_hook_1"), &json!("inbound"), &json!("text"), &json!("你好, app"))
    );
    assert_eq!(data["msg_id"], json!(text.msg_id().unwrap()), "msg_id is a string");
    assert!(data["create_time"].is_i64());

    let image_event = &deliveries[1].event;
    assert_eq!(image_event["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(image_event["data"]["msgtype"], "image");
    assert_eq!(image_event["data"]["media"]["media_id"], media_id.as_str());
    assert!(image_event["data"]["media"]["url"].is_string());
}

/// A receiver holding another secret refuses the bridge's deliveries (401, a permanent failure).
#[tokio::test]
async fn a_receiver_with_another_secret_refuses_every_delivery() {
    let app = spawn_app_with_platform(TestPlatform::Webhook, WorkerMode::Manual, |s| {
        s.insert("PLATFORM_WEBHOOK_SECRET".into(), "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=".into());
    })
    .await;
    customer_writes(&app, "o_hook_forged", "hello").await;
    app.run_worker().await;
    assert_eq!(app.receiver.rejected(), 1);
    assert!(app.receiver.events().is_empty());
    let record = app.store.messages(None, 1).await.unwrap().remove(0);
    assert_eq!(record.status, "failed", "401 is permanent");
    assert!(record.last_error.unwrap().contains("401"));
}

#[tokio::test]
async fn a_retry_after_a_500_carries_the_same_webhook_id_and_a_fresh_signature() {
    let app = webhook_app(WorkerMode::Manual).await;
    app.platform_fails_next(1, 500, None);
    customer_writes(&app, "o_hook_retry", "try twice").await;
    app.run_worker().await;
    assert_eq!(app.store.messages(None, 1).await.unwrap()[0].status, "stored");
    app.skip_backoff().await;
    app.run_worker().await;
    let deliveries = app.receiver.deliveries();
    assert_eq!(deliveries.iter().map(|d| d.status).collect::<Vec<_>>(), [500, 200]);
    assert_eq!(deliveries[0].id, deliveries[1].id, "webhook-id is stable across retries");
    assert_eq!(deliveries[0].event, deliveries[1].event, "the same body");
    assert_eq!(app.receiver.events().len(), 1);
    let record = app.store.messages(None, 1).await.unwrap().remove(0);
    assert_eq!((record.status.as_str(), record.attempts), ("delivered", 2));
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured() {
    let app = webhook_app(WorkerMode::Manual).await;
    app.platform_fails_next(1, 429, Some(120));
    customer_writes(&app, "o_hook_429", "slow down").await;
    let before = wechat_bridge::store::now_ms();
    app.run_worker().await;
    let due = app.sql_i64("SELECT due_at FROM jobs WHERE state = 'pending'").await;
    assert!(due >= before + 119_000, "due in {} ms, not after Retry-After", due - before);
    assert_eq!(app.run_worker().await, 0, "nothing is due before Retry-After");
    app.skip_backoff().await;
    app.run_worker().await;
    assert_eq!(app.store.messages(None, 1).await.unwrap()[0].status, "delivered");
}

#[tokio::test]
async fn a_400_from_the_receiver_fails_the_message_and_the_admin_api_retries_it() {
    let app = webhook_app(WorkerMode::Manual).await;
    app.platform_fails_next(1, 400, None);
    customer_writes(&app, "o_hook_400", "rejected once").await;
    app.run_worker().await;
    let record = app.store.messages(None, 1).await.unwrap().remove(0);
    assert_eq!((record.status.as_str(), record.error_code.as_deref()), ("failed", Some("400")));

    let client = reqwest::Client::new();
    let retried =
        client.post(format!("{}/api/messages/{}/retry", app.address, record.id)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(retried.status(), 200);
    app.run_worker().await;
    assert_eq!(app.store.message(&record.id).await.unwrap().status, "delivered");
    assert_eq!(app.receiver.events_of("message.received").len(), 1);
    // The console's conversation list shows the contact on this platform too.
    let conversations: Value =
        client.get(format!("{}/api/conversations", app.address)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert!(conversations.to_string().contains("o_hook_400"), "{conversations}");
}

/// Shared by both platforms: three messages of one contact arrive in order, through failures.
async fn order_per_contact_is_kept_through_failures(platform: TestPlatform) {
    let app = spawn_app_with_platform(platform, WorkerMode::Background, |_| {}).await;
    app.platform_fails_next(2, 503, None);
    for text in ["one", "two", "three"] {
        customer_writes(&app, "o_order", text).await;
    }
    wait_for("three messages on the platform", WAIT, || async { app.platform_texts().len() >= 3 }).await;
    assert_eq!(app.platform_texts(), ["one", "two", "three"]);
}

#[tokio::test]
async fn order_per_contact_is_kept_through_failures_on_vonage() {
    order_per_contact_is_kept_through_failures(TestPlatform::Vonage).await;
}

#[tokio::test]
async fn order_per_contact_is_kept_through_failures_on_webhook() {
    order_per_contact_is_kept_through_failures(TestPlatform::Webhook).await;
}

/// Shared by both platforms: what was stored before a restart is delivered after it, once.
async fn a_restart_delivers_what_was_stored(platform: TestPlatform) {
    let mut app = spawn_app_with_platform(platform, WorkerMode::Manual, |_| {}).await;
    customer_writes(&app, "o_restart", "before the restart").await;
    customer_writes(&app, "o_restart", "also before").await;
    app.restart(WorkerMode::Background).await;
    wait_for("both delivered after the restart", WAIT, || async { app.platform_texts().len() >= 2 }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.platform_texts(), ["before the restart", "also before"]);
}

#[tokio::test]
async fn a_restart_delivers_what_was_stored_on_vonage() {
    a_restart_delivers_what_was_stored(TestPlatform::Vonage).await;
}

#[tokio::test]
async fn a_restart_delivers_what_was_stored_on_webhook() {
    a_restart_delivers_what_was_stored(TestPlatform::Webhook).await;
}

#[tokio::test]
async fn an_api_message_reaches_wechat_and_its_status_comes_back_with_the_client_reference() {
    let app = webhook_app(WorkerMode::Manual).await;
    customer_writes(&app, "o_api", "hi").await;
    app.run_worker().await;

    let response =
        app.api_send(&json!({"to": "o_api", "content": "Your order ships today", "client_reference": "order-42"}), None).await;
    assert_eq!(response.status(), 202);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["status"], "stored");
    let id = accepted["id"].as_str().unwrap().to_string();
    assert_eq!(status_of(&app, &id).await.1["status"], "stored");

    app.run_worker().await;
    let sent = app.wechat.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!((&sent[0]["touser"], &sent[0]["text"]["content"]), (&json!("o_api"), &json!("Your order ships today")));
    let statuses = app.receiver.events_of("message.status");
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0]["data"], json!({"bridge_message_id": id, "client_reference": "order-42", "status": "delivered"}));
    let status_delivery = app.receiver.deliveries().into_iter().find(|d| d.event["type"] == "message.status").unwrap();
    assert!(status_delivery.id.starts_with(&format!("status_{id}_")), "{}", status_delivery.id);

    let (code, state) = status_of(&app, &id).await;
    assert_eq!(code, 200);
    assert_eq!(
        (&state["status"], &state["attempts"], &state["client_reference"]),
        (&json!("delivered"), &json!(1), &json!("order-42"))
    );
    assert!(state["created_at"].as_str().unwrap().ends_with('Z') && state["delivered_at"].is_string());

    // A link card and an image go through the same door.
    let card =
        json!({"to": "o_api", "msgtype": "link", "title": "Track", "description": "SF123", "url": "https://t.example/SF123"});
    assert_eq!(app.api_send(&card, None).await.status(), 202);
    app.run_worker().await;
    assert_eq!(app.wechat.sent()[1]["msgtype"], "news");
}

async fn status_of(app: &TestApp, id: &str) -> (u16, Value) {
    let response =
        reqwest::Client::new().get(format!("{}/api/v1/messages/{id}", app.address)).bearer_auth(API_TOKEN).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// A failed send is reported failed, with the channel's code, to the app and in GET.
#[tokio::test]
async fn a_failed_send_is_reported_with_the_channels_error() {
    let app = webhook_app(WorkerMode::Manual).await;
    customer_writes(&app, "o_api_fail", "hi").await;
    app.run_worker().await;
    app.wechat.fail_next(1, 40003, "invalid openid");
    let response = app.api_send(&json!({"to": "o_api_fail", "content": "lost", "client_reference": "r1"}), None).await;
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    app.run_worker().await;
    let status = &app.receiver.events_of("message.status")[0]["data"];
    assert_eq!(
        (&status["status"], &status["client_reference"], &status["error"]["code"]),
        (&json!("failed"), &json!("r1"), &json!("40003"))
    );
    let (_, state) = status_of(&app, &id).await;
    assert_eq!((&state["status"], &state["error"]["code"]), (&json!("failed"), &json!("40003")));

    // Retried from the console, it is delivered: the new outcome is a new event (its own
    // webhook-id), so an app that deduplicates on webhook-id does not drop it.
    let retried =
        reqwest::Client::new().post(format!("{}/api/messages/{id}/retry", app.address)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(retried.status(), 200);
    app.run_worker().await;
    app.run_worker().await;
    let outcomes: Vec<Value> = app.receiver.events_of("message.status").iter().map(|e| e["data"]["status"].clone()).collect();
    assert_eq!(outcomes, [json!("failed"), json!("delivered")]);
}

async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/problem+json", "status {status}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(), "{body}");
    (status, body)
}

#[tokio::test]
async fn refused_requests_get_a_problem_and_store_nothing() {
    let app = webhook_app(WorkerMode::Manual).await;
    customer_writes(&app, "o_known", "hi").await;
    app.run_worker().await;
    let stored = app.message_count().await;
    let url = format!("{}/api/v1/messages", app.address);
    let client = reqwest::Client::new();
    let good = json!({"to": "o_known", "content": "hello"});

    assert_eq!(problem(client.post(&url).json(&good).send().await.unwrap()).await.0, 401);
    assert_eq!(problem(client.post(&url).bearer_auth("wrong").json(&good).send().await.unwrap()).await.0, 401);
    let text_plain = client.post(&url).bearer_auth(API_TOKEN).header("content-type", "text/plain").body(good.to_string());
    assert_eq!(problem(text_plain.send().await.unwrap()).await.0, 415);
    let malformed = client.post(&url).bearer_auth(API_TOKEN).header("content-type", "application/json").body("{\"to\":");
    assert_eq!(problem(malformed.send().await.unwrap()).await.0, 400);
    for invalid in [
        json!({"to": "o_known"}),
        json!({"to": "", "content": "x"}),
        json!({"to": "o_known", "msgtype": "image"}),
        json!({"to": "o_known", "msgtype": "image", "media": {"url": "ftp://x/y.png"}}),
        json!({"to": "o_known", "msgtype": "link", "title": "no url"}),
        json!({"to": "o_known", "msgtype": "sticker", "content": "x"}),
        json!({"to": "o_known", "content": "x", "client_reference": "r".repeat(257)}),
    ] {
        assert_eq!(problem(app.api_send(&invalid, None).await).await.0, 400, "{invalid}");
    }
    let (status, body) = problem(app.api_send(&json!({"to": "o_never_wrote", "content": "hi"}), None).await).await;
    assert_eq!(status, 404);
    assert!(body["detail"].as_str().unwrap().contains("o_never_wrote"));

    // The customer unsubscribed: the window is closed; answered at once with WeChat's code.
    app.sql("UPDATE contacts SET window_until = 0").await;
    let (status, body) = problem(app.api_send(&good, None).await).await;
    assert_eq!((status, &body["code"]), (422, &json!("45015")));

    assert_eq!(app.message_count().await, stored, "nothing was stored");
    assert_eq!(app.run_worker().await, 0);
    assert!(app.wechat.sent().is_empty());
    let (status, _) = problem(client.get(format!("{url}/nope")).bearer_auth(API_TOKEN).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let inbound_id = app.store.messages(None, 1).await.unwrap()[0].id.clone();
    assert_eq!(status_of(&app, &inbound_id).await.0, 404, "only messages sent through the API");
    assert_eq!(problem(client.get(format!("{url}/nope")).send().await.unwrap()).await.0, 401);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_sends_once() {
    let app = webhook_app(WorkerMode::Manual).await;
    customer_writes(&app, "o_idem", "hi").await;
    app.run_worker().await;
    let body = json!({"to": "o_idem", "content": "exactly once", "client_reference": "c-1"});

    let first = app.api_send(&body, Some("\"key-0001\"")).await;
    let first_status = first.status();
    let first_body = first.text().await.unwrap();
    let again = app.api_send(&body, Some("key-0001")).await;
    assert_eq!(again.status(), first_status);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first_body);
    assert_eq!(first_status, 202);

    let other = app.api_send(&json!({"to": "o_idem", "content": "something else"}), Some("key-0001")).await;
    let (status, body422) = problem(other).await;
    assert_eq!(status, 422);
    assert!(body422["title"].as_str().unwrap().contains("Idempotency-Key"));
    assert_eq!(problem(app.api_send(&body, Some("bad key!")).await).await.0, 400);

    app.run_worker().await;
    assert_eq!(app.wechat.sent().len(), 1, "one send");
    // After delivery the replay is still the first answer (202 stored), and still sends nothing.
    let later = app.api_send(&body, Some("key-0001")).await;
    assert_eq!((later.status().as_u16(), later.text().await.unwrap()), (202, first_body.clone()));
    app.run_worker().await;
    assert_eq!(app.wechat.sent().len(), 1);
    let keys = app.sql_i64("SELECT COUNT(*) FROM idempotency_keys").await;
    assert_eq!(keys, 1);

    // 24 hours later the key is forgotten: reused with another body it is a new message, sent,
    // never taken for the old one.
    app.sql("UPDATE idempotency_keys SET created_at = 0").await;
    let reused = app.api_send(&json!({"to": "o_idem", "content": "a day later"}), Some("key-0001")).await;
    assert_eq!(reused.status(), 202);
    assert_ne!(reused.text().await.unwrap(), first_body);
    app.run_worker().await;
    let sent = app.wechat.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1]["text"]["content"], "a day later");
}

#[tokio::test]
async fn the_openapi_document_is_3_1_lists_both_paths_and_describes_the_real_202() {
    let app = webhook_app(WorkerMode::Manual).await;
    let doc: Value =
        reqwest::get(format!("{}/api/v1/openapi.json", app.address)).await.unwrap().json().await.expect("parses as JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let codes = |path: &str, method: &str| -> Vec<String> {
        let mut codes: Vec<String> = doc["paths"][path][method]["responses"].as_object().unwrap().keys().cloned().collect();
        codes.sort();
        codes
    };
    assert_eq!(codes("/api/v1/messages", "post"), ["202", "400", "401", "404", "409", "415", "422", "503"]);
    assert_eq!(codes("/api/v1/messages/{id}", "get"), ["200", "401", "404"]);
    assert!(doc["components"]["securitySchemes"]["bearer"]["scheme"].as_str().unwrap().eq_ignore_ascii_case("bearer"));

    customer_writes(&app, "o_schema", "hi").await;
    let real: Value = app.api_send(&json!({"to": "o_schema", "content": "x"}), None).await.json().await.unwrap();
    let schema =
        resolve(&doc, &doc["paths"]["/api/v1/messages"]["post"]["responses"]["202"]["content"]["application/json"]["schema"]);
    let required: Vec<&str> = schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(!required.is_empty());
    for field in &required {
        assert!(real.get(field).is_some(), "the 202 lacks required {field}: {real}");
    }
    for field in real.as_object().unwrap().keys() {
        assert!(schema["properties"].get(field).is_some(), "{field} is not in the schema");
    }
    let status_enum = resolve(&doc, &schema["properties"]["status"]);
    assert!(status_enum["enum"].as_array().unwrap().contains(&real["status"]), "{status_enum}");
    let problem = resolve(&doc, &json!({"$ref": "#/components/schemas/Problem"}));
    for field in ["type", "title", "status", "detail"] {
        assert!(problem["properties"].get(field).is_some());
    }
}

/// Follows a local `$ref`.
fn resolve(doc: &Value, schema: &Value) -> Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            resolve(doc, doc.pointer(pointer).unwrap_or_else(|| panic!("{reference} resolves")))
        }
        None => schema.clone(),
    }
}

/// The same events verify with the Python `standardwebhooks` package, when it is installed.
#[tokio::test]
async fn python_standardwebhooks_verifies_the_events_when_installed() {
    let available =
        std::process::Command::new("python3").args(["-c", "import standardwebhooks"]).output().is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("python3 standardwebhooks not installed: skipped");
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(axum::http::HeaderMap, axum::body::Bytes)>();
    let capture = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                "ok"
            }
        }),
    );
    let url = serve(capture).await;
    let app = spawn_app_with_platform(TestPlatform::Webhook, WorkerMode::Manual, |s| {
        s.insert("PLATFORM_WEBHOOK_URL".into(), format!("{url}/"));
    })
    .await;
    customer_writes(&app, "o_py", "verify me in Python").await;
    app.run_worker().await;
    let (headers, body) = rx.recv().await.unwrap();
    let header = |name: &str| headers[name].to_str().unwrap().to_string();
    let script = "import sys, json\nfrom standardwebhooks.webhooks import Webhook\n\
                  secret, wid, ts, sig = sys.argv[1:5]\nbody = sys.stdin.buffer.read()\n\
                  event = Webhook(secret).verify(body, {'webhook-id': wid, 'webhook-timestamp': ts, 'webhook-signature': sig})\n\
                  print(event['type'])";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, WEBHOOK_SECRET, &header("webhook-id"), &header("webhook-timestamp"), &header("webhook-signature")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "message.received");
}
