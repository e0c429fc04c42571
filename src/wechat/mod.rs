//! Everything WeChat-specific: signatures (`signature`), safe-mode AES (`crypto`), push XML ⇄
//! typed values (`message`, on the safe reader in `xml`), what a push becomes in the bridge
//! (`inbound`), the API client (`client`) and the relay channel on top of it (`channel`), which
//! downloads agents' media URLs through `media_fetch` under the address policy of `fetch_policy`.

pub mod channel;
pub mod client;
pub mod crypto;
pub mod fetch_policy;
pub mod inbound;
pub mod media_fetch;
pub mod message;
pub mod signature;
pub mod xml;
