//! The proxy environment variables, read by a socket left at `Proxy::FromEnv` (the
//! default): `ws://` goes through `http_proxy`, `NO_PROXY` exempts a host, and a redirect
//! chooses again for its target. One test alone in its binary, as it sets environment
//! variables (process-wide); `src/native/proxy.rs` tests the rules themselves.
//! Needs tinyproxy, as tests/proxy.rs.
#![cfg(not(target_arch = "wasm32"))]

mod common;
mod proxies;

use proxies::{source_of, spawn_server, tinyproxy, PROXY_SOURCE};
use unisock::{Proxy, WebSocket, WebSocketExt};

/// A plain HTTP server that answers every request with a 302 to `location`, and reports
/// where each request came from.
async fn spawn_redirect(location: String) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut tcp, peer) = unisock::server::accept(&listener).await;
            let _ = tx.send(peer.ip().to_string());
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && tcp.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let answer =
                format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
            let _ = tcp.write_all(answer.as_bytes()).await;
        }
    });
    (port, rx)
}

#[tokio::test]
async fn the_environment_chooses_the_proxy_per_target() {
    let Some(proxy) = tinyproxy(None, &[]) else {
        return;
    };
    for name in [
        "ws_proxy",
        "WS_PROXY",
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        std::env::remove_var(name);
    }
    for name in ["no_proxy", "NO_PROXY", "REQUEST_METHOD"] {
        std::env::remove_var(name);
    }
    let port = spawn_server(None).await;
    let url = format!("ws://127.0.0.1:{port}/");

    std::env::set_var("http_proxy", format!("http://127.0.0.1:{}", proxy.port));
    assert_eq!(
        source_of(WebSocket::new(), &url).await.unwrap(),
        PROXY_SOURCE
    );

    // An explicit choice wins over the environment.
    let direct = WebSocket::new();
    direct.set_proxy(Proxy::None).unwrap();
    assert_eq!(source_of(direct, &url).await.unwrap(), "127.0.0.1");

    // NO_PROXY names hosts to reach directly; 127.0.0.1 is not exempt unless listed.
    std::env::set_var("NO_PROXY", "example.com, 127.0.0.1");
    assert_eq!(
        source_of(WebSocket::new(), &url).await.unwrap(),
        "127.0.0.1"
    );

    // A redirect from an exempt host ("localhost") to one that is not: the first hop goes
    // direct, the second through the proxy.
    std::env::set_var("NO_PROXY", "localhost");
    let (hop, mut sources) = spawn_redirect(url.clone()).await;
    let ws = WebSocket::new();
    ws.set_max_redirects(1);
    let source = source_of(ws, &format!("ws://localhost:{hop}/")).await;
    assert_eq!(source.unwrap(), PROXY_SOURCE);
    assert_eq!(sources.recv().await.unwrap(), "127.0.0.1");

    // A bad proxy in the environment fails `open` with the variable's name.
    std::env::set_var("http_proxy", "ftp://127.0.0.1:1");
    let err = WebSocket::new().open(&url, &[]).await.unwrap_err();
    assert!(err.to_string().contains("http_proxy"), "{err}");
}
