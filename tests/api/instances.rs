//! Three `wechat-bridge serve` processes on one PostgreSQL database (DESIGN.md "Flow and
//! guarantees"): pushes spread round-robin over the instances, WeChat's retries of a MsgId landing
//! on another instance, one instance killed with SIGKILL in the middle. Every acknowledged message
//! reaches the platform exactly once (a duplicate only for a delivery the kill cut off, with the
//! same bridge_message_id), in order per user, with one platform user and conversation per WeChat
//! user and at most one token fetch per instance start; the same for agent replies spread over the
//! surviving instances by a round-robin load balancer.
//!
//! Runs only when `BRIDGE_TEST_POSTGRES_URL` names a PostgreSQL server.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use wechat_bridge::store::testing;
use wechat_bridge::wechat::sim::{PushMode, WeChatSim};

use crate::binary::{self, Sims, Workdir};
use crate::helpers;

const INSTANCES: usize = 3;
const USERS: usize = 30;
const PUSHES_PER_USER: usize = 100;
/// Concurrent senders; each owns `USERS / SENDERS` users and sends their messages in rounds.
const SENDERS: usize = 10;
/// One MsgId in this many is sent again to another instance.
const RESEND_EVERY: usize = 10;
/// The instance killed with SIGKILL, once `KILL_AFTER_PUSHES` pushes were acknowledged.
const KILLED: usize = 1;
const KILL_AFTER_PUSHES: usize = USERS * PUSHES_PER_USER / 2;
/// WeChat's first try and three retries (`wechat-api.md` §4.1), each to the next live instance.
const PUSH_TRIES: usize = 4;
const REPLIES_PER_USER: usize = 3;
/// Upper bound only: a job the killed instance held is claimed again after one lease (10 s).
const DRAIN_DEADLINE: Duration = Duration::from_secs(90);
/// The Vonage simulator's RTC retry base: 8 tries spread over about 13 s.
const RTC_RETRY_BASE: Duration = Duration::from_millis(100);

fn openid(user: usize) -> String {
    format!("o_fleet_user_{user:02}")
}

fn push_text(user: usize, n: usize) -> String {
    format!("u{user:02} m{n:03}")
}

fn reply_text(user: usize, n: usize) -> String {
    format!("r{user:02} n{n:03}")
}

/// The number in "u07 m013" / "r07 n002".
fn number(content: &str) -> usize {
    content[5..].parse().unwrap()
}

/// The instances' addresses and which of them are still running.
struct Fleet {
    addresses: Vec<String>,
    alive: Vec<AtomicBool>,
}

impl Fleet {
    /// The first live instance from `preferred` on, round the ring.
    fn pick(&self, preferred: usize) -> (usize, &str) {
        (0..INSTANCES)
            .map(|i| (preferred + i) % INSTANCES)
            .find(|&i| self.alive[i].load(Ordering::SeqCst))
            .map(|i| (i, self.addresses[i].as_str()))
            .expect("an instance is running")
    }

    /// The `turn`th live instance, round the live ones.
    fn nth_live(&self, turn: usize) -> (usize, &str) {
        let live: Vec<usize> = (0..INSTANCES).filter(|&i| self.alive[i].load(Ordering::SeqCst)).collect();
        let i = live[turn % live.len()];
        (i, self.addresses[i].as_str())
    }
}

#[derive(Default)]
struct PushCounts {
    sent: AtomicUsize,
    acknowledged: AtomicUsize,
    resent: AtomicUsize,
    resent_concurrently: AtomicUsize,
    /// Tries after a refused, cut or timed out one.
    retried: AtomicUsize,
    given_up: AtomicUsize,
}

/// One push as the senders saw it.
struct Pushed {
    user: usize,
    n: usize,
    msg_id: String,
    acknowledged: bool,
}

/// Posts one signed push until an instance answers `success`, starting at `preferred` and moving
/// to the next live instance after a refused, cut or timed out try. `false` when WeChat gives up.
async fn post_push(wechat: &WeChatSim, fleet: &Fleet, preferred: usize, request: &(String, String), counts: &PushCounts) -> bool {
    for attempt in 0..PUSH_TRIES {
        if attempt > 0 {
            counts.retried.fetch_add(1, Ordering::Relaxed);
        }
        let (instance, address) = fleet.pick(preferred + attempt);
        // The simulator's client gives up after 5 s, as WeChat does.
        match wechat.post_raw(&format!("{address}/webhooks/wechat"), &request.0, request.1.clone()).await {
            Ok(reply) if reply.status == 200 && reply.body == "success" => return true,
            Ok(reply) => panic!("instance {instance} answered a push with {} {:?}", reply.status, reply.body),
            Err(_) => {}
        }
    }
    counts.given_up.fetch_add(1, Ordering::Relaxed);
    false
}

/// One sender: the messages of `users`, message n of a user to instance n mod 3, a user's next
/// message only after the previous one was answered. One MsgId in ten goes to a second instance
/// too: half of them after the first was acknowledged (the identical request), half at the same
/// time (a fresh signature and nonce).
async fn sender(wechat: WeChatSim, fleet: Arc<Fleet>, users: Vec<usize>, counts: Arc<PushCounts>) -> Vec<Pushed> {
    let mut pushed = Vec::new();
    for n in 0..PUSHES_PER_USER {
        for &user in &users {
            let push = wechat.text(&openid(user), &push_text(user, n));
            let msg_id = push.msg_id().expect("a text has a MsgId").to_string();
            let now = wechat_bridge::store::now_ms() / 1000;
            let request = wechat.signed_request(&push, PushMode::Safe, now);
            counts.sent.fetch_add(1, Ordering::Relaxed);
            let (first, other) = (n % INSTANCES, n % INSTANCES + 1);
            let acknowledged = if (user + n) % RESEND_EVERY != 0 {
                post_push(&wechat, &fleet, first, &request, &counts).await
            } else if (user + n) % (2 * RESEND_EVERY) == 0 {
                counts.resent.fetch_add(1, Ordering::Relaxed);
                let acknowledged = post_push(&wechat, &fleet, first, &request, &counts).await;
                let again = post_push(&wechat, &fleet, other, &request, &counts).await;
                acknowledged || again
            } else {
                counts.resent.fetch_add(1, Ordering::Relaxed);
                counts.resent_concurrently.fetch_add(1, Ordering::Relaxed);
                let fresh = wechat.signed_request(&push, PushMode::Safe, now);
                let (acknowledged, again) = tokio::join!(
                    post_push(&wechat, &fleet, first, &request, &counts),
                    post_push(&wechat, &fleet, other, &fresh, &counts)
                );
                acknowledged || again
            };
            if acknowledged {
                counts.acknowledged.fetch_add(1, Ordering::Relaxed);
                wechat.touch_window(&openid(user));
            }
            pushed.push(Pushed { user, n, msg_id, acknowledged });
        }
    }
    pushed
}

/// A round-robin load balancer in front of the live instances, for Vonage's RTC webhooks. An
/// agent's reply n goes to live instance n (so a user's consecutive replies reach different
/// instances); it counts the replies each instance acknowledged.
#[derive(Clone)]
struct Balancer {
    fleet: Arc<Fleet>,
    next: Arc<AtomicUsize>,
    replies: Arc<Mutex<[usize; INSTANCES]>>,
    client: reqwest::Client,
}

async fn balance(State(balancer): State<Balancer>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = (event["type"] == "custom:wechat:message" && event["body"]["direction"] == "outbound")
        .then(|| event["body"]["content"].as_str().map(number))
        .flatten();
    let turn = reply.unwrap_or_else(|| balancer.next.fetch_add(1, Ordering::Relaxed));
    let (instance, address) = balancer.fleet.nth_live(turn);
    let mut request = balancer.client.post(format!("{address}{}", uri.path())).timeout(Duration::from_secs(10));
    for name in ["authorization", "content-type"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.clone());
        }
    }
    match request.body(body).send().await {
        Ok(answer) => {
            if answer.status() == 200 && reply.is_some() {
                balancer.replies.lock().unwrap()[instance] += 1;
            }
            StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// One copy of a message on the far side: its number, its id (bridge_message_id inbound, the
/// content outbound) and its index among all copies in that direction.
struct Copy {
    n: usize,
    key: String,
    index: usize,
}

/// Copies per user, in the order they arrived.
type CopiesPerUser = HashMap<usize, Vec<Copy>>;

/// What one user's copies showed.
#[derive(Default)]
struct Findings {
    /// `(user, n, key)` of every second copy.
    duplicates: Vec<(usize, usize, String)>,
    problems: Vec<String>,
    users_in_order: usize,
}

impl Findings {
    /// Checks one user's copies against what was acknowledged: everything acknowledged is there,
    /// first appearances are in send order, and a number appears twice only when the copies
    /// straddle the kill (`boundary`: how many copies there were once the killed process was gone)
    /// with the same key, at most once per user (one delivery per contact is in flight).
    fn check(&mut self, user: usize, copies: &[Copy], acknowledged: &[usize], boundary: usize) {
        let mut first: HashMap<usize, (&str, usize)> = HashMap::new();
        let mut order = Vec::new();
        let mut duplicates = 0;
        for copy in copies {
            match first.get(&copy.n) {
                None => {
                    first.insert(copy.n, (copy.key.as_str(), copy.index));
                    order.push(copy.n);
                }
                Some(&(first_key, first_index)) => {
                    duplicates += 1;
                    self.duplicates.push((user, copy.n, copy.key.clone()));
                    if first_key != copy.key {
                        self.problems.push(format!(
                            "user {user}: message {} delivered twice with different ids {first_key} and {}",
                            copy.n, copy.key
                        ));
                    }
                    if !(first_index < boundary && copy.index >= boundary) {
                        self.problems.push(format!(
                            "user {user}: message {} delivered twice (at {first_index} and {}) not around the kill (at {boundary})",
                            copy.n, copy.index
                        ));
                    }
                }
            }
        }
        if duplicates > 1 {
            self.problems.push(format!("user {user}: {duplicates} duplicates; one delivery per contact can be cut off"));
        }
        if order.windows(2).all(|w| w[0] < w[1]) {
            self.users_in_order += 1;
        } else {
            self.problems.push(format!("user {user}: order broken: {order:?}"));
        }
        let missing: Vec<_> = acknowledged.iter().filter(|n| !first.contains_key(n)).collect();
        if !missing.is_empty() {
            self.problems.push(format!("user {user}: acknowledged but never delivered: {missing:?}"));
        }
    }
}

/// The inbound `custom:wechat:message` events in Vonage: per user, the copies, and the
/// conversations each user's events are in. `msg_ids`: MsgId → (user, n).
fn inbound_copies(sims: &Sims, msg_ids: &HashMap<String, (usize, usize)>) -> (CopiesPerUser, HashMap<usize, HashSet<String>>) {
    let mut copies = CopiesPerUser::new();
    let mut conversations: HashMap<usize, HashSet<String>> = HashMap::new();
    let events = sims.vonage.all_events();
    let inbound =
        events.iter().filter(|(_, e)| e["type"] == "custom:wechat:message" && e["body"]["direction"] == "inbound").enumerate();
    for (index, (conversation, event)) in inbound {
        let body = &event["body"];
        let msg_id = body["msg_id"].as_str().unwrap_or_default();
        let &(user, n) = msg_ids.get(msg_id).unwrap_or_else(|| panic!("an event for a MsgId never pushed: {body}"));
        assert_eq!(body["from"], openid(user), "{body}");
        assert_eq!(body["content"], push_text(user, n), "{body}");
        let key = body["bridge_message_id"].as_str().expect("a bridge_message_id").to_string();
        copies.entry(user).or_default().push(Copy { n, key, index });
        conversations.entry(user).or_default().insert(conversation.clone());
    }
    (copies, conversations)
}

fn inbound_count(sims: &Sims) -> usize {
    sims.vonage
        .all_events()
        .iter()
        .filter(|(_, e)| e["type"] == "custom:wechat:message" && e["body"]["direction"] == "inbound")
        .count()
}

/// The agent replies in WeChat's custom/send log, per user.
fn reply_copies(wechat: &WeChatSim, users: &HashMap<String, usize>) -> CopiesPerUser {
    let mut copies = CopiesPerUser::new();
    for (index, sent) in wechat.sent().iter().enumerate() {
        let user = users[sent["touser"].as_str().expect("a touser")];
        let content = sent["text"]["content"].as_str().expect("a text reply").to_string();
        copies.entry(user).or_default().push(Copy { n: number(&content), key: content, index });
    }
    copies
}

/// Vonage event ids count per conversation: the key of an event is both.
fn event_key(conversation_id: &Value, id: &Value) -> String {
    format!("{}/{id}", conversation_id.as_str().unwrap_or_default())
}

async fn outbox_depth(address: &str) -> i64 {
    binary::admin_get(address, "/api/health").await["outbox_depth"].as_i64().expect("outbox_depth")
}

/// Polls `check` until it is `Ok` or `DRAIN_DEADLINE` passed since `since`; the time it took.
async fn drained<F, Fut>(what: &str, since: Instant, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    loop {
        match check().await {
            Ok(()) => return since.elapsed(),
            Err(missing) if since.elapsed() > DRAIN_DEADLINE => panic!("{what} not drained after {DRAIN_DEADLINE:?}: {missing}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// On a failure, the end of every instance's output (the working directory goes with the test).
struct LogsOnFailure(Vec<PathBuf>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for log in &self.0 {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<_> = text.lines().collect();
            eprintln!("---- last lines of {} ----", log.display());
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_database_relay_exactly_once_in_order_through_a_kill_9() {
    let Some(server) = testing::postgres_server() else {
        println!("skipped: {} not set", testing::POSTGRES_URL_VAR);
        return;
    };
    let started = Instant::now();
    let database_url = testing::fresh_postgres_database(&server).await.expect("a fresh PostgreSQL database");
    let sims = Sims::start(RTC_RETRY_BASE).await;
    let work = Workdir::new();
    let logs: [PathBuf; INSTANCES] = std::array::from_fn(|i| work.log(&format!("bridge-{i}.log")));
    let _logs_on_failure = LogsOnFailure(logs.to_vec());

    // ---- three instances started together: their migrations race ----
    let mut envs: [HashMap<String, String>; INSTANCES] = std::array::from_fn(|_| {
        let mut env = sims.env(work.dir.path(), binary::free_port());
        env.insert("BRIDGE_DATABASE_URL".into(), database_url.clone());
        env
    });
    let [env0, env1, env2] = &mut envs;
    let (b0, b1, b2) = tokio::join!(
        binary::start_ready(env0, &[], &logs[0]),
        binary::start_ready(env1, &[], &logs[1]),
        binary::start_ready(env2, &[], &logs[2]),
    );
    let mut bridges = [b0, b1, b2];
    let instance_starts = INSTANCES;
    let fleet = Arc::new(Fleet {
        addresses: bridges.iter().map(|b| b.address()).collect(),
        alive: (0..INSTANCES).map(|_| AtomicBool::new(true)).collect(),
    });
    let balancer = Balancer {
        fleet: fleet.clone(),
        next: Arc::new(AtomicUsize::new(0)),
        replies: Arc::new(Mutex::new([0; INSTANCES])),
        client: reqwest::Client::new(),
    };
    let balancer_base = helpers::serve(axum::Router::new().fallback(balance).with_state(balancer.clone())).await;
    sims.point_rtc_at(&balancer_base);

    // ---- inbound: 3,000 pushes round-robin, SIGKILL of one instance halfway ----
    let counts = Arc::new(PushCounts::default());
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let users = (s..USERS).step_by(SENDERS).collect();
            tokio::spawn(sender(sims.wechat.clone(), fleet.clone(), users, counts.clone()))
        })
        .collect();
    wait_until("half the pushes acknowledged", || counts.acknowledged.load(Ordering::Relaxed) >= KILL_AFTER_PUSHES).await;
    fleet.alive[KILLED].store(false, Ordering::SeqCst);
    bridges[KILLED].kill9();
    let acknowledged_at_kill = counts.acknowledged.load(Ordering::Relaxed);
    let killed_at = Instant::now();
    binary::let_in_flight_requests_land().await;
    let boundary = inbound_count(&sims);
    let mut pushed = Vec::new();
    for sender in senders {
        pushed.extend(sender.await.expect("a sender's pushes"));
    }
    let survivor = fleet.pick(KILLED + 1).1.to_string();
    let msg_ids: HashMap<String, (usize, usize)> = pushed.iter().map(|p| (p.msg_id.clone(), (p.user, p.n))).collect();
    let mut acknowledged: HashMap<usize, Vec<usize>> = HashMap::new();
    for p in pushed.iter().filter(|p| p.acknowledged) {
        acknowledged.entry(p.user).or_default().push(p.n);
    }
    let acknowledged_count: usize = acknowledged.values().map(Vec::len).sum();
    let inbound_drain = drained("inbound", killed_at, || {
        let (copies, _) = inbound_copies(&sims, &msg_ids);
        let missing: usize = acknowledged
            .iter()
            .map(|(user, ns)| {
                let got: HashSet<usize> = copies.get(user).map(|c| c.iter().map(|c| c.n).collect()).unwrap_or_default();
                ns.iter().filter(|n| !got.contains(n)).count()
            })
            .sum();
        let survivor = survivor.clone();
        async move {
            let depth = outbox_depth(&survivor).await;
            if missing == 0 && depth == 0 { Ok(()) } else { Err(format!("{missing} acknowledged missing, outbox depth {depth}")) }
        }
    })
    .await;
    let (copies, conversations_of) = inbound_copies(&sims, &msg_ids);
    let mut inbound = Findings::default();
    for user in 0..USERS {
        let acked = acknowledged.get(&user).map_or(&[][..], Vec::as_slice);
        inbound.check(user, copies.get(&user).map_or(&[][..], Vec::as_slice), acked, boundary);
    }
    let delivered: usize = copies.values().map(Vec::len).sum();
    let platform_users = sims.vonage.users().len();
    let platform_conversations = sims.vonage.conversations().len();
    let user_conversations: HashSet<&String> = conversations_of.values().flatten().collect();
    for user in 0..USERS {
        let theirs = conversations_of.get(&user).map_or(0, HashSet::len);
        if theirs != 1 {
            inbound.problems.push(format!("user {user}: events in {theirs} conversations"));
        }
    }
    let token_fetches_inbound = sims.wechat.token_calls();
    println!(
        "instances inbound: pushes sent {} acknowledged {acknowledged_count} (at kill {acknowledged_at_kill}) re-sent {} \
         ({} concurrently) retried {} given up {}; delivered {delivered} ({} duplicates {:?}); users in order {}/{USERS}; \
         platform users {platform_users} conversations {platform_conversations} (of the users' events {}); \
         token fetches {token_fetches_inbound}; kill to drained {inbound_drain:.1?}",
        counts.sent.load(Ordering::Relaxed),
        counts.resent.load(Ordering::Relaxed),
        counts.resent_concurrently.load(Ordering::Relaxed),
        counts.retried.load(Ordering::Relaxed),
        counts.given_up.load(Ordering::Relaxed),
        inbound.duplicates.len(),
        inbound.duplicates,
        inbound.users_in_order,
        user_conversations.len(),
    );
    assert_eq!(counts.sent.load(Ordering::Relaxed), USERS * PUSHES_PER_USER);
    assert!(inbound.problems.is_empty(), "inbound:\n{}", inbound.problems.join("\n"));
    assert_eq!(platform_users, USERS, "one platform user per WeChat user: {:#?}", sims.vonage.users());
    assert_eq!(platform_conversations, USERS, "one conversation per WeChat user");
    assert_eq!(user_conversations.len(), USERS, "one conversation per WeChat user");
    assert!(token_fetches_inbound <= instance_starts, "{token_fetches_inbound} token fetches for {instance_starts} starts");

    // ---- outbound: 90 agent replies through the balancer, over the two survivors ----
    let replies_started = Instant::now();
    let agents: Vec<(String, String)> = (0..USERS)
        .map(|user| {
            let conversation = conversations_of[&user].iter().next().unwrap().clone();
            let agent = sims.vonage.create_agent("agent_fleet", &conversation);
            (conversation, agent)
        })
        .collect();
    let mut reply_to: HashMap<String, (usize, usize)> = HashMap::new();
    for n in 0..REPLIES_PER_USER {
        for (user, (conversation, agent)) in agents.iter().enumerate() {
            let body = json!({"content": reply_text(user, n), "direction": "outbound"});
            let event = sims
                .vonage
                .post_event_as_client(conversation, json!({"type": "custom:wechat:message", "from": agent, "body": body}))
                .expect("the simulator accepts the agent's reply");
            reply_to.insert(event_key(&json!(conversation), &event["id"]), (user, n));
        }
    }
    let users_by_openid: HashMap<String, usize> = (0..USERS).map(|u| (openid(u), u)).collect();
    let replies_acknowledged = || -> HashSet<String> {
        sims.rtc_attempts()
            .iter()
            .filter(|a| a.status == 200)
            .map(|a| event_key(&a.event["conversation_id"], &a.event["id"]))
            .filter(|key| reply_to.contains_key(key))
            .collect()
    };
    let replies = reply_to.len();
    let outbound_drain = drained("outbound", replies_started, || {
        let acked = replies_acknowledged().len();
        let sent = sims.wechat.sent().len();
        let survivor = survivor.clone();
        async move {
            let depth = outbox_depth(&survivor).await;
            if acked == replies && sent >= replies && depth == 0 {
                Ok(())
            } else {
                Err(format!("{acked} of {replies} replies acknowledged, {sent} sent to WeChat, outbox depth {depth}"))
            }
        }
    })
    .await;
    let replies_acked = replies_acknowledged().len();
    let reply_copies = reply_copies(&sims.wechat, &users_by_openid);
    let all_replies: Vec<usize> = (0..REPLIES_PER_USER).collect();
    let mut outbound = Findings::default();
    for user in 0..USERS {
        // No kill in this phase: no duplicate is allowed (boundary 0).
        outbound.check(user, reply_copies.get(&user).map_or(&[][..], Vec::as_slice), &all_replies, 0);
    }
    let replies_received: usize = reply_copies.values().map(Vec::len).sum();
    let per_instance = *balancer.replies.lock().unwrap();
    let token_fetches = sims.wechat.token_calls();
    println!(
        "instances outbound: replies sent {} acknowledged {replies_acked} (per instance {per_instance:?}); received by WeChat \
         {replies_received} ({} duplicates); users in order {}/{USERS}; token fetches {token_fetches} for {instance_starts} \
         instance starts; drained in {outbound_drain:.1?}",
        reply_to.len(),
        outbound.duplicates.len(),
        outbound.users_in_order,
    );
    assert!(outbound.problems.is_empty(), "outbound:\n{}", outbound.problems.join("\n"));
    assert_eq!(replies_received, USERS * REPLIES_PER_USER);
    assert!(token_fetches <= instance_starts, "{token_fetches} token fetches for {instance_starts} instance starts");
    for (i, bridge) in bridges.iter_mut().enumerate() {
        if i != KILLED {
            let health = binary::admin_get(&bridge.address(), "/api/health").await;
            assert_eq!(health["messages"]["failed"], 0, "{health}");
            bridge.terminate().await;
        }
    }
    println!(
        "instances summary: acknowledged {acknowledged_count} delivered {delivered} duplicates {} users in order {}/{USERS} \
         users {platform_users} conversations {platform_conversations} token fetches {token_fetches} outbound sent {} \
         received {replies_received}; total {:.1?}",
        inbound.duplicates.len(),
        inbound.users_in_order,
        reply_to.len(),
        started.elapsed(),
    );
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
