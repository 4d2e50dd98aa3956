//! The public [`WebSocket`] facade: the one documented impl block, the contract every
//! backend (`native/`, `web/`) implements. Each method forwards to `backend::Socket`.

use crate::backend;
use crate::protocol::CloseCode;
use crate::send_sync::handler;
use crate::ws_url::parse_ws_url;
use crate::{
    CloseEvent, Error, Heartbeat, MsgEvent, ReadyState, Reconnect, Result, WasmNotSendSync,
};

/// Refuses subprotocol names that are not RFC 7230 tokens, or offered twice, before
/// anything is sent (both targets; a browser throws a `SyntaxError` for them).
pub(crate) fn check_protocols(protocols: &[&str]) -> Result<()> {
    match crate::protocol::handshake::protocols_problem(protocols) {
        Some((name, reason)) => Err(Error::InvalidProtocol {
            name: name.into(),
            reason: reason.into(),
        }),
        None => Ok(()),
    }
}

/// A WebSocket connection, W3C-shaped; the same type natively (Tokio) and in the browser.
///
/// A `WebSocket` is a cheap handle: clones share one connection, and (natively) it is
/// `Send + Sync`, so any task can send or close while another runs [`WebSocket::read`].
///
/// Natively, when the last handle is dropped (handlers that hold a clone count as
/// handles until the socket closes), an open connection is closed with 1001 (going away)
/// after what was queued is written. **Browser:** as in JS, an open socket lives on until
/// it closes.
///
/// ```
/// let ws = unisock::WebSocket::new();
/// assert_eq!(ws.ready_state(), unisock::ReadyState::Connecting);
/// assert!(ws.send_text("too early").is_err());
/// ```
pub struct WebSocket {
    pub(crate) inner: backend::Socket,
    /// Shared by the user's handles (not the backend's own references): when the last one
    /// is dropped, the backend is told that nobody can use the socket any more.
    handles: Option<std::sync::Arc<Handles>>,
    /// This handle's `Stream` and `Sink` state, made when first used as either. Boxed: a
    /// handle is often kept in a message handler, for the life of the connection.
    io: Option<Box<HandleIo>>,
}

/// A handle's own state as a `Stream` and a `Sink`; clones start without it.
#[derive(Default)]
struct HandleIo {
    /// The subscription while the handle is used as a `Stream`.
    messages: Option<backend::Messages>,
    /// What the `Sink` side is waiting for.
    sink: Option<SinkWait>,
}

/// What a `Sink` waits for: a message to get room in the send queue, a flush, a close.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SinkOp {
    Send,
    Flush,
    Close,
}

/// A wait of the `Sink`, kept between polls. The mutex only makes the handle `Sync`:
/// polling goes through `get_mut`, which never locks.
struct SinkWait {
    op: SinkOp,
    future: std::sync::Mutex<crate::send_sync::BoxFuture<Result<()>>>,
}

/// The user's handles on one socket; dropping the last one releases the socket.
struct Handles(backend::Socket);

impl Drop for Handles {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Clone for WebSocket {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            handles: self.handles.clone(),
            io: None,
        }
    }
}

/// `WebSocket` is a stream of incoming messages, the Rust-idiomatic alternative to
/// [`WebSocket::on_message`]: polling it also runs the event loop natively (as
/// [`WebSocket::read`] does), and it ends when the connection closes. While a handle is
/// used as a stream, messages go to the stream, not to `on_message`.
///
/// `next()` and the other combinators come from a `StreamExt` trait, which unisock does
/// not re-export: add `futures-util = "0.3"` (or `futures`, or `tokio-stream`) to your
/// `Cargo.toml` and `use futures_util::StreamExt;`, as below.
///
/// ```no_run
/// # async fn run() -> unisock::Result<()> {
/// use futures_util::StreamExt;
///
/// let mut ws = unisock::WebSocket::new();
/// ws.open("ws://127.0.0.1:8069/ws", &[]).await?;
/// ws.send_text("hi")?;
/// while let Some(msg) = ws.next().await {
///     println!("{msg}");
/// }
/// println!("closed: {}", ws.closed().await);
/// # Ok(()) }
/// ```
impl futures_core::Stream for WebSocket {
    type Item = MsgEvent;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<MsgEvent>> {
        let this = self.get_mut();
        let inner = &this.inner;
        this.io
            .get_or_insert_default()
            .messages
            .get_or_insert_with(|| inner.subscribe())
            .poll_next(cx)
    }
}

/// `WebSocket` is also a sink of messages with backpressure, the counterpart of its
/// `Stream`: `SinkExt::feed(msg).await` queues `msg` once the send queue has room for it
/// (see [`WebSocket::send_async`]), so a sender faster than its peer reads is slowed
/// instead of failing with [`Error::Capacity`] or growing memory; `SinkExt::send` also
/// waits until it is written, and `send_all` / `StreamExt::forward` flush only when their
/// stream waits or ends. `flush().await` waits until what was queued is written
/// ([`WebSocket::flush`]); `close().await` closes with 1000 and waits until the socket
/// has closed ([`WebSocket::closed`]).
///
/// As with the `Stream`, the combinators come from a `SinkExt` trait (in `futures-util`,
/// with its `sink` feature, or `futures`). `WebSocket`'s own `send`, `flush` and `close`
/// come first in method calls: call `SinkExt::send(&mut ws, msg)` by its path, or use
/// [`WebSocket::send_async`], which is the same wait. Clone the handle to use one clone
/// as the stream and another as the sink, or `StreamExt::split` it.
///
/// ```no_run
/// # async fn run() -> unisock::Result<()> {
/// use futures_util::{stream, SinkExt, StreamExt};
/// use unisock::{MsgEvent, WebSocket};
///
/// let mut ws = WebSocket::new();
/// ws.open("ws://127.0.0.1:8069/ws", &[]).await?;
/// SinkExt::send(&mut ws, MsgEvent::Text("hello".into())).await?; // waits while full
/// let mut lines = stream::iter(["a", "b", "c"]).map(|l| Ok(MsgEvent::Text(l.into())));
/// ws.send_all(&mut lines).await?;
/// SinkExt::close(&mut ws).await?; // 1000, then waits for the closing handshake
/// # Ok(()) }
/// ```
impl futures_sink::Sink<MsgEvent> for WebSocket {
    type Error = Error;

    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<()>> {
        self.get_mut().poll_sink(cx, SinkOp::Send)
    }

    fn start_send(self: std::pin::Pin<&mut Self>, msg: MsgEvent) -> Result<()> {
        let this = self.get_mut();
        // Queued at once when there is room: no allocation on the fast path.
        if let Some(msg) = this.inner.send_or_keep(msg)? {
            let inner = this.inner.clone();
            this.start_wait(
                SinkOp::Send,
                Box::pin(async move { inner.send_async(msg).await }),
            );
        }
        Ok(())
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_sink(cx, SinkOp::Send))?;
        if this.sink().is_none() {
            let inner = this.inner.clone();
            this.start_wait(SinkOp::Flush, Box::pin(async move { inner.flush().await }));
        }
        this.poll_sink(cx, SinkOp::Flush)
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_sink(cx, SinkOp::Send))?;
        if this.sink().as_ref().is_none_or(|w| w.op != SinkOp::Close) {
            this.close(1000, "")?;
            let inner = this.inner.clone();
            this.start_wait(
                SinkOp::Close,
                Box::pin(async move {
                    inner.closed().await;
                    Ok(())
                }),
            );
        }
        this.poll_sink(cx, SinkOp::Close)
    }
}

impl WebSocket {
    /// The `Sink`'s wait, if any.
    fn sink(&mut self) -> &mut Option<SinkWait> {
        &mut self.io.get_or_insert_default().sink
    }

    fn start_wait(&mut self, op: SinkOp, future: crate::send_sync::BoxFuture<Result<()>>) {
        *self.sink() = Some(SinkWait {
            op,
            future: std::sync::Mutex::new(future),
        });
    }

    /// Polls the `Sink`'s wait if it is an `op` (or a message waiting for room, which
    /// comes first); ready at once when there is none. A flush given up for a send is
    /// dropped: it waited for nothing that matters to the send.
    fn poll_sink(
        &mut self,
        cx: &mut std::task::Context<'_>,
        op: SinkOp,
    ) -> std::task::Poll<Result<()>> {
        let Some(wait) = self.io.as_mut().and_then(|io| io.sink.as_mut()) else {
            return std::task::Poll::Ready(Ok(()));
        };
        if wait.op != op && wait.op != SinkOp::Send {
            if op == SinkOp::Send {
                *self.sink() = None;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        let future = wait
            .future
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let done = std::task::ready!(future.as_mut().poll(cx));
        *self.sink() = None;
        std::task::Poll::Ready(done)
    }
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("id", &self.id())
            .field("url", &self.url())
            .field("ready_state", &self.ready_state())
            .finish()
    }
}

impl Default for WebSocket {
    fn default() -> Self {
        Self::new()
    }
}

impl WebSocket {
    /// Creates an unconnected socket; connect it with [`WebSocket::open`] (client) or
    /// [`WebSocket::upgrade`] (server). Handlers may be set before or after.
    ///
    /// ```
    /// let a = unisock::WebSocket::new();
    /// let b = unisock::WebSocket::new();
    /// assert_ne!(a.id(), b.id());
    /// ```
    #[allow(
        clippy::arc_with_non_send_sync,
        reason = "in the browser the backend is single-threaded (Rc); natively it is Send + Sync"
    )]
    pub fn new() -> Self {
        let inner = backend::Socket::new();
        Self {
            handles: Some(std::sync::Arc::new(Handles(inner.clone()))),
            inner,
            io: None,
        }
    }

    /// A handle for the crate's own use, which does not count as a user's handle.
    #[allow(dead_code, reason = "only the native backend needs internal handles")]
    pub(crate) fn from_backend(inner: backend::Socket) -> Self {
        Self {
            inner,
            handles: None,
            io: None,
        }
    }

    /// A process-unique id (`unisock:0001`, ...), assigned at construction; the key in the registry.
    ///
    /// ```
    /// assert!(unisock::WebSocket::new().id().starts_with("unisock:"));
    /// ```
    pub fn id(&self) -> &str {
        self.inner.id()
    }

    /// The URL: the `ws(s)://` URL given to `open` (client), or the request target (server).
    /// `None` before the socket was opened or upgraded.
    ///
    /// ```
    /// assert_eq!(unisock::WebSocket::new().url(), None);
    /// ```
    pub fn url(&self) -> Option<String> {
        self.inner.url()
    }

    /// The connection state.
    ///
    /// ```
    /// assert_eq!(unisock::WebSocket::new().ready_state(), unisock::ReadyState::Connecting);
    /// ```
    pub fn ready_state(&self) -> ReadyState {
        self.inner.ready_state()
    }

    /// Payload bytes queued by `send_*` that were not yet written to the network (framing not counted).
    ///
    /// ```
    /// assert_eq!(unisock::WebSocket::new().buffered_amount(), 0);
    /// ```
    pub fn buffered_amount(&self) -> usize {
        self.inner.buffered_amount()
    }

    /// The subprotocol the server selected, or `""` when none.
    ///
    /// ```
    /// assert_eq!(unisock::WebSocket::new().protocol(), "");
    /// ```
    pub fn protocol(&self) -> String {
        self.inner.protocol()
    }

    /// The extensions the server selected (its `Sec-WebSocket-Extensions` answer), or
    /// `""` when none, e.g. `"permessage-deflate"` when messages are compressed. Natively
    /// compression is configured with `WebSocketExt::set_deflate`; in the browser the
    /// browser offers and negotiates it by itself.
    ///
    /// ```
    /// assert_eq!(unisock::WebSocket::new().extensions(), "");
    /// ```
    pub fn extensions(&self) -> String {
        self.inner.extensions()
    }

    /// The origins a server socket accepts in [`WebSocket::upgrade`] (and every other
    /// upgrade path: `upgrade_pending`, `serve`, axum), as patterns such as
    /// `https://example.com`, `https://*.example.com` or `http://localhost:*`; see
    /// [`origin_matches`](crate::protocol::handshake::origin_matches) for the rules. A
    /// request whose `Origin` matches none is answered 403, one without `Origin` 400.
    /// Ignored by clients.
    ///
    /// **`None`, the default, accepts every origin, which is unsafe** for a server that
    /// knows its users by their cookies (the original afWebSockets said as much of its
    /// own default): a page on any site can open a WebSocket to your server, and the
    /// browser sends the user's cookies with it (cross-site WebSocket hijacking). Browsers
    /// always send `Origin` with a WebSocket, and a page cannot change it, so list your
    /// own sites' origins here whenever you authenticate by cookie.
    ///
    /// Clients that are not browsers send no `Origin`, or any they like: checking it does
    /// not authenticate them, it only keeps other sites' pages out. To serve them too, set
    /// the list only for requests that carry an `Origin`, as `examples/chat_server.rs`
    /// does.
    ///
    /// ```
    /// let ws = unisock::WebSocket::new();
    /// ws.set_allowed_origins(Some(vec![
    ///     "https://example.com".into(),
    ///     "https://*.example.com".into(),
    /// ]));
    /// assert_eq!(ws.allowed_origins().unwrap().len(), 2);
    /// ```
    pub fn set_allowed_origins(&self, origins: Option<Vec<String>>) {
        self.inner.set_allowed_origins(origins)
    }

    /// The origin patterns set with [`WebSocket::set_allowed_origins`].
    ///
    /// ```
    /// assert_eq!(unisock::WebSocket::new().allowed_origins(), None);
    /// ```
    pub fn allowed_origins(&self) -> Option<Vec<String>> {
        self.inner.allowed_origins()
    }

    /// Called when the connection is open, before any message: for a client before
    /// [`WebSocket::open`] returns (in the browser, on its `open` event), and again after
    /// each reconnect; for a server socket when its event loop first runs (a registry's
    /// socket is registered by then).
    ///
    /// ```
    /// unisock::WebSocket::new().on_open(|| println!("open for business!"));
    /// ```
    pub fn on_open(&self, f: impl Fn() + WasmNotSendSync + 'static) {
        self.inner.handlers().on_open = Some(handler(move |()| f()));
    }

    /// Called once per whole message received.
    ///
    /// ```
    /// unisock::WebSocket::new().on_message(|m| println!("{m}"));
    /// ```
    pub fn on_message(&self, f: impl Fn(MsgEvent) + WasmNotSendSync + 'static) {
        self.inner.handlers().on_message = Some(handler(f));
    }

    /// Called once when the connection has closed, for any reason.
    ///
    /// ```
    /// unisock::WebSocket::new().on_close(|e| println!("{e}"));
    /// ```
    pub fn on_close(&self, f: impl Fn(CloseEvent) + WasmNotSendSync + 'static) {
        self.inner.handlers().on_close = Some(handler(f));
    }

    /// Called when an error occurs that the other handlers do not report (a panicking
    /// handler natively; the browser's `error` event).
    ///
    /// ```
    /// unisock::WebSocket::new().on_error(|e| eprintln!("{e}"));
    /// ```
    pub fn on_error(&self, f: impl Fn(Error) + WasmNotSendSync + 'static) {
        self.inner.handlers().on_error = Some(handler(f));
    }

    /// Opts a client socket in to reconnecting after it loses its connection (`None`, the
    /// default, turns it off); see [`Reconnect`] for what is retried, the events and the
    /// send buffer. Set it before [`WebSocket::open`].
    ///
    /// ```
    /// let ws = unisock::WebSocket::new();
    /// ws.set_reconnect(Some(unisock::Reconnect::default().buffer(64 * 1024)));
    /// ```
    pub fn set_reconnect(&self, policy: Option<Reconnect>) {
        self.inner.set_reconnect(policy)
    }

    /// Called before each reconnect attempt with the attempt number (from 1) and the wait
    /// before it. `ready_state` is `Connecting` meanwhile; `on_open` follows on success.
    ///
    /// ```
    /// unisock::WebSocket::new().on_reconnecting(|attempt, delay| {
    ///     println!("reconnecting (attempt {attempt}) in {delay:?}…");
    /// });
    /// ```
    pub fn on_reconnecting(
        &self,
        f: impl Fn(u32, std::time::Duration) + WasmNotSendSync + 'static,
    ) {
        self.inner.handlers().on_reconnecting =
            Some(handler(move |(attempt, delay)| f(attempt, delay)));
    }

    /// An application-level heartbeat ([`Heartbeat`]; `None`, the default, turns it off):
    /// finds a dead connection where pings cannot be sent, as in the browser. Set it before
    /// [`WebSocket::open`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let ws = unisock::WebSocket::new();
    /// ws.set_heartbeat(Some(unisock::Heartbeat::new(Duration::from_secs(20), Duration::from_secs(10), "ping")));
    /// ```
    pub fn set_heartbeat(&self, heartbeat: Option<Heartbeat>) {
        self.inner.set_heartbeat(heartbeat)
    }

    /// How long opening may take: natively the TCP connect, TLS and the opening handshake;
    /// in the browser, until its `open` event. It applies to [`WebSocket::open`] and to every
    /// reconnect attempt. `None` waits for ever; the default is 10 s (as Python `websockets`'
    /// `open_timeout`). Past it, `open` fails with [`Error::Timeout`] (the browser socket is
    /// closed), and a reconnecting socket moves on to its next attempt. Set it before
    /// [`WebSocket::open`].
    ///
    /// ```
    /// # async fn run() -> unisock::Result<()> {
    /// let ws = unisock::WebSocket::new();
    /// ws.set_open_timeout(Some(std::time::Duration::from_secs(3)));
    /// match ws.open("ws://10.255.255.1/", &[]).await {
    ///     Err(unisock::Error::Timeout(what)) => println!("gave up: {what}"),
    ///     other => println!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn set_open_timeout(&self, timeout: Option<std::time::Duration>) {
        self.inner.set_open_timeout(timeout)
    }

    /// Connects to a `ws://` or `wss://` URL, offering `protocols` (may be empty), and
    /// resolves once the opening handshake completed.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a bad URL or scheme (the reason says which),
    /// [`Error::InvalidProtocol`] for a subprotocol name that is not a token or is offered
    /// twice (nothing is sent), [`Error::Io`] when the connection fails,
    /// [`Error::Handshake`] when the server's answer is not a valid upgrade (a refusal's
    /// status and the start of its body), [`Error::Tls`] for TLS failures. **Browser:**
    /// [`Error::Js`] when the browser reports an error or close before the connection
    /// opened.
    ///
    /// ```no_run
    /// # async fn run() -> unisock::Result<()> {
    /// let ws = unisock::WebSocket::new();
    /// ws.open("ws://127.0.0.1:8069/ws", &["chat"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(&self, url: &str, protocols: &[&str]) -> Result<()> {
        let url = parse_ws_url(url)?;
        check_protocols(protocols)?;
        self.inner.open(url, protocols).await
    }

    /// Runs the event loop until the socket has closed for good (after reconnects, if it
    /// reconnects), calling the handlers; returns at once on a socket never connected.
    ///
    /// Cancel-safe: it may be dropped at any await (a `timeout`, a `select!`) and called
    /// again, from any clone, and the loop goes on where it stopped, losing nothing. While
    /// another handle runs the loop (`read()`, a `Stream`, [`WebSocket::closed`]), it waits
    /// for the end, taking over if that handle lets go.
    ///
    /// **Browser:** returns at once; the browser runs the event loop.
    ///
    /// ```no_run
    /// # async fn run(ws: unisock::WebSocket) {
    /// ws.read().await;
    /// # }
    /// ```
    // Not an `async fn` of its own: it hands out the backend's future, one level less for
    // every message to poll.
    pub fn read(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.inner.read()
    }

    /// Resolves with the [`CloseEvent`] once the socket has closed for good (at once if it
    /// already has). Natively it runs the event loop meanwhile when no other handle does,
    /// so `close()` then `closed().await` completes the closing handshake on its own; like
    /// [`WebSocket::read`], it is cancel-safe.
    ///
    /// ```no_run
    /// # async fn run(ws: unisock::WebSocket) {
    /// let ev = ws.closed().await;
    /// println!("closed with {}: {}", ev.code, ev.reason);
    /// # }
    /// ```
    pub async fn closed(&self) -> CloseEvent {
        self.inner.closed().await
    }

    /// Waits until every queued message was handed to the network
    /// ([`WebSocket::buffered_amount`] is 0).
    ///
    /// # Errors
    /// [`Error::NotOpen`] before `open`/`upgrade`; [`Error::Closed`] if the connection ended
    /// with messages still queued.
    ///
    /// ```no_run
    /// # async fn run(ws: unisock::WebSocket) -> unisock::Result<()> {
    /// ws.send_text("important")?;
    /// ws.flush().await?;
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    /// Queues `msg` once the send queue has room for it, instead of failing with
    /// [`Error::Capacity`] as [`WebSocket::send`] does: a sender faster than its peer
    /// reads waits here, and never queues past the cap. Natively the cap is the send queue
    /// cap (`WebSocketExt::set_send_queue_cap`, 64 MiB by default), and the wait ends when
    /// written bytes make room; a message larger than the cap still fails with
    /// [`Error::Capacity`]. **Browser:** it waits while the browser's `bufferedAmount`
    /// with `msg` would pass 1 MiB (it looks again every few milliseconds); a larger
    /// message is sent once the buffer is empty. While reconnecting, it waits for room in
    /// the [`Reconnect`] buffer.
    ///
    /// Cancel-safe in that dropping it while it waits queues nothing. The `Sink` impl
    /// (`SinkExt::send`) waits the same way.
    ///
    /// # Errors
    /// As [`WebSocket::send`], and [`Error::Closed`] if the socket closes while it waits.
    ///
    /// ```no_run
    /// # async fn run(ws: unisock::WebSocket) -> unisock::Result<()> {
    /// use unisock::MsgEvent;
    /// for i in 0..1_000_000 {
    ///     ws.send_async(MsgEvent::Text(format!("tick {i}"))).await?; // paced by the peer
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send_async(&self, msg: MsgEvent) -> Result<()> {
        self.inner.send_async(msg).await
    }

    /// Queues a text message without blocking.
    ///
    /// # Errors
    /// [`Error::NotOpen`] before `open`/`upgrade`, [`Error::Closed`] once closing or closed,
    /// [`Error::Capacity`] when the send queue is full.
    ///
    /// ```
    /// assert!(matches!(unisock::WebSocket::new().send_text("x"), Err(unisock::Error::NotOpen)));
    /// ```
    pub fn send_text(&self, text: &str) -> Result<()> {
        self.inner.send_text(text)
    }

    /// Queues a binary message without blocking.
    ///
    /// # Errors
    /// As [`WebSocket::send_text`].
    ///
    /// ```
    /// assert!(unisock::WebSocket::new().send_binary(&[1, 2, 3]).is_err());
    /// ```
    pub fn send_binary(&self, data: &[u8]) -> Result<()> {
        self.inner.send_binary(data)
    }

    /// Queues a message you own, text or binary: a received [`MsgEvent`] can be sent on
    /// as it is. Natively a big message (64 KiB or more, not compressed) is written from
    /// its own buffer instead of being copied into the send queue, so echoing or
    /// forwarding a large message costs no copy; in the browser it is
    /// [`WebSocket::send_text`] or [`WebSocket::send_binary`].
    ///
    /// # Errors
    /// As [`WebSocket::send_text`].
    ///
    /// ```
    /// use unisock::{MsgEvent, WebSocket};
    ///
    /// let ws = WebSocket::new();
    /// let echo = ws.clone();
    /// ws.on_message(move |msg| {
    ///     let _ = echo.send(msg); // an echo server, without copying the message
    /// });
    /// assert!(ws.send(MsgEvent::Text("not open yet".into())).is_err());
    /// ```
    pub fn send(&self, msg: MsgEvent) -> Result<()> {
        self.inner.send(msg)
    }

    /// Starts the closing handshake with `code` and `reason`. A second call is a no-op.
    /// While [`WebSocket::open`] is still connecting, aborts it, as a browser does: `open`
    /// fails with [`Error::Closed`] and `on_close` reports 1006.
    ///
    /// # Errors
    /// [`Error::InvalidCloseCode`] unless `code` is 1000-1003, 1007-1014 or 3000-4999
    /// (**Browser:** only 1000 and 3000-4999), [`Error::ReasonTooLong`] over 123 bytes,
    /// [`Error::NotOpen`] before `open`/`upgrade`.
    ///
    /// ```
    /// let ws = unisock::WebSocket::new();
    /// assert!(matches!(ws.close(1005, ""), Err(unisock::Error::InvalidCloseCode(1005))));
    /// ```
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        let code = CloseCode::try_from(code).map_err(|_| Error::InvalidCloseCode(code))?;
        if reason.len() > 123 {
            return Err(Error::ReasonTooLong(reason.len()));
        }
        self.inner.close(code, reason)
    }

    /// Server side: reads and validates the HTTP upgrade request from `stream`, checks the
    /// `Origin` against [`WebSocket::allowed_origins`], and answers 101 (or 400/403/426 and
    /// an error).
    ///
    /// # Errors
    /// [`Error::Handshake`] for a bad request (the error response was already sent),
    /// [`Error::Io`] on network errors. **Browser:** always [`Error::Unsupported`].
    ///
    /// ```no_run
    /// # #[cfg(not(target_arch = "wasm32"))]
    /// # async fn run(tcp: tokio::net::TcpStream) -> unisock::Result<()> {
    /// let ws = unisock::WebSocket::new();
    /// ws.upgrade(tcp).await?;
    /// ws.read().await;
    /// # Ok(()) }
    /// ```
    pub async fn upgrade<S: backend::Transport>(&self, stream: S) -> Result<()> {
        self.inner.upgrade(stream).await
    }
}

/// A new socket's id: `unisock:0001`, numbered in the order sockets are made in this
/// process (or this page), with the node id in it where one is set for a scaled-out
/// registry (`unisock:<node>:0001`).
pub(crate) fn next_id(node: Option<&str>) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match node {
        Some(node) => format!("unisock:{node}:{n:04}"),
        None => format!("unisock:{n:04}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_checked_as_a_browser_does() {
        assert!(check_protocols(&[]).is_ok());
        assert!(check_protocols(&["chat", "superchat"]).is_ok());
        let err = check_protocols(&["chat", "chat"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid subprotocol name "chat": it is offered twice"#
        );
    }
}
