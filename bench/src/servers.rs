//! One echo server per crate, each echoing the way that crate's own echo example does, and
//! beside it, for the peers whose examples write every message on its own, a batched echo
//! (`CRATE+batched`): the peer at its best, writing what it echoed only when nothing more
//! is ready to read.
//!
//! Every server runs on one current-thread Tokio runtime (the harness pins the process to
//! one core), accepts on the given address, sets `TCP_NODELAY` on each connection (so no
//! peer is penalised by Nagle's algorithm), prints `listening on ADDR` and runs until killed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The crates compared, unisock first.
pub const CRATES: [&str; 5] = [
    "unisock",
    "tokio-tungstenite",
    "fastwebsockets",
    "tokio-websockets",
    "yawc",
];

/// The echo servers: every crate's example-style echo, and a batched one (`CRATE+batched`)
/// for the peers whose examples flush every message. tokio-tungstenite's example already
/// batches (`forward` flushes only when the read half has nothing ready), and unisock's
/// writer task writes what is queued at once.
pub const SERVERS: [&str; 8] = [
    "unisock",
    "tokio-tungstenite",
    "fastwebsockets",
    "fastwebsockets+batched",
    "tokio-websockets",
    "tokio-websockets+batched",
    "yawc",
    "yawc+batched",
];

/// The crate a server of `SERVERS` belongs to.
pub fn crate_of(server: &str) -> &str {
    server.split_once('+').map_or(server, |(krate, _)| krate)
}

/// The variant of a server of `SERVERS` (`batched`), or `None` for the example-style one.
pub fn variant_of(server: &str) -> Option<&str> {
    server.split_once('+').map(|(_, variant)| variant)
}

/// Runs the echo server `server` (one of `SERVERS`) on `addr` until the process is killed.
pub fn run(server: &str, addr: &str) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = listen(addr)?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            match server {
                "unisock" => tokio::spawn(unisock_echo(tcp)),
                "tokio-tungstenite" => tokio::spawn(tungstenite_echo(tcp)),
                "fastwebsockets" => tokio::spawn(hyper_echo(tcp, fastwebsockets_upgrade)),
                "fastwebsockets+batched" => {
                    tokio::spawn(hyper_echo(tcp, fastwebsockets_batched_upgrade))
                }
                "tokio-websockets" => tokio::spawn(tokio_websockets_echo(tcp, false)),
                "tokio-websockets+batched" => tokio::spawn(tokio_websockets_echo(tcp, true)),
                "yawc" => tokio::spawn(hyper_echo(tcp, yawc_upgrade)),
                "yawc+batched" => tokio::spawn(hyper_echo(tcp, yawc_batched_upgrade)),
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("unknown server {other}"),
                    ))
                }
            };
        }
    })
}

/// A listener on `addr` with a backlog of 4,096 connections. `TcpListener::bind`'s 128
/// overflowed while the load generator opened its 10,000 connections 200 at a time and the
/// server was busy upgrading the ones before: the dropped handshakes were retried after 1 s
/// and more, and opening the connections took up to 13 s instead of about 1 s.
fn listen(addr: &str) -> io::Result<TcpListener> {
    let addr: std::net::SocketAddr = addr.parse().map_err(io::Error::other)?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// unisock, as examples/echo_server.rs: a message handler that sends the message back
/// (`send(msg)` hands it over, so a big one is not copied).
async fn unisock_echo(tcp: TcpStream) {
    use unisock::WebSocket;
    let ws = WebSocket::new();
    let echo = ws.clone();
    ws.on_message(move |msg| {
        let _ = echo.send(msg);
    });
    if ws.upgrade(tcp).await.is_ok() {
        ws.read().await;
    }
}

/// tokio-tungstenite, as its examples/echo-server.rs: forward the read half into the write half.
async fn tungstenite_echo(tcp: TcpStream) {
    use futures_util::{future, TryStreamExt};
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}

/// tokio-websockets, as its examples/echo_server.rs (unlimited sizes, as there); batched,
/// through `read_ahead_echo`.
async fn tokio_websockets_echo(tcp: TcpStream, batched: bool) {
    use tokio_websockets::{Config, Limits, ServerBuilder};
    let fut = async move {
        let Ok((_request, mut server)) = ServerBuilder::new()
            .config(Config::default().frame_size(usize::MAX))
            .limits(Limits::unlimited())
            .accept(tcp)
            .await
        else {
            return;
        };
        if batched {
            let echo = |item: Result<tokio_websockets::Message, _>| {
                item.ok()
                    .map(|m| (m.is_text() || m.is_binary()).then_some(m))
            };
            return read_ahead_echo(server, echo).await;
        }
        while let Some(Ok(item)) = server.next().await {
            if (item.is_text() || item.is_binary()) && server.send(item).await.is_err() {
                return;
            }
        }
    };
    tokio::task::unconstrained(fut).await;
}

/// The batched echo of a peer whose socket is a `Stream` and a `Sink`: `feed` each echo and
/// `flush` only when the next read would wait, as `StreamExt::forward` does (without
/// splitting the socket into two halves behind a lock). `echo` maps what was read to the
/// message to send back: `Some(None)` for nothing, `None` when the connection ended.
async fn feed_echo<W, T, M>(mut ws: W, echo: impl Fn(T) -> Option<Option<M>>)
where
    W: Stream<Item = T> + Sink<M> + Unpin,
{
    loop {
        // A stream keeps its state between polls, so polling it once and giving up if it
        // would wait loses nothing.
        let next = match ws.next().now_or_never() {
            Some(next) => next,
            None => {
                if ws.flush().await.is_err() {
                    return;
                }
                ws.next().await
            }
        };
        match next.and_then(&echo) {
            Some(Some(msg)) => {
                if ws.feed(msg).await.is_err() {
                    return;
                }
            }
            Some(None) => {}
            None => return,
        }
    }
}

/// As `feed_echo`, reading every message that is ready before feeding any: tokio-websockets'
/// stream writes out what was fed before each read, so feeding each message as it was read
/// wrote every one on its own (as many writes as messages; this way, one per batch). yawc
/// keeps `feed_echo`: reading ahead cost it 8 times the CPU per message (2.5 against 0.3 µs,
/// 16 B with 64 connections).
async fn read_ahead_echo<W, T, M>(mut ws: W, echo: impl Fn(T) -> Option<Option<M>>)
where
    W: Stream<Item = T> + Sink<M> + Unpin,
{
    let mut ready = Vec::new();
    loop {
        let Some(first) = ws.next().await else { return };
        ready.push(first);
        let mut open = true;
        while let Some(next) = ws.next().now_or_never() {
            match next {
                Some(item) => ready.push(item),
                None => {
                    open = false;
                    break;
                }
            }
        }
        for item in ready.drain(..) {
            match echo(item) {
                Some(Some(msg)) => {
                    if ws.feed(msg).await.is_err() {
                        return;
                    }
                }
                Some(None) => {}
                None => {
                    open = false;
                    break;
                }
            }
        }
        if ws.flush().await.is_err() || !open {
            return;
        }
    }
}

type Upgrade = fn(
    hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Empty<hyper::body::Bytes>>, io::Error>;

/// fastwebsockets and yawc serve the upgrade through hyper, as their examples do.
async fn hyper_echo(tcp: TcpStream, upgrade: Upgrade) {
    let io = hyper_util::rt::TokioIo::new(tcp);
    let service = hyper::service::service_fn(move |req| async move { upgrade(req) });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades()
        .await;
}

fn other<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

/// fastwebsockets, as its examples/echo_server.rs: a FragmentCollector echoing frames.
fn fastwebsockets_upgrade(
    mut req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Empty<hyper::body::Bytes>>, io::Error> {
    let (response, fut) = fastwebsockets::upgrade::upgrade(&mut req).map_err(other)?;
    tokio::spawn(tokio::task::unconstrained(async move {
        let Ok(ws) = fut.await else { return };
        fastwebsockets_echo(fastwebsockets::FragmentCollector::new(ws)).await;
    }));
    Ok(response)
}

/// fastwebsockets batched: the same echo over a buffered stream, which its docs ask to be
/// flushed by hand. `read_frame` cannot be polled and given up halfway (it would lose a
/// partly read header), so "flush when the next read would wait" is in the stream
/// (`FlushWhenIdle`).
fn fastwebsockets_batched_upgrade(
    mut req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Empty<hyper::body::Bytes>>, io::Error> {
    use fastwebsockets::{FragmentCollector, Role, WebSocket};
    let (response, fut) = fastwebsockets::upgrade::upgrade(&mut req).map_err(other)?;
    tokio::spawn(tokio::task::unconstrained(async move {
        let Ok(ws) = fut.await else { return };
        let io = FlushWhenIdle(BufWriter::with_capacity(64 << 10, ws.into_inner()));
        let ws = WebSocket::after_handshake(io, Role::Server);
        fastwebsockets_echo(FragmentCollector::new(ws)).await;
    }));
    Ok(response)
}

async fn fastwebsockets_echo<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: fastwebsockets::FragmentCollector<S>,
) {
    use fastwebsockets::OpCode;
    while let Ok(frame) = ws.read_frame().await {
        let echo = match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await,
            _ => Ok(()),
        };
        if echo.is_err() {
            break;
        }
    }
}

/// A stream whose writes collect in a buffer that is written out when full, when flushed,
/// or when a read finds nothing to read.
struct FlushWhenIdle<S>(BufWriter<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for FlushWhenIdle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Pending => match Pin::new(&mut self.0).poll_flush(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Pending,
            },
            read => read,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FlushWhenIdle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// yawc's options in its examples/echo_server.rs: no compression, 100 MB payloads.
fn yawc_options() -> yawc::Options {
    yawc::Options::default()
        .with_max_payload_read(100 * 1024 * 1024)
        .with_max_read_buffer(200 * 1024 * 1024)
        .with_compression_level(yawc::CompressionLevel::none())
}

/// yawc, as its examples/echo_server.rs: `next()` and `send()`.
fn yawc_upgrade(
    mut req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Empty<hyper::body::Bytes>>, io::Error> {
    use yawc::{OpCode, WebSocket};
    let (response, fut) =
        WebSocket::upgrade_with_options(&mut req, yawc_options()).map_err(other)?;
    tokio::spawn(tokio::task::unconstrained(async move {
        let Ok(mut ws) = fut.await else { return };
        while let Some(frame) = ws.next().await {
            if matches!(frame.opcode(), OpCode::Text | OpCode::Binary)
                && ws.send(frame).await.is_err()
            {
                break;
            }
        }
    }));
    Ok(response)
}

/// yawc batched: `feed` and `flush` once nothing more is ready (`feed_echo`).
fn yawc_batched_upgrade(
    mut req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Empty<hyper::body::Bytes>>, io::Error> {
    use yawc::{Frame, OpCode, WebSocket};
    let (response, fut) =
        WebSocket::upgrade_with_options(&mut req, yawc_options()).map_err(other)?;
    tokio::spawn(tokio::task::unconstrained(async move {
        let Ok(ws) = fut.await else { return };
        let echo = |frame: Frame| {
            Some(matches!(frame.opcode(), OpCode::Text | OpCode::Binary).then_some(frame))
        };
        feed_echo(ws, echo).await;
    }));
    Ok(response)
}
