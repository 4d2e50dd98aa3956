//! Echoes every message back. Used by the Autobahn fuzzingclient run and the browser tests.
//!
//! `cargo run --release --example echo_server -- 127.0.0.1:9001` (port 0 picks a free port);
//! prints `listening on ws://ADDR` once it accepts connections, then runs until killed.

use unisock::{MsgEvent, WebSocket};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let ws = WebSocket::new();
            let echo = ws.clone();
            ws.on_message(move |msg| {
                let _ = match msg {
                    MsgEvent::Text(t) => echo.send_text(&t),
                    MsgEvent::Binary(b) => echo.send_binary(&b),
                };
            });
            if ws.upgrade(tcp).await.is_ok() {
                ws.read().await;
            }
        });
    }
}
