//! The server's rooms in one process: a [`History`] and the sockets that joined each room.
//!
//! A join and a publish take the same lock, and a socket's messages leave in the order
//! they are queued, so a joining socket gets its replay and then every later message, with
//! nothing between them lost or doubled.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::server::PendingUpgrade;
use crate::{Error, MsgEvent, WebSocket};

use super::history::{History, HistoryLimits};
use super::tracker::NEW_INBOX;
use super::wire::Frame;
use super::{GapReason, Position, SUBPROTOCOL};

/// The close code for a socket that cannot keep up (its send queue is full): it reconnects
/// and resumes from its position, so nothing is lost.
const TOO_SLOW: u16 = 1013;

struct State {
    history: History,
    members: Members,
}

impl State {
    /// Takes socket `id` out of its rooms, forgetting those left empty and unneeded.
    fn detach(&mut self, id: &str) {
        for room in self.members.detach(id) {
            self.history.forget_if_empty(&room);
        }
    }

    /// Forgets the rooms whose messages all went and that have no members: a client
    /// resuming one later is told of a new epoch, as it would be told of expired messages.
    fn forget_unneeded(&mut self) {
        let State { history, members } = self;
        history.forget_emptied(|room| members.count(room) > 0);
    }
}

/// What [`Rooms::on_join`] calls: the socket and the room it joined.
pub(super) type JoinHook = Arc<dyn Fn(&WebSocket, &str) + Send + Sync>;

struct Inner {
    state: Mutex<State>,
    departed: Departed,
    on_join: Mutex<Option<JoinHook>>,
    /// Time zero of the history's clock.
    origin: Instant,
}

/// Rooms with resumable delivery, for one server process. Cheap to clone: clones share
/// the rooms.
///
/// Sockets whose client offered [`SUBPROTOCOL`] are handed to [`attach`](Rooms::attach)
/// after [`select`](Rooms::select) picked it in the upgrade; their clients join rooms and
/// resume with a [`RoomClient`](super::RoomClient). [`publish`](Rooms::publish) gives a
/// message its position, keeps it in the room's history and sends it to the room.
///
/// History lives in this process: a restart begins a new epoch, and clients that come
/// back are told with a [`GapReason::NewEpoch`](super::GapReason::NewEpoch) gap.
///
/// ```no_run
/// use unisock::resume::{HistoryLimits, Rooms};
/// use unisock::{MsgEvent, WebSocket, WebSocketExt};
///
/// # async fn demo(listener: tokio::net::TcpListener) -> unisock::Result<()> {
/// let rooms = Rooms::new(HistoryLimits::default());
/// loop {
///     let (tcp, _) = listener.accept().await?;
///     let rooms = rooms.clone();
///     tokio::spawn(async move {
///         let ws = WebSocket::new();
///         let mut pending = ws.upgrade_pending(tcp).await?;
///         Rooms::select(&mut pending);
///         let ws = pending.commit().await?;
///         // Every application message is published to the room "lobby".
///         let to_lobby = rooms.clone();
///         rooms.attach(&ws, move |_ws, msg| {
///             to_lobby.publish("lobby", msg);
///         });
///         ws.read().await;
///         rooms.detach(&ws);
///         Ok::<(), unisock::Error>(())
///     });
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Rooms {
    inner: Arc<Inner>,
}

impl Rooms {
    /// Empty rooms, whose history keeps what `limits` allow. The epoch is the time of
    /// creation in milliseconds since 1970, so a restarted process begins a later one.
    ///
    /// ```
    /// let rooms = unisock::resume::Rooms::new(Default::default());
    /// assert!(rooms.epoch() > 0);
    /// ```
    #[must_use]
    pub fn new(limits: HistoryLimits) -> Self {
        Rooms::with_epoch(unix_millis(), limits)
    }

    /// As [`new`](Rooms::new), with the epoch given.
    ///
    /// ```
    /// assert_eq!(unisock::resume::Rooms::with_epoch(7, Default::default()).epoch(), 7);
    /// ```
    #[must_use]
    pub fn with_epoch(epoch: u64, limits: HistoryLimits) -> Self {
        Rooms {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    history: History::new(epoch, limits),
                    members: Members::default(),
                }),
                departed: Departed::default(),
                origin: Instant::now(),
                on_join: Mutex::new(None),
            }),
        }
    }

    /// The history's epoch.
    ///
    /// ```
    /// let rooms = unisock::resume::Rooms::new(Default::default());
    /// assert_eq!(rooms.epoch(), rooms.clone().epoch());
    /// ```
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.state().history.epoch()
    }

    /// Selects [`SUBPROTOCOL`] in an upgrade if the client offered it; whether it did.
    ///
    /// ```no_run
    /// # async fn demo(tcp: tokio::net::TcpStream) -> unisock::Result<()> {
    /// use unisock::WebSocketExt;
    /// let ws = unisock::WebSocket::new();
    /// let mut pending = ws.upgrade_pending(tcp).await?;
    /// let resumable = unisock::resume::Rooms::select(&mut pending);
    /// pending.commit().await?;
    /// # let _ = resumable; Ok(()) }
    /// ```
    pub fn select(pending: &mut PendingUpgrade) -> bool {
        pending.offered_protocols().iter().any(|p| p == SUBPROTOCOL)
            && pending.set_protocol(SUBPROTOCOL).is_ok()
    }

    /// Serves the rooms to `ws` and hands its application messages to `on_message`.
    ///
    /// A socket that speaks [`SUBPROTOCOL`] joins, leaves and resumes rooms through its
    /// frames, and what its client sends with [`RoomClient::send`](super::RoomClient::send)
    /// reaches `on_message`; a frame that is not `unisock.v1` closes it with 1008. Any
    /// other socket keeps its plain messages: each reaches `on_message` as it came.
    /// This sets the socket's `on_message` handler. The socket leaves its rooms once it
    /// has closed for good (or when that handler is replaced).
    ///
    /// ```
    /// let rooms = unisock::resume::Rooms::new(Default::default());
    /// let ws = unisock::WebSocket::new();
    /// rooms.attach(&ws, |_ws, msg| println!("{msg}"));
    /// ```
    pub fn attach(
        &self,
        ws: &WebSocket,
        on_message: impl Fn(&WebSocket, MsgEvent) + Send + Sync + 'static,
    ) {
        attach(self, ws, on_message);
    }

    /// Called after a socket joined a room (or resumed it), with the room's name: e.g.
    /// to greet a client in its inbox. Runs with no lock held, so it may publish.
    ///
    /// ```
    /// let rooms = unisock::resume::Rooms::new(Default::default());
    /// rooms.on_join(|ws, room| println!("{} joined {room}", ws.id()));
    /// ```
    pub fn on_join(&self, f: impl Fn(&WebSocket, &str) + Send + Sync + 'static) {
        set_hook(&self.inner.on_join, f);
    }

    /// Removes `ws` from every room now (an attached socket leaves them by itself once it
    /// has closed).
    ///
    /// ```
    /// let rooms = unisock::resume::Rooms::new(Default::default());
    /// rooms.detach(&unisock::WebSocket::new());
    /// ```
    pub fn detach(&self, ws: &WebSocket) {
        self.state().detach(ws.id());
    }

    /// Gives `msg` the next position in `room`, keeps it in the history and sends it to
    /// the room's sockets. A socket whose send queue is full is closed with 1013 (try
    /// again later): its client reconnects and resumes after the last message it got.
    ///
    /// ```
    /// let rooms = unisock::resume::Rooms::new(Default::default());
    /// let at = rooms.publish("lobby", unisock::MsgEvent::Text("hi".into()));
    /// assert_eq!(at.offset, 1);
    /// ```
    pub fn publish(&self, room: &str, msg: MsgEvent) -> Position {
        let now = self.inner.origin.elapsed();
        let payload = Arc::new(msg);
        let mut state = self.state();
        let at = state.history.append(room, payload.clone(), now);
        let frame = Frame::message(room, at, &payload);
        state.members.send_all(room, std::slice::from_ref(&frame));
        at
    }

    /// Publishes `msg` to `ws`'s inbox (a room of its client's own, asked for with
    /// [`RoomClient::join_inbox`](super::RoomClient::join_inbox)): delivered once and in
    /// order across reconnects like any room message, or reported missing. `None` when the
    /// socket has no inbox.
    ///
    /// ```
    /// let rooms = unisock::resume::Rooms::new(Default::default());
    /// let ws = unisock::WebSocket::new();
    /// assert_eq!(rooms.send_to(&ws, unisock::MsgEvent::Text("psst".into())), None);
    /// ```
    pub fn send_to(&self, ws: &WebSocket, msg: MsgEvent) -> Option<Position> {
        let inbox = self.inbox_of(ws)?;
        Some(self.publish(&inbox, msg))
    }

    /// The name of `ws`'s inbox, if its client asked for one.
    ///
    /// ```
    /// let rooms = unisock::resume::Rooms::new(Default::default());
    /// assert_eq!(rooms.inbox_of(&unisock::WebSocket::new()), None);
    /// ```
    #[must_use]
    pub fn inbox_of(&self, ws: &WebSocket) -> Option<String> {
        self.state().members.inbox(ws.id())
    }

    /// How many sockets are in `room`.
    ///
    /// ```
    /// assert_eq!(unisock::resume::Rooms::new(Default::default()).members("lobby"), 0);
    /// ```
    #[must_use]
    pub fn members(&self, room: &str) -> usize {
        self.state().members.count(room)
    }

    /// Payload bytes the history keeps, over all rooms.
    ///
    /// ```
    /// assert_eq!(unisock::resume::Rooms::new(Default::default()).history_bytes(), 0);
    /// ```
    #[must_use]
    pub fn history_bytes(&self) -> usize {
        self.state().history.bytes()
    }

    /// How many rooms the history holds. A room goes once its messages all went (trimmed
    /// or expired) and no socket is in it: a client resuming it later is told of a new
    /// epoch. So rooms made per client (inboxes) do not pile up.
    ///
    /// ```
    /// let rooms = unisock::resume::Rooms::new(Default::default());
    /// rooms.publish("lobby", unisock::MsgEvent::Text("hi".into()));
    /// assert_eq!(rooms.history_rooms(), 1);
    /// ```
    #[must_use]
    pub fn history_rooms(&self) -> usize {
        self.state().history.rooms()
    }

    fn join(&self, ws: &WebSocket, room: &str, since: Option<Position>) {
        if room == NEW_INBOX {
            return self.join(ws, &new_inbox_name(), None);
        }
        let now = self.inner.origin.elapsed();
        let mut state = self.state();
        let replay = state.history.replay(room, since, now);
        let mut frames = Vec::with_capacity(replay.messages.len() + 1);
        frames.extend(opening(room, since, replay.head, replay.gap));
        frames.extend(
            replay
                .messages
                .iter()
                .map(|(at, payload)| Frame::message(room, *at, payload)),
        );
        // A socket that is gone, or was closed for being too slow, resumes on reconnecting.
        if frames.iter().all(|frame| send(ws, frame)) {
            state.members.add(ws, room);
            drop(state);
            call(&self.inner.on_join, ws, room);
        }
    }

    /// The state, with the sockets closed since the last look taken out of their rooms and
    /// the rooms nobody needs any more forgotten (nothing to do on most calls).
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing that can panic runs under this lock: sends only queue.
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for id in self.inner.departed.take() {
            state.detach(&id);
        }
        state.forget_unneeded();
        state
    }
}

/// Queues `frame` on `ws`; false if the socket is gone or was closed for being too slow.
pub(super) fn send(ws: &WebSocket, frame: &MsgEvent) -> bool {
    let sent = match frame {
        MsgEvent::Text(t) => ws.send_text(t),
        MsgEvent::Binary(b) => ws.send_binary(b),
    };
    match sent {
        Ok(()) => true,
        Err(Error::Capacity { .. } | Error::OverBudget { .. }) => {
            let _ = ws.close(TOO_SLOW, "too slow: reconnect to resume");
            false
        }
        Err(_) => false,
    }
}

/// The sockets in each room, and the rooms of each socket.
#[derive(Default)]
pub(super) struct Members {
    /// The sockets in each room, by id.
    by_room: HashMap<Arc<str>, HashMap<String, WebSocket>>,
    /// The rooms of each socket, by id.
    by_socket: HashMap<String, HashSet<Arc<str>>>,
    /// Each socket's inbox, by id.
    inboxes: HashMap<String, Arc<str>>,
}

impl Members {
    /// The name of `ws`'s inbox, if it joined one.
    pub(super) fn inbox(&self, id: &str) -> Option<String> {
        self.inboxes.get(id).map(|name| name.to_string())
    }

    pub(super) fn add(&mut self, ws: &WebSocket, room: &str) {
        let room: Arc<str> = match self.by_room.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => room.into(),
        };
        self.by_room
            .entry(room.clone())
            .or_default()
            .insert(ws.id().to_string(), ws.clone());
        if room.starts_with('@') {
            self.inboxes.insert(ws.id().to_string(), room.clone());
        }
        self.by_socket
            .entry(ws.id().to_string())
            .or_default()
            .insert(room);
    }

    /// Takes socket `id` out of `room`; whether that left the room without members.
    pub(super) fn remove(&mut self, id: &str, room: &str) -> bool {
        let mut left_empty = false;
        if let Some(sockets) = self.by_room.get_mut(room) {
            sockets.remove(id);
            if sockets.is_empty() {
                self.by_room.remove(room);
                left_empty = true;
            }
        }
        if let Some(rooms) = self.by_socket.get_mut(id) {
            rooms.remove(room);
            if rooms.is_empty() {
                self.by_socket.remove(id);
            }
        }
        left_empty
    }

    /// Takes socket `id` out of every room; the rooms that left without members.
    pub(super) fn detach(&mut self, id: &str) -> Vec<Arc<str>> {
        self.inboxes.remove(id);
        let rooms = self.by_socket.remove(id).unwrap_or_default();
        let mut left_empty = Vec::new();
        for room in rooms {
            if let Some(sockets) = self.by_room.get_mut(&room) {
                sockets.remove(id);
                if sockets.is_empty() {
                    self.by_room.remove(&room);
                    left_empty.push(room);
                }
            }
        }
        left_empty
    }

    pub(super) fn count(&self, room: &str) -> usize {
        self.by_room.get(room).map_or(0, HashMap::len)
    }

    /// Sends `frames` to every socket in `room`, in order; removes those that are gone.
    pub(super) fn send_all(&mut self, room: &str, frames: &[MsgEvent]) {
        let mut gone = Vec::new();
        if let Some(sockets) = self.by_room.get(room) {
            for (id, ws) in sockets {
                if !frames.iter().all(|frame| send(ws, frame)) {
                    gone.push(id.clone());
                }
            }
        }
        for id in gone {
            self.remove(&id, room);
        }
    }
}

/// Calls the join hook in `slot`, if set.
pub(super) fn call(slot: &Mutex<Option<JoinHook>>, ws: &WebSocket, room: &str) {
    let hook = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(hook) = hook {
        hook(ws, room);
    }
}

/// Milliseconds since 1970: a new epoch, later than any this machine made before.
pub(super) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A new inbox's name: `@` and 128 random bits in hex, so only its client can name it.
pub(super) fn new_inbox_name() -> String {
    format!("@{}", random_id())
}

/// 128 random bits in hex: a name no other process makes.
pub(super) fn random_id() -> String {
    let mut key = [0u8; 16];
    crate::native::rng::fill(&mut key);
    format!("{:032x}", u128::from_be_bytes(key))
}

/// What a join is answered with before the messages: where a fresh join starts, or the
/// gap a resume must be told of.
pub(super) fn opening(
    room: &str,
    since: Option<Position>,
    head: Position,
    gap: Option<(GapReason, Position)>,
) -> Option<MsgEvent> {
    let frame = match (since, gap) {
        (None, _) => Frame::Joined {
            room: room.to_string(),
            at: head,
        },
        (Some(_), Some((reason, at))) => Frame::Gap {
            room: room.to_string(),
            reason,
            at,
        },
        (Some(_), None) => return None,
    };
    Some(frame.encode())
}

/// What serves joins and leaves: one process's rooms, or rooms over Redis.
pub(super) trait Serve: Clone + Send + Sync + 'static {
    fn join(&self, ws: &WebSocket, room: &str, since: Option<Position>);
    fn leave(&self, ws: &WebSocket, room: &str);
    /// Where attached sockets that closed are told.
    fn departed(&self) -> &Departed;
}

/// The ids of attached sockets that closed for good since the rooms last looked, taken
/// out of their rooms by the next call that locks the rooms' state. A socket's handlers
/// are dropped when it closes, and with them the [`Departure`] that reports it here:
/// reported from wherever the close happens, so this lock is only ever held alone.
#[derive(Default)]
pub(super) struct Departed {
    any: AtomicBool,
    ids: Mutex<Vec<String>>,
}

impl Departed {
    fn push(&self, id: String) {
        self.ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(id);
        self.any.store(true, Ordering::Release);
    }

    /// The ids reported since the last call (no lock taken when there are none).
    pub(super) fn take(&self) -> Vec<String> {
        if !self.any.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        std::mem::take(
            &mut *self
                .ids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Held by an attached socket's message handler: reports the socket to its rooms when the
/// handler is dropped (the socket closed for good, or the handler was replaced).
struct Departure<S: Serve> {
    rooms: S,
    id: String,
}

impl<S: Serve> Drop for Departure<S> {
    fn drop(&mut self) {
        self.rooms.departed().push(std::mem::take(&mut self.id));
    }
}

impl Serve for Rooms {
    fn join(&self, ws: &WebSocket, room: &str, since: Option<Position>) {
        Rooms::join(self, ws, room, since);
    }

    fn leave(&self, ws: &WebSocket, room: &str) {
        let mut state = self.state();
        if state.members.remove(ws.id(), room) {
            state.history.forget_if_empty(room);
        }
    }

    fn departed(&self) -> &Departed {
        &self.inner.departed
    }
}

/// Serves the rooms' frames on `ws`: joins and leaves go to `rooms`, application
/// messages to `on_message`; a plain peer's messages go to `on_message` as they came.
pub(super) fn attach(
    rooms: &impl Serve,
    ws: &WebSocket,
    on_message: impl Fn(&WebSocket, MsgEvent) + Send + Sync + 'static,
) {
    let (rooms, socket) = (rooms.clone(), ws.clone());
    let departure = Departure {
        rooms: rooms.clone(),
        id: ws.id().to_string(),
    };
    ws.on_message(move |msg| {
        let _ = &departure; // dropped with the handler
        if socket.protocol() != SUBPROTOCOL {
            return on_message(&socket, msg);
        }
        match Frame::decode(msg) {
            Ok(Frame::Send { payload }) => on_message(&socket, payload),
            Ok(Frame::Join { room, since }) => rooms.join(&socket, &room, since),
            Ok(Frame::Leave { room }) => rooms.leave(&socket, &room),
            Ok(_) | Err(_) => {
                let _ = socket.close(1008, "not a unisock.v1 client frame");
            }
        }
    });
}

/// Sets the join hook in `slot`.
pub(super) fn set_hook(
    slot: &Mutex<Option<JoinHook>>,
    f: impl Fn(&WebSocket, &str) + Send + Sync + 'static,
) {
    *slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(f));
}
