//! A complete test setup: an identity provider with one key per algorithm behind a real HTTPS
//! JWKS endpoint, a sparkward config that trusts it, and helpers to mint tokens for users.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::idp::keys::{TestKey, jwks};
use super::idp::server::JwksServer;

pub const ISSUER: &str = "https://idp.example.com/realms/data";
pub const AUDIENCE: &str = "sparkward";

/// Scope mapping used by the scenario configs.
pub const SCOPES_YAML: &str = r#"
  scopes:
    data:read:postgres-main:
      - toEndpoints: [{ matchLabels: { "k8s:io.kubernetes.pod.namespace": databases, db: postgres-main } }]
        toPorts: [{ ports: [{ port: "5432", protocol: TCP }] }]
    stream:kafka-events:
      - toEndpoints: [{ matchLabels: { "k8s:io.kubernetes.pod.namespace": kafka, app: kafka } }]
        toPorts: [{ ports: [{ port: "9092", protocol: TCP }] }]
    storage:s3-lake:
      - toFQDNs: [{ matchPattern: "*.s3.eu-west-1.amazonaws.com" }]
        toPorts: [{ ports: [{ port: "443", protocol: TCP }] }]
"#;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub struct Idp {
    pub keys: Vec<TestKey>,
    pub server: JwksServer,
}

impl Idp {
    /// An RS256, an ES256 and an EdDSA key, all published.
    pub async fn start() -> Self {
        let keys = vec![
            TestKey::rsa("rsa-1"),
            TestKey::ec("ec-1"),
            TestKey::ed("ed-1"),
        ];
        let refs: Vec<&TestKey> = keys.iter().collect();
        let server = JwksServer::start(jwks(&refs)).await;
        Self { keys, server }
    }

    /// Claims for `subject` with `scopes`, valid now for ten minutes.
    pub fn claims(subject: &str, scopes: &str) -> Value {
        let now = now();
        json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "scope": scopes,
            "iat": now, "nbf": now, "exp": now + 600,
            "jti": format!("jti-{subject}-{now}"),
        })
    }

    /// A valid token for `subject` signed with the RSA key.
    pub fn token(&self, subject: &str, scopes: &str) -> String {
        self.keys[0].token(&Self::claims(subject, scopes))
    }

    /// The `identity:` section trusting this IdP (requester binding with prefix `oidc:`).
    pub fn identity_yaml(&self) -> String {
        format!(
            "identity:\n  issuer: {ISSUER}\n  audiences: [{AUDIENCE}]\n  jwks: {{ url: \"{}\", refresh: 1h, caFile: \"{}\" }}\n  algorithms: [RS256, ES256, EdDSA]\n  leeway: 30s\n  requesterBinding: {{ enabled: true, usernamePrefix: \"oidc:\" }}\n  trustedCreators:\n    sparkOperator: [\"system:serviceaccount:spark-operator:spark-operator-controller\"]\n",
            self.server.url,
            self.server.ca_path().display()
        )
    }

    /// A full config: identity plus the scenario scope mapping, and `extra` YAML appended.
    pub fn config(&self, extra: &str) -> String {
        format!(
            "{}policy:\n  unknownScopes: ignore\n{SCOPES_YAML}{extra}",
            self.identity_yaml()
        )
    }
}

/// The trusted spark-operator identity of the scenario config.
pub const OPERATOR: &str = "system:serviceaccount:spark-operator:spark-operator-controller";

/// A job administrator by user name ([`JOB_ADMINS_YAML`]).
pub const JOB_ADMIN_USER: &str = "oidc:root-of-data";
/// A group whose members are job administrators ([`JOB_ADMINS_YAML`]).
pub const JOB_ADMIN_GROUP: &str = "data-platform-admins";
/// `identity.jobAdmins` naming [`JOB_ADMIN_USER`] and [`JOB_ADMIN_GROUP`], for [`with_identity`].
pub const JOB_ADMINS_YAML: &str =
    "  jobAdmins: { users: [\"oidc:root-of-data\"], groups: [data-platform-admins] }\n";

/// `config` (an [`Idp::config`]) with `yaml` (lines indented by two spaces, such as
/// [`JOB_ADMINS_YAML`]) added to its `identity:` section: the config already has one, and a
/// second `identity:` key would be refused.
pub fn with_identity(config: &str, yaml: &str) -> String {
    assert!(
        config.starts_with("identity:\n"),
        "not a scenario config: {config}"
    );
    config.replacen("identity:\n", &format!("identity:\n{yaml}"), 1)
}

/// A SparkApplication as a user would submit it, with `token` in the annotation.
pub fn mk_spark_app(name: &str, namespace: &str, token: &str) -> Value {
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {
            "name": name, "namespace": namespace,
            "annotations": {"sparkward.io/submitter-token": token},
        },
        "spec": {
            "type": "Scala", "mode": "cluster", "image": "docker.io/apache/spark:4.0.4",
            "mainClass": "org.apache.spark.examples.SparkPi",
            "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
            "sparkVersion": "4.0.4",
            "driver": {"cores": 1, "memory": "512m", "serviceAccount": "spark"},
            "executor": {"instances": 2, "cores": 1, "memory": "512m"},
        }
    })
}
