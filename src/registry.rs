//! [`WebSockets`]: the registry of live server sockets (the original's service): look
//! sockets up by id, broadcast, and shut them all down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

use crate::backplane::{Backplane, BackplaneEvent, Envelope, Subscription};
use crate::server::PendingUpgrade;
use crate::{DeflateConfig, Error, MsgEvent, Result, Transport, WebSocket, WebSocketExt};

type UpgradeHook = Arc<dyn Fn(&mut PendingUpgrade) + Send + Sync>;
type ErrorHook = Arc<dyn Fn(&Error) + Send + Sync>;

/// How many envelopes may wait for the backplane; beyond, publishing drops and counts.
const PUBLISH_QUEUE: usize = 16 * 1024;
/// How many bytes of envelopes ([`Envelope::queued_size`]) may wait for the backplane,
/// including the batch being published: as for a subscription, one message of the
/// largest size a socket accepts by default fits.
const PUBLISH_QUEUE_BYTES: usize = 64 << 20;
/// How many queued envelopes the publisher hands the backplane at once.
const PUBLISH_BATCH: usize = 256;

/// What a registry's sockets may hold together in incoming messages by default: 256 MiB,
/// four messages of the largest size a socket accepts by default, so a few big messages
/// pass while peers that open many (compressed, or sent slowly) cannot exhaust memory.
const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;

/// How long a registry's socket may take to receive one message, first byte to last: a
/// 64 MiB message (the default limit) at 2 MB/s, and a peer that trickles a message to hold
/// memory is dropped within a minute.
const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`WebSockets::shutdown`] waits for the closing handshakes.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

struct Inner {
    sockets: RwLock<HashMap<String, WebSocket>>,
    read_timeout: Mutex<Option<Duration>>,
    message_timeout: Mutex<Option<Duration>>,
    /// How long `serve` waits for a request head (see `set_handshake_timeout`).
    handshake_timeout: Mutex<Duration>,
    deflate: Mutex<Option<DeflateConfig>>,
    on_upgrade: Mutex<Option<UpgradeHook>>,
    max_connections: Mutex<Option<usize>>,
    /// Shared by the sockets upgraded from now on (see `set_memory_budget`).
    memory_budget: Mutex<Option<crate::MemoryBudget>>,
    /// Connections `serve` accepted whose sockets are not registered yet (see `Admission`).
    upgrading: AtomicUsize,
    emptied: Notify,
    plane: Option<Plane>,
}

/// A connection [`WebSockets::serve`] accepted and is still upgrading: it counts towards
/// the cap until dropped, which happens just after its socket is registered (so it is
/// never counted as neither) or when its upgrade fails.
pub(crate) struct Admission(WebSockets);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0 .0.upgrading.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A registry's link to its backplane: the publisher task's queue, and the shared state
/// the publisher and subscriber tasks report to.
struct Plane {
    queue: mpsc::Sender<Envelope>,
    state: Arc<PlaneState>,
    /// Dropped with the registry: ends the subscriber task.
    _stop: oneshot::Sender<()>,
}

#[derive(Default)]
struct PlaneState {
    errors: AtomicU64,
    /// Envelopes dropped by a full queue or a size cap, either way.
    dropped: AtomicU64,
    /// Envelopes the publish queue dropped since the publisher last reported.
    unreported: AtomicU64,
    /// The bytes in the publish queue and the batch being published.
    queued_bytes: AtomicUsize,
    up: AtomicBool,
    on_error: Mutex<Option<ErrorHook>>,
}

impl PlaneState {
    /// Counts `count` failures and reports `error` once.
    fn report(&self, count: u64, error: Error) {
        self.errors.fetch_add(count, Ordering::Relaxed);
        tracing::warn!("{error}");
        let hook = lock(&self.on_error).clone();
        if let Some(hook) = hook {
            hook(&error);
        }
    }
}

/// The registry of live server sockets. Cheap to clone; clones share the registry.
///
/// Sockets upgraded through [`WebSockets::service`] (and [`WebSockets::serve`], and the
/// axum integration) are registered under their [`WebSocket::id`] and removed when they
/// close.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use unisock::{MsgEvent, WebSocket, WebSockets};
///
/// let sockets = WebSockets::new();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8069").await?;
/// let room = sockets.clone();
/// let serving = sockets.serve(listener, move |_request| {
///     let ws = WebSocket::new();
///     // Only pages of this site may connect: any other site's page could, with the
///     // user's cookies, were every origin accepted (the default).
///     ws.set_allowed_origins(Some(vec!["https://example.com".into()]));
///     let (room, id) = (room.clone(), ws.id().to_string());
///     ws.on_message(move |msg| {
///         if let MsgEvent::Text(t) = msg {
///             room.broadcast_text(&format!("{id} says, '{t}'"), None);
///         }
///     });
///     Some(ws)
/// });
/// match serving.await {} // `serve` never returns
/// # }
/// ```
#[derive(Clone)]
pub struct WebSockets(Arc<Inner>);

impl std::fmt::Debug for WebSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSockets")
            .field("len", &self.len())
            .field("backplane", &self.0.plane.is_some())
            .finish()
    }
}

impl Default for WebSockets {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn send_msg(ws: &WebSocket, msg: &MsgEvent) -> Result<()> {
    Payload::from(msg).send(ws)
}

/// A message to broadcast, borrowed: `broadcast_text` and `broadcast_binary` copy it only
/// when a backplane publishes it.
#[derive(Clone, Copy)]
enum Payload<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

impl<'a> From<&'a MsgEvent> for Payload<'a> {
    fn from(msg: &'a MsgEvent) -> Self {
        match msg {
            MsgEvent::Text(t) => Self::Text(t),
            MsgEvent::Binary(b) => Self::Binary(b),
        }
    }
}

impl Payload<'_> {
    fn send(self, ws: &WebSocket) -> Result<()> {
        match self {
            Self::Text(t) => ws.send_text(t),
            Self::Binary(b) => ws.send_binary(b),
        }
    }

    fn to_msg(self) -> MsgEvent {
        match self {
            Self::Text(t) => MsgEvent::Text(t.to_string()),
            Self::Binary(b) => MsgEvent::Binary(b.to_vec()),
        }
    }
}

impl Inner {
    fn new(plane: Option<Plane>) -> Self {
        Self {
            sockets: RwLock::new(HashMap::new()),
            read_timeout: Mutex::new(Some(Duration::from_secs(300))),
            message_timeout: Mutex::new(Some(DEFAULT_MESSAGE_TIMEOUT)),
            handshake_timeout: Mutex::new(crate::backend::HANDSHAKE_TIMEOUT),
            deflate: Mutex::new(None),
            on_upgrade: Mutex::new(None),
            max_connections: Mutex::new(None),
            memory_budget: Mutex::new(Some(crate::MemoryBudget::new(DEFAULT_MEMORY_BUDGET))),
            upgrading: AtomicUsize::new(0),
            emptied: Notify::new(),
            plane,
        }
    }
}

/// Hands queued envelopes to the backplane, in order, a batch at a time; ends with the
/// registry (when the queue's sender is dropped).
async fn publish_loop(
    backplane: Arc<dyn Backplane>,
    mut queue: mpsc::Receiver<Envelope>,
    state: Arc<PlaneState>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        // What was dropped while the queue was full, in one report per batch: a drop
        // only happens while the queue holds envelopes, so a next batch always comes.
        let dropped = state.unreported.swap(0, Ordering::AcqRel);
        if dropped > 0 {
            let error = Error::Backplane(
                format!(
                    "the queue to the backplane was full ({PUBLISH_QUEUE} envelopes or \
                     {PUBLISH_QUEUE_BYTES} bytes): {dropped} envelopes dropped"
                )
                .into(),
            );
            state.report(dropped, error);
        }
        let bytes: usize = batch.iter().map(Envelope::queued_size).sum();
        let (failed, error) = backplane.publish_all(std::mem::take(&mut batch)).await;
        state.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        if failed > 0 {
            let error = error.unwrap_or_else(|| Error::Backplane("publish failed".into()));
            state.report(failed as u64, error);
        }
    }
}

/// Delivers what the other nodes publish to the registry's sockets, and tracks the
/// subscription's state; ends with the registry.
async fn subscribe_loop(
    mut subscription: Subscription,
    registry: Weak<Inner>,
    state: Arc<PlaneState>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let next = std::future::poll_fn(|cx| subscription.as_mut().poll_next(cx));
        let event = tokio::select! {
            _ = &mut stopped => return,
            event = next => event,
        };
        match event {
            None => return,
            Some(BackplaneEvent::Message(envelope)) => {
                let Some(inner) = registry.upgrade() else {
                    return;
                };
                WebSockets(inner).deliver(envelope);
            }
            Some(BackplaneEvent::Up) => {
                if !state.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("backplane up");
                }
            }
            Some(BackplaneEvent::Dropped { count, error }) => {
                state.dropped.fetch_add(count, Ordering::Relaxed);
                state.report(count, error);
            }
            Some(BackplaneEvent::Down(error)) => {
                state.up.store(false, Ordering::Relaxed);
                state.report(1, error);
            }
        }
    }
}

impl WebSockets {
    /// An empty registry with a read timeout of 5 minutes.
    ///
    /// ```
    /// let sockets = unisock::WebSockets::new();
    /// assert!(sockets.is_empty());
    /// assert_eq!(sockets.read_timeout(), Some(std::time::Duration::from_secs(300)));
    /// ```
    pub fn new() -> Self {
        Self(Arc::new(Inner::new(None)))
    }

    /// An empty registry that shares broadcasts and [`send_to`](WebSockets::send_to) with
    /// the other registries on `backplane` (other processes, with
    /// [`RedisBackplane`](crate::backplane)). See [`crate::backplane`] for the delivery
    /// semantics: local delivery first and always, at most once across nodes.
    ///
    /// Spawns the backplane's publisher and subscriber tasks, which end when the last
    /// clone of the registry is dropped.
    ///
    /// # Panics
    /// Outside a Tokio runtime (as `tokio::spawn` does).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use unisock::backplane::InProcess;
    ///
    /// let hub = InProcess::new();
    /// let a = unisock::WebSockets::with_backplane(hub.clone());
    /// let b = unisock::WebSockets::with_backplane(hub);
    /// // No socket anywhere yet: 0 delivered locally; published for `b` all the same.
    /// assert_eq!(a.broadcast_text("hello", None), 0);
    /// # drop(b); }
    /// ```
    ///
    /// Over Redis (feature `redis`):
    /// ```no_run
    /// # #[cfg(feature = "redis")]
    /// # async fn run() -> unisock::Result<()> {
    /// use unisock::backplane::RedisBackplane;
    ///
    /// let redis = RedisBackplane::connect("redis://127.0.0.1:6379/").await?;
    /// let sockets = unisock::WebSockets::with_backplane(redis);
    /// sockets.on_backplane_error(|e| eprintln!("{e}"));
    /// # Ok(()) }
    /// ```
    pub fn with_backplane(backplane: impl Backplane) -> Self {
        let backplane: Arc<dyn Backplane> = Arc::new(backplane);
        let (queue, published) = mpsc::channel(PUBLISH_QUEUE);
        let (stop, stopped) = oneshot::channel();
        let state = Arc::new(PlaneState::default());
        let plane = Plane {
            queue,
            state: state.clone(),
            _stop: stop,
        };
        let registry = Self(Arc::new(Inner::new(Some(plane))));
        let subscription = backplane.subscribe();
        tokio::spawn(publish_loop(backplane, published, state.clone()));
        tokio::spawn(subscribe_loop(
            subscription,
            Arc::downgrade(&registry.0),
            state,
            stopped,
        ));
        registry
    }

    /// How many backplane failures this registry has seen: envelopes that could not be
    /// published (dropped: at most once), envelopes dropped on the way in (see
    /// [`backplane_dropped`](WebSockets::backplane_dropped)) and subscriptions lost.
    /// Raised as each failure is reported. 0 without a backplane.
    ///
    /// ```
    /// assert_eq!(unisock::WebSockets::new().backplane_errors(), 0);
    /// ```
    pub fn backplane_errors(&self) -> u64 {
        self.0
            .plane
            .as_ref()
            .map_or(0, |p| p.state.errors.load(Ordering::Relaxed))
    }

    /// How many envelopes this registry dropped because a queue was full: broadcasts and
    /// [`send_to`](WebSockets::send_to)s that never reached the backplane (16 Ki
    /// envelopes or 64 MiB were waiting; counted at once), and envelopes from other nodes
    /// never delivered here, their subscription queue being full (see
    /// [`InProcess::with_max_queued_bytes`](crate::backplane::InProcess::with_max_queued_bytes))
    /// or they being over the backplane's size cap (counted when the subscriber reaches
    /// the drops). An envelope this registry publishes over the cap is a failed publish,
    /// counted in [`backplane_errors`](WebSockets::backplane_errors) only. Each burst of drops is also
    /// reported once through [`on_backplane_error`](WebSockets::on_backplane_error) and
    /// counted in [`backplane_errors`](WebSockets::backplane_errors). 0 without a backplane.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let sockets = unisock::WebSockets::with_backplane(unisock::backplane::InProcess::new());
    /// sockets.broadcast_text("fits easily", None);
    /// assert_eq!(sockets.backplane_dropped(), 0);
    /// # }
    /// ```
    pub fn backplane_dropped(&self) -> u64 {
        self.0
            .plane
            .as_ref()
            .map_or(0, |p| p.state.dropped.load(Ordering::Relaxed))
    }

    /// Whether the backplane's subscription is live (what other nodes publish arrives).
    /// Always true without a backplane.
    ///
    /// ```
    /// assert!(unisock::WebSockets::new().backplane_up());
    /// ```
    pub fn backplane_up(&self) -> bool {
        self.0
            .plane
            .as_ref()
            .is_none_or(|p| p.state.up.load(Ordering::Relaxed))
    }

    /// A hook called on each backplane failure (a publish that failed, a subscription
    /// lost or not re-established yet, a burst of envelopes dropped by a full queue, an
    /// envelope over the size cap), besides the count in
    /// [`backplane_errors`](WebSockets::backplane_errors). Local delivery goes on.
    ///
    /// ```
    /// unisock::WebSockets::new().on_backplane_error(|e| eprintln!("backplane trouble: {e}"));
    /// ```
    pub fn on_backplane_error(&self, hook: impl Fn(&Error) + Send + Sync + 'static) {
        if let Some(plane) = &self.0.plane {
            *lock(&plane.state.on_error) = Some(Arc::new(hook));
        }
    }

    /// The read timeout applied to sockets upgraded from now on.
    ///
    /// ```
    /// let sockets = unisock::WebSockets::new();
    /// sockets.set_read_timeout(None);
    /// assert_eq!(sockets.read_timeout(), None);
    /// ```
    pub fn read_timeout(&self) -> Option<Duration> {
        *lock(&self.0.read_timeout)
    }

    /// The memory budget the registry's sockets share for incoming messages (see
    /// [`crate::MemoryBudget`]): by default 256 MiB. A socket whose message would go past
    /// it is closed with 1013 ("try again later"); the others are served on.
    ///
    /// ```
    /// let sockets = unisock::WebSockets::new();
    /// assert_eq!(sockets.memory_budget().map(|b| b.limit()), Some(256 << 20));
    /// ```
    pub fn memory_budget(&self) -> Option<crate::MemoryBudget> {
        lock(&self.0.memory_budget).clone()
    }

    /// Sets the memory budget for sockets upgraded from now on (`None`: no shared bound;
    /// each socket is still bounded by its message size limit).
    ///
    /// ```
    /// let sockets = unisock::WebSockets::new();
    /// sockets.set_memory_budget(Some(unisock::MemoryBudget::new(64 << 20)));
    /// assert_eq!(sockets.memory_budget().unwrap().limit(), 64 << 20);
    /// ```
    pub fn set_memory_budget(&self, budget: Option<crate::MemoryBudget>) {
        *lock(&self.0.memory_budget) = budget;
    }

    /// How long each socket upgraded from now on may take to receive one message, first
    /// byte to last (see `WebSocketExt::set_message_timeout`): 60 s by default.
    ///
    /// ```
    /// let sockets = unisock::WebSockets::new();
    /// assert_eq!(sockets.message_timeout(), Some(std::time::Duration::from_secs(60)));
    /// ```
    pub fn message_timeout(&self) -> Option<Duration> {
        *lock(&self.0.message_timeout)
    }

    /// Sets [`WebSockets::message_timeout`]; `None` waits for ever.
    ///
    /// ```
    /// unisock::WebSockets::new().set_message_timeout(Some(std::time::Duration::from_secs(10)));
    /// ```
    pub fn set_message_timeout(&self, timeout: Option<Duration>) {
        *lock(&self.0.message_timeout) = timeout;
    }

    /// Sets the read timeout for sockets upgraded from now on; `None` waits forever
    /// (vulnerable to idle connections piling up).
    ///
    /// ```
    /// unisock::WebSockets::new().set_read_timeout(Some(std::time::Duration::from_secs(60)));
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) {
        *lock(&self.0.read_timeout) = timeout;
    }

    /// How long [`WebSockets::serve`] lets a client take to send its whole upgrade request
    /// before answering 408 and dropping it (default 10 s; a guard against slowloris). It
    /// applies from the next connection `serve` accepts. `serve` reads the request before
    /// the handler makes the socket, so a socket's own
    /// [`WebSocketExt::set_handshake_timeout`] does not apply there (it does in
    /// [`WebSockets::service`], which reads the request with the socket in hand).
    ///
    /// ```
    /// use std::time::Duration;
    /// let sockets = unisock::WebSockets::new();
    /// assert_eq!(sockets.handshake_timeout(), Duration::from_secs(10));
    /// sockets.set_handshake_timeout(Duration::from_secs(3));
    /// assert_eq!(sockets.handshake_timeout(), Duration::from_secs(3));
    /// ```
    pub fn set_handshake_timeout(&self, timeout: Duration) {
        *lock(&self.0.handshake_timeout) = timeout;
    }

    /// The timeout set with [`WebSockets::set_handshake_timeout`].
    ///
    /// ```
    /// let sockets = unisock::WebSockets::new();
    /// assert_eq!(sockets.handshake_timeout().as_secs(), 10);
    /// ```
    pub fn handshake_timeout(&self) -> Duration {
        *lock(&self.0.handshake_timeout)
    }

    /// permessage-deflate options for the sockets this registry upgrades from now on,
    /// unless a socket has its own ([`WebSocketExt::set_deflate`]). Unset: the server
    /// default (on; see the README, "Compression").
    ///
    /// ```
    /// let sockets = unisock::WebSockets::new();
    /// assert_eq!(sockets.deflate(), None);
    /// sockets.set_deflate(unisock::DeflateConfig::disabled());
    /// assert!(!sockets.deflate().unwrap().enabled);
    /// ```
    pub fn set_deflate(&self, config: DeflateConfig) {
        *lock(&self.0.deflate) = Some(config);
    }

    /// The permessage-deflate options set with [`WebSockets::set_deflate`], if any.
    ///
    /// ```
    /// assert_eq!(unisock::WebSockets::new().deflate(), None);
    /// ```
    pub fn deflate(&self) -> Option<DeflateConfig> {
        *lock(&self.0.deflate)
    }

    /// A hook called after a request was validated and before its 101 response is sent:
    /// negotiate a subprotocol, add headers. It runs on every path into the registry:
    /// [`WebSockets::serve`], [`WebSockets::service`] and [`WebSockets::service_pending`],
    /// and the axum extractor's `accept` (there it sees the response before axum sends
    /// it; a protocol the handler passed to `accept_with_protocol` is already set).
    ///
    /// ```
    /// unisock::WebSockets::new().on_upgrade(|pending| {
    ///     // Selects "chat" if the client offered it.
    ///     let _ = pending.set_protocol("chat");
    /// });
    /// ```
    pub fn on_upgrade(&self, hook: impl Fn(&mut PendingUpgrade) + Send + Sync + 'static) {
        *lock(&self.0.on_upgrade) = Some(Arc::new(hook));
    }

    /// Runs the `on_upgrade` hook, if one is set, on `pending`.
    pub(crate) fn run_upgrade_hook(&self, pending: &mut PendingUpgrade) {
        let hook = lock(&self.0.on_upgrade).clone();
        if let Some(hook) = hook {
            hook(pending);
        }
    }

    /// Caps the connections [`WebSockets::serve`] takes on: a connection it accepts while
    /// the registry holds `max` (its registered sockets, however they came, plus the
    /// connections `serve` is still upgrading or answering) is answered
    /// `503 Service Unavailable` with `Retry-After: 5` and `Connection: close`, without
    /// reading its request, and closed. As sockets close, connections are taken on again.
    /// Applies to connections accepted from now on; [`WebSockets::service`] and the axum
    /// integration do not check it.
    ///
    /// `None`, the default, is no cap, as in Node's ws, uWebSockets and hyper: the right
    /// number depends on the memory and the descriptor limit (`ulimit -n`) of the machine,
    /// and without a cap `serve` still survives running out of descriptors (see
    /// [`crate::server::accept`]). A cap a little below the descriptor limit keeps
    /// descriptors for the rest of the process and answers the excess clearly.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// use unisock::{WebSocket, WebSockets};
    ///
    /// let sockets = WebSockets::new();
    /// sockets.set_max_connections(Some(10_000));
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8069").await?;
    /// match sockets.serve(listener, |_request| Some(WebSocket::new())).await {}
    /// # }
    /// ```
    pub fn set_max_connections(&self, max: Option<usize>) {
        *lock(&self.0.max_connections) = max;
    }

    /// The cap set with [`WebSockets::set_max_connections`]; `None` (the default) is none.
    ///
    /// ```
    /// let sockets = unisock::WebSockets::new();
    /// assert_eq!(sockets.max_connections(), None);
    /// sockets.set_max_connections(Some(2));
    /// assert_eq!(sockets.max_connections(), Some(2));
    /// ```
    pub fn max_connections(&self) -> Option<usize> {
        *lock(&self.0.max_connections)
    }

    /// Counts a connection `serve` accepted, unless that would pass the cap (`None`).
    pub(crate) fn admit(&self) -> Option<Admission> {
        // Counted first, then compared: two accept loops admitting at once both see the
        // other, and a socket being registered is counted at least once (see `Admission`).
        let before = self.0.upgrading.fetch_add(1, Ordering::SeqCst);
        let admission = Admission(self.clone());
        match self.max_connections() {
            Some(max) if before + self.len() >= max => None,
            _ => Some(admission),
        }
    }

    /// The number of live registered sockets.
    ///
    /// ```
    /// assert_eq!(unisock::WebSockets::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.read_map().len()
    }

    /// Whether no socket is registered.
    ///
    /// ```
    /// assert!(unisock::WebSockets::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of the live registered sockets.
    ///
    /// ```
    /// assert!(unisock::WebSockets::new().ids().is_empty());
    /// ```
    pub fn ids(&self) -> Vec<String> {
        self.read_map().keys().cloned().collect()
    }

    /// The live socket with this id, if any.
    ///
    /// ```
    /// assert!(unisock::WebSockets::new().get("unisock:0001").is_none());
    /// ```
    pub fn get(&self, id: &str) -> Option<WebSocket> {
        self.read_map().get(id).cloned()
    }

    /// Sends `text` to every registered socket, or to those of `ids` that are live (unknown
    /// ids are skipped). One failing socket does not stop the others. Returns how many
    /// sockets of this registry accepted the message.
    ///
    /// With a backplane the message is also published once for the other nodes (for
    /// `ids`, only if some of them are not registered here), which deliver it to theirs.
    ///
    /// ```
    /// assert_eq!(unisock::WebSockets::new().broadcast_text("hi", None), 0);
    /// ```
    pub fn broadcast_text(&self, text: &str, ids: Option<&[&str]>) -> usize {
        self.fan_out(Payload::Text(text), ids)
    }

    /// Sends `data` as a binary message, as [`WebSockets::broadcast_text`] does text.
    ///
    /// ```
    /// assert_eq!(unisock::WebSockets::new().broadcast_binary(&[1, 2], None), 0);
    /// ```
    pub fn broadcast_binary(&self, data: &[u8], ids: Option<&[&str]>) -> usize {
        self.fan_out(Payload::Binary(data), ids)
    }

    /// Sends `msg`, text or binary, as [`WebSockets::broadcast_text`] does text: for a
    /// message received on one socket and passed on as it came, or one whose kind is
    /// decided at run time.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// use unisock::{WebSocket, WebSockets};
    ///
    /// // A relay: whatever one socket sends, every other one gets, text or binary alike.
    /// let sockets = WebSockets::new();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8069").await?;
    /// let room = sockets.clone();
    /// let serving = sockets.serve(listener, move |_request| {
    ///     let ws = WebSocket::new();
    ///     let (room, id) = (room.clone(), ws.id().to_string());
    ///     ws.on_message(move |msg| {
    ///         let others: Vec<String> = room.ids().into_iter().filter(|o| *o != id).collect();
    ///         let others: Vec<&str> = others.iter().map(String::as_str).collect();
    ///         room.broadcast(msg, Some(&others));
    ///     });
    ///     Some(ws)
    /// });
    /// match serving.await {}
    /// # }
    /// ```
    ///
    /// ```
    /// use unisock::{MsgEvent, WebSockets};
    /// assert_eq!(WebSockets::new().broadcast(MsgEvent::Binary(vec![1, 2]), None), 0);
    /// ```
    pub fn broadcast(&self, msg: MsgEvent, ids: Option<&[&str]>) -> usize {
        self.fan_out(Payload::from(&msg), ids)
    }

    /// What the three `broadcast*` do: send to the local sockets, then publish.
    fn fan_out(&self, payload: Payload<'_>, ids: Option<&[&str]>) -> usize {
        let sent = self.send_local(ids, |ws| payload.send(ws));
        self.publish_broadcast(ids, || payload.to_msg());
        sent
    }

    /// Sends `msg` to the socket with this id: directly if it is registered here,
    /// otherwise through the backplane to the node that holds it (the id's node part, see
    /// [`crate::backplane`]). Across nodes this is fire-and-forget, at most once: an id
    /// no node holds is dropped there.
    ///
    /// # Errors
    /// The local socket's send error ([`Error::Closed`], [`Error::Capacity`]), or
    /// [`Error::NoSuchSocket`] when the id is not here and there is no backplane.
    ///
    /// ```
    /// use unisock::{Error, MsgEvent, WebSockets};
    /// let lone = WebSockets::new();
    /// let sent = lone.send_to("unisock:0042", MsgEvent::Text("psst".into()));
    /// assert!(matches!(sent, Err(Error::NoSuchSocket(_))));
    /// ```
    pub fn send_to(&self, id: &str, msg: MsgEvent) -> Result<()> {
        if let Some(ws) = self.get(id) {
            return send_msg(&ws, &msg);
        }
        if self.0.plane.is_none() {
            return Err(Error::NoSuchSocket(id.to_string()));
        }
        self.publish(Envelope::Direct {
            id: id.to_string(),
            payload: msg,
        });
        Ok(())
    }

    /// Publishes a broadcast for the other nodes: to all, or to the listed ids that are
    /// not registered here.
    fn publish_broadcast(&self, ids: Option<&[&str]>, payload: impl FnOnce() -> MsgEvent) {
        if self.0.plane.is_none() {
            return;
        }
        let ids = match ids {
            None => None,
            Some(ids) => {
                let map = self.read_map();
                let remote: Vec<String> = ids
                    .iter()
                    .filter(|id| !map.contains_key(**id))
                    .map(|id| id.to_string())
                    .collect();
                if remote.is_empty() {
                    return;
                }
                Some(remote)
            }
        };
        self.publish(Envelope::Broadcast {
            payload: payload(),
            ids,
        });
    }

    /// Queues `envelope` for the publisher task; a full queue drops it (the newest, so
    /// what was queued goes out in order) and counts it, for the publisher to report.
    fn publish(&self, envelope: Envelope) {
        let Some(plane) = &self.0.plane else { return };
        let state = &plane.state;
        let size = envelope.queued_size();
        let fits = state
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued
                    .checked_add(size)
                    .filter(|&total| total <= PUBLISH_QUEUE_BYTES)
            })
            .is_ok();
        if fits {
            match plane.queue.try_send(envelope) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    state.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                }
                // The publisher is gone with the runtime: nothing to count or report.
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        state.dropped.fetch_add(1, Ordering::Relaxed);
        state.unreported.fetch_add(1, Ordering::AcqRel);
    }

    /// Delivers what another node published to the sockets registered here.
    fn deliver(&self, envelope: Envelope) {
        match envelope {
            Envelope::Broadcast { payload, ids } => {
                let ids: Option<Vec<&str>> =
                    ids.as_ref().map(|v| v.iter().map(String::as_str).collect());
                self.send_local(ids.as_deref(), |ws| send_msg(ws, &payload));
            }
            Envelope::Direct { id, payload } => {
                if let Some(ws) = self.get(&id) {
                    if let Err(e) = send_msg(&ws, &payload) {
                        tracing::debug!(id, "direct send from another node failed: {e}");
                    }
                }
            }
        }
    }

    /// Sends to the sockets registered here (all, or those of `ids`); how many took it.
    fn send_local(&self, ids: Option<&[&str]>, send: impl Fn(&WebSocket) -> Result<()>) -> usize {
        let targets: Vec<WebSocket> = {
            let map = self.read_map();
            match ids {
                None => map.values().cloned().collect(),
                Some(ids) => ids.iter().filter_map(|id| map.get(*id).cloned()).collect(),
            }
        };
        targets
            .iter()
            .filter(|ws| match send(ws) {
                Ok(()) => true,
                // So far behind that its queue is full, or the memory budget cannot hold
                // more for it: closed (1013), so that it does not hold the server's memory
                // for everyone else.
                Err(e @ (Error::Capacity { .. } | Error::OverBudget { .. })) => {
                    tracing::debug!(id = ws.id(), "broadcast closes a socket: {e}");
                    let _ = ws.close(1013, "too far behind");
                    false
                }
                Err(e) => {
                    tracing::debug!(id = ws.id(), "broadcast skipped a socket: {e}");
                    false
                }
            })
            .count()
    }

    /// Closes every registered socket with 1001 "Server shutting down...", waits (up to 5
    /// seconds) for their closing handshakes, and returns how many sockets it closed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// assert_eq!(unisock::WebSockets::new().shutdown().await, 0);
    /// # }
    /// ```
    pub async fn shutdown(&self) -> usize {
        let sockets: Vec<WebSocket> = self.read_map().values().cloned().collect();
        for ws in &sockets {
            let _ = ws.close(1001, "Server shutting down...");
        }
        let wait_empty = async {
            loop {
                let emptied = self.0.emptied.notified();
                if self.is_empty() {
                    break;
                }
                emptied.await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_DEADLINE, wait_empty)
            .await
            .is_err()
        {
            tracing::warn!("shutdown: {} sockets did not close in time", self.len());
        }
        sockets.len()
    }

    /// Upgrades `ws` over `stream` (if it is not connected yet), applies the read timeout
    /// and the `on_upgrade` hook, registers it, runs its event loop, and unregisters it
    /// when it closes. A failed handshake is answered (400/403/426) and returned.
    ///
    /// # Errors
    /// As [`WebSocket::upgrade`].
    ///
    /// ```no_run
    /// # async fn run(sockets: unisock::WebSockets, tcp: tokio::net::TcpStream) -> unisock::Result<()> {
    /// sockets.service(unisock::WebSocket::new(), tcp).await?;
    /// # Ok(()) }
    /// ```
    pub fn service<S: Transport>(
        &self,
        ws: WebSocket,
        stream: S,
    ) -> impl std::future::Future<Output = Result<()>> + Send + '_ {
        // The handshake is boxed (with the stream it takes) from the start: a future keeps
        // its arguments and its largest step for its whole life, and this one lives as
        // long as the connection.
        let handshake = Box::pin(async move { ws.upgrade_pending(stream).await });
        async move {
            let pending = handshake.await?;
            self.service_pending(pending).await
        }
    }

    /// As [`WebSockets::service`], for an upgrade already read and validated.
    ///
    /// # Errors
    /// [`crate::Error::Io`] when the 101 response cannot be written.
    ///
    /// ```no_run
    /// # async fn run() -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt, WebSockets};
    /// let sockets = WebSockets::new();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8069").await?;
    /// loop {
    ///     let (tcp, _) = listener.accept().await?;
    ///     let sockets = sockets.clone();
    ///     tokio::spawn(async move {
    ///         let Ok(mut pending) = WebSocket::new().upgrade_pending(tcp).await else { return };
    ///         pending.response_mut().headers_mut().insert("x-node", "7".parse().unwrap());
    ///         let _ = sockets.service_pending(pending).await;
    ///     });
    /// }
    /// # }
    /// ```
    pub fn service_pending(
        &self,
        pending: PendingUpgrade,
    ) -> impl std::future::Future<Output = Result<()>> + Send + '_ {
        self.service_admitted(pending, None)
    }

    /// As [`WebSockets::service_pending`], for a connection `serve` counts until its socket
    /// is registered.
    pub(crate) fn service_admitted(
        &self,
        pending: PendingUpgrade,
        admission: Option<Admission>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + '_ {
        // Boxed from the start, with `pending` (see `service`).
        let registry = self.clone();
        let commit = Box::pin(async move {
            let mut pending = pending;
            pending
                .websocket()
                .set_read_timeout(registry.read_timeout());
            pending
                .websocket()
                .set_message_timeout(registry.message_timeout());
            if let Some(budget) = registry.memory_budget() {
                pending.websocket().set_memory_budget(Some(budget));
            }
            if let (None, Some(config)) = (
                pending.websocket().inner.deflate_config(),
                registry.deflate(),
            ) {
                pending.set_deflate(config);
            }
            registry.run_upgrade_hook(&mut pending);
            pending.commit().await
        });
        async move {
            let ws = commit.await?;
            self.run_admitted(ws, admission).await;
            Ok(())
        }
    }

    /// Registers an open socket, runs its event loop, and unregisters it when it closes
    /// (also if this future is dropped): for a socket upgraded outside the registry, such
    /// as one a framework upgraded and [`WebSocketExt::attach_upgraded`] started. Nothing
    /// of the registry's configuration (read timeout, `on_upgrade`, ...) is applied: the
    /// socket is already open. Returns at once for a socket never opened.
    ///
    /// ```no_run
    /// # async fn run(sockets: unisock::WebSockets, upgraded: tokio::net::TcpStream, request: http::Request<()>) -> unisock::Result<()> {
    /// use unisock::{WebSocket, WebSocketExt};
    ///
    /// // The framework already answered 101 on `upgraded`.
    /// let ws = WebSocket::new();
    /// ws.attach_upgraded(upgraded, &request, None)?;
    /// sockets.run(ws).await; // registered (get, broadcast, shutdown) until it closes
    /// # Ok(()) }
    /// ```
    pub async fn run(&self, ws: WebSocket) {
        self.run_admitted(ws, None).await;
    }

    /// As [`WebSockets::run`]; `admission` stops counting once the socket is registered.
    async fn run_admitted(&self, ws: WebSocket, admission: Option<Admission>) {
        struct Unregister<'a>(&'a WebSockets, String);
        impl Drop for Unregister<'_> {
            fn drop(&mut self) {
                self.0.remove(&self.1);
            }
        }
        let id = ws.id().to_string();
        self.write_map().insert(id.clone(), ws.clone());
        drop(admission);
        let _guard = Unregister(self, id);
        ws.read().await;
    }

    fn remove(&self, id: &str) {
        let empty = {
            let mut map = self.write_map();
            map.remove(id);
            map.is_empty()
        };
        if empty {
            self.0.emptied.notify_waiters();
        }
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, WebSocket>> {
        self.0
            .sockets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, WebSocket>> {
        self.0
            .sockets
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
