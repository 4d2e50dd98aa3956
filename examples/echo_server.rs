//! Echoes every message back. Used by the Autobahn fuzzingclient run and the browser tests.
//!
//! `cargo run --release --example echo_server -- 127.0.0.1:9001` (port 0 picks a free port);
//! prints `listening on ws://ADDR` once it accepts connections, then runs until killed.
//!
//! For the browser tests it also selects the first subprotocol a client offers, and on the
//! path `/drop` it completes the handshake, sends one text message and drops TCP without
//! a close frame (an unclean close for the client).
//!
//! So a browser test can check what the server saw of a close: on `/record?key=K` it
//! echoes as usual and keeps the close event it got under `K`; on `/report?key=K` it
//! sends that event as text (waiting up to 5 s for it), then closes with 1000.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use unisock::protocol::handshake;
use unisock::{MsgEvent, WebSocket, WebSocketExt};

/// The close events seen on `/record?key=K`, by key, and a wake-up for `/report`.
static CLOSES: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
static RECORDED: Notify = Notify::const_new();

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let mut first = [0u8; 64];
            let n = tcp.peek(&mut first).await.unwrap_or(0);
            if first[..n].starts_with(b"GET /drop") {
                let _ = upgrade_then_drop(tcp).await;
            } else {
                echo(tcp).await;
            }
        });
    }
}

async fn echo(tcp: TcpStream) {
    let ws = WebSocket::new();
    let echo = ws.clone();
    ws.on_message(move |msg| {
        let _ = match msg {
            MsgEvent::Text(t) => echo.send_text(&t),
            MsgEvent::Binary(b) => echo.send_binary(&b),
        };
    });
    let Ok(mut pending) = ws.upgrade_pending(tcp).await else {
        return;
    };
    if let Some(first) = pending.offered_protocols().first().cloned() {
        pending.set_protocol(&first);
    }
    let uri = pending.request().uri().clone();
    let key = uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("key=")))
        .unwrap_or_default()
        .to_string();
    let Ok(ws) = pending.commit().await else {
        return;
    };
    match uri.path() {
        "/record" => ws.on_close(move |ev| {
            let mut closes = CLOSES.lock().unwrap_or_else(PoisonError::into_inner);
            closes
                .get_or_insert_with(HashMap::new)
                .insert(key.clone(), ev.to_string());
            RECORDED.notify_waiters();
        }),
        "/report" => {
            let report = ws.clone();
            tokio::spawn(async move {
                let seen = tokio::time::timeout(Duration::from_secs(5), recorded(&key)).await;
                let text = seen.unwrap_or_else(|_| format!("no close recorded for key {key:?}"));
                let _ = report.send_text(&text);
                let _ = report.close(1000, "");
            });
        }
        _ => {}
    }
    ws.read().await;
}

/// Waits until a close was recorded under `key`, and returns it.
async fn recorded(key: &str) -> String {
    loop {
        let notified = RECORDED.notified();
        let seen = CLOSES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|c| c.get(key).cloned());
        if let Some(ev) = seen {
            return ev;
        }
        notified.await;
    }
}

/// Completes the handshake by hand, sends "bye" in one unmasked text frame, and ends TCP
/// without a close frame.
async fn upgrade_then_drop(mut tcp: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let request = loop {
        let mut chunk = [0u8; 1024];
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        match handshake::parse_request(&buf) {
            Ok(Some((request, _))) => break request,
            Ok(None) => {}
            Err(_) => return Ok(()),
        }
    };
    let Ok(accept) = handshake::validate_request(&request, None) else {
        return Ok(());
    };
    tcp.write_all(&handshake::response_101(&accept.accept, None, &[]))
        .await?;
    tcp.write_all(&[0x81, 0x03, b'b', b'y', b'e']).await?;
    tcp.shutdown().await
}
