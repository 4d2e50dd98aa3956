//! The minimal client page with unisock: open, send one text, log what arrives.

use unisock::{MsgEvent, WebSocket};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub fn run(url: String) {
    wasm_bindgen_futures::spawn_local(async move {
        let ws = WebSocket::new();
        ws.on_message(|msg| {
            if let MsgEvent::Text(text) = msg {
                web_sys::console::log_1(&text.into());
            }
        });
        match ws.open(&url, &[]).await {
            Ok(()) => {
                let _ = ws.send_text("hello");
            }
            Err(e) => web_sys::console::error_1(&e.to_string().into()),
        }
    });
}
