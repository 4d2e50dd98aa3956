//! # unisock
//!
//! One W3C-shaped [`WebSocket`] type that works as a client **and** a server natively
//! (on Tokio) and as a client in the browser (on `wasm32-unknown-unknown`, wrapping
//! `web_sys::WebSocket`). The same application code compiles for both targets: the
//! backend is picked at compile time, never with `cfg` in your code.
//!
//! ## A client (native or browser)
//! ```no_run
//! # async fn run() -> Result<(), unisock::Error> {
//! use unisock::{MsgEvent, WebSocket};
//!
//! let ws = WebSocket::new();
//! ws.on_message(|msg: MsgEvent| println!("got {msg}"));
//! ws.on_close(|ev| println!("closed: {ev}"));
//! ws.open("ws://127.0.0.1:8069/ws", &[]).await?;
//! ws.send_text("Hello!")?;
//! ws.read().await; // the event loop natively; returns at once in the browser
//! # Ok(()) }
//! ```
//!
//! ## A server (native)
//! ```no_run
//! # #[cfg(not(target_arch = "wasm32"))]
//! # async fn run() -> Result<(), unisock::Error> {
//! use unisock::{MsgEvent, WebSocket};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8069").await?;
//! loop {
//!     let (tcp, _) = unisock::server::accept(&listener).await; // survives fd exhaustion
//!     tokio::spawn(async move {
//!         let ws = WebSocket::new();
//!         let echo = ws.clone();
//!         ws.on_message(move |msg| {
//!             let _ = match msg {
//!                 MsgEvent::Text(t) => echo.send_text(&t),
//!                 MsgEvent::Binary(b) => echo.send_binary(&b),
//!             };
//!         });
//!         if ws.upgrade(tcp).await.is_ok() {
//!             ws.read().await;
//!         }
//!     });
//! }
//! # }
//! ```
//!
//! ## More
//! - `WebSocket` is also a `futures::Stream` of [`MsgEvent`]s, and `closed()` resolves with
//!   the [`CloseEvent`], on both targets. `ws.next()` needs a `StreamExt` in scope: add
//!   `futures-util = "0.3"` and `use futures_util::StreamExt;` (see [`WebSocket`]'s
//!   `Stream` impl).
//! - Native only: the `WebSockets` registry (get, broadcast, shutdown, a connection cap)
//!   with `serve(listener, handler)`, `server::accept` (an accept that outlives running out
//!   of file descriptors), the `WebSocketExt` trait (ping, limits, send-queue cap, read
//!   timeout, TLS config, upgrades with an editable 101 response), and, with the `axum`
//!   feature, `unisock::axum::WebSocketUpgrade`; with the `redis` feature, one registry
//!   across many processes over Redis pub/sub (`backplane`).
//! - Protocol: RFC 6455 complete for both roles (checked with the Autobahn testsuite); the
//!   sans-io core is public as [`protocol`] (in the browser without the handshake's HTTP
//!   exchange, which the browser does).
//!
//! ## Targets
//! - native (any non-wasm target): Tokio, client and server.
//! - `wasm32-unknown-unknown`: the browser's WebSocket, client only. Other wasm targets
//!   (WASI, emscripten) are refused at compile time.

// No panic reachable from peer input: the library never unwraps, expects or panics
// (unit tests may).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

cfg_if::cfg_if! {
    if #[cfg(all(target_arch = "wasm32", target_os = "unknown"))] {
        mod web;
        use web as backend;
        pub use web::__live_listener_sets;
    } else if #[cfg(target_arch = "wasm32")] {
        compile_error!("unisock's browser backend needs wasm32-unknown-unknown; WASI and emscripten are not supported");
    } else {
        mod native;
        use native as backend;
        #[cfg(feature = "axum")]
        pub mod axum;
        pub mod backplane;
        mod registry;
        pub mod server;
        pub use native::ext::WebSocketExt;
        pub use native::proxy::Proxy;
        pub use registry::WebSockets;
        pub use server::serve;
        /// The rustls version unisock's `wss://` support uses, for [`WebSocketExt::set_tls_config`].
        pub use rustls;
    }
}

mod budget;
mod config;
mod error;
mod event;
mod handlers;
pub mod protocol;
mod reconnect;
pub mod resume;
mod send_sync;
mod session;
mod socket;
mod ws_url;

pub use backend::Transport;
pub use budget::MemoryBudget;
pub use config::{DeflateConfig, KeepAlive, Limits};
pub use error::{Error, ProxyError, Result};
pub use event::{CloseEvent, MsgEvent, ReadyState};
pub use reconnect::{Heartbeat, Reconnect};
pub use send_sync::{WasmNotSend, WasmNotSendSync, WasmNotSync};
pub use socket::WebSocket;
