//! The chat server example as a process, over real sockets: its own page's origin joins
//! the room, another site's page is refused, and a client that is no browser (no
//! `Origin`, like examples/chat_client.rs) still joins. With `--token`, only requests that
//! carry the token (a bearer header, or the query for browsers) join; others get 401.
//!
//! Runs the example built here with cargo, or CHAT_SERVER.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{start_chat_server, with_timeout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The status line the chat server answers an upgrade of `/ws` with, sent with `origin`.
async fn join_status(addr: &str, origin: Option<&str>) -> String {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    status_of(addr, "/ws", &origin).await
}

/// The status line the chat server answers an upgrade of `target` (a path and query) with,
/// sent with the `extra` header lines (each ending in CRLF).
async fn status_of(addr: &str, target: &str, extra: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: L3vSWlgMnhQWv2FldG/QTQ==\r\n{extra}\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = with_timeout(tcp.read(&mut buf)).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    answer.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn the_chat_admits_its_own_page_and_clients_without_origin_but_no_other_site() {
    let (_server, addr) = start_chat_server(&[]);
    let port = addr.rsplit(':').next().unwrap();
    let joined = "HTTP/1.1 101 Switching Protocols";
    let refused = "HTTP/1.1 403 Forbidden";
    for (origin, status) in [
        (Some(format!("http://127.0.0.1:{port}")), joined),
        (Some(format!("http://localhost:{port}")), joined),
        (None, joined),
        (Some("https://evil.example".to_string()), refused),
        (
            Some(format!("http://127.0.0.1.evil.example:{port}")),
            refused,
        ),
        (Some("http://localhost:1".to_string()), refused),
        (Some("null".to_string()), refused),
    ] {
        assert_eq!(
            join_status(&addr, origin.as_deref()).await,
            status,
            "{origin:?}"
        );
    }
}

#[tokio::test]
async fn with_a_token_only_requests_that_carry_it_join() {
    let (_server, addr) = start_chat_server(&["--token", "s3cret"]);
    let joined = "HTTP/1.1 101 Switching Protocols";
    let refused = "HTTP/1.1 401 Unauthorized";
    for (target, extra, status) in [
        ("/ws", "", refused),
        ("/ws", "Authorization: Bearer s3cret\r\n", joined),
        ("/ws", "authorization: bearer s3cret\r\n", joined),
        ("/ws", "Authorization: Bearer wrong\r\n", refused),
        ("/ws", "Authorization: Basic s3cret\r\n", refused),
        ("/ws?token=s3cret", "", joined),
        ("/ws?x=1&token=s3cret", "", joined),
        ("/ws?token=s3cret2", "", refused),
        ("/ws?token=", "", refused),
    ] {
        assert_eq!(
            status_of(&addr, target, extra).await,
            status,
            "{target} {extra:?}"
        );
    }
    // The page itself is not guarded: it is how a browser gets to pass the token.
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut page = Vec::new();
    with_timeout(tcp.read_to_end(&mut page)).await.unwrap();
    assert!(page.starts_with(b"HTTP/1.1 200 OK\r\n"));
}
