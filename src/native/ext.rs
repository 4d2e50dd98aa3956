//! [`WebSocketExt`]: what only the native backend can do (pings, limits, timeouts, server
//! upgrades with an editable response). The browser exposes none of these.

use std::future::Future;
use std::time::Duration;

use super::{lock, upgrade, Transport};
use crate::server::PendingUpgrade;
use crate::{DeflateConfig, KeepAlive, Limits, Result, WebSocket};

/// Native-only extras of [`WebSocket`]; `use unisock::WebSocketExt` to call them.
///
/// ```
/// use unisock::{Limits, WebSocket, WebSocketExt};
/// let ws = WebSocket::new();
/// ws.set_limits(Limits::default().max_message_size(1 << 20));
/// ws.set_send_queue_cap(4 << 20);
/// ws.set_read_timeout(Some(std::time::Duration::from_secs(300)));
/// assert!(ws.ping(b"are you there?").is_err()); // not open yet
/// assert_eq!(ws.response_headers(), None);
/// ```
pub trait WebSocketExt {
    /// Sends a ping with `data` (at most 125 bytes); the peer's pong is consumed silently.
    ///
    /// # Errors
    /// As [`WebSocket::send_text`], and [`crate::Error::Protocol`] for a payload over 125 bytes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    /// // A server and a client over an in-memory pipe.
    /// let (a, b) = tokio::io::duplex(4096);
    /// let (server, client) = (WebSocket::new(), WebSocket::new());
    /// let (up, open) = tokio::join!(server.upgrade(b), client.open_over(a, "ws://localhost/", &[]));
    /// up?;
    /// open?;
    /// client.ping(b"are you there?")?;
    /// assert!(client.ping(&[0; 126]).is_err()); // a control frame holds at most 125 bytes
    /// # Ok(()) }
    /// ```
    fn ping(&self, data: &[u8]) -> Result<()>;

    /// Sets the size limits for incoming frames and messages. Takes effect at the next
    /// `open`/`upgrade`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    /// // A server and a client over an in-memory pipe.
    /// let (a, b) = tokio::io::duplex(4096);
    /// let (server, client) = (WebSocket::new(), WebSocket::new());
    /// server.set_limits(unisock::Limits::default().max_message_size(16));
    /// let (up, open) = tokio::join!(server.upgrade(b), client.open_over(a, "ws://localhost/", &[]));
    /// up?;
    /// open?;
    /// let closed = std::sync::Arc::new(std::sync::Mutex::new(None));
    /// let seen = closed.clone();
    /// client.on_close(move |e| *seen.lock().unwrap() = Some(e.code));
    /// client.send_text("seventeen bytes!!")?;
    /// tokio::join!(server.read(), client.read());
    /// assert_eq!(*closed.lock().unwrap(), Some(1009)); // Message Too Big
    /// # Ok(()) }
    /// ```
    fn set_limits(&self, limits: Limits);

    /// permessage-deflate (RFC 7692) options for this socket: what a client offers, what
    /// a server accepts. Takes effect at the next `open`/`upgrade`. Unset, a client offers
    /// [`DeflateConfig::default`] and a server accepts with the server default (see the
    /// README, "Compression"); [`DeflateConfig::disabled`] turns it off.
    ///
    /// ```
    /// use unisock::{DeflateConfig, WebSocket, WebSocketExt};
    /// let ws = WebSocket::new();
    /// ws.set_deflate(DeflateConfig::default().min_size(1024));
    /// ws.set_deflate(DeflateConfig::disabled());
    /// ```
    fn set_deflate(&self, config: DeflateConfig);

    /// Draws this socket's incoming messages (their payloads as they grow, inflated
    /// output included) from `budget`, shared with other sockets; a message it cannot
    /// cover closes the connection with 1013 ("try again later"). A registry's sockets get
    /// the registry's (`WebSockets::set_memory_budget`). Takes effect at the next
    /// `open`/`upgrade`.
    ///
    /// ```
    /// use unisock::{MemoryBudget, WebSocket, WebSocketExt};
    /// let budget = MemoryBudget::new(128 << 20);
    /// for ws in [WebSocket::new(), WebSocket::new()] {
    ///     ws.set_memory_budget(Some(budget.clone()));
    /// }
    /// ```
    fn set_memory_budget(&self, budget: Option<crate::MemoryBudget>);

    /// Caps the payload bytes waiting in the send queue (default 64 MiB); a send beyond it
    /// fails with [`crate::Error::Capacity`] instead of growing memory.
    ///
    /// ```
    /// use unisock::{WebSocket, WebSocketExt};
    /// let ws = WebSocket::new();
    /// ws.set_send_queue_cap(1 << 20); // at most 1 MiB of payloads waiting to be written
    /// ```
    fn set_send_queue_cap(&self, bytes: usize);

    /// Closes the connection when nothing arrives from the peer for this long (`None`, the
    /// default for a bare socket, waits forever).
    ///
    /// ```
    /// use unisock::{WebSocket, WebSocketExt};
    /// let ws = WebSocket::new();
    /// ws.set_read_timeout(Some(std::time::Duration::from_secs(300))); // five quiet minutes
    /// ws.set_read_timeout(None); // wait forever again
    /// ```
    fn set_read_timeout(&self, timeout: Option<Duration>);

    /// Closes the connection (1008, and `Error::Timeout` to `on_error`) when a message
    /// takes longer than this from its first byte to its last, however the bytes trickle
    /// in; `None` (the default for a bare socket) waits for ever. A registry's sockets get
    /// the registry's (`WebSockets::set_message_timeout`, 60 s by default).
    ///
    /// ```
    /// use unisock::{WebSocket, WebSocketExt};
    /// WebSocket::new().set_message_timeout(Some(std::time::Duration::from_secs(30)));
    /// ```
    fn set_message_timeout(&self, timeout: Option<Duration>);

    /// Keep-alive pings ([`KeepAlive`]); `None` turns them off. By default a server socket
    /// pings after 30 s of quiet and a client does not ping.
    ///
    /// ```
    /// use std::time::Duration;
    /// use unisock::{KeepAlive, WebSocket, WebSocketExt};
    /// let client = WebSocket::new();
    /// client.set_keepalive(Some(KeepAlive::every(Duration::from_secs(20)).timeout(Duration::from_secs(10))));
    /// assert_eq!(client.keepalive().map(|k| k.timeout), Some(Duration::from_secs(10)));
    /// let server = WebSocket::new();
    /// server.set_keepalive(None); // this app finds dead peers another way
    /// ```
    fn set_keepalive(&self, keepalive: Option<KeepAlive>);

    /// The keep-alive in effect: the one set, else the role's default once the socket is
    /// open (a server's [`KeepAlive::SERVER_DEFAULT`], none for a client).
    ///
    /// ```
    /// use unisock::{KeepAlive, WebSocket, WebSocketExt};
    /// let ws = WebSocket::new();
    /// assert_eq!(ws.keepalive(), None);
    /// ws.set_keepalive(Some(KeepAlive::every(std::time::Duration::from_secs(15))));
    /// assert_eq!(ws.keepalive().unwrap().interval.as_secs(), 15);
    /// ```
    fn keepalive(&self) -> Option<KeepAlive>;

    /// Drops the connection when a write makes no progress for this long (default 30 s):
    /// the peer stopped reading. `on_close` then gets 1006 and `on_error`
    /// [`crate::Error::Timeout`]. `None` waits forever (the send queue cap still holds).
    ///
    /// ```
    /// use unisock::{WebSocket, WebSocketExt};
    /// let ws = WebSocket::new();
    /// ws.set_write_timeout(Some(std::time::Duration::from_secs(5))); // slow readers go sooner
    /// ```
    fn set_write_timeout(&self, timeout: Option<Duration>);

    /// Server side: how long a client may take to send its whole upgrade request before
    /// it is answered 408 and dropped (default 10 s; a guard against slowloris).
    ///
    /// ```
    /// use unisock::{WebSocket, WebSocketExt};
    /// WebSocket::new().set_handshake_timeout(std::time::Duration::from_secs(5));
    /// ```
    fn set_handshake_timeout(&self, timeout: Duration);

    /// Headers to add to the opening handshake of `open` and of every reconnect, e.g.
    /// `Authorization` or `Cookie`. Replaces those set before; takes effect at the next
    /// connection. **Browser:** a page cannot set handshake headers; the usual pattern is a
    /// token in the query string or in the subprotocol list.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHeader`] for a header the protocol sets itself: `Host`,
    /// `Upgrade`, `Connection`, any `Sec-WebSocket-*` (subprotocols go to `open`,
    /// compression to [`WebSocketExt::set_deflate`]), `Content-Length`,
    /// `Transfer-Encoding`; and for a value that is not visible ASCII (`http::HeaderValue`
    /// never holds CR or LF).
    ///
    /// ```
    /// use http::{HeaderMap, HeaderValue};
    /// use unisock::{WebSocket, WebSocketExt};
    ///
    /// let ws = WebSocket::new();
    /// let mut headers = HeaderMap::new();
    /// headers.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
    /// ws.set_request_headers(headers).unwrap();
    ///
    /// let mut owned = HeaderMap::new();
    /// owned.insert("sec-websocket-key", HeaderValue::from_static("x"));
    /// assert!(ws.set_request_headers(owned).is_err());
    /// ```
    fn set_request_headers(&self, headers: http::HeaderMap) -> Result<()>;

    /// How many HTTP redirects (301, 302, 303, 307, 308) `open` and reconnects follow;
    /// none by default, as a browser follows none. A `Location` may be relative or
    /// `http(s)://` (read as `ws(s)://`); a redirect from `wss://` to `ws://` is refused
    /// ([`crate::Error::InvalidUrl`]), and the request headers go only to the same origin
    /// (scheme, host and port). Past the last hop, the redirect is the handshake's error.
    ///
    /// ```
    /// use unisock::{WebSocket, WebSocketExt};
    /// let ws = WebSocket::new();
    /// ws.set_max_redirects(5);
    /// ```
    fn set_max_redirects(&self, hops: u8);

    /// Which proxy `open`, its redirects and reconnects go through (a [`crate::Proxy`]):
    /// by default the one the environment names (`https_proxy` for `wss://`,
    /// `http_proxy` for `ws://`, `all_proxy`, less the hosts in `no_proxy`, as curl reads
    /// them); or none, or a given one, whatever the environment says. HTTP CONNECT and
    /// SOCKS5 proxies, with credentials; a refusal fails `open` with
    /// [`crate::Error::Proxy`]. Takes effect at the next connection. **Browser:** the
    /// browser picks the proxy.
    ///
    /// # Errors
    /// [`crate::Error::InvalidUrl`] for a URL that is not a proxy's (another scheme than
    /// `http`, `socks5` or `socks5h`, no host, a bad port); nothing is set then.
    ///
    /// ```
    /// use unisock::{Proxy, WebSocket, WebSocketExt};
    /// let ws = WebSocket::new();
    /// ws.set_proxy(Proxy::Url("http://user:pass@127.0.0.1:3128".into())).unwrap();
    /// ws.set_proxy(Proxy::None).unwrap();
    /// assert!(ws.set_proxy(Proxy::Url("ftp://127.0.0.1:21".into())).is_err());
    /// ```
    fn set_proxy(&self, proxy: crate::Proxy) -> Result<()>;

    /// The TLS configuration `open` uses for `wss://` URLs, e.g. with a private root
    /// store for self-signed certificates, or with a client certificate (mTLS). By default:
    /// Mozilla's roots (webpki-roots), and with the `native-roots` feature the operating
    /// system's trust store too (a company's CA; `SSL_CERT_FILE` / `SSL_CERT_DIR` replace
    /// the store when set, as in OpenSSL).
    ///
    /// A server that requires a client certificate and gets none fails `open` with
    /// [`crate::Error::Tls`] saying so.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use unisock::rustls::pki_types::pem::PemObject;
    /// use unisock::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    /// use unisock::rustls::{ClientConfig, RootCertStore};
    /// use unisock::{WebSocket, WebSocketExt};
    ///
    /// // Trust a private CA ...
    /// let mut roots = RootCertStore::empty();
    /// for cert in CertificateDer::pem_file_iter("ca.pem")? {
    ///     roots.add(cert?)?;
    /// }
    /// // ... and present a client certificate, for a server that requires one.
    /// let chain = CertificateDer::pem_file_iter("client.pem")?.collect::<Result<Vec<_>, _>>()?;
    /// let key = PrivateKeyDer::from_pem_file("client.key")?;
    /// let config = ClientConfig::builder_with_provider(Arc::new(
    ///     unisock::rustls::crypto::ring::default_provider(),
    /// ))
    /// .with_safe_default_protocol_versions()?
    /// .with_root_certificates(roots)
    /// .with_client_auth_cert(chain, key)?; // or .with_no_client_auth()
    ///
    /// let ws = WebSocket::new();
    /// ws.set_tls_config(Arc::new(config));
    /// ws.open("wss://internal.example:8443/ws", &[]).await?;
    /// # Ok(()) }
    /// ```
    fn set_tls_config(&self, config: std::sync::Arc<rustls::ClientConfig>);

    /// Client side: the headers of the server's `101 Switching Protocols` response for the
    /// current connection (after a reconnect, the new one's; after a close, the last
    /// one's). `None` before `open` succeeded, and for a server's socket.
    ///
    /// ```no_run
    /// # async fn run() -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    /// let ws = WebSocket::new();
    /// ws.open("ws://127.0.0.1:8069/ws", &[]).await?;
    /// if let Some(headers) = ws.response_headers() {
    ///     println!("served by {:?}", headers.get("server"));
    /// }
    /// # Ok(()) }
    /// ```
    fn response_headers(&self) -> Option<http::HeaderMap>;

    /// Client side: runs the opening handshake for `url` over a stream you connected (a
    /// Unix domain socket, a proxy tunnel, an in-memory pipe, TLS you set up yourself),
    /// offering `protocols`, and opens the socket as [`WebSocket::open`] does. The URL
    /// gives the request's `Host` and path; nothing is dialled, and a `wss://` scheme adds
    /// no TLS (wrap the stream first). Redirects are not followed.
    ///
    /// Such a socket **does not reconnect**: unisock cannot connect another stream, so its
    /// reconnect policy ([`WebSocket::set_reconnect`]) is cleared, and a lost connection
    /// closes it for good (`on_close` reports how). To reconnect, connect a new stream and
    /// call `open_over` on a new socket.
    ///
    /// # Errors
    /// As [`WebSocket::open`], less the connect errors.
    ///
    /// ```no_run
    /// # async fn run() -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    ///
    /// let unix = tokio::net::UnixStream::connect("/run/app.sock").await?;
    /// let ws = WebSocket::new();
    /// ws.open_over(unix, "ws://localhost/ws", &["chat"]).await?;
    /// ws.send_text("over a Unix socket")?;
    /// # Ok(()) }
    /// ```
    fn open_over<S: Transport>(
        &self,
        stream: S,
        url: &str,
        protocols: &[&str],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Server side, uncommitted: reads and validates the upgrade request from `stream`, and
    /// returns the pending 101 response for the caller to edit and commit.
    ///
    /// # Errors
    /// As [`WebSocket::upgrade`].
    ///
    /// ```no_run
    /// # async fn run() -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8069").await?;
    /// let (tcp, _) = listener.accept().await?;
    /// let mut pending = WebSocket::new().upgrade_pending(tcp).await?;
    /// pending.response_mut().headers_mut().insert("x-served-by", "node-7".parse().unwrap());
    /// pending.commit().await?.read().await;
    /// # Ok(()) }
    /// ```
    fn upgrade_pending<S: Transport>(
        &self,
        stream: S,
    ) -> impl Future<Output = Result<PendingUpgrade>> + Send;

    /// Server side, for a request a framework already parsed: validates `request` and
    /// returns the pending 101 response; `stream` is the connection, positioned just after
    /// the request head.
    ///
    /// # Errors
    /// As [`WebSocket::upgrade`].
    ///
    /// ```no_run
    /// # async fn run(request: http::Request<()>, stream: tokio::net::TcpStream) -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    /// // `request` was parsed by the framework; `stream` is positioned after its head.
    /// let pending = WebSocket::new().upgrade_request(request, stream).await?;
    /// let ws = pending.commit().await?;
    /// ws.read().await;
    /// # Ok(()) }
    /// ```
    fn upgrade_request<S: Transport>(
        &self,
        request: http::Request<()>,
        stream: S,
    ) -> impl Future<Output = Result<PendingUpgrade>> + Send;

    /// Starts the socket over a stream whose 101 response a framework already sent
    /// (e.g. hyper's upgraded connection).
    ///
    /// # Errors
    /// [`crate::Error::AlreadyConnected`] if the socket was already opened or upgraded.
    ///
    /// ```no_run
    /// # async fn run(upgraded: tokio::net::TcpStream, request: http::Request<()>) -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    /// // The framework sent the 101 (with `Sec-WebSocket-Protocol: chat`) and hands over the stream.
    /// let ws = WebSocket::new();
    /// ws.attach_upgraded(upgraded, &request, Some("chat"))?;
    /// assert_eq!(ws.protocol(), "chat");
    /// ws.read().await;
    /// # Ok(()) }
    /// ```
    fn attach_upgraded<S: Transport>(
        &self,
        stream: S,
        request: &http::Request<()>,
        protocol: Option<&str>,
    ) -> Result<()>;
}

impl WebSocketExt for WebSocket {
    fn ping(&self, data: &[u8]) -> Result<()> {
        self.inner.send_with(super::Outgoing::Ping(data))
    }

    fn set_limits(&self, limits: Limits) {
        lock(&self.inner.0.config).limits = limits;
    }

    fn set_deflate(&self, config: DeflateConfig) {
        self.inner.set_deflate(Some(config));
    }

    fn set_send_queue_cap(&self, bytes: usize) {
        self.inner
            .0
            .send_cap
            .store(bytes, std::sync::atomic::Ordering::Release);
    }

    fn set_message_timeout(&self, timeout: Option<Duration>) {
        self.inner.set_message_timeout(timeout);
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) {
        self.inner.set_read_timeout(timeout);
    }

    fn set_keepalive(&self, keepalive: Option<KeepAlive>) {
        self.inner.set_keepalive(keepalive);
    }

    fn keepalive(&self) -> Option<KeepAlive> {
        self.inner.keepalive()
    }

    fn set_handshake_timeout(&self, timeout: Duration) {
        lock(&self.inner.0.config).handshake_timeout = timeout;
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) {
        lock(&self.inner.0.config).write_timeout = timeout;
    }

    fn set_request_headers(&self, headers: http::HeaderMap) -> Result<()> {
        for (name, value) in &headers {
            let reason = if protocol_owns(name.as_str()) {
                "the WebSocket handshake sets it"
            } else if value.to_str().is_err() {
                "its value is not visible ASCII"
            } else {
                continue;
            };
            return Err(crate::Error::InvalidHeader {
                name: name.as_str().into(),
                reason: reason.into(),
            });
        }
        lock(&self.inner.0.config).client().request_headers =
            (!headers.is_empty()).then_some(headers);
        Ok(())
    }

    fn set_memory_budget(&self, budget: Option<crate::MemoryBudget>) {
        lock(&self.inner.0.config).memory_budget = budget;
    }

    fn set_max_redirects(&self, hops: u8) {
        lock(&self.inner.0.config).client().max_redirects = hops;
    }

    fn set_proxy(&self, proxy: crate::Proxy) -> Result<()> {
        let choice = super::proxy::Choice::new(proxy)?;
        lock(&self.inner.0.config).client().proxy = choice;
        Ok(())
    }

    fn set_tls_config(&self, config: std::sync::Arc<rustls::ClientConfig>) {
        lock(&self.inner.0.config).client().tls = Some(config);
    }

    fn response_headers(&self) -> Option<http::HeaderMap> {
        lock(&self.inner.0.link)
            .response_headers
            .as_deref()
            .cloned()
    }

    fn open_over<S: Transport>(
        &self,
        stream: S,
        url: &str,
        protocols: &[&str],
    ) -> impl Future<Output = Result<()>> + Send {
        let checked = crate::ws_url::parse_ws_url(url).and_then(|url| {
            crate::socket::check_protocols(protocols)?;
            Ok(url)
        });
        let protocols: Vec<String> = protocols.iter().map(|p| (*p).to_string()).collect();
        let ws = self.clone();
        async move {
            let url = checked?;
            let protocols: Vec<&str> = protocols.iter().map(String::as_str).collect();
            ws.inner.open_over(Box::new(stream), url, &protocols).await
        }
    }

    fn upgrade_pending<S: Transport>(
        &self,
        stream: S,
    ) -> impl Future<Output = Result<PendingUpgrade>> + Send {
        let ws = self.clone();
        async move {
            ws.inner.check_unconnected()?;
            let mut stream: super::BoxIo = Box::new(stream);
            let timeout = lock(&ws.inner.0.config).handshake_timeout;
            let (request, leftover) = upgrade::read_request_timed(&mut stream, timeout).await?;
            PendingUpgrade::validate(ws, request, stream, leftover).await
        }
    }

    fn upgrade_request<S: Transport>(
        &self,
        request: http::Request<()>,
        stream: S,
    ) -> impl Future<Output = Result<PendingUpgrade>> + Send {
        PendingUpgrade::validate(self.clone(), request, Box::new(stream), Vec::new())
    }

    fn attach_upgraded<S: Transport>(
        &self,
        stream: S,
        request: &http::Request<()>,
        protocol: Option<&str>,
    ) -> Result<()> {
        self.inner.check_unconnected()?;
        self.inner.attach_server(
            Box::new(stream),
            Vec::new(),
            request,
            (protocol.map(str::to_string), None),
        );
        Ok(())
    }
}

/// Whether the opening handshake sets the header `name` (lower case) itself.
fn protocol_owns(name: &str) -> bool {
    matches!(
        name,
        "host" | "upgrade" | "connection" | "content-length" | "transfer-encoding"
    ) || name.starts_with("sec-websocket-")
}
