//! `wechat-bridge demo`: the bridge and both simulators in one process, on a fresh SQLite file,
//! playing a scripted exchange and printing a transcript on stdout (logs go to stderr).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use crate::app::{Application, WorkerMode};
use crate::config::Config;
use crate::sim::vonage::{VonageSim, VonageSimConfig};
use crate::sim::wechat::{PushMode, WeChatSim, WeChatSimConfig};
use crate::wechat::message::{Body, Event, Push};

const APP_ID: &str = "wxdemo0000000000";
const ACCOUNT: &str = "gh_demo_account";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const USER: &str = "o_demo_customer_0001";

/// Runs the demo. With `once`, returns after the exchange (an error if a step failed);
/// otherwise keeps serving on `listen` until `shutdown` resolves.
pub async fn run(listen: &str, once: bool, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let (private_pem, public_pem) = crate::sim::keys::generate_rsa_keypair();
    let wechat = WeChatSim::new(WeChatSimConfig {
        app_id: APP_ID.into(),
        app_secret: "demo-secret".into(),
        token: "demo-token".into(),
        encoding_aes_key: Some(AES_KEY.into()),
        account: ACCOUNT.into(),
    });
    let vonage = VonageSim::new(VonageSimConfig::new("demo-application", public_pem));
    let wechat_base = serve(wechat.router()).await?;
    let vonage_base = serve(vonage.router()).await?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let db = dir.path().join("demo.db");
    let settings = [
        ("BRIDGE_LISTEN", listen.to_string()),
        ("BRIDGE_DATABASE_URL", format!("sqlite://{}", db.display())),
        ("WECHAT_TOKEN", "demo-token".into()),
        ("WECHAT_APP_ID", APP_ID.into()),
        ("WECHAT_APP_SECRET", "demo-secret".into()),
        ("WECHAT_ENCODING_AES_KEY", AES_KEY.into()),
        ("WECHAT_API_BASE", wechat_base),
        ("VONAGE_APPLICATION_ID", "demo-application".into()),
        ("VONAGE_PRIVATE_KEY", private_pem),
        ("VONAGE_API_BASE", vonage_base),
    ];
    let mut config = Config::from_lookup(|key| settings.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()))?;
    config.open_admin = true;
    let app = Application::build(config, WorkerMode::Background).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));

    println!("wechat-bridge demo: bridge on {address}, database {}", db.display());
    println!("WeChat user {USER} writes to Official Account {ACCOUNT} (safe mode, AES)\n");
    let webhook = format!("{address}/webhooks/wechat");
    let media_id = wechat.add_media("image/png", vec![0x89, b'P', b'N', b'G']);
    let script: Vec<(&str, Push)> = vec![
        ("follows the account", push(&wechat, Body::Event(Event::Subscribe { event_key: None, ticket: None }))),
        ("writes", wechat.text(USER, "你好! Is my order on its way?")),
        (
            "sends a photo",
            push(&wechat, Body::Image { pic_url: "http://mmbiz.example/order.png".into(), media_id, msg_id: wechat.next_msg_id() }),
        ),
    ];
    let mut failures = Vec::new();
    for (what, push) in &script {
        let started = Instant::now();
        let reply = wechat.push(&webhook, push, PushMode::Safe).await.context("the bridge did not answer")?;
        let acked = started.elapsed();
        if reply.status != 200 {
            failures.push(format!("push '{what}' answered {} {}", reply.status, reply.body));
            continue;
        }
        let key = push.dedup_key();
        let delivered = wait_delivered(&store, &key).await;
        match delivered {
            Some((content, conv, event_id)) => println!(
                "  WeChat → Vonage  {USER} {what}: {content:?}\n                   answered `success` in {} ms, event {event_id} in {conv} after {} ms  ✓ delivered",
                acked.as_millis(),
                started.elapsed().as_millis()
            ),
            None => failures.push(format!("'{what}' was not delivered to Vonage within 10 s")),
        }
    }
    println!("\nVonage now holds {} user(s), {} conversation(s), {} custom:wechat:message event(s).",
        vonage.users().len(), vonage.conversations().len(),
        vonage.all_events().iter().filter(|(_, e)| e["type"] == "custom:wechat:message").count());

    if once || !failures.is_empty() {
        let _ = stop_tx.send(());
        let _ = server.await;
        if !failures.is_empty() {
            bail!("demo failed: {}", failures.join("; "));
        }
        println!("demo finished: every step succeeded");
        return Ok(());
    }
    println!("\nThe bridge keeps serving on {address} (Ctrl-C to stop).");
    shutdown.await;
    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(())
}

fn push(_wechat: &WeChatSim, body: Body) -> Push {
    Push { to_user_name: ACCOUNT.into(), from_user_name: USER.into(), create_time: crate::store::now_ms() / 1000, body }
}

async fn serve(router: axum::Router) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{addr}"))
}

/// Waits until the message stored under `dedup_key` is delivered; returns its content,
/// conversation and Vonage event id.
async fn wait_delivered(store: &crate::store::Store, dedup_key: &str) -> Option<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(messages) = store.messages(Some("delivered"), 100).await {
            if let Some(m) = messages.iter().find(|m| m.external_id == dedup_key) {
                let payload: serde_json::Value = serde_json::from_str(&m.payload).ok()?;
                let contact = store.contact(m.contact_id).await.ok()?;
                return Some((
                    payload["content"].as_str().unwrap_or_default().to_string(),
                    contact.platform_conversation_id.unwrap_or_default(),
                    m.platform_event_id.clone().unwrap_or_default(),
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}
