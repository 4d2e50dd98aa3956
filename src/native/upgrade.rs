//! Server side: read the HTTP upgrade request from a raw stream, validate it, and prepare
//! the 101 response (sent by [`crate::server::PendingUpgrade::commit`]).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::BoxIo;
use crate::protocol::handshake::{self, HandshakeError};
use crate::{Error, Result};

/// How long a client may take to send its whole request head (slowloris guard), unless
/// set with `WebSocketExt::set_handshake_timeout`.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A validated request, its prepared 101 response, and the stream.
pub(crate) struct Validated {
    pub(crate) request: http::Request<()>,
    pub(crate) response: http::Response<()>,
    pub(crate) stream: BoxIo,
    pub(crate) leftover: Vec<u8>,
}

/// Reads a request head within `timeout`; a malformed or oversized head is answered
/// (400/431) and refused, and a head that does not arrive in time is answered 408.
pub(crate) async fn read_request_timed(
    stream: &mut BoxIo,
    timeout: Duration,
) -> Result<(http::Request<()>, Vec<u8>)> {
    match tokio::time::timeout(timeout, read_request(stream)).await {
        Ok(read) => read,
        Err(_) => {
            tracing::debug!("the client did not finish its upgrade request in {timeout:?}");
            let answer =
                b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = stream.write_all(answer).await;
                let _ = stream.shutdown().await;
            })
            .await;
            Err(Error::Timeout(
                "the client did not finish its upgrade request in time",
            ))
        }
    }
}

/// Validates an already-parsed request; on failure the error response is sent.
pub(crate) async fn validate(
    request: http::Request<()>,
    mut stream: BoxIo,
    leftover: Vec<u8>,
    allowed_origins: Option<&[String]>,
) -> Result<Validated> {
    match handshake::validate_request(&request, allowed_origins) {
        Ok(accept) => Ok(Validated {
            response: response_101(&accept.accept),
            request,
            stream,
            leftover,
        }),
        Err(e) => {
            reject(&mut stream, &e).await;
            Err(e.into())
        }
    }
}

/// The 101 Switching Protocols response for an accept key.
pub(crate) fn response_101(accept: &str) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(value) = http::HeaderValue::from_str(accept) {
        headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// Serialises a response head (status line, headers, blank line).
pub(crate) fn encode_response(response: &http::Response<()>) -> Vec<u8> {
    let status = response.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

async fn read_request(stream: &mut BoxIo) -> Result<(http::Request<()>, Vec<u8>)> {
    match read_head(stream, handshake::parse_request, "client").await? {
        Ok(parsed) => Ok(parsed),
        Err(e) => {
            reject(stream, &e).await;
            Err(e.into())
        }
    }
}

/// A head parser: `handshake::parse_request` or `handshake::parse_response`.
type ParseHead<T> = fn(&[u8]) -> std::result::Result<Option<(T, usize)>, HandshakeError>;

/// Reads an HTTP head (a request or a response, as `parse` says) from `stream`: returns it
/// and the bytes read past it. The outer `Result` is the network's, the inner the parser's.
pub(super) async fn read_head<T>(
    stream: &mut BoxIo,
    parse: ParseHead<T>,
    peer: &str,
) -> Result<std::result::Result<(T, Vec<u8>), HandshakeError>> {
    // Read onto the heap, not into a buffer on the future: the future's size stays in the
    // task of every connection (upgrading is its first step) for as long as it lives.
    let mut buf = Vec::with_capacity(2048);
    loop {
        buf.reserve(1024); // the parser bounds the head (`MAX_HEAD_SIZE`)
        let n = stream.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the {peer} closed the connection during the handshake"),
            )));
        }
        match parse(&buf) {
            Ok(Some((head, len))) => {
                let leftover = buf.split_off(len.min(buf.len()));
                return Ok(Ok((head, leftover)));
            }
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
    }
}

/// Best effort: answer with the error's status and close.
async fn reject(stream: &mut BoxIo, err: &HandshakeError) {
    tracing::warn!("WebSocket upgrade refused: {err}");
    let _ = stream.write_all(&handshake::error_response(err)).await;
    let _ = stream.shutdown().await;
}
