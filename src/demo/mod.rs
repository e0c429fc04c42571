//! `wechat-bridge demo`: the bridge and both simulators in one process, on a fresh SQLite file,
//! playing a scripted exchange and printing a transcript on stdout (logs go to stderr).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::net::TcpListener;

mod hooks;

pub use hooks::{DemoAgent, DemoHooks, routes};

use crate::app::{Application, WorkerMode};
use crate::chatwoot::sim::{AgentReply, ChatwootSim, ChatwootSimConfig, SimFile};
use crate::config::Config;
use crate::store::Store;
use crate::vonage::sim::{VonageSim, VonageSimConfig};
use crate::webhook::receiver::Receiver;
use crate::wechat::message::{Body, Event, Push};
use crate::wechat::sim::{PushMode, WeChatSim, WeChatSimConfig};

const APP_ID: &str = "wxdemo0000000000";
const ACCOUNT: &str = "gh_demo_account";
const SIGNATURE_SECRET: &str = "demo-signature-secret";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const USER: &str = "o_demo_customer_0001";
const USER_2: &str = "o_demo_customer_0002";
/// The `webhook` platform's secret and token in the demo (32 bytes of base64).
const WEBHOOK_SECRET: &str = "whsec_ZGVtby1zaWduaW5nLXNlY3JldC0zMi1ieXRlcyE=";
const API_TOKEN: &str = "demo-api-token";
/// The Chatwoot API inbox's webhook secret in the demo.
const CHATWOOT_SECRET: &str = "demo-inbox-secret";

/// The agent side `demo` plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DemoPlatform {
    /// The Vonage Conversation API simulator.
    #[default]
    Vonage,
    /// Signed webhooks to a built-in receiver standing in for the app; replies through /api/v1.
    Webhook,
    /// The Chatwoot simulator: customers in an API inbox, agents answer in its dashboard.
    Chatwoot,
}

/// Runs the demo. With `once`, returns after the exchange (an error if a step failed);
/// otherwise keeps serving on `listen` until `shutdown` resolves.
pub async fn run(
    listen: &str,
    once: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(listen, once, DemoPlatform::Vonage, shutdown).await
}

/// Runs the demo with `platform` as the agent side.
pub async fn run_with(
    listen: &str,
    once: bool,
    platform: DemoPlatform,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    match platform {
        DemoPlatform::Webhook => return run_webhook(listen, once, shutdown).await,
        DemoPlatform::Chatwoot => return run_chatwoot(listen, once, shutdown).await,
        DemoPlatform::Vonage => {}
    }
    let (private_pem, public_pem) = crate::vonage::sim::keys::generate_rsa_keypair();
    let wechat = wechat_sim();
    let vonage = VonageSim::new(VonageSimConfig {
        signature_secret: Some(SIGNATURE_SECRET.into()),
        ..VonageSimConfig::new("demo-application", public_pem)
    });
    let wechat_base = serve(wechat.router()).await?;
    let vonage_base = serve(vonage.router()).await?;
    let platform = vec![
        ("VONAGE_APPLICATION_ID", "demo-application".into()),
        ("VONAGE_PRIVATE_KEY", private_pem),
        ("VONAGE_API_BASE", vonage_base),
        ("VONAGE_SIGNATURE_SECRET", SIGNATURE_SECRET.into()),
    ];
    let (mut app, _dir, db) = build_bridge(listen, wechat_base, platform).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    app.set_demo(DemoHooks {
        wechat: wechat.clone(),
        agent: DemoAgent::Vonage(vonage.clone()),
        webhook_url: format!("{address}/webhooks/wechat"),
    });
    let store = app.store().clone();
    // Vonage delivers every conversation event to the bridge's RTC webhook, signed.
    vonage.set_rtc_event_url(Some(format!("{address}/webhooks/vonage/rtc")));
    let (stop_tx, server) = start(app);

    println!("wechat-bridge demo: bridge on {address}, database {}", db.display());
    println!("WeChat users write to Official Account {ACCOUNT} (safe mode, AES); an agent answers on Vonage.\n");
    let webhook = format!("{address}/webhooks/wechat");
    let mut failures = Vec::new();

    play_inbound(&wechat, &store, &webhook, "Vonage", &mut failures).await?;

    // Outbound: the agent answers both ways a Vonage client can; one reply is too late.
    wechat.close_window(USER_2); // as if USER_2's last message were more than 48 hours old
    let replies = [
        (USER, "custom", "Yes! It ships today.", true),
        (USER, "message", "(from a plain Vonage client) Tracking: SF123456789", true),
        (USER_2, "custom", "Sure, which address?", false),
    ];
    for (openid, via, text, should_deliver) in replies {
        let started = Instant::now();
        let kind = if via == "custom" { "custom:wechat:message" } else { "message event" };
        match agent_says(&store, &vonage, openid, via, text).await {
            Err(e) => failures.push(format!("agent could not write to {openid}: {e}")),
            Ok(key) => match wait_message(&store, |m| m.external_id == key && m.status != "stored").await {
                Some(m) => {
                    let error = m
                        .error_code
                        .as_deref()
                        .map(|c| format!(" ({c}: {})", m.last_error.clone().unwrap_or_default()))
                        .unwrap_or_default();
                    println!(
                        "  Vonage → WeChat  agent → {openid} via {kind}: {text:?}\n                   {} in {} ms{error}",
                        tick(m.status.as_str()),
                        started.elapsed().as_millis()
                    );
                    if (m.status == "delivered") != should_deliver {
                        failures.push(format!(
                            "reply to {openid} ended {} (expected {})",
                            m.status,
                            if should_deliver { "delivered" } else { "failed" }
                        ));
                    }
                }
                None => failures.push(format!("reply to {openid} had no outcome within 10 s")),
            },
        }
    }
    let statuses = vonage.all_events().iter().filter(|(_, e)| e["type"] == "custom:wechat:status").count();
    println!(
        "\nVonage holds {} conversations; WeChat received {} customer-service messages; {statuses} status events went back.",
        vonage.conversations().len(),
        wechat.sent().len()
    );

    finish(once, failures, &address, stop_tx, server, shutdown).await
}

/// The demo's WeChat simulator: one Official Account in safe (AES) mode.
fn wechat_sim() -> WeChatSim {
    WeChatSim::new(WeChatSimConfig {
        app_id: APP_ID.into(),
        app_secret: "demo-secret".into(),
        token: "demo-token".into(),
        encoding_aes_key: Some(AES_KEY.into()),
        account: ACCOUNT.into(),
    })
}

/// The bridge on a fresh database in a temporary directory (kept while the returned guard
/// lives), pointed at the WeChat simulator on `wechat_base`, with the `platform`'s settings.
async fn build_bridge(
    listen: &str,
    wechat_base: String,
    platform: Vec<(&'static str, String)>,
) -> anyhow::Result<(Application, tempfile::TempDir, std::path::PathBuf)> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let db = dir.path().join("demo.db");
    let mut settings = vec![
        ("BRIDGE_LISTEN", listen.to_string()),
        ("BRIDGE_DATABASE_URL", format!("sqlite://{}", db.display())),
        ("WECHAT_TOKEN", "demo-token".into()),
        ("WECHAT_APP_ID", APP_ID.into()),
        ("WECHAT_APP_SECRET", "demo-secret".into()),
        ("WECHAT_ENCODING_AES_KEY", AES_KEY.into()),
        ("WECHAT_API_BASE", wechat_base),
        ("BRIDGE_RETRY_BASE_MS", "200".into()),
        // The demo's media servers are on loopback, which agents' media URLs may not reach by default.
        ("BRIDGE_MEDIA_FETCH_ALLOWLIST", "127.0.0.0/8,::1/128".into()),
    ];
    settings.extend(platform);
    let mut config = Config::from_lookup(|key| settings.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()))?;
    config.open_admin = true;
    let app = Application::build(config, WorkerMode::Background).await?;
    Ok((app, dir, db))
}

/// Serves `app` until the returned sender fires.
fn start(app: Application) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    (stop_tx, server)
}

/// Stops after the exchange (`once`, or a failure: an error naming every failed step), or keeps
/// the console served until `shutdown`.
async fn finish(
    once: bool,
    failures: Vec<String>,
    address: &str,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if once || !failures.is_empty() {
        let _ = stop.send(());
        let _ = server.await;
        if !failures.is_empty() {
            bail!("demo failed: {}", failures.join("; "));
        }
        println!("demo finished: every step succeeded");
        return Ok(());
    }
    println!("\nConsole: {address}/  (play the WeChat user and the agent in the Demo tab; Ctrl-C to stop)");
    shutdown.await;
    let _ = stop.send(());
    let _ = server.await;
    Ok(())
}

/// `demo --platform webhook`: the bridge POSTs signed events to a built-in receiver standing in
/// for the app (it verifies every signature), and the app's replies go in through `/api/v1/messages`.
async fn run_webhook(
    listen: &str,
    once: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let wechat = wechat_sim();
    let receiver = Receiver::new(WEBHOOK_SECRET).map_err(anyhow::Error::msg)?;
    let wechat_base = serve(wechat.router()).await?;
    let receiver_url = format!("{}/events", serve(receiver.router()).await?);
    let platform = vec![
        ("BRIDGE_PLATFORM", "webhook".into()),
        ("PLATFORM_WEBHOOK_URL", receiver_url.clone()),
        ("PLATFORM_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ("PLATFORM_API_TOKEN", API_TOKEN.into()),
    ];
    let (mut app, _dir, db) = build_bridge(listen, wechat_base, platform).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let messages_url = format!("{address}/api/v1/messages");
    app.set_demo(DemoHooks {
        wechat: wechat.clone(),
        agent: DemoAgent::Webhook { messages_url: messages_url.clone(), token: API_TOKEN.into() },
        webhook_url: format!("{address}/webhooks/wechat"),
    });
    let store = app.store().clone();
    let (stop_tx, server) = start(app);

    println!("wechat-bridge demo: bridge on {address}, database {}", db.display());
    println!("WeChat users write to Official Account {ACCOUNT} (safe mode, AES); an app gets signed webhooks at");
    println!("{receiver_url} and answers through POST {messages_url}.\n");
    let webhook = format!("{address}/webhooks/wechat");
    let mut failures = Vec::new();
    play_inbound(&wechat, &store, &webhook, "app", &mut failures).await?;

    // Outbound: the app answers with a text and a link card; one reply is too late.
    wechat.close_window(USER_2); // as if USER_2's last message were more than 48 hours old
    let replies = [
        (USER, json!({"to": USER, "content": "Yes! It ships today.", "client_reference": "order-1001"}), true),
        (
            USER,
            json!({"to": USER, "msgtype": "link", "title": "Track your parcel", "description": "SF123456789",
                   "url": "https://tracking.example/SF123456789", "client_reference": "order-1001-track"}),
            true,
        ),
        (USER_2, json!({"to": USER_2, "content": "Sure, which address?", "client_reference": "order-2002"}), false),
    ];
    let client = reqwest::Client::new();
    for (openid, body, should_deliver) in replies {
        let started = Instant::now();
        let what = body["content"].as_str().or(body["title"].as_str()).unwrap_or_default().to_string();
        let response = client.post(&messages_url).bearer_auth(API_TOKEN).json(&body).send().await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        let Some(id) = answer["id"].as_str().filter(|_| status.as_u16() == 202) else {
            failures.push(format!("POST /api/v1/messages for {openid} answered {status} {answer}"));
            continue;
        };
        let acked = started.elapsed();
        match wait_message(&store, |m| m.id == id && m.status != "stored").await {
            Some(m) => {
                let error = m
                    .error_code
                    .as_deref()
                    .map(|c| format!(" ({c}: {})", m.last_error.clone().unwrap_or_default()))
                    .unwrap_or_default();
                println!(
                    "  app → WeChat     {openid} via POST /api/v1/messages: {what:?}\n                   202 in {} ms · {} in {} ms{error}",
                    acked.as_millis(),
                    tick(m.status.as_str()),
                    started.elapsed().as_millis()
                );
                if (m.status == "delivered") != should_deliver {
                    failures.push(format!("reply to {openid} ended {} (expected the other outcome)", m.status));
                }
            }
            None => failures.push(format!("reply to {openid} had no outcome within 10 s")),
        }
    }
    // Each outcome goes back to the app as `message.status`, with the client_reference.
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.events_of("message.status").len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for status in receiver.events_of("message.status") {
        let data = &status["data"];
        println!(
            "  app ← bridge     message.status {} for {} ({})",
            data["status"].as_str().unwrap_or_default(),
            data["client_reference"].as_str().unwrap_or("-"),
            data["bridge_message_id"].as_str().unwrap_or_default()
        );
    }
    let (received, statuses) = (receiver.events_of("message.received").len(), receiver.events_of("message.status").len());
    if statuses != 3 {
        failures.push(format!("the app got {statuses} message.status events, not 3"));
    }
    if receiver.rejected() > 0 {
        failures.push(format!("{} deliveries failed signature verification", receiver.rejected()));
    }
    println!(
        "\nThe app took {received} message.received and {statuses} message.status events, every signature verified; WeChat received {} customer-service messages.",
        wechat.sent().len()
    );
    finish(once, failures, &address, stop_tx, server, shutdown).await
}

/// `demo --platform chatwoot`: customers appear in the Chatwoot simulator's API inbox; agents
/// answer there, their replies reach the bridge by the inbox's signed webhook, and each outcome
/// shows on the agent's message (delivered, or failed with the reason).
async fn run_chatwoot(
    listen: &str,
    once: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let wechat = wechat_sim();
    let sim_config = ChatwootSimConfig { inbox_secret: Some(CHATWOOT_SECRET.into()), ..ChatwootSimConfig::new() };
    let config = (sim_config.account_id, sim_config.inbox_id, sim_config.admin_token.clone());
    let chatwoot = ChatwootSim::new(sim_config);
    let wechat_base = serve(wechat.router()).await?;
    let chatwoot_base = serve(chatwoot.router()).await?;
    let platform = vec![
        ("BRIDGE_PLATFORM", "chatwoot".into()),
        ("CHATWOOT_BASE_URL", chatwoot_base.clone()),
        ("CHATWOOT_ACCOUNT_ID", config.0.to_string()),
        ("CHATWOOT_INBOX_ID", config.1.to_string()),
        ("CHATWOOT_API_TOKEN", config.2),
        ("CHATWOOT_WEBHOOK_SECRET", CHATWOOT_SECRET.into()),
    ];
    let (mut app, _dir, db) = build_bridge(listen, wechat_base, platform).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    chatwoot.set_webhook_url(Some(format!("{address}/webhooks/chatwoot")));
    app.set_demo(DemoHooks {
        wechat: wechat.clone(),
        agent: DemoAgent::Chatwoot(chatwoot.clone()),
        webhook_url: format!("{address}/webhooks/wechat"),
    });
    let store = app.store().clone();
    let (stop_tx, server) = start(app);

    println!("wechat-bridge demo: bridge on {address}, database {}", db.display());
    println!("WeChat users write to Official Account {ACCOUNT} (safe mode, AES); agents answer in Chatwoot");
    println!("(simulated at {chatwoot_base}, API inbox {}, signed webhooks to {address}/webhooks/chatwoot).\n", config.1);
    let webhook = format!("{address}/webhooks/wechat");
    let mut failures = Vec::new();
    play_inbound(&wechat, &store, &webhook, "Chatwoot", &mut failures).await?;

    // Outbound: agents answer in the dashboard: a text in Markdown, a photo, and a reply to a
    // customer whose 48 hours are over.
    wechat.close_window(USER_2); // as if USER_2's last message were more than 48 hours old
    let photo = SimFile { filename: "parcel.png".into(), content_type: "image/png".into(), bytes: vec![0x89, b'P', b'N', b'G'] };
    let replies = [
        (USER, AgentReply::text("**Yes!** It ships today."), true),
        (USER, AgentReply::text("Here is your parcel:").with_attachment(photo), true),
        (USER_2, AgentReply::text("Sure, which address?"), false),
    ];
    for (openid, reply, should_deliver) in replies {
        let started = Instant::now();
        let what = reply.content.clone();
        let contact = store.contact_by_channel_id("wechat", openid).await?.context("unknown user")?;
        let Some(conversation) =
            contact.link(crate::chatwoot::PLATFORM, crate::chatwoot::CONVERSATION).and_then(|c| c.parse::<u64>().ok())
        else {
            failures.push(format!("{openid} has no Chatwoot conversation"));
            continue;
        };
        let attachments = reply.attachments.len();
        let message_id = chatwoot.agent_reply(conversation, reply).await;
        let key = format!("{conversation}:{message_id}");
        match wait_message(&store, |m| m.external_id == key && m.status != "stored").await {
            Some(m) => {
                // The outcome reaches the agent's message in Chatwoot as its status.
                let status = wait_status(&chatwoot, conversation, message_id).await;
                let extra = if attachments > 0 { format!(" + {attachments} attachment") } else { String::new() };
                println!(
                    "  Chatwoot → WeChat agent → {openid} in conversation {conversation}: {what:?}{extra}\n                   {} in {} ms · Chatwoot shows {status}",
                    tick(m.status.as_str()),
                    started.elapsed().as_millis()
                );
                if (m.status == "delivered") != should_deliver {
                    failures.push(format!("reply to {openid} ended {} (expected the other outcome)", m.status));
                }
                if !status.starts_with(if should_deliver { "delivered" } else { "failed" }) {
                    failures.push(format!("Chatwoot shows {status} for the reply to {openid}"));
                }
            }
            None => failures.push(format!("reply to {openid} had no outcome within 10 s")),
        }
    }
    let signed = chatwoot.webhooks().iter().filter(|w| w.signed).count();
    println!(
        "\nChatwoot holds {} contacts and {} conversations; it sent {} webhooks ({signed} signed); WeChat received {} customer-service messages.",
        chatwoot.contacts().len(),
        chatwoot.conversations().len(),
        chatwoot.webhooks().len(),
        wechat.sent().len()
    );
    finish(once, failures, &address, stop_tx, server, shutdown).await
}

/// The status Chatwoot shows on message `id` once the bridge reported it (up to 10 s).
async fn wait_status(chatwoot: &ChatwootSim, conversation: u64, id: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let message = chatwoot.messages(conversation).into_iter().find(|m| m["id"] == id).unwrap_or_default();
        let status = message["status"].as_str().unwrap_or_default().to_string();
        if status != "sent" || Instant::now() > deadline {
            let error = message["content_attributes"]["external_error"].as_str().map(|e| format!(" ({e})")).unwrap_or_default();
            return format!("{status}{error}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The scripted customer side: a user follows, writes and sends a photo, another writes; each
/// is shown as it reaches the platform `to`.
async fn play_inbound(
    wechat: &WeChatSim,
    store: &Store,
    webhook: &str,
    to: &str,
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    // Inbound: a user follows, writes, sends a photo.
    let media_id = wechat.add_media("image/png", vec![0x89, b'P', b'N', b'G']);
    let script: Vec<(&str, Push)> = vec![
        ("follows the account", push(USER, Body::Event(Event::Subscribe { event_key: None, ticket: None }))),
        ("writes", wechat.text(USER, "你好! Is my order on its way?")),
        (
            "sends a photo",
            push(USER, Body::Image { pic_url: "http://mmbiz.example/order.png".into(), media_id, msg_id: wechat.next_msg_id() }),
        ),
        ("writes", wechat.text(USER_2, "Can I change my address?")),
    ];
    for (what, push) in &script {
        let started = Instant::now();
        let reply = wechat.push(webhook, push, PushMode::Safe).await.context("the bridge did not answer")?;
        let acked = started.elapsed();
        if reply.status != 200 {
            failures.push(format!("push '{what}' answered {} {}", reply.status, reply.body));
            continue;
        }
        let key = push.dedup_key();
        match wait_message(store, |m| m.external_id == key && m.status != "stored").await {
            Some(m) => {
                let payload: serde_json::Value = serde_json::from_str(&m.payload).unwrap_or_default();
                println!(
                    "  WeChat → {to}  {} {what}: {:?}\n                   `success` in {} ms · {} in {} ms · {to} event {}",
                    push.from_user_name,
                    payload["content"].as_str().unwrap_or_default(),
                    acked.as_millis(),
                    tick(m.status.as_str()),
                    m.delivered_at.unwrap_or(m.created_at) - m.created_at,
                    m.platform_event_id.as_deref().unwrap_or("-")
                );
                if m.status != "delivered" {
                    failures.push(format!("'{what}' was not delivered: {:?}", m.last_error));
                }
            }
            None => failures.push(format!("'{what}' was not delivered to {to} within 10 s")),
        }
    }
    Ok(())
}

fn push(openid: &str, body: Body) -> Push {
    Push { to_user_name: ACCOUNT.into(), from_user_name: openid.into(), create_time: crate::store::now_ms() / 1000, body }
}

fn tick(status: &str) -> &'static str {
    match status {
        "delivered" => "✓ delivered",
        "failed" => "✕ failed",
        _ => "○ stored",
    }
}

/// An agent writes to `openid`'s conversation; returns the dedup key of the resulting message.
async fn agent_says(store: &Store, vonage: &VonageSim, openid: &str, via: &str, text: &str) -> anyhow::Result<String> {
    let contact = store.contact_by_channel_id("wechat", openid).await?.context("unknown user")?;
    let conversation =
        contact.link(crate::vonage::PLATFORM, crate::vonage::CONVERSATION).map(str::to_string).context("no conversation yet")?;
    let agent = vonage.create_agent("demo_agent", &conversation);
    let event = if via == "custom" {
        serde_json::json!({"type": "custom:wechat:message", "from": agent,
            "body": {"to": openid, "from": "demo_agent", "content": text, "direction": "outbound"}})
    } else {
        serde_json::json!({"type": "message", "from": agent, "body": {"message_type": "text", "text": text}})
    };
    let created = vonage.post_event_as_client(&conversation, event).map_err(|e| anyhow::anyhow!(e))?;
    Ok(format!("{conversation}:{}", created["id"]))
}

async fn serve(router: axum::Router) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{addr}"))
}

/// Waits (up to 10 s) for a message matching `done`.
async fn wait_message(store: &Store, done: impl Fn(&crate::store::MessageRecord) -> bool) -> Option<crate::store::MessageRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(messages) = store.messages(None, 200).await
            && let Some(m) = messages.into_iter().find(|m| done(m))
        {
            return Some(m);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}
