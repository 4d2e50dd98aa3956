//! Soak test driver, run by `./build.sh soak SECONDS [CONNECTIONS]`.
//!
//! - `soak server ADDR`: an echo server on the `WebSockets` registry; `/stats` answers one
//!   text message `sockets=N rss_kb=M` (the registry's live count and the process's RSS).
//! - `soak load URL CONNECTIONS SECONDS`: every connection sends numbered messages and checks
//!   that each comes back exactly once and in order; prints the totals; exits 1 on any loss,
//!   duplicate or reordering.
//! - `soak chaos URL SECONDS`: meanwhile opens and drops connections, sends malformed
//!   frames and garbage heads, and vanishes mid-frame.
//! - `soak stats URL`: prints the server's `/stats` line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use unisock::{MsgEvent, WebSocket, WebSockets};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let code = match arg(0).as_str() {
        "server" => server(&arg(1)).await,
        "load" => load(&arg(1), arg(2).parse().unwrap_or(100), secs(&arg(3))).await,
        "chaos" => chaos(&arg(1), secs(&arg(2))).await,
        "stats" => match stats(&arg(1)).await {
            Some(line) => {
                println!("{line}");
                0
            }
            None => 1,
        },
        _ => {
            eprintln!("usage: soak server ADDR | load URL CONNS SECS | chaos URL SECS | stats URL");
            2
        }
    };
    std::process::exit(code);
}

fn secs(s: &str) -> Duration {
    Duration::from_secs(s.parse().unwrap_or(10))
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

async fn server(addr: &str) -> i32 {
    let Ok(listener) = tokio::net::TcpListener::bind(addr).await else {
        return 1;
    };
    match listener.local_addr() {
        Ok(a) => println!("listening on ws://{a}"),
        Err(_) => return 1,
    }
    let sockets = WebSockets::new();
    let registry = sockets.clone();
    let serving = sockets.serve(listener, move |request| {
        let ws = WebSocket::new();
        let me = ws.clone();
        if request.uri().path() == "/stats" {
            let line = format!("sockets={} rss_kb={}", registry.len(), rss_kb());
            ws.on_open(move || {
                let _ = me.send_text(&line);
                let _ = me.close(1000, "");
            });
        } else {
            ws.on_message(move |msg| {
                let _ = match msg {
                    MsgEvent::Text(t) => me.send_text(&t),
                    MsgEvent::Binary(b) => me.send_binary(&b),
                };
            });
        }
        Some(ws)
    });
    // `serve` never returns: accept errors (file descriptors run out) are waited out.
    match serving.await {}
}

async fn stats(url: &str) -> Option<String> {
    let ws = WebSocket::new();
    let line = Arc::new(std::sync::Mutex::new(None));
    let slot = line.clone();
    ws.on_message(move |m| {
        if let MsgEvent::Text(t) = m {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        }
    });
    ws.open(&format!("{}/stats", url.trim_end_matches('/')), &[])
        .await
        .ok()?;
    ws.read().await;
    let got = line.lock().unwrap_or_else(|e| e.into_inner()).take();
    got
}

#[derive(Default)]
struct Totals {
    sent: AtomicU64,
    received: AtomicU64,
    bad: AtomicU64,
    failed_opens: AtomicU64,
}

async fn load(url: &str, conns: usize, duration: Duration) -> i32 {
    let totals = Arc::new(Totals::default());
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(conns);
    for c in 0..conns {
        let (url, totals) = (url.to_string(), totals.clone());
        tasks.push(tokio::spawn(async move {
            one_connection(&url, c, deadline, &totals).await
        }));
        if c % 100 == 99 {
            tokio::task::yield_now().await;
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let (sent, received, bad, failed) = (
        totals.sent.load(Ordering::Relaxed),
        totals.received.load(Ordering::Relaxed),
        totals.bad.load(Ordering::Relaxed),
        totals.failed_opens.load(Ordering::Relaxed),
    );
    println!(
        "load: {conns} connections, {sent} messages sent, {received} echoed exactly once and in order, {bad} lost/duplicated/reordered, {failed} failed opens"
    );
    i32::from(sent == 0 || received != sent || bad != 0 || failed != 0)
}

/// One client: send numbered messages, a window of 8 in flight, check each echo's number.
async fn one_connection(url: &str, c: usize, deadline: Instant, totals: &Totals) {
    use futures_util::StreamExt;
    let mut ws = WebSocket::new();
    if ws.open(url, &[]).await.is_err() {
        totals.failed_opens.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let (mut next_send, mut next_recv) = (0u64, 0u64);
    while Instant::now() < deadline || next_recv < next_send {
        while next_send < next_recv + 8 && Instant::now() < deadline {
            if ws.send_text(&format!("{c}:{next_send}")).is_err() {
                break;
            }
            next_send += 1;
            totals.sent.fetch_add(1, Ordering::Relaxed);
        }
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(MsgEvent::Text(t))) if t == format!("{c}:{next_recv}") => {
                next_recv += 1;
                totals.received.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                totals
                    .bad
                    .fetch_add(next_send - next_recv, Ordering::Relaxed);
                return;
            }
        }
    }
    let _ = ws.close(1000, "");
    let _ = tokio::time::timeout(Duration::from_secs(10), ws.closed()).await;
}

async fn chaos(url: &str, duration: Duration) -> i32 {
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_string();
    let deadline = Instant::now() + duration;
    let mut rounds = 0u64;
    while Instant::now() < deadline {
        rounds += 1;
        let Ok(mut tcp) = tokio::net::TcpStream::connect(&addr).await else {
            continue;
        };
        let head = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        let bad: &[u8] = match rounds % 5 {
            0 => b"\x81\x05hello",                    // unmasked client frame
            1 => b"\x81\x85\x01\x02\x03\x04\xff\xfe", // truncated masked frame, then vanish
            2 => b"\xc1\x80\x00\x00\x00\x00",         // RSV bits set
            3 => b"\x89\xfe\x01\x00\x00\x00\x00\x00", // control frame over 125 bytes
            _ => b"",                                 // handshake, then vanish
        };
        if rounds % 7 == 0 {
            let _ = tcp.write_all(b"NOT HTTP AT ALL\r\n\r\n").await;
        } else {
            let _ = tcp.write_all(head.as_bytes()).await;
            let _ = tcp.write_all(bad).await;
        }
        let mut buf = [0u8; 512];
        let _ = tokio::time::timeout(Duration::from_millis(20), tcp.read(&mut buf)).await;
    }
    println!("chaos: {rounds} hostile connections");
    0
}
