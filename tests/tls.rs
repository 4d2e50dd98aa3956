//! `wss://`: a unisock client and server over TLS with a certificate generated in the
//! test, and a client that refuses an untrusted certificate.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::sync::Arc;

use common::with_timeout;
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use unisock::{Error, MsgEvent, WebSocket, WebSocketExt};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS echo server for "localhost" with a fresh self-signed certificate; returns its
/// port and the certificate.
async fn tls_echo_server() -> (u16, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = unisock::server::accept(&listener).await;
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let ws = WebSocket::new();
                let echo = ws.clone();
                ws.on_message(move |m| {
                    if let MsgEvent::Text(t) = m {
                        let _ = echo.send_text(&t);
                    }
                });
                if ws.upgrade(tls).await.is_ok() {
                    ws.read().await;
                }
            });
        }
    });
    (port, cert)
}

#[tokio::test]
async fn wss_round_trip_with_a_private_root() {
    let (port, cert) = tls_echo_server().await;
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();

    let ws = WebSocket::new();
    ws.set_tls_config(Arc::new(config));
    let (ws, mut events) =
        common::open_configured(ws, &format!("wss://localhost:{port}/secure")).await;
    ws.send_text("over TLS").unwrap();
    assert_eq!(
        with_timeout(events.messages.recv()).await,
        Some(MsgEvent::Text("over TLS".into()))
    );
    ws.close(1000, "").unwrap();
    assert!(with_timeout(events.closes.recv()).await.unwrap().was_clean);
}

#[tokio::test]
async fn an_untrusted_certificate_fails_open_with_a_tls_error() {
    let (port, _cert) = tls_echo_server().await;
    let ws = WebSocket::new();
    let err = with_timeout(ws.open(&format!("wss://localhost:{port}/"), &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
}
