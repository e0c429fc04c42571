-- The WeChat access_token, one per app id, shared by every instance and kept across restarts
-- (wechat-api.md §5.4.1). Tokens may be up to 512 characters (§5.1). Times are Unix milliseconds.
CREATE TABLE access_tokens (
    app_id TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
