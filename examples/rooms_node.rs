//! One node of a cluster with resumable rooms over Redis (`unisock::resume::RedisRooms`),
//! for the fault tests and the soak: clients that offer `unisock.v1` join rooms and
//! resume on any node; a plain client publishes with `pub ROOM TEXT` and asks `stats` for
//! `history_bytes=N reads=N errors=N`.
//!
//! `cargo run --features redis --example rooms_node -- ADDR REDIS_URL [--prefix P]
//! [--max-messages N] [--max-age-ms N] [--max-total-bytes N]` (the history kept per room,
//! and over all rooms); prints
//! `listening on ws://ADDR` once it serves.
// Native only. `cargo test --target wasm32-unknown-unknown` (what `wasm-pack test` runs)
// builds every example, so on wasm32 this one is an empty module, without a `main`.
#![cfg_attr(target_arch = "wasm32", no_main)]
#![cfg(not(target_arch = "wasm32"))]

use std::time::Duration;

use unisock::resume::{HistoryLimits, RedisRooms, Rooms};
use unisock::{MsgEvent, WebSocket, WebSockets};

const USAGE: &str =
    "usage: rooms_node ADDR REDIS_URL [--prefix P] [--max-messages N] [--max-age-ms N] \
     [--max-total-bytes N]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(redis)) = (args.next(), args.next()) else {
        return Err(USAGE.into());
    };
    let (mut prefix, mut limits) = ("unisock".to_string(), HistoryLimits::default());
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--prefix" => prefix = value,
            "--max-messages" => limits.max_messages = value.parse()?,
            "--max-age-ms" => limits.max_age = Duration::from_millis(value.parse()?),
            "--max-total-bytes" => limits.max_total_bytes = value.parse()?,
            _ => return Err(USAGE.into()),
        }
    }
    let rooms = RedisRooms::connect(&redis, &prefix, limits).await?;
    rooms.on_error(|e| eprintln!("rooms: {e}"));
    let sockets = WebSockets::new();
    sockets.on_upgrade(|pending| {
        Rooms::select(pending);
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    sockets
        .serve(listener, move |_| {
            let ws = WebSocket::new();
            let commands = rooms.clone();
            rooms.attach(&ws, move |ws, msg| command(&commands, ws, msg));
            Some(ws)
        })
        .await;
    Ok(())
}

/// A plain client's command: `pub ROOM TEXT` or `stats`.
fn command(rooms: &RedisRooms, ws: &WebSocket, msg: MsgEvent) {
    let Some(text) = msg.txt() else {
        return;
    };
    if text == "stats" {
        let _ = ws.send_text(&format!(
            "history_bytes={} reads={} errors={}",
            rooms.history_bytes(),
            rooms.history_reads(),
            rooms.errors()
        ));
    } else if let Some((room, text)) = text.strip_prefix("pub ").and_then(|t| t.split_once(' ')) {
        if let Err(e) = rooms.publish(room, MsgEvent::Text(text.into())) {
            let _ = ws.send_text(&format!("error {e}"));
        }
    }
}
