//! Server-side upgrades over real sockets: handshake failures answered with the right
//! status, origins, subprotocols, uncommitted upgrades, raw peers.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{record, with_timeout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use unisock::{Error, MsgEvent, WebSocket, WebSocketExt};

/// A server that upgrades one connection with `ws` and reports the result.
async fn one_upgrade(
    ws: WebSocket,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<unisock::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        ws.upgrade(tcp).await?;
        ws.read().await;
        Ok(())
    });
    (addr, task)
}

/// Sends a raw request head and returns the whole response the server sent before closing.
async fn raw_request(addr: std::net::SocketAddr, head: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    with_timeout(tcp.read_to_end(&mut out)).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

const GOOD_HEAD: &str = "GET /chat?room=1 HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: L3vSWlgMnhQWv2FldG/QTQ==\r\n";

#[tokio::test]
async fn a_raw_client_gets_the_101_with_the_accept_key() {
    let ws = WebSocket::new();
    let (addr, _task) = one_upgrade(ws.clone()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("{GOOD_HEAD}\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = with_timeout(tcp.read(&mut buf)).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: 2/qvz8hucx3k4cxvmrjwgd42aoe="),
        "{head}"
    );
    assert_eq!(ws.url().as_deref(), Some("/chat?room=1"));
}

#[tokio::test]
async fn a_wrong_version_is_answered_426_with_the_supported_version() {
    let (addr, task) = one_upgrade(WebSocket::new()).await;
    let head = GOOD_HEAD.replace("Version: 13", "Version: 12");
    let response = raw_request(addr, &format!("{head}\r\n")).await;
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{response}"
    );
    let err = with_timeout(task).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Handshake(_)), "{err}");
}

#[tokio::test]
async fn a_missing_key_is_answered_400() {
    let (addr, task) = one_upgrade(WebSocket::new()).await;
    let head = GOOD_HEAD.replace("Sec-WebSocket-Key: L3vSWlgMnhQWv2FldG/QTQ==\r\n", "");
    let response = raw_request(addr, &format!("{head}\r\n")).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("Sec-WebSocket-Key"), "{response}");
    assert!(with_timeout(task).await.unwrap().is_err());
}

#[tokio::test]
async fn an_origin_not_allowed_is_answered_403() {
    let ws = WebSocket::new();
    ws.set_allowed_origins(Some(vec!["http://example.*".into()]));
    let (addr, task) = one_upgrade(ws).await;
    let response = raw_request(addr, &format!("{GOOD_HEAD}Origin: http://evil.org\r\n\r\n")).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(with_timeout(task).await.unwrap().is_err());
}

#[tokio::test]
async fn an_allowed_origin_glob_is_upgraded() {
    let ws = WebSocket::new();
    ws.set_allowed_origins(Some(vec![
        "http://localhost:8069".into(),
        "http://example.*".into(),
    ]));
    let (addr, _task) = one_upgrade(ws).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("{GOOD_HEAD}Origin: http://example.com\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = with_timeout(tcp.read(&mut buf)).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
}

/// The status line a server allowing `allowed` answers a request from `origin` with.
async fn status_for_origin(allowed: &[&str], origin: &str) -> String {
    let ws = WebSocket::new();
    ws.set_allowed_origins(Some(allowed.iter().map(|o| o.to_string()).collect()));
    let (addr, _task) = one_upgrade(ws).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("{GOOD_HEAD}Origin: {origin}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = with_timeout(tcp.read(&mut buf)).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    head.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_cross_site_origin_is_refused_even_when_a_glob_once_matched_it() {
    let allowed = ["http://example.*", "https://*.example.com"];
    for (origin, status) in [
        ("http://example.evil.org", "HTTP/1.1 403 Forbidden"),
        ("https://example.com.evil.org", "HTTP/1.1 403 Forbidden"),
        ("https://evilexample.com", "HTTP/1.1 403 Forbidden"),
        ("null", "HTTP/1.1 403 Forbidden"),
        ("http://example.org", "HTTP/1.1 101 Switching Protocols"),
        (
            "https://chat.example.com",
            "HTTP/1.1 101 Switching Protocols",
        ),
    ] {
        assert_eq!(
            status_for_origin(&allowed, origin).await,
            status,
            "{origin}"
        );
    }
}

#[tokio::test]
async fn uncommitted_upgrade_selects_a_subprotocol_and_adds_headers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = WebSocket::new();
        let echo = ws.clone();
        ws.on_message(move |m| {
            if let MsgEvent::Text(t) = m {
                let _ = echo.send_text(&t);
            }
        });
        let mut pending = ws.upgrade_pending(tcp).await.unwrap();
        assert_eq!(pending.offered_protocols(), vec!["superchat", "chat"]);
        pending.set_protocol("chat").unwrap();
        pending
            .response_mut()
            .headers_mut()
            .insert("set-cookie", "session=42".parse().unwrap());
        let ws = pending.commit().await.unwrap();
        assert_eq!(ws.protocol(), "chat");
        ws.read().await;
    });
    let client = WebSocket::new();
    let mut events = record(&client);
    with_timeout(client.open(&format!("ws://{addr}/"), &["superchat", "chat"]))
        .await
        .unwrap();
    assert_eq!(client.protocol(), "chat");
    tokio::spawn({
        let client = client.clone();
        async move { client.read().await }
    });
    client.send_text("sub").unwrap();
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text("sub".into()))
    );
    client.close(1000, "").unwrap();
    let close = with_timeout(events.closes.recv()).await.unwrap();
    assert!(close.was_clean);
    with_timeout(server).await.unwrap();
}
