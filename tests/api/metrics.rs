//! `GET /metrics`: every family of DESIGN.md "Metrics" from the first scrape, the counters
//! moving by what happened (accepts, duplicates, forged pushes, failures, refused replies),
//! route labels that are matched paths, one registry per application, and `--log-format json`
//! carrying the message id of a delivery in its span.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use wechat_bridge::app::WorkerMode;
use wechat_bridge::wechat::message::{Body, Event};
use wechat_bridge::wechat::sim::PushMode;

use crate::binary::{self, Sims, Workdir};
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

/// The families, their types and label names, as DESIGN.md fixes them.
const FAMILIES: &[(&str, &str, &[&str])] = &[
    ("bridge_messages_accepted_total", "counter", &["direction", "channel", "platform", "msgtype"]),
    ("bridge_messages_delivered_total", "counter", &["direction", "channel", "platform"]),
    ("bridge_messages_failed_total", "counter", &["direction", "channel", "platform", "code"]),
    ("bridge_duplicates_total", "counter", &["source"]),
    ("bridge_outbox_depth", "gauge", &["kind"]),
    ("bridge_outbox_oldest_age_seconds", "gauge", &[]),
    ("bridge_delivery_attempts_total", "counter", &["kind", "outcome"]),
    ("bridge_delivery_latency_seconds", "histogram", &["direction"]),
    ("bridge_remote_errors_total", "counter", &["api", "code"]),
    ("bridge_token_refreshes_total", "counter", &["reason"]),
    ("bridge_reply_window_refusals_total", "counter", &["reason"]),
    ("bridge_webhook_rejections_total", "counter", &["route", "reason"]),
    ("bridge_http_requests_total", "counter", &["route", "status"]),
    ("bridge_http_request_duration_seconds", "histogram", &["route"]),
];

/// One scrape, parsed: `# TYPE` lines and samples.
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').expect("labels end with }"))),
                None => (series, BTreeMap::new()),
            };
            samples.push((name.to_string(), labels, value));
        }
        Scrape { types, samples }
    }

    /// The samples of `name` whose labels include `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a (String, BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(move |(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
    }

    /// The sum of `name`'s samples with `labels` (0 when there is none).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|(_, _, v)| v).sum()
    }

    /// Whether a series `name` with exactly these label values exists.
    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.matching(name, labels).next().is_some()
    }
}

/// `k="v",k2="v2"` (values here never hold quotes or commas).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("label=value");
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

async fn scrape(address: &str) -> Scrape {
    let response = reqwest::get(format!("{address}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    Scrape::parse(&response.text().await.unwrap())
}

/// Scrapes until `name{labels}` sums to `expected` (counts are recorded just after the store
/// write a test may see first).
async fn wait_value(app: &TestApp, name: &str, labels: &[(&str, &str)], expected: f64) -> Scrape {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = scrape(&app.address).await;
        let got = s.value(name, labels);
        if got == expected {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name}{labels:?} stayed {got}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

const ACCEPTED: &str = "bridge_messages_accepted_total";
const DELIVERED: &str = "bridge_messages_delivered_total";
const FAILED: &str = "bridge_messages_failed_total";
const ATTEMPTS: &str = "bridge_delivery_attempts_total";
const REMOTE: &str = "bridge_remote_errors_total";
const LATENCY_COUNT: &str = "bridge_delivery_latency_seconds_count";
const REQUESTS: &str = "bridge_http_requests_total";
const REJECTIONS: &str = "bridge_webhook_rejections_total";

#[tokio::test]
async fn every_family_is_there_from_the_first_scrape_at_zero() {
    let app = spawn_app().await;
    let s = scrape(&app.address).await;
    for (name, kind, labels) in FAMILIES {
        assert_eq!(s.types.get(*name).map(String::as_str), Some(*kind), "# TYPE of {name}");
        let sample_name = if *kind == "histogram" { format!("{name}_count") } else { name.to_string() };
        let series: Vec<_> = s.matching(&sample_name, &[]).collect();
        assert!(!series.is_empty(), "{name} has no series at start");
        for (_, l, value) in series {
            assert_eq!(l.keys().map(String::as_str).collect::<Vec<_>>(), {
                let mut sorted = labels.to_vec();
                sorted.sort();
                sorted
            });
            assert_eq!(*value, 0.0, "{name}{l:?} is not 0 at start");
        }
    }
    // Known label values are there at zero.
    let vonage = [("channel", "wechat"), ("platform", "vonage")];
    for (direction, msgtype) in [("inbound", "text"), ("inbound", "event"), ("inbound", "image"), ("outbound", "text")] {
        let labels = [&vonage[..], &[("direction", direction), ("msgtype", msgtype)]].concat();
        assert!(s.has(ACCEPTED, &labels), "{labels:?}");
    }
    for kind in ["deliver_inbound", "deliver_outbound", "report_status"] {
        assert!(s.has("bridge_outbox_depth", &[("kind", kind)]), "{kind}");
        for outcome in ["ok", "retry", "permanent"] {
            assert!(s.has(ATTEMPTS, &[("kind", kind), ("outcome", outcome)]), "{kind} {outcome}");
        }
    }
    assert!(
        s.has("bridge_duplicates_total", &[("source", "wechat")]) && s.has("bridge_duplicates_total", &[("source", "vonage")])
    );
    assert!(s.has("bridge_token_refreshes_total", &[("reason", "expiry")]));
    assert!(s.has("bridge_token_refreshes_total", &[("reason", "invalid")]));
    assert!(s.has("bridge_reply_window_refusals_total", &[("reason", "closed")]));
    assert!(s.has("bridge_reply_window_refusals_total", &[("reason", "quota")]));
    for route in ["/webhooks/wechat", "/weChatEvent", "/webhooks/vonage/rtc", "/rtcEvent"] {
        for reason in ["signature", "stale", "malformed", "too_large"] {
            assert!(s.has(REJECTIONS, &[("route", route), ("reason", reason)]), "{route} {reason}");
        }
    }
    assert!(s.has(REJECTIONS, &[("route", "/webhooks/wechat"), ("reason", "replay")]));
}

/// A push whose `signature` is wrong (everything else as WeChat would send it).
async fn forged_push(app: &TestApp, openid: &str) -> u16 {
    let (query, body) = app.wechat.signed_request(&app.wechat.text(openid, "forged"), PushMode::Safe, now_secs());
    let forged: String = query
        .split('&')
        .map(|p| {
            if p.starts_with("signature=") {
                "signature=0000000000000000000000000000000000000000".to_string()
            } else {
                p.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&");
    app.wechat.post_raw(&app.webhook(), &forged, body).await.unwrap().status
}

fn now_secs() -> i64 {
    wechat_bridge::store::now_ms() / 1000
}

#[tokio::test]
async fn customer_messages_duplicates_forgeries_failures_and_retries_are_counted() {
    let app = spawn_app().await;
    let first = app.wechat.text("o_metrics_in", "one");
    assert_eq!(app.push(&first, PushMode::Safe).await.status, 200);
    // WeChat's retry of the same push: a duplicate, answered `success`, stored once.
    assert_eq!(app.push(&first, PushMode::Safe).await.body, "success");
    assert_eq!(forged_push(&app, "o_metrics_in").await, 401);
    wait_value(&app, DELIVERED, &[("direction", "inbound")], 1.0).await;

    // The platform refuses the next message for good, then is busy once for the one after.
    app.platform_fails_next(1, 400, None);
    assert_eq!(app.push(&app.wechat.text("o_metrics_in", "two"), PushMode::Safe).await.status, 200);
    wait_value(&app, FAILED, &[("direction", "inbound")], 1.0).await;
    app.platform_fails_next(1, 503, None);
    assert_eq!(app.push(&app.wechat.text("o_metrics_in", "three"), PushMode::Safe).await.status, 200);
    let s = wait_value(&app, DELIVERED, &[("direction", "inbound")], 2.0).await;

    let sides = [("channel", "wechat"), ("platform", "vonage")];
    assert_eq!(s.value(ACCEPTED, &[&sides[..], &[("direction", "inbound"), ("msgtype", "text")]].concat()), 3.0);
    assert_eq!(s.value(ACCEPTED, &[("direction", "outbound")]), 0.0);
    assert_eq!(s.value("bridge_duplicates_total", &[("source", "wechat")]), 1.0);
    assert_eq!(s.value("bridge_duplicates_total", &[("source", "vonage")]), 0.0);
    assert_eq!(s.value(REJECTIONS, &[("route", "/webhooks/wechat"), ("reason", "signature")]), 1.0);
    assert_eq!(s.value(REJECTIONS, &[]), 1.0, "nothing else was rejected");
    assert_eq!(s.value(REQUESTS, &[("route", "/webhooks/wechat"), ("status", "401")]), 1.0);
    assert_eq!(s.value(REQUESTS, &[("route", "/webhooks/wechat"), ("status", "200")]), 4.0);
    assert_eq!(s.value("bridge_http_request_duration_seconds_count", &[("route", "/webhooks/wechat")]), 5.0);
    // The failure carries the platform's code, as the store recorded it.
    let failed = app.store.messages(Some("failed"), 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    let code = failed[0].error_code.as_ref().map_or("none".to_string(), |c| c.to_string());
    assert_eq!(s.value(FAILED, &[&sides[..], &[("direction", "inbound"), ("code", &code)]].concat()), 1.0, "code {code}");
    assert_eq!(s.value(ATTEMPTS, &[("kind", "deliver_inbound"), ("outcome", "ok")]), 2.0);
    assert_eq!(s.value(ATTEMPTS, &[("kind", "deliver_inbound"), ("outcome", "permanent")]), 1.0);
    assert_eq!(s.value(ATTEMPTS, &[("kind", "deliver_inbound"), ("outcome", "retry")]), 1.0);
    assert_eq!(s.value(REMOTE, &[("api", "vonage")]), 2.0, "the 400 and the 503");
    assert_eq!(s.value(REMOTE, &[("api", "wechat")]), 0.0);
    // Accept → delivered, for the two delivered messages.
    assert_eq!(s.value(LATENCY_COUNT, &[("direction", "inbound")]), 2.0);
    assert!(s.value("bridge_delivery_latency_seconds_sum", &[("direction", "inbound")]) > 0.0);
    assert_eq!(s.value("bridge_outbox_depth", &[]), 0.0);
}

fn agent_says(app: &TestApp, conv: &str, agent: &str, content: &str) {
    app.vonage
        .post_event_as_client(
            conv,
            json!({"type": "custom:wechat:message", "from": agent, "body": {"content": content, "direction": "outbound"}}),
        )
        .expect("the simulator takes the agent's event");
}

#[tokio::test]
async fn replies_tokens_and_refusals_before_and_after_a_remote_call_are_counted() {
    let app = spawn_app().await;
    let openid = "o_metrics_out";
    assert_eq!(app.push(&app.wechat.text(openid, "hello"), PushMode::Safe).await.status, 200);
    wait_for("the inbound event", WAIT, || async { !app.wechat_events().is_empty() }).await;
    let conv = app.wechat_events()[0].0.clone();
    let agent = app.vonage.create_agent("agent_metrics", &conv);

    // The first reply fetches a token; a revoked one is refused (40001) and renewed.
    agent_says(&app, &conv, &agent, "one");
    wait_value(&app, DELIVERED, &[("direction", "outbound")], 1.0).await;
    app.wechat.revoke_tokens();
    agent_says(&app, &conv, &agent, "two");
    let s = wait_value(&app, DELIVERED, &[("direction", "outbound")], 2.0).await;
    assert_eq!(s.value("bridge_token_refreshes_total", &[("reason", "expiry")]), 1.0);
    assert_eq!(s.value("bridge_token_refreshes_total", &[("reason", "invalid")]), 1.0);
    assert_eq!(s.value(REMOTE, &[("api", "wechat"), ("code", "40001")]), 1.0);

    // WeChat itself refuses a reply outside its window: a remote error, not a refusal of ours.
    app.wechat.close_window(openid);
    agent_says(&app, &conv, &agent, "three");
    let s = wait_value(&app, FAILED, &[("direction", "outbound"), ("code", "45015")], 1.0).await;
    assert_eq!(s.value(REMOTE, &[("api", "wechat"), ("code", "45015")]), 1.0);
    assert_eq!(s.value("bridge_reply_window_refusals_total", &[]), 0.0);

    // The customer unsubscribes: the bridge's window closes and the next reply is refused
    // without calling WeChat.
    let mut unsubscribe = app.wechat.text(openid, "");
    unsubscribe.body = Body::Event(Event::Unsubscribe);
    assert_eq!(app.push(&unsubscribe, PushMode::Safe).await.status, 200);
    wait_value(&app, ACCEPTED, &[("direction", "inbound"), ("msgtype", "event")], 1.0).await;
    let sends = app.wechat.sent().len();
    agent_says(&app, &conv, &agent, "four");
    let s = wait_value(&app, FAILED, &[("direction", "outbound"), ("code", "45015")], 2.0).await;
    assert_eq!(app.wechat.sent().len(), sends);
    assert_eq!(s.value("bridge_reply_window_refusals_total", &[("reason", "closed")]), 1.0);
    assert_eq!(s.value("bridge_reply_window_refusals_total", &[("reason", "quota")]), 0.0);
    assert_eq!(s.value(REMOTE, &[("api", "wechat"), ("code", "45015")]), 1.0, "no remote call for the refusal");

    // Every outcome goes back as a status report: attempts, but neither messages nor latency.
    let s = wait_value(&app, ATTEMPTS, &[("kind", "report_status"), ("outcome", "ok")], 4.0).await;
    assert_eq!(s.value(ACCEPTED, &[("direction", "outbound"), ("msgtype", "text")]), 4.0);
    assert_eq!(s.value(ACCEPTED, &[("direction", "inbound"), ("msgtype", "text")]), 1.0);
    assert_eq!(s.value(ATTEMPTS, &[("kind", "deliver_outbound"), ("outcome", "ok")]), 2.0);
    assert_eq!(s.value(ATTEMPTS, &[("kind", "deliver_outbound"), ("outcome", "permanent")]), 2.0);
    assert_eq!(s.value(DELIVERED, &[("direction", "outbound"), ("channel", "wechat"), ("platform", "vonage")]), 2.0);
    assert_eq!(s.value(LATENCY_COUNT, &[("direction", "outbound")]), 2.0);
    // The agent's events and the bridge's own echoes reached the RTC webhook; none was refused.
    assert!(s.value(REQUESTS, &[("route", "/webhooks/vonage/rtc"), ("status", "200")]) >= 4.0);
    assert_eq!(s.value(REJECTIONS, &[]), 0.0);
}

#[tokio::test]
async fn the_webhook_platform_counts_its_receivers_errors_and_api_refusals() {
    let app = spawn_app_with_platform(TestPlatform::Webhook, WorkerMode::Manual, |_| {}).await;
    app.platform_fails_next(1, 400, None);
    assert_eq!(app.push(&app.wechat.text("o_metrics_hook", "hi"), PushMode::Safe).await.status, 200);
    app.run_worker().await;
    let unauthorized = reqwest::Client::new()
        .post(format!("{}/api/v1/messages", app.address))
        .json(&json!({"to": "o_metrics_hook", "content": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(app.api_send(&json!({"to": "o_nobody", "content": "x"}), None).await.status(), 404);
    let s = scrape(&app.address).await;
    let sides = [("channel", "wechat"), ("platform", "webhook")];
    assert_eq!(s.value(FAILED, &[&sides[..], &[("direction", "inbound"), ("code", "400")]].concat()), 1.0);
    assert_eq!(s.value(REMOTE, &[("api", "webhook"), ("code", "400")]), 1.0);
    assert_eq!(s.value(REJECTIONS, &[("route", "/api/v1/messages"), ("reason", "unauthorized")]), 1.0);
    assert_eq!(s.value(REJECTIONS, &[("route", "/api/v1/messages"), ("reason", "unknown_contact")]), 1.0);
    assert!(s.has(REJECTIONS, &[("route", "/api/v1/messages/{id}"), ("reason", "not_found")]));
    assert!(s.has(ACCEPTED, &[("platform", "webhook")]) && !s.has(ACCEPTED, &[("platform", "vonage")]));
}

#[tokio::test]
async fn the_chatwoot_webhook_counts_its_rejections_by_reason() {
    let app = spawn_app_with_platform(TestPlatform::Chatwoot, WorkerMode::Manual, |_| {}).await;
    let hook = format!("{}/webhooks/chatwoot", app.address);
    let body = json!({"event": "message_created", "id": 1, "content": "forged?", "message_type": "outgoing"}).to_string();
    let client = reqwest::Client::new();
    let unsigned = client.post(&hook).header("content-type", "application/json").body(body.clone()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let stale = client
        .post(&hook)
        .header("content-type", "application/json")
        .header("x-chatwoot-signature", "sha256=00")
        .header("x-chatwoot-timestamp", "1000")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 401);
    let s = scrape(&app.address).await;
    assert_eq!(s.value(REJECTIONS, &[("route", "/webhooks/chatwoot"), ("reason", "signature")]), 1.0);
    assert_eq!(s.value(REJECTIONS, &[("route", "/webhooks/chatwoot"), ("reason", "stale")]), 1.0);
    assert!(s.has(REJECTIONS, &[("route", "/webhooks/chatwoot"), ("reason", "malformed")]));
    assert!(s.has("bridge_duplicates_total", &[("source", "chatwoot")]));
    assert!(s.has(REMOTE, &[("api", "chatwoot"), ("code", "transport")]));
    assert!(!s.has(REJECTIONS, &[("route", "/webhooks/vonage/rtc")]), "only the routes this bridge serves");
}

#[tokio::test]
async fn routes_are_matched_paths_never_raw_ones() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{}/nope/123", app.address)).send().await.unwrap().status(), 404);
    // The admin API is closed without a token: refused, under its route's pattern.
    let admin = client.get(format!("{}/api/messages/some-id", app.address)).send().await.unwrap().status();
    assert!(admin.is_client_error(), "{admin}");
    // Over the body limit: axum refuses it, and it is still a rejection of the webhook route.
    let big = "x".repeat((1 << 20) + 100);
    let status = client.post(format!("{}?timestamp=1&nonce=2", app.webhook())).body(big).send().await.unwrap().status();
    assert_eq!(status, 413);
    let s = scrape(&app.address).await;
    assert_eq!(s.value(REQUESTS, &[("route", "unmatched"), ("status", "404")]), 1.0);
    assert_eq!(s.value(REQUESTS, &[("route", "/api/messages/{id}"), ("status", admin.as_str())]), 1.0);
    assert_eq!(s.value(REQUESTS, &[("route", "/webhooks/wechat"), ("status", "413")]), 1.0);
    assert_eq!(s.value(REJECTIONS, &[("route", "/webhooks/wechat"), ("reason", "too_large")]), 1.0);
    assert_eq!(s.value(REJECTIONS, &[("route", "/api/messages/{id}")]), 0.0, "the admin API is no webhook");
    let raw: Vec<_> =
        s.samples.iter().filter(|(_, l, _)| l.values().any(|v| v.contains("nope") || v.contains("some-id"))).collect();
    assert!(raw.is_empty(), "raw paths as labels: {raw:?}");
    // The scrape before this one was counted too.
    let s = scrape(&app.address).await;
    assert_eq!(s.value(REQUESTS, &[("route", "/metrics"), ("status", "200")]), 1.0);
}

#[tokio::test]
async fn two_applications_in_one_process_keep_their_own_counts() {
    let (a, b) = (spawn_app_with(WorkerMode::Manual, |_| {}).await, spawn_app_with(WorkerMode::Manual, |_| {}).await);
    for text in ["one", "two"] {
        assert_eq!(a.push(&a.wechat.text("o_metrics_a", text), PushMode::Safe).await.status, 200);
    }
    assert_eq!(b.push(&b.wechat.text("o_metrics_b", "only"), PushMode::Safe).await.status, 200);
    let (sa, sb) = (scrape(&a.address).await, scrape(&b.address).await);
    assert_eq!(sa.value(ACCEPTED, &[("direction", "inbound")]), 2.0);
    assert_eq!(sb.value(ACCEPTED, &[("direction", "inbound")]), 1.0);
    assert_eq!(sa.value(REQUESTS, &[("route", "/webhooks/wechat")]), 2.0);
    assert_eq!(sb.value(REQUESTS, &[("route", "/webhooks/wechat")]), 1.0);
    // The outbox gauges are read from each app's own database when scraped.
    assert_eq!(sa.value("bridge_outbox_depth", &[("kind", "deliver_inbound")]), 2.0);
    assert_eq!(sb.value("bridge_outbox_depth", &[("kind", "deliver_inbound")]), 1.0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(scrape(&a.address).await.value("bridge_outbox_oldest_age_seconds", &[]) >= 0.2);
    assert_eq!(a.run_worker().await, 2);
    let sa = scrape(&a.address).await;
    assert_eq!(sa.value("bridge_outbox_depth", &[]), 0.0);
    assert_eq!(sa.value("bridge_outbox_oldest_age_seconds", &[]), 0.0);
    assert_eq!(sa.value(DELIVERED, &[("direction", "inbound")]), 2.0);
    assert_eq!(scrape(&b.address).await.value(DELIVERED, &[]), 0.0);
}

/// The JSON log of the real binary: the accept names the stored message, and every line of its
/// delivery carries the same id in its `job` span.
#[tokio::test]
async fn json_logs_carry_the_bridge_message_id_from_accept_to_delivery() {
    let sims = Sims::start(Duration::from_millis(50)).await;
    let work = Workdir::new();
    let log = work.log("bridge.log");
    let mut env = sims.env(work.dir.path(), binary::free_port());
    let mut bridge = binary::start_ready(&mut env, &["--log-format", "json"], &log).await;
    sims.point_rtc_at(&bridge.address());
    let push = sims.wechat.text("o_metrics_log", "trace me");
    let reply = sims.wechat.push(&format!("{}/webhooks/wechat", bridge.address()), &push, PushMode::Safe).await.unwrap();
    assert_eq!(reply.body, "success");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !sims.vonage.all_events().iter().any(|(_, e)| e["type"] == "custom:wechat:message") {
        assert!(tokio::time::Instant::now() < deadline, "the message never reached Vonage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bridge.terminate().await;
    let output = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = output.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let stored = lines
        .iter()
        .find(|l| l["fields"]["message"] == "wechat push stored")
        .unwrap_or_else(|| panic!("no accept line in:\n{output}"));
    let id = stored["fields"]["bridge_message_id"].as_str().expect("the accept names the message").to_string();
    let delivered =
        lines.iter().find(|l| l["fields"]["message"] == "delivered").unwrap_or_else(|| panic!("no delivery line in:\n{output}"));
    assert_eq!(delivered["span"]["name"], "job", "{delivered}");
    assert_eq!(delivered["span"]["bridge_message_id"], id.as_str(), "{delivered}");
    assert_eq!(delivered["span"]["kind"], "deliver_inbound", "{delivered}");
    assert_eq!(delivered["spans"][0]["bridge_message_id"], id.as_str(), "{delivered}");
}
