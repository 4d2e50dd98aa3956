//! The server's rooms in one process: a [`History`] and the sockets that joined each room.
//!
//! A join and a publish take the same lock, and a socket's messages leave in the order
//! they are queued, so a joining socket gets its replay and then every later message, with
//! nothing between them lost or doubled.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::server::PendingUpgrade;
use crate::{Error, MsgEvent, WebSocket};

use super::history::{History, HistoryLimits};
use super::wire::Frame;
use super::{Position, SUBPROTOCOL};

/// The close code for a socket that cannot keep up (its send queue is full): it reconnects
/// and resumes from its position, so nothing is lost.
const TOO_SLOW: u16 = 1013;

struct State {
    history: History,
    /// The sockets in each room, by id.
    members: HashMap<Arc<str>, HashMap<String, WebSocket>>,
    /// The rooms of each socket, by id.
    joined: HashMap<String, HashSet<Arc<str>>>,
}

struct Inner {
    state: Mutex<State>,
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
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Rooms::with_epoch(epoch, limits)
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
                    members: HashMap::new(),
                    joined: HashMap::new(),
                }),
                origin: Instant::now(),
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
    /// This sets the socket's `on_message` handler.
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
        let (rooms, socket) = (self.clone(), ws.clone());
        ws.on_message(move |msg| {
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

    /// Removes `ws` from every room (call it when the socket has closed; sockets found
    /// closed by a publish are removed then).
    ///
    /// ```
    /// let rooms = unisock::resume::Rooms::new(Default::default());
    /// rooms.detach(&unisock::WebSocket::new());
    /// ```
    pub fn detach(&self, ws: &WebSocket) {
        let mut state = self.state();
        if let Some(rooms) = state.joined.remove(ws.id()) {
            for room in rooms {
                remove_member(&mut state.members, &room, ws.id());
            }
        }
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
        let mut gone = Vec::new();
        if let Some(members) = state.members.get(room) {
            for (id, ws) in members {
                if !send(ws, &frame) {
                    gone.push(id.clone());
                }
            }
        }
        for id in gone {
            remove_member(&mut state.members, room, &id);
            if let Some(rooms) = state.joined.get_mut(&id) {
                rooms.remove(room);
            }
        }
        at
    }

    /// How many sockets are in `room`.
    ///
    /// ```
    /// assert_eq!(unisock::resume::Rooms::new(Default::default()).members("lobby"), 0);
    /// ```
    #[must_use]
    pub fn members(&self, room: &str) -> usize {
        self.state().members.get(room).map_or(0, HashMap::len)
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

    fn join(&self, ws: &WebSocket, room: &str, since: Option<Position>) {
        let now = self.inner.origin.elapsed();
        let mut state = self.state();
        let replay = state.history.replay(room, since, now);
        let mut frames = Vec::with_capacity(replay.messages.len() + 1);
        match (since, replay.gap) {
            (None, _) => frames.push(Frame::Joined {
                room: room.to_string(),
                at: replay.head,
            }),
            (Some(_), Some((reason, at))) => frames.push(Frame::Gap {
                room: room.to_string(),
                reason,
                at,
            }),
            (Some(_), None) => {}
        }
        let mut ok = frames.iter().all(|frame| send(ws, &frame.encode()));
        for (at, payload) in &replay.messages {
            ok = ok && send(ws, &Frame::message(room, *at, payload));
        }
        if !ok {
            return; // closed, or closed for being too slow: it resumes on reconnecting
        }
        let room: Arc<str> = match state.members.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => room.into(),
        };
        state
            .members
            .entry(room.clone())
            .or_default()
            .insert(ws.id().to_string(), ws.clone());
        state
            .joined
            .entry(ws.id().to_string())
            .or_default()
            .insert(room);
    }

    fn leave(&self, ws: &WebSocket, room: &str) {
        let mut state = self.state();
        remove_member(&mut state.members, room, ws.id());
        if let Some(rooms) = state.joined.get_mut(ws.id()) {
            rooms.remove(room);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing that can panic runs under this lock: sends only queue.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Queues `frame` on `ws`; false if the socket is gone or was closed for being too slow.
fn send(ws: &WebSocket, frame: &MsgEvent) -> bool {
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

fn remove_member(
    members: &mut HashMap<Arc<str>, HashMap<String, WebSocket>>,
    room: &str,
    id: &str,
) {
    if let Some(sockets) = members.get_mut(room) {
        sockets.remove(id);
        if sockets.is_empty() {
            members.remove(room);
        }
    }
}
