//! Wiring: the store, the channel (WeChat), the platform `BRIDGE_PLATFORM` names (Vonage), the
//! outbox worker and the router, built from a `Config`. `Application::build` binds the listener (port 0 works: tests use it);
//! `run_until_stopped` serves until the shutdown future resolves, then stops the worker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use tokio::net::TcpListener;

use crate::config::{Config, HttpConfig, PlatformConfig};
use crate::http::admin::{AdminAccess, PlatformLinks};
use crate::http::shutdown::Shutdown;
use crate::http::{AppState, router};
use crate::metrics::Metrics;
use crate::relay::worker::Worker;
use crate::relay::{Relay, Signals};
use crate::store::Store;

/// How often recorded histogram samples are folded into their buckets between scrapes.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

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
    worker: Arc<Worker>,
    mode: WorkerMode,
    http: HttpConfig,
    /// The platform's own background work (`Platform::background`), run while serving.
    background: Option<BoxFuture<'static, ()>>,
}

impl Application {
    /// Opens and migrates the database, builds the clients and binds `config.listen`.
    pub async fn build(config: Config, mode: WorkerMode) -> anyhow::Result<Self> {
        let database = crate::store::redacted_url(&config.database_url);
        let store = Store::connect(&config.database_url).await.with_context(|| format!("cannot open the database {database}"))?;
        store.migrate().await.context("cannot migrate the database")?;
        tracing::info!(%database, engine = store.engine_name(), "database ready");
        let admin = match (&config.admin_token, config.open_admin) {
            (_, true) => AdminAccess::Open,
            (Some(token), false) => AdminAccess::Token(token.clone()),
            (None, false) => AdminAccess::Closed,
        };
        let channel_name = crate::wechat::webhook::CHANNEL;
        let platform_name = match &config.platform {
            PlatformConfig::Vonage(_) => crate::vonage::PLATFORM,
            PlatformConfig::Webhook(_) => crate::webhook::PLATFORM,
            PlatformConfig::Chatwoot(_) => crate::chatwoot::PLATFORM,
        };
        // This application's own registry, shared through the signals (`metrics` says why).
        let signals = Signals::new(Metrics::new(channel_name, platform_name));
        let relay = Relay { store: store.clone(), signals: signals.clone() };
        // The channel (where customers are) and the platform (where agents are), each with the
        // routes of its webhooks. A new platform is one more line here.
        let (channel, channel_routes) = crate::wechat::adapter(
            &config.wechat,
            config.public_url.as_deref(),
            config.media_fetch_allowlist.clone(),
            relay.clone(),
        )?;
        let (platform, platform_routes) = match &config.platform {
            PlatformConfig::Vonage(vonage) => crate::vonage::adapter(vonage, relay, channel_name)?,
            PlatformConfig::Webhook(webhook) => crate::webhook::adapter(webhook, relay, channel.clone(), channel_name)?,
            PlatformConfig::Chatwoot(chatwoot) => {
                crate::chatwoot::adapter(chatwoot, relay, channel.clone(), channel_name, &config.wechat.app_id)?
            }
        };
        debug_assert_eq!(platform.name(), platform_name, "the metrics name the platform that runs");
        let platform_links = PlatformLinks { platform: platform.name(), kinds: platform.link_kinds() };
        let adapters = axum::Router::new().merge(channel_routes).merge(platform_routes);
        let background = platform.clone().background();
        let worker = Arc::new(Worker::new(store.clone(), platform, channel, config.relay.clone(), signals.clone()));
        let listener = TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Self {
            listener,
            state: AppState {
                store,
                admin,
                platform_links,
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
            background,
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
    pub fn worker(&self) -> Arc<Worker> {
        self.worker.clone()
    }

    /// Serves until `shutdown` resolves; then stops accepting, ends the live streams, gives
    /// in-flight requests `http::server::SHUTDOWN_GRACE` and drops the rest; the worker lets running jobs
    /// finish for `shutdown_grace`, then releases the rest.
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
        let background = self.background.map(|work| {
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = work => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            })
        });
        let upkeep = {
            let metrics = self.state.signals.metrics().clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(METRICS_UPKEEP);
                loop {
                    tokio::select! {
                        _ = every.tick() => metrics.run_upkeep(),
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            })
        };
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
        if let Some(task) = background {
            let _ = task.await;
        }
        let _ = upkeep.await;
        result
    }
}

/// Why `setup` could not finish: the platform's part failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Vonage(#[from] crate::vonage::setup::SetupError),
    #[error(transparent)]
    Chatwoot(#[from] crate::chatwoot::setup::SetupError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// `wechat-bridge setup`: the platform's part (Vonage: point the application's RTC webhook at
/// the bridge; Chatwoot: the inbox's webhook and reply window), then what to paste into the
/// channel's console, written to `out`.
pub async fn setup(config: &Config, out: &mut impl std::io::Write) -> Result<(), SetupError> {
    let public = crate::vonage::setup::public_base(config.public_url.as_deref())?;
    match &config.platform {
        PlatformConfig::Vonage(vonage) => crate::vonage::setup::run(vonage, public, out).await?,
        // The app's URL is in PLATFORM_WEBHOOK_URL already: nothing to set on its side.
        PlatformConfig::Webhook(_) => {}
        PlatformConfig::Chatwoot(chatwoot) => crate::chatwoot::setup::run(chatwoot, public, out).await?,
    }
    crate::wechat::setup::write_console_values(&config.wechat, public, out)?;
    Ok(())
}
