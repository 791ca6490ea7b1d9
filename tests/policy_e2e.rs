//! The job's CiliumNetworkPolicy, end to end: sparkward in cluster mode against the stand-in
//! API server, reviews over TLS, the policy applied (server-side apply) and stored BEFORE the
//! answer, and every failure of the apply a clear denial with nothing left half-created.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use sparkward::core::policy::cluster_dns_selectors;
use support::apiserver::{CNP, FakeApiServer, Fault};
use support::reviews::{Review, answered_job};
use support::scenario::{Idp, mk_spark_app};
use support::webhook::{HttpVersion, Options, Sparkward};

struct Env {
    api: FakeApiServer,
    idp: Idp,
    s: Sparkward,
    _kube_dir: tempfile::TempDir,
}

async fn env(extra_config: &str) -> Env {
    let api = FakeApiServer::start().await;
    api.ensure_namespace("spark-jobs", json!({"sparkward.io/enforce": "true"}));
    let idp = Idp::start().await;
    let kube_dir = tempfile::tempdir().unwrap();
    let s = Sparkward::start(Options {
        config: Some(idp.config(extra_config)),
        kubeconfig: Some(api.write_kubeconfig(kube_dir.path())),
        ..Options::default()
    })
    .await;
    Env {
        api,
        idp,
        s,
        _kube_dir: kube_dir,
    }
}

impl Env {
    async fn submit(&self, review: &Review) -> Value {
        let (status, answer) = self
            .s
            .client(HttpVersion::Http1)
            .review("/mutate", &review.build())
            .await;
        assert_eq!(status, 200);
        answer
    }

    fn app_review(&self, subject: &str, scopes: &str) -> Review {
        let token = self.idp.token(subject, scopes);
        Review::spark_app(mk_spark_app("pi", "spark-jobs", &token)).user(&format!("oidc:{subject}"))
    }

    fn cnps(&self) -> Vec<Value> {
        self.api.list(CNP, Some("spark-jobs"))
    }
}

fn egress_text(cnp: &Value) -> String {
    cnp["specs"].to_string()
}

#[tokio::test]
async fn a_spark_application_review_stores_exactly_one_policy_before_the_answer() {
    let e = env("").await;
    let review = e.app_review("alice", "data:read:postgres-main");
    let answer = e.submit(&review).await;
    let answered_at = Instant::now();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let job = answered_job(&answer);

    let cnps = e.cnps();
    assert_eq!(cnps.len(), 1, "{cnps:#?}");
    let cnp = &cnps[0];
    assert_eq!(cnp["metadata"]["name"], format!("sparkward-{job}"));
    assert_eq!(
        cnp["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "sparkward"
    );
    assert_eq!(cnp["metadata"]["labels"]["sparkward.io/job-id"], job);
    assert_eq!(cnp["metadata"]["labels"]["sparkward.io/user"], "alice");
    let specs = cnp["specs"].as_array().unwrap();
    // Job-wide rule: selects the job, ingress only from the job.
    let job_rule = &specs[0];
    assert_eq!(
        job_rule["endpointSelector"]["matchLabels"],
        json!({"sparkward.io/job-id": job})
    );
    assert_eq!(
        job_rule["ingress"],
        json!([{"fromEndpoints": [{"matchLabels": {"sparkward.io/job-id": job}}]}])
    );
    let egress = job_rule["egress"].as_array().unwrap();
    let text = job_rule["egress"].to_string();
    // Intra-job, DNS with the DNS proxy rule, and the granted scope's rule.
    assert!(
        egress
            .iter()
            .any(|r| r["toEndpoints"] == json!([{"matchLabels": {"sparkward.io/job-id": job}}])),
        "{text}"
    );
    // The DNS proxy lets through the cluster's own names only (this scope names no host).
    let dns = egress
        .iter()
        .find_map(|r| r["toPorts"][0]["rules"].get("dns"))
        .unwrap_or_else(|| panic!("no DNS proxy rule: {text}"));
    assert_eq!(
        dns,
        &json!(cluster_dns_selectors("cluster.local")),
        "{text}"
    );
    assert!(
        text.contains("\"53\"") && text.contains("UDP") && text.contains("TCP"),
        "{text}"
    );
    assert!(
        text.contains("postgres-main") && text.contains("5432"),
        "{text}"
    );
    // Driver rule: the driver reaches the API server to create executors.
    let driver = &specs[1];
    assert_eq!(
        driver["endpointSelector"]["matchLabels"],
        json!({"sparkward.io/job-id": job, "spark-role": "driver"})
    );
    assert_eq!(
        driver["egress"],
        json!([{"toEntities": ["kube-apiserver"]}])
    );
    // The stand-in validated it against the real CRD schema on apply (it answers 422 otherwise).
    let apply = e
        .api
        .requests()
        .into_iter()
        .find(|r| r.method == Method::PATCH && r.path.contains("ciliumnetworkpolicies"))
        .expect("a server-side apply");
    assert!(
        matches!(apply.status, Some(200 | 201)),
        "{:?}",
        apply.status
    );
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(apply.query("fieldManager").as_deref(), Some("sparkward"));
    assert_eq!(apply.query("force").as_deref(), Some("true"));
    assert!(
        apply.answered <= answered_at,
        "the answer came before the policy was stored"
    );
    assert!(FakeApiServer::schema_validation() || support::upstream::upstream_dir().is_none());
}

#[tokio::test]
async fn a_token_without_the_kafka_scope_gets_no_kafka_rule() {
    let e = env("").await;
    let postgres_only = e
        .submit(&e.app_review("alice", "data:read:postgres-main"))
        .await;
    assert_eq!(postgres_only["response"]["allowed"], true);
    let both = e.app_review("bob", "data:read:postgres-main stream:kafka-events");
    assert_eq!(e.submit(&both).await["response"]["allowed"], true);
    let cnps = e.cnps();
    assert_eq!(cnps.len(), 2);
    for cnp in cnps {
        let text = egress_text(&cnp);
        let user = cnp["metadata"]["labels"]["sparkward.io/user"]
            .as_str()
            .unwrap()
            .to_string();
        match user.as_str() {
            "alice" => assert!(!text.contains("kafka") && !text.contains("9092"), "{text}"),
            "bob" => assert!(text.contains("kafka") && text.contains("9092"), "{text}"),
            other => panic!("unexpected user {other}"),
        }
    }
}

#[tokio::test]
async fn an_unknown_scope_is_left_out_with_a_warning_or_denied_by_config() {
    let e = env("").await;
    let answer = e
        .submit(&e.app_review("alice", "data:read:postgres-main billing:admin"))
        .await;
    assert_eq!(answer["response"]["allowed"], true);
    let warnings = answer["response"]["warnings"].to_string();
    assert!(warnings.contains("billing:admin"), "{answer}");
    assert_eq!(e.cnps().len(), 1);
    assert!(!egress_text(&e.cnps()[0]).contains("billing"));

    let deny_cfg = format!(
        "{}policy:\n  unknownScopes: deny\n{}",
        e.idp.identity_yaml(),
        support::scenario::SCOPES_YAML
    );
    let api = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = Sparkward::start(Options {
        config: Some(deny_cfg),
        kubeconfig: Some(api.write_kubeconfig(dir.path())),
        ..Options::default()
    })
    .await;
    let token = e
        .idp
        .token("alice", "data:read:postgres-main billing:admin");
    let review = Review::spark_app(mk_spark_app("pi", "spark-jobs", &token)).user("oidc:alice");
    let (_, answer) = s
        .client(HttpVersion::Http1)
        .review("/mutate", &review.build())
        .await;
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("billing:admin") && message.contains("security team"),
        "{message}"
    );
    assert!(api.list(CNP, Some("spark-jobs")).is_empty());
}

#[tokio::test]
async fn a_dry_run_creates_nothing() {
    let e = env("").await;
    let answer = e
        .submit(&e.app_review("alice", "data:read:postgres-main").dry_run())
        .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert!(
        answer["response"]["patch"].is_string(),
        "a dry run gets the same answer"
    );
    assert!(e.cnps().is_empty());
    // The lifecycle controller's Lease traffic is not a side effect of the review.
    assert!(
        !e.api
            .requests()
            .iter()
            .filter(|r| !r.path.contains("/leases"))
            .any(|r| r.method == Method::PATCH || r.method == Method::POST)
    );
}

#[tokio::test]
async fn an_api_error_denies_the_job_and_leaves_nothing_behind() {
    let e = env("").await;
    e.api.inject(
        Fault::status(500)
            .method(Method::PATCH)
            .path("ciliumnetworkpolicies")
            .times(100),
    );
    let answer = e
        .submit(&e.app_review("alice", "data:read:postgres-main"))
        .await;
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("could not") && message.contains("retrying"),
        "{message}"
    );
    assert!(e.cnps().is_empty());
    // Retries were bounded.
    let attempts = e
        .api
        .requests()
        .iter()
        .filter(|r| r.method == Method::PATCH)
        .count();
    assert!((2..=10).contains(&attempts), "{attempts} attempts");
    // A transient error is retried and the job admitted.
    e.api.clear_faults();
    e.api.inject(
        Fault::status(503)
            .method(Method::PATCH)
            .path("ciliumnetworkpolicies")
            .times(1),
    );
    let answer = e
        .submit(&e.app_review("alice", "data:read:postgres-main"))
        .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(e.cnps().len(), 1);
}

#[tokio::test]
async fn a_slow_api_beyond_the_apply_timeout_denies_the_job() {
    let e = env("  applyTimeout: 1s\n").await;
    e.api.inject(
        Fault::delay(Duration::from_secs(3))
            .method(Method::PATCH)
            .path("ciliumnetworkpolicies")
            .times(10),
    );
    let started = Instant::now();
    let answer = e
        .submit(&e.app_review("alice", "data:read:postgres-main"))
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("1s") || message.contains("timed out") || message.contains("time"),
        "{message}"
    );
}

#[tokio::test]
async fn a_repeated_review_of_the_same_request_keeps_one_policy() {
    let e = env("").await;
    let review = e.app_review("alice", "data:read:postgres-main");
    assert_eq!(e.submit(&review).await["response"]["allowed"], true);
    let first = e.cnps();
    // The API server may call again with the same request (a retry after a timeout).
    assert_eq!(e.submit(&review).await["response"]["allowed"], true);
    let second = e.cnps();
    assert_eq!(second.len(), 1);
    assert_eq!(first[0]["metadata"]["uid"], second[0]["metadata"]["uid"]);
    assert_eq!(first[0]["specs"], second[0]["specs"]);
}

#[tokio::test]
async fn an_invalid_scope_rule_in_a_new_config_is_rejected_and_the_old_one_kept() {
    let e = env("").await;
    let good = std::fs::read_to_string(&e.s.config_path).unwrap();
    // A port written as a number: the CRD schema says string; the agent would reject it.
    let bad = good.replace("port: \"5432\"", "port: 5432");
    assert_ne!(good, bad);
    std::fs::write(&e.s.config_path, bad).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = e.s.probe("/metrics").await.unwrap();
        if metrics.contains("sparkward_config_reloads_total{outcome=\"failure\"} 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bad config not noticed:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(e.s.stderr_text().contains("new config rejected"));
    // The old mapping still serves.
    let answer = e
        .submit(&e.app_review("alice", "data:read:postgres-main"))
        .await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(egress_text(&e.cnps()[0]).contains("5432"));
}

#[tokio::test]
async fn a_configured_but_unreachable_cluster_keeps_readiness_off_and_denies() {
    // A kubeconfig that points at a port nobody listens on: configured, not reachable. This must
    // never fall back to local mode (that would admit jobs without policies).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n"
        ),
    )
    .unwrap();
    let idp = Idp::start().await;
    let s = Sparkward::start(Options {
        config: Some(idp.config("")),
        kubeconfig: Some(kubeconfig),
        no_wait_ready: true,
        ..Options::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, body) = s.probe("/readyz").await.unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("not reachable"), "{body}");
    assert!(
        !s.stderr_text().contains("local mode"),
        "fell back to local mode"
    );
    let token = idp.token("alice", "data:read:postgres-main");
    let review = Review::spark_app(mk_spark_app("pi", "spark-jobs", &token)).user("oidc:alice");
    let (status, answer) = s
        .client(HttpVersion::Http1)
        .review("/mutate", &review.build())
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("not reachable"), "{message}");
    // Even reviews that would need no lookup are denied: no decisions without the cluster.
    let cnp = Review::cnp(
        json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "x", "namespace": "spark-jobs"}, "specs": [{"endpointSelector": {}}]}),
    );
    let (_, answer) = s
        .client(HttpVersion::Http1)
        .review("/validate", &cnp.build())
        .await;
    assert_eq!(answer["response"]["allowed"], false);
}

#[tokio::test]
async fn a_valid_new_config_takes_effect_without_a_restart() {
    let e = env("").await;
    let before = e.submit(&e.app_review("alice", "billing:read")).await;
    assert!(
        before["response"]["warnings"]
            .to_string()
            .contains("billing:read")
    );
    // The security team maps a new scope.
    let text = std::fs::read_to_string(&e.s.config_path).unwrap();
    let mapped = text.replace(
        "  scopes:\n",
        "  scopes:\n    billing:read:\n      - toCIDRSet: [{ cidr: 10.20.0.0/16 }]\n        toPorts: [{ ports: [{ port: \"8443\", protocol: TCP }] }]\n",
    );
    std::fs::write(&e.s.config_path, mapped).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = e.s.probe("/metrics").await.unwrap();
        if metrics.contains("sparkward_config_reloads_total{outcome=\"success\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "config not reloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let review = e.app_review("alice", "billing:read");
    let after = e.submit(&review).await;
    assert_eq!(after["response"]["allowed"], true);
    assert!(after["response"].get("warnings").is_none(), "{after}");
    let cnp = e
        .api
        .get(
            CNP,
            "spark-jobs",
            &format!("sparkward-{}", answered_job(&after)),
        )
        .unwrap();
    assert!(egress_text(&cnp).contains("10.20.0.0/16"));
}
