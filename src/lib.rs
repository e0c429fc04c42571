//! # wechat-bridge
//!
//! Relays messages two ways between a WeChat Official Account and the Vonage Conversation API,
//! as `custom:wechat:message` events, durably: every message is stored with its outbox job
//! before it is acknowledged, delivered by a worker with retries, and deduplicated both ways.
//!
//! # Layout
//! - `config`: environment (and TOML file) configuration, validated at start.
//! - `demo`: the one-command demo: bridge + simulators + scripted exchange.
//! - `app`: wires store, webhook, platform, worker and router; `Application::build` / `run_until_stopped`.
//! - `wechat`: signatures, AES crypto, push XML ⇄ typed values, conversion into bridge messages.
//! - `vonage`: application JWTs, the Conversation API client, the event body, the platform.
//! - `relay`: the bridge's own message types, accepting messages, the outbox worker.
//! - `store`: SQLite persistence of contacts, messages and jobs.
//! - `http`: the routes.
//! - `sim`: WeChat and Vonage simulators, used by tests, `demo` and `simulate`.
//! - `setup`: points the Vonage application's RTC webhook at the bridge, prints WeChat's console settings.
//! - `simulate`: one simulator served alone (`simulate wechat|vonage`).

pub mod app;
pub mod config;
pub mod demo;
pub mod http;
pub mod relay;
pub mod setup;
pub mod sim;
pub mod simulate;
pub mod store;
pub mod vonage;
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
