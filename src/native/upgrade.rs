//! Server side: read the HTTP upgrade request from a raw stream, validate it, and prepare
//! the 101 response (sent by [`crate::server::PendingUpgrade::commit`]).

use std::time::Duration;

use tokio::io::AsyncWriteExt;

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
            response: handshake::upgrade_response(&accept.accept),
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

async fn read_request(stream: &mut BoxIo) -> Result<(http::Request<()>, Vec<u8>)> {
    match super::head::read_head(stream, handshake::parse_request, "client").await? {
        Ok(parsed) => Ok(parsed),
        Err(e) => {
            reject(stream, &e).await;
            Err(e.into())
        }
    }
}

/// Best effort: answer with the error's status and close.
async fn reject(stream: &mut BoxIo, err: &HandshakeError) {
    tracing::warn!("WebSocket upgrade refused: {err}");
    let _ = stream.write_all(&handshake::error_response(err)).await;
    let _ = stream.shutdown().await;
}
