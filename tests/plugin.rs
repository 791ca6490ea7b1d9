//! `kubectl sparkward`: the binary linked as `kubectl-sparkward`, run against a fake `kubectl`
//! and `spark-submit` (scripts that record what they were given) and a fake token command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

struct Bench {
    dir: tempfile::TempDir,
}

fn jwt(exp_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"iss": "https://idp.example.com", "sub": "alice", "exp": now + exp_offset});
    format!(
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.{}.c2lnbmF0dXJlLW9mLXRoZS1pZHA",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl Bench {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_sparkward"),
            dir.path().join("kubectl-sparkward"),
        )
        .unwrap();
        let rec = dir.path().join("rec");
        std::fs::create_dir(&rec).unwrap();
        script(
            &dir.path().join("kubectl"),
            &format!(
                "printf '%s\\n' \"$@\" > {r}/kubectl.args\ncat > {r}/kubectl.stdin",
                r = rec.display()
            ),
        );
        script(
            &dir.path().join("spark-submit"),
            &format!(
                "printf '%s\\n' \"$@\" > {}/spark-submit.args",
                rec.display()
            ),
        );
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A token command printing an ExecCredential, as kubelogin's get-token does.
    fn token_command(&self, token: &str) -> String {
        let p = self.path("get-token");
        script(
            &p,
            &format!(
                "echo '{{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\",\"status\":{{\"token\":\"{token}\"}}}}'"
            ),
        );
        p.display().to_string()
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(self.path("kubectl-sparkward"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env_remove("SPARKWARD_TOKEN")
            .env_remove("SPARKWARD_TOKEN_COMMAND");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn recorded(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path("rec").join(name)).ok()
    }

    /// Files in the bench directory (not the fakes' recordings) that contain `needle`.
    fn files_containing(&self, needle: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let p = entry.unwrap().path();
            // The fake token command holds the token the way an identity provider does.
            let fake_idp = p.file_name().is_some_and(|n| n == "get-token");
            if p.is_file()
                && !fake_idp
                && std::fs::read_to_string(&p).is_ok_and(|t| t.contains(needle))
            {
                out.push(p);
            }
        }
        out
    }
}

const MANIFEST: &str = "\
apiVersion: sparkoperator.k8s.io/v1beta2
kind: SparkApplication
metadata:
  name: orders-etl
  namespace: spark-jobs
spec:
  type: Python
  mainApplicationFile: local:///opt/app.py
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: b
";

#[test]
fn apply_adds_a_fresh_token_and_hands_the_objects_to_kubectl_on_stdin() {
    let b = Bench::new();
    std::fs::write(b.path("app.yaml"), MANIFEST).unwrap();
    let token = jwt(600);
    let cmd = b.token_command(&token);
    let out = b.run(
        &[
            "apply",
            "-f",
            "app.yaml",
            "-n",
            "spark-jobs",
            "--server-side",
        ],
        &[("SPARKWARD_TOKEN_COMMAND", &cmd)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args: Vec<String> = b
        .recorded("kubectl.args")
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        args,
        ["apply", "-f", "-", "-n", "spark-jobs", "--server-side"]
    );
    let list: Value = serde_json::from_str(&b.recorded("kubectl.stdin").unwrap()).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0]["metadata"]["annotations"]["sparkward.io/submitter-token"],
        token.as_str()
    );
    assert_eq!(items[1]["data"]["a"], "b");
    assert!(items[1]["metadata"].get("annotations").is_none());
    // The manifest on disk is untouched, and no file but the fake kubectl's recording of its
    // stdin holds the token.
    assert_eq!(
        std::fs::read_to_string(b.path("app.yaml")).unwrap(),
        MANIFEST
    );
    assert!(b.files_containing(&token).is_empty());
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&token));
}

#[test]
fn create_reads_the_manifest_from_stdin_and_takes_the_token_from_the_environment() {
    let b = Bench::new();
    let token = jwt(600);
    let path = format!(
        "{}:{}",
        b.dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new(b.path("kubectl-sparkward"))
        .args(["create", "-f", "-"])
        .env("PATH", path)
        .env_remove("SPARKWARD_TOKEN_COMMAND")
        .env("SPARKWARD_TOKEN", &token)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"d\"},\"spec\":{\"containers\":[]}}")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let list: Value = serde_json::from_str(&b.recorded("kubectl.stdin").unwrap()).unwrap();
    assert_eq!(
        list["items"][0]["metadata"]["annotations"]["sparkward.io/submitter-token"],
        token.as_str()
    );
}

#[test]
fn spark_submit_gets_the_conf_that_carries_the_token() {
    let b = Bench::new();
    let token = jwt(600);
    let cmd = b.token_command(&token);
    let out = b.run(&["spark-submit-conf"], &[("SPARKWARD_TOKEN_COMMAND", &cmd)]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("--conf spark.kubernetes.driver.annotation.sparkward.io/submitter-token={token}")
    );
    let out = b.run(
        &[
            "spark-submit",
            "--deploy-mode",
            "cluster",
            "local:///app.py",
        ],
        &[("SPARKWARD_TOKEN_COMMAND", &cmd)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args: Vec<String> = b
        .recorded("spark-submit.args")
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        args,
        [
            "--conf".to_string(),
            format!("spark.kubernetes.driver.annotation.sparkward.io/submitter-token={token}"),
            "--deploy-mode".into(),
            "cluster".into(),
            "local:///app.py".into()
        ]
    );
}

#[test]
fn errors_say_what_to_do_and_nothing_is_submitted() {
    let b = Bench::new();
    std::fs::write(b.path("app.yaml"), MANIFEST).unwrap();
    // No token source at all.
    let out = b.run(&["apply", "-f", "app.yaml"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no token source") && err.contains("SPARKWARD_TOKEN_COMMAND"),
        "{err}"
    );
    // An expired login.
    let cmd = b.token_command(&jwt(-120));
    let out = b.run(
        &["apply", "-f", "app.yaml"],
        &[("SPARKWARD_TOKEN_COMMAND", &cmd)],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("login expired") && err.contains("log in again"),
        "{err}"
    );
    // A token command that fails (the user is not logged in).
    let out = b.run(
        &["apply", "-f", "app.yaml"],
        &[(
            "SPARKWARD_TOKEN_COMMAND",
            "echo 'not logged in' >&2; exit 1",
        )],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token command failed"));
    // A missing manifest flag.
    let out = b.run(&["apply"], &[("SPARKWARD_TOKEN", &jwt(600))]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("-f FILE"));
    assert!(b.recorded("kubectl.args").is_none(), "kubectl never ran");
}
