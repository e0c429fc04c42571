//! The store's statements, written once and compiled once per engine (`sqlite.rs` and
//! `postgres.rs` each include this folder as their `queries` module, with their own `Conn`,
//! `DbRow`, `Engine::write` and `dialect`). The SQL is the text both engines accept: `$N`
//! placeholders, `ON CONFLICT`, `RETURNING`, `CASE` instead of boolean arithmetic. Where they
//! differ, the statement comes from `super::dialect`.

mod admin;
mod idempotency;
mod jobs;
mod media;
mod outbox_stats;
mod tokens;

use super::{Conn, DbRow, Engine, Row, dialect, query};
use crate::relay::ids::{BridgeMessageId, ContactId};
use crate::relay::message::{Contact, Direction};
use crate::store::{Accepted, MessageRecord, NewMessage, OwnedMessage, StoreError, WindowChange, now_ms};

impl Engine {
    pub(in crate::store) async fn accept(&self, owned: OwnedMessage) -> Result<Accepted, StoreError> {
        // Shared, not copied, with each run of the write (a batch may run it twice).
        let owned = std::sync::Arc::new(owned);
        self.write(move |conn| {
            let owned = owned.clone();
            Box::pin(async move { accept_on(conn, &owned.borrow(), owned.prune).await })
        })
        .await
    }

    pub(in crate::store) async fn message(&self, id: &BridgeMessageId) -> Result<MessageRecord, StoreError> {
        let row = query(MESSAGE_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("message {id}")))?;
        Ok(message_from_row(&row))
    }

    pub(in crate::store) async fn message_by_external_id(
        &self,
        source: &str,
        external_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let row = query(select_messages!("WHERE source = $1 AND external_id = $2"))
            .bind(source)
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(message_from_row))
    }

    pub(in crate::store) async fn messages(&self, status: Option<&str>, limit: i64) -> Result<Vec<MessageRecord>, StoreError> {
        let rows = query(MESSAGES_BY_STATUS).bind(status).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(message_from_row).collect())
    }

    pub(in crate::store) async fn contact(&self, id: ContactId) -> Result<Contact, StoreError> {
        let row = query(select_contacts!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("contact {id}")))?;
        self.with_links(contact_from_row(&row)).await
    }

    pub(in crate::store) async fn contact_by_link(
        &self,
        platform: &str,
        kind: &str,
        value: &str,
    ) -> Result<Option<Contact>, StoreError> {
        let row = query(select_contacts!(
            "WHERE id = (SELECT contact_id FROM contact_links WHERE platform = $1 AND kind = $2 AND value = $3)"
        ))
        .bind(platform)
        .bind(kind)
        .bind(value)
        .fetch_optional(&self.pool)
        .await?;
        self.found_contact(row).await
    }

    pub(in crate::store) async fn contacts_with_open_window(
        &self,
        platform: &str,
        kind: &str,
        now_ms: i64,
    ) -> Result<Vec<Contact>, StoreError> {
        let rows = query(select_contacts!(
            "WHERE window_until > $1 AND id IN (SELECT contact_id FROM contact_links WHERE platform = $2 AND kind = $3) ORDER BY id"
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

    pub(in crate::store) async fn has_link(&self, platform: &str, kind: &str, value: &str) -> Result<bool, StoreError> {
        Ok(query("SELECT contact_id FROM contact_links WHERE platform = $1 AND kind = $2 AND value = $3")
            .bind(platform)
            .bind(kind)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    pub(in crate::store) async fn save_link(
        &self,
        contact_id: ContactId,
        platform: &str,
        kind: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        query(
            "INSERT INTO contact_links (contact_id, platform, kind, value) VALUES ($1, $2, $3, $4)
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

    pub(in crate::store) async fn remove_link(
        &self,
        contact_id: ContactId,
        platform: &str,
        kind: &str,
    ) -> Result<(), StoreError> {
        query("DELETE FROM contact_links WHERE contact_id = $1 AND platform = $2 AND kind = $3")
            .bind(contact_id)
            .bind(platform)
            .bind(kind)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn found_contact(&self, row: Option<DbRow>) -> Result<Option<Contact>, StoreError> {
        match row {
            Some(row) => Ok(Some(self.with_links(contact_from_row(&row)).await?)),
            None => Ok(None),
        }
    }

    async fn with_links(&self, mut contact: Contact) -> Result<Contact, StoreError> {
        let rows = query("SELECT platform, kind, value FROM contact_links WHERE contact_id = $1")
            .bind(contact.id)
            .fetch_all(&self.pool)
            .await?;
        contact.links = rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect();
        Ok(contact)
    }

    pub(in crate::store) async fn contact_by_channel_id(
        &self,
        channel: &str,
        channel_id: &str,
    ) -> Result<Option<Contact>, StoreError> {
        let row = query(select_contacts!("WHERE channel = $1 AND channel_id = $2"))
            .bind(channel)
            .bind(channel_id)
            .fetch_optional(&self.pool)
            .await?;
        self.found_contact(row).await
    }

    pub(in crate::store) async fn record_part_sent(
        &self,
        message_id: &BridgeMessageId,
        contact_id: ContactId,
        parts_sent: i64,
    ) -> Result<(), StoreError> {
        let message_id = message_id.clone();
        self.write(move |tx| {
            let message_id = message_id.clone();
            Box::pin(async move {
                query("UPDATE messages SET parts_sent = $1 WHERE id = $2")
                    .bind(parts_sent)
                    .bind(&message_id)
                    .execute(&mut *tx)
                    .await?;
                count_window_send(tx, contact_id).await?;
                Ok(())
            })
        })
        .await
    }

    pub(in crate::store) async fn contact_count(&self) -> Result<i64, StoreError> {
        Ok(query("SELECT COUNT(*) FROM contacts").fetch_one(&self.pool).await?.get(0))
    }
}

/// The stored message with this deduplication key, if any.
async fn stored_id(tx: &mut Conn, source: &str, external_id: &str) -> Result<Option<BridgeMessageId>, StoreError> {
    let row = query("SELECT id FROM messages WHERE source = $1 AND external_id = $2")
        .bind(source)
        .bind(external_id)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// `Engine::accept`'s writes. Another instance may be storing the same message at this moment:
/// the unique constraints decide, and the loser reports the winner's message as a duplicate
/// (`StoreError::AlreadyStored` undoes everything this attempt wrote).
/// `prune`: also delete the expired nonces and keys (housekeeping, done at most once a second;
/// an expired one still present is simply replaced).
async fn accept_on(tx: &mut Conn, m: &NewMessage<'_>, prune: bool) -> Result<Accepted, StoreError> {
    if let Some(id) = stored_id(tx, m.source, m.external_id).await? {
        return Ok(Accepted::Duplicate(id));
    }
    let now = now_ms();
    if let Some(nonce) = m.nonce {
        if prune {
            query("DELETE FROM webhook_nonces WHERE source = $1 AND seen_at < $2")
                .bind(m.source)
                .bind(now - nonce.retain_ms)
                .execute(&mut *tx)
                .await?;
        }
        let fresh = query(
            "INSERT INTO webhook_nonces (source, nonce, seen_at) VALUES ($1, $2, $3)
             ON CONFLICT (source, nonce) DO UPDATE SET seen_at = excluded.seen_at WHERE webhook_nonces.seen_at < $4",
        )
        .bind(m.source)
        .bind(nonce.value)
        .bind(now)
        .bind(now - nonce.retain_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            // The same push retried at the same moment on another instance (same nonce): that
            // one stored it, and this is its duplicate. Otherwise a replay.
            return match stored_id(tx, m.source, m.external_id).await? {
                Some(id) => Err(StoreError::AlreadyStored(id)),
                None => Err(StoreError::Replay),
            };
        }
    }
    let inbound_at = (m.direction == Direction::Inbound).then_some(now);
    // On PostgreSQL the upsert also locks the contact's row until the commit (see postgres.rs).
    let contact_id: ContactId = query(
        "INSERT INTO contacts (channel, channel_id, account, created_at, last_inbound_at) VALUES ($1, $2, $3, $4, $5)
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
    let inserted = query(
        "INSERT INTO messages (id, contact_id, direction, source, external_id, msg_type, payload, status, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'stored', $8) ON CONFLICT (source, external_id) DO NOTHING",
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
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        let winner = stored_id(tx, m.source, m.external_id).await?;
        return Err(winner.map_or_else(|| StoreError::NotFound(format!("message {}", m.external_id)), StoreError::AlreadyStored));
    }
    jobs::insert(tx, &id, contact_id, m.kind, now).await?;
    if let Some(key) = &m.idempotency {
        idempotency::record(tx, key, &id, now, prune).await?;
    }
    Ok(Accepted::New(id))
}

/// Applies an inbound message's effect on the contact's reply window.
async fn record_window(tx: &mut Conn, contact_id: ContactId, change: WindowChange, now: i64) -> Result<(), StoreError> {
    let query = match change {
        WindowChange::Keep => return Ok(()),
        WindowChange::Open { until_ms, quota } => {
            query("UPDATE contacts SET window_until = $1, window_quota = $2, window_sends = 0 WHERE id = $3")
                .bind(until_ms)
                .bind(quota)
                .bind(contact_id)
        }
        WindowChange::OpenUnlessLonger { until_ms, quota } => query(
            "UPDATE contacts SET window_until = $1, window_quota = $2, window_sends = 0
             WHERE id = $3 AND COALESCE(window_until, 0) < $1",
        )
        .bind(until_ms)
        .bind(quota)
        .bind(contact_id),
        WindowChange::Close => query("UPDATE contacts SET window_until = $1 WHERE id = $2").bind(now).bind(contact_id),
    };
    query.execute(&mut *tx).await?;
    Ok(())
}

/// One more reply sent in the contact's window (its quota, `wechat-api.md` §6.2).
async fn count_window_send(tx: &mut Conn, contact_id: ContactId) -> Result<(), StoreError> {
    query("UPDATE contacts SET window_sends = window_sends + 1 WHERE id = $1").bind(contact_id).execute(&mut *tx).await?;
    Ok(())
}

/// Locks `contact_id`'s row where the engine needs it (`dialect::LOCK_CONTACT`).
async fn lock_contact(tx: &mut Conn, contact_id: ContactId) -> Result<(), StoreError> {
    if let Some(lock) = dialect::LOCK_CONTACT {
        query(lock).bind(contact_id).execute(&mut *tx).await?;
    }
    Ok(())
}

macro_rules! select_contacts {
    ($rest:literal) => {
        concat!(
            "SELECT c.id, c.channel_id, c.account, c.last_inbound_at, c.window_sends, c.window_until, c.window_quota FROM contacts c ",
            $rest
        )
    };
}
use select_contacts;

fn contact_from_row(row: &DbRow) -> Contact {
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
            "SELECT m.id, m.contact_id, m.direction, m.source, m.external_id, m.msg_type, m.payload, m.status, m.attempts, \
             m.last_error, m.platform_event_id, m.created_at, m.delivered_at, m.parts_sent, m.error_code FROM messages m ",
            $rest
        )
    };
}
use select_messages;
const MESSAGE_BY_ID: &str = select_messages!("WHERE id = $1");
const MESSAGES_BY_STATUS: &str = select_messages!("WHERE ($1 IS NULL OR status = $1) ORDER BY created_at DESC, id DESC LIMIT $2");

fn message_from_row(row: &DbRow) -> MessageRecord {
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
