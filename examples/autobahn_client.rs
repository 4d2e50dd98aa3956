//! The standard Autobahn testsuite client driver, run against `wstest -m fuzzingserver`:
//! getCaseCount, runCase for each case (echoing every message) with agent `unisock`,
//! then updateReports.
//!
//! `cargo run --release --example autobahn_client -- ws://127.0.0.1:9001`
// Native only. `cargo test --target wasm32-unknown-unknown` (what `wasm-pack test` runs)
// builds every example, so on wasm32 this one is an empty module, without a `main`.
#![cfg_attr(target_arch = "wasm32", no_main)]
#![cfg(not(target_arch = "wasm32"))]

use std::sync::{Arc, Mutex};

use unisock::{MsgEvent, WebSocket};

const AGENT: &str = "unisock";

#[tokio::main]
async fn main() -> Result<(), unisock::Error> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let count = case_count(&base).await?;
    println!("{count} cases");
    for case in 1..=count {
        let ws = WebSocket::new();
        let echo = ws.clone();
        ws.on_message(move |msg| {
            let _ = match msg {
                MsgEvent::Text(t) => echo.send_text(&t),
                MsgEvent::Binary(b) => echo.send_binary(&b),
            };
        });
        match ws
            .open(&format!("{base}/runCase?case={case}&agent={AGENT}"), &[])
            .await
        {
            Ok(()) => ws.read().await,
            Err(e) => eprintln!("case {case}: {e}"),
        }
    }
    let ws = WebSocket::new();
    ws.open(&format!("{base}/updateReports?agent={AGENT}"), &[])
        .await?;
    ws.read().await;
    println!("reports updated");
    Ok(())
}

async fn case_count(base: &str) -> Result<u32, unisock::Error> {
    let ws = WebSocket::new();
    let count = Arc::new(Mutex::new(0));
    let slot = count.clone();
    ws.on_message(move |msg| {
        if let Some(n) = msg.txt().and_then(|t| t.trim().parse().ok()) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = n;
        }
    });
    ws.open(&format!("{base}/getCaseCount"), &[]).await?;
    ws.read().await;
    let n = *count.lock().unwrap_or_else(|e| e.into_inner());
    Ok(n)
}
