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
//! Clients that offer `unisock.v1` (the chat's own clients: `chat/client.rs`) are served
//! through resumable rooms (`unisock::resume`): the chat is published to the room
//! "lobby", and each client has an inbox where it is welcomed and whispered to, so a
//! client that loses its connection gets every line it missed, once and in order, or is
//! told how many it missed. Other clients get the chat as plain text messages; both see
//! each other's lines. A whisper reaches a plain client on any server, a resuming client
//! on the server it is connected to.
//!
//! Several servers share one room over Redis (built with `--features redis`):
//! `chat_server 127.0.0.1:8069 www --redis redis://127.0.0.1:6379/` and the same on another
//! port. Backplane failures are printed on stderr as `backplane error: ...`; the local room
//! keeps working meanwhile.
// Native only. `cargo test --target wasm32-unknown-unknown` (what `wasm-pack test` runs)
// builds every example, so on wasm32 this one is an empty module, without a `main`.
#![cfg_attr(target_arch = "wasm32", no_main)]
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use unisock::protocol::handshake;
#[cfg(feature = "redis")]
use unisock::resume::RedisRooms;
use unisock::resume::{HistoryLimits, Rooms};
use unisock::{MsgEvent, WebSocket, WebSocketExt, WebSockets};

#[path = "chat/client.rs"]
#[allow(dead_code)] // only WELCOME and LOBBY are shared with the server
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
    let (room, lobby) = match redis_url {
        None => (WebSockets::new(), Lobby::local()),
        Some(url) => redis_room(&url).await?,
    };
    let chat = Chat {
        room,
        lobby,
        resuming: Arc::default(),
    };
    chat.greet_in_inboxes();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    let origins: Arc<[String]> = own_origins(local).into();
    let token: Option<Arc<str>> = token.map(Into::into);
    println!("listening on http://{local}");
    loop {
        let (tcp, _) = unisock::server::accept(&listener).await;
        let _ = tcp.set_nodelay(true);
        let (chat, root, origins) = (chat.clone(), root.clone(), origins.clone());
        let token = token.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(tcp, &chat, &root, &origins, token.as_deref()).await {
                eprintln!("connection error: {e}");
            }
        });
    }
}

fn usage_error(usage: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, usage.to_string())
}

/// A room shared with every chat server on the same Redis: plain clients through the
/// registry's backplane, resuming clients through rooms kept in Redis Streams.
#[cfg(feature = "redis")]
async fn redis_room(url: &str) -> std::io::Result<(WebSockets, Lobby)> {
    let redis = unisock::backplane::RedisBackplane::connect(url)
        .await
        .map_err(std::io::Error::other)?;
    let room = WebSockets::with_backplane(redis);
    room.on_backplane_error(|e| eprintln!("backplane error: {e}"));
    let rooms = RedisRooms::connect(url, "chat", HistoryLimits::default())
        .await
        .map_err(std::io::Error::other)?;
    rooms.on_error(|e| eprintln!("rooms error: {e}"));
    println!(
        "sharing the room over {url} as node {}",
        unisock::backplane::node_id().unwrap_or("?")
    );
    Ok((room, Lobby::Redis(rooms)))
}

#[cfg(not(feature = "redis"))]
async fn redis_room(_url: &str) -> std::io::Result<(WebSockets, Lobby)> {
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

/// The resumable side of the chat: one process's rooms, or rooms shared over Redis.
#[derive(Clone)]
enum Lobby {
    Local(Rooms),
    #[cfg(feature = "redis")]
    Redis(RedisRooms),
}

impl Lobby {
    fn local() -> Lobby {
        Lobby::Local(Rooms::new(HistoryLimits::default()))
    }

    /// Publishes `line` to the lobby.
    fn say(&self, line: &str) {
        let line = MsgEvent::Text(line.to_string());
        match self {
            Lobby::Local(rooms) => {
                rooms.publish(client::LOBBY, line);
            }
            #[cfg(feature = "redis")]
            Lobby::Redis(rooms) => {
                if let Err(e) = rooms.publish(client::LOBBY, line) {
                    eprintln!("rooms error: {e}");
                }
            }
        }
    }

    /// Publishes `line` to `ws`'s inbox.
    fn tell(&self, ws: &WebSocket, line: &str) {
        let line = MsgEvent::Text(line.to_string());
        match self {
            Lobby::Local(rooms) => {
                rooms.send_to(ws, line);
            }
            #[cfg(feature = "redis")]
            Lobby::Redis(rooms) => {
                if let Err(e) = rooms.send_to(ws, line) {
                    eprintln!("rooms error: {e}");
                }
            }
        }
    }

    fn attach(&self, ws: &WebSocket, f: impl Fn(&WebSocket, MsgEvent) + Send + Sync + 'static) {
        match self {
            Lobby::Local(rooms) => rooms.attach(ws, f),
            #[cfg(feature = "redis")]
            Lobby::Redis(rooms) => rooms.attach(ws, f),
        }
    }

    fn on_join(&self, f: impl Fn(&WebSocket, &str) + Send + Sync + 'static) {
        match self {
            Lobby::Local(rooms) => rooms.on_join(f),
            #[cfg(feature = "redis")]
            Lobby::Redis(rooms) => rooms.on_join(f),
        }
    }

    fn detach(&self, ws: &WebSocket) {
        match self {
            Lobby::Local(rooms) => rooms.detach(ws),
            #[cfg(feature = "redis")]
            Lobby::Redis(rooms) => rooms.detach(ws),
        }
    }
}

/// Everyone in the chat: plain clients in the registry, resuming clients in the lobby
/// (and, to whisper to them, by id).
#[derive(Clone)]
struct Chat {
    room: WebSockets,
    lobby: Lobby,
    resuming: Arc<Mutex<HashMap<String, WebSocket>>>,
}

impl Chat {
    /// Says `line` to every participant.
    fn say(&self, line: &str) {
        self.room.broadcast_text(line, None);
        self.lobby.say(line);
    }

    /// Whispers `text` from `from` to `to`, or tells `from` why not.
    fn whisper(&self, from: &str, to: &str, text: &str) {
        let whisper = format!("{from} whispers, '{text}'");
        let target = self.resuming_socket(to);
        let sent = match target {
            Some(ws) => {
                self.lobby.tell(&ws, &whisper);
                Ok(())
            }
            None => self.room.send_to(to, MsgEvent::Text(whisper)),
        };
        if let Err(e) = sent {
            match self.resuming_socket(from) {
                Some(ws) => self.lobby.tell(&ws, &format!("* {e}")),
                None => {
                    let _ = self.room.send_to(from, MsgEvent::Text(format!("* {e}")));
                }
            }
        }
    }

    /// A line from participant `id`: a whisper (`/msg <id> <text>`) or said to all.
    fn line(&self, id: &str, text: &str) {
        match text
            .strip_prefix("/msg ")
            .and_then(|rest| rest.split_once(' '))
        {
            Some((to, whisper)) => self.whisper(id, to, whisper),
            None => self.say(&format!("{id} says, '{text}'")),
        }
    }

    fn resuming_socket(&self, id: &str) -> Option<WebSocket> {
        self.resuming
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// A resuming client is in the chat once its inbox is joined (again, after each
    /// reconnection): it is welcomed there, and everyone is told.
    fn greet_in_inboxes(&self) {
        let chat = self.clone();
        self.lobby.on_join(move |ws, room| {
            if room.starts_with('@') {
                chat.lobby
                    .tell(ws, &format!("{}{}", client::WELCOME, ws.id()));
                chat.say(&format!("{} joined", ws.id()));
            }
        });
    }

    /// Serves a client that offered `unisock.v1` through the lobby.
    fn resuming(&self, ws: &WebSocket) {
        let id = ws.id().to_string();
        self.resuming
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), ws.clone());
        let chat = self.clone();
        self.lobby.attach(ws, move |ws, msg| {
            if let MsgEvent::Text(text) = msg {
                chat.line(ws.id(), &text);
            }
        });
        let (chat, socket) = (self.clone(), ws.clone());
        ws.on_close(move |_| {
            chat.resuming
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            chat.lobby.detach(&socket);
            chat.say(&format!("{id} left"));
        });
    }
}

/// Reads one request head: `/ws` is upgraded into the room (if it carries `token`, when
/// one is required), anything else is a file.
async fn handle(
    mut tcp: TcpStream,
    chat: &Chat,
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
        let ws = WebSocket::new();
        // A browser always sends `Origin`: only our own page may join as its user. A
        // request without one is from no browser, so no other site's page is behind it.
        if request.headers().contains_key(http::header::ORIGIN) {
            ws.set_allowed_origins(Some(origins.to_vec()));
        }
        let mut pending = ws.upgrade_request(request, tcp).await?;
        if Rooms::select(&mut pending) {
            chat.resuming(&ws);
            let ws = pending.commit().await?;
            ws.read().await;
            return Ok(());
        }
        plain_socket(&ws, chat);
        return chat.room.service_pending(pending).await;
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

/// A plain client, registered in the chat's registry while it is open: its lines are
/// the chat's, and it gets the chat as text messages.
fn plain_socket(ws: &WebSocket, chat: &Chat) {
    let id = ws.id().to_string();
    ws.on_open({
        let (chat, id) = (chat.clone(), id.clone());
        move || {
            chat.room
                .broadcast_text(&format!("{}{id}", client::WELCOME), Some(&[&id]));
            chat.say(&format!("{id} joined"));
        }
    });
    ws.on_message({
        let (chat, id) = (chat.clone(), id.clone());
        move |msg| {
            if let MsgEvent::Text(text) = msg {
                chat.line(&id, &text);
            }
        }
    });
    let chat = chat.clone();
    ws.on_close(move |_| chat.say(&format!("{id} left")));
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
