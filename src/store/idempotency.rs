//! `Idempotency-Key`s (draft-ietf-httpapi-idempotency-key-header): the answer a request that
//! stored a message got, kept with a fingerprint of the request. Recorded in the transaction that
//! stores the message (`NewMessage::idempotency`), so a crash never keeps one without the other.

/// How long a key is remembered (published in the API's documentation).
pub const RETAIN_MS: i64 = 24 * 60 * 60 * 1000;

/// A request's key, as `Store::accept` records it next to the message it stored.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyKey<'a> {
    /// Whose key it is (the API and its client): keys of different scopes never collide.
    pub scope: &'a str,
    pub key: &'a str,
    /// The request's fingerprint (hex SHA-256 of its body).
    pub body_hash: &'a str,
    pub response_status: u16,
    /// The answer's body, given the stored message's id.
    pub response_body: fn(&str) -> String,
}

/// The first answer to a key, replayed to a repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub body_hash: String,
    pub status: u16,
    pub body: String,
}
