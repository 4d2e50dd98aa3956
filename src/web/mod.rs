//! The browser backend: a thin layer over `web_sys::WebSocket`.
//!
//! Contract: `Socket` implements every method that `socket.rs` forwards to, with the same
//! signatures as `native::Socket`. The socket owns its JS closures; they are released
//! (listeners removed, closures dropped) once the close event was delivered, or when the
//! last handle is dropped, so nothing leaks per connection.
//!
//! The lifecycle (open timeout, heartbeat, reconnect, messages kept while reconnecting) is
//! [`crate::session::Session`]'s: the browser's events are its inputs, one JS timer is
//! armed for its next timeout, and its actions are carried out here. A reconnect attempt
//! is a new browser `WebSocket` to the same URL with the same subprotocols.

mod convert;
mod timer;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, MessageEvent};

use crate::handlers::Handlers;
use crate::protocol::{CloseCode, Role};
use crate::session::{Action, Probe, Session, Time};
use crate::{CloseEvent, Error, MsgEvent, ReadyState, Result};
use timer::{defer_drop, Timer};

/// A byte stream a server socket could be upgraded over. The browser has no server
/// sockets: [`crate::WebSocket::upgrade`] always fails with [`Error::Unsupported`].
pub trait Transport: 'static {}
impl<T: 'static> Transport for T {}

thread_local! {
    /// How many sets of JS closures (a socket's listeners, a pending timer) are alive.
    static LIVE_LISTENER_SETS: Cell<usize> = const { Cell::new(0) };
}

/// The number of JS closure sets of browser sockets that are alive: the listeners of each
/// browser `WebSocket` (one per `open` and per reconnect attempt, removed after its close
/// event or a failed open) and each pending timer (a reconnect wait, a heartbeat check).
/// Tests use it to show that nothing leaks per connection; not part of the API.
#[doc(hidden)]
pub fn __live_listener_sets() -> usize {
    LIVE_LISTENER_SETS.with(Cell::get)
}

fn count_live(added: bool) {
    LIVE_LISTENER_SETS.with(|n| {
        n.set(if added {
            n.get() + 1
        } else {
            n.get().saturating_sub(1)
        });
    });
}

/// The listeners of one browser socket; dropping this removes them from the socket.
struct Listeners {
    ws: web_sys::WebSocket,
    _on_open: Closure<dyn FnMut(web_sys::Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
    _on_close: Closure<dyn FnMut(web_sys::CloseEvent)>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onerror(None);
        self.ws.set_onclose(None);
        count_live(false);
    }
}

/// The promise `open` awaits, settled by the first open, error or close event.
#[derive(Default)]
struct Pending {
    resolve: Option<js_sys::Function>,
    reject: Option<js_sys::Function>,
    /// Why the session gave up on the open (its timeout), returned by `open` instead of
    /// the rejection's text.
    error: Option<Error>,
}

/// Messages waiting for a handle that is used as a `Stream`.
#[derive(Default)]
struct Queue {
    items: VecDeque<MsgEvent>,
    waker: Option<Waker>,
    ended: bool,
}

/// A subscription to a socket's messages.
pub(crate) struct Messages(Rc<RefCell<Queue>>);

impl Messages {
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<MsgEvent>> {
        let mut queue = self.0.borrow_mut();
        if let Some(msg) = queue.items.pop_front() {
            return Poll::Ready(Some(msg));
        }
        if queue.ended {
            return Poll::Ready(None);
        }
        queue.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

struct Inner {
    id: String,
    stream: RefCell<Option<Rc<RefCell<Queue>>>>,
    /// The close event, once the socket is closed for good.
    close_event: RefCell<Option<CloseEvent>>,
    close_wakers: RefCell<Vec<Waker>>,
    /// The current browser socket (during a reconnect: the lost one, then the attempt's).
    ws: RefCell<Option<web_sys::WebSocket>>,
    url: RefCell<Option<String>>,
    /// The subprotocols `open` offered, offered again on reconnect.
    protocols: RefCell<Vec<String>>,
    allowed_origins: RefCell<Option<Vec<String>>>,
    handlers: RefCell<Handlers>,
    listeners: RefCell<Option<Listeners>>,
    pending: RefCell<Pending>,
    /// The lifecycle; never borrowed while a handler runs.
    session: RefCell<Session>,
    /// The one JS timer, armed for the session's next timeout, and that time.
    timer: RefCell<Option<(Timer, Time)>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(ws) = self.ws.get_mut() {
            if ws.ready_state() < web_sys::WebSocket::CLOSING {
                let _ = ws.close();
            }
        }
    }
}

/// A new browser socket to `url` offering `protocols`, receiving binary as `ArrayBuffer`.
fn connect(url: &str, protocols: &[String]) -> Result<web_sys::WebSocket> {
    // Omit the protocols argument when there are none (Chrome would offer "null").
    let ws = if protocols.is_empty() {
        web_sys::WebSocket::new(url)
    } else {
        let list: js_sys::Array = protocols.iter().map(|p| JsValue::from_str(p)).collect();
        web_sys::WebSocket::new_with_str_sequence(url, &list)
    }
    .map_err(convert::js_error)?;
    // ArrayBuffer, not Blob: a Blob needs a promise to read, which could reorder events.
    ws.set_binary_type(BinaryType::Arraybuffer);
    Ok(ws)
}

/// How many bytes `send_async` (and the `Sink`) let the browser buffer before waiting: the
/// browser sends whatever it is given, so this is the cap on what a fast sender queues.
pub(crate) const SEND_HIGH_WATER: usize = 1 << 20;

/// Waits for the next timer tick: the browser has no "drained" event, so what waits for
/// `bufferedAmount` to go down looks again then.
async fn tick() {
    let tick = js_sys::Promise::new(&mut |resolve, _| {
        let _ = timer::set_timeout(&resolve, 5);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(tick).await;
}

/// Milliseconds for a JS timer (at most `i32::MAX`, about 24 days).
fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// Browsers accept only 1000 and 3000-4999 as close codes from scripts.
fn script_may_send(code: CloseCode) -> bool {
    let code = code.as_u16();
    code == 1000 || (3000..=4999).contains(&code)
}

/// The session's clock: `Date.now()`, which windows and workers both have.
fn now() -> Time {
    Duration::from_secs_f64(js_sys::Date::now().max(0.0) / 1000.0)
}

/// The browser socket: a cheap handle (`Rc`) to the shared state.
#[derive(Clone)]
pub(crate) struct Socket(Rc<Inner>);

impl Socket {
    pub(crate) fn new() -> Self {
        Self(Rc::new(Inner {
            id: crate::socket::next_id(None),
            stream: RefCell::new(None),
            close_event: RefCell::new(None),
            close_wakers: RefCell::new(Vec::new()),
            ws: RefCell::new(None),
            url: RefCell::new(None),
            protocols: RefCell::new(Vec::new()),
            allowed_origins: RefCell::new(None),
            handlers: RefCell::new(Handlers::default()),
            listeners: RefCell::new(None),
            pending: RefCell::new(Pending::default()),
            session: RefCell::new(Session::new(&crate::session::BROWSER, js_sys::Math::random)),
            timer: RefCell::new(None),
        }))
    }

    pub(crate) fn id(&self) -> &str {
        &self.0.id
    }

    pub(crate) fn url(&self) -> Option<String> {
        self.0.url.borrow().clone()
    }

    fn is_reconnecting(&self) -> bool {
        self.0.session.borrow().is_reconnecting()
    }

    fn is_closed_for_good(&self) -> bool {
        self.0.session.borrow().is_closed()
    }

    /// Gives the session an input, then carries out its actions.
    fn input(&self, f: impl FnOnce(&mut Session, Time)) {
        f(&mut self.0.session.borrow_mut(), now());
        self.drive();
    }

    pub(crate) fn ready_state(&self) -> ReadyState {
        if self.is_closed_for_good() {
            return ReadyState::Closed;
        }
        if self.is_reconnecting() {
            return ReadyState::Connecting;
        }
        self.0
            .ws
            .borrow()
            .as_ref()
            .and_then(|ws| ReadyState::from_u16(ws.ready_state()))
            .unwrap_or(ReadyState::Connecting)
    }

    /// The browser's `bufferedAmount`; while reconnecting, the bytes waiting for the next
    /// connection (what the lost connection still held is lost with it, as natively).
    pub(crate) fn buffered_amount(&self) -> usize {
        let session = self.0.session.borrow();
        if session.is_reconnecting() {
            return session.unsent_bytes();
        }
        self.0
            .ws
            .borrow()
            .as_ref()
            .map_or(0, |ws| ws.buffered_amount() as usize)
    }

    pub(crate) fn protocol(&self) -> String {
        self.0
            .ws
            .borrow()
            .as_ref()
            .map(web_sys::WebSocket::protocol)
            .unwrap_or_default()
    }

    pub(crate) fn extensions(&self) -> String {
        self.0
            .ws
            .borrow()
            .as_ref()
            .map(web_sys::WebSocket::extensions)
            .unwrap_or_default()
    }

    pub(crate) fn set_allowed_origins(&self, origins: Option<Vec<String>>) {
        *self.0.allowed_origins.borrow_mut() = origins;
    }

    pub(crate) fn allowed_origins(&self) -> Option<Vec<String>> {
        self.0.allowed_origins.borrow().clone()
    }

    /// The socket's handlers, to set one.
    pub(crate) fn handlers(&self) -> std::cell::RefMut<'_, Handlers> {
        self.0.handlers.borrow_mut()
    }

    pub(crate) fn set_reconnect(&self, policy: Option<crate::Reconnect>) {
        self.0.session.borrow_mut().settings_mut().reconnect = policy.map(Box::new);
    }

    pub(crate) fn set_heartbeat(&self, heartbeat: Option<crate::Heartbeat>) {
        self.0.session.borrow_mut().settings_mut().heartbeat = heartbeat.map(Box::new);
    }

    pub(crate) fn set_open_timeout(&self, timeout: Option<Duration>) {
        self.0.session.borrow_mut().settings_mut().open_timeout = timeout;
    }

    pub(crate) async fn open(&self, url: String, protocols: &[&str]) -> Result<()> {
        if self.0.ws.borrow().is_some() {
            return Err(Error::AlreadyConnected);
        }
        let protocols: Vec<String> = protocols.iter().map(|p| (*p).to_string()).collect();
        let ws = connect(&url, &protocols)?;
        let promise = js_sys::Promise::new(&mut |resolve, reject| {
            *self.0.pending.borrow_mut() = Pending {
                resolve: Some(resolve),
                reject: Some(reject),
                error: None,
            };
        });
        *self.0.listeners.borrow_mut() = Some(self.listen(&ws));
        *self.0.url.borrow_mut() = Some(url);
        *self.0.protocols.borrow_mut() = protocols;
        *self.0.ws.borrow_mut() = Some(ws);
        self.input(|s, now| s.open_started(now));
        match wasm_bindgen_futures::JsFuture::from(promise).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let timed_out = self.0.pending.borrow_mut().error.take();
                Err(timed_out.unwrap_or_else(|| convert::js_error(e)))
            }
        }
    }

    /// Wires the four browser events to the handlers. The closures hold the socket
    /// strongly, as a browser keeps an open WebSocket alive: the socket lives while it is
    /// connected (or reconnecting), even with no Rust handle left, and the cycle is broken
    /// when the close event releases the listeners.
    fn listen(&self, ws: &web_sys::WebSocket) -> Listeners {
        let on_open = Closure::<dyn FnMut(web_sys::Event)>::new({
            let sock = self.clone();
            move |_| sock.handle_open()
        });
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
            let sock = self.clone();
            move |ev: MessageEvent| sock.handle_message(&ev)
        });
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new({
            let sock = self.clone();
            move |_| sock.handle_error()
        });
        let on_close = Closure::<dyn FnMut(web_sys::CloseEvent)>::new({
            let sock = self.clone();
            move |ev: web_sys::CloseEvent| sock.handle_close(&ev)
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        count_live(true);
        Listeners {
            ws: ws.clone(),
            _on_open: on_open,
            _on_message: on_message,
            _on_error: on_error,
            _on_close: on_close,
        }
    }

    /// Removes the current browser socket's listeners. The closures are dropped after the
    /// running callback returns: a closure may not be dropped while it runs.
    fn release_listeners(&self) {
        if let Some(listeners) = self.0.listeners.borrow_mut().take() {
            listeners.ws.set_onopen(None);
            listeners.ws.set_onmessage(None);
            listeners.ws.set_onerror(None);
            listeners.ws.set_onclose(None);
            defer_drop(listeners);
        }
    }

    /// Arms the one timer for the session's next timeout (a timer already set for that
    /// time stays), or cancels it when there is none.
    fn arm(&self) {
        let due = self.0.session.borrow().poll_timeout();
        let armed = self.0.timer.borrow().as_ref().map(|(_, at)| *at);
        if due == armed {
            return;
        }
        let Some(due) = due else {
            self.0.timer.borrow_mut().take();
            return;
        };
        let sock = self.clone();
        let timer = Timer::start(millis(due.saturating_sub(now())), move || {
            // This closure is running: its timer is released only after it returns.
            if let Some((timer, _)) = sock.0.timer.borrow_mut().take() {
                defer_drop(timer);
            }
            sock.input(Session::handle_timeout);
        });
        // Replacing a timer that is not running cancels it.
        *self.0.timer.borrow_mut() = timer.map(|t| (t, due));
    }

    /// Carries out the session's actions, with no borrow held while a handler runs, then
    /// arms the timer.
    fn drive(&self) {
        loop {
            let action = self.0.session.borrow_mut().poll_action();
            let Some(action) = action else { break };
            match action {
                Action::Opened => {
                    let handler = self.0.handlers.borrow().on_open.clone();
                    if let Some(h) = handler {
                        h(());
                    }
                }
                Action::Reconnecting { attempt, delay } => {
                    let handler = self.0.handlers.borrow().on_reconnecting.clone();
                    if let Some(h) = handler {
                        h((attempt, delay));
                    }
                }
                Action::Connect { attempt } => self.attempt(attempt),
                Action::Probe(Probe::Text(text)) => {
                    tracing::trace!(id = %self.0.id, "sending the heartbeat");
                    let _ = self.send_text(&text);
                }
                // Pages cannot send pings, and browser sockets have no keep-alive setting.
                Action::Probe(Probe::Ping) => {}
                Action::Drop {
                    farewell,
                    event,
                    error,
                } => {
                    // The browser socket is abandoned: no event of it reaches us any more.
                    self.release_listeners();
                    if let Some(ws) = self.0.ws.borrow().as_ref() {
                        if ws.ready_state() < web_sys::WebSocket::CLOSING {
                            // Scripts may send only 1000 and 3000-4999 (not 1001).
                            let _ = match farewell.filter(|(code, _)| script_may_send(*code)) {
                                Some((code, reason)) => {
                                    ws.close_with_code_and_reason(code.as_u16(), reason)
                                }
                                None => ws.close(),
                            };
                        }
                    }
                    let reject = self.0.pending.borrow_mut().reject.take();
                    if let Some(reject) = reject {
                        // The first open timed out: `open` returns the session's error.
                        let msg = event.to_string();
                        let mut pending = self.0.pending.borrow_mut();
                        pending.resolve = None;
                        pending.error = error;
                        drop(pending);
                        self.0.session.borrow_mut().open_failed();
                        let _ = reject.call1(&JsValue::NULL, &JsValue::from_str(&msg));
                        continue;
                    }
                    self.0
                        .session
                        .borrow_mut()
                        .transport_closed(now(), event, error);
                }
                Action::Closed { event, error } => {
                    let reject = self.0.pending.borrow_mut().reject.take();
                    if let Some(reject) = reject {
                        // Closed while `open` waited: it fails with `Closed`.
                        let mut pending = self.0.pending.borrow_mut();
                        pending.resolve = None;
                        pending.error = Some(Error::Closed);
                        drop(pending);
                        let _ = reject.call1(&JsValue::NULL, &JsValue::from_str("closed"));
                    }
                    self.finish(event, error);
                }
            }
        }
        self.arm();
    }

    fn handle_open(&self) {
        let resolve = self.0.pending.borrow_mut().resolve.take();
        self.0.pending.borrow_mut().reject = None;
        if let Some(resolve) = resolve {
            let _ = resolve.call0(&JsValue::NULL);
        }
        let unsent = self
            .0
            .session
            .borrow_mut()
            .transport_opened(now(), Role::Client);
        self.send_unsent(unsent);
        self.drive();
    }

    /// Sends, in order, what waited for the reconnect.
    fn send_unsent(&self, unsent: VecDeque<MsgEvent>) {
        let Some(ws) = self.0.ws.borrow().clone() else {
            return;
        };
        for msg in unsent {
            let sent = match &msg {
                MsgEvent::Text(text) => ws.send_with_str(text),
                MsgEvent::Binary(data) => ws.send_with_u8_array(data),
            };
            if let Err(e) = sent {
                tracing::warn!(id = %self.0.id, "a message kept for the reconnect was not sent: {}", convert::js_error(e));
            }
        }
    }

    fn handle_message(&self, ev: &MessageEvent) {
        // Only a clock moves: the timer, if any, finds out when it goes off.
        self.0.session.borrow_mut().received(now());
        let Some(msg) = convert::message(ev) else {
            return;
        };
        if let Some(queue) = self.0.stream.borrow().as_ref() {
            let mut queue = queue.borrow_mut();
            queue.items.push_back(msg);
            if let Some(waker) = queue.waker.take() {
                waker.wake();
            }
            return;
        }
        let handler = self.0.handlers.borrow().on_message.clone();
        if let Some(h) = handler {
            h(msg);
        }
    }

    pub(crate) fn subscribe(&self) -> Messages {
        let queue = Rc::new(RefCell::new(Queue {
            ended: self.is_closed_for_good(),
            ..Queue::default()
        }));
        *self.0.stream.borrow_mut() = Some(queue.clone());
        Messages(queue)
    }

    pub(crate) async fn closed(&self) -> CloseEvent {
        std::future::poll_fn(|cx| match self.0.close_event.borrow().clone() {
            Some(ev) => Poll::Ready(ev),
            None => {
                self.0.close_wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Sends `msg` if the browser's buffer is under [`SEND_HIGH_WATER`] with it (or empty),
    /// else hands it back (`Ok(Some)`) to wait: the browser has no cap of its own.
    pub(crate) fn send_or_keep(&self, msg: MsgEvent) -> Result<Option<MsgEvent>> {
        if self.is_reconnecting() {
            if self.0.session.borrow().must_wait_to_keep(msg.len()) {
                return Ok(Some(msg));
            }
            return self.send(msg).map(|()| None);
        }
        let buffered = self.socket()?.buffered_amount() as usize;
        if buffered > 0 && buffered.saturating_add(msg.len()) > SEND_HIGH_WATER {
            return Ok(Some(msg));
        }
        self.send(msg).map(|()| None)
    }

    /// Sends `msg` once the browser's buffer has room for it, looking again on each tick.
    pub(crate) async fn send_async(&self, msg: MsgEvent) -> Result<()> {
        let mut msg = msg;
        while let Some(back) = self.send_or_keep(msg)? {
            msg = back;
            tick().await;
        }
        Ok(())
    }

    pub(crate) async fn flush(&self) -> Result<()> {
        if self.0.ws.borrow().is_none() {
            return Err(Error::NotOpen);
        }
        while self.buffered_amount() > 0 {
            let ended = self.0.ws.borrow().as_ref().is_some_and(|ws| {
                ws.ready_state() >= web_sys::WebSocket::CLOSING && !self.is_reconnecting()
            });
            // A connection that ended may still be followed by a reconnect (its close event
            // decides): only a socket closed for good, or one that cannot reconnect, fails.
            let reconnects = self.0.session.borrow().settings().reconnect.is_some();
            if self.is_closed_for_good() || (ended && !reconnects) {
                return Err(Error::Closed);
            }
            tick().await;
        }
        Ok(())
    }

    fn handle_error(&self) {
        if self.0.pending.borrow().reject.is_some() || self.is_reconnecting() {
            // Before open (or during a reconnect attempt): `open` fails, or the attempt
            // counts as failed; the close event that follows says so.
            return;
        }
        let handler = self.0.handlers.borrow().on_error.clone();
        if let Some(h) = handler {
            h(Error::Js("the browser reported a WebSocket error".into()));
        }
    }

    fn handle_close(&self, ev: &web_sys::CloseEvent) {
        let event = convert::close_event(ev);
        self.release_listeners();
        let reject = self.0.pending.borrow_mut().reject.take();
        self.0.pending.borrow_mut().resolve = None;
        if let Some(reject) = reject {
            let msg = format!("the connection failed before it opened ({event})");
            self.input(|s, _| s.open_failed());
            let _ = reject.call1(&JsValue::NULL, &JsValue::from_str(&msg));
            return;
        }
        if self.is_reconnecting() {
            let error = Error::Js(format!("the connection failed before it opened ({event})"));
            self.input(|s, now| s.attempt_failed(now, error));
            return;
        }
        self.input(|s, now| s.transport_closed(now, event, None));
    }

    /// The wait is over: open a new browser socket to the same URL, same subprotocols.
    fn attempt(&self, attempt: u32) {
        let url = self.0.url.borrow().clone().unwrap_or_default();
        let protocols = self.0.protocols.borrow().clone();
        match connect(&url, &protocols) {
            Ok(ws) => {
                tracing::debug!(id = %self.0.id, "reconnect attempt {attempt}");
                *self.0.listeners.borrow_mut() = Some(self.listen(&ws));
                *self.0.ws.borrow_mut() = Some(ws);
            }
            Err(e) => self.0.session.borrow_mut().attempt_failed(now(), e),
        }
    }

    /// Closed for good: report the close (then any error), end the stream and `closed`, and
    /// drop the handlers, the timer and the listeners, so nothing holds the socket any more.
    fn finish(&self, event: CloseEvent, error: Option<Error>) {
        self.0.timer.borrow_mut().take();
        self.release_listeners();
        *self.0.close_event.borrow_mut() = Some(event.clone());
        for waker in self.0.close_wakers.borrow_mut().drain(..) {
            waker.wake();
        }
        if let Some(queue) = self.0.stream.borrow_mut().take() {
            let mut queue = queue.borrow_mut();
            queue.ended = true;
            if let Some(waker) = queue.waker.take() {
                waker.wake();
            }
        }
        let handlers = std::mem::take(&mut *self.0.handlers.borrow_mut());
        if let Some(h) = handlers.on_close {
            h(event);
        }
        if let (Some(err), Some(h)) = (error, handlers.on_error) {
            h(err);
        }
    }

    pub(crate) async fn read(&self) {}

    /// The user dropped every handle: as in JS, an open socket lives on until it closes
    /// (its listeners hold it), and so does a reconnecting one (its timer holds it), so
    /// there is nothing to do.
    pub(crate) fn release(&self) {}

    fn socket(&self) -> Result<web_sys::WebSocket> {
        if self.is_closed_for_good() {
            return Err(Error::Closed);
        }
        let ws = self.0.ws.borrow().clone().ok_or(Error::NotOpen)?;
        match ws.ready_state() {
            web_sys::WebSocket::CONNECTING => Err(Error::NotOpen),
            web_sys::WebSocket::OPEN => Ok(ws),
            _ => Err(Error::Closed),
        }
    }

    pub(crate) fn send_text(&self, text: &str) -> Result<()> {
        if self.is_reconnecting() {
            return self.send(MsgEvent::Text(text.to_string()));
        }
        self.socket()?
            .send_with_str(text)
            .map_err(convert::js_error)
    }

    pub(crate) fn send_binary(&self, data: &[u8]) -> Result<()> {
        if self.is_reconnecting() {
            return self.send(MsgEvent::Binary(data.to_vec()));
        }
        self.socket()?
            .send_with_u8_array(data)
            .map_err(convert::js_error)
    }

    pub(crate) fn send(&self, msg: MsgEvent) -> Result<()> {
        if self.is_reconnecting() {
            // Kept for the next connection, within the policy's buffer.
            return self.0.session.borrow_mut().keep(msg);
        }
        match msg {
            MsgEvent::Text(text) => self.send_text(&text),
            MsgEvent::Binary(data) => self.send_binary(&data),
        }
    }

    pub(crate) fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        if !script_may_send(code) {
            return Err(Error::InvalidCloseCode(code.as_u16()));
        }
        let code = code.as_u16();
        let ws = self.0.ws.borrow().clone().ok_or(Error::NotOpen)?;
        if self.is_closed_for_good() {
            return Ok(());
        }
        if self.is_reconnecting() || self.0.session.borrow().is_opening() {
            // Stop: abandon the attempt in flight (if any); the close that started the
            // reconnect (or the last failed attempt) is what `on_close` reports, and a
            // first `open` fails with `Closed`, 1006 following, as in JS.
            self.release_listeners();
            if ws.ready_state() < web_sys::WebSocket::CLOSING {
                let _ = ws.close();
            }
        }
        // Never reconnect after this; the heartbeat stops while the browser closes.
        self.input(|s, now| s.local_close(now));
        if self.is_closed_for_good() {
            return Ok(());
        }
        if ws.ready_state() >= web_sys::WebSocket::CLOSING {
            return Ok(());
        }
        ws.close_with_code_and_reason(code, reason)
            .map_err(convert::js_error)
    }

    pub(crate) async fn upgrade<S: Transport>(&self, _stream: S) -> Result<()> {
        Err(Error::Unsupported(
            "only server side WebSockets may be upgraded; the browser has none",
        ))
    }
}
