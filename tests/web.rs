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
        None => {
            panic!("UNISOCK_TEST_SERVER is not set: run the browser tests through ./build.sh test")
        }
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

/// The server's base URL with another path.
fn server_path(path: &str) -> String {
    format!("{}{path}", server().trim_end_matches('/'))
}

#[wasm_bindgen_test]
async fn binary_echo_of_one_mebibyte_is_byte_exact() {
    let ws = WebSocket::new();
    ws.open(server(), &[]).await.unwrap();
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let reply = next_message(&ws);
    ws.send_binary(&data).unwrap();
    assert_eq!(reply.await, MsgEvent::Binary(data));
    ws.close(1000, "").unwrap();
}

#[wasm_bindgen_test]
async fn close_with_4000_and_a_reason_is_seen_by_both_sides() {
    // The echo server keeps the close event it saw on /record?key=K and tells it on /report?key=K.
    let key = format!("{}", js_sys::Math::random().to_bits());
    let ws = WebSocket::new();
    ws.open(&server_path(&format!("/record?key={key}")), &[])
        .await
        .unwrap();
    ws.close(4000, "done here").unwrap();
    let ev = ws.closed().await;
    assert_eq!(ev.code, 4000);
    assert_eq!(ev.reason, "done here");
    assert!(ev.was_clean);
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert!(matches!(ws.send_text("late"), Err(unisock::Error::Closed)));

    let report = WebSocket::new();
    let seen = Rc::new(RefCell::new(Vec::new()));
    report.on_message({
        let seen = seen.clone();
        move |m| seen.borrow_mut().push(m)
    });
    report
        .open(&server_path(&format!("/report?key={key}")), &[])
        .await
        .unwrap();
    report.closed().await; // the server closes after its report
    assert_eq!(
        *seen.borrow(),
        [MsgEvent::Text("Clean close - 4000: done here".into())]
    );
}

#[wasm_bindgen_test]
async fn invalid_close_codes_are_errors_not_exceptions() {
    let ws = WebSocket::new();
    ws.open(server(), &[]).await.unwrap();
    assert!(matches!(
        ws.close(1005, ""),
        Err(unisock::Error::InvalidCloseCode(1005))
    ));
    assert!(matches!(
        ws.close(1001, ""),
        Err(unisock::Error::InvalidCloseCode(1001))
    ));
    assert!(matches!(
        ws.close(1000, &"x".repeat(124)),
        Err(unisock::Error::ReasonTooLong(124))
    ));
    ws.close(1000, "").unwrap();
}

#[wasm_bindgen_test]
async fn a_server_that_drops_tcp_gives_an_unclean_close() {
    let ws = WebSocket::new();
    ws.open(&server_path("/drop"), &[]).await.unwrap();
    let ev = ws.closed().await;
    assert!(!ev.was_clean, "{ev}");
    assert_eq!(ev.code, 1006);
}

#[wasm_bindgen_test]
async fn open_to_a_closed_port_fails() {
    let ws = WebSocket::new();
    // build.sh names a loopback port that nothing listens on.
    let closed = option_env!("UNISOCK_TEST_CLOSED").unwrap_or("ws://127.0.0.1:1/");
    let err = ws.open(closed, &[]).await.unwrap_err();
    assert!(matches!(err, unisock::Error::Js(_)), "{err}");
}

#[wasm_bindgen_test]
async fn the_subprotocol_is_negotiated() {
    let ws = WebSocket::new();
    ws.open(server(), &["chat.v2", "chat.v1"]).await.unwrap();
    assert_eq!(ws.protocol(), "chat.v2");
    ws.close(1000, "").unwrap();
}

#[wasm_bindgen_test]
async fn the_same_stream_api_as_native() {
    use futures_util::StreamExt;
    let mut ws = WebSocket::new();
    ws.open(server(), &[]).await.unwrap();
    ws.send_text("one").unwrap();
    ws.send_text("two").unwrap();
    assert_eq!(ws.next().await, Some(MsgEvent::Text("one".into())));
    assert_eq!(ws.next().await, Some(MsgEvent::Text("two".into())));
    ws.close(1000, "").unwrap();
    assert_eq!(ws.next().await, None);
}

/// Resolves after the browser ran its pending microtasks and one timer task.
async fn next_tick() {
    let tick = js_sys::Promise::new(&mut |resolve, _| {
        let window = web_sys::window().expect("a window");
        window
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0)
            .expect("setTimeout");
    });
    wasm_bindgen_futures::JsFuture::from(tick).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_thousand_open_close_cycles_leave_no_listeners_behind() {
    for i in 0..1000 {
        let ws = WebSocket::new();
        ws.open(server(), &[]).await.unwrap();
        assert!(unisock::__live_listener_sets() >= 1);
        ws.close(1000, "").unwrap();
        let ev = ws.closed().await;
        assert!(ev.was_clean, "cycle {i}: {ev}");
    }
    // The listeners are released in a task spawned by the close event: let it run.
    next_tick().await;
    assert_eq!(unisock::__live_listener_sets(), 0);
}
