//! permessage-deflate over real sockets: negotiation between unisock peers and with a raw
//! client, what goes on the wire, the options per socket and per registry, and the
//! inflate bomb.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::net::SocketAddr;

use common::{open_client, spawn_echo_server, spawn_server, with_timeout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use unisock::{DeflateConfig, MsgEvent, WebSocket, WebSocketExt, WebSockets};

/// A raw client that offers `extensions` and returns the stream and the server's
/// `Sec-WebSocket-Extensions` answer ("" when none).
async fn raw_client_offering(addr: SocketAddr, extensions: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: {extensions}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(with_timeout(tcp.read(&mut b)).await.unwrap(), 1);
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let answer = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("sec-websocket-extensions:")
                .then(|| l.split_once(':').unwrap().1.trim().to_string())
        })
        .unwrap_or_default();
    (tcp, answer)
}

/// A masked client frame with the first header byte `first` (FIN, RSV, opcode).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = common::client_frame(first & 0x0f, payload);
    frame[0] = first;
    frame
}

/// Reads one server frame: (first header byte, payload).
async fn read_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    with_timeout(tcp.read_exact(&mut head)).await.unwrap();
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            tcp.read_exact(&mut b).await.unwrap();
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            tcp.read_exact(&mut b).await.unwrap();
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
    with_timeout(tcp.read_exact(&mut payload)).await.unwrap();
    (head[0], payload)
}

/// Raw-inflates a permessage-deflate payload (tail added back).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut d = flate2::Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(4 << 20);
    d.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .unwrap();
    out
}

#[tokio::test]
async fn unisock_peers_negotiate_and_round_trip_a_mebibyte() {
    let addr = spawn_echo_server().await;
    let (ws, mut events) = open_client(&format!("ws://{addr}/")).await;
    // The server default: on, with its own context reset per message.
    assert_eq!(
        ws.extensions(),
        "permessage-deflate; server_no_context_takeover"
    );
    let text = "{\"user\":\"ada\",\"op\":\"move\",\"x\":12,\"y\":-3},".repeat(1 << 20 >> 5);
    for _ in 0..2 {
        ws.send_text(&text).unwrap();
        assert_eq!(
            with_timeout(events.messages.recv()).await,
            Some(MsgEvent::Text(text.clone()))
        );
    }
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    ws.send_binary(&data).unwrap();
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Binary(data))
    );
}

#[tokio::test]
async fn the_server_compresses_on_the_wire() {
    let addr = spawn_echo_server().await;
    let (mut tcp, answer) = raw_client_offering(
        addr,
        "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits",
    )
    .await;
    // The first offer (8-bit server window) is declined, the second accepted.
    assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
    // RFC 7692 §7.2.3.1: "Hello", compressed, RSV1 set.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    tcp.write_all(&client_frame(0xc1, &hello)).await.unwrap();
    // The echo is under the minimum size (32 bytes): sent uncompressed.
    assert_eq!(read_frame(&mut tcp).await, (0x81, b"Hello".to_vec()));
    // A long repetitive message goes out far smaller than it is.
    let text = "abcdefgh".repeat(8192);
    tcp.write_all(&client_frame(0x81, text.as_bytes()))
        .await
        .unwrap();
    let (first, payload) = read_frame(&mut tcp).await;
    assert_eq!(first, 0xc1);
    assert!(payload.len() < text.len() / 50, "{}", payload.len());
    assert_eq!(inflate(&payload), text.as_bytes());
    // A ping is never compressed.
    tcp.write_all(&client_frame(0x89, b"ping")).await.unwrap();
    assert_eq!(read_frame(&mut tcp).await, (0x8a, b"ping".to_vec()));
}

#[tokio::test]
async fn no_offer_or_disabled_means_no_compression() {
    // A client without an offer, a unisock server: plain frames.
    let addr = spawn_echo_server().await;
    let mut tcp = common::raw_client(addr, "/").await;
    tcp.write_all(&client_frame(0x81, &[b'a'; 1000]))
        .await
        .unwrap();
    let (first, payload) = read_frame(&mut tcp).await;
    assert_eq!((first, payload.len()), (0x81, 1000));
    // A frame with RSV1 is then a protocol error (1002).
    tcp.write_all(&client_frame(
        0xc1,
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
    ))
    .await
    .unwrap();
    let (first, payload) = read_frame(&mut tcp).await;
    assert_eq!((first, &payload[..2]), (0x88, &[0x03, 0xea][..]));

    // A server socket with compression disabled declines the offer.
    let (addr, _) = spawn_server(|ws| ws.set_deflate(DeflateConfig::disabled())).await;
    let (_tcp, answer) = raw_client_offering(addr, "permessage-deflate").await;
    assert_eq!(answer, "");

    // A client with compression disabled does not offer it.
    let addr = spawn_echo_server().await;
    let ws = WebSocket::new();
    ws.set_deflate(DeflateConfig::disabled());
    with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap();
    assert_eq!(ws.extensions(), "");
}

#[tokio::test]
async fn options_per_socket_and_per_registry() {
    // Per socket: the server asks the client not to take its context over and limits
    // its window; the unisock client follows.
    let (addr, _) = spawn_server(|ws| {
        ws.set_deflate(
            DeflateConfig::default()
                .client_no_context_takeover(true)
                .client_max_window_bits(10)
                .server_max_window_bits(12),
        );
        let echo = ws.clone();
        ws.on_message(move |m| {
            if let MsgEvent::Text(t) = m {
                let _ = echo.send_text(&t);
            }
        });
    })
    .await;
    let (ws, mut events) = open_client(&format!("ws://{addr}/")).await;
    assert_eq!(
        ws.extensions(),
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=10"
    );
    let text = "0123456789".repeat(10_000);
    ws.send_text(&text).unwrap();
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text(text))
    );

    // Per registry: disabled for every socket it upgrades.
    let sockets = WebSockets::new();
    sockets.set_deflate(DeflateConfig::disabled());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { sockets.serve(listener, |_| Some(WebSocket::new())).await });
    let (_tcp, answer) = raw_client_offering(addr, "permessage-deflate").await;
    assert_eq!(answer, "");
}

/// Writes a raw deflate stream (one fixed-Huffman block, not final) that inflates to
/// `size` zero bytes: a literal 0, then "copy 258 bytes from distance 1" over and over,
/// 13 bits for every 258 bytes (RFC 1951 §3.2.6).
fn deflate_bomb(size: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u32,
        n: u32,
    }
    impl Bits {
        /// `n` bits of `v`, least significant first.
        fn put(&mut self, v: u32, n: u32) {
            self.acc |= v << self.n;
            self.n += n;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// A Huffman code of `n` bits, most significant first.
        fn code(&mut self, code: u32, n: u32) {
            self.put(code.reverse_bits() >> (32 - n), n);
        }
    }
    let mut bits = Bits {
        out: Vec::with_capacity(size / 150),
        acc: 0,
        n: 0,
    };
    bits.put(0, 1); // BFINAL = 0
    bits.put(1, 2); // BTYPE = 01, fixed Huffman
    bits.code(0x30, 8); // literal 0
    for _ in 0..(size - 1) / 258 {
        bits.code(0xc5, 8); // length 258 (symbol 285)
        bits.code(0, 5); // distance 1
    }
    bits.code(0, 7); // end of block
    bits.put(0, 7); // pad
    bits.out
}

/// Peak resident memory of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn an_inflate_bomb_closes_with_1009_before_the_memory_is_spent() {
    // 6.6 MB on the wire that would inflate to 1 GiB; the default message limit is 64 MiB.
    const GIB: usize = 1 << 30;
    let bomb = deflate_bomb(GIB);
    assert!(bomb.len() < 7 << 20, "{}", bomb.len());
    // The bomb is a valid deflate stream: its first 1 MiB inflates to zeros.
    let mut head = vec![0u8; 1 << 20];
    flate2::Decompress::new(false)
        .decompress(&bomb, &mut head, flate2::FlushDecompress::None)
        .unwrap();
    assert!(head.iter().all(|&b| b == 0));

    let (addr, mut closes) = spawn_server(|_| {}).await;
    let (tcp, answer) = raw_client_offering(addr, "permessage-deflate").await;
    assert!(answer.starts_with("permessage-deflate"));
    let frame = client_frame(0xc2, &bomb);
    drop(head);
    // The server stops reading after 64 MiB of output: write in the background and
    // ignore the broken pipe.
    let (mut rd, mut wr) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&frame).await;
        wr
    });
    let close = with_timeout(closes.recv()).await.unwrap();
    assert_eq!(close.code, 1009, "{close}");
    assert!(close.reason.contains("67108864"), "{close}");
    // The client sees the 1009 close frame too.
    let mut first = [0u8; 4];
    if rd.read_exact(&mut first).await.is_ok() {
        assert_eq!(first[0], 0x88);
        assert_eq!(&first[2..], &[0x03, 0xf1]);
    }
    drop(writer);
    // Nowhere near 1 GiB was allocated.
    let peak = peak_rss_kib();
    assert!(peak < 512 * 1024, "peak RSS {peak} KiB");
}
