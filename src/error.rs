//! The one public error type, the same on both targets (but for the text of two variants
//! the browser never returns).

use crate::protocol::{HandshakeError, ProtocolError};

/// Everything that can go wrong, on either target.
///
/// Every variant exists on both targets (even where only one backend produces it), so a
/// `match` compiles everywhere.
///
/// ```
/// # async fn run() {
/// let ws = unisock::WebSocket::new();
/// match ws.open("ws://127.0.0.1:99999/", &[]).await {
///     Err(unisock::Error::InvalidUrl { url, reason }) => {
///         assert_eq!(&*url, "ws://127.0.0.1:99999/");
///         assert_eq!(&*reason, "port 99999 is out of range (at most 65535)");
///     }
///     other => panic!("{other:?}"),
/// }
/// # }
/// # futures_util::FutureExt::now_or_never(run()).unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL cannot be opened: it does not parse, its scheme is not `ws`/`wss`, it has
    /// no host, or it has a fragment (RFC 6455 §3).
    #[error("invalid WebSocket URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL as given. (This and the other `Box<str>`s, not `String`s, keep `Error`
        /// small.)
        url: Box<str>,
        /// What is wrong with it, e.g. "port 99999 is out of range (at most 65535)".
        reason: Box<str>,
    },
    /// A subprotocol name cannot be offered (`open`) or selected (a server's
    /// `PendingUpgrade::set_protocol`): it is not an RFC 7230 token (letters, digits and
    /// ``!#$%&'*+-.^_`|~``), it is offered twice, or (server) the client did not offer it.
    /// Nothing was sent.
    ///
    /// ```
    /// # async fn run() {
    /// let err = unisock::WebSocket::new()
    ///     .open("ws://127.0.0.1:8069/", &["chat", "x,y"])
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), r#"invalid subprotocol name "x,y": it contains ',' (a separator)"#);
    /// # }
    /// # futures_util::FutureExt::now_or_never(run()).unwrap();
    /// ```
    #[error("invalid subprotocol name {name:?}: {reason}")]
    InvalidProtocol {
        /// The name as given.
        name: Box<str>,
        /// Why it is refused, e.g. "it contains a CR or LF" or "it is offered twice".
        reason: Box<str>,
    },
    /// A request header cannot be added to the opening handshake
    /// (`WebSocketExt::set_request_headers`): the protocol sets it itself (`Host`,
    /// `Upgrade`, `Connection`, `Sec-WebSocket-*`, a body's length or encoding). Nothing
    /// was set.
    ///
    /// ```
    /// let e = unisock::Error::InvalidHeader {
    ///     name: "upgrade".into(),
    ///     reason: "the WebSocket handshake sets it".into(),
    /// };
    /// assert_eq!(e.to_string(), "cannot send header 'upgrade': the WebSocket handshake sets it");
    /// ```
    #[error("cannot send header '{name}': {reason}")]
    InvalidHeader {
        /// The header's name.
        name: Box<str>,
        /// Why it is refused.
        reason: Box<str>,
    },
    /// The opening handshake failed (either role). [`HandshakeError::status`] gives the HTTP
    /// status. Boxed to keep `Error` small. **Browser:** never returned (the browser shakes
    /// hands), and displayed without its details.
    // The browser never makes one: its messages would only add weight to every page.
    #[cfg_attr(not(target_arch = "wasm32"), error("handshake failed: {0}"))]
    #[cfg_attr(target_arch = "wasm32", error("handshake failed"))]
    Handshake(Box<HandshakeError>),
    /// The peer broke RFC 6455; the connection was closed with the matching close code.
    /// **Browser:** never returned (the browser reads the frames), and displayed without
    /// its details.
    #[cfg_attr(not(target_arch = "wasm32"), error("protocol violation: {0}"))]
    #[cfg_attr(target_arch = "wasm32", error("protocol violation"))]
    Protocol(#[from] ProtocolError),
    /// A network error (DNS, connection refused, reset, ...). When `open` cannot connect,
    /// the message names the address ("could not connect to 127.0.0.1:1: Connection
    /// refused") and [`std::io::Error::kind`] is the connect error's.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A proxy refused the tunnel: an HTTP proxy answered `CONNECT` with other than 2xx
    /// (e.g. 407 for missing or wrong credentials, 403 for a forbidden port), or a SOCKS5
    /// proxy refused the credentials or the connection. Boxed to keep `Error` small.
    /// **Browser:** never returned (the browser picks the proxy), and displayed without
    /// its details.
    ///
    /// ```
    /// let e = unisock::Error::Proxy(Box::new(unisock::ProxyError {
    ///     proxy: "127.0.0.1:3128".into(),
    ///     target: "example.com:443".into(),
    ///     answer: "407 Proxy Authentication Required".into(),
    ///     status: Some(407),
    /// }));
    /// assert_eq!(
    ///     e.to_string(),
    ///     "the proxy 127.0.0.1:3128 refused the tunnel to example.com:443: 407 Proxy Authentication Required"
    /// );
    /// ```
    // The browser never makes one: its message would only add weight to every page.
    #[cfg_attr(not(target_arch = "wasm32"), error("{0}"))]
    #[cfg_attr(target_arch = "wasm32", error("proxy refused"))]
    Proxy(Box<ProxyError>),
    /// TLS setup or certificate verification failed, or the server does not speak TLS;
    /// the message names the address.
    #[error("TLS error: {0}")]
    Tls(String),
    /// `send_*`/`close` called before `open`/`upgrade` completed.
    #[error("WebSocket has not been opened / upgraded")]
    NotOpen,
    /// `open`/`upgrade` called on a socket that is already connected.
    #[error("WebSocket is already connected; create a new one")]
    AlreadyConnected,
    /// The socket is closing or closed: a `send_*` then was not sent, and an `open` that
    /// a `close()` aborted did not connect.
    #[error("WebSocket is closing or closed")]
    Closed,
    /// Sending would queue more bytes than the configured cap.
    #[error("send queue full: {buffered} bytes already queued, the cap is {cap}")]
    Capacity {
        /// Bytes queued when the send was refused.
        buffered: usize,
        /// The configured cap.
        cap: usize,
    },
    /// A send was refused because the memory budget the socket shares with others
    /// (`MemoryBudget`) cannot cover its send queue growing further: the message was not
    /// queued. A registry's broadcast closes such a socket (1013) instead.
    ///
    /// ```
    /// let e = unisock::Error::OverBudget { limit: 1 << 20 };
    /// assert!(e.to_string().contains("1048576"));
    /// ```
    #[error("the memory budget of {limit} bytes shared by the server's sockets is used up; the message was not queued")]
    OverBudget {
        /// The budget's limit.
        limit: usize,
    },
    /// `close` was given a code that may not be sent (valid: 1000-1003, 1007-1014, 3000-4999).
    #[error("invalid close code {0}: use 1000-1003, 1007-1014 or 3000-4999")]
    InvalidCloseCode(u16),
    /// `close` was given a reason over 123 bytes of UTF-8.
    #[error("close reason is {0} bytes; at most 123 are allowed")]
    ReasonTooLong(usize),
    /// An event handler panicked; the socket was closed with 1011.
    #[error("event handler panicked: {0}")]
    HandlerPanicked(String),
    /// A timeout expired (handshake, close handshake, read).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// An error raised by the browser's WebSocket.
    #[error("browser WebSocket error: {0}")]
    Js(String),
    /// `WebSockets::send_to` found no socket with this id, and the registry has no
    /// backplane to ask the other nodes.
    #[error("no socket with id {0}")]
    NoSuchSocket(String),
    /// `backplane::set_node_id` was given an id with other characters than
    /// letters, digits, `-` and `_` (at most 32), or a different id than the one already set.
    #[error("invalid or conflicting node id {0:?}: use up to 32 letters, digits, '-' or '_', once per process")]
    InvalidNodeId(String),
    /// The registry's backplane (e.g. Redis) failed: a message was not published to the
    /// other nodes, or the subscription was lost. Local delivery is not affected.
    #[error("backplane: {0}")]
    Backplane(Box<dyn std::error::Error + Send + Sync>),
    /// A room name that resumable delivery (`unisock::resume`) cannot carry: it must be 1
    /// to 200 bytes of UTF-8 with no whitespace or control characters.
    ///
    /// ```
    /// let e = unisock::Error::InvalidRoom("two words".into());
    /// assert!(e.to_string().starts_with("invalid room name \"two words\""));
    /// ```
    #[error("invalid room name {0:?}: 1 to 200 bytes, no whitespace or control characters")]
    InvalidRoom(Box<str>),
    /// The operation does not exist on this target (e.g. `upgrade` in the browser).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// What a proxy refused ([`Error::Proxy`]): which proxy, the tunnel's target, and its answer.
///
/// ```
/// let refused = unisock::ProxyError {
///     proxy: "127.0.0.1:1080".into(),
///     target: "example.com:80".into(),
///     answer: "Connection not allowed by ruleset".into(),
///     status: None,
/// };
/// assert!(refused.to_string().ends_with("example.com:80: Connection not allowed by ruleset"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the proxy {proxy} refused the tunnel to {target}: {answer}")]
pub struct ProxyError {
    /// The proxy's `host:port` (never its credentials).
    pub proxy: String,
    /// Where the tunnel was to lead: the WebSocket URL's `host:port`.
    pub target: String,
    /// The answer: an HTTP status and reason ("407 Proxy Authentication Required"), or a
    /// SOCKS5 refusal in words ("the username and password were refused (status 1)").
    pub answer: String,
    /// The HTTP status of a `CONNECT` refusal; `None` for SOCKS5, or an answer not in HTTP.
    pub status: Option<u16>,
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(Box::new(e))
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    #[test]
    fn error_stays_small() {
        let size = std::mem::size_of::<super::Error>();
        assert!(size <= 40, "Error is {size} bytes");
    }
}
