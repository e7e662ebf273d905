//! TLS for served endpoints: rustls with the ring provider, from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (leaf first).
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

fn file_error(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid_input("tls", format!("{what} {}: {e}", path.display()))
}

/// Loads the files into a server configuration offering HTTP/2 and HTTP/1.1.
pub(crate) fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| file_error(&files.cert, "TLS certificate file", e))?;
    if certs.is_empty() {
        return Err(file_error(
            &files.cert,
            "TLS certificate file",
            "no certificate in it",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_error(&files.key, "TLS key file", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::invalid_input(
                "tls",
                format!(
                    "TLS certificate {} and key {} do not work together: {e}",
                    files.cert.display(),
                    files.key.display()
                ),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
