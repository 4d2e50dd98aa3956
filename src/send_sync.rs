//! `WasmNotSend` / `WasmNotSync`: handler bounds written once for both targets (wgpu's pattern).
//!
//! Natively the handlers run on Tokio worker threads, so they must be `Send + Sync`. In the
//! browser everything runs on one thread and JS values are `!Send`, so nothing is required.

cfg_if::cfg_if! {
    if #[cfg(all(target_arch = "wasm32", target_os = "unknown"))] {
        /// Requires `Send` natively and nothing in the browser.
        pub trait WasmNotSend {}
        impl<T: ?Sized> WasmNotSend for T {}
        /// Requires `Sync` natively and nothing in the browser.
        pub trait WasmNotSync {}
        impl<T: ?Sized> WasmNotSync for T {}
        /// A shared event handler: the browser backend is single-threaded.
        pub(crate) type Handler<A> = std::rc::Rc<dyn Fn(A)>;
        pub(crate) fn handler<A>(f: impl Fn(A) + 'static) -> Handler<A> {
            std::rc::Rc::new(f)
        }
        /// A boxed future a handle keeps (the `Sink`'s wait): JS futures are `!Send`.
        pub(crate) type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T>>>;
    } else {
        /// Requires `Send` natively and nothing in the browser.
        pub trait WasmNotSend: Send {}
        impl<T: ?Sized + Send> WasmNotSend for T {}
        /// Requires `Sync` natively and nothing in the browser.
        pub trait WasmNotSync: Sync {}
        impl<T: ?Sized + Sync> WasmNotSync for T {}
        /// A shared event handler: native handlers run on whichever task drives the socket.
        pub(crate) type Handler<A> = std::sync::Arc<dyn Fn(A) + Send + Sync>;
        pub(crate) fn handler<A>(f: impl Fn(A) + Send + Sync + 'static) -> Handler<A> {
            std::sync::Arc::new(f)
        }
        /// A boxed future a handle keeps (the `Sink`'s wait): handles cross threads.
        pub(crate) type BoxFuture<T> =
            std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
    }
}

/// `Send + Sync` natively, nothing in the browser: the bound on every event handler.
pub trait WasmNotSendSync: WasmNotSend + WasmNotSync {}
impl<T: ?Sized + WasmNotSend + WasmNotSync> WasmNotSendSync for T {}
