//! The terminal chat client: the same client code as the browser page (`chat/client.rs`),
//! natively. Every line typed on stdin is said to the room (`/quit` or end of input
//! leaves); every line received is printed on stdout, status changes as `* ...`.
//!
//! `cargo run --example chat_client -- --url ws://127.0.0.1:8069/ws`

#[path = "chat/client.rs"]
mod client;

use client::{Chat, ChatEvent};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let url = match url_arg() {
        Ok(url) => url,
        Err(usage) => {
            eprintln!("{usage}");
            return std::process::ExitCode::from(2);
        }
    };
    let Ok(chat) = Chat::connect(&url, print).await else {
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

/// `--url URL` (default `ws://127.0.0.1:8069/ws`).
fn url_arg() -> Result<String, String> {
    let mut args = std::env::args().skip(1);
    let mut url = "ws://127.0.0.1:8069/ws".to_string();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--url", Some(value)) => url = value,
            _ => return Err("usage: chat_client [--url ws://HOST:PORT/ws]".into()),
        }
    }
    Ok(url)
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
