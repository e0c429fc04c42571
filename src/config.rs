//! Configuration: environment variables, optionally layered over a TOML file.
//!
//! The names are fixed by DESIGN.md ("Configuration"). A `--config FILE.toml` may hold the same keys
//! in lower case; the environment wins. Everything is validated here, at start, so `serve` stops
//! with one line naming the problem instead of failing on the first message.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::vonage::jwt::JwtMinter;
use crate::wechat::crypto::MessageCrypto;
use crate::wechat::fetch_policy::FetchAllowlist;

/// A secret string (app secret, token, private key): never printed by `Debug` or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret value, for the one place that needs it (signing, a request body).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Why the configuration cannot be used. Each message is one line naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required setting {0}")]
    Missing(&'static str),
    #[error("invalid {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
}

/// The WeChat Official Account side.
#[derive(Debug, Clone)]
pub struct WeChatConfig {
    pub token: Secret,
    pub app_id: String,
    pub app_secret: Secret,
    /// Present when safe/compatible mode is configured (43-char EncodingAESKey).
    pub encoding_aes_key: Option<Secret>,
    pub api_base: String,
    /// Pushes whose `timestamp` is further than this from now are rejected; 0 turns it off.
    pub max_timestamp_skew_secs: u64,
    /// With an AES key, accept plaintext pushes too (`WECHAT_ALLOW_PLAINTEXT`).
    pub allow_plaintext: bool,
    /// Customer-service messages allowed per 48-hour window (`wechat-api.md` §6.2: 5 today).
    pub window_quota: u32,
}

/// The Vonage application side.
#[derive(Debug, Clone)]
pub struct VonageConfig {
    pub application_id: String,
    pub private_key_pem: Secret,
    pub api_base: String,
    pub signature_secret: Option<Secret>,
    /// Single-conversation mode of the reference integration.
    pub conversation_id: Option<String>,
    pub api_key: Option<String>,
    pub api_secret: Option<Secret>,
}

/// The agent side chosen by `BRIDGE_PLATFORM`, with its settings (only the chosen platform's
/// settings are read and required).
#[derive(Debug, Clone)]
pub enum PlatformConfig {
    Vonage(VonageConfig),
    Webhook(WebhookConfig),
    Chatwoot(ChatwootConfig),
}

/// The `chatwoot` platform: customers in an API-channel inbox of a Chatwoot account
/// (`reference/chatwoot-api.md`).
#[derive(Debug, Clone)]
pub struct ChatwootConfig {
    /// `CHATWOOT_BASE_URL`, e.g. `https://chat.example.com`.
    pub base_url: String,
    /// `CHATWOOT_ACCOUNT_ID` and `CHATWOOT_INBOX_ID`: the account and its API inbox.
    pub account_id: u64,
    pub inbox_id: u64,
    /// `CHATWOOT_API_TOKEN`: a dedicated administrator user's access token (§1.2).
    pub api_token: Secret,
    /// `CHATWOOT_WEBHOOK_SECRET`: the inbox's `secret`; when set, webhooks must be signed (§3.5).
    pub webhook_secret: Option<Secret>,
    /// `CHATWOOT_CATCH_UP_SECS` (extra key, default 60): how often the bridge asks Chatwoot for
    /// agents' replies its fire-once webhook did not bring (also once at start).
    pub catch_up_interval: Duration,
}

impl ChatwootConfig {
    fn load(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |key: &'static str| get(key).ok_or(ConfigError::Missing(key));
        let id = |key: &'static str| -> Result<u64, ConfigError> {
            let raw = required(key)?;
            raw.parse::<u64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| ConfigError::Invalid { key, reason: format!("{raw:?} is not a positive whole number") })
        };
        Ok(ChatwootConfig {
            base_url: base_url(Some(required("CHATWOOT_BASE_URL")?), "", "CHATWOOT_BASE_URL")?,
            account_id: id("CHATWOOT_ACCOUNT_ID")?,
            inbox_id: id("CHATWOOT_INBOX_ID")?,
            api_token: Secret::new(required("CHATWOOT_API_TOKEN")?),
            webhook_secret: get("CHATWOOT_WEBHOOK_SECRET").map(Secret::new),
            catch_up_interval: Duration::from_secs(
                parse_num(get("CHATWOOT_CATCH_UP_SECS"), 60, "CHATWOOT_CATCH_UP_SECS")?.max(1),
            ),
        })
    }
}

/// The `webhook` platform: any app, over signed webhooks out and a REST API in.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `PLATFORM_WEBHOOK_URL`: where customer messages and delivery statuses are POSTed.
    pub url: String,
    /// `PLATFORM_WEBHOOK_SECRET`: the Standard Webhooks secret, `whsec_` + base64 of 24–64 bytes.
    pub secret: Secret,
    /// `PLATFORM_API_TOKEN`: the bearer token apps present to `/api/v1/messages`.
    pub api_token: Secret,
}

impl WebhookConfig {
    /// `PLATFORM_*`: all three are required; the secret is decoded here, so a bad one stops the start.
    fn load(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |key: &'static str| get(key).ok_or(ConfigError::Missing(key));
        let url = base_url(Some(required("PLATFORM_WEBHOOK_URL")?), "", "PLATFORM_WEBHOOK_URL")?;
        let secret = required("PLATFORM_WEBHOOK_SECRET")?;
        crate::webhook::signing_key(&secret).map_err(|reason| ConfigError::Invalid { key: "PLATFORM_WEBHOOK_SECRET", reason })?;
        Ok(WebhookConfig { url, secret: Secret::new(secret), api_token: Secret::new(required("PLATFORM_API_TOKEN")?) })
    }
}

impl PlatformConfig {
    fn load(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match get("BRIDGE_PLATFORM").map(|p| p.to_ascii_lowercase()).as_deref() {
            None | Some("vonage") => Ok(PlatformConfig::Vonage(VonageConfig::load(get)?)),
            Some("webhook") => Ok(PlatformConfig::Webhook(WebhookConfig::load(get)?)),
            Some("chatwoot") => Ok(PlatformConfig::Chatwoot(ChatwootConfig::load(get)?)),
            Some(other) => Err(ConfigError::Invalid {
                key: "BRIDGE_PLATFORM",
                reason: format!("{other:?} is not one of vonage, webhook, chatwoot"),
            }),
        }
    }
}

impl VonageConfig {
    /// `VONAGE_*`: the application id and a private key that signs JWTs are required.
    fn load(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |key: &'static str| get(key).ok_or(ConfigError::Missing(key));
        let application_id = required("VONAGE_APPLICATION_ID")?;
        let private_key_pem = match (get("VONAGE_PRIVATE_KEY"), get("VONAGE_PRIVATE_KEY_PATH")) {
            (Some(pem), _) => pem.replace("\\n", "\n"),
            (None, Some(path)) => std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                key: "VONAGE_PRIVATE_KEY_PATH",
                reason: format!("cannot read {path}: {e}"),
            })?,
            (None, None) => return Err(ConfigError::Missing("VONAGE_PRIVATE_KEY_PATH or VONAGE_PRIVATE_KEY")),
        };
        JwtMinter::new(&application_id, &private_key_pem)
            .map_err(|e| ConfigError::Invalid { key: "VONAGE_PRIVATE_KEY", reason: e.to_string() })?;
        Ok(VonageConfig {
            application_id,
            private_key_pem: Secret::new(private_key_pem),
            api_base: base_url(get("VONAGE_API_BASE"), "https://api.nexmo.com", "VONAGE_API_BASE")?,
            signature_secret: get("VONAGE_SIGNATURE_SECRET").map(Secret::new),
            conversation_id: get("VONAGE_CONVERSATION_ID"),
            api_key: get("VONAGE_API_KEY"),
            api_secret: get("VONAGE_API_SECRET").map(Secret::new),
        })
    }
}

/// Outbox tuning. Not in DESIGN.md's fixed table: extra keys, with production defaults.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// First retry delay; doubles each attempt (with jitter) up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Attempts before a job is marked `failed` for good.
    pub max_attempts: u32,
    /// How long a claimed job stays claimed without renewal. The worker renews it every third of
    /// it while the job runs, so a crashed process's jobs are claimed again within one lease.
    pub lease: Duration,
    /// The longest one attempt at a job may take (all its remote calls); then it is retried later.
    pub job_timeout: Duration,
    /// On shutdown, how long running jobs may finish before they are stopped and released.
    pub shutdown_grace: Duration,
    /// How often an idle worker looks for due jobs (it is also woken at once by new work).
    pub poll_interval: Duration,
    /// Jobs in flight at once (at most one per contact and lane).
    pub batch_size: u32,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_attempts: 12,
            lease: Duration::from_secs(10),
            job_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            poll_interval: Duration::from_millis(500),
            batch_size: 32,
        }
    }
}

/// Limits of the HTTP server (DESIGN.md "Flow and guarantees" 4: slow or idle clients are timed
/// out and connections are limited). Not in DESIGN.md's fixed table: extra keys, with defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `BRIDGE_MAX_CONNECTIONS`: connections served at once; past it, 503 and close. Clamped at
    /// start below the open-files limit (see `http::server`).
    pub max_connections: usize,
    /// `BRIDGE_HEADER_TIMEOUT_SECS`: time a client has to send a whole request head.
    pub header_timeout: Duration,
    /// `BRIDGE_IDLE_TIMEOUT_SECS`: a connection with no bytes read or written for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { max_connections: 512, header_timeout: Duration::from_secs(10), idle_timeout: Duration::from_secs(60) }
    }
}

/// The whole configuration of `serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub public_url: Option<String>,
    pub admin_token: Option<Secret>,
    /// The admin API without a token: only `demo` sets this (it listens on loopback).
    pub open_admin: bool,
    pub wechat: WeChatConfig,
    /// `BRIDGE_PLATFORM` and its settings.
    pub platform: PlatformConfig,
    pub relay: RelayConfig,
    /// `BRIDGE_MEDIA_FETCH_ALLOWLIST`: what agents' `media.url` may reach besides public addresses.
    pub media_fetch_allowlist: FetchAllowlist,
    pub http: HttpConfig,
}

impl Config {
    /// Reads the environment, layered over `file` when given.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let file_values = match file {
            Some(path) => read_toml(path)?,
            None => HashMap::new(),
        };
        Self::from_lookup(|key| std::env::var(key).ok().or_else(|| file_values.get(&key.to_ascii_lowercase()).cloned()))
    }

    /// The database URL alone (for `migrate`, which needs nothing else): env, then file, then default.
    pub fn database_url(file: Option<&Path>) -> Result<String, ConfigError> {
        let from_file = match file {
            Some(path) => read_toml(path)?.remove("bridge_database_url"),
            None => None,
        };
        Ok(std::env::var("BRIDGE_DATABASE_URL").ok().or(from_file).unwrap_or_else(|| "sqlite://wechat-bridge.db".into()))
    }

    /// Builds and validates a configuration from any key → value lookup (env, file, tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |key: &str| get(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let required = |key: &'static str| get(key).ok_or(ConfigError::Missing(key));

        let listen_raw = get("BRIDGE_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_raw.parse().map_err(|_| ConfigError::Invalid {
            key: "BRIDGE_LISTEN",
            reason: format!("{listen_raw:?} is not an address like 127.0.0.1:8080"),
        })?;
        let database_url = get("BRIDGE_DATABASE_URL").unwrap_or_else(|| "sqlite://wechat-bridge.db".into());
        if !["sqlite:", "postgres:", "postgresql:"].iter().any(|scheme| database_url.starts_with(scheme)) {
            return Err(ConfigError::Invalid {
                key: "BRIDGE_DATABASE_URL",
                reason: "expected sqlite://PATH or postgres://USER@HOST/DATABASE".into(),
            });
        }
        let public_url = get("BRIDGE_PUBLIC_URL").map(|u| u.trim_end_matches('/').to_string());
        if let Some(url) = &public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError::Invalid { key: "BRIDGE_PUBLIC_URL", reason: "must start with https://".into() });
        }

        let app_id = required("WECHAT_APP_ID")?;
        let encoding_aes_key = get("WECHAT_ENCODING_AES_KEY").map(Secret::new);
        if let Some(key) = &encoding_aes_key {
            MessageCrypto::new(key.expose(), &app_id)
                .map_err(|e| ConfigError::Invalid { key: "WECHAT_ENCODING_AES_KEY", reason: e.to_string() })?;
        }
        let wechat = WeChatConfig {
            token: Secret::new(required("WECHAT_TOKEN")?),
            app_secret: Secret::new(required("WECHAT_APP_SECRET")?),
            app_id,
            encoding_aes_key,
            api_base: base_url(get("WECHAT_API_BASE"), "https://api.weixin.qq.com", "WECHAT_API_BASE")?,
            max_timestamp_skew_secs: parse_num(get("WECHAT_MAX_TIMESTAMP_SKEW_SECS"), 300, "WECHAT_MAX_TIMESTAMP_SKEW_SECS")?,
            allow_plaintext: parse_bool(get("WECHAT_ALLOW_PLAINTEXT"), "WECHAT_ALLOW_PLAINTEXT")?,
            window_quota: parse_num(get("WECHAT_WINDOW_QUOTA"), 5, "WECHAT_WINDOW_QUOTA")?.clamp(1, 1000) as u32,
        };

        let platform = PlatformConfig::load(&get)?;

        let defaults = RelayConfig::default();
        let relay = RelayConfig {
            retry_base: Duration::from_millis(parse_num(
                get("BRIDGE_RETRY_BASE_MS"),
                defaults.retry_base.as_millis() as u64,
                "BRIDGE_RETRY_BASE_MS",
            )?),
            retry_max: Duration::from_secs(parse_num(
                get("BRIDGE_RETRY_MAX_SECS"),
                defaults.retry_max.as_secs(),
                "BRIDGE_RETRY_MAX_SECS",
            )?),
            max_attempts: parse_num(get("BRIDGE_MAX_ATTEMPTS"), defaults.max_attempts as u64, "BRIDGE_MAX_ATTEMPTS")?.max(1)
                as u32,
            lease: Duration::from_secs(
                parse_num(get("BRIDGE_LEASE_SECS"), defaults.lease.as_secs(), "BRIDGE_LEASE_SECS")?.max(1),
            ),
            job_timeout: Duration::from_secs(
                parse_num(get("BRIDGE_JOB_TIMEOUT_SECS"), defaults.job_timeout.as_secs(), "BRIDGE_JOB_TIMEOUT_SECS")?.max(1),
            ),
            ..defaults
        };

        let mut media_fetch_allowlist = FetchAllowlist::parse(&get("BRIDGE_MEDIA_FETCH_ALLOWLIST").unwrap_or_default())
            .map_err(|reason| ConfigError::Invalid { key: "BRIDGE_MEDIA_FETCH_ALLOWLIST", reason })?;
        // Chatwoot's attachments are links on the Chatwoot host, often on the bridge's own
        // private network: the configured host is trusted like an allowlisted one.
        if let PlatformConfig::Chatwoot(chatwoot) = &platform
            && let Some(host) = host_of(&chatwoot.base_url)
        {
            media_fetch_allowlist.allow_host(host);
        }
        let http_defaults = HttpConfig::default();
        let http = HttpConfig {
            max_connections: parse_num(
                get("BRIDGE_MAX_CONNECTIONS"),
                http_defaults.max_connections as u64,
                "BRIDGE_MAX_CONNECTIONS",
            )?
            .max(1) as usize,
            // Zero would close every connection at once: at least one second each.
            header_timeout: Duration::from_secs(
                parse_num(
                    get("BRIDGE_HEADER_TIMEOUT_SECS"),
                    http_defaults.header_timeout.as_secs(),
                    "BRIDGE_HEADER_TIMEOUT_SECS",
                )?
                .max(1),
            ),
            idle_timeout: Duration::from_secs(
                parse_num(get("BRIDGE_IDLE_TIMEOUT_SECS"), http_defaults.idle_timeout.as_secs(), "BRIDGE_IDLE_TIMEOUT_SECS")?
                    .max(1),
            ),
        };

        Ok(Config {
            listen,
            database_url,
            public_url,
            admin_token: get("BRIDGE_ADMIN_TOKEN").map(Secret::new),
            open_admin: false,
            wechat,
            platform,
            relay,
            media_fetch_allowlist,
            http,
        })
    }
}

fn base_url(value: Option<String>, default: &str, key: &'static str) -> Result<String, ConfigError> {
    let url = value.unwrap_or_else(|| default.to_string());
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::Invalid { key, reason: format!("{url:?} is not an http(s) URL") });
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The host of an http(s) URL (no port, no brackets around IPv6).
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

fn parse_num(value: Option<String>, default: u64, key: &'static str) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError::Invalid { key, reason: format!("{v:?} is not a whole number") }),
    }
}

fn parse_bool(value: Option<String>, key: &'static str) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(other) => Err(ConfigError::Invalid { key, reason: format!("{other:?} is not true or false") }),
    }
}

/// Reads a flat TOML file of `lower_case_key = value` into strings.
fn read_toml(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let file_error = |reason: String| ConfigError::File { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_error(e.message().to_string()))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => return Err(file_error(format!("{key}: expected a string or number, got {}", other.type_str()))),
            };
            Ok((key.to_ascii_lowercase(), value))
        })
        .collect()
}
