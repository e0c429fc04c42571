//! The WeChat access_token cache: one row per app id, shared through the database so restarts
//! and other instances reuse the token instead of fetching their own (`wechat-api.md` §5.4.1).

use super::super::{Engine, Row, query};
use crate::store::{StoreError, now_ms};

impl Engine {
    pub(in crate::store) async fn access_token(&self, app_id: &str) -> Result<Option<(String, i64)>, StoreError> {
        let row = query("SELECT token, expires_at FROM access_tokens WHERE app_id = $1")
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub(in crate::store) async fn save_access_token(
        &self,
        app_id: &str,
        token: &str,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        query(
            "INSERT INTO access_tokens (app_id, token, expires_at, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (app_id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at,
                 updated_at = excluded.updated_at",
        )
        .bind(app_id)
        .bind(token)
        .bind(expires_at_ms)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(in crate::store) async fn invalidate_access_token(&self, app_id: &str, token: &str) -> Result<bool, StoreError> {
        let done = query("DELETE FROM access_tokens WHERE app_id = $1 AND token = $2")
            .bind(app_id)
            .bind(token)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
