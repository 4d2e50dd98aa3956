//! Servers at their limits, over real sockets: out of file descriptors, `serve` goes on
//! accepting once connections close; over `set_max_connections`, it answers 503.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::net::SocketAddr;

use common::{open_client, raw_handshake, serve_registry, until_len, with_timeout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use unisock::protocol::HandshakeError;
use unisock::{Error, MsgEvent, WebSocket, WebSockets};

/// Connects to `addr`, sends an upgrade request, and returns all the server answered
/// before it closed.
async fn answer(addr: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    with_timeout(tcp.read_to_end(&mut answer)).await.unwrap();
    String::from_utf8(answer).unwrap()
}

/// Asserts that a new connection to `addr` is refused with 503, `Retry-After` and
/// `Connection: close` (the server closed: the answer ended).
async fn assert_refused(addr: SocketAddr) {
    let answer = answer(addr).await;
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nRetry-After: 5\r\n"), "{answer}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
}

/// The address in a `ws://ADDR/ws` URL.
fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn over_the_cap_a_connection_is_answered_503_until_a_socket_closes() {
    let sockets = WebSockets::new();
    sockets.set_max_connections(Some(2));
    let url = serve_registry(&sockets).await;
    let addr = addr_of(&url);
    let (first, _first_events) = open_client(&url).await;
    let (_second, _second_events) = open_client(&url).await;

    assert_refused(addr).await;
    // A unisock client is told why.
    let refused = with_timeout(WebSocket::new().open(&url, &[])).await;
    match refused {
        Err(Error::Handshake(e)) => {
            assert!(
                matches!(*e, HandshakeError::BadStatus { code: 503, .. }),
                "{e}"
            );
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    // Refused connections are not counted: still two.
    until_len(&sockets, 2).await;

    // One socket closes: a new client is taken on, and the registry is at its cap again.
    first.close(1000, "").unwrap();
    until_len(&sockets, 1).await;
    let (_third, mut third_events) = open_client(&url).await;
    until_len(&sockets, 2).await;
    assert_refused(addr).await;

    // The new socket is served.
    sockets.broadcast_text("hello", None);
    assert_eq!(
        with_timeout(third_events.messages.recv()).await,
        Some(MsgEvent::Text("hello".into()))
    );
}

#[tokio::test]
async fn a_handshake_in_progress_counts_towards_the_cap() {
    let sockets = WebSockets::new();
    sockets.set_max_connections(Some(1));
    let url = serve_registry(&sockets).await;
    let addr = addr_of(&url);

    // Connected, request not sent yet: accepted (before the next one) and upgrading.
    let upgrading = TcpStream::connect(addr).await.unwrap();
    assert_refused(addr).await;
    assert_eq!(sockets.len(), 0);

    // Its handshake completes: registered, so still at the cap.
    let mut open = raw_handshake(upgrading, addr, "/ws").await;
    until_len(&sockets, 1).await;
    assert_refused(addr).await;

    // It goes away: a client is taken on.
    open.shutdown().await.unwrap();
    drop(open);
    until_len(&sockets, 0).await;
    let (_ws, _events) = open_client(&url).await;
    until_len(&sockets, 1).await;
}

/// The server runs in a child process (this test binary, run again under `ulimit -n`), so
/// that only its descriptors are limited: the test's own connections do not count, and
/// the rest of this binary's tests are not affected.
#[cfg(unix)]
mod fd_limit {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::process::Stdio;

    use tokio::io::{AsyncBufReadExt, BufReader, Lines};
    use tokio::net::TcpStream;
    use tokio::process::ChildStdout;
    use unisock::{MsgEvent, WebSocket};

    use crate::common::{open_client, with_timeout};

    /// Set in the child process: it runs the server.
    const CHILD: &str = "UNISOCK_LIMITS_FD_CHILD";
    /// The child's `RLIMIT_NOFILE`: a few descriptors for the runtime, the rest for
    /// connections.
    const FD_LIMIT: usize = 64;
    /// The test's name, to run it again (and alone) as the child.
    const TEST: &str =
        "fd_limit::out_of_file_descriptors_serve_accepts_again_once_connections_close";

    #[tokio::test]
    async fn out_of_file_descriptors_serve_accepts_again_once_connections_close() {
        if std::env::var_os(CHILD).is_some() {
            match child_server().await {}
        }
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" \"$@\""))
            .arg(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut said = Said {
            lines: BufReader::new(child.stdout.take().unwrap()).lines(),
            seen: Vec::new(),
        };

        let listening = said.line_with("listening on ").await;
        // (libtest may have begun the line with the test's name.)
        let (_, addr) = listening.split_once("listening on ").unwrap();
        let addr: SocketAddr = addr.parse().unwrap();
        // More than the server has descriptors for: it accepts until they run out, and
        // the kernel completes the rest into the listen backlog.
        let mut idle = Vec::new();
        for _ in 0..FD_LIMIT + 16 {
            idle.push(with_timeout(TcpStream::connect(addr)).await.unwrap());
        }
        let failure = said.line_with("Too many open files").await;
        assert!(failure.contains("accept failed"), "{failure}");

        // They close: after its pause the server accepts (and drops) the rest of the
        // backlog, then a real client.
        drop(idle);
        let (ws, mut events) = open_client(&format!("ws://{addr}/")).await;
        ws.send_text("still there?").unwrap();
        assert_eq!(
            with_timeout(events.messages.recv()).await,
            Some(MsgEvent::Text("still there?".into()))
        );
        child.kill().await.unwrap();
    }

    /// What the child printed, line by line.
    struct Said {
        lines: Lines<BufReader<ChildStdout>>,
        seen: Vec<String>,
    }

    impl Said {
        /// The next line that contains `needle`; panics with all it said if it ends first.
        async fn line_with(&mut self, needle: &str) -> String {
            loop {
                let Some(line) = with_timeout(self.lines.next_line()).await.unwrap() else {
                    panic!(
                        "the server ended before saying {needle:?}; it said {:#?}",
                        self.seen
                    );
                };
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        }
    }

    /// The child: an echo server on `unisock::serve` that prints its address, and its
    /// warnings and errors, on stdout; it exits when its stdin closes (the test is gone).
    async fn child_server() -> Infallible {
        tracing::subscriber::set_global_default(Print).unwrap();
        std::thread::spawn(|| {
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
            std::process::exit(0);
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        unisock::serve(listener, |_| {
            let ws = WebSocket::new();
            let echo = ws.clone();
            ws.on_message(move |m| {
                let _ = echo.send(m);
            });
            Some(ws)
        })
        .await
    }

    /// A tracing subscriber that prints warnings and errors on stdout, one line each.
    struct Print;

    impl tracing::Subscriber for Print {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            *metadata.level() <= tracing::Level::WARN
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            struct Fields(String);
            impl tracing::field::Visit for Fields {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    self.0 += &format!(" {}={value:?}", field.name());
                }
            }
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            println!("{}:{}", event.metadata().level(), fields.0);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
}
