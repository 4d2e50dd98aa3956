//! Server side: read the HTTP upgrade request from a raw stream, validate it, answer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::BoxIo;
use crate::protocol::handshake;
use crate::{Error, Result};

/// How long a client may take to send its whole request head (slowloris guard).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An upgraded server stream.
pub(super) struct Upgraded {
    pub(super) stream: BoxIo,
    pub(super) leftover: Vec<u8>,
    /// The request target (path and query).
    pub(super) target: String,
}

/// Reads and validates the request and writes the 101 (or the error response).
pub(super) async fn upgrade(mut stream: BoxIo, allowed_origins: Option<&[String]>) -> Result<Upgraded> {
    let (request, leftover) = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_request(&mut stream))
        .await
        .map_err(|_| Error::Timeout("the client did not finish its upgrade request in time"))??;
    match handshake::validate_request(&request, allowed_origins) {
        Ok(accept) => {
            stream
                .write_all(&handshake::response_101(&accept.accept, None, &[]))
                .await?;
            Ok(Upgraded {
                stream,
                leftover,
                target: request.uri().to_string(),
            })
        }
        Err(e) => {
            reject(&mut stream, &e).await;
            Err(e.into())
        }
    }
}

async fn read_request(stream: &mut BoxIo) -> Result<(http::Request<()>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the client closed the connection during the handshake",
            )));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        match handshake::parse_request(&buf) {
            Ok(Some((request, head_len))) => {
                let leftover = buf.split_off(head_len.min(buf.len()));
                return Ok((request, leftover));
            }
            Ok(None) => {}
            Err(e) => {
                reject(stream, &e).await;
                return Err(e.into());
            }
        }
    }
}

/// Best effort: answer with the error's status and close.
async fn reject(stream: &mut BoxIo, err: &handshake::HandshakeError) {
    tracing::warn!("WebSocket upgrade refused: {err}");
    let _ = stream.write_all(&handshake::error_response(err)).await;
    let _ = stream.shutdown().await;
}
