//! Configuration: validated at start, one clear line per problem, for the library and the binary.

use std::collections::HashMap;
use std::process::Command;

use wechat_bridge::config::{Config, ConfigError, PlatformConfig};

use crate::helpers::*;

fn base() -> HashMap<String, String> {
    let (private_pem, _) = keypair().clone();
    [
        ("WECHAT_TOKEN", TOKEN.to_string()),
        ("WECHAT_APP_ID", APP_ID.into()),
        ("WECHAT_APP_SECRET", APP_SECRET.into()),
        ("VONAGE_APPLICATION_ID", VONAGE_APP_ID.into()),
        ("VONAGE_PRIVATE_KEY", private_pem),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn load(settings: &HashMap<String, String>) -> Result<Config, ConfigError> {
    Config::from_lookup(|k| settings.get(k).cloned())
}

#[test]
fn defaults_apply_when_only_required_settings_are_given() {
    let config = load(&base()).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.database_url, "sqlite://wechat-bridge.db");
    assert_eq!(config.wechat.api_base, "https://api.weixin.qq.com");
    let PlatformConfig::Vonage(vonage) = &config.platform else { panic!("vonage is the default platform") };
    assert_eq!(vonage.api_base, "https://api.nexmo.com");
    assert_eq!(config.wechat.max_timestamp_skew_secs, 300);
    assert!(config.wechat.encoding_aes_key.is_none());
    // Secrets never print.
    let debug = format!("{config:?}");
    assert!(!debug.contains(APP_SECRET) && !debug.contains("PRIVATE KEY"), "{debug}");
}

#[test]
fn each_missing_required_setting_is_named() {
    for key in ["WECHAT_TOKEN", "WECHAT_APP_ID", "WECHAT_APP_SECRET", "VONAGE_APPLICATION_ID"] {
        let mut settings = base();
        settings.remove(key);
        let error = load(&settings).unwrap_err().to_string();
        assert!(error.contains(key), "{key}: {error}");
    }
    let mut settings = base();
    settings.remove("VONAGE_PRIVATE_KEY");
    assert!(load(&settings).unwrap_err().to_string().contains("VONAGE_PRIVATE_KEY"));
}

#[test]
fn malformed_settings_are_rejected() {
    let cases = [
        ("WECHAT_ENCODING_AES_KEY", "too-short"),
        ("VONAGE_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"),
        ("VONAGE_PRIVATE_KEY_PATH", "/nonexistent/private.key"),
        ("BRIDGE_LISTEN", "not-an-address"),
        ("WECHAT_MAX_TIMESTAMP_SKEW_SECS", "five minutes"),
        ("WECHAT_API_BASE", "ftp://example.com"),
    ];
    for (key, value) in cases {
        let mut settings = base();
        if key == "VONAGE_PRIVATE_KEY_PATH" {
            settings.remove("VONAGE_PRIVATE_KEY");
        }
        settings.insert(key.into(), value.into());
        let error = load(&settings).unwrap_err().to_string();
        assert!(error.contains(key), "{key}: {error}");
    }
}

#[test]
fn a_toml_file_adds_settings_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("private.key");
    std::fs::write(&key_path, &keypair().0).unwrap();
    let file = dir.path().join("bridge.toml");
    std::fs::write(
        &file,
        format!(
            "wechat_token = \"from-file\"\nwechat_app_id = \"{APP_ID}\"\nwechat_app_secret = \"s\"\n\
             vonage_application_id = \"{VONAGE_APP_ID}\"\nvonage_private_key_path = \"{}\"\nwechat_max_timestamp_skew_secs = 60\n",
            key_path.display()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wechat-bridge"))
        .args(["--config", file.to_str().unwrap(), "serve"])
        .env_clear()
        .env("BRIDGE_LISTEN", "bad address")
        .output()
        .unwrap();
    // The file alone would be valid; the environment's bad BRIDGE_LISTEN wins and stops it.
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BRIDGE_LISTEN"), "{stderr}");
}

#[test]
fn serve_exits_non_zero_with_one_line_naming_the_missing_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_wechat-bridge")).arg("serve").env_clear().output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("WECHAT_"), "{stderr}");
}

#[test]
fn bridge_platform_picks_the_platform_and_reserved_names_are_refused_in_one_line() {
    let mut settings = base();
    settings.insert("BRIDGE_PLATFORM".into(), "Vonage".into());
    assert!(matches!(load(&settings).unwrap().platform, PlatformConfig::Vonage(_)));
    let mut chatwoot = base();
    chatwoot.insert("BRIDGE_PLATFORM".into(), "chatwoot".into());
    assert_eq!(load(&chatwoot).unwrap_err().to_string(), "missing required setting CHATWOOT_BASE_URL");
    settings.insert("BRIDGE_PLATFORM".into(), "matrix".into());
    assert!(load(&settings).unwrap_err().to_string().contains("BRIDGE_PLATFORM"));

    let output = Command::new(env!("CARGO_BIN_EXE_wechat-bridge"))
        .arg("serve")
        .env_clear()
        .envs(base().into_iter().filter(|(k, _)| k.starts_with("WECHAT_")))
        .env("BRIDGE_PLATFORM", "chatwoot")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].ends_with("missing required setting CHATWOOT_BASE_URL"), "{stderr}");
}

/// `chatwoot` needs its base URL, account, inbox and token (and no Vonage ones); ids must be
/// positive numbers; the Chatwoot host is trusted for attachment downloads.
#[test]
fn the_chatwoot_platform_requires_its_settings() {
    let mut settings: HashMap<String, String> = base().into_iter().filter(|(k, _)| k.starts_with("WECHAT_")).collect();
    settings.insert("BRIDGE_PLATFORM".into(), "chatwoot".into());
    settings.insert("CHATWOOT_BASE_URL".into(), "http://chatwoot.internal:3000/".into());
    assert_eq!(load(&settings).unwrap_err().to_string(), "missing required setting CHATWOOT_ACCOUNT_ID");
    settings.insert("CHATWOOT_ACCOUNT_ID".into(), "0".into());
    assert!(load(&settings).unwrap_err().to_string().starts_with("invalid CHATWOOT_ACCOUNT_ID"));
    settings.insert("CHATWOOT_ACCOUNT_ID".into(), "1".into());
    settings.insert("CHATWOOT_INBOX_ID".into(), "three".into());
    assert!(load(&settings).unwrap_err().to_string().starts_with("invalid CHATWOOT_INBOX_ID"));
    settings.insert("CHATWOOT_INBOX_ID".into(), "3".into());
    assert_eq!(load(&settings).unwrap_err().to_string(), "missing required setting CHATWOOT_API_TOKEN");
    settings.insert("CHATWOOT_API_TOKEN".into(), "tok".into());
    let config = load(&settings).unwrap();
    let PlatformConfig::Chatwoot(chatwoot) = &config.platform else { panic!("chatwoot") };
    assert_eq!(chatwoot.base_url, "http://chatwoot.internal:3000");
    assert_eq!((chatwoot.account_id, chatwoot.inbox_id), (1, 3));
    assert!(chatwoot.webhook_secret.is_none());
    assert!(config.media_fetch_allowlist.allows_host("chatwoot.internal"));
    assert!(!format!("{config:?}").contains("tok\""), "the token is not printed");
}

/// `webhook` needs its three settings (and no Vonage ones); a malformed secret is one line
/// naming PLATFORM_WEBHOOK_SECRET, never showing it.
#[test]
fn the_webhook_platform_requires_its_settings_and_a_well_formed_secret() {
    let mut settings: HashMap<String, String> = base().into_iter().filter(|(k, _)| k.starts_with("WECHAT_")).collect();
    settings.insert("BRIDGE_PLATFORM".into(), "webhook".into());
    assert_eq!(load(&settings).unwrap_err().to_string(), "missing required setting PLATFORM_WEBHOOK_URL");
    settings.insert("PLATFORM_WEBHOOK_URL".into(), "https://app.example/hooks".into());
    assert_eq!(load(&settings).unwrap_err().to_string(), "missing required setting PLATFORM_WEBHOOK_SECRET");
    settings.insert("PLATFORM_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
    assert_eq!(load(&settings).unwrap_err().to_string(), "missing required setting PLATFORM_API_TOKEN");
    settings.insert("PLATFORM_API_TOKEN".into(), API_TOKEN.into());
    let config = load(&settings).unwrap();
    let PlatformConfig::Webhook(webhook) = &config.platform else { panic!("webhook platform") };
    assert_eq!(webhook.url, "https://app.example/hooks");
    let debug = format!("{config:?}");
    assert!(!debug.contains(API_TOKEN) && !debug.contains(WEBHOOK_SECRET), "{debug}");

    for bad in ["not-whsec", "whsec_", "whsec_dG9vIHNob3J0", "whsec_!!!!"] {
        settings.insert("PLATFORM_WEBHOOK_SECRET".into(), bad.into());
        let error = load(&settings).unwrap_err().to_string();
        assert!(error.starts_with("invalid PLATFORM_WEBHOOK_SECRET: "), "{error}");
        assert!(bad.len() < 8 || !error.contains(bad), "{error}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_wechat-bridge")).arg("serve").env_clear().envs(&settings).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("PLATFORM_WEBHOOK_SECRET"), "{stderr}");
}
