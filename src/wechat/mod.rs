//! WeChat as a channel adapter, everything WeChat-specific: signatures (`signature`), safe-mode
//! AES (`crypto`), push XML ⇄ typed values (`message`, on the safe reader in `xml`), what a push
//! becomes in the bridge (`inbound`), the webhook that verifies, decrypts, parses and accepts
//! pushes (`webhook`), signed media links for agents (`media_link`), the API client (`client`) and
//! the relay channel on top of it (`channel`), which downloads agents' media URLs through
//! `media_fetch` under the address policy of `fetch_policy`; customers' ids (`openid`);
//! `setup`'s console values and the simulator (`sim`).

pub mod channel;
pub mod client;
pub mod crypto;
pub mod fetch_policy;
pub mod inbound;
pub mod media_fetch;
pub mod media_link;
pub mod message;
pub mod openid;
pub mod setup;
pub mod signature;
pub mod sim;
pub mod webhook;
pub mod xml;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;

use crate::config::WeChatConfig;
use crate::relay::{Channel, Relay};
use crate::wechat::fetch_policy::FetchAllowlist;

/// WeChat as `app` wires it: the channel the worker sends agents' replies through, and its
/// routes (the push webhook, signed media links when `public_url` is set). One API client
/// serves both: its token single-flight is per client.
pub fn adapter<S: Clone + Send + Sync + 'static>(
    config: &WeChatConfig,
    public_url: Option<&str>,
    media_fetch_allowlist: FetchAllowlist,
    relay: Relay,
) -> anyhow::Result<(Arc<dyn Channel>, Router<S>)> {
    let crypto = match &config.encoding_aes_key {
        Some(key) => Some(crypto::MessageCrypto::new(key.expose(), &config.app_id).context("WECHAT_ENCODING_AES_KEY")?),
        None => None,
    };
    let hook = webhook::WeChatWebhook {
        token: config.token.expose().to_string(),
        crypto,
        max_timestamp_skew_secs: config.max_timestamp_skew_secs,
        allow_plaintext: config.allow_plaintext,
        window_quota: config.window_quota,
    };
    let client = Arc::new(
        client::WeChatClient::new(&config.api_base, &config.app_id, config.app_secret.clone(), relay.store.clone())
            .with_metrics(relay.signals.metrics().clone()),
    );
    let channel = channel::WeChatChannel::new(client.clone(), media_fetch::MediaFetcher::new(media_fetch_allowlist));
    let media_links = public_url.map(|url| Arc::new(media_link::MediaLinks::new(config.app_secret.expose(), url)));
    let routes = Router::new().merge(webhook::routes(hook, relay.clone(), media_links.clone())).merge(media_link::routes(
        media_links,
        relay.store,
        client,
    ));
    Ok((Arc::new(channel), routes))
}
