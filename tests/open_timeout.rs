//! The open timeout, natively, over real sockets: a server that accepts TCP and never
//! answers makes `open` fail with `Error::Timeout`, and makes each reconnect attempt fail
//! in turn instead of hanging for ever.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::with_timeout;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use unisock::{Error, ReadyState, Reconnect, WebSocket};

const OPEN_TIMEOUT: Duration = Duration::from_millis(300);

/// Accepts connections and holds them without a word. Connections after the first
/// `upgraded` ones are held; those are upgraded and then dropped (1001, going away).
/// Reports each held connection.
async fn silent_server(upgraded: usize) -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, held) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut kept: Vec<TcpStream> = Vec::new();
        let mut accepted = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            accepted += 1;
            if accepted <= upgraded {
                let ws = WebSocket::new();
                // Dropping the only handle after the upgrade closes with 1001.
                let _ = ws.upgrade(tcp).await;
                continue;
            }
            kept.push(tcp);
            let _ = tx.send(());
        }
    });
    (addr, held)
}

#[tokio::test]
async fn an_open_to_a_server_that_never_answers_fails_with_a_timeout() {
    let (addr, mut held) = silent_server(0).await;
    let ws = WebSocket::new();
    ws.set_open_timeout(Some(OPEN_TIMEOUT));
    let started = Instant::now();
    let err = with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(err.to_string().contains("opening handshake"), "{err}");
    assert!(started.elapsed() >= OPEN_TIMEOUT);
    // TCP was accepted: it was the handshake that never came.
    assert_eq!(held.try_recv(), Ok(()));
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    // The socket may be opened again, and fails the same way.
    let err = with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
}

#[tokio::test]
async fn without_an_open_timeout_open_waits() {
    let (addr, mut held) = silent_server(0).await;
    let ws = WebSocket::new();
    ws.set_open_timeout(None);
    let url = format!("ws://{addr}/");
    let open = ws.open(&url, &[]);
    tokio::pin!(open);
    // Still waiting well past the timeout the other test uses.
    let waited = tokio::time::timeout(3 * OPEN_TIMEOUT, &mut open).await;
    assert!(waited.is_err(), "open ended: {waited:?}");
    assert_eq!(held.try_recv(), Ok(()));
}

#[tokio::test]
async fn each_reconnect_attempt_to_a_silent_server_times_out_and_the_next_follows() {
    let (addr, mut held) = silent_server(1).await;
    let ws = WebSocket::new();
    ws.set_open_timeout(Some(OPEN_TIMEOUT));
    ws.set_reconnect(Some(
        Reconnect::default()
            .delays(Duration::from_millis(10), Duration::from_millis(10))
            .max_attempts(Some(2)),
    ));
    let (rtx, mut reconnecting) = mpsc::unbounded_channel();
    ws.on_reconnecting(move |attempt, _| {
        let _ = rtx.send(attempt);
    });
    let (etx, mut errors) = mpsc::unbounded_channel();
    ws.on_error(move |e| {
        let _ = etx.send(e);
    });
    with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap();
    let started = Instant::now();
    let ev = with_timeout(ws.read_until_closed()).await;
    // Two attempts, each held by the server until the open timeout ended it.
    assert_eq!(reconnecting.try_recv(), Ok(1));
    assert_eq!(reconnecting.try_recv(), Ok(2));
    assert_eq!(held.try_recv(), Ok(()));
    assert_eq!(held.try_recv(), Ok(()));
    assert!(started.elapsed() >= 2 * OPEN_TIMEOUT);
    assert_eq!(ev.code, 1006);
    assert!(ev.reason.contains("reconnect attempt 2 failed"), "{ev}");
    assert!(ev.reason.contains("opening handshake"), "{ev}");
    assert!(matches!(errors.try_recv(), Ok(Error::Timeout(_))));
}

/// Runs the event loop until the socket closes for good; the close event.
trait ReadUntilClosed {
    async fn read_until_closed(&self) -> unisock::CloseEvent;
}

impl ReadUntilClosed for WebSocket {
    async fn read_until_closed(&self) -> unisock::CloseEvent {
        self.read().await;
        self.closed().await
    }
}
