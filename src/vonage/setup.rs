//! `wechat-bridge setup`, Vonage's part: points the Vonage application's RTC `event_url` at the
//! bridge (the channel's part, what to paste into its console, follows: `app::setup`).
//!
//! Application API v2 (`vonage-api.md §3.1`): `PUT /v2/applications/{id}` with Basic auth
//! `VONAGE_API_KEY:VONAGE_API_SECRET`. `name` is required and a PUT replaces `capabilities`
//! wholesale, so the application is read first and only `capabilities.rtc` is changed.
//!
//! The Vonage API secret is never printed.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::config::VonageConfig;

/// Why `setup` could not finish. Each message is one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `BRIDGE_PUBLIC_URL` is not set.
    #[error("missing BRIDGE_PUBLIC_URL: setup needs the bridge's public https base URL (e.g. https://bridge.example.com)")]
    MissingPublicUrl,
    /// `BRIDGE_PUBLIC_URL` is not https (plain http is accepted for localhost only).
    #[error("BRIDGE_PUBLIC_URL must be an https:// URL reachable by WeChat and Vonage, got {0:?}")]
    PublicUrlNotHttps(String),
    /// `VONAGE_API_KEY` and/or `VONAGE_API_SECRET` are not set.
    #[error("missing {0}: setup calls Vonage's Application API with the account's API key and secret")]
    MissingApiCredentials(&'static str),
    /// The Application API could not be reached.
    #[error("cannot reach Vonage ({method} {url}): {reason}")]
    Unreachable { method: &'static str, url: String, reason: String },
    /// Vonage refused the API key and secret.
    #[error("Vonage answered 401 Unauthorized to {method} {url}: check VONAGE_API_KEY and VONAGE_API_SECRET")]
    Unauthorized { method: &'static str, url: String },
    /// The application does not exist (for this account).
    #[error("Vonage answered 404 Not Found to {method} {url}: check VONAGE_APPLICATION_ID")]
    NotFound { method: &'static str, url: String },
    /// Any other non-success answer.
    #[error("Vonage answered {status} to {method} {url}: {detail}")]
    Api { method: &'static str, url: String, status: u16, detail: String },
    /// A success answer whose body is not an application object.
    #[error("unexpected answer from Vonage to {method} {url}: {reason}")]
    BadResponse { method: &'static str, url: String, reason: String },
    /// Writing the instructions failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// `BRIDGE_PUBLIC_URL` without a trailing slash, once it is https (or http on this machine).
pub fn public_base(public_url: Option<&str>) -> Result<&str, SetupError> {
    let public = public_url.ok_or(SetupError::MissingPublicUrl)?;
    let public = public.trim_end_matches('/');
    if !(public.starts_with("https://") || is_local_http(public)) {
        return Err(SetupError::PublicUrlNotHttps(public.to_string()));
    }
    Ok(public)
}

/// Updates the Vonage application's RTC webhook to `{public}/webhooks/vonage/rtc` and writes
/// what changed to `out`.
pub async fn run(vonage: &VonageConfig, public: &str, out: &mut impl std::io::Write) -> Result<(), SetupError> {
    let (api_key, api_secret) = match (&vonage.api_key, &vonage.api_secret) {
        (Some(key), Some(secret)) => (key.as_str(), secret.expose()),
        (None, None) => return Err(SetupError::MissingApiCredentials("VONAGE_API_KEY and VONAGE_API_SECRET")),
        (None, _) => return Err(SetupError::MissingApiCredentials("VONAGE_API_KEY")),
        (_, None) => return Err(SetupError::MissingApiCredentials("VONAGE_API_SECRET")),
    };

    let rtc_url = format!("{public}/webhooks/vonage/rtc");
    let signed = vonage.signature_secret.is_some();
    let url = format!("{}/v2/applications/{}", vonage.api_base, vonage.application_id);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| SetupError::Unreachable {
        method: "GET",
        url: url.clone(),
        reason: error_chain(&e),
    })?;

    let current = call(client.get(&url).basic_auth(api_key, Some(api_secret)), "GET", &url).await?;
    let (body, kept) = merged_application(current, &rtc_url, signed).map_err(|reason| SetupError::BadResponse {
        method: "GET",
        url: url.clone(),
        reason,
    })?;
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let updated = call(client.put(&url).basic_auth(api_key, Some(api_secret)).json(&body), "PUT", &url).await?;
    let confirmed = updated.pointer("/capabilities/rtc/webhooks/event_url/address").and_then(Value::as_str);
    if confirmed != Some(rtc_url.as_str()) {
        return Err(SetupError::BadResponse {
            method: "PUT",
            url,
            reason: format!("the application's RTC event_url is {confirmed:?} after the update, not {rtc_url:?}"),
        });
    }
    tracing::info!(application_id = %vonage.application_id, event_url = %rtc_url, "Vonage RTC webhook updated");

    writeln!(out, "Vonage application {} ({name:?}) updated:", vonage.application_id)?;
    writeln!(out, "  RTC event_url   {rtc_url} (POST)")?;
    if signed {
        writeln!(out, "  signed_callbacks on: the bridge checks them with VONAGE_SIGNATURE_SECRET")?;
    }
    writeln!(out, "  kept            {}", if kept.is_empty() { "(no other capabilities)".into() } else { kept.join(", ") })?;
    writeln!(out)?;
    Ok(())
}

/// `http://` is accepted for a local bridge (trying `setup` against `simulate vonage`).
fn is_local_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// The PUT body: the application as read (without `id` and `_links`), with
/// `capabilities.rtc.webhooks.event_url` set and every other capability untouched.
/// Returns it with the names of the capabilities other than `rtc` that were kept.
fn merged_application(mut app: Value, rtc_url: &str, signed: bool) -> Result<(Value, Vec<String>), String> {
    let obj = app.as_object_mut().ok_or("the body is not a JSON object")?;
    if obj.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err("the application has no name".into());
    }
    obj.remove("id");
    obj.remove("_links");
    let caps = object_at(obj, "capabilities");
    let kept = caps.keys().filter(|k| *k != "rtc").cloned().collect();
    let rtc = object_at(caps, "rtc");
    object_at(rtc, "webhooks").insert("event_url".into(), json!({"address": rtc_url, "http_method": "POST"}));
    if signed {
        rtc.insert("signed_callbacks".into(), Value::Bool(true));
    }
    Ok((app, kept))
}

/// The object under `key`, replacing a missing or non-object value with `{}`.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

/// Sends a request; a 2xx JSON object is returned, anything else becomes a [`SetupError`].
async fn call(request: reqwest::RequestBuilder, method: &'static str, url: &str) -> Result<Value, SetupError> {
    let url = url.to_string();
    let response =
        request.send().await.map_err(|e| SetupError::Unreachable { method, url: url.clone(), reason: error_chain(&e) })?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    match status {
        200..=299 => serde_json::from_str::<Value>(&text).ok().filter(Value::is_object).ok_or_else(|| SetupError::BadResponse {
            method,
            url,
            reason: "the body is not a JSON object".into(),
        }),
        401 => Err(SetupError::Unauthorized { method, url }),
        404 => Err(SetupError::NotFound { method, url }),
        _ => Err(SetupError::Api { method, url, status, detail: problem_detail(&text) }),
    }
}

/// One line from an RFC 7807 body (`title: detail`, plus invalid parameters), or the raw text.
fn problem_detail(text: &str) -> String {
    let Ok(body) = serde_json::from_str::<Value>(text) else {
        let line = text.lines().next().unwrap_or_default();
        return if line.is_empty() { "(empty body)".into() } else { line.chars().take(200).collect() };
    };
    let mut parts: Vec<String> = ["title", "detail"].iter().filter_map(|k| body[*k].as_str()).map(str::to_string).collect();
    if let Some(params) = body["invalid_parameters"].as_array() {
        for p in params {
            parts.push(format!("{} {}", p["name"].as_str().unwrap_or("?"), p["reason"].as_str().unwrap_or("")));
        }
    }
    if parts.is_empty() { body.to_string().chars().take(200).collect() } else { parts.join(": ") }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_other_capabilities_and_name() {
        let app = json!({
            "id": "app-1", "name": "shop", "_links": {"self": {"href": "x"}},
            "capabilities": {"voice": {"webhooks": {}}, "rtc": {"legs_enabled": true, "webhooks": {"other": 1}}},
            "keys": {"public_key": "PEM"},
        });
        let (body, kept) = merged_application(app, "https://b.example/webhooks/vonage/rtc", true).unwrap();
        assert_eq!(kept, vec!["voice".to_string()]);
        assert!(body.get("id").is_none() && body.get("_links").is_none());
        assert_eq!(body["name"], "shop");
        assert_eq!(body["keys"]["public_key"], "PEM");
        assert_eq!(body["capabilities"]["voice"], json!({"webhooks": {}}));
        let rtc = &body["capabilities"]["rtc"];
        assert_eq!(rtc["legs_enabled"], true);
        assert_eq!(rtc["webhooks"]["other"], 1);
        assert_eq!(
            rtc["webhooks"]["event_url"],
            json!({"address": "https://b.example/webhooks/vonage/rtc", "http_method": "POST"})
        );
        assert_eq!(rtc["signed_callbacks"], true);
    }

    #[test]
    fn merge_creates_rtc_and_requires_a_name() {
        let (body, kept) = merged_application(json!({"name": "a"}), "https://x/webhooks/vonage/rtc", false).unwrap();
        assert!(kept.is_empty());
        assert!(body["capabilities"]["rtc"].get("signed_callbacks").is_none());
        assert!(merged_application(json!({"capabilities": {}}), "u", false).is_err());
        assert!(merged_application(json!([]), "u", false).is_err());
    }

    #[test]
    fn local_http_only() {
        assert!(is_local_http("http://127.0.0.1:8080"));
        assert!(is_local_http("http://localhost/x"));
        assert!(is_local_http("http://[::1]:80"));
        assert!(!is_local_http("http://bridge.example"));
        assert!(!is_local_http("http://127.0.0.1.evil.example"));
    }
}
