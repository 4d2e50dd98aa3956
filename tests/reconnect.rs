//! The reconnecting client, natively, over real sockets: a server stopped and restarted on
//! the same port, a normal close that is not retried, a silent server found by keep-alive,
//! attempts that run out, and the send buffer while disconnected.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{free_addr, with_timeout};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use unisock::{
    CloseEvent, KeepAlive, MsgEvent, ReadyState, Reconnect, WebSocket, WebSocketExt, WebSockets,
};

/// An echo server on `addr` whose sockets live in a registry, so it can be shut down.
struct Server;

impl Server {
    async fn start(addr: SocketAddr) -> common::Server {
        common::Server::start(addr, WebSockets::new(), |_| {
            let ws = WebSocket::new();
            let echo = ws.clone();
            ws.on_message(move |m| {
                let _ = match m {
                    MsgEvent::Text(t) => echo.send_text(&t),
                    MsgEvent::Binary(b) => echo.send_binary(&b),
                };
            });
            Some(ws)
        })
        .await
    }
}

/// What a reconnecting client saw.
struct Seen {
    messages: mpsc::UnboundedReceiver<MsgEvent>,
    opens: mpsc::UnboundedReceiver<()>,
    reconnecting: mpsc::UnboundedReceiver<(u32, Duration)>,
    closes: mpsc::UnboundedReceiver<CloseEvent>,
}

/// A client with `policy` on `url`, its event loop running in the background.
async fn client(url: &str, policy: Reconnect, setup: impl Fn(&WebSocket)) -> (WebSocket, Seen) {
    let ws = WebSocket::new();
    ws.set_reconnect(Some(policy));
    let (mtx, messages) = mpsc::unbounded_channel();
    let (otx, opens) = mpsc::unbounded_channel();
    let (rtx, reconnecting) = mpsc::unbounded_channel();
    let (ctx, closes) = mpsc::unbounded_channel();
    ws.on_message(move |m| {
        let _ = mtx.send(m);
    });
    ws.on_open(move || {
        let _ = otx.send(());
    });
    ws.on_reconnecting(move |attempt, delay| {
        let _ = rtx.send((attempt, delay));
    });
    ws.on_close(move |e| {
        let _ = ctx.send(e);
    });
    setup(&ws);
    ws.open(url, &[]).await.unwrap();
    let reader = ws.clone();
    tokio::spawn(async move { reader.read().await });
    (
        ws,
        Seen {
            messages,
            opens,
            reconnecting,
            closes,
        },
    )
}

fn quick() -> Reconnect {
    Reconnect::default().delays(Duration::from_millis(10), Duration::from_millis(100))
}

async fn expect_text(seen: &mut Seen, want: &str) {
    assert_eq!(
        with_timeout(seen.messages.recv()).await,
        Some(MsgEvent::Text(want.into()))
    );
}

#[tokio::test]
async fn a_restarted_server_is_reconnected_to_and_messages_sent_while_down_arrive_once_in_order() {
    let addr = free_addr().await;
    let server = Server::start(addr).await;
    let (ws, mut seen) = client(&format!("ws://{addr}/"), quick().buffer(64 * 1024), |_| {}).await;
    let id = ws.id().to_string();
    with_timeout(seen.opens.recv()).await.unwrap();
    ws.send_text("before").unwrap();
    expect_text(&mut seen, "before").await;

    server.stop().await;
    let (attempt, _) = with_timeout(seen.reconnecting.recv()).await.unwrap();
    assert_eq!(attempt, 1);
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    for i in 0..20 {
        ws.send_text(&format!("while down {i}")).unwrap();
    }
    assert_eq!(
        ws.buffered_amount(),
        (0..20).map(|i| format!("while down {i}").len()).sum()
    );

    let server = Server::start(addr).await;
    with_timeout(seen.opens.recv()).await.unwrap();
    for i in 0..20 {
        expect_text(&mut seen, &format!("while down {i}")).await;
    }
    assert_eq!(ws.ready_state(), ReadyState::Open);
    assert_eq!(ws.id(), id);
    ws.send_text("after").unwrap();
    expect_text(&mut seen, "after").await;
    // Exactly once: nothing else arrived, and the socket never reported a close.
    assert!(seen.messages.try_recv().is_err());
    assert!(seen.closes.try_recv().is_err());

    ws.close(1000, "done").unwrap();
    assert_eq!(with_timeout(seen.closes.recv()).await.unwrap().code, 1000);
    server.stop().await;
}

#[tokio::test]
async fn a_normal_close_from_the_server_is_not_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = WebSocket::new();
        let closer = ws.clone();
        ws.on_open(move || {
            let _ = closer.close(1000, "bye");
        });
        ws.upgrade(tcp).await.unwrap();
        ws.read().await;
    });
    let (ws, mut seen) = client(&format!("ws://{addr}/"), quick(), |_| {}).await;
    let ev = with_timeout(seen.closes.recv()).await.unwrap();
    assert_eq!((ev.code, ev.reason.as_str()), (1000, "bye"));
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert!(
        seen.reconnecting.try_recv().is_err(),
        "no reconnect after 1000"
    );
}

#[tokio::test]
async fn a_silent_server_is_found_by_keepalive_and_reconnected_to() {
    // A "server" that completes the handshake and then never answers anything.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (conn_tx, mut connections) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                tcp.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .trim()
                .to_string();
            let accept = unisock::protocol::handshake::accept_key(key.as_bytes());
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            tcp.write_all(answer.as_bytes()).await.unwrap();
            let _ = conn_tx.send(tcp); // kept open, never read
        }
    });
    let (ws, mut seen) = client(&format!("ws://{addr}/"), quick(), |ws| {
        ws.set_keepalive(Some(
            KeepAlive::every(Duration::from_millis(100)).timeout(Duration::from_millis(200)),
        ));
    })
    .await;
    let _first = with_timeout(connections.recv()).await.unwrap();
    with_timeout(seen.opens.recv()).await.unwrap();
    // The unanswered ping ends the connection; the client reconnects (a second connection).
    let (attempt, _) = with_timeout(seen.reconnecting.recv()).await.unwrap();
    assert_eq!(attempt, 1);
    let _second = with_timeout(connections.recv()).await.unwrap();
    with_timeout(seen.opens.recv()).await.unwrap();
    assert!(
        seen.closes.try_recv().is_err(),
        "on_close only when closed for good"
    );
    ws.close(1000, "").unwrap();
}

#[tokio::test]
async fn when_the_attempts_run_out_the_socket_closes_for_good() {
    let addr = free_addr().await;
    let server = Server::start(addr).await;
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_errors = errors.clone();
    let (ws, mut seen) = client(
        &format!("ws://{addr}/"),
        quick().max_attempts(Some(3)).buffer(10),
        move |ws| {
            let errors = seen_errors.clone();
            ws.on_error(move |e| errors.lock().unwrap().push(e.to_string()));
        },
    )
    .await;
    with_timeout(seen.opens.recv()).await.unwrap();
    server.stop().await;
    for want in 1..=3 {
        assert_eq!(
            with_timeout(seen.reconnecting.recv()).await.unwrap().0,
            want
        );
        if want == 1 {
            // The buffer is bounded: 10 bytes.
            ws.send_text("0123456789").unwrap();
            assert!(matches!(
                ws.send_text("x"),
                Err(unisock::Error::Capacity {
                    buffered: 10,
                    cap: 10
                })
            ));
        }
    }
    let ev = with_timeout(seen.closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1006);
    assert!(ev.reason.contains("reconnect attempt 3 failed"), "{ev}");
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert!(matches!(ws.send_text("late"), Err(unisock::Error::Closed)));
    assert_eq!(errors.lock().unwrap().len(), 1, "the last attempt's error");
    assert!(seen.reconnecting.try_recv().is_err());
}

#[tokio::test]
async fn a_local_close_is_never_retried_even_while_reconnecting() {
    let addr = free_addr().await;
    let server = Server::start(addr).await;
    let (ws, mut seen) = client(
        &format!("ws://{addr}/"),
        quick().delays(Duration::from_secs(3600), Duration::from_secs(3600)),
        |_| {},
    )
    .await;
    with_timeout(seen.opens.recv()).await.unwrap();
    server.stop().await;
    with_timeout(seen.reconnecting.recv()).await.unwrap();
    // Without a buffer, sends while disconnected fail and say so.
    assert!(matches!(ws.send_text("x"), Err(unisock::Error::NotOpen)));
    ws.close(1000, "").unwrap();
    let ev = with_timeout(seen.closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1001, "the close that started the reconnect");
    assert_eq!(ws.ready_state(), ReadyState::Closed);
}
