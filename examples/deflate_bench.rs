//! permessage-deflate numbers: throughput and bytes on the wire for a JSON-like text
//! workload, and server memory per connection, with compression off, on as the server
//! default (`server_no_context_takeover`), and on with full context takeover.
//!
//! `cargo run --release --example deflate_bench -- [SECS] [CONNS]` (defaults 3 s per mode,
//! 1,000 connections for the memory figure). The server runs in a child process (this
//! binary with `server MODE`), so its RSS is its own.
// Native only. `cargo test --target wasm32-unknown-unknown` (what `wasm-pack test` runs)
// builds every example, so on wasm32 this one is an empty module, without a `main`.
#![cfg_attr(target_arch = "wasm32", no_main)]
#![cfg(not(target_arch = "wasm32"))]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use unisock::{DeflateConfig, MsgEvent, WebSocket, WebSocketExt};

const MODES: [&str; 3] = ["off", "server-default", "context-takeover"];
/// Messages in flight on the throughput connection.
const WINDOW: usize = 64;

fn server_config(mode: &str) -> DeflateConfig {
    match mode {
        "off" => DeflateConfig::disabled(),
        "context-takeover" => DeflateConfig::default(),
        _ => DeflateConfig::default().server_no_context_takeover(true),
    }
}

/// JSON-like messages of 150-700 bytes: chat and game-state updates with varying values.
fn workload(n: usize) -> Vec<String> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words = [
        "hello", "world", "move", "north", "player", "score", "level", "ready", "the", "quick",
        "fox", "lobby", "attack", "defend", "heal", "chat", "ok", "thanks",
    ];
    (0..n)
        .map(|i| {
            let r = next();
            let text: Vec<&str> = (0..(r % 12 + 2))
                .map(|k| words[((r >> (k * 4)) % words.len() as u64) as usize])
                .collect();
            let players: Vec<String> = (0..(r % 5 + 1))
                .map(|_| {
                    let v = next();
                    format!(
                        r#"{{"id":{},"name":"player{}","x":{:.2},"y":{:.2},"hp":{},"alive":{}}}"#,
                        v % 10_000,
                        v % 97,
                        (v % 100_000) as f64 / 100.0,
                        ((v >> 20) % 100_000) as f64 / 100.0,
                        (v >> 40) % 100,
                        v % 3 != 0
                    )
                })
                .collect();
            format!(
                r#"{{"seq":{i},"type":"update","room":"lobby-{}","ts":{},"text":"{}","players":[{}]}}"#,
                r % 16,
                1_700_000_000_000u64 + r % 1_000_000,
                text.join(" "),
                players.join(",")
            )
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("server") {
        return serve(args.get(2).map_or("server-default", String::as_str)).await;
    }
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let conns: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let messages = Arc::new(workload(4096));
    let avg = messages.iter().map(String::len).sum::<usize>() / messages.len();
    println!("workload: {} JSON-like text messages, {avg} bytes on average; {secs} s per mode; memory with {conns} connections", messages.len());
    println!(
        "{:<17} {:>10} {:>12} {:>14} {:>12} {:>16}",
        "mode", "msgs/s", "MB/s (text)", "wire/payload", "server RSS", "RSS per conn"
    );
    codec_only(&messages);
    let mut base_rss = None;
    for mode in MODES {
        let mut server = Server::start(mode)?;
        let (rate, mbps, ratio) = throughput(&server.url, &messages, secs).await?;
        let idle = server.rss_kib()?;
        let held = open_many(&server.url, conns, &messages).await?;
        let loaded = server.rss_kib()?;
        drop(held);
        let per_conn = (loaded.saturating_sub(idle)) as f64 / conns as f64;
        let base = *base_rss.get_or_insert(per_conn);
        println!(
            "{mode:<17} {rate:>10.0} {mbps:>12.1} {ratio:>14.3} {:>9} KiB {:>8.1} KiB (+{:.1})",
            loaded,
            per_conn,
            per_conn - base
        );
        server.stop();
    }
    Ok(())
}

/// Echo server child: prints its URL, then answers each `rss` line on stdin with its
/// resident set size in KiB.
async fn serve(mode: &str) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("ws://{}", listener.local_addr()?);
    let config = server_config(mode);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = unisock::server::accept(&listener).await;
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let ws = WebSocket::new();
                ws.set_deflate(config);
                let echo = ws.clone();
                ws.on_message(move |m| {
                    let _ = match m {
                        MsgEvent::Text(t) => echo.send_text(&t),
                        MsgEvent::Binary(b) => echo.send_binary(&b),
                    };
                });
                if ws.upgrade(tcp).await.is_ok() {
                    ws.read().await;
                }
            });
        }
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin());
    let mut line = String::new();
    use tokio::io::AsyncBufReadExt;
    while lines.read_line(&mut line).await? > 0 {
        println!("{}", rss_kib());
        line.clear();
    }
    Ok(())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    url: String,
}

impl Server {
    fn start(mode: &str) -> std::io::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["server", mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or(std::io::ErrorKind::BrokenPipe)?);
        let mut url = String::new();
        stdout.read_line(&mut url)?;
        Ok(Self {
            child,
            stdin,
            stdout,
            url: url.trim().to_string(),
        })
    }

    fn rss_kib(&mut self) -> std::io::Result<u64> {
        writeln!(self.stdin, "rss")?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line.trim().parse().unwrap_or(0))
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client through a byte-counting proxy: WINDOW messages in flight for `secs`.
/// Returns messages/s, payload MB/s (both directions) and wire bytes / payload bytes.
async fn throughput(
    url: &str,
    messages: &Arc<Vec<String>>,
    secs: u64,
) -> Result<(f64, f64, f64), Box<dyn std::error::Error>> {
    let wire = Arc::new(AtomicU64::new(0));
    let proxy = proxy(url.trim_start_matches("ws://").to_string(), wire.clone()).await?;
    let ws = WebSocket::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    ws.on_message(move |m| {
        let _ = tx.send(m.len());
    });
    ws.open(&format!("ws://{proxy}/"), &[]).await?;
    tokio::spawn({
        let ws = ws.clone();
        async move { ws.read().await }
    });
    let (mut sent, mut received, mut payload) = (0usize, 0usize, 0u64);
    for _ in 0..WINDOW {
        ws.send_text(&messages[sent % messages.len()])?;
        sent += 1;
    }
    let start = Instant::now();
    let wire_start = wire.load(Ordering::Relaxed);
    let end = start + Duration::from_secs(secs);
    while Instant::now() < end {
        let Some(len) = rx.recv().await else { break };
        received += 1;
        payload += 2 * len as u64;
        ws.send_text(&messages[sent % messages.len()])?;
        sent += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let wire_bytes = wire.load(Ordering::Relaxed) - wire_start;
    let _ = ws.close(1000, "");
    Ok((
        received as f64 / elapsed,
        payload as f64 / elapsed / 1e6,
        wire_bytes as f64 / payload.max(1) as f64,
    ))
}

/// A TCP proxy to `target` that counts the bytes it forwards in both directions.
async fn proxy(target: String, wire: Arc<AtomicU64>) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        loop {
            let (client, _) = unisock::server::accept(&listener).await;
            // A connect to the server that fails fails that client, not the proxy.
            let Ok(server) = TcpStream::connect(&target).await else {
                continue;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, wire.clone()));
            tokio::spawn(pump(sr, cw, wire.clone()));
        }
    });
    Ok(addr)
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    wire: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        wire.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Opens `conns` clients, each exchanging a few messages (so both codecs have run), and
/// keeps them open.
async fn open_many(
    url: &str,
    conns: usize,
    messages: &Arc<Vec<String>>,
) -> Result<Vec<WebSocket>, Box<dyn std::error::Error>> {
    let mut open = Vec::with_capacity(conns);
    for i in 0..conns {
        let ws = WebSocket::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        ws.on_message(move |_| {
            let _ = tx.send(());
        });
        ws.open(url, &[]).await?;
        tokio::spawn({
            let ws = ws.clone();
            async move { ws.read().await }
        });
        for k in 0..4 {
            ws.send_text(&messages[(i * 4 + k) % messages.len()])?;
        }
        for _ in 0..4 {
            rx.recv().await;
        }
        open.push(ws);
    }
    Ok(open)
}

/// The sans-io cost alone: a client `Connection` compresses each message, a server
/// `Connection` inflates it, no sockets.
fn codec_only(messages: &[String]) {
    use unisock::protocol::{deflate::DeflateParams, Connection, Event, Role};
    for (mode, params) in [
        ("off", None),
        (
            "server-default",
            Some(DeflateParams {
                server_no_context_takeover: true,
                ..DeflateParams::default()
            }),
        ),
        ("context-takeover", Some(DeflateParams::default())),
        (
            "no-takeover-both",
            Some(DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                ..DeflateParams::default()
            }),
        ),
    ] {
        let mut client = Connection::new(Role::Client, unisock::Limits::default());
        let mut server = Connection::new(Role::Server, unisock::Limits::default());
        let level = std::env::var("LEVEL")
            .ok()
            .and_then(|l| l.parse().ok())
            .unwrap_or(1);
        if let Some(p) = params {
            client.set_deflate(&p, &DeflateConfig::default().level(level));
            server.set_deflate(&p, &DeflateConfig::default().level(level));
        }
        let n = 200_000;
        let start = Instant::now();
        let mut bytes = 0usize;
        for i in 0..n {
            let m = &messages[i % messages.len()];
            client.send_text(m).unwrap_or_default();
            let wire = client.take_data_to_send();
            bytes += wire.len();
            server.receive_data(&wire);
            while let Some(ev) = server.next_event() {
                if !matches!(ev, Event::Message(_)) {
                    panic!("{ev:?}");
                }
            }
        }
        let t = start.elapsed().as_secs_f64();
        println!("codec only, client->server, {mode:<17}: {:>8.0} msgs/s, {:.2} us/msg, wire/payload {:.3}", n as f64 / t, t * 1e6 / n as f64, bytes as f64 / messages.iter().cycle().take(n).map(String::len).sum::<usize>() as f64);
    }
}
