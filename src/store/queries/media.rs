//! The inbound media cache.

use super::super::{Engine, Row, query};
use crate::store::{StoreError, now_ms};

impl Engine {
    pub(in crate::store) async fn cached_media(&self, media_id: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let row = query("SELECT content_type, bytes FROM media_cache WHERE media_id = $1")
            .bind(media_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub(in crate::store) async fn cache_media(&self, media_id: &str, content_type: &str, bytes: &[u8]) -> Result<(), StoreError> {
        query(
            "INSERT INTO media_cache (media_id, content_type, bytes, fetched_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (media_id) DO UPDATE SET content_type = excluded.content_type, bytes = excluded.bytes,
                 fetched_at = excluded.fetched_at",
        )
        .bind(media_id)
        .bind(content_type)
        .bind(bytes)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
