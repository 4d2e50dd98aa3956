//! The server side (native), in one place: the accept loop that survives running out of
//! descriptors, `serve` (over TLS or not: read a request, route it, upgrade it into a
//! registry), and upgrades whose 101 response the caller can still edit before it is sent.

use std::convert::Infallible;
use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::backend::{BoxIo, Negotiated};
use crate::registry::Admission;
use crate::{DeflateConfig, Error, Result, WebSocket, WebSockets};

/// How long [`accept`] waits after an error that is not one connection's own (hyper and
/// axum wait the same): long enough for connections to close and free descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The `Retry-After` of the 503 that answers a connection over
/// [`WebSockets::set_max_connections`](crate::WebSockets::set_max_connections), in seconds:
/// slots free up as sockets close, which is slower than a handshake.
const RETRY_AFTER_SECS: u64 = 5;

/// How long a refused connection is read from (and what it sent discarded) after its 503.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

/// Accepts the next connection on `listener`, and never fails: what a server's accept loop
/// should call instead of [`TcpListener::accept`], whose errors are not the end of the
/// listener.
///
/// - An error that is the connection's own (the client aborted or reset it before it was
///   accepted, or the call was interrupted) is logged at debug level, and the next
///   connection is accepted at once.
/// - Any other error is logged (`tracing::error!`) and accepting resumes after 1 second.
///   Above all "Too many open files" (EMFILE, or ENFILE system-wide: no file descriptor
///   left), and ENOBUFS / ENOMEM: the connection stays in the listen backlog, so retrying
///   at once would spin a core, and returning the error would stop the server for good.
///   Meanwhile open connections close and free descriptors; the connections waiting in
///   the backlog are accepted then.
///
/// It only returns with a connection; drop the future (or abort its task) to stop.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use unisock::WebSocket;
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8069").await?;
/// loop {
///     let (tcp, _peer) = unisock::server::accept(&listener).await;
///     tokio::spawn(async move {
///         let ws = WebSocket::new();
///         if ws.upgrade(tcp).await.is_ok() {
///             ws.read().await;
///         }
///     });
/// }
/// # }
/// ```
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => survive(e).await,
        }
    }
}

/// As [`accept`], for any [`Listener`] (what [`serve`] calls): returns the next
/// connection, surviving accept errors in the same way.
///
/// ```no_run
/// # async fn run() -> unisock::Result<()> {
/// let mut listener = tokio::net::UnixListener::bind("/tmp/app.sock")?;
/// let unix = unisock::server::accept_from(&mut listener).await;
/// unisock::WebSocket::new().upgrade(unix).await?;
/// # Ok(()) }
/// ```
pub async fn accept_from<L: Listener>(listener: &mut L) -> L::Io {
    loop {
        match listener.accept().await {
            Ok(io) => return io,
            Err(e) => survive(e).await,
        }
    }
}

/// What [`accept`] does with an error: on to the next connection at once when it was one
/// connection's own, else after [`ACCEPT_BACKOFF`].
async fn survive(e: std::io::Error) {
    if is_connection_error(&e) {
        tracing::debug!("accept: a connection failed before it was accepted: {e}");
    } else {
        tracing::error!("accept failed, retrying in 1 s: {e}");
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }
}

/// Where [`serve`] takes connections from: a [`TcpListener`], a Unix domain socket's
/// [`tokio::net::UnixListener`] (on Unix), or your own source of streams.
///
/// `accept` returns the next connection or the error that prevented it; [`serve`] and
/// [`accept_from`] survive the errors as [`accept`] does (a pause of 1 s unless the error
/// was one connection's own, such as `ConnectionAborted`).
///
/// ```
/// use unisock::server::Listener;
///
/// /// Connections from a channel, e.g. streams a proxy hands over.
/// struct Handed(tokio::sync::mpsc::Receiver<tokio::net::TcpStream>);
///
/// impl Listener for Handed {
///     type Io = tokio::net::TcpStream;
///     async fn accept(&mut self) -> std::io::Result<Self::Io> {
///         self.0.recv().await.ok_or_else(|| std::io::ErrorKind::BrokenPipe.into())
///     }
/// }
/// ```
pub trait Listener: Send + 'static {
    /// The connection's stream.
    type Io: crate::Transport;

    /// Waits for the next connection.
    fn accept(&mut self) -> impl std::future::Future<Output = std::io::Result<Self::Io>> + Send;
}

/// Accepted streams have Nagle's algorithm off: a WebSocket writes whole messages, and
/// waiting to coalesce them only delays the answer.
impl Listener for TcpListener {
    type Io = TcpStream;

    async fn accept(&mut self) -> std::io::Result<TcpStream> {
        let (tcp, _) = TcpListener::accept(self).await?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }
}

#[cfg(unix)]
impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&mut self) -> std::io::Result<tokio::net::UnixStream> {
        let (unix, _) = tokio::net::UnixListener::accept(self).await?;
        Ok(unix)
    }
}

/// Whether an accept error is one connection's own: it consumed that connection, so the
/// next accept can follow at once. Unknown errors are not: backing off is always safe.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::Interrupted
    )
}

/// Answers a connection over the registry's cap: `503 Service Unavailable` with
/// `Retry-After` and `Connection: close`, without reading its request first.
pub(crate) async fn refuse<S: crate::Transport>(mut tcp: S) {
    let body = "too many connections";
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {RETRY_AFTER_SECS}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        tcp.write_all(head.as_bytes()).await?;
        linger(tcp).await;
        std::io::Result::Ok(())
    })
    .await;
}

/// Ends a connection whose last words (a 503, a TLS alert) were written: shuts our side
/// down, then reads (and drops) what the client sends until it closes, at most
/// [`REFUSAL_LINGER`]. Closing with unread data would send a reset, which can destroy
/// those last words before the client reads them.
async fn linger<S: crate::Transport>(mut tcp: S) {
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

/// The server's side of the TLS handshake on `io`, finished by `deadline` (the registry's
/// handshake timeout, which the request head shares). A client that fails it is sent the
/// alert that says why, and given time to read it.
async fn accept_tls<S: crate::Transport>(
    acceptor: &TlsAcceptor,
    io: S,
    deadline: Instant,
) -> Result<BoxIo> {
    match tokio::time::timeout_at(deadline, acceptor.accept(io).into_fallible()).await {
        Ok(Ok(tls)) => Ok(Box::new(tls)),
        Ok(Err((e, io))) => {
            linger(io).await;
            Err(Error::Tls(format!("handshake with a client failed: {e}")))
        }
        Err(_) => Err(Error::Timeout(
            "the client did not finish its TLS handshake in time",
        )),
    }
}

/// A validated upgrade request whose `101 Switching Protocols` response has not been sent
/// yet: add headers (a subprotocol, cookies) with [`PendingUpgrade::response_mut`], then
/// [`PendingUpgrade::commit`]. This is the original's `upgrade(req, res, commit = false)`.
///
/// ```no_run
/// # async fn run(tcp: tokio::net::TcpStream) -> unisock::Result<()> {
/// use unisock::{WebSocket, WebSocketExt};
///
/// let ws = WebSocket::new();
/// let mut pending = ws.upgrade_pending(tcp).await?;
/// let offered = pending.offered_protocols();
/// if offered.iter().any(|p| p == "chat") {
///     pending.set_protocol("chat")?;
/// }
/// pending.response_mut().headers_mut().insert("set-cookie", "session=1".parse().unwrap());
/// let ws = pending.commit().await?;
/// ws.read().await;
/// # Ok(()) }
/// ```
pub struct PendingUpgrade {
    pub(crate) ws: WebSocket,
    pub(crate) request: http::Request<()>,
    pub(crate) response: http::Response<()>,
    pub(crate) stream: BoxIo,
    pub(crate) leftover: Vec<u8>,
    /// permessage-deflate as answered in `response`, if accepted.
    pub(crate) deflate: Option<Negotiated>,
}

impl std::fmt::Debug for PendingUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingUpgrade")
            .field("id", &self.ws.id())
            .field("request", &self.request)
            .field("response", &self.response)
            .finish_non_exhaustive()
    }
}

impl PendingUpgrade {
    /// Validates `request` (read from `stream`, followed by `leftover`) for `ws`, which
    /// must not be connected yet; a refusal is answered on the stream and returned.
    pub(crate) async fn validate(
        ws: WebSocket,
        request: http::Request<()>,
        stream: BoxIo,
        leftover: Vec<u8>,
    ) -> Result<Self> {
        ws.inner.check_unconnected()?;
        let origins = ws.allowed_origins();
        let v =
            crate::native::validate_request(request, stream, leftover, origins.as_deref()).await?;
        let mut pending = Self {
            ws,
            request: v.request,
            response: v.response,
            stream: v.stream,
            leftover: v.leftover,
            deflate: None,
        };
        pending.answer_deflate(None);
        Ok(pending)
    }

    /// (Re)answers the client's permessage-deflate offers with `config` (else the
    /// socket's own options, else the server default).
    fn answer_deflate(&mut self, config: Option<DeflateConfig>) {
        let headers = self.response.headers_mut();
        headers.remove(http::header::SEC_WEBSOCKET_EXTENSIONS);
        self.deflate = self.ws.inner.negotiate_deflate(&self.request, config);
        if let Some(value) = self
            .deflate
            .as_ref()
            .and_then(|n| http::HeaderValue::from_str(&n.answer).ok())
        {
            headers.insert(http::header::SEC_WEBSOCKET_EXTENSIONS, value);
        }
    }

    /// Answers the client's permessage-deflate offers with `config` instead of the
    /// socket's options (or the server default); [`DeflateConfig::disabled`] declines
    /// compression for this connection. Removing `Sec-WebSocket-Extensions` from
    /// [`PendingUpgrade::response_mut`] declines it too.
    ///
    /// ```no_run
    /// # async fn run(tcp: tokio::net::TcpStream) -> unisock::Result<()> {
    /// use unisock::{DeflateConfig, WebSocket, WebSocketExt};
    /// let mut pending = WebSocket::new().upgrade_pending(tcp).await?;
    /// pending.set_deflate(DeflateConfig::disabled());
    /// assert!(pending.response_mut().headers().get("sec-websocket-extensions").is_none());
    /// # Ok(()) }
    /// ```
    pub fn set_deflate(&mut self, config: DeflateConfig) {
        self.answer_deflate(Some(config));
    }

    /// The client's upgrade request.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    /// let (a, b) = tokio::io::duplex(4096); // an in-memory connection
    /// let client = WebSocket::new();
    /// let serve = async {
    ///     let pending = WebSocket::new().upgrade_pending(b).await?;
    ///     assert_eq!(pending.request().uri().path(), "/chat");
    ///     pending.commit().await
    /// };
    /// let (server, open) = tokio::join!(serve, client.open_over(a, "ws://localhost/chat", &[]));
    /// server?;
    /// open?;
    /// # Ok(()) }
    /// ```
    pub fn request(&self) -> &http::Request<()> {
        &self.request
    }

    /// The 101 response about to be sent; add headers here.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    /// let (a, b) = tokio::io::duplex(4096); // an in-memory connection
    /// let client = WebSocket::new();
    /// let serve = async {
    ///     let mut pending = WebSocket::new().upgrade_pending(b).await?;
    ///     pending.response_mut().headers_mut().insert("x-node", "7".parse().unwrap());
    ///     pending.commit().await
    /// };
    /// let (server, open) = tokio::join!(serve, client.open_over(a, "ws://localhost/", &[]));
    /// server?;
    /// open?;
    /// assert_eq!(client.response_headers().unwrap()["x-node"], "7");
    /// # Ok(()) }
    /// ```
    pub fn response_mut(&mut self) -> &mut http::Response<()> {
        &mut self.response
    }

    /// The socket being upgraded.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    /// let (a, b) = tokio::io::duplex(4096); // an in-memory connection
    /// let client = WebSocket::new();
    /// let ws = WebSocket::new();
    /// let serve = async {
    ///     let pending = ws.upgrade_pending(b).await?;
    ///     assert_eq!(pending.websocket().id(), ws.id());
    ///     pending.commit().await
    /// };
    /// let (server, open) = tokio::join!(serve, client.open_over(a, "ws://localhost/", &[]));
    /// server?;
    /// open?;
    /// # Ok(()) }
    /// ```
    pub fn websocket(&self) -> &WebSocket {
        &self.ws
    }

    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`), in order.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    /// let (a, b) = tokio::io::duplex(4096); // an in-memory connection
    /// let client = WebSocket::new();
    /// let serve = async {
    ///     let mut pending = WebSocket::new().upgrade_pending(b).await?;
    ///     assert_eq!(pending.offered_protocols(), ["chat.v2", "chat"]);
    ///     pending.set_protocol("chat")?;
    ///     pending.commit().await
    /// };
    /// let (server, open) = tokio::join!(serve, client.open_over(a, "ws://localhost/", &["chat.v2", "chat"]));
    /// server?;
    /// open?;
    /// assert_eq!(client.protocol(), "chat");
    /// # Ok(()) }
    /// ```
    pub fn offered_protocols(&self) -> Vec<String> {
        offered_protocols(&self.request)
    }

    /// Selects a subprotocol: sets `Sec-WebSocket-Protocol` on the response.
    ///
    /// # Errors
    /// [`crate::Error::InvalidProtocol`], and the response is left as it was, when
    /// `protocol` is not one the client offered (its client would fail the connection,
    /// RFC 6455 §4.1) or not an RFC 7230 token.
    ///
    /// ```no_run
    /// # async fn run(tcp: tokio::net::TcpStream) -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    /// let mut pending = WebSocket::new().upgrade_pending(tcp).await?;
    /// if pending.set_protocol("chat.v2").is_err() {
    ///     pending.set_protocol("chat")?; // an older client
    /// }
    /// pending.commit().await?.read().await;
    /// # Ok(()) }
    /// ```
    pub fn set_protocol(&mut self, protocol: &str) -> Result<()> {
        let value = selected_protocol(&self.request, protocol)?;
        self.response
            .headers_mut()
            .insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
        Ok(())
    }

    /// Sends the 101 response and starts the socket; then call [`WebSocket::read`].
    ///
    /// # Errors
    /// [`crate::Error::Io`] when the response cannot be written.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    /// let (a, b) = tokio::io::duplex(4096); // an in-memory connection
    /// let client = WebSocket::new();
    /// let serve = async { WebSocket::new().upgrade_pending(b).await?.commit().await };
    /// let (server, open) = tokio::join!(serve, client.open_over(a, "ws://localhost/", &[]));
    /// let server = server?;
    /// open?;
    /// assert_eq!(server.ready_state(), unisock::ReadyState::Open);
    /// # Ok(()) }
    /// ```
    pub async fn commit(self) -> Result<WebSocket> {
        let PendingUpgrade {
            ws,
            request,
            response,
            mut stream,
            leftover,
            deflate,
        } = self;
        stream
            .write_all(&crate::protocol::handshake::encode_response(&response))
            .await?;
        ws.inner
            .attach_server(stream, leftover, &request, agreed(&response, deflate));
        Ok(ws)
    }
}

/// What a 101 `response` agreed: its subprotocol, and compression if the response still
/// carries the answer `deflate` made (a hook may have removed or changed it).
pub(crate) fn agreed(
    response: &http::Response<()>,
    deflate: Option<Negotiated>,
) -> (Option<String>, Option<Negotiated>) {
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
    };
    let protocol = header(http::header::SEC_WEBSOCKET_PROTOCOL).map(str::to_string);
    let answered = header(http::header::SEC_WEBSOCKET_EXTENSIONS);
    let deflate = deflate.filter(|n| answered == Some(n.answer.as_str()));
    (protocol, deflate)
}

/// The `Sec-WebSocket-Protocol` answer for a subprotocol a server selects: a token the
/// client offered, else [`crate::Error::InvalidProtocol`].
pub(crate) fn selected_protocol(
    request: &http::Request<()>,
    protocol: &str,
) -> Result<http::HeaderValue> {
    let invalid = |reason: String| crate::Error::InvalidProtocol {
        name: protocol.into(),
        reason: reason.into(),
    };
    if let Some(why) = crate::protocol::handshake::token_problem(protocol) {
        return Err(invalid(why));
    }
    if !offered_protocols(request).iter().any(|p| p == protocol) {
        return Err(invalid("the client did not offer it".into()));
    }
    http::HeaderValue::from_str(protocol).map_err(|e| invalid(e.to_string()))
}

/// The `Sec-WebSocket-Protocol` values of a request, split on commas, in order.
pub(crate) fn offered_protocols(request: &http::Request<()>) -> Vec<String> {
    request
        .headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Reads one request from `stream` by `deadline`, asks `handler` for a socket, and
/// services it; the connection counts towards the registry's cap (`admission`) until its
/// socket is registered or it fails.
async fn route<F>(
    registry: &crate::WebSockets,
    mut stream: BoxIo,
    handler: &F,
    admission: Admission,
    deadline: Instant,
) -> Result<()>
where
    F: Fn(&http::Request<()>) -> Option<WebSocket>,
{
    // The handshake steps are boxed: the connection's task keeps the size of its largest
    // future for its whole life.
    let (request, leftover) = Box::pin(crate::native::read_request_timed(
        &mut stream,
        deadline.saturating_duration_since(Instant::now()),
    ))
    .await?;
    let Some(ws) = handler(&request) else {
        let body = "no WebSocket here";
        let head = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.shutdown().await?;
        return Ok(());
    };
    let pending = Box::pin(PendingUpgrade::validate(ws, request, stream, leftover)).await?;
    registry.service_admitted(pending, Some(admission)).await
}

impl WebSockets {
    /// Accepts connections on `listener` (a [`TcpListener`], a Unix socket's
    /// `UnixListener`, any [`Listener`]) forever. For each request, `handler` returns the
    /// configured [`WebSocket`] to upgrade to (the original's "a route returns a
    /// WebSocket"), or `None` for a 404. Each socket is serviced by this registry.
    ///
    /// Never returns (hence [`Infallible`]): accept errors are logged and survived, with a
    /// pause of 1 second when the process is out of file descriptors (see
    /// [`crate::server::accept`]). Drop the future, or abort its task, to stop listening;
    /// the sockets already open go on. Over [`WebSockets::set_max_connections`], new
    /// connections are answered 503.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// let sockets = unisock::WebSockets::new();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8069").await?;
    /// let serving = tokio::spawn({
    ///     let sockets = sockets.clone();
    ///     async move { sockets.serve(listener, |_| Some(unisock::WebSocket::new())).await }
    /// });
    /// // ... later: stop listening, then close the open sockets.
    /// serving.abort();
    /// sockets.shutdown().await;
    /// # Ok(()) }
    /// ```
    ///
    /// For a graceful stop, as with axum's `serve(..).with_graceful_shutdown(signal)`:
    /// [`Serve::with_graceful_shutdown`] stops accepting when `signal` completes, then
    /// closes the open sockets with [`WebSockets::shutdown`]. For `wss://`, add
    /// [`Serve::tls`].
    pub fn serve<L, F>(&self, listener: L, handler: F) -> Serve<L, F>
    where
        L: Listener,
        F: Fn(&http::Request<()>) -> Option<WebSocket> + Send + Sync + 'static,
    {
        Serve {
            registry: self.clone(),
            listener,
            handler,
            tls: None,
        }
    }

    /// The accept loop of `serve`, until `stop` completes.
    async fn accept_until<L, F>(
        &self,
        mut listener: L,
        handler: F,
        tls: Option<TlsAcceptor>,
        stop: impl Future<Output = ()>,
    ) where
        L: Listener,
        F: Fn(&http::Request<()>) -> Option<WebSocket> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let mut stop = std::pin::pin!(stop);
        loop {
            let io = tokio::select! {
                io = accept_from(&mut listener) => io,
                () = &mut stop => return,
            };
            let admission = self.admit();
            if admission.is_none() {
                tracing::debug!("connection refused (503): the registry is at its cap");
            }
            let (registry, handler, tls) = (self.clone(), handler.clone(), tls.clone());
            // Everything that waits for the client runs in the connection's own task, the
            // TLS handshake included: a slow client holds up no other.
            tokio::spawn(async move {
                let deadline = Instant::now() + registry.handshake_timeout();
                let stream: BoxIo = match &tls {
                    None => Box::new(io),
                    Some(acceptor) => match Box::pin(accept_tls(acceptor, io, deadline)).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            tracing::debug!("connection not upgraded: {e}");
                            return;
                        }
                    },
                };
                // Over the cap, a TLS client still gets its 503, readable once over TLS.
                let Some(admission) = admission else {
                    return refuse(stream).await;
                };
                if let Err(e) = route(&registry, stream, &*handler, admission, deadline).await {
                    tracing::debug!("connection not upgraded: {e}");
                }
            });
        }
    }
}

/// What [`WebSockets::serve`] and [`serve`] return: await it (it never returns), or stop it
/// gracefully with [`Serve::with_graceful_shutdown`].
#[must_use = "a Serve does nothing until it is awaited"]
pub struct Serve<L, F> {
    registry: WebSockets,
    listener: L,
    handler: F,
    tls: Option<TlsAcceptor>,
}

impl<L, F> std::fmt::Debug for Serve<L, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("registry", &self.registry)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl<L, F> Serve<L, F>
where
    L: Listener,
    F: Fn(&http::Request<()>) -> Option<WebSocket> + Send + Sync + 'static,
{
    /// Serves `wss://`: runs TLS with `config` on every connection before reading its
    /// request. The TLS handshake runs in the connection's own task, and it and the request
    /// head share the registry's [`WebSockets::set_handshake_timeout`] (10 s by default): a
    /// client that stalls either is dropped then, and holds up no other. A client that
    /// fails the handshake (an untrusted certificate, no client certificate where `config`
    /// requires one) is sent TLS's alert and dropped. Over
    /// [`WebSockets::set_max_connections`], the 503 is sent after the TLS handshake.
    ///
    /// `config` is rustls' own (re-exported as [`crate::rustls`]): a certificate chain and
    /// key (`with_single_cert`), and `with_client_cert_verifier` with a
    /// `WebPkiClientVerifier` instead of `with_no_client_auth` to require client
    /// certificates (mTLS).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use unisock::rustls::pki_types::pem::PemObject;
    /// use unisock::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    /// use unisock::rustls::ServerConfig;
    ///
    /// let chain = CertificateDer::pem_file_iter("cert.pem")?.collect::<Result<Vec<_>, _>>()?;
    /// let key = PrivateKeyDer::from_pem_file("key.pem")?;
    /// let config = ServerConfig::builder_with_provider(Arc::new(
    ///     unisock::rustls::crypto::ring::default_provider(),
    /// ))
    /// .with_safe_default_protocol_versions()?
    /// .with_no_client_auth()
    /// .with_single_cert(chain, key)?;
    ///
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
    /// let sockets = unisock::WebSockets::new();
    /// sockets
    ///     .serve(listener, |_| Some(unisock::WebSocket::new()))
    ///     .tls(Arc::new(config))
    ///     .with_graceful_shutdown(async {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///     })
    ///     .await;
    /// # Ok(()) }
    /// ```
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(TlsAcceptor::from(config));
        self
    }

    /// Serves until `signal` completes, then stops accepting (the listener is dropped),
    /// closes the registry's sockets with 1001 and waits for them
    /// ([`WebSockets::shutdown`], at most 5 s), and resolves with how many it closed.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8069").await?;
    /// let closed = unisock::serve(listener, |_| Some(unisock::WebSocket::new()))
    ///     .with_graceful_shutdown(async {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///     })
    ///     .await;
    /// println!("stopped; {closed} sockets closed");
    /// # Ok(()) }
    /// ```
    pub fn with_graceful_shutdown<G>(self, signal: G) -> WithGracefulShutdown<L, F, G>
    where
        G: Future<Output = ()> + Send + 'static,
    {
        WithGracefulShutdown {
            serve: self,
            signal,
        }
    }
}

impl<L, F> std::future::IntoFuture for Serve<L, F>
where
    L: Listener,
    F: Fn(&http::Request<()>) -> Option<WebSocket> + Send + Sync + 'static,
{
    type Output = Infallible;
    type IntoFuture = Pin<Box<dyn Future<Output = Infallible> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let Serve {
            registry,
            listener,
            handler,
            tls,
        } = self;
        Box::pin(async move {
            registry
                .accept_until(listener, handler, tls, std::future::pending())
                .await;
            unreachable_end().await
        })
    }
}

/// The end a never-ending accept loop cannot reach: waits for ever.
async fn unreachable_end() -> Infallible {
    std::future::pending().await
}

/// [`Serve::with_graceful_shutdown`]: await it to serve until the signal, then shut down.
#[must_use = "a WithGracefulShutdown does nothing until it is awaited"]
pub struct WithGracefulShutdown<L, F, G> {
    serve: Serve<L, F>,
    signal: G,
}

impl<L, F, G> std::fmt::Debug for WithGracefulShutdown<L, F, G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithGracefulShutdown")
            .field("serve", &self.serve)
            .finish_non_exhaustive()
    }
}

impl<L, F, G> std::future::IntoFuture for WithGracefulShutdown<L, F, G>
where
    L: Listener,
    F: Fn(&http::Request<()>) -> Option<WebSocket> + Send + Sync + 'static,
    G: Future<Output = ()> + Send + 'static,
{
    /// How many sockets the shutdown closed.
    type Output = usize;
    type IntoFuture = Pin<Box<dyn Future<Output = usize> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let Serve {
            registry,
            listener,
            handler,
            tls,
        } = self.serve;
        let signal = self.signal;
        Box::pin(async move {
            registry.accept_until(listener, handler, tls, signal).await;
            registry.shutdown().await
        })
    }
}

/// Accepts connections on `listener` forever with a fresh [`WebSockets`] registry, with
/// its defaults (no connection cap); see [`WebSockets::serve`]. Never returns.
///
/// To set a cap ([`WebSockets::set_max_connections`]) or another registry option, or to
/// reach the sockets later, make the registry yourself and call its
/// [`serve`](WebSockets::serve). For `wss://`: `unisock::serve(listener, handler).tls(config)`
/// ([`Serve::tls`]).
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8069").await?;
/// let serving = unisock::serve(listener, |request| {
///     (request.uri().path() == "/ws").then(unisock::WebSocket::new)
/// });
/// match serving.await {}
/// # }
/// ```
pub fn serve<L, F>(listener: L, handler: F) -> Serve<L, F>
where
    L: Listener,
    F: Fn(&http::Request<()>) -> Option<WebSocket> + Send + Sync + 'static,
{
    WebSockets::new().serve(listener, handler)
}
