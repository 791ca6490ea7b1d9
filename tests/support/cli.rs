//! Running the offline `sparkward review` command the way a user would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::idp::keys::{TestKey, jwks};
use super::scenario::{AUDIENCE, ISSUER, SCOPES_YAML};

/// A file-based identity provider and a config for offline reviews.
pub struct OfflineSetup {
    pub dir: tempfile::TempDir,
    pub key: TestKey,
    pub config: PathBuf,
}

impl OfflineSetup {
    /// `extra` is appended to the config (e.g. a `hardening:` section).
    pub fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = TestKey::rsa("offline-1");
        let jwks_path = dir.path().join("jwks.json");
        std::fs::write(&jwks_path, jwks(&[&key])).expect("jwks");
        let config = dir.path().join("config.yaml");
        let text = format!(
            "identity:\n  issuer: {ISSUER}\n  audiences: [{AUDIENCE}]\n  jwks: {{ file: \"{}\" }}\n  requesterBinding: {{ enabled: true, usernamePrefix: \"oidc:\" }}\n  trustedCreators:\n    sparkOperator: [\"{}\"]\npolicy:\n  unknownScopes: ignore\n{SCOPES_YAML}{extra}",
            jwks_path.display(),
            super::scenario::OPERATOR,
        );
        std::fs::write(&config, text).expect("config");
        Self { dir, key, config }
    }

    pub fn token(&self, subject: &str, scopes: &str) -> String {
        self.key
            .token(&super::scenario::Idp::claims(subject, scopes))
    }

    /// Writes `objects` as a cluster-state file (a JSON array) and returns its path.
    pub fn cluster_state(&self, objects: &[Value]) -> PathBuf {
        let path = self.dir.path().join("state.json");
        std::fs::write(&path, serde_json::to_vec(objects).expect("state")).expect("write");
        path
    }

    /// Runs `sparkward review` on `review` (through stdin).
    pub fn review(&self, review: &Value, state: Option<&Path>, validate: bool) -> ReviewRun {
        run_review(&self.config, review, state, validate)
    }
}

pub struct ReviewRun {
    pub code: Option<i32>,
    pub output: Value,
    pub stderr: String,
}

impl ReviewRun {
    pub fn response(&self) -> &Value {
        &self.output["admissionReview"]["response"]
    }

    pub fn allowed(&self) -> bool {
        self.response()["allowed"] == true
    }

    pub fn message(&self) -> String {
        self.response()["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub fn run_review(
    config: &Path,
    review: &Value,
    state: Option<&Path>,
    validate: bool,
) -> ReviewRun {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sparkward"));
    cmd.arg("review").arg("--config").arg(config);
    if let Some(s) = state {
        cmd.arg("--cluster-state").arg(s);
    }
    if validate {
        cmd.args(["--mode", "validate"]);
    }
    let mut child = cmd
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sparkward review");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&serde_json::to_vec(review).expect("encode"))
        .expect("write review");
    let out = child.wait_with_output().expect("wait");
    ReviewRun {
        code: out.status.code(),
        output: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
