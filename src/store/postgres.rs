//! The shared engine: PostgreSQL, for several instances on one database. Each write is its own
//! transaction (READ COMMITTED); what two instances could race on is decided by unique
//! constraints and row locks, never by a read followed by a write:
//! - accepting locks the contact's row (the upsert), so the outbox heads of one contact are
//!   computed by one transaction at a time; ending a job locks it too (`dialect::LOCK_CONTACT`);
//! - claims skip rows another instance is claiming (`FOR UPDATE SKIP LOCKED`);
//! - the access token is refreshed under an advisory lock (`token_refresh_lock`);
//! - migrations run under sqlx's advisory lock, so instances starting together apply them once.

use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{StoreError, now_ms};

// Compiled once per engine on purpose: the same statements with this engine's types.
#[allow(clippy::duplicate_mod)]
#[path = "queries/mod.rs"]
mod queries;

pub(super) use sqlx::{Row, query};
pub(super) type Conn = sqlx::PgConnection;
pub(super) type DbRow = sqlx::postgres::PgRow;
pub(super) type Pool = sqlx::PgPool;

/// The store on PostgreSQL.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    pub(super) pool: Pool,
}

impl Engine {
    pub(super) async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            // A request waits this long for a connection before it fails with 503, rather than
            // holding WeChat's 5 seconds.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        // sqlx's migrator holds `pg_advisory_lock` while it runs: instances starting at the same
        // moment apply each migration once, the others wait and find it applied.
        sqlx::migrate!("./migrations/postgres").run(&self.pool).await?;
        Ok(())
    }

    /// Runs `op` in a transaction of its own, committed before the answer.
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut Conn) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        let mut tx = self.pool.begin().await?;
        let result = op(&mut tx).await;
        match result {
            Ok(value) => {
                tx.commit().await.map_err(|e| StoreError::Commit(e.to_string()))?;
                Ok(value)
            }
            Err(e) => {
                tx.rollback().await?;
                Err(e)
            }
        }
    }

    /// One committed write: the database takes writes now.
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO readiness (id, checked_at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
        )
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Held while one instance refreshes `app_id`'s token: the others wait, then read what it
    /// stored (`wechat-api.md` §5.4.3: refresh by one caller at a time). A transaction-scoped
    /// advisory lock, so a crashed instance's lock ends with its connection.
    pub(super) async fn token_refresh_lock(&self, app_id: &str) -> Result<super::TokenRefreshLock, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('wechat-bridge token ' || $1, 0))")
            .bind(app_id)
            .execute(&mut *tx)
            .await?;
        Ok(super::TokenRefreshLock::Postgres(tx))
    }
}

/// Where the engines' SQL differs (`queries` holds the rest, the same text for both).
mod dialect {
    /// Taken before a contact's outbox heads are recomputed, so two instances finishing and
    /// queueing jobs of one contact at the same moment see each other's work.
    pub(crate) const LOCK_CONTACT: Option<&str> = Some("SELECT id FROM contacts WHERE id = $1 FOR UPDATE");

    /// Due heads, oldest due first; rows another instance is claiming are skipped, not waited for.
    pub(crate) const CLAIM: &str = "UPDATE jobs SET state = 'running', due_at = $1, claim_token = $2, attempts = attempts + 1
         WHERE id IN (
             SELECT j.id FROM jobs j
             WHERE j.head = 1 AND j.state IN ('pending', 'running') AND j.due_at <= $3
             ORDER BY j.due_at LIMIT $4
             FOR UPDATE SKIP LOCKED)
         RETURNING id, message_id, contact_id, kind, attempts";

    /// Contacts, most recently active first, each with its links as `[[platform, kind, value], …]`.
    pub(crate) const CONVERSATIONS: &str = "SELECT c.id, c.channel_id, c.account,
                (SELECT COALESCE(json_agg(json_build_array(l.platform, l.kind, l.value)), '[]')::text
                 FROM contact_links l WHERE l.contact_id = c.id),
                c.last_inbound_at, c.window_sends, COUNT(m.id), COALESCE(SUM(CASE WHEN m.status = 'failed' THEN 1 ELSE 0 END), 0),
                MAX(m.created_at)
         FROM contacts c LEFT JOIN messages m ON m.contact_id = c.id
         GROUP BY c.id ORDER BY MAX(m.created_at) DESC NULLS LAST, c.id DESC LIMIT $1";
}
