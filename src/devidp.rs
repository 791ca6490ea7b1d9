//! The local-mode identity provider: a development signing key and its JWKS, generated beside
//! the development certificates, so that a newcomer can see a Spark job verified, hardened and
//! given its policy without an identity provider of their own (`sparkward token` signs with it).
//!
//! It exists only in local mode, and only when the configuration names no identity provider:
//! `sparkward token` refuses to sign for any other issuer, and `serve` never trusts this key
//! outside local mode. The issuer is a name no real provider uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::config::{Algorithm, IdentityConfig, JobAdmins, JwksSource, RequesterBinding};

/// The issuer of development tokens.
pub const DEV_ISSUER: &str = "https://sparkward.local/dev-idp";
/// The audience of development tokens (the same as the documented default).
pub const DEV_AUDIENCE: &str = "sparkward";
const KEY_ID: &str = "sparkward-dev-1";

/// The development key pair on disk.
#[derive(Debug, Clone)]
pub struct DevIdp {
    pub dir: PathBuf,
    pub key_path: PathBuf,
    pub jwks_path: PathBuf,
}

impl DevIdp {
    /// The provider in `<dev_cert_dir>/idp/`, generated (owner-only key) when it is missing or
    /// unusable.
    pub fn ensure(dev_cert_dir: &Path) -> anyhow::Result<Self> {
        let dir = dev_cert_dir.join("idp");
        let idp = Self {
            key_path: dir.join("signing-key.pem"),
            jwks_path: dir.join("jwks.json"),
            dir,
        };
        if idp.load_key().is_ok() && idp.jwks_path.is_file() {
            return Ok(idp);
        }
        std::fs::create_dir_all(&idp.dir)
            .with_context(|| format!("failed to create {}", idp.dir.display()))?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("failed to generate the development signing key")?;
        let raw = key.public_key_raw();
        // An uncompressed P-256 point: 0x04 || x (32 bytes) || y (32 bytes).
        if raw.len() != 65 || raw[0] != 4 {
            bail!("unexpected public key encoding from the key generator");
        }
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": KEY_ID,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        }]});
        crate::stamp_keys::write_private(&idp.key_path, &key.serialize_pem())?;
        std::fs::write(&idp.jwks_path, serde_json::to_vec_pretty(&jwks)?)
            .with_context(|| format!("failed to write {}", idp.jwks_path.display()))?;
        tracing::info!(dir = %idp.dir.display(), "local mode: generated a development identity provider");
        Ok(idp)
    }

    fn load_key(&self) -> anyhow::Result<jsonwebtoken::EncodingKey> {
        let pem = std::fs::read(&self.key_path)
            .with_context(|| format!("failed to read {}", self.key_path.display()))?;
        jsonwebtoken::EncodingKey::from_ec_pem(&pem)
            .with_context(|| format!("{} is not an EC private key", self.key_path.display()))
    }

    /// The identity configuration that trusts this provider: its issuer, audience and JWKS
    /// file, ES256, requester binding without a prefix (the token's subject must be the
    /// requester named in the review).
    pub fn identity_config(&self) -> IdentityConfig {
        IdentityConfig {
            annotation: crate::core::labels::TOKEN_ANNOTATION.to_string(),
            issuer: DEV_ISSUER.to_string(),
            audiences: vec![DEV_AUDIENCE.to_string()],
            jwks: JwksSource::File {
                path: self.jwks_path.clone(),
                refresh: Duration::from_secs(60),
            },
            algorithms: vec![Algorithm::ES256],
            leeway: Duration::from_secs(30),
            subject_claim: "sub".into(),
            scope_claim: "scope".into(),
            requester_binding: Some(RequesterBinding {
                username_prefix: String::new(),
            }),
            spark_operator: vec![
                "system:serviceaccount:spark-operator:spark-operator-controller".into(),
            ],
            job_admins: JobAdmins::default(),
            kubernetes_controllers: Vec::new(),
            evictors: Default::default(),
            requester_identity: None,
        }
    }

    /// A development token for `subject` with `scopes`, valid for `ttl` from `now` (unix
    /// seconds).
    pub fn token(
        &self,
        subject: &str,
        scopes: &[String],
        ttl: Duration,
        now: u64,
    ) -> anyhow::Result<String> {
        let mut random = [0u8; 12];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
        let claims = json!({
            "iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": subject,
            "scope": scopes.join(" "),
            "iat": now, "nbf": now, "exp": now + ttl.as_secs(),
            "jti": format!("dev-{}", URL_SAFE_NO_PAD.encode(random)),
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(KEY_ID.into());
        jsonwebtoken::encode(&header, &claims, &self.load_key()?)
            .context("failed to sign the token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::identity::{check_requester, verify_token};
    use crate::core::keys::KeySet;

    #[test]
    fn a_generated_provider_signs_tokens_its_own_config_verifies() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let idp = DevIdp::ensure(dir.path()).unwrap();
        // Kept on the second call.
        let key = std::fs::read(&idp.key_path).unwrap();
        DevIdp::ensure(dir.path()).unwrap();
        assert_eq!(std::fs::read(&idp.key_path).unwrap(), key);
        let now = 1_800_000_000;
        let token = idp
            .token(
                "alice",
                &["data:read".into()],
                Duration::from_secs(600),
                now,
            )
            .unwrap();
        let keys = KeySet::from_jwks_json(&std::fs::read(&idp.jwks_path).unwrap()).unwrap();
        let cfg = idp.identity_config();
        let verified = verify_token(&token, &keys, &cfg, now + 1).unwrap();
        assert_eq!(verified.subject, "alice");
        assert_eq!(verified.scopes, vec!["data:read".to_string()]);
        assert!(check_requester(&verified, "alice", &cfg).is_ok());
        assert!(check_requester(&verified, "bob", &cfg).is_err());
    }
}
