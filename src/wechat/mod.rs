//! Everything WeChat-specific: signatures (`signature`), safe-mode AES (`crypto`), push XML ⇄
//! typed values (`message`, on the safe reader in `xml`), what a push becomes in the bridge
//! (`inbound`), the API client (`client`) and the relay channel on top of it (`channel`).

pub mod channel;
pub mod client;
pub mod crypto;
pub mod inbound;
pub mod message;
pub mod signature;
pub mod xml;
