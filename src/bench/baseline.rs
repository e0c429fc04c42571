//! The baseline the bridge is compared with: the same binary, runtime and accept loop
//! (`http::server::serve` with the bridge's default limits), answering the same requests with
//! the same answers, but checking, decrypting and storing nothing. The gap between the two is
//! the bridge's own work.

use std::future::Future;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::config::HttpConfig;

/// The routes: a push answers `success`, an API message `202`, readiness `ok`.
pub fn router() -> Router {
    Router::new()
        .route(
            "/webhooks/wechat",
            post(|_body: Bytes| async { ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "success") }),
        )
        .route(
            "/api/v1/messages",
            post(|_body: Bytes| async {
                (
                    StatusCode::ACCEPTED,
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"id":"00000000-0000-7000-8000-000000000000","status":"stored"}"#,
                )
                    .into_response()
            }),
        )
        .route("/readyz", get(|| async { "ok" }))
        .route("/healthz", get(|| async { "ok" }))
}

/// `wechat-bridge bench-baseline --listen ADDR`: serves until `shutdown`.
pub async fn serve(listen: &str, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    crate::http::server::serve(listener, router(), &HttpConfig::default(), shutdown).await.context("baseline server failed")
}
