//! unisock-bench: unisock side by side with the fastest Rust WebSocket crates.
//!
//! ```text
//! unisock-bench run [--quick] [--pin] [--only CRATE,CRATE] [--idle N] [--rows ID] [--note TEXT] [--out FILE.md] [--json FILE]
//! unisock-bench server CRATE ADDR     one crate's echo server (the harness starts these)
//! ```
//!
//! `run` starts each crate's echo server in its own process (pinned to core 0 with
//! `taskset` under `--pin`; `./build.sh bench` pins this process to core 1), drives it
//! with the raw-frame load generator of `load.rs`, measures every row `reps` times
//! (interleaving the crates), and writes the markdown table and the raw numbers as JSON.

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
        _ => {
            eprintln!(
                "usage: unisock-bench run [--quick] [--pin] [--only CRATES] [--idle N] [--rows ID] [--note TEXT] [--out FILE] [--json FILE]\n\
                 \x20      unisock-bench server CRATE ADDR   (CRATE: {})",
                servers::CRATES.join(", ")
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
