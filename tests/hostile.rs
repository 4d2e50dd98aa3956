//! Hostile peers over real sockets: each ends with a clear error and the right close code,
//! and the server goes on serving other clients.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::net::SocketAddr;

use common::{
    client_frame, open_client, raw_client, read_server_frame, spawn_server, with_timeout,
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use unisock::{KeepAlive, Limits, MsgEvent, WebSocketExt};

/// A server whose sockets echo text and accept messages of at most 64 KiB.
async fn server() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<unisock::CloseEvent>,
) {
    spawn_server(|ws| {
        ws.set_limits(
            Limits::default()
                .max_message_size(64 * 1024)
                .max_frame_size(32 * 1024),
        );
        let echo = ws.clone();
        ws.on_message(move |m| {
            if let MsgEvent::Text(t) = m {
                let _ = echo.send_text(&t);
            }
        });
    })
    .await
}

/// The server still echoes for a well-behaved client.
async fn still_serving(addr: SocketAddr) {
    let (ws, mut events) = open_client(&format!("ws://{addr}/")).await;
    ws.send_text("still there?").unwrap();
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text("still there?".into()))
    );
}

/// Reads the server's close frame and returns its code.
async fn close_code(tcp: &mut tokio::net::TcpStream) -> u16 {
    let (op, payload) = read_server_frame(tcp).await.expect("a close frame");
    assert_eq!(op, 8, "expected a close frame");
    u16::from_be_bytes([payload[0], payload[1]])
}

#[tokio::test]
async fn a_head_over_the_size_limit_is_answered_431() {
    let (addr, _closes) = server().await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = with_timeout(tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    still_serving(addr).await;
}

#[tokio::test]
async fn a_length_with_the_top_bit_set_is_a_protocol_error() {
    let (addr, mut closes) = server().await;
    let mut tcp = raw_client(addr, "/").await;
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 63).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, 1002);
    assert_eq!(with_timeout(closes.recv()).await.unwrap().code, 1002);
    still_serving(addr).await;
}

#[tokio::test]
async fn a_header_announcing_a_huge_frame_is_refused_with_1009_before_any_payload() {
    let (addr, mut closes) = server().await;
    let mut tcp = raw_client(addr, "/").await;
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 62).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, 1009);
    let ev = with_timeout(closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1009);
    assert!(
        ev.reason.contains("limit") || ev.reason.contains("large"),
        "{ev}"
    );
    still_serving(addr).await;
}

#[tokio::test]
async fn a_frame_that_stops_mid_payload_is_an_abnormal_close() {
    let (addr, mut closes) = server().await;
    let mut tcp = raw_client(addr, "/").await;
    let frame = client_frame(1, &[b'x'; 1000]);
    tcp.write_all(&frame[..500]).await.unwrap();
    drop(tcp);
    let ev = with_timeout(closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1006);
    assert!(!ev.was_clean);
    still_serving(addr).await;
}

#[tokio::test]
async fn a_message_over_the_limit_is_closed_with_1009() {
    let (addr, mut closes) = server().await;
    let mut tcp = raw_client(addr, "/").await;
    // 40 KiB in one frame: over the 32 KiB frame limit.
    let _ = tcp.write_all(&client_frame(2, &vec![0u8; 40 * 1024])).await;
    assert_eq!(close_code(&mut tcp).await, 1009);
    assert_eq!(with_timeout(closes.recv()).await.unwrap().code, 1009);
    still_serving(addr).await;
}

#[tokio::test]
async fn endless_fragments_are_closed_with_1009_at_the_message_limit() {
    let (addr, mut closes) = server().await;
    let mut tcp = raw_client(addr, "/").await;
    // A text message that never ends: FIN clear on every frame, 8 KiB each.
    let mut first = client_frame(1, &[b'a'; 8192]);
    first[0] &= 0x7f;
    tcp.write_all(&first).await.unwrap();
    let code = loop {
        let mut more = client_frame(0, &[b'a'; 8192]);
        more[0] &= 0x7f;
        if tcp.write_all(&more).await.is_err() {
            break close_code(&mut tcp).await;
        }
        // The server answers as soon as the limit is crossed; look without blocking.
        let mut peek = [0u8; 1];
        if let Ok(Ok(1)) =
            tokio::time::timeout(std::time::Duration::ZERO, tcp.peek(&mut peek)).await
        {
            break close_code(&mut tcp).await;
        }
    };
    assert_eq!(code, 1009);
    assert_eq!(with_timeout(closes.recv()).await.unwrap().code, 1009);
    still_serving(addr).await;
}

#[tokio::test]
async fn endless_empty_fragments_are_closed_with_1009_at_the_fragment_limit() {
    let (addr, mut closes) = server().await;
    let (normal, mut normal_events) = open_client(&format!("ws://{addr}/")).await;
    let mut tcp = raw_client(addr, "/").await;
    // A text message that never ends and never grows: its first frame, then empty
    // continuation frames, FIN clear on all, up to the default limit of 1 << 20 frames.
    let empty = |opcode| {
        let mut frame = client_frame(opcode, b"");
        frame[0] &= 0x7f;
        frame
    };
    let batch = empty(0).repeat(4096);
    let limit = 1 << 20;
    with_timeout(async {
        tcp.write_all(&empty(1)).await.unwrap();
        let mut sent = 1;
        while sent < limit {
            let n = (limit - sent).min(4096);
            tcp.write_all(&batch[..n * 6]).await.unwrap();
            sent += n;
        }
    })
    .await;
    // All of them were taken in: a ping after them is answered, and the other client is
    // still echoed.
    tcp.write_all(&client_frame(9, b"after")).await.unwrap();
    assert_eq!(
        read_server_frame(&mut tcp).await,
        Some((10, b"after".to_vec()))
    );
    normal.send_text("meanwhile").unwrap();
    assert_eq!(
        with_timeout(normal_events.messages.recv()).await,
        Some(MsgEvent::Text("meanwhile".into()))
    );
    // One more is over the limit.
    tcp.write_all(&empty(0)).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, 1009);
    let ev = with_timeout(closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1009);
    assert!(ev.reason.contains("fragments"), "{ev}");
    still_serving(addr).await;
}

/// A server socket with quick keep-alive and write timeouts, whose `on_error` errors go to
/// the returned channel.
async fn impatient_server(
    setup: impl Fn(&unisock::WebSocket) + Send + Sync + 'static,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<unisock::CloseEvent>,
    tokio::sync::mpsc::UnboundedReceiver<unisock::Error>,
) {
    let (etx, errors) = tokio::sync::mpsc::unbounded_channel();
    let (addr, closes) = spawn_server(move |ws| {
        ws.set_keepalive(Some(
            KeepAlive::every(Duration::from_millis(100)).timeout(Duration::from_millis(300)),
        ));
        ws.set_write_timeout(Some(Duration::from_millis(300)));
        let etx = etx.clone();
        ws.on_error(move |e| {
            let _ = etx.send(e);
        });
        let echo = ws.clone();
        ws.on_message(move |m| {
            if let MsgEvent::Text(t) = m {
                let _ = echo.send_text(&t);
            }
        });
        setup(ws);
    })
    .await;
    (addr, closes, errors)
}

#[tokio::test]
async fn a_peer_that_vanishes_without_a_close_is_found_by_keepalive_pings() {
    let (addr, mut closes, mut errors) = impatient_server(|_| {}).await;
    let mut tcp = raw_client(addr, "/").await;
    // The first ping is answered: the connection lives on, and the next ping comes after
    // another quiet interval.
    assert_eq!(read_server_frame(&mut tcp).await.map(|f| f.0), Some(9));
    tcp.write_all(&client_frame(10, b"")).await.unwrap();
    assert_eq!(read_server_frame(&mut tcp).await.map(|f| f.0), Some(9));
    // This one is not: the server gives up on the peer and drops the connection.
    let ev = with_timeout(closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1006);
    assert!(!ev.was_clean);
    assert!(ev.reason.contains("keep-alive"), "{ev}");
    assert!(matches!(
        with_timeout(errors.recv()).await,
        Some(unisock::Error::Timeout(_))
    ));
    assert_eq!(
        read_server_frame(&mut tcp).await,
        None,
        "the TCP connection is closed"
    );
    still_serving(addr).await;
}

/// Reads the server's close frame and answers nothing: the server's socket must report an
/// abnormal close (1006) once its closing handshake's 5 s have passed, and end TCP.
async fn assert_unanswered_close_times_out(
    tcp: &mut tokio::net::TcpStream,
    closes: &mut tokio::sync::mpsc::UnboundedReceiver<unisock::CloseEvent>,
) {
    assert_eq!(close_code(tcp).await, 1000);
    let started = std::time::Instant::now();
    let ev = with_timeout(closes.recv()).await.unwrap();
    let took = started.elapsed();
    assert_eq!(ev.code, 1006, "{ev}");
    assert!(!ev.was_clean);
    assert!(took >= Duration::from_secs(4), "closed after {took:?}");
    assert_eq!(
        with_timeout(read_server_frame(tcp)).await,
        None,
        "the TCP connection is closed"
    );
}

/// A close that a message handler starts (while the read loop is dispatching) is timed like
/// any other: a peer that never answers it is dropped once the closing handshake times out.
#[tokio::test]
async fn a_close_from_a_handler_that_is_never_answered_times_out() {
    let (addr, mut closes) = spawn_server(|ws| {
        let me = ws.clone();
        ws.on_message(move |_| {
            let _ = me.close(1000, "bye");
        });
    })
    .await;
    let mut tcp = raw_client(addr, "/").await;
    tcp.write_all(&client_frame(1, b"close, please"))
        .await
        .unwrap();
    assert_unanswered_close_times_out(&mut tcp, &mut closes).await;
}

/// The same for a close from another task while the read loop waits for input.
#[tokio::test]
async fn a_close_from_another_task_that_is_never_answered_times_out() {
    let (opened_tx, mut opened) = tokio::sync::mpsc::unbounded_channel();
    let (addr, mut closes) = spawn_server(move |ws| {
        let tx = opened_tx.clone();
        let me = ws.clone();
        ws.on_open(move || {
            let _ = tx.send(me.clone());
        });
    })
    .await;
    let mut tcp = raw_client(addr, "/").await;
    let server_side = with_timeout(opened.recv()).await.unwrap();
    server_side.close(1000, "bye").unwrap();
    assert_unanswered_close_times_out(&mut tcp, &mut closes).await;
}

/// The keep-alive and read-timeout clocks restart with every message received (the read
/// loop's one timer is re-armed lazily): a peer that keeps talking for several intervals is
/// neither pinged nor timed out, and is pinged once it falls quiet for an interval.
#[tokio::test]
async fn a_peer_that_keeps_talking_is_neither_pinged_nor_timed_out() {
    let interval = Duration::from_millis(300);
    let (addr, mut closes) = spawn_server(move |ws| {
        ws.set_keepalive(Some(KeepAlive::every(interval)));
        ws.set_read_timeout(Some(2 * interval));
        let echo = ws.clone();
        ws.on_message(move |m| {
            let _ = echo.send(m);
        });
    })
    .await;
    let mut tcp = raw_client(addr, "/").await;
    let talking = tokio::time::Instant::now();
    let mut sent = 0;
    let last_echo = loop {
        sent += 1;
        let text = format!("message {sent}");
        tcp.write_all(&client_frame(1, text.as_bytes()))
            .await
            .unwrap();
        let frame = read_server_frame(&mut tcp).await;
        assert_eq!(frame, Some((1, text.into_bytes())), "after {sent} messages");
        let echoed = tokio::time::Instant::now();
        if talking.elapsed() >= 4 * interval {
            break echoed;
        }
        tokio::time::sleep(interval / 10).await; // the pace of the talk
    };
    assert_eq!(read_server_frame(&mut tcp).await.map(|f| f.0), Some(9));
    let quiet = last_echo.elapsed();
    assert!(quiet >= interval - interval / 10, "pinged after {quiet:?}");
    assert!(closes.try_recv().is_err(), "the connection is still open");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_the_send_queue_stays_capped() {
    let (ctx, mut capped) = tokio::sync::mpsc::unbounded_channel();
    let first = std::sync::atomic::AtomicBool::new(true);
    let (addr, mut closes, mut errors) = impatient_server(move |ws| {
        ws.set_keepalive(None);
        if !first.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return; // only the first client is sent to
        }
        ws.set_send_queue_cap(1 << 20);
        let (sender, ctx) = (ws.clone(), ctx.clone());
        ws.on_open(move || {
            let (sender, ctx) = (sender.clone(), ctx.clone());
            // Send as fast as the queue allows, more than the kernel's socket buffers hold:
            // sends beyond the cap fail, so the queue never grows past it.
            tokio::spawn(async move {
                let mut refused = None;
                loop {
                    match sender.send_binary(&[7; 64 * 1024]) {
                        Ok(()) => {}
                        Err(e @ unisock::Error::Capacity { .. }) => {
                            refused.get_or_insert((e, sender.buffered_amount()));
                            if sender.flush().await.is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
                let _ = ctx.send(refused);
            });
        });
    })
    .await;
    let _tcp = raw_client(addr, "/").await; // never reads
    let ev = with_timeout(closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1006);
    assert!(ev.reason.contains("stopped reading"), "{ev}");
    let (err, buffered) = with_timeout(capped.recv())
        .await
        .unwrap()
        .expect("a refused send");
    assert!(
        matches!(err, unisock::Error::Capacity { cap, .. } if cap == 1 << 20),
        "{err}"
    );
    assert!(buffered <= 1 << 20, "{buffered}");
    assert!(matches!(
        with_timeout(errors.recv()).await,
        Some(unisock::Error::Timeout(_))
    ));
    still_serving(addr).await;
}

#[tokio::test]
async fn a_ping_flood_from_a_peer_that_does_not_read_is_dropped() {
    let (addr, mut closes, _errors) = impatient_server(|ws| ws.set_keepalive(None)).await;
    let mut tcp = common::raw_client_small_buffer(addr, "/").await;
    let flood: Vec<u8> = (0..1000)
        .flat_map(|_| client_frame(9, &[b'p'; 125]))
        .collect();
    // Pings, never reading a pong; the core answers only the newest ping once its output
    // is backed up (see the unit test in protocol::connection), so the flood grows no queue.
    let flooder = tokio::spawn(async move { while tcp.write_all(&flood).await.is_ok() {} });
    let ev = with_timeout(closes.recv()).await.unwrap();
    assert_eq!(ev.code, 1006);
    assert!(ev.reason.contains("stopped reading"), "{ev}");
    with_timeout(flooder).await.unwrap();
    still_serving(addr).await;
}

#[tokio::test]
async fn a_handshake_that_never_finishes_is_answered_408_and_dropped() {
    let (addr, _closes) = spawn_server(|ws| {
        ws.set_handshake_timeout(Duration::from_millis(200));
        let echo = ws.clone();
        ws.on_message(move |m| {
            if let MsgEvent::Text(t) = m {
                let _ = echo.send_text(&t);
            }
        });
    })
    .await;
    // Slowloris: the start of a request head, and then nothing.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    with_timeout(tcp.read_to_end(&mut answer)).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    still_serving(addr).await;
}

/// A raw client of the registry at `url` that negotiated permessage-deflate and sent all
/// of one compressed message of `inflated` zero bytes but its final frame, and holds it.
async fn deflate_attacker(addr: SocketAddr, inflated: usize) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(with_timeout(tcp.read(&mut b)).await.unwrap(), 1);
        response.push(b[0]);
    }
    let response = String::from_utf8(response).unwrap();
    assert!(response.contains("permessage-deflate"), "{response}");
    // Raw deflate of the zeros, sync-flushed: the server inflates all of it at once.
    let mut deflate = flate2::Compress::new(flate2::Compression::best(), false);
    let mut compressed = Vec::with_capacity(inflated / 500 + 1024);
    deflate
        .compress_vec(
            &vec![0u8; inflated],
            &mut compressed,
            flate2::FlushCompress::Sync,
        )
        .unwrap();
    // A first frame (RSV1: compressed, FIN unset) that the final frame would complete.
    let mut frame = client_frame(0x2, &compressed);
    frame[0] = 0x40 | 0x2;
    tcp.write_all(&frame).await.unwrap();
    tcp
}

/// A registry served on a free port whose sockets share a memory budget of `limit` bytes:
/// the registry, the budget, the ws:// URL and the address.
async fn registry_with_budget(
    limit: usize,
) -> (
    unisock::WebSockets,
    unisock::MemoryBudget,
    String,
    SocketAddr,
) {
    let sockets = unisock::WebSockets::new();
    let budget = unisock::MemoryBudget::new(limit);
    sockets.set_memory_budget(Some(budget.clone()));
    let url = common::serve_registry(&sockets).await;
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .parse()
        .unwrap();
    (sockets, budget, url, addr)
}

/// Peers that each leave a compressed message unfinished hold the registry's memory
/// budget: the one that would exceed it is closed with 1013 (try again later) instead of
/// inflating on, and other clients are still served. Before, each held its inflated
/// message, up to the 64 MiB message limit, for as long as it liked.
#[tokio::test]
async fn unfinished_compressed_messages_over_the_memory_budget_are_closed_with_1013() {
    let (sockets, budget, url, addr) = registry_with_budget(8 << 20).await;
    // Two fit (3 MiB each), the third does not.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(deflate_attacker(addr, 3 << 20).await);
    }
    common::until_len(&sockets, 2).await;
    with_timeout(async {
        while budget.used() < 6 << 20 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let mut third = deflate_attacker(addr, 3 << 20).await;
    assert_eq!(close_code(&mut third).await, 1013);
    assert!(budget.used() <= budget.limit());
    common::until_len(&sockets, 2).await;
    // Others are served, through the same registry.
    let (_ws, mut events) = open_client(&url).await;
    common::until_len(&sockets, 3).await;
    sockets.broadcast_text("still there?", None);
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text("still there?".into()))
    );
    // The attackers gone, their share comes back.
    drop(held);
    with_timeout(async {
        while budget.used() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// A peer that starts a message and trickles the rest, too slowly to finish within the
/// message timeout, is closed with 1008 although bytes keep arriving (which restart the
/// read timeout); one whose messages complete in time is not. Before, a trickle held its
/// message for as long as it liked.
#[tokio::test]
async fn a_message_trickled_past_the_message_timeout_is_closed_with_1008() {
    let (addr, _closes) = spawn_server(|ws| {
        ws.set_message_timeout(Some(Duration::from_millis(300)));
        ws.set_read_timeout(Some(Duration::from_secs(5)));
        let echo = ws.clone();
        ws.on_message(move |m| {
            let _ = echo.send(m);
        });
    })
    .await;
    let mut tcp = raw_client(addr, "/").await;
    let frame = client_frame(0x1, &[b'x'; 1000]);
    // The header and a few bytes at a time: the message is never complete in time.
    let started = tokio::time::Instant::now();
    let mut sent = 0;
    let code = with_timeout(async {
        loop {
            let end = (sent + 8).min(frame.len());
            if tcp.write_all(&frame[sent..end]).await.is_err() {
                break close_code(&mut tcp).await;
            }
            sent = end;
            let mut byte = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(20), tcp.peek(&mut byte)).await {
                Ok(_) => break close_code(&mut tcp).await,
                Err(_) => continue,
            }
        }
    })
    .await;
    assert_eq!(code, 1008);
    assert!(started.elapsed() >= Duration::from_millis(300));
    still_serving(addr).await;
}

/// A broadcast to a socket that does not read counts its queue against the registry's
/// memory budget: past it, that socket is closed (1013) instead of queueing on, while the
/// readers get every message. Before, each slow reader could queue up to 64 MiB, N of them
/// N times that.
#[tokio::test]
async fn a_broadcast_closes_a_socket_whose_queue_is_over_the_memory_budget() {
    let (sockets, budget, url, addr) = registry_with_budget(1 << 20).await;
    let _slow = common::raw_client_small_buffer(addr, "/ws").await; // never reads
    let (_fast, mut events) = open_client(&url).await;
    common::until_len(&sockets, 2).await;
    const N: usize = 256;
    let mut delivered = Vec::new();
    for i in 0..N {
        delivered.push(sockets.broadcast_binary(&vec![i as u8; 16 * 1024], None));
        assert!(budget.used() <= budget.limit());
        // The reader keeps up: each message is read before the next is broadcast.
        let got = with_timeout(events.messages.recv()).await.unwrap();
        assert_eq!(got, MsgEvent::Binary(vec![i as u8; 16 * 1024]));
    }
    // Every message reached the reader; the slow socket was dropped along the way: 4 MiB
    // for it would not fit in the 1 MiB budget beside its own 64 KiB.
    assert_eq!(delivered.first(), Some(&2));
    assert_eq!(delivered.last(), Some(&1), "{delivered:?}");
}
