//! `wss://` served by unisock: `serve(..).tls(config)` and a registry's
//! `serve(..).tls(config).with_graceful_shutdown(..)`, with certificates a private CA made
//! in the test. A unisock client and a Python `websockets` client echo over it; a client
//! that stays silent is dropped at the handshake timeout without holding up others; over
//! the cap a TLS client is answered 503; and a server that requires client certificates
//! (mTLS) takes the one its CA signed and refuses, with a clear `Error::Tls`, none or
//! another CA's.
//!
//! The Python test needs a Python with `websockets` 15.0.1 (`./build.sh setup` makes
//! target/pyws; or PYWS_PYTHON): missing, it fails under CI or when PYWS_PYTHON names it
//! (as `./build.sh test` does), and is skipped elsewhere.
#![cfg(not(target_arch = "wasm32"))]

mod common;
mod pki;

use std::future::IntoFuture;
use std::time::Duration;

use common::{open_configured, until_len, with_timeout};
use pki::{serve_wss, TestCa};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::version::{TLS12, TLS13};
use unisock::protocol::HandshakeError;
use unisock::{Error, MsgEvent, WebSocket, WebSocketExt, WebSockets};

/// A client socket set to trust `ca` only (TLS 1.2 and 1.3), without a client certificate.
fn trusting(ca: &TestCa) -> WebSocket {
    let ws = WebSocket::new();
    ws.set_tls_config(ca.client_config(&[&TLS13, &TLS12], None));
    ws
}

/// Opens `ws` to `url`, checks that a message comes back, and closes cleanly.
async fn assert_echoes(ws: WebSocket, url: &str) {
    let (ws, mut events) = open_configured(ws, url).await;
    ws.send_text("over TLS").unwrap();
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text("over TLS".into()))
    );
    ws.close(1000, "").unwrap();
    assert!(with_timeout(events.closes.recv()).await.unwrap().was_clean);
}

#[tokio::test]
async fn a_unisock_client_echoes_over_serve_tls() {
    let ca = TestCa::new("unisock test CA");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = unisock::serve(listener, |_| Some(pki::echo_socket())).tls(ca.server_config());
    tokio::spawn(serving.into_future());
    assert_echoes(trusting(&ca), &format!("wss://localhost:{port}/any")).await;

    // A plain ws:// client gets a TLS alert, which is no HTTP answer: it says so.
    let err = with_timeout(WebSocket::new().open(&format!("ws://127.0.0.1:{port}/"), &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Handshake(_)), "{err:?}");
    assert!(err.to_string().contains("did you mean wss://?"), "{err}");
    // A client that does not trust the CA refuses the server's certificate.
    let err = with_timeout(WebSocket::new().open(&format!("wss://localhost:{port}/"), &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn the_registry_serves_wss_and_shuts_down_gracefully() {
    let ca = TestCa::new("unisock test CA");
    let sockets = WebSockets::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        sockets
            .serve(listener, |req| {
                (req.uri().path() == "/ws").then(pki::echo_socket)
            })
            .tls(ca.server_config())
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    let url = format!("wss://localhost:{port}/ws");
    let (client, mut events) = open_configured(trusting(&ca), &url).await;
    until_len(&sockets, 1).await;
    client.send_text("registered").unwrap();
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text("registered".into()))
    );
    assert_eq!(sockets.broadcast_text("to all", None), 1);
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text("to all".into()))
    );

    stop.send(()).unwrap();
    assert_eq!(with_timeout(serving).await.unwrap(), 1);
    let closed = with_timeout(events.closes.recv()).await.unwrap();
    assert_eq!(closed.code, 1001);
    assert!(sockets.is_empty());
    let refused = TcpStream::connect(("127.0.0.1", port)).await;
    assert!(refused.is_err(), "still accepting after the shutdown");
}

#[tokio::test]
async fn a_silent_tls_client_is_dropped_at_the_handshake_timeout_and_holds_up_no_other() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let ca = TestCa::new("unisock test CA");
    let sockets = WebSockets::new();
    sockets.set_handshake_timeout(TIMEOUT);
    let url = serve_wss(&sockets, ca.server_config()).await;
    let port: u16 = url
        .trim_start_matches("wss://localhost:")
        .trim_end_matches("/ws")
        .parse()
        .unwrap();

    // Connected, and sends no ClientHello.
    let started = tokio::time::Instant::now();
    let silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // Meanwhile another client is served from start to end ...
    assert_echoes(trusting(&ca), &url).await;
    // ... while the silent one is still waited for: the server has not closed it.
    let mut probe = [0u8; 1];
    assert!(
        matches!(silent.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the silent connection was answered or closed before another client was served"
    );
    // At the timeout, the server drops it (nothing to say: no TLS to say it over).
    let mut silent = silent;
    let n = with_timeout(tokio::io::AsyncReadExt::read(&mut silent, &mut probe))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "the server sent bytes to a client that sent none");
    assert!(
        started.elapsed() >= TIMEOUT,
        "dropped after {:?}, before the handshake timeout",
        started.elapsed()
    );
    assert!(sockets.is_empty());
}

#[tokio::test]
async fn over_the_cap_a_tls_client_is_answered_503() {
    let ca = TestCa::new("unisock test CA");
    let sockets = WebSockets::new();
    sockets.set_max_connections(Some(1));
    let url = serve_wss(&sockets, ca.server_config()).await;
    let (_first, _events) = open_configured(trusting(&ca), &url).await;
    until_len(&sockets, 1).await;

    match with_timeout(trusting(&ca).open(&url, &[])).await {
        Err(Error::Handshake(e)) => {
            assert!(
                matches!(*e, HandshakeError::BadStatus { code: 503, .. }),
                "{e}"
            );
        }
        other => panic!("expected a 503 over TLS, got {other:?}"),
    }
    assert_eq!(sockets.len(), 1);
}

#[tokio::test]
async fn a_server_requiring_client_certificates_takes_its_own_and_refuses_others() {
    let server_ca = TestCa::new("unisock test server CA");
    let client_ca = TestCa::new("unisock test client CA");
    let stranger_ca = TestCa::new("another CA");
    let sockets = WebSockets::new();
    let url = serve_wss(&sockets, server_ca.server_config_requiring(&client_ca)).await;
    let ours = client_ca.leaf("client-1", true);
    let theirs = stranger_ca.leaf("client-1", true);

    // TLS 1.3 checks the client's certificate after the client's side of the handshake,
    // TLS 1.2 during it: the refusal reaches the client at a different step.
    for version in [&TLS13, &TLS12] {
        let ws = WebSocket::new();
        ws.set_tls_config(server_ca.client_config(&[version], Some(ours.clone())));
        assert_echoes(ws, &url).await;

        let ws = WebSocket::new();
        ws.set_tls_config(server_ca.client_config(&[version], None));
        let err = with_timeout(ws.open(&url, &[])).await.unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{version:?}: {err:?}");
        assert!(
            err.to_string().contains("requires a client certificate"),
            "{version:?}: {err}"
        );

        let ws = WebSocket::new();
        ws.set_tls_config(server_ca.client_config(&[version], Some(theirs.clone())));
        let err = with_timeout(ws.open(&url, &[])).await.unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{version:?}: {err:?}");
        assert!(
            err.to_string().contains("refused our client certificate"),
            "{version:?}: {err}"
        );
    }
    until_len(&sockets, 0).await;
}

/// The Python with `websockets` to run: PYWS_PYTHON, else the venv `./build.sh setup`
/// makes (target/pyws). Missing, it fails the test under CI (`CI=true`) or when
/// PYWS_PYTHON names it, and skips it elsewhere.
fn websockets_python() -> Option<String> {
    let (python, expected) = match std::env::var("PYWS_PYTHON") {
        Ok(python) => (python, true),
        Err(_) => (
            concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyws/bin/python").to_string(),
            std::env::var("CI").as_deref() == Ok("true"),
        ),
    };
    let found = std::process::Command::new(&python)
        .args(["-c", "import websockets.asyncio.client"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if found {
        return Some(python);
    }
    let why = format!(
        "{python} cannot import websockets: run ./build.sh setup, or set PYWS_PYTHON to a \
         Python with websockets==15.0.1"
    );
    assert!(!expected, "{why}");
    eprintln!("skipped: {why}");
    None
}

/// A Python websockets client: connects to argv[1] trusting the CA file argv[2], sends a
/// line, and prints what comes back.
const PYTHON_CLIENT: &str = r#"
import asyncio, ssl, sys
from websockets.asyncio.client import connect

async def main(url, ca):
    context = ssl.create_default_context(cafile=ca)
    async with connect(url, ssl=context, proxy=None) as ws:
        await ws.send("hello from python")
        print(await ws.recv())

asyncio.run(main(sys.argv[1], sys.argv[2]))
"#;

#[tokio::test]
async fn a_python_websockets_client_echoes_over_wss() {
    let Some(python) = websockets_python() else {
        return;
    };
    let ca = TestCa::new("unisock test CA");
    let sockets = WebSockets::new();
    let url = serve_wss(&sockets, ca.server_config()).await;
    let ca_file = ca.write_pem();
    let out = with_timeout(
        tokio::process::Command::new(&python)
            .args(["-c", PYTHON_CLIENT, &url])
            .arg(&ca_file)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let _ = std::fs::remove_file(&ca_file);
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from python\n");
    // And without the CA, Python refuses the server's certificate.
    let other = TestCa::new("another CA").write_pem();
    let out = with_timeout(
        tokio::process::Command::new(&python)
            .args(["-c", PYTHON_CLIENT, &url])
            .arg(&other)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let _ = std::fs::remove_file(&other);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CERTIFICATE_VERIFY_FAILED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until_len(&sockets, 0).await;
}
