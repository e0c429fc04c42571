//! `wechat-bridge bench`: a load benchmark anyone can run on one machine.
//!
//! It starts the bridge (this binary's `serve`, or `--bridge-bin`) as a child process on
//! loopback, with fast fakes of WeChat and of the platform in its own process, and measures:
//!
//! 1. end to end, inbound (customer → platform): as fast as the bridge accepts pushes
//!    (concurrency 64) for the phase, until the outbox is empty; then a steady `--rate` with
//!    the latency from push to arrival and the outbox backlog each second;
//! 2. end to end, outbound (agent → customer), the same;
//! 3. accept: signed AES pushes at a steady `--accept-rate`, then closed loops at each
//!    `--concurrency` (pushes/s and acknowledgement latency), the outbox drained after each;
//! 4. memory with `--fill` messages stored, peak memory, the database's size per 100,000
//!    messages, bridge CPU time per relayed message;
//! 5. the baseline: a bare server on the same binary, runtime and accept loop (`bench-baseline`)
//!    answering the same requests at the same concurrencies, and the ratio bridge/baseline.
//!
//! It prints a table and writes `bench.json` (every figure, the machine) and `bench.svg` (a chart
//! of throughput and latency against concurrency) into `--out`.
//!
//! With `--instances N` (PostgreSQL only: SQLite is one instance per file) it starts N bridge
//! processes on one fresh database, each on its own port, and spreads every phase's load over
//! their addresses (see [`load`]). Their CPU times add up into the CPU per relayed message; memory
//! is each instance's own (the highest of them in the table).

pub mod baseline;
pub mod database;
pub mod fakes;
pub mod load;
pub mod process;
pub mod report;
pub mod requests;
pub mod track;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use database::{Database, Kind};
use load::{Latency, LoadResult, Target};
use process::Server;
use report::Report;
use requests::{Builder, Direction, Pool};
use track::{Counters, Tracker};

/// The platform the bridge runs with during the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPlatform {
    /// Signed webhooks out, `/api/v1/messages` in.
    Webhook,
    /// The Vonage Conversation API out, signed RTC events in.
    Vonage,
}

impl BenchPlatform {
    fn name(self) -> &'static str {
        match self {
            BenchPlatform::Webhook => "webhook",
            BenchPlatform::Vonage => "vonage",
        }
    }
}

/// `wechat-bridge bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Seconds each measured phase lasts [default: 10; 1 with --quick].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Short phases and light load, to check that the benchmark works (its figures mean little).
    #[arg(long)]
    pub quick: bool,
    /// Where bench.json, bench.svg and the servers' logs go.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// The bridge's database: sqlite://PATH (start from an empty file) or postgres://… (a server:
    /// a fresh database is created on it for the run, and dropped at the end) [default: a fresh
    /// SQLite file in a temporary directory].
    #[arg(long)]
    pub database_url: Option<String>,
    /// Bridge processes on the one database, each on its own port, the load spread over them
    /// (more than one needs a postgres:// --database-url).
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// The platform the bridge relays to.
    #[arg(long, value_enum, default_value = "webhook")]
    pub platform: BenchPlatform,
    /// Distinct WeChat users the messages come from and go to [default: 200; 20 with --quick].
    #[arg(long)]
    pub users: Option<usize>,
    /// Messages per second of the steady end-to-end phases [default: 1000; 200 with --quick].
    #[arg(long)]
    pub rate: Option<u64>,
    /// Pushes per second of the steady accept phase [default: 2000; 200 with --quick].
    #[arg(long)]
    pub accept_rate: Option<u64>,
    /// Concurrency levels of the accept sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub concurrency: Vec<usize>,
    /// Concurrency of the sustained end-to-end phases.
    #[arg(long, default_value_t = 64)]
    pub sustained_concurrency: usize,
    /// Push until at least this many messages are stored, to read the memory then; 0: no filling
    /// [default: 100000; 0 with --quick].
    #[arg(long)]
    pub fill: Option<u64>,
    /// Longest wait for the outbox to empty after a phase, seconds [default: 120; 20 with --quick].
    #[arg(long)]
    pub drain_timeout: Option<f64>,
    /// The bridge binary to measure [default: this one]. The baseline is always this binary's.
    #[arg(long)]
    pub bridge_bin: Option<PathBuf>,
    /// An extra setting for the bridge, KEY=VALUE (repeatable), e.g. BRIDGE_MAX_CONNECTIONS=1024.
    #[arg(long = "bridge-env", value_name = "KEY=VALUE")]
    pub bridge_env: Vec<String>,
}

/// The options with their defaults filled in.
#[derive(Debug, Clone)]
struct Plan {
    duration: Duration,
    quick: bool,
    out: PathBuf,
    platform: BenchPlatform,
    users: usize,
    rate: u64,
    accept_rate: u64,
    concurrency: Vec<usize>,
    sustained_concurrency: usize,
    fill: u64,
    drain_timeout: Duration,
    instances: usize,
}

impl Plan {
    fn new(args: &BenchArgs) -> anyhow::Result<Self> {
        let quick = args.quick;
        let pick = |value: Option<f64>, normal: f64, fast: f64| value.unwrap_or(if quick { fast } else { normal });
        let duration = pick(args.duration, 10.0, 1.0);
        anyhow::ensure!(duration > 0.0 && duration <= 3600.0, "--duration must be between 0 and 3600 seconds");
        let users = args.users.unwrap_or(if quick { 20 } else { 200 });
        anyhow::ensure!((1..=1_000_000).contains(&users), "--users must be between 1 and 1,000,000");
        let concurrency: Vec<usize> = args.concurrency.iter().copied().filter(|c| *c > 0).collect();
        anyhow::ensure!(!concurrency.is_empty(), "--concurrency needs at least one level above 0");
        anyhow::ensure!(concurrency.iter().all(|c| *c <= 4096), "--concurrency levels must be at most 4096");
        let rate = args.rate.unwrap_or(if quick { 200 } else { 1000 });
        let accept_rate = args.accept_rate.unwrap_or(if quick { 200 } else { 2000 });
        anyhow::ensure!(rate > 0 && accept_rate > 0, "--rate and --accept-rate must be above 0");
        anyhow::ensure!((1..=16).contains(&args.instances), "--instances must be between 1 and 16");
        anyhow::ensure!(
            args.instances == 1 || Kind::of(args.database_url.as_deref())? == Kind::Postgres,
            "--instances {} needs a postgres:// --database-url: SQLite is one instance per file",
            args.instances
        );
        Ok(Self {
            duration: Duration::from_secs_f64(duration),
            quick,
            out: args.out.clone(),
            platform: args.platform,
            users,
            rate,
            accept_rate,
            concurrency,
            sustained_concurrency: args.sustained_concurrency.max(1),
            fill: args.fill.unwrap_or(if quick { 0 } else { 100_000 }),
            drain_timeout: Duration::from_secs_f64(pick(args.drain_timeout, 120.0, 20.0).max(0.0)),
            instances: args.instances,
        })
    }
}

/// When the run started, for the progress lines.
static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn progress(text: impl AsRef<str>) {
    let elapsed = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("bench [{elapsed:6.1}s]: {}", text.as_ref());
}

fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
    Counters::get(counter)
}

/// Messages acknowledged but not (yet) relayed, both directions, and delivery reports owed.
fn backlog(c: &Counters) -> u64 {
    let inbound = get(&c.inbound_acked).saturating_sub(get(&c.inbound_arrived));
    let outbound = get(&c.outbound_acked).saturating_sub(get(&c.outbound_arrived));
    let reports = get(&c.outbound_arrived).saturating_sub(get(&c.statuses));
    inbound + outbound + reports
}

/// Waits until everything acknowledged was relayed (and reported), at most `timeout`.
async fn wait_drained(tracker: &Tracker, timeout: Duration) -> (f64, bool) {
    let start = Instant::now();
    loop {
        if backlog(&tracker.counters) == 0 {
            return (start.elapsed().as_secs_f64(), true);
        }
        if start.elapsed() >= timeout {
            return (start.elapsed().as_secs_f64(), false);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sequence numbers, handed out in blocks.
struct Seqs(u64);

impl Seqs {
    fn take(&mut self, n: u64) -> std::ops::Range<u64> {
        let range = self.0..self.0 + n;
        self.0 += n;
        range
    }
}

/// The bridge's resident memory, sampled: the reading when `target` messages were stored (the
/// largest instance's).
#[derive(Default)]
struct MemorySample {
    at_target: Option<(u64, u64)>,
}

/// Everything a run shares.
struct Run {
    plan: Plan,
    tracker: Arc<Tracker>,
    builder: Arc<Builder>,
    target: Target,
    seqs: Seqs,
    /// The highest accept rate seen so far: sizes the next pools.
    rate_estimate: f64,
    warnings: Vec<String>,
    bridge_pids: Vec<u32>,
}

impl Run {
    /// How many requests a closed-loop phase of `duration` may need.
    fn pool_size(&self, duration: Duration) -> u64 {
        ((self.rate_estimate * 2.0 * duration.as_secs_f64()) as u64 + 1_000).min(3_000_000)
    }

    fn pushes(&mut self, n: u64) -> Arc<Pool> {
        let range = self.seqs.take(n);
        let builder = self.builder.clone();
        Arc::new(tokio::task::block_in_place(|| builder.pushes(range)))
    }

    fn outbound(&mut self, n: u64) -> Arc<Pool> {
        // Each user's window allows 1,000 replies (WECHAT_WINDOW_QUOTA); the windows are reopened
        // before each outbound phase.
        let n = n.min(self.plan.users as u64 * 900);
        let range = self.seqs.take(n);
        let builder = self.builder.clone();
        Arc::new(tokio::task::block_in_place(|| match self.plan.platform {
            BenchPlatform::Webhook => builder.api_messages(range),
            BenchPlatform::Vonage => builder.rtc_events(range),
        }))
    }

    fn note(&mut self, phase: &str, load: &LoadResult) {
        if load.errors > 0 {
            let text = format!("{phase}: {} requests failed ({})", load.errors, load.error_samples.join("; "));
            progress(&text);
            self.warnings.push(text);
        }
        if load.exhausted {
            self.warnings.push(format!("{phase}: the prepared requests ran out after {:.1} s", load.elapsed_s));
        }
    }

    async fn drain(&mut self, phase: &str) -> (f64, bool) {
        let (secs, drained) = wait_drained(&self.tracker, self.plan.drain_timeout).await;
        if !drained {
            let text =
                format!("{phase}: the outbox was not empty after {:.0} s ({} left)", secs, backlog(&self.tracker.counters));
            progress(&text);
            self.warnings.push(text);
        }
        (secs, drained)
    }

    /// One push from every user, delivered: contacts exist (and, on Vonage, their
    /// conversations) and every reply window is open with a fresh quota.
    async fn open_windows(&mut self) -> anyhow::Result<()> {
        let range = self.seqs.take(self.plan.users as u64);
        let pool = Arc::new(self.builder.one_push_per_user(range.start));
        let load = load::closed_loop(&self.target, pool, 16.min(self.plan.users), Duration::from_secs(3600)).await?;
        if load.ok == 0 {
            anyhow::bail!("the bridge accepted none of the first pushes ({})", load.error_samples.join("; "));
        }
        if load.errors > 0 {
            self.note("opening reply windows", &load);
        }
        self.drain("opening reply windows").await;
        Ok(())
    }

    /// Closed loop at `concurrency` for the phase, then until the outbox is empty.
    async fn sustained(&mut self, direction: Direction) -> anyhow::Result<(report::Sustained, Duration)> {
        let name = match direction {
            Direction::Inbound => "inbound sustained",
            Direction::Outbound => "outbound sustained",
        };
        let n = self.pool_size(self.plan.duration);
        progress(format!("{name}: preparing {n} requests"));
        let pool = match direction {
            Direction::Inbound => self.pushes(n),
            Direction::Outbound => self.outbound(n),
        };
        let arrived = |t: &Tracker| match direction {
            Direction::Inbound => get(&t.counters.inbound_arrived),
            Direction::Outbound => get(&t.counters.outbound_arrived),
        };
        progress(format!("{name}: concurrency {} for {:?}", self.plan.sustained_concurrency, self.plan.duration));
        let stored_at_start = stored(&self.tracker.counters);
        let cpu0 = self.cpu();
        let a0 = arrived(&self.tracker);
        let load = load::closed_loop(&self.target, pool, self.plan.sustained_concurrency, self.plan.duration).await?;
        let a1 = arrived(&self.tracker);
        self.note(name, &load);
        if direction == Direction::Inbound {
            self.rate_estimate = load.per_s;
        }
        let (drain_s, drained) = self.drain(name).await;
        let a2 = arrived(&self.tracker);
        let cpu = self.cpu().saturating_sub(cpu0);
        let relayed = a2 - a0;
        let sustained = report::Sustained {
            stored_at_start,
            concurrency: self.plan.sustained_concurrency,
            relayed,
            per_s: relayed as f64 / (load.elapsed_s + drain_s),
            relayed_under_load_per_s: (a1 - a0) as f64 / load.elapsed_s,
            drain_per_s: if drain_s > 0.0 { (a2 - a1) as f64 / drain_s } else { 0.0 },
            drain_s,
            drained,
            load,
        };
        progress(format!(
            "{name}: {:.0} accepted/s, {:.0} relayed/s end to end, drained in {:.1} s",
            sustained.load.per_s, sustained.per_s, drain_s
        ));
        Ok((sustained, cpu))
    }

    /// Open loop at `rate` for the phase; end-to-end latency unless `accept_only`.
    async fn steady(&mut self, direction: Direction, rate: u64, accept_only: bool) -> anyhow::Result<(report::Steady, Duration)> {
        let name = match (direction, accept_only) {
            (_, true) => "accept steady",
            (Direction::Inbound, false) => "inbound steady",
            (Direction::Outbound, false) => "outbound steady",
        };
        let n = (rate as f64 * self.plan.duration.as_secs_f64() * 1.02) as u64 + 10;
        progress(format!("{name}: {rate}/s for {:?}", self.plan.duration));
        let pool = match direction {
            Direction::Inbound => self.pushes(n),
            Direction::Outbound => self.outbound(n),
        };
        let stored_at_start = stored(&self.tracker.counters);
        let cpu0 = self.cpu();
        // The backlog each second of the load.
        let samples = Arc::new(Mutex::new(Vec::new()));
        let seconds = self.plan.duration.as_secs_f64().round().max(1.0) as usize;
        let sampler = {
            let (tracker, samples) = (self.tracker.clone(), samples.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                for _ in 0..seconds {
                    tick.tick().await;
                    samples.lock().expect("samples").push(backlog(&tracker.counters));
                }
            })
        };
        let load = load::open_loop(&self.target, pool.clone(), rate as f64, self.plan.duration, 256).await?;
        sampler.abort();
        let backlog_at_end = backlog(&self.tracker.counters);
        self.note(name, &load);
        let (drain_s, drained) = self.drain(name).await;
        let cpu = self.cpu().saturating_sub(cpu0);
        let e2e = if accept_only {
            Latency::default()
        } else {
            let mut histogram = load::histogram();
            for seq in pool.taken_seqs() {
                if let Some(latency) = self.tracker.latency(seq) {
                    load::record(&mut histogram, latency);
                }
            }
            Latency::of(&histogram)
        };
        if accept_only {
            progress(format!("{name}: ack p50 {:.1} ms p99 {:.1} ms", load.ack.p50_ms, load.ack.p99_ms));
        } else {
            progress(format!(
                "{name}: ack p99 {:.1} ms, e2e p50 {:.1} ms p99 {:.1} ms, backlog at end {backlog_at_end}",
                load.ack.p99_ms, e2e.p50_ms, e2e.p99_ms
            ));
        }
        let backlog_each_s = samples.lock().expect("samples").clone();
        Ok((report::Steady { stored_at_start, rate, load, e2e, backlog_each_s, backlog_at_end, drain_s, drained }, cpu))
    }

    /// The bridge's CPU time so far, all instances together.
    fn cpu(&self) -> Duration {
        self.bridge_pids.iter().filter_map(|pid| process::cpu_time(&format!("/proc/{pid}/stat"))).sum()
    }
}

/// The bridge's settings for the run: the fakes' addresses, the benchmark's account, and the
/// extra `--bridge-env` settings last (they win).
fn bridge_env(
    plan: &Plan,
    db: &Database,
    listen: std::net::SocketAddr,
    wechat: std::net::SocketAddr,
    platform: std::net::SocketAddr,
    extra: &[String],
) -> anyhow::Result<Vec<(String, String)>> {
    use requests::*;
    let mut env: Vec<(&str, String)> = vec![
        ("BRIDGE_LISTEN", listen.to_string()),
        ("BRIDGE_DATABASE_URL", db.url.clone()),
        ("RUST_LOG", "warn".into()),
        ("WECHAT_TOKEN", TOKEN.into()),
        ("WECHAT_APP_ID", APP_ID.into()),
        ("WECHAT_APP_SECRET", APP_SECRET.into()),
        ("WECHAT_ENCODING_AES_KEY", AES_KEY.into()),
        ("WECHAT_API_BASE", format!("http://{wechat}")),
        // WeChat's 5 replies per window would refuse most of the outbound load.
        ("WECHAT_WINDOW_QUOTA", "1000".into()),
    ];
    // Pushes are signed when a phase's requests are prepared: they must still be fresh at its end.
    if plan.duration > Duration::from_secs(200) {
        env.push(("WECHAT_MAX_TIMESTAMP_SKEW_SECS", (plan.duration.as_secs() * 2 + 60).to_string()));
    }
    match plan.platform {
        BenchPlatform::Webhook => env.extend([
            ("BRIDGE_PLATFORM", "webhook".to_string()),
            ("PLATFORM_WEBHOOK_URL", format!("http://{platform}/events")),
            ("PLATFORM_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
            ("PLATFORM_API_TOKEN", API_TOKEN.into()),
        ]),
        BenchPlatform::Vonage => {
            let (private_key, _) = crate::vonage::sim::keys::generate_rsa_keypair();
            env.extend([
                ("BRIDGE_PLATFORM", "vonage".to_string()),
                ("VONAGE_APPLICATION_ID", VONAGE_APP_ID.into()),
                ("VONAGE_PRIVATE_KEY", private_key),
                ("VONAGE_API_BASE", format!("http://{platform}")),
                ("VONAGE_SIGNATURE_SECRET", SIGNATURE_SECRET.into()),
            ])
        }
    }
    let mut env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for setting in extra {
        let (key, value) = setting.split_once('=').with_context(|| format!("--bridge-env {setting:?} is not KEY=VALUE"))?;
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
    }
    Ok(env)
}

/// Microseconds of `cpu` per message, 0 when there were none.
fn per_message(cpu: Duration, messages: u64) -> f64 {
    if messages == 0 { 0.0 } else { cpu.as_secs_f64() * 1e6 / messages as f64 }
}

/// The database's size now; a failure to read it is a warning, not the end of the run.
async fn db_size(db: &Database, when: &str, warnings: &mut Vec<String>) -> Option<u64> {
    db.size().await.unwrap_or_else(|e| {
        warnings.push(format!("cannot read the database's size {when}: {e:#}"));
        None
    })
}

fn stored(c: &Counters) -> u64 {
    get(&c.inbound_acked) + get(&c.outbound_acked)
}

/// `wechat-bridge bench`: runs every phase, prints the table, writes `bench.json` and `bench.svg`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let started = *STARTED.get_or_init(Instant::now);
    let generator_cpu0 = process::cpu_time("/proc/self/stat").unwrap_or_default();
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let plan = Plan::new(&args)?;
    let mut warnings = Vec::new();
    if cfg!(debug_assertions) {
        let text = "this is a debug build: its figures say little; build with `cargo build --release`";
        progress(text);
        warnings.push(text.to_string());
    }
    if plan.quick {
        warnings.push("--quick: short phases and light load, to check the benchmark runs".into());
    }
    std::fs::create_dir_all(&plan.out).with_context(|| format!("cannot create {}", plan.out.display()))?;
    let db = Database::prepare(args.database_url.as_deref()).await?;
    let db_bytes_at_start = db_size(&db, "at the start", &mut warnings).await;
    let tracker = Arc::new(Tracker::new());
    let wechat = fakes::serve(fakes::wechat(tracker.clone())).await?;
    let platform = fakes::serve(match plan.platform {
        BenchPlatform::Webhook => fakes::webhook_receiver(tracker.clone()),
        BenchPlatform::Vonage => fakes::vonage(tracker.clone()),
    })
    .await?;
    let this_exe = std::env::current_exe().context("cannot find this program's path")?;
    let bridge_exe = args.bridge_bin.clone().unwrap_or_else(|| this_exe.clone());
    // One after the other: the first applies the migrations to the fresh database.
    let mut bridges = Vec::new();
    for i in 1..=plan.instances {
        let listen = process::free_addr()?;
        let env = bridge_env(&plan, &db, listen, wechat, platform, &args.bridge_env)?;
        let log = plan.out.join(if plan.instances == 1 { "bridge.log".to_string() } else { format!("bridge-{i}.log") });
        let _ = std::fs::remove_file(&log);
        progress(format!(
            "starting the bridge {} ({i} of {}) on {listen} ({}, {} platform)",
            bridge_exe.display(),
            plan.instances,
            db.description,
            plan.platform.name()
        ));
        let mut bridge = Server::spawn("bridge", &bridge_exe, &["serve".into()], &env, listen, &log)?;
        bridge.wait_ready("/readyz", Duration::from_secs(60)).await?;
        bridges.push(bridge);
    }
    let bridge_pids: Vec<u32> = bridges.iter().map(Server::pid).collect();

    // The bridge's memory once `fill` messages are stored.
    let memory = Arc::new(Mutex::new(MemorySample::default()));
    let sampler = {
        let (memory, tracker, pids, fill) = (memory.clone(), tracker.clone(), bridge_pids.clone(), plan.fill);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let stored = stored(&tracker.counters);
                if fill > 0 && stored >= fill {
                    let rss = pids.iter().filter_map(|pid| process::rss(*pid)).max();
                    memory.lock().expect("memory").at_target = rss.map(|bytes| (stored, bytes));
                    break;
                }
            }
        })
    };

    let mut run = Run {
        plan: plan.clone(),
        tracker: tracker.clone(),
        builder: Arc::new(Builder::new(plan.users)),
        target: Target { addrs: bridges.iter().map(|b| b.addr).collect(), tracker: Some(tracker.clone()) },
        seqs: Seqs(1),
        rate_estimate: if cfg!(debug_assertions) { 3_000.0 } else { 20_000.0 },
        warnings,
        bridge_pids,
    };
    let counters = &tracker.counters;

    progress(format!("opening the reply windows of {} users", plan.users));
    run.open_windows().await?;

    // End to end, inbound.
    let (in_sustained, cpu_a) = run.sustained(Direction::Inbound).await?;
    let before = get(&counters.inbound_arrived);
    let (in_steady, cpu_b) = run.steady(Direction::Inbound, plan.rate, false).await?;
    let in_relayed = in_sustained.relayed + (get(&counters.inbound_arrived) - before);
    let in_cpu = cpu_a + cpu_b;

    // End to end, outbound: every window reopened (with a fresh quota) before each phase.
    run.open_windows().await?;
    let (out_sustained, cpu_c) = run.sustained(Direction::Outbound).await?;
    run.open_windows().await?;
    let before = get(&counters.outbound_arrived);
    let (out_steady, cpu_d) = run.steady(Direction::Outbound, plan.rate, false).await?;
    let out_relayed = out_sustained.relayed + (get(&counters.outbound_arrived) - before);
    let out_cpu = cpu_c + cpu_d;

    // Accept: a steady rate, then the sweep, the outbox drained after each level.
    let (accept_steady, _) = run.steady(Direction::Inbound, plan.accept_rate, true).await?;
    let mut sweep = Vec::new();
    for &concurrency in &plan.concurrency {
        let pool = run.pushes(run.pool_size(plan.duration));
        let stored_at_start = stored(counters);
        progress(format!("accept: concurrency {concurrency} for {:?}", plan.duration));
        let load = load::closed_loop(&run.target, pool, concurrency, plan.duration).await?;
        let phase = format!("accept at concurrency {concurrency}");
        run.note(&phase, &load);
        run.rate_estimate = run.rate_estimate.max(load.per_s);
        progress(format!("{phase}: {:.0} pushes/s, ack p50 {:.1} ms p99 {:.1} ms", load.per_s, load.ack.p50_ms, load.ack.p99_ms));
        run.drain(&phase).await;
        sweep.push((concurrency, stored_at_start, load));
    }

    // Memory with `fill` messages stored, in blocks the bridge takes in about a minute (a push's
    // timestamp must still be fresh when it is sent).
    let mut fill_rate = sweep.last().map_or(run.rate_estimate, |(_, _, load)| load.per_s);
    let (mut fill_errors, mut fill_samples) = (0, Vec::<String>::new());
    while plan.fill > stored(counters) {
        let n = (plan.fill - stored(counters)).min((fill_rate * 60.0) as u64).clamp(1, 50_000);
        progress(format!("storing {n} more messages ({} so far, target {})", stored(counters), plan.fill));
        let pool = run.pushes(n);
        let load = load::closed_loop(&run.target, pool, 16, Duration::from_secs(3600)).await?;
        fill_errors += load.errors;
        for sample in load.error_samples {
            if !fill_samples.contains(&sample) {
                fill_samples.push(sample);
            }
        }
        fill_rate = load.per_s.max(100.0);
        if load.ok == 0 {
            break;
        }
    }
    if fill_errors > 0 {
        run.warnings.push(format!("fill: {fill_errors} requests failed ({})", fill_samples.join("; ")));
    }
    if plan.fill > 0 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        run.drain("fill").await;
    }
    sampler.abort();

    let backlog_at_stop = backlog(counters);
    let stored_messages = stored(counters);
    // Memory is each instance's own: the highest of them (and each in the JSON).
    let peak_rss_each: Vec<Option<u64>> = bridges.iter().map(Server::peak_rss).collect();
    let peak_rss = peak_rss_each.iter().flatten().copied().max();
    let rss_end = bridges.iter().filter_map(Server::rss).max();
    let (rss_at_stored_messages, rss_at_stored) =
        memory.lock().expect("memory").at_target.unwrap_or((stored_messages, rss_end.unwrap_or(0)));
    let db_bytes_running = db_size(&db, "while the bridge ran", &mut run.warnings).await;
    progress(format!("stopping the bridge ({} instance{})", bridges.len(), if bridges.len() == 1 { "" } else { "s" }));
    for bridge in &mut bridges {
        let status = bridge.stop(Duration::from_secs(20)).await?;
        if !status.success() {
            run.warnings.push(format!("the bridge exited with {status}; see {}", bridge.log.display()));
        }
    }
    if let Err(e) = db.checkpoint().await {
        run.warnings.push(format!("cannot checkpoint the database after the run: {e:#}"));
    }
    let db_bytes = db_size(&db, "after the run", &mut run.warnings).await;
    let database_kind = db.kind.name();
    let database = db.description.clone();
    if let Err(e) = db.remove().await {
        run.warnings.push(format!("cannot drop the run's database: {e:#}"));
    }

    // The baseline: the same requests at the same concurrencies, against a bare server.
    let base_listen = process::free_addr()?;
    let base_log = plan.out.join("baseline.log");
    let _ = std::fs::remove_file(&base_log);
    progress(format!("starting the baseline server on {base_listen}"));
    let base_args = vec!["bench-baseline".to_string(), "--listen".into(), base_listen.to_string()];
    let mut baseline =
        Server::spawn("baseline server", &this_exe, &base_args, &[("RUST_LOG".into(), "warn".into())], base_listen, &base_log)?;
    baseline.wait_ready("/readyz", Duration::from_secs(30)).await?;
    let base_target = Target { addrs: vec![base_listen], tracker: None };
    let base_pool = {
        let range = run.seqs.take(20_000);
        let builder = run.builder.clone();
        Arc::new(tokio::task::block_in_place(|| builder.pushes(range)).cycling())
    };
    let mut points = Vec::new();
    for (concurrency, stored_at_start, bridge_load) in sweep {
        progress(format!("baseline: concurrency {concurrency} for {:?}", plan.duration));
        let base = load::closed_loop(&base_target, base_pool.clone(), concurrency, plan.duration).await?;
        run.note(&format!("baseline at concurrency {concurrency}"), &base);
        let ratio = if base.per_s > 0.0 { bridge_load.per_s / base.per_s } else { 0.0 };
        points.push(report::SweepPoint { concurrency, stored_at_start, bridge: bridge_load, baseline: base, ratio });
    }
    baseline.stop(Duration::from_secs(10)).await?;

    let report = Report {
        format: 1,
        // A password in a URL (--database-url) is written as ***.
        command: std::env::args().map(|arg| crate::store::redacted_url(&arg)).collect::<Vec<_>>().join(" "),
        machine: report::machine(load_average),
        settings: report::Settings {
            duration_s: plan.duration.as_secs_f64(),
            quick: plan.quick,
            platform: plan.platform.name().into(),
            database,
            database_kind: database_kind.into(),
            bridge_instances: plan.instances,
            users: plan.users,
            steady_rate: plan.rate,
            accept_rate: plan.accept_rate,
            concurrency: plan.concurrency.clone(),
            sustained_concurrency: plan.sustained_concurrency,
            fill: plan.fill,
        },
        accept: report::Accept { sweep: points, steady: accept_steady },
        e2e: report::EndToEnd {
            inbound: report::Direction {
                sustained: in_sustained,
                steady: in_steady,
                cpu_us_per_message: per_message(in_cpu, in_relayed),
            },
            outbound: report::Direction {
                sustained: out_sustained,
                steady: out_steady,
                cpu_us_per_message: per_message(out_cpu, out_relayed),
            },
        },
        bridge: report::BridgeFigures {
            cpu_us_per_message: per_message(in_cpu + out_cpu, in_relayed + out_relayed),
            peak_rss_mb: report::to_mb(peak_rss),
            peak_rss_mb_each: peak_rss_each.into_iter().map(report::to_mb).collect(),
            rss_end_mb: report::to_mb(rss_end),
            rss_at_stored_mb: report::to_mb(Some(rss_at_stored)),
            rss_at_stored_messages,
            stored_messages,
            db_bytes,
            db_bytes_running,
            db_bytes_at_start,
            db_bytes_per_100k: db_bytes
                .filter(|_| stored_messages > 0)
                .map(|b| b.saturating_sub(db_bytes_at_start.unwrap_or(0)) as f64 * 100_000.0 / stored_messages as f64),
            backlog_at_stop,
            duplicates: get(&counters.duplicates),
        },
        generator_cpu_s: process::cpu_time("/proc/self/stat").unwrap_or_default().saturating_sub(generator_cpu0).as_secs_f64(),
        total_s: started.elapsed().as_secs_f64(),
        warnings: run.warnings,
    };
    let json_path = plan.out.join("bench.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")?;
    let svg_path = plan.out.join("bench.svg");
    std::fs::write(&svg_path, report::svg(&report))?;
    print!("{}", report::table(&report));
    println!("\nfigures: {}\nchart:   {}", json_path.display(), svg_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        Plan::new(&Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))?.bench)
    }

    #[test]
    fn several_instances_need_postgres() {
        assert_eq!(plan(&[]).unwrap().instances, 1);
        let sqlite = plan(&["--instances", "3"]).unwrap_err().to_string();
        assert!(sqlite.contains("SQLite is one instance per file"), "{sqlite}");
        assert!(plan(&["--instances", "3", "--database-url", "sqlite:///tmp/x.db"]).is_err());
        let postgres = plan(&["--instances", "3", "--database-url", "postgres://u:secret@h/db"]).unwrap();
        assert_eq!(postgres.instances, 3);
        assert!(plan(&["--instances", "0", "--database-url", "postgres://h/db"]).is_err());
    }
}
