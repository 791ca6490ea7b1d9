//! Realistic inputs for the benchmarks and the load script, shared by `benches/pipeline.rs` and
//! `examples/bench_inputs.rs` (which writes them to files for `scripts/bench-load`).
//!
//! Everything is the project's own: the executor pod is `benches/fixtures/executor-pod.json`
//! (a Spark 4 executor as the driver creates it, after API-server defaulting: env, volumes,
//! projected service-account token, tolerations, affinity; ~6 KB as a review), the signing keys
//! are generated here with aws-lc-rs (no key material is committed), and the tokens are signed
//! by hand.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sparkward::admission::{Keyring, Pipeline};
use sparkward::config::Config;
use sparkward::core::decision::{JobIdentity, Submitter};
use sparkward::core::stamp::StampKeys;
use sparkward::k8s::jwks::JwksCache;
use sparkward::k8s::policy::CollectingPolicyStore;
use sparkward::k8s::secrets::CollectingSecretStore;
use sparkward::k8s::state::ClusterState;

pub const ISSUER: &str = "https://idp.example.com/realms/data";
pub const AUDIENCE: &str = "sparkward";
pub const NAMESPACE: &str = "spark-jobs";
pub const SUBJECT: &str = "alice";
pub const SCOPES: &str = "data:read:postgres-main stream:kafka-events storage:s3-lake";
pub const DRIVER_POD: &str = "wordcount-3f2a1c-driver";
pub const DRIVER_UID: &str = "5d3c2b1a-9f8e-4d7c-a6b5-0e1f2a3b4c5d";
/// The job the driver was admitted under (a well-formed job id).
pub const JOB_ID: &str = "sj-mfrggzdfmztwq2lknnwg";
/// The stamp key of the benches (a fixed test key).
pub const STAMP_KEYS: &str = "bench:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Fixed review uids.
pub const EXECUTOR_UID: &str = "0b1f7a52-3c1d-4e8a-9f6b-7d2e5c4a3b21";
pub const APP_UID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

const EXECUTOR_POD: &str = include_str!("../fixtures/executor-pod.json");

fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A signing key of the test identity provider.
pub enum SigningKey {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

impl SigningKey {
    pub fn rs256() -> Self {
        Self::Rs256(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }

    pub fn es256() -> Self {
        Self::Es256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }

    pub fn alg(&self) -> &'static str {
        match self {
            Self::Rs256(_) => "RS256",
            Self::Es256(_) => "ES256",
        }
    }

    pub fn kid(&self) -> &'static str {
        match self {
            Self::Rs256(_) => "bench-rsa",
            Self::Es256(_) => "bench-ec",
        }
    }

    pub fn jwk(&self) -> Value {
        match self {
            Self::Rs256(pair) => {
                let c = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({"kty": "RSA", "kid": self.kid(), "use": "sig", "alg": "RS256",
                       "n": b64u(&c.n), "e": b64u(&c.e)})
            }
            Self::Es256(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "kid": self.kid(), "use": "sig", "alg": "ES256",
                       "crv": "P-256", "x": b64u(&point[1..33]), "y": b64u(&point[33..])})
            }
        }
    }

    /// A token for `SUBJECT` valid for `ttl_secs` from now.
    pub fn token(&self, ttl_secs: u64) -> String {
        let now = now();
        let header = json!({"alg": self.alg(), "kid": self.kid(), "typ": "at+jwt"});
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "scope": SCOPES,
            "iat": now, "nbf": now, "exp": now + ttl_secs,
            "jti": format!("bench-{}-{now}", self.kid()),
            "azp": "spark-submit", "email": "alice@example.com",
        });
        let input = format!(
            "{}.{}",
            b64u(header.to_string().as_bytes()),
            b64u(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            Self::Rs256(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
            Self::Es256(pair) => pair.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
        };
        format!("{input}.{}", b64u(&sig))
    }
}

/// The JWKS document publishing `keys`.
pub fn jwks(keys: &[&SigningKey]) -> Vec<u8> {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
        .to_string()
        .into_bytes()
}

/// The config the benchmarks run under (the DESIGN.md example, JWKS from `jwks_file`).
pub fn config_yaml(jwks_file: &str) -> String {
    format!(
        r#"identity:
  annotation: sparkward.io/submitter-token
  issuer: {ISSUER}
  audiences: [{AUDIENCE}]
  jwks: {{ file: "{jwks_file}", refresh: 1h }}
  algorithms: [RS256, ES256, EdDSA]
  leeway: 30s
  requesterBinding: {{ enabled: true, usernamePrefix: "oidc:" }}
  trustedCreators:
    sparkOperator: [system:serviceaccount:spark-operator:spark-operator-spark]
hardening:
  runAsUser: 185
  runAsGroup: 185
  fsGroup: 185
  writableDirs: [/tmp, /opt/spark/work-dir]
policy:
  dns: {{ namespace: kube-system, matchLabels: {{ k8s-app: kube-dns }} }}
  driverToApiServer: true
  unknownScopes: ignore
  scopes:
    data:read:postgres-main:
      - toEndpoints: [{{ matchLabels: {{ "k8s:io.kubernetes.pod.namespace": databases, db: postgres-main }} }}]
        toPorts: [{{ ports: [{{ port: "5432", protocol: TCP }}] }}]
    stream:kafka-events:
      - toEndpoints: [{{ matchLabels: {{ "k8s:io.kubernetes.pod.namespace": kafka, app: kafka }} }}]
        toPorts: [{{ ports: [{{ port: "9092", protocol: TCP }}] }}]
    storage:s3-lake:
      - toFQDNs: [{{ matchPattern: "*.s3.eu-west-1.amazonaws.com" }}]
        toPorts: [{{ ports: [{{ port: "443", protocol: TCP }}] }}]
"#
    )
}

/// The admitted job the executor belongs to.
pub fn job() -> JobIdentity {
    JobIdentity {
        job_id: JOB_ID.to_string(),
        submitter: Submitter {
            subject: SUBJECT.into(),
            issuer: ISSUER.into(),
            token_id: Some("bench-admitted".into()),
            scopes: SCOPES.split(' ').map(String::from).collect(),
        },
        security: None,
    }
}

/// The cluster state holding the admitted driver pod (stamped the way sparkward stamps it), as
/// a JSON array.
pub fn cluster_state() -> String {
    let stamp = job().stamp(Some("driver"));
    let mut labels = serde_json::Map::new();
    labels.insert("spark-app-name".into(), json!("wordcount"));
    labels.insert("spark-role".into(), json!("driver"));
    for (k, v) in stamp.labels {
        labels.insert(k.into(), json!(v));
    }
    let annotations: serde_json::Map<String, Value> = stamp
        .annotations
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let driver = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": DRIVER_POD, "namespace": NAMESPACE, "uid": DRIVER_UID,
                     "labels": labels, "annotations": annotations},
        "spec": {"serviceAccountName": "spark",
                 "containers": [{"name": "spark-kubernetes-driver", "image": "docker.io/apache/spark:4.0.4"}]},
    });
    Value::Array(vec![driver]).to_string()
}

/// The fields of an AdmissionRequest in the order kube-apiserver writes them (Go struct order:
/// `kind`, `subResource` and `operation` come before `object`). `json!` would sort the keys.
pub const REQUEST_ORDER: [&str; 15] = [
    "uid",
    "kind",
    "resource",
    "subResource",
    "requestKind",
    "requestResource",
    "requestSubResource",
    "name",
    "namespace",
    "operation",
    "userInfo",
    "object",
    "oldObject",
    "dryRun",
    "options",
];

/// An AdmissionReview body with `request`'s fields in kube-apiserver's order (what the
/// one-pass decode paths read).
pub fn review(request: Value) -> Vec<u8> {
    let mut out =
        String::from(r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"#);
    let mut first = true;
    for key in REQUEST_ORDER {
        if let Some(value) = request.get(key) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&serde_json::to_string(key).unwrap());
            out.push(':');
            out.push_str(&serde_json::to_string(value).unwrap());
        }
    }
    out.push_str("}}");
    out.into_bytes()
}

/// The executor pod's CREATE review, sent by the driver's service account (token bound to the
/// driver pod), as kube-apiserver sends it (compact JSON).
pub fn executor_review() -> Vec<u8> {
    let pod: Value = serde_json::from_str(EXECUTOR_POD).unwrap();
    review(json!({
        "uid": EXECUTOR_UID,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "name": pod["metadata"]["name"],
        "namespace": NAMESPACE,
        "operation": "CREATE",
        "userInfo": {
            "username": format!("system:serviceaccount:{NAMESPACE}:spark"),
            "uid": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{NAMESPACE}"), "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/credential-id": ["JTI=4c1f0e2d-8b7a-4d6c-9e5f-3a2b1c0d9e8f"],
                "authentication.kubernetes.io/node-name": ["ip-10-0-12-34.eu-west-1.compute.internal"],
                "authentication.kubernetes.io/node-uid": ["f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"],
                "authentication.kubernetes.io/pod-name": [DRIVER_POD],
                "authentication.kubernetes.io/pod-uid": [DRIVER_UID],
            }
        },
        "object": pod,
        "oldObject": null,
        "dryRun": false,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
    }))
}

/// A SparkApplication CREATE review carrying `token`, sent by the submitter (`oidc:alice`).
/// `dry_run` skips the policy apply (the policy is still rendered).
pub fn app_review(token: &str, dry_run: bool) -> Vec<u8> {
    let app = json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {
            "name": "wordcount", "namespace": NAMESPACE,
            "labels": {"team": "data-platform", "cost-center": "cc-4711"},
            "annotations": {"sparkward.io/submitter-token": token},
        },
        "spec": {
            "type": "Scala", "mode": "cluster", "image": "docker.io/apache/spark:4.0.4",
            "imagePullPolicy": "IfNotPresent",
            "mainClass": "org.apache.spark.examples.JavaWordCount",
            "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
            "arguments": ["s3a://lake/raw/events/2026-11-01/"],
            "sparkVersion": "4.0.4",
            "sparkConf": {
                "spark.hadoop.fs.s3a.aws.credentials.provider": "com.amazonaws.auth.WebIdentityTokenCredentialsProvider",
                "spark.eventLog.enabled": "true",
                "spark.eventLog.dir": "s3a://lake/spark-events/",
                "spark.kubernetes.executor.deleteOnTermination": "true",
            },
            "restartPolicy": {"type": "Never"},
            "driver": {"cores": 1, "memory": "2g", "serviceAccount": "spark",
                       "labels": {"version": "4.0.4"}, "env": [{"name": "AWS_REGION", "value": "eu-west-1"}]},
            "executor": {"instances": 8, "cores": 2, "memory": "4g",
                         "labels": {"version": "4.0.4"},
                         "volumeMounts": [{"name": "spark-local", "mountPath": "/var/data/spark-local"}]},
            "volumes": [{"name": "spark-local", "emptyDir": {}}],
        }
    });
    let g = "sparkoperator.k8s.io";
    review(json!({
        "uid": APP_UID,
        "kind": {"group": g, "version": "v1beta2", "kind": "SparkApplication"},
        "resource": {"group": g, "version": "v1beta2", "resource": "sparkapplications"},
        "requestKind": {"group": g, "version": "v1beta2", "kind": "SparkApplication"},
        "requestResource": {"group": g, "version": "v1beta2", "resource": "sparkapplications"},
        "name": "wordcount",
        "namespace": NAMESPACE,
        "operation": "CREATE",
        "userInfo": {"username": format!("oidc:{SUBJECT}"), "groups": ["oidc:data-engineers", "system:authenticated"]},
        "object": app,
        "oldObject": null,
        "dryRun": dry_run,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-client-side-apply"},
    }))
}

/// The node the admitted executor runs on (its kubelet writes `pods/status`).
pub const NODE: &str = "ip-10-0-12-34.eu-west-1.compute.internal";
/// Fixed review uids of the validating scenarios.
pub const UPDATE_UID: &str = "3e4d5c6b-7a89-4b0c-9d1e-2f3a4b5c6d7e";
pub const STATUS_UID: &str = "6f5e4d3c-2b1a-4098-8776-5a4b3c2d1e0f";
pub const CONNECT_UID: &str = "8a7b6c5d-4e3f-4a2b-9c1d-0e9f8e7d6c5b";

/// The executor pod as stored after sparkward's mutating webhook: the executor review's object
/// with `patch` (the mutating answer's JSON Patch) applied, bound to `NODE`.
pub fn admitted_executor(patch: &Value) -> Value {
    let mut pod: Value = serde_json::from_str(EXECUTOR_POD).unwrap();
    let patch: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
    json_patch::patch(&mut pod, &patch).unwrap();
    pod["metadata"]["uid"] = json!("2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f");
    pod["metadata"]["resourceVersion"] = json!("48151");
    pod["spec"]["nodeName"] = json!(NODE);
    pod
}

/// The driver's service account, through a token bound to the driver pod (as in the executor
/// review).
fn driver_user() -> Value {
    json!({
        "username": format!("system:serviceaccount:{NAMESPACE}:spark"),
        "uid": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
        "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{NAMESPACE}"), "system:authenticated"],
        "extra": {
            "authentication.kubernetes.io/credential-id": ["JTI=4c1f0e2d-8b7a-4d6c-9e5f-3a2b1c0d9e8f"],
            "authentication.kubernetes.io/node-name": [NODE],
            "authentication.kubernetes.io/node-uid": ["f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"],
            "authentication.kubernetes.io/pod-name": [DRIVER_POD],
            "authentication.kubernetes.io/pod-uid": [DRIVER_UID],
        }
    })
}

fn pod_update(uid: &str, sub: Option<&str>, user: Value, old: &Value, new: &Value) -> Vec<u8> {
    review(pod_update_request(uid, sub, user, old, new))
}

/// The `request` of a Pod UPDATE (`sub`: its subresource) as kube-apiserver fills it in.
pub fn pod_update_request(
    uid: &str,
    sub: Option<&str>,
    user: Value,
    old: &Value,
    new: &Value,
) -> Value {
    let pods = json!({"group": "", "version": "v1", "resource": "pods"});
    let mut request = json!({
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": pods,
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": pods,
        "name": old["metadata"]["name"],
        "namespace": NAMESPACE,
        "operation": "UPDATE",
        "userInfo": user,
        "object": new,
        "oldObject": old,
        "dryRun": false,
        "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"},
    });
    if let Some(sub) = sub {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    request
}

/// The driver marking its admitted executor inactive (Spark's `spark-exec-inactive` label), a
/// validating UPDATE: protected metadata, the driver's rights over its executors, hardening.
pub fn update_review(admitted: &Value) -> Vec<u8> {
    let mut new = admitted.clone();
    new["metadata"]["labels"]["spark-exec-inactive"] = json!("true");
    new["metadata"]["resourceVersion"] = json!("48152");
    pod_update(UPDATE_UID, None, driver_user(), admitted, &new)
}

/// The kubelet of the executor's node writing `pods/status` (Running), a validating UPDATE.
pub fn status_review(admitted: &Value) -> Vec<u8> {
    let mut new = admitted.clone();
    new["status"] = json!({
        "phase": "Running", "hostIP": "10.0.12.34", "podIP": "10.42.3.17",
        "startTime": "2026-11-01T10:00:03Z",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-01T10:00:09Z"}],
        "containerStatuses": [{"name": "spark-kubernetes-executor", "ready": true, "restartCount": 0,
            "image": "docker.io/apache/spark:4.0.4", "imageID": "docker.io/apache/spark@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "started": true, "state": {"running": {"startedAt": "2026-11-01T10:00:08Z"}}}],
    });
    let user = json!({"username": format!("system:node:{NODE}"), "groups": ["system:nodes", "system:authenticated"]});
    pod_update(STATUS_UID, Some("status"), user, admitted, &new)
}

/// The submitter's `kubectl exec` into her driver (CONNECT `pods/exec`): the pod is looked up
/// and the submitter's right to enter it checked.
pub fn connect_review() -> Vec<u8> {
    let pods = json!({"group": "", "version": "v1", "resource": "pods"});
    review(json!({
        "uid": CONNECT_UID,
        "kind": {"group": "", "version": "v1", "kind": "PodExecOptions"},
        "resource": pods,
        "subResource": "exec",
        "requestKind": {"group": "", "version": "v1", "kind": "PodExecOptions"},
        "requestResource": pods,
        "requestSubResource": "exec",
        "name": DRIVER_POD,
        "namespace": NAMESPACE,
        "operation": "CONNECT",
        "userInfo": {"username": format!("oidc:{SUBJECT}"), "groups": ["oidc:data-engineers", "system:authenticated"]},
        "object": {"kind": "PodExecOptions", "apiVersion": "v1", "stdin": true, "stdout": true,
                   "tty": true, "container": "spark-kubernetes-driver", "command": ["sh"]},
        "oldObject": null,
        "dryRun": false,
        "options": null,
    }))
}

/// The pipeline these inputs are reviewed by: `config`, its loaded keys, the cluster state
/// above, the stamp keys, and policies and Secrets kept in memory.
pub fn pipeline(config: std::sync::Arc<Config>, verifier: JwksCache) -> Pipeline {
    Pipeline {
        config,
        verifier: std::sync::Arc::new(verifier),
        lookup: std::sync::Arc::new(ClusterState::parse(&cluster_state()).unwrap()),
        policies: std::sync::Arc::new(CollectingPolicyStore::default()),
        secrets: std::sync::Arc::new(CollectingSecretStore::default()),
        stamp_keys: Keyring::new(StampKeys::parse(STAMP_KEYS).unwrap()),
        metrics: None,
    }
}
