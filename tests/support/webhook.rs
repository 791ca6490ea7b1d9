//! Running the real `sparkward` binary for tests, and talking to it the way kube-apiserver does:
//! TLS, HTTP/1.1 keep-alive (and HTTP/2), AdmissionReview JSON.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A CA with a serving certificate for 127.0.0.1/localhost, written into `dir`.
pub struct TestCerts {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TestCerts {
    pub fn generate(dir: &Path) -> Self {
        let names = ["localhost".to_string(), "127.0.0.1".to_string()];
        let certs = sparkward::certs::generate(&names, 2).expect("generate certs");
        let files = sparkward::certs::write(dir, &certs).expect("write certs");
        Self {
            dir: dir.to_path_buf(),
            ca_pem: certs.ca_pem,
            cert: files.cert,
            key: files.key,
            ca: files.ca,
        }
    }
}

/// The stamp key every test server uses unless its config names another key file.
pub const TEST_STAMP_KEYS: &str = "test:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";

/// How to start sparkward.
#[derive(Default, Clone)]
pub struct Options {
    /// Config file contents (written to a temp file and passed with --config).
    pub config: Option<String>,
    /// Extra arguments after `serve`.
    pub args: Vec<String>,
    /// A kubeconfig to use (cluster mode); without it the server runs in local mode.
    pub kubeconfig: Option<PathBuf>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Do not wait for /readyz.
    pub no_wait_ready: bool,
    /// Pass no certificate: sparkward generates development certificates (local mode) into
    /// `<dir>/dev-certs`, which the test's `certs` then points at.
    pub dev_certs: bool,
}

/// A running `sparkward serve` process.
pub struct Sparkward {
    pub child: Child,
    pub webhook: SocketAddr,
    pub probes: SocketAddr,
    pub certs: TestCerts,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub stdout: Arc<Mutex<Vec<String>>>,
}

fn collect<R: std::io::Read + Send + 'static>(r: R, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            into.lock().expect("lock").push(line);
        }
    });
}

impl Sparkward {
    pub async fn start(opts: Options) -> Self {
        install_crypto();
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = TestCerts::generate(&dir.path().join("certs"));
        let config_path = dir.path().join("config.yaml");
        let stamp_keys = dir.path().join("stamp-keys");
        std::fs::write(&stamp_keys, TEST_STAMP_KEYS).expect("stamp keys");
        let mut config = opts.config.clone().unwrap_or_default();
        if !config.contains("\nstamp:") && !config.starts_with("stamp:") {
            // Every replica of a test shares the fixed test key unless the test sets its own.
            config.push_str(&format!("\nstamp:\n  keyFile: {}\n", stamp_keys.display()));
        }
        std::fs::write(&config_path, config).expect("config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sparkward"));
        cmd.arg("serve").arg("--config").arg(&config_path);
        let dev_dir = dir.path().join("dev-certs");
        if opts.dev_certs {
            cmd.arg("--dev-cert-dir").arg(&dev_dir);
        } else {
            cmd.arg("--tls-cert")
                .arg(&certs.cert)
                .arg("--tls-key")
                .arg(&certs.key);
        }
        cmd.args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--reload-interval", "200ms"])
            .arg("--policy-dir")
            .arg(dir.path().join("policies"))
            .args(&opts.args)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("HOME", dir.path())
            .env("RUST_LOG", "info,sparkward=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &opts.kubeconfig {
            Some(k) => cmd.env("KUBECONFIG", k),
            None => cmd.env_remove("KUBECONFIG"),
        };
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sparkward");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        collect(child.stderr.take().expect("stderr"), stderr.clone());
        collect(child.stdout.take().expect("stdout"), stdout.clone());

        let deadline = Instant::now() + Duration::from_secs(20);
        let (webhook, probes) = loop {
            let found = stderr.lock().expect("lock").iter().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                if v["message"] != "sparkward serving" {
                    return None;
                }
                Some((
                    v["webhook"].as_str()?.parse().ok()?,
                    v["probes"].as_str()?.parse().ok()?,
                ))
            });
            if let Some(f) = found {
                break f;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "sparkward exited with {status} before serving:\n{}",
                    stderr.lock().expect("lock").join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "sparkward did not start:\n{}",
                stderr.lock().expect("lock").join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let certs = if opts.dev_certs {
            TestCerts {
                ca_pem: std::fs::read_to_string(dev_dir.join("ca.crt")).expect("dev ca.crt"),
                ca: dev_dir.join("ca.crt"),
                cert: dev_dir.join("tls.crt"),
                key: dev_dir.join("tls.key"),
                dir: dev_dir,
            }
        } else {
            certs
        };
        let s = Self {
            child,
            webhook,
            probes,
            certs,
            dir,
            config_path,
            stderr,
            stdout,
        };
        if !opts.no_wait_ready {
            s.wait_ready(Duration::from_secs(20)).await;
        }
        s
    }

    /// Polls /readyz until it answers 200.
    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok((200, _)) = self.probe("/readyz").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sparkward not ready: {:?}\n{}",
                self.probe("/readyz").await,
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// GET on the plain-HTTP probe port.
    pub async fn probe(&self, path: &str) -> Result<(u16, String), String> {
        let client: HyperClient<HttpConnector, Full<Bytes>> =
            HyperClient::builder(TokioExecutor::new()).build_http();
        let uri: http::Uri = format!("http://{}{path}", self.probes)
            .parse()
            .map_err(|e| format!("{e}"))?;
        let resp = client.get(uri).await.map_err(|e| format!("{e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("lock").join("\n")
    }

    /// Audit lines (JSON objects on stdout).
    pub fn audit_lines(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The first audit line matching `pred`, waiting (up to 10 s) for sparkward to write it:
    /// a line is written as the answer goes out, and stdout is read by another thread.
    pub async fn audit_line(&self, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            if let Some(line) = self.audit_lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no matching audit line; have: {:#?}", self.audit_lines());
    }

    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.webhook.port())
    }

    /// A client that trusts the server's CA.
    pub fn client(&self, version: HttpVersion) -> WebhookClient {
        WebhookClient::new(&self.certs.ca_pem, None, version, self.base_url())
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Sparkward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http1,
    Http2,
}

/// A rustls client config trusting `ca_pem`, optionally presenting a client certificate.
pub fn client_tls(ca_pem: &str, identity: Option<(&str, &str)>) -> rustls::ClientConfig {
    install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("add root");
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("client cert");
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    }
}

/// An HTTPS client with a keep-alive connection pool, like kube-apiserver's webhook client.
#[derive(Clone)]
pub struct WebhookClient {
    inner: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    pub base: String,
}

impl WebhookClient {
    pub fn new(
        ca_pem: &str,
        identity: Option<(&str, &str)>,
        version: HttpVersion,
        base: String,
    ) -> Self {
        let tls = client_tls(ca_pem, identity);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only();
        let connector = match version {
            HttpVersion::Http1 => builder.enable_http1().build(),
            HttpVersion::Http2 => builder.enable_http2().build(),
        };
        let mut client = HyperClient::builder(TokioExecutor::new());
        client.pool_idle_timeout(Duration::from_secs(30));
        if version == HttpVersion::Http2 {
            client.http2_only(true);
        }
        Self {
            inner: client.build(connector),
            base,
        }
    }

    /// Sends a request and returns status, headers and body.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, http::HeaderMap, Bytes), String> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(ct) = content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = self
            .inner
            .request(req)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, headers, body))
    }

    /// POSTs an AdmissionReview to `/mutate` or `/validate` and returns status and JSON.
    pub async fn review(&self, path: &str, review: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(review).expect("encode");
        let (status, _, body) = self
            .send(http::Method::POST, path, Some("application/json"), body)
            .await
            .expect("request");
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, json)
    }
}
