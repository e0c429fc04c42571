//! The admin API: closed without a token, bearer-protected with one; failed messages are
//! visible and can be retried.

use std::time::Duration;

use serde_json::Value;
use wechat_bridge::app::WorkerMode;
use wechat_bridge::wechat::sim::PushMode;

use crate::helpers::*;

const ADMIN: &str = "admin-token-for-tests";

async fn api(app: &TestApp, method: reqwest::Method, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}/api{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn without_a_configured_token_the_api_does_not_exist() {
    let app = spawn_app_with(WorkerMode::Manual, |_| {}).await;
    assert_eq!(api(&app, reqwest::Method::GET, "/messages", None).await.0, 404);
    assert_eq!(api(&app, reqwest::Method::GET, "/conversations", Some("anything")).await.0, 404);
}

#[tokio::test]
async fn the_token_is_required_and_failed_messages_can_be_retried() {
    let app = spawn_app_with(WorkerMode::Background, |s| {
        s.insert("BRIDGE_ADMIN_TOKEN".into(), ADMIN.into());
    })
    .await;
    assert_eq!(api(&app, reqwest::Method::GET, "/messages", None).await.0, 401);
    assert_eq!(api(&app, reqwest::Method::GET, "/messages", Some("wrong")).await.0, 401);

    app.vonage.fail_next(1, 400, None);
    app.push(&app.wechat.text("o_admin", "will fail once"), PushMode::Safe).await;
    wait_for("a failed message", Duration::from_secs(10), || async {
        api(&app, reqwest::Method::GET, "/messages?status=failed", Some(ADMIN)).await.1["messages"]
            .as_array()
            .is_some_and(|m| m.len() == 1)
    })
    .await;
    let (_, failed) = api(&app, reqwest::Method::GET, "/messages?status=failed&direction=inbound", Some(ADMIN)).await;
    let message = &failed["messages"][0];
    assert_eq!(message["payload"]["content"], "will fail once");
    assert!(message["last_error"].as_str().unwrap().contains("400"));
    let id = message["id"].as_str().unwrap().to_string();

    let (status, body) = api(&app, reqwest::Method::POST, &format!("/messages/{id}/retry"), Some(ADMIN)).await;
    assert_eq!((status, body["retried"].clone()), (200, Value::Bool(true)));
    wait_for("delivered after retry", Duration::from_secs(10), || async {
        api(&app, reqwest::Method::GET, &format!("/messages/{id}"), Some(ADMIN)).await.1["status"] == "delivered"
    })
    .await;
    assert_eq!(api(&app, reqwest::Method::POST, &format!("/messages/{id}/retry"), Some(ADMIN)).await.0, 409);
    assert_eq!(api(&app, reqwest::Method::POST, "/messages/nope/retry", Some(ADMIN)).await.0, 404);
    assert_eq!(app.wechat_events().len(), 1);

    let (_, conversations) = api(&app, reqwest::Method::GET, "/conversations", Some(ADMIN)).await;
    let row = &conversations["conversations"][0];
    assert_eq!(row["openid"], "o_admin");
    assert_eq!(row["vonage_conversation_id"], app.wechat_events()[0].0.as_str());
    assert_eq!((row["messages"].as_i64(), row["failed"].as_i64()), (Some(1), Some(0)));
}

#[tokio::test]
async fn session_health_and_the_live_stream() {
    let app = spawn_app_with(WorkerMode::Background, |s| {
        s.insert("BRIDGE_ADMIN_TOKEN".into(), ADMIN.into());
    })
    .await;
    let session: Value = reqwest::get(format!("{}/api/session", app.address)).await.unwrap().json().await.unwrap();
    assert_eq!(session, serde_json::json!({"demo": false, "auth_required": true}));
    let console = reqwest::get(format!("{}/", app.address)).await.unwrap();
    assert_eq!(console.status(), 200);
    assert!(console.headers()["content-type"].to_str().unwrap().starts_with("text/html"));

    // The stream authenticates with ?token= (EventSource cannot send headers).
    let unauthorized = reqwest::get(format!("{}/api/stream", app.address)).await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let mut stream = reqwest::get(format!("{}/api/stream?token={ADMIN}", app.address)).await.unwrap();
    assert_eq!(stream.status(), 200);
    app.push(&app.wechat.text("o_live", "watch me"), PushMode::Safe).await;
    let mut seen = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !(seen.contains("watch me") && seen.contains("\"delivered\"")) {
            let chunk = stream.chunk().await.unwrap().expect("stream stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(read.is_ok(), "stream showed: {seen}");
    assert!(seen.contains("event: message"));

    let (status, health) = api(&app, reqwest::Method::GET, "/health", Some(ADMIN)).await;
    assert_eq!(status, 200);
    assert_eq!(health["messages"]["delivered"], 1);
    assert_eq!(health["outbox_depth"], 0);
    assert_eq!(health["latency_ms"]["samples"], 1);
}

// ---- the live stream's authentication -----------------------------------------------------

/// Base64-looking, with every character a query string mangles: `/ + =`.
const SLASHY: &str = "q/Zx+9Lk=w/+==";

/// `<expiry>.<hex HMAC-SHA256(admin token, "stream:" + expiry)>`, the stream-ticket format.
fn ticket(token: &str, expiry: u64) -> String {
    use hmac::{Hmac, KeyInit as _, Mac as _};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(format!("stream:{expiry}").as_bytes());
    format!("{expiry}.{}", hex::encode(mac.finalize().into_bytes()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The status of `GET /api/stream` with `query` and an optional bearer (the body is not awaited).
async fn stream_status(app: &TestApp, query: &str, bearer: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().get(format!("{}/api/stream{query}", app.address));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_token_with_slash_plus_and_equals_opens_the_stream_by_header_query_and_ticket() {
    let app = spawn_app_with(WorkerMode::Manual, |s| {
        s.insert("BRIDGE_ADMIN_TOKEN".into(), SLASHY.into());
    })
    .await;
    assert_eq!(stream_status(&app, "", Some(SLASHY)).await, 200, "bearer header");
    let encoded: String = SLASHY.replace('/', "%2F").replace('+', "%2B").replace('=', "%3D");
    assert_eq!(stream_status(&app, &format!("?token={encoded}"), None).await, 200, "percent-encoded ?token=");
    assert_eq!(stream_status(&app, "?token=wrong", None).await, 401);

    let (status, body) = api(&app, reqwest::Method::POST, "/stream-ticket", Some(SLASHY)).await;
    assert_eq!(status, 200, "{body}");
    let issued = body["ticket"].as_str().expect("a ticket").to_string();
    let (expiry, _) = issued.split_once('.').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert!((unix_now() + 50..=unix_now() + 61).contains(&expiry), "valid about 60 s: {issued}");
    assert_eq!(stream_status(&app, &format!("?ticket={issued}"), None).await, 200, "ticket");
    assert_eq!(api(&app, reqwest::Method::POST, "/stream-ticket", None).await.0, 401, "tickets need the bearer");
}

#[tokio::test]
async fn a_query_token_or_ticket_is_refused_outside_the_stream() {
    let app = spawn_app_with(WorkerMode::Manual, |s| {
        s.insert("BRIDGE_ADMIN_TOKEN".into(), ADMIN.into());
    })
    .await;
    assert_eq!(api(&app, reqwest::Method::GET, &format!("/messages?token={ADMIN}"), None).await.0, 401);
    assert_eq!(api(&app, reqwest::Method::GET, &format!("/conversations?token={ADMIN}"), None).await.0, 401);
    let valid = ticket(ADMIN, unix_now() + 30);
    assert_eq!(api(&app, reqwest::Method::GET, &format!("/messages?ticket={valid}"), None).await.0, 401);
    assert_eq!(api(&app, reqwest::Method::GET, "/messages", Some(ADMIN)).await.0, 200);
}

#[tokio::test]
async fn expired_forged_or_overlong_stream_tickets_are_refused() {
    let app = spawn_app_with(WorkerMode::Manual, |s| {
        s.insert("BRIDGE_ADMIN_TOKEN".into(), ADMIN.into());
    })
    .await;
    let now = unix_now();
    assert_eq!(stream_status(&app, &format!("?ticket={}", ticket(ADMIN, now + 30)), None).await, 200, "well-formed");
    let cases = [
        ("expired", ticket(ADMIN, now - 1)),
        ("signed with another token", ticket("another-token", now + 30)),
        ("expiry changed after signing", format!("{}.{}", now + 45, ticket(ADMIN, now + 30).split_once('.').unwrap().1)),
        ("valid far longer than 60 s", ticket(ADMIN, now + 3600)),
        ("garbage", "not-a-ticket".to_string()),
        ("empty", String::new()),
    ];
    for (what, forged) in cases {
        assert_eq!(stream_status(&app, &format!("?ticket={forged}"), None).await, 401, "{what}");
    }
}
