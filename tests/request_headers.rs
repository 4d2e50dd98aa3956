//! Headers a client adds to its opening handshake (`WebSocketExt::set_request_headers`):
//! sent on `open` and on every reconnect, and refused up front when the protocol owns them.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::time::Duration;

use common::with_timeout;
use http::{HeaderMap, HeaderValue};
use unisock::{Error, Reconnect, WebSocket, WebSocketExt};

/// A server that records each upgrade request's `Authorization` and `Cookie` headers,
/// and drops the first connection without a close frame (so a client reconnects).
async fn spawn_recording_server() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for n in 0.. {
            let (tcp, _) = unisock::server::accept(&listener).await;
            let ws = WebSocket::new();
            let Ok(pending) = ws.upgrade_pending(tcp).await else {
                continue;
            };
            let seen = {
                let headers = pending.request().headers();
                let header = |name: &str| {
                    let value = headers.get(name);
                    value.map_or("", |v| v.to_str().unwrap()).to_string()
                };
                (header("authorization"), header("cookie"))
            };
            let _ = tx.send(seen);
            let Ok(ws) = pending.commit().await else {
                continue;
            };
            if n == 0 {
                drop(ws); // gone without a close frame: the client sees 1006 and reconnects
            } else {
                tokio::spawn(async move { ws.read().await });
            }
        }
    });
    (url, rx)
}

#[tokio::test]
async fn request_headers_are_sent_on_open_and_on_every_reconnect() {
    let (url, mut requests) = spawn_recording_server().await;
    let ws = WebSocket::new();
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
    headers.insert("cookie", HeaderValue::from_static("session=abc"));
    ws.set_request_headers(headers).unwrap();
    ws.set_reconnect(Some(
        Reconnect::default().delays(Duration::from_millis(10), Duration::from_millis(50)),
    ));
    let (reconnected_tx, mut reconnected) = tokio::sync::mpsc::unbounded_channel();
    ws.on_open(move || {
        let _ = reconnected_tx.send(());
    });
    with_timeout(ws.open(&url, &[])).await.unwrap();
    tokio::spawn({
        let ws = ws.clone();
        async move { ws.read().await }
    });
    let expected = ("Bearer s3cret".to_string(), "session=abc".to_string());
    assert_eq!(with_timeout(requests.recv()).await.unwrap(), expected);
    with_timeout(reconnected.recv()).await.unwrap(); // the first open
    with_timeout(reconnected.recv()).await.unwrap(); // after the reconnect
    assert_eq!(with_timeout(requests.recv()).await.unwrap(), expected);
    ws.close(1000, "").unwrap();
}

#[tokio::test]
async fn headers_the_protocol_owns_are_refused() {
    let ws = WebSocket::new();
    for name in [
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "content-length",
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::HeaderName::from_static(name),
            HeaderValue::from_static("x"),
        );
        let err = ws.set_request_headers(headers).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidHeader { name: n, .. } if n.eq_ignore_ascii_case(name)),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

/// A plain HTTP server that answers every request with `status` and `Location: location`
/// (`{port}` in it is replaced by `target`'s port); returns its address.
async fn spawn_redirecting_server(status: u16, location: String) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = unisock::server::accept(&listener).await;
            let location = location.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && tcp.read(&mut byte).await.unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let answer = format!(
                    "HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = tcp.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// Redirects are followed only when asked, up to the number of hops allowed. A hop to
/// another origin (here: another port) does not carry the request headers.
#[tokio::test]
async fn redirects_are_followed_when_asked_without_headers_to_another_origin() {
    let (target, mut requests) = spawn_recording_server().await;
    let hop = spawn_redirecting_server(302, target.clone()).await;
    let url = format!("ws://{hop}/old");

    let err = with_timeout(WebSocket::new().open(&url, &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("302"), "{err}");

    let ws = WebSocket::new();
    ws.set_max_redirects(1);
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
    ws.set_request_headers(headers).unwrap();
    with_timeout(ws.open(&url, &[])).await.unwrap();
    assert_eq!(
        with_timeout(requests.recv()).await.unwrap(),
        (String::new(), String::new()),
        "no credentials sent to another origin"
    );

    // Two hops where one is allowed: the second 302 is the error.
    let twice = spawn_redirecting_server(307, format!("ws://{hop}/old")).await;
    let ws = WebSocket::new();
    ws.set_max_redirects(1);
    let err = with_timeout(ws.open(&format!("ws://{twice}/"), &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("302"), "{err}");
}

/// A redirect on the same origin (a relative `Location`) keeps the request headers.
#[tokio::test]
async fn a_redirect_on_the_same_origin_keeps_the_headers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/old", listener.local_addr().unwrap());
    let (tx, mut requests) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        // First connection: 308 to /new on this server; second: upgrade and record.
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && tcp.read(&mut byte).await.unwrap() == 1 {
            head.push(byte[0]);
        }
        tcp.write_all(b"HTTP/1.1 308 Moved\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let pending = WebSocket::new().upgrade_pending(tcp).await.unwrap();
        let seen = (
            pending.request().uri().path().to_string(),
            pending.request().headers().get("authorization").cloned(),
        );
        let _ = tx.send(seen);
        let ws = pending.commit().await.unwrap();
        ws.read().await;
    });
    let ws = WebSocket::new();
    ws.set_max_redirects(3);
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
    ws.set_request_headers(headers).unwrap();
    with_timeout(ws.open(&url, &[])).await.unwrap();
    let (path, auth) = with_timeout(requests.recv()).await.unwrap();
    assert_eq!(path, "/new");
    assert_eq!(auth, Some(HeaderValue::from_static("Bearer s3cret")));
}
