//! One-shot JS timers (`setTimeout`) that own their closure, and deferred drops.
//!
//! The global `setTimeout`/`clearTimeout` are bound directly (not `Window`'s), so the
//! timers also work in a Web Worker.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen]
extern "C" {
    /// The global `setTimeout(handler, ms)`; its handle (a number in browsers).
    #[wasm_bindgen(js_name = setTimeout, catch)]
    pub(super) fn set_timeout(
        handler: &js_sys::Function,
        ms: i32,
    ) -> std::result::Result<JsValue, JsValue>;

    /// The global `clearTimeout(handle)`.
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: &JsValue);
}

/// A pending `setTimeout` and its closure. Dropping it cancels the timer; the closure must
/// not be running then (a running timer's owner releases it with [`defer_drop`]).
pub(super) struct Timer {
    handle: JsValue,
    _callback: Closure<dyn FnMut()>,
}

impl Timer {
    /// Calls `f` once after `ms` milliseconds; `None` if the timer could not be set.
    pub(super) fn start(ms: i32, f: impl FnOnce() + 'static) -> Option<Self> {
        let mut f = Some(f);
        let callback = Closure::<dyn FnMut()>::new(move || {
            if let Some(f) = f.take() {
                f();
            }
        });
        match set_timeout(callback.as_ref().unchecked_ref(), ms) {
            Ok(handle) => {
                super::count_live(true);
                Some(Self {
                    handle,
                    _callback: callback,
                })
            }
            Err(e) => {
                tracing::warn!("setTimeout failed: {}", super::convert::js_error(e));
                None
            }
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        clear_timeout(&self.handle);
        super::count_live(false);
    }
}

/// Drops `value` (JS closures) after the running callback returns: a closure may not be
/// dropped while it runs. The drop runs as a microtask, before any other event or timer.
pub(super) fn defer_drop<T: 'static>(value: T) {
    wasm_bindgen_futures::spawn_local(async move { drop(value) });
}
