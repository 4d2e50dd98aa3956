//! The `native-roots` feature: a client with the default TLS configuration trusts a
//! private CA that is in the OS trust store, here named by `SSL_CERT_FILE` (which
//! rustls-native-certs reads as OpenSSL does), and does not trust it when it is not there.
//!
//! The default configuration is built once per process, so each case runs in a child
//! process: this test binary run again on this test alone, in the child role
//! ([`CHILD_URL`] set), with the environment under test.
#![cfg(all(feature = "native-roots", not(target_arch = "wasm32")))]

mod common;
mod pki;

use common::{open_client, with_timeout};
use pki::{serve_wss, TestCa};
use unisock::{Error, MsgEvent, WebSocket, WebSockets};

/// Set in a child: the `wss://` URL to open.
const CHILD_URL: &str = "UNISOCK_TEST_NATIVE_ROOTS_URL";
/// Set in a child: whether it must trust the server (`trusted`) or not (`untrusted`).
const CHILD_EXPECTS: &str = "UNISOCK_TEST_NATIVE_ROOTS_EXPECTS";
/// What a child prints once all its checks passed: its exit status alone would also be
/// success if it had run no test at all.
const CHILD_PASSED: &str = "native-roots child passed";

/// The child's role: open the URL with the default configuration, and check the outcome.
async fn child(url: &str) {
    match std::env::var(CHILD_EXPECTS).unwrap().as_str() {
        "trusted" => {
            let (ws, mut events) = open_client(url).await;
            ws.send_text("trusted by the OS store").unwrap();
            assert_eq!(
                with_timeout(events.messages.recv()).await,
                Some(MsgEvent::Text("trusted by the OS store".into()))
            );
            ws.close(1000, "").unwrap();
            assert!(with_timeout(events.closes.recv()).await.unwrap().was_clean);
        }
        "untrusted" => {
            let err = with_timeout(WebSocket::new().open(url, &[]))
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Tls(_)), "{err:?}");
            assert!(err.to_string().contains("certificate"), "{err}");
        }
        other => panic!("unknown expectation {other:?}"),
    }
    println!("{CHILD_PASSED}");
}

/// Runs this test again in a child process that opens `url` and `expects` the outcome,
/// with `SSL_CERT_FILE` set to `ca_file` or, without one, the OS store as it is.
async fn run_child(url: &str, expects: &str, ca_file: Option<&std::path::Path>) {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "a_private_ca_in_the_os_trust_store_is_trusted",
            "--nocapture",
        ])
        .env(CHILD_URL, url)
        .env(CHILD_EXPECTS, expects)
        // Nothing between the child and the server.
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .env_remove("SSL_CERT_DIR")
        .kill_on_drop(true);
    match ca_file {
        Some(file) => command.env("SSL_CERT_FILE", file),
        None => command.env_remove("SSL_CERT_FILE"),
    };
    let out = with_timeout(command.output()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(CHILD_PASSED),
        "the {expects} child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_private_ca_in_the_os_trust_store_is_trusted() {
    if let Ok(url) = std::env::var(CHILD_URL) {
        return child(&url).await;
    }
    let ca = TestCa::new("unisock test private CA");
    let sockets = WebSockets::new();
    let url = serve_wss(&sockets, ca.server_config()).await;
    let ca_file = ca.write_pem();
    run_child(&url, "trusted", Some(&ca_file)).await;
    run_child(&url, "untrusted", None).await;
    let _ = std::fs::remove_file(&ca_file);
}
