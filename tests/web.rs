//! Browser tests: the wasm32 backend in headless Chromium against a real unisock echo
//! server that `./build.sh test` starts and names in `UNISOCK_TEST_SERVER` at build time.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use unisock::{MsgEvent, ReadyState, WebSocket};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn server() -> &'static str {
    match option_env!("UNISOCK_TEST_SERVER") {
        Some(url) => url,
        None => panic!("UNISOCK_TEST_SERVER is not set: run the browser tests through ./build.sh test"),
    }
}

/// Resolves with the next message `ws` receives.
async fn next_message(ws: &WebSocket) -> MsgEvent {
    let slot = Rc::new(RefCell::new(None));
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let slot = slot.clone();
        ws.on_message(move |m| {
            *slot.borrow_mut() = Some(m);
            let _ = resolve.call0(&JsValue::NULL);
        });
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
    let msg = slot.borrow_mut().take();
    msg.expect("resolved without a message")
}

#[wasm_bindgen_test]
async fn text_echo_from_a_unisock_server() {
    let ws = WebSocket::new();
    ws.open(server(), &[]).await.expect("open the echo server");
    assert_eq!(ws.ready_state(), ReadyState::Open);
    let reply = next_message(&ws);
    ws.send_text("Hello from Chromium ✓").unwrap();
    ws.read().await; // a no-op in the browser; shared code may always call it
    assert_eq!(reply.await, MsgEvent::Text("Hello from Chromium ✓".into()));
    ws.close(1000, "bye").unwrap();
}
