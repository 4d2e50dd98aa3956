//! Proxies: ws:// and wss:// through real proxies on 127.0.0.1, with and without
//! credentials: tinyproxy (HTTP CONNECT, Basic auth) and microsocks (SOCKS5, username and
//! password), both started here on free ports. The server sees the proxy's source address
//! ([`proxies::PROXY_SOURCE`]), so each test knows the proxy carried the connection. A
//! refused tunnel (wrong password, forbidden port) fails `open` with `Error::Proxy` naming
//! the proxy and its answer.
//!
//! Needs tinyproxy and microsocks (`./build.sh setup` installs them; or TINYPROXY_BIN,
//! MICROSOCKS_BIN): missing, a test fails under CI and is skipped elsewhere.
#![cfg(not(target_arch = "wasm32"))]

mod common;
mod proxies;

use common::with_timeout;
use proxies::{microsocks, source_of, spawn_server, tinyproxy, tls_pair, PROXY_SOURCE};
use unisock::{Error, Proxy, WebSocket, WebSocketExt};

/// A socket set to go through `proxy`.
fn via(proxy: &str) -> WebSocket {
    let ws = WebSocket::new();
    ws.set_proxy(Proxy::Url(proxy.into())).unwrap();
    ws
}

/// ws:// and wss:// (SNI and certificate for the target, "localhost") through `proxy`
/// arrive from the proxy.
async fn both_schemes_through(proxy: &str) {
    let port = spawn_server(None).await;
    let source = source_of(via(proxy), &format!("ws://127.0.0.1:{port}/plain")).await;
    assert_eq!(source.unwrap(), PROXY_SOURCE, "ws:// via {proxy}");

    let (acceptor, client) = tls_pair();
    let port = spawn_server(Some(acceptor)).await;
    let ws = via(proxy);
    ws.set_tls_config(client);
    let source = source_of(ws, &format!("wss://localhost:{port}/secure")).await;
    assert_eq!(source.unwrap(), PROXY_SOURCE, "wss:// via {proxy}");
}

#[tokio::test]
async fn http_connect_without_credentials() {
    let Some(proxy) = tinyproxy(None, &[]) else {
        return;
    };
    both_schemes_through(&format!("http://127.0.0.1:{}", proxy.port)).await;
}

#[tokio::test]
async fn http_connect_with_basic_auth() {
    let Some(proxy) = tinyproxy(Some(("alice", "s3cret")), &[]) else {
        return;
    };
    both_schemes_through(&format!("http://alice:s3cret@127.0.0.1:{}", proxy.port)).await;
    // A proxy URL without a scheme is an HTTP proxy, as curl reads it.
    both_schemes_through(&format!("alice:s3cret@127.0.0.1:{}", proxy.port)).await;
}

#[tokio::test]
async fn socks5_without_credentials() {
    let Some(proxy) = microsocks(None) else {
        return;
    };
    // socks5h: the proxy resolves "localhost"; socks5: we do.
    both_schemes_through(&format!("socks5h://127.0.0.1:{}", proxy.port)).await;
    both_schemes_through(&format!("socks5://127.0.0.1:{}", proxy.port)).await;
}

#[tokio::test]
async fn socks5_with_username_and_password() {
    let Some(proxy) = microsocks(Some(("bob", "pa:ss word"))) else {
        return;
    };
    // Credentials are percent-encoded in the URL.
    both_schemes_through(&format!(
        "socks5h://bob:pa%3Ass%20word@127.0.0.1:{}",
        proxy.port
    ))
    .await;
    both_schemes_through(&format!(
        "socks5://bob:pa%3Ass%20word@127.0.0.1:{}",
        proxy.port
    ))
    .await;
}

/// `open` through `proxy` to a `ws://` server fails with the proxy's refusal.
async fn refusal(proxy: &str) -> (unisock::ProxyError, String) {
    let port = spawn_server(None).await;
    let err = with_timeout(via(proxy).open(&format!("ws://127.0.0.1:{port}/"), &[]))
        .await
        .unwrap_err();
    let message = err.to_string();
    match err {
        Error::Proxy(refused) => {
            assert_eq!(refused.target, format!("127.0.0.1:{port}"), "{message}");
            (*refused, message)
        }
        other => panic!("not a proxy error: {other:?}"),
    }
}

#[tokio::test]
async fn http_connect_refusals_name_the_proxy_and_its_answer() {
    let Some(proxy) = tinyproxy(Some(("alice", "s3cret")), &[]) else {
        return;
    };
    let addr = format!("127.0.0.1:{}", proxy.port);
    // tinyproxy answers a wrong password 401, and no credentials 407.
    let cases = [
        (
            format!("http://alice:wrong@{addr}"),
            401,
            "401 Unauthorized",
        ),
        (
            format!("http://{addr}"),
            407,
            "407 Proxy Authentication Required",
        ),
    ];
    for (url, status, answer) in cases {
        let (refused, message) = refusal(&url).await;
        assert_eq!(refused.status, Some(status), "{message}");
        assert_eq!(
            (refused.proxy.as_str(), refused.answer.as_str()),
            (addr.as_str(), answer)
        );
        let target = &refused.target;
        assert_eq!(
            message,
            format!("the proxy {addr} refused the tunnel to {target}: {answer}")
        );
        assert!(!message.contains("wrong"), "the password leaked: {message}");
    }

    // CONNECT only to port 443: the test server's port is forbidden.
    let Some(strict) = tinyproxy(None, &[443]) else {
        return;
    };
    let (refused, message) = refusal(&format!("http://127.0.0.1:{}", strict.port)).await;
    assert_eq!(refused.status, Some(403), "{message}");
    assert!(message.ends_with(": 403 Access violation"), "{message}");
}

#[tokio::test]
async fn socks5_refusals_name_the_proxy_and_its_answer() {
    let Some(proxy) = microsocks(Some(("bob", "s3cret"))) else {
        return;
    };
    let addr = format!("127.0.0.1:{}", proxy.port);
    let (refused, message) = refusal(&format!("socks5h://bob:wrong@{addr}")).await;
    assert_eq!(
        (refused.proxy.as_str(), refused.status),
        (addr.as_str(), None)
    );
    assert!(
        message.starts_with(&format!(
            "the proxy {addr} refused the tunnel to 127.0.0.1:"
        )),
        "{message}"
    );
    assert!(message.contains("username and password"), "{message}");
    assert!(!message.contains("wrong"), "the password leaked: {message}");

    let (_, message) = refusal(&format!("socks5h://{addr}")).await;
    assert!(message.contains("no authentication method"), "{message}");
}

/// A proxy that is not there: the I/O error names the proxy, and keeps the kind.
#[tokio::test]
async fn an_unreachable_proxy_is_named() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let port = spawn_server(None).await;
    for scheme in ["http", "socks5h"] {
        let err = with_timeout(
            via(&format!("{scheme}://{addr}")).open(&format!("ws://127.0.0.1:{port}/"), &[]),
        )
        .await
        .unwrap_err();
        common::assert_connection_refused(&err, &format!("could not connect to the proxy {addr}"));
    }
}

/// `Proxy::None` connects directly, whatever the environment says.
#[tokio::test]
async fn no_proxy_connects_directly() {
    let port = spawn_server(None).await;
    let ws = WebSocket::new();
    ws.set_proxy(Proxy::None).unwrap();
    let source = source_of(ws, &format!("ws://127.0.0.1:{port}/")).await;
    assert_eq!(source.unwrap(), "127.0.0.1");
}

/// A proxy URL is checked when set: nothing is stored when it is refused.
#[test]
fn bad_proxy_urls_are_refused_when_set() {
    let ws = WebSocket::new();
    let cases = [
        ("ftp://proxy.example:21", "scheme"),
        ("https://proxy.example", "https://"),
        ("http://", "host"),
        ("http://proxy.example:99999", "port"),
    ];
    for (url, why) in cases {
        match ws.set_proxy(Proxy::Url(url.into())) {
            Err(Error::InvalidUrl { url: got, reason }) => {
                assert_eq!(&*got, url);
                assert!(reason.contains(why), "{url}: {reason}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    // The password is not repeated in the error.
    let err = ws
        .set_proxy(Proxy::Url("gopher://user:hunter2@proxy.example".into()))
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// What a proxy sends past its `200` answer is the tunnel's first bytes: here (a fake
/// proxy, in one write) the server's refusal of the upgrade, which `open` must read.
#[tokio::test]
async fn bytes_after_the_connect_answer_are_kept() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && tcp.read(&mut byte).await.unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"CONNECT example.com:80 HTTP/1.1\r\n"));
        let answer = "HTTP/1.1 200 Connection established\r\n\r\n\
                      HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno";
        tcp.write_all(answer.as_bytes()).await.unwrap();
        // Held open: the client must not need anything more.
        let _ = tcp.read(&mut byte).await;
    });
    let err = with_timeout(via(&format!("http://{addr}")).open("ws://example.com/", &[]))
        .await
        .unwrap_err();
    let Error::Handshake(refused) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(refused.status().as_u16(), 403, "{err}");
}
