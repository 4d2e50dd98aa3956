//! Helpers for the native integration tests: servers on 127.0.0.1:0, and a timeout so a
//! broken test fails instead of hanging.
#![allow(dead_code, unreachable_pub, reason = "each test file uses a different subset")]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use unisock::{CloseEvent, MsgEvent, WebSocket};

/// Fails the test if `fut` takes longer than 10 seconds.
pub async fn with_timeout<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("test step timed out")
}

/// Starts a unisock echo server on a free port; returns its address.
pub async fn spawn_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
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
    });
    addr
}

/// What a socket's handlers saw, as channels a test can await.
pub struct Events {
    pub messages: mpsc::UnboundedReceiver<MsgEvent>,
    pub closes: mpsc::UnboundedReceiver<CloseEvent>,
}

/// Routes `ws`'s messages and close event into channels.
pub fn record(ws: &WebSocket) -> Events {
    let (mtx, messages) = mpsc::unbounded_channel();
    let (ctx, closes) = mpsc::unbounded_channel();
    ws.on_message(move |m| {
        let _ = mtx.send(m);
    });
    ws.on_close(move |c| {
        let _ = ctx.send(c);
    });
    Events { messages, closes }
}
