//! Soak test driver, run by `./build.sh soak SECONDS [CONNECTIONS]`.
//!
//! - `soak server ADDR`: an echo server on the `WebSockets` registry; `/stats` answers one
//!   text message `sockets=N rss_kb=M` (the registry's live count and the process's RSS).
//! - `soak load URL CONNECTIONS SECONDS`: every connection sends numbered messages and checks
//!   that each comes back exactly once and in order; prints the totals; exits 1 on any loss,
//!   duplicate or reordering.
//! - `soak chaos URL SECONDS`: meanwhile opens and drops connections, sends malformed
//!   frames and garbage heads, and vanishes mid-frame; checks that each is refused or
//!   failed with the right close code, that the server keeps answering, and that it still
//!   echoes at the end; exits 1 otherwise.
//! - `soak bomb URL CONNECTIONS SECONDS`: opens connections that negotiate
//!   permessage-deflate and each send all but the end of one compressed message that
//!   inflates to 60 MiB, then hold it; each must be held or closed with 1013 (the server's
//!   memory budget) or 1009; exits 1 on any other answer. Its cost shows in `/stats`.
//! - `soak stats URL`: prints the server's `/stats` line.
// Native only. `cargo test --target wasm32-unknown-unknown` (what `wasm-pack test` runs)
// builds every example, so on wasm32 this one is an empty module, without a `main`.
#![cfg_attr(target_arch = "wasm32", no_main)]
#![cfg(not(target_arch = "wasm32"))]

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
        "bomb" => bomb(&arg(1), arg(2).parse().unwrap_or(1000), secs(&arg(3))).await,
        "stats" => match stats(&arg(1)).await {
            Some(line) => {
                println!("{line}");
                0
            }
            None => 1,
        },
        _ => {
            eprintln!("usage: soak server ADDR | load URL CONNS SECS | chaos URL SECS | bomb URL CONNS SECS | stats URL");
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

/// What a sound server does with one hostile connection.
#[derive(Clone, Copy)]
enum Expect {
    /// Refuses the upgrade with a 4xx answer: never a 101.
    Refused,
    /// Upgrades, then fails the connection with a close frame with this code, echoing
    /// nothing.
    Fails(u16),
    /// Upgrades; the attacker then vanishes (mid-frame, or before any frame).
    Upgrades,
    /// Upgrades and echoes a valid message: the server still serves between attacks.
    Echoes,
}

/// One kind of hostile connection: what it sends after its request head, and the answer.
struct Attack {
    name: &'static str,
    head: Head,
    bytes: &'static [u8],
    expect: Expect,
}

#[derive(Clone, Copy, PartialEq)]
enum Head {
    Valid,
    NoKey,
    NotHttp,
}

const ATTACKS: &[Attack] = &[
    Attack {
        name: "unmasked client frame",
        head: Head::Valid,
        bytes: b"\x81\x05hello",
        expect: Expect::Fails(1002),
    },
    Attack {
        name: "truncated masked frame, then vanish",
        head: Head::Valid,
        bytes: b"\x81\x85\x01\x02\x03\x04\xff\xfe",
        expect: Expect::Upgrades,
    },
    Attack {
        name: "RSV bits set",
        head: Head::Valid,
        bytes: b"\xc1\x80\x00\x00\x00\x00",
        expect: Expect::Fails(1002),
    },
    Attack {
        name: "control frame over 125 bytes",
        head: Head::Valid,
        bytes: b"\x89\xfe\x01\x00\x00\x00\x00\x00",
        expect: Expect::Fails(1002),
    },
    Attack {
        name: "handshake, then vanish",
        head: Head::Valid,
        bytes: b"",
        expect: Expect::Upgrades,
    },
    Attack {
        name: "not HTTP at all",
        head: Head::NotHttp,
        bytes: b"",
        expect: Expect::Refused,
    },
    Attack {
        name: "text that is not UTF-8",
        head: Head::Valid,
        bytes: b"\x81\x82\x00\x00\x00\x00\xff\xfe",
        expect: Expect::Fails(1007),
    },
    Attack {
        name: "frame claiming 1 TiB",
        head: Head::Valid,
        bytes: b"\x82\xff\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        expect: Expect::Fails(1009),
    },
    Attack {
        name: "upgrade without Sec-WebSocket-Key",
        head: Head::NoKey,
        bytes: b"",
        expect: Expect::Refused,
    },
    Attack {
        name: "reserved opcode",
        head: Head::Valid,
        bytes: b"\x83\x80\x00\x00\x00\x00",
        expect: Expect::Fails(1002),
    },
    VALID,
];

/// A well-behaved client among the attackers, and the final check that the server serves.
const VALID: Attack = Attack {
    name: "valid message",
    head: Head::Valid,
    // "chaos", masked with 01 02 03 04.
    bytes: b"\x81\x85\x01\x02\x03\x04\x62\x6a\x62\x6b\x72",
    expect: Expect::Echoes,
};

/// How long the server may take to answer one hostile connection, as long as `load` gives
/// it for an echo: slower than that, it has stopped answering.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs hostile connections for `duration`, then a valid one. Exits 1 if the server let
/// one through (upgraded a bad request, echoed a bad frame, failed it with the wrong code
/// or not at all), stopped answering, or no longer echoes afterwards. Connections that
/// cannot be made are counted but do not fail the run: that is this process's limit.
async fn chaos(url: &str, duration: Duration) -> i32 {
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_string();
    let deadline = Instant::now() + duration;
    // Each way the server let something through, and how many times.
    let mut failures = std::collections::BTreeMap::<String, u64>::new();
    let mut fail = |why: String| *failures.entry(why).or_default() += 1;
    let (mut rounds, mut unreachable) = (0u64, 0u64);
    while Instant::now() < deadline {
        let attack = &ATTACKS[(rounds % ATTACKS.len() as u64) as usize];
        // Every other pass over the attacks sends its bytes right behind the request head,
        // so both the bytes read with the head and those read after the 101 get attacked.
        let pipelined = (rounds / ATTACKS.len() as u64) % 2 == 0;
        rounds += 1;
        match tokio::time::timeout(ANSWER_TIMEOUT, attack_once(&addr, attack, pipelined)).await {
            Ok(Ok(())) => {}
            Ok(Err(Outcome::Unreachable)) => {
                unreachable += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(Err(Outcome::Through(why))) => fail(format!("{}: {why}", attack.name)),
            Err(_) => fail(format!("{}: no answer in {ANSWER_TIMEOUT:?}", attack.name)),
        }
        // A pause every 4 rounds (about 1,000 a second here, a third of an unpaced loop's
        // rate): plenty of abuse, and the CPU (two cores in CI) left to the load beside.
        if rounds % 4 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // The server must still serve a well-behaved client after all that (three tries to
    // connect, in case this process is short of ports for a moment).
    let mut tries = 0;
    loop {
        tries += 1;
        match tokio::time::timeout(ANSWER_TIMEOUT, attack_once(&addr, &VALID, false)).await {
            Ok(Ok(())) => {}
            Ok(Err(Outcome::Unreachable)) if tries < 3 => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Ok(Err(Outcome::Unreachable)) => fail("final echo: could not connect".into()),
            Ok(Err(Outcome::Through(why))) => fail(format!("final echo: {why}")),
            Err(_) => fail(format!("final echo: no answer in {ANSWER_TIMEOUT:?}")),
        }
        break;
    }
    let through: u64 = failures.values().sum();
    println!(
        "chaos: {rounds} hostile connections ({} kinds), {unreachable} could not connect, {through} got through",
        ATTACKS.len(),
    );
    for (why, n) in &failures {
        println!("chaos: FAIL {n}x {why}");
    }
    i32::from(through != 0)
}

/// How much each bomb's message inflates to: under the default message limit (64 MiB),
/// so only the server's memory budget stops it.
const BOMB_INFLATED: usize = 60 << 20;

/// Runs `conns` deflate bombs (see the module docs) until `duration` has passed.
async fn bomb(url: &str, conns: usize, duration: Duration) -> i32 {
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_string();
    let deadline = Instant::now() + duration;
    // Raw deflate of the zeros, sync-flushed, masked once for every connection's frame.
    let mut deflate = flate2::Compress::new(flate2::Compression::best(), false);
    let mut compressed = Vec::with_capacity(BOMB_INFLATED / 500);
    if deflate
        .compress_vec(
            &vec![0u8; BOMB_INFLATED],
            &mut compressed,
            flate2::FlushCompress::Sync,
        )
        .is_err()
    {
        return 1;
    }
    let frame = std::sync::Arc::new(masked_frame(
        unisock::protocol::Opcode::Binary,
        true,
        &compressed,
    ));
    let outcomes = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        u64,
    >::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let (addr, frame, outcomes) = (addr.clone(), frame.clone(), outcomes.clone());
        tasks.spawn(async move {
            let outcome = one_bomb(&addr, &frame, deadline).await;
            *outcomes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(outcome)
                .or_default() += 1;
        });
    }
    while tasks.join_next().await.is_some() {}
    let outcomes = outcomes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let bad: u64 = outcomes
        .iter()
        .filter(|(what, _)| what.starts_with("FAIL"))
        .map(|(_, n)| n)
        .sum();
    let summary: Vec<String> = outcomes
        .iter()
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    println!("bomb: {conns} connections: {}", summary.join(", "));
    i32::from(bad != 0)
}

/// One bomb: what became of it ("held", "closed 1013", "unreachable", or a "FAIL ...").
async fn one_bomb(addr: &str, frame: &[u8], deadline: Instant) -> String {
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
        return "unreachable".into();
    };
    let head = format!(
        "GET /bomb HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    );
    let mut buf = Vec::new();
    if tcp.write_all(head.as_bytes()).await.is_err() {
        return "unreachable".into();
    }
    match read_status(&mut tcp, &mut buf).await {
        Some(101) => {}
        Some(503) => return "refused 503".into(),
        other => return format!("FAIL answered {other:?}"),
    }
    if tcp.write_all(frame).await.is_err() {
        return "closed while sending".into();
    }
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, read_frame(&mut tcp, &mut buf)).await {
        Err(_) => "held".into(),
        Ok(Some((0x8, payload))) => {
            match payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]])) {
                Some(code @ (1009 | 1013)) => format!("closed {code}"),
                other => format!("FAIL closed with {other:?}"),
            }
        }
        Ok(Some((op, _))) => format!("FAIL sent a frame of opcode {op}"),
        Ok(None) => "FAIL dropped without a close frame".into(),
    }
}

/// A masked client frame with `opcode`; `compressed` sets RSV1, and FIN is left unset (the
/// message is never finished).
fn masked_frame(opcode: unisock::protocol::Opcode, compressed: bool, payload: &[u8]) -> Vec<u8> {
    use unisock::protocol::{extend_masked, FrameHeader};
    let key = [1u8, 2, 3, 4];
    let header = FrameHeader {
        fin: false,
        rsv: if compressed { 0b100 } else { 0 },
        opcode,
        mask: Some(key),
        payload_len: payload.len() as u64,
    };
    let mut out = Vec::with_capacity(FrameHeader::MAX_LEN + payload.len());
    header.encode(&mut out);
    extend_masked(&mut out, payload, key, 0);
    out
}

enum Outcome {
    /// No connection to the server: inconclusive (this process's sockets or ports).
    Unreachable,
    /// The server did something a sound server does not.
    Through(String),
}

async fn attack_once(addr: &str, attack: &Attack, pipelined: bool) -> Result<(), Outcome> {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|_| Outcome::Unreachable)?;
    let through = |why: String| Outcome::Through(why);
    let head = match attack.head {
        Head::NotHttp => "NOT HTTP AT ALL\r\n\r\n".to_string(),
        Head::Valid | Head::NoKey => format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
            if attack.head == Head::Valid { "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" } else { "" }
        ),
    };
    // Writes may fail once the server has refused us: its answer is what counts.
    let mut first = head.into_bytes();
    if pipelined {
        first.extend_from_slice(attack.bytes);
    }
    let _ = tcp.write_all(&first).await;
    let mut buf = Vec::new();
    let status = read_status(&mut tcp, &mut buf).await;
    match (attack.expect, status) {
        (_, None) => return Err(through("closed without an HTTP answer".into())),
        (Expect::Refused, Some(101)) => return Err(through("upgraded".into())),
        (Expect::Refused, Some(code)) if (400..500).contains(&code) => return Ok(()),
        (Expect::Refused, Some(code)) => return Err(through(format!("answered {code}"))),
        (_, Some(101)) => {}
        (_, Some(code)) => return Err(through(format!("refused a valid upgrade with {code}"))),
    }
    if !pipelined {
        let _ = tcp.write_all(attack.bytes).await;
    }
    match attack.expect {
        Expect::Refused | Expect::Upgrades => Ok(()), // vanish
        Expect::Fails(want) => match read_frame(&mut tcp, &mut buf).await {
            Some((0x8, payload)) if payload.len() >= 2 => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if code == want {
                    Ok(())
                } else {
                    Err(through(format!("closed with {code}, not {want}")))
                }
            }
            Some((0x8, _)) => Err(through(format!("closed without a code, not {want}"))),
            Some((op, _)) => Err(through(format!("answered a frame of opcode {op}"))),
            None => Err(through(format!(
                "dropped the connection without closing with {want}"
            ))),
        },
        Expect::Echoes => match read_frame(&mut tcp, &mut buf).await {
            Some((0x1, payload)) if payload == b"chaos" => Ok(()),
            Some((op, payload)) => Err(through(format!(
                "answered a valid message with opcode {op}, {} bytes",
                payload.len()
            ))),
            None => Err(through("dropped a valid connection".into())),
        },
    }
}

/// Reads a response head into `buf` (leaving what follows it) and returns its status.
async fn read_status(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<u16> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let status = std::str::from_utf8(&buf[..end])
                .ok()?
                .strip_prefix("HTTP/1.1 ")?
                .get(..3)?
                .parse()
                .ok();
            buf.drain(..end + 4);
            return status;
        }
        if buf.len() > 16 << 10 || read_some(tcp, buf).await == 0 {
            return None;
        }
    }
}

/// Reads the server's next frame other than ping and pong: its opcode and payload. `None`
/// when the connection ends first.
async fn read_frame(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    loop {
        if let Some((op, payload, len)) = parse_server_frame(buf) {
            buf.drain(..len);
            if op == 0x9 || op == 0xa {
                continue;
            }
            return Some((op, payload));
        }
        if read_some(tcp, buf).await == 0 {
            return None;
        }
    }
}

/// One whole frame at the start of `buf`: opcode, unmasked payload, length on the wire.
fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, mut at) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let mask: Option<[u8; 4]> = if b1 & 0x80 != 0 {
        at += 4;
        Some(buf.get(at - 4..at)?.try_into().ok()?)
    } else {
        None
    };
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    let mut payload = buf.get(at..end)?.to_vec();
    if let Some(mask) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Some((b0 & 0x0f, payload, end))
}

/// Appends what the server sends next; 0 at the end of the stream or on an error (a reset
/// after the server's last word ends it too).
async fn read_some(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 4096];
    match tcp.read(&mut chunk).await {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            n
        }
        Err(_) => 0,
    }
}
