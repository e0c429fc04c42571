//! Group commit. SQLite has one writer at a time, and with `synchronous = FULL` every commit
//! waits for the disk to flush its log: one transaction per message caps the bridge at the
//! flushes per second the disk gives. So every write goes through one task that takes whatever
//! writes are waiting, runs them in ONE transaction and commits once; each caller is answered
//! only after that commit. `success` still means committed; a burst just shares the flush.
//!
//! A write that fails must be undone alone. Writes rarely fail (a replayed nonce, a key taken),
//! so a batch first runs without savepoints (each costs two statements); when one of its writes
//! fails, the batch is rolled back and run again with a savepoint around each write. Writes are
//! therefore closures that can run twice: the first run's effects are rolled back before the second.

use futures_util::future::BoxFuture;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// Most writes committed together: enough to share one flush among a burst, few enough that a
/// batch's transaction stays short for the readers' snapshots.
const MAX_BATCH: usize = 256;
/// Writes waiting for the writer before callers wait to queue (back-pressure, not a limit on
/// correctness).
const QUEUE: usize = 4096;

/// One write waiting in the queue: run (maybe twice), then answered once.
trait Pending: Send {
    /// Runs the write on the batch's connection and keeps its result; true when it failed.
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool>;
    /// Answers the caller: the write's result if `commit` succeeded.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Op<T, F> {
    op: F,
    result: Option<Result<T, StoreError>>,
    answer: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Pending for Op<T, F>
where
    T: Send + 'static,
    F: for<'c> Fn(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
{
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool> {
        Box::pin(async move {
            let result = (self.op)(conn).await;
            let failed = result.is_err();
            self.result = Some(result);
            failed
        })
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let Op { result, answer, .. } = *self;
        let result = commit.and_then(|()| result.unwrap_or_else(|| Err(StoreError::Commit("the write never ran".into()))));
        let _ = answer.send(result);
    }
}

/// The handle every store clone shares; the task ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    ops: mpsc::Sender<Box<dyn Pending>>,
}

impl Writer {
    /// Starts the writer task on `pool`'s connections (one per batch, so a connection a failed
    /// rollback left unusable is dropped by the pool's check, as for any other use).
    pub(crate) fn start(pool: SqlitePool) -> Self {
        let (ops, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, queue));
        Self { ops }
    }

    /// Runs `op` in the next batch; its result once the batch is committed. An error of `op`
    /// undoes only its own writes; a failed commit fails every write of the batch.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let pending: Box<dyn Pending> = Box::new(Op { op, result: None, answer });
        self.ops.send(pending).await.map_err(|_| StoreError::Commit("the store is closed".into()))?;
        // No answer: the writer task ended before this write was answered.
        answered.await.map_err(|_| StoreError::Commit("the batch failed before this write ran".into()))?
    }
}

async fn run(pool: SqlitePool, mut queue: mpsc::Receiver<Box<dyn Pending>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit(&pool, std::mem::take(&mut batch)).await;
        batch.reserve(MAX_BATCH);
    }
}

/// Runs `batch` in one transaction and answers every caller.
async fn commit(pool: &SqlitePool, mut batch: Vec<Box<dyn Pending>>) {
    let outcome = match run_batch(pool, &mut batch, false).await {
        Ok(Some(())) => Ok(()),
        // One write failed: everything was rolled back; again, each write in its savepoint.
        Ok(None) => run_batch(pool, &mut batch, true).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => batch.into_iter().for_each(|pending| pending.finish(Ok(()))),
        Err(e) => {
            let text = e.to_string();
            tracing::warn!(error = %text, writes = batch.len(), "a group commit failed; its writes are undone");
            batch.into_iter().for_each(|pending| pending.finish(Err(StoreError::Commit(text.clone()))));
        }
    }
}

/// One transaction over `batch`. Without savepoints, the first failed write rolls everything
/// back and gives `None`; with them, a failed write is undone alone and the rest is committed.
async fn run_batch(pool: &SqlitePool, batch: &mut [Box<dyn Pending>], savepoints: bool) -> Result<Option<()>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    // IMMEDIATE takes the write lock up front: a deferred transaction that upgrades from read
    // to write can fail with SQLITE_BUSY regardless of busy_timeout.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    if batch.len() == 1 {
        // Alone in its batch: no savepoint needed, a failed write is simply rolled back.
        return if batch[0].run(&mut tx).await { tx.rollback().await.map(Some) } else { tx.commit().await.map(Some) };
    }
    for pending in batch.iter_mut() {
        if !savepoints {
            if pending.run(&mut tx).await {
                tx.rollback().await?;
                return Ok(None);
            }
            continue;
        }
        sqlx::query("SAVEPOINT op").execute(&mut *tx).await?;
        if pending.run(&mut tx).await {
            sqlx::query("ROLLBACK TO op").execute(&mut *tx).await?;
        }
        sqlx::query("RELEASE op").execute(&mut *tx).await?;
    }
    tx.commit().await.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    /// Writes waiting together share one transaction; one that fails is undone alone, and every
    /// caller gets its own result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_in_a_batch_is_undone_alone_and_every_caller_gets_its_result() {
        let dir = tempfile::tempdir().unwrap();
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display())).await.unwrap();
        let writer = Writer::start(pool.clone());
        sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY)").execute(&pool).await.unwrap();
        let mut calls = Vec::new();
        for n in 0..200i64 {
            let writer = writer.clone();
            calls.push(tokio::spawn(async move {
                writer
                    .write(move |conn| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO t (n) VALUES (?)").bind(n).execute(&mut *conn).await?;
                            if n % 7 == 0 {
                                // Fails after writing: its insert must not survive.
                                return Err(StoreError::NotFound(format!("n {n}")));
                            }
                            Ok(n * 2)
                        })
                    })
                    .await
            }));
        }
        for (n, call) in calls.into_iter().enumerate() {
            let n = n as i64;
            match call.await.unwrap() {
                Ok(doubled) => assert_eq!(doubled, n * 2),
                Err(e) => assert!(n % 7 == 0 && e.to_string().contains(&format!("n {n}")), "{n}: {e}"),
            }
        }
        let rows = sqlx::query("SELECT n FROM t ORDER BY n").fetch_all(&pool).await.unwrap();
        let stored: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(stored, (0..200).filter(|n| n % 7 != 0).collect::<Vec<i64>>());
    }
}
