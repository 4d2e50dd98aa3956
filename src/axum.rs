//! axum integration (feature `axum`): a handler takes [`WebSocketUpgrade`] and returns the
//! configured [`WebSocket`]; unisock validates the request, answers 101, and runs the
//! socket in a [`WebSockets`] registry.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use unisock::axum::WebSocketUpgrade;
//! use unisock::{MsgEvent, WebSocket, WebSockets};
//!
//! async fn ws(upgrade: WebSocketUpgrade, sockets: axum::extract::State<WebSockets>) -> axum::response::Response {
//!     let ws = WebSocket::new();
//!     let echo = ws.clone();
//!     ws.on_message(move |msg| {
//!         if let MsgEvent::Text(t) = msg {
//!             let _ = echo.send_text(&t);
//!         }
//!     });
//!     upgrade.accept(ws, &sockets)
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new().route("/ws", get(ws)).with_state(WebSockets::new());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8069").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::protocol::handshake;
use crate::{WebSocket, WebSocketExt, WebSockets};

/// The extractor: an HTTP request that asks to become a WebSocket.
pub struct WebSocketUpgrade {
    request: http::Request<()>,
    on_upgrade: Option<OnUpgrade>,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let on_upgrade = parts.extensions.remove::<OnUpgrade>();
        let mut request = http::Request::new(());
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        Ok(Self {
            request,
            on_upgrade,
        })
    }
}

impl WebSocketUpgrade {
    /// The request's offered subprotocols, in order.
    ///
    /// ```no_run
    /// use unisock::axum::WebSocketUpgrade;
    /// use unisock::{WebSocket, WebSockets};
    /// async fn ws(upgrade: WebSocketUpgrade, sockets: axum::extract::State<WebSockets>) -> axum::response::Response {
    ///     let chat = upgrade.offered_protocols().iter().any(|p| p == "chat");
    ///     upgrade.accept_with_protocol(WebSocket::new(), &sockets, chat.then_some("chat"))
    /// }
    /// ```
    pub fn offered_protocols(&self) -> Vec<String> {
        crate::server::offered_protocols(&self.request)
    }

    /// The upgrade request.
    ///
    /// ```no_run
    /// use unisock::axum::WebSocketUpgrade;
    /// use unisock::{WebSocket, WebSockets};
    /// async fn ws(upgrade: WebSocketUpgrade, sockets: axum::extract::State<WebSockets>) -> axum::response::Response {
    ///     let room = upgrade.request().uri().query().unwrap_or("lobby").to_string();
    ///     let ws = WebSocket::new();
    ///     ws.on_open(move || tracing::info!("joined {room}"));
    ///     upgrade.accept(ws, &sockets)
    /// }
    /// ```
    pub fn request(&self) -> &http::Request<()> {
        &self.request
    }

    /// Validates the request against `ws`'s allowed origins and answers: 101 and the socket
    /// runs in `sockets` (registered until it closes, with the registry's read timeout,
    /// memory budget and compression options, and its
    /// [`on_upgrade`](WebSockets::on_upgrade) hook run on the 101 response), or the error
    /// status (400/403/426) with the reason.
    ///
    /// ```no_run
    /// use unisock::axum::WebSocketUpgrade;
    /// use unisock::{WebSocket, WebSockets};
    /// async fn ws(upgrade: WebSocketUpgrade, sockets: axum::extract::State<WebSockets>) -> axum::response::Response {
    ///     let ws = WebSocket::new();
    ///     let echo = ws.clone();
    ///     ws.on_message(move |msg| {
    ///         let _ = echo.send(msg);
    ///     });
    ///     upgrade.accept(ws, &sockets)
    /// }
    /// ```
    pub fn accept(self, ws: WebSocket, sockets: &WebSockets) -> Response {
        self.accept_with_protocol(ws, sockets, None)
    }

    /// As [`WebSocketUpgrade::accept`], selecting a subprotocol for the 101 response. A
    /// `protocol` the client did not offer, or that is not an RFC 7230 token, is a bug in
    /// the handler: it is answered `500 Internal Server Error` with the reason.
    ///
    /// ```no_run
    /// use unisock::axum::WebSocketUpgrade;
    /// use unisock::{WebSocket, WebSockets};
    /// async fn ws(upgrade: WebSocketUpgrade, sockets: axum::extract::State<WebSockets>) -> axum::response::Response {
    ///     if !upgrade.offered_protocols().iter().any(|p| p == "chat.v2") {
    ///         return (axum::http::StatusCode::BAD_REQUEST, "speak chat.v2").into_response();
    ///     }
    ///     upgrade.accept_with_protocol(WebSocket::new(), &sockets, Some("chat.v2"))
    /// }
    /// # use axum::response::IntoResponse;
    /// ```
    pub fn accept_with_protocol(
        self,
        ws: WebSocket,
        sockets: &WebSockets,
        protocol: Option<&str>,
    ) -> Response {
        let origins = ws.allowed_origins();
        let accept = match handshake::validate_request(&self.request, origins.as_deref()) {
            Ok(accept) => accept,
            Err(e) => {
                tracing::warn!("WebSocket upgrade refused: {e}");
                return (e.status(), e.to_string()).into_response();
            }
        };
        let Some(on_upgrade) = self.on_upgrade else {
            return (
                http::StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded (HTTP/1.1 is needed)",
            )
                .into_response();
        };
        let mut response = crate::protocol::handshake::upgrade_response(&accept.accept);
        let registry_deflate = ws.inner.deflate_config().or(sockets.deflate());
        let deflate = ws.inner.negotiate_deflate(&self.request, registry_deflate);
        if let Some(value) = deflate
            .as_ref()
            .and_then(|n| http::HeaderValue::from_str(&n.answer).ok())
        {
            response
                .headers_mut()
                .insert(http::header::SEC_WEBSOCKET_EXTENSIONS, value);
        }
        if let Some(protocol) = protocol {
            match crate::server::selected_protocol(&self.request, protocol) {
                Ok(value) => {
                    response
                        .headers_mut()
                        .insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
                }
                // The handler's mistake, not the client's: answering 101 without it would
                // break the client (or lie to the server's socket), so refuse with 500.
                Err(e) => {
                    tracing::error!("WebSocket upgrade refused: {e}");
                    return (http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                        .into_response();
                }
            }
        }
        ws.set_read_timeout(sockets.read_timeout());
        ws.set_message_timeout(sockets.message_timeout());
        if let Some(budget) = sockets.memory_budget() {
            ws.set_memory_budget(Some(budget));
        }
        // The registry's hook, as on every other path: it edits the response axum sends.
        // The stream is hyper's, later: the pending upgrade holds none meanwhile.
        let mut pending = crate::server::PendingUpgrade {
            ws,
            request: self.request,
            response,
            stream: Box::new(tokio::io::empty()),
            leftover: Vec::new(),
            deflate,
        };
        sockets.run_upgrade_hook(&mut pending);
        let crate::server::PendingUpgrade {
            ws,
            request,
            response,
            deflate,
            ..
        } = pending;
        let (protocol, deflate) = crate::server::agreed(&response, deflate);
        let sockets = sockets.clone();
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    if ws.inner.check_unconnected().is_ok() {
                        ws.inner.attach_server(
                            Box::new(io),
                            Vec::new(),
                            &request,
                            (protocol, deflate),
                        );
                        sockets.run(ws).await;
                    }
                }
                Err(e) => tracing::debug!("upgrade failed: {e}"),
            }
        });
        response.map(|()| axum::body::Body::empty())
    }
}
