//! An axum router whose handler returns a unisock WebSocket, exercised by a unisock client.
#![cfg(all(feature = "axum", not(target_arch = "wasm32")))]

mod common;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use common::{record, with_timeout};
use unisock::axum::WebSocketUpgrade;
use unisock::{MsgEvent, WebSocket, WebSockets};

async fn chat(upgrade: WebSocketUpgrade, State(sockets): State<WebSockets>) -> Response {
    let ws = WebSocket::new();
    let room = sockets.clone();
    let id = ws.id().to_string();
    ws.on_message(move |msg| {
        if let MsgEvent::Text(t) = msg {
            room.broadcast_text(&format!("{id} says, '{t}'"), None);
        }
    });
    let chosen = upgrade
        .offered_protocols()
        .into_iter()
        .find(|p| p == "chat");
    upgrade.accept_with_protocol(ws, &sockets, chosen.as_deref())
}

#[tokio::test]
async fn an_axum_handler_returns_a_websocket() {
    let sockets = WebSockets::new();
    let app = Router::new()
        .route("/ws", get(chat))
        .with_state(sockets.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let ws = WebSocket::new();
    let mut events = record(&ws);
    with_timeout(ws.open(&format!("ws://{addr}/ws"), &["chat"]))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), "chat");
    tokio::spawn({
        let ws = ws.clone();
        async move { ws.read().await }
    });
    ws.send_text("hello axum").unwrap();
    let got = with_timeout(events.messages.recv()).await.unwrap();
    let text = got.txt().unwrap().to_string();
    assert!(text.ends_with(" says, 'hello axum'"), "{text}");
    assert_eq!(sockets.len(), 1);
    ws.close(1000, "").unwrap();
    assert!(with_timeout(events.closes.recv()).await.unwrap().was_clean);
}

#[tokio::test]
async fn a_plain_get_is_refused_with_400() {
    let app = Router::new()
        .route("/ws", get(chat))
        .with_state(WebSockets::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    with_timeout(tcp.read_to_end(&mut out)).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
}

/// A handler that selects a subprotocol the client did not offer.
async fn unoffered(upgrade: WebSocketUpgrade, State(sockets): State<WebSockets>) -> Response {
    upgrade.accept_with_protocol(WebSocket::new(), &sockets, Some("superchat"))
}

#[tokio::test]
async fn selecting_an_unoffered_subprotocol_is_refused_with_500_and_why() {
    let app = Router::new()
        .route("/ws", get(unoffered))
        .with_state(WebSockets::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let err = with_timeout(WebSocket::new().open(&format!("ws://{addr}/ws"), &["chat"]))
        .await
        .unwrap_err();
    let unisock::Error::Handshake(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.status().as_u16(), 500);
    assert!(
        err.to_string().ends_with(
            r#"'500 - Internal Server Error': invalid subprotocol name "superchat": the client did not offer it"#
        ),
        "{err}"
    );
}

async fn plain(upgrade: WebSocketUpgrade, State(sockets): State<WebSockets>) -> Response {
    upgrade.accept(WebSocket::new(), &sockets)
}

#[tokio::test]
async fn the_registry_on_upgrade_hook_runs_under_axum_too() {
    use unisock::WebSocketExt;
    let sockets = WebSockets::new();
    sockets.on_upgrade(|pending| {
        let _ = pending.set_protocol("chat");
        pending
            .response_mut()
            .headers_mut()
            .insert("x-hook", "ran".parse().unwrap());
    });
    let app = Router::new()
        .route("/ws", get(plain))
        .with_state(sockets.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let ws = WebSocket::new();
    with_timeout(ws.open(&format!("ws://{addr}/ws"), &["chat"]))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), "chat");
    let headers = ws.response_headers().unwrap();
    assert_eq!(headers.get("x-hook").unwrap(), "ran");
}
