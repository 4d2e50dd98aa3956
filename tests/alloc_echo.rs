//! Allocations on the echo hot path, counted by a global allocator: a unisock server
//! echoing small messages over a real 127.0.0.1 socket allocates nothing once warm (the
//! owned payload `MsgEvent` hands to the handler takes the buffer of the last message
//! sent), and the read buffer, the connection's output buffer and the writer's buffer are
//! reused.
#![cfg(not(target_arch = "wasm32"))]
#![allow(unsafe_code, reason = "a counting GlobalAlloc needs unsafe impls")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use unisock::WebSocket;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Bytes asked for by allocations and reallocations (a reallocation counts its new size).
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Held by each test while it counts: the counters are the whole process's.
static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counter is an atomic and allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Starts a one-connection unisock echo server (as examples/echo_server.rs) on its own
/// thread; returns its address.
fn spawn_server() -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let ws = WebSocket::new();
            let echo = ws.clone();
            ws.on_message(move |msg| {
                let _ = echo.send(msg);
            });
            ws.upgrade(tcp).await.unwrap();
            ws.read().await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

/// A masked client text frame of `len` bytes (len < 126).
fn frame(len: usize) -> Vec<u8> {
    let key = [1, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | len as u8];
    f.extend_from_slice(&key);
    f.extend((0..len).map(|i| b'x' ^ key[i % 4]));
    f
}

/// Sends one message and reads its echo (an unmasked frame of the same length).
fn round_trip(tcp: &mut TcpStream, frame: &[u8], len: usize, echo: &mut [u8; 127]) {
    tcp.write_all(frame).unwrap();
    let echo = &mut echo[..2 + len];
    tcp.read_exact(echo).unwrap();
    assert_eq!(&echo[..2], &[0x81, len as u8]);
    assert!(echo[2..].iter().all(|&b| b == b'x'));
}

/// Connects to the echo server at `addr` and completes the opening handshake.
fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    tcp
}

/// Holds the counters for the calling test, and connects it to a new echo server.
fn counting_client() -> (std::sync::MutexGuard<'static, ()>, TcpStream) {
    let counting = COUNTING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (counting, connect(spawn_server()))
}

/// Once warm, echoing a small message allocates nothing: the owned `MsgEvent` the handler
/// is given takes the buffer of the last message sent (copied into the output), and the
/// read, output and writer buffers are reused.
#[test]
fn echoing_small_messages_allocates_nothing_once_warm() {
    let (_counting, mut tcp) = counting_client();

    let (len, n) = (100, 2000u64);
    let f = frame(len);
    let mut echo = [0u8; 127];
    for _ in 0..100 {
        round_trip(&mut tcp, &f, len, &mut echo); // warm up: buffers reach their working size
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..n {
        round_trip(&mut tcp, &f, len, &mut echo);
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    // A little slack for one-off growth (e.g. a runtime's internal queues); the test's own
    // side allocates nothing. One allocation per message would be 2,000.
    assert!(
        allocs <= 20,
        "{allocs} allocations for {n} echoed messages ({:.2} per message)",
        allocs as f64 / n as f64
    );
}

/// Echoes one binary message of `len` bytes (masked with a zero key, so the payload goes as
/// it is) and reads the echo back whole into `echo`.
fn big_round_trip(tcp: &mut TcpStream, frame: &[u8], echo: &mut Vec<u8>) {
    tcp.write_all(frame).unwrap();
    let mut head = [0u8; 10];
    tcp.read_exact(&mut head).unwrap();
    assert_eq!(head[..2], [0x82, 127]);
    let len = usize::try_from(u64::from_be_bytes(head[2..].try_into().unwrap())).unwrap();
    assert_eq!(len, frame.len() - 14);
    echo.resize(len, 0);
    tcp.read_exact(echo).unwrap();
    assert!(echo[..] == frame[14..], "the echo differs");
}

/// Big messages echoed one after another reuse the server's memory: the buffer of an echo
/// that was written is kept, and the next message as big is received into it, instead of a
/// new buffer grown (and faulted in) as the bytes arrive.
#[test]
fn echoing_big_messages_reuses_their_buffers() {
    let (_counting, mut tcp) = counting_client();
    let len = 1 << 20;
    let mut frame = vec![0x82, 0xff];
    frame.extend_from_slice(&(len as u64).to_be_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend((0..len).map(|i| (i % 251) as u8));
    let mut echo = Vec::with_capacity(len);
    big_round_trip(&mut tcp, &frame, &mut echo);
    let before = BYTES.load(Ordering::Relaxed);
    let n = 20;
    for _ in 0..n {
        big_round_trip(&mut tcp, &frame, &mut echo);
    }
    let per_message = (BYTES.load(Ordering::Relaxed) - before) / n;
    // Growing a fresh buffer to 1 MiB as the bytes arrive asks for about 2 MiB in all;
    // reused, a message asks for a few bytes. The bound leaves room for a few messages of
    // the 20 that begin before the last echo's buffer is handed back.
    assert!(
        per_message < len as u64 / 2,
        "{per_message} bytes allocated per 1 MiB message echoed"
    );
}
