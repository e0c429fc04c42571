//! Persistence: contacts, messages and the outbox, behind one interface on two engines:
//! embedded SQLite (WAL, `synchronous=FULL`, one instance) and PostgreSQL (several instances on
//! one database). Both run the same statements (`queries/`, compiled once per engine) and the
//! same tests.
//!
//! The accept path writes contact, message and job in ONE transaction before the webhook answers
//! (DESIGN.md "Flow and guarantees" 1); workers claim jobs with a lease (3). All times are Unix ms.

mod admin;
mod idempotency;
mod jobs;
mod outbox_stats;
mod postgres;
mod sqlite;
pub mod testing;

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

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
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database file (or a temporary one) could not be made, or the writer thread started.
    #[error("database file: {0}")]
    File(#[from] std::io::Error),
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
    /// Another request (on another instance) stored this message first; this attempt's writes
    /// are undone and `accept` answers with the stored one as a duplicate.
    #[error("message {0} was stored by another request")]
    AlreadyStored(BridgeMessageId),
    /// `BRIDGE_DATABASE_URL` names neither engine.
    #[error("unsupported database URL (expected sqlite://PATH or postgres://…)")]
    UnsupportedUrl,
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
    engine: Engine,
    /// When `ping` last succeeded (Unix ms): `/readyz` needs no token, so its write probe runs at
    /// most once a second however often it is asked.
    last_ready_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// When expired nonces and keys were last deleted (Unix ms).
    last_prune_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

#[derive(Debug, Clone)]
enum Engine {
    Sqlite(sqlite::Engine),
    Postgres(postgres::Engine),
}

/// Held while this instance refreshes the WeChat access token (`Store::token_refresh_lock`).
#[derive(Debug)]
pub enum TokenRefreshLock {
    /// One process owns the database: its own single-flight suffices.
    Process,
    /// An advisory lock, released when the transaction ends (dropped or the connection lost).
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// How long a successful readiness probe stands.
const READY_CACHE_MS: i64 = 1000;

/// How often accepting also deletes expired nonces and idempotency keys.
const PRUNE_EVERY_MS: i64 = 1000;

/// Connections a PostgreSQL pool opens at most, unless the URL says otherwise (`max_connections`).
pub const DEFAULT_POSTGRES_CONNECTIONS: u32 = 10;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

impl Store {
    /// Opens the database at `sqlite://PATH` (created if missing) or `postgres://…` (a
    /// `max_connections=N` query parameter sizes the pool; default 10).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::with(Engine::Sqlite(sqlite::Engine::connect(url).await?)))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let (url, max_connections) = postgres_pool_size(url)?;
            let engine = postgres::Engine::connect(PgConnectOptions::from_str(&url)?, max_connections).await?;
            Ok(Self::with(Engine::Postgres(engine)))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    fn with(engine: Engine) -> Self {
        Self { engine, last_ready_ms: Default::default(), last_prune_ms: Default::default() }
    }

    /// Which engine holds the data (`sqlite` or `postgres`), for logs and the health view.
    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }

    /// Applies the engine's embedded migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        on_engine!(self, e => e.migrate().await)
    }

    /// Readiness: the database takes a write now (cached for a second).
    pub async fn ping(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if now_ms() - self.last_ready_ms.load(Ordering::Relaxed) < READY_CACHE_MS {
            return Ok(());
        }
        on_engine!(self, e => e.ping().await)?;
        self.last_ready_ms.store(now_ms(), Ordering::Relaxed);
        Ok(())
    }

    /// Stores a message and its outbox job in one transaction, or reports a duplicate (also
    /// when another instance stored it a moment before). The answer comes after the commit.
    pub async fn accept(&self, m: &NewMessage<'_>) -> Result<Accepted, StoreError> {
        let owned = OwnedMessage { prune: self.prune_due(), ..OwnedMessage::from(m) };
        match on_engine!(self, e => e.accept(owned).await) {
            Err(StoreError::AlreadyStored(id)) => Ok(Accepted::Duplicate(id)),
            other => other,
        }
    }

    /// Whether this write should also delete expired nonces and idempotency keys: at most once a
    /// second, not with every push (an expired one left meanwhile is replaced, never refused).
    fn prune_due(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = now_ms();
        let last = self.last_prune_ms.load(Ordering::Relaxed);
        now - last >= PRUNE_EVERY_MS
            && self.last_prune_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// The job succeeded: the message is delivered (with the id the other side gave it).
    /// Returns false when the lease had been lost and another worker owns the job now.
    pub async fn complete_job(&self, job: &ClaimedJob, platform_event_id: Option<&str>) -> Result<bool, StoreError> {
        self.complete_job_after_parts(job, platform_event_id, None).await
    }

    /// Held while this instance fetches a new WeChat access token for `app_id`: instances
    /// sharing the database refresh one at a time (the others wait, then read the new token).
    pub async fn token_refresh_lock(&self, app_id: &str) -> Result<TokenRefreshLock, StoreError> {
        on_engine!(self, e => e.token_refresh_lock(app_id).await)
    }

    /// A pool of sqlx's on the SQLite file (the migration tests reach the file directly).
    #[cfg(test)]
    async fn sqlite_pool(&self) -> Option<sqlx::SqlitePool> {
        match &self.engine {
            Engine::Sqlite(e) => Some(sqlx::SqlitePool::connect(&format!("sqlite://{}", e.path().display())).await.unwrap()),
            Engine::Postgres(_) => None,
        }
    }
}

/// `url` fit to print: a password in it becomes `***` (`postgres://user:***@host/db`).
pub fn redacted_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let authority_end = url[start..].find(['/', '?']).map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else { return url.to_string() };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_string(),
    }
}

/// Splits a `max_connections=N` query parameter off a PostgreSQL URL (sqlx's options do not
/// size the pool).
fn postgres_pool_size(url: &str) -> Result<(String, u32), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), DEFAULT_POSTGRES_CONNECTIONS));
    };
    let mut size = DEFAULT_POSTGRES_CONNECTIONS;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("max_connections=") {
            Some(n) => size = n.parse().ok().filter(|n| *n > 0).ok_or(StoreError::UnsupportedUrl)?,
            None => rest.push(pair),
        }
    }
    Ok((if rest.is_empty() { base.to_string() } else { format!("{base}?{}", rest.join("&")) }, size))
}

/// Runs `$call` on whichever engine the store has.
macro_rules! on_engine {
    ($store:expr, $e:ident => $call:expr) => {
        match &$store.engine {
            Engine::Sqlite($e) => $call,
            Engine::Postgres($e) => $call,
        }
    };
}
use on_engine;

/// Store methods that are the engine's own, one line each.
macro_rules! delegate {
    ($( $(#[$doc:meta])* pub async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    on_engine!(self, e => e.$name($($arg),*).await)
                }
            )*
        }
    };
}

delegate! {
    /// A message by its bridge id.
    pub async fn message(&self, id: &BridgeMessageId) -> Result<MessageRecord, StoreError>;
    /// A message by the id its source gave it (`accept`'s deduplication key), if stored.
    pub async fn message_by_external_id(&self, source: &str, external_id: &str) -> Result<Option<MessageRecord>, StoreError>;
    /// Messages, newest first, optionally of one status.
    pub async fn messages(&self, status: Option<&str>, limit: i64) -> Result<Vec<MessageRecord>, StoreError>;
    /// A contact by id.
    pub async fn contact(&self, id: ContactId) -> Result<Contact, StoreError>;
    /// The contact `platform` knows by `value` as its `kind` (Vonage: the contact's own
    /// conversation, in per-user mode).
    pub async fn contact_by_link(&self, platform: &str, kind: &str, value: &str) -> Result<Option<Contact>, StoreError>;
    /// The contacts `platform` gave a `kind` id whose reply window is still open at `now_ms`
    /// (the conversations worth asking a platform about, since a reply outside the window
    /// cannot reach the customer anyway). Oldest contact first.
    pub async fn contacts_with_open_window(&self, platform: &str, kind: &str, now_ms: i64) -> Result<Vec<Contact>, StoreError>;
    /// Whether `value` is a `kind` id `platform` gave one of the contacts (Vonage: one of the
    /// bridge's own members, whose events are echoes).
    pub async fn has_link(&self, platform: &str, kind: &str, value: &str) -> Result<bool, StoreError>;
    /// Remembers the id `platform` gave a contact for `kind` (replacing an earlier one) as soon
    /// as it exists, so a crash between two remote calls never creates a second one.
    pub async fn save_link(&self, contact_id: ContactId, platform: &str, kind: &str, value: &str) -> Result<(), StoreError>;
    /// Forgets a contact's `kind` id on `platform` (the object is gone on the platform's side).
    pub async fn remove_link(&self, contact_id: ContactId, platform: &str, kind: &str) -> Result<(), StoreError>;
    /// The contact with this id on `channel` (WeChat: OpenID).
    pub async fn contact_by_channel_id(&self, channel: &str, channel_id: &str) -> Result<Option<Contact>, StoreError>;
    /// One more part of an outbound message was accepted by the channel: resume after it on a
    /// retry, and count it against the contact's window quota.
    pub async fn record_part_sent(&self, message_id: &BridgeMessageId, contact_id: ContactId, parts_sent: i64) -> Result<(), StoreError>;
    /// Number of contacts (tests and the health view).
    pub async fn contact_count(&self) -> Result<i64, StoreError>;

    /// Claims up to `limit` due jobs for `lease_ms`: only the oldest unfinished job of each
    /// contact and lane is eligible (its `head`, kept as jobs finish), which keeps per-contact
    /// order and lets different contacts run in parallel, on one instance or several; the claim
    /// reads only due heads, however long the backlog. A job whose lease ran out (its worker
    /// died) is due again.
    pub async fn claim_jobs(&self, lease_ms: i64, limit: u32) -> Result<Vec<ClaimedJob>, StoreError>;
    /// The job succeeded: the message is delivered (with the id the other side gave it), and
    /// for an outbound message `last_part` (its number) was the last part this attempt sent: it
    /// is recorded as `record_part_sent` would, in the same write. Returns false when the lease
    /// had been lost and another worker owns the job now.
    pub async fn complete_job_after_parts(&self, job: &ClaimedJob, platform_event_id: Option<&str>, last_part: Option<i64>) -> Result<bool, StoreError>;
    /// The attempt failed but may succeed later: run again at `due_at`.
    pub async fn reschedule_job(&self, job: &ClaimedJob, due_at: i64, error: &str) -> Result<bool, StoreError>;
    /// The job cannot succeed (a permanent error, or too many attempts): mark it and its message
    /// `failed`, visible and retryable from the admin API.
    pub async fn fail_job(&self, job: &ClaimedJob, code: Option<&ErrorCode>, error: &str) -> Result<bool, StoreError>;
    /// The job is still running: extend its lease by `lease_ms` from now. False when the lease
    /// was lost (it ran out and another worker claimed the job).
    pub async fn renew_lease(&self, job: &ClaimedJob, lease_ms: i64) -> Result<bool, StoreError>;
    /// The worker stops before these jobs finished (shutdown): hand them back, due now, so the
    /// next start or another instance runs them without waiting for their leases. Jobs that
    /// finished meanwhile, or whose lease another worker took, are left alone. Returns how many
    /// were released.
    pub async fn release_jobs(&self, jobs: &[ClaimedJob]) -> Result<u64, StoreError>;
    /// Puts a `failed` message's job back in the queue, due now, with a fresh attempt count.
    /// Returns false when the message is not failed.
    pub async fn retry_message(&self, message_id: &BridgeMessageId) -> Result<bool, StoreError>;
    /// Jobs not yet finished (pending or running): the outbox depth.
    pub async fn outbox_depth(&self) -> Result<i64, StoreError>;
    /// Jobs claimed by a worker and not finished.
    pub async fn running_jobs(&self) -> Result<i64, StoreError>;
    /// When the next job that can run (a head) is due, if any (lets an idle worker sleep exactly
    /// that long).
    pub async fn next_due_at(&self) -> Result<Option<i64>, StoreError>;
    /// The outbox's depth by kind and its oldest due job, as of `now` (Unix milliseconds).
    pub async fn outbox_stats(&self, now: i64) -> Result<OutboxStats, StoreError>;

    /// Contacts, most recently active first.
    pub async fn conversations(&self, limit: i64) -> Result<Vec<ConversationSummary>, StoreError>;
    /// Messages matching `filter`, newest first (at most 500).
    pub async fn filtered_messages(&self, filter: &MessageFilter) -> Result<Vec<MessageRecord>, StoreError>;
    /// Figures for the console's health page.
    pub async fn health_figures(&self) -> Result<HealthFigures, StoreError>;
    /// The first answer given to `key` in `scope`, unless it is older than the retention.
    pub async fn idempotent_response(&self, scope: &str, key: &str) -> Result<Option<StoredResponse>, StoreError>;

    /// Cached media: content type and bytes.
    pub async fn cached_media(&self, media_id: &str) -> Result<Option<(String, Vec<u8>)>, StoreError>;
    /// Caches a fetched medium.
    pub async fn cache_media(&self, media_id: &str, content_type: &str, bytes: &[u8]) -> Result<(), StoreError>;

    /// The stored token of `app_id` and when it expires (Unix ms), if any.
    pub async fn access_token(&self, app_id: &str) -> Result<Option<(String, i64)>, StoreError>;
    /// Stores (or replaces) the token of `app_id`. Last writer wins: a stale token written late
    /// is removed by the first call it fails (compare-and-invalidate, §5.4.4).
    pub async fn save_access_token(&self, app_id: &str, token: &str, expires_at_ms: i64) -> Result<(), StoreError>;
    /// Deletes the token of `app_id` only if it is still `token` (§5.4.4): a caller whose call was
    /// rejected must not throw away a newer token another caller already stored. Returns whether
    /// a row was deleted.
    pub async fn invalidate_access_token(&self, app_id: &str, token: &str) -> Result<bool, StoreError>;
}

/// `NewMessage` owned, to travel to the writer task.
pub(crate) struct OwnedMessage {
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
    /// Also delete expired nonces and keys with this write (`Store::prune_due`).
    prune: bool,
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
            prune: false,
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

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    /// A migrated store on each engine this run can reach: SQLite always, PostgreSQL when
    /// `BRIDGE_TEST_POSTGRES_URL` is set (a fresh database). The directory holds SQLite's file.
    async fn each_engine() -> Vec<(Store, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        let mut stores = vec![(sqlite, dir)];
        if let Some(server) = testing::postgres_server() {
            let url = testing::fresh_postgres_database(&server).await.unwrap();
            stores.push((Store::connect(&url).await.unwrap(), tempfile::tempdir().unwrap()));
        }
        for (store, _) in &stores {
            store.migrate().await.unwrap();
        }
        stores
    }

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

    #[test]
    fn a_password_in_a_database_url_is_never_shown() {
        assert_eq!(redacted_url("postgres://u:p%40ss@h:5432/db?sslmode=require"), "postgres://u:***@h:5432/db?sslmode=require");
        assert_eq!(redacted_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redacted_url("sqlite://wechat-bridge.db"), "sqlite://wechat-bridge.db");
        assert_eq!(redacted_url("postgres://h/db?user=u"), "postgres://h/db?user=u");
    }

    /// Two stores on one PostgreSQL database, as two instances have (when
    /// `BRIDGE_TEST_POSTGRES_URL` is set). SQLite is one instance per file: its single writer
    /// (the group commit) is what orders its writes, and the README says so.
    async fn each_engine_twice() -> Vec<(Store, Store, tempfile::TempDir)> {
        let mut urls = Vec::new();
        if let Some(server) = testing::postgres_server() {
            urls.push(testing::fresh_postgres_database(&server).await.unwrap());
        }
        let mut pairs = Vec::new();
        for url in urls {
            let (a, b) = (Store::connect(&url).await.unwrap(), Store::connect(&url).await.unwrap());
            // Both migrate at the same moment, as instances starting together do.
            let (ma, mb) = tokio::join!(a.migrate(), b.migrate());
            ma.unwrap();
            mb.unwrap();
            pairs.push((a, b, tempfile::tempdir().unwrap()));
        }
        pairs
    }

    fn inbound(openid: &'static str, msg_id: String, nonce: Option<String>) -> NewMessage<'static> {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        NewMessage {
            channel_id: openid,
            external_id: leak(msg_id),
            nonce: nonce.map(|n| RequestNonce { value: leak(n), retain_ms: 300_000 }),
            ..text_message("unused", "{}")
        }
    }

    /// WeChat's retry of a push reaching another instance while the first still stores it: one
    /// message, one job, and both answers name it (DESIGN.md "Flow" 1; issue: several instances).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_message_sent_to_two_instances_at_once_is_stored_once() {
        for (a, b, _dir) in each_engine_twice().await {
            for round in 0..20 {
                let (one, two) = (inbound("o_race", format!("m{round}"), None), inbound("o_race", format!("m{round}"), None));
                let (x, y) = tokio::join!(a.accept(&one), b.accept(&two));
                let (x, y) = (x.unwrap(), y.unwrap());
                let ids: Vec<_> = [&x, &y]
                    .iter()
                    .map(|r| match r {
                        Accepted::New(id) | Accepted::Duplicate(id) => id.clone(),
                    })
                    .collect();
                assert_eq!(ids[0], ids[1], "{}: both answers name the stored message", a.engine_name());
                assert_eq!([&x, &y].iter().filter(|r| matches!(r, Accepted::New(_))).count(), 1, "{x:?} {y:?}");
            }
            assert_eq!(a.messages(None, 100).await.unwrap().len(), 20);
            assert_eq!(b.outbox_depth().await.unwrap(), 20);
        }
    }

    /// The same signed push (same nonce) retried on two instances at once is a duplicate, not a
    /// replay; another message with a used nonce is a replay on whichever instance it reaches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_nonce_is_used_once_across_instances() {
        for (a, b, _dir) in each_engine_twice().await {
            for round in 0..10 {
                let nonce = format!("1700000000:n{round}");
                let one = inbound("o_nonce", format!("m{round}"), Some(nonce.clone()));
                let two = inbound("o_nonce", format!("m{round}"), Some(nonce.clone()));
                let (x, y) = tokio::join!(a.accept(&one), b.accept(&two));
                let mut results = [x.unwrap(), y.unwrap()];
                results.sort_by_key(|r| matches!(r, Accepted::Duplicate(_)));
                assert!(matches!(results, [Accepted::New(_), Accepted::Duplicate(_)]), "{}: {results:?}", a.engine_name());
                let replay = inbound("o_nonce", format!("other{round}"), Some(nonce));
                assert!(matches!(b.accept(&replay).await, Err(StoreError::Replay)), "{}", a.engine_name());
            }
        }
    }

    /// Workers of two instances share the outbox: no job is held by both at once, every job
    /// runs once, and each contact's jobs finish in the order they were stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn workers_of_two_instances_run_each_job_once_in_order_per_contact() {
        const CONTACTS: usize = 6;
        const PER_CONTACT: usize = 25;
        for (a, b, _dir) in each_engine_twice().await {
            let openids: Vec<&'static str> = (0..CONTACTS).map(|c| &*Box::leak(format!("o_{c}").into_boxed_str())).collect();
            for n in 0..PER_CONTACT {
                for (c, openid) in openids.iter().enumerate() {
                    let store = if (n + c) % 2 == 0 { &a } else { &b };
                    store.accept(&inbound(openid, format!("{c}-{n}"), None)).await.unwrap();
                }
            }
            let running = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
            let finished = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let worker = |store: Store| {
                let (running, finished) = (running.clone(), finished.clone());
                async move {
                    let mut idle = 0;
                    while idle < 20 {
                        let jobs = store.claim_jobs(30_000, 4).await.unwrap();
                        if jobs.is_empty() {
                            idle += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                            continue;
                        }
                        idle = 0;
                        for job in jobs {
                            assert!(running.lock().unwrap().insert(job.id), "job {} held by two workers", job.id);
                            tokio::task::yield_now().await;
                            let message = store.message(&job.message_id).await.unwrap();
                            finished.lock().unwrap().push((job.contact_id, message.external_id));
                            running.lock().unwrap().remove(&job.id);
                            assert!(store.complete_job(&job, None).await.unwrap());
                        }
                    }
                }
            };
            tokio::join!(worker(a.clone()), worker(b.clone()), worker(a.clone()), worker(b.clone()));
            let finished = finished.lock().unwrap().clone();
            assert_eq!(finished.len(), CONTACTS * PER_CONTACT, "{}: every job ran once", a.engine_name());
            for (c, openid) in openids.iter().enumerate() {
                let contact = a.contact_by_channel_id("wechat", openid).await.unwrap().unwrap().id;
                let order: Vec<String> = finished.iter().filter(|(id, _)| *id == contact).map(|(_, m)| m.clone()).collect();
                let expected: Vec<String> = (0..PER_CONTACT).map(|n| format!("{c}-{n}")).collect();
                assert_eq!(order, expected, "{}: contact {c} in order", a.engine_name());
            }
            assert_eq!(a.outbox_depth().await.unwrap(), 0);
        }
    }

    /// One instance at a time holds the token refresh: the other waits for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_instance_at_a_time_refreshes_the_access_token() {
        let Some(server) = testing::postgres_server() else { return };
        let url = testing::fresh_postgres_database(&server).await.unwrap();
        let (a, b) = (Store::connect(&url).await.unwrap(), Store::connect(&url).await.unwrap());
        a.migrate().await.unwrap();
        let held = a.token_refresh_lock("wx1").await.unwrap();
        let waiting = tokio::spawn(async move { b.token_refresh_lock("wx1").await.map(|_| ()) });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "the second instance got the lock while the first held it");
        // Another app's token is refreshed independently.
        drop(a.token_refresh_lock("wx2").await.unwrap());
        drop(held);
        waiting.await.unwrap().unwrap();
    }

    /// A database at the schema before contact links (migration 6) keeps its contacts' Vonage
    /// ids through migration 7, as links; the old columns and their indexes are gone.
    #[tokio::test]
    async fn contacts_keep_their_platform_ids_as_links_through_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("old.db").display())).await.unwrap();
        let mut before_links = sqlx::migrate!("./migrations/sqlite");
        before_links.migrations = before_links.migrations.iter().filter(|m| m.version < 7).cloned().collect();
        let pool = store.sqlite_pool().await.unwrap();
        before_links.run(&pool).await.unwrap();
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
            .execute(&pool)
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
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(columns.iter().all(|c| !c.starts_with("platform_")), "{columns:?}");
        let indexes: i64 = sqlx::query("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN ('contacts_by_conversation', 'contacts_by_member')")
            .fetch_one(&pool)
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
        let pool = store.sqlite_pool().await.unwrap();
        before_heads.run(&pool).await.unwrap();
        for (id, openid) in [(1, "o_a"), (2, "o_b")] {
            sqlx::query("INSERT INTO contacts (id, channel, channel_id, account, created_at) VALUES (?, 'wechat', ?, 'gh', 0)")
                .bind(id)
                .bind(openid)
                .execute(&pool)
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
            .execute(&pool)
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
            .execute(&pool)
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
            .execute(&pool)
            .await
            .unwrap();
        assert!(store.retry_message(&BridgeMessageId::from_raw("m2")).await.unwrap());
        assert_eq!(store.claim_jobs(60_000, 10).await.unwrap().iter().map(|j| j.id).collect::<Vec<_>>(), [2]);
    }

    #[tokio::test]
    async fn links_are_saved_replaced_and_removed_per_contact_platform_and_kind() {
        for (store, _dir) in each_engine().await {
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
    }

    /// A claim hands each job its message and contact (with the links saved so far), so the
    /// worker reads nothing else; both jobs of a revived message (its delivery and the report of
    /// its earlier failure) can be claimed together.
    #[tokio::test]
    async fn a_claimed_job_carries_its_message_and_contact() {
        for (store, _dir) in each_engine().await {
            let Accepted::New(first) = store.accept(&text_message("c1", "{\"text\":\"one\"}")).await.unwrap() else { panic!() };
            let contact = store.contact_by_channel_id("wechat", "o_full_disk").await.unwrap().unwrap();
            store.save_link(contact.id, "p", "user", "U1").await.unwrap();
            let mut other = text_message("c2", "{}");
            other.channel_id = "o_other";
            store.accept(&other).await.unwrap();
            let jobs = store.claim_jobs(10_000, 10).await.unwrap();
            assert_eq!(jobs.len(), 2, "{}", store.engine_name());
            let job = jobs.iter().find(|j| j.message_id == first).unwrap();
            assert_eq!(job.message, store.message(&first).await.unwrap());
            assert_eq!(job.message.attempts, 1);
            assert_eq!(job.contact, store.contact(contact.id).await.unwrap());
            assert_eq!(job.contact.link("p", "user"), Some("U1"));
            let second = jobs.iter().find(|j| j.message_id != first).unwrap();
            assert_eq!((second.contact.channel_id.as_str(), second.contact.links.len()), ("o_other", 0));
            for job in &jobs {
                assert!(store.complete_job(job, None).await.unwrap());
            }

            // An outbound message fails for good, its report waits; the admin API retries it.
            let mut outbound = text_message("c3", "{}");
            (outbound.direction, outbound.kind) = (Direction::Outbound, JobKind::DeliverOutbound);
            let Accepted::New(out) = store.accept(&outbound).await.unwrap() else { panic!() };
            let delivery = store.claim_jobs(10_000, 10).await.unwrap().pop().unwrap();
            store.fail_job(&delivery, None, "refused").await.unwrap();
            assert!(store.retry_message(&out).await.unwrap());
            let both = store.claim_jobs(10_000, 10).await.unwrap();
            assert_eq!(both.iter().map(|j| j.kind).collect::<Vec<_>>(), [JobKind::DeliverOutbound, JobKind::ReportStatus]);
            assert!(both.iter().all(|j| j.message.id == out));
        }
    }

    /// Each way a message changes its contact's reply window, on a new and on a known contact.
    #[tokio::test]
    async fn a_message_opens_extends_keeps_or_closes_its_contacts_window() {
        for (store, _dir) in each_engine().await {
            let engine = store.engine_name();
            let window = |openid: &'static str| {
                let store = store.clone();
                async move {
                    let c = store.contact_by_channel_id("wechat", openid).await.unwrap().unwrap();
                    (c.window_until, c.window_quota, c.window_sends)
                }
            };
            let mut n = 0;
            let mut send = |openid: &'static str, change: WindowChange| {
                n += 1;
                let mut m = text_message(&format!("w{n}"), "{}");
                (m.channel_id, m.window) = (openid, change);
                let store = store.clone();
                async move { store.accept(&m).await.unwrap() }
            };
            let t = 5_000_000_000_000;
            let (open, longer) = (
                |until_ms| WindowChange::Open { until_ms, quota: 5 },
                |until_ms| WindowChange::OpenUnlessLonger { until_ms, quota: 3 },
            );

            send("o_keep", WindowChange::Keep).await;
            assert_eq!(window("o_keep").await, (None, None, 0), "{engine}");
            send("o_new_open", open(t)).await;
            assert_eq!(window("o_new_open").await, (Some(t), Some(5), 0), "{engine}");
            send("o_new_longer", longer(t)).await;
            assert_eq!(window("o_new_longer").await, (Some(t), Some(3), 0), "{engine}");
            let before = now_ms();
            send("o_new_close", WindowChange::Close).await;
            let (until, quota, _) = window("o_new_close").await;
            assert!(until.unwrap() >= before && until.unwrap() <= now_ms() && quota.is_none(), "{engine}");

            // A known contact with two replies sent in its window.
            let Accepted::New(id) = send("o_known", open(t)).await else { panic!() };
            let contact = store.contact_by_channel_id("wechat", "o_known").await.unwrap().unwrap();
            store.record_part_sent(&id, contact.id, 1).await.unwrap();
            store.record_part_sent(&id, contact.id, 2).await.unwrap();
            assert_eq!(window("o_known").await, (Some(t), Some(5), 2), "{engine}");
            send("o_known", WindowChange::Keep).await;
            assert_eq!(window("o_known").await, (Some(t), Some(5), 2), "kept ({engine})");
            send("o_known", longer(t - 1)).await;
            assert_eq!(window("o_known").await, (Some(t), Some(5), 2), "a shorter window changes nothing ({engine})");
            send("o_known", longer(t + 1)).await;
            assert_eq!(window("o_known").await, (Some(t + 1), Some(3), 0), "a longer one replaces it ({engine})");
            send("o_known", open(t - 10)).await;
            assert_eq!(window("o_known").await, (Some(t - 10), Some(5), 0), "a new window, even shorter ({engine})");
            let before = now_ms();
            send("o_known", WindowChange::Close).await;
            let (until, quota, sends) = window("o_known").await;
            assert!(until.unwrap() >= before && until.unwrap() <= now_ms(), "{engine}");
            assert_eq!((quota, sends), (Some(5), 0), "closing keeps the rest ({engine})");
        }
    }

    #[tokio::test]
    async fn a_status_report_does_not_overwrite_its_messages_attempts() {
        for (store, _dir) in each_engine().await {
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
            assert_eq!(store.message(&id).await.unwrap().attempts, 3, "{}", store.engine_name());
        }
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
        let pool = admin.sqlite_pool().await.unwrap();
        let pages: i64 = sqlx::query("PRAGMA page_count").fetch_one(&pool).await.unwrap().get(0);
        let limited = sqlite::Engine::connect_with_pragmas(&url, &[("max_page_count", (pages + 40).to_string())]).await.unwrap();
        let store = Store::with(Engine::Sqlite(limited));
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
        sqlx::query("DELETE FROM jobs").execute(&pool).await.unwrap();
        sqlx::query("DELETE FROM messages").execute(&pool).await.unwrap();
        for i in 0..20 {
            let accepted = store.accept(&text_message(&format!("after{i}"), "small")).await;
            assert!(matches!(accepted, Ok(Accepted::New(_))), "write {i} after recovery: {accepted:?}");
        }
        store.ping().await.unwrap();
    }
}
