//! The resuming client, written once on the public [`WebSocket`] facade, so it is the same
//! natively and in the browser.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::send_sync::{handler, Handler};
use crate::{MsgEvent, ReadyState, Result, WasmNotSendSync, WebSocket};

use super::tracker::{Delivery, Tracker};
use super::wire::{valid_room, Frame};
use super::{Gap, Position, SUBPROTOCOL};

#[derive(Default)]
struct State {
    tracker: Tracker,
    on_open: Option<Handler<()>>,
    on_message: Option<Handler<(String, Position, MsgEvent)>>,
    on_gap: Option<Handler<Gap>>,
    on_plain: Option<Handler<MsgEvent>>,
}

/// Rooms over one [`WebSocket`], delivered once and in order across reconnects, or
/// reported missing with [`on_gap`](RoomClient::on_gap).
///
/// Open the socket offering [`SUBPROTOCOL`], with reconnect on so that a lost connection
/// comes back: on every (re)connection the client presents its position in each room and
/// the server replays what it missed. The client takes over the socket's `on_open` and
/// `on_message` handlers (use its own instead); `on_close`, `on_error` and the rest stay
/// the socket's. A server that does not select the subprotocol is closed with 1002,
/// unless [`on_plain`](RoomClient::on_plain) is set.
///
/// ```no_run
/// # async fn demo() -> unisock::Result<()> {
/// use unisock::resume::{RoomClient, SUBPROTOCOL};
/// use unisock::{Reconnect, WebSocket};
///
/// let ws = WebSocket::new();
/// ws.set_reconnect(Some(Reconnect::default()));
/// let rooms = RoomClient::new(&ws);
/// rooms.on_message(|room, at, msg| println!("{room} #{}: {msg}", at.offset));
/// rooms.on_gap(|gap| println!("missed {:?} messages in {}", gap.missed(), gap.room));
/// rooms.join("lobby")?;
/// ws.open("ws://127.0.0.1:8080/ws", &[SUBPROTOCOL]).await?;
/// ws.read().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RoomClient {
    ws: WebSocket,
    state: Arc<Mutex<State>>,
}

impl RoomClient {
    /// A client for the rooms of `ws`: installs its `on_open` and `on_message` handlers.
    ///
    /// ```
    /// let rooms = unisock::resume::RoomClient::new(&unisock::WebSocket::new());
    /// assert!(rooms.rooms().is_empty());
    /// ```
    #[must_use]
    pub fn new(ws: &WebSocket) -> Self {
        // In the browser the handlers are `Rc`s: everything runs on one thread there.
        #[allow(clippy::arc_with_non_send_sync)]
        let state = Arc::new(Mutex::new(State::default()));
        let client = RoomClient {
            ws: ws.clone(),
            state,
        };
        let on_open = client.clone();
        ws.on_open(move || on_open.opened());
        let on_message = client.clone();
        ws.on_message(move |msg| on_message.received(msg));
        client
    }

    /// Called on every (re)connection, after the rooms were rejoined.
    ///
    /// ```
    /// let rooms = unisock::resume::RoomClient::new(&unisock::WebSocket::new());
    /// rooms.on_open(|| println!("connected"));
    /// ```
    pub fn on_open(&self, f: impl Fn() + WasmNotSendSync + 'static) {
        self.state().on_open = Some(handler(move |()| f()));
    }

    /// Called with each room message, once and in order: the room, the message's position
    /// and the message.
    ///
    /// ```
    /// let rooms = unisock::resume::RoomClient::new(&unisock::WebSocket::new());
    /// rooms.on_message(|room, at, msg| println!("{room} {at}: {msg}"));
    /// ```
    pub fn on_message(&self, f: impl Fn(&str, Position, MsgEvent) + WasmNotSendSync + 'static) {
        self.state().on_message = Some(handler(
            move |(room, at, msg): (String, Position, MsgEvent)| f(&room, at, msg),
        ));
    }

    /// Called when messages of a room will never come, with their exact range when known.
    ///
    /// ```
    /// let rooms = unisock::resume::RoomClient::new(&unisock::WebSocket::new());
    /// rooms.on_gap(|gap| eprintln!("missed {:?} in {}", gap.missed(), gap.room));
    /// ```
    pub fn on_gap(&self, f: impl Fn(Gap) + WasmNotSendSync + 'static) {
        self.state().on_gap = Some(handler(f));
    }

    /// Talks plainly to a server that does not select [`SUBPROTOCOL`] instead of closing:
    /// its messages reach `f` as they came, and [`send`](RoomClient::send) sends as
    /// [`WebSocket::send`] does (no rooms, no resuming).
    ///
    /// ```
    /// let rooms = unisock::resume::RoomClient::new(&unisock::WebSocket::new());
    /// rooms.on_plain(|msg| println!("{msg}"));
    /// ```
    pub fn on_plain(&self, f: impl Fn(MsgEvent) + WasmNotSendSync + 'static) {
        self.state().on_plain = Some(handler(f));
    }

    /// Joins `room`: live messages from now on (and, after a reconnection, those missed).
    /// Sent at once if the socket is open, otherwise on the next connection.
    ///
    /// # Errors
    /// [`Error::InvalidRoom`](crate::Error::InvalidRoom) for a name that is empty, longer
    /// than 200 bytes, holds whitespace or control characters, or is `@` alone (which asks
    /// for an inbox: [`join_inbox`](RoomClient::join_inbox)); the socket's send error.
    ///
    /// ```
    /// let rooms = unisock::resume::RoomClient::new(&unisock::WebSocket::new());
    /// rooms.join("lobby")?;
    /// assert!(rooms.join("not a room").is_err());
    /// assert!(rooms.join("@").is_err()); // that is `join_inbox`
    /// # Ok::<(), unisock::Error>(())
    /// ```
    pub fn join(&self, room: &str) -> Result<()> {
        check_room(room)?;
        let frame = self.state().tracker.join(room);
        self.send_if_open(&frame)
    }

    /// Joins `room` holding position `at` (kept across a page reload or a process restart):
    /// the server replays what came after it.
    ///
    /// # Errors
    /// As [`join`](RoomClient::join).
    ///
    /// ```
    /// use unisock::resume::{Position, RoomClient};
    /// let rooms = RoomClient::new(&unisock::WebSocket::new());
    /// rooms.join_at("lobby", Position { epoch: 1, offset: 41 })?;
    /// assert_eq!(rooms.position("lobby"), Some(Position { epoch: 1, offset: 41 }));
    /// # Ok::<(), unisock::Error>(())
    /// ```
    pub fn join_at(&self, room: &str, at: Position) -> Result<()> {
        check_room(room)?;
        let frame = self.state().tracker.join_at(room, at);
        self.send_if_open(&frame)
    }

    /// Asks the server for an inbox: a room of this client's own, which the server names
    /// and sends to (natively `Rooms::send_to`), delivered once and in order across
    /// reconnects like any room, to [`on_message`](RoomClient::on_message) with the
    /// inbox's name as the room.
    ///
    /// # Errors
    /// The socket's send error.
    ///
    /// ```
    /// let rooms = unisock::resume::RoomClient::new(&unisock::WebSocket::new());
    /// rooms.join_inbox()?;
    /// assert_eq!(rooms.inbox(), None); // named by the server once connected
    /// # Ok::<(), unisock::Error>(())
    /// ```
    pub fn join_inbox(&self) -> Result<()> {
        let frame = self.state().tracker.join_inbox();
        match frame {
            Some(frame) => self.send_if_open(&frame),
            None => Ok(()),
        }
    }

    /// The inbox's name, once the server gave it.
    ///
    /// ```
    /// assert_eq!(unisock::resume::RoomClient::new(&unisock::WebSocket::new()).inbox(), None);
    /// ```
    #[must_use]
    pub fn inbox(&self) -> Option<String> {
        self.state().tracker.inbox().map(str::to_string)
    }

    /// Leaves `room`.
    ///
    /// # Errors
    /// The socket's send error.
    ///
    /// ```
    /// let rooms = unisock::resume::RoomClient::new(&unisock::WebSocket::new());
    /// rooms.leave("lobby")?; // not joined: nothing to do
    /// # Ok::<(), unisock::Error>(())
    /// ```
    pub fn leave(&self, room: &str) -> Result<()> {
        let frame = self.state().tracker.leave(room);
        match frame {
            Some(frame) => self.send_if_open(&frame),
            None => Ok(()),
        }
    }

    /// Sends an application message to the server (not to a room: the server decides
    /// what to do with it).
    ///
    /// # Errors
    /// The socket's send error ([`Error::NotOpen`](crate::Error::NotOpen) before it is
    /// open).
    ///
    /// ```
    /// let rooms = unisock::resume::RoomClient::new(&unisock::WebSocket::new());
    /// assert!(rooms.send(unisock::MsgEvent::Text("hi".into())).is_err()); // not open yet
    /// ```
    pub fn send(&self, msg: MsgEvent) -> Result<()> {
        let plain = self.state().on_plain.is_some()
            && self.ws.ready_state() == ReadyState::Open
            && self.ws.protocol() != SUBPROTOCOL;
        if plain {
            return self.ws.send(msg);
        }
        self.ws.send(Frame::Send { payload: msg }.encode())
    }

    /// The joined rooms.
    ///
    /// ```
    /// let rooms = unisock::resume::RoomClient::new(&unisock::WebSocket::new());
    /// rooms.join("b")?;
    /// rooms.join("a")?;
    /// assert_eq!(rooms.rooms(), ["a", "b"]);
    /// # Ok::<(), unisock::Error>(())
    /// ```
    #[must_use]
    pub fn rooms(&self) -> Vec<String> {
        self.state().tracker.rooms()
    }

    /// The last position delivered (or skipped by a gap) in `room`: save it to resume
    /// from it later with [`join_at`](RoomClient::join_at).
    ///
    /// ```
    /// let rooms = unisock::resume::RoomClient::new(&unisock::WebSocket::new());
    /// assert_eq!(rooms.position("lobby"), None);
    /// ```
    #[must_use]
    pub fn position(&self, room: &str) -> Option<Position> {
        self.state().tracker.position(room)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A handler never runs under this lock, so it cannot be poisoned by one.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn send_if_open(&self, frame: &Frame) -> Result<()> {
        if self.ws.ready_state() == ReadyState::Open && self.ws.protocol() == SUBPROTOCOL {
            self.ws.send(frame.encode())
        } else {
            Ok(())
        }
    }

    fn opened(&self) {
        if self.ws.protocol() != SUBPROTOCOL {
            let (plain, on_open) = {
                let state = self.state();
                (state.on_plain.is_some(), state.on_open.clone())
            };
            match (plain, on_open) {
                (true, Some(f)) => f(()),
                (true, None) => {}
                (false, _) => {
                    let _ = self.ws.close(1002, "the server did not select unisock.v1");
                }
            }
            return;
        }
        let (joins, on_open) = {
            let mut state = self.state();
            (state.tracker.rejoin(), state.on_open.clone())
        };
        for frame in joins {
            // A failed send closes the socket; reconnecting rejoins.
            if self.ws.send(frame.encode()).is_err() {
                return;
            }
        }
        if let Some(f) = on_open {
            f(());
        }
    }

    fn received(&self, msg: MsgEvent) {
        if self.ws.protocol() != SUBPROTOCOL {
            let on_plain = self.state().on_plain.clone();
            if let Some(f) = on_plain {
                f(msg);
            }
            return;
        }
        let Ok(frame) = Frame::decode(msg) else {
            let _ = self.ws.close(1008, "not a unisock.v1 frame");
            return;
        };
        let (deliveries, ask, on_message, on_gap) = {
            let mut state = self.state();
            let (deliveries, ask) = state.tracker.receive(frame);
            (
                deliveries,
                ask,
                state.on_message.clone(),
                state.on_gap.clone(),
            )
        };
        if let Some(ask) = ask {
            let _ = self.ws.send(ask.encode());
        }
        for delivery in deliveries {
            match delivery {
                Delivery::Message { room, at, payload } => {
                    if let Some(f) = &on_message {
                        f((room, at, payload));
                    }
                }
                Delivery::Gap(gap) => {
                    if let Some(f) = &on_gap {
                        f(gap);
                    }
                }
            }
        }
    }
}

fn check_room(room: &str) -> Result<()> {
    // `@` alone asks the server for an inbox: `join_inbox` says so.
    if valid_room(room) && room != "@" {
        Ok(())
    } else {
        Err(crate::Error::InvalidRoom(room.into()))
    }
}
