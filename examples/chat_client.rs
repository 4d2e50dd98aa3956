//! The terminal chat client: the same client code as the browser page (`chat/client.rs`),
//! natively. Every line typed on stdin is said to the room (`/quit` or end of input
//! leaves); every line received is printed on stdout, status changes as `* ...`.
//! It goes through the proxy the environment names (`http_proxy`/`https_proxy`,
//! `all_proxy`, `no_proxy`), unless given `--no-proxy`.
//!
//! `cargo run --example chat_client -- --url ws://127.0.0.1:8069/ws [--no-proxy]`
// Native only. `cargo test --target wasm32-unknown-unknown` (what `wasm-pack test` runs)
// builds every example, so on wasm32 this one is an empty module, without a `main`.
#![cfg_attr(target_arch = "wasm32", no_main)]
#![cfg(not(target_arch = "wasm32"))]

#[path = "chat/client.rs"]
mod client;

use client::{Chat, ChatEvent};
use tokio::sync::mpsc;
use unisock::{Proxy, WebSocket, WebSocketExt};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let (url, no_proxy) = match parse_args() {
        Ok(args) => args,
        Err(usage) => {
            eprintln!("{usage}");
            return std::process::ExitCode::from(2);
        }
    };
    let ws = WebSocket::new();
    if no_proxy {
        let _ = ws.set_proxy(Proxy::None); // no URL, so nothing to refuse
    }
    let Ok(chat) = Chat::connect(ws, &url, print).await else {
        return std::process::ExitCode::FAILURE; // `print` showed why
    };
    let mut lines = stdin_lines();
    let run = chat.run();
    tokio::pin!(run);
    loop {
        tokio::select! {
            () = &mut run => return std::process::ExitCode::SUCCESS,
            line = lines.recv() => match line {
                Some(line) => {
                    if let Err(e) = chat.submit(&line) {
                        println!("* not sent: {e}");
                    }
                }
                None => break,
            }
        }
    }
    // End of input: leave, and finish the closing handshake.
    let _ = chat.leave();
    run.await;
    std::process::ExitCode::SUCCESS
}

fn print(event: ChatEvent) {
    match event {
        ChatEvent::Status(status) => println!("* {status}"),
        ChatEvent::Line(line) => println!("{line}"),
    }
}

/// `--url URL` (default `ws://127.0.0.1:8069/ws`), and `--no-proxy` to connect directly
/// whatever the proxy environment variables say.
fn parse_args() -> Result<(String, bool), String> {
    let mut args = std::env::args().skip(1);
    let mut url = "ws://127.0.0.1:8069/ws".to_string();
    let mut no_proxy = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a URL")?,
            "--no-proxy" => no_proxy = true,
            _ => return Err("usage: chat_client [--url ws://HOST:PORT/ws] [--no-proxy]".into()),
        }
    }
    Ok((url, no_proxy))
}

/// Stdin's lines, read on a plain thread: a blocking read cannot be cancelled, and this
/// way it does not hold up the exit when the server ends the chat first.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
