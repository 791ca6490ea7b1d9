//! `kubectl sparkward`: the same binary, installed (or linked) as `kubectl-sparkward`, as a
//! kubectl plugin that makes submission transparent. It gets a fresh token from the user's
//! configured source, adds it to the objects that need one, and hands them to kubectl on its
//! standard input; for spark-submit it prints (or passes) the `--conf` that carries it.
//!
//! The token never lands in a file or in shell history: it travels from the token command's
//! output to kubectl's stdin (or spark-submit's arguments), and sparkward's webhook removes it
//! before anything is stored.
//!
//! Token sources, in order: `--token-command CMD` / `SPARKWARD_TOKEN_COMMAND` (a shell command
//! printing a JWT, or a client.authentication.k8s.io ExecCredential as kubelogin's `get-token`
//! does), then `SPARKWARD_TOKEN`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::core::labels::TOKEN_ANNOTATION;

/// The executable name kubectl runs for `kubectl sparkward`.
pub const PLUGIN_NAME: &str = "kubectl-sparkward";

/// Kinds that need a submitter token when created.
const TOKEN_KINDS: &[(&str, &str)] = &[
    ("sparkoperator.k8s.io/", "SparkApplication"),
    ("sparkoperator.k8s.io/", "ScheduledSparkApplication"),
    ("v1", "Pod"),
];

const USAGE: &str = "\
kubectl sparkward: submit Spark jobs with your identity token, transparently

Usage:
  kubectl sparkward apply -f FILE [kubectl apply flags...]
  kubectl sparkward create -f FILE [kubectl create flags...]
  kubectl sparkward spark-submit-conf          print the --conf that carries your token
  kubectl sparkward spark-submit [ARGS...]     run spark-submit with that --conf added

FILE may be - (stdin). SparkApplications, ScheduledSparkApplications and Pods get your token
in the sparkward.io/submitter-token annotation; everything else is passed through unchanged.

Token source (first that is set):
  --token-command CMD, or SPARKWARD_TOKEN_COMMAND   a command printing a token, or an
      ExecCredential (e.g. \"kubectl oidc-login get-token --oidc-issuer-url=... --oidc-client-id=...\")
  SPARKWARD_TOKEN                                   the token itself
Other settings: SPARKWARD_KUBECTL (default kubectl), SPARKWARD_SPARK_SUBMIT (default
spark-submit), --annotation NAME (default sparkward.io/submitter-token).
";

/// Whether this process was started as the kubectl plugin.
pub fn invoked_as_plugin(argv0: &str) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == PLUGIN_NAME || n.starts_with("kubectl-sparkward."))
}

struct Settings {
    token_command: Option<String>,
    annotation: String,
}

/// Runs the plugin with its arguments (without argv[0]).
pub fn main(args: Vec<String>) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubectl sparkward: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut args: Vec<String>) -> anyhow::Result<ExitCode> {
    let mut settings = Settings {
        token_command: std::env::var("SPARKWARD_TOKEN_COMMAND")
            .ok()
            .filter(|c| !c.trim().is_empty()),
        annotation: TOKEN_ANNOTATION.to_string(),
    };
    // Plugin options come before the verb.
    while let Some(first) = args.first().cloned() {
        let (flag, inline) = match first.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (first.clone(), None),
        };
        let take = |args: &mut Vec<String>| -> anyhow::Result<String> {
            args.remove(0);
            match inline.clone() {
                Some(v) => Ok(v),
                None if !args.is_empty() => Ok(args.remove(0)),
                None => bail!("{flag} needs a value"),
            }
        };
        match flag.as_str() {
            "--token-command" => settings.token_command = Some(take(&mut args)?),
            "--annotation" => settings.annotation = take(&mut args)?,
            "-h" | "--help" | "help" => {
                print!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            _ => break,
        }
    }
    let Some(verb) = args.first().cloned() else {
        eprint!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    let rest = args[1..].to_vec();
    match verb.as_str() {
        "apply" | "create" => submit(&settings, &verb, rest),
        "spark-submit-conf" => {
            let token = obtain_token(&settings)?;
            println!("--conf {}", spark_conf(&settings.annotation, &token));
            Ok(ExitCode::SUCCESS)
        }
        "spark-submit" => {
            let token = obtain_token(&settings)?;
            let program =
                std::env::var("SPARKWARD_SPARK_SUBMIT").unwrap_or_else(|_| "spark-submit".into());
            let status = Command::new(&program)
                .arg("--conf")
                .arg(spark_conf(&settings.annotation, &token))
                .args(&rest)
                .status()
                .with_context(|| format!("could not run {program} (set SPARKWARD_SPARK_SUBMIT)"))?;
            Ok(exit_code(status.code()))
        }
        other => bail!("unknown command '{other}'\n\n{USAGE}"),
    }
}

fn exit_code(code: Option<i32>) -> ExitCode {
    ExitCode::from(code.and_then(|c| u8::try_from(c).ok()).unwrap_or(1))
}

/// The spark-submit property that puts the token on the driver pod.
fn spark_conf(annotation: &str, token: &str) -> String {
    format!("spark.kubernetes.driver.annotation.{annotation}={token}")
}

/// `apply`/`create`: reads `-f FILE`, adds the token to the objects that need it, and runs
/// `kubectl VERB -f - <the other flags>` with them on stdin.
fn submit(settings: &Settings, verb: &str, rest: Vec<String>) -> anyhow::Result<ExitCode> {
    let mut file = None;
    let mut passthrough = Vec::new();
    let mut it = rest.into_iter();
    while let Some(arg) = it.next() {
        if arg == "-f" || arg == "--filename" {
            file = Some(it.next().context("-f needs a file name (or - for stdin)")?);
        } else if let Some(v) = arg
            .strip_prefix("--filename=")
            .or_else(|| arg.strip_prefix("-f="))
        {
            file = Some(v.to_string());
        } else {
            passthrough.push(arg);
        }
    }
    let file = file.context("give the manifest with -f FILE (or -f - for stdin)")?;
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("failed to read the manifest from stdin")?;
        s
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("failed to read {file}"))?
    };
    let mut docs = parse_manifests(&text).with_context(|| format!("{file} is not a manifest"))?;
    let needing = docs.iter().filter(|d| needs_token(d)).count();
    if needing > 0 {
        let token = obtain_token(settings)?;
        for doc in docs.iter_mut().filter(|d| needs_token(d)) {
            annotate(doc, &settings.annotation, &token);
        }
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    let kubectl = std::env::var("SPARKWARD_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let mut child = Command::new(&kubectl)
        .arg(verb)
        .arg("-f")
        .arg("-")
        .args(&passthrough)
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run {kubectl} (set SPARKWARD_KUBECTL)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(list.to_string().as_bytes())
            .context("failed to hand the manifest to kubectl")?;
    }
    let status = child.wait().context("kubectl did not finish")?;
    Ok(exit_code(status.code()))
}

/// Every document of a YAML or JSON manifest, `List`s flattened.
fn parse_manifests(text: &str) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(v) => vec![v],
        Err(_) => serde_saphyr::from_slice_multiple::<Value>(text.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let mut out = Vec::new();
    for doc in docs {
        match doc {
            Value::Null => {}
            Value::Object(ref m)
                if m.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List")) =>
            {
                if let Some(Value::Array(items)) = m.get("items") {
                    out.extend(items.iter().cloned());
                }
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        bail!("no objects in it");
    }
    Ok(out)
}

fn needs_token(doc: &Value) -> bool {
    let api = doc["apiVersion"].as_str().unwrap_or("");
    let kind = doc["kind"].as_str().unwrap_or("");
    TOKEN_KINDS
        .iter()
        .any(|(group, k)| *k == kind && (api == *group || api.starts_with(group)))
}

fn annotate(doc: &mut Value, annotation: &str, token: &str) {
    if !doc["metadata"].is_object() {
        doc["metadata"] = json!({});
    }
    if !doc["metadata"]["annotations"].is_object() {
        doc["metadata"]["annotations"] = json!({});
    }
    doc["metadata"]["annotations"][annotation] = json!(token);
}

/// A fresh token from the configured source, checked for shape and expiry (so an expired
/// login is reported here, with what to do, rather than as a webhook denial).
fn obtain_token(settings: &Settings) -> anyhow::Result<String> {
    let token = match &settings.token_command {
        Some(cmd) => run_token_command(cmd)?,
        None => std::env::var("SPARKWARD_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .context(
                "no token source: set SPARKWARD_TOKEN_COMMAND to the command that prints your \
                 identity provider's access token (for example the kubelogin get-token command \
                 of your kubeconfig), or SPARKWARD_TOKEN",
            )?,
    };
    check_expiry(&token, now())?;
    Ok(token)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn run_token_command(cmd: &str) -> anyhow::Result<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not run the token command '{cmd}'"))?;
    if !out.status.success() {
        bail!(
            "the token command failed ({}): log in again with your identity provider (or fix \
             SPARKWARD_TOKEN_COMMAND)",
            out.status
        );
    }
    token_from_output(&String::from_utf8_lossy(&out.stdout))
}

/// A token command's output: a bare token, or an ExecCredential whose `status.token` is it.
fn token_from_output(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if text.starts_with('{') {
        let v: Value =
            serde_json::from_str(text).context("the token command printed broken JSON")?;
        return v["status"]["token"]
            .as_str()
            .map(str::to_string)
            .filter(|t| !t.is_empty())
            .context(
                "the token command printed JSON without status.token (not an ExecCredential)",
            );
    }
    if text.is_empty() {
        bail!("the token command printed nothing: log in again with your identity provider");
    }
    Ok(text.to_string())
}

/// Refuses tokens that are not JWTs or whose `exp` has passed (no signature check: the webhook
/// verifies; this only saves a round trip and gives a better message).
fn check_expiry(token: &str, now: u64) -> anyhow::Result<()> {
    let mut parts = token.split('.');
    let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(p), Some(_), None) => p,
        _ => bail!("the token source did not give a JWT (three dot-separated parts)"),
    };
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .context("the token's payload is not JSON")?;
    if let Some(exp) = claims["exp"].as_u64()
        && exp <= now
    {
        bail!(
            "your login expired {} s ago: log in again with your identity provider (e.g. run the \
             kubelogin command of your kubeconfig), then retry",
            now - exp
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: Value) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn recognises_its_plugin_name() {
        assert!(invoked_as_plugin("/usr/local/bin/kubectl-sparkward"));
        assert!(invoked_as_plugin("kubectl-sparkward"));
        assert!(!invoked_as_plugin("/usr/bin/sparkward"));
    }

    #[test]
    fn reads_bare_tokens_and_exec_credentials() {
        assert_eq!(token_from_output("abc.def.ghi\n").unwrap(), "abc.def.ghi");
        let cred = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"token":"a.b.c","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#;
        assert_eq!(token_from_output(cred).unwrap(), "a.b.c");
        assert!(token_from_output("").is_err());
        assert!(token_from_output(r#"{"status":{}}"#).is_err());
    }

    #[test]
    fn expired_and_malformed_tokens_are_refused_with_what_to_do() {
        assert!(check_expiry(&jwt(json!({"exp": 2000})), 1000).is_ok());
        let e = check_expiry(&jwt(json!({"exp": 1000})), 1300)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expired 300 s ago") && e.contains("log in again"),
            "{e}"
        );
        assert!(check_expiry("not-a-jwt", 0).is_err());
    }

    #[test]
    fn only_objects_that_need_a_token_get_one() {
        let docs = parse_manifests(
            "apiVersion: sparkoperator.k8s.io/v1beta2\nkind: SparkApplication\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {keep: me}}\n",
        )
        .unwrap();
        let flags: Vec<bool> = docs.iter().map(needs_token).collect();
        assert_eq!(flags, vec![true, false, true]);
        let mut pod = docs[2].clone();
        annotate(&mut pod, TOKEN_ANNOTATION, "t.o.k");
        assert_eq!(pod["metadata"]["annotations"][TOKEN_ANNOTATION], "t.o.k");
        assert_eq!(pod["metadata"]["annotations"]["keep"], "me");
    }
}
