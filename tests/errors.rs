//! Errors that say what went wrong (issue #23): subprotocol names checked before anything
//! is sent, URL errors with the real reason, a refused handshake's status and body,
//! connect and TLS errors that name the address, and the 101 response's headers.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::time::Duration;

use common::with_timeout;
use tokio::net::TcpListener;
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
