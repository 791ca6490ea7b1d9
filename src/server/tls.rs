//! TLS for the webhook port: the serving certificate (reloaded from disk when cert-manager
//! rotates it), optional client-certificate verification, and the rustls server configuration.
//!
//! Invariants: the resolver always holds a certificate/key pair that parsed and matched; a new
//! pair replaces it only after it parsed completely and its key matches its certificate, so a
//! half-written or broken rotation is logged and the last good pair keeps serving. New handshakes
//! pick up the new pair; established connections keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// Errors loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read TLS certificate {path}: {reason}")]
    ReadCert { path: String, reason: String },
    #[error("failed to read TLS key {path}: {reason}")]
    ReadKey { path: String, reason: String },
    #[error("TLS certificate file {0} holds no certificate")]
    NoCert(String),
    #[error("TLS key {key} does not fit certificate {cert}: {reason}")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("failed to read client CA {path}: {reason}")]
    ClientCa { path: String, reason: String },
    #[error("failed to build the TLS configuration: {0}")]
    Config(String),
}

/// Paths of the serving certificate chain and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Reads, parses and checks a certificate/key pair.
pub fn load_certified_key(
    paths: &CertPaths,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_name = paths.cert.display().to_string();
    let key_name = paths.key.display().to_string();
    let cert_pem = std::fs::read(&paths.cert).map_err(|e| TlsError::ReadCert {
        path: cert_name.clone(),
        reason: e.to_string(),
    })?;
    let key_pem = std::fs::read(&paths.key).map_err(|e| TlsError::ReadKey {
        path: key_name.clone(),
        reason: e.to_string(),
    })?;
    certified_key_from_pem(&cert_pem, &key_pem, &cert_name, &key_name, provider)
}

fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_name: &str,
    key_name: &str,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::ReadCert {
            path: cert_name.to_string(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert_name.to_string()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::ReadKey {
        path: key_name.to_string(),
        reason: e.to_string(),
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::ReadKey {
            path: key_name.to_string(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: cert_name.to_string(),
        key: key_name.to_string(),
        reason: e.to_string(),
    })?;
    Ok(certified)
}

/// When the leaf certificate of `key` expires, in seconds since the epoch (for the expiry
/// metric and its alert). `None` if the certificate cannot be parsed.
pub fn not_after(key: &CertifiedKey) -> Option<i64> {
    let der = key.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The serving certificate, swappable at runtime.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn new(initial: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(initial),
        }
    }

    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Builds the rustls server configuration: TLS 1.2 and 1.3 only, ALPN h2 and http/1.1, and
/// client certificates required and verified against `client_ca` when given.
pub fn server_config(
    store: Arc<CertStore>,
    client_ca: Option<&Path>,
    provider: Arc<CryptoProvider>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let name = path.display().to_string();
            let pem = std::fs::read(path).map_err(|e| TlsError::ClientCa {
                path: name.clone(),
                reason: e.to_string(),
            })?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| TlsError::ClientCa {
                    path: name.clone(),
                    reason: e.to_string(),
                })?;
                roots.add(cert).map_err(|e| TlsError::ClientCa {
                    path: name.clone(),
                    reason: e.to_string(),
                })?;
            }
            if roots.is_empty() {
                return Err(TlsError::ClientCa {
                    path: name,
                    reason: "no CA certificate in the file".into(),
                });
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: name,
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Fingerprint of the files' contents, to notice a rotation.
fn fingerprint(paths: &CertPaths) -> Option<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(std::fs::read(&paths.cert).ok()?);
    h.update(std::fs::read(&paths.key).ok()?);
    Some(h.finalize().into())
}

/// Watches the certificate files and swaps a new pair into `store` when their contents change
/// and the new pair is good. Polls (cert-manager's Secret volumes swap a symlink, which file
/// event watchers report unreliably); a broken pair is logged once per change and retried on the
/// next change.
pub async fn reload_loop(
    paths: CertPaths,
    store: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
    interval: Duration,
    on_reload: impl Fn(Result<&CertifiedKey, &TlsError>) + Send + 'static,
    shutdown: CancellationToken,
) {
    let mut seen = fingerprint(&paths);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = fingerprint(&paths);
        if now.is_none() || now == seen {
            continue;
        }
        seen = now;
        match load_certified_key(&paths, &provider) {
            Ok(key) => {
                on_reload(Ok(&key));
                store.replace(key);
                tracing::info!(cert = %paths.cert.display(), "serving certificate reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "new serving certificate rejected; keeping the previous one");
                on_reload(Err(&e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn matching_pair_loads() {
        let (c, k) = pair("a");
        certified_key_from_pem(c.as_bytes(), k.as_bytes(), "c", "k", &provider()).unwrap();
    }

    #[test]
    fn expiry_is_read_from_the_leaf() {
        let (c, k) = pair("a");
        let key =
            certified_key_from_pem(c.as_bytes(), k.as_bytes(), "c", "k", &provider()).unwrap();
        let expiry = not_after(&key).unwrap();
        // rcgen's default validity ends in 4096.
        assert!(expiry > 4_000_000_000, "{expiry}");
    }

    #[test]
    fn mismatched_pair_is_rejected() {
        let (c, _) = pair("a");
        let (_, k) = pair("b");
        let err =
            certified_key_from_pem(c.as_bytes(), k.as_bytes(), "c", "k", &provider()).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn garbage_is_rejected() {
        let (c, _) = pair("a");
        for (cert, key) in [("", "junk"), (c.as_str(), "junk"), ("-----BEGIN", "")] {
            assert!(
                certified_key_from_pem(cert.as_bytes(), key.as_bytes(), "c", "k", &provider())
                    .is_err()
            );
        }
    }
}
