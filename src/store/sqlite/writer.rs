//! Group commit. SQLite has one writer at a time, and with `synchronous = FULL` every commit
//! waits for the disk to flush its log: one transaction per message caps the bridge at the
//! flushes per second the disk gives. So every write goes to one thread that owns the write
//! connection, takes whatever writes are waiting, runs them in ONE transaction and commits once;
//! each caller is answered only after that commit. `success` still means committed; a burst
//! just shares the flush. The whole batch runs on that thread with prepared statements: one
//! hand-off per batch, not one per statement.
//!
//! A write that fails must be undone alone. Writes rarely fail (a replayed nonce, a key taken),
//! so a batch first runs without savepoints (each costs two statements); when one of its writes
//! fails, the batch is rolled back and run again with a savepoint around each write. Writes are
//! therefore closures that can run twice: the first run's effects are rolled back before the second.
//!
//! A write is written as the same `async` code as on PostgreSQL (`queries/`), but every statement
//! it awaits on the write connection is ready at once: the thread polls it once to completion.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::sql::Conn;
use crate::store::StoreError;

/// Most writes committed together: enough to share one flush among a burst, few enough that a
/// batch's transaction stays short for the readers' snapshots.
const MAX_BATCH: usize = 256;
/// Writes waiting for the writer before callers wait to queue (back-pressure, not a limit on
/// correctness).
const QUEUE: usize = 4096;

/// One write waiting in the queue: run (maybe twice), then answered once.
trait Pending: Send {
    /// Runs the write on the batch's connection and keeps its result; true when it failed.
    fn run(&mut self, conn: &mut Conn) -> bool;
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
    F: for<'c> Fn(&'c mut Conn) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
{
    fn run(&mut self, conn: &mut Conn) -> bool {
        // A panic fails this write alone; the writer thread goes on.
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| (self.op)(conn).now_or_never()));
        let result = match polled {
            Ok(Some(result)) => result,
            Ok(None) => Err(StoreError::Commit("a write waited for something outside its transaction".into())),
            Err(_) => Err(StoreError::Commit("a write panicked".into())),
        };
        let failed = result.is_err();
        self.result = Some(result);
        failed
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let Op { result, answer, .. } = *self;
        let result = commit.and_then(|()| result.unwrap_or_else(|| Err(StoreError::Commit("the write never ran".into()))));
        let _ = answer.send(result);
    }
}

/// The handle every store clone shares; the thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    ops: mpsc::Sender<Box<dyn Pending>>,
}

impl Writer {
    /// Starts the writer thread on `conn`, the database at `path` (reopened if a failed
    /// rollback leaves the connection unusable).
    pub(crate) fn start(conn: rusqlite::Connection, path: PathBuf, durable: bool) -> std::io::Result<Self> {
        let (ops, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || run(Conn(conn), path, durable, queue))?;
        Ok(Self { ops })
    }

    /// Runs `op` in the next batch; its result once the batch is committed. An error of `op`
    /// undoes only its own writes; a failed commit fails every write of the batch.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut Conn) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let pending: Box<dyn Pending> = Box::new(Op { op, result: None, answer });
        self.ops.send(pending).await.map_err(|_| StoreError::Commit("the store is closed".into()))?;
        // No answer: the writer thread ended before this write was answered.
        answered.await.map_err(|_| StoreError::Commit("the batch failed before this write ran".into()))?
    }
}

fn run(mut conn: Conn, path: PathBuf, durable: bool, mut queue: mpsc::Receiver<Box<dyn Pending>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        commit(&mut conn, std::mem::take(&mut batch));
        batch.reserve(MAX_BATCH);
        if !conn.0.is_autocommit() {
            // SQLite already rolled back by itself after a full disk or an I/O error, or the
            // ROLLBACK failed: a connection still in a transaction would fail every later BEGIN.
            tracing::warn!("the write connection is stuck in a transaction; reopening it");
            match super::open(&path, durable, &[]) {
                Ok(fresh) => conn = Conn(fresh),
                Err(e) => tracing::error!(error = %e, "cannot reopen the write connection"),
            }
        }
    }
}

/// Runs `batch` in one transaction and answers every caller.
fn commit(conn: &mut Conn, mut batch: Vec<Box<dyn Pending>>) {
    let outcome = match run_batch(conn, &mut batch, false) {
        Ok(true) => Ok(()),
        // One write failed: everything was rolled back; again, each write in its savepoint.
        Ok(false) => run_batch(conn, &mut batch, true).map(|_| ()),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => batch.into_iter().for_each(|pending| pending.finish(Ok(()))),
        Err(e) => {
            let _ = execute(conn, "ROLLBACK");
            let text = e.to_string();
            tracing::warn!(error = %text, writes = batch.len(), "a group commit failed; its writes are undone");
            batch.into_iter().for_each(|pending| pending.finish(Err(StoreError::Commit(text.clone()))));
        }
    }
}

/// One transaction over `batch`. Without savepoints, the first failed write rolls everything
/// back and gives false; with them, a failed write is undone alone and the rest is committed.
fn run_batch(conn: &mut Conn, batch: &mut [Box<dyn Pending>], savepoints: bool) -> rusqlite::Result<bool> {
    // IMMEDIATE takes the write lock up front: a deferred transaction that upgrades from read
    // to write can fail with SQLITE_BUSY regardless of busy_timeout.
    execute(conn, "BEGIN IMMEDIATE")?;
    if batch.len() == 1 {
        // Alone in its batch: no savepoint needed, a failed write is simply rolled back.
        let failed = batch[0].run(conn);
        execute(conn, if failed { "ROLLBACK" } else { "COMMIT" })?;
        return Ok(true);
    }
    for pending in batch.iter_mut() {
        if !savepoints {
            if pending.run(conn) {
                execute(conn, "ROLLBACK")?;
                return Ok(false);
            }
            continue;
        }
        execute(conn, "SAVEPOINT op")?;
        if pending.run(conn) {
            execute(conn, "ROLLBACK TO op")?;
        }
        execute(conn, "RELEASE op")?;
    }
    execute(conn, "COMMIT")?;
    Ok(true)
}

fn execute(conn: &Conn, sql: &str) -> rusqlite::Result<()> {
    conn.0.prepare_cached(sql)?.execute([]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::super::sql::{Row, query};
    use super::*;

    /// Writes waiting together share one transaction; one that fails is undone alone, and every
    /// caller gets its own result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_in_a_batch_is_undone_alone_and_every_caller_gets_its_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = super::super::open(&path, false, &[]).unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)").unwrap();
        let writer = Writer::start(conn, path.clone(), false).unwrap();
        let mut calls = Vec::new();
        for n in 0..200i64 {
            let writer = writer.clone();
            calls.push(tokio::spawn(async move {
                writer
                    .write(move |conn| {
                        Box::pin(async move {
                            query("INSERT INTO t (n) VALUES ($1)").bind(n).execute(&mut *conn).await?;
                            if n % 7 == 0 {
                                // Fails after writing: its insert must not survive.
                                return Err(StoreError::NotFound(format!("n {n}")));
                            }
                            if n == 100 {
                                panic!("a bug in one write");
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
                Err(e) if n == 100 => assert!(e.to_string().contains("panicked"), "{e}"),
                Err(e) => assert!(n % 7 == 0 && e.to_string().contains(&format!("n {n}")), "{n}: {e}"),
            }
        }
        let conn = super::super::open(&path, false, &[]).unwrap();
        let stored: Vec<i64> =
            query("SELECT n FROM t ORDER BY n").fetch_all(&mut Conn(conn)).await.unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(stored, (0..200).filter(|n| n % 7 != 0 && *n != 100).collect::<Vec<i64>>());
    }
}
