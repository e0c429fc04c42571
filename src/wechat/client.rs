//! HTTP client for the WeChat Official Account server API (`wechat-api.md` §5–§7): the
//! access_token, customer-service messages, typing, temporary media.
//!
//! The token (§5.4) is one per app id, kept in the database so restarts and other instances reuse
//! it, fetched from `stable_token` in normal mode (§5.2: that never invalidates a token another
//! instance holds, so no distributed lock is needed), refreshed ahead of expiry by one caller per
//! process at a time, and renewed on 40001/40014/42001 with compare-and-invalidate (§5.4.4).
//!
//! Every URL carries `access_token` in its query: no URL is ever logged or put into an error
//! (`reqwest::Error::without_url`), and WeChat's `errmsg` is scrubbed of the token and secret.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::config::Secret;
use crate::metrics::{Metrics, TokenRefresh};
use crate::store::{Store, StoreError, now_ms};

/// The API's name in `bridge_remote_errors_total`.
const API: &str = "wechat";

/// Per-request timeout: a stuck call must not hold an outbox job past its lease.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Refresh when less than this is left: the platform rotates the stable token 5 minutes ahead
/// (§5.2), and old and new tokens both work during those 5 minutes (§5.1).
const REFRESH_MARGIN_MS: i64 = 5 * 60 * 1000;
/// A token this process fetched this recently is used even inside the margin, so a token WeChat
/// hands out with little time left does not make every call fetch again.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// `force_refresh=true` is limited to 20 a day, 30 s apart (§5.2).
const FORCE_SPACING: Duration = Duration::from_secs(30);
const FORCE_PER_DAY: usize = 20;
const DAY: Duration = Duration::from_secs(24 * 3600);
/// Media cap for `download_media` (video is at most 10 MB, §7.1; room for inbound short videos).
pub const MAX_MEDIA_BYTES: usize = 20 << 20;
/// JSON answers are small; never buffer an unbounded one.
const MAX_JSON_BYTES: usize = 1 << 20;

/// What went wrong talking to WeChat (or fetching a media URL).
#[derive(Debug, thiserror::Error)]
pub enum WeChatError {
    /// WeChat answered `{"errcode": …, "errmsg": …}` (HTTP 200). `errmsg` keeps WeChat's `rid:`
    /// for support, never the token.
    #[error("wechat errcode {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    /// A non-2xx HTTP status (a gateway in front of WeChat, or a media URL).
    #[error("HTTP status {status}")]
    Http { status: u16 },
    /// No answer: connect, timeout, reset. The request may or may not have landed.
    #[error("transport error: {0}")]
    Transport(String),
    #[error("unexpected response: {0}")]
    Decode(String),
    /// The body is larger than the size cap.
    #[error("response larger than the size limit")]
    TooLarge,
    #[error("token store: {0}")]
    Store(#[from] StoreError),
}

/// The codes that mean "this access_token is not (or no longer) valid" (§5.3).
fn is_token_errcode(code: i64) -> bool {
    matches!(code, 40001 | 40014 | 42001)
}

impl WeChatError {
    /// Worth retrying later: busy (-1), quota (45009), too frequent (45011), token errors that
    /// survived the refresh, HTTP 408/429/5xx, transport and store errors. Everything else (45015
    /// window closed, 43004, 40003, 45047, 45002, 40008, 48001, 40004/40007, …) cannot succeed
    /// by repetition (§5.3, §6.2, §7).
    pub fn is_retryable(&self) -> bool {
        match self {
            WeChatError::Api { errcode, .. } => matches!(errcode, -1 | 45009 | 45011) || is_token_errcode(*errcode),
            // 408: a gateway gave up waiting for the request; sending it again can succeed.
            WeChatError::Http { status } => matches!(*status, 408 | 429) || *status >= 500,
            WeChatError::Transport(_) | WeChatError::Store(_) => true,
            WeChatError::Decode(_) | WeChatError::TooLarge => false,
        }
    }

    /// WeChat's errcode, when WeChat gave one.
    pub fn code(&self) -> Option<i64> {
        match self {
            WeChatError::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    fn is_token_error(&self) -> bool {
        self.code().is_some_and(is_token_errcode)
    }

    /// The `code` label of `bridge_remote_errors_total`: the errcode, the HTTP status, or what
    /// kind of failure; `None` for the store's errors, which are not WeChat's.
    fn metric_code(&self) -> Option<String> {
        Some(match self {
            WeChatError::Api { errcode, .. } => errcode.to_string(),
            WeChatError::Http { status } => status.to_string(),
            WeChatError::Transport(_) => "transport".into(),
            WeChatError::Decode(_) => "decode".into(),
            WeChatError::TooLarge => "too_large".into(),
            WeChatError::Store(_) => return None,
        })
    }
}

/// Process-local refresh state, behind the single-flight mutex.
#[derive(Default)]
struct RefreshState {
    /// When this process last fetched a token.
    fetched_at: Option<Instant>,
    /// Force refreshes in the last 24 hours.
    forced: VecDeque<Instant>,
}

/// Talks to WeChat as one Official Account. Share it (`Arc`) so the single-flight holds.
pub struct WeChatClient {
    http: reqwest::Client,
    base: String,
    app_id: String,
    app_secret: Secret,
    store: Store,
    refresh: tokio::sync::Mutex<RefreshState>,
    /// The token this process last read or stored, with its expiry (Unix ms): every send needs
    /// it, and the database is asked only when it is missing, near expiry or rejected.
    cached: std::sync::Mutex<Option<(String, i64)>>,
    /// Counts WeChat's errors and token fetches.
    metrics: Metrics,
}

impl fmt::Debug for WeChatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeChatClient").field("base", &self.base).field("app_id", &self.app_id).finish_non_exhaustive()
    }
}

/// What `media/get` answered: the media, or (for video) where to fetch it (§7.2).
enum Media {
    Bytes(String, Vec<u8>),
    VideoUrl(String),
}

impl WeChatClient {
    /// A client for `api_base` (e.g. `https://api.weixin.qq.com`), caching tokens in `store`.
    pub fn new(api_base: &str, app_id: &str, app_secret: Secret, store: Store) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("wechat-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("reqwest client builds");
        Self {
            http,
            base: api_base.trim_end_matches('/').to_string(),
            app_id: app_id.to_string(),
            app_secret,
            store,
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
            cached: std::sync::Mutex::new(None),
            metrics: Metrics::default(),
        }
    }

    /// The client counting on `metrics` (the application's).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The metrics this client counts on (the channel on top of it shares them).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A valid access_token: the stored one while more than 5 minutes are left, else a fresh
    /// one from `stable_token` (one fetch per process at a time; the others wait and reuse it).
    pub async fn access_token(&self) -> Result<String, WeChatError> {
        self.token_other_than(None).await
    }

    /// `POST /cgi-bin/message/custom/send` with a §6.3 body (`touser`, `msgtype`, …).
    pub async fn send(&self, body: &Value) -> Result<(), WeChatError> {
        self.post_json("/cgi-bin/message/custom/send", body).await.map(drop)
    }

    /// `POST /cgi-bin/message/custom/typing`: `Typing` or `CancelTyping` (§6.4).
    pub async fn typing(&self, openid: &str, typing: bool) -> Result<(), WeChatError> {
        let command = if typing { "Typing" } else { "CancelTyping" };
        self.post_json("/cgi-bin/message/custom/typing", &json!({"touser": openid, "command": command})).await.map(drop)
    }

    /// `POST /cgi-bin/media/upload?type=…` (multipart field `media`, §7.1); returns the media_id,
    /// valid for 3 days. `media_type` is image, voice, video or thumb.
    pub async fn upload_media(
        &self,
        media_type: &str,
        filename: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<String, WeChatError> {
        let url = &format!("{}/cgi-bin/media/upload", self.base);
        let bytes = &bytes;
        let answer = self
            .with_token(|token| async move {
                let part = Part::bytes(bytes.clone())
                    .file_name(filename.to_string())
                    .mime_str(content_type)
                    .map_err(|_| WeChatError::Decode(format!("invalid content type {content_type:?}")))?;
                let request = self.http.post(url).query(&[("access_token", token.as_str()), ("type", media_type)]);
                self.json(request.multipart(Form::new().part("media", part)), &token).await
            })
            .await?;
        answer["media_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| WeChatError::Decode("media/upload answer without media_id".into()))
    }

    /// `GET /cgi-bin/media/get`: the media's content type and bytes (at most [`MAX_MEDIA_BYTES`]).
    /// The answer is told apart by Content-Type, not status (§7.2): JSON is an error (`errcode`)
    /// or, for video, `{"video_url"}`, which is then fetched here (it carries no token), so the
    /// caller always gets bytes.
    pub async fn download_media(&self, media_id: &str) -> Result<(String, Vec<u8>), WeChatError> {
        let url = &format!("{}/cgi-bin/media/get", self.base);
        let media = self
            .with_token(|token| async move {
                self.counted(
                    async {
                        let request = self.http.get(url).query(&[("access_token", token.as_str()), ("media_id", media_id)]);
                        let response = request.send().await.map_err(transport)?;
                        let (content_type, bytes) = read_capped(response, MAX_MEDIA_BYTES).await?;
                        // WeChat has been seen to label its JSON errors text/plain.
                        if (content_type.contains("json") || content_type.starts_with("text/plain"))
                            && let Ok(value) = serde_json::from_slice::<Value>(&bytes)
                        {
                            let value = self.check(value, &token)?;
                            return match value["video_url"].as_str() {
                                Some(video) => Ok(Media::VideoUrl(video.to_string())),
                                None => Err(WeChatError::Decode("media/get answered JSON without video_url".into())),
                            };
                        }
                        Ok(Media::Bytes(content_type, bytes))
                    }
                    .await,
                )
            })
            .await?;
        match media {
            Media::Bytes(content_type, bytes) => Ok((content_type, bytes)),
            Media::VideoUrl(video) => self.fetch_url(&video, MAX_MEDIA_BYTES).await,
        }
    }

    /// Downloads a URL WeChat itself handed out (`media/get`'s `video_url`, §7.2): its content
    /// type and at most `max_bytes` bytes, else [`WeChatError::TooLarge`]. Not for agents' URLs:
    /// those go through `media_fetch::MediaFetcher`, which refuses non-public addresses.
    pub async fn fetch_url(&self, url: &str, max_bytes: usize) -> Result<(String, Vec<u8>), WeChatError> {
        let fetched = async { read_capped(self.http.get(url).send().await.map_err(transport)?, max_bytes).await };
        self.counted(fetched.await)
    }

    // ----- the token (§5.4) -----

    /// A usable stored token other than `bad` (a token WeChat just rejected), else a fetched one.
    async fn token_other_than(&self, bad: Option<&str>) -> Result<String, WeChatError> {
        let usable = |(token, expires_at): &(String, i64), lenient: bool| {
            let left = expires_at - now_ms();
            Some(token.as_str()) != bad && (left > REFRESH_MARGIN_MS || (lenient && left > 0))
        };
        if let Some(cached) = self.cached_token()
            && usable(&cached, false)
        {
            return Ok(cached.0);
        }
        if let Some(stored) = self.store.access_token(&self.app_id).await?
            && usable(&stored, false)
        {
            self.remember(&stored);
            return Ok(stored.0);
        }
        // Single-flight (§5.4.3): one fetch per process, and one per database among instances
        // sharing it; whoever waited re-reads what the fetcher stored.
        let mut state = self.refresh.lock().await;
        let _shared = self.store.token_refresh_lock(&self.app_id).await?;
        let stored = self.store.access_token(&self.app_id).await?;
        let just_fetched = state.fetched_at.is_some_and(|t| t.elapsed() < MIN_REFETCH_INTERVAL);
        if let Some(stored) = stored.as_ref().filter(|s| usable(s, just_fetched)) {
            self.remember(stored);
            return Ok(stored.0.clone());
        }
        let reason = if bad.is_some() { TokenRefresh::Invalid } else { TokenRefresh::Expiry };
        match self.fetch_token(false, reason, &mut state).await {
            Ok(token) => Ok(token),
            // WeChat unreachable but the stored token has not expired yet: keep using it.
            Err(e) if e.is_retryable() => match stored.filter(|s| usable(s, true)) {
                Some((token, _)) => {
                    tracing::warn!(error = %e, "access_token refresh failed; using the current token until it expires");
                    Ok(token)
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    fn cached_token(&self) -> Option<(String, i64)> {
        self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn remember(&self, token: &(String, i64)) {
        *self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token.clone());
    }

    /// Drops the cached token if it is `rejected` (a newer one stays).
    fn forget(&self, rejected: &str) {
        let mut cached = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.as_ref().is_some_and(|(token, _)| token == rejected) {
            *cached = None;
        }
    }

    /// `force_refresh=true` after `bad` was rejected twice; `None` when the §5.2 limits forbid it
    /// now (then the token error stands and the caller retries later).
    async fn force_token(&self, bad: &str) -> Result<Option<String>, WeChatError> {
        let mut state = self.refresh.lock().await;
        let _shared = self.store.token_refresh_lock(&self.app_id).await?;
        if let Some((token, expires_at)) = self.store.access_token(&self.app_id).await?
            && token != bad
            && expires_at > now_ms()
        {
            // Another caller replaced it meanwhile.
            self.remember(&(token.clone(), expires_at));
            return Ok(Some(token));
        }
        while state.forced.front().is_some_and(|t| t.elapsed() >= DAY) {
            state.forced.pop_front();
        }
        if state.forced.len() >= FORCE_PER_DAY || state.forced.back().is_some_and(|t| t.elapsed() < FORCE_SPACING) {
            return Ok(None);
        }
        state.forced.push_back(Instant::now());
        tracing::warn!("access_token rejected twice; forcing a refresh");
        self.fetch_token(true, TokenRefresh::Invalid, &mut state).await.map(Some)
    }

    /// `POST /cgi-bin/stable_token` (§5.2), then stores the token for everyone; counted by `reason`.
    async fn fetch_token(&self, force: bool, reason: TokenRefresh, state: &mut RefreshState) -> Result<String, WeChatError> {
        let body = json!({"grant_type": "client_credential", "appid": self.app_id,
                          "secret": self.app_secret.expose(), "force_refresh": force});
        let request = self.http.post(format!("{}/cgi-bin/stable_token", self.base)).json(&body);
        let answer = self.json(request, "").await?;
        // Read fields by hand: a serde error could quote the token.
        let token = answer["access_token"].as_str().filter(|t| !t.is_empty());
        let (Some(token), Some(expires_in)) = (token, answer["expires_in"].as_i64()) else {
            return Err(WeChatError::Decode("stable_token answer without access_token/expires_in".into()));
        };
        let expires_at = now_ms() + expires_in * 1000;
        self.store.save_access_token(&self.app_id, token, expires_at).await?;
        self.remember(&(token.to_string(), expires_at));
        state.fetched_at = Some(Instant::now());
        self.metrics.token_refreshed(reason);
        tracing::info!(expires_in, force, "fetched a WeChat access_token");
        Ok(token.to_string())
    }

    /// Runs `call` with the token. On a token error (§5.4.4): invalidate the token only if it is
    /// still the one used, get another and retry ONCE. If that is rejected too, `stable_token`
    /// keeps handing out a token WeChat refuses (revoked by a force refresh whose result we never
    /// saw, or rotated oddly): force a refresh once, within §5.2's limits, and retry once more.
    /// A rejected token means the call did nothing, so these retries never duplicate a message.
    async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, WeChatError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, WeChatError>>,
    {
        let used = self.access_token().await?;
        let err = match call(used.clone()).await {
            Err(e) if e.is_token_error() => e,
            other => return other,
        };
        tracing::info!(errcode = err.code(), "access_token rejected; refreshing");
        self.forget(&used);
        self.store.invalidate_access_token(&self.app_id, &used).await?;
        let used = self.token_other_than(Some(&used)).await?;
        let err = match call(used.clone()).await {
            Err(e) if e.is_token_error() => e,
            other => return other,
        };
        self.forget(&used);
        self.store.invalidate_access_token(&self.app_id, &used).await?;
        match self.force_token(&used).await? {
            Some(token) => call(token).await,
            None => Err(err),
        }
    }

    async fn post_json(&self, path: &str, body: &Value) -> Result<Value, WeChatError> {
        let url = &format!("{}{path}", self.base);
        self.with_token(|token| async move {
            let request = self.http.post(url).query(&[("access_token", token.as_str())]).json(body);
            self.json(request, &token).await
        })
        .await
    }

    /// Sends a request and reads a JSON answer; a non-zero `errcode` is an error.
    async fn json(&self, request: reqwest::RequestBuilder, token: &str) -> Result<Value, WeChatError> {
        let answer = async {
            let response = request.send().await.map_err(transport)?;
            let (_, bytes) = read_capped(response, MAX_JSON_BYTES).await?;
            let value = serde_json::from_slice(&bytes).map_err(|e| WeChatError::Decode(format!("not JSON: {e}")))?;
            self.check(value, token)
        };
        self.counted(answer.await)
    }

    /// `result`, its error counted in `bridge_remote_errors_total`: every failed call once,
    /// refused tokens (then renewed) included.
    fn counted<T>(&self, result: Result<T, WeChatError>) -> Result<T, WeChatError> {
        if let Some(code) = result.as_ref().err().and_then(WeChatError::metric_code) {
            self.metrics.remote_error(API, &code);
        }
        result
    }

    fn check(&self, value: Value, token: &str) -> Result<Value, WeChatError> {
        match value["errcode"].as_i64() {
            Some(errcode) if errcode != 0 => {
                let mut errmsg = value["errmsg"].as_str().unwrap_or_default().to_string();
                for secret in [token, self.app_secret.expose()].into_iter().filter(|s| !s.is_empty()) {
                    errmsg = errmsg.replace(secret, "[redacted]");
                }
                Err(WeChatError::Api { errcode, errmsg })
            }
            _ => Ok(value),
        }
    }
}

/// [`crate::read_capped`] with WeChat's error type.
async fn read_capped(response: reqwest::Response, max: usize) -> Result<(String, Vec<u8>), WeChatError> {
    crate::read_capped(response, max).await.map_err(|e| match e {
        crate::CappedReadError::Status(status) => WeChatError::Http { status },
        crate::CappedReadError::TooLarge => WeChatError::TooLarge,
        crate::CappedReadError::Read(e) => transport(e),
    })
}

/// A transport error without its URL, which holds the access_token.
fn transport(e: reqwest::Error) -> WeChatError {
    WeChatError::Transport(crate::transport_error_text(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_408_429_and_5xx_are_retryable_other_4xx_are_not() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(WeChatError::Http { status }.is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 413] {
            assert!(!WeChatError::Http { status }.is_retryable(), "{status}");
        }
    }
}
