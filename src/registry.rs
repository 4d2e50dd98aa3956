//! [`WebSockets`]: the registry of live server sockets (the original's service): look
//! sockets up by id, broadcast, and shut them all down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::server::PendingUpgrade;
use crate::{Result, Transport, WebSocket, WebSocketExt};

type UpgradeHook = Arc<dyn Fn(&mut PendingUpgrade) + Send + Sync>;

/// How long [`WebSockets::shutdown`] waits for the closing handshakes.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

struct Inner {
    sockets: RwLock<HashMap<String, WebSocket>>,
    read_timeout: Mutex<Option<Duration>>,
    on_upgrade: Mutex<Option<UpgradeHook>>,
    emptied: Notify,
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
/// sockets
///     .serve(listener, move |_request| {
///         let ws = WebSocket::new();
///         let (room, id) = (room.clone(), ws.id().to_string());
///         ws.on_message(move |msg| {
///             if let MsgEvent::Text(t) = msg {
///                 room.broadcast_text(&format!("{id} says, '{t}'"), None);
///             }
///         });
///         Some(ws)
///     })
///     .await
/// # }
/// ```
#[derive(Clone)]
pub struct WebSockets(Arc<Inner>);

impl std::fmt::Debug for WebSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSockets")
            .field("len", &self.len())
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

impl WebSockets {
    /// An empty registry with a read timeout of 5 minutes.
    ///
    /// ```
    /// let sockets = unisock::WebSockets::new();
    /// assert!(sockets.is_empty());
    /// assert_eq!(sockets.read_timeout(), Some(std::time::Duration::from_secs(300)));
    /// ```
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            sockets: RwLock::new(HashMap::new()),
            read_timeout: Mutex::new(Some(Duration::from_secs(300))),
            on_upgrade: Mutex::new(None),
            emptied: Notify::new(),
        }))
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

    /// Sets the read timeout for sockets upgraded from now on; `None` waits forever
    /// (vulnerable to idle connections piling up).
    ///
    /// ```
    /// unisock::WebSockets::new().set_read_timeout(Some(std::time::Duration::from_secs(60)));
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) {
        *lock(&self.0.read_timeout) = timeout;
    }

    /// A hook called after a request was validated and before its 101 response is sent:
    /// negotiate a subprotocol, add headers.
    ///
    /// ```
    /// unisock::WebSockets::new().on_upgrade(|pending| {
    ///     if pending.offered_protocols().iter().any(|p| p == "chat") {
    ///         pending.set_protocol("chat");
    ///     }
    /// });
    /// ```
    pub fn on_upgrade(&self, hook: impl Fn(&mut PendingUpgrade) + Send + Sync + 'static) {
        *lock(&self.0.on_upgrade) = Some(Arc::new(hook));
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
    /// sockets accepted the message.
    ///
    /// ```
    /// assert_eq!(unisock::WebSockets::new().broadcast_text("hi", None), 0);
    /// ```
    pub fn broadcast_text(&self, text: &str, ids: Option<&[&str]>) -> usize {
        self.broadcast(ids, |ws| ws.send_text(text))
    }

    /// Sends `data` as a binary message, as [`WebSockets::broadcast_text`] does text.
    ///
    /// ```
    /// assert_eq!(unisock::WebSockets::new().broadcast_binary(&[1, 2], None), 0);
    /// ```
    pub fn broadcast_binary(&self, data: &[u8], ids: Option<&[&str]>) -> usize {
        self.broadcast(ids, |ws| ws.send_binary(data))
    }

    fn broadcast(&self, ids: Option<&[&str]>, send: impl Fn(&WebSocket) -> Result<()>) -> usize {
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
    pub async fn service<S: Transport>(&self, ws: WebSocket, stream: S) -> Result<()> {
        let pending = ws.upgrade_pending(stream).await?;
        self.service_pending(pending).await
    }

    /// As [`WebSockets::service`], for an upgrade already read and validated.
    ///
    /// # Errors
    /// [`crate::Error::Io`] when the 101 response cannot be written.
    pub async fn service_pending(&self, mut pending: PendingUpgrade) -> Result<()> {
        pending.websocket().set_read_timeout(self.read_timeout());
        let hook = lock(&self.0.on_upgrade).clone();
        if let Some(hook) = hook {
            hook(&mut pending);
        }
        let ws = pending.commit().await?;
        self.run(ws).await;
        Ok(())
    }

    /// Registers an open socket, runs its event loop, and unregisters it when it closes
    /// (also if this future is dropped).
    pub(crate) async fn run(&self, ws: WebSocket) {
        struct Unregister<'a>(&'a WebSockets, String);
        impl Drop for Unregister<'_> {
            fn drop(&mut self) {
                self.0.remove(&self.1);
            }
        }
        let id = ws.id().to_string();
        self.write_map().insert(id.clone(), ws.clone());
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

    /// Accepts connections on `listener` forever. For each request, `handler` returns the
    /// configured [`WebSocket`] to upgrade to (the original's "a route returns a
    /// WebSocket"), or `None` for a 404. Each socket is serviced by this registry.
    ///
    /// # Errors
    /// Only when accepting from `listener` fails.
    pub async fn serve<F>(&self, listener: TcpListener, handler: F) -> std::io::Result<()>
    where
        F: Fn(&http::Request<()>) -> Option<WebSocket> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let registry = self.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::server::route(&registry, tcp, &*handler).await {
                    tracing::debug!("connection not upgraded: {e}");
                }
            });
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

/// Accepts connections on `listener` forever with a fresh [`WebSockets`] registry; see
/// [`WebSockets::serve`].
///
/// # Errors
/// Only when accepting from `listener` fails.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8069").await?;
/// unisock::serve(listener, |request| {
///     (request.uri().path() == "/ws").then(unisock::WebSocket::new)
/// })
/// .await
/// # }
/// ```
pub async fn serve<F>(listener: TcpListener, handler: F) -> std::io::Result<()>
where
    F: Fn(&http::Request<()>) -> Option<WebSocket> + Send + Sync + 'static,
{
    WebSockets::new().serve(listener, handler).await
}
