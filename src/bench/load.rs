//! The load generator: HTTP/1.1 keep-alive connections (hyper's client connection, no pool
//! logic in the way), requests from a prepared [`Pool`].
//!
//! - Closed loop ([`closed_loop`]): `concurrency` senders, each on its own connection, each
//!   sending its next request as soon as the previous one is answered. Gives the most the server
//!   accepts at that concurrency, and the acknowledgement latency at it.
//! - Open loop ([`open_loop`]): requests on a fixed schedule (`rate` per second) whatever the
//!   answers, each on a free connection (more are opened as needed, up to a cap). Latency is
//!   counted from the scheduled time, not the actual send, so a stalled server is charged for
//!   the requests it held up (no coordinated omission).
//!
//! Several targets (bridge instances) share the load round-robin: in a closed loop connection n
//! goes to target n mod N (so at concurrency 1 only the first one answers; at 16, 6/5/5 of the
//! connections with three); in an open loop request i goes to target i mod N, on a free
//! connection to it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::requests::{Direction, Pool, Prepared};
use super::track::Tracker;

/// A request unanswered this long after it was due counts as failed, with this latency: WeChat
/// gives a push 5 seconds, then drops the connection and retries (`wechat-api.md` §4.1).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the load goes, and where successes are counted.
#[derive(Clone)]
pub struct Target {
    pub addrs: Vec<SocketAddr>,
    /// Set for the bridge: acks are counted and send times recorded for end-to-end latency.
    pub tracker: Option<Arc<Tracker>>,
}

impl Target {
    /// The `n`th target, round the list.
    fn index(&self, n: usize) -> usize {
        n % self.addrs.len()
    }

    fn addr(&self, n: usize) -> SocketAddr {
        self.addrs[self.index(n)]
    }
}

type Sender = SendRequest<Full<Bytes>>;

struct Conn {
    sender: Sender,
    host: HeaderValue,
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn { sender, host: HeaderValue::from_str(&addr.to_string())? })
}

/// Why a request failed: an unexpected answer, or no answer.
enum Failure {
    /// The status and the start of the answer.
    Status(u16, String),
    Transport(String),
}

/// One exchange, answered by `deadline` or failed. After a `Transport` failure the connection
/// is not reusable (a request may still be in flight on it).
async fn send(conn: &mut Conn, pool: &Pool, item: &Prepared, deadline: Instant) -> Result<(), Failure> {
    let mut request = Request::new(Full::new(item.body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = item.uri.clone();
    let headers = request.headers_mut();
    headers.insert(header::HOST, conn.host.clone());
    headers.insert(header::CONTENT_TYPE, pool.content_type.clone());
    if let Some(auth) = item.authorization.as_ref().or(pool.authorization.as_ref()) {
        headers.insert(header::AUTHORIZATION, auth.clone());
    }
    let exchange = async {
        conn.sender.ready().await.map_err(|e| Failure::Transport(e.to_string()))?;
        let response = conn.sender.send_request(request).await.map_err(|e| Failure::Transport(e.to_string()))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| Failure::Transport(e.to_string()))?.to_bytes();
        let ok = if pool.expect_success_body { status == 200 && body.as_ref() == b"success" } else { status.is_success() };
        if ok {
            Ok(())
        } else {
            let text: String = String::from_utf8_lossy(&body).chars().take(80).collect();
            Err(Failure::Status(status.as_u16(), text))
        }
    };
    match tokio::time::timeout_at(deadline.into(), exchange).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Transport(format!("no answer within {REQUEST_TIMEOUT:?}"))),
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub count: u64,
}

/// A histogram of microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    histogram.saturating_record((latency.as_micros() as u64).max(1));
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
            count: h.len(),
        }
    }
}

/// What one phase of load did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// Requests answered as expected.
    pub ok: u64,
    /// Requests answered otherwise, or not at all.
    pub errors: u64,
    /// The first few error kinds, for the log.
    pub error_samples: Vec<String>,
    /// From the first send to the last answer, seconds.
    pub elapsed_s: f64,
    /// `ok / elapsed_s`.
    pub per_s: f64,
    /// Acknowledgement latency (open loop: from the scheduled time).
    pub ack: Latency,
    /// The pool ran out before the time was up (the phase ended early).
    pub exhausted: bool,
    /// Open loop: the largest delay between a request's scheduled time and its sending, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_send_lag_ms: Option<f64>,
    /// Open loop: connections that were open at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
}

/// Shared tallies of a phase.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Tally {
    fn count(&self, target: &Target, pool: &Pool, result: Result<(), Failure>) {
        match result {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                if let Some(tracker) = &target.tracker {
                    let counter = match pool.direction {
                        Direction::Inbound => &tracker.counters.inbound_acked,
                        Direction::Outbound => &tracker.counters.outbound_acked,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(failure) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let text = match failure {
                    Failure::Status(status, text) if text.is_empty() => format!("HTTP {status}"),
                    Failure::Status(status, text) => format!("HTTP {status}: {text}"),
                    Failure::Transport(e) => e,
                };
                let mut samples = self.samples.lock().expect("samples");
                if samples.len() < 5 && !samples.contains(&text) {
                    samples.push(text);
                }
            }
        }
    }

    fn result(&self, elapsed: Duration, histogram: &Histogram<u64>, exhausted: bool) -> LoadResult {
        let ok = self.ok.load(Ordering::Relaxed);
        let elapsed_s = elapsed.as_secs_f64().max(1e-9);
        LoadResult {
            ok,
            errors: self.errors.load(Ordering::Relaxed),
            error_samples: self.samples.lock().expect("samples").clone(),
            elapsed_s,
            per_s: ok as f64 / elapsed_s,
            ack: Latency::of(histogram),
            exhausted,
            max_send_lag_ms: None,
            connections: None,
        }
    }
}

/// `concurrency` senders, each on its own connection, for `duration` or until the pool runs out.
pub async fn closed_loop(target: &Target, pool: Arc<Pool>, concurrency: usize, duration: Duration) -> anyhow::Result<LoadResult> {
    let concurrency = concurrency.max(1);
    // Every connection is open before the clock starts.
    let mut conns = Vec::with_capacity(concurrency);
    for n in 0..concurrency {
        conns.push(connect(target.addr(n)).await?);
    }
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for (n, mut conn) in conns.into_iter().enumerate() {
        let (target, pool, tally) = (target.clone(), pool.clone(), tally.clone());
        tasks.spawn(async move {
            let mut histogram = histogram();
            while Instant::now() < deadline {
                let Some(item) = pool.take() else { break };
                let sent = Instant::now();
                if let Some(tracker) = &target.tracker {
                    tracker.mark_sent(item.seq, sent);
                }
                let result = send(&mut conn, &pool, item, sent + REQUEST_TIMEOUT).await;
                record(&mut histogram, sent.elapsed());
                let broken = matches!(result, Err(Failure::Transport(_))) || conn.sender.is_closed();
                tally.count(&target, &pool, result);
                if broken {
                    // The server closed it (or it broke): a new one, as a browser or WeChat would.
                    match connect(target.addr(n)).await {
                        Ok(fresh) => conn = fresh,
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            }
            histogram
        });
    }
    let mut merged = histogram();
    while let Some(done) = tasks.join_next().await {
        merged.add(done?).map_err(|e| anyhow::anyhow!("histogram: {e}"))?;
    }
    Ok(tally.result(start.elapsed(), &merged, pool.exhausted()))
}

/// Connections of an open-loop phase: at most `slots` in use at once, the free ones kept per
/// target.
struct Conns {
    idle: Vec<Mutex<Vec<Conn>>>,
    slots: Semaphore,
}

/// `rate` requests per second for `duration` (or until the pool runs out), on at most
/// `max_connections` connections.
pub async fn open_loop(
    target: &Target,
    pool: Arc<Pool>,
    rate: f64,
    duration: Duration,
    max_connections: usize,
) -> anyhow::Result<LoadResult> {
    let conns = Arc::new(Conns {
        idle: target.addrs.iter().map(|_| Mutex::new(Vec::new())).collect(),
        slots: Semaphore::new(max_connections.max(1)),
    });
    // A few warm connections to each target; more are opened when all are busy.
    let warm = max_connections.clamp(1, 16).max(target.addrs.len());
    for n in 0..warm {
        let conn = connect(target.addr(n)).await?;
        conns.idle[target.index(n)].lock().expect("idle").push(conn);
    }
    let tally = Arc::new(Tally::default());
    let histogram = Arc::new(Mutex::new(histogram()));
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let start = Instant::now();
    let mut max_lag = Duration::ZERO;
    let mut tasks = JoinSet::new();
    let mut exhausted = false;
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        let now = Instant::now();
        if scheduled > now {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        max_lag = max_lag.max(Instant::now().saturating_duration_since(scheduled));
        let Some(item) = pool.take() else {
            exhausted = true;
            break;
        };
        if let Some(tracker) = &target.tracker {
            tracker.mark_sent(item.seq, scheduled);
        }
        let (target, pool, tally, histogram, conns) =
            (target.clone(), pool.clone(), tally.clone(), histogram.clone(), conns.clone());
        let item = item.clone();
        tasks.spawn(async move {
            // Due at `scheduled`: a request that waits for a connection past its deadline fails
            // unsent, as WeChat's would.
            let deadline = scheduled + REQUEST_TIMEOUT;
            let idle = &conns.idle[target.index(i as usize)];
            let result = match tokio::time::timeout_at(deadline.into(), conns.slots.acquire()).await {
                Ok(Ok(_slot)) => {
                    let free = idle.lock().expect("idle").pop();
                    let conn = match free {
                        Some(conn) => Ok(conn),
                        None => connect(target.addr(i as usize)).await,
                    };
                    match conn {
                        Ok(mut conn) => {
                            let result = send(&mut conn, &pool, &item, deadline).await;
                            if !matches!(result, Err(Failure::Transport(_))) && !conn.sender.is_closed() {
                                idle.lock().expect("idle").push(conn);
                            }
                            result
                        }
                        Err(e) => Err(Failure::Transport(format!("connect: {e}"))),
                    }
                }
                Ok(Err(_)) => return,
                Err(_) => Err(Failure::Transport(format!("not sent within {REQUEST_TIMEOUT:?}: every connection busy"))),
            };
            record(&mut histogram.lock().expect("histogram"), scheduled.elapsed());
            tally.count(&target, &pool, result);
        });
        // Reap finished tasks now and then so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let mut result = tally.result(start.elapsed(), &histogram.lock().expect("histogram"), exhausted);
    result.max_send_lag_ms = Some(max_lag.as_secs_f64() * 1000.0);
    result.connections = Some(conns.idle.iter().map(|idle| idle.lock().expect("idle").len()).sum());
    Ok(result)
}
