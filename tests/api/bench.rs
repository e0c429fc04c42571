//! `wechat-bridge bench --quick`: the benchmark runs end to end on the real binary and writes
//! every figure and the chart. Its timings are not checked (the benchmark prints figures; a test
//! on a shared machine cannot hold them to anything).

use std::process::Command;

use serde_json::Value;

/// The figures every run must produce, as JSON pointers; each must be a number above zero.
const FIGURES: &[&str] = &[
    "/accept/steady/load/per_s",
    "/accept/steady/load/ack/p50_ms",
    "/accept/steady/load/ack/p99_ms",
    "/accept/steady/load/ack/p999_ms",
    "/e2e/inbound/sustained/per_s",
    "/e2e/inbound/sustained/load/per_s",
    "/e2e/inbound/steady/e2e/p50_ms",
    "/e2e/inbound/steady/e2e/p99_ms",
    "/e2e/inbound/cpu_us_per_message",
    "/e2e/outbound/sustained/per_s",
    "/e2e/outbound/sustained/load/per_s",
    "/e2e/outbound/steady/e2e/p50_ms",
    "/e2e/outbound/steady/e2e/p99_ms",
    "/e2e/outbound/cpu_us_per_message",
    "/bridge/cpu_us_per_message",
    "/bridge/peak_rss_mb",
    "/bridge/rss_at_stored_mb",
    "/bridge/stored_messages",
    "/bridge/db_bytes",
    "/bridge/db_bytes_per_100k",
    "/machine/cores",
    "/generator_cpu_s",
];

/// The same for each level of the accept sweep.
const SWEEP_FIGURES: &[&str] =
    &["/bridge/per_s", "/bridge/ack/p50_ms", "/bridge/ack/p99_ms", "/bridge/ack/p999_ms", "/baseline/per_s", "/ratio"];

#[test]
fn bench_quick_writes_every_figure_and_the_chart() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wechat-bridge"))
        .args(["bench", "--quick", "--out"])
        .arg(out.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench --quick failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    for heading in ["ACCEPT", "END TO END", "BRIDGE PROCESS", "bench.json", "bench.svg"] {
        assert!(stdout.contains(heading), "the table lacks {heading}:\n{stdout}");
    }

    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("bench.json")).unwrap()).unwrap();
    let positive = |value: &Value, pointer: &str| {
        let number = value.pointer(pointer).and_then(Value::as_f64);
        assert!(number.is_some_and(|n| n > 0.0), "{pointer} is {number:?}, not a number above zero\n{stdout}");
    };
    for pointer in FIGURES {
        positive(&report, pointer);
    }
    let sweep = report["accept"]["sweep"].as_array().expect("the sweep");
    let levels: Vec<u64> = sweep.iter().map(|p| p["concurrency"].as_u64().unwrap()).collect();
    assert_eq!(levels, [1, 16, 64, 256], "every concurrency level, even with --quick");
    for point in sweep {
        for pointer in SWEEP_FIGURES {
            positive(point, pointer);
        }
    }
    assert_eq!(report["settings"]["quick"], true);
    assert!(report["machine"]["cpu"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(report["machine"]["date"].as_str().is_some_and(|d| d.len() >= 20));
    assert!(report["warnings"].as_array().is_some());

    let svg = std::fs::read_to_string(out.path().join("bench.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "not an SVG document");
    for text in ["bridge", "baseline", "256"] {
        assert!(svg.contains(text), "the chart lacks {text}");
    }
}
