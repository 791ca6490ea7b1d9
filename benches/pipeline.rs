//! Per-stage costs of one admission review, on realistic inputs (benches/inputs): decode,
//! identity verification (RS256, ES256), mutation planning + patch, policy rendering, response
//! encoding, the audit line, and the whole in-process review (`Pipeline::review`): the
//! executor pod and SparkApplication CREATEs (mutating), and the validating UPDATE, `status`
//! and CONNECT reviews of an admitted job.
//!
//! `cargo bench --bench pipeline` measures; `cargo test --all-targets` runs each routine once
//! (criterion's test mode), so CI only proves the benches still work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "inputs/mod.rs"]
mod inputs;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sparkward::admission::decode::decode;
use sparkward::admission::{Mode, Pipeline};
use sparkward::config::Config;
use sparkward::core::hardening::Loc;
use sparkward::core::identity::verify_token;
use sparkward::core::keys::KeySet;
use sparkward::core::labels::TOKEN_ANNOTATION;
use sparkward::core::mutation::{
    finish, inspect_app_spec, inspect_pod, plan_metadata, plan_spark_pod_labels,
};
use sparkward::core::objects::{Pod, SparkApplication};
use sparkward::core::policy::{PolicyInput, render_policy};
use sparkward::k8s::jwks::JwksCache;

use inputs::SigningKey;

// The allocator of the `sparkward` binary (src/main.rs), so stage costs match the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Fixture {
    rt: tokio::runtime::Runtime,
    config: Arc<Config>,
    keys: KeySet,
    executor: Vec<u8>,
    app_rs: Vec<u8>,
    app_es: Vec<u8>,
    token_rs: String,
    token_es: String,
    pipeline: Pipeline,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (rs, es) = (SigningKey::rs256(), SigningKey::es256());
    let jwks = inputs::jwks(&[&rs, &es]);
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, &jwks).unwrap();
    let config =
        Arc::new(Config::from_yaml(&inputs::config_yaml(jwks_path.to_str().unwrap())).unwrap());
    let identity = config.identity.clone().unwrap();
    let cache = JwksCache::new(identity.jwks.clone()).unwrap();
    rt.block_on(cache.refresh()).unwrap();
    let (token_rs, token_es) = (rs.token(3600), es.token(3600));
    let pipeline = inputs::pipeline(config.clone(), cache);

    Fixture {
        rt,
        keys: KeySet::from_jwks_json(&jwks).unwrap(),
        executor: inputs::executor_review(),
        app_rs: inputs::app_review(&token_rs, false),
        app_es: inputs::app_review(&token_es, false),
        token_rs,
        token_es,
        config,
        pipeline,
        _dir: dir,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The review's object as compact JSON (what the router parses when decode kept it raw).
fn object(body: &[u8]) -> String {
    let review: serde_json::Value = serde_json::from_slice(body).unwrap();
    review["request"]["object"].to_string()
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let hardening = &f.config.hardening;
    let identity = f.config.identity.as_ref().unwrap();
    let job = inputs::job();

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(f.executor.len() as u64));
    // For a Pod CREATE this includes the typed Pod (decode's single-pass fast path).
    g.bench_function("executor_review", |b| {
        b.iter(|| decode(black_box(&f.executor)).unwrap().uid.len())
    });
    let pod_json = &object(&f.executor);
    g.bench_function("executor_pod_object", |b| {
        b.iter(|| serde_json::from_str::<Pod>(black_box(pod_json)).unwrap())
    });
    let app_json = &object(&f.app_rs);
    g.throughput(Throughput::Bytes(f.app_rs.len() as u64));
    g.bench_function("spark_app_object", |b| {
        b.iter(|| serde_json::from_str::<SparkApplication>(black_box(app_json)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("identity");
    for (name, token) in [("rs256", &f.token_rs), ("es256", &f.token_es)] {
        g.bench_function(name, |b| {
            b.iter(|| verify_token(black_box(token), &f.keys, identity, now()).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("mutation");
    let pod: Pod = serde_json::from_str(pod_json).unwrap();
    let stamp = job.stamp(Some("executor"));
    g.bench_function("executor_pod_plan", |b| {
        b.iter(|| {
            let ops = plan_metadata(&pod.metadata, &stamp, TOKEN_ANNOTATION);
            finish(inspect_pod(black_box(&pod), hardening, None), ops).unwrap()
        })
    });
    let app: SparkApplication = serde_json::from_str(app_json).unwrap();
    let app_stamp = job.stamp(None);
    let pod_labels = job.pod_labels();
    g.bench_function("spark_app_plan", |b| {
        b.iter(|| {
            let spec = Loc::root().key("spec");
            let mut ops = plan_metadata(&app.metadata, &app_stamp, TOKEN_ANNOTATION);
            ops.extend(plan_spark_pod_labels(&spec, &app.spec, &pod_labels));
            finish(
                inspect_app_spec(&spec, black_box(&app.spec), hardening),
                ops,
            )
            .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("policy");
    let user_label = job.user_label();
    g.bench_function("render_three_scopes", |b| {
        b.iter(|| {
            render_policy(
                &PolicyInput {
                    job_id: &job.job_id,
                    namespace: inputs::NAMESPACE,
                    user_label: &user_label,
                    scopes: black_box(&job.submitter.scopes),
                },
                &f.config.policy,
            )
            .unwrap()
        })
    });
    g.finish();

    let review = |body: &[u8]| {
        f.rt.block_on(f.pipeline.review(Mode::Mutate, body))
            .unwrap()
    };
    let executor_outcome = review(&f.executor);
    assert!(
        executor_outcome.allowed(),
        "{:?}",
        executor_outcome.decision
    );
    assert_eq!(executor_outcome.facts.identity_source, Some("creator-pod"));
    let app_outcome = review(&f.app_rs);
    assert!(app_outcome.allowed(), "{:?}", app_outcome.decision);
    // The executor as stored after the mutating webhook, for the validating scenarios.
    let patch = serde_json::to_value(&executor_outcome.decision.as_ref().unwrap().patch).unwrap();
    let admitted = inputs::admitted_executor(&patch);
    let validating = [
        (
            "update_executor_by_driver",
            inputs::update_review(&admitted),
        ),
        ("status_by_kubelet", inputs::status_review(&admitted)),
        ("connect_exec_by_submitter", inputs::connect_review()),
    ];
    let validate = |body: &[u8]| {
        f.rt.block_on(f.pipeline.review(Mode::Validate, body))
            .unwrap()
    };
    for (name, body) in &validating {
        let outcome = validate(body);
        assert!(outcome.allowed(), "{name}: {:?}", outcome.decision);
    }

    let mut g = c.benchmark_group("respond");
    for (name, outcome) in [
        ("executor_pod", &executor_outcome),
        ("spark_app", &app_outcome),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(outcome).response().into_review().to_json())
        });
        g.bench_function(format!("{name}_audit_line"), |b| {
            b.iter(|| {
                serde_json::to_vec(&black_box(outcome).audit_record(Duration::from_micros(50)))
                    .unwrap()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("review");
    for (name, body) in [
        ("executor_pod", &f.executor),
        ("spark_app_rs256", &f.app_rs),
        ("spark_app_es256", &f.app_es),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let outcome = review(black_box(body));
                outcome.response().into_review().to_json()
            })
        });
    }
    for (name, body) in &validating {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let outcome = validate(black_box(body));
                outcome.response().into_review().to_json()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = pipeline;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(pipeline);
