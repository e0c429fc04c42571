//! A built-in simulator of the Vonage Conversation API (v1) and the bits of the
//! Application API (v2) that `wechat-bridge setup` uses.
//!
//! Vonage is discontinuing the Conversation API's messaging on 2026-04-30
//! (`vonage-api.md §0.1`), so the bridge is developed, demonstrated and tested against
//! this simulator. It is product code: `wechat-bridge simulate vonage` serves it alone,
//! `demo` runs it in-process, and the black-box tests drive the real bridge against it.
//! It therefore answers like the real service:
//!
//! - RS256 application JWTs verified against the application's public key (§1);
//! - `/v1/users`, `/v1/conversations`, `…/members`, `…/events` with the real JSON
//!   shapes, status codes, id formats and cursor pagination (§2);
//! - every stored event POSTed to the application's RTC `event_url`, in order per
//!   conversation, retried with backoff, optionally signed with an HS256 JWT (§3, §4);
//! - RFC 7807 error bodies with the Conversation API's `code` (§5).
//!
//! On top of that it offers fault injection (`fail_next`, `set_latency`, `set_down`,
//! also over HTTP as `POST /_sim/faults`), inspection (`users`, `events`, …,
//! `GET /_sim/state`) and agent actions (`create_agent`, `post_event_as_client`).
//!
//! Section numbers in comments refer to `vonage-api.md`.

mod control;
mod ops;
mod paging;
mod problem;
mod routes;
mod rtc;
mod state;
mod validate;

pub mod keys;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use serde_json::{Value, json};

use problem::Problem;
use rtc::{RtcDispatcher, RtcShared};
use state::State;

/// How the simulated application is set up.
#[derive(Debug, Clone)]
pub struct VonageSimConfig {
    /// The application id; JWTs must carry it as `application_id` (§1.1).
    pub application_id: String,
    /// The application's RSA public key (SPKI `BEGIN PUBLIC KEY` or PKCS#1 PEM) that
    /// verifies the RS256 JWTs.
    pub public_key_pem: String,
    /// The RTC `event_url` at start-up (`capabilities.rtc.webhooks.event_url.address`,
    /// §3.1). `PUT /v2/applications/{id}` or [`VonageSim::set_rtc_event_url`] change it.
    pub rtc_event_url: Option<String>,
    /// The account's signature secret. When set, every RTC webhook request carries a
    /// signed-webhook JWT (§4).
    pub signature_secret: Option<String>,
    /// Account API key: the `api_key` claim of signed webhooks and the Basic-auth user
    /// of the Application API.
    pub api_key: String,
    /// Account API secret: the Basic-auth password of the Application API.
    pub api_secret: String,
    /// First RTC retry delay; doubles per try. 5 s like Vonage's published webhook
    /// schedule (§3.2); tests use a few tens of milliseconds.
    pub rtc_retry_base: Duration,
}

impl VonageSimConfig {
    /// A configuration with no webhook, no signing, placeholder API credentials and the
    /// default 5 s retry base.
    pub fn new(application_id: impl Into<String>, public_key_pem: impl Into<String>) -> Self {
        VonageSimConfig {
            application_id: application_id.into(),
            public_key_pem: public_key_pem.into(),
            rtc_event_url: None,
            signature_secret: None,
            api_key: "sim-api-key".into(),
            api_secret: "sim-api-secret".into(),
            rtc_retry_base: Duration::from_secs(5),
        }
    }
}

/// Why a simulator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VonageSimError {
    /// `public_key_pem` is not an RSA public key in PEM form.
    #[error("invalid application public key: {0}")]
    PublicKey(String),
    /// The HTTP client for webhook delivery could not be built.
    #[error("cannot build the RTC webhook HTTP client: {0}")]
    HttpClient(String),
}

/// The simulator. Cheap to clone (all clones share one state); serve
/// [`router`](Self::router) with axum and use the methods for faults and inspection.
#[derive(Clone)]
pub struct VonageSim {
    inner: Arc<Inner>,
}

/// Injected faults (§5 statuses) for the `/v1` API.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub fail_queue: VecDeque<(u16, Option<u64>)>,
    pub latency: Duration,
    pub down: bool,
}

/// Bookkeeping that is not API data.
pub(crate) struct Meta {
    pub jwt_ids: Vec<String>,
    pub requests: Vec<(String, String)>,
    pub faults: Faults,
    pub application: Value,
    pub decoding_key: DecodingKey,
    /// `http://<Host>` of the latest request, for links in inspection results.
    pub last_base: Option<String>,
}

pub(crate) struct Inner {
    pub cfg: VonageSimConfig,
    pub state: Mutex<State>,
    pub meta: Mutex<Meta>,
    pub rtc: RtcDispatcher,
}

impl Inner {
    pub fn meta(&self) -> MutexGuard<'_, Meta> {
        self.meta.lock().expect("vonage sim meta lock")
    }

    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.lock().expect("vonage sim state lock"))
    }

    /// Runs a mutation and queues the RTC payloads it produced before releasing the
    /// lock, so webhook order per conversation equals event id order.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.state.lock().expect("vonage sim state lock");
        let out = f(&mut st);
        for (conv_id, payload) in st.outbox.drain(..) {
            self.rtc.enqueue(&conv_id, payload);
        }
        out
    }

    pub fn base(&self) -> String {
        self.meta().last_base.clone().unwrap_or_else(|| "http://localhost".to_owned())
    }

    /// Points webhook delivery at `url` and mirrors it into the application object.
    pub fn set_rtc_url(&self, url: Option<String>) {
        let mut meta = self.meta();
        let caps = &mut meta.application["capabilities"];
        if !caps.is_object() {
            *caps = json!({});
        }
        match &url {
            Some(u) => {
                if !caps["rtc"].is_object() {
                    caps["rtc"] = json!({});
                }
                caps["rtc"]["webhooks"]["event_url"] = json!({"address": u, "http_method": "POST"});
            }
            None => {
                if let Some(rtc) = caps.get_mut("rtc").and_then(Value::as_object_mut) {
                    rtc.remove("webhooks");
                }
            }
        }
        self.rtc.set_url(url);
    }
}

/// The application object as `GET /v2/applications/{id}` answers it (§3.1), with a
/// voice capability already configured so a careless PUT visibly wipes it.
fn initial_application(cfg: &VonageSimConfig) -> Value {
    let mut rtc = json!({"signed_callbacks": cfg.signature_secret.is_some()});
    if let Some(url) = &cfg.rtc_event_url {
        rtc["webhooks"] = json!({"event_url": {"address": url, "http_method": "POST"}});
    }
    json!({
        "id": cfg.application_id,
        "name": "wechat-bridge-sim",
        "capabilities": {
            "voice": {
                "webhooks": {
                    "answer_url": {"address": "https://example.com/voice/answer", "http_method": "GET"},
                    "event_url": {"address": "https://example.com/voice/event", "http_method": "POST"},
                },
                "signed_callbacks": true,
                "conversations_ttl": 48,
            },
            "rtc": rtc,
        },
        "keys": {"public_key": cfg.public_key_pem},
        "privacy": {"improve_ai": false},
    })
}

impl VonageSim {
    /// Builds a simulator.
    ///
    /// # Panics
    /// If `cfg.public_key_pem` is not an RSA public key; use [`try_new`](Self::try_new)
    /// to handle that as an error.
    pub fn new(cfg: VonageSimConfig) -> Self {
        Self::try_new(cfg).unwrap_or_else(|e| panic!("Vonage simulator: {e}"))
    }

    /// Builds a simulator, reporting a bad public key or HTTP client failure.
    pub fn try_new(cfg: VonageSimConfig) -> Result<Self, VonageSimError> {
        let decoding_key =
            DecodingKey::from_rsa_pem(cfg.public_key_pem.as_bytes()).map_err(|e| VonageSimError::PublicKey(e.to_string()))?;
        let client = reqwest::Client::builder()
            // Vonage gives webhooks a few seconds (§3.2): a slower answer is a failure.
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| VonageSimError::HttpClient(e.to_string()))?;
        let rtc = RtcDispatcher::new(RtcShared {
            client,
            url: Mutex::new(cfg.rtc_event_url.clone()),
            signature_secret: cfg.signature_secret.clone(),
            api_key: cfg.api_key.clone(),
            application_id: cfg.application_id.clone(),
            retry_base: cfg.rtc_retry_base,
            delivered: Default::default(),
            dropped: Default::default(),
            attempts: Default::default(),
        });
        let meta = Meta {
            jwt_ids: Vec::new(),
            requests: Vec::new(),
            faults: Faults::default(),
            application: initial_application(&cfg),
            decoding_key,
            last_base: None,
        };
        Ok(VonageSim {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new(cfg.application_id.clone())),
                meta: Mutex::new(meta),
                rtc,
                cfg,
            }),
        })
    }

    /// The HTTP API: `/v1/…` (JWT), `/v2/applications/{id}` (Basic auth) and the
    /// simulator's own `/_sim/faults`, `/_sim/state`, `/_sim/agents`,
    /// `/_sim/conversations/{id}/events`.
    pub fn router(&self) -> axum::Router {
        routes::router(self.inner.clone())
    }

    /// The configuration the simulator was built with.
    pub fn config(&self) -> &VonageSimConfig {
        &self.inner.cfg
    }

    // ---- RTC webhook ---------------------------------------------------------------

    /// Sets or clears the RTC `event_url`, as a `PUT /v2/applications/{id}` would.
    pub fn set_rtc_event_url(&self, url: Option<String>) {
        self.inner.set_rtc_url(url);
    }

    /// The current RTC `event_url`.
    pub fn rtc_event_url(&self) -> Option<String> {
        self.inner.rtc.url()
    }

    /// The application object (`GET /v2/applications/{id}`).
    pub fn application(&self) -> Value {
        self.inner.meta().application.clone()
    }

    // ---- faults --------------------------------------------------------------------

    /// The next `n` authenticated `/v1` requests answer `status` with an RFC 7807 body
    /// (429: `http:error:too-many-request`, the JAVA sample of §5; 500:
    /// `http:error:db-unavailable`; other 5xx: `http:error:service-not-available`) and,
    /// when given, a `Retry-After: <secs>` header. Calls queue up behind each other.
    pub fn fail_next(&self, n: usize, status: u16, retry_after_secs: Option<u64>) {
        let mut meta = self.inner.meta();
        for _ in 0..n {
            meta.faults.fail_queue.push_back((status, retry_after_secs));
        }
    }

    /// Sleeps `d` before answering each `/v1` request (`Duration::ZERO` turns it off).
    pub fn set_latency(&self, d: Duration) {
        self.inner.meta().faults.latency = d;
    }

    /// While `true`, every `/v1` request answers 503 `http:error:service-not-available`.
    pub fn set_down(&self, down: bool) {
        self.inner.meta().faults.down = down;
    }

    /// Clears queued failures, latency and the down flag.
    pub fn clear_faults(&self) {
        self.inner.meta().faults = Faults::default();
    }

    // ---- inspection ----------------------------------------------------------------

    /// The `jti` of every JWT that passed signature verification, in arrival order
    /// (repeats show token reuse).
    pub fn jwt_ids(&self) -> Vec<String> {
        self.inner.meta().jwt_ids.clone()
    }

    /// How many requests had this method (case-insensitive) and a path starting with
    /// `path_prefix` (`/_sim` requests are not counted).
    pub fn request_count(&self, method: &str, path_prefix: &str) -> usize {
        self.inner.meta().requests.iter().filter(|(m, p)| m.eq_ignore_ascii_case(method) && p.starts_with(path_prefix)).count()
    }

    /// All users, full objects, in creation order.
    pub fn users(&self) -> Vec<Value> {
        let base = self.inner.base();
        self.inner.read(|st| st.users.iter().map(|u| st.user_json(u, &base)).collect())
    }

    /// All conversations, full objects, in creation order.
    pub fn conversations(&self) -> Vec<Value> {
        let base = self.inner.base();
        self.inner.read(|st| st.conversations.iter().map(|c| State::conversation_json(c, &base)).collect())
    }

    /// The members of a conversation, full objects (empty for an unknown id).
    pub fn members(&self, conv_id: &str) -> Vec<Value> {
        let base = self.inner.base();
        self.inner.read(|st| match st.conversation(conv_id) {
            Ok(c) => c.members.iter().map(|m| st.member_json(c, m, &base)).collect(),
            Err(_) => Vec::new(),
        })
    }

    /// The events of a conversation in id order, full objects (empty for an unknown id).
    pub fn events(&self, conv_id: &str) -> Vec<Value> {
        let base = self.inner.base();
        self.inner.read(|st| match st.conversation(conv_id) {
            Ok(c) => c.events.iter().map(|e| st.event_json(c, e, &base)).collect(),
            Err(_) => Vec::new(),
        })
    }

    /// Every event of every conversation, in creation order, with its conversation id.
    pub fn all_events(&self) -> Vec<(String, Value)> {
        let base = self.inner.base();
        let base = base.as_str();
        self.inner.read(|st| {
            let mut all: Vec<(u64, String, Value)> = st
                .conversations
                .iter()
                .flat_map(|c| c.events.iter().map(move |e| (e.seq, c.id.clone(), st.event_json(c, e, base))))
                .collect();
            all.sort_by_key(|(seq, _, _)| *seq);
            all.into_iter().map(|(_, c, e)| (c, e)).collect()
        })
    }

    // ---- agent actions -------------------------------------------------------------

    /// Stores `event` (`{type, from?, body}`) in the conversation exactly as if a client
    /// SDK had posted it: same validation, same ids, dispatched to the RTC webhook.
    /// Returns the full event, or the rejection as `"<status> <code>: <detail>"`.
    pub fn post_event_as_client(&self, conv_id: &str, event: Value) -> Result<Value, String> {
        let base = self.inner.base();
        self.inner.mutate(|st| st.create_event(conv_id, &event, &base)).map_err(|p| p.to_string())
    }

    /// Creates (or reuses) the user `name` and makes it a joined `app` member of the
    /// conversation (reusing a joined member). Returns the member id.
    ///
    /// # Panics
    /// If the conversation does not exist.
    pub fn create_agent(&self, name: &str, conv_id: &str) -> String {
        let base = self.inner.base();
        self.inner
            .mutate(|st| create_agent_in(st, name, conv_id, &base))
            .unwrap_or_else(|p| panic!("create_agent({name}, {conv_id}): {p}"))
    }
}

pub(crate) fn create_agent_in(st: &mut State, name: &str, conv_id: &str, base: &str) -> Result<String, Problem> {
    st.conversation(conv_id)?;
    let user_id = match st.user_by_name(name) {
        Some(u) => u.id.clone(),
        None => {
            let u = st.create_user(&json!({"name": name, "display_name": name}), base)?;
            u["id"].as_str().expect("user id").to_owned()
        }
    };
    let req = json!({"user": {"id": user_id}, "state": "joined", "channel": {"type": "app"}});
    match st.create_member(conv_id, &req, base) {
        Ok(m) => Ok(m["id"].as_str().expect("member id").to_owned()),
        Err(p) if p.code.as_deref() == Some("conversation:error:member-already-joined") => {
            let conv = st.conversation(conv_id)?;
            Ok(conv.members.iter().find(|m| m.user_id == user_id).expect("joined member").id.clone())
        }
        Err(p) => Err(p),
    }
}
