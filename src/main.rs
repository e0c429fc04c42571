//! The `wechat-bridge` command line: parses arguments and calls the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use wechat_bridge::app::{Application, WorkerMode};
use wechat_bridge::config::Config;
use wechat_bridge::store::Store;

#[derive(Parser)]
#[command(
    name = "wechat-bridge",
    version,
    about = "Relays messages between WeChat Official Accounts and the Vonage Conversation API"
)]
struct Cli {
    /// A TOML file with the same keys as the environment, in lower case (the environment wins).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// The bridge and both simulators in one process, playing a scripted exchange.
    Demo {
        /// Where the bridge serves.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Exit after the exchange: 0 when every step succeeded.
        #[arg(long)]
        once: bool,
        /// The agent side to play.
        #[arg(long, value_enum, default_value = "vonage")]
        platform: wechat_bridge::demo::DemoPlatform,
    },
    /// Point the Vonage application's RTC webhook at BRIDGE_PUBLIC_URL and print WeChat's console settings.
    Setup,
    /// Run one simulator alone on --listen, to try a real deployment against it.
    Simulate {
        #[command(subcommand)]
        simulator: wechat_bridge::simulate::Simulator,
    },
    /// Load benchmark: this binary's bridge against fast fakes on loopback; prints a table and
    /// writes bench.json and bench.svg (build with --release first).
    Bench(wechat_bridge::bench::BenchArgs),
    /// The bare HTTP server `bench` compares the bridge with.
    #[command(hide = true)]
    BenchBaseline {
        #[arg(long)]
        listen: String,
    },
}

/// Every request allocates its headers, body, XML and JSON on whichever worker thread runs it and
/// frees them on another: glibc's allocator spent ~14% of the bridge's CPU under load on that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    if let Err(e) = run(cli).await {
        // One line naming the problem (DESIGN.md "Configuration").
        eprintln!("wechat-bridge: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => {
            let config = Config::load(cli.config.as_deref())?;
            let app = Application::build(config, WorkerMode::Background).await?;
            app.run_until_stopped(shutdown_signal()).await.context("server failed")
        }
        Command::Demo { listen, once, platform } => {
            wechat_bridge::demo::run_with(&listen, once, platform, shutdown_signal()).await
        }
        Command::Setup => {
            let config = Config::load(cli.config.as_deref())?;
            wechat_bridge::app::setup(&config, &mut std::io::stdout()).await?;
            Ok(())
        }
        Command::Simulate { simulator } => wechat_bridge::simulate::run(simulator, shutdown_signal()).await,
        Command::Bench(args) => wechat_bridge::bench::run(args).await,
        Command::BenchBaseline { listen } => wechat_bridge::bench::baseline::serve(&listen, shutdown_signal()).await,
        Command::Migrate => {
            let url = Config::database_url(cli.config.as_deref())?;
            let store = Store::connect(&url)
                .await
                .with_context(|| format!("cannot open the database {}", wechat_bridge::store::redacted_url(&url)))?;
            store.migrate().await.context("migration failed")?;
            println!("migrations applied to {}", wechat_bridge::store::redacted_url(&url));
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
