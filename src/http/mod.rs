//! The HTTP surface: WeChat's webhook and Vonage's RTC webhook (and the reference integration's
//! `/weChatEvent` and `/rtcEvent` aliases), health checks. `router` builds it all from `AppState`, so tests can serve it on any port.
//! `server` serves it, with the timeouts and connection cap a public endpoint needs.

pub mod admin;
pub mod console;
pub mod fd_limit;
pub mod media;
pub mod security_headers;
pub mod server;
pub mod shutdown;
pub mod stream_ticket;
pub mod vonage;
pub mod wechat;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

use crate::store::Store;
use wechat::WeChatWebhook;

/// Bodies over 1 MiB are refused with 413 (DESIGN.md "Statuses"); WeChat's are a few KiB.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Shared by all handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub wechat: Arc<WeChatWebhook>,
    pub vonage: Arc<vonage::VonageWebhook>,
    /// Signs media links; present when BRIDGE_PUBLIC_URL is set.
    pub media_links: Option<Arc<media::MediaLinks>>,
    pub wechat_client: Arc<crate::wechat::client::WeChatClient>,
    pub admin: admin::AdminAccess,
    /// Wakes the outbox worker and feeds the console's live stream.
    pub signals: crate::relay::Signals,
    /// The simulators, when running as `demo`.
    pub demo: Option<Arc<console::DemoHooks>>,
    /// Fired when the process shuts down: the live stream ends so the server can drain.
    pub shutdown: shutdown::Shutdown,
    /// How often the live stream sends a comment when nothing happens: more often than the idle
    /// timeout, or an open console would be cut off as idle.
    pub stream_keep_alive: Duration,
}

/// All routes.
pub fn router(state: AppState) -> Router {
    let wechat_routes = get(wechat::verify_wechat_url).post(wechat::receive_wechat_push);
    let api = Router::new()
        .route("/conversations", get(admin::list_conversations))
        .route("/messages", get(admin::list_messages))
        .route("/messages/{id}", get(admin::get_message))
        .route("/messages/{id}/retry", post(admin::retry_message))
        .route("/health", get(admin::health))
        .route("/stream-ticket", post(admin::issue_stream_ticket))
        .route("/demo/wechat", post(console::demo_wechat))
        .route("/demo/agent", post(console::demo_agent))
        .route("/demo/close-window", post(console::demo_close_window))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), admin::require_admin))
        // The one route a browser opens with EventSource, which cannot send a header: it alone
        // also takes a ticket (or the token) from the query string.
        .merge(
            Router::new()
                .route("/stream", get(admin::stream))
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), admin::require_admin_for_stream)),
        );
    Router::new()
        .nest("/api", api)
        .route("/api/session", get(console::session))
        .route("/", get(console::index))
        .route("/app.js", get(console::app_js))
        .route("/style.css", get(console::style_css))
        .route("/webhooks/wechat", wechat_routes.clone())
        .route("/weChatEvent", wechat_routes)
        .route("/webhooks/vonage/rtc", post(vonage::receive_rtc_event))
        .route("/rtcEvent", post(vonage::receive_rtc_event))
        .route("/media/{media_id}", get(media::serve_media))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // WeChat gives up after 5 s; nothing we do should take longer than this.
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(4)))
        // Outermost, so errors, 404s and timeouts carry the headers too.
        .layer(axum::middleware::map_response(security_headers::add_security_headers))
        .with_state(state)
}

/// Ready when the database answers.
async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
