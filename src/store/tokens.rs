//! The WeChat access_token cache: one row per app id, shared through the database so restarts
//! and other instances reuse the token instead of fetching their own (`wechat-api.md` §5.4.1).

use sqlx::Row;

use super::{Store, StoreError, now_ms};

impl Store {
    /// The stored token of `app_id` and when it expires (Unix ms), if any.
    pub async fn access_token(&self, app_id: &str) -> Result<Option<(String, i64)>, StoreError> {
        let row = sqlx::query("SELECT token, expires_at FROM access_tokens WHERE app_id = ?")
            .bind(app_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Stores (or replaces) the token of `app_id`. Last writer wins: a stale token written late
    /// is removed by the first call it fails (compare-and-invalidate, §5.4.4).
    pub async fn save_access_token(&self, app_id: &str, token: &str, expires_at_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO access_tokens (app_id, token, expires_at, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (app_id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at,
                 updated_at = excluded.updated_at",
        )
        .bind(app_id)
        .bind(token)
        .bind(expires_at_ms)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deletes the token of `app_id` only if it is still `token` (§5.4.4): a caller whose call was
    /// rejected must not throw away a newer token another caller already stored. Returns whether
    /// a row was deleted.
    pub async fn invalidate_access_token(&self, app_id: &str, token: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM access_tokens WHERE app_id = ? AND token = ?")
            .bind(app_id)
            .bind(token)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
