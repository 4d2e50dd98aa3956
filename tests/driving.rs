//! Who drives a native socket, and what the API promises about it: `read()`, the `Stream`
//! and `closed()` may each be dropped or timed out at any await point and picked up again
//! from any clone, losing no byte, message or state; `closed()` alone finishes a close;
//! `on_open` fires once the connection is open however it is driven; `close()` aborts a
//! socket still connecting. Real sockets on 127.0.0.1.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{spawn_server, with_timeout};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use unisock::{Error, MsgEvent, ReadyState, WebSocket};

/// How many numbered messages the counting server sends.
const N: usize = 10_000;

/// How many messages the counting server sends for each "go".
const BATCH: usize = 100;

/// A server that sends the next `BATCH` of `N` numbered text messages each time a client
/// sends "go", and closes with 1000 ("done") after the last. Each is padded to 1 KiB, so
/// they take many reads, and every thousandth to 100 KiB, so some are read in several
/// reads straight into the message. A client asking batch by batch waits for the network
/// (a point where a `read()` can be cut short) at least `N / BATCH` times.
async fn spawn_counting_server() -> String {
    let (addr, _closes) = spawn_server(|ws| {
        let me = ws.clone();
        let sent = Arc::new(AtomicUsize::new(0));
        ws.on_message(move |msg| {
            if msg != MsgEvent::Text("go".into()) {
                return;
            }
            let from = sent.fetch_add(BATCH, Ordering::SeqCst);
            for i in from..(from + BATCH).min(N) {
                let pad = if i % 1000 == 999 { 100_000 } else { 1_000 };
                me.send_text(&format!("{i} {}", "x".repeat(pad))).unwrap();
            }
            if from + BATCH >= N {
                me.close(1000, "done").unwrap();
            }
        });
    })
    .await;
    format!("ws://{addr}/")
}

/// Records `ws`'s messages, asking the counting server for the next batch after each one.
fn record_batches(ws: &WebSocket) -> Arc<Mutex<Vec<MsgEvent>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let me = ws.clone();
    ws.on_message({
        let got = got.clone();
        move |m| {
            let mut got = got.lock().unwrap();
            got.push(m);
            if got.len() % BATCH == 0 {
                let _ = me.send_text("go");
            }
        }
    });
    got
}

/// A small deterministic pseudo-random sequence (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Completes after `polls` polls: a cancellation point inside whatever it races with.
async fn after_polls(polls: u64) {
    for _ in 0..polls {
        tokio::task::yield_now().await;
    }
}

fn numbers(messages: &[MsgEvent]) -> Vec<usize> {
    messages
        .iter()
        .map(|m| match m {
            MsgEvent::Text(t) => t.split(' ').next().unwrap().parse().unwrap(),
            MsgEvent::Binary(_) => panic!("unexpected binary message"),
        })
        .collect()
}

/// `read()` cut short at pseudo-random points (after a few polls, or by a timer) and
/// resumed, alternately from two clones: every message arrives once and in order, and the
/// close completes. Before, the first cancelled `read()` took the connection with it: the
/// next call returned at once while `ready_state()` stayed `Open`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_cancelled_at_random_points_resumes_from_any_clone() {
    let url = spawn_counting_server().await;
    let ws = WebSocket::new();
    let got = record_batches(&ws);
    with_timeout(ws.open(&url, &[])).await.unwrap();
    ws.send_text("go").unwrap();
    let clones = [ws.clone(), ws.clone()];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut cancelled = 0;
    with_timeout(async {
        for round in 0.. {
            let reader = &clones[round % 2];
            let finished = if rng.below(4) == 0 {
                let wait = Duration::from_micros(rng.below(2_000));
                tokio::time::timeout(wait, reader.read()).await.is_ok()
            } else {
                tokio::select! {
                    () = reader.read() => true,
                    () = after_polls(rng.below(8)) => false,
                }
            };
            if finished {
                break;
            }
            cancelled += 1;
        }
    })
    .await;
    assert!(cancelled > 100, "only {cancelled} cancellations");
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert_eq!(numbers(&got.lock().unwrap()), (0..N).collect::<Vec<_>>());
    let ev = with_timeout(ws.closed()).await;
    assert_eq!(
        (ev.code, ev.reason.as_str(), ev.was_clean),
        (1000, "done", true)
    );
}

/// A clone read as a `Stream` for part of the messages and dropped; a `Stream` on another
/// clone reads on, from the next message: none lost, none twice. Before, the second stream
/// never got a message and `closed()` hung.
#[tokio::test]
async fn a_stream_dropped_mid_way_is_continued_by_another_clone() {
    let url = spawn_counting_server().await;
    let ws = WebSocket::new();
    with_timeout(ws.open(&url, &[])).await.unwrap();
    ws.send_text("go").unwrap();
    let mut got = Vec::new();
    let take = |got: &mut Vec<MsgEvent>, msg| {
        got.push(msg);
        if got.len() % BATCH == 0 {
            let _ = ws.send_text("go");
        }
    };
    let mut first = ws.clone();
    // Mid-batch: the dropped stream holds messages it has not yielded.
    while got.len() < N / 3 + BATCH / 2 {
        take(&mut got, with_timeout(first.next()).await.unwrap());
    }
    drop(first);
    let mut second = ws.clone();
    while let Some(msg) = with_timeout(second.next()).await {
        take(&mut got, msg);
    }
    assert_eq!(numbers(&got), (0..N).collect::<Vec<_>>());
    assert_eq!(with_timeout(ws.closed()).await.code, 1000);
}

/// `close()` then `closed()`, with nothing else driving the socket: the closing handshake
/// completes and `closed()` reports it. Before, `closed()` waited for ever.
#[tokio::test]
async fn closed_alone_finishes_a_close() {
    let (addr, mut server_closes) = spawn_server(|_| {}).await;
    let ws = WebSocket::new();
    with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap();
    ws.close(1000, "bye").unwrap();
    let ev = with_timeout(ws.closed()).await;
    assert_eq!(
        (ev.code, ev.reason.as_str(), ev.was_clean),
        (1000, "bye", true)
    );
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    let seen = with_timeout(server_closes.recv()).await.unwrap();
    assert_eq!((seen.code, seen.was_clean), (1000, true));
}

/// `closed()` timed out, then `closed()` again: the second one finishes what the first began.
#[tokio::test]
async fn closed_can_be_cancelled_and_awaited_again() {
    let url = spawn_counting_server().await;
    let ws = WebSocket::new();
    let got = record_batches(&ws);
    with_timeout(ws.open(&url, &[])).await.unwrap();
    ws.send_text("go").unwrap();
    let mut rounds = 0;
    let ev = with_timeout(async {
        loop {
            rounds += 1;
            tokio::select! {
                ev = ws.closed() => break ev,
                () = after_polls(3) => {}
            }
        }
    })
    .await;
    assert!(rounds > 10, "only {rounds} rounds");
    assert_eq!((ev.code, ev.was_clean), (1000, true));
    assert_eq!(numbers(&got.lock().unwrap()), (0..N).collect::<Vec<_>>());
}

/// `on_open` fires once the connection is open, before `open()` returns, whether the
/// socket is then driven by `read()`, a `Stream`, or not at all. Before, it fired only when
/// `read()` started.
#[tokio::test]
async fn on_open_fires_when_open_succeeds() {
    let (addr, _closes) = spawn_server(|ws| {
        let echo = ws.clone();
        ws.on_message(move |m| {
            let _ = echo.send(m);
        });
    })
    .await;
    let mut ws = WebSocket::new();
    let opened = Arc::new(AtomicUsize::new(0));
    ws.on_open({
        let opened = opened.clone();
        move || {
            opened.fetch_add(1, Ordering::SeqCst);
        }
    });
    with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap();
    assert_eq!(
        opened.load(Ordering::SeqCst),
        1,
        "on_open before open() returned"
    );
    ws.send_text("x").unwrap();
    assert_eq!(
        with_timeout(ws.next()).await,
        Some(MsgEvent::Text("x".into()))
    );
    ws.close(1000, "").unwrap();
    assert_eq!(with_timeout(ws.next()).await, None);
    assert_eq!(opened.load(Ordering::SeqCst), 1, "on_open fired once");
}

/// `close()` while `open()` waits for the server's answer aborts the attempt, as a browser
/// does: `open()` fails, `on_close` reports 1006, and the socket is closed. Before, `close()`
/// returned `NotOpen` and the open went on.
#[tokio::test]
async fn close_while_connecting_aborts_the_open() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let ws = WebSocket::new();
    let (close_tx, mut closes) = tokio::sync::mpsc::unbounded_channel();
    ws.on_close(move |ev| {
        let _ = close_tx.send(ev);
    });
    let opening = tokio::spawn({
        let ws = ws.clone();
        async move { ws.open(&url, &[]).await }
    });
    // The request has arrived: `open()` now waits for an answer that never comes.
    let (mut tcp, _) = with_timeout(listener.accept()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(with_timeout(tcp.read(&mut b)).await.unwrap(), 1);
        head.push(b[0]);
    }
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    ws.close(1000, "never mind").unwrap();
    let err = with_timeout(opening).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Closed), "{err}");
    let ev = with_timeout(closes.recv()).await.unwrap();
    assert_eq!((ev.code, ev.was_clean), (1006, false));
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert_eq!(with_timeout(ws.closed()).await.code, 1006);
    // The server sees the connection end without an upgrade.
    let mut rest = [0u8; 16];
    assert_eq!(with_timeout(tcp.read(&mut rest)).await.unwrap(), 0);
    assert!(matches!(ws.send_text("late"), Err(Error::Closed)));
}

/// A send after the peer closed cleanly (1000) fails with `Closed`, like one after a local
/// close or an abort, and `buffered_amount` does not grow.
#[tokio::test]
async fn a_send_after_the_peer_closed_cleanly_fails_with_closed() {
    let (addr, _closes) = spawn_server(|ws| {
        let me = ws.clone();
        ws.on_message(move |_| {
            me.close(1000, "enough").unwrap();
        });
    })
    .await;
    let ws = WebSocket::new();
    with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap();
    ws.send_text("hello").unwrap();
    let ev = with_timeout(ws.closed()).await;
    assert_eq!((ev.code, ev.was_clean), (1000, true));
    assert!(matches!(ws.send_text("late"), Err(Error::Closed)));
    assert!(matches!(ws.send_binary(b"late"), Err(Error::Closed)));
    assert_eq!(ws.buffered_amount(), 0);
}

/// A `Stream` consumer that lags stops the socket reading, also while another task runs
/// `read()` (as a registry does): the peer's writes back up once the kernel buffers are
/// full, instead of everything piling up in the reader. Once the consumer takes them, all
/// arrive, in order. Before, `read()` read everything into an unbounded queue.
#[tokio::test]
async fn a_slow_stream_consumer_holds_at_most_its_queue() {
    // 128 MiB: far more than the kernel buffers between the two hold (at most 32 MiB to
    // receive and 4 MiB to send on the machines this runs on).
    const COUNT: usize = 16_000;
    let frame =
        |i: usize| common::client_frame(0x1, format!("{i} {}", "x".repeat(8 * 1024)).as_bytes());
    let server = WebSocket::new();
    let raw = common::raw_peer_of_reading(&server).await;
    // The read task runs first (one thread), and holds the event loop from then on.
    tokio::task::yield_now().await;
    let mut stream = server.clone();
    // The first poll subscribes the stream; from then on messages go to it.
    assert!(futures_util::FutureExt::now_or_never(stream.next()).is_none());
    // Write until the socket takes nothing more while the read task has had 100 turns.
    let (mut sent, mut pending, mut stuck) = (0, frame(0), 0);
    while sent < COUNT && stuck < 100 {
        match raw.try_write(&pending) {
            Ok(n) => {
                stuck = 0;
                pending.drain(..n);
                if pending.is_empty() {
                    sent += 1;
                    pending = frame(sent);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stuck += 1;
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        sent < COUNT / 2,
        "the server read {sent} of {COUNT} messages"
    );
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut raw = raw;
        raw.write_all(&pending).await.unwrap();
        for i in sent + 1..COUNT {
            raw.write_all(&frame(i)).await.unwrap();
        }
        raw
    });
    let mut got = Vec::new();
    while got.len() < COUNT {
        got.push(with_timeout(stream.next()).await.unwrap());
    }
    assert_eq!(numbers(&got), (0..COUNT).collect::<Vec<_>>());
    drop(with_timeout(writer).await.unwrap());
}
