//! Any stream: `serve` on a Unix domain socket, and the client handshake over a stream the
//! caller connected (`WebSocketExt::open_over`).
#![cfg(unix)]

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{record, until_len, with_timeout};
use tokio::net::{UnixListener, UnixStream};
use unisock::{MsgEvent, Reconnect, WebSocket, WebSocketExt, WebSockets};

/// A fresh path for a Unix socket in the temp dir, removed when dropped.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("unisock-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Serves an echoing registry on a Unix socket at `path`.
fn serve_echo(sockets: &WebSockets, path: &SocketPath) {
    let listener = UnixListener::bind(&path.0).unwrap();
    let registry = sockets.clone();
    tokio::spawn(async move {
        registry
            .serve(listener, |req| {
                (req.uri().path() == "/ws").then(|| {
                    let ws = WebSocket::new();
                    let echo = ws.clone();
                    ws.on_message(move |msg| {
                        let _ = echo.send(msg);
                    });
                    ws
                })
            })
            .await
    });
}

#[tokio::test]
async fn serve_on_a_unix_socket_and_open_over_a_unix_stream() {
    let path = SocketPath::new("echo");
    let sockets = WebSockets::new();
    serve_echo(&sockets, &path);

    let unix = UnixStream::connect(&path.0).await.unwrap();
    let ws = WebSocket::new();
    let mut events = record(&ws);
    with_timeout(ws.open_over(unix, "ws://localhost/ws", &[]))
        .await
        .unwrap();
    tokio::spawn({
        let ws = ws.clone();
        async move { ws.read().await }
    });
    assert_eq!(ws.url().as_deref(), Some("ws://localhost/ws"));
    until_len(&sockets, 1).await;

    ws.send_text("over a Unix socket").unwrap();
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text("over a Unix socket".into()))
    );
    ws.close(1000, "done").unwrap();
    assert_eq!(with_timeout(events.closes.recv()).await.unwrap().code, 1000);
    until_len(&sockets, 0).await;
}

#[tokio::test]
async fn a_socket_opened_over_a_stream_does_not_reconnect() {
    let path = SocketPath::new("no-reconnect");
    let sockets = WebSockets::new();
    serve_echo(&sockets, &path);

    let unix = UnixStream::connect(&path.0).await.unwrap();
    let ws = WebSocket::new();
    // 1001 is retried by this policy over a connection `open` made; here it cannot be.
    ws.set_reconnect(Some(Reconnect::default()));
    let attempts = Arc::new(AtomicUsize::new(0));
    ws.on_reconnecting({
        let attempts = attempts.clone();
        move |_, _| {
            attempts.fetch_add(1, Ordering::SeqCst);
        }
    });
    with_timeout(ws.open_over(unix, "ws://localhost/ws", &[]))
        .await
        .unwrap();
    until_len(&sockets, 1).await;
    let (shut, closed) =
        with_timeout(async { tokio::join!(sockets.shutdown(), ws.closed()) }).await;
    assert_eq!(shut, 1);
    assert_eq!(closed.code, 1001);
    assert_eq!(attempts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn open_over_refuses_a_bad_url_before_using_the_stream() {
    let (a, _b) = UnixStream::pair().unwrap();
    let err = WebSocket::new()
        .open_over(a, "http://localhost/", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, unisock::Error::InvalidUrl { .. }), "{err}");
}
