//! The browser backend: a thin layer over `web_sys::WebSocket`.
//!
//! Contract: `Socket` implements every method that `socket.rs` forwards to, with the same
//! signatures as `native::Socket`. The socket owns its JS closures; they are released
//! (listeners removed, closures dropped) once the close event was delivered, or when the
//! last handle is dropped, so nothing leaks per connection.

mod convert;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, MessageEvent};

use crate::protocol::CloseCode;
use crate::{CloseEvent, Error, MsgEvent, ReadyState, Result};

/// A byte stream a server socket could be upgraded over. The browser has no server
/// sockets: [`crate::WebSocket::upgrade`] always fails with [`Error::Unsupported`].
pub trait Transport: 'static {}
impl<T: 'static> Transport for T {}

type OpenFn = Rc<dyn Fn()>;
type MessageFn = Rc<dyn Fn(MsgEvent)>;
type CloseFn = Rc<dyn Fn(CloseEvent)>;
type ErrorFn = Rc<dyn Fn(Error)>;
type ReconnectingFn = Rc<dyn Fn(u32, std::time::Duration)>;

#[derive(Default)]
struct Handlers {
    on_open: Option<OpenFn>,
    on_message: Option<MessageFn>,
    on_close: Option<CloseFn>,
    on_error: Option<ErrorFn>,
}

thread_local! {
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
    /// How many sockets have their listeners (JS closures) installed right now.
    static LIVE_LISTENER_SETS: Cell<usize> = const { Cell::new(0) };
}

/// The number of browser sockets whose JS closures are alive: each `open` adds one, and
/// the release after the close event (or a failed open) removes it. Tests use it to show
/// that nothing leaks per connection; not part of the API.
#[doc(hidden)]
pub fn __live_listener_sets() -> usize {
    LIVE_LISTENER_SETS.with(Cell::get)
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
        LIVE_LISTENER_SETS.with(|n| n.set(n.get().saturating_sub(1)));
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

struct Inner {
    id: String,
    stream: RefCell<Option<Rc<RefCell<Queue>>>>,
    close_event: RefCell<Option<CloseEvent>>,
    close_wakers: RefCell<Vec<Waker>>,
    ws: RefCell<Option<web_sys::WebSocket>>,
    url: RefCell<Option<String>>,
    allowed_origins: RefCell<Option<Vec<String>>>,
    handlers: RefCell<Handlers>,
    listeners: RefCell<Option<Listeners>>,
    pending: RefCell<Pending>,
    reconnect: RefCell<Option<crate::Reconnect>>,
    heartbeat: RefCell<Option<crate::Heartbeat>>,
    on_reconnecting: RefCell<Option<ReconnectingFn>>,
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
            allowed_origins: RefCell::new(None),
            handlers: RefCell::new(Handlers::default()),
            listeners: RefCell::new(None),
            pending: RefCell::new(Pending::default()),
            reconnect: RefCell::new(None),
            heartbeat: RefCell::new(None),
            on_reconnecting: RefCell::new(None),
        }))
    }

    pub(crate) fn id(&self) -> &str {
        &self.0.id
    }

    pub(crate) fn url(&self) -> Option<String> {
        self.0.url.borrow().clone()
    }

    pub(crate) fn ready_state(&self) -> ReadyState {
        self.0
            .ws
            .borrow()
            .as_ref()
            .and_then(|ws| ReadyState::from_u16(ws.ready_state()))
            .unwrap_or(ReadyState::Connecting)
    }

    pub(crate) fn buffered_amount(&self) -> usize {
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

    pub(crate) fn set_on_reconnecting(&self, f: Box<dyn Fn(u32, std::time::Duration)>) {
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
        // Omit the protocols argument when there are none (Chrome would offer "null").
        let ws = if protocols.is_empty() {
            web_sys::WebSocket::new(url.as_str())
        } else {
            let list: js_sys::Array = protocols.iter().map(|p| JsValue::from_str(p)).collect();
            web_sys::WebSocket::new_with_str_sequence(url.as_str(), &list)
        }
        .map_err(convert::js_error)?;
        // ArrayBuffer, not Blob: a Blob needs a promise to read, which could reorder events.
        ws.set_binary_type(BinaryType::Arraybuffer);

        let promise = js_sys::Promise::new(&mut |resolve, reject| {
            *self.0.pending.borrow_mut() = Pending {
                resolve: Some(resolve),
                reject: Some(reject),
            };
        });
        *self.0.listeners.borrow_mut() = Some(self.listen(&ws));
        *self.0.url.borrow_mut() = Some(url.to_string());
        *self.0.ws.borrow_mut() = Some(ws);
        match wasm_bindgen_futures::JsFuture::from(promise).await {
            Ok(_) => Ok(()),
            Err(e) => Err(convert::js_error(e)),
        }
    }

    /// Wires the four browser events to the handlers. The closures hold the socket
    /// strongly, as a browser keeps an open WebSocket alive: the socket lives while it is
    /// connected, even with no Rust handle left, and the cycle is broken when the close
    /// event releases the listeners.
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
        LIVE_LISTENER_SETS.with(|n| n.set(n.get() + 1));
        Listeners {
            ws: ws.clone(),
            _on_open: on_open,
            _on_message: on_message,
            _on_error: on_error,
            _on_close: on_close,
        }
    }

    fn handle_open(&self) {
        let resolve = self.0.pending.borrow_mut().resolve.take();
        self.0.pending.borrow_mut().reject = None;
        if let Some(resolve) = resolve {
            let _ = resolve.call0(&JsValue::NULL);
        }
        let handler = self.0.handlers.borrow().on_open.clone();
        if let Some(h) = handler {
            h();
        }
    }

    fn handle_message(&self, ev: &MessageEvent) {
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
            ended: self.0.close_event.borrow().is_some(),
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
        let ws = self.0.ws.borrow().clone().ok_or(Error::NotOpen)?;
        while ws.buffered_amount() > 0 {
            if ws.ready_state() >= web_sys::WebSocket::CLOSING {
                return Err(Error::Closed);
            }
            // The browser has no "drained" event: look again on the next timer tick.
            let tick = js_sys::Promise::new(&mut |resolve, _| {
                if let Some(window) = web_sys::window() {
                    let _ =
                        window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 5);
                }
            });
            let _ = wasm_bindgen_futures::JsFuture::from(tick).await;
        }
        Ok(())
    }

    fn handle_error(&self) {
        if self.0.pending.borrow().reject.is_some() {
            // Before open: `open` fails; the close event that follows settles nothing more.
            return;
        }
        let handler = self.0.handlers.borrow().on_error.clone();
        if let Some(h) = handler {
            h(Error::Js("the browser reported a WebSocket error".into()));
        }
    }

    fn handle_close(&self, ev: &web_sys::CloseEvent) {
        let event = convert::close_event(ev);
        let reject = self.0.pending.borrow_mut().reject.take();
        self.0.pending.borrow_mut().resolve = None;
        if let Some(reject) = reject {
            let msg = format!("the connection failed before it opened ({event})");
            let _ = reject.call1(&JsValue::NULL, &JsValue::from_str(&msg));
        } else {
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
        }
        // Release the listeners after this callback returns: a closure may not be dropped
        // while it runs.
        if let Some(listeners) = self.0.listeners.borrow_mut().take() {
            wasm_bindgen_futures::spawn_local(async move { drop(listeners) });
        }
    }

    pub(crate) async fn read(&self) {}

    /// The user dropped every handle: as in JS, an open socket lives on until it closes
    /// (its listeners hold it), so there is nothing to do.
    pub(crate) fn release(&self) {}

    fn socket(&self) -> Result<web_sys::WebSocket> {
        let ws = self.0.ws.borrow().clone().ok_or(Error::NotOpen)?;
        match ws.ready_state() {
            web_sys::WebSocket::CONNECTING => Err(Error::NotOpen),
            web_sys::WebSocket::OPEN => Ok(ws),
            _ => Err(Error::Closed),
        }
    }

    pub(crate) fn send_text(&self, text: &str) -> Result<()> {
        self.socket()?
            .send_with_str(text)
            .map_err(convert::js_error)
    }

    pub(crate) fn send_binary(&self, data: &[u8]) -> Result<()> {
        self.socket()?
            .send_with_u8_array(data)
            .map_err(convert::js_error)
    }

    pub(crate) fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        let code = code.as_u16();
        // Browsers accept only 1000 and 3000-4999 from scripts.
        if code != 1000 && !(3000..=4999).contains(&code) {
            return Err(Error::InvalidCloseCode(code));
        }
        let ws = self.0.ws.borrow().clone().ok_or(Error::NotOpen)?;
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
