-- Contacts: one customer on the channel (WeChat OpenID) and, once created, their platform
-- (Vonage) user, conversation and member. Unique per channel id: a restart or a second worker
-- never creates a second user or conversation for a known OpenID.
CREATE TABLE contacts (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    account TEXT NOT NULL,
    platform_user_id TEXT,
    platform_conversation_id TEXT,
    platform_member_id TEXT,
    created_at INTEGER NOT NULL,
    last_inbound_at INTEGER,
    UNIQUE (channel, channel_id)
);
CREATE INDEX contacts_by_conversation ON contacts (platform_conversation_id);

-- Messages both ways. (source, external_id) is the dedup key: the WeChat MsgId (or
-- FromUserName+CreateTime+Event), or the Vonage event id. Times are Unix milliseconds.
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    contact_id INTEGER NOT NULL REFERENCES contacts (id),
    direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    msg_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('stored', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    platform_event_id TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER,
    UNIQUE (source, external_id)
);
CREATE INDEX messages_by_contact ON messages (contact_id, created_at);
CREATE INDEX messages_by_status ON messages (status, created_at);

-- The outbox. A job is due when state is pending and due_at has passed, or when it is running
-- and its lease (due_at) has expired: its worker died. Jobs of one contact and lane run in id
-- order; claim_token makes a late finish by a worker that lost its lease a no-op.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages (id),
    contact_id INTEGER NOT NULL REFERENCES contacts (id),
    lane TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at INTEGER NOT NULL,
    claim_token TEXT,
    last_error TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX jobs_active_due ON jobs (due_at) WHERE state IN ('pending', 'running');
CREATE INDEX jobs_active_by_contact ON jobs (contact_id, lane, id) WHERE state IN ('pending', 'running');
CREATE INDEX jobs_by_message ON jobs (message_id);
