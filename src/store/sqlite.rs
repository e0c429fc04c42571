//! The embedded engine: one SQLite file in WAL mode with `synchronous = FULL`. One writer at a
//! time, so every write goes through the group commit (`writer`): one transaction and one flush
//! for whatever writes wait together.

use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{StoreError, now_ms};

// Compiled once per engine on purpose: the same statements with this engine's types.
#[allow(clippy::duplicate_mod)]
#[path = "queries/mod.rs"]
mod queries;

pub(super) type Conn = sqlx::SqliteConnection;
pub(super) type DbRow = sqlx::sqlite::SqliteRow;
pub(super) type Pool = sqlx::SqlitePool;

/// The store on SQLite.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    pub(super) pool: Pool,
    /// Every write goes through it: one commit for whatever writes wait together.
    writer: super::writer::Writer,
}

impl Engine {
    /// Opens the database with `options` (the bridge's pragmas are added).
    pub(super) async fn connect(options: SqliteConnectOptions) -> Result<Self, StoreError> {
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
        let writer = super::writer::Writer::start(pool.clone());
        Ok(Self { pool, writer })
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    /// Runs `op` in the next group commit; its result once that is committed.
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut Conn) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        self.writer.write(op).await
    }

    /// Two checks, because neither alone sees every failure: 16 KB of room is allocated inside a
    /// transaction that is rolled back (a database that cannot grow fails here at once), and one
    /// row is rewritten and committed (a full disk or an I/O error fails the commit's write-ahead
    /// log append).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("INSERT INTO readiness_probe (pad) VALUES (zeroblob(16384))").execute(&mut *tx).await?;
        tx.rollback().await?;
        sqlx::query(READINESS).bind(now_ms()).execute(&self.pool).await?;
        Ok(())
    }

    /// One instance per file: nothing to share with another process.
    pub(super) async fn token_refresh_lock(&self, _app_id: &str) -> Result<super::TokenRefreshLock, StoreError> {
        Ok(super::TokenRefreshLock::Process)
    }
}

const READINESS: &str =
    "INSERT INTO readiness (id, checked_at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at";

/// Where the engines' SQL differs (`queries` holds the rest, the same text for both).
mod dialect {
    /// SQLite runs one write transaction at a time: a transaction already owns every contact.
    pub(crate) const LOCK_CONTACT: Option<&str> = None;

    /// Due heads, oldest due first (see `queries::jobs`).
    pub(crate) const CLAIM: &str = "UPDATE jobs SET state = 'running', due_at = $1, claim_token = $2, attempts = attempts + 1
         WHERE id IN (
             SELECT j.id FROM jobs j
             WHERE j.head = 1 AND j.state IN ('pending', 'running') AND j.due_at <= $3
             ORDER BY j.due_at LIMIT $4)
         RETURNING id, message_id, contact_id, kind, attempts";

    /// Contacts, most recently active first, each with its links as `[[platform, kind, value], …]`.
    pub(crate) const CONVERSATIONS: &str = "SELECT c.id, c.channel_id, c.account,
                (SELECT json_group_array(json_array(l.platform, l.kind, l.value)) FROM contact_links l WHERE l.contact_id = c.id),
                c.last_inbound_at, c.window_sends, COUNT(m.id), COALESCE(SUM(CASE WHEN m.status = 'failed' THEN 1 ELSE 0 END), 0),
                MAX(m.created_at)
         FROM contacts c LEFT JOIN messages m ON m.contact_id = c.id
         GROUP BY c.id ORDER BY MAX(m.created_at) DESC NULLS LAST, c.id DESC LIMIT $1";
}
