//! Hostile peers over real sockets: each ends with a clear error and the right close code,
//! and the server goes on serving other clients.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::net::SocketAddr;

use common::{
    client_frame, open_client, raw_client, read_server_frame, spawn_server, with_timeout,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use unisock::{Limits, MsgEvent, WebSocketExt};

/// A server whose sockets echo text and accept messages of at most 64 KiB.
async fn server() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<unisock::CloseEvent>,
) {
    spawn_server(|ws| {
        ws.set_limits(
            Limits::default()
                .max_message_size(64 * 1024)
                .max_frame_size(32 * 1024),
        );
        let echo = ws.clone();
        ws.on_message(move |m| {
            if let MsgEvent::Text(t) = m {
                let _ = echo.send_text(&t);
            }
        });
    })
    .await
}

/// The server still echoes for a well-behaved client.
async fn still_serving(addr: SocketAddr) {
    let (ws, mut events) = open_client(&format!("ws://{addr}/")).await;
    ws.send_text("still there?").unwrap();
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text("still there?".into()))
    );
}

/// Reads the server's close frame and returns its code.
async fn close_code(tcp: &mut tokio::net::TcpStream) -> u16 {
    let (op, payload) = read_server_frame(tcp).await.expect("a close frame");
    assert_eq!(op, 8, "expected a close frame");
    u16::from_be_bytes([payload[0], payload[1]])
}

#[tokio::test]
async fn a_head_over_the_size_limit_is_answered_431() {
    let (addr, _closes) = server().await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = with_timeout(tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    still_serving(addr).await;
}

#[tokio::test]
async fn a_length_with_the_top_bit_set_is_a_protocol_error() {
    let (addr, mut closes) = server().await;
    let mut tcp = raw_client(addr, "/").await;
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 63).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, 1002);
    assert_eq!(with_timeout(closes.recv()).await.unwrap().code, 1002);
    still_serving(addr).await;
}

#[tokio::test]
async fn a_header_announcing_a_huge_frame_is_refused_with_1009_before_any_payload() {
    let (addr, mut closes) = server().await;
    let mut tcp = raw_client(addr, "/").await;
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 62).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, 1009);
    let ev = with_timeout(closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1009);
    assert!(
        ev.reason.contains("limit") || ev.reason.contains("large"),
        "{ev}"
    );
    still_serving(addr).await;
}

#[tokio::test]
async fn a_frame_that_stops_mid_payload_is_an_abnormal_close() {
    let (addr, mut closes) = server().await;
    let mut tcp = raw_client(addr, "/").await;
    let frame = client_frame(1, &[b'x'; 1000]);
    tcp.write_all(&frame[..500]).await.unwrap();
    drop(tcp);
    let ev = with_timeout(closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1006);
    assert!(!ev.was_clean);
    still_serving(addr).await;
}

#[tokio::test]
async fn a_message_over_the_limit_is_closed_with_1009() {
    let (addr, mut closes) = server().await;
    let mut tcp = raw_client(addr, "/").await;
    // 40 KiB in one frame: over the 32 KiB frame limit.
    let _ = tcp.write_all(&client_frame(2, &vec![0u8; 40 * 1024])).await;
    assert_eq!(close_code(&mut tcp).await, 1009);
    assert_eq!(with_timeout(closes.recv()).await.unwrap().code, 1009);
    still_serving(addr).await;
}

#[tokio::test]
async fn endless_fragments_are_closed_with_1009_at_the_message_limit() {
    let (addr, mut closes) = server().await;
    let mut tcp = raw_client(addr, "/").await;
    // A text message that never ends: FIN clear on every frame, 8 KiB each.
    let mut first = client_frame(1, &[b'a'; 8192]);
    first[0] &= 0x7f;
    tcp.write_all(&first).await.unwrap();
    let code = loop {
        let mut more = client_frame(0, &[b'a'; 8192]);
        more[0] &= 0x7f;
        if tcp.write_all(&more).await.is_err() {
            break close_code(&mut tcp).await;
        }
        // The server answers as soon as the limit is crossed; look without blocking.
        let mut peek = [0u8; 1];
        if let Ok(Ok(1)) =
            tokio::time::timeout(std::time::Duration::ZERO, tcp.peek(&mut peek)).await
        {
            break close_code(&mut tcp).await;
        }
    };
    assert_eq!(code, 1009);
    assert_eq!(with_timeout(closes.recv()).await.unwrap().code, 1009);
    still_serving(addr).await;
}
