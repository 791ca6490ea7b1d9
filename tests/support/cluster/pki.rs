//! Every certificate and key the control plane needs, generated with rcgen for one run and
//! written into the run directory: the API server's serving pair (CA + leaf for 127.0.0.1 and
//! localhost, made by `sparkward::certs`), a separate client CA with the admin
//! (`O=system:masters`) and kube-controller-manager client certificates, and the service-account
//! signing key (ECDSA P-256, which kube-apiserver accepts for `--service-account-*-key-file`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A client certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The generated material, PEM in memory and as files under `dir`.
#[derive(Clone, Debug)]
pub struct Pki {
    /// CA of the API server's serving certificate (what clients trust).
    pub serving_ca_pem: String,
    pub serving_ca: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// CA the API server trusts for client certificates (`--client-ca-file`).
    pub client_ca: PathBuf,
    /// `CN=sparkward-test-admin, O=system:masters`.
    pub admin: ClientCert,
    /// `CN=system:kube-controller-manager`, the name the bootstrap RBAC binds.
    pub controller_manager: ClientCert,
    /// Service-account token signing key (private, PKCS#8) and its public half.
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}

fn err(e: impl std::fmt::Display) -> String {
    format!("generating test certificates: {e}")
}

impl Pki {
    pub fn generate(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(err)?;
        let names = ["127.0.0.1".to_string(), "localhost".to_string()];
        let serving = sparkward::certs::generate(&names, 2).map_err(err)?;
        let files = sparkward::certs::write(&dir.join("serving"), &serving).map_err(err)?;

        let now = OffsetDateTime::now_utc();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params.distinguished_name = dn("sparkward-test client CA", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.not_before = now - Duration::minutes(5);
        ca_params.not_after = now + Duration::days(2);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(err)?)
            .map_err(err)?;
        let client = |cn: &str, org: Option<&str>| -> Result<ClientCert, String> {
            let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
            params.distinguished_name = dn(cn, org);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.not_before = now - Duration::minutes(5);
            params.not_after = now + Duration::days(2);
            let key = KeyPair::generate().map_err(err)?;
            let cert = params.signed_by(&key, &ca).map_err(err)?;
            Ok(ClientCert {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            })
        };
        let admin = client("sparkward-test-admin", Some("system:masters"))?;
        let controller_manager = client("system:kube-controller-manager", None)?;

        let sa = KeyPair::generate().map_err(err)?;
        let pki = Self {
            serving_ca_pem: serving.ca_pem.clone(),
            serving_ca: files.ca,
            serving_cert: files.cert,
            serving_key: files.key,
            client_ca: dir.join("client-ca.crt"),
            admin,
            controller_manager,
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        };
        write(&pki.client_ca, &ca.pem())?;
        write(&pki.sa_key, &sa.serialize_pem())?;
        write(&pki.sa_pub, &sa.public_key_pem())?;
        Ok(pki)
    }
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}
