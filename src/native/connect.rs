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
    /// How many redirects (301, 302, 303, 307, 308) to follow.
    pub(super) max_redirects: u8,
    /// The proxy setting, applied to each URL (redirects included).
    pub(super) proxy: super::proxy::Choice,
}

/// Connects to `url` (`ws://` over TCP, `wss://` over TLS) and shakes hands, following
/// up to `options.max_redirects` redirects.
pub(super) async fn connect(
    url: &url::Url,
    protocols: &[&str],
    mut options: Options,
) -> Result<Connected> {
    let mut url = std::borrow::Cow::Borrowed(url);
    let mut hops = 0;
    loop {
        let follow = hops < options.max_redirects;
        match connect_once(&url, protocols, &options, follow).await? {
            Handshaken::Connected(connected) => return Ok(connected),
            Handshaken::Redirect(location) => {
                let next = redirect_target(&url, &location)?;
                if !same_origin(&url, &next) {
                    // Credentials are for the origin they were set for.
                    options.headers = None;
                }
                tracing::debug!("redirected from {url} to {next}");
                url = std::borrow::Cow::Owned(next);
                hops += 1;
            }
        }
    }
}

/// Shakes hands over a stream the caller connected (`WebSocketExt::open_over`). A
/// redirect is not followed: the stream cannot be redialled elsewhere.
pub(super) async fn handshake(
    stream: BoxIo,
    url: &url::Url,
    protocols: &[&str],
    options: Options,
) -> Result<Connected> {
    let headers = options.headers.as_deref();
    match handshake_over(stream, url, protocols, options.deflate, headers, false).await? {
        Handshaken::Connected(connected) => Ok(connected),
        // Not asked for (`follow` is false): refused as the status it is.
        Handshaken::Redirect(location) => Err(Error::InvalidUrl {
            url: location.into(),
            reason: "a redirect cannot be followed over the caller's stream".into(),
        }),
    }
}

/// One connection attempt's outcome.
enum Handshaken {
    Connected(Connected),
    /// The server answered with a redirect to this `Location` (followed on request).
    Redirect(String),
}

/// Connects to `url` and shakes hands once; a redirect is returned when `follow`.
async fn connect_once(
    url: &url::Url,
    protocols: &[&str],
    options: &Options,
    follow: bool,
) -> Result<Handshaken> {
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
    let secure = url.scheme() == "wss";
    // Chosen per URL, so each redirect's target is checked against `no_proxy` again.
    let stream: BoxIo = match options.proxy.for_url(url)? {
        Some(proxy) => {
            let tunnel = super::proxy::tunnel(&proxy, host, port, &authority(url)).await?;
            if secure {
                super::tls::connect(tunnel, host, &authority(url), options.tls.clone()).await?
            } else {
                tunnel
            }
        }
        None => {
            let tcp = TcpStream::connect((host, port))
                .await
                .map_err(|e| connect_error(authority(url), e))?;
            tcp.set_nodelay(true)?;
            if secure {
                super::tls::connect(tcp, host, &authority(url), options.tls.clone()).await?
            } else {
                Box::new(tcp)
            }
        }
    };
    handshake_over(
        stream,
        url,
        protocols,
        options.deflate,
        options.headers.as_deref(),
        follow,
    )
    .await
}

/// Where a redirect leads: `location` resolved against `from`, with `http(s)` read as
/// `ws(s)`. A redirect from `wss://` to `ws://` is refused: it would drop TLS.
fn redirect_target(from: &url::Url, location: &str) -> Result<url::Url> {
    let refused = |reason: String| Error::InvalidUrl {
        url: location.into(),
        reason: format!("a redirect from {from} {reason}").into(),
    };
    let mut next = from
        .join(location)
        .map_err(|e| refused(format!("names no valid URL ({e})")))?;
    let scheme = match next.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => return Err(refused(format!("leads to the scheme '{other}'"))),
    };
    if from.scheme() == "wss" && scheme == "ws" {
        return Err(refused("to ws:// is refused: it would drop TLS".into()));
    }
    if next.scheme() != scheme {
        // Both are special schemes with a host, so the change is accepted.
        let _ = next.set_scheme(scheme);
    }
    next.set_fragment(None);
    Ok(next)
}

/// Whether two URLs have the same origin: scheme, host and port.
fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
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

/// `Error::Io` naming the address (`host:port`, or "the proxy host:port"), with the
/// connect error's kind (so callers can still tell a refused connection from a DNS
/// failure) and the error itself as its source.
pub(super) fn connect_error(addr: String, source: std::io::Error) -> Error {
    let kind = source.kind();
    Error::Io(std::io::Error::new(kind, ConnectError { addr, source }))
}

/// Runs the client handshake over an already connected stream.
async fn handshake_over(
    mut stream: BoxIo,
    url: &url::Url,
    protocols: &[&str],
    deflate: DeflateConfig,
    headers: Option<&http::HeaderMap>,
    follow: bool,
) -> Result<Handshaken> {
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
    // A TLS server's refusal of our client certificate comes only now (see `alerted`).
    let alerted = |e: Error| super::tls::alerted(e, &authority(url));
    stream
        .write_all(&request)
        .await
        .map_err(|e| alerted(e.into()))?;
    let (response, leftover) =
        super::head::read_head(&mut stream, handshake::parse_response, "server")
            .await
            .map_err(alerted)??;
    if follow && matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        if let Some(location) = response.headers().get(http::header::LOCATION) {
            let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
            return Ok(Handshaken::Redirect(location));
        }
    }
    let offered = deflate.enabled.then_some(&deflate);
    let checked = match handshake::check_response(&response, &key, protocols, offered) {
        Ok(checked) => checked,
        Err(handshake::HandshakeError::BadStatus { code, reason, .. }) => {
            let body = read_error_body(&mut stream, &response, leftover).await;
            return Err(handshake::HandshakeError::BadStatus { code, reason, body }.into());
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Handshaken::Connected(Connected {
        stream,
        leftover,
        protocol: checked.protocol,
        headers: response.into_parts().0.headers,
        deflate: checked.deflate.map(|(params, answer)| Negotiated {
            params,
            config: deflate,
            answer,
        }),
    }))
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

#[cfg(test)]
mod tests {
    use super::{redirect_target, same_origin};

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn redirect_targets() {
        let from = url("ws://a.example/chat?x=1");
        let cases = [
            ("/new", "ws://a.example/new"),
            ("new", "ws://a.example/new"),
            ("http://b.example:8080/ws", "ws://b.example:8080/ws"),
            ("https://b.example/ws#frag", "wss://b.example/ws"),
            ("wss://b.example/ws", "wss://b.example/ws"),
        ];
        for (location, want) in cases {
            let got = redirect_target(&from, location).unwrap();
            assert_eq!(got.as_str(), want, "{location}");
        }
        let secure = url("wss://a.example/chat");
        for downgrade in ["ws://a.example/", "http://a.example/"] {
            let err = redirect_target(&secure, downgrade).unwrap_err();
            assert!(err.to_string().contains("drop TLS"), "{err}");
        }
        assert!(redirect_target(&from, "ftp://a.example/").is_err());
        assert_eq!(
            redirect_target(&secure, "/x").unwrap().as_str(),
            "wss://a.example/x"
        );
    }

    #[test]
    fn origins() {
        assert!(same_origin(&url("ws://a:80/x"), &url("ws://a/y")));
        assert!(!same_origin(&url("ws://a/"), &url("wss://a/")));
        assert!(!same_origin(&url("ws://a:1/"), &url("ws://a:2/")));
        assert!(!same_origin(&url("ws://a/"), &url("ws://b/")));
    }
}
