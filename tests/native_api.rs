//! Every member of the native API and every case of the original's error routing (which
//! handler sees which failure), over real sockets on 127.0.0.1, with its bugs fixed.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    client_frame, raw_client, read_server_frame, record, spawn_echo_server, spawn_server,
    with_timeout,
};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use unisock::{Error, MsgEvent, ReadyState, WebSocket, WebSocketExt};

/// Opens a client to the server at `addr` and runs its loop in the background.
async fn open_client(addr: std::net::SocketAddr) -> (WebSocket, common::Events) {
    common::open_client(&format!("ws://{addr}/")).await
}

#[tokio::test]
async fn sending_before_open_is_an_error_that_says_so() {
    let ws = WebSocket::new();
    assert!(matches!(ws.send_text("x"), Err(Error::NotOpen)));
    assert!(matches!(ws.send_binary(b"x"), Err(Error::NotOpen)));
    assert!(matches!(ws.close(1000, ""), Err(Error::NotOpen)));
    assert_eq!(ws.buffered_amount(), 0, "nothing was queued");
    assert_eq!(ws.url(), None);
}

#[tokio::test]
async fn a_non_101_answer_fails_open_with_a_handshake_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = tcp.read(&mut buf).await;
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await;
    });
    let err = with_timeout(WebSocket::new().open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Handshake(_)), "{err}");
    assert!(err.to_string().contains("101"), "{err}");
}

#[tokio::test]
async fn non_ascii_text_round_trips() {
    let addr = spawn_echo_server().await;
    let (ws, mut events) = open_client(addr).await;
    let text = "héllo wörld — 你好 — 🦀";
    ws.send_text(text).unwrap();
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text(text.into()))
    );
}

#[tokio::test]
async fn eight_tasks_sending_concurrently_never_interleave() {
    let addr = spawn_echo_server().await;
    let (ws, mut events) = open_client(addr).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let ws = ws.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let body = format!("{t}:{i}:") + &"x".repeat(i * 37 % 3000);
                ws.send_text(&body).unwrap();
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut next = [0usize; 8];
    for _ in 0..1600 {
        let msg = with_timeout(events.messages.recv()).await.unwrap();
        let text = msg.txt().unwrap().to_string();
        let mut parts = text.splitn(3, ':');
        let t: usize = parts.next().unwrap().parse().unwrap();
        let i: usize = parts.next().unwrap().parse().unwrap();
        assert_eq!(parts.next().unwrap(), "x".repeat(i * 37 % 3000));
        assert_eq!(i, next[t], "task {t}'s messages arrive in order");
        next[t] += 1;
    }
    assert_eq!(next, [200; 8]);
}

#[tokio::test]
async fn close_inside_a_handler_ends_the_loop_with_one_close_frame() {
    let (addr, mut server_closes) = spawn_server(|ws| {
        let me = ws.clone();
        ws.on_message(move |_| {
            me.close(4001, "enough").unwrap();
            me.close(4002, "twice is a no-op").unwrap();
        });
    })
    .await;
    let mut tcp = raw_client(addr, "/").await;
    tcp.write_all(&client_frame(1, b"hi")).await.unwrap();
    let (op, payload) = read_server_frame(&mut tcp).await.unwrap();
    assert_eq!(op, 8);
    assert_eq!(&payload[..2], &4001u16.to_be_bytes());
    assert_eq!(&payload[2..], b"enough");
    tcp.write_all(&client_frame(8, &payload)).await.unwrap();
    // Then the server ends TCP: no second close frame.
    assert_eq!(read_server_frame(&mut tcp).await, None);
    let ev = with_timeout(server_closes.recv()).await.unwrap();
    assert!(ev.was_clean);
    assert_eq!(ev.code, 4001);
}

#[tokio::test]
async fn a_panicking_handler_closes_with_1011_then_reaches_on_error() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    let (addr, mut server_closes) = spawn_server(move |ws| {
        ws.on_message(|_| panic!("Boobies"));
        let o = seen.clone();
        ws.on_close(move |e| o.lock().unwrap().push(format!("close {}", e.code)));
        let o = seen.clone();
        ws.on_error(move |e| o.lock().unwrap().push(format!("error {e}")));
    })
    .await;
    let mut tcp = raw_client(addr, "/").await;
    tcp.write_all(&client_frame(1, b"boom")).await.unwrap();
    let (op, payload) = read_server_frame(&mut tcp).await.unwrap();
    assert_eq!(op, 8);
    assert_eq!(&payload[..2], &1011u16.to_be_bytes());
    assert!(String::from_utf8_lossy(&payload[2..]).contains("Boobies"));
    tcp.write_all(&client_frame(8, &payload[..2]))
        .await
        .unwrap();
    let ev = with_timeout(server_closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1011);
    let order = order.lock().unwrap().clone();
    assert_eq!(order.len(), 2, "{order:?}");
    assert_eq!(order[0], "close 1011");
    assert!(
        order[1].starts_with("error event handler panicked: Boobies"),
        "{order:?}"
    );
}

#[tokio::test]
async fn a_panic_in_on_close_is_contained() {
    let (addr, mut server_closes) = spawn_server(|ws| ws.on_close(|_| panic!("in on_close"))).await;
    let mut tcp = raw_client(addr, "/").await;
    tcp.write_all(&client_frame(8, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    let ev = with_timeout(server_closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1000);
}

#[tokio::test]
async fn an_unmasked_client_frame_is_a_protocol_error_1002() {
    let (addr, mut server_closes) = spawn_server(|ws| {
        ws.on_message(|m| panic!("no message may arrive: {m}"));
    })
    .await;
    let mut tcp = raw_client(addr, "/").await;
    tcp.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let (op, payload) = read_server_frame(&mut tcp).await.unwrap();
    assert_eq!(op, 8);
    assert_eq!(&payload[..2], &1002u16.to_be_bytes());
    let ev = with_timeout(server_closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1002);
    assert!(!ev.was_clean);
}

#[tokio::test]
async fn invalid_utf8_is_closed_with_1007() {
    let (addr, mut server_closes) = spawn_server(|_| {}).await;
    let mut tcp = raw_client(addr, "/").await;
    tcp.write_all(&client_frame(1, &[0xce, 0xba, 0xff, 0x41]))
        .await
        .unwrap();
    let (op, payload) = read_server_frame(&mut tcp).await.unwrap();
    assert_eq!(op, 8);
    assert_eq!(&payload[..2], &1007u16.to_be_bytes());
    assert_eq!(with_timeout(server_closes.recv()).await.unwrap().code, 1007);
}

#[tokio::test]
async fn ping_is_answered_with_the_same_payload() {
    let (addr, _closes) = spawn_server(|_| {}).await;
    let mut tcp = raw_client(addr, "/").await;
    tcp.write_all(&client_frame(9, b"are you there?"))
        .await
        .unwrap();
    assert_eq!(
        read_server_frame(&mut tcp).await,
        Some((10, b"are you there?".to_vec()))
    );
}

#[tokio::test]
async fn a_vanished_peer_gives_an_unclean_1006() {
    let (addr, mut server_closes) = spawn_server(|_| {}).await;
    let tcp = raw_client(addr, "/").await;
    drop(tcp);
    let ev = with_timeout(server_closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1006);
    assert!(!ev.was_clean);
}

#[tokio::test]
async fn a_silent_peer_hits_the_read_timeout() {
    let (addr, mut server_closes) =
        spawn_server(|ws| ws.set_read_timeout(Some(Duration::from_millis(200)))).await;
    let mut tcp = raw_client(addr, "/").await;
    let (op, payload) = read_server_frame(&mut tcp).await.unwrap();
    assert_eq!((op, &payload[..2]), (8, &1001u16.to_be_bytes()[..]));
    let ev = with_timeout(server_closes.recv()).await.unwrap();
    assert!(!ev.was_clean);
    assert!(ev.reason.contains("read timeout"), "{ev}");
}

#[tokio::test]
async fn buffered_amount_flush_and_the_send_queue_cap() {
    let addr = spawn_echo_server().await;
    let (ws, mut events) = open_client(addr).await;
    ws.set_send_queue_cap(1000);
    assert!(matches!(
        ws.send_binary(&[0; 1001]),
        Err(Error::Capacity { cap: 1000, .. })
    ));
    ws.send_binary(&[1; 600]).unwrap();
    with_timeout(ws.flush()).await.unwrap();
    assert_eq!(ws.buffered_amount(), 0);
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Binary(vec![1; 600]))
    );
}

#[tokio::test]
async fn ping_from_the_api_and_handlers_set_after_open() {
    let addr = spawn_echo_server().await;
    let ws = WebSocket::new();
    with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap();
    ws.ping(b"p").unwrap();
    assert!(matches!(ws.ping(&[0; 126]), Err(Error::Protocol(_))));
    let opened = Arc::new(AtomicUsize::new(0));
    let o = opened.clone();
    ws.on_open(move || {
        o.fetch_add(1, Ordering::SeqCst);
    });
    let mut events = record(&ws);
    tokio::spawn({
        let ws = ws.clone();
        async move { ws.read().await }
    });
    ws.send_text("after").unwrap();
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text("after".into()))
    );
    // The open was reported when `open()` returned, before this handler was set (as a
    // browser's `onopen` set after the `open` event never runs).
    assert_eq!(opened.load(Ordering::SeqCst), 0);
    assert_eq!(ws.ready_state(), ReadyState::Open);
}

#[tokio::test]
async fn the_stream_api_reads_messages_and_the_close() {
    let addr = spawn_echo_server().await;
    let mut ws = WebSocket::new();
    with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap();
    ws.send_text("one").unwrap();
    ws.send_binary(&[2]).unwrap();
    assert_eq!(
        with_timeout(ws.next()).await,
        Some(MsgEvent::Text("one".into()))
    );
    assert_eq!(
        with_timeout(ws.next()).await,
        Some(MsgEvent::Binary(vec![2]))
    );
    ws.close(1000, "bye").unwrap();
    assert_eq!(with_timeout(ws.next()).await, None);
    let ev = with_timeout(ws.closed()).await;
    assert_eq!(
        (ev.code, ev.reason.as_str(), ev.was_clean),
        (1000, "bye", true)
    );
}

#[tokio::test]
async fn open_twice_is_refused() {
    let addr = spawn_echo_server().await;
    let ws = WebSocket::new();
    with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap();
    let err = with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyConnected));
}

#[tokio::test]
async fn dropping_the_last_handle_closes_with_1001_after_the_queued_messages() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    let (addr, mut server_closes) = spawn_server(move |ws| {
        let seen = seen.clone();
        ws.on_message(move |m| seen.lock().unwrap().push(m));
    })
    .await;
    let ws = WebSocket::new();
    with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap();
    ws.send_text("last words").unwrap();
    drop(ws); // never read: nothing else could ever use this connection
    let ev = with_timeout(server_closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1001);
    assert!(ev.was_clean, "{ev}");
    assert_eq!(
        *got.lock().unwrap(),
        vec![MsgEvent::Text("last words".into())]
    );
}

#[tokio::test]
async fn keepalive_is_on_for_servers_and_off_for_clients_by_default() {
    let (stx, mut server_keepalive) = tokio::sync::mpsc::unbounded_channel();
    let (addr, _closes) = spawn_server(move |ws| {
        let (probe, stx) = (ws.clone(), stx.clone());
        ws.on_open(move || {
            let _ = stx.send(probe.keepalive());
        });
    })
    .await;
    let (client, _events) = open_client(addr).await;
    assert_eq!(client.keepalive(), None);
    assert_eq!(
        with_timeout(server_keepalive.recv()).await,
        Some(Some(unisock::KeepAlive::SERVER_DEFAULT))
    );
}

/// `send(msg)` hands a message over: big ones are written from their own buffer (no copy),
/// on both sides (a client masks it in place), in order with the small ones around them,
/// and `buffered_amount` counts them until they are written.
#[tokio::test]
async fn handed_over_messages_big_and_small_round_trip_in_order() {
    use unisock::DeflateConfig;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = WebSocket::new();
        ws.set_deflate(DeflateConfig::disabled()); // compressed messages are copied anyway
        let echo = ws.clone();
        ws.on_message(move |msg| {
            let _ = echo.send(msg);
        });
        if ws.upgrade(tcp).await.is_ok() {
            ws.read().await;
        }
    });
    let ws = WebSocket::new();
    ws.set_deflate(DeflateConfig::disabled());
    let (ws, mut events) = common::open_configured(ws, &format!("ws://{addr}/")).await;
    let big: Vec<u8> = (0..(1 << 20) + 3).map(|i| (i * 7 % 251) as u8).collect();
    let text: String = "ünïcödé ".repeat(30_000);
    let sent = vec![
        MsgEvent::Binary(big.clone()),
        MsgEvent::Text("small".into()),
        MsgEvent::Text(text.clone()),
        MsgEvent::Binary(vec![1; 100_000]),
        MsgEvent::Binary(vec![2; 10]),
    ];
    let total: usize = big.len() + 5 + text.len() + 100_000 + 10;
    for msg in sent.clone() {
        ws.send(msg).unwrap();
    }
    assert!(ws.buffered_amount() <= total);
    for want in &sent {
        assert_eq!(
            with_timeout(events.messages.recv()).await.as_ref(),
            Some(want)
        );
    }
    with_timeout(ws.flush()).await.unwrap();
    assert_eq!(
        ws.buffered_amount(),
        0,
        "everything sent is counted as written"
    );
    ws.close(1000, "done").unwrap();
    assert_eq!(with_timeout(events.closes.recv()).await.unwrap().code, 1000);
}

/// What a [`RecordingIo`] saw, in order.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Io {
    /// A read that brought this many bytes.
    Read(usize),
    /// A write offered this many slices, and took this many bytes.
    Write { slices: usize, took: usize },
}

/// A transport that records every read and write.
struct RecordingIo {
    io: tokio::net::TcpStream,
    log: Arc<Mutex<Vec<Io>>>,
}

impl RecordingIo {
    fn writes(log: &Mutex<Vec<Io>>) -> Vec<(usize, usize)> {
        let log = log.lock().unwrap();
        log.iter()
            .filter_map(|op| match *op {
                Io::Write { slices, took } => Some((slices, took)),
                Io::Read(_) => None,
            })
            .collect()
    }
}

impl tokio::io::AsyncRead for RecordingIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = polled {
            let n = buf.filled().len() - before;
            self.log.lock().unwrap().push(Io::Read(n));
        }
        polled
    }
}

impl tokio::io::AsyncWrite for RecordingIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(took)) = polled {
            self.log.lock().unwrap().push(Io::Write { slices: 1, took });
        }
        polled
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(took)) = polled {
            let slices = bufs.len();
            self.log.lock().unwrap().push(Io::Write { slices, took });
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A handed-over payload is written in the same (vectored) write as its header, from the
/// writer task and from the read task alike: no write carries a header alone.
#[tokio::test]
async fn a_handed_over_payload_leaves_in_one_write_with_its_header() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let writes = Arc::new(Mutex::new(Vec::new()));
    let recorded = writes.clone();
    let big = unisock::protocol::OWNED_SEND_MIN;
    tokio::spawn(async move {
        let (io, _) = listener.accept().await.unwrap();
        let ws = WebSocket::new();
        ws.set_deflate(unisock::DeflateConfig::disabled());
        let pusher = ws.clone();
        // Sent by the writer task (from on_open), then as an answer (by the read task).
        ws.on_open(move || {
            let _ = pusher.send(MsgEvent::Binary(vec![5; big]));
        });
        let echo = ws.clone();
        ws.on_message(move |_| {
            let _ = echo.send(MsgEvent::Binary(vec![6; big]));
        });
        let io = RecordingIo { io, log: recorded };
        if ws.upgrade(io).await.is_ok() {
            ws.read().await;
        }
    });
    let mut tcp = raw_client(addr, "/").await;
    let first = with_timeout(read_server_frame(&mut tcp)).await;
    assert_eq!(first, Some((2, vec![5; big])));
    tcp.write_all(&client_frame(1, b"again")).await.unwrap();
    let answer = with_timeout(read_server_frame(&mut tcp)).await;
    assert_eq!(answer, Some((2, vec![6; big])));
    let writes = RecordingIo::writes(&writes);
    // The 101 answer, then the frames: a 10-byte header written alone would show as (_, 10).
    assert!(
        writes.iter().skip(1).all(|&(_, n)| n != 10),
        "a header was written alone: {writes:?}"
    );
    let vectored = writes.iter().filter(|&&(slices, n)| slices >= 2 && n > 10);
    assert!(vectored.count() >= 2, "{writes:?}");
}

/// An echo server (permessage-deflate off) over a `RecordingIo`, connected to and upgraded
/// by a raw client (returned, with the log). It starts reading only once the returned gate
/// is sent, so what the client sends before is all in the socket at the first read.
async fn gated_recording_echo() -> (
    tokio::net::TcpStream,
    Arc<Mutex<Vec<Io>>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let recorded = log.clone();
    let (gate, wait) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (io, _) = listener.accept().await.unwrap();
        let ws = WebSocket::new();
        ws.set_deflate(unisock::DeflateConfig::disabled());
        let echo = ws.clone();
        ws.on_message(move |msg| {
            let _ = echo.send(msg);
        });
        let io = RecordingIo { io, log: recorded };
        if ws.upgrade(io).await.is_ok() {
            let _ = wait.await;
            ws.read().await;
        }
    });
    (raw_client(addr, "/").await, log, gate)
}

/// Many small messages waiting: once two reads in a row fill the 16 KiB read buffer, reads
/// take more at once (the buffer grows to 64 KiB), instead of three receive calls for
/// every 32 KB that waits.
#[tokio::test]
async fn a_burst_of_small_messages_is_read_in_reads_bigger_than_16_kib() {
    let (mut tcp, log, all_sent) = gated_recording_echo().await;
    let text = vec![b'a'; 1000];
    let burst: Vec<u8> = (0..80).flat_map(|_| client_frame(1, &text)).collect();
    tcp.write_all(&burst).await.unwrap();
    all_sent.send(()).unwrap();
    for _ in 0..80 {
        assert_eq!(
            with_timeout(read_server_frame(&mut tcp)).await,
            Some((1, text.clone()))
        );
    }
    let log = log.lock().unwrap().clone();
    let biggest = log
        .iter()
        .filter_map(|op| match *op {
            Io::Read(n) => Some(n),
            Io::Write { .. } => None,
        })
        .max();
    assert!(biggest > Some(16 * 1024), "{log:?}");
}

/// A big message (read straight onto the message) is answered at once, before the next
/// message is read, even when that one is already waiting: held back until the read task
/// has read all there is, the answer would wait for the next message's reads, and a peer
/// that keeps a few big messages in flight would find the pipe idle in between.
#[tokio::test]
async fn a_big_message_is_answered_before_the_next_one_is_read() {
    let (mut tcp, log, both_sent) = gated_recording_echo().await;
    // Big enough to be read straight onto the message, small enough for both to fit
    // in the server's receive buffer at once.
    let (one, two) = (vec![1u8; 20_000], vec![2u8; 20_000]);
    let frame = client_frame(2, &one);
    tcp.write_all(&[frame.clone(), client_frame(2, &two)].concat())
        .await
        .unwrap();
    both_sent.send(()).unwrap();
    assert_eq!(
        with_timeout(read_server_frame(&mut tcp)).await,
        Some((2, one))
    );
    assert_eq!(
        with_timeout(read_server_frame(&mut tcp)).await,
        Some((2, two))
    );
    let log = log.lock().unwrap().clone();
    // Skip the handshake (its read and the 101 answer), then count the bytes read
    // before the first frame was written.
    let frames = log
        .iter()
        .skip_while(|op| !matches!(op, Io::Write { .. }))
        .skip(1);
    let mut read = 0;
    for op in frames {
        match *op {
            Io::Read(n) => read += n,
            Io::Write { took, .. } => {
                assert!(
                    read < 2 * frame.len(),
                    "both messages were read before the first answer: {log:?}"
                );
                assert!(took >= 20_000, "{log:?}");
                return;
            }
        }
    }
    panic!("no answer written: {log:?}");
}

/// Answers written by the read task itself (when the writer task is idle) and sends from
/// other threads at the same time: every message arrives, once, and each sender's in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_from_the_read_task_and_sends_from_other_threads_all_arrive_in_order() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = WebSocket::new();
    tokio::spawn({
        let server = server.clone();
        async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let echo = server.clone();
            server.on_message(move |msg| {
                let _ = echo.send(msg);
            });
            if server.upgrade(tcp).await.is_ok() {
                server.read().await;
            }
        }
    });
    let (ws, mut events) = open_client(addr).await;
    const N: usize = 2000;
    // The server pushes its own numbered messages from two other tasks while echoing.
    let pushers: Vec<_> = (0..2)
        .map(|p| {
            let server = server.clone();
            tokio::spawn(async move {
                while server.ready_state() != ReadyState::Open {
                    tokio::task::yield_now().await;
                }
                for i in 0..N {
                    server.send_text(&format!("push{p}:{i}")).unwrap();
                    if i % 100 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for i in 0..N {
        ws.send_text(&format!("echo:{i}")).unwrap();
    }
    let mut next = [0usize; 3];
    for _ in 0..3 * N {
        let Some(MsgEvent::Text(t)) = with_timeout(events.messages.recv()).await else {
            panic!("expected text");
        };
        let (source, i) = t.split_once(':').unwrap();
        let k = match source {
            "echo" => 0,
            "push0" => 1,
            "push1" => 2,
            other => panic!("unexpected {other}"),
        };
        assert_eq!(i.parse::<usize>().unwrap(), next[k], "{t} out of order");
        next[k] += 1;
    }
    assert_eq!(next, [N; 3]);
    for p in pushers {
        p.await.unwrap();
    }
    with_timeout(server.flush()).await.unwrap();
    assert_eq!(server.buffered_amount(), 0);
}

/// Every connection's task keeps the size of its largest future for as long as it lives,
/// so the futures of `read()` and of the handshakes before it stay small: the one-time
/// steps (connecting, TLS, the HTTP heads, reconnecting) are boxed and freed when done.
/// Before, an idle connection's task carried over 3 KB of them.
#[tokio::test]
async fn the_futures_a_connection_keeps_are_small() {
    let ws = WebSocket::new();
    let read = ws.read();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut accepted = Vec::new();
    for _ in 0..2 {
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, server) = tokio::join!(client, listener.accept());
        accepted.push((server.unwrap().0, client.unwrap()));
    }
    let (tcp, _peer) = accepted.pop().unwrap();
    let (serviced, _peer) = accepted.pop().unwrap();
    let sockets = unisock::WebSockets::new();
    let sizes = [
        ("read", std::mem::size_of_val(&read)),
        ("upgrade", std::mem::size_of_val(&ws.upgrade(tcp))),
        (
            "WebSockets::service",
            std::mem::size_of_val(&sockets.service(WebSocket::new(), serviced)),
        ),
        (
            "open",
            std::mem::size_of_val(&ws.open("ws://127.0.0.1:1/", &[])),
        ),
    ];
    for (what, size) in sizes {
        assert!(
            size <= 1536,
            "the {what}() future is {size} bytes: {sizes:?}"
        );
    }
}

/// Where messages go can change while the socket runs: a new message handler takes the
/// next message, and so does a stream once one is taken (the read loop keeps copies of
/// both, which a change must refresh).
#[tokio::test]
async fn a_handler_or_stream_set_while_reading_takes_the_next_message() {
    let addr = spawn_echo_server().await;
    let ws = WebSocket::new();
    let (first_tx, mut first) = tokio::sync::mpsc::unbounded_channel();
    ws.on_message(move |m| {
        let _ = first_tx.send(m);
    });
    with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap();
    let reader = ws.clone();
    tokio::spawn(async move { reader.read().await });
    ws.send_text("1").unwrap();
    assert_eq!(
        with_timeout(first.recv()).await,
        Some(MsgEvent::Text("1".into()))
    );
    let (second_tx, mut second) = tokio::sync::mpsc::unbounded_channel();
    ws.on_message(move |m| {
        let _ = second_tx.send(m);
    });
    ws.send_text("2").unwrap();
    assert_eq!(
        with_timeout(second.recv()).await,
        Some(MsgEvent::Text("2".into()))
    );
    let mut stream = ws.clone();
    // The first poll subscribes: from then on the stream takes the messages.
    assert!(futures_util::FutureExt::now_or_never(stream.next()).is_none());
    ws.send_text("3").unwrap();
    assert_eq!(
        with_timeout(stream.next()).await,
        Some(MsgEvent::Text("3".into()))
    );
    assert!(first.try_recv().is_err() && second.try_recv().is_err());
}

/// Messages that arrive together are taken from the protocol core in runs. A handler that
/// subscribes a stream part way through a run gets the rest of the run on the stream, in
/// order: none is lost or handed to the handler after the switch.
#[tokio::test]
async fn a_stream_subscribed_by_a_handler_mid_run_gets_the_rest_in_order() {
    let server = WebSocket::new();
    let (handled_tx, mut handled) = tokio::sync::mpsc::unbounded_channel();
    let (stream_tx, mut streams) = tokio::sync::mpsc::unbounded_channel();
    let handle = server.clone();
    server.on_message(move |m| {
        let switch = m.txt() == Some("3");
        let _ = handled_tx.send(m);
        if switch {
            let mut stream = handle.clone();
            // The first poll subscribes: from then on the stream takes the messages.
            assert!(futures_util::FutureExt::now_or_never(stream.next()).is_none());
            let _ = stream_tx.send(stream);
        }
    });
    let mut raw = common::raw_peer_of_reading(&server).await;
    // One write, so that the server reads them together.
    let frames: Vec<u8> = (0..10)
        .flat_map(|i| client_frame(0x1, i.to_string().as_bytes()))
        .collect();
    raw.write_all(&frames).await.unwrap();
    for i in 0..4 {
        assert_eq!(
            with_timeout(handled.recv()).await,
            Some(MsgEvent::Text(i.to_string()))
        );
    }
    let mut stream = with_timeout(streams.recv()).await.unwrap();
    for i in 4..10 {
        assert_eq!(
            with_timeout(stream.next()).await,
            Some(MsgEvent::Text(i.to_string()))
        );
    }
    assert!(handled.try_recv().is_err());
}

/// Answers to input that fills a read exactly are held for the next read, which finds
/// nothing more: they are written then, not left waiting for more input.
#[tokio::test]
async fn answers_to_a_read_that_fills_its_buffer_exactly_are_written() {
    let addr = spawn_echo_server().await;
    let mut tcp = raw_client(addr, "/").await;
    // 128 frames of 128 bytes (6 of header and mask, 122 of text): one read of 16 KiB, as
    // much as a connection's first reads take.
    let payload = [b'x'; 122];
    let frames: Vec<u8> = (0..128).flat_map(|_| client_frame(0x1, &payload)).collect();
    assert_eq!(frames.len(), 16 * 1024);
    tcp.write_all(&frames).await.unwrap();
    for _ in 0..128 {
        assert_eq!(
            read_server_frame(&mut tcp).await,
            Some((0x1, payload.to_vec()))
        );
    }
}

/// A send from a thread outside any runtime is written: a writer task runs only while
/// output waits for it, and the socket starts it on the runtime its connection was made on.
#[tokio::test]
async fn a_send_from_a_thread_outside_the_runtime_is_written() {
    let addr = spawn_echo_server().await;
    let (ws, mut events) = open_client(addr).await;
    let sender = ws.clone();
    let sent = std::thread::spawn(move || {
        assert!(tokio::runtime::Handle::try_current().is_err());
        ["1", "2", "3"].map(|text| sender.send_text(text))
    })
    .join()
    .unwrap();
    assert!(sent.iter().all(Result::is_ok), "{sent:?}");
    for text in ["1", "2", "3"] {
        assert_eq!(
            with_timeout(events.messages.recv()).await,
            Some(MsgEvent::Text(text.into()))
        );
    }
}

/// Completes the opening handshake by hand and drops TCP without a close frame, for every
/// connection: the client sees 1006.
async fn spawn_dropping_server() -> std::net::SocketAddr {
    use unisock::protocol::handshake;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let request = loop {
                let mut chunk = [0u8; 1024];
                let n = tcp.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some((request, _)) = handshake::parse_request(&buf).unwrap() {
                    break request;
                }
            };
            let accept = handshake::validate_request(&request, None).unwrap();
            tcp.write_all(&handshake::response_101(&accept.accept, None, &[]))
                .await
                .unwrap();
        }
    });
    addr
}

/// `buffered_amount` is changed by every send and every write, from any thread. After many
/// sends from several threads at once, while the writes drain them, a flush finds it back
/// at 0: a lost update would leave it above 0, and the flush waiting for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_amount_returns_to_zero_after_sends_from_many_threads() {
    const THREADS: usize = 4;
    const EACH: usize = 2_000;
    let addr = spawn_echo_server().await;
    let (ws, mut events) = open_client(addr).await;
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let ws = ws.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    ws.send_text(&format!("{t} {i}")).unwrap();
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    with_timeout(ws.flush()).await.unwrap();
    assert_eq!(ws.buffered_amount(), 0);
    for _ in 0..THREADS * EACH {
        with_timeout(events.messages.recv()).await.unwrap();
    }
}

/// After any close, unclean (1006) or clean (a local close), a send fails with `Closed`
/// and queues nothing: nothing is dropped silently.
#[tokio::test]
async fn every_send_after_a_close_fails_with_closed() {
    let (ws, _events) = open_client(spawn_dropping_server().await).await;
    assert_eq!(with_timeout(ws.closed()).await.code, 1006);
    assert!(matches!(ws.send_text("late"), Err(Error::Closed)));
    assert!(matches!(ws.send_binary(b"late"), Err(Error::Closed)));
    assert!(matches!(ws.ping(b""), Err(Error::Closed)));
    assert_eq!(ws.buffered_amount(), 0);

    let (ws, _events) = open_client(spawn_echo_server().await).await;
    ws.close(1000, "").unwrap();
    assert!(matches!(ws.send_text("late"), Err(Error::Closed)));
    assert_eq!(with_timeout(ws.closed()).await.code, 1000);
    assert!(matches!(
        ws.send(MsgEvent::Text("late".into())),
        Err(Error::Closed)
    ));
    assert_eq!(ws.buffered_amount(), 0);
}
