//! The WebSockets registry: register on upgrade, removal on close (the original leaked),
//! get, broadcast, shutdown with 1001.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{open_client, record, serve_registry, until_len, with_timeout};
use tokio::net::TcpListener;
use unisock::{MsgEvent, WebSocket, WebSockets};

#[tokio::test]
async fn broadcast_reaches_every_client_and_closed_sockets_are_removed() {
    let sockets = WebSockets::new();
    let url = serve_registry(&sockets).await;
    let (a, mut a_events) = open_client(&url).await;
    let (_b, mut b_events) = open_client(&url).await;
    until_len(&sockets, 2).await;

    assert_eq!(sockets.broadcast_text("to all", None), 2);
    assert_eq!(
        with_timeout(a_events.messages.recv()).await,
        Some(MsgEvent::Text("to all".into()))
    );
    assert_eq!(
        with_timeout(b_events.messages.recv()).await,
        Some(MsgEvent::Text("to all".into()))
    );

    let ids = sockets.ids();
    let first = ids[0].as_str();
    assert!(sockets.get(first).is_some());
    assert_eq!(
        sockets.broadcast_binary(&[7, 7], Some(&[first, "unisock:nope"])),
        1
    );

    a.close(1000, "leaving").unwrap();
    assert!(
        with_timeout(a_events.closes.recv())
            .await
            .unwrap()
            .was_clean
    );
    until_len(&sockets, 1).await;
}

#[tokio::test]
async fn broadcast_sends_a_msg_event_as_text_or_binary_to_all_or_some() {
    let sockets = WebSockets::new();
    let url = serve_registry(&sockets).await;
    let (_a, mut a_events) = open_client(&url).await;
    until_len(&sockets, 1).await;
    let a_id = sockets.ids().remove(0);
    let (_b, mut b_events) = open_client(&url).await;
    until_len(&sockets, 2).await;
    let b_id = sockets.ids().into_iter().find(|id| *id != a_id).unwrap();

    let all = MsgEvent::Text("to all".into());
    assert_eq!(sockets.broadcast(all.clone(), None), 2);
    let binary = MsgEvent::Binary(vec![0, 255]);
    assert_eq!(
        sockets.broadcast(binary.clone(), Some(&[&a_id, "unisock:nope"])),
        1
    );
    let only_b = MsgEvent::Text("only b".into());
    assert_eq!(sockets.broadcast(only_b.clone(), Some(&[&b_id])), 1);
    let end = MsgEvent::Binary(b"end".to_vec());
    assert_eq!(sockets.broadcast(end.clone(), None), 2);

    // One connection keeps the order, so each client's messages show what it was sent.
    for (events, expected) in [
        (&mut a_events, [&all, &binary, &end]),
        (&mut b_events, [&all, &only_b, &end]),
    ] {
        for msg in expected {
            assert_eq!(
                with_timeout(events.messages.recv()).await.as_ref(),
                Some(msg)
            );
        }
    }
}

#[tokio::test]
async fn shutdown_closes_everyone_with_1001_and_empties_the_registry() {
    let sockets = WebSockets::new();
    let url = serve_registry(&sockets).await;
    let (_a, mut a_events) = open_client(&url).await;
    let (_b, mut b_events) = open_client(&url).await;
    until_len(&sockets, 2).await;

    assert_eq!(with_timeout(sockets.shutdown()).await, 2);
    assert!(sockets.is_empty());
    for events in [&mut a_events, &mut b_events] {
        let close = with_timeout(events.closes.recv()).await.unwrap();
        assert_eq!(close.code, 1001);
        assert_eq!(close.reason, "Server shutting down...");
        assert!(close.was_clean);
    }
}

#[tokio::test]
async fn a_route_that_returns_none_is_a_404() {
    let sockets = WebSockets::new();
    let url = serve_registry(&sockets).await.replace("/ws", "/nothing");
    let err = with_timeout(WebSocket::new().open(&url, &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test]
async fn the_on_upgrade_hook_and_read_timeout_apply_to_serviced_sockets() {
    let sockets = WebSockets::new();
    sockets.set_read_timeout(Some(std::time::Duration::from_millis(300)));
    sockets.on_upgrade(|pending| {
        if pending.offered_protocols().iter().any(|p| p == "chat") {
            pending.set_protocol("chat").unwrap();
        }
    });
    let url = serve_registry(&sockets).await;
    let ws = WebSocket::new();
    let mut events = record(&ws);
    with_timeout(ws.open(&url, &["other", "chat"]))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), "chat");
    tokio::spawn({
        let ws = ws.clone();
        async move { ws.read().await }
    });
    // The client stays silent: the server's read timeout closes it with 1001.
    let close = with_timeout(events.closes.recv()).await.unwrap();
    assert_eq!(close.code, 1001);
    until_len(&sockets, 0).await;
}

#[tokio::test]
async fn a_bad_handshake_in_service_is_answered_and_not_registered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sockets = WebSockets::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = sockets.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        registry.service(WebSocket::new(), tcp).await
    });
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    with_timeout(tcp.read_to_end(&mut answer)).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("Absent 'Sec-WebSocket-Version' HTTP header"),
        "{answer}"
    );
    let err = with_timeout(server).await.unwrap().unwrap_err();
    assert!(matches!(err, unisock::Error::Handshake(_)), "{err}");
    assert!(sockets.is_empty());
}

#[tokio::test]
async fn no_message_queued_before_shutdown_is_lost() {
    let sockets = WebSockets::new();
    let url = serve_registry(&sockets).await;
    let (_a, mut events) = open_client(&url).await;
    until_len(&sockets, 1).await;
    for i in 0..500 {
        assert_eq!(sockets.broadcast_text(&format!("m{i}"), None), 1);
    }
    assert_eq!(with_timeout(sockets.shutdown()).await, 1);
    for i in 0..500 {
        let msg = with_timeout(events.messages.recv()).await;
        assert_eq!(msg, Some(MsgEvent::Text(format!("m{i}"))));
    }
    let close = with_timeout(events.closes.recv()).await.unwrap();
    assert_eq!(close.code, 1001);
}
