//! The minimal client page with ewebsock: open, send one text, log what arrives.

use std::cell::RefCell;
use std::ops::ControlFlow;

use ewebsock::{Options, WsEvent, WsMessage, WsSender};
use wasm_bindgen::prelude::*;

thread_local! {
    // ewebsock's event handler must be `Send`; the page's one sender waits here.
    static SENDER: RefCell<Option<WsSender>> = const { RefCell::new(None) };
}

#[wasm_bindgen]
pub fn run(url: String) {
    let on_event = Box::new(|event| {
        match event {
            WsEvent::Opened => SENDER.with_borrow_mut(|s| {
                if let Some(s) = s {
                    s.send(WsMessage::Text("hello".into()));
                }
            }),
            WsEvent::Message(WsMessage::Text(text)) => web_sys::console::log_1(&text.into()),
            WsEvent::Error(e) => web_sys::console::error_1(&e.into()),
            _ => {}
        }
        ControlFlow::Continue(())
    });
    match ewebsock::ws_connect(url, Options::default(), on_event) {
        Ok(sender) => SENDER.with_borrow_mut(|s| *s = Some(sender)),
        Err(e) => web_sys::console::error_1(&e.into()),
    }
}
