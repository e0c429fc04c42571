//! `kill -9` of the real binary in the middle of traffic, in both directions (DESIGN.md "Flow and
//! guarantees" 1 and 3): whatever the bridge acknowledged is delivered after a restart on the same
//! database, in order per user; a duplicate exists only for a delivery the kill cut off.
//!
//! The lease is left at its default on purpose, so the printed restart-to-drained time is the
//! production figure.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wechat_bridge::wechat::sim::{PushMode, WeChatSim};

use crate::binary::{self, Bridge, Sims, Workdir};

const USERS: usize = 50;
const PUSHES_PER_USER: usize = 40;
/// The bridge is killed once this many pushes were acknowledged.
const KILL_AFTER_PUSHES: usize = 1_000;
const REPLIES_PER_USER: usize = 20;
const KILL_AFTER_REPLIES: usize = 500;
/// WeChat gives up after the first try and three retries (`wechat-api.md` §4.1).
const PUSH_RETRIES: usize = 3;
/// Upper bound only: the default 60 s lease makes today's figure up to about a minute.
const DRAIN_DEADLINE: Duration = Duration::from_secs(90);
/// The Vonage simulator's RTC retry base: 8 tries spread over about 13 s, longer than a restart.
const RTC_RETRY_BASE: Duration = Duration::from_millis(100);

fn openid(user: usize) -> String {
    format!("o_crash_user_{user:02}")
}

#[derive(Default)]
struct PushCounts {
    sent: AtomicUsize,
    acknowledged: AtomicUsize,
    retried: AtomicUsize,
    given_up: AtomicUsize,
}

/// One user's phone: `PUSHES_PER_USER` texts in order, each retried by WeChat's rule with the
/// identical request (same MsgId, same signature). Returns the numbers acknowledged.
async fn user_pushes(wechat: WeChatSim, webhook: Arc<Mutex<String>>, user: usize, counts: Arc<PushCounts>) -> Vec<usize> {
    let mut acknowledged = Vec::new();
    for n in 0..PUSHES_PER_USER {
        let push = wechat.text(&openid(user), &format!("u{user:02} m{n:02}"));
        let (query, body) = wechat.signed_request(&push, PushMode::Safe, wechat_bridge::store::now_ms() / 1000);
        counts.sent.fetch_add(1, Ordering::Relaxed);
        for attempt in 0..=PUSH_RETRIES {
            if attempt > 0 {
                counts.retried.fetch_add(1, Ordering::Relaxed);
            }
            let url = webhook.lock().unwrap().clone();
            // The simulator's client gives up after 5 s, as WeChat does.
            match wechat.post_raw(&url, &query, body.clone()).await {
                Ok(reply) if reply.status == 200 && reply.body == "success" => {
                    counts.acknowledged.fetch_add(1, Ordering::Relaxed);
                    wechat.touch_window(&openid(user));
                    acknowledged.push(n);
                    break;
                }
                Ok(reply) => panic!("push {user}/{n} answered {} {:?}", reply.status, reply.body),
                // Refused (the bridge is down) or timed out. A refusal is instant; WeChat's
                // tries are seconds apart, so wait a little before the next one.
                Err(e) if e.is_connect() => tokio::time::sleep(Duration::from_millis(700)).await,
                Err(_) => {}
            }
            if attempt == PUSH_RETRIES {
                counts.given_up.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    acknowledged
}

/// Waits for `check` up to `DRAIN_DEADLINE` after `since`; the time it took.
async fn drained<F, Fut>(what: &str, since: Instant, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    loop {
        match check().await {
            Ok(()) => return since.elapsed(),
            Err(missing) if since.elapsed() > DRAIN_DEADLINE => {
                panic!("{what} not drained {DRAIN_DEADLINE:?} after the restart: {missing}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn outbox_depth(address: &str) -> i64 {
    binary::admin_get(address, "/api/health").await["outbox_depth"].as_i64().unwrap()
}

/// The number in "u07 m13" / "r07 n13".
fn number(content: &str) -> usize {
    content[5..].parse().unwrap()
}

/// Checks one user's delivered sequence `(number, key, index)` against what was acknowledged:
/// everything acknowledged is there, first appearances are in send order, and a number appears
/// twice only when the copies straddle the kill (`boundary`: how many deliveries the remote had
/// when the killed process was gone) with the same `key`. Returns the number of duplicates.
fn check_sequence(who: &str, delivered: &[(usize, String, usize)], acknowledged: &[usize], boundary: usize) -> usize {
    let mut first: HashMap<usize, (&str, usize)> = HashMap::new();
    let mut order = Vec::new();
    let mut duplicates = 0;
    for (n, key, index) in delivered {
        match first.get(n) {
            None => {
                first.insert(*n, (key, *index));
                order.push(*n);
            }
            Some((first_key, first_index)) => {
                duplicates += 1;
                assert_eq!(first_key, key, "{who}: message {n} delivered twice with different ids");
                assert!(
                    *first_index < boundary && *index >= boundary,
                    "{who}: message {n} delivered twice (at {first_index} and {index}) not around the kill (at {boundary})"
                );
            }
        }
    }
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{who}: order broken: {order:?}");
    let missing: Vec<_> = acknowledged.iter().filter(|n| !first.contains_key(n)).collect();
    assert!(missing.is_empty(), "{who}: acknowledged but never delivered: {missing:?}");
    assert!(duplicates <= 1, "{who}: {duplicates} duplicates; one delivery per contact can be cut off");
    duplicates
}

/// Deliveries per openid: `(number, key, index among all deliveries)`.
type PerUser = HashMap<String, Vec<(usize, String, usize)>>;

/// Inbound `custom:wechat:message` events in Vonage: per openid, `(number, bridge_message_id,
/// index in all events)`, and the conversation of each openid.
fn inbound_events(sims: &Sims) -> (PerUser, HashMap<String, String>) {
    let mut per_user = PerUser::new();
    let mut conversations = HashMap::new();
    let events = sims.vonage.all_events();
    let inbound =
        events.iter().filter(|(_, e)| e["type"] == "custom:wechat:message" && e["body"]["direction"] == "inbound").enumerate();
    for (index, (conv, e)) in inbound {
        let body = &e["body"];
        let from = body["from"].as_str().unwrap().to_string();
        assert!(body["msg_id"].is_string(), "{body}");
        let n = number(body["content"].as_str().unwrap());
        per_user.entry(from.clone()).or_default().push((n, body["bridge_message_id"].as_str().unwrap().into(), index));
        conversations.insert(from, conv.clone());
    }
    (per_user, conversations)
}

fn inbound_count(sims: &Sims) -> usize {
    inbound_events(sims).0.values().map(Vec::len).sum()
}

/// Agent replies in WeChat's custom/send log: per openid, `(number, content, index)`.
fn replies_sent(wechat: &WeChatSim) -> PerUser {
    let mut per_user = PerUser::new();
    for (index, m) in wechat.sent().iter().enumerate() {
        let content = m["text"]["content"].as_str().unwrap().to_string();
        per_user.entry(m["touser"].as_str().unwrap().into()).or_default().push((number(&content), content, index));
    }
    per_user
}

/// Vonage event ids count per conversation: the key of an event is both.
fn event_key(conversation_id: &Value, id: &Value) -> String {
    format!("{}/{id}", conversation_id.as_str().unwrap_or_default())
}

/// The agent replies the bridge acknowledged (its webhook answered 200): event id → (openid, number),
/// and the ids of replies the simulator is done with (acknowledged, or all tries failed).
fn replies_acknowledged(sims: &Sims, reply_to: &HashMap<String, (String, usize)>) -> (HashMap<String, (String, usize)>, usize) {
    let mut acked = HashMap::new();
    let mut failed_tries: HashMap<String, usize> = HashMap::new();
    for attempt in sims.rtc_attempts() {
        let id = event_key(&attempt.event["conversation_id"], &attempt.event["id"]);
        let Some(reply) = reply_to.get(&id) else { continue };
        if attempt.status == 200 {
            acked.insert(id, reply.clone());
        } else {
            *failed_tries.entry(id).or_default() += 1;
        }
    }
    let settled = reply_to.keys().filter(|id| acked.contains_key(*id) || failed_tries.get(*id) >= Some(&8)).count();
    (acked, settled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_traffic_loses_nothing_acknowledged_in_either_direction() {
    let started = Instant::now();
    let sims = Sims::start(RTC_RETRY_BASE).await;
    let work = Workdir::new();
    let log = work.log("bridge.log");
    let mut env = sims.env(work.dir.path(), binary::free_port());
    env.insert("WECHAT_WINDOW_QUOTA".into(), "1000".into());
    let mut bridge = binary::start_ready(&mut env, &[], &log).await;
    sims.point_rtc_at(&bridge.address());
    let webhook = Arc::new(Mutex::new(format!("{}/webhooks/wechat", bridge.address())));

    // ---- inbound: 2,000 pushes, kill -9 after 1,000 acknowledged ----
    let counts = Arc::new(PushCounts::default());
    let users: Vec<_> =
        (0..USERS).map(|u| tokio::spawn(user_pushes(sims.wechat.clone(), webhook.clone(), u, counts.clone()))).collect();
    wait_until("1,000 pushes acknowledged", || counts.acknowledged.load(Ordering::Relaxed) >= KILL_AFTER_PUSHES).await;
    bridge.kill9();
    let acked_at_kill = counts.acknowledged.load(Ordering::Relaxed);
    binary::let_in_flight_requests_land().await;
    let boundary = inbound_count(&sims);
    let restarted = Instant::now();
    bridge = restart(&mut env, &log, &sims, &webhook).await;
    let mut acknowledged: HashMap<String, Vec<usize>> = HashMap::new();
    for (u, user) in users.into_iter().enumerate() {
        acknowledged.insert(openid(u), user.await.expect("a user's pushes"));
    }
    let address = bridge.address();
    let inbound_drain = drained("inbound", restarted, || {
        let (delivered, _) = inbound_events(&sims);
        let missing: usize = acknowledged
            .iter()
            .map(|(who, ns)| {
                let got: HashSet<usize> = delivered.get(who).map(|d| d.iter().map(|x| x.0).collect()).unwrap_or_default();
                ns.iter().filter(|n| !got.contains(n)).count()
            })
            .sum();
        let address = address.clone();
        async move {
            let depth = outbox_depth(&address).await;
            if missing == 0 && depth == 0 { Ok(()) } else { Err(format!("{missing} missing, outbox depth {depth}")) }
        }
    })
    .await;
    let (delivered, conversations) = inbound_events(&sims);
    let mut inbound_duplicates = 0;
    for (who, ns) in &acknowledged {
        inbound_duplicates += check_sequence(who, delivered.get(who).map_or(&[][..], Vec::as_slice), ns, boundary);
    }
    let delivered_count: usize = delivered.values().map(Vec::len).sum();
    println!(
        "crash inbound: pushes sent {} acknowledged {} (at kill {acked_at_kill}) retried {} given up {}; \
         delivered to Vonage {delivered_count} (of which {inbound_duplicates} duplicates); restart to drained {:.1?}",
        counts.sent.load(Ordering::Relaxed),
        counts.acknowledged.load(Ordering::Relaxed),
        counts.retried.load(Ordering::Relaxed),
        counts.given_up.load(Ordering::Relaxed),
        inbound_drain,
    );
    assert_eq!(counts.sent.load(Ordering::Relaxed), USERS * PUSHES_PER_USER);

    // ---- outbound: 1,000 agent replies, kill -9 after 500 acknowledged ----
    let mut reply_to = HashMap::new();
    let agents: Vec<(String, String, String)> = (0..USERS)
        .map(|u| {
            let conv = conversations[&openid(u)].clone();
            let agent = sims.vonage.create_agent("agent_crash", &conv);
            (openid(u), conv, agent)
        })
        .collect();
    for n in 0..REPLIES_PER_USER {
        for (u, (who, conv, agent)) in agents.iter().enumerate() {
            let body = json!({"content": format!("r{u:02} n{n:02}"), "direction": "outbound"});
            let event = sims
                .vonage
                .post_event_as_client(conv, json!({"type": "custom:wechat:message", "from": agent, "body": body}))
                .expect("the simulator accepts the agent's reply");
            reply_to.insert(event_key(&json!(conv), &event["id"]), (who.clone(), n));
        }
    }
    wait_until("500 replies acknowledged", || replies_acknowledged(&sims, &reply_to).0.len() >= KILL_AFTER_REPLIES).await;
    bridge.kill9();
    let replies_at_kill = replies_acknowledged(&sims, &reply_to).0.len();
    binary::let_in_flight_requests_land().await;
    let boundary = sims.wechat.sent().len();
    let restarted = Instant::now();
    bridge = restart(&mut env, &log, &sims, &webhook).await;
    let address = bridge.address();
    let outbound_drain = drained("outbound", restarted, || {
        let (acked, settled) = replies_acknowledged(&sims, &reply_to);
        let sent: HashSet<(String, usize)> =
            replies_sent(&sims.wechat).into_iter().flat_map(|(who, d)| d.into_iter().map(move |x| (who.clone(), x.0))).collect();
        let missing = acked.values().filter(|r| !sent.contains(r)).count();
        let unsettled = reply_to.len() - settled;
        let address = address.clone();
        async move {
            let depth = outbox_depth(&address).await;
            if missing == 0 && unsettled == 0 && depth == 0 {
                Ok(())
            } else {
                Err(format!("{missing} missing, {unsettled} still being dispatched, outbox depth {depth}"))
            }
        }
    })
    .await;
    let (acked, _) = replies_acknowledged(&sims, &reply_to);
    let mut acked_per_user: HashMap<String, Vec<usize>> = HashMap::new();
    for (who, n) in acked.values() {
        acked_per_user.entry(who.clone()).or_default().push(*n);
    }
    let sent = replies_sent(&sims.wechat);
    let mut outbound_duplicates = 0;
    for (who, _, _) in &agents {
        let ns = acked_per_user.get(who).cloned().unwrap_or_default();
        outbound_duplicates += check_sequence(who, sent.get(who).map_or(&[][..], Vec::as_slice), &ns, boundary);
    }
    let rtc_retries = sims
        .rtc_attempts()
        .iter()
        .filter(|a| reply_to.contains_key(&event_key(&a.event["conversation_id"], &a.event["id"])) && a.status != 200)
        .count();
    println!(
        "crash outbound: replies posted {} acknowledged {} (at kill {replies_at_kill}) webhook tries refused {rtc_retries}; \
         sent to WeChat {} (of which {outbound_duplicates} duplicates); restart to drained {:.1?}",
        reply_to.len(),
        acked.len(),
        sims.wechat.sent().len(),
        outbound_drain,
    );
    let health = binary::admin_get(&bridge.address(), "/api/health").await;
    assert_eq!(health["messages"]["failed"], 0, "{health}");
    bridge.terminate().await;
    println!("crash test total {:.1?}", started.elapsed());
}

/// Restarts the bridge on the same database (and, if it is free, the same port).
async fn restart(env: &mut HashMap<String, String>, log: &std::path::Path, sims: &Sims, webhook: &Mutex<String>) -> Bridge {
    let bridge = binary::start_ready(env, &[], log).await;
    sims.point_rtc_at(&bridge.address());
    *webhook.lock().unwrap() = format!("{}/webhooks/wechat", bridge.address());
    bridge
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
