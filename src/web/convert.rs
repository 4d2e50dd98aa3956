//! Browser values to unisock values, without `unwrap` or `unreachable!`.

use wasm_bindgen::{JsCast, JsValue};

use crate::{CloseEvent, Error, MsgEvent};

/// A JS exception or rejection as an [`Error::Js`] (JS values are `!Send`, so keep the text).
pub(super) fn js_error(value: JsValue) -> Error {
    let text = value
        .as_string()
        .or_else(|| {
            value
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{value:?}"));
    Error::Js(text)
}

/// A `message` event's data: string → text, `ArrayBuffer` → binary.
pub(super) fn message(ev: &web_sys::MessageEvent) -> Option<MsgEvent> {
    let data = ev.data();
    if let Some(text) = data.as_string() {
        return Some(MsgEvent::Text(text));
    }
    if let Some(buf) = data.dyn_ref::<js_sys::ArrayBuffer>() {
        return Some(MsgEvent::Binary(js_sys::Uint8Array::new(buf).to_vec()));
    }
    tracing::warn!("ignoring a message of an unexpected type");
    None
}

/// The browser's real `code`, `reason` and `wasClean`.
pub(super) fn close_event(ev: &web_sys::CloseEvent) -> CloseEvent {
    CloseEvent {
        code: ev.code(),
        reason: ev.reason(),
        was_clean: ev.was_clean(),
    }
}
