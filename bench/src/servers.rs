//! One echo server per crate, each echoing the way that crate's own echo example does.
//!
//! Every server runs on one current-thread Tokio runtime (the harness pins the process to
//! one core), accepts on the given address, sets `TCP_NODELAY` on each connection (so no
//! peer is penalised by Nagle's algorithm), prints `listening on ADDR` and runs until killed.

use std::io;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The crates compared, unisock first.
pub const CRATES: [&str; 5] = [
    "unisock",
    "tokio-tungstenite",
    "fastwebsockets",
    "tokio-websockets",
    "yawc",
];

/// Runs the echo server of `krate` on `addr` until the process is killed.
pub fn run(krate: &str, addr: &str) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = listen(addr)?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            match krate {
                "unisock" => tokio::spawn(unisock_echo(tcp)),
                "tokio-tungstenite" => tokio::spawn(tungstenite_echo(tcp)),
                "fastwebsockets" => tokio::spawn(hyper_echo(tcp, fastwebsockets_upgrade)),
                "tokio-websockets" => tokio::spawn(tokio_websockets_echo(tcp)),
                "yawc" => tokio::spawn(hyper_echo(tcp, yawc_upgrade)),
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("unknown crate {other}"),
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

/// tokio-websockets, as its examples/echo_server.rs (unlimited sizes, as there).
async fn tokio_websockets_echo(tcp: TcpStream) {
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
        while let Some(Ok(item)) = server.next().await {
            if (item.is_text() || item.is_binary()) && server.send(item).await.is_err() {
                return;
            }
        }
    };
    tokio::task::unconstrained(fut).await;
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
    use fastwebsockets::{upgrade, FragmentCollector, OpCode};
    let (response, fut) = upgrade::upgrade(&mut req).map_err(other)?;
    tokio::spawn(tokio::task::unconstrained(async move {
        let Ok(ws) = fut.await else { return };
        let mut ws = FragmentCollector::new(ws);
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
    }));
    Ok(response)
}

/// yawc, as its examples/echo_server.rs: the same options (no compression, 100 MB payloads).
fn yawc_upgrade(
    mut req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Empty<hyper::body::Bytes>>, io::Error> {
    use yawc::{CompressionLevel, OpCode, Options, WebSocket};
    let options = Options::default()
        .with_max_payload_read(100 * 1024 * 1024)
        .with_max_read_buffer(200 * 1024 * 1024)
        .with_compression_level(CompressionLevel::none());
    let (response, fut) = WebSocket::upgrade_with_options(&mut req, options).map_err(other)?;
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
