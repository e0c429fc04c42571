//! The accept loop: what `axum::serve` does, plus the limits it lacks (DESIGN.md "Flow and
//! guarantees" 4: slow or idle clients are timed out, connections are limited, SIGTERM ends the
//! process within 10 s).
//!
//! - Request heads must arrive within the header timeout (hyper's `header_read_timeout`). In
//!   hyper 1.x that timer starts whenever the connection waits for a head, so it also closes an
//!   HTTP/1 keep-alive connection that sends no next request within the header timeout.
//! - A connection that moves no byte either way for the idle timeout is closed. This covers what
//!   the header timer does not: a client that connects and says nothing (the HTTP/1-or-2 sniffing
//!   of the auto builder has no timer), idle HTTP/2 connections, clients that stop reading a
//!   response.
//! - At most `max_connections` are served at once (a semaphore), kept below the open-files limit;
//!   past it a connection gets `503` + `Connection: close` written on the raw socket and is
//!   closed, instead of waiting in the backlog until it times out.
//! - `accept` errors (EMFILE when out of descriptors) are logged and retried after a pause,
//!   never ending the loop nor spinning on it.
//! - On shutdown: stop accepting, ask every connection to finish (HTTP/1 closes after the response
//!   in flight, HTTP/2 sends GOAWAY), wait at most `SHUTDOWN_GRACE`, then drop what is left.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::HttpConfig;

/// How long in-flight requests may run on after shutdown starts. The outbox worker stops in
/// parallel; both must fit in the 10 s DESIGN.md allows from SIGTERM to exit.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Descriptors kept out of the connection cap: the database (and its WAL and journal), outbound
/// HTTP connections of the worker (one per job in a batch) and the clients, the listener, stdio.
const RESERVED_FDS: u64 = 128;

/// Refused connections being answered and closed at once; more are closed without an answer.
const REFUSALS_IN_FLIGHT: usize = 64;

/// What a connection past the cap is told. `Connection: close`, as we close right after.
const AT_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
content-length: 25\r\nretry-after: 1\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\nserver at capacity, retry";

/// How long a refused connection may take to send its request head, receive its 503 and hang up.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Pause after an `accept` error that is not the peer's fault (EMFILE, ENFILE, ENOBUFS): retrying
/// at once would spin, since the condition lasts until some connection closes.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves, then drains (bounded by
/// `SHUTDOWN_GRACE`) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let max_connections = connection_cap(limits.max_connections, crate::http::fd_limit::raise_to_hard_limit());
    let slots = Arc::new(Semaphore::new(max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tracing::info!(
        max_connections,
        header_timeout_secs = limits.header_timeout.as_secs(),
        idle_timeout_secs = limits.idle_timeout.as_secs(),
        "accepting connections"
    );

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Reap finished connections so the set does not grow with every one ever served.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let connection = Connection {
                            builder: builder.clone(),
                            router: router.clone(),
                            idle_timeout: limits.idle_timeout,
                            stop: stop_rx.clone(),
                            _slot: slot,
                        };
                        connections.spawn(connection.run(stream));
                    }
                    Err(_) => refuse(stream, &refusals),
                },
                Err(e) if is_peer_error(&e) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing before the next");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }

    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(open = connections.len(), "shutdown grace over; dropping the connections still open");
        connections.shutdown().await;
    }
    Ok(())
}

/// The configured cap, kept below the open-files limit (less what the rest of the bridge needs).
fn connection_cap(wanted: usize, open_files: Option<u64>) -> usize {
    let Some(open_files) = open_files else { return wanted };
    let room = open_files.saturating_sub(RESERVED_FDS + REFUSALS_IN_FLIGHT as u64).max(1);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if wanted > room {
        tracing::warn!(wanted, open_files, cap = room, "BRIDGE_MAX_CONNECTIONS lowered to fit the open-files limit");
    }
    wanted.min(room)
}

/// Errors about one connection that died before we took it: nothing to wait for.
fn is_peer_error(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset)
}

/// Answers 503 and closes, in the background and bounded in time and number.
fn refuse(mut stream: TcpStream, refusals: &Arc<Semaphore>) {
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        // Flooded: closing at once is all we can afford.
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            // Let the request head arrive first: an HTTP client that gets a response before it
            // has sent its request treats it as garbage, not as a 503.
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8 * 1024 {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            stream.write_all(AT_CAPACITY).await?;
            stream.shutdown().await?;
            // Read until the client hangs up: closing a socket with unread bytes (a body) sends
            // a reset, which may destroy the 503 before the client reads it.
            while stream.read(&mut buf).await? > 0 {}
            io::Result::Ok(())
        })
        .await;
    });
}

/// One accepted connection and what it needs to be served.
struct Connection {
    builder: Arc<Builder<TokioExecutor>>,
    router: Router,
    idle_timeout: Duration,
    stop: watch::Receiver<bool>,
    /// Held while the connection lives: its place under the cap.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let io = TokioIo::new(Tracked { inner: stream, activity: activity.clone() });
        let conn = self.builder.serve_connection_with_upgrades(io, TowerToHyperService::new(self.router));
        let mut conn = std::pin::pin!(conn);
        let mut draining = false;
        loop {
            let idle_deadline = activity.last() + self.idle_timeout;
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(idle_deadline) => {
                    if activity.last() + self.idle_timeout <= Instant::now() {
                        tracing::debug!("closing a connection idle for the idle timeout");
                        return;
                    }
                }
                _ = self.stop.wait_for(|stop| *stop), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// When a connection last moved a byte, shared between its socket and its watchdog.
#[derive(Clone)]
struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self { start: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A socket that records when bytes go through it.
struct Tracked {
    inner: TcpStream,
    activity: Activity,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_open_files_limit() {
        assert_eq!(connection_cap(512, Some(1024)), 512);
        assert_eq!(connection_cap(512, Some(512)), 512 - 128 - 64);
        assert_eq!(connection_cap(512, Some(100)), 1);
        assert_eq!(connection_cap(512, None), 512);
    }

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let text = std::str::from_utf8(AT_CAPACITY).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
    }
}
