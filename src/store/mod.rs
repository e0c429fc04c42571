//! Persistence: contacts, messages and the outbox, in embedded SQLite (WAL, `synchronous=FULL`).
//!
//! The accept path writes contact, message and job in ONE transaction before the webhook answers
//! (DESIGN.md "Flow and guarantees" 1); workers claim jobs with a lease (3). All times are Unix ms.

mod admin;
mod idempotency;
mod jobs;
mod media;
mod outbox_stats;
mod tokens;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::relay::ids::{BridgeMessageId, ContactId, ErrorCode};
use crate::relay::message::{Contact, Direction, MessageStatus};

pub use admin::{ConversationSummary, HealthFigures, MessageFilter};
pub use idempotency::{IdempotencyKey, StoredResponse};
pub use jobs::{ClaimedJob, JobKind, Lane};
pub use outbox_stats::OutboxStats;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(String),
    /// The request's nonce was used before within its window: a replay, not a retry.
    #[error("request nonce was used before")]
    Replay,
    /// Another request recorded this idempotency key first; nothing was stored.
    #[error("idempotency key was recorded by another request")]
    KeyTaken,
    /// The transaction this write was committed in failed (a group commit, `writer`).
    #[error("database error: {0}")]
    Commit(String),
}

/// The result of accepting a message from one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored with its outbox job; the id is the bridge message id.
    New(BridgeMessageId),
    /// Seen before (a retry or redelivery): nothing changed.
    Duplicate(BridgeMessageId),
}

/// A new message as the webhook hands it to the store.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub channel: &'a str,
    pub channel_id: &'a str,
    pub account: &'a str,
    pub direction: Direction,
    pub source: &'a str,
    pub external_id: &'a str,
    pub msg_type: &'a str,
    pub payload: &'a str,
    pub kind: JobKind,
    /// What this message does to the contact's reply window.
    pub window: WindowChange,
    /// The signed request's nonce, refused if seen before (a replay).
    pub nonce: Option<RequestNonce<'a>>,
    /// The request's `Idempotency-Key` and its answer, recorded with the message.
    pub idempotency: Option<IdempotencyKey<'a>>,
}

/// A signed request's one-time value (WeChat: `timestamp:nonce`), kept while a replay of the
/// request could still pass the signature and timestamp checks.
#[derive(Debug, Clone, Copy)]
pub struct RequestNonce<'a> {
    pub value: &'a str,
    pub retain_ms: i64,
}

/// How an inbound message changes the contact's reply window (the channel decides; the store
/// records it in the accepting transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowChange {
    Keep,
    /// A new window until `until_ms` allowing `quota` replies.
    Open {
        until_ms: i64,
        quota: i64,
    },
    /// Like `Open`, unless the current window lasts longer (a click inside a 48-hour window).
    OpenUnlessLonger {
        until_ms: i64,
        quota: i64,
    },
    /// No more replies (the customer unsubscribed).
    Close,
}

/// A stored message, as the admin API and tests see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MessageRecord {
    pub id: BridgeMessageId,
    pub contact_id: ContactId,
    pub direction: Direction,
    pub source: String,
    pub external_id: String,
    pub msg_type: String,
    pub payload: String,
    pub status: MessageStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub platform_event_id: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    /// Parts of an outbound message the channel accepted (a long text is split).
    pub parts_sent: i64,
    /// The remote side's code of the last failure.
    pub error_code: Option<ErrorCode>,
}

/// The bridge's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Every hot write goes through it: one commit for whatever writes wait together.
    writer: writer::Writer,
    /// When `ping` last succeeded (Unix ms): `/readyz` needs no token, so its write probe runs at
    /// most once a second however often it is asked.
    last_ready_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

/// How long a successful readiness probe stands.
const READY_CACHE_MS: i64 = 1000;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

impl Store {
    /// Opens (creating if missing) the database at `sqlite://PATH`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(SqliteConnectOptions::from_str(url)?).await
    }

    /// Opens the database with `options` (the bridge's pragmas are added).
    pub async fn connect_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed accept survives power loss, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A connection whose ROLLBACK failed (SQLite already rolled back by itself after a
            // full disk or an I/O error) keeps sqlx's transaction depth above zero, and every later
            // `BEGIN` on it fails. Drop such a connection instead of handing it out again. The
            // pool pings a connection before this check, which runs any rollback still queued
            // by a dropped transaction first, so a healthy connection is never thrown away.
            .before_acquire(|conn, _meta| Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) }))
            .connect_with(options)
            .await?;
        let writer = writer::Writer::start(pool.clone());
        Ok(Self { pool, writer, last_ready_ms: Default::default() })
    }

    /// Applies the embedded migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    /// Readiness: the database takes a write now. Two checks, because neither alone sees every
    /// failure: 16 KB of room is allocated inside a transaction that is rolled back (a database
    /// that cannot grow fails here at once), and one row is rewritten and committed (a full disk
    /// or an I/O error fails the commit's write-ahead log append).
    pub async fn ping(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if now_ms() - self.last_ready_ms.load(Ordering::Relaxed) < READY_CACHE_MS {
            return Ok(());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("INSERT INTO readiness_probe (pad) VALUES (zeroblob(16384))").execute(&mut *tx).await?;
        tx.rollback().await?;
        sqlx::query("INSERT INTO readiness (id, checked_at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at")
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        self.last_ready_ms.store(now_ms(), Ordering::Relaxed);
        Ok(())
    }

    /// Stores a message and its outbox job in one transaction, or reports a duplicate. The
    /// transaction is shared with whatever other writes wait at the same moment (`writer`):
    /// the answer comes after its commit.
    pub async fn accept(&self, m: &NewMessage<'_>) -> Result<Accepted, StoreError> {
        let owned = OwnedMessage::from(m);
        self.writer.write(move |conn| Box::pin(async move { accept_on(conn, &owned.borrow()).await })).await
    }

    /// A message by its bridge id.
    pub async fn message(&self, id: &BridgeMessageId) -> Result<MessageRecord, StoreError> {
        let row = sqlx::query(MESSAGE_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("message {id}")))?;
        Ok(message_from_row(&row))
    }

    /// A message by the id its source gave it (`accept`'s deduplication key), if stored.
    pub async fn message_by_external_id(&self, source: &str, external_id: &str) -> Result<Option<MessageRecord>, StoreError> {
        let row = sqlx::query(select_messages!("WHERE source = ? AND external_id = ?"))
            .bind(source)
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(message_from_row))
    }

    /// Messages, newest first, optionally of one status.
    pub async fn messages(&self, status: Option<&str>, limit: i64) -> Result<Vec<MessageRecord>, StoreError> {
        let rows = sqlx::query(MESSAGES_BY_STATUS).bind(status).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(message_from_row).collect())
    }

    /// A contact by id.
    pub async fn contact(&self, id: ContactId) -> Result<Contact, StoreError> {
        let row = sqlx::query(select_contacts!("WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("contact {id}")))?;
        self.with_links(contact_from_row(&row)).await
    }

    /// The contact `platform` knows by `value` as its `kind` (Vonage: the contact's own
    /// conversation, in per-user mode).
    pub async fn contact_by_link(&self, platform: &str, kind: &str, value: &str) -> Result<Option<Contact>, StoreError> {
        let row = sqlx::query(select_contacts!(
            "WHERE id = (SELECT contact_id FROM contact_links WHERE platform = ? AND kind = ? AND value = ?)"
        ))
        .bind(platform)
        .bind(kind)
        .bind(value)
        .fetch_optional(&self.pool)
        .await?;
        self.found_contact(row).await
    }

    /// The contacts `platform` gave a `kind` id whose reply window is still open at `now_ms`
    /// (the conversations worth asking a platform about, since a reply outside the window
    /// cannot reach the customer anyway). Oldest contact first.
    pub async fn contacts_with_open_window(&self, platform: &str, kind: &str, now_ms: i64) -> Result<Vec<Contact>, StoreError> {
        let rows = sqlx::query(select_contacts!(
            "WHERE window_until > ? AND id IN (SELECT contact_id FROM contact_links WHERE platform = ? AND kind = ?) ORDER BY id"
        ))
        .bind(now_ms)
        .bind(platform)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        let mut contacts = Vec::with_capacity(rows.len());
        for row in &rows {
            contacts.push(self.with_links(contact_from_row(row)).await?);
        }
        Ok(contacts)
    }

    /// Whether `value` is a `kind` id `platform` gave one of the contacts (Vonage: one of the
    /// bridge's own members, whose events are echoes).
    pub async fn has_link(&self, platform: &str, kind: &str, value: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM contact_links WHERE platform = ? AND kind = ? AND value = ?")
            .bind(platform)
            .bind(kind)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Remembers the id `platform` gave a contact for `kind` (replacing an earlier one) as soon
    /// as it exists, so a crash between two remote calls never creates a second one.
    pub async fn save_link(&self, contact_id: ContactId, platform: &str, kind: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO contact_links (contact_id, platform, kind, value) VALUES (?, ?, ?, ?)
             ON CONFLICT (contact_id, platform, kind) DO UPDATE SET value = excluded.value",
        )
        .bind(contact_id)
        .bind(platform)
        .bind(kind)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a contact's `kind` id on `platform` (the object is gone on the platform's side).
    pub async fn remove_link(&self, contact_id: ContactId, platform: &str, kind: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM contact_links WHERE contact_id = ? AND platform = ? AND kind = ?")
            .bind(contact_id)
            .bind(platform)
            .bind(kind)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn found_contact(&self, row: Option<sqlx::sqlite::SqliteRow>) -> Result<Option<Contact>, StoreError> {
        match row {
            Some(row) => Ok(Some(self.with_links(contact_from_row(&row)).await?)),
            None => Ok(None),
        }
    }

    async fn with_links(&self, mut contact: Contact) -> Result<Contact, StoreError> {
        let rows = sqlx::query("SELECT platform, kind, value FROM contact_links WHERE contact_id = ?")
            .bind(contact.id)
            .fetch_all(&self.pool)
            .await?;
        contact.links = rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect();
        Ok(contact)
    }

    /// The contact with this id on `channel` (WeChat: OpenID).
    pub async fn contact_by_channel_id(&self, channel: &str, channel_id: &str) -> Result<Option<Contact>, StoreError> {
        let row = sqlx::query(select_contacts!("WHERE channel = ? AND channel_id = ?"))
            .bind(channel)
            .bind(channel_id)
            .fetch_optional(&self.pool)
            .await?;
        self.found_contact(row).await
    }

    /// One more part of an outbound message was accepted by the channel: resume after it on a
    /// retry, and count it against the contact's window quota.
    pub async fn record_part_sent(
        &self,
        message_id: &BridgeMessageId,
        contact_id: ContactId,
        parts_sent: i64,
    ) -> Result<(), StoreError> {
        let message_id = message_id.clone();
        self.writer
            .write(move |tx| {
                Box::pin(async move {
                    sqlx::query("UPDATE messages SET parts_sent = ? WHERE id = ?")
                        .bind(parts_sent)
                        .bind(&message_id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE contacts SET window_sends = window_sends + 1 WHERE id = ?")
                        .bind(contact_id)
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Number of contacts (tests and the health view).
    pub async fn contact_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM contacts").fetch_one(&self.pool).await?.get(0))
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Applies an inbound message's effect on the contact's reply window.
/// `Store::accept`'s writes, on the batch's connection.
async fn accept_on(tx: &mut SqliteConnection, m: &NewMessage<'_>) -> Result<Accepted, StoreError> {
    if let Some(row) = sqlx::query("SELECT id FROM messages WHERE source = ? AND external_id = ?")
        .bind(m.source)
        .bind(m.external_id)
        .fetch_optional(&mut *tx)
        .await?
    {
        return Ok(Accepted::Duplicate(row.get(0)));
    }
    let now = now_ms();
    if let Some(nonce) = m.nonce {
        sqlx::query("DELETE FROM webhook_nonces WHERE source = ? AND seen_at < ?")
            .bind(m.source)
            .bind(now - nonce.retain_ms)
            .execute(&mut *tx)
            .await?;
        let fresh = sqlx::query("INSERT INTO webhook_nonces (source, nonce, seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(m.source)
            .bind(nonce.value)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !fresh {
            return Err(StoreError::Replay);
        }
    }
    let inbound_at = (m.direction == Direction::Inbound).then_some(now);
    let contact_id: ContactId = sqlx::query(
        "INSERT INTO contacts (channel, channel_id, account, created_at, last_inbound_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (channel, channel_id) DO UPDATE SET
             last_inbound_at = COALESCE(excluded.last_inbound_at, contacts.last_inbound_at)
         RETURNING id",
    )
    .bind(m.channel)
    .bind(m.channel_id)
    .bind(m.account)
    .bind(now)
    .bind(inbound_at)
    .fetch_one(&mut *tx)
    .await?
    .get(0);
    record_window(tx, contact_id, m.window, now).await?;
    let id = BridgeMessageId::generate();
    sqlx::query(
        "INSERT INTO messages (id, contact_id, direction, source, external_id, msg_type, payload, status, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'stored', ?)",
    )
    .bind(&id)
    .bind(contact_id)
    .bind(m.direction)
    .bind(m.source)
    .bind(m.external_id)
    .bind(m.msg_type)
    .bind(m.payload)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    jobs::insert(tx, &id, contact_id, m.kind, now).await?;
    if let Some(key) = &m.idempotency {
        idempotency::record(tx, key, &id, now).await?;
    }
    Ok(Accepted::New(id))
}

/// `NewMessage` owned, to travel to the writer task.
struct OwnedMessage {
    channel: String,
    channel_id: String,
    account: String,
    direction: Direction,
    source: String,
    external_id: String,
    msg_type: String,
    payload: String,
    kind: JobKind,
    window: WindowChange,
    nonce: Option<(String, i64)>,
    idempotency: Option<OwnedKey>,
}

/// `IdempotencyKey` owned.
struct OwnedKey {
    scope: String,
    key: String,
    body_hash: String,
    response_status: u16,
    response_body: fn(&str) -> String,
}

impl From<&NewMessage<'_>> for OwnedMessage {
    fn from(m: &NewMessage<'_>) -> Self {
        Self {
            channel: m.channel.into(),
            channel_id: m.channel_id.into(),
            account: m.account.into(),
            direction: m.direction,
            source: m.source.into(),
            external_id: m.external_id.into(),
            msg_type: m.msg_type.into(),
            payload: m.payload.into(),
            kind: m.kind,
            window: m.window,
            nonce: m.nonce.map(|n| (n.value.to_string(), n.retain_ms)),
            idempotency: m.idempotency.map(|k| OwnedKey {
                scope: k.scope.into(),
                key: k.key.into(),
                body_hash: k.body_hash.into(),
                response_status: k.response_status,
                response_body: k.response_body,
            }),
        }
    }
}

impl OwnedMessage {
    fn borrow(&self) -> NewMessage<'_> {
        NewMessage {
            channel: &self.channel,
            channel_id: &self.channel_id,
            account: &self.account,
            direction: self.direction,
            source: &self.source,
            external_id: &self.external_id,
            msg_type: &self.msg_type,
            payload: &self.payload,
            kind: self.kind,
            window: self.window,
            nonce: self.nonce.as_ref().map(|(value, retain_ms)| RequestNonce { value, retain_ms: *retain_ms }),
            idempotency: self.idempotency.as_ref().map(|k| IdempotencyKey {
                scope: &k.scope,
                key: &k.key,
                body_hash: &k.body_hash,
                response_status: k.response_status,
                response_body: k.response_body,
            }),
        }
    }
}

async fn record_window(
    tx: &mut SqliteConnection,
    contact_id: ContactId,
    change: WindowChange,
    now: i64,
) -> Result<(), sqlx::Error> {
    let query = match change {
        WindowChange::Keep => return Ok(()),
        WindowChange::Open { until_ms, quota } => {
            sqlx::query("UPDATE contacts SET window_until = ?, window_quota = ?, window_sends = 0 WHERE id = ?")
                .bind(until_ms)
                .bind(quota)
                .bind(contact_id)
        }
        WindowChange::OpenUnlessLonger { until_ms, quota } => sqlx::query(
            "UPDATE contacts SET window_until = ?1, window_quota = ?2, window_sends = 0
             WHERE id = ?3 AND COALESCE(window_until, 0) < ?1",
        )
        .bind(until_ms)
        .bind(quota)
        .bind(contact_id),
        WindowChange::Close => sqlx::query("UPDATE contacts SET window_until = ? WHERE id = ?").bind(now).bind(contact_id),
    };
    query.execute(&mut *tx).await?;
    Ok(())
}

macro_rules! select_contacts {
    ($rest:literal) => {
        concat!("SELECT id, channel_id, account, last_inbound_at, window_sends, window_until, window_quota FROM contacts ", $rest)
    };
}
use select_contacts;

fn contact_from_row(row: &sqlx::sqlite::SqliteRow) -> Contact {
    Contact {
        id: row.get(0),
        channel_id: row.get(1),
        account: row.get(2),
        links: Default::default(),
        last_inbound_at: row.get(3),
        window_sends: row.get(4),
        window_until: row.get(5),
        window_quota: row.get(6),
    }
}

macro_rules! select_messages {
    ($rest:literal) => {
        concat!(
            "SELECT id, contact_id, direction, source, external_id, msg_type, payload, status, attempts, \
             last_error, platform_event_id, created_at, delivered_at, parts_sent, error_code FROM messages ",
            $rest
        )
    };
}
pub(crate) use select_messages;
const MESSAGE_BY_ID: &str = select_messages!("WHERE id = ?");
const MESSAGES_BY_STATUS: &str = select_messages!("WHERE (?1 IS NULL OR status = ?1) ORDER BY created_at DESC, id DESC LIMIT ?2");

pub(crate) fn message_from_row(row: &sqlx::sqlite::SqliteRow) -> MessageRecord {
    MessageRecord {
        id: row.get(0),
        contact_id: row.get(1),
        direction: row.get(2),
        source: row.get(3),
        external_id: row.get(4),
        msg_type: row.get(5),
        payload: row.get(6),
        status: row.get(7),
        attempts: row.get(8),
        last_error: row.get(9),
        platform_event_id: row.get(10),
        created_at: row.get(11),
        delivered_at: row.get(12),
        parts_sent: row.get(13),
        error_code: row.get(14),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_message(external_id: &str, payload: &str) -> NewMessage<'static> {
        NewMessage {
            channel: "wechat",
            channel_id: "o_full_disk",
            account: "gh",
            direction: Direction::Inbound,
            source: "wechat",
            external_id: Box::leak(external_id.to_string().into_boxed_str()),
            msg_type: "text",
            payload: Box::leak(payload.to_string().into_boxed_str()),
            kind: JobKind::DeliverInbound,
            window: WindowChange::Keep,
            nonce: None,
            idempotency: None,
        }
    }

    /// A database at the schema before contact links (migration 6) keeps its contacts' Vonage
    /// ids through migration 7, as links; the old columns and their indexes are gone.
    #[tokio::test]
    async fn contacts_keep_their_platform_ids_as_links_through_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("old.db").display())).await.unwrap();
        let mut before_links = sqlx::migrate!("./migrations/sqlite");
        before_links.migrations = before_links.migrations.iter().filter(|m| m.version < 7).cloned().collect();
        before_links.run(store.pool()).await.unwrap();
        for (id, openid, user, conversation, member) in [
            (1, "o_one", Some("USR-1"), Some("CON-1"), Some("MEM-1")),
            (2, "o_two", Some("USR-2"), None, None),
            // Single-conversation mode stored the shared conversation with every contact.
            (3, "o_three", Some("USR-3"), Some("CON-1"), Some("MEM-3")),
        ] {
            sqlx::query(
                "INSERT INTO contacts (id, channel, channel_id, account, platform_user_id, platform_conversation_id,
                 platform_member_id, created_at) VALUES (?, 'wechat', ?, 'gh', ?, ?, ?, 0)",
            )
            .bind(id)
            .bind(openid)
            .bind(user)
            .bind(conversation)
            .bind(member)
            .execute(store.pool())
            .await
            .unwrap();
        }
        store.migrate().await.unwrap();

        let one = store.contact(ContactId(1)).await.unwrap();
        assert_eq!(one.channel_id, "o_one");
        assert_eq!(one.link("vonage", "user"), Some("USR-1"));
        assert_eq!(one.link("vonage", "conversation"), Some("CON-1"));
        assert_eq!(one.link("vonage", "member"), Some("MEM-1"));
        let two = store.contact(ContactId(2)).await.unwrap();
        assert_eq!(two.links.len(), 1);
        assert_eq!(two.link("vonage", "user"), Some("USR-2"));
        let three = store.contact(ContactId(3)).await.unwrap();
        assert_eq!((three.link("vonage", "user"), three.link("vonage", "member")), (Some("USR-3"), Some("MEM-3")));
        assert_eq!(three.link("vonage", "conversation"), None, "a conversation id belongs to one contact");
        assert_eq!(store.contact_by_link("vonage", "conversation", "CON-1").await.unwrap().map(|c| c.id), Some(ContactId(1)));
        assert!(store.has_link("vonage", "member", "MEM-3").await.unwrap());
        assert!(!store.has_link("vonage", "member", "USR-3").await.unwrap());

        let columns: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info('contacts')")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(columns.iter().all(|c| !c.starts_with("platform_")), "{columns:?}");
        let indexes: i64 = sqlx::query("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN ('contacts_by_conversation', 'contacts_by_member')")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get(0);
        assert_eq!(indexes, 0);
    }

    /// Jobs waiting in the outbox when the bridge is upgraded to head-only claims (migration 9)
    /// are claimed exactly as before: the oldest unfinished job of each contact's lane, the next
    /// one when it finishes, nothing of a finished or failed job.
    #[tokio::test]
    async fn jobs_waiting_before_the_head_migration_are_claimed_in_the_same_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("heads.db").display())).await.unwrap();
        let mut before_heads = sqlx::migrate!("./migrations/sqlite");
        before_heads.migrations = before_heads.migrations.iter().filter(|m| m.version < 9).cloned().collect();
        before_heads.run(store.pool()).await.unwrap();
        for (id, openid) in [(1, "o_a"), (2, "o_b")] {
            sqlx::query("INSERT INTO contacts (id, channel, channel_id, account, created_at) VALUES (?, 'wechat', ?, 'gh', 0)")
                .bind(id)
                .bind(openid)
                .execute(store.pool())
                .await
                .unwrap();
        }
        // (job id, contact, lane, kind, state): contact 1 has a finished job, a failed one, then two
        // waiting inbound jobs and one outbound; contact 2 one running (its worker died) and one waiting.
        let jobs = [
            (1, 1, "platform", "deliver_inbound", "done"),
            (2, 1, "platform", "deliver_inbound", "failed"),
            (3, 1, "platform", "deliver_inbound", "pending"),
            (4, 1, "channel", "deliver_outbound", "pending"),
            (5, 1, "platform", "deliver_inbound", "pending"),
            (6, 2, "platform", "deliver_inbound", "running"),
            (7, 2, "platform", "deliver_inbound", "pending"),
        ];
        for (id, contact, lane, kind, state) in jobs {
            let message = format!("m{id}");
            sqlx::query(
                "INSERT INTO messages (id, contact_id, direction, source, external_id, msg_type, payload, status, created_at)
                 VALUES (?, ?, 'inbound', 'wechat', ?, 'text', '{}', 'stored', 0)",
            )
            .bind(&message)
            .bind(contact)
            .bind(&message)
            .execute(store.pool())
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO jobs (id, message_id, contact_id, lane, kind, state, due_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
            )
            .bind(id)
            .bind(&message)
            .bind(contact)
            .bind(lane)
            .bind(kind)
            .bind(state)
            .execute(store.pool())
            .await
            .unwrap();
        }
        store.migrate().await.unwrap();

        let claimed = store.claim_jobs(60_000, 10).await.unwrap();
        assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [3, 4, 6], "the oldest unfinished job of each lane");
        assert_eq!(store.claim_jobs(60_000, 10).await.unwrap(), [], "nothing else while they run");
        let first = claimed.iter().find(|j| j.id == 3).unwrap();
        assert!(store.complete_job(first, None).await.unwrap());
        assert_eq!(store.claim_jobs(60_000, 10).await.unwrap().iter().map(|j| j.id).collect::<Vec<_>>(), [5]);

        // A failed message retried from the admin API goes first again, as it did before it
        // failed: job 2 is older than job 5, which waits again (its attempt was handed back).
        assert!(store.claim_jobs(60_000, 10).await.unwrap().is_empty());
        sqlx::query("UPDATE jobs SET state = 'pending', due_at = 0, claim_token = NULL WHERE id = 5")
            .execute(store.pool())
            .await
            .unwrap();
        assert!(store.retry_message(&BridgeMessageId::from_raw("m2")).await.unwrap());
        assert_eq!(store.claim_jobs(60_000, 10).await.unwrap().iter().map(|j| j.id).collect::<Vec<_>>(), [2]);
    }

    #[tokio::test]
    async fn links_are_saved_replaced_and_removed_per_contact_platform_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("l.db").display())).await.unwrap();
        store.migrate().await.unwrap();
        store.accept(&text_message("m1", "{}")).await.unwrap();
        let id = store.contact_by_channel_id("wechat", "o_full_disk").await.unwrap().unwrap().id;
        store.save_link(id, "p", "conversation", "C1").await.unwrap();
        store.save_link(id, "p", "conversation", "C2").await.unwrap();
        let contact = store.contact(id).await.unwrap();
        assert_eq!(contact.link("p", "conversation"), Some("C2"));
        assert_eq!(contact.links.len(), 1);
        assert!(store.contact_by_link("p", "conversation", "C1").await.unwrap().is_none());
        store.remove_link(id, "p", "conversation").await.unwrap();
        assert!(store.contact(id).await.unwrap().links.is_empty());
    }

    #[tokio::test]
    async fn a_status_report_does_not_overwrite_its_messages_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("a.db").display())).await.unwrap();
        store.migrate().await.unwrap();
        let mut outbound = text_message("evt-1", "{}");
        (outbound.direction, outbound.kind) = (Direction::Outbound, JobKind::DeliverOutbound);
        let Accepted::New(id) = store.accept(&outbound).await.unwrap() else { panic!() };
        for attempt in 1..=3 {
            let job = store.claim_jobs(10_000, 10).await.unwrap().pop().unwrap();
            assert_eq!(job.attempt, attempt);
            if attempt < 3 {
                store.reschedule_job(&job, 0, "busy").await.unwrap();
            } else {
                store.complete_job(&job, None).await.unwrap();
            }
        }
        let report = store.claim_jobs(10_000, 10).await.unwrap().pop().unwrap();
        assert_eq!(report.kind, JobKind::ReportStatus);
        assert_eq!(store.message(&id).await.unwrap().attempts, 3);
    }

    /// A full disk (here: SQLite's page limit) fails writes with 503; once space is back, the
    /// same store writes again without a restart (DESIGN.md "Flow and guarantees" 4).
    #[tokio::test]
    async fn writes_work_again_after_the_disk_was_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.db");
        let url = format!("sqlite://{}", path.display());
        let admin = Store::connect(&url).await.unwrap();
        admin.migrate().await.unwrap();
        let pages: i64 = sqlx::query("PRAGMA page_count").fetch_one(admin.pool()).await.unwrap().get(0);
        let limited = SqliteConnectOptions::from_str(&url).unwrap().pragma("max_page_count", (pages + 40).to_string());
        let store = Store::connect_with(limited).await.unwrap();
        let payload = "x".repeat(3000);
        let mut full = 0;
        for i in 0..500 {
            if store.accept(&text_message(&format!("m{i}"), &payload)).await.is_err() {
                full += 1;
                if full == 20 {
                    break;
                }
            }
        }
        assert_eq!(full, 20, "the page limit was never reached");
        assert!(store.ping().await.is_err(), "readiness must report a store that cannot write");
        // Space comes back: the filler messages are deleted by another connection.
        sqlx::query("DELETE FROM jobs").execute(admin.pool()).await.unwrap();
        sqlx::query("DELETE FROM messages").execute(admin.pool()).await.unwrap();
        for i in 0..20 {
            let accepted = store.accept(&text_message(&format!("after{i}"), "small")).await;
            assert!(matches!(accepted, Ok(Accepted::New(_))), "write {i} after recovery: {accepted:?}");
        }
        store.ping().await.unwrap();
    }
}
