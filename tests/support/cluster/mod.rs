//! A real Kubernetes control plane for tests, envtest-style: etcd, kube-apiserver and (on
//! request) kube-controller-manager from `<upstream>/kube/`, with the upstream CRDs installed.
//! No kubelet, no scheduler, no kube-proxy: pods stay Pending and Services have no endpoints,
//! which is all an admission webhook needs. What it models:
//!
//! - **One control plane per test binary**, started lazily by the first test that asks
//!   ([`RealCluster::shared`]) and shared by all of them. Every test works in its own namespace
//!   ([`RealCluster::namespace`], [`RealCluster::enforced_namespace`]). Tokio tests each have
//!   their own runtime, so only processes, paths and certificates are shared; `kube::Client`s
//!   are built per test ([`RealCluster::admin`], [`RealCluster::client_as`]). Shared servers
//!   that need a runtime (the test identity provider) run on one background runtime.
//! - **Users are impersonated** by the admin (`O=system:masters` client certificate): tenants
//!   (`oidc:alice`), spark-operator's service account, and a driver's bound service-account token
//!   (a service account with the `authentication.kubernetes.io/pod-name` / `pod-uid` extras that
//!   kube-apiserver puts into the userInfo of a pod-bound token), see [`Identity`].
//! - **sparkward installed the way production does** ([`RealCluster::sparkward`], module
//!   `install`): its own RBAC rendered from `deploy/`, a kubeconfig with a TokenRequest token of
//!   `system:serviceaccount:sparkward-system:sparkward`, the real `sparkward serve` binary, and
//!   the project's `webhook-config/` with each `clientConfig.service` replaced by
//!   `clientConfig.url: https://127.0.0.1:<port>/<path>` + `caBundle`.
//!
//! Skipping: without `<upstream>/kube/kube-apiserver.xz` the constructor prints one
//! `skipped: ...` line and returns `None`; with `SPARKWARD_REQUIRE_KUBE=1` (CI) it panics.
//! Processes die with the test binary (see `process`); `SPARKWARD_KUBE_KEEP=1` keeps the run
//! directory (logs, etcd data) for inspection. When a test that holds a [`TestNamespace`]
//! panics, sparkward's lines about that namespace are printed with its output, and the first
//! such failure also prints the tails of all logs.

pub mod binaries;
pub mod install;
pub mod pki;
pub mod process;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

pub use binaries::Binaries;
pub use install::{Installed, SparkwardSetup};
use pki::Pki;
use process::{Process, free_port};

/// Upper bound for the control plane to become ready (it takes a few seconds; this only turns
/// a hang into a failure with logs).
const START_LIMIT: Duration = Duration::from_secs(90);
/// Upper bound for any "wait until" of the harness and the tests.
pub const PATIENCE: Duration = Duration::from_secs(60);
/// Poll interval of every wait.
const POLL: Duration = Duration::from_millis(100);

/// A handle to the shared control plane of this test binary. Cheap to clone.
#[derive(Clone)]
pub struct RealCluster {
    cp: Arc<ControlPlane>,
}

struct ControlPlane {
    run_dir: PathBuf,
    bins: Binaries,
    pki: Pki,
    /// `https://127.0.0.1:<port>`.
    url: String,
    processes: std::sync::Mutex<Vec<Arc<Process>>>,
    controller_manager: OnceCell<Result<(), String>>,
    sparkward: OnceCell<Result<Arc<Installed>, String>>,
    startup: Duration,
}

static SHARED: OnceCell<Result<Option<RealCluster>, String>> = OnceCell::const_new();

/// The runtime that runs the harness's own start-up work and the servers shared across tests.
fn background() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("real-cluster")
            .enable_all()
            .build()
            .expect("background runtime")
    })
}

/// Runs `f` on the background runtime (so what it spawns outlives the calling test's runtime)
/// and turns a panic in it into an `Err`.
async fn on_background<T, F>(f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: Future<Output = Result<T, String>> + Send + 'static,
{
    match background().spawn(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            Err(panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Writes straight to stderr (not captured by libtest): skips must be visible.
fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

impl RealCluster {
    /// The control plane of this test binary, started on first use, with the upstream CRDs
    /// established. `None` (after a `skipped:` line) when the binaries or the upstream schemas
    /// are missing and not required.
    pub async fn shared() -> Option<RealCluster> {
        super::webhook::install_crypto();
        let result = SHARED
            .get_or_init(|| async {
                let located = Instant::now();
                let Some(bins) = tokio::task::spawn_blocking(binaries::locate)
                    .await
                    .map_err(|e| e.to_string())??
                else {
                    if binaries::required() {
                        return Err(format!(
                            "SPARKWARD_REQUIRE_KUBE=1 but {} has no kube-apiserver.xz",
                            binaries::kube_dir().display()
                        ));
                    }
                    static ONCE: std::sync::Once = std::sync::Once::new();
                    ONCE.call_once(|| {
                        note(&format!(
                            "skipped: real-API tests need ../shared/kube (kube-apiserver, etcd); \
                             none at {} (set SPARKWARD_UPSTREAM_DIR to the dir holding kube/ and schemas/)",
                            binaries::kube_dir().display()
                        ))
                    });
                    return Ok(None);
                };
                let Some(upstream) = super::upstream::upstream_dir() else {
                    return Ok(None);
                };
                let located = located.elapsed();
                if located > Duration::from_secs(1) {
                    note(&format!(
                        "real control plane: binaries unpacked and verified in {:.1}s",
                        located.as_secs_f64()
                    ));
                }
                let cp = on_background(ControlPlane::start(bins, upstream)).await?;
                Ok(Some(RealCluster { cp: Arc::new(cp) }))
            })
            .await;
        match result {
            Ok(cluster) => cluster.clone(),
            Err(e) => panic!("the real control plane did not start: {e}"),
        }
    }

    /// How long the shared control plane took to start: certificates, etcd, kube-apiserver
    /// ready, CRDs established (not the one-time unpacking of the binaries).
    pub fn startup(&self) -> Duration {
        self.cp.startup
    }

    /// `https://127.0.0.1:<port>` of kube-apiserver.
    pub fn url(&self) -> &str {
        &self.cp.url
    }

    /// The run directory (logs are `<run>/logs/*.log`).
    pub fn run_dir(&self) -> &Path {
        &self.cp.run_dir
    }

    /// PEM of the CA that signed kube-apiserver's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.cp.pki.serving_ca_pem
    }

    /// A client authenticated as the cluster admin (`system:masters`).
    pub async fn admin(&self) -> Client {
        self.client_for(self.cp.admin_auth()).await
    }

    /// A client that acts as `who`: the admin impersonating user, groups and extras.
    pub async fn client_as(&self, who: &Identity) -> Client {
        let mut auth = self.cp.admin_auth();
        auth["as"] = json!(who.user);
        if !who.groups.is_empty() {
            auth["as-groups"] = json!(who.groups);
        }
        if !who.extra.is_empty() {
            auth["as-user-extra"] = json!(who.extra);
        }
        self.client_for(auth).await
    }

    /// A client that presents a bearer token (for instance a TokenRequest token).
    pub async fn client_with_token(&self, token: &str) -> Client {
        self.client_for(json!({ "token": token })).await
    }

    async fn client_for(&self, auth_info: Value) -> Client {
        let kubeconfig: Kubeconfig =
            serde_json::from_value(self.cp.kubeconfig(auth_info)).expect("kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("client config");
        Client::try_from(config).expect("client")
    }

    /// A kubeconfig document (JSON, which every kubeconfig loader reads) for `auth_info`.
    pub fn kubeconfig(&self, auth_info: Value) -> Value {
        self.cp.kubeconfig(auth_info)
    }

    /// Starts kube-controller-manager (garbage collector, namespace controller, service
    /// accounts, cluster-role aggregation) once for this binary; its controllers act as their
    /// own service accounts (`system:serviceaccount:kube-system:generic-garbage-collector`, ...),
    /// like in a real cluster.
    pub async fn with_controller_manager(&self) {
        let cp = Arc::clone(&self.cp);
        let result = self
            .cp
            .controller_manager
            .get_or_init(|| async move {
                on_background(async move { cp.start_controller_manager().await }).await
            })
            .await;
        if let Err(e) = result {
            panic!("kube-controller-manager did not start: {e}");
        }
    }

    /// sparkward installed into this control plane (once per binary; the first caller's
    /// `setup` wins and later callers must ask for the same).
    pub async fn sparkward(&self, setup: &SparkwardSetup) -> Arc<Installed> {
        let this = self.clone();
        let wanted = setup.clone();
        let result = self
            .cp
            .sparkward
            .get_or_init(|| async move {
                on_background(async move { install::install(this, wanted).await.map(Arc::new) })
                    .await
            })
            .await;
        match result {
            Ok(installed) => {
                assert_eq!(
                    &installed.setup, setup,
                    "one sparkward per test binary: every test must ask for the same setup"
                );
                Arc::clone(installed)
            }
            Err(e) => {
                self.print_logs(60);
                panic!("installing sparkward failed: {e}")
            }
        }
    }

    /// A fresh namespace `<prefix>-<n>` with `labels`, its `default` and `spark` service
    /// accounts and the `spark-driver` Role bound to `spark`.
    pub async fn namespace(&self, prefix: &str, labels: Value) -> TestNamespace {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}-{}", COUNTER.fetch_add(1, Ordering::Relaxed));
        let admin = self.admin().await;
        install::create_namespace(&admin, &name, labels)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        TestNamespace {
            name,
            cluster: self.clone(),
        }
    }

    /// A fresh namespace labelled `sparkward.io/enforce=true`.
    pub async fn enforced_namespace(&self, prefix: &str) -> TestNamespace {
        self.namespace(prefix, json!({"sparkward.io/enforce": "true"}))
            .await
    }

    /// Prints the last `lines` lines of every log (control plane and sparkward) to the test's
    /// output.
    pub fn print_logs(&self, lines: usize) {
        let processes = self.cp.processes.lock().expect("lock").clone();
        for p in processes {
            eprintln!(
                "----- last {lines} lines of {} ({}) -----\n{}",
                p.name,
                p.log.display(),
                p.tail(lines)
            );
        }
        if let Some(Ok(installed)) = self.cp.sparkward.get() {
            installed.print_logs(lines);
        }
    }
}

impl ControlPlane {
    async fn start(bins: Binaries, upstream: PathBuf) -> Result<Self, String> {
        let started = Instant::now();
        let run_dir = make_run_dir()?;
        let logs = run_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
        let pki = Pki::generate(&run_dir.join("pki"))?;

        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd = Command::new(&bins.etcd);
        etcd.arg("--data-dir")
            .arg(run_dir.join("etcd"))
            .args(["--name", "default"])
            .args(["--listen-client-urls", &etcd_url])
            .args(["--advertise-client-urls", &etcd_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .args(["--logger", "zap", "--log-level", "warn"]);
        let etcd = Process::spawn("etcd", etcd, &logs)?;

        // kube-apiserver retries etcd until it answers, so both start at once.
        let issuer = "https://kubernetes.default.svc.cluster.local";
        let mut apiserver = Command::new(&bins.apiserver);
        apiserver
            .args(["--etcd-servers", &etcd_url])
            .args(["--secure-port", &api_port.to_string()])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
            ])
            .arg("--tls-cert-file")
            .arg(&pki.serving_cert)
            .arg("--tls-private-key-file")
            .arg(&pki.serving_key)
            .arg("--client-ca-file")
            .arg(&pki.client_ca)
            .args([
                "--service-account-issuer",
                issuer,
                "--api-audiences",
                issuer,
            ])
            .arg("--service-account-key-file")
            .arg(&pki.sa_pub)
            .arg("--service-account-signing-key-file")
            .arg(&pki.sa_key)
            .args(["--service-cluster-ip-range", "10.96.0.0/16"])
            .args(["--authorization-mode", "Node,RBAC"])
            .args(["--profiling=false", "--v=1"]);
        let apiserver = Process::spawn("kube-apiserver", apiserver, &logs)?;

        let mut cp = Self {
            run_dir,
            bins,
            pki,
            url: format!("https://127.0.0.1:{api_port}"),
            processes: std::sync::Mutex::new(vec![Arc::new(etcd), Arc::new(apiserver)]),
            controller_manager: OnceCell::new(),
            sparkward: OnceCell::new(),
            startup: Duration::ZERO,
        };
        let admin = cp.admin_client().await?;
        cp.wait_ready(&admin).await?;
        let api_ready = started.elapsed();
        install::install_crds(&admin, &upstream.join("schemas")).await?;
        cp.startup = started.elapsed();
        note(&format!(
            "real control plane: kube-apiserver ready after {:.1}s, CRDs established after {:.1}s ({})",
            api_ready.as_secs_f64(),
            cp.startup.as_secs_f64(),
            cp.run_dir.display()
        ));
        Ok(cp)
    }

    fn admin_auth(&self) -> Value {
        json!({
            "client-certificate-data": B64.encode(&self.pki.admin.cert_pem),
            "client-key-data": B64.encode(&self.pki.admin.key_pem),
        })
    }

    fn kubeconfig(&self, auth_info: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": self.url,
                "certificate-authority-data": B64.encode(&self.pki.serving_ca_pem),
            }}],
            "users": [{"name": "user", "user": auth_info}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user"}}],
            "current-context": "test",
        })
    }

    async fn admin_client(&self) -> Result<Client, String> {
        let kubeconfig: Kubeconfig = serde_json::from_value(self.kubeconfig(self.admin_auth()))
            .map_err(|e| e.to_string())?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        Client::try_from(config).map_err(|e| e.to_string())
    }

    fn check_processes(&self) -> Result<(), String> {
        let processes = self.processes.lock().expect("lock").clone();
        processes.iter().try_for_each(|p| p.check_running())
    }

    /// Until `GET /readyz` answers exactly `ok` (a 200 with failed checks is not ready).
    async fn wait_ready(&self, admin: &Client) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            self.check_processes()?;
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            let last = match admin.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => body,
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                let tails: Vec<String> = self
                    .processes
                    .lock()
                    .expect("lock")
                    .iter()
                    .map(|p| format!("--- {} ---\n{}", p.name, p.tail(30)))
                    .collect();
                return Err(format!(
                    "kube-apiserver not ready after {START_LIMIT:?}: {last}\n{}",
                    tails.join("\n")
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn start_controller_manager(&self) -> Result<(), String> {
        let kubeconfig = self.run_dir.join("controller-manager.kubeconfig");
        let auth = json!({
            "client-certificate-data": B64.encode(&self.pki.controller_manager.cert_pem),
            "client-key-data": B64.encode(&self.pki.controller_manager.key_pem),
        });
        std::fs::write(&kubeconfig, self.kubeconfig(auth).to_string())
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bins.controller_manager);
        cmd.arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--authentication-kubeconfig")
            .arg(&kubeconfig)
            .arg("--authorization-kubeconfig")
            .arg(&kubeconfig)
            .arg("--service-account-private-key-file")
            .arg(&self.pki.sa_key)
            .arg("--root-ca-file")
            .arg(&self.pki.serving_ca)
            .args(["--leader-elect=false", "--use-service-account-credentials=true"])
            .args([
                "--controllers",
                "garbage-collector-controller,namespace-controller,serviceaccount-controller,clusterrole-aggregation-controller",
            ])
            .args(["--bind-address", "127.0.0.1", "--secure-port", "0"])
            .args(["--profiling=false", "--v=1"]);
        let process = Process::spawn("kube-controller-manager", cmd, &self.run_dir.join("logs"))?;
        let log = process.log.clone();
        self.processes.lock().expect("lock").push(Arc::new(process));
        // Its garbage collector has discovered every resource (the CRDs included, installed
        // before it started) once it logs that all monitors synced.
        let deadline = Instant::now() + START_LIMIT;
        loop {
            self.check_processes()?;
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("all resource monitors have synced") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-controller-manager's garbage collector did not sync:\n{}",
                    process::tail_of(&log, 40)
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The run directory: on tmpfs when there is one (etcd's fsyncs are then free), removed when
/// the test binary exits.
fn make_run_dir() -> Result<PathBuf, String> {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = base.join(format!("sparkward-kube-{}-{nanos:08x}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    process::remove_at_exit(&dir);
    Ok(dir)
}

/// Who a request is made as: the admin impersonates this user, its groups and its extras.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// Empty: kube-apiserver gives the user `system:authenticated` (and a service account its
    /// service-account groups).
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Extra of a pod-bound service-account token: the pod's name.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
/// Extra of a pod-bound service-account token: the pod's uid.
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";

impl Identity {
    /// A user (for tenants `oidc:<subject>`, the prefix the scenario config binds).
    pub fn user(name: &str) -> Self {
        Self {
            user: name.into(),
            groups: Vec::new(),
            extra: BTreeMap::new(),
        }
    }

    /// A service account, with the groups kube-apiserver gives its tokens.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            user: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
            extra: BTreeMap::new(),
        }
    }

    /// The same service account, as seen through a token bound to a pod (what a driver's
    /// projected token looks like to the API server and so to webhooks).
    pub fn bound_to_pod(mut self, pod_name: &str, pod_uid: &str) -> Self {
        self.extra
            .insert(POD_NAME_EXTRA.into(), vec![pod_name.into()]);
        self.extra
            .insert(POD_UID_EXTRA.into(), vec![pod_uid.into()]);
        self
    }

    /// spark-operator's controller service account (the trusted creator of the scenario).
    pub fn operator() -> Self {
        Self::service_account(
            install::OPERATOR_NAMESPACE,
            install::OPERATOR_SERVICE_ACCOUNT,
        )
    }
}

/// One test's namespace. Dropping it during a panic prints the tails of all logs.
pub struct TestNamespace {
    pub name: String,
    cluster: RealCluster,
}

impl TestNamespace {
    /// Grants `user` the tenant Role (a namespace editor's verbs) here and returns the
    /// identity to impersonate.
    pub async fn tenant(&self, user: &str) -> Identity {
        let admin = self.cluster.admin().await;
        install::bind_tenant(&admin, &self.name, user)
            .await
            .unwrap_or_else(|e| panic!("binding tenant {user} in {}: {e}", self.name));
        Identity::user(user)
    }

    /// The `spark` service account of this namespace through a token bound to `pod`
    /// (name and uid taken from the stored pod).
    pub fn driver_token(&self, pod: &Value) -> Identity {
        Identity::service_account(&self.name, "spark").bound_to_pod(
            pod["metadata"]["name"].as_str().expect("pod name"),
            pod["metadata"]["uid"].as_str().expect("pod uid"),
        )
    }

    pub fn cluster(&self) -> &RealCluster {
        &self.cluster
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // What sparkward decided in this namespace, then (once per binary, since the tests
        // share them) the tails of every log.
        eprintln!("test in namespace {} failed", self.name);
        if let Some(Ok(installed)) = self.cluster.cp.sparkward.get() {
            installed.print_namespace(&self.name);
        }
        static PRINTED: std::sync::Once = std::sync::Once::new();
        PRINTED.call_once(|| self.cluster.print_logs(30));
    }
}

// ---------------------------------------------------------------------------------------------
// Objects as JSON: the tests build and read objects as `serde_json::Value`.
// ---------------------------------------------------------------------------------------------

/// The API resource of `apiVersion` + `kind` (regular plurals, which all kinds used here have).
pub fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// A dynamic API for `kind` in `namespace` (or cluster-wide / cluster-scoped with `None`).
pub fn api(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let ar = resource(api_version, kind);
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// The API of an object's own kind and namespace.
pub fn api_of(client: &Client, object: &Value) -> Api<DynamicObject> {
    api(
        client,
        object["apiVersion"].as_str().expect("apiVersion"),
        object["kind"].as_str().expect("kind"),
        object["metadata"]["namespace"].as_str(),
    )
}

pub fn to_dynamic(object: &Value) -> DynamicObject {
    serde_json::from_value(object.clone()).expect("a Kubernetes object")
}

pub fn to_json(object: &DynamicObject) -> Value {
    serde_json::to_value(object).expect("serialisable object")
}

/// POST `object` as the client's user; the stored object (or the dry-run result).
pub async fn create(
    client: &Client,
    object: &Value,
    pp: &PostParams,
) -> Result<Value, kube::Error> {
    api_of(client, object)
        .create(pp, &to_dynamic(object))
        .await
        .map(|o| to_json(&o))
}

/// The message of an API error (`Err` of a call the test expected to fail), or a panic saying
/// the call succeeded.
pub fn rejection<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message.clone()),
        Err(other) => panic!("expected an API rejection, got {other:?}"),
        Ok(value) => panic!("expected a rejection, the API server accepted: {value:?}"),
    }
}

/// Polls `probe` until it returns `Some`, failing after [`PATIENCE`] with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}
