//! The chat client both front ends share: the browser page (`chat_page.rs`, wasm32) and the
//! terminal client (`chat_client.rs`, native). It compiles for both targets without a
//! single `cfg`: everything here is `unisock::WebSocket`'s one API.
//!
//! The front ends only render [`ChatEvent`]s and hand typed lines to [`Chat::submit`].
//!
//! The chat goes through resumable rooms (`unisock::resume`): the client is in the room
//! "lobby" and in an inbox of its own (where the server welcomes it and whispers reach
//! it). After a lost connection it gets every line it missed, once and in order, or a
//! line saying how many it missed ("* missed 3 messages").

use std::time::Duration;

use unisock::resume::{Gap, Position, RoomClient, SUBPROTOCOL};
use unisock::{MsgEvent, Reconnect, WasmNotSendSync, WebSocket};

/// What the chat server sends a newcomer first, followed by its id (see `chat_server.rs`).
pub(crate) const WELCOME: &str = "welcome, you are ";

/// What a front end shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChatEvent {
    /// The connection status changed: connecting, connected, reconnecting, disconnected.
    Status(String),
    /// A line for the message list: someone said something, joined or left.
    Line(String),
}

/// What a front end's status starts with while the connection is being re-established.
pub(crate) const RECONNECTING: &str = "reconnecting…";

/// How the chat reconnects when it loses the server: soon, then backing off to every 5 s,
/// forever; up to 64 KiB of lines typed meanwhile are said once it is back.
fn reconnect_policy() -> Reconnect {
    Reconnect::default()
        .delays(Duration::from_millis(250), Duration::from_secs(5))
        .buffer(64 * 1024)
}

/// The room every participant is in (`chat_server.rs` publishes the chat to it).
pub(crate) const LOBBY: &str = "lobby";

/// One chat connection.
#[derive(Clone)]
pub(crate) struct Chat {
    ws: WebSocket,
    rooms: RoomClient,
}

impl Chat {
    /// Connects `ws` (a new socket, with what the front end sets on it: natively, e.g. its
    /// proxy) to the chat server's `/ws` at `url`; every status change and received line
    /// goes to `show`. Returns once connected. When the connection is lost, it reconnects
    /// (showing [`RECONNECTING`]); the server then welcomes it again. `saved` holds the
    /// [`positions`](Chat::positions) of an earlier connection (a page before its reload):
    /// the chat then goes on from there, lobby and inbox, with every line said meanwhile.
    pub(crate) async fn connect<F>(
        ws: WebSocket,
        url: &str,
        saved: &[(String, Position)],
        show: F,
    ) -> unisock::Result<Chat>
    where
        F: Fn(ChatEvent) + Clone + WasmNotSendSync + 'static,
    {
        let target = url.to_string();
        Self::connect_with(ws, url, saved, show, |ws| async move {
            ws.open(&target, &[SUBPROTOCOL]).await
        })
        .await
    }

    /// As [`Chat::connect`], with `open` opening the socket instead of `WebSocket::open`:
    /// natively, e.g. over a Unix socket (`open_over`), which does not reconnect. `open`
    /// offers [`SUBPROTOCOL`].
    pub(crate) async fn connect_with<F, O, Opened>(
        ws: WebSocket,
        url: &str,
        saved: &[(String, Position)],
        show: F,
        open: O,
    ) -> unisock::Result<Chat>
    where
        F: Fn(ChatEvent) + Clone + WasmNotSendSync + 'static,
        O: FnOnce(WebSocket) -> Opened,
        Opened: std::future::Future<Output = unisock::Result<()>>,
    {
        let rooms = RoomClient::new(&ws);
        rooms.on_message({
            let show = show.clone();
            move |_room, _at, msg| render(&show, msg)
        });
        // A server without resumable rooms (an echo server, say): its plain messages.
        rooms.on_plain({
            let show = show.clone();
            move |msg| render(&show, msg)
        });
        rooms.on_gap({
            let show = show.clone();
            move |gap| show(ChatEvent::Line(missed(&gap)))
        });
        ws.set_reconnect(Some(reconnect_policy()));
        ws.on_reconnecting({
            let show = show.clone();
            move |attempt, delay| {
                show(ChatEvent::Status(format!(
                    "{RECONNECTING} (attempt {attempt}, in {} ms)",
                    delay.as_millis()
                )))
            }
        });
        rooms.on_open({
            let (show, url) = (show.clone(), url.to_string());
            move || show(ChatEvent::Status(format!("connected to {url}")))
        });
        ws.on_close({
            let show = show.clone();
            move |ev| show(ChatEvent::Status(format!("disconnected ({ev})")))
        });
        ws.on_error({
            let show = show.clone();
            move |e| show(ChatEvent::Status(format!("error: {e}")))
        });
        let lobby = saved.iter().find(|(room, _)| room == LOBBY);
        match lobby {
            Some((_, at)) => rooms.join_at(LOBBY, *at)?,
            None => rooms.join(LOBBY)?,
        }
        match saved.iter().find(|(room, _)| room.starts_with('@')) {
            Some((inbox, at)) => rooms.join_at(inbox, *at)?,
            None => rooms.join_inbox()?,
        }
        show(ChatEvent::Status(format!("connecting to {url}…")));
        if let Err(e) = open(ws.clone()).await {
            show(ChatEvent::Status(format!(
                "could not connect to {url}: {e}"
            )));
            return Err(e);
        }
        Ok(Chat { ws, rooms })
    }

    /// Handles a line the user typed: `/quit` leaves, blank lines are ignored, anything
    /// else is said to the room (while reconnecting: once the connection is back).
    ///
    /// # Errors
    /// When the connection is closed, or too much waits for the reconnect.
    pub(crate) fn submit(&self, line: &str) -> unisock::Result<()> {
        match line.trim() {
            "" => Ok(()),
            "/quit" => self.leave(),
            text => self.rooms.send(MsgEvent::Text(text.to_string())),
        }
    }

    /// Leaves the room: closes the connection normally.
    ///
    /// # Errors
    /// When the connection was never opened.
    pub(crate) fn leave(&self) -> unisock::Result<()> {
        self.ws.close(1000, "bye")
    }

    /// Where the chat stands in each of its rooms (the lobby and its inbox), for a later
    /// [`connect`](Chat::connect) to go on from.
    #[allow(dead_code)] // the page keeps them across a reload; the terminal client has none
    pub(crate) fn positions(&self) -> Vec<(String, Position)> {
        let rooms = self.rooms.rooms();
        rooms
            .into_iter()
            .filter_map(|room| Some((room.clone(), self.rooms.position(&room)?)))
            .collect()
    }

    /// Runs the connection until it closes for good (reconnects included): the event loop
    /// natively; in the browser it returns at once (the browser runs the events).
    pub(crate) async fn run(&self) {
        self.ws.read().await
    }
}

/// Shows a received chat line (the server's welcome as the status).
fn render(show: &impl Fn(ChatEvent), msg: MsgEvent) {
    match msg {
        MsgEvent::Text(line) => match line.strip_prefix(WELCOME) {
            Some(id) => show(ChatEvent::Status(format!("connected as {id}"))),
            None => show(ChatEvent::Line(line)),
        },
        MsgEvent::Binary(data) => {
            show(ChatEvent::Line(format!("({} bytes of binary)", data.len())))
        }
    }
}

/// The line a gap is shown as.
fn missed(gap: &Gap) -> String {
    let whose = if gap.room == LOBBY { "" } else { " private" };
    match gap.missed() {
        Some(1) => format!("* missed 1{whose} message"),
        Some(n) => format!("* missed {n}{whose} messages"),
        None => format!("* the server restarted: earlier{whose} messages may be missing"),
    }
}
