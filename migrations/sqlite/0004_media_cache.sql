-- Inbound media fetched from WeChat's media/get, kept so agents' clients can load it again
-- without spending WeChat's download quota (and after WeChat's 3-day retention).
CREATE TABLE media_cache (
    media_id TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    bytes BLOB NOT NULL,
    fetched_at INTEGER NOT NULL
);
