//! `Idempotency-Key`s (see `store/idempotency.rs`).

use super::super::{Conn, Engine, Row, query};
use crate::store::idempotency::RETAIN_MS;
use crate::store::{IdempotencyKey, StoreError, StoredResponse, now_ms};

/// Records `key` with the answer for message `message_id`, dropping keys past their retention.
/// Fails with [`StoreError::KeyTaken`] when another request recorded the key first (two
/// instances racing): the caller's transaction is then rolled back and nothing is stored.
pub(super) async fn record(
    tx: &mut Conn,
    key: &IdempotencyKey<'_>,
    message_id: &str,
    now: i64,
    prune: bool,
) -> Result<(), StoreError> {
    if prune {
        query("DELETE FROM idempotency_keys WHERE created_at < $1").bind(now - RETAIN_MS).execute(&mut *tx).await?;
    }
    // A key past its retention that was not pruned yet is taken over.
    let taken = query(
        "INSERT INTO idempotency_keys (scope, key, body_hash, response_status, response_body, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (scope, key) DO UPDATE SET body_hash = excluded.body_hash, response_status = excluded.response_status,
             response_body = excluded.response_body, created_at = excluded.created_at
         WHERE idempotency_keys.created_at < $7",
    )
    .bind(key.scope)
    .bind(key.key)
    .bind(key.body_hash)
    .bind(i64::from(key.response_status))
    .bind((key.response_body)(message_id))
    .bind(now)
    .bind(now - RETAIN_MS)
    .execute(&mut *tx)
    .await?;
    if taken.rows_affected() == 0 {
        return Err(StoreError::KeyTaken);
    }
    Ok(())
}

impl Engine {
    pub(in crate::store) async fn idempotent_response(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        let row = query(
            "SELECT body_hash, response_status, response_body FROM idempotency_keys
             WHERE scope = $1 AND key = $2 AND created_at >= $3",
        )
        .bind(scope)
        .bind(key)
        .bind(now_ms() - RETAIN_MS)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| StoredResponse { body_hash: r.get(0), status: r.get::<i64, _>(1) as u16, body: r.get(2) }))
    }
}
