//! What an idle connection keeps on the heap, counted by a global allocator: a unisock echo
//! server (as examples/echo_server.rs, one task per connection) holds its sockets open
//! over real 127.0.0.1 connections, and the live heap grows by at most `IDLE_HEAP_MAX` per
//! connection. An idle connection keeps its socket state and its event loop, but no read
//! buffer (reads share one per thread), no writer task (one runs only while output waits)
//! and no timer or write in progress. Traffic leaves little behind: after a big message
//! and a small one a connection keeps about what an idle one keeps, after a burst of small
//! ones at most its output buffer (and after big ones, the last one's buffer), and once
//! probed for quiet none of these.
#![cfg(not(target_arch = "wasm32"))]
#![allow(unsafe_code, reason = "a counting GlobalAlloc needs unsafe impls")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicI64, Ordering};

use unisock::{WebSocket, WebSocketExt};

/// The most heap an idle connection may keep, the server task's own future included
/// (about 380 bytes here): about 2,310 bytes. bench/NOTES.md says where they go.
const IDLE_HEAP_MAX: i64 = 2_450;

struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

fn size(layout: Layout) -> i64 {
    i64::try_from(layout.size()).unwrap_or(i64::MAX)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counter is an atomic and allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(size(layout), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(size(layout), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            i64::try_from(new_size).unwrap_or(i64::MAX) - size(layout),
            Ordering::Relaxed,
        );
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Held by each test while it counts: the count is the whole process's.
static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Opens `n` WebSocket connections to `addr`, each upgraded and then pinged once: its
/// pong shows that the server's event loop runs for it.
fn open_idle(addr: std::net::SocketAddr, n: usize, into: &mut Vec<std::net::TcpStream>) {
    for _ in 0..n {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
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
        assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
        // A masked ping with an empty payload; the answer is an empty pong.
        tcp.write_all(&[0x89, 0x80, 1, 2, 3, 4]).unwrap();
        let mut pong = [0u8; 2];
        tcp.read_exact(&mut pong).unwrap();
        assert_eq!(pong, [0x8a, 0x00]);
        into.push(tcp);
    }
}

/// A current-thread runtime (run by whoever blocks on it) with an echo server on it, as
/// examples/echo_server.rs, and the server's address.
fn echo_server() -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    echo_server_with(|_| {})
}

/// `echo_server`, with each socket set up by `setup` before its upgrade.
fn echo_server_with(setup: fn(&WebSocket)) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let (tcp, _) = unisock::server::accept(&listener).await;
            tokio::spawn(async move {
                let ws = WebSocket::new();
                setup(&ws);
                let echo = ws.clone();
                ws.on_message(move |m| {
                    let _ = echo.send(m);
                });
                if ws.upgrade(tcp).await.is_ok() {
                    ws.read().await;
                }
            });
        }
    });
    (rt, addr)
}

#[test]
fn an_idle_connection_keeps_little_on_the_heap() {
    let _counting = COUNTING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (rt, addr) = echo_server();
    // The clients run on their own thread while the server's runtime runs on this one.
    let (first, more) = (100, 1000);
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        open_idle(addr, first, &mut open);
        let before = LIVE.load(Ordering::SeqCst);
        open_idle(addr, more, &mut open);
        let after = LIVE.load(Ordering::SeqCst);
        let _ = done.send((open, before, after));
    });
    let (open, before, after) = rt.block_on(finished).unwrap();
    // One task per connection (the server's own, which runs `read()`) and the accept loop:
    // a connection with nothing to write keeps no writer task.
    let tasks = rt.metrics().num_alive_tasks();
    assert!(
        tasks <= first + more + 1,
        "{tasks} tasks for {} idle connections",
        first + more
    );
    // The client's own vector of streams grew meanwhile: a few bytes per connection.
    let per_connection = (after - before) / i64::try_from(more).unwrap();
    assert!(
        per_connection <= IDLE_HEAP_MAX,
        "an idle connection keeps {per_connection} bytes on the heap"
    );
    assert!(per_connection > 0, "{per_connection}");
    drop(open);
}

/// Echoes one masked binary message of `len` bytes over `tcp` and reads the echo back whole.
fn echo_big(tcp: &mut std::net::TcpStream, len: usize) {
    let mut frame = vec![0x82, 0xff];
    frame.extend_from_slice(&(len as u64).to_be_bytes());
    frame.extend_from_slice(&[0; 4]); // a zero mask key: the payload goes as it is
    frame.extend((0..len).map(|i| (i % 251) as u8));
    tcp.write_all(&frame).unwrap();
    drop(frame);
    let (opcode, echoed) = read_frame(tcp);
    assert_eq!((opcode, echoed.len()), (0x82, len));
    assert!(echoed
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 251) as u8));
}

/// Once a connection has echoed a big message, then a small one, it keeps what an idle
/// connection keeps: the big message's buffer, written as the answer's payload, is neither
/// kept as the connection's output buffer nor, once a small message came, for the next big
/// message.
#[test]
fn a_connection_is_as_small_as_an_idle_one_after_echoing_a_big_message() {
    let _counting = COUNTING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (rt, addr) = echo_server();
    let (per_connection, _open) = heap_per_connection(
        &rt,
        addr,
        8,
        |tcp| {
            echo_big(tcp, 1 << 20);
            echo_burst(tcp, 1, 2);
        },
        |_| {},
    );
    assert!(
        per_connection <= IDLE_HEAP_MAX,
        "a connection keeps {per_connection} bytes on the heap after echoing 1 MiB"
    );
}

/// Opens one connection to the echo server at `addr` on `rt` (the runtime's and the
/// client thread's first allocations), then `n` more, each handed to `each` as soon as it
/// is open, and then all to `then`; on a thread of their own while the server runs here.
/// Returns the heap each of the `n` keeps once the server's tasks are down to one a
/// connection (writer tasks hold their buffers until they end), and the connections.
fn heap_per_connection(
    rt: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    n: usize,
    each: fn(&mut std::net::TcpStream),
    then: fn(&mut std::net::TcpStream),
) -> (i64, Vec<std::net::TcpStream>) {
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        open_idle(addr, 1, &mut open);
        let before = LIVE.load(Ordering::SeqCst);
        for _ in 0..n {
            open_idle(addr, 1, &mut open);
            each(open.last_mut().unwrap());
        }
        open.iter_mut().skip(1).for_each(then);
        let _ = done.send((open, before));
    });
    let (open, before) = rt.block_on(finished).unwrap();
    rt.block_on(async {
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        while tasks() > n + 2 {
            tokio::task::yield_now().await;
        }
    });
    let per_connection = (LIVE.load(Ordering::SeqCst) - before) / i64::try_from(n).unwrap();
    (per_connection, open)
}

/// Sends `count` masked text frames of `len` bytes at once over `tcp`, and reads the echoes.
fn echo_burst(tcp: &mut std::net::TcpStream, count: usize, len: usize) {
    let mut burst = Vec::new();
    for _ in 0..count {
        burst.extend_from_slice(&[0x81, 0x80 | len as u8, 0, 0, 0, 0]);
        burst.extend(std::iter::repeat_n(b'a', len));
    }
    tcp.write_all(&burst).unwrap();
    let mut echoes = vec![0; count * (2 + len)];
    tcp.read_exact(&mut echoes).unwrap();
    assert!(echoes.chunks(2 + len).all(|f| f[..2] == [0x81, len as u8]));
}

/// The most an output buffer keeps once written (a bigger one is freed): the answers to a
/// read's worth of input reuse it.
const OUT_KEEP: i64 = 64 * 1024;

/// A burst of many small messages decodes an event each (10,000 here, in 60 KB): once they
/// are handled, the connection frees their queue. What it keeps beyond an idle
/// connection's heap is its output buffer (at most `OUT_KEEP`: here the 20,000 bytes of
/// answers took 32 KiB); it kept 358,946 bytes in all when the queue stayed.
#[test]
fn a_burst_of_small_messages_leaves_no_event_queue_behind() {
    let _counting = COUNTING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (rt, addr) = echo_server();
    let (per_connection, _open) =
        heap_per_connection(&rt, addr, 8, |tcp| echo_burst(tcp, 10_000, 0), |_| {});
    assert!(
        per_connection <= IDLE_HEAP_MAX + OUT_KEEP,
        "a connection keeps {per_connection} bytes on the heap after a burst"
    );
}

/// Reads one unmasked frame from the server: its first byte and its payload.
fn read_frame(tcp: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).unwrap();
    let len = match head[1] {
        126 => {
            let mut len = [0u8; 2];
            tcp.read_exact(&mut len).unwrap();
            usize::from(u16::from_be_bytes(len))
        }
        127 => {
            let mut len = [0u8; 8];
            tcp.read_exact(&mut len).unwrap();
            usize::try_from(u64::from_be_bytes(len)).unwrap()
        }
        len => usize::from(len),
    };
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload).unwrap();
    (head[0], payload)
}

/// A connection that has been quiet for its keep-alive interval frees what a burst left
/// (its output buffer, up to 64 KiB, and a big echo's buffer kept for the next big
/// message) as the probe goes out: it then keeps what an idle
/// connection keeps. (Each connection bursts right after it opens, well within the
/// interval, so its first probe is the one after the burst; unanswered, the next event is
/// the probe's timeout, a minute on.)
#[test]
fn a_quiet_connection_frees_what_a_burst_left_when_probed() {
    let _counting = COUNTING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (rt, addr) = echo_server_with(|ws| {
        ws.set_keepalive(Some(
            unisock::KeepAlive::every(std::time::Duration::from_secs(2))
                .timeout(std::time::Duration::from_secs(60)),
        ));
    });
    let (per_connection, mut open) = heap_per_connection(
        &rt,
        addr,
        8,
        |tcp| {
            echo_burst(tcp, 10_000, 0);
            // Big messages are being received: the echo's buffer is kept for the next one.
            echo_big(tcp, 1 << 20);
        },
        |tcp| assert_eq!(read_frame(tcp), (0x89, Vec::new()), "the keep-alive probe"),
    );
    // Still open: each answers a ping.
    let check = std::thread::spawn(move || {
        for tcp in &mut open {
            tcp.write_all(&[0x89, 0x82, 0, 0, 0, 0, b'o', b'k'])
                .unwrap();
            // After the server's own probes, if any.
            let answer = loop {
                let frame = read_frame(tcp);
                if frame != (0x89, Vec::new()) {
                    break frame;
                }
            };
            assert_eq!(answer, (0x8a, b"ok".to_vec()));
        }
    });
    rt.block_on(async {
        while !check.is_finished() {
            tokio::task::yield_now().await;
        }
    });
    assert!(check.join().is_ok(), "a connection closed");
    // A socket whose keep-alive was set keeps its own settings (sockets that change none
    // share the defaults): about 350 bytes more than `IDLE_HEAP_MAX`'s idle connection.
    // Without the release it kept 31,378 bytes.
    assert!(
        per_connection <= IDLE_HEAP_MAX + 512,
        "a connection keeps {per_connection} bytes on the heap after a burst and a probe"
    );
}
