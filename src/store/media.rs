//! The inbound media cache.

use sqlx::Row;

use super::{Store, StoreError, now_ms};

impl Store {
    /// Cached media: content type and bytes.
    pub async fn cached_media(&self, media_id: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let row = sqlx::query("SELECT content_type, bytes FROM media_cache WHERE media_id = ?")
            .bind(media_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub async fn cache_media(&self, media_id: &str, content_type: &str, bytes: &[u8]) -> Result<(), StoreError> {
        sqlx::query("INSERT OR REPLACE INTO media_cache (media_id, content_type, bytes, fetched_at) VALUES (?, ?, ?, ?)")
            .bind(media_id)
            .bind(content_type)
            .bind(bytes)
            .bind(now_ms())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
