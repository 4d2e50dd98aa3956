//! Server plumbing: sockets a framework upgraded join a registry (`WebSockets::run`), the
//! registry's handshake timeout governs `serve`, and `serve` stops gracefully.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::time::Duration;

use std::future::IntoFuture;

use common::{open_client, until_len, with_timeout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use unisock::protocol::handshake;
use unisock::{MsgEvent, WebSocket, WebSocketExt, WebSockets};

/// Plays a framework: reads the request head, answers 101 itself, and hands the stream
/// to `attach_upgraded`, then to the registry.
async fn framework_server(sockets: WebSockets) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let request = loop {
            let mut byte = [0u8; 1];
            assert_eq!(tcp.read(&mut byte).await.unwrap(), 1);
            head.push(byte[0]);
            if let Some((request, _)) = handshake::parse_request(&head).unwrap() {
                break request;
            }
        };
        let accept = handshake::validate_request(&request, None).unwrap();
        let response = handshake::upgrade_response(&accept.accept);
        tcp.write_all(&handshake::encode_response(&response))
            .await
            .unwrap();
        let ws = WebSocket::new();
        ws.attach_upgraded(tcp, &request, None).unwrap();
        sockets.run(ws).await;
    });
    format!("ws://{addr}/ws")
}

#[tokio::test]
async fn a_socket_a_framework_upgraded_joins_the_registry() {
    let sockets = WebSockets::new();
    let url = framework_server(sockets.clone()).await;
    let (client, mut events) = open_client(&url).await;
    until_len(&sockets, 1).await;
    assert_eq!(sockets.broadcast_text("to the attached", None), 1);
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text("to the attached".into()))
    );
    client.close(1000, "").unwrap();
    until_len(&sockets, 0).await;
}

#[tokio::test]
async fn serve_answers_408_after_the_registry_handshake_timeout() {
    let sockets = WebSockets::new();
    sockets.set_handshake_timeout(Duration::from_millis(100));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { sockets.serve(listener, |_| Some(WebSocket::new())).await });

    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // Well under the 10 s default `serve` used whatever was set.
    tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut answer))
        .await
        .expect("no answer within 3 s: the registry's timeout was not used")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn serve_with_graceful_shutdown_stops_accepting_then_closes_the_sockets() {
    let sockets = WebSockets::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        sockets
            .serve(listener, |_| Some(WebSocket::new()))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    let (client, mut events) = open_client(&format!("ws://{addr}/ws")).await;
    until_len(&sockets, 1).await;

    stop.send(()).unwrap();
    assert_eq!(with_timeout(serving).await.unwrap(), 1);
    let closed = with_timeout(events.closes.recv()).await.unwrap();
    assert_eq!(closed.code, 1001);
    assert!(sockets.is_empty());
    assert_eq!(client.ready_state(), unisock::ReadyState::Closed);
    // The listener is gone with the loop: nothing accepts any more.
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "still accepting after the shutdown");
}
