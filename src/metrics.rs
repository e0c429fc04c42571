//! Prometheus metrics: the families of DESIGN.md "Metrics", rendered as text by `GET /metrics`.
//!
//! # One registry per application, no global recorder
//! `app` builds one [`Metrics`] per `Application`: a `PrometheusRecorder` of its own (from
//! `PrometheusBuilder::build_recorder`) and its `PrometheusHandle`, behind an `Arc`. It is never
//! installed as the process's recorder, and nothing records through the `metrics` macros: every
//! count goes straight to this recorder (`Recorder::register_counter` with a `Key`). Two bridges
//! in one process (the tests start many) therefore never mix their counts, and a scrape shows
//! its own bridge alone. The handle travels with `relay::Signals`, which the adapters' webhooks
//! (through `Relay`), the outbox worker and the HTTP state already share; the remote clients
//! take a clone when `app` builds them. [`Metrics::default`] records nothing (parts built
//! without an application: unit tests, the simulators).
//!
//! # Every family from the start
//! [`Metrics::new`] registers each family at zero for the label values known then (both
//! directions, the usual message types, every job kind and outcome, `closed`/`quota`, …), and
//! each webhook declares its routes and the reasons it refuses with ([`Metrics::webhook_routes`]),
//! so dashboards and alerts see zeros instead of missing series.
//!
//! # Bounded labels
//! No label value comes from a request as it is: `route` is the matched path (`unmatched` for
//! the rest), a message type outside the known ones is `other`, a rejection reason is one word
//! from a fixed set ([`Rejection`]), and error codes are the remote side's (WeChat errcodes,
//! Vonage codes, HTTP statuses), cut to 64 characters.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::relay::DeliveryError;
use crate::relay::ids::BridgeMessageId;
use crate::relay::message::Direction;
use crate::store::{JobKind, OutboxStats};

pub const MESSAGES_ACCEPTED: &str = "bridge_messages_accepted_total";
pub const MESSAGES_DELIVERED: &str = "bridge_messages_delivered_total";
pub const MESSAGES_FAILED: &str = "bridge_messages_failed_total";
pub const DUPLICATES: &str = "bridge_duplicates_total";
pub const OUTBOX_DEPTH: &str = "bridge_outbox_depth";
pub const OUTBOX_OLDEST_AGE: &str = "bridge_outbox_oldest_age_seconds";
pub const DELIVERY_ATTEMPTS: &str = "bridge_delivery_attempts_total";
pub const DELIVERY_LATENCY: &str = "bridge_delivery_latency_seconds";
pub const REMOTE_ERRORS: &str = "bridge_remote_errors_total";
pub const TOKEN_REFRESHES: &str = "bridge_token_refreshes_total";
pub const WINDOW_REFUSALS: &str = "bridge_reply_window_refusals_total";
pub const WEBHOOK_REJECTIONS: &str = "bridge_webhook_rejections_total";
pub const HTTP_REQUESTS: &str = "bridge_http_requests_total";
pub const HTTP_DURATION: &str = "bridge_http_request_duration_seconds";

const COUNTERS: &[(&str, &str)] = &[
    (MESSAGES_ACCEPTED, "Messages newly stored, each way (duplicates not counted)."),
    (MESSAGES_DELIVERED, "Messages delivered to the other side."),
    (MESSAGES_FAILED, "Messages failed for good, by the remote side's error code (none when it gave none)."),
    (DUPLICATES, "Retries and redeliveries dropped as duplicates, by the side that sent them."),
    (DELIVERY_ATTEMPTS, "Outbox job attempts by kind and outcome (ok, retry, permanent)."),
    (REMOTE_ERRORS, "Errors answered by a remote API (or no answer: transport), by API and code."),
    (TOKEN_REFRESHES, "Access tokens fetched: ahead of expiry (or none stored), or after the old one was refused."),
    (WINDOW_REFUSALS, "Replies refused before any remote call: reply window closed, or its quota used."),
    (WEBHOOK_REJECTIONS, "4xx answers of the webhook routes, by matched path and reason."),
    (HTTP_REQUESTS, "HTTP requests answered, by matched path and status."),
];
const GAUGES: &[(&str, &str)] = &[
    (OUTBOX_DEPTH, "Unfinished outbox jobs (pending or running) by kind, read when scraped."),
    (OUTBOX_OLDEST_AGE, "Age of the oldest due pending outbox job (0 when none), read when scraped."),
];
const HISTOGRAMS: &[(&str, &str)] = &[
    (DELIVERY_LATENCY, "From a message's accept to its delivery (messages only, not status reports)."),
    (HTTP_DURATION, "Time to answer an HTTP request (to its headers, for streams), by matched path."),
];

/// Accept to delivery: from a fast relay to an outage worked off by retries.
const LATENCY_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
/// Webhooks answer in milliseconds; the request timeout is 4 s.
const HTTP_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Message types counted by name (DESIGN.md "The event body"); any other is `other`.
const INBOUND_MSGTYPES: &[&str] = &["text", "image", "voice", "video", "shortvideo", "location", "link", "file", "event"];
const OUTBOUND_MSGTYPES: &[&str] = &["text", "image", "voice", "video", "news"];
const JOB_KINDS: [JobKind; 3] = [JobKind::DeliverInbound, JobKind::DeliverOutbound, JobKind::ReportStatus];
/// Longest error code kept as a label value.
const MAX_CODE_CHARS: usize = 64;
/// The route of the one request every scrape makes: its series exist from the start.
const METRICS_ROUTE: &str = "/metrics";

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// One application's metrics. Clones share the registry.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The channel and the platform this bridge relays between (labels of the message families).
    channel: &'static str,
    platform: &'static str,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.inner.as_ref().map(|i| (i.channel, i.platform));
        f.debug_struct("Metrics").field("between", &names).finish_non_exhaustive()
    }
}

/// How an outbox job's attempt ended, as `bridge_delivery_attempts_total` counts it.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Ok,
    /// Rescheduled for another try.
    Retry,
    /// Failed for good: a permanent error, or a retryable one on the last allowed attempt.
    Permanent {
        code: Option<String>,
    },
}

impl Attempt {
    /// The attempt that produced `outcome`; `last` when no retry is allowed after it.
    pub fn of<T>(outcome: &Result<T, DeliveryError>, last: bool) -> Self {
        match outcome {
            Ok(_) => Attempt::Ok,
            Err(DeliveryError::Permanent { code, .. }) => Attempt::Permanent { code: code.as_ref().map(|c| c.to_string()) },
            Err(DeliveryError::Retry { .. }) if last => Attempt::Permanent { code: None },
            Err(DeliveryError::Retry { .. }) => Attempt::Retry,
        }
    }

    fn as_str(&self) -> &'static str {
        match self {
            Attempt::Ok => "ok",
            Attempt::Retry => "retry",
            Attempt::Permanent { .. } => "permanent",
        }
    }
}

/// Why an access token was fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefresh {
    /// None stored, or the stored one is about to expire.
    Expiry,
    /// The remote API refused the current one.
    Invalid,
}

/// Why a reply was refused before any remote call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowRefusal {
    /// The customer has not written recently enough.
    Closed,
    /// The replies allowed in the window are used up.
    Quota,
}

/// Why a webhook route answered 4xx, as one short stable word (`signature`, `stale`, `replay`,
/// `malformed`, `content_type`, `too_large`, …). A webhook's error type puts it on its response;
/// [`mark_rejections`] names the rest by status, and the HTTP middleware counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection(pub &'static str);

impl Rejection {
    /// The reason a status alone gives (axum's own refusals: a body over the limit, a bad query).
    pub fn of_status(status: StatusCode) -> Self {
        Rejection(match status.as_u16() {
            400 => "malformed",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            405 => "method",
            408 => "timeout",
            409 => "conflict",
            413 => "too_large",
            415 => "content_type",
            422 => "invalid",
            429 => "rate_limited",
            _ => "other",
        })
    }

    /// `response` carrying this reason.
    pub fn on(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }
}

/// A `route_layer` for webhook routes (`axum::middleware::map_response(mark_rejections)`): every
/// 4xx they answer is a rejection; one its handler did not name is named by its status.
pub async fn mark_rejections(response: Response) -> Response {
    let status = response.status();
    if status.is_client_error() && response.extensions().get::<Rejection>().is_none() {
        return Rejection::of_status(status).on(response);
    }
    response
}

impl Metrics {
    /// A registry of its own for a bridge between `channel` and `platform`, every family present.
    pub fn new(channel: &'static str, platform: &'static str) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DELIVERY_LATENCY.into()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), HTTP_BUCKETS))
            .expect("bucket lists are not empty")
            .build_recorder();
        for (name, help) in COUNTERS {
            recorder.describe_counter(KeyName::from(*name), None, SharedString::const_str(help));
        }
        for (name, help) in GAUGES {
            let unit = name.ends_with("_seconds").then_some(Unit::Seconds);
            recorder.describe_gauge(KeyName::from(*name), unit, SharedString::const_str(help));
        }
        for (name, help) in HISTOGRAMS {
            recorder.describe_histogram(KeyName::from(*name), Some(Unit::Seconds), SharedString::const_str(help));
        }
        let handle = recorder.handle();
        let inner = Inner { recorder, handle, channel, platform };
        inner.register_known();
        Self { inner: Some(Arc::new(inner)) }
    }

    /// The text a scrape gets (Prometheus exposition format 0.0.4).
    pub fn render(&self) -> String {
        self.inner.as_ref().map(|i| i.handle.render()).unwrap_or_default()
    }

    /// Moves recorded histogram samples into their buckets; a scrape does it too, this keeps
    /// memory flat between scrapes (`app` runs it every few seconds).
    pub fn run_upkeep(&self) {
        if let Some(inner) = &self.inner {
            inner.handle.run_upkeep();
        }
    }

    /// A message was newly stored.
    pub fn accepted(&self, direction: Direction, msgtype: &str) {
        if let Some(i) = &self.inner {
            let labels = [
                ("direction", direction.as_str()),
                ("channel", i.channel),
                ("platform", i.platform),
                ("msgtype", msgtype_label(msgtype)),
            ];
            i.count(MESSAGES_ACCEPTED, &labels, 1);
        }
    }

    /// An accept found the message stored already: `source` (the store's message source, the
    /// side that sent it) retried or redelivered it.
    pub fn duplicate(&self, source: &str) {
        if let Some(i) = &self.inner {
            i.count(DUPLICATES, &[("source", source)], 1);
        }
    }

    /// An outbox job's attempt was recorded: the attempt, and for a message (not a status
    /// report) its delivery or failure, with the time since it was accepted.
    pub fn job_done(&self, kind: JobKind, message_id: &BridgeMessageId, attempt: &Attempt) {
        let Some(i) = &self.inner else { return };
        i.count(DELIVERY_ATTEMPTS, &[("kind", kind.as_str()), ("outcome", attempt.as_str())], 1);
        let Some(direction) = direction_of(kind) else { return };
        let sides = [("direction", direction.as_str()), ("channel", i.channel), ("platform", i.platform)];
        match attempt {
            Attempt::Ok => {
                i.count(MESSAGES_DELIVERED, &sides, 1);
                // The id is a UUIDv7 made when the message was stored: it holds the accept time.
                if let Some(accepted_ms) = message_id.created_at_ms() {
                    let seconds = (crate::store::now_ms() - accepted_ms).max(0) as f64 / 1000.0;
                    i.observe(DELIVERY_LATENCY, &[("direction", direction.as_str())], seconds);
                }
            }
            Attempt::Permanent { code } => {
                let code = code_label(code.as_deref().unwrap_or("none"));
                let [d, c, p] = sides;
                i.count(MESSAGES_FAILED, &[d, c, p, ("code", code.as_str())], 1);
            }
            Attempt::Retry => {}
        }
    }

    /// A remote API (`wechat`, `vonage`, `webhook`, `chatwoot`) answered with an error `code`
    /// (its own code, else the HTTP status; `transport` when it did not answer).
    pub fn remote_error(&self, api: &'static str, code: &str) {
        if let Some(i) = &self.inner {
            i.count(REMOTE_ERRORS, &[("api", api), ("code", &code_label(code))], 1);
        }
    }

    /// An access token was fetched.
    pub fn token_refreshed(&self, reason: TokenRefresh) {
        if let Some(i) = &self.inner {
            i.count(TOKEN_REFRESHES, &[("reason", token_reason(reason))], 1);
        }
    }

    /// A reply was refused before any remote call.
    pub fn window_refused(&self, reason: WindowRefusal) {
        if let Some(i) = &self.inner {
            i.count(WINDOW_REFUSALS, &[("reason", window_reason(reason))], 1);
        }
    }

    /// Declares webhook `routes` (matched paths) and the `reasons` they refuse with (`too_large`
    /// for a route that takes a body: axum's answer past the limit): each pair counts from zero.
    pub fn webhook_routes(&self, routes: &[&str], reasons: &[&'static str]) {
        if let Some(i) = &self.inner {
            for route in routes {
                for reason in reasons {
                    i.count(WEBHOOK_REJECTIONS, &[("route", route), ("reason", reason)], 0);
                }
            }
        }
    }

    /// An HTTP request on `route` (the matched path, or `unmatched`) was answered with `status`
    /// after `elapsed`; a 4xx carrying a [`Rejection`] is a webhook's rejection.
    pub fn http_request(&self, route: &str, status: StatusCode, elapsed: Duration, rejection: Option<&Rejection>) {
        let Some(i) = &self.inner else { return };
        i.count(HTTP_REQUESTS, &[("route", route), ("status", status.as_str())], 1);
        i.observe(HTTP_DURATION, &[("route", route)], elapsed.as_secs_f64());
        if let Some(Rejection(reason)) = rejection.filter(|_| status.is_client_error()) {
            i.count(WEBHOOK_REJECTIONS, &[("route", route), ("reason", reason)], 1);
        }
    }

    /// The outbox as the store reads it when a scrape comes (`now` in Unix milliseconds).
    pub fn set_outbox(&self, stats: &OutboxStats, now: i64) {
        let Some(i) = &self.inner else { return };
        for kind in JOB_KINDS {
            let depth = stats.depth.iter().find(|(k, _)| k == kind.as_str()).map_or(0, |(_, n)| *n);
            i.set(OUTBOX_DEPTH, &[("kind", kind.as_str())], depth as f64);
        }
        let age = stats.oldest_due_created_at.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
        i.set(OUTBOX_OLDEST_AGE, &[], age);
    }
}

impl Inner {
    fn count(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        self.recorder.register_counter(&key(name, labels), &METADATA).increment(n);
    }

    fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.recorder.register_histogram(&key(name, labels), &METADATA).record(value);
    }

    /// A histogram series with no sample yet: rendered with empty buckets.
    fn declare_histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        let _ = self.recorder.register_histogram(&key(name, labels), &METADATA);
    }

    fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.recorder.register_gauge(&key(name, labels), &METADATA).set(value);
    }

    /// Every family at zero for the label values known now.
    fn register_known(&self) {
        for (direction, types) in [(Direction::Inbound, INBOUND_MSGTYPES), (Direction::Outbound, OUTBOUND_MSGTYPES)] {
            let d = ("direction", direction.as_str());
            let (c, p) = (("channel", self.channel), ("platform", self.platform));
            for msgtype in types {
                self.count(MESSAGES_ACCEPTED, &[d, c, p, ("msgtype", msgtype)], 0);
            }
            self.count(MESSAGES_DELIVERED, &[d, c, p], 0);
            self.count(MESSAGES_FAILED, &[d, c, p, ("code", "none")], 0);
            self.declare_histogram(DELIVERY_LATENCY, &[d]);
        }
        for side in [self.channel, self.platform] {
            self.count(DUPLICATES, &[("source", side)], 0);
            self.count(REMOTE_ERRORS, &[("api", side), ("code", "transport")], 0);
        }
        for kind in JOB_KINDS {
            for outcome in [Attempt::Ok, Attempt::Retry, Attempt::Permanent { code: None }] {
                self.count(DELIVERY_ATTEMPTS, &[("kind", kind.as_str()), ("outcome", outcome.as_str())], 0);
            }
            self.set(OUTBOX_DEPTH, &[("kind", kind.as_str())], 0.0);
        }
        self.set(OUTBOX_OLDEST_AGE, &[], 0.0);
        for reason in [TokenRefresh::Expiry, TokenRefresh::Invalid] {
            self.count(TOKEN_REFRESHES, &[("reason", token_reason(reason))], 0);
        }
        for reason in [WindowRefusal::Closed, WindowRefusal::Quota] {
            self.count(WINDOW_REFUSALS, &[("reason", window_reason(reason))], 0);
        }
        self.count(HTTP_REQUESTS, &[("route", METRICS_ROUTE), ("status", "200")], 0);
        self.declare_histogram(HTTP_DURATION, &[("route", METRICS_ROUTE)]);
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(name, labels.iter().map(|(k, v)| Label::new(*k, v.to_string())).collect::<Vec<_>>())
}

/// Which way a job's message goes; `None` for a status report, which is not a message.
fn direction_of(kind: JobKind) -> Option<Direction> {
    match kind {
        JobKind::DeliverInbound => Some(Direction::Inbound),
        JobKind::DeliverOutbound => Some(Direction::Outbound),
        JobKind::ReportStatus => None,
    }
}

fn msgtype_label(msgtype: &str) -> &str {
    if INBOUND_MSGTYPES.contains(&msgtype) || OUTBOUND_MSGTYPES.contains(&msgtype) { msgtype } else { "other" }
}

fn code_label(code: &str) -> String {
    code.chars().take(MAX_CODE_CHARS).collect()
}

fn token_reason(reason: TokenRefresh) -> &'static str {
    match reason {
        TokenRefresh::Expiry => "expiry",
        TokenRefresh::Invalid => "invalid",
    }
}

fn window_reason(reason: WindowRefusal) -> &'static str {
    match reason {
        WindowRefusal::Closed => "closed",
        WindowRefusal::Quota => "quota",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_registries_keep_their_own_counts_and_the_default_records_nothing() {
        let (a, b) = (Metrics::new("wechat", "vonage"), Metrics::new("wechat", "vonage"));
        a.duplicate("wechat");
        a.duplicate("wechat");
        b.duplicate("wechat");
        assert!(a.render().contains("bridge_duplicates_total{source=\"wechat\"} 2"), "{}", a.render());
        assert!(b.render().contains("bridge_duplicates_total{source=\"wechat\"} 1"), "{}", b.render());
        let none = Metrics::default();
        none.duplicate("wechat");
        assert_eq!(none.render(), "");
    }

    #[test]
    fn unknown_message_types_and_long_codes_stay_bounded() {
        assert_eq!(msgtype_label("shortvideo"), "shortvideo");
        assert_eq!(msgtype_label("miniprogrampage"), "other");
        assert_eq!(code_label(&"x".repeat(500)).len(), MAX_CODE_CHARS);
    }

    #[test]
    fn a_message_id_tells_when_it_was_made() {
        let before = crate::store::now_ms();
        let made = BridgeMessageId::generate().created_at_ms().unwrap();
        assert!(made >= before && made <= crate::store::now_ms());
        assert_eq!(BridgeMessageId::from_raw("not-a-uuid").created_at_ms(), None);
    }

    #[test]
    fn a_retry_on_the_last_attempt_is_permanent() {
        let retry: Result<(), _> = Err(DeliveryError::Retry { reason: "busy".into(), after: None });
        assert_eq!(Attempt::of(&retry, false), Attempt::Retry);
        assert_eq!(Attempt::of(&retry, true), Attempt::Permanent { code: None });
        let closed: Result<(), _> = Err(DeliveryError::Permanent { code: Some("45015".into()), reason: "closed".into() });
        assert_eq!(Attempt::of(&closed, false), Attempt::Permanent { code: Some("45015".into()) });
    }

    #[test]
    fn every_family_is_rendered_from_the_start_histograms_as_histograms() {
        let text = Metrics::new("wechat", "vonage").render();
        for (name, _) in COUNTERS.iter().chain(GAUGES) {
            // Rejections appear once a webhook declares its routes.
            if *name != WEBHOOK_REJECTIONS {
                assert!(text.contains(&format!("\n{name}{{")) || text.contains(&format!("\n{name} ")), "{name}:\n{text}");
            }
        }
        for (name, _) in HISTOGRAMS {
            assert!(text.contains(&format!("# TYPE {name} histogram")), "{name}:\n{text}");
        }
    }
}
