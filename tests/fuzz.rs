//! Structure-aware fuzzing of the whole admission pipeline, in process.
//!
//! Seeds are real AdmissionReviews built from the project's fixtures (`tests/fixtures`,
//! `benches/fixtures`) and the upstream SparkApplication examples: pods of every lineage,
//! SparkApplications, ScheduledSparkApplications, CONNECT, TokenRequest, eviction, ConfigMap,
//! Secret and network policy reviews, UPDATEs with their `oldObject` and DELETEs. Each case
//! takes a seed and stacks one to four mutations (a field removed, retyped, replaced from a
//! dictionary of meaningful values, grafted from another seed, a key written twice, nesting
//! thousands deep, huge strings and arrays, truncated or corrupted bytes, invalid UTF-8, valid
//! and forged tokens) and sends the bytes through `Pipeline::review` (mutate or validate), the
//! function the HTTPS server calls. For every input:
//!
//! - nothing panics;
//! - a body whose `request.uid` can be read is answered with that uid (the server's HTTP 200),
//!   and only a body without one is refused outright (HTTP 400); no denial carries a 5xx code;
//! - an allowed answer's patch applies to the object;
//! - a Pod, SparkApplication or ScheduledSparkApplication CREATE the mutating webhook allowed is
//!   also allowed by the validating webhook on the patched object (as the API server sends it),
//!   and a patched pod meets the Pod Security Standard "restricted" profile
//!   (`support::pss`, written independently of sparkward's own checks) with the writable
//!   directories mounted.
//!
//! `SPARKWARD_FUZZ_CASES` (default 3000), `SPARKWARD_FUZZ_SEED` (default fixed, so CI is
//! reproducible) and `SPARKWARD_FUZZ_THREADS` (default 1) tune a run; `scripts/fuzz-long` runs
//! a million cases in release mode. A failing input is written to `target/fuzz-failures/`
//! with its tokens as placeholders (`$TOKEN0`, `$FORGED3`: the run's keys die with it);
//! inputs that once failed are kept in `tests/fixtures/fuzz/` and replayed with fresh tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/inputs/mod.rs"]
mod inputs;
mod support;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sparkward::admission::store::{ApplyError, PolicyStore, SecretStore};
use sparkward::admission::{Keyring, Mode, Pipeline};
use sparkward::config::Config;
use sparkward::core::cilium::CiliumNetworkPolicy;
use sparkward::core::spark::RpcSecret;
use sparkward::core::stamp::StampKeys;
use sparkward::k8s::jwks::JwksCache;
use sparkward::k8s::state::ClusterState;
use support::idp::keys::{TestKey, b64u, hs256, jwks, unsigned};
use support::pss::{restricted_violations, writable_dirs_missing};
use support::scenario::{AUDIENCE, ISSUER, OPERATOR, SCOPES_YAML, now};
use support::upstream::{example_files, load_yaml_documents};

const NS: &str = "spark-jobs";
const WRITABLE: &[&str] = &["/tmp", "/opt/spark/work-dir"];
/// The uid the admitted SparkApplication `orders-etl` has in the cluster state.
const APP_UID: &str = "3e1f5a7c-2b4d-4e6f-8a0b-1c2d3e4f5a6b";

// ---------------------------------------------------------------------------------------------
// Stores that count and forget: a million admitted jobs must not pile up in memory.

#[derive(Default)]
struct CountingStore {
    applied: AtomicU64,
}

impl PolicyStore for CountingStore {
    fn apply<'a>(&'a self, _: &'a CiliumNetworkPolicy) -> BoxFuture<'a, Result<(), ApplyError>> {
        self.applied.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}

impl SecretStore for CountingStore {
    fn create<'a>(&'a self, _: &'a RpcSecret) -> BoxFuture<'a, Result<(), ApplyError>> {
        self.applied.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}

// ---------------------------------------------------------------------------------------------
// The pipeline under test: local mode, a JWKS file, signed tokens, a cluster state.

/// Tokens the dictionary draws from: valid ones for alice and forged ones.
struct Tokens {
    valid: Vec<String>,
    forged: Vec<String>,
}

fn claims(subject: &str, ttl: i64) -> Value {
    let now = now() as i64;
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": subject,
        "scope": "data:read:postgres-main stream:kafka-events storage:s3-lake profile",
        "iat": now, "nbf": now, "exp": now + ttl, "jti": format!("fuzz-{subject}-{now}-{ttl}"),
    })
}

fn mk_tokens(keys: &[TestKey], stranger: &TestKey) -> Tokens {
    // Valid for four hours: a long run must not outlive its tokens.
    let ttl = 4 * 3600;
    let valid: Vec<String> = keys
        .iter()
        .map(|k| k.token(&claims("alice", ttl)))
        .collect();
    let good = &valid[0];
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let mut flipped = sig.to_string().into_bytes();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let other_payload = b64u(claims("mallory", ttl).to_string().as_bytes());
    let mut wrong_aud = claims("alice", ttl);
    wrong_aud["aud"] = json!("someone-else");
    let mut no_exp = claims("alice", ttl);
    no_exp.as_object_mut().unwrap().remove("exp");
    let none_header = json!({"alg": "none", "typ": "JWT"});
    let forged = vec![
        format!("{head}.{payload}.{}", String::from_utf8(flipped).unwrap()),
        format!("{head}.{other_payload}.{sig}"),
        format!("{}.", unsigned(&none_header, &claims("alice", ttl))),
        hs256(
            &keys[0].jwk().to_string().into_bytes(),
            &json!({"alg": "HS256", "kid": keys[0].kid}),
            &claims("alice", ttl),
        ),
        keys[0].token(&claims("alice", -3600)),
        keys[0].token(&claims("mallory", ttl)),
        keys[1].token(&wrong_aud),
        keys[2].token(&no_exp),
        stranger.token(&claims("alice", ttl)),
        keys[0].token_with_header(
            &json!({"alg": "RS256", "kid": "nope"}),
            &claims("alice", ttl),
        ),
        format!("{head}.{payload}"),
        "eyJhbGciOiJSUzI1NiJ9.e30.".to_string(),
        "not-a-jwt".into(),
        String::new(),
        "a.b.c.d.e".into(),
        format!("{good}{good}"),
        good.replace('.', "\u{2024}"),
    ];
    Tokens { valid, forged }
}

fn config_yaml(jwks_file: &Path) -> String {
    format!(
        "identity:\n  issuer: {ISSUER}\n  audiences: [{AUDIENCE}]\n  jwks: {{ file: \"{}\", refresh: 1h }}\n  algorithms: [RS256, ES256, EdDSA]\n  leeway: 30s\n  requesterBinding: {{ enabled: true, usernamePrefix: \"oidc:\" }}\n  trustedCreators:\n    sparkOperator: [\"{OPERATOR}\"]\nhardening:\n  allowedIds: [{{min: 100, max: 100}}, {{min: 1000, max: 1000}}, {{min: 2000, max: 2000}}]\npolicy:\n  unknownScopes: ignore\n{SCOPES_YAML}",
        jwks_file.display()
    )
}

/// Builds a pipeline over `state` (a JSON array of objects).
fn mk_pipeline(
    config: &Arc<Config>,
    cache: &Arc<JwksCache>,
    state: &str,
    store: &Arc<CountingStore>,
) -> Pipeline {
    Pipeline {
        config: config.clone(),
        verifier: cache.clone(),
        lookup: Arc::new(ClusterState::parse(state).unwrap()),
        policies: store.clone(),
        secrets: store.clone(),
        stamp_keys: Keyring::new(StampKeys::parse(inputs::STAMP_KEYS).unwrap()),
        metrics: None,
    }
}

/// One seed review and what its unmutated form must get.
#[derive(Clone)]
struct Seed {
    name: String,
    review: Value,
    /// The unmutated review must be allowed by this mode (checked once, so the fuzzer is known
    /// to reach the deep paths and not only denials).
    expect_allowed: Option<Mode>,
}

struct Harness {
    pipeline: Pipeline,
    seeds: Vec<Seed>,
    tokens: Tokens,
    store: Arc<CountingStore>,
    _dir: tempfile::TempDir,
}

fn kind_of(kind: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match kind {
        "Pod" => ("", "v1", "pods"),
        "ConfigMap" => ("", "v1", "configmaps"),
        "Secret" => ("", "v1", "secrets"),
        "SparkApplication" => ("sparkoperator.k8s.io", "v1beta2", "sparkapplications"),
        "ScheduledSparkApplication" => (
            "sparkoperator.k8s.io",
            "v1beta2",
            "scheduledsparkapplications",
        ),
        "CiliumNetworkPolicy" => ("cilium.io", "v2", "ciliumnetworkpolicies"),
        "NetworkPolicy" => ("networking.k8s.io", "v1", "networkpolicies"),
        _ => return None,
    })
}

fn fresh_uid(rng: &mut fastrand::Rng) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        rng.u32(..),
        rng.u16(..),
        rng.u16(..0x1000),
        rng.u16(..0x1000),
        rng.u64(..1 << 48)
    )
}

/// An AdmissionReview as kube-apiserver sends it.
#[allow(clippy::too_many_arguments)]
fn mk_review(
    uid: &str,
    gvk: (&str, &str, &str),
    resource: &str,
    sub: Option<&str>,
    op: &str,
    name: Option<&str>,
    user: Value,
    object: Value,
    old: Value,
) -> Value {
    let (g, v, k) = gvk;
    let mut request = json!({
        "uid": uid,
        "kind": {"group": g, "version": v, "kind": k},
        "resource": {"group": g, "version": v, "resource": resource},
        "requestKind": {"group": g, "version": v, "kind": k},
        "requestResource": {"group": g, "version": v, "resource": resource},
        "namespace": NS,
        "operation": op,
        "userInfo": user,
        "object": object,
        "oldObject": old,
        "dryRun": false,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    });
    if let Some(n) = name {
        request["name"] = json!(n);
    }
    if let Some(s) = sub {
        request["subResource"] = json!(s);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

fn user(name: &str) -> Value {
    json!({"username": name, "uid": "u-1", "groups": ["system:authenticated"]})
}

fn bound_user(pod: &str, uid: &str) -> Value {
    json!({
        "username": format!("system:serviceaccount:{NS}:spark"), "uid": "sa-1",
        "groups": ["system:serviceaccounts", "system:authenticated"],
        "extra": {"authentication.kubernetes.io/pod-name": [pod],
                  "authentication.kubernetes.io/pod-uid": [uid]},
    })
}

/// A CREATE review of `object` (kind taken from the object) by `user`.
fn create_review(object: Value, who: Value) -> Option<Value> {
    let kind = object["kind"].as_str()?.to_string();
    let (g, v, resource) = kind_of(&kind)?;
    let name = object["metadata"]["name"].as_str().map(str::to_string);
    Some(mk_review(
        "00000000-0000-4000-8000-000000000000",
        (g, v, &kind),
        resource,
        None,
        "CREATE",
        name.as_deref(),
        who,
        object,
        Value::Null,
    ))
}

fn with_token(mut obj: Value, token: &str) -> Value {
    obj["metadata"]["namespace"] = json!(NS);
    obj["metadata"]["annotations"]["sparkward.io/submitter-token"] = json!(token);
    obj
}

fn fixture_docs(dir: &str) -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for d in load_yaml_documents(&f).unwrap() {
            out.push((f.file_name().unwrap().to_string_lossy().into_owned(), d));
        }
    }
    out
}

fn decode_patch(answer: &Value) -> Result<json_patch::Patch, String> {
    let Some(b64) = answer["response"]["patch"].as_str() else {
        return Ok(json_patch::Patch(Vec::new()));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("patch is not base64: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("patch is not a JSON Patch: {e}"))
}

/// Runs one review to its JSON answer (for building seeds); `None` when undecodable.
fn answer(rt: &tokio::runtime::Runtime, p: &Pipeline, mode: Mode, review: &Value) -> Value {
    let body = serde_json::to_vec(review).unwrap();
    let outcome = rt.block_on(p.review(mode, &body)).unwrap();
    serde_json::from_slice(&outcome.response().into_review().to_json()).unwrap()
}

fn apply_answer(review: &Value, answer: &Value) -> Value {
    let mut obj = review["request"]["object"].clone();
    json_patch::patch(&mut obj, &decode_patch(answer).unwrap()).unwrap();
    obj
}

/// The review the API server sends to the validating webhook after the mutating one:
/// a fresh uid, the patched object, and what the API server assigns before validation.
fn validating_call(review: &Value, patched: Value, rng: &mut fastrand::Rng) -> Value {
    let mut next = review.clone();
    next["request"]["uid"] = json!(fresh_uid(rng));
    next["request"]["object"] = patched;
    let op = next["request"]["operation"].clone();
    let obj = &mut next["request"]["object"];
    if op == "CREATE" && obj.is_object() && obj["metadata"].is_object() {
        if obj["metadata"]["name"].as_str().is_none_or(str::is_empty)
            && let Some(prefix) = obj["metadata"]["generateName"].as_str()
        {
            let name = format!("{prefix}x7k2q");
            obj["metadata"]["name"] = json!(name);
            next["request"]["name"] = json!(name);
        }
        let obj = &mut next["request"]["object"];
        if obj["metadata"].get("uid").is_none() {
            obj["metadata"]["uid"] = json!(fresh_uid(rng));
        }
        if obj["metadata"].get("creationTimestamp").is_none() {
            obj["metadata"]["creationTimestamp"] = json!("2026-12-01T00:00:00Z");
        }
    }
    next
}

impl Harness {
    fn new() -> Self {
        support::webhook::install_crypto();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let keys = vec![
            TestKey::rsa("fuzz-rsa"),
            TestKey::ec("fuzz-ec"),
            TestKey::ed("fuzz-ed"),
        ];
        let stranger = TestKey::rsa("fuzz-rsa");
        let dir = tempfile::tempdir().unwrap();
        let jwks_path = dir.path().join("jwks.json");
        let refs: Vec<&TestKey> = keys.iter().collect();
        std::fs::write(&jwks_path, jwks(&refs)).unwrap();
        let config = Arc::new(Config::from_yaml(&config_yaml(&jwks_path)).unwrap());
        let cache =
            Arc::new(JwksCache::new(config.identity.as_ref().unwrap().jwks.clone()).unwrap());
        rt.block_on(cache.refresh()).unwrap();
        let tokens = mk_tokens(&keys, &stranger);
        let token = tokens.valid[0].clone();
        let store = Arc::new(CountingStore::default());
        let alice = user("oidc:alice");

        // The cluster: the admitted driver pod of the benches (executors inherit from it) and
        // the SparkApplication `orders-etl`, admitted here by the pipeline itself (the
        // operator's driver pod fixture names it).
        let mut state: Vec<Value> = serde_json::from_str(&inputs::cluster_state()).unwrap();
        let boot = mk_pipeline(
            &config,
            &cache,
            &serde_json::to_string(&state).unwrap(),
            &store,
        );
        let apps = fixture_docs("tests/fixtures/apps");
        let etl = apps
            .iter()
            .find(|(_, d)| d["metadata"]["name"] == "orders-etl")
            .unwrap()
            .1
            .clone();
        let etl_review = create_review(with_token(etl, &token), alice.clone()).unwrap();
        let etl_answer = answer(&rt, &boot, Mode::Mutate, &etl_review);
        assert_eq!(etl_answer["response"]["allowed"], true, "{etl_answer}");
        let mut admitted_app = apply_answer(&etl_review, &etl_answer);
        admitted_app["metadata"]["uid"] = json!(APP_UID);
        state.push(admitted_app.clone());
        let pipeline = mk_pipeline(
            &config,
            &cache,
            &serde_json::to_string(&state).unwrap(),
            &store,
        );

        let mut seeds = Vec::new();
        let mut seed = |name: String, review: Value, expect: Option<Mode>| {
            seeds.push(Seed {
                name,
                review,
                expect_allowed: expect,
            })
        };
        seed(
            "bench executor pod".into(),
            serde_json::from_slice(&inputs::executor_review()).unwrap(),
            Some(Mode::Mutate),
        );
        for (i, t) in tokens.valid.iter().enumerate() {
            let mut r: Value = serde_json::from_slice(&inputs::app_review(t, false)).unwrap();
            r["request"]["uid"] = json!(format!("7c9e6679-7425-40de-944b-e07fc1f90a{i:02}"));
            seed(
                format!("bench SparkApplication, key {i}"),
                r,
                Some(Mode::Mutate),
            );
        }
        for (file, doc) in &apps {
            let r = create_review(with_token(doc.clone(), &token), alice.clone()).unwrap();
            seed(format!("fixture {file}"), r, Some(Mode::Mutate));
        }
        for (file, doc) in fixture_docs("tests/fixtures/pods") {
            let text = serde_json::to_string(&doc)
                .unwrap()
                .replace("DRIVER_UID", inputs::DRIVER_UID)
                .replace("APP_UID", APP_UID);
            let doc: Value = serde_json::from_str(&text).unwrap();
            let who = match file.as_str() {
                "executor.yaml" => bound_user(inputs::DRIVER_POD, inputs::DRIVER_UID),
                "operator-driver.yaml" => user(OPERATOR),
                _ => alice.clone(),
            };
            let doc = if who == alice {
                with_token(doc, &token)
            } else {
                doc
            };
            seed(
                format!("fixture {file}"),
                create_review(doc, who).unwrap(),
                Some(Mode::Mutate),
            );
        }
        for f in example_files() {
            // Upstream's Prometheus example is a template: fill its image placeholders as a user
            // would (as tests/hardening.rs does).
            let text = std::fs::read_to_string(&f)
                .unwrap()
                .replace("{IMAGE_REGISTRY}", "registry.example.com")
                .replace("{IMAGE_REPOSITORY}", "spark");
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
            for doc in docs.into_iter().filter(|d| !d.is_null()) {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                let spark = doc["kind"]
                    .as_str()
                    .is_some_and(|k| k.contains("SparkApplication"));
                let doc = with_token(doc, &token);
                if let Some(r) = create_review(doc, alice.clone()) {
                    seed(format!("upstream {name}"), r, spark.then_some(Mode::Mutate));
                }
            }
        }
        let cnp: Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/reviews/cnp-unmanaged.json"),
            )
            .unwrap(),
        )
        .unwrap();
        seed("fixture cnp-unmanaged.json".into(), cnp, None);
        let netpol = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "open", "namespace": NS},
            "spec": {"podSelector": {}, "egress": [{}], "policyTypes": ["Egress"]}});
        seed(
            "NetworkPolicy by a manager".into(),
            create_review(
                netpol,
                user("system:serviceaccount:kube-system:namespace-controller"),
            )
            .unwrap(),
            Some(Mode::Validate),
        );
        let conf_map = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "spark-drv-3f2a1c-conf-map", "namespace": NS,
                         "labels": {"spark-app-name": "wordcount"}},
            "data": {"spark.properties": format!(
                "spark.app.name=wordcount\nspark.kubernetes.driver.annotation.sparkward.io/submitter-token={token}\nspark.executor.instances=2\n")}});
        seed(
            "spark-submit ConfigMap".into(),
            create_review(conf_map, alice.clone()).unwrap(),
            Some(Mode::Mutate),
        );
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": NS}, "type": "Opaque",
            "data": {"password": "aHVudGVyMg=="}});
        seed(
            "Secret".into(),
            create_review(secret, alice.clone()).unwrap(),
            None,
        );
        let pod_gvk = ("", "v1", "Pod");
        seed(
            "CONNECT exec".into(),
            mk_review(
                "c0000000-0000-4000-8000-000000000001",
                ("", "v1", "PodExecOptions"),
                "pods",
                Some("exec"),
                "CONNECT",
                Some(inputs::DRIVER_POD),
                alice.clone(),
                json!({"kind": "PodExecOptions", "apiVersion": "v1", "stdin": true,
                       "stdout": true, "tty": true, "container": "spark-kubernetes-driver",
                       "command": ["/bin/sh"]}),
                Value::Null,
            ),
            None,
        );
        seed(
            "TokenRequest".into(),
            mk_review(
                "c0000000-0000-4000-8000-000000000002",
                ("authentication.k8s.io", "v1", "TokenRequest"),
                "serviceaccounts",
                Some("token"),
                "CREATE",
                Some("spark"),
                user("system:node:ip-10-0-12-34.eu-west-1.compute.internal"),
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3607,
                                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                                   "name": inputs::DRIVER_POD, "uid": inputs::DRIVER_UID}}}),
                Value::Null,
            ),
            None,
        );
        seed(
            "eviction".into(),
            mk_review(
                "c0000000-0000-4000-8000-000000000003",
                ("policy", "v1", "Eviction"),
                "pods",
                Some("eviction"),
                "CREATE",
                Some(inputs::DRIVER_POD),
                user("system:serviceaccount:kube-system:cluster-autoscaler"),
                json!({"apiVersion": "policy/v1", "kind": "Eviction",
                       "metadata": {"name": inputs::DRIVER_POD, "namespace": NS}}),
                Value::Null,
            ),
            None,
        );

        // UPDATEs and DELETEs of admitted objects: the executor pod and the SparkApplication
        // as sparkward admitted them.
        let mut rng = fastrand::Rng::with_seed(1);
        let exec_review: Value = serde_json::from_slice(&inputs::executor_review()).unwrap();
        let exec_answer = answer(&rt, &pipeline, Mode::Mutate, &exec_review);
        let exec_pod = validating_call(
            &exec_review,
            apply_answer(&exec_review, &exec_answer),
            &mut rng,
        )["request"]["object"]
            .clone();
        let mut relabelled = exec_pod.clone();
        relabelled["metadata"]["labels"]["spark-exec-inactive"] = json!("true");
        let driver_user = bound_user(inputs::DRIVER_POD, inputs::DRIVER_UID);
        let name = exec_pod["metadata"]["name"].as_str().map(str::to_string);
        seed(
            "executor UPDATE by its driver".into(),
            mk_review(
                "d0000000-0000-4000-8000-000000000001",
                pod_gvk,
                "pods",
                None,
                "UPDATE",
                name.as_deref(),
                driver_user.clone(),
                relabelled,
                exec_pod.clone(),
            ),
            Some(Mode::Validate),
        );
        let mut debug = exec_pod.clone();
        debug["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": "busybox", "targetContainerName": "spark-kubernetes-executor"}]);
        seed(
            "executor ephemeralcontainers by alice".into(),
            mk_review(
                "d0000000-0000-4000-8000-000000000002",
                pod_gvk,
                "pods",
                Some("ephemeralcontainers"),
                "UPDATE",
                name.as_deref(),
                alice.clone(),
                debug,
                exec_pod.clone(),
            ),
            None,
        );
        seed(
            "executor DELETE by its driver".into(),
            mk_review(
                "d0000000-0000-4000-8000-000000000003",
                pod_gvk,
                "pods",
                None,
                "DELETE",
                name.as_deref(),
                driver_user,
                Value::Null,
                exec_pod,
            ),
            Some(Mode::Validate),
        );
        let mut app_edit = admitted_app.clone();
        app_edit["spec"]["executor"]["instances"] = json!(4);
        seed(
            "SparkApplication UPDATE by alice".into(),
            mk_review(
                "d0000000-0000-4000-8000-000000000004",
                ("sparkoperator.k8s.io", "v1beta2", "SparkApplication"),
                "sparkapplications",
                None,
                "UPDATE",
                Some("orders-etl"),
                alice.clone(),
                app_edit,
                admitted_app.clone(),
            ),
            Some(Mode::Validate),
        );
        let mut status = admitted_app.clone();
        status["status"] = json!({"applicationState": {"state": "RUNNING"},
                                  "driverInfo": {"podName": "orders-etl-driver"}});
        seed(
            "SparkApplication status by the operator".into(),
            mk_review(
                "d0000000-0000-4000-8000-000000000005",
                ("sparkoperator.k8s.io", "v1beta2", "SparkApplication"),
                "sparkapplications",
                Some("status"),
                "UPDATE",
                Some("orders-etl"),
                user(OPERATOR),
                status,
                admitted_app,
            ),
            Some(Mode::Validate),
        );

        // Every seed that must be allowed is, so mutations start from the deep paths.
        for s in &seeds {
            if let Some(mode) = s.expect_allowed {
                let a = answer(&rt, &pipeline, mode, &s.review);
                assert_eq!(a["response"]["allowed"], true, "seed {}: {a}", s.name);
            }
        }
        Self {
            pipeline,
            seeds,
            tokens,
            store,
            _dir: dir,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations.

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

fn paths(v: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                prefix.push(Seg::Key(k.clone()));
                paths(c, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                prefix.push(Seg::Index(i));
                paths(c, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at<'v>(v: &'v mut Value, path: &[Seg]) -> Option<&'v mut Value> {
    let mut cur = v;
    for s in path {
        cur = match s {
            Seg::Key(k) => cur.get_mut(k.as_str())?,
            Seg::Index(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

/// A marker string replaced in the serialised text (deep nesting, duplicate keys).
const DEEP: &str = "\u{1}DEEP\u{1}";
const DUP: &str = "\u{1}DUP\u{1}";

/// Values that mean something to sparkward or to Kubernetes.
fn dictionary(rng: &mut fastrand::Rng, tokens: &Tokens) -> Value {
    const STRINGS: &[&str] = &[
        "",
        "Pod",
        "SparkApplication",
        "ScheduledSparkApplication",
        "ConfigMap",
        "Secret",
        "CiliumNetworkPolicy",
        "NetworkPolicy",
        "TokenRequest",
        "Eviction",
        "PodExecOptions",
        "Binding",
        "Deployment",
        "CREATE",
        "UPDATE",
        "DELETE",
        "CONNECT",
        "create",
        "FLY",
        "status",
        "exec",
        "attach",
        "portforward",
        "eviction",
        "token",
        "binding",
        "ephemeralcontainers",
        "resize",
        "scale",
        "pods",
        "sparkapplications",
        "serviceaccounts",
        "sparkoperator.k8s.io",
        "cilium.io",
        "v1",
        "v1beta2",
        "v1beta1",
        "v2",
        "driver",
        "executor",
        "spark-jobs",
        "kube-system",
        "oidc:alice",
        "oidc:mallory",
        "alice",
        "system:masters",
        OPERATOR,
        "system:serviceaccount:spark-jobs:spark",
        "system:node:ip-10-0-12-34.eu-west-1.compute.internal",
        "system:serviceaccount:sparkward-system:sparkward",
        inputs::DRIVER_POD,
        inputs::DRIVER_UID,
        APP_UID,
        "orders-etl",
        "sj-mfrggzdfmztwq2lknnwg",
        "sj-aaaaaaaaaaaaaaaaaaaa",
        "sparkward-sj-mfrggzdfmztwq2lknnwg",
        "/",
        "/tmp",
        "/opt/spark/work-dir",
        "/etc",
        "/var/run/secrets",
        "SYS_ADMIN",
        "NET_RAW",
        "ALL",
        "Unconfined",
        "RuntimeDefault",
        "Localhost",
        "Unmasked",
        "Always",
        "Never",
        "spark.authenticate",
        "false",
        "true",
        "0",
        "-1",
        "185",
        "v1.test.9999999999.t.token.AAAA",
        "v1.bogus",
        "\u{0}",
        "\u{feff}",
        "\u{202e}",
        "é",
        "🦀",
        "\\",
        "\"",
        "../../etc/passwd",
        "a/b~c",
        "~1",
        "~0",
    ];
    match rng.u8(..16) {
        0..=6 => json!(STRINGS[rng.usize(..STRINGS.len())]),
        7 => json!(tokens.valid[rng.usize(..tokens.valid.len())]),
        8 => json!(tokens.forged[rng.usize(..tokens.forged.len())]),
        9 => {
            let ints = [
                json!(0),
                json!(1),
                json!(185),
                json!(65534),
                json!(-1),
                json!(2147483647),
                json!(4294967296_u64),
                json!(i64::MIN),
                json!(u64::MAX),
            ];
            ints[rng.usize(..ints.len())].clone()
        }
        10 => {
            let floats = [0.5_f64, -0.0, 1e308, 185.0];
            json!(floats[rng.usize(..floats.len())])
        }
        11 => json!(rng.bool()),
        12 => Value::Null,
        13 => json!({"type": "RuntimeDefault"}),
        14 => json!({"runAsUser": 0, "privileged": true, "allowPrivilegeEscalation": true,
                     "capabilities": {"add": ["SYS_ADMIN"]}, "readOnlyRootFilesystem": false}),
        _ => json!({"hostPath": {"path": "/"}, "name": "host"}),
    }
}

fn random_scalar(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..5) {
        0 => json!(rng.i64(..)),
        1 => json!(rng.f64() * 1e6),
        2 => json!(rng.bool()),
        3 => Value::Null,
        _ => {
            let len = rng.usize(..12);
            json!((0..len).map(|_| rng.char(..)).collect::<String>())
        }
    }
}

/// Replaces `v` with a value of another JSON type made from it.
fn retype(v: &Value, rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..6) {
        0 => json!(v.to_string()),
        1 => match v {
            Value::String(s) => s.parse::<f64>().map(|f| json!(f)).unwrap_or(json!(s.len())),
            _ => json!(rng.i32(..)),
        },
        2 => json!([v.clone()]),
        3 => json!({"value": v.clone()}),
        4 => Value::Null,
        _ => match v {
            Value::Array(a) if !a.is_empty() => a[0].clone(),
            Value::Object(m) if !m.is_empty() => m.values().next().cloned().unwrap_or_default(),
            _ => json!(true),
        },
    }
}

/// Paths most likely to matter, tried more often than uniform picks.
fn hot_path(rng: &mut fastrand::Rng, review: &Value) -> Vec<Seg> {
    let k = |s: &str| Seg::Key(s.into());
    let req = |rest: &[&str]| {
        let mut p = vec![k("request")];
        p.extend(rest.iter().map(|s| k(s)));
        p
    };
    let obj = review["request"]["object"].is_object();
    match rng.u8(..14) {
        0 => req(&["uid"]),
        1 => req(&["kind", "kind"]),
        2 => req(&["operation"]),
        3 => req(&["subResource"]),
        4 => req(&["resource", "resource"]),
        5 => req(&["userInfo", "username"]),
        6 => req(&["userInfo", "extra"]),
        7 => req(&["dryRun"]),
        8 => req(&["oldObject"]),
        9 if obj => req(&["object", "metadata", "labels"]),
        10 if obj => req(&[
            "object",
            "metadata",
            "annotations",
            "sparkward.io/submitter-token",
        ]),
        11 if obj => req(&["object", "metadata", "ownerReferences"]),
        12 if obj => req(&["object", "spec", "securityContext"]),
        _ => req(&["object"]),
    }
}

/// Writes `v` to `out` as JSON; objects holding the key [`DUP`] get one of their other keys
/// written twice (first with the marker's value, then with its own).
fn emit(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            out.push('{');
            let mut first = true;
            let mut dup = m.get(DUP);
            for (key, val) in m {
                if key == DUP {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                if let Some(d) = dup.take() {
                    out.push_str(&serde_json::to_string(key).unwrap());
                    out.push(':');
                    emit(d, out);
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key).unwrap());
                out.push(':');
                emit(val, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, c) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                emit(c, out);
            }
            out.push(']');
        }
        Value::String(s) if s.starts_with(DEEP) => {
            let depth: usize = s[DEEP.len()..].parse().unwrap_or(1000);
            let (open, close) = if depth.is_multiple_of(2) {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            out.push_str(&open.repeat(depth));
            out.push('0');
            out.push_str(&close.repeat(depth));
        }
        other => out.push_str(&other.to_string()),
    }
}

/// One structural mutation of `review`; returns its name.
fn mutate_value(review: &mut Value, rng: &mut fastrand::Rng, h: &Harness) -> &'static str {
    let path = if rng.bool() {
        hot_path(rng, review)
    } else {
        let mut all = Vec::new();
        paths(review, &mut Vec::new(), &mut all);
        all.swap_remove(rng.usize(..all.len()))
    };
    // A hot path may not exist in this seed: create it where its parent is an object.
    if at(review, &path).is_none()
        && let Some((Seg::Key(last), parent)) = path.split_last()
        && let Some(Value::Object(m)) = at(review, parent)
    {
        m.insert(last.clone(), Value::Null);
    }
    let op = rng.u8(..12);
    if op == 0 {
        match path.split_last() {
            Some((Seg::Key(last), parent)) => {
                if let Some(Value::Object(m)) = at(review, parent) {
                    m.remove(last);
                }
            }
            Some((Seg::Index(i), parent)) => {
                if let Some(Value::Array(a)) = at(review, parent) {
                    a.remove(*i);
                }
            }
            None => *review = json!({}),
        }
        return "remove";
    }
    let Some(node) = at(review, &path) else {
        return "miss";
    };
    match op {
        1 | 2 => {
            *node = retype(node, rng);
            "retype"
        }
        3 | 4 => {
            *node = dictionary(rng, &h.tokens);
            "dictionary"
        }
        5 => {
            *node = random_scalar(rng);
            "scalar"
        }
        6 => {
            // Graft a subtree from another seed.
            let other = &h.seeds[rng.usize(..h.seeds.len())].review;
            let mut all = Vec::new();
            paths(other, &mut Vec::new(), &mut all);
            let p = &all[rng.usize(..all.len())];
            let mut other = other.clone();
            *node = at(&mut other, p).cloned().unwrap_or_default();
            "graft"
        }
        7 => match node {
            Value::Object(m) => {
                m.insert(DUP.into(), dictionary(rng, &h.tokens));
                "duplicate-key"
            }
            other => {
                *other = json!([other.clone(), other.clone()]);
                "duplicate-element"
            }
        },
        8 => {
            *node = json!(format!("{DEEP}{}", rng.usize(100..20_000)));
            "deep"
        }
        9 => {
            let n = [1 << 10, 1 << 14, 1 << 17, 1 << 20][rng.usize(..4)];
            *node = match rng.u8(..3) {
                0 => json!("x".repeat(n)),
                1 => {
                    // Only a small item is repeated: a repeated 1 MiB string is 64 GiB.
                    let item = match &*node {
                        Value::Object(_) | Value::Array(_) => json!({}),
                        Value::String(s) if s.len() > 64 => json!("x"),
                        small => small.clone(),
                    };
                    // About n bytes as written: a short `deep` marker is written as up to
                    // 120 KB of brackets, and 65,536 copies of it made bodies of 6 GB.
                    let mut written = String::new();
                    emit(&item, &mut written);
                    json!(vec![item; (n / (written.len() + 1)).max(1)])
                }
                _ => {
                    let mut m = serde_json::Map::new();
                    for i in 0..(n / 256).max(1) {
                        m.insert(format!("k{i}"), json!(i));
                    }
                    Value::Object(m)
                }
            };
            "huge"
        }
        10 => match node {
            Value::Object(m) => {
                let key = ["job-id", "user", "stamp", "policy"][rng.usize(..4)];
                m.insert(format!("sparkward.io/{key}"), dictionary(rng, &h.tokens));
                "claim-key"
            }
            other => {
                *other = json!({});
                "empty-object"
            }
        },
        _ => {
            let n = rng.usize(..4);
            let mut cur = node.take();
            for _ in 0..=n {
                cur = json!({"a": [cur]});
            }
            *node = cur;
            "nest"
        }
    }
}

/// One byte-level mutation of the serialised body.
fn mutate_bytes(body: &mut Vec<u8>, rng: &mut fastrand::Rng) -> &'static str {
    if body.is_empty() {
        body.push(b'{');
        return "grow";
    }
    let i = rng.usize(..body.len());
    match rng.u8(..7) {
        0 => {
            body.truncate(i);
            "truncate"
        }
        1 => {
            body[i] = rng.u8(..);
            "flip-byte"
        }
        2 => {
            let bad: &[&[u8]] = &[
                b"\xff",
                b"\xc3\x28",
                b"\xed\xa0\x80",
                b"\xf0\x28\x8c\xbc",
                b"\xc0\xaf",
            ];
            let b = bad[rng.usize(..bad.len())];
            body.splice(i..i, b.iter().copied());
            "invalid-utf8"
        }
        3 => {
            let junk: &[&[u8]] = &[
                b"\\ud800",
                b"\\u0000",
                b",",
                b"}",
                b"]",
                b"\"",
                b"NaN",
                b"1e999999",
            ];
            let b = junk[rng.usize(..junk.len())];
            body.splice(i..i, b.iter().copied());
            "junk"
        }
        4 => {
            body.drain(i..(i + rng.usize(..64)).min(body.len()));
            "cut"
        }
        5 => {
            let mut tail = body.clone();
            tail.truncate(rng.usize(..tail.len().min(256)));
            body.extend_from_slice(&tail);
            "trailing"
        }
        _ => {
            body.splice(0..0, b"\xef\xbb\xbf".iter().copied());
            "bom"
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Oracles.

#[derive(serde::Deserialize)]
struct UidOnly {
    request: UidRequest,
}

#[derive(serde::Deserialize)]
struct UidRequest {
    uid: String,
}

#[derive(Default)]
struct Stats {
    /// The most heap one review held at once beyond what was live before it, in bytes, and
    /// that review's size in bytes.
    largest_peak: (u64, usize),
    cases: u64,
    outcomes: BTreeMap<String, u64>,
    mutations: BTreeMap<&'static str, u64>,
    validated_after_mutate: u64,
    pss_checked: u64,
    failures: Vec<String>,
}

impl Stats {
    fn count(&mut self, key: String) {
        *self.outcomes.entry(key).or_default() += 1;
    }

    fn note_memory(&mut self, peak: u64, body_len: usize) {
        if peak > self.largest_peak.0 {
            self.largest_peak = (peak, body_len);
        }
    }

    fn merge(&mut self, o: Stats) {
        self.largest_peak = self.largest_peak.max(o.largest_peak);
        self.cases += o.cases;
        for (k, v) in o.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for (k, v) in o.mutations {
            *self.mutations.entry(k).or_default() += v;
        }
        self.validated_after_mutate += o.validated_after_mutate;
        self.pss_checked += o.pss_checked;
        self.failures.extend(o.failures);
    }
}

/// Runs one review, turning a panic into an `Err`.
fn run(
    rt: &tokio::runtime::Runtime,
    p: &Pipeline,
    mode: Mode,
    body: &[u8],
) -> Result<Result<(bool, Value), String>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(p.review(mode, body)).map(|outcome| {
            let json = outcome.response().into_review().to_json();
            (
                outcome.allowed(),
                serde_json::from_slice(&json).unwrap_or(Value::Null),
            )
        })
    }))
    .map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

/// Checks every invariant on one input; `Err` describes the violation.
fn check(
    h: &Harness,
    rt: &tokio::runtime::Runtime,
    rng: &mut fastrand::Rng,
    mode: Mode,
    body: &[u8],
    stats: &mut Stats,
) -> Result<(), String> {
    let (result, peak) = heap::peak_of(|| run(rt, &h.pipeline, mode, body));
    let result = result.map_err(|p| format!("panicked: {p}"))?;
    stats.note_memory(peak, body.len());
    heap::within_bound(peak, body.len())?;
    // An empty uid cannot be answered with: the server refuses it (400) like a missing one.
    let uid = serde_json::from_slice::<UidOnly>(body)
        .ok()
        .map(|u| u.request.uid)
        .filter(|u| !u.is_empty());
    let (allowed, answer) = match result {
        Err(message) => {
            // HTTP 400: only for bodies without a readable uid.
            if let Some(uid) = uid {
                return Err(format!(
                    "refused outright (400: {message}) though its uid {uid:?} is readable"
                ));
            }
            stats.count(format!("{} undecodable (400)", mode.as_str()));
            return Ok(());
        }
        Ok(r) => r,
    };
    let response = &answer["response"];
    if response.is_null() {
        return Err(format!("the answer is not an AdmissionReview: {answer}"));
    }
    if let Some(uid) = &uid
        && response["uid"] != json!(uid)
    {
        return Err(format!(
            "answered uid {} for request uid {uid:?}",
            response["uid"]
        ));
    }
    let code = response["status"]["code"].as_u64().unwrap_or(200);
    let reason = response["auditAnnotations"]["reason"]
        .as_str()
        .unwrap_or("?");
    // 503 is by design for a lookup that found nothing (the pod may have been created a moment
    // ago and the cache lag: retrying may help). Any other 5xx for bad input is a bug.
    if !allowed && code >= 500 && reason != "lookup" {
        return Err(format!(
            "denied with a {code}: {}",
            response["status"]["message"]
        ));
    }
    if !allowed {
        stats.count(format!("{} denied {reason}", mode.as_str()));
        return Ok(());
    }
    stats.count(format!("{} allowed", mode.as_str()));
    let patch = decode_patch(&answer)?;
    // An allowed answer: the request must have been JSON the API server could have sent.
    let review: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            // Valid JSON this oracle cannot hold as a `Value`, in a part of the review sparkward
            // does not read: nesting deeper than serde_json's limit of 128, or a lone UTF-16
            // surrogate escape (which Go's encoding/json accepts). Any other error is a body
            // that is not JSON at all, and allowing that is a bug.
            let text = e.to_string();
            if text.contains("recursion limit") {
                // The syntax is still checked, without a depth limit.
                serde_json::from_slice::<serde::de::IgnoredAny>(body)
                    .map_err(|e| format!("allowed a body that is not JSON ({e})"))?;
            }
            // serde_json reports a lone high surrogate followed by anything but `\u` as an
            // "unexpected end of hex escape".
            let surrogate = text.contains("unicode code point")
                || (text.contains("hex escape") && body.windows(3).any(|w| w == b"\\ud"));
            // A number beyond f64 (`1e999`) is valid JSON (RFC 8259 leaves the range to the
            // parser, and Go's scanner accepts it; only decoding it into a float fails). In a
            // field sparkward reads the typed view refuses it; in one it skips, the decision
            // does not depend on it, and kube-apiserver, which re-encodes every object from
            // typed Go values, never sends one. The syntax is still checked.
            let out_of_range = text.contains("number out of range");
            if out_of_range {
                serde_json::from_slice::<serde::de::IgnoredAny>(body)
                    .map_err(|e| format!("allowed a body that is not JSON ({e})"))?;
            }
            if text.contains("recursion limit") || surrogate || out_of_range {
                stats.count(format!(
                    "{} allowed, beyond the oracle's parser",
                    mode.as_str()
                ));
                return Ok(());
            }
            return Err(format!("allowed a body that is not JSON ({text})"));
        }
    };
    let mut patched = review["request"]["object"].clone();
    json_patch::patch(&mut patched, &patch)
        .map_err(|e| format!("allowed with a patch that does not apply: {e}"))?;
    if mode != Mode::Mutate || review["request"]["operation"] != "CREATE" {
        return Ok(());
    }
    let kind = review["request"]["kind"]["kind"].as_str().unwrap_or("");
    let sub = review["request"]["subResource"].as_str().unwrap_or("");
    if !sub.is_empty()
        || !matches!(
            kind,
            "Pod" | "SparkApplication" | "ScheduledSparkApplication"
        )
    {
        return Ok(());
    }
    // The API server only sends objects that decode as their kind: a pod that does not parse
    // as a Kubernetes Pod could not have reached the webhook.
    let real_pod = kind == "Pod"
        && serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(
            review["request"]["object"].clone(),
        )
        .is_ok();
    if kind == "Pod" && !real_pod {
        return Ok(());
    }
    let next = validating_call(&review, patched.clone(), rng);
    let next_body = serde_json::to_vec(&next).unwrap();
    let (v_allowed, v_answer) = run(rt, &h.pipeline, Mode::Validate, &next_body)
        .map_err(|p| format!("validating call panicked: {p}"))?
        .map_err(|m| format!("validating call refused outright: {m}"))?;
    stats.validated_after_mutate += 1;
    let v_reason = v_answer["response"]["auditAnnotations"]["reason"].as_str();
    if !v_allowed
        && kind == "Pod"
        && review["request"]["userInfo"]["username"] == OPERATOR
        && v_reason == Some("lineage")
    {
        // By design (README, "Operator lineage"): a driver pod's controller ownerReference is
        // checked on the final object only, because older spark-operators add it in their own
        // pod webhook after sparkward's mutating call. Denied, and no policy was made for it.
        stats.count("validate denied by design: operator lineage on the final pod".into());
        return Ok(());
    }
    if !v_allowed {
        return Err(format!(
            "mutate allowed but validate denied the patched object: {}",
            v_answer["response"]["status"]["message"]
        ));
    }
    if kind == "Pod" {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(patched.clone())
            .map_err(|e| format!("the patched pod is no longer a Pod: {e}"))?;
        let mut v = restricted_violations(&pod);
        v.extend(writable_dirs_missing(&pod, WRITABLE));
        if !v.is_empty() {
            return Err(format!(
                "the patched pod breaks the restricted profile: {v:?}"
            ));
        }
        stats.pss_checked += 1;
    }
    Ok(())
}

/// Makes one fuzz input: a seed, one to four structural mutations, maybe a byte mutation.
fn make_case(h: &Harness, rng: &mut fastrand::Rng, stats: &mut Stats) -> (Mode, Vec<u8>) {
    let seed = &h.seeds[rng.usize(..h.seeds.len())];
    let mut review = seed.review.clone();
    // A fresh uid most of the time: job ids derive from it.
    if rng.u8(..4) != 0 {
        review["request"]["uid"] = json!(fresh_uid(rng));
    }
    let n = rng.usize(0..=4);
    for _ in 0..n {
        let m = mutate_value(&mut review, rng, h);
        *stats.mutations.entry(m).or_default() += 1;
    }
    let mut text = String::new();
    emit(&review, &mut text);
    let mut body = text.into_bytes();
    if rng.u8(..5) == 0 {
        let m = mutate_bytes(&mut body, rng);
        *stats.mutations.entry(m).or_default() += 1;
    }
    let mode = if rng.u8(..3) == 0 {
        Mode::Validate
    } else {
        Mode::Mutate
    };
    (mode, body)
}

impl Tokens {
    /// Every token with its placeholder (`$TOKEN<i>` valid, `$FORGED<i>` forged), longest
    /// first, so that a token that contains another is replaced whole.
    fn named(&self) -> Vec<(String, &str)> {
        let mut all: Vec<(String, &str)> = self
            .valid
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("$TOKEN{i}"), t.as_str()))
            .chain(
                self.forged
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (format!("$FORGED{i}"), t.as_str())),
            )
            .filter(|(_, t)| t.len() > 8)
            .collect();
        all.sort_by_key(|(_, t)| std::cmp::Reverse(t.len()));
        all
    }

    /// `body` with its tokens replaced by placeholders: the keys of a run are gone after it,
    /// so a kept input names its tokens instead.
    fn to_placeholders(&self, body: &[u8]) -> Vec<u8> {
        let Ok(mut text) = String::from_utf8(body.to_vec()) else {
            return body.to_vec();
        };
        for (name, token) in self.named() {
            text = text.replace(token, &name);
        }
        text.into_bytes()
    }

    /// A kept input with this run's tokens in place of its placeholders.
    fn fill(&self, body: &[u8]) -> Vec<u8> {
        let Ok(mut text) = String::from_utf8(body.to_vec()) else {
            return body.to_vec();
        };
        let mut named = self.named();
        // `$TOKEN10` before `$TOKEN1`.
        named.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
        for (name, token) in named {
            text = text.replace(&name, token);
        }
        text.into_bytes()
    }
}

fn save_failure(h: &Harness, mode: Mode, body: &[u8], why: &str) -> String {
    // Messages can echo megabytes of input: keep the start.
    let why: String = why.chars().take(400).collect();
    let body = &h.tokens.to_placeholders(body);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let hash = body.iter().fold(0xcbf29ce484222325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    let path = dir.join(format!("{}-{hash:016x}.json", mode.as_str()));
    let _ = std::fs::write(&path, body);
    format!("{}: {why}", path.display())
}

/// The heap one review holds at its peak, counted exactly by a global allocator with a count
/// per thread (`allocation-counter`; a review runs on its worker's thread, in a current-thread
/// runtime), whatever the allocator underneath keeps or gives back to the system.
mod heap {
    /// What one review may hold at once: a base for the pipeline's own working set plus a
    /// multiple of the body (its typed views, the answer's patch and base64, the audit line).
    /// The costliest input found is a list of empty objects (`volumeMounts: [{}, {}, ...]`):
    /// 3 bytes each of body, about 100 bytes each as typed items, 35 times the body in all.
    /// These are the server's own counts against `server.maxMemoryInFlight`
    /// (`MEMORY_PER_REQUEST`, `MEMORY_PER_BODY_BYTE`): this invariant is what makes that count
    /// an upper bound of what the reviews in flight hold.
    pub const BASE: u64 = sparkward::config::MEMORY_PER_REQUEST as u64;
    pub const PER_BODY_BYTE: u64 = sparkward::config::MEMORY_PER_BODY_BYTE as u64;

    /// Runs `f` and returns what it held at once.
    pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, u64) {
        let mut out = None;
        let info = allocation_counter::measure(|| out = Some(f()));
        (out.expect("measure runs its closure"), info.bytes_max)
    }

    /// The invariant: at most `BASE + PER_BODY_BYTE × body` held at once.
    pub fn within_bound(peak: u64, body_len: usize) -> Result<(), String> {
        let limit = BASE + PER_BODY_BYTE * body_len as u64;
        if peak > limit {
            return Err(format!(
                "one review of {body_len} bytes held {} KiB of heap at once (limit {} KiB)",
                peak / 1024,
                limit / 1024
            ));
        }
        Ok(())
    }
}

/// The process's resident memory now and at its peak (`/proc/self/status`), for the long run's
/// report: a leak shows as an RSS that climbs between reports.
fn memory() -> String {
    let kib =
        |key| status_kib(key).map_or_else(|| "?".to_string(), |k| format!("{} MiB", k / 1024));
    format!("RSS {}, peak {}", kib("VmRSS:"), kib("VmHWM:"))
}

/// A `/proc/self/status` field in KiB.
fn status_kib(key: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn fuzz_worker(h: &Harness, seed: u64, cases: u64, progress: &AtomicU64) -> Stats {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut stats = Stats::default();
    for _ in 0..cases {
        let (mode, body) = make_case(h, &mut rng, &mut stats);
        if let Err(why) = check(h, &rt, &mut rng, mode, &body, &mut stats) {
            stats.failures.push(save_failure(h, mode, &body, &why));
        }
        stats.cases += 1;
        progress.fetch_add(1, Ordering::Relaxed);
    }
    stats
}

/// Inputs that once broke an invariant: `tests/fixtures/fuzz/<mode>-*.json`.
fn regression_inputs() -> Vec<(PathBuf, Mode, Vec<u8>)> {
    // `SPARKWARD_FUZZ_REPLAY=target/fuzz-failures` replays a long run's failures instead.
    let dir = std::env::var_os("SPARKWARD_FUZZ_REPLAY").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz"),
        PathBuf::from,
    );
    let mut out: Vec<(PathBuf, Mode, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|p| {
                    let name = p.file_name()?.to_str()?.to_string();
                    let mode = if name.starts_with("mutate-") {
                        Mode::Mutate
                    } else if name.starts_with("validate-") {
                        Mode::Validate
                    } else {
                        return None;
                    };
                    let body = std::fs::read(&p).ok()?;
                    Some((p, mode, body))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn kept_crash_inputs_still_hold_every_invariant() {
    let h = Harness::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut stats = Stats::default();
    let kept = regression_inputs();
    assert!(!kept.is_empty(), "no kept inputs in tests/fixtures/fuzz");
    let mut failures = Vec::new();
    for (path, mode, body) in &kept {
        let body = h.tokens.fill(body);
        if let Err(why) = check(&h, &rt, &mut rng, *mode, &body, &mut stats) {
            let why: String = why.chars().take(300).collect();
            failures.push(format!("{}: {why}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bugs_the_fuzzer_found_are_denied_up_front() {
    let h = Harness::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    for (file, reason) in [
        ("mutate-pod-without-metadata.json", "malformed"),
        ("mutate-second-token-in-scheduled-image.json", "token_copy"),
        ("mutate-second-token-as-security-context.json", "token_copy"),
        ("mutate-token-as-namespace.json", "malformed"),
    ] {
        let body = h.tokens.fill(&std::fs::read(dir.join(file)).unwrap());
        let (allowed, answer) = run(&rt, &h.pipeline, Mode::Mutate, &body).unwrap().unwrap();
        assert!(!allowed, "{file}: {answer}");
        assert_eq!(
            answer["response"]["auditAnnotations"]["reason"], reason,
            "{file}: {answer}"
        );
        // The same object without the defect is allowed: the denial is for the defect.
        let mut review: Value = serde_json::from_slice(&body).unwrap();
        let object = &mut review["request"]["object"];
        if reason == "token_copy" {
            let own = object["metadata"]["annotations"]["sparkward.io/submitter-token"].clone();
            let text = object.to_string().replace(h.tokens.valid[1].as_str(), "");
            *object = serde_json::from_str(&text).unwrap();
            assert_eq!(
                object["metadata"]["annotations"]["sparkward.io/submitter-token"],
                own
            );
            let (allowed, answer) = run(
                &rt,
                &h.pipeline,
                Mode::Mutate,
                &review.to_string().into_bytes(),
            )
            .unwrap()
            .unwrap();
            assert!(allowed, "{file} without the second token: {answer}");
        }
    }
}

#[test]
fn mutated_reviews_never_panic_and_allowed_answers_hold() {
    let h = Arc::new(Harness::new());
    let cases = env_u64("SPARKWARD_FUZZ_CASES", 3000);
    let threads = env_u64("SPARKWARD_FUZZ_THREADS", 1).max(1);
    let seed = env_u64("SPARKWARD_FUZZ_SEED", 0x5eed_f022);
    let progress = Arc::new(AtomicU64::new(0));
    let report_every = env_u64("SPARKWARD_FUZZ_REPORT_SECS", 0);
    let started = Instant::now();
    let done = Arc::new(Mutex::new(false));
    let reporter = (report_every > 0).then(|| {
        let (progress, done) = (progress.clone(), done.clone());
        std::thread::spawn(move || {
            while !*done.lock().unwrap() {
                std::thread::sleep(std::time::Duration::from_secs(report_every));
                let n = progress.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "fuzz: {n} cases in {secs:.0} s ({:.0}/s), {}",
                    n as f64 / secs,
                    memory()
                );
            }
        })
    });
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (h, progress) = (h.clone(), progress.clone());
            let share = cases / threads + u64::from(t < cases % threads);
            std::thread::spawn(move || fuzz_worker(&h, seed.wrapping_add(t), share, &progress))
        })
        .collect();
    let mut stats = Stats::default();
    for w in workers {
        stats.merge(w.join().unwrap());
    }
    *done.lock().unwrap() = true;
    if let Some(r) = reporter {
        let _ = r.join();
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz: {} cases, seed {seed:#x}, {threads} thread(s), {secs:.1} s, {:.0} cases/s; \
         {} seeds; {} validating calls after an allowed mutate, {} patched pods checked \
         against the restricted profile; {} policies/secrets stored",
        stats.cases,
        stats.cases as f64 / secs,
        h.seeds.len(),
        stats.validated_after_mutate,
        stats.pss_checked,
        h.store.applied.load(Ordering::Relaxed),
    );
    eprintln!("fuzz memory at the end: {}", memory());
    eprintln!(
        "fuzz: the most heap one review held at once: {} KiB, for a body of {} bytes",
        stats.largest_peak.0 / 1024,
        stats.largest_peak.1
    );
    eprintln!("fuzz outcomes:");
    for (k, v) in &stats.outcomes {
        eprintln!("  {v:>9}  {k}");
    }
    eprintln!("fuzz mutations applied:");
    for (k, v) in &stats.mutations {
        eprintln!("  {v:>9}  {k}");
    }
    assert_eq!(stats.cases, cases);
    assert!(
        stats.failures.is_empty(),
        "{} failing inputs:\n{}",
        stats.failures.len(),
        stats.failures.join("\n")
    );
    // The run reached the deep paths, not only denials.
    assert!(stats.outcomes.keys().any(|k| k == "mutate allowed"));
    assert!(stats.validated_after_mutate > 0 && stats.pss_checked > 0);
}

/// What the memory tests run on: the harness, a current-thread runtime (a review's heap is
/// counted on its thread), and the pod and SparkApplication seeds.
fn memory_setup() -> (Harness, tokio::runtime::Runtime, Value, Value) {
    let h = Harness::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pod = h.seeds[0].review.clone();
    assert_eq!(pod["request"]["kind"]["kind"], "Pod", "{}", h.seeds[0].name);
    let app = h.seeds[1].review.clone();
    assert_eq!(app["request"]["kind"]["kind"], "SparkApplication");
    (h, rt, pod, app)
}

/// The memory class the fuzzer's heap count found: a list of empty objects (`[{}, {}, ...]`,
/// 3 bytes an item) in each list a review's typed views read, for the pod and the
/// SparkApplication seeds, in both modes. Each review is held to the same bound as a fuzzed
/// one (`heap::within_bound`), and the long lists are refused with what to do.
#[test]
fn long_lists_of_empty_objects_stay_within_the_memory_bound() {
    let (h, rt, pod, app) = memory_setup();
    let empties = json!(vec![json!({}); 200_000]);
    let cases: [(&Value, &str); 12] = [
        (&pod, "/spec/containers"),
        (&pod, "/spec/initContainers"),
        (&pod, "/spec/ephemeralContainers"),
        (&pod, "/spec/volumes"),
        (&pod, "/metadata/ownerReferences"),
        (&pod, "/spec/containers/0/env"),
        (&pod, "/spec/containers/0/volumeMounts"),
        (&pod, "/spec/containers/0/ports"),
        (&app, "/spec/volumes"),
        (&app, "/spec/executor/volumeMounts"),
        (&app, "/spec/driver/sidecars"),
        (&app, "/spec/executor/ports"),
    ];
    // A validating Pod UPDATE, which reads its two pods in one pass (`decode::PodParts`).
    let mut update = pod.clone();
    update["request"]["operation"] = json!("UPDATE");
    update["request"]["oldObject"] = update["request"]["object"].clone();
    let cases = cases
        .into_iter()
        .chain([(&update, "/metadata/ownerReferences")]);
    let mut failures = Vec::new();
    for (seed, path) in cases {
        let mut review = seed.clone();
        let Some(object) = review.pointer_mut("/request/object") else {
            panic!("seed without an object")
        };
        let (parent, key) = path.rsplit_once('/').unwrap();
        object.pointer_mut(parent).unwrap()[key] = empties.clone();
        // In kube-apiserver's field order: `serde_json` sorts keys, and `operation` after
        // `object` sends a body down the plain decode instead of the one-pass paths.
        let body = inputs::review(review["request"].clone());
        for mode in [Mode::Mutate, Mode::Validate] {
            let (outcome, peak) = heap::peak_of(|| run(&rt, &h.pipeline, mode, &body));
            let (allowed, answer) = outcome.unwrap().unwrap();
            let message = answer["response"]["status"]["message"]
                .as_str()
                .unwrap_or("");
            // The mutating webhook changes nothing on a Pod UPDATE and does not read its pods.
            let read = !(mode == Mode::Mutate && review["request"]["operation"] == "UPDATE");
            if read && (allowed || !message.contains("in one list; sparkward admits at most")) {
                failures.push(format!(
                    "{path} ({}): not refused as too long: {message:.300}",
                    mode.as_str()
                ));
            }
            if let Err(why) = heap::within_bound(peak, body.len()) {
                failures.push(format!("{path} ({}): {why}", mode.as_str()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The memory class the fuzzer's `{}` items miss: one-key objects (`{"a":0}`, 8 bytes of text
/// and hundreds of bytes as a `serde_json::Value`) where a review reads JSON it does not type.
/// The token searches walk the text of a pod whose annotation starts like a JWT; an UPDATE
/// compares its specs and owner references as JSON when their texts differ (the plain decode,
/// another field order than kube-apiserver's) or reads its owner references' unknown fields
/// (the one-pass decode). Each review is held to the fuzzer's bound (`heap::within_bound`).
#[test]
fn one_key_objects_where_a_review_reads_untyped_json_stay_within_the_memory_bound() {
    let (h, rt, pod, app) = memory_setup();
    let items = json!(vec![json!({"a": 0}); 100_000]);
    let set = |seed: &Value, at: &str, value: Value| {
        let mut review = seed.clone();
        let (parent, key) = at.rsplit_once('/').unwrap();
        review.pointer_mut(parent).unwrap()[key] = value;
        review
    };
    let update = |seed: &Value| {
        let mut review = seed.clone();
        review["request"]["operation"] = json!("UPDATE");
        review["request"]["oldObject"] = review["request"]["object"].clone();
        review
    };
    let jwt_like = |review: Value| {
        set(
            &review,
            "/request/object/metadata/annotations/note",
            json!("eyJub3QiOiJhIHRva2VuIn0"),
        )
    };
    let owner_with = |extra: &Value| json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u", "x": extra}]);
    let cases: Vec<(&str, Value)> = vec![
        (
            "pod tolerations, annotation like a JWT (token searches)",
            jwt_like(set(&pod, "/request/object/spec/tolerations", items.clone())),
        ),
        (
            "SparkApplication executor tolerations, annotation like a JWT",
            jwt_like(set(
                &app,
                "/request/object/spec/executor/tolerations",
                items.clone(),
            )),
        ),
        (
            "pod UPDATE, specs that differ in long tolerations",
            set(
                &set(
                    &update(&pod),
                    "/request/oldObject/spec/tolerations",
                    items.clone(),
                ),
                "/request/object/spec/tolerations",
                json!(vec![json!({"a": 1}); 100_000]),
            ),
        ),
        (
            "pod UPDATE, owner references that differ in an unknown field",
            set(
                &set(
                    &update(&pod),
                    "/request/oldObject/metadata/ownerReferences",
                    owner_with(&items),
                ),
                "/request/object/metadata/ownerReferences",
                owner_with(&json!(vec![json!({"a": 1}); 100_000])),
            ),
        ),
        (
            "SparkApplication UPDATE, owner references and specs that differ",
            set(
                &set(
                    &set(
                        &update(&app),
                        "/request/oldObject/metadata/ownerReferences",
                        owner_with(&items),
                    ),
                    "/request/object/metadata/ownerReferences",
                    owner_with(&json!(vec![json!({"a": 1}); 100_000])),
                ),
                "/request/object/spec/executor/tolerations",
                items.clone(),
            ),
        ),
    ];
    let mut failures = Vec::new();
    for (what, review) in cases {
        // Both decodes: kube-apiserver's field order (the one-pass paths) and serde_json's
        // sorted keys (`object` before `operation`: the plain path).
        let bodies = [
            ("kube order", inputs::review(review["request"].clone())),
            ("sorted", serde_json::to_vec(&review).unwrap()),
        ];
        for (order, body) in bodies {
            for mode in [Mode::Mutate, Mode::Validate] {
                let (outcome, peak) = heap::peak_of(|| run(&rt, &h.pipeline, mode, &body));
                if let Err(why) = outcome {
                    failures.push(format!("{what} ({order}, {}): {why}", mode.as_str()));
                }
                if let Err(why) = heap::within_bound(peak, body.len()) {
                    failures.push(format!("{what} ({order}, {}): {why}", mode.as_str()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `json::same_json`, which the UPDATEs above compare specs and owner references with when their
/// texts differ, on its costliest inputs: long maps and lists of one-key objects whose last item
/// differs, so that every level along the path to it is read. Held to the same bound.
#[test]
fn comparing_long_json_texts_stays_within_the_memory_bound() {
    let list = |last: u32| {
        let mut items = vec![json!({"a": 0}); 100_000];
        items.push(json!({"a": last}));
        json!({"spec": {"tolerations": items}})
    };
    let map = |last: u32| {
        let mut m = serde_json::Map::new();
        for i in 0..100_000 {
            m.insert(format!("k{i}"), json!(0));
        }
        m.insert("z".into(), json!({"a": last}));
        json!({"spec": m})
    };
    for (what, make) in [("list", &list as &dyn Fn(u32) -> Value), ("map", &map)] {
        let (a, b) = (make(0).to_string(), make(1).to_string());
        let (same, peak) = heap::peak_of(|| sparkward::core::json::same_json(&a, &b));
        assert!(!same, "{what}");
        heap::within_bound(peak, a.len() + b.len()).unwrap();
        let (same, _) =
            heap::peak_of(|| sparkward::core::json::same_json(&a, &a.replace(':', ": ")));
        assert!(same, "{what}: the same value written with other spacing");
    }
}

/// A pod template (`spec.driver.template`, loosely typed by the CRD) is read into a capped,
/// typed view like the rest of a SparkApplication: lists of one-key objects (`{"a":0}`, 8
/// bytes of body, several hundred as a `serde_json::Value`) in the lists it reads are refused
/// past their limit, and those in fields it skips (known, unknown, or inside a security
/// context) or holds only as short text (a field of the wrong type) cost nothing, in both
/// modes, for a SparkApplication and a ScheduledSparkApplication, within the fuzzer's memory
/// bound.
#[test]
fn pod_templates_with_long_lists_stay_within_the_memory_bound() {
    let (h, rt, _, app) = memory_setup();
    let schedule = h
        .seeds
        .iter()
        .find(|s| s.review["request"]["kind"]["kind"] == "ScheduledSparkApplication")
        .expect("a ScheduledSparkApplication seed")
        .review
        .clone();
    let items = json!(vec![json!({"a": 0}); 100_000]);
    // (template, whether a list in it is refused as too long).
    let cases = [
        (json!({"spec": {"volumes": items}}), true),
        (json!({"spec": {"containers": items}}), true),
        (json!({"spec": {"initContainers": items}}), true),
        (json!({"spec": {"ephemeralContainers": items}}), true),
        (
            json!({"spec": {"containers": [{"name": "c", "ports": items}]}}),
            true,
        ),
        (
            json!({"spec": {"securityContext": {"supplementalGroups": items}}}),
            true,
        ),
        (json!({"spec": {"tolerations": items}}), false),
        (json!({"spec": {"notAPodField": items}}), false),
        (json!({"notATemplateField": items}), false),
        (
            json!({"spec": {"securityContext": {"notAField": items}}}),
            false,
        ),
        (
            json!({"spec": {"containers": [{"name": "c", "securityContext": {"x": items}}]}}),
            false,
        ),
        (json!({"metadata": {"annotations": {"a": items}}}), false),
        // An image that is not a string is named by an image rule only (this pipeline has none).
        (
            json!({"spec": {"containers": [{"name": "c", "image": items}]}}),
            false,
        ),
    ];
    // Wrong types the checks name in their denial: held as short text.
    let denied = [
        json!({"spec": {"securityContext": {"runAsUser": items}}}),
        json!({"spec": {"securityContext": {"supplementalGroups": {"a": items}}}}),
        json!({"metadata": {"ownerReferences": items}}),
        json!({"metadata": {"labels": {"sparkoperator.k8s.io/app-name": items}}}),
    ];
    let cases = cases
        .into_iter()
        .map(|(t, refused)| (t, refused, false))
        .chain(denied.into_iter().map(|t| (t, false, true)));
    let mut failures = Vec::new();
    for (template, refused, denied) in cases {
        for (seed, driver) in [(&app, "/spec/driver"), (&schedule, "/spec/template/driver")] {
            let mut review = seed.clone();
            review["request"]["object"]
                .pointer_mut(driver)
                .expect("a driver")["template"] = template.clone();
            let body = inputs::review(review["request"].clone());
            let what = format!(
                "{driver}/template {}",
                template.to_string().chars().take(60).collect::<String>()
            );
            for mode in [Mode::Mutate, Mode::Validate] {
                let (outcome, peak) = heap::peak_of(|| run(&rt, &h.pipeline, mode, &body));
                let (allowed, answer) = outcome.unwrap().unwrap();
                let message = answer["response"]["status"]["message"]
                    .as_str()
                    .unwrap_or("");
                eprintln!(
                    "{what} ({}): {} KiB held for a body of {} KiB ({:.2}x)",
                    mode.as_str(),
                    peak / 1024,
                    body.len() / 1024,
                    peak as f64 / body.len() as f64
                );
                let too_long = message.contains("in one list; sparkward admits at most");
                if refused && (allowed || !too_long) {
                    failures.push(format!(
                        "{what} ({}): not refused as too long: {message:.300}",
                        mode.as_str()
                    ));
                }
                // The mutating webhook hardens what it skips, and denies what it names.
                if mode == Mode::Mutate && !refused && allowed == denied {
                    failures.push(format!(
                        "{what} (mutate): allowed {allowed}: {message:.300}"
                    ));
                }
                if let Err(why) = heap::within_bound(peak, body.len()) {
                    failures.push(format!("{what} ({}): {why}", mode.as_str()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
