//! No secret in the real binary's output: a full exchange with `RUST_LOG=debug`, in text and in
//! JSON log format, then every secret the bridge holds or handled is searched for in everything
//! it wrote to stdout and stderr.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wechat_bridge::wechat::message::{Body, Push};
use wechat_bridge::wechat::sim::PushMode;

use crate::binary::{self, ACCOUNT, ADMIN_TOKEN, AES_KEY, APP_SECRET, SIGNATURE_SECRET, Sims, TOKEN, Workdir};
use crate::helpers;

const USER: &str = "o_secrets_user";
const WAIT: Duration = Duration::from_secs(20);

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn messages(sims: &Sims) -> Vec<Value> {
    sims.vonage.all_events().into_iter().filter(|(_, e)| e["type"] == "custom:wechat:message").map(|(_, e)| e).collect()
}

fn statuses(sims: &Sims) -> Vec<Value> {
    sims.vonage
        .all_events()
        .into_iter()
        .filter(|(_, e)| e["type"] == "custom:wechat:status")
        .map(|(_, e)| e["body"].clone())
        .collect()
}

/// Reads from `/api/stream` (the admin token in the header, or in `?token=` as the console's
/// EventSource sends it) until an event arrives.
async fn read_stream(address: &str, in_query: bool) -> tokio::task::JoinHandle<String> {
    let client = reqwest::Client::new();
    let request = if in_query {
        client.get(format!("{address}/api/stream?token={ADMIN_TOKEN}"))
    } else {
        client.get(format!("{address}/api/stream")).bearer_auth(ADMIN_TOKEN)
    };
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    tokio::spawn(async move {
        let mut seen = String::new();
        while !seen.contains("event: message") {
            match tokio::time::timeout(WAIT, response.chunk()).await {
                Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                _ => break,
            }
        }
        seen
    })
}

/// The whole exchange against the binary; returns everything it printed.
async fn exchange(args: &[&str]) -> (String, Sims) {
    let sims = Sims::start(Duration::from_millis(50)).await;
    let work = Workdir::new();
    let log = work.log("bridge.log");
    let mut env = sims.env(work.dir.path(), binary::free_port());
    env.insert("RUST_LOG".into(), "debug".into());
    env.insert("BRIDGE_PUBLIC_URL".into(), "https://bridge.example".into());
    let mut bridge = binary::start_ready(&mut env, args, &log).await;
    let address = bridge.address();
    sims.point_rtc_at(&address);
    let webhook = format!("{address}/webhooks/wechat");

    // Inbound: a text and an image, in AES safe mode.
    let text = sims.wechat.text(USER, "hello, secrets test");
    assert_eq!(sims.wechat.push(&webhook, &text, PushMode::Safe).await.unwrap().body, "success");
    let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 9, 8, 7];
    let image = Push {
        to_user_name: ACCOUNT.into(),
        from_user_name: USER.into(),
        create_time: wechat_bridge::store::now_ms() / 1000,
        body: Body::Image {
            pic_url: "http://mmbiz.example/s.jpg".into(),
            media_id: sims.wechat.add_media("image/jpeg", jpeg.clone()),
            msg_id: sims.wechat.next_msg_id(),
        },
    };
    assert_eq!(sims.wechat.push(&webhook, &image, PushMode::Safe).await.unwrap().body, "success");
    wait_for("both pushes in Vonage", || messages(&sims).len() >= 2).await;
    // The agent opens the image (media/get with the access_token).
    let media = messages(&sims).iter().find_map(|e| e["body"]["media"]["url"].as_str().map(str::to_string)).unwrap();
    let media = reqwest::get(media.replace("https://bridge.example", &address)).await.unwrap();
    assert_eq!(media.status(), 200);
    assert_eq!(media.bytes().await.unwrap().to_vec(), jpeg);

    // Outbound: a reply; a token revoked behind the bridge's back (refresh); a closed window.
    let conv = sims.vonage.all_events().into_iter().find(|(_, e)| e["type"] == "custom:wechat:message").unwrap().0;
    let agent = sims.vonage.create_agent("agent_secrets", &conv);
    let say = |content: &str| {
        sims.vonage
            .post_event_as_client(
                &conv,
                json!({"type": "custom:wechat:message", "from": agent, "body": {"content": content, "direction": "outbound"}}),
            )
            .unwrap();
    };
    let stream_header = read_stream(&address, false).await;
    let stream_query = read_stream(&address, true).await;
    say("first reply");
    wait_for("the first reply in WeChat", || sims.wechat.sent().len() == 1).await;
    sims.wechat.revoke_tokens();
    say("after the token was revoked");
    wait_for("the second reply in WeChat", || sims.wechat.sent().len() == 2).await;
    sims.wechat.close_window(USER);
    say("outside the window");
    wait_for("the failed status", || statuses(&sims).iter().any(|s| s["status"] == "failed")).await;
    assert_eq!(sims.wechat.sent().len(), 2);
    assert!(stream_header.await.unwrap().contains("event: message"));
    assert!(stream_query.await.unwrap().contains("event: message"));

    // Admin API.
    let health = binary::admin_get(&address, "/api/health").await;
    assert_eq!(health["messages"]["failed"], 1, "{health}");
    let listed = binary::admin_get(&address, "/api/messages").await;
    let failed = listed.as_array().or(listed["messages"].as_array()).unwrap().iter().find(|m| m["status"] == "failed").cloned();
    let failed = failed.unwrap_or_else(|| panic!("a failed message in {listed}"));
    let id = failed["id"].as_str().unwrap();
    binary::admin_get(&address, &format!("/api/messages/{id}")).await;
    binary::admin_get(&address, "/api/conversations").await;
    let retry =
        reqwest::Client::new().post(format!("{address}/api/messages/{id}/retry")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert!(retry.status().is_success(), "{}", retry.status());
    let wrong = reqwest::Client::new().get(format!("{address}/api/health")).bearer_auth("not-the-token").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    wait_for("the retried reply to fail again", || statuses(&sims).iter().filter(|s| s["status"] == "failed").count() >= 2).await;

    bridge.terminate().await;
    (std::fs::read_to_string(&log).unwrap(), sims)
}

/// Every secret, by name, that must not appear in the output.
fn secrets(sims: &Sims) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = [
        ("WeChat app secret", APP_SECRET),
        ("WeChat token", TOKEN),
        ("EncodingAESKey", AES_KEY),
        ("Vonage signature secret", SIGNATURE_SECRET),
        ("admin token", ADMIN_TOKEN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for line in helpers::keypair().0.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16) {
        all.push(("Vonage private key line".into(), line.to_string()));
    }
    let mut tokens = sims.wechat_tokens.lock().unwrap().clone();
    tokens.sort();
    tokens.dedup();
    assert!(tokens.len() >= 2, "a token and its refresh: {tokens:?}");
    all.extend(tokens.into_iter().map(|t| ("WeChat access_token".to_string(), t)));
    let jwts = sims.vonage_auth.lock().unwrap().clone();
    assert!(!jwts.is_empty(), "the bridge called Vonage with JWTs");
    let rtc_jwts: Vec<String> = sims.rtc_attempts().into_iter().filter_map(|a| a.authorization).collect();
    assert!(!rtc_jwts.is_empty(), "Vonage signed its webhooks");
    for (what, auth) in jwts
        .iter()
        .map(|a| ("Vonage JWT minted by the bridge", a))
        .chain(rtc_jwts.iter().map(|a| ("Vonage's signed-webhook JWT", a)))
    {
        let jwt = auth.strip_prefix("Bearer ").unwrap_or(auth);
        let signature = jwt.rsplit('.').next().unwrap();
        all.push((what.to_string(), jwt.to_string()));
        all.push((format!("{what} (signature part)"), signature.to_string()));
    }
    all.sort();
    all.dedup();
    all
}

/// Asserts no secret appears in `output`; names each leak and the first line that shows it.
fn assert_no_secrets(output: &str, sims: &Sims, format: &str) {
    // Written to a file, not a terminal: plain text (colour codes would garble log collectors).
    assert!(!output.contains('\u{1b}'), "{format} log written to a file has colour codes");
    let output = &strip_ansi(output);
    assert!(output.contains("wechat push stored"), "{format} log is trivial:\n{output}");
    assert!(output.contains("delivered"), "{format} log is trivial:\n{output}");
    assert!(output.contains("DEBUG") || output.contains("\"DEBUG\""), "{format} log has no debug lines");
    let checked = secrets(sims);
    let leaks: Vec<String> = checked
        .iter()
        .filter(|(_, value)| output.contains(value.as_str()))
        .map(|(what, value)| {
            let line = output.lines().find(|l| l.contains(value.as_str())).unwrap_or_default();
            format!("{what} leaked in: {line}")
        })
        .collect();
    println!(
        "secrets ({format}): {} values checked in {} lines of output, {} leaks",
        checked.len(),
        output.lines().count(),
        leaks.len()
    );
    assert!(leaks.is_empty(), "secrets in the {format} output:\n{}", leaks.join("\n"));
}

/// The text format colours field names even into a file; a value is never split by a colour code,
/// but strip them so a search can never miss one.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_debug_text_logs() {
    let (output, sims) = exchange(&[]).await;
    assert_no_secrets(&output, &sims, "text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_debug_json_logs() {
    let (output, sims) = exchange(&["--log-format", "json"]).await;
    assert!(output.lines().any(|l| l.starts_with('{')), "JSON log lines");
    assert_no_secrets(&output, &sims, "json");
}

/// The `webhook` platform's secrets: its signing secret and the API token apps present.
const WEBHOOK_SECRET: &str = "whsec_UzNjcmV0LXdlYmhvb2stc2lnbmluZy1rZXktMDE=";
const API_TOKEN: &str = "S3cret-api-9d2e7f1c4b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_debug_logs_of_the_webhook_platform() {
    let sims = Sims::start(Duration::from_millis(50)).await;
    let receiver = wechat_bridge::webhook::receiver::Receiver::new(WEBHOOK_SECRET).unwrap();
    let receiver_url = format!("{}/events", helpers::serve(receiver.router()).await);
    let work = Workdir::new();
    let log = work.log("bridge.log");
    let mut env = sims.env(work.dir.path(), binary::free_port());
    for (key, value) in [
        ("RUST_LOG", "debug"),
        ("BRIDGE_PLATFORM", "webhook"),
        ("PLATFORM_WEBHOOK_URL", receiver_url.as_str()),
        ("PLATFORM_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("PLATFORM_API_TOKEN", API_TOKEN),
    ] {
        env.insert(key.into(), value.into());
    }
    let mut bridge = binary::start_ready(&mut env, &[], &log).await;
    let address = bridge.address();
    let text = sims.wechat.text(USER, "hello, webhook secrets test");
    assert_eq!(sims.wechat.push(&format!("{address}/webhooks/wechat"), &text, PushMode::Safe).await.unwrap().body, "success");
    wait_for("the signed message.received", || !receiver.events_of("message.received").is_empty()).await;
    let client = reqwest::Client::new();
    let send = |token: &'static str| {
        client
            .post(format!("{address}/api/v1/messages"))
            .bearer_auth(token)
            .json(&json!({"to": USER, "content": "a reply through the API", "client_reference": "r-1"}))
            .send()
    };
    assert_eq!(send("not-the-token").await.unwrap().status(), 401);
    assert_eq!(send(API_TOKEN).await.unwrap().status(), 202);
    wait_for("the reply's message.status", || !receiver.events_of("message.status").is_empty()).await;
    assert_eq!(receiver.rejected(), 0, "every event verified");
    bridge.terminate().await;

    let output = std::fs::read_to_string(&log).unwrap();
    assert!(output.contains("DEBUG") && output.contains("delivered"), "the log is trivial:\n{output}");
    let key_part = WEBHOOK_SECRET.trim_start_matches("whsec_");
    let mut checked = vec![
        ("webhook signing secret", WEBHOOK_SECRET.to_string()),
        ("webhook signing key (base64)", key_part.to_string()),
        ("API token", API_TOKEN.to_string()),
        ("WeChat app secret", APP_SECRET.to_string()),
        ("WeChat token", TOKEN.to_string()),
        ("EncodingAESKey", AES_KEY.to_string()),
    ];
    checked.extend(sims.wechat_tokens.lock().unwrap().iter().map(|t| ("WeChat access_token", t.clone())));
    let leaks: Vec<&str> = checked.iter().filter(|(_, v)| output.contains(v.as_str())).map(|(what, _)| *what).collect();
    println!(
        "secrets (webhook platform): {} values checked in {} lines, {} leaks",
        checked.len(),
        output.lines().count(),
        leaks.len()
    );
    assert!(leaks.is_empty(), "leaked: {leaks:?}");
}

/// The `chatwoot` platform's secrets: the administrator's API token and the inbox's webhook secret.
const CHATWOOT_TOKEN: &str = "Cw-admin-token-7f3a9e21";
const CHATWOOT_INBOX_SECRET: &str = "Cw-inbox-secret-5b8d0c44";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_debug_logs_of_the_chatwoot_platform() {
    use wechat_bridge::chatwoot::sim::{AgentReply, ChatwootSim, ChatwootSimConfig};
    let sims = Sims::start(Duration::from_millis(50)).await;
    let chatwoot = ChatwootSim::new(ChatwootSimConfig {
        admin_token: CHATWOOT_TOKEN.into(),
        inbox_secret: Some(CHATWOOT_INBOX_SECRET.into()),
        ..ChatwootSimConfig::new()
    });
    let chatwoot_base = helpers::serve(chatwoot.router()).await;
    let work = Workdir::new();
    let log = work.log("bridge.log");
    let mut env = sims.env(work.dir.path(), binary::free_port());
    for (key, value) in [
        ("RUST_LOG", "debug"),
        ("BRIDGE_PLATFORM", "chatwoot"),
        ("CHATWOOT_BASE_URL", chatwoot_base.as_str()),
        ("CHATWOOT_ACCOUNT_ID", "1"),
        ("CHATWOOT_INBOX_ID", "3"),
        ("CHATWOOT_API_TOKEN", CHATWOOT_TOKEN),
        ("CHATWOOT_WEBHOOK_SECRET", CHATWOOT_INBOX_SECRET),
    ] {
        env.insert(key.into(), value.into());
    }
    let mut bridge = binary::start_ready(&mut env, &[], &log).await;
    let address = bridge.address();
    chatwoot.set_webhook_url(Some(format!("{address}/webhooks/chatwoot")));
    let text = sims.wechat.text(USER, "hello, chatwoot secrets test");
    assert_eq!(sims.wechat.push(&format!("{address}/webhooks/wechat"), &text, PushMode::Safe).await.unwrap().body, "success");
    wait_for("the customer's conversation", || !chatwoot.conversations().is_empty()).await;
    let conversation = chatwoot.conversations()[0]["id"].as_u64().unwrap();
    let reply = chatwoot.agent_reply(conversation, AgentReply::text("a reply from Chatwoot")).await;
    wait_for("the reply's delivered status", || {
        chatwoot.messages(conversation).iter().any(|m| m["id"] == reply && m["status"] == "delivered")
    })
    .await;
    bridge.terminate().await;

    let output = std::fs::read_to_string(&log).unwrap();
    assert!(output.contains("DEBUG") && output.contains("agent reply stored"), "the log is trivial:\n{output}");
    let mut checked = vec![
        ("Chatwoot API token", CHATWOOT_TOKEN.to_string()),
        ("Chatwoot inbox secret", CHATWOOT_INBOX_SECRET.to_string()),
        ("WeChat app secret", APP_SECRET.to_string()),
        ("WeChat token", TOKEN.to_string()),
        ("EncodingAESKey", AES_KEY.to_string()),
    ];
    checked.extend(sims.wechat_tokens.lock().unwrap().iter().map(|t| ("WeChat access_token", t.clone())));
    let leaks: Vec<&str> = checked.iter().filter(|(_, v)| output.contains(v.as_str())).map(|(what, _)| *what).collect();
    println!(
        "secrets (chatwoot platform): {} values checked in {} lines, {} leaks",
        checked.len(),
        output.lines().count(),
        leaks.len()
    );
    assert!(leaks.is_empty(), "leaked: {leaks:?}");
}

/// The database password in `BRIDGE_DATABASE_URL` is a secret too: `migrate` names the database
/// it migrated, and a failure names what failed, without it.
#[tokio::test]
async fn the_database_password_is_never_printed() {
    let Some(server) = wechat_bridge::store::testing::postgres_server() else { return };
    const PASSWORD: &str = "S3cret-db-pass-9f2c";
    let url = wechat_bridge::store::testing::fresh_postgres_database(&server).await.unwrap();
    // The test server trusts local connections, so any password is accepted.
    let with_password = url.replacen("://postgres@", &format!("://postgres:{PASSWORD}@"), 1);
    assert!(with_password.contains(PASSWORD), "the test URL {url} names the user postgres");
    let unreachable = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/nowhere", binary::free_port());
    for (database, succeeds) in [(with_password, true), (unreachable, false)] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_wechat-bridge"))
            .arg("migrate")
            .env("BRIDGE_DATABASE_URL", &database)
            .output()
            .unwrap();
        let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.success(), succeeds, "{printed}");
        assert!(!printed.contains(PASSWORD), "the password was printed: {printed}");
        assert!(printed.contains("127.0.0.1"), "the output names the server: {printed}");
    }
}
