//! Development certificates (`sparkward certs`, local mode, tests): a CA and a serving
//! certificate signed by it, written with the names cert-manager and Kubernetes TLS Secrets use
//! (`ca.crt`, `tls.crt`, `tls.key`). Production certificates come from cert-manager (certs/).

use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A generated CA and serving pair, PEM encoded.
#[derive(Debug, Clone)]
pub struct DevCerts {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("failed to generate certificates: {0}")]
    Generate(String),
    #[error("failed to write {path}: {reason}")]
    Write { path: String, reason: String },
}

fn gen_err(e: rcgen::Error) -> CertsError {
    CertsError::Generate(e.to_string())
}

/// Generates a CA and a serving certificate for `names` (DNS names or IP addresses) valid for
/// `days` days.
pub fn generate(names: &[String], days: u32) -> Result<DevCerts, CertsError> {
    let now = OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "sparkward development CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - Duration::minutes(5);
    ca_params.not_after = now + Duration::days(i64::from(days) + 1);
    let ca_key = KeyPair::generate().map_err(gen_err)?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(gen_err)?;

    let mut params = CertificateParams::new(names.to_vec()).map_err(gen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "sparkward".into()),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days));
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = params.signed_by(&key, &ca).map_err(gen_err)?;
    Ok(DevCerts {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Paths of the files `write` produces.
pub struct CertFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.crt"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), CertsError> {
    let err = |e: std::io::Error| CertsError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(err)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    // Rename so a watcher never sees half a file.
    std::fs::rename(&tmp, path).map_err(err)
}

/// Writes the certificates into `dir` (created if needed).
pub fn write(dir: &Path, certs: &DevCerts) -> Result<CertFiles, CertsError> {
    std::fs::create_dir_all(dir).map_err(|e| CertsError::Write {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let files = CertFiles::in_dir(dir);
    write_file(&files.ca, &certs.ca_pem, false)?;
    write_file(&files.key, &certs.key_pem, true)?;
    write_file(&files.cert, &certs.cert_pem, false)?;
    Ok(files)
}

/// The `caBundle` value of a webhook configuration: base64 of the CA PEM.
pub fn ca_bundle(ca_pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_loads_and_chains_to_the_ca() {
        let certs = generate(&["localhost".into(), "127.0.0.1".into()], 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = write(dir.path(), &certs).unwrap();
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        crate::server::tls::load_certified_key(
            &crate::server::tls::CertPaths {
                cert: files.cert,
                key: files.key,
            },
            &provider,
        )
        .unwrap();
        assert!(certs.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!ca_bundle(&certs.ca_pem).contains('\n'));
    }
}
