//! The chat server (the original's Chatbox): serves the page in `www/` over HTTP and the
//! chat on `/ws`. Every message is broadcast to the room through the `WebSockets` registry
//! as `<id> says, '<text>'`; arrivals and departures are announced as `<id> joined` and
//! `<id> left`, and a newcomer is told its own id first.
//!
//! `cargo run --example chat_server -- 127.0.0.1:8069 www` (port 0 picks a free port);
//! prints `listening on http://ADDR` once it accepts connections, then runs until killed.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use unisock::protocol::handshake;
use unisock::{MsgEvent, WebSocket, WebSocketExt, WebSockets};

#[path = "chat/client.rs"]
#[allow(dead_code)] // only WELCOME is shared with the server
mod client;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8069".into());
    let root = PathBuf::from(std::env::args().nth(2).unwrap_or_else(|| "www".into()));
    let room = WebSockets::new();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (room, root) = (room.clone(), root.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(tcp, &room, &root).await {
                eprintln!("connection error: {e}");
            }
        });
    }
}

/// Reads one request head: `/ws` is upgraded into the room, anything else is a file.
async fn handle(mut tcp: TcpStream, room: &WebSockets, root: &Path) -> unisock::Result<()> {
    let Some(request) = read_request(&mut tcp).await? else {
        return Ok(());
    };
    if request.uri().path() == "/ws" {
        let pending = chat_socket(room).upgrade_request(request, tcp).await?;
        return room.service_pending(pending).await;
    }
    serve_file(tcp, root, request.uri().path()).await?;
    Ok(())
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
            if let MsgEvent::Text(text) = msg {
                room.broadcast_text(&format!("{id} says, '{text}'"), None);
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
