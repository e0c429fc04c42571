//! HTTP client for the Vonage Conversation API v1 (`vonage-api.md` §2): users, conversations,
//! members, events. Every call carries a cached RS256 application JWT; errors are parsed from the
//! RFC 7807 body (§5) so the relay can tell a retry from a permanent failure.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::jwt::{JwtError, JwtMinter};

/// Per-request timeout: a stuck call must not hold a job longer than its lease.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on conversation list pages scanned when looking a conversation up by name.
const MAX_LIST_PAGES: usize = 50;

/// What went wrong talking to Vonage.
#[derive(Debug, thiserror::Error)]
pub enum VonageError {
    /// Vonage answered with an error status and (usually) an RFC 7807 body with a `code`.
    #[error("vonage answered {status}{}: {detail}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Api { status: u16, code: Option<String>, detail: String, retry_after: Option<Duration> },
    /// No answer: connection refused, reset or timed out. The request may or may not have landed.
    #[error("vonage unreachable: {0}")]
    Transport(String),
    #[error("unexpected vonage response: {0}")]
    Decode(String),
    #[error(transparent)]
    Jwt(#[from] JwtError),
}

impl VonageError {
    /// 429, 5xx and transport errors are worth retrying; other 4xx are not (§5).
    pub fn is_retryable(&self) -> bool {
        match self {
            VonageError::Api { status, .. } => *status == 429 || *status >= 500 || *status == 401,
            VonageError::Transport(_) => true,
            VonageError::Decode(_) | VonageError::Jwt(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            VonageError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The Vonage error `code` (e.g. `conversation:error:not-found`), when there is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            VonageError::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// A created (or found) object: only its id matters to the bridge.
#[derive(Debug, Clone, Deserialize)]
pub struct Created {
    pub id: Value,
}

impl Created {
    /// Ids are strings (`USR-…`) except event ids, which are integers (§2.2).
    pub fn id_string(&self) -> String {
        match &self.id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// Talks to one Vonage application.
#[derive(Debug)]
pub struct VonageClient {
    http: reqwest::Client,
    base: String,
    jwt: JwtMinter,
}

impl VonageClient {
    pub fn new(base: &str, jwt: JwtMinter) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("wechat-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("reqwest client builds");
        Self { http, base: base.trim_end_matches('/').to_string(), jwt }
    }

    /// `POST /v1/users`; a `user:error:duplicate-name` 409 means it exists: look it up by name.
    pub async fn create_or_find_user(&self, name: &str, display_name: &str, custom: Value) -> Result<String, VonageError> {
        let body = json!({"name": name, "display_name": display_name, "properties": {"custom_data": custom}});
        match self.call(Method::POST, "/v1/users", Some(&body)).await {
            Ok(v) => Ok(parse::<Created>(v)?.id_string()),
            Err(e) if e.code() == Some("user:error:duplicate-name") || is_409(&e) => {
                let found = self.call(Method::GET, &format!("/v1/users?name={}", crate::urlencode(name)), None).await?;
                embedded(&found, "users")
                    .iter()
                    .find(|u| u["name"] == name)
                    .and_then(|u| u["id"].as_str())
                    .map(str::to_string)
                    .ok_or_else(|| VonageError::Decode(format!("user {name} exists (409) but was not found by name")))
            }
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/conversations`; on 409 the conversation exists. v1 has no name filter for
    /// conversations (§2.3), so look first among the user's conversations, then page the list.
    pub async fn create_or_find_conversation(
        &self,
        name: &str,
        display_name: &str,
        custom: Value,
        user_id: &str,
    ) -> Result<String, VonageError> {
        let body = json!({"name": name, "display_name": display_name, "properties": {"custom_data": custom}});
        match self.call(Method::POST, "/v1/conversations", Some(&body)).await {
            Ok(v) => Ok(parse::<Created>(v)?.id_string()),
            Err(e) if is_409(&e) => self.find_conversation(name, user_id).await,
            Err(e) => Err(e),
        }
    }

    async fn find_conversation(&self, name: &str, user_id: &str) -> Result<String, VonageError> {
        let mine = self.call(Method::GET, &format!("/v1/users/{user_id}/conversations?page_size=100"), None).await?;
        if let Some(id) = find_named(embedded(&mine, "conversations"), name) {
            return Ok(id);
        }
        let mut path = "/v1/conversations?page_size=100".to_string();
        for _ in 0..MAX_LIST_PAGES {
            let page = self.call(Method::GET, &path, None).await?;
            if let Some(id) = find_named(embedded(&page, "conversations"), name) {
                return Ok(id);
            }
            match page["_links"]["next"]["href"].as_str() {
                Some(next) => path = relative(next),
                None => break,
            }
        }
        Err(VonageError::Decode(format!("conversation {name} exists (409) but was not found in the list")))
    }

    /// `POST /v1/conversations/{id}/members` (state joined, channel app); an already joined user
    /// is looked up among the members instead (§2.3).
    pub async fn join_user(&self, conversation_id: &str, user_id: &str) -> Result<String, VonageError> {
        let body = json!({"user": {"id": user_id}, "state": "joined", "channel": {"type": "app"}});
        let path = format!("/v1/conversations/{conversation_id}/members");
        match self.call(Method::POST, &path, Some(&body)).await {
            Ok(v) => Ok(parse::<Created>(v)?.id_string()),
            Err(e) if e.code() == Some("conversation:error:member-already-joined") || is_409(&e) => {
                let list = self.call(Method::GET, &format!("{path}?page_size=100"), None).await?;
                embedded(&list, "members")
                    .iter()
                    .find(|m| m["_embedded"]["user"]["id"] == user_id && m["state"] != "LEFT")
                    .and_then(|m| m["id"].as_str())
                    .map(str::to_string)
                    .ok_or_else(|| VonageError::Decode(format!("user {user_id} joined but no member found")))
            }
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/conversations/{id}/events`; returns the event id (an integer, §2.2).
    pub async fn create_event(&self, conversation_id: &str, event: &Value) -> Result<String, VonageError> {
        let path = format!("/v1/conversations/{conversation_id}/events");
        let created = self.call(Method::POST, &path, Some(event)).await?;
        Ok(parse::<Created>(created)?.id_string())
    }

    /// One authenticated call. A 401 is answered by minting a fresh JWT and trying once more.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, VonageError> {
        match self.call_once(method.clone(), path, body).await {
            Err(VonageError::Api { status: 401, .. }) => {
                self.jwt.invalidate();
                self.call_once(method, path, body).await
            }
            other => other,
        }
    }

    async fn call_once(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, VonageError> {
        let mut request = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(self.jwt.token()?)
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| VonageError::Transport(crate::transport_error_text(e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.map_err(|e| VonageError::Transport(crate::transport_error_text(e)))?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| VonageError::Decode(e.to_string()));
        }
        let problem: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let detail = problem["detail"]
            .as_str()
            .or(problem["title"].as_str())
            .or(problem["description"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(VonageError::Api { status: status.as_u16(), code: problem["code"].as_str().map(str::to_string), detail, retry_after })
    }
}

fn is_409(e: &VonageError) -> bool {
    matches!(e, VonageError::Api { status: 409, .. })
}

fn parse<T: for<'de> Deserialize<'de>>(value: Value) -> Result<T, VonageError> {
    serde_json::from_value(value).map_err(|e| VonageError::Decode(e.to_string()))
}

/// List bodies hold `_embedded.<name>`; some variants use `_embedded` as the array itself (§0.3).
fn embedded<'a>(page: &'a Value, name: &str) -> &'a [Value] {
    page["_embedded"][name].as_array().or_else(|| page["_embedded"].as_array()).map(Vec::as_slice).unwrap_or(&[])
}

fn find_named(items: &[Value], name: &str) -> Option<String> {
    items.iter().find(|c| c["name"] == name).and_then(|c| c["id"].as_str()).map(str::to_string)
}

/// `_links.next.href` is absolute; the client keeps its own base (a proxy or regional host may differ).
fn relative(href: &str) -> String {
    match href.find("/v1/") {
        Some(i) => href[i..].to_string(),
        None => href.to_string(),
    }
}
