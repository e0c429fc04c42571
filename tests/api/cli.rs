//! The `setup` and `simulate` commands: `app::setup` against the Vonage simulator, and the
//! `simulate` binary run as a child process.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use wechat_bridge::app::SetupError;
use wechat_bridge::config::Config;
use wechat_bridge::vonage::setup::SetupError as VonageSetupError;
use wechat_bridge::vonage::sim::{VonageSim, VonageSimConfig};
use wechat_bridge::wechat::crypto::MessageCrypto;

use crate::helpers::{self, AES_KEY, APP_ID, TOKEN, VONAGE_APP_ID};

/// Distinctive, so "the output does not contain it" means something.
const API_SECRET: &str = "vonage-api-secret-7c1f";
const PUBLIC_URL: &str = "https://bridge.example";

fn vonage_sim() -> VonageSim {
    let mut cfg = VonageSimConfig::new(VONAGE_APP_ID, helpers::keypair().1.clone());
    cfg.api_key = "key".into();
    cfg.api_secret = API_SECRET.into();
    VonageSim::new(cfg)
}

/// A bridge configuration pointing at `vonage_base`, changed by `adjust`.
fn config(vonage_base: &str, adjust: impl FnOnce(&mut HashMap<&'static str, String>)) -> Config {
    let mut settings: HashMap<&'static str, String> = [
        ("WECHAT_TOKEN", TOKEN.to_string()),
        ("WECHAT_APP_ID", APP_ID.into()),
        ("WECHAT_APP_SECRET", "wechat-app-secret".into()),
        ("WECHAT_ENCODING_AES_KEY", AES_KEY.into()),
        ("VONAGE_APPLICATION_ID", VONAGE_APP_ID.into()),
        ("VONAGE_PRIVATE_KEY", helpers::keypair().0.clone()),
        ("VONAGE_API_BASE", vonage_base.into()),
        ("VONAGE_API_KEY", "key".into()),
        ("VONAGE_API_SECRET", API_SECRET.into()),
        ("BRIDGE_PUBLIC_URL", PUBLIC_URL.into()),
    ]
    .into_iter()
    .collect();
    adjust(&mut settings);
    Config::from_lookup(|k| settings.get(k).cloned()).expect("valid config")
}

async fn run_setup(config: &Config) -> (Result<(), SetupError>, String) {
    let mut out = Vec::new();
    let result = wechat_bridge::app::setup(config, &mut out).await;
    (result, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn setup_points_rtc_event_url_at_the_bridge_and_keeps_voice_and_name() {
    let sim = vonage_sim();
    let base = helpers::serve(sim.router()).await;
    let before = sim.application();

    let (result, _) = run_setup(&config(&base, |_| {})).await;
    result.expect("setup succeeds");

    let app = sim.application();
    assert_eq!(
        app["capabilities"]["rtc"]["webhooks"]["event_url"],
        serde_json::json!({"address": "https://bridge.example/webhooks/vonage/rtc", "http_method": "POST"})
    );
    assert_eq!(app["capabilities"]["voice"], before["capabilities"]["voice"], "voice capability kept");
    assert!(app["capabilities"]["voice"].is_object());
    assert_eq!(app["name"], before["name"]);
    assert_eq!(app["keys"], before["keys"]);
    assert_eq!(sim.rtc_event_url().as_deref(), Some("https://bridge.example/webhooks/vonage/rtc"));
}

#[tokio::test]
async fn setup_prints_wechat_console_settings_but_not_the_api_secret() {
    let sim = vonage_sim();
    let base = helpers::serve(sim.router()).await;

    let (result, out) = run_setup(&config(&base, |_| {})).await;
    result.expect("setup succeeds");

    assert!(out.contains("https://bridge.example/webhooks/wechat"), "{out}");
    assert!(out.contains(TOKEN), "{out}");
    assert!(out.contains(AES_KEY), "{out}");
    assert!(out.contains("安全模式"), "{out}");
    assert!(!out.contains(API_SECRET), "the API secret leaked: {out}");
    assert!(!out.contains("PRIVATE KEY"), "{out}");
}

#[tokio::test]
async fn setup_turns_on_signed_callbacks_when_a_signature_secret_is_set() {
    let sim = vonage_sim();
    let base = helpers::serve(sim.router()).await;
    assert_eq!(sim.application()["capabilities"]["rtc"]["signed_callbacks"], false);

    let (result, _) = run_setup(&config(&base, |s| {
        s.insert("VONAGE_SIGNATURE_SECRET", "a-signature-secret".into());
    }))
    .await;
    result.expect("setup succeeds");

    assert_eq!(sim.application()["capabilities"]["rtc"]["signed_callbacks"], true);
}

#[tokio::test]
async fn setup_in_plaintext_mode_suggests_a_fresh_aes_key() {
    let sim = vonage_sim();
    let base = helpers::serve(sim.router()).await;

    let (result, out) = run_setup(&config(&base, |s| {
        s.remove("WECHAT_ENCODING_AES_KEY");
    }))
    .await;
    result.expect("setup succeeds");

    assert!(out.contains("明文模式"), "{out}");
    let key = out
        .split("WECHAT_ENCODING_AES_KEY=")
        .nth(1)
        .expect("a suggested key")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect::<String>();
    assert_eq!(key.len(), 43, "{out}");
    MessageCrypto::new(&key, APP_ID).expect("the suggested key is a valid EncodingAESKey");
}

#[tokio::test]
async fn setup_with_a_wrong_api_secret_fails_with_401_and_changes_nothing() {
    let sim = vonage_sim();
    let base = helpers::serve(sim.router()).await;
    let before = sim.application();

    let (result, out) = run_setup(&config(&base, |s| {
        s.insert("VONAGE_API_SECRET", "wrong".into());
    }))
    .await;

    let err = result.expect_err("a wrong secret fails");
    assert!(matches!(err, SetupError::Vonage(VonageSetupError::Unauthorized { .. })), "{err:?}");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");
    assert_eq!(sim.application(), before);
    assert!(out.is_empty(), "nothing printed on failure: {out}");
}

#[tokio::test]
async fn setup_without_public_url_names_it() {
    let sim = vonage_sim();
    let base = helpers::serve(sim.router()).await;

    let (result, _) = run_setup(&config(&base, |s| {
        s.remove("BRIDGE_PUBLIC_URL");
    }))
    .await;

    let err = result.expect_err("setup needs BRIDGE_PUBLIC_URL").to_string();
    assert!(err.contains("BRIDGE_PUBLIC_URL"), "{err}");
    assert_eq!(sim.request_count("GET", "/v2"), 0);
}

#[tokio::test]
async fn setup_rejects_a_plain_http_public_url() {
    let (result, _) = run_setup(&config("http://127.0.0.1:9", |s| {
        s.insert("BRIDGE_PUBLIC_URL", "http://bridge.example".into());
    }))
    .await;
    let err = result.expect_err("http is refused").to_string();
    assert!(err.contains("BRIDGE_PUBLIC_URL") && err.contains("https"), "{err}");
}

#[tokio::test]
async fn setup_without_api_credentials_names_them() {
    let (result, _) = run_setup(&config("http://127.0.0.1:9", |s| {
        s.remove("VONAGE_API_KEY");
        s.remove("VONAGE_API_SECRET");
    }))
    .await;
    let err = result.expect_err("setup needs the API key and secret").to_string();
    assert!(err.contains("VONAGE_API_KEY") && err.contains("VONAGE_API_SECRET"), "{err}");

    let (result, _) = run_setup(&config("http://127.0.0.1:9", |s| {
        s.remove("VONAGE_API_SECRET");
    }))
    .await;
    let err = result.expect_err("setup needs the API secret").to_string();
    assert!(err.contains("VONAGE_API_SECRET"), "{err}");
}

// ---- the `simulate` binary ----------------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the child when dropped, so a failing test leaves no process behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Forwards the child's stdout lines into a channel.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (without blocking the runtime) for a stdout line containing `needle`; returns all lines so far.
async fn wait_line(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l| l.contains(needle)) {
        while let Ok(line) = rx.try_recv() {
            seen.push(line);
        }
        assert!(tokio::time::Instant::now() < deadline, "no line with {needle:?} in:\n{}", seen.join("\n"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `url` until it answers 200.
async fn wait_ok(url: &str, child: &mut Child) {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if client.get(url).send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the simulator exited early with {status}");
        }
        assert!(tokio::time::Instant::now() < deadline, "{url} never answered 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn simulate_vonage_serves_until_killed_and_writes_its_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_wechat-bridge"))
            .args(["simulate", "vonage", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ok(&format!("{base}/_sim/state"), &mut child.0).await;

    let state: serde_json::Value = reqwest::get(format!("{base}/_sim/state")).await.unwrap().json().await.unwrap();
    let app_id = state["application"]["id"].as_str().unwrap().to_string();

    let key_path = dir.path().join("vonage-sim-private.key");
    let pem = std::fs::read_to_string(&key_path).expect("private key written in the working directory");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // The key is the application's: a bridge configured as printed accepts it.
    Config::from_lookup(|k| match k {
        "WECHAT_TOKEN" | "WECHAT_APP_ID" | "WECHAT_APP_SECRET" => Some("x".into()),
        "VONAGE_APPLICATION_ID" => Some(app_id.clone()),
        "VONAGE_PRIVATE_KEY_PATH" => Some(key_path.display().to_string()),
        _ => None,
    })
    .expect("the generated key is usable by the bridge");

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains(&format!("VONAGE_API_BASE={base}")), "{stdout}");
    assert!(stdout.contains(&format!("VONAGE_APPLICATION_ID={app_id}")), "{stdout}");
    assert!(stdout.contains("VONAGE_PRIVATE_KEY_PATH=") && stdout.contains("vonage-sim-private.key"), "{stdout}");
}

#[tokio::test]
async fn simulate_wechat_pushes_stdin_lines_to_the_bridge() {
    let app = helpers::spawn_app().await;
    let port = free_port();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_wechat-bridge"))
            .args(["simulate", "wechat", "--listen", &format!("127.0.0.1:{port}"), "--push-to", &app.webhook()])
            .args(["--app-id", APP_ID, "--token", TOKEN, "--aes-key", AES_KEY, "--openid", "o_cli_user"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = stdout_lines(&mut child.0);
    let mut seen = Vec::new();
    wait_line(&lines, &mut seen, "Serving until Ctrl-C").await;
    assert!(seen.iter().any(|l| l.contains(&format!("WECHAT_API_BASE=http://127.0.0.1:{port}"))), "{seen:?}");

    let mut stdin = child.0.stdin.take().unwrap();
    writeln!(stdin, "hello from the command line").unwrap();
    drop(stdin);
    wait_line(&lines, &mut seen, "bridge answered").await;
    let answer = seen.iter().find(|l| l.contains("bridge answered")).unwrap();
    assert!(answer.contains("answered 200 success"), "{answer}");

    helpers::wait_for("the pushed text in Vonage", Duration::from_secs(10), || async {
        app.wechat_events().iter().any(|(_, e)| e["body"]["content"] == "hello from the command line")
    })
    .await;
    let event = app.wechat_events().into_iter().next().unwrap().1;
    assert_eq!(event["body"]["from"], "o_cli_user");
}

#[tokio::test]
async fn simulate_wechat_injects_errcodes_from_its_flags() {
    let port = free_port();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_wechat-bridge"))
            .args(["simulate", "wechat", "--listen", &format!("127.0.0.1:{port}"), "--fail-next", "1", "--errcode", "45009"])
            .env_clear()
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ok(&format!("{base}/_sim/state"), &mut child.0).await;
    let send = || reqwest::Client::new().post(format!("{base}/cgi-bin/message/custom/send?access_token=x")).body("{}").send();
    let first: serde_json::Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(first["errcode"], 45009, "the injected failure");
    let second: serde_json::Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(second["errcode"], 40001, "then the real check: an unknown token");
}
