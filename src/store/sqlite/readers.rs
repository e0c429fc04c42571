//! Connections for what runs outside the group commit: reads (the console, lookups, the
//! outbox's figures) and the few writes that need no batching (links, the token, media). In WAL
//! mode readers never wait for the writer. A statement runs on a blocking thread, since
//! SQLite's calls block.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::sql::Executor;

/// Connections open at most at once.
const READERS: usize = 4;

/// The readers' pool; clones share it.
#[derive(Debug, Clone)]
pub(crate) struct Readers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    durable: bool,
    idle: Mutex<Vec<rusqlite::Connection>>,
    permits: Semaphore,
}

impl Readers {
    pub(super) fn new(path: PathBuf, durable: bool) -> Self {
        Self { inner: Arc::new(Inner { path, durable, idle: Mutex::new(Vec::new()), permits: Semaphore::new(READERS) }) }
    }

    async fn run<R, W>(&self, work: W) -> rusqlite::Result<R>
    where
        R: Send + 'static,
        W: FnOnce(&rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let _permit = self.inner.permits.acquire().await.map_err(|_| closed())?;
        let idle = self.inner.idle.lock().map_err(|_| closed())?.pop();
        let inner = self.inner.clone();
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let conn = match idle {
                Some(conn) => conn,
                None => super::open(&inner.path, inner.durable, &[])?,
            };
            let result = work(&conn);
            Ok::<_, rusqlite::Error>((conn, result))
        })
        .await
        .map_err(|_| closed())??;
        // A connection left inside a transaction (a statement failed mid-way) is not reused.
        if conn.is_autocommit()
            && let Ok(mut idle) = self.inner.idle.lock()
        {
            idle.push(conn);
        }
        result
    }
}

/// The pool or its blocking task failed (the runtime is shutting down, or the work panicked).
fn closed() -> rusqlite::Error {
    let misuse = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISUSE);
    rusqlite::Error::SqliteFailure(misuse, Some("the reader connection's task failed".into()))
}

impl Executor for &Readers {
    fn run<R, W>(self, work: W) -> impl Future<Output = rusqlite::Result<R>> + Send
    where
        R: Send + 'static,
        W: FnOnce(&rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        Readers::run(self, work)
    }
}
