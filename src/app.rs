//! Wiring: the store, the WeChat webhook, the Vonage platform, the outbox worker and the router,
//! built from a `Config`. `Application::build` binds the listener (port 0 works: tests use it);
//! `run_until_stopped` serves until the shutdown future resolves, then stops the worker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{Config, HttpConfig};
use crate::http::admin::AdminAccess;
use crate::http::shutdown::Shutdown;
use crate::http::{AppState, router};
use crate::relay::worker::Worker;
use crate::relay::{Relay, Signals};
use crate::store::Store;
use crate::vonage::VonagePlatform;
use crate::vonage::client::VonageClient;
use crate::vonage::jwt::JwtMinter;
use crate::vonage::rtc::VonageWebhook;
use crate::wechat::channel::WeChatChannel;
use crate::wechat::client::WeChatClient;
use crate::wechat::crypto::MessageCrypto;
use crate::wechat::media_link::MediaLinks;
use crate::wechat::webhook::WeChatWebhook;

/// The worker as wired in production: Vonage platform, WeChat channel.
pub type BridgeWorker = Worker<VonagePlatform, WeChatChannel>;

/// Whether the outbox worker runs by itself or is driven by the caller (tests, step by step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerMode {
    Background,
    Manual,
}

/// A built, not yet running, bridge.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// The routes the channel and the platform bring (their webhooks, media links).
    adapters: axum::Router<AppState>,
    worker: Arc<BridgeWorker>,
    mode: WorkerMode,
    http: HttpConfig,
}

impl Application {
    /// Opens and migrates the database, builds the clients and binds `config.listen`.
    pub async fn build(config: Config, mode: WorkerMode) -> anyhow::Result<Self> {
        let store = Store::connect(&config.database_url).await.context("cannot open the database")?;
        store.migrate().await.context("cannot migrate the database")?;
        let crypto = match &config.wechat.encoding_aes_key {
            Some(key) => Some(MessageCrypto::new(key.expose(), &config.wechat.app_id).context("WECHAT_ENCODING_AES_KEY")?),
            None => None,
        };
        let wechat = WeChatWebhook {
            token: config.wechat.token.expose().to_string(),
            crypto,
            max_timestamp_skew_secs: config.wechat.max_timestamp_skew_secs,
            allow_plaintext: config.wechat.allow_plaintext,
            window_quota: config.wechat.window_quota,
        };
        let jwt = JwtMinter::new(&config.vonage.application_id, config.vonage.private_key_pem.expose())
            .context("VONAGE_PRIVATE_KEY")?;
        let platform = VonagePlatform::new(
            VonageClient::new(&config.vonage.api_base, jwt),
            store.clone(),
            config.vonage.conversation_id.clone(),
        );
        // One client for the worker and the media route: its token single-flight is per client.
        let wechat_client = Arc::new(WeChatClient::new(
            &config.wechat.api_base,
            &config.wechat.app_id,
            config.wechat.app_secret.clone(),
            store.clone(),
        ));
        let channel = WeChatChannel::new(wechat_client.clone())
            .with_media_fetcher(crate::wechat::media_fetch::MediaFetcher::new(config.media_fetch_allowlist.clone()));
        let media_links =
            config.public_url.as_deref().map(|url| Arc::new(MediaLinks::new(config.wechat.app_secret.expose(), url)));
        let vonage = VonageWebhook {
            signature_secret: config.vonage.signature_secret.as_ref().map(|s| s.expose().to_string()),
            shared_conversation: config.vonage.conversation_id.clone(),
        };
        let admin = match (&config.admin_token, config.open_admin) {
            (_, true) => AdminAccess::Open,
            (Some(token), false) => AdminAccess::Token(token.clone()),
            (None, false) => AdminAccess::Closed,
        };
        let signals = Signals::default();
        let worker =
            Arc::new(Worker::new(store.clone(), Arc::new(platform), Arc::new(channel), config.relay.clone(), signals.clone()));
        let relay = Relay { store: store.clone(), signals: signals.clone() };
        let adapters = axum::Router::new()
            .merge(crate::wechat::webhook::routes(wechat, relay.clone(), media_links.clone()))
            .merge(crate::wechat::media_link::routes(media_links, store.clone(), wechat_client))
            .merge(crate::vonage::rtc::routes(vonage, relay));
        let listener = TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Self {
            listener,
            state: AppState {
                store,
                admin,
                signals,
                demo: None,
                shutdown: Shutdown::default(),
                // Well inside the idle timeout, and no more often than the usual 15 s.
                stream_keep_alive: (config.http.idle_timeout / 2).min(Duration::from_secs(15)),
            },
            adapters,
            http: config.http.clone(),
            worker,
            mode,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Enables the demo-only console routes (`demo` sets this).
    pub fn set_demo(&mut self, hooks: crate::demo::DemoHooks) {
        self.state.demo = Some(Arc::new(hooks));
    }

    /// The worker, for callers that drive it step by step (`WorkerMode::Manual`).
    pub fn worker(&self) -> Arc<BridgeWorker> {
        self.worker.clone()
    }

    /// Serves until `shutdown` resolves; then stops accepting, ends the live streams, gives
    /// in-flight requests `http::server::SHUTDOWN_GRACE` and drops the rest; the worker stops between jobs.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let worker_task = (self.mode == WorkerMode::Background).then(|| {
            let worker = self.worker.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                worker
                    .run(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            })
        });
        let streams = self.state.shutdown.clone();
        let app = router(self.state, self.adapters);
        tracing::info!(addr = %self.listener.local_addr()?, "wechat-bridge listening");
        let result = crate::http::server::serve(self.listener, app, &self.http, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
            streams.trigger();
        })
        .await;
        if let Some(task) = worker_task {
            let _ = task.await;
        }
        result
    }
}

/// `wechat-bridge setup`: the platform's part (Vonage: point the application's RTC webhook at
/// the bridge), then what to paste into the channel's console, written to `out`.
pub async fn setup(config: &Config, out: &mut impl std::io::Write) -> Result<(), crate::vonage::setup::SetupError> {
    let public = crate::vonage::setup::public_base(config.public_url.as_deref())?;
    crate::vonage::setup::run(&config.vonage, public, out).await?;
    crate::wechat::setup::write_console_values(&config.wechat, public, out)?;
    Ok(())
}
