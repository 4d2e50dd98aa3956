//! Echoes every message back. Used by the Autobahn fuzzingclient run and the browser tests.
//!
//! `cargo run --release --example echo_server -- 127.0.0.1:9001` (port 0 picks a free port);
//! prints `listening on ws://ADDR` once it accepts connections, then runs until killed.
//!
//! For the browser tests it also selects the first subprotocol a client offers, and on the
//! path `/drop` it completes the handshake, sends one text message and drops TCP without
//! a close frame (an unclean close for the client).
//!
//! So a browser test can check what the server saw of a close: on `/record?key=K` it
//! echoes as usual and keeps the close event it got under `K`; on `/report?key=K` it
//! sends that event as text (waiting up to 5 s for it), then closes with 1000.
//!
//! For the reconnect tests: `/close1000` closes with 1000 "bye" at once; `/silent` never
//! answers anything. And a test can stop and restart a server of its own: on
//! `/control/spawn` it starts another echo listener on a free port and answers its URL
//! (`ws://127.0.0.1:PORT/`); `/control/down?port=PORT` closes that listener and every
//! connection it accepted (with 1012, service restart), answering `down` once the port is
//! closed; `/control/up?port=PORT` listens on the same port again, answering `up`. Each
//! control connection then closes with 1000.
//!
//! For the resumable-delivery tests: on `/rooms` the socket is served by one set of rooms
//! shared by every listener of the process. A message `ROOM TEXT` (from a `unisock.v1`
//! client, or sent plain) is published to ROOM; a plain sender is answered
//! `published EPOCH:OFFSET`.
//!
//! For the open-timeout tests: `/control/mute` starts a listener that upgrades its first
//! connection and closes it at once with 1012 (so a reconnecting client tries again), then
//! accepts every later connection and never answers it; it answers that listener's URL.
// Native only. `cargo test --target wasm32-unknown-unknown` (what `wasm-pack test` runs)
// builds every example, so on wasm32 this one is an empty module, without a `main`.
#![cfg_attr(target_arch = "wasm32", no_main)]
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use unisock::protocol::handshake;
use unisock::resume::{HistoryLimits, Rooms, SUBPROTOCOL};
use unisock::{WebSocket, WebSocketExt};

/// The close events seen on `/record?key=K`, by key, and a wake-up for `/report`.
static CLOSES: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
static RECORDED: Notify = Notify::const_new();

/// The rooms of `/rooms`, shared by every listener.
static ROOMS: LazyLock<Rooms> = LazyLock::new(|| Rooms::new(HistoryLimits::default()));

/// The listeners started by `/control/spawn`, by port.
static SPAWNED: Mutex<Option<HashMap<u16, Spawned>>> = Mutex::new(None);

/// One listener a test can take down and bring back.
#[derive(Default)]
struct Spawned {
    /// The accept loop while the listener is up.
    accept: Option<tokio::task::JoinHandle<()>>,
    /// The connections it accepted (closed ones too, until the next `down`).
    sockets: Vec<WebSocket>,
}

fn spawned<R>(f: impl FnOnce(&mut HashMap<u16, Spawned>) -> R) -> R {
    f(SPAWNED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    accept_loop(listener, None).await;
    Ok(())
}

/// Accepts connections until the task is aborted (accept errors, such as running out of
/// file descriptors, are waited out); `spawned` is the port of a listener made by
/// `/control/spawn`.
async fn accept_loop(listener: TcpListener, spawned: Option<u16>) {
    loop {
        let (tcp, _) = unisock::server::accept(&listener).await;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let mut first = [0u8; 64];
            let n = tcp.peek(&mut first).await.unwrap_or(0);
            if first[..n].starts_with(b"GET /drop") {
                let _ = upgrade_then_drop(tcp).await;
            } else {
                echo(tcp, spawned).await;
            }
        });
    }
}

async fn echo(tcp: TcpStream, spawned_on: Option<u16>) {
    let ws = WebSocket::new();
    let Ok(mut pending) = ws.upgrade_pending(tcp).await else {
        return;
    };
    if let Some(first) = pending.offered_protocols().first().cloned() {
        // An offered name that is not a token is not selected: no subprotocol then.
        let _ = pending.set_protocol(&first);
    }
    let uri = pending.request().uri().clone();
    let param = |name: &str| {
        uri.query()
            .and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            })
            .unwrap_or_default()
            .to_string()
    };
    let key = param("key");
    let port: u16 = param("port").parse().unwrap_or(0);
    let Ok(ws) = pending.commit().await else {
        return;
    };
    if let Some(port) = spawned_on {
        let up = spawned(|all| {
            let server = all.entry(port).or_default();
            server.sockets.push(ws.clone());
            server.accept.is_some()
        });
        if !up {
            // Taken down while this connection was being upgraded.
            let _ = ws.close(1012, "down");
        }
    }
    if uri.path() != "/silent" {
        let echo = ws.clone();
        ws.on_message(move |msg| {
            let _ = echo.send(msg);
        });
    }
    match uri.path() {
        "/record" => ws.on_close(move |ev| {
            let mut closes = CLOSES.lock().unwrap_or_else(PoisonError::into_inner);
            closes
                .get_or_insert_with(HashMap::new)
                .insert(key.clone(), ev.to_string());
            RECORDED.notify_waiters();
        }),
        "/report" => {
            let report = ws.clone();
            tokio::spawn(async move {
                let seen = tokio::time::timeout(Duration::from_secs(5), recorded(&key)).await;
                let text = seen.unwrap_or_else(|_| format!("no close recorded for key {key:?}"));
                let _ = report.send_text(&text);
                let _ = report.close(1000, "");
            });
        }
        "/rooms" => ROOMS.attach(&ws, |ws, msg| {
            let Some((room, text)) = msg.txt().and_then(|t| t.split_once(' ')) else {
                return;
            };
            let at = ROOMS.publish(room, unisock::MsgEvent::Text(text.into()));
            if ws.protocol() != SUBPROTOCOL {
                let _ = ws.send_text(&format!("published {at}"));
            }
        }),
        "/close1000" => {
            let _ = ws.close(1000, "bye");
        }
        "/control/spawn" | "/control/down" | "/control/up" | "/control/mute" => {
            let answer = control(uri.path(), port).await;
            let _ = ws.send_text(&answer);
            let _ = ws.close(1000, "");
        }
        _ => {}
    }
    ws.read().await;
}

/// Runs a `/control/...` command; the answer is the text for the test.
async fn control(command: &str, port: u16) -> String {
    match command {
        "/control/spawn" => match TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => match listener.local_addr() {
                Ok(addr) => {
                    start(listener, addr.port());
                    format!("ws://{addr}/")
                }
                Err(e) => format!("error: {e}"),
            },
            Err(e) => format!("error: {e}"),
        },
        "/control/mute" => match TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => match listener.local_addr() {
                Ok(addr) => {
                    tokio::spawn(mute(listener));
                    format!("ws://{addr}/")
                }
                Err(e) => format!("error: {e}"),
            },
            Err(e) => format!("error: {e}"),
        },
        "/control/down" => {
            let (accept, sockets) = spawned(|all| {
                let server = all.entry(port).or_default();
                (server.accept.take(), std::mem::take(&mut server.sockets))
            });
            let Some(accept) = accept else {
                return format!("error: nothing listens on port {port}");
            };
            // Aborting the accept loop drops (closes) the listener.
            accept.abort();
            let _ = accept.await;
            for ws in sockets {
                let _ = ws.close(1012, "restarting");
            }
            "down".into()
        }
        "/control/up" => {
            if spawned(|all| all.get(&port).is_some_and(|s| s.accept.is_some())) {
                return "up".into();
            }
            // The port was this server's: take it again (Tokio sets SO_REUSEADDR).
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(listener) => {
                    start(listener, port);
                    "up".into()
                }
                Err(e) => format!("error: port {port}: {e}"),
            }
        }
        _ => "error: unknown command".into(),
    }
}

/// Upgrades the first connection and closes it with 1012; holds every later one without
/// a word, until the process ends.
async fn mute(listener: TcpListener) {
    let mut held = Vec::new();
    let mut first = true;
    while let Ok((tcp, _)) = listener.accept().await {
        if std::mem::take(&mut first) {
            tokio::spawn(async move {
                let ws = WebSocket::new();
                if ws.upgrade(tcp).await.is_ok() {
                    let _ = ws.close(1012, "restarting");
                    ws.read().await;
                }
            });
        } else {
            held.push(tcp);
        }
    }
}

/// Runs the accept loop of a spawned listener.
fn start(listener: TcpListener, port: u16) {
    let accept = tokio::spawn(accept_loop(listener, Some(port)));
    spawned(|all| all.entry(port).or_default().accept = Some(accept));
}

/// Waits until a close was recorded under `key`, and returns it.
async fn recorded(key: &str) -> String {
    loop {
        let notified = RECORDED.notified();
        let seen = CLOSES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|c| c.get(key).cloned());
        if let Some(ev) = seen {
            return ev;
        }
        notified.await;
    }
}

/// Completes the handshake by hand, sends "bye" in one unmasked text frame, and ends TCP
/// without a close frame.
async fn upgrade_then_drop(mut tcp: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let request = loop {
        let mut chunk = [0u8; 1024];
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        match handshake::parse_request(&buf) {
            Ok(Some((request, _))) => break request,
            Ok(None) => {}
            Err(_) => return Ok(()),
        }
    };
    let Ok(accept) = handshake::validate_request(&request, None) else {
        return Ok(());
    };
    tcp.write_all(&handshake::response_101(&accept.accept, None, &[]))
        .await?;
    tcp.write_all(&[0x81, 0x03, b'b', b'y', b'e']).await?;
    tcp.shutdown().await
}
