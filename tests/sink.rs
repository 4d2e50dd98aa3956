//! Awaitable sends: `WebSocket` as a `Sink` of messages, and `send_async`, wait for room in
//! the send queue instead of failing with `Capacity`, over real sockets.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::task::Poll;

use common::{raw_client_small_buffer, read_server_frame, spawn_echo_server, with_timeout};
use futures_util::{stream, SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use unisock::{Error, MsgEvent, WebSocket, WebSocketExt};

/// The send queue cap of the server sockets here: a few messages.
const CAP: usize = 64 * 1024;
const LEN: usize = 16 * 1024;

/// Message `i`: `LEN` bytes that say which one it is.
fn message(i: usize) -> Vec<u8> {
    let mut payload = vec![(i % 251) as u8; LEN];
    payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
    payload
}

/// A server on a free port whose one socket, upgraded with a send queue cap of `CAP`, is
/// handed over once open (its event loop runs in the background).
async fn server_socket() -> (std::net::SocketAddr, oneshot::Receiver<WebSocket>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = unisock::server::accept(&listener).await;
        let ws = WebSocket::new();
        ws.set_send_queue_cap(CAP);
        ws.upgrade(tcp).await.unwrap();
        let _ = tx.send(ws.clone());
        ws.read().await;
    });
    (addr, rx)
}

#[tokio::test]
async fn a_sink_waits_for_a_peer_that_does_not_read_and_loses_nothing() {
    // 8 MiB: far more than the cap and what the kernel buffers for a peer not reading.
    const COUNT: usize = 512;
    let (addr, server) = server_socket().await;
    let mut client = raw_client_small_buffer(addr, "/").await;
    let ws = with_timeout(server).await.unwrap();
    let (blocked_tx, blocked_rx) = oneshot::channel();
    let sender = tokio::spawn({
        let ws = ws.clone();
        async move {
            let mut sink = ws.clone();
            let mut blocked = Some(blocked_tx);
            for i in 0..COUNT {
                // `feed`: queued, not flushed (`send` would also wait until it is written).
                let mut send = sink.feed(MsgEvent::Binary(message(i)));
                match futures_util::poll!(&mut send) {
                    Poll::Ready(sent) => sent?,
                    Poll::Pending => {
                        // Waiting, where `send_binary` would fail with `Capacity`.
                        if let Some(tx) = blocked.take() {
                            let _ = tx.send((i, ws.buffered_amount()));
                        }
                        send.await?;
                    }
                }
                let buffered = ws.buffered_amount();
                assert!(buffered <= CAP, "{buffered} bytes queued, over the cap");
            }
            SinkExt::flush(&mut sink).await
        }
    });
    let (at, buffered) = with_timeout(blocked_rx).await.unwrap();
    assert!(
        buffered + LEN > CAP,
        "waited with room: {buffered} bytes queued"
    );
    assert!(buffered <= CAP, "{buffered} bytes queued, over the cap");
    assert!(at < COUNT);
    assert!(
        !sender.is_finished(),
        "the peer read nothing, yet all was sent"
    );

    // The peer reads: every message arrives, in order.
    for i in 0..COUNT {
        let (opcode, payload) = read_server_frame(&mut client).await.unwrap();
        assert_eq!(opcode, 2);
        assert!(payload == message(i), "message {i} differs");
    }
    with_timeout(sender).await.unwrap().unwrap();
    assert_eq!(ws.buffered_amount(), 0);
}

#[tokio::test]
async fn send_async_fails_with_closed_when_the_socket_closes_while_it_waits() {
    let (addr, server) = server_socket().await;
    let _client = raw_client_small_buffer(addr, "/").await;
    let ws = with_timeout(server).await.unwrap();
    let too_big = ws.send_async(MsgEvent::Binary(vec![0; CAP + 1])).await;
    assert!(
        matches!(too_big, Err(Error::Capacity { .. })),
        "{too_big:?}"
    );
    let waiting = tokio::spawn({
        let ws = ws.clone();
        async move {
            let mut i = 0;
            loop {
                if let Err(e) = ws.send_async(MsgEvent::Binary(message(i))).await {
                    return e;
                }
                i += 1;
            }
        }
    });
    // Past the cap: the sender waits (the peer reads nothing), then the close ends it.
    with_timeout(async {
        while ws.buffered_amount() + LEN <= CAP {
            tokio::task::yield_now().await;
        }
    })
    .await;
    ws.close(1000, "bye").unwrap();
    let error = with_timeout(waiting).await.unwrap();
    assert!(matches!(error, Error::Closed), "{error:?}");
}

#[tokio::test]
async fn send_all_and_forward_deliver_a_stream_in_order_and_close() {
    let addr = spawn_echo_server().await;
    let mut ws = WebSocket::new();
    ws.set_send_queue_cap(CAP);
    with_timeout(ws.open(&format!("ws://{addr}/"), &[]))
        .await
        .unwrap();
    let first: Vec<MsgEvent> = (0..100).map(|i| MsgEvent::Binary(message(i))).collect();
    let second: Vec<MsgEvent> = (0..100)
        .map(|i| MsgEvent::Text(format!("line {i}")))
        .collect();

    // `send_all`: 1.6 MiB through a 64 KiB queue, echoed back in order.
    let mut echoes = ws.clone();
    let mut sink = ws.clone();
    let mut items = stream::iter(first.clone()).map(Ok);
    let (sent, back) = with_timeout(async {
        tokio::join!(
            async {
                sink.send_all(&mut items).await?;
                SinkExt::flush(&mut sink).await
            },
            echoes.by_ref().take(first.len()).collect::<Vec<_>>()
        )
    })
    .await;
    sent.unwrap();
    assert!(back == first, "the echoes differ from what was sent");

    // `forward` sends the stream, then closes the sink: 1000, and the socket closes.
    let (sent, back) = with_timeout(async {
        tokio::join!(
            stream::iter(second.clone()).map(Ok).forward(&mut ws),
            echoes.collect::<Vec<_>>()
        )
    })
    .await;
    sent.unwrap();
    assert_eq!(back, second);
    let closed = with_timeout(ws.closed()).await;
    assert_eq!((closed.code, closed.was_clean), (1000, true));
}
