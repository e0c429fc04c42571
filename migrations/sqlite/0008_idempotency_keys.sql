-- `Idempotency-Key`s of requests that stored a message (the `webhook` platform's REST API), with
-- a fingerprint of the request and the answer it got, so a repeat is answered the same way and
-- sends nothing twice. Written in the transaction that stores the message; pruned after 24 h.
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    response_status INTEGER NOT NULL,
    response_body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
