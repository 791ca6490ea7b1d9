//! Audit and metrics after real reviews over TLS: one audit line per decision with the fields
//! the security team needs (and never the token), Prometheus metrics that count what happened,
//! and alert rules and a dashboard that only use metrics sparkward really exports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::reviews::Review;
use support::scenario::{Idp, mk_spark_app};
use support::webhook::{HttpVersion, Options, Sparkward};

/// Value of the sample `name{labels}` in a Prometheus text exposition (labels in any order).
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            return None;
        }
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

/// Metric family names a text exposition declares (`# TYPE name ...`).
fn families(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `sparkward_*` metric names used in an expression, mapped to their family names.
fn used_families(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("sparkward_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.push(family.to_string());
        rest = &tail[end..];
    }
    out
}

struct Run {
    s: Sparkward,
    tokens: Vec<String>,
    allowed_uid: String,
    allowed_job: String,
}

async fn run_reviews(config_extra: &str) -> Run {
    let idp = Idp::start().await;
    let s = Sparkward::start(Options {
        config: Some(idp.config(config_extra)),
        ..Options::default()
    })
    .await;
    let client = s.client(HttpVersion::Http1);
    let good = idp.token("alice", "data:read:postgres-main");
    let expired = {
        let mut c = Idp::claims("alice", "x");
        c["exp"] = json!(support::scenario::now() - 600);
        idp.keys[2].token(&c)
    };
    // 1. allowed mutation of a SparkApplication (token verified, policy applied)
    let allowed = Review::spark_app(mk_spark_app("pi", "spark-jobs", &good)).user("oidc:alice");
    let answer = client.review("/mutate", &allowed.build()).await.1;
    assert_eq!(answer["response"]["allowed"], true);
    let allowed_job = support::reviews::answered_job(&answer);
    // 2. denied mutation: expired token
    let denied = Review::spark_app(mk_spark_app("pi", "spark-jobs", &expired)).user("oidc:alice");
    assert_eq!(
        client.review("/mutate", &denied.build()).await.1["response"]["allowed"],
        false
    );
    // 3. denied mutation: a pod with no token
    let pod = Review::pod(support::reviews::mk_pod("p", "spark-jobs")).user("oidc:bob");
    assert_eq!(
        client.review("/mutate", &pod.build()).await.1["response"]["allowed"],
        false
    );
    // 4. allowed validation of an unmanaged CiliumNetworkPolicy written by a policy manager
    let cnp = Review::cnp(
        json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "x", "namespace": "spark-jobs"}, "specs": [{"endpointSelector": {}}]}),
    )
    .user("system:serviceaccount:kube-system:namespace-controller");
    assert_eq!(
        client.review("/validate", &cnp.build()).await.1["response"]["allowed"],
        true
    );
    // 5. not a review at all: a 400, not a decision
    let (status, _, _) = client
        .send(
            http::Method::POST,
            "/mutate",
            Some("application/json"),
            b"{}".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Run {
        s,
        tokens: vec![good, expired],
        allowed_uid: allowed.uid,
        allowed_job,
    }
}

fn check_audit(lines: &[Value], run: &Run) {
    assert_eq!(lines.len(), 4, "one line per decision: {lines:#?}");
    for line in lines {
        for field in [
            "time",
            "uid",
            "operation",
            "kind",
            "namespace",
            "name",
            "requester",
            "subject",
            "issuer",
            "jti",
            "scopes",
            "jobId",
            "policy",
            "allowed",
            "reason",
            "latencyMs",
        ] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        assert!(line["latencyMs"].as_f64().unwrap() >= 0.0);
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
        let text = line.to_string();
        for token in &run.tokens {
            assert!(
                !text.contains(token.rsplit('.').next().unwrap()),
                "token in audit: {text}"
            );
        }
    }
    let allowed = lines.iter().find(|l| l["uid"] == run.allowed_uid).unwrap();
    let job = run.allowed_job.clone();
    assert_eq!(allowed["allowed"], true);
    assert_eq!(allowed["reason"], "ok");
    assert_eq!(allowed["operation"], "CREATE");
    assert_eq!(allowed["kind"], "SparkApplication");
    assert_eq!(allowed["namespace"], "spark-jobs");
    assert_eq!(allowed["name"], "pi");
    assert_eq!(allowed["requester"], "oidc:alice");
    assert_eq!(allowed["subject"], "alice");
    assert_eq!(allowed["issuer"], support::scenario::ISSUER);
    assert!(allowed["jti"].as_str().unwrap().starts_with("jti-alice-"));
    assert_eq!(allowed["scopes"], json!(["data:read:postgres-main"]));
    assert_eq!(allowed["jobId"], job);
    assert_eq!(allowed["policy"], format!("sparkward-{job}"));
    let reasons: Vec<&str> = lines
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"expired"), "{reasons:?}");
    assert!(reasons.contains(&"missing_token"), "{reasons:?}");
    let expired = lines.iter().find(|l| l["reason"] == "expired").unwrap();
    assert_eq!(expired["allowed"], false);
    assert!(expired["message"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn every_decision_writes_one_audit_line_without_the_token() {
    let run = run_reviews("").await;
    check_audit(&run.s.audit_lines(), &run);
}

#[tokio::test]
async fn the_audit_stream_can_go_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let run = run_reviews(&format!("audit:\n  output: {}\n", path.display())).await;
    assert!(
        run.s.audit_lines().is_empty(),
        "audit lines went to stdout too"
    );
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    check_audit(&lines, &run);
}

#[tokio::test]
async fn metrics_count_reviews_latencies_keys_and_certificates() {
    let run = run_reviews("").await;
    let (code, m) = run.s.probe("/metrics").await.unwrap();
    assert_eq!(code, 200);
    let count =
        |labels: &[(&str, &str)]| sample(&m, "sparkward_reviews_total", labels).unwrap_or(0.0);
    assert_eq!(
        count(&[
            ("webhook", "mutate"),
            ("kind", "SparkApplication"),
            ("operation", "CREATE"),
            ("decision", "allowed"),
            ("reason", "ok")
        ]),
        1.0,
        "{m}"
    );
    assert_eq!(
        count(&[
            ("webhook", "mutate"),
            ("kind", "SparkApplication"),
            ("decision", "denied"),
            ("reason", "expired")
        ]),
        1.0
    );
    assert_eq!(
        count(&[
            ("webhook", "mutate"),
            ("kind", "Pod"),
            ("decision", "denied"),
            ("reason", "missing_token")
        ]),
        1.0
    );
    assert_eq!(
        count(&[
            ("webhook", "validate"),
            ("kind", "CiliumNetworkPolicy"),
            ("decision", "allowed")
        ]),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "sparkward_http_rejected_total",
            &[("reason", "bad_request")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "sparkward_review_duration_seconds_count",
            &[("webhook", "mutate"), ("kind", "SparkApplication")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "sparkward_token_verification_duration_seconds_count",
            &[]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "sparkward_policy_apply_duration_seconds_count",
            &[("outcome", "success")]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&m, "sparkward_reviews_in_flight", &[]), Some(0.0));
    assert!(
        sample(
            &m,
            "sparkward_jwks_refreshes_total",
            &[("outcome", "success")]
        )
        .unwrap()
            >= 1.0
    );
    let age = sample(&m, "sparkward_jwks_age_seconds", &[]).unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    let expiry = sample(
        &m,
        "sparkward_tls_certificate_expiry_timestamp_seconds",
        &[],
    )
    .unwrap();
    let now = support::scenario::now() as f64;
    assert!(expiry > now && expiry < now + 3.0 * 86400.0, "{expiry}");
    // Histogram buckets are in seconds and cumulative.
    assert!(m.contains("sparkward_review_duration_seconds_bucket{"));
}

fn monitoring(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/monitoring")
        .join(file)
}

#[tokio::test]
async fn alert_rules_and_the_dashboard_use_only_exported_metrics() {
    // The families sparkward exports (lifecycle counters appear once used; declare them all by
    // running the reviews above and reading TYPE lines).
    let run = run_reviews("").await;
    let (_, m) = run.s.probe("/metrics").await.unwrap();
    let exported = families(&m);

    let rules: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(monitoring("prometheus-rules.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(rules["kind"], "PrometheusRule");
    let mut alerts = BTreeSet::new();
    for group in rules["spec"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            alerts.insert(name.to_string());
            let expr = rule["expr"].as_str().unwrap();
            assert!(!expr.trim().is_empty(), "{name}");
            assert!(rule["labels"]["severity"].is_string(), "{name}");
            assert!(rule["annotations"]["summary"].is_string(), "{name}");
            for family in used_families(expr) {
                assert!(
                    exported.contains(&family),
                    "{name} uses {family}, which sparkward does not export"
                );
            }
        }
    }
    for expected in [
        "SparkwardDown",
        "SparkwardInternalDenials",
        "SparkwardSlowReviews",
        "SparkwardJwksStale",
        "SparkwardCertificateExpiresSoon",
    ] {
        assert!(alerts.contains(expected), "missing alert {expected}");
    }
    let expiry_rule = rules["spec"]["groups"].to_string();
    assert!(expiry_rule.contains("sparkward_tls_certificate_expiry_timestamp_seconds"));
    assert!(expiry_rule.contains("sparkward_review_duration_seconds_bucket"));

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            for family in used_families(target["expr"].as_str().unwrap()) {
                assert!(
                    exported.contains(&family),
                    "panel {} uses {family}",
                    panel["title"]
                );
            }
        }
    }
}
