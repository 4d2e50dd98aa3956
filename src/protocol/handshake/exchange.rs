//! The HTTP exchange of the opening handshake, native only: the client's request and the
//! check of the server's answer, the server's check of a request and its answers.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::{origin_matches, protocols_problem, token_problem, HandshakeError, MAX_HEAD_SIZE};

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// How many headers a head may have.
const MAX_HEADERS: usize = 64;

/// Why a header value cannot be sent as it is; `None` if it can. Allowed: visible ASCII,
/// space, tab and obs-text (bytes 0x80-0xFF, here any non-ASCII character), so no CR, LF,
/// NUL or other control character can end the header early.
fn header_value_problem(value: &str) -> Option<&'static str> {
    value.chars().find_map(|c| match c {
        '\r' | '\n' => Some("it contains a CR or LF"),
        '\0' => Some("it contains a NUL"),
        '\t' => None,
        c if c.is_ascii_control() => Some("it contains a control character"),
        _ => None,
    })
}

/// Refuses a request header that would not go out as exactly one valid header.
fn check_header(name: &str, value: &str) -> Result<(), HandshakeError> {
    let refuse = |value: &str, why: String| {
        Err(HandshakeError::UnsendableHeader {
            name: name.to_string(),
            value: value.to_string(),
            why,
        })
    };
    if let Some(why) = token_problem(name) {
        return refuse(name, format!("the name is not a token: {why}"));
    }
    match header_value_problem(value) {
        Some(why) => refuse(value, why.to_string()),
        None => Ok(()),
    }
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)).
///
/// ```
/// let accept = unisock::protocol::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// A `Sec-WebSocket-Key` from 16 random bytes the caller supplies.
///
/// ```
/// assert_eq!(unisock::protocol::handshake::generate_key([0; 16]).len(), 24);
/// ```
pub fn generate_key(random: [u8; 16]) -> String {
    BASE64.encode(random)
}

/// The client's GET request head for a `ws://` or `wss://` URL.
///
/// # Errors
/// [`HandshakeError::InvalidUrl`] when the URL has no host;
/// [`HandshakeError::UnsendableHeader`] for a subprotocol that is not a token or is
/// offered twice, and for an origin or `extra` header that is not one valid header (a CR,
/// LF or NUL in it), so no caller can inject headers.
///
/// ```
/// let url = url::Url::parse("ws://example.com:8080/chat?x=1").unwrap();
/// let req = unisock::protocol::handshake::client_request(&url, "k", &["chat"], None, &[]).unwrap();
/// assert!(String::from_utf8(req).unwrap().starts_with("GET /chat?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n"));
/// assert!(unisock::protocol::handshake::client_request(&url, "k", &["a\r\nX-Evil: 1"], None, &[]).is_err());
/// ```
pub fn client_request(
    url: &url::Url,
    key: &str,
    protocols: &[&str],
    origin: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<Vec<u8>, HandshakeError> {
    if let Some((protocol, why)) = protocols_problem(protocols) {
        return Err(HandshakeError::UnsendableHeader {
            name: "Sec-WebSocket-Protocol".into(),
            value: protocol.to_string(),
            why,
        });
    }
    check_header("Sec-WebSocket-Key", key)?;
    if let Some(origin) = origin {
        check_header("Origin", origin)?;
    }
    for (name, value) in extra {
        check_header(name, value)?;
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(addr)) => format!("[{addr}]"),
        Some(host) => host.to_string(),
        None => return Err(HandshakeError::InvalidUrl(url.to_string())),
    };
    let default_port = if url.scheme() == "wss" { 443 } else { 80 };
    let host = match url.port() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host,
    };
    let mut target = url.path().to_string();
    if target.is_empty() {
        target.push('/');
    }
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let mut out = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !protocols.is_empty() {
        out.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            protocols.join(", ")
        ));
    }
    if let Some(origin) = origin {
        out.push_str(&format!("Origin: {origin}\r\n"));
    }
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    Ok(out.into_bytes())
}

/// Copies httparse headers into an `http::HeaderMap`.
fn header_map(headers: &[httparse::Header<'_>]) -> Result<http::HeaderMap, HandshakeError> {
    let mut map = http::HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = http::HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        let value = http::HeaderValue::from_bytes(h.value)
            .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        map.append(name, value);
    }
    Ok(map)
}

fn http_version(minor: Option<u8>) -> http::Version {
    match minor {
        Some(0) => http::Version::HTTP_10,
        _ => http::Version::HTTP_11,
    }
}

/// Refuses a head that is still incomplete past the size limit.
fn check_incomplete(buf: &[u8]) -> Result<(), HandshakeError> {
    if buf.len() > MAX_HEAD_SIZE {
        Err(HandshakeError::HeadTooLarge)
    } else {
        Ok(())
    }
}

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete, read more. On
/// success: the response and the head's length (what follows is WebSocket data).
///
/// # Errors
/// [`HandshakeError::Malformed`] for invalid HTTP, [`HandshakeError::HeadTooLarge`].
///
/// ```
/// use unisock::protocol::handshake::parse_response;
/// let (resp, len) = parse_response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nXY").unwrap().unwrap();
/// assert_eq!((resp.status().as_u16(), len), (101, 56));
/// ```
pub fn parse_response(buf: &[u8]) -> Result<Option<(http::Response<()>, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Partial) => check_incomplete(buf).map(|()| None),
        Ok(httparse::Status::Complete(len)) => {
            if len > MAX_HEAD_SIZE {
                return Err(HandshakeError::HeadTooLarge);
            }
            let mut response = http::Response::new(());
            *response.status_mut() = http::StatusCode::from_u16(parsed.code.unwrap_or(0))
                .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
            *response.version_mut() = http_version(parsed.version);
            *response.headers_mut() = header_map(parsed.headers)?;
            if let Some(reason) = parsed.reason {
                response.extensions_mut().insert(Reason(reason.to_string()));
            }
            Ok(Some((response, len)))
        }
        Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::HeadTooLarge),
        // A TLS record (an alert or a handshake: content type 21 or 22, version 3.x) where
        // HTTP was due: a `ws://` URL for a server that speaks only TLS.
        Err(_) if matches!(buf, [0x15 | 0x16, 0x03, ..]) => Err(HandshakeError::Malformed(
            "the server answered in TLS, not HTTP (did you mean wss://?)".into(),
        )),
        Err(e) => Err(HandshakeError::Malformed(e.to_string())),
    }
}

/// The reason phrase of a parsed response, kept for error messages.
#[derive(Debug, Clone)]
struct Reason(String);

/// A parsed response's reason phrase ("Not Found"), else its status's usual one.
pub(crate) fn reason_phrase(resp: &http::Response<()>) -> String {
    resp.extensions()
        .get::<Reason>()
        .map(|r| r.0.clone())
        .or_else(|| resp.status().canonical_reason().map(str::to_string))
        .unwrap_or_default()
}

fn header<'a, T>(msg_headers: &'a http::HeaderMap, name: &str, _: &T) -> Option<&'a str> {
    msg_headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_names(headers: &http::HeaderMap) -> Vec<String> {
    headers.keys().map(|k| k.as_str().to_string()).collect()
}

fn require<'a>(headers: &'a http::HeaderMap, name: &str) -> Result<&'a str, HandshakeError> {
    match headers.get(name) {
        Some(v) => Ok(v.to_str().unwrap_or("")),
        None => Err(HandshakeError::MissingHeader {
            name: name.to_string(),
            present: header_names(headers),
        }),
    }
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `Connection` must list the `upgrade` token and `Upgrade` must be `websocket` (both
/// case-insensitive), in requests and responses alike.
fn check_upgrade_headers(connection: &str, upgrade: &str) -> Result<(), HandshakeError> {
    if !has_token(connection, "upgrade") {
        return Err(HandshakeError::InvalidHeader {
            name: "Connection".into(),
            expected: "Upgrade".into(),
            actual: connection.into(),
        });
    }
    if !upgrade.trim().eq_ignore_ascii_case("websocket") {
        return Err(HandshakeError::InvalidHeader {
            name: "Upgrade".into(),
            expected: "websocket".into(),
            actual: upgrade.into(),
        });
    }
    Ok(())
}

/// Checks a server's answer to our request with `key`, offering `protocols`: the status,
/// the upgrade headers, the accept digest, and the selected subprotocol (returned).
///
/// # Errors
/// The first rule broken, with the original's messages.
///
/// ```
/// use unisock::protocol::handshake::{parse_response, validate_response};
/// let head = b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
/// let (resp, _) = parse_response(head).unwrap().unwrap();
/// assert_eq!(validate_response(&resp, "dGhlIHNhbXBsZSBub25jZQ==", &[]).unwrap(), None);
/// ```
pub fn validate_response(
    resp: &http::Response<()>,
    key: &str,
    protocols: &[&str],
) -> Result<Option<String>, HandshakeError> {
    check_response(resp, key, protocols, None).map(|checked| checked.protocol)
}

/// What a valid server answer selected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckedResponse {
    /// The selected subprotocol, if any.
    pub protocol: Option<String>,
    /// permessage-deflate, if the server accepted it: the agreement and the server's
    /// `Sec-WebSocket-Extensions` value.
    pub deflate: Option<(crate::protocol::deflate::DeflateParams, String)>,
}

/// As [`validate_response`], for a request that offered permessage-deflate with
/// `deflate` (`None`: no extension was offered, so none may be answered).
///
/// # Errors
/// As [`validate_response`], and [`HandshakeError::InvalidExtensions`] for an answer
/// that does not fit the offer.
///
/// ```
/// use unisock::protocol::handshake::{check_response, parse_response};
/// let head = b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
/// let (resp, _) = parse_response(head).unwrap().unwrap();
/// let config = unisock::DeflateConfig::default();
/// let checked = check_response(&resp, "dGhlIHNhbXBsZSBub25jZQ==", &[], Some(&config)).unwrap();
/// assert_eq!(checked.deflate.unwrap().1, "permessage-deflate");
/// assert!(check_response(&resp, "dGhlIHNhbXBsZSBub25jZQ==", &[], None).is_err());
/// ```
pub fn check_response(
    resp: &http::Response<()>,
    key: &str,
    protocols: &[&str],
    deflate: Option<&crate::DeflateConfig>,
) -> Result<CheckedResponse, HandshakeError> {
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(HandshakeError::BadStatus {
            code: resp.status().as_u16(),
            reason: reason_phrase(resp),
            body: Vec::new(),
        });
    }
    let headers = resp.headers();
    let connection = require(headers, "Connection")?;
    let upgrade = require(headers, "Upgrade")?;
    let accept = require(headers, "Sec-WebSocket-Accept")?;
    check_upgrade_headers(connection, upgrade)?;
    if accept.trim() != accept_key(key.as_bytes()) {
        return Err(HandshakeError::BadAccept);
    }
    let answers: Vec<&str> = headers
        .get_all("Sec-WebSocket-Extensions")
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        .collect();
    let deflate = match (answers.as_slice(), deflate) {
        ([], _) => None,
        ([answer], Some(config)) => Some((
            crate::protocol::deflate::accept_response(answer, config)?,
            answer.trim().to_string(),
        )),
        (_, Some(config)) => {
            let joined = answers.join(", ");
            crate::protocol::deflate::accept_response(&joined, config)?;
            return Err(HandshakeError::UnexpectedExtensions(joined));
        }
        (_, None) => return Err(HandshakeError::UnexpectedExtensions(answers.join(", "))),
    };
    let protocol = match header(headers, "Sec-WebSocket-Protocol", &()) {
        None => None,
        Some(p) if protocols.contains(&p.trim()) => Some(p.trim().to_string()),
        Some(p) => return Err(HandshakeError::UnexpectedProtocol(p.to_string())),
    };
    Ok(CheckedResponse { protocol, deflate })
}

/// Where the body of a response ends (RFC 7230 §3.3.3): read to explain a refused
/// upgrade with the start of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code, reason = "only the native backend reads response bodies")]
pub(crate) enum BodyFraming {
    /// No body (1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`: up to the last (empty) chunk.
    Chunked,
    /// Neither: the body ends when the server closes.
    UntilClose,
}

#[allow(dead_code, reason = "only the native backend reads response bodies")]
impl BodyFraming {
    pub(crate) fn of(response: &http::Response<()>) -> Self {
        let status = response.status();
        let headers = response.headers();
        if status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED
        {
            return Self::Empty;
        }
        let chunked = headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| has_token(v, "chunked"));
        let length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        match (chunked, length) {
            (true, _) => Self::Chunked,
            (false, Some(n)) => Self::Length(n),
            (false, None) => Self::UntilClose,
        }
    }

    /// Whether `buf` (what was read after the head) holds the whole body.
    pub(crate) fn is_complete(self, buf: &[u8]) -> bool {
        match self {
            Self::Empty => true,
            Self::Length(n) => buf.len() >= n,
            Self::Chunked => decode_chunked(buf).1,
            Self::UntilClose => false,
        }
    }

    /// The body in `buf`, as far as it arrived (chunked framing removed).
    pub(crate) fn body(self, buf: &[u8]) -> Vec<u8> {
        match self {
            Self::Empty => Vec::new(),
            Self::Length(n) => buf[..n.min(buf.len())].to_vec(),
            Self::Chunked => decode_chunked(buf).0,
            Self::UntilClose => buf.to_vec(),
        }
    }
}

/// The data of a chunked body as far as it arrived, and whether its last chunk did.
#[allow(dead_code, reason = "only the native backend reads response bodies")]
fn decode_chunked(mut buf: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    while let Ok(httparse::Status::Complete((start, size))) = httparse::parse_chunk_size(buf) {
        if size == 0 {
            return (out, true);
        }
        let data = &buf[start..];
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        out.extend_from_slice(&data[..size.min(data.len())]);
        // The chunk's data is followed by CRLF.
        match data.get(size.saturating_add(2)..) {
            Some(rest) => buf = rest,
            None => break,
        }
    }
    (out, false)
}

/// Parses a request head at the start of `buf`. `Ok(None)`: incomplete, read more. On
/// success: the request (its URI is the request target) and the head's length.
///
/// # Errors
/// [`HandshakeError::Malformed`] for invalid HTTP, [`HandshakeError::HeadTooLarge`].
///
/// ```
/// use unisock::protocol::handshake::parse_request;
/// assert!(parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
/// let (req, len) = parse_request(b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
/// assert_eq!((req.uri().to_string().as_str(), len), ("/a?b", 30));
/// ```
pub fn parse_request(buf: &[u8]) -> Result<Option<(http::Request<()>, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Partial) => check_incomplete(buf).map(|()| None),
        Ok(httparse::Status::Complete(len)) => {
            if len > MAX_HEAD_SIZE {
                return Err(HandshakeError::HeadTooLarge);
            }
            let mut request = http::Request::new(());
            *request.method_mut() =
                http::Method::from_bytes(parsed.method.unwrap_or("").as_bytes())
                    .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
            *request.uri_mut() = parsed
                .path
                .unwrap_or("/")
                .parse()
                .map_err(|e: http::uri::InvalidUri| HandshakeError::Malformed(e.to_string()))?;
            *request.version_mut() = http_version(parsed.version);
            *request.headers_mut() = header_map(parsed.headers)?;
            Ok(Some((request, len)))
        }
        Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::HeadTooLarge),
        Err(e) => Err(HandshakeError::Malformed(e.to_string())),
    }
}

/// What a valid upgrade request yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub accept: String,
    /// The subprotocols the client offered, in order.
    pub protocols: Vec<String>,
    /// The request's `Origin`, if any.
    pub origin: Option<String>,
}

/// Checks an upgrade request, in the original's order: version, method, required headers,
/// `Connection`, `Upgrade`, `Sec-WebSocket-Version`, the key, then the origin against
/// `allowed_origins` ([`origin_matches`]; `None` accepts any, and is unsafe for a server
/// that authenticates by cookie: see `WebSocket::set_allowed_origins`).
///
/// # Errors
/// The first rule broken; [`HandshakeError::status`] gives the answer's status.
///
/// ```
/// use unisock::protocol::handshake::{parse_request, validate_request};
/// let head = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: L3vSWlgMnhQWv2FldG/QTQ==\r\n\r\n";
/// let (req, _) = parse_request(head).unwrap().unwrap();
/// assert_eq!(validate_request(&req, None).unwrap().accept, "2/qvz8Hucx3K4CxvMRjwgD42aoE=");
/// ```
pub fn validate_request(
    req: &http::Request<()>,
    allowed_origins: Option<&[String]>,
) -> Result<Accept, HandshakeError> {
    if req.version() < http::Version::HTTP_11 {
        return Err(HandshakeError::InvalidVersion(format!(
            "{:?}",
            req.version()
        )));
    }
    if req.method() != http::Method::GET {
        return Err(HandshakeError::InvalidMethod(req.method().to_string()));
    }
    let headers = req.headers();
    require(headers, "Host")?;
    let connection = require(headers, "Connection")?;
    let upgrade = require(headers, "Upgrade")?;
    let version = require(headers, "Sec-WebSocket-Version")?;
    let key = require(headers, "Sec-WebSocket-Key")?;
    check_upgrade_headers(connection, upgrade)?;
    if version.trim() != "13" {
        return Err(HandshakeError::UnsupportedVersion(version.to_string()));
    }
    let key = key.trim();
    if BASE64.decode(key).map(|k| k.len()) != Ok(16) {
        return Err(HandshakeError::InvalidKey(key.to_string()));
    }
    let origin = header(headers, "Origin", &()).map(str::to_string);
    if let Some(allowed) = allowed_origins {
        let Some(origin) = origin.as_deref() else {
            return Err(HandshakeError::MissingHeader {
                name: "Origin".into(),
                present: header_names(headers),
            });
        };
        if !allowed
            .iter()
            .any(|pattern| origin_matches(pattern, origin))
        {
            return Err(HandshakeError::OriginNotAllowed {
                origin: origin.to_string(),
                allowed: allowed.to_vec(),
            });
        }
    }
    let protocols = headers
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    Ok(Accept {
        accept: accept_key(key.as_bytes()),
        protocols,
        origin,
    })
}

/// The 101 Switching Protocols response for an accept key ([`Accept::accept`]), to add
/// headers to (a subprotocol, cookies) before [`encode_response`] writes it out. Every
/// server path (`upgrade`, `serve`, axum) answers with this one.
///
/// ```
/// use unisock::protocol::handshake::{encode_response, upgrade_response};
/// let mut response = upgrade_response("abc=");
/// response.headers_mut().insert("sec-websocket-protocol", "chat".parse().unwrap());
/// let head = String::from_utf8(encode_response(&response)).unwrap();
/// assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
/// assert!(head.contains("sec-websocket-accept: abc=\r\n"));
/// assert!(head.ends_with("sec-websocket-protocol: chat\r\n\r\n"));
/// ```
pub fn upgrade_response(accept: &str) -> http::Response<()> {
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

/// Serialises a response head: status line, headers, blank line.
///
/// ```
/// let head = unisock::protocol::handshake::encode_response(&http::Response::new(()));
/// assert_eq!(head, b"HTTP/1.1 200 OK\r\n\r\n");
/// ```
pub fn encode_response(response: &http::Response<()>) -> Vec<u8> {
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

/// The 101 response head as bytes: [`upgrade_response`] with the subprotocol and `extra`
/// headers, [`encode_response`]d. A name or value that is not a valid header (a CR or LF
/// in it, say) is left out rather than written.
///
/// ```
/// let head = unisock::protocol::handshake::response_101("abc=", Some("chat"), &[("x-a", "1\r\nx-b: 2")]);
/// let head = String::from_utf8(head).unwrap();
/// assert!(head.contains("sec-websocket-protocol: chat\r\n"));
/// assert!(!head.contains("x-a") && !head.contains("x-b"));
/// ```
pub fn response_101(accept: &str, protocol: Option<&str>, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut response = upgrade_response(accept);
    let headers = response.headers_mut();
    if let Some(value) = protocol.and_then(|p| http::HeaderValue::from_str(p).ok()) {
        headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    for (name, value) in extra {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    encode_response(&response)
}

/// The answer to a refused request: its status, `Sec-WebSocket-Version: 13` for 426, and
/// the error message as a plain-text body.
///
/// ```
/// use unisock::protocol::{handshake::error_response, HandshakeError};
/// let head = String::from_utf8(error_response(&HandshakeError::UnsupportedVersion("8".into()))).unwrap();
/// assert!(head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
/// assert!(head.contains("Sec-WebSocket-Version: 13\r\n"));
/// ```
pub fn error_response(err: &HandshakeError) -> Vec<u8> {
    let status = err.status();
    let body = err.to_string();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    if status == http::StatusCode::UPGRADE_REQUIRED {
        out.push_str("Sec-WebSocket-Version: 13\r\n");
    }
    out.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    out.into_bytes()
}
