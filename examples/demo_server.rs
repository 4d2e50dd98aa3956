//! The demo: serves `www/` over HTTP and echoes WebSocket messages on `/ws`.
//!
//! `cargo run --example demo_server -- 127.0.0.1:8069 www`

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use unisock::{MsgEvent, WebSocket};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8069".into());
    let root = PathBuf::from(std::env::args().nth(2).unwrap_or_else(|| "www".into()));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("demo on http://{}/", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let root = root.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(tcp, &root).await {
                eprintln!("connection error: {e}");
            }
        });
    }
}

/// Peeks at the request line: `/ws` is upgraded, anything else is a file under `root`.
async fn serve(mut tcp: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut head = [0u8; 1024];
    let n = tcp.peek(&mut head).await?;
    let line = String::from_utf8_lossy(&head[..n]);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    if path == "/ws" || path.starts_with("/ws?") {
        let ws = WebSocket::new();
        let echo = ws.clone();
        ws.on_message(move |msg| {
            let _ = match msg {
                MsgEvent::Text(t) => echo.send_text(&format!("echo: {t}")),
                MsgEvent::Binary(b) => echo.send_binary(&b),
            };
        });
        if ws.upgrade(tcp).await.is_ok() {
            ws.read().await;
        }
        return Ok(());
    }
    // Read (and ignore) the rest of the request head before answering.
    let mut buf = vec![0u8; 8192];
    let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await?;
    let rel = path
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let file = root.join(rel);
    let safe = !rel.split('/').any(|part| part == "..");
    let (status, body, kind) = match tokio::fs::read(&file).await {
        Ok(body) if safe => ("200 OK", body, content_type(rel)),
        _ => ("404 Not Found", b"not found".to_vec(), "text/plain"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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
        _ => "application/octet-stream",
    }
}
