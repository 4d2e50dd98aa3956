//! `wss://` for clients: rustls with the webpki roots (and the OS trust store with the
//! `native-roots` feature), or a caller's own `ClientConfig` (for self-signed test
//! certificates, a private CA, or a client certificate).

use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::BoxIo;
use crate::{Error, Result};

/// The default client configuration: Mozilla's roots (webpki-roots), and with the
/// `native-roots` feature the OS store's too, built once (reading the OS store is slow).
fn default_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            add_native_roots(&mut roots);
            Arc::new(
                ClientConfig::builder_with_provider(Arc::new(
                    tokio_rustls::rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth())
                .unwrap_or_else(|_| {
                    // Only fails if the ring provider supported no protocol version.
                    ClientConfig::builder()
                        .with_root_certificates(RootCertStore::empty())
                        .with_no_client_auth()
                }),
            )
        })
        .clone()
}

/// Adds the OS trust store's certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` instead when
/// set, as OpenSSL reads them). A store that cannot be read is logged, not fatal: the
/// bundled roots still work.
#[cfg(feature = "native-roots")]
fn add_native_roots(roots: &mut RootCertStore) {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!("the OS trust store: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!("the OS trust store: {added} roots added, {ignored} unparsable ignored");
}

#[cfg(not(feature = "native-roots"))]
fn add_native_roots(_roots: &mut RootCertStore) {}

/// Wraps a connected stream (TCP, or a proxy's tunnel) in TLS for `host`; `addr`
/// (`host:port`) names the server in errors.
pub(super) async fn connect<S: super::Transport>(
    tcp: S,
    host: &str,
    addr: &str,
    config: Option<Arc<ClientConfig>>,
) -> Result<BoxIo> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| Error::Tls(format!("invalid server name {host:?}: {e}")))?;
    let connector = TlsConnector::from(config.unwrap_or_else(default_config));
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| Error::Tls(format!("handshake with {addr} failed: {}", explain(&e))))?;
    Ok(Box::new(stream))
}

/// A TLS handshake error in words that help: a `wss://` URL for a plain `ws://` server
/// is the usual mistake, and rustls reports it only as a corrupt record or an EOF.
fn explain(e: &std::io::Error) -> String {
    use rustls::InvalidMessage::{InvalidContentType, UnknownProtocolVersion};
    use std::io::ErrorKind;
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match (e.kind(), rustls_error) {
        // Plain text where a TLS record was due: an HTTP server's "HTTP/1.1 400" answer
        // to our ClientHello starts with 'H', which is no TLS record type.
        (_, Some(rustls::Error::InvalidMessage(InvalidContentType | UnknownProtocolVersion))) => {
            "the server does not speak TLS (did you mean ws://?)".into()
        }
        (_, Some(rustls::Error::AlertReceived(alert))) => explain_alert(*alert),
        (ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset, _) => {
            "the server closed the connection mid-handshake \
             (does it speak TLS? did you mean ws://?)"
                .into()
        }
        _ => e.to_string(),
    }
}

/// `Error::Tls` for an alert the server sent after our side of the handshake was done, as
/// `addr`'s refusal: in TLS 1.3 a server checks the client's certificate only then, so
/// its verdict arrives as the first read (or write) of the WebSocket handshake fails.
/// Other errors are returned as they are.
pub(super) fn alerted(e: Error, addr: &str) -> Error {
    let Error::Io(io) = &e else { return e };
    match io
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => Error::Tls(format!(
            "handshake with {addr} failed: {}",
            explain_alert(*alert)
        )),
        _ => e,
    }
}

/// A server's TLS alert in words: above all the ones that refuse a client certificate.
fn explain_alert(alert: rustls::AlertDescription) -> String {
    use rustls::AlertDescription::{BadCertificate, CertificateRequired, UnknownCA};
    use rustls::AlertDescription::{CertificateExpired, CertificateRevoked, CertificateUnknown};
    match alert {
        CertificateRequired => "the server requires a client certificate \
             (give one with set_tls_config: ClientConfig's with_client_auth_cert)"
            .into(),
        BadCertificate | UnknownCA | CertificateUnknown | CertificateExpired
        | CertificateRevoked => {
            format!("the server refused our client certificate ({alert:?})")
        }
        _ => format!("the server sent the alert {alert:?}"),
    }
}
