//! The HTTP surface: `router` mounts the routes each adapter brings (its webhooks, under their
//! own state) next to the core's own: admin API, console, health checks, `/metrics`; so tests can
//! serve it on any port. `server` serves it, with the timeouts and connection cap a public endpoint needs.

pub mod admin;
pub mod console;
pub mod fd_limit;
pub mod security_headers;
pub mod server;
pub mod shutdown;
pub mod stream_ticket;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

use crate::metrics::{Metrics, Rejection};
use crate::store::Store;

/// Bodies over 1 MiB are refused with 413 (DESIGN.md "Statuses"); WeChat's are a few KiB.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Shared by all handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub admin: admin::AdminAccess,
    /// The platform's name and the kinds of id it links to contacts, as the admin API lists them.
    pub platform_links: admin::PlatformLinks,
    /// Wakes the outbox worker and feeds the console's live stream.
    pub signals: crate::relay::Signals,
    /// The simulators, when running as `demo`.
    pub demo: Option<Arc<crate::demo::DemoHooks>>,
    /// Fired when the process shuts down: the live stream ends so the server can drain.
    pub shutdown: shutdown::Shutdown,
    /// How often the live stream sends a comment when nothing happens: more often than the idle
    /// timeout, or an open console would be cut off as idle.
    pub stream_keep_alive: Duration,
}

/// All routes: the core's, and `adapters`, the routes the channel and the platform bring.
pub fn router(state: AppState, adapters: Router<AppState>) -> Router {
    let api = Router::new()
        .route("/conversations", get(admin::list_conversations))
        .route("/messages", get(admin::list_messages))
        .route("/messages/{id}", get(admin::get_message))
        .route("/messages/{id}/retry", post(admin::retry_message))
        .route("/health", get(admin::health))
        .route("/stream-ticket", post(admin::issue_stream_ticket))
        .merge(crate::demo::routes())
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
        .merge(adapters)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(render_metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // The channel's sender gives up after 5 s (WeChat); nothing we do should take longer than this.
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(4)))
        // So errors, 404s and timeouts carry the headers too.
        .layer(axum::middleware::map_response(security_headers::add_security_headers))
        // Outermost: every answer is counted, timeouts and unmatched paths included.
        .layer(axum::middleware::from_fn_with_state(state.signals.metrics().clone(), count_requests))
        .with_state(state)
}

/// Counts each request by its matched path (`unmatched` when no route matched: a raw path
/// would let anyone add label values) and status, and times it.
async fn count_requests(State(metrics): State<Metrics>, matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str).to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.http_request(&route, response.status(), started.elapsed(), response.extensions().get::<Rejection>());
    response
}

/// `GET /metrics`: Prometheus text, the outbox read fresh. No token (DESIGN.md "Metrics"):
/// restrict it by network.
async fn render_metrics(State(state): State<AppState>) -> Response {
    let metrics = state.signals.metrics();
    let now = crate::store::now_ms();
    match state.store.outbox_stats(now).await {
        Ok(stats) => metrics.set_outbox(&stats, now),
        Err(e) => tracing::warn!(error = %e, "cannot read the outbox for /metrics; its gauges are stale"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render()).into_response()
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
