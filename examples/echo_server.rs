//! Echoes every message back. Used by the Autobahn fuzzingclient run and the browser tests.
//!
//! `cargo run --release --example echo_server -- 127.0.0.1:9001` (port 0 picks a free port);
//! prints `listening on ws://ADDR` once it accepts connections, then runs until killed.
//!
//! For the browser tests it also selects the first subprotocol a client offers, and on the
//! path `/drop` it completes the handshake, sends one text message and drops TCP without
//! a close frame (an unclean close for the client).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use unisock::protocol::handshake;
use unisock::{MsgEvent, WebSocket, WebSocketExt};

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
    if let Ok(ws) = pending.commit().await {
        ws.read().await;
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
