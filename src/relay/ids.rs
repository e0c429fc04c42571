//! Ids that cross module boundaries, as types: a message id cannot be passed where a contact id
//! or a platform's event id is expected. Each stores and serializes as its inner value, so the
//! database and the JSON of the admin API are unchanged.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The bridge's own id of a message, either way (a UUIDv7: time-ordered).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct BridgeMessageId(String);

impl BridgeMessageId {
    /// A fresh id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// An id received from outside (a URL path, a stored job); it is only ever looked up.
    pub fn from_raw(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the id was generated (Unix milliseconds): the time its message was stored. `None`
    /// for an id that is not a UUIDv7.
    pub fn created_at_ms(&self) -> Option<i64> {
        let (secs, nanos) = uuid::Uuid::parse_str(&self.0).ok()?.get_timestamp()?.to_unix();
        Some(secs as i64 * 1000 + i64::from(nanos / 1_000_000))
    }
}

/// The store's id of a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct ContactId(pub i64);

/// A remote side's code for why a message failed (WeChat's errcode such as `45015`, a Vonage
/// error code, an HTTP status). Open-ended: each side has its own, so it is kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct ErrorCode(String);

impl ErrorCode {
    pub fn new(code: impl Into<String>) -> Self {
        Self(code.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}
display_inner!(BridgeMessageId, ContactId, ErrorCode);

/// Read as text wherever text is wanted (JSON bodies, logs); built only through the
/// constructors above, so a plain string is never taken for an id by accident.
macro_rules! deref_str {
    ($($t:ty),*) => {$(
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
    )*};
}
deref_str!(BridgeMessageId, ErrorCode);

impl From<&str> for ErrorCode {
    fn from(code: &str) -> Self {
        Self(code.to_string())
    }
}

impl PartialEq<&str> for BridgeMessageId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}
