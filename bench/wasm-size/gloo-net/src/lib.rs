//! The minimal client page with gloo-net: open, send one text, log what arrives.

use futures_util::{SinkExt, StreamExt};
use gloo_net::websocket::{futures::WebSocket, Message};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub fn run(url: String) {
    let ws = match WebSocket::open(&url) {
        Ok(ws) => ws,
        Err(e) => return web_sys::console::error_1(&e.to_string().into()),
    };
    let (mut write, mut read) = ws.split();
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = write.send(Message::Text("hello".into())).await {
            web_sys::console::error_1(&e.to_string().into());
        }
    });
    wasm_bindgen_futures::spawn_local(async move {
        while let Some(msg) = read.next().await {
            if let Ok(Message::Text(text)) = msg {
                web_sys::console::log_1(&text.into());
            }
        }
    });
}
