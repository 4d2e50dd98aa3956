//! Support for the proxy tests: real proxies (tinyproxy for HTTP CONNECT, microsocks for
//! SOCKS5) started on free ports, and WebSocket servers whose first message to a client is
//! the address the connection came from. The proxies connect out from [`PROXY_SOURCE`], so
//! a test sees whether a connection went through one.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different subset"
)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use unisock::{MsgEvent, WebSocket};

use crate::common::{free_port, record, with_timeout};

/// Where the proxies' outgoing connections come from (tinyproxy's `Bind`, microsocks'
/// `-b`): a server that sees this address was reached through a proxy.
pub const PROXY_SOURCE: &str = "127.0.0.2";

pub use crate::common::Process;

/// The proxy program `name` (`$var` if set, else on PATH). Missing, it fails the test
/// under CI (`CI=true`), where `./build.sh setup` installs it, and skips it elsewhere.
pub fn program(name: &str, var: &str) -> Option<String> {
    if let Ok(bin) = std::env::var(var) {
        return Some(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|bin| bin.is_file())
    {
        return Some(found.to_string_lossy().into_owned());
    }
    let why = format!("{name} not found: install it (./build.sh setup) or set {var}");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("skipped: {why}");
    None
}

/// Waits until `port` accepts connections, failing the test after 10 seconds.
fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A proxy process and its port.
pub struct Proxy {
    _process: Process,
    pub port: u16,
}

/// tinyproxy on a free port, with Basic auth if `auth` is set, and CONNECT allowed only
/// to `connect_ports` (to any port if empty). `None` if tinyproxy is missing (not under CI).
pub fn tinyproxy(auth: Option<(&str, &str)>, connect_ports: &[u16]) -> Option<Proxy> {
    let bin = program("tinyproxy", "TINYPROXY_BIN")?;
    let port = free_port();
    let mut config =
        format!("Port {port}\nListen 127.0.0.1\nBind {PROXY_SOURCE}\nTimeout 30\nMaxClients 50\n");
    if let Some((user, pass)) = auth {
        config += &format!("BasicAuth {user} {pass}\n");
    }
    for allowed in connect_ports {
        config += &format!("ConnectPort {allowed}\n");
    }
    let file =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tinyproxy-{port}.conf"));
    std::fs::write(&file, config).unwrap();
    let child = Command::new(&bin)
        .arg("-d") // in the foreground, so killing it stops it
        .arg("-c")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let process = Process(child);
    wait_for_port(port, "tinyproxy");
    Some(Proxy {
        _process: process,
        port,
    })
}

/// microsocks (SOCKS5) on a free port, with a username and password if `auth` is set.
/// `None` if microsocks is missing (not under CI).
pub fn microsocks(auth: Option<(&str, &str)>) -> Option<Proxy> {
    let bin = program("microsocks", "MICROSOCKS_BIN")?;
    let port = free_port();
    let mut command = Command::new(&bin);
    command.args([
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-b",
        PROXY_SOURCE,
    ]);
    if let Some((user, pass)) = auth {
        command.args(["-u", user, "-P", pass]);
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let process = Process(child);
    wait_for_port(port, "microsocks");
    Some(Proxy {
        _process: process,
        port,
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A fresh self-signed certificate for "localhost": the server's acceptor, and a client
/// configuration that trusts it.
pub fn tls_pair() -> (TlsAcceptor, Arc<ClientConfig>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (TlsAcceptor::from(Arc::new(server)), Arc::new(client))
}

/// A WebSocket server on 127.0.0.1 (over TLS with `tls`) that first sends each client the
/// IP address it connected from, then echoes text; returns its port.
pub async fn spawn_server(tls: Option<TlsAcceptor>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = unisock::server::accept(&listener).await;
            let tls = tls.clone();
            tokio::spawn(async move {
                let ws = WebSocket::new();
                let echo = ws.clone();
                ws.on_message(move |m| {
                    if let MsgEvent::Text(t) = m {
                        let _ = echo.send_text(&t);
                    }
                });
                let upgraded = match tls {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => ws.upgrade(stream).await,
                        Err(_) => return,
                    },
                    None => ws.upgrade(tcp).await,
                };
                if upgraded.is_ok() && ws.send_text(&peer.ip().to_string()).is_ok() {
                    ws.read().await;
                }
            });
        }
    });
    port
}

/// Opens `ws` to `url` (a [`spawn_server`]), checks an echo, closes, and returns the
/// address the server saw the connection come from.
pub async fn source_of(ws: WebSocket, url: &str) -> unisock::Result<String> {
    let mut events = record(&ws);
    with_timeout(ws.open(url, &[])).await?;
    tokio::spawn({
        let ws = ws.clone();
        async move { ws.read().await }
    });
    let Some(MsgEvent::Text(source)) = with_timeout(events.messages.recv()).await else {
        panic!("no address from the server");
    };
    ws.send_text("through").unwrap();
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text("through".into()))
    );
    ws.close(1000, "").unwrap();
    assert!(with_timeout(events.closes.recv()).await.unwrap().was_clean);
    Ok(source)
}
