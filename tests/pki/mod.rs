//! Support for the TLS tests: a private certificate authority made with rcgen, the leaf
//! certificates it signs (a server's for "localhost", clients'), the rustls configurations
//! that use them, and `wss://` echo servers run by `unisock::serve(..).tls(..)`.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different subset"
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion,
};
use unisock::{WebSocket, WebSockets};

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain (leaf first) and its key.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Leaf {
    fn clone(&self) -> Self {
        Leaf {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// A private certificate authority, as a company runs: its root is in no public store.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A fresh CA named `name`, with the extensions strict verifiers (OpenSSL's
    /// X509_STRICT, webpki) want of a CA.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    /// The CA's root certificate.
    pub fn cert(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// The CA's root certificate in PEM, as a CA bundle file holds it.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the root's PEM to a new file under the test target's temp directory.
    pub fn write_pem(&self) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "test-ca-{}-{}.pem",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&file, self.pem()).unwrap();
        file
    }

    /// A leaf certificate for `name`, signed by this CA: a server's, or a client's.
    pub fn leaf(&self, name: &str, client: bool) -> Leaf {
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// A root store holding only this CA.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert()).unwrap();
        roots
    }

    /// A server configuration for "localhost", with a leaf this CA signs.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let leaf = self.leaf("localhost", false);
        Arc::new(
            ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(leaf.chain, leaf.key)
                .unwrap(),
        )
    }

    /// As [`TestCa::server_config`], requiring a client certificate that `clients` signed.
    pub fn server_config_requiring(&self, clients: &TestCa) -> Arc<ServerConfig> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(clients.roots()), provider())
                .build()
                .unwrap();
        let leaf = self.leaf("localhost", false);
        Arc::new(
            ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(leaf.chain, leaf.key)
                .unwrap(),
        )
    }

    /// A client configuration trusting this CA only, on `versions` of TLS, presenting
    /// `cert` if given.
    pub fn client_config(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        cert: Option<Leaf>,
    ) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(self.roots());
        Arc::new(match cert {
            Some(leaf) => builder.with_client_auth_cert(leaf.chain, leaf.key).unwrap(),
            None => builder.with_no_client_auth(),
        })
    }
}

/// A server socket that echoes every message.
pub fn echo_socket() -> WebSocket {
    let ws = WebSocket::new();
    let echo = ws.clone();
    ws.on_message(move |m| {
        let _ = echo.send(m);
    });
    ws
}

/// Serves `sockets` over TLS with `config` on a free port of 127.0.0.1, echoing on `/ws`;
/// returns the `wss://localhost:PORT/ws` URL.
pub async fn serve_wss(sockets: &WebSockets, config: Arc<ServerConfig>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = sockets
        .serve(listener, |req| {
            (req.uri().path() == "/ws").then(echo_socket)
        })
        .tls(config);
    tokio::spawn(async move { serving.await });
    format!("wss://localhost:{port}/ws")
}
