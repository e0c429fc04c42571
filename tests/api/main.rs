//! Black-box tests: the real application on a random port against the built-in simulators.
//! One test binary (zero-to-production's layout): one link step, fast CI.

mod admin;
mod bench;
mod binary;
mod chatwoot_platform;
mod chatwoot_sim;
mod cli;
mod config;
mod crash;
mod delivery;
mod demo;
mod helpers;
mod instances;
mod media;
mod media_fetch;
mod metrics;
mod outbound;
mod properties;
mod secrets;
mod server;
mod vonage_sim;
mod webhook_platform;
mod wechat_client;
mod wechat_webhook;
