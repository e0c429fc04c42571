-- One row, rewritten by every readiness check: a real committed write, so /readyz reports a
-- store that cannot write (full disk, I/O error), not only one that cannot be read.
CREATE TABLE readiness (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at INTEGER NOT NULL
);
-- Plus a scratch table the readiness check writes 16 KB into and rolls back: room to grow.
CREATE TABLE readiness_probe (pad BLOB NOT NULL);

-- Request nonces of signed webhooks seen within the timestamp window, shared by every instance:
-- a replayed (timestamp, nonce) pair is refused. Recorded in the transaction that stores the
-- message, so a push that was not stored can be retried by its sender with the same pair.
CREATE TABLE webhook_nonces (
    source TEXT NOT NULL,
    nonce TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (source, nonce)
);
CREATE INDEX webhook_nonces_by_age ON webhook_nonces (seen_at);
