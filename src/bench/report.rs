//! What a run found: the figures (`bench.json`), a table on stdout, and a chart (`bench.svg`)
//! of throughput and acknowledgement latency against concurrency, bridge and baseline.

use std::fmt::Write as _;

use serde::Serialize;

use super::load::{Latency, LoadResult};

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The JSON layout's version.
    pub format: u32,
    pub command: String,
    pub machine: Machine,
    pub settings: Settings,
    pub accept: Accept,
    pub e2e: EndToEnd,
    pub bridge: BridgeFigures,
    /// CPU time of the benchmark's own process (load generator and fakes), seconds: on a small
    /// machine it competes with the bridge for the same cores.
    pub generator_cpu_s: f64,
    /// Wall time of the whole run, seconds.
    pub total_s: f64,
    /// Things that make the figures less trustworthy (debug build, pools that ran out, errors).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_gb: f64,
    pub kernel: String,
    pub date: String,
    pub commit: Option<String>,
    /// `release` or `debug`: how this binary (the benchmark and the bridge it starts) was built.
    pub build: String,
    pub version: String,
    /// `/proc/loadavg` when the run started: other work on a shared machine skews the figures.
    pub load_average_at_start: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub duration_s: f64,
    pub quick: bool,
    pub platform: String,
    /// The database and where it came from, e.g. `postgres (fresh database)`; never the URL (it
    /// may hold credentials).
    pub database: String,
    /// `sqlite` or `postgres`.
    pub database_kind: String,
    /// Bridge processes on the one database, the load spread over them.
    pub bridge_instances: usize,
    pub users: usize,
    pub steady_rate: u64,
    pub accept_rate: u64,
    pub concurrency: Vec<usize>,
    pub sustained_concurrency: usize,
    pub fill: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Accept {
    /// Closed loop at each concurrency, bridge and baseline.
    pub sweep: Vec<SweepPoint>,
    /// Open loop at `accept_rate`.
    pub steady: Steady,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub concurrency: usize,
    /// Messages stored before this level (the phases run in order on one database).
    pub stored_at_start: u64,
    pub bridge: LoadResult,
    pub baseline: LoadResult,
    /// Bridge pushes/s ÷ baseline requests/s.
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndToEnd {
    /// Customer → platform: a signed push acknowledged, then delivered by the outbox.
    pub inbound: Direction,
    /// Agent → customer: a message accepted by the platform's API, then sent to WeChat.
    pub outbound: Direction,
}

#[derive(Debug, Clone, Serialize)]
pub struct Direction {
    pub sustained: Sustained,
    pub steady: Steady,
    /// Bridge CPU time during this direction's phases (including drains) per message relayed, µs.
    pub cpu_us_per_message: f64,
}

/// As fast as the bridge takes them, for the phase's duration, then until the outbox is empty.
#[derive(Debug, Clone, Serialize)]
pub struct Sustained {
    /// Messages stored before the phase (the phases run in order on one database).
    pub stored_at_start: u64,
    pub concurrency: usize,
    /// The load: accepted requests and their latency.
    pub load: LoadResult,
    /// Distinct messages that reached the other side, from the first send until drained.
    pub relayed: u64,
    /// `relayed` over the whole time (sending + draining): the end-to-end rate.
    pub per_s: f64,
    /// Messages relayed per second while the load was on.
    pub relayed_under_load_per_s: f64,
    /// Messages relayed per second after the load stopped (the outbox alone).
    pub drain_per_s: f64,
    /// From the end of the load to an empty outbox, seconds.
    pub drain_s: f64,
    pub drained: bool,
}

/// A fixed rate, open loop.
#[derive(Debug, Clone, Serialize)]
pub struct Steady {
    /// Messages stored before the phase.
    pub stored_at_start: u64,
    pub rate: u64,
    pub load: LoadResult,
    /// Send (scheduled time) → arrival on the other side. Empty for the accept-only phase.
    pub e2e: Latency,
    /// Acknowledged but not arrived, each second of the load: an outbox that keeps up stays flat.
    pub backlog_each_s: Vec<u64>,
    /// Acknowledged but not arrived when the load stopped.
    pub backlog_at_end: u64,
    pub drain_s: f64,
    pub drained: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BridgeFigures {
    /// Bridge CPU time per message relayed, both directions' phases together, µs; with several
    /// instances, the CPU time of all of them together.
    pub cpu_us_per_message: f64,
    /// Peak resident memory of the bridge over the run (`VmHWM`), MB; with several instances,
    /// the highest instance's (memory is per process).
    pub peak_rss_mb: f64,
    /// Each instance's peak resident memory, MB.
    pub peak_rss_mb_each: Vec<f64>,
    /// Resident memory at the end of the run (the highest instance's), MB.
    pub rss_end_mb: f64,
    /// Resident memory when `stored_messages` had been stored (the fill target or the end; the
    /// highest instance's), MB.
    pub rss_at_stored_mb: f64,
    pub rss_at_stored_messages: u64,
    /// Messages stored in the run (both directions, acknowledged).
    pub stored_messages: u64,
    /// The database's size at the end: SQLite's file after shutdown, PostgreSQL's
    /// `pg_database_size`.
    pub db_bytes: Option<u64>,
    /// The same while the bridge ran, SQLite's write-ahead log included.
    pub db_bytes_running: Option<u64>,
    /// The same before the bridge started (SQLite: none yet; PostgreSQL: an empty database).
    pub db_bytes_at_start: Option<u64>,
    /// `db_bytes - db_bytes_at_start` per 100,000 stored messages.
    pub db_bytes_per_100k: Option<f64>,
    /// Messages still in the outbox when the bridge was stopped.
    pub backlog_at_stop: u64,
    /// Deliveries that arrived twice.
    pub duplicates: u64,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

pub fn to_mb(bytes: Option<u64>) -> f64 {
    bytes.map_or(0.0, mb)
}

/// What this machine is.
pub fn machine(load_average_at_start: String) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let memory_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok()))
        .unwrap_or(0);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty());
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        memory_gb: (memory_kb as f64 / 1_048_576.0 * 10.0).round() / 10.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        commit,
        build: if cfg!(debug_assertions) { "debug" } else { "release" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        load_average_at_start,
    }
}

fn num(x: f64) -> String {
    if x >= 100.0 {
        let whole = x.round() as u64;
        let digits = whole.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ms(x: f64) -> String {
    format!("{} ms", num(x))
}

/// The table printed at the end of a run.
pub fn table(r: &Report) -> String {
    let mut t = String::new();
    let m = &r.machine;
    let s = &r.settings;
    let _ = writeln!(
        t,
        "\nwechat-bridge bench: {} build, {} platform, {}, {} bridge instance{}, {} users, {} s phases",
        m.build,
        s.platform,
        s.database,
        s.bridge_instances,
        if s.bridge_instances == 1 { "" } else { "s" },
        s.users,
        s.duration_s
    );
    let _ = writeln!(
        t,
        "machine: {} cores, {}, {} GB, Linux {}, commit {}, {}, load average at start {}",
        m.cores,
        m.cpu,
        m.memory_gb,
        m.kernel,
        m.commit.as_deref().unwrap_or("?"),
        m.date,
        m.load_average_at_start
    );
    let _ = writeln!(t, "\nACCEPT: signed AES pushes, closed loop (baseline: a bare server, same runtime, same requests)");
    let _ = writeln!(
        t,
        "  {:>11} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12} {:>9} {:>15}",
        "concurrency", "pushes/s", "ack p50", "ack p99", "ack p99.9", "errors", "baseline/s", "ratio", "stored before"
    );
    for p in &r.accept.sweep {
        let _ = writeln!(
            t,
            "  {:>11} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12} {:>9} {:>15}",
            p.concurrency,
            num(p.bridge.per_s),
            ms(p.bridge.ack.p50_ms),
            ms(p.bridge.ack.p99_ms),
            ms(p.bridge.ack.p999_ms),
            p.bridge.errors,
            num(p.baseline.per_s),
            format!("{:.1}%", p.ratio * 100.0),
            num(p.stored_at_start as f64)
        );
    }
    let a = &r.accept.steady;
    let _ = writeln!(
        t,
        "  at a steady {}/s: ack p50 {}, p99 {}, p99.9 {} ({} errors)",
        num(a.rate as f64),
        ms(a.load.ack.p50_ms),
        ms(a.load.ack.p99_ms),
        ms(a.load.ack.p999_ms),
        a.load.errors
    );
    let _ = writeln!(t, "\nEND TO END (sent → arrived at the other side's fake)");
    let _ = writeln!(
        t,
        "  {:>9} {:>11} {:>10} {:>10} {:>8} {:>14} {:>10} {:>10} {:>15}",
        "direction", "sustained/s", "accept/s", "drain/s", "drain", "steady rate", "e2e p50", "e2e p99", "backlog at end"
    );
    for (name, d) in [("inbound", &r.e2e.inbound), ("outbound", &r.e2e.outbound)] {
        let _ = writeln!(
            t,
            "  {:>9} {:>11} {:>10} {:>10} {:>8} {:>14} {:>10} {:>10} {:>15}",
            name,
            num(d.sustained.per_s),
            num(d.sustained.load.per_s),
            num(d.sustained.drain_per_s),
            format!("{:.1} s", d.sustained.drain_s),
            format!("{}/s", num(d.steady.rate as f64)),
            ms(d.steady.e2e.p50_ms),
            ms(d.steady.e2e.p99_ms),
            d.steady.backlog_at_end
        );
    }
    let b = &r.bridge;
    let several = s.bridge_instances > 1;
    let _ = writeln!(t, "\nBRIDGE {}", if several { "PROCESSES" } else { "PROCESS" });
    let _ = writeln!(
        t,
        "  CPU per relayed message{}: {} µs (inbound {} µs, outbound {} µs)",
        if several { ", all instances together" } else { "" },
        num(b.cpu_us_per_message),
        num(r.e2e.inbound.cpu_us_per_message),
        num(r.e2e.outbound.cpu_us_per_message)
    );
    let each: Vec<String> = b.peak_rss_mb_each.iter().map(|mb| num(*mb)).collect();
    let _ = writeln!(
        t,
        "  memory{}: peak RSS {} MB{}; {} MB with {} messages stored",
        if several { " (the highest instance's)" } else { "" },
        num(b.peak_rss_mb),
        if several { format!(" (each: {} MB)", each.join(" / ")) } else { String::new() },
        num(b.rss_at_stored_mb),
        num(b.rss_at_stored_messages as f64)
    );
    match b.db_bytes_per_100k {
        Some(per) => {
            let _ = writeln!(
                t,
                "  database: {} bytes per 100,000 messages ({} MB for {} messages)",
                num(per),
                num(to_mb(b.db_bytes)),
                num(b.stored_messages as f64)
            );
        }
        None => {
            let _ = writeln!(t, "  database: size not measured for this database");
        }
    }
    let _ = writeln!(t, "  load generator and fakes used {:.1} s of CPU; the run took {:.0} s", r.generator_cpu_s, r.total_s);
    for w in &r.warnings {
        let _ = writeln!(t, "  warning: {w}");
    }
    t
}

/// Two panels, x = concurrency (even spacing): pushes/s (log scale) for the bridge and the
/// baseline; acknowledgement latency p50 and p99 (log scale) for both.
pub fn svg(r: &Report) -> String {
    const W: f64 = 960.0;
    const H: f64 = 470.0;
    let sweep = &r.accept.sweep;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{}" y="24" text-anchor="middle" font-size="16" font-weight="bold">wechat-bridge accept: signed AES pushes against concurrency ({} build, {} ×{}, {} cores)</text>
<text x="{}" y="42" text-anchor="middle" fill="#555">{} · {} · commit {} · bridge vs a bare server on the same runtime</text>
"##,
        W / 2.0,
        r.machine.build,
        r.settings.database_kind,
        r.settings.bridge_instances,
        r.machine.cores,
        W / 2.0,
        esc(&r.machine.cpu),
        &r.machine.date[..10.min(r.machine.date.len())],
        r.machine.commit.as_deref().unwrap_or("?"),
    );
    let xs: Vec<String> = sweep.iter().map(|p| p.concurrency.to_string()).collect();
    let throughput = [
        Series { name: "bridge".into(), color: "#d62728", dashed: false, values: sweep.iter().map(|p| p.bridge.per_s).collect() },
        Series {
            name: "baseline".into(),
            color: "#1f77b4",
            dashed: false,
            values: sweep.iter().map(|p| p.baseline.per_s).collect(),
        },
    ];
    panel(&mut s, Frame { x: 70.0, y: 70.0, w: 360.0, h: 290.0 }, "requests answered per second", &xs, &throughput, "");
    let latency = [
        Series {
            name: "bridge p99".into(),
            color: "#d62728",
            dashed: false,
            values: sweep.iter().map(|p| p.bridge.ack.p99_ms).collect(),
        },
        Series {
            name: "bridge p50".into(),
            color: "#d62728",
            dashed: true,
            values: sweep.iter().map(|p| p.bridge.ack.p50_ms).collect(),
        },
        Series {
            name: "baseline p99".into(),
            color: "#1f77b4",
            dashed: false,
            values: sweep.iter().map(|p| p.baseline.ack.p99_ms).collect(),
        },
        Series {
            name: "baseline p50".into(),
            color: "#1f77b4",
            dashed: true,
            values: sweep.iter().map(|p| p.baseline.ack.p50_ms).collect(),
        },
    ];
    panel(&mut s, Frame { x: 560.0, y: 70.0, w: 360.0, h: 290.0 }, "acknowledgement latency, ms", &xs, &latency, " ms");
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">concurrency (connections, each sending its next request when answered); log scales</text>"##,
        W / 2.0,
        H - 12.0
    );
    s.push_str("</svg>\n");
    s
}

struct Series {
    name: String,
    color: &'static str,
    dashed: bool,
    values: Vec<f64>,
}

#[derive(Clone, Copy)]
struct Frame {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn label(v: f64, unit: &str) -> String {
    let text = if v >= 1000.0 {
        format!("{}k", num(v / 1000.0).trim_end_matches(".00").trim_end_matches(".0"))
    } else if v >= 10.0 {
        format!("{}", v.round())
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    format!("{text}{unit}")
}

/// One panel: log-scale y over whole decades, even x, a line and labelled points per series.
fn panel(s: &mut String, f: Frame, title: &str, xs: &[String], series: &[Series], unit: &str) {
    let positive = series.iter().flat_map(|se| se.values.iter().copied()).filter(|v| *v > 0.0);
    let (lo, hi) = positive.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo > hi { (0.1, 10.0) } else { (lo, hi) };
    let (d0, d1) = (lo.log10().floor() as i32, (hi.log10().ceil() as i32).max(lo.log10().floor() as i32 + 1));
    let y_of = |v: f64| f.y + f.h - (v.max(10f64.powi(d0)).log10() - d0 as f64) / (d1 - d0) as f64 * f.h;
    let n = xs.len().max(1);
    let x_of = |i: usize| if n == 1 { f.x + f.w / 2.0 } else { f.x + 20.0 + i as f64 * (f.w - 40.0) / (n - 1) as f64 };
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"##,
        f.x + f.w / 2.0,
        f.y - 12.0,
        esc(title)
    );
    let _ = writeln!(s, r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>"##, f.x, f.y, f.w, f.h);
    for d in d0..=d1 {
        let y = y_of(10f64.powi(d));
        let _ = writeln!(s, r##"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/>"##, f.x, f.x + f.w);
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            f.x - 6.0,
            y + 4.0,
            label(10f64.powi(d), unit)
        );
    }
    for (i, x) in xs.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
            x_of(i),
            f.y + f.h + 18.0,
            esc(x)
        );
    }
    for (k, se) in series.iter().enumerate() {
        let points: Vec<String> = se
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0.0)
            .map(|(i, v)| format!("{:.1},{:.1}", x_of(i), y_of(*v)))
            .collect();
        let dash = if se.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"##,
            points.join(" "),
            se.color
        );
        for (i, v) in se.values.iter().enumerate().filter(|(_, v)| **v > 0.0) {
            let (x, y) = (x_of(i), y_of(*v));
            let _ = writeln!(s, r##"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{}"/>"##, se.color);
            if !se.dashed {
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="{}">{}</text>"##,
                    x,
                    y - 7.0,
                    se.color,
                    label(*v, "")
                );
            }
        }
        // The legend, under the panel.
        let (lx, ly) = (f.x + (k % 2) as f64 * 180.0, f.y + f.h + 38.0 + (k / 2) as f64 * 18.0);
        let _ = writeln!(
            s,
            r##"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/>"##,
            lx + 24.0,
            se.color
        );
        let _ = writeln!(s, r##"<text x="{}" y="{}">{}</text>"##, lx + 30.0, ly + 4.0, esc(&se.name));
    }
}
