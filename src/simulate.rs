//! `wechat-bridge simulate wechat|vonage|chatwoot`: one built-in simulator served alone on `--listen`, to
//! try a real deployment of the bridge against it. Runs until Ctrl-C.
//!
//! Settings fall back to the bridge's own environment variables (`WECHAT_TOKEN`, …), so one
//! environment serves both. Secrets are echoed only when they are the simulator's defaults.

use std::future::Future;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use tokio::net::TcpListener;

use crate::chatwoot::sim::{ChatwootSim, ChatwootSimConfig};
use crate::vonage::sim::{VonageSim, VonageSimConfig};
use crate::wechat::sim::{PushMode, WeChatSim, WeChatSimConfig};

/// Where `simulate vonage` writes the private key it generates.
pub const GENERATED_KEY_FILE: &str = "vonage-sim-private.key";

const DEFAULT_APP_SECRET: &str = "sim-app-secret";
const DEFAULT_TOKEN: &str = "sim-token";
const DEFAULT_API_KEY: &str = "sim-api-key";
const DEFAULT_API_SECRET: &str = "sim-api-secret";
const DEFAULT_CHATWOOT_TOKEN: &str = "sim-admin-token";
const DEFAULT_CHATWOOT_SECRET: &str = "sim-inbox-secret";

/// Which simulator to run.
#[derive(Debug, Subcommand)]
pub enum Simulator {
    /// The WeChat server API (token, custom/send, media); with --push-to, pushes stdin lines
    /// to the bridge as a user's text messages.
    Wechat(WeChatArgs),
    /// The Vonage Conversation API (JWT-checked), the Application API used by `setup`, and
    /// RTC webhooks to the bridge.
    Vonage(VonageArgs),
    /// Chatwoot's Application API for an API inbox (contacts, conversations, messages, status
    /// PATCH) and the inbox webhook to the bridge, signed with the inbox secret.
    Chatwoot(ChatwootArgs),
}

/// `simulate wechat` options.
#[derive(Debug, Args)]
pub struct WeChatArgs {
    /// Address to serve the WeChat API on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub listen: String,
    /// The bridge's WeChat webhook (e.g. http://127.0.0.1:8080/webhooks/wechat): each stdin
    /// line is pushed to it as a text message.
    #[arg(long)]
    pub push_to: Option<String>,
    /// The Official Account's AppID.
    #[arg(long, env = "WECHAT_APP_ID", default_value = "wx1234567890abcdef")]
    pub app_id: String,
    /// The Official Account's AppSecret.
    #[arg(long, env = "WECHAT_APP_SECRET", hide_env_values = true, default_value = DEFAULT_APP_SECRET)]
    pub app_secret: String,
    /// The token pushes are signed with (the bridge's WECHAT_TOKEN).
    #[arg(long, env = "WECHAT_TOKEN", hide_env_values = true, default_value = DEFAULT_TOKEN)]
    pub token: String,
    /// The 43-char EncodingAESKey, needed for safe and compatible mode.
    #[arg(long, env = "WECHAT_ENCODING_AES_KEY", hide_env_values = true)]
    pub aes_key: Option<String>,
    /// The Official Account's original id (ToUserName of every push).
    #[arg(long, default_value = "gh_0123456789ab")]
    pub account: String,
    /// The simulated user's OpenID (FromUserName of every push).
    #[arg(long, default_value = "o_sim_user_0001")]
    pub openid: String,
    /// How pushes are sent; default: safe with --aes-key, plain without.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Error injection: the first N API calls answer `--errcode` (later: POST /_sim/faults).
    #[arg(long, default_value_t = 0)]
    pub fail_next: usize,
    /// The errcode of injected failures (-1 system busy, 45015 window closed, 45009 quota …).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub errcode: i64,
}

/// WeChat's message encryption modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Plaintext mode (明文模式).
    Plain,
    /// Safe mode (安全模式): only `<Encrypt>`.
    Safe,
    /// Compatible mode (兼容模式): plaintext and `<Encrypt>`.
    Compatible,
}

impl From<Mode> for PushMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Plain => PushMode::Plain,
            Mode::Safe => PushMode::Safe,
            Mode::Compatible => PushMode::Compatible,
        }
    }
}

/// `simulate vonage` options.
#[derive(Debug, Args)]
pub struct VonageArgs {
    /// Address to serve the Vonage API on.
    #[arg(long, default_value = "127.0.0.1:9002")]
    pub listen: String,
    /// The application's RSA public key (PEM). Without it a key pair is generated and the
    /// private key written to ./vonage-sim-private.key.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// The RTC event_url at start (otherwise set by `wechat-bridge setup`), e.g.
    /// http://127.0.0.1:8080/webhooks/vonage/rtc.
    #[arg(long)]
    pub rtc_url: Option<String>,
    /// Sign RTC webhooks with this secret (the bridge's VONAGE_SIGNATURE_SECRET).
    #[arg(long, env = "VONAGE_SIGNATURE_SECRET", hide_env_values = true)]
    pub signature_secret: Option<String>,
    /// The account API key (Application API Basic auth, for `setup`).
    #[arg(long, env = "VONAGE_API_KEY", default_value = DEFAULT_API_KEY)]
    pub api_key: String,
    /// The account API secret (Application API Basic auth, for `setup`).
    #[arg(long, env = "VONAGE_API_SECRET", hide_env_values = true, default_value = DEFAULT_API_SECRET)]
    pub api_secret: String,
    /// The application id (JWT claim `application_id`).
    #[arg(long, env = "VONAGE_APPLICATION_ID", default_value = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab")]
    pub application_id: String,
    /// Error injection: the first N API calls answer `--fail-status` (later: POST /_sim/faults).
    #[arg(long, default_value_t = 0)]
    pub fail_next: usize,
    /// The HTTP status of injected failures (429 carries Retry-After: 1).
    #[arg(long, default_value_t = 503)]
    pub fail_status: u16,
    /// Latency added to every API call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
}

/// `simulate chatwoot` options.
#[derive(Debug, Args)]
pub struct ChatwootArgs {
    /// Address to serve the Chatwoot API on.
    #[arg(long, default_value = "127.0.0.1:9003")]
    pub listen: String,
    /// The account id (the `/api/v1/accounts/{id}/…` paths).
    #[arg(long, env = "CHATWOOT_ACCOUNT_ID", default_value_t = 1)]
    pub account_id: u64,
    /// The API inbox's id (inbox id + 1 is a web widget).
    #[arg(long, env = "CHATWOOT_INBOX_ID", default_value_t = 3)]
    pub inbox_id: u64,
    /// The administrator's user access token (the bridge's CHATWOOT_API_TOKEN).
    #[arg(long, env = "CHATWOOT_API_TOKEN", hide_env_values = true, default_value = DEFAULT_CHATWOOT_TOKEN)]
    pub token: String,
    /// The API inbox's secret, which signs the webhooks (the bridge's CHATWOOT_WEBHOOK_SECRET).
    #[arg(long, env = "CHATWOOT_WEBHOOK_SECRET", hide_env_values = true, default_value = DEFAULT_CHATWOOT_SECRET)]
    pub secret: String,
    /// The inbox's webhook_url at start (otherwise set by `wechat-bridge setup`), e.g.
    /// http://127.0.0.1:8080/webhooks/chatwoot.
    #[arg(long)]
    pub webhook_url: Option<String>,
}

/// Runs the chosen simulator until `shutdown` resolves.
pub async fn run(simulator: Simulator, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    match simulator {
        Simulator::Wechat(args) => wechat(args, shutdown).await,
        Simulator::Vonage(args) => vonage(args, shutdown).await,
        Simulator::Chatwoot(args) => chatwoot(args, shutdown).await,
    }
}

async fn wechat(args: WeChatArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let mode = args.mode.unwrap_or(if args.aes_key.is_some() { Mode::Safe } else { Mode::Plain });
    if mode != Mode::Plain && args.aes_key.is_none() {
        bail!("--mode {mode:?} needs --aes-key (or WECHAT_ENCODING_AES_KEY)");
    }
    if let Some(key) = &args.aes_key {
        crate::wechat::crypto::MessageCrypto::new(key, &args.app_id).context("invalid --aes-key")?;
    }
    let sim = WeChatSim::new(WeChatSimConfig {
        app_id: args.app_id.clone(),
        app_secret: args.app_secret.clone(),
        token: args.token.clone(),
        encoding_aes_key: args.aes_key.clone(),
        account: args.account.clone(),
    });
    if args.fail_next > 0 {
        sim.fail_next(args.fail_next, args.errcode, "injected by simulate --fail-next");
    }
    let (listener, base) = bind(&args.listen).await?;
    println!("WeChat simulator on {base} (Official Account {}, AppID {})", args.account, args.app_id);
    println!("Point the bridge at it:");
    println!("  WECHAT_API_BASE={base}");
    println!("  WECHAT_APP_ID={}", args.app_id);
    println!("  WECHAT_APP_SECRET={}", shown(&args.app_secret, DEFAULT_APP_SECRET));
    println!("  WECHAT_TOKEN={}", shown(&args.token, DEFAULT_TOKEN));
    match &args.aes_key {
        Some(_) => println!("  WECHAT_ENCODING_AES_KEY=(the key given to the simulator)"),
        None => println!("  (no WECHAT_ENCODING_AES_KEY: plaintext mode)"),
    }
    let router = sim.router();
    let server = tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(shutdown).await });

    if let Some(url) = args.push_to.clone() {
        println!("Type a line to push it to {url} as a text from {} ({mode:?} mode).", args.openid);
        let pusher = sim.clone();
        tokio::spawn(async move { push_stdin(pusher, url, args.openid, mode.into()).await });
    }
    tokio::spawn(print_sent(sim.clone()));
    println!("Serving until Ctrl-C.");
    server.await.context("the simulator task failed")?.context("the simulator server failed")
}

/// Pushes each stdin line to the bridge and prints its answer.
async fn push_stdin(sim: WeChatSim, url: String, openid: String, mode: PushMode) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    // A plain thread: a blocked stdin read must not hold up the runtime's shutdown.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let push = sim.text(&openid, line);
        match sim.push(&url, &push, mode).await {
            Ok(reply) => println!("→ {openid}: {line:?}  bridge answered {} {}", reply.status, reply.body.trim()),
            Err(e) => println!("→ {openid}: {line:?}  push failed: {e}"),
        }
    }
    println!("(stdin closed: no more pushes; still serving the WeChat API)");
}

/// Prints every message the bridge sends to users through custom/send.
async fn print_sent(sim: WeChatSim) {
    let mut seen = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = sim.sent();
        for message in sent.iter().skip(seen) {
            println!("← {}", message);
        }
        seen = sent.len();
    }
}

async fn vonage(args: VonageArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let (public_pem, private_key_path) = match &args.public_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path).with_context(|| format!("cannot read --public-key {}", path.display()))?;
            (pem, None)
        }
        None => {
            let (private_pem, public_pem) = crate::vonage::sim::keys::generate_rsa_keypair();
            let path = write_private_key(Path::new(GENERATED_KEY_FILE), &private_pem)?;
            (public_pem, Some(path))
        }
    };
    let mut config = VonageSimConfig::new(args.application_id.clone(), public_pem);
    config.rtc_event_url = args.rtc_url.clone();
    config.signature_secret = args.signature_secret.clone();
    config.api_key = args.api_key.clone();
    config.api_secret = args.api_secret.clone();
    let sim = VonageSim::try_new(config).context("cannot start the Vonage simulator")?;
    if args.fail_next > 0 {
        sim.fail_next(args.fail_next, args.fail_status, (args.fail_status == 429).then_some(1));
    }
    if args.latency_ms > 0 {
        sim.set_latency(std::time::Duration::from_millis(args.latency_ms));
    }
    let (listener, base) = bind(&args.listen).await?;
    println!("Vonage simulator on {base} (application {})", args.application_id);
    println!("Point the bridge at it:");
    println!("  VONAGE_API_BASE={base}");
    println!("  VONAGE_APPLICATION_ID={}", args.application_id);
    match &private_key_path {
        Some(path) => println!("  VONAGE_PRIVATE_KEY_PATH={}", path.display()),
        None => println!("  VONAGE_PRIVATE_KEY_PATH=(the private key matching --public-key)"),
    }
    if args.signature_secret.is_some() {
        println!("  VONAGE_SIGNATURE_SECRET=(the secret given to the simulator)");
    }
    println!("and, for `wechat-bridge setup`:");
    println!("  VONAGE_API_KEY={}", args.api_key);
    println!("  VONAGE_API_SECRET={}", shown(&args.api_secret, DEFAULT_API_SECRET));
    match &args.rtc_url {
        Some(url) => println!("RTC webhooks go to {url}"),
        None => println!("No RTC event_url yet: run `wechat-bridge setup` (or pass --rtc-url)"),
    }
    println!(
        "Inspect with GET {base}/_sim/state; play an agent with POST {base}/_sim/agents and {base}/_sim/conversations/{{id}}/events"
    );
    println!("Serving until Ctrl-C.");
    axum::serve(listener, sim.router()).with_graceful_shutdown(shutdown).await.context("the simulator server failed")
}

async fn chatwoot(args: ChatwootArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let mut config = ChatwootSimConfig::new();
    config.account_id = args.account_id;
    config.inbox_id = args.inbox_id;
    config.admin_token = args.token.clone();
    config.inbox_secret = Some(args.secret.clone());
    config.webhook_url = args.webhook_url.clone();
    let sim = ChatwootSim::new(config);
    let (listener, base) = bind(&args.listen).await?;
    let cfg = sim.config();
    println!("Chatwoot simulator on {base} (account {}, API inbox {})", args.account_id, args.inbox_id);
    println!("Point the bridge at it:");
    println!("  CHATWOOT_BASE_URL={base}");
    println!("  CHATWOOT_ACCOUNT_ID={}", args.account_id);
    println!("  CHATWOOT_INBOX_ID={}", args.inbox_id);
    println!("  CHATWOOT_API_TOKEN={}", shown(&args.token, DEFAULT_CHATWOOT_TOKEN));
    println!("  CHATWOOT_WEBHOOK_SECRET={}", shown(&args.secret, DEFAULT_CHATWOOT_SECRET));
    println!("Other tokens: agent \"Agent Li\" {}, agent bot {}", cfg.agent_token, cfg.bot_token);
    match &args.webhook_url {
        Some(url) => println!("Webhooks go to {url}"),
        None => println!("No webhook_url yet: run `wechat-bridge setup` (or pass --webhook-url)"),
    }
    println!(
        "Inspect with GET {base}/_sim/state; reply as an agent with POST {base}/_sim/conversations/{{id}}/reply \
         {{\"content\":\"…\"}}; also …/{{id}}/resolve, POST {base}/_sim/messages/{{id}}/retry, POST {base}/_sim/faults"
    );
    println!("Serving until Ctrl-C.");
    axum::serve(listener, sim.router()).with_graceful_shutdown(shutdown).await.context("the simulator server failed")
}

/// Writes the generated private key, readable by the owner only (0600); returns its absolute path.
fn write_private_key(path: &Path, pem: &str) -> anyhow::Result<PathBuf> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    // `mode` only applies to a new file: tighten an existing one too.
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    file.write_all(pem.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// A secret value is echoed only when it is the simulator's public default.
fn shown<'a>(value: &'a str, default: &str) -> &'a str {
    if value == default { value } else { "(the value given to the simulator)" }
}

/// Binds `listen`; returns the listener and a base URL to reach it (127.0.0.1 for 0.0.0.0).
async fn bind(listen: &str) -> anyhow::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let mut addr: SocketAddr = listener.local_addr()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    Ok((listener, format!("http://{addr}")))
}
