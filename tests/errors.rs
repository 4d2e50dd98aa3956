//! Errors that say what went wrong (issue #23): subprotocol names checked before anything
//! is sent, URL errors with the real reason, a refused handshake's status and body,
//! connect and TLS errors that name the address, and the 101 response's headers.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::with_timeout;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use unisock::{Error, WebSocket, WebSocketExt};

// --- 1. Subprotocol names ---------------------------------------------------------------

#[tokio::test]
async fn bad_subprotocol_names_are_refused_before_connecting() {
    // A std listener in non-blocking mode: after `open` returned, a connection the client
    // made would already wait in its accept queue (loopback connects synchronously).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let cases: [(&[&str], &str); 5] = [
        (
            &["chat.v2\r\nX-Injected: yes"],
            r#"invalid subprotocol name "chat.v2\r\nX-Injected: yes": it contains a CR or LF"#,
        ),
        (
            &["x,chat.v2"],
            r#"invalid subprotocol name "x,chat.v2": it contains ',' (a separator)"#,
        ),
        (
            &["chat", "chat"],
            r#"invalid subprotocol name "chat": it is offered twice"#,
        ),
        (&[""], r#"invalid subprotocol name "": it is empty"#),
        (
            &["a b"],
            r#"invalid subprotocol name "a b": it contains ' ' (a separator)"#,
        ),
    ];
    for (protocols, message) in cases {
        let ws = WebSocket::new();
        ws.set_open_timeout(Some(Duration::from_secs(2)));
        let err = with_timeout(ws.open(&url, protocols)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidProtocol { .. }), "{err:?}");
        assert_eq!(err.to_string(), message);
        assert_eq!(
            listener.accept().map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "{protocols:?} connected"
        );
    }
}

#[tokio::test]
async fn a_server_cannot_select_a_bad_or_unoffered_subprotocol() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut pending = WebSocket::new().upgrade_pending(tcp).await.unwrap();
        let bad = pending.set_protocol("chat\r\nx-evil: 1").unwrap_err();
        let unoffered = pending.set_protocol("superchat").unwrap_err();
        pending.set_protocol("chat").unwrap();
        let ws = pending.commit().await.unwrap();
        (bad.to_string(), unoffered.to_string(), ws.protocol())
    });
    let ws = WebSocket::new();
    with_timeout(ws.open(&format!("ws://{addr}/"), &["chat"]))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), "chat");
    let (bad, unoffered, chosen) = with_timeout(server).await.unwrap();
    assert_eq!(
        bad,
        r#"invalid subprotocol name "chat\r\nx-evil: 1": it contains a CR or LF"#
    );
    assert_eq!(
        unoffered,
        r#"invalid subprotocol name "superchat": the client did not offer it"#
    );
    assert_eq!(chosen, "chat");
}

// --- 2. URLs ----------------------------------------------------------------------------

#[tokio::test]
async fn invalid_urls_say_why() {
    let cases = [
        ("ws://", "the host is empty"),
        (
            "ws://exa mple.com/",
            "the host contains ' ', which is not allowed",
        ),
        (
            "ws://127.0.0.1:99999/",
            "port 99999 is out of range (at most 65535)",
        ),
        ("ws://127.0.0.1:8o/", "the port '8o' is not a number"),
        (
            "http://127.0.0.1:1/",
            "'http' is not a WebSocket scheme: use ws:// or wss://",
        ),
        (
            "/chat",
            "it is relative: use an absolute ws:// or wss:// URL",
        ),
        ("", "it is empty"),
        (
            "ws://127.0.0.1:1/#top",
            "a WebSocket URL may not have a fragment ('#top')",
        ),
        ("ws://[::1/", "the host is not a valid IPv6 address"),
    ];
    for (url, reason) in cases {
        let err = WebSocket::new().open(url, &[]).await.unwrap_err();
        match &err {
            Error::InvalidUrl {
                url: given,
                reason: why,
            } => {
                assert_eq!((&**given, &**why), (url, reason));
            }
            other => panic!("{url}: {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!("invalid WebSocket URL '{url}': {reason}")
        );
    }
}

// --- 3. A refused handshake -------------------------------------------------------------

/// Reads an HTTP head from `tcp` (up to the blank line).
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if tcp.read(&mut b).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A raw HTTP server that reads one request head per connection and answers `answer`,
/// then holds the connection open until the test ends (a keep-alive server).
async fn answering_server(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut tcp, _)) = listener.accept().await {
            read_head(&mut tcp).await;
            let _ = tcp.write_all(answer).await;
            held.push(tcp);
        }
    });
    addr
}

/// Opens `ws://addr/` (5 s open timeout) and returns the handshake error.
async fn refused(addr: SocketAddr) -> unisock::protocol::HandshakeError {
    let ws = WebSocket::new();
    ws.set_open_timeout(Some(Duration::from_secs(5)));
    match with_timeout(ws.open(&format!("ws://{addr}/"), &[])).await {
        Err(Error::Handshake(e)) => *e,
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refusal_with_content_length_gives_status_and_body() {
    // The server keeps the connection open: Content-Length says where the body ends.
    let addr = answering_server(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 19\r\n\r\nmissing subprotocol",
    )
    .await;
    let e = refused(addr).await;
    assert_eq!(e.status().as_u16(), 400);
    assert_eq!(e.response_body(), Some(&b"missing subprotocol"[..]));
    assert_eq!(
        e.to_string(),
        "Bad HTTP response code; expected '101 - Switching Protocols' but got '400 - Bad Request': missing subprotocol"
    );
}

#[tokio::test]
async fn a_refusal_without_content_length_reads_the_body_to_eof() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        read_head(&mut tcp).await;
        tcp.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\nno \x1b[31mentry\r\n")
            .await
            .unwrap();
        tcp.write_all(b"for you").await.unwrap();
        // Dropping `tcp` closes: the end of a body without Content-Length.
    });
    let e = refused(addr).await;
    assert_eq!(e.status().as_u16(), 403);
    assert_eq!(
        e.to_string(),
        r"Bad HTTP response code; expected '101 - Switching Protocols' but got '403 - Forbidden': no \u{1b}[31mentry\r\nfor you"
    );
}

#[tokio::test]
async fn a_refusal_that_stays_open_without_a_length_does_not_hang() {
    // No Content-Length and the connection stays open: the body is what arrives within
    // the short budget, not an open timeout.
    let addr = answering_server(b"HTTP/1.1 500 Internal Server Error\r\n\r\nboom").await;
    let e = refused(addr).await;
    assert_eq!(e.status().as_u16(), 500);
    assert!(
        e.to_string()
            .ends_with("'500 - Internal Server Error': boom"),
        "{e}"
    );
}

#[tokio::test]
async fn a_long_refusal_body_is_cut() {
    let body = "x".repeat(2000);
    let answer = format!(
        "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let addr = answering_server(answer.leak().as_bytes()).await;
    let e = refused(addr).await;
    let message = e.to_string();
    assert!(
        message.ends_with(&format!(": {}…", "x".repeat(512))),
        "{message}"
    );
    assert_eq!(e.response_body().map(<[u8]>::len), Some(512));
}

// --- 4. Connect errors ------------------------------------------------------------------

#[tokio::test]
async fn a_refused_connection_names_the_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = with_timeout(WebSocket::new().open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap_err();
    common::assert_connection_refused(&err, &format!("I/O error: could not connect to {addr}: "));
    assert!(err.to_string().starts_with("I/O error: "), "{err}");
}

// --- 5. TLS to a plain server -----------------------------------------------------------

/// Opens `wss://addr/` and returns the error's message, which must be a TLS error.
async fn tls_error(addr: SocketAddr) -> String {
    let err = with_timeout(WebSocket::new().open(&format!("wss://{addr}/"), &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    err.to_string()
}

#[tokio::test]
async fn tls_to_a_plain_http_server_says_so() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 64];
        let _ = tcp.read(&mut hello).await;
        let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let _ = tcp.read(&mut hello).await;
    });
    assert_eq!(
        tls_error(addr).await,
        format!("TLS error: handshake with {addr} failed: the server does not speak TLS (did you mean ws://?)")
    );
}

#[tokio::test]
async fn tls_to_a_server_that_closes_says_so() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        // Read the whole ClientHello first: closing with unread data would reset instead.
        let mut record = [0u8; 5];
        tcp.read_exact(&mut record).await.unwrap();
        let len = u16::from_be_bytes([record[3], record[4]]) as usize;
        tcp.read_exact(&mut vec![0; len]).await.unwrap();
    });
    assert_eq!(
        tls_error(addr).await,
        format!("TLS error: handshake with {addr} failed: the server closed the connection mid-handshake (does it speak TLS? did you mean ws://?)")
    );
}

#[tokio::test]
async fn tls_to_a_unisock_plain_server_says_so() {
    let addr = common::spawn_echo_server().await;
    assert_eq!(
        tls_error(addr).await,
        format!("TLS error: handshake with {addr} failed: the server does not speak TLS (did you mean ws://?)")
    );
}

// --- 6. The 101 response's headers ------------------------------------------------------

#[tokio::test]
async fn the_101_headers_are_readable_and_follow_a_reconnect() {
    // Each connection's 101 names its number; the server drops the first with 1001
    // (going away), which a reconnecting client retries.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for n in 1.. {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut pending = WebSocket::new().upgrade_pending(tcp).await.unwrap();
            pending
                .response_mut()
                .headers_mut()
                .insert("x-connection", n.to_string().parse().unwrap());
            let ws = pending.commit().await.unwrap();
            if n == 1 {
                ws.close(1001, "restarting").unwrap();
            }
            tokio::spawn(async move { ws.read().await });
        }
    });

    let ws = WebSocket::new();
    assert_eq!(ws.response_headers(), None);
    ws.set_reconnect(Some(
        unisock::Reconnect::default().delays(Duration::from_millis(10), Duration::from_millis(50)),
    ));
    let (opened, mut opens) = tokio::sync::mpsc::unbounded_channel();
    ws.on_open(move || {
        let _ = opened.send(());
    });
    with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap();
    let headers = ws.response_headers().unwrap();
    assert_eq!(headers["x-connection"], "1");
    assert_eq!(headers["upgrade"], "websocket");

    tokio::spawn({
        let ws = ws.clone();
        async move { ws.read().await }
    });
    with_timeout(opens.recv()).await.unwrap(); // the first connection
    with_timeout(opens.recv()).await.unwrap(); // the reconnect
    assert_eq!(ws.response_headers().unwrap()["x-connection"], "2");
    ws.close(1000, "").unwrap();
}
