//! WeChat as a channel adapter, everything WeChat-specific: signatures (`signature`), safe-mode
//! AES (`crypto`), push XML ⇄ typed values (`message`, on the safe reader in `xml`), what a push
//! becomes in the bridge (`inbound`), the webhook that verifies, decrypts, parses and accepts
//! pushes (`webhook`), signed media links for agents (`media_link`), the API client (`client`) and
//! the relay channel on top of it (`channel`), which downloads agents' media URLs through
//! `media_fetch` under the address policy of `fetch_policy`; `setup`'s console values and the
//! simulator (`sim`).

pub mod channel;
pub mod client;
pub mod crypto;
pub mod fetch_policy;
pub mod inbound;
pub mod media_fetch;
pub mod media_link;
pub mod message;
pub mod setup;
pub mod signature;
pub mod sim;
pub mod webhook;
pub mod xml;
