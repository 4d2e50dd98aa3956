//! unisock-bench: unisock side by side with the fastest Rust WebSocket crates.
//!
//! ```text
//! unisock-bench run [--quick] [--pin] [--only CRATE,SERVER] [--idle N] [--rate R] [--rows ID] [--note TEXT] [--out FILE.md] [--json FILE]
//! unisock-bench server SERVER ADDR    one echo server (the harness starts these)
//! unisock-bench codec WORKLOAD LEN ROUNDS   exactly ROUNDS rounds of a codec workload
//! ```
//!
//! `codec` is for profiling: a fixed amount of work (`parse`, `parsetext`, `encode` or
//! `memcpy` of 16 payloads of LEN bytes a round), so `valgrind --tool=callgrind` counts
//! compare two builds on a noisy machine. `run --rows codec` measures the codec rows alone.
//!
//! A server is a crate's example-style echo (`yawc`) or a peer's batched one (`yawc+batched`);
//! `--only` takes either (a crate: both of its servers). `--idle N`: the connections of the
//! idle-memory and the fixed-rate rows; `--rate R`: the fixed-rate row's msg/s in all.
//!
//! `run` starts each crate's echo server in its own process (pinned to core 0 with
//! `taskset` under `--pin`; `./build.sh bench` pins this process to core 1), drives it
//! with the raw-frame load generator of `load.rs`, measures every row `reps` times
//! (interleaving the servers), and writes the markdown tables and the raw numbers as JSON.

mod codec;
mod load;
mod report;
mod servers;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("server") if args.len() == 3 => servers::run(&args[1], &args[2]),
        Some("run") => report::run(&args[1..]),
        Some("codec") if args.len() == 4 => codec_rounds(&args[1], &args[2], &args[3]),
        _ => {
            eprintln!(
                "usage: unisock-bench run [--quick] [--pin] [--only CRATES|SERVERS] [--idle N] [--rate R] [--rows ID] [--note TEXT] [--out FILE] [--json FILE]\n\
                 \x20      unisock-bench server SERVER ADDR   (SERVER: {})\n\
                 \x20      unisock-bench codec WORKLOAD LEN ROUNDS   (WORKLOAD: {})",
                servers::SERVERS.join(", "),
                codec::WORKLOADS.join(", ")
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unisock-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `unisock-bench codec WORKLOAD LEN ROUNDS`.
fn codec_rounds(what: &str, len: &str, rounds: &str) -> std::io::Result<()> {
    let len = len.parse().map_err(std::io::Error::other)?;
    let rounds = rounds.parse().map_err(std::io::Error::other)?;
    codec::run_rounds(what, len, rounds)
        .ok_or_else(|| std::io::Error::other(format!("unknown codec workload {what}")))
}
