//! A WeChat Official Account server stand-in (`wechat-api.md` §1–§7): it signs and pushes user
//! messages to a bridge (plaintext, compatible or safe mode) and serves the API the bridge calls
//! (`cgi-bin/token`, `stable_token`, `message/custom/send`, `custom/typing`, `media/upload`,
//! `media/get`) with WeChat's JSON error codes. Faults (errcodes, outages) can be injected.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Multipart, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::wechat::crypto::MessageCrypto;
use crate::wechat::message::{self, Body, Push};
use crate::wechat::signature;

/// Access tokens live two hours (§5.1).
const TOKEN_TTL: Duration = Duration::from_secs(7200);
/// The customer-service window after a user's message (§6.2).
const WINDOW: Duration = Duration::from_secs(48 * 3600);
/// Text messages over this many bytes are refused with 45002 (§6.2).
const MAX_TEXT_BYTES: usize = 2048;

/// Who the simulated Official Account is.
#[derive(Debug, Clone)]
pub struct WeChatSimConfig {
    pub app_id: String,
    pub app_secret: String,
    pub token: String,
    pub encoding_aes_key: Option<String>,
    /// The account's original id (`gh_…`), the `ToUserName` of every push.
    pub account: String,
}

/// How a push is sent (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushMode {
    Plain,
    /// Plaintext fields and `<Encrypt>` in one body.
    Compatible,
    /// Only `<Encrypt>`.
    Safe,
}

/// The HTTP answer a bridge gave to a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReply {
    pub status: u16,
    pub body: String,
}

#[derive(Default)]
struct State_ {
    /// token → expiry
    tokens: HashMap<String, Instant>,
    /// The current stable token (§5.2), shared by every caller in normal mode.
    stable: Option<(String, Instant)>,
    token_calls: usize,
    /// Every accepted custom/send body.
    sent: Vec<Value>,
    /// openid → last time the user wrote (opens the 48 h window).
    last_interaction: HashMap<String, Instant>,
    media: HashMap<String, (String, Vec<u8>)>,
    fail_next: VecDeque<(i64, String)>,
    down: bool,
    next_msg_id: i64,
    requests: Vec<String>,
}

struct Inner {
    config: WeChatSimConfig,
    crypto: Option<MessageCrypto>,
    state: Mutex<State_>,
    http: reqwest::Client,
}

/// The simulated WeChat server. Clones share state.
#[derive(Clone)]
pub struct WeChatSim {
    inner: Arc<Inner>,
}

impl WeChatSim {
    pub fn new(config: WeChatSimConfig) -> Self {
        let crypto = config
            .encoding_aes_key
            .as_deref()
            .map(|key| MessageCrypto::new(key, &config.app_id).expect("simulator AES key is valid"));
        let state = State_ { next_msg_id: 24_000_000_000_000_000, ..Default::default() };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
        Self { inner: Arc::new(Inner { config, crypto, state: Mutex::new(state), http }) }
    }

    pub fn config(&self) -> &WeChatSimConfig {
        &self.inner.config
    }

    /// The WeChat API routes (serve them at the bridge's `WECHAT_API_BASE`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/cgi-bin/token", get(token))
            .route("/cgi-bin/stable_token", post(stable_token))
            .route("/cgi-bin/message/custom/send", post(custom_send))
            .route("/cgi-bin/message/custom/typing", post(typing))
            .route("/cgi-bin/media/upload", post(media_upload))
            .route("/cgi-bin/media/get", get(media_get))
            .route("/_sim/faults", post(set_faults))
            .route("/_sim/state", get(sim_state))
            .with_state(self.clone())
    }

    // ----- pushing, as WeChat's servers do -----

    /// A text message from `openid`, with a fresh MsgId.
    pub fn text(&self, openid: &str, content: &str) -> Push {
        let msg_id = self.next_msg_id();
        Push {
            to_user_name: self.inner.config.account.clone(),
            from_user_name: openid.to_string(),
            create_time: now_secs(),
            body: Body::Text { content: content.to_string(), msg_id, biz_msg_menu_id: None },
        }
    }

    /// A fresh MsgId (64-bit, like WeChat's).
    pub fn next_msg_id(&self) -> String {
        let mut state = self.lock();
        state.next_msg_id += 1;
        state.next_msg_id.to_string()
    }

    /// The query string and body WeChat would send for `push` in `mode`, signed with the token.
    pub fn signed_request(&self, push: &Push, mode: PushMode, timestamp: i64) -> (String, String) {
        let config = &self.inner.config;
        let nonce = rand::random::<u32>().to_string();
        let ts = timestamp.to_string();
        let sig = signature::sign(&[&config.token, &ts, &nonce]);
        let xml = message::to_xml(push);
        let mut query = format!("signature={sig}&timestamp={ts}&nonce={nonce}&openid={}", push.from_user_name);
        let body = match mode {
            PushMode::Plain => xml,
            PushMode::Safe | PushMode::Compatible => {
                let crypto = self.inner.crypto.as_ref().expect("AES mode needs encoding_aes_key");
                let encrypt = crypto.encrypt(&xml);
                let msg_signature = signature::sign(&[&config.token, &ts, &nonce, &encrypt]);
                query.push_str(&format!("&encrypt_type=aes&msg_signature={msg_signature}"));
                if mode == PushMode::Safe {
                    message::encrypted_envelope_xml(&config.account, &encrypt)
                } else {
                    // Compatible mode carries the plaintext and the ciphertext (§3.1).
                    xml.replacen("</xml>", &format!("<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"), 1)
                }
            }
        };
        (query, body)
    }

    /// Pushes `push` to the bridge's webhook `url`, as WeChat does, and records the user's
    /// interaction (it opens the customer-service window).
    pub async fn push(&self, url: &str, push: &Push, mode: PushMode) -> Result<PushReply, reqwest::Error> {
        let (query, body) = self.signed_request(push, mode, now_secs());
        self.post_raw(url, &query, body).await.inspect(|reply| {
            if reply.status == 200 {
                self.lock().last_interaction.insert(push.from_user_name.clone(), Instant::now());
            }
        })
    }

    /// Posts a body with a given query string (for forged, replayed or malformed pushes).
    pub async fn post_raw(&self, url: &str, query: &str, body: String) -> Result<PushReply, reqwest::Error> {
        let response =
            self.inner.http.post(format!("{url}?{query}")).header(header::CONTENT_TYPE, "text/xml").body(body).send().await?;
        let status = response.status().as_u16();
        Ok(PushReply { status, body: response.text().await? })
    }

    // ----- inspection and fault injection -----

    /// Custom-service messages accepted so far, in order.
    pub fn sent(&self) -> Vec<Value> {
        self.lock().sent.clone()
    }

    /// Calls to `token` and `stable_token`.
    pub fn token_calls(&self) -> usize {
        self.lock().token_calls
    }

    /// Paths requested so far (without query strings).
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Invalidates every token issued (as a force refresh elsewhere would): the next call
    /// with an old token answers 40001.
    pub fn revoke_tokens(&self) {
        let mut state = self.lock();
        state.tokens.clear();
        state.stable = None;
    }

    /// The next `n` API calls answer `errcode` (e.g. -1 busy, 45015, 45009).
    pub fn fail_next(&self, n: usize, errcode: i64, errmsg: &str) {
        let mut state = self.lock();
        for _ in 0..n {
            state.fail_next.push_back((errcode, errmsg.to_string()));
        }
    }

    /// While down, every API call answers HTTP 503 (a gateway in front of WeChat failing).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Opens the 48-hour window for `openid` as if they had just written.
    pub fn touch_window(&self, openid: &str) {
        self.lock().last_interaction.insert(openid.to_string(), Instant::now());
    }

    /// Closes the 48-hour window for `openid` (their last message is older than 48 hours).
    pub fn close_window(&self, openid: &str) {
        self.lock().last_interaction.remove(openid);
    }

    /// Stores media as if a user had sent it; returns its media_id.
    pub fn add_media(&self, content_type: &str, bytes: Vec<u8>) -> String {
        let id = format!("MEDIA_{}", uuid::Uuid::new_v4().simple());
        self.lock().media.insert(id.clone(), (content_type.to_string(), bytes));
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State_> {
        self.inner.state.lock().expect("wechat sim state")
    }

    /// Common checks of every API call: outage, injected fault, access token (§5.3).
    fn check_call(&self, path: &str, access_token: Option<&str>) -> Result<(), Response> {
        let mut state = self.lock();
        state.requests.push(path.to_string());
        if state.down {
            return Err((StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response());
        }
        if let Some((code, msg)) = state.fail_next.pop_front() {
            return Err(errcode(code, &msg));
        }
        let Some(token) = access_token else {
            return Err(errcode(41001, "access_token missing"));
        };
        match state.tokens.get(token) {
            None => Err(errcode(40001, "invalid credential, access_token is invalid or not latest")),
            Some(expiry) if *expiry <= Instant::now() => Err(errcode(42001, "access_token expired")),
            Some(_) => Ok(()),
        }
    }

    fn issue_token(&self, stable: bool, force: bool) -> Value {
        let mut state = self.lock();
        state.token_calls += 1;
        let now = Instant::now();
        if stable && !force {
            // Normal mode returns the same token while it is valid (§5.2).
            if let Some((token, expiry)) = state.stable.clone()
                && expiry > now
            {
                return json!({"access_token": token, "expires_in": expiry.duration_since(now).as_secs()});
            }
        }
        if stable
            && force
            && let Some((old, _)) = state.stable.take()
        {
            state.tokens.remove(&old);
        }
        let token = format!("SIM_TOKEN_{}", uuid::Uuid::new_v4().simple());
        state.tokens.insert(token.clone(), now + TOKEN_TTL);
        if stable {
            state.stable = Some((token.clone(), now + TOKEN_TTL));
        }
        json!({"access_token": token, "expires_in": TOKEN_TTL.as_secs()})
    }

    fn check_credentials(&self, appid: Option<&str>, secret: Option<&str>) -> Result<(), Response> {
        let config = &self.inner.config;
        if appid != Some(config.app_id.as_str()) {
            return Err(errcode(40013, "invalid appid"));
        }
        if secret != Some(config.app_secret.as_str()) {
            return Err(errcode(40125, "invalid appsecret"));
        }
        Ok(())
    }
}

/// WeChat's error shape: HTTP 200 with `{errcode, errmsg}` (§5.1).
fn errcode(code: i64, msg: &str) -> Response {
    let rid = uuid::Uuid::new_v4().simple().to_string();
    axum::Json(json!({"errcode": code, "errmsg": format!("{msg} rid: {}", &rid[..8])})).into_response()
}

fn ok() -> Response {
    axum::Json(json!({"errcode": 0, "errmsg": "ok"})).into_response()
}

fn now_secs() -> i64 {
    crate::store::now_ms() / 1000
}

#[derive(Deserialize)]
struct TokenQuery {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
}

async fn token(State(sim): State<WeChatSim>, Query(q): Query<TokenQuery>) -> Response {
    sim.lock().requests.push("/cgi-bin/token".into());
    if q.grant_type.as_deref() != Some("client_credential") {
        return errcode(40002, "invalid grant_type");
    }
    if let Err(r) = sim.check_credentials(q.appid.as_deref(), q.secret.as_deref()) {
        return r;
    }
    axum::Json(sim.issue_token(false, false)).into_response()
}

async fn stable_token(State(sim): State<WeChatSim>, body: Bytes) -> Response {
    {
        let mut state = sim.lock();
        state.requests.push("/cgi-bin/stable_token".into());
        if state.down {
            return (StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response();
        }
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return errcode(47001, "data format error");
    };
    if req["grant_type"] != "client_credential" {
        return errcode(40002, "invalid grant_type");
    }
    if let Err(r) = sim.check_credentials(req["appid"].as_str(), req["secret"].as_str()) {
        return r;
    }
    let force = req["force_refresh"].as_bool().unwrap_or(false);
    axum::Json(sim.issue_token(true, force)).into_response()
}

#[derive(Deserialize)]
struct TokenParam {
    access_token: Option<String>,
    #[serde(rename = "type")]
    media_type: Option<String>,
    media_id: Option<String>,
}

async fn custom_send(State(sim): State<WeChatSim>, Query(q): Query<TokenParam>, body: Bytes) -> Response {
    if let Err(r) = sim.check_call("/cgi-bin/message/custom/send", q.access_token.as_deref()) {
        return r;
    }
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return errcode(47001, "data format error");
    };
    let Some(touser) = msg["touser"].as_str().filter(|t| !t.is_empty()) else {
        return errcode(40003, "invalid openid");
    };
    let msgtype = msg["msgtype"].as_str().unwrap_or("");
    let valid = match msgtype {
        "text" => match msg["text"]["content"].as_str() {
            Some(c) if c.len() > MAX_TEXT_BYTES => return errcode(45002, "content size out of limit"),
            Some(c) => !c.is_empty(),
            None => false,
        },
        "image" | "voice" | "mpnews" => msg[msgtype]["media_id"].is_string(),
        "video" => msg["video"]["media_id"].is_string(),
        "news" => match msg["news"]["articles"].as_array() {
            Some(a) if a.len() > 1 => return errcode(45008, "article size out of limit"),
            Some(a) => !a.is_empty(),
            None => false,
        },
        "music" | "msgmenu" | "wxcard" | "miniprogrampage" | "mpnewsarticle" => msg[msgtype].is_object(),
        _ => return errcode(40008, "invalid message type"),
    };
    if !valid {
        return errcode(44002, "empty post data");
    }
    {
        let state = sim.lock();
        let in_window = state.last_interaction.get(touser).is_some_and(|t| t.elapsed() < WINDOW);
        if !in_window {
            return errcode(45015, "response out of time limit or subscription is canceled");
        }
    }
    sim.lock().sent.push(msg);
    ok()
}

async fn typing(State(sim): State<WeChatSim>, Query(q): Query<TokenParam>, body: Bytes) -> Response {
    if let Err(r) = sim.check_call("/cgi-bin/message/custom/typing", q.access_token.as_deref()) {
        return r;
    }
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return errcode(47001, "data format error");
    };
    match msg["command"].as_str() {
        Some("Typing") | Some("CancelTyping") => ok(),
        _ => errcode(45072, "command invalid"),
    }
}

async fn media_upload(State(sim): State<WeChatSim>, Query(q): Query<TokenParam>, mut form: Multipart) -> Response {
    if let Err(r) = sim.check_call("/cgi-bin/media/upload", q.access_token.as_deref()) {
        return r;
    }
    let media_type = q.media_type.unwrap_or_default();
    let limit = match media_type.as_str() {
        "image" => 10 << 20,
        "voice" => 2 << 20,
        "video" => 10 << 20,
        "thumb" => 64 << 10,
        _ => return errcode(40004, "invalid media type"),
    };
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() != Some("media") {
            continue;
        }
        let content_type = field.content_type().unwrap_or("application/octet-stream").to_string();
        let Ok(bytes) = field.bytes().await else { return errcode(41005, "media data missing") };
        if bytes.len() > limit {
            return errcode(40006, "invalid meida size");
        }
        let id = sim.add_media(&content_type, bytes.to_vec());
        return axum::Json(json!({"type": media_type, "media_id": id, "created_at": now_secs()})).into_response();
    }
    errcode(41005, "media data missing")
}

async fn media_get(State(sim): State<WeChatSim>, Query(q): Query<TokenParam>) -> Response {
    if let Err(r) = sim.check_call("/cgi-bin/media/get", q.access_token.as_deref()) {
        return r;
    }
    let media = q.media_id.and_then(|id| sim.lock().media.get(&id).cloned().map(|m| (id, m)));
    match media {
        // Binary with its content type; errors are JSON with HTTP 200 (§7.2).
        Some((id, (content_type, bytes))) => (
            [(header::CONTENT_TYPE, content_type), (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{id}\""))],
            bytes,
        )
            .into_response(),
        None => errcode(40007, "invalid media_id"),
    }
}

/// `POST /_sim/faults` for the standalone simulator: `{"fail_next": 2, "errcode": -1,
/// "errmsg": "system error"}`, `{"down": true}`, `{"close_window": "OPENID"}`,
/// `{"open_window": "OPENID"}`, `{"revoke_tokens": true}`.
async fn set_faults(State(sim): State<WeChatSim>, axum::Json(f): axum::Json<Value>) -> Response {
    if let Some(n) = f["fail_next"].as_u64() {
        let code = f["errcode"].as_i64().unwrap_or(-1);
        sim.fail_next(n as usize, code, f["errmsg"].as_str().unwrap_or("system error"));
    }
    if let Some(down) = f["down"].as_bool() {
        sim.set_down(down);
    }
    if let Some(openid) = f["close_window"].as_str() {
        sim.close_window(openid);
    }
    if let Some(openid) = f["open_window"].as_str() {
        sim.touch_window(openid);
    }
    if f["revoke_tokens"].as_bool() == Some(true) {
        sim.revoke_tokens();
    }
    ok()
}

/// `GET /_sim/state`: what the bridge sent, and how many tokens it asked for.
async fn sim_state(State(sim): State<WeChatSim>) -> Response {
    axum::Json(json!({"sent": sim.sent(), "token_calls": sim.token_calls(), "requests": sim.requests().len()})).into_response()
}
