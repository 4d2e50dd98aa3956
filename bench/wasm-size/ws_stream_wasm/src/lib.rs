//! The minimal client page with ws_stream_wasm: open, send one text, log what arrives.

use futures_util::{SinkExt, StreamExt};
use wasm_bindgen::prelude::*;
use ws_stream_wasm::{WsMessage, WsMeta};

#[wasm_bindgen]
pub fn run(url: String) {
    wasm_bindgen_futures::spawn_local(async move {
        let (_meta, mut wsio) = match WsMeta::connect(&url, None).await {
            Ok(ws) => ws,
            Err(e) => return web_sys::console::error_1(&e.to_string().into()),
        };
        if let Err(e) = wsio.send(WsMessage::Text("hello".into())).await {
            web_sys::console::error_1(&e.to_string().into());
        }
        while let Some(msg) = wsio.next().await {
            if let WsMessage::Text(text) = msg {
                web_sys::console::log_1(&text.into());
            }
        }
    });
}
