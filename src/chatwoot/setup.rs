//! `wechat-bridge setup`, Chatwoot's part: checks that the token is an administrator's user
//! token (`chatwoot-api.md` §1.2) and that the inbox is an API channel (§1.1), points the inbox's
//! webhook at the bridge and sets its 48-hour `agent_reply_time_window` (WeChat's reply window),
//! then says what is left to do by hand. Secrets are compared, never printed.

use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::client::{ChatwootClient, ChatwootError};
use crate::config::ChatwootConfig;

/// WeChat's customer-service window (`wechat-api.md` §6.2), in hours.
pub const REPLY_WINDOW_HOURS: u64 = 48;

/// Why Chatwoot's setup could not finish. Each message is one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "Chatwoot refused CHATWOOT_API_TOKEN ({0}): use the access token of an administrator user (Profile Settings → Access Token)"
    )]
    BadToken(String),
    #[error(
        "CHATWOOT_API_TOKEN is an agent-bot token: bots cannot create contacts or set message status; use an administrator user's access token"
    )]
    BotToken,
    #[error("the token's user is not in Chatwoot account {0}: check CHATWOOT_ACCOUNT_ID")]
    NotInAccount(u64),
    #[error(
        "the token's user is {role} in account {account}: the bridge needs an administrator (to read the inbox's secret and set it up)"
    )]
    NotAdministrator { account: u64, role: String },
    #[error("Chatwoot has no inbox {inbox} in account {account}: check CHATWOOT_INBOX_ID")]
    NoInbox { account: u64, inbox: u64 },
    #[error(
        "inbox {inbox} is a {channel_type} inbox: the bridge needs an API channel inbox (Settings → Inboxes → Add Inbox → API)"
    )]
    NotApiInbox { inbox: u64, channel_type: String },
    #[error("cannot reach Chatwoot: {0}")]
    Chatwoot(#[from] ChatwootError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Sets the inbox up for the bridge at `public` and writes what changed and what is left to `out`.
pub async fn run(config: &ChatwootConfig, public: &str, out: &mut impl std::io::Write) -> Result<(), SetupError> {
    let client = ChatwootClient::new(&config.base_url, config.account_id, config.api_token.clone());
    let profile = client.profile().await.map_err(token_error)?;
    let role = profile["accounts"]
        .as_array()
        .and_then(|accounts| accounts.iter().find(|a| a["id"].as_u64() == Some(config.account_id)))
        .map(|a| a["role"].as_str().unwrap_or_default().to_string())
        .ok_or(SetupError::NotInAccount(config.account_id))?;
    if role != "administrator" {
        return Err(SetupError::NotAdministrator { account: config.account_id, role });
    }
    writeln!(out, "Chatwoot: the token belongs to {} (administrator of account {})", name_of(&profile), config.account_id)?;

    let inbox = client.inbox(config.inbox_id).await.map_err(|e| match e.status() {
        Some(404) => SetupError::NoInbox { account: config.account_id, inbox: config.inbox_id },
        _ => SetupError::Chatwoot(e),
    })?;
    let channel_type = inbox["channel_type"].as_str().unwrap_or_default();
    if channel_type != "Channel::Api" {
        return Err(SetupError::NotApiInbox { inbox: config.inbox_id, channel_type: channel_type.to_string() });
    }

    let webhook_url = format!("{public}/webhooks/chatwoot");
    // Other keys of additional_attributes are kept: the update replaces the whole object.
    let mut attributes = inbox["additional_attributes"].as_object().cloned().unwrap_or_default();
    attributes.insert("agent_reply_time_window".into(), json!(REPLY_WINDOW_HOURS));
    let update = json!({"channel": {"webhook_url": webhook_url, "additional_attributes": attributes}});
    let updated = client.update_inbox(config.inbox_id, &update).await?;
    writeln!(
        out,
        "Chatwoot: inbox {} ({}) now sends its webhook to {webhook_url}",
        config.inbox_id,
        inbox_name(&updated, &inbox)
    )?;
    writeln!(
        out,
        "Chatwoot: agents can answer for {REPLY_WINDOW_HOURS} hours after a customer's last message (agent_reply_time_window)"
    )?;

    writeln!(out, "\nLeft to do by hand in Chatwoot:")?;
    match (inbox["secret"].as_str().filter(|s| !s.is_empty()), &config.webhook_secret) {
        (Some(secret), Some(ours)) if bool::from(secret.as_bytes().ct_eq(ours.expose().as_bytes())) => {
            writeln!(out, "- nothing for the webhook: CHATWOOT_WEBHOOK_SECRET matches the inbox's secret")?
        }
        (Some(_), Some(_)) => writeln!(
            out,
            "- CHATWOOT_WEBHOOK_SECRET does not match the inbox's secret: copy it again from Settings → Inboxes → {} → Configuration (every agent reply would be refused with 401)",
            inbox_name(&updated, &inbox)
        )?,
        (Some(_), None) => writeln!(
            out,
            "- set CHATWOOT_WEBHOOK_SECRET to the inbox's secret (Settings → Inboxes → {} → Configuration) so forged webhooks are refused",
            inbox_name(&updated, &inbox)
        )?,
        (None, _) => writeln!(
            out,
            "- this Chatwoot signs no API-inbox webhooks (before 4.13): keep /webhooks/chatwoot reachable from Chatwoot only, or upgrade"
        )?,
    }
    if is_private(public) {
        writeln!(
            out,
            "- the bridge's address {public} is private: Chatwoot 4.14 and later refuse to send webhooks there unless its server sets SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true"
        )?;
    }
    writeln!(
        out,
        "- add the agents who answer WeChat customers to the inbox (Settings → Inboxes → Collaborators); the bridge's own user needs no membership"
    )?;
    Ok(())
}

fn token_error(e: ChatwootError) -> SetupError {
    match &e {
        ChatwootError::Api { status: 401, message } if message.contains("bots") => SetupError::BotToken,
        ChatwootError::Api { status: 401, message } => SetupError::BadToken(message.clone()),
        _ => SetupError::Chatwoot(e),
    }
}

fn name_of(profile: &Value) -> String {
    profile["name"].as_str().or(profile["email"].as_str()).unwrap_or("the token's user").to_string()
}

fn inbox_name<'a>(updated: &'a Value, inbox: &'a Value) -> &'a str {
    updated["name"].as_str().or(inbox["name"].as_str()).unwrap_or("the inbox")
}

/// True for a URL on loopback, a private network or `localhost` (§0.5: SafeFetch refuses them).
fn is_private(url: &str) -> bool {
    let host = url.split_once("://").map_or(url, |(_, rest)| rest).split(['/', ':']).next().unwrap_or_default();
    if host == "localhost" || host.ends_with(".local") || host.ends_with(".internal") {
        return true;
    }
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| !crate::wechat::fetch_policy::is_public(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_get_the_safe_fetch_note() {
        assert!(is_private("http://127.0.0.1:8080"));
        assert!(is_private("http://10.1.2.3"));
        assert!(is_private("http://localhost:8080"));
        assert!(is_private("https://bridge.internal"));
        assert!(!is_private("https://bridge.example.com"));
        assert!(!is_private("https://8.8.8.8"));
    }
}
