//! A browser room client for the resumable-delivery fault test (`tests/resume_faults.rs`,
//! driven by `tests/e2e/rooms_pages.mjs`): joins the given rooms with reconnection on, and
//! logs every room message and gap it is given, for the test to check as it checks its
//! native clients.
//!
//! Built for wasm32 and bound with `wasm-bindgen --target web` by `./build.sh redis_test`.
#![cfg(target_arch = "wasm32")]

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use unisock::resume::{RoomClient, SUBPROTOCOL};
use unisock::{Reconnect, WebSocket};
use wasm_bindgen::prelude::*;

/// One page's room client and what it has been given so far.
#[wasm_bindgen]
pub struct Probe {
    rooms: RoomClient,
    /// Lines not yet taken: `m ROOM EPOCH OFFSET` per message, `g ROOM REASON EPOCH FROM
    /// TO` per gap (`TO` is `-` when unknown).
    log: Rc<RefCell<String>>,
    opened: Rc<Cell<bool>>,
    error: Rc<RefCell<Option<String>>>,
}

#[wasm_bindgen]
impl Probe {
    /// Joins `rooms` (comma-separated) and opens `url`, reconnecting for as long as the page
    /// lives, at most 200 ms apart (as the native clients of the test do).
    #[wasm_bindgen(constructor)]
    pub fn new(url: String, rooms: &str) -> Result<Probe, JsError> {
        let ws = WebSocket::new();
        ws.set_reconnect(Some(
            Reconnect::default()
                .delays(Duration::from_millis(10), Duration::from_millis(200))
                .max_attempts(None),
        ));
        let client = RoomClient::new(&ws);
        let log = Rc::new(RefCell::new(String::new()));
        let messages = log.clone();
        client.on_message(move |room, at, _| {
            let _ = writeln!(messages.borrow_mut(), "m {room} {} {}", at.epoch, at.offset);
        });
        let gaps = log.clone();
        client.on_gap(move |gap| {
            let to = gap.to.map_or("-".to_string(), |to| to.to_string());
            let _ = writeln!(
                gaps.borrow_mut(),
                "g {} {} {} {} {to}",
                gap.room,
                gap.reason.as_str(),
                gap.epoch,
                gap.from
            );
        });
        for room in rooms.split(',') {
            client.join(room)?;
        }
        let (opened, error) = (Rc::new(Cell::new(false)), Rc::new(RefCell::new(None)));
        let (done, failed) = (opened.clone(), error.clone());
        wasm_bindgen_futures::spawn_local(async move {
            match ws.open(&url, &[SUBPROTOCOL]).await {
                Ok(()) => done.set(true),
                Err(e) => *failed.borrow_mut() = Some(e.to_string()),
            }
        });
        Ok(Probe {
            rooms: client,
            log,
            opened,
            error,
        })
    }

    /// Whether the first connection opened.
    pub fn opened(&self) -> bool {
        self.opened.get()
    }

    /// Why the first connection failed, if it did.
    pub fn error(&self) -> Option<String> {
        self.error.borrow().clone()
    }

    /// The lines logged since the last call.
    pub fn take_events(&self) -> String {
        std::mem::take(&mut *self.log.borrow_mut())
    }

    /// `ROOM EPOCH OFFSET` per room the client holds a position in, a line each.
    pub fn positions(&self) -> String {
        let mut out = String::new();
        for room in self.rooms.rooms() {
            if let Some(at) = self.rooms.position(&room) {
                let _ = writeln!(out, "{room} {} {}", at.epoch, at.offset);
            }
        }
        out
    }
}
