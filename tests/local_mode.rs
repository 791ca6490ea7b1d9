//! Local mode's main job, as the README's first example runs it: `sparkward serve --local`
//! trusts its development identity provider, `sparkward token` signs a token for it, and the
//! example reviews in examples/local/ are admitted with a patch, an audit line and the job's
//! CiliumNetworkPolicy file. The commands here are the README's, on the built binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::reviews::patch_of;
use support::webhook::{HttpVersion, Options, Sparkward};

fn project(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `sparkward token ...` with the server's development directory and config.
fn token(s: &Sparkward, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sparkward"))
        .arg("token")
        .args(args)
        .arg("--dev-cert-dir")
        .arg(s.dir.path().join("dev-certs"))
        .arg("--config")
        .arg(&s.config_path)
        .output()
        .unwrap()
}

async fn start() -> Sparkward {
    Sparkward::start(Options {
        dev_certs: true,
        ..Options::default()
    })
    .await
}

/// The example review with `$TOKEN` replaced, as the README's `sed` does.
fn example(name: &str, token: &str) -> Value {
    let text = std::fs::read_to_string(project(&format!("examples/local/{name}"))).unwrap();
    serde_json::from_str(&text.replace("$TOKEN", token)).unwrap()
}

async fn admit(s: &Sparkward, review: &Value) -> (Value, String) {
    let (status, answer) = s.client(HttpVersion::Http1).review("/mutate", review).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let mut object = review["request"]["object"].clone();
    let ops: json_patch::Patch = serde_json::from_value(Value::Array(patch_of(&answer))).unwrap();
    json_patch::patch(&mut object, &ops).unwrap();
    let job = support::reviews::job_of(&object);
    (object, job)
}

#[tokio::test]
async fn the_readme_example_admits_a_spark_application_end_to_end_in_local_mode() {
    let s = start().await;
    let out = token(
        &s,
        &["--sub", "alice", "--scope", "data:read:postgres-main"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");

    let (app, job) = admit(&s, &example("sparkapplication-review.json", &token)).await;
    // The patch: identity, no token, hardening.
    let ann = &app["metadata"]["annotations"];
    assert_eq!(ann["sparkward.io/submitter"], "alice");
    assert_eq!(ann["sparkward.io/issuer"], sparkward::devidp::DEV_ISSUER);
    assert!(ann.get("sparkward.io/submitter-token").is_none());
    assert!(!app.to_string().contains(&token));
    assert_eq!(
        app["spec"]["driver"]["securityContext"]["runAsNonRoot"],
        true
    );
    // The audit line (written as the answer goes out; the test reads sparkward's stdout).
    let line = s.audit_line(|l| l["jobId"] == job.as_str()).await;
    assert_eq!(line["allowed"], true);
    assert_eq!(line["identitySource"], "token");
    assert_eq!(line["subject"], "alice");
    // The job's policy, written before the answer.
    let file = s
        .dir
        .path()
        .join(format!("policies/spark-jobs/sparkward-{job}.yaml"));
    let policy = std::fs::read_to_string(&file).unwrap();
    assert!(policy.contains(&job), "{policy}");
}

#[tokio::test]
async fn the_readme_example_admits_a_spark_submit_driver_pod_as_its_own_job() {
    let s = start().await;
    let out = token(&s, &["--sub", "alice", "--scope", "stream:kafka-events"]);
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (pod, job) = admit(&s, &example("driver-pod-review.json", &token)).await;
    assert_eq!(pod["metadata"]["labels"]["sparkward.io/role"], "driver");
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 185);
    assert!(
        s.dir
            .path()
            .join(format!("policies/spark-jobs/sparkward-{job}.yaml"))
            .exists()
    );
    // A token for someone else than the requester in the review is refused.
    let bob = token_for(&s, "bob");
    let (_, answer) = s
        .client(HttpVersion::Http1)
        .review("/mutate", &example("driver-pod-review.json", &bob))
        .await;
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
}

fn token_for(s: &Sparkward, sub: &str) -> String {
    String::from_utf8(token(s, &["--sub", sub]).stdout)
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn sparkward_token_refuses_to_sign_for_a_configured_identity_provider() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "identity:\n  issuer: https://idp.example.com/realms/data\n  audiences: [sparkward]\n  jwks: { file: /nonexistent }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sparkward"))
        .args(["token", "--sub", "alice", "--config"])
        .arg(&config)
        .arg("--dev-cert-dir")
        .arg(dir.path().join("dev"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("https://idp.example.com/realms/data") && err.contains("get a token from it"),
        "{err}"
    );
    assert!(!dir.path().join("dev").exists(), "no development key made");
}

#[test]
fn the_readme_opens_with_these_commands() {
    let readme = std::fs::read_to_string(project("README.md")).unwrap();
    for needle in [
        "cargo run --release -- serve --local",
        "token --sub alice --scope data:read:postgres-main",
        "examples/local/sparkapplication-review.json",
        "examples/local/driver-pod-review.json",
        "local-policies/spark-jobs/",
    ] {
        assert!(readme.contains(needle), "README lost: {needle}");
    }
}
