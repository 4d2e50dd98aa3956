//! The terminal chat client: the same client code as the browser page (`chat/client.rs`),
//! natively. Every line typed on stdin is said to the room (`/quit` or end of input
//! leaves); every line received is printed on stdout, status changes as `* ...`.
//! It goes through the proxy the environment names (`http_proxy`/`https_proxy`,
//! `all_proxy`, `no_proxy`), unless given `--no-proxy`.
//!
//! `cargo run --example chat_client -- --url ws://127.0.0.1:8069/ws`, and:
//! - `--header 'Name: value'` (repeatable) adds a header to the handshake, e.g.
//!   `--header 'Authorization: Bearer T'` for `chat_server --token T`;
//! - `--ca FILE` trusts the CA certificates in the PEM file `FILE` for `wss://` (instead of
//!   the bundled Mozilla roots), e.g. a private CA's;
//! - `--unix PATH` connects to the Unix domain socket `PATH` instead of dialling the URL,
//!   which still gives the request's `Host` and path (`ws://` only). Such a connection
//!   does not reconnect: the chat ends with it;
//! - `--no-proxy` connects directly whatever the proxy environment variables say.
// Native only. `cargo test --target wasm32-unknown-unknown` (what `wasm-pack test` runs)
// builds every example, so on wasm32 this one is an empty module, without a `main`.
#![cfg_attr(target_arch = "wasm32", no_main)]
#![cfg(not(target_arch = "wasm32"))]

#[path = "chat/client.rs"]
mod client;

use std::sync::Arc;

use client::{Chat, ChatEvent};
use tokio::sync::mpsc;
use unisock::resume::SUBPROTOCOL;
use unisock::rustls::pki_types::pem::PemObject;
use unisock::rustls::pki_types::CertificateDer;
use unisock::rustls::{ClientConfig, RootCertStore};
use unisock::{Proxy, WebSocket, WebSocketExt};

const USAGE: &str = "usage: chat_client [--url ws://HOST:PORT/ws] [--header 'Name: value']... \
                     [--ca FILE] [--unix PATH] [--no-proxy]";

/// What the command line asks for.
struct Args {
    url: String,
    headers: http::HeaderMap,
    ca: Option<String>,
    unix: Option<String>,
    no_proxy: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            eprintln!("{why}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let ws = match configure(&args) {
        Ok(ws) => ws,
        Err(why) => {
            eprintln!("{why}");
            return std::process::ExitCode::from(2);
        }
    };
    let chat = match &args.unix {
        None => Chat::connect(ws, &args.url, &[], print).await,
        Some(path) => {
            let (path, url) = (path.clone(), args.url.clone());
            Chat::connect_with(ws, &args.url, &[], print, |ws| async move {
                let unix = tokio::net::UnixStream::connect(&path).await.map_err(|e| {
                    unisock::Error::Io(std::io::Error::new(e.kind(), format!("{path}: {e}")))
                })?;
                ws.open_over(unix, &url, &[SUBPROTOCOL]).await
            })
            .await
        }
    };
    let Ok(chat) = chat else {
        return std::process::ExitCode::FAILURE; // `print` showed why
    };
    let mut lines = stdin_lines();
    let run = chat.run();
    tokio::pin!(run);
    loop {
        tokio::select! {
            () = &mut run => return std::process::ExitCode::SUCCESS,
            line = lines.recv() => match line {
                Some(line) => {
                    if let Err(e) = chat.submit(&line) {
                        println!("* not sent: {e}");
                    }
                }
                None => break,
            }
        }
    }
    // End of input: leave, and finish the closing handshake.
    let _ = chat.leave();
    run.await;
    std::process::ExitCode::SUCCESS
}

/// A socket set up as `args` say: proxy, headers, trusted CAs.
fn configure(args: &Args) -> Result<WebSocket, String> {
    let ws = WebSocket::new();
    if args.no_proxy {
        let _ = ws.set_proxy(Proxy::None); // no URL, so nothing to refuse
    }
    ws.set_request_headers(args.headers.clone())
        .map_err(|e| format!("--header: {e}"))?;
    if let Some(file) = &args.ca {
        ws.set_tls_config(ca_config(file).map_err(|e| format!("--ca {file}: {e}"))?);
    }
    if args.unix.is_some() && !args.url.starts_with("ws://") {
        return Err("--unix: the URL must be ws:// (no TLS over the Unix socket)".into());
    }
    Ok(ws)
}

/// A TLS configuration trusting the certificates in the PEM file `file`, and no others.
fn ca_config(file: &str) -> Result<Arc<ClientConfig>, Box<dyn std::error::Error>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(file)? {
        roots.add(cert?)?;
    }
    if roots.is_empty() {
        return Err("no certificate in the file".into());
    }
    let provider = Arc::new(unisock::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn print(event: ChatEvent) {
    match event {
        ChatEvent::Status(status) => println!("* {status}"),
        ChatEvent::Line(line) => println!("{line}"),
    }
}

/// The command line (see the module's documentation); `--url` defaults to
/// `ws://127.0.0.1:8069/ws`.
fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        url: "ws://127.0.0.1:8069/ws".to_string(),
        headers: http::HeaderMap::new(),
        ca: None,
        unix: None,
        no_proxy: false,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => parsed.url = value()?,
            "--header" => {
                let (name, value) = header(&value()?)?;
                parsed.headers.append(name, value);
            }
            "--ca" => parsed.ca = Some(value()?),
            "--unix" => parsed.unix = Some(value()?),
            "--no-proxy" => parsed.no_proxy = true,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(parsed)
}

/// `Name: value`, as curl's `--header` takes it.
fn header(line: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let bad = |why: String| format!("--header {line:?}: {why}");
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| bad("not 'Name: value'".into()))?;
    let name =
        http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| bad(e.to_string()))?;
    let value = http::HeaderValue::from_str(value.trim()).map_err(|e| bad(e.to_string()))?;
    Ok((name, value))
}

/// Stdin's lines, read on a plain thread: a blocking read cannot be cancelled, and this
/// way it does not hold up the exit when the server ends the chat first.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
