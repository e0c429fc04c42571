//! # wechat-bridge
//!
//! Relays messages two ways between a WeChat Official Account and the Vonage Conversation API,
//! as `custom:wechat:message` events, durably: every message is stored with its outbox job
//! before it is acknowledged, delivered by a worker with retries, and deduplicated both ways.
//!
//! # Layout
//! - `config`: environment (and TOML file) configuration, validated at start.
//! - `app`: wiring: picks the channel and the platform, mounts their routes, starts the worker;
//!   `Application::build` / `run_until_stopped`; `setup`.
//! - `relay`: the core: the bridge's own message types, the `Channel`/`Platform` traits,
//!   accepting messages, the outbox worker.
//! - `store`: SQLite persistence of contacts (and their platform links), messages and jobs.
//! - `http`: the router that mounts each adapter's routes, the admin API, the console, the server.
//! - `metrics`: the Prometheus families `GET /metrics` renders, one registry per application.
//! - `wechat`: the channel adapter: webhook (verify, decrypt, parse), media links, client, sim.
//! - `vonage`: a platform adapter: JWTs, client, event body, RTC webhook, setup, sim.
//! - `webhook`: a platform adapter: signed Standard Webhooks out, `/api/v1` in, OpenAPI, receiver.
//! - `demo`: the one-command demo: bridge + simulators + scripted exchange, console hooks.
//! - `simulate`: one simulator served alone (`simulate wechat|vonage`).
//! - `bench`: the load benchmark (`bench`): the bridge as a child process against fast fakes.

pub mod app;
pub mod bench;
pub mod chatwoot;
pub mod config;
pub mod demo;
pub mod http;
pub mod metrics;
pub mod relay;
pub mod simulate;
pub mod store;
pub mod vonage;
pub mod webhook;
pub mod wechat;

/// Percent-encodes `s` for a URL path segment or query value (RFC 3986 unreserved kept).
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A reqwest error as text without its URL (WeChat's carry the access_token), with its causes.
pub(crate) fn transport_error_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Why a capped body read stopped: the caller maps each case onto its own error type.
#[derive(Debug)]
pub(crate) enum CappedReadError {
    /// Not a 2xx answer (the body is not read).
    Status(u16),
    /// More than the cap, announced by Content-Length or found while reading.
    TooLarge,
    /// The connection failed while reading.
    Read(reqwest::Error),
}

/// Checks the status, then reads at most `max` bytes: the content type and the body. Never
/// buffers more than `max`, whatever the remote side announces or sends.
pub(crate) async fn read_capped(mut response: reqwest::Response, max: usize) -> Result<(String, Vec<u8>), CappedReadError> {
    let status = response.status();
    if !status.is_success() {
        return Err(CappedReadError::Status(status.as_u16()));
    }
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(CappedReadError::TooLarge);
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(CappedReadError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(CappedReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok((content_type, body))
}
