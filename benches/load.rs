//! `cargo bench --bench load [-- OPTIONS]`: the load benchmark, `wechat-bridge bench`, run on the
//! binary cargo just built with the bench profile (optimized). Options after `--` are the
//! command's own, e.g. `cargo bench --bench load -- --duration 30 --platform vonage`.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    // cargo passes `--bench` (and a filter, when given) to every bench target: not ours to read.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let status = Command::new(env!("CARGO_BIN_EXE_wechat-bridge")).arg("bench").args(&args).status();
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("wechat-bridge bench exited with {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot start wechat-bridge bench: {e}");
            ExitCode::FAILURE
        }
    }
}
