//! The native backend: a thin Tokio driver around the sans-io [`crate::protocol::Connection`].
//!
//! Contract: `Socket` implements every method that `socket.rs` forwards to, with the same
//! signatures as `web::Socket`. The caller of `read()` owns the read half, dispatches
//! events to the handlers and writes the answers through; a writer task, started only
//! while output waits for it, drains the rest (coalescing everything queued into one
//! write).
//!
//! The lifecycle (open timeout, keep-alive, heartbeat, read and close timeouts, reconnect,
//! messages kept while reconnecting) is [`crate::session::Session`]'s: `read()` and `open()`
//! feed it and carry out its actions, with one timer armed for its next timeout. Locks are
//! taken in the order `proto`, then `session`, and neither is held while a handler runs.

mod connect;
mod driver;
mod driving;
pub(crate) mod ext;
mod head;
mod messages;
pub(crate) mod proxy;
pub(crate) mod rng;
mod tls;
mod upgrade;

pub(crate) use messages::Messages;
pub(crate) use upgrade::{read_request_timed, validate as validate_request, HANDSHAKE_TIMEOUT};

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use crate::handlers::Handlers;
use crate::protocol::deflate::{self, DeflateParams};
use crate::protocol::{CloseCode, Connection, ConnectionState, ProtocolError, Role};
use crate::session::{Action, Session, Time};
use crate::{
    CloseEvent, DeflateConfig, Error, Heartbeat, KeepAlive, Limits, MsgEvent, ReadyState,
    Reconnect, Result,
};

/// A byte stream a server socket can be upgraded over: natively any Tokio
/// `AsyncRead + AsyncWrite` (a `TcpStream`, a TLS stream, ...).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> unisock::Result<()> {
/// use unisock::{WebSocket, WebSocketExt};
/// // An in-memory pipe is a transport as well as a TcpStream is.
/// let (a, b) = tokio::io::duplex(4096);
/// let (server, client) = (WebSocket::new(), WebSocket::new());
/// let (up, open) = tokio::join!(server.upgrade(b), client.open_over(a, "ws://localhost/", &[]));
/// up?;
/// open?;
/// assert_eq!(server.ready_state(), unisock::ReadyState::Open);
/// # Ok(()) }
/// ```
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// A connection's stream, type-erased; it remembers how to split itself (see [`Io`]).
pub(crate) type BoxIo = Box<dyn Io>;

/// The read half of a connection's stream: a TCP stream's own half (no lock, no
/// allocation beyond the stream's), or Tokio's half of any other stream.
pub(crate) enum Reading {
    Tcp(tokio::net::tcp::OwnedReadHalf),
    Other(tokio::io::ReadHalf<Box<dyn Transport>>),
}

/// The write half of a connection's stream; see [`Reading`].
pub(crate) enum Writing {
    Tcp(tokio::net::tcp::OwnedWriteHalf),
    Other(tokio::io::WriteHalf<Box<dyn Transport>>),
}

impl AsyncRead for Reading {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(rd) => std::pin::Pin::new(rd).poll_read(cx, buf),
            Self::Other(rd) => std::pin::Pin::new(rd).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Writing {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(wr) => std::pin::Pin::new(wr).poll_write(cx, buf),
            Self::Other(wr) => std::pin::Pin::new(wr).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(wr) => std::pin::Pin::new(wr).poll_write_vectored(cx, bufs),
            Self::Other(wr) => std::pin::Pin::new(wr).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(wr) => wr.is_write_vectored(),
            Self::Other(wr) => wr.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(wr) => std::pin::Pin::new(wr).poll_flush(cx),
            Self::Other(wr) => std::pin::Pin::new(wr).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(wr) => std::pin::Pin::new(wr).poll_shutdown(cx),
            Self::Other(wr) => std::pin::Pin::new(wr).poll_shutdown(cx),
        }
    }
}

/// A [`Transport`] that splits into halves the read task and the writer task use at once.
pub(crate) trait Io: Transport {
    fn split_io(self: Box<Self>) -> (Reading, Writing);
}

impl<T: Transport> Io for T {
    fn split_io(self: Box<Self>) -> (Reading, Writing) {
        split(*self)
    }
}

/// Splits `stream`. A TCP stream splits into its own halves, which take no lock; any other
/// stream (TLS, a user's) is split by Tokio, whose halves share a lock taken on every read
/// and write (1.5% of an echo server's samples at one message in flight).
fn split<S: Transport>(stream: S) -> (Reading, Writing) {
    let mut slot = Some(stream);
    let tcp = (&mut slot as &mut dyn std::any::Any)
        .downcast_mut::<Option<tokio::net::TcpStream>>()
        .and_then(Option::take);
    match (tcp, slot) {
        (Some(tcp), _) => {
            let (rd, wr) = tcp.into_split();
            (Reading::Tcp(rd), Writing::Tcp(wr))
        }
        (None, Some(stream)) => {
            let boxed: Box<dyn Transport> = Box::new(stream);
            let (rd, wr) = tokio::io::split(boxed);
            (Reading::Other(rd), Writing::Other(wr))
        }
        // The TCP case took the stream, and was handled above.
        (None, None) => {
            let (rd, wr) = tokio::io::split(Box::new(tokio::io::empty()) as Box<dyn Transport>);
            (Reading::Other(rd), Writing::Other(wr))
        }
    }
}

/// The largest number of payload bytes that may wait in the send queue (64 MiB).
const DEFAULT_SEND_QUEUE_CAP: usize = 64 << 20;
/// How long a write may make no progress before the peer counts as no longer reading.
const DEFAULT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// permessage-deflate for a socket that was not configured: clients offer it (as
/// browsers do); servers accept it with the settings measured in the README
/// ("Compression"): see [`server_deflate_default`].
fn default_deflate(role: Role) -> DeflateConfig {
    match role {
        Role::Client => DeflateConfig::default(),
        Role::Server => server_deflate_default(),
    }
}

/// A server's permessage-deflate default. On, with the server's own context reset after
/// every message: the measurements in the README ("Compression") show it keeps most of
/// the bandwidth saving on JSON-like text while a connection keeps no compressor between
/// messages.
pub(crate) fn server_deflate_default() -> DeflateConfig {
    DeflateConfig::default().server_no_context_takeover(true)
}

/// permessage-deflate as agreed in a handshake: the parameters, our options, and the
/// `Sec-WebSocket-Extensions` answer (what `extensions()` reports).
#[derive(Debug, Clone)]
pub(crate) struct Negotiated {
    pub(crate) params: DeflateParams,
    pub(crate) config: DeflateConfig,
    pub(crate) answer: String,
}

/// The protocol state, shared by senders, the reader and the writer task. Never held across `.await`.
/// The send's fields first, beside the lock (see `Shared`).
#[repr(C)]
struct Proto {
    /// Set while a client reconnects: sends are kept by the session (if the policy has a
    /// buffer). A copy of the session's state, so a send takes one lock.
    reconnecting: bool,
    /// Steps of the memory budget the send queue holds beyond its own first 64 KiB.
    send_steps: u32,
    /// Payload bytes queued in `conn`'s output since the writer last took it.
    queued: usize,
    conn: Connection,
}

impl Proto {
    /// Charges the memory budget (if any) for a send queue of `bytes` (giving back what
    /// a shorter queue no longer needs).
    fn charge_send(&mut self, bytes: usize) -> Result<()> {
        let Some(budget) = self.conn.memory_budget() else {
            return Ok(());
        };
        let steps = crate::budget::steps_beyond_own(bytes);
        let held = self.send_steps as usize;
        if steps <= held {
            self.settle_send(bytes);
            return Ok(());
        }
        let Ok(total) = u32::try_from(steps) else {
            return Err(Error::OverBudget {
                limit: budget.limit(),
            });
        };
        if !budget.try_charge((steps - held) * crate::budget::STEP) {
            return Err(Error::OverBudget {
                limit: budget.limit(),
            });
        }
        self.send_steps = total;
        Ok(())
    }

    /// Gives back what a send queue now `bytes` long no longer needs.
    fn settle_send(&mut self, bytes: usize) {
        let keep = crate::budget::steps_beyond_own(bytes);
        let held = self.send_steps as usize;
        if held > keep {
            if let Some(budget) = self.conn.memory_budget() {
                budget.release((held - keep) * crate::budget::STEP);
            }
            self.send_steps = u32::try_from(keep).unwrap_or(u32::MAX);
        }
    }
}

impl Drop for Proto {
    fn drop(&mut self) {
        self.settle_send(0);
    }
}

impl Proto {
    fn new(conn: Connection) -> Self {
        Self {
            conn,
            queued: 0,
            reconnecting: false,
            send_steps: 0,
        }
    }
}

/// The session's clock: the time since the first use, on Tokio's clock (which tests may pause).
pub(crate) fn now() -> Time {
    origin().elapsed()
}

/// The Tokio instant of session time `t`.
pub(crate) fn instant(t: Time) -> tokio::time::Instant {
    origin() + t
}

fn origin() -> tokio::time::Instant {
    static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(tokio::time::Instant::now)
}

/// What `send_with` queues.
pub(crate) enum Outgoing<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    /// A message handed over (`WebSocket::send`): big payloads are not copied.
    Message(MsgEvent),
    Ping(&'a [u8]),
}

impl Outgoing<'_> {
    /// The payload bytes that count towards `buffered_amount` (none for a ping).
    fn len(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Binary(data) => data.len(),
            Self::Message(MsgEvent::Text(text)) => text.len(),
            Self::Message(MsgEvent::Binary(data)) => data.len(),
            Self::Ping(_) => 0,
        }
    }

    fn is_control(&self) -> bool {
        matches!(self, Self::Ping(_))
    }

    /// The message kept for the next connection while reconnecting: (text?, payload).
    fn into_kept(self) -> MsgEvent {
        match self {
            Self::Text(text) => MsgEvent::Text(text.to_string()),
            Self::Binary(data) | Self::Ping(data) => MsgEvent::Binary(data.to_vec()),
            Self::Message(msg) => msg,
        }
    }

    fn encode(self, conn: &mut Connection) -> std::result::Result<(), ProtocolError> {
        match self {
            Self::Text(text) => conn.send_text(text),
            Self::Binary(data) => conn.send_binary(data),
            Self::Message(msg) => conn.send_message(msg),
            Self::Ping(data) => conn.send_ping(data),
        }
    }
}

/// The read half of the current connection, held by its driver.
struct Reader {
    rd: Reading,
    /// The write half, shared with the writer task: the read task writes what its events
    /// queued straight away when the writer task is idle (`driver::write_through`).
    wr: SharedWriter,
    leftover: Vec<u8>,
}

/// The write half of a connection: held by whoever is writing, so bytes leave the
/// connection's output in order.
type SharedWriter = Arc<Mutex<Option<Writing>>>;

/// Fixed before the socket opens: what the facade and `WebSocketExt` set.
#[derive(Clone)]
struct Config {
    limits: Limits,
    /// How long a client may take to send its upgrade request.
    handshake_timeout: std::time::Duration,
    /// A write that makes no progress for this long means the peer stopped reading.
    write_timeout: Option<std::time::Duration>,
    allowed_origins: Option<Vec<String>>,
    /// permessage-deflate options; `None` uses the role's default.
    deflate: Option<DeflateConfig>,
    /// A client's settings: boxed, since most sockets are a server's.
    client: Option<Box<ClientConfig>>,
    /// Shared with other sockets for incoming messages.
    memory_budget: Option<crate::MemoryBudget>,
}

/// The settings of every socket that changes none.
static DEFAULT_CONFIG: Config = Config {
    limits: Limits::DEFAULT,
    handshake_timeout: upgrade::HANDSHAKE_TIMEOUT,
    write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
    allowed_origins: None,
    deflate: None,
    client: None,
    memory_budget: None,
};

/// A socket's `Config`: the defaults, shared, until the socket changes one. Most sockets
/// change none, and every socket keeps its settings for life.
#[derive(Default)]
struct OwnConfig(Option<Box<Config>>);

impl std::ops::Deref for OwnConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        self.0.as_deref().unwrap_or(&DEFAULT_CONFIG)
    }
}

impl std::ops::DerefMut for OwnConfig {
    fn deref_mut(&mut self) -> &mut Config {
        self.0
            .get_or_insert_with(|| Box::new(DEFAULT_CONFIG.clone()))
    }
}

impl Config {
    /// The client settings, made on first use.
    fn client(&mut self) -> &mut ClientConfig {
        self.client.get_or_insert_with(Box::default)
    }
}

/// What only a client uses, fixed before `open`.
#[derive(Default, Clone)]
struct ClientConfig {
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// The subprotocols `open` offered, offered again on reconnect.
    protocols: Vec<String>,
    /// Headers added to every opening handshake.
    request_headers: Option<http::HeaderMap>,
    /// How many redirects `open` follows (none by default).
    max_redirects: u8,
    /// The proxy (from the environment by default).
    proxy: proxy::Choice,
}

/// What the current connection agreed, and the halves and task that run it.
#[derive(Default)]
struct Link {
    url: Option<String>,
    protocol: String,
    /// The negotiated extensions (the server's `Sec-WebSocket-Extensions` answer).
    extensions: String,
    /// A client's: the headers of the 101 response (boxed: most sockets are servers').
    response_headers: Option<Box<http::HeaderMap>>,
    /// The current connection's write half, for the writer tasks it needs.
    half: Option<SharedWriter>,
    /// Where writer tasks run: the runtime the connection was made on.
    runtime: Option<tokio::runtime::Handle>,
    /// The writer task, while one runs (it removes itself when it ends idle).
    writer: Option<tokio::task::JoinHandle<()>>,
}

/// The hand-off between the read task and the writer task of a connection; the rules are
/// the table in `driver`'s module docs. What the read loop looks at every round comes last,
/// next to the fields of `Shared` every message touches (see `Shared`).
#[derive(Default)]
#[repr(C)]
struct Handoff {
    /// Notified after a write, when `flushing` says someone waits for it.
    written: Notify,
    wake_reader: Signal,
    /// How many `flush` calls wait for `written`: without any, a write notifies no one
    /// (a notification takes a lock).
    flushing: AtomicUsize,
    /// Set when the read loop has ended: the writer flushes what is left and stops.
    reader_done: AtomicBool,
    /// Set when the writer task has ended.
    writer_done: AtomicBool,
    /// Set by the writer when `write_timeout` expired.
    write_stalled: AtomicBool,
    /// The read task wrote bytes it could not flush (TLS): the writer task flushes them.
    unflushed: AtomicBool,
    /// The read task is handling events and writes what they queue right after
    /// (`driver::write_through`): sends need not wake the writer task meanwhile.
    dispatching: AtomicBool,
    /// A writer task runs, or is being started (`driver::wake_writer`).
    writer_running: AtomicBool,
    /// Output waits for a writer task (or the connection ends): a running one looks again
    /// before it ends.
    writer_wanted: AtomicBool,
}

/// A wake-up for the one task that reads (the caller of `read()`): a raised flag and that
/// task's waker. A `Notify` locks its waiter list each time it is polled while waiting, and
/// the read loop polls it every round; this takes an atomic swap, and a lock only when the
/// waker changes.
#[derive(Default)]
#[repr(C)]
pub(crate) struct Signal {
    waker: Mutex<Option<std::task::Waker>>,
    /// Last: the read loop looks at it every round (see `Handoff`).
    raised: AtomicBool,
}

impl Signal {
    /// Raises the flag and wakes the reader; a raise with no one waiting is kept.
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        if let Some(waker) = lock(&self.waker).as_ref() {
            waker.wake_by_ref();
        }
    }

    /// Ready once the flag was raised (taking it down); `stored` is the waker this poller
    /// stored last, so an unchanged one is not stored again.
    pub(crate) fn poll(
        &self,
        cx: &mut std::task::Context<'_>,
        stored: &mut Option<std::task::Waker>,
    ) -> std::task::Poll<()> {
        let same = stored.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if !same {
            *stored = Some(cx.waker().clone());
        }
        self.poll_stored(cx, same)
    }

    /// As [`Signal::poll`], for a poller that keeps track of its waker itself: `same` says
    /// the signal holds `cx`'s waker already (from this poller's last poll).
    pub(crate) fn poll_stored(
        &self,
        cx: &mut std::task::Context<'_>,
        same: bool,
    ) -> std::task::Poll<()> {
        // Looked at first: most polls find it down, and a load takes no write.
        if self.raised.load(Ordering::Relaxed) && self.raised.swap(false, Ordering::SeqCst) {
            return std::task::Poll::Ready(());
        }
        if !same {
            *lock(&self.waker) = Some(cx.waker().clone());
            // A raise between the swap above and the store woke the old waker: look again.
            if self.raised.swap(false, Ordering::SeqCst) {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    }

    /// Waits for a raise.
    pub(crate) async fn raised(&self) {
        let mut stored = None;
        std::future::poll_fn(|cx| self.poll(cx, &mut stored)).await;
    }
}

/// A `flush` or `send_async` waiting for `Handoff::written`, counted in `flushing` until dropped.
struct Flushing<'a>(&'a AtomicUsize);

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The end of the socket: how it closed, and where messages go until then.
#[derive(Default)]
struct Ending {
    /// The close event, once closed for good; `closed` waits for it on `driving`.
    close_event: Option<CloseEvent>,
    /// Where messages go while a handle is used as a `Stream`.
    stream_tx: Option<messages::StreamTx>,
    /// Messages a dropped stream had received but not yielded: delivered first, to the
    /// next stream or by the event loop (`driver::Routes`). Boxed: rarely any.
    #[allow(
        clippy::box_collection,
        reason = "one pointer in every socket, instead of an empty queue's four words"
    )]
    untaken: Option<Box<std::collections::VecDeque<MsgEvent>>>,
}

/// A socket's state, grouped by lifetime: settings fixed before open, the lifecycle, the
/// current connection, the task hand-off, and what handles read without a lock.
#[repr(C)]
pub(crate) struct Shared {
    // The fields every message touches are together, in this order (the hand-off's are at
    // its end, the protocol core's at its start), so that they share a few cache lines:
    // with many connections, each message's first touch of a line of its socket misses
    // the cache.
    handoff: Handoff,
    /// Bumped when the message handler or the stream sender changes, so the read loop can
    /// keep its own copies (`driver::Routes`) instead of locking for them per message.
    routes: AtomicU64,
    /// `buffered_amount`: read by anyone, changed only under the lock of `proto`.
    buffered: AtomicUsize,
    send_cap: AtomicUsize,
    /// Read by handles without a lock.
    state: AtomicU8,
    /// The protocol state of the current connection.
    proto: Mutex<Option<Proto>>,
    handlers: Mutex<Handlers>,
    id: String,
    config: Mutex<OwnConfig>,
    /// The lifecycle: timeouts, keep-alive, heartbeat, reconnect, the unsent queue.
    session: Mutex<Session>,
    link: Mutex<Link>,
    /// The event loop, and who runs it.
    driving: driving::Driving,
    ending: Mutex<Ending>,
}

/// Locks a mutex, ignoring poisoning: handlers run outside every lock, so a poisoned lock
/// can only come from a panic inside this crate's short critical sections.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The native socket: a cheap handle to the shared state.
#[derive(Clone)]
pub(crate) struct Socket(Arc<Shared>);

impl Socket {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Shared {
            id: crate::socket::next_id(crate::backplane::node_id()),
            config: Mutex::new(OwnConfig::default()),
            session: Mutex::new(Session::new(&crate::session::NATIVE, rng::unit_f64)),
            proto: Mutex::new(None),
            link: Mutex::new(Link::default()),
            driving: driving::Driving::default(),
            handoff: Handoff::default(),
            handlers: Mutex::new(Handlers::default()),
            routes: AtomicU64::new(0),
            ending: Mutex::new(Ending::default()),
            state: AtomicU8::new(ReadyState::Connecting as u8),
            buffered: AtomicUsize::new(0),
            send_cap: AtomicUsize::new(DEFAULT_SEND_QUEUE_CAP),
        }))
    }

    pub(crate) fn id(&self) -> &str {
        &self.0.id
    }

    pub(crate) fn url(&self) -> Option<String> {
        lock(&self.0.link).url.clone()
    }

    pub(crate) fn ready_state(&self) -> ReadyState {
        ReadyState::from_u16(u16::from(self.0.state.load(Ordering::Acquire)))
            .unwrap_or(ReadyState::Closed)
    }

    fn set_state(&self, state: ReadyState) {
        self.0.state.store(state as u8, Ordering::Release);
    }

    pub(crate) fn buffered_amount(&self) -> usize {
        self.0.buffered.load(Ordering::Acquire)
    }

    pub(crate) fn protocol(&self) -> String {
        lock(&self.0.link).protocol.clone()
    }

    pub(crate) fn extensions(&self) -> String {
        lock(&self.0.link).extensions.clone()
    }

    pub(crate) fn set_deflate(&self, config: Option<DeflateConfig>) {
        lock(&self.0.config).deflate = config;
    }

    /// The socket's own permessage-deflate options, if it was given some.
    pub(crate) fn deflate_config(&self) -> Option<DeflateConfig> {
        lock(&self.0.config).deflate
    }

    /// Server side: answers the request's permessage-deflate offers with `config` (the
    /// socket's own, else the server default).
    pub(crate) fn negotiate_deflate(
        &self,
        request: &http::Request<()>,
        config: Option<DeflateConfig>,
    ) -> Option<Negotiated> {
        let config = config
            .or_else(|| self.deflate_config())
            .unwrap_or_else(|| default_deflate(Role::Server));
        let offers: Vec<&str> = request
            .headers()
            .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        deflate::negotiate(&offers, &config).map(|(params, answer)| Negotiated {
            params,
            config,
            answer,
        })
    }

    pub(crate) fn set_allowed_origins(&self, origins: Option<Vec<String>>) {
        lock(&self.0.config).allowed_origins = origins;
    }

    pub(crate) fn allowed_origins(&self) -> Option<Vec<String>> {
        lock(&self.0.config).allowed_origins.clone()
    }

    /// The socket's handlers, to set one.
    pub(crate) fn handlers(&self) -> MutexGuard<'_, Handlers> {
        let handlers = lock(&self.0.handlers);
        self.0.routes.fetch_add(1, Ordering::AcqRel);
        handlers
    }

    pub(crate) fn set_reconnect(&self, policy: Option<Reconnect>) {
        lock(&self.0.session).settings_mut().reconnect = policy.map(Box::new);
    }

    pub(crate) fn set_heartbeat(&self, heartbeat: Option<Heartbeat>) {
        lock(&self.0.session).settings_mut().heartbeat = heartbeat.map(Box::new);
    }

    pub(crate) fn set_open_timeout(&self, timeout: Option<std::time::Duration>) {
        lock(&self.0.session).settings_mut().open_timeout = timeout;
    }

    pub(crate) fn set_message_timeout(&self, timeout: Option<std::time::Duration>) {
        lock(&self.0.session).settings_mut().message_timeout = timeout;
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<std::time::Duration>) {
        lock(&self.0.session).settings_mut().read_timeout = timeout;
    }

    pub(crate) fn set_keepalive(&self, keepalive: Option<KeepAlive>) {
        lock(&self.0.session).settings_mut().keepalive = Some(keepalive);
    }

    pub(crate) async fn open(&self, url: url::Url, protocols: &[&str]) -> Result<()> {
        self.open_with(url, protocols, None).await
    }

    /// `open` over a stream the caller connected. Such a socket does not reconnect: its
    /// reconnect policy is cleared, as only the caller could connect another stream.
    pub(crate) async fn open_over(
        &self,
        stream: BoxIo,
        url: url::Url,
        protocols: &[&str],
    ) -> Result<()> {
        self.check_unconnected()?;
        lock(&self.0.session).settings_mut().reconnect = None;
        self.open_with(url, protocols, Some(stream)).await
    }

    /// Opens over `stream`, or over a connection to `url` when `None`.
    async fn open_with(
        &self,
        url: url::Url,
        protocols: &[&str],
        stream: Option<BoxIo>,
    ) -> Result<()> {
        self.check_unconnected()?;
        lock(&self.0.config).client().protocols =
            protocols.iter().map(|p| (*p).to_string()).collect();
        lock(&self.0.session).open_started(now());
        // Boxed, as every one-time handshake step: the connection's task keeps the size of
        // its largest future for its whole life, and the handshake's is the largest.
        let connected = Box::pin(self.connect_within(&url, protocols, stream)).await;
        let connected = match connected {
            Some(Ok(connected)) => connected,
            Some(Err(e)) => {
                lock(&self.0.session).open_failed();
                return Err(e);
            }
            // The session ended the attempt: its open timeout, or a local close.
            None => {
                let action = {
                    let mut session = lock(&self.0.session);
                    let action = session.poll_action();
                    session.open_failed();
                    action
                };
                return Err(match action {
                    Some(Action::Drop { error: Some(e), .. }) => e,
                    Some(Action::Closed { event, error }) => {
                        driver::finish(self, event, error);
                        Error::Closed
                    }
                    _ => Error::Closed,
                });
            }
        };
        let driver = self.install(
            connected.stream,
            connected.leftover,
            Role::Client,
            url.to_string(),
            connected.protocol,
            connected.deflate,
        );
        lock(&self.0.link).response_headers = Some(Box::new(connected.headers));
        // Before any message can be dispatched: the event loop is not out yet.
        self.fire_opened();
        self.0.driving.park(driver);
        Ok(())
    }

    /// Calls `on_open` for a connection `open()` just made, unless the session has no
    /// `Opened` waiting. A panic in it closes the connection with 1011, as one in the loop does.
    fn fire_opened(&self) {
        if !lock(&self.0.session).take_opened() {
            return;
        }
        let Some(h) = lock(&self.0.handlers).on_open.clone() else {
            return;
        };
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(()))) {
            driver::close_after_panic(self, &driver::panic_message(panic.as_ref()));
        }
    }

    /// `open`/`upgrade` work once per socket.
    pub(crate) fn check_unconnected(&self) -> Result<()> {
        if self.ready_state() != ReadyState::Connecting || lock(&self.0.proto).is_some() {
            return Err(Error::AlreadyConnected);
        }
        Ok(())
    }

    pub(crate) async fn upgrade<S: Transport>(&self, stream: S) -> Result<()> {
        use crate::WebSocketExt;
        let ws = crate::WebSocket::from_backend(self.clone());
        // Boxed: see `open`.
        let pending = Box::pin(ws.upgrade_pending(stream)).await?;
        Box::pin(pending.commit()).await?;
        Ok(())
    }

    /// Starts a server socket whose 101 answered `request`: installs the protocol state
    /// and leaves the event loop for the first handle that drives the socket (`on_open` is
    /// the loop's first event).
    pub(crate) fn attach_server(
        &self,
        stream: BoxIo,
        leftover: Vec<u8>,
        request: &http::Request<()>,
        agreed: (Option<String>, Option<Negotiated>),
    ) {
        let (protocol, deflate) = agreed;
        let url = request.uri().to_string();
        let driver = self.install(stream, leftover, Role::Server, url, protocol, deflate);
        self.0.driving.park(driver);
    }

    /// Installs a connection whose handshake is done and returns its event loop.
    fn install(
        &self,
        stream: BoxIo,
        leftover: Vec<u8>,
        role: Role,
        url: String,
        protocol: Option<String>,
        deflate: Option<Negotiated>,
    ) -> driving::Driver {
        let mut conn = self.new_connection(role);
        if role == Role::Client {
            conn.set_mask_source(Box::new(rng::mask_key));
        }
        if let Some(negotiated) = deflate {
            conn.set_deflate(&negotiated.params, &negotiated.config);
            lock(&self.0.link).extensions = negotiated.answer;
        }
        *lock(&self.0.proto) = Some(Proto::new(conn));
        let (rd, wr) = stream.split_io();
        let wr = Arc::new(Mutex::new(Some(wr)));
        {
            let mut link = lock(&self.0.link);
            link.url = Some(url);
            link.protocol = protocol.unwrap_or_default();
            link.half = Some(wr.clone());
            link.runtime = tokio::runtime::Handle::try_current().ok();
        }
        let reader = Reader {
            rd,
            wr: wr.clone(),
            leftover,
        };
        // Nothing waits on a first connection: the session's kept messages are empty.
        let _ = lock(&self.0.session).transport_opened(now(), role);
        self.set_state(ReadyState::Open);
        // No writer task yet: one starts when output waits for it (`driver::wake_writer`).
        Box::pin(self.clone().run(reader))
    }

    /// The event loop of the socket's connections, from the first until it closed for good.
    ///
    /// Not an `async fn`: that would keep a second copy of its arguments for the loop's
    /// life, and every connection keeps this future.
    fn run(self, reader: Reader) -> impl std::future::Future<Output = ()> + Send {
        let mut reader = Some(reader);
        async move {
            while let Some(current) = reader.as_mut() {
                // The read loop's copies of the message routes go with it.
                let (close, error) = driver::read_loop(&self, current).await.into_outcome();
                // The halves go with the connection.
                drop(reader.take());
                // The connection is over, however it ended (a vanished peer leaves the protocol
                // core open): later sends fail with `Closed` instead of queueing for no one.
                if let Some(p) = lock(&self.0.proto).as_mut() {
                    if p.conn.state() == ConnectionState::Open {
                        p.conn.abort();
                    }
                }
                let close = close.unwrap_or_else(|| crate::session::abnormal(driver::ABNORMAL));
                let reconnecting = {
                    let mut session = lock(&self.0.session);
                    session.transport_closed(now(), close, error);
                    session.is_reconnecting()
                };
                if reconnecting {
                    self.lost().await;
                }
                // Boxed: the reconnecting future (the TCP and TLS connect, the handshake) is
                // several times the size of the read loop's, and an unboxed one would be part
                // of every connection's read task from the start, reconnecting or not.
                match Box::pin(self.between_connections()).await {
                    Some(next) => reader = Some(next),
                    None => return,
                }
            }
        }
    }

    /// The connection was lost and a reconnect follows: sends from now on are kept by the
    /// session, and the old writer goes, with what it held.
    async fn lost(&self) {
        if let Some(p) = lock(&self.0.proto).as_mut() {
            p.reconnecting = true;
        }
        self.set_state(ReadyState::Connecting);
        let writer = {
            let mut link = lock(&self.0.link);
            // No writer task starts for the lost connection any more.
            link.half = None;
            link.writer.take()
        };
        if let Some(writer) = writer {
            writer.abort();
            let _ = writer.await;
        }
        // What the lost connection held is lost with it; what waits is the session's.
        let unsent = lock(&self.0.session).unsent_bytes();
        // Under the core's lock, as every change of `buffered` (see `queue`).
        let proto = lock(&self.0.proto);
        self.0.buffered.store(unsent, Ordering::Release);
        drop(proto);
        self.0.handoff.written.notify_waiters();
    }

    /// Carries out the session's actions between two connections (reconnect waits and
    /// attempts): the next connection's reader, or `None` once the socket closed for good.
    async fn between_connections(&self) -> Option<Reader> {
        loop {
            let action = lock(&self.0.session).poll_action();
            match action {
                Some(Action::Reconnecting { attempt, delay }) => {
                    let handler = lock(&self.0.handlers).on_reconnecting.clone();
                    if let Some(h) = handler {
                        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            h((attempt, delay));
                        }));
                        if ran.is_err() {
                            tracing::warn!(id = %self.0.id, "Err in on_reconnecting() handler");
                        }
                    }
                }
                Some(Action::Connect { attempt }) => {
                    let url = lock(&self.0.link)
                        .url
                        .as_deref()
                        .and_then(|u| url::Url::parse(u).ok());
                    let Some(url) = url else {
                        let e = Error::InvalidUrl {
                            url: "".into(),
                            reason: "the socket has no URL to reconnect to".into(),
                        };
                        lock(&self.0.session).attempt_failed(now(), e);
                        continue;
                    };
                    let protocols = lock(&self.0.config).client().protocols.clone();
                    let protocols: Vec<&str> = protocols.iter().map(String::as_str).collect();
                    match self.connect_within(&url, &protocols, None).await {
                        Some(Ok(connected)) => return Some(self.reattach(connected)),
                        Some(Err(e)) => {
                            tracing::debug!(id = %self.0.id, "reconnect attempt {attempt}: {e}");
                            lock(&self.0.session).attempt_failed(now(), e);
                        }
                        // The session ended the attempt (its open timeout, or a local
                        // close): its next action says how.
                        None => {}
                    }
                }
                Some(Action::Drop { event, error, .. }) => {
                    lock(&self.0.session).transport_closed(now(), event, error);
                }
                Some(Action::Closed { event, error }) => {
                    driver::finish(self, event, error);
                    return None;
                }
                // Only an open connection is probed or opened.
                Some(Action::Opened | Action::Probe(_)) => {}
                None => self.wait_for_session().await,
            }
        }
    }

    /// Connects to `url` (TCP, TLS, the opening handshake), or shakes hands over `stream`;
    /// `None` when the session ends the attempt first (its open timeout, or a local
    /// close), leaving its actions to say how.
    async fn connect_within(
        &self,
        url: &url::Url,
        protocols: &[&str],
        stream: Option<BoxIo>,
    ) -> Option<Result<connect::Connected>> {
        let options = {
            let mut config = lock(&self.0.config);
            let deflate = config
                .deflate
                .unwrap_or_else(|| default_deflate(Role::Client));
            let client = config.client();
            connect::Options {
                tls: client.tls.clone(),
                deflate,
                headers: client.request_headers.clone().map(Box::new),
                max_redirects: client.max_redirects,
                proxy: client.proxy.clone(),
            }
        };
        let mut connecting = std::pin::pin!(async {
            match stream {
                Some(stream) => connect::handshake(stream, url, protocols, options).await,
                None => connect::connect(url, protocols, options).await,
            }
        });
        loop {
            tokio::select! {
                connected = &mut connecting => return Some(connected),
                () = self.wait_for_session() => {
                    if lock(&self.0.session).has_actions() {
                        return None;
                    }
                }
            }
        }
    }

    /// Waits for the session's next timeout (and handles it) or for a local close.
    async fn wait_for_session(&self) {
        let woken = self.0.handoff.wake_reader.raised();
        let due = lock(&self.0.session).poll_timeout();
        tokio::select! {
            () = woken => {}
            () = async {
                match due {
                    Some(due) => tokio::time::sleep_until(instant(due)).await,
                    None => std::future::pending().await,
                }
            } => lock(&self.0.session).handle_timeout(now()),
        }
    }

    /// A protocol core with the socket's limits and memory budget.
    fn new_connection(&self, role: Role) -> Connection {
        let config = lock(&self.0.config);
        let mut conn = Connection::new(role, config.limits);
        conn.set_memory_budget(config.memory_budget.clone());
        conn
    }

    /// Installs a reconnected stream: a new protocol state that first sends what waited.
    fn reattach(&self, connected: connect::Connected) -> Reader {
        let mut conn = self.new_connection(Role::Client);
        conn.set_mask_source(Box::new(rng::mask_key));
        // What the new connection negotiated (the server may answer differently now).
        lock(&self.0.link).extensions = match &connected.deflate {
            Some(negotiated) => {
                conn.set_deflate(&negotiated.params, &negotiated.config);
                negotiated.answer.clone()
            }
            None => String::new(),
        };
        let mut guard = lock(&self.0.proto);
        let unsent = lock(&self.0.session).transport_opened(now(), Role::Client);
        let mut queued = 0;
        for msg in unsent {
            let len = msg.len();
            if conn.send_message(msg).is_ok() {
                queued += len;
            }
        }
        let mut proto = Proto::new(conn);
        proto.queued = queued;
        *guard = Some(proto);
        drop(guard);
        self.0.handoff.reader_done.store(false, Ordering::Release);
        self.0.handoff.writer_done.store(false, Ordering::Release);
        self.0.handoff.write_stalled.store(false, Ordering::Release);
        // The lost connection's writer task, if one ran, was aborted (`lost`).
        self.0.handoff.writer_running.store(false, Ordering::SeqCst);
        let (rd, wr) = connected.stream.split_io();
        let wr = Arc::new(Mutex::new(Some(wr)));
        {
            let mut link = lock(&self.0.link);
            link.protocol = connected.protocol.unwrap_or_default();
            link.response_headers = Some(Box::new(connected.headers));
            link.half = Some(wr.clone());
            link.runtime = tokio::runtime::Handle::try_current().ok();
        }
        self.set_state(ReadyState::Open);
        // The messages kept while disconnected.
        driver::wake_writer(self);
        Reader {
            rd,
            wr,
            leftover: connected.leftover,
        }
    }

    /// The keep-alive in effect: the one set, else the default of the role (once known).
    pub(crate) fn keepalive(&self) -> Option<KeepAlive> {
        let role = lock(&self.0.proto).as_ref().map(|p| p.conn.role());
        let session = lock(&self.0.session);
        match role {
            Some(role) => session.settings().keepalive_for(role),
            None => session.settings().keepalive.flatten(),
        }
    }

    pub(crate) async fn flush(&self) -> Result<()> {
        if lock(&self.0.proto).is_none() {
            return Err(Error::NotOpen);
        }
        // SeqCst with the writers' `buffered` update and load of `flushing`: either a write
        // sees this waiter and notifies, or this sees what the write left.
        self.0.handoff.flushing.fetch_add(1, Ordering::SeqCst);
        let _flushing = Flushing(&self.0.handoff.flushing);
        loop {
            let written = self.0.handoff.written.notified();
            if self.0.buffered.load(Ordering::SeqCst) == 0 {
                return Ok(());
            }
            if self.0.handoff.reader_done.load(Ordering::Acquire)
                && self.0.handoff.writer_done.load(Ordering::Acquire)
            {
                return Err(Error::Closed);
            }
            written.await;
        }
    }

    /// The user dropped every handle: no one can read or send any more. Close the
    /// connection (going away) after what is queued, and let the writer end it.
    pub(crate) fn release(&self) {
        let _ = self.close(CloseCode::GOING_AWAY, "");
        // No one can drive it any more; dropping it also ends its hold on this socket.
        drop(self.0.driving.take());
        self.0.handoff.reader_done.store(true, Ordering::Release);
        driver::wake_writer(self);
    }

    /// Routes this socket's messages into a new stream (replacing an earlier one).
    pub(crate) fn subscribe(&self) -> Messages {
        let (messages, tx) = Messages::new(self.clone());
        let mut ending = lock(&self.0.ending);
        for msg in ending
            .untaken
            .take()
            .into_iter()
            .flat_map(|untaken| *untaken)
        {
            let _ = tx.send(msg);
        }
        if ending.close_event.is_none() {
            ending.stream_tx = Some(tx);
            self.0.routes.fetch_add(1, Ordering::AcqRel);
        }
        drop(ending);
        messages
    }

    /// Queues one message (or a ping).
    pub(crate) fn send_with(&self, outgoing: Outgoing<'_>) -> Result<()> {
        self.queue(outgoing, false).map(drop)
    }

    /// Queues `msg` if the send queue has room for it now, else hands it back (`Ok(Some)`)
    /// to wait for room; a message the queue can never take fails with `Capacity`.
    pub(crate) fn send_or_keep(&self, msg: MsgEvent) -> Result<Option<MsgEvent>> {
        Ok(match self.queue(Outgoing::Message(msg), true)? {
            Some(Outgoing::Message(msg)) => Some(msg),
            _ => None,
        })
    }

    /// Queues `msg` once the send queue has room for it: woken by the writes that empty
    /// the queue (`written`, as `flush` is), so no lock is taken per message.
    pub(crate) async fn send_async(&self, msg: MsgEvent) -> Result<()> {
        let Some(mut msg) = self.send_or_keep(msg)? else {
            return Ok(());
        };
        // SeqCst: see `flush`; a write after this notifies `written`.
        self.0.handoff.flushing.fetch_add(1, Ordering::SeqCst);
        let _waiting = Flushing(&self.0.handoff.flushing);
        loop {
            let written = self.0.handoff.written.notified();
            match self.send_or_keep(msg)? {
                None => return Ok(()),
                Some(back) => msg = back,
            }
            if self.ready_state() == ReadyState::Closed
                || (self.0.handoff.reader_done.load(Ordering::Acquire)
                    && self.0.handoff.writer_done.load(Ordering::Acquire))
            {
                return Err(Error::Closed);
            }
            written.await;
        }
    }

    /// Queues `outgoing`; when `wait` and the queue is too full for it now (but not for
    /// ever), hands it back instead of failing with `Capacity`.
    fn queue<'a>(&self, outgoing: Outgoing<'a>, wait: bool) -> Result<Option<Outgoing<'a>>> {
        let len = outgoing.len();
        let mut guard = lock(&self.0.proto);
        let Some(proto) = guard.as_mut() else {
            return Err(self.unconnected());
        };
        if proto.reconnecting {
            // Disconnected: the session keeps the message for the next connection.
            if outgoing.is_control() {
                return Err(Error::NotOpen);
            }
            let mut session = lock(&self.0.session);
            if wait && session.must_wait_to_keep(len) {
                return Ok(Some(outgoing));
            }
            session.keep(outgoing.into_kept())?;
            self.0.buffered.fetch_add(len, Ordering::AcqRel);
            return Ok(None);
        }
        if proto.conn.state() != ConnectionState::Open {
            return Err(Error::Closed);
        }
        // SeqCst: a waiting `send_async` reads it after counting itself in `flushing`.
        let buffered = self.0.buffered.load(Ordering::SeqCst);
        let cap = self.0.send_cap.load(Ordering::Acquire);
        if buffered.saturating_add(len) > cap {
            if wait && len <= cap {
                return Ok(Some(outgoing));
            }
            return Err(Error::Capacity { buffered, cap });
        }
        proto.charge_send(buffered.saturating_add(len))?;
        outgoing.encode(&mut proto.conn)?;
        proto.queued += len;
        // Every change of `buffered` holds this lock (the writes' `release_buffered`), so a
        // store adds to it: no locked instruction per message.
        self.0.buffered.store(buffered + len, Ordering::Release);
        drop(guard);
        if !self.0.handoff.dispatching.load(Ordering::Acquire) {
            driver::wake_writer(self);
        }
        Ok(None)
    }

    pub(crate) fn send_text(&self, text: &str) -> Result<()> {
        self.send_with(Outgoing::Text(text))
    }

    pub(crate) fn send_binary(&self, data: &[u8]) -> Result<()> {
        self.send_with(Outgoing::Binary(data))
    }

    pub(crate) fn send(&self, msg: MsgEvent) -> Result<()> {
        self.send_with(Outgoing::Message(msg))
    }

    /// Why a socket without a connection refuses to send: never opened, or closed (by a
    /// `close()` while it was connecting).
    fn unconnected(&self) -> Error {
        if self.ready_state() == ReadyState::Closed {
            Error::Closed
        } else {
            Error::NotOpen
        }
    }

    /// Sends a close frame unless one was already sent or the connection ended; a no-op then.
    /// While `open()` connects, aborts it (as a browser does): `open()` fails with `Closed`.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        let mut guard = lock(&self.0.proto);
        let Some(proto) = guard.as_mut() else {
            drop(guard);
            if self.ready_state() == ReadyState::Closed {
                return Ok(());
            }
            if !lock(&self.0.session).is_opening() {
                return Err(Error::NotOpen);
            }
            lock(&self.0.session).local_close(now());
            self.0.handoff.wake_reader.raise();
            return Ok(());
        };
        lock(&self.0.session).local_close(now());
        if proto.reconnecting {
            drop(guard);
            self.0.handoff.wake_reader.raise();
            return Ok(());
        }
        if proto.conn.state() != ConnectionState::Open {
            return Ok(());
        }
        proto.conn.send_close(Some(code), reason)?;
        drop(guard);
        if self.ready_state() < ReadyState::Closing {
            self.set_state(ReadyState::Closing);
        }
        // A `send_async` waiting for room would wait for writes: it fails with `Closed` now.
        if self.0.handoff.flushing.load(Ordering::SeqCst) > 0 {
            self.0.handoff.written.notify_waiters();
        }
        driver::wake_writer(self);
        self.0.handoff.wake_reader.raise();
        Ok(())
    }
}

/// Natively, handles cross tasks and threads.
#[allow(dead_code, reason = "a compile-time check only")]
fn _assert_impls() {
    fn send_sync<T: Send + Sync + Clone + 'static>() {}
    send_sync::<crate::WebSocket>();
    send_sync::<crate::WebSockets>();
}
#[cfg(test)]
mod tests {
    /// Every socket keeps its state for life, so idle memory grows with it: what only some
    /// sockets use (a reconnect policy, a heartbeat, the unsent queue) is boxed, and the
    /// default settings are shared until a socket changes one.
    #[test]
    fn the_socket_state_stays_small() {
        let size = std::mem::size_of::<super::Shared>();
        assert!(size <= 1050, "Shared is {size} bytes");
        let session = std::mem::size_of::<crate::session::Session>();
        assert!(session <= 160, "Session is {session} bytes");
    }
}
