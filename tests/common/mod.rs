//! Helpers for the native integration tests: servers on 127.0.0.1:0, and a timeout so a
//! broken test fails instead of hanging.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different subset"
)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use unisock::{CloseEvent, MsgEvent, WebSocket};

/// Fails the test if `fut` takes longer than 10 seconds.
pub async fn with_timeout<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("test step timed out")
}

/// Starts a unisock echo server on a free port; returns its address.
pub async fn spawn_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = unisock::server::accept(&listener).await;
            tokio::spawn(async move {
                let ws = WebSocket::new();
                let echo = ws.clone();
                ws.on_message(move |msg| {
                    let _ = echo.send(msg);
                });
                if ws.upgrade(tcp).await.is_ok() {
                    ws.read().await;
                }
            });
        }
    });
    addr
}

/// What a socket's handlers saw, as channels a test can await.
pub struct Events {
    pub messages: mpsc::UnboundedReceiver<MsgEvent>,
    pub closes: mpsc::UnboundedReceiver<CloseEvent>,
}

/// Routes `ws`'s messages and close event into channels.
pub fn record(ws: &WebSocket) -> Events {
    let (mtx, messages) = mpsc::unbounded_channel();
    let (ctx, closes) = mpsc::unbounded_channel();
    ws.on_message(move |m| {
        let _ = mtx.send(m);
    });
    ws.on_close(move |c| {
        let _ = ctx.send(c);
    });
    Events { messages, closes }
}

/// Opens a client to `url`, records its events, and runs its event loop in the background.
pub async fn open_client(url: &str) -> (WebSocket, Events) {
    open_configured(WebSocket::new(), url).await
}

/// As [`open_client`], with a socket already configured (TLS, compression, ...).
pub async fn open_configured(ws: WebSocket, url: &str) -> (WebSocket, Events) {
    let events = record(&ws);
    with_timeout(ws.open(url, &[])).await.unwrap();
    tokio::spawn({
        let ws = ws.clone();
        async move { ws.read().await }
    });
    (ws, events)
}

/// A raw TCP client that completed the opening handshake with a server at `addr`.
pub async fn raw_client(addr: SocketAddr, path: &str) -> tokio::net::TcpStream {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw_handshake(tcp, addr, path).await
}

/// As [`raw_client`], with a small kernel receive buffer (4 KiB asked): a peer that does
/// not read fills it, and so stalls the server's writes, after little data.
pub async fn raw_client_small_buffer(addr: SocketAddr, path: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    raw_handshake(tcp, addr, path).await
}

/// Upgrades `server` over a new local TCP connection, runs its `read()` on a task, and
/// returns the client's end once its handshake is done (frames are then written by hand).
pub async fn raw_peer_of_reading(server: &WebSocket) -> tokio::net::TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connected, accepted) =
        tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let (raw, upgraded) = tokio::join!(
        raw_handshake(connected.unwrap(), addr, "/"),
        server.upgrade(accepted.unwrap().0)
    );
    upgraded.unwrap();
    tokio::spawn({
        let server = server.clone();
        async move { server.read().await }
    });
    raw
}

/// Completes the opening handshake on a connection to `addr` (asserting the 101).
pub async fn raw_handshake(
    mut tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    path: &str,
) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // Read the response head byte by byte so no frame byte is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = with_timeout(tcp.read(&mut b)).await.unwrap();
        assert_eq!(
            n,
            1,
            "server closed during the handshake: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// A masked client frame (FIN set) with `opcode` and `payload`.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Reads one unmasked server frame: (opcode, payload). `None` at EOF.
pub async fn read_server_frame(tcp: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    with_timeout(tcp.read_exact(&mut head)).await.ok()?;
    assert_eq!(head[1] & 0x80, 0, "server frames are never masked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            tcp.read_exact(&mut b).await.ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            tcp.read_exact(&mut b).await.ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    with_timeout(tcp.read_exact(&mut payload)).await.ok()?;
    Some((head[0] & 0x0F, payload))
}

/// A unisock server on a free port; `setup` configures each accepted socket before the
/// upgrade. Returns the address and a channel of each socket's close event.
pub async fn spawn_server(
    setup: impl Fn(&WebSocket) + Send + Sync + 'static,
) -> (SocketAddr, mpsc::UnboundedReceiver<CloseEvent>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let setup = std::sync::Arc::new(setup);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = unisock::server::accept(&listener).await;
            let (setup, tx) = (setup.clone(), tx.clone());
            tokio::spawn(async move {
                let ws = WebSocket::new();
                setup(&ws);
                if ws.upgrade(tcp).await.is_ok() {
                    ws.read().await;
                    let _ = tx.send(ws.closed().await);
                }
            });
        }
    });
    (addr, rx)
}

/// Serves `sockets` on a free port, upgrading requests for `/ws`; returns the ws:// URL.
pub async fn serve_registry(sockets: &unisock::WebSockets) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = sockets.clone();
    tokio::spawn(async move {
        registry
            .serve(listener, |req| {
                (req.uri().path() == "/ws").then(WebSocket::new)
            })
            .await
    });
    format!("ws://{addr}/ws")
}

/// Waits until the registry holds `n` sockets (each step is event-driven by the server).
pub async fn until_len(sockets: &unisock::WebSockets, n: usize) {
    with_timeout(async {
        while sockets.len() != n {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// Kills the child process when dropped (also when the test fails).
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; a server started on it right after gets it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The example `name` built here with `features`: the executable's path, or the one the
/// environment variable `var` names.
pub fn example_bin(name: &str, features: &[&str], var: &str) -> String {
    use std::process::{Command, Stdio};
    if let Ok(bin) = std::env::var(var) {
        return bin;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--example", name, "--message-format", "json"]);
    if !features.is_empty() {
        build.args(["--features", &features.join(",")]);
    }
    let out = build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "building {name} failed");
    let json = String::from_utf8(out.stdout).unwrap();
    let line = json
        .lines()
        .find(|l| l.contains("\"executable\"") && l.contains(name))
        .unwrap_or_else(|| panic!("cargo reported no {name} executable"));
    let start = line.find("\"executable\":\"").unwrap() + "\"executable\":\"".len();
    line[start..].split('"').next().unwrap().to_string()
}

/// Starts examples/chat_server (CHAT_SERVER, or the example built here) on a free port of
/// 127.0.0.1, serving www/, with `args` after those; returns it and its `IP:PORT`.
pub fn start_chat_server(args: &[&str]) -> (Process, String) {
    use std::process::{Command, Stdio};
    let www = concat!(env!("CARGO_MANIFEST_DIR"), "/www");
    let mut child = Command::new(example_bin("chat_server", &[], "CHAT_SERVER"))
        .args(["127.0.0.1:0", www])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let process = Process(child);
    let addr = announced_address(stdout)
        .recv_timeout(Duration::from_secs(20))
        .expect("chat server did not start");
    (process, addr)
}

/// The address a server process announces on its stdout with a `listening on http://ADDR`
/// line, as it comes (read on a thread of its own).
pub fn announced_address(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let addr = line
                .strip_prefix("listening on http://")
                .or_else(|| line.strip_prefix("listening on ws://"));
            if let Some(addr) = addr {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    rx
}

/// `err` is a refused connection (`Error::Io` of that kind) whose message says `says`.
pub fn assert_connection_refused(err: &unisock::Error, says: &str) {
    let unisock::Error::Io(io) = err else {
        panic!("{err:?}")
    };
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(err.to_string().contains(says), "{err}");
}

/// Polls `ready` until it holds, failing the test after `secs` seconds.
pub async fn until(secs: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts redis-server on `port` (no persistence) and waits until it accepts connections.
pub async fn start_redis(port: u16) -> Process {
    start_redis_with(port, &["--save", "", "--appendonly", "no"]).await
}

/// Starts redis-server on `port` with `args` and waits until it accepts connections.
pub async fn start_redis_with(port: u16, args: &[&str]) -> Process {
    let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
    let child = std::process::Command::new(&bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {bin} ({e}): install redis-server or set REDIS_SERVER_BIN")
        });
    let redis = Process(child);
    until(10, "redis-server to accept connections", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    redis
}

/// A registry serving the sockets `handler` makes on a fixed address, which a test can stop
/// and start again (a restarted server).
pub struct Server {
    pub sockets: unisock::WebSockets,
    accept: tokio::task::JoinHandle<std::convert::Infallible>,
}

impl Server {
    /// Listens on `addr` and serves every request with `handler`'s socket in `sockets`.
    pub async fn start(
        addr: SocketAddr,
        sockets: unisock::WebSockets,
        handler: impl Fn(&http::Request<()>) -> Option<WebSocket> + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind(addr).await.unwrap();
        let registry = sockets.clone();
        let accept = tokio::spawn(async move { registry.serve(listener, handler).await });
        Server { sockets, accept }
    }

    /// Closes every socket with 1001 (so clients reconnect) and stops listening (the port
    /// is free afterwards).
    pub async fn stop(self) {
        self.sockets.shutdown().await;
        self.accept.abort();
        let _ = self.accept.await;
    }
}

/// A free address on 127.0.0.1 (free when asked: a server started on it right after gets it).
pub async fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}
