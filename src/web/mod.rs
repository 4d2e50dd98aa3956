//! The browser backend: a thin layer over `web_sys::WebSocket`.
//!
//! Contract: `Socket` implements every method that `socket.rs` forwards to, with the same
//! signatures as `native::Socket`. The socket owns its JS closures; they are released
//! (listeners removed, closures dropped) once the close event was delivered, or when the
//! last handle is dropped, so nothing leaks per connection.
//!
//! With a [`crate::Reconnect`] policy, a lost connection is replaced by a new browser
//! `WebSocket` to the same URL with the same subprotocols, after a wait on a JS timer; the
//! semantics are those of the native backend (see `native::Socket::reconnect_after`).

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

use crate::protocol::CloseCode;
use crate::{CloseEvent, Error, MsgEvent, ReadyState, Result};
use timer::{defer_drop, Timer};

/// A byte stream a server socket could be upgraded over. The browser has no server
/// sockets: [`crate::WebSocket::upgrade`] always fails with [`Error::Unsupported`].
pub trait Transport: 'static {}
impl<T: 'static> Transport for T {}

type OpenFn = Rc<dyn Fn()>;
type MessageFn = Rc<dyn Fn(MsgEvent)>;
type CloseFn = Rc<dyn Fn(CloseEvent)>;
type ErrorFn = Rc<dyn Fn(Error)>;
type ReconnectingFn = Rc<dyn Fn(u32, Duration)>;

#[derive(Default)]
struct Handlers {
    on_open: Option<OpenFn>,
    on_message: Option<MessageFn>,
    on_close: Option<CloseFn>,
    on_error: Option<ErrorFn>,
}

thread_local! {
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
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

/// The state of a reconnect, from losing a connection to the next open (or giving up).
#[derive(Default)]
struct Reconnecting {
    /// Set while reconnecting: sends go to `unsent` (if the policy has a buffer).
    active: bool,
    /// Attempts made so far in this reconnect.
    attempts: u32,
    /// How the connection (or the last attempt) ended: reported if the reconnect stops.
    lost: Option<(CloseEvent, Option<Error>)>,
    /// Messages sent while reconnecting (text?, payload), sent first on the next connection.
    unsent: VecDeque<(bool, Vec<u8>)>,
    unsent_bytes: usize,
}

/// The heartbeat's clock (`Date.now()` in ms).
#[derive(Default, Clone, Copy)]
struct Beat {
    last_received: f64,
    /// When the heartbeat message was sent, if nothing arrived since.
    probe_sent: Option<f64>,
}

/// Which of a socket's timers.
#[derive(Clone, Copy)]
enum TimerKind {
    /// The wait before the next reconnect attempt.
    Retry,
    /// The next heartbeat check.
    Heartbeat,
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
    reconnect: RefCell<Option<crate::Reconnect>>,
    heartbeat: RefCell<Option<crate::Heartbeat>>,
    on_reconnecting: RefCell<Option<ReconnectingFn>>,
    /// Set by a local `close`: never reconnect after it.
    closed_locally: Cell<bool>,
    reconnecting: RefCell<Reconnecting>,
    beat: Cell<Beat>,
    retry_timer: RefCell<Option<Timer>>,
    heartbeat_timer: RefCell<Option<Timer>>,
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

/// A 1006 close event with `reason`.
fn abnormal(reason: String) -> CloseEvent {
    CloseEvent {
        code: 1006,
        reason,
        was_clean: false,
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

/// Milliseconds for a JS timer (at most `i32::MAX`, about 24 days).
fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// The browser socket: a cheap handle (`Rc`) to the shared state.
#[derive(Clone)]
pub(crate) struct Socket(Rc<Inner>);

impl Socket {
    pub(crate) fn new() -> Self {
        let n = NEXT_ID.with(|c| {
            let n = c.get();
            c.set(n + 1);
            n
        });
        Self(Rc::new(Inner {
            id: format!("unisock:{n:04}"),
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
            reconnect: RefCell::new(None),
            heartbeat: RefCell::new(None),
            on_reconnecting: RefCell::new(None),
            closed_locally: Cell::new(false),
            reconnecting: RefCell::new(Reconnecting::default()),
            beat: Cell::new(Beat::default()),
            retry_timer: RefCell::new(None),
            heartbeat_timer: RefCell::new(None),
        }))
    }

    pub(crate) fn id(&self) -> &str {
        &self.0.id
    }

    pub(crate) fn url(&self) -> Option<String> {
        self.0.url.borrow().clone()
    }

    fn is_reconnecting(&self) -> bool {
        self.0.reconnecting.borrow().active
    }

    fn is_closed_for_good(&self) -> bool {
        self.0.close_event.borrow().is_some()
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
        let reconnecting = self.0.reconnecting.borrow();
        if reconnecting.active {
            return reconnecting.unsent_bytes;
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

    pub(crate) fn set_on_open(&self, f: Box<dyn Fn()>) {
        self.0.handlers.borrow_mut().on_open = Some(Rc::from(f));
    }

    pub(crate) fn set_on_message(&self, f: Box<dyn Fn(MsgEvent)>) {
        self.0.handlers.borrow_mut().on_message = Some(Rc::from(f));
    }

    pub(crate) fn set_on_close(&self, f: Box<dyn Fn(CloseEvent)>) {
        self.0.handlers.borrow_mut().on_close = Some(Rc::from(f));
    }

    pub(crate) fn set_on_error(&self, f: Box<dyn Fn(Error)>) {
        self.0.handlers.borrow_mut().on_error = Some(Rc::from(f));
    }

    pub(crate) fn set_on_reconnecting(&self, f: Box<dyn Fn(u32, Duration)>) {
        *self.0.on_reconnecting.borrow_mut() = Some(Rc::from(f));
    }

    pub(crate) fn set_reconnect(&self, policy: Option<crate::Reconnect>) {
        *self.0.reconnect.borrow_mut() = policy;
    }

    pub(crate) fn set_heartbeat(&self, heartbeat: Option<crate::Heartbeat>) {
        *self.0.heartbeat.borrow_mut() = heartbeat;
    }

    pub(crate) async fn open(&self, url: url::Url, protocols: &[&str]) -> Result<()> {
        if self.0.ws.borrow().is_some() {
            return Err(Error::AlreadyConnected);
        }
        let protocols: Vec<String> = protocols.iter().map(|p| (*p).to_string()).collect();
        let ws = connect(url.as_str(), &protocols)?;
        let promise = js_sys::Promise::new(&mut |resolve, reject| {
            *self.0.pending.borrow_mut() = Pending {
                resolve: Some(resolve),
                reject: Some(reject),
            };
        });
        *self.0.listeners.borrow_mut() = Some(self.listen(&ws));
        *self.0.url.borrow_mut() = Some(url.to_string());
        *self.0.protocols.borrow_mut() = protocols;
        *self.0.ws.borrow_mut() = Some(ws);
        match wasm_bindgen_futures::JsFuture::from(promise).await {
            Ok(_) => Ok(()),
            Err(e) => Err(convert::js_error(e)),
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

    fn timer_slot(&self, kind: TimerKind) -> &RefCell<Option<Timer>> {
        match kind {
            TimerKind::Retry => &self.0.retry_timer,
            TimerKind::Heartbeat => &self.0.heartbeat_timer,
        }
    }

    /// Starts (or restarts) timer `kind`, firing after `delay`; false if it could not be set.
    fn set_timer(&self, kind: TimerKind, delay: Duration) -> bool {
        let sock = self.clone();
        let timer = Timer::start(millis(delay), move || {
            // This closure is running: its timer is released only after it returns.
            if let Some(timer) = sock.timer_slot(kind).borrow_mut().take() {
                defer_drop(timer);
            }
            match kind {
                TimerKind::Retry => sock.attempt(),
                TimerKind::Heartbeat => sock.check_heartbeat(),
            }
        });
        let started = timer.is_some();
        // Replacing a timer that is not running cancels it.
        *self.timer_slot(kind).borrow_mut() = timer;
        started
    }

    fn cancel_timer(&self, kind: TimerKind) {
        // A running timer has already taken itself out of its slot: what is here is not running.
        let timer = self.timer_slot(kind).borrow_mut().take();
        drop(timer);
    }

    fn handle_open(&self) {
        let resolve = self.0.pending.borrow_mut().resolve.take();
        self.0.pending.borrow_mut().reject = None;
        if let Some(resolve) = resolve {
            let _ = resolve.call0(&JsValue::NULL);
        }
        let was_reconnecting = std::mem::take(&mut *self.0.reconnecting.borrow_mut());
        if was_reconnecting.active {
            tracing::debug!(id = %self.0.id, "reconnected after {} attempt(s)", was_reconnecting.attempts);
            self.send_unsent(was_reconnecting.unsent);
        }
        self.start_heartbeat();
        let handler = self.0.handlers.borrow().on_open.clone();
        if let Some(h) = handler {
            h();
        }
    }

    /// Sends, in order, what waited for the reconnect.
    fn send_unsent(&self, unsent: VecDeque<(bool, Vec<u8>)>) {
        let Some(ws) = self.0.ws.borrow().clone() else {
            return;
        };
        for (text, data) in unsent {
            let sent = if text {
                ws.send_with_str(std::str::from_utf8(&data).unwrap_or_default())
            } else {
                ws.send_with_u8_array(&data)
            };
            if let Err(e) = sent {
                tracing::warn!(id = %self.0.id, "a message kept for the reconnect was not sent: {}", convert::js_error(e));
            }
        }
    }

    fn handle_message(&self, ev: &MessageEvent) {
        self.0.beat.set(Beat {
            last_received: js_sys::Date::now(),
            probe_sent: None,
        });
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
            if self.is_closed_for_good() || (ended && self.0.reconnect.borrow().is_none()) {
                return Err(Error::Closed);
            }
            // The browser has no "drained" event: look again on the next timer tick.
            let tick = js_sys::Promise::new(&mut |resolve, _| {
                let _ = timer::set_timeout(&resolve, 5);
            });
            let _ = wasm_bindgen_futures::JsFuture::from(tick).await;
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
        self.cancel_timer(TimerKind::Heartbeat);
        let reject = self.0.pending.borrow_mut().reject.take();
        self.0.pending.borrow_mut().resolve = None;
        if let Some(reject) = reject {
            let msg = format!("the connection failed before it opened ({event})");
            let _ = reject.call1(&JsValue::NULL, &JsValue::from_str(&msg));
            return;
        }
        if self.is_reconnecting() {
            let attempt = self.0.reconnecting.borrow().attempts;
            tracing::debug!(id = %self.0.id, "reconnect attempt {attempt} failed: {event}");
            self.0.reconnecting.borrow_mut().lost = Some((
                abnormal(format!(
                    "Abnormal Closure: reconnect attempt {attempt} failed ({event})"
                )),
                Some(Error::Js(format!(
                    "reconnect attempt {attempt} failed: the connection failed before it opened ({event})"
                ))),
            ));
            self.retry();
            return;
        }
        self.lost(event, None);
    }

    /// The connection ended (not a reconnect attempt): reconnect if the policy says so,
    /// else close for good.
    fn lost(&self, event: CloseEvent, error: Option<Error>) {
        let retry = !self.0.closed_locally.get()
            && self
                .0
                .reconnect
                .borrow()
                .as_ref()
                .is_some_and(|p| p.retries(&event));
        if !retry {
            self.finish(event, error);
            return;
        }
        tracing::debug!(id = %self.0.id, "connection lost: {event}");
        *self.0.reconnecting.borrow_mut() = Reconnecting {
            active: true,
            lost: Some((event, error)),
            ..Reconnecting::default()
        };
        self.retry();
    }

    /// Schedules the next reconnect attempt, or gives up when the policy allows no more.
    fn retry(&self) {
        let attempts = self.0.reconnecting.borrow().attempts;
        let policy = self.0.reconnect.borrow().clone();
        let Some(policy) = policy.filter(|p| p.allows(attempts) && !self.0.closed_locally.get())
        else {
            self.give_up();
            return;
        };
        let attempt = attempts + 1;
        self.0.reconnecting.borrow_mut().attempts = attempt;
        let delay = policy.delay(attempt, js_sys::Math::random());
        let handler = self.0.on_reconnecting.borrow().clone();
        if let Some(h) = handler {
            h(attempt, delay);
        }
        // The handler may have closed the socket.
        if self.is_reconnecting() && !self.set_timer(TimerKind::Retry, delay) {
            self.give_up();
        }
    }

    /// The wait is over: open a new browser socket to the same URL, same subprotocols.
    fn attempt(&self) {
        if !self.is_reconnecting() {
            return;
        }
        let url = self.0.url.borrow().clone().unwrap_or_default();
        let protocols = self.0.protocols.borrow().clone();
        match connect(&url, &protocols) {
            Ok(ws) => {
                *self.0.listeners.borrow_mut() = Some(self.listen(&ws));
                *self.0.ws.borrow_mut() = Some(ws);
            }
            Err(e) => {
                let attempt = self.0.reconnecting.borrow().attempts;
                self.0.reconnecting.borrow_mut().lost = Some((
                    abnormal(format!(
                        "Abnormal Closure: reconnect attempt {attempt} failed: {e}"
                    )),
                    Some(e),
                ));
                self.retry();
            }
        }
    }

    /// Stops reconnecting: closes for good with how the connection (or last attempt) ended.
    fn give_up(&self) {
        let lost = self.0.reconnecting.borrow_mut().lost.take();
        let (event, error) = lost.unwrap_or_else(|| (abnormal("Abnormal Closure".into()), None));
        self.finish(event, error);
    }

    /// Closed for good: report the close (then any error), end the stream and `closed`, and
    /// drop the handlers, timers and listeners, so nothing holds the socket any more.
    fn finish(&self, event: CloseEvent, error: Option<Error>) {
        // Later sends fail with `Closed`, not `NotOpen`.
        *self.0.reconnecting.borrow_mut() = Reconnecting::default();
        self.cancel_timer(TimerKind::Retry);
        self.cancel_timer(TimerKind::Heartbeat);
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
        self.0.on_reconnecting.borrow_mut().take();
        if let Some(h) = handlers.on_close {
            h(event);
        }
        if let (Some(err), Some(h)) = (error, handlers.on_error) {
            h(err);
        }
    }

    /// Starts the heartbeat (if one is set) on a connection that just opened.
    fn start_heartbeat(&self) {
        let Some(interval) = self.0.heartbeat.borrow().as_ref().map(|hb| hb.interval) else {
            return;
        };
        self.0.beat.set(Beat {
            last_received: js_sys::Date::now(),
            probe_sent: None,
        });
        let _ = self.set_timer(TimerKind::Heartbeat, interval);
    }

    /// After `interval` of quiet, sends the heartbeat; `timeout` after that, with still
    /// nothing received, counts the connection as dead (1006).
    fn check_heartbeat(&self) {
        let Some(hb) = self.0.heartbeat.borrow().clone() else {
            return;
        };
        if self.is_reconnecting() || self.is_closed_for_good() {
            return;
        }
        let now = js_sys::Date::now();
        let beat = self.0.beat.get();
        let deadline = match beat.probe_sent {
            None => beat.last_received + hb.interval.as_secs_f64() * 1000.0,
            Some(sent) => sent + hb.timeout.as_secs_f64() * 1000.0,
        };
        if now < deadline {
            // Something arrived since the timer was set: wait for the rest of the quiet time.
            let left = Duration::from_secs_f64((deadline - now) / 1000.0);
            let _ = self.set_timer(TimerKind::Heartbeat, left);
            return;
        }
        if beat.probe_sent.is_none() {
            tracing::trace!(id = %self.0.id, "sending the heartbeat");
            let _ = self.send_text(&hb.message);
            self.0.beat.set(Beat {
                probe_sent: Some(now),
                ..beat
            });
            let _ = self.set_timer(TimerKind::Heartbeat, hb.timeout);
            return;
        }
        let secs = hb.timeout.as_secs_f32();
        tracing::debug!(id = %self.0.id, "no answer to the heartbeat");
        // The browser socket is abandoned: no event of it reaches us any more.
        self.release_listeners();
        if let Some(ws) = self.0.ws.borrow().as_ref() {
            let _ = ws.close();
        }
        self.lost(
            abnormal(format!(
                "Abnormal Closure: no answer to the heartbeat within {secs} s"
            )),
            Some(Error::Timeout("no answer to the heartbeat")),
        );
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

    /// While reconnecting: keeps a message for the next connection, within the bound.
    fn keep_for_reconnect(&self, text: bool, data: &[u8]) -> Result<()> {
        let cap = self.0.reconnect.borrow().as_ref().map_or(0, |r| r.buffer);
        if cap == 0 {
            return Err(Error::NotOpen);
        }
        let mut reconnecting = self.0.reconnecting.borrow_mut();
        if reconnecting.unsent_bytes.saturating_add(data.len()) > cap {
            return Err(Error::Capacity {
                buffered: reconnecting.unsent_bytes,
                cap,
            });
        }
        reconnecting.unsent.push_back((text, data.to_vec()));
        reconnecting.unsent_bytes += data.len();
        Ok(())
    }

    pub(crate) fn send_text(&self, text: &str) -> Result<()> {
        if self.is_reconnecting() {
            return self.keep_for_reconnect(true, text.as_bytes());
        }
        self.socket()?
            .send_with_str(text)
            .map_err(convert::js_error)
    }

    pub(crate) fn send_binary(&self, data: &[u8]) -> Result<()> {
        if self.is_reconnecting() {
            return self.keep_for_reconnect(false, data);
        }
        self.socket()?
            .send_with_u8_array(data)
            .map_err(convert::js_error)
    }

    pub(crate) fn send(&self, msg: MsgEvent) -> Result<()> {
        match msg {
            MsgEvent::Text(text) => self.send_text(&text),
            MsgEvent::Binary(data) => self.send_binary(&data),
        }
    }

    pub(crate) fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        let code = code.as_u16();
        // Browsers accept only 1000 and 3000-4999 from scripts.
        if code != 1000 && !(3000..=4999).contains(&code) {
            return Err(Error::InvalidCloseCode(code));
        }
        let ws = self.0.ws.borrow().clone().ok_or(Error::NotOpen)?;
        if self.is_closed_for_good() {
            return Ok(());
        }
        self.0.closed_locally.set(true);
        self.cancel_timer(TimerKind::Heartbeat);
        if self.is_reconnecting() {
            // Stop: abandon the attempt in flight (if any); the close that started the
            // reconnect (or the last failed attempt) is what `on_close` reports.
            self.release_listeners();
            if ws.ready_state() < web_sys::WebSocket::CLOSING {
                let _ = ws.close();
            }
            self.give_up();
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
