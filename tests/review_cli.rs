//! `sparkward review`: the documented output shape, input from a file or stdin, the three
//! cluster-state formats, and exit codes (0 when decided, non-zero only for unusable input).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};

use serde_json::{Value, json};
use support::cli::OfflineSetup;
use support::reviews::Review;
use support::scenario::mk_spark_app;

fn sparkward(args: &[&str], stdin: Option<&[u8]>) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparkward"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_shape(doc: &Value) {
    let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        vec![
            "admissionReview",
            "ciliumNetworkPolicies",
            "patchedObject",
            "secrets"
        ]
    );
    assert_eq!(doc["admissionReview"]["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(doc["admissionReview"]["kind"], "AdmissionReview");
    assert!(doc["ciliumNetworkPolicies"].is_array());
}

#[test]
fn prints_the_documented_shape_for_a_file_and_for_stdin() {
    let setup = OfflineSetup::new("");
    let review = Review::spark_app(mk_spark_app(
        "pi",
        "spark-jobs",
        &setup.token("alice", "data:read:postgres-main"),
    ))
    .user("oidc:alice")
    .build();
    let file = setup.dir.path().join("review.json");
    std::fs::write(&file, serde_json::to_vec(&review).unwrap()).unwrap();
    let config = setup.config.to_str().unwrap();
    let bytes = serde_json::to_vec(&review).unwrap();
    for (args, stdin) in [
        (
            vec!["review", "--config", config, file.to_str().unwrap()],
            None,
        ),
        (
            vec!["review", "--config", config, "-"],
            Some(bytes.as_slice()),
        ),
        (vec!["review", "--config", config], Some(bytes.as_slice())),
    ] {
        let (code, out, err) = sparkward(&args, stdin);
        assert_eq!(code, Some(0), "{err}");
        let doc: Value = serde_json::from_str(&out).unwrap();
        assert_shape(&doc);
        assert_eq!(
            doc["admissionReview"]["response"]["uid"],
            review["request"]["uid"]
        );
        assert_eq!(doc["admissionReview"]["response"]["allowed"], true);
        assert_eq!(doc["patchedObject"]["kind"], "SparkApplication");
        assert_eq!(doc["ciliumNetworkPolicies"].as_array().unwrap().len(), 1);
    }
}

#[test]
fn a_denial_exits_zero_and_unusable_input_does_not() {
    let setup = OfflineSetup::new("");
    let config = setup.config.to_str().unwrap();
    let denied = Review::spark_app(mk_spark_app("pi", "spark-jobs", "garbage"))
        .user("oidc:alice")
        .build();
    let (code, out, _) = sparkward(
        &["review", "--config", config, "-"],
        Some(&serde_json::to_vec(&denied).unwrap()),
    );
    assert_eq!(code, Some(0));
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_shape(&doc);
    assert_eq!(doc["admissionReview"]["response"]["allowed"], false);
    assert_eq!(doc["patchedObject"], Value::Null);
    assert!(doc["ciliumNetworkPolicies"].as_array().unwrap().is_empty());

    let (code, out, err) = sparkward(
        &["review", "--config", config, "-"],
        Some(b"{\"hello\": 1}"),
    );
    assert_ne!(code, Some(0));
    assert!(out.is_empty());
    assert!(err.contains("not a usable AdmissionReview"), "{err}");
    let (code, _, err) = sparkward(
        &["review", "--config", config, "/nonexistent/review.json"],
        None,
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("/nonexistent/review.json"), "{err}");
}

#[test]
fn a_dry_run_prints_no_policies_and_validate_mode_runs_the_validating_pipeline() {
    let setup = OfflineSetup::new("");
    let config = setup.config.to_str().unwrap();
    let review = Review::spark_app(mk_spark_app("pi", "spark-jobs", &setup.token("alice", "x")))
        .user("oidc:alice")
        .dry_run()
        .build();
    let (code, out, _) = sparkward(
        &["review", "--config", config, "-"],
        Some(&serde_json::to_vec(&review).unwrap()),
    );
    assert_eq!(code, Some(0));
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["admissionReview"]["response"]["allowed"], true);
    assert!(doc["ciliumNetworkPolicies"].as_array().unwrap().is_empty());
    // The validating pipeline refuses the unmutated object (it still carries the token).
    let (code, out, _) = sparkward(
        &["review", "--config", config, "--mode", "validate", "-"],
        Some(&serde_json::to_vec(&review).unwrap()),
    );
    assert_eq!(code, Some(0));
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["admissionReview"]["response"]["allowed"], false);
}

#[test]
fn cluster_state_is_read_as_a_yaml_stream_a_json_array_or_a_list() {
    let setup = OfflineSetup::new("");
    let config = setup.config.to_str().unwrap();
    // An admitted driver pod, and an executor created by its service account.
    let mut driver_pod = support::reviews::mk_pod("drv", "spark-jobs");
    driver_pod["metadata"]["annotations"] =
        json!({"sparkward.io/submitter-token": setup.token("alice", "x")});
    let driver_review = Review::pod(driver_pod).user("oidc:alice");
    let run = setup.review(&driver_review.build(), None, false);
    let mut driver = run.output["patchedObject"].clone();
    driver["metadata"]["uid"] = json!("drv-uid");
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "spark-jobs"}});
    let executor = Review::pod(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "exec-1", "namespace": "spark-jobs", "labels": {"spark-role": "executor"}},
        "spec": {"containers": [{"name": "e", "image": "apache/spark"}]}}))
    .bound_to_pod("spark", "drv", "drv-uid")
    .build();
    let yaml_stream = format!("{}\n---\n{}\n", driver, other);
    let array = serde_json::to_string(&json!([driver, other])).unwrap();
    let list = serde_json::to_string(
        &json!({"apiVersion": "v1", "kind": "List", "items": [driver, other]}),
    )
    .unwrap();
    for (what, text) in [("yaml", yaml_stream), ("array", array), ("list", list)] {
        let state = setup.dir.path().join(format!("state-{what}"));
        std::fs::write(&state, text).unwrap();
        let (code, out, err) = sparkward(
            &[
                "review",
                "--config",
                config,
                "--cluster-state",
                state.to_str().unwrap(),
                "-",
            ],
            Some(&serde_json::to_vec(&executor).unwrap()),
        );
        assert_eq!(code, Some(0), "{what}: {err}");
        let doc: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            doc["admissionReview"]["response"]["allowed"], true,
            "{what}: {doc}"
        );
        assert_eq!(
            doc["patchedObject"]["metadata"]["labels"]["sparkward.io/job-id"],
            driver["metadata"]["labels"]["sparkward.io/job-id"]
        );
    }
    // An unusable state file is an error, not a silent empty state.
    let bad = setup.dir.path().join("bad");
    std::fs::write(&bad, "[{\"kind\": \"Pod\", \"metadata\": {}}]").unwrap();
    let (code, _, err) = sparkward(
        &[
            "review",
            "--config",
            config,
            "--cluster-state",
            bad.to_str().unwrap(),
            "-",
        ],
        Some(b"{}"),
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("no metadata.name"), "{err}");
}

#[test]
fn check_config_accepts_good_files_and_names_the_problem_in_bad_ones() {
    let setup = OfflineSetup::new("");
    let (code, out, _) = sparkward(&["check-config", setup.config.to_str().unwrap()], None);
    assert_eq!(code, Some(0));
    assert!(out.contains("valid"), "{out}");
    let good = setup.dir.path().join("allowed-ids.yaml");
    std::fs::write(
        &good,
        "hardening:\n  allowedIds: [{min: 1000, max: 1999}, {min: 100, max: 100}]\n",
    )
    .unwrap();
    let (code, out, err) = sparkward(&["check-config", good.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("valid"), "{out}");
    let bad = setup.dir.path().join("bad.yaml");
    for (text, expect) in [
        (
            "policy:\n  scopes:\n    x:\n      - toPorts: [{ ports: [{ port: 5432, protocol: TCP }] }]\n        toEntities: [world]\n",
            "port",
        ),
        (
            "policy:\n  scopes:\n    x:\n      - toFQDNs: [{ matchName: a.example.com }]\n        toEntities: [world]\n",
            "toFQDNs",
        ),
        (
            "policy:\n  scopes:\n    x:\n      - toEntities: [internet]\n",
            "internet",
        ),
        (
            "policy:\n  scopes:\n    x:\n      - toEndpoints: [{}]\n        toPorts: [{ ports: [{ port: \"53\", protocol: ICMP }] }]\n",
            "protocol",
        ),
        ("server:\n  reviewDeadlin: 8s\n", "reviewDeadlin"),
        // hardening.allowedIds: root, empty ranges, and a bare id instead of a range.
        (
            "hardening:\n  allowedIds: [{min: 0, max: 99}]\n",
            "hardening.allowedIds[0]: min is 0",
        ),
        (
            "hardening:\n  allowedIds:\n    - {min: 1000, max: 1999}\n    - {min: 9, max: 1}\n",
            "hardening.allowedIds[1]: min 9 is greater than max 1",
        ),
        (
            "hardening:\n  allowedIds: [1000]\n",
            "write a single id as {min: 100, max: 100}",
        ),
    ] {
        std::fs::write(&bad, text).unwrap();
        let (code, _, err) = sparkward(&["check-config", bad.to_str().unwrap()], None);
        assert_ne!(code, Some(0), "{text}");
        assert!(err.contains(expect), "{text}: {err}");
    }
}

#[test]
fn certs_writes_the_secret_file_names_and_prints_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = sparkward(
        &[
            "certs",
            "--out",
            dir.path().to_str().unwrap(),
            "--dns",
            "sparkward.sparkward-system.svc",
            "--dns",
            "localhost",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    for f in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    use base64::Engine;
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(out.trim())
        .unwrap();
    assert_eq!(bundle, std::fs::read(dir.path().join("ca.crt")).unwrap());
    // Every subcommand has --help.
    for sub in ["serve", "review", "certs", "check-config"] {
        let (code, out, _) = sparkward(&[sub, "--help"], None);
        assert_eq!(code, Some(0), "{sub}");
        assert!(out.contains("Usage"), "{sub}: {out}");
    }
}
