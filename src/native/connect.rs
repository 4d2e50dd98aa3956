//! Client side: TCP connect and the opening handshake over the stream.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{rng, BoxIo, Negotiated};
use crate::protocol::handshake;
use crate::{DeflateConfig, Error, Result};

/// A connected client stream after a successful handshake.
pub(super) struct Connected {
    pub(super) stream: BoxIo,
    /// Bytes read past the response head: the start of the WebSocket stream.
    pub(super) leftover: Vec<u8>,
    pub(super) protocol: Option<String>,
    /// The headers of the server's 101 response.
    pub(super) headers: http::HeaderMap,
    /// permessage-deflate, if the server accepted our offer.
    pub(super) deflate: Option<Negotiated>,
}

/// How a client connects, from the socket's settings.
pub(super) struct Options {
    pub(super) tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    pub(super) deflate: DeflateConfig,
    /// Headers added to the request.
    pub(super) headers: Option<Box<http::HeaderMap>>,
}

/// Connects to `url` (`ws://` over TCP, `wss://` over TLS) and shakes hands.
pub(super) async fn connect(
    url: &url::Url,
    protocols: &[&str],
    options: Options,
) -> Result<Connected> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.as_str().into(),
        reason: reason.into(),
    };
    // The facade's `parse_ws_url` already refused URLs without a host; a `ws(s)` URL
    // always has a known default port.
    let host = url.host_str().ok_or_else(|| invalid("the host is empty"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| invalid("the URL has no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| connect_error(url, e))?;
    tcp.set_nodelay(true)?;
    let stream: BoxIo = if url.scheme() == "wss" {
        super::tls::connect(tcp, host, &authority(url), options.tls).await?
    } else {
        Box::new(tcp)
    };
    handshake_over(
        stream,
        url,
        protocols,
        options.deflate,
        options.headers.as_deref(),
    )
    .await
}

/// `host:port` as the URL names them (an IPv6 host in brackets), for error messages.
fn authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// A connect error whose message names the address it could not reach.
#[derive(Debug)]
struct ConnectError {
    addr: String,
    source: std::io::Error,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not connect to {}: {}", self.addr, self.source)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// `Error::Io` naming the address, with the connect error's kind (so callers can still
/// tell a refused connection from a DNS failure) and the error itself as its source.
fn connect_error(url: &url::Url, source: std::io::Error) -> Error {
    let kind = source.kind();
    let addr = authority(url);
    Error::Io(std::io::Error::new(kind, ConnectError { addr, source }))
}

/// Runs the client handshake over an already connected stream.
async fn handshake_over(
    mut stream: BoxIo,
    url: &url::Url,
    protocols: &[&str],
    deflate: DeflateConfig,
    headers: Option<&http::HeaderMap>,
) -> Result<Connected> {
    let mut random = [0u8; 16];
    rng::fill(&mut random);
    let key = handshake::generate_key(random);
    let offer = crate::protocol::deflate::client_offer(&deflate);
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if deflate.enabled {
        extra.push(("Sec-WebSocket-Extensions", &offer));
    }
    // `set_request_headers` accepted only visible ASCII values.
    for (name, value) in headers.into_iter().flatten() {
        extra.push((name.as_str(), value.to_str().unwrap_or_default()));
    }
    let request = handshake::client_request(url, &key, protocols, None, &extra)?;
    stream.write_all(&request).await?;
    let (response, leftover) =
        super::head::read_head(&mut stream, handshake::parse_response, "server").await??;
    let offered = deflate.enabled.then_some(&deflate);
    let checked = match handshake::check_response(&response, &key, protocols, offered) {
        Ok(checked) => checked,
        Err(handshake::HandshakeError::BadStatus { code, reason, .. }) => {
            let body = read_error_body(&mut stream, &response, leftover).await;
            return Err(handshake::HandshakeError::BadStatus { code, reason, body }.into());
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Connected {
        stream,
        leftover,
        protocol: checked.protocol,
        headers: response.into_parts().0.headers,
        deflate: checked.deflate.map(|(params, answer)| Negotiated {
            params,
            config: deflate,
            answer,
        }),
    })
}

/// How long a refused handshake's body may take to arrive: the refusal is already known,
/// the body only explains it.
const ERROR_BODY_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// The first bytes of the body of a response that refused the upgrade, for the error.
/// Rule: read until [`handshake::MAX_ERROR_BODY`] bytes, the end the response gives
/// (`Content-Length`; the last chunk if chunked; EOF otherwise), or [`ERROR_BODY_TIME`],
/// whichever comes first, so a server that keeps the connection open never makes `open`
/// wait longer than that. A read error ends the body where it is.
async fn read_error_body(
    stream: &mut BoxIo,
    response: &http::Response<()>,
    mut buf: Vec<u8>,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let framing = handshake::BodyFraming::of(response);
    let read = async {
        while !framing.is_complete(&buf) && buf.len() < handshake::MAX_ERROR_BODY {
            buf.reserve(handshake::MAX_ERROR_BODY);
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(ERROR_BODY_TIME, read).await;
    let mut body = framing.body(&buf);
    body.truncate(handshake::MAX_ERROR_BODY);
    body
}
