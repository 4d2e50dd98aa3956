//! Reading an HTTP head (the client's upgrade request, or the server's answer to ours)
//! from a raw stream: one reader for both roles, bounded by the parser.

use tokio::io::AsyncReadExt;

use super::BoxIo;
use crate::protocol::handshake::HandshakeError;
use crate::{Error, Result};

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
