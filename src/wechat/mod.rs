//! Everything WeChat-specific: signatures (`signature`), safe-mode AES (`crypto`), push XML ⇄
//! typed values (`message`), and what a push becomes in the bridge (`inbound`).

pub mod channel;
pub mod client;
pub mod crypto;
pub mod inbound;
pub mod message;
pub mod signature;
