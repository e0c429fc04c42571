//! The embedded engine: one SQLite file in WAL mode with `synchronous = FULL`. One writer at a
//! time, so every write goes through the group commit (`writer`): one thread owning the write
//! connection, one transaction and one flush for whatever writes wait together. Reads and the
//! few unbatched writes use `readers`. Statements run on rusqlite through `sql`, which gives them
//! sqlx's shape so that `queries/` serves both engines; migrations stay sqlx's (the same
//! `_sqlx_migrations` table as every earlier version, so existing files upgrade in place).

mod readers;
mod sql;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::ConnectOptions as _;

use super::{StoreError, now_ms};

// Compiled once per engine on purpose: the same statements with this engine's types.
#[allow(clippy::duplicate_mod)]
#[path = "queries/mod.rs"]
mod queries;

pub(super) use sql::{Conn, DbRow, Row, query};

/// The store on SQLite.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    /// Reads and unbatched writes (named as PostgreSQL's pool, for `queries/`).
    pub(super) pool: readers::Readers,
    /// Every batched write goes through it: one commit for whatever writes wait together.
    writer: writer::Writer,
    path: PathBuf,
    /// `sqlite::memory:` is a private temporary file, deleted with the last clone.
    _temporary: Option<Arc<tempfile::TempDir>>,
}

/// Where the data lives, from `sqlite://PATH` (`sqlite:PATH`; `sqlite::memory:` or no path: a
/// private temporary database). Query parameters are ignored: the bridge sets its own pragmas.
pub(super) fn path_of(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Opens a connection with the bridge's pragmas (`durable`: `synchronous = FULL`, else OFF for a
/// temporary database) and any `extra` ones (tests: a page limit).
fn open(path: &Path, durable: bool, extra: &[(&str, String)]) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
    // FULL: a committed accept survives power loss, not only a process crash.
    conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "OFF" })?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    for (name, value) in extra {
        conn.pragma_update(None, name, value)?;
    }
    // Every statement of the store stays prepared (about 60 distinct ones).
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

impl Engine {
    /// Opens (creating it if missing) the database at `url`.
    pub(super) async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_pragmas(url, &[]).await
    }

    /// As `connect`, with `extra` pragmas on the write connection.
    pub(super) async fn connect_with_pragmas(url: &str, extra: &[(&str, String)]) -> Result<Self, StoreError> {
        let (path, temporary) = match path_of(url) {
            Some(path) => (path, None),
            None => {
                let dir = tempfile::Builder::new().prefix("wechat-bridge-memory-").tempdir()?;
                (dir.path().join("memory.db"), Some(Arc::new(dir)))
            }
        };
        let durable = temporary.is_none();
        let conn = open(&path, durable, extra)?;
        let writer = writer::Writer::start(conn, path.clone(), durable)?;
        Ok(Self { pool: readers::Readers::new(path.clone(), durable), writer, path, _temporary: temporary })
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.path)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
        sqlx::Connection::close(conn).await?;
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

    /// Two checks, because neither alone sees every failure: 16 KB of room is allocated and
    /// rolled back (a database that cannot grow fails here at once), and one row is rewritten
    /// and committed (a full disk or an I/O error fails the commit's write-ahead log append).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.write(|tx| {
            Box::pin(async move {
                query("SAVEPOINT probe").execute(&mut *tx).await?;
                let grown = query("INSERT INTO readiness_probe (pad) VALUES (zeroblob(16384))").execute(&mut *tx).await;
                query("ROLLBACK TO probe").execute(&mut *tx).await?;
                query("RELEASE probe").execute(&mut *tx).await?;
                grown?;
                query(READINESS).bind(now_ms()).execute(&mut *tx).await?;
                Ok(())
            })
        })
        .await
    }

    /// One instance per file: nothing to share with another process.
    pub(super) async fn token_refresh_lock(&self, _app_id: &str) -> Result<super::TokenRefreshLock, StoreError> {
        Ok(super::TokenRefreshLock::Process)
    }

    /// The file (tests reach it with a connection of their own).
    #[cfg(test)]
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    /// The claim runs many times a second with a new limit each time: it must stay compiled.
    #[tokio::test]
    async fn the_claim_is_not_recompiled_for_each_limit() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("claim.db").display());
        super::Engine::connect(&url).await.unwrap().migrate().await.unwrap();
        let conn = super::open(&dir.path().join("claim.db"), false, &[]).unwrap();
        for limit in 1..=5i64 {
            let mut claim = conn.prepare_cached(super::dialect::CLAIM).unwrap();
            let rows = claim.query_map(rusqlite::params![1i64, "token", 0i64, limit], |_| Ok(())).unwrap().count();
            assert_eq!(rows, 0);
            assert_eq!(claim.get_status(rusqlite::StatementStatus::RePrepare), 0, "recompiled at limit {limit}");
        }
    }
}

const READINESS: &str =
    "INSERT INTO readiness (id, checked_at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at";

/// Where the engines' SQL differs (`queries` holds the rest, the same text for both).
mod dialect {
    /// SQLite runs one write transaction at a time: a transaction already owns every contact.
    pub(crate) const LOCK_CONTACT: Option<&str> = None;

    /// Due heads, oldest due first (see `queries::jobs`). `LIMIT ($4 + 0)`, not `LIMIT $4`:
    /// SQLite plans a bare bound LIMIT with its value, so every new value re-compiles the
    /// statement (it was 15% of the writer thread's time); an expression keeps it prepared.
    pub(crate) const CLAIM: &str = "UPDATE jobs SET state = 'running', due_at = $1, claim_token = $2, attempts = attempts + 1
         WHERE id IN (
             SELECT j.id FROM jobs j
             WHERE j.head = 1 AND j.state IN ('pending', 'running') AND j.due_at <= $3
             ORDER BY j.due_at LIMIT ($4 + 0))
         RETURNING id, message_id, contact_id, kind, attempts";

    /// Contacts, most recently active first, each with its links as `[[platform, kind, value], …]`.
    pub(crate) const CONVERSATIONS: &str = "SELECT c.id, c.channel_id, c.account,
                (SELECT json_group_array(json_array(l.platform, l.kind, l.value)) FROM contact_links l WHERE l.contact_id = c.id),
                c.last_inbound_at, c.window_sends, COUNT(m.id), COALESCE(SUM(CASE WHEN m.status = 'failed' THEN 1 ELSE 0 END), 0),
                MAX(m.created_at)
         FROM contacts c LEFT JOIN messages m ON m.contact_id = c.id
         GROUP BY c.id ORDER BY MAX(m.created_at) DESC NULLS LAST, c.id DESC LIMIT $1";
}
