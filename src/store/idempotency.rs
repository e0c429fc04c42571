//! `Idempotency-Key`s (draft-ietf-httpapi-idempotency-key-header): the answer a request that
//! stored a message got, kept with a fingerprint of the request. Recorded in the transaction that
//! stores the message (`NewMessage::idempotency`), so a crash never keeps one without the other.

use sqlx::Row;

use super::{Store, StoreError, now_ms};

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

/// Records `key` with the answer for message `message_id`, dropping keys past their retention.
/// Fails with [`StoreError::KeyTaken`] when another request recorded the key first (two
/// instances racing): the caller's transaction is then rolled back and nothing is stored.
pub(super) async fn record(
    tx: &mut sqlx::SqliteConnection,
    key: &IdempotencyKey<'_>,
    message_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?").bind(now - RETAIN_MS).execute(&mut *tx).await?;
    let taken = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, body_hash, response_status, response_body, created_at)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(key.scope)
    .bind(key.key)
    .bind(key.body_hash)
    .bind(key.response_status as i64)
    .bind((key.response_body)(message_id))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if taken.rows_affected() == 0 {
        return Err(StoreError::KeyTaken);
    }
    Ok(())
}

impl Store {
    /// The first answer given to `key` in `scope`, unless it is older than the retention.
    pub async fn idempotent_response(&self, scope: &str, key: &str) -> Result<Option<StoredResponse>, StoreError> {
        let row = sqlx::query(
            "SELECT body_hash, response_status, response_body FROM idempotency_keys
             WHERE scope = ? AND key = ? AND created_at >= ?",
        )
        .bind(scope)
        .bind(key)
        .bind(now_ms() - RETAIN_MS)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| StoredResponse { body_hash: r.get(0), status: r.get::<i64, _>(1) as u16, body: r.get(2) }))
    }
}
