//! `spawn_app`: a fresh database, both simulators on their own ports, the bridge on a random
//! port pointed at them.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wechat_bridge::app::{Application, WorkerMode};
use wechat_bridge::chatwoot::sim::{ChatwootSim, ChatwootSimConfig};
use wechat_bridge::config::Config;
use wechat_bridge::store::{Store, testing};
use wechat_bridge::vonage::sim::{VonageSim, VonageSimConfig};
use wechat_bridge::webhook::receiver::{Answer, Receiver};
use wechat_bridge::wechat::message::Push;
use wechat_bridge::wechat::sim::{PushMode, PushReply, WeChatSim, WeChatSimConfig};

pub const APP_ID: &str = "wx1234567890abcdef";
pub const APP_SECRET: &str = "sim-app-secret";
pub const TOKEN: &str = "sim-token";
/// Ends in 'G': its base64 has non-zero trailing bits, like many real keys.
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const ACCOUNT: &str = "gh_0123456789ab";
pub const VONAGE_APP_ID: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
/// Signs the simulator's RTC webhooks; the bridge requires it.
pub const SIGNATURE_SECRET: &str = "a-signature-secret-for-tests-only";

/// The `webhook` platform's signing secret (32 bytes) and API token in tests.
pub const WEBHOOK_SECRET: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
pub const API_TOKEN: &str = "test-platform-api-token";

/// The agent side a test app runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestPlatform {
    Vonage,
    Webhook,
    Chatwoot,
}

/// The Chatwoot simulator's API inbox secret in tests (it signs every webhook with it).
pub const CHATWOOT_SECRET: &str = "test-chatwoot-inbox-secret";

/// One RSA key pair for the whole test binary (generation takes a moment).
pub fn keypair() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(wechat_bridge::vonage::sim::keys::generate_rsa_keypair)
}

/// Serves a router on 127.0.0.1:0 and returns its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

pub struct TestApp {
    pub address: String,
    pub store: Store,
    pub wechat: WeChatSim,
    pub vonage: VonageSim,
    /// The app's side of the `webhook` platform (it receives nothing on `vonage`).
    pub receiver: Receiver,
    /// The Chatwoot simulator (used with `TestPlatform::Chatwoot`).
    pub chatwoot: ChatwootSim,
    pub platform: TestPlatform,
    pub settings: HashMap<String, String>,
    pub mode: WorkerMode,
    pub app_worker: Option<std::sync::Arc<wechat_bridge::relay::worker::Worker>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: TempDir,
}

/// The bridge with the outbox worker running in the background, AES configured.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(WorkerMode::Background, |_| {}).await
}

/// The Official Account both simulators are configured with.
pub struct SimAccount<'a> {
    pub app_id: &'a str,
    pub app_secret: &'a str,
    pub token: &'a str,
    pub aes_key: &'a str,
    pub account: &'a str,
}

/// The WeChat simulator for `account`, and the Vonage one checking JWTs with `public_pem` for the
/// application `vonage.0`, signing its RTC webhooks with `vonage.1`, retrying from `rtc_retry_base`.
pub fn simulators(
    account: &SimAccount<'_>,
    public_pem: &str,
    vonage: (&str, &str),
    rtc_retry_base: Duration,
) -> (WeChatSim, VonageSim) {
    let wechat = WeChatSim::new(WeChatSimConfig {
        app_id: account.app_id.into(),
        app_secret: account.app_secret.into(),
        token: account.token.into(),
        encoding_aes_key: Some(account.aes_key.into()),
        account: account.account.into(),
    });
    let vonage = VonageSim::new(VonageSimConfig {
        application_id: vonage.0.into(),
        public_key_pem: public_pem.into(),
        rtc_event_url: None,
        signature_secret: Some(vonage.1.into()),
        api_key: "key".into(),
        api_secret: "secret".into(),
        rtc_retry_base,
    });
    (wechat, vonage)
}

/// The database a test's bridge uses: a file in `dir`, or with `BRIDGE_TEST_STORE=postgres` a
/// fresh database on the server `BRIDGE_TEST_POSTGRES_URL` names (the whole suite then runs on
/// PostgreSQL).
pub async fn test_database_url(dir: &std::path::Path) -> String {
    match std::env::var("BRIDGE_TEST_STORE").as_deref() {
        Ok("postgres") => {
            let server = testing::postgres_server().expect("BRIDGE_TEST_STORE=postgres needs BRIDGE_TEST_POSTGRES_URL");
            testing::fresh_postgres_database(&server).await.expect("a fresh PostgreSQL database")
        }
        _ => format!("sqlite://{}", dir.join("bridge.db").display()),
    }
}

/// The bridge with settings changed by `adjust`.
pub async fn spawn_app_with(mode: WorkerMode, adjust: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
    spawn_app_with_platform(TestPlatform::Vonage, mode, adjust).await
}

/// The bridge with `platform` as its agent side (`webhook`: POSTing to `TestApp::receiver`).
pub async fn spawn_app_with_platform(
    platform: TestPlatform,
    mode: WorkerMode,
    adjust: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    let (private_pem, public_pem) = keypair().clone();
    let (wechat, vonage) = simulators(
        &SimAccount { app_id: APP_ID, app_secret: APP_SECRET, token: TOKEN, aes_key: AES_KEY, account: ACCOUNT },
        &public_pem,
        (VONAGE_APP_ID, SIGNATURE_SECRET),
        Duration::from_millis(50),
    );
    let receiver = Receiver::new(WEBHOOK_SECRET).unwrap();
    let chatwoot = ChatwootSim::new(ChatwootSimConfig {
        inbox_secret: Some(CHATWOOT_SECRET.into()),
        webhook_timeout: Duration::from_secs(2),
        ..ChatwootSimConfig::new()
    });
    let chatwoot_config = ChatwootSimConfig::new();
    let chatwoot_base = serve(chatwoot.router()).await;
    let wechat_base = serve(wechat.router()).await;
    let vonage_base = serve(vonage.router()).await;
    let receiver_url = format!("{}/events", serve(receiver.router()).await);
    let dir = tempfile::tempdir().unwrap();
    let mut settings: HashMap<String, String> = [
        ("BRIDGE_LISTEN", "127.0.0.1:0".to_string()),
        ("BRIDGE_DATABASE_URL", test_database_url(dir.path()).await),
        ("WECHAT_TOKEN", TOKEN.into()),
        ("WECHAT_APP_ID", APP_ID.into()),
        ("WECHAT_APP_SECRET", APP_SECRET.into()),
        ("WECHAT_ENCODING_AES_KEY", AES_KEY.into()),
        ("WECHAT_API_BASE", wechat_base),
        ("VONAGE_APPLICATION_ID", VONAGE_APP_ID.into()),
        ("VONAGE_PRIVATE_KEY", private_pem),
        ("VONAGE_API_BASE", vonage_base),
        ("VONAGE_SIGNATURE_SECRET", SIGNATURE_SECRET.into()),
        ("BRIDGE_RETRY_BASE_MS", "50".into()),
        ("BRIDGE_RETRY_MAX_SECS", "1".into()),
        ("BRIDGE_LEASE_SECS", "1".into()),
        // Media URLs in tests point at loopback servers, which agents may not name by default.
        ("BRIDGE_MEDIA_FETCH_ALLOWLIST", "127.0.0.0/8,::1/128".into()),
        // Read only with BRIDGE_PLATFORM=webhook.
        ("PLATFORM_WEBHOOK_URL", receiver_url),
        ("PLATFORM_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ("PLATFORM_API_TOKEN", API_TOKEN.into()),
        // Read only with BRIDGE_PLATFORM=chatwoot.
        ("CHATWOOT_BASE_URL", chatwoot_base),
        ("CHATWOOT_ACCOUNT_ID", chatwoot_config.account_id.to_string()),
        ("CHATWOOT_INBOX_ID", chatwoot_config.inbox_id.to_string()),
        ("CHATWOOT_API_TOKEN", chatwoot_config.admin_token.clone()),
        ("CHATWOOT_WEBHOOK_SECRET", CHATWOOT_SECRET.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    match platform {
        TestPlatform::Vonage => {}
        TestPlatform::Webhook => {
            settings.insert("BRIDGE_PLATFORM".into(), "webhook".into());
        }
        TestPlatform::Chatwoot => {
            settings.insert("BRIDGE_PLATFORM".into(), "chatwoot".into());
        }
    }
    adjust(&mut settings);
    let mut app = TestApp {
        address: String::new(),
        store: Store::connect("sqlite::memory:").await.unwrap(),
        wechat,
        vonage,
        receiver,
        chatwoot,
        platform,
        settings,
        mode,
        app_worker: None,
        stop: None,
        task: None,
        _dir: dir,
    };
    app.start().await;
    app
}

impl TestApp {
    pub fn config(&self) -> Config {
        Config::from_lookup(|k| self.settings.get(k).cloned()).expect("test config is valid")
    }

    async fn start(&mut self) {
        let mut config = self.config();
        config.relay.poll_interval = Duration::from_millis(50);
        config.relay.shutdown_grace = Duration::from_secs(1);
        let app = Application::build(config, self.mode).await.expect("app builds");
        self.address = format!("http://127.0.0.1:{}", app.port());
        // Vonage delivers every event, the bridge's own included, to the RTC webhook (§3.2).
        self.vonage.set_rtc_event_url(Some(format!("{}/webhooks/vonage/rtc", self.address)));
        // Chatwoot's API inbox sends its webhook to the bridge (setup sets this in production).
        if self.platform == TestPlatform::Chatwoot {
            self.chatwoot.set_webhook_url(Some(format!("{}/webhooks/chatwoot", self.address)));
        }
        self.store = app.store().clone();
        self.app_worker = Some(app.worker());
        let (tx, rx) = oneshot::channel();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(async move {
            app.run_until_stopped(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        }));
    }

    /// Stops the bridge (gracefully) and starts it again on the same database.
    pub async fn restart(&mut self, mode: WorkerMode) {
        self.shutdown().await;
        self.mode = mode;
        self.start().await;
    }

    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    pub fn webhook(&self) -> String {
        format!("{}/webhooks/wechat", self.address)
    }

    pub async fn push(&self, push: &Push, mode: PushMode) -> PushReply {
        self.wechat.push(&self.webhook(), push, mode).await.expect("push reaches the bridge")
    }

    /// `custom:wechat:message` events stored by the Vonage simulator, in all conversations.
    pub fn wechat_events(&self) -> Vec<(String, serde_json::Value)> {
        self.vonage.all_events().into_iter().filter(|(_, e)| e["type"] == "custom:wechat:message").collect()
    }

    /// `WorkerMode::Manual`: runs the outbox worker batch by batch until no job is due; returns
    /// how many jobs ran. Jobs rescheduled for later stay for a later call (see `skip_backoff`).
    pub async fn run_worker(&self) -> usize {
        let worker = self.app_worker.clone().expect("the app is running");
        let mut total = 0;
        for _ in 0..1000 {
            match worker.run_once().await.expect("the worker claims jobs") {
                0 => return total,
                n => total += n,
            }
        }
        panic!("the worker never ran out of due jobs");
    }

    /// Makes every pending job due now, as if its backoff had passed (no sleeping in tests).
    pub async fn skip_backoff(&self) {
        self.sql("UPDATE jobs SET due_at = 0 WHERE state = 'pending'").await;
    }

    /// Runs `statement` on the bridge's database, whichever engine it is.
    pub async fn sql(&self, statement: &'static str) {
        let url = &self.settings["BRIDGE_DATABASE_URL"];
        if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }

    /// The one integer `query` selects from the bridge's database.
    pub async fn sql_i64(&self, query: &'static str) -> i64 {
        use sqlx::Row;
        let url = &self.settings["BRIDGE_DATABASE_URL"];
        if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            let value = sqlx::query(query).fetch_one(&pool).await.unwrap().get(0);
            pool.close().await;
            value
        } else {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let value = sqlx::query(query).fetch_one(&pool).await.unwrap().get(0);
            pool.close().await;
            value
        }
    }

    /// The contents of customer messages the platform took, in order (Vonage: the events in
    /// every conversation; webhook: the `message.received` the app took, each once).
    pub fn platform_texts(&self) -> Vec<String> {
        let texts: Vec<Value> = match self.platform {
            TestPlatform::Vonage => self.wechat_events().into_iter().map(|(_, e)| e["body"]["content"].clone()).collect(),
            TestPlatform::Webhook => {
                self.receiver.events_of("message.received").into_iter().map(|e| e["data"]["content"].clone()).collect()
            }
            TestPlatform::Chatwoot => self.chatwoot_incoming().into_iter().map(|m| m["content"].clone()).collect(),
        };
        texts.into_iter().map(|t| t.as_str().unwrap_or_default().to_string()).collect()
    }

    /// The platform answers the next `n` deliveries with `status` (and Retry-After).
    pub fn platform_fails_next(&self, n: usize, status: u16, retry_after: Option<u64>) {
        match self.platform {
            TestPlatform::Vonage => self.vonage.fail_next(n, status, retry_after),
            TestPlatform::Webhook => (0..n).for_each(|_| self.receiver.answer_next(Answer { status, retry_after })),
            TestPlatform::Chatwoot => self.chatwoot.fail_next(n, status),
        }
    }

    /// The incoming messages in every Chatwoot conversation, conversation by conversation,
    /// each in order.
    pub fn chatwoot_incoming(&self) -> Vec<Value> {
        self.chatwoot
            .conversations()
            .iter()
            .filter_map(|c| c["id"].as_u64())
            .flat_map(|id| self.chatwoot.messages(id))
            .filter(|m| m["message_type"] == 0)
            .collect()
    }

    /// `POST /api/v1/messages` with the API token, `body` as JSON and an optional Idempotency-Key.
    pub async fn api_send(&self, body: &Value, key: Option<&str>) -> reqwest::Response {
        let mut request =
            reqwest::Client::new().post(format!("{}/api/v1/messages", self.address)).bearer_auth(API_TOKEN).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.unwrap()
    }

    pub async fn message_count(&self) -> usize {
        self.store.messages(None, 10_000).await.unwrap().len()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls `check` until it holds or `timeout` passes; panics with `what` on timeout.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
