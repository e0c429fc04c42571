//! Agents' `media.url`: only http(s) to public addresses is fetched (SSRF), and a fetch that cannot
//! succeed fails the message at once instead of holding the contact's queue for 14 minutes.
//! `spawn_app` allows loopback (`BRIDGE_MEDIA_FETCH_ALLOWLIST`) so the simulators work; the SSRF
//! tests remove that setting, as in a default deployment.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use serde_json::{Value, json};
use wechat_bridge::app::WorkerMode;
use wechat_bridge::config::Config;
use wechat_bridge::wechat::sim::PushMode;

use wechat_bridge::relay::ids::BridgeMessageId;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);
const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 13, 10, 26, 10, 1, 2, 3];

/// The bridge as deployed by default: no allowlist, so loopback is not a public address.
async fn spawn_strict_app() -> TestApp {
    spawn_app_with(WorkerMode::Background, |s| {
        s.remove("BRIDGE_MEDIA_FETCH_ALLOWLIST");
    })
    .await
}

/// A customer writes first (opening the window); returns the conversation id and an agent member.
async fn customer_writes(app: &TestApp, openid: &str) -> (String, String) {
    assert_eq!(app.push(&app.wechat.text(openid, "hello"), PushMode::Safe).await.status, 200);
    wait_for("the inbound event", WAIT, || async { !app.wechat_events().is_empty() }).await;
    let conv = app.wechat_events().last().unwrap().0.clone();
    let agent = app.vonage.create_agent("agent_1", &conv);
    (conv, agent)
}

fn statuses(app: &TestApp, conv: &str) -> Vec<Value> {
    app.vonage.events(conv).into_iter().filter(|e| e["type"] == "custom:wechat:status").map(|e| e["body"].clone()).collect()
}

/// The agent sends an image by `url`; returns the message's outcome once its status came back.
async fn send_image(app: &TestApp, conv: &str, agent: &str, url: &str) -> (Value, wechat_bridge::store::MessageRecord) {
    let before = statuses(app, conv).len();
    app.vonage
        .post_event_as_client(
            conv,
            json!({"type": "custom:wechat:message", "from": agent,
                   "body": {"msgtype": "image", "media": {"url": url}, "direction": "outbound"}}),
        )
        .expect("the simulator accepts the agent's event");
    wait_for(&format!("the status of {url}"), WAIT, || async { statuses(app, conv).len() > before }).await;
    let status = statuses(app, conv)[before].clone();
    let record = app.store.message(&BridgeMessageId::from_raw(status["bridge_message_id"].as_str().unwrap())).await.unwrap();
    (status, record)
}

/// Asserts the message failed on its first attempt with a reason containing `reason`, and
/// nothing was uploaded to WeChat or sent to the customer.
fn assert_failed_at_once(app: &TestApp, url: &str, outcome: &(Value, wechat_bridge::store::MessageRecord), reason: &str) {
    let (status, record) = outcome;
    assert_eq!(status["status"], "failed", "{url}: {status}");
    assert_eq!((record.status.as_str(), record.attempts), ("failed", 1), "{url}: a permanent error is not retried");
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(reason), "{url}: {message:?} should contain {reason:?}");
    // `attempts` is also rewritten by the status report's own job, so check the reason too: a
    // retried message fails with "gave up after N attempts".
    assert!(!message.contains("gave up"), "{url}: {message}");
    assert!(!app.wechat.requests().iter().any(|r| r == "/cgi-bin/media/upload"), "{url}: nothing uploaded");
    assert!(app.wechat.sent().is_empty(), "{url}: nothing sent to the customer");
}

/// A file server on loopback: a picture, a redirect loop, a 404, an over-size answer, a server
/// that answers 503 twice before it works, and a redirect to `redirect_to`.
async fn file_server(redirect_to: Option<String>) -> (String, Arc<AtomicUsize>) {
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let calls = flaky_calls.clone();
    let router = axum::Router::new()
        .route("/pic.png", get(|| async { ([(header::CONTENT_TYPE, "image/png")], PNG) }))
        .route("/loop", get(|| async { Redirect::temporary("/loop") }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        // One byte over WeChat's 10 MB upload limit (wechat-api.md §7.1).
        .route("/huge.png", get(|| async { ([(header::CONTENT_TYPE, "image/png")], vec![0u8; (10 << 20) + 1]) }))
        .route(
            "/flaky.png",
            get(move || {
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        StatusCode::SERVICE_UNAVAILABLE.into_response()
                    } else {
                        ([(header::CONTENT_TYPE, "image/png")], PNG).into_response()
                    }
                }
            }),
        )
        .route(
            "/elsewhere",
            get(move || {
                let to = redirect_to.clone().unwrap_or_else(|| "/pic.png".into());
                async move { Redirect::temporary(&to) }
            }),
        );
    (serve(router).await, flaky_calls)
}

#[tokio::test]
async fn media_urls_at_loopback_link_local_and_private_addresses_fail_at_once_without_a_fetch() {
    let app = spawn_strict_app().await;
    let (conv, agent) = customer_writes(&app, "o_ssrf_1").await;
    let port = app.address.rsplit(':').next().unwrap().to_string();
    for url in [
        format!("{}/healthz", app.address), // the bridge itself
        format!("http://localhost:{port}/healthz"),
        format!("http://[::1]:{port}/healthz"),
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/".to_string(), // cloud metadata
        "http://10.0.0.1/internal.png".to_string(),
        format!("http://[::ffff:127.0.0.1]:{port}/healthz"), // IPv4-mapped loopback
    ] {
        let outcome = send_image(&app, &conv, &agent, &url).await;
        assert_failed_at_once(&app, &url, &outcome, "non-public address");
        let message = outcome.0["error"]["message"].as_str().unwrap();
        assert!(message.contains("BRIDGE_MEDIA_FETCH_ALLOWLIST"), "the reason names the setting: {message}");
    }
}

#[tokio::test]
async fn a_redirect_from_an_allowed_host_to_loopback_fails_at_once() {
    // Only the host name `localhost` is allowed, standing in for a public file host: its redirect
    // to 127.0.0.1 (the bridge's own /healthz) is checked again and refused.
    let app = spawn_app_with(WorkerMode::Background, |s| {
        s.insert("BRIDGE_MEDIA_FETCH_ALLOWLIST".into(), "localhost".into());
    })
    .await;
    let (files, _) = file_server(Some(format!("{}/healthz", app.address))).await;
    let (conv, agent) = customer_writes(&app, "o_ssrf_2").await;
    let allowed = files.replace("127.0.0.1", "localhost");
    let url = format!("{allowed}/elsewhere");
    let outcome = send_image(&app, &conv, &agent, &url).await;
    assert_failed_at_once(&app, &url, &outcome, "non-public address");
    // The allowed host itself is fetched.
    let outcome = send_image(&app, &conv, &agent, &format!("{allowed}/pic.png")).await;
    assert_eq!(outcome.0["status"], "delivered");
}

#[tokio::test]
async fn non_http_urls_and_non_urls_fail_at_once() {
    let app = spawn_app().await;
    let (conv, agent) = customer_writes(&app, "o_bad_url").await;
    for (url, reason) in [
        ("file:///etc/passwd", "http or https"),
        ("ftp://127.0.0.1/pic.png", "http or https"),
        ("not a url", "not a valid URL"),
        ("http://", "not a valid URL"),
    ] {
        let outcome = send_image(&app, &conv, &agent, url).await;
        assert_failed_at_once(&app, url, &outcome, reason);
    }
}

#[tokio::test]
async fn a_redirect_loop_a_404_and_an_oversize_answer_fail_at_once() {
    let app = spawn_app().await;
    let (files, _) = file_server(None).await;
    let (conv, agent) = customer_writes(&app, "o_bad_answer").await;
    for (path, reason) in [("/loop", "redirect"), ("/missing", "HTTP 404"), ("/huge.png", "larger than")] {
        let url = format!("{files}{path}");
        let outcome = send_image(&app, &conv, &agent, &url).await;
        assert_failed_at_once(&app, &url, &outcome, reason);
    }
}

#[tokio::test]
async fn a_503_is_retried_until_the_file_server_recovers() {
    let app = spawn_app().await;
    let (files, flaky_calls) = file_server(None).await;
    let (conv, agent) = customer_writes(&app, "o_flaky").await;
    let (status, record) = send_image(&app, &conv, &agent, &format!("{files}/flaky.png")).await;
    assert_eq!(status["status"], "delivered", "{status}");
    assert_eq!(record.status, "delivered");
    assert_eq!(flaky_calls.load(Ordering::SeqCst), 3, "two 503s, then the picture");
    assert_eq!(app.wechat.sent().len(), 1);
}

#[test]
fn a_malformed_allowlist_entry_names_the_setting() {
    let (private_pem, _) = keypair().clone();
    let load = |allowlist: &str| {
        let settings = [
            ("WECHAT_TOKEN", TOKEN.to_string()),
            ("WECHAT_APP_ID", APP_ID.into()),
            ("WECHAT_APP_SECRET", APP_SECRET.into()),
            ("VONAGE_APPLICATION_ID", VONAGE_APP_ID.into()),
            ("VONAGE_PRIVATE_KEY", private_pem.clone()),
            ("BRIDGE_MEDIA_FETCH_ALLOWLIST", allowlist.to_string()),
        ];
        Config::from_lookup(|k| settings.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone()))
    };
    assert!(load("files.internal, 10.1.0.0/16,127.0.0.1/32,::1/128,192.168.1.7").is_ok());
    for bad in ["10.0.0.0/33", "http://files.internal", "files internal", "10.1.0.0/16,,*.example.com"] {
        let error = load(bad).expect_err(bad).to_string();
        assert!(error.contains("BRIDGE_MEDIA_FETCH_ALLOWLIST"), "{bad}: {error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }
}
