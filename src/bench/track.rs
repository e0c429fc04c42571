//! What happened to each numbered message: when it was sent (or scheduled) and when it first
//! reached a fake, plus the counters the drain check and the figures need.
//!
//! Every message the benchmark sends carries a sequence number (`bench #N` in its text); the
//! fakes find it in what the bridge relays. Timestamps are nanoseconds since the tracker was
//! made, plus one, so zero means "not yet". Storage grows in chunks on first use, lock-free.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The marker before the sequence number in every message text.
pub const MARK: &str = "bench #";

const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;
/// 4,096 chunks of 65,536: 268 million messages, far beyond any run.
const CHUNKS: usize = 1 << 12;

/// Counters updated by the load generator (acks) and by the fakes (arrivals).
#[derive(Debug, Default)]
pub struct Counters {
    /// Customer messages the bridge acknowledged (`success`).
    pub inbound_acked: AtomicU64,
    /// Agents' messages the bridge accepted (2xx).
    pub outbound_acked: AtomicU64,
    /// Distinct customer messages that reached the platform fake.
    pub inbound_arrived: AtomicU64,
    /// Distinct agents' messages that reached the WeChat fake.
    pub outbound_arrived: AtomicU64,
    /// Delivery reports (`message.status`, `custom:wechat:status`) that reached the platform fake.
    pub statuses: AtomicU64,
    /// A message that arrived a second time (a redelivery).
    pub duplicates: AtomicU64,
    /// Requests to the fakes that carried no sequence number and no status (tokens, setup calls).
    pub other_requests: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

type Chunks = Box<[OnceLock<Box<[AtomicU64]>>]>;

/// Per-message timestamps and the counters.
pub struct Tracker {
    epoch: Instant,
    sent: Chunks,
    arrived: Chunks,
    pub counters: Counters,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker").field("counters", &self.counters).finish_non_exhaustive()
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

fn chunks() -> Chunks {
    (0..CHUNKS).map(|_| OnceLock::new()).collect()
}

fn slot(chunks: &Chunks, seq: u64) -> &AtomicU64 {
    let seq = seq as usize;
    let chunk = chunks[(seq >> CHUNK_BITS) % CHUNKS].get_or_init(|| (0..CHUNK).map(|_| AtomicU64::new(0)).collect());
    &chunk[seq & (CHUNK - 1)]
}

fn peek(chunks: &Chunks, seq: u64) -> u64 {
    let seq = seq as usize;
    chunks[(seq >> CHUNK_BITS) % CHUNKS].get().map_or(0, |chunk| chunk[seq & (CHUNK - 1)].load(Ordering::Relaxed))
}

impl Tracker {
    pub fn new() -> Self {
        Self { epoch: Instant::now(), sent: chunks(), arrived: chunks(), counters: Counters::default() }
    }

    /// `at` as the tracker's timestamp (never zero).
    pub fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64 + 1
    }

    pub fn now(&self) -> u64 {
        self.stamp(Instant::now())
    }

    /// Records when message `seq` was sent (for open-loop phases: when it was scheduled).
    pub fn mark_sent(&self, seq: u64, at: Instant) {
        slot(&self.sent, seq).store(self.stamp(at), Ordering::Relaxed);
    }

    /// Records the arrival of message `seq` at a fake; `false` when it had arrived before.
    pub fn arrive(&self, seq: u64) -> bool {
        let now = self.now();
        let first = slot(&self.arrived, seq).compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed).is_ok();
        if !first {
            self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        first
    }

    pub fn sent_at(&self, seq: u64) -> Option<u64> {
        Some(peek(&self.sent, seq)).filter(|t| *t != 0)
    }

    pub fn arrived_at(&self, seq: u64) -> Option<u64> {
        Some(peek(&self.arrived, seq)).filter(|t| *t != 0)
    }

    /// Time from sending to arrival of `seq`, when it arrived.
    pub fn latency(&self, seq: u64) -> Option<Duration> {
        let (sent, arrived) = (self.sent_at(seq)?, self.arrived_at(seq)?);
        Some(Duration::from_nanos(arrived.saturating_sub(sent)))
    }
}

/// The sequence number in a relayed body: the digits after [`MARK`].
pub fn seq_in(body: &[u8]) -> Option<u64> {
    let mark = MARK.as_bytes();
    let at = body.windows(mark.len()).position(|w| w == mark)? + mark.len();
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits]).ok()?.parse().ok()
}

/// Whether `needle` occurs in `body`.
pub fn contains(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_found_in_json_and_arrivals_counted_once() {
        assert_eq!(seq_in(br#"{"data":{"content":"bench #1234"}}"#), Some(1234));
        assert_eq!(seq_in(br#"{"text":{"content":"bench #7 tail"}}"#), Some(7));
        assert_eq!(seq_in(b"no number"), None);
        let tracker = Tracker::new();
        tracker.mark_sent(70_000, Instant::now());
        assert!(tracker.arrive(70_000));
        assert!(!tracker.arrive(70_000));
        assert_eq!(tracker.counters.duplicates.load(Ordering::Relaxed), 1);
        assert!(tracker.latency(70_000).is_some());
        assert!(tracker.latency(5).is_none());
    }
}
