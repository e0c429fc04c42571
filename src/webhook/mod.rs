//! `webhook` as a platform adapter: any app, over HTTP. Out of the bridge, every customer
//! message and every outbound outcome as a Standard Webhooks POST (`event` the wire format,
//! `client` the signed delivery); into the bridge, the REST API `/api/v1` with its OpenAPI
//! document (`api`); `receiver`, a verifying receiver standing in for the app (demo, tests).

pub mod api;
pub mod client;
pub mod event;
pub mod receiver;

use std::sync::Arc;

use axum::Router;
use base64::Engine as _;
use futures_util::future::BoxFuture;

use crate::config::WebhookConfig;
use crate::relay::ids::BridgeMessageId;
use crate::relay::message::{Contact, InboundMessage, StatusReport};
use crate::relay::{Channel, DeliveryError, Platform, Relay};
use client::WebhookClient;

/// The platform's name in the store (message sources) and the admin API.
pub const PLATFORM: &str = "webhook";

/// Decodes a Standard Webhooks secret (`whsec_` + padded standard base64 of 24–64 bytes) into
/// the HMAC key. The error names what is wrong, never the secret.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").ok_or("must start with whsec_")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "whsec_ must be followed by standard, padded base64".to_string())?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!("decodes to {} bytes; 24 to 64 random bytes are required", key.len()));
    }
    Ok(key)
}

/// The webhook platform as `app` wires it: the platform the worker delivers to, and `/api/v1`
/// (apps' messages for `channel_name`'s contacts, checked against `channel`'s reply window).
pub fn adapter<S: Clone + Send + Sync + 'static>(
    config: &WebhookConfig,
    relay: Relay,
    channel: Arc<dyn Channel>,
    channel_name: &'static str,
) -> anyhow::Result<(Arc<dyn Platform>, Router<S>)> {
    let client =
        WebhookClient::new(&config.url, config.secret.expose(), relay.signals.metrics().clone()).map_err(anyhow::Error::msg)?;
    let platform = WebhookPlatform { client, channel: channel_name };
    let api = api::MessagesApi::new(relay, channel, channel_name, config.api_token.clone());
    Ok((Arc::new(platform), api::routes(api)))
}

/// The relay's platform: one signed POST per event to the app's URL.
#[derive(Debug)]
pub struct WebhookPlatform {
    client: WebhookClient,
    /// The channel's name, as events carry it.
    channel: &'static str,
}

impl Platform for WebhookPlatform {
    fn name(&self) -> &'static str {
        PLATFORM
    }

    /// The app knows contacts by their channel id: nothing to link.
    fn link_kinds(&self) -> &'static [&'static str] {
        &[]
    }

    fn deliver_inbound<'a>(
        &'a self,
        contact: &'a Contact,
        msg: &'a InboundMessage,
        bridge_message_id: &'a BridgeMessageId,
        _attempt: u32,
    ) -> BoxFuture<'a, Result<String, DeliveryError>> {
        Box::pin(self.post(event::received_id(bridge_message_id), event::received(self.channel, contact, msg, bridge_message_id)))
    }

    fn report_status<'a>(
        &'a self,
        _contact: &'a Contact,
        _conversation_id: &'a str,
        report: &'a StatusReport,
    ) -> BoxFuture<'a, Result<String, DeliveryError>> {
        Box::pin(self.post(event::status_id(&report.bridge_message_id, report.report_seq), event::status(report)))
    }
}

impl WebhookPlatform {
    /// Delivers the event `id`; its id is the platform's event id.
    async fn post(&self, id: String, body: Vec<u8>) -> Result<String, DeliveryError> {
        self.client.send(&id, &body).await?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_must_be_whsec_and_padded_base64_of_24_to_64_bytes() {
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        assert_eq!(signing_key(&format!("whsec_{}", b64(24))).unwrap().len(), 24);
        assert_eq!(signing_key(&format!("whsec_{}", b64(64))).unwrap().len(), 64);
        assert!(signing_key(&b64(32)).unwrap_err().contains("whsec_"));
        assert!(signing_key(&format!("whsec_{}", b64(23))).unwrap_err().contains("23 bytes"));
        assert!(signing_key(&format!("whsec_{}", b64(65))).is_err());
        assert!(signing_key("whsec_").is_err(), "an empty secret signs nothing");
        assert!(signing_key(&format!("whsec_{}", b64(32).trim_end_matches('='))).is_err(), "unpadded base64");
        assert!(signing_key("whsec_not base64!").is_err());
    }
}
