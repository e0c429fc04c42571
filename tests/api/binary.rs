//! The real `wechat-bridge serve` binary as a child process, against both simulators running in
//! the test process. The simulators are wrapped so a test can see what crossed the wire: every
//! `Authorization` header the bridge sent to Vonage, every access_token WeChat issued, and the
//! bridge's answer to every RTC webhook (a recording proxy between Vonage and the bridge).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tempfile::TempDir;
use wechat_bridge::vonage::sim::VonageSim;
use wechat_bridge::wechat::sim::WeChatSim;

use crate::helpers;

// Distinctive values: finding one in the bridge's output is never a coincidence.
pub const APP_ID: &str = "wx5ecre7a99b1c2d3e";
pub const APP_SECRET: &str = "S3cret-app-7d41c0e9b2";
/// The WeChat signature token (3–32 letters and digits).
pub const TOKEN: &str = "S3cretTok3n5f8a21";
/// 43 characters of the base64 alphabet.
pub const AES_KEY: &str = "S3cretAesKey4b9e7d21c0ffee5a6b7c8d9e0f1a2b3";
pub const ACCOUNT: &str = "gh_5ecre7acc0un";
pub const VONAGE_APP_ID: &str = "aaaaaaaa-bbbb-cccc-dddd-5ecre7000001";
pub const SIGNATURE_SECRET: &str = "S3cret-sig-1e6b5d0a9c8f7e";
pub const ADMIN_TOKEN: &str = "S3cret-admin-c4f2a9e81b7d";

/// What the RTC proxy saw: one entry per webhook attempt.
#[derive(Debug, Clone)]
pub struct RtcAttempt {
    pub event: Value,
    /// The bridge's HTTP status, or 502 when it could not be reached.
    pub status: u16,
    pub authorization: Option<String>,
}

/// Both simulators, served on random ports, with recording wrappers.
pub struct Sims {
    pub wechat: WeChatSim,
    pub vonage: VonageSim,
    pub wechat_base: String,
    pub vonage_base: String,
    /// `Authorization` headers the bridge sent to the Vonage simulator.
    pub vonage_auth: Arc<Mutex<Vec<String>>>,
    /// access_tokens WeChat issued (from the token endpoints' answers) or saw in a call.
    pub wechat_tokens: Arc<Mutex<Vec<String>>>,
    /// Every RTC webhook attempt, in order.
    pub rtc: Arc<Mutex<Vec<RtcAttempt>>>,
    /// Where the proxy forwards RTC webhooks (the bridge's current address).
    rtc_target: Arc<Mutex<String>>,
}

impl Sims {
    /// Starts both simulators; Vonage's RTC webhooks go to a proxy that forwards them to the
    /// address given later with [`Sims::point_rtc_at`]. `rtc_retry_base` doubles per try,
    /// eight tries in all.
    pub async fn start(rtc_retry_base: Duration) -> Sims {
        let (wechat, vonage) = helpers::simulators(
            &helpers::SimAccount { app_id: APP_ID, app_secret: APP_SECRET, token: TOKEN, aes_key: AES_KEY, account: ACCOUNT },
            &helpers::keypair().1,
            (VONAGE_APP_ID, SIGNATURE_SECRET),
            rtc_retry_base,
        );
        let vonage_auth = Arc::new(Mutex::new(Vec::new()));
        let wechat_tokens = Arc::new(Mutex::new(Vec::new()));
        let rtc = Arc::new(Mutex::new(Vec::new()));
        let rtc_target = Arc::new(Mutex::new(String::new()));
        let vonage_base =
            helpers::serve(vonage.router().layer(middleware::from_fn_with_state(vonage_auth.clone(), record_authorization)))
                .await;
        let wechat_base =
            helpers::serve(wechat.router().layer(middleware::from_fn_with_state(wechat_tokens.clone(), record_tokens))).await;
        let proxy = axum::Router::new().fallback(forward_rtc).with_state(Proxy {
            target: rtc_target.clone(),
            log: rtc.clone(),
            client: reqwest::Client::new(),
        });
        let proxy_base = helpers::serve(proxy).await;
        vonage.set_rtc_event_url(Some(format!("{proxy_base}/webhooks/vonage/rtc")));
        Sims { wechat, vonage, wechat_base, vonage_base, vonage_auth, wechat_tokens, rtc, rtc_target }
    }

    /// Forwards RTC webhooks to the bridge at `address` from now on.
    pub fn point_rtc_at(&self, address: &str) {
        *self.rtc_target.lock().unwrap() = address.to_string();
    }

    /// The RTC webhook attempts so far.
    pub fn rtc_attempts(&self) -> Vec<RtcAttempt> {
        self.rtc.lock().unwrap().clone()
    }

    /// The bridge's environment for these simulators, a database in `dir` and `port`.
    pub fn env(&self, dir: &Path, port: u16) -> HashMap<String, String> {
        [
            ("BRIDGE_LISTEN", format!("127.0.0.1:{port}")),
            ("BRIDGE_DATABASE_URL", format!("sqlite://{}", dir.join("bridge.db").display())),
            ("BRIDGE_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("BRIDGE_MEDIA_FETCH_ALLOWLIST", "127.0.0.1/32".into()),
            ("WECHAT_TOKEN", TOKEN.into()),
            ("WECHAT_APP_ID", APP_ID.into()),
            ("WECHAT_APP_SECRET", APP_SECRET.into()),
            ("WECHAT_ENCODING_AES_KEY", AES_KEY.into()),
            ("WECHAT_API_BASE", self.wechat_base.clone()),
            ("VONAGE_APPLICATION_ID", VONAGE_APP_ID.into()),
            ("VONAGE_PRIVATE_KEY", helpers::keypair().0.clone()),
            ("VONAGE_API_BASE", self.vonage_base.clone()),
            ("VONAGE_SIGNATURE_SECRET", SIGNATURE_SECRET.into()),
            ("BRIDGE_RETRY_BASE_MS", "50".into()),
            ("BRIDGE_RETRY_MAX_SECS", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

async fn record_authorization(State(log): State<Arc<Mutex<Vec<String>>>>, request: Request, next: Next) -> Response {
    if let Some(auth) = request.headers().get("authorization").and_then(|v| v.to_str().ok()) {
        log.lock().unwrap().push(auth.to_string());
    }
    next.run(request).await
}

/// Records the access_token of every call and of every token the simulator handed out.
async fn record_tokens(State(log): State<Arc<Mutex<Vec<String>>>>, request: Request, next: Next) -> Response {
    let query = request.uri().query().unwrap_or("").to_string();
    for pair in query.split('&') {
        if let Some(token) = pair.strip_prefix("access_token=") {
            log.lock().unwrap().push(token.to_string());
        }
    }
    let is_token_call = request.uri().path().ends_with("token");
    let response = next.run(request).await;
    if !is_token_call {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    if let Ok(json) = serde_json::from_slice::<Value>(&bytes)
        && let Some(token) = json["access_token"].as_str()
    {
        log.lock().unwrap().push(token.to_string());
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[derive(Clone)]
struct Proxy {
    target: Arc<Mutex<String>>,
    log: Arc<Mutex<Vec<RtcAttempt>>>,
    client: reqwest::Client,
}

/// Forwards one RTC webhook to the bridge and records the bridge's answer.
async fn forward_rtc(State(proxy): State<Proxy>, headers: HeaderMap, body: Bytes) -> Response {
    let target = proxy.target.lock().unwrap().clone();
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut request = proxy
        .client
        .post(format!("{target}/webhooks/vonage/rtc"))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(10))
        .body(body.clone());
    if let Some(auth) = &authorization {
        request = request.header("authorization", auth);
    }
    let status = match request.send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 502,
    };
    let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
    proxy.log.lock().unwrap().push(RtcAttempt { event, status, authorization });
    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY).into_response()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `wechat-bridge serve` as a child process, its stdout and stderr appended to one file.
/// Killed (SIGKILL) when dropped, so a failing test leaves no process behind.
pub struct Bridge {
    child: Child,
    pub port: u16,
}

impl Bridge {
    /// Starts the binary with exactly `env` (nothing inherited but `PATH`) and `args` before
    /// `serve`, appending its output to `log`.
    pub fn spawn(env: &HashMap<String, String>, args: &[&str], log: &Path) -> Bridge {
        let port = env["BRIDGE_LISTEN"].rsplit(':').next().unwrap().parse().unwrap();
        let out = File::options().create(true).append(true).open(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_wechat-bridge"))
            .args(args)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("the bridge binary starts");
        Bridge { child, port }
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Polls `/readyz` until 200. `Err` when the process exited first (e.g. its port was taken).
    pub async fn wait_ready(&mut self) -> Result<(), String> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("the bridge exited early with {status}"));
            }
            if client.get(format!("{}/readyz", self.address())).send().await.is_ok_and(|r| r.status() == 200) {
                return Ok(());
            }
            assert!(tokio::time::Instant::now() < deadline, "the bridge never became ready");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `kill -9`, and wait until the process is gone.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and wait (at most 15 s) for the process to end.
    pub async fn terminate(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(tokio::time::Instant::now() < deadline, "the bridge did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the bridge on `env`'s port and waits until it is ready; if that port cannot be
/// bound (another process took it meanwhile), on a fresh one, updating `env`.
pub async fn start_ready(env: &mut HashMap<String, String>, args: &[&str], log: &Path) -> Bridge {
    for _ in 0..3 {
        let mut bridge = Bridge::spawn(env, args, log);
        match bridge.wait_ready().await {
            Ok(()) => return bridge,
            Err(e) => {
                println!("{e}; retrying on a fresh port");
                env.insert("BRIDGE_LISTEN".into(), format!("127.0.0.1:{}", free_port()));
            }
        }
    }
    panic!("the bridge did not start; see {}", log.display());
}

/// A temporary directory with the database and the output file.
pub struct Workdir {
    pub dir: TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir { dir: tempfile::tempdir().unwrap() }
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `GET {address}{path}` with the admin token, as JSON.
pub async fn admin_get(address: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{address}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// After a `kill9`: lets the requests the killed process had already written to its sockets reach
/// the simulators, so a count taken next includes them. A delivery the kill cut off is repeated
/// only after its lease (10 s), so such a count still separates the two copies (a CI run under
/// load counted an instant too early and took a legitimate redelivery for an error).
pub async fn let_in_flight_requests_land() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}
