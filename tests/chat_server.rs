//! The chat server example as a process, over real sockets: its own page's origin joins
//! the room, another site's page is refused, and a client that is no browser (no
//! `Origin`, like examples/chat_client.rs) still joins.
//!
//! Runs the example built here with cargo, or CHAT_SERVER.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{with_timeout, Process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The chat server binary: CHAT_SERVER, or the example built here.
fn chat_server_bin() -> String {
    common::example_bin("chat_server", &[], "CHAT_SERVER")
}

/// Starts the chat server on a free port of 127.0.0.1; returns it and its `IP:PORT`.
fn start_chat_server() -> (Process, String) {
    let www = concat!(env!("CARGO_MANIFEST_DIR"), "/www");
    let mut child = Command::new(chat_server_bin())
        .args(["127.0.0.1:0", www])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let process = Process(child);
    let rx = common::announced_address(stdout);
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("chat server did not start");
    (process, addr)
}

/// The status line the chat server answers an upgrade of `/ws` with, sent with `origin`.
async fn join_status(addr: &str, origin: Option<&str>) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: L3vSWlgMnhQWv2FldG/QTQ==\r\n{origin}\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = with_timeout(tcp.read(&mut buf)).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    answer.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn the_chat_admits_its_own_page_and_clients_without_origin_but_no_other_site() {
    let (_server, addr) = start_chat_server();
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
