//! The chat server (the original's Chatbox): serves the page in `www/` over HTTP and the
//! chat on `/ws`. Every message is broadcast to the room through the `WebSockets` registry
//! as `<id> says, '<text>'`; arrivals and departures are announced as `<id> joined` and
//! `<id> left`, and a newcomer is told its own id first. `/msg <id> <text>` whispers to one
//! participant: `<from> whispers, '<text>'` reaches only `<id>`.
//!
//! `cargo run --example chat_server -- 127.0.0.1:8069 www` (port 0 picks a free port);
//! prints `listening on http://ADDR` once it accepts connections, then runs until killed.
//!
//! Only the server's own page joins from a browser: one loaded from `http://127.0.0.1:PORT`,
//! `http://localhost:PORT` or the address it listens on (bound to 0.0.0.0, pages loaded
//! through another address are refused). Another site's page is answered 403. A client
//! sending no `Origin` (the terminal client) joins: browsers always send one, so it is
//! no page of another site.
//!
//! `--token T` admits to the chat only requests that carry the token: an
//! `Authorization: Bearer T` header (`chat_client --header 'Authorization: Bearer T'`), or,
//! as a page in a browser cannot set that header, `?token=T` in the URL
//! (`ws://HOST:PORT/ws?token=T`; the page passes its own query on, so open it as
//! `http://HOST:PORT/?token=T`). Others are answered 401. The page itself is served to all.
//!
//! Several servers share one room over Redis (built with `--features redis`):
//! `chat_server 127.0.0.1:8069 www --redis redis://127.0.0.1:6379/` and the same on another
//! port. Backplane failures are printed on stderr as `backplane error: ...`; the local room
//! keeps working meanwhile.
// Native only. `cargo test --target wasm32-unknown-unknown` (what `wasm-pack test` runs)
// builds every example, so on wasm32 this one is an empty module, without a `main`.
#![cfg_attr(target_arch = "wasm32", no_main)]
#![cfg(not(target_arch = "wasm32"))]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use unisock::protocol::handshake;
use unisock::{MsgEvent, WebSocket, WebSocketExt, WebSockets};

#[path = "chat/client.rs"]
#[allow(dead_code)] // only WELCOME is shared with the server
mod client;

const USAGE: &str =
    "usage: chat_server [ADDR] [WWW_DIR] [--token T] [--redis redis://HOST:PORT/]\n  \
                     --token T: the chat needs `Authorization: Bearer T`, or `?token=T` in the \
                     URL (for browsers, which cannot set headers)";

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut positional = Vec::new();
    let mut redis_url = None;
    let mut token = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--redis" => redis_url = Some(args.next().ok_or_else(|| usage_error(USAGE))?),
            "--token" => token = Some(args.next().ok_or_else(|| usage_error(USAGE))?),
            _ if arg.starts_with("--") => return Err(usage_error(USAGE)),
            _ => positional.push(arg),
        }
    }
    let mut positional = positional.into_iter();
    let addr = positional.next().unwrap_or_else(|| "127.0.0.1:8069".into());
    let root = PathBuf::from(positional.next().unwrap_or_else(|| "www".into()));
    let room = match redis_url {
        None => WebSockets::new(),
        Some(url) => redis_room(&url).await?,
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    let origins: Arc<[String]> = own_origins(local).into();
    let token: Option<Arc<str>> = token.map(Into::into);
    println!("listening on http://{local}");
    loop {
        let (tcp, _) = unisock::server::accept(&listener).await;
        let _ = tcp.set_nodelay(true);
        let (room, root, origins) = (room.clone(), root.clone(), origins.clone());
        let token = token.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(tcp, &room, &root, &origins, token.as_deref()).await {
                eprintln!("connection error: {e}");
            }
        });
    }
}

fn usage_error(usage: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, usage.to_string())
}

/// A room shared with every chat server on the same Redis.
#[cfg(feature = "redis")]
async fn redis_room(url: &str) -> std::io::Result<WebSockets> {
    let redis = unisock::backplane::RedisBackplane::connect(url)
        .await
        .map_err(std::io::Error::other)?;
    let room = WebSockets::with_backplane(redis);
    room.on_backplane_error(|e| eprintln!("backplane error: {e}"));
    println!(
        "sharing the room over {url} as node {}",
        unisock::backplane::node_id().unwrap_or("?")
    );
    Ok(room)
}

#[cfg(not(feature = "redis"))]
async fn redis_room(_url: &str) -> std::io::Result<WebSockets> {
    Err(usage_error(
        "--redis needs the redis feature: cargo run --features redis --example chat_server",
    ))
}

/// The origins of the chat page this server serves on `local`.
fn own_origins(local: SocketAddr) -> Vec<String> {
    let port = local.port();
    let mut origins = vec![
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ];
    let own = format!("http://{local}");
    if !local.ip().is_unspecified() && !origins.contains(&own) {
        origins.push(own);
    }
    origins
}

/// Reads one request head: `/ws` is upgraded into the room (if it carries `token`, when
/// one is required), anything else is a file.
async fn handle(
    mut tcp: TcpStream,
    room: &WebSockets,
    root: &Path,
    origins: &[String],
    token: Option<&str>,
) -> unisock::Result<()> {
    let Some(request) = read_request(&mut tcp).await? else {
        return Ok(());
    };
    if request.uri().path() == "/ws" {
        if token.is_some_and(|token| !carries(&request, token)) {
            unauthorized(tcp).await?;
            return Ok(());
        }
        let ws = chat_socket(room);
        // A browser always sends `Origin`: only our own page may join as its user. A
        // request without one is from no browser, so no other site's page is behind it.
        if request.headers().contains_key(http::header::ORIGIN) {
            ws.set_allowed_origins(Some(origins.to_vec()));
        }
        let pending = ws.upgrade_request(request, tcp).await?;
        return room.service_pending(pending).await;
    }
    serve_file(tcp, root, request.uri().path()).await?;
    Ok(())
}

/// Whether `request` carries `token`: as `Authorization: Bearer <token>`, or as
/// `token=<token>` in its query.
fn carries(request: &http::Request<()>, token: &str) -> bool {
    let bearer = request
        .headers()
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split_once(' '))
        .any(|(scheme, given)| scheme.eq_ignore_ascii_case("bearer") && given.trim() == token);
    let query = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair.strip_prefix("token=") == Some(token));
    bearer || query
}

/// Answers 401: the request lacked the token.
async fn unauthorized(mut tcp: TcpStream) -> std::io::Result<()> {
    let body = "a token is needed: Authorization: Bearer <token>, or ?token=<token>";
    let head = format!(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.shutdown().await
}

/// A socket that joins the room: it is registered in `room` while it is open.
fn chat_socket(room: &WebSockets) -> WebSocket {
    let ws = WebSocket::new();
    let id = ws.id().to_string();
    ws.on_open({
        let (room, id) = (room.clone(), id.clone());
        move || {
            room.broadcast_text(&format!("{}{id}", client::WELCOME), Some(&[&id]));
            room.broadcast_text(&format!("{id} joined"), None);
        }
    });
    ws.on_message({
        let (room, id) = (room.clone(), id.clone());
        move |msg| {
            let MsgEvent::Text(text) = msg else { return };
            match text
                .strip_prefix("/msg ")
                .and_then(|rest| rest.split_once(' '))
            {
                // On whichever server `to` is connected.
                Some((to, whisper)) => {
                    let whisper = MsgEvent::Text(format!("{id} whispers, '{whisper}'"));
                    if let Err(e) = room.send_to(to, whisper) {
                        let _ = room.send_to(&id, MsgEvent::Text(format!("* {e}")));
                    }
                }
                None => {
                    room.broadcast_text(&format!("{id} says, '{text}'"), None);
                }
            }
        }
    });
    ws.on_close({
        let room = room.clone();
        move |_| {
            room.broadcast_text(&format!("{id} left"), None);
        }
    });
    ws
}

/// Reads up to the end of the request head (a browser sends nothing more before an
/// answer). `None` when the client went away first.
async fn read_request(tcp: &mut TcpStream) -> unisock::Result<Option<http::Request<()>>> {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 2048];
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((request, _)) = handshake::parse_request(&buf)? {
            return Ok(Some(request));
        }
    }
}

async fn serve_file(mut tcp: TcpStream, root: &Path, path: &str) -> std::io::Result<()> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let safe = !rel.split('/').any(|part| part == ".." || part.is_empty());
    let found = if safe {
        tokio::fs::read(root.join(rel)).await.ok()
    } else {
        None
    };
    let (status, body, kind) = match found {
        Some(body) => ("200 OK", body, content_type(rel)),
        None => ("404 Not Found", b"not found".to_vec(), "text/plain"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(&body).await?;
    tcp.shutdown().await
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}
