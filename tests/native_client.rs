//! A unisock client against a unisock server over real TCP on 127.0.0.1.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{record, spawn_echo_server, with_timeout};
use unisock::{MsgEvent, ReadyState, WebSocket};

#[tokio::test]
async fn text_round_trip_over_tcp() {
    let addr = spawn_echo_server().await;
    let ws = WebSocket::new();
    let mut events = record(&ws);
    with_timeout(ws.open(&format!("ws://{addr}/echo"), &[]))
        .await
        .unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Open);
    assert_eq!(
        ws.url().as_deref(),
        Some(format!("ws://{addr}/echo").as_str())
    );

    let reader = tokio::spawn({
        let ws = ws.clone();
        async move { ws.read().await }
    });
    ws.send_text("Hello, unisock! ✓").unwrap();
    ws.send_binary(&[0, 1, 2, 255]).unwrap();
    let first = with_timeout(events.messages.recv()).await.unwrap();
    assert_eq!(first, MsgEvent::Text("Hello, unisock! ✓".into()));
    let second = with_timeout(events.messages.recv()).await.unwrap();
    assert_eq!(second, MsgEvent::Binary(vec![0, 1, 2, 255]));

    ws.close(1000, "done").unwrap();
    let close = with_timeout(events.closes.recv()).await.unwrap();
    assert!(close.was_clean, "{close}");
    assert_eq!(close.code, 1000);
    assert_eq!(close.reason, "done");
    with_timeout(reader).await.unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert!(matches!(ws.send_text("late"), Err(unisock::Error::Closed)));
}

#[tokio::test]
async fn open_to_a_closed_port_fails() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let ws = WebSocket::new();
    let err = with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, unisock::Error::Io(_)), "{err}");
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
}

#[tokio::test]
async fn open_refuses_other_schemes() {
    let ws = WebSocket::new();
    let err = ws.open("http://127.0.0.1:1/", &[]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid WebSocket URL 'http://127.0.0.1:1/': 'http' is not a WebSocket scheme: use ws:// or wss://"
    );
}
