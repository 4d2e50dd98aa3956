//! The demo page's wasm module: connects to `/ws` on the page's host with the same
//! `unisock::WebSocket` API the native code uses, sends a greeting and shows the echo.
#![cfg(target_arch = "wasm32")]

use unisock::{MsgEvent, WebSocket};
use wasm_bindgen::prelude::*;

fn show(id: &str, text: &str) {
    if let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id(id))
    {
        el.set_text_content(Some(text));
    }
}

/// Entry point, called by `www/index.html`.
#[wasm_bindgen(start)]
pub fn start() {
    wasm_bindgen_futures::spawn_local(async {
        let host = web_sys::window()
            .and_then(|w| w.location().host().ok())
            .unwrap_or_else(|| "127.0.0.1:8069".into());
        let ws = WebSocket::new();
        ws.on_message(|msg| {
            if let MsgEvent::Text(t) = msg {
                show("echo", &t);
            }
        });
        ws.on_close(|ev| show("status", &format!("closed: {ev}")));
        show("status", "connecting…");
        match ws.open(&format!("ws://{host}/ws"), &[]).await {
            Ok(()) => {
                show("status", &format!("connected as {}", ws.id()));
                let _ = ws.send_text("Hello from the browser!");
            }
            Err(e) => show("status", &format!("failed: {e}")),
        }
    });
}
