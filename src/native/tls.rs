//! `wss://` for clients: rustls with the webpki roots, or a caller's own `ClientConfig`
//! (for self-signed test certificates or a private CA).

use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::BoxIo;
use crate::{Error, Result};

/// The default client configuration: Mozilla's roots (webpki-roots), built once.
fn default_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
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

/// Wraps a connected TCP stream in TLS for `host`.
pub(super) async fn connect(
    tcp: TcpStream,
    host: &str,
    config: Option<Arc<ClientConfig>>,
) -> Result<BoxIo> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| Error::Tls(format!("invalid server name {host:?}: {e}")))?;
    let connector = TlsConnector::from(config.unwrap_or_else(default_config));
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(Box::new(stream))
}
