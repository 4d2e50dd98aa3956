//! The terminal chat client example as a process, driven through its stdin and stdout:
//! `--header` carries a token to `chat_server --token` (and without it the client is told
//! 401), `--ca` trusts a private CA's PEM file for `wss://`, and `--unix` chats over a Unix
//! domain socket.
//!
//! Runs the examples built here with cargo, or CHAT_CLIENT and CHAT_SERVER.
#![cfg(not(target_arch = "wasm32"))]

mod common;
mod pki;

use std::future::IntoFuture;
use std::process::{ExitStatus, Stdio};

use common::{start_chat_server, with_timeout};
use pki::{echo_socket, serve_wss, TestCa};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use unisock::WebSockets;

/// A chat_client process: what it prints, line by line, and its stdin.
struct ChatClient {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Every line printed so far, for failure messages.
    seen: Vec<String>,
}

impl ChatClient {
    /// Starts chat_client with `args`, ignoring the proxy environment.
    fn start(args: &[&str]) -> ChatClient {
        let bin = common::example_bin("chat_client", &[], "CHAT_CLIENT");
        let mut child = tokio::process::Command::new(bin)
            .arg("--no-proxy")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        ChatClient {
            child,
            stdin,
            stdout,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `wanted`, and returns it; fails the test if the
    /// client ends first or takes over 10 seconds.
    async fn until(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let line = with_timeout(self.stdout.next_line()).await.unwrap();
            let Some(line) = line else {
                panic!("chat_client ended; it printed {:#?}", self.seen);
            };
            self.seen.push(line.clone());
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Types `line`.
    async fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Ends its input (it leaves the chat) and waits for it to exit.
    async fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        with_timeout(self.child.wait()).await.unwrap()
    }
}

#[tokio::test]
async fn with_header_the_client_joins_a_chat_that_wants_a_token() {
    let (_server, addr) = start_chat_server(&["--token", "s3cret"]);
    let url = format!("ws://{addr}/ws");

    let mut client =
        ChatClient::start(&["--url", &url, "--header", "Authorization: Bearer s3cret"]);
    let welcome = client.until(|l| l.starts_with("* connected as ")).await;
    let id = welcome.trim_start_matches("* connected as ").to_string();
    client.say("hello with a token").await;
    client
        .until(|l| l == format!("{id} says, 'hello with a token'"))
        .await;
    assert!(client.finish().await.success());

    // Without the header: told why, and it exits with a failure.
    let mut client = ChatClient::start(&["--url", &url]);
    let refused = client.until(|l| l.starts_with("* could not connect")).await;
    assert!(refused.contains("401"), "{refused}");
    assert!(!client.finish().await.success());

    // A header the protocol owns is refused before connecting.
    let client = ChatClient::start(&["--url", &url, "--header", "Sec-WebSocket-Key: x"]);
    assert_eq!(client.finish().await.code(), Some(2));
}

#[tokio::test]
async fn with_ca_the_client_trusts_a_private_ca_over_wss() {
    let ca = TestCa::new("unisock chat test CA");
    let sockets = WebSockets::new();
    let url = serve_wss(&sockets, ca.server_config()).await;
    let ca_file = ca.write_pem();
    let ca_path = ca_file.to_str().unwrap();

    let mut client = ChatClient::start(&["--url", &url, "--ca", ca_path]);
    client.until(|l| l == format!("* connected to {url}")).await;
    client.say("over TLS").await;
    client.until(|l| l == "over TLS").await;
    assert!(client.finish().await.success());

    // Without it, the bundled roots do not know the CA.
    let mut client = ChatClient::start(&["--url", &url]);
    let refused = client.until(|l| l.starts_with("* could not connect")).await;
    assert!(refused.contains("certificate"), "{refused}");
    assert!(!client.finish().await.success());
    let _ = std::fs::remove_file(&ca_file);
}

#[tokio::test]
async fn with_unix_the_client_chats_over_a_unix_socket() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("chat-client-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(unisock::serve(listener, |_| Some(echo_socket())).into_future());
    let path_arg = path.to_str().unwrap();

    let mut client = ChatClient::start(&["--unix", path_arg, "--url", "ws://localhost/ws"]);
    client
        .until(|l| l == "* connected to ws://localhost/ws")
        .await;
    client.say("over a Unix socket").await;
    client.until(|l| l == "over a Unix socket").await;
    assert!(client.finish().await.success());

    // No TLS over the Unix socket: a wss:// URL is refused before connecting.
    let client = ChatClient::start(&["--unix", path_arg, "--url", "wss://localhost/ws"]);
    assert_eq!(client.finish().await.code(), Some(2));
    let _ = std::fs::remove_file(&path);
}
