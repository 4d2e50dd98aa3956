//! The browser tests, shared by three test binaries that each run them in one global
//! scope: a page (`tests/web.rs`), a dedicated worker (`tests/web_dedicated_worker.rs`) and
//! a shared worker (`tests/web_shared_worker.rs`). The wasm32 backend runs in headless
//! Chromium against a real unisock echo server that `./build.sh test` starts and names in
//! `UNISOCK_TEST_SERVER` at build time. Nothing here may touch `window`: workers have none.

use std::cell::RefCell;
use std::rc::Rc;

use unisock::{MsgEvent, ReadyState, WebSocket};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen]
extern "C" {
    /// The global `setTimeout` (a page's and a worker's alike; `Window`'s is the page's only).
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &js_sys::Function, ms: i32) -> JsValue;
}

/// The name of the global scope's class: `Window`, `DedicatedWorkerGlobalScope` or
/// `SharedWorkerGlobalScope`, so each binary can check that it runs where it says.
pub(crate) fn global_scope() -> String {
    js_sys::global().constructor().name().into()
}

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
async fn handed_over_messages_are_sent_as_text_and_binary() {
    // The same `send(msg)` as natively; the echo server sends each message back with it.
    let ws = WebSocket::new();
    ws.open(server(), &[]).await.unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for msg in [
        MsgEvent::Text("handed over ✓".into()),
        MsgEvent::Binary(big),
    ] {
        let reply = next_message(&ws);
        ws.send(msg.clone()).unwrap();
        assert_eq!(reply.await, msg);
    }
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
async fn bad_subprotocols_and_urls_are_refused_as_natively() {
    // Checked before the browser is asked, which would throw a bare SyntaxError.
    let ws = WebSocket::new();
    let err = ws
        .open(server(), &["chat.v2\r\nX-Injected: yes"])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid subprotocol name "chat.v2\r\nX-Injected: yes": it contains a CR or LF"#
    );
    let err = ws.open(server(), &["chat", "chat"]).await.unwrap_err();
    assert!(
        matches!(err, unisock::Error::InvalidProtocol { .. }),
        "{err}"
    );
    let err = ws.open("ws://127.0.0.1:1/#top", &[]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid WebSocket URL 'ws://127.0.0.1:1/#top': a WebSocket URL may not have a fragment ('#top')"
    );
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
}

/// The same reasons as natively (src/ws_url.rs's unit tests list the same cases), though
/// the browser's URL parser only says "Invalid URL".
#[wasm_bindgen_test]
async fn url_errors_give_the_same_reasons_as_natively() {
    let cases: &[(&str, &str)] = &include!("../../src/ws_url_cases.rs");
    let mut wrong = Vec::new();
    for &(url, reason) in cases {
        match WebSocket::new().open(url, &[]).await {
            Err(unisock::Error::InvalidUrl {
                url: given,
                reason: why,
            }) if (&*given, &*why) == (url, reason) => {}
            other => wrong.push(format!("{url:?}: {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[wasm_bindgen_test]
fn errors_the_browser_never_returns_are_displayed_without_details() {
    use unisock::protocol::{HandshakeError, ProtocolError};
    let handshake = unisock::Error::from(HandshakeError::BadAccept);
    assert_eq!(handshake.to_string(), "handshake failed");
    let protocol = unisock::Error::from(ProtocolError::ReservedBitsSet);
    assert_eq!(protocol.to_string(), "protocol violation");
}

#[wasm_bindgen_test]
async fn the_url_is_normalised_as_natively() {
    // The scheme lower-cased and an empty path made "/" (src/ws_url.rs tests more).
    let ws = WebSocket::new();
    let want = format!("{}/", server().trim_end_matches('/'));
    let url = want.trim_end_matches('/').replacen("ws://", "WS://", 1);
    ws.open(&url, &[]).await.unwrap();
    assert_eq!(ws.url(), Some(want));
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
    sleep_ms(0).await;
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

// ---- reconnecting (issue #9): the same semantics as natively (tests/reconnect.rs) ----

use std::collections::VecDeque;
use std::task::{Poll, Waker};
use std::time::Duration;

use unisock::{CloseEvent, Heartbeat, Reconnect};

/// How long any one awaited event may take before the test fails (it never hangs).
const EVENT_TIMEOUT_MS: i32 = 10_000;

/// Resolves after `ms` milliseconds.
async fn sleep_ms(ms: i32) {
    let timer = js_sys::Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    wasm_bindgen_futures::JsFuture::from(timer).await.unwrap();
}

/// Events of one kind, in the order they happened, awaited one at a time.
struct Log<T>(Rc<RefCell<(VecDeque<T>, Option<Waker>)>>);

impl<T> Clone for Log<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: 'static> Log<T> {
    fn new() -> Self {
        Self(Rc::new(RefCell::new((VecDeque::new(), None))))
    }

    fn push(&self, item: T) {
        let mut log = self.0.borrow_mut();
        log.0.push_back(item);
        if let Some(waker) = log.1.take() {
            waker.wake();
        }
    }

    /// The next event; fails the test after `EVENT_TIMEOUT_MS` without one.
    async fn next(&self, what: &str) -> T {
        let next = std::future::poll_fn(|cx| {
            let mut log = self.0.borrow_mut();
            match log.0.pop_front() {
                Some(item) => Poll::Ready(item),
                None => {
                    log.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        let timeout = sleep_ms(EVENT_TIMEOUT_MS);
        futures_util::pin_mut!(next, timeout);
        match futures_util::future::select(next, timeout).await {
            futures_util::future::Either::Left((item, _)) => item,
            futures_util::future::Either::Right(_) => {
                panic!("no {what} within {EVENT_TIMEOUT_MS} ms")
            }
        }
    }

    /// An event that already happened, if any.
    fn try_next(&self) -> Option<T> {
        self.0.borrow_mut().0.pop_front()
    }
}

/// What a socket's handlers saw.
struct Seen {
    opens: Log<()>,
    messages: Log<MsgEvent>,
    reconnecting: Log<(u32, Duration)>,
    closes: Log<CloseEvent>,
    errors: Log<unisock::Error>,
}

/// A socket with `policy` whose every event is logged.
fn watched(policy: Reconnect) -> (WebSocket, Seen) {
    let ws = WebSocket::new();
    ws.set_reconnect(Some(policy));
    let seen = Seen {
        opens: Log::new(),
        messages: Log::new(),
        reconnecting: Log::new(),
        closes: Log::new(),
        errors: Log::new(),
    };
    let log = seen.opens.clone();
    ws.on_open(move || log.push(()));
    let log = seen.messages.clone();
    ws.on_message(move |m| log.push(m));
    let log = seen.reconnecting.clone();
    ws.on_reconnecting(move |attempt, delay| log.push((attempt, delay)));
    let log = seen.closes.clone();
    ws.on_close(move |ev| log.push(ev));
    let log = seen.errors.clone();
    ws.on_error(move |e| log.push(e));
    (ws, seen)
}

/// Short waits, so the tests stay fast.
fn quick() -> Reconnect {
    Reconnect::default().delays(Duration::from_millis(10), Duration::from_millis(100))
}

async fn expect_text(seen: &Seen, want: &str) {
    assert_eq!(
        seen.messages.next(&format!("message {want:?}")).await,
        MsgEvent::Text(want.into())
    );
}

/// Sends a command to the echo server's control paths and returns its answer.
async fn control(command: &str) -> String {
    let ws = WebSocket::new();
    let answers = Log::new();
    let log = answers.clone();
    ws.on_message(move |m| log.push(m));
    ws.open(&server_path(command), &[]).await.unwrap();
    let answer = answers.next(&format!("an answer to {command}")).await;
    assert_eq!(ws.closed().await.code, 1000);
    match answer {
        MsgEvent::Text(text) if !text.starts_with("error") => text,
        other => panic!("{command}: {other:?}"),
    }
}

/// The JS closure sets alive, once the releases already due have run.
async fn live_closures() -> usize {
    next_tick().await;
    unisock::__live_listener_sets()
}

/// A new echo server of this test's own, which it can take down and bring back: its URL
/// and port.
async fn own_server() -> (String, u16) {
    let url = control("/control/spawn").await;
    let port = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    (url, port)
}

#[wasm_bindgen_test]
async fn a_restarted_server_is_reconnected_to_and_messages_sent_while_down_arrive_once_in_order() {
    let (url, port) = own_server().await;
    let before = live_closures().await;
    let (ws, seen) = watched(quick().buffer(64 * 1024));
    ws.open(&url, &["chat.v1"]).await.unwrap();
    seen.opens.next("open").await;
    let id = ws.id().to_string();
    ws.send_text("before").unwrap();
    expect_text(&seen, "before").await;

    assert_eq!(control(&format!("/control/down?port={port}")).await, "down");
    let (attempt, delay) = seen.reconnecting.next("on_reconnecting").await;
    assert_eq!(attempt, 1);
    assert!(delay <= Duration::from_millis(10), "{delay:?}");
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    for i in 0..20 {
        ws.send_text(&format!("while down {i}")).unwrap();
    }
    assert_eq!(
        ws.buffered_amount(),
        (0..20)
            .map(|i| format!("while down {i}").len())
            .sum::<usize>()
    );
    // Nothing listens: the attempt fails, and counts.
    assert_eq!(seen.reconnecting.next("attempt 2").await.0, 2);
    assert_eq!(ws.ready_state(), ReadyState::Connecting);

    assert_eq!(control(&format!("/control/up?port={port}")).await, "up");
    seen.opens.next("the second open").await;
    for i in 0..20 {
        expect_text(&seen, &format!("while down {i}")).await;
    }
    assert_eq!(ws.ready_state(), ReadyState::Open);
    assert_eq!(ws.id(), id);
    assert_eq!(ws.url().as_deref(), Some(url.as_str()));
    assert_eq!(
        ws.protocol(),
        "chat.v1",
        "the subprotocols are offered again"
    );
    assert_eq!(ws.buffered_amount(), 0);
    ws.send_text("after").unwrap();
    expect_text(&seen, "after").await;
    // Exactly once: nothing else arrived, and the socket never reported a close or an error.
    assert!(seen.messages.try_next().is_none());
    assert!(seen.closes.try_next().is_none());
    assert!(seen.errors.try_next().is_none());

    ws.close(1000, "done").unwrap();
    assert_eq!(seen.closes.next("on_close").await.code, 1000);
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert!(matches!(ws.send_text("late"), Err(unisock::Error::Closed)));
    // Every listener set and timer of the reconnects was released.
    assert!(live_closures().await <= before);
}

#[wasm_bindgen_test]
async fn a_normal_close_from_the_server_is_not_retried_unless_asked() {
    let (ws, seen) = watched(quick());
    ws.open(&server_path("/close1000"), &[]).await.unwrap();
    let ev = seen.closes.next("on_close").await;
    assert_eq!((ev.code, ev.reason.as_str()), (1000, "bye"));
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert!(
        seen.reconnecting.try_next().is_none(),
        "no reconnect after 1000"
    );
    assert!(matches!(ws.send_text("late"), Err(unisock::Error::Closed)));

    // Asked to (and with a long wait): retried; a local close stops it for good.
    let hour = Duration::from_secs(3600);
    let (ws, seen) = watched(quick().delays(hour, hour).on_normal_close(true));
    ws.open(&server_path("/close1000"), &[]).await.unwrap();
    assert_eq!(seen.reconnecting.next("on_reconnecting").await.0, 1);
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    // Without a buffer, sends while disconnected fail and say so.
    assert!(matches!(ws.send_text("x"), Err(unisock::Error::NotOpen)));
    ws.close(1000, "").unwrap();
    let ev = seen.closes.next("on_close").await;
    assert_eq!(
        (ev.code, ev.reason.as_str()),
        (1000, "bye"),
        "the close that started the reconnect"
    );
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert_eq!(ws.closed().await, ev);
    assert!(seen.closes.try_next().is_none(), "on_close once");
}

#[wasm_bindgen_test]
async fn an_abnormal_close_is_retried_and_the_count_restarts_after_a_success() {
    // `/drop` sends "bye" and drops TCP without a close frame (1006), every time.
    let (ws, seen) = watched(quick());
    ws.open(&server_path("/drop"), &[]).await.unwrap();
    expect_text(&seen, "bye").await;
    assert_eq!(seen.reconnecting.next("on_reconnecting").await.0, 1);
    seen.opens.next("the first open").await;
    seen.opens.next("the second open").await;
    expect_text(&seen, "bye").await;
    assert_eq!(seen.reconnecting.next("on_reconnecting").await.0, 1);
    ws.close(1000, "").unwrap();
    let ev = seen.closes.next("on_close").await;
    assert_eq!(ev.code, 1006, "{ev}");
    assert!(seen.closes.try_next().is_none());
}

#[wasm_bindgen_test]
async fn the_heartbeat_is_answered_by_an_echo_and_keeps_the_connection() {
    let (ws, seen) = watched(quick());
    ws.set_heartbeat(Some(Heartbeat::new(
        Duration::from_millis(30),
        Duration::from_secs(5),
        "hb",
    )));
    ws.open(server(), &[]).await.unwrap();
    // Each echo of the heartbeat is a quiet 30 ms later than the last.
    for _ in 0..3 {
        expect_text(&seen, "hb").await;
    }
    assert!(seen.reconnecting.try_next().is_none());
    ws.close(1000, "").unwrap();
    assert_eq!(seen.closes.next("on_close").await.code, 1000);
}

#[wasm_bindgen_test]
async fn a_silent_server_is_found_by_the_heartbeat_and_reconnected_to() {
    let before = live_closures().await;
    let (ws, seen) = watched(quick());
    ws.set_heartbeat(Some(Heartbeat::new(
        Duration::from_millis(200),
        Duration::from_millis(200),
        "hb",
    )));
    ws.open(&server_path("/silent"), &[]).await.unwrap();
    let id = ws.id().to_string();
    seen.opens.next("open").await;
    assert_eq!(seen.reconnecting.next("on_reconnecting").await.0, 1);
    seen.opens.next("the second open").await;
    assert_eq!(ws.id(), id);
    assert!(
        seen.closes.try_next().is_none(),
        "on_close only when closed for good"
    );
    ws.close(1000, "").unwrap();
    assert_eq!(seen.closes.next("on_close").await.code, 1000);
    assert!(live_closures().await <= before, "heartbeat timers released");
}

#[wasm_bindgen_test]
async fn a_silent_server_without_a_policy_ends_with_1006_and_a_timeout() {
    let ws = WebSocket::new();
    let closes = Log::new();
    let errors = Log::new();
    let log = closes.clone();
    ws.on_close(move |ev| log.push(ev));
    let log = errors.clone();
    ws.on_error(move |e| log.push(e));
    ws.set_heartbeat(Some(Heartbeat::new(
        Duration::from_millis(50),
        Duration::from_millis(100),
        "hb",
    )));
    ws.open(&server_path("/silent"), &[]).await.unwrap();
    let ev = closes.next("on_close").await;
    assert_eq!(ev.code, 1006);
    assert!(ev.reason.contains("no answer to the heartbeat"), "{ev}");
    assert!(matches!(
        errors.next("on_error").await,
        unisock::Error::Timeout(_)
    ));
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert!(matches!(ws.send_text("late"), Err(unisock::Error::Closed)));
}

#[wasm_bindgen_test]
async fn when_the_attempts_run_out_the_socket_closes_for_good() {
    use futures_util::StreamExt;
    let (url, port) = own_server().await;
    let before = live_closures().await;
    let (mut ws, seen) = watched(quick().max_attempts(Some(3)).buffer(10));
    ws.open(&url, &[]).await.unwrap();
    seen.opens.next("open").await;
    assert_eq!(control(&format!("/control/down?port={port}")).await, "down");
    for want in 1..=3 {
        assert_eq!(seen.reconnecting.next("on_reconnecting").await.0, want);
        if want == 1 {
            // The buffer is bounded: 10 bytes.
            ws.send_text("0123456789").unwrap();
            assert!(matches!(
                ws.send_text("x"),
                Err(unisock::Error::Capacity {
                    buffered: 10,
                    cap: 10
                })
            ));
            assert_eq!(ws.buffered_amount(), 10);
        }
    }
    let ev = seen.closes.next("on_close").await;
    assert_eq!(ev.code, 1006);
    assert!(ev.reason.contains("reconnect attempt 3 failed"), "{ev}");
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert!(matches!(ws.send_text("late"), Err(unisock::Error::Closed)));
    assert_eq!(ws.buffered_amount(), 0, "what waited is dropped");
    assert!(matches!(
        seen.errors.next("the last attempt's error").await,
        unisock::Error::Js(_)
    ));
    assert!(seen.errors.try_next().is_none());
    assert!(seen.reconnecting.try_next().is_none());
    assert!(seen.closes.try_next().is_none(), "on_close once");
    assert_eq!(ws.closed().await, ev);
    assert_eq!(ws.next().await, None, "the stream has ended");
    assert!(live_closures().await <= before);
    assert_eq!(control(&format!("/control/up?port={port}")).await, "up");
}

#[wasm_bindgen_test]
async fn chromium_negotiates_permessage_deflate_and_a_mebibyte_of_text_round_trips() {
    let ws = WebSocket::new();
    ws.open(server(), &[]).await.unwrap();
    // Chromium offers permessage-deflate by itself; the unisock server accepts it.
    let extensions = ws.extensions();
    assert!(
        extensions.starts_with("permessage-deflate"),
        "negotiated extensions: {extensions:?}"
    );
    let line = "{\"room\":\"lobby\",\"user\":\"chromium\",\"text\":\"compress me\"}\n";
    let text = line.repeat((1 << 20) / line.len() + 1);
    let reply = next_message(&ws);
    ws.send_text(&text).unwrap();
    assert_eq!(reply.await, MsgEvent::Text(text));
    ws.close(1000, "").unwrap();
}

#[wasm_bindgen_test]
async fn an_open_to_a_server_that_never_answers_fails_with_a_timeout() {
    let url = control("/control/mute").await;
    // The listener's first connection is upgraded and closed: use it up.
    let first = WebSocket::new();
    first.open(&url, &[]).await.unwrap();
    assert_eq!(first.closed().await.code, 1012);
    let before = live_closures().await;
    let ws = WebSocket::new();
    ws.set_open_timeout(Some(Duration::from_millis(300)));
    let err = ws.open(&url, &[]).await.unwrap_err();
    assert!(matches!(err, unisock::Error::Timeout(_)), "{err}");
    assert!(err.to_string().contains("opening handshake"), "{err}");
    assert!(
        live_closures().await <= before,
        "listeners and timer released"
    );
}

#[wasm_bindgen_test]
async fn each_reconnect_attempt_to_a_silent_server_times_out_and_the_next_follows() {
    let url = control("/control/mute").await;
    let (ws, seen) = watched(quick().max_attempts(Some(2)));
    let errors = Log::new();
    let log = errors.clone();
    ws.on_error(move |e| log.push(e));
    ws.set_open_timeout(Some(Duration::from_millis(300)));
    ws.open(&url, &[]).await.unwrap();
    seen.opens.next("open").await;
    assert_eq!(seen.reconnecting.next("attempt 1").await.0, 1);
    assert_eq!(seen.reconnecting.next("attempt 2").await.0, 2);
    let ev = seen.closes.next("on_close").await;
    assert_eq!(ev.code, 1006);
    assert!(ev.reason.contains("reconnect attempt 2 failed"), "{ev}");
    assert!(ev.reason.contains("opening handshake"), "{ev}");
    assert!(matches!(
        errors.next("on_error").await,
        unisock::Error::Timeout(_)
    ));
    assert_eq!(ws.ready_state(), ReadyState::Closed);
}

/// `close()` while `open()` waits for the server aborts the open, as JS does: `open()`
/// fails with `Closed`, `on_close` reports 1006, and later sends fail with `Closed`.
#[wasm_bindgen_test]
async fn close_while_connecting_aborts_the_open() {
    let url = control("/control/mute").await;
    // The listener's first connection is upgraded and closed: use it up.
    let first = WebSocket::new();
    first.open(&url, &[]).await.unwrap();
    assert_eq!(first.closed().await.code, 1012);
    let ws = WebSocket::new();
    let closes = Log::new();
    let log = closes.clone();
    ws.on_close(move |ev| log.push(ev));
    let opening = ws.open(&url, &[]);
    let closing = async {
        next_tick().await;
        assert_eq!(ws.ready_state(), ReadyState::Connecting);
        ws.close(1000, "never mind").unwrap();
    };
    let (opened, ()) = futures_util::future::join(opening, closing).await;
    let err = opened.unwrap_err();
    assert!(matches!(err, unisock::Error::Closed), "{err}");
    let ev = closes.next("on_close").await;
    assert_eq!((ev.code, ev.was_clean), (1006, false));
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert!(matches!(ws.send_text("late"), Err(unisock::Error::Closed)));
}

#[wasm_bindgen_test]
async fn a_sink_sends_a_stream_past_the_browser_buffer_in_order_and_closes() {
    use futures_util::{stream, SinkExt, StreamExt};
    // 4 MiB in 64 KiB messages: past the 1 MiB `bufferedAmount` at which sends wait.
    let sent: Vec<MsgEvent> = (0..64u8)
        .map(|i| MsgEvent::Binary(vec![i; 64 * 1024]))
        .collect();
    let ws = WebSocket::new();
    ws.open(server(), &[]).await.unwrap();
    let mut echoes = ws.clone();
    let mut items = stream::iter(sent.clone()).map(Ok);
    let mut sink = ws.clone();
    let sending = async {
        sink.send_all(&mut items).await?;
        SinkExt::flush(&mut sink).await
    };
    let echoed = echoes.by_ref().take(sent.len()).collect::<Vec<_>>();
    let (flushed, back) = futures_util::future::join(sending, echoed).await;
    flushed.unwrap();
    assert!(back == sent, "the echoes differ from what was sent");
    // A browser drops what arrives after `close()`: the sink closes once all came back.
    SinkExt::close(&mut sink).await.unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert_eq!(echoes.next().await, None);
    // The same wait as a plain call: fails once closed.
    let late = ws.send_async(MsgEvent::Text("late".into())).await;
    assert!(matches!(late, Err(unisock::Error::Closed)), "{late:?}");
}

/// What a room client saw: messages as `(offset, text)`, gaps, opens.
#[derive(Debug, PartialEq)]
enum RoomSeen {
    Message(u64, String),
    Gap(unisock::resume::Gap),
}

#[wasm_bindgen_test]
async fn a_room_client_gets_what_it_missed_while_away_once_and_in_order() {
    use unisock::resume::{RoomClient, SUBPROTOCOL};

    let (url, port) = own_server().await;
    // Each of the three binaries (page, workers) has a room of its own on the shared server.
    let room = format!("web-{}", (js_sys::Math::random() * 1e9) as u64);
    let ws = WebSocket::new();
    ws.set_reconnect(Some(quick()));
    let client = RoomClient::new(&ws);
    let (seen, opens) = (Log::new(), Log::new());
    let log = seen.clone();
    client.on_message(move |_room, at, msg| {
        log.push(RoomSeen::Message(at.offset, msg.txt().unwrap().into()))
    });
    let log = seen.clone();
    client.on_gap(move |gap| log.push(RoomSeen::Gap(gap)));
    let log = opens.clone();
    client.on_open(move || log.push(()));
    client.join(&room).unwrap();
    ws.open(&format!("{url}rooms"), &[SUBPROTOCOL])
        .await
        .unwrap();
    opens.next("open").await;
    // Sent after the join on the same connection, so published after it.
    for text in ["m1", "m2"] {
        client
            .send(MsgEvent::Text(format!("{room} {text}")))
            .unwrap();
    }
    for offset in 1..=2 {
        assert_eq!(
            seen.next("a room message").await,
            RoomSeen::Message(offset, format!("m{offset}"))
        );
    }

    assert_eq!(control(&format!("/control/down?port={port}")).await, "down");
    // Published through the main server while this client is away.
    let publisher = WebSocket::new();
    let answers = Log::new();
    let log = answers.clone();
    publisher.on_message(move |m| log.push(m));
    publisher.open(&server_path("/rooms"), &[]).await.unwrap();
    for offset in 3..=4 {
        publisher.send_text(&format!("{room} m{offset}")).unwrap();
        let answer = answers.next("a publish answer").await;
        assert!(
            answer.txt().unwrap().ends_with(&format!(":{offset}")),
            "{answer:?}"
        );
    }
    publisher.close(1000, "").unwrap();
    assert!(seen.try_next().is_none());

    assert_eq!(control(&format!("/control/up?port={port}")).await, "up");
    opens.next("the second open").await;
    for offset in 3..=4 {
        assert_eq!(
            seen.next("a missed message").await,
            RoomSeen::Message(offset, format!("m{offset}"))
        );
    }
    client.send(MsgEvent::Text(format!("{room} m5"))).unwrap();
    assert_eq!(
        seen.next("a live message").await,
        RoomSeen::Message(5, "m5".into())
    );
    assert!(seen.try_next().is_none(), "nothing twice, no gap");
    ws.close(1000, "done").unwrap();
}
