//! The WeChat API client against the WeChat simulator: token caching and sharing (one fetch for
//! many calls, callers and instances), renewal on a revoked token, error classes, media.

use std::sync::Arc;

use axum::http::header;
use serde_json::json;
use tempfile::TempDir;
use wechat_bridge::config::Secret;
use wechat_bridge::store::Store;
use wechat_bridge::wechat::client::{WeChatClient, WeChatError};
use wechat_bridge::wechat::sim::{WeChatSim, WeChatSimConfig};

use crate::helpers::{ACCOUNT, AES_KEY, APP_ID, APP_SECRET, TOKEN, serve};

struct Env {
    sim: WeChatSim,
    base: String,
    store: Store,
    client: WeChatClient,
    _dir: TempDir,
}

impl Env {
    async fn new() -> Self {
        let sim = WeChatSim::new(WeChatSimConfig {
            app_id: APP_ID.into(),
            app_secret: APP_SECRET.into(),
            token: TOKEN.into(),
            encoding_aes_key: Some(AES_KEY.into()),
            account: ACCOUNT.into(),
        });
        let base = serve(sim.router()).await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("bridge.db").display())).await.unwrap();
        store.migrate().await.unwrap();
        let client = WeChatClient::new(&base, APP_ID, Secret::new(APP_SECRET), store.clone());
        Self { sim, base, store, client, _dir: dir }
    }

    /// Another instance: its own client (and mutex) on the same database.
    fn other_instance(&self) -> WeChatClient {
        WeChatClient::new(&self.base, APP_ID, Secret::new(APP_SECRET), self.store.clone())
    }
}

fn text(openid: &str, content: &str) -> serde_json::Value {
    json!({"touser": openid, "msgtype": "text", "text": {"content": content}})
}

#[tokio::test]
async fn ten_sends_fetch_one_token() {
    let env = Env::new().await;
    env.sim.touch_window("o_alice");
    for i in 0..10 {
        env.client.send(&text("o_alice", &format!("hello {i}"))).await.unwrap();
    }
    assert_eq!(env.sim.sent().len(), 10);
    assert_eq!(env.sim.token_calls(), 1);
}

#[tokio::test]
async fn twenty_concurrent_callers_fetch_one_token() {
    let env = Env::new().await;
    let client = Arc::new(env.other_instance());
    let calls = (0..20).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.access_token().await.unwrap() })
    });
    let tokens: Vec<String> = futures_util::future::join_all(calls).await.into_iter().map(Result::unwrap).collect();
    assert!(tokens.iter().all(|t| t == &tokens[0]));
    assert_eq!(env.sim.token_calls(), 1);
}

/// Three instances on one PostgreSQL database (their own pools and mutexes) needing a token at
/// the same moment: one fetches it under the database's lock, the others read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_one_postgres_database_fetch_one_token_among_them() {
    let Some(server) = wechat_bridge::store::testing::postgres_server() else { return };
    let env = Env::new().await;
    // WeChat answering in 100 ms, as it does from far away: every caller arrives during the fetch.
    let slow = env.sim.router().layer(axum::middleware::from_fn(|request, next: axum::middleware::Next| async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        next.run(request).await
    }));
    let base = serve(slow).await;
    let url = wechat_bridge::store::testing::fresh_postgres_database(&server).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        clients.push(Arc::new(WeChatClient::new(&base, APP_ID, Secret::new(APP_SECRET), store)));
    }
    let mut calls = Vec::new();
    for (instance, client) in clients.iter().enumerate() {
        for _ in 0..10 {
            let client = client.clone();
            calls.push(tokio::spawn(async move { (instance, client.access_token().await.unwrap()) }));
        }
    }
    let tokens: Vec<(usize, String)> = futures_util::future::join_all(calls).await.into_iter().map(Result::unwrap).collect();
    assert!(tokens.iter().all(|(_, t)| t == &tokens[0].1), "every instance uses the same token");
    assert_eq!(env.sim.token_calls(), 1, "one fetch among three instances");
}

#[tokio::test]
async fn another_instance_reuses_the_stored_token() {
    let env = Env::new().await;
    env.sim.touch_window("o_alice");
    let token = env.client.access_token().await.unwrap();
    assert_eq!(env.store.access_token(APP_ID).await.unwrap().unwrap().0, token);
    let other = env.other_instance();
    assert_eq!(other.access_token().await.unwrap(), token);
    other.send(&text("o_alice", "from instance two")).await.unwrap();
    assert_eq!(env.sim.token_calls(), 1);
}

#[tokio::test]
async fn a_revoked_token_is_renewed_and_the_message_sent_once() {
    let env = Env::new().await;
    env.sim.touch_window("o_alice");
    env.client.send(&text("o_alice", "one")).await.unwrap();
    let old = env.client.access_token().await.unwrap();
    env.sim.revoke_tokens();
    env.client.send(&text("o_alice", "two")).await.unwrap();
    assert_eq!(env.sim.sent().len(), 2);
    assert_eq!(env.sim.token_calls(), 2);
    assert_ne!(env.client.access_token().await.unwrap(), old);
    // Compare-and-invalidate: the stale token no longer deletes the stored one.
    assert!(!env.store.invalidate_access_token(APP_ID, &old).await.unwrap());
    assert!(env.store.access_token(APP_ID).await.unwrap().is_some());
}

#[tokio::test]
async fn a_token_rejected_twice_is_force_refreshed_once_within_limits() {
    let env = Env::new().await;
    env.sim.touch_window("o_alice");
    let first = env.client.access_token().await.unwrap();
    // stable_token (normal mode) hands back the same token, which is rejected again: force.
    env.sim.fail_next(2, 40001, "invalid credential");
    env.client.send(&text("o_alice", "one")).await.unwrap();
    assert_eq!(env.sim.sent().len(), 1);
    assert_eq!(env.sim.token_calls(), 3); // initial, normal refetch, forced
    assert_ne!(env.client.access_token().await.unwrap(), first);
    // A second force within 30 s is not allowed: the token error stands, retryable.
    env.sim.fail_next(3, 42001, "access_token expired");
    let err = env.client.send(&text("o_alice", "two")).await.unwrap_err();
    assert_eq!(err.code(), Some(42001));
    assert!(err.is_retryable());
    assert_eq!(env.sim.sent().len(), 1);
}

#[tokio::test]
async fn busy_is_retryable_and_a_closed_window_is_permanent() {
    let env = Env::new().await;
    env.sim.touch_window("o_alice");
    env.sim.fail_next(1, -1, "system error");
    let err = env.client.send(&text("o_alice", "hi")).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.code(), Some(-1));

    let err = env.client.send(&text("o_never_wrote", "hi")).await.unwrap_err();
    assert!(matches!(err, WeChatError::Api { errcode: 45015, .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("rid:"), "keeps WeChat's rid: {err}");

    env.sim.set_down(true);
    let err = env.client.typing("o_alice", true).await.unwrap_err();
    assert!(matches!(err, WeChatError::Http { status: 503 }) && err.is_retryable(), "{err:?}");
    env.sim.set_down(false);
    env.client.typing("o_alice", false).await.unwrap();
}

#[tokio::test]
async fn uploaded_media_can_be_sent_by_media_id() {
    let env = Env::new().await;
    env.sim.touch_window("o_alice");
    let png = b"\x89PNG\r\n\x1a\nfake image".to_vec();
    let media_id = env.client.upload_media("image", "cat.png", "image/png", png.clone()).await.unwrap();
    env.client.send(&json!({"touser": "o_alice", "msgtype": "image", "image": {"media_id": media_id}})).await.unwrap();
    assert_eq!(env.sim.sent()[0]["image"]["media_id"], media_id);
    assert_eq!(env.client.download_media(&media_id).await.unwrap(), ("image/png".to_string(), png));
    let err = env.client.upload_media("gif", "x.gif", "image/gif", vec![1]).await.unwrap_err();
    assert_eq!(err.code(), Some(40004));
}

#[tokio::test]
async fn media_is_downloaded_and_an_unknown_id_is_40007() {
    let env = Env::new().await;
    let bytes = vec![7u8; 3000];
    let media_id = env.sim.add_media("audio/amr", bytes.clone());
    assert_eq!(env.client.download_media(&media_id).await.unwrap(), ("audio/amr".to_string(), bytes));
    let err = env.client.download_media("MEDIA_missing").await.unwrap_err();
    assert!(matches!(err, WeChatError::Api { errcode: 40007, .. }), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn fetch_url_honours_the_size_cap() {
    let env = Env::new().await;
    let router = axum::Router::new()
        .route("/pic.jpg", axum::routing::get(|| async { ([(header::CONTENT_TYPE, "image/jpeg")], vec![1u8; 5000]) }));
    let base = serve(router).await;
    let (content_type, bytes) = env.client.fetch_url(&format!("{base}/pic.jpg"), 5000).await.unwrap();
    assert_eq!((content_type.as_str(), bytes.len()), ("image/jpeg", 5000));
    let err = env.client.fetch_url(&format!("{base}/pic.jpg"), 4999).await.unwrap_err();
    assert!(matches!(err, WeChatError::TooLarge), "{err:?}");
    let err = env.client.fetch_url(&format!("{base}/missing"), 4999).await.unwrap_err();
    assert!(matches!(err, WeChatError::Http { status: 404 }), "{err:?}");
}

#[tokio::test]
async fn neither_debug_nor_errors_show_the_token_or_secret() {
    let env = Env::new().await;
    let token = env.client.access_token().await.unwrap();
    let debug = format!("{:?}", env.client);
    assert!(!debug.contains(&token) && !debug.contains(APP_SECRET), "{debug}");
    env.sim.fail_next(1, 45009, &format!("quota reached for {token}"));
    let err = env.client.send(&text("o_alice", "hi")).await.unwrap_err();
    assert!(err.is_retryable());
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(&token), "{shown}");
    }
    // A refused connection: the transport error must not carry the URL (it holds the token).
    let dead = WeChatClient::new("http://127.0.0.1:9", APP_ID, Secret::new(APP_SECRET), env.store.clone());
    let err = dead.send(&text("o_alice", "hi")).await.unwrap_err();
    assert!(matches!(err, WeChatError::Transport(_)) && err.is_retryable(), "{err:?}");
    assert!(!err.to_string().contains(&token) && !err.to_string().contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn the_standalone_wechat_simulator_takes_faults_over_http() {
    use wechat_bridge::wechat::sim::{WeChatSim, WeChatSimConfig};
    let sim = WeChatSim::new(WeChatSimConfig {
        app_id: APP_ID.into(),
        app_secret: APP_SECRET.into(),
        token: TOKEN.into(),
        encoding_aes_key: None,
        account: ACCOUNT.into(),
    });
    let base = serve(sim.router()).await;
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{base}/cgi-bin/stable_token"))
        .json(&serde_json::json!({"grant_type": "client_credential", "appid": APP_ID, "secret": APP_SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let send = || {
        http.post(format!("{base}/cgi-bin/message/custom/send?access_token={token}"))
            .json(&serde_json::json!({"touser": "o_1", "msgtype": "text", "text": {"content": "hi"}}))
            .send()
    };
    http.post(format!("{base}/_sim/faults"))
        .json(&serde_json::json!({"open_window": "o_1", "fail_next": 1, "errcode": 45009}))
        .send()
        .await
        .unwrap();
    let first: serde_json::Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(first["errcode"], 45009);
    let second: serde_json::Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(second["errcode"], 0);
    http.post(format!("{base}/_sim/faults")).json(&serde_json::json!({"down": true})).send().await.unwrap();
    assert_eq!(send().await.unwrap().status(), 503);
    let state: serde_json::Value = reqwest::get(format!("{base}/_sim/state")).await.unwrap().json().await.unwrap();
    assert_eq!(state["sent"].as_array().unwrap().len(), 1);
}
